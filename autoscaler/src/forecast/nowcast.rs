//! Level correction between refits. A fitted path knows nothing of the
//! last minutes; the nowcast keeps the ratio of measured to forecast (an
//! exponential average over about ten minutes) and applies it to near
//! horizons, fading towards a seasoned model over a couple of hours (a
//! model fitted on less than a season knows no shape to fade towards, so
//! the correction holds at every horizon). When measurements leave the
//! model's band for several ticks in a row the model is wrong about the
//! level, not noisy: the ratio jumps to the measurement (`relevel`) instead
//! of creeping there. Its own errors, measured `near_ms` after each
//! prediction, give the band for the near horizons the policy sizes on.

use std::collections::VecDeque;

use crate::series::{log_ratio, quantile};

/// Time constant of the ratio's exponential average.
const RATIO_TAU_MS: f64 = 10.0 * 60_000.0;
/// The correction fades with this time constant over the horizon.
const FADE_MS: f64 = 2.0 * 3_600_000.0;
/// The average alone corrects the model by at most this much: a slow drift
/// of a trusted model is small.
const RATIO_MIN: f64 = 0.25;
const RATIO_MAX: f64 = 4.0;
/// After a re-level the measurements speak for themselves until a refit
/// agrees, downwards (a model still holding a peak it learned from) within
/// a bound that only keeps the arithmetic finite. Upwards the average's
/// bound stays: the correction multiplies the whole path, so a large one
/// on a model that is low now would size for a multiple of its peak, and
/// measured load above the forecast scales reactively anyway.
const RELEVEL_MIN: f64 = 1e-4;
/// How far one refit may move a re-levelled correction.
const RELEVEL_SHIFT_MAX: f64 = 1e4;
/// A model change moves the ratio by at most this factor either way.
const REBASE_MAX: f64 = 2.0;
const RESIDUALS_MAX: usize = 4_000;
/// One prediction is followed up per this interval: ticks seconds apart
/// have nearly the same error, and a few days of errors make a steadier
/// band than the last few hours.
const PREDICT_EVERY_MS: u64 = 60_000;
/// Band quantiles are recomputed after this many new residuals.
const SETTLE_EVERY: usize = 50;
/// Predictions awaiting their outcome, at most.
const PENDING_MAX: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Nowcast {
    near_ms: u64,
    quantile: f64,
    ratio: f64,
    /// The ratio was set by a re-level and may leave the average's bounds.
    relevelled: bool,
    /// The fitted model is seasoned: the correction fades towards it.
    fades: bool,
    last_ms: Option<u64>,
    /// (target time, predicted), in target order.
    pending: VecDeque<(u64, f64)>,
    residuals: VecDeque<f64>,
    unsettled: usize,
    /// (low, high) quantiles of the log-ratio residuals.
    pub band: Option<(f64, f64)>,
}

impl Nowcast {
    pub fn new(near_ms: u64, quantile: f64) -> Self {
        Self {
            near_ms,
            quantile,
            ratio: 1.0,
            relevelled: false,
            fades: true,
            last_ms: None,
            pending: VecDeque::new(),
            residuals: VecDeque::new(),
            unsettled: 0,
            band: None,
        }
    }

    pub fn near_ms(&self) -> u64 {
        self.near_ms
    }

    pub fn last_ms(&self) -> Option<u64> {
        self.last_ms
    }

    /// The correction for a point `ahead_ms` past the last measurement.
    pub fn factor(&self, ahead_ms: u64) -> f64 {
        if !self.fades {
            return self.ratio;
        }
        1.0 + (self.ratio - 1.0) * (-(ahead_ms as f64) / FADE_MS).exp()
    }

    fn bounds(&self) -> (f64, f64) {
        if self.relevelled {
            (RELEVEL_MIN, RATIO_MAX)
        } else {
            (RATIO_MIN, RATIO_MAX)
        }
    }

    /// A new model took over (`fades`: it is seasoned): keep the corrected
    /// level continuous. After a re-level the old model was wrong, so the
    /// level carries over in full; otherwise a model change moves it by at
    /// most `REBASE_MAX`.
    pub fn rebase(&mut self, old_base: f64, new_base: f64, fades: bool) {
        self.fades = fades;
        if old_base > 0.0 && new_base > 0.0 {
            let limit = if self.relevelled {
                RELEVEL_SHIFT_MAX
            } else {
                REBASE_MAX
            };
            let shift = (old_base / new_base).clamp(1.0 / limit, limit);
            self.ratio *= shift;
        }
        self.relevelled &= !(RATIO_MIN..=RATIO_MAX).contains(&self.ratio);
        let (low, high) = self.bounds();
        self.ratio = self.ratio.clamp(low, high);
    }

    /// The fitted model is seasoned (the correction fades towards it).
    pub fn seasoned(&self) -> bool {
        self.fades
    }

    /// Sets the level to the measurement `actual` against the model's
    /// `base_now` (call after `observe` for the same measurement).
    pub fn relevel(&mut self, actual: f64, base_now: f64) {
        self.relevelled = true;
        let observed = (actual.max(0.0) + 1.0) / (base_now.max(0.0) + 1.0);
        self.ratio = observed.clamp(RELEVEL_MIN, RATIO_MAX);
    }

    /// A measurement at `at_ms`; `base_now` and `base_near` are the
    /// model's means now and `near_ms` ahead.
    pub fn observe(&mut self, at_ms: u64, actual: f64, base_now: f64, base_near: f64) {
        if self.last_ms.is_some_and(|last| at_ms <= last) || !actual.is_finite() {
            return;
        }
        while let Some(&(target, predicted)) = self.pending.front() {
            if target > at_ms {
                break;
            }
            self.pending.pop_front();
            self.residuals.push_back(log_ratio(actual, predicted));
            if self.residuals.len() > RESIDUALS_MAX {
                self.residuals.pop_front();
            }
            self.unsettled += 1;
        }
        let weight = match self.last_ms {
            None => 1.0,
            Some(last) => 1.0 - (-((at_ms - last) as f64) / RATIO_TAU_MS).exp(),
        };
        let observed = (actual.max(0.0) + 1.0) / (base_now.max(0.0) + 1.0);
        let (low, high) = self.bounds();
        self.ratio = (self.ratio + weight * (observed - self.ratio)).clamp(low, high);
        self.last_ms = Some(at_ms);
        let due = self
            .pending
            .back()
            .is_none_or(|&(target, _)| at_ms + self.near_ms >= target + PREDICT_EVERY_MS);
        if due && self.pending.len() < PENDING_MAX {
            self.pending
                .push_back((at_ms + self.near_ms, base_near * self.factor(self.near_ms)));
        }
        if self.unsettled >= SETTLE_EVERY || (self.band.is_none() && self.residuals.len() >= 10) {
            let residuals: Vec<f64> = self.residuals.iter().copied().collect();
            self.band =
                quantile(&residuals, 1.0 - self.quantile).zip(quantile(&residuals, self.quantile));
            self.unsettled = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_follows_a_level_shift_and_fades_with_horizon() {
        let mut nowcast = Nowcast::new(900_000, 0.95);
        for i in 0..400u64 {
            nowcast.observe(i * 10_000, 2000.0, 1000.0, 1000.0);
        }
        let near = nowcast.factor(0);
        assert!((near - 2.0).abs() < 0.05, "{near}");
        // A model far off the old one moves the level by at most 2x.
        let mut shifted = nowcast.clone();
        shifted.rebase(1000.0, 100_000.0, true);
        assert!((shifted.factor(0) - 1.0).abs() < 0.05);
        assert!(nowcast.factor(24 * 3_600_000) < 1.01);
        let (low, high) = nowcast.band.expect("residuals gathered");
        assert!(low <= high);
        nowcast.rebase(1000.0, 2000.0, true);
        assert!((nowcast.factor(0) - 1.0).abs() < 0.05);
    }

    #[test]
    /// Upwards a re-level keeps the average's bound, across a refit too: a
    /// refit whose model is near zero "now" once carried a re-level into a
    /// correction that sized one nyc_taxi tick for 3,079 shards (70 needed).
    fn an_upward_relevel_stays_within_the_average_bound() {
        let mut nowcast = Nowcast::new(900_000, 0.95);
        nowcast.relevel(100_000.0, 10.0);
        assert!((nowcast.factor(0) - RATIO_MAX).abs() < 1e-9);
        let mut low = Nowcast::new(900_000, 0.95);
        low.relevel(100.0, 10_000.0);
        low.rebase(10_000.0, 0.001, true);
        assert!(low.factor(0) <= RATIO_MAX, "{}", low.factor(0));
    }

    #[test]
    fn a_relevel_leaves_the_average_bounds_until_a_refit_agrees() {
        let mut nowcast = Nowcast::new(900_000, 0.95);
        nowcast.observe(0, 100.0, 10_000.0, 10_000.0);
        assert!((nowcast.factor(0) - RATIO_MIN).abs() < 1e-9);
        nowcast.relevel(100.0, 10_000.0);
        let level = 10_001.0 * nowcast.factor(0) - 1.0;
        assert!((level - 100.0).abs() < 0.01, "{level}");
        // Fading towards the falsified model would bring it back.
        assert!(nowcast.factor(3_600_000) > 0.3);
        // A refit whose model sees the low level ends the re-level and,
        // being unseasoned, holds the correction at every horizon.
        nowcast.rebase(10_000.0, 100.0, false);
        assert!((nowcast.factor(0) - 1.0).abs() < 0.01);
        assert!(!nowcast.relevelled);
        nowcast.observe(10_000, 100.0, 100.0, 100.0);
        assert_eq!(nowcast.factor(0), nowcast.factor(24 * 3_600_000));
    }

    #[test]
    fn out_of_order_measurements_are_ignored() {
        let mut nowcast = Nowcast::new(60_000, 0.9);
        nowcast.observe(10_000, 500.0, 500.0, 500.0);
        nowcast.observe(5_000, 5_000.0, 500.0, 500.0);
        assert!((nowcast.factor(0) - 1.0).abs() < 1e-9);
    }
}
