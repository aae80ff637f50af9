//! Errors: the wire `ErrorCode` every response carries, and the `DecodeError`
//! a decoder returns for bytes it cannot accept.

use thiserror::Error;

/// The error code carried on the wire. Stable numbers: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u16)]
pub enum ErrorCode {
    #[default]
    None = 0,
    Internal = 1,
    MalformedFrame = 2,
    FrameTooLarge = 3,
    UnknownApi = 4,
    UnsupportedVersion = 5,
    HandshakeRequired = 6,
    UnknownStream = 7,
    StreamExists = 8,
    UnknownShard = 9,
    OffsetOutOfRange = 10,
    InvalidBatch = 11,
    BatchTooLarge = 12,
    EmptyBatch = 13,
    OutOfOrderSequence = 14,
    ShardSealed = 15,
    InvalidRequest = 16,
    UnknownMember = 17,
    RebalanceInProgress = 18,
    NotAssigned = 19,
    Storage = 20,
    Timeout = 21,
    ShuttingDown = 22,
    TooManyConnections = 23,
    InvalidStreamName = 24,
    IllegalGeneration = 25,
    /// The broker's disk for the shard is full: the batch was not stored.
    /// Not retried by the client: space comes back only when retention or
    /// an operator frees it.
    DiskFull = 26,
}

impl ErrorCode {
    const ALL: [ErrorCode; 27] = [
        ErrorCode::None,
        ErrorCode::Internal,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownApi,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HandshakeRequired,
        ErrorCode::UnknownStream,
        ErrorCode::StreamExists,
        ErrorCode::UnknownShard,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::InvalidBatch,
        ErrorCode::BatchTooLarge,
        ErrorCode::EmptyBatch,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::ShardSealed,
        ErrorCode::InvalidRequest,
        ErrorCode::UnknownMember,
        ErrorCode::RebalanceInProgress,
        ErrorCode::NotAssigned,
        ErrorCode::Storage,
        ErrorCode::Timeout,
        ErrorCode::ShuttingDown,
        ErrorCode::TooManyConnections,
        ErrorCode::InvalidStreamName,
        ErrorCode::IllegalGeneration,
        ErrorCode::DiskFull,
    ];

    /// Codes unknown to this build decode as `Internal` so an old client can
    /// still report that something went wrong.
    pub fn from_u16(code: u16) -> ErrorCode {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(ErrorCode::Internal)
    }

    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// Whether a client may retry the same request unchanged.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::Timeout
                | ErrorCode::ShuttingDown
                | ErrorCode::ShardSealed
                | ErrorCode::RebalanceInProgress
                | ErrorCode::TooManyConnections
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            ErrorCode::None => "no error",
            ErrorCode::Internal => "internal broker error",
            ErrorCode::MalformedFrame => "malformed frame",
            ErrorCode::FrameTooLarge => "frame larger than the maximum",
            ErrorCode::UnknownApi => "unknown API key",
            ErrorCode::UnsupportedVersion => "unsupported API version",
            ErrorCode::HandshakeRequired => "handshake required before other requests",
            ErrorCode::UnknownStream => "unknown stream",
            ErrorCode::StreamExists => "stream already exists",
            ErrorCode::UnknownShard => "unknown shard",
            ErrorCode::OffsetOutOfRange => "offset out of range",
            ErrorCode::InvalidBatch => "invalid record batch",
            ErrorCode::BatchTooLarge => "record batch larger than the maximum",
            ErrorCode::EmptyBatch => "record batch has no records",
            ErrorCode::OutOfOrderSequence => "producer sequence out of order",
            ErrorCode::ShardSealed => "shard is sealed",
            ErrorCode::InvalidRequest => "invalid request",
            ErrorCode::UnknownMember => "unknown group member",
            ErrorCode::RebalanceInProgress => "group rebalance in progress",
            ErrorCode::NotAssigned => "shard not assigned to this member",
            ErrorCode::Storage => "storage error",
            ErrorCode::Timeout => "timed out",
            ErrorCode::ShuttingDown => "broker is shutting down",
            ErrorCode::TooManyConnections => "too many connections",
            ErrorCode::InvalidStreamName => "invalid stream name",
            ErrorCode::IllegalGeneration => "stale group generation",
            ErrorCode::DiskFull => "no space left on the broker's disk",
        };
        f.write_str(text)
    }
}

/// Why a decoder rejected its input. Carries the numbers, not prose.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("unexpected end of input at byte {offset}: need {need}, have {have}")]
    UnexpectedEof {
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("length {len} exceeds the limit {max}")]
    LengthTooLarge { len: usize, max: usize },
    #[error("{count} elements exceed the limit {max}")]
    TooManyElements { count: usize, max: usize },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid value {value} for {field}")]
    InvalidValue { field: &'static str, value: u64 },
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes { extra: usize },
    #[error("bad magic {found:#06x}")]
    BadMagic { found: u16 },
    #[error("unsupported batch version {found}")]
    UnsupportedBatchVersion { found: u8 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_unknown_ones_are_internal() {
        for (index, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, index, "{code:?} out of place");
            assert_eq!(ErrorCode::from_u16(*code as u16), *code);
        }
        assert_eq!(
            ErrorCode::from_u16(ErrorCode::ALL.len() as u16),
            ErrorCode::Internal
        );
        assert!(!ErrorCode::DiskFull.is_retriable());
    }
}
