//! Announced load (`/hint_load`): validated, stored durably before the
//! caller hears Ok, and applied to forecasts inside their window. Expired
//! hints are pruned when a new one is added, so the store stays bounded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{Hint, HintRequest};
use crate::error::AutoscalerError;
use crate::store::{self, Kind};

/// Live hints kept at once; one more is refused.
pub const HINTS_MAX: usize = 10_000;
/// Longest window one hint may cover.
pub const HINT_WINDOW_MS_MAX: u64 = 90 * 24 * 3_600_000;
/// Expired hints stay visible this long before they are pruned.
const EXPIRED_KEEP_MS: u64 = 24 * 3_600_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    next_id: u64,
    hints: Vec<Hint>,
}

#[derive(Debug)]
pub struct HintStore {
    path: PathBuf,
    stored: Stored,
}

impl HintStore {
    pub fn open(state_dir: &Path) -> Result<Self, AutoscalerError> {
        let path = state_dir.join("hints");
        let stored = match store::read(&path, Kind::Hints)? {
            None => Stored::default(),
            Some(body) => {
                serde_json::from_slice(&body).map_err(|err| AutoscalerError::Corrupt {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })?
            }
        };
        Ok(Self { path, stored })
    }

    /// Validates, stores durably, then returns the hint.
    pub fn add(&mut self, request: HintRequest, now_ms: u64) -> Result<Hint, AutoscalerError> {
        validate(&request, now_ms)?;
        let mut stored = Stored {
            next_id: self.stored.next_id + 1,
            hints: self
                .stored
                .hints
                .iter()
                .filter(|hint| hint.end_ms + EXPIRED_KEEP_MS > now_ms)
                .cloned()
                .collect(),
        };
        if stored.hints.len() >= HINTS_MAX {
            return Err(AutoscalerError::invalid(
                "stream",
                format!("{HINTS_MAX} live hints already stored"),
            ));
        }
        let hint = Hint {
            id: self.stored.next_id + 1,
            stream: request.stream,
            start_ms: request.start_ms,
            end_ms: request.end_ms,
            rate_eps: request.rate_eps,
            multiplier: request.multiplier,
            created_ms: now_ms,
        };
        stored.hints.push(hint.clone());
        let body = serde_json::to_vec(&stored).expect("hints serialise to JSON");
        store::write(&self.path, Kind::Hints, &body)?;
        self.stored = stored;
        Ok(hint)
    }

    pub fn for_stream(&self, stream: &str) -> Vec<Hint> {
        self.stored
            .hints
            .iter()
            .filter(|hint| hint.stream == stream)
            .cloned()
            .collect()
    }
}

fn validate(request: &HintRequest, now_ms: u64) -> Result<(), AutoscalerError> {
    if request.stream.is_empty() {
        return Err(AutoscalerError::invalid("stream", "must not be empty"));
    }
    if request.end_ms <= request.start_ms {
        return Err(AutoscalerError::invalid(
            "end_ms",
            format!("must be after start_ms ({})", request.start_ms),
        ));
    }
    if request.end_ms - request.start_ms > HINT_WINDOW_MS_MAX {
        return Err(AutoscalerError::invalid(
            "end_ms",
            format!("window longer than {HINT_WINDOW_MS_MAX} ms"),
        ));
    }
    match (request.rate_eps, request.multiplier) {
        (Some(_), Some(_)) => Err(AutoscalerError::invalid(
            "multiplier",
            "give either rate_eps or multiplier, not both",
        )),
        (None, None) => Err(AutoscalerError::invalid(
            "rate_eps",
            "give one of rate_eps or multiplier",
        )),
        (Some(rate), None) if !(rate.is_finite() && rate >= 0.0) => Err(AutoscalerError::invalid(
            "rate_eps",
            format!("must be a finite rate >= 0, got {rate}"),
        )),
        (None, Some(multiplier)) if !(multiplier.is_finite() && multiplier > 0.0) => {
            Err(AutoscalerError::invalid(
                "multiplier",
                format!("must be finite and > 0, got {multiplier}"),
            ))
        }
        _ => Ok(()),
    }?;
    // A window already over would be stored, listed and never used: most
    // likely a time in seconds, or the wrong day.
    if request.end_ms <= now_ms {
        return Err(AutoscalerError::invalid(
            "end_ms",
            format!("the window ended before now ({now_ms} ms): a hint announces load to come"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(rate_eps: Option<f64>, multiplier: Option<f64>) -> HintRequest {
        HintRequest {
            stream: "orders".into(),
            start_ms: 1_000,
            end_ms: 2_000,
            rate_eps,
            multiplier,
        }
    }

    fn field_of(err: AutoscalerError) -> String {
        match err {
            AutoscalerError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hints = HintStore::open(dir.path()).expect("open");
        let cases = [
            (request(Some(1.0), Some(2.0)), "multiplier"),
            (request(None, None), "rate_eps"),
            (request(Some(-1.0), None), "rate_eps"),
            (request(None, Some(0.0)), "multiplier"),
            (request(None, Some(f64::NAN)), "multiplier"),
            (
                HintRequest {
                    end_ms: 1_000,
                    ..request(Some(1.0), None)
                },
                "end_ms",
            ),
            (
                HintRequest {
                    stream: String::new(),
                    ..request(Some(1.0), None)
                },
                "stream",
            ),
        ];
        for (case, field) in cases {
            let err = hints
                .add(case.clone(), 0)
                .expect_err("invalid hint refused");
            assert_eq!(field_of(err), field, "{case:?}");
        }
        // Unix seconds where milliseconds belong: a window in 1970.
        let seconds = HintRequest {
            start_ms: 1_796_600_000,
            end_ms: 1_796_603_600,
            ..request(Some(1.0), None)
        };
        let err = hints.add(seconds, 1_796_600_000_000).expect_err("past");
        assert_eq!(field_of(err), "end_ms");
        assert!(hints.for_stream("orders").is_empty());
    }

    #[test]
    fn hints_survive_a_reopen_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hints = HintStore::open(dir.path()).expect("open");
        let first = hints.add(request(Some(500.0), None), 0).expect("add");
        let second = hints.add(request(None, Some(2.0)), 0).expect("add");
        assert_ne!(first.id, second.id);
        let reopened = HintStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.for_stream("orders"), vec![first, second.clone()]);
        assert!(reopened.for_stream("other").is_empty());
        // Long after both windows, adding a hint prunes the expired ones.
        let mut reopened = reopened;
        let late = 2_000 + EXPIRED_KEEP_MS + 1;
        let third = hints_add(&mut reopened, late);
        assert_eq!(reopened.for_stream("orders"), vec![third]);
        assert_eq!(second.apply(100.0), 200.0);
    }

    fn hints_add(hints: &mut HintStore, now_ms: u64) -> Hint {
        let req = HintRequest {
            start_ms: now_ms,
            end_ms: now_ms + 10,
            ..request(Some(1.0), None)
        };
        hints.add(req, now_ms).expect("add")
    }
}
