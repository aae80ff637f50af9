//! What a successor inherits from its sealed parents: each producer key's
//! last sequence (`ProducerState`), and its encoding in the topology
//! journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use surge_protocol::batch::BatchHeader;

use super::ProducerTable;
use crate::storage::MAX_PRODUCERS_PER_SHARD;

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

    /// Per origin shard, the highest last sequence of each of its keys
    /// among `states`: for a sealed origin, how far each producer's batches
    /// sent there were forwarded (every piece carries its batch's last
    /// sequence), wherever the pieces landed.
    pub fn highest_by_origin<'a>(
        states: impl IntoIterator<Item = &'a ProducerState>,
    ) -> HashMap<u32, ProducerState> {
        let mut by_origin: HashMap<u32, ProducerState> = HashMap::new();
        for (key, last_sequence) in states.into_iter().flat_map(ProducerState::iter) {
            let origin = by_origin.entry(key.origin_shard).or_default();
            let kept = origin.last_sequences.entry(key).or_insert(last_sequence);
            *kept = (*kept).max(last_sequence);
        }
        by_origin
    }
}

/// Bytes of one `ProducerState` entry in `ProducerState::encode`.
pub const STATE_ENTRY_BYTES: usize = 8 + 4 + 8;

impl ProducerState {
    /// What a change's successors inherit from its sealed `parents`, bounded
    /// like the table (at most `MAX_PRODUCERS_PER_SHARD` entries).
    /// `covers(parent, origin)`: whether `parents[parent]` may hold records
    /// sent to the shard `origin` (their hash ranges meet).
    ///
    /// A key keeps the lowest last sequence among the parents that cover its
    /// origin, and is left out when one of them lacks it. A forward cut
    /// short by a crash leaves a batch's pieces in some children and not in
    /// others; the highest would make a merged successor take the producer's
    /// retry for a duplicate and lose the missing pieces, while the lowest
    /// stores the retry again: the pieces that did land are then stored
    /// twice (at least once, never lost). A parent lacks a key when the
    /// producer first wrote after the seal and its pieces went elsewhere,
    /// or the key was evicted: the retry is then stored as well.
    pub fn inherited(
        parents: &[ProducerState],
        covers: impl Fn(usize, u32) -> bool,
    ) -> ProducerState {
        let keys: BTreeSet<ProducerKey> = parents
            .iter()
            .flat_map(|parent| parent.last_sequences.keys().copied())
            .collect();
        let combined: ProducerState = keys
            .into_iter()
            .filter_map(|key| {
                let mut lowest: Option<u64> = None;
                for (index, parent) in parents.iter().enumerate() {
                    if covers(index, key.origin_shard) {
                        let last = parent.last_sequence(key)?;
                        lowest = Some(lowest.map_or(last, |lowest| lowest.min(last)));
                    }
                }
                lowest.map(|lowest| (key, lowest))
            })
            .collect();
        ProducerTable::inherit(&combined).state()
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

#[cfg(test)]
mod tests {
    use super::super::tests::key;
    use super::*;

    /// Parents 0 and 1 split origin 5 between them; parent 1 is also
    /// origin 6, which parent 0 does not cover.
    fn covers(parent: usize, origin: u32) -> bool {
        origin == 5 || (origin == 6 && parent == 1)
    }

    #[test]
    fn a_successor_inherits_the_lowest_sequence_its_covering_parents_agree_on() {
        let left: ProducerState = [(key(1, 5), 10), (key(2, 5), 3)].into_iter().collect();
        let right: ProducerState = [(key(1, 5), 7), (key(1, 6), 4), (key(3, 7), 1)]
            .into_iter()
            .collect();
        let inherited = ProducerState::inherited(&[left.clone(), right], covers);
        let expected: ProducerState = [(key(1, 5), 7), (key(1, 6), 4)].into_iter().collect();
        assert_eq!(
            inherited, expected,
            "the lowest of both for origin 5; key (2, 5), which one covering \
             parent lacks, and origin 7, which none covers, are left out"
        );
        let alone = ProducerState::inherited(std::slice::from_ref(&left), covers);
        assert_eq!(alone, left, "one parent leaves all it covers");
    }

    #[test]
    fn the_highest_sequence_per_origin_among_all_states() {
        let parent: ProducerState = [(key(1, 5), 4), (key(2, 6), 8)].into_iter().collect();
        let child: ProducerState = [(key(1, 5), 9), (key(2, 5), 1)].into_iter().collect();
        let by_origin = ProducerState::highest_by_origin([&parent, &child]);
        let five: ProducerState = [(key(1, 5), 9), (key(2, 5), 1)].into_iter().collect();
        assert_eq!(by_origin[&5], five);
        assert_eq!(by_origin[&6].last_sequence(key(2, 6)), Some(8));
        assert_eq!(by_origin.len(), 2);
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
}
