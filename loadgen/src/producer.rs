//! One loadgen producer: a client `Producer` made with `Deliveries`, the
//! `Recorder` it reports to, and its collector task. Senders (paced threads
//! in the open-loop and trace scenarios, a windowed task in max throughput)
//! call `Sender::send`, which queues the event with a tag that carries its
//! intended time and size. The collector takes the outcomes a batch at a
//! time as the producer settles them and is never blocked by a sender, so
//! an ack's time is taken when it arrives; nothing is allocated, tracked or
//! woken per event between the two.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use surge_client::{Deliveries, Delivery, Producer};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::histogram::RunClock;
use crate::stats::Recorder;
use crate::workload::{EventFactory, EVENT_BYTES_MAX};

/// Low bits of a tag: the event's value bytes; the rest: its intended time.
const TAG_BYTES_BITS: u32 = 23;
const TAG_BYTES_MASK: u64 = (1 << TAG_BYTES_BITS) - 1;
const _: () = assert!(EVENT_BYTES_MAX <= TAG_BYTES_MASK);

/// An event's tag: intended time (µs from the run's start) and size. Runs
/// are bounded far below the 2^41 µs (25 days) the time keeps.
fn tag(intended_us: u64, bytes: u64) -> u64 {
    assert!(bytes <= TAG_BYTES_MASK, "event sizes are validated");
    (intended_us << TAG_BYTES_BITS) | bytes
}

/// `(intended_us, bytes)` of a tag.
fn untag(tag: u64) -> (u64, u64) {
    (tag >> TAG_BYTES_BITS, tag & TAG_BYTES_MASK)
}

/// What a producer's senders and its collector share.
#[derive(Debug)]
struct Shared {
    /// Events queued and not settled yet: warmup, measured.
    outstanding: [AtomicU64; 2],
    /// Max throughput: a slot per unacknowledged event; the collector
    /// frees the slots of each batch of outcomes.
    window: Option<Semaphore>,
}

impl Shared {
    fn outstanding(&self, measured: bool) -> &AtomicU64 {
        &self.outstanding[usize::from(measured)]
    }
}

/// The sending side of one loadgen producer. Clones share the producer.
#[derive(Debug, Clone)]
pub struct Sender {
    pub index: u32,
    producer: Arc<Producer>,
    shared: Arc<Shared>,
    pub recorder: Recorder,
    pub clock: RunClock,
    /// Offset after which a send waiting for producer budget gives up.
    give_up_us: u64,
}

impl Sender {
    /// Max throughput: waits for a free slot of the window, which the event
    /// sent next holds until its outcome arrives. Without a window: at once.
    pub async fn reserve(&self) {
        if let Some(window) = &self.shared.window {
            window
                .acquire()
                .await
                .expect("the window semaphore is never closed")
                .forget();
        }
    }

    /// Gives back a slot taken by `reserve` for an event that was not sent.
    fn release(&self) {
        if let Some(window) = &self.shared.window {
            window.add_permits(1);
        }
    }

    /// Queues the next event of `factory`, meant to be sent at
    /// `intended_us` (after `reserve` in max throughput).
    pub async fn send(&self, factory: &mut EventFactory, intended_us: u64) {
        let event = factory.next_event(self.clock.epoch_us(intended_us));
        let bytes = event.value.len() as u64;
        let started_us = self.clock.now_us();
        let give_up = self.clock.instant_at(self.give_up_us);
        let measured = self.recorder.is_measured(intended_us);
        // Counted before the send: its outcome may arrive before it returns.
        let outstanding = self.shared.outstanding(measured);
        outstanding.fetch_add(1, Ordering::Relaxed);
        let queued = self.producer.send_tagged(event, tag(intended_us, bytes));
        tokio::pin!(queued);
        // Almost every send is queued at once: a timer is armed only for
        // one that has to wait for the producer's budget.
        let first = std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx))).await;
        let outcome = match first {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => tokio::time::timeout_at(give_up.into(), queued).await,
        };
        let failure = match outcome {
            Ok(Ok(())) => return self.recorder.sent(intended_us, started_us),
            Ok(Err(error)) => Some(error),
            Err(_) => None,
        };
        outstanding.fetch_sub(1, Ordering::Relaxed);
        self.release();
        match failure {
            Some(error) => self.recorder.failed(intended_us, &error),
            None => self.recorder.timed_out(intended_us),
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
    /// Max throughput: unacknowledged events per producer.
    pub window: Option<u32>,
}

/// A started loadgen producer.
#[derive(Debug)]
pub struct LoadProducer {
    sender: Sender,
    senders_done: CancellationToken,
    collector: JoinHandle<()>,
}

impl LoadProducer {
    /// Wraps a connected client producer and starts its collector. Sends
    /// give up at `end_us + drain`; the collector waits `drain` after the
    /// last send.
    pub fn start(
        index: u32,
        (producer, deliveries): (Producer, Deliveries),
        setup: &ProducerSetup,
        recorder: Recorder,
        clock: RunClock,
    ) -> LoadProducer {
        let shared = Arc::new(Shared {
            outstanding: [AtomicU64::new(0), AtomicU64::new(0)],
            window: setup.window.map(|window| Semaphore::new(window as usize)),
        });
        let senders_done = CancellationToken::new();
        let collector = Collector {
            shared: Arc::clone(&shared),
            recorder: recorder.clone(),
            clock,
            drain: setup.drain,
        };
        let collector = tokio::spawn(collector.run(deliveries, senders_done.clone()));
        let drain_us = u64::try_from(setup.drain.as_micros()).unwrap_or(u64::MAX);
        let sender = Sender {
            index,
            producer: Arc::new(producer),
            shared,
            recorder,
            clock,
            give_up_us: setup.end_us.saturating_add(drain_us),
        };
        LoadProducer {
            sender,
            senders_done,
            collector,
        }
    }

    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// After every other `Sender` clone is dropped: waits for the collector
    /// to drain, then closes the producer (abandoning it after `drain`).
    pub async fn finish(self, drain: Duration) {
        let LoadProducer {
            sender,
            senders_done,
            collector,
        } = self;
        senders_done.cancel();
        if let Err(error) = collector.await {
            warn(&format!("ack collector failed: {error}"));
        }
        if let Ok(producer) = Arc::try_unwrap(sender.producer) {
            // Everything was acked or timed out already; close only flushes.
            let _ = tokio::time::timeout(drain, producer.close()).await;
        }
    }
}

/// Warnings go to stderr, beside the progress line.
fn warn(message: &str) {
    eprintln!("surge-loadgen: warning: {message}");
}

/// Records the outcomes of one producer's events.
#[derive(Debug)]
struct Collector {
    shared: Arc<Shared>,
    recorder: Recorder,
    clock: RunClock,
    drain: Duration,
}

impl Collector {
    /// Records outcomes as they arrive until the senders are done, then
    /// until none is outstanding, for at most `drain`; what is still
    /// missing then counts as timed out.
    async fn run(self, mut deliveries: Deliveries, senders_done: CancellationToken) {
        let mut deadline = None;
        loop {
            if deadline.is_some() && self.settled() {
                return;
            }
            tokio::select! {
                biased;
                batch = deliveries.recv() => match batch {
                    Some(batch) => self.record(batch),
                    None => break,
                },
                () = senders_done.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.drain);
                }
                () = sleep_until(deadline), if deadline.is_some() => break,
            }
        }
        for measured in [false, true] {
            let missing = self.shared.outstanding(measured).swap(0, Ordering::Relaxed);
            self.recorder.timed_out_unacked(measured, missing);
        }
    }

    fn settled(&self) -> bool {
        [false, true]
            .into_iter()
            .all(|measured| self.shared.outstanding(measured).load(Ordering::Relaxed) == 0)
    }

    fn record(&self, batch: Vec<Delivery>) {
        let done_us = self.clock.now_us();
        let mut settled = [0u64; 2];
        for delivery in &batch {
            let (intended_us, bytes) = untag(delivery.tag);
            settled[usize::from(self.recorder.is_measured(intended_us))] += 1;
            match &delivery.result {
                Ok(_) => self.recorder.acked(intended_us, done_us, bytes),
                Err(error) => self.recorder.failed(intended_us, error),
            }
        }
        for (measured, count) in [false, true].into_iter().zip(settled) {
            self.shared
                .outstanding(measured)
                .fetch_sub(count, Ordering::Relaxed);
        }
        if let Some(window) = &self.shared.window {
            window.add_permits(batch.len());
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
    fn tags_keep_time_and_size() {
        let intended_us = 86_400_000_000;
        assert_eq!(
            untag(tag(intended_us, EVENT_BYTES_MAX)),
            (intended_us, EVENT_BYTES_MAX)
        );
        assert_eq!(untag(tag(7, 0)), (7, 0));
    }

    #[test]
    fn count_shares_add_up() {
        let shares: Vec<u64> = (0..3)
            .map(|index| count_share(Some(10), index, 3))
            .collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!(count_share(None, 0, 3), u64::MAX);
    }
}
