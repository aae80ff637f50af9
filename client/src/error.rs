//! The crate's one error type. Every failure a caller can see is a
//! `ClientError`; variants carry the numbers that explain them. It is `Clone`
//! because one failed batch fails every event's `AckFuture` with the same
//! error, so I/O errors are shared behind an `Arc`.

use std::sync::Arc;

use surge_protocol::frame::FrameError;
use surge_protocol::{DecodeError, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("i/o error: {0}")]
    Io(Arc<std::io::Error>),
    /// The connection closed while the request was pending or being sent.
    #[error("connection to the broker closed")]
    Disconnected,
    #[error("no response within {after_ms} ms")]
    Timeout { after_ms: u64 },
    /// The broker answered with an error code (frame level or in the body).
    #[error("broker error {code:?} ({code}): {message}")]
    Broker { code: ErrorCode, message: String },
    #[error("undecodable response: {0}")]
    Decode(#[from] DecodeError),
    #[error("frame of {len} bytes exceeds the maximum {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// An event that cannot fit in one batch, even alone.
    #[error("event of {size} bytes exceeds the batch limit {max}")]
    EventTooLarge { size: usize, max: usize },
    /// The broker broke the protocol (version mismatch, unexpected answer).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The stream has no open shard to route to.
    #[error("stream {stream} has no open shard")]
    NoOpenShard { stream: String },
    /// `commit` on a consumer that is not in a group.
    #[error("the consumer is not in a group")]
    NoGroup,
    /// `send_tagged` on a producer made without `Deliveries`.
    #[error("send_tagged needs a producer made by Producer::with_deliveries")]
    NoDeliveries,
    /// The client, producer or consumer was closed.
    #[error("closed")]
    Closed,
}

impl ClientError {
    /// Whether the same request may be sent again unchanged.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Disconnected | ClientError::Timeout { .. } => true,
            ClientError::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// The wire error code, when the broker sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Turns a non-`None` code from a response body into an error.
    pub(crate) fn check(code: ErrorCode, message: impl Into<String>) -> Result<(), ClientError> {
        if code.is_ok() {
            return Ok(());
        }
        Err(ClientError::Broker {
            code,
            message: message.into(),
        })
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        ClientError::Io(Arc::new(error))
    }
}

impl From<FrameError> for ClientError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::TooLarge { len, max } => ClientError::FrameTooLarge { len, max },
            FrameError::TooShort { len, min } => {
                ClientError::Protocol(format!("response frame of {len} bytes, header needs {min}"))
            }
        }
    }
}

/// An error and its causes on one line, for the commands built on this
/// client. Most errors print their cause in their own message too, so a
/// cause the line already holds is not repeated (a chain printed whole read
/// "File exists (os error 17): File exists (os error 17)").
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on {addr}: {source}")]
    struct Listen {
        addr: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the broker")]
    struct Starting(#[source] Listen);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        let err = Starting(Listen {
            addr: "127.0.0.1:1".into(),
            source: io(),
        });
        assert_eq!(
            report(&err),
            format!(
                "starting the broker: cannot listen on 127.0.0.1:1: {}",
                io()
            )
        );
    }
}
