//! `ShardLog`: the append side of one shard's log. Single writer: exactly
//! one owner (the shard's owner thread) holds the `ShardLog` and every
//! mutation goes through `&mut self`; readers use `LogReader` clones, which
//! see a change only after its bytes are in the file.
//!
//! Owns the active segment's file, rolling, group writes, idempotency,
//! durability (`written` vs `flushed` offsets) and retention.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use surge_protocol::batch::{BatchHeader, Checked};
use surge_protocol::DecodeError;

pub use super::recovery::RecoveryReport;

use super::chunk::Chunk;
use super::config::{LogConfig, MAX_SEGMENTS_PER_SHARD};
use super::error::StorageError;
use super::files;
use super::index::SegmentIndex;
use super::io::{IoBackend, IoWriter};
use super::mmap::SegmentMap;
use super::pages::LogPages;
use super::producers::{self, Entry, ProducerKey, ProducerState, ProducerTable, Verdict};
use super::reader::{LogReader, LogState};
use super::recovery;
use super::segment::{HeaderWalker, Segment};

/// What `append` did with one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored now at this base offset.
    Appended { base_offset: u64 },
    /// Stored before, not stored again: a retry of the key's last batch
    /// (at `Some(base_offset)`), or of a batch at or below an inherited or
    /// forwarded key's last sequence (`None`: the offset is unknown here).
    Duplicate { base_offset: Option<u64> },
    /// A gap or an older sequence: rejected.
    OutOfOrder { expected_sequence: u64 },
}

/// The writable file of the active segment.
#[derive(Debug)]
struct ActiveFile {
    file: File,
    path: PathBuf,
    preallocated_bytes: u64,
    opened_ms: i64,
}

/// The append side of one shard's log.
#[derive(Debug)]
pub struct ShardLog {
    dir: PathBuf,
    config: LogConfig,
    writer: IoWriter,
    state: Arc<RwLock<LogState>>,
    active: ActiveFile,
    producers: ProducerTable,
    flushed_offset: u64,
    pages: LogPages,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

impl ShardLog {
    /// Opens or creates the log in `dir` and recovers it (see `recovery`).
    pub fn open(
        dir: &Path,
        config: LogConfig,
        io: Arc<IoBackend>,
    ) -> Result<(ShardLog, RecoveryReport), StorageError> {
        let config = config.normalized();
        std::fs::create_dir_all(dir)
            .map_err(|source| StorageError::io("create dir", dir, source))?;
        let recovered = recovery::recover(dir, &config)?;
        let report = recovered.report.clone();
        let mut log = ShardLog::from_recovered(dir, config, io, recovered);
        log.rebuild_producers()?;
        Ok((log, report))
    }

    /// The log recovery (or adoption) left, with an empty producer table.
    fn from_recovered(
        dir: &Path,
        config: LogConfig,
        io: Arc<IoBackend>,
        recovered: recovery::Recovered,
    ) -> ShardLog {
        let active_segment = recovered.segments.last().expect("recovery keeps a segment");
        let active = ActiveFile {
            file: recovered.active_file,
            path: files::offset_path(dir, active_segment.base_offset, files::LOG_SUFFIX),
            preallocated_bytes: active_segment.map.len() as u64,
            opened_ms: now_ms(),
        };
        let state = LogState {
            dir: dir.to_owned(),
            log_start_offset: recovered.segments[0].base_offset,
            segments: recovered.segments,
        };
        let mut log = ShardLog {
            dir: dir.to_owned(),
            pages: LogPages::new(config.cache_window_bytes),
            config,
            writer: io.writer(),
            state: Arc::new(RwLock::new(state)),
            active,
            producers: ProducerTable::default(),
            flushed_offset: 0,
        };
        log.flushed_offset = log.written_offset();
        log
    }

    /// Takes the pooled log in `dir` (see `pooled`) for a successor,
    /// without reading or syncing anything. Its producer table is empty
    /// until `inherit`, which the caller calls once the parents are sealed.
    pub fn adopt(
        dir: &Path,
        config: LogConfig,
        io: Arc<IoBackend>,
    ) -> Result<ShardLog, StorageError> {
        let recovered = super::pooled::adopt(dir)?;
        Ok(ShardLog::from_recovered(
            dir,
            config.normalized(),
            io,
            recovered,
        ))
    }

    /// Gives an adopted, still empty successor the table its parents leave
    /// it (`ProducerState::inherited`). Kept in memory only: the caller's
    /// commit record holds it until `persist_inherited` has made it durable
    /// in the log's directory.
    pub fn inherit(&mut self, inherited: &ProducerState) {
        assert_eq!(self.written_offset(), 0, "only an empty log inherits");
        self.producers = ProducerTable::inherit(inherited);
    }

    /// Makes a successor's inherited producer table durable in its
    /// directory (a snapshot at offset 0; any newer one the shard wrote
    /// meanwhile stays, and `open` prefers it).
    pub fn persist_inherited(dir: &Path, inherited: &ProducerState) -> Result<(), StorageError> {
        ProducerTable::inherit(inherited).persist_initial(dir)?;
        files::sync_dir(dir)
    }

    /// The newest producer snapshot plus the headers stored after it.
    fn rebuild_producers(&mut self) -> Result<(), StorageError> {
        let written_offset = self.written_offset();
        let (table, from) = match ProducerTable::load(&self.dir, written_offset)? {
            Some((table, covered)) => (table, covered),
            None => (ProducerTable::default(), 0),
        };
        self.producers = table;
        let state = self.state.read();
        for segment in state
            .segments
            .iter()
            .filter(|segment| segment.next_offset > from)
        {
            let start = segment
                .index
                .floor_offset(from)
                .map_or(0, |entry| u64::from(entry.position));
            let path = files::offset_path(&self.dir, segment.base_offset, files::LOG_SUFFIX);
            let mut walker = HeaderWalker::new(segment, start);
            while let Some((_, header)) = walker.next_header(&path)? {
                if header.base_offset >= from && header.producer_id != 0 {
                    self.producers
                        .record(ProducerKey::of(&header), Entry::of(&header));
                }
            }
        }
        Ok(())
    }

    /// Appends checked batches in order, one write per segment touched,
    /// with per-producer idempotency; with `sync`, fdatasynced on return.
    /// On an error nothing of the failed write becomes visible (an earlier
    /// segment's part of a group that rolled stays stored).
    pub fn append(
        &mut self,
        batches: &[Checked],
        sync: bool,
    ) -> Result<Vec<AppendOutcome>, StorageError> {
        // A batch was checked where it entered the broker, against the
        // broker's limit; one over this log's rejects the whole call before
        // anything is written.
        if let Some((index, over)) = batches
            .iter()
            .enumerate()
            .find(|(_, batch)| batch.header().size > self.config.max_batch_bytes)
        {
            return Err(StorageError::InvalidBatch {
                index,
                source: DecodeError::LengthTooLarge {
                    len: over.header().size,
                    max: self.config.max_batch_bytes,
                },
            });
        }
        if self.config.segment_ms > 0 && self.active_written_bytes() > 0 {
            let age_ms = now_ms().saturating_sub(self.active.opened_ms);
            if age_ms >= 0 && age_ms as u64 >= self.config.segment_ms {
                self.roll()?;
            }
        }
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut pending: HashMap<ProducerKey, Entry> = HashMap::new();
        let mut chunk = Chunk::with_capacity(batches.len());
        let mut next_offset = self.written_offset();
        for checked in batches {
            let (bytes, mut header) = (checked.bytes(), *checked.header());
            if let Some(outcome) = self.judge(&pending, &header) {
                outcomes.push(outcome);
                continue;
            }
            let projected = self.active_written_bytes() + (chunk.len + header.size) as u64;
            if projected > self.config.segment_bytes
                && self.active_written_bytes() + chunk.len as u64 > 0
            {
                self.write_chunk(std::mem::take(&mut chunk), sync)?;
                self.roll()?;
            }
            header.base_offset = next_offset;
            chunk.push(bytes, header);
            if header.producer_id != 0 {
                pending.insert(ProducerKey::of(&header), Entry::of(&header));
            }
            outcomes.push(AppendOutcome::Appended {
                base_offset: next_offset,
            });
            next_offset = header.next_offset();
        }
        self.write_chunk(chunk, sync)?;
        Ok(outcomes)
    }

    /// What the producer table, with `pending` (this call's accepted
    /// batches) over it, says about a batch: `None` to store it.
    fn judge(
        &self,
        pending: &HashMap<ProducerKey, Entry>,
        header: &BatchHeader,
    ) -> Option<AppendOutcome> {
        if header.producer_id == 0 {
            return None;
        }
        let key = ProducerKey::of(header);
        let entry = pending
            .get(&key)
            .copied()
            .or_else(|| self.producers.get(key));
        match producers::judge(entry, header) {
            Verdict::Accept => None,
            Verdict::Duplicate { base_offset } => Some(AppendOutcome::Duplicate { base_offset }),
            Verdict::OutOfOrder { expected_sequence } => {
                Some(AppendOutcome::OutOfOrder { expected_sequence })
            }
        }
    }

    /// For a sealed shard: what `append` would answer for each batch, taken
    /// in order as if appended one after another, without storing anything
    /// or changing the table. `None` where `append` would store the batch
    /// (the broker forwards it). A retry of a batch earlier in the
    /// same call is `Duplicate { base_offset: None }`: that batch is
    /// forwarded, so its offset is not in this log.
    pub fn check_sealed(&self, batches: &[Checked]) -> Vec<Option<AppendOutcome>> {
        let sealed_end = self.written_offset();
        let mut pending: HashMap<ProducerKey, Entry> = HashMap::new();
        let mut next_offset = sealed_end;
        batches
            .iter()
            .map(|checked| {
                let mut header = *checked.header();
                match self.judge(&pending, &header) {
                    Some(AppendOutcome::Duplicate {
                        base_offset: Some(base_offset),
                    }) if base_offset >= sealed_end => {
                        Some(AppendOutcome::Duplicate { base_offset: None })
                    }
                    Some(outcome) => Some(outcome),
                    None => {
                        header.base_offset = next_offset;
                        next_offset = header.next_offset();
                        if header.producer_id != 0 {
                            pending.insert(ProducerKey::of(&header), Entry::of(&header));
                        }
                        None
                    }
                }
            })
            .collect()
    }

    /// An owned copy of the producer table's last sequences: what the
    /// successors of this shard inherit when it is sealed.
    pub fn producer_state(&self) -> ProducerState {
        self.producers.state()
    }

    fn active_written_bytes(&self) -> u64 {
        self.state
            .read()
            .segments
            .last()
            .expect("a log has a segment")
            .written_bytes
    }

    /// One write of `chunk` at the end of the active segment, then publishes
    /// it to readers and the producer table.
    fn write_chunk(&mut self, chunk: Chunk, sync: bool) -> Result<(), StorageError> {
        if chunk.headers.is_empty() {
            if sync {
                self.sync()?;
            }
            return Ok(());
        }
        let position = self.active_written_bytes();
        let needed_bytes = position + chunk.len as u64;
        if needed_bytes > self.active.preallocated_bytes {
            self.grow_active(needed_bytes)?;
        }
        self.writer
            .write_all_at(&self.active.file, position, &mut chunk.buffers(), sync)
            .map_err(|source| StorageError::io("write", &self.active.path, source))?;
        let interval_bytes = self.config.index_interval_bytes;
        let mut state = self.state.write();
        let segment = state.segments.last_mut().expect("a log has a segment");
        let mut batch_position = position;
        for header in &chunk.headers {
            assert_eq!(
                header.base_offset, segment.next_offset,
                "appended offsets are dense"
            );
            segment.index.observe(
                header.base_offset,
                batch_position,
                segment.max_timestamp_ms,
                interval_bytes,
            );
            segment.max_timestamp_ms = segment.max_timestamp_ms.max(header.max_timestamp_ms);
            segment.next_offset = header.next_offset();
            batch_position += header.size as u64;
        }
        assert_eq!(
            batch_position, needed_bytes,
            "chunk length is the sum of its batches"
        );
        segment.written_bytes = needed_bytes;
        let written_offset = segment.next_offset;
        drop(state);
        for header in chunk
            .headers
            .iter()
            .filter(|header| header.producer_id != 0)
        {
            self.producers
                .record(ProducerKey::of(header), Entry::of(header));
        }
        if sync {
            self.flushed_offset = written_offset;
            self.active_durable(needed_bytes);
        } else {
            self.pages.written(&self.active.file, needed_bytes);
        }
        Ok(())
    }

    /// The active segment's first `position` bytes are on disk.
    fn active_durable(&mut self, position: u64) {
        let state = self.state.read();
        let active = state.segments.last().expect("a log has a segment");
        self.pages.durable(&self.active.file, &active.map, position);
    }

    /// Preallocates the next step of the active segment and remaps it; old
    /// maps stay alive in readers' `Bytes` until dropped.
    fn grow_active(&mut self, needed_bytes: u64) -> Result<(), StorageError> {
        let target = recovery::preallocation_target(
            needed_bytes,
            self.active.preallocated_bytes,
            &self.config,
        );
        super::sys::preallocate(&self.active.file, target)
            .map_err(|source| StorageError::io("fallocate", &self.active.path, source))?;
        let map = SegmentMap::new(&self.active.file, target, &self.active.path)?;
        self.state
            .write()
            .segments
            .last_mut()
            .expect("a log has a segment")
            .map = map;
        self.active.preallocated_bytes = target;
        Ok(())
    }

    /// Seals the active segment (synced, index and producer snapshot
    /// persisted) and starts a new one at the written offset.
    fn roll(&mut self) -> Result<(), StorageError> {
        let segment_count = self.state.read().segments.len();
        if segment_count >= MAX_SEGMENTS_PER_SHARD {
            return Err(StorageError::TooManySegments {
                count: segment_count + 1,
                max: MAX_SEGMENTS_PER_SHARD,
            });
        }
        self.sync()?;
        let base_offset = self.written_offset();
        assert!(
            self.active_written_bytes() > 0,
            "a roll follows a write, so no segment starts at {base_offset} yet"
        );
        // A roll that failed part-way (a full disk refused the new file's
        // preallocation, its index or its snapshot) may have left the new
        // segment's file behind. Nothing refers to it: start it afresh, or
        // every later roll would fail on it.
        let path = files::offset_path(&self.dir, base_offset, files::LOG_SUFFIX);
        if path.exists() {
            files::remove_file(&path)?;
        }
        let file =
            recovery::create_segment_file(&self.dir, base_offset, self.config.preallocate_bytes)
                .inspect_err(|_| remove_leftover(&path))?;
        // Until the segment is pushed, a failure must not leave its file:
        // appends that still fit go on in the old segment, and at the next
        // start recovery would take the file for a break in the offsets and
        // delete every segment after it.
        let map = self
            .persist_for_roll(base_offset, &file, &path)
            .inspect_err(|_| remove_leftover(&path))?;
        let mut state = self.state.write();
        let left_segment = state.segments.last().expect("a log has a segment");
        let (left_map, left_bytes) = (left_segment.map.clone(), left_segment.written_bytes);
        state.segments.push(Segment {
            base_offset,
            next_offset: base_offset,
            written_bytes: 0,
            max_timestamp_ms: i64::MIN,
            index: SegmentIndex::new(base_offset),
            map,
        });
        drop(state);
        let left_active = std::mem::replace(
            &mut self.active,
            ActiveFile {
                file,
                path,
                preallocated_bytes: self.config.preallocate_bytes,
                opened_ms: now_ms(),
            },
        );
        self.pages.rolled(left_active.file, left_map, left_bytes);
        Ok(())
    }

    /// The durable part of a roll after the new file exists: the old
    /// segment's index, the producer snapshot, the directory entry; then
    /// the new segment's map.
    fn persist_for_roll(
        &self,
        base_offset: u64,
        file: &File,
        path: &Path,
    ) -> Result<SegmentMap, StorageError> {
        if crate::failpoint::once("storage.roll_after_create") {
            // As a full disk would refuse the index or the snapshot.
            return Err(StorageError::io(
                "persist index",
                path,
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        self.persist_active_index()?;
        self.producers.persist(&self.dir, base_offset)?;
        files::sync_dir(&self.dir)?;
        SegmentMap::new(file, self.config.preallocate_bytes, path)
    }

    fn persist_active_index(&self) -> Result<(), StorageError> {
        let state = self.state.read();
        state
            .segments
            .last()
            .expect("a log has a segment")
            .index
            .persist(&self.dir)
    }

    /// fdatasyncs everything written; afterwards flushed == written. Sealed
    /// segments were synced when they rolled, so only the active one can
    /// hold unsynced data.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        let written_offset = self.written_offset();
        if self.flushed_offset == written_offset {
            return Ok(());
        }
        self.active
            .file
            .sync_data()
            .map_err(|source| StorageError::io("fdatasync", &self.active.path, source))?;
        self.flushed_offset = written_offset;
        self.active_durable(self.active_written_bytes());
        Ok(())
    }

    /// `sync` to run on another thread while appends go on (a `write`
    /// stream's periodic flush); `None` when nothing is unflushed. Hand
    /// its result back with `synced`.
    pub fn sync_job(&self) -> Result<Option<SyncJob>, StorageError> {
        let offset = self.written_offset();
        if self.flushed_offset == offset {
            return Ok(None);
        }
        // Sealed segments were synced when they rolled: the active one is all.
        let file = self
            .active
            .file
            .try_clone()
            .map_err(|source| StorageError::io("dup", &self.active.path, source))?;
        let state = self.state.read();
        let active = state.segments.last().expect("a log has a segment");
        Ok(Some(SyncJob {
            file,
            path: self.active.path.clone(),
            synced: Synced {
                offset,
                segment_base: active.base_offset,
                position: active.written_bytes,
            },
        }))
    }

    /// A `SyncJob` finished: everything below its offset is on disk.
    pub fn synced(&mut self, synced: Synced) {
        self.flushed_offset = self.flushed_offset.max(synced.offset);
        let active_base = (self.state.read().segments.last())
            .expect("a log has a segment")
            .base_offset;
        // A roll since the job was taken synced that segment itself.
        if synced.segment_base == active_base {
            self.active_durable(synced.position);
        }
    }

    /// Next offset to assign: the end of the log.
    pub fn written_offset(&self) -> u64 {
        self.state.read().written_offset()
    }

    /// Every offset below this is on disk.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    pub fn log_start_offset(&self) -> u64 {
        self.state.read().log_start_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.state
            .read()
            .segments
            .iter()
            .map(|segment| segment.written_bytes)
            .sum()
    }

    pub fn reader(&self) -> LogReader {
        LogReader {
            state: Arc::clone(&self.state),
        }
    }

    /// Deletes the oldest whole sealed segments beyond `retention_bytes` or
    /// older than `retention_ms` (by their newest record). Never the active
    /// segment. Returns how many were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut removed = Vec::new();
        {
            let mut state = self.state.write();
            let mut total_bytes: u64 = state
                .segments
                .iter()
                .map(|segment| segment.written_bytes)
                .sum();
            let retention_ms = i64::try_from(self.config.retention_ms).unwrap_or(i64::MAX);
            let mut count = 0;
            while count + 1 < state.segments.len() {
                let oldest = &state.segments[count];
                let over_bytes =
                    self.config.retention_bytes > 0 && total_bytes > self.config.retention_bytes;
                let expired = self.config.retention_ms > 0
                    && oldest.max_timestamp_ms < now_ms.saturating_sub(retention_ms);
                if !over_bytes && !expired {
                    break;
                }
                total_bytes -= oldest.written_bytes;
                count += 1;
            }
            for segment in state.segments.drain(..count) {
                removed.push(segment.base_offset);
            }
            state.log_start_offset = state.segments[0].base_offset;
        }
        for &base_offset in &removed {
            recovery::delete_segment_files(&self.dir, base_offset)?;
        }
        if !removed.is_empty() {
            files::sync_dir(&self.dir)?;
        }
        Ok(removed.len())
    }

    /// Clean shutdown: sync, persist the active index and the producer
    /// snapshot, fsync the directory.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.sync()?;
        self.persist_active_index()?;
        self.producers.persist(&self.dir, self.written_offset())?;
        files::sync_dir(&self.dir)
    }
}

/// Removes a roll's new segment file after the roll failed; a failure to do
/// so is logged (the next roll at that offset removes it before starting).
fn remove_leftover(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %err, "could not remove a failed roll's segment file");
        }
    }
}

/// An fdatasync of a log's active segment, detached from the log: it holds
/// its own handle on the file, so it can run while the log appends and
/// rolls (a roll syncs the segment it leaves itself).
#[derive(Debug)]
pub struct SyncJob {
    file: File,
    path: PathBuf,
    synced: Synced,
}

/// How far a finished `SyncJob` made the log durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// Every offset below this is on disk.
    pub offset: u64,
    segment_base: u64,
    /// Bytes of that segment on disk.
    position: u64,
}

impl SyncJob {
    /// Syncs; returns how far the log is then on disk.
    pub fn run(self) -> Result<Synced, StorageError> {
        self.file
            .sync_data()
            .map_err(|source| StorageError::io("fdatasync", &self.path, source))?;
        Ok(self.synced)
    }
}
