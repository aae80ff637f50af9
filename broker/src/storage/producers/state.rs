//! What a successor inherits from its sealed parents: each producer key's
//! last sequence (`ProducerState`), and its encoding in the topology
//! journal.

use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::super::tests::key;
    use super::*;

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
