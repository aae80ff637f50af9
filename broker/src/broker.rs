//! The broker's shared state: configuration, the stream registry, the group
//! coordinator, and the append signal that wakes long-polling fetches. One
//! `Broker` per data directory, enforced by an exclusive file lock.

use std::fs::File;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::groups::GroupCoordinator;
use crate::metrics::BrokerMetrics;
use crate::storage::IoBackend;
use crate::streams::Streams;

const LOCK_FILE: &str = ".lock";

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub streams: Streams,
    pub groups: GroupCoordinator,
    /// Bumped whenever any shard's visible end moves.
    pub appended: watch::Sender<u64>,
    pub io_backend: &'static str,
    pub metrics: BrokerMetrics,
    /// Held for the broker's lifetime: a second broker on the same data
    /// directory would mean two writers per shard.
    _lock: File,
}

impl Broker {
    /// Opens the data directory, recovering every shard log.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| BrokerError::Io {
            op: "create data directory",
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|source| BrokerError::Io {
            op: "create lock file",
            path: lock_path.clone(),
            source,
        })?;
        lock.try_lock()
            .map_err(|_| BrokerError::DataDirLocked { path: dir.clone() })?;
        let choice = config
            .io_choice()
            .expect("validated configuration has a known io_backend");
        let io = IoBackend::new(choice)?;
        let io_backend = io.name();
        let (appended, _) = watch::channel(0u64);
        let streams = Streams::open(&config, io, appended.clone())?;
        let groups = GroupCoordinator::open(&dir.join("groups"))?;
        Ok(Arc::new(Broker {
            config,
            streams,
            groups,
            appended,
            io_backend,
            metrics: BrokerMetrics::default(),
            _lock: lock,
        }))
    }

    /// A fresh producer id for a handshake. Random 64-bit ids make a clash
    /// with an id issued before a restart vanishingly unlikely, with no
    /// state to persist; 0 is reserved for "not idempotent".
    pub fn next_producer_id(&self) -> u64 {
        fastrand::u64(1..)
    }
}
