//! Against the real broker: `surge serve` (built with the workspace, found
//! next to this test's target directory or at `$SURGE_BIN`) and a 2-second
//! open-loop run at 2,000 events/s with one consumer.

use surge_loadgen::broker::{locate_surge, SpawnedBroker};
use surge_loadgen::config::{CreateStream, DurabilityChoice, RunConfig, Scenario};
use surge_loadgen::run;
use surge_loadgen::workload::{KeyDist, SizeDist, WorkloadConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_against_the_real_broker() {
    let surge = locate_surge().expect(
        "the surge binary: run `cargo test --workspace` or `cargo build -p surge-broker` first",
    );
    let broker = SpawnedBroker::start(&surge, &[]).expect("surge serve starts");
    let config = RunConfig {
        broker: broker.addr.clone(),
        stream: "e2e".into(),
        create_stream: Some(CreateStream {
            shards: 2,
            durability: DurabilityChoice::Write,
        }),
        producers: 2,
        connections: 2,
        consumers: 1,
        workload: WorkloadConfig {
            event_size: SizeDist::Fixed { bytes: 256 },
            keys: 100,
            key_dist: KeyDist::Zipf { exponent: 1.1 },
            types: 3,
            seed: 1,
        },
        batch_bytes: 64 << 10,
        linger_ms: 1,
        batches_in_flight: 4,
        scenario: Scenario::OpenLoop { rate: 2_000.0 },
        duration_ms: 2_000,
        count: None,
        warmup_ms: 0,
        drain_timeout_ms: 5_000,
    };
    let report = run::run(&config, &broker.addr, false)
        .await
        .expect("run completes");
    let counts = report.counts;
    println!("{}", report.table());
    assert!(
        (3_900..=4_000).contains(&counts.sent),
        "sent {}",
        counts.sent
    );
    assert_eq!(counts.acked, counts.sent);
    assert_eq!(counts.errors, 0);
    assert_eq!(counts.timeouts, 0);
    assert_eq!(report.consumer_errors, 0);
    assert_eq!(report.stream.durability, "write");
    assert!(
        report.e2e_latency.count > 3_000,
        "e2e samples {}",
        report.e2e_latency.count
    );
    assert_eq!(counts.consumed, counts.acked);
    assert_eq!(report.produce_latency.count, counts.acked);
    assert!(!report.timeline.is_empty());
}
