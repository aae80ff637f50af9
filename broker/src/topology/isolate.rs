//! Planning isolation rules: giving a hot event type shards of its own, and
//! folding it back into the default group. Pure, like the rest of planning.
//!
//! A shard belongs to one group: the default group (`""`) or one isolated
//! event type. An event whose `type` header names an isolated type is routed
//! by its routing value among that type's open shards; every other event
//! among the default group's. So each (type, routing value) has exactly one
//! writer at a time.
//!
//! Both rule changes are plain seal-and-succeed, so per-key order follows
//! from the lineage rule alone:
//!
//! - **Isolate T**: the *carriers* (default shards that may hold events of
//!   T) are sealed. Each gets a default successor over its range (parent:
//!   itself), and T's new shards list as parents every carrier whose range
//!   meets theirs: the shards that hold the older events of their keys.
//! - **Fold T**: T's open shards are sealed, and so are the default carriers
//!   that will take T's events again. Each carrier's successor lists the
//!   carrier and every T shard whose range meets its own.
//!
//! Sealing the carriers (rather than closing them to T only) is what keeps
//! the rule simple and safe: from the new epoch on, no old shard can take an
//! event of T (a sealed shard takes nothing), and a consumer reads T's new
//! shards only after their parents are sealed and drained, exactly as after
//! a split. The cost is that the carriers' other types move to successors
//! too, which is a metadata operation (no data is copied).
//!
//! Which default shards carry T depends on the routing key: routed by the
//! `type` header, all of T's events share one routing value, so only the
//! default shard owning its hash carries T (and T gets one shard: more would
//! stay empty); routed by key or another header, T's events may be in any
//! default shard, so all of them are carriers.

use surge_protocol::routing::{equal_ranges, key_hash};
use surge_protocol::stream::TYPE_HEADER;

use super::change::{Plan, Successors};
use super::meta::{ShardMeta, StreamMeta};

/// Event types a stream may isolate at once: bounds the groups a router
/// looks through per event.
pub const MAX_ISOLATED_TYPES: usize = 64;

/// Whether the inclusive ranges of two shards overlap.
fn meets(a: &ShardMeta, b: &ShardMeta) -> bool {
    a.hash_start <= b.hash_end && b.hash_start <= a.hash_end
}

fn open_in_group<'a>(meta: &'a StreamMeta, group: &str) -> Vec<&'a ShardMeta> {
    let mut open: Vec<&ShardMeta> = meta
        .shards
        .iter()
        .filter(|shard| shard.sealed_at.is_none() && shard.group == group)
        .collect();
    open.sort_by_key(|shard| shard.hash_start);
    open
}

/// The default group's open shards that hold (or will hold) events of
/// `event_type`, sorted by hash.
fn default_carriers<'a>(meta: &'a StreamMeta, event_type: &str) -> Vec<&'a ShardMeta> {
    let open = open_in_group(meta, "");
    if meta.settings.routing_header == TYPE_HEADER {
        let hash = key_hash(event_type.as_bytes());
        open.into_iter().filter(|shard| shard.owns(hash)).collect()
    } else {
        open
    }
}

fn check_type_name(event_type: &str) -> Result<(), String> {
    if surge_protocol::valid_name(event_type) {
        Ok(())
    } else {
        Err(format!(
            "event type {event_type:?}: isolated types are {}",
            surge_protocol::NAME_RULE
        ))
    }
}

/// Isolates `event_type` onto `count` (at least 1) new shards.
pub(super) fn plan_isolate(
    meta: &StreamMeta,
    event_type: &str,
    count: u32,
    successors: &mut Successors,
) -> Result<Plan, String> {
    check_type_name(event_type)?;
    let isolated = meta.isolated_types();
    if isolated.contains(&event_type) {
        return Err(format!("event type {event_type} is already isolated"));
    }
    if isolated.len() >= MAX_ISOLATED_TYPES {
        return Err(format!(
            "the stream already isolates {MAX_ISOLATED_TYPES} event types"
        ));
    }
    if count > 1 && meta.settings.routing_header == TYPE_HEADER {
        return Err(format!(
            "the stream routes by the type header: all of {event_type}'s events share one routing value, so it gets one shard, not {count}"
        ));
    }
    let carriers = default_carriers(meta, event_type);
    let mut created: Vec<ShardMeta> = carriers
        .iter()
        .map(|carrier| {
            let range = (carrier.hash_start, carrier.hash_end);
            successors.child(range, vec![carrier.id], carrier.dir, "")
        })
        .collect();
    for range in equal_ranges(count) {
        let mut child = successors.child(range, Vec::new(), 0, event_type);
        let parents: Vec<&ShardMeta> = carriers
            .iter()
            .copied()
            .filter(|carrier| meets(carrier, &child))
            .collect();
        child.dir = parents.first().map_or(0, |parent| parent.dir);
        child.parents = parents.iter().map(|parent| parent.id).collect();
        created.push(child);
    }
    Ok(Plan {
        sealed: carriers.iter().map(|carrier| carrier.id).collect(),
        created,
    })
}

/// Returns `event_type` to the default group.
pub(super) fn plan_fold(
    meta: &StreamMeta,
    event_type: &str,
    successors: &mut Successors,
) -> Result<Plan, String> {
    check_type_name(event_type)?;
    let isolated = open_in_group(meta, event_type);
    if isolated.is_empty() {
        return Err(format!("event type {event_type} is not isolated"));
    }
    let carriers = default_carriers(meta, event_type);
    let created = carriers
        .iter()
        .map(|carrier| {
            let parents = std::iter::once(carrier.id)
                .chain(
                    isolated
                        .iter()
                        .filter(|shard| meets(shard, carrier))
                        .map(|shard| shard.id),
                )
                .collect();
            let range = (carrier.hash_start, carrier.hash_end);
            successors.child(range, parents, carrier.dir, "")
        })
        .collect();
    Ok(Plan {
        sealed: carriers
            .iter()
            .chain(&isolated)
            .map(|shard| shard.id)
            .collect(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::super::change::{apply, check_coverage, plan, Change};
    use super::*;
    use crate::topology::meta::test_settings;

    fn stream(shards: u32, routing_header: &str) -> StreamMeta {
        let mut settings = test_settings();
        settings.routing_header = routing_header.into();
        StreamMeta::new("s", settings, shards)
    }

    fn applied(meta: &StreamMeta, change: Change) -> StreamMeta {
        let plan = plan(meta, &change, 1).unwrap();
        let ends: Vec<(u32, u64)> = plan.sealed.iter().map(|&id| (id, 5)).collect();
        let next = apply(meta, &plan, &ends);
        check_coverage(&next).unwrap();
        next
    }

    fn isolate(event_type: &str, shards: u32) -> Change {
        Change::Isolate {
            event_type: event_type.into(),
            shards,
        }
    }

    #[test]
    fn isolating_by_key_seals_every_default_shard() {
        let before = stream(3, "");
        let after = applied(&before, isolate("click", 2));
        let open = |group: &str| open_in_group(&after, group);
        let defaults = open("");
        assert_eq!(defaults.len(), 3);
        for (successor, old) in defaults.iter().zip(&before.shards) {
            assert_eq!(successor.parents, vec![old.id]);
            assert_eq!(successor.hash_start, old.hash_start);
        }
        let clicks = open("click");
        assert_eq!(clicks.len(), 2);
        // Three equal ranges against two: the middle one meets both halves.
        assert_eq!(clicks[0].parents, vec![0, 1]);
        assert_eq!(clicks[1].parents, vec![1, 2]);
        assert_eq!(after.isolated_types(), vec!["click"]);
        assert!(after.shards[..3].iter().all(|old| old.sealed_at == Some(5)));
    }

    #[test]
    fn isolating_by_type_seals_only_the_shard_that_carried_it() {
        let before = stream(4, "type");
        let hash = key_hash(b"click");
        let carrier = before
            .shards
            .iter()
            .find(|shard| shard.owns(hash))
            .unwrap()
            .id;
        let plan = plan(&before, &isolate("click", 0), 1).unwrap();
        assert_eq!(plan.sealed, vec![carrier]);
        assert_eq!(plan.created.len(), 2);
        assert_eq!(plan.created[1].group, "click");
        assert_eq!(plan.created[1].parents, vec![carrier]);
        assert_eq!(
            (plan.created[1].hash_start, plan.created[1].hash_end),
            (0, u64::MAX)
        );
        let err = super::super::change::plan(&before, &isolate("click", 3), 1).unwrap_err();
        assert!(err.contains("one shard"), "{err}");
    }

    #[test]
    fn folding_makes_default_successors_children_of_the_type_shards() {
        let isolated = applied(&stream(2, ""), isolate("click", 1));
        let click_shard = open_in_group(&isolated, "click")[0].id;
        let folded = applied(
            &isolated,
            Change::Fold {
                event_type: "click".into(),
            },
        );
        assert!(folded.isolated_types().is_empty());
        let defaults = open_in_group(&folded, "");
        assert_eq!(defaults.len(), 2);
        for shard in defaults {
            assert!(shard.parents.contains(&click_shard), "{shard:?}");
            assert_eq!(shard.parents.len(), 2);
        }
    }

    #[test]
    fn bad_rule_changes_are_refused_with_a_reason() {
        let isolated = applied(&stream(2, ""), isolate("click", 2));
        let table: &[(&StreamMeta, Change, &str)] = &[
            (&isolated, isolate("click", 1), "already isolated"),
            (&isolated, isolate("no spaces", 1), "characters"),
            (&isolated, isolate("", 1), "characters"),
            (
                &isolated,
                Change::Fold {
                    event_type: "view".into(),
                },
                "not isolated",
            ),
        ];
        for (meta, change, reason) in table {
            let err = plan(meta, change, 1).unwrap_err();
            assert!(err.contains(reason), "{change:?}: {err}");
        }
        let default_shard = open_in_group(&isolated, "")[0].id;
        let click_shard = open_in_group(&isolated, "click")[0].id;
        let merge = Change::Merge {
            left: default_shard,
            right: click_shard,
        };
        let err = plan(&isolated, &merge, 1).unwrap_err();
        assert!(err.contains("different groups"), "{err}");
    }

    #[test]
    fn splits_and_merges_stay_inside_the_type_group() {
        let isolated = applied(&stream(1, ""), isolate("click", 2));
        let clicks = open_in_group(&isolated, "click");
        let (left, right) = (clicks[0].id, clicks[1].id);
        let merged = applied(&isolated, Change::Merge { left, right });
        let merged_click = open_in_group(&merged, "click");
        assert_eq!(merged_click.len(), 1);
        assert_eq!(merged_click[0].parents, vec![left, right]);
        let shard = merged_click[0].id;
        let split = applied(&merged, Change::Split { shard, at: 1 << 40 });
        assert!(open_in_group(&split, "click")
            .iter()
            .all(|child| child.parents == vec![shard]));
    }

    #[test]
    fn isolated_types_are_bounded() {
        let mut meta = stream(1, "");
        for index in 0..MAX_ISOLATED_TYPES {
            meta = applied(&meta, isolate(&format!("t{index}"), 1));
        }
        let err = plan(&meta, &isolate("one-more", 1), 1).unwrap_err();
        assert!(err.contains("already isolates"), "{err}");
    }
}
