//! `surge topology [STREAM]`: every stream's shards with their ranges,
//! state, lineage, owner and measured rates, and the node's utilization,
//! from `GET /get_topology`.

use surge_broker::http::topology::{StreamTopology, Topology};

use super::{query_value, HttpAddr};

#[derive(Debug, clap::Args)]
pub struct TopologyArgs {
    /// One stream (default: all).
    stream: Option<String>,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    http: HttpAddr,
}

pub async fn run(args: TopologyArgs) -> anyhow::Result<()> {
    let path = match &args.stream {
        Some(stream) => format!("/get_topology?stream={}", query_value(stream)),
        None => "/get_topology".to_owned(),
    };
    let topology: Topology = args.http.call("GET", &path, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&topology)?);
        return Ok(());
    }
    let mode = if topology.autoscaler_enabled {
        "on"
    } else {
        "dry"
    };
    println!("broker      {} (autoscaler {mode})", topology.broker_id);
    if let Some(node) = &topology.node {
        println!(
            "node        cpu {:.0}%  memory {:.0}%  disk {:.0}%  net in {}/s out {}/s",
            node.cpu_utilization * 100.0,
            node.mem_utilization * 100.0,
            node.disk_utilization * 100.0,
            bytes(node.net_rx_bytes_per_s),
            bytes(node.net_tx_bytes_per_s),
        );
    }
    for stream in &topology.streams {
        println!();
        print_stream(stream);
    }
    Ok(())
}

fn print_stream(stream: &StreamTopology) {
    let rate = stream
        .events_per_s
        .map_or("-".to_owned(), |rate| format!("{rate:.1} ev/s"));
    println!(
        "{}  epoch {}  routed by {}  {rate}",
        stream.name, stream.epoch, stream.routed_by
    );
    println!(
        "{:>5}  {:<18} {:<18} {:<6} {:>10} {:>10} {:>9} {:>8}  {:<10} PARENTS",
        "SHARD", "HASH START", "HASH END", "STATE", "EV/S", "B/S", "P99 US", "QUEUE", "OWNER"
    );
    for shard in &stream.shards {
        let rates = shard.rates.as_ref();
        println!(
            "{:>5}  {:<18} {:<18} {:<6} {:>10} {:>10} {:>9} {:>8}  {:<10} {}",
            shard.id,
            shard.hash_start,
            shard.hash_end,
            shard.state,
            rates.map_or("-".into(), |rates| format!("{:.1}", rates.events_per_s)),
            rates.map_or("-".into(), |rates| bytes(rates.bytes_per_s)),
            rates.map_or("-".into(), |rates| rates.append_p99_us.to_string()),
            rates.map_or("-".into(), |rates| rates.queue_depth.to_string()),
            shard.owner,
            parents(&shard.parents),
        );
    }
}

pub(super) fn parents(parents: &[u32]) -> String {
    if parents.is_empty() {
        return "-".into();
    }
    let names: Vec<String> = parents.iter().map(u32::to_string).collect();
    names.join(",")
}

/// A byte rate with a binary unit.
pub(super) fn bytes(value: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}
