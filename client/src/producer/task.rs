//! The producer task: owns every queued event, the per-shard queues and
//! sequences, the batches in flight per shard (their sends polled here and
//! handled in `sends`), and the routing and lineage caches. It settles
//! events (returning their budget, resolving their `AckFuture`s, gathering
//! tagged outcomes) and hands what settled over once per wake-up, so the
//! costs of a wake-up are shared by every event it handled.

mod sends;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};

use surge_protocol::batch::{BatchBuilder, BATCH_HEADER_BYTES};
use surge_protocol::stream::StreamMetadata;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::window::{InFlight, ShardQueue, State};
use super::{Ack, Command, Completion, Delivery, Queued};
use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::ClientError;
use crate::lineage::Lineage;
use crate::router::Router;
use crate::sender::Verdict;

/// Commands taken from the queue per wake-up before batches are cut.
const COMMANDS_PER_WAKE: usize = 512;
/// Most events a batch's list reserves room for up front (a batch of small
/// events may hold more, and grows past it).
const EVENTS_RESERVED_MAX: usize = 1024;

/// One batch being sent (with its retries): its shard, its id in the
/// shard's window, and how it ended. The task polls these itself rather
/// than spawning one task per batch: a verdict then costs no extra task
/// wake-up.
type BatchSend = Pin<Box<dyn Future<Output = (u32, u64, Verdict)> + Send>>;

/// The state the producer task owns alone.
#[derive(Debug)]
pub(super) struct ProducerTask {
    client: Client,
    producer_id: u64,
    stream: String,
    config: ProducerConfig,
    router: Router,
    /// Parents of every known shard, to hold children back.
    lineage: Lineage,
    /// `lineage.ancestors` of every shard that has any, computed when the
    /// lineage changes rather than on every dispatch.
    ancestors: HashMap<u32, Vec<u32>>,
    shards: BTreeMap<u32, ShardQueue>,
    sending: FuturesUnordered<BatchSend>,
    /// The id of the next batch cut.
    next_batch_id: u64,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// Set while a flush waits: batches go out without lingering.
    draining: bool,
    budget: Arc<Semaphore>,
    /// Budget of events settled since the last hand-over.
    settled_budget: usize,
    deliveries: Option<mpsc::Sender<Vec<Delivery>>>,
    /// Tagged outcomes settled since the last hand-over.
    delivered: Vec<Delivery>,
}

impl ProducerTask {
    pub(super) fn new(
        client: Client,
        stream: &str,
        meta: &StreamMetadata,
        config: ProducerConfig,
        budget: Arc<Semaphore>,
        deliveries: Option<mpsc::Sender<Vec<Delivery>>>,
    ) -> ProducerTask {
        let mut task = ProducerTask {
            producer_id: client.new_producer_id(),
            client,
            stream: stream.to_owned(),
            router: Router::new(meta),
            lineage: Lineage::new(meta),
            ancestors: HashMap::new(),
            config,
            shards: BTreeMap::new(),
            sending: FuturesUnordered::new(),
            next_batch_id: 0,
            flush_waiters: Vec::new(),
            draining: false,
            budget,
            settled_budget: 0,
            deliveries,
            delivered: Vec::new(),
        };
        task.cache_ancestors();
        task
    }

    pub(super) async fn run(
        mut self,
        mut queue: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut commands = Vec::with_capacity(COMMANDS_PER_WAKE);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((shard_id, id, verdict)) = self.sending.next(), if !self.sending.is_empty() => {
                    self.on_verdict(shard_id, id, verdict).await;
                }
                received = queue.recv_many(&mut commands, COMMANDS_PER_WAKE) => {
                    if received == 0 {
                        break;
                    }
                    for command in commands.drain(..) {
                        match command {
                            Command::Send(queued) => self.enqueue(queued),
                            Command::Flush(done) => {
                                self.flush_waiters.push(done);
                                self.draining = true;
                            }
                        }
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {}
            }
            self.dispatch(Instant::now());
            self.hand_over(&shutdown).await;
            self.notify_flushed();
        }
        self.abandon();
    }

    fn enqueue(&mut self, queued: Queued) {
        let Some(shard_id) = self.router.route(self.router.routing_value(&queued.event)) else {
            let stream = self.stream.clone();
            self.settle(queued, Err(ClientError::NoOpenShard { stream }));
            return;
        };
        let shard = self.shards.entry(shard_id).or_default();
        shard.pending_bytes += queued.size;
        shard.pending.push_back(queued);
    }

    /// Returns the event's budget and resolves it, or keeps its tagged
    /// outcome for the next hand-over.
    fn settle(&mut self, queued: Queued, result: Result<Ack, ClientError>) {
        self.settled_budget += queued.budget as usize;
        match queued.completion {
            Completion::Future(ack) => {
                let _ = ack.send(result);
            }
            Completion::Tagged(tag) => self.delivered.push(Delivery { tag, result }),
        }
    }

    /// Gives back the budget of what settled and delivers tagged outcomes.
    async fn hand_over(&mut self, shutdown: &CancellationToken) {
        if self.settled_budget > 0 {
            self.budget
                .add_permits(std::mem::take(&mut self.settled_budget));
        }
        if self.delivered.is_empty() {
            return;
        }
        let delivered = std::mem::take(&mut self.delivered);
        if let Some(deliveries) = &self.deliveries {
            tokio::select! {
                // A dropped `Deliveries` only means nobody wants them.
                _ = deliveries.send(delivered) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    fn cache_ancestors(&mut self) {
        self.ancestors = self
            .lineage
            .shard_ids()
            .map(|shard_id| (shard_id, Vec::from_iter(self.lineage.ancestors(shard_id))))
            .filter(|(_, ancestors)| !ancestors.is_empty())
            .collect();
    }

    /// Whether an ancestor of the shard still has a batch in flight or
    /// events queued: those are older than anything queued here.
    fn blocked(&self, shard_id: u32) -> bool {
        let Some(ancestors) = self.ancestors.get(&shard_id) else {
            return false;
        };
        ancestors.iter().any(|ancestor| {
            self.shards
                .get(ancestor)
                .is_some_and(|queue| !queue.window.is_empty() || !queue.pending.is_empty())
        })
    }

    /// The earliest linger deadline among shards that could send now.
    fn next_deadline(&self) -> Option<Instant> {
        let max_in_flight = self.config.max_in_flight_per_shard;
        self.shards
            .iter()
            .filter(|(_, shard)| shard.can_send(max_in_flight))
            .filter(|(&shard_id, _)| !self.blocked(shard_id))
            .filter_map(|(_, shard)| shard.pending.front())
            .map(|front| front.enqueued + self.config.linger)
            .chain(self.shards.values().filter_map(|shard| shard.resume_at))
            .min()
    }

    /// Whether a shard has room in its window and a batch worth cutting:
    /// full, lingered out, or draining.
    fn ready(&self, shard_id: u32, now: Instant) -> bool {
        let Some(shard) = self.shards.get(&shard_id) else {
            return false;
        };
        // A sealed shard's window drains first; then what waits is re-routed.
        shard.can_send(self.config.max_in_flight_per_shard)
            && self.router.is_open(shard_id)
            && !self.blocked(shard_id)
            && shard.pending.front().is_some_and(|front| {
                self.draining
                    || shard.pending_bytes + BATCH_HEADER_BYTES >= self.config.max_batch_bytes
                    || front.enqueued + self.config.linger <= now
            })
    }

    /// Re-routes what waits on shards no longer open, then cuts and sends
    /// batches for every shard that is ready, while its window has room.
    fn dispatch(&mut self, now: Instant) {
        self.reroute_closed_shards();
        let resuming: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, shard)| shard.resume_at.is_some_and(|at| at <= now))
            .map(|(&shard_id, _)| shard_id)
            .collect();
        for shard_id in resuming {
            self.resume(shard_id);
        }
        let shard_ids: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, shard)| !shard.pending.is_empty())
            .map(|(&shard_id, _)| shard_id)
            .collect();
        for shard_id in shard_ids {
            // Bounded by the window: each cut fills one place of it.
            while self.ready(shard_id, now) {
                self.cut(shard_id);
            }
        }
    }

    fn reroute_closed_shards(&mut self) {
        let closed: Vec<u32> = self
            .shards
            .iter()
            .filter(|(shard_id, shard)| {
                shard.window.is_empty()
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
                    self.settle(queued, Err(ClientError::NoOpenShard { stream }));
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
        let producer_id = shard.fresh_producer_id.unwrap_or(self.producer_id);
        // Room for all that waits, up to a full batch: the buffer never grows.
        let capacity = (shard.pending_bytes + BATCH_HEADER_BYTES).min(max_batch_bytes);
        let mut builder =
            BatchBuilder::with_capacity(shard_id, producer_id, base_sequence, capacity);
        let mut events = Vec::with_capacity(shard.pending.len().min(EVENTS_RESERVED_MAX));
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
            builder.push(
                queued.timestamp_ms,
                queued.event.key.as_deref(),
                &queued.event.value,
                &queued.event.header_refs(),
            );
            shard.pending_bytes -= queued.size;
            events.push(queued);
        }
        shard.next_sequence += events.len() as u64;
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        shard.window.push_back(InFlight {
            id,
            base_sequence,
            batch: builder.finish(),
            events,
            state: State::Sending,
            resends: 0,
        });
        self.router.batch_cut(shard_id);
        self.start_send(shard_id, id);
    }

    async fn refresh(&mut self) {
        match self.client.metadata(&self.stream).await {
            Ok(meta) => {
                self.router.update(&meta);
                self.lineage.update(&meta);
                self.cache_ancestors();
            }
            Err(error) => tracing::warn!(stream = %self.stream, %error, "metadata refresh failed"),
        }
    }

    fn notify_flushed(&mut self) {
        let idle = self
            .shards
            .values()
            .all(|shard| shard.pending.is_empty() && shard.window.is_empty());
        if idle && self.draining {
            self.draining = false;
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Fails everything still queued or in flight. Tagged outcomes that do
    /// not fit the delivery queue now are dropped with it.
    fn abandon(&mut self) {
        self.sending.clear();
        let mut abandoned = Vec::new();
        for shard in self.shards.values_mut() {
            let in_flight = shard.window.drain(..).flat_map(|batch| batch.events);
            abandoned.extend(in_flight.chain(shard.pending.drain(..)));
        }
        for queued in abandoned {
            self.settle(queued, Err(ClientError::Closed));
        }
        self.budget
            .add_permits(std::mem::take(&mut self.settled_budget));
        if let Some(deliveries) = &self.deliveries {
            let delivered = std::mem::take(&mut self.delivered);
            if !delivered.is_empty() {
                let _ = deliveries.try_send(delivered);
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
