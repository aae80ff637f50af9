//! Reads of a shard log, concurrent with its single writer: `LogReader` is a
//! cheap clone over the log's shared state (segments, their maps and
//! indexes, the log start) and returns zero-copy `Bytes` slices of the maps.
//!
//! The writer changes the shared state under a write lock only after bytes
//! are in the file, so a reader sees whole batches only; the caller bounds a
//! read by `visible_end` (the flushed or written offset it may serve).
//!
//! Every batch is checksummed again as it is read (CRC32C runs at several
//! GB/s), so bytes damaged on disk after recovery are never served: a read
//! stops before a damaged batch, and a read that starts at one fails.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::error::StorageError;
use super::files;
use super::segment::{HeaderWalker, Segment};

/// The state the writer shares with readers.
#[derive(Debug)]
pub(crate) struct LogState {
    pub(crate) dir: PathBuf,
    pub(crate) log_start_offset: u64,
    /// Oldest first; the last one is active. Never empty.
    pub(crate) segments: Vec<Segment>,
}

impl LogState {
    pub(crate) fn written_offset(&self) -> u64 {
        self.segments
            .last()
            .expect("a log has a segment")
            .next_offset
    }

    /// The segment holding `offset`, which must lie in the log.
    fn segment_for(&self, offset: u64) -> &Segment {
        let at = self
            .segments
            .partition_point(|segment| segment.base_offset <= offset);
        &self.segments[at.checked_sub(1).expect("offset at or after the log start")]
    }

    fn segment_path(&self, segment: &Segment) -> PathBuf {
        files::offset_path(&self.dir, segment.base_offset, files::LOG_SUFFIX)
    }
}

/// Whole batches read from the log, and the offset to read next.
#[derive(Debug, Clone)]
pub struct ReadChunk {
    pub bytes: Bytes,
    pub next_offset: u64,
}

/// What a read asks the kernel to bring into the page cache after the
/// chunk it returns. A reader behind the page-cache window (`pages`) would
/// otherwise fault the segment in a few pages at a time: catching up on
/// 2 GB from disk ran at about 410 MB/s that way, and at 694 MB/s with
/// this (BENCHMARKS.md). For a reader at the end it is empty.
const PREFETCH_BYTES: u64 = 8 << 20;

/// A handle that serves reads concurrently with the writer.
#[derive(Debug, Clone)]
pub struct LogReader {
    pub(crate) state: Arc<RwLock<LogState>>,
}

impl LogReader {
    /// Whole batches from the one containing `offset`, up to `visible_end`
    /// and `max_bytes` (the first batch is returned whole regardless). Stays
    /// within one segment; `next_offset` says where to continue.
    pub fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        visible_end: u64,
    ) -> Result<ReadChunk, StorageError> {
        let state = self.state.read();
        let end = visible_end.min(state.written_offset());
        if offset < state.log_start_offset || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start: state.log_start_offset,
                end,
            });
        }
        let empty = ReadChunk {
            bytes: Bytes::new(),
            next_offset: offset,
        };
        if offset == end {
            return Ok(empty);
        }
        let segment = state.segment_for(offset);
        let path = state.segment_path(segment);
        let (start_position, _) = segment.locate(offset, &path)?;
        let mut walker = HeaderWalker::new(segment, start_position);
        let mut end_position = start_position;
        let mut next_offset = offset;
        while let Some((position, header)) = walker.next_header(&path)? {
            let taken_bytes = (position + header.size as u64 - start_position) as usize;
            let first_batch = position == start_position;
            if header.next_offset() > end || (!first_batch && taken_bytes > max_bytes) {
                break;
            }
            if let Err(reason) = check_stored(segment, position, &header, first_batch, next_offset)
            {
                if !first_batch {
                    break;
                }
                tracing::error!(path = %path.display(), position, %reason, "damaged batch on disk");
                return Err(StorageError::Corrupt {
                    path,
                    position,
                    reason,
                });
            }
            end_position = position + header.size as u64;
            next_offset = header.next_offset();
        }
        if end_position == start_position {
            // Below the visible end there is always a batch to serve; finding
            // none means the bytes there are damaged.
            return Err(StorageError::Corrupt {
                path,
                position: start_position,
                reason: format!("no readable batch holds offset {offset} below the end {end}"),
            });
        }
        let bytes = segment
            .map
            .slice(start_position as usize, end_position as usize);
        let ahead = (end_position + PREFETCH_BYTES).min(segment.written_bytes);
        if ahead > end_position {
            segment.map.prefetch(end_position as usize, ahead as usize);
        }
        Ok(ReadChunk { bytes, next_offset })
    }

    /// The base offset of the first batch whose max timestamp is at least
    /// `timestamp_ms`, or `None` if no visible batch has one.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
        visible_end: u64,
    ) -> Result<Option<u64>, StorageError> {
        let state = self.state.read();
        let Some(segment) = state
            .segments
            .iter()
            .find(|segment| segment.max_timestamp_ms >= timestamp_ms)
        else {
            return Ok(None);
        };
        let path = state.segment_path(segment);
        let start = segment
            .index
            .floor_timestamp(timestamp_ms)
            .map_or(0, |entry| u64::from(entry.position));
        let mut walker = HeaderWalker::new(segment, start);
        while let Some((_, header)) = walker.next_header(&path)? {
            if header.next_offset() > visible_end {
                return Ok(None);
            }
            if header.max_timestamp_ms >= timestamp_ms {
                return Ok(Some(header.base_offset));
            }
        }
        Ok(None)
    }

    pub fn log_start_offset(&self) -> u64 {
        self.state.read().log_start_offset
    }
}

/// The checks a stored batch passes before it is served: its base offset
/// continues the read (the first one holds the requested offset), and its
/// checksum matches.
fn check_stored(
    segment: &Segment,
    position: u64,
    header: &surge_protocol::batch::BatchHeader,
    first_batch: bool,
    expected: u64,
) -> Result<(), String> {
    let in_place = if first_batch {
        header.base_offset <= expected && expected < header.next_offset()
    } else {
        header.base_offset == expected
    };
    if !in_place {
        return Err(format!(
            "batch at base offset {} where offset {expected} was expected",
            header.base_offset
        ));
    }
    let bytes = &segment.map.as_slice()[position as usize..];
    surge_protocol::batch::verify_checksum(bytes, header.size).map_err(|err| err.to_string())
}
