//! The HTTP control API of the real binary: health, topology, metrics in
//! valid Prometheus text, errors that name the field, the commands that
//! wrap it, and its shutdown with the broker.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use surge_client::{Event, Producer, ProducerConfig, StreamConfig};
use surge_tests::BrokerProcess;

use crate::support::{create_stream, runtime};

/// Fast ticks so readiness and rates come quickly.
const ARGS: &[&str] = &["--set", "autoscaler.interval_ms=200"];

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(body)))
}

async fn produce_typed(broker: &BrokerProcess, stream: &str, count: u64) {
    let client = broker.client().await;
    let producer = Producer::new(client, stream, ProducerConfig::default())
        .await
        .expect("producer");
    let mut acks = Vec::new();
    for index in 0..count {
        let kind = if index % 4 == 0 { "refund" } else { "order" };
        let event = Event::new(format!("value-{index}"))
            .with_key(format!("key-{index}"))
            .with_type(kind);
        acks.push(producer.send(event).await.expect("send"));
    }
    for ack in acks {
        ack.await.expect("acknowledged");
    }
    producer.close().await.expect("close");
}

/// Waits until the autoscaler has measured `stream` (predictions exist).
async fn wait_measured(broker: &BrokerProcess, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let path = format!("/predict_load?stream={stream}");
    loop {
        let answer = broker.http("GET", &path, None).await;
        if answer.status == 200 {
            return;
        }
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(
            Instant::now() < deadline,
            "never measured: {}",
            answer.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(broker: &BrokerProcess) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = broker.http("GET", "/readyz", None).await;
        if ready.status == 200 {
            return;
        }
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(Instant::now() < deadline, "never ready: {}", ready.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn health_topology_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, ARGS);
    runtime().block_on(async {
        let health = broker.http("GET", "/healthz", None).await;
        assert_eq!(
            (health.status, json(&health.body)["status"].clone()),
            (200, "ok".into())
        );
        let client = broker.client().await;
        let config = StreamConfig {
            shard_count: 2,
            ..StreamConfig::default()
        };
        create_stream(&client, "orders", config).await;
        produce_typed(&broker, "orders", 40).await;
        wait_ready(&broker).await;

        let answer = broker.http("GET", "/get_topology", None).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let topology = json(&answer.body);
        assert_eq!(topology["broker_id"], "surge-1");
        assert_eq!(
            topology["autoscaler_enabled"], false,
            "the harness runs it dry"
        );
        let streams = topology["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 1);
        let stream = &streams[0];
        assert_eq!(
            (stream["name"].as_str(), stream["epoch"].as_u64()),
            (Some("orders"), Some(1))
        );
        let shards = stream["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0]["hash_start"], "0x0000000000000000");
        assert_eq!(shards[1]["hash_end"], "0xffffffffffffffff");
        let ends: u64 = shards
            .iter()
            .map(|shard| shard["end_offset"].as_u64().unwrap())
            .sum();
        assert_eq!(ends, 40);
        for shard in shards {
            assert_eq!(
                (shard["state"].as_str(), shard["owner"].as_str()),
                (Some("open"), Some("surge-1"))
            );
        }
        let one = broker
            .http("GET", "/get_topology?stream=orders", None)
            .await;
        assert_eq!(json(&one.body)["streams"].as_array().unwrap().len(), 1);

        let metrics = broker.http("GET", "/metrics", None).await;
        assert_eq!(metrics.status, 200);
        check_prometheus_text(&metrics.text(), 40);
    });
}

/// Parses the exposition with `prometheus-parse`, and checks what that
/// parser lets pass: names, `_total` counters, HELP and TYPE per family.
fn check_prometheus_text(text: &str, events: u64) {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    assert!(scrape.samples.len() > 20, "{text}");
    let mut appended = 0.0;
    let mut typed = 0.0;
    let mut refunds = 0.0;
    for sample in &scrape.samples {
        assert!(sample.metric.starts_with("surge_"), "{}", sample.metric);
        if let prometheus_parse::Value::Counter(value) = sample.value {
            if sample.metric == "surge_shard_appended_events_total" {
                assert_eq!(sample.labels.get("stream"), Some("orders"));
                assert!(sample.labels.get("shard").is_some());
                appended += value;
            }
            if sample.metric == "surge_shard_type_events_total" {
                typed += value;
                if sample.labels.get("type") == Some("refund") {
                    refunds += value;
                }
            }
        }
    }
    assert_eq!(appended, events as f64, "{text}");
    // Types are sampled per batch, each sample standing for its share of
    // the batch: every event is counted once, the mix is an estimate.
    assert_eq!(typed, events as f64, "{text}");
    assert!(refunds > 0.0 && refunds < events as f64 / 2.0, "{text}");
    let mut families = HashSet::new();
    let mut helped = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(families.insert(name.to_owned()), "TYPE twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else {
            assert!(!line.starts_with('#'), "{line}");
            let name = line.split(['{', ' ']).next().unwrap();
            let family = families.iter().any(|family| {
                name == family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str()))
            });
            assert!(family, "sample before its TYPE line: {line}");
        }
    }
    assert_eq!(families, helped, "every family has HELP and TYPE");
    for needed in [
        "surge_shard_appended_bytes_total",
        "surge_shard_fsync_latency_seconds",
        "surge_connections",
        "surge_topology_changes_total",
        "surge_node_cpu_ticks_total",
        "surge_autoscaler_ticks_total",
    ] {
        assert!(families.contains(needed), "{needed} missing");
    }
}

#[test]
fn bad_requests_get_json_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, ARGS);
    runtime().block_on(async {
        let client = broker.client().await;
        create_stream(&client, "orders", StreamConfig::default()).await;
        wait_ready(&broker).await;
        wait_measured(&broker, "orders").await;
        let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
            ("GET", "/predict_load", None, 400, "stream"),
            ("GET", "/predict_load?stream=nope", None, 404, "stream"),
            (
                "GET",
                "/predict_load?stream=orders&step=abc",
                None,
                400,
                "step",
            ),
            (
                "GET",
                "/predict_load?stream=orders&step=0",
                None,
                400,
                "step",
            ),
            (
                "GET",
                "/predict_load?stream=orders&from=2000&to=1000",
                None,
                400,
                "to",
            ),
            (
                "GET",
                "/predict_load?stream=orders&from=yesterday",
                None,
                400,
                "from",
            ),
            // A parameter the endpoint does not take is named, not
            // ignored in favour of a default.
            (
                "GET",
                "/predict_load?stream=orders&setp=5",
                None,
                400,
                "setp",
            ),
            ("GET", "/get_topology?streams=orders", None, 400, "streams"),
            (
                "GET",
                "/decisions?stream=orders&stream=other",
                None,
                400,
                "stream",
            ),
            (
                "POST",
                "/hint_load?stream=orders",
                Some(r#"{"stream": "orders", "start_ms": 1, "end_ms": 2, "rate_eps": 5}"#),
                400,
                "stream",
            ),
            (
                "POST",
                "/optimize_topology?dry_run=maybe",
                None,
                400,
                "dry_run",
            ),
            (
                "POST",
                "/optimize_topology?dry_run=true",
                Some(r#"{"dry_run": false}"#),
                400,
                "body",
            ),
            ("GET", "/get_topology?stream=nope", None, 404, "stream"),
            ("GET", "/decisions?limit=0", None, 400, "limit"),
            ("GET", "/decisions?limit=many", None, 400, "limit"),
            ("GET", "/decisions?stream=nope", None, 404, "stream"),
            ("GET", "/no_such_thing", None, 404, "path"),
            (
                "POST",
                "/optimize_topology",
                Some(r#"{"dryrun": true}"#),
                400,
                "dryrun",
            ),
            (
                "POST",
                "/optimize_topology",
                Some(r#"{"stream": "nope"}"#),
                404,
                "stream",
            ),
            ("POST", "/optimize_topology", Some("not json"), 400, "body"),
            (
                "POST",
                "/hint_load",
                Some(r#"{"stream": "orders"}"#),
                400,
                "start_ms",
            ),
            (
                "POST",
                "/hint_load",
                Some(r#"{"stream": "orders", "start_ms": 5000, "end_ms": 10, "rate_eps": 5}"#),
                400,
                "end_ms",
            ),
            (
                "POST",
                "/hint_load",
                Some(r#"{"stream": "orders", "start_ms": 5000, "end_ms": 9000}"#),
                400,
                "rate_eps",
            ),
            (
                "POST",
                "/hint_load",
                Some(r#"{"stream": "nope", "start_ms": 1, "end_ms": 2, "rate_eps": 5}"#),
                404,
                "stream",
            ),
            // A window over before it is announced (here in 1970).
            (
                "POST",
                "/hint_load",
                Some(r#"{"stream": "orders", "start_ms": 1, "end_ms": 2, "rate_eps": 5}"#),
                400,
                "end_ms",
            ),
        ];
        for (method, path, body, status, field) in cases {
            let answer = broker.http(method, path, *body).await;
            let context = format!(
                "{method} {path} {body:?}: {} {}",
                answer.status,
                answer.text()
            );
            assert_eq!(answer.status, *status, "{context}");
            let error = json(&answer.body);
            assert_eq!(error["field"], *field, "{context}");
            assert!(
                !error["error"].as_str().unwrap_or_default().is_empty(),
                "{context}"
            );
        }
        let plan = broker
            .http("POST", "/optimize_topology", Some(r#"{"dry_run": true}"#))
            .await;
        assert_eq!(plan.status, 200, "{}", plan.text());
        let plan = json(&plan.body);
        assert_eq!(plan["dry_run"], true);
        assert!(plan["decisions"].is_array());
        // As a query parameter too: it was ignored, and the plan applied.
        let plan = broker
            .http("POST", "/optimize_topology?dry_run=true", None)
            .await;
        assert_eq!(plan.status, 200, "{}", plan.text());
        assert_eq!(json(&plan.body)["dry_run"], true);
    });
}

#[test]
fn commands_wrap_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, ARGS);
    runtime().block_on(async {
        let client = broker.client().await;
        create_stream(&client, "orders", StreamConfig::default()).await;
        produce_typed(&broker, "orders", 8).await;
        wait_measured(&broker, "orders").await;
    });
    let stdout = |args: &[&str]| {
        let output = broker.cli(args, None);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let errors = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), text, errors)
    };
    let (ok, text, errors) = stdout(&["topology"]);
    assert!(ok, "{errors}");
    assert!(
        text.contains("orders  epoch 1") && text.contains("surge-1"),
        "{text}"
    );
    let (ok, text, errors) = stdout(&["stream", "describe", "orders"]);
    assert!(ok, "{errors}");
    assert!(
        text.contains("EV/S") && !text.contains("no rates"),
        "{text}"
    );
    let (ok, text, errors) = stdout(&[
        "hint", "orders", "--start", "+1m", "--end", "+2m", "--rate", "900",
    ]);
    assert!(ok && text.starts_with("hint "), "{text}{errors}");
    let (ok, text, errors) = stdout(&["predict", "orders", "--to", "+3m", "--step", "60000"]);
    assert!(ok, "{errors}");
    let hinted = text.lines().filter(|line| line.ends_with("yes")).count();
    assert_eq!(hinted, 1, "one point inside the hint window: {text}");
    assert!(text.contains("900.0"), "{text}");
    let (ok, text, errors) = stdout(&["optimize", "orders", "--dry-run"]);
    assert!(ok, "{errors}");
    assert!(
        text.contains("dry mode") && text.contains("because"),
        "{text}"
    );
    let (ok, _, errors) = stdout(&["predict", "nope"]);
    assert!(
        !ok && errors.contains("unknown stream nope") && errors.contains("404"),
        "{errors}"
    );
}

#[test]
fn the_api_can_be_turned_off_and_stops_with_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let off = BrokerProcess::start(&dir, &["--set", "http_listen=off"]);
    assert_eq!(off.http_addr, None);
    let output = off.cli(&["stream", "list"], None);
    assert!(output.status.success());

    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir, ARGS);
    let addr = broker.http_addr.clone().expect("HTTP on");
    assert_eq!(broker.terminate(), Some(0));
    let refused = runtime().block_on(surge_broker::http::client::request(
        &addr, "GET", "/healthz", None,
    ));
    assert!(refused.is_err(), "the HTTP server stopped with the broker");
}
