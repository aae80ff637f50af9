//! Each stream's measured event rate at two resolutions: the tick interval
//! for the last day and one minute for 90 days, so daily and weekly patterns
//! can be learned while memory stays bounded. Persisted as one checksummed
//! state file per stream (`store`), written when a coarse bucket closes.
//!
//! Body layout: two tiers, each `step_ms u64, start_ms u64, len u64,
//! len x f64` (little endian); missing samples are NaN.

use std::collections::VecDeque;
use std::path::Path;

use crate::error::AutoscalerError;
use crate::series::Series;
use crate::store::{self, Kind};

pub const COARSE_STEP_MS: u64 = 60_000;
pub const COARSE_SPAN_MS: u64 = 90 * 24 * 3_600_000;
pub const FINE_SPAN_MS: u64 = 24 * 3_600_000;
/// Bound on samples per tier read back from disk.
const TIER_LEN_MAX: u64 = 1 << 22;
const _: () = assert!(COARSE_SPAN_MS / COARSE_STEP_MS < TIER_LEN_MAX);

/// Fixed-step samples with a bounded length; the newest bucket accumulates
/// until time moves past it.
#[derive(Debug, Clone)]
struct Tier {
    step_ms: u64,
    len_max: usize,
    start_ms: u64,
    values: VecDeque<f64>,
    open: Option<Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start_ms: u64,
    sum: f64,
    count: u32,
}

impl Tier {
    fn new(step_ms: u64, span_ms: u64) -> Self {
        Self {
            step_ms,
            len_max: (span_ms / step_ms).max(1) as usize,
            start_ms: 0,
            values: VecDeque::new(),
            open: None,
        }
    }

    /// Adds a sample; returns true when a bucket closed.
    fn push(&mut self, at_ms: u64, value: f64) -> bool {
        let bucket_ms = at_ms / self.step_ms * self.step_ms;
        match self.open {
            Some(ref mut open) if open.start_ms == bucket_ms => {
                open.sum += value;
                open.count += 1;
                false
            }
            // A sample from the past (clock step back) is dropped.
            Some(open) if bucket_ms < open.start_ms => false,
            open => {
                if let Some(open) = open {
                    self.close(open);
                }
                self.open = Some(Bucket {
                    start_ms: bucket_ms,
                    sum: value,
                    count: 1,
                });
                open.is_some()
            }
        }
    }

    fn close(&mut self, bucket: Bucket) {
        let mean = bucket.sum / f64::from(bucket.count);
        if self.values.is_empty() {
            self.start_ms = bucket.start_ms;
        } else {
            let next_ms = self.start_ms + self.step_ms * self.values.len() as u64;
            if bucket.start_ms < next_ms {
                return;
            }
            // Gaps (the broker was down) stay visible as missing samples.
            let gap = ((bucket.start_ms - next_ms) / self.step_ms).min(self.len_max as u64);
            for _ in 0..gap {
                self.push_value(f64::NAN);
            }
            if self.values.is_empty() {
                self.start_ms = bucket.start_ms;
            }
        }
        self.push_value(mean);
    }

    fn push_value(&mut self, value: f64) {
        self.values.push_back(value);
        while self.values.len() > self.len_max {
            self.values.pop_front();
            self.start_ms += self.step_ms;
        }
    }

    fn series(&self) -> Series {
        Series::new(
            self.start_ms,
            self.step_ms,
            self.values.iter().copied().collect(),
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.step_ms.to_le_bytes());
        out.extend_from_slice(&self.start_ms.to_le_bytes());
        out.extend_from_slice(&(self.values.len() as u64).to_le_bytes());
        for value in &self.values {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// Reads a tier written by `encode`; returns the bytes it used.
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let word = |at: usize| -> Result<u64, String> {
            bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte slice")))
                .ok_or_else(|| format!("history ends at byte {} inside a tier", bytes.len()))
        };
        let step_ms = word(0)?;
        if step_ms != self.step_ms {
            return Err(format!("tier step {step_ms} ms, expected {}", self.step_ms));
        }
        let start_ms = word(8)?;
        let len = word(16)?;
        if len > TIER_LEN_MAX {
            return Err(format!("tier of {len} samples exceeds {TIER_LEN_MAX}"));
        }
        let mut values = VecDeque::with_capacity(len as usize);
        for i in 0..len as usize {
            values.push_back(f64::from_bits(word(24 + 8 * i)?));
        }
        self.start_ms = start_ms;
        self.values = values;
        while self.values.len() > self.len_max {
            self.values.pop_front();
            self.start_ms += self.step_ms;
        }
        Ok(24 + 8 * len as usize)
    }
}

/// One stream's rate history.
#[derive(Debug, Clone)]
pub struct History {
    fine: Tier,
    coarse: Tier,
}

impl History {
    pub fn new(fine_step_ms: u64) -> Self {
        Self {
            fine: Tier::new(fine_step_ms.max(1), FINE_SPAN_MS),
            coarse: Tier::new(COARSE_STEP_MS, COARSE_SPAN_MS),
        }
    }

    /// Records a measured rate; returns true when a coarse bucket closed
    /// (the moment to persist).
    pub fn record(&mut self, at_ms: u64, events_per_s: f64) -> bool {
        if !events_per_s.is_finite() {
            return false;
        }
        self.fine.push(at_ms, events_per_s);
        self.coarse.push(at_ms, events_per_s)
    }

    /// One-minute samples over up to 90 days (for the seasonal models).
    pub fn coarse(&self) -> Series {
        self.coarse.series()
    }

    /// Tick-resolution samples over the last day.
    pub fn fine(&self) -> Series {
        self.fine.series()
    }

    pub fn save(&self, path: &Path) -> Result<(), AutoscalerError> {
        let mut body = Vec::new();
        self.fine.encode(&mut body);
        self.coarse.encode(&mut body);
        store::write(path, Kind::History, &body)
    }

    /// Loads a saved history; `Ok(None)` when there is none.
    pub fn load(path: &Path, fine_step_ms: u64) -> Result<Option<Self>, AutoscalerError> {
        let Some(body) = store::read(path, Kind::History)? else {
            return Ok(None);
        };
        let mut history = Self::new(fine_step_ms);
        let corrupt = |reason: String| AutoscalerError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        // A history written with another tick interval keeps only its coarse tier.
        let used = match history.fine.decode(&body) {
            Ok(used) => used,
            Err(_) => {
                let len = body
                    .get(16..24)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte slice")))
                    .ok_or_else(|| corrupt("short fine tier".into()))?;
                history.fine = Tier::new(fine_step_ms.max(1), FINE_SPAN_MS);
                24 + 8 * len.min(TIER_LEN_MAX) as usize
            }
        };
        let rest = body
            .get(used..)
            .ok_or_else(|| corrupt("short body".into()))?;
        history.coarse.decode(rest).map_err(corrupt)?;
        Ok(Some(history))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_average_and_gaps_stay_missing() {
        let mut history = History::new(10_000);
        assert!(!history.record(0, 10.0));
        assert!(!history.record(30_000, 30.0));
        assert!(history.record(60_000, 100.0));
        // Nothing recorded for two minutes, then a sample.
        assert!(history.record(240_000, 50.0));
        assert_eq!(history.coarse().values, vec![20.0, 100.0]);
        // Closing the 4-minute bucket fills the two silent minutes as missing.
        assert!(history.record(300_000, 70.0));
        let coarse = history.coarse();
        assert_eq!(coarse.start_ms, 0);
        assert_eq!(coarse.values.len(), 5);
        assert!(coarse.values[2].is_nan());
        assert!(coarse.values[3].is_nan());
        assert_eq!(coarse.values[4], 50.0);
        // Fine, 10 s steps: samples at 0, 30, 60 and 240 s, the rest of
        // 0..=240 s missing (the 300 s bucket is still open).
        assert_eq!(history.fine().values.len(), 25);
        assert_eq!(
            history
                .fine()
                .values
                .iter()
                .filter(|v| v.is_finite())
                .count(),
            4
        );
    }

    #[test]
    fn tiers_stay_bounded() {
        let mut history = History::new(COARSE_STEP_MS);
        let steps = FINE_SPAN_MS / COARSE_STEP_MS + 10;
        for i in 0..steps {
            history.record(i * COARSE_STEP_MS, i as f64);
        }
        let fine = history.fine();
        assert_eq!(fine.values.len() as u64, FINE_SPAN_MS / COARSE_STEP_MS);
        assert_eq!(fine.end_ms(), (steps - 1) * COARSE_STEP_MS);
    }

    #[test]
    fn survives_a_save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history");
        let mut history = History::new(10_000);
        for i in 0..50u64 {
            history.record(i * 10_000, i as f64);
        }
        history.save(&path).expect("save");
        let loaded = History::load(&path, 10_000)
            .expect("load")
            .expect("present");
        assert_eq!(loaded.coarse(), history.coarse());
        assert_eq!(loaded.fine(), history.fine());
        // Another tick interval keeps the coarse tier.
        let other = History::load(&path, 5_000).expect("load").expect("present");
        assert_eq!(other.coarse(), history.coarse());
        assert!(other.fine().values.is_empty());
    }
}
