//! `Client`: the handle everything else is built on. Owns the current
//! `Connection` and the session learned in the handshake (producer id,
//! limits, API versions), reconnects lazily after a disconnect, and offers
//! typed conveniences for the administrative requests.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use surge_protocol::api::ApiVersionRange;
use surge_protocol::frame;
use surge_protocol::handshake::{HandshakeRequest, HandshakeResponse, PROTOCOL_VERSION};
use surge_protocol::offsets::{ListOffsetsPart, ListOffsetsRequest, OffsetSpec};
use surge_protocol::stream::{
    CreateStreamRequest, DeleteStreamRequest, DescribeStreamRequest, DescribeStreamResponse,
    ListStreamsRequest, MetadataRequest, StreamConfig, StreamMetadata, StreamSummary,
};
use surge_protocol::topology::{ChangeTopologyRequest, ChangeTopologyResponse};
use surge_protocol::{ApiKey, Request, Wire, Writer};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::ClientConfig;
use crate::connection::{Connection, RawResponse};
use crate::error::ClientError;

/// What the first handshake told us. Kept for the client's life: a
/// reconnect handshakes again but keeps the producer id, so retried batches
/// (which carry it in their bytes) still deduplicate on the broker.
#[derive(Debug, Clone)]
struct Session {
    producer_id: u64,
    max_batch_bytes: usize,
    max_frame_bytes: usize,
    apis: Vec<ApiVersionRange>,
}

#[derive(Debug)]
struct ClientInner {
    config: ClientConfig,
    session: Session,
    current: Mutex<Arc<Connection>>,
    /// Serializes reconnects; held across the connect and handshake.
    reconnecting: tokio::sync::Mutex<()>,
    closed: CancellationToken,
    /// Producers created so far, for `new_producer_id`.
    producers: std::sync::atomic::AtomicU64,
}

/// A connection to one broker. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl ClientInner {
    /// Opens a fresh connection unless another reconnect already did.
    async fn reconnect(&self) -> Result<Arc<Connection>, ClientError> {
        let _guard = self.reconnecting.lock().await;
        let current = Arc::clone(&self.current.lock());
        if current.is_open() {
            return Ok(current);
        }
        let (fresh, _) = open_session(&self.config).await?;
        let fresh = Arc::new(fresh);
        *self.current.lock() = Arc::clone(&fresh);
        if self.closed.is_cancelled() {
            fresh.close();
            return Err(ClientError::Closed);
        }
        tracing::debug!(addr = %self.config.addr, "reconnected");
        Ok(fresh)
    }
}

impl Client {
    /// Connects and handshakes; fails if the broker does not speak
    /// `PROTOCOL_VERSION`.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let (connection, handshake) = open_session(&config).await?;
        let session = Session {
            producer_id: handshake.producer_id,
            max_batch_bytes: handshake.max_batch_bytes as usize,
            max_frame_bytes: handshake.max_frame_bytes as usize,
            apis: handshake.apis,
        };
        Ok(Client {
            inner: Arc::new(ClientInner {
                config,
                session,
                current: Mutex::new(Arc::new(connection)),
                reconnecting: tokio::sync::Mutex::new(()),
                closed: CancellationToken::new(),
                producers: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The producer id from the first handshake, stable across reconnects.
    pub fn producer_id(&self) -> u64 {
        self.inner.session.producer_id
    }

    /// A producer id of its own for each producer on this client. Sequences
    /// are per (producer id, shard), so two producers sharing an id would
    /// collide. Derived from the broker-issued id by a bijective mix, so
    /// the ids of one client never repeat and clash with another client's
    /// only as rarely as two random 64-bit numbers.
    pub fn new_producer_id(&self) -> u64 {
        let index = self
            .inner
            .producers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mixed = mix64(self.producer_id() ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // 0 means "not idempotent" on the wire.
        mixed.max(1)
    }

    /// The largest record batch the broker accepts.
    pub fn max_batch_bytes(&self) -> usize {
        self.inner.session.max_batch_bytes
    }

    /// Sends a request and decodes its response, within the configured
    /// request timeout. Frame-level errors become `ClientError::Broker`;
    /// error codes inside the response body are left to the caller.
    pub async fn request<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        self.request_within(req, self.inner.config.request_timeout)
            .await
    }

    /// `request` with an explicit timeout (long polls need more).
    pub async fn request_within<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        self.request_written(req, timeout, None).await
    }

    /// `request_within` for one of a series that must reach the broker in
    /// order: it goes out on `after`'s connection (that of the request
    /// before it), and tells `written` once its frame is queued there (see
    /// `Connection::call`). If that connection is gone, the request before
    /// it fails, and this one fails too (`Disconnected`) rather than
    /// overtake it on a new one.
    pub(crate) async fn request_in_series<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
        after: Option<u64>,
        written: oneshot::Sender<u64>,
    ) -> Result<R::Response, ClientError> {
        self.request_written(req, timeout, Some((after, written)))
            .await
    }

    async fn request_written<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
        series: Option<(Option<u64>, oneshot::Sender<u64>)>,
    ) -> Result<R::Response, ClientError> {
        let version = self.version_of(R::API_KEY)?;
        let connection = self.connection().await?;
        let written = match series {
            Some((Some(after), _)) if after != connection.id() => {
                return Err(ClientError::Disconnected)
            }
            Some((_, written)) => Some(written),
            None => None,
        };
        let mut body = Writer::new();
        req.encode(&mut body);
        let send_limit = self.inner.session.max_frame_bytes;
        let raw = connection
            .call(R::API_KEY, version, body, send_limit, timeout, written)
            .await?;
        decode_response::<R>(raw)
    }

    /// Closes the connection; pending and later requests fail.
    pub async fn close(&self) {
        self.inner.closed.cancel();
        self.inner.current.lock().close();
    }

    /// The highest version of `key` both sides speak.
    fn version_of(&self, key: ApiKey) -> Result<u16, ClientError> {
        let (ours_min, ours_max) = key.versions();
        let theirs = self
            .inner
            .session
            .apis
            .iter()
            .find(|range| range.api_key == key as u16)
            .ok_or_else(|| ClientError::Protocol(format!("broker does not offer {key:?}")))?;
        let version = ours_max.min(theirs.max_version);
        if version < ours_min.max(theirs.min_version) {
            return Err(ClientError::Protocol(format!(
                "no common version of {key:?}: ours {ours_min}..={ours_max}, broker {}..={}",
                theirs.min_version, theirs.max_version
            )));
        }
        Ok(version)
    }

    /// The open connection, or a fresh one after a disconnect. The
    /// reconnect runs as a task of its own, holding the reconnect lock
    /// there: a caller that stops polling (a producer task awaiting
    /// something else meanwhile) must not keep every other request of the
    /// client waiting on the lock.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        if self.inner.closed.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let current = Arc::clone(&self.inner.current.lock());
        if current.is_open() {
            return Ok(current);
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move { inner.reconnect().await })
            .await
            .map_err(|error| ClientError::Protocol(format!("reconnect failed: {error}")))?
    }

    pub async fn create_stream(&self, name: &str, config: StreamConfig) -> Result<(), ClientError> {
        let req = CreateStreamRequest {
            name: name.to_owned(),
            config,
        };
        let resp = self.request(&req).await?;
        ClientError::check(resp.error, resp.message)
    }

    pub async fn delete_stream(&self, name: &str) -> Result<(), ClientError> {
        let req = DeleteStreamRequest {
            name: name.to_owned(),
        };
        let resp = self.request(&req).await?;
        ClientError::check(resp.error, format!("delete stream {name}"))
    }

    pub async fn list_streams(&self) -> Result<Vec<StreamSummary>, ClientError> {
        Ok(self.request(&ListStreamsRequest {}).await?.streams)
    }

    pub async fn describe_stream(&self, name: &str) -> Result<DescribeStreamResponse, ClientError> {
        let req = DescribeStreamRequest {
            name: name.to_owned(),
        };
        let resp = self.request(&req).await?;
        ClientError::check(resp.error, format!("describe stream {name}"))?;
        Ok(resp)
    }

    /// Routing metadata of one stream.
    pub async fn metadata(&self, stream: &str) -> Result<StreamMetadata, ClientError> {
        let req = MetadataRequest {
            streams: vec![stream.to_owned()],
        };
        let resp = self.request(&req).await?;
        let found = resp
            .streams
            .into_iter()
            .find(|meta| meta.name == stream)
            .ok_or_else(|| ClientError::Protocol(format!("metadata without stream {stream}")))?;
        ClientError::check(found.error, format!("metadata of {stream}"))?;
        Ok(found)
    }

    /// Splits, merges or moves shards (seal-and-succeed). A non-`None`
    /// error in the response becomes `ClientError::Broker` with its message.
    pub async fn change_topology(
        &self,
        req: &ChangeTopologyRequest,
    ) -> Result<ChangeTopologyResponse, ClientError> {
        let resp = self.request(req).await?;
        ClientError::check(resp.error, resp.message.clone())?;
        Ok(resp)
    }

    /// One shard's earliest, latest or by-timestamp offset.
    pub async fn list_offset(
        &self,
        stream: &str,
        shard: u32,
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<u64, ClientError> {
        let req = ListOffsetsRequest {
            parts: vec![ListOffsetsPart {
                stream: stream.to_owned(),
                shard_id: shard,
                spec,
                timestamp_ms,
            }],
        };
        let resp = self.request(&req).await?;
        let part = resp
            .parts
            .into_iter()
            .find(|part| part.shard_id == shard)
            .ok_or_else(|| ClientError::Protocol(format!("list offsets without shard {shard}")))?;
        ClientError::check(part.error, format!("list offsets of {stream}/{shard}"))?;
        Ok(part.offset)
    }
}

fn decode_response<R: Request>(raw: RawResponse) -> Result<R::Response, ClientError> {
    if !raw.error.is_ok() {
        let message = frame::decode_error_message(raw.body)?;
        return Err(ClientError::Broker {
            code: raw.error,
            message,
        });
    }
    Ok(R::Response::decode_all(raw.body)?)
}

/// Connects and handshakes; the handshake itself is always version 0.
async fn open_session(
    config: &ClientConfig,
) -> Result<(Connection, HandshakeResponse), ClientError> {
    let connection = Connection::open(config).await?;
    let req = HandshakeRequest {
        client_id: config.client_id.clone(),
        min_protocol: PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
    };
    let mut body = Writer::new();
    req.encode(&mut body);
    let raw = connection
        .call(
            ApiKey::Handshake,
            0,
            body,
            config.max_frame_bytes,
            config.request_timeout,
            None,
        )
        .await?;
    let resp = decode_response::<HandshakeRequest>(raw)?;
    ClientError::check(resp.error, "handshake")?;
    if resp.protocol != PROTOCOL_VERSION {
        return Err(ClientError::Protocol(format!(
            "broker chose protocol {}, this client speaks {PROTOCOL_VERSION}",
            resp.protocol
        )));
    }
    Ok((connection, resp))
}

/// SplitMix64's finaliser: a bijection on u64 that spreads nearby inputs.
fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}
