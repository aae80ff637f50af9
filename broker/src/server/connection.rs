//! One client connection: reads frames (checking each length before
//! buffering), answers the handshake, dispatches requests with bounded
//! pipelining, and writes responses from a single writer task. Produce
//! requests are enqueued to their shards in arrival order before the next
//! frame is read, so pipelined appends keep their order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use surge_protocol::frame::{self, FrameCheck, FrameError, RequestHeader};
use surge_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::dispatch::{self, Outcome};
use crate::broker::Broker;

const READ_BUFFER_BYTES: usize = 64 << 10;
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// Answers a connection over the limit with an error frame, then closes it.
pub(super) async fn refuse(mut socket: TcpStream) {
    let message = "the broker is at max_connections";
    for chunk in frame::encode_error(0, ErrorCode::TooManyConnections, message) {
        if socket.write_all(&chunk).await.is_err() {
            return;
        }
    }
    socket.shutdown().await.ok();
}

pub(super) async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let (mut reader, writer) = socket.into_split();
    let depth = broker.config.max_in_flight_per_connection;
    let (responses, outgoing) = mpsc::channel::<Vec<Bytes>>(depth);
    let writer_task = tokio::spawn(write_responses(writer, outgoing));
    let in_flight = Arc::new(Semaphore::new(depth));
    let mut conn = Connection {
        broker,
        shutdown,
        responses,
        in_flight,
        handshaken: false,
    };
    let reason = conn.read_loop(&mut reader).await;
    tracing::debug!(%peer, reason, "connection closing");
    // Wait for in-flight requests: each holds a permit until its response is queued.
    let depth = u32::try_from(depth).unwrap_or(u32::MAX);
    conn.in_flight.acquire_many(depth).await.ok();
    drop(conn);
    writer_task.await.ok();
}

struct Connection {
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    responses: mpsc::Sender<Vec<Bytes>>,
    in_flight: Arc<Semaphore>,
    handshaken: bool,
}

impl Connection {
    /// Reads and dispatches frames until the peer leaves, a deadline passes,
    /// the stream cannot be resynchronised, or the broker shuts down.
    async fn read_loop(&mut self, reader: &mut tokio::net::tcp::OwnedReadHalf) -> &'static str {
        let max_frame = self.broker.config.max_frame_bytes;
        let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
        loop {
            loop {
                match frame::check(&buf, frame::REQUEST_HEADER_BYTES, max_frame) {
                    Ok(FrameCheck::Complete(total)) => {
                        let (header, body) = frame::split_request(&mut buf, total);
                        if !self.handle(header, body).await {
                            return "request refused";
                        }
                    }
                    Ok(FrameCheck::Incomplete(total)) => {
                        if let Some(total) = total {
                            buf.reserve(total.saturating_sub(buf.len()));
                        }
                        break;
                    }
                    Err(err) => {
                        self.refuse_frame(&buf, err).await;
                        return "unreadable frame";
                    }
                }
            }
            let deadline = Duration::from_millis(if self.handshaken {
                self.broker.config.idle_timeout_ms
            } else {
                self.broker.config.handshake_timeout_ms
            });
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_BUFFER_BYTES);
            }
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => return "shutdown",
                read = tokio::time::timeout(deadline, reader.read_buf(&mut buf)) => read,
            };
            match read {
                Err(_) if self.handshaken => return "idle timeout",
                Err(_) => return "handshake timeout",
                Ok(Ok(0)) => return "peer closed",
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return "read error",
            }
        }
    }

    /// An oversized or undersized frame: answer with what we can tell, close.
    async fn refuse_frame(&self, buf: &[u8], err: FrameError) {
        let correlation_id = if buf.len() >= 12 {
            u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]])
        } else {
            0
        };
        let code = match err {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::TooShort { .. } => ErrorCode::MalformedFrame,
        };
        let frame = frame::encode_error(correlation_id, code, &err.to_string());
        self.responses.send(frame).await.ok();
    }

    /// Dispatches one request. Returns false when the connection must close.
    async fn handle(&mut self, header: RequestHeader, body: Bytes) -> bool {
        let correlation = header.correlation_id;
        let Some(api) = ApiKey::from_u16(header.api_key) else {
            let message = format!("api key {} is not known to this broker", header.api_key);
            return self
                .send_error(correlation, ErrorCode::UnknownApi, &message)
                .await;
        };
        let (min, max) = api.versions();
        if !(min..=max).contains(&header.api_version) {
            let message = format!(
                "{api:?} version {} is not supported (supported: {min}..={max})",
                header.api_version
            );
            return self
                .send_error(correlation, ErrorCode::UnsupportedVersion, &message)
                .await;
        }
        if !self.handshaken && api != ApiKey::Handshake {
            let message = "the first request on a connection must be a handshake";
            self.send_error(correlation, ErrorCode::HandshakeRequired, message)
                .await;
            return false;
        }
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return false;
        };
        let outcome = dispatch::prepare(&self.broker, api, body, &self.shutdown).await;
        let frames = self.responses.clone();
        match outcome {
            Outcome::Malformed(message) => {
                drop(permit);
                self.send_error(correlation, ErrorCode::MalformedFrame, &message)
                    .await
            }
            Outcome::Handshake(ok, response) => {
                self.handshaken = ok;
                frames
                    .send(frame::encode_response(correlation, response))
                    .await
                    .ok();
                drop(permit);
                ok
            }
            Outcome::Pending(future) => {
                tokio::spawn(async move {
                    let response = future.await;
                    frames
                        .send(frame::encode_response(correlation, response))
                        .await
                        .ok();
                    drop(permit);
                });
                true
            }
        }
    }

    async fn send_error(&self, correlation: u32, code: ErrorCode, message: &str) -> bool {
        let frame = frame::encode_error(correlation, code, message);
        self.responses.send(frame).await.is_ok()
    }
}

/// The single writer of a connection: writes response frames in the order
/// they complete, flushing when no more are ready.
async fn write_responses(writer: OwnedWriteHalf, mut outgoing: mpsc::Receiver<Vec<Bytes>>) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    while let Some(frame) = outgoing.recv().await {
        if write_frame(&mut writer, frame).await.is_err() {
            return;
        }
        while let Ok(frame) = outgoing.try_recv() {
            if write_frame(&mut writer, frame).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    writer.shutdown().await.ok();
}

async fn write_frame(
    writer: &mut BufWriter<OwnedWriteHalf>,
    frame: Vec<Bytes>,
) -> std::io::Result<()> {
    for chunk in frame {
        writer.write_all(&chunk).await?;
    }
    Ok(())
}
