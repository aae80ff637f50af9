//! `LatencyHistogram`: a thin wrapper over an HDR histogram of microseconds,
//! and the one way latencies are recorded. Coordinated omission is avoided
//! at the source: open-loop scenarios record `done - intended`, where
//! `intended` is the time the schedule said the event should have been sent,
//! so a stalled broker (or a producer that could not keep up) shows up as
//! many slow samples instead of one. `RunClock` is the time base for both.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded exactly: one hour; above it samples saturate.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant decimal digits kept for every value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Monotonic microseconds since the start of the run, plus the wall-clock
/// time of that start, so values carried in events (`sent-us`, epoch µs)
/// and local measurements share one time base.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
    start_epoch_us: u64,
}

impl RunClock {
    pub fn start() -> RunClock {
        let start_epoch_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        RunClock {
            start: Instant::now(),
            start_epoch_us,
        }
    }

    /// Microseconds since the run started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn instant_at(&self, offset_us: u64) -> Instant {
        self.start + std::time::Duration::from_micros(offset_us)
    }

    /// Wall-clock µs since the epoch of a run offset.
    pub fn epoch_us(&self, offset_us: u64) -> u64 {
        self.start_epoch_us.saturating_add(offset_us)
    }

    pub fn start_epoch_us(&self) -> u64 {
        self.start_epoch_us
    }
}

/// Microsecond latencies with 3 significant digits up to `LATENCY_US_MAX`.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
            .expect("constant bounds are valid");
        LatencyHistogram { histogram }
    }

    /// Records `done_us - intended_us` (zero when done is earlier, which a
    /// clock can do across threads by a microsecond).
    pub fn record_since(&mut self, intended_us: u64, done_us: u64) {
        self.record_us(done_us.saturating_sub(intended_us));
    }

    /// Records one latency, saturating at `LATENCY_US_MAX`.
    pub fn record_us(&mut self, latency_us: u64) {
        self.histogram
            .saturating_record(latency_us.min(LATENCY_US_MAX));
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share bounds, so adding cannot fail");
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    pub fn reset(&mut self) {
        self.histogram.reset();
    }

    /// Samples at or above `threshold_us`.
    pub fn count_at_or_above(&self, threshold_us: u64) -> u64 {
        let below = self
            .histogram
            .count_between(0, threshold_us.saturating_sub(1));
        self.histogram.len() - below
    }

    pub fn percentiles(&self) -> Percentiles {
        let at = |quantile: f64| self.histogram.value_at_quantile(quantile);
        Percentiles {
            count: self.histogram.len(),
            mean_us: self.histogram.mean(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            p9999_us: at(0.9999),
            max_us: self.histogram.max(),
        }
    }
}

/// The summary every report carries, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut histogram = LatencyHistogram::new();
        for latency_us in 1..=10_000 {
            histogram.record_us(latency_us);
        }
        let summary = histogram.percentiles();
        assert_eq!(summary.count, 10_000);
        assert!((4_990..=5_010).contains(&summary.p50_us), "{summary:?}");
        assert!((9_890..=9_910).contains(&summary.p99_us), "{summary:?}");
        assert!(summary.max_us >= 10_000);
    }

    #[test]
    fn record_since_saturates_and_never_underflows() {
        let mut histogram = LatencyHistogram::new();
        histogram.record_since(100, 50);
        histogram.record_us(u64::MAX);
        assert_eq!(histogram.len(), 2);
        assert_eq!(histogram.count_at_or_above(LATENCY_US_MAX / 2), 1);
    }
}
