//! The data the autoscaler hands out and takes in: predictions, hints,
//! decisions, anomalies and the latest measured rates. Times are unix
//! milliseconds; every type serialises to JSON for the control API.

use serde::{Deserialize, Serialize};

/// Forecast of one stream's event rate, one entry per step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    pub stream: String,
    /// Model that produced it (chosen by rolling backtest error).
    pub model: String,
    pub quantile: f64,
    pub points: Vec<PredictionPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictionPoint {
    pub at_ms: u64,
    pub mean_eps: f64,
    pub lower_eps: f64,
    pub upper_eps: f64,
    /// True when a hint shaped this point.
    pub hinted: bool,
}

/// An announcement of upcoming load, as a client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HintRequest {
    pub stream: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Expected events/s inside the window (exclusive with `multiplier`).
    #[serde(default)]
    pub rate_eps: Option<f64>,
    /// Expected load as a multiple of the forecast.
    #[serde(default)]
    pub multiplier: Option<f64>,
}

/// A stored hint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hint {
    pub id: u64,
    pub stream: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub rate_eps: Option<f64>,
    pub multiplier: Option<f64>,
    pub created_ms: u64,
}

impl Hint {
    pub fn covers(&self, at_ms: u64) -> bool {
        self.start_ms <= at_ms && at_ms < self.end_ms
    }

    /// The hinted load at a point whose forecast is `forecast_eps`.
    pub fn apply(&self, forecast_eps: f64) -> f64 {
        match (self.rate_eps, self.multiplier) {
            (Some(rate), _) => rate,
            (None, Some(multiplier)) => forecast_eps * multiplier,
            (None, None) => forecast_eps,
        }
    }
}

/// One topology change the loop chose.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    /// Split at the weighted median of the shard's key hashes.
    Split {
        shard: u32,
    },
    Merge {
        left: u32,
        right: u32,
    },
    Move {
        shard: u32,
        dir: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Action {
    #[serde(flatten)]
    pub kind: ActionKind,
    /// false in dry mode or for `optimize(.., dry_run = true)`.
    pub applied: bool,
    /// Shards created by the change, once applied.
    pub created: Vec<u32>,
    pub error: Option<String>,
}

/// What one tick decided for one stream and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub at_ms: u64,
    pub stream: String,
    pub actions: Vec<Action>,
    /// Sentences with the numbers behind the choice.
    pub reasons: Vec<String>,
    pub anomalies: Vec<Anomaly>,
    pub model: String,
    pub shards_before: u32,
    /// Shards once this decision's actions are applied.
    pub shards_target: u32,
    /// The count the decision aims at: a stream at most doubles or halves
    /// per round, so a larger change goes on in the next ticks' rounds.
    /// (0 in decisions recorded before it existed.)
    #[serde(default)]
    pub shards_goal: u32,
}

/// A measurement far outside the prediction interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Anomaly {
    pub at_ms: u64,
    pub stream: String,
    pub measured_eps: f64,
    pub expected_eps: f64,
    pub lower_eps: f64,
    pub upper_eps: f64,
    /// Distance outside the interval in band widths (positive: above).
    pub score: f64,
}

/// The latest measured rates of one shard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ShardRates {
    pub shard: u32,
    pub events_per_s: f64,
    pub bytes_per_s: f64,
    pub append_p99_us: u64,
    pub fsync_p99_us: u64,
    pub queue_depth: u64,
    /// Share of events per size bucket (`SIZE_BOUNDS`, then larger).
    pub size_mix: Vec<f64>,
    /// Share of events per type.
    pub type_mix: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StreamRates {
    pub stream: String,
    pub at_ms: u64,
    pub epoch: u64,
    pub events_per_s: f64,
    pub bytes_per_s: f64,
    pub shards: Vec<ShardRates>,
}

/// Node utilisation between the last two samples, each 0..=1 except the
/// byte rates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct NodeRates {
    pub at_ms: u64,
    pub cpu_utilization: f64,
    pub mem_utilization: f64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    pub disk_utilization: f64,
    pub disk_written_bytes_per_s: f64,
}
