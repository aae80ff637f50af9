//! `LoadgenError`, the library's one error type. Bad flags, unreadable
//! traces, a broker that will not start and client failures during setup all
//! end here; failures of single events during a run are not errors of the
//! run: they are counted in the report.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A flag value that does not parse; `what` names the flag.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArg {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("trace {path}: line {line}: {reason}")]
    Trace {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("broker process: {0}")]
    Broker(String),
    #[error("client: {0}")]
    Client(#[from] surge_client::ClientError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("plot: {0}")]
    Plot(String),
}

impl LoadgenError {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: &'static str) -> LoadgenError {
        LoadgenError::InvalidArg {
            what,
            value: value.to_owned(),
            reason,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LoadgenError {
        LoadgenError::Io {
            path: path.into(),
            source,
        }
    }
}
