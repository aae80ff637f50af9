//! What the broker measures about itself: per-shard counters bumped on the
//! append path (`shard`, `latency`), node resources from /proc (`node`),
//! broker-wide counters (below), the autoscaler's `MetricsSource` over all
//! of them (`source`), and the Prometheus text rendering (`prometheus`).

mod latency;
mod node;
pub mod prometheus;
mod shard;
mod source;

use std::sync::atomic::{AtomicU64, Ordering};

pub use latency::{bucket_bound_us, p99_between, LatencyHistogram, LATENCY_BUCKETS};
pub use node::{NodeProbe, ProcTexts};
pub use shard::{ShardMetrics, TYPE_NAME_MAX_BYTES, TYPE_SLOTS};
pub use source::BrokerMetricsSource;

/// Counters about the broker as a whole.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
}

impl BrokerMetrics {
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.load(Ordering::Relaxed)
    }
}
