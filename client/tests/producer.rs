//! Producer behaviour against the fake broker: routing by key hash, per-key
//! order, linger, idempotent retry after a dropped connection, the window
//! of batches in flight per shard and its recovery after a failure.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use support::{FakeBroker, FakeState, STREAM};
use surge_client::{Client, Event, Producer, ProducerConfig};
use surge_protocol::batch::BATCH_HEADER_BYTES;
use surge_protocol::routing::key_hash;
use surge_protocol::ErrorCode;

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

/// A key whose hash falls in `shard`'s range.
fn key_in(fake: &FakeBroker, shard: u32, salt: &str) -> String {
    let state = fake.state.lock();
    let range = &state.shards[shard as usize];
    (0..10_000)
        .map(|index| format!("{salt}-{index}"))
        .find(|key| {
            let hash = key_hash(key.as_bytes());
            range.hash_start <= hash && hash <= range.hash_end
        })
        .expect("some key hashes into the shard")
}

#[tokio::test]
async fn keyed_events_across_a_split_are_acked_where_stored_in_key_order() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let config = ProducerConfig {
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, STREAM, config).await.unwrap();
    let total = 600u32;
    let mut acks = Vec::new();
    for index in 0..total {
        if index == total / 2 {
            fake.split(0);
        }
        let key = format!("key-{}", index % 30);
        let event = Event::new(format!("{key}/{index}")).with_key(key);
        acks.push((index.to_string(), producer.send(event).await.unwrap()));
        if index % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    producer.flush().await.unwrap();
    let mut resolved = Vec::new();
    for (index, ack) in acks {
        resolved.push((index, ack.await.unwrap()));
    }
    let state = fake.state.lock();
    let mut seen = std::collections::HashSet::new();
    for (index, ack) in resolved {
        assert!(
            seen.insert((ack.shard_id, ack.offset)),
            "acked twice: {ack:?}"
        );
        let stored = state.shards[ack.shard_id as usize]
            .records()
            .into_iter()
            .find(|record| record.offset == ack.offset)
            .unwrap_or_else(|| panic!("{ack:?} not stored"));
        let value = String::from_utf8(stored.value.to_vec()).unwrap();
        assert_eq!(value.rsplit('/').next(), Some(index.as_str()), "{ack:?}");
    }
    assert_eq!(
        state.shards.len(),
        4,
        "one split: shards 2 and 3 are children"
    );
    assert!(
        state.shards[2].next_offset + state.shards[3].next_offset > 0,
        "nothing reached the children"
    );
    // Lineage order: the sealed parent, then its children (disjoint keys).
    let mut last_index: HashMap<String, u32> = HashMap::new();
    let mut stored = 0;
    for shard in [0usize, 2, 3, 1] {
        for record in state.shards[shard].records() {
            let value = String::from_utf8(record.value.to_vec()).unwrap();
            let (key, index) = value.split_once('/').unwrap();
            let index: u32 = index.parse().unwrap();
            if let Some(previous) = last_index.insert(key.to_owned(), index) {
                assert!(previous < index, "{key}: {index} stored after {previous}");
            }
            stored += 1;
        }
    }
    assert_eq!(stored, total, "lost or duplicated events");
}

#[tokio::test]
async fn children_wait_for_a_batch_in_flight_to_their_parent() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let producer = Producer::new(client, STREAM, ProducerConfig::default())
        .await
        .unwrap();
    let parent_key = key_in(&fake, 0, "a");
    let other_key = key_in(&fake, 1, "b");
    fake.state.lock().slow_shard = Some((0, Duration::from_millis(400)));
    let first = producer
        .send(Event::new("a1").with_key(parent_key.clone()))
        .await
        .unwrap();
    for _ in 0..500 {
        if fake
            .state
            .lock()
            .log
            .iter()
            .any(|line| line == "received 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (low, high) = fake.split(0);
    // An answer from the other shard carries the new epoch: the producer
    // learns the children while the batch to their parent is in flight.
    let other = producer.send(Event::new("b1").with_key(other_key)).await;
    assert_eq!(other.unwrap().await.unwrap().shard_id, 1);
    let second = producer
        .send(Event::new("a2").with_key(parent_key.clone()))
        .await
        .unwrap();
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert_eq!((first.shard_id, first.offset), (0, 0));
    let child = fake.owner(parent_key.as_bytes());
    assert!(child == low || child == high);
    assert_eq!((second.shard_id, second.offset), (child, 0));
    let log = fake.state.lock().log.clone();
    let position = |line: &str| log.iter().position(|entry| entry == line);
    let answered = position("answered 0").expect("parent answered");
    let received = position(&format!("received {child}")).expect("child received");
    assert!(
        answered < received,
        "child batch sent while its parent's was in flight: {log:?}"
    );
}

#[tokio::test]
async fn a_batch_forwarded_by_a_sealed_shard_is_acked_per_placement() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let producer = Producer::new(client, STREAM, ProducerConfig::default())
        .await
        .unwrap();
    let keys: Vec<String> = (0..8)
        .map(|index| key_in(&fake, 0, &format!("k{index}")))
        .collect();
    let before = producer.send(Event::new("before").with_key(keys[0].clone()));
    assert_eq!(before.await.unwrap().await.unwrap().shard_id, 0);
    fake.split(0);
    // Still routed to the sealed shard by the stale map: one batch, forwarded.
    let mut acks = Vec::new();
    for key in &keys {
        let event = Event::new(format!("during/{key}")).with_key(key.clone());
        acks.push((key.clone(), producer.send(event).await.unwrap()));
    }
    producer.flush().await.unwrap();
    for (key, ack) in acks {
        let ack = ack.await.unwrap();
        assert_eq!(ack.shard_id, fake.owner(key.as_bytes()), "{key}");
        let state = fake.state.lock();
        let stored = state.shards[ack.shard_id as usize].records();
        let record = stored
            .iter()
            .find(|record| record.offset == ack.offset)
            .unwrap();
        assert_eq!(record.value, Bytes::from(format!("during/{key}")));
    }
    assert_eq!(fake.state.lock().forwarded_batches, 1);
    // The response's epoch refreshed routing: the next event goes direct.
    let after = producer.send(Event::new("after").with_key(keys[0].clone()));
    let after = after.await.unwrap().await.unwrap();
    assert_eq!(after.shard_id, fake.owner(keys[0].as_bytes()));
    assert_eq!(fake.state.lock().forwarded_batches, 1);
}

/// Regression: producers sharing one client shared its producer id, so their
/// per-shard sequences collided and the broker took one's batches for the
/// other's retries.
#[tokio::test]
async fn two_producers_on_one_client_do_not_deduplicate_each_other() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let mut producers = Vec::new();
    for _ in 0..2 {
        let config = ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        };
        producers.push(Producer::new(client.clone(), STREAM, config).await.unwrap());
    }
    let mut acks = Vec::new();
    for round in 0..20 {
        for (index, producer) in producers.iter().enumerate() {
            let event = Event::new(format!("p{index}-{round}")).with_key("one-key");
            acks.push(producer.send(event).await.unwrap());
        }
    }
    let mut offsets = std::collections::HashSet::new();
    for ack in acks {
        let ack = ack.await.unwrap();
        assert!(
            offsets.insert((ack.shard_id, ack.offset)),
            "two events acked at one place"
        );
    }
    for producer in producers {
        producer.close().await.unwrap();
    }
    let stored: usize = fake
        .state
        .lock()
        .shards
        .iter()
        .map(|shard| shard.records().len())
        .sum();
    assert_eq!(stored, 40);
}

/// A producer whose batches hold one event like `sample` each, with up to
/// `max_in_flight_per_shard` of them in flight per shard.
fn one_event_batches(sample: &Event, max_in_flight_per_shard: usize) -> ProducerConfig {
    let size = sample.record_bytes();
    ProducerConfig {
        linger: Duration::from_millis(1),
        max_batch_bytes: BATCH_HEADER_BYTES + size + size / 2,
        max_in_flight_per_shard,
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::default()
    }
}

fn count_lines(fake: &FakeBroker, line: &str) -> usize {
    fake.state
        .lock()
        .log
        .iter()
        .filter(|seen| *seen == line)
        .count()
}

/// At most `max_in_flight_per_shard` batches of a shard are in flight: the
/// rest waits for an answer. (The first batch under a producer id goes
/// alone; the window opens once the shard knows the producer.)
#[tokio::test]
async fn a_shard_has_at_most_its_window_of_batches_in_flight() {
    for window in [1, 3] {
        let fake = FakeBroker::start().await;
        let client = Client::connect(fake.config()).await.unwrap();
        let key = key_in(&fake, 0, "one");
        let event = |index: usize| Event::new(format!("{index:03}")).with_key(key.clone());
        let config = one_event_batches(&event(0), window);
        let producer = Producer::new(client, STREAM, config).await.unwrap();
        fake.state.lock().slow_shard = Some((0, Duration::from_millis(300)));
        let first = producer.send(event(0)).await.unwrap();
        assert_eq!(first.await.unwrap().offset, 0);
        let mut later = Vec::new();
        for index in 1..=6 {
            later.push(producer.send(event(index)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            count_lines(&fake, "received 0"),
            1 + window,
            "window {window}: batches in flight before an answer"
        );
        for (index, ack) in later.into_iter().enumerate() {
            assert_eq!(
                ack.await.unwrap().offset,
                index as u64 + 1,
                "window {window}"
            );
        }
        let log = fake.state.lock().log.clone();
        let second_answer = log
            .iter()
            .enumerate()
            .filter(|(_, line)| *line == "answered 0")
            .nth(1)
            .map(|(at, _)| at);
        let beyond_window = log
            .iter()
            .enumerate()
            .filter(|(_, line)| *line == "received 0")
            .nth(window + 1)
            .map(|(at, _)| at);
        assert!(
            second_answer < beyond_window,
            "window {window}: a batch beyond the window went before an answer: {log:?}"
        );
        producer.close().await.unwrap();
    }
}

/// Events 1, 2, ... (sent after event 0) were acknowledged at offsets 1, 2, ...
async fn assert_acked_in_send_order(acks: Vec<surge_client::AckFuture>) {
    for (index, ack) in acks.into_iter().enumerate() {
        let ack = ack.await.expect("no failure reaches the caller");
        assert_eq!(ack.offset, index as u64 + 1);
    }
}

/// Shard 0 holds events "000" to `last`, each once, in send order.
fn assert_stored_once_in_send_order(state: &FakeState, last: usize) {
    let values: Vec<Bytes> = state.shards[0]
        .records()
        .into_iter()
        .map(|record| record.value)
        .collect();
    let expected: Vec<Bytes> = (0..=last)
        .map(|index| Bytes::from(format!("{index:03}")))
        .collect();
    assert_eq!(values, expected, "stored once each, in send order");
}

/// After a batch fails (here a retriable refusal that stored nothing), the
/// batches sent behind it are refused as out of order; none of that reaches
/// the caller: the window goes out again in order, and every event is stored
/// once, in send order.
#[tokio::test]
async fn after_a_failed_batch_the_window_is_sent_again_in_order() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let key = key_in(&fake, 0, "one");
    let event = |index: usize| Event::new(format!("{index:03}")).with_key(key.clone());
    let producer = Producer::new(client, STREAM, one_event_batches(&event(0), 4))
        .await
        .unwrap();
    fake.state.lock().check_sequences = true;
    producer.send(event(0)).await.unwrap().await.unwrap();
    // Held back until linger, so all four go out together; the first of
    // them is refused.
    fake.state.lock().refuse_parts = vec![ErrorCode::Timeout];
    fake.state.lock().slow_shard = Some((0, Duration::from_millis(50)));
    let mut acks = Vec::new();
    for index in 1..=4 {
        acks.push(producer.send(event(index)).await.unwrap());
    }
    assert_acked_in_send_order(acks).await;
    producer.close().await.unwrap();
    let state = fake.state.lock();
    assert_stored_once_in_send_order(&state, 4);
    let refused_out_of_order = state
        .produced
        .iter()
        .filter(|(_, _, _, code)| *code == ErrorCode::OutOfOrderSequence)
        .count();
    assert!(
        refused_out_of_order > 0,
        "the later batches were not in flight behind the failed one: {:?}",
        state.produced
    );
    let resent: Vec<u64> = state
        .produced
        .iter()
        .skip_while(|(_, _, _, code)| *code != ErrorCode::OutOfOrderSequence)
        .filter(|(_, _, _, code)| code.is_ok())
        .map(|(_, _, sequence, _)| *sequence)
        .collect();
    assert_eq!(resent, vec![1, 2, 3, 4], "sent again in sequence order");
}

/// The connection drops while a window of batches is in flight (two are
/// stored, their answers lost): every batch goes out again on the new
/// connection in sequence order, none overtakes one still queued on the
/// old connection, and each event is stored once, in send order.
#[tokio::test]
async fn a_window_in_flight_over_a_dropped_connection_is_stored_once_in_order() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    let key = key_in(&fake, 0, "one");
    let event = |index: usize| Event::new(format!("{index:03}")).with_key(key.clone());
    let producer = Producer::new(client, STREAM, one_event_batches(&event(0), 4))
        .await
        .unwrap();
    fake.state.lock().check_sequences = true;
    producer.send(event(0)).await.unwrap().await.unwrap();
    fake.state.lock().drop_after_store = 2;
    let mut acks = Vec::new();
    for index in 1..=12 {
        acks.push(producer.send(event(index)).await.unwrap());
    }
    assert_acked_in_send_order(acks).await;
    producer.close().await.unwrap();
    let state = fake.state.lock();
    assert_stored_once_in_send_order(&state, 12);
    assert!(
        state.received_batches.len() > 13,
        "nothing was sent again: the connection never dropped"
    );
}
