//! The registry of live streams: creating, opening, deleting them on disk,
//! and changing their topology (`change`).
//!
//! On disk, per data directory `i` (0 is `data_dir`, then
//! `extra_data_dirs`): `<root_i>/streams/<stream>/<shard_id>/` holds one
//! shard's log, and `<root_i>/pool/` the successor pool (`pool`);
//! `<root_0>/streams/<stream>/stream.meta` describes the stream and is the
//! commit point of its create, and `topology.journal` beside it the commit
//! point of each change after it (`topology::journal`). A stream directory
//! without metadata, or a shard directory the metadata and journal do not
//! name, is the remains of a create or change that crashed, and is removed
//! at start. A delete first renames the stream directory to
//! `.deleted-<name>-<nanos>` (atomic), then removes it.

mod change;
mod claim;
mod load;
mod pool;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use surge_protocol::stream::StreamConfig;
use surge_protocol::ErrorCode;
use tokio::sync::watch;

pub use change::ChangeDone;
pub use stream::{Stream, View};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::fsutil;
use crate::shard::ShardSettings;
use crate::storage::{IoBackend, LogConfig};
use crate::topology::{self, Journal, ShardMeta, StreamMeta};
use pool::Pool;

const DELETED_PREFIX: &str = ".deleted-";

#[derive(Debug)]
pub struct Streams {
    /// `<root_i>/streams` for every data directory.
    roots: Vec<PathBuf>,
    config: BrokerConfig,
    io: Arc<IoBackend>,
    appended: watch::Sender<u64>,
    map: RwLock<HashMap<String, Arc<Stream>>>,
    /// Serialises creates and deletes (rare, and they touch the disk).
    admin: Mutex<()>,
    changes_committed: std::sync::atomic::AtomicU64,
    /// The successor pool of every data directory, in `roots` order.
    pools: Vec<Arc<Pool>>,
}

impl Streams {
    /// Opens every stream, recovering each shard, and removes leftovers.
    pub fn open(
        config: &BrokerConfig,
        io: Arc<IoBackend>,
        appended: watch::Sender<u64>,
    ) -> Result<Streams, BrokerError> {
        Streams::open_with_pool(config, io, appended, pool::POOL_SLOTS)
    }

    /// `open` with `pool_slots` per data directory (0: every successor is
    /// created inline).
    fn open_with_pool(
        config: &BrokerConfig,
        io: Arc<IoBackend>,
        appended: watch::Sender<u64>,
        pool_slots: usize,
    ) -> Result<Streams, BrokerError> {
        let roots: Vec<PathBuf> = std::iter::once(&config.data_dir)
            .chain(&config.extra_data_dirs)
            .map(|dir| dir.join("streams"))
            .collect();
        for root in &roots {
            std::fs::create_dir_all(root).map_err(|source| BrokerError::Io {
                op: "create streams directory",
                path: root.clone(),
                source,
            })?;
        }
        // Opened before the streams only to name slots: recovery finishes
        // committed claims first, then the pools are checked and refilled.
        let pools = roots
            .iter()
            .map(|root| Pool::new(pool_dir(root), pool_slots))
            .map(Arc::new)
            .collect();
        let streams = Streams {
            roots,
            config: config.clone(),
            io,
            appended,
            map: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            changes_committed: std::sync::atomic::AtomicU64::new(0),
            pools,
        };
        for entry in list_dir(&streams.roots[0])? {
            streams.open_entry(&entry)?;
        }
        streams.remove_orphans()?;
        for pool in &streams.pools {
            pool.load()?;
            if let Err(err) = pool.refill() {
                tracing::warn!(dir = %pool.dir().display(), error = %err, "filling the successor pool failed; changes create successors inline");
            }
        }
        Ok(streams)
    }

    /// Refills every pool that changes drew from, on blocking threads.
    fn refill_pools(&self) {
        for pool in &self.pools {
            if pool.needs_refill() {
                let pool = pool.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(err) = pool.refill() {
                        tracing::warn!(dir = %pool.dir().display(), error = %err, "refilling the successor pool failed");
                    }
                });
            }
        }
    }

    pub(crate) fn dirs(&self) -> u32 {
        self.roots.len() as u32
    }

    /// Callers check `shard.dir < self.dirs()` (at open, and in `plan`).
    pub(crate) fn shard_dir(&self, stream: &str, shard: &ShardMeta) -> PathBuf {
        self.roots[shard.dir as usize]
            .join(stream)
            .join(shard.id.to_string())
    }

    fn log_config(&self, meta: &StreamMeta) -> LogConfig {
        let settings = &meta.settings;
        LogConfig {
            segment_bytes: settings.segment_bytes,
            segment_ms: settings.segment_ms,
            retention_bytes: settings.retention_bytes,
            retention_ms: settings.retention_ms,
            max_batch_bytes: self.config.max_batch_bytes,
            cache_window_bytes: self.config.page_cache_window_bytes,
            ..LogConfig::default()
        }
    }

    fn shard_settings(&self, meta: &StreamMeta, shard: &ShardMeta) -> ShardSettings {
        ShardSettings {
            hash_range: (shard.hash_start, shard.hash_end),
            durability: meta.settings.durability(),
            flush_interval_ms: u64::from(meta.settings.flush_interval_ms),
            retention_check_interval_ms: self.config.retention_check_interval_ms,
            queue_depth: self.config.shard_queue_depth,
            group_commit_max_bytes: (self.config.max_batch_bytes * 4).max(16 << 20),
            sealed: shard.sealed_at.is_some(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.map.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Stream>> {
        let mut streams: Vec<_> = self.map.read().values().cloned().collect();
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        streams
    }

    /// Creates a stream; the error carries a wire code and a message.
    pub fn create(&self, name: &str, requested: &StreamConfig) -> Result<(), (ErrorCode, String)> {
        if !surge_protocol::valid_name(name) {
            return Err((
                ErrorCode::InvalidStreamName,
                format!("{name:?}: names are {}", surge_protocol::NAME_RULE),
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
        let stream = self
            .create_on_disk(meta)
            .map_err(|err| (err.code(), err.to_string()))?;
        self.map.write().insert(name.to_owned(), Arc::new(stream));
        tracing::info!(stream = name, shards = count, "stream created");
        Ok(())
    }

    fn create_on_disk(&self, meta: StreamMeta) -> Result<Stream, BrokerError> {
        let dir = self.roots[0].join(&meta.name);
        std::fs::create_dir(&dir).map_err(|source| BrokerError::Io {
            op: "create stream directory",
            path: dir.clone(),
            source,
        })?;
        fsync(&self.roots[0])?;
        let shards = self
            .open_shards(&meta, &dir.join(topology::META_FILE))
            .inspect_err(|_| self.remove_unfinished(&meta.name))?;
        // The metadata's commit fsyncs the directory, the journal's entry too.
        let stored = Journal::create(&dir).and_then(|journal| {
            meta.store(&dir)?;
            Ok(journal)
        });
        match stored {
            Ok(journal) => Ok(Stream::new(dir, View { meta, shards }, journal)),
            Err(err) => {
                for shard in shards.values() {
                    shard.close_detached();
                }
                self.remove_unfinished(&meta.name);
                Err(err)
            }
        }
    }

    /// Removes what a create that failed part-way (a full disk, say) left
    /// of stream `name`, so the name is free again at once; loading would
    /// remove it too, but only at the next start. Best effort: a failure is
    /// logged, and loading still has the last word.
    fn remove_unfinished(&self, name: &str) {
        for root in &self.roots {
            let dir = root.join(name);
            if dir.exists() {
                if let Err(err) = remove_dir(&dir).and_then(|()| fsync(root)) {
                    tracing::warn!(stream = name, error = %err, "removing an unfinished stream failed");
                }
            }
        }
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
        // Wait out a change in progress; none can start on a removed stream.
        let _changing = stream.changing.lock().await;
        let view = stream.view();
        for shard in view.shards.values() {
            if let Err(err) = shard.close().await {
                tracing::warn!(stream = name, shard = shard.id, error = %err, "close before delete failed");
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let roots = self.roots.clone();
        let stream_name = name.to_owned();
        let removed = tokio::task::spawn_blocking(move || -> Result<(), BrokerError> {
            // The metadata directory goes first: once it is gone, leftovers
            // in other data directories are orphans removed at start.
            for root in &roots {
                let dir = root.join(&stream_name);
                if !dir.exists() {
                    continue;
                }
                let graveyard = root.join(format!("{DELETED_PREFIX}{stream_name}-{nanos}"));
                std::fs::rename(&dir, &graveyard).map_err(|source| BrokerError::Io {
                    op: "rename deleted stream",
                    path: dir.clone(),
                    source,
                })?;
                fsync(root)?;
                remove_dir(&graveyard)?;
                fsync(root)?;
            }
            Ok(())
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
            for shard in stream.view().shards.values() {
                if let Err(err) = shard.close().await {
                    tracing::error!(shard = shard.id, error = %err, "closing shard failed");
                }
            }
        }
    }
}

/// `<data_dir>/pool` for the data directory whose streams are in `root`.
fn pool_dir(root: &Path) -> PathBuf {
    root.parent()
        .expect("a streams directory has a parent")
        .join(pool::POOL_DIR)
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

fn create_dir(dir: &Path) -> Result<(), BrokerError> {
    std::fs::create_dir(dir).map_err(|source| BrokerError::Io {
        op: "create directory",
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
