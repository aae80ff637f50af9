//! Rate traces for the simulator: `timestamp,value` CSV files read by
//! `surge_trace` (values must be rates >= 0). Samples are put on a regular
//! grid at the median sample step by linear interpolation, and values are
//! scaled so the trace's `peak_quantile` quantile (the maximum at 1.0)
//! becomes `peak_eps` events per second; bursts above it scale with it.

use std::path::Path;

use crate::error::AutoscalerError;
use crate::series::Series;

/// Lines read from one trace at most.
pub const LINES_MAX: usize = 5_000_000;

#[derive(Debug, Clone)]
pub struct Trace {
    pub name: String,
    /// Events per second on a regular grid.
    pub series: Series,
    /// events/s per unit of the file's value.
    pub scale: f64,
}

fn bad(line: usize, message: impl Into<String>) -> AutoscalerError {
    AutoscalerError::invalid("trace", format!("line {line}: {}", message.into()))
}

pub fn parse(
    name: &str,
    text: &str,
    peak_eps: f64,
    peak_quantile: f64,
) -> Result<Trace, AutoscalerError> {
    if !(peak_eps.is_finite() && peak_eps > 0.0) {
        return Err(AutoscalerError::invalid(
            "peak_eps",
            format!("must be > 0, got {peak_eps}"),
        ));
    }
    if !(0.5..=1.0).contains(&peak_quantile) {
        return Err(AutoscalerError::invalid(
            "peak_quantile",
            format!("must be within 0.5..=1, got {peak_quantile}"),
        ));
    }
    let rows = surge_trace::parse_rows(text, LINES_MAX)
        .map_err(|err| AutoscalerError::invalid("trace", err.to_string()))?;
    let mut points: Vec<(u64, f64)> = Vec::with_capacity(rows.len());
    for row in rows {
        if row.at_s < 0.0 {
            return Err(bad(row.line, "timestamps start at 1970"));
        }
        if row.value < 0.0 {
            return Err(bad(
                row.line,
                format!("bad value {} (a rate >= 0)", row.value),
            ));
        }
        let at_ms = (row.at_s * 1000.0).round() as u64;
        if points.last().is_some_and(|&(last, _)| at_ms <= last) {
            return Err(bad(row.line, "timestamps must increase by 1 ms or more"));
        }
        points.push((at_ms, row.value));
    }
    if points.len() < 2 {
        return Err(AutoscalerError::invalid(
            "trace",
            "needs at least two samples",
        ));
    }
    let mut steps: Vec<u64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    steps.sort_unstable();
    let step_ms = steps[(steps.len() - 1) / 2];
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let peak = crate::series::quantile(&values, peak_quantile).unwrap_or(0.0);
    if peak <= 0.0 {
        return Err(AutoscalerError::invalid(
            "trace",
            format!("the {peak_quantile} quantile of the values is zero"),
        ));
    }
    let scale = peak_eps / peak;
    let start_ms = points[0].0;
    let count = ((points[points.len() - 1].0 - start_ms) / step_ms + 1) as usize;
    if count > LINES_MAX {
        return Err(AutoscalerError::invalid(
            "trace",
            format!("{count} grid points exceed {LINES_MAX}"),
        ));
    }
    // Linear interpolation of the raw samples onto the grid.
    let mut values = Vec::with_capacity(count);
    let mut segment = 0;
    for i in 0..count {
        let at = start_ms + i as u64 * step_ms;
        while segment + 2 < points.len() && points[segment + 1].0 <= at {
            segment += 1;
        }
        let (t0, v0) = points[segment];
        let (t1, v1) = points[(segment + 1).min(points.len() - 1)];
        let value = if t1 > t0 && at > t0 {
            let frac = ((at - t0) as f64 / (t1 - t0) as f64).min(1.0);
            v0 + (v1 - v0) * frac
        } else {
            v0
        };
        values.push(value * scale);
    }
    Ok(Trace {
        name: name.to_string(),
        series: Series::new(start_ms, step_ms, values),
        scale,
    })
}

pub fn load(path: &Path, peak_eps: f64, peak_quantile: f64) -> Result<Trace, AutoscalerError> {
    let text = std::fs::read_to_string(path)?;
    let name = path
        .file_stem()
        .map_or_else(|| "trace".to_string(), |s| s.to_string_lossy().into_owned());
    parse(&name, &text, peak_eps, peak_quantile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_regularises() {
        let text = "timestamp,value\n1970-01-01 00:00:00,10\n1970-01-01 00:05:00,20\n1970-01-01 00:15:00,40\n";
        let trace = parse("t", text, 1000.0, 1.0).expect("parses");
        assert_eq!(trace.series.step_ms, 300_000);
        assert_eq!(trace.series.values, vec![250.0, 500.0, 750.0, 1000.0]);
        assert_eq!(trace.scale, 25.0);
        // The median (20) as the peak: the maximum goes to twice the rate.
        let trace = parse("t", text, 1000.0, 0.5).expect("parses");
        assert_eq!(trace.series.values.last(), Some(&2000.0));
    }

    #[test]
    fn bad_input_names_the_line() {
        let cases = [
            (
                "timestamp,value\n1970-01-01 00:00:00,1\nnot a line\n",
                "line 3",
            ),
            ("1970-01-01 00:00:00,1\n1970-01-01 00:01:00,-5\n", "line 2"),
            ("1970-01-01 00:01:00,1\n1970-01-01 00:00:00,1\n", "increase"),
            ("1970-01-01 00:00:00,1\n", "two samples"),
            ("1970-01-01 00:00:00,0\n1970-01-01 00:01:00,0\n", "is zero"),
        ];
        for (text, expected) in cases {
            let err = parse("t", text, 10.0, 1.0)
                .expect_err("rejected")
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert!(parse("t", "1,1\n2,2\n", 0.0, 1.0).is_err());
        assert!(parse("t", "1,1\n2,2\n", 10.0, 0.1).is_err());
    }
}
