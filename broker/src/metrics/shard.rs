//! One shard's counters: appended events and bytes, the event-size and
//! event-type mix, append and fsync latency. Everything is an atomic the
//! owner thread or a connection task bumps once per batch; nothing here
//! takes a lock on the append path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use surge_autoscaler::SIZE_BOUNDS;

use super::latency::LatencyHistogram;

/// Distinct event types tracked per shard; more fold into "" (other).
pub const TYPE_SLOTS: usize = 32;
/// Longest type name tracked; a longer one counts as "" (other).
pub const TYPE_NAME_MAX_BYTES: usize = 64;

#[derive(Debug)]
struct TypeSlot {
    name: OnceLock<Box<str>>,
    count: AtomicU64,
}

#[derive(Debug)]
pub struct ShardMetrics {
    events: AtomicU64,
    bytes: AtomicU64,
    size_buckets: [AtomicU64; SIZE_BOUNDS.len() + 1],
    /// Claimed first come, first served; a claimed slot keeps its name.
    types: [TypeSlot; TYPE_SLOTS],
    other_types: AtomicU64,
    /// Enqueue to acknowledgement, as the owner thread sees it.
    pub append_latency: LatencyHistogram,
    /// One group commit's write plus fdatasync.
    pub fsync_latency: LatencyHistogram,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            size_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            types: std::array::from_fn(|_| TypeSlot {
                name: OnceLock::new(),
                count: AtomicU64::new(0),
            }),
            other_types: AtomicU64::new(0),
            append_latency: LatencyHistogram::default(),
            fsync_latency: LatencyHistogram::default(),
        }
    }
}

/// Index of the `SIZE_BOUNDS` bucket holding an event of `bytes`.
fn size_bucket(bytes: u64) -> usize {
    SIZE_BOUNDS
        .iter()
        .position(|&bound| bytes <= u64::from(bound))
        .unwrap_or(SIZE_BOUNDS.len())
}

impl ShardMetrics {
    /// One stored batch of `events` events in `bytes` bytes. The size mix
    /// uses the batch's mean event size: per-event sizes would mean parsing
    /// every record on the owner thread.
    pub fn record_batch(&self, events: u64, bytes: u64) {
        if events == 0 {
            return;
        }
        self.events.fetch_add(events, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.size_buckets[size_bucket(bytes / events)].fetch_add(events, Ordering::Relaxed);
    }

    /// `weight` events of type `name` ("" for events without a type).
    pub fn record_type(&self, name: &[u8], weight: u64) {
        let Ok(name) = std::str::from_utf8(name) else {
            self.other_types.fetch_add(weight, Ordering::Relaxed);
            return;
        };
        if name.is_empty() || name.len() > TYPE_NAME_MAX_BYTES {
            self.other_types.fetch_add(weight, Ordering::Relaxed);
            return;
        }
        for slot in &self.types {
            let claimed = slot.name.get_or_init(|| name.into());
            if claimed.as_ref() == name {
                slot.count.fetch_add(weight, Ordering::Relaxed);
                return;
            }
        }
        self.other_types.fetch_add(weight, Ordering::Relaxed);
    }

    pub fn record_append_latency(&self, latency: Duration) {
        self.append_latency.record(latency);
    }

    pub fn record_fsync_latency(&self, latency: Duration) {
        self.fsync_latency.record(latency);
    }

    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn size_buckets(&self) -> Vec<u64> {
        self.size_buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect()
    }

    /// Counts per type name, "" (other and untyped) last when non-zero.
    pub fn types(&self) -> Vec<(String, u64)> {
        let mut types: Vec<(String, u64)> = self
            .types
            .iter()
            .filter_map(|slot| {
                let name = slot.name.get()?;
                Some((name.to_string(), slot.count.load(Ordering::Relaxed)))
            })
            .collect();
        let other = self.other_types.load(Ordering::Relaxed);
        if other > 0 {
            types.push((String::new(), other));
        }
        types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_count_events_bytes_and_mean_size() {
        let metrics = ShardMetrics::default();
        metrics.record_batch(10, 1000);
        metrics.record_batch(2, 20_000);
        metrics.record_batch(0, 50);
        assert_eq!(metrics.events(), 12);
        assert_eq!(metrics.bytes(), 21_000);
        let buckets = metrics.size_buckets();
        assert_eq!(buckets.len(), SIZE_BOUNDS.len() + 1);
        assert_eq!(buckets[size_bucket(100)], 10);
        assert_eq!(buckets[size_bucket(10_000)], 2);
        assert_eq!(size_bucket(64), 0);
        assert_eq!(size_bucket(65), 1);
        assert_eq!(size_bucket(1 << 20), SIZE_BOUNDS.len());
    }

    #[test]
    fn type_table_is_bounded_and_folds_the_rest() {
        let metrics = ShardMetrics::default();
        for index in 0..TYPE_SLOTS + 5 {
            metrics.record_type(format!("type-{index}").as_bytes(), 2);
        }
        metrics.record_type(b"type-0", 1);
        metrics.record_type(b"", 1);
        metrics.record_type(&[0xff, 0xfe], 1);
        metrics.record_type(&[b'x'; TYPE_NAME_MAX_BYTES + 1], 1);
        let types = metrics.types();
        assert_eq!(types.len(), TYPE_SLOTS + 1);
        assert_eq!(types[0], ("type-0".to_owned(), 3));
        assert_eq!(types.last().unwrap(), &(String::new(), 5 * 2 + 3));
    }
}
