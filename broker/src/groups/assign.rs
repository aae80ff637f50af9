//! Target assignment: which live member should read which shard. Pure and
//! deterministic: the same members, shards and previous target always give
//! the same answer, so every broker computes the same plan and a test can
//! state it in a table.
//!
//! The plan is balanced (member loads differ by at most one) and sticky: a
//! member keeps as many of its previous shards as its quota allows, members
//! that already hold more get the spare `+1` slots first, and only the
//! surplus moves. A join therefore moves about `shards / members` shards,
//! and a leave moves only the leaver's shards.

use std::collections::BTreeMap;

/// Computes the target owner of every shard.
///
/// `members` must be sorted and unique, `shards` sorted and unique.
/// `previous` is the last target; entries for shards or members that are
/// gone are ignored.
pub(crate) fn assign(
    members: &[String],
    shards: &[u32],
    previous: &BTreeMap<u32, String>,
) -> BTreeMap<u32, String> {
    assert!(members.is_sorted(), "members must be sorted");
    assert!(shards.is_sorted(), "shards must be sorted");
    let mut target = BTreeMap::new();
    if members.is_empty() {
        return target;
    }
    let kept = previous_shards(members, shards, previous);
    let quotas = quotas(members, shards.len(), &kept);
    let mut counts = vec![0usize; members.len()];
    for (index, member_shards) in kept.iter().enumerate() {
        for &shard in member_shards.iter().take(quotas[index]) {
            target.insert(shard, members[index].clone());
            counts[index] += 1;
        }
    }
    let mut free = shards.iter().filter(|shard| !target.contains_key(shard));
    let mut fills = Vec::new();
    for (index, quota) in quotas.iter().enumerate() {
        while counts[index] < *quota {
            let shard = free.next().expect("quotas sum to the shard count");
            fills.push((*shard, index));
            counts[index] += 1;
        }
    }
    assert!(free.next().is_none(), "every shard has a target");
    for (shard, index) in fills {
        target.insert(shard, members[index].clone());
    }
    target
}

/// Per member (by index into `members`), the still-existing shards it was
/// previously the target of, in ascending order.
fn previous_shards(
    members: &[String],
    shards: &[u32],
    previous: &BTreeMap<u32, String>,
) -> Vec<Vec<u32>> {
    let mut kept = vec![Vec::new(); members.len()];
    for (shard, member) in previous {
        if shards.binary_search(shard).is_err() {
            continue;
        }
        if let Ok(index) = members.binary_search(member) {
            kept[index].push(*shard);
        }
    }
    kept
}

/// Shards per member: `total / members`, plus one for the first
/// `total % members` members ordered by previous load (desc), then id.
fn quotas(members: &[String], total: usize, kept: &[Vec<u32>]) -> Vec<usize> {
    let base = total / members.len();
    let extra = total % members.len();
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        kept[b]
            .len()
            .cmp(&kept[a].len())
            .then_with(|| members[a].cmp(&members[b]))
    });
    let mut quotas = vec![base; members.len()];
    for &index in order.iter().take(extra) {
        quotas[index] += 1;
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("m{index}")).collect()
    }

    fn loads(target: &BTreeMap<u32, String>, members: &[String]) -> Vec<usize> {
        members
            .iter()
            .map(|member| target.values().filter(|owner| *owner == member).count())
            .collect()
    }

    #[test]
    fn every_shard_once_and_balanced_within_one() {
        for member_count in 1..=5 {
            for shard_count in 1..=16u32 {
                let members = names(member_count);
                let shards: Vec<u32> = (0..shard_count).collect();
                let target = assign(&members, &shards, &BTreeMap::new());
                let keys: Vec<u32> = target.keys().copied().collect();
                assert_eq!(keys, shards, "{member_count} members, {shard_count} shards");
                let loads = loads(&target, &members);
                let (min, max) = (loads.iter().min(), loads.iter().max());
                assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
                assert_eq!(target, assign(&members, &shards, &BTreeMap::new()));
            }
        }
    }

    #[test]
    fn table_of_expected_plans() {
        let cases: [(usize, &[u32], &[&str]); 4] = [
            (1, &[0, 1, 2], &["m0", "m0", "m0"]),
            (2, &[0, 1, 2], &["m0", "m0", "m1"]),
            (3, &[5, 7], &["m0", "m1"]),
            (2, &[1, 2, 3, 4], &["m0", "m0", "m1", "m1"]),
        ];
        for (member_count, shards, expected) in cases {
            let target = assign(&names(member_count), shards, &BTreeMap::new());
            let owners: Vec<&str> = target.values().map(String::as_str).collect();
            assert_eq!(owners, expected, "{member_count} members over {shards:?}");
        }
    }

    #[test]
    fn join_moves_only_the_new_members_share() {
        for member_count in 1..=4 {
            for shard_count in 1..=16u32 {
                let shards: Vec<u32> = (0..shard_count).collect();
                let before = assign(&names(member_count), &shards, &BTreeMap::new());
                let after = assign(&names(member_count + 1), &shards, &before);
                let moved = shards.iter().filter(|s| before[s] != after[s]).count();
                let newcomer = format!("m{member_count}");
                let gained = after.values().filter(|owner| **owner == newcomer).count();
                assert_eq!(
                    moved, gained,
                    "{member_count}+1 members, {shard_count} shards"
                );
                assert!(gained <= (shard_count as usize).div_ceil(member_count + 1));
            }
        }
    }

    #[test]
    fn leave_moves_only_the_leavers_shards() {
        for member_count in 2..=5 {
            for shard_count in 1..=16u32 {
                let shards: Vec<u32> = (0..shard_count).collect();
                let members = names(member_count);
                let before = assign(&members, &shards, &BTreeMap::new());
                let remaining: Vec<String> = members[1..].to_vec();
                let after = assign(&remaining, &shards, &before);
                for shard in &shards {
                    if before[shard] != "m0" {
                        assert_eq!(before[shard], after[shard], "shard {shard} moved");
                    }
                }
            }
        }
    }

    #[test]
    fn no_members_no_target() {
        assert!(assign(&[], &[1, 2], &BTreeMap::new()).is_empty());
    }
}
