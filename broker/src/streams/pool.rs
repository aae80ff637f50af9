//! The successor pool of one data directory: empty shard directories
//! (`storage::create_pooled`) made durable ahead of time in
//! `<data_dir>/pool/<slot>/`, so a topology change takes one by a rename
//! instead of creating, preallocating and fsyncing a directory while the
//! shards it seals wait.
//!
//! A change renames the slot to the successor's shard directory before its
//! commit and names the slot in its journal record, without syncing the
//! rename: after a crash the directory is under one of the two names (a
//! rename is atomic), and loading the stream finishes the rename when the
//! record was committed, or removes the shard directory as an orphan when
//! it was not. Slots are named by creation time and a counter, so a slot
//! name is never reused. A slot being made is `.new-<slot>` until it is
//! whole; loading removes those and anything else that is not a pooled
//! log. The pool is refilled after each change, off its critical path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{fsync, remove_dir};
use crate::error::BrokerError;
use crate::storage;

pub(super) const POOL_DIR: &str = "pool";
const NEW_PREFIX: &str = ".new-";
/// Slots kept per data directory: the largest usual change (an isolate or
/// fold over the default shards of a small stream) takes them all at once.
pub(super) const POOL_SLOTS: usize = 8;
/// A pooled segment's preallocation: the smallest segment a stream may
/// have, so no stream's first segment is longer than the stream wants; the
/// log preallocates further steps as it grows.
const POOL_SEGMENT_BYTES: u64 = 1 << 20;

#[derive(Debug)]
pub(super) struct Pool {
    dir: PathBuf,
    /// Slots ready to take, oldest first.
    ready: Mutex<Vec<String>>,
    /// Slots this pool keeps when refilled.
    target: usize,
    refilling: AtomicBool,
    made: AtomicU64,
}

impl Pool {
    /// The pool in `dir`, not yet read: `slot_path` works, nothing is
    /// ready until `load`.
    pub(super) fn new(dir: PathBuf, target: usize) -> Pool {
        Pool {
            dir,
            ready: Mutex::new(Vec::new()),
            target,
            refilling: AtomicBool::new(false),
            made: AtomicU64::new(0),
        }
    }

    /// Reads (creating) the pool directory, keeping the slots that are
    /// whole and removing anything else. Runs after every stream has
    /// finished the claims its journal committed.
    pub(super) fn load(&self) -> Result<(), BrokerError> {
        let dir = &self.dir;
        if !dir.exists() {
            super::create_dir(dir)?;
            fsync(dir.parent().expect("a pool directory has a parent"))?;
        }
        let mut ready = Vec::new();
        let mut removed = false;
        for entry in super::list_dir(dir)? {
            let name = entry
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.starts_with(NEW_PREFIX) || storage::check_pooled(&entry).is_err() {
                tracing::warn!(dir = %entry.display(), "removing an unfinished pool slot");
                remove_dir(&entry)?;
                removed = true;
            } else {
                ready.push(name);
            }
        }
        if removed {
            fsync(dir)?;
        }
        ready.sort();
        *self.ready.lock() = ready;
        Ok(())
    }

    /// Fewer slots are ready than the target, and no refill is running.
    pub(super) fn needs_refill(&self) -> bool {
        self.ready() < self.target && !self.refilling.load(Ordering::Acquire)
    }

    pub(super) fn slot_path(&self, slot: &str) -> PathBuf {
        self.dir.join(slot)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes a ready slot, if any.
    pub(super) fn take(&self) -> Option<String> {
        let mut ready = self.ready.lock();
        if ready.is_empty() {
            return None;
        }
        Some(ready.remove(0))
    }

    /// Returns a slot a failed change took but did not rename.
    pub(super) fn put_back(&self, slot: String) {
        self.ready.lock().push(slot);
    }

    pub(super) fn ready(&self) -> usize {
        self.ready.lock().len()
    }

    /// Makes slots until the pool holds its target: each whole and synced
    /// under a temporary name, then all renamed into place and the pool
    /// directory fsynced once. Blocking; a refill already running makes
    /// this return at once.
    pub(super) fn refill(&self) -> Result<usize, BrokerError> {
        if self.refilling.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let made = self.make_missing();
        self.refilling.store(false, Ordering::Release);
        made
    }

    fn make_missing(&self) -> Result<usize, BrokerError> {
        let missing = self.target.saturating_sub(self.ready());
        let mut made = Vec::with_capacity(missing);
        for _ in 0..missing {
            let slot = self.slot_name();
            let new = self.dir.join(format!("{NEW_PREFIX}{slot}"));
            storage::create_pooled(&new, POOL_SEGMENT_BYTES)?;
            std::fs::rename(&new, self.slot_path(&slot)).map_err(|source| BrokerError::Io {
                op: "rename pool slot",
                path: new.clone(),
                source,
            })?;
            made.push(slot);
        }
        if made.is_empty() {
            return Ok(0);
        }
        fsync(&self.dir)?;
        let count = made.len();
        self.ready.lock().extend(made);
        Ok(count)
    }

    fn slot_name(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let count = self.made.fetch_add(1, Ordering::Relaxed);
        format!("{nanos:024}-{count:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_refills_to_its_target_and_reopens_without_unfinished_slots() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(POOL_DIR);
        let pool = Pool::new(dir.clone(), 3);
        pool.load().unwrap();
        assert_eq!(pool.ready(), 0);
        assert!(pool.needs_refill());
        assert_eq!(pool.refill().unwrap(), 3);
        assert_eq!(pool.refill().unwrap(), 0, "already full");
        let taken = pool.take().unwrap();
        assert!(storage::check_pooled(&pool.slot_path(&taken)).is_ok());
        assert_eq!(pool.refill().unwrap(), 1);
        // A crash while making a slot, and a slot someone wrote into.
        std::fs::create_dir(dir.join(format!("{NEW_PREFIX}x"))).unwrap();
        let spoiled = pool.take().unwrap();
        std::fs::write(pool.slot_path(&spoiled).join("stray"), b"x").unwrap();
        drop(pool);
        let reopened = Pool::new(dir.clone(), 3);
        reopened.load().unwrap();
        assert_eq!(reopened.ready(), 3, "the taken slot was never renamed away");
        assert!(!dir.join(format!("{NEW_PREFIX}x")).exists());
        assert!(!reopened.slot_path(&spoiled).exists());
        let mut names: Vec<String> = (0..3).filter_map(|_| reopened.take()).collect();
        names.dedup();
        assert_eq!(names.len(), 3);
    }
}
