//! Configuration of one shard log and the limits storage enforces.
//!
//! Owns `LogConfig` (per-log knobs with defaults), `IoChoice` (which write
//! path to use) and the compile-time limits that bound every loop and every
//! length storage reads from disk.

use surge_protocol::batch::{BATCH_HEADER_BYTES, MAX_BATCH_BYTES};

/// Most segments one shard log may hold; opening or rolling past it fails.
pub const MAX_SEGMENTS_PER_SHARD: usize = 65_536;
/// Most idempotent producers remembered per shard (least recently used evicted).
pub const MAX_PRODUCERS_PER_SHARD: usize = 10_000;
/// Largest segment a log may be configured with: positions are stored as u32.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// Smallest sparse-index step, so an index cannot outgrow its segment.
pub const MIN_INDEX_INTERVAL_BYTES: u32 = 64;

const _: () = assert!(MAX_BATCH_BYTES as u64 <= MAX_SEGMENT_BYTES);
const _: () = assert!(MIN_INDEX_INTERVAL_BYTES as usize <= BATCH_HEADER_BYTES * 2);

/// Knobs of one shard log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (0 = never).
    pub segment_ms: u64,
    /// 0 = unlimited; delete oldest whole segments beyond this total size.
    pub retention_bytes: u64,
    /// 0 = unlimited; delete segments whose newest record is older.
    pub retention_ms: u64,
    /// Sparse index granularity.
    pub index_interval_bytes: u32,
    /// fallocate step, clamped to `segment_bytes`.
    pub preallocate_bytes: u64,
    /// Bound for any batch length read from disk.
    pub max_batch_bytes: usize,
    /// Newest bytes kept in the page cache; older durable data is dropped
    /// from it (`pages`). 0: the kernel decides.
    pub cache_window_bytes: u64,
}

/// The default `cache_window_bytes`: a tail reader up to this far behind
/// the end reads from memory.
pub const DEFAULT_CACHE_WINDOW_BYTES: u64 = 128 << 20;

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 256 << 20,
            segment_ms: 0,
            retention_bytes: 0,
            retention_ms: 0,
            index_interval_bytes: 4096,
            preallocate_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
            cache_window_bytes: DEFAULT_CACHE_WINDOW_BYTES,
        }
    }
}

impl LogConfig {
    /// The config with every knob clamped into the range storage supports.
    pub(crate) fn normalized(&self) -> LogConfig {
        let max_batch_bytes = self
            .max_batch_bytes
            .clamp(BATCH_HEADER_BYTES, MAX_BATCH_BYTES);
        let segment_bytes = self
            .segment_bytes
            .clamp(max_batch_bytes as u64, MAX_SEGMENT_BYTES);
        LogConfig {
            segment_bytes,
            segment_ms: self.segment_ms,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            index_interval_bytes: self.index_interval_bytes.max(MIN_INDEX_INTERVAL_BYTES),
            preallocate_bytes: self.preallocate_bytes.clamp(4096, segment_bytes),
            max_batch_bytes,
            cache_window_bytes: self.cache_window_bytes,
        }
    }
}

/// Which write path `IoBackend::new` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring when the kernel allows it, else pwrite (the reason is logged).
    Auto,
    /// io_uring or an error.
    Uring,
    /// pwrite + fdatasync.
    Pwrite,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_clamps_into_supported_ranges() {
        let config = LogConfig {
            segment_bytes: 1,
            preallocate_bytes: u64::MAX,
            index_interval_bytes: 0,
            max_batch_bytes: usize::MAX,
            ..LogConfig::default()
        }
        .normalized();
        assert_eq!(config.max_batch_bytes, MAX_BATCH_BYTES);
        assert_eq!(config.segment_bytes, MAX_BATCH_BYTES as u64);
        assert_eq!(config.preallocate_bytes, config.segment_bytes);
        assert_eq!(config.index_interval_bytes, MIN_INDEX_INTERVAL_BYTES);
    }
}
