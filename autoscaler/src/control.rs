//! The hooks the autoscaler reshapes a stream through. Every change is
//! seal-and-succeed on the implementing side: the shards it replaces are
//! sealed at their current end and successors take over their hash ranges
//! in a new epoch, while producers keep writing.

use std::future::Future;

use thiserror::Error;

/// One shard as the autoscaler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub id: u32,
    /// Inclusive hash range.
    pub hash_start: u64,
    pub hash_end: u64,
    pub sealed: bool,
    pub parents: Vec<u32>,
    /// Data directory index (0: the main one).
    pub dir: u32,
    /// Routing group: `""` for the default one, else the event type whose
    /// shards these are. Only shards of one group can merge.
    pub group: String,
    /// Next offset (the sealed end for a sealed shard).
    pub end_offset: u64,
    pub size_bytes: u64,
}

/// A stream's shards in one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTopology {
    pub stream: String,
    pub epoch: u64,
    pub shards: Vec<ShardView>,
}

impl StreamTopology {
    pub fn open_shards(&self) -> impl Iterator<Item = &ShardView> {
        self.shards.iter().filter(|shard| !shard.sealed)
    }
}

/// What a committed change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeReport {
    pub epoch: u64,
    pub sealed: Vec<u32>,
    pub created: Vec<u32>,
    /// Time for the change to take effect, inside the broker.
    pub took_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    #[error("unknown stream {0}")]
    UnknownStream(String),
    /// The change does not apply (a sealed or unknown shard, shards that
    /// are not adjacent, a split point outside the range, ...).
    #[error("change rejected: {0}")]
    Rejected(String),
    /// The change was valid but could not be carried out (I/O).
    #[error("change failed: {0}")]
    Failed(String),
}

/// Split, merge, move and describe, as the broker (or a simulator) offers
/// them.
pub trait TopologyControl: Send + Sync {
    fn describe(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<StreamTopology, ControlError>> + Send;

    /// Splits `shard`; without `at`, at the weighted median of its recent
    /// key hashes.
    fn split(
        &self,
        stream: &str,
        shard: u32,
        at: Option<u64>,
    ) -> impl Future<Output = Result<ChangeReport, ControlError>> + Send;

    /// Merges two adjacent open shards.
    fn merge(
        &self,
        stream: &str,
        left: u32,
        right: u32,
    ) -> impl Future<Output = Result<ChangeReport, ControlError>> + Send;

    /// Continues `shard` in data directory `dir`.
    fn move_shard(
        &self,
        stream: &str,
        shard: u32,
        dir: u32,
    ) -> impl Future<Output = Result<ChangeReport, ControlError>> + Send;
}
