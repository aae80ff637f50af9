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
//! `state` holds what successors inherit; `snapshot` the table's file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use surge_protocol::batch::BatchHeader;

use super::config::MAX_PRODUCERS_PER_SHARD;

mod snapshot;
mod state;

pub use state::{ProducerKey, ProducerState};

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
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::storage::producers) fn key(producer_id: u64, origin_shard: u32) -> ProducerKey {
        ProducerKey {
            producer_id,
            origin_shard,
        }
    }

    pub(in crate::storage::producers) fn header(
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
}
