//! surge-loadgen: drives a Surge broker with producers and consumers and
//! reports what it measured, honestly: every run states its durability,
//! batch and event size, counts every error and timeout, is bounded in time
//! and count, and measures open-loop latency from the intended send time.
//!
//! # Layout
//!
//! - `error`: `LoadgenError`, the library's one error type.
//! - `config`: `RunConfig`, the run as serde data (copied into the report),
//!   limits and flag parsers.
//! - `workload`: event sizes, keys (uniform, zipf), types, the `sent-us`
//!   header; `EventFactory`.
//! - `schedule`: `RateSchedule`, intended send times under a piecewise
//!   constant rate.
//! - `histogram`: `LatencyHistogram` (HDR, µs) and `RunClock`.
//! - `stats`: `Recorder`, per-producer or per-consumer counts and latency.
//! - `producer`: one loadgen producer: the client producer, the ack
//!   collector task, and the two ways to feed it (paced or windowed).
//! - `consumer`: end-to-end latency from the `sent-us` header.
//! - `scenarios/`: one file per scenario: `open_loop`, `max_throughput`,
//!   `trace_replay`.
//! - `broker`: `--spawn-broker`, a `surge serve` child on a temp dir.
//! - `calibrate`: one shard's capacity for the autoscaler, from a max
//!   throughput run and open-loop steps below it.
//! - `run`: connects, creates the stream, starts everything, stops it.
//! - `progress`: the live line once a second and the per-second timeline.
//! - `report`: `Report`, the one serde schema of results; the final table.
//! - `plot`: rate and latency over time, as SVG or PNG.

pub mod broker;
pub mod calibrate;
pub mod config;
pub mod consumer;
pub mod error;
pub mod histogram;
pub mod plot;
pub mod producer;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod schedule;
pub mod stats;
pub mod workload;

pub use config::RunConfig;
pub use error::LoadgenError;
pub use report::Report;
