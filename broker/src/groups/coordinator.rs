//! The consumer-group coordinator the server calls: it turns wire requests
//! into calls on the pure membership state and the durable offset store,
//! and errors into the responses' `ErrorCode`. Never panics on input.
//!
//! One `parking_lot::Mutex` guards both halves, and a commit is fenced and
//! written under it: a member cannot lose its shard between the ownership
//! check and the durable write, so a fenced-off member can never overwrite
//! the offset of the shard's next owner. The cost is that group requests
//! wait for a commit's fdatasync.

use std::path::Path;

use parking_lot::Mutex;
use surge_protocol::group::{
    Assignment, CommitOffsetsRequest, CommitOffsetsResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    LeaveGroupResponse,
};
use surge_protocol::ErrorCode;

use super::error::GroupError;
use super::state::{Grant, GroupKey, Groups};
use super::store::OffsetStore;

/// Thread-safe; share it via `Arc` between connection tasks.
#[derive(Debug)]
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    groups: Groups,
    store: OffsetStore,
}

impl GroupCoordinator {
    /// Opens the offset store in `dir`. Membership starts empty: members
    /// rejoin after a restart.
    pub fn open(dir: &Path) -> Result<GroupCoordinator, GroupError> {
        let store = OffsetStore::open(dir)?;
        Ok(GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: Groups::default(),
                store,
            }),
        })
    }

    /// Joins (or, with a known member id, rejoins) a group. `shards`: the
    /// stream's current readable shard ids.
    pub fn join(&self, req: &JoinGroupRequest, shards: &[u32], now_ms: u64) -> Assignment {
        let result = GroupKey::new(&req.group, &req.stream).and_then(|key| {
            let session_timeout_ms = u64::from(req.session_timeout_ms);
            let nonce = fastrand::u64(..);
            self.inner.lock().groups.join(
                &key,
                &req.member_id,
                session_timeout_ms,
                shards,
                nonce,
                now_ms,
            )
        });
        assignment(result, &req.member_id)
    }

    /// Keeps a member alive and records the generation it applied.
    pub fn heartbeat(&self, req: &HeartbeatRequest, shards: &[u32], now_ms: u64) -> Assignment {
        let result = GroupKey::new(&req.group, &req.stream).and_then(|key| {
            self.inner
                .lock()
                .groups
                .heartbeat(&key, &req.member_id, req.generation, shards, now_ms)
        });
        assignment(result, &req.member_id)
    }

    /// Removes a member; its shards are free for others at once.
    pub fn leave(&self, req: &LeaveGroupRequest, now_ms: u64) -> LeaveGroupResponse {
        let result = GroupKey::new(&req.group, &req.stream).and_then(|key| {
            let mut inner = self.inner.lock();
            inner.groups.expire_group(&key, now_ms);
            inner.groups.leave(&key, &req.member_id)
        });
        LeaveGroupResponse {
            error: code(result),
        }
    }

    /// Durably commits offsets; returns only after they are synced.
    pub fn commit(&self, req: &CommitOffsetsRequest, now_ms: u64) -> CommitOffsetsResponse {
        let result = GroupKey::new(&req.group, &req.stream).and_then(|key| {
            let mut inner = self.inner.lock();
            inner.groups.expire_group(&key, now_ms);
            let shard_ids = req.offsets.iter().map(|entry| entry.shard_id);
            inner
                .groups
                .check_commit(&key, &req.member_id, req.generation, shard_ids)?;
            inner.store.commit(&key.group, &key.stream, &req.offsets)
        });
        if let Err(error @ (GroupError::Io { .. } | GroupError::StorePoisoned)) = &result {
            tracing::warn!(%error, group = %req.group, stream = %req.stream, "offset commit failed");
        }
        CommitOffsetsResponse {
            error: code(result),
        }
    }

    /// The committed offsets of a group; empty for an unknown group.
    pub fn fetch_offsets(&self, req: &FetchOffsetsRequest) -> FetchOffsetsResponse {
        match GroupKey::new(&req.group, &req.stream) {
            Ok(key) => FetchOffsetsResponse {
                error: ErrorCode::None,
                offsets: self.inner.lock().store.fetch(&key.group, &key.stream),
            },
            Err(error) => FetchOffsetsResponse {
                error: error.code(),
                offsets: Vec::new(),
            },
        }
    }

    /// Expires members whose session lapsed.
    pub fn expire(&self, now_ms: u64) {
        let expired = self.inner.lock().groups.expire(now_ms);
        if expired > 0 {
            tracing::debug!(expired, "expired group members");
        }
    }

    /// Forgets a deleted stream: its groups now, its offsets durably.
    pub fn delete_stream(&self, stream: &str) -> Result<(), GroupError> {
        let mut inner = self.inner.lock();
        inner.groups.delete_stream(stream);
        inner.store.delete_stream(stream)
    }
}

fn assignment(result: Result<Grant, GroupError>, member_id: &str) -> Assignment {
    match result {
        Ok(grant) => Assignment {
            error: ErrorCode::None,
            member_id: grant.member_id,
            generation: grant.generation,
            shards: grant.shards,
        },
        Err(error) => Assignment {
            error: error.code(),
            member_id: member_id.to_owned(),
            generation: 0,
            shards: Vec::new(),
        },
    }
}

fn code(result: Result<(), GroupError>) -> ErrorCode {
    result.err().map_or(ErrorCode::None, |error| error.code())
}

#[cfg(test)]
mod tests {
    use surge_protocol::group::ShardOffset;

    use super::*;

    const SHARDS: [u32; 2] = [0, 1];

    fn join_req(member_id: &str) -> JoinGroupRequest {
        JoinGroupRequest {
            group: "g".into(),
            stream: "s".into(),
            member_id: member_id.into(),
            session_timeout_ms: 10_000,
        }
    }

    fn beat_req(assignment: &Assignment) -> HeartbeatRequest {
        HeartbeatRequest {
            group: "g".into(),
            stream: "s".into(),
            member_id: assignment.member_id.clone(),
            generation: assignment.generation,
        }
    }

    fn commit_req(
        member_id: &str,
        generation: u64,
        shard_id: u32,
        offset: u64,
    ) -> CommitOffsetsRequest {
        CommitOffsetsRequest {
            group: "g".into(),
            stream: "s".into(),
            member_id: member_id.into(),
            generation,
            offsets: vec![ShardOffset { shard_id, offset }],
        }
    }

    fn fetch_req() -> FetchOffsetsRequest {
        FetchOffsetsRequest {
            group: "g".into(),
            stream: "s".into(),
        }
    }

    const _: () = {
        const fn shared<T: Send + Sync>() {}
        shared::<GroupCoordinator>();
    };

    #[test]
    fn commit_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = GroupCoordinator::open(dir.path()).expect("open");
        let a = coordinator.join(&join_req(""), &SHARDS, 0);
        assert_eq!((a.error, a.shards.clone()), (ErrorCode::None, vec![0, 1]));
        let response = coordinator.commit(&commit_req(&a.member_id, a.generation, 1, 42), 1);
        assert_eq!(response.error, ErrorCode::None);
        drop(coordinator);
        let coordinator = GroupCoordinator::open(dir.path()).expect("reopen");
        let fetched = coordinator.fetch_offsets(&fetch_req());
        assert_eq!(
            fetched.offsets,
            vec![ShardOffset {
                shard_id: 1,
                offset: 42
            }]
        );
        let stale = coordinator.heartbeat(&beat_req(&a), &SHARDS, 2);
        assert_eq!(
            stale.error,
            ErrorCode::UnknownMember,
            "membership is not durable"
        );
    }

    #[test]
    fn commit_fencing_codes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = GroupCoordinator::open(dir.path()).expect("open");
        let a = coordinator.join(&join_req(""), &SHARDS, 0);
        let b = coordinator.join(&join_req(""), &SHARDS, 0);
        let commit = |member: &str, shard| {
            coordinator
                .commit(&commit_req(member, 2, shard, 1), 0)
                .error
        };
        assert_eq!(
            commit(&b.member_id, 1),
            ErrorCode::NotAssigned,
            "A has not acked"
        );
        assert_eq!(
            commit(&a.member_id, 1),
            ErrorCode::None,
            "A may commit its final offset"
        );
        assert_eq!(commit("g-99-00", 0), ErrorCode::UnknownMember);
        assert_eq!(commit("", 0), ErrorCode::RebalanceInProgress);
        let far = coordinator.commit(&commit_req(&a.member_id, 7, 0, 1), 0);
        assert_eq!(far.error, ErrorCode::IllegalGeneration);
        // A applies generation 2; shard 1 moves to B.
        let a = coordinator.heartbeat(&beat_req(&a), &SHARDS, 1);
        coordinator.heartbeat(&beat_req(&a), &SHARDS, 1);
        let b = coordinator.heartbeat(&beat_req(&b), &SHARDS, 1);
        assert_eq!(b.shards, vec![1]);
        assert_eq!(commit(&b.member_id, 1), ErrorCode::None);
        assert_eq!(commit(&a.member_id, 1), ErrorCode::NotAssigned);
    }

    #[test]
    fn expired_members_are_fenced_and_admin_commits_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = GroupCoordinator::open(dir.path()).expect("open");
        let a = coordinator.join(&join_req(""), &SHARDS, 0);
        let late = coordinator.commit(&commit_req(&a.member_id, 1, 0, 5), 10_001);
        assert_eq!(late.error, ErrorCode::UnknownMember, "session lapsed");
        let admin = coordinator.commit(&commit_req("", 0, 0, 5), 10_001);
        assert_eq!(admin.error, ErrorCode::None);
        let leave = LeaveGroupRequest {
            group: "g".into(),
            stream: "s".into(),
            member_id: a.member_id.clone(),
        };
        assert_eq!(
            coordinator.leave(&leave, 10_002).error,
            ErrorCode::UnknownMember
        );
    }

    #[test]
    fn leave_and_expire_free_shards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = GroupCoordinator::open(dir.path()).expect("open");
        let a = coordinator.join(&join_req(""), &SHARDS, 0);
        let b = coordinator.join(&join_req(""), &SHARDS, 0);
        let c = coordinator.join(&join_req(""), &SHARDS, 0);
        let leave = LeaveGroupRequest {
            group: "g".into(),
            stream: "s".into(),
            member_id: a.member_id.clone(),
        };
        assert_eq!(coordinator.leave(&leave, 1).error, ErrorCode::None);
        coordinator.heartbeat(&beat_req(&b), &SHARDS, 9_000);
        coordinator.expire(10_001);
        let b = coordinator.heartbeat(&beat_req(&b), &SHARDS, 10_002);
        assert_eq!(b.shards, vec![0, 1], "A left and C expired");
        assert_eq!(
            coordinator.heartbeat(&beat_req(&c), &SHARDS, 10_002).error,
            ErrorCode::UnknownMember
        );
    }

    #[test]
    fn invalid_input_gets_error_codes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = GroupCoordinator::open(dir.path()).expect("open");
        let mut req = join_req("");
        req.stream = String::new();
        assert_eq!(
            coordinator.join(&req, &SHARDS, 0).error,
            ErrorCode::InvalidStreamName
        );
        req.stream = "s".into();
        req.group = "no spaces".into();
        assert_eq!(
            coordinator.join(&req, &SHARDS, 0).error,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            coordinator.join(&join_req("unknown"), &SHARDS, 0).error,
            ErrorCode::UnknownMember
        );
        let fetched = coordinator.fetch_offsets(&FetchOffsetsRequest {
            group: "other".into(),
            stream: "s".into(),
        });
        assert_eq!((fetched.error, fetched.offsets.len()), (ErrorCode::None, 0));
    }

    #[test]
    fn delete_stream_forgets_groups_and_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = GroupCoordinator::open(dir.path()).expect("open");
        let a = coordinator.join(&join_req(""), &SHARDS, 0);
        coordinator.commit(&commit_req(&a.member_id, 1, 0, 3), 0);
        coordinator.delete_stream("s").expect("delete");
        assert_eq!(
            coordinator.heartbeat(&beat_req(&a), &SHARDS, 1).error,
            ErrorCode::UnknownMember
        );
        drop(coordinator);
        let coordinator = GroupCoordinator::open(dir.path()).expect("reopen");
        assert!(coordinator.fetch_offsets(&fetch_req()).offsets.is_empty());
    }
}
