//! Consumer-group membership: joining, the heartbeat task, and handing
//! assignment changes to the consumer. The heartbeat carries the generation
//! the consumer has *applied*; the broker moves a shard to another member
//! only after that acknowledgement, so no shard is read twice at once.
//!
//! The heartbeat task is the only writer of the published assignment (a
//! `watch`, which holds one value: bounded by construction); the consumer is
//! the only writer of the applied generation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use surge_protocol::group::{
    Assignment, CommitOffsetsRequest, FetchOffsetsRequest, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ShardOffset,
};
use surge_protocol::ErrorCode;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::config::wire_ms;
use crate::error::ClientError;

/// Who this member is and which generation it works under.
#[derive(Debug, Clone, Default)]
struct MemberState {
    member_id: String,
    applied_generation: u64,
}

#[derive(Debug, Clone)]
struct GroupKey {
    client: Client,
    group: String,
    stream: String,
    session_timeout: Duration,
}

impl GroupKey {
    async fn join(&self, member_id: &str) -> Result<Assignment, ClientError> {
        let req = JoinGroupRequest {
            group: self.group.clone(),
            stream: self.stream.clone(),
            member_id: member_id.to_owned(),
            session_timeout_ms: wire_ms(self.session_timeout),
        };
        let assignment = self.client.request(&req).await?;
        // The answer carries a code only: say what is wrong with a name.
        let context = if surge_protocol::valid_name(&self.group) {
            format!("join group {}", self.group)
        } else {
            format!(
                "join group {:?}: group names are {}",
                self.group,
                surge_protocol::NAME_RULE
            )
        };
        ClientError::check(assignment.error, context)?;
        Ok(assignment)
    }
}

/// Where the heartbeat task's assignments arrive. What was handed to the
/// consumer is remembered by value: the watch's "seen" flag is also consumed
/// by `wait`, and relying on it lost an assignment that arrived while the
/// consumer idled (it kept reading nothing, forever).
#[derive(Debug)]
struct Inbox {
    receiver: watch::Receiver<Assignment>,
    handed_out: Assignment,
}

impl Inbox {
    /// The receiver's current value counts as handed out.
    fn new(mut receiver: watch::Receiver<Assignment>) -> Inbox {
        let handed_out = receiver.borrow_and_update().clone();
        Inbox {
            receiver,
            handed_out,
        }
    }

    fn changed(&mut self) -> Option<Assignment> {
        let current = self.receiver.borrow_and_update().clone();
        if current == self.handed_out {
            return None;
        }
        self.handed_out = current.clone();
        Some(current)
    }

    /// Waits up to `limit` for a new assignment; `changed` then returns it.
    async fn wait(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.receiver.changed()).await;
    }
}

/// Membership of one group on one stream, with its heartbeat task.
#[derive(Debug)]
pub(crate) struct Membership {
    key: GroupKey,
    state: Arc<Mutex<MemberState>>,
    inbox: Inbox,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Membership {
    /// Joins and starts heartbeating; the first assignment is returned and
    /// must be applied (then `applied`) by the caller.
    pub(crate) async fn join(
        client: Client,
        group: &str,
        stream: &str,
        session_timeout: Duration,
        heartbeat_interval: Duration,
    ) -> Result<(Membership, Assignment), ClientError> {
        let key = GroupKey {
            client,
            group: group.to_owned(),
            stream: stream.to_owned(),
            session_timeout,
        };
        let assignment = key.join("").await?;
        let state = Arc::new(Mutex::new(MemberState {
            member_id: assignment.member_id.clone(),
            applied_generation: 0,
        }));
        let (publish, assignments) = watch::channel(assignment.clone());
        let inbox = Inbox::new(assignments);
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let heartbeat = Heartbeat {
            key: key.clone(),
            state: Arc::clone(&state),
            publish,
            wake: Arc::clone(&wake),
            interval: heartbeat_interval,
        };
        tokio::spawn(heartbeat.run(shutdown.clone()));
        let membership = Membership {
            key,
            state,
            inbox,
            wake,
            shutdown,
        };
        Ok((membership, assignment))
    }

    /// A new assignment published by the heartbeat task, if any.
    pub(crate) fn changed(&mut self) -> Option<Assignment> {
        self.inbox.changed()
    }

    /// Waits up to `limit` for an assignment change.
    pub(crate) async fn wait_changed(&mut self, limit: Duration) {
        self.inbox.wait(limit).await;
    }

    /// Records that `generation`'s assignment is in effect and heartbeats
    /// at once to tell the broker.
    pub(crate) fn applied(&self, generation: u64) {
        self.state.lock().applied_generation = generation;
        self.wake.notify_one();
    }

    pub(crate) async fn commit(&self, positions: &BTreeMap<u32, u64>) -> Result<(), ClientError> {
        let state = self.state.lock().clone();
        let req = CommitOffsetsRequest {
            group: self.key.group.clone(),
            stream: self.key.stream.clone(),
            member_id: state.member_id,
            generation: state.applied_generation,
            offsets: positions
                .iter()
                .map(|(&shard_id, &offset)| ShardOffset { shard_id, offset })
                .collect(),
        };
        let resp = self.key.client.request(&req).await?;
        ClientError::check(resp.error, format!("commit to group {}", self.key.group))
    }

    /// The group's committed offsets (next offset to read) by shard.
    pub(crate) async fn committed(&self) -> Result<BTreeMap<u32, u64>, ClientError> {
        let req = FetchOffsetsRequest {
            group: self.key.group.clone(),
            stream: self.key.stream.clone(),
        };
        let resp = self.key.client.request(&req).await?;
        ClientError::check(resp.error, format!("fetch offsets of {}", self.key.group))?;
        Ok(resp
            .offsets
            .into_iter()
            .map(|entry| (entry.shard_id, entry.offset))
            .collect())
    }

    /// Stops heartbeating and leaves the group.
    pub(crate) async fn leave(self) -> Result<(), ClientError> {
        self.shutdown.cancel();
        let req = LeaveGroupRequest {
            group: self.key.group.clone(),
            stream: self.key.stream.clone(),
            member_id: self.state.lock().member_id.clone(),
        };
        let resp = self.key.client.request(&req).await?;
        ClientError::check(resp.error, format!("leave group {}", self.key.group))
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The background heartbeat: every interval, or at once after an
/// assignment was applied.
#[derive(Debug)]
struct Heartbeat {
    key: GroupKey,
    state: Arc<Mutex<MemberState>>,
    publish: watch::Sender<Assignment>,
    wake: Arc<Notify>,
    interval: Duration,
}

impl Heartbeat {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
                () = self.wake.notified() => {}
            }
            if let Err(error) = self.beat().await {
                tracing::debug!(group = %self.key.group, %error, "heartbeat failed");
            }
        }
    }

    async fn beat(&self) -> Result<(), ClientError> {
        let state = self.state.lock().clone();
        let req = HeartbeatRequest {
            group: self.key.group.clone(),
            stream: self.key.stream.clone(),
            member_id: state.member_id,
            generation: state.applied_generation,
        };
        let assignment = self.key.client.request(&req).await?;
        match assignment.error {
            ErrorCode::None => self.publish_if_new(assignment),
            ErrorCode::UnknownMember => {
                // The session expired: join again as a new member.
                let assignment = self.key.join("").await?;
                *self.state.lock() = MemberState {
                    member_id: assignment.member_id.clone(),
                    applied_generation: 0,
                };
                self.publish_if_new(assignment);
            }
            code => ClientError::check(code, "heartbeat")?,
        }
        Ok(())
    }

    fn publish_if_new(&self, assignment: Assignment) {
        self.publish.send_if_modified(|current| {
            let changed = current.generation != assignment.generation
                || current.shards != assignment.shards
                || current.member_id != assignment.member_id;
            if changed {
                *current = assignment;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(generation: u64, shards: &[u32]) -> Assignment {
        Assignment {
            generation,
            shards: shards.to_vec(),
            ..Assignment::default()
        }
    }

    /// Regression: an assignment that arrived while the consumer waited was
    /// marked seen by the wait and never handed out.
    #[tokio::test]
    async fn an_assignment_arriving_during_a_wait_is_still_handed_out() {
        let (publish, receiver) = watch::channel(assignment(2, &[]));
        let mut inbox = Inbox::new(receiver);
        assert_eq!(inbox.changed(), None);
        publish.send_replace(assignment(2, &[2, 3]));
        inbox.wait(Duration::from_secs(5)).await;
        assert_eq!(inbox.changed(), Some(assignment(2, &[2, 3])));
        assert_eq!(inbox.changed(), None, "handed out once");
    }
}
