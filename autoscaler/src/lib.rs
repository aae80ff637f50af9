//! Surge's autoscaler. It never imports the broker: it reshapes streams
//! through the `TopologyControl` trait, which the broker implements
//! (embedded) and a simulator or a remote client can implement too.
//!
//! # Layout
//!
//! - `control`: `TopologyControl` (describe, split, merge, move) and the
//!   types it speaks.
//! - `metrics`: `MetricsSource`, the counters a broker or simulator reports.

pub mod control;
pub mod metrics;

pub use control::{ChangeReport, ControlError, ShardView, StreamTopology, TopologyControl};
pub use metrics::{MetricsSource, NodeSample, ShardCounters, StreamSample, SIZE_BOUNDS};
