//! `surge serve`: load the configuration, open the data directory, listen,
//! and shut down gracefully on SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use surge_broker::{server, Broker, BrokerConfig};
use tokio_util::sync::CancellationToken;

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
    let listener = server::bind(&broker).await?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        io = broker.io_backend,
        "surge is ready"
    );
    // Scripts and tests read the bound port from this line.
    println!("surge listening on {addr}");
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    server::serve(listener, broker, shutdown).await;
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    shutdown.cancel();
}
