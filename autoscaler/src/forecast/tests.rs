//! Forecaster tests: model selection on seasonal series, scoring across
//! refits, and the re-level when measurements leave the band.

use proptest::prelude::*;

use super::*;

const STEP_MS: u64 = 30 * 60_000;

fn daily(days: u64, noise: bool) -> Series {
    let per_day = DAY_MS / STEP_MS;
    let values = (0..days * per_day)
        .map(|i| {
            let phase = (i % per_day) as f64 / per_day as f64;
            let jitter = if noise {
                ((i * 7919) % 13) as f64 * 5.0
            } else {
                0.0
            };
            1000.0 + 600.0 * (phase * std::f64::consts::TAU).sin() + jitter
        })
        .collect();
    Series::new(0, STEP_MS, values)
}

#[test]
fn picks_a_seasonal_model_for_a_seasonal_series() {
    let history = daily(10, true);
    let mut forecaster = Forecaster::new(ForecastConfig::default());
    forecaster.refit(&history);
    let model = forecaster.model_for(3_600_000).expect("a model");
    assert!(
        matches!(
            model,
            ModelKind::Mstl
                | ModelKind::SeasonalDaily
                | ModelKind::SeasonalWeekly
                | ModelKind::DailyProfile
                | ModelKind::WeeklyProfile
        ),
        "{model:?}, scores {:?}",
        forecaster.scores()
    );
    let now = history.end_ms();
    let truth = daily(11, true);
    for ahead in [1u64, 6, 12] {
        let at = now + ahead * STEP_MS;
        let band = forecaster.band_at(at).expect("band");
        let actual = truth.at(at).expect("truth");
        assert!(
            band.lower <= band.mean && band.mean <= band.upper,
            "{band:?}"
        );
        assert!(
            (band.mean - actual).abs() / actual < 0.15,
            "{band:?} vs {actual}"
        );
    }
}

#[test]
fn refits_score_the_previous_paths() {
    let full = daily(12, false);
    let mut forecaster = Forecaster::new(ForecastConfig::default());
    forecaster.refit(&full.until(10 * DAY_MS));
    let before = forecaster.scores();
    forecaster.refit(&full.until(10 * DAY_MS + 4 * 3_600_000));
    let after = forecaster.scores();
    assert_ne!(before, after);
    assert_eq!(forecaster.fitted_at_ms(), Some(10 * DAY_MS + 4 * 3_600_000));
    // A flat "last value" cannot beat a seasonal model on a clean sine.
    let score = |kind| {
        after
            .iter()
            .find(|(k, _, _)| *k == kind)
            .and_then(|(_, short, _)| *short)
            .expect("scored")
    };
    assert!(score(ModelKind::SeasonalDaily) < score(ModelKind::Last));
}

#[test]
fn a_level_the_band_misses_for_three_measurements_is_taken_at_once() {
    let history = Series::new(0, 60_000, vec![1000.0; 120]);
    let mut forecaster = Forecaster::new(ForecastConfig::default());
    forecaster.refit(&history);
    let now = history.end_ms();
    let mean_at = |f: &Forecaster, at| f.band_at(at).expect("band").mean;
    // One measurement inside the band in between restarts the count.
    let measured = [1000.0, 10.0, 10.0, 1000.0, 10.0, 10.0];
    for (i, actual) in measured.into_iter().enumerate() {
        forecaster.observe(now + i as u64 * 10_000, actual);
    }
    let held = mean_at(&forecaster, now + 50_000);
    assert!(held > 700.0, "{held}");
    let after = now + 60_000;
    forecaster.observe(after, 10.0);
    assert!((mean_at(&forecaster, after) - 10.0).abs() < 1.0);
    // Fitted on two hours, the model knows no shape: the level holds.
    assert!((mean_at(&forecaster, after + 3_600_000) - 10.0).abs() < 1.0);
}

/// A seasoned model (a day of history or more) that measurements dip
/// below is not re-levelled down: following a dip at once left it low when
/// the load came back (ec2 in the simulator). Above its band it still is.
#[test]
fn a_seasoned_model_is_re_levelled_upwards_only() {
    let history = Series::new(0, 60_000, vec![1000.0; 26 * 60]);
    let now = history.end_ms();
    let mean_at = |f: &Forecaster, at| f.band_at(at).expect("band").mean;
    let run = |then: f64| {
        let mut forecaster = Forecaster::new(ForecastConfig::default());
        forecaster.refit(&history);
        let measured = [1000.0; 10].into_iter().chain([then; 4]);
        for (i, actual) in measured.enumerate() {
            forecaster.observe(now + i as u64 * 10_000, actual);
        }
        mean_at(&forecaster, now + 130_000)
    };
    let held = run(10.0);
    assert!(
        held > 700.0,
        "a seasoned model followed a dip at once: {held}"
    );
    let raised = run(3000.0);
    assert!((raised - 3000.0).abs() < 10.0, "{raised}");
}

#[test]
fn a_recurring_spike_arriving_early_does_not_move_the_level() {
    // Three days of 5-minute samples at about 100, 1300 at minute 10 of
    // every hour.
    const STEP: u64 = 300_000;
    const HOUR: u64 = 3_600_000;
    let values = (0..3 * DAY_MS / STEP)
        .map(|i| {
            if i * STEP % HOUR == 600_000 {
                1300.0
            } else {
                100.0 + (i % 3) as f64
            }
        })
        .collect();
    let history = Series::new(0, STEP, values);
    let mut forecaster = Forecaster::new(ForecastConfig::default());
    forecaster.refit(&history);
    let hour = history.end_ms();
    let expected = forecaster.band_at(hour + 600_000).expect("a band").mean;
    assert!(expected > 600.0, "the spike is placed: {expected}");
    // This hour's spike comes from minute 1, every 10 s.
    for at in (hour + 60_000..hour + 600_000).step_by(10_000) {
        forecaster.observe(at, 1300.0);
    }
    let spike = forecaster.band_at(hour + 600_000).expect("a band").mean;
    assert!(spike < 1.5 * expected, "{spike} against {expected}");
    // Away from it the level still follows the measurements.
    for at in (hour + 30 * 60_000..hour + 45 * 60_000).step_by(10_000) {
        forecaster.observe(at, 300.0);
    }
    let level = forecaster.band_at(hour + 45 * 60_000).expect("a band").mean;
    assert!(level > 200.0, "{level}");
}

#[test]
fn no_band_before_a_fit() {
    let forecaster = Forecaster::new(ForecastConfig::default());
    assert!(forecaster.band_at(0).is_none());
    assert!(forecaster.model_for(0).is_none());
}

/// A score remembers a span of time: scored every minute (the broker's
/// history) or every half hour (a trace), with four paths reaching each
/// sample or one, the same two days of errors give the same score. Per
/// scored pair, the broker's day-ahead choice remembered about an hour.
#[test]
fn a_score_weighs_time_not_samples() {
    let score_over = |step_ms: u64, paths: usize| {
        let mut score = Score::default();
        let mut at_ms = 0;
        while at_ms < 2 * DAY_MS {
            // 10% off for a day, then 30% off: sMAPE terms of 9.52 and 26.09.
            let forecast = if at_ms < DAY_MS { 110.0 } else { 130.0 };
            score.add(100.0, &vec![forecast; paths], step_ms, SCORE_SPAN_LONG_MS);
            at_ms += step_ms;
        }
        score.smape.expect("scored")
    };
    let broker = score_over(60_000, 4);
    let trace = score_over(30 * 60_000, 1);
    assert!((broker - trace).abs() < 0.5, "{broker} against {trace}");
    // A week's span: the first day weighs e^(-1/7) of the second.
    let decay = (-1.0f64 / 7.0).exp();
    let expected = (9.52 * decay + 26.09) / (1.0 + decay);
    assert!(
        (broker - expected).abs() < 0.05,
        "{broker} against {expected}"
    );
}

/// Early on, a score is the mean of what it has seen: the first sample's
/// error does not hold it for a span (a day, at minute steps).
#[test]
fn an_early_score_is_the_mean_so_far() {
    let mut score = Score::default();
    score.add(100.0, &[300.0], 60_000, SCORE_SPAN_SHORT_MS);
    for _ in 0..99 {
        score.add(100.0, &[100.0], 60_000, SCORE_SPAN_SHORT_MS);
    }
    // One term of 100 and 99 of 0.
    let smape = score.smape.expect("scored");
    assert!((smape - 1.0).abs() < 0.1, "{smape}");
}

/// A history of 30-minute samples: a level, a daily wave, noise, and runs
/// of missing samples, outages (zeros) and bursts.
fn arbitrary_history() -> impl Strategy<Value = Series> {
    let sample = prop_oneof![
        8 => (0.0f64..1.0).prop_map(Some),
        1 => Just(None),
        1 => Just(Some(-1.0)),
        1 => (10.0f64..1000.0).prop_map(Some),
    ];
    (
        1.0f64..1e7,
        0usize..20 * 48,
        prop::collection::vec(sample, 64),
    )
        .prop_map(|(level, len, pattern)| {
            let values = (0..len)
                .map(|i| match pattern[(i * 7 + i / 48) % pattern.len()] {
                    None => f64::NAN,
                    Some(v) if v < 0.0 => 0.0,
                    Some(v) => {
                        let phase = (i % 48) as f64 / 48.0;
                        level * (1.0 + 0.5 * (phase * std::f64::consts::TAU).sin()) * (0.5 + v)
                    }
                })
                .collect();
            Series::new(1_700_000_000_000, STEP_MS, values)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the history (gaps, outages, bursts, a few samples or
    /// weeks), every model either declines or gives finite, non-negative
    /// means, and the forecaster's band holds its mean.
    #[test]
    fn every_history_gives_a_sane_forecast_or_none(history in arbitrary_history()) {
        let settings = ForecastConfig::default().models;
        for kind in ModelKind::ALL {
            if let Some(path) = models::fit_path(kind, &history, DAY_MS, &settings) {
                prop_assert!(
                    path.values.iter().all(|v| v.is_finite() && *v >= 0.0),
                    "{kind:?}: {:?}",
                    path.values
                );
            }
        }
        let mut forecaster = Forecaster::new(ForecastConfig::default());
        forecaster.refit(&history);
        let now = history.end_ms();
        forecaster.observe(now, history.values.last().copied().unwrap_or(0.0));
        for ahead in [0, 1, 6, 24] {
            if let Some(band) = forecaster.band_at(now + ahead * 3_600_000) {
                prop_assert!(band.mean.is_finite() && band.lower.is_finite() && band.upper.is_finite(), "{band:?}");
                prop_assert!(band.lower <= band.mean && band.mean <= band.upper, "{band:?}");
                prop_assert!(band.lower >= 0.0, "{band:?}");
            }
        }
    }
}
