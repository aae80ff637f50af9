//! Producer behaviour against the fake broker: routing by key hash, per-key
//! order, linger, idempotent retry after a dropped connection.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use support::{FakeBroker, STREAM};
use surge_client::{Client, Event, Producer, ProducerConfig};
use surge_protocol::routing::key_hash;

#[tokio::test]
async fn keyed_events_land_on_their_shard_in_order_with_offsets() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let producer = Producer::new(client, STREAM, ProducerConfig::default())
        .await
        .unwrap();
    let mut acks = Vec::new();
    for index in 0..400u32 {
        let key = format!("key-{}", index % 20);
        let event = Event::new(format!("{key}/{index}")).with_key(key.clone());
        acks.push((key, index, producer.send(event).await.unwrap()));
    }
    let mut last_offset: HashMap<String, u64> = HashMap::new();
    let mut by_location = HashMap::new();
    for (key, index, ack) in acks {
        let ack = ack.await.unwrap();
        let state = fake.state.lock();
        let shard = &state.shards[ack.shard_id as usize];
        let hash = key_hash(key.as_bytes());
        assert!(
            shard.hash_start <= hash && hash <= shard.hash_end,
            "{key} misrouted"
        );
        if let Some(previous) = last_offset.insert(key.clone(), ack.offset) {
            assert!(
                previous < ack.offset,
                "{key}: offset {} after {previous}",
                ack.offset
            );
        }
        by_location.insert((ack.shard_id, ack.offset), format!("{key}/{index}"));
    }
    producer.close().await.unwrap();
    let state = fake.state.lock();
    let mut stored = 0;
    for shard in &state.shards {
        for record in shard.records() {
            let expected = &by_location[&(shard.shard_id, record.offset)];
            assert_eq!(record.value, Bytes::from(expected.clone()));
            stored += 1;
        }
    }
    assert_eq!(stored, 400);
    assert!(
        state.shards.iter().all(|shard| shard.next_offset > 0),
        "one shard unused"
    );
    assert!(
        state.received_batches.len() < 400,
        "events were not batched: {} batches",
        state.received_batches.len()
    );
}

#[tokio::test]
async fn linger_sends_a_lone_event() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let linger = Duration::from_millis(100);
    let config = ProducerConfig {
        linger,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, STREAM, config).await.unwrap();
    // Nothing flushes: only the linger timer can send the event, and never
    // before it expires. (Real time: a paused clock would also jump over
    // the loopback round trip and fire request timeouts.)
    let start = tokio::time::Instant::now();
    let ack = producer.send(Event::new("alone")).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .expect("lingered event was never sent")
        .unwrap();
    assert!(start.elapsed() >= linger, "sent before linger expired");
    assert_eq!(ack.offset, 0);
    assert_eq!(fake.state.lock().received_batches.len(), 1);
}

#[tokio::test]
async fn retry_after_dropped_connection_resends_same_bytes_stored_once() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let config = ProducerConfig {
        retry_backoff: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, STREAM, config).await.unwrap();
    fake.state.lock().drop_after_store = 1;
    let first = producer.send(Event::new("a").with_key("k")).await.unwrap();
    let second = producer.send(Event::new("b").with_key("k")).await.unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.shard_id, second.shard_id);
    assert_eq!((first.offset, second.offset), (0, 1));
    let state = fake.state.lock();
    assert_eq!(state.received_batches.len(), 2, "expected one retry");
    assert_eq!(state.received_batches[0], state.received_batches[1]);
    let shard = &state.shards[first.shard_id as usize];
    assert_eq!(shard.batches.len(), 1, "retry stored twice");
    assert_eq!(shard.records().len(), 2);
}

#[tokio::test]
async fn flush_waits_for_every_ack() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let config = ProducerConfig {
        linger: Duration::from_secs(3600),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, STREAM, config).await.unwrap();
    let mut acks = Vec::new();
    for index in 0..50 {
        acks.push(producer.send(Event::new(format!("{index}"))).await.unwrap());
    }
    producer.flush().await.unwrap();
    let stored: u64 = fake.state.lock().shards.iter().map(|s| s.next_offset).sum();
    assert_eq!(stored, 50);
    for ack in acks {
        ack.await.unwrap();
    }
}

#[tokio::test]
async fn oversized_event_is_refused() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let config = ProducerConfig {
        max_batch_bytes: 1024,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, STREAM, config).await.unwrap();
    let result = producer.send(Event::new(vec![0u8; 2048])).await;
    assert!(matches!(
        result,
        Err(surge_client::ClientError::EventTooLarge { .. })
    ));
}

#[tokio::test]
async fn newer_epoch_in_a_response_refreshes_routing() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let producer = Producer::new(client, STREAM, ProducerConfig::default())
        .await
        .unwrap();
    let shard0_end = fake.state.lock().shards[0].hash_end;
    let key = (0..1000)
        .map(|index| format!("key-{index}"))
        .find(|key| key_hash(key.as_bytes()) <= shard0_end)
        .unwrap();
    let send = |value: &'static str| producer.send(Event::new(value).with_key(key.clone()));
    assert_eq!(send("before").await.unwrap().await.unwrap().shard_id, 0);
    let successor = fake.seal_with_successor(0);
    // Still routed by the stale map; the response carries the new epoch.
    assert_eq!(send("during").await.unwrap().await.unwrap().shard_id, 0);
    let after = send("after").await.unwrap().await.unwrap();
    assert_eq!(after.shard_id, successor);
    assert_eq!(after.offset, 0);
}
