//! Open loop at a fixed rate: every event has an intended send time from
//! the schedule, each producer's share is paced on its own thread (tokio's
//! timer ticks in milliseconds; a thread sleeps to tens of microseconds,
//! with no timer slack: `precise_sleeps`), and latency is measured from
//! the intended time. A producer that falls behind keeps sending without
//! re-planning (its lateness is latency and counts as `late_sends`); what
//! the schedule still wanted when the run ended counts as `not_sent`.
//! Trace replay reuses `drive_paced`.

use std::time::Duration;

use tokio::runtime::Handle;

use crate::histogram::LatencyHistogram;
use crate::producer::{count_share, Sender};
use crate::schedule::{RateSchedule, ScheduleIter};
use crate::workload::{EventFactory, WorkloadConfig};

/// The schedule of an open-loop run: `rate` events/s until `run_us`.
pub fn schedule(rate: f64, run_us: u64) -> RateSchedule {
    RateSchedule::constant(rate, run_us)
}

/// Paces every sender along its share of `schedule`, each on a blocking
/// thread, until the schedule ends or `count` events are sent.
pub async fn drive_paced(
    senders: Vec<Sender>,
    schedule: &RateSchedule,
    workload: &WorkloadConfig,
    count: Option<u64>,
) {
    let producers = u32::try_from(senders.len()).expect("producers are bounded");
    let handle = Handle::current();
    let mut threads = Vec::with_capacity(senders.len());
    for sender in senders {
        let pacer = Pacer {
            times: schedule.share(sender.index, producers),
            limit: count_share(count, sender.index, producers),
            factory: EventFactory::new(workload, sender.index),
            end_us: schedule.end_us(),
            sender,
        };
        let handle = handle.clone();
        threads.push(tokio::task::spawn_blocking(move || pacer.run(&handle)));
    }
    for thread in threads {
        if let Err(error) = thread.await {
            eprintln!("surge-loadgen: warning: pacing thread failed: {error}");
        }
    }
}

/// One producer's share of a schedule.
#[derive(Debug)]
struct Pacer {
    sender: Sender,
    times: ScheduleIter,
    limit: u64,
    factory: EventFactory,
    end_us: u64,
}

impl Pacer {
    fn run(mut self, handle: &Handle) {
        precise_sleeps();
        let clock = self.sender.clock;
        let mut sent = 0;
        while sent < self.limit {
            let Some(intended_us) = self.times.next() else {
                return;
            };
            let now_us = clock.now_us();
            if now_us >= self.end_us {
                // Behind when the run ended: say how far, never hide it.
                let left = self.limit - sent - 1;
                let later = self.times.by_ref().take_while(|at| *at < self.end_us);
                let missed = 1 + later
                    .take(usize::try_from(left).unwrap_or(usize::MAX))
                    .count();
                self.sender.recorder.not_sent(missed as u64);
                return;
            }
            if intended_us > now_us {
                std::thread::sleep(Duration::from_micros(intended_us - now_us));
            }
            handle.block_on(self.sender.send(&mut self.factory, intended_us));
            sent += 1;
        }
    }
}

/// Lets this thread's sleeps end when asked. Linux lets a sleep run up to
/// the thread's timer slack (50 µs by default) past its end, to batch
/// wake-ups; every microsecond of it would count as the broker's latency,
/// since latency runs from the intended send time. Measured on the 2-core
/// development VM: a 500 µs sleep overshot by a median of 84 µs with the
/// default slack and 34 µs with 1 ns.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Latencies of a fixed-rate run against a simulated broker that acks
/// `service_us` after a send, except that a send inside `stall_us` is acked
/// only at its end. The sender waits for each ack before the next send (as
/// a real one waits on backpressure when its window is full). Returns the
/// latencies measured from the intended time (what loadgen records) and
/// from the actual send (what a coordinated-omission-blind tool records):
/// the first sees every event the stall delayed, the second only one.
pub fn simulate_stall(
    rate: f64,
    run_us: u64,
    service_us: u64,
    stall_us: (u64, u64),
) -> (LatencyHistogram, LatencyHistogram) {
    let mut from_intended = LatencyHistogram::new();
    let mut from_sent = LatencyHistogram::new();
    let mut sender_free_us = 0;
    for intended_us in schedule(rate, run_us).share(0, 1) {
        let sent_us = intended_us.max(sender_free_us);
        let acked_us = if (stall_us.0..stall_us.1).contains(&sent_us) {
            stall_us.1 + service_us
        } else {
            sent_us + service_us
        };
        sender_free_us = acked_us;
        from_intended.record_since(intended_us, acked_us);
        from_sent.record_since(sent_us, acked_us);
    }
    (from_intended, from_sent)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn timer_slack_ns() -> i32 {
        // SAFETY: PR_GET_TIMERSLACK reads the calling thread's slack and
        // touches no memory.
        unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) }
    }

    #[test]
    fn pacing_threads_sleep_without_slack() {
        // A thread starts with its parent's slack (50 µs unless set).
        let slack = std::thread::spawn(|| {
            precise_sleeps();
            timer_slack_ns()
        })
        .join()
        .expect("the probe thread");
        assert_eq!(slack, 1);
    }
}
