//! Helpers shared by the scenarios: a runtime, stream creation, and reading
//! a whole stream back.

use std::time::Duration;

use surge_client::{Client, ConsumedRecord, Consumer, ConsumerConfig, StartFrom, StreamConfig};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The seed for a randomised test: `SURGE_TEST_SEED` or a fresh one,
/// printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("SURGE_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed: {seed} (replay with SURGE_TEST_SEED={seed})");
    seed
}

/// Segment size for streams that go through many topology changes: every
/// successor preallocates a segment, and at the default 64 MiB a few hundred
/// changes would fallocate tens of gigabytes.
pub const SMALL_SEGMENT_BYTES: u64 = 4 << 20;

pub async fn create_stream(client: &Client, name: &str, config: StreamConfig) {
    client
        .create_stream(name, config)
        .await
        .unwrap_or_else(|err| panic!("create stream {name}: {err}"));
}

/// Reads every shard of `stream` from the earliest offset up to the high
/// watermarks it has now.
pub async fn read_all(client: &Client, stream: &str) -> Vec<ConsumedRecord> {
    let described = client.describe_stream(stream).await.expect("describe");
    let expected: u64 = described
        .shards
        .iter()
        .map(|shard| shard.high_watermark - shard.log_start_offset)
        .sum();
    let config = ConsumerConfig {
        start: StartFrom::Earliest,
        max_wait: Duration::from_millis(200),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client.clone(), stream, config)
        .await
        .expect("consumer");
    let mut records = Vec::new();
    // Consecutive empty polls: a lineage-following reader has some between
    // a parent's end and its children's start, so only a run of them means
    // it is stuck. Past the lineage refresh interval (5 s) it is.
    let mut empty_polls = 0;
    while (records.len() as u64) < expected && empty_polls < 40 {
        let polled = consumer.poll().await.expect("poll");
        if polled.is_empty() {
            empty_polls += 1;
        } else {
            empty_polls = 0;
        }
        records.extend(polled);
    }
    if (records.len() as u64) < expected {
        eprintln!(
            "read_all: read {} of the {expected} records below the high watermarks of {stream}",
            records.len()
        );
    }
    records
}
