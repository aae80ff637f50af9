//! The topology cache a producer routes by: the open shards of one stream
//! with their inclusive key-hash ranges, the routing epoch they belong to,
//! and the round-robin cursor for keyless events.

use surge_protocol::routing::key_hash;
use surge_protocol::stream::{ShardState, StreamMetadata};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    hash_start: u64,
    hash_end: u64,
    shard_id: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Router {
    epoch: u64,
    /// Open shards sorted by `hash_start`.
    open: Vec<Range>,
    /// Index into `open` of the shard keyless events go to now.
    keyless_cursor: usize,
    /// Empty: events route by key; else by this header.
    routing_header: String,
}

impl Router {
    pub(crate) fn new(meta: &StreamMetadata) -> Router {
        let mut router = Router::default();
        router.update(meta);
        router
    }

    /// Replaces the shard map with newer metadata; older metadata is ignored.
    pub(crate) fn update(&mut self, meta: &StreamMetadata) {
        if meta.epoch < self.epoch {
            return;
        }
        self.epoch = meta.epoch;
        self.routing_header.clone_from(&meta.routing_header);
        self.open = meta
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .map(|shard| Range {
                hash_start: shard.hash_start,
                hash_end: shard.hash_end,
                shard_id: shard.shard_id,
            })
            .collect();
        self.open.sort_by_key(|range| range.hash_start);
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn is_open(&self, shard_id: u32) -> bool {
        self.open.iter().any(|range| range.shard_id == shard_id)
    }

    /// What `event` is routed by: its key, or the stream's routing header.
    pub(crate) fn routing_value<'a>(&self, event: &'a crate::Event) -> Option<&'a [u8]> {
        surge_protocol::stream::routing_value(&self.routing_header, event.key.as_deref(), |name| {
            event
                .headers
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| value.as_ref())
        })
    }

    /// The shard for a routing value: by its hash, or the current keyless
    /// shard.
    /// `None` when no open shard covers it.
    pub(crate) fn route(&self, key: Option<&[u8]>) -> Option<u32> {
        let Some(key) = key else {
            if self.open.is_empty() {
                return None;
            }
            return Some(self.open[self.keyless_cursor % self.open.len()].shard_id);
        };
        let hash = key_hash(key);
        // The last range starting at or below the hash, if it reaches it.
        let index = self.open.partition_point(|range| range.hash_start <= hash);
        let range = self.open.get(index.checked_sub(1)?)?;
        (hash <= range.hash_end).then_some(range.shard_id)
    }

    /// Keyless events spread round-robin per batch: called when a batch of
    /// the current keyless shard is cut.
    pub(crate) fn batch_cut(&mut self, shard_id: u32) {
        if self.route(None) == Some(shard_id) {
            self.keyless_cursor = self.keyless_cursor.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use surge_protocol::routing::equal_ranges;
    use surge_protocol::stream::ShardInfo;

    use super::*;

    fn meta(epoch: u64, ranges: &[(u64, u64)], sealed: &[u32]) -> StreamMetadata {
        let shards = ranges
            .iter()
            .enumerate()
            .map(|(index, &(hash_start, hash_end))| {
                let shard_id = index as u32;
                ShardInfo {
                    shard_id,
                    hash_start,
                    hash_end,
                    state: if sealed.contains(&shard_id) {
                        ShardState::Sealed
                    } else {
                        ShardState::Open
                    },
                    ..ShardInfo::default()
                }
            })
            .collect();
        StreamMetadata {
            epoch,
            shards,
            ..StreamMetadata::default()
        }
    }

    #[test]
    fn a_stream_routed_by_header_ignores_the_key() {
        let mut by_type = meta(1, &equal_ranges(8), &[]);
        by_type.routing_header = "type".into();
        let router = Router::new(&by_type);
        let shard_of = |key: &str| {
            let event = crate::Event::new("v")
                .with_key(key.to_owned())
                .with_type("click");
            router.route(router.routing_value(&event))
        };
        assert_eq!(shard_of("a"), shard_of("b"));
        assert_eq!(shard_of("a"), router.route(Some(b"click")));
        let untyped = crate::Event::new("v").with_key("a");
        assert_eq!(
            router.routing_value(&untyped),
            None,
            "no type header: keyless"
        );
    }

    #[test]
    fn keys_route_to_the_range_holding_their_hash() {
        let ranges = equal_ranges(4);
        let router = Router::new(&meta(1, &ranges, &[]));
        for key in 0..200u32 {
            let key = key.to_le_bytes();
            let hash = key_hash(&key);
            let shard = router.route(Some(&key)).expect("covered");
            let (start, end) = ranges[shard as usize];
            assert!(
                start <= hash && hash <= end,
                "hash {hash} not in shard {shard}"
            );
        }
    }

    #[test]
    fn sealed_shards_are_not_routed_to() {
        let router = Router::new(&meta(1, &equal_ranges(2), &[0]));
        assert!(!router.is_open(0));
        assert_eq!(
            router.route(Some(b"x")).is_none(),
            key_hash(b"x") <= u64::MAX / 2
        );
        assert_eq!(router.route(None), Some(1));
    }

    #[test]
    fn keyless_cursor_moves_per_batch_of_the_current_shard() {
        let mut router = Router::new(&meta(1, &equal_ranges(3), &[]));
        assert_eq!(router.route(None), Some(0));
        router.batch_cut(2);
        assert_eq!(router.route(None), Some(0));
        router.batch_cut(0);
        assert_eq!(router.route(None), Some(1));
    }

    #[test]
    fn older_metadata_is_ignored() {
        let mut router = Router::new(&meta(5, &equal_ranges(2), &[]));
        router.update(&meta(4, &equal_ranges(1), &[]));
        assert_eq!(router.epoch(), 5);
        assert!(router.is_open(1));
    }
}
