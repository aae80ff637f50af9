//! `surge shard split|merge|move|isolate|fold`: reshape a stream by hand.
//! Each change seals the shards it replaces and starts successors;
//! producers keep writing throughout.

use anyhow::bail;
use surge_protocol::topology::{ChangeKind, ChangeTopologyRequest};

use super::BrokerAddr;

#[derive(Debug, clap::Subcommand)]
pub enum ShardCommand {
    /// Split a shard in two, at the weighted median of its recent key
    /// hashes unless `--at` gives the first hash of the upper half.
    Split {
        stream: String,
        shard: u32,
        /// First hash of the upper child (decimal or 0x-prefixed hex).
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Merge two adjacent shards into one.
    Merge {
        stream: String,
        left: u32,
        right: u32,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Continue a shard in another data directory (0: `data_dir`, then
    /// `extra_data_dirs` in order).
    Move {
        stream: String,
        shard: u32,
        #[arg(long)]
        dir: u32,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Give an event type (the value of the `type` header) shards of its
    /// own; the shards that carried it are sealed and succeeded.
    Isolate {
        stream: String,
        event_type: String,
        /// Shards the type gets (1 on a stream routed by type).
        #[arg(long, default_value_t = 1)]
        shards: u32,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Return an isolated event type to the stream's default shards.
    Fold {
        stream: String,
        event_type: String,
        #[command(flatten)]
        addr: BrokerAddr,
    },
}

fn parse_hash(text: &str) -> anyhow::Result<u64> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(value) => Ok(value),
        Err(_) => bail!("--at {text:?}: expected a 64-bit number (decimal or 0x hex)"),
    }
}

pub async fn run(command: ShardCommand) -> anyhow::Result<()> {
    let (addr, request) = match command {
        ShardCommand::Split {
            stream,
            shard,
            at,
            addr,
        } => {
            let split_at = at.as_deref().map(parse_hash).transpose()?;
            let request = ChangeTopologyRequest {
                stream,
                kind: ChangeKind::Split,
                shard_id: shard,
                split_at,
                ..ChangeTopologyRequest::default()
            };
            (addr, request)
        }
        ShardCommand::Merge {
            stream,
            left,
            right,
            addr,
        } => {
            let request = ChangeTopologyRequest {
                stream,
                kind: ChangeKind::Merge,
                shard_id: left,
                other_shard_id: right,
                ..ChangeTopologyRequest::default()
            };
            (addr, request)
        }
        ShardCommand::Move {
            stream,
            shard,
            dir,
            addr,
        } => {
            let request = ChangeTopologyRequest {
                stream,
                kind: ChangeKind::Move,
                shard_id: shard,
                target_dir: dir,
                ..ChangeTopologyRequest::default()
            };
            (addr, request)
        }
        ShardCommand::Isolate {
            stream,
            event_type,
            shards,
            addr,
        } => {
            let request = ChangeTopologyRequest {
                stream,
                kind: ChangeKind::Isolate,
                event_type,
                shard_count: shards,
                ..ChangeTopologyRequest::default()
            };
            (addr, request)
        }
        ShardCommand::Fold {
            stream,
            event_type,
            addr,
        } => {
            let request = ChangeTopologyRequest {
                stream,
                kind: ChangeKind::Fold,
                event_type,
                ..ChangeTopologyRequest::default()
            };
            (addr, request)
        }
    };
    let done = addr.connect().await?.change_topology(&request).await?;
    let list = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    println!(
        "sealed {} -> created {} (epoch {}, {} us)",
        list(&done.sealed),
        list(&done.created),
        done.epoch,
        done.took_us
    );
    Ok(())
}
