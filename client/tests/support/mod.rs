//! A fake broker for the client's tests: one stream with two shards, kept in
//! memory, speaking real frames over TCP on 127.0.0.1:0. Knobs on
//! `FakeState` make it misbehave on purpose (frame errors, answers in
//! reverse order, dropped connections, slow answers for one shard).
//! `split` seals a shard the way the broker does (seal-and-succeed): later
//! appends to it are forwarded per key to its children, with placements.

#![allow(dead_code)]

mod handlers;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use surge_protocol::api::supported_versions;
use surge_protocol::batch::{self, Batch, BatchBuilder, MAX_BATCH_BYTES};
use surge_protocol::fetch::{FetchPartResponse, FetchRequest, FetchResponse};
use surge_protocol::frame::{self, FrameCheck, RequestHeader, MAX_FRAME_BYTES};
use surge_protocol::group::{
    Assignment, CommitOffsetsRequest, CommitOffsetsResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, LeaveGroupResponse, ShardOffset,
};
use surge_protocol::handshake::{HandshakeResponse, PROTOCOL_VERSION};
use surge_protocol::offsets::{
    ListOffsetsPartResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetSpec,
};
use surge_protocol::produce::{
    ProducePartResponse, ProduceRequest, ProduceResponse, RecordPlacement,
};
use surge_protocol::routing::{equal_ranges, key_hash};
use surge_protocol::stream::{
    DescribeStreamRequest, DescribeStreamResponse, MetadataRequest, MetadataResponse, ShardInfo,
    StreamMetadata,
};
use surge_protocol::{ApiKey, ErrorCode, Wire, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use handlers::{assignment, fetch, handshake, list_offsets, metadata, open_owner, produce};

pub const STREAM: &str = "events";
pub const MAX_BATCH: u32 = 1 << 20;

#[derive(Debug, Default)]
pub struct FakeShard {
    pub shard_id: u32,
    pub hash_start: u64,
    pub hash_end: u64,
    /// Stored batches, base offsets assigned.
    pub batches: Vec<Bytes>,
    pub next_offset: u64,
    pub sealed: bool,
    pub parents: Vec<u32>,
    /// Sealed by `split`: appends are forwarded to the children per key.
    pub forwards: bool,
    dedup: HashMap<(u64, u64), u64>,
    /// Per producer: the sequence after its last stored batch.
    next_sequence: HashMap<u64, u64>,
    /// Placements of forwarded batches, for retries.
    forwarded: HashMap<(u64, u64), Vec<RecordPlacement>>,
}

impl FakeShard {
    fn append(&mut self, raw: &Bytes) -> (u64, bool) {
        let header = batch::read_header(raw);
        let id = (header.producer_id, header.base_sequence);
        if header.producer_id != 0 {
            if let Some(&base) = self.dedup.get(&id) {
                return (base, true);
            }
        }
        let base = self.next_offset;
        self.next_sequence.insert(
            header.producer_id,
            header.base_sequence + u64::from(header.record_count),
        );
        let mut stored = BytesMut::from(&raw[..]);
        batch::set_base_offset(&mut stored, base);
        self.batches.push(stored.freeze());
        self.next_offset += u64::from(header.record_count);
        self.dedup.insert(id, base);
        (base, false)
    }

    /// Whether a batch would leave a gap in its producer's sequences: the
    /// broker refuses those as out of order (not duplicates, which `append`
    /// answers first). A producer the shard never stored accepts any.
    fn leaves_gap(&self, raw: &Bytes) -> bool {
        let header = batch::read_header(raw);
        let id = (header.producer_id, header.base_sequence);
        header.producer_id != 0
            && !self.dedup.contains_key(&id)
            && self
                .next_sequence
                .get(&header.producer_id)
                .is_some_and(|next| *next != header.base_sequence)
    }

    pub fn records(&self) -> Vec<batch::Record> {
        self.batches
            .iter()
            .flat_map(|raw| Batch::parse(raw, MAX_BATCH_BYTES).unwrap().records())
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub shards: Vec<FakeShard>,
    pub epoch: u64,
    next_producer_id: u64,
    next_member: u64,
    /// Every produce batch as received, retries included.
    pub received_batches: Vec<Bytes>,
    /// Answer this API with a frame-level error.
    pub frame_error_api: Option<ApiKey>,
    /// Hold responses until this many are queued, then send them reversed.
    pub reverse_window: usize,
    /// Correlation ids in the order responses were written.
    pub written_order: Vec<u32>,
    /// Store the next N produce requests, then drop the connection unanswered.
    pub drop_after_store: u32,
    /// Hold this API's requests unanswered and drop the connection once
    /// this many are held.
    pub hold_then_drop: Option<(ApiKey, usize)>,
    /// Leave the next N requests of this API unanswered, keeping the
    /// connection up; later ones are answered.
    pub hold_next: Option<(ApiKey, usize)>,
    /// Answer produce requests to this shard only after this long (the
    /// connection keeps serving other requests meanwhile).
    pub slow_shard: Option<(u32, Duration)>,
    /// "received S" per produce part on arrival; "answered S" when a slow
    /// shard's answer is written.
    pub log: Vec<String>,
    /// Produce parts forwarded from a split shard to its children.
    pub forwarded_batches: u32,
    /// Refuse produce parts that would leave a sequence gap with
    /// `OutOfOrderSequence`, as the broker does.
    pub check_sequences: bool,
    /// Answer the next produce parts with these codes, in order, storing
    /// nothing.
    pub refuse_parts: Vec<ErrorCode>,
    /// Per produce part as received: shard, producer id, base sequence and
    /// the code it was answered with.
    pub produced: Vec<(u32, u64, u64, ErrorCode)>,
    /// Per group: the generation and the shards last assigned.
    assigned: BTreeMap<String, (u64, Vec<u32>)>,
    pub committed: BTreeMap<String, BTreeMap<u32, u64>>,
}

#[derive(Debug, Clone)]
pub struct FakeBroker {
    pub addr: String,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeBroker {
    pub async fn start() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shards = equal_ranges(2)
            .into_iter()
            .enumerate()
            .map(|(index, (hash_start, hash_end))| FakeShard {
                shard_id: index as u32,
                hash_start,
                hash_end,
                ..FakeShard::default()
            })
            .collect();
        let state = Arc::new(Mutex::new(FakeState {
            shards,
            epoch: 1,
            next_producer_id: 100,
            ..FakeState::default()
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&shared)));
            }
        });
        FakeBroker { addr, state }
    }

    /// Seals `shard_id` and opens a successor over its range under a new
    /// epoch. Appends to the sealed shard are still stored there, as if the
    /// broker forwarded them; only the epoch tells the client.
    pub fn seal_with_successor(&self, shard_id: u32) -> u32 {
        let mut state = self.state.lock();
        let successor = state.shards.len() as u32;
        let parent = &mut state.shards[shard_id as usize];
        parent.sealed = true;
        let (hash_start, hash_end) = (parent.hash_start, parent.hash_end);
        state.shards.push(FakeShard {
            shard_id: successor,
            hash_start,
            hash_end,
            ..FakeShard::default()
        });
        state.epoch += 1;
        successor
    }

    /// Splits a shard the way the broker does: seals it at its current end
    /// and opens two children over the halves of its range, listing it as
    /// parent, in a new epoch. Later appends to it are forwarded per key.
    pub fn split(&self, shard_id: u32) -> (u32, u32) {
        let mut state = self.state.lock();
        let low = state.shards.len() as u32;
        let high = low + 1;
        let parent = &mut state.shards[shard_id as usize];
        assert!(!parent.sealed, "split of a sealed shard");
        parent.sealed = true;
        parent.forwards = true;
        let (hash_start, hash_end) = (parent.hash_start, parent.hash_end);
        let middle = hash_start + (hash_end - hash_start) / 2;
        for (child, start, end) in [(low, hash_start, middle), (high, middle + 1, hash_end)] {
            state.shards.push(FakeShard {
                shard_id: child,
                hash_start: start,
                hash_end: end,
                parents: vec![shard_id],
                ..FakeShard::default()
            });
        }
        state.epoch += 1;
        (low, high)
    }

    /// The open shard owning a key now.
    pub fn owner(&self, key: &[u8]) -> u32 {
        let state = self.state.lock();
        open_owner(&state, key_hash(key))
    }

    pub fn config(&self) -> surge_client::ClientConfig {
        surge_client::ClientConfig {
            addr: self.addr.clone(),
            client_id: "test".to_owned(),
            ..surge_client::ClientConfig::default()
        }
    }

    /// Appends a batch of `(timestamp_ms, value)` records to a shard.
    pub fn append(&self, shard_id: u32, records: &[(i64, &str)]) -> u64 {
        let mut builder = BatchBuilder::new(shard_id, 0, 0);
        for (timestamp_ms, value) in records {
            builder.push(*timestamp_ms, None, value.as_bytes(), &[]);
        }
        let raw = builder.finish();
        self.state.lock().shards[shard_id as usize].append(&raw).0
    }
}

/// A response for the writer task; `None` closes the connection.
type Outgoing = Option<(u32, Vec<Bytes>)>;

async fn write_responses(
    mut socket: tokio::net::tcp::OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outgoing>,
    state: Arc<Mutex<FakeState>>,
) {
    while let Some(Some((correlation_id, chunks))) = outgoing.recv().await {
        state.lock().written_order.push(correlation_id);
        for chunk in chunks {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
        }
    }
}

async fn serve(socket: TcpStream, state: Arc<Mutex<FakeState>>) {
    let (mut socket, writer) = socket.into_split();
    let (outgoing, queue) = mpsc::channel::<Outgoing>(1024);
    tokio::spawn(write_responses(writer, queue, Arc::clone(&state)));
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut held: Vec<(u32, Vec<Bytes>)> = Vec::new();
    loop {
        loop {
            let total = match frame::check(&buf, frame::REQUEST_HEADER_BYTES, MAX_FRAME_BYTES) {
                Ok(FrameCheck::Complete(total)) => total,
                Ok(FrameCheck::Incomplete(_)) => break,
                Err(_) => return,
            };
            let (header, body) = frame::split_request(&mut buf, total);
            let Some(response) = answer(&state, header, body) else {
                let _ = outgoing.send(None).await; // drop the connection
                return;
            };
            if let Some((shard_id, delay)) = slow_answer(&state, header, &response) {
                let (outgoing, state) = (outgoing.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    state.lock().log.push(format!("answered {shard_id}"));
                    let _ = outgoing.send(Some((header.correlation_id, response))).await;
                });
                continue;
            }
            held.push((header.correlation_id, response));
            let window = state.lock().reverse_window;
            if held.len() < window.max(1) {
                continue;
            }
            for entry in held.drain(..).rev() {
                if outgoing.send(Some(entry)).await.is_err() {
                    return;
                }
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The slow shard and its delay, when this is a produce answer to it.
fn slow_answer(
    state: &Mutex<FakeState>,
    header: RequestHeader,
    response: &[Bytes],
) -> Option<(u32, Duration)> {
    let state = state.lock();
    let (shard_id, delay) = state.slow_shard?;
    let produce = header.api_key == ApiKey::Produce as u16 && !response.is_empty();
    let last = state.log.last()?;
    (produce && *last == format!("received {shard_id}")).then_some((shard_id, delay))
}

/// The response frame, or `None` to drop the connection.
fn answer(state: &Mutex<FakeState>, header: RequestHeader, body: Bytes) -> Option<Vec<Bytes>> {
    let id = header.correlation_id;
    let Some(key) = ApiKey::from_u16(header.api_key) else {
        return Some(frame::encode_error(
            id,
            ErrorCode::UnknownApi,
            "unknown api",
        ));
    };
    let mut state = state.lock();
    if state.frame_error_api == Some(key) {
        return Some(frame::encode_error(id, ErrorCode::InvalidRequest, "nope"));
    }
    if let Some((held_key, count)) = state.hold_then_drop {
        if held_key == key {
            state.hold_then_drop = Some((held_key, count.saturating_sub(1)));
            if count <= 1 {
                return None;
            }
            return Some(Vec::new());
        }
    }
    if let Some((held_key, count)) = state.hold_next {
        if held_key == key && count > 0 {
            state.hold_next = Some((held_key, count - 1));
            return Some(Vec::new());
        }
    }
    let mut w = Writer::new();
    match key {
        ApiKey::Handshake => handshake(&mut state).encode(&mut w),
        ApiKey::Metadata => {
            let _ = MetadataRequest::decode_all(body).unwrap();
            MetadataResponse {
                streams: vec![metadata(&state)],
            }
            .encode(&mut w)
        }
        ApiKey::DescribeStream => {
            let req = DescribeStreamRequest::decode_all(body).unwrap();
            DescribeStreamResponse {
                name: req.name,
                epoch: state.epoch,
                shards: metadata(&state).shards,
                ..DescribeStreamResponse::default()
            }
            .encode(&mut w)
        }
        ApiKey::Produce => return produce(&mut state, id, body),
        ApiKey::Fetch => fetch(&state, body).encode(&mut w),
        ApiKey::ListOffsets => list_offsets(&state, body).encode(&mut w),
        ApiKey::JoinGroup => {
            let req = surge_protocol::group::JoinGroupRequest::decode_all(body).unwrap();
            assignment(&mut state, key, &req.group).encode(&mut w)
        }
        ApiKey::Heartbeat => {
            let req = surge_protocol::group::HeartbeatRequest::decode_all(body).unwrap();
            assignment(&mut state, key, &req.group).encode(&mut w)
        }
        ApiKey::LeaveGroup => LeaveGroupResponse::default().encode(&mut w),
        ApiKey::CommitOffsets => {
            let req = CommitOffsetsRequest::decode_all(body).unwrap();
            let group = state.committed.entry(req.group).or_default();
            for entry in req.offsets {
                group.insert(entry.shard_id, entry.offset);
            }
            CommitOffsetsResponse::default().encode(&mut w)
        }
        ApiKey::FetchOffsets => {
            let req = FetchOffsetsRequest::decode_all(body).unwrap();
            let offsets = state.committed.get(&req.group).cloned().unwrap_or_default();
            FetchOffsetsResponse {
                error: ErrorCode::None,
                offsets: offsets
                    .into_iter()
                    .map(|(shard_id, offset)| ShardOffset { shard_id, offset })
                    .collect(),
            }
            .encode(&mut w)
        }
        _ => surge_protocol::stream::ListStreamsResponse::default().encode(&mut w),
    }
    Some(frame::encode_response(id, w))
}
