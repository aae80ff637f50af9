//! Forwarding: a batch that reached a sealed shard is split by key among
//! the open shards that now own its records (in each record's type group:
//! see `topology::isolate`), and appended there. Each piece
//! keeps the producer id and the shard the producer addressed (the origin),
//! is flagged as forwarded (its sequences may skip what a sibling took),
//! and its base sequence is chosen so its last sequence equals the whole
//! batch's: the successors inherited the sealed shard's producer state, so
//! a retried batch is recognised there as a duplicate.
//!
//! Per-key order holds: everything queued at the parent before the seal is
//! in the parent, everything after goes to the child owning the key, and
//! consumers read children only after their parents. A sealed shard's
//! batches are forwarded one at a time in arrival order (`produce`), and a
//! batch that arrives ahead of its producer's next sequence is refused as
//! out of order (`shard::forward_order`), so a producer's batches reach the
//! children in sequence order.
//!
//! What is guaranteed when a forward fails part-way: a forward does not give
//! up on a transient cause. It waits for a change's publish as long as it
//! takes, and retries a piece whose append failed (a storage error) in place,
//! still holding its routing round, so no change can seal a child between
//! two pieces of one batch. A forward ends half-done only on shutdown (or
//! a crash) or an out-of-order piece. The producer's retry then finds the
//! pieces that landed as duplicates and stores the others, also when the
//! children were merged meanwhile: a merged successor keeps the lowest
//! sequence its parents agree on (`ProducerState::inherited`), so it
//! stores the whole retry, the pieces that had landed a second time.

use std::time::Duration;

use bytes::Bytes;
use surge_protocol::batch::{Batch, BatchBuilder, Checked, Record, MAX_BATCH_BYTES};
use surge_protocol::produce::RecordPlacement;
use surge_protocol::routing::key_hash;
use surge_protocol::stream::{routing_group, routing_value, TYPE_HEADER};
use surge_protocol::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::shard::{BatchOutcome, Shard};
use crate::storage::AppendOutcome;
use crate::streams::{Stream, View};

/// How often a forward waiting for a change's publish says so.
const PUBLISH_WAIT_WARN: Duration = Duration::from_secs(5);
/// The first wait before a failed piece is tried again; it doubles up to
/// `RETRY_BACKOFF_MAX`.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Places every record of `batch` (sent to the sealed shard `sealed`) on
/// the open shard that owns its key now. Returns one placement per record.
///
/// Rounds: each waits for the change that sealed the shard its records
/// found sealed, so their number is bounded by the changes made meanwhile;
/// shutdown ends the wait.
pub(super) async fn forward(
    stream: &Stream,
    sealed: u32,
    batch: &Bytes,
    sync: bool,
    shutdown: &CancellationToken,
) -> Result<Vec<RecordPlacement>, ErrorCode> {
    let parsed = Batch::parse(batch, MAX_BATCH_BYTES).map_err(|_| ErrorCode::InvalidBatch)?;
    let records = parsed.records();
    let mut placements = vec![RecordPlacement::default(); records.len()];
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut waiting_on = sealed;
    let mut placed_some = false;
    loop {
        published_after_seal(stream, waiting_on, shutdown).await?;
        // No change can seal a shard during the round: every piece lands
        // in this view's open shards (see `Stream::forwarding`).
        let _round = stream.forwarding_round().await;
        let view = stream.view();
        let mut still_pending = Vec::new();
        for (target, indices) in route(&view, sealed, &records, &pending)? {
            // Built here, from records already checked: a piece that does
            // not check is the broker's bug.
            let piece = Checked::new(rebuild(&parsed, &records, &indices), MAX_BATCH_BYTES)
                .map_err(|_| ErrorCode::Internal)?;
            let shard = view.shards.get(&target).ok_or(ErrorCode::Internal)?;
            let outcome = append_piece(shard, piece, sync, placed_some, shutdown).await?;
            crate::failpoint::delay("forward.piece").await;
            match outcome.first() {
                Some(BatchOutcome::Log(AppendOutcome::Appended { base_offset })) => {
                    place(&mut placements, &indices, target, Some(*base_offset));
                    placed_some = true;
                    // A crash with the batch partly forwarded.
                    crate::failpoint::hit("forward.landed");
                }
                Some(BatchOutcome::Log(AppendOutcome::Duplicate { base_offset })) => {
                    place(&mut placements, &indices, target, *base_offset);
                    placed_some = true;
                }
                Some(BatchOutcome::Log(AppendOutcome::OutOfOrder { .. })) => {
                    return Err(ErrorCode::OutOfOrderSequence);
                }
                Some(BatchOutcome::Sealed) => {
                    waiting_on = target;
                    still_pending.extend(indices);
                }
                None => return Err(ErrorCode::Internal),
            }
        }
        if still_pending.is_empty() {
            return Ok(placements);
        }
        pending = still_pending;
    }
}

/// Appends one piece, trying again after a failure until it is judged or
/// the broker shuts down. The caller holds its routing round throughout:
/// giving up, or routing the piece again after a change, could leave the
/// batch split across children that a merge then joins (module doc).
async fn append_piece(
    shard: &Shard,
    piece: Checked,
    sync: bool,
    placed_some: bool,
    shutdown: &CancellationToken,
) -> Result<Vec<BatchOutcome>, ErrorCode> {
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        // The failpoint fails a piece after another landed: the partial
        // forward this function exists to finish.
        let result = if placed_some && crate::failpoint::once("forward.later_piece") {
            Err(ErrorCode::Storage)
        } else {
            shard.append(vec![piece.clone()], sync).await
        };
        match result {
            Ok(outcome) => return Ok(outcome),
            // The shard was closed: the broker is stopping.
            Err(ErrorCode::ShuttingDown) => return Err(ErrorCode::ShuttingDown),
            Err(code) => {
                tracing::warn!(shard = shard.id, ?code, "forwarded piece failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(ErrorCode::ShuttingDown),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
    }
}

fn place(placements: &mut [RecordPlacement], indices: &[usize], shard_id: u32, base: Option<u64>) {
    for (position, &index) in indices.iter().enumerate() {
        placements[index] = RecordPlacement {
            shard_id,
            offset: base.map_or(u64::MAX, |base| base + position as u64),
        };
    }
}

/// Waits until `shard`'s change is published (it is sealed in the view) or
/// rolled back (the view changed and still shows it open: its owner takes
/// appends again), however long that takes, or until shutdown. The
/// subscription is taken before the view is read, so a publish between the
/// two is not missed.
async fn published_after_seal(
    stream: &Stream,
    shard: u32,
    shutdown: &CancellationToken,
) -> Result<(), ErrorCode> {
    let mut changed = stream.subscribe();
    changed.borrow_and_update();
    if stream.view().sealed_at(shard).is_some() {
        return Ok(());
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Err(ErrorCode::ShuttingDown),
            waited = tokio::time::timeout(PUBLISH_WAIT_WARN, changed.changed()) => match waited {
                Ok(Ok(())) => return Ok(()),
                // The stream is gone.
                Ok(Err(_)) => return Err(ErrorCode::ShuttingDown),
                Err(_) => tracing::warn!(stream = %stream.name, shard, "forward still waits for a change to publish"),
            },
        }
    }
}

/// Groups the pending records by the open shard owning their routing value
/// (key or routing header) now, in record order, among the shards of their
/// type's group (an isolated type's own shards, else the default group's).
/// Records without a routing value follow the sealed shard's first hash.
fn route(
    view: &View,
    sealed: u32,
    records: &[Record],
    pending: &[usize],
) -> Result<Vec<(u32, Vec<usize>)>, ErrorCode> {
    let keyless_hash = view
        .meta
        .shards
        .iter()
        .find(|shard| shard.id == sealed)
        .map_or(0, |shard| shard.hash_start);
    let routing_header = &view.meta.settings.routing_header;
    let isolated = view.meta.isolated_types();
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
    for &index in pending {
        let record = &records[index];
        let value = routing_value(routing_header, record.key.as_deref(), |name| {
            record.header(name).map(|value| value.as_ref())
        });
        let hash = value.map_or(keyless_hash, key_hash);
        let event_type = record.header(TYPE_HEADER).map(|value| value.as_ref());
        let group = routing_group(event_type, isolated.iter().copied());
        let owner = view.owner_of(group, hash).ok_or(ErrorCode::Internal)?;
        match groups.iter_mut().find(|(shard, _)| *shard == owner.id) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((owner.id, vec![index])),
        }
    }
    Ok(groups)
}

/// Re-encodes the chosen records as one batch for `target`, keeping the
/// producer id and origin, with a base sequence that ends where the whole
/// batch ends.
fn rebuild(original: &Batch, records: &[Record], indices: &[usize]) -> Bytes {
    let header = &original.header;
    let count = indices.len() as u64;
    let base_sequence = if header.producer_id == 0 {
        0
    } else {
        header.base_sequence + u64::from(header.record_count) - count
    };
    let mut builder =
        BatchBuilder::new(header.origin_shard, header.producer_id, base_sequence).forwarded();
    for &index in indices {
        let record = &records[index];
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_ref()))
            .collect();
        builder.push(
            record.timestamp_ms,
            record.key.as_deref(),
            &record.value,
            &headers,
        );
    }
    builder.finish()
}
