//! The broker's implementation of the autoscaler's `TopologyControl`: the
//! same seal-and-succeed changes the `ChangeTopology` request runs.

use std::sync::Arc;

use surge_autoscaler::{ChangeReport, ControlError, ShardView, StreamTopology, TopologyControl};
use surge_protocol::ErrorCode;

use crate::broker::Broker;
use crate::streams::ChangeDone;
use crate::topology::Change;

/// `TopologyControl` over a running broker.
#[derive(Debug, Clone)]
pub struct BrokerControl {
    broker: Arc<Broker>,
}

impl BrokerControl {
    pub fn new(broker: Arc<Broker>) -> BrokerControl {
        BrokerControl { broker }
    }

    async fn apply(&self, stream: &str, change: Change) -> Result<ChangeReport, ControlError> {
        match self.broker.streams.change(stream, change).await {
            Ok(ChangeDone {
                epoch,
                sealed,
                created,
                took_us,
            }) => Ok(ChangeReport {
                epoch,
                sealed,
                created,
                took_us,
            }),
            Err((ErrorCode::UnknownStream, _)) => {
                Err(ControlError::UnknownStream(stream.to_owned()))
            }
            Err((ErrorCode::InvalidRequest, message)) => Err(ControlError::Rejected(message)),
            Err((_, message)) => Err(ControlError::Failed(message)),
        }
    }
}

impl TopologyControl for BrokerControl {
    async fn describe(&self, stream: &str) -> Result<StreamTopology, ControlError> {
        let live = self
            .broker
            .streams
            .get(stream)
            .ok_or_else(|| ControlError::UnknownStream(stream.to_owned()))?;
        let view = live.view();
        let shards = view
            .meta
            .shards
            .iter()
            .map(|shard| {
                let runtime = view.shards.get(&shard.id);
                ShardView {
                    id: shard.id,
                    hash_start: shard.hash_start,
                    hash_end: shard.hash_end,
                    sealed: shard.sealed_at.is_some(),
                    parents: shard.parents.clone(),
                    dir: shard.dir,
                    group: shard.group.clone(),
                    end_offset: shard
                        .sealed_at
                        .or_else(|| runtime.map(|live| live.visible_end()))
                        .unwrap_or(0),
                    size_bytes: runtime.map_or(0, |live| live.size_bytes()),
                }
            })
            .collect();
        Ok(StreamTopology {
            stream: stream.to_owned(),
            epoch: view.meta.epoch,
            shards,
        })
    }

    async fn split(
        &self,
        stream: &str,
        shard: u32,
        at: Option<u64>,
    ) -> Result<ChangeReport, ControlError> {
        let at = at
            .or_else(|| self.broker.streams.split_point(stream, shard))
            .ok_or_else(|| ControlError::Rejected(format!("no shard {shard} in {stream}")))?;
        self.apply(stream, Change::Split { shard, at }).await
    }

    async fn merge(
        &self,
        stream: &str,
        left: u32,
        right: u32,
    ) -> Result<ChangeReport, ControlError> {
        self.apply(stream, Change::Merge { left, right }).await
    }

    async fn move_shard(
        &self,
        stream: &str,
        shard: u32,
        dir: u32,
    ) -> Result<ChangeReport, ControlError> {
        self.apply(stream, Change::Move { shard, dir }).await
    }
}
