//! Sending one record batch to one shard, with retries. The batch bytes
//! never change between attempts, so a retry of a batch the broker already
//! stored is recognised by its producer id and sequence and stored once.

use std::time::Duration;

use bytes::Bytes;
use surge_protocol::produce::{Acks, ProducePart, ProduceRequest, ProduceResponse};
use surge_protocol::ErrorCode;

use crate::client::Client;
use crate::config::wire_ms;
use crate::error::ClientError;

/// Retry backoff grows to at most this many times the base.
const BACKOFF_FACTOR_MAX: u32 = 32;
/// Client-side slack over the timeout the broker is given.
const TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// Everything the sending task needs; owned so the task is `'static`.
#[derive(Debug, Clone)]
pub(crate) struct BatchJob {
    pub(crate) client: Client,
    pub(crate) stream: String,
    pub(crate) shard_id: u32,
    pub(crate) batch: Bytes,
    pub(crate) acks: Acks,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) retry_backoff: Duration,
}

/// How a batch ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    Acked {
        base_offset: u64,
        epoch: u64,
    },
    /// The shard is sealed or unknown: refresh the routing and re-route.
    Reroute(ClientError),
    Failed(ClientError),
}

pub(crate) async fn send_batch(job: BatchJob) -> Verdict {
    let req = ProduceRequest {
        stream: job.stream.clone(),
        acks: job.acks,
        timeout_ms: wire_ms(job.timeout),
        parts: vec![ProducePart {
            shard_id: job.shard_id,
            batch: job.batch.clone(),
        }],
    };
    let mut attempt = 0u32;
    loop {
        let result = job
            .client
            .request_within(&req, job.timeout + TIMEOUT_SLACK)
            .await;
        let error = match judge(result, job.shard_id) {
            Ok(verdict) => return verdict,
            Err(error) => error,
        };
        if attempt >= job.retries {
            return Verdict::Failed(error);
        }
        let factor = 1u32 << attempt.min(BACKOFF_FACTOR_MAX.trailing_zeros());
        tracing::debug!(shard = job.shard_id, attempt, %error, "retrying batch");
        tokio::time::sleep(job.retry_backoff * factor).await;
        attempt += 1;
    }
}

/// A final verdict, or the retriable error to retry after.
fn judge(
    result: Result<ProduceResponse, ClientError>,
    shard_id: u32,
) -> Result<Verdict, ClientError> {
    let resp = match result {
        Ok(resp) => resp,
        Err(error) if error.is_retriable() => return Err(error),
        Err(error) => return Ok(Verdict::Failed(error)),
    };
    let (code, base_offset) = if resp.error.is_ok() {
        match resp.parts.iter().find(|part| part.shard_id == shard_id) {
            Some(part) => (part.error, part.base_offset),
            None => {
                let message = format!("produce response without shard {shard_id}");
                return Ok(Verdict::Failed(ClientError::Protocol(message)));
            }
        }
    } else {
        (resp.error, 0)
    };
    let error = ClientError::Broker {
        code,
        message: format!("produce to shard {shard_id}"),
    };
    match code {
        ErrorCode::None => Ok(Verdict::Acked {
            base_offset,
            epoch: resp.epoch,
        }),
        ErrorCode::ShardSealed | ErrorCode::UnknownShard => Ok(Verdict::Reroute(error)),
        code if code.is_retriable() => Err(error),
        _ => Ok(Verdict::Failed(error)),
    }
}
