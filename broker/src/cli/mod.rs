//! Command-line parsing and one module per command.

mod autoscaler;
mod consume;
mod loadgen;
mod produce;
mod serve;
mod shard;
mod stream;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use surge_client::{Client, ClientConfig};

#[derive(Debug, Parser)]
#[command(
    name = "surge",
    version,
    about = "Surge: an event broker that scales itself before the load arrives"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(serve::ServeArgs),
    /// Create, list, describe and delete streams.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Split, merge or move shards of a stream while it serves.
    #[command(subcommand)]
    Shard(shard::ShardCommand),
    /// Publish events read line by line from stdin or a file.
    Produce(produce::ProduceArgs),
    /// Read events from a stream and print them.
    Consume(consume::ConsumeArgs),
    /// Generate load and measure it (runs surge-loadgen; `--help` is its).
    #[command(disable_help_flag = true)]
    Loadgen(loadgen::LoadgenArgs),
    /// Autoscaler tools (`simulate` replays a rate trace).
    #[command(subcommand)]
    Autoscaler(autoscaler::AutoscalerCommand),
}

/// Where the client commands find the broker.
#[derive(Debug, clap::Args)]
pub struct BrokerAddr {
    /// Address of a running broker.
    #[arg(long, env = "SURGE_BROKER", default_value = "127.0.0.1:9470")]
    broker: String,
}

impl BrokerAddr {
    async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            addr: self.broker.clone(),
            client_id: "surge-cli".into(),
            connect_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        Client::connect(config)
            .await
            .with_context(|| format!("cannot reach a broker at {}", self.broker))
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(serve::ServeArgs::default()).await,
        Some(Command::Serve(args)) => serve::run(args).await,
        Some(Command::Stream(command)) => stream::run(command).await,
        Some(Command::Shard(command)) => shard::run(command).await,
        Some(Command::Produce(args)) => produce::run(args).await,
        Some(Command::Consume(args)) => consume::run(args).await,
        Some(Command::Loadgen(args)) => loadgen::run(args).await,
        Some(Command::Autoscaler(command)) => autoscaler::run(command).await,
    }
}

/// Logs go to stderr; `SURGE_LOG` sets the level (error, warn, info, debug,
/// trace) or per-target directives (`info,surge_broker::storage=debug`).
pub fn init_tracing() {
    let directives = std::env::var("SURGE_LOG").unwrap_or_else(|_| "info".into());
    let filter: tracing_subscriber::filter::Targets = directives.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}
