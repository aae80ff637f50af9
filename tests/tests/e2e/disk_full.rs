//! A full disk, for real: the broker's data directory is a small tmpfs.
//! Producers get `DiskFull` (no hang, no crash), every acknowledged event
//! stays readable, and appends work again once space is freed.

use surge_client::{ClientError, Event, Producer, ProducerConfig, StreamConfig};
use surge_protocol::ErrorCode;
use surge_tests::BrokerProcess;

use crate::support::{create_stream, read_all, runtime};

/// Events sent before their acks are awaited.
const WINDOW: usize = 256;
const SEGMENT_BYTES: u64 = 1 << 20;

fn value(tag: &str, index: usize) -> Vec<u8> {
    let mut value = format!("{tag}:{index:08}:").into_bytes();
    value.resize(1024, b'.');
    value
}

/// Sends `count` 1 KiB events to `producer` (keys spread over its shards)
/// until the first failure; returns the values acknowledged and that
/// failure.
async fn produce(
    producer: &Producer,
    tag: &str,
    count: usize,
) -> (Vec<Vec<u8>>, Option<ClientError>) {
    let mut acked = Vec::new();
    for start in (0..count).step_by(WINDOW) {
        let mut pending = Vec::new();
        for index in start..(start + WINDOW).min(count) {
            let event = Event::new(value(tag, index)).with_key(format!("k{}", index % 64));
            match producer.send(event).await {
                Ok(ack) => pending.push((value(tag, index), ack)),
                Err(error) => return (acked, Some(error)),
            }
        }
        let mut failure = None;
        for (value, ack) in pending {
            match ack.await {
                Ok(_) => acked.push(value),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        if failure.is_some() {
            return (acked, failure);
        }
    }
    (acked, None)
}

#[test]
fn a_full_disk_refuses_appends_with_disk_full_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_on_tmpfs(&dir, "32m");
    runtime().block_on(async {
        let client = broker.client().await;
        let config = |shard_count| StreamConfig {
            segment_bytes: SEGMENT_BYTES,
            shard_count,
            ..StreamConfig::default()
        };
        create_stream(&client, "ballast", config(1)).await;
        create_stream(&client, "full", config(2)).await;
        let ballast = Producer::new(client.clone(), "ballast", ProducerConfig::default())
            .await
            .unwrap();
        let (stored, failure) = produce(&ballast, "ballast", 8 * 1024).await;
        assert!(failure.is_none(), "8 MiB of ballast: {failure:?}");
        assert_eq!(stored.len(), 8 * 1024);

        // 40 MiB cannot fit in what is left of 32.
        let producer = Producer::new(client.clone(), "full", ProducerConfig::default())
            .await
            .unwrap();
        let (acked, failure) = produce(&producer, "before", 40 * 1024).await;
        let failure = failure.expect("the disk filled up");
        assert_eq!(failure.code(), Some(ErrorCode::DiskFull), "{failure}");
        assert!(acked.len() > 1_000, "only {} acknowledged", acked.len());

        // Still serving, and nothing acknowledged is missing.
        let read: std::collections::HashSet<Vec<u8>> = read_all(&client, "full")
            .await
            .into_iter()
            .map(|consumed| consumed.record.value.to_vec())
            .collect();
        let lost = acked.iter().filter(|value| !read.contains(*value)).count();
        assert_eq!(
            lost,
            0,
            "{lost} of {} acknowledged events lost",
            acked.len()
        );

        // A new stream does not fit either, and says why.
        let refused = client
            .create_stream("more", config(2))
            .await
            .expect_err("no room for another stream");
        assert_eq!(refused.code(), Some(ErrorCode::DiskFull), "{refused}");

        // Space freed: the stream takes appends again, across new segments.
        client.delete_stream("ballast").await.unwrap();
        let producer = Producer::new(client.clone(), "full", ProducerConfig::default())
            .await
            .unwrap();
        let (after, failure) = produce(&producer, "after", 4 * 1024).await;
        assert!(failure.is_none(), "after freeing space: {failure:?}");
        let read = read_all(&client, "full").await;
        let found = read
            .iter()
            .filter(|consumed| consumed.record.value.starts_with(b"after:"))
            .count();
        assert_eq!(found, after.len());
        // The refused stream left nothing behind that is in the way now.
        client.create_stream("more", config(2)).await.unwrap();
    });
}
