//! Consumer behaviour against the fake broker: reading every shard,
//! skipping records below the start offset, group commit and resume.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{FakeBroker, STREAM};
use surge_client::{Client, ConsumedRecord, Consumer, ConsumerConfig, StartFrom};

fn config(start: StartFrom, group: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        start,
        group: group.map(str::to_owned),
        max_wait: Duration::from_millis(10),
        auto_commit: false,
        ..ConsumerConfig::default()
    }
}

/// Polls until `want` records arrived; bounded so a bug fails, not hangs.
async fn poll_until(consumer: &mut Consumer, want: usize) -> Vec<ConsumedRecord> {
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(consumer.poll().await.unwrap());
        if got.len() >= want {
            break;
        }
    }
    got
}

fn fill(fake: &FakeBroker) {
    let first: Vec<(i64, String)> = (0..5).map(|i| (1_000 + i, format!("s0-{i}"))).collect();
    let second: Vec<(i64, String)> = (5..10).map(|i| (1_000 + i, format!("s0-{i}"))).collect();
    let as_refs = |v: &[(i64, String)]| -> Vec<(i64, String)> { v.to_vec() };
    for batch in [as_refs(&first), as_refs(&second)] {
        let refs: Vec<(i64, &str)> = batch.iter().map(|(t, v)| (*t, v.as_str())).collect();
        fake.append(0, &refs);
    }
    fake.append(1, &[(1_000, "s1-0"), (1_001, "s1-1"), (1_002, "s1-2")]);
}

#[tokio::test]
async fn reads_every_shard_from_earliest_in_order() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let client = Client::connect(fake.config()).await.unwrap();
    let mut consumer = Consumer::new(client, STREAM, config(StartFrom::Earliest, None))
        .await
        .unwrap();
    assert_eq!(consumer.assignment(), vec![0, 1]);
    let records = poll_until(&mut consumer, 13).await;
    assert_eq!(records.len(), 13);
    let mut per_shard: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for consumed in records {
        let value = String::from_utf8(consumed.record.value.to_vec()).unwrap();
        per_shard
            .entry(consumed.shard_id)
            .or_default()
            .push((consumed.record.offset, value));
    }
    let expected0: Vec<(u64, String)> = (0..10).map(|i| (i, format!("s0-{i}"))).collect();
    assert_eq!(per_shard[&0], expected0);
    assert_eq!(per_shard[&1].len(), 3);
    assert_eq!(consumer.positions(), vec![(0, 10), (1, 3)]);
    assert!(consumer.poll().await.unwrap().is_empty());
}

#[tokio::test]
async fn skips_records_below_the_start_offset() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let client = Client::connect(fake.config()).await.unwrap();
    // Timestamp 1_003 is offset 3 of shard 0, inside its first batch.
    let start = StartFrom::Timestamp(1_003);
    let mut consumer = Consumer::new(client, STREAM, config(start, None))
        .await
        .unwrap();
    assert_eq!(consumer.positions(), vec![(0, 3), (1, 3)]);
    let records = poll_until(&mut consumer, 7).await;
    let offsets: Vec<u64> = records.iter().map(|c| c.record.offset).collect();
    assert_eq!(offsets, (3..10).collect::<Vec<u64>>());
    assert!(records.iter().all(|c| c.shard_id == 0));
}

#[tokio::test]
async fn group_commits_and_a_new_member_resumes() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let client = Client::connect(fake.config()).await.unwrap();
    let group = Some("readers");
    let mut first = Consumer::new(client.clone(), STREAM, config(StartFrom::Earliest, group))
        .await
        .unwrap();
    assert_eq!(first.assignment(), vec![0, 1]);
    assert_eq!(poll_until(&mut first, 13).await.len(), 13);
    first.commit().await.unwrap();
    first.close().await.unwrap();
    let committed = fake.state.lock().committed["readers"].clone();
    assert_eq!(committed, BTreeMap::from([(0, 10), (1, 3)]));

    fake.append(0, &[(2_000, "late-0"), (2_001, "late-1")]);
    let mut second = Consumer::new(client, STREAM, config(StartFrom::Earliest, group))
        .await
        .unwrap();
    assert_eq!(second.positions(), vec![(0, 10), (1, 3)]);
    let records = poll_until(&mut second, 2).await;
    let values: Vec<&[u8]> = records.iter().map(|c| &c.record.value[..]).collect();
    assert_eq!(values, vec![&b"late-0"[..], &b"late-1"[..]]);
}

#[tokio::test]
async fn auto_commit_commits_the_previous_poll() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let client = Client::connect(fake.config()).await.unwrap();
    let config = ConsumerConfig {
        auto_commit: true,
        ..config(StartFrom::Earliest, Some("auto"))
    };
    let mut consumer = Consumer::new(client, STREAM, config).await.unwrap();
    assert_eq!(poll_until(&mut consumer, 13).await.len(), 13);
    assert!(!fake.state.lock().committed.contains_key("auto"));
    consumer.poll().await.unwrap();
    let committed = fake.state.lock().committed["auto"].clone();
    assert_eq!(committed, BTreeMap::from([(0, 10), (1, 3)]));
}

#[tokio::test]
async fn reads_all_of_a_split_parent_before_any_child_record() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let client = Client::connect(fake.config()).await.unwrap();
    let mut consumer = Consumer::new(client, STREAM, config(StartFrom::Earliest, None))
        .await
        .unwrap();
    let (low, high) = fake.split(0);
    fake.append(low, &[(3_000, "low-0"), (3_001, "low-1")]);
    fake.append(high, &[(3_000, "high-0")]);
    let records = poll_until(&mut consumer, 16).await;
    let values: Vec<String> = records
        .iter()
        .map(|c| String::from_utf8(c.record.value.to_vec()).unwrap())
        .collect();
    assert_eq!(records.len(), 16, "{values:?}");
    let unique: std::collections::BTreeSet<&String> = values.iter().collect();
    assert_eq!(unique.len(), 16, "a record came twice: {values:?}");
    let last_parent = records.iter().rposition(|c| c.shard_id == 0).unwrap();
    let first_child = records
        .iter()
        .position(|c| c.shard_id == low || c.shard_id == high)
        .unwrap();
    assert!(last_parent < first_child, "child read early: {values:?}");
    assert!(consumer.assignment().contains(&low));
    assert!(consumer.poll().await.unwrap().is_empty());
}

#[tokio::test]
async fn latest_after_a_split_ignores_the_sealed_parent() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let (low, _high) = fake.split(0);
    let client = Client::connect(fake.config()).await.unwrap();
    let mut consumer = Consumer::new(client, STREAM, config(StartFrom::Latest, None))
        .await
        .unwrap();
    let positions: BTreeMap<u32, u64> = consumer.positions().into_iter().collect();
    assert_eq!(
        positions[&0], 10,
        "sealed parent counts as drained at its end"
    );
    assert_eq!(positions[&low], 0);
    fake.append(low, &[(3_000, "new-low")]);
    fake.append(1, &[(3_000, "new-1")]);
    let records = poll_until(&mut consumer, 2).await;
    let mut values: Vec<&[u8]> = records.iter().map(|c| &c.record.value[..]).collect();
    values.sort();
    assert_eq!(values, vec![&b"new-1"[..], &b"new-low"[..]]);
}

#[tokio::test]
async fn group_commits_a_drained_sealed_shards_end_and_gets_its_children() {
    let fake = FakeBroker::start().await;
    fill(&fake);
    let (low, high) = fake.split(0);
    fake.append(low, &[(3_000, "low-0")]);
    fake.append(high, &[(3_000, "high-0")]);
    let client = Client::connect(fake.config()).await.unwrap();
    // Latest for the shards that exist; the children start at earliest.
    let config = ConsumerConfig {
        heartbeat_interval: Duration::from_millis(20),
        ..config(StartFrom::Latest, Some("lineage"))
    };
    let mut consumer = Consumer::new(client, STREAM, config).await.unwrap();
    assert_eq!(consumer.assignment(), vec![0, 1]);
    let records = poll_until(&mut consumer, 2).await;
    let mut values: Vec<&[u8]> = records.iter().map(|c| &c.record.value[..]).collect();
    values.sort();
    assert_eq!(values, vec![&b"high-0"[..], &b"low-0"[..]]);
    let committed = fake.state.lock().committed["lineage"].clone();
    assert_eq!(committed.get(&0), Some(&10), "drained end not committed");
    assert_eq!(consumer.assignment(), vec![0, 1, low, high]);
}
