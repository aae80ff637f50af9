//! Routing by event type: a stream created with `routing_header = "type"`
//! keeps each type's events on one shard and in order, also across a split
//! while producers write.

use std::collections::{HashMap, HashSet};

use surge_client::{Event, Producer, ProducerConfig, StreamConfig};
use surge_protocol::topology::{ChangeKind, ChangeTopologyRequest};
use surge_tests::BrokerProcess;

use crate::support::{create_stream, read_all, runtime};

const TYPES: usize = 20;

#[test]
fn events_route_by_type_and_keep_per_type_order_across_a_split() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let runtime = runtime();
    let records = runtime.block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            shard_count: 4,
            routing_header: "type".into(),
            ..StreamConfig::default()
        };
        create_stream(&client, "typed", config).await;
        let producer = Producer::new(client.clone(), "typed", ProducerConfig::default())
            .await
            .unwrap();
        let mut acks = Vec::new();
        for sequence in 0..2_000usize {
            if sequence == 1_000 {
                let split = ChangeTopologyRequest {
                    stream: "typed".into(),
                    kind: ChangeKind::Split,
                    shard_id: 0,
                    ..ChangeTopologyRequest::default()
                };
                client.change_topology(&split).await.unwrap();
            }
            let event_type = format!("t{}", sequence % TYPES);
            // Keys differ per event: routing must ignore them.
            let event = Event::new(format!("{event_type}:{sequence}"))
                .with_key(format!("key-{sequence}"))
                .with_type(&event_type);
            acks.push(producer.send(event).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
        producer.close().await.unwrap();
        read_all(&client, "typed").await
    });
    assert_eq!(records.len(), 2_000);
    let mut shards_of: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    for consumed in &records {
        let value = String::from_utf8(consumed.record.value.to_vec()).unwrap();
        let (event_type, sequence) = value.split_once(':').unwrap();
        let sequence: usize = sequence.parse().unwrap();
        assert_eq!(
            consumed.record.header("type").map(|value| &value[..]),
            Some(event_type.as_bytes())
        );
        shards_of
            .entry(event_type.to_owned())
            .or_default()
            .insert(consumed.shard_id);
        if let Some(previous) = last.insert(event_type.to_owned(), sequence) {
            if previous >= sequence {
                // Where each event of the type was read, to see the break.
                let prefix = format!("{event_type}:");
                let trail: Vec<(u32, u64)> = records
                    .iter()
                    .filter(|other| other.record.value.starts_with(prefix.as_bytes()))
                    .map(|other| (other.shard_id, other.record.offset))
                    .collect();
                panic!(
                    "{event_type}: {sequence} read after {previous}; (shard, offset): {trail:?}"
                );
            }
        }
    }
    for (event_type, shards) in &shards_of {
        // Before the split one shard; a type of the split shard also has
        // events in the one child that owns its hash.
        assert!(shards.len() <= 2, "{event_type} spread over {shards:?}");
    }
    let used: HashSet<u32> = shards_of.values().flatten().copied().collect();
    assert!(
        used.len() >= 3,
        "types should spread over the shards: {used:?}"
    );
}
