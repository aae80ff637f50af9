//! An in-memory broker: `TopologyControl` and `MetricsSource` over streams
//! that exist only in this process, with a settable clock and load spread
//! over open shards by hash-range width. It drives the engine's tests and
//! anyone who wants to watch the loop without a broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::control::{ChangeReport, ControlError, ShardView, StreamTopology, TopologyControl};
use crate::metrics::{EventCounts, MetricsSource, NodeSample, ShardCounters, StreamSample};

#[derive(Debug, Default)]
struct Stream {
    epoch: u64,
    next_id: u32,
    shards: Vec<ShardView>,
    events: HashMap<u32, u64>,
}

#[derive(Debug)]
struct State {
    now_ms: u64,
    streams: HashMap<String, Stream>,
    changes: u64,
    fail_changes: bool,
}

/// Clones share one broker (the autoscaler takes one as its control and
/// one as its metrics source).
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    state: Arc<Mutex<State>>,
}

impl MemoryBroker {
    pub fn new(now_ms: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                now_ms,
                streams: HashMap::new(),
                changes: 0,
                fail_changes: false,
            })),
        }
    }

    /// A stream with `shards` equal hash ranges.
    pub fn create(&self, stream: &str, shards: u32) {
        assert!(shards > 0, "a stream needs a shard");
        let width = u64::MAX / u64::from(shards);
        let mut created = Stream {
            epoch: 1,
            ..Stream::default()
        };
        for i in 0..shards {
            let end = if i + 1 == shards {
                u64::MAX
            } else {
                width * u64::from(i + 1) - 1
            };
            open(&mut created, width * u64::from(i), end, Vec::new(), 0);
        }
        self.state
            .lock()
            .streams
            .insert(stream.to_string(), created);
    }

    pub fn now_ms(&self) -> u64 {
        self.state.lock().now_ms
    }

    /// Moves the clock on by `seconds` while `stream` takes `rate_eps`.
    pub fn advance(&self, stream: &str, seconds: u64, rate_eps: f64) {
        let mut state = self.state.lock();
        state.now_ms += seconds * 1000;
        if let Some(s) = state.streams.get_mut(stream) {
            let total = rate_eps * seconds as f64;
            for shard in s.shards.iter().filter(|s| !s.sealed) {
                let share = (shard.hash_end - shard.hash_start) as f64 / u64::MAX as f64;
                *s.events.entry(shard.id).or_default() += (total * share).round() as u64;
            }
        }
    }

    pub fn open_shards(&self, stream: &str) -> usize {
        let state = self.state.lock();
        state
            .streams
            .get(stream)
            .map_or(0, |s| s.shards.iter().filter(|s| !s.sealed).count())
    }

    /// Changes applied so far.
    pub fn changes(&self) -> u64 {
        self.state.lock().changes
    }

    /// Makes every change fail (as an I/O error would).
    pub fn fail_changes(&self, fail: bool) {
        self.state.lock().fail_changes = fail;
    }

    fn change(
        &self,
        stream: &str,
        apply: impl FnOnce(&mut Stream) -> Result<(Vec<u32>, Vec<u32>), ControlError>,
    ) -> Result<ChangeReport, ControlError> {
        let mut state = self.state.lock();
        if state.fail_changes {
            return Err(ControlError::Failed("injected failure".into()));
        }
        let s = state
            .streams
            .get_mut(stream)
            .ok_or_else(|| ControlError::UnknownStream(stream.to_string()))?;
        let (sealed, created) = apply(s)?;
        s.epoch += 1;
        let epoch = s.epoch;
        state.changes += 1;
        Ok(ChangeReport {
            epoch,
            sealed,
            created,
            took_us: 100,
        })
    }
}

fn open(stream: &mut Stream, hash_start: u64, hash_end: u64, parents: Vec<u32>, dir: u32) -> u32 {
    stream.next_id += 1;
    let id = stream.next_id;
    stream.shards.push(ShardView {
        id,
        hash_start,
        hash_end,
        sealed: false,
        parents,
        dir,
        group: String::new(),
        end_offset: 0,
        size_bytes: 0,
    });
    id
}

fn open_shard(stream: &Stream, id: u32) -> Result<ShardView, ControlError> {
    stream
        .shards
        .iter()
        .find(|s| s.id == id && !s.sealed)
        .cloned()
        .ok_or_else(|| ControlError::Rejected(format!("shard {id} is not open")))
}

fn seal(stream: &mut Stream, id: u32) {
    if let Some(shard) = stream.shards.iter_mut().find(|s| s.id == id) {
        shard.sealed = true;
    }
}

impl TopologyControl for MemoryBroker {
    async fn describe(&self, stream: &str) -> Result<StreamTopology, ControlError> {
        let state = self.state.lock();
        let s = state
            .streams
            .get(stream)
            .ok_or_else(|| ControlError::UnknownStream(stream.to_string()))?;
        Ok(StreamTopology {
            stream: stream.to_string(),
            epoch: s.epoch,
            shards: s.shards.clone(),
        })
    }

    async fn split(
        &self,
        stream: &str,
        shard: u32,
        at: Option<u64>,
    ) -> Result<ChangeReport, ControlError> {
        self.change(stream, |s| {
            let parent = open_shard(s, shard)?;
            let mid = at.unwrap_or(parent.hash_start + (parent.hash_end - parent.hash_start) / 2);
            if mid < parent.hash_start || mid >= parent.hash_end {
                return Err(ControlError::Rejected(format!(
                    "split point {mid} outside shard {shard}"
                )));
            }
            seal(s, shard);
            let left = open(s, parent.hash_start, mid, vec![shard], parent.dir);
            let right = open(s, mid + 1, parent.hash_end, vec![shard], parent.dir);
            Ok((vec![shard], vec![left, right]))
        })
    }

    async fn merge(
        &self,
        stream: &str,
        left: u32,
        right: u32,
    ) -> Result<ChangeReport, ControlError> {
        self.change(stream, |s| {
            let (l, r) = (open_shard(s, left)?, open_shard(s, right)?);
            if l.hash_end.checked_add(1) != Some(r.hash_start) {
                return Err(ControlError::Rejected(format!(
                    "shards {left} and {right} are not adjacent"
                )));
            }
            seal(s, left);
            seal(s, right);
            let merged = open(s, l.hash_start, r.hash_end, vec![left, right], l.dir);
            Ok((vec![left, right], vec![merged]))
        })
    }

    async fn move_shard(
        &self,
        stream: &str,
        shard: u32,
        dir: u32,
    ) -> Result<ChangeReport, ControlError> {
        self.change(stream, |s| {
            let old = open_shard(s, shard)?;
            seal(s, shard);
            let moved = open(s, old.hash_start, old.hash_end, vec![shard], dir);
            Ok((vec![shard], vec![moved]))
        })
    }
}

impl MetricsSource for MemoryBroker {
    fn streams(&self) -> Vec<String> {
        self.state.lock().streams.keys().cloned().collect()
    }

    fn sample(&self, stream: &str) -> Option<StreamSample> {
        let state = self.state.lock();
        let s = state.streams.get(stream)?;
        Some(StreamSample {
            stream: stream.to_string(),
            at: UNIX_EPOCH + Duration::from_millis(state.now_ms),
            epoch: s.epoch,
            shards: s
                .shards
                .iter()
                .filter(|shard| !shard.sealed)
                .map(|shard| {
                    let events = s.events.get(&shard.id).copied().unwrap_or(0);
                    ShardCounters {
                        shard: shard.id,
                        events,
                        bytes: events * 200,
                        ..ShardCounters::default()
                    }
                })
                .collect(),
        })
    }

    fn event_counts(&self, stream: &str) -> Option<EventCounts> {
        let sample = self.sample(stream)?;
        Some(EventCounts {
            at: sample.at,
            shards: sample.shards.iter().map(|s| (s.shard, s.events)).collect(),
        })
    }

    fn node(&self) -> NodeSample {
        let now_ms = self.state.lock().now_ms;
        NodeSample {
            cores: 2,
            cpu_busy_ticks: now_ms / 20,
            cpu_total_ticks: now_ms / 10,
            mem_total_bytes: 1 << 30,
            mem_available_bytes: 1 << 29,
            ..NodeSample::default()
        }
    }
}
