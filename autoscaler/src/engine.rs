//! The `Autoscaler`: the loop that collects metrics, keeps history, refits
//! forecasts, detects anomalies, applies hints, asks the policy for a plan
//! and carries it out through `TopologyControl`, recording each decision;
//! between its ticks, a watch over each stream's event rate that grows a
//! stream its measured load overflows at once.
//! State shared with the HTTP side sits behind one mutex that is never held
//! across an await nor during a model refit: a tick prepares under the
//! lock, refits a copy of the forecaster and talks to the broker without
//! it, and records under it again.

mod prom;
mod rates;
mod stream;
mod tick;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::api::{
    Anomaly, Decision, Hint, HintRequest, NodeRates, Prediction, PredictionPoint, StreamRates,
};
use crate::config::AutoscalerConfig;
use crate::control::TopologyControl;
use crate::error::AutoscalerError;
use crate::hints::HintStore;
use crate::metrics::{MetricsSource, NodeSample};
use crate::policy::PolicyConfig;
use crate::store::{self, Kind};

pub use rates::unix_ms;
use stream::StreamEntry;
use tick::Turn;

/// Decisions and anomalies kept (and persisted) at most.
pub const DECISIONS_MAX: usize = 1_000;
pub const ANOMALIES_MAX: usize = 1_000;
/// Points one `predict` call may ask for.
pub const PREDICTION_POINTS_MAX: u64 = 10_000;
/// Streams followed at once; more are ignored (and counted).
pub const STREAMS_MAX: usize = 4_096;

#[derive(Debug, Default)]
struct Counters {
    ticks: AtomicU64,
    /// Watches that found a stream over its shards' target and grew it.
    watch_growths: AtomicU64,
    applied: AtomicU64,
    failed: AtomicU64,
    dry_run: AtomicU64,
    anomalies: AtomicU64,
    streams_ignored: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    streams: HashMap<String, StreamEntry>,
    node: Option<(u64, NodeSample)>,
    node_rates: Option<NodeRates>,
    hints: HintStore,
    decisions: VecDeque<Decision>,
    anomalies: VecDeque<Anomaly>,
}

/// The autoscaler; share it through an `Arc`.
#[derive(Debug)]
pub struct Autoscaler<C: TopologyControl, M: MetricsSource> {
    config: AutoscalerConfig,
    policy: PolicyConfig,
    control: C,
    metrics: M,
    shared: Mutex<Shared>,
    ready: AtomicBool,
    counters: Counters,
}

fn decisions_path(config: &AutoscalerConfig) -> PathBuf {
    config.state_dir.join("decisions")
}

impl<C: TopologyControl, M: MetricsSource> Autoscaler<C, M> {
    /// Loads hints and the decision log from `state_dir` (histories load
    /// as their streams appear).
    pub fn open(config: AutoscalerConfig, control: C, metrics: M) -> Result<Self, AutoscalerError> {
        config.validate()?;
        std::fs::create_dir_all(&config.state_dir)?;
        let hints = HintStore::open(&config.state_dir)?;
        let path = decisions_path(&config);
        let decisions: VecDeque<Decision> = match store::read(&path, Kind::Decisions)? {
            None => VecDeque::new(),
            Some(body) => {
                serde_json::from_slice(&body).map_err(|err| AutoscalerError::Corrupt {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })?
            }
        };
        let anomalies = decisions
            .iter()
            .rev()
            .flat_map(|d| d.anomalies.iter().cloned())
            .take(ANOMALIES_MAX)
            .collect();
        Ok(Self {
            policy: PolicyConfig::from_config(&config),
            config,
            control,
            metrics,
            shared: Mutex::new(Shared {
                streams: HashMap::new(),
                node: None,
                node_rates: None,
                hints,
                decisions,
                anomalies,
            }),
            ready: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// One loop iteration over every stream; returns the decisions it
    /// recorded (ticks that change nothing and see no anomaly record none).
    pub async fn tick(&self, now_ms: u64) -> Vec<Decision> {
        self.counters.ticks.fetch_add(1, Ordering::Relaxed);
        self.sample_node(now_ms);
        let mut streams = self.metrics.streams();
        streams.sort();
        let mut decisions = Vec::new();
        for name in streams {
            if !self.observe(&name, now_ms) {
                continue;
            }
            if let Some(decision) = self.plan_and_apply(&name, now_ms, Turn::Tick).await {
                decisions.push(decision);
            }
        }
        self.ready.store(true, Ordering::Release);
        decisions
    }

    /// Between ticks: each stream's event rate since the last watch. One
    /// above what its shards are sized for gets the policy at once, which
    /// may only grow the stream; the rest waits for the tick. Nothing in
    /// dry mode (a decision a second that is never applied says nothing
    /// the next tick does not).
    pub async fn watch(&self, now_ms: u64) -> Vec<Decision> {
        if !self.config.enabled {
            return Vec::new();
        }
        let mut names: Vec<String> = self.shared.lock().streams.keys().cloned().collect();
        names.sort();
        let mut decisions = Vec::new();
        for name in names {
            let Some(counts) = self.metrics.event_counts(&name) else {
                continue;
            };
            let overloaded = {
                let mut shared = self.shared.lock();
                let Some(entry) = shared.streams.get_mut(&name) else {
                    continue;
                };
                let before = entry.watch_counts.replace(counts);
                if entry.watch_held {
                    continue;
                }
                let now = entry.watch_counts.as_ref().expect("just stored");
                let shards = now.shards.len() as u32;
                before
                    .and_then(|before| rates::events_per_s(now, &before))
                    .filter(|&measured| crate::policy::overloaded(&self.policy, shards, measured))
            };
            if let Some(measured_eps) = overloaded {
                let turn = Turn::Watch { measured_eps };
                if let Some(decision) = self.plan_and_apply(&name, now_ms, turn).await {
                    if decision.actions.iter().any(|a| a.applied) {
                        self.counters.watch_growths.fetch_add(1, Ordering::Relaxed);
                    }
                    if decision.actions.iter().any(|a| a.error.is_some()) {
                        if let Some(entry) = self.shared.lock().streams.get_mut(&name) {
                            entry.watch_held = true;
                        }
                    }
                    decisions.push(decision);
                }
            }
        }
        decisions
    }

    /// Ticks every `interval`, and watches every `watch_interval` in
    /// between, until `shutdown` completes.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let mut interval = tokio::time::interval(self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watching = !self.config.watch_interval.is_zero()
            && self.config.watch_interval < self.config.interval;
        let mut watch =
            tokio::time::interval(self.config.watch_interval.max(Duration::from_millis(1)));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = interval.tick() => {
                    self.tick(unix_ms(SystemTime::now())).await;
                }
                _ = watch.tick(), if watching => {
                    self.watch(unix_ms(SystemTime::now())).await;
                }
            }
        }
    }

    /// Runs the policy now for one stream (or all) without sampling; applies
    /// unless `dry_run` (or the autoscaler is in dry mode). Always returns
    /// the decision, changed or not.
    pub async fn optimize(
        &self,
        stream: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<Decision>, AutoscalerError> {
        let names: Vec<String> = match stream {
            Some(name) => {
                if !self.shared.lock().streams.contains_key(name) {
                    return Err(AutoscalerError::UnknownStream(name.to_string()));
                }
                vec![name.to_string()]
            }
            None => {
                let mut names: Vec<String> = self.shared.lock().streams.keys().cloned().collect();
                names.sort();
                names
            }
        };
        let now_ms = unix_ms(SystemTime::now());
        let apply = self.config.enabled && !dry_run;
        let mut decisions = Vec::new();
        for name in names {
            if let Some(decision) = self
                .plan_and_apply(&name, now_ms, Turn::Optimize { apply })
                .await
            {
                decisions.push(decision);
            }
        }
        Ok(decisions)
    }

    /// Mean and band per step over `[from_ms, to_ms)`, hints applied.
    pub fn predict(
        &self,
        stream: &str,
        from_ms: u64,
        to_ms: u64,
        step_ms: u64,
    ) -> Result<Prediction, AutoscalerError> {
        if step_ms == 0 {
            return Err(AutoscalerError::invalid("step_ms", "must be > 0"));
        }
        if to_ms <= from_ms {
            return Err(AutoscalerError::invalid(
                "to_ms",
                format!("must be after from_ms ({from_ms})"),
            ));
        }
        let points = (to_ms - from_ms).div_ceil(step_ms);
        if points > PREDICTION_POINTS_MAX {
            return Err(AutoscalerError::invalid(
                "step_ms",
                format!("{points} points asked, at most {PREDICTION_POINTS_MAX}"),
            ));
        }
        let shared = self.shared.lock();
        let entry = shared
            .streams
            .get(stream)
            .ok_or_else(|| AutoscalerError::UnknownStream(stream.to_string()))?;
        let hints = shared.hints.for_stream(stream);
        let points: Vec<PredictionPoint> = (0..points)
            .map(|i| entry.point_at(from_ms + i * step_ms, &hints))
            .collect();
        Ok(Prediction {
            stream: stream.to_string(),
            model: entry.model_name(from_ms),
            quantile: self.config.quantile,
            points,
        })
    }

    /// Stores a hint durably, then returns it.
    /// Stores a hint at `now_ms` (unix ms, the clock `tick` is given).
    pub fn add_hint(&self, hint: HintRequest, now_ms: u64) -> Result<Hint, AutoscalerError> {
        self.shared.lock().hints.add(hint, now_ms)
    }

    pub fn hints(&self, stream: &str) -> Vec<Hint> {
        self.shared.lock().hints.for_stream(stream)
    }

    /// Newest first.
    pub fn decisions(&self, limit: usize) -> Vec<Decision> {
        self.shared
            .lock()
            .decisions
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Newest first.
    pub fn anomalies(&self, limit: usize) -> Vec<Anomaly> {
        self.shared
            .lock()
            .anomalies
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn rates(&self, stream: &str) -> Option<StreamRates> {
        self.shared.lock().streams.get(stream)?.rates.clone()
    }

    pub fn node(&self) -> Option<NodeRates> {
        self.shared.lock().node_rates.clone()
    }

    /// State loaded and the first tick done.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn sample_node(&self, now_ms: u64) {
        let sample = self.metrics.node();
        let mut shared = self.shared.lock();
        if let Some((before_ms, before)) = &shared.node {
            if now_ms > *before_ms {
                let seconds = (now_ms - before_ms) as f64 / 1000.0;
                shared.node_rates = Some(rates::node_rates(&sample, before, seconds, now_ms));
            }
        }
        shared.node = Some((now_ms, sample));
    }

    fn record(&self, shared: &mut Shared, decision: Decision) {
        for anomaly in &decision.anomalies {
            shared.anomalies.push_back(anomaly.clone());
            if shared.anomalies.len() > ANOMALIES_MAX {
                shared.anomalies.pop_front();
            }
        }
        shared.decisions.push_back(decision);
        if shared.decisions.len() > DECISIONS_MAX {
            shared.decisions.pop_front();
        }
        let body = serde_json::to_vec(&shared.decisions).expect("decisions serialise to JSON");
        if let Err(err) = store::write(&decisions_path(&self.config), Kind::Decisions, &body) {
            tracing::warn!(%err, "cannot persist the autoscaler decision log");
        }
    }
}
