//! Graceful shutdown: SIGTERM stops accepting, finishes in-flight appends,
//! syncs, and exits 0; a `write`-durability stream keeps every acknowledged
//! event across it.

use std::time::Duration;

use surge_client::{Event, Producer, ProducerConfig, StreamConfig};
use surge_protocol::stream::Durability;
use surge_tests::BrokerProcess;

use crate::support::{create_stream, read_all, runtime};

#[test]
fn sigterm_exits_zero_and_keeps_acknowledged_write_mode_events() {
    let dir = tempfile::tempdir().unwrap();
    // A long flush interval: only the shutdown sync can make the data durable.
    let mut broker = BrokerProcess::start(&dir, &[]);
    let runtime = runtime();
    let acked = runtime.block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            shard_count: 2,
            durability: Durability::Write,
            flush_interval_ms: 3_600_000,
            ..StreamConfig::default()
        };
        create_stream(&client, "lazy", config).await;
        let producer = Producer::new(client, "lazy", ProducerConfig::default())
            .await
            .unwrap();
        let mut acks = Vec::new();
        for index in 0..2_000 {
            acks.push(
                producer
                    .send(Event::new(format!("event-{index}")))
                    .await
                    .unwrap(),
            );
        }
        let mut acked = 0;
        for ack in acks {
            ack.await.unwrap();
            acked += 1;
        }
        acked
    });
    assert_eq!(broker.terminate(), Some(0), "graceful shutdown must exit 0");
    broker.restart();
    let records = runtime.block_on(async { read_all(&broker.client().await, "lazy").await });
    assert_eq!(records.len(), acked);
}

#[test]
fn sigterm_while_a_consumer_long_polls_still_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir, &["--set", "max_fetch_wait_ms=60000"]);
    let runtime = runtime();
    let consumer = runtime.block_on(async {
        let client = broker.client().await;
        create_stream(
            &client,
            "quiet",
            StreamConfig {
                shard_count: 1,
                ..StreamConfig::default()
            },
        )
        .await;
        let config = surge_client::ConsumerConfig {
            max_wait: Duration::from_secs(50),
            ..surge_client::ConsumerConfig::default()
        };
        surge_client::Consumer::new(client, "quiet", config)
            .await
            .unwrap()
    });
    let polling = runtime.spawn(async move {
        let mut consumer = consumer;
        consumer.poll().await.map(|records| records.len())
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(broker.terminate(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a long-poll held shutdown for {:?}",
        started.elapsed()
    );
    let polled = runtime.block_on(polling).unwrap();
    assert!(matches!(polled, Ok(0) | Err(_)), "{polled:?}");
}
