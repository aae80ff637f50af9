//! Applying a topology change to a live stream, seal-and-succeed:
//!
//! 1. plan it against the current metadata (pure, `topology::plan`);
//! 2. side by side: seal the affected shards, each in its owner's queue
//!    order (so every append queued before the seal is in the parent and
//!    none after), all at once; and prepare the successors (`claim`): each
//!    an empty, durable log taken from the pool by a rename, or with the
//!    pool empty made in place with fsyncs;
//! 3. give the successors the producer state their parents leave, in
//!    memory, and start them, while the change's record is appended to the
//!    stream's topology journal and fdatasynced: the commit point, and
//!    with pooled successors the only fsync between seal and publish;
//! 4. publish the new view, waking appends that found a shard sealed;
//! 5. settle: make the renames and the inherited state durable outside
//!    the journal, compact the journal when it is half full, and refill
//!    the pool in the background. Appends do not wait for any of it.
//!
//! A crash before the record is durable recovers the old topology (the
//! successors' directories are orphans removed at start, the parents were
//! only sealed in memory); after it, the new one (loading replays the
//! record and settles it). A failure before the commit unseals the parents
//! and removes the successors; so does a failure after it once the record
//! is overwritten with zeros, and otherwise, not knowing whether the record
//! survives a crash, the change keeps the parents sealed until a restart
//! decides.

use std::sync::Arc;
use std::time::Instant;

use surge_protocol::ErrorCode;

use super::claim::ChangeError;
use super::{Stream, Streams, View};
use crate::shard::{SealInfo, Shard};
use crate::storage::{ProducerState, ShardLog};
use crate::topology::{self, AppendError, Change, Plan, Record, ShardMeta};

/// What a committed change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDone {
    pub epoch: u64,
    pub sealed: Vec<u32>,
    pub created: Vec<u32>,
    pub took_us: u64,
}

impl Streams {
    /// The split point for `shard` when none is given: the weighted median
    /// of its recent key hashes, else the middle of its range.
    pub fn split_point(&self, stream: &str, shard: u32) -> Option<u64> {
        let shard = self.get(stream)?.shard(shard)?;
        Some(
            shard
                .keys()
                .weighted_median()
                .unwrap_or_else(|| shard.keys().midpoint()),
        )
    }

    /// Topology changes committed since the broker started.
    pub fn changes_committed(&self) -> u64 {
        self.changes_committed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies `change` to `stream`; one change per stream at a time.
    pub async fn change(&self, stream: &str, change: Change) -> Result<ChangeDone, ChangeError> {
        let stream = self
            .get(stream)
            .ok_or((ErrorCode::UnknownStream, format!("unknown stream {stream}")))?;
        let _changing = stream.changing.lock().await;
        let started = Instant::now();
        let view = stream.view();
        let plan = topology::plan(&view.meta, &change, self.dirs())
            .map_err(|message| (ErrorCode::InvalidRequest, message))?;
        let prepared = async {
            let prepared = self
                .prepare_successors(&stream.name, &plan, self.log_config(&view.meta))
                .await;
            (prepared, started.elapsed().as_micros() as u64)
        };
        let sealed = async {
            let no_forwarding = stream.exclusive_change().await;
            let seals = seal_all(&view, &plan).await;
            (no_forwarding, seals, started.elapsed().as_micros() as u64)
        };
        let ((prepared, successors_us), (no_forwarding, seals, sealed_us)) =
            tokio::join!(prepared, sealed);
        let (prepared, seals) = match (prepared, seals) {
            (Ok(prepared), Ok(seals)) => (prepared, seals),
            (prepared, seals) => {
                let failure = match (&prepared, &seals) {
                    (Err(failure), _) | (_, Err(failure)) => failure.clone(),
                    (Ok(_), Ok(_)) => unreachable!("both succeeded"),
                };
                if let Ok(prepared) = prepared {
                    drop(prepared);
                    self.discard(&stream.name, &plan, Vec::new(), true).await;
                }
                unseal_all(&stream, &view, &plan);
                return Err(failure);
            }
        };
        let prepared_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.sealed");
        let ends: Vec<(u32, u64)> = seals.iter().map(|(id, info)| (*id, info.end)).collect();
        let next = topology::apply(&view.meta, &plan, &ends);
        if let Err(gap) = topology::check_coverage(&next) {
            panic!(
                "a planned change broke the hash coverage of {}: {gap}",
                stream.name
            );
        }
        let (parent_ids, parents): (Vec<u32>, Vec<ProducerState>) = seals
            .into_iter()
            .map(|(id, info)| (id, info.producers))
            .unzip();
        let producers = ProducerState::inherited(&parents, |parent, origin| {
            view.meta.ranges_meet(parent_ids[parent], origin)
        });
        let record = Record {
            epoch: next.epoch,
            sealed: ends,
            created: prepared.claims,
            producers,
        };
        crate::failpoint::hit("change.successors");
        let committing = {
            let (stream, record) = (stream.clone(), record.clone());
            tokio::task::spawn_blocking(move || stream.journal.lock().append(&record))
        };
        // Started while the record is synced: each start spawns a thread.
        let (successors, start_failure) = self.start_all(&view, prepared.logs, &record.producers);
        let committed = match committing.await {
            Ok(appended) => appended.map_err(Failure::Commit),
            Err(err) => Err(Failure::Commit(AppendError::Unknown(format!(
                "task failed: {err}"
            )))),
        };
        let committed = match (committed, start_failure) {
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(reason)) => Err(self.retract(&stream, reason).await),
            (Err(failure), _) => Err(failure),
        };
        if let Err(failure) = committed {
            return Err(self
                .abandon(&stream, &view, &plan, successors, failure)
                .await);
        }
        let committed_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.committed");
        let epoch = next.epoch;
        let mut shards = view.shards.clone();
        shards.extend(successors.into_iter().map(|shard| (shard.id, shard)));
        stream.publish(View {
            meta: next.clone(),
            shards,
        });
        drop(no_forwarding);
        self.changes_committed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let took_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.published");
        let settled_us = self.settle_change(&stream, &record, next).await;
        self.refill_pools();
        // Cumulative phase ends, to see where a slow change spent its time.
        tracing::info!(stream = %stream.name, ?change, epoch, took_us, sealed_us, successors_us, prepared_us, committed_us, settled_us, "topology changed");
        Ok(ChangeDone {
            epoch,
            sealed: plan.sealed.clone(),
            created: plan.created.iter().map(|shard| shard.id).collect(),
            took_us,
        })
    }

    /// Gives every prepared successor its inherited producer state and
    /// starts its owner thread. Returns those started and the first failure.
    fn start_all(
        &self,
        view: &View,
        logs: Vec<(ShardMeta, ShardLog)>,
        inherited: &ProducerState,
    ) -> (Vec<Arc<Shard>>, Option<String>) {
        let mut started = Vec::with_capacity(logs.len());
        let mut failure = None;
        for (child, mut log) in logs {
            log.inherit(inherited);
            let dir = self.shard_dir(&view.meta.name, &child);
            let settings = self.shard_settings(&view.meta, &child);
            match Shard::start(child.id, &dir, log, settings, self.appended.clone()) {
                Ok(shard) => started.push(shard),
                Err(err) => failure = failure.or(Some(err.to_string())),
            }
        }
        (started, failure)
    }

    /// Takes back a committed record whose successors could not all start.
    async fn retract(&self, stream: &Arc<Stream>, reason: String) -> Failure {
        let retracting = {
            let stream = stream.clone();
            tokio::task::spawn_blocking(move || stream.journal.lock().retract_last())
        };
        match flatten(retracting.await) {
            Ok(()) => Failure::Start(reason),
            Err(retract) => {
                Failure::Commit(AppendError::Unknown(format!("{reason}; then {retract}")))
            }
        }
    }

    /// Undoes a change that did not commit, as far as it is safe to: see
    /// the module doc.
    async fn abandon(
        &self,
        stream: &Stream,
        view: &View,
        plan: &Plan,
        started: Vec<Arc<Shard>>,
        failure: Failure,
    ) -> ChangeError {
        let (remove, message) = match failure {
            Failure::Start(reason) => (true, format!("starting successors failed: {reason}")),
            Failure::Commit(AppendError::NotWritten(reason)) => {
                (true, format!("writing the new topology failed: {reason}"))
            }
            Failure::Commit(AppendError::Unknown(reason)) => {
                tracing::error!(stream = %stream.name, reason, "a topology commit failed and may survive a crash: its parents stay sealed until a restart");
                self.discard(&stream.name, plan, started, false).await;
                return (
                    ErrorCode::Storage,
                    format!("writing the new topology failed, its outcome is unknown until a restart: {reason}"),
                );
            }
        };
        self.discard(&stream.name, plan, started, remove).await;
        unseal_all(stream, view, plan);
        (ErrorCode::Storage, message)
    }

    /// Settles a committed change and compacts the journal when it is due
    /// (see `claim`). A failure leaves the record in the journal, which
    /// then is not compacted until a restart settles it. Returns when the
    /// settling ended, from the change's start.
    async fn settle_change(
        &self,
        stream: &Arc<Stream>,
        record: &Record,
        meta: topology::StreamMeta,
    ) -> u64 {
        let (settling, stream_arc) = (self.settling(&stream.name, record), stream.clone());
        let started = Instant::now();
        let settled = tokio::task::spawn_blocking(move || {
            let settled = settling.run();
            let mut journal = stream_arc.journal.lock();
            journal.settled(settled.is_ok());
            settled?;
            if journal.wants_compaction() {
                meta.store(&stream_arc.dir)?;
                journal.compacted();
            }
            Ok::<(), crate::error::BrokerError>(())
        })
        .await;
        if let Err(reason) = flatten(settled) {
            tracing::warn!(stream = %stream.name, reason, "settling a topology change failed; the next start does it");
        }
        started.elapsed().as_micros() as u64
    }
}

/// Why a change did not commit after its successors were prepared.
enum Failure {
    /// A successor did not start; the record was taken back.
    Start(String),
    Commit(AppendError),
}

/// Seals the planned shards side by side: each seal waits for the appends
/// queued before it (an fdatasync may be in flight), so one after another
/// they would add up. The caller unseals every planned shard on a failure.
async fn seal_all(view: &View, plan: &Plan) -> Result<Vec<(u32, SealInfo)>, ChangeError> {
    let pending: Vec<_> = plan
        .sealed
        .iter()
        .map(|id| {
            let shard = view.shards.get(id).expect("planned shards are in the view");
            let shard = shard.clone();
            (*id, tokio::spawn(async move { shard.seal().await }))
        })
        .collect();
    let mut seals = Vec::with_capacity(pending.len());
    let mut failure = None;
    for (id, sealing) in pending {
        match sealing.await {
            Ok(Ok(info)) => seals.push((id, info)),
            Ok(Err(reason)) => {
                failure.get_or_insert(format!("sealing shard {id} failed: {reason}"));
            }
            Err(err) => {
                failure.get_or_insert(format!("sealing shard {id} failed: {err}"));
            }
        }
    }
    match failure {
        None => Ok(seals),
        Some(reason) => Err((ErrorCode::Storage, reason)),
    }
}

fn unseal_all(stream: &Stream, view: &View, plan: &Plan) {
    for id in &plan.sealed {
        view.shards[id].unseal();
    }
    stream.nudge();
}

pub(super) fn flatten<T, E: std::fmt::Display>(
    joined: Result<Result<T, E>, tokio::task::JoinError>,
) -> Result<T, String> {
    match joined {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(format!("task failed: {err}")),
    }
}
