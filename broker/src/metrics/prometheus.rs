//! The broker's metrics in the Prometheus text exposition format (0.0.4):
//! a `# HELP` and `# TYPE` line per family, `surge_` names, counters ending
//! in `_total`, latency as histograms in seconds, labels `stream` and
//! `shard` (and `type` for the type mix), label values escaped.

use std::fmt::Write;

use surge_autoscaler::NodeSample;

use super::latency::{bucket_bound_us, LatencyHistogram, LATENCY_BUCKETS};
use crate::broker::Broker;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and newline.
pub fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One family with one sample per (labels, value) row.
fn rows(out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, f64)]) {
    family(out, name, kind, help);
    for (labels, value) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn histogram(out: &mut String, name: &str, help: &str, rows: &[(String, &LatencyHistogram)]) {
    family(out, name, "histogram", help);
    for (labels, histogram) in rows {
        let counts = histogram.snapshot();
        let mut cumulative = 0u64;
        for (index, count) in counts.iter().enumerate().take(LATENCY_BUCKETS - 1) {
            cumulative += count;
            let le = bucket_bound_us(index) as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += counts[LATENCY_BUCKETS - 1];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum_s = histogram.sum_us() as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum_s}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Appends the broker's own metrics (shards, streams, connections, node).
pub fn render(broker: &Broker, node: &NodeSample, out: &mut String) {
    let mut events = Vec::new();
    let mut bytes = Vec::new();
    let mut depth = Vec::new();
    let mut types = Vec::new();
    let mut epochs = Vec::new();
    let mut open = Vec::new();
    let streams = broker.streams.all();
    let views: Vec<_> = streams.iter().map(|stream| stream.view()).collect();
    let mut append_latency = Vec::new();
    let mut fsync_latency = Vec::new();
    for view in &views {
        let stream = escape(&view.meta.name);
        epochs.push((format!("stream=\"{stream}\""), view.meta.epoch as f64));
        let open_count = view
            .meta
            .shards
            .iter()
            .filter(|s| s.sealed_at.is_none())
            .count();
        open.push((format!("stream=\"{stream}\""), open_count as f64));
        let mut ids: Vec<u32> = view.shards.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let shard = &view.shards[&id];
            let labels = format!("stream=\"{stream}\",shard=\"{id}\"");
            let metrics = shard.metrics();
            events.push((labels.clone(), metrics.events() as f64));
            bytes.push((labels.clone(), metrics.bytes() as f64));
            depth.push((labels.clone(), shard.queue_depth() as f64));
            for (name, count) in metrics.types() {
                let typed = format!("{labels},type=\"{}\"", escape(&name));
                types.push((typed, count as f64));
            }
            append_latency.push((labels.clone(), &metrics.append_latency));
            fsync_latency.push((labels, &metrics.fsync_latency));
        }
    }
    rows(
        out,
        "surge_shard_appended_events_total",
        "counter",
        "Events stored in the shard since the broker started.",
        &events,
    );
    rows(
        out,
        "surge_shard_appended_bytes_total",
        "counter",
        "Batch bytes stored in the shard since the broker started.",
        &bytes,
    );
    rows(
        out,
        "surge_shard_type_events_total",
        "counter",
        "Events by type header, sampled per batch (\"\": untyped or past the type table).",
        &types,
    );
    rows(
        out,
        "surge_shard_queue_depth",
        "gauge",
        "Appends waiting for the shard's owner thread.",
        &depth,
    );
    histogram(
        out,
        "surge_shard_append_latency_seconds",
        "Enqueue to acknowledgement of one append.",
        &append_latency,
    );
    histogram(
        out,
        "surge_shard_fsync_latency_seconds",
        "Write plus fdatasync of one group commit.",
        &fsync_latency,
    );
    rows(
        out,
        "surge_stream_epoch",
        "gauge",
        "The stream's routing epoch (one per topology change).",
        &epochs,
    );
    rows(
        out,
        "surge_stream_open_shards",
        "gauge",
        "Shards of the stream taking appends.",
        &open,
    );
    let single = |value: u64| vec![(String::new(), value as f64)];
    rows(
        out,
        "surge_topology_changes_total",
        "counter",
        "Splits, merges and moves committed since the broker started.",
        &single(broker.streams.changes_committed()),
    );
    rows(
        out,
        "surge_connections",
        "gauge",
        "Client connections open now.",
        &single(broker.metrics.connections_open()),
    );
    rows(
        out,
        "surge_connections_accepted_total",
        "counter",
        "Client connections accepted since the broker started.",
        &single(broker.metrics.connections_accepted()),
    );
    rows(
        out,
        "surge_node_cpu_busy_ticks_total",
        "counter",
        "CPU ticks spent busy, all cores (/proc/stat).",
        &single(node.cpu_busy_ticks),
    );
    rows(
        out,
        "surge_node_cpu_ticks_total",
        "counter",
        "CPU ticks, all cores (/proc/stat).",
        &single(node.cpu_total_ticks),
    );
    rows(
        out,
        "surge_node_memory_total_bytes",
        "gauge",
        "Memory in the node (/proc/meminfo).",
        &single(node.mem_total_bytes),
    );
    rows(
        out,
        "surge_node_memory_available_bytes",
        "gauge",
        "Memory available for new work (/proc/meminfo).",
        &single(node.mem_available_bytes),
    );
    rows(
        out,
        "surge_node_network_received_bytes_total",
        "counter",
        "Bytes received on every interface but loopback.",
        &single(node.net_rx_bytes),
    );
    rows(
        out,
        "surge_node_network_sent_bytes_total",
        "counter",
        "Bytes sent on every interface but loopback.",
        &single(node.net_tx_bytes),
    );
    rows(
        out,
        "surge_node_disk_busy_milliseconds_total",
        "counter",
        "Time the data disk spent doing I/O (/proc/diskstats).",
        &single(node.disk_busy_ms),
    );
    rows(
        out,
        "surge_node_disk_written_bytes_total",
        "counter",
        "Bytes written to the data disk (/proc/diskstats).",
        &single(node.disk_written_bytes),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn histograms_are_cumulative_and_end_in_inf() {
        let latency = LatencyHistogram::default();
        latency.record(std::time::Duration::from_micros(3));
        latency.record(std::time::Duration::from_secs(60));
        let mut out = String::new();
        histogram(
            &mut out,
            "surge_x_seconds",
            "help",
            &[("shard=\"1\"".into(), &latency)],
        );
        assert!(
            out.contains("surge_x_seconds_bucket{shard=\"1\",le=\"0.000004\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("surge_x_seconds_bucket{shard=\"1\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("surge_x_seconds_count{shard=\"1\"} 2\n"),
            "{out}"
        );
        assert!(out.starts_with("# HELP surge_x_seconds help\n# TYPE surge_x_seconds histogram\n"));
    }
}
