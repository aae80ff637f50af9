//! Everything the loop keeps per stream: history (persisted), the
//! forecaster, the last sample and rates, and the policy's bookkeeping
//! (last split, since when it could shrink, recent change rounds).
//! A sample is taken in two steps under the engine's lock, `record` and
//! `settle`, so that the refit between them (the expensive part) runs on
//! a copy of the forecaster without the lock.

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::anomaly;
use crate::api::{Anomaly, Hint, PredictionPoint, StreamRates};
use crate::config::AutoscalerConfig;
use crate::forecast::{Band, ForecastConfig, Forecaster, ModelKind};
use crate::history::History;
use crate::metrics::{EventCounts, StreamSample};
use crate::policy::{ForecastView, Peak};
use crate::series::{Recent, Series};

use super::rates;

/// While the history is shorter than a day, refit at least this often.
const EARLY_REFIT_MS: u64 = 5 * 60_000;
/// Change rounds remembered for the budget.
const CHANGES_MAX: usize = 1_024;

/// A copy of one stream's forecaster and its history, to refit without
/// the engine's lock.
#[derive(Debug)]
pub(super) struct Refit {
    history: Series,
    forecaster: Forecaster,
    version: u64,
}

impl Refit {
    pub fn run(mut self) -> Self {
        self.forecaster.refit(&self.history);
        self
    }
}

#[derive(Debug)]
pub(super) struct StreamEntry {
    name: String,
    history: History,
    history_path: PathBuf,
    forecaster: Forecaster,
    /// Bumped by every change to `forecaster`: a refit made on an older
    /// copy is dropped.
    forecaster_version: u64,
    last_sample: Option<StreamSample>,
    pub rates: Option<StreamRates>,
    recent: Recent,
    pub last_split_ms: Option<u64>,
    pub low_since_ms: Option<u64>,
    pub changes_ms: VecDeque<u64>,
    /// For the metrics: the last tick's view and target.
    pub last_view: Option<ForecastView>,
    pub last_target: u32,
    /// The anomaly seen by the last sample, if any.
    pub anomaly: Option<Anomaly>,
    /// The watch's last event counts.
    pub watch_counts: Option<EventCounts>,
    /// A change the watch made failed: it leaves the stream to the next
    /// tick, rather than failing (and recording it) every second.
    pub watch_held: bool,
}

fn file_name(stream: &str) -> String {
    let hex: String = stream.bytes().map(|b| format!("{b:02x}")).collect();
    format!("history-{hex}")
}

impl StreamEntry {
    pub fn new(name: &str, config: &AutoscalerConfig) -> Self {
        let history_path = config.state_dir.join(file_name(name));
        let fine_step_ms = config.interval.as_millis() as u64;
        let history = match History::load(&history_path, fine_step_ms) {
            Ok(Some(history)) => history,
            Ok(None) => History::new(fine_step_ms),
            Err(err) => {
                tracing::warn!(stream = name, %err, "autoscaler history unreadable; starting afresh");
                History::new(fine_step_ms)
            }
        };
        let defaults = ForecastConfig::default();
        let forecast = ForecastConfig {
            quantile: config.quantile,
            short_horizon_ms: defaults
                .short_horizon_ms
                .max(config.horizon.as_millis() as u64),
            near_horizon_ms: (config.horizon + config.interval).as_millis() as u64,
            ..defaults
        };
        Self {
            name: name.to_string(),
            history,
            history_path,
            forecaster: Forecaster::new(forecast),
            forecaster_version: 0,
            last_sample: None,
            rates: None,
            recent: Recent::default(),
            last_split_ms: None,
            low_since_ms: None,
            changes_ms: VecDeque::new(),
            last_view: None,
            last_target: 0,
            anomaly: None,
            watch_counts: None,
            watch_held: false,
        }
    }

    /// Takes a new sample: rates and history. Returns the measured rate
    /// (`None` on the first sample) and the refit now due, if any, for the
    /// caller to run without the lock and hand to `settle`.
    pub fn record(
        &mut self,
        sample: StreamSample,
        now_ms: u64,
        config: &AutoscalerConfig,
    ) -> (Option<f64>, Option<Refit>) {
        self.watch_held = false;
        let before = self.last_sample.replace(sample);
        let now = self.last_sample.as_ref().expect("just stored");
        let rates = before
            .as_ref()
            .and_then(|before| rates::stream_rates(now, before));
        let measured = rates.as_ref().map(|r| r.events_per_s);
        if let Some(rates) = rates {
            self.rates = Some(rates);
        }
        if let Some(measured) = measured {
            if self.history.record(now_ms, measured) {
                if let Err(err) = self.history.save(&self.history_path) {
                    tracing::warn!(stream = self.name, %err, "cannot persist autoscaler history");
                }
            }
            self.recent.push(now_ms, measured);
        }
        // A history loaded from disk is fitted on the first sample already.
        (measured, self.refit_due(now_ms, config))
    }

    /// Installs `refit` unless the forecaster changed since it was taken,
    /// then gives the measurement to the level correction.
    pub fn settle(&mut self, refit: Option<Refit>, measured: Option<f64>, now_ms: u64) {
        if let Some(refit) = refit.filter(|r| r.version == self.forecaster_version) {
            self.forecaster = refit.forecaster;
            self.forecaster_version += 1;
        }
        if let Some(measured) = measured {
            self.forecaster.observe(now_ms, measured);
            self.forecaster_version += 1;
        }
    }

    fn refit_due(&self, now_ms: u64, config: &AutoscalerConfig) -> Option<Refit> {
        let coarse = self.history.coarse();
        if coarse.values.is_empty() {
            return None;
        }
        let every_ms = if coarse.end_ms() - coarse.start_ms < crate::forecast::DAY_MS {
            EARLY_REFIT_MS.min(config.refit_interval.as_millis() as u64)
        } else {
            config.refit_interval.as_millis() as u64
        };
        let due = self
            .forecaster
            .fitted_at_ms()
            .is_none_or(|at| now_ms.saturating_sub(at) >= every_ms && coarse.end_ms() > at);
        due.then(|| Refit {
            history: coarse,
            forecaster: self.forecaster.clone(),
            version: self.forecaster_version,
        })
    }

    /// Growth of the measured rate (per second).
    pub fn growth_eps_per_s(&self) -> f64 {
        self.recent.growth_per_s()
    }

    /// The measured rate's signed slope over the recent window.
    pub fn trend_eps_per_s(&self) -> f64 {
        self.recent.trend_per_s()
    }

    fn band(&self, at_ms: u64, hints: &[Hint]) -> Option<Band> {
        let mut band = self.forecaster.band_at(at_ms)?;
        if let Some(hint) = hints.iter().rev().find(|h| h.covers(at_ms)) {
            let mean = hint.apply(band.mean);
            let scale = if band.mean > 0.0 {
                mean / band.mean
            } else {
                1.0
            };
            band = Band {
                mean,
                lower: band.lower * scale,
                upper: (band.upper * scale).max(mean),
                model: band.model,
            };
        }
        Some(band)
    }

    pub fn point_at(&self, at_ms: u64, hints: &[Hint]) -> PredictionPoint {
        let hinted = hints.iter().any(|h| h.covers(at_ms));
        match self.band(at_ms, hints) {
            Some(band) => PredictionPoint {
                at_ms,
                mean_eps: band.mean,
                lower_eps: band.lower,
                upper_eps: band.upper,
                hinted,
            },
            None => {
                // No model yet: the last measurement, with the hint if any.
                let last = self.recent.last().unwrap_or(0.0);
                let mean = hints
                    .iter()
                    .rev()
                    .find(|h| h.covers(at_ms))
                    .map_or(last, |h| h.apply(last));
                PredictionPoint {
                    at_ms,
                    mean_eps: mean,
                    lower_eps: mean,
                    upper_eps: mean,
                    hinted,
                }
            }
        }
    }

    pub fn model_name(&self, at_ms: u64) -> String {
        let ahead = at_ms.saturating_sub(self.forecaster.fitted_at_ms().unwrap_or(at_ms));
        self.forecaster
            .model_for(ahead)
            .map_or("none", ModelKind::name)
            .to_string()
    }

    fn peak(&self, now_ms: u64, span_ms: u64, hints: &[Hint]) -> Option<Peak> {
        let step_ms = (span_ms / 30).max(1_000);
        Peak::of(
            (0..=span_ms / step_ms)
                .filter_map(|i| self.band(now_ms + i * step_ms, hints))
                .map(|band| (band.mean, band.upper)),
        )
    }

    /// The forecast as the policy sees it: the band now and the peaks of
    /// the mean and the upper band over `[now, now + span_ms]` and `[now,
    /// now + long_span_ms]`, hints applied.
    pub fn view(
        &self,
        now_ms: u64,
        span_ms: u64,
        long_span_ms: u64,
        hints: &[Hint],
    ) -> ForecastView {
        let now = self.band(now_ms, hints);
        // Hints also count where no model exists yet: a hinted rate is an
        // expected one.
        let hinted = |span_ms: u64| {
            Peak::of(
                hints
                    .iter()
                    .filter(|h| h.start_ms <= now_ms + span_ms && h.end_ms > now_ms)
                    .filter_map(|h| h.rate_eps)
                    .map(|rate| (rate, rate)),
            )
        };
        ForecastView {
            model: self.model_name(now_ms),
            mean_now_eps: now.map(|b| b.mean),
            upper_now_eps: now.map(|b| b.upper),
            peak: Peak::max(self.peak(now_ms, span_ms, hints), hinted(span_ms)),
            peak_long: Peak::max(self.peak(now_ms, long_span_ms, hints), hinted(long_span_ms)),
        }
    }

    pub fn anomaly(
        &self,
        now_ms: u64,
        measured: f64,
        hints: &[Hint],
        sigma: f64,
    ) -> Option<Anomaly> {
        let band = self.band(now_ms, hints)?;
        anomaly::detect(&self.name, now_ms, measured, &band, sigma)
    }

    /// An applied change round; `spends_budget` as the plan said.
    pub fn note_change(&mut self, now_ms: u64, split: bool, spends_budget: bool) {
        if spends_budget {
            self.changes_ms.push_back(now_ms);
            while self.changes_ms.len() > CHANGES_MAX {
                self.changes_ms.pop_front();
            }
        }
        if split {
            self.last_split_ms = Some(now_ms);
        }
    }

    /// Rolling sMAPE per model: (model, short horizon, about a day).
    pub fn scores(&self) -> Vec<(ModelKind, Option<f64>, Option<f64>)> {
        self.forecaster.scores()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::metrics::ShardCounters;

    fn sample(at_ms: u64, events: u64) -> StreamSample {
        StreamSample {
            stream: "s".into(),
            at: UNIX_EPOCH + Duration::from_millis(at_ms),
            epoch: 1,
            shards: vec![ShardCounters {
                shard: 1,
                events,
                ..ShardCounters::default()
            }],
        }
    }

    /// Feeds 100 ev/s every 10 s up to `until_ms`, refitting inline.
    fn feed(entry: &mut StreamEntry, config: &AutoscalerConfig, from_ms: u64, until_ms: u64) {
        for at_ms in (from_ms..until_ms).step_by(10_000) {
            let (measured, refit) = entry.record(sample(at_ms, at_ms / 10), at_ms, config);
            entry.settle(refit.map(Refit::run), measured, at_ms);
        }
    }

    #[test]
    fn a_refit_taken_before_another_change_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AutoscalerConfig::new(dir.path());
        let mut entry = StreamEntry::new("s", &config);
        feed(&mut entry, &config, 0, 130_000);
        let fitted_ms = entry.forecaster.fitted_at_ms().expect("fitted");
        // The next refit comes due; while it runs, another sample settles.
        let mut at_ms = 130_000;
        let refit = loop {
            let (measured, refit) = entry.record(sample(at_ms, at_ms / 10), at_ms, &config);
            if let Some(refit) = refit {
                break refit.run();
            }
            entry.settle(None, measured, at_ms);
            at_ms += 10_000;
            assert!(at_ms < 3_600_000, "no refit came due");
        };
        entry.settle(None, Some(100.0), at_ms);
        entry.settle(Some(refit), None, at_ms);
        assert_eq!(entry.forecaster.fitted_at_ms(), Some(fitted_ms));
        // Taken and installed with nothing in between, a refit lands.
        at_ms += 10_000;
        let (measured, refit) = entry.record(sample(at_ms, at_ms / 10), at_ms, &config);
        let refit = refit.expect("still due").run();
        entry.settle(Some(refit), measured, at_ms);
        assert!(entry.forecaster.fitted_at_ms() > Some(fitted_ms));
    }
}
