//! The data path: produce (validate every batch, enqueue in arrival order,
//! answer when durable), fetch (zero-copy reads with long-polling) and list
//! offsets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use surge_protocol::batch;
use surge_protocol::fetch::{FetchPartResponse, FetchRequest, FetchResponse};
use surge_protocol::offsets::{
    ListOffsetsPartResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetSpec,
};
use surge_protocol::produce::{Acks, ProducePartResponse, ProduceRequest, ProduceResponse};
use surge_protocol::{DecodeError, ErrorCode};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::shard::AppendReply;
use crate::storage::{AppendOutcome, StorageError};
use crate::streams::Stream;

type QueuedReply = Result<oneshot::Receiver<AppendReply>, ErrorCode>;

/// A produce request whose batches are queued at their shards.
pub(super) struct PendingProduce {
    epoch: u64,
    /// Per part in request order: the shard and where its answer comes from.
    parts: Vec<(u32, PartState)>,
    /// One per shard job; `PartState::Queued` points into it.
    replies: Vec<QueuedReply>,
}

enum PartState {
    Failed(ErrorCode),
    /// The `index`-th batch of shard job `job`.
    Queued {
        job: usize,
        index: usize,
    },
}

fn batch_error(err: &DecodeError) -> ErrorCode {
    match err {
        DecodeError::LengthTooLarge { .. } => ErrorCode::BatchTooLarge,
        _ => ErrorCode::InvalidBatch,
    }
}

/// Checks one part without touching any shard.
fn check_part(stream: &Stream, shard_id: u32, bytes: &Bytes, max_batch_bytes: usize) -> ErrorCode {
    if stream.shard(shard_id).is_none() {
        return ErrorCode::UnknownShard;
    }
    if bytes.is_empty() {
        return ErrorCode::EmptyBatch;
    }
    if bytes.len() > max_batch_bytes {
        return ErrorCode::BatchTooLarge;
    }
    match batch::validate(bytes, max_batch_bytes) {
        // A batch names the shard it was built for: idempotence is kept per
        // (producer, shard), so a batch sent to another shard is a bug.
        Ok(header) if header.origin_shard != shard_id => ErrorCode::InvalidBatch,
        Ok(header) if header.size == bytes.len() => ErrorCode::None,
        // Trailing bytes after the batch: the part is not one batch.
        Ok(_) => ErrorCode::InvalidBatch,
        Err(err) => batch_error(&err),
    }
}

fn rejected(epoch: u64, parts: Vec<(u32, PartState)>) -> PendingProduce {
    PendingProduce {
        epoch,
        parts,
        replies: Vec::new(),
    }
}

/// Validates every part, then queues the batches at their shards. Nothing
/// is appended unless every part is valid.
pub(super) async fn enqueue_produce(
    broker: &Arc<Broker>,
    request: ProduceRequest,
) -> PendingProduce {
    let Some(stream) = broker.streams.get(&request.stream) else {
        let parts = request
            .parts
            .iter()
            .map(|part| (part.shard_id, PartState::Failed(ErrorCode::UnknownStream)))
            .collect();
        return rejected(0, parts);
    };
    let epoch = stream.epoch();
    let max = broker.config.max_batch_bytes;
    let codes: Vec<ErrorCode> = request
        .parts
        .iter()
        .map(|part| check_part(&stream, part.shard_id, &part.batch, max))
        .collect();
    if codes.iter().any(|code| !code.is_ok()) {
        let parts = request
            .parts
            .iter()
            .zip(codes)
            .map(|(part, code)| {
                // Valid parts of a rejected request are not appended either.
                let code = if code.is_ok() {
                    ErrorCode::InvalidRequest
                } else {
                    code
                };
                (part.shard_id, PartState::Failed(code))
            })
            .collect();
        return rejected(epoch, parts);
    }
    let sync = request.acks == Acks::Fsync;
    let mut jobs: Vec<(u32, Vec<Bytes>)> = Vec::new();
    let mut parts = Vec::with_capacity(request.parts.len());
    for part in request.parts {
        let job = match jobs.iter().position(|(shard, _)| *shard == part.shard_id) {
            Some(job) => job,
            None => {
                jobs.push((part.shard_id, Vec::new()));
                jobs.len() - 1
            }
        };
        let index = jobs[job].1.len();
        jobs[job].1.push(part.batch);
        parts.push((part.shard_id, PartState::Queued { job, index }));
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for (shard_id, batches) in jobs {
        let shard = stream.shard(shard_id).expect("checked above");
        replies.push(shard.enqueue(batches, sync).await);
    }
    PendingProduce {
        epoch,
        parts,
        replies,
    }
}

impl PendingProduce {
    /// Waits for every queued job's acknowledgement and builds the answer.
    pub(super) async fn finish(self) -> ProduceResponse {
        let mut answers: Vec<AppendReply> = Vec::with_capacity(self.replies.len());
        for reply in self.replies {
            answers.push(match reply {
                Ok(receiver) => receiver.await.unwrap_or(Err(ErrorCode::ShuttingDown)),
                Err(code) => Err(code),
            });
        }
        let parts: Vec<ProducePartResponse> = self
            .parts
            .into_iter()
            .map(|(shard_id, state)| part_response(shard_id, state, &answers))
            .collect();
        let error = parts
            .iter()
            .map(|part| part.error)
            .find(|code| !code.is_ok())
            .unwrap_or(ErrorCode::None);
        ProduceResponse {
            error,
            epoch: self.epoch,
            parts,
        }
    }
}

fn part_response(shard_id: u32, state: PartState, answers: &[AppendReply]) -> ProducePartResponse {
    let mut response = ProducePartResponse {
        shard_id,
        ..ProducePartResponse::default()
    };
    match state {
        PartState::Failed(code) => response.error = code,
        PartState::Queued { job, index } => match &answers[job] {
            Err(code) => response.error = *code,
            Ok(outcomes) => match outcomes.get(index) {
                Some(AppendOutcome::Appended { base_offset }) => {
                    response.base_offset = *base_offset
                }
                Some(AppendOutcome::Duplicate { base_offset }) => {
                    response.base_offset = *base_offset;
                    response.duplicate = true;
                }
                Some(AppendOutcome::OutOfOrder { .. }) => {
                    response.error = ErrorCode::OutOfOrderSequence;
                }
                None => response.error = ErrorCode::Internal,
            },
        },
    }
    response
}

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
            let Some(shard) = stream.shard(part.shard_id) else {
                response.error = ErrorCode::UnknownShard;
                any_error = true;
                return response;
            };
            let visible = shard.visible_end();
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
                .and_then(|stream| {
                    stream
                        .shard(part.shard_id)
                        .cloned()
                        .ok_or(ErrorCode::UnknownShard)
                });
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
