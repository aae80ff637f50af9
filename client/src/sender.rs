//! Sending one record batch to one shard, once, and judging the answer.
//! Retries are the producer's (`producer::window`): a shard's batches must
//! go out again in sequence order, which one batch's own retry loop cannot
//! keep. The batch bytes never change between attempts, so a retry of a
//! batch the broker already stored is recognised by its producer id and
//! sequence and stored once. A batch that reached a sealed shard may have
//! been forwarded by the broker to its successors; then each record has its
//! own placement, and the acks come from those.
//!
//! A shard's batches must also reach the broker in sequence order, or the
//! shard refuses the later one as out of order and the window goes again:
//! concurrent sends can pass each other on the way to the connection's
//! writer. So each send of a shard waits until the one before it is queued
//! there (`WireOrder`), goes out on the same connection, and is not sent at
//! all if that one never got there.

use std::time::Duration;

use bytes::Bytes;
use surge_protocol::batch;
use surge_protocol::produce::{
    Acks, ProducePart, ProducePartResponse, ProduceRequest, ProduceResponse,
};
use surge_protocol::ErrorCode;
use tokio::sync::oneshot;

use crate::client::Client;
use crate::config::wire_ms;
use crate::error::ClientError;
use crate::producer::Ack;

/// Client-side slack over the timeout the broker is given.
const TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// Everything the sending task needs; owned so the task is `'static`.
#[derive(Debug)]
pub(crate) struct BatchJob {
    pub(crate) client: Client,
    pub(crate) stream: String,
    pub(crate) shard_id: u32,
    pub(crate) batch: Bytes,
    pub(crate) acks: Acks,
    pub(crate) timeout: Duration,
    pub(crate) order: WireOrder,
}

/// A send's place in its shard's series: told by the send before it once
/// that one is on its way (`None`: nothing before it is in flight), and
/// telling the one after.
#[derive(Debug)]
pub(crate) struct WireOrder {
    pub(crate) after: Option<oneshot::Receiver<u64>>,
    pub(crate) written: oneshot::Sender<u64>,
}

impl WireOrder {
    /// The next place in a series whose last send holds `tail`; `tail`
    /// becomes this send's.
    pub(crate) fn next(tail: &mut Option<oneshot::Receiver<u64>>) -> WireOrder {
        let (written, receiver) = oneshot::channel();
        WireOrder {
            after: tail.replace(receiver),
            written,
        }
    }

    /// Waits until the send before this one is on its way: `Err` if it
    /// never will be (it failed first, or was dropped); else the connection
    /// it went out on, if there was one before this.
    async fn turn(&mut self) -> Result<Option<u64>, ()> {
        match self.after.take() {
            Some(after) => after.await.map(Some).map_err(|_| ()),
            None => Ok(None),
        }
    }
}

/// How a batch ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Where each record of the batch was stored, in batch order.
    Acked { acks: Vec<Ack>, epoch: u64 },
    /// The shard is sealed or unknown: refresh the routing and re-route.
    Reroute(ClientError),
    /// Not sent: the batch before it never reached the connection, so this
    /// one would have arrived with a gap before it.
    Unsent,
    /// Anything else; `ClientError::is_retriable` tells whether the broker
    /// may have stored it.
    Failed(ClientError),
}

pub(crate) async fn send_batch(mut job: BatchJob) -> Verdict {
    let Ok(after) = job.order.turn().await else {
        return Verdict::Unsent;
    };
    let req = ProduceRequest {
        stream: job.stream.clone(),
        acks: job.acks,
        timeout_ms: wire_ms(job.timeout),
        parts: vec![ProducePart {
            shard_id: job.shard_id,
            batch: job.batch.clone(),
        }],
    };
    let record_count = batch::read_header(&job.batch).record_count;
    let result = job
        .client
        .request_in_series(&req, job.timeout + TIMEOUT_SLACK, after, job.order.written)
        .await;
    judge(result, job.shard_id, record_count).unwrap_or_else(Verdict::Failed)
}

/// A final verdict, or the retriable error to retry after.
fn judge(
    result: Result<ProduceResponse, ClientError>,
    shard_id: u32,
    record_count: u32,
) -> Result<Verdict, ClientError> {
    let resp = match result {
        Ok(resp) => resp,
        Err(error) if error.is_retriable() => return Err(error),
        Err(error) => return Ok(Verdict::Failed(error)),
    };
    let (code, part) = if resp.error.is_ok() {
        match resp.parts.iter().find(|part| part.shard_id == shard_id) {
            Some(part) => (part.error, Some(part)),
            None => {
                let message = format!("produce response without shard {shard_id}");
                return Ok(Verdict::Failed(ClientError::Protocol(message)));
            }
        }
    } else {
        (resp.error, None)
    };
    let error = ClientError::Broker {
        code,
        message: format!("produce to shard {shard_id}"),
    };
    match (code, part) {
        (ErrorCode::None, Some(part)) => Ok(match acks_of(part, record_count) {
            Ok(acks) => Verdict::Acked {
                acks,
                epoch: resp.epoch,
            },
            Err(error) => Verdict::Failed(error),
        }),
        (ErrorCode::ShardSealed | ErrorCode::UnknownShard, _) => Ok(Verdict::Reroute(error)),
        (code, _) if code.is_retriable() => Err(error),
        _ => Ok(Verdict::Failed(error)),
    }
}

/// One ack per record: from the placements when the broker forwarded the
/// batch, else dense from the base offset.
fn acks_of(part: &ProducePartResponse, record_count: u32) -> Result<Vec<Ack>, ClientError> {
    if part.placements.is_empty() {
        // u64::MAX: a retry the broker recognised without knowing where the
        // original went; every record's offset is unknown then.
        let acks = (0..u64::from(record_count))
            .map(|index| Ack {
                shard_id: part.shard_id,
                offset: part.base_offset.saturating_add(index),
            })
            .collect();
        return Ok(acks);
    }
    if part.placements.len() != record_count as usize {
        return Err(ClientError::Protocol(format!(
            "shard {} answered {} placements for a batch of {record_count} records",
            part.shard_id,
            part.placements.len()
        )));
    }
    Ok(part
        .placements
        .iter()
        .map(|placement| Ack {
            shard_id: placement.shard_id,
            offset: placement.offset,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use surge_protocol::produce::RecordPlacement;

    use super::*;

    fn response(placements: Vec<RecordPlacement>) -> ProduceResponse {
        ProduceResponse {
            error: ErrorCode::None,
            epoch: 2,
            parts: vec![ProducePartResponse {
                shard_id: 0,
                error: ErrorCode::None,
                base_offset: 7,
                duplicate: false,
                placements,
            }],
        }
    }

    #[test]
    fn acks_come_from_placements_when_forwarded() {
        let placements = vec![
            RecordPlacement {
                shard_id: 2,
                offset: 4,
            },
            RecordPlacement {
                shard_id: 1,
                offset: u64::MAX,
            },
        ];
        let verdict = judge(Ok(response(placements)), 0, 2).unwrap();
        let Verdict::Acked { acks, epoch } = verdict else {
            panic!("expected an ack, got {verdict:?}");
        };
        assert_eq!(epoch, 2);
        assert_eq!(
            acks,
            vec![
                Ack {
                    shard_id: 2,
                    offset: 4
                },
                Ack {
                    shard_id: 1,
                    offset: u64::MAX
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_send_waits_until_the_one_before_it_is_written() {
        let mut tail = None;
        let first = WireOrder::next(&mut tail);
        let mut second = WireOrder::next(&mut tail);
        let waiting = tokio::spawn(async move { second.turn().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "went before the first was written");
        first.written.send(7).unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            Ok(Some(7)),
            "on the first's connection"
        );
    }

    #[tokio::test]
    async fn a_send_behind_one_that_never_went_out_is_not_sent() {
        let mut tail = None;
        let mut first = WireOrder::next(&mut tail);
        let mut second = WireOrder::next(&mut tail);
        assert_eq!(first.turn().await, Ok(None), "nothing before the first");
        drop(first);
        assert_eq!(second.turn().await, Err(()));
    }

    #[test]
    fn dense_acks_without_placements() {
        let verdict = judge(Ok(response(Vec::new())), 0, 3).unwrap();
        let Verdict::Acked { acks, .. } = verdict else {
            panic!("expected an ack, got {verdict:?}");
        };
        let offsets: Vec<u64> = acks.iter().map(|ack| ack.offset).collect();
        assert_eq!(offsets, vec![7, 8, 9]);
    }

    #[test]
    fn placement_count_mismatch_fails_the_batch() {
        let placements = vec![RecordPlacement {
            shard_id: 2,
            offset: 0,
        }];
        let verdict = judge(Ok(response(placements)), 0, 2).unwrap();
        assert!(
            matches!(verdict, Verdict::Failed(ClientError::Protocol(_))),
            "{verdict:?}"
        );
    }
}
