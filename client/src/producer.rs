//! `Producer`: batching, idempotent appends to one stream. Owns the
//! producer task, which holds every queued event, cuts batches per shard
//! (full, or lingered long enough), keeps at most one batch in flight per
//! shard (so per-key order holds and a retry is the same bytes), resolves
//! each event's `AckFuture`, and refreshes routing when the broker reports a
//! newer epoch. `send` only queues: thousands of events can be in flight,
//! bounded by `max_in_flight_bytes` of budget.
//!
//! Across splits and merges (seal-and-succeed) per-key order needs one more
//! rule: a shard gets no batch while any of its ancestors (from metadata)
//! has a batch in flight or events waiting, because those hold the older
//! events of its keys. Events for the child wait in its queue; events left
//! on a sealed shard are re-routed ahead of them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use surge_protocol::batch::{BatchBuilder, BATCH_HEADER_BYTES};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::ClientError;
use crate::event::Event;
use crate::lineage::Lineage;
use crate::router::Router;
use crate::sender::{send_batch, BatchJob, Verdict};

/// Commands queued for the producer task; `send` waits beyond it.
const COMMAND_QUEUE_DEPTH: usize = 4096;
/// Times one event may be re-routed after sealed or unknown shards.
const REROUTES_MAX: u8 = 3;

/// Where an acknowledged event was stored. After a split or merge the shard
/// may be a successor of the one the event was sent to (the broker forwarded
/// it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub shard_id: u32,
    /// The event's offset in `shard_id`, or `u64::MAX` when the broker
    /// recognised a retry of a forwarded batch but no longer knows where
    /// that record went: it is stored exactly once, position unknown.
    pub offset: u64,
}

/// Resolves when the broker acknowledged (or the producer gave up on) one
/// event. Dropping it does not cancel the send.
#[derive(Debug)]
pub struct AckFuture {
    receiver: oneshot::Receiver<Result<Ack, ClientError>>,
}

impl Future for AckFuture {
    type Output = Result<Ack, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(ClientError::Closed)))
    }
}

/// One event waiting for its batch, holding its share of the byte budget.
#[derive(Debug)]
struct Queued {
    event: Event,
    timestamp_ms: i64,
    size: usize,
    enqueued: Instant,
    reroutes: u8,
    ack: oneshot::Sender<Result<Ack, ClientError>>,
    _budget: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Command {
    Send(Queued),
    Flush(oneshot::Sender<()>),
}

/// Batching, idempotent producer for one stream.
#[derive(Debug)]
pub struct Producer {
    commands: mpsc::Sender<Command>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    max_record_bytes: usize,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// Loads the stream's routing and starts the producer task.
    pub async fn new(
        client: Client,
        stream: &str,
        mut config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        let meta = client.metadata(stream).await?;
        let broker_max = client.max_batch_bytes();
        if broker_max > 0 {
            config.max_batch_bytes = config.max_batch_bytes.min(broker_max);
        }
        let max_record_bytes = config.max_batch_bytes.saturating_sub(BATCH_HEADER_BYTES);
        let budget_bytes = config
            .max_in_flight_bytes
            .clamp(1, u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE_DEPTH);
        let shutdown = CancellationToken::new();
        let state = ProducerTask {
            producer_id: client.new_producer_id(),
            client,
            stream: stream.to_owned(),
            router: Router::new(&meta),
            lineage: Lineage::new(&meta),
            config,
            shards: BTreeMap::new(),
            tasks: JoinSet::new(),
            task_shards: HashMap::new(),
            flush_waiters: Vec::new(),
            draining: false,
        };
        let task = tokio::spawn(state.run(queue, shutdown.clone()));
        Ok(Producer {
            commands,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            max_record_bytes,
            shutdown,
            task: Some(task),
        })
    }

    /// Queues an event, waiting only while `max_in_flight_bytes` are
    /// buffered. The returned future resolves with the event's offset.
    pub async fn send(&self, event: Event) -> Result<AckFuture, ClientError> {
        let size = event.record_bytes();
        if size > self.max_record_bytes {
            return Err(ClientError::EventTooLarge {
                size,
                max: self.max_record_bytes,
            });
        }
        let permits = u32::try_from(size.min(self.budget_bytes)).unwrap_or(u32::MAX);
        let budget = Arc::clone(&self.budget)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::Closed)?;
        let (ack, receiver) = oneshot::channel();
        let queued = Queued {
            timestamp_ms: event.timestamp_ms.unwrap_or_else(now_ms),
            event,
            size,
            enqueued: Instant::now(),
            reroutes: 0,
            ack,
            _budget: budget,
        };
        self.commands
            .send(Command::Send(queued))
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(AckFuture { receiver })
    }

    /// Sends everything queued now, without waiting for linger, and waits
    /// until it is acknowledged or failed (failures go to the `AckFuture`s).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, waiter) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .await
            .map_err(|_| ClientError::Closed)?;
        waiter.await.map_err(|_| ClientError::Closed)
    }

    /// Flushes, then stops the producer task.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let flushed = self.flush().await;
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|error| ClientError::Protocol(format!("producer task failed: {error}")))?;
        }
        flushed
    }
}

impl Drop for Producer {
    /// Dropping without `close` abandons what is queued: its acks fail.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Events of one shard: the queue, the idempotence sequence, and the one
/// batch that may be in flight.
#[derive(Debug, Default)]
struct ShardQueue {
    pending: VecDeque<Queued>,
    pending_bytes: usize,
    next_sequence: u64,
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
struct InFlight {
    base_sequence: u64,
    events: Vec<Queued>,
}

/// The state the producer task owns alone.
#[derive(Debug)]
struct ProducerTask {
    client: Client,
    producer_id: u64,
    stream: String,
    config: ProducerConfig,
    router: Router,
    /// Parents of every known shard, to hold children back.
    lineage: Lineage,
    shards: BTreeMap<u32, ShardQueue>,
    tasks: JoinSet<Verdict>,
    task_shards: HashMap<Id, u32>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// Set while a flush waits: batches go out without lingering.
    draining: bool,
}

impl ProducerTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let (id, verdict) = match joined {
                        Ok((id, verdict)) => (id, verdict),
                        Err(error) => (error.id(), Verdict::Failed(ClientError::Protocol(
                            format!("batch task failed: {error}"),
                        ))),
                    };
                    self.on_verdict(id, verdict).await;
                }
                command = queue.recv() => match command {
                    Some(Command::Send(queued)) => self.enqueue(queued),
                    Some(Command::Flush(done)) => {
                        self.flush_waiters.push(done);
                        self.draining = true;
                    }
                    None => break,
                },
                () = sleep_until(deadline), if deadline.is_some() => {}
            }
            self.dispatch(Instant::now());
            self.notify_flushed();
        }
        self.abandon();
    }

    fn enqueue(&mut self, queued: Queued) {
        let Some(shard_id) = self.router.route(self.router.routing_value(&queued.event)) else {
            let stream = self.stream.clone();
            let _ = queued.ack.send(Err(ClientError::NoOpenShard { stream }));
            return;
        };
        let shard = self.shards.entry(shard_id).or_default();
        shard.pending_bytes += queued.size;
        shard.pending.push_back(queued);
    }

    /// Whether an ancestor of the shard still has a batch in flight or
    /// events queued: those are older than anything queued here.
    fn blocked(&self, shard_id: u32) -> bool {
        self.lineage
            .ancestors(shard_id)
            .into_iter()
            .any(|ancestor| {
                self.shards
                    .get(&ancestor)
                    .is_some_and(|queue| queue.in_flight.is_some() || !queue.pending.is_empty())
            })
    }

    /// The earliest linger deadline among shards that could send now.
    fn next_deadline(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter(|(_, shard)| shard.in_flight.is_none())
            .filter(|(&shard_id, _)| !self.blocked(shard_id))
            .filter_map(|(_, shard)| shard.pending.front())
            .map(|front| front.enqueued + self.config.linger)
            .min()
    }

    /// Re-routes what waits on shards no longer open, then cuts and sends a
    /// batch for every idle shard that is full, lingered out, or draining.
    fn dispatch(&mut self, now: Instant) {
        self.reroute_closed_shards();
        let ready: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, shard)| shard.in_flight.is_none())
            .filter(|(&shard_id, _)| !self.blocked(shard_id))
            .filter(|(_, shard)| {
                shard.pending.front().is_some_and(|front| {
                    self.draining
                        || shard.pending_bytes + BATCH_HEADER_BYTES >= self.config.max_batch_bytes
                        || front.enqueued + self.config.linger <= now
                })
            })
            .map(|(&shard_id, _)| shard_id)
            .collect();
        for shard_id in ready {
            self.cut(shard_id);
        }
    }

    fn reroute_closed_shards(&mut self) {
        let closed: Vec<u32> = self
            .shards
            .iter()
            .filter(|(shard_id, shard)| {
                shard.in_flight.is_none()
                    && !shard.pending.is_empty()
                    && !self.router.is_open(**shard_id)
            })
            .map(|(&shard_id, _)| shard_id)
            .collect();
        for shard_id in closed {
            let Some(shard) = self.shards.get_mut(&shard_id) else {
                continue;
            };
            let moved = std::mem::take(&mut shard.pending);
            shard.pending_bytes = 0;
            self.requeue_ahead(moved);
        }
    }

    /// Routes events again and puts them ahead of what their new shards
    /// already hold: they were sent earlier, so per key they come first.
    fn requeue_ahead(&mut self, moved: VecDeque<Queued>) {
        let mut by_shard: BTreeMap<u32, Vec<Queued>> = BTreeMap::new();
        for queued in moved {
            match self.router.route(self.router.routing_value(&queued.event)) {
                Some(shard_id) => by_shard.entry(shard_id).or_default().push(queued),
                None => {
                    let stream = self.stream.clone();
                    let _ = queued.ack.send(Err(ClientError::NoOpenShard { stream }));
                }
            }
        }
        for (shard_id, events) in by_shard {
            let shard = self.shards.entry(shard_id).or_default();
            for queued in events.into_iter().rev() {
                shard.pending_bytes += queued.size;
                shard.pending.push_front(queued);
            }
        }
    }

    /// Builds the next batch of one shard and starts sending it.
    fn cut(&mut self, shard_id: u32) {
        let max_batch_bytes = self.config.max_batch_bytes;
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        let base_sequence = shard.next_sequence;
        let mut builder = BatchBuilder::new(shard_id, self.producer_id, base_sequence);
        let mut events = Vec::new();
        let mut first_ms = None;
        while let Some(front) = shard.pending.front() {
            let first = *first_ms.get_or_insert(front.timestamp_ms);
            let fits = builder.size() + front.size <= max_batch_bytes
                && i32::try_from(front.timestamp_ms.saturating_sub(first)).is_ok();
            if !events.is_empty() && !fits {
                break;
            }
            let Some(queued) = shard.pending.pop_front() else {
                break;
            };
            let headers = queued.event.header_refs();
            builder.push(
                queued.timestamp_ms,
                queued.event.key.as_deref(),
                &queued.event.value,
                &headers,
            );
            shard.pending_bytes -= queued.size;
            events.push(queued);
        }
        shard.next_sequence += events.len() as u64;
        shard.in_flight = Some(InFlight {
            base_sequence,
            events,
        });
        self.router.batch_cut(shard_id);
        let job = BatchJob {
            client: self.client.clone(),
            stream: self.stream.clone(),
            shard_id,
            batch: builder.finish(),
            acks: self.config.acks,
            timeout: self.config.request_timeout,
            retries: self.config.retries,
            retry_backoff: self.config.retry_backoff,
        };
        let handle = self.tasks.spawn(send_batch(job));
        self.task_shards.insert(handle.id(), shard_id);
    }

    async fn on_verdict(&mut self, id: Id, verdict: Verdict) {
        let Some(shard_id) = self.task_shards.remove(&id) else {
            return;
        };
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        let Some(batch) = shard.in_flight.take() else {
            return;
        };
        match verdict {
            Verdict::Acked { acks, epoch } => {
                assert_eq!(
                    acks.len(),
                    batch.events.len(),
                    "the sender checked one ack per record"
                );
                for (queued, ack) in batch.events.into_iter().zip(acks) {
                    let _ = queued.ack.send(Ok(ack));
                }
                if epoch > self.router.epoch() {
                    self.refresh().await;
                }
            }
            Verdict::Reroute(error) => {
                // Not stored: the sequence is free again for the re-routed batch.
                shard.next_sequence = batch.base_sequence;
                for queued in batch.events.into_iter().rev() {
                    if queued.reroutes >= REROUTES_MAX {
                        let _ = queued.ack.send(Err(error.clone()));
                        continue;
                    }
                    shard.pending_bytes += queued.size;
                    shard.pending.push_front(Queued {
                        reroutes: queued.reroutes + 1,
                        ..queued
                    });
                }
                self.refresh().await;
            }
            Verdict::Failed(error) => {
                // A broker rejection stored nothing; after an ambiguous failure
                // (timeouts, disconnects) the sequence stays used.
                if error.code().is_some() {
                    shard.next_sequence = batch.base_sequence;
                }
                for queued in batch.events {
                    let _ = queued.ack.send(Err(error.clone()));
                }
            }
        }
    }

    async fn refresh(&mut self) {
        match self.client.metadata(&self.stream).await {
            Ok(meta) => {
                self.router.update(&meta);
                self.lineage.update(&meta);
            }
            Err(error) => tracing::warn!(stream = %self.stream, %error, "metadata refresh failed"),
        }
    }

    fn notify_flushed(&mut self) {
        let idle = self
            .shards
            .values()
            .all(|shard| shard.pending.is_empty() && shard.in_flight.is_none());
        if idle && self.draining {
            self.draining = false;
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Fails everything still queued or in flight.
    fn abandon(&mut self) {
        self.tasks.abort_all();
        for shard in self.shards.values_mut() {
            let in_flight = shard.in_flight.take().into_iter().flat_map(|b| b.events);
            for queued in in_flight.chain(shard.pending.drain(..)) {
                let _ = queued.ack.send(Err(ClientError::Closed));
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
