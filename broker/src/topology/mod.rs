//! Streams and shards as metadata: settings, hash ranges, shard groups
//! (event-type isolation), lineage, epochs, the journal that commits each
//! change, and how a create request's settings are resolved against the
//! broker's defaults and limits.

mod change;
mod isolate;
mod journal;
mod meta;
#[cfg(test)]
mod model;

pub use change::{apply, check_coverage, plan, Change, Plan, MAX_SHARDS_EVER_PER_STREAM};
pub use journal::{AppendError, Claim, Journal, Record, JOURNAL_FILE};
pub use meta::{ShardMeta, StreamMeta, StreamSettings, META_FILE, META_VERSION};

use surge_protocol::stream::{Durability, StreamConfig};

use crate::config::{StreamDefaults, MAX_SHARDS_PER_STREAM};

/// Fills zeros in a create request from the defaults and checks limits.
/// A segment must hold the largest batch the broker accepts.
/// Returns the shard count and the settings, or a message for the client.
pub fn resolve_settings(
    requested: &StreamConfig,
    defaults: &StreamDefaults,
    max_batch_bytes: usize,
) -> Result<(u32, StreamSettings), String> {
    let shards = match requested.shard_count {
        0 => defaults.shards,
        count => count,
    };
    if shards > MAX_SHARDS_PER_STREAM {
        return Err(format!(
            "shard_count {shards} exceeds the limit {MAX_SHARDS_PER_STREAM}"
        ));
    }
    let pick = |value: u64, default: u64| if value == 0 { default } else { value };
    let segment_bytes = pick(requested.segment_bytes, defaults.segment_bytes);
    let min_segment_bytes = (max_batch_bytes as u64).max(1 << 20);
    if !(min_segment_bytes..=(1 << 32)).contains(&segment_bytes) {
        return Err(format!(
            "segment_bytes {segment_bytes} must be between {min_segment_bytes} (1 MiB or max_batch_bytes) and 4 GiB"
        ));
    }
    let durability = match requested.durability {
        Durability::Fsync => "fsync",
        Durability::Write => "write",
    };
    let routing_header = requested.routing_header.clone();
    if !routing_header.is_empty() && !surge_protocol::valid_name(&routing_header) {
        return Err(format!(
            "routing_header {routing_header:?}: header names are {}",
            surge_protocol::NAME_RULE
        ));
    }
    let flush_interval_ms = match requested.flush_interval_ms {
        0 => defaults.flush_interval_ms,
        value => value,
    };
    Ok((
        shards,
        StreamSettings {
            durability: durability.into(),
            retention_bytes: pick(requested.retention_bytes, defaults.retention_bytes),
            retention_ms: pick(requested.retention_ms, defaults.retention_ms),
            segment_bytes,
            segment_ms: pick(requested.segment_ms, defaults.segment_ms),
            flush_interval_ms,
            routing_header,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_take_defaults_and_limits_hold() {
        let defaults = StreamDefaults::default();
        let (shards, settings) =
            resolve_settings(&StreamConfig::default(), &defaults, 1 << 20).unwrap();
        assert_eq!(shards, defaults.shards);
        assert_eq!(settings.segment_bytes, defaults.segment_bytes);
        let too_many = StreamConfig {
            shard_count: MAX_SHARDS_PER_STREAM + 1,
            ..StreamConfig::default()
        };
        assert!(resolve_settings(&too_many, &defaults, 1 << 20).is_err());
        let tiny_segments = StreamConfig {
            segment_bytes: 10,
            ..StreamConfig::default()
        };
        assert!(resolve_settings(&tiny_segments, &defaults, 1 << 20).is_err());
        let small_segments = StreamConfig {
            segment_bytes: 2 << 20,
            ..StreamConfig::default()
        };
        assert!(resolve_settings(&small_segments, &defaults, 1 << 20).is_ok());
        let by_type = StreamConfig {
            routing_header: "type".into(),
            ..StreamConfig::default()
        };
        let (_, settings) = resolve_settings(&by_type, &defaults, 1 << 20).unwrap();
        assert_eq!(settings.routing_header, "type");
        let bad_header = StreamConfig {
            routing_header: "no spaces".into(),
            ..StreamConfig::default()
        };
        assert!(resolve_settings(&bad_header, &defaults, 1 << 20).is_err());
        assert!(
            resolve_settings(&small_segments, &defaults, 4 << 20).is_err(),
            "a segment smaller than the largest batch is refused"
        );
    }
}
