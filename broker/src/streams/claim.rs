//! A change's successors on disk: taking each one's directory from the
//! pool of its data directory (or, with the pool empty, making it in place
//! the slow way: the same empty log, its files and directory entries
//! fsynced), settling them after the commit, and discarding them when the
//! change failed.
//!
//! Successors are prepared while the parents are being sealed: nothing in
//! them depends on the seal but their producer table, which the change
//! sets in memory afterwards (`ShardLog::inherit`) and its journal record
//! holds durably. Settling makes durable outside the journal what only the
//! record held: the rename out of the pool (fsync of both directories) and
//! the inherited producer state (a snapshot in the shard's directory).
//! Loading a stream settles the records it replays the same way, so a
//! crash at any point after the commit recovers the same successors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use surge_protocol::ErrorCode;

use super::{create_dir, fsync, remove_dir, Streams};
use crate::error::BrokerError;
use crate::shard::Shard;
use crate::storage::{self, LogConfig, ProducerState, ShardLog};
use crate::topology::{Claim, Plan, Record, ShardMeta};

pub(super) type ChangeError = (ErrorCode, String);

/// A change's successors before its commit: each one's log, empty and
/// durable in its shard directory (not yet started), and its claim.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) logs: Vec<(ShardMeta, ShardLog)>,
    pub(super) claims: Vec<Claim>,
}

impl Streams {
    /// Prepares every successor of `plan`: the pooled ones together on one
    /// blocking thread (renames, no fsync), the others each on its own
    /// (several fsyncs, overlapping), then the directories holding those
    /// fsynced. On a failure the directories made are removed and the
    /// slots not taken are returned.
    pub(super) async fn prepare_successors(
        &self,
        stream: &str,
        plan: &Plan,
        log_config: LogConfig,
    ) -> Result<Prepared, ChangeError> {
        let mut claims = Vec::with_capacity(plan.created.len());
        let mut pooled = Vec::new();
        let mut inline = Vec::new();
        for child in &plan.created {
            let slot = self.pools[child.dir as usize].take();
            claims.push(Claim {
                shard: child.clone(),
                slot: slot.clone(),
            });
            let job = self.successor_job(stream, child, slot, log_config.clone());
            match claims.last().and_then(|claim| claim.slot.as_ref()) {
                Some(_) => pooled.push(job),
                None => inline.push(job),
            }
        }
        let inline_dirs: Vec<u32> = claims
            .iter()
            .filter(|claim| claim.slot.is_none())
            .map(|claim| claim.shard.dir)
            .collect();
        let mut jobs = Vec::with_capacity(inline.len() + 1);
        if !pooled.is_empty() {
            jobs.push(tokio::task::spawn_blocking(move || {
                pooled.into_iter().map(|job| job()).collect::<Vec<_>>()
            }));
        }
        for job in inline {
            jobs.push(tokio::task::spawn_blocking(move || vec![job()]));
        }
        let mut logs = Vec::with_capacity(claims.len());
        let mut failure = None;
        for job in jobs {
            match job.await {
                Ok(results) => {
                    for result in results {
                        match result {
                            Ok(made) => logs.push(made),
                            Err(reason) => failure = failure.or(Some(reason)),
                        }
                    }
                }
                Err(err) => failure = failure.or(Some(format!("task failed: {err}"))),
            }
        }
        if failure.is_none() {
            failure = self.sync_stream_dirs(stream, inline_dirs).await.err();
        }
        match failure {
            None => Ok(Prepared { logs, claims }),
            Some(reason) => {
                drop(logs);
                self.discard(stream, plan, Vec::new(), true).await;
                Err((
                    ErrorCode::Storage,
                    format!("preparing successors failed: {reason}"),
                ))
            }
        }
    }

    /// The blocking work of preparing one successor: renaming `slot` of its
    /// data directory's pool into place, or (`None`) making the same empty
    /// log there; then opening it.
    fn successor_job(
        &self,
        stream: &str,
        child: &ShardMeta,
        slot: Option<String>,
        log_config: LogConfig,
    ) -> impl FnOnce() -> Result<(ShardMeta, ShardLog), String> + Send + 'static {
        let dir = self.shard_dir(stream, child);
        let pool = self.pools[child.dir as usize].clone();
        let io = self.io.clone();
        let child = child.clone();
        move || {
            let made = prepare_shard_dir(&dir).map_err(|err| err.to_string());
            let placed = match (made, &slot) {
                (Err(reason), Some(slot)) => {
                    pool.put_back(slot.clone());
                    return Err(reason);
                }
                (Err(reason), None) => return Err(reason),
                (Ok(()), Some(slot)) => {
                    let from = pool.slot_path(slot);
                    std::fs::rename(&from, &dir).map_err(|source| {
                        pool.put_back(slot.clone());
                        format!("taking pool slot {}: {source}", from.display())
                    })
                }
                (Ok(()), None) => storage::create_pooled(&dir, log_config.preallocate_bytes)
                    .map_err(|err| err.to_string()),
            };
            placed?;
            let log = ShardLog::adopt(&dir, log_config, io).map_err(|err| err.to_string())?;
            Ok((child, log))
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
        stream: &str,
        plan: &Plan,
        started: Vec<Arc<Shard>>,
        remove: bool,
    ) {
        for shard in &started {
            shard.close().await.ok();
        }
        if !remove {
            return;
        }
        for child in &plan.created {
            let dir = self.shard_dir(stream, child);
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
        let steps = record
            .created
            .iter()
            .map(|claim| {
                let pool = &self.pools[claim.shard.dir as usize];
                Step {
                    id: claim.shard.id,
                    dir: self.shard_dir(stream, &claim.shard),
                    slot: claim.slot.as_ref().map(|slot| pool.slot_path(slot)),
                    pool_dir: pool.dir().to_owned(),
                }
            })
            .collect();
        Settling {
            steps,
            inherited: record.producers.clone(),
        }
    }
}

/// One successor's way from its pool slot (if any) to its shard directory.
#[derive(Debug)]
struct Step {
    id: u32,
    dir: PathBuf,
    slot: Option<PathBuf>,
    pool_dir: PathBuf,
}

/// Settling one committed record.
#[derive(Debug)]
pub(super) struct Settling {
    steps: Vec<Step>,
    inherited: ProducerState,
}

impl Settling {
    /// Finishes a rename out of the pool a crash undid, writes the
    /// inherited producer snapshot, fsyncs the directories. Idempotent.
    pub(super) fn run(&self) -> Result<(), BrokerError> {
        for step in &self.steps {
            let from = step.slot.as_ref().filter(|slot| slot.exists());
            if !step.dir.exists() {
                let Some(from) = from else {
                    return Err(BrokerError::CorruptMetadata {
                        path: step.dir.clone(),
                        reason: format!(
                            "committed shard {} has neither its directory nor its pool slot",
                            step.id
                        ),
                    });
                };
                tracing::warn!(shard = step.id, slot = %from.display(), "finishing a claim a crash undid");
                std::fs::rename(from, &step.dir).map_err(|source| BrokerError::Io {
                    op: "take pool slot",
                    path: from.clone(),
                    source,
                })?;
            }
            ShardLog::persist_inherited(&step.dir, &self.inherited)?;
            fsync(step.dir.parent().expect("a shard directory has a parent"))?;
            if step.slot.is_some() {
                fsync(&step.pool_dir)?;
            }
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
