//! The autoscaler's `MetricsSource` over a running broker: each open
//! shard's cumulative counters, plus node resources. Latency percentiles
//! are "recent": taken over what was recorded since this source last
//! sampled the same shard, so the engine (its only caller) sees one tick's
//! worth.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use surge_autoscaler::{EventCounts, MetricsSource, NodeSample, ShardCounters, StreamSample};

use super::latency::{p99_between, LATENCY_BUCKETS};
use super::node::NodeProbe;
use crate::broker::Broker;

type Snapshot = [u64; LATENCY_BUCKETS];

/// The latency counts each shard had at the previous sample.
#[derive(Debug, Default, Clone, Copy)]
struct LatencyWindow {
    append: Snapshot,
    fsync: Snapshot,
}

#[derive(Debug)]
pub struct BrokerMetricsSource {
    broker: Arc<Broker>,
    node: NodeProbe,
    /// Per stream, per shard; a stream's map is replaced at each sample, so
    /// it holds only shards that exist.
    windows: Mutex<HashMap<String, HashMap<u32, LatencyWindow>>>,
}

impl BrokerMetricsSource {
    pub fn new(broker: Arc<Broker>, data_dir: &Path) -> BrokerMetricsSource {
        BrokerMetricsSource {
            broker,
            node: NodeProbe::new(data_dir),
            windows: Mutex::new(HashMap::new()),
        }
    }
}

impl MetricsSource for BrokerMetricsSource {
    fn streams(&self) -> Vec<String> {
        let names: Vec<String> = self
            .broker
            .streams
            .all()
            .iter()
            .map(|stream| stream.name.clone())
            .collect();
        self.windows
            .lock()
            .retain(|name, _| names.iter().any(|known| known == name));
        names
    }

    fn sample(&self, stream: &str) -> Option<StreamSample> {
        let live = self.broker.streams.get(stream)?;
        let view = live.view();
        let mut windows = self.windows.lock();
        let previous = windows.remove(stream).unwrap_or_default();
        let mut current = HashMap::with_capacity(view.shards.len());
        let mut shards = Vec::new();
        for meta in view
            .meta
            .shards
            .iter()
            .filter(|shard| shard.sealed_at.is_none())
        {
            let Some(shard) = view.shards.get(&meta.id) else {
                continue;
            };
            let metrics = shard.metrics();
            let now = LatencyWindow {
                append: metrics.append_latency.snapshot(),
                fsync: metrics.fsync_latency.snapshot(),
            };
            let before = previous.get(&meta.id).copied().unwrap_or_default();
            current.insert(meta.id, now);
            shards.push(ShardCounters {
                shard: meta.id,
                events: metrics.events(),
                bytes: metrics.bytes(),
                size_buckets: metrics.size_buckets(),
                types: metrics.types(),
                append_p99_us: p99_between(&before.append, &now.append),
                fsync_p99_us: p99_between(&before.fsync, &now.fsync),
                queue_depth: shard.queue_depth() as u64,
                key_hashes: shard.keys().buckets(),
            });
        }
        windows.insert(stream.to_owned(), current);
        Some(StreamSample {
            stream: stream.to_owned(),
            at: SystemTime::now(),
            epoch: view.meta.epoch,
            shards,
        })
    }

    fn event_counts(&self, stream: &str) -> Option<EventCounts> {
        let view = self.broker.streams.get(stream)?.view();
        let shards = view
            .meta
            .shards
            .iter()
            .filter(|shard| shard.sealed_at.is_none())
            .filter_map(|meta| Some((meta.id, view.shards.get(&meta.id)?.metrics().events())))
            .collect();
        Some(EventCounts {
            at: SystemTime::now(),
            shards,
        })
    }

    fn node(&self) -> NodeSample {
        self.node.sample()
    }
}
