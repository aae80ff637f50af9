//! The idempotent-producer table of one shard: for each producer key
//! `(producer_id, origin_shard)` the last sequence it stored and, where this
//! log stored it, the last batch, so a retried batch is answered as a
//! duplicate and a gap is rejected. Sequences are per origin shard (the
//! shard the producer addressed) because a batch the broker forwards from a
//! sealed shard to its successors keeps its origin and its sequences.
//!
//! A successor starts with its parents' entries (`ProducerState`), which
//! know only a last sequence. The broker splits a forwarded batch by key
//! and gives every piece the original's last sequence and the forwarded
//! flag, so a piece may start after the records that went to a sibling:
//! for a forwarded piece, and against an inherited entry, any batch that
//! starts after the last sequence is accepted.
//!
//! Bounded (least recently used keys are evicted) and persisted as a
//! snapshot at segment rolls, at close and when a successor is created; at
//! open the table is the newest usable snapshot plus a scan of the batch
//! headers after it.
//!
//! `state` holds what successors inherit; `snapshot` the table's file.

use std::collections::{BTreeMap, HashMap};

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

/// Decides a batch against its key's entry (if known). A forwarded piece
/// may skip the sequences a sibling received (see the module doc), and so
/// may any batch after an inherited entry.
pub(crate) fn judge(entry: Option<Entry>, header: &BatchHeader) -> Verdict {
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
    if header.forwarded || entry.last_batch.is_none() {
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

/// Entries by key, with least-recently-used eviction.
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    entries: HashMap<ProducerKey, (Entry, u64)>,
    by_use: BTreeMap<u64, ProducerKey>,
    clock: u64,
}

impl ProducerTable {
    /// A successor's table: what its parents leave it (see
    /// `topology::inherit`), as inherited entries.
    pub(crate) fn inherit(inherited: &ProducerState) -> ProducerTable {
        let mut table = ProducerTable::default();
        for (key, last_sequence) in inherited.iter() {
            table.record(key, Entry::inherited(last_sequence));
        }
        table
    }

    pub(crate) fn get(&self, key: ProducerKey) -> Option<Entry> {
        self.entries.get(&key).map(|(entry, _)| *entry)
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
            forwarded: false,
        }
    }

    /// `header` as a forwarded piece (`forwarded`) or as a producer sent it.
    fn flagged(mut header: BatchHeader, forwarded: bool) -> BatchHeader {
        header.forwarded = forwarded;
        header
    }

    #[test]
    fn judge_accepts_next_flags_duplicate_and_gaps() {
        let last = Entry::of(&header(1, 10, 3, 500));
        for forwarded in [false, true] {
            assert_eq!(
                judge(None, &flagged(header(1, 77, 1, 0), forwarded)),
                Verdict::Accept
            );
            assert_eq!(
                judge(Some(last), &flagged(header(1, 13, 2, 0), forwarded)),
                Verdict::Accept
            );
            assert_eq!(
                judge(Some(last), &flagged(header(1, 10, 3, 0), forwarded)),
                Verdict::Duplicate {
                    base_offset: Some(500)
                }
            );
        }
        let expected = Verdict::OutOfOrder {
            expected_sequence: 13,
        };
        assert_eq!(
            judge(Some(last), &flagged(header(1, 14, 1, 0), false)),
            expected
        );
        assert_eq!(
            judge(Some(last), &flagged(header(1, 7, 3, 0), false)),
            expected
        );
        assert_eq!(
            judge(Some(last), &flagged(header(1, 10, 2, 0), false)),
            expected
        );
        // A forwarded piece may skip a sibling's records, and an
        // older batch was stored before.
        assert_eq!(
            judge(Some(last), &flagged(header(1, 14, 1, 0), true)),
            Verdict::Accept
        );
        assert_eq!(
            judge(Some(last), &flagged(header(1, 7, 3, 0), true)),
            Verdict::Duplicate { base_offset: None }
        );
        assert_eq!(
            judge(Some(last), &flagged(header(1, 11, 3, 0), true)),
            expected
        );
    }

    #[test]
    fn judge_against_an_inherited_entry() {
        let inherited = Some(Entry::inherited(9));
        assert_eq!(
            judge(inherited, &flagged(header(1, 10, 4, 0), false)),
            Verdict::Accept
        );
        assert_eq!(
            judge(inherited, &flagged(header(1, 12, 3, 0), false)),
            Verdict::Accept
        );
        for base_sequence in [0, 5, 9] {
            assert_eq!(
                judge(inherited, &flagged(header(1, base_sequence, 1, 0), false)),
                Verdict::Duplicate { base_offset: None }
            );
        }
        assert_eq!(
            judge(inherited, &flagged(header(1, 8, 3, 0), false)),
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
