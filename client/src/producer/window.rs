//! One shard's events on the producer side: the queue, the idempotence
//! sequence, and the window of batches cut and not yet settled (at most
//! `max_in_flight_per_shard`, sent in sequence order on one connection).
//!
//! Sequences are assigned when a batch is cut. When a batch of the window
//! fails, the shard sends nothing new until every batch of its window has
//! answered; then `recover` decides, front to back:
//!
//! - a batch the broker may have stored (a timeout, a disconnect, a
//!   retriable code) is sent again as the same bytes, and so are later
//!   batches answered out of order or held back unsent: the gap was the
//!   failed batch's. They go
//!   out again together, in order, after a backoff; a stored one is
//!   answered as a duplicate;
//! - past a gap that nothing will fill (a rejected or re-routed batch, or
//!   one whose retries ran out), later batches that were not stored go back
//!   to the queue to be cut again from the gap's sequence; when one of them
//!   may have been stored past the gap (an ambiguous failure, or a
//!   forwarded batch acknowledged across it), lower sequences could be taken
//!   for duplicates of it, so the shard's batches take a fresh producer id
//!   instead (a possible duplicate, never a loss).
//!
//! The first batch under a producer id goes alone: a shard that knows
//! nothing of a producer accepts any sequence, so a second batch sent with
//! it could be stored while the first failed, and the first's retry would
//! then be out of order.

use std::collections::VecDeque;

use bytes::Bytes;
use surge_protocol::ErrorCode;
use tokio::time::Instant;

use super::Queued;
use crate::error::ClientError;

/// Times one event may be re-routed after sealed or unknown shards.
const REROUTES_MAX: u8 = 3;

/// Events of one shard: the queue, the idempotence sequence, and the batches
/// in flight.
#[derive(Debug, Default)]
pub(super) struct ShardQueue {
    pub(super) pending: VecDeque<Queued>,
    pub(super) pending_bytes: usize,
    /// Replaces the producer's id in this shard's batches after a gap that
    /// only a fresh id can skip.
    pub(super) fresh_producer_id: Option<u64>,
    pub(super) next_sequence: u64,
    /// Batches cut and not settled, in sequence order.
    pub(super) window: VecDeque<InFlight>,
    /// A batch of the window failed: send nothing new until it is recovered.
    pub(super) failed: bool,
    /// Told, with the connection's id, when the shard's last send is queued
    /// on it; the next send waits for that and goes out on the same
    /// connection (`sender::WireOrder`).
    pub(super) wire_tail: Option<tokio::sync::oneshot::Receiver<u64>>,
    /// When the batches a recovery sends again may go.
    pub(super) resume_at: Option<Instant>,
    /// A batch under the current producer id was acknowledged: the shard
    /// knows the producer, and checks its sequences.
    pub(super) known: bool,
}

impl ShardQueue {
    /// Whether another batch may be cut now.
    pub(super) fn can_send(&self, max_in_flight: usize) -> bool {
        let window_max = if self.known { max_in_flight } else { 1 };
        !self.failed && self.resume_at.is_none() && self.window.len() < window_max
    }

    /// Whether every batch of the window has answered.
    pub(super) fn answered(&self) -> bool {
        self.window
            .iter()
            .all(|batch| matches!(batch.state, State::Acked | State::Failed(_)))
    }

    /// Drops acknowledged batches from the front of the window.
    pub(super) fn pop_acked(&mut self) {
        while self
            .window
            .front()
            .is_some_and(|batch| matches!(batch.state, State::Acked))
        {
            self.window.pop_front();
        }
    }
}

/// One batch cut for a shard, kept until it settles so it can be sent again
/// as the same bytes.
#[derive(Debug)]
pub(super) struct InFlight {
    /// Tells this batch's answers from others' (sequences can repeat under
    /// a fresh producer id).
    pub(super) id: u64,
    pub(super) base_sequence: u64,
    pub(super) batch: Bytes,
    /// Empty once acknowledged: the events settled then.
    pub(super) events: Vec<Queued>,
    pub(super) state: State,
    /// Times sent again.
    pub(super) resends: u32,
}

#[derive(Debug)]
pub(super) enum State {
    /// To be sent again once the shard's `resume_at` has passed.
    Waiting,
    Sending,
    Acked,
    Failed(Failure),
}

/// How a batch failed, by what the broker may have done with it.
#[derive(Debug)]
pub(super) enum Failure {
    /// Refused for itself (invalid, too large, a schema violation): not
    /// stored, and sending it again cannot help.
    Rejected(ClientError),
    /// The shard is sealed or unknown: not stored; re-route the events.
    Reroute(ClientError),
    /// Refused because an earlier sequence is missing: not stored.
    OutOfOrder(ClientError),
    /// Held back because the batch before it never reached the connection:
    /// not sent, so not stored.
    Unsent,
    /// Retries ran out on a timeout, a disconnect or a retriable code:
    /// maybe stored.
    Ambiguous(ClientError),
}

impl Failure {
    /// Classifies a failed send (its own retries already spent).
    pub(super) fn of(error: ClientError) -> Failure {
        match error.code() {
            Some(ErrorCode::OutOfOrderSequence) => Failure::OutOfOrder(error),
            Some(code) if !code.is_retriable() => Failure::Rejected(error),
            _ => Failure::Ambiguous(error),
        }
    }
}

/// What `recover` decided for a shard whose window has answered.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// To send again as they are, in order (state `Waiting`).
    pub(super) resend: Vec<InFlight>,
    /// The resends of the first ambiguous batch among them, for the backoff;
    /// `None`: they may go at once.
    pub(super) backoff_resends: Option<u32>,
    /// To put back at the front of the queue, in order.
    pub(super) requeue: Vec<Queued>,
    /// Whether a batch came back re-routed: refresh the routing.
    pub(super) rerouted: bool,
    /// Events that failed for good.
    pub(super) failed: Vec<(Queued, ClientError)>,
    /// Where the next cut batch starts, if not where it would have.
    pub(super) restart: Option<Restart>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Restart {
    /// Reuse sequences from here: nothing at or past it was stored.
    At(u64),
    /// Something past the gap may be stored: a fresh producer id, from 0.
    FreshProducerId,
}

/// Decides what becomes of an answered window with a failure in it (see
/// the module doc). `resends_max` bounds how often one batch is sent again.
pub(super) fn recover(window: VecDeque<InFlight>, resends_max: u32) -> Recovery {
    let mut recovery = Recovery::default();
    let mut gap: Option<u64> = None;
    let mut stored_past_gap = false;
    for mut batch in window {
        let failure = match batch.state {
            State::Acked => {
                stored_past_gap |= gap.is_some();
                continue;
            }
            State::Sending | State::Waiting => unreachable!("recover runs on an answered window"),
            State::Failed(failure) => failure,
        };
        let (error, maybe_stored) = match failure {
            Failure::Rejected(error) => {
                gap.get_or_insert(batch.base_sequence);
                fail_all(&mut recovery, batch.events, &error);
                continue;
            }
            Failure::Reroute(error) => {
                gap.get_or_insert(batch.base_sequence);
                reroute(&mut recovery, batch.events, &error);
                continue;
            }
            Failure::OutOfOrder(error) => (error, false),
            // Reported only if its resends run out: what kept the batch
            // before it off the wire is nearly always the connection.
            Failure::Unsent => (ClientError::Disconnected, false),
            Failure::Ambiguous(error) => (error, true),
        };
        if gap.is_some() {
            stored_past_gap |= maybe_stored;
            recovery.requeue.extend(batch.events);
        } else if batch.resends < resends_max {
            if maybe_stored && recovery.backoff_resends.is_none() {
                recovery.backoff_resends = Some(batch.resends);
            }
            batch.resends += 1;
            batch.state = State::Waiting;
            recovery.resend.push(batch);
        } else {
            gap = Some(batch.base_sequence);
            stored_past_gap |= maybe_stored;
            fail_all(&mut recovery, batch.events, &error);
        }
    }
    recovery.restart = gap.map(|gap| match stored_past_gap {
        true => Restart::FreshProducerId,
        false => Restart::At(gap),
    });
    recovery
}

/// Puts a re-routed batch's events back, failing those re-routed too often.
fn reroute(recovery: &mut Recovery, events: Vec<Queued>, error: &ClientError) {
    recovery.rerouted = true;
    for queued in events {
        if queued.reroutes >= REROUTES_MAX {
            recovery.failed.push((queued, error.clone()));
            continue;
        }
        recovery.requeue.push(Queued {
            reroutes: queued.reroutes + 1,
            ..queued
        });
    }
}

fn fail_all(recovery: &mut Recovery, events: Vec<Queued>, error: &ClientError) {
    recovery
        .failed
        .extend(events.into_iter().map(|queued| (queued, error.clone())));
}

#[cfg(test)]
mod tests {
    use surge_protocol::ErrorCode;

    use super::*;
    use crate::event::Event;
    use crate::producer::Completion;

    fn event(tag: u64) -> Queued {
        Queued {
            event: Event::new(tag.to_string()),
            timestamp_ms: 0,
            size: 1,
            budget: 1,
            enqueued: Instant::now(),
            reroutes: 0,
            completion: Completion::Tagged(tag),
        }
    }

    fn broker(code: ErrorCode) -> ClientError {
        ClientError::Broker {
            code,
            message: String::new(),
        }
    }

    /// A window of one-event batches from sequence 0, one per state.
    fn window(states: Vec<State>) -> VecDeque<InFlight> {
        states
            .into_iter()
            .enumerate()
            .map(|(index, state)| InFlight {
                id: index as u64,
                base_sequence: index as u64,
                batch: Bytes::new(),
                events: vec![event(index as u64)],
                state,
                resends: 0,
            })
            .collect()
    }

    fn failed(code: ErrorCode) -> State {
        State::Failed(Failure::of(broker(code)))
    }

    fn tags(events: &[Queued]) -> Vec<u64> {
        events
            .iter()
            .map(|queued| match queued.completion {
                Completion::Tagged(tag) => tag,
                Completion::Future(_) => unreachable!("tests tag their events"),
            })
            .collect()
    }

    #[test]
    fn a_maybe_stored_batch_and_the_ones_behind_it_go_again_in_order() {
        let states = vec![
            State::Acked,
            State::Failed(Failure::of(ClientError::Disconnected)),
            failed(ErrorCode::OutOfOrderSequence),
            State::Acked,
        ];
        let recovery = recover(window(states), 3);
        let resent: Vec<u64> = recovery.resend.iter().map(|batch| batch.id).collect();
        assert_eq!(resent, vec![1, 2]);
        assert_eq!(recovery.backoff_resends, Some(0));
        assert!(recovery.requeue.is_empty() && recovery.failed.is_empty());
        assert_eq!(recovery.restart, None, "sequences unchanged");
    }

    #[test]
    fn past_a_rejected_batch_the_unstored_ones_are_cut_again_from_its_sequence() {
        let states = vec![
            failed(ErrorCode::InvalidBatch),
            failed(ErrorCode::OutOfOrderSequence),
            failed(ErrorCode::OutOfOrderSequence),
        ];
        let recovery = recover(window(states), 3);
        assert_eq!(tags(&recovery.requeue), vec![1, 2]);
        let failed: Vec<Queued> = recovery
            .failed
            .into_iter()
            .map(|(queued, _)| queued)
            .collect();
        assert_eq!(tags(&failed), vec![0]);
        assert!(recovery.resend.is_empty());
        assert_eq!(recovery.restart, Some(Restart::At(0)));
    }

    #[test]
    fn past_a_gap_a_batch_that_may_be_stored_means_a_fresh_producer_id() {
        for behind in [
            State::Acked,
            State::Failed(Failure::of(ClientError::Disconnected)),
        ] {
            let states = vec![failed(ErrorCode::InvalidBatch), behind];
            let recovery = recover(window(states), 3);
            assert_eq!(recovery.restart, Some(Restart::FreshProducerId));
        }
    }

    #[test]
    fn retries_run_out_into_a_failure_and_the_ones_behind_are_cut_again() {
        let mut batches = window(vec![
            State::Failed(Failure::of(ClientError::Disconnected)),
            failed(ErrorCode::OutOfOrderSequence),
        ]);
        batches[0].resends = 3;
        let recovery = recover(batches, 3);
        assert_eq!(recovery.failed.len(), 1);
        assert_eq!(tags(&recovery.requeue), vec![1]);
        assert_eq!(recovery.restart, Some(Restart::FreshProducerId));
    }

    #[test]
    fn a_batch_held_back_unsent_goes_again_behind_the_one_that_failed() {
        let states = vec![
            State::Failed(Failure::of(ClientError::Disconnected)),
            State::Failed(Failure::Unsent),
        ];
        let recovery = recover(window(states), 3);
        let resent: Vec<u64> = recovery.resend.iter().map(|batch| batch.id).collect();
        assert_eq!(resent, vec![0, 1]);
        assert_eq!(recovery.restart, None, "sequences unchanged");
    }

    #[test]
    fn a_rerouted_batch_goes_back_to_the_queue_and_asks_for_a_refresh() {
        let sealed = Failure::Reroute(broker(ErrorCode::ShardSealed));
        let recovery = recover(window(vec![State::Failed(sealed)]), 3);
        assert!(recovery.rerouted);
        assert_eq!(tags(&recovery.requeue), vec![0]);
        assert_eq!(recovery.requeue[0].reroutes, 1);
        assert_eq!(recovery.restart, Some(Restart::At(0)));
    }
}
