//! One loadgen producer: a client `Producer`, the `Recorder` it reports to,
//! and its ack collector task. Senders (paced threads in the open-loop and
//! trace scenarios, a windowed task in max throughput) call `Sender::send`,
//! which queues the event and hands its `AckFuture` to the collector. The
//! collector awaits acks in completion order, never in send order, and is
//! never blocked by a sender, so an ack's time is taken when it arrives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use surge_client::{Ack, AckFuture, ClientError, Producer};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use crate::histogram::RunClock;
use crate::stats::Recorder;
use crate::workload::EventFactory;

/// Acks handed from a sender to its collector; a sender waits beyond it.
const TRACKED_QUEUE_DEPTH: usize = 16 * 1024;

/// An event in flight: its ack, when it was meant to go, and its size.
/// Dropping it returns its window permit (max throughput).
#[derive(Debug)]
struct Tracked {
    ack: AckFuture,
    intended_us: u64,
    bytes: u64,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Future for Tracked {
    type Output = (Result<Ack, ClientError>, u64, u64);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (intended_us, bytes) = (self.intended_us, self.bytes);
        Pin::new(&mut self.ack)
            .poll(cx)
            .map(|result| (result, intended_us, bytes))
    }
}

/// The sending side of one loadgen producer. Clones share the producer.
#[derive(Debug, Clone)]
pub struct Sender {
    pub index: u32,
    producer: Arc<Producer>,
    tracked: mpsc::Sender<Tracked>,
    pub recorder: Recorder,
    pub clock: RunClock,
    /// Offset after which a send waiting for producer budget gives up.
    give_up_us: u64,
}

impl Sender {
    /// Queues the next event of `factory`, meant to be sent at
    /// `intended_us`; `permit` travels with it until its ack arrives.
    pub async fn send(
        &self,
        factory: &mut EventFactory,
        intended_us: u64,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let event = factory.next_event(self.clock.epoch_us(intended_us));
        let bytes = event.value.len() as u64;
        let started_us = self.clock.now_us();
        let give_up = self.clock.instant_at(self.give_up_us);
        let ack = match tokio::time::timeout_at(give_up.into(), self.producer.send(event)).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(error)) => return self.recorder.failed(intended_us, &error),
            Err(_) => return self.recorder.timed_out(intended_us),
        };
        self.recorder.sent(intended_us, started_us);
        let tracked = Tracked {
            ack,
            intended_us,
            bytes,
            _permit: permit,
        };
        if self.tracked.send(tracked).await.is_err() {
            // The collector is gone only if its task panicked.
            self.recorder.failed(intended_us, &ClientError::Closed);
        }
    }
}

/// What every loadgen producer of a run shares.
#[derive(Debug, Clone, Copy)]
pub struct ProducerSetup {
    /// Run offset at which the senders stop.
    pub end_us: u64,
    /// How long acks may still come after the last send.
    pub drain: Duration,
}

/// A started loadgen producer.
#[derive(Debug)]
pub struct LoadProducer {
    sender: Sender,
    collector: JoinHandle<()>,
}

impl LoadProducer {
    /// Wraps a connected client producer and starts its collector. Sends
    /// give up at `end_us + drain`; the collector waits `drain` after the
    /// last send.
    pub fn start(
        index: u32,
        producer: Producer,
        setup: &ProducerSetup,
        recorder: Recorder,
        clock: RunClock,
    ) -> LoadProducer {
        let (tracked, queue) = mpsc::channel(TRACKED_QUEUE_DEPTH);
        let collector = tokio::spawn(collect(queue, recorder.clone(), clock, setup.drain));
        let drain_us = u64::try_from(setup.drain.as_micros()).unwrap_or(u64::MAX);
        let sender = Sender {
            index,
            producer: Arc::new(producer),
            tracked,
            recorder,
            clock,
            give_up_us: setup.end_us.saturating_add(drain_us),
        };
        LoadProducer { sender, collector }
    }

    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// After every `Sender` clone is dropped: waits for the collector to
    /// drain, then closes the producer (abandoning it after `drain`).
    pub async fn finish(self, drain: Duration) {
        let LoadProducer { sender, collector } = self;
        // The collector ends when the last queue handle is gone.
        let Sender {
            producer, tracked, ..
        } = sender;
        drop(tracked);
        if let Err(error) = collector.await {
            warn(&format!("ack collector failed: {error}"));
        }
        if let Ok(producer) = Arc::try_unwrap(producer) {
            // Everything was acked or timed out already; close only flushes.
            let _ = tokio::time::timeout(drain, producer.close()).await;
        }
    }
}

/// Warnings go to stderr, beside the progress line.
fn warn(message: &str) {
    eprintln!("surge-loadgen: warning: {message}");
}

/// Records acks as they complete until the senders are done, then for at
/// most `drain`; what is still missing then counts as timed out.
async fn collect(
    mut queue: mpsc::Receiver<Tracked>,
    recorder: Recorder,
    clock: RunClock,
    drain: Duration,
) {
    let mut pending = FuturesUnordered::new();
    let record = |(result, intended_us, bytes): (Result<Ack, ClientError>, u64, u64)| match result {
        Ok(_) => recorder.acked(intended_us, clock.now_us(), bytes),
        Err(error) => recorder.failed(intended_us, &error),
    };
    loop {
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => record(done),
            tracked = queue.recv() => match tracked {
                Some(tracked) => pending.push(tracked),
                None => break,
            },
        }
    }
    let deadline = tokio::time::Instant::now() + drain;
    while !pending.is_empty() {
        match tokio::time::timeout_at(deadline, pending.next()).await {
            Ok(Some(done)) => record(done),
            Ok(None) => break,
            Err(_) => {
                for tracked in pending.iter() {
                    recorder.timed_out(tracked.intended_us);
                }
                break;
            }
        }
    }
}

/// Producer `index`'s share of a total event count.
pub fn count_share(count: Option<u64>, index: u32, producers: u32) -> u64 {
    let Some(count) = count else {
        return u64::MAX;
    };
    let producers = u64::from(producers);
    let index = u64::from(index);
    count / producers + u64::from(index < count % producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_shares_add_up() {
        let shares: Vec<u64> = (0..3)
            .map(|index| count_share(Some(10), index, 3))
            .collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!(count_share(None, 0, 3), u64::MAX);
    }
}
