//! A compact histogram of the key hashes a shard receives, so a split
//! without an explicit point cuts at the weighted median: a skewed shard
//! splits into two equally loaded halves, not two equal ranges.
//!
//! 256 buckets over the shard's hash range, lock-free counters, halved when
//! the total passes a bound so the picture follows recent traffic.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 256;
/// Past this many samples every bucket is halved.
const DECAY_TOTAL: u64 = 1 << 20;

#[derive(Debug)]
pub struct KeyHistogram {
    start: u64,
    end: u64,
    buckets: [AtomicU64; BUCKETS],
    total: AtomicU64,
}

impl KeyHistogram {
    pub fn new(start: u64, end: u64) -> KeyHistogram {
        assert!(start <= end, "hash range {start:#x}..={end:#x} is empty");
        KeyHistogram {
            start,
            end,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            total: AtomicU64::new(0),
        }
    }

    fn width(&self) -> u128 {
        u128::from(self.end - self.start) + 1
    }

    pub fn record(&self, hash: u64) {
        if !(self.start..=self.end).contains(&hash) {
            return;
        }
        let bucket = (u128::from(hash - self.start) * BUCKETS as u128 / self.width()) as usize;
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if self.total.fetch_add(1, Ordering::Relaxed) + 1 >= DECAY_TOTAL {
            self.decay();
        }
    }

    fn decay(&self) {
        let mut total = 0;
        for bucket in &self.buckets {
            let halved = bucket.load(Ordering::Relaxed) / 2;
            bucket.store(halved, Ordering::Relaxed);
            total += halved;
        }
        self.total.store(total, Ordering::Relaxed);
    }

    /// The hash that splits the recorded load in two, interpolated inside
    /// its bucket; `None` without samples. Always in `(start, end]`, so it
    /// is a valid split point whenever the range holds two hashes.
    pub fn weighted_median(&self) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 || self.start == self.end {
            return None;
        }
        let half = total as f64 / 2.0;
        let mut below = 0.0;
        let bucket_width = self.width() as f64 / BUCKETS as f64;
        for (index, &count) in counts.iter().enumerate() {
            let count = count as f64;
            if count > 0.0 && below + count >= half {
                let fraction = (half - below) / count;
                let offset = (index as f64 + fraction) * bucket_width;
                let at = self.start as f64 + offset;
                let at = (at as u128).clamp(u128::from(self.start) + 1, u128::from(self.end));
                return Some(at as u64);
            }
            below += count;
        }
        None
    }

    /// The non-empty buckets as (first hash, weight), in hash order.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(index, bucket)| (index, bucket.load(Ordering::Relaxed)))
            .filter(|(_, weight)| *weight > 0)
            .map(|(index, weight)| {
                // The first hash `record` maps to this bucket.
                let offset = (index as u128 * self.width()).div_ceil(BUCKETS as u128);
                ((u128::from(self.start) + offset) as u64, weight)
            })
            .collect()
    }

    /// The middle of the range: the split point when nothing was recorded.
    pub fn midpoint(&self) -> u64 {
        (self.start + ((self.end - self.start) / 2))
            .saturating_add(1)
            .min(self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_load_splits_near_the_middle() {
        let histogram = KeyHistogram::new(0, u64::MAX);
        for index in 0..10_000u64 {
            histogram.record(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        let buckets = histogram.buckets();
        assert_eq!(buckets.len(), BUCKETS, "uniform keys reach every bucket");
        assert!(buckets.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(
            buckets.iter().map(|(_, weight)| weight).sum::<u64>(),
            10_000
        );
        let median = histogram.weighted_median().unwrap();
        let middle = u64::MAX / 2;
        assert!(median.abs_diff(middle) < u64::MAX / 50, "{median:#x}");
    }

    #[test]
    fn skewed_load_splits_into_equal_halves_of_load() {
        let histogram = KeyHistogram::new(1000, 1000 + (1 << 40));
        let mut samples = Vec::new();
        // 90% of the traffic in the lowest tenth of the range.
        for index in 0..9_000u64 {
            samples.push(1000 + index * ((1 << 36) / 9_000));
        }
        for index in 0..1_000u64 {
            samples.push(1000 + (1 << 36) + index * ((1 << 40) - (1 << 36)) / 1_000);
        }
        for &hash in &samples {
            histogram.record(hash);
        }
        let median = histogram.weighted_median().unwrap();
        let below = samples.iter().filter(|&&hash| hash < median).count();
        assert!(
            (4_700..=5_300).contains(&below),
            "{below} of 10000 below {median}"
        );
        assert!(
            median < 1000 + (1 << 37),
            "a midpoint split would be at 2^39"
        );
    }

    #[test]
    fn median_is_a_valid_split_point_and_empty_has_none() {
        let histogram = KeyHistogram::new(50, 60);
        assert_eq!(histogram.weighted_median(), None);
        histogram.record(50);
        let at = histogram.weighted_median().unwrap();
        assert!(at > 50 && at <= 60);
        assert!(histogram.midpoint() > 50 && histogram.midpoint() <= 60);
        histogram.record(9999);
        assert_eq!(
            histogram.total.load(Ordering::Relaxed),
            1,
            "out-of-range hashes are ignored"
        );
    }

    #[test]
    fn decay_halves_old_counts() {
        let histogram = KeyHistogram::new(0, 255);
        for _ in 0..DECAY_TOTAL {
            histogram.record(0);
        }
        assert!(histogram.total.load(Ordering::Relaxed) <= DECAY_TOTAL / 2 + 1);
    }
}
