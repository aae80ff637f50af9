//! Stream management and metadata: create, delete, list, describe, and the
//! routing metadata (shards, hash ranges, epoch) producers route by.

use crate::api::{ApiKey, Request};
use crate::error::ErrorCode;
use crate::{wire_enum, wire_struct};

wire_enum! {
    /// When an append is acknowledged.
    pub enum Durability {
        /// After the data is on disk (fdatasync). The default.
        #[default]
        Fsync = 0,
        /// After the data is written to the page cache; flushed within the
        /// stream's flush interval.
        Write = 1,
    }
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Durability> {
        match text {
            "fsync" => Some(Durability::Fsync),
            "write" => Some(Durability::Write),
            _ => None,
        }
    }
}

wire_enum! {
    pub enum ShardState {
        #[default]
        Open = 0,
        Sealed = 1,
    }
}

wire_struct! {
    /// A stream's settings. On create, zero means "the broker's default";
    /// a retention of `u64::MAX` means unlimited.
    pub struct StreamConfig {
        pub shard_count: u32,
        pub durability: Durability,
        pub retention_bytes: u64,
        pub retention_ms: u64,
        pub segment_bytes: u64,
        pub segment_ms: u64,
        pub flush_interval_ms: u32,
        /// What events are routed by: empty for the event key, else the
        /// name of a header (`type` routes by event type).
        pub routing_header: String,
    }
}

wire_struct! {
    pub struct CreateStreamRequest {
        pub name: String,
        pub config: StreamConfig,
    }
}

wire_struct! {
    pub struct CreateStreamResponse {
        pub error: ErrorCode,
        pub message: String,
    }
}

impl Request for CreateStreamRequest {
    const API_KEY: ApiKey = ApiKey::CreateStream;
    type Response = CreateStreamResponse;
}

wire_struct! {
    pub struct DeleteStreamRequest {
        pub name: String,
    }
}

wire_struct! {
    pub struct DeleteStreamResponse {
        pub error: ErrorCode,
    }
}

impl Request for DeleteStreamRequest {
    const API_KEY: ApiKey = ApiKey::DeleteStream;
    type Response = DeleteStreamResponse;
}

wire_struct! {
    pub struct ListStreamsRequest {}
}

wire_struct! {
    pub struct StreamSummary {
        pub name: String,
        pub shard_count: u32,
        pub epoch: u64,
    }
}

wire_struct! {
    pub struct ListStreamsResponse {
        pub streams: Vec<StreamSummary>,
    }
}

impl Request for ListStreamsRequest {
    const API_KEY: ApiKey = ApiKey::ListStreams;
    type Response = ListStreamsResponse;
}

/// The header naming an event's type: isolation rules match its value.
pub const TYPE_HEADER: &str = "type";

/// The shard group an event belongs to: its type when that type is isolated
/// (some open shard is in the group named after it), else the default group
/// (`""`). Client and broker must agree, so both call this.
pub fn routing_group<'a>(
    event_type: Option<&[u8]>,
    isolated: impl IntoIterator<Item = &'a str>,
) -> &'a str {
    let Some(event_type) = event_type else {
        return "";
    };
    isolated
        .into_iter()
        .find(|group| !group.is_empty() && group.as_bytes() == event_type)
        .unwrap_or("")
}

/// The bytes an event is routed by: its key, or the value of the stream's
/// routing header. Client and broker must agree, so both call this.
pub fn routing_value<'a>(
    routing_header: &str,
    key: Option<&'a [u8]>,
    mut header: impl FnMut(&str) -> Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if routing_header.is_empty() {
        key
    } else {
        header(routing_header)
    }
}

wire_struct! {
    /// A shard as routing and operators see it. The hash range is inclusive
    /// at both ends so that one shard can own the whole 64-bit space.
    pub struct ShardInfo {
        pub shard_id: u32,
        pub hash_start: u64,
        pub hash_end: u64,
        pub state: ShardState,
        pub parents: Vec<u32>,
        /// First offset still stored (retention moves it forward).
        pub log_start_offset: u64,
        /// Next offset to be committed: consumers read below it.
        pub high_watermark: u64,
        pub size_bytes: u64,
        /// The data directory holding the shard's log (0: the main one).
        pub dir: u32,
        /// The event type this shard is isolated for; empty: the default
        /// group, which carries every type without a shard group of its own.
        pub group: String,
    }
}

wire_struct! {
    pub struct DescribeStreamRequest {
        pub name: String,
    }
}

wire_struct! {
    pub struct DescribeStreamResponse {
        pub error: ErrorCode,
        pub name: String,
        pub config: StreamConfig,
        pub epoch: u64,
        pub shards: Vec<ShardInfo>,
    }
}

impl Request for DescribeStreamRequest {
    const API_KEY: ApiKey = ApiKey::DescribeStream;
    type Response = DescribeStreamResponse;
}

wire_struct! {
    /// Routing metadata for the named streams (all streams when empty).
    pub struct MetadataRequest {
        pub streams: Vec<String>,
    }
}

wire_struct! {
    pub struct StreamMetadata {
        pub error: ErrorCode,
        pub name: String,
        pub epoch: u64,
        pub shards: Vec<ShardInfo>,
        /// See `StreamConfig::routing_header`.
        pub routing_header: String,
    }
}

wire_struct! {
    pub struct MetadataResponse {
        pub streams: Vec<StreamMetadata>,
    }
}

impl Request for MetadataRequest {
    const API_KEY: ApiKey = ApiKey::Metadata;
    type Response = MetadataResponse;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_isolated_type_leaves_the_default_group() {
        let isolated = ["click", "view"];
        assert_eq!(routing_group(Some(b"click"), isolated), "click");
        assert_eq!(routing_group(Some(b"view"), isolated), "view");
        assert_eq!(routing_group(Some(b"buy"), isolated), "");
        assert_eq!(routing_group(None, isolated), "");
        // The default group's name never matches an event type.
        assert_eq!(routing_group(Some(b""), ["", "click"]), "");
    }
}
