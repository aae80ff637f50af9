//! Produce: append record batches to shards of one stream.

use bytes::Bytes;

use crate::api::{ApiKey, Request};
use crate::error::ErrorCode;
use crate::{wire_enum, wire_struct};

wire_enum! {
    /// The acknowledgement a producer asks for. The broker applies the
    /// stronger of this and the stream's durability, never the weaker.
    pub enum Acks {
        #[default]
        StreamDefault = 0,
        Write = 1,
        Fsync = 2,
    }
}

wire_struct! {
    pub struct ProducePart {
        pub shard_id: u32,
        /// One record batch (see `batch`), base offset left at zero.
        pub batch: Bytes,
    }
}

wire_struct! {
    pub struct ProduceRequest {
        pub stream: String,
        pub acks: Acks,
        pub timeout_ms: u32,
        pub parts: Vec<ProducePart>,
    }
}

wire_struct! {
    /// Where one record of a forwarded batch was stored.
    pub struct RecordPlacement {
        pub shard_id: u32,
        pub offset: u64,
    }
}

wire_struct! {
    pub struct ProducePartResponse {
        pub shard_id: u32,
        pub error: ErrorCode,
        /// Offset of the batch's first record (also for a deduplicated retry).
        pub base_offset: u64,
        /// True when the batch was a retry already stored.
        pub duplicate: bool,
        /// Empty unless the shard was sealed and the broker forwarded the
        /// batch to its successors: then one entry per record, in batch
        /// order, and `base_offset` is meaningless.
        pub placements: Vec<RecordPlacement>,
    }
}

wire_struct! {
    pub struct ProduceResponse {
        pub error: ErrorCode,
        /// The stream's routing epoch; a client with an older one refreshes.
        pub epoch: u64,
        pub parts: Vec<ProducePartResponse>,
    }
}

impl Request for ProduceRequest {
    const API_KEY: ApiKey = ApiKey::Produce;
    type Response = ProduceResponse;
}
