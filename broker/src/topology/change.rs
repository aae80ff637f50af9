//! Planning a topology change: which shards are sealed and which successors
//! take over their ranges. Pure: no I/O, so every rule here is table-tested
//! and the broker applies only plans that passed it.
//!
//! Every change is seal-and-succeed: split seals one shard and creates two
//! children over its range; merge seals two adjacent shards and creates one
//! child over both; move seals one shard and creates one child over the same
//! range in another data directory. Children list every sealed shard as a
//! parent, so the lineage rule (read a child only after its parents are
//! drained) keeps per-key order.

use super::meta::{ShardMeta, StreamMeta};
use crate::config::MAX_SHARDS_PER_STREAM;

/// Shards a stream may hold, sealed ones included, before retention must
/// remove some: bounds the metadata and the lineage walk.
pub const MAX_SHARDS_EVER_PER_STREAM: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Split `shard`; the upper child starts at hash `at`.
    Split { shard: u32, at: u64 },
    /// Merge two adjacent open shards (either order).
    Merge { left: u32, right: u32 },
    /// Continue `shard` in data directory `dir`.
    Move { shard: u32, dir: u32 },
}

/// What a change does: shards to seal and successors to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sealed: Vec<u32>,
    pub created: Vec<ShardMeta>,
}

fn open_shard(meta: &StreamMeta, id: u32) -> Result<&ShardMeta, String> {
    let shard = meta
        .shards
        .iter()
        .find(|shard| shard.id == id)
        .ok_or_else(|| format!("stream {} has no shard {id}", meta.name))?;
    if shard.sealed_at.is_some() {
        return Err(format!("shard {id} is sealed"));
    }
    Ok(shard)
}

/// Checks a change against the current metadata and plans it. `dirs` is the
/// number of data directories the broker has.
pub fn plan(meta: &StreamMeta, change: Change, dirs: u32) -> Result<Plan, String> {
    let open = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none())
        .count();
    let mut next_id = meta.next_shard_id;
    let mut child = |hash_start: u64, hash_end: u64, parents: Vec<u32>, dir: u32| {
        let id = next_id;
        next_id += 1;
        ShardMeta {
            id,
            hash_start,
            hash_end,
            sealed_at: None,
            parents,
            dir,
        }
    };
    let plan = match change {
        Change::Split { shard, at } => {
            let parent = open_shard(meta, shard)?;
            if at <= parent.hash_start || at > parent.hash_end {
                return Err(format!(
                    "split point {at:#x} must lie in ({:#x}, {:#x}]",
                    parent.hash_start, parent.hash_end
                ));
            }
            if open as u32 >= MAX_SHARDS_PER_STREAM {
                return Err(format!("the stream already has {open} open shards"));
            }
            Plan {
                sealed: vec![shard],
                created: vec![
                    child(parent.hash_start, at - 1, vec![shard], parent.dir),
                    child(at, parent.hash_end, vec![shard], parent.dir),
                ],
            }
        }
        Change::Merge { left, right } => {
            let (a, b) = (open_shard(meta, left)?, open_shard(meta, right)?);
            let (low, high) = if a.hash_start < b.hash_start {
                (a, b)
            } else {
                (b, a)
            };
            if low.id == high.id || low.hash_end.checked_add(1) != Some(high.hash_start) {
                return Err(format!("shards {left} and {right} are not adjacent"));
            }
            Plan {
                sealed: vec![low.id, high.id],
                created: vec![child(
                    low.hash_start,
                    high.hash_end,
                    vec![low.id, high.id],
                    low.dir,
                )],
            }
        }
        Change::Move { shard, dir } => {
            let parent = open_shard(meta, shard)?;
            if dir >= dirs {
                return Err(format!(
                    "data directory {dir} does not exist (the broker has {dirs})"
                ));
            }
            if dir == parent.dir {
                return Err(format!("shard {shard} is already in data directory {dir}"));
            }
            Plan {
                sealed: vec![shard],
                created: vec![child(parent.hash_start, parent.hash_end, vec![shard], dir)],
            }
        }
    };
    if meta.shards.len() + plan.created.len() > MAX_SHARDS_EVER_PER_STREAM {
        return Err(format!(
            "the stream holds {} shards; retention must remove sealed ones first",
            meta.shards.len()
        ));
    }
    Ok(plan)
}

/// The metadata after `plan`, with each sealed shard's end offset.
pub fn apply(meta: &StreamMeta, plan: &Plan, sealed_at: &[(u32, u64)]) -> StreamMeta {
    let mut next = meta.clone();
    for (id, end) in sealed_at {
        let shard = next
            .shards
            .iter_mut()
            .find(|shard| shard.id == *id)
            .expect("planned shards exist");
        assert!(shard.sealed_at.is_none(), "shard {id} sealed twice");
        shard.sealed_at = Some(*end);
    }
    assert_eq!(
        sealed_at.len(),
        plan.sealed.len(),
        "every planned shard is sealed"
    );
    next.shards.extend(plan.created.iter().cloned());
    next.next_shard_id = plan
        .created
        .iter()
        .map(|shard| shard.id + 1)
        .max()
        .unwrap_or(next.next_shard_id);
    next.epoch += 1;
    next
}

/// Checks that the open shards cover the whole hash space exactly once.
pub fn check_coverage(meta: &StreamMeta) -> Result<(), String> {
    let mut open: Vec<&ShardMeta> = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none())
        .collect();
    open.sort_by_key(|shard| shard.hash_start);
    let mut expected_start = 0u64;
    for (index, shard) in open.iter().enumerate() {
        if shard.hash_start != expected_start {
            return Err(format!(
                "shard {} starts at {:#x}, expected {expected_start:#x}",
                shard.id, shard.hash_start
            ));
        }
        if shard.hash_end == u64::MAX {
            if index + 1 != open.len() {
                return Err(format!("shard {} ends the space but is not last", shard.id));
            }
            return Ok(());
        }
        expected_start = shard.hash_end + 1;
    }
    Err(format!("open shards stop at {expected_start:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::meta::test_settings;

    fn meta(shards: u32) -> StreamMeta {
        StreamMeta::new("s", test_settings(), shards)
    }

    fn sealed_ends(plan: &Plan) -> Vec<(u32, u64)> {
        plan.sealed.iter().map(|&id| (id, 10)).collect()
    }

    #[test]
    fn split_creates_two_children_over_the_parent_range() {
        let before = meta(1);
        let plan = plan(
            &before,
            Change::Split {
                shard: 0,
                at: 1 << 63,
            },
            1,
        )
        .unwrap();
        assert_eq!(plan.sealed, vec![0]);
        assert_eq!(plan.created.len(), 2);
        assert_eq!(
            (plan.created[0].hash_start, plan.created[0].hash_end),
            (0, (1 << 63) - 1)
        );
        assert_eq!(
            (plan.created[1].hash_start, plan.created[1].hash_end),
            (1 << 63, u64::MAX)
        );
        assert!(plan.created.iter().all(|child| child.parents == vec![0]));
        let after = apply(&before, &plan, &sealed_ends(&plan));
        assert_eq!(after.epoch, before.epoch + 1);
        assert_eq!(after.next_shard_id, 3);
        assert_eq!(after.shards[0].sealed_at, Some(10));
        check_coverage(&after).unwrap();
    }

    #[test]
    fn merge_needs_adjacent_open_shards_in_either_order() {
        let before = meta(3);
        assert!(plan(&before, Change::Merge { left: 0, right: 2 }, 1).is_err());
        assert!(plan(&before, Change::Merge { left: 1, right: 1 }, 1).is_err());
        let plan = plan(&before, Change::Merge { left: 2, right: 1 }, 1).unwrap();
        assert_eq!(plan.sealed, vec![1, 2]);
        assert_eq!(plan.created[0].parents, vec![1, 2]);
        let after = apply(&before, &plan, &sealed_ends(&plan));
        check_coverage(&after).unwrap();
        assert_eq!(after.config().shard_count, 2);
    }

    #[test]
    fn invalid_changes_are_refused_with_a_reason() {
        let before = meta(2);
        let first_end = before.shards[0].hash_end;
        let table: &[(Change, &str)] = &[
            (Change::Split { shard: 9, at: 5 }, "no shard 9"),
            (Change::Split { shard: 0, at: 0 }, "must lie in"),
            (
                Change::Split {
                    shard: 0,
                    at: first_end + 1,
                },
                "must lie in",
            ),
            (Change::Move { shard: 0, dir: 0 }, "already in"),
            (Change::Move { shard: 0, dir: 3 }, "does not exist"),
        ];
        for (change, reason) in table {
            let err = plan(&before, *change, 2).unwrap_err();
            assert!(err.contains(reason), "{change:?}: {err}");
        }
        let split = plan(&before, Change::Split { shard: 0, at: 100 }, 1).unwrap();
        let after = apply(&before, &split, &sealed_ends(&split));
        let err = plan(&after, Change::Split { shard: 0, at: 50 }, 1).unwrap_err();
        assert!(err.contains("sealed"), "{err}");
    }

    #[test]
    fn move_keeps_the_range_in_another_directory() {
        let before = meta(1);
        let plan = plan(&before, Change::Move { shard: 0, dir: 1 }, 2).unwrap();
        assert_eq!(plan.created[0].dir, 1);
        assert_eq!(plan.created[0].hash_start, 0);
        assert_eq!(plan.created[0].hash_end, u64::MAX);
        check_coverage(&apply(&before, &plan, &sealed_ends(&plan))).unwrap();
    }

    #[test]
    fn coverage_check_finds_gaps_and_overlaps() {
        let mut broken = meta(2);
        broken.shards[1].hash_start += 1;
        assert!(check_coverage(&broken).is_err());
        let mut overlapping = meta(2);
        overlapping.shards[0].hash_end = u64::MAX;
        assert!(check_coverage(&overlapping).is_err());
    }
}

/// Model-based property test: random sequences of produce / split / merge /
/// move / restart against a reference model of which shard each key's
/// events went to. After every step the open shards cover the hash space
/// once, sealed shards stay sealed, every child's parents are sealed, and a
/// key's successive owners form a lineage chain (each a descendant of the
/// one before), which is what lets consumers keep per-key order.
#[cfg(test)]
mod model {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;
    use crate::topology::meta::test_settings;

    #[derive(Debug, Clone)]
    enum Op {
        Produce(u64),
        Split(usize, u64),
        Merge(usize),
        Move(usize),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u64>().prop_map(Op::Produce),
            2 => (any::<usize>(), any::<u64>()).prop_map(|(index, at)| Op::Split(index, at)),
            2 => any::<usize>().prop_map(Op::Merge),
            1 => any::<usize>().prop_map(Op::Move),
            1 => Just(Op::Restart),
        ]
    }

    fn owner(meta: &StreamMeta, hash: u64) -> u32 {
        let owners: Vec<u32> = meta
            .shards
            .iter()
            .filter(|shard| shard.sealed_at.is_none() && shard.owns(hash))
            .map(|shard| shard.id)
            .collect();
        assert_eq!(owners.len(), 1, "hash {hash:#x} has owners {owners:?}");
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

    fn open_sorted(meta: &StreamMeta) -> Vec<ShardMeta> {
        let mut open: Vec<ShardMeta> = meta
            .shards
            .iter()
            .filter(|shard| shard.sealed_at.is_none())
            .cloned()
            .collect();
        open.sort_by_key(|shard| shard.hash_start);
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
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn lineage_and_coverage_hold_under_any_sequence(
            initial in 1u32..5,
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut meta = StreamMeta::new("model", test_settings(), initial);
            // Reference model: the last shard each produced key went to.
            let mut last_owner: HashMap<u64, u32> = HashMap::new();
            let mut sealed_ever: HashSet<u32> = HashSet::new();
            let mut end_offsets: HashMap<u32, u64> = HashMap::new();
            for op in &ops {
                match op {
                    Op::Produce(hash) => {
                        let now = owner(&meta, *hash);
                        if let Some(before) = last_owner.insert(*hash, now) {
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
                        let plan = plan(&meta, change, 2).expect("valid changes plan");
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
                check_coverage(&meta).map_err(TestCaseError::fail)?;
                let ids: HashSet<u32> = meta.shards.iter().map(|shard| shard.id).collect();
                prop_assert_eq!(ids.len(), meta.shards.len(), "shard ids are unique");
                for shard in &meta.shards {
                    if sealed_ever.contains(&shard.id) {
                        prop_assert!(shard.sealed_at.is_some(), "shard {} reopened", shard.id);
                    }
                    for parent in &shard.parents {
                        let parent = meta.shards.iter().find(|candidate| candidate.id == *parent);
                        prop_assert!(parent.is_some_and(|parent| parent.sealed_at.is_some()), "a child's parent is open");
                    }
                }
                // Keys seen before still map to descendants of their last owner.
                for (hash, before) in &last_owner {
                    prop_assert!(is_descendant(&meta, owner(&meta, *hash), *before));
                }
            }
        }
    }
}
