//! One run from start to report: connect, create or describe the stream,
//! open consumers at the stream's end and producers, start the clock, feed
//! the senders by scenario, drain acks and consumed events (bounded), stop
//! the ticker, and merge everything into a `Report`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use surge_client::surge_protocol::stream::Durability;
use surge_client::surge_protocol::ErrorCode;
use surge_client::{
    Client, ClientConfig, ClientError, Deliveries, Producer, ProducerConfig, StreamConfig,
};
use tokio_util::sync::CancellationToken;

use crate::config::{duration_ms, DurabilityChoice, RunConfig, Scenario};
use crate::consumer;
use crate::error::LoadgenError;
use crate::histogram::{Percentiles, RunClock};
use crate::producer::{LoadProducer, ProducerSetup};
use crate::progress::{Ticker, TickerSources};
use crate::report::{git_sha, Machine, Report, StreamFacts, Throughput, TimelineSecond};
use crate::scenarios::trace_replay::Trace;
use crate::scenarios::{max_throughput, open_loop};
use crate::schedule::RateSchedule;
use crate::stats::{Counts, Recorder, Window};

/// How the senders are fed.
#[derive(Debug, Clone)]
pub enum Plan {
    Paced(RateSchedule),
    Window { in_flight: u32 },
}

/// The plan of a validated config; trace replay reads its file here. A
/// trace longer than the run is cut at the run's end.
pub fn plan(config: &RunConfig) -> Result<Plan, LoadgenError> {
    let run_us = config.run_ms().saturating_mul(1_000);
    match &config.scenario {
        Scenario::OpenLoop { rate } => Ok(Plan::Paced(open_loop::schedule(*rate, run_us))),
        Scenario::MaxThroughput { in_flight } => Ok(Plan::Window {
            in_flight: *in_flight,
        }),
        Scenario::TraceReplay(trace) => {
            let schedule = Trace::load(&trace.path)?.schedule(trace.compress, trace.scale)?;
            let end_us = schedule.end_us().min(run_us);
            Ok(Plan::Paced(RateSchedule::from_segments(
                schedule.segments().to_vec(),
                end_us,
            )))
        }
    }
}

/// Measured milliseconds of a trace replayed whole after `warmup_ms`.
pub fn trace_duration_ms(config: &RunConfig) -> Result<u64, LoadgenError> {
    let Scenario::TraceReplay(trace) = &config.scenario else {
        return Ok(config.duration_ms);
    };
    let schedule = Trace::load(&trace.path)?.schedule(trace.compress, trace.scale)?;
    Ok((schedule.end_us() / 1_000)
        .saturating_sub(config.warmup_ms)
        .max(1))
}

/// Everything connected before the clock starts.
struct Setup {
    stream: StreamFacts,
    producers: Vec<(Producer, Deliveries)>,
    consumers: Vec<surge_client::Consumer>,
    clients: Vec<Client>,
}

/// Runs `config` against the broker at `addr`; `live` prints progress.
pub async fn run(config: &RunConfig, addr: &str, live: bool) -> Result<Report, LoadgenError> {
    config.validate()?;
    let plan = plan(config)?;
    let setup = connect(config, addr).await?;
    let warmup_us = config.warmup_ms.saturating_mul(1_000);
    let end_us = config.run_ms().saturating_mul(1_000);
    let drain = Duration::from_millis(config.drain_timeout_ms);
    let producer_recorders: Vec<Recorder> = (0..config.producers)
        .map(|_| Recorder::new(warmup_us))
        .collect();
    let consumer_recorders: Vec<Recorder> = (0..config.consumers)
        .map(|_| Recorder::new(warmup_us))
        .collect();

    let clock = RunClock::start();
    let started_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms);
    let stop_consumers = CancellationToken::new();
    let consumer_tasks =
        consumer::spawn(setup.consumers, &consumer_recorders, clock, &stop_consumers);
    let ticker = Ticker::spawn(TickerSources {
        producers: producer_recorders.clone(),
        consumers: consumer_recorders.clone(),
        clock,
        warmup_us,
        live,
    });
    let window = match &plan {
        Plan::Window { in_flight } => Some(*in_flight),
        Plan::Paced(_) => None,
    };
    let producer_setup = ProducerSetup {
        end_us,
        drain,
        window,
    };
    let producers: Vec<LoadProducer> = setup
        .producers
        .into_iter()
        .zip(&producer_recorders)
        .zip(0..)
        .map(|((producer, recorder), index)| {
            LoadProducer::start(index, producer, &producer_setup, recorder.clone(), clock)
        })
        .collect();
    let senders = producers.iter().map(LoadProducer::sender).collect();
    match &plan {
        Plan::Paced(schedule) => {
            open_loop::drive_paced(senders, schedule, &config.workload, config.count).await;
        }
        Plan::Window { .. } => {
            max_throughput::drive(senders, &config.workload, config.count, end_us).await;
        }
    }
    let senders_done_us = clock.now_us();
    futures_util::future::join_all(producers.into_iter().map(|producer| producer.finish(drain)))
        .await;
    await_consumers(&producer_recorders, &consumer_recorders, drain).await;
    stop_consumers.cancel();
    futures_util::future::join_all(consumer_tasks).await;
    let timeline = ticker.stop().await;
    for client in &setup.clients {
        client.close().await;
    }
    let measured_us = senders_done_us.min(end_us).saturating_sub(warmup_us);
    let merged = Merged::of(&producer_recorders, &consumer_recorders);
    Ok(build_report(
        config,
        &plan,
        setup.stream,
        merged,
        timeline,
        measured_us,
        started_at_unix_ms,
    ))
}

async fn connect(config: &RunConfig, addr: &str) -> Result<Setup, LoadgenError> {
    let mut clients = Vec::new();
    for index in 0..config.connections {
        let client_config = ClientConfig {
            addr: addr.to_owned(),
            client_id: format!("surge-loadgen-{index}"),
            ..ClientConfig::default()
        };
        clients.push(Client::connect(client_config).await?);
    }
    let admin = &clients[0];
    if let Some(create) = &config.create_stream {
        let stream_config = StreamConfig {
            shard_count: create.shards,
            durability: match create.durability {
                DurabilityChoice::Fsync => Durability::Fsync,
                DurabilityChoice::Write => Durability::Write,
            },
            ..StreamConfig::default()
        };
        match admin.create_stream(&config.stream, stream_config).await {
            Ok(()) => {}
            Err(ClientError::Broker {
                code: ErrorCode::StreamExists,
                ..
            }) => {
                eprintln!(
                    "surge-loadgen: stream {} exists; using it as it is",
                    config.stream
                );
            }
            Err(error) => return Err(error.into()),
        }
    }
    let described = admin.describe_stream(&config.stream).await?;
    let stream = StreamFacts {
        name: config.stream.clone(),
        shards: u32::try_from(described.shards.len()).unwrap_or(u32::MAX),
        durability: described.config.durability.name().to_owned(),
    };
    let group = format!(
        "surge-loadgen-{}-{}",
        std::process::id(),
        admin.producer_id()
    );
    let consumers = consumer::connect(&clients, &config.stream, config.consumers, &group).await?;
    let producer_config = ProducerConfig {
        linger: Duration::from_millis(u64::from(config.linger_ms)),
        max_batch_bytes: config.batch_bytes as usize,
        max_in_flight_per_shard: config.batches_in_flight as usize,
        ..ProducerConfig::default()
    };
    let mut producers = Vec::new();
    for index in 0..config.producers as usize {
        let client = clients[index % clients.len()].clone();
        let settings = producer_config.clone();
        producers.push(Producer::with_deliveries(client, &config.stream, settings).await?);
    }
    Ok(Setup {
        stream,
        producers,
        consumers,
        clients,
    })
}

/// Waits until consumers have read as many events as were acked, for at
/// most `drain`.
async fn await_consumers(producers: &[Recorder], consumers: &[Recorder], drain: Duration) {
    if consumers.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + drain;
    let acked: u64 = producers.iter().map(|recorder| recorder.progress().0).sum();
    while tokio::time::Instant::now() < deadline {
        let consumed: u64 = consumers.iter().map(|recorder| recorder.progress().1).sum();
        if consumed >= acked {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// All recorders summed.
struct Merged {
    produced: Window,
    warmup: Counts,
    consumed: Window,
    consumer_warmup: Counts,
    error_samples: BTreeMap<String, u64>,
}

impl Merged {
    fn of(producers: &[Recorder], consumers: &[Recorder]) -> Merged {
        let mut merged = Merged {
            produced: Window::default(),
            warmup: Counts::default(),
            consumed: Window::default(),
            consumer_warmup: Counts::default(),
            error_samples: BTreeMap::new(),
        };
        for (recorder, is_producer) in producers
            .iter()
            .map(|recorder| (recorder, true))
            .chain(consumers.iter().map(|recorder| (recorder, false)))
        {
            let (window, warmup, samples) = recorder.summary();
            let (into, into_warmup) = if is_producer {
                (&mut merged.produced, &mut merged.warmup)
            } else {
                (&mut merged.consumed, &mut merged.consumer_warmup)
            };
            into.add(&window);
            into_warmup.add(&warmup);
            for (message, seen) in samples {
                *merged.error_samples.entry(message).or_default() += seen;
            }
        }
        merged
    }
}

fn build_report(
    config: &RunConfig,
    plan: &Plan,
    stream: StreamFacts,
    merged: Merged,
    timeline: Vec<TimelineSecond>,
    measured_us: u64,
    started_at_unix_ms: u64,
) -> Report {
    let measured_s = (measured_us as f64 / 1e6).max(1e-6);
    let mut counts = merged.produced.counts;
    counts.consumed = merged.consumed.counts.consumed;
    let mut warmup_counts = merged.warmup;
    warmup_counts.consumed = merged.consumer_warmup.consumed;
    let consumer_errors = merged.consumed.counts.errors
        + merged.consumed.counts.timeouts
        + merged.consumer_warmup.errors
        + merged.consumer_warmup.timeouts;
    let target_events_per_s = match plan {
        Plan::Paced(schedule) => {
            Some(schedule.expected_events() / (schedule.end_us() as f64 / 1e6).max(1e-6))
        }
        Plan::Window { .. } => None,
    };
    let produce_latency_from = match plan {
        Plan::Paced(_) => "intended send time",
        Plan::Window { .. } => "actual send time",
    };
    let e2e_latency = if config.consumers > 0 {
        merged.consumed.latency.percentiles()
    } else {
        Percentiles::default()
    };
    Report {
        schema_version: crate::report::REPORT_SCHEMA_VERSION,
        tool: format!("surge-loadgen {}", env!("CARGO_PKG_VERSION")),
        started_at_unix_ms,
        git_sha: git_sha(),
        machine: Machine::detect(),
        config: config.clone(),
        stream,
        batch_bytes: config.batch_bytes,
        linger_ms: config.linger_ms,
        event_size: config.workload.event_size.to_string(),
        event_bytes_mean: config.workload.event_size.mean_bytes(),
        warmup_s: config.warmup_ms as f64 / 1e3,
        duration_s: measured_s,
        counts,
        warmup_counts,
        consumer_errors,
        throughput: Throughput {
            events_per_s: counts.acked as f64 / measured_s,
            mb_per_s: counts.bytes_acked as f64 / 1e6 / measured_s,
            target_events_per_s,
        },
        produce_latency_from: produce_latency_from.to_owned(),
        produce_latency: merged.produced.latency.percentiles(),
        e2e_latency,
        error_samples: merged.error_samples,
        timeline,
    }
}
