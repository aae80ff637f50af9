//! Fetch (zero-copy reads with long-polling) and list offsets.

use std::time::Duration;

use surge_protocol::fetch::{FetchPartResponse, FetchRequest, FetchResponse};
use surge_protocol::offsets::{
    ListOffsetsPartResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetSpec,
};
use surge_protocol::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::storage::StorageError;

/// Reads every part once; returns the response and the bytes it carries.
fn read_parts(broker: &Broker, request: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut budget = request.max_bytes as usize;
    let mut total = 0usize;
    let mut any_error = false;
    let parts = request
        .parts
        .iter()
        .map(|part| {
            let mut response = FetchPartResponse {
                stream: part.stream.clone(),
                shard_id: part.shard_id,
                ..FetchPartResponse::default()
            };
            let Some(stream) = broker.streams.get(&part.stream) else {
                response.error = ErrorCode::UnknownStream;
                any_error = true;
                return response;
            };
            let view = stream.view();
            let Some(shard) = view.shards.get(&part.shard_id) else {
                response.error = ErrorCode::UnknownShard;
                any_error = true;
                return response;
            };
            // A sealed shard ends at its seal, whatever its owner publishes.
            let sealed_at = view.sealed_at(part.shard_id);
            response.sealed = sealed_at.is_some();
            let visible = sealed_at.unwrap_or_else(|| shard.visible_end());
            response.high_watermark = visible;
            response.log_start_offset = shard.log_start();
            if budget == 0 && part.offset < visible {
                return response;
            }
            let max = budget.min(part.max_bytes as usize);
            match shard.reader().read(part.offset, max, visible) {
                Ok(chunk) => {
                    budget = budget.saturating_sub(chunk.bytes.len());
                    total += chunk.bytes.len();
                    response.records = chunk.bytes;
                }
                Err(err) => {
                    response.error = storage_code(&err);
                    any_error = true;
                }
            }
            response
        })
        .collect();
    (FetchResponse { parts }, total, any_error)
}

fn storage_code(err: &StorageError) -> ErrorCode {
    match err {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        _ => ErrorCode::Storage,
    }
}

/// Answers at once when there is `min_bytes` of data (or an error), else
/// waits for appends until `max_wait_ms` (capped by the broker) passes.
pub(super) async fn fetch(
    broker: &Broker,
    request: &FetchRequest,
    shutdown: &CancellationToken,
) -> FetchResponse {
    let wait_ms = u64::from(request.max_wait_ms).min(broker.config.max_fetch_wait_ms);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = (request.min_bytes as usize).max(1);
    let mut appended = broker.appended.subscribe();
    loop {
        appended.borrow_and_update();
        let (response, total, any_error) = read_parts(broker, request);
        if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            return response;
        }
        tokio::select! {
            changed = appended.changed() => if changed.is_err() { return response },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.cancelled() => return response,
        }
    }
}

pub(super) fn list_offsets(broker: &Broker, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let parts = request
        .parts
        .iter()
        .map(|part| {
            let mut response = ListOffsetsPartResponse {
                stream: part.stream.clone(),
                shard_id: part.shard_id,
                ..ListOffsetsPartResponse::default()
            };
            let shard = broker
                .streams
                .get(&part.stream)
                .ok_or(ErrorCode::UnknownStream)
                .and_then(|stream| stream.shard(part.shard_id).ok_or(ErrorCode::UnknownShard));
            match shard {
                Err(code) => response.error = code,
                Ok(shard) => {
                    let visible = shard.visible_end();
                    match part.spec {
                        OffsetSpec::Earliest => response.offset = shard.log_start(),
                        OffsetSpec::Latest => response.offset = visible,
                        OffsetSpec::Timestamp => {
                            match shard
                                .reader()
                                .offset_for_timestamp(part.timestamp_ms, visible)
                            {
                                Ok(found) => response.offset = found.unwrap_or(visible),
                                Err(err) => response.error = storage_code(&err),
                            }
                        }
                    }
                }
            }
            response
        })
        .collect();
    ListOffsetsResponse { parts }
}
