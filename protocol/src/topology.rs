//! Topology changes on demand: split a shard, merge two adjacent shards, or
//! move a shard to another data directory. Each is seal-and-succeed: the
//! affected shards are sealed at their current end and successors (which
//! list them as parents) take over their hash ranges in a new epoch.

use crate::api::{ApiKey, Request};
use crate::error::ErrorCode;
use crate::{wire_enum, wire_struct};

wire_enum! {
    pub enum ChangeKind {
        /// `shard_id` into two at `split_at` (or, when absent, the weighted
        /// median of its recent key hashes).
        #[default]
        Split = 0,
        /// `shard_id` and the adjacent `other_shard_id` into one.
        Merge = 1,
        /// `shard_id` to the data directory `target_dir`.
        Move = 2,
        /// Gives `event_type` its own `shard_count` shards (0: one). The
        /// default-group shards that carried the type are sealed and
        /// succeeded; the type's new shards list them as parents.
        Isolate = 3,
        /// Returns `event_type` to the default group: its shards are sealed,
        /// and so are the default shards that will carry it again; their
        /// successors list both as parents.
        Fold = 4,
    }
}

wire_struct! {
    pub struct ChangeTopologyRequest {
        pub stream: String,
        pub kind: ChangeKind,
        pub shard_id: u32,
        pub other_shard_id: u32,
        /// Split: the first hash of the upper child.
        pub split_at: Option<u64>,
        pub target_dir: u32,
        /// Isolate and fold: the value of the `type` header.
        pub event_type: String,
        /// Isolate: how many shards the type gets (0: one).
        pub shard_count: u32,
    }
}

wire_struct! {
    pub struct ChangeTopologyResponse {
        pub error: ErrorCode,
        pub message: String,
        /// The stream's epoch after the change.
        pub epoch: u64,
        pub sealed: Vec<u32>,
        pub created: Vec<u32>,
        /// How long the change took inside the broker, in microseconds.
        pub took_us: u64,
    }
}

impl Request for ChangeTopologyRequest {
    const API_KEY: ApiKey = ApiKey::ChangeTopology;
    type Response = ChangeTopologyResponse;
}
