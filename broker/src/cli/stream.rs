//! `surge stream create|list|describe|delete`. `describe` adds each
//! shard's measured rates from the HTTP API when it is reachable.

use anyhow::bail;
use surge_broker::http::topology::{ShardTopology, Topology};
use surge_protocol::stream::{Durability, ShardInfo, ShardState, StreamConfig};

use super::topology::bytes;
use super::{query_value, BrokerAddr, HttpAddr};

#[derive(Debug, clap::Subcommand)]
pub enum StreamCommand {
    /// Create a stream.
    Create {
        name: String,
        /// Initial shards (0: the broker's default).
        #[arg(long, default_value_t = 0)]
        shards: u32,
        /// When appends are acknowledged: fsync or write.
        #[arg(long, default_value = "fsync")]
        durability: String,
        /// Delete old segments beyond this many bytes per shard.
        #[arg(long, default_value_t = 0)]
        retention_bytes: u64,
        /// Delete segments older than this.
        #[arg(long, default_value_t = 0)]
        retention_ms: u64,
        /// Roll segments at this size.
        #[arg(long, default_value_t = 0)]
        segment_bytes: u64,
        /// Route events by `key` (default), `type` (the type header), or
        /// `header:NAME`.
        #[arg(long, default_value = "key")]
        route_by: String,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// List streams.
    List {
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Show a stream's settings and shards, with per-shard rates.
    Describe {
        name: String,
        #[command(flatten)]
        addr: BrokerAddr,
        #[command(flatten)]
        http: HttpAddr,
    },
    /// Delete a stream and all its data.
    Delete {
        name: String,
        #[command(flatten)]
        addr: BrokerAddr,
    },
}

pub async fn run(command: StreamCommand) -> anyhow::Result<()> {
    match command {
        StreamCommand::Create {
            name,
            shards,
            durability,
            retention_bytes,
            retention_ms,
            segment_bytes,
            route_by,
            addr,
        } => {
            let Some(durability) = Durability::parse(&durability) else {
                bail!("--durability {durability:?}: expected fsync or write");
            };
            let routing_header = match route_by.as_str() {
                "key" => String::new(),
                "type" => "type".to_owned(),
                other => match other.strip_prefix("header:") {
                    Some(name) if !name.is_empty() => name.to_owned(),
                    _ => bail!("--route-by {other:?}: expected key, type or header:NAME"),
                },
            };
            let config = StreamConfig {
                shard_count: shards,
                durability,
                retention_bytes,
                retention_ms,
                segment_bytes,
                routing_header,
                ..StreamConfig::default()
            };
            addr.connect().await?.create_stream(&name, config).await?;
            println!("created stream {name}");
        }
        StreamCommand::List { addr } => {
            let streams = addr.connect().await?.list_streams().await?;
            println!("{:<32} {:>7} {:>7}", "STREAM", "SHARDS", "EPOCH");
            for stream in streams {
                println!(
                    "{:<32} {:>7} {:>7}",
                    stream.name, stream.shard_count, stream.epoch
                );
            }
        }
        StreamCommand::Describe { name, addr, http } => describe(&name, &addr, &http).await?,
        StreamCommand::Delete { name, addr } => {
            addr.connect().await?.delete_stream(&name).await?;
            println!("deleted stream {name}");
        }
    }
    Ok(())
}

/// The stream's shards as the HTTP API reports them (with rates), or why
/// not.
async fn measured(name: &str, http: &HttpAddr) -> Result<Vec<ShardTopology>, String> {
    let path = format!("/get_topology?stream={}", query_value(name));
    let topology: Topology = http
        .call("GET", &path, None)
        .await
        .map_err(|err| surge_client::report(err.as_ref()))?;
    Ok(topology
        .streams
        .into_iter()
        .flat_map(|stream| stream.shards)
        .collect())
}

async fn describe(name: &str, addr: &BrokerAddr, http: &HttpAddr) -> anyhow::Result<()> {
    let described = addr.connect().await?.describe_stream(name).await?;
    let measured = measured(name, http).await;
    let config = &described.config;
    println!("stream      {}", described.name);
    println!("epoch       {}", described.epoch);
    println!("durability  {}", config.durability.name());
    println!(
        "retention   {} bytes, {} ms per shard",
        limit(config.retention_bytes),
        limit(config.retention_ms)
    );
    println!("segments    {} bytes", config.segment_bytes);
    let route_by = match config.routing_header.as_str() {
        "" => "key".to_owned(),
        header => format!("header {header}"),
    };
    println!("routed by   {route_by}");
    println!("isolated    {}", isolated_types(&described.shards));
    println!();
    println!(
        "{:>5}  {:<18} {:<18} {:<6} {:>12} {:>12} {:>12} {:>3} {:>10} {:>10}  {:<16} PARENTS",
        "SHARD",
        "HASH START",
        "HASH END",
        "STATE",
        "START",
        "END",
        "BYTES",
        "DIR",
        "EV/S",
        "B/S",
        "GROUP"
    );
    for shard in &described.shards {
        let state = match shard.state {
            ShardState::Open => "open",
            ShardState::Sealed => "sealed",
        };
        let group = if shard.group.is_empty() {
            "default"
        } else {
            shard.group.as_str()
        };
        let rates = measured
            .as_ref()
            .ok()
            .and_then(|shards| shards.iter().find(|measured| measured.id == shard.shard_id))
            .and_then(|measured| measured.rates.as_ref());
        let events_per_s = rates.map_or("-".into(), |rates| format!("{:.1}", rates.events_per_s));
        let bytes_per_s = rates.map_or("-".into(), |rates| bytes(rates.bytes_per_s));
        println!(
            "{:>5}  {:#018x} {:#018x} {:<6} {:>12} {:>12} {:>12} {:>3} {:>10} {:>10}  {:<16} {}",
            shard.shard_id,
            shard.hash_start,
            shard.hash_end,
            state,
            shard.log_start_offset,
            shard.high_watermark,
            shard.size_bytes,
            shard.dir,
            events_per_s,
            bytes_per_s,
            group,
            super::topology::parents(&shard.parents),
        );
    }
    if let Err(why) = measured {
        println!();
        println!("(no rates: {why})");
    }
    Ok(())
}

/// The isolation rules: the event types with open shards of their own.
fn isolated_types(shards: &[ShardInfo]) -> String {
    let mut types: Vec<&str> = shards
        .iter()
        .filter(|shard| shard.state == ShardState::Open && !shard.group.is_empty())
        .map(|shard| shard.group.as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    if types.is_empty() {
        "none".into()
    } else {
        types.join(", ")
    }
}

fn limit(value: u64) -> String {
    if value == 0 || value == u64::MAX {
        "unlimited".into()
    } else {
        value.to_string()
    }
}
