//! Calibration: how many events/s a shard sustains, at a durability,
//! event size and batching, for the autoscaler's
//! `autoscaler.capacity_per_shard_eps`. One max-throughput run on a fresh
//! stream of N shards (one by default; as many as will share the broker
//! gives what each sustains beside the others) finds the ceiling;
//! open-loop runs then step down from it until one keeps every event
//! acknowledged, keeps up with its rate and keeps its p99 (from the
//! intended send time) under the bound. That rate over N is a shard's
//! capacity: the autoscaler's headroom comes on top of it.

use serde::{Deserialize, Serialize};
use surge_client::{Client, ClientConfig};

use crate::config::{CreateStream, RunConfig, Scenario};
use crate::error::LoadgenError;
use crate::report::Report;
use crate::run;

/// Open-loop rates tried, as fractions of the measured maximum, in order.
pub const FRACTIONS: [f64; 5] = [0.9, 0.8, 0.7, 0.6, 0.5];
/// An open-loop step keeps up when it acknowledges this much of its rate.
const KEEPS_UP: f64 = 0.98;

/// One open-loop step and whether it stayed within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub asked_per_s: f64,
    pub acked_per_s: f64,
    pub p99_us: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub not_sent: u64,
    pub within: bool,
}

impl Step {
    /// Judges a step's report against the p99 bound.
    pub fn of(asked_per_s: f64, report: &Report, p99_max_us: u64) -> Step {
        let counts = &report.counts;
        let acked_per_s = report.throughput.events_per_s;
        let p99_us = report.produce_latency.p99_us;
        Step {
            asked_per_s,
            acked_per_s,
            p99_us,
            errors: counts.errors,
            timeouts: counts.timeouts,
            not_sent: counts.not_sent,
            within: counts.errors == 0
                && counts.timeouts == 0
                && acked_per_s >= asked_per_s * KEEPS_UP
                && p99_us <= p99_max_us,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub shards: u32,
    pub durability: String,
    pub event_size: String,
    pub batch_bytes: u32,
    pub linger_ms: u32,
    pub p99_max_us: u64,
    /// Closed loop, all shards.
    pub max_per_s: f64,
    pub steps: Vec<Step>,
    /// The highest rate within the bound over the shard count; `None` when
    /// even the lowest step was not within it.
    pub capacity_per_shard_per_s: Option<f64>,
}

impl Calibration {
    /// What an operator reads: the runs and the setting to use.
    pub fn table(&self) -> String {
        let mut out = format!(
            "calibration: {} shard(s), durability {}, event size {}, batch {} B, linger {} ms, p99 bound {} us\n\
             max throughput (closed loop): {:.0} events/s\n\
             {:>12} {:>12} {:>10} {:>7} {:>9} {:>9}  within\n",
            self.shards,
            self.durability,
            self.event_size,
            self.batch_bytes,
            self.linger_ms,
            self.p99_max_us,
            self.max_per_s,
            "asked/s",
            "acked/s",
            "p99 us",
            "errors",
            "timeouts",
            "not sent",
        );
        for step in &self.steps {
            out.push_str(&format!(
                "{:>12.0} {:>12.0} {:>10} {:>7} {:>9} {:>9}  {}\n",
                step.asked_per_s,
                step.acked_per_s,
                step.p99_us,
                step.errors,
                step.timeouts,
                step.not_sent,
                if step.within { "yes" } else { "no" },
            ));
        }
        match self.capacity_per_shard_per_s {
            Some(capacity) => out.push_str(&format!(
                "capacity per shard: {capacity:.0} events/s\n\
                 set it with: surge serve --set autoscaler.capacity_per_shard_eps={capacity:.0}\n"
            )),
            None => out.push_str(&format!(
                "no step kept within the bound: the stream sustains less than {:.0}% of its maximum with a p99 under {} us\n",
                FRACTIONS[FRACTIONS.len() - 1] * 100.0,
                self.p99_max_us
            )),
        }
        out
    }
}

/// Calibrates against the broker at `addr` with `base`'s workload,
/// batching, durability and shard count (one without `create_stream`), on
/// a stream named `base.stream`, which must not exist (it is created and
/// deleted here). Each run lasts `base.duration_ms` after
/// `base.warmup_ms`.
pub async fn calibrate(
    base: &RunConfig,
    addr: &str,
    p99_max_us: u64,
    live: bool,
) -> Result<Calibration, LoadgenError> {
    let create = base.create_stream.unwrap_or(CreateStream {
        shards: 1,
        durability: crate::config::DurabilityChoice::Fsync,
    });
    let admin = Client::connect(ClientConfig {
        addr: addr.to_owned(),
        client_id: "surge-loadgen-calibrate".to_owned(),
        ..ClientConfig::default()
    })
    .await?;
    if admin.describe_stream(&base.stream).await.is_ok() {
        return Err(LoadgenError::invalid(
            "stream",
            &base.stream,
            "exists; calibration needs a fresh stream (give another --stream)",
        ));
    }
    let runs = async {
        let first = RunConfig {
            create_stream: Some(create),
            consumers: 0,
            ..base.clone()
        };
        let max = run::run(&first, addr, live).await?;
        let max_per_s = max.throughput.events_per_s;
        let mut steps = Vec::new();
        for fraction in FRACTIONS {
            let rate = (max_per_s * fraction).floor().max(1.0);
            let config = RunConfig {
                scenario: Scenario::OpenLoop { rate },
                create_stream: None,
                consumers: 0,
                ..base.clone()
            };
            let step = Step::of(rate, &run::run(&config, addr, live).await?, p99_max_us);
            steps.push(step);
            if step.within {
                break;
            }
        }
        Ok::<_, LoadgenError>(Calibration {
            shards: create.shards,
            durability: create.durability.name().to_owned(),
            event_size: max.event_size.clone(),
            batch_bytes: base.batch_bytes,
            linger_ms: base.linger_ms,
            p99_max_us,
            max_per_s,
            capacity_per_shard_per_s: capacity(&steps)
                .map(|rate| rate / f64::from(create.shards.max(1))),
            steps,
        })
    };
    let calibration = runs.await;
    // The stream was this calibration's own, whatever became of the runs.
    let deleted = admin.delete_stream(&base.stream).await;
    admin.close().await;
    let calibration = calibration?;
    deleted?;
    Ok(calibration)
}

/// The highest asked rate among the steps within the bound.
pub fn capacity(steps: &[Step]) -> Option<f64> {
    steps
        .iter()
        .filter(|step| step.within)
        .map(|step| step.asked_per_s)
        .max_by(f64::total_cmp)
}
