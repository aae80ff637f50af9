//! The producer table's snapshot file.
//!
//! ```text
//! snapshot file <next_offset:020>.producers (little-endian)
//! +0  [u8; 4] magic         "SGPS"
//! +4  u16     version       3 (2 also listed forwarded origins, which
//!                           the pieces' flag made redundant: read and
//!                           ignored; 1 had no origin shard: rejected)
//! +6  u16     entry_bytes   32
//! +8  u64     next_offset   the table covers every batch below this offset
//! +16 u32     entry_count   <= MAX_PRODUCERS_PER_SHARD
//! +20 u32     origin_count  0 (version 2: <= MAX_PRODUCERS_PER_SHARD)
//! +24 u32     crc32c        over bytes 0..24, then every entry (and origin)
//! +28 entries, least recently used first, 32 bytes each:
//!     +0  u64 producer_id
//!     +8  u32 origin_shard
//!     +12 u32 record_count   of the last stored batch; 0: unknown (inherited)
//!     +16 u64 last_sequence
//!     +24 u64 base_offset    of the last stored batch; 0 when unknown
//! version 2 only: origin_count u32 origins
//! ```

use std::path::Path;

use super::{Entry, LastBatch, ProducerKey, ProducerTable};
use crate::storage::error::StorageError;
use crate::storage::files;
use crate::storage::MAX_PRODUCERS_PER_SHARD;

const SNAPSHOT_HEADER_BYTES: usize = 28;
const SNAPSHOT_ENTRY_BYTES: usize = 32;
const SNAPSHOT_ORIGIN_BYTES: usize = 4;
const SNAPSHOT_MAGIC: [u8; 4] = *b"SGPS";
const SNAPSHOT_VERSION: u16 = 3;
/// The version before, whose origin list `decode` skips.
const SNAPSHOT_VERSION_WITH_ORIGINS: u16 = 2;
const SNAPSHOT_CRC_AT: usize = 24;

const _: () = assert!(SNAPSHOT_HEADER_BYTES == 4 + 2 + 2 + 8 + 4 + 4 + 4);
const _: () = assert!(SNAPSHOT_HEADER_BYTES == SNAPSHOT_CRC_AT + 4);
const _: () = assert!(SNAPSHOT_ENTRY_BYTES == 8 + 4 + 4 + 8 + 8);
const _: () = assert!(MAX_PRODUCERS_PER_SHARD <= u32::MAX as usize);

/// The largest snapshot file `load` reads.
const SNAPSHOT_MAX_BYTES: usize = SNAPSHOT_HEADER_BYTES
    + MAX_PRODUCERS_PER_SHARD * (SNAPSHOT_ENTRY_BYTES + SNAPSHOT_ORIGIN_BYTES);

impl ProducerTable {
    pub(crate) fn encode(&self, next_offset: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.by_use.len() * SNAPSHOT_ENTRY_BYTES);
        for key in self.by_use.values() {
            let (entry, _) = self.entries[key];
            let (record_count, base_offset) = entry
                .last_batch
                .map_or((0, 0), |last| (last.record_count, last.base_offset));
            body.extend_from_slice(&key.producer_id.to_le_bytes());
            body.extend_from_slice(&key.origin_shard.to_le_bytes());
            body.extend_from_slice(&record_count.to_le_bytes());
            body.extend_from_slice(&entry.last_sequence.to_le_bytes());
            body.extend_from_slice(&base_offset.to_le_bytes());
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(SNAPSHOT_ENTRY_BYTES as u16).to_le_bytes());
        out.extend_from_slice(&next_offset.to_le_bytes());
        out.extend_from_slice(&(self.by_use.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a snapshot; `Err(reason)` for anything that fails a check.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(ProducerTable, u64), &'static str> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err("shorter than its header");
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if bytes[0..4] != SNAPSHOT_MAGIC
            || ![SNAPSHOT_VERSION, SNAPSHOT_VERSION_WITH_ORIGINS].contains(&version)
        {
            return Err("bad magic or unknown version");
        }
        if usize::from(u16::from_le_bytes([bytes[6], bytes[7]])) != SNAPSHOT_ENTRY_BYTES {
            return Err("wrong entry size");
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let next_offset = u64_at(8);
        let entry_count = u32_at(16) as usize;
        let origin_count = u32_at(20) as usize;
        if entry_count > MAX_PRODUCERS_PER_SHARD || origin_count > MAX_PRODUCERS_PER_SHARD {
            return Err("count over its bound");
        }
        if version == SNAPSHOT_VERSION && origin_count != 0 {
            return Err("origins in a version that has none");
        }
        let origins_at = SNAPSHOT_HEADER_BYTES + entry_count * SNAPSHOT_ENTRY_BYTES;
        if bytes.len() != origins_at + origin_count * SNAPSHOT_ORIGIN_BYTES {
            return Err("counts do not match the file length");
        }
        let body = &bytes[SNAPSHOT_HEADER_BYTES..];
        if crc32c::crc32c_append(crc32c::crc32c(&bytes[..SNAPSHOT_CRC_AT]), body)
            != u32_at(SNAPSHOT_CRC_AT)
        {
            return Err("checksum mismatch");
        }
        let mut table = ProducerTable::default();
        for at in (SNAPSHOT_HEADER_BYTES..origins_at).step_by(SNAPSHOT_ENTRY_BYTES) {
            let key = ProducerKey {
                producer_id: u64_at(at),
                origin_shard: u32_at(at + 8),
            };
            let entry = decode_entry(
                u32_at(at + 12),
                u64_at(at + 16),
                u64_at(at + 24),
                next_offset,
            )?;
            table.record(key, entry);
        }
        if table.entries.len() != entry_count {
            return Err("a key appears twice");
        }
        Ok((table, next_offset))
    }

    /// Writes the snapshot for `next_offset` crash-safely and removes older
    /// ones; the caller fsyncs the directory.
    pub(crate) fn persist(&self, dir: &Path, next_offset: u64) -> Result<(), StorageError> {
        let path = files::offset_path(dir, next_offset, files::PRODUCERS_SUFFIX);
        files::write_atomic(&path, &self.encode(next_offset))?;
        for offset in files::list_offsets(dir, files::PRODUCERS_SUFFIX)? {
            if offset != next_offset {
                files::remove_file(&files::offset_path(dir, offset, files::PRODUCERS_SUFFIX))?;
            }
        }
        Ok(())
    }

    /// Writes the snapshot for offset 0 crash-safely without removing
    /// others: a successor's inherited table, written after the shard may
    /// have persisted a newer snapshot of its own (which `load` prefers).
    /// The caller fsyncs the directory.
    pub(crate) fn persist_initial(&self, dir: &Path) -> Result<(), StorageError> {
        let path = files::offset_path(dir, 0, files::PRODUCERS_SUFFIX);
        files::write_atomic(&path, &self.encode(0))
    }

    /// The newest valid snapshot covering at most `written_offset`; newer
    /// (stale after a truncation) and invalid snapshots are deleted.
    pub(crate) fn load(
        dir: &Path,
        written_offset: u64,
    ) -> Result<Option<(ProducerTable, u64)>, StorageError> {
        for offset in files::list_offsets(dir, files::PRODUCERS_SUFFIX)?
            .into_iter()
            .rev()
        {
            let path = files::offset_path(dir, offset, files::PRODUCERS_SUFFIX);
            if offset <= written_offset {
                let decoded = match files::read_bounded(&path, SNAPSHOT_MAX_BYTES as u64) {
                    Ok(Some(bytes)) => ProducerTable::decode(&bytes),
                    Ok(None) | Err(_) => Err("unreadable"),
                };
                match decoded {
                    Ok((table, covered)) if covered == offset => return Ok(Some((table, covered))),
                    Ok(_) => {
                        tracing::warn!(path = %path.display(), "producer snapshot names another offset")
                    }
                    Err(reason) => {
                        tracing::warn!(path = %path.display(), reason, "producer snapshot rejected")
                    }
                }
            }
            files::remove_file(&path)?;
        }
        Ok(None)
    }
}

/// One snapshot entry's fields after its key, checked against the offsets
/// the snapshot covers.
fn decode_entry(
    record_count: u32,
    last_sequence: u64,
    base_offset: u64,
    next_offset: u64,
) -> Result<Entry, &'static str> {
    if record_count == 0 {
        if base_offset != 0 {
            return Err("an inherited entry names a batch");
        }
        return Ok(Entry::inherited(last_sequence));
    }
    if base_offset >= next_offset {
        return Err("entry names a batch the snapshot does not cover");
    }
    let base_sequence = last_sequence.wrapping_sub(u64::from(record_count) - 1);
    Ok(Entry {
        last_sequence,
        last_batch: Some(LastBatch {
            base_sequence,
            record_count,
            base_offset,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header, key};
    use super::*;

    /// A table with a stored batch of (9, 1) and an inherited (3, 2),
    /// covering offsets below 20.
    fn sample_table() -> ProducerTable {
        let mut table = ProducerTable::inherit(&[(key(3, 2), 6)].into_iter().collect());
        let mut stored = header(9, 4, 2, 10);
        stored.origin_shard = 1;
        table.record(ProducerKey::of(&stored), Entry::of(&stored));
        table
    }

    #[test]
    fn snapshot_golden_bytes() {
        let bytes = sample_table().encode(20);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"SGPS");
        expected.extend_from_slice(&[3, 0, 32, 0]);
        expected.extend_from_slice(&20u64.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&0u32.to_le_bytes());
        let crc_at = expected.len();
        expected.extend_from_slice(&[0; 4]);
        // Least recently used first: the inherited entry.
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&0u32.to_le_bytes());
        expected.extend_from_slice(&6u64.to_le_bytes());
        expected.extend_from_slice(&0u64.to_le_bytes());
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&5u64.to_le_bytes());
        expected.extend_from_slice(&10u64.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&expected[..crc_at]),
            &expected[SNAPSHOT_HEADER_BYTES..],
        );
        expected[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(
            bytes.len(),
            SNAPSHOT_HEADER_BYTES + 2 * SNAPSHOT_ENTRY_BYTES
        );
    }

    /// A version 2 file: the same entries, then a list of origins, which
    /// the flag on forwarded pieces made redundant.
    #[test]
    fn a_version_2_snapshot_is_read_without_its_origins() {
        let mut bytes = sample_table().encode(20);
        bytes[4..6].copy_from_slice(&SNAPSHOT_VERSION_WITH_ORIGINS.to_le_bytes());
        bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&bytes[..SNAPSHOT_CRC_AT]),
            &bytes[SNAPSHOT_HEADER_BYTES..],
        );
        bytes[SNAPSHOT_CRC_AT..SNAPSHOT_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        let (decoded, next_offset) = ProducerTable::decode(&bytes).unwrap();
        assert_eq!(next_offset, 20);
        assert_eq!(decoded.state(), sample_table().state());
    }

    #[test]
    fn snapshot_round_trips_and_rejects_flips() {
        let table = sample_table();
        let bytes = table.encode(20);
        let (decoded, next_offset) = ProducerTable::decode(&bytes).unwrap();
        assert_eq!(next_offset, 20);
        assert_eq!(decoded.get(key(9, 1)), table.get(key(9, 1)));
        assert_eq!(decoded.get(key(3, 2)), table.get(key(3, 2)));
        assert_eq!(
            decoded.by_use.values().collect::<Vec<_>>(),
            table.by_use.values().collect::<Vec<_>>()
        );
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x02;
            assert!(ProducerTable::decode(&corrupt).is_err(), "flip at {at}");
        }
        assert!(ProducerTable::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
