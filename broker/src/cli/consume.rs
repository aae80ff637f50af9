//! `surge consume`: print events from a stream, from the beginning, the end,
//! a timestamp, or a consumer group's committed position.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use surge_client::{ConsumedRecord, Consumer, ConsumerConfig, StartFrom};

use super::BrokerAddr;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    stream: String,
    /// Where to start without a committed position: earliest, latest, or a
    /// timestamp in milliseconds since the epoch.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Consume as a member of this group (resumes from its commits).
    #[arg(long)]
    group: Option<String>,
    /// Keep waiting for new events instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Stop after this many events (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_events: Option<u64>,
    /// Print shard, offset and key before each value.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    addr: BrokerAddr,
}

fn start_from(text: &str) -> anyhow::Result<StartFrom> {
    Ok(match text {
        "earliest" | "beginning" => StartFrom::Earliest,
        "latest" | "end" => StartFrom::Latest,
        other => match other.parse::<i64>() {
            Ok(timestamp_ms) => StartFrom::Timestamp(timestamp_ms),
            Err(_) => bail!("--from {other:?}: expected earliest, latest or a timestamp in ms"),
        },
    })
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.addr.connect().await?;
    let config = ConsumerConfig {
        start: start_from(&args.from)?,
        group: args.group.clone(),
        // Without --follow, one empty long-poll means we have caught up.
        max_wait: if args.follow {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(300)
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, &args.stream, config).await?;
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    'outer: loop {
        let records = consumer.poll().await?;
        if records.is_empty() && !args.follow {
            break;
        }
        let mut out = stdout.lock();
        for (index, consumed) in records.iter().enumerate() {
            print_record(&mut out, consumed, args.verbose)?;
            printed += 1;
            if args.max_events.is_some_and(|max| printed >= max) {
                out.flush()?;
                // Records polled but not printed are read again next time.
                rewind(&mut consumer, &records[index + 1..]);
                break 'outer;
            }
        }
        out.flush()?;
    }
    if args.group.is_some() {
        consumer.commit().await?;
    }
    consumer.close().await?;
    Ok(())
}

fn print_record(
    out: &mut impl Write,
    consumed: &ConsumedRecord,
    verbose: bool,
) -> std::io::Result<()> {
    let record = &consumed.record;
    if verbose {
        let key = record
            .key
            .as_ref()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_else(|| "-".into());
        write!(out, "{}\t{}\t{}\t", consumed.shard_id, record.offset, key)?;
    }
    out.write_all(&record.value)?;
    out.write_all(b"\n")
}

/// Moves each shard back to its first unprinted record.
fn rewind(consumer: &mut Consumer, unprinted: &[ConsumedRecord]) {
    let mut first: BTreeMap<u32, u64> = BTreeMap::new();
    for consumed in unprinted {
        first
            .entry(consumed.shard_id)
            .or_insert(consumed.record.offset);
    }
    for (shard_id, offset) in first {
        consumer.seek(shard_id, offset);
    }
}
