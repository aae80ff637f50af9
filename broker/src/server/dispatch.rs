//! Routes a decoded request to its handler. Every handler's response is a
//! typed message; only this module turns bodies into types and back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use surge_protocol::fetch::FetchRequest;
use surge_protocol::group::{
    CommitOffsetsRequest, FetchOffsetsRequest, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest,
};
use surge_protocol::handshake::HandshakeRequest;
use surge_protocol::offsets::ListOffsetsRequest;
use surge_protocol::produce::ProduceRequest;
use surge_protocol::stream::{
    CreateStreamRequest, DeleteStreamRequest, DescribeStreamRequest, ListStreamsRequest,
    MetadataRequest,
};
use surge_protocol::topology::ChangeTopologyRequest;
use surge_protocol::{ApiKey, Wire, Writer};
use tokio_util::sync::CancellationToken;

use super::{admin, fetch, produce};
use crate::broker::Broker;

pub(super) type Pending = Pin<Box<dyn Future<Output = Writer> + Send>>;

pub(super) enum Outcome {
    /// The body did not decode; the message says why.
    Malformed(String),
    /// A handshake answer and whether it succeeded.
    Handshake(bool, Writer),
    /// The response, once ready.
    Pending(Pending),
}

fn encode<T: Wire>(message: &T) -> Writer {
    let mut writer = Writer::new();
    message.encode(&mut writer);
    writer
}

fn later<T, F>(future: F) -> Outcome
where
    T: Wire + Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    Outcome::Pending(Box::pin(async move { encode(&future.await) }))
}

fn ready<T: Wire + Send + 'static>(message: T) -> Outcome {
    Outcome::Pending(Box::pin(async move { encode(&message) }))
}

/// Decodes the body and starts the handler. Work that must happen in arrival
/// order (enqueueing appends) is done before this returns.
pub(super) async fn prepare(
    broker: &Arc<Broker>,
    api: ApiKey,
    body: Bytes,
    shutdown: &CancellationToken,
) -> Outcome {
    match route(broker, api, body, shutdown).await {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Malformed(format!("{api:?} request body: {err}")),
    }
}

async fn route(
    broker: &Arc<Broker>,
    api: ApiKey,
    body: Bytes,
    shutdown: &CancellationToken,
) -> Result<Outcome, surge_protocol::DecodeError> {
    let broker = broker.clone();
    let now_ms = crate::clock::now_ms() as u64;
    Ok(match api {
        ApiKey::Handshake => {
            let (ok, response) = admin::handshake(&broker, &HandshakeRequest::decode_all(body)?);
            Outcome::Handshake(ok, encode(&response))
        }
        ApiKey::CreateStream => ready(admin::create_stream(
            &broker,
            &CreateStreamRequest::decode_all(body)?,
        )),
        ApiKey::DeleteStream => {
            let request = DeleteStreamRequest::decode_all(body)?;
            later(async move { admin::delete_stream(&broker, &request).await })
        }
        ApiKey::ListStreams => {
            ListStreamsRequest::decode_all(body)?;
            ready(admin::list_streams(&broker))
        }
        ApiKey::DescribeStream => ready(admin::describe_stream(
            &broker,
            &DescribeStreamRequest::decode_all(body)?,
        )),
        ApiKey::Metadata => ready(admin::metadata(
            &broker,
            &MetadataRequest::decode_all(body)?,
        )),
        ApiKey::Produce => {
            let request = ProduceRequest::decode_all(body)?;
            let pending = produce::enqueue_produce(&broker, request, shutdown).await;
            later(pending.finish())
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode_all(body)?;
            let shutdown = shutdown.clone();
            later(async move { fetch::fetch(&broker, &request, &shutdown).await })
        }
        ApiKey::ListOffsets => ready(fetch::list_offsets(
            &broker,
            &ListOffsetsRequest::decode_all(body)?,
        )),
        ApiKey::JoinGroup => {
            let request = JoinGroupRequest::decode_all(body)?;
            blocking(move || admin::join_group(&broker, &request, now_ms))
        }
        ApiKey::Heartbeat => {
            let request = HeartbeatRequest::decode_all(body)?;
            ready(admin::heartbeat(&broker, &request, now_ms))
        }
        ApiKey::LeaveGroup => {
            let request = LeaveGroupRequest::decode_all(body)?;
            ready(broker.groups.leave(&request, now_ms))
        }
        ApiKey::CommitOffsets => {
            // Commits fsync: keep them off the async workers.
            let request = CommitOffsetsRequest::decode_all(body)?;
            blocking(move || broker.groups.commit(&request, now_ms))
        }
        ApiKey::ChangeTopology => {
            let request = ChangeTopologyRequest::decode_all(body)?;
            later(async move { admin::change_topology(&broker, &request).await })
        }
        ApiKey::FetchOffsets => ready(
            broker
                .groups
                .fetch_offsets(&FetchOffsetsRequest::decode_all(body)?),
        ),
    })
}

/// Runs a handler that may block (fsync) on the blocking pool.
fn blocking<T, F>(handler: F) -> Outcome
where
    T: Wire + Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    Outcome::Pending(Box::pin(async move {
        match tokio::task::spawn_blocking(handler).await {
            Ok(response) => encode(&response),
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }))
}
