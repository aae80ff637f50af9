//! The HTTP control API (axum, HTTP/1.1, JSON): the topology, load
//! predictions, hints, on-demand optimization and the autoscaler's
//! decisions, plus `/metrics` (Prometheus text), `/healthz` and `/readyz`.
//! It runs beside the TCP server on its own listener and stops with it on
//! the same cancellation token.
//!
//! - `topology`: `GET /get_topology`.
//! - `autoscale`: `GET /predict_load`, `POST /optimize_topology`,
//!   `POST|GET /hint_load`, `GET /decisions`.
//! - `error`: the JSON error body naming the field at fault.
//! - `params`: query parameters, by name; unknown names are errors.
//! - `client`: a minimal HTTP/1.1 client for the `surge` commands.

pub mod autoscale;
pub mod client;
pub mod error;
pub mod params;
pub mod topology;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use surge_autoscaler::Autoscaler;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::control::BrokerControl;
use crate::error::BrokerError;
use crate::metrics::{prometheus, BrokerMetricsSource, NodeProbe};

/// The embedded autoscaler, as the broker runs it.
pub type Engine = Autoscaler<BrokerControl, BrokerMetricsSource>;

/// Largest request body accepted (hints and optimize requests are tiny).
const BODY_BYTES_MAX: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub engine: Arc<Engine>,
    /// Reads node counters for `/metrics`.
    pub node: NodeProbe,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/get_topology", get(topology::get_topology))
        .route("/predict_load", get(autoscale::predict_load))
        .route("/optimize_topology", post(autoscale::optimize_topology))
        .route(
            "/hint_load",
            post(autoscale::hint_load).get(autoscale::list_hints),
        )
        .route("/decisions", get(autoscale::decisions))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// Binds the HTTP address before serving, so the bound port can be printed.
pub async fn bind(addr: &str) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Listen {
            addr: addr.to_owned(),
            source,
        })
}

/// Serves until `shutdown` is cancelled; requests in flight finish.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "HTTP server failed");
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready once the autoscaler has loaded its state and ticked once.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.engine.ready() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "starting", "error": "the autoscaler has not completed its first tick"}),
            ),
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    prometheus::render(&state.broker, &state.node.sample(), &mut out);
    state.engine.prometheus(&mut out);
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], out)
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such endpoint", "field": "path"})),
    )
}
