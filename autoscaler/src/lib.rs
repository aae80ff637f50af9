//! Surge's autoscaler. It never imports the broker: it reshapes streams
//! through the `TopologyControl` trait, which the broker implements
//! (embedded) and a simulator or a remote client can implement too.
//!
//! # Layout
//!
//! - `control`: `TopologyControl` (describe, split, merge, move) and the
//!   types it speaks.

pub mod control;

pub use control::{ChangeReport, ControlError, ShardView, StreamTopology, TopologyControl};
