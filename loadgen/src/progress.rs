//! The live view: once a second, take every recorder's interval, print one
//! line to stderr (rate, errors, timeouts, p99) and keep the second for the
//! report's timeline and the plot. One task, stopped by a token; the
//! timeline grows by one entry a second of a bounded run.

use std::io::Write as _;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::histogram::RunClock;
use crate::report::TimelineSecond;
use crate::stats::{Recorder, Window};

/// The running ticker; `stop` returns the timeline.
#[derive(Debug)]
pub struct Ticker {
    stop: CancellationToken,
    task: JoinHandle<Vec<TimelineSecond>>,
}

/// Where the ticker reads from and what it prints.
#[derive(Debug, Clone)]
pub struct TickerSources {
    pub producers: Vec<Recorder>,
    pub consumers: Vec<Recorder>,
    pub clock: RunClock,
    pub warmup_us: u64,
    /// Print the live line (off in tests).
    pub live: bool,
}

impl Ticker {
    pub fn spawn(sources: TickerSources) -> Ticker {
        let stop = CancellationToken::new();
        let task = tokio::spawn(tick(sources, stop.clone()));
        Ticker { stop, task }
    }

    /// Stops after a last (partial) second and returns the timeline.
    pub async fn stop(self) -> Vec<TimelineSecond> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn tick(sources: TickerSources, stop: CancellationToken) -> Vec<TimelineSecond> {
    let first = sources.clock.instant_at(1_000_000);
    let mut interval = tokio::time::interval_at(first.into(), Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timeline = Vec::new();
    let mut second = 0;
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = interval.tick() => false,
        };
        second += 1;
        let entry = collect(&sources, second);
        if sources.live {
            eprintln!("{}", line(&entry));
            let _ = std::io::stderr().flush();
        }
        timeline.push(entry);
        if stopping {
            return timeline;
        }
    }
}

/// Takes one interval from every recorder and summarizes it.
fn collect(sources: &TickerSources, second: u64) -> TimelineSecond {
    let mut produced = Window::default();
    for recorder in &sources.producers {
        produced.add(&recorder.take_interval());
    }
    let mut consumed = Window::default();
    for recorder in &sources.consumers {
        consumed.add(&recorder.take_interval());
    }
    let produce = produced.latency.percentiles();
    let e2e = consumed.latency.percentiles();
    let counts = produced.counts;
    TimelineSecond {
        second,
        warmup: second * 1_000_000 <= sources.warmup_us,
        sent: counts.sent,
        acked: counts.acked,
        errors: counts.errors + consumed.counts.errors,
        timeouts: counts.timeouts,
        consumed: consumed.counts.consumed,
        acked_per_s: counts.acked as f64,
        mb_per_s: counts.bytes_acked as f64 / 1e6,
        produce_p50_us: produce.p50_us,
        produce_p99_us: produce.p99_us,
        produce_max_us: produce.max_us,
        e2e_p50_us: e2e.p50_us,
        e2e_p99_us: e2e.p99_us,
    }
}

/// The live line of one second.
pub fn line(entry: &TimelineSecond) -> String {
    let phase = if entry.warmup { " warmup" } else { "" };
    let e2e = if entry.consumed > 0 {
        format!("  e2e p99 {}", micros(entry.e2e_p99_us))
    } else {
        String::new()
    };
    format!(
        "[{:>4}s{phase}] {:>9.0} ev/s {:>8.1} MB/s  errors {}  timeouts {}  p99 {}{e2e}",
        entry.second,
        entry.acked_per_s,
        entry.mb_per_s,
        entry.errors,
        entry.timeouts,
        micros(entry.produce_p99_us),
    )
}

/// `850 us`, `12.3 ms`, `1.20 s`.
pub fn micros(value_us: u64) -> String {
    match value_us {
        0..=9_999 => format!("{value_us} us"),
        10_000..=9_999_999 => format!("{:.1} ms", value_us as f64 / 1e3),
        _ => format!("{:.2} s", value_us as f64 / 1e6),
    }
}
