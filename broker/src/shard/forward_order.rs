//! The order in which a sealed shard's batches are forwarded: arrival order.
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
//! Deadlock-free: a request takes its tickets in its job order, waits for
//! them in that order, and releases each before waiting for the next, so
//! the oldest ticket still held anywhere can always go.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

#[derive(Debug)]
pub struct ForwardOrder {
    tickets: Mutex<Tickets>,
    /// The oldest ticket not yet released: its holder may forward.
    frontier: watch::Sender<u64>,
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
