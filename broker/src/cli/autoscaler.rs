//! `surge autoscaler simulate`: replays a rate trace against the capacity
//! model and prints how Surge's policy, a reactive threshold policy and an
//! oracle fare (time over capacity, over-provisioning, changes) plus
//! forecast sMAPE; optionally writes an SVG plot and a JSON report.

use std::path::PathBuf;

use anyhow::Context;
use surge_autoscaler::sim::{self, SimConfig};

#[derive(Debug, clap::Subcommand)]
pub enum AutoscalerCommand {
    /// Replay a `timestamp,value` trace against the capacity model.
    Simulate(SimulateArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// CSV trace: `timestamp,value` lines (a header line is skipped).
    #[arg(long)]
    trace: PathBuf,
    /// The trace is scaled so its --peak-quantile is this many events/s
    /// (bursts above it scale with it).
    #[arg(long, default_value_t = 40_000.0)]
    peak_eps: f64,
    /// Quantile of the trace's values that --peak-eps scales (1: the maximum).
    #[arg(long, default_value_t = 0.99)]
    peak_quantile: f64,
    /// Replay this many times faster than real time (stretches every
    /// policy duration by the same factor in trace time).
    #[arg(long, default_value_t = 1.0)]
    compress: f64,
    /// Decision interval, seconds.
    #[arg(long, default_value_t = 10.0)]
    interval_s: f64,
    /// Surge's decision interval in regime 2, seconds (a divisor of
    /// --interval-s; default: the same): the embedded loop's
    /// `autoscaler.interval_ms`.
    #[arg(long)]
    node_interval_s: Option<f64>,
    /// Surge's watch between decisions, seconds (0: none): growth for
    /// measured load above its shards' target, on the measurement over
    /// this interval; the embedded loop's `autoscaler.watch_interval_ms`.
    #[arg(long, default_value_t = 1.0)]
    watch_interval_s: f64,
    /// Provisioning lead every policy gets in regime 1, seconds.
    #[arg(long, default_value_t = 30.0)]
    lead_s: f64,
    /// Surge's measured change latency, milliseconds (regime 2's lead is
    /// this plus one node interval).
    #[arg(long, default_value_t = 1000)]
    change_latency_ms: u64,
    #[arg(long, default_value_t = 1000.0)]
    capacity_per_shard: f64,
    #[arg(long, default_value_t = 0.2)]
    headroom: f64,
    /// Surge grows when its forecast over this horizon (minutes, past the
    /// lead) needs it.
    #[arg(long, default_value_t = 1.0)]
    horizon_min: f64,
    /// Merges need the forecast's mean over this horizon (minutes) to fit
    /// the smaller topology.
    #[arg(long, default_value_t = 15.0)]
    sizing_horizon_min: f64,
    /// Forecast refit period in trace time, minutes.
    #[arg(long, default_value_t = 60.0)]
    refit_min: f64,
    /// Upper prediction quantile capacity is sized for.
    #[arg(long, default_value_t = 0.95)]
    quantile: f64,
    /// Reactive policy: scale up above this utilisation (one interval).
    #[arg(long, default_value_t = 0.8)]
    reactive_high: f64,
    /// Reactive policy: scale down below this utilisation ...
    #[arg(long, default_value_t = 0.4)]
    reactive_low: f64,
    /// ... held for this many seconds.
    #[arg(long, default_value_t = 300.0)]
    reactive_low_for_s: f64,
    /// Reactive policy: utilisation it resizes to.
    #[arg(long, default_value_t = 0.6)]
    reactive_target: f64,
    /// Write the plot here (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Days at the end of the trace the plot shows.
    #[arg(long, default_value_t = 7.0)]
    plot_days: f64,
    /// Write the full report here (JSON).
    #[arg(long)]
    json: Option<PathBuf>,
}

fn ms(seconds: f64, field: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(
        seconds.is_finite() && seconds >= 0.0,
        "--{field} must be a duration >= 0, got {seconds}"
    );
    Ok((seconds * 1000.0).round() as u64)
}

fn config(args: &SimulateArgs) -> anyhow::Result<SimConfig> {
    let config = SimConfig {
        peak_eps: args.peak_eps,
        peak_quantile: args.peak_quantile,
        compress: args.compress,
        interval_ms: ms(args.interval_s, "interval-s")?,
        node_interval_ms: ms(
            args.node_interval_s.unwrap_or(args.interval_s),
            "node-interval-s",
        )?,
        watch_interval_ms: ms(args.watch_interval_s, "watch-interval-s")?,
        lead_ms: ms(args.lead_s, "lead-s")?,
        change_latency_ms: args.change_latency_ms,
        capacity_per_shard_eps: args.capacity_per_shard,
        headroom: args.headroom,
        horizon_ms: ms(args.horizon_min * 60.0, "horizon-min")?,
        sizing_horizon_ms: ms(args.sizing_horizon_min * 60.0, "sizing-horizon-min")?,
        refit_ms: ms(args.refit_min * 60.0, "refit-min")?,
        quantile: args.quantile,
        reactive_high: args.reactive_high,
        reactive_low: args.reactive_low,
        reactive_target: args.reactive_target,
        reactive_low_for_ms: ms(args.reactive_low_for_s, "reactive-low-for-s")?,
        plot_days: args.plot_days,
    };
    config.validate()?;
    Ok(config)
}

pub async fn run(command: AutoscalerCommand) -> anyhow::Result<()> {
    let AutoscalerCommand::Simulate(args) = command;
    let config = config(&args)?;
    tokio::task::spawn_blocking(move || simulate(&args, &config))
        .await
        .context("the simulation task failed")?
}

fn simulate(args: &SimulateArgs, config: &SimConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let trace = sim::trace::load(&args.trace, config.peak_eps, config.peak_quantile)
        .with_context(|| format!("reading trace {}", args.trace.display()))?;
    let (report, timeline) = sim::simulate(&trace, config);
    print!("{}", report.table());
    println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.svg {
        sim::write_svg(&report, &timeline, path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("plot: {}", path.display());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(())
}
