//! Hot event-type isolation on the real binary: producers write many keys
//! with a mix of types while the hot type is isolated onto its own shards
//! (through the CLI), one of those shards is split, and the type is folded
//! back. A lineage-following read then finds every acknowledged event once,
//! where its ack said, in per-(key, type) order, with no producer error;
//! the rules survive a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surge_client::{
    Ack, Client, ConsumedRecord, Consumer, ConsumerConfig, Event, Producer, ProducerConfig,
    StartFrom, StreamConfig,
};
use surge_protocol::api::ApiKey;
use surge_protocol::stream::ShardState;
use surge_protocol::topology::{ChangeKind, ChangeTopologyRequest};
use surge_tests::BrokerProcess;

use crate::support::{create_stream, read_all, runtime, seed, SMALL_SEGMENT_BYTES};

const KEYS: u32 = 2_000;
const PRODUCERS: usize = 4;
const HOT: &str = "hot";
/// Hot events are most of the load; the cold types share the rest.
const TYPES: [&str; 5] = [HOT, HOT, HOT, "cold-a", "cold-b"];

/// Produces typed, keyed events until `stop`. Values are
/// `label:sequence:type:key`. Returns (value, ack) of every ack and the
/// number of failed sends.
async fn produce(
    client: Client,
    label: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (Vec<(String, Ack)>, usize) {
    let config = ProducerConfig {
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, "iso", config)
        .await
        .expect("producer");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pending = std::collections::VecDeque::new();
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("k{}", rng.u32(..KEYS));
        let event_type = TYPES[rng.usize(..TYPES.len())];
        let value = format!("{label}:{sequence}:{event_type}:{key}");
        sequence += 1;
        let event = Event::new(value.clone())
            .with_key(key)
            .with_type(event_type);
        pending.push_back((value, producer.send(event).await.expect("send")));
        if pending.len() >= 64 {
            let (value, ack) = pending.pop_front().expect("non-empty");
            match ack.await {
                Ok(ack) => acked.push((value, ack)),
                Err(_) => failed += 1,
            }
        }
    }
    for (value, ack) in pending {
        match ack.await {
            Ok(ack) => acked.push((value, ack)),
            Err(_) => failed += 1,
        }
    }
    producer.close().await.ok();
    (acked, failed)
}

/// Every shard's group (`""`: the default group).
async fn groups(client: &Client) -> HashMap<u32, String> {
    let described = client.describe_stream("iso").await.expect("describe");
    described
        .shards
        .iter()
        .map(|shard| (shard.shard_id, shard.group.clone()))
        .collect()
}

fn cli_ok(broker: &BrokerProcess, args: &[&str]) -> String {
    let output = broker.cli(args, None);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "surge {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Reads `expected` records as the only member of a consumer group.
async fn read_as_group(client: &Client, expected: usize) -> Vec<ConsumedRecord> {
    let config = ConsumerConfig {
        group: Some("readers".into()),
        start: StartFrom::Earliest,
        max_wait: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client.clone(), "iso", config)
        .await
        .expect("group consumer");
    let mut records = Vec::new();
    let mut empty_polls = 0;
    while records.len() < expected && empty_polls < 60 {
        let polled = consumer.poll().await.expect("poll");
        empty_polls = if polled.is_empty() {
            empty_polls + 1
        } else {
            0
        };
        records.extend(polled);
    }
    records
}

/// No value read twice, every acknowledged one read where its ack said,
/// and per (producer, type, key) the sequence only grows.
fn check(acked: &HashMap<String, Ack>, records: &[ConsumedRecord]) {
    let mut seen: HashMap<String, Ack> = HashMap::new();
    let mut last_sequence: HashMap<(String, String, String), u64> = HashMap::new();
    for consumed in records {
        let value = String::from_utf8(consumed.record.value.to_vec()).expect("UTF-8");
        let at = Ack {
            shard_id: consumed.shard_id,
            offset: consumed.record.offset,
        };
        assert!(
            seen.insert(value.clone(), at).is_none(),
            "duplicate {value}"
        );
        let fields: Vec<&str> = value.split(':').collect();
        let [label, sequence, event_type, key] = fields[..] else {
            panic!("malformed value {value}");
        };
        let sequence: u64 = sequence.parse().expect("number");
        let order_key = (label.to_owned(), event_type.to_owned(), key.to_owned());
        if let Some(previous) = last_sequence.insert(order_key, sequence) {
            assert!(previous < sequence, "per-key order broken at {value}");
        }
    }
    let lost: Vec<&String> = acked
        .keys()
        .filter(|value| !seen.contains_key(*value))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    for (value, ack) in acked {
        if ack.offset != u64::MAX {
            assert_eq!(&seen[value], ack, "{value} is not where its ack said");
        }
    }
}

#[test]
fn isolating_and_folding_a_hot_type_under_load_loses_nothing() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let runtime = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let producers = runtime.block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            segment_bytes: SMALL_SEGMENT_BYTES,
            shard_count: 3,
            ..StreamConfig::default()
        };
        create_stream(&client, "iso", config).await;
        (0..PRODUCERS)
            .map(|index| {
                let client = client.clone();
                tokio::spawn(produce(
                    client,
                    format!("p{index}"),
                    rng.u64(..),
                    stop.clone(),
                ))
            })
            .collect::<Vec<_>>()
    });
    let pause = || std::thread::sleep(Duration::from_millis(400));
    pause();
    let isolated = cli_ok(&broker, &["shard", "isolate", "iso", HOT, "--shards", "2"]);
    assert!(
        isolated.starts_with("sealed 0,1,2 -> created 3,4,5,6,7 "),
        "{isolated}"
    );
    pause();
    runtime.block_on(async {
        let client = broker.client().await;
        let split = ChangeTopologyRequest {
            stream: "iso".into(),
            kind: ChangeKind::Split,
            shard_id: 6,
            ..ChangeTopologyRequest::default()
        };
        client
            .change_topology(&split)
            .await
            .expect("split inside the hot group");
    });
    pause();
    let described = cli_ok(&broker, &["stream", "describe", "iso"]);
    assert!(described.contains("isolated    hot\n"), "{described}");
    assert_eq!(described.matches(" hot ").count(), 4, "{described}");
    cli_ok(&broker, &["shard", "fold", "iso", HOT]);
    pause();
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = runtime.block_on(async {
        let mut acked = HashMap::new();
        let mut failed = 0;
        for producer in producers {
            let (list, errors) = producer.await.expect("producer task");
            failed += errors;
            acked.extend(list);
        }
        (acked, failed)
    });
    assert_eq!(failed, 0, "producers saw errors");
    assert!(
        acked.len() > 2_000,
        "only {} events acknowledged",
        acked.len()
    );
    let before_restart = runtime.block_on(async { groups(&broker.client().await).await });
    // Only hot events ever reach the hot shards, and some did.
    let mut hot_in_hot_shards = 0;
    for (value, ack) in &acked {
        let in_hot_shard = before_restart[&ack.shard_id] == HOT;
        if value.contains(":hot:") {
            hot_in_hot_shards += usize::from(in_hot_shard);
        } else {
            assert!(
                !in_hot_shard,
                "{value} was stored in hot shard {}",
                ack.shard_id
            );
        }
    }
    assert!(hot_in_hot_shards > 0, "no hot event reached the hot shards");
    broker.kill();
    broker.restart();
    let records = runtime.block_on(async {
        let client = broker.client().await;
        assert_eq!(
            groups(&client).await,
            before_restart,
            "groups survive a restart"
        );
        let described = client.describe_stream("iso").await.unwrap();
        assert!(described
            .shards
            .iter()
            .all(|shard| shard.state == ShardState::Sealed || shard.group.is_empty()));
        read_all(&client, "iso").await
    });
    check(&acked, &records);
    // A group member is handed the type's shards only after their parents
    // are drained by the group's commits (the broker's lineage rule).
    let grouped =
        runtime.block_on(async { read_as_group(&broker.client().await, records.len()).await });
    check(&acked, &grouped);
    eprintln!(
        "{} events, {hot_in_hot_shards} hot ones in hot shards",
        acked.len()
    );
}

/// On a stream routed by type, only the default shard that carried the
/// type is sealed, and asking for more than one shard is refused.
#[test]
fn isolating_on_a_type_routed_stream_seals_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let runtime = runtime();
    runtime.block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            segment_bytes: SMALL_SEGMENT_BYTES,
            shard_count: 4,
            routing_header: "type".into(),
            ..StreamConfig::default()
        };
        create_stream(&client, "iso", config).await;
    });
    let refused = broker.cli(&["shard", "isolate", "iso", HOT, "--shards", "2"], None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("gets one shard"), "{stderr}");
    let isolated = cli_ok(&broker, &["shard", "isolate", "iso", HOT]);
    assert!(isolated.starts_with("sealed "), "{isolated}");
    let sealed: Vec<&str> = isolated["sealed ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(sealed.len(), 1, "{isolated}");
    let refold = broker.cli(&["shard", "fold", "iso", "cold-a"], None);
    assert!(!refold.status.success());
    assert!(String::from_utf8_lossy(&refold.stderr).contains("not isolated"));
}

/// Shards carry their group from metadata v1 on: a client speaking only v0
/// (which could not route by the rules) is refused, not answered in a form
/// it would misread.
#[test]
fn a_v0_metadata_request_is_refused_with_unsupported_version() {
    use surge_protocol::codec::Wire;
    use surge_protocol::stream::MetadataRequest;
    use surge_protocol::ErrorCode;
    use surge_tests::raw::RawConn;

    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::ready(&broker.addr);
    let body = MetadataRequest::default().to_bytes();
    conn.send_frame(ApiKey::Metadata as u16, 0, &body);
    let (header, _) = conn.read_response().expect("a response");
    assert_eq!(header.error, ErrorCode::UnsupportedVersion);
    let current = conn.request(&MetadataRequest::default());
    assert!(current.is_ok(), "{current:?}");
}

/// A crash at each phase of an isolate (after the seal, after the
/// successors are taken, after the commit, after the publish) recovers the
/// old topology (no rule) for the first two and the new one for the others,
/// never a mix; every acknowledged event is still there once, and new hot
/// events go where the recovered rules say.
#[test]
fn a_crash_at_each_phase_of_an_isolate_recovers_old_or_new_rules() {
    for (phase, committed) in [
        ("change.sealed", false),
        ("change.successors", false),
        ("change.committed", true),
        ("change.published", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut broker = BrokerProcess::start_with_env(data, &[], &[("SURGE_FAILPOINTS", phase)]);
        let runtime = runtime();
        let acked = runtime.block_on(async {
            let client = broker.client().await;
            let config = StreamConfig {
                segment_bytes: SMALL_SEGMENT_BYTES,
                shard_count: 2,
                ..StreamConfig::default()
            };
            create_stream(&client, "iso", config).await;
            let producer = Producer::new(client.clone(), "iso", ProducerConfig::default())
                .await
                .unwrap();
            let mut acks = Vec::new();
            for index in 0..300 {
                let (event_type, key) = (TYPES[index % TYPES.len()], format!("k{}", index % 40));
                let value = format!("before:{index}:{event_type}:{key}");
                let event = Event::new(value.clone())
                    .with_key(key)
                    .with_type(event_type);
                acks.push((value, producer.send(event).await.unwrap()));
            }
            let mut acked = HashMap::new();
            for (value, ack) in acks {
                acked.insert(value, ack.await.unwrap());
            }
            let isolate = ChangeTopologyRequest {
                stream: "iso".into(),
                kind: ChangeKind::Isolate,
                event_type: HOT.into(),
                ..ChangeTopologyRequest::default()
            };
            assert!(
                client.change_topology(&isolate).await.is_err(),
                "{phase}: the broker must crash"
            );
            acked
        });
        assert!(
            broker.wait_for_crash(Duration::from_secs(10)),
            "{phase}: no crash"
        );
        broker.set_env(&[]);
        broker.restart();
        runtime.block_on(async {
            let client = broker.client().await;
            let described = client.describe_stream("iso").await.unwrap();
            let hot_shards: Vec<u32> = described
                .shards
                .iter()
                .filter(|shard| shard.group == HOT)
                .map(|shard| shard.shard_id)
                .collect();
            let (shards, epoch, hot) = if committed { (5, 2, 1) } else { (2, 1, 0) };
            assert_eq!(
                described.shards.len(),
                shards,
                "{phase}: {:?}",
                described.shards
            );
            assert_eq!(described.epoch, epoch, "{phase}");
            assert_eq!(hot_shards.len(), hot, "{phase}");
            check(&acked, &read_all(&client, "iso").await);
            let producer = Producer::new(client, "iso", ProducerConfig::default())
                .await
                .unwrap();
            let event = Event::new("after:0:hot:k1").with_key("k1").with_type(HOT);
            let ack = producer
                .send(event)
                .await
                .unwrap()
                .await
                .expect("writes after recovery");
            assert_eq!(
                hot_shards.contains(&ack.shard_id),
                committed,
                "{phase}: {ack:?}"
            );
        });
    }
}

/// A stale producer that still sends a mixed batch to a carrier sealed by
/// an isolate gets no error: the broker forwards each record by the new
/// rules, hot ones to the hot shard that owns their key, the rest to the
/// default successor.
#[test]
fn a_stale_batch_to_a_sealed_carrier_is_forwarded_by_the_rules() {
    use surge_protocol::batch::BatchBuilder;
    use surge_protocol::produce::{ProducePart, ProduceRequest};
    use surge_protocol::routing::key_hash;
    use surge_tests::raw::RawConn;

    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let runtime = runtime();
    runtime.block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            segment_bytes: SMALL_SEGMENT_BYTES,
            shard_count: 1,
            ..StreamConfig::default()
        };
        create_stream(&client, "iso", config).await;
        let isolate = ChangeTopologyRequest {
            stream: "iso".into(),
            kind: ChangeKind::Isolate,
            event_type: HOT.into(),
            shard_count: 2,
            ..ChangeTopologyRequest::default()
        };
        let done = client.change_topology(&isolate).await.unwrap();
        assert_eq!((done.sealed, done.created), (vec![0], vec![1, 2, 3]));
    });
    // Shard 0 was the only shard: it carried every type. Built for it, as a
    // producer that has not seen the isolate would.
    let records: Vec<(String, &str)> = (0..40)
        .map(|index| (format!("k{index}"), TYPES[index % TYPES.len()]))
        .collect();
    let mut builder = BatchBuilder::new(0, 77, 0);
    for (key, event_type) in &records {
        let value = format!("stale:0:{event_type}:{key}");
        let headers = [("type", event_type.as_bytes())];
        builder.push(1_000, Some(key.as_bytes()), value.as_bytes(), &headers);
    }
    let mut conn = RawConn::ready(&broker.addr);
    let response = conn
        .request(&ProduceRequest {
            stream: "iso".into(),
            parts: vec![ProducePart {
                shard_id: 0,
                batch: builder.finish(),
            }],
            ..ProduceRequest::default()
        })
        .unwrap();
    assert!(response.error.is_ok(), "{response:?}");
    let placements = &response.parts[0].placements;
    assert_eq!(placements.len(), records.len());
    for ((key, event_type), placement) in records.iter().zip(placements) {
        let expected = if *event_type != HOT {
            1
        } else if key_hash(key.as_bytes()) <= u64::MAX / 2 {
            2
        } else {
            3
        };
        assert_eq!(placement.shard_id, expected, "{event_type}/{key}");
    }
}
