//! A lock-free latency histogram: power-of-two microsecond buckets of
//! atomic counters, cheap enough to record on every group commit. Counts
//! are cumulative (Prometheus exports them as they are); the autoscaler's
//! "recent p99" is taken over the difference between two snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket `i` counts latencies up to `2^i` microseconds; the last one also
/// takes everything longer (2^24 us is about 17 s).
pub const LATENCY_BUCKETS: usize = 25;

#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Upper bound (inclusive) of bucket `index`, in microseconds.
pub fn bucket_bound_us(index: usize) -> u64 {
    1u64 << index.min(63)
}

fn bucket_of(micros: u64) -> usize {
    // The smallest i with micros <= 2^i.
    let index = match micros {
        0 | 1 => 0,
        _ => (64 - (micros - 1).leading_zeros()) as usize,
    };
    index.min(LATENCY_BUCKETS - 1)
}

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The cumulative counts per bucket (not summed across buckets).
    pub fn snapshot(&self) -> [u64; LATENCY_BUCKETS] {
        std::array::from_fn(|index| self.buckets[index].load(Ordering::Relaxed))
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }
}

/// The 99th percentile (as its bucket's upper bound) of what was recorded
/// between snapshots `before` and `now`; 0 when nothing was.
pub fn p99_between(before: &[u64; LATENCY_BUCKETS], now: &[u64; LATENCY_BUCKETS]) -> u64 {
    let deltas: Vec<u64> = now
        .iter()
        .zip(before)
        .map(|(now, before)| now.saturating_sub(*before))
        .collect();
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return 0;
    }
    // The first bucket at which at least 99% of the samples are counted.
    let needed = total - total / 100;
    let mut seen = 0;
    for (index, count) in deltas.iter().enumerate() {
        seen += count;
        if seen >= needed {
            return bucket_bound_us(index);
        }
    }
    bucket_bound_us(LATENCY_BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(1024), 10);
        assert_eq!(bucket_of(1025), 11);
        assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn p99_follows_the_window_not_the_whole_history() {
        let histogram = LatencyHistogram::default();
        for _ in 0..1000 {
            histogram.record(Duration::from_micros(100));
        }
        let first = histogram.snapshot();
        assert_eq!(p99_between(&[0; LATENCY_BUCKETS], &first), 128);
        for _ in 0..98 {
            histogram.record(Duration::from_micros(10));
        }
        for _ in 0..2 {
            histogram.record(Duration::from_millis(5));
        }
        let second = histogram.snapshot();
        assert_eq!(p99_between(&first, &second), 8192);
        assert_eq!(p99_between(&second, &second), 0);
        assert_eq!(histogram.sum_us(), 100_000 + 980 + 10_000);
    }
}
