//! Read-only memory maps of segment files: the only module with mmap
//! `unsafe`.
//!
//! # Safety contract
//!
//! A mapped file is never truncated while it is mapped. Concretely:
//! - Recovery (`ShardLog::open`) scans a segment through a private map that
//!   it drops before it truncates, zero-fills or re-preallocates the file;
//!   the maps readers get are created after that.
//! - The writer only grows a segment (fallocate), then maps the new length;
//!   old maps stay valid (the file only grew) and live in `Arc`s until the
//!   last reader drops them.
//! - Retention deletes whole files with `unlink`, which leaves existing maps
//!   valid until they are dropped.
//! - Nothing else in Surge opens segment files for writing.
//!
//! Bytes the writer is still appending lie beyond the `written` position a
//! reader is given, and bytes below it are never rewritten, so a reader never
//! sees a byte change under it. `release` only unmaps pages of this shared
//! file mapping: the next access maps the same file bytes again.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};

use super::error::StorageError;

/// A shared, read-only map of a segment file's first `len()` bytes.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMap {
    map: Arc<Mmap>,
}

/// Owner handed to `Bytes::from_owner` so a slice keeps its map alive.
struct MapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0[..]
    }
}

impl SegmentMap {
    /// Maps the first `len` bytes of `file`; the file must be at least that
    /// long (the caller preallocated it).
    pub(crate) fn new(file: &File, len: u64, path: &Path) -> Result<SegmentMap, StorageError> {
        let len_bytes = usize::try_from(len).expect("segment length fits usize");
        // SAFETY: the file is a segment of this log and, per the module
        // contract, is never truncated while mapped; the map is read-only and
        // the bytes a reader may see below `written` are never rewritten.
        let map = unsafe { MmapOptions::new().len(len_bytes).map(file) }
            .map_err(|source| StorageError::io("mmap", path, source))?;
        Ok(SegmentMap { map: Arc::new(map) })
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.map[..]
    }

    /// Unmaps the pages of `start..end` from this process (the page cache
    /// keeps a mapped page), so the cache window can drop them. Advice:
    /// a failure only leaves them mapped.
    pub(crate) fn release(&self, start: usize, end: usize) {
        assert!(
            start <= end && end <= self.map.len(),
            "release within the map"
        );
        // SAFETY: MADV_DONTNEED on a shared, read-only file mapping drops
        // page table entries only; a later access faults the same file
        // bytes back in (from the page cache or the disk), so a reader
        // holding a slice over this range reads the same bytes as before.
        let advised = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
        };
        if let Err(error) = advised {
            tracing::debug!(%error, "releasing mapped log pages failed");
        }
    }

    /// Starts reading `start..end` into the page cache without waiting
    /// for it. Advice: a failure only leaves it to the faults.
    pub(crate) fn prefetch(&self, start: usize, end: usize) {
        assert!(
            start <= end && end <= self.map.len(),
            "prefetch within the map"
        );
        if let Err(error) = self.map.advise_range(Advice::WillNeed, start, end - start) {
            tracing::debug!(%error, "prefetching log pages failed");
        }
    }

    /// A zero-copy `Bytes` over `start..end` that keeps this map alive.
    pub(crate) fn slice(&self, start: usize, end: usize) -> Bytes {
        assert!(start <= end, "slice start {start} after end {end}");
        assert!(end <= self.map.len(), "slice end {end} past the map");
        Bytes::from_owner(MapOwner(Arc::clone(&self.map))).slice(start..end)
    }
}
