//! The `Autoscaler` loop against the in-memory broker: it scales on
//! measured load, honours dry mode, keeps its state across a restart,
//! applies hints, flags anomalies and records failures.

use surge_autoscaler::memory::MemoryBroker;
use surge_autoscaler::{ActionKind, Autoscaler, AutoscalerConfig, AutoscalerError, HintRequest};

const STREAM: &str = "orders";
const TICK_S: u64 = 10;

type Scaler = Autoscaler<MemoryBroker, MemoryBroker>;

fn open(dir: &std::path::Path, broker: &MemoryBroker, enabled: bool) -> Scaler {
    let mut config = AutoscalerConfig::new(dir);
    config.enabled = enabled;
    Autoscaler::open(config, broker.clone(), broker.clone()).expect("open")
}

fn broker() -> MemoryBroker {
    let broker = MemoryBroker::new(1_700_000_000_000);
    broker.create(STREAM, 1);
    broker
}

async fn run_for(scaler: &Scaler, broker: &MemoryBroker, seconds: u64, rate_eps: f64) {
    for _ in 0..seconds / TICK_S {
        broker.advance(STREAM, TICK_S, rate_eps);
        scaler.tick(broker.now_ms()).await;
    }
}

#[tokio::test]
async fn scales_up_on_measured_load_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, true);
    assert!(!scaler.ready());
    run_for(&scaler, &broker, 60, 400.0).await;
    assert!(scaler.ready());
    assert_eq!(broker.open_shards(STREAM), 1);
    run_for(&scaler, &broker, 60, 3000.0).await;
    // 3000 ev/s at 1000 per shard with 20% headroom needs 4 shards; the
    // step's growth, pushed over the lead time, may ask for one more.
    let shards = broker.open_shards(STREAM);
    assert!((4..=5).contains(&shards), "{shards} shards");
    let decisions = scaler.decisions(10);
    let split = decisions
        .iter()
        .find(|d| {
            d.actions
                .iter()
                .any(|a| matches!(a.kind, ActionKind::Split { .. }))
        })
        .expect("a split was recorded");
    assert!(split
        .actions
        .iter()
        .all(|a| a.applied && a.created.len() == 2));
    assert!(
        split.reasons.iter().any(|r| r.contains("measured 3000")),
        "{:?}",
        split.reasons
    );
    let rates = scaler.rates(STREAM).expect("rates");
    assert!((rates.events_per_s - 3000.0).abs() < 5.0, "{rates:?}");
    assert!(scaler.node().expect("node rates").cpu_utilization > 0.0);
}

/// A second at `rate_eps`, then the watch.
async fn watch_after(scaler: &Scaler, broker: &MemoryBroker, rate_eps: f64) -> usize {
    broker.advance(STREAM, 1, rate_eps);
    scaler.watch(broker.now_ms()).await.len()
}

#[tokio::test]
async fn the_watch_grows_a_stream_between_ticks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, true);
    // Nothing to watch before a tick has begun to follow the stream.
    assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 0);
    run_for(&scaler, &broker, 60, 400.0).await;
    assert_eq!(broker.open_shards(STREAM), 1);
    // The watch's first count is its baseline; load under what one shard
    // is sized for changes nothing.
    assert_eq!(watch_after(&scaler, &broker, 400.0).await, 0);
    assert_eq!(watch_after(&scaler, &broker, 800.0).await, 0);
    let decisions_before = scaler.decisions(100).len();
    // A burst: the next second's watch splits, with no tick.
    assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 1);
    assert_eq!(broker.open_shards(STREAM), 2);
    let decision = &scaler.decisions(1)[0];
    assert!(
        decision.reasons[0].contains("between ticks: measured 3000 ev/s"),
        "{:?}",
        decision.reasons
    );
    assert!(decision.actions.iter().all(|a| a.applied));
    // A split doubles a stream at most, so the next second grows it again
    // towards the 4 shards 3,000 ev/s needs.
    assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 1);
    assert!(broker.open_shards(STREAM) >= 4);
    assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 0);
    assert_eq!(scaler.decisions(100).len(), decisions_before + 2);
    let mut metrics = String::new();
    scaler.prometheus(&mut metrics);
    assert!(
        metrics.contains("surge_autoscaler_watch_growths_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failed_watch_growth_waits_for_the_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, true);
    run_for(&scaler, &broker, 60, 400.0).await;
    broker.fail_changes(true);
    assert_eq!(watch_after(&scaler, &broker, 400.0).await, 0);
    // The failure is recorded once, not once a second while it lasts.
    assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 1);
    for _ in 0..5 {
        assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 0);
    }
    let failed = scaler.decisions(1)[0].actions[0].error.clone();
    assert!(failed.is_some_and(|e| e.contains("injected")));
    // The tick tries again, and with it the watch.
    broker.fail_changes(false);
    run_for(&scaler, &broker, 10, 3000.0).await;
    assert!(broker.open_shards(STREAM) >= 2);
    // The watch's counts from before the tick's ten seconds first give way
    // to a fresh baseline.
    watch_after(&scaler, &broker, 6000.0).await;
    assert_eq!(watch_after(&scaler, &broker, 6000.0).await, 1);
}

#[tokio::test]
async fn the_watch_does_nothing_in_dry_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, false);
    run_for(&scaler, &broker, 60, 400.0).await;
    for _ in 0..3 {
        assert_eq!(watch_after(&scaler, &broker, 3000.0).await, 0);
    }
    assert_eq!(broker.changes(), 0);
}

#[tokio::test]
async fn dry_mode_decides_but_never_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, false);
    run_for(&scaler, &broker, 60, 3000.0).await;
    assert_eq!(broker.changes(), 0);
    let decisions = scaler.decisions(5);
    assert!(!decisions.is_empty());
    assert!(decisions
        .iter()
        .flat_map(|d| &d.actions)
        .all(|a| !a.applied && a.error.is_none()));
    let dry = scaler.optimize(Some(STREAM), true).await.expect("optimize");
    assert_eq!(dry.len(), 1);
    assert!(matches!(
        scaler.optimize(Some("nope"), true).await,
        Err(AutoscalerError::UnknownStream(_))
    ));
}

#[tokio::test]
async fn history_hints_and_decisions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    {
        let scaler = open(dir.path(), &broker, true);
        run_for(&scaler, &broker, 30 * 60, 2000.0).await;
        let hint = HintRequest {
            stream: STREAM.into(),
            start_ms: broker.now_ms() + 3_600_000,
            end_ms: broker.now_ms() + 7_200_000,
            rate_eps: None,
            multiplier: Some(3.0),
        };
        scaler.add_hint(hint, broker.now_ms()).expect("hint stored");
        assert!(!scaler.decisions(10).is_empty());
    }
    let scaler = open(dir.path(), &broker, true);
    assert_eq!(scaler.hints(STREAM).len(), 1);
    assert!(!scaler.decisions(10).is_empty());
    broker.advance(STREAM, TICK_S, 2000.0);
    scaler.tick(broker.now_ms()).await;
    let now = broker.now_ms();
    let prediction = scaler
        .predict(STREAM, now, now + 2 * 3_600_000, 600_000)
        .expect("predict");
    assert_ne!(prediction.model, "none", "history was reloaded and fitted");
    let first = &prediction.points[0];
    assert!((first.mean_eps - 2000.0).abs() < 200.0, "{first:?}");
    let hinted: Vec<_> = prediction.points.iter().filter(|p| p.hinted).collect();
    assert!(!hinted.is_empty());
    assert!(hinted.iter().all(|p| p.mean_eps > 5000.0), "{hinted:?}");
}

#[tokio::test]
async fn a_hint_scales_before_the_load_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, true);
    run_for(&scaler, &broker, 20 * 60, 500.0).await;
    assert_eq!(broker.open_shards(STREAM), 1);
    let now = broker.now_ms();
    scaler
        .add_hint(
            HintRequest {
                stream: STREAM.into(),
                start_ms: now + 5 * 60_000,
                end_ms: now + 3_600_000,
                rate_eps: Some(3000.0),
                multiplier: None,
            },
            now,
        )
        .expect("hint");
    // Capacity is not held for a window minutes away (the growth horizon
    // is one minute past the lead)...
    run_for(&scaler, &broker, 2 * 60, 500.0).await;
    assert_eq!(broker.open_shards(STREAM), 1, "held four minutes early");
    // ...and is in place before it starts.
    run_for(&scaler, &broker, 2 * 60 + 30, 500.0).await;
    assert!(
        broker.open_shards(STREAM) >= 2,
        "scaled ahead of the hinted window"
    );
}

#[tokio::test]
async fn a_burst_is_an_anomaly_and_scales_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, true);
    run_for(&scaler, &broker, 3 * 3600, 600.0).await;
    assert!(
        scaler.anomalies(10).is_empty(),
        "{:?}",
        scaler.anomalies(10)
    );
    run_for(&scaler, &broker, 20, 4000.0).await;
    let anomalies = scaler.anomalies(10);
    assert!(!anomalies.is_empty());
    assert!(
        anomalies[0].score > 1.0 && anomalies[0].measured_eps > 3000.0,
        "{anomalies:?}"
    );
    assert!(broker.open_shards(STREAM) >= 2);
    let mut metrics = String::new();
    scaler.prometheus(&mut metrics);
    assert!(
        metrics.contains("surge_autoscaler_anomalies_total "),
        "{metrics}"
    );
    assert!(metrics.contains("surge_autoscaler_ready 1"));
    assert!(metrics.contains("surge_autoscaler_measured_events_per_second{stream=\"orders\"}"));
}

#[tokio::test]
async fn failed_changes_are_recorded_not_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    broker.fail_changes(true);
    let scaler = open(dir.path(), &broker, true);
    run_for(&scaler, &broker, 30, 3000.0).await;
    let decisions = scaler.decisions(5);
    let action = decisions
        .iter()
        .flat_map(|d| &d.actions)
        .next()
        .expect("an action");
    assert!(!action.applied);
    assert!(
        action.error.as_deref().unwrap_or("").contains("injected"),
        "{action:?}"
    );
    let mut metrics = String::new();
    scaler.prometheus(&mut metrics);
    assert!(
        !metrics.contains("surge_autoscaler_changes_failed_total 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn predict_validates_its_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let scaler = open(dir.path(), &broker, true);
    run_for(&scaler, &broker, 20, 100.0).await;
    let field = |result: Result<_, AutoscalerError>| match result {
        Err(AutoscalerError::InvalidArgument { field, .. }) => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    assert_eq!(field(scaler.predict(STREAM, 0, 10, 0)), "step_ms");
    assert_eq!(field(scaler.predict(STREAM, 10, 10, 1)), "to_ms");
    assert_eq!(field(scaler.predict(STREAM, 0, 1_000_000, 1)), "step_ms");
    assert!(matches!(
        scaler.predict("nope", 0, 10, 1),
        Err(AutoscalerError::UnknownStream(_))
    ));
}

/// Issue 5: a young stream's first model was fitted on its first minute,
/// which held the peak; that forecast stayed up until the next refit five
/// minutes later and, as merges need the forecast to allow them, held the
/// extra shards that long after the load had gone.
#[tokio::test]
async fn a_peak_in_the_first_minute_does_not_hold_merges_until_the_next_refit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let mut config = AutoscalerConfig::new(dir.path());
    config.scale_down_cooldown = std::time::Duration::from_secs(30);
    config.scale_down_stable = std::time::Duration::from_secs(20);
    let scaler: Scaler = Autoscaler::open(config, broker.clone(), broker.clone()).expect("open");
    run_for(&scaler, &broker, 70, 3000.0).await;
    let peak_shards = broker.open_shards(STREAM);
    assert!(peak_shards >= 4, "{peak_shards} shards at the peak");
    let prediction = scaler
        .predict(STREAM, broker.now_ms(), broker.now_ms() + 60_000, 60_000)
        .expect("a model was fitted on the first minute");
    assert!(prediction.points[0].mean_eps > 2000.0, "{prediction:?}");
    // Well within the five minutes to the next refit.
    run_for(&scaler, &broker, 120, 20.0).await;
    // Merges at most halve the stream per tick: the descent's first round
    // says where it is going.
    let peak = peak_shards as u32;
    let first_merge = scaler
        .decisions(20)
        .into_iter()
        .find(|d| d.shards_before == peak && d.shards_target < peak)
        .expect("a merge round from the peak");
    assert_eq!(
        (first_merge.shards_target, first_merge.shards_goal),
        (peak.div_ceil(2), 1),
        "{first_merge:?}"
    );
    let shards = broker.open_shards(STREAM);
    assert_eq!(
        shards,
        1,
        "{shards} shards two minutes after the load fell; decisions: {:?}",
        scaler
            .decisions(3)
            .iter()
            .map(|d| &d.reasons)
            .collect::<Vec<_>>()
    );
}

/// The loop's trend reaches the policy: a low the forecast foresees
/// shrinks after `scale_down_foreseen`, but only once the fall has left
/// the recent window (a minute of ticks), so the stream shrinks once.
#[tokio::test]
async fn a_foreseen_low_shrinks_once_the_fall_has_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let mut config = AutoscalerConfig::new(dir.path());
    let hour = std::time::Duration::from_secs(3600);
    config.scale_down_cooldown = hour;
    config.scale_down_stable = hour;
    config.scale_down_foreseen = std::time::Duration::from_secs(20);
    let scaler: Scaler = Autoscaler::open(config, broker.clone(), broker.clone()).expect("open");
    run_for(&scaler, &broker, 70, 6000.0).await;
    let peak = broker.open_shards(STREAM);
    // 1300 ev/s needs 3 shards at the growth's fill: a surplus of half.
    assert!(peak >= 6, "{peak} shards at the peak");
    run_for(&scaler, &broker, 40, 1300.0).await;
    assert_eq!(
        broker.open_shards(STREAM),
        peak,
        "the fall is still in the window: {:?}",
        scaler.decisions(1)[0].reasons
    );
    run_for(&scaler, &broker, 60, 1300.0).await;
    let shards = broker.open_shards(STREAM);
    assert!(shards < peak, "{shards} shards a minute and a half on");
    let merge = scaler
        .decisions(10)
        .into_iter()
        .find(|d| d.shards_before == peak as u32 && d.shards_target < peak as u32)
        .expect("a merge round from the peak");
    assert!(
        merge.reasons.iter().any(|r| r.contains("foresees the low")),
        "{:?}",
        merge.reasons
    );
}
