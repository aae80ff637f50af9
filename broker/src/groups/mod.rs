//! Consumer groups: membership, broker-side shard assignment and durable
//! committed offsets. A group is scoped to one stream; a shard is read by at
//! most one member at a time (see `state`).
//!
//! # Layout
//!
//! - `assign`: the pure, balanced and sticky target assignment.
//! - `state`: pure membership and shard ownership (the exclusivity rule).
//! - `record`: the byte layout of `offsets.log` records (pure codec).
//! - `store`: the durable offset log (replay, append + fdatasync, compaction).
//! - `coordinator`: the thread-safe glue the server calls.
//! - `error`: `GroupError` and its wire code.

mod assign;
mod coordinator;
mod error;
mod record;
mod state;
mod store;

pub use coordinator::GroupCoordinator;
pub use error::GroupError;
pub use store::OffsetStore;
