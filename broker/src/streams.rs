//! The registry of live streams: creating, opening, deleting them on disk,
//! and finding the shard an append or fetch is for.
//!
//! On disk: `<data_dir>/streams/<name>/stream.meta` plus one directory per
//! shard, `<data_dir>/streams/<name>/<shard_id>/`. The metadata file is the
//! commit point of a create: a stream directory without it is the remains
//! of a create that crashed and is removed at start. A delete first renames
//! the directory to `.deleted-<name>-<nanos>` (atomic), then removes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use surge_protocol::stream::StreamConfig;
use surge_protocol::ErrorCode;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::fsutil;
use crate::shard::{Shard, ShardSettings};
use crate::storage::{IoBackend, LogConfig};
use crate::topology::{self, StreamMeta};

const DELETED_PREFIX: &str = ".deleted-";

#[derive(Debug)]
pub struct Stream {
    pub meta: RwLock<StreamMeta>,
    pub shards: HashMap<u32, Arc<Shard>>,
    dir: PathBuf,
}

impl Stream {
    pub fn shard(&self, id: u32) -> Option<&Arc<Shard>> {
        self.shards.get(&id)
    }

    pub fn epoch(&self) -> u64 {
        self.meta.read().epoch
    }

    /// Shard ids in id order.
    pub fn shard_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.shards.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Shard descriptions with live offsets.
    pub fn shard_infos(&self) -> Vec<surge_protocol::stream::ShardInfo> {
        let mut infos = self.meta.read().shard_infos();
        for info in &mut infos {
            if let Some(shard) = self.shards.get(&info.shard_id) {
                info.log_start_offset = shard.log_start();
                info.high_watermark = shard.visible_end();
                info.size_bytes = shard.size_bytes();
            }
        }
        infos
    }
}

#[derive(Debug)]
pub struct Streams {
    root: PathBuf,
    config: BrokerConfig,
    io: Arc<IoBackend>,
    appended: watch::Sender<u64>,
    map: RwLock<HashMap<String, Arc<Stream>>>,
    /// Serialises creates and deletes (rare, and they touch the disk).
    admin: Mutex<()>,
}

impl Streams {
    /// Opens every stream under `<data_dir>/streams`, recovering each shard.
    pub fn open(
        config: &BrokerConfig,
        io: Arc<IoBackend>,
        appended: watch::Sender<u64>,
    ) -> Result<Streams, BrokerError> {
        let root = config.data_dir.join("streams");
        std::fs::create_dir_all(&root).map_err(|source| BrokerError::Io {
            op: "create streams directory",
            path: root.clone(),
            source,
        })?;
        let streams = Streams {
            root,
            config: config.clone(),
            io,
            appended,
            map: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
        };
        for entry in list_dir(&streams.root)? {
            streams.open_entry(&entry)?;
        }
        Ok(streams)
    }

    fn open_entry(&self, dir: &Path) -> Result<(), BrokerError> {
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with(DELETED_PREFIX) || !dir.join(topology::META_FILE).exists() {
            tracing::warn!(dir = %dir.display(), "removing remains of an unfinished create or delete");
            remove_dir(dir)?;
            return fsync(&self.root);
        }
        let meta = StreamMeta::load(dir)?;
        let stream = self.open_stream(dir, meta)?;
        self.map.write().insert(name, stream);
        Ok(())
    }

    fn open_stream(&self, dir: &Path, meta: StreamMeta) -> Result<Arc<Stream>, BrokerError> {
        let mut shards = HashMap::with_capacity(meta.shards.len());
        for shard in &meta.shards {
            let shard_dir = dir.join(shard.id.to_string());
            let opened = Shard::open(
                shard.id,
                &shard_dir,
                self.log_config(&meta),
                self.io.clone(),
                self.shard_settings(&meta),
                self.appended.clone(),
            )?;
            shards.insert(shard.id, opened);
        }
        Ok(Arc::new(Stream {
            meta: RwLock::new(meta),
            shards,
            dir: dir.to_owned(),
        }))
    }

    fn log_config(&self, meta: &StreamMeta) -> LogConfig {
        let settings = &meta.settings;
        LogConfig {
            segment_bytes: settings.segment_bytes,
            segment_ms: settings.segment_ms,
            retention_bytes: settings.retention_bytes,
            retention_ms: settings.retention_ms,
            max_batch_bytes: self.config.max_batch_bytes,
            ..LogConfig::default()
        }
    }

    fn shard_settings(&self, meta: &StreamMeta) -> ShardSettings {
        ShardSettings {
            durability: meta.settings.durability(),
            flush_interval_ms: u64::from(meta.settings.flush_interval_ms),
            retention_check_interval_ms: self.config.retention_check_interval_ms,
            queue_depth: self.config.shard_queue_depth,
            group_commit_max_bytes: (self.config.max_batch_bytes * 4).max(16 << 20),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.map.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Stream>> {
        let mut streams: Vec<_> = self.map.read().values().cloned().collect();
        streams.sort_by(|a, b| a.meta.read().name.cmp(&b.meta.read().name));
        streams
    }

    /// Creates a stream; the error carries a wire code and a message.
    pub fn create(&self, name: &str, requested: &StreamConfig) -> Result<(), (ErrorCode, String)> {
        if !surge_protocol::valid_name(name) {
            return Err((
                ErrorCode::InvalidStreamName,
                format!("{name:?}: names are 1-255 characters of [A-Za-z0-9._-]"),
            ));
        }
        let (count, settings) = topology::resolve_settings(
            requested,
            &self.config.stream_defaults,
            self.config.max_batch_bytes,
        )
        .map_err(|message| (ErrorCode::InvalidRequest, message))?;
        let _admin = self.admin.lock();
        if self.map.read().contains_key(name) {
            return Err((
                ErrorCode::StreamExists,
                format!("stream {name} already exists"),
            ));
        }
        if self.map.read().len() >= self.config.max_streams {
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "the broker already holds max_streams = {}",
                    self.config.max_streams
                ),
            ));
        }
        let meta = StreamMeta::new(name, settings, count);
        let dir = self.root.join(name);
        let stream = self
            .create_on_disk(&dir, meta)
            .map_err(|err| (ErrorCode::Storage, err.to_string()))?;
        self.map.write().insert(name.to_owned(), stream);
        tracing::info!(stream = name, shards = count, "stream created");
        Ok(())
    }

    fn create_on_disk(&self, dir: &Path, meta: StreamMeta) -> Result<Arc<Stream>, BrokerError> {
        std::fs::create_dir(dir).map_err(|source| BrokerError::Io {
            op: "create stream directory",
            path: dir.to_owned(),
            source,
        })?;
        fsync(&self.root)?;
        let stream = self.open_stream(dir, meta)?;
        stream.meta.read().store(dir)?;
        Ok(stream)
    }

    /// Deletes a stream: closes its shards, then removes its files.
    pub async fn delete(&self, name: &str) -> Result<(), ErrorCode> {
        let stream = {
            let _admin = self.admin.lock();
            self.map
                .write()
                .remove(name)
                .ok_or(ErrorCode::UnknownStream)?
        };
        for shard in stream.shards.values() {
            if let Err(err) = shard.close().await {
                tracing::warn!(stream = name, shard = shard.id, error = %err, "close before delete failed");
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let graveyard = self.root.join(format!("{DELETED_PREFIX}{name}-{nanos}"));
        let root = self.root.clone();
        let dir = stream.dir.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<(), BrokerError> {
            std::fs::rename(&dir, &graveyard).map_err(|source| BrokerError::Io {
                op: "rename deleted stream",
                path: dir.clone(),
                source,
            })?;
            fsync(&root)?;
            remove_dir(&graveyard)?;
            fsync(&root)
        })
        .await;
        match removed {
            Ok(Ok(())) => {
                tracing::info!(stream = name, "stream deleted");
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::error!(stream = name, error = %err, "deleting stream files failed");
                Err(ErrorCode::Storage)
            }
            Err(_) => Err(ErrorCode::Internal),
        }
    }

    /// Closes every shard (sync and close logs). Used at shutdown.
    pub async fn close_all(&self) {
        for stream in self.all() {
            for shard in stream.shards.values() {
                if let Err(err) = shard.close().await {
                    tracing::error!(shard = shard.id, error = %err, "closing shard failed");
                }
            }
        }
    }
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, BrokerError> {
    let io_err = |source| BrokerError::Io {
        op: "list directory",
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if entry.file_type().map_err(io_err)?.is_dir() {
            entries.push(entry.path());
        }
    }
    entries.sort();
    Ok(entries)
}

fn remove_dir(dir: &Path) -> Result<(), BrokerError> {
    std::fs::remove_dir_all(dir).map_err(|source| BrokerError::Io {
        op: "remove directory",
        path: dir.to_owned(),
        source,
    })
}

fn fsync(dir: &Path) -> Result<(), BrokerError> {
    fsutil::fsync_dir(dir).map_err(|source| BrokerError::Io {
        op: "fsync directory",
        path: dir.to_owned(),
        source,
    })
}
