//! The one error type of the groups module. Variants carry the numbers that
//! explain them; `code` converts to the wire `ErrorCode` at the boundary.

use surge_protocol::ErrorCode;
use thiserror::Error;

/// Why a group operation or the offset store failed.
#[derive(Debug, Error)]
pub enum GroupError {
    #[error("invalid group name ({len} bytes)")]
    InvalidGroupName { len: usize },
    #[error("invalid stream name ({len} bytes)")]
    InvalidStreamName { len: usize },
    #[error("unknown member ({len} byte id)")]
    UnknownMember { len: usize },
    #[error("generation {requested} is newer than the group's {current}")]
    IllegalGeneration { requested: u64, current: u64 },
    #[error("shard {shard_id} is not owned by this member")]
    NotAssigned { shard_id: u32 },
    #[error("administrative commit refused: {members} live members")]
    GroupHasMembers { members: usize },
    #[error("{count} groups reach the limit {max}")]
    TooManyGroups { count: usize, max: usize },
    #[error("{count} members reach the limit {max}")]
    TooManyMembers { count: usize, max: usize },
    #[error("{count} shards exceed the limit {max}")]
    TooManyShards { count: usize, max: usize },
    #[error("{count} offsets in one commit exceed the limit {max}")]
    TooManyOffsets { count: usize, max: usize },
    #[error("{count} stored offsets reach the limit {max}")]
    OffsetStoreFull { count: usize, max: usize },
    #[error("offset store I/O failed during {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("offset store is unusable after an earlier failed write or sync")]
    StorePoisoned,
}

impl GroupError {
    /// The wire code a response carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::InvalidStreamName { .. } => ErrorCode::InvalidStreamName,
            GroupError::UnknownMember { .. } => ErrorCode::UnknownMember,
            GroupError::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            GroupError::NotAssigned { .. } => ErrorCode::NotAssigned,
            GroupError::GroupHasMembers { .. } => ErrorCode::RebalanceInProgress,
            GroupError::Io { source, .. } if crate::storage::is_disk_full(source) => {
                ErrorCode::DiskFull
            }
            GroupError::Io { .. } | GroupError::StorePoisoned => ErrorCode::Storage,
            GroupError::InvalidGroupName { .. }
            | GroupError::TooManyGroups { .. }
            | GroupError::TooManyMembers { .. }
            | GroupError::TooManyShards { .. }
            | GroupError::TooManyOffsets { .. }
            | GroupError::OffsetStoreFull { .. } => ErrorCode::InvalidRequest,
        }
    }

    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> GroupError {
        move |source| GroupError::Io { op, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_disk_full_and_other_io_failures_storage() {
        let io = |errno| GroupError::Io {
            op: "append offsets record",
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert_eq!(io(libc::ENOSPC).code(), ErrorCode::DiskFull);
        assert_eq!(io(libc::EDQUOT).code(), ErrorCode::DiskFull);
        assert_eq!(io(libc::EIO).code(), ErrorCode::Storage);
        assert_eq!(GroupError::StorePoisoned.code(), ErrorCode::Storage);
    }
}
