//! A regular time series (fixed step, NaN for a missing sample), the
//! resampling helpers the history, the forecaster and the simulator share,
//! and the growth and trend of a rate from its last few measurements.

use std::collections::VecDeque;

/// Measurements kept to estimate a rate's growth and trend.
const RECENT_MAX: usize = 7;

/// The last few measurements of a rate, for its current growth and trend.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    samples: VecDeque<(u64, f64)>,
}

impl Recent {
    pub fn push(&mut self, at_ms: u64, value: f64) {
        self.samples.push_back((at_ms, value));
        while self.samples.len() > RECENT_MAX {
            self.samples.pop_front();
        }
    }

    pub fn last(&self) -> Option<f64> {
        self.samples.back().map(|&(_, v)| v)
    }

    /// Growth per second while the rate is still rising: the larger of the
    /// slope over the window and over the last step, or nothing once the
    /// last step stops rising. The window's slope alone lags a ramp's onset
    /// by most of its length, which is when a burst outruns capacity; and
    /// after a step change it would go on extrapolating a rise that is
    /// over, for the whole window.
    pub fn growth_per_s(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let last = slope(self.samples[n - 2], self.samples[n - 1]);
        if last <= 0.0 {
            return 0.0;
        }
        last.max(self.trend_per_s())
    }

    /// The slope over the whole window, signed: where the rate is heading
    /// once a step's noise is averaged out. A fall shows here for the
    /// window's length after it ends.
    pub fn trend_per_s(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&first), Some(&last)) => slope(first, last),
            _ => 0.0,
        }
    }
}

/// Per second, between two (ms, value) samples.
fn slope((t0, v0): (u64, f64), (t1, v1): (u64, f64)) -> f64 {
    if t1 > t0 {
        (v1 - v0) / ((t1 - t0) as f64 / 1000.0)
    } else {
        0.0
    }
}

/// Values at `start_ms + i * step_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start_ms: u64,
    pub step_ms: u64,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(start_ms: u64, step_ms: u64, values: Vec<f64>) -> Self {
        assert!(step_ms > 0, "a series needs a positive step");
        Self {
            start_ms,
            step_ms,
            values,
        }
    }

    /// Time just past the last sample.
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.step_ms * self.values.len() as u64
    }

    pub fn time_of(&self, index: usize) -> u64 {
        self.start_ms + self.step_ms * index as u64
    }

    /// The samples before `end_ms`.
    pub fn until(&self, end_ms: u64) -> Series {
        let count = if end_ms <= self.start_ms {
            0
        } else {
            (((end_ms - self.start_ms) / self.step_ms) as usize).min(self.values.len())
        };
        Series::new(self.start_ms, self.step_ms, self.values[..count].to_vec())
    }

    /// The last `count` samples.
    pub fn tail(&self, count: usize) -> Series {
        let skip = self.values.len().saturating_sub(count);
        Series::new(
            self.time_of(skip),
            self.step_ms,
            self.values[skip..].to_vec(),
        )
    }

    /// Linear interpolation between samples; the ends are held flat.
    pub fn at(&self, at_ms: u64) -> Option<f64> {
        let last = self.values.len().checked_sub(1)?;
        if at_ms <= self.start_ms {
            return Some(self.values[0]);
        }
        let offset = (at_ms - self.start_ms) as f64 / self.step_ms as f64;
        let index = offset.floor() as usize;
        if index >= last {
            return Some(self.values[last]);
        }
        let frac = offset - index as f64;
        Some(self.values[index] * (1.0 - frac) + self.values[index + 1] * frac)
    }

    /// Averages groups of samples into a coarser step (a multiple of this
    /// one), ignoring missing samples; a group with none stays missing.
    pub fn downsample(&self, step_ms: u64) -> Series {
        let factor = (step_ms / self.step_ms).max(1) as usize;
        if factor == 1 {
            return self.clone();
        }
        // Align groups to multiples of the new step so refits see stable buckets.
        let phase = ((self.start_ms % step_ms) / self.step_ms) as usize;
        let skip = (factor - phase) % factor;
        let start_ms = self.time_of(skip);
        let values = self.values[skip.min(self.values.len())..]
            .chunks(factor)
            .filter(|chunk| chunk.len() == factor)
            .map(|chunk| {
                let present: Vec<f64> = chunk.iter().copied().filter(|v| v.is_finite()).collect();
                if present.is_empty() {
                    f64::NAN
                } else {
                    present.iter().sum::<f64>() / present.len() as f64
                }
            })
            .collect();
        Series::new(start_ms, step_ms, values)
    }

    /// A copy with isolated spikes replaced by the median of their
    /// neighbours (a Hampel filter): a sample more than `mads` scaled
    /// median absolute deviations from the median of the `half_window`
    /// samples either side. Level shifts longer than the window stay.
    pub fn despiked(&self, half_window: usize, mads: f64) -> Series {
        let mut out = self.values.clone();
        let mut window = Vec::with_capacity(2 * half_window + 1);
        let mut deviations = Vec::with_capacity(2 * half_window + 1);
        for (i, slot) in out.iter_mut().enumerate() {
            if !self.values[i].is_finite() {
                continue;
            }
            let from = i.saturating_sub(half_window);
            let to = (i + half_window + 1).min(self.values.len());
            window.clear();
            window.extend(
                self.values[from..to]
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite()),
            );
            let Some(median) = quantile(&window, 0.5) else {
                continue;
            };
            deviations.clear();
            deviations.extend(window.iter().map(|v| (v - median).abs()));
            let mad = quantile(&deviations, 0.5).unwrap_or(0.0) * 1.4826;
            if mad > 0.0 && (self.values[i] - median).abs() > mads * mad {
                *slot = median;
            }
        }
        Series::new(self.start_ms, self.step_ms, out)
    }

    /// Fills missing samples by linear interpolation (held flat at the ends);
    /// `None` when no sample is present.
    pub fn filled(&self) -> Option<Vec<f64>> {
        let present: Vec<usize> = (0..self.values.len())
            .filter(|&i| self.values[i].is_finite())
            .collect();
        let first = *present.first()?;
        let last = *present.last()?;
        let mut out = self.values.clone();
        out[..first].fill(self.values[first]);
        out[last..].fill(self.values[last]);
        for pair in present.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            for (i, slot) in out.iter_mut().enumerate().take(b).skip(a + 1) {
                let frac = (i - a) as f64 / (b - a) as f64;
                *slot = self.values[a] * (1.0 - frac) + self.values[b] * frac;
            }
        }
        Some(out)
    }
}

/// Symmetric mean absolute percentage error (0..=200) over pairs of
/// (actual, forecast); pairs where both are zero count as exact.
pub fn smape(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let mut sum = 0.0;
    let mut count = 0usize;
    for (actual, forecast) in pairs {
        if !actual.is_finite() || !forecast.is_finite() {
            continue;
        }
        let denominator = actual.abs() + forecast.abs();
        if denominator > 0.0 {
            sum += 200.0 * (forecast - actual).abs() / denominator;
        }
        count += 1;
    }
    (count > 0).then(|| sum / count as f64)
}

/// The log ratio of actual to forecast, both floored at a tenth of the
/// larger (and at 1): a zero on either side (an outage in the data, a model
/// gone to zero) bounds the error at ln 11 instead of letting it dominate
/// a band.
pub fn log_ratio(actual: f64, forecast: f64) -> f64 {
    let (actual, forecast) = (actual.max(0.0), forecast.max(0.0));
    let floor = (0.1 * actual.max(forecast)).max(1.0);
    ((actual + floor) / (forecast + floor)).ln()
}

/// The `q` quantile (0..=1) of `values`, by nearest rank.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[rank])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_catches_a_ramp_at_once_and_ends_with_it() {
        let mut recent = Recent::default();
        assert_eq!(recent.growth_per_s(), 0.0);
        for i in 0..6 {
            recent.push(i * 10_000, 1000.0);
        }
        assert_eq!(recent.growth_per_s(), 0.0);
        // A rise of 30/s: the window's slope (300 over 60 s = 5/s) lags
        // it, the last step has it.
        recent.push(60_000, 1300.0);
        assert!((recent.growth_per_s() - 30.0).abs() < 1e-9);
        // A slower step inside the rise: the window's slope holds it.
        recent.push(70_000, 1310.0);
        let window = (1310.0 - 1000.0) / 60.0;
        assert!((recent.growth_per_s() - window).abs() < 1e-9);
        // The rise is over (a step change, not a ramp): nothing to
        // extrapolate, though the window still climbs.
        recent.push(80_000, 1310.0);
        assert_eq!(recent.growth_per_s(), 0.0);
        recent.push(90_000, 1200.0);
        assert_eq!(recent.growth_per_s(), 0.0);
        assert_eq!(recent.last(), Some(1200.0));
    }

    #[test]
    fn the_trend_keeps_a_fall_for_the_window() {
        let mut recent = Recent::default();
        assert_eq!(recent.trend_per_s(), 0.0);
        for (i, rate) in [4000.0, 3000.0, 2000.0, 1000.0].into_iter().enumerate() {
            recent.push(i as u64 * 10_000, rate);
        }
        assert!((recent.trend_per_s() + 100.0).abs() < 1e-9);
        assert_eq!(recent.growth_per_s(), 0.0);
        // Flat since: the fall stays in the window until it leaves it.
        for i in 4..7 {
            recent.push(i * 10_000, 1000.0);
        }
        assert!((recent.trend_per_s() + 50.0).abs() < 1e-9);
        for i in 7..10 {
            recent.push(i * 10_000, 1000.0);
        }
        assert_eq!(recent.trend_per_s(), 0.0);
    }

    #[test]
    fn interpolates_between_samples() {
        let series = Series::new(1000, 100, vec![10.0, 20.0, 40.0]);
        assert_eq!(series.at(1000), Some(10.0));
        assert_eq!(series.at(1050), Some(15.0));
        assert_eq!(series.at(1150), Some(30.0));
        assert_eq!(series.at(5000), Some(40.0));
        assert_eq!(Series::new(0, 1, vec![]).at(0), None);
    }

    #[test]
    fn downsample_aligns_and_skips_missing() {
        let series = Series::new(
            10,
            10,
            vec![1.0, 3.0, f64::NAN, 5.0, f64::NAN, f64::NAN, f64::NAN],
        );
        let coarse = series.downsample(20);
        assert_eq!(coarse.start_ms, 20);
        assert_eq!(coarse.values.len(), 3);
        assert_eq!(coarse.values[0], 3.0);
        assert_eq!(coarse.values[1], 5.0);
        assert!(coarse.values[2].is_nan());
    }

    #[test]
    fn filled_interpolates_gaps() {
        let series = Series::new(0, 1, vec![f64::NAN, 2.0, f64::NAN, 6.0, f64::NAN]);
        assert_eq!(series.filled(), Some(vec![2.0, 2.0, 4.0, 6.0, 6.0]));
        assert_eq!(Series::new(0, 1, vec![f64::NAN]).filled(), None);
    }

    #[test]
    fn despiking_removes_spikes_not_shifts() {
        let mut values = vec![10.0, 11.0, 10.0, 12.0, 500.0, 11.0, 10.0, 12.0, 11.0];
        values.extend([50.0, 51.0, 50.0, 52.0, 51.0, 50.0, 51.0]);
        let cleaned = Series::new(0, 1, values.clone()).despiked(3, 5.0);
        assert!(cleaned.values[4] < 20.0, "{:?}", cleaned.values);
        assert_eq!(cleaned.values[12..], values[12..]);
        assert_eq!(cleaned.values[..4], values[..4]);
    }

    #[test]
    fn log_ratio_is_bounded() {
        assert_eq!(log_ratio(100.0, 100.0), 0.0);
        assert!((log_ratio(0.0, 1e6) + 11f64.ln()).abs() < 1e-9);
        assert!((log_ratio(1e6, 0.0) - 11f64.ln()).abs() < 1e-9);
        assert!(log_ratio(200.0, 100.0) > 0.5);
    }

    #[test]
    fn smape_and_quantile() {
        assert_eq!(smape([(100.0, 100.0), (0.0, 0.0)]), Some(0.0));
        let err = smape([(100.0, 300.0)]).expect("one pair");
        assert!((err - 100.0).abs() < 1e-9);
        assert_eq!(quantile(&[5.0, 1.0, 3.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
