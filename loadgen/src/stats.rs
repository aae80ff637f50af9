//! `Recorder`: the counters and latency histograms of one producer or one
//! consumer. Its own task records into it on every event (an uncontended
//! lock); the progress ticker takes the per-second interval once a second;
//! the runner merges the measured windows at the end. Events intended before
//! the warmup ends are counted apart and never reach the histograms.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use surge_client::ClientError;

use crate::histogram::LatencyHistogram;

/// A send started this long after its intended time counts as late.
pub const LATE_SEND_US: u64 = 1_000;
/// Distinct error messages kept as samples; the rest count as "other".
const ERROR_SAMPLES_MAX: usize = 8;

/// What happened to events, never dropped from a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `send` accepted the event.
    pub sent: u64,
    pub acked: u64,
    /// Failed sends and failed acks, other than timeouts.
    pub errors: u64,
    /// Acks that reported a timeout or never came within the drain time.
    pub timeouts: u64,
    /// Value bytes of acknowledged events.
    pub bytes_acked: u64,
    /// Sends that started more than `LATE_SEND_US` after their intended time.
    pub late_sends: u64,
    /// Events the schedule asked for that were never sent: the run ended
    /// while the producer was behind.
    pub not_sent: u64,
    /// Events read by consumers (with a `sent-us` header).
    pub consumed: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.bytes_acked += other.bytes_acked;
        self.late_sends += other.late_sends;
        self.not_sent += other.not_sent;
        self.consumed += other.consumed;
    }
}

/// Counts and one latency histogram: produce-ack latency for a producer,
/// end-to-end latency for a consumer.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub counts: Counts,
    pub latency: LatencyHistogram,
}

impl Window {
    pub fn add(&mut self, other: &Window) {
        self.counts.add(&other.counts);
        self.latency.add(&other.latency);
    }
}

#[derive(Debug, Default)]
struct RecorderState {
    measured: Window,
    warmup: Counts,
    interval: Window,
    error_samples: BTreeMap<String, u64>,
}

impl RecorderState {
    /// The counts an event belongs to: measured, or warmup.
    fn counts(&mut self, measured: bool) -> &mut Counts {
        if measured {
            &mut self.measured.counts
        } else {
            &mut self.warmup
        }
    }
}

/// The statistics of one producer or consumer; clones share them.
#[derive(Debug, Clone)]
pub struct Recorder {
    state: Arc<Mutex<RecorderState>>,
    warmup_us: u64,
}

impl Recorder {
    pub fn new(warmup_us: u64) -> Recorder {
        Recorder {
            state: Arc::default(),
            warmup_us,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RecorderState> {
        // A panicking recorder thread leaves plain counters behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an event intended then counts (it is past the warmup).
    pub fn is_measured(&self, intended_us: u64) -> bool {
        intended_us >= self.warmup_us
    }

    pub fn sent(&self, intended_us: u64, actual_us: u64) {
        let late = actual_us.saturating_sub(intended_us) > LATE_SEND_US;
        let measured = self.is_measured(intended_us);
        let mut state = self.lock();
        let counts = state.counts(measured);
        counts.sent += 1;
        counts.late_sends += u64::from(late);
        state.interval.counts.sent += 1;
        state.interval.counts.late_sends += u64::from(late);
    }

    /// An ack for an event intended at `intended_us` arrived at `done_us`.
    pub fn acked(&self, intended_us: u64, done_us: u64, bytes: u64) {
        let measured = self.is_measured(intended_us);
        let mut state = self.lock();
        state.interval.counts.acked += 1;
        state.interval.counts.bytes_acked += bytes;
        state.interval.latency.record_since(intended_us, done_us);
        if measured {
            state.measured.counts.acked += 1;
            state.measured.counts.bytes_acked += bytes;
            state.measured.latency.record_since(intended_us, done_us);
        } else {
            state.warmup.acked += 1;
            state.warmup.bytes_acked += bytes;
        }
    }

    /// A send or an ack failed.
    pub fn failed(&self, intended_us: u64, error: &ClientError) {
        let timeout = matches!(error, ClientError::Timeout { .. });
        let measured = self.is_measured(intended_us);
        let mut state = self.lock();
        let counts = state.counts(measured);
        if timeout {
            counts.timeouts += 1;
        } else {
            counts.errors += 1;
        }
        let interval = &mut state.interval.counts;
        if timeout {
            interval.timeouts += 1;
        } else {
            interval.errors += 1;
        }
        let message = error.to_string();
        let samples = &mut state.error_samples;
        if samples.len() < ERROR_SAMPLES_MAX || samples.contains_key(&message) {
            *samples.entry(message).or_default() += 1;
        } else {
            *samples.entry("other".to_owned()).or_default() += 1;
        }
    }

    /// A send that waited for the producer's budget past the give-up time.
    pub fn timed_out(&self, intended_us: u64) {
        let measured = self.is_measured(intended_us);
        let mut state = self.lock();
        state.counts(measured).timeouts += 1;
        state.interval.counts.timeouts += 1;
    }

    /// `events` acks still missing when the drain time ran out, intended
    /// after the warmup (`measured`) or in it.
    pub fn timed_out_unacked(&self, measured: bool, events: u64) {
        let mut state = self.lock();
        state.counts(measured).timeouts += events;
        state.interval.counts.timeouts += events;
    }

    /// Scheduled events the run ended before sending.
    pub fn not_sent(&self, events: u64) {
        self.lock().measured.counts.not_sent += events;
    }

    /// A consumer read an event intended at `intended_us` at `now_us`.
    pub fn consumed(&self, intended_us: u64, now_us: u64) {
        let measured = self.is_measured(intended_us);
        let mut state = self.lock();
        state.interval.counts.consumed += 1;
        state.interval.latency.record_since(intended_us, now_us);
        if measured {
            state.measured.counts.consumed += 1;
            state.measured.latency.record_since(intended_us, now_us);
        } else {
            state.warmup.consumed += 1;
        }
    }

    /// The interval since the last call, leaving a fresh one.
    pub fn take_interval(&self) -> Window {
        std::mem::take(&mut self.lock().interval)
    }

    /// Acked and consumed so far, warmup included.
    pub fn progress(&self) -> (u64, u64) {
        let state = self.lock();
        let acked = state.measured.counts.acked + state.warmup.acked;
        let consumed = state.measured.counts.consumed + state.warmup.consumed;
        (acked, consumed)
    }

    /// The measured window, the warmup counts and the error samples.
    pub fn summary(&self) -> (Window, Counts, BTreeMap<String, u64>) {
        let state = self.lock();
        (
            state.measured.clone(),
            state.warmup,
            state.error_samples.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_events_stay_out_of_the_histogram() {
        let recorder = Recorder::new(1_000);
        recorder.sent(500, 500);
        recorder.acked(500, 900, 10);
        recorder.sent(1_500, 4_000);
        recorder.acked(1_500, 5_000, 10);
        let (measured, warmup, _) = recorder.summary();
        assert_eq!(measured.counts.acked, 1);
        assert_eq!(measured.counts.late_sends, 1);
        assert_eq!(measured.latency.len(), 1);
        assert_eq!(warmup.acked, 1);
        assert_eq!(recorder.take_interval().counts.acked, 2);
        assert_eq!(recorder.take_interval().counts.acked, 0);
    }

    #[test]
    fn error_samples_are_bounded() {
        let recorder = Recorder::new(0);
        for index in 0..20 {
            let error = ClientError::Protocol(format!("bad {index}"));
            recorder.failed(0, &error);
        }
        recorder.failed(0, &ClientError::Timeout { after_ms: 5 });
        let (measured, _, samples) = recorder.summary();
        assert_eq!(measured.counts.errors, 20);
        assert_eq!(measured.counts.timeouts, 1);
        assert!(samples.len() <= ERROR_SAMPLES_MAX + 1);
        assert_eq!(samples.values().sum::<u64>(), 21);
    }
}
