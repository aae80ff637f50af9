//! The durable description of a stream: its settings, its shards (hash
//! ranges, state, parents) and its routing epoch. Written crash-safely
//! (temp file, fsync, rename, fsync directory) as one file per stream:
//!
//! ```text
//! SURGE-STREAM v2 len=<bytes of JSON> crc32c=<8 hex digits>\n
//! <JSON of StreamMeta>
//! ```
//!
//! The header line lets a reader reject a torn or foreign file before
//! parsing; an unknown version is refused, never guessed at. From v3 the
//! checksum covers the header's first fields too (`SURGE-STREAM v3
//! len=<bytes>` and the space after it, then the JSON), so no flipped
//! version digit passes as an older version; v1 and v2 checksummed the
//! JSON only. v2 added each
//! shard's isolation `group`; a v1 file loads with every shard in the
//! default group (which is what v1 meant). v3 changed no field: it says
//! that the stream's topology journal (`journal`) continues this file, so a
//! build that knows no journal refuses the stream instead of silently
//! loading an older topology. Opening a v1 or v2 stream creates its journal
//! and rewrites the file as v3 before any change is journaled.

use std::path::Path;

use serde::{Deserialize, Serialize};
use surge_protocol::stream::{Durability, ShardInfo, ShardState, StreamConfig};

use crate::error::BrokerError;
use crate::fsutil;

pub const META_FILE: &str = "stream.meta";
const META_MAGIC: &str = "SURGE-STREAM";
pub const META_VERSION: u32 = 3;
/// Versions this build reads: every one it ever wrote.
const META_VERSIONS_READ: [u32; 3] = [1, 2, 3];
/// A stream's metadata is small; anything larger is not ours.
const META_MAX_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    pub durability: String,
    pub retention_bytes: u64,
    pub retention_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub flush_interval_ms: u32,
    /// Empty: route by event key; else by this header (`type`, ...).
    #[serde(default)]
    pub routing_header: String,
}

impl StreamSettings {
    pub fn durability(&self) -> Durability {
        Durability::parse(&self.durability).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: u32,
    pub hash_start: u64,
    pub hash_end: u64,
    /// The offset at which the shard was sealed; `None` while open.
    pub sealed_at: Option<u64>,
    pub parents: Vec<u32>,
    /// Index of the data directory holding the shard's log (0: `data_dir`).
    #[serde(default)]
    pub dir: u32,
    /// The event type this shard is isolated for; empty: the default group.
    /// Each group's open shards cover the hash space once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

impl ShardMeta {
    pub fn state(&self) -> ShardState {
        match self.sealed_at {
            Some(_) => ShardState::Sealed,
            None => ShardState::Open,
        }
    }

    pub fn owns(&self, hash: u64) -> bool {
        (self.hash_start..=self.hash_end).contains(&hash)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub settings: StreamSettings,
    /// Bumped by every topology change; clients refresh routing on a newer one.
    pub epoch: u64,
    pub next_shard_id: u32,
    pub shards: Vec<ShardMeta>,
}

impl StreamMeta {
    /// A new stream with `count` shards over equal hash ranges.
    pub fn new(name: &str, settings: StreamSettings, count: u32) -> StreamMeta {
        let shards = surge_protocol::routing::equal_ranges(count)
            .into_iter()
            .enumerate()
            .map(|(index, (hash_start, hash_end))| ShardMeta {
                id: index as u32,
                hash_start,
                hash_end,
                sealed_at: None,
                parents: Vec::new(),
                dir: 0,
                group: String::new(),
            })
            .collect();
        StreamMeta {
            name: name.to_owned(),
            settings,
            epoch: 1,
            next_shard_id: count,
            shards,
        }
    }

    /// Whether the hash ranges of shards `a` and `b` meet, so records sent
    /// to one may have been forwarded to the other; `true` when either is
    /// unknown.
    pub fn ranges_meet(&self, a: u32, b: u32) -> bool {
        let range = |id: u32| self.shards.iter().find(|shard| shard.id == id);
        match (range(a), range(b)) {
            (Some(a), Some(b)) => a.hash_start <= b.hash_end && b.hash_start <= a.hash_end,
            _ => true,
        }
    }

    /// The event types with shards of their own (the isolation rules),
    /// sorted: the groups of the open shards, less the default one.
    pub fn isolated_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self
            .shards
            .iter()
            .filter(|shard| shard.sealed_at.is_none() && !shard.group.is_empty())
            .map(|shard| shard.group.as_str())
            .collect();
        types.sort_unstable();
        types.dedup();
        types
    }

    pub fn config(&self) -> StreamConfig {
        let open = self.shards.iter().filter(|shard| shard.sealed_at.is_none());
        StreamConfig {
            shard_count: open.count() as u32,
            durability: self.settings.durability(),
            retention_bytes: self.settings.retention_bytes,
            retention_ms: self.settings.retention_ms,
            segment_bytes: self.settings.segment_bytes,
            segment_ms: self.settings.segment_ms,
            flush_interval_ms: self.settings.flush_interval_ms,
            routing_header: self.settings.routing_header.clone(),
        }
    }

    /// Shard descriptions without the live offsets (filled in by the caller).
    pub fn shard_infos(&self) -> Vec<ShardInfo> {
        self.shards
            .iter()
            .map(|shard| ShardInfo {
                shard_id: shard.id,
                hash_start: shard.hash_start,
                hash_end: shard.hash_end,
                state: shard.state(),
                parents: shard.parents.clone(),
                dir: shard.dir,
                group: shard.group.clone(),
                ..ShardInfo::default()
            })
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec_pretty(self).expect("stream metadata serializes");
        let covered = format!("{META_MAGIC} v{META_VERSION} len={} ", json.len());
        let crc = crc32c::crc32c_append(crc32c::crc32c(covered.as_bytes()), &json);
        let mut out = format!("{covered}crc32c={crc:08x}\n").into_bytes();
        out.extend_from_slice(&json);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StreamMeta, String> {
        StreamMeta::decode_versioned(bytes).map(|(meta, _)| meta)
    }

    /// Decodes a metadata file and says which version it was.
    pub fn decode_versioned(bytes: &[u8]) -> Result<(StreamMeta, u32), String> {
        if bytes.len() > META_MAX_BYTES {
            return Err(format!("{} bytes exceed {META_MAX_BYTES}", bytes.len()));
        }
        let newline = bytes
            .iter()
            .position(|&byte| byte == b'\n')
            .ok_or("no header line")?;
        let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header not UTF-8")?;
        let body = &bytes[newline + 1..];
        let fields: Vec<&str> = header.split(' ').collect();
        let [magic, version, len, crc] = fields[..] else {
            return Err(format!("malformed header {header:?}"));
        };
        if magic != META_MAGIC {
            return Err(format!("bad magic {magic:?}"));
        }
        let version_number = version
            .strip_prefix('v')
            .and_then(|number| number.parse::<u32>().ok())
            .filter(|number| META_VERSIONS_READ.contains(number))
            .ok_or_else(|| format!("unsupported version {version}"))?;
        let len: usize = len
            .strip_prefix("len=")
            .and_then(|value| value.parse().ok())
            .ok_or("bad len field")?;
        let crc = crc
            .strip_prefix("crc32c=")
            .and_then(|value| u32::from_str_radix(value, 16).ok())
            .ok_or("bad crc field")?;
        if body.len() != len {
            return Err(format!("body is {} bytes, header says {len}", body.len()));
        }
        let computed = if version_number >= 3 {
            let covered = format!("{magic} {version} {} ", fields[2]);
            crc32c::crc32c_append(crc32c::crc32c(covered.as_bytes()), body)
        } else {
            crc32c::crc32c(body)
        };
        if computed != crc {
            return Err(format!("checksum {computed:08x} != stored {crc:08x}"));
        }
        let meta = serde_json::from_slice(body).map_err(|err| err.to_string())?;
        Ok((meta, version_number))
    }

    pub fn store(&self, dir: &Path) -> Result<(), BrokerError> {
        self.prepare(dir)?;
        StreamMeta::commit(dir)
    }

    /// Writes this metadata durably beside the current file, which stays
    /// in force until `commit`: a change makes its successors durable in
    /// the meantime.
    pub fn prepare(&self, dir: &Path) -> Result<(), BrokerError> {
        fsutil::write_temp(dir, META_FILE, &self.encode()).map_err(|source| BrokerError::Io {
            op: "write stream metadata",
            path: dir.join(META_FILE),
            source,
        })
    }

    /// Puts the prepared metadata in force: the commit point of a change.
    pub fn commit(dir: &Path) -> Result<(), BrokerError> {
        fsutil::commit_temp(dir, META_FILE).map_err(|source| BrokerError::Io {
            op: "commit stream metadata",
            path: dir.join(META_FILE),
            source,
        })
    }

    pub fn load(dir: &Path) -> Result<StreamMeta, BrokerError> {
        StreamMeta::load_versioned(dir).map(|(meta, _)| meta)
    }

    /// Loads the metadata and the version of the file it came from.
    pub fn load_versioned(dir: &Path) -> Result<(StreamMeta, u32), BrokerError> {
        let path = dir.join(META_FILE);
        let bytes = std::fs::read(&path).map_err(|source| BrokerError::Io {
            op: "read stream metadata",
            path: path.clone(),
            source,
        })?;
        StreamMeta::decode_versioned(&bytes)
            .map_err(|reason| BrokerError::CorruptMetadata { path, reason })
    }
}

/// Settings for tests of the metadata and of planning.
#[cfg(test)]
pub(crate) fn test_settings() -> StreamSettings {
    StreamSettings {
        durability: "fsync".into(),
        retention_bytes: 0,
        retention_ms: 0,
        segment_bytes: 1 << 20,
        segment_ms: 0,
        flush_interval_ms: 1000,
        routing_header: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StreamSettings {
        test_settings()
    }

    #[test]
    fn store_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let meta = StreamMeta::new("orders", settings(), 3);
        meta.store(dir.path()).unwrap();
        assert_eq!(StreamMeta::load(dir.path()).unwrap(), meta);
    }

    #[test]
    fn ranges_meet_where_they_share_a_hash() {
        let meta = StreamMeta::new("orders", settings(), 3);
        let [a, b, c] = [0, 1, 2].map(|at| meta.shards[at].id);
        assert!(meta.ranges_meet(a, a));
        assert!(!meta.ranges_meet(a, b) && !meta.ranges_meet(b, c));
        assert!(!meta.ranges_meet(c, a));
        let mut grown = meta.clone();
        let mut wide = grown.shards[0].clone();
        wide.id = 9;
        wide.hash_end = grown.shards[1].hash_start;
        grown.shards.push(wide);
        assert!(grown.ranges_meet(9, b), "one shared hash is enough");
        assert!(!grown.ranges_meet(9, c));
        assert!(meta.ranges_meet(a, 42), "an unknown shard may meet any");
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let bytes = StreamMeta::new("orders", settings(), 2).encode();
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x01;
            assert!(
                StreamMeta::decode(&corrupt).is_err(),
                "flip at {at} accepted"
            );
        }
    }

    /// A metadata file as a build that wrote `version` did: the JSON body
    /// under a header whose checksum covers the body only.
    fn legacy_file(version: u32, json: &[u8]) -> Vec<u8> {
        let mut file = format!(
            "SURGE-STREAM v{version} len={} crc32c={:08x}\n",
            json.len(),
            crc32c::crc32c(json)
        )
        .into_bytes();
        file.extend_from_slice(json);
        file
    }

    #[test]
    fn a_version_1_file_loads_into_the_default_group() {
        // Written by the build before isolation existed (no `group` field).
        let json = br#"{"name":"old","settings":{"durability":"fsync","retention_bytes":0,"retention_ms":0,"segment_bytes":1048576,"segment_ms":0,"flush_interval_ms":1000},"epoch":3,"next_shard_id":3,"shards":[{"id":0,"hash_start":0,"hash_end":18446744073709551615,"sealed_at":7,"parents":[]},{"id":1,"hash_start":0,"hash_end":9223372036854775807,"sealed_at":null,"parents":[0]},{"id":2,"hash_start":9223372036854775808,"hash_end":18446744073709551615,"sealed_at":null,"parents":[0],"dir":1}]}"#;
        let file = legacy_file(1, json);
        let meta = StreamMeta::decode(&file).unwrap();
        assert_eq!(meta.shards.len(), 3);
        assert!(meta.shards.iter().all(|shard| shard.group.is_empty()));
        assert_eq!(meta.shards[2].dir, 1);
        assert!(meta.isolated_types().is_empty());
        assert!(meta.encode().starts_with(b"SURGE-STREAM v3 "));
        let mut future = file.clone();
        future[14] = b'9';
        let err = StreamMeta::decode(&future).unwrap_err();
        assert!(err.contains("unsupported version v9"), "{err}");
    }

    #[test]
    fn a_version_2_file_loads_and_says_so() {
        // Written by the build before the topology journal: same fields.
        let json = br#"{"name":"v2","settings":{"durability":"fsync","retention_bytes":0,"retention_ms":0,"segment_bytes":1048576,"segment_ms":0,"flush_interval_ms":1000,"routing_header":"type"},"epoch":2,"next_shard_id":2,"shards":[{"id":0,"hash_start":0,"hash_end":18446744073709551615,"sealed_at":4,"parents":[],"dir":0},{"id":1,"hash_start":0,"hash_end":18446744073709551615,"sealed_at":null,"parents":[0],"dir":0,"group":"hot"}]}"#;
        let file = legacy_file(2, json);
        let (meta, version) = StreamMeta::decode_versioned(&file).unwrap();
        assert_eq!(version, 2);
        assert_eq!(meta.shards[1].group, "hot");
        assert_eq!(meta.settings.routing_header, "type");
        let (again, version) = StreamMeta::decode_versioned(&meta.encode()).unwrap();
        assert_eq!((again, version), (meta, META_VERSION));
    }

    #[test]
    fn truncated_file_is_rejected() {
        let bytes = StreamMeta::new("orders", settings(), 2).encode();
        for len in 0..bytes.len() {
            assert!(StreamMeta::decode(&bytes[..len]).is_err());
        }
    }

    #[test]
    fn shards_cover_the_hash_space() {
        let meta = StreamMeta::new("s", settings(), 5);
        assert!(meta.shards.iter().any(|shard| shard.owns(0)));
        assert!(meta.shards.iter().any(|shard| shard.owns(u64::MAX)));
        assert_eq!(meta.config().shard_count, 5);
    }
}
