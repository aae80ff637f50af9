//! The idempotent-producer table of one shard: for each producer key
//! `(producer_id, origin_shard)` the last sequence it stored and, where this
//! log stored it, the last batch, so a retried batch is answered as a
//! duplicate and a gap is rejected. Sequences are per origin shard (the
//! shard the producer addressed) because a batch the broker forwards from a
//! sealed shard to its successors keeps its origin and its sequences.
//!
//! A successor starts with its parents' entries (`ProducerState`), which
//! know only a last sequence. Origins of inherited entries are *forwarded
//! origins*: the broker splits a forwarded batch by key and gives every
//! sub-batch the original's last sequence, so a sub-batch may start after
//! the records that went to a sibling; for those keys any batch that starts
//! after the last sequence is accepted.
//!
//! Bounded (least recently used keys are evicted) and persisted as a
//! snapshot at segment rolls, at close and when a successor is created; at
//! open the table is the newest usable snapshot plus a scan of the batch
//! headers after it.
//!
//! ```text
//! snapshot file <next_offset:020>.producers (little-endian)
//! +0  [u8; 4] magic         "SGPS"
//! +4  u16     version       2 (1 had no origin shard; rejected)
//! +6  u16     entry_bytes   32
//! +8  u64     next_offset   the table covers every batch below this offset
//! +16 u32     entry_count   <= MAX_PRODUCERS_PER_SHARD
//! +20 u32     origin_count  <= MAX_PRODUCERS_PER_SHARD
//! +24 u32     crc32c        over bytes 0..24, then every entry and origin
//! +28 entries, least recently used first, 32 bytes each:
//!     +0  u64 producer_id
//!     +8  u32 origin_shard
//!     +12 u32 record_count   of the last stored batch; 0: unknown (inherited)
//!     +16 u64 last_sequence
//!     +24 u64 base_offset    of the last stored batch; 0 when unknown
//! then origin_count forwarded origins, u32 each, strictly ascending
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use surge_protocol::batch::BatchHeader;

use super::config::MAX_PRODUCERS_PER_SHARD;
use super::error::StorageError;
use super::files;

pub(crate) const SNAPSHOT_HEADER_BYTES: usize = 28;
pub(crate) const SNAPSHOT_ENTRY_BYTES: usize = 32;
pub(crate) const SNAPSHOT_ORIGIN_BYTES: usize = 4;
const SNAPSHOT_MAGIC: [u8; 4] = *b"SGPS";
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_CRC_AT: usize = 24;

const _: () = assert!(SNAPSHOT_HEADER_BYTES == 4 + 2 + 2 + 8 + 4 + 4 + 4);
const _: () = assert!(SNAPSHOT_HEADER_BYTES == SNAPSHOT_CRC_AT + 4);
const _: () = assert!(SNAPSHOT_ENTRY_BYTES == 8 + 4 + 4 + 8 + 8);
const _: () = assert!(MAX_PRODUCERS_PER_SHARD <= u32::MAX as usize);

/// The largest snapshot file `load` reads.
const SNAPSHOT_MAX_BYTES: usize = SNAPSHOT_HEADER_BYTES
    + MAX_PRODUCERS_PER_SHARD * (SNAPSHOT_ENTRY_BYTES + SNAPSHOT_ORIGIN_BYTES);

/// Whose sequences an entry tracks: sequences are per producer and per the
/// shard the producer addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerKey {
    pub producer_id: u64,
    pub origin_shard: u32,
}

impl ProducerKey {
    pub(crate) fn of(header: &BatchHeader) -> ProducerKey {
        ProducerKey {
            producer_id: header.producer_id,
            origin_shard: header.origin_shard,
        }
    }
}

/// An owned copy of a table's `ProducerKey -> last_sequence`: what a
/// successor inherits from a sealed parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    last_sequences: BTreeMap<ProducerKey, u64>,
}

impl ProducerState {
    pub fn last_sequence(&self, key: ProducerKey) -> Option<u64> {
        self.last_sequences.get(&key).copied()
    }

    pub fn len(&self) -> usize {
        self.last_sequences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_sequences.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (ProducerKey, u64)> + '_ {
        self.last_sequences
            .iter()
            .map(|(key, last_sequence)| (*key, *last_sequence))
    }

    /// Every key of every state, with the highest last sequence among them.
    pub fn union(states: &[ProducerState]) -> ProducerState {
        let mut union = ProducerState::default();
        for (key, last_sequence) in states.iter().flat_map(ProducerState::iter) {
            let kept = union.last_sequences.entry(key).or_insert(last_sequence);
            *kept = (*kept).max(last_sequence);
        }
        union
    }
}

/// Bytes of one `ProducerState` entry in `ProducerState::encode`.
pub const STATE_ENTRY_BYTES: usize = 8 + 4 + 8;

impl ProducerState {
    /// The state a successor's table holds after inheriting `parents`:
    /// their union, bounded like the table (so at most
    /// `MAX_PRODUCERS_PER_SHARD` entries).
    pub fn inherited(parents: &[ProducerState]) -> ProducerState {
        ProducerTable::inherit(parents).state()
    }

    /// Appends `u32 count`, then per entry in key order `u64 producer_id,
    /// u32 origin_shard, u64 last_sequence` (little-endian).
    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(
            self.len() <= MAX_PRODUCERS_PER_SHARD,
            "an encoded producer state is bounded"
        );
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for (key, last_sequence) in self.iter() {
            out.extend_from_slice(&key.producer_id.to_le_bytes());
            out.extend_from_slice(&key.origin_shard.to_le_bytes());
            out.extend_from_slice(&last_sequence.to_le_bytes());
        }
    }

    /// Decodes what `encode` wrote, which must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<ProducerState, &'static str> {
        let count_bytes: [u8; 4] = bytes
            .get(..4)
            .ok_or("no entry count")?
            .try_into()
            .expect("4 bytes");
        let count = u32::from_le_bytes(count_bytes) as usize;
        if count > MAX_PRODUCERS_PER_SHARD {
            return Err("entry count over its bound");
        }
        if bytes.len() != 4 + count * STATE_ENTRY_BYTES {
            return Err("entry count does not match the length");
        }
        let mut state = ProducerState::default();
        for entry in bytes[4..].chunks_exact(STATE_ENTRY_BYTES) {
            let key = ProducerKey {
                producer_id: u64::from_le_bytes(entry[0..8].try_into().expect("8 bytes")),
                origin_shard: u32::from_le_bytes(entry[8..12].try_into().expect("4 bytes")),
            };
            let last_sequence = u64::from_le_bytes(entry[12..20].try_into().expect("8 bytes"));
            if state.last_sequences.insert(key, last_sequence).is_some() {
                return Err("a key appears twice");
            }
        }
        Ok(state)
    }
}

impl FromIterator<(ProducerKey, u64)> for ProducerState {
    fn from_iter<T: IntoIterator<Item = (ProducerKey, u64)>>(iter: T) -> ProducerState {
        ProducerState {
            last_sequences: iter.into_iter().collect(),
        }
    }
}

/// The last batch this log stored for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastBatch {
    pub(crate) base_sequence: u64,
    pub(crate) record_count: u32,
    pub(crate) base_offset: u64,
}

/// What the table knows about one key: always the last sequence, and the
/// last batch unless the entry was inherited and nothing followed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) last_sequence: u64,
    pub(crate) last_batch: Option<LastBatch>,
}

impl Entry {
    /// The entry after storing the batch `header` describes.
    pub(crate) fn of(header: &BatchHeader) -> Entry {
        assert!(header.record_count > 0, "a stored batch has records");
        Entry {
            last_sequence: header
                .base_sequence
                .wrapping_add(u64::from(header.record_count) - 1),
            last_batch: Some(LastBatch {
                base_sequence: header.base_sequence,
                record_count: header.record_count,
                base_offset: header.base_offset,
            }),
        }
    }

    fn inherited(last_sequence: u64) -> Entry {
        Entry {
            last_sequence,
            last_batch: None,
        }
    }
}

/// What the table says about an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    /// Stored before; at `base_offset` where this log stored it.
    Duplicate {
        base_offset: Option<u64>,
    },
    OutOfOrder {
        expected_sequence: u64,
    },
}

/// Decides a batch against its key's entry (if known). `forwarded`: the
/// key's origin is a sealed ancestor, so batches may skip the sequences a
/// sibling received (see the module doc); an inherited entry always is.
pub(crate) fn judge(entry: Option<Entry>, forwarded: bool, header: &BatchHeader) -> Verdict {
    let Some(entry) = entry else {
        return Verdict::Accept;
    };
    let expected_sequence = entry.last_sequence.wrapping_add(1);
    if let Some(last) = entry.last_batch {
        if header.base_sequence == last.base_sequence && header.record_count == last.record_count {
            return Verdict::Duplicate {
                base_offset: Some(last.base_offset),
            };
        }
    }
    if header.base_sequence == expected_sequence {
        return Verdict::Accept;
    }
    if forwarded || entry.last_batch.is_none() {
        let header_last_sequence = header
            .base_sequence
            .saturating_add(u64::from(header.record_count).saturating_sub(1));
        if header.base_sequence > entry.last_sequence {
            return Verdict::Accept;
        }
        if header_last_sequence <= entry.last_sequence {
            return Verdict::Duplicate { base_offset: None };
        }
    }
    Verdict::OutOfOrder { expected_sequence }
}

/// Entries by key, with least-recently-used eviction, and the forwarded
/// origins (fixed when a successor is created).
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    entries: HashMap<ProducerKey, (Entry, u64)>,
    by_use: BTreeMap<u64, ProducerKey>,
    clock: u64,
    forwarded_origins: BTreeSet<u32>,
}

impl ProducerTable {
    /// A successor's table: the union of its parents' states, every origin
    /// in it forwarded.
    pub(crate) fn inherit(inherited: &[ProducerState]) -> ProducerTable {
        let mut table = ProducerTable::default();
        for (key, last_sequence) in ProducerState::union(inherited).iter() {
            table.record(key, Entry::inherited(last_sequence));
        }
        // Only origins of entries that survived the bound, so the origin
        // count is bounded by the entry bound.
        table.forwarded_origins = table.entries.keys().map(|key| key.origin_shard).collect();
        table
    }

    pub(crate) fn get(&self, key: ProducerKey) -> Option<Entry> {
        self.entries.get(&key).map(|(entry, _)| *entry)
    }

    pub(crate) fn is_forwarded(&self, origin_shard: u32) -> bool {
        self.forwarded_origins.contains(&origin_shard)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn state(&self) -> ProducerState {
        self.entries
            .iter()
            .map(|(key, (entry, _))| (*key, entry.last_sequence))
            .collect()
    }

    /// Records a key's new entry as the most recently used, evicting the
    /// least recently used key beyond the bound.
    pub(crate) fn record(&mut self, key: ProducerKey, entry: Entry) {
        self.clock += 1;
        if let Some((_, used)) = self.entries.insert(key, (entry, self.clock)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.clock, key);
        while self.entries.len() > MAX_PRODUCERS_PER_SHARD {
            let (_, evicted) = self
                .by_use
                .pop_first()
                .expect("table over its bound is not empty");
            self.entries.remove(&evicted);
        }
        assert_eq!(
            self.entries.len(),
            self.by_use.len(),
            "LRU order tracks every key"
        );
    }

    pub(crate) fn encode(&self, next_offset: u64) -> Vec<u8> {
        assert!(
            self.forwarded_origins.len() <= MAX_PRODUCERS_PER_SHARD,
            "forwarded origins are bounded"
        );
        let mut body = Vec::with_capacity(
            self.by_use.len() * SNAPSHOT_ENTRY_BYTES
                + self.forwarded_origins.len() * SNAPSHOT_ORIGIN_BYTES,
        );
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
        for origin in &self.forwarded_origins {
            body.extend_from_slice(&origin.to_le_bytes());
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(SNAPSHOT_ENTRY_BYTES as u16).to_le_bytes());
        out.extend_from_slice(&next_offset.to_le_bytes());
        out.extend_from_slice(&(self.by_use.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.forwarded_origins.len() as u32).to_le_bytes());
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
        let entry_count = u32_at(16) as usize;
        let origin_count = u32_at(20) as usize;
        if entry_count > MAX_PRODUCERS_PER_SHARD || origin_count > MAX_PRODUCERS_PER_SHARD {
            return Err("count over its bound");
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
        for at in (origins_at..bytes.len()).step_by(SNAPSHOT_ORIGIN_BYTES) {
            let origin = u32_at(at);
            if table
                .forwarded_origins
                .last()
                .is_some_and(|last| *last >= origin)
            {
                return Err("forwarded origins not strictly ascending");
            }
            table.forwarded_origins.insert(origin);
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
    use super::*;

    fn key(producer_id: u64, origin_shard: u32) -> ProducerKey {
        ProducerKey {
            producer_id,
            origin_shard,
        }
    }

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
        let last = Entry::of(&header(1, 10, 3, 500));
        for forwarded in [false, true] {
            assert_eq!(
                judge(None, forwarded, &header(1, 77, 1, 0)),
                Verdict::Accept
            );
            assert_eq!(
                judge(Some(last), forwarded, &header(1, 13, 2, 0)),
                Verdict::Accept
            );
            assert_eq!(
                judge(Some(last), forwarded, &header(1, 10, 3, 0)),
                Verdict::Duplicate {
                    base_offset: Some(500)
                }
            );
        }
        let expected = Verdict::OutOfOrder {
            expected_sequence: 13,
        };
        assert_eq!(judge(Some(last), false, &header(1, 14, 1, 0)), expected);
        assert_eq!(judge(Some(last), false, &header(1, 7, 3, 0)), expected);
        assert_eq!(judge(Some(last), false, &header(1, 10, 2, 0)), expected);
        // A forwarded key: a sub-batch may skip a sibling's records, and an
        // older batch was stored before.
        assert_eq!(
            judge(Some(last), true, &header(1, 14, 1, 0)),
            Verdict::Accept
        );
        assert_eq!(
            judge(Some(last), true, &header(1, 7, 3, 0)),
            Verdict::Duplicate { base_offset: None }
        );
        assert_eq!(judge(Some(last), true, &header(1, 11, 3, 0)), expected);
    }

    #[test]
    fn judge_against_an_inherited_entry() {
        let inherited = Some(Entry::inherited(9));
        assert_eq!(
            judge(inherited, false, &header(1, 10, 4, 0)),
            Verdict::Accept
        );
        assert_eq!(
            judge(inherited, false, &header(1, 12, 3, 0)),
            Verdict::Accept
        );
        for base_sequence in [0, 5, 9] {
            assert_eq!(
                judge(inherited, false, &header(1, base_sequence, 1, 0)),
                Verdict::Duplicate { base_offset: None }
            );
        }
        assert_eq!(
            judge(inherited, false, &header(1, 8, 3, 0)),
            Verdict::OutOfOrder {
                expected_sequence: 10
            },
            "a batch straddling the last sequence reuses sequences"
        );
    }

    #[test]
    fn table_is_bounded_and_evicts_least_recently_used() {
        let mut table = ProducerTable::default();
        for producer_id in 0..MAX_PRODUCERS_PER_SHARD as u64 + 5 {
            table.record(
                key(producer_id, 0),
                Entry::of(&header(producer_id, 0, 1, producer_id)),
            );
            if producer_id == MAX_PRODUCERS_PER_SHARD as u64 - 1 {
                table.record(key(0, 0), Entry::of(&header(0, 1, 1, 3)));
            }
        }
        assert_eq!(table.len(), MAX_PRODUCERS_PER_SHARD);
        assert!(
            table.get(key(0, 0)).is_some(),
            "recently used producer 0 kept"
        );
        assert!(
            table.get(key(1, 0)).is_none(),
            "least recently used producer 1 evicted"
        );
    }

    #[test]
    fn union_keeps_the_highest_last_sequence_per_key() {
        let left: ProducerState = [(key(1, 5), 10), (key(2, 5), 3)].into_iter().collect();
        let right: ProducerState = [(key(1, 5), 7), (key(1, 6), 4)].into_iter().collect();
        let union = ProducerState::union(&[left, right]);
        assert_eq!(union.len(), 3);
        assert_eq!(union.last_sequence(key(1, 5)), Some(10));
        assert_eq!(union.last_sequence(key(2, 5)), Some(3));
        assert_eq!(union.last_sequence(key(1, 6)), Some(4));
        let table = ProducerTable::inherit(std::slice::from_ref(&union));
        assert_eq!(table.state(), union);
        assert!(table.is_forwarded(5) && table.is_forwarded(6));
        assert!(!table.is_forwarded(7));
    }

    /// A table with a stored batch of (9, 1), an inherited (3, 2) and the
    /// forwarded origin 2, covering offsets below 20.
    fn sample_table() -> ProducerTable {
        let mut table = ProducerTable::inherit(&[[(key(3, 2), 6)].into_iter().collect()]);
        let mut stored = header(9, 4, 2, 10);
        stored.origin_shard = 1;
        table.record(ProducerKey::of(&stored), Entry::of(&stored));
        table
    }

    #[test]
    fn state_encoding_round_trips_and_rejects_bad_lengths() {
        let state: ProducerState = [(key(7, 1), 9), (key(8, 2), u64::MAX)]
            .into_iter()
            .collect();
        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        assert_eq!(bytes.len(), 4 + 2 * STATE_ENTRY_BYTES);
        assert_eq!(ProducerState::decode(&bytes).unwrap(), state);
        assert!(ProducerState::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(ProducerState::decode(&[]).is_err());
        let mut twice = Vec::new();
        [(key(7, 1), 9)]
            .into_iter()
            .collect::<ProducerState>()
            .encode(&mut twice);
        twice[0] = 2;
        let first = twice[4..].to_vec();
        twice.extend_from_slice(&first);
        assert_eq!(ProducerState::decode(&twice), Err("a key appears twice"));
        let mut huge = ((MAX_PRODUCERS_PER_SHARD + 1) as u32)
            .to_le_bytes()
            .to_vec();
        huge.resize(4 + (MAX_PRODUCERS_PER_SHARD + 1) * STATE_ENTRY_BYTES, 0);
        assert!(ProducerState::decode(&huge).is_err());
    }

    #[test]
    fn snapshot_golden_bytes() {
        let bytes = sample_table().encode(20);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"SGPS");
        expected.extend_from_slice(&[2, 0, 32, 0]);
        expected.extend_from_slice(&20u64.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
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
        expected.extend_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&expected[..crc_at]),
            &expected[SNAPSHOT_HEADER_BYTES..],
        );
        expected[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(
            bytes.len(),
            SNAPSHOT_HEADER_BYTES + 2 * SNAPSHOT_ENTRY_BYTES + SNAPSHOT_ORIGIN_BYTES
        );
    }

    #[test]
    fn snapshot_round_trips_and_rejects_flips() {
        let table = sample_table();
        let bytes = table.encode(20);
        let (decoded, next_offset) = ProducerTable::decode(&bytes).unwrap();
        assert_eq!(next_offset, 20);
        assert_eq!(decoded.get(key(9, 1)), table.get(key(9, 1)));
        assert_eq!(decoded.get(key(3, 2)), table.get(key(3, 2)));
        assert_eq!(decoded.forwarded_origins, table.forwarded_origins);
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
