//! API keys and the versions this build speaks. Every request family lives
//! in its own module; this one only numbers them.

use crate::wire_struct;

/// Stable API numbers: never renumber, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ApiKey {
    Handshake = 0,
    CreateStream = 1,
    DeleteStream = 2,
    ListStreams = 3,
    DescribeStream = 4,
    Metadata = 5,
    Produce = 6,
    Fetch = 7,
    ListOffsets = 8,
    JoinGroup = 9,
    Heartbeat = 10,
    LeaveGroup = 11,
    CommitOffsets = 12,
    FetchOffsets = 13,
    ChangeTopology = 14,
}

impl ApiKey {
    pub const ALL: [ApiKey; 15] = [
        ApiKey::Handshake,
        ApiKey::CreateStream,
        ApiKey::DeleteStream,
        ApiKey::ListStreams,
        ApiKey::DescribeStream,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::JoinGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::CommitOffsets,
        ApiKey::FetchOffsets,
        ApiKey::ChangeTopology,
    ];

    pub fn from_u16(key: u16) -> Option<ApiKey> {
        Self::ALL.get(usize::from(key)).copied()
    }

    /// The versions of this API that this build accepts (inclusive).
    pub fn versions(self) -> (u16, u16) {
        match self {
            // v1: shards carry their isolation group; changes include
            // isolate and fold. v0 bodies decode differently, so they are
            // refused with `UnsupportedVersion` rather than misread.
            ApiKey::DescribeStream | ApiKey::Metadata | ApiKey::ChangeTopology => (1, 1),
            _ => (0, 0),
        }
    }
}

wire_struct! {
    /// One API's supported version range, as advertised in the handshake.
    pub struct ApiVersionRange {
        pub api_key: u16,
        pub min_version: u16,
        pub max_version: u16,
    }
}

/// Every API with its version range, for the handshake response.
pub fn supported_versions() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .iter()
        .map(|&key| {
            let (min_version, max_version) = key.versions();
            ApiVersionRange {
                api_key: key as u16,
                min_version,
                max_version,
            }
        })
        .collect()
}

/// A request body, tied to its API key and response type.
pub trait Request: crate::codec::Wire {
    const API_KEY: ApiKey;
    type Response: crate::codec::Wire;
}
