//! Bad input over real TCP: each kind gets its typed error, the broker keeps
//! serving, and nothing is appended from a rejected request.

use bytes::{Bytes, BytesMut};
use surge_protocol::api::ApiKey;
use surge_protocol::batch::BatchBuilder;
use surge_protocol::fetch::{FetchPart, FetchRequest};
use surge_protocol::handshake::HandshakeRequest;
use surge_protocol::offsets::{ListOffsetsPart, ListOffsetsRequest, OffsetSpec};
use surge_protocol::produce::{ProducePart, ProduceRequest};
use surge_protocol::stream::{CreateStreamRequest, DescribeStreamRequest, StreamConfig};
use surge_protocol::ErrorCode;
use surge_tests::raw::RawConn;
use surge_tests::BrokerProcess;

fn batch(values: &[&str]) -> Bytes {
    batch_for(0, values)
}

fn batch_for(shard: u32, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(shard, 0, 0);
    for value in values {
        builder.push(1_000, Some(b"key"), value.as_bytes(), &[]);
    }
    builder.finish()
}

fn create(conn: &mut RawConn, name: &str, shards: u32) {
    let response = conn
        .request(&CreateStreamRequest {
            name: name.into(),
            config: StreamConfig {
                shard_count: shards,
                ..StreamConfig::default()
            },
        })
        .unwrap();
    assert_eq!(response.error, ErrorCode::None, "{}", response.message);
}

fn produce(conn: &mut RawConn, stream: &str, parts: Vec<(u32, Bytes)>) -> Vec<ErrorCode> {
    let response = conn
        .request(&ProduceRequest {
            stream: stream.into(),
            parts: parts
                .into_iter()
                .map(|(shard_id, batch)| ProducePart { shard_id, batch })
                .collect(),
            ..ProduceRequest::default()
        })
        .unwrap();
    response.parts.iter().map(|part| part.error).collect()
}

fn shard_end(conn: &mut RawConn, stream: &str, shard: u32) -> u64 {
    let response = conn
        .request(&DescribeStreamRequest {
            name: stream.into(),
        })
        .unwrap();
    response.shards[shard as usize].high_watermark
}

#[test]
fn requests_before_handshake_are_refused_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::connect(&broker.addr);
    let failure = conn
        .request(&DescribeStreamRequest { name: "x".into() })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::HandshakeRequired);
    assert!(conn.is_closed());
}

#[test]
fn unsupported_protocol_range_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::connect(&broker.addr);
    let response = conn
        .request(&HandshakeRequest {
            client_id: "future".into(),
            min_protocol: 90,
            max_protocol: 99,
        })
        .unwrap();
    assert_eq!(response.error, ErrorCode::UnsupportedVersion);
}

#[test]
fn unknown_api_and_version_get_errors_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::ready(&broker.addr);
    conn.send_frame(999, 0, &[]);
    let (header, _) = conn.read_response().unwrap();
    assert_eq!(header.error, ErrorCode::UnknownApi);
    conn.send_frame(4, 77, &[]);
    let (header, _) = conn.read_response().unwrap();
    assert_eq!(header.error, ErrorCode::UnsupportedVersion);
    create(&mut conn, "still-serving", 1);
}

#[test]
fn malformed_body_gets_malformed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::ready(&broker.addr);
    // DescribeStream with a string length that runs past the body.
    let (_, version) = ApiKey::DescribeStream.versions();
    conn.send_frame(4, version, &[200, 0, b'a']);
    let (header, _) = conn.read_response().unwrap();
    assert_eq!(header.error, ErrorCode::MalformedFrame);
    // Trailing bytes after a valid body are malformed too.
    conn.send_frame(4, version, &[1, 0, b'a', 0xFF]);
    let (header, _) = conn.read_response().unwrap();
    assert_eq!(header.error, ErrorCode::MalformedFrame);
}

#[test]
fn oversized_frame_is_refused_before_buffering_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &["--set", "max_frame_bytes=9000000"]);
    let mut conn = RawConn::ready(&broker.addr);
    let mut header = BytesMut::new();
    header.extend_from_slice(&(1u32 << 30).to_le_bytes());
    header.extend_from_slice(&6u16.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&42u32.to_le_bytes());
    conn.send_bytes(&header);
    let (response, _) = conn.read_response().unwrap();
    assert_eq!(response.error, ErrorCode::FrameTooLarge);
    assert_eq!(response.correlation_id, 42);
    assert!(conn.is_closed());
}

#[test]
fn bad_batches_are_rejected_whole_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::ready(&broker.addr);
    create(&mut conn, "orders", 2);

    let good = batch(&["a", "b"]);
    let mut corrupt = batch_for(1, &["a", "b"]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let errors = produce(
        &mut conn,
        "orders",
        vec![(0, good.clone()), (1, Bytes::from(corrupt))],
    );
    assert_eq!(
        errors,
        vec![ErrorCode::InvalidRequest, ErrorCode::InvalidBatch]
    );
    assert_eq!(
        shard_end(&mut conn, "orders", 0),
        0,
        "valid part of a rejected request was appended"
    );

    assert_eq!(
        produce(&mut conn, "orders", vec![(0, Bytes::new())]),
        vec![ErrorCode::EmptyBatch]
    );
    assert_eq!(
        produce(&mut conn, "orders", vec![(7, good.clone())]),
        vec![ErrorCode::UnknownShard]
    );
    assert_eq!(
        produce(&mut conn, "nope", vec![(0, good.clone())]),
        vec![ErrorCode::UnknownStream]
    );
    let mut trailing = good.to_vec();
    trailing.extend_from_slice(b"junk");
    assert_eq!(
        produce(&mut conn, "orders", vec![(0, Bytes::from(trailing))]),
        vec![ErrorCode::InvalidBatch]
    );
    assert_eq!(shard_end(&mut conn, "orders", 0), 0);

    assert_eq!(
        produce(&mut conn, "orders", vec![(0, good)]),
        vec![ErrorCode::None]
    );
    assert_eq!(shard_end(&mut conn, "orders", 0), 2);
}

#[test]
fn oversized_batch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &dir,
        &[
            "--set",
            "max_batch_bytes=65536",
            "--set",
            "max_frame_bytes=1048576",
        ],
    );
    let mut conn = RawConn::ready(&broker.addr);
    create(&mut conn, "big", 1);
    let value = "x".repeat(70_000);
    let errors = produce(&mut conn, "big", vec![(0, batch(&[value.as_str()]))]);
    assert_eq!(errors, vec![ErrorCode::BatchTooLarge]);
}

#[test]
fn fetch_and_list_offsets_report_range_and_unknown_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::ready(&broker.addr);
    create(&mut conn, "events", 1);
    assert_eq!(
        produce(&mut conn, "events", vec![(0, batch(&["a", "b", "c"]))]),
        vec![ErrorCode::None]
    );
    let fetch = |conn: &mut RawConn, stream: &str, shard_id: u32, offset: u64| {
        conn.request(&FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            parts: vec![FetchPart {
                stream: stream.into(),
                shard_id,
                offset,
                max_bytes: 1 << 20,
            }],
        })
        .unwrap()
        .parts
        .remove(0)
    };
    let ok = fetch(&mut conn, "events", 0, 1);
    assert_eq!(ok.error, ErrorCode::None);
    assert_eq!(ok.high_watermark, 3);
    assert!(!ok.records.is_empty());
    assert_eq!(
        fetch(&mut conn, "events", 0, 4).error,
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        fetch(&mut conn, "events", 9, 0).error,
        ErrorCode::UnknownShard
    );
    assert_eq!(
        fetch(&mut conn, "ghost", 0, 0).error,
        ErrorCode::UnknownStream
    );
    let at_end = fetch(&mut conn, "events", 0, 3);
    assert_eq!(at_end.error, ErrorCode::None);
    assert!(at_end.records.is_empty());

    let offsets = conn
        .request(&ListOffsetsRequest {
            parts: vec![
                ListOffsetsPart {
                    stream: "events".into(),
                    shard_id: 0,
                    spec: OffsetSpec::Latest,
                    timestamp_ms: 0,
                },
                ListOffsetsPart {
                    stream: "ghost".into(),
                    shard_id: 0,
                    spec: OffsetSpec::Earliest,
                    timestamp_ms: 0,
                },
            ],
        })
        .unwrap();
    assert_eq!(offsets.parts[0].offset, 3);
    assert_eq!(offsets.parts[1].error, ErrorCode::UnknownStream);
}

#[test]
fn invalid_stream_names_and_settings_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut conn = RawConn::ready(&broker.addr);
    for name in ["", "has space", "../escape", "slash/name"] {
        let response = conn
            .request(&CreateStreamRequest {
                name: name.into(),
                config: StreamConfig::default(),
            })
            .unwrap();
        assert_eq!(
            response.error,
            ErrorCode::InvalidStreamName,
            "name {name:?}"
        );
    }
    let response = conn
        .request(&CreateStreamRequest {
            name: "huge".into(),
            config: StreamConfig {
                shard_count: 1_000_000,
                ..StreamConfig::default()
            },
        })
        .unwrap();
    assert_eq!(response.error, ErrorCode::InvalidRequest);
    create(&mut conn, "dup", 1);
    let response = conn
        .request(&CreateStreamRequest {
            name: "dup".into(),
            config: StreamConfig::default(),
        })
        .unwrap();
    assert_eq!(response.error, ErrorCode::StreamExists);
}
