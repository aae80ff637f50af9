//! The trace simulator: replays a real rate trace against the capacity
//! model and scores three policies on it: Surge's (the same `decide` the
//! loop runs, fed by the same forecaster), the standard reactive threshold
//! policy and an oracle that knows the future. Two regimes: every policy
//! with the same provisioning lead, and Surge reshaping on a node (its
//! change latency plus one of its decision intervals, `node_interval_ms`,
//! which may be shorter: a change on a node is cheap enough for a faster
//! loop) against reactive at that provisioning lead. Also reports forecast sMAPE at 1 h and 24 h.
//!
//! Compression (`compress` > 1) replays the trace faster: every wall-clock
//! duration of the policies (interval, leads, cooldowns, horizon) is
//! stretched by that factor in trace time, which is the same thing.

mod capacity;
mod plot;
mod run;
pub mod trace;

use serde::Serialize;

pub use capacity::{Capacity, Reactive, Score};
pub use plot::write_svg;
pub use run::{simulate, Timeline};
pub use trace::Trace;

use crate::config::{positive, sizing};
use crate::error::AutoscalerError;

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// The trace's `peak_quantile` quantile becomes this many events/s.
    pub peak_eps: f64,
    pub peak_quantile: f64,
    /// Replay speed-up (1: real time).
    pub compress: f64,
    pub interval_ms: u64,
    /// Surge's decision interval in regime 2 (a divisor of `interval_ms`):
    /// reshaping on a node is cheap enough for a faster loop.
    pub node_interval_ms: u64,
    /// Surge's watch between ticks (0: none): growth for measured load
    /// above its shards' target, decided on the measurement over this
    /// interval (a divisor of `node_interval_ms`). Regime 2's lead for such
    /// a growth is the change latency plus this interval.
    pub watch_interval_ms: u64,
    /// Provisioning lead every policy gets in regime 1.
    pub lead_ms: u64,
    /// Surge's own change latency (regime 2's lead adds one node interval).
    pub change_latency_ms: u64,
    pub capacity_per_shard_eps: f64,
    pub headroom: f64,
    /// Horizon over which Surge's forecast makes it grow.
    pub horizon_ms: u64,
    /// Merges need the forecast's mean over this horizon to allow one.
    pub sizing_horizon_ms: u64,
    /// Forecast models are refitted this often (trace time).
    pub refit_ms: u64,
    pub quantile: f64,
    pub reactive_high: f64,
    pub reactive_low: f64,
    pub reactive_target: f64,
    pub reactive_low_for_ms: u64,
    /// The plot shows the last this many days.
    pub plot_days: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            peak_eps: 40_000.0,
            peak_quantile: 0.99,
            compress: 1.0,
            interval_ms: 10_000,
            node_interval_ms: 10_000,
            watch_interval_ms: 1_000,
            lead_ms: 30_000,
            change_latency_ms: 1_000,
            capacity_per_shard_eps: 1_000.0,
            headroom: 0.2,
            horizon_ms: 60_000,
            sizing_horizon_ms: 15 * 60_000,
            refit_ms: 3_600_000,
            quantile: 0.95,
            reactive_high: 0.8,
            reactive_low: 0.4,
            reactive_target: 0.6,
            reactive_low_for_ms: 5 * 60_000,
            plot_days: 7.0,
        }
    }
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), AutoscalerError> {
        positive("peak_eps", self.peak_eps)?;
        positive("compress", self.compress)?;
        positive("interval", self.interval_ms as f64)?;
        positive("node_interval", self.node_interval_ms as f64)?;
        if !self.interval_ms.is_multiple_of(self.node_interval_ms) {
            return Err(AutoscalerError::invalid(
                "node_interval",
                "must divide the interval",
            ));
        }
        if self.watch_interval_ms > 0
            && !self.node_interval_ms.is_multiple_of(self.watch_interval_ms)
        {
            return Err(AutoscalerError::invalid(
                "watch_interval",
                "must divide the node interval (or be 0: no watch)",
            ));
        }
        positive("refit", self.refit_ms as f64)?;
        positive("capacity_per_shard_eps", self.capacity_per_shard_eps)?;
        sizing(self.headroom, self.quantile)?;
        let reactive_ok = 0.0 < self.reactive_low
            && self.reactive_low < self.reactive_target
            && self.reactive_target < self.reactive_high;
        if !reactive_ok {
            return Err(AutoscalerError::invalid(
                "reactive_target",
                "reactive thresholds need 0 < low < target < high",
            ));
        }
        Ok(())
    }

    /// A wall-clock duration in trace time.
    pub fn stretched(&self, wall_ms: u64) -> u64 {
        (wall_ms as f64 * self.compress).round().max(1.0) as u64
    }
}

/// sMAPE of one model at 1 h and 24 h ahead.
#[derive(Debug, Clone, Serialize)]
pub struct SmapeRow {
    pub model: String,
    pub at_1h: Option<f64>,
    pub at_24h: Option<f64>,
    pub forecasts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub trace: String,
    pub samples: usize,
    pub step_s: f64,
    pub span_days: f64,
    /// events/s per unit of the trace's value.
    pub scale: f64,
    pub config: SimConfig,
    /// Scoring starts after this warm-up (the forecaster's training).
    pub warmup_days: f64,
    pub regime1: Vec<Score>,
    pub regime2: Vec<Score>,
    /// The selected model first, then each candidate on its own.
    pub smape: Vec<SmapeRow>,
    /// Ticks flagged as anomalies by the Surge policy's forecaster.
    pub anomaly_ticks: u64,
    /// How often each model was selected for short horizons at a refit.
    pub selected: Vec<(String, u64)>,
}

impl SimReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "trace {}: {} samples every {:.0} s over {:.1} days, scaled x{:.3} so its q{} is {:.0} ev/s; {:.0} ev/s per shard, {:.0}% headroom, compress x{}, scored after {:.1} days",
            self.trace,
            self.samples,
            self.step_s,
            self.span_days,
            self.scale,
            self.config.peak_quantile,
            self.config.peak_eps,
            self.config.capacity_per_shard_eps,
            self.config.headroom * 100.0,
            self.config.compress,
            self.warmup_days
        );
        let _ = writeln!(
            out,
            "decisions every {} s (Surge on a node: {} s), Surge's watch between them: {}",
            self.config.interval_ms as f64 / 1000.0,
            self.config.node_interval_ms as f64 / 1000.0,
            match self.config.watch_interval_ms {
                0 => "off".to_string(),
                ms => format!(
                    "every {} s (a growth it decides is in place after the lead, or on a node the change latency plus that)",
                    ms as f64 / 1000.0
                ),
            }
        );
        for (title, rows) in [
            ("regime 1: provisioned capacity, same lead", &self.regime1),
            ("regime 2: reshaping on a node", &self.regime2),
        ] {
            let _ = writeln!(out, "\n{title}");
            let _ = writeln!(
                out,
                "{:<10} {:>7} {:>11} {:>13} {:>8} {:>7} {:>10} {:>11} {:>10}",
                "policy",
                "lead s",
                "over cap %",
                "over-prov %",
                "changes",
                "rounds",
                "shard ops",
                "mean shards",
                "max shards"
            );
            for row in rows {
                let _ = writeln!(
                    out,
                    "{:<10} {:>7.1} {:>11.3} {:>13.1} {:>8} {:>7} {:>10} {:>11.1} {:>10}",
                    row.policy,
                    row.lead_s,
                    row.over_capacity_pct,
                    row.over_provisioned_pct,
                    row.changes,
                    row.rounds,
                    row.operations,
                    row.mean_shards,
                    row.max_shards
                );
            }
        }
        let _ = writeln!(out, "\nforecast sMAPE on the last 30% of the trace");
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>8} {:>10}",
            "model", "1 h", "24 h", "forecasts"
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        for row in &self.smape {
            let _ = writeln!(
                out,
                "{:<24} {:>8} {:>8} {:>10}",
                row.model,
                fmt(row.at_1h),
                fmt(row.at_24h),
                row.forecasts
            );
        }
        let selected: Vec<String> = self
            .selected
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "\nshort-horizon model at each refit: {}; anomaly ticks: {}",
            selected.join(", "),
            self.anomaly_ticks
        );
        out
    }
}
