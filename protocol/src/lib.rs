//! The Surge wire format. Pure: no sockets, no runtime, no allocation that a
//! length from the wire has not been checked for first.
//!
//! # Layout
//!
//! - `frame`: the length-prefixed envelope (request and response headers),
//!   check-then-parse, frame-level errors.
//! - `codec`: bounded `Reader`, chunked `Writer`, the `Wire` trait and the
//!   macros that declare message structs and enums.
//! - `batch`: the record batch stored on disk and sent on the wire verbatim.
//! - `api`: API keys and version ranges; one module per request family:
//!   `handshake`, `stream` (create/delete/list/describe, metadata),
//!   `produce`, `fetch`, `offsets`, `group`, `topology` (split, merge,
//!   move).
//! - `routing`: the key hash and initial hash ranges.
//! - `error`: the wire `ErrorCode` and `DecodeError`.

pub mod api;
pub mod batch;
pub mod codec;
pub mod error;
pub mod fetch;
pub mod frame;
pub mod group;
pub mod handshake;
pub mod offsets;
pub mod produce;
pub mod routing;
pub mod stream;
pub mod topology;

pub use api::{ApiKey, Request};
pub use codec::{Reader, Wire, Writer};
pub use error::{DecodeError, ErrorCode};

/// What `valid_name` accepts, for error messages.
pub const NAME_RULE: &str = "1-255 characters of [A-Za-z0-9._-]";

/// Stream, group and member names: 1..=255 bytes of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// Decodes `bytes` as every request and response body the wire carries,
/// dropping the results: the one list of them that the property tests and
/// the fuzz targets run any input through, to show no decoder panics.
#[doc(hidden)]
pub fn decode_as_every_message(bytes: &bytes::Bytes) {
    macro_rules! decode_all {
        ($($ty:ty),* $(,)?) => {$(
            let _ = <$ty>::decode_all(bytes.clone());
        )*};
    }
    decode_all!(
        handshake::HandshakeRequest,
        handshake::HandshakeResponse,
        stream::CreateStreamRequest,
        stream::CreateStreamResponse,
        stream::DeleteStreamRequest,
        stream::DeleteStreamResponse,
        stream::ListStreamsRequest,
        stream::ListStreamsResponse,
        stream::DescribeStreamRequest,
        stream::DescribeStreamResponse,
        stream::MetadataRequest,
        stream::MetadataResponse,
        produce::ProduceRequest,
        produce::ProduceResponse,
        fetch::FetchRequest,
        fetch::FetchResponse,
        offsets::ListOffsetsRequest,
        offsets::ListOffsetsResponse,
        group::JoinGroupRequest,
        group::Assignment,
        group::HeartbeatRequest,
        group::LeaveGroupRequest,
        group::LeaveGroupResponse,
        group::CommitOffsetsRequest,
        group::CommitOffsetsResponse,
        group::FetchOffsetsRequest,
        group::FetchOffsetsResponse,
        topology::ChangeTopologyRequest,
        topology::ChangeTopologyResponse,
    );
    let _ = frame::decode_error_message(bytes.clone());
}
