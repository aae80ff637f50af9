//! The forecast as the policy sees it: the peaks of its mean and upper band
//! over the horizons a decision looks ahead, hints already applied.

/// The largest mean and the largest upper band over a horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub mean_eps: f64,
    pub upper_eps: f64,
}

impl Peak {
    /// Over the (mean, upper) pairs of a horizon; `None` without any.
    pub fn of(bands: impl IntoIterator<Item = (f64, f64)>) -> Option<Peak> {
        bands.into_iter().fold(None, |peak, (mean, upper)| {
            Peak::max(
                peak,
                Some(Peak {
                    mean_eps: mean,
                    upper_eps: upper,
                }),
            )
        })
    }

    /// Both peaks at once (a hint beside a model).
    pub fn max(a: Option<Peak>, b: Option<Peak>) -> Option<Peak> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Peak {
                mean_eps: a.mean_eps.max(b.mean_eps),
                upper_eps: a.upper_eps.max(b.upper_eps),
            }),
            (a, b) => a.or(b),
        }
    }

    /// The load to size for at the per-shard target: the expected load
    /// keeps every shard's headroom, the upper band may use it. Headroom on
    /// top of an upper quantile would count one margin twice.
    pub(super) fn load(&self, headroom: f64) -> f64 {
        self.mean_eps.max(self.upper_eps / (1.0 + headroom))
    }
}

/// The forecast as the policy sees it (hints already applied).
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastView {
    pub model: String,
    /// Mean and upper band now, when a model is fitted.
    pub mean_now_eps: Option<f64>,
    pub upper_now_eps: Option<f64>,
    /// Peaks over the growth horizon (lead + horizon): the floor under
    /// the reactive need.
    pub peak: Option<Peak>,
    /// Peaks over the sizing horizon: a merge needs their mean to fit the
    /// smaller topology.
    pub peak_long: Option<Peak>,
}
