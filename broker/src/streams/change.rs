//! Applying a topology change to a live stream, seal-and-succeed:
//!
//! 1. plan it against the current metadata (pure, `topology::plan`);
//! 2. seal the affected shards in their owners' queue order, so every
//!    append queued before the seal is in the parent and none after;
//! 3. create the successors' directories, then side by side: their logs,
//!    inheriting their parents' producer state; the fsync of the
//!    directories holding them; and the new metadata in a temp file. All
//!    durable before step 4;
//! 4. rename the metadata into place and fsync its directory: the commit
//!    point;
//! 5. publish the new view, waking appends that found a shard sealed.
//!
//! A crash before step 4 recovers the old topology (the successors'
//! directories are orphans removed at start, the temp metadata is ignored
//! and overwritten by the next change, the parents were only sealed in
//! memory); after it, the new one. A failure before step 4 unseals the
//! parents and removes the successors.
//!
//! Why step 3 overlaps: a change's time is mostly fsyncs. Independent ones
//! issued together share the file system's journal commits, so the change
//! waits for a few journal commits (a successor's own files, then the
//! commit) instead of a dozen in a row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use surge_protocol::ErrorCode;

use super::{create_dir, fsync, remove_dir, Stream, Streams, View};
use crate::error::BrokerError;
use crate::shard::{SealInfo, Shard};
use crate::topology::{self, Change, Plan, StreamMeta};

/// What a committed change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDone {
    pub epoch: u64,
    pub sealed: Vec<u32>,
    pub created: Vec<u32>,
    pub took_us: u64,
}

type ChangeError = (ErrorCode, String);

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
        let _no_forwarding = stream.exclusive_change().await;
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
        // The new metadata is written beside the old one while the
        // successors are created: neither depends on the other, and the
        // commit below waits for both.
        let prepared = {
            let (next, dir) = (next.clone(), stream.dir.clone());
            tokio::task::spawn_blocking(move || next.prepare(&dir))
        };
        let created = self.create_successors(&stream, &view, &plan, &seals);
        let (prepared, created) = tokio::join!(prepared, created);
        let created = match (created, flatten(prepared)) {
            (Ok(created), Ok(())) => created,
            (Ok(created), Err(reason)) => {
                self.discard(&stream, &plan, created).await;
                unseal_all(&stream, &view, &plan);
                return Err((
                    ErrorCode::Storage,
                    format!("writing the new topology failed: {reason}"),
                ));
            }
            (Err(err), _) => {
                unseal_all(&stream, &view, &plan);
                return Err(err);
            }
        };
        let created_us = started.elapsed().as_micros() as u64;
        crate::failpoint::hit("change.successors");
        let dir = stream.dir.clone();
        let committed = tokio::task::spawn_blocking(move || StreamMeta::commit(&dir)).await;
        if let Err(reason) = flatten(committed) {
            self.discard(&stream, &plan, created).await;
            unseal_all(&stream, &view, &plan);
            return Err((
                ErrorCode::Storage,
                format!("writing the new topology failed: {reason}"),
            ));
        }
        crate::failpoint::hit("change.committed");
        let epoch = next.epoch;
        let mut shards = view.shards.clone();
        shards.extend(created);
        stream.publish(View { meta: next, shards });
        self.changes_committed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let took_us = started.elapsed().as_micros() as u64;
        // Cumulative phase ends, to see where a slow change spent its time.
        tracing::info!(stream = %stream.name, ?change, epoch, took_us, sealed_us, created_us, "topology changed");
        Ok(ChangeDone {
            epoch,
            sealed: plan.sealed.clone(),
            created: plan.created.iter().map(|shard| shard.id).collect(),
            took_us,
        })
    }

    /// Creates every successor at once: their directories first (cheap),
    /// then each log on its own blocking thread while the stream
    /// directories holding them are fsynced, so all those fsyncs overlap.
    /// All are durable before the caller commits. On a failure the
    /// successors made are closed and removed.
    async fn create_successors(
        &self,
        stream: &Stream,
        view: &View,
        plan: &Plan,
        seals: &[(u32, SealInfo)],
    ) -> Result<HashMap<u32, Arc<Shard>>, ChangeError> {
        let made = self.make_dirs(&stream.name, plan).await;
        let (created, failure) = match made {
            Ok(()) => {
                let logs = self.create_logs(stream, view, plan, seals);
                let syncs = self.sync_stream_dirs(&stream.name, plan);
                let ((created, failure), synced) = tokio::join!(logs, syncs);
                (created, failure.or(synced.err()))
            }
            Err(reason) => (HashMap::new(), Some(reason)),
        };
        match failure {
            None => Ok(created),
            Some(reason) => {
                self.discard(stream, plan, created).await;
                Err((
                    ErrorCode::Storage,
                    format!("creating successors failed: {reason}"),
                ))
            }
        }
    }

    /// Creates the successors' (empty) directories, removing leftovers of
    /// an earlier attempt, and the stream's directory in a data directory
    /// it had no shard in yet (made durable at once: it is rare).
    async fn make_dirs(&self, stream: &str, plan: &Plan) -> Result<(), String> {
        let dirs: Vec<_> = plan
            .created
            .iter()
            .map(|child| self.shard_dir(stream, child))
            .collect();
        let made = tokio::task::spawn_blocking(move || -> Result<(), BrokerError> {
            for dir in dirs {
                let stream_dir = dir.parent().expect("a shard directory has a parent");
                if !stream_dir.exists() {
                    create_dir(stream_dir)?;
                    fsync(
                        stream_dir
                            .parent()
                            .expect("a stream directory has a parent"),
                    )?;
                }
                if dir.exists() {
                    remove_dir(&dir)?;
                }
                create_dir(&dir)?;
            }
            Ok(())
        })
        .await;
        flatten(made)
    }

    /// Creates each successor's log on its own blocking thread. Returns the
    /// shards made and the first failure.
    async fn create_logs(
        &self,
        stream: &Stream,
        view: &View,
        plan: &Plan,
        seals: &[(u32, SealInfo)],
    ) -> (HashMap<u32, Arc<Shard>>, Option<String>) {
        let inherited: Arc<Vec<_>> = Arc::new(
            seals
                .iter()
                .map(|(_, info)| info.producers.clone())
                .collect(),
        );
        let jobs: Vec<_> = plan
            .created
            .iter()
            .map(|child| {
                let dir = self.shard_dir(&stream.name, child);
                let log_config = self.log_config(&view.meta);
                let settings = self.shard_settings(&view.meta, child);
                let (io, appended) = (self.io.clone(), self.appended.clone());
                let inherited = inherited.clone();
                let id = child.id;
                tokio::task::spawn_blocking(move || {
                    Shard::create_successor(
                        id, &dir, log_config, io, settings, appended, &inherited,
                    )
                    .map(|shard| (id, shard))
                })
            })
            .collect();
        let mut created = HashMap::new();
        let mut failure = None;
        for job in jobs {
            match flatten(job.await) {
                Ok((id, shard)) => {
                    created.insert(id, shard);
                }
                Err(reason) => failure = failure.or(Some(reason)),
            }
        }
        (created, failure)
    }

    /// Makes the successors' directory entries durable: one fsync per data
    /// directory they live in, side by side.
    async fn sync_stream_dirs(&self, stream: &str, plan: &Plan) -> Result<(), String> {
        let mut dirs: Vec<u32> = plan.created.iter().map(|child| child.dir).collect();
        dirs.sort_unstable();
        dirs.dedup();
        let syncs: Vec<_> = dirs
            .into_iter()
            .map(|index| {
                let dir = self.roots[index as usize].join(stream);
                tokio::task::spawn_blocking(move || fsync(&dir))
            })
            .collect();
        let mut failure = None;
        for sync in syncs {
            if let Err(reason) = flatten(sync.await) {
                failure = failure.or(Some(reason));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Closes and removes successors of a change that did not commit.
    async fn discard(&self, stream: &Stream, plan: &Plan, created: HashMap<u32, Arc<Shard>>) {
        for shard in created.values() {
            shard.close().await.ok();
        }
        for child in &plan.created {
            let dir = self.shard_dir(&stream.name, child);
            if !dir.exists() {
                continue;
            }
            if let Err(err) = remove_dir(&dir) {
                tracing::warn!(error = %err, "removing an uncommitted successor failed; it is removed at start");
            }
        }
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

fn flatten<T, E: std::fmt::Display>(
    joined: Result<Result<T, E>, tokio::task::JoinError>,
) -> Result<T, String> {
    match joined {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(format!("task failed: {err}")),
    }
}
