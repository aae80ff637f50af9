//! A segment: one `<base>.log` file of concatenated batches, its map and its
//! indexes, as the writer and readers share it; and the scan that recovery
//! uses to find where a segment's valid batches end.

use std::path::Path;

use surge_protocol::batch::{self, BatchHeader, BATCH_HEADER_BYTES};

use super::error::StorageError;
use super::index::SegmentIndex;
use super::mmap::SegmentMap;

/// The state of one segment that readers see (behind the log's lock).
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    /// One past the last offset stored in the segment.
    pub(crate) next_offset: u64,
    /// Bytes of whole batches stored; the map is at least this long.
    pub(crate) written_bytes: u64,
    /// Greatest batch max timestamp in the segment (i64::MIN when empty).
    pub(crate) max_timestamp_ms: i64,
    pub(crate) index: SegmentIndex,
    pub(crate) map: SegmentMap,
}

impl Segment {
    /// Walks batch headers from the indexed batch at or before `offset` to
    /// the batch containing it; returns its position and header.
    pub(crate) fn locate(
        &self,
        offset: u64,
        path: &Path,
    ) -> Result<(u64, BatchHeader), StorageError> {
        let start = self
            .index
            .floor_offset(offset)
            .map_or(0, |entry| u64::from(entry.position));
        let mut walker = HeaderWalker::new(self, start);
        while let Some((position, header)) = walker.next_header(path)? {
            if header.next_offset() > offset {
                return Ok((position, header));
            }
        }
        Err(StorageError::Corrupt {
            path: path.to_owned(),
            position: walker.position,
            reason: format!("offset {offset} not found in segment {}", self.base_offset),
        })
    }
}

/// Steps through the headers of stored (already validated) batches,
/// re-checking each length against the stored bytes so a bug cannot make a
/// reader run past them.
#[derive(Debug)]
pub(crate) struct HeaderWalker<'a> {
    bytes: &'a [u8],
    pub(crate) position: u64,
}

impl<'a> HeaderWalker<'a> {
    pub(crate) fn new(segment: &'a Segment, position: u64) -> HeaderWalker<'a> {
        let end = usize::try_from(segment.written_bytes).expect("segment fits usize");
        HeaderWalker {
            bytes: &segment.map.as_slice()[..end],
            position,
        }
    }

    pub(crate) fn next_header(
        &mut self,
        path: &Path,
    ) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        let at = self.position as usize;
        if at >= self.bytes.len() {
            return Ok(None);
        }
        let rest = &self.bytes[at..];
        if rest.len() < BATCH_HEADER_BYTES {
            return Err(self.corrupt(path, "stored batch header truncated"));
        }
        let header = batch::read_header(rest);
        if header.size < BATCH_HEADER_BYTES || header.size > rest.len() || header.record_count == 0
        {
            return Err(self.corrupt(path, "stored batch length out of bounds"));
        }
        let position = self.position;
        self.position += header.size as u64;
        Ok(Some((position, header)))
    }

    fn corrupt(&self, path: &Path, reason: &str) -> StorageError {
        StorageError::Corrupt {
            path: path.to_owned(),
            position: self.position,
            reason: reason.to_owned(),
        }
    }
}

/// Where a recovery scan of one segment stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// End of the last valid batch.
    pub(crate) valid_bytes: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp_ms: i64,
    /// Why the batch at `valid_bytes` was rejected, if bytes remain there.
    pub(crate) stop_reason: Option<String>,
}

/// Validates batches of `bytes` from `position`, expecting dense base offsets
/// from `next_offset`, and records them in `index`. Stops at the first batch
/// that fails `validate` or has an unexpected base offset.
pub(crate) fn scan(
    bytes: &[u8],
    start: (u64, u64, i64),
    index: &mut SegmentIndex,
    interval_bytes: u32,
    max_batch_bytes: usize,
) -> ScanEnd {
    let (mut position, mut next_offset, mut max_timestamp_ms) = start;
    // Each step consumes at least one batch header, so this is bounded by
    // `bytes.len() / BATCH_HEADER_BYTES` iterations.
    while (position as usize) < bytes.len() {
        let rest = &bytes[position as usize..];
        let header = match batch::validate(rest, max_batch_bytes) {
            Ok(header) => header,
            Err(error) => {
                // Zeros where a header should be: the preallocated end. Only
                // the header is looked at here (a whole tail of zeros is
                // tens of MiB); recovery counts any garbage further on.
                let header_bytes = rest.len().min(BATCH_HEADER_BYTES);
                let reason = if rest[..header_bytes].iter().all(|byte| *byte == 0) {
                    None
                } else {
                    Some(error.to_string())
                };
                return ScanEnd {
                    valid_bytes: position,
                    next_offset,
                    max_timestamp_ms,
                    stop_reason: reason,
                };
            }
        };
        if header.base_offset != next_offset {
            let reason = format!(
                "base offset {} where {next_offset} was expected",
                header.base_offset
            );
            return ScanEnd {
                valid_bytes: position,
                next_offset,
                max_timestamp_ms,
                stop_reason: Some(reason),
            };
        }
        index.observe(
            header.base_offset,
            position,
            max_timestamp_ms,
            interval_bytes,
        );
        max_timestamp_ms = max_timestamp_ms.max(header.max_timestamp_ms);
        next_offset = header.next_offset();
        position += header.size as u64;
    }
    ScanEnd {
        valid_bytes: position,
        next_offset,
        max_timestamp_ms,
        stop_reason: None,
    }
}

/// Bytes after `valid_bytes` up to the last non-zero byte: what a
/// truncation at `valid_bytes` drops (preallocated zeros do not count).
/// Bytes from `valid_bytes` up to the last non-zero byte of the file: what
/// recovery drops. Read with pread in large chunks: a segment's tail is
/// mostly preallocated zeros, and faulting tens of MiB of them in through a
/// map page by page made opening a shard take seconds.
pub(crate) fn dropped_bytes_in_file(
    file: &std::fs::File,
    valid_bytes: u64,
    len_bytes: u64,
) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const CHUNK_BYTES: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut position = valid_bytes;
    let mut last_nonzero_end = valid_bytes;
    while position < len_bytes {
        let want = (len_bytes - position).min(CHUNK_BYTES as u64) as usize;
        let read = file.read_at(&mut buf[..want], position)?;
        if read == 0 {
            break;
        }
        if let Some(last) = buf[..read].iter().rposition(|byte| *byte != 0) {
            last_nonzero_end = position + last as u64 + 1;
        }
        position += read as u64;
    }
    Ok(last_nonzero_end - valid_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use surge_protocol::batch::BatchBuilder;

    fn batch_at(base_offset: u64, records: u32) -> Vec<u8> {
        let mut builder = BatchBuilder::new(0, 0, 0);
        for record in 0..records {
            builder.push(
                1_000 + i64::from(record),
                Some(b"k"),
                b"value",
                &[("type", b"x")],
            );
        }
        let mut bytes = BytesMut::from(&builder.finish()[..]);
        batch::set_base_offset(&mut bytes, base_offset);
        bytes.to_vec()
    }

    #[test]
    fn scan_stops_at_zeros_without_a_reason() {
        let mut bytes = [batch_at(10, 2), batch_at(12, 1)].concat();
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 300]);
        let mut index = SegmentIndex::new(10);
        let end = scan(&bytes, (0, 10, i64::MIN), &mut index, 64, 1 << 20);
        assert_eq!(end.valid_bytes, whole);
        assert_eq!(end.next_offset, 13);
        assert_eq!(end.max_timestamp_ms, 1_001);
        assert_eq!(end.stop_reason, None);
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let len = bytes.len() as u64;
        assert_eq!(
            dropped_bytes_in_file(&file, end.valid_bytes, len).unwrap(),
            0
        );
        assert_eq!(index.entries().len(), 2);
    }

    #[test]
    fn scan_stops_at_a_non_dense_offset_or_garbage() {
        let first = batch_at(10, 2);
        let bytes = [first.clone(), batch_at(13, 1)].concat();
        let end = scan(
            &bytes,
            (0, 10, i64::MIN),
            &mut SegmentIndex::new(10),
            64,
            1 << 20,
        );
        assert_eq!(end.valid_bytes, first.len() as u64);
        assert!(end.stop_reason.unwrap().contains("expected"));
        let mut garbage = [first.clone(), vec![0; 10]].concat();
        garbage.push(7);
        let end = scan(
            &garbage,
            (0, 10, i64::MIN),
            &mut SegmentIndex::new(10),
            64,
            1 << 20,
        );
        assert_eq!(end.valid_bytes, first.len() as u64);
        assert!(end.stop_reason.is_some());
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &garbage).unwrap();
        let len = garbage.len() as u64;
        assert_eq!(
            dropped_bytes_in_file(&file, end.valid_bytes, len).unwrap(),
            11
        );
    }
}
