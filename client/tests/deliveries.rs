//! Tagged sends against the fake broker: outcomes arrive a batch at a time
//! through `Deliveries`, each with its tag and where its event was stored;
//! the byte budget comes back as batches settle; failures are delivered too.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use support::{FakeBroker, STREAM};
use surge_client::{Client, ClientError, Event, Producer, ProducerConfig};

#[tokio::test]
async fn tagged_outcomes_arrive_per_batch_with_their_offsets() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let (producer, mut deliveries) =
        Producer::with_deliveries(client, STREAM, ProducerConfig::default())
            .await
            .unwrap();
    let total = 300u64;
    for tag in 0..total {
        let key = format!("key-{}", tag % 7);
        let event = Event::new(format!("value-{tag}")).with_key(key);
        producer.send_tagged(event, tag).await.unwrap();
    }
    producer.flush().await.unwrap();
    let mut acked = HashMap::new();
    let mut handovers = 0;
    while acked.len() < total as usize {
        let batch = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
            .await
            .expect("every outcome is delivered")
            .expect("the producer is alive");
        handovers += 1;
        for delivery in batch {
            let ack = delivery.result.unwrap();
            assert!(
                acked.insert(delivery.tag, ack).is_none(),
                "tag {} twice",
                delivery.tag
            );
        }
    }
    assert!(
        handovers < total,
        "outcomes were not handed over in batches: {handovers} hand-overs"
    );
    let state = fake.state.lock();
    for (tag, ack) in acked {
        let stored = state.shards[ack.shard_id as usize]
            .records()
            .into_iter()
            .find(|record| record.offset == ack.offset)
            .unwrap_or_else(|| panic!("tag {tag}: {ack:?} not stored"));
        assert_eq!(stored.value, Bytes::from(format!("value-{tag}")));
    }
}

#[tokio::test]
async fn budget_returns_as_batches_settle() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    // Room for about four events: the rest wait for earlier ones to settle.
    let config = ProducerConfig {
        max_in_flight_bytes: 4 * 1100,
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let (producer, mut deliveries) = Producer::with_deliveries(client, STREAM, config)
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut count = 0;
        while let Some(batch) = deliveries.recv().await {
            assert!(batch.iter().all(|delivery| delivery.result.is_ok()));
            count += batch.len();
        }
        count
    });
    let sends = async {
        for tag in 0..200 {
            producer
                .send_tagged(Event::new(vec![7u8; 1000]), tag)
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), sends)
        .await
        .expect("sends stalled: budget was not returned");
    assert_eq!(reader.await.unwrap(), 200);
    let stored: u64 = fake.state.lock().shards.iter().map(|s| s.next_offset).sum();
    assert_eq!(stored, 200);
}

#[tokio::test]
async fn failed_batches_are_delivered_as_errors() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let config = ProducerConfig {
        retries: 0,
        ..ProducerConfig::default()
    };
    let (producer, mut deliveries) = Producer::with_deliveries(client, STREAM, config)
        .await
        .unwrap();
    fake.state.lock().frame_error_api = Some(surge_client::surge_protocol::ApiKey::Produce);
    producer
        .send_tagged(Event::new("doomed"), 41)
        .await
        .unwrap();
    producer.flush().await.unwrap();
    let batch = deliveries.recv().await.expect("the failure is delivered");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].tag, 41);
    assert!(
        matches!(batch[0].result, Err(ClientError::Broker { .. })),
        "{:?}",
        batch[0].result
    );
}

#[tokio::test]
async fn send_tagged_needs_deliveries() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let producer = Producer::new(client, STREAM, ProducerConfig::default())
        .await
        .unwrap();
    let result = producer.send_tagged(Event::new("x"), 1).await;
    assert!(
        matches!(result, Err(ClientError::NoDeliveries)),
        "{result:?}"
    );
}
