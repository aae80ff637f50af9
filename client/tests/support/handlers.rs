//! The fake broker's answers to each request kind, against its
//! `FakeState` (see the parent module for what the fake does and why).

use super::*;

pub(super) fn handshake(state: &mut FakeState) -> HandshakeResponse {
    state.next_producer_id += 1;
    HandshakeResponse {
        error: ErrorCode::None,
        protocol: PROTOCOL_VERSION,
        broker_id: "fake".to_owned(),
        apis: supported_versions(),
        max_frame_bytes: MAX_FRAME_BYTES as u32,
        max_batch_bytes: MAX_BATCH,
        producer_id: state.next_producer_id,
    }
}

pub(super) fn metadata(state: &FakeState) -> StreamMetadata {
    StreamMetadata {
        error: ErrorCode::None,
        name: STREAM.to_owned(),
        epoch: state.epoch,
        shards: state
            .shards
            .iter()
            .map(|shard| ShardInfo {
                shard_id: shard.shard_id,
                hash_start: shard.hash_start,
                hash_end: shard.hash_end,
                high_watermark: shard.next_offset,
                parents: shard.parents.clone(),
                state: if shard.sealed {
                    surge_protocol::stream::ShardState::Sealed
                } else {
                    surge_protocol::stream::ShardState::Open
                },
                ..ShardInfo::default()
            })
            .collect(),
        routing_header: String::new(),
    }
}

pub(super) fn produce(state: &mut FakeState, id: u32, body: Bytes) -> Option<Vec<Bytes>> {
    let req = ProduceRequest::decode_all(body).unwrap();
    let mut parts = Vec::new();
    for part in req.parts {
        batch::validate(&part.batch, MAX_BATCH_BYTES).unwrap();
        state.received_batches.push(part.batch.clone());
        state.log.push(format!("received {}", part.shard_id));
        if state.shards[part.shard_id as usize].forwards {
            state.forwarded_batches += 1;
            let (placements, duplicate) = forward(state, part.shard_id, &part.batch);
            parts.push(ProducePartResponse {
                shard_id: part.shard_id,
                error: ErrorCode::None,
                base_offset: 0,
                duplicate,
                placements,
            });
            continue;
        }
        let header = batch::read_header(&part.batch);
        let refused = if !state.refuse_parts.is_empty() {
            state.refuse_parts.remove(0)
        } else if state.check_sequences
            && state.shards[part.shard_id as usize].leaves_gap(&part.batch)
        {
            ErrorCode::OutOfOrderSequence
        } else {
            ErrorCode::None
        };
        let (shard_id, producer_id) = (part.shard_id, header.producer_id);
        state
            .produced
            .push((shard_id, producer_id, header.base_sequence, refused));
        if !refused.is_ok() {
            parts.push(ProducePartResponse {
                shard_id,
                error: refused,
                ..ProducePartResponse::default()
            });
            continue;
        }
        let (base_offset, duplicate) = state.shards[part.shard_id as usize].append(&part.batch);
        parts.push(ProducePartResponse {
            shard_id: part.shard_id,
            error: ErrorCode::None,
            base_offset,
            duplicate,
            placements: Vec::new(),
        });
    }
    if state.drop_after_store > 0 {
        state.drop_after_store -= 1;
        return None;
    }
    let mut w = Writer::new();
    let error = parts
        .iter()
        .map(|part| part.error)
        .find(|code| !code.is_ok())
        .unwrap_or(ErrorCode::None);
    ProduceResponse {
        error,
        epoch: state.epoch,
        parts,
    }
    .encode(&mut w);
    Some(frame::encode_response(id, w))
}

/// The open shard whose range holds `hash`.
pub(super) fn open_owner(state: &FakeState, hash: u64) -> u32 {
    state
        .shards
        .iter()
        .find(|shard| !shard.sealed && shard.hash_start <= hash && hash <= shard.hash_end)
        .expect("open shards cover the hash space")
        .shard_id
}

/// Stores each record of a batch sent to a split shard in the open shard
/// owning its key (keyless ones in the lowest), one record per stored batch.
pub(super) fn forward(
    state: &mut FakeState,
    sealed: u32,
    raw: &Bytes,
) -> (Vec<RecordPlacement>, bool) {
    let header = batch::read_header(raw);
    let id = (header.producer_id, header.base_sequence);
    if let Some(placements) = state.shards[sealed as usize].forwarded.get(&id) {
        return (placements.clone(), true);
    }
    let mut placements = Vec::new();
    for record in Batch::parse(raw, MAX_BATCH_BYTES).unwrap().records() {
        let hash = record.key.as_deref().map_or(0, key_hash);
        let owner = open_owner(state, hash);
        let mut builder = BatchBuilder::new(owner, 0, 0);
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), &value[..]))
            .collect();
        builder.push(
            record.timestamp_ms,
            record.key.as_deref(),
            &record.value,
            &headers,
        );
        let (offset, _) = state.shards[owner as usize].append(&builder.finish());
        placements.push(RecordPlacement {
            shard_id: owner,
            offset,
        });
    }
    state.shards[sealed as usize]
        .forwarded
        .insert(id, placements.clone());
    (placements, false)
}

pub(super) fn fetch(state: &FakeState, body: Bytes) -> FetchResponse {
    let req = FetchRequest::decode_all(body).unwrap();
    let parts = req
        .parts
        .into_iter()
        .map(|part| {
            let shard = &state.shards[part.shard_id as usize];
            let mut records = BytesMut::new();
            for raw in &shard.batches {
                let header = batch::read_header(raw);
                let room =
                    records.is_empty() || records.len() + raw.len() <= part.max_bytes as usize;
                if header.next_offset() > part.offset && room {
                    records.extend_from_slice(raw);
                }
            }
            FetchPartResponse {
                stream: part.stream,
                shard_id: part.shard_id,
                error: ErrorCode::None,
                high_watermark: shard.next_offset,
                log_start_offset: 0,
                sealed: shard.sealed,
                records: records.freeze(),
            }
        })
        .collect();
    FetchResponse { parts }
}

pub(super) fn list_offsets(state: &FakeState, body: Bytes) -> ListOffsetsResponse {
    let req = ListOffsetsRequest::decode_all(body).unwrap();
    let parts = req
        .parts
        .into_iter()
        .map(|part| {
            let shard = &state.shards[part.shard_id as usize];
            let offset = match part.spec {
                OffsetSpec::Earliest => 0,
                OffsetSpec::Latest => shard.next_offset,
                OffsetSpec::Timestamp => shard
                    .records()
                    .iter()
                    .find(|record| record.timestamp_ms >= part.timestamp_ms)
                    .map_or(shard.next_offset, |record| record.offset),
            };
            ListOffsetsPartResponse {
                stream: part.stream,
                shard_id: part.shard_id,
                error: ErrorCode::None,
                offset,
            }
        })
        .collect();
    ListOffsetsResponse { parts }
}

/// Every member gets every shard readable for the group: each parent's
/// end committed by the group. The generation moves when that set changes.
pub(super) fn assignment(state: &mut FakeState, key: ApiKey, group: &str) -> Assignment {
    if key == ApiKey::JoinGroup {
        state.next_member += 1;
    }
    let committed = state.committed.get(group).cloned().unwrap_or_default();
    let shards: Vec<u32> = state
        .shards
        .iter()
        .filter(|shard| {
            shard.parents.iter().all(|parent| {
                let end = state.shards[*parent as usize].next_offset;
                committed.get(parent).is_some_and(|&offset| offset >= end)
            })
        })
        .map(|shard| shard.shard_id)
        .collect();
    let entry = state
        .assigned
        .entry(group.to_owned())
        .or_insert((1, shards.clone()));
    if entry.1 != shards {
        *entry = (entry.0 + 1, shards.clone());
    }
    Assignment {
        error: ErrorCode::None,
        member_id: format!("member-{}", state.next_member),
        generation: entry.0,
        shards,
    }
}
