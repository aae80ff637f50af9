//! The sparse offset index and time index of one segment: in memory while
//! the segment is active, persisted crash-safely when it is sealed and at
//! close, loaded (or rebuilt by the caller) at open.
//!
//! An entry is taken for the first batch of a segment and then for the first
//! batch starting at least `index_interval_bytes` after the previous entry.
//! Offset and time entries are taken together, so entry `i` of both files
//! names the same batch.
//!
//! ```text
//! index file header (24 bytes, little-endian), both files
//! +0  [u8; 4] magic            "SGOI" offset index, "SGTI" time index
//! +4  u16     version          1
//! +6  u16     entry_bytes      8 offset index, 12 time index
//! +8  u64     base_offset      the segment's base offset
//! +16 u32     entry_count
//! +20 u32     crc32c           over bytes 0..20, then every entry
//! +24 entries
//!
//! offset index entry (8 bytes)
//! +0  u32 relative_offset      batch base_offset - segment base_offset
//! +4  u32 position             byte position of the batch in the segment
//!
//! time index entry (12 bytes)
//! +0  i64 max_timestamp_before_ms  greatest max_timestamp of every batch
//!                                  before this one in the segment
//!                                  (i64::MIN for the first)
//! +8  u32 relative_offset
//! ```
//!
//! Both sequences are nondecreasing (positions and offsets strictly
//! increasing), which a loader checks before trusting a file.

use std::path::Path;

use super::config::{MAX_SEGMENT_BYTES, MIN_INDEX_INTERVAL_BYTES};
use super::error::StorageError;
use super::files;

pub(crate) const INDEX_HEADER_BYTES: usize = 24;
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
pub(crate) const TIME_ENTRY_BYTES: usize = 12;
const OFFSET_MAGIC: [u8; 4] = *b"SGOI";
const TIME_MAGIC: [u8; 4] = *b"SGTI";
const INDEX_VERSION: u16 = 1;
/// Most entries any index can hold: one per minimal interval of the largest
/// segment, plus the first.
const MAX_INDEX_ENTRIES: u64 = MAX_SEGMENT_BYTES / MIN_INDEX_INTERVAL_BYTES as u64 + 1;

const _: () = assert!(INDEX_HEADER_BYTES == 4 + 2 + 2 + 8 + 4 + 4);
const _: () = assert!(OFFSET_ENTRY_BYTES == 4 + 4);
const _: () = assert!(TIME_ENTRY_BYTES == 8 + 4);
const _: () = assert!(MAX_INDEX_ENTRIES <= u32::MAX as u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
    pub(crate) max_timestamp_before_ms: i64,
}

/// The in-memory indexes of one segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentIndex {
    base_offset: u64,
    entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    pub(crate) fn new(base_offset: u64) -> SegmentIndex {
        SegmentIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    /// Records the batch at `position` if it starts a new interval.
    pub(crate) fn observe(
        &mut self,
        batch_base_offset: u64,
        position: u64,
        max_timestamp_before_ms: i64,
        interval_bytes: u32,
    ) {
        let due = match self.entries.last() {
            None => true,
            Some(last) => position >= u64::from(last.position) + u64::from(interval_bytes),
        };
        if !due {
            return;
        }
        let relative_offset = u32::try_from(batch_base_offset - self.base_offset)
            .expect("a segment spans fewer than 2^32 offsets");
        let position = u32::try_from(position).expect("segment positions fit u32");
        if let Some(last) = self.entries.last() {
            assert!(
                relative_offset > last.relative_offset,
                "index offsets increase"
            );
            assert!(position > last.position, "index positions increase");
        }
        self.entries.push(IndexEntry {
            relative_offset,
            position,
            max_timestamp_before_ms,
        });
    }

    /// Drops entries at or past `position` (recovery truncated there).
    pub(crate) fn truncate_at(&mut self, position: u64) {
        self.entries
            .retain(|entry| u64::from(entry.position) < position);
    }

    /// The last entry at or before `offset`.
    pub(crate) fn floor_offset(&self, offset: u64) -> Option<IndexEntry> {
        let relative = offset.checked_sub(self.base_offset)?;
        let count = self
            .entries
            .partition_point(|entry| u64::from(entry.relative_offset) <= relative);
        count.checked_sub(1).map(|at| self.entries[at])
    }

    /// The last entry before which every batch has max timestamp `< ts`.
    pub(crate) fn floor_timestamp(&self, timestamp_ms: i64) -> Option<IndexEntry> {
        let count = self
            .entries
            .partition_point(|entry| entry.max_timestamp_before_ms < timestamp_ms);
        count.checked_sub(1).map(|at| self.entries[at])
    }

    pub(crate) fn encode_offsets(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.entries {
            body.extend_from_slice(&entry.relative_offset.to_le_bytes());
            body.extend_from_slice(&entry.position.to_le_bytes());
        }
        self.frame(OFFSET_MAGIC, OFFSET_ENTRY_BYTES, &body)
    }

    pub(crate) fn encode_times(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for entry in &self.entries {
            body.extend_from_slice(&entry.max_timestamp_before_ms.to_le_bytes());
            body.extend_from_slice(&entry.relative_offset.to_le_bytes());
        }
        self.frame(TIME_MAGIC, TIME_ENTRY_BYTES, &body)
    }

    fn frame(&self, magic: [u8; 4], entry_bytes: usize, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + body.len());
        out.extend_from_slice(&magic);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&(entry_bytes as u16).to_le_bytes());
        out.extend_from_slice(&self.base_offset.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Writes both files crash-safely (temp, fsync, rename); the caller
    /// fsyncs the directory.
    pub(crate) fn persist(&self, dir: &Path) -> Result<(), StorageError> {
        let offsets = files::offset_path(dir, self.base_offset, files::OFFSET_INDEX_SUFFIX);
        files::write_atomic(&offsets, &self.encode_offsets())?;
        let times = files::offset_path(dir, self.base_offset, files::TIME_INDEX_SUFFIX);
        files::write_atomic(&times, &self.encode_times())
    }

    /// Loads both files of the segment at `base_offset`. `Ok(None)` when
    /// either is missing or fails a check (the caller rebuilds by scanning).
    pub(crate) fn load(
        dir: &Path,
        base_offset: u64,
        log_len_bytes: u64,
    ) -> Result<Option<SegmentIndex>, StorageError> {
        let offsets_path = files::offset_path(dir, base_offset, files::OFFSET_INDEX_SUFFIX);
        let times_path = files::offset_path(dir, base_offset, files::TIME_INDEX_SUFFIX);
        let bound =
            |entry_bytes: usize| INDEX_HEADER_BYTES as u64 + MAX_INDEX_ENTRIES * entry_bytes as u64;
        let (Ok(Some(offsets)), Ok(Some(times))) = (
            files::read_bounded(&offsets_path, bound(OFFSET_ENTRY_BYTES)),
            files::read_bounded(&times_path, bound(TIME_ENTRY_BYTES)),
        ) else {
            return Ok(None);
        };
        match decode(base_offset, &offsets, &times, log_len_bytes) {
            Ok(index) => Ok(Some(index)),
            Err(reason) => {
                tracing::warn!(path = %offsets_path.display(), reason, "index rejected; rebuilding");
                Ok(None)
            }
        }
    }
}

fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks one file's header and CRC; returns its entry bytes.
fn check_file(
    file: &[u8],
    magic: [u8; 4],
    entry_bytes: usize,
    base_offset: u64,
) -> Result<&[u8], &'static str> {
    if file.len() < INDEX_HEADER_BYTES {
        return Err("shorter than its header");
    }
    if file[0..4] != magic {
        return Err("bad magic");
    }
    if u16::from_le_bytes([file[4], file[5]]) != INDEX_VERSION {
        return Err("unknown version");
    }
    if usize::from(u16::from_le_bytes([file[6], file[7]])) != entry_bytes {
        return Err("wrong entry size");
    }
    if le_u64(file, 8) != base_offset {
        return Err("base offset differs from the segment's");
    }
    let count = u64::from(le_u32(file, 16));
    let body = &file[INDEX_HEADER_BYTES..];
    if count > MAX_INDEX_ENTRIES || body.len() as u64 != count * entry_bytes as u64 {
        return Err("entry count does not match the file length");
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&file[..20]), body);
    if crc != le_u32(file, 20) {
        return Err("checksum mismatch");
    }
    Ok(body)
}

fn decode(
    base_offset: u64,
    offsets: &[u8],
    times: &[u8],
    log_len_bytes: u64,
) -> Result<SegmentIndex, &'static str> {
    let offset_body = check_file(offsets, OFFSET_MAGIC, OFFSET_ENTRY_BYTES, base_offset)?;
    let time_body = check_file(times, TIME_MAGIC, TIME_ENTRY_BYTES, base_offset)?;
    if offset_body.len() / OFFSET_ENTRY_BYTES != time_body.len() / TIME_ENTRY_BYTES {
        return Err("offset and time index disagree on the entry count");
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(offset_body.len() / OFFSET_ENTRY_BYTES);
    let pairs = offset_body
        .chunks_exact(OFFSET_ENTRY_BYTES)
        .zip(time_body.chunks_exact(TIME_ENTRY_BYTES));
    for (offset_entry, time_entry) in pairs {
        let entry = IndexEntry {
            relative_offset: le_u32(offset_entry, 0),
            position: le_u32(offset_entry, 4),
            max_timestamp_before_ms: le_u64(time_entry, 0) as i64,
        };
        if le_u32(time_entry, 8) != entry.relative_offset {
            return Err("offset and time index name different batches");
        }
        if u64::from(entry.position) >= log_len_bytes {
            return Err("entry points past the segment");
        }
        let ordered = match entries.last() {
            None => entry.position == 0 && entry.relative_offset == 0,
            Some(last) => {
                entry.position > last.position
                    && entry.relative_offset > last.relative_offset
                    && entry.max_timestamp_before_ms >= last.max_timestamp_before_ms
            }
        };
        if !ordered {
            return Err("entries out of order");
        }
        entries.push(entry);
    }
    Ok(SegmentIndex {
        base_offset,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::new(100);
        index.observe(100, 0, i64::MIN, 64);
        index.observe(103, 40, 7, 64); // too close: skipped
        index.observe(105, 80, 9, 64);
        index
    }

    #[test]
    fn golden_bytes() {
        let index = sample();
        let mut expected_offsets: Vec<u8> = [
            &b"SGOI"[..],
            &1u16.to_le_bytes(),
            &8u16.to_le_bytes(),
            &100u64.to_le_bytes(),
            &2u32.to_le_bytes(),
        ]
        .concat();
        let body: Vec<u8> = [0u32, 0, 5, 80]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&expected_offsets), &body);
        expected_offsets.extend_from_slice(&crc.to_le_bytes());
        expected_offsets.extend_from_slice(&body);
        assert_eq!(index.encode_offsets(), expected_offsets);

        let times = index.encode_times();
        assert_eq!(&times[0..8], &[b'S', b'G', b'T', b'I', 1, 0, 12, 0]);
        assert_eq!(&times[24..32], &i64::MIN.to_le_bytes());
        assert_eq!(&times[32..36], &0u32.to_le_bytes());
        assert_eq!(&times[36..44], &9i64.to_le_bytes());
        assert_eq!(&times[44..48], &5u32.to_le_bytes());
        assert_eq!(times.len(), INDEX_HEADER_BYTES + 2 * TIME_ENTRY_BYTES);
    }

    #[test]
    fn persist_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let index = sample();
        index.persist(dir.path()).unwrap();
        let loaded = SegmentIndex::load(dir.path(), 100, 1000).unwrap().unwrap();
        assert_eq!(loaded.entries(), index.entries());
        // Wrong base, or a segment too short for the entries: rejected.
        assert!(SegmentIndex::load(dir.path(), 100, 80).unwrap().is_none());
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let index = sample();
        let offsets = index.encode_offsets();
        let times = index.encode_times();
        for at in 0..offsets.len() {
            let mut corrupt = offsets.clone();
            corrupt[at] ^= 0x10;
            assert!(
                decode(100, &corrupt, &times, 1000).is_err(),
                "offset flip at {at}"
            );
        }
        for at in 0..times.len() {
            let mut corrupt = times.clone();
            corrupt[at] ^= 0x10;
            assert!(
                decode(100, &offsets, &corrupt, 1000).is_err(),
                "time flip at {at}"
            );
        }
    }

    #[test]
    fn lookups_find_the_floor() {
        let index = sample();
        assert_eq!(index.floor_offset(99), None);
        assert_eq!(index.floor_offset(104).unwrap().position, 0);
        assert_eq!(index.floor_offset(105).unwrap().position, 80);
        assert_eq!(index.floor_timestamp(5).unwrap().position, 0);
        assert_eq!(index.floor_timestamp(10).unwrap().position, 80);
        assert_eq!(index.floor_timestamp(i64::MIN), None);
    }
}
