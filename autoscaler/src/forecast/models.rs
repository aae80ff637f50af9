//! The candidate models. Each turns the history before the fit time into a
//! forecast path (a `Series` of means starting at the fit time): seasonal
//! naive at the history's own step; ETS, MSTL+ETS (augurs, on logs) and
//! the seasonal profiles (`profile`) on a downsampled copy so fitting
//! months of data stays cheap.

use augurs_core::{Fit, Predict};
use augurs_ets::trend::AutoETSTrendModel;
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;
use serde::{Deserialize, Serialize};

use super::profile::profile_path;
use crate::series::Series;

pub const DAY_MS: u64 = 24 * 3_600_000;
pub const WEEK_MS: u64 = 7 * DAY_MS;
/// Seasons the seasonal median looks back over.
const MEDIAN_CYCLES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The last value, held: the fallback while history is short.
    Last,
    /// The value one day earlier.
    SeasonalDaily,
    /// The value one week earlier.
    SeasonalWeekly,
    /// The median of the values one to four weeks earlier: one week's
    /// value is one noisy sample of the slot, a holiday or an outage in
    /// it is outvoted by the others.
    WeeklyMedian,
    /// The median of the last eight days in logs, plus the last hour's
    /// deviation from it as far as such deviations persisted (`profile`).
    DailyProfile,
    /// The same over the last eight weeks.
    WeeklyProfile,
    /// Exponential smoothing without seasonality.
    Ets,
    /// MSTL with daily and weekly periods on the logs of the load (seasons
    /// as ratios), ETS on the deseasonalised rest.
    Mstl,
    /// The pointwise median of the other models' paths: one model's echo
    /// of a past anomaly is outvoted.
    Ensemble,
}

impl ModelKind {
    pub const ALL: [ModelKind; 9] = [
        ModelKind::Ensemble,
        ModelKind::Mstl,
        ModelKind::WeeklyProfile,
        ModelKind::DailyProfile,
        ModelKind::WeeklyMedian,
        ModelKind::SeasonalWeekly,
        ModelKind::SeasonalDaily,
        ModelKind::Ets,
        ModelKind::Last,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Last => "last_value",
            ModelKind::SeasonalDaily => "seasonal_naive_daily",
            ModelKind::SeasonalWeekly => "seasonal_naive_weekly",
            ModelKind::WeeklyMedian => "seasonal_median_weekly",
            ModelKind::Ets => "ets",
            ModelKind::Mstl => "mstl_ets",
            ModelKind::DailyProfile => "profile_daily",
            ModelKind::WeeklyProfile => "profile_weekly",
            ModelKind::Ensemble => "ensemble_median",
        }
    }
}

/// How the models see the history.
#[derive(Debug, Clone, Copy)]
pub struct ModelSettings {
    /// The ETS and MSTL models work at this step (or the history's, if coarser).
    pub model_step_ms: u64,
    /// MSTL trains on at most this much history.
    pub train_span_ms: u64,
    /// Plain ETS trains on at most this much (it has no seasonality to learn).
    pub ets_span_ms: u64,
}

/// The forecast path of `kind` from `history` (which ends at the fit
/// time) over `horizon_ms`; `None` when the model does not apply (too little
/// history) or fails to fit, and for the ensemble (see `median_path`).
pub fn fit_path(
    kind: ModelKind,
    history: &Series,
    horizon_ms: u64,
    settings: &ModelSettings,
) -> Option<Series> {
    let filled = history.filled()?;
    let history = Series::new(history.start_ms, history.step_ms, filled);
    let path = match kind {
        ModelKind::Last => {
            let last = *history.values.last()?;
            let steps = horizon_steps(horizon_ms, history.step_ms);
            Series::new(history.end_ms(), history.step_ms, vec![last; steps])
        }
        ModelKind::SeasonalDaily => seasonal_naive(&history, DAY_MS, horizon_ms)?,
        ModelKind::SeasonalWeekly => seasonal_naive(&history, WEEK_MS, horizon_ms)?,
        ModelKind::WeeklyMedian => seasonal_median(&history, WEEK_MS, MEDIAN_CYCLES, horizon_ms)?,
        ModelKind::Ets => {
            let coarse = coarsen(&history, settings.model_step_ms, settings.ets_span_ms);
            ets(&coarse, horizon_ms)?
        }
        ModelKind::Mstl => {
            let coarse = coarsen(&history, settings.model_step_ms, settings.train_span_ms);
            mstl(&coarse, horizon_ms)?
        }
        ModelKind::DailyProfile => profile_path(&history, DAY_MS, horizon_ms, settings)?,
        ModelKind::WeeklyProfile => profile_path(&history, WEEK_MS, horizon_ms, settings)?,
        ModelKind::Ensemble => return None,
    };
    let values = path.values.iter().map(|v| v.max(0.0)).collect();
    Some(Series::new(path.start_ms, path.step_ms, values))
}

/// The pointwise median of `paths` on the finest step among them, from
/// `start_ms` over `horizon_ms`; needs at least three paths.
pub fn median_path(paths: &[&Series], start_ms: u64, horizon_ms: u64) -> Option<Series> {
    if paths.len() < 3 {
        return None;
    }
    let step_ms = paths.iter().map(|p| p.step_ms).min()?;
    let values = (0..horizon_steps(horizon_ms, step_ms))
        .map(|i| {
            let at = start_ms + i as u64 * step_ms;
            let mut points: Vec<f64> = paths.iter().filter_map(|p| p.at(at)).collect();
            median(&mut points)
        })
        .collect();
    Some(Series::new(start_ms, step_ms, values))
}

/// The median (the mean of the middle two for an even count); NaN for none.
pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        len if len.is_multiple_of(2) => (values[mid - 1] + values[mid]) / 2.0,
        _ => values[mid],
    }
}

fn horizon_steps(horizon_ms: u64, step_ms: u64) -> usize {
    horizon_ms.div_ceil(step_ms) as usize + 1
}

/// The history at the model step, its last `span_ms`. Each coarse sample
/// is the mean of the fine samples in its bucket, so it is stamped at
/// their centre, not at the bucket start.
pub(super) fn coarsen(history: &Series, model_step_ms: u64, span_ms: u64) -> Series {
    let step_ms = model_step_ms.max(history.step_ms);
    let mut coarse = history.downsample(step_ms / history.step_ms * history.step_ms);
    coarse.start_ms += (coarse.step_ms - history.step_ms) / 2;
    coarse.tail((span_ms / coarse.step_ms) as usize)
}

/// Repeats the last full season; needs one whole season of history.
fn seasonal_naive(history: &Series, period_ms: u64, horizon_ms: u64) -> Option<Series> {
    let period = (period_ms / history.step_ms) as usize;
    let len = history.values.len();
    if period == 0 || len < period {
        return None;
    }
    let steps = horizon_steps(horizon_ms, history.step_ms);
    let values = (0..steps)
        .map(|ahead| {
            let cycles = ahead / period + 1;
            history.values[len + ahead - cycles * period]
        })
        .collect();
    Some(Series::new(history.end_ms(), history.step_ms, values))
}

/// The median, per slot, of the last `cycles` whole seasons that precede
/// it; needs two seasons of history (with one it is the seasonal naive).
fn seasonal_median(
    history: &Series,
    period_ms: u64,
    cycles: usize,
    horizon_ms: u64,
) -> Option<Series> {
    let period = (period_ms / history.step_ms) as usize;
    let len = history.values.len();
    if period == 0 || len < 2 * period {
        return None;
    }
    let mut slot = Vec::with_capacity(cycles);
    let values = (0..horizon_steps(horizon_ms, history.step_ms))
        .map(|ahead| {
            let first = ahead / period + 1;
            slot.clear();
            slot.extend(
                (first..first + cycles)
                    .filter_map(|cycle| (len + ahead).checked_sub(cycle * period))
                    .map(|index| history.values[index]),
            );
            median(&mut slot)
        })
        .collect();
    finite(Series::new(history.end_ms(), history.step_ms, values))
}

/// The path after the last sample: `point` lies at steps 1..=h past the
/// last sample, so the path's first value (at the fit time) is the last
/// sample's level.
pub(super) fn path_from(history: &Series, point: &[f64]) -> Series {
    let last = history.values.last().copied().unwrap_or(0.0);
    let mut values = Vec::with_capacity(point.len() + 1);
    values.push(last);
    values.extend_from_slice(point);
    Series::new(
        history.time_of(history.values.len() - 1),
        history.step_ms,
        values,
    )
}

/// Non-seasonal ETS with no trend or a damped one: an undamped trend
/// extrapolated a day ahead from a burst runs off to zero or infinity.
fn trend_model() -> AutoETS {
    AutoETS::non_seasonal()
        .damped(true)
        .expect("a damped trend is valid for a ZZN search")
}

fn ets(history: &Series, horizon_ms: u64) -> Option<Series> {
    if history.values.len() < 16 {
        return None;
    }
    let model = trend_model().fit(&history.values).ok()?;
    let forecast = model
        .predict(horizon_steps(horizon_ms, history.step_ms), None)
        .ok()?;
    finite(path_from(history, &forecast.point))
}

fn mstl(history: &Series, horizon_ms: u64) -> Option<Series> {
    let len = history.values.len();
    // A period is learned only with two whole cycles of history.
    let periods: Vec<usize> = [DAY_MS, WEEK_MS]
        .iter()
        .map(|&period_ms| (period_ms / history.step_ms) as usize)
        .filter(|&period| period >= 2 && len >= 2 * period)
        .collect();
    if periods.is_empty() {
        return None;
    }
    // Seasons of load are multiplicative (the night is a fraction of the
    // day, whatever the level): fitted on logs, the model's errors are
    // relative, as sMAPE and the capacity headroom are.
    let offset = log_offset(&history.values);
    let logs: Vec<f64> = history.values.iter().map(|v| (v + offset).ln()).collect();
    let trend = AutoETSTrendModel::from(trend_model());
    let model = MSTLModel::new(periods, trend).fit(&logs).ok()?;
    let forecast = model
        .predict(horizon_steps(horizon_ms, history.step_ms), None)
        .ok()?;
    let point: Vec<f64> = forecast
        .point
        .iter()
        .map(|log| (log.exp() - offset).max(0.0))
        .collect();
    finite(path_from(history, &point))
}

/// Added before taking logs so that zeros (an outage) stay finite: a
/// small fraction of the typical level, so it barely bends the seasons.
pub(super) fn log_offset(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    (median(&mut sorted) * 0.01).max(1e-3)
}

fn finite(path: Series) -> Option<Series> {
    path.values.iter().all(|v| v.is_finite()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MS: u64 = 30 * 60_000;

    /// A daily sine plus a weekend dip, 30-minute samples.
    fn seasonal(days: u64) -> Series {
        let per_day = DAY_MS / STEP_MS;
        let values = (0..days * per_day)
            .map(|i| {
                let phase = (i % per_day) as f64 / per_day as f64;
                let weekend = if (i / per_day) % 7 >= 5 { 0.7 } else { 1.0 };
                weekend * (1000.0 + 500.0 * (phase * std::f64::consts::TAU).sin())
            })
            .collect();
        Series::new(0, STEP_MS, values)
    }

    fn settings() -> ModelSettings {
        ModelSettings {
            model_step_ms: STEP_MS,
            train_span_ms: 28 * DAY_MS,
            ets_span_ms: 3 * DAY_MS,
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_cycle() {
        let history = seasonal(8);
        let path = fit_path(ModelKind::SeasonalWeekly, &history, DAY_MS, &settings())
            .expect("a week of history");
        assert_eq!(path.start_ms, history.end_ms());
        let week = (WEEK_MS / STEP_MS) as usize;
        let len = history.values.len();
        assert_eq!(path.values[0], history.values[len - week]);
        assert_eq!(path.values[5], history.values[len - week + 5]);
        assert!(fit_path(ModelKind::SeasonalWeekly, &seasonal(6), DAY_MS, &settings()).is_none());
    }

    #[test]
    fn the_weekly_median_outvotes_one_odd_week() {
        let week = (WEEK_MS / STEP_MS) as usize;
        let mut history = seasonal(28);
        let len = history.values.len();
        // The last week doubled (a holiday, a burst): the naive repeats it.
        for v in &mut history.values[len - week..] {
            *v *= 2.0;
        }
        let median = fit_path(ModelKind::WeeklyMedian, &history, DAY_MS, &settings())
            .expect("four weeks of history");
        let naive = fit_path(ModelKind::SeasonalWeekly, &history, DAY_MS, &settings())
            .expect("a week of history");
        let truth = seasonal(29);
        let error = |path: &Series| {
            let pairs = (0..48u64).map(|i| {
                let at = history.end_ms() + i * STEP_MS;
                (
                    truth.values[(at / STEP_MS) as usize],
                    path.at(at).expect("in the path"),
                )
            });
            crate::series::smape(pairs).expect("pairs")
        };
        assert!(error(&median) < 1.0, "median sMAPE {}", error(&median));
        assert!(error(&naive) > 50.0, "naive sMAPE {}", error(&naive));
        // Needs two weeks; with one it would be the naive.
        assert!(fit_path(ModelKind::WeeklyMedian, &seasonal(13), DAY_MS, &settings()).is_none());
        assert!(fit_path(ModelKind::WeeklyMedian, &seasonal(14), DAY_MS, &settings()).is_some());
    }

    #[test]
    fn mstl_learns_the_daily_shape() {
        let history = seasonal(21);
        let path = fit_path(ModelKind::Mstl, &history, DAY_MS, &settings()).expect("fits");
        let truth = seasonal(22);
        let pairs = (0..48u64).map(|i| {
            let at = history.end_ms() + i * STEP_MS;
            let index = (at / STEP_MS) as usize;
            (truth.values[index], path.at(at).expect("inside the path"))
        });
        let error = crate::series::smape(pairs).expect("pairs");
        assert!(error < 10.0, "sMAPE {error}");
        // Too short for two daily cycles: the model does not apply.
        assert!(fit_path(ModelKind::Mstl, &seasonal(1), DAY_MS, &settings()).is_none());
    }

    /// Nights at a tenth of the day, and the level tripling over four
    /// weeks: a season learned in absolute terms (its mean swing) is too
    /// shallow for the new days and overshoots the new nights; learned in
    /// ratios it fits.
    #[test]
    fn mstl_keeps_seasons_in_proportion_when_the_level_moves() {
        let per_day = DAY_MS / STEP_MS;
        let day = |i: u64| {
            let phase = (i % per_day) as f64 / per_day as f64;
            0.55 - 0.45 * (phase * std::f64::consts::TAU).cos()
        };
        let level = |i: u64| 100.0 * 3f64.powf(i as f64 / (28 * per_day) as f64);
        let sample = |i: u64| level(i) * day(i);
        let history = Series::new(0, STEP_MS, (0..28 * per_day).map(sample).collect());
        let path = fit_path(ModelKind::Mstl, &history, DAY_MS, &settings()).expect("fits");
        let pairs = (0..per_day).map(|i| {
            let at = history.end_ms() + i * STEP_MS;
            (sample(at / STEP_MS), path.at(at).expect("inside the path"))
        });
        let error = crate::series::smape(pairs).expect("pairs");
        assert!(error < 10.0, "sMAPE {error}");
    }

    #[test]
    fn median_path_outvotes_one_model() {
        let flat = |v: f64| Series::new(0, STEP_MS, vec![v; 10]);
        let (a, b, c) = (flat(100.0), flat(110.0), flat(900.0));
        let median = median_path(&[&a, &b, &c], 0, 4 * STEP_MS).expect("three paths");
        assert!(median.values.iter().all(|&v| v == 110.0), "{median:?}");
        assert!(median_path(&[&a, &b], 0, STEP_MS).is_none());
    }

    #[test]
    fn ets_follows_a_level() {
        let history = Series::new(0, STEP_MS, vec![500.0; 100]);
        let path = fit_path(ModelKind::Ets, &history, 3_600_000, &settings()).expect("fits");
        assert!(
            path.values.iter().all(|v| (v - 500.0).abs() < 1.0),
            "{path:?}"
        );
    }
}
