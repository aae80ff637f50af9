//! Handlers for the handshake, stream management, metadata, and group
//! membership (which needs the stream's shard list).

use std::collections::HashMap;

use surge_protocol::group::{Assignment, FetchOffsetsRequest, HeartbeatRequest, JoinGroupRequest};
use surge_protocol::handshake::{HandshakeRequest, HandshakeResponse, PROTOCOL_VERSION};
use surge_protocol::stream::{
    CreateStreamRequest, CreateStreamResponse, DeleteStreamRequest, DeleteStreamResponse,
    DescribeStreamRequest, DescribeStreamResponse, ListStreamsResponse, MetadataRequest,
    MetadataResponse, StreamMetadata, StreamSummary,
};
use surge_protocol::topology::{ChangeKind, ChangeTopologyRequest, ChangeTopologyResponse};
use surge_protocol::ErrorCode;

use crate::broker::Broker;
use crate::streams::Stream;
use crate::topology::Change;

/// Returns whether the handshake succeeded, and the answer.
pub(super) fn handshake(broker: &Broker, request: &HandshakeRequest) -> (bool, HandshakeResponse) {
    let speaks = (request.min_protocol..=request.max_protocol).contains(&PROTOCOL_VERSION);
    let response = HandshakeResponse {
        error: if speaks {
            ErrorCode::None
        } else {
            ErrorCode::UnsupportedVersion
        },
        protocol: PROTOCOL_VERSION,
        broker_id: broker.config.broker_id.clone(),
        apis: surge_protocol::api::supported_versions(),
        max_frame_bytes: broker.config.max_frame_bytes as u32,
        max_batch_bytes: broker.config.max_batch_bytes as u32,
        producer_id: broker.next_producer_id(),
    };
    (speaks, response)
}

pub(super) fn create_stream(
    broker: &Broker,
    request: &CreateStreamRequest,
) -> CreateStreamResponse {
    match broker.streams.create(&request.name, &request.config) {
        Ok(()) => CreateStreamResponse::default(),
        Err((error, message)) => CreateStreamResponse { error, message },
    }
}

pub(super) async fn delete_stream(
    broker: &Broker,
    request: &DeleteStreamRequest,
) -> DeleteStreamResponse {
    let error = match broker.streams.delete(&request.name).await {
        Ok(()) => match broker.groups.delete_stream(&request.name) {
            Ok(()) => ErrorCode::None,
            Err(err) => err.code(),
        },
        Err(code) => code,
    };
    DeleteStreamResponse { error }
}

pub(super) fn list_streams(broker: &Broker) -> ListStreamsResponse {
    let streams = broker
        .streams
        .all()
        .iter()
        .map(|stream| {
            let meta = &stream.view().meta;
            StreamSummary {
                name: meta.name.clone(),
                shard_count: meta.config().shard_count,
                epoch: meta.epoch,
            }
        })
        .collect();
    ListStreamsResponse { streams }
}

pub(super) fn describe_stream(
    broker: &Broker,
    request: &DescribeStreamRequest,
) -> DescribeStreamResponse {
    let Some(stream) = broker.streams.get(&request.name) else {
        return DescribeStreamResponse {
            error: ErrorCode::UnknownStream,
            name: request.name.clone(),
            ..DescribeStreamResponse::default()
        };
    };
    let (config, epoch) = {
        let meta = &stream.view().meta;
        (meta.config(), meta.epoch)
    };
    DescribeStreamResponse {
        error: ErrorCode::None,
        name: request.name.clone(),
        config,
        epoch,
        shards: stream.shard_infos(),
    }
}

pub(super) fn metadata(broker: &Broker, request: &MetadataRequest) -> MetadataResponse {
    let describe = |name: &str| match broker.streams.get(name) {
        Some(stream) => StreamMetadata {
            error: ErrorCode::None,
            name: name.to_owned(),
            epoch: stream.epoch(),
            shards: stream.shard_infos(),
            routing_header: stream.view().meta.settings.routing_header.clone(),
        },
        None => StreamMetadata {
            error: ErrorCode::UnknownStream,
            name: name.to_owned(),
            ..StreamMetadata::default()
        },
    };
    let streams = if request.streams.is_empty() {
        broker
            .streams
            .all()
            .iter()
            .map(|stream| describe(&stream.name))
            .collect()
    } else {
        request.streams.iter().map(|name| describe(name)).collect()
    };
    MetadataResponse { streams }
}

fn unknown_stream(member_id: &str) -> Assignment {
    Assignment {
        error: ErrorCode::UnknownStream,
        member_id: member_id.to_owned(),
        ..Assignment::default()
    }
}

/// The shards a group may read now (the lineage rule): every parent is
/// drained by the group's commits, and the shard is not itself a drained
/// sealed shard. A parent no longer in the metadata counts as drained.
fn readable_shards(broker: &Broker, stream: &Stream, group: &str) -> Vec<u32> {
    let view = stream.view();
    let committed: HashMap<u32, u64> = broker
        .groups
        .fetch_offsets(&FetchOffsetsRequest {
            group: group.to_owned(),
            stream: stream.name.clone(),
        })
        .offsets
        .into_iter()
        .map(|entry| (entry.shard_id, entry.offset))
        .collect();
    let drained = |id: u32| -> bool {
        let Some(shard) = view.meta.shards.iter().find(|shard| shard.id == id) else {
            return true;
        };
        let Some(end) = shard.sealed_at else {
            return false;
        };
        let start = view.shards.get(&id).map_or(0, |live| live.log_start());
        committed.get(&id).copied().unwrap_or(start) >= end
    };
    view.meta
        .shards
        .iter()
        .filter(|shard| !drained(shard.id) && shard.parents.iter().all(|&parent| drained(parent)))
        .map(|shard| shard.id)
        .collect()
}

pub(super) fn join_group(broker: &Broker, request: &JoinGroupRequest, now_ms: u64) -> Assignment {
    match broker.streams.get(&request.stream) {
        Some(stream) => {
            let shards = readable_shards(broker, &stream, &request.group);
            broker.groups.join(request, &shards, now_ms)
        }
        None => unknown_stream(&request.member_id),
    }
}

pub(super) fn heartbeat(broker: &Broker, request: &HeartbeatRequest, now_ms: u64) -> Assignment {
    match broker.streams.get(&request.stream) {
        Some(stream) => {
            let shards = readable_shards(broker, &stream, &request.group);
            broker.groups.heartbeat(request, &shards, now_ms)
        }
        None => unknown_stream(&request.member_id),
    }
}

pub(super) async fn change_topology(
    broker: &Broker,
    request: &ChangeTopologyRequest,
) -> ChangeTopologyResponse {
    let change = match request.kind {
        ChangeKind::Split => {
            let at = request.split_at.or_else(|| {
                broker
                    .streams
                    .split_point(&request.stream, request.shard_id)
            });
            match at {
                Some(at) => Change::Split {
                    shard: request.shard_id,
                    at,
                },
                None => {
                    return ChangeTopologyResponse {
                        error: ErrorCode::UnknownShard,
                        message: format!(
                            "no shard {} in stream {}",
                            request.shard_id, request.stream
                        ),
                        ..ChangeTopologyResponse::default()
                    }
                }
            }
        }
        ChangeKind::Merge => Change::Merge {
            left: request.shard_id,
            right: request.other_shard_id,
        },
        ChangeKind::Move => Change::Move {
            shard: request.shard_id,
            dir: request.target_dir,
        },
        ChangeKind::Isolate => Change::Isolate {
            event_type: request.event_type.clone(),
            shards: request.shard_count,
        },
        ChangeKind::Fold => Change::Fold {
            event_type: request.event_type.clone(),
        },
    };
    match broker.streams.change(&request.stream, change).await {
        Ok(done) => ChangeTopologyResponse {
            error: ErrorCode::None,
            message: String::new(),
            epoch: done.epoch,
            sealed: done.sealed,
            created: done.created,
            took_us: done.took_us,
        },
        Err((error, message)) => ChangeTopologyResponse {
            error,
            message,
            ..ChangeTopologyResponse::default()
        },
    }
}
