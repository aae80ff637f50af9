//! `GET /get_topology[?stream=NAME]`: every stream (or one) with its
//! shards, hash ranges, state, lineage, epoch and owner, the latest
//! per-shard rates the autoscaler measured, and the node's utilization.
//! The types are shared with the `surge topology` and `surge stream
//! describe` commands, which read this answer.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use surge_autoscaler::{NodeRates, ShardRates};

use super::error::ApiError;
use super::params::Params;
use super::AppState;
use crate::streams::Stream;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Topology {
    pub broker_id: String,
    pub autoscaler_enabled: bool,
    /// Utilization between the autoscaler's last two samples.
    pub node: Option<NodeRates>,
    pub streams: Vec<StreamTopology>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamTopology {
    pub name: String,
    pub epoch: u64,
    /// "key", or the header events are routed by.
    pub routed_by: String,
    /// Measured over the autoscaler's last interval; absent before it
    /// measured the stream twice.
    pub events_per_s: Option<f64>,
    pub bytes_per_s: Option<f64>,
    pub shards: Vec<ShardTopology>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardTopology {
    pub id: u32,
    /// Inclusive hash range, as `0x` and 16 hex digits (JSON numbers lose
    /// precision past 2^53).
    pub hash_start: String,
    pub hash_end: String,
    /// "open" or "sealed".
    pub state: String,
    pub parents: Vec<u32>,
    /// The broker that owns the shard.
    pub owner: String,
    pub dir: u32,
    pub start_offset: u64,
    /// Next offset, or the sealed end.
    pub end_offset: u64,
    pub size_bytes: u64,
    pub rates: Option<ShardRates>,
}

/// `stream` (optional): one stream, else all.
pub async fn get_topology(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Topology>, ApiError> {
    params.only(&["stream"])?;
    let streams = match params.get("stream") {
        Some(name) => vec![state
            .broker
            .streams
            .get(name)
            .ok_or_else(|| ApiError::unknown_stream(name))?],
        None => state.broker.streams.all(),
    };
    let streams = streams
        .iter()
        .map(|stream| describe(&state, stream))
        .collect();
    Ok(Json(Topology {
        broker_id: state.broker.config.broker_id.clone(),
        autoscaler_enabled: state.engine.config().enabled,
        node: state.engine.node(),
        streams,
    }))
}

fn describe(state: &AppState, stream: &Stream) -> StreamTopology {
    let view = stream.view();
    let rates = state.engine.rates(&stream.name);
    let routed_by = match view.meta.settings.routing_header.as_str() {
        "" => "key".to_owned(),
        header => header.to_owned(),
    };
    let shards = view
        .meta
        .shards
        .iter()
        .map(|meta| {
            let live = view.shards.get(&meta.id);
            let shard_rates = rates
                .as_ref()
                .and_then(|rates| rates.shards.iter().find(|shard| shard.shard == meta.id))
                .cloned();
            ShardTopology {
                id: meta.id,
                hash_start: format!("{:#018x}", meta.hash_start),
                hash_end: format!("{:#018x}", meta.hash_end),
                state: if meta.sealed_at.is_some() {
                    "sealed"
                } else {
                    "open"
                }
                .into(),
                parents: meta.parents.clone(),
                owner: state.broker.config.broker_id.clone(),
                dir: meta.dir,
                start_offset: live.map_or(0, |shard| shard.log_start()),
                end_offset: meta
                    .sealed_at
                    .or_else(|| live.map(|shard| shard.visible_end()))
                    .unwrap_or(0),
                size_bytes: live.map_or(0, |shard| shard.size_bytes()),
                rates: shard_rates,
            }
        })
        .collect();
    StreamTopology {
        name: stream.name.clone(),
        epoch: view.meta.epoch,
        routed_by,
        events_per_s: rates.as_ref().map(|rates| rates.events_per_s),
        bytes_per_s: rates.as_ref().map(|rates| rates.bytes_per_s),
        shards,
    }
}
