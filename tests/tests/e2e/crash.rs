//! Crash safety: producers write with `fsync` durability while the broker is
//! killed with SIGKILL at random moments. After each restart every
//! acknowledged event is present exactly once at its acknowledged offset,
//! offsets are dense, and per-key order holds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surge_client::{Ack, Event, Producer, ProducerConfig, StreamConfig};
use surge_tests::BrokerProcess;

use crate::support::{create_stream, read_all, runtime, seed};

const PRODUCERS: usize = 4;
const KEYS: u32 = 10_000;
/// Acks each producer may have outstanding before it waits for the oldest.
const WINDOW: usize = 128;

fn rounds() -> usize {
    std::env::var("SURGE_CRASH_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20)
}

/// One producer's run until `stop`: returns the acknowledged events.
async fn produce_until(
    config: surge_client::ClientConfig,
    label: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<(String, Ack)> {
    let mut acked = Vec::new();
    let Ok(client) = surge_client::Client::connect(config).await else {
        return acked;
    };
    let producer_config = ProducerConfig {
        linger: Duration::from_millis(2),
        retries: 2,
        retry_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
        ..ProducerConfig::default()
    };
    let Ok(producer) = Producer::new(client, "crash", producer_config).await else {
        return acked;
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut window = std::collections::VecDeque::new();
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("k{}", rng.u32(..KEYS));
        let value = format!("{label}:{sequence}:{key}");
        sequence += 1;
        match producer.send(Event::new(value.clone()).with_key(key)).await {
            Ok(ack) => window.push_back((value, ack)),
            Err(_) => break,
        }
        if window.len() >= WINDOW {
            let (value, ack) = window.pop_front().expect("non-empty");
            if let Ok(ack) = ack.await {
                acked.push((value, ack));
            }
        }
    }
    for (value, ack) in window {
        if let Ok(ack) = ack.await {
            acked.push((value, ack));
        }
    }
    acked
}

/// Checks the invariants over everything read back.
fn check(all_acked: &HashMap<String, Ack>, records: &[surge_client::ConsumedRecord]) {
    let mut seen: HashMap<String, Ack> = HashMap::new();
    let mut offsets: HashMap<u32, Vec<u64>> = HashMap::new();
    // Per (producer run, key): the last sequence seen, to check order.
    let mut last_sequence: HashMap<(String, String), u64> = HashMap::new();
    for consumed in records {
        let value = String::from_utf8(consumed.record.value.to_vec()).expect("UTF-8 value");
        let at = Ack {
            shard_id: consumed.shard_id,
            offset: consumed.record.offset,
        };
        assert!(
            seen.insert(value.clone(), at).is_none(),
            "duplicate event {value}"
        );
        offsets
            .entry(consumed.shard_id)
            .or_default()
            .push(consumed.record.offset);
        let mut fields = value.split(':');
        let (label, sequence, key) = (
            fields.next().expect("label").to_owned(),
            fields
                .next()
                .expect("sequence")
                .parse::<u64>()
                .expect("number"),
            fields.next().expect("key").to_owned(),
        );
        if let Some(previous) = last_sequence.insert((label, key), sequence) {
            assert!(previous < sequence, "per-key order broken at {value}");
        }
    }
    for (shard, list) in &offsets {
        for (index, offset) in list.iter().enumerate() {
            assert_eq!(*offset, index as u64, "shard {shard}: offsets not dense");
        }
    }
    let mut missing = HashSet::new();
    for (value, ack) in all_acked {
        match seen.get(value) {
            Some(found) => assert_eq!(found, ack, "{value} moved"),
            None => {
                missing.insert(value.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        missing.iter().next()
    );
}

#[test]
fn acknowledged_events_survive_sigkill_at_random_points() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start(&dir, &["--set", "stream_defaults.segment_bytes=1048576"]);
    let runtime = runtime();
    runtime.block_on(async {
        let client = broker.client().await;
        create_stream(
            &client,
            "crash",
            StreamConfig {
                shard_count: 4,
                ..StreamConfig::default()
            },
        )
        .await;
    });
    let mut all_acked: HashMap<String, Ack> = HashMap::new();
    for round in 0..rounds() {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let label = format!("r{round}p{producer}");
                runtime.spawn(produce_until(
                    broker.client_config(),
                    label,
                    rng.u64(..),
                    stop.clone(),
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.u64(50..400)));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            for (value, ack) in runtime.block_on(task).expect("producer task") {
                all_acked.insert(value, ack);
            }
        }
        broker.restart();
        let records = runtime.block_on(async {
            let client = broker.client().await;
            read_all(&client, "crash").await
        });
        check(&all_acked, &records);
    }
    assert!(
        all_acked.len() > 1000,
        "only {} events were acknowledged: the test did not exercise the broker",
        all_acked.len()
    );
}
