//! The order in which a sealed shard's batches are forwarded: arrival order,
//! and per producer, sequence order.
//!
//! A batch that finds its shard sealed is forwarded by its own request's
//! task. Without an order, a producer's later batch could reach a successor
//! first; the successor accepts gaps from a forwarded origin, stores it, and
//! then takes the earlier batch for a duplicate (acknowledged, never
//! stored). So each append job queued once the shard may be sealing takes a
//! ticket, in queue order per connection, and forwards only when every
//! earlier ticket of the shard is released. Tickets are released on drop, so
//! a request that ends early (an error, a panic) never blocks the ones after.
//!
//! Arrival order is not enough: a batch can arrive ahead of its predecessor
//! (it went out on another connection, or the predecessor failed and will
//! be sent again). The sealed shard is the one place all of a producer's
//! batches for it pass, so it keeps, per producer key, the sequence the
//! next forward must start at: a batch past it is refused as out of order,
//! as an open shard would, and the producer sends the gap first. The
//! sequences start from the producer state at the seal; for a shard found
//! sealed at startup, from the highest sequence of its origin that any
//! shard of the stream holds (`Shard::resume_forwards`), and a producer
//! none holds is set by its first batch.
//!
//! Deadlock-free: a request takes its tickets in its job order, waits for
//! them in that order, and releases each before waiting for the next, so
//! the oldest ticket still held anywhere can always go.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use surge_protocol::batch::BatchHeader;
use tokio::sync::watch;

use crate::storage::{ProducerKey, ProducerState, MAX_PRODUCERS_PER_SHARD};

#[derive(Debug)]
pub struct ForwardOrder {
    tickets: Mutex<Tickets>,
    /// The oldest ticket not yet released: its holder may forward.
    frontier: watch::Sender<u64>,
    /// Per producer key, the sequence its next forwarded batch starts at.
    /// Only a turn's holder reads or moves it, so checks and updates come in
    /// forwarding order.
    next_sequences: Mutex<HashMap<ProducerKey, u64>>,
}

#[derive(Debug, Default)]
struct Tickets {
    issued: u64,
    /// Released out of order, above the frontier. Bounded by the tickets
    /// outstanding, that is by the produce requests in flight.
    released: BTreeSet<u64>,
}

impl Default for ForwardOrder {
    fn default() -> ForwardOrder {
        ForwardOrder {
            tickets: Mutex::new(Tickets::default()),
            frontier: watch::channel(0).0,
            next_sequences: Mutex::new(HashMap::new()),
        }
    }
}

impl ForwardOrder {
    /// The next place in line.
    pub fn ticket(self: &Arc<Self>) -> ForwardTurn {
        let mut tickets = self.tickets.lock();
        let ticket = tickets.issued;
        tickets.issued += 1;
        ForwardTurn {
            order: Arc::clone(self),
            ticket,
        }
    }

    /// The shard was sealed with `producers` stored: forwards continue
    /// each producer's sequence from there.
    pub fn start_from(&self, producers: &ProducerState) {
        *self.next_sequences.lock() = producers
            .iter()
            .map(|(key, last)| (key, last.wrapping_add(1)))
            .collect();
    }

    fn release(&self, ticket: u64) {
        let mut tickets = self.tickets.lock();
        tickets.released.insert(ticket);
        let mut frontier = *self.frontier.borrow();
        while tickets.released.remove(&frontier) {
            frontier += 1;
        }
        assert!(frontier <= tickets.issued, "released only issued tickets");
        self.frontier.send_if_modified(|current| {
            let moved = *current != frontier;
            *current = frontier;
            moved
        });
    }
}

/// One place in a sealed shard's forwarding order; released on drop.
#[derive(Debug)]
pub struct ForwardTurn {
    order: Arc<ForwardOrder>,
    ticket: u64,
}

impl ForwardTurn {
    /// Waits until every earlier ticket of the shard is released.
    pub async fn wait(&self) {
        let mut frontier = self.order.frontier.subscribe();
        // The sender lives in `self.order`: it cannot be dropped meanwhile.
        frontier
            .wait_for(|frontier| *frontier >= self.ticket)
            .await
            .ok();
    }
}

impl ForwardTurn {
    /// Whether the batch may be forwarded now (call after `wait`): `Err`
    /// with the expected sequence when it starts past the producer's next
    /// one. A retry of a batch already forwarded goes on, for the
    /// successors to answer as a duplicate.
    pub fn admit(&self, header: &BatchHeader) -> Result<(), u64> {
        if header.producer_id == 0 {
            return Ok(());
        }
        let next = self.order.next_sequences.lock();
        match next.get(&ProducerKey::of(header)) {
            Some(&expected) if header.base_sequence > expected => Err(expected),
            _ => Ok(()),
        }
    }

    /// The batch was forwarded whole: the producer's next batch follows it.
    pub fn forwarded(&self, header: &BatchHeader) {
        if header.producer_id == 0 || header.record_count == 0 {
            return;
        }
        let after = header
            .base_sequence
            .wrapping_add(u64::from(header.record_count));
        let mut next = self.order.next_sequences.lock();
        let key = ProducerKey::of(header);
        if !next.contains_key(&key) && next.len() >= MAX_PRODUCERS_PER_SHARD {
            // Forgetting a producer only lets its next batch through
            // unchecked, as after a restart.
            let evicted = next.keys().next().copied();
            if let Some(evicted) = evicted {
                next.remove(&evicted);
            }
        }
        let entry = next.entry(key).or_insert(after);
        *entry = (*entry).max(after);
    }
}

impl Drop for ForwardTurn {
    fn drop(&mut self) {
        self.order.release(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether the turn has come, without waiting (a zero timeout still
    /// polls the future once).
    async fn is_turn(turn: &ForwardTurn) -> bool {
        tokio::time::timeout(Duration::ZERO, turn.wait())
            .await
            .is_ok()
    }

    /// A header of `count` records from `base` by producer 9 to shard 4.
    fn header(base: u64, count: u32) -> BatchHeader {
        let mut builder = surge_protocol::batch::BatchBuilder::new(4, 9, base);
        for _ in 0..count {
            builder.push(0, None, b"v", &[]);
        }
        surge_protocol::batch::read_header(&builder.finish())
    }

    #[test]
    fn forwards_continue_each_producers_sequence_from_the_seal() {
        let order = Arc::new(ForwardOrder::default());
        let key = ProducerKey {
            producer_id: 9,
            origin_shard: 4,
        };
        order.start_from(&[(key, 9)].into_iter().collect());
        let turn = order.ticket();
        assert_eq!(turn.admit(&header(13, 2)), Err(10), "a gap after the seal");
        assert_eq!(turn.admit(&header(10, 3)), Ok(()));
        turn.forwarded(&header(10, 3));
        assert_eq!(turn.admit(&header(14, 1)), Err(13), "a gap after a forward");
        assert_eq!(turn.admit(&header(10, 3)), Ok(()), "a retry goes on");
        turn.forwarded(&header(10, 3));
        assert_eq!(
            turn.admit(&header(13, 1)),
            Ok(()),
            "a retry moves nothing back"
        );
        order.start_from(&ProducerState::default());
        assert_eq!(
            turn.admit(&header(50, 1)),
            Ok(()),
            "unknown: the first sets it"
        );
    }

    #[tokio::test]
    async fn a_turn_comes_when_every_earlier_ticket_is_released() {
        let order = Arc::new(ForwardOrder::default());
        let first = order.ticket();
        let second = order.ticket();
        let third = order.ticket();
        assert!(is_turn(&first).await);
        assert!(!is_turn(&second).await);
        // Released out of order: the third still waits for the first.
        drop(second);
        assert!(!is_turn(&third).await);
        let waiting = tokio::spawn(async move {
            third.wait().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "third went before first");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("third's turn after first")
            .unwrap();
        assert!(is_turn(&order.ticket()).await, "nothing left ahead");
    }
}
