//! Calibration against the real broker (`surge serve`, found as in
//! `end_to_end`), and how its outcome reads.

use surge_client::{Client, ClientConfig};
use surge_loadgen::broker::{locate_surge, SpawnedBroker};
use surge_loadgen::calibrate::{calibrate, capacity, Calibration, Step, FRACTIONS};
use surge_loadgen::config::{CreateStream, DurabilityChoice, RunConfig, Scenario};
use surge_loadgen::workload::{KeyDist, SizeDist, WorkloadConfig};

fn config() -> RunConfig {
    RunConfig {
        broker: String::new(),
        stream: "calibrate".into(),
        create_stream: Some(CreateStream {
            shards: 2,
            durability: DurabilityChoice::Write,
        }),
        producers: 1,
        connections: 1,
        consumers: 0,
        workload: WorkloadConfig {
            event_size: SizeDist::Fixed { bytes: 256 },
            keys: 100,
            key_dist: KeyDist::Uniform,
            types: 0,
            seed: 1,
        },
        batch_bytes: 64 << 10,
        linger_ms: 1,
        batches_in_flight: 4,
        scenario: Scenario::MaxThroughput { in_flight: 1024 },
        duration_ms: 1_000,
        count: None,
        warmup_ms: 200,
        drain_timeout_ms: 5_000,
    }
}

fn step(asked_per_s: f64, within: bool) -> Step {
    Step {
        asked_per_s,
        acked_per_s: asked_per_s,
        p99_us: 1_000,
        errors: 0,
        timeouts: 0,
        not_sent: 0,
        within,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_steps_down_to_a_rate_within_the_bound_and_cleans_up() {
    let surge = locate_surge().expect(
        "the surge binary: run `cargo test --workspace` or `cargo build -p surge-broker` first",
    );
    let broker = SpawnedBroker::start(&surge, &[]).expect("surge serve starts");
    // A bound any acknowledged run meets: the steps then stop at the first
    // that acknowledges all and keeps up.
    let calibration = calibrate(&config(), &broker.addr, 10_000_000, false)
        .await
        .expect("calibration completes");
    println!("{}", calibration.table());
    assert!(calibration.max_per_s > 0.0);
    assert_eq!(calibration.durability, "write");
    let last = *calibration.steps.last().expect("at least one step");
    assert_eq!(calibration.shards, 2);
    assert_eq!(
        calibration.capacity_per_shard_per_s,
        Some(last.asked_per_s / 2.0)
    );
    assert!(last.within && last.errors == 0 && last.timeouts == 0);
    assert!(last.asked_per_s <= calibration.max_per_s * FRACTIONS[0]);
    let before = &calibration.steps[..calibration.steps.len() - 1];
    assert!(before.iter().all(|step| !step.within), "{before:?}");
    assert!(calibration
        .table()
        .contains("--set autoscaler.capacity_per_shard_eps="));

    let client = Client::connect(ClientConfig {
        addr: broker.addr.clone(),
        client_id: "test".into(),
        ..ClientConfig::default()
    })
    .await
    .unwrap();
    assert!(
        client.describe_stream("calibrate").await.is_err(),
        "the calibration's stream is deleted"
    );
    // A stream that exists is not calibrated on (its shards are not fresh
    // ones, and not its own to delete), and is left alone.
    client
        .create_stream("calibrate", Default::default())
        .await
        .unwrap();
    let refused = calibrate(&config(), &broker.addr, 10_000_000, false).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(client.describe_stream("calibrate").await.is_ok());
}

#[test]
fn capacity_is_the_highest_rate_within_the_bound() {
    assert_eq!(
        capacity(&[step(900.0, false), step(800.0, true)]),
        Some(800.0)
    );
    assert_eq!(capacity(&[step(900.0, false), step(500.0, false)]), None);
    let nothing = Calibration {
        shards: 1,
        durability: "fsync".into(),
        event_size: "1024 B".into(),
        batch_bytes: 1 << 20,
        linger_ms: 1,
        p99_max_us: 1,
        max_per_s: 1_000.0,
        steps: vec![step(900.0, false), step(500.0, false)],
        capacity_per_shard_per_s: None,
    };
    let table = nothing.table();
    assert!(table.contains("no step kept within the bound"), "{table}");
    assert!(!table.contains("--set"), "{table}");
}
