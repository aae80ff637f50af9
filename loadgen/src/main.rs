//! `surge-loadgen`: flags to a `RunConfig`, an optional spawned broker, the
//! run on a tokio runtime, then the final table, the JSON report and the
//! SVG. The only place anyhow is used.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Parser;
use surge_loadgen::broker::{locate_surge, SpawnedBroker};
use surge_loadgen::config::{
    duration_ms, parse_compress, parse_duration, CreateStream, DurabilityChoice, RunConfig,
    Scenario, TraceConfig, TraceScale, DURATION_DEFAULT,
};
use surge_loadgen::workload::{KeyDist, SizeDist, WorkloadConfig};
use surge_loadgen::{calibrate, plot, run};

/// Each run of a calibration, unless --duration says otherwise.
const CALIBRATE_DURATION_DEFAULT: std::time::Duration = std::time::Duration::from_secs(5);

/// Load generator for Surge: open loop, max throughput or trace replay.
/// Every run is bounded (default 10 s) and reports durability, batch and
/// event size, errors and timeouts.
#[derive(Debug, Parser)]
#[command(name = "surge-loadgen", version)]
struct Args {
    /// Broker address (host:port).
    #[arg(long, env = "SURGE_BROKER", conflicts_with = "spawn_broker")]
    broker: Option<String>,
    /// Start `surge serve` on a temporary directory and 127.0.0.1:0
    /// (binary: $SURGE_BIN or `surge` next to this one).
    #[arg(long)]
    spawn_broker: bool,
    /// Default: loadgen (surge-calibrate with --calibrate).
    #[arg(long)]
    stream: Option<String>,
    /// Create the stream (an existing one is reused as it is).
    #[arg(long)]
    create_stream: bool,
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// fsync or write (with --create-stream).
    #[arg(long, default_value = "fsync")]
    durability: String,
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Connections, shared round-robin (default: one per producer; fewer
    /// than --producers is refused, see RunConfig::connections).
    #[arg(long)]
    connections: Option<u32>,
    /// Consumers measuring end-to-end latency.
    #[arg(long, default_value_t = 0)]
    consumers: u32,
    /// Value bytes: 1024, 1KiB, 100..2000 (uniform), normal:1024,128.
    #[arg(long, default_value = "1KiB")]
    event_size: String,
    /// Distinct keys; 0 sends keyless events.
    #[arg(long, default_value_t = 1024)]
    keys: u64,
    /// uniform or zipf:EXPONENT.
    #[arg(long, default_value = "uniform")]
    key_dist: String,
    /// Distinct `type` header values; 0 sends none.
    #[arg(long, default_value_t = 0)]
    types: u32,
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: u32,
    #[arg(long, default_value_t = 1)]
    linger_ms: u32,
    /// Producer batches in flight per shard.
    #[arg(long, default_value_t = surge_client::ProducerConfig::default().max_in_flight_per_shard as u32)]
    batches_in_flight: u32,
    /// Open loop at this many events/s in all (without it: max throughput).
    #[arg(long, conflicts_with = "trace")]
    rate: Option<f64>,
    /// Max throughput: unacknowledged events per producer.
    #[arg(long, default_value_t = 4096)]
    in_flight: u32,
    /// Measure a shard's capacity for `autoscaler.capacity_per_shard_eps`:
    /// max throughput on a fresh stream of --shards (created and deleted),
    /// then open loop at 90%, 80%, ... 50% of it until a run acknowledges
    /// everything, keeps up, and keeps its p99 under --p99-max; that rate
    /// over --shards. Each run lasts --duration (default 5 s here).
    #[arg(long, conflicts_with_all = ["rate", "trace"])]
    calibrate: bool,
    /// --calibrate: the p99 bound, from the intended send time.
    #[arg(long, default_value = "50ms")]
    p99_max: String,
    /// Replay a `timestamp,value` CSV as a rate.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Trace time compression: 86400:600 (a day in ten minutes) or a factor.
    #[arg(long, default_value = "1")]
    compress: String,
    /// Trace events/s per unit of value.
    #[arg(long, conflicts_with = "peak_rate")]
    scale: Option<f64>,
    /// Scale the trace so its peak is this many events/s.
    #[arg(long)]
    peak_rate: Option<f64>,
    /// Measured time (after the warmup); a trace defaults to its length.
    #[arg(long)]
    duration: Option<String>,
    /// Stop after this many events in all.
    #[arg(long)]
    count: Option<u64>,
    /// Time at the start excluded from the statistics.
    #[arg(long, default_value = "2s")]
    warmup: String,
    /// Wait this long for outstanding acks after the last send.
    #[arg(long, default_value = "10s")]
    drain_timeout: String,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG plot here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the same plot as PNG here.
    #[arg(long)]
    png: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", surge_client::report(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = run_config(&args)?;
    if args.duration.is_none() && matches!(config.scenario, Scenario::TraceReplay(_)) {
        config.duration_ms = run::trace_duration_ms(&config)?;
    }
    config.validate()?;
    let spawned = match (&args.broker, args.spawn_broker) {
        (_, true) => Some(SpawnedBroker::start(&locate_surge()?, &[])?),
        (Some(_), false) => None,
        (None, false) => bail!("give --broker ADDR (or SURGE_BROKER) or --spawn-broker"),
    };
    let addr = match &spawned {
        Some(broker) => broker.addr.clone(),
        None => args.broker.clone().context("broker address")?,
    };
    if spawned.is_some() {
        config.broker = "spawned".to_owned();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if args.calibrate {
        let p99_max_us =
            u64::try_from(parse_duration(&args.p99_max)?.as_micros()).context("--p99-max")?;
        let calibration = runtime
            .block_on(calibrate::calibrate(
                &config,
                &addr,
                p99_max_us,
                !args.quiet,
            ))
            .context("calibration")?;
        drop(spawned);
        print!("{}", calibration.table());
        if let Some(path) = &args.json {
            let json = serde_json::to_string_pretty(&calibration)?;
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("calibration: {}", path.display());
        }
        return Ok(());
    }
    let report = runtime
        .block_on(run::run(&config, &addr, !args.quiet))
        .context("load run")?;
    drop(spawned);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        eprintln!("report: {}", path.display());
    }
    if let Some(path) = &args.svg {
        plot::write_svg(&report, path)?;
        eprintln!("plot: {}", path.display());
    }
    if let Some(path) = &args.png {
        plot::write_png(&report, path)?;
        eprintln!("plot: {}", path.display());
    }
    Ok(())
}

fn run_config(args: &Args) -> anyhow::Result<RunConfig> {
    let scenario = match (&args.trace, args.rate) {
        (Some(path), _) => Scenario::TraceReplay(TraceConfig {
            path: path.clone(),
            compress: parse_compress(&args.compress)?,
            scale: match (args.scale, args.peak_rate) {
                (_, Some(events_per_s)) => TraceScale::PeakRate { events_per_s },
                (Some(events_per_s), None) => TraceScale::PerUnit { events_per_s },
                (None, None) => TraceScale::PerUnit { events_per_s: 1.0 },
            },
        }),
        (None, Some(rate)) => Scenario::OpenLoop { rate },
        (None, None) => Scenario::MaxThroughput {
            in_flight: args.in_flight,
        },
    };
    let duration = match &args.duration {
        Some(text) => parse_duration(text)?,
        None if args.calibrate => CALIBRATE_DURATION_DEFAULT,
        None => DURATION_DEFAULT,
    };
    let stream = args.stream.clone().unwrap_or_else(|| {
        let default = if args.calibrate {
            "surge-calibrate"
        } else {
            "loadgen"
        };
        default.to_owned()
    });
    let durability = DurabilityChoice::parse(&args.durability)?;
    Ok(RunConfig {
        broker: args.broker.clone().unwrap_or_default(),
        stream,
        create_stream: (args.create_stream || args.calibrate).then_some(CreateStream {
            shards: args.shards,
            durability,
        }),
        producers: args.producers,
        connections: args.connections.unwrap_or(args.producers),
        consumers: args.consumers,
        workload: WorkloadConfig {
            event_size: args.event_size.parse::<SizeDist>()?,
            keys: args.keys,
            key_dist: args.key_dist.parse::<KeyDist>()?,
            types: args.types,
            seed: args.seed,
        },
        batch_bytes: args.batch_bytes,
        linger_ms: args.linger_ms,
        batches_in_flight: args.batches_in_flight,
        scenario,
        duration_ms: duration_ms(duration),
        count: args.count,
        warmup_ms: duration_ms(parse_duration(&args.warmup)?),
        drain_timeout_ms: duration_ms(parse_duration(&args.drain_timeout)?),
    })
}
