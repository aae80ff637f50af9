//! The report's serde schema round-trips, and renders as a table that
//! names durability, batch, event size, errors and timeouts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use surge_loadgen::config::{
    CreateStream, DurabilityChoice, RunConfig, Scenario, TraceConfig, TraceScale,
};
use surge_loadgen::histogram::LatencyHistogram;
use surge_loadgen::report::{Machine, Report, StreamFacts, Throughput, TimelineSecond};
use surge_loadgen::stats::Counts;
use surge_loadgen::workload::{KeyDist, SizeDist, WorkloadConfig};

fn sample(scenario: Scenario) -> Report {
    let mut latency = LatencyHistogram::new();
    (1..=1_000).for_each(|value_us| latency.record_us(value_us));
    let config = RunConfig {
        broker: "127.0.0.1:9092".into(),
        stream: "s".into(),
        create_stream: Some(CreateStream {
            shards: 4,
            durability: DurabilityChoice::Write,
        }),
        producers: 2,
        connections: 1,
        consumers: 1,
        workload: WorkloadConfig {
            event_size: SizeDist::Normal {
                mean: 1024,
                stddev: 100,
            },
            keys: 10,
            key_dist: KeyDist::Zipf { exponent: 1.1 },
            types: 2,
            seed: 5,
        },
        batch_bytes: 65_536,
        linger_ms: 2,
        batches_in_flight: 4,
        scenario,
        duration_ms: 10_000,
        count: Some(1_000_000),
        warmup_ms: 2_000,
        drain_timeout_ms: 5_000,
    };
    Report {
        schema_version: 1,
        tool: "surge-loadgen test".into(),
        started_at_unix_ms: 1,
        git_sha: "unknown".into(),
        machine: Machine::detect(),
        config,
        stream: StreamFacts {
            name: "s".into(),
            shards: 4,
            durability: "write".into(),
        },
        batch_bytes: 65_536,
        linger_ms: 2,
        event_size: "1024 B".into(),
        event_bytes_mean: 1024.0,
        warmup_s: 2.0,
        duration_s: 10.0,
        counts: Counts {
            sent: 10,
            acked: 9,
            errors: 1,
            timeouts: 3,
            ..Counts::default()
        },
        warmup_counts: Counts::default(),
        consumer_errors: 0,
        throughput: Throughput {
            events_per_s: 0.9,
            mb_per_s: 0.001,
            target_events_per_s: Some(1.0),
        },
        produce_latency_from: "intended send time".into(),
        produce_latency: latency.percentiles(),
        e2e_latency: latency.percentiles(),
        error_samples: BTreeMap::from([("broker error".to_owned(), 1)]),
        timeline: vec![TimelineSecond {
            second: 1,
            acked: 9,
            ..TimelineSecond::default()
        }],
    }
}

#[test]
fn report_round_trips_through_json() {
    let scenarios = [
        Scenario::OpenLoop { rate: 5_000.0 },
        Scenario::MaxThroughput { in_flight: 64 },
        Scenario::TraceReplay(TraceConfig {
            path: PathBuf::from("t.csv"),
            compress: 144.0,
            scale: TraceScale::PeakRate {
                events_per_s: 1_000.0,
            },
        }),
    ];
    for scenario in scenarios {
        let report = sample(scenario);
        let json = report.to_json().unwrap();
        assert_eq!(Report::from_json(&json).unwrap(), report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(value["produce_latency"]["p9999_us"].is_u64());
        assert!(value["counts"]["timeouts"].is_u64());
    }
}

#[test]
fn table_states_the_honest_facts() {
    let table = sample(Scenario::OpenLoop { rate: 1.0 }).table();
    for needle in [
        "durability",
        "write",
        "65536 B",
        "1024 B",
        "errors / timeouts",
        "1 / 3",
        "p99.99",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from\n{table}");
    }
}

#[test]
fn plots_render_as_svg_and_png() {
    let mut report = sample(Scenario::OpenLoop { rate: 5_000.0 });
    report.timeline = (1..=5)
        .map(|second| TimelineSecond {
            second,
            acked_per_s: 1_000.0 * second as f64,
            produce_p50_us: 200,
            produce_p99_us: 900 + second * 10,
            e2e_p99_us: 1_500,
            ..TimelineSecond::default()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (svg, png) = (dir.path().join("run.svg"), dir.path().join("run.png"));
    surge_loadgen::plot::write_svg(&report, &svg).unwrap();
    surge_loadgen::plot::write_png(&report, &png).unwrap();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("acked events/s"), "axis label missing");
    let png = std::fs::read(png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1000, 720));
}
