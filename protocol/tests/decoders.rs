//! Property tests for every decoder: random bytes never panic, and every
//! message that encodes decodes back to itself.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use surge_protocol::batch::{self, BatchBuilder, MAX_BATCH_BYTES};
use surge_protocol::fetch::{FetchPart, FetchPartResponse, FetchRequest, FetchResponse};
use surge_protocol::frame::{self, FrameCheck};
use surge_protocol::group::{Assignment, CommitOffsetsRequest, ShardOffset};
use surge_protocol::produce::{Acks, ProducePart, ProduceRequest};
use surge_protocol::stream::{
    CreateStreamRequest, MetadataResponse, ShardInfo, ShardState, StreamConfig,
};
use surge_protocol::{ErrorCode, Wire};

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn shard_info() -> impl Strategy<Value = ShardInfo> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..3),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                shard_id,
                hash_start,
                hash_end,
                sealed,
                parents,
                log_start_offset,
                high_watermark,
            )| ShardInfo {
                shard_id,
                hash_start,
                hash_end,
                state: if sealed {
                    ShardState::Sealed
                } else {
                    ShardState::Open
                },
                parents,
                log_start_offset,
                high_watermark,
                size_bytes: high_watermark / 2,
                dir: shard_id % 3,
                group: if sealed { String::new() } else { "hot".into() },
            },
        )
}

fn batch_bytes() -> impl Strategy<Value = Bytes> {
    (
        any::<u64>(),
        any::<u32>(),
        prop::collection::vec(
            (
                prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
                prop::collection::vec(any::<u8>(), 0..100),
                prop::collection::vec(
                    ("[a-z]{1,8}", prop::collection::vec(any::<u8>(), 0..10)),
                    0..3,
                ),
                0i64..1_000_000,
            ),
            1..10,
        ),
    )
        .prop_map(|(producer_id, base_sequence, records)| {
            let mut builder = BatchBuilder::new(0, producer_id, u64::from(base_sequence));
            for (key, value, headers, delta) in &records {
                let headers: Vec<(&str, &[u8])> = headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_slice()))
                    .collect();
                builder.push(1_700_000_000_000 + delta, key.as_deref(), value, &headers);
            }
            builder.finish()
        })
}

proptest! {
    #[test]
    fn random_bodies_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        surge_protocol::decode_as_every_message(&Bytes::from(raw));
    }

    #[test]
    fn random_frames_never_panic(raw in prop::collection::vec(any::<u8>(), 0..256), max in 0usize..1024) {
        let mut buf = BytesMut::from(&raw[..]);
        if let Ok(FrameCheck::Complete(total)) = frame::check(&buf, frame::REQUEST_HEADER_BYTES, max) {
            prop_assert!(total <= buf.len());
            let (_, body) = frame::split_request(&mut buf, total);
            surge_protocol::decode_as_every_message(&body);
        }
    }

    #[test]
    fn random_batches_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let bytes = Bytes::from(raw);
        let _ = batch::validate(&bytes, MAX_BATCH_BYTES);
        let _ = batch::split_batches(&bytes, MAX_BATCH_BYTES);
        let _ = batch::verify_checksum(&bytes, bytes.len());
    }

    #[test]
    fn built_batches_validate_and_round_trip(bytes in batch_bytes()) {
        let parsed = batch::Batch::parse(&bytes, MAX_BATCH_BYTES).unwrap();
        prop_assert_eq!(parsed.header.size, bytes.len());
        prop_assert_eq!(parsed.records().len(), parsed.header.record_count as usize);
        prop_assert!(batch::verify_checksum(&bytes, bytes.len()).is_ok());
    }

    #[test]
    fn corrupted_batches_are_rejected(bytes in batch_bytes(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let mut corrupt = bytes.to_vec();
        // Bytes 0..8 hold the base offset, which the CRC does not cover.
        let position = 8 + at.index(corrupt.len() - 8);
        corrupt[position] ^= flip;
        prop_assert!(batch::validate(&corrupt, MAX_BATCH_BYTES).is_err());
    }

    #[test]
    fn produce_requests_round_trip(stream in name(), timeout_ms in any::<u32>(), parts in prop::collection::vec((any::<u32>(), batch_bytes()), 0..4)) {
        let request = ProduceRequest {
            stream,
            acks: Acks::Fsync,
            timeout_ms,
            parts: parts.into_iter().map(|(shard_id, batch)| ProducePart { shard_id, batch }).collect(),
        };
        prop_assert_eq!(ProduceRequest::decode_all(request.to_bytes()).unwrap(), request);
    }

    #[test]
    fn metadata_and_fetch_round_trip(stream in name(), shards in prop::collection::vec(shard_info(), 0..5), records in batch_bytes(), offset in any::<u64>()) {
        let metadata = MetadataResponse {
            streams: vec![surge_protocol::stream::StreamMetadata {
                error: ErrorCode::None,
                name: stream.clone(),
                epoch: offset,
                shards,
                routing_header: "type".into(),
            }],
        };
        prop_assert_eq!(MetadataResponse::decode_all(metadata.to_bytes()).unwrap(), metadata);
        let fetch = FetchResponse {
            parts: vec![FetchPartResponse {
                stream: stream.clone(),
                shard_id: 3,
                error: ErrorCode::OffsetOutOfRange,
                high_watermark: offset,
                log_start_offset: 0,
                sealed: true,
                records,
            }],
        };
        prop_assert_eq!(FetchResponse::decode_all(fetch.to_bytes()).unwrap(), fetch);
        let request = FetchRequest {
            max_wait_ms: 1,
            min_bytes: 2,
            max_bytes: 3,
            parts: vec![FetchPart { stream, shard_id: 1, offset, max_bytes: 4 }],
        };
        prop_assert_eq!(FetchRequest::decode_all(request.to_bytes()).unwrap(), request);
    }

    #[test]
    fn group_messages_round_trip(group in name(), member in name(), generation in any::<u64>(), offsets in prop::collection::vec((any::<u32>(), any::<u64>()), 0..8)) {
        let commit = CommitOffsetsRequest {
            group: group.clone(),
            stream: "s".into(),
            member_id: member.clone(),
            generation,
            offsets: offsets.iter().map(|&(shard_id, offset)| ShardOffset { shard_id, offset }).collect(),
        };
        prop_assert_eq!(CommitOffsetsRequest::decode_all(commit.to_bytes()).unwrap(), commit);
        let assignment = Assignment {
            error: ErrorCode::RebalanceInProgress,
            member_id: member,
            generation,
            shards: offsets.iter().map(|&(shard, _)| shard).collect(),
        };
        prop_assert_eq!(Assignment::decode_all(assignment.to_bytes()).unwrap(), assignment);
        let create = CreateStreamRequest { name: group, config: StreamConfig { shard_count: 3, ..StreamConfig::default() } };
        prop_assert_eq!(CreateStreamRequest::decode_all(create.to_bytes()).unwrap(), create);
    }
}

#[test]
fn truncating_any_message_is_an_error_not_a_panic() {
    let request = ProduceRequest {
        stream: "orders".into(),
        acks: Acks::Write,
        timeout_ms: 5,
        parts: vec![ProducePart {
            shard_id: 1,
            batch: Bytes::from_static(b"not a batch but a blob"),
        }],
    };
    let bytes = request.to_bytes();
    for len in 0..bytes.len() {
        assert!(
            ProduceRequest::decode_all(bytes.slice(..len)).is_err(),
            "prefix of {len} decoded"
        );
    }
}
