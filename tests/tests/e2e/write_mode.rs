//! `write`-durability streams: the periodic flush runs beside the appends,
//! never in front of them.

use std::time::{Duration, Instant};

use surge_client::{Event, Producer, ProducerConfig, StreamConfig};
use surge_protocol::stream::Durability;
use surge_tests::BrokerProcess;

use crate::support::{create_stream, runtime};

/// Regression: the owner thread ran the flush itself, so every append
/// queued behind it waited for the disk (a stall each second under load).
/// Here each flush is held 2 s (failpoint `flush.stall`) and the events,
/// sent one at a time for 1.5 s, are acknowledged at the pace of writes.
#[test]
fn a_stalled_write_mode_flush_holds_up_no_append() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_env(
        dir.path().join("data"),
        &[],
        &[("SURGE_FAILPOINTS", "flush.stall")],
    );
    let slowest = runtime().block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            shard_count: 1,
            durability: Durability::Write,
            flush_interval_ms: 20,
            ..StreamConfig::default()
        };
        create_stream(&client, "lazy", config).await;
        let producer = Producer::new(client, "lazy", ProducerConfig::default())
            .await
            .unwrap();
        let mut slowest = Duration::ZERO;
        for index in 0..30 {
            let sent = Instant::now();
            let ack = producer
                .send(Event::new(format!("event-{index}")))
                .await
                .unwrap();
            ack.await.unwrap();
            slowest = slowest.max(sent.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    });
    assert!(
        slowest < Duration::from_secs(1),
        "an append waited {slowest:?} behind a stalled flush"
    );
}
