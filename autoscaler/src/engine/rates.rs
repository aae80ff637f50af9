//! Rates from two cumulative samples. Counters only grow, so a missed tick
//! loses nothing; a shard absent from the older sample was opened in
//! between and counts from zero; a counter that went backwards (the broker
//! restarted) gives no rate for that shard this time.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::{NodeRates, ShardRates, StreamRates};
use crate::metrics::{EventCounts, NodeSample, ShardCounters, StreamSample};

pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn share(counts: impl Iterator<Item = u64>) -> Vec<f64> {
    let counts: Vec<u64> = counts.collect();
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

fn shard_rates(
    now: &ShardCounters,
    before: Option<&ShardCounters>,
    seconds: f64,
) -> Option<ShardRates> {
    let zero = ShardCounters::default();
    let before = before.unwrap_or(&zero);
    let events = now.events.checked_sub(before.events)?;
    let bytes = now.bytes.checked_sub(before.bytes)?;
    let size_deltas = now
        .size_buckets
        .iter()
        .enumerate()
        .map(|(i, &c)| c.saturating_sub(before.size_buckets.get(i).copied().unwrap_or(0)));
    let type_deltas: Vec<(String, u64)> = now
        .types
        .iter()
        .map(|(name, count)| {
            let old = before
                .types
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, c)| *c);
            (name.clone(), count.saturating_sub(old))
        })
        .collect();
    let type_share = share(type_deltas.iter().map(|(_, c)| *c));
    Some(ShardRates {
        shard: now.shard,
        events_per_s: events as f64 / seconds,
        bytes_per_s: bytes as f64 / seconds,
        append_p99_us: now.append_p99_us,
        fsync_p99_us: now.fsync_p99_us,
        queue_depth: now.queue_depth,
        size_mix: share(size_deltas),
        type_mix: type_deltas
            .into_iter()
            .map(|(name, _)| name)
            .zip(type_share)
            .collect(),
    })
}

/// Rates between two samples of one stream; `None` when time did not
/// move forward.
pub fn stream_rates(now: &StreamSample, before: &StreamSample) -> Option<StreamRates> {
    let seconds = now.at.duration_since(before.at).ok()?.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let shards: Vec<ShardRates> = now
        .shards
        .iter()
        .filter_map(|shard| {
            let old = before.shards.iter().find(|s| s.shard == shard.shard);
            shard_rates(shard, old, seconds)
        })
        .collect();
    Some(StreamRates {
        stream: now.stream.clone(),
        at_ms: unix_ms(now.at),
        epoch: now.epoch,
        events_per_s: shards.iter().map(|s| s.events_per_s).sum(),
        bytes_per_s: shards.iter().map(|s| s.bytes_per_s).sum(),
        shards,
    })
}

/// Events per second between two counts of one stream, as `stream_rates`
/// counts them; `None` when time did not move forward.
pub fn events_per_s(now: &EventCounts, before: &EventCounts) -> Option<f64> {
    let seconds = now.at.duration_since(before.at).ok()?.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let events: u64 = now
        .shards
        .iter()
        .filter_map(|&(shard, events)| {
            let old = before
                .shards
                .iter()
                .find(|&&(id, _)| id == shard)
                .map_or(0, |&(_, old)| old);
            events.checked_sub(old)
        })
        .sum();
    Some(events as f64 / seconds)
}

pub fn node_rates(now: &NodeSample, before: &NodeSample, seconds: f64, at_ms: u64) -> NodeRates {
    let ratio = |num: u64, den: u64| {
        if den == 0 {
            0.0
        } else {
            (num as f64 / den as f64).clamp(0.0, 1.0)
        }
    };
    let per_s = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds.max(1e-3);
    NodeRates {
        at_ms,
        cpu_utilization: ratio(
            now.cpu_busy_ticks.saturating_sub(before.cpu_busy_ticks),
            now.cpu_total_ticks.saturating_sub(before.cpu_total_ticks),
        ),
        mem_utilization: ratio(
            now.mem_total_bytes.saturating_sub(now.mem_available_bytes),
            now.mem_total_bytes,
        ),
        net_rx_bytes_per_s: per_s(now.net_rx_bytes, before.net_rx_bytes),
        net_tx_bytes_per_s: per_s(now.net_tx_bytes, before.net_tx_bytes),
        disk_utilization: (per_s(now.disk_busy_ms, before.disk_busy_ms) / 1000.0).clamp(0.0, 1.0),
        disk_written_bytes_per_s: per_s(now.disk_written_bytes, before.disk_written_bytes),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn counters(shard: u32, events: u64, types: &[(&str, u64)]) -> ShardCounters {
        ShardCounters {
            shard,
            events,
            bytes: events * 100,
            size_buckets: vec![events, 0],
            types: types.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            ..ShardCounters::default()
        }
    }

    fn sample(at_s: u64, shards: Vec<ShardCounters>) -> StreamSample {
        StreamSample {
            stream: "s".into(),
            at: UNIX_EPOCH + Duration::from_secs(at_s),
            epoch: 1,
            shards,
        }
    }

    #[test]
    fn rates_from_counter_deltas() {
        let before = sample(
            100,
            vec![counters(1, 1000, &[("a", 1000)]), counters(2, 500, &[])],
        );
        let now = sample(
            110,
            vec![
                counters(1, 3000, &[("a", 1500), ("b", 1500)]),
                // Counter went back: the broker restarted; no rate.
                counters(2, 100, &[]),
                // Opened between the samples: counts from zero.
                counters(3, 400, &[]),
            ],
        );
        let rates = stream_rates(&now, &before).expect("time moved");
        assert_eq!(rates.shards.len(), 2);
        assert_eq!(rates.shards[0].events_per_s, 200.0);
        assert_eq!(rates.shards[0].bytes_per_s, 20_000.0);
        assert_eq!(
            rates.shards[0].type_mix,
            vec![("a".into(), 0.25), ("b".into(), 0.75)]
        );
        assert_eq!(rates.shards[1].events_per_s, 40.0);
        assert_eq!(rates.events_per_s, 240.0);
        assert_eq!(rates.at_ms, 110_000);
        assert!(stream_rates(&before, &now).is_none());
    }

    #[test]
    fn event_rates_count_like_sample_rates() {
        let counts = |at_s: u64, shards: &[(u32, u64)]| EventCounts {
            at: UNIX_EPOCH + Duration::from_secs(at_s),
            shards: shards.to_vec(),
        };
        let before = counts(100, &[(1, 1000), (2, 500)]);
        // Shard 2 went back (a restart): no rate; shard 3 is new: from zero.
        let now = counts(102, &[(1, 3000), (2, 100), (3, 400)]);
        assert_eq!(events_per_s(&now, &before), Some(1200.0));
        assert_eq!(events_per_s(&before, &now), None);
        assert_eq!(events_per_s(&now, &now), None);
    }

    #[test]
    fn node_utilisation() {
        let before = NodeSample {
            cpu_busy_ticks: 100,
            cpu_total_ticks: 1000,
            mem_total_bytes: 1000,
            mem_available_bytes: 250,
            disk_busy_ms: 0,
            ..NodeSample::default()
        };
        let now = NodeSample {
            cpu_busy_ticks: 400,
            cpu_total_ticks: 2000,
            disk_busy_ms: 5_000,
            net_rx_bytes: 10_000,
            ..before.clone()
        };
        let rates = node_rates(&now, &before, 10.0, 7);
        assert!((rates.cpu_utilization - 0.3).abs() < 1e-9);
        assert!((rates.mem_utilization - 0.75).abs() < 1e-9);
        assert!((rates.disk_utilization - 0.5).abs() < 1e-9);
        assert_eq!(rates.net_rx_bytes_per_s, 1000.0);
    }
}
