//! Group membership and shard ownership: the pure core of the coordinator.
//! No I/O and no clock; the caller passes `now_ms` and a random `nonce`
//! for new member ids, so every behaviour replays exactly in a test.
//!
//! Two views of each shard are kept apart:
//!
//! - the *target*: who should read it, recomputed by [`assign`] whenever the
//!   membership or the shard set changes (each such change bumps the
//!   generation);
//! - the *owner*: who may read it now. A shard moves to its new target only
//!   after the previous owner has acknowledged a generation in which the
//!   shard was revoked from it (it heartbeats with `generation >=
//!   revoked_in`), or has left or expired.
//!
//! A member's assignment is the set of shards it owns and is the target of.
//! Owners awaiting a revocation ack keep the shard (and may still commit
//! offsets for it) but no longer see it in their assignment.
//!
//! [`assign`]: super::assign::assign

use std::collections::BTreeMap;

use super::assign::assign;
use super::error::GroupError;

/// Session timeouts a member may ask for are clamped to this range.
pub(crate) const SESSION_TIMEOUT_MS_MIN: u64 = 1_000;
pub(crate) const SESSION_TIMEOUT_MS_MAX: u64 = 300_000;
/// Groups with live members, over all streams.
pub(crate) const GROUPS_MAX: usize = 10_000;
pub(crate) const MEMBERS_PER_GROUP_MAX: usize = 1_000;
/// Shards of one stream a group can spread over its members.
pub(crate) const SHARDS_PER_STREAM_MAX: usize = 65_536;
/// Generated member ids are `<group prefix>-<counter>-<16 hex digits>`; the
/// prefix is cut so the id stays a valid name.
const MEMBER_ID_PREFIX_BYTES_MAX: usize = 200;
const NAME_BYTES_MAX: usize = 255;

const _: () = assert!(SESSION_TIMEOUT_MS_MIN <= SESSION_TIMEOUT_MS_MAX);
const _: () = assert!(MEMBER_ID_PREFIX_BYTES_MAX + 1 + 20 + 1 + 16 <= NAME_BYTES_MAX);
const _: () = assert!(MEMBERS_PER_GROUP_MAX <= SHARDS_PER_STREAM_MAX);

/// A group is scoped to one stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupKey {
    pub(crate) group: String,
    pub(crate) stream: String,
}

impl GroupKey {
    /// Validates both names.
    pub(crate) fn new(group: &str, stream: &str) -> Result<GroupKey, GroupError> {
        if !surge_protocol::valid_name(group) {
            return Err(GroupError::InvalidGroupName { len: group.len() });
        }
        if !surge_protocol::valid_name(stream) {
            return Err(GroupError::InvalidStreamName { len: stream.len() });
        }
        Ok(GroupKey {
            group: group.to_owned(),
            stream: stream.to_owned(),
        })
    }
}

/// What a member learns from join and heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) member_id: String,
    pub(crate) generation: u64,
    /// Shards the member may read now, ascending.
    pub(crate) shards: Vec<u32>,
}

#[derive(Debug)]
struct Member {
    session_timeout_ms: u64,
    last_seen_ms: u64,
    /// The newest generation whose assignment the member said it applied.
    acked_generation: u64,
}

impl Member {
    fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_seen_ms) > self.session_timeout_ms
    }

    fn deadline_ms(&self) -> u64 {
        self.last_seen_ms.saturating_add(self.session_timeout_ms)
    }
}

#[derive(Debug)]
struct Ownership {
    member: String,
    /// The generation that revoked the shard from `member`; `None` while
    /// `member` is the shard's target.
    revoked_in: Option<u64>,
}

#[derive(Debug, Default)]
struct Group {
    generation: u64,
    members: BTreeMap<String, Member>,
    /// The stream's readable shards, sorted and unique.
    shards: Vec<u32>,
    target: BTreeMap<u32, String>,
    owners: BTreeMap<u32, Ownership>,
    /// No member can have expired before this time; a lower bound, so a
    /// stale value only costs a scan.
    expiry_check_ms: u64,
}

impl Group {
    /// Recomputes the target under a new generation and marks every owned
    /// shard whose owner is no longer its target as revoked in it.
    fn rebalance(&mut self) {
        self.generation += 1;
        let members: Vec<String> = self.members.keys().cloned().collect();
        self.target = assign(&members, &self.shards, &self.target);
        for (shard, ownership) in &mut self.owners {
            if self.target.get(shard) == Some(&ownership.member) {
                ownership.revoked_in = None;
            } else if ownership.revoked_in.is_none() {
                ownership.revoked_in = Some(self.generation);
            }
        }
        self.reconcile();
    }

    /// Hands every unowned shard to its target.
    fn reconcile(&mut self) {
        for (shard, member) in &self.target {
            self.owners.entry(*shard).or_insert_with(|| Ownership {
                member: member.clone(),
                revoked_in: None,
            });
        }
    }

    /// Releases the shards `member_id` gave up by acknowledging.
    fn release_acked(&mut self, member_id: &str) {
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        let acked = member.acked_generation;
        self.owners.retain(|_, ownership| {
            ownership.member != member_id
                || ownership.revoked_in.is_none_or(|revoked| revoked > acked)
        });
        self.reconcile();
    }

    fn remove_member(&mut self, member_id: &str) {
        self.members.remove(member_id);
        self.owners
            .retain(|_, ownership| ownership.member != member_id);
        self.rebalance();
    }

    /// Adopts a new shard set; returns whether it changed.
    fn set_shards(&mut self, shards: Vec<u32>) -> bool {
        if self.shards == shards {
            return false;
        }
        self.shards = shards;
        true
    }

    /// Removes lapsed members; returns how many.
    fn expire(&mut self, now_ms: u64) -> usize {
        if now_ms < self.expiry_check_ms {
            return 0;
        }
        let lapsed: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| member.expired(now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in &lapsed {
            self.remove_member(member_id);
        }
        self.expiry_check_ms = self
            .members
            .values()
            .map(Member::deadline_ms)
            .min()
            .unwrap_or(u64::MAX);
        lapsed.len()
    }

    fn grant(&self, member_id: &str) -> Grant {
        let shards = self
            .owners
            .iter()
            .filter(|(_, own)| own.member == member_id && own.revoked_in.is_none())
            .map(|(shard, _)| *shard)
            .collect();
        Grant {
            member_id: member_id.to_owned(),
            generation: self.generation,
            shards,
        }
    }
}

/// All groups with live members.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    groups: BTreeMap<GroupKey, Group>,
    /// Makes generated member ids unique within this process.
    members_created: u64,
}

impl Groups {
    /// Joins `key`. An empty `member_id` creates a member; a known one
    /// refreshes its session and returns its assignment.
    pub(crate) fn join(
        &mut self,
        key: &GroupKey,
        member_id: &str,
        session_timeout_ms: u64,
        shards: &[u32],
        nonce: u64,
        now_ms: u64,
    ) -> Result<Grant, GroupError> {
        let shards = normalize_shards(shards)?;
        self.expire_group(key, now_ms);
        let session_timeout_ms =
            session_timeout_ms.clamp(SESSION_TIMEOUT_MS_MIN, SESSION_TIMEOUT_MS_MAX);
        if !member_id.is_empty() {
            let group = self.member_group(key, member_id)?;
            let member = group.members.get_mut(member_id).expect("checked above");
            member.session_timeout_ms = session_timeout_ms;
            member.last_seen_ms = now_ms;
            // A shorter timeout can bring the member's deadline forward.
            group.expiry_check_ms = group.expiry_check_ms.min(member.deadline_ms());
            if group.set_shards(shards) {
                group.rebalance();
            }
            return Ok(group.grant(member_id));
        }
        if !self.groups.contains_key(key) && self.groups.len() >= GROUPS_MAX {
            return Err(GroupError::TooManyGroups {
                count: self.groups.len(),
                max: GROUPS_MAX,
            });
        }
        let member_id = self.new_member_id(&key.group, nonce);
        let group = self.groups.entry(key.clone()).or_default();
        if group.members.len() >= MEMBERS_PER_GROUP_MAX {
            return Err(GroupError::TooManyMembers {
                count: group.members.len(),
                max: MEMBERS_PER_GROUP_MAX,
            });
        }
        let member = Member {
            session_timeout_ms,
            last_seen_ms: now_ms,
            acked_generation: 0,
        };
        group.expiry_check_ms = group.expiry_check_ms.min(member.deadline_ms());
        let previous = group.members.insert(member_id.clone(), member);
        assert!(previous.is_none(), "generated member ids are unique");
        group.set_shards(shards);
        group.rebalance();
        Ok(group.grant(&member_id))
    }

    /// Records that `member_id` is alive and applied `generation`.
    pub(crate) fn heartbeat(
        &mut self,
        key: &GroupKey,
        member_id: &str,
        generation: u64,
        shards: &[u32],
        now_ms: u64,
    ) -> Result<Grant, GroupError> {
        let shards = normalize_shards(shards)?;
        self.expire_group(key, now_ms);
        let group = self.member_group(key, member_id)?;
        if generation > group.generation {
            return Err(GroupError::IllegalGeneration {
                requested: generation,
                current: group.generation,
            });
        }
        let member = group.members.get_mut(member_id).expect("checked above");
        member.last_seen_ms = now_ms;
        member.acked_generation = member.acked_generation.max(generation);
        if group.set_shards(shards) {
            group.rebalance();
        }
        group.release_acked(member_id);
        Ok(group.grant(member_id))
    }

    /// Removes `member_id` now; its shards go to their targets at once.
    pub(crate) fn leave(&mut self, key: &GroupKey, member_id: &str) -> Result<(), GroupError> {
        self.member_group(key, member_id)?.remove_member(member_id);
        self.drop_if_empty(key);
        Ok(())
    }

    /// Removes every member whose session lapsed; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        for group in self.groups.values_mut() {
            expired += group.expire(now_ms);
        }
        self.groups.retain(|_, group| !group.members.is_empty());
        expired
    }

    /// Checks that a commit of `shard_ids` by `member_id` is allowed. An
    /// empty `member_id` is an administrative commit, allowed only while
    /// the group has no live members.
    pub(crate) fn check_commit(
        &self,
        key: &GroupKey,
        member_id: &str,
        generation: u64,
        shard_ids: impl Iterator<Item = u32>,
    ) -> Result<(), GroupError> {
        let group = self.groups.get(key);
        if member_id.is_empty() {
            let members = group.map_or(0, |group| group.members.len());
            if members > 0 {
                return Err(GroupError::GroupHasMembers { members });
            }
            return Ok(());
        }
        let unknown = || GroupError::UnknownMember {
            len: member_id.len(),
        };
        let group = group.ok_or_else(unknown)?;
        if !group.members.contains_key(member_id) {
            return Err(unknown());
        }
        if generation > group.generation {
            return Err(GroupError::IllegalGeneration {
                requested: generation,
                current: group.generation,
            });
        }
        for shard_id in shard_ids {
            let owned = group
                .owners
                .get(&shard_id)
                .is_some_and(|ownership| ownership.member == member_id);
            if !owned {
                return Err(GroupError::NotAssigned { shard_id });
            }
        }
        Ok(())
    }

    /// Forgets every group of `stream`.
    pub(crate) fn delete_stream(&mut self, stream: &str) {
        self.groups.retain(|key, _| key.stream != stream);
    }

    pub(crate) fn expire_group(&mut self, key: &GroupKey, now_ms: u64) {
        if let Some(group) = self.groups.get_mut(key) {
            group.expire(now_ms);
            self.drop_if_empty(key);
        }
    }

    fn drop_if_empty(&mut self, key: &GroupKey) {
        if self
            .groups
            .get(key)
            .is_some_and(|group| group.members.is_empty())
        {
            self.groups.remove(key);
        }
    }

    fn member_group(&mut self, key: &GroupKey, member_id: &str) -> Result<&mut Group, GroupError> {
        match self.groups.get_mut(key) {
            Some(group) if group.members.contains_key(member_id) => Ok(group),
            _ => Err(GroupError::UnknownMember {
                len: member_id.len(),
            }),
        }
    }

    fn new_member_id(&mut self, group: &str, nonce: u64) -> String {
        self.members_created += 1;
        // Group names are ASCII, so any byte index is a char boundary.
        let prefix = &group[..group.len().min(MEMBER_ID_PREFIX_BYTES_MAX)];
        format!("{prefix}-{}-{nonce:016x}", self.members_created)
    }
}

/// Sorts and dedups a caller's shard list, bounded first.
fn normalize_shards(shards: &[u32]) -> Result<Vec<u32>, GroupError> {
    if shards.len() > SHARDS_PER_STREAM_MAX {
        return Err(GroupError::TooManyShards {
            count: shards.len(),
            max: SHARDS_PER_STREAM_MAX,
        });
    }
    let mut shards = shards.to_vec();
    shards.sort_unstable();
    shards.dedup();
    Ok(shards)
}

#[cfg(test)]
mod tests {
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
        let check = |member: &str, shard: u32| {
            groups.check_commit(&key(), member, 2, std::iter::once(shard))
        };
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
}
