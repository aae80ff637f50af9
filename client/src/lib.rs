//! Async Rust client for Surge: a pipelined connection, a batching
//! idempotent producer, and a consumer with optional consumer groups.
//!
//! # Layout
//!
//! - `error`: `ClientError`, the crate's one error type.
//! - `config`: `ClientConfig`, `ProducerConfig`, `ConsumerConfig`, defaults.
//! - `connection`: one TCP connection, pipelined requests matched by
//!   correlation id, the driver task that reads and writes frames.
//! - `client`: `Client`, handshake, lazy reconnect, typed admin requests.
//! - `event`: `Event`, what a producer sends.
//! - `router`: the topology cache a producer routes by (hash ranges).
//! - `lineage`: the shard graph (parents, sealed, high watermarks) that
//!   orders sends and reads across splits and merges.
//! - `producer`: `Producer`, `AckFuture`s or batched `Deliveries`, flush,
//!   close; `producer::task`: batching, linger, one batch in flight per
//!   shard, idempotent retries, backpressure.
//! - `consumer`: `Consumer`, long-poll fetches over its shards, positions,
//!   commits.
//! - `sender`: one batch to one shard, with idempotent retries.
//! - `group`: group membership, the heartbeat task and assignment changes.

mod client;
mod config;
mod connection;
mod consumer;
mod error;
mod event;
mod group;
mod lineage;
mod producer;
mod router;
mod sender;

pub use client::Client;
pub use config::{ClientConfig, ConsumerConfig, ProducerConfig, StartFrom};
pub use consumer::{ConsumedRecord, Consumer};
pub use error::{report, ClientError};
pub use event::{Event, Headers, TYPE_HEADER};
pub use producer::{Ack, AckFuture, Deliveries, Delivery, Producer};

pub use surge_protocol;
pub use surge_protocol::offsets::OffsetSpec;
pub use surge_protocol::produce::Acks;
pub use surge_protocol::stream::{
    DescribeStreamResponse, StreamConfig, StreamMetadata, StreamSummary,
};
pub use surge_protocol::topology::{ChangeKind, ChangeTopologyRequest, ChangeTopologyResponse};
