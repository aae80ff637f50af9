//! Fetch: read record batches from shards, with long-polling. Records come
//! back as whole batches exactly as stored, so a batch holding the requested
//! offset may start before it; consumers skip the records below.

use bytes::Bytes;

use crate::api::{ApiKey, Request};
use crate::error::ErrorCode;
use crate::wire_struct;

wire_struct! {
    pub struct FetchPart {
        pub stream: String,
        pub shard_id: u32,
        pub offset: u64,
        pub max_bytes: u32,
    }
}

wire_struct! {
    pub struct FetchRequest {
        /// How long to wait for `min_bytes` before answering with what is
        /// there (possibly nothing).
        pub max_wait_ms: u32,
        pub min_bytes: u32,
        pub max_bytes: u32,
        pub parts: Vec<FetchPart>,
    }
}

wire_struct! {
    pub struct FetchPartResponse {
        pub stream: String,
        pub shard_id: u32,
        pub error: ErrorCode,
        pub high_watermark: u64,
        pub log_start_offset: u64,
        /// True when the shard is sealed and `high_watermark` is its end.
        pub sealed: bool,
        /// Whole batches, concatenated.
        pub records: Bytes,
    }
}

wire_struct! {
    pub struct FetchResponse {
        pub parts: Vec<FetchPartResponse>,
    }
}

impl Request for FetchRequest {
    const API_KEY: ApiKey = ApiKey::Fetch;
    type Response = FetchResponse;
}
