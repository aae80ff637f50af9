//! Shared fixtures for the criterion benchmarks in `benches/`: deterministic
//! record batches, append groups and produce requests, the criterion
//! settings every bench uses, and a small latency recorder that prints the
//! percentiles criterion does not.
//!
//! # Layout
//!
//! - `benches/codec.rs`: produce request encode/decode, batch build,
//!   `validate` and `verify_checksum`.
//! - `benches/append.rs`: `ShardLog::append` per write path and sync mode,
//!   raw fdatasync latency, zero-copy reads and offset lookups.
//! - `benches/routing.rs`: `key_hash` and the hash-range shard lookup.
//! - `benches/forecast.rs`: a forecaster's refit on 90 days of minute
//!   history, and each candidate model's fit.
//!
//! Everything here is built once, outside the timed loops, so a bench
//! measures only the call it names.

use std::time::Duration;

use bytes::Bytes;
use surge_protocol::batch::{BatchBuilder, Checked, MAX_BATCH_BYTES};
use surge_protocol::produce::{Acks, ProducePart, ProduceRequest};

/// Key length of every fixture record: a UUID-sized key.
pub const KEY_BYTES: usize = 16;
/// Most latency samples a `LatencyLog` keeps; later ones are dropped.
pub const MAX_LATENCY_SAMPLES: usize = 1 << 20;

/// Criterion settings every bench uses. Short runs: the build machine has
/// two shared cores, and the whole suite should finish in a few minutes.
/// (Criterion is a dev-dependency, so the benches build their `Criterion`
/// from these rather than this library building it.)
pub const WARM_UP_TIME: Duration = Duration::from_millis(500);
pub const MEASUREMENT_TIME: Duration = Duration::from_secs(2);
pub const SAMPLE_SIZE: usize = 30;
/// Fewer samples for benches whose single iteration is milliseconds
/// (anything with an fdatasync), so they stay within a few seconds.
pub const SLOW_SAMPLE_SIZE: usize = 10;

/// A value of `len` bytes whose content depends on `seed` (not all zeros,
/// so nothing downstream can shortcut on it).
pub fn value(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u64).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect()
}

/// The 16-byte key of record `index`.
pub fn key(index: u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(&index.to_le_bytes());
    key[8..].copy_from_slice(&index.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    key
}

/// A sealed batch of `record_count` keyed records of `value_bytes` each.
/// `producer_id` 0 means "not idempotent", so the same batch can be
/// appended again and again without being judged a duplicate.
pub fn batch(record_count: usize, value_bytes: usize) -> Bytes {
    assert!(record_count > 0, "a batch needs at least one record");
    let payload = value(value_bytes, record_count as u64);
    let mut builder = BatchBuilder::new(0, 0, 0);
    for index in 0..record_count as u64 {
        builder.push(
            1_700_000_000_000 + index as i64,
            Some(&key(index)),
            &payload,
            &[],
        );
    }
    builder.finish()
}

/// A batch of `value_bytes` records, as many as fit in `target_bytes`.
pub fn batch_of_size(target_bytes: usize, value_bytes: usize) -> Bytes {
    let record_bytes = BatchBuilder::record_size(Some(&[0; KEY_BYTES]), &vec![0; value_bytes], &[]);
    let record_count = (target_bytes - surge_protocol::batch::BATCH_HEADER_BYTES) / record_bytes;
    batch(record_count.max(1), value_bytes)
}

/// `batch_count` copies of one batch: what a shard's group commit hands to
/// `ShardLog::append` in one call.
pub fn group(batch_count: usize, records_per_batch: usize, value_bytes: usize) -> Vec<Checked> {
    let one = Checked::new(batch(records_per_batch, value_bytes), MAX_BATCH_BYTES)
        .expect("a built batch checks");
    vec![one; batch_count]
}

/// Total bytes of a group of batches.
pub fn group_bytes(batches: &[Checked]) -> u64 {
    batches.iter().map(|batch| batch.bytes().len() as u64).sum()
}

/// A produce request with `part_count` parts, each carrying `batch`.
pub fn produce_request(part_count: usize, batch: &Bytes) -> ProduceRequest {
    ProduceRequest {
        stream: "bench-events".to_owned(),
        acks: Acks::Write,
        timeout_ms: 30_000,
        parts: (0..part_count as u32)
            .map(|shard_id| ProducePart {
                shard_id,
                batch: batch.clone(),
            })
            .collect(),
    }
}

/// Per-operation latencies gathered inside `iter_custom`, summarised as
/// percentiles (criterion reports means and medians of samples, not of
/// single operations).
#[derive(Debug, Default)]
pub struct LatencyLog {
    samples: Vec<Duration>,
}

impl LatencyLog {
    pub fn record(&mut self, latency: Duration) {
        if self.samples.len() < MAX_LATENCY_SAMPLES {
            self.samples.push(latency);
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `quantile` (0.0..=1.0) latency, nearest rank; `None` when empty.
    pub fn percentile(&self, quantile: f64) -> Option<Duration> {
        assert!((0.0..=1.0).contains(&quantile), "quantile in 0..=1");
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        let rank = (quantile * last as f64).round() as usize;
        sorted.get(rank).copied()
    }

    /// "n=… p50=…us p90=…us p99=…us max=…us".
    pub fn summary(&self) -> String {
        let micros = |quantile: f64| {
            self.percentile(quantile)
                .map_or(f64::NAN, |latency| latency.as_secs_f64() * 1e6)
        };
        format!(
            "n={} p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
            self.len(),
            micros(0.5),
            micros(0.9),
            micros(0.99),
            micros(1.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_protocol::batch::validate;

    #[test]
    fn fixtures_are_valid_batches_of_the_asked_size() {
        for (target, value_bytes) in [(64 << 10, 1024), (1 << 20, 100)] {
            let bytes = batch_of_size(target, value_bytes);
            assert!(bytes.len() <= target, "{} > {target}", bytes.len());
            assert!(bytes.len() > target * 9 / 10, "{} << {target}", bytes.len());
            validate(&bytes, MAX_BATCH_BYTES).expect("fixture batch is valid");
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut log = LatencyLog::default();
        assert_eq!(log.percentile(0.5), None);
        for micros in (1..=100).rev() {
            log.record(Duration::from_micros(micros));
        }
        assert_eq!(log.percentile(0.0), Some(Duration::from_micros(1)));
        assert_eq!(log.percentile(1.0), Some(Duration::from_micros(100)));
        assert_eq!(log.percentile(0.5), Some(Duration::from_micros(51)));
    }
}
