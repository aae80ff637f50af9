//! Max throughput: closed loop. Each producer keeps at most `in_flight`
//! events unacknowledged (the window of `Sender::reserve`, freed as
//! outcomes arrive) and sends the next as soon as a slot frees, until the
//! run's end or its share of `count`. There is no schedule, so latency is
//! measured from the actual send: it is the service time under full load,
//! not what a user at a given rate would see (use open loop for that).

use crate::producer::{count_share, Sender};
use crate::workload::{EventFactory, WorkloadConfig};

/// Runs every sender as a windowed task until `end_us` or `count`; the
/// window's size was given to the producers (`ProducerSetup::window`).
pub async fn drive(
    senders: Vec<Sender>,
    workload: &WorkloadConfig,
    count: Option<u64>,
    end_us: u64,
) {
    let producers = u32::try_from(senders.len()).expect("producers are bounded");
    let mut tasks = Vec::with_capacity(senders.len());
    for sender in senders {
        let limit = count_share(count, sender.index, producers);
        let factory = EventFactory::new(workload, sender.index);
        tasks.push(tokio::spawn(window_loop(sender, factory, limit, end_us)));
    }
    for task in tasks {
        if let Err(error) = task.await {
            eprintln!("surge-loadgen: warning: sender task failed: {error}");
        }
    }
}

async fn window_loop(sender: Sender, mut factory: EventFactory, limit: u64, end_us: u64) {
    // One timer for the whole run, not one armed per event.
    let end = tokio::time::sleep_until(tokio::time::Instant::from_std(
        sender.clock.instant_at(end_us),
    ));
    tokio::pin!(end);
    let mut sent = 0;
    while sent < limit {
        tokio::select! {
            biased;
            () = sender.reserve() => {}
            () = &mut end => return,
        }
        let now_us = sender.clock.now_us();
        if now_us >= end_us {
            return;
        }
        sender.send(&mut factory, now_us).await;
        sent += 1;
    }
}
