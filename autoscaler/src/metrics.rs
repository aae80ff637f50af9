//! What the autoscaler measures, as a metrics source (the broker, the
//! simulator, a remote scrape) reports it. Counters are cumulative and only
//! grow, like Prometheus counters: the autoscaler derives rates from two
//! samples, so a late or missed tick loses no events.

use std::time::SystemTime;

/// Upper bounds (bytes, inclusive) of the event-size buckets; one more
/// bucket past the last bound counts larger events.
pub const SIZE_BOUNDS: [u32; 8] = [64, 128, 256, 512, 1024, 4096, 16384, 65536];

/// One shard's counters since it was opened in this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardCounters {
    pub shard: u32,
    /// Events and bytes appended (forwarded pieces count where they land).
    pub events: u64,
    pub bytes: u64,
    /// Events per size bucket: `SIZE_BOUNDS.len() + 1` counters.
    pub size_buckets: Vec<u64>,
    /// Events per `type` header value; events without one count under "".
    /// A source may fold rare types into "" to stay bounded.
    pub types: Vec<(String, u64)>,
    /// Recent append (enqueue to durable ack) and fsync latency.
    pub append_p99_us: u64,
    pub fsync_p99_us: u64,
    /// Appends waiting for the shard's owner right now.
    pub queue_depth: u64,
    /// Recent traffic over the shard's hash range: (bucket start hash,
    /// weight), in hash order.
    pub key_hashes: Vec<(u64, u64)>,
}

/// Every open shard of one stream at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSample {
    pub stream: String,
    pub at: SystemTime,
    pub epoch: u64,
    pub shards: Vec<ShardCounters>,
}

/// Each open shard's event counter at one instant: all the loop's watch
/// between ticks reads (the rest of a sample, its latency windows
/// included, is the tick's).
#[derive(Debug, Clone, PartialEq)]
pub struct EventCounts {
    pub at: SystemTime,
    /// (shard, events appended), as in `ShardCounters`.
    pub shards: Vec<(u32, u64)>,
}

/// The node's resources, cumulative where /proc is (CPU ticks, bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSample {
    pub cores: u32,
    /// CPU ticks spent busy and in total, all cores together.
    pub cpu_busy_ticks: u64,
    pub cpu_total_ticks: u64,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Milliseconds the data disks spent doing I/O (`io_ticks`).
    pub disk_busy_ms: u64,
    pub disk_written_bytes: u64,
}

/// Where the autoscaler's measurements come from.
pub trait MetricsSource: Send + Sync {
    /// Streams that exist now.
    fn streams(&self) -> Vec<String>;
    /// `None` when the stream no longer exists.
    fn sample(&self, stream: &str) -> Option<StreamSample>;
    /// Cheap enough to call every second; `None` when the stream no longer
    /// exists.
    fn event_counts(&self, stream: &str) -> Option<EventCounts>;
    fn node(&self) -> NodeSample;
}
