//! The topology cache a producer routes by: the open shards of one stream
//! with their inclusive key-hash ranges, grouped by isolation group (the
//! default group, and one per isolated event type), the routing epoch they
//! belong to, and a round-robin cursor per group for keyless events.
//!
//! An event is routed in two steps, by the rules the broker forwards by:
//! its `type` header picks the group (`routing_group`), then its routing
//! value (key or routing header) picks the shard among the group's.

use surge_protocol::routing::key_hash;
use surge_protocol::stream::{routing_group, ShardState, StreamMetadata, TYPE_HEADER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    hash_start: u64,
    hash_end: u64,
    shard_id: u32,
}

/// One group's open shards.
#[derive(Debug, Default)]
struct Group {
    /// The isolated event type; empty for the default group.
    name: String,
    /// Sorted by `hash_start`.
    open: Vec<Range>,
    /// Index into `open` of the shard keyless events go to now.
    keyless_cursor: usize,
}

impl Group {
    fn route(&self, value: Option<&[u8]>) -> Option<u32> {
        let Some(value) = value else {
            if self.open.is_empty() {
                return None;
            }
            return Some(self.open[self.keyless_cursor % self.open.len()].shard_id);
        };
        let hash = key_hash(value);
        // The last range starting at or below the hash, if it reaches it.
        let index = self.open.partition_point(|range| range.hash_start <= hash);
        let range = self.open.get(index.checked_sub(1)?)?;
        (hash <= range.hash_end).then_some(range.shard_id)
    }
}

/// What an event is routed by: its group (an index into the router's
/// groups, valid until the next `update`) and its routing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteKey<'a> {
    group: usize,
    value: Option<&'a [u8]>,
}

#[derive(Debug)]
pub(crate) struct Router {
    epoch: u64,
    /// The default group first, then the isolated types by name.
    groups: Vec<Group>,
    /// Empty: events route by key; else by this header.
    routing_header: String,
}

impl Default for Router {
    fn default() -> Router {
        Router {
            epoch: 0,
            groups: vec![Group::default()],
            routing_header: String::new(),
        }
    }
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
        let mut groups = vec![Group::default()];
        for shard in meta
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
        {
            let index = match groups.iter().position(|group| group.name == shard.group) {
                Some(index) => index,
                None => {
                    groups.push(Group {
                        name: shard.group.clone(),
                        ..Group::default()
                    });
                    groups.len() - 1
                }
            };
            groups[index].open.push(Range {
                hash_start: shard.hash_start,
                hash_end: shard.hash_end,
                shard_id: shard.shard_id,
            });
        }
        for group in &mut groups {
            group.open.sort_by_key(|range| range.hash_start);
        }
        groups[1..].sort_by(|a, b| a.name.cmp(&b.name));
        self.groups = groups;
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn is_open(&self, shard_id: u32) -> bool {
        self.groups
            .iter()
            .any(|group| group.open.iter().any(|range| range.shard_id == shard_id))
    }

    /// What `event` is routed by: the group its type picks, and its key or
    /// the stream's routing header.
    pub(crate) fn routing_value<'a>(&self, event: &'a crate::Event) -> RouteKey<'a> {
        let header = |name: &str| {
            event
                .headers
                .iter()
                .find(|(header, _)| header.as_ref() == name)
                .map(|(_, value)| value.as_ref())
        };
        // Most streams isolate no type: then no event's headers are read
        // for its group (this runs for every event sent).
        let group = if self.groups.len() == 1 {
            0
        } else {
            let isolated = self.groups[1..].iter().map(|group| group.name.as_str());
            let name = routing_group(header(TYPE_HEADER), isolated);
            self.groups
                .iter()
                .position(|group| group.name == name)
                .unwrap_or(0)
        };
        let value = surge_protocol::stream::routing_value(
            &self.routing_header,
            event.key.as_deref(),
            header,
        );
        RouteKey { group, value }
    }

    /// The shard for a routing key: by its value's hash among its group's
    /// shards, or the group's current keyless shard. `None` when no open
    /// shard covers it.
    pub(crate) fn route(&self, key: RouteKey<'_>) -> Option<u32> {
        self.groups.get(key.group)?.route(key.value)
    }

    /// Keyless events spread round-robin per batch: called when a batch of
    /// the current keyless shard of its group is cut.
    pub(crate) fn batch_cut(&mut self, shard_id: u32) {
        for group in &mut self.groups {
            if group.route(None) == Some(shard_id) {
                group.keyless_cursor = group.keyless_cursor.wrapping_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use surge_protocol::routing::equal_ranges;
    use surge_protocol::stream::ShardInfo;

    use super::*;

    /// Routes a bare value in the default group.
    fn by_value(router: &Router, value: Option<&[u8]>) -> Option<u32> {
        router.route(RouteKey { group: 0, value })
    }

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
        assert_eq!(shard_of("a"), by_value(&router, Some(b"click")));
        let untyped = crate::Event::new("v").with_key("a");
        assert_eq!(
            router.routing_value(&untyped).value,
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
            let shard = by_value(&router, Some(&key)).expect("covered");
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
            by_value(&router, Some(b"x")).is_none(),
            key_hash(b"x") <= u64::MAX / 2
        );
        assert_eq!(by_value(&router, None), Some(1));
    }

    #[test]
    fn keyless_cursor_moves_per_batch_of_the_current_shard() {
        let mut router = Router::new(&meta(1, &equal_ranges(3), &[]));
        assert_eq!(by_value(&router, None), Some(0));
        router.batch_cut(2);
        assert_eq!(by_value(&router, None), Some(0));
        router.batch_cut(0);
        assert_eq!(by_value(&router, None), Some(1));
    }

    #[test]
    fn older_metadata_is_ignored() {
        let mut router = Router::new(&meta(5, &equal_ranges(2), &[]));
        router.update(&meta(4, &equal_ranges(1), &[]));
        assert_eq!(router.epoch(), 5);
        assert!(router.is_open(1));
    }

    /// Four default shards (ids 0-3) and two shards (ids 10, 11) isolated
    /// for `click`.
    fn isolated(epoch: u64) -> StreamMetadata {
        let mut isolated = meta(epoch, &equal_ranges(4), &[]);
        for (index, (hash_start, hash_end)) in equal_ranges(2).into_iter().enumerate() {
            isolated.shards.push(ShardInfo {
                shard_id: 10 + index as u32,
                hash_start,
                hash_end,
                group: "click".into(),
                ..ShardInfo::default()
            });
        }
        isolated
    }

    #[test]
    fn an_isolated_type_routes_among_its_own_shards_by_key() {
        let mut router = Router::new(&isolated(2));
        let shard_of = |router: &Router, key: &str, event_type: &str| {
            let event = crate::Event::new("v")
                .with_key(key.to_owned())
                .with_type(event_type);
            router.route(router.routing_value(&event)).expect("covered")
        };
        for key in 0..100 {
            let key = format!("key-{key}");
            let hash = key_hash(key.as_bytes());
            let click = shard_of(&router, &key, "click");
            assert_eq!(click, if hash <= u64::MAX / 2 { 10 } else { 11 });
            let view = shard_of(&router, &key, "view");
            assert_eq!(view, hash_start_index(&equal_ranges(4), hash));
            let untyped = crate::Event::new("v").with_key(key.clone());
            assert_eq!(router.route(router.routing_value(&untyped)), Some(view));
        }
        // Folded back: the click shards are sealed, clicks route by key
        // among the default shards again.
        let mut folded = isolated(3);
        for shard in &mut folded.shards[4..] {
            shard.state = ShardState::Sealed;
        }
        router.update(&folded);
        assert!(!router.is_open(10));
        let hash = key_hash(b"k");
        assert_eq!(
            shard_of(&router, "k", "click"),
            hash_start_index(&equal_ranges(4), hash)
        );
    }

    #[test]
    fn keyless_events_round_robin_inside_their_group() {
        let mut router = Router::new(&isolated(2));
        let keyless = |router: &Router, event_type: &str| {
            let event = crate::Event::new("v").with_type(event_type);
            router.route(router.routing_value(&event))
        };
        assert_eq!(keyless(&router, "click"), Some(10));
        assert_eq!(keyless(&router, "view"), Some(0));
        router.batch_cut(10);
        assert_eq!(keyless(&router, "click"), Some(11));
        assert_eq!(
            keyless(&router, "view"),
            Some(0),
            "the default cursor stays"
        );
    }

    fn hash_start_index(ranges: &[(u64, u64)], hash: u64) -> u32 {
        ranges
            .iter()
            .position(|&(start, end)| start <= hash && hash <= end)
            .expect("ranges cover the space") as u32
    }
}
