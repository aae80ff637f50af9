//! Model-based property test of planning: random sequences of produce /
//! split / merge / move / isolate / fold / restart, on streams routed by key
//! or by the `type` header, against a reference model of which shard each
//! (type, key) event went to. After every step each group's open shards
//! cover the hash space once (one writer per key range of one type), sealed
//! shards stay sealed, every child's parents are sealed, and a key's
//! successive owners form a lineage chain (each a descendant of the one
//! before), which is what lets consumers keep per-key order.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use surge_protocol::routing::key_hash;
use surge_protocol::stream::{routing_group, TYPE_HEADER};

use super::change::{apply, check_coverage, plan, Change};
use super::meta::{test_settings, ShardMeta, StreamMeta};

const TYPES: [&str; 3] = ["click", "view", "buy"];

#[derive(Debug, Clone)]
enum Op {
    /// An event of `TYPES[type]` with a key of this hash.
    Produce(usize, u64),
    Split(usize, u64),
    Merge(usize),
    Move(usize),
    Isolate(usize, u32),
    Fold(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..TYPES.len(), any::<u64>()).prop_map(|(kind, hash)| Op::Produce(kind, hash)),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(index, at)| Op::Split(index, at)),
        2 => any::<usize>().prop_map(Op::Merge),
        1 => any::<usize>().prop_map(Op::Move),
        1 => (0..TYPES.len(), 0u32..4).prop_map(|(kind, shards)| Op::Isolate(kind, shards)),
        1 => (0..TYPES.len()).prop_map(Op::Fold),
        1 => Just(Op::Restart),
    ]
}

/// The one open shard an event of `event_type` whose key hashes to
/// `key_hash` goes to, by the same rules the router and forwarder use.
fn owner(meta: &StreamMeta, event_type: &str, key: u64) -> u32 {
    let isolated = meta.isolated_types();
    let group = routing_group(Some(event_type.as_bytes()), isolated.iter().copied());
    let hash = if meta.settings.routing_header == TYPE_HEADER {
        key_hash(event_type.as_bytes())
    } else {
        key
    };
    let owners: Vec<u32> = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none() && shard.group == group && shard.owns(hash))
        .map(|shard| shard.id)
        .collect();
    assert_eq!(
        owners.len(),
        1,
        "{event_type}/{hash:#x} has owners {owners:?}"
    );
    owners[0]
}

fn is_descendant(meta: &StreamMeta, child: u32, ancestor: u32) -> bool {
    let mut frontier = vec![child];
    let mut seen = HashSet::new();
    while let Some(id) = frontier.pop() {
        if id == ancestor {
            return true;
        }
        if !seen.insert(id) {
            continue;
        }
        if let Some(shard) = meta.shards.iter().find(|shard| shard.id == id) {
            frontier.extend(&shard.parents);
        }
    }
    false
}

/// Open shards sorted by group, then hash: neighbours in one group are
/// adjacent ranges.
fn open_sorted(meta: &StreamMeta) -> Vec<ShardMeta> {
    let mut open: Vec<ShardMeta> = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none())
        .cloned()
        .collect();
    open.sort_by(|a, b| (&a.group, a.hash_start).cmp(&(&b.group, b.hash_start)));
    open
}

fn change_for(meta: &StreamMeta, op: &Op) -> Option<Change> {
    let open = open_sorted(meta);
    match *op {
        Op::Split(index, at) => {
            let shard = &open[index % open.len()];
            let width = shard.hash_end - shard.hash_start;
            if width == 0 {
                return None;
            }
            Some(Change::Split {
                shard: shard.id,
                at: shard.hash_start + 1 + at % width,
            })
        }
        Op::Merge(index) if open.len() > 1 => {
            let index = index % (open.len() - 1);
            Some(Change::Merge {
                left: open[index].id,
                right: open[index + 1].id,
            })
        }
        Op::Move(index) => {
            let shard = &open[index % open.len()];
            Some(Change::Move {
                shard: shard.id,
                dir: 1 - shard.dir,
            })
        }
        Op::Isolate(kind, shards) => Some(Change::Isolate {
            event_type: TYPES[kind].into(),
            shards,
        }),
        Op::Fold(kind) => Some(Change::Fold {
            event_type: TYPES[kind].into(),
        }),
        _ => None,
    }
}

/// Whether the model expects `change` to be refused, and why.
fn refused(meta: &StreamMeta, change: &Change) -> Option<&'static str> {
    match change {
        Change::Merge { left, right } => {
            let group = |id: u32| {
                meta.shards
                    .iter()
                    .find(|shard| shard.id == id)
                    .map(|shard| &shard.group)
            };
            (group(*left) != group(*right)).then_some("different groups")
        }
        Change::Isolate { event_type, shards } => {
            if meta.isolated_types().contains(&event_type.as_str()) {
                Some("already isolated")
            } else if *shards > 1 && meta.settings.routing_header == TYPE_HEADER {
                Some("one shard")
            } else {
                None
            }
        }
        Change::Fold { event_type } => {
            (!meta.isolated_types().contains(&event_type.as_str())).then_some("not isolated")
        }
        _ => None,
    }
}

fn check_invariants(meta: &StreamMeta, sealed_ever: &HashSet<u32>) -> Result<(), TestCaseError> {
    check_coverage(meta).map_err(TestCaseError::fail)?;
    let ids: HashSet<u32> = meta.shards.iter().map(|shard| shard.id).collect();
    prop_assert_eq!(ids.len(), meta.shards.len(), "shard ids are unique");
    for shard in &meta.shards {
        if sealed_ever.contains(&shard.id) {
            prop_assert!(shard.sealed_at.is_some(), "shard {} reopened", shard.id);
        }
        for parent in &shard.parents {
            let parent = meta.shards.iter().find(|candidate| candidate.id == *parent);
            prop_assert!(
                parent.is_some_and(|parent| parent.sealed_at.is_some()),
                "a child's parent is open"
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn lineage_and_coverage_hold_under_any_sequence(
        initial in 1u32..5,
        by_type in any::<bool>(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut settings = test_settings();
        if by_type {
            settings.routing_header = TYPE_HEADER.into();
        }
        let mut meta = StreamMeta::new("model", settings, initial);
        // Reference model: the last shard each produced (type, key) went to.
        let mut last_owner: HashMap<(usize, u64), u32> = HashMap::new();
        let mut sealed_ever: HashSet<u32> = HashSet::new();
        let mut end_offsets: HashMap<u32, u64> = HashMap::new();
        for op in &ops {
            match op {
                Op::Produce(kind, hash) => {
                    let now = owner(&meta, TYPES[*kind], *hash);
                    if let Some(before) = last_owner.insert((*kind, *hash), now) {
                        prop_assert!(is_descendant(&meta, now, before), "{hash:#x}: {now} does not descend from {before}");
                    }
                    *end_offsets.entry(now).or_default() += 1;
                }
                Op::Restart => {
                    let reloaded = StreamMeta::decode(&meta.encode()).expect("metadata round-trips");
                    prop_assert_eq!(&reloaded, &meta);
                }
                other => {
                    let Some(change) = change_for(&meta, other) else { continue };
                    let planned = plan(&meta, &change, 2);
                    if let Some(reason) = refused(&meta, &change) {
                        let err = planned.expect_err("the model expects a refusal");
                        prop_assert!(err.contains(reason), "{change:?}: {err}");
                        continue;
                    }
                    let plan = planned.map_err(|err| TestCaseError::fail(format!("{change:?}: {err}")))?;
                    let ends: Vec<(u32, u64)> = plan
                        .sealed
                        .iter()
                        .map(|id| (*id, end_offsets.get(id).copied().unwrap_or(0)))
                        .collect();
                    let next = apply(&meta, &plan, &ends);
                    prop_assert_eq!(next.epoch, meta.epoch + 1);
                    sealed_ever.extend(plan.sealed.iter().copied());
                    meta = next;
                }
            }
            check_invariants(&meta, &sealed_ever)?;
            // Keys seen before still map to descendants of their last owner.
            for ((kind, hash), before) in &last_owner {
                let now = owner(&meta, TYPES[*kind], *hash);
                prop_assert!(is_descendant(&meta, now, *before), "{}/{hash:#x}: {now} does not descend from {before}", TYPES[*kind]);
            }
        }
    }
}
