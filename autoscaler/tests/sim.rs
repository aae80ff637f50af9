//! Simulator invariants on synthetic traces: the oracle is never over
//! capacity, the reactive baseline reacts, every policy ends up covering a
//! step in demand, and the outputs (table, JSON-able report, SVG) are made.

use surge_autoscaler::sim::{self, SimConfig, Trace};

const STEP_S: u64 = 300;

/// `days` of 5-minute samples: a daily wave with deterministic jitter,
/// multiplied by `jump` from `jump_day` on.
fn csv(days: u64, jump_day: u64, jump: f64) -> String {
    let per_day = 86_400 / STEP_S;
    let mut text = String::from("timestamp,value\n");
    for i in 0..days * per_day {
        let phase = (i % per_day) as f64 / per_day as f64;
        let jitter = ((i * 7_919) % 17) as f64;
        let level = if i / per_day >= jump_day { jump } else { 1.0 };
        let value = level * (200.0 + 120.0 * (phase * std::f64::consts::TAU).sin() + jitter);
        text.push_str(&format!("{},{value}\n", 1_400_000_000 + i * STEP_S));
    }
    text
}

fn trace(text: &str, config: &SimConfig) -> Trace {
    sim::trace::parse("synthetic", text, config.peak_eps, 1.0).expect("valid trace")
}

fn config() -> SimConfig {
    SimConfig {
        peak_eps: 20_000.0,
        refit_ms: 6 * 3_600_000,
        ..SimConfig::default()
    }
}

#[test]
fn oracle_is_never_over_capacity_and_reactive_reacts() {
    let config = config();
    let (report, timeline) = sim::simulate(&trace(&csv(10, 99, 1.0), &config), &config);
    let oracle = &report.regime1[2];
    assert_eq!(oracle.policy, "oracle");
    assert_eq!(oracle.over_capacity_pct, 0.0);
    // Exactly demand x headroom, rounded up to shards: at least the headroom.
    assert!(oracle.over_provisioned_pct >= 20.0, "{oracle:?}");
    let reactive = &report.regime1[1];
    assert_eq!(reactive.policy, "reactive");
    assert!(
        reactive.changes > 10,
        "a daily wave must move the reactive policy: {reactive:?}"
    );
    for score in report.regime1.iter().chain(&report.regime2) {
        assert!(score.mean_shards >= 1.0 && score.max_shards >= score.mean_shards as u32);
        assert!(
            (0.0..=100.0).contains(&score.over_capacity_pct),
            "{score:?}"
        );
    }
    assert!(report.regime2[0].lead_s < report.regime1[0].lead_s);
    assert!(!timeline.at_ms.is_empty());
    assert!(timeline
        .oracle
        .iter()
        .zip(&timeline.demand)
        .all(|(cap, demand)| cap >= demand));
    assert!(report.table().contains("regime 2"));
}

#[test]
fn every_policy_covers_a_lasting_step() {
    // Surge on a node deciding at the common interval and twice as often.
    for node_interval_ms in [10_000, 5_000] {
        let config = SimConfig {
            node_interval_ms,
            ..config()
        };
        let (report, timeline) = sim::simulate(&trace(&csv(9, 6, 3.0), &config), &config);
        let node_lead_s = (config.change_latency_ms + node_interval_ms) as f64 / 1000.0;
        assert_eq!(report.regime2[0].lead_s, node_lead_s);
        // The last hours of the trace are well after the step.
        let tail = timeline.at_ms.len() - 20;
        for (name, capacity) in [
            ("surge", &timeline.surge),
            ("reactive", &timeline.reactive),
            ("surge node", &timeline.surge_node),
        ] {
            let covered = capacity[tail..]
                .iter()
                .zip(&timeline.demand[tail..])
                .all(|(cap, demand)| cap >= demand);
            assert!(
                covered,
                "{name} does not cover demand after the step ({node_interval_ms} ms)"
            );
        }
    }
}

#[test]
fn the_watch_catches_bursts_between_ticks() {
    // Bursts of eight times the load within one 5-minute sample, every
    // three hours of the last three days.
    let text: String = csv(9, 99, 1.0)
        .lines()
        .enumerate()
        .map(|(i, line)| match line.split_once(',') {
            Some((at, value)) if i > 6 * 288 && i % 36 == 0 => {
                let value: f64 = value.parse().expect("number");
                format!("{at},{}\n", value * 8.0)
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let run = |watch_interval_ms| {
        let config = SimConfig {
            watch_interval_ms,
            ..config()
        };
        sim::simulate(&trace(&text, &config), &config).0
    };
    let (without, with) = (run(0), run(1_000));
    let over = |report: &sim::SimReport, regime: usize| {
        [&report.regime1, &report.regime2][regime][0].over_capacity_pct
    };
    // On a node, a burst waits a second for its growth, not a tick.
    assert!(
        over(&with, 1) < over(&without, 1) / 2.0,
        "regime 2: {} with the watch, {} without",
        over(&with, 1),
        over(&without, 1)
    );
    // With a provisioning lead of three ticks, a tick's delay matters less.
    assert!(
        over(&with, 0) <= over(&without, 0),
        "regime 1: {} with the watch, {} without",
        over(&with, 0),
        over(&without, 0)
    );
    // The baselines do not watch.
    assert_eq!(
        with.regime1[1].over_capacity_pct,
        without.regime1[1].over_capacity_pct
    );
}

#[test]
fn a_descent_in_rounds_is_one_change() {
    // The load falls to a tenth: Surge merges pairwise, at most halving
    // the stream per tick, so it needs several rounds for what reactive
    // does in one resize.
    let config = config();
    let (report, _) = sim::simulate(&trace(&csv(9, 6, 0.1), &config), &config);
    let (surge, reactive) = (&report.regime1[0], &report.regime1[1]);
    assert_eq!(reactive.rounds, reactive.changes, "{reactive:?}");
    assert!(surge.rounds > surge.changes, "{surge:?}");
    assert!(report.table().contains("rounds"));
}

#[test]
fn forecasts_are_scored_and_the_plot_is_written() {
    let config = config();
    let (report, timeline) = sim::simulate(&trace(&csv(12, 99, 1.0), &config), &config);
    let selected = &report.smape[0];
    assert_eq!(selected.model, "selected");
    assert!(selected.forecasts > 0);
    let at_1h = selected.at_1h.expect("1 h sMAPE");
    assert!(at_1h.is_finite() && at_1h >= 0.0);
    assert!(!report.selected.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plot.svg");
    sim::write_svg(&report, &timeline, &path).expect("svg");
    let svg = std::fs::read_to_string(&path).expect("read svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("demand"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    let json = serde_json::to_string(&report).expect("report serialises");
    assert!(json.contains("over_capacity_pct"));
}

#[test]
fn bad_settings_are_refused() {
    let mut config = config();
    config.reactive_target = 0.9;
    assert!(config.validate().is_err());
    let config = SimConfig {
        compress: 0.0,
        ..SimConfig::default()
    };
    assert!(config.validate().is_err());
    for node_interval_ms in [0, 3_000, 20_000] {
        let config = SimConfig {
            node_interval_ms,
            ..SimConfig::default()
        };
        assert!(config.validate().is_err(), "{node_interval_ms}");
    }
    for (watch_interval_ms, valid) in [(0, true), (1_000, true), (2_500, true), (3_000, false)] {
        let config = SimConfig {
            watch_interval_ms,
            ..SimConfig::default()
        };
        assert_eq!(config.validate().is_ok(), valid, "{watch_interval_ms}");
    }
    assert!(SimConfig::default().validate().is_ok());
}
