//! One TCP connection to a broker with pipelining. Owns the socket, the map
//! of pending requests by correlation id, and the single driver task that
//! writes queued frames and reads responses (one task, reader and writer
//! joined by `select!`, stopped by a `CancellationToken`).
//!
//! Whatever ends the driver (EOF, an I/O error, a bad frame, `close`), every
//! pending request fails with `ClientError::Disconnected`, and so does every
//! later one on this connection; `Client` then opens a new connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use surge_protocol::frame::{self, FrameCheck, RequestHeader, ResponseHeader};
use surge_protocol::{ApiKey, ErrorCode, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::ClientConfig;
use crate::error::ClientError;

/// Frames queued for the writer; senders wait beyond it.
const WRITE_QUEUE_DEPTH: usize = 256;
const READ_BUFFER_BYTES: usize = 64 << 10;
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// A response frame before its body is decoded.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) error: ErrorCode,
    pub(crate) body: Bytes,
}

type Waiter = oneshot::Sender<RawResponse>;

/// Requests waiting for their response. `closed` is set under the same lock
/// that drains the map, so no request can register after the drain.
#[derive(Debug, Default)]
struct Pending {
    closed: bool,
    waiters: HashMap<u32, Waiter>,
}

impl Pending {
    /// Dropping the senders wakes every waiter with `Disconnected`.
    fn close(&mut self) {
        self.closed = true;
        self.waiters.clear();
    }
}

/// Tells connections apart within the process.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    frames: mpsc::Sender<Vec<Bytes>>,
    pending: Arc<Mutex<Pending>>,
    next_correlation_id: AtomicU32,
    in_flight: Semaphore,
    shutdown: CancellationToken,
    max_frame_bytes: usize,
}

impl Connection {
    /// Connects and starts the driver task; no handshake yet.
    pub(crate) async fn open(config: &ClientConfig) -> Result<Connection, ClientError> {
        let connect = TcpStream::connect(config.addr.as_str());
        let stream = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout {
                after_ms: millis(config.connect_timeout),
            })??;
        stream.set_nodelay(true)?;
        let (read_half, write_half) = stream.into_split();
        let (frames, queue) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let shutdown = CancellationToken::new();
        tokio::spawn(drive(
            read_half,
            write_half,
            queue,
            Arc::clone(&pending),
            shutdown.clone(),
            config.max_frame_bytes,
        ));
        Ok(Connection {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            frames,
            pending,
            next_correlation_id: AtomicU32::new(0),
            in_flight: Semaphore::new(config.max_in_flight_requests.max(1)),
            shutdown,
            max_frame_bytes: config.max_frame_bytes,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.shutdown.is_cancelled()
    }

    pub(crate) fn close(&self) {
        self.shutdown.cancel();
    }

    /// Sends one request frame and waits for its response, at most `timeout`
    /// in all (queueing included). `send_limit` bounds the request frame.
    /// `written` is told (this connection's id) once the frame is queued for
    /// the writer, behind every frame queued before it: on the wire in that
    /// order.
    pub(crate) async fn call(
        &self,
        api_key: ApiKey,
        api_version: u16,
        body: Writer,
        send_limit: usize,
        timeout: Duration,
        written: Option<oneshot::Sender<u64>>,
    ) -> Result<RawResponse, ClientError> {
        let frame_len = frame::LENGTH_PREFIX_BYTES + frame::REQUEST_HEADER_BYTES + body.len();
        let max = send_limit.min(self.max_frame_bytes);
        if frame_len > max {
            return Err(ClientError::FrameTooLarge {
                len: frame_len,
                max,
            });
        }
        let mut correlation_id = None;
        let exchange = self.exchange(api_key, api_version, body, &mut correlation_id, written);
        let outcome = tokio::time::timeout(timeout, exchange).await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                if let Some(id) = correlation_id {
                    self.pending.lock().waiters.remove(&id);
                }
                Err(ClientError::Timeout {
                    after_ms: millis(timeout),
                })
            }
        }
    }

    async fn exchange(
        &self,
        api_key: ApiKey,
        api_version: u16,
        body: Writer,
        registered: &mut Option<u32>,
        written: Option<oneshot::Sender<u64>>,
    ) -> Result<RawResponse, ClientError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ClientError::Disconnected)?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let (waiter, response) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(ClientError::Disconnected);
            }
            pending.waiters.insert(correlation_id, waiter);
        }
        *registered = Some(correlation_id);
        let header = RequestHeader {
            api_key: api_key as u16,
            api_version,
            correlation_id,
        };
        if self
            .frames
            .send(frame::encode_request(header, body))
            .await
            .is_err()
        {
            self.pending.lock().waiters.remove(&correlation_id);
            return Err(ClientError::Disconnected);
        }
        if let Some(written) = written {
            written.send(self.id).ok();
        }
        response.await.map_err(|_| ClientError::Disconnected)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The driver: reader and writer side by side until either ends or the
/// connection is closed; then every pending request is failed.
async fn drive(
    read_half: OwnedReadHalf,
    write_half: OwnedWriteHalf,
    queue: mpsc::Receiver<Vec<Bytes>>,
    pending: Arc<Mutex<Pending>>,
    shutdown: CancellationToken,
    max_frame_bytes: usize,
) {
    let outcome = tokio::select! {
        result = read_loop(read_half, &pending, max_frame_bytes) => result,
        result = write_loop(write_half, queue) => result,
        () = shutdown.cancelled() => Ok(()),
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "connection closed");
    }
    shutdown.cancel();
    pending.lock().close();
}

async fn write_loop(
    write_half: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<Bytes>>,
) -> Result<(), ClientError> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half);
    while let Some(chunks) = queue.recv().await {
        write_chunks(&mut out, chunks).await?;
        // Coalesce whatever else is queued into the same flush.
        while let Ok(chunks) = queue.try_recv() {
            write_chunks(&mut out, chunks).await?;
        }
        out.flush().await?;
    }
    Ok(())
}

async fn write_chunks(
    out: &mut BufWriter<OwnedWriteHalf>,
    chunks: Vec<Bytes>,
) -> Result<(), ClientError> {
    for chunk in chunks {
        out.write_all(&chunk).await?;
    }
    Ok(())
}

async fn read_loop(
    mut read_half: OwnedReadHalf,
    pending: &Mutex<Pending>,
    max_frame_bytes: usize,
) -> Result<(), ClientError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        while let Some((header, body)) = next_frame(&mut buf, max_frame_bytes)? {
            deliver(pending, header, body);
        }
        if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        if read_half.read_buf(&mut buf).await? == 0 {
            return Err(ClientError::Disconnected);
        }
    }
}

/// Check-then-parse: a frame is split off only once it is whole, and its
/// declared length is checked before the buffer grows to hold it.
fn next_frame(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<(ResponseHeader, Bytes)>, ClientError> {
    match frame::check(buf, frame::RESPONSE_HEADER_BYTES, max_frame_bytes)? {
        FrameCheck::Complete(total) => Ok(Some(frame::split_response(buf, total))),
        FrameCheck::Incomplete(Some(total)) => {
            buf.reserve(total - buf.len());
            Ok(None)
        }
        FrameCheck::Incomplete(None) => Ok(None),
    }
}

fn deliver(pending: &Mutex<Pending>, header: ResponseHeader, body: Bytes) {
    let waiter = pending.lock().waiters.remove(&header.correlation_id);
    match waiter {
        Some(waiter) => {
            // The requester may have timed out meanwhile; nothing to do then.
            let _ = waiter.send(RawResponse {
                error: header.error,
                body,
            });
        }
        None => tracing::debug!(
            correlation_id = header.correlation_id,
            "response to a request no longer waiting"
        ),
    }
}
