//! The storage error enum: every failure of the storage layer, carrying the
//! numbers (offsets, positions, counts) needed to act on it.

use std::path::PathBuf;

use surge_protocol::error::DecodeError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    /// An operating-system call failed; `source.raw_os_error()` has the errno
    /// (ENOSPC for a full disk).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("corrupt {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("{count} segments exceed the limit {max}")]
    TooManySegments { count: usize, max: usize },
    #[error("batch {index} of the append is invalid: {source}")]
    InvalidBatch {
        index: usize,
        #[source]
        source: DecodeError,
    },
    #[error("io_uring is unavailable: {source}")]
    UringUnavailable {
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether an operating-system call failed for want of space (ENOSPC,
    /// or EDQUOT under a quota): nothing more can be stored until some is
    /// freed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if is_disk_full(source))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Whether `error` means no space is left (ENOSPC, or EDQUOT under a
/// quota): the one test every layer uses to answer `DiskFull`.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    )
}
