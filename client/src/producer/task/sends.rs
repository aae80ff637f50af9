//! The producer task's sends: starting a batch of a shard's window,
//! settling its verdict, and recovering the window after a failure (the
//! decision itself is `window::recover`).

use tokio::time::Instant;

use super::super::window::{self, Failure, Recovery, Restart, State};
use super::ProducerTask;
use crate::sender::{send_batch, BatchJob, Verdict, WireOrder};

/// The backoff before sending a window again grows to at most this many
/// times `retry_backoff`.
const BACKOFF_FACTOR_MAX: u32 = 32;

impl ProducerTask {
    /// Sends a batch of the window (again, after a recovery). Sends start
    /// in the order of this call, which is the order they go on the wire.
    pub(super) fn start_send(&mut self, shard_id: u32, id: u64) {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        let Some(batch) = shard.window.iter().find(|batch| batch.id == id) else {
            return;
        };
        let job = BatchJob {
            client: self.client.clone(),
            stream: self.stream.clone(),
            shard_id,
            batch: batch.batch.clone(),
            acks: self.config.acks,
            timeout: self.config.request_timeout,
            order: WireOrder::next(&mut shard.wire_tail),
        };
        self.sending.push(Box::pin(
            async move { (shard_id, id, send_batch(job).await) },
        ));
    }

    pub(super) async fn on_verdict(&mut self, shard_id: u32, id: u64, verdict: Verdict) {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        let Some(batch) = shard.window.iter_mut().find(|batch| batch.id == id) else {
            return;
        };
        let mut newer_epoch = false;
        let mut settled = Vec::new();
        match verdict {
            Verdict::Acked { acks, epoch } => {
                assert_eq!(
                    acks.len(),
                    batch.events.len(),
                    "the sender checked one ack per record"
                );
                settled.extend(std::mem::take(&mut batch.events).into_iter().zip(acks));
                batch.state = State::Acked;
                shard.known = true;
                newer_epoch = epoch > self.router.epoch();
            }
            Verdict::Reroute(error) => {
                batch.state = State::Failed(Failure::Reroute(error));
                shard.failed = true;
            }
            Verdict::Failed(error) => {
                batch.state = State::Failed(Failure::of(error));
                shard.failed = true;
            }
            Verdict::Unsent => {
                batch.state = State::Failed(Failure::Unsent);
                shard.failed = true;
            }
        }
        shard.pop_acked();
        let recover = shard.failed && shard.answered();
        self.delivered.reserve(settled.len());
        for (queued, ack) in settled {
            self.settle(queued, Ok(ack));
        }
        let mut refresh = newer_epoch;
        if recover {
            refresh |= self.recover(shard_id);
        }
        if refresh {
            self.refresh().await;
        }
    }

    /// Applies `window::recover` to a shard whose window has answered with
    /// a failure in it; returns whether the routing needs a refresh.
    fn recover(&mut self, shard_id: u32) -> bool {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return false;
        };
        shard.failed = false;
        // Nothing of the shard is in flight: the next send waits for none.
        shard.wire_tail = None;
        let window = std::mem::take(&mut shard.window);
        let Recovery {
            resend,
            backoff_resends,
            requeue,
            rerouted,
            failed,
            restart,
        } = window::recover(window, self.config.retries);
        match restart {
            Some(Restart::At(sequence)) => shard.next_sequence = sequence,
            Some(Restart::FreshProducerId) => {
                shard.fresh_producer_id = Some(self.client.new_producer_id());
                shard.next_sequence = 0;
                shard.known = false;
            }
            None => {}
        }
        for queued in requeue.into_iter().rev() {
            shard.pending_bytes += queued.size;
            shard.pending.push_front(queued);
        }
        let resending = !resend.is_empty();
        shard.window.extend(resend);
        for (queued, error) in failed {
            self.settle(queued, Err(error));
        }
        if resending {
            let factor = backoff_resends.map_or(0, |resends| {
                1u32 << resends.min(BACKOFF_FACTOR_MAX.trailing_zeros())
            });
            let at = Instant::now() + self.config.retry_backoff * factor;
            if let Some(shard) = self.shards.get_mut(&shard_id) {
                shard.resume_at = Some(at);
            }
        }
        rerouted
    }

    /// Sends a recovered window again: every batch at once, in order, so
    /// none is answered before the last has started.
    pub(super) fn resume(&mut self, shard_id: u32) {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        shard.resume_at = None;
        let mut ids = Vec::with_capacity(shard.window.len());
        for batch in shard.window.iter_mut() {
            if matches!(batch.state, State::Waiting) {
                batch.state = State::Sending;
                ids.push(batch.id);
            }
        }
        for id in ids {
            self.start_send(shard_id, id);
        }
    }
}
