//! Applying a topology change to a live stream, seal-and-succeed:
//!
//! 1. plan it against the current metadata (pure, `topology::plan`);
//! 2. seal the affected shards in their owners' queue order, so every
//!    append queued before the seal is in the parent and none after;
//! 3. create the successors' logs, inheriting their parents' producer
//!    state (durable before they can take a write);
//! 4. write the new metadata crash-safely: the commit point;
//! 5. publish the new view, waking appends that found a shard sealed.
//!
//! A crash before step 4 recovers the old topology (the successors'
//! directories are orphans removed at start, the parents were only sealed
//! in memory); after it, the new one. A failure before step 4 unseals the
//! parents and removes the successors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use surge_protocol::ErrorCode;

use super::{remove_dir, Stream, Streams, View};
use crate::shard::{SealInfo, Shard};
use crate::topology::{self, Change, Plan};

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
        let plan = topology::plan(&view.meta, change, self.dirs())
            .map_err(|message| (ErrorCode::InvalidRequest, message))?;
        let _no_forwarding = stream.exclusive_change().await;
        let seals = seal_all(&stream, &view, &plan).await?;
        crate::failpoint::hit("change.sealed");
        let created = match self.create_successors(&stream, &view, &plan, &seals).await {
            Ok(created) => created,
            Err(err) => {
                unseal_all(&stream, &view, &plan);
                return Err(err);
            }
        };
        crate::failpoint::hit("change.successors");
        let ends: Vec<(u32, u64)> = seals.iter().map(|(id, info)| (*id, info.end)).collect();
        let next = topology::apply(&view.meta, &plan, &ends);
        if let Err(gap) = topology::check_coverage(&next) {
            panic!(
                "a planned change broke the hash coverage of {}: {gap}",
                stream.name
            );
        }
        let dir = stream.dir.clone();
        let stored = {
            let next = next.clone();
            tokio::task::spawn_blocking(move || next.store(&dir)).await
        };
        if let Err(reason) = flatten(stored) {
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
        tracing::info!(stream = %stream.name, ?change, epoch, took_us, "topology changed");
        Ok(ChangeDone {
            epoch,
            sealed: plan.sealed.clone(),
            created: plan.created.iter().map(|shard| shard.id).collect(),
            took_us,
        })
    }

    async fn create_successors(
        &self,
        stream: &Stream,
        view: &View,
        plan: &Plan,
        seals: &[(u32, SealInfo)],
    ) -> Result<HashMap<u32, Arc<Shard>>, ChangeError> {
        let inherited: Vec<_> = seals
            .iter()
            .map(|(_, info)| info.producers.clone())
            .collect();
        let jobs: Vec<_> = plan
            .created
            .iter()
            .map(|child| {
                (
                    child.id,
                    self.shard_dir(&stream.name, child),
                    self.log_config(&view.meta),
                    self.shard_settings(&view.meta, child),
                )
            })
            .collect();
        let io = self.io.clone();
        let appended = self.appended.clone();
        let made = tokio::task::spawn_blocking(move || {
            let mut created = HashMap::new();
            for (id, dir, log_config, settings) in jobs {
                if dir.exists() {
                    remove_dir(&dir).map_err(|err| err.to_string())?;
                }
                let shard = Shard::create_successor(
                    id,
                    &dir,
                    log_config,
                    io.clone(),
                    settings,
                    appended.clone(),
                    &inherited,
                )
                .map_err(|err| err.to_string())?;
                created.insert(id, shard);
            }
            Ok::<_, String>(created)
        })
        .await;
        flatten(made).map_err(|reason| {
            (
                ErrorCode::Storage,
                format!("creating successors failed: {reason}"),
            )
        })
    }

    /// Closes and removes successors of a change that did not commit.
    async fn discard(&self, stream: &Stream, plan: &Plan, created: HashMap<u32, Arc<Shard>>) {
        for shard in created.values() {
            shard.close().await.ok();
        }
        for child in &plan.created {
            let dir = self.shard_dir(&stream.name, child);
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
