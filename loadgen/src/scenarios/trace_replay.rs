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

    /// Parses CSV text (see `surge_trace` for the row syntax), times
    /// counted from the first row.
    pub fn parse(text: &str, path: &Path) -> Result<Trace, LoadgenError> {
        let rows = surge_trace::parse_rows(text, TRACE_ROWS_MAX)
            .map_err(|err| trace_error(path, err.line, err.reason))?;
        let first_s = rows[0].at_s;
        let rows = rows
            .into_iter()
            .map(|row| TraceRow {
                at_s: row.at_s - first_s,
                value: row.value,
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
