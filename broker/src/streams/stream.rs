//! One live stream: an immutable view (metadata plus the shards it names)
//! replaced whole by each topology change, so a reader always sees one
//! epoch's shards, never a mix.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use surge_protocol::stream::{ShardInfo, ShardState};
use tokio::sync::watch;

use crate::shard::Shard;
use crate::topology::{Journal, StreamMeta};

/// One epoch of a stream.
#[derive(Debug)]
pub struct View {
    pub meta: StreamMeta,
    pub shards: HashMap<u32, Arc<Shard>>,
}

impl View {
    /// The open shard of `group` (`""`: the default one) whose range holds
    /// `hash`.
    pub fn owner_of(&self, group: &str, hash: u64) -> Option<&Arc<Shard>> {
        self.meta
            .shards
            .iter()
            .find(|shard| shard.sealed_at.is_none() && shard.group == group && shard.owns(hash))
            .and_then(|shard| self.shards.get(&shard.id))
    }

    pub fn sealed_at(&self, id: u32) -> Option<u64> {
        self.meta
            .shards
            .iter()
            .find(|shard| shard.id == id)
            .and_then(|shard| shard.sealed_at)
    }
}

#[derive(Debug)]
pub struct Stream {
    pub name: String,
    /// The directory holding `stream.meta` (data directory 0).
    pub(super) dir: PathBuf,
    view: RwLock<Arc<View>>,
    /// Bumped when a change is published or rolled back, so appends waiting
    /// for a sealed shard's successors look again.
    changed: watch::Sender<u64>,
    /// One topology change at a time.
    pub(super) changing: tokio::sync::Mutex<()>,
    /// Forwarding holds this shared for one routing round; a change holds it
    /// exclusively from seal to publish. So the pieces of one forwarded batch
    /// all land in one epoch's shards: no piece meets a shard sealed (and
    /// merged away) after a sibling piece was stored, where it would be taken
    /// for a duplicate of that sibling.
    forwarding: tokio::sync::RwLock<()>,
    /// The commit point of changes; a change holds `changing` around it.
    pub(super) journal: parking_lot::Mutex<Journal>,
}

impl Stream {
    pub(super) fn new(dir: PathBuf, view: View, journal: Journal) -> Stream {
        let (changed, _) = watch::channel(view.meta.epoch);
        Stream {
            name: view.meta.name.clone(),
            dir,
            view: RwLock::new(Arc::new(view)),
            changed,
            changing: tokio::sync::Mutex::new(()),
            forwarding: tokio::sync::RwLock::new(()),
            journal: parking_lot::Mutex::new(journal),
        }
    }

    /// Held by forwarding for one routing round (see `forwarding`).
    pub async fn forwarding_round(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.forwarding.read().await
    }

    /// Held by a change from seal to publish.
    pub(super) async fn exclusive_change(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.forwarding.write().await
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    pub(super) fn publish(&self, view: View) {
        let epoch = view.meta.epoch;
        *self.view.write() = Arc::new(view);
        self.changed.send_replace(epoch);
    }

    /// Wakes waiters without a new view (a change rolled back).
    pub(super) fn nudge(&self) {
        self.changed.send_modify(|_| {});
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn shard(&self, id: u32) -> Option<Arc<Shard>> {
        self.view.read().shards.get(&id).cloned()
    }

    pub fn epoch(&self) -> u64 {
        self.view.read().meta.epoch
    }

    /// Shard ids in id order.
    pub fn shard_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.view.read().shards.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Shard descriptions with live offsets; a sealed shard's high watermark
    /// is its sealed end.
    pub fn shard_infos(&self) -> Vec<ShardInfo> {
        let view = self.view();
        let mut infos = view.meta.shard_infos();
        for info in &mut infos {
            if let Some(shard) = view.shards.get(&info.shard_id) {
                info.log_start_offset = shard.log_start();
                info.high_watermark = match info.state {
                    ShardState::Sealed => view.sealed_at(info.shard_id).unwrap_or(0),
                    ShardState::Open => shard.visible_end(),
                };
                info.size_bytes = shard.size_bytes();
            }
        }
        infos
    }
}
