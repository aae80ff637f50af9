//! The autoscaler's settings. Every limit that keeps the loop from flapping
//! (cooldowns, change budget, hysteresis) lives here with its default.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AutoscalerError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoscalerConfig {
    /// Time between two ticks of the loop.
    pub interval: Duration,
    /// Between ticks, each stream's event rate over this long is checked
    /// against what its shards are sized for, and measured load above it
    /// grows the stream at once (zero, or not shorter than `interval`: no
    /// watch, growth waits for a tick).
    pub watch_interval: Duration,
    /// Events per second one shard is sized for.
    pub capacity_per_shard_eps: f64,
    /// Spare capacity kept above the expected load (0.2: 20%); the
    /// forecast's upper band may use it.
    pub headroom: f64,
    /// History, hints and the decision log live here.
    pub state_dir: PathBuf,
    /// false: observe, forecast and decide, but never apply (dry mode).
    pub enabled: bool,
    /// The forecast over this horizon (past the lead) is a floor under the
    /// measured need: capacity grows for its upper band before the load
    /// arrives. About what a decision serves; the nowcast's band is
    /// measured this far ahead.
    pub horizon: Duration,
    /// A merge needs the forecast's mean over this horizon to fit the
    /// smaller topology.
    pub sizing_horizon: Duration,
    /// Upper prediction quantile capacity is sized for (0.95).
    pub quantile: f64,
    /// After a split, no merge of that stream for this long.
    pub scale_down_cooldown: Duration,
    /// Measured and predicted load must both allow a merge for this long.
    pub scale_down_stable: Duration,
    /// Both of the above, for a low the forecast foresees and a surplus of
    /// at least half the shards (the policy's `foreseen_low`).
    pub scale_down_foreseen: Duration,
    /// At most this many changes per stream per `budget_window`.
    pub change_budget: u32,
    pub budget_window: Duration,
    /// Splits issued in one tick for one stream.
    pub max_splits_per_tick: u32,
    pub min_shards: u32,
    pub max_shards: u32,
    /// Data directories shards may be placed in (1: no moves).
    pub dirs: u32,
    /// A move is proposed only when it lowers the busiest directory's load
    /// by at least this fraction.
    pub move_gain_min: f64,
    /// Forecast models are refitted this often (forecasts in between come
    /// from the last fit).
    pub refit_interval: Duration,
    /// A measurement this many band-widths outside the prediction interval
    /// is an anomaly.
    pub anomaly_sigma: f64,
}

/// Rejects a setting that must be a finite number above zero, naming it
/// (the loop's and the simulator's settings share this rule).
pub(crate) fn positive(field: &str, value: f64) -> Result<(), AutoscalerError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(AutoscalerError::invalid(
            field,
            format!("must be > 0, got {value}"),
        ))
    }
}

/// Rejects a headroom outside 0..=10 or a sizing quantile outside 0.5..1
/// (shared by the loop and the simulator, which size capacity alike).
pub(crate) fn sizing(headroom: f64, quantile: f64) -> Result<(), AutoscalerError> {
    if !(0.0..=10.0).contains(&headroom) {
        return Err(AutoscalerError::invalid(
            "headroom",
            "must be within 0..=10",
        ));
    }
    if !(0.5..1.0).contains(&quantile) {
        return Err(AutoscalerError::invalid(
            "quantile",
            "must be within 0.5..1",
        ));
    }
    Ok(())
}

impl AutoscalerConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            interval: Duration::from_secs(10),
            watch_interval: Duration::from_secs(1),
            capacity_per_shard_eps: 1000.0,
            headroom: 0.2,
            state_dir: state_dir.into(),
            enabled: true,
            horizon: Duration::from_secs(60),
            sizing_horizon: Duration::from_secs(15 * 60),
            quantile: 0.95,
            scale_down_cooldown: Duration::from_secs(5 * 60),
            scale_down_stable: Duration::from_secs(5 * 60),
            scale_down_foreseen: Duration::from_secs(3 * 60),
            change_budget: 12,
            budget_window: Duration::from_secs(60 * 60),
            max_splits_per_tick: 8,
            min_shards: 1,
            max_shards: 1024,
            dirs: 1,
            move_gain_min: 0.2,
            refit_interval: Duration::from_secs(60 * 60),
            anomaly_sigma: 1.0,
        }
    }

    /// Rejects settings the loop cannot work with, naming the field.
    pub fn validate(&self) -> Result<(), AutoscalerError> {
        positive("capacity_per_shard_eps", self.capacity_per_shard_eps)?;
        positive("interval", self.interval.as_secs_f64())?;
        positive("horizon", self.horizon.as_secs_f64())?;
        positive("refit_interval", self.refit_interval.as_secs_f64())?;
        sizing(self.headroom, self.quantile)?;
        if self.min_shards == 0 || self.min_shards > self.max_shards {
            return Err(AutoscalerError::invalid(
                "min_shards",
                "must be >= 1 and <= max_shards",
            ));
        }
        if self.dirs == 0 {
            return Err(AutoscalerError::invalid("dirs", "must be >= 1"));
        }
        Ok(())
    }

    /// Load one shard may carry before it counts as full.
    pub fn shard_target_eps(&self) -> f64 {
        self.capacity_per_shard_eps / (1.0 + self.headroom)
    }
}
