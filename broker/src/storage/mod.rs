//! Shard logs on disk: each shard is a directory of segments (batches stored
//! verbatim, base offsets patched), sparse offset and time indexes, and
//! idempotent-producer snapshots.
//!
//! # Layout
//!
//! - `config`: `LogConfig`, `IoChoice` and the storage limits.
//! - `error`: `StorageError`.
//! - `io`: `IoBackend`, the write path (io_uring or pwrite).
//! - `log`: `ShardLog`, the single writer: append, roll, sync, retention.
//! - `chunk`: a group's batches for one segment, as one gather write.
//! - `reader`: `LogReader`, concurrent zero-copy reads.
//! - `recovery`: opening a directory, truncating invalid tails.
//! - `segment`: a segment's shared state and the recovery scan.
//! - `index`: the sparse offset and time index files.
//! - `producers`: the idempotent-producer table keyed by (producer, origin
//!   shard), what successors inherit (`ProducerState`), its snapshot file.
//! - `pooled`: empty logs made durable ahead of time for successors.
//! - `pages`: a log's pages once written: early writeback, and the
//!   page-cache window that drops old durable ones.
//! - `files`: file naming and crash-safe file writes.
//! - `mmap`, `sys`: the only `unsafe` (mmap; fallocate, fadvise and
//!   io_uring).

mod chunk;
mod config;
mod error;
mod files;
mod index;
mod io;
mod log;
mod mmap;
mod pages;
mod pooled;
mod producers;
mod reader;
mod recovery;
mod segment;
mod sys;

#[cfg(test)]
mod tests;

pub use config::{
    IoChoice, LogConfig, DEFAULT_CACHE_WINDOW_BYTES, MAX_PRODUCERS_PER_SHARD,
    MAX_SEGMENTS_PER_SHARD,
};
pub use error::{is_disk_full, StorageError};
pub use io::IoBackend;
pub use log::{AppendOutcome, RecoveryReport, ShardLog, SyncJob, Synced};
pub use pooled::{check_pooled, create_pooled};
pub use producers::{ProducerKey, ProducerState};
pub use reader::{LogReader, ReadChunk};
pub use recovery::Truncation;
