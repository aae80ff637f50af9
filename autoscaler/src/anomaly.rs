//! Anomalies: a measurement far outside the forecast's prediction interval.
//! The distance is counted in half-band widths on the side it falls, so a
//! narrow band (a model that has been accurate) flags smaller surprises.

use crate::api::Anomaly;
use crate::forecast::Band;

/// Signed distance outside the band in half-band widths: 0 inside,
/// positive above, negative below.
pub fn score(measured: f64, band: &Band) -> f64 {
    // A floor on the width keeps a perfect model from flagging noise.
    let floor = (band.mean.abs() * 0.02).max(1.0);
    if measured > band.upper {
        (measured - band.upper) / (band.upper - band.mean).max(floor)
    } else if measured < band.lower {
        -(band.lower - measured) / (band.mean - band.lower).max(floor)
    } else {
        0.0
    }
}

/// An anomaly when the measurement lies more than `sigma` half-bands out.
pub fn detect(stream: &str, at_ms: u64, measured: f64, band: &Band, sigma: f64) -> Option<Anomaly> {
    let score = score(measured, band);
    (score.abs() > sigma).then(|| Anomaly {
        at_ms,
        stream: stream.to_string(),
        measured_eps: measured,
        expected_eps: band.mean,
        lower_eps: band.lower,
        upper_eps: band.upper,
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::ModelKind;

    fn band() -> Band {
        Band {
            mean: 1000.0,
            lower: 800.0,
            upper: 1200.0,
            model: ModelKind::Ets,
        }
    }

    #[test]
    fn scores_by_side_and_width() {
        let cases = [
            (1000.0, 0.0),
            (1200.0, 0.0),
            (1400.0, 1.0),
            (1600.0, 2.0),
            (400.0, -2.0),
        ];
        for (measured, expected) in cases {
            assert!(
                (score(measured, &band()) - expected).abs() < 1e-9,
                "{measured}"
            );
        }
    }

    #[test]
    fn detects_only_beyond_sigma() {
        assert!(detect("s", 5, 1300.0, &band(), 1.0).is_none());
        let anomaly = detect("s", 5, 1700.0, &band(), 1.0).expect("far above");
        assert_eq!(anomaly.at_ms, 5);
        assert!(anomaly.score > 2.0);
        assert!(
            detect("s", 5, 100.0, &band(), 1.0)
                .expect("far below")
                .score
                < 0.0
        );
    }
}
