//! Forecasting one stream's event rate. Several candidate models are fitted
//! on a schedule (refits are the expensive part; forecasts in between read
//! the paths of the last fit). Every fit's paths are kept for a day and
//! scored against what then happened, separately for short horizons (what
//! the policy and anomaly detection use) and for about a day ahead, so each
//! horizon uses the model with the lowest rolling sMAPE (an average over
//! the last day, or week for a day ahead, of time, not of samples: the
//! broker's minute steps and a trace's half hours weigh alike). The band
//! around the mean comes from that model's own recent errors (log ratios of
//! actual to forecast), so it is as wide as the model has earned. Measurements
//! outside the band for several ticks in a row re-level the forecast at
//! once (see `nowcast`): a burst that lasts, or (for a model fitted on
//! less than a day) a drop after a peak the fit learned from, is the new
//! level until a refit says otherwise. Spikes that recur at the same phase
//! of the hour are put back on every model's path (`phase`), and the level
//! correction learns nothing next to them.

pub mod models;
mod nowcast;
mod phase;
mod profile;

use std::collections::VecDeque;
use std::sync::Arc;

pub use models::{ModelKind, ModelSettings, DAY_MS, WEEK_MS};

use crate::series::{log_ratio, quantile, Series};
use nowcast::Nowcast;
use phase::PhaseProfile;

/// Errors remembered per model and horizon class for the band.
const RESIDUALS_MAX: usize = 2_000;
/// The span of time a model's rolling score remembers (the time constant
/// of its exponential average), whatever the history's step and however
/// many stored paths score each sample: short horizons over a day of
/// load, about a day ahead over a week (one of each cycle of evidence).
const SCORE_SPAN_SHORT_MS: f64 = DAY_MS as f64;
const SCORE_SPAN_LONG_MS: f64 = WEEK_MS as f64;
/// Paths older than this are no longer scored (and dropped).
const PATH_AGE_MS_MAX: u64 = 26 * 3_600_000;
/// A sample this many (scaled) median absolute deviations away from the
/// median of its neighbours, within this many samples either side, is a
/// spike (a Hampel filter).
const SPIKE_MADS: f64 = 5.0;
const SPIKE_HALF_WINDOW: usize = 3;
/// The band reaches at most this factor either side of the mean: after an
/// outage (a stretch of zeros) the errors of a whole day say nothing about
/// the next hour, and measured load above the band still scales reactively.
const BAND_FACTOR_MAX: f64 = 2.0;
/// Horizons scored as "about a day ahead".
const LONG_FROM_MS: u64 = 22 * 3_600_000;
const LONG_TO_MS: u64 = 26 * 3_600_000;
/// Consecutive measurements on one side of the band that re-level the
/// forecast: one is noise, a few in a row are a level the model missed.
const BAND_EXITS_RELEVEL: u32 = 3;
/// A fit on less history than this (the shortest season the models know)
/// has learned a level, not a shape.
const SEASONED_SPAN_MS: u64 = DAY_MS;

#[derive(Debug, Clone, Copy)]
pub struct ForecastConfig {
    pub models: ModelSettings,
    /// Horizons up to this count as short.
    pub short_horizon_ms: u64,
    /// The nowcast's errors are measured this far ahead (the policy's
    /// sizing horizon); its band serves up to twice that.
    pub near_horizon_ms: u64,
    /// Upper quantile of the band (the lower one is 1 - this).
    pub quantile: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            models: ModelSettings {
                model_step_ms: 15 * 60_000,
                train_span_ms: 28 * DAY_MS,
                ets_span_ms: 3 * DAY_MS,
            },
            short_horizon_ms: 2 * 3_600_000,
            near_horizon_ms: 60 * 60_000,
            quantile: 0.95,
        }
    }
}

/// Mean and prediction interval at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
    pub model: ModelKind,
}

#[derive(Debug, Clone, Default)]
struct Score {
    smape: Option<f64>,
    /// The decayed weight of every sample scored so far: it divides each
    /// new sample's weight, so early on the score is the plain mean of
    /// its samples, not the first sample's error held for a whole span.
    weight: f64,
    residuals: VecDeque<f64>,
    /// Band quantiles of the residuals, computed once per refit.
    band: Option<(f64, f64)>,
}

impl Score {
    fn settle(&mut self, q: f64) {
        let residuals: Vec<f64> = self.residuals.iter().copied().collect();
        self.band = quantile(&residuals, 1.0 - q).zip(quantile(&residuals, q));
    }

    /// Scores the forecasts of one sample (one per stored path that
    /// reaches it in this horizon class): their mean error moves the
    /// score by the weight of `step_ms` out of `span_ms`.
    fn add(&mut self, actual: f64, forecasts: &[f64], step_ms: u64, span_ms: f64) {
        if forecasts.is_empty() {
            return;
        }
        let term = forecasts
            .iter()
            .map(|&forecast| {
                let denominator = actual.abs() + forecast.abs();
                if denominator > 0.0 {
                    200.0 * (forecast - actual).abs() / denominator
                } else {
                    0.0
                }
            })
            .sum::<f64>()
            / forecasts.len() as f64;
        let weight = 1.0 - (-(step_ms as f64) / span_ms).exp();
        self.weight = self.weight * (1.0 - weight) + weight;
        self.smape = Some(match self.smape {
            None => term,
            Some(old) => old + weight / self.weight * (term - old),
        });
        for &forecast in forecasts {
            self.residuals.push_back(log_ratio(actual, forecast));
        }
        while self.residuals.len() > RESIDUALS_MAX {
            self.residuals.pop_front();
        }
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    kind: ModelKind,
    /// (fit time, path), oldest first; shared, so cloning a forecaster to
    /// refit it away from readers copies no paths.
    paths: VecDeque<(u64, Arc<Series>)>,
    short: Score,
    long: Score,
}

#[derive(Debug, Clone)]
pub struct Forecaster {
    config: ForecastConfig,
    fitted_at_ms: Option<u64>,
    candidates: Vec<Candidate>,
    nowcast: Nowcast,
    /// Measurements in a row above (positive) or below (negative) the band.
    band_exits: i32,
    /// Recurring spikes, learned at the last refit.
    phase: Option<PhaseProfile>,
}

impl Forecaster {
    pub fn new(config: ForecastConfig) -> Self {
        let candidates = ModelKind::ALL
            .iter()
            .map(|&kind| Candidate {
                kind,
                paths: VecDeque::new(),
                short: Score::default(),
                long: Score::default(),
            })
            .collect();
        Self {
            nowcast: Nowcast::new(config.near_horizon_ms, config.quantile),
            config,
            fitted_at_ms: None,
            candidates,
            band_exits: 0,
            phase: None,
        }
    }

    pub fn fitted_at_ms(&self) -> Option<u64> {
        self.fitted_at_ms
    }

    /// Scores the paths of earlier fits against the samples that arrived
    /// since, then fits every model on `history` (which ends now). The first
    /// fit backtests on the history's last day first, so selection has
    /// evidence from the start.
    pub fn refit(&mut self, history: &Series) {
        let now_ms = history.end_ms();
        self.phase = PhaseProfile::learn(
            &history.tail((8 * DAY_MS / history.step_ms) as usize),
            SPIKE_HALF_WINDOW,
            SPIKE_MADS,
        );
        // Models learn from the span they use, with isolated spikes
        // removed (bursts are for reactive scaling; a seasonal model
        // would repeat them a day or a week later). Scoring sees them.
        // The weekly profile learns over the training span, each of its
        // samples against the weeks before.
        let span_ms = self.config.models.train_span_ms + profile::CYCLES as u64 * WEEK_MS;
        let cleaned = history
            .tail((span_ms / history.step_ms) as usize)
            .despiked(SPIKE_HALF_WINDOW, SPIKE_MADS);
        if self.fitted_at_ms.is_none() {
            for hours_back in [25u64, 19, 13, 7] {
                let origin_ms = now_ms.saturating_sub(hours_back * 3_600_000);
                if origin_ms > history.start_ms + 2 * 3_600_000 {
                    self.score(&history.until(origin_ms));
                    self.fit_all(&cleaned.until(origin_ms), origin_ms);
                }
            }
        }
        let old_base = self.model_band_at(now_ms).map(|b| b.mean);
        self.score(history);
        self.fit_all(&cleaned, now_ms);
        let seasoned = now_ms.saturating_sub(history.start_ms) >= SEASONED_SPAN_MS;
        let new_base = self.model_band_at(now_ms).map(|b| b.mean);
        self.nowcast
            .rebase(old_base.unwrap_or(0.0), new_base.unwrap_or(0.0), seasoned);
        let q = self.config.quantile;
        for candidate in &mut self.candidates {
            candidate.short.settle(q);
            candidate.long.settle(q);
        }
    }

    fn fit_all(&mut self, history: &Series, now_ms: u64) {
        let settings = self.config.models;
        for candidate in &mut self.candidates {
            if let Some(path) = models::fit_path(candidate.kind, history, LONG_TO_MS, &settings) {
                candidate.paths.push_back((now_ms, Arc::new(path)));
            }
        }
        let voters: Vec<&Series> = self
            .candidates
            .iter()
            .filter(|c| c.kind != ModelKind::Last)
            .filter_map(|c| c.paths.back().filter(|(at, _)| *at == now_ms))
            .map(|(_, path)| path.as_ref())
            .collect();
        let start_ms = voters.iter().map(|p| p.start_ms).max().unwrap_or(now_ms);
        let median = models::median_path(&voters, start_ms, LONG_TO_MS);
        for candidate in &mut self.candidates {
            if candidate.kind == ModelKind::Ensemble {
                if let Some(path) = median.clone() {
                    candidate.paths.push_back((now_ms, Arc::new(path)));
                }
            }
            while candidate
                .paths
                .front()
                .is_some_and(|(at, _)| at + PATH_AGE_MS_MAX < now_ms)
            {
                candidate.paths.pop_front();
            }
        }
        self.fitted_at_ms = Some(now_ms);
    }

    /// Scores every stored path on the samples after the last fit.
    fn score(&mut self, history: &Series) {
        let Some(since_ms) = self.fitted_at_ms else {
            return;
        };
        let short_ms = self.config.short_horizon_ms;
        let first = (since_ms.saturating_sub(history.start_ms)).div_ceil(history.step_ms) as usize;
        for index in first..history.values.len() {
            let actual = history.values[index];
            let at_ms = history.time_of(index);
            if !actual.is_finite() || at_ms < since_ms {
                continue;
            }
            let factor = self.phase.as_ref().map_or(1.0, |p| p.factor(at_ms));
            for candidate in &mut self.candidates {
                let (mut short, mut long) = (Vec::new(), Vec::new());
                for (fit_ms, path) in &candidate.paths {
                    let Some(ahead_ms) = at_ms.checked_sub(*fit_ms) else {
                        continue;
                    };
                    let Some(forecast) = path.at(at_ms) else {
                        continue;
                    };
                    if ahead_ms <= short_ms {
                        short.push(forecast * factor);
                    } else if (LONG_FROM_MS..=LONG_TO_MS).contains(&ahead_ms) {
                        long.push(forecast * factor);
                    }
                }
                let step_ms = history.step_ms;
                candidate
                    .short
                    .add(actual, &short, step_ms, SCORE_SPAN_SHORT_MS);
                candidate
                    .long
                    .add(actual, &long, step_ms, SCORE_SPAN_LONG_MS);
            }
        }
    }

    /// The candidate with the lowest rolling error at this horizon class
    /// among those fitted last time; unscored ones rank by preference.
    fn selected(&self, long: bool) -> Option<&Candidate> {
        let fitted_at = self.fitted_at_ms?;
        let fitted = self
            .candidates
            .iter()
            .filter(|c| c.paths.back().is_some_and(|(at, _)| *at == fitted_at));
        let score = |c: &Candidate| if long { c.long.smape } else { c.short.smape };
        fitted
            .clone()
            .filter(|c| score(c).is_some())
            .min_by(|a, b| f64::total_cmp(&score(a).unwrap_or(0.0), &score(b).unwrap_or(0.0)))
            .or_else(|| fitted.clone().next())
    }

    /// The model serving horizons of this length from the last fit.
    pub fn model_for(&self, ahead_ms: u64) -> Option<ModelKind> {
        self.selected(ahead_ms > self.config.short_horizon_ms)
            .map(|c| c.kind)
    }

    /// Takes a measurement between refits (for the level correction).
    pub fn observe(&mut self, at_ms: u64, actual: f64) {
        // Next to a recurring spike the measurement is the spike early,
        // late or of another height: as a level it multiplied the spike
        // itself (a re-level on an early ramp sized for four times the top).
        if self.phase.as_ref().is_some_and(|p| p.near_spike(at_ms)) {
            return;
        }
        let near_ms = self.nowcast.near_ms();
        let (Some(now), Some(near), Some(band)) = (
            self.model_band_at(at_ms),
            self.model_band_at(at_ms + near_ms),
            self.band_at(at_ms),
        ) else {
            return;
        };
        let side = if actual > band.upper {
            1
        } else if actual < band.lower {
            -1
        } else {
            0
        };
        self.band_exits = if side != 0 && side == self.band_exits.signum() {
            self.band_exits + side
        } else {
            side
        };
        self.nowcast.observe(at_ms, actual, now.mean, near.mean);
        // Downwards only while the model is young: a seasoned model has a
        // backtested shape, and following a dip at once leaves it low when
        // the load comes back; a young one may hold a peak it was fitted on.
        let relevel = self.band_exits.unsigned_abs() >= BAND_EXITS_RELEVEL
            && (self.band_exits > 0 || !self.nowcast.seasoned());
        if relevel {
            self.nowcast.relevel(actual, now.mean);
            self.band_exits = 0;
        }
    }

    /// The band at `at_ms`: the selected model's, level-corrected by the
    /// recent measurements; within twice the near horizon of the last
    /// measurement the band is the corrected forecast's own error band.
    pub fn band_at(&self, at_ms: u64) -> Option<Band> {
        let band = self.model_band_at(at_ms)?;
        let Some(last_ms) = self.nowcast.last_ms() else {
            return Some(band);
        };
        let ahead_ms = at_ms.saturating_sub(last_ms);
        let factor = self.nowcast.factor(ahead_ms);
        // Corrections act on (rate + 1), so a mean near zero stays one.
        let mean = ((band.mean + 1.0) * factor - 1.0).max(0.0);
        let near = ahead_ms <= 2 * self.nowcast.near_ms();
        let bound = BAND_FACTOR_MAX.ln();
        let (lower, upper) = match self.nowcast.band {
            Some((low, high)) if near => (
                (mean + 1.0) * low.clamp(-bound, 0.0).exp() - 1.0,
                (mean + 1.0) * high.clamp(0.0, bound).exp() - 1.0,
            ),
            _ => (
                (band.lower + 1.0) * factor - 1.0,
                (band.upper + 1.0) * factor - 1.0,
            ),
        };
        Some(Band {
            mean,
            lower: lower.clamp(0.0, mean),
            upper: upper.max(mean),
            model: band.model,
        })
    }

    /// The selected model's band at `at_ms`, from the last fit.
    fn model_band_at(&self, at_ms: u64) -> Option<Band> {
        let fitted_at = self.fitted_at_ms?;
        let long = at_ms.saturating_sub(fitted_at) > self.config.short_horizon_ms;
        let candidate = self.selected(long)?;
        let (_, path) = candidate.paths.back()?;
        let mean = path.at(at_ms)? * self.phase.as_ref().map_or(1.0, |p| p.factor(at_ms));
        let score = if long && candidate.long.smape.is_some() {
            &candidate.long
        } else {
            &candidate.short
        };
        // Without a scored history, assume a +-25% error until one exists.
        let fallback = 0.25_f64.ln_1p();
        let (low, high) = score.band.unwrap_or((-fallback, fallback));
        let bound = BAND_FACTOR_MAX.ln();
        let (low, high) = (low.clamp(-bound, 0.0), high.clamp(0.0, bound));
        Some(Band {
            mean,
            lower: ((mean + 1.0) * low.exp() - 1.0).max(0.0),
            upper: (mean + 1.0) * high.exp() - 1.0,
            model: candidate.kind,
        })
    }

    /// The mean of one model's latest path (for baselines in reports).
    pub fn mean_of(&self, kind: ModelKind, at_ms: u64) -> Option<f64> {
        let fitted_at = self.fitted_at_ms?;
        let candidate = self.candidates.iter().find(|c| c.kind == kind)?;
        let (at, path) = candidate.paths.back()?;
        (*at == fitted_at).then(|| path.at(at_ms)).flatten()
    }

    /// Rolling short-horizon sMAPE per model (for reports and metrics).
    pub fn scores(&self) -> Vec<(ModelKind, Option<f64>, Option<f64>)> {
        self.candidates
            .iter()
            .map(|c| (c.kind, c.short.smape, c.long.smape))
            .collect()
    }
}

#[cfg(test)]
mod tests;
