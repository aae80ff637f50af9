//! A minimal HTTP/1.1 client (hyper's connection API, one connection per
//! request) for the `surge` commands that wrap the control API, and for
//! tests. Answers come back whole, with their status; a non-2xx answer is
//! not an error here, so callers can show the API's own error body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

/// Longest wait for connecting and for a whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a topology of thousands of shards fits easily).
const RESPONSE_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP request to {addr} failed")]
    Http { addr: String, source: hyper::Error },
    #[error("invalid request: {0}")]
    Request(String),
    #[error("no answer from {addr} within {REQUEST_TIMEOUT:?}")]
    Timeout { addr: String },
    #[error("answer from {addr} exceeds {RESPONSE_BYTES_MAX} bytes")]
    TooLarge { addr: String },
}

/// One answer: its status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` with an optional JSON body to `addr` (host:port).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    json_body: Option<String>,
) -> Result<HttpResponse, HttpError> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, method, path, json_body))
        .await
        .map_err(|_| HttpError::Timeout {
            addr: addr.to_owned(),
        })?
}

async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    json_body: Option<String>,
) -> Result<HttpResponse, HttpError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let http_err = |source| HttpError::Http {
        addr: addr.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    // Drives the connection; it ends when the answer is read and the
    // sender dropped.
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr);
    if json_body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let body = Full::new(Bytes::from(json_body.unwrap_or_default()));
    let request = builder
        .body(body)
        .map_err(|err| HttpError::Request(err.to_string()))?;
    let response = sender.send_request(request).await.map_err(http_err)?;
    let status = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX);
    let body = limited
        .collect()
        .await
        .map_err(|_| HttpError::TooLarge {
            addr: addr.to_owned(),
        })?
        .to_bytes();
    Ok(HttpResponse { status, body })
}
