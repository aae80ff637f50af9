//! Consumer groups: join, heartbeat, leave, and committed offsets. The
//! broker assigns shards; a member learns its assignment from join and from
//! every heartbeat, and acknowledges it by heartbeating with the generation
//! it now works under. A shard is handed to a new member only after the old
//! one has acknowledged giving it up (or its session expired), so no shard
//! is read by two members at once.

use crate::api::{ApiKey, Request};
use crate::error::ErrorCode;
use crate::wire_struct;

wire_struct! {
    pub struct JoinGroupRequest {
        pub group: String,
        pub stream: String,
        /// Empty for a new member; the broker assigns one.
        pub member_id: String,
        pub session_timeout_ms: u32,
    }
}

wire_struct! {
    pub struct Assignment {
        pub error: ErrorCode,
        pub member_id: String,
        pub generation: u64,
        /// Shards this member may read now.
        pub shards: Vec<u32>,
    }
}

impl Request for JoinGroupRequest {
    const API_KEY: ApiKey = ApiKey::JoinGroup;
    type Response = Assignment;
}

wire_struct! {
    pub struct HeartbeatRequest {
        pub group: String,
        pub stream: String,
        pub member_id: String,
        /// The generation whose assignment the member has applied.
        pub generation: u64,
    }
}

impl Request for HeartbeatRequest {
    const API_KEY: ApiKey = ApiKey::Heartbeat;
    type Response = Assignment;
}

wire_struct! {
    pub struct LeaveGroupRequest {
        pub group: String,
        pub stream: String,
        pub member_id: String,
    }
}

wire_struct! {
    pub struct LeaveGroupResponse {
        pub error: ErrorCode,
    }
}

impl Request for LeaveGroupRequest {
    const API_KEY: ApiKey = ApiKey::LeaveGroup;
    type Response = LeaveGroupResponse;
}

wire_struct! {
    pub struct ShardOffset {
        pub shard_id: u32,
        pub offset: u64,
    }
}

wire_struct! {
    /// Commits the next offset to read per shard. With a member id, only
    /// shards assigned to that member are accepted; an empty member id
    /// commits as an administrator (e.g. to reset a group).
    pub struct CommitOffsetsRequest {
        pub group: String,
        pub stream: String,
        pub member_id: String,
        pub generation: u64,
        pub offsets: Vec<ShardOffset>,
    }
}

wire_struct! {
    pub struct CommitOffsetsResponse {
        pub error: ErrorCode,
    }
}

impl Request for CommitOffsetsRequest {
    const API_KEY: ApiKey = ApiKey::CommitOffsets;
    type Response = CommitOffsetsResponse;
}

wire_struct! {
    pub struct FetchOffsetsRequest {
        pub group: String,
        pub stream: String,
    }
}

wire_struct! {
    pub struct FetchOffsetsResponse {
        pub error: ErrorCode,
        /// Committed offsets; shards never committed are absent.
        pub offsets: Vec<ShardOffset>,
    }
}

impl Request for FetchOffsetsRequest {
    const API_KEY: ApiKey = ApiKey::FetchOffsets;
    type Response = FetchOffsetsResponse;
}
