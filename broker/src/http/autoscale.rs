//! The autoscaler's side of the API: `GET /predict_load`, `POST
//! /optimize_topology`, `POST /hint_load` (and `GET` for the stored
//! hints), `GET /decisions`. Query parameters are parsed here, by name, so
//! a bad one is answered 400 with that name; a stream the broker does not
//! have is 404.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use surge_autoscaler::engine::{unix_ms, DECISIONS_MAX};
use surge_autoscaler::{Anomaly, AutoscalerError, Decision, Hint, HintRequest, Prediction};

use super::error::ApiError;
use super::AppState;

type Params = Query<HashMap<String, String>>;

/// Decisions returned when the caller gives no `limit`.
const DECISIONS_DEFAULT: usize = 100;

fn required<'a>(params: &'a HashMap<String, String>, field: &str) -> Result<&'a str, ApiError> {
    match params.get(field).map(|value| value.trim()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::bad_field(field, format!("`{field}` is required"))),
    }
}

fn number(params: &HashMap<String, String>, field: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = params.get(field).map(|value| value.trim()) else {
        return Ok(None);
    };
    value.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_field(
            field,
            format!("`{field}` must be a whole number, got {value:?}"),
        )
    })
}

/// A time: unix milliseconds, or `now`.
fn instant(
    params: &HashMap<String, String>,
    field: &str,
    now_ms: u64,
) -> Result<Option<u64>, ApiError> {
    match params.get(field).map(|value| value.trim()) {
        Some("now") => Ok(Some(now_ms)),
        _ => number(params, field),
    }
}

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
    Query(params): Params,
) -> Result<Json<Prediction>, ApiError> {
    let stream = required(&params, "stream")?;
    let now_ms = unix_ms(SystemTime::now());
    let config = state.engine.config();
    let from = instant(&params, "from", now_ms)?.unwrap_or(now_ms);
    let horizon_ms = config.sizing_horizon.as_millis() as u64;
    let to = instant(&params, "to", now_ms)?.unwrap_or(from.saturating_add(horizon_ms));
    let step = number(&params, "step")?.unwrap_or(config.interval.as_millis() as u64);
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

/// Body (optional): `{"stream": "...", "dry_run": true}`.
pub async fn optimize_topology(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<OptimizeResponse>, ApiError> {
    let request: OptimizeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        OptimizeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_body(&err))?
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
    body: Bytes,
) -> Result<(StatusCode, Json<Hint>), ApiError> {
    let request: HintRequest =
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_body(&err))?;
    known(&state, &request.stream)?;
    let hint = state.engine.add_hint(request)?;
    Ok((StatusCode::CREATED, Json(hint)))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HintsResponse {
    pub hints: Vec<Hint>,
}

/// `GET /hint_load?stream=`: the hints stored for a stream.
pub async fn list_hints(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<HintsResponse>, ApiError> {
    let stream = required(&params, "stream")?;
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
    Query(params): Params,
) -> Result<Json<DecisionsResponse>, ApiError> {
    let limit = number(&params, "limit")?.unwrap_or(DECISIONS_DEFAULT as u64);
    if limit == 0 || limit > DECISIONS_MAX as u64 {
        return Err(ApiError::bad_field(
            "limit",
            format!("`limit` must be 1..={DECISIONS_MAX}"),
        ));
    }
    let stream = params.get("stream").map(|name| name.trim());
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
