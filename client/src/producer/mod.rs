//! `Producer`: batching, idempotent appends to one stream. This module is
//! the public face (sending, acknowledgements, flush, close); the producer
//! task in `task` holds every queued event, cuts batches per shard (full,
//! or lingered long enough), keeps up to `max_in_flight_per_shard` batches
//! in flight per shard, resolves each event, and refreshes routing when the
//! broker reports a newer epoch. `send` only queues: thousands of events
//! can be in flight, bounded by `max_in_flight_bytes` of budget.
//!
//! Acknowledgements come one of two ways. `send` returns an `AckFuture` per
//! event (a oneshot each). `send_tagged`, on a producer made by
//! `with_deliveries`, takes a caller's tag instead and hands the outcomes of
//! a whole batch over at once through `Deliveries`: no per-event channel,
//! task wake-up or future, which is what a high-rate caller wants.
//!
//! Batches of a shard carry consecutive sequences, are sent in sequence
//! order on one connection, and the broker appends them in arrival order,
//! forwarding those that reach a sealed shard in arrival order too; so a
//! window of batches in flight keeps per-key order, and a failure is
//! recovered by sending the window again in order (`window`). With several
//! in flight an event waits for one fsync, not for the one before its own.
//!
//! Across splits and merges (seal-and-succeed) per-key order needs one more
//! rule: a shard gets no batch while any of its ancestors (from metadata)
//! has a batch in flight or events waiting, because those hold the older
//! events of its keys. Events for the child wait in its queue; events left
//! on a sealed shard are re-routed ahead of them.

mod task;
mod window;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use surge_protocol::batch::BATCH_HEADER_BYTES;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::ClientError;
use crate::event::Event;
use task::ProducerTask;

/// Commands queued for the producer task; `send` waits beyond it.
const COMMAND_QUEUE_DEPTH: usize = 4096;
/// Batches of outcomes queued for `Deliveries`; the producer task waits
/// beyond it, so a caller that stops reading them stops the producer.
const DELIVERY_QUEUE_DEPTH: usize = 1024;

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

/// The outcome of one event sent with `send_tagged`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The tag given to `send_tagged`.
    pub tag: u64,
    pub result: Result<Ack, ClientError>,
}

/// Outcomes of tagged events, handed over as each batch settles (in the
/// order of the batch's events). Read it continuously: when
/// `DELIVERY_QUEUE_DEPTH` batches wait unread, the producer stops.
#[derive(Debug)]
pub struct Deliveries {
    receiver: mpsc::Receiver<Vec<Delivery>>,
}

impl Deliveries {
    /// The next batch of outcomes; `None` once the producer is gone and
    /// everything was delivered.
    pub async fn recv(&mut self) -> Option<Vec<Delivery>> {
        self.receiver.recv().await
    }
}

/// Where one event's outcome goes.
#[derive(Debug)]
enum Completion {
    /// `send`: the event's own `AckFuture`.
    Future(oneshot::Sender<Result<Ack, ClientError>>),
    /// `send_tagged`: gathered per batch into `Deliveries`.
    Tagged(u64),
}

/// One event waiting for its batch. `budget` bytes of the in-flight budget
/// are returned when it settles.
#[derive(Debug)]
struct Queued {
    event: Event,
    timestamp_ms: i64,
    size: usize,
    budget: u32,
    enqueued: Instant,
    reroutes: u8,
    completion: Completion,
}

#[expect(
    clippy::large_enum_variant,
    reason = "nearly every command is a Send: boxing its event would cost the allocation per event that inline headers avoid"
)]
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
    /// Whether `send_tagged` has somewhere to deliver to.
    tagged: bool,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// Loads the stream's routing and starts the producer task.
    pub async fn new(
        client: Client,
        stream: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        Producer::start(client, stream, config, None).await
    }

    /// A producer whose `send_tagged` outcomes arrive, a batch at a time,
    /// through the returned `Deliveries`. `send` works on it too.
    pub async fn with_deliveries(
        client: Client,
        stream: &str,
        config: ProducerConfig,
    ) -> Result<(Producer, Deliveries), ClientError> {
        let (sender, receiver) = mpsc::channel(DELIVERY_QUEUE_DEPTH);
        let producer = Producer::start(client, stream, config, Some(sender)).await?;
        Ok((producer, Deliveries { receiver }))
    }

    async fn start(
        client: Client,
        stream: &str,
        mut config: ProducerConfig,
        deliveries: Option<mpsc::Sender<Vec<Delivery>>>,
    ) -> Result<Producer, ClientError> {
        let meta = client.metadata(stream).await?;
        let broker_max = client.max_batch_bytes();
        if broker_max > 0 {
            config.max_batch_bytes = config.max_batch_bytes.min(broker_max);
        }
        config.max_in_flight_per_shard = config.max_in_flight_per_shard.max(1);
        let max_record_bytes = config.max_batch_bytes.saturating_sub(BATCH_HEADER_BYTES);
        let budget_bytes = config
            .max_in_flight_bytes
            .clamp(1, u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        let budget = Arc::new(Semaphore::new(budget_bytes));
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE_DEPTH);
        let shutdown = CancellationToken::new();
        let tagged = deliveries.is_some();
        let state = ProducerTask::new(
            client,
            stream,
            &meta,
            config,
            Arc::clone(&budget),
            deliveries,
        );
        let task = tokio::spawn(state.run(queue, shutdown.clone()));
        Ok(Producer {
            commands,
            budget,
            budget_bytes,
            max_record_bytes,
            tagged,
            shutdown,
            task: Some(task),
        })
    }

    /// Queues an event, waiting only while `max_in_flight_bytes` are
    /// buffered. The returned future resolves with the event's offset.
    pub async fn send(&self, event: Event) -> Result<AckFuture, ClientError> {
        let (ack, receiver) = oneshot::channel();
        self.enqueue(event, Completion::Future(ack)).await?;
        Ok(AckFuture { receiver })
    }

    /// Queues an event like `send`; its outcome arrives with `tag` through
    /// the `Deliveries` of `with_deliveries`, together with the rest of its
    /// batch. An error returned here means the event was not queued and
    /// nothing will be delivered for it. A producer made by `new` has no
    /// `Deliveries`: `NoDeliveries`.
    pub async fn send_tagged(&self, event: Event, tag: u64) -> Result<(), ClientError> {
        if !self.tagged {
            return Err(ClientError::NoDeliveries);
        }
        self.enqueue(event, Completion::Tagged(tag)).await
    }

    async fn enqueue(&self, event: Event, completion: Completion) -> Result<(), ClientError> {
        let size = event.record_bytes();
        if size > self.max_record_bytes {
            return Err(ClientError::EventTooLarge {
                size,
                max: self.max_record_bytes,
            });
        }
        let budget = u32::try_from(size.min(self.budget_bytes)).unwrap_or(u32::MAX);
        // The task returns the budget a whole batch at a time, not per event.
        self.budget
            .acquire_many(budget)
            .await
            .map_err(|_| ClientError::Closed)?
            .forget();
        let queued = Queued {
            timestamp_ms: event.timestamp_ms.unwrap_or_else(now_ms),
            event,
            size,
            budget,
            enqueued: Instant::now(),
            reroutes: 0,
            completion,
        };
        if self.commands.send(Command::Send(queued)).await.is_err() {
            self.budget.add_permits(budget as usize);
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Sends everything queued now, without waiting for linger, and waits
    /// until it is acknowledged or failed (failures go to the `AckFuture`s
    /// and `Deliveries`).
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
