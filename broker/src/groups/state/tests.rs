//! Tests of the group state machine: joins, revocations and expiry, and
//! properties over random sequences of events.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const TIMEOUT_MS: u64 = 10_000;

fn key() -> GroupKey {
    GroupKey::new("g", "s").expect("valid names")
}

fn join(groups: &mut Groups, shards: &[u32], now_ms: u64) -> Grant {
    let nonce = groups.members_created;
    groups
        .join(&key(), "", TIMEOUT_MS, shards, nonce, now_ms)
        .expect("join")
}

fn beat(groups: &mut Groups, grant: &Grant, shards: &[u32], now_ms: u64) -> Grant {
    groups
        .heartbeat(&key(), &grant.member_id, grant.generation, shards, now_ms)
        .expect("heartbeat")
}

/// The invariants the module doc promises, checked after every step.
fn check_invariants(groups: &Groups) {
    for group in groups.groups.values() {
        assert!(!group.members.is_empty(), "empty groups are dropped");
        for (shard, ownership) in &group.owners {
            assert!(
                group.members.contains_key(&ownership.member),
                "owner is live"
            );
            let is_target = group.target.get(shard) == Some(&ownership.member);
            match ownership.revoked_in {
                None => assert!(is_target, "unrevoked owner is the target"),
                Some(revoked) => {
                    assert!(!is_target, "revoked owner is not the target");
                    assert!(revoked <= group.generation, "revoked in a past generation");
                    let acked = group.members[&ownership.member].acked_generation;
                    assert!(acked < revoked, "acknowledged revocations are released");
                }
            }
        }
        let settled = group
            .members
            .values()
            .all(|member| member.acked_generation == group.generation);
        if settled {
            for shard in &group.shards {
                let owner = group.owners.get(shard).map(|own| &own.member);
                assert_eq!(
                    owner,
                    group.target.get(shard),
                    "settled: shard {shard} owned"
                );
            }
        }
    }
}

#[test]
fn new_member_ids_are_unique_valid_names() {
    let mut groups = Groups::default();
    let long = "g".repeat(255);
    let key = GroupKey::new(&long, "s").expect("valid names");
    let first = groups.join(&key, "", 0, &[], u64::MAX, 0).expect("join");
    let second = groups.join(&key, "", 0, &[], u64::MAX, 0).expect("join");
    assert_ne!(first.member_id, second.member_id);
    assert!(surge_protocol::valid_name(&first.member_id));
}

#[test]
fn exclusivity_step_by_step() {
    let mut groups = Groups::default();
    let shards = [0, 1, 2, 3];
    let a = join(&mut groups, &shards, 0);
    assert_eq!((a.generation, a.shards.clone()), (1, vec![0, 1, 2, 3]));
    let a = beat(&mut groups, &a, &shards, 1);
    let b = join(&mut groups, &shards, 2);
    assert_eq!(b.generation, 2);
    assert!(b.shards.is_empty(), "A still holds everything");
    // B heartbeating changes nothing while A has not acknowledged.
    let b = beat(&mut groups, &b, &shards, 3);
    assert!(b.shards.is_empty());
    // A heartbeats with the old generation: it learns its smaller share.
    let a = beat(&mut groups, &a, &shards, 4);
    assert_eq!((a.generation, a.shards.clone()), (2, vec![0, 1]));
    check_invariants(&groups);
    let b = beat(&mut groups, &b, &shards, 5);
    assert!(b.shards.is_empty(), "A has not applied generation 2 yet");
    // A applies generation 2: its revoked shards go to B.
    let a = beat(&mut groups, &a, &shards, 6);
    assert_eq!(a.shards, vec![0, 1]);
    let b = beat(&mut groups, &b, &shards, 7);
    assert_eq!(b.shards, vec![2, 3]);
    check_invariants(&groups);
}

#[test]
fn expiry_frees_a_members_shards() {
    let mut groups = Groups::default();
    let a = join(&mut groups, &[0, 1], 0);
    let b = join(&mut groups, &[0, 1], 0);
    assert!(b.shards.is_empty());
    let b = beat(&mut groups, &b, &[0, 1], TIMEOUT_MS);
    assert_eq!(groups.expire(TIMEOUT_MS + 1), 1, "A lapsed, B did not");
    let b = beat(&mut groups, &b, &[0, 1], TIMEOUT_MS + 2);
    assert_eq!(b.shards, vec![0, 1]);
    let late = groups.heartbeat(&key(), &a.member_id, a.generation, &[0, 1], 0);
    assert!(matches!(late, Err(GroupError::UnknownMember { .. })));
    check_invariants(&groups);
}

#[test]
fn lapsed_member_is_expired_lazily_on_its_own_heartbeat() {
    let mut groups = Groups::default();
    let a = join(&mut groups, &[0], 0);
    let late = groups.heartbeat(&key(), &a.member_id, a.generation, &[0], TIMEOUT_MS + 1);
    assert!(matches!(late, Err(GroupError::UnknownMember { .. })));
    assert!(groups.groups.is_empty(), "the empty group is dropped");
}

#[test]
fn rejoin_with_a_shorter_timeout_expires_on_time() {
    let mut groups = Groups::default();
    let long = groups.join(&key(), "", 300_000, &[0], 1, 0).expect("join");
    groups.expire(1);
    let id = long.member_id;
    groups.join(&key(), &id, 1_000, &[0], 0, 2).expect("rejoin");
    assert_eq!(groups.expire(1_003), 1, "the new, shorter session lapsed");
}

#[test]
fn leave_frees_immediately() {
    let mut groups = Groups::default();
    let a = join(&mut groups, &[0, 1, 2], 0);
    let b = join(&mut groups, &[0, 1, 2], 0);
    assert!(b.shards.is_empty());
    groups.leave(&key(), &a.member_id).expect("leave");
    let b = beat(&mut groups, &b, &[0, 1, 2], 1);
    assert_eq!(b.shards, vec![0, 1, 2]);
    assert!(groups.leave(&key(), &a.member_id).is_err(), "already gone");
}

#[test]
fn shard_set_change_bumps_generation_and_revokes() {
    let mut groups = Groups::default();
    let a = join(&mut groups, &[0, 1], 0);
    let a2 = beat(&mut groups, &a, &[1, 2], 1);
    assert_eq!((a2.generation, a2.shards.clone()), (2, vec![1, 2]));
    let a3 = beat(&mut groups, &a2, &[1, 2], 2);
    assert_eq!((a3.generation, a3.shards.clone()), (2, vec![1, 2]));
    assert!(
        !groups.groups[&key()].owners.contains_key(&0),
        "released on ack"
    );
}

#[test]
fn heartbeat_from_the_future_is_rejected() {
    let mut groups = Groups::default();
    let a = join(&mut groups, &[0], 0);
    let result = groups.heartbeat(&key(), &a.member_id, 9, &[0], 1);
    assert!(matches!(
        result,
        Err(GroupError::IllegalGeneration { requested: 9, .. })
    ));
}

#[test]
fn commit_fencing() {
    let mut groups = Groups::default();
    let a = join(&mut groups, &[0, 1], 0);
    let a = beat(&mut groups, &a, &[0, 1], 0);
    let b = join(&mut groups, &[0, 1], 0);
    let b = beat(&mut groups, &b, &[0, 1], 0);
    let check =
        |member: &str, shard: u32| groups.check_commit(&key(), member, 2, std::iter::once(shard));
    // A still owns shard 1 until it acknowledges generation 2.
    assert!(check(&a.member_id, 1).is_ok());
    assert!(matches!(
        check(&b.member_id, 1),
        Err(GroupError::NotAssigned { shard_id: 1 })
    ));
    assert!(matches!(
        check("nobody", 0),
        Err(GroupError::UnknownMember { .. })
    ));
    assert!(matches!(
        check("", 0),
        Err(GroupError::GroupHasMembers { members: 2 })
    ));
    let _ = b;
    let other = GroupKey::new("other", "s").expect("valid names");
    assert!(groups
        .check_commit(&other, "", 0, std::iter::once(0))
        .is_ok());
}

#[test]
fn limits_are_enforced() {
    let mut groups = Groups::default();
    for _ in 0..MEMBERS_PER_GROUP_MAX {
        join(&mut groups, &[0], 0);
    }
    let over = groups.join(&key(), "", TIMEOUT_MS, &[0], 0, 0);
    assert!(matches!(over, Err(GroupError::TooManyMembers { .. })));
    let too_many = vec![0; SHARDS_PER_STREAM_MAX + 1];
    let over = groups.join(&key(), "", TIMEOUT_MS, &too_many, 0, 0);
    assert!(matches!(over, Err(GroupError::TooManyShards { .. })));
    assert!(GroupKey::new("", "s").is_err());
    assert!(GroupKey::new("g", "a/b").is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Join,
    Rejoin(usize),
    /// Heartbeat; `true`: the member first applies its latest grant.
    Heartbeat(usize, bool),
    Leave(usize),
    Advance(u64),
    Shards(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Join),
        1 => (0..8usize).prop_map(Op::Rejoin),
        6 => (0..8usize, any::<bool>()).prop_map(|(m, apply)| Op::Heartbeat(m, apply)),
        1 => (0..8usize).prop_map(Op::Leave),
        1 => (0..12_000u64).prop_map(Op::Advance),
        1 => (1..12u32).prop_map(Op::Shards),
    ]
}

/// A simulated client: reads the shards of the grant it applied.
struct Client {
    applied: Grant,
    latest: Grant,
}

fn run_ops(ops: &[Op]) {
    let mut groups = Groups::default();
    let mut clients: Vec<Client> = Vec::new();
    let mut now_ms = 0u64;
    let mut shards: Vec<u32> = (0..4).collect();
    for op in ops {
        match op {
            Op::Join => {
                let grant = join(&mut groups, &shards, now_ms);
                let applied = grant.clone();
                clients.push(Client {
                    applied,
                    latest: grant,
                });
            }
            Op::Rejoin(index) | Op::Heartbeat(index, _) | Op::Leave(index) => {
                let Some(slot) = index.checked_rem(clients.len()) else {
                    continue;
                };
                let client = &mut clients[slot];
                let id = client.latest.member_id.clone();
                let result = match op {
                    Op::Rejoin(_) => groups.join(&key(), &id, TIMEOUT_MS, &shards, 0, now_ms),
                    Op::Heartbeat(_, apply) => {
                        if *apply {
                            client.applied = client.latest.clone();
                        }
                        let generation = client.applied.generation;
                        groups.heartbeat(&key(), &id, generation, &shards, now_ms)
                    }
                    _ => groups.leave(&key(), &id).map(|()| client.latest.clone()),
                };
                match result {
                    Ok(grant) if !matches!(op, Op::Leave(_)) => client.latest = grant,
                    _ => {
                        clients.remove(slot);
                    }
                }
            }
            Op::Advance(ms) => {
                now_ms += ms;
                groups.expire(now_ms);
            }
            Op::Shards(count) => shards = (0..*count).collect(),
        }
        let live = |client: &Client| {
            groups
                .groups
                .get(&key())
                .is_some_and(|group| group.members.contains_key(&client.latest.member_id))
        };
        clients.retain(live);
        check_invariants(&groups);
        check_clients_exclusive(&groups, &clients);
    }
    settle(&mut groups, &mut clients, &shards, now_ms);
}

/// What each live client reads is owned by it, so no two read a shard.
fn check_clients_exclusive(groups: &Groups, clients: &[Client]) {
    let Some(group) = groups.groups.get(&key()) else {
        return;
    };
    let mut seen = BTreeSet::new();
    for client in clients {
        for shard in &client.applied.shards {
            let owner = group.owners.get(shard).map(|own| own.member.as_str());
            assert_eq!(
                owner,
                Some(client.applied.member_id.as_str()),
                "shard {shard}"
            );
            assert!(seen.insert(*shard), "shard {shard} read twice");
        }
    }
}

/// Everyone applies and acknowledges until nothing moves: then every
/// shard is read by exactly one member.
fn settle(groups: &mut Groups, clients: &mut [Client], shards: &[u32], now_ms: u64) {
    for _ in 0..3 {
        for client in clients.iter_mut() {
            client.applied = client.latest.clone();
            client.latest = beat(groups, &client.applied, shards, now_ms);
        }
    }
    check_invariants(groups);
    if clients.is_empty() {
        return;
    }
    let mut read: Vec<u32> = clients
        .iter()
        .flat_map(|c| c.latest.shards.clone())
        .collect();
    read.sort_unstable();
    assert_eq!(read, shards, "settled group reads every shard once");
}

proptest! {
    #[test]
    fn random_membership_keeps_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        run_ops(&ops);
    }
}
