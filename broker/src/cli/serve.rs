//! `surge serve`: load the configuration, open the data directory, start
//! the autoscaler, listen (binary protocol and HTTP API), and shut all of
//! it down gracefully on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use surge_broker::control::BrokerControl;
use surge_broker::http::{self, AppState, Engine};
use surge_broker::metrics::{BrokerMetricsSource, NodeProbe};
use surge_broker::{server, Broker, BrokerConfig};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the autoscaler keeps its history, hints and decisions.
const AUTOSCALER_DIR: &str = "autoscaler";

#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (settings: see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen address (overrides `listen`).
    #[arg(long)]
    listen: Option<String>,
    /// HTTP control API address, or "off" (overrides `http_listen`).
    #[arg(long)]
    http_listen: Option<String>,
    /// Write path: auto, uring or pwrite (overrides `io_backend`).
    #[arg(long)]
    io_backend: Option<String>,
    /// Any setting as KEY=VALUE, e.g. `stream_defaults.shards=8`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ServeArgs {
    fn overrides(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        for item in &self.set {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("--set {item:?}: expected KEY=VALUE"))?;
            pairs.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        if let Some(dir) = &self.data_dir {
            pairs.push(("data_dir".into(), dir.display().to_string()));
        }
        if let Some(listen) = &self.listen {
            pairs.push(("listen".into(), listen.clone()));
        }
        if let Some(http) = &self.http_listen {
            pairs.push(("http_listen".into(), http.clone()));
        }
        if let Some(backend) = &self.io_backend {
            pairs.push(("io_backend".into(), backend.clone()));
        }
        Ok(pairs)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = BrokerConfig::load(args.config.as_deref(), std::env::vars(), &args.overrides()?)?;
    let broker = Broker::open(config.clone())
        .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;
    let engine = open_autoscaler(&broker, &config)?;
    let http_listener = match config.http_addr() {
        Some(addr) => Some(http::bind(addr).await?),
        None => None,
    };
    let listener = server::bind(&broker).await?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        io = broker.io_backend,
        autoscaler = if config.autoscaler.enabled { "on" } else { "dry" },
        "surge is ready"
    );
    let shutdown = CancellationToken::new();
    // Handlers go in before the ready line: a SIGTERM right after it must
    // find them, not the default action.
    let signals = Signals::install()?;
    tokio::spawn(signals.wait(shutdown.clone()));
    let tasks = TaskTracker::new();
    if let Some(http_listener) = http_listener {
        let http_addr = http_listener
            .local_addr()
            .context("HTTP listener address")?;
        // Printed before the ready line, so whoever waits for that line
        // has seen this one.
        println!("surge http listening on {http_addr}");
        let state = AppState {
            broker: broker.clone(),
            engine: engine.clone(),
            node: NodeProbe::new(&config.data_dir),
        };
        tasks.spawn(http::serve(http_listener, state, shutdown.clone()));
    }
    let autoscaler = spawn_autoscaler(engine, shutdown.clone())?;
    tasks.close();
    // Scripts and tests read the bound port from this line.
    println!("surge listening on {addr}");
    server::serve(listener, broker, shutdown).await;
    tasks.wait().await;
    match tokio::task::spawn_blocking(move || autoscaler.join()).await {
        Ok(Ok(())) => Ok(()),
        _ => anyhow::bail!("the autoscaler thread panicked"),
    }
}

/// Runs the autoscaler's loop on a thread and runtime of its own: refitting
/// forecast models takes milliseconds to seconds of CPU, which on one of
/// the server's worker threads would stall the connections it serves.
fn spawn_autoscaler(
    engine: Arc<Engine>,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the autoscaler's runtime")?;
    std::thread::Builder::new()
        .name("surge-autoscaler".into())
        .spawn(move || runtime.block_on(engine.run(shutdown.cancelled_owned())))
        .context("cannot start the autoscaler thread")
}

/// The embedded autoscaler over this broker; `autoscaler.enabled = false`
/// runs it in dry mode (it decides and records, but applies nothing).
fn open_autoscaler(broker: &Arc<Broker>, config: &BrokerConfig) -> anyhow::Result<Arc<Engine>> {
    let state_dir = config.data_dir.join(AUTOSCALER_DIR);
    let dirs = 1 + config.extra_data_dirs.len() as u32;
    let engine_config = config.autoscaler.engine_config(state_dir.clone(), dirs);
    let control = BrokerControl::new(broker.clone());
    let metrics = BrokerMetricsSource::new(broker.clone(), &config.data_dir);
    let engine = Engine::open(engine_config, control, metrics)
        .with_context(|| format!("cannot open autoscaler state in {}", state_dir.display()))?;
    Ok(Arc::new(engine))
}

/// SIGTERM and SIGINT, listened for from `install` on.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn wait(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("interrupt received"),
        }
        shutdown.cancel();
    }
}
