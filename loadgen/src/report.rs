//! `Report`: the one serde schema of a run's results (config, machine, git
//! sha, counts, throughput, HDR percentiles, per-second timeline), written
//! as JSON and rendered as the final table. Every report names its
//! durability, batch size and event size, and always carries errors and
//! timeouts, zero or not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::LoadgenError;
use crate::histogram::Percentiles;
use crate::stats::Counts;

/// Bumped on any incompatible change of `Report`.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// `surge-loadgen <version>`.
    pub tool: String,
    /// When the run's clock started (connections made, the stream there):
    /// the origin of the schedule, the timeline and a replayed trace.
    pub started_at_unix_ms: u64,
    /// `git rev-parse HEAD` where loadgen ran, or "unknown".
    pub git_sha: String,
    pub machine: Machine,
    pub config: RunConfig,
    /// What the broker says about the stream.
    pub stream: StreamFacts,
    pub batch_bytes: u32,
    pub linger_ms: u32,
    pub event_size: String,
    pub event_bytes_mean: f64,
    pub warmup_s: f64,
    /// Measured time: from the end of the warmup to the last send.
    pub duration_s: f64,
    /// Events intended after the warmup.
    pub counts: Counts,
    pub warmup_counts: Counts,
    /// Failed polls of the consumers.
    pub consumer_errors: u64,
    pub throughput: Throughput,
    /// "intended send time" (open loop, trace) or "actual send time".
    pub produce_latency_from: String,
    pub produce_latency: Percentiles,
    /// From the intended send time to the consumer; count 0 without consumers.
    pub e2e_latency: Percentiles,
    /// Distinct error messages and how often each was seen.
    pub error_samples: BTreeMap<String, u64>,
    pub timeline: Vec<TimelineSecond>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFacts {
    pub name: String,
    pub shards: u32,
    pub durability: String,
}

/// Acknowledged events per second of measured time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub events_per_s: f64,
    /// 10^6 bytes of event values per second.
    pub mb_per_s: f64,
    /// The rate asked for (open loop, trace mean), if any.
    pub target_events_per_s: Option<f64>,
}

/// One second of the run, warmup included (and marked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineSecond {
    /// Seconds since the start at the end of this interval.
    pub second: u64,
    pub warmup: bool,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub consumed: u64,
    pub acked_per_s: f64,
    pub mb_per_s: f64,
    pub produce_p50_us: u64,
    pub produce_p99_us: u64,
    pub produce_max_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub cpus: u32,
    pub cpu_model: String,
    pub kernel: String,
    pub os: String,
}

impl Machine {
    /// This machine, from `/proc` where available.
    pub fn detect() -> Machine {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            cpus: std::thread::available_parallelism()
                .map_or(0, |cpus| u32::try_from(cpus.get()).unwrap_or(u32::MAX)),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease"),
            os: std::env::consts::OS.to_owned(),
        }
    }
}

/// The commit loadgen runs from, or "unknown" outside a git checkout.
pub fn git_sha() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|sha| sha.trim().to_owned())
        .filter(|sha| !sha.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Report {
    pub fn to_json(&self) -> Result<String, LoadgenError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn from_json(text: &str) -> Result<Report, LoadgenError> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn write_json(&self, path: &Path) -> Result<(), LoadgenError> {
        let json = self.to_json()?;
        std::fs::write(path, json).map_err(|error| LoadgenError::io(path, error))
    }

    /// The final table for stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let counts = &self.counts;
        let target = self.throughput.target_events_per_s.map_or_else(
            || "none (closed loop)".to_owned(),
            |rate| format!("{rate:.0} events/s"),
        );
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.config.scenario.name().to_owned()),
            ("durability", self.stream.durability.clone()),
            (
                "stream",
                format!("{} ({} shards)", self.stream.name, self.stream.shards),
            ),
            (
                "batch / linger",
                format!("{} B / {} ms", self.batch_bytes, self.linger_ms),
            ),
            ("event size", self.event_size.clone()),
            (
                "producers / conns / consumers",
                format!(
                    "{} / {} / {}",
                    self.config.producers, self.config.connections, self.config.consumers
                ),
            ),
            (
                "warmup / measured",
                format!("{:.1} s / {:.1} s", self.warmup_s, self.duration_s),
            ),
            ("target rate", target),
            (
                "sent / acked",
                format!("{} / {}", counts.sent, counts.acked),
            ),
            (
                "errors / timeouts",
                format!("{} / {}", counts.errors, counts.timeouts),
            ),
            (
                "late sends / not sent",
                format!("{} / {}", counts.late_sends, counts.not_sent),
            ),
            (
                "consumed / consumer errors",
                format!("{} / {}", counts.consumed, self.consumer_errors),
            ),
            (
                "throughput",
                format!(
                    "{:.0} events/s, {:.1} MB/s",
                    self.throughput.events_per_s, self.throughput.mb_per_s
                ),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<40} {value}");
        }
        let _ = writeln!(
            out,
            "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (us)", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let produce_name = format!("produce-ack (from {})", self.produce_latency_from);
        for (name, latency) in [
            (produce_name.as_str(), &self.produce_latency),
            ("end-to-end", &self.e2e_latency),
        ] {
            if latency.count == 0 {
                let _ = writeln!(out, "{name:<40} no samples");
                continue;
            }
            let _ = writeln!(
                out,
                "{name:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                latency.p50_us,
                latency.p90_us,
                latency.p99_us,
                latency.p999_us,
                latency.p9999_us,
                latency.max_us
            );
        }
        for (message, seen) in &self.error_samples {
            let _ = writeln!(out, "error x{seen}: {message}");
        }
        out
    }
}
