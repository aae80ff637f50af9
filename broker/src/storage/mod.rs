//! Shard logs on disk.
