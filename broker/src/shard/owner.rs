//! The shard's owner thread: the only code that writes to the shard's log.
//! It runs group commit, the write-mode flush timer and retention. A
//! write-mode flush runs on a thread of its own (`SyncJob`): synced on this
//! thread, a second's worth of writes held every append queued behind it
//! for as long as the disk took to write them.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use surge_protocol::batch::Checked;
use surge_protocol::stream::Durability;
use surge_protocol::ErrorCode;
use tokio::sync::watch;

use super::forward_order::ForwardOrder;
use super::{AppendReply, BatchOutcome, Job, JobQueue, SealInfo, ShardOffsets, ShardSettings};
use crate::metrics::ShardMetrics;
use crate::storage::{AppendOutcome, ShardLog, StorageError, Synced};

/// Upper bound on one wait for jobs, so timers are checked at least this often.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How often a write-mode flush in progress is checked for its end.
const FLUSH_POLL: Duration = Duration::from_millis(10);

/// What the owner thread shares with the `Shard` handle.
pub(super) struct Shared {
    pub queue: Arc<JobQueue<Job>>,
    pub offsets: Arc<ShardOffsets>,
    pub metrics: Arc<ShardMetrics>,
    pub appended: watch::Sender<u64>,
    pub forwards: Arc<ForwardOrder>,
}

pub(super) fn spawn(
    id: u32,
    log: ShardLog,
    shared: Shared,
    settings: ShardSettings,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("shard-{id}"))
        .spawn(move || {
            let mut owner = Owner {
                id,
                log: Some(log),
                offsets: shared.offsets,
                metrics: shared.metrics,
                appended: shared.appended,
                forwards: shared.forwards,
                unsynced_since: None,
                flushing: None,
                last_retention: Instant::now(),
                sealed: settings.sealed,
                settings,
            };
            owner.run(&shared.queue);
        })
}

/// Publishes the log's offsets for readers.
pub(super) fn publish(log: &ShardLog, offsets: &ShardOffsets, durability: Durability) {
    let written = log.written_offset();
    let flushed = log.flushed_offset();
    offsets.written.store(written, Ordering::Release);
    offsets.flushed.store(flushed, Ordering::Release);
    offsets
        .log_start
        .store(log.log_start_offset(), Ordering::Release);
    offsets
        .size_bytes
        .store(log.size_bytes(), Ordering::Release);
    let visible = match durability {
        Durability::Fsync => flushed,
        Durability::Write => written,
    };
    offsets.visible.store(visible, Ordering::Release);
}

struct Owner {
    id: u32,
    /// `None` once closed.
    log: Option<ShardLog>,
    offsets: Arc<ShardOffsets>,
    metrics: Arc<ShardMetrics>,
    settings: ShardSettings,
    appended: watch::Sender<u64>,
    forwards: Arc<ForwardOrder>,
    unsynced_since: Option<Instant>,
    /// The answer of the write-mode flush in progress, if one is.
    flushing: Option<mpsc::Receiver<Result<Synced, StorageError>>>,
    last_retention: Instant,
    /// After a seal, appends are judged but never stored.
    sealed: bool,
}

type PendingAppend = (
    Vec<Checked>,
    bool,
    tokio::sync::oneshot::Sender<AppendReply>,
    Instant,
);

impl Owner {
    fn run(&mut self, queue: &JobQueue<Job>) {
        while self.log.is_some() {
            let jobs = queue.take(
                self.wait_time(),
                self.settings.group_commit_max_bytes,
                |job| match job {
                    Job::Append { bytes, .. } => *bytes,
                    Job::Seal { .. } | Job::Unseal | Job::Close { .. } => 0,
                },
            );
            self.handle(jobs);
            self.flush_if_due();
            self.retention_if_due();
        }
    }

    fn wait_time(&self) -> Duration {
        let due = match self.unsynced_since {
            Some(since) => {
                let interval = Duration::from_millis(self.settings.flush_interval_ms);
                interval.saturating_sub(since.elapsed())
            }
            None => IDLE_WAIT,
        };
        if self.flushing.is_some() {
            // A due flush waits for the one in progress: no busy loop meanwhile.
            return due.max(FLUSH_POLL).min(IDLE_WAIT);
        }
        due.min(IDLE_WAIT)
    }

    /// Runs jobs in queue order: appends are grouped until a control job,
    /// which sees every append queued before it committed.
    fn handle(&mut self, jobs: Vec<Job>) {
        let mut appends: Vec<PendingAppend> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Append {
                    batches,
                    sync,
                    reply,
                    queued_at,
                    ..
                } => appends.push((batches, sync, reply, queued_at)),
                Job::Seal { done } => {
                    self.commit(std::mem::take(&mut appends));
                    done.send(self.seal()).ok();
                }
                Job::Unseal => {
                    self.commit(std::mem::take(&mut appends));
                    self.sealed = false;
                }
                Job::Close { done } => {
                    self.commit(std::mem::take(&mut appends));
                    done.send(self.close()).ok();
                    return;
                }
            }
        }
        self.commit(appends);
    }

    fn seal(&mut self) -> Result<SealInfo, String> {
        let log = self.log.as_mut().ok_or("the shard is closed")?;
        log.sync().map_err(|err| err.to_string())?;
        self.unsynced_since = None;
        self.sealed = true;
        let info = SealInfo {
            end: log.written_offset(),
            producers: log.producer_state(),
        };
        // Before any later job is answered sealed, so its forward sees it.
        self.forwards.start_from(&info.producers);
        self.published();
        Ok(info)
    }

    /// One group commit: one write, at most one fdatasync, then the acks.
    fn commit(&mut self, appends: Vec<PendingAppend>) {
        if appends.is_empty() {
            return;
        }
        let Some(log) = self.log.as_mut() else {
            for (_, _, reply, _) in appends {
                reply.send(Err(ErrorCode::ShuttingDown)).ok();
            }
            return;
        };
        let all: Vec<Checked> = appends
            .iter()
            .flat_map(|(batches, _, _, _)| batches.iter().cloned())
            .collect();
        if self.sealed {
            let judged: Vec<BatchOutcome> = log
                .check_sealed(&all)
                .into_iter()
                .map(|outcome| match outcome {
                    // A sealed log knows only what it stored before the seal:
                    // a producer's batch behind one that was forwarded looks
                    // like a gap here. Its forward turn judges it against
                    // what was forwarded (`forward_order`).
                    None | Some(AppendOutcome::OutOfOrder { .. }) => BatchOutcome::Sealed,
                    Some(outcome) => BatchOutcome::Log(outcome),
                })
                .collect();
            reply_each(appends, judged.into_iter(), &self.metrics);
            return;
        }
        let sync = appends.iter().any(|(_, sync, _, _)| *sync);
        let started = Instant::now();
        match log.append(&all, sync) {
            Ok(outcomes) => {
                if sync {
                    self.metrics.record_fsync_latency(started.elapsed());
                    self.unsynced_since = None;
                } else if self.unsynced_since.is_none() {
                    self.unsynced_since = Some(Instant::now());
                }
                self.published();
                count_stored(&self.metrics, &all, &outcomes);
                let outcomes = outcomes.into_iter().map(BatchOutcome::Log);
                reply_each(appends, outcomes, &self.metrics);
            }
            Err(err) => {
                let code = if err.is_disk_full() {
                    ErrorCode::DiskFull
                } else {
                    ErrorCode::Storage
                };
                tracing::error!(shard = self.id, error = %err, ?code, "append failed; producers get an error");
                for (_, _, reply, _) in appends {
                    reply.send(Err(code)).ok();
                }
            }
        }
    }

    fn published(&self) {
        if let Some(log) = &self.log {
            let before = self.offsets.visible.load(Ordering::Acquire);
            publish(log, &self.offsets, self.settings.durability);
            if self.offsets.visible.load(Ordering::Acquire) != before {
                self.appended
                    .send_modify(|count| *count = count.wrapping_add(1));
            }
        }
    }

    /// Starts the write-mode flush once the oldest unsynced write has
    /// waited `flush_interval_ms`, one at a time, and collects its answer.
    fn flush_if_due(&mut self) {
        self.collect_flush();
        let Some(since) = self.unsynced_since else {
            return;
        };
        let interval = Duration::from_millis(self.settings.flush_interval_ms);
        if self.flushing.is_some() || since.elapsed() < interval {
            return;
        }
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let job = match log.sync_job() {
            Ok(Some(job)) => job,
            Ok(None) => {
                self.unsynced_since = None;
                return;
            }
            Err(err) => {
                tracing::error!(shard = self.id, error = %err, "periodic flush failed");
                return;
            }
        };
        let (done, answer) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("flush-{}", self.id))
            .spawn(move || {
                crate::failpoint::stall("flush.stall");
                done.send(job.run()).ok()
            });
        match spawned {
            Ok(_) => {
                self.flushing = Some(answer);
                self.unsynced_since = None;
            }
            Err(err) => {
                tracing::warn!(shard = self.id, error = %err, "no flush thread; flushing inline");
                match log.sync() {
                    Ok(()) => self.unsynced_since = None,
                    Err(err) => {
                        tracing::error!(shard = self.id, error = %err, "periodic flush failed")
                    }
                }
                self.published();
            }
        }
    }

    /// Takes the answer of the flush in progress, if it has one.
    fn collect_flush(&mut self) {
        let Some(answer) = &self.flushing else {
            return;
        };
        let result = match answer.try_recv() {
            Err(mpsc::TryRecvError::Empty) => return,
            Ok(result) => result.map_err(|err| err.to_string()),
            Err(mpsc::TryRecvError::Disconnected) => Err("the flush thread died".to_owned()),
        };
        self.flushing = None;
        match (result, self.log.as_mut()) {
            (Ok(synced), Some(log)) => log.synced(synced),
            (Ok(_), None) => {}
            (Err(err), _) => {
                tracing::error!(shard = self.id, error = %err, "periodic flush failed");
                // Tried again an interval from now.
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
        }
        self.published();
    }

    fn retention_if_due(&mut self) {
        let interval = Duration::from_millis(self.settings.retention_check_interval_ms);
        if self.last_retention.elapsed() < interval {
            return;
        }
        self.last_retention = Instant::now();
        let now_ms = crate::clock::now_ms();
        if let Some(log) = self.log.as_mut() {
            match log.enforce_retention(now_ms) {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(shard = self.id, removed, "retention removed segments")
                }
                Err(err) => tracing::error!(shard = self.id, error = %err, "retention failed"),
            }
        }
        self.published();
    }

    fn close(&mut self) -> Result<(), String> {
        let Some(log) = self.log.take() else {
            return Ok(());
        };
        let result = log.close().map_err(|err| err.to_string());
        self.offsets.flushed.store(
            self.offsets.written.load(Ordering::Acquire),
            Ordering::Release,
        );
        result
    }
}

/// Hands each job the outcomes of its own batches, in order.
fn reply_each(
    appends: Vec<PendingAppend>,
    mut outcomes: impl Iterator<Item = BatchOutcome>,
    metrics: &ShardMetrics,
) {
    for (batches, _, reply, queued_at) in appends {
        let mine: Vec<BatchOutcome> = outcomes.by_ref().take(batches.len()).collect();
        reply.send(Ok(mine)).ok();
        metrics.record_append_latency(queued_at.elapsed());
    }
}

/// Counts the batches the log stored (not duplicates or refusals).
fn count_stored(metrics: &ShardMetrics, batches: &[Checked], outcomes: &[AppendOutcome]) {
    for (batch, outcome) in batches.iter().zip(outcomes) {
        if matches!(outcome, AppendOutcome::Appended { .. }) {
            let records = u64::from(batch.header().record_count);
            metrics.record_batch(records, batch.bytes().len() as u64);
        }
    }
}
