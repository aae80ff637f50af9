//! The crate's one error type. Variants name the field or stream at fault so
//! the HTTP side can turn them into clear 4xx answers.

use thiserror::Error;

use crate::control::ControlError;

#[derive(Debug, Error)]
pub enum AutoscalerError {
    #[error("unknown stream {0}")]
    UnknownStream(String),
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("autoscaler state I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A state file failed its checks (magic, version, length, checksum).
    #[error("corrupt state file {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl AutoscalerError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
