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
mod tests;
