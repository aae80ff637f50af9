//! Loading the streams at start: each stream's metadata plus its topology
//! journal (replayed, settled and compacted here), its shards recovered,
//! and the directories of creates and changes that never committed
//! removed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{fsync, list_dir, remove_dir, Stream, Streams, View, DELETED_PREFIX};
use crate::error::BrokerError;
use crate::shard::Shard;
use crate::storage::ProducerState;
use crate::topology::{self, Journal, StreamMeta};

impl Streams {
    pub(super) fn open_entry(&self, dir: &Path) -> Result<(), BrokerError> {
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with(DELETED_PREFIX) || !dir.join(topology::META_FILE).exists() {
            tracing::warn!(dir = %dir.display(), "removing remains of an unfinished create or delete");
            remove_dir(dir)?;
            return fsync(&self.roots[0]);
        }
        let (meta, journal) = self.load_meta(dir)?;
        let shards = self.open_shards(&meta, &dir.join(topology::META_FILE))?;
        let stream = Stream::new(dir.to_owned(), View { meta, shards }, journal);
        self.map.write().insert(name, Arc::new(stream));
        Ok(())
    }

    /// The stream's topology: its metadata plus its journal's records,
    /// which are settled and compacted into the metadata here. A v1 or v2
    /// stream gets its journal, and its metadata is rewritten as v3 first.
    fn load_meta(&self, dir: &Path) -> Result<(StreamMeta, Journal), BrokerError> {
        let (meta, version) = StreamMeta::load_versioned(dir)?;
        // An upgrade that crashed before the rewrite left a zeroed journal,
        // which replays as empty.
        if version < topology::META_VERSION && !dir.join(topology::JOURNAL_FILE).exists() {
            let journal = Journal::create(dir)?;
            meta.store(dir)?;
            tracing::info!(stream = %meta.name, version, "stream metadata upgraded");
            return Ok((meta, journal));
        }
        let (mut journal, records, meta) = Journal::open(dir, meta)?;
        if records.is_empty() {
            if version < topology::META_VERSION {
                meta.store(dir)?;
            }
            return Ok((meta, journal));
        }
        for record in &records {
            for claim in &record.created {
                self.check_dir_index(&meta, dir, claim.shard.id, claim.shard.dir)?;
            }
            self.settling(&meta.name, record).run()?;
        }
        meta.store(dir)?;
        journal.settled(true);
        journal.compacted();
        tracing::info!(stream = %meta.name, changes = records.len(), epoch = meta.epoch, "topology journal replayed");
        Ok((meta, journal))
    }

    fn check_dir_index(
        &self,
        meta: &StreamMeta,
        meta_dir: &Path,
        shard: u32,
        dir: u32,
    ) -> Result<(), BrokerError> {
        if dir < self.dirs() {
            return Ok(());
        }
        Err(BrokerError::CorruptMetadata {
            path: meta_dir.join(topology::META_FILE),
            reason: format!(
                "shard {shard} of {} lives in data directory {dir}, but only {} are configured (data_dir and extra_data_dirs)",
                meta.name,
                self.dirs()
            ),
        })
    }

    /// Opens (recovering) every shard `meta` names. `meta_path` is named in
    /// the error when a shard lives in a data directory not configured.
    pub(super) fn open_shards(
        &self,
        meta: &StreamMeta,
        meta_path: &Path,
    ) -> Result<HashMap<u32, Arc<Shard>>, BrokerError> {
        let mut shards = HashMap::with_capacity(meta.shards.len());
        let mut states = Vec::with_capacity(meta.shards.len());
        for shard in &meta.shards {
            let meta_dir = meta_path.parent().expect("a metadata file has a directory");
            let opened = self
                .check_dir_index(meta, meta_dir, shard.id, shard.dir)
                .and_then(|()| {
                    Shard::open(
                        shard.id,
                        &self.shard_dir(&meta.name, shard),
                        self.log_config(meta),
                        self.io.clone(),
                        self.shard_settings(meta, shard),
                        self.appended.clone(),
                    )
                });
            match opened {
                Ok((opened, producers)) => {
                    shards.insert(shard.id, opened);
                    states.push(producers);
                }
                Err(err) => {
                    // Their owner threads would otherwise live on, holding
                    // the files (and a full disk's space) open.
                    for shard in shards.values() {
                        shard.close_detached();
                    }
                    return Err(err);
                }
            }
        }
        let mut forwarded = ProducerState::highest_by_origin(&states);
        for shard in meta.shards.iter().filter(|shard| shard.sealed_at.is_some()) {
            if let Some(state) = forwarded.remove(&shard.id) {
                shards[&shard.id].resume_forwards(&state);
            }
        }
        Ok(shards)
    }

    /// Removes shard directories no stream's metadata names: successors of
    /// a change that crashed before its commit point, or streams deleted
    /// while a secondary data directory was unavailable.
    pub(super) fn remove_orphans(&self) -> Result<(), BrokerError> {
        let map = self.map.read();
        for (index, root) in self.roots.iter().enumerate() {
            for stream_dir in list_dir(root)? {
                let name = stream_dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or_default();
                let Some(stream) = map.get(name) else {
                    if index > 0 {
                        tracing::warn!(dir = %stream_dir.display(), "removing shards of an unknown stream");
                        remove_dir(&stream_dir)?;
                        fsync(root)?;
                    }
                    continue;
                };
                let view = stream.view();
                for shard_dir in list_dir(&stream_dir)? {
                    let id = shard_dir
                        .file_name()
                        .and_then(|name| name.to_str()?.parse::<u32>().ok());
                    let known = id.is_some_and(|id| {
                        view.meta
                            .shards
                            .iter()
                            .any(|shard| shard.id == id && shard.dir as usize == index)
                    });
                    if !known {
                        tracing::warn!(dir = %shard_dir.display(), "removing a shard no metadata names");
                        remove_dir(&shard_dir)?;
                        fsync(&stream_dir)?;
                    }
                }
            }
        }
        Ok(())
    }
}
