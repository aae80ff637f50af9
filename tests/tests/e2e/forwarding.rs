//! Forwarding from a sealed shard under pressure: pipelined batches of one
//! producer keep their order through the forward, and a forward whose
//! piece fails part-way, or that a crash cuts short, loses nothing that is
//! acknowledged, even when the children that took its pieces are merged
//! before the producer retries.

use std::time::Duration;

use bytes::Bytes;
use surge_client::StreamConfig;
use surge_protocol::batch::BatchBuilder;
use surge_protocol::produce::{ProducePart, ProduceRequest, ProduceResponse};
use surge_protocol::routing::key_hash;
use surge_protocol::topology::{ChangeKind, ChangeTopologyRequest};
use surge_protocol::{ApiKey, ErrorCode, Request, Wire};
use surge_tests::raw::RawConn;
use surge_tests::BrokerProcess;

use crate::support::{create_stream, read_all, runtime, SMALL_SEGMENT_BYTES};

const SPLIT_AT: u64 = 1 << 63;

/// A broker with `failpoints` armed and one stream, "live", whose only
/// shard 0 stored `before` and was then split at `SPLIT_AT` into 1 (low
/// hashes) and 2 (high).
fn split_stream(dir: &tempfile::TempDir, failpoints: &str, before: Bytes) -> BrokerProcess {
    let data = dir.path().join("data");
    let broker = BrokerProcess::start_with_env(data, &[], &[("SURGE_FAILPOINTS", failpoints)]);
    runtime().block_on(async {
        let client = broker.client().await;
        let config = StreamConfig {
            segment_bytes: SMALL_SEGMENT_BYTES,
            shard_count: 1,
            ..StreamConfig::default()
        };
        create_stream(&client, "live", config).await;
    });
    let stored = RawConn::ready(&broker.addr)
        .request(&produce(before))
        .expect("produce before the split");
    assert!(stored.error.is_ok(), "{stored:?}");
    runtime().block_on(async {
        let client = broker.client().await;
        let split = ChangeTopologyRequest {
            stream: "live".into(),
            kind: ChangeKind::Split,
            shard_id: 0,
            split_at: Some(SPLIT_AT),
            ..ChangeTopologyRequest::default()
        };
        client.change_topology(&split).await.unwrap();
    });
    broker
}

/// `count` keys whose hashes fall below `SPLIT_AT` (`low`) or above it.
fn keys(low: bool, count: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|index| format!("{tag}{index}"))
        .filter(|key| (key_hash(key.as_bytes()) < SPLIT_AT) == low)
        .take(count)
        .collect()
}

/// A batch addressed to the sealed shard 0, one record per key, valued
/// `v:{key}`.
fn batch(producer_id: u64, base_sequence: u64, keys: &[String]) -> Bytes {
    let mut builder = BatchBuilder::new(0, producer_id, base_sequence);
    for key in keys {
        builder.push(
            1_000,
            Some(key.as_bytes()),
            format!("v:{key}").as_bytes(),
            &[],
        );
    }
    builder.finish()
}

fn produce(batch: Bytes) -> ProduceRequest {
    ProduceRequest {
        stream: "live".into(),
        parts: vec![ProducePart { shard_id: 0, batch }],
        ..ProduceRequest::default()
    }
}

/// The values of every record readable in "live".
fn stored_values(broker: &BrokerProcess) -> Vec<String> {
    let records = runtime().block_on(async { read_all(&broker.client().await, "live").await });
    records
        .iter()
        .map(|consumed| String::from_utf8(consumed.record.value.to_vec()).unwrap())
        .collect()
}

/// The request succeeded and every record was placed, none taken for a
/// duplicate (a duplicate's placement has no offset).
fn assert_forwarded(response: &ProduceResponse, what: &str) {
    assert!(response.error.is_ok(), "{what}: {response:?}");
    let placements = &response.parts[0].placements;
    assert!(
        placements
            .iter()
            .all(|placement| placement.offset != u64::MAX),
        "{what} was taken for a duplicate: {placements:?}"
    );
}

fn assert_stored(stored: &[String], keys: &[String], what: &str) {
    for key in keys {
        assert!(
            stored.contains(&format!("v:{key}")),
            "{what}: {key} acknowledged but not stored; stored: {stored:?}"
        );
    }
}

/// Regression: two pipelined batches of one producer reached the sealed
/// shard, and each request's task forwarded its own. The first forward is
/// slow (two pieces, `forward.piece` pauses after each), so the second
/// batch reached the high child first; the child accepts gaps from a
/// forwarded origin, stored it, and then took the first batch's high piece
/// for a duplicate: acknowledged, never stored.
#[test]
fn pipelined_batches_to_a_sealed_shard_are_forwarded_in_order() {
    // What the producer stored before the split: its children inherit it,
    // so its origin is a forwarded one there (gaps accepted).
    let early_keys = keys(true, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let broker = split_stream(&dir, "forward.piece", batch(7_001, 0, &early_keys));
    // The first batch: low keys first, so its slow low piece holds its
    // high piece back; the second: high keys only, one quick piece.
    let first_keys = [keys(true, 3, "a"), keys(false, 3, "a")].concat();
    let second_keys = keys(false, 3, "b");
    let first_base = early_keys.len() as u64;
    let first = produce(batch(7_001, first_base, &first_keys));
    let second_base = first_base + first_keys.len() as u64;
    let second = produce(batch(7_001, second_base, &second_keys));
    let mut conn = RawConn::ready(&broker.addr);
    let version = ApiKey::Produce.versions().1;
    let first_id = conn.send_frame(ProduceRequest::API_KEY as u16, version, &first.to_bytes());
    let second_id = conn.send_frame(ProduceRequest::API_KEY as u16, version, &second.to_bytes());
    let mut responses = [read_produce_any(&mut conn), read_produce_any(&mut conn)];
    responses.sort_by_key(|(correlation, _)| *correlation);
    assert_eq!(responses[0].0, first_id);
    assert_eq!(responses[1].0, second_id);
    for (correlation, response) in &responses {
        assert_forwarded(response, &format!("request {correlation}"));
    }
    let stored = stored_values(&broker);
    assert_stored(&stored, &first_keys, "first batch");
    assert_stored(&stored, &second_keys, "second batch");
    assert_stored(&stored, &early_keys, "before the split");
}

/// Regression: a sealed shard judged a batch against what it stored before
/// the seal only, so a producer's batch behind one it had forwarded looked
/// like a gap and was refused as out of order (over and over: the producer
/// had nothing to fill it with). The successors, which took the forwarded
/// one, are the ones to judge it.
#[test]
fn a_batch_behind_a_forwarded_one_is_forwarded_too() {
    let early_keys = keys(false, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let broker = split_stream(&dir, "", batch(7_003, 0, &early_keys));
    let first_keys = keys(true, 3, "d");
    let second_keys = keys(true, 3, "e");
    let first_base = early_keys.len() as u64;
    let second_base = first_base + first_keys.len() as u64;
    let mut conn = RawConn::ready(&broker.addr);
    for (base, keys) in [(first_base, &first_keys), (second_base, &second_keys)] {
        let response = conn
            .request(&produce(batch(7_003, base, keys)))
            .expect("produce");
        assert!(response.error.is_ok(), "batch at {base}: {response:?}");
    }
    let stored = stored_values(&broker);
    assert_stored(&stored, &first_keys, "first batch");
    assert_stored(&stored, &second_keys, "second batch");
}

/// Merges the split's children, 1 and 2.
fn merge_children(broker: &BrokerProcess) {
    runtime().block_on(async {
        let merge = ChangeTopologyRequest {
            stream: "live".into(),
            kind: ChangeKind::Merge,
            shard_id: 1,
            other_shard_id: 2,
            ..ChangeTopologyRequest::default()
        };
        broker.client().await.change_topology(&merge).await.unwrap();
    });
}

/// Either response of two pipelined requests, with its correlation id.
fn read_produce_any(conn: &mut RawConn) -> (u32, ProduceResponse) {
    let (header, body) = conn.read_response().expect("a response before close");
    assert!(header.error.is_ok(), "frame error {:?}", header.error);
    let response = ProduceResponse::decode_all(body).expect("decodable produce response");
    (header.correlation_id, response)
}

/// Regression: a forward placed its low piece, then the high piece's
/// append failed (`forward.later_piece` fails it once), and the request
/// failed. The children were merged before the producer retried; the merged
/// shard inherited the low piece's last sequence (the whole batch's), took
/// the retry for a duplicate, and the high records were acknowledged but
/// never stored. A transient failure must not end a forward half-done.
#[test]
fn a_failed_piece_then_a_merge_loses_no_acknowledged_record() {
    let early_keys = keys(false, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let broker = split_stream(&dir, "forward.later_piece", batch(7_002, 0, &early_keys));
    let all_keys = [keys(true, 3, "c"), keys(false, 3, "c")].concat();
    let request = produce(batch(7_002, early_keys.len() as u64, &all_keys));
    let mut conn = RawConn::ready(&broker.addr);
    let first = conn.request(&request).expect("produce");
    merge_children(&broker);
    // The producer's retry: the same bytes, still addressed to shard 0.
    let mut acked = first.error.is_ok();
    for _ in 0..10 {
        if acked {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        acked = conn.request(&request).expect("produce retry").error.is_ok();
    }
    assert!(acked, "the batch was never acknowledged");
    assert_stored(&stored_values(&broker), &all_keys, "retried batch");
}

/// Regression: after a restart, sealed shards were opened writable, so a
/// producer with an old routing table appended to a sealed shard past its
/// sealed end, where no consumer reads.
#[test]
fn a_sealed_shard_forwards_after_a_restart() {
    let early_keys = keys(false, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = split_stream(&dir, "", batch(7_004, 0, &early_keys));
    broker.restart();
    let later_keys = [keys(true, 2, "f"), keys(false, 2, "f")].concat();
    let response = RawConn::ready(&broker.addr)
        .request(&produce(batch(7_004, early_keys.len() as u64, &later_keys)))
        .expect("produce");
    assert!(response.error.is_ok(), "{response:?}");
    assert_eq!(
        response.parts[0].placements.len(),
        later_keys.len(),
        "{response:?}"
    );
    assert_stored(&stored_values(&broker), &later_keys, "after the restart");
}

/// Regression: a producer's batch reached a sealed shard ahead of the one
/// before it (the earlier one went out later, on the client's side of the
/// wire). The successor accepts gaps from a forwarded origin, so it stored
/// the later batch, then took the earlier one for a duplicate:
/// acknowledged, never stored. The sealed shard now refuses a batch past
/// the producer's next sequence, as an open shard does.
#[test]
fn a_batch_ahead_of_its_predecessor_at_a_sealed_shard_waits_for_it() {
    let early_keys = keys(true, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let broker = split_stream(&dir, "", batch(7_005, 0, &early_keys));
    let first_keys = keys(true, 3, "g");
    let second_keys = keys(true, 3, "h");
    let first_base = early_keys.len() as u64;
    let second_base = first_base + first_keys.len() as u64;
    let first = produce(batch(7_005, first_base, &first_keys));
    let second = produce(batch(7_005, second_base, &second_keys));
    let mut conn = RawConn::ready(&broker.addr);
    let ahead = conn.request(&second).expect("produce");
    assert_eq!(ahead.error, ErrorCode::OutOfOrderSequence, "{ahead:?}");
    for (what, request) in [("first", &first), ("second", &second)] {
        let response = conn.request(request).expect("produce");
        assert_forwarded(&response, what);
    }
    let stored = stored_values(&broker);
    assert_stored(&stored, &first_keys, "first batch");
    assert_stored(&stored, &second_keys, "second batch");
}

/// Regression: a crash cut a forward short after its low piece landed. The
/// children were merged before the producer retried, and the merged shard
/// inherited the low child's sequence (the whole batch's last) as if both
/// children had taken their pieces: it took the retry for a duplicate, and
/// the high records were acknowledged but never stored. Parents that
/// disagree now leave their successor the lowest sequence, so the retry is
/// stored (the low records twice: at least once, never lost).
#[test]
fn a_forward_cut_short_by_a_crash_then_a_merge_loses_no_acknowledged_record() {
    let early_keys = keys(false, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = split_stream(&dir, "forward.landed", batch(7_006, 0, &early_keys));
    let all_keys = [keys(true, 3, "i"), keys(false, 3, "i")].concat();
    let request = produce(batch(7_006, early_keys.len() as u64, &all_keys));
    let mut conn = RawConn::ready(&broker.addr);
    let version = ApiKey::Produce.versions().1;
    conn.send_frame(ProduceRequest::API_KEY as u16, version, &request.to_bytes());
    assert!(
        conn.is_closed(),
        "the broker must crash after the first piece"
    );
    assert!(broker.wait_for_crash(Duration::from_secs(10)), "no crash");
    broker.set_env(&[]);
    broker.restart();
    merge_children(&broker);
    let retry = RawConn::ready(&broker.addr)
        .request(&request)
        .expect("produce retry");
    assert!(retry.error.is_ok(), "{retry:?}");
    assert_stored(&stored_values(&broker), &all_keys, "retried batch");
}

/// Regression: a shard sealed before its first idempotent producer left its
/// successors no state for that producer, so they did not know its origin
/// for a forwarded one: the first forwarded piece set a strict entry, and
/// the next piece, which starts past the records a sibling took, was
/// refused as out of order, an error the producer could not fix.
#[test]
fn a_producer_new_to_a_sealed_shard_is_forwarded_batch_after_batch() {
    let dir = tempfile::tempdir().unwrap();
    // Not idempotent (producer 0): the sealed shard has no producer state.
    let broker = split_stream(&dir, "", batch(0, 0, &keys(true, 2, "z")));
    let mut conn = RawConn::ready(&broker.addr);
    let mut base = 0;
    let mut all = Vec::new();
    for tag in ["j", "k", "l"] {
        let batch_keys = [keys(true, 2, tag), keys(false, 2, tag)].concat();
        let response = conn
            .request(&produce(batch(7_007, base, &batch_keys)))
            .expect("produce");
        assert_forwarded(&response, &format!("batch at {base}"));
        base += batch_keys.len() as u64;
        all.extend(batch_keys);
    }
    assert_stored(&stored_values(&broker), &all, "every batch");
}

/// Regression: after a restart, a sealed shard no longer knew which of a
/// producer's batches it had forwarded, so a batch ahead of its
/// predecessor went through; the low child stored it, then took the
/// predecessor's low piece for a duplicate: acknowledged, never stored.
/// The sealed shard now starts from what its successors hold.
#[test]
fn after_a_restart_a_sealed_shard_still_refuses_a_batch_ahead_of_its_turn() {
    let early_keys = keys(true, 2, "z");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = split_stream(&dir, "", batch(7_008, 0, &early_keys));
    let first_keys = keys(true, 2, "m");
    let second_keys = keys(true, 2, "n");
    let third_keys = keys(true, 2, "o");
    let first_base = early_keys.len() as u64;
    let second_base = first_base + first_keys.len() as u64;
    let third_base = second_base + second_keys.len() as u64;
    let first = RawConn::ready(&broker.addr)
        .request(&produce(batch(7_008, first_base, &first_keys)))
        .expect("produce");
    assert_forwarded(&first, "first");
    broker.restart();
    let second = produce(batch(7_008, second_base, &second_keys));
    let third = produce(batch(7_008, third_base, &third_keys));
    let mut conn = RawConn::ready(&broker.addr);
    let ahead = conn.request(&third).expect("produce");
    assert_eq!(ahead.error, ErrorCode::OutOfOrderSequence, "{ahead:?}");
    for (what, request) in [("second", &second), ("third", &third)] {
        assert_forwarded(&conn.request(request).expect("produce"), what);
    }
    let stored = stored_values(&broker);
    assert_stored(&stored, &second_keys, "second batch");
    assert_stored(&stored, &third_keys, "third batch");
}
