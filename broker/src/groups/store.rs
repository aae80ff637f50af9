//! The durable committed-offset store: an append-only `offsets.log` of
//! [`record`](super::record) entries in the directory it is opened on.
//!
//! - A change is acknowledged only after its record is written and
//!   `fdatasync`ed. A failed write is rolled back by truncating to the last
//!   whole record; if that or a sync fails, the store refuses further
//!   writes (`StorePoisoned`) rather than guess what reached the disk.
//! - `open` replays the file, stops at the first torn or invalid record,
//!   logs what it dropped and truncates there before anything is appended.
//! - When the file outgrows `max(compact_min_bytes, 10 x live state)`, a
//!   snapshot of the latest offsets is written to `offsets.log.tmp`,
//!   synced, renamed over `offsets.log`, and the directory is synced.
//!
//! One writer: the coordinator holds the store under its mutex.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use surge_protocol::group::ShardOffset;
use surge_protocol::DecodeError;

use super::error::GroupError;
use super::record::{self, Record, ENTRIES_PER_RECORD_MAX, ENTRY_BYTES, RECORD_HEADER_BYTES};

pub(crate) const LOG_FILE_NAME: &str = "offsets.log";
const TEMP_FILE_NAME: &str = "offsets.log.tmp";
/// Committed offsets held over all groups and streams.
pub(crate) const OFFSETS_MAX: usize = 1 << 20;
/// The log is compacted once it is this large and 10x the live state.
pub(crate) const COMPACT_MIN_BYTES: u64 = 8 << 20;
const COMPACT_RATIO: u64 = 10;

const _: () = assert!(ENTRIES_PER_RECORD_MAX <= OFFSETS_MAX);
const _: () =
    assert!(COMPACT_MIN_BYTES >= (RECORD_HEADER_BYTES + record::RECORD_BODY_BYTES_MAX) as u64);

/// stream -> group -> shard -> next offset to read.
type OffsetMap = BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>;

/// Committed offsets, in memory and durably in `offsets.log`.
#[derive(Debug)]
pub struct OffsetStore {
    dir: PathBuf,
    /// Opened for append; always ends at `log_bytes`.
    file: File,
    /// Length of the valid prefix of the log (everything in it is synced).
    log_bytes: u64,
    offsets: OffsetMap,
    offset_count: usize,
    /// Size a snapshot of `offsets` would have.
    live_bytes: u64,
    compact_min_bytes: u64,
    poisoned: bool,
}

impl OffsetStore {
    /// Opens (or creates) the store in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<OffsetStore, GroupError> {
        OffsetStore::open_with(dir, COMPACT_MIN_BYTES)
    }

    pub(crate) fn open_with(dir: &Path, compact_min_bytes: u64) -> Result<OffsetStore, GroupError> {
        fs::create_dir_all(dir).map_err(GroupError::io("create offsets dir"))?;
        match fs::remove_file(dir.join(TEMP_FILE_NAME)) {
            Ok(()) => tracing::warn!("removed an unfinished offsets compaction"),
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(GroupError::io("remove offsets temp file")(error)),
        }
        let path = dir.join(LOG_FILE_NAME);
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(GroupError::io("open offsets log"))?;
        if created {
            sync_dir(dir)?;
        }
        let mut store = OffsetStore {
            dir: dir.to_owned(),
            file,
            log_bytes: 0,
            offsets: OffsetMap::new(),
            offset_count: 0,
            live_bytes: 0,
            compact_min_bytes,
            poisoned: false,
        };
        store.replay()?;
        store.maybe_compact();
        Ok(store)
    }

    /// Durably records `offsets` for `(group, stream)`; later entries for
    /// the same shard win.
    pub fn commit(
        &mut self,
        group: &str,
        stream: &str,
        offsets: &[ShardOffset],
    ) -> Result<(), GroupError> {
        check_names(group, stream)?;
        if offsets.len() > ENTRIES_PER_RECORD_MAX {
            return Err(GroupError::TooManyOffsets {
                count: offsets.len(),
                max: ENTRIES_PER_RECORD_MAX,
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let known = self
            .offsets
            .get(stream)
            .and_then(|groups| groups.get(group));
        let mut new_shards: Vec<u32> = offsets
            .iter()
            .map(|entry| entry.shard_id)
            .filter(|shard| known.is_none_or(|shards| !shards.contains_key(shard)))
            .collect();
        new_shards.sort_unstable();
        new_shards.dedup();
        if self.offset_count + new_shards.len() > OFFSETS_MAX {
            return Err(GroupError::OffsetStoreFull {
                count: self.offset_count,
                max: OFFSETS_MAX,
            });
        }
        let record = Record::Commit {
            group: group.to_owned(),
            stream: stream.to_owned(),
            offsets: offsets.iter().map(|e| (e.shard_id, e.offset)).collect(),
        };
        self.append(&record)?;
        self.apply(record);
        self.maybe_compact();
        Ok(())
    }

    /// The committed offsets of `(group, stream)`, by shard; empty when
    /// nothing was committed.
    pub fn fetch(&self, group: &str, stream: &str) -> Vec<ShardOffset> {
        let shards = self
            .offsets
            .get(stream)
            .and_then(|groups| groups.get(group));
        shards
            .into_iter()
            .flatten()
            .map(|(shard_id, offset)| ShardOffset {
                shard_id: *shard_id,
                offset: *offset,
            })
            .collect()
    }

    /// Durably forgets every offset of `stream`.
    pub fn delete_stream(&mut self, stream: &str) -> Result<(), GroupError> {
        if !surge_protocol::valid_name(stream) {
            return Err(GroupError::InvalidStreamName { len: stream.len() });
        }
        if !self.offsets.contains_key(stream) {
            return Ok(());
        }
        let record = Record::DeleteStream {
            stream: stream.to_owned(),
        };
        self.append(&record)?;
        self.apply(record);
        Ok(())
    }

    /// Writes and syncs one record at the end of the log.
    fn append(&mut self, record: &Record) -> Result<(), GroupError> {
        if self.poisoned {
            return Err(GroupError::StorePoisoned);
        }
        let mut bytes = Vec::new();
        record::encode(record, &mut bytes);
        if let Err(error) = self.file.write_all(&bytes) {
            // Cut the partial record off so later records stay reachable.
            if self.file.set_len(self.log_bytes).is_err() {
                self.poisoned = true;
            }
            return Err(GroupError::io("append offsets record")(error));
        }
        if let Err(error) = self.file.sync_data() {
            // After a failed fsync the page cache cannot be trusted.
            self.poisoned = true;
            return Err(GroupError::io("sync offsets log")(error));
        }
        self.log_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Applies a record (already durable) to the in-memory map.
    fn apply(&mut self, record: Record) {
        match record {
            Record::Commit {
                group,
                stream,
                offsets,
            } => {
                let groups = self.offsets.entry(stream.clone()).or_default();
                if !groups.contains_key(&group) {
                    self.live_bytes += key_bytes(&group, &stream);
                }
                let shards = groups.entry(group).or_default();
                for (shard_id, offset) in offsets {
                    if shards.insert(shard_id, offset).is_none() {
                        self.offset_count += 1;
                        self.live_bytes += ENTRY_BYTES as u64;
                    }
                }
            }
            Record::DeleteStream { stream } => {
                for (group, shards) in self.offsets.remove(&stream).unwrap_or_default() {
                    self.offset_count -= shards.len();
                    self.live_bytes -= key_bytes(&group, &stream);
                    self.live_bytes -= (shards.len() * ENTRY_BYTES) as u64;
                }
            }
        }
    }

    /// Replays the log, then cuts it after the last whole valid record.
    fn replay(&mut self) -> Result<(), GroupError> {
        let file_bytes = self
            .file
            .metadata()
            .map_err(GroupError::io("stat offsets log"))?
            .len();
        let handle = self
            .file
            .try_clone()
            .map_err(GroupError::io("clone offsets log handle"))?;
        let mut reader = BufReader::new(handle);
        let mut valid_bytes = 0u64;
        let stop = loop {
            match read_record(&mut reader)? {
                Ok(Some((record, bytes))) => {
                    valid_bytes += bytes;
                    self.apply(record);
                }
                Ok(None) => break None,
                Err(error) => break Some(error),
            }
        };
        self.log_bytes = valid_bytes;
        if let Some(reason) = stop {
            let dropped_bytes = file_bytes - valid_bytes;
            tracing::warn!(
                valid_bytes,
                dropped_bytes,
                %reason,
                "offsets log ends in a torn or invalid record; truncating"
            );
            self.file
                .set_len(valid_bytes)
                .map_err(GroupError::io("truncate offsets log"))?;
            self.file
                .sync_data()
                .map_err(GroupError::io("sync truncated offsets log"))?;
        }
        Ok(())
    }

    fn maybe_compact(&mut self) {
        let bound = self.compact_min_bytes.max(COMPACT_RATIO * self.live_bytes);
        if self.log_bytes <= bound || self.poisoned {
            return;
        }
        // The committed state is already durable in the old log, so a
        // failed compaction loses nothing; it is retried on a later commit.
        if let Err(error) = self.compact() {
            tracing::warn!(%error, log_bytes = self.log_bytes, "offsets compaction failed");
        }
    }

    /// Rewrites the log as a snapshot of the latest offsets.
    pub(crate) fn compact(&mut self) -> Result<(), GroupError> {
        let temp_path = self.dir.join(TEMP_FILE_NAME);
        let snapshot = self.snapshot();
        let written = write_synced(&temp_path, &snapshot);
        if let Err(error) = written {
            let _ = fs::remove_file(&temp_path);
            return Err(error);
        }
        let log_path = self.dir.join(LOG_FILE_NAME);
        fs::rename(&temp_path, &log_path).map_err(GroupError::io("rename offsets snapshot"))?;
        // From here on the snapshot is the log; without a handle on it the
        // store cannot append, so any failure poisons it.
        let reopened = sync_dir(&self.dir).and_then(|()| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&log_path)
                .map_err(GroupError::io("reopen offsets log"))
        });
        match reopened {
            Ok(file) => {
                self.file = file;
                self.log_bytes = snapshot.len() as u64;
                Ok(())
            }
            Err(error) => {
                self.poisoned = true;
                Err(error)
            }
        }
    }

    /// All live offsets as commit records.
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (stream, groups) in &self.offsets {
            for (group, shards) in groups {
                let entries: Vec<(u32, u64)> = shards.iter().map(|(s, o)| (*s, *o)).collect();
                for chunk in entries.chunks(ENTRIES_PER_RECORD_MAX) {
                    let record = Record::Commit {
                        group: group.clone(),
                        stream: stream.clone(),
                        offsets: chunk.to_vec(),
                    };
                    record::encode(&record, &mut bytes);
                }
            }
        }
        bytes
    }

    #[cfg(test)]
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log_bytes
    }
}

/// Snapshot bytes of one `(group, stream)` key without its entries.
fn key_bytes(group: &str, stream: &str) -> u64 {
    (RECORD_HEADER_BYTES + 1 + group.len() + 1 + stream.len() + 4) as u64
}

fn check_names(group: &str, stream: &str) -> Result<(), GroupError> {
    if !surge_protocol::valid_name(group) {
        return Err(GroupError::InvalidGroupName { len: group.len() });
    }
    if !surge_protocol::valid_name(stream) {
        return Err(GroupError::InvalidStreamName { len: stream.len() });
    }
    Ok(())
}

/// Reads one record: `Ok(Ok(None))` at a clean end, `Ok(Err(_))` at a torn
/// or invalid record, `Err(_)` when reading itself failed.
type ReadResult = Result<Result<Option<(Record, u64)>, DecodeError>, GroupError>;

fn read_record(reader: &mut impl Read) -> ReadResult {
    let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
    let got = read_full(reader, &mut header_bytes)?;
    if got == 0 {
        return Ok(Ok(None));
    }
    if got < RECORD_HEADER_BYTES {
        return Ok(Err(torn(got, RECORD_HEADER_BYTES)));
    }
    let header = match record::decode_header(&header_bytes) {
        Ok(header) => header,
        Err(error) => return Ok(Err(error)),
    };
    let mut body = vec![0u8; header.body_len];
    let got = read_full(reader, &mut body)?;
    if got < body.len() {
        return Ok(Err(torn(got, body.len())));
    }
    let used = (RECORD_HEADER_BYTES + body.len()) as u64;
    Ok(record::decode(&header_bytes, header, &body).map(|record| Some((record, used))))
}

fn torn(have: usize, need: usize) -> DecodeError {
    DecodeError::UnexpectedEof {
        offset: 0,
        need,
        have,
    }
}

/// Fills `buf` unless the input ends first; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, GroupError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(GroupError::io("read offsets log")(error)),
        }
    }
    Ok(filled)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), GroupError> {
    let mut file = File::create(path).map_err(GroupError::io("create offsets snapshot"))?;
    file.write_all(bytes)
        .map_err(GroupError::io("write offsets snapshot"))?;
    file.sync_all()
        .map_err(GroupError::io("sync offsets snapshot"))
}

fn sync_dir(dir: &Path) -> Result<(), GroupError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(GroupError::io("sync offsets dir"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn offsets(entries: &[(u32, u64)]) -> Vec<ShardOffset> {
        entries
            .iter()
            .map(|&(shard_id, offset)| ShardOffset { shard_id, offset })
            .collect()
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_FILE_NAME)).expect("stat").len()
    }

    #[test]
    fn commits_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = OffsetStore::open(dir.path()).expect("open");
        store
            .commit("g", "s", &offsets(&[(0, 5), (1, 7)]))
            .expect("commit");
        store.commit("g", "s", &offsets(&[(0, 9)])).expect("commit");
        store.commit("h", "s", &offsets(&[(3, 1)])).expect("commit");
        drop(store);
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.fetch("g", "s"), offsets(&[(0, 9), (1, 7)]));
        assert_eq!(store.fetch("h", "s"), offsets(&[(3, 1)]));
        assert!(store.fetch("nobody", "s").is_empty());
    }

    #[test]
    fn torn_last_record_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = OffsetStore::open(dir.path()).expect("open");
        store.commit("g", "s", &offsets(&[(0, 5)])).expect("commit");
        let whole = store.log_bytes();
        store.commit("g", "s", &offsets(&[(1, 6)])).expect("commit");
        drop(store);
        for cut in [
            whole + 1,
            whole + RECORD_HEADER_BYTES as u64 + 3,
            log_len(dir.path()) - 1,
        ] {
            let file = OpenOptions::new()
                .write(true)
                .open(dir.path().join(LOG_FILE_NAME));
            file.expect("open log").set_len(cut).expect("truncate");
            let mut store = OffsetStore::open(dir.path()).expect("reopen");
            assert_eq!(store.fetch("g", "s"), offsets(&[(0, 5)]), "cut at {cut}");
            assert_eq!(
                log_len(dir.path()),
                whole,
                "truncated to the last whole record"
            );
            store
                .commit("g", "s", &offsets(&[(1, 6)]))
                .expect("commit after recovery");
            drop(store);
            let store = OffsetStore::open(dir.path()).expect("reopen");
            assert_eq!(store.fetch("g", "s"), offsets(&[(0, 5), (1, 6)]));
        }
    }

    #[test]
    fn flipped_byte_stops_replay_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = OffsetStore::open(dir.path()).expect("open");
        store.commit("g", "s", &offsets(&[(0, 1)])).expect("commit");
        let first = store.log_bytes();
        store.commit("g", "s", &offsets(&[(0, 2)])).expect("commit");
        store.commit("g", "s", &offsets(&[(0, 3)])).expect("commit");
        drop(store);
        let path = dir.path().join(LOG_FILE_NAME);
        let mut bytes = fs::read(&path).expect("read");
        bytes[first as usize + RECORD_HEADER_BYTES + 2] ^= 0x01;
        fs::write(&path, &bytes).expect("write");
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.fetch("g", "s"), offsets(&[(0, 1)]));
        assert_eq!(log_len(dir.path()), first);
    }

    #[test]
    fn compaction_keeps_latest_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = OffsetStore::open_with(dir.path(), 1024).expect("open");
        for offset in 0..200u64 {
            store
                .commit("g", "s", &offsets(&[(0, offset), (1, offset * 2)]))
                .expect("commit");
            store
                .commit("h", "t", &offsets(&[(4, offset)]))
                .expect("commit");
        }
        assert!(
            log_len(dir.path()) <= 1024 + 64,
            "compacted: {}",
            log_len(dir.path())
        );
        assert_eq!(log_len(dir.path()), store.log_bytes());
        store.delete_stream("t").expect("delete");
        drop(store);
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.fetch("g", "s"), offsets(&[(0, 199), (1, 398)]));
        assert!(store.fetch("h", "t").is_empty(), "deleted durably");
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
    }

    #[test]
    fn explicit_compaction_then_more_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = OffsetStore::open(dir.path()).expect("open");
        store.commit("g", "s", &offsets(&[(0, 1)])).expect("commit");
        store.commit("g", "s", &offsets(&[(0, 2)])).expect("commit");
        store.compact().expect("compact");
        store.commit("g", "s", &offsets(&[(1, 3)])).expect("commit");
        drop(store);
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.fetch("g", "s"), offsets(&[(0, 2), (1, 3)]));
    }

    #[test]
    fn bounds_and_names_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = OffsetStore::open(dir.path()).expect("open");
        let too_many = offsets(&vec![(0, 0); ENTRIES_PER_RECORD_MAX + 1]);
        assert!(matches!(
            store.commit("g", "s", &too_many),
            Err(GroupError::TooManyOffsets { .. })
        ));
        assert!(store.commit("", "s", &offsets(&[(0, 0)])).is_err());
        assert!(store.commit("g", "a b", &offsets(&[(0, 0)])).is_err());
        assert_eq!(store.log_bytes(), 0, "nothing written");
    }

    proptest! {
        #[test]
        fn random_log_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::write(dir.path().join(LOG_FILE_NAME), &bytes).expect("write");
            let mut store = OffsetStore::open(dir.path()).expect("open");
            prop_assert!(log_len(dir.path()) <= bytes.len() as u64);
            store.commit("g", "s", &offsets(&[(0, 1)])).expect("commit");
        }

        #[test]
        fn valid_prefix_then_garbage_keeps_the_prefix(
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = OffsetStore::open(dir.path()).expect("open");
            store.commit("g", "s", &offsets(&[(2, 3)])).expect("commit");
            drop(store);
            let path = dir.path().join(LOG_FILE_NAME);
            let mut bytes = fs::read(&path).expect("read");
            bytes.extend_from_slice(&garbage);
            fs::write(&path, &bytes).expect("write");
            let store = OffsetStore::open(dir.path()).expect("reopen");
            prop_assert_eq!(store.fetch("g", "s"), offsets(&[(2, 3)]));
        }
    }
}
