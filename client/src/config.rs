//! Settings for the connection, the producer and the consumer, with the
//! defaults the crate documents. Plain data: nothing here talks to a broker.

use std::time::Duration;

use surge_protocol::produce::Acks;

/// How to reach a broker and the limits of one connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the broker.
    pub addr: String,
    /// Name sent in the handshake, for the broker's logs and metrics.
    pub client_id: String,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Upper bound on a response frame this client accepts (and on a request
    /// it sends; the broker's own limit from the handshake applies too).
    pub max_frame_bytes: usize,
    pub connect_timeout: Duration,
    /// Requests in flight on one connection; `request` waits beyond it.
    pub max_in_flight_requests: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            addr: "127.0.0.1:9092".to_owned(),
            client_id: "surge-client".to_owned(),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: surge_protocol::frame::MAX_FRAME_BYTES,
            connect_timeout: Duration::from_secs(10),
            max_in_flight_requests: 1024,
        }
    }
}

/// How a `Producer` batches, acknowledges and retries.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a batch may wait for more events before it is sent.
    pub linger: Duration,
    /// Target batch size; capped by the broker's limit from the handshake.
    pub max_batch_bytes: usize,
    /// Bytes of events queued or in flight before `send` waits.
    pub max_in_flight_bytes: usize,
    /// Batches one shard may have in flight at once (at least 1). More
    /// overlap one batch's fsync with the next one's trip; 1 sends a batch
    /// only after the previous one's answer.
    pub max_in_flight_per_shard: usize,
    pub acks: Acks,
    /// Retries of one batch after a retriable failure.
    pub retries: u32,
    /// Wait before the first retry; doubles per attempt up to 32 times it.
    pub retry_backoff: Duration,
    /// Timeout of one produce request (also sent to the broker).
    pub request_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            max_batch_bytes: 1 << 20,
            max_in_flight_bytes: 64 << 20,
            max_in_flight_per_shard: 4,
            acks: Acks::StreamDefault,
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Where a consumer starts a shard that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this one (ms).
    Timestamp(i64),
}

/// How a `Consumer` fetches and, in a group, keeps its membership.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Long-poll: how long the broker may hold a fetch with no data.
    pub max_wait: Duration,
    /// Bytes per fetch response, over all shards.
    pub max_bytes: u32,
    pub max_bytes_per_shard: u32,
    pub start: StartFrom,
    /// Consumer group to join; `None` reads every shard of the stream.
    pub group: Option<String>,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// When `poll` is called again, commit what the previous poll returned.
    pub auto_commit: bool,
    /// Timeout of one request, on top of `max_wait` for fetches.
    pub request_timeout: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait: Duration::from_millis(500),
            max_bytes: 16 << 20,
            max_bytes_per_shard: 4 << 20,
            start: StartFrom::Earliest,
            group: None,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            auto_commit: true,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Milliseconds of a duration, saturated to the `u32` the wire carries.
pub(crate) fn wire_ms(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
