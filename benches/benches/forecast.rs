//! The autoscaler's expensive step: refitting a stream's forecaster on
//! the history the broker keeps (minute samples for 90 days), and each
//! candidate model's fit on its own, to see which one the refit pays for.
//! The load is a daily wave with a weekend dip and deterministic noise.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use surge_autoscaler::forecast::models::{fit_path, ModelKind};
use surge_autoscaler::forecast::{ForecastConfig, Forecaster, DAY_MS};
use surge_autoscaler::series::Series;

const STEP_MS: u64 = 60_000;
const HISTORY_DAYS: u64 = 90;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(surge_benches::WARM_UP_TIME)
        .measurement_time(surge_benches::MEASUREMENT_TIME)
        .sample_size(surge_benches::SLOW_SAMPLE_SIZE)
}

fn history(days: u64) -> Series {
    let per_day = DAY_MS / STEP_MS;
    let values = (0..days * per_day)
        .map(|i| {
            let phase = (i % per_day) as f64 / per_day as f64;
            let weekend = if (i / per_day) % 7 >= 5 { 0.6 } else { 1.0 };
            let noise = ((i.wrapping_mul(7_919)) % 101) as f64 / 100.0;
            weekend
                * (5_000.0 + 3_000.0 * (phase * std::f64::consts::TAU).sin())
                * (0.9 + 0.2 * noise)
        })
        .collect();
    Series::new(0, STEP_MS, values)
}

fn refit(c: &mut Criterion) {
    let full = history(HISTORY_DAYS);
    // A forecaster fitted an hour earlier: the refit scores that hour's
    // samples and fits every model again, as the broker's loop does.
    let mut fitted = Forecaster::new(ForecastConfig::default());
    fitted.refit(&full.until(full.end_ms() - 3_600_000));
    let mut group = c.benchmark_group("forecast");
    group.bench_function(
        BenchmarkId::new("refit", format!("{HISTORY_DAYS}d@1min")),
        |b| {
            b.iter_batched(
                || fitted.clone(),
                |mut forecaster| {
                    forecaster.refit(black_box(&full));
                    forecaster
                },
                BatchSize::LargeInput,
            );
        },
    );
    let settings = ForecastConfig::default().models;
    for kind in ModelKind::ALL {
        if kind == ModelKind::Ensemble {
            continue;
        }
        group.bench_function(BenchmarkId::new("fit", kind.name()), |b| {
            b.iter(|| fit_path(kind, black_box(&full), 26 * 3_600_000, &settings));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = refit
}
criterion_main!(benches);
