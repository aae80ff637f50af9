//! Broker configuration: embedded defaults, overridden by a TOML file, then
//! by `SURGE_*` environment variables, then by command-line flags. All
//! three layers merge into one TOML table that serde turns into
//! `BrokerConfig`, so every key has exactly one name and one parser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use surge_autoscaler::AutoscalerConfig;
use surge_protocol::stream::Durability;
use thiserror::Error;

use crate::storage::IoChoice;

/// Upper bounds that no configuration may exceed.
pub const MAX_CONNECTIONS_LIMIT: usize = 100_000;
pub const MAX_SHARDS_PER_STREAM: u32 = 4096;
pub const MAX_STREAMS_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Where stream metadata, shard logs and group offsets live.
    pub data_dir: PathBuf,
    /// More directories for shard logs (other disks, or a fast and a cheap
    /// tier); shards move between them with `surge shard move`. Order
    /// matters: a shard records the index of its directory.
    pub extra_data_dirs: Vec<PathBuf>,
    /// TCP address of the binary protocol.
    pub listen: String,
    /// Address of the HTTP control API and `/metrics`; "" or "off" turns
    /// it off.
    pub http_listen: String,
    /// Identifier reported in the handshake.
    pub broker_id: String,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub max_batch_bytes: usize,
    /// Requests one connection may have in flight (pipelining depth).
    pub max_in_flight_per_connection: usize,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Longest a fetch may long-poll, whatever the client asks.
    pub max_fetch_wait_ms: u64,
    /// `pwrite`, `auto` (io_uring if the kernel allows it, else pwrite) or
    /// `uring`. The default is pwrite: the owner thread waits for each
    /// write either way, and on ext4 io_uring hands a buffered write to a
    /// kernel worker, which cost appends 30-40 µs more (BENCHMARKS.md).
    pub io_backend: String,
    pub max_streams: usize,
    /// Appends queued per shard before producers wait.
    pub shard_queue_depth: usize,
    /// Newest bytes of each shard log kept in the page cache; older data
    /// is dropped from it once durable, so the cache does not grow with
    /// the log (on a VM, new cache pages can cost more than the disk:
    /// BENCHMARKS.md). 0 leaves the cache to the kernel.
    pub page_cache_window_bytes: u64,
    pub retention_check_interval_ms: u64,
    /// Defaults for streams created without explicit settings.
    pub stream_defaults: StreamDefaults,
    pub autoscaler: AutoscalerSettings,
}

/// The embedded autoscaler's settings (the engine's own defaults cover
/// the rest). Its history lives in `<data_dir>/autoscaler`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscalerSettings {
    /// false: the loop still measures, forecasts and records decisions, but
    /// applies none (dry mode).
    pub enabled: bool,
    pub interval_ms: u64,
    /// Between ticks, measured load above what a stream's shards are sized
    /// for grows it within this long (0, or not shorter than
    /// `interval_ms`: growth waits for a tick).
    pub watch_interval_ms: u64,
    /// Events/s one shard is sized for.
    pub capacity_per_shard_eps: f64,
    /// Spare capacity kept above the predicted load (0.2: 20%).
    pub headroom: f64,
    /// The forecast this far ahead is a floor under the measured need.
    pub horizon_ms: u64,
    /// After a split, no merge of that stream for this long.
    pub scale_down_cooldown_ms: u64,
    /// Load must allow a merge for this long before one happens.
    pub scale_down_stable_ms: u64,
    /// Both waits above, for a low the forecast foresees.
    pub scale_down_foreseen_ms: u64,
    pub min_shards: u32,
    pub max_shards: u32,
}

impl Default for AutoscalerSettings {
    fn default() -> Self {
        AutoscalerSettings {
            enabled: true,
            interval_ms: 10_000,
            watch_interval_ms: 1_000,
            capacity_per_shard_eps: 5_000.0,
            headroom: 0.2,
            horizon_ms: 60_000,
            scale_down_cooldown_ms: 5 * 60_000,
            scale_down_stable_ms: 5 * 60_000,
            scale_down_foreseen_ms: 3 * 60_000,
            min_shards: 1,
            max_shards: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamDefaults {
    pub shards: u32,
    /// `fsync` (acknowledge after fdatasync) or `write`.
    pub durability: String,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    /// 0: unlimited.
    pub retention_bytes: u64,
    /// 0: unlimited.
    pub retention_ms: u64,
    /// For `write` streams: the longest unsynced data may wait.
    pub flush_interval_ms: u32,
}

impl Default for StreamDefaults {
    fn default() -> Self {
        StreamDefaults {
            shards: 4,
            durability: "fsync".into(),
            segment_bytes: 256 << 20,
            segment_ms: 7 * 24 * 3_600_000,
            retention_bytes: 0,
            retention_ms: 7 * 24 * 3_600_000,
            flush_interval_ms: 1_000,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("surge-data"),
            extra_data_dirs: Vec::new(),
            listen: "127.0.0.1:9470".into(),
            http_listen: "127.0.0.1:9471".into(),
            broker_id: "surge-1".into(),
            max_connections: 4096,
            max_frame_bytes: 16 << 20,
            max_batch_bytes: 1 << 20,
            max_in_flight_per_connection: 256,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 600_000,
            max_fetch_wait_ms: 30_000,
            io_backend: "pwrite".into(),
            max_streams: 10_000,
            shard_queue_depth: 1024,
            page_cache_window_bytes: crate::storage::DEFAULT_CACHE_WINDOW_BYTES,
            retention_check_interval_ms: 60_000,
            stream_defaults: StreamDefaults::default(),
            autoscaler: AutoscalerSettings::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML in {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl BrokerConfig {
    /// Merges file, environment and flag overrides over the defaults.
    /// `overrides` are `key=value` pairs with dotted keys
    /// (`stream_defaults.shards=8`), highest precedence.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<BrokerConfig, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            table = text
                .parse::<toml::Table>()
                .map_err(|err| ConfigError::Parse {
                    origin: path.display().to_string(),
                    message: err.to_string(),
                })?;
        }
        let known = known_keys();
        for (name, value) in env {
            // Other SURGE_* variables (SURGE_BROKER for the client commands,
            // SURGE_LOG, a test harness's own) are not settings.
            let Some(key) = env_key(&name) else { continue };
            let top = key.split('.').next().unwrap_or_default();
            if known.iter().any(|known| known == top) {
                set_dotted(&mut table, &key, &value);
            }
        }
        for (key, value) in overrides {
            set_dotted(&mut table, key, value);
        }
        let config: BrokerConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|err: toml::de::Error| ConfigError::Parse {
                    origin: "merged configuration".into(),
                    message: err.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        };
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return invalid("max_connections", "must be 1..=100000");
        }
        if self.max_batch_bytes > surge_protocol::batch::MAX_BATCH_BYTES {
            return invalid("max_batch_bytes", "exceeds the format's 32 MiB ceiling");
        }
        if self.max_frame_bytes > surge_protocol::frame::MAX_FRAME_BYTES
            || self.max_frame_bytes < self.max_batch_bytes + 4096
        {
            return invalid(
                "max_frame_bytes",
                "must hold one max batch plus headers and be at most 64 MiB",
            );
        }
        if self.max_in_flight_per_connection == 0 || self.shard_queue_depth == 0 {
            return invalid("max_in_flight_per_connection", "queues must be non-empty");
        }
        if self.io_choice().is_none() {
            return invalid("io_backend", "expected auto, uring or pwrite");
        }
        if Durability::parse(&self.stream_defaults.durability).is_none() {
            return invalid("stream_defaults.durability", "expected fsync or write");
        }
        let shards = self.stream_defaults.shards;
        if shards == 0 || shards > MAX_SHARDS_PER_STREAM {
            return invalid("stream_defaults.shards", "must be 1..=4096");
        }
        if self.stream_defaults.segment_bytes < (self.max_batch_bytes as u64).max(1 << 20) {
            return invalid(
                "stream_defaults.segment_bytes",
                "must be at least 1 MiB and at least max_batch_bytes",
            );
        }
        self.autoscaler.validate()
    }

    /// The HTTP address, `None` when the API is turned off.
    pub fn http_addr(&self) -> Option<&str> {
        match self.http_listen.trim() {
            "" | "off" => None,
            addr => Some(addr),
        }
    }

    pub fn io_choice(&self) -> Option<IoChoice> {
        match self.io_backend.as_str() {
            "auto" => Some(IoChoice::Auto),
            "uring" | "io_uring" => Some(IoChoice::Uring),
            "pwrite" => Some(IoChoice::Pwrite),
            _ => None,
        }
    }
}

impl AutoscalerSettings {
    /// The engine's configuration: these settings over its own defaults,
    /// its state in `state_dir`, shards placed over `dirs` data directories.
    pub fn engine_config(&self, state_dir: PathBuf, dirs: u32) -> AutoscalerConfig {
        let mut config = AutoscalerConfig::new(state_dir);
        config.enabled = self.enabled;
        config.interval = Duration::from_millis(self.interval_ms);
        config.watch_interval = Duration::from_millis(self.watch_interval_ms);
        config.capacity_per_shard_eps = self.capacity_per_shard_eps;
        config.headroom = self.headroom;
        config.horizon = Duration::from_millis(self.horizon_ms);
        config.scale_down_cooldown = Duration::from_millis(self.scale_down_cooldown_ms);
        config.scale_down_stable = Duration::from_millis(self.scale_down_stable_ms);
        config.scale_down_foreseen = Duration::from_millis(self.scale_down_foreseen_ms);
        config.min_shards = self.min_shards;
        config.max_shards = self.max_shards;
        config.dirs = dirs;
        config
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        };
        if self.interval_ms == 0 || self.horizon_ms == 0 {
            return invalid(
                "autoscaler.interval_ms",
                "interval_ms and horizon_ms must be at least 1",
            );
        }
        if !(self.capacity_per_shard_eps.is_finite() && self.capacity_per_shard_eps > 0.0) {
            return invalid("autoscaler.capacity_per_shard_eps", "must be > 0");
        }
        if !(self.headroom.is_finite() && (0.0..=10.0).contains(&self.headroom)) {
            return invalid("autoscaler.headroom", "must be within 0..=10");
        }
        if self.min_shards == 0 || self.min_shards > self.max_shards {
            return invalid("autoscaler.min_shards", "must be 1..=max_shards");
        }
        if self.max_shards > MAX_SHARDS_PER_STREAM {
            return invalid("autoscaler.max_shards", "must be at most 4096");
        }
        Ok(())
    }
}

/// The top-level setting names.
fn known_keys() -> Vec<String> {
    match serde_json::to_value(BrokerConfig::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `SURGE_STREAM_DEFAULTS__SHARDS` -> `stream_defaults.shards`;
/// `SURGE_DATA_DIR` -> `data_dir`.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix("SURGE_")?;
    if rest.is_empty() || rest == "LOG" {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

/// Environment and flag values are strings. One that reads as a TOML value
/// (a number, a boolean, an array like `["/a", "/b"]`, a quoted string) is
/// taken as that; anything else is a plain string.
fn typed(value: &str) -> toml::Value {
    match format!("value = {value}").parse::<toml::Table>() {
        Ok(mut table) => table
            .remove("value")
            .unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: &str) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.to_owned(), typed(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BrokerConfig::default().validate().unwrap();
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("surge.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nbroker_id = \"from-file\"\n[stream_defaults]\nshards = 2\n",
        )
        .unwrap();
        let env = vec![
            ("SURGE_LISTEN".to_owned(), "127.0.0.1:2".to_owned()),
            ("SURGE_STREAM_DEFAULTS__SHARDS".to_owned(), "3".to_owned()),
            ("SURGE_BROKER".to_owned(), "10.0.0.1:1".to_owned()),
            ("SURGE_TEST_LOG".to_owned(), "debug".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let flags = vec![
            ("listen".to_owned(), "127.0.0.1:3".to_owned()),
            (
                "extra_data_dirs".to_owned(),
                "[\"/disk2\", \"/disk3\"]".to_owned(),
            ),
        ];
        let config = BrokerConfig::load(Some(&path), env, &flags).unwrap();
        assert_eq!(
            config.extra_data_dirs,
            vec![PathBuf::from("/disk2"), PathBuf::from("/disk3")]
        );
        assert_eq!(config.listen, "127.0.0.1:3");
        assert_eq!(config.broker_id, "from-file");
        assert_eq!(config.stream_defaults.shards, 3);
        assert_eq!(config.stream_defaults.durability, "fsync");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let flags = vec![("no_such_key".to_owned(), "1".to_owned())];
        assert!(matches!(
            BrokerConfig::load(None, vec![], &flags),
            Err(ConfigError::Parse { .. })
        ));
        let flags = vec![("io_backend".to_owned(), "magic".to_owned())];
        assert!(matches!(
            BrokerConfig::load(None, vec![], &flags),
            Err(ConfigError::Invalid {
                key: "io_backend",
                ..
            })
        ));
    }

    #[test]
    fn autoscaler_and_http_settings_layer_and_validate() {
        let env = vec![("SURGE_AUTOSCALER__INTERVAL_MS".to_owned(), "500".to_owned())];
        let flags = vec![
            ("autoscaler.enabled".to_owned(), "false".to_owned()),
            ("http_listen".to_owned(), "off".to_owned()),
            ("autoscaler.watch_interval_ms".to_owned(), "250".to_owned()),
        ];
        let config = BrokerConfig::load(None, env, &flags).unwrap();
        assert_eq!(config.autoscaler.interval_ms, 500);
        let engine = config.autoscaler.engine_config("/unused".into(), 1);
        assert_eq!(engine.watch_interval, Duration::from_millis(250));
        assert!(!config.autoscaler.enabled);
        assert_eq!(config.http_addr(), None);
        assert_eq!(BrokerConfig::default().http_addr(), Some("127.0.0.1:9471"));
        let flags = vec![("autoscaler.headroom".to_owned(), "-1".to_owned())];
        assert!(matches!(
            BrokerConfig::load(None, vec![], &flags),
            Err(ConfigError::Invalid {
                key: "autoscaler.headroom",
                ..
            })
        ));
    }
}
