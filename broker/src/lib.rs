//! The Surge broker library.
//!
//! # Layout
//!
//! - `storage`: segment files, indexes, the shard log, recovery, retention.
//! - `groups`: consumer-group membership, assignment and committed offsets.

pub mod groups;
pub mod storage;
