//! The embedded autoscaler against the real binary, with a short interval
//! and a small capacity per shard so a test takes seconds: a replayed
//! trace with a ramp is met by splits while load rises and merges after
//! it, with no producer error and every change explained in /decisions;
//! an announced burst finds its capacity in place when it starts; a burst
//! between ticks is met by the watch; busy shards crowded in one data
//! directory are spread over two.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use surge_loadgen::config::{
    CreateStream, DurabilityChoice, RunConfig, Scenario, TraceConfig, TraceScale,
};
use surge_loadgen::report::Report;
use surge_loadgen::run;
use surge_loadgen::workload::{KeyDist, SizeDist, WorkloadConfig};
use surge_tests::BrokerProcess;

use crate::support::runtime;

/// Events/s one shard is sized for, and the headroom kept above load: a
/// shard counts as full past 200 / 1.2 = 167 ev/s.
const CAPACITY_EPS: f64 = 200.0;
const INTERVAL_MS: u64 = 500;

/// The settings of these tests: ticks every `interval_ms`, the watch
/// between them every `watch_ms` (0: none).
fn autoscaler_args(interval_ms: u64, watch_ms: u64, horizon_ms: u64) -> Vec<String> {
    [
        "autoscaler.enabled=true".to_owned(),
        format!("autoscaler.interval_ms={interval_ms}"),
        format!("autoscaler.watch_interval_ms={watch_ms}"),
        format!("autoscaler.capacity_per_shard_eps={CAPACITY_EPS}"),
        "autoscaler.headroom=0.2".to_owned(),
        format!("autoscaler.horizon_ms={horizon_ms}"),
        "autoscaler.scale_down_cooldown_ms=3000".to_owned(),
        "autoscaler.scale_down_stable_ms=2000".to_owned(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_owned(), setting])
    .collect()
}

/// A broker whose autoscaler ticks every `INTERVAL_MS`, without the watch.
fn start(dir: &tempfile::TempDir, horizon_ms: u64) -> BrokerProcess {
    let args = autoscaler_args(INTERVAL_MS, 0, horizon_ms);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    BrokerProcess::start(dir, &args)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn load(stream: &str, scenario: Scenario, duration_ms: u64) -> RunConfig {
    RunConfig {
        broker: String::new(),
        stream: stream.into(),
        create_stream: Some(CreateStream {
            shards: 1,
            durability: DurabilityChoice::Write,
        }),
        producers: 2,
        connections: 2,
        consumers: 0,
        workload: WorkloadConfig {
            event_size: SizeDist::Fixed { bytes: 100 },
            keys: 10_000,
            key_dist: KeyDist::Uniform,
            types: 0,
            seed: 7,
        },
        batch_bytes: 16 << 10,
        linger_ms: 5,
        batches_in_flight: 4,
        scenario,
        duration_ms,
        count: None,
        warmup_ms: 0,
        drain_timeout_ms: 10_000,
    }
}

/// A stream of `shards` shards with durability `write`.
async fn create_write_stream(client: &surge_client::Client, name: &str, shards: u32) {
    let config = surge_client::StreamConfig {
        shard_count: shards,
        durability: surge_client::surge_protocol::stream::Durability::Write,
        ..surge_client::StreamConfig::default()
    };
    crate::support::create_stream(client, name, config).await;
}

/// Open loop at `rate` events/s on `stream` for `duration_ms`; producers
/// must see no error and no timeout.
async fn open_loop(broker: &BrokerProcess, stream: &str, rate: f64, duration_ms: u64) -> Report {
    let mut config = load(stream, Scenario::OpenLoop { rate }, duration_ms);
    config.broker = broker.addr.clone();
    let report = run::run(&config, &broker.addr, false)
        .await
        .expect("load runs");
    assert_eq!(
        (report.counts.errors, report.counts.timeouts),
        (0, 0),
        "{:?}",
        report.error_samples
    );
    report
}

async fn get(broker: &BrokerProcess, path: &str) -> Value {
    let answer = broker.http("GET", path, None).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.text());
    serde_json::from_slice(&answer.body).expect("JSON")
}

async fn open_shards(broker: &BrokerProcess, stream: &str) -> usize {
    let topology = get(broker, &format!("/get_topology?stream={stream}")).await;
    topology["streams"][0]["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .filter(|shard| shard["state"] == "open")
        .count()
}

/// Applied changes in the decision log, oldest first: (at_ms, kind).
fn applied_changes(decisions: &Value) -> Vec<(u64, String)> {
    let mut changes = Vec::new();
    for decision in decisions["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .rev()
    {
        let at_ms = decision["at_ms"].as_u64().expect("at_ms");
        for action in decision["actions"].as_array().expect("actions") {
            if action["applied"] == true {
                let reasons = decision["reasons"].as_array().expect("reasons");
                assert!(
                    reasons
                        .iter()
                        .any(|reason| !reason.as_str().unwrap_or_default().is_empty()),
                    "a change without a reason: {decision}"
                );
                changes.push((at_ms, action["kind"].as_str().expect("kind").to_owned()));
            }
        }
    }
    changes
}

/// Seconds from the start of the trace; a ramp up to a plateau of 600
/// ev/s (3.6 shards' worth), then down to a trickle.
const RAMP: &[(u64, f64)] = &[
    (0, 40.0),
    (2, 40.0),
    (3, 150.0),
    (4, 300.0),
    (5, 450.0),
    (6, 600.0),
    (11, 400.0),
    (12, 200.0),
    (13, 80.0),
    (14, 40.0),
    (18, 40.0),
];
/// When the plateau starts, in trace seconds.
const PEAK_S: u64 = 6;
/// How long after the trace the merges may still come: a few ticks for the
/// forecast to re-level on the quiet tail, then the 2 s stability and 3 s
/// cooldown, with room for ticks that run late on a loaded machine.
const MERGE_WAIT_MS: u64 = 30_000;

fn write_trace(path: &Path) {
    let mut text = String::from("timestamp,value\n");
    for pair in RAMP.windows(2) {
        let ((from_s, rate), (to_s, _)) = (pair[0], pair[1]);
        for second in from_s..to_s {
            text.push_str(&format!("{second},{rate}\n"));
        }
    }
    let (last_s, last_rate) = RAMP[RAMP.len() - 1];
    text.push_str(&format!("{last_s},{last_rate}\n"));
    std::fs::write(path, text).expect("write trace");
}

#[test]
fn a_ramp_is_met_by_splits_and_followed_by_merges() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("ramp.csv");
    write_trace(&trace);
    let broker = start(&dir, 2_000);
    let scenario = Scenario::TraceReplay(TraceConfig {
        path: trace,
        compress: 1.0,
        scale: TraceScale::PerUnit { events_per_s: 1.0 },
    });
    let mut config = load("ramp", scenario, 0);
    config.broker = broker.addr.clone();
    config.duration_ms = run::trace_duration_ms(&config).expect("trace length");
    runtime().block_on(async {
        let started_ms = now_ms();
        let report = run::run(&config, &broker.addr, false)
            .await
            .expect("load runs");
        let counts = &report.counts;
        assert_eq!(
            (counts.errors, counts.timeouts),
            (0, 0),
            "{:?}",
            report.error_samples
        );
        assert_eq!(counts.acked, counts.sent);
        let scheduled: f64 = RAMP
            .windows(2)
            .map(|pair| pair[0].1 * (pair[1].0 - pair[0].0) as f64)
            .sum::<f64>()
            + RAMP[RAMP.len() - 1].1;
        assert!(
            (counts.sent as f64 - scheduled).abs() <= scheduled / 100.0,
            "sent {} of {scheduled}",
            counts.sent
        );
        let ended_ms = now_ms();
        // On a loaded machine ticks run late, and the merges may land only
        // after the trace's quiet tail: wait for them, within a bound.
        let merge_deadline = ended_ms + MERGE_WAIT_MS;
        let (epoch, changes) = loop {
            let (epoch, changes) = settled_changes(&broker, "ramp").await;
            let merged = changes.iter().any(|(_, kind)| kind == "merge");
            if merged || now_ms() > merge_deadline {
                break (epoch, changes);
            }
            tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
        };
        let within_trace: Vec<&(u64, String)> =
            changes.iter().filter(|(at, _)| *at <= ended_ms).collect();
        eprintln!(
            "changes, ms after the start: {:?}",
            changes
                .iter()
                .map(|(at, kind)| (at.saturating_sub(started_ms), kind))
                .collect::<Vec<_>>()
        );
        let splits: Vec<u64> = within_trace
            .iter()
            .filter(|(_, kind)| kind == "split")
            .map(|(at, _)| *at)
            .collect();
        let merges: Vec<u64> = changes
            .iter()
            .filter(|(_, kind)| kind == "merge")
            .map(|(at, _)| *at)
            .collect();
        assert!(splits.len() >= 2, "the plateau needs 4 shards: {changes:?}");
        assert!(
            splits[0] < started_ms + PEAK_S * 1000,
            "the first split comes while load rises: {changes:?}"
        );
        if merges.is_empty() {
            let plan = broker
                .http("POST", "/optimize_topology", Some(r#"{"dry_run": true}"#))
                .await;
            panic!(
                "load fell back to a trickle but nothing merged: {changes:?}; the plan now: {}",
                plan.text()
            );
        }
        assert!(
            merges[0] > started_ms + PEAK_S * 1000,
            "merges follow the peak: {changes:?}"
        );
        assert!(
            changes
                .iter()
                .filter(|(_, kind)| kind == "split")
                .all(|(at, _)| *at < merges[0]),
            "no split after a merge (no flapping): {changes:?}"
        );
        // Every change the stream went through is in the log.
        assert_eq!(epoch - 1, changes.len() as u64, "{changes:?}");
    });
}

/// The stream's epoch and its applied changes, read while no change
/// lands between the two reads.
async fn settled_changes(broker: &BrokerProcess, stream: &str) -> (u64, Vec<(u64, String)>) {
    let decisions_path = format!("/decisions?stream={stream}&limit=1000");
    for _ in 0..20 {
        let before = applied_changes(&get(broker, &decisions_path).await);
        let topology = get(broker, &format!("/get_topology?stream={stream}")).await;
        let after = applied_changes(&get(broker, &decisions_path).await);
        if before == after {
            return (
                topology["streams"][0]["epoch"].as_u64().expect("epoch"),
                after,
            );
        }
    }
    panic!("the topology of {stream} never stood still");
}

#[test]
fn a_hinted_burst_finds_its_capacity_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir, 8_000);
    runtime().block_on(async {
        let client = broker.client().await;
        create_write_stream(&client, "burst", 1).await;
        // The engine follows a stream from its first tick after the create.
        tokio::time::sleep(Duration::from_millis(3 * INTERVAL_MS)).await;
        let burst_eps = 500.0;
        let start_ms = now_ms() + 6_000;
        let end_ms = start_ms + 6_000;
        let body = format!(
            r#"{{"stream": "burst", "start_ms": {start_ms}, "end_ms": {end_ms}, "rate_eps": {burst_eps}}}"#
        );
        let hint = broker.http("POST", "/hint_load", Some(&body)).await;
        assert_eq!(hint.status, 201, "{}", hint.text());
        let needed = (burst_eps / (CAPACITY_EPS / 1.2)).ceil() as usize;
        while now_ms() < start_ms {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shards = open_shards(&broker, "burst").await;
        assert!(shards >= needed, "{shards} shards at the burst's start, {needed} needed");
        open_loop(&broker, "burst", burst_eps, 4_000).await;
        let decisions = get(&broker, "/decisions?stream=burst&limit=1000").await;
        let changes = applied_changes(&decisions);
        // Reactive scaling may add shards when the load lands and trim the
        // excess later; what the hint asked for is never taken away while
        // its window lasts.
        let mut open = 1_usize;
        for (at, kind) in &changes {
            match kind.as_str() {
                "split" => open += 1,
                "merge" => open -= 1,
                other => panic!("unexpected change {other}: {changes:?}"),
            }
            assert!(
                *at < start_ms || *at > end_ms || open >= needed,
                "{open} shards during the hinted burst, {needed} needed: {changes:?}"
            );
        }
        let ahead = changes.iter().filter(|(at, _)| *at < start_ms).count();
        assert!(ahead >= needed - 1, "splits before the burst: {changes:?}");
        let prediction = get(&broker, &format!("/predict_load?stream=burst&from={start_ms}&to={end_ms}&step=1000")).await;
        let points = prediction["points"].as_array().expect("points");
        assert!(points.iter().all(|point| point["hinted"] == true && point["upper_eps"].as_f64() >= Some(burst_eps)), "{prediction}");
    });
}

/// Ticks every 5 s and the watch every 200 ms: load three times what one
/// shard is sized for, landing between two ticks, is met by splits the
/// watch makes (its decisions say so), and producers see no error.
#[test]
fn a_burst_between_ticks_is_met_by_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let args = autoscaler_args(5_000, 200, 2_000);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = BrokerProcess::start(&dir, &args);
    runtime().block_on(async {
        let client = broker.client().await;
        create_write_stream(&client, "watched", 1).await;
        // The watch follows a stream once a tick has begun to.
        let followed_by = now_ms() + 20_000;
        let path = "/predict_load?stream=watched";
        loop {
            let answer = broker.http("GET", path, None).await;
            if answer.status == 200 {
                break;
            }
            assert!(now_ms() < followed_by, "not followed: {}", answer.text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        open_loop(&broker, "watched", 500.0, 3_000).await;
        let decisions = get(&broker, "/decisions?stream=watched&limit=1000").await;
        let watched_splits = decisions["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .filter(|d| {
                d["reasons"][0]
                    .as_str()
                    .is_some_and(|r| r.starts_with("between ticks"))
            })
            .flat_map(|d| d["actions"].as_array().expect("actions"))
            .filter(|a| a["kind"] == "split" && a["applied"] == true)
            .count();
        assert!(watched_splits >= 1, "no split by the watch: {decisions}");
        assert!(open_shards(&broker, "watched").await >= 3, "{decisions}");
    });
}

/// Two shards of 110 ev/s each, both in the first of two data directories
/// (where a stream is created): neither needs a split, together they are
/// too busy for a merge, and moving one to the idle directory halves the
/// busiest one's load. The autoscaler moves exactly one, producers see no
/// error, and every acknowledged event is readable.
#[test]
fn busy_shards_in_one_directory_are_spread_over_two() {
    let dir = tempfile::tempdir().unwrap();
    let cold = dir.path().join("cold");
    let mut args = autoscaler_args(INTERVAL_MS, 0, 4_000);
    args.extend([
        "--set".to_owned(),
        format!("extra_data_dirs=[\"{}\"]", cold.display()),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = BrokerProcess::start(&dir, &args);
    runtime().block_on(async {
        let client = broker.client().await;
        create_write_stream(&client, "spread", 2).await;
        let report = open_loop(&broker, "spread", 220.0, 8_000).await;
        let decisions = get(&broker, "/decisions?stream=spread&limit=1000").await;
        let changes = applied_changes(&decisions);
        let kinds: Vec<&str> = changes.iter().map(|(_, kind)| kind.as_str()).collect();
        assert_eq!(kinds, ["move"], "{decisions}");
        let explained = decisions.to_string().contains("busiest directory lowered");
        assert!(explained, "the move's reason: {decisions}");
        let topology = get(&broker, "/get_topology?stream=spread").await;
        let mut dirs: Vec<u64> = topology["streams"][0]["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .filter(|shard| shard["state"] == "open")
            .map(|shard| shard["dir"].as_u64().expect("dir"))
            .collect();
        dirs.sort_unstable();
        assert_eq!(dirs, [0, 1], "{topology}");
        let records = crate::support::read_all(&client, "spread").await;
        assert_eq!(
            records.len() as u64,
            report.counts.acked,
            "every acked event read"
        );
    });
}
