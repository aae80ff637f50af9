//! Spikes that recur at the same minute of every hour (a cron job, a
//! backup, a batch export). The models learn on coarse steps with isolated
//! spikes removed (a burst must not be repeated a day later), so they
//! cannot place these. The phase profile keeps, per slot of the hour, the
//! median over the last hours of the log ratio of each sample to its
//! despiked value: where a spike shows in most hours, the last one
//! included, the slot gets its ratio; elsewhere the profile changes
//! nothing, and a spike that stopped leaves it within the hour.
//!
//! Only the hour: a daily profile, tried on a trace whose hourly spikes
//! stopped one day, predicted every one of them for a day more.

use crate::series::{quantile, Series};

const HOUR_MS: u64 = 3_600_000;
/// Hours looked back, and hours a slot needs samples from.
const HOURS_BACK: u64 = 24;
const HOURS_NEEDED: usize = 6;
/// Slots are at least this wide: a finer history is averaged into them.
const SLOT_MS_MIN: u64 = 60_000;
/// A slot whose median ratio is closer to 1 than this is left at 1.
const RATIO_MIN: f64 = 1.5;

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseProfile {
    slot_ms: u64,
    /// Slot boundaries fall on `offset_ms` modulo `slot_ms` (sample times).
    offset_ms: u64,
    /// Log ratio per slot of the hour.
    slots: Vec<f64>,
}

impl PhaseProfile {
    /// Learns from `history`, with isolated spikes found as the models'
    /// cleaning finds them; `None` when no slot recurs (or the slots do
    /// not divide the hour).
    pub fn learn(history: &Series, half_window: usize, mads: f64) -> Option<PhaseProfile> {
        let slot_ms = if history.step_ms >= SLOT_MS_MIN {
            history.step_ms
        } else {
            SLOT_MS_MIN.div_ceil(history.step_ms) * history.step_ms
        };
        if !HOUR_MS.is_multiple_of(slot_ms) {
            return None;
        }
        let raw = history.downsample(slot_ms);
        let cleaned = raw.despiked(half_window, mads);
        let offset_ms = raw.start_ms % slot_ms;
        let from_ms = raw.end_ms().saturating_sub(HOURS_BACK * HOUR_MS);
        let mut ratios = vec![Vec::new(); (HOUR_MS / slot_ms) as usize];
        for (index, (&value, &clean)) in raw.values.iter().zip(&cleaned.values).enumerate() {
            let at_ms = raw.time_of(index);
            if at_ms < from_ms || !value.is_finite() || !clean.is_finite() {
                continue;
            }
            let slot = ((at_ms - offset_ms) % HOUR_MS / slot_ms) as usize;
            // Not `log_ratio`: that bounds a band's errors, and a spike is
            // a multiple.
            ratios[slot].push(((value.max(0.0) + 1.0) / (clean.max(0.0) + 1.0)).ln());
        }
        let slots: Vec<f64> = ratios
            .iter()
            .map(|r| {
                let median = if r.len() >= HOURS_NEEDED {
                    quantile(r, 0.5).unwrap_or(0.0)
                } else {
                    0.0
                };
                let last = r.last().copied().unwrap_or(0.0);
                let recurs = median.abs() >= RATIO_MIN.ln()
                    && last.abs() >= RATIO_MIN.ln()
                    && last.signum() == median.signum();
                if recurs {
                    median
                } else {
                    0.0
                }
            })
            .collect();
        slots.iter().any(|&r| r != 0.0).then_some(PhaseProfile {
            slot_ms,
            offset_ms,
            slots,
        })
    }

    /// Whether a recurring spike is in the slot of `at_ms` or either one
    /// beside it: a measurement there off the forecast is the spike early,
    /// late or of another height, not a change of the level.
    pub fn near_spike(&self, at_ms: u64) -> bool {
        [
            at_ms.saturating_sub(self.slot_ms),
            at_ms,
            at_ms + self.slot_ms,
        ]
        .iter()
        .any(|&at| self.factor(at) != 1.0)
    }

    /// The factor on a despiked forecast at `at_ms`, interpolated between
    /// slots as the samples are.
    pub fn factor(&self, at_ms: u64) -> f64 {
        let phase_ms = (at_ms + HOUR_MS - self.offset_ms) % HOUR_MS;
        let position = phase_ms as f64 / self.slot_ms as f64;
        let slot = position.floor() as usize % self.slots.len();
        let next = (slot + 1) % self.slots.len();
        let frac = position - position.floor();
        self.slots[slot].exp() * (1.0 - frac) + self.slots[next].exp() * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MS: u64 = 300_000;

    const DAY_MS: u64 = 24 * HOUR_MS;

    /// Two days of 5-minute samples at about 100, with `spike` at minute 10
    /// of every hour where `every(hour)`.
    fn series(spike: f64, every: impl Fn(u64) -> bool) -> Series {
        let values = (0..2 * DAY_MS / STEP_MS)
            .map(|i| {
                let at_ms = i * STEP_MS;
                if at_ms % HOUR_MS == 600_000 && every(at_ms / HOUR_MS) {
                    spike
                } else {
                    100.0 + (i % 3) as f64
                }
            })
            .collect();
        Series::new(0, STEP_MS, values)
    }

    #[test]
    fn a_spike_in_every_hour_is_placed_and_nothing_else_moves() {
        let profile = PhaseProfile::learn(&series(1_300.0, |_| true), 3, 5.0).expect("a profile");
        let next_hour = 2 * DAY_MS;
        let at_spike = profile.factor(next_hour + 600_000);
        assert!((at_spike - 1_301.0 / 102.0).abs() < 1.5, "{at_spike}");
        // Half a slot before it, half the way up (samples interpolate).
        let half = profile.factor(next_hour + 450_000);
        assert!(half > 4.0 && half < at_spike, "{half}");
        for minute in [0, 20, 30, 45] {
            assert_eq!(profile.factor(next_hour + minute * 60_000), 1.0, "{minute}");
        }
    }

    #[test]
    fn a_spike_that_stopped_last_period_is_dropped() {
        let hours = 2 * DAY_MS / HOUR_MS;
        let stopped = series(1_300.0, |hour| hour + 1 < hours);
        assert_eq!(PhaseProfile::learn(&stopped, 3, 5.0), None);
    }

    #[test]
    fn spikes_in_a_minority_of_hours_are_bursts_not_a_profile() {
        assert_eq!(
            PhaseProfile::learn(&series(1_300.0, |hour| hour % 3 == 0), 3, 5.0),
            None
        );
        assert_eq!(PhaseProfile::learn(&series(101.0, |_| true), 3, 5.0), None);
    }

    #[test]
    fn a_fine_history_is_profiled_in_minutes() {
        // 10 s samples with a one-minute spike at minute 30 of every hour.
        let values = (0..DAY_MS / 10_000)
            .map(|i| {
                let minute = (i * 10_000 % HOUR_MS) / 60_000;
                if minute == 30 {
                    2_000.0
                } else {
                    100.0 + (i % 7) as f64
                }
            })
            .collect();
        let profile =
            PhaseProfile::learn(&Series::new(0, 10_000, values), 3, 5.0).expect("a profile");
        assert!(profile.factor(DAY_MS + 30 * 60_000) > 10.0);
        assert_eq!(profile.factor(DAY_MS + 40 * 60_000), 1.0);
    }
}
