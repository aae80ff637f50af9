//! List offsets: the earliest, the latest, or the first offset at or after a
//! timestamp, per shard.

use crate::api::{ApiKey, Request};
use crate::error::ErrorCode;
use crate::{wire_enum, wire_struct};

wire_enum! {
    pub enum OffsetSpec {
        #[default]
        Earliest = 0,
        Latest = 1,
        /// First offset whose timestamp is at or after `timestamp_ms`.
        Timestamp = 2,
    }
}

wire_struct! {
    pub struct ListOffsetsPart {
        pub stream: String,
        pub shard_id: u32,
        pub spec: OffsetSpec,
        pub timestamp_ms: i64,
    }
}

wire_struct! {
    pub struct ListOffsetsRequest {
        pub parts: Vec<ListOffsetsPart>,
    }
}

wire_struct! {
    pub struct ListOffsetsPartResponse {
        pub stream: String,
        pub shard_id: u32,
        pub error: ErrorCode,
        pub offset: u64,
    }
}

wire_struct! {
    pub struct ListOffsetsResponse {
        pub parts: Vec<ListOffsetsPartResponse>,
    }
}

impl Request for ListOffsetsRequest {
    const API_KEY: ApiKey = ApiKey::ListOffsets;
    type Response = ListOffsetsResponse;
}
