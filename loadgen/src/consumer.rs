//! End-to-end latency: consumer tasks read the stream from its latest
//! offsets (set up before the first send) and record, for every event that
//! carries this run's `sent-us` header, the time from its intended send to
//! now. With one consumer it reads every shard; with several they share
//! the shards through a consumer group. Read errors are counted.

use std::time::Duration;

use surge_client::{Client, ClientError, ConsumedRecord, Consumer, ConsumerConfig, StartFrom};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::histogram::RunClock;
use crate::stats::Recorder;
use crate::workload::sent_us;

/// How long a fetch may wait for data: short, so stopping is quick.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Pause after a failed poll before the next.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Time `close` may take (leaving the group).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Joins (or, alone, opens) the consumers, positioned at the stream's end.
pub async fn connect(
    clients: &[Client],
    stream: &str,
    consumers: u32,
    group: &str,
) -> Result<Vec<Consumer>, ClientError> {
    let mut connected = Vec::new();
    for index in 0..consumers as usize {
        let config = ConsumerConfig {
            max_wait: POLL_WAIT,
            start: StartFrom::Latest,
            group: (consumers > 1).then(|| group.to_owned()),
            auto_commit: false,
            ..ConsumerConfig::default()
        };
        let client = clients[index % clients.len()].clone();
        connected.push(Consumer::new(client, stream, config).await?);
    }
    Ok(connected)
}

/// Starts one task per consumer; they run until `stop`.
pub fn spawn(
    consumers: Vec<Consumer>,
    recorders: &[Recorder],
    clock: RunClock,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    consumers
        .into_iter()
        .zip(recorders)
        .map(|(consumer, recorder)| {
            tokio::spawn(consume(consumer, recorder.clone(), clock, stop.clone()))
        })
        .collect()
}

async fn consume(
    mut consumer: Consumer,
    recorder: Recorder,
    clock: RunClock,
    stop: CancellationToken,
) {
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => break,
            polled = consumer.poll() => polled,
        };
        match polled {
            Ok(records) => record(&records, &recorder, clock),
            Err(error) => {
                recorder.failed(clock.now_us(), &error);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ERROR_BACKOFF) => {}
                }
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, consumer.close()).await;
}

fn record(records: &[ConsumedRecord], recorder: &Recorder, clock: RunClock) {
    let now_us = clock.now_us();
    for consumed in records {
        let Some(sent_epoch_us) = sent_us(&consumed.record.headers) else {
            continue;
        };
        // Events from before this run (another writer) are not ours.
        let Some(intended_us) = sent_epoch_us.checked_sub(clock.start_epoch_us()) else {
            continue;
        };
        recorder.consumed(intended_us, now_us);
    }
}
