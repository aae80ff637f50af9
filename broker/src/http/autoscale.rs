//! The autoscaler's side of the API: `GET /predict_load`, `POST
//! /optimize_topology`, `POST /hint_load` (and `GET` for the stored
//! hints), `GET /decisions`. A bad parameter is answered 400 with its name
//! (see `params`); a stream the broker does not have is 404.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use surge_autoscaler::engine::{unix_ms, DECISIONS_MAX};
use surge_autoscaler::{Anomaly, AutoscalerError, Decision, Hint, HintRequest, Prediction};

use super::error::ApiError;
use super::params::Params;
use super::AppState;

/// Decisions returned when the caller gives no `limit`.
const DECISIONS_DEFAULT: usize = 100;

/// 404 unless the broker has the stream.
fn known(state: &AppState, stream: &str) -> Result<(), ApiError> {
    match state.broker.streams.get(stream) {
        Some(_) => Ok(()),
        None => Err(ApiError::unknown_stream(stream)),
    }
}

/// An engine error about a stream the broker has: not measured yet.
fn from_engine(stream: &str, err: AutoscalerError) -> ApiError {
    match err {
        AutoscalerError::UnknownStream(_) => ApiError::not_measured(stream),
        other => other.into(),
    }
}

/// `stream` (required), `from` and `to` (unix ms or `now`; default now and
/// one sizing horizon later), `step` (ms; default the autoscaler's interval).
pub async fn predict_load(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Prediction>, ApiError> {
    params.only(&["stream", "from", "to", "step"])?;
    let stream = params.required("stream")?;
    let now_ms = unix_ms(SystemTime::now());
    let config = state.engine.config();
    let from = params.instant("from", now_ms)?.unwrap_or(now_ms);
    let horizon_ms = config.sizing_horizon.as_millis() as u64;
    let to = params
        .instant("to", now_ms)?
        .unwrap_or(from.saturating_add(horizon_ms));
    let step = params
        .number("step")?
        .unwrap_or(config.interval.as_millis() as u64);
    if step == 0 {
        return Err(ApiError::bad_field("step", "`step` must be at least 1 ms"));
    }
    if to <= from {
        return Err(ApiError::bad_field(
            "to",
            format!("`to` ({to}) must be after `from` ({from})"),
        ));
    }
    known(&state, stream)?;
    let prediction = state
        .engine
        .predict(stream, from, to, step)
        .map_err(|err| match err {
            // The engine names its own arguments; the API's are shorter.
            AutoscalerError::InvalidArgument { field, message } => {
                let field = field.trim_end_matches("_ms").to_owned();
                ApiError::bad_field(&field, message)
            }
            other => from_engine(stream, other),
        })?;
    Ok(Json(prediction))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizeRequest {
    /// One stream, or every stream when absent.
    pub stream: Option<String>,
    /// Plan only: return the decisions without applying them.
    pub dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OptimizeResponse {
    pub dry_run: bool,
    /// false when the autoscaler is in dry mode: nothing is ever applied.
    pub autoscaler_enabled: bool,
    pub decisions: Vec<Decision>,
}

/// Body (optional): `{"stream": "...", "dry_run": true}`, or the same as
/// query parameters (`?dry_run=true`), not both: a dry run asked for where
/// it was not read would apply the plan.
pub async fn optimize_topology(
    State(state): State<AppState>,
    params: Params,
    body: Bytes,
) -> Result<Json<OptimizeResponse>, ApiError> {
    params.only(&["stream", "dry_run"])?;
    let request: OptimizeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        OptimizeRequest {
            stream: params.get("stream").map(str::to_owned),
            dry_run: params.flag("dry_run")?.unwrap_or(false),
        }
    } else if params.is_empty() {
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_body(&err))?
    } else {
        return Err(ApiError::bad_field(
            "body",
            "give the request in the body or as query parameters, not both",
        ));
    };
    if let Some(stream) = &request.stream {
        known(&state, stream)?;
    }
    let decisions = state
        .engine
        .optimize(request.stream.as_deref(), request.dry_run)
        .await
        .map_err(|err| match &request.stream {
            Some(stream) => from_engine(stream, err),
            None => err.into(),
        })?;
    Ok(Json(OptimizeResponse {
        dry_run: request.dry_run,
        autoscaler_enabled: state.engine.config().enabled,
        decisions,
    }))
}

/// Body: `{"stream", "start_ms", "end_ms", "rate_eps" | "multiplier"}`.
pub async fn hint_load(
    State(state): State<AppState>,
    params: Params,
    body: Bytes,
) -> Result<(StatusCode, Json<Hint>), ApiError> {
    params.only(&[])?;
    let request: HintRequest =
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_body(&err))?;
    known(&state, &request.stream)?;
    let hint = state.engine.add_hint(request, unix_ms(SystemTime::now()))?;
    Ok((StatusCode::CREATED, Json(hint)))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HintsResponse {
    pub hints: Vec<Hint>,
}

/// `GET /hint_load?stream=`: the hints stored for a stream.
pub async fn list_hints(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<HintsResponse>, ApiError> {
    params.only(&["stream"])?;
    let stream = params.required("stream")?;
    known(&state, stream)?;
    Ok(Json(HintsResponse {
        hints: state.engine.hints(stream),
    }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DecisionsResponse {
    /// Newest first.
    pub decisions: Vec<Decision>,
    pub anomalies: Vec<Anomaly>,
}

/// `limit` (default 100, at most the log's size) and `stream` (optional).
pub async fn decisions(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<DecisionsResponse>, ApiError> {
    params.only(&["limit", "stream"])?;
    let limit = params.number("limit")?.unwrap_or(DECISIONS_DEFAULT as u64);
    if limit == 0 || limit > DECISIONS_MAX as u64 {
        return Err(ApiError::bad_field(
            "limit",
            format!("`limit` must be 1..={DECISIONS_MAX}"),
        ));
    }
    let stream = params.get("stream");
    if let Some(stream) = stream {
        known(&state, stream)?;
    }
    let wanted = |name: &str| stream.is_none_or(|stream| stream == name);
    let limit = limit as usize;
    let decisions = state
        .engine
        .decisions(DECISIONS_MAX)
        .into_iter()
        .filter(|decision| wanted(&decision.stream))
        .take(limit)
        .collect();
    let anomalies = state
        .engine
        .anomalies(DECISIONS_MAX)
        .into_iter()
        .filter(|anomaly| wanted(&anomaly.stream))
        .take(limit)
        .collect();
    Ok(Json(DecisionsResponse {
        decisions,
        anomalies,
    }))
}
