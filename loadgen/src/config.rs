//! `RunConfig`: everything that defines one run, as plain serde data. It is
//! copied whole into the report, so a result always says how it was made.
//! Also the parsers for the flag syntaxes (durations, compress factors) and
//! the limits every count is checked against.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::LoadgenError;
use crate::workload::WorkloadConfig;

pub const PRODUCERS_MAX: u32 = 256;
pub const CONNECTIONS_MAX: u32 = 256;
pub const CONSUMERS_MAX: u32 = 64;
pub const SHARDS_MAX: u32 = 4096;
/// One week: every run is bounded, this bounds the bound.
pub const DURATION_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
pub const RATE_MAX: f64 = 50_000_000.0;
pub const IN_FLIGHT_MAX: u32 = 1 << 20;
/// Run length when neither `--duration` nor a trace says otherwise.
pub const DURATION_DEFAULT: Duration = Duration::from_secs(10);

/// What a run does and how much of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `host:port`, or "spawned" when loadgen started the broker itself.
    pub broker: String,
    pub stream: String,
    /// Create the stream first (an existing stream of that name is reused).
    pub create_stream: Option<CreateStream>,
    pub producers: u32,
    /// Connections, shared round-robin. Must be at least `producers`:
    /// surge-client gives every producer on one connection the connection's
    /// producer id, so two producers sharing one would collide in the
    /// broker's idempotence sequences (OutOfOrderSequence).
    pub connections: u32,
    /// Consumers measuring end-to-end latency; 0 measures none.
    pub consumers: u32,
    pub workload: WorkloadConfig,
    /// Producer target batch size (capped by the broker's limit).
    pub batch_bytes: u32,
    pub linger_ms: u32,
    /// Producer batches in flight per shard (`max_in_flight_per_shard`);
    /// reports written before it existed ran with 1.
    #[serde(default = "one")]
    pub batches_in_flight: u32,
    pub scenario: Scenario,
    /// Measured time, after the warmup.
    pub duration_ms: u64,
    /// Stop after this many events in all (warmup included), if sooner.
    pub count: Option<u64>,
    /// Time at the start excluded from the statistics.
    pub warmup_ms: u64,
    /// How long to wait for outstanding acks and consumed events after the
    /// last send; what is still missing then counts as timed out.
    pub drain_timeout_ms: u64,
}

/// What `batches_in_flight` reads as when a report predates it.
fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateStream {
    pub shards: u32,
    pub durability: DurabilityChoice,
}

/// Per-stream durability as the broker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityChoice {
    Fsync,
    Write,
}

impl DurabilityChoice {
    pub fn parse(text: &str) -> Result<DurabilityChoice, LoadgenError> {
        match text {
            "fsync" => Ok(DurabilityChoice::Fsync),
            "write" => Ok(DurabilityChoice::Write),
            _ => Err(LoadgenError::invalid(
                "--durability",
                text,
                "expected fsync or write",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DurabilityChoice::Fsync => "fsync",
            DurabilityChoice::Write => "write",
        }
    }
}

/// The load shape; one file under `scenarios/` each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// Fixed rate over all producers, latency from the intended send time.
    OpenLoop {
        rate: f64,
    },
    /// Closed loop, at most `in_flight` unacknowledged events per producer.
    MaxThroughput {
        in_flight: u32,
    },
    TraceReplay(TraceConfig),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::OpenLoop { .. } => "open_loop",
            Scenario::MaxThroughput { .. } => "max_throughput",
            Scenario::TraceReplay(_) => "trace_replay",
        }
    }
}

/// A `timestamp,value` CSV replayed as a rate over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceConfig {
    pub path: PathBuf,
    /// Trace seconds per real second (`86400:600` is 144).
    pub compress: f64,
    pub scale: TraceScale,
}

/// How a trace value becomes events/s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceScale {
    /// Events/s per unit of the trace's value.
    PerUnit { events_per_s: f64 },
    /// The trace's largest value becomes this rate.
    PeakRate { events_per_s: f64 },
}

impl RunConfig {
    /// Checks every count against its limit and the flags against each
    /// other.
    pub fn validate(&self) -> Result<(), LoadgenError> {
        check_range("--producers", self.producers, 1, PRODUCERS_MAX)?;
        check_range("--connections", self.connections, 1, CONNECTIONS_MAX)?;
        check_range("--consumers", self.consumers, 0, CONSUMERS_MAX)?;
        if let Some(create) = &self.create_stream {
            check_range("--shards", create.shards, 1, SHARDS_MAX)?;
        }
        if self.duration_ms == 0 || self.duration_ms > DURATION_MS_MAX {
            let value = self.duration_ms.to_string();
            return Err(LoadgenError::invalid(
                "--duration",
                &value,
                "must be above zero and at most a week",
            ));
        }
        if self.warmup_ms > DURATION_MS_MAX {
            let value = self.warmup_ms.to_string();
            return Err(LoadgenError::invalid("--warmup", &value, "at most a week"));
        }
        if self.count == Some(0) {
            return Err(LoadgenError::invalid("--count", "0", "must be above zero"));
        }
        self.workload.validate()?;
        match &self.scenario {
            Scenario::OpenLoop { rate } => check_rate("--rate", *rate),
            Scenario::MaxThroughput { in_flight } => {
                check_range("--in-flight", *in_flight, 1, IN_FLIGHT_MAX)
            }
            Scenario::TraceReplay(trace) => trace.validate(),
        }
    }

    /// Warmup plus measured time: when the senders stop.
    pub fn run_ms(&self) -> u64 {
        self.warmup_ms + self.duration_ms
    }
}

impl TraceConfig {
    fn validate(&self) -> Result<(), LoadgenError> {
        if !(self.compress.is_finite() && self.compress > 0.0) {
            let value = self.compress.to_string();
            return Err(LoadgenError::invalid(
                "--compress",
                &value,
                "must be a positive factor",
            ));
        }
        let rate = match self.scale {
            TraceScale::PerUnit { events_per_s } | TraceScale::PeakRate { events_per_s } => {
                events_per_s
            }
        };
        check_rate("--scale/--peak-rate", rate)
    }
}

fn check_range(what: &'static str, value: u32, min: u32, max: u32) -> Result<(), LoadgenError> {
    if value < min || value > max {
        return Err(LoadgenError::invalid(
            what,
            &value.to_string(),
            "out of range",
        ));
    }
    Ok(())
}

fn check_rate(what: &'static str, rate: f64) -> Result<(), LoadgenError> {
    if !(rate.is_finite() && rate > 0.0 && rate <= RATE_MAX) {
        return Err(LoadgenError::invalid(
            what,
            &rate.to_string(),
            "must be positive and at most 50M events/s",
        ));
    }
    Ok(())
}

/// `10s`, `500ms`, `2m`, `1h`, `250us`, or plain seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, LoadgenError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| LoadgenError::invalid("duration", text, "expected e.g. 10s or 500ms"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(LoadgenError::invalid("duration", text, "unknown unit")),
    };
    let seconds = number * seconds_per_unit;
    if !(seconds.is_finite() && seconds >= 0.0 && seconds <= DURATION_MS_MAX as f64 / 1e3) {
        return Err(LoadgenError::invalid("duration", text, "out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `86400:600` (trace seconds : real seconds, one day in ten minutes), or a
/// plain factor (`144`). Both sides accept duration syntax (`1d:10m`).
pub fn parse_compress(text: &str) -> Result<f64, LoadgenError> {
    let factor = match text.split_once(':') {
        Some((trace, real)) => {
            let trace = parse_duration(trace)?.as_secs_f64();
            let real = parse_duration(real)?.as_secs_f64();
            if real <= 0.0 {
                return Err(LoadgenError::invalid(
                    "--compress",
                    text,
                    "real time is zero",
                ));
            }
            trace / real
        }
        None => text
            .trim()
            .parse::<f64>()
            .map_err(|_| LoadgenError::invalid("--compress", text, "expected 86400:600 or 144"))?,
    };
    if !(factor.is_finite() && factor > 0.0) {
        return Err(LoadgenError::invalid(
            "--compress",
            text,
            "must be positive",
        ));
    }
    Ok(factor)
}

/// Milliseconds of a duration, saturated.
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn compress_parses_ratio_and_factor() {
        assert_eq!(parse_compress("86400:600").unwrap(), 144.0);
        assert_eq!(parse_compress("1d:10m").unwrap(), 144.0);
        assert_eq!(parse_compress("60").unwrap(), 60.0);
        assert!(parse_compress("1:0").is_err());
        assert!(parse_compress("-3").is_err());
    }
}
