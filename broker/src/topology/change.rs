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
//!
//! Shards belong to a group: the default one (`""`), or an event type
//! isolated onto shards of its own (`isolate`). Each group's open shards
//! cover the hash space once, so every (type, routing value) has exactly
//! one writer; split, merge and move stay inside one group.

use super::isolate;
use super::meta::{ShardMeta, StreamMeta};
use crate::config::MAX_SHARDS_PER_STREAM;

/// Shards a stream may hold, sealed ones included, before retention must
/// remove some: bounds the metadata and the lineage walk.
pub const MAX_SHARDS_EVER_PER_STREAM: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Split `shard`; the upper child starts at hash `at`.
    Split { shard: u32, at: u64 },
    /// Merge two adjacent open shards of one group (either order).
    Merge { left: u32, right: u32 },
    /// Continue `shard` in data directory `dir`.
    Move { shard: u32, dir: u32 },
    /// Give `event_type` a group of `shards` shards of its own.
    Isolate { event_type: String, shards: u32 },
    /// Return `event_type` to the default group.
    Fold { event_type: String },
}

/// What a change does: shards to seal and successors to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sealed: Vec<u32>,
    pub created: Vec<ShardMeta>,
}

/// Hands out successor ids in order, from the stream's next id.
#[derive(Debug)]
pub(super) struct Successors {
    next_id: u32,
}

impl Successors {
    pub(super) fn child(
        &mut self,
        range: (u64, u64),
        parents: Vec<u32>,
        dir: u32,
        group: &str,
    ) -> ShardMeta {
        let id = self.next_id;
        self.next_id += 1;
        ShardMeta {
            id,
            hash_start: range.0,
            hash_end: range.1,
            sealed_at: None,
            parents,
            dir,
            group: group.to_owned(),
        }
    }
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
pub fn plan(meta: &StreamMeta, change: &Change, dirs: u32) -> Result<Plan, String> {
    let open = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none())
        .count() as u32;
    let mut successors = Successors {
        next_id: meta.next_shard_id,
    };
    let plan = match change {
        Change::Split { shard, at } => {
            let parent = open_shard(meta, *shard)?;
            if *at <= parent.hash_start || *at > parent.hash_end {
                return Err(format!(
                    "split point {at:#x} must lie in ({:#x}, {:#x}]",
                    parent.hash_start, parent.hash_end
                ));
            }
            if open >= MAX_SHARDS_PER_STREAM {
                return Err(format!("the stream already has {open} open shards"));
            }
            let (dir, group) = (parent.dir, parent.group.as_str());
            Plan {
                sealed: vec![*shard],
                created: vec![
                    successors.child((parent.hash_start, at - 1), vec![*shard], dir, group),
                    successors.child((*at, parent.hash_end), vec![*shard], dir, group),
                ],
            }
        }
        Change::Merge { left, right } => plan_merge(meta, *left, *right, &mut successors)?,
        Change::Move { shard, dir } => {
            let parent = open_shard(meta, *shard)?;
            if *dir >= dirs {
                return Err(format!(
                    "data directory {dir} does not exist (the broker has {dirs})"
                ));
            }
            if *dir == parent.dir {
                return Err(format!("shard {shard} is already in data directory {dir}"));
            }
            let range = (parent.hash_start, parent.hash_end);
            Plan {
                sealed: vec![*shard],
                created: vec![successors.child(range, vec![*shard], *dir, &parent.group)],
            }
        }
        Change::Isolate { event_type, shards } => {
            let count = (*shards).max(1);
            if open.saturating_add(count) > MAX_SHARDS_PER_STREAM {
                return Err(format!(
                    "the stream has {open} open shards; {count} more exceed the limit {MAX_SHARDS_PER_STREAM}"
                ));
            }
            isolate::plan_isolate(meta, event_type, count, &mut successors)?
        }
        Change::Fold { event_type } => isolate::plan_fold(meta, event_type, &mut successors)?,
    };
    if meta.shards.len() + plan.created.len() > MAX_SHARDS_EVER_PER_STREAM {
        return Err(format!(
            "the stream holds {} shards; retention must remove sealed ones first",
            meta.shards.len()
        ));
    }
    Ok(plan)
}

fn plan_merge(
    meta: &StreamMeta,
    left: u32,
    right: u32,
    successors: &mut Successors,
) -> Result<Plan, String> {
    let (a, b) = (open_shard(meta, left)?, open_shard(meta, right)?);
    let (low, high) = if a.hash_start < b.hash_start {
        (a, b)
    } else {
        (b, a)
    };
    if low.group != high.group {
        return Err(format!(
            "shards {left} and {right} are in different groups ({:?} and {:?})",
            low.group, high.group
        ));
    }
    if low.id == high.id || low.hash_end.checked_add(1) != Some(high.hash_start) {
        return Err(format!("shards {left} and {right} are not adjacent"));
    }
    let range = (low.hash_start, high.hash_end);
    Ok(Plan {
        sealed: vec![low.id, high.id],
        created: vec![successors.child(range, vec![low.id, high.id], low.dir, &low.group)],
    })
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

/// Checks that each group's open shards cover the whole hash space exactly
/// once, and that the default group has shards.
pub fn check_coverage(meta: &StreamMeta) -> Result<(), String> {
    let mut open: Vec<&ShardMeta> = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none())
        .collect();
    open.sort_by(|a, b| (&a.group, a.hash_start).cmp(&(&b.group, b.hash_start)));
    if open.first().is_none_or(|first| !first.group.is_empty()) {
        return Err("the default group has no open shards".into());
    }
    for group in open.chunk_by(|a, b| a.group == b.group) {
        check_group_coverage(group)?;
    }
    Ok(())
}

/// `group`: one group's open shards, sorted by `hash_start`.
fn check_group_coverage(group: &[&ShardMeta]) -> Result<(), String> {
    let mut expected_start = 0u64;
    for (index, shard) in group.iter().enumerate() {
        if shard.hash_start != expected_start {
            return Err(format!(
                "shard {} (group {:?}) starts at {:#x}, expected {expected_start:#x}",
                shard.id, shard.group, shard.hash_start
            ));
        }
        if shard.hash_end == u64::MAX {
            if index + 1 != group.len() {
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
            &Change::Split {
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
        assert!(plan(&before, &Change::Merge { left: 0, right: 2 }, 1).is_err());
        assert!(plan(&before, &Change::Merge { left: 1, right: 1 }, 1).is_err());
        let plan = plan(&before, &Change::Merge { left: 2, right: 1 }, 1).unwrap();
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
            let err = plan(&before, change, 2).unwrap_err();
            assert!(err.contains(reason), "{change:?}: {err}");
        }
        let split = plan(&before, &Change::Split { shard: 0, at: 100 }, 1).unwrap();
        let after = apply(&before, &split, &sealed_ends(&split));
        let err = plan(&after, &Change::Split { shard: 0, at: 50 }, 1).unwrap_err();
        assert!(err.contains("sealed"), "{err}");
    }

    #[test]
    fn move_keeps_the_range_in_another_directory() {
        let before = meta(1);
        let plan = plan(&before, &Change::Move { shard: 0, dir: 1 }, 2).unwrap();
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
