//! Trace replay: a `timestamp,value` CSV (the files in `shared/data/traces`)
//! becomes a `RateSchedule`, one segment per row, each row lasting until
//! the next (the last as long as the one before it). `compress` divides
//! trace time (`86400:600` plays a day in ten minutes); the scale turns a
//! value into events/s, either per unit or so that the peak hits a target
//! rate. Sending is the open-loop pacer, so latency stays CO-correct.

use std::path::Path;

use crate::config::TraceScale;
use crate::error::LoadgenError;
use crate::schedule::{RateSchedule, RateSegment};

/// Rows read from one trace; a bigger file is refused.
pub const TRACE_ROWS_MAX: usize = 1_000_000;
const TRACE_BYTES_MAX: u64 = 256 << 20;

/// One trace row: seconds since the first row, and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceRow {
    pub at_s: f64,
    pub value: f64,
}

/// A parsed trace, rows strictly increasing in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    rows: Vec<TraceRow>,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Trace, LoadgenError> {
        let size = std::fs::metadata(path)
            .map_err(|error| LoadgenError::io(path, error))?
            .len();
        if size > TRACE_BYTES_MAX {
            return Err(trace_error(
                path,
                0,
                format!("{size} bytes, at most {TRACE_BYTES_MAX}"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|error| LoadgenError::io(path, error))?;
        Trace::parse(&text, path)
    }

    /// Parses CSV text; a first line that does not parse is a header.
    pub fn parse(text: &str, path: &Path) -> Result<Trace, LoadgenError> {
        let mut rows = Vec::new();
        let mut first_s = None;
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = parse_row(line);
            let Some((at_s, value)) = parsed else {
                if rows.is_empty() && first_s.is_none() {
                    continue;
                }
                let reason = "expected `timestamp,value`".to_owned();
                return Err(trace_error(path, line_number, reason));
            };
            let first = *first_s.get_or_insert(at_s);
            let at_s = at_s - first;
            if rows.last().is_some_and(|last: &TraceRow| at_s <= last.at_s) {
                let reason = "timestamps must increase".to_owned();
                return Err(trace_error(path, line_number, reason));
            }
            if rows.len() == TRACE_ROWS_MAX {
                let reason = format!("more than {TRACE_ROWS_MAX} rows");
                return Err(trace_error(path, line_number, reason));
            }
            rows.push(TraceRow { at_s, value });
        }
        if rows.is_empty() {
            return Err(trace_error(path, 0, "no rows".to_owned()));
        }
        Ok(Trace { rows })
    }

    pub fn rows(&self) -> &[TraceRow] {
        &self.rows
    }

    /// Trace seconds covered: the last row lasts as long as the one before
    /// it (one second in a one-row trace).
    pub fn span_s(&self) -> f64 {
        let last = self.rows[self.rows.len() - 1].at_s;
        let step = match self.rows.len() {
            1 => 1.0,
            len => last - self.rows[len - 2].at_s,
        };
        last + step
    }

    pub fn peak(&self) -> f64 {
        self.rows.iter().map(|row| row.value).fold(0.0, f64::max)
    }

    /// Events/s per unit of value under `scale`.
    pub fn events_per_unit(&self, scale: TraceScale) -> Result<f64, LoadgenError> {
        match scale {
            TraceScale::PerUnit { events_per_s } => Ok(events_per_s),
            TraceScale::PeakRate { events_per_s } => {
                let peak = self.peak();
                if peak <= 0.0 {
                    let value = peak.to_string();
                    return Err(LoadgenError::invalid(
                        "--peak-rate",
                        &value,
                        "trace peak is not positive",
                    ));
                }
                Ok(events_per_s / peak)
            }
        }
    }

    /// The schedule of the whole trace played `compress` times faster.
    /// Negative values play as zero.
    pub fn schedule(&self, compress: f64, scale: TraceScale) -> Result<RateSchedule, LoadgenError> {
        let per_unit = self.events_per_unit(scale)?;
        let to_us = |trace_s: f64| (trace_s / compress * 1e6).round() as u64;
        let segments = self
            .rows
            .iter()
            .map(|row| RateSegment {
                start_us: to_us(row.at_s),
                events_per_s: (row.value * per_unit).max(0.0),
            })
            .collect();
        Ok(RateSchedule::from_segments(segments, to_us(self.span_s())))
    }
}

fn trace_error(path: &Path, line: usize, reason: String) -> LoadgenError {
    LoadgenError::Trace {
        path: path.to_owned(),
        line,
        reason,
    }
}

fn parse_row(line: &str) -> Option<(f64, f64)> {
    let (timestamp, value) = line.split_once(',')?;
    let value: f64 = value.trim().parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    Some((parse_timestamp(timestamp.trim())?, value))
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), as UTC seconds since the epoch,
/// or a plain number of seconds.
pub fn parse_timestamp(text: &str) -> Option<f64> {
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
    let mut time_parts = time.trim_end_matches('Z').split(':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let second: f64 = time_parts.next().map_or(Some(0.0), |s| s.parse().ok())?;
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60;
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
    use super::*;

    #[test]
    fn timestamps_parse_as_utc_seconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(
            parse_timestamp("2015-02-26 21:42:53"),
            Some(1_424_986_973.0)
        );
        assert_eq!(parse_timestamp("2000-03-01T00:00:00"), Some(951_868_800.0));
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn header_is_skipped_and_bad_rows_rejected() {
        let path = Path::new("t.csv");
        let trace = Trace::parse("timestamp,value\n0,1\n10,2\n", path).unwrap();
        assert_eq!(trace.rows().len(), 2);
        assert_eq!(trace.span_s(), 20.0);
        assert!(Trace::parse("timestamp,value\n0,1\nnope\n", path).is_err());
        assert!(Trace::parse("0,1\n0,2\n", path).is_err());
    }
}
