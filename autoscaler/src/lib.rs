//! Surge's autoscaler. It never imports the broker: it reshapes streams
//! through the `TopologyControl` trait, which the broker implements
//! (embedded) and a simulator or a remote client can implement too.
//!
//! # Layout
//!
//! - `control`: `TopologyControl` (describe, split, merge, move) and the
//!   types it speaks.
//! - `metrics`: `MetricsSource`, the counters a broker or simulator reports.
//! - `config`, `api`, `error`: settings, the data handed out and taken in,
//!   the crate's error.
//! - `series`: regular time series, resampling, sMAPE.
//! - `store`: crash-safe checksummed state files.
//! - `history`: per-stream rate history at two resolutions, persisted.
//! - `hints`: durable announced-load store.
//! - `forecast`: candidate models (seasonal naive, ETS, MSTL) chosen by
//!   rolling backtest error, with empirical prediction bands.
//! - `anomaly`: measurements far outside the band.
//! - `policy`: the pure `decide(state, forecast, now) -> Plan`.
//! - `memory`: an in-memory broker (control + metrics) for tests and demos.
//! - `engine`: the `Autoscaler` loop and the API the broker calls.
//! - `sim`: the trace simulator (capacity model, reactive and oracle
//!   baselines, sMAPE, SVG plot).
//! - `placement`: shards across directories as a small MILP (good_lp).

pub mod anomaly;
pub mod api;
pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod forecast;
pub mod hints;
pub mod history;
pub mod memory;
pub mod metrics;
pub mod placement;
pub mod policy;
pub mod series;
pub mod sim;
pub mod store;

pub use api::{
    Action, ActionKind, Anomaly, Decision, Hint, HintRequest, NodeRates, Prediction,
    PredictionPoint, ShardRates, StreamRates,
};
pub use config::AutoscalerConfig;
pub use control::{ChangeReport, ControlError, ShardView, StreamTopology, TopologyControl};
pub use engine::Autoscaler;
pub use error::AutoscalerError;
pub use metrics::{
    EventCounts, MetricsSource, NodeSample, ShardCounters, StreamSample, SIZE_BOUNDS,
};
