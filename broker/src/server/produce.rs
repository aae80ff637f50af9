//! Produce: validate every batch, enqueue in arrival order, answer when
//! durable. Batches that reach a sealed shard go on to its successors
//! (`forward`), one at a time per sealed shard in arrival order (see
//! `shard::ForwardTurn`), and their answer says where each record went.

use std::sync::Arc;

use bytes::Bytes;
use surge_protocol::batch::{self, Checked};
use surge_protocol::produce::{Acks, ProducePartResponse, ProduceRequest, ProduceResponse};
use surge_protocol::{DecodeError, ErrorCode};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::forward;
use crate::broker::Broker;
use crate::metrics::ShardMetrics;
use crate::shard::{AppendReply, BatchOutcome, ForwardTurn};
use crate::storage::AppendOutcome;
use crate::streams::Stream;

/// A shard job's answer to come, and its place in the shard's forwarding
/// order if the shard may be sealed.
type QueuedReply = (
    Result<oneshot::Receiver<AppendReply>, ErrorCode>,
    Option<ForwardTurn>,
);

/// A produce request whose batches are queued at their shards.
pub(super) struct PendingProduce {
    stream: Option<Arc<Stream>>,
    /// Ends forwards that wait for a change or retry a failed piece.
    shutdown: CancellationToken,
    epoch: u64,
    sync: bool,
    /// Per part in request order: the shard, the batch, and its state.
    parts: Vec<(u32, Bytes, PartState)>,
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

/// Records in a batch whose routing values feed the shard's key histogram,
/// and whose `type` headers feed its type mix.
const KEY_SAMPLES_PER_BATCH: usize = 16;
/// The header that names an event's type.
const TYPE_HEADER: &str = "type";

/// Checks one part without touching the shard's log, and samples its keys
/// for the shard's split point. The checked batch is what the shard
/// appends: nothing checks it again.
fn check_part(
    stream: &Stream,
    shard_id: u32,
    bytes: &Bytes,
    max_batch_bytes: usize,
) -> Result<Checked, ErrorCode> {
    let Some(shard) = stream.shard(shard_id) else {
        return Err(ErrorCode::UnknownShard);
    };
    if bytes.is_empty() {
        return Err(ErrorCode::EmptyBatch);
    }
    if bytes.len() > max_batch_bytes {
        return Err(ErrorCode::BatchTooLarge);
    }
    // Bytes after the batch mean the part is not one batch.
    let checked = Checked::new(bytes.clone(), max_batch_bytes).map_err(|err| batch_error(&err))?;
    let header = checked.header();
    // A batch names the shard it was built for: idempotence is kept per
    // (producer, shard), so a batch sent to another shard is a bug. Only
    // the broker forwards: the flag relaxes the sequence check.
    if header.origin_shard != shard_id || header.forwarded {
        return Err(ErrorCode::InvalidBatch);
    }
    let routing_header = &stream.view().meta.settings.routing_header;
    let values = batch::routing_values(bytes, routing_header);
    for value in values.take(KEY_SAMPLES_PER_BATCH).flatten() {
        shard
            .keys()
            .record(surge_protocol::routing::key_hash(value));
    }
    sample_types(shard.metrics(), bytes, header.record_count);
    Ok(checked)
}

/// Counts the `type` headers of the batch's first records, each standing
/// for an equal share of the batch, so the work per batch is bounded.
/// Counted where the batch is addressed: a batch forwarded from a sealed
/// shard is not counted again where its pieces land.
fn sample_types(metrics: &ShardMetrics, bytes: &Bytes, records: u32) {
    let types: Vec<Option<&[u8]>> = batch::routing_values(bytes, TYPE_HEADER)
        .take(KEY_SAMPLES_PER_BATCH)
        .collect();
    let Ok(sampled) = u64::try_from(types.len()) else {
        return;
    };
    if sampled == 0 {
        return;
    }
    let records = u64::from(records);
    let (share, extra) = (records / sampled, records % sampled);
    for (index, name) in types.into_iter().enumerate() {
        let weight = share + u64::from((index as u64) < extra);
        metrics.record_type(name.unwrap_or_default(), weight);
    }
}

fn rejected(
    epoch: u64,
    parts: Vec<(u32, Bytes, PartState)>,
    shutdown: &CancellationToken,
) -> PendingProduce {
    PendingProduce {
        stream: None,
        shutdown: shutdown.clone(),
        epoch,
        sync: false,
        parts,
        replies: Vec::new(),
    }
}

/// Validates every part, then queues the batches at their shards. Nothing
/// is appended unless every part is valid.
pub(super) async fn enqueue_produce(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    shutdown: &CancellationToken,
) -> PendingProduce {
    let Some(stream) = broker.streams.get(&request.stream) else {
        let parts = request
            .parts
            .into_iter()
            .map(|part| {
                (
                    part.shard_id,
                    part.batch,
                    PartState::Failed(ErrorCode::UnknownStream),
                )
            })
            .collect();
        return rejected(0, parts, shutdown);
    };
    let epoch = stream.epoch();
    let max = broker.config.max_batch_bytes;
    let checks: Vec<Result<Checked, ErrorCode>> = request
        .parts
        .iter()
        .map(|part| check_part(&stream, part.shard_id, &part.batch, max))
        .collect();
    if checks.iter().any(Result::is_err) {
        let parts = request
            .parts
            .into_iter()
            .zip(checks)
            .map(|(part, check)| {
                // Valid parts of a rejected request are not appended either.
                let code = check.err().unwrap_or(ErrorCode::InvalidRequest);
                (part.shard_id, part.batch, PartState::Failed(code))
            })
            .collect();
        return rejected(epoch, parts, shutdown);
    }
    let sync = request.acks == Acks::Fsync;
    let mut jobs: Vec<(u32, Vec<Checked>)> = Vec::new();
    let mut parts = Vec::with_capacity(request.parts.len());
    // Every check passed: one checked batch per part.
    for (part, checked) in request.parts.into_iter().zip(checks.into_iter().flatten()) {
        let job = match jobs.iter().position(|(shard, _)| *shard == part.shard_id) {
            Some(job) => job,
            None => {
                jobs.push((part.shard_id, Vec::new()));
                jobs.len() - 1
            }
        };
        let index = jobs[job].1.len();
        jobs[job].1.push(checked);
        parts.push((part.shard_id, part.batch, PartState::Queued { job, index }));
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for (shard_id, batches) in jobs {
        let reply = match stream.shard(shard_id) {
            // The turn is taken right after the job is queued, so a
            // connection's jobs hold their turns in request order.
            Some(shard) => match shard.enqueue(batches, sync).await {
                Ok(receiver) => (Ok(receiver), shard.forward_turn()),
                Err(code) => (Err(code), None),
            },
            // Removed since the check: only a delete does that.
            None => (Err(ErrorCode::UnknownStream), None),
        };
        replies.push(reply);
    }
    PendingProduce {
        stream: Some(stream),
        shutdown: shutdown.clone(),
        epoch,
        sync,
        parts,
        replies,
    }
}

impl PendingProduce {
    /// Waits for every queued job's answer, forwards batches that found
    /// their shard sealed, and builds the response.
    pub(super) async fn finish(self) -> ProduceResponse {
        let mut answers: Vec<(AppendReply, Option<ForwardTurn>)> =
            Vec::with_capacity(self.replies.len());
        for (reply, turn) in self.replies {
            let answer = match reply {
                Ok(receiver) => receiver.await.unwrap_or(Err(ErrorCode::ShuttingDown)),
                Err(code) => Err(code),
            };
            answers.push((answer, turn));
        }
        let mut parts: Vec<ProducePartResponse> = self
            .parts
            .iter()
            .map(|(shard_id, _, state)| part_response(*shard_id, state, &answers))
            .collect();
        let sealed = |part: &ProducePartResponse| part.error == ErrorCode::ShardSealed;
        if let (Some(stream), true) = (&self.stream, parts.iter().any(sealed)) {
            let forwarding = Forwarding {
                stream,
                sync: self.sync,
                shutdown: &self.shutdown,
            };
            forward_sealed(&forwarding, &self.parts, &mut parts, answers).await;
        }
        for part in parts.iter().filter(|part| !part.error.is_ok()) {
            tracing::debug!(shard = part.shard_id, error = ?part.error, "produce part failed");
        }
        let error = parts
            .iter()
            .map(|part| part.error)
            .find(|code| !code.is_ok())
            .unwrap_or(ErrorCode::None);
        let epoch = self
            .stream
            .as_ref()
            .map_or(self.epoch, |stream| stream.epoch());
        ProduceResponse {
            error,
            epoch,
            parts,
        }
    }
}

/// Forwards the parts answered `ShardSealed`, job by job in the order the
/// jobs were queued, each job once its turn in its shard's forwarding order
/// has come; a job's turn is released before the next job's is awaited
/// (what keeps the order deadlock-free).
async fn forward_sealed(
    forwarding: &Forwarding<'_>,
    requested: &[(u32, Bytes, PartState)],
    parts: &mut [ProducePartResponse],
    answers: Vec<(AppendReply, Option<ForwardTurn>)>,
) {
    for (job, (_, turn)) in answers.into_iter().enumerate() {
        let of_job =
            |state: &PartState| matches!(state, PartState::Queued { job: of, .. } if *of == job);
        for (index, (shard_id, batch, state)) in requested.iter().enumerate() {
            if !of_job(state) || parts[index].error != ErrorCode::ShardSealed {
                continue;
            }
            // No turn only for a job queued ahead of any seal of its shard,
            // which is never answered sealed.
            let Some(turn) = &turn else {
                parts[index] = forwarded(forwarding, *shard_id, batch).await;
                continue;
            };
            turn.wait().await;
            let header = batch::read_header(batch);
            if let Err(expected_sequence) = turn.admit(&header) {
                tracing::debug!(
                    shard = shard_id,
                    expected_sequence,
                    "forward refused: a gap before the batch"
                );
                parts[index].error = ErrorCode::OutOfOrderSequence;
                continue;
            }
            parts[index] = forwarded(forwarding, *shard_id, batch).await;
            if parts[index].error.is_ok() {
                turn.forwarded(&header);
            }
        }
        drop(turn);
    }
}

/// What a forward of this request's parts needs.
struct Forwarding<'a> {
    stream: &'a Stream,
    sync: bool,
    shutdown: &'a CancellationToken,
}

async fn forwarded(
    forwarding: &Forwarding<'_>,
    shard_id: u32,
    batch: &Bytes,
) -> ProducePartResponse {
    let mut response = ProducePartResponse {
        shard_id,
        ..ProducePartResponse::default()
    };
    match forward::forward(
        forwarding.stream,
        shard_id,
        batch,
        forwarding.sync,
        forwarding.shutdown,
    )
    .await
    {
        Ok(placements) => response.placements = placements,
        Err(code) => response.error = code,
    }
    response
}

/// The answer for one part, from its job's outcome. A part whose shard was
/// sealed comes back as `ShardSealed`, for the caller to forward.
fn part_response(
    shard_id: u32,
    state: &PartState,
    answers: &[(AppendReply, Option<ForwardTurn>)],
) -> ProducePartResponse {
    let mut response = ProducePartResponse {
        shard_id,
        ..ProducePartResponse::default()
    };
    match state {
        PartState::Failed(code) => response.error = *code,
        PartState::Queued { job, index } => match &answers[*job].0 {
            Err(code) => response.error = *code,
            Ok(outcomes) => match outcomes.get(*index) {
                Some(BatchOutcome::Log(AppendOutcome::Appended { base_offset })) => {
                    response.base_offset = *base_offset;
                }
                Some(BatchOutcome::Log(AppendOutcome::Duplicate { base_offset })) => {
                    response.base_offset = base_offset.unwrap_or(u64::MAX);
                    response.duplicate = true;
                }
                Some(BatchOutcome::Log(AppendOutcome::OutOfOrder { .. })) => {
                    response.error = ErrorCode::OutOfOrderSequence;
                }
                Some(BatchOutcome::Sealed) => response.error = ErrorCode::ShardSealed,
                None => response.error = ErrorCode::Internal,
            },
        },
    }
    response
}
