//! A change's successors on disk: taking each one's directory from the
//! pool of its data directory (or, with the pool empty, creating it the
//! slow way: its files and directory entries fsynced before the commit),
//! settling them after the commit, and discarding them when it failed.
//!
//! Settling makes durable outside the journal what only the journal record
//! held: the rename out of the pool (fsync of both directories) and the
//! inherited producer state (a snapshot in the shard's directory). Loading
//! a stream settles the records it replays the same way, so a crash at any
//! point after the commit recovers the same successors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use surge_protocol::ErrorCode;

use super::{create_dir, fsync, remove_dir, Stream, Streams, View};
use crate::error::BrokerError;
use crate::shard::Shard;
use crate::storage::{ProducerState, ShardLog};
use crate::topology::{Claim, Plan, Record, ShardMeta};

/// A successor made for a change that has not committed yet.
#[derive(Debug)]
pub(super) struct Successor {
    pub(super) shard: Arc<Shard>,
    pub(super) claim: Claim,
}

pub(super) type ChangeError = (ErrorCode, String);

impl Streams {
    /// Makes every successor of `plan`: pooled ones together on one
    /// blocking thread (no fsync), the others each on its own (several
    /// fsyncs, overlapping), then the directories holding those fsynced.
    /// On a failure the successors made are discarded.
    pub(super) async fn claim_successors(
        &self,
        stream: &Stream,
        view: &View,
        plan: &Plan,
        inherited: ProducerState,
    ) -> Result<Vec<Successor>, ChangeError> {
        let inherited = Arc::new(inherited);
        let mut pooled = Vec::new();
        let mut inline = Vec::new();
        for child in &plan.created {
            match self.pools[child.dir as usize].take() {
                Some(slot) => pooled.push((child.clone(), slot)),
                None => inline.push(child.clone()),
            }
        }
        let mut jobs = Vec::new();
        if !pooled.is_empty() {
            let made: Vec<_> = pooled
                .into_iter()
                .map(|(child, slot)| {
                    self.successor_job(&stream.name, view, child, Some(slot), &inherited)
                })
                .collect();
            jobs.push(tokio::task::spawn_blocking(move || {
                made.into_iter().map(|job| job()).collect::<Vec<_>>()
            }));
        }
        let inline_dirs: Vec<u32> = inline.iter().map(|child| child.dir).collect();
        for child in inline {
            let job = self.successor_job(&stream.name, view, child, None, &inherited);
            jobs.push(tokio::task::spawn_blocking(move || vec![job()]));
        }
        let mut made = Vec::new();
        let mut failure = None;
        for job in jobs {
            match job.await {
                Ok(results) => {
                    for result in results {
                        match result {
                            Ok(successor) => made.push(successor),
                            Err(reason) => failure = failure.or(Some(reason)),
                        }
                    }
                }
                Err(err) => failure = failure.or(Some(format!("task failed: {err}"))),
            }
        }
        if failure.is_none() {
            failure = self.sync_stream_dirs(&stream.name, inline_dirs).await.err();
        }
        match failure {
            None => Ok(made),
            Some(reason) => {
                self.discard(stream, plan, made, true).await;
                Err((
                    ErrorCode::Storage,
                    format!("creating successors failed: {reason}"),
                ))
            }
        }
    }

    /// The blocking work of making one successor, from `slot` of its data
    /// directory's pool or (`None`) from nothing.
    fn successor_job(
        &self,
        stream: &str,
        view: &View,
        child: ShardMeta,
        slot: Option<String>,
        inherited: &Arc<ProducerState>,
    ) -> impl FnOnce() -> Result<Successor, String> + Send + 'static {
        let dir = self.shard_dir(stream, &child);
        let pool = self.pools[child.dir as usize].clone();
        let log_config = self.log_config(&view.meta);
        let settings = self.shard_settings(&view.meta, &child);
        let (io, appended) = (self.io.clone(), self.appended.clone());
        let inherited = inherited.clone();
        move || {
            let made = prepare_shard_dir(&dir).map_err(|err| err.to_string());
            let log = match (made, &slot) {
                (Err(reason), Some(slot)) => {
                    pool.put_back(slot.clone());
                    return Err(reason);
                }
                (Err(reason), None) => return Err(reason),
                (Ok(()), Some(slot)) => {
                    let from = pool.slot_path(slot);
                    if let Err(source) = std::fs::rename(&from, &dir) {
                        pool.put_back(slot.clone());
                        return Err(format!("taking pool slot {}: {source}", from.display()));
                    }
                    ShardLog::adopt(&dir, log_config, io, &inherited)
                }
                (Ok(()), None) => ShardLog::create_successor(
                    &dir,
                    log_config,
                    io,
                    std::slice::from_ref(inherited.as_ref()),
                ),
            };
            let log = log.map_err(|err| err.to_string())?;
            let shard = Shard::start(child.id, &dir, log, settings, appended)
                .map_err(|err| err.to_string())?;
            Ok(Successor {
                shard,
                claim: Claim { shard: child, slot },
            })
        }
    }

    /// Makes the inline successors' directory entries durable: one fsync
    /// per data directory they live in, side by side.
    async fn sync_stream_dirs(&self, stream: &str, mut dirs: Vec<u32>) -> Result<(), String> {
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
            if let Err(reason) = super::change::flatten(sync.await) {
                failure = failure.or(Some(reason));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Closes successors of a change that did not commit and, with
    /// `remove`, removes their directories (without: a commit record that
    /// may have survived still finds them after a crash; the next change
    /// replaces them).
    pub(super) async fn discard(
        &self,
        stream: &Stream,
        plan: &Plan,
        made: Vec<Successor>,
        remove: bool,
    ) {
        for successor in &made {
            successor.shard.close().await.ok();
        }
        if !remove {
            return;
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

    /// What settling `record` (see the module doc) touches, owned, so it
    /// can run on a blocking thread.
    pub(super) fn settling(&self, stream: &str, record: &Record) -> Settling {
        let moves = record
            .created
            .iter()
            .filter_map(|claim| {
                let slot = claim.slot.as_ref()?;
                let pool = &self.pools[claim.shard.dir as usize];
                Some(Move {
                    id: claim.shard.id,
                    dir: self.shard_dir(stream, &claim.shard),
                    slot: pool.slot_path(slot),
                    pool_dir: pool.dir().to_owned(),
                })
            })
            .collect();
        Settling {
            moves,
            inherited: record.producers.clone(),
        }
    }
}

/// One pooled successor's way from its slot to its shard directory.
#[derive(Debug)]
struct Move {
    id: u32,
    dir: PathBuf,
    slot: PathBuf,
    pool_dir: PathBuf,
}

/// Settling one committed record.
#[derive(Debug)]
pub(super) struct Settling {
    moves: Vec<Move>,
    inherited: ProducerState,
}

impl Settling {
    /// Finishes a rename out of the pool a crash undid, writes the
    /// inherited producer snapshot, fsyncs the directories. Idempotent.
    pub(super) fn run(&self) -> Result<(), BrokerError> {
        for step in &self.moves {
            if !step.dir.exists() {
                if !step.slot.exists() {
                    return Err(BrokerError::CorruptMetadata {
                        path: step.dir.clone(),
                        reason: format!(
                            "committed shard {} has neither its directory nor its pool slot {}",
                            step.id,
                            step.slot.display()
                        ),
                    });
                }
                tracing::warn!(shard = step.id, slot = %step.slot.display(), "finishing a claim a crash undid");
                std::fs::rename(&step.slot, &step.dir).map_err(|source| BrokerError::Io {
                    op: "take pool slot",
                    path: step.slot.clone(),
                    source,
                })?;
            }
            ShardLog::persist_inherited(&step.dir, &self.inherited)?;
            fsync(step.dir.parent().expect("a shard directory has a parent"))?;
            fsync(&step.pool_dir)?;
        }
        Ok(())
    }
}

/// Readies `dir` for a successor: its stream's directory exists in that
/// data directory (made durable at once: rare) and `dir` does not (the
/// leftover of a change that failed is removed).
fn prepare_shard_dir(dir: &Path) -> Result<(), BrokerError> {
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
        remove_dir(dir)?;
    }
    Ok(())
}
