//! The idempotent-producer table of one shard: for each producer the last
//! batch it stored, so a retried batch is answered as a duplicate and a gap
//! is rejected. Bounded (least recently used producers are evicted) and
//! persisted as a snapshot at segment rolls and at close; at open the table
//! is the newest usable snapshot plus a scan of the batch headers after it.
//!
//! ```text
//! snapshot file <next_offset:020>.producers (little-endian)
//! +0  [u8; 4] magic        "SGPS"
//! +4  u16     version      1
//! +6  u16     entry_bytes  28
//! +8  u64     next_offset  the table covers every batch below this offset
//! +16 u32     entry_count  <= MAX_PRODUCERS_PER_SHARD
//! +20 u32     crc32c       over bytes 0..20, then every entry
//! +24 entries, least recently used first, 28 bytes each:
//!     +0 u64 producer_id, +8 u64 base_sequence, +16 u32 record_count,
//!     +20 u64 base_offset   of the producer's last stored batch
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use surge_protocol::batch::BatchHeader;

use super::config::MAX_PRODUCERS_PER_SHARD;
use super::error::StorageError;
use super::files;

pub(crate) const SNAPSHOT_HEADER_BYTES: usize = 24;
pub(crate) const SNAPSHOT_ENTRY_BYTES: usize = 28;
const SNAPSHOT_MAGIC: [u8; 4] = *b"SGPS";
const SNAPSHOT_VERSION: u16 = 1;

const _: () = assert!(SNAPSHOT_HEADER_BYTES == 4 + 2 + 2 + 8 + 4 + 4);
const _: () = assert!(SNAPSHOT_ENTRY_BYTES == 8 + 8 + 4 + 8);
const _: () = assert!(MAX_PRODUCERS_PER_SHARD <= u32::MAX as usize);

/// The last batch one producer stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastBatch {
    pub(crate) base_sequence: u64,
    pub(crate) record_count: u32,
    pub(crate) base_offset: u64,
}

impl LastBatch {
    pub(crate) fn of(header: &BatchHeader) -> LastBatch {
        LastBatch {
            base_sequence: header.base_sequence,
            record_count: header.record_count,
            base_offset: header.base_offset,
        }
    }

    fn next_sequence(&self) -> u64 {
        self.base_sequence
            .wrapping_add(u64::from(self.record_count))
    }
}

/// What the table says about an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    Duplicate { base_offset: u64 },
    OutOfOrder { expected_sequence: u64 },
}

/// Decides a batch against the producer's last stored batch (if known).
pub(crate) fn judge(last: Option<LastBatch>, header: &BatchHeader) -> Verdict {
    let Some(last) = last else {
        return Verdict::Accept;
    };
    if header.base_sequence == last.next_sequence() {
        Verdict::Accept
    } else if header.base_sequence == last.base_sequence && header.record_count == last.record_count
    {
        Verdict::Duplicate {
            base_offset: last.base_offset,
        }
    } else {
        Verdict::OutOfOrder {
            expected_sequence: last.next_sequence(),
        }
    }
}

/// Producers by id, with least-recently-used eviction.
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    producers: HashMap<u64, (LastBatch, u64)>,
    by_use: BTreeMap<u64, u64>,
    clock: u64,
}

impl ProducerTable {
    pub(crate) fn get(&self, producer_id: u64) -> Option<LastBatch> {
        self.producers.get(&producer_id).map(|(last, _)| *last)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Records a stored batch as the producer's last, evicting the least
    /// recently used producer beyond the bound.
    pub(crate) fn record(&mut self, producer_id: u64, last: LastBatch) {
        self.clock += 1;
        if let Some((_, used)) = self.producers.insert(producer_id, (last, self.clock)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.clock, producer_id);
        while self.producers.len() > MAX_PRODUCERS_PER_SHARD {
            let (_, evicted) = self
                .by_use
                .pop_first()
                .expect("table over its bound is not empty");
            self.producers.remove(&evicted);
        }
        assert_eq!(
            self.producers.len(),
            self.by_use.len(),
            "LRU order tracks every producer"
        );
    }

    pub(crate) fn encode(&self, next_offset: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.by_use.len() * SNAPSHOT_ENTRY_BYTES);
        for producer_id in self.by_use.values() {
            let (last, _) = self.producers[producer_id];
            body.extend_from_slice(&producer_id.to_le_bytes());
            body.extend_from_slice(&last.base_sequence.to_le_bytes());
            body.extend_from_slice(&last.record_count.to_le_bytes());
            body.extend_from_slice(&last.base_offset.to_le_bytes());
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(SNAPSHOT_ENTRY_BYTES as u16).to_le_bytes());
        out.extend_from_slice(&next_offset.to_le_bytes());
        out.extend_from_slice(&(self.by_use.len() as u32).to_le_bytes());
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
        if bytes[0..4] != SNAPSHOT_MAGIC || bytes[4..6] != SNAPSHOT_VERSION.to_le_bytes() {
            return Err("bad magic or unknown version");
        }
        if usize::from(u16::from_le_bytes([bytes[6], bytes[7]])) != SNAPSHOT_ENTRY_BYTES {
            return Err("wrong entry size");
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let next_offset = u64_at(8);
        let count = u32_at(16) as usize;
        let body = &bytes[SNAPSHOT_HEADER_BYTES..];
        if count > MAX_PRODUCERS_PER_SHARD || body.len() != count * SNAPSHOT_ENTRY_BYTES {
            return Err("entry count does not match the file length");
        }
        if crc32c::crc32c_append(crc32c::crc32c(&bytes[..20]), body) != u32_at(20) {
            return Err("checksum mismatch");
        }
        let mut table = ProducerTable::default();
        for at in (SNAPSHOT_HEADER_BYTES..bytes.len()).step_by(SNAPSHOT_ENTRY_BYTES) {
            let last = LastBatch {
                base_sequence: u64_at(at + 8),
                record_count: u32_at(at + 16),
                base_offset: u64_at(at + 20),
            };
            if last.record_count == 0 || last.base_offset >= next_offset {
                return Err("entry names a batch the snapshot does not cover");
            }
            table.record(u64_at(at), last);
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

    /// The newest valid snapshot covering at most `written_offset`; newer
    /// (stale after a truncation) and invalid snapshots are deleted.
    pub(crate) fn load(
        dir: &Path,
        written_offset: u64,
    ) -> Result<Option<(ProducerTable, u64)>, StorageError> {
        let bound = (SNAPSHOT_HEADER_BYTES + MAX_PRODUCERS_PER_SHARD * SNAPSHOT_ENTRY_BYTES) as u64;
        for offset in files::list_offsets(dir, files::PRODUCERS_SUFFIX)?
            .into_iter()
            .rev()
        {
            let path = files::offset_path(dir, offset, files::PRODUCERS_SUFFIX);
            if offset <= written_offset {
                let decoded = match files::read_bounded(&path, bound) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: u64,
        base_sequence: u64,
        record_count: u32,
        base_offset: u64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            size: 100,
            crc: 0,
            record_count,
            first_timestamp_ms: 0,
            max_timestamp_ms: 0,
            producer_id,
            base_sequence,
            origin_shard: 0,
        }
    }

    #[test]
    fn judge_accepts_next_flags_duplicate_and_gaps() {
        let last = LastBatch::of(&header(1, 10, 3, 500));
        assert_eq!(judge(None, &header(1, 77, 1, 0)), Verdict::Accept);
        assert_eq!(judge(Some(last), &header(1, 13, 2, 0)), Verdict::Accept);
        assert_eq!(
            judge(Some(last), &header(1, 10, 3, 0)),
            Verdict::Duplicate { base_offset: 500 }
        );
        assert_eq!(
            judge(Some(last), &header(1, 14, 1, 0)),
            Verdict::OutOfOrder {
                expected_sequence: 13
            }
        );
        assert_eq!(
            judge(Some(last), &header(1, 7, 3, 0)),
            Verdict::OutOfOrder {
                expected_sequence: 13
            }
        );
        assert_eq!(
            judge(Some(last), &header(1, 10, 2, 0)),
            Verdict::OutOfOrder {
                expected_sequence: 13
            }
        );
    }

    #[test]
    fn table_is_bounded_and_evicts_least_recently_used() {
        let mut table = ProducerTable::default();
        for producer_id in 0..MAX_PRODUCERS_PER_SHARD as u64 + 5 {
            table.record(
                producer_id,
                LastBatch::of(&header(producer_id, 0, 1, producer_id)),
            );
            if producer_id == MAX_PRODUCERS_PER_SHARD as u64 - 1 {
                table.record(0, LastBatch::of(&header(0, 1, 1, 3)));
            }
        }
        assert_eq!(table.len(), MAX_PRODUCERS_PER_SHARD);
        assert!(table.get(0).is_some(), "recently used producer 0 kept");
        assert!(
            table.get(1).is_none(),
            "least recently used producer 1 evicted"
        );
    }

    #[test]
    fn snapshot_round_trips_and_rejects_flips() {
        let mut table = ProducerTable::default();
        table.record(9, LastBatch::of(&header(9, 4, 2, 10)));
        table.record(3, LastBatch::of(&header(3, 0, 1, 12)));
        let bytes = table.encode(20);
        assert_eq!(&bytes[0..8], &[b'S', b'G', b'P', b'S', 1, 0, 28, 0]);
        assert_eq!(
            bytes.len(),
            SNAPSHOT_HEADER_BYTES + 2 * SNAPSHOT_ENTRY_BYTES
        );
        assert_eq!(
            &bytes[24..32],
            &9u64.to_le_bytes(),
            "least recently used first"
        );
        let (decoded, next_offset) = ProducerTable::decode(&bytes).unwrap();
        assert_eq!(next_offset, 20);
        assert_eq!(decoded.get(9), table.get(9));
        assert_eq!(decoded.get(3), table.get(3));
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x02;
            assert!(ProducerTable::decode(&corrupt).is_err(), "flip at {at}");
        }
    }
}
