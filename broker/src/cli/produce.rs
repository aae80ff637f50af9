//! `surge produce`: one event per input line, batched and idempotent,
//! acknowledged at the stream's durability before the command exits.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use surge_client::{Event, Producer, ProducerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::BrokerAddr;

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    stream: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Key for every event (routes them all to one shard, in order).
    #[arg(long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Value of the `type` header for every event.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Extra header NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    #[command(flatten)]
    addr: BrokerAddr,
}

fn parse_headers(items: &[String]) -> anyhow::Result<Vec<(String, Bytes)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), Bytes::from(value.to_owned()))),
            None => bail!("--header {item:?}: expected NAME=VALUE"),
        })
        .collect()
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let headers = parse_headers(&args.headers)?;
    let client = args.addr.connect().await?;
    let producer = Producer::new(client, &args.stream, ProducerConfig::default()).await?;
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = BufReader::new(input).lines();
    let mut acks = Vec::new();
    let mut count = 0u64;
    while let Some(line) = lines.next_line().await.context("reading input")? {
        let (key, value) = match (&args.key, &args.key_separator) {
            (Some(key), _) => (Some(key.clone()), line),
            (None, Some(separator)) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_owned()), value.to_owned()),
                None => (None, line),
            },
            (None, None) => (None, line),
        };
        let mut event = Event::new(Bytes::from(value));
        if let Some(key) = key {
            event = event.with_key(Bytes::from(key));
        }
        if let Some(event_type) = &args.event_type {
            event = event.with_type(event_type);
        }
        for (name, value) in &headers {
            event = event.with_header(name.clone(), value.clone());
        }
        acks.push(producer.send(event).await?);
        count += 1;
    }
    producer.flush().await?;
    for ack in acks {
        ack.await?;
    }
    producer.close().await?;
    eprintln!("produced {count} events to {}", args.stream);
    Ok(())
}
