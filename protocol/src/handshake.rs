//! Handshake: the first request on every connection. The client names itself
//! and the protocol range it speaks; the broker answers with the version
//! ranges of every API, its limits, and a fresh producer id for idempotent
//! appends.

use crate::api::{ApiKey, ApiVersionRange, Request};
use crate::error::ErrorCode;
use crate::wire_struct;

/// Protocol generation spoken by this build; the handshake fails with
/// `UnsupportedVersion` when the ranges do not meet.
pub const PROTOCOL_VERSION: u16 = 1;

wire_struct! {
    pub struct HandshakeRequest {
        pub client_id: String,
        pub min_protocol: u16,
        pub max_protocol: u16,
    }
}

wire_struct! {
    pub struct HandshakeResponse {
        pub error: ErrorCode,
        pub protocol: u16,
        pub broker_id: String,
        pub apis: Vec<ApiVersionRange>,
        pub max_frame_bytes: u32,
        pub max_batch_bytes: u32,
        /// Unique per handshake; a producer stamps it on its batches.
        pub producer_id: u64,
    }
}

impl Request for HandshakeRequest {
    const API_KEY: ApiKey = ApiKey::Handshake;
    type Response = HandshakeResponse;
}
