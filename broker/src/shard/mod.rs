//! One shard at run time: its log, owned by a dedicated thread (the single
//! writer), a bounded job queue in front of it, and the offsets that
//! readers and waiters look at without going through the owner.
//!
//! The owner thread does group commit: it takes every queued append (up to
//! a byte bound), writes them with one write, makes them durable with one
//! fdatasync when any of them needs it, then acknowledges each producer.
//! `visible` is the end consumers may read: the flushed offset for `fsync`
//! streams (nothing is served that a crash could take back) and the written
//! offset for `write` streams.

mod forward_order;
mod histogram;
mod owner;
mod queue;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;
use surge_protocol::batch::Checked;
use surge_protocol::stream::Durability;
use surge_protocol::ErrorCode;
use tokio::sync::{oneshot, watch};

use crate::error::BrokerError;
use crate::metrics::ShardMetrics;
use crate::storage::{AppendOutcome, IoBackend, LogConfig, LogReader, ProducerState, ShardLog};

use forward_order::ForwardOrder;
pub use forward_order::ForwardTurn;
pub use histogram::KeyHistogram;
pub use queue::{Closed, JobQueue};

/// What became of one batch of an append job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Judged by the log: stored, a duplicate, or out of order.
    Log(AppendOutcome),
    /// The shard is sealed and the log had not seen the batch: it belongs
    /// to the shard's successors.
    Sealed,
}

/// What an append job is answered with: one outcome per batch.
pub type AppendReply = Result<Vec<BatchOutcome>, ErrorCode>;

/// A sealed shard's end and its idempotent-producer state at the seal,
/// which its successors inherit.
#[derive(Debug, Clone)]
pub struct SealInfo {
    pub end: u64,
    pub producers: ProducerState,
}

#[derive(Debug)]
pub(crate) enum Job {
    Append {
        batches: Vec<Checked>,
        bytes: usize,
        sync: bool,
        reply: oneshot::Sender<AppendReply>,
        /// For the append latency (enqueue to acknowledgement).
        queued_at: Instant,
    },
    /// Stop accepting appends after the ones queued before this job.
    Seal {
        done: oneshot::Sender<Result<SealInfo, String>>,
    },
    /// Undo a seal whose topology change did not commit.
    Unseal,
    Close {
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Offsets published by the owner thread for lock-free readers.
#[derive(Debug, Default)]
pub struct ShardOffsets {
    pub written: AtomicU64,
    pub flushed: AtomicU64,
    pub visible: AtomicU64,
    pub log_start: AtomicU64,
    pub size_bytes: AtomicU64,
}

/// Settings the owner thread needs besides the log itself.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    pub durability: Durability,
    pub flush_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub queue_depth: usize,
    /// Upper bound on one group commit's bytes.
    pub group_commit_max_bytes: usize,
    /// The shard's hash range, inclusive (for the key histogram).
    pub hash_range: (u64, u64),
    /// Sealed by a committed change: it never stores another batch.
    pub sealed: bool,
}

#[derive(Debug)]
pub struct Shard {
    pub id: u32,
    queue: Arc<JobQueue<Job>>,
    reader: LogReader,
    offsets: Arc<ShardOffsets>,
    durability: Durability,
    owner: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    /// Recent key hashes, for choosing split points.
    keys: KeyHistogram,
    metrics: Arc<ShardMetrics>,
    /// Set before the first seal is queued (or at open, for a shard a
    /// committed change sealed) and never cleared (a rolled-back shard keeps
    /// paying one ticket per produce): appends queued while it is clear are
    /// ahead of any seal, so they are never forwarded.
    sealing: AtomicBool,
    forwards: Arc<ForwardOrder>,
}

impl Shard {
    /// Opens (recovering) the log in `dir` and starts its owner thread.
    /// `appended` is bumped whenever the visible end moves, for long-polls.
    /// Also returns the producer state the log opened with: a sealed
    /// shard's forwards resume from its descendants' (`resume_forwards`).
    pub fn open(
        id: u32,
        dir: &Path,
        log_config: LogConfig,
        io: Arc<IoBackend>,
        settings: ShardSettings,
        appended: watch::Sender<u64>,
    ) -> Result<(Arc<Shard>, ProducerState), BrokerError> {
        let (log, report) = ShardLog::open(dir, log_config, io)?;
        tracing::debug!(shard = id, dir = %dir.display(), ?report, "shard log opened");
        let producers = log.producer_state();
        Ok((Shard::start(id, dir, log, settings, appended)?, producers))
    }

    /// For a shard opened sealed, before it takes requests: each producer's
    /// forwards continue after `forwarded`, the highest sequence of this
    /// origin any shard of the stream holds, so a batch ahead of its turn
    /// is still refused after a restart (see `forward_order`).
    pub fn resume_forwards(&self, forwarded: &ProducerState) {
        self.forwards.start_from(forwarded);
    }

    /// Starts the owner thread of a shard whose log the caller opened (a
    /// successor adopted from the pool, see `ShardLog::adopt`).
    pub(crate) fn start(
        id: u32,
        dir: &Path,
        log: ShardLog,
        settings: ShardSettings,
        appended: watch::Sender<u64>,
    ) -> Result<Arc<Shard>, BrokerError> {
        let offsets = Arc::new(ShardOffsets::default());
        owner::publish(&log, &offsets, settings.durability);
        let queue = Arc::new(JobQueue::new(settings.queue_depth));
        let reader = log.reader();
        let durability = settings.durability;
        let keys = KeyHistogram::new(settings.hash_range.0, settings.hash_range.1);
        let metrics = Arc::new(ShardMetrics::default());
        let forwards = Arc::new(ForwardOrder::default());
        let sealed = settings.sealed;
        let shared = owner::Shared {
            queue: queue.clone(),
            offsets: offsets.clone(),
            metrics: metrics.clone(),
            appended,
            forwards: forwards.clone(),
        };
        let handle = owner::spawn(id, log, shared, settings).map_err(|source| BrokerError::Io {
            op: "spawn shard owner thread",
            path: dir.to_owned(),
            source,
        })?;
        Ok(Arc::new(Shard {
            id,
            queue,
            reader,
            offsets,
            durability,
            owner: Mutex::new(Some(handle)),
            closed: AtomicBool::new(false),
            keys,
            metrics,
            sealing: AtomicBool::new(sealed),
            forwards,
        }))
    }

    /// Queues batches for append and waits for the acknowledgement the
    /// stream's durability (or a stronger `sync`) needs.
    pub async fn append(&self, batches: Vec<Checked>, sync: bool) -> AppendReply {
        let receiver = self.enqueue(batches, sync).await?;
        receiver.await.unwrap_or(Err(ErrorCode::ShuttingDown))
    }

    /// The first half of `append`: returns once the job holds its place in
    /// the shard's queue, so a caller can keep request order per connection
    /// and await the acknowledgement later.
    pub async fn enqueue(
        &self,
        batches: Vec<Checked>,
        sync: bool,
    ) -> Result<oneshot::Receiver<AppendReply>, ErrorCode> {
        let (reply, receiver) = oneshot::channel();
        let bytes = batches.iter().map(|batch| batch.bytes().len()).sum();
        let sync = sync || self.durability == Durability::Fsync;
        let job = Job::Append {
            batches,
            bytes,
            sync,
            reply,
            queued_at: Instant::now(),
        };
        self.queue
            .push(job)
            .await
            .map_err(|Closed| ErrorCode::ShuttingDown)?;
        Ok(receiver)
    }

    /// Called right after `enqueue` returns: the job's place in the order
    /// of this shard's forwards, if the shard may be sealed before the job
    /// (see `forward_order`). `None`, the common case, costs one load: the
    /// job is queued ahead of any seal (the seal sets `sealing` before it is
    /// queued, and the queue's lock orders the two), so it is not forwarded.
    pub fn forward_turn(&self) -> Option<ForwardTurn> {
        self.sealing
            .load(Ordering::Acquire)
            .then(|| self.forwards.ticket())
    }

    pub fn keys(&self) -> &KeyHistogram {
        &self.keys
    }

    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// Appends waiting for the owner thread now.
    pub fn queue_depth(&self) -> usize {
        self.queue.queued()
    }

    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// The end consumers may read up to (exclusive).
    pub fn visible_end(&self) -> u64 {
        self.offsets.visible.load(Ordering::Acquire)
    }

    pub fn log_start(&self) -> u64 {
        self.offsets.log_start.load(Ordering::Acquire)
    }

    pub fn size_bytes(&self) -> u64 {
        self.offsets.size_bytes.load(Ordering::Acquire)
    }

    pub fn written(&self) -> u64 {
        self.offsets.written.load(Ordering::Acquire)
    }

    /// Seals the shard after every append queued before this call: later
    /// appends are answered `BatchOutcome::Sealed` (or as duplicates). The
    /// data is synced first, so the end is durable.
    pub async fn seal(&self) -> Result<SealInfo, String> {
        self.sealing.store(true, Ordering::Release);
        let (done, sealed) = oneshot::channel();
        self.queue
            .push(Job::Seal { done })
            .await
            .map_err(|Closed| "the shard is closed".to_owned())?;
        sealed
            .await
            .unwrap_or_else(|_| Err("owner thread ended early".into()))
    }

    /// Reopens a shard for appends after a change that failed to commit.
    pub fn unseal(&self) {
        self.queue.push_control(Job::Unseal);
    }

    /// `close` without waiting: the owner thread finishes what is queued,
    /// closes the log and ends on its own. For shards that never served (a
    /// stream whose creation failed part-way).
    pub fn close_detached(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.queue.close();
        let (done, _) = oneshot::channel();
        self.queue.push_control(Job::Close { done });
    }

    /// Stops accepting appends, lets queued ones finish, syncs and closes the
    /// log, and joins the owner thread. Idempotent.
    pub async fn close(&self) -> Result<(), String> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.queue.close();
        let (done, finished) = oneshot::channel();
        self.queue.push_control(Job::Close { done });
        let result = finished
            .await
            .unwrap_or_else(|_| Err("owner thread ended early".into()));
        let handle = self.owner.lock().take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .ok();
        }
        result
    }
}
