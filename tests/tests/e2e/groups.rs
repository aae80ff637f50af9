//! Consumer groups on the real broker: members share a stream's shards
//! without overlap, a leaver's shards move to the others, and committed
//! offsets survive a broker restart.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use surge_client::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig, StreamConfig};
use surge_tests::BrokerProcess;

use crate::support::{create_stream, runtime};

const SHARDS: u32 = 4;

fn member_config() -> ConsumerConfig {
    ConsumerConfig {
        group: Some("workers".into()),
        max_wait: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(50),
        session_timeout: Duration::from_secs(5),
        ..ConsumerConfig::default()
    }
}

async fn produce(client: &surge_client::Client, count: usize, tag: &str) {
    let producer = Producer::new(client.clone(), "jobs", ProducerConfig::default())
        .await
        .unwrap();
    let mut acks = Vec::new();
    for index in 0..count {
        let event = Event::new(format!("{tag}-{index}")).with_key(format!("key-{index}"));
        acks.push(producer.send(event).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// Polls both members until each holds half the shards.
async fn settle(first: &mut Consumer, second: &mut Consumer, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for member in [&mut *first, &mut *second] {
            for consumed in member.poll().await.unwrap() {
                seen.push(String::from_utf8(consumed.record.value.to_vec()).unwrap());
            }
        }
        let (a, b) = (first.assignment(), second.assignment());
        let overlap: BTreeSet<_> = a.iter().filter(|shard| b.contains(shard)).collect();
        assert!(overlap.is_empty(), "shards {overlap:?} held by two members");
        if a.len() == 2 && b.len() == 2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group did not settle: {a:?} / {b:?}"
        );
    }
}

#[test]
fn members_share_shards_and_commits_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let runtime = runtime();
    runtime.block_on(async {
        let client = broker.client().await;
        create_stream(
            &client,
            "jobs",
            StreamConfig {
                shard_count: SHARDS,
                ..StreamConfig::default()
            },
        )
        .await;
        produce(&client, 400, "before").await;
        let mut first = Consumer::new(client.clone(), "jobs", member_config())
            .await
            .unwrap();
        assert_eq!(
            first.assignment().len(),
            SHARDS as usize,
            "a lone member gets every shard"
        );
        let mut second = Consumer::new(client.clone(), "jobs", member_config())
            .await
            .unwrap();
        let mut seen = Vec::new();
        settle(&mut first, &mut second, &mut seen).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < 400 {
            for member in [&mut first, &mut second] {
                for consumed in member.poll().await.unwrap() {
                    seen.push(String::from_utf8(consumed.record.value.to_vec()).unwrap());
                }
            }
            assert!(Instant::now() < deadline, "read {} of 400", seen.len());
        }
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 400, "every event read once");
        assert_eq!(seen.len(), 400, "no event read twice");
        first.commit().await.unwrap();
        second.commit().await.unwrap();
        first.close().await.unwrap();
        second.close().await.unwrap();
    });

    assert_eq!(broker.terminate(), Some(0));
    broker.restart();
    runtime.block_on(async {
        let client = broker.client().await;
        produce(&client, 50, "after").await;
        let mut resumed = Consumer::new(client, "jobs", member_config())
            .await
            .unwrap();
        let mut values = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while values.len() < 50 {
            for consumed in resumed.poll().await.unwrap() {
                values.push(String::from_utf8(consumed.record.value.to_vec()).unwrap());
            }
            assert!(Instant::now() < deadline, "read {} of 50", values.len());
        }
        assert!(
            values.iter().all(|value| value.starts_with("after-")),
            "re-read committed events"
        );
        assert_eq!(values.len(), 50);
    });
}
