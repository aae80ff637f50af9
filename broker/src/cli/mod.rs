//! Command-line parsing and one module per command.

mod autoscaler;
mod consume;
mod hint;
mod loadgen;
mod optimize;
mod predict;
mod produce;
mod serve;
mod shard;
mod stream;
mod topology;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;
use surge_broker::http::client::{self, HttpResponse};
use surge_broker::http::error::ErrorBody;
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
    /// Show streams, shards, rates and node utilization (HTTP API).
    Topology(topology::TopologyArgs),
    /// Forecast a stream's load (HTTP API).
    Predict(predict::PredictArgs),
    /// Announce upcoming load to the autoscaler (HTTP API).
    Hint(hint::HintArgs),
    /// Run the autoscaler's optimizer now, or plan only (HTTP API).
    Optimize(optimize::OptimizeArgs),
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

/// Where the commands that wrap the HTTP control API find it.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpAddr {
    /// Address of a running broker's HTTP API.
    #[arg(long = "http", env = "SURGE_HTTP", default_value = "127.0.0.1:9471")]
    http: String,
}

impl HttpAddr {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<HttpResponse> {
        client::request(&self.http, method, path, body)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the HTTP API at {} (--http, SURGE_HTTP)",
                    self.http
                )
            })
    }

    /// Sends a request and decodes a 2xx JSON answer; any other answer
    /// becomes an error carrying the API's message and field.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<T> {
        let response = self.send(method, path, body).await?;
        if !response.is_success() {
            match serde_json::from_slice::<ErrorBody>(&response.body) {
                Ok(ErrorBody {
                    error,
                    field: Some(field),
                }) => {
                    bail!("{error} (HTTP {}, field `{field}`)", response.status)
                }
                Ok(ErrorBody { error, field: None }) => bail!("{error} (HTTP {})", response.status),
                Err(_) => bail!("HTTP {}: {}", response.status, response.text()),
            }
        }
        serde_json::from_slice(&response.body)
            .with_context(|| format!("unexpected answer from {path}: {}", response.text()))
    }
}

/// A time given on the command line: unix milliseconds, `now`, or an
/// offset from now such as `+90s`, `+5m`, `+2h`.
fn parse_time(text: &str, now_ms: u64) -> anyhow::Result<u64> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    let Some(offset) = text.strip_prefix('+') else {
        return text
            .parse()
            .with_context(|| format!("{text:?}: expected unix ms, now, or +N[s|m|h]"));
    };
    let (digits, unit_ms) = match offset.char_indices().last() {
        Some((at, 's')) => (&offset[..at], 1_000),
        Some((at, 'm')) => (&offset[..at], 60_000),
        Some((at, 'h')) => (&offset[..at], 3_600_000),
        _ => (offset, 1),
    };
    let count: u64 = digits
        .parse()
        .with_context(|| format!("{text:?}: expected +N[s|m|h]"))?;
    count
        .checked_mul(unit_ms)
        .and_then(|delta| now_ms.checked_add(delta))
        .with_context(|| format!("{text:?} is too far ahead"))
}

fn now_ms() -> u64 {
    surge_broker::clock::now_ms().max(0) as u64
}

/// Encodes a query value.
fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(serve::ServeArgs::default()).await,
        Some(Command::Serve(args)) => serve::run(args).await,
        Some(Command::Stream(command)) => stream::run(command).await,
        Some(Command::Shard(command)) => shard::run(command).await,
        Some(Command::Produce(args)) => produce::run(args).await,
        Some(Command::Consume(args)) => consume::run(args).await,
        Some(Command::Topology(args)) => topology::run(args).await,
        Some(Command::Predict(args)) => predict::run(args).await,
        Some(Command::Hint(args)) => hint::run(args).await,
        Some(Command::Optimize(args)) => optimize::run(args).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_ms_now_or_offsets() {
        assert_eq!(parse_time("now", 1_000).unwrap(), 1_000);
        assert_eq!(parse_time("42", 1_000).unwrap(), 42);
        assert_eq!(parse_time("+90s", 1_000).unwrap(), 91_000);
        assert_eq!(parse_time("+5m", 0).unwrap(), 300_000);
        assert_eq!(parse_time("+2h", 0).unwrap(), 7_200_000);
        assert_eq!(parse_time("+250", 0).unwrap(), 250);
        assert!(parse_time("+xs", 0).is_err());
        assert!(parse_time("soon", 0).is_err());
        assert!(parse_time("+99999999999999999h", 0).is_err());
        assert_eq!(query_value("a b&c"), "a+b%26c");
    }
}
