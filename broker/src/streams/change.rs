//! Applying a topology change to a live stream, seal-and-succeed:
//!
//! 1. plan it against the current metadata (pure, `topology::plan`);
//! 2. seal the affected shards in their owners' queue order, so every
//!    append queued before the seal is in the parent and none after;
//! 3. take the successors' directories from the pool (`claim`), each an
//!    empty, durable log renamed into place, holding the inherited
//!    producer state in memory only; with the pool empty, create them
//!    durably instead;
//! 4. append the change's record to the stream's topology journal and
//!    fdatasync it: the commit point, and with pooled successors the only
//!    fsync between seal and publish;
//! 5. publish the new view, waking appends that found a shard sealed;
//! 6. settle: make the renames and the inherited state durable outside
//!    the journal, compact the journal when it is half full, and refill
//!    the pool in the background. Appends do not wait for any of it.
//!
//! A crash before step 4 recovers the old topology (the successors'
//! directories are orphans removed at start, the parents were only sealed
//! in memory); after it, the new one (loading replays the record and
//! settles it). A failure before step 4 unseals the parents and removes
//! the successors; a failed step 4 does the same once the record is
//! overwritten with zeros, and otherwise, not knowing whether the record
//! survives a crash, keeps the parents sealed until a restart decides.

use std::time::Instant;

use surge_protocol::ErrorCode;

use super::claim::{ChangeError, Successor};
use super::{Stream, Streams, View};
use crate::shard::SealInfo;
use crate::storage::ProducerState;
use crate::topology::{self, AppendError, Change, Plan, Record};

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
        let no_forwarding = stream.exclusive_change().await;
        let seals = seal_all(&stream, &view, &plan).await?;
        let sealed_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.sealed");
        let ends: Vec<(u32, u64)> = seals.iter().map(|(id, info)| (*id, info.end)).collect();
        let next = topology::apply(&view.meta, &plan, &ends);
        if let Err(gap) = topology::check_coverage(&next) {
            panic!(
                "a planned change broke the hash coverage of {}: {gap}",
                stream.name
            );
        }
        let parents: Vec<ProducerState> =
            seals.into_iter().map(|(_, info)| info.producers).collect();
        let inherited = ProducerState::inherited(&parents);
        let made = self
            .claim_successors(&stream, &view, &plan, inherited.clone())
            .await;
        let made = made.inspect_err(|_| unseal_all(&stream, &view, &plan))?;
        let claimed_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.successors");
        let record = Record {
            epoch: next.epoch,
            sealed: ends,
            created: made
                .iter()
                .map(|successor| successor.claim.clone())
                .collect(),
            producers: inherited,
        };
        let committed = {
            let (stream, record) = (stream.clone(), record.clone());
            tokio::task::spawn_blocking(move || stream.journal.lock().append(&record)).await
        };
        if let Err(failure) = committed_or(committed) {
            return Err(self.abandon(&stream, &view, &plan, made, failure).await);
        }
        let committed_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.committed");
        let epoch = next.epoch;
        let mut shards = view.shards.clone();
        shards.extend(
            made.iter()
                .map(|successor| (successor.shard.id, successor.shard.clone())),
        );
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
        tracing::info!(stream = %stream.name, ?change, epoch, took_us, sealed_us, claimed_us, committed_us, settled_us, "topology changed");
        Ok(ChangeDone {
            epoch,
            sealed: plan.sealed.clone(),
            created: plan.created.iter().map(|shard| shard.id).collect(),
            took_us,
        })
    }

    /// Undoes a change whose commit failed, as far as it is safe to: see
    /// the module doc.
    async fn abandon(
        &self,
        stream: &Stream,
        view: &View,
        plan: &Plan,
        made: Vec<Successor>,
        failure: AppendError,
    ) -> ChangeError {
        match failure {
            AppendError::NotWritten(reason) => {
                self.discard(stream, plan, made, true).await;
                unseal_all(stream, view, plan);
                (
                    ErrorCode::Storage,
                    format!("writing the new topology failed: {reason}"),
                )
            }
            AppendError::Unknown(reason) => {
                tracing::error!(stream = %stream.name, reason, "a topology commit failed and may survive a crash: its parents stay sealed until a restart");
                self.discard(stream, plan, made, false).await;
                (
                    ErrorCode::Storage,
                    format!("writing the new topology failed, its outcome is unknown until a restart: {reason}"),
                )
            }
        }
    }

    /// Settles a committed change and compacts the journal when it is due
    /// (see `claim`). A failure leaves the record in the journal, which
    /// then is not compacted until a restart settles it. Returns when the
    /// settling ended, from the change's start.
    async fn settle_change(
        &self,
        stream: &std::sync::Arc<Stream>,
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

/// Seals the planned shards in order; on failure unseals those sealed.
async fn seal_all(
    stream: &Stream,
    view: &View,
    plan: &Plan,
) -> Result<Vec<(u32, SealInfo)>, ChangeError> {
    let mut seals = Vec::with_capacity(plan.sealed.len());
    for id in &plan.sealed {
        let shard = view.shards.get(id).expect("planned shards are in the view");
        match shard.seal().await {
            Ok(info) => seals.push((*id, info)),
            Err(reason) => {
                for (sealed, _) in &seals {
                    view.shards[sealed].unseal();
                }
                stream.nudge();
                return Err((
                    ErrorCode::Storage,
                    format!("sealing shard {id} failed: {reason}"),
                ));
            }
        }
    }
    Ok(seals)
}

fn unseal_all(stream: &Stream, view: &View, plan: &Plan) {
    for id in &plan.sealed {
        view.shards[id].unseal();
    }
    stream.nudge();
}

/// The journal append's outcome; a lost task is a failure of unknown
/// outcome.
fn committed_or(
    joined: Result<Result<(), AppendError>, tokio::task::JoinError>,
) -> Result<(), AppendError> {
    joined.unwrap_or_else(|err| Err(AppendError::Unknown(format!("task failed: {err}"))))
}

pub(super) fn flatten<T, E: std::fmt::Display>(
    joined: Result<Result<T, E>, tokio::task::JoinError>,
) -> Result<T, String> {
    match joined {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(format!("task failed: {err}")),
    }
}
