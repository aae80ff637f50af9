//! Load traces: `timestamp,value` CSV rows (the files in
//! `shared/data/traces`), as read by the load generator's trace replay and
//! the autoscaler's simulator. Owns the row syntax and the timestamp
//! formats; what a value means (events/s, a scale, a grid) is the caller's.
//!
//! A first line that does not parse is a header; empty lines and lines
//! starting with `#` are skipped. Timestamps are unix seconds (fractions
//! allowed) or `YYYY-MM-DD HH:MM:SS[.fff]` with a space or `T` and an
//! optional `Z`, read as UTC. Rows must be strictly increasing in time.

use std::fmt;

/// One row of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// 1-based line number in the text, for the caller's own errors.
    pub line: usize,
    /// Seconds since the epoch (or whatever origin plain numbers count from).
    pub at_s: f64,
    /// The row's value: finite, possibly negative.
    pub value: f64,
}

/// Why a trace was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line number; 0 for the trace as a whole.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for TraceError {}

fn error(line: usize, reason: impl Into<String>) -> TraceError {
    TraceError {
        line,
        reason: reason.into(),
    }
}

/// The rows of `text`, at most `rows_max` of them, at least one.
pub fn parse_rows(text: &str, rows_max: usize) -> Result<Vec<Row>, TraceError> {
    let mut rows: Vec<Row> = Vec::new();
    let mut first_content_line = true;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let header = std::mem::take(&mut first_content_line);
        let row = match parse_row(line) {
            Ok((at_s, value)) => Row {
                line: number,
                at_s,
                value,
            },
            Err(_) if header => continue,
            Err(reason) => return Err(error(number, reason)),
        };
        if rows.last().is_some_and(|last| row.at_s <= last.at_s) {
            return Err(error(number, "timestamps must increase"));
        }
        if rows.len() == rows_max {
            return Err(error(
                number,
                format!("a trace has at most {rows_max} rows"),
            ));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(error(0, "the trace has no rows"));
    }
    Ok(rows)
}

fn parse_row(line: &str) -> Result<(f64, f64), String> {
    let (timestamp, value) = line
        .split_once(',')
        .ok_or_else(|| "expected `timestamp,value`".to_owned())?;
    let at_s = parse_timestamp(timestamp.trim())
        .ok_or_else(|| format!("bad timestamp {:?}", timestamp.trim()))?;
    let value = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
        .ok_or_else(|| format!("bad value {:?} (a finite number)", value.trim()))?;
    Ok((at_s, value))
}

/// Seconds since the epoch of a trace timestamp, or `None`.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut date_parts = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    if date_parts.next().is_some() {
        return None;
    }
    let mut time_parts = time.trim_end_matches('Z').split(':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let second: f64 = time_parts.next().map_or(Some(0.0), |s| s.parse().ok())?;
    // Four-digit years, as ISO 8601 writes them (and their seconds fit).
    let valid = (0..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0.0..61.0).contains(&second)
        && time_parts.next().is_none();
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60) as f64 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Pieces of trace lines, valid and not: dates near and far, numbers
    /// of every size, separators, garbage.
    fn line() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            "[0-9]{1,20}",
            "-?[0-9]{1,6}\\.[0-9]{0,4}(e[+-]?[0-9]{1,3})?",
            "[0-9]{1,19}-[0-9]{1,3}-[0-9]{1,3}[ T][0-9]{1,3}:[0-9]{1,3}(:[0-9.]{1,6})?Z?",
            Just("nan".to_string()),
            Just("inf".to_string()),
            "[ -~]{0,12}",
        ];
        (
            part.clone(),
            prop::sample::select(vec![",", ", ", "", ",,"]),
            part,
        )
            .prop_map(|(a, sep, b)| format!("{a}{sep}{b}"))
    }

    proptest! {
        /// Any text is rows with finite, increasing timestamps and finite
        /// values, or an error naming a line: never a panic.
        #[test]
        fn any_text_parses_or_fails_cleanly(lines in prop::collection::vec(line(), 0..12)) {
            let text = lines.join("\n");
            match parse_rows(&text, 8) {
                Ok(rows) => {
                    prop_assert!(!rows.is_empty() && rows.len() <= 8);
                    prop_assert!(rows.iter().all(|r| r.at_s.is_finite() && r.value.is_finite()));
                    prop_assert!(rows.windows(2).all(|w| w[0].at_s < w[1].at_s));
                }
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn a_year_out_of_range_is_a_bad_timestamp() {
        // Seconds since the epoch overflowed i64 (a panic in debug builds).
        for text in [
            "999999999999999-01-01 00:00",
            "-999999999999999-01-01 00:00",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
        assert!(parse_rows("9223372036854775807-12-31 23:59:59,1\n", 10).is_err());
        assert!(parse_timestamp("9999-12-31 23:59:59").is_some());
    }

    #[test]
    fn timestamps_parse_as_utc_seconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(
            parse_timestamp("2014-07-01 00:30:00"),
            Some(1_404_174_600.0)
        );
        assert_eq!(
            parse_timestamp("2015-02-26T21:42:53Z"),
            Some(1_424_986_973.0)
        );
        assert_eq!(parse_timestamp("2000-03-01T00:00:00"), Some(951_868_800.0));
        assert_eq!(
            parse_timestamp("2000-02-29 12:00:01.5"),
            Some(951_825_601.5)
        );
        assert_eq!(parse_timestamp("1404174600"), Some(1_404_174_600.0));
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
        for bad in [
            "2014-13-01 00:00:00",
            "2014-01-01 24:00:00",
            "2014-01-01 00:00:00:00",
            "2014-01-01-01 00:00",
            "yesterday",
            "inf",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn rows_skip_the_header_comments_and_blank_lines() {
        let rows = parse_rows("timestamp,value\n\n# note\n0,1\n10,-2.5\n", 10).unwrap();
        let expected = [(4, 0.0, 1.0), (5, 10.0, -2.5)];
        let got: Vec<(usize, f64, f64)> = rows.iter().map(|r| (r.line, r.at_s, r.value)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            (
                "timestamp,value\n0,1\nnope\n",
                "line 3: expected `timestamp,value`",
            ),
            ("0,1\nlater,2\n", "line 2: bad timestamp \"later\""),
            ("0,1\n1,NaN\n", "line 2: bad value \"NaN\""),
            ("0,1\n0,2\n", "line 2: timestamps must increase"),
            ("0,1\n1,1\n2,1\n", "line 3: a trace has at most 2 rows"),
            ("timestamp,value\n", "the trace has no rows"),
        ];
        for (text, expected) in cases {
            let err = parse_rows(text, 2).expect_err(text).to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }
}
