//! The API's one error shape: a status and a JSON body
//! `{"error": "...", "field": "..."}` that names the field at fault, so a
//! client can tell which parameter to fix.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use surge_autoscaler::{AutoscalerError, ControlError};

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn bad_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                error: message.into(),
                field: Some(field.to_owned()),
            },
        }
    }

    pub fn unknown_stream(stream: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: ErrorBody {
                error: format!("unknown stream {stream}"),
                field: Some("stream".into()),
            },
        }
    }

    /// The stream exists but the autoscaler has not measured it yet.
    pub fn not_measured(stream: &str) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: ErrorBody {
                error: format!(
                    "stream {stream} has no measurements yet; retry after the autoscaler's next tick"
                ),
                field: Some("stream".into()),
            },
        }
    }

    fn internal(message: String) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: ErrorBody {
                error: message,
                field: None,
            },
        }
    }

    /// An error from a JSON body: serde names the field in backticks for a
    /// missing or unknown field; for anything else the body is at fault.
    pub fn bad_body(err: &serde_json::Error) -> ApiError {
        let message = err.to_string();
        let names_field =
            message.starts_with("missing field") || message.starts_with("unknown field");
        let field = message
            .split('`')
            .nth(1)
            .filter(|name| names_field && !name.is_empty())
            .unwrap_or("body")
            .to_owned();
        ApiError::bad_field(&field, format!("invalid JSON body: {message}"))
    }
}

impl From<AutoscalerError> for ApiError {
    fn from(err: AutoscalerError) -> ApiError {
        match err {
            AutoscalerError::UnknownStream(stream) => ApiError::unknown_stream(&stream),
            AutoscalerError::InvalidArgument { field, message } => {
                ApiError::bad_field(&field, message)
            }
            AutoscalerError::Control(ControlError::UnknownStream(stream)) => {
                ApiError::unknown_stream(&stream)
            }
            AutoscalerError::Control(ControlError::Rejected(message)) => ApiError {
                status: StatusCode::CONFLICT,
                body: ErrorBody {
                    error: message,
                    field: None,
                },
            },
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_field() {
        use crate::http::autoscale::OptimizeRequest;
        let field = |text: &str| {
            let err = serde_json::from_str::<OptimizeRequest>(text).unwrap_err();
            ApiError::bad_body(&err).body.field.unwrap()
        };
        assert_eq!(field(r#"{"strem": "x"}"#), "strem");
        assert_eq!(
            field(r#"{"dry_run": 3}"#),
            "body",
            "serde does not say which"
        );
        assert_eq!(field("{"), "body");
        let err = serde_json::from_str::<surge_autoscaler::HintRequest>("{}").unwrap_err();
        assert_eq!(
            ApiError::bad_body(&err).body.field.as_deref(),
            Some("stream")
        );
        let err = AutoscalerError::InvalidArgument {
            field: "end_ms".into(),
            message: "before start".into(),
        };
        let api = ApiError::from(err);
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        assert_eq!(api.body.field.as_deref(), Some("end_ms"));
    }
}
