//! One pass over a trace: every decision interval, each policy sees the
//! measured rate (the mean over its last interval), Surge's two variants
//! also the forecast; each decides. Surge on a node (regime 2) may decide
//! more often, at `node_interval_ms`; every policy is scored against the
//! demand at each of those ticks. Between ticks both Surges run the
//! loop's watch every `watch_interval_ms`. The forecaster sees only the
//! trace before the current tick.

use std::collections::{HashMap, VecDeque};

use super::capacity::{oracle_shards, Capacity, Reactive};
use super::{SimConfig, SimReport, SmapeRow, Trace};
use crate::anomaly;
use crate::forecast::{ForecastConfig, Forecaster, ModelKind, DAY_MS};
use crate::policy::{self, ForecastView, Peak, Plan, PolicyConfig, ShardState, StreamState};
use crate::series::{smape, Recent};

const HOUR_MS: u64 = 3_600_000;
/// Points the plot's timeline keeps at most.
const TIMELINE_POINTS_MAX: usize = 2_000;
/// The capacity model's bound on shards (bursts in real traces are large).
const SHARDS_MAX: u32 = 1 << 20;
/// Points sampled across the sizing horizon for the peak upper band.
const HORIZON_POINTS: u64 = 15;

/// What the plot draws, decimated to at most `TIMELINE_POINTS_MAX` points.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub at_ms: Vec<u64>,
    pub demand: Vec<f64>,
    pub mean: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub surge: Vec<f64>,
    pub surge_node: Vec<f64>,
    pub reactive: Vec<f64>,
    pub oracle: Vec<f64>,
}

/// Surge's policy in the simulator: `decide` over equal shards.
struct SurgePolicy {
    config: PolicyConfig,
    capacity: Capacity,
    last_split_ms: Option<u64>,
    low_since_ms: Option<u64>,
    changes_ms: VecDeque<u64>,
    /// The count the last tick's change aimed at, if it took more rounds.
    unfinished: Option<u32>,
}

impl SurgePolicy {
    fn new(config: PolicyConfig, shards: u32) -> Self {
        Self {
            config,
            capacity: Capacity::new(shards),
            last_split_ms: None,
            low_since_ms: None,
            changes_ms: VecDeque::new(),
            unfinished: None,
        }
    }

    /// A tick: `decide`, with the change in place a lead later.
    fn step(&mut self, now_ms: u64, measured: f64, recent: &Recent, view: &ForecastView) {
        let state = self.state(measured, recent);
        let plan = policy::decide(&self.config, &state, view, now_ms);
        self.carry_out(now_ms, &plan, self.config.lead_ms);
    }

    /// Between ticks: growth the measured load needs now, if any; the view
    /// is made only then.
    fn watch(
        &mut self,
        now_ms: u64,
        measured: f64,
        recent: &Recent,
        view: impl FnOnce() -> ForecastView,
        lead_ms: u64,
    ) {
        if !policy::overloaded(&self.config, self.capacity.planned(), measured) {
            return;
        }
        let state = self.state(measured, recent);
        if let Some(plan) = policy::watch(&self.config, &state, &view(), now_ms) {
            self.carry_out(now_ms, &plan, lead_ms);
        }
    }

    fn state(&self, measured: f64, recent: &Recent) -> StreamState {
        let shards = self.capacity.planned();
        StreamState {
            shards: (0..shards)
                .map(|id| ShardState {
                    id,
                    dir: 0,
                    group: String::new(),
                    events_per_s: measured / f64::from(shards),
                })
                .collect(),
            measured_eps: measured,
            growth_eps_per_s: recent.growth_per_s(),
            trend_eps_per_s: recent.trend_per_s(),
            last_split_ms: self.last_split_ms,
            low_since_ms: self.low_since_ms,
            changes_ms: self.changes_ms.iter().copied().collect(),
        }
    }

    fn carry_out(&mut self, now_ms: u64, plan: &Plan, lead_ms: u64) {
        let shards = self.capacity.planned();
        self.low_since_ms = plan.low_since_ms;
        if plan.target_shards != shards {
            if plan.target_shards > shards {
                self.last_split_ms = Some(now_ms);
            }
            if plan.spends_budget {
                self.changes_ms.push_back(now_ms);
            }
            while self
                .changes_ms
                .front()
                .is_some_and(|&at| at + self.config.budget_window_ms < now_ms)
            {
                self.changes_ms.pop_front();
            }
            let onwards = |goal: u32| (goal > shards) == (plan.target_shards > shards);
            if self.unfinished.is_some_and(onwards) {
                self.capacity
                    .next_round(now_ms, lead_ms, plan.target_shards);
            } else {
                self.capacity.resize(now_ms, lead_ms, plan.target_shards);
            }
        }
        self.unfinished = (plan.goal_shards != plan.target_shards).then_some(plan.goal_shards);
    }
}

fn policy_config(config: &SimConfig, lead_ms: u64, interval_ms: u64) -> PolicyConfig {
    let mut engine = crate::config::AutoscalerConfig::new("unused");
    engine.capacity_per_shard_eps = config.capacity_per_shard_eps;
    engine.headroom = config.headroom;
    let mut policy = PolicyConfig::from_config(&engine);
    policy.lead_ms = lead_ms;
    policy.interval_ms = config.stretched(interval_ms);
    policy.scale_down_cooldown_ms = config.stretched(policy.scale_down_cooldown_ms);
    policy.scale_down_stable_ms = config.stretched(policy.scale_down_stable_ms);
    policy.scale_down_foreseen_ms = config.stretched(policy.scale_down_foreseen_ms);
    policy.budget_window_ms = config.stretched(policy.budget_window_ms);
    // The simulator resizes in one change; the broker's per-tick split
    // bound is a property of its mechanism, not of the capacity model.
    policy.max_shards = SHARDS_MAX;
    policy.merge_pairs_must_fit = false;
    policy.max_splits_per_tick = SHARDS_MAX;
    policy
}

fn peak(forecaster: &Forecaster, now_ms: u64, span_ms: u64) -> Option<Peak> {
    let step = (span_ms / HORIZON_POINTS).max(1);
    Peak::of(
        (0..=HORIZON_POINTS)
            .filter_map(|i| forecaster.band_at(now_ms + i * step))
            .map(|b| (b.mean, b.upper)),
    )
}

/// The view of the forecast over `[now, now + span]` and `[now, now +
/// long_span]`.
fn view(forecaster: &Forecaster, now_ms: u64, span_ms: u64, long_span_ms: u64) -> ForecastView {
    let now = forecaster.band_at(now_ms);
    ForecastView {
        model: now.map_or("none", |b| b.model.name()).to_string(),
        mean_now_eps: now.map(|b| b.mean),
        upper_now_eps: now.map(|b| b.upper),
        peak: peak(forecaster, now_ms, span_ms),
        peak_long: peak(forecaster, now_ms, long_span_ms),
    }
}

#[derive(Default)]
struct SmapeCollector {
    pairs: HashMap<(String, u64), Vec<(f64, f64)>>,
}

impl SmapeCollector {
    fn add(&mut self, model: &str, ahead_ms: u64, actual: f64, forecast: Option<f64>) {
        if let Some(forecast) = forecast {
            self.pairs
                .entry((model.to_string(), ahead_ms))
                .or_default()
                .push((actual, forecast));
        }
    }

    fn row(&self, model: &str) -> SmapeRow {
        let get = |ahead| self.pairs.get(&(model.to_string(), ahead));
        SmapeRow {
            model: model.to_string(),
            at_1h: get(HOUR_MS).and_then(|p| smape(p.iter().copied())),
            at_24h: get(DAY_MS).and_then(|p| smape(p.iter().copied())),
            forecasts: get(HOUR_MS).map_or(0, Vec::len),
        }
    }
}

/// Runs the three policies (and Surge twice) over the trace.
pub fn simulate(trace: &Trace, config: &SimConfig) -> (SimReport, Timeline) {
    let series = &trace.series;
    let start_ms = series.start_ms;
    let last_ms = series.time_of(series.values.len().saturating_sub(1));
    let span_ms = last_ms - start_ms;
    let warmup_ms = (7 * DAY_MS).min(span_ms / 4);
    let scored_from = start_ms + warmup_ms;
    let smape_from = start_ms + span_ms * 7 / 10;
    let interval_ms = config.stretched(config.interval_ms);
    let lead_ms = config.stretched(config.lead_ms);
    let node_interval_ms = config.stretched(config.node_interval_ms);
    let node_lead_ms = config.stretched(config.change_latency_ms + config.node_interval_ms);
    let watch_ms = match config.watch_interval_ms {
        0 => 0,
        wall_ms => config.stretched(wall_ms),
    };
    let watch_lead_ms = config.stretched(config.change_latency_ms + config.watch_interval_ms);
    let horizon_ms = config.stretched(config.horizon_ms);
    let sizing_ms = config.stretched(config.sizing_horizon_ms);
    let plot_from = last_ms.saturating_sub((config.plot_days * DAY_MS as f64) as u64);
    let plot_every =
        ((last_ms - plot_from.max(start_ms)) / node_interval_ms / TIMELINE_POINTS_MAX as u64)
            .max(1);

    let forecast_config = ForecastConfig {
        quantile: config.quantile,
        near_horizon_ms: lead_ms + horizon_ms,
        ..ForecastConfig::default()
    };
    let mut forecaster = Forecaster::new(forecast_config);
    let demand_at = |at: u64| series.at(at).unwrap_or(0.0);
    // What a policy measures at `at`: the mean over the last `span_ms`.
    let mean_over = |at: u64, span_ms: u64| {
        (demand_at(at.saturating_sub(span_ms).max(start_ms)) + demand_at(at)) / 2.0
    };
    let first = oracle_shards(
        demand_at(start_ms),
        demand_at(start_ms),
        config.headroom,
        config.capacity_per_shard_eps,
    );
    let mut surge = SurgePolicy::new(policy_config(config, lead_ms, config.interval_ms), first);
    let node_config = policy_config(config, node_lead_ms, config.node_interval_ms);
    let mut surge_node = SurgePolicy::new(node_config, first);
    let mut reactive = Reactive::new(
        config.reactive_high,
        config.reactive_low,
        config.reactive_target,
        config.stretched(config.reactive_low_for_ms),
    );
    let mut reactive_capacity = Capacity::new(first);
    let mut oracle = Capacity::new(first);
    let mut recent = Recent::default();
    let mut node_recent = Recent::default();
    let mut smapes = SmapeCollector::default();
    let mut selected: HashMap<String, u64> = HashMap::new();
    let mut timeline = Timeline::default();
    let mut anomaly_ticks = 0;
    let cap = config.capacity_per_shard_eps;

    let mut tick = 0u64;
    let mut now = start_ms;
    while now <= last_ms {
        let demand = demand_at(now);
        let decides = (now - start_ms).is_multiple_of(interval_ms);
        let measured = mean_over(now, interval_ms);
        if decides {
            recent.push(now, measured);
            if forecaster
                .fitted_at_ms()
                .is_none_or(|at| now >= at + config.refit_ms)
                && now > start_ms
            {
                forecaster.refit(&series.until(now));
                if let Some(model) = forecaster.model_for(0) {
                    *selected.entry(model.name().to_string()).or_default() += 1;
                }
                if now >= smape_from && now + DAY_MS <= last_ms {
                    for ahead in [HOUR_MS, DAY_MS] {
                        let actual = demand_at(now + ahead);
                        let band = forecaster.band_at(now + ahead).map(|b| b.mean);
                        smapes.add("selected", ahead, actual, band);
                        for kind in ModelKind::ALL {
                            smapes.add(
                                kind.name(),
                                ahead,
                                actual,
                                forecaster.mean_of(kind, now + ahead),
                            );
                        }
                    }
                }
            }
            forecaster.observe(now, measured);
            let slow_view = view(&forecaster, now, lead_ms + horizon_ms, lead_ms + sizing_ms);
            surge.step(now, measured, &recent, &slow_view);
            let planned = reactive_capacity.planned();
            if let Some(shards) = reactive.decide(now, measured, planned, cap) {
                reactive_capacity.resize(now, lead_ms, shards);
            }
            let next = demand_at(now + interval_ms);
            oracle.resize(now, 0, oracle_shards(demand, next, config.headroom, cap));
        }
        let node_measured = mean_over(now, node_interval_ms);
        node_recent.push(now, node_measured);
        let fast_view = view(
            &forecaster,
            now,
            node_lead_ms + horizon_ms,
            node_lead_ms + sizing_ms,
        );
        surge_node.step(now, node_measured, &node_recent, &fast_view);
        if now >= scored_from {
            if let Some(band) = forecaster.band_at(now).filter(|_| decides) {
                if anomaly::score(measured, &band).abs() > 1.0 {
                    anomaly_ticks += 1;
                }
            }
            for capacity in [
                &mut surge.capacity,
                &mut surge_node.capacity,
                &mut reactive_capacity,
                &mut oracle,
            ] {
                capacity.account(now, demand, cap);
            }
        }
        if now >= plot_from && tick.is_multiple_of(plot_every) {
            let band = forecaster.band_at(now);
            timeline.at_ms.push(now);
            timeline.demand.push(demand);
            timeline.mean.push(band.map_or(f64::NAN, |b| b.mean));
            timeline.lower.push(band.map_or(f64::NAN, |b| b.lower));
            timeline.upper.push(band.map_or(f64::NAN, |b| b.upper));
            timeline
                .surge
                .push(f64::from(surge.capacity.serving(now)) * cap);
            timeline
                .surge_node
                .push(f64::from(surge_node.capacity.serving(now)) * cap);
            timeline
                .reactive
                .push(f64::from(reactive_capacity.serving(now)) * cap);
            timeline.oracle.push(f64::from(oracle.serving(now)) * cap);
        }
        // Between ticks, each Surge runs its watch on the measurement over
        // the last watch interval; a growth it decides is in place after
        // the change latency plus that interval on a node.
        if watch_ms > 0 {
            let mut at = now + watch_ms;
            while at < now + node_interval_ms && at <= last_ms {
                let measured = mean_over(at, watch_ms);
                surge_node.watch(
                    at,
                    measured,
                    &node_recent,
                    || {
                        view(
                            &forecaster,
                            at,
                            node_lead_ms + horizon_ms,
                            node_lead_ms + sizing_ms,
                        )
                    },
                    watch_lead_ms,
                );
                surge.watch(
                    at,
                    measured,
                    &recent,
                    || view(&forecaster, at, lead_ms + horizon_ms, lead_ms + sizing_ms),
                    lead_ms,
                );
                at += watch_ms;
            }
        }
        tick += 1;
        now += node_interval_ms;
    }

    let reactive_score = reactive_capacity.score("reactive", lead_ms);
    let oracle_score = oracle.score("oracle", 0);
    let mut smape_rows = vec![smapes.row("selected")];
    smape_rows.extend(ModelKind::ALL.iter().map(|kind| smapes.row(kind.name())));
    let mut selected: Vec<(String, u64)> = selected.into_iter().collect();
    selected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let report = SimReport {
        trace: trace.name.clone(),
        samples: series.values.len(),
        step_s: series.step_ms as f64 / 1000.0,
        span_days: span_ms as f64 / DAY_MS as f64,
        scale: trace.scale,
        config: config.clone(),
        warmup_days: warmup_ms as f64 / DAY_MS as f64,
        regime1: vec![
            surge.capacity.score("surge", lead_ms),
            reactive_score.clone(),
            oracle_score.clone(),
        ],
        regime2: vec![
            surge_node.capacity.score("surge", node_lead_ms),
            reactive_score,
            oracle_score,
        ],
        smape: smape_rows,
        anomaly_ticks,
        selected,
    };
    (report, timeline)
}
