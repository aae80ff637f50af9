//! The broker library's error type, and its mapping to wire error codes.

use std::path::PathBuf;

use surge_protocol::ErrorCode;
use thiserror::Error;

use crate::groups::GroupError;
use crate::storage::StorageError;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt metadata in {path}: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
    #[error("data directory {path} is in use by another broker")]
    DataDirLocked { path: PathBuf },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Groups(#[from] GroupError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

impl BrokerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::Storage(StorageError::OffsetOutOfRange { .. }) => {
                ErrorCode::OffsetOutOfRange
            }
            BrokerError::Groups(err) => err.code(),
            BrokerError::Storage(err) if err.is_disk_full() => ErrorCode::DiskFull,
            BrokerError::Io { source, .. } if crate::storage::is_disk_full(source) => {
                ErrorCode::DiskFull
            }
            _ => ErrorCode::Storage,
        }
    }
}
