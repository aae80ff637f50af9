//! The seasonal profile model: the median of the last few seasons in logs
//! (robust to a holiday or an outage in one of them), plus the last hour's
//! deviation from it, carried forward as far as such deviations persisted
//! in the history at each horizon. A busy morning says something about
//! the next hour and a little about tomorrow; how much is learned, per
//! horizon, by least squares on the stream's own history.

use super::models::{coarsen, log_offset, median, path_from, ModelSettings};
use crate::series::Series;

/// Seasons the profile is the median of (fewer while history is short).
pub const CYCLES: usize = 8;
/// The profile needs this many seasons; with one it is the seasonal naive.
const CYCLES_MIN: usize = 2;
/// The deviation carried forward is the mean over this last span.
const DEVIATION_SPAN_MS: u64 = 3_600_000;

/// The path over `horizon_ms` after `history`, at the model step; `None`
/// with fewer than two seasons of history.
pub fn profile_path(
    history: &Series,
    period_ms: u64,
    horizon_ms: u64,
    settings: &ModelSettings,
) -> Option<Series> {
    // The deviations are learned over the training span, and each of
    // them needs the seasons before it.
    let span_ms = settings.train_span_ms + CYCLES as u64 * period_ms;
    let history = coarsen(history, settings.model_step_ms, span_ms);
    let step_ms = history.step_ms;
    let period = (period_ms / step_ms) as usize;
    let len = history.values.len();
    if period == 0 || len < CYCLES_MIN * period {
        return None;
    }
    let offset = log_offset(&history.values);
    let logs: Vec<f64> = history.values.iter().map(|v| (v + offset).ln()).collect();
    let profile = |index: usize| -> Option<f64> {
        // Seasons at or before the last sample only.
        let first = (index + 1).saturating_sub(len).div_ceil(period).max(1);
        let mut seasons: Vec<f64> = (first..first + CYCLES)
            .filter_map(|cycle| index.checked_sub(cycle * period))
            .map(|at| logs[at])
            .collect();
        (seasons.len() >= CYCLES_MIN).then(|| median(&mut seasons))
    };
    let deviation: Vec<Option<f64>> = (0..len)
        .map(|index| profile(index).map(|p| logs[index] - p))
        .collect();
    let window = ((DEVIATION_SPAN_MS / step_ms) as usize).max(1);
    let recent: Vec<Option<f64>> = (0..len)
        .map(|end| {
            let from = (end + 1).checked_sub(window)?;
            deviation[from..=end]
                .iter()
                .copied()
                .sum::<Option<f64>>()
                .map(|sum| sum / window as f64)
        })
        .collect();
    let now = recent[len - 1].unwrap_or(0.0);
    let train_from = len.saturating_sub((settings.train_span_ms / step_ms) as usize);
    let steps = horizon_ms.div_ceil(step_ms) as usize;
    let point: Vec<f64> = (1..=steps)
        .map(|ahead| {
            let persistence = persistence(&recent[train_from..], &deviation[train_from..], ahead);
            let log = profile(len - 1 + ahead).unwrap_or(logs[len - 1]) + persistence * now;
            (log.exp() - offset).max(0.0)
        })
        .collect();
    let path = path_from(&history, &point);
    path.values.iter().all(|v| v.is_finite()).then_some(path)
}

/// How much of a recent deviation is still there `ahead` steps later: the
/// least-squares slope (through the origin) of the deviation then on the
/// recent mean now, between 0 (gone) and 1 (all of it); 0 without pairs.
fn persistence(recent: &[Option<f64>], deviation: &[Option<f64>], ahead: usize) -> f64 {
    let (mut cross, mut square) = (0.0, 0.0);
    for (now, later) in recent.iter().zip(deviation.iter().skip(ahead)) {
        if let (Some(now), Some(later)) = (now, later) {
            cross += now * later;
            square += now * now;
        }
    }
    if square > 0.0 {
        (cross / square).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::models::{DAY_MS, WEEK_MS};

    const STEP_MS: u64 = 30 * 60_000;
    const PER_DAY: u64 = DAY_MS / STEP_MS;

    fn settings() -> ModelSettings {
        ModelSettings {
            model_step_ms: STEP_MS,
            train_span_ms: 28 * DAY_MS,
            ets_span_ms: 3 * DAY_MS,
        }
    }

    /// A daily shape, the weekend at 70%, times `level(day)`.
    fn load(days: u64, level: impl Fn(u64) -> f64) -> Series {
        let values = (0..days * PER_DAY)
            .map(|i| {
                let day = i / PER_DAY;
                let phase = (i % PER_DAY) as f64 / PER_DAY as f64;
                let weekend = if day % 7 >= 5 { 0.7 } else { 1.0 };
                level(day) * weekend * (1000.0 + 500.0 * (phase * std::f64::consts::TAU).sin())
            })
            .collect();
        Series::new(0, STEP_MS, values)
    }

    fn ahead(path: &Series, truth: &Series, ahead_ms: u64) -> (f64, f64) {
        let at = path.start_ms + ahead_ms;
        (path.at(at).unwrap(), truth.at(at).unwrap())
    }

    #[test]
    fn a_holiday_week_is_outvoted() {
        // Ten weeks; the second-to-last week at a third of the load.
        let truth = load(71, |day| if (56..63).contains(&day) { 0.33 } else { 1.0 });
        let history = truth.until(70 * DAY_MS);
        let path = profile_path(&history, WEEK_MS, DAY_MS, &settings()).expect("fits");
        let (forecast, actual) = ahead(&path, &truth, 18 * 3_600_000);
        assert!(
            (forecast / actual - 1.0).abs() < 0.05,
            "{forecast} vs {actual}"
        );
    }

    #[test]
    fn a_lasting_shift_is_carried_forward_and_a_passing_one_fades() {
        // A level that has been 30% up for the last two weeks: deviations
        // in the history persist, so today's is carried a day ahead.
        let lasting = load(85, |day| if day >= 70 { 1.3 } else { 1.0 });
        let history = lasting.until(84 * DAY_MS);
        let path = profile_path(&history, WEEK_MS, DAY_MS, &settings()).expect("fits");
        let (forecast, actual) = ahead(&path, &lasting, 20 * 3_600_000);
        assert!(
            (forecast / actual - 1.0).abs() < 0.1,
            "a lasting shift: {forecast} vs {actual}"
        );

        // Busy days that never last past the day: today's is not carried.
        let passing = load(85, |day| if day % 5 == 3 { 1.5 } else { 1.0 });
        let history = passing.until((83 * PER_DAY + PER_DAY / 2) * STEP_MS);
        assert_eq!(
            history.values.len() as u64 / PER_DAY % 5,
            3,
            "today is busy"
        );
        let path = profile_path(&history, WEEK_MS, DAY_MS, &settings()).expect("fits");
        let (forecast, actual) = ahead(&path, &passing, DAY_MS);
        assert!(
            (forecast / actual - 1.0).abs() < 0.1,
            "a passing shift: {forecast} vs {actual}"
        );
        let (soon, actual_soon) = ahead(&path, &passing, 3_600_000);
        assert!(
            soon > 1.3 * actual_soon / 1.5,
            "an hour ahead the busy day still shows: {soon} vs {actual_soon}"
        );
    }

    #[test]
    fn needs_two_seasons() {
        let history = load(13, |_| 1.0);
        assert!(profile_path(&history, WEEK_MS, DAY_MS, &settings()).is_none());
        assert!(profile_path(&history, DAY_MS, DAY_MS, &settings()).is_some());
    }
}
