//! The shard graph of one stream as the last metadata showed it: every
//! shard (open or sealed), its parents and its high watermark. Producer and
//! consumer both order work by it: a shard's ancestors hold the older
//! events of every key it owns (seal-and-succeed), so nothing may be sent to
//! a shard, or read from it, before its ancestors are done.

use std::collections::{BTreeMap, BTreeSet};

use surge_protocol::stream::{ShardState, StreamMetadata};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardNode {
    pub(crate) sealed: bool,
    pub(crate) parents: Vec<u32>,
    pub(crate) high_watermark: u64,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Lineage {
    epoch: u64,
    shards: BTreeMap<u32, ShardNode>,
}

impl Lineage {
    pub(crate) fn new(meta: &StreamMetadata) -> Lineage {
        let mut lineage = Lineage::default();
        lineage.update(meta);
        lineage
    }

    /// Replaces the graph with newer metadata; older metadata is ignored.
    /// Returns whether it was applied.
    pub(crate) fn update(&mut self, meta: &StreamMetadata) -> bool {
        if meta.epoch < self.epoch {
            return false;
        }
        self.epoch = meta.epoch;
        self.shards = meta
            .shards
            .iter()
            .map(|shard| {
                let node = ShardNode {
                    sealed: shard.state == ShardState::Sealed,
                    parents: shard.parents.clone(),
                    high_watermark: shard.high_watermark,
                };
                (shard.shard_id, node)
            })
            .collect();
        true
    }

    pub(crate) fn get(&self, shard_id: u32) -> Option<&ShardNode> {
        self.shards.get(&shard_id)
    }

    pub(crate) fn shard_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.shards.keys().copied()
    }

    /// Parents of a shard as known; empty for an unknown shard.
    pub(crate) fn parents(&self, shard_id: u32) -> &[u32] {
        self.shards
            .get(&shard_id)
            .map_or(&[][..], |node| &node.parents[..])
    }

    /// Every ancestor (parents, transitively) that the metadata still
    /// lists. Iterative with a visited set: metadata from the wire is never
    /// trusted to be acyclic.
    pub(crate) fn ancestors(&self, shard_id: u32) -> BTreeSet<u32> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<u32> = self.parents(shard_id).to_vec();
        while let Some(parent) = stack.pop() {
            if parent == shard_id || !seen.insert(parent) {
                continue;
            }
            stack.extend_from_slice(self.parents(parent));
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use surge_protocol::stream::ShardInfo;

    use super::*;

    fn shard(shard_id: u32, parents: &[u32]) -> ShardInfo {
        ShardInfo {
            shard_id,
            parents: parents.to_vec(),
            ..ShardInfo::default()
        }
    }

    #[test]
    fn ancestors_are_transitive_and_survive_cycles() {
        let meta = StreamMetadata {
            epoch: 3,
            shards: vec![
                shard(0, &[]),
                shard(1, &[0]),
                shard(2, &[0]),
                shard(3, &[1, 2]),
                shard(4, &[5]),
                shard(5, &[4]),
            ],
            ..StreamMetadata::default()
        };
        let lineage = Lineage::new(&meta);
        assert_eq!(lineage.ancestors(3), BTreeSet::from([0, 1, 2]));
        assert_eq!(lineage.ancestors(0), BTreeSet::new());
        assert_eq!(lineage.ancestors(4), BTreeSet::from([5]));
        assert_eq!(lineage.ancestors(9), BTreeSet::new());
    }

    #[test]
    fn older_metadata_is_ignored() {
        let newer = StreamMetadata {
            epoch: 2,
            shards: vec![shard(0, &[]), shard(1, &[0])],
            ..StreamMetadata::default()
        };
        let older = StreamMetadata {
            epoch: 1,
            shards: vec![shard(0, &[])],
            ..StreamMetadata::default()
        };
        let mut lineage = Lineage::new(&newer);
        assert!(!lineage.update(&older));
        assert_eq!(lineage.parents(1), &[0]);
    }
}
