//! The Surge broker library: everything the `surge` binary runs.
//!
//! # Layout
//!
//! - `config`: layered configuration (defaults, TOML, `SURGE_*`, flags).
//! - `broker`: the shared state of one running broker.
//! - `storage`: segment files, indexes, the shard log, recovery, retention.
//! - `shard`: one owner thread per shard: group commit, flush timer.
//! - `topology`: stream and shard metadata, hash ranges, lineage, epochs,
//!   and the pure planning of splits, merges and moves.
//! - `streams`: the registry of live streams, and applying changes
//!   (seal-and-succeed).
//! - `control`: the autoscaler's `TopologyControl`, over the broker.
//! - `groups`: consumer-group membership, assignment, committed offsets.
//! - `server`: TCP listener, connections, request dispatch.
//! - `metrics`: per-shard counters, node resources from /proc, the
//!   autoscaler's `MetricsSource`, Prometheus text.
//! - `http`: the HTTP control API (axum) and the client the commands use.
//! - `fsutil`, `clock`, `failpoint`: crash-safe file writes, wall-clock
//!   time, crashes on purpose for tests.

pub mod broker;
pub mod clock;
pub mod config;
pub mod control;
pub mod error;
pub mod failpoint;
pub mod fsutil;
pub mod groups;
pub mod http;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod storage;
pub mod streams;
pub mod topology;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::BrokerError;
