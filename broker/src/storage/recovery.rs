//! Opening a shard directory: finds the segments, validates each from its
//! last index checkpoint (or from its start where the index is missing or
//! corrupt), truncates at the first invalid batch, drops every segment after
//! a break in the offsets (an empty file a failed roll left is removed, not
//! taken for a break), rebuilds indexes, and maps what it keeps.
//!
//! Nothing is mapped until its file is final: scans use a private map that
//! is dropped before any truncation (see the contract in `mmap.rs`).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use surge_protocol::batch::BATCH_HEADER_BYTES;

use super::config::{LogConfig, MAX_SEGMENTS_PER_SHARD};
use super::error::StorageError;
use super::files;
use super::index::SegmentIndex;
use super::mmap::SegmentMap;
use super::segment::{self, ScanEnd, Segment};
use super::sys;

/// What recovery found and changed; the same facts are logged as warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_kept: usize,
    /// Indexes rebuilt by scanning because they were missing or corrupt.
    pub indexes_rebuilt: usize,
    /// Segments whose invalid tail was cut off.
    pub truncations: Vec<Truncation>,
    /// Base offsets of whole segments deleted after a break in the offsets.
    pub segments_dropped: Vec<u64>,
    /// Base offsets of empty segment files found inside the previous
    /// segment's offsets (what a roll that failed part-way leaves), deleted
    /// without cutting the log there.
    pub strays_removed: Vec<u64>,
    /// Non-zero bytes dropped, truncated tails and deleted segments together.
    pub dropped_bytes: u64,
}

/// One cut: the segment, where its valid batches end, what followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub path: PathBuf,
    pub position: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

/// The open log as recovery leaves it: mapped segments (the last is the
/// active one) and the active segment's writable file.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Segment>,
    pub(crate) active_file: File,
    pub(crate) report: RecoveryReport,
}

#[derive(Debug)]
struct Scanned {
    base_offset: u64,
    file_len_bytes: u64,
    index: SegmentIndex,
    end: ScanEnd,
    dropped_bytes: u64,
    rebuilt: bool,
    /// A sealed segment damaged inside: kept whole (see `keep_past_damage`).
    damaged_sealed: bool,
}

pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, StorageError> {
    files::remove_temp_files(dir)?;
    let mut bases = files::list_offsets(dir, files::LOG_SUFFIX)?;
    if bases.len() > MAX_SEGMENTS_PER_SHARD {
        return Err(StorageError::TooManySegments {
            count: bases.len(),
            max: MAX_SEGMENTS_PER_SHARD,
        });
    }
    remove_orphan_indexes(dir, &bases)?;
    let mut report = RecoveryReport::default();
    // A log created just now holds nothing but preallocated zeros: its
    // tail need not be read back to prove it.
    let fresh = bases.is_empty();
    if fresh {
        // Its entry is made durable by the fsync of `dir` below, before the
        // log is handed out; a crash before that finds the log fresh again.
        create_segment_file(dir, 0, config.preallocate_bytes)?;
        bases.push(0);
    }
    let mut kept: Vec<Scanned> = Vec::with_capacity(bases.len());
    for (at, &base_offset) in bases.iter().enumerate() {
        if let Some(previous) = kept.last_mut() {
            if base_offset < previous.end.next_offset && holds_no_batch(dir, base_offset)? {
                remove_stray(dir, base_offset, &mut report)?;
                continue;
            }
            if previous.end.next_offset != base_offset
                && !keep_past_damage(dir, previous, base_offset)
            {
                drop_segments(dir, &bases[at..], previous.end.next_offset, &mut report)?;
                break;
            }
        }
        kept.push(scan_segment(dir, base_offset, config, fresh)?);
    }
    let last_at = kept.len() - 1;
    let mut segments = Vec::with_capacity(kept.len());
    let mut active_file = None;
    for (at, scanned) in kept.into_iter().enumerate() {
        if !scanned.damaged_sealed {
            note_truncation(dir, &scanned, &mut report);
        }
        report.indexes_rebuilt += usize::from(scanned.rebuilt);
        let (segment, file) = finish_segment(dir, scanned, at == last_at, config)?;
        segments.push(segment);
        active_file = file;
    }
    files::sync_dir(dir)?;
    report.segments_kept = segments.len();
    let active_file = active_file.expect("the last segment is opened for writing");
    Ok(Recovered {
        segments,
        active_file,
        report,
    })
}

/// Whether the segment file at `base_offset` starts with no batch: shorter
/// than a batch header, or zeros where the first header would be (a
/// preallocated file never written).
fn holds_no_batch(dir: &Path, base_offset: u64) -> Result<bool, StorageError> {
    use std::io::Read;
    let path = files::offset_path(dir, base_offset, files::LOG_SUFFIX);
    let mut head = Vec::with_capacity(BATCH_HEADER_BYTES);
    File::open(&path)
        .and_then(|file| file.take(BATCH_HEADER_BYTES as u64).read_to_end(&mut head))
        .map_err(|source| StorageError::io("read", &path, source))?;
    Ok(head.len() < BATCH_HEADER_BYTES || head.iter().all(|&byte| byte == 0))
}

/// Deletes an empty segment file that starts inside the previous segment's
/// offsets. Only a roll that failed after creating its file leaves one
/// (appends then went on in the old segment); taking it for a break would
/// delete every later segment, and the acknowledged events in them.
fn remove_stray(
    dir: &Path,
    base_offset: u64,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    tracing::warn!(
        path = %files::offset_path(dir, base_offset, files::LOG_SUFFIX).display(),
        "recovery removed an empty segment file left inside the previous segment by a failed roll"
    );
    delete_segment_files(dir, base_offset)?;
    report.strays_removed.push(base_offset);
    Ok(())
}

/// A sealed segment whose scan stopped at a damaged batch while the next
/// segment starts further on was whole when it was sealed (segments are
/// fdatasynced before the next one is created): the damage came later (bit
/// rot, a stray write). Truncating it would throw away every later segment,
/// so it is kept: reads serve its batches up to the damage and refuse the
/// damaged one (they checksum every batch), and the log goes on at the next
/// segment. Returns whether `previous` was kept that way.
fn keep_past_damage(dir: &Path, previous: &mut Scanned, next_base: u64) -> bool {
    if previous.end.stop_reason.is_none() || previous.end.next_offset > next_base {
        return false;
    }
    let path = files::offset_path(dir, previous.base_offset, files::LOG_SUFFIX);
    tracing::error!(
        path = %path.display(),
        position = previous.end.valid_bytes,
        lost_offsets = %format!("{}..{next_base}", previous.end.next_offset),
        reason = previous.end.stop_reason.as_deref().unwrap_or_default(),
        "a sealed segment is damaged; the damaged offsets will not be served"
    );
    previous.damaged_sealed = true;
    previous.end.next_offset = next_base;
    true
}

/// Scans one segment from its last index checkpoint without changing it.
/// `fresh`: the segment was created empty by this recovery.
fn scan_segment(
    dir: &Path,
    base_offset: u64,
    config: &LogConfig,
    fresh: bool,
) -> Result<Scanned, StorageError> {
    let path = files::offset_path(dir, base_offset, files::LOG_SUFFIX);
    let file = File::open(&path).map_err(|source| StorageError::io("open", &path, source))?;
    let file_len_bytes = file
        .metadata()
        .map_err(|source| StorageError::io("stat", &path, source))?
        .len();
    let loaded = SegmentIndex::load(dir, base_offset, file_len_bytes)?;
    let rebuilt = loaded.is_none();
    let mut index = loaded.unwrap_or_else(|| SegmentIndex::new(base_offset));
    let start = match index.last() {
        Some(entry) => (
            u64::from(entry.position),
            base_offset + u64::from(entry.relative_offset),
            entry.max_timestamp_before_ms,
        ),
        None => (0, base_offset, i64::MIN),
    };
    if file_len_bytes == 0 {
        let end = ScanEnd {
            valid_bytes: 0,
            next_offset: base_offset,
            max_timestamp_ms: i64::MIN,
            stop_reason: None,
        };
        return Ok(Scanned {
            base_offset,
            file_len_bytes,
            index,
            end,
            dropped_bytes: 0,
            rebuilt,
            damaged_sealed: false,
        });
    }
    // A private map, dropped at the end of this function, before any change
    // to the file.
    let map = SegmentMap::new(&file, file_len_bytes, &path)?;
    let end = segment::scan(
        map.as_slice(),
        start,
        &mut index,
        config.index_interval_bytes,
        config.max_batch_bytes,
    );
    index.truncate_at(end.valid_bytes);
    drop(map);
    let dropped_bytes = if fresh {
        0
    } else {
        segment::dropped_bytes_in_file(&file, end.valid_bytes, file_len_bytes)
            .map_err(|source| StorageError::io("read", &path, source))?
    };
    Ok(Scanned {
        base_offset,
        file_len_bytes,
        index,
        end,
        dropped_bytes,
        rebuilt,
        damaged_sealed: false,
    })
}

fn note_truncation(dir: &Path, scanned: &Scanned, report: &mut RecoveryReport) {
    if scanned.dropped_bytes == 0 {
        return;
    }
    let path = files::offset_path(dir, scanned.base_offset, files::LOG_SUFFIX);
    let reason = scanned
        .end
        .stop_reason
        .clone()
        .unwrap_or_else(|| "invalid batch".to_owned());
    tracing::warn!(
        path = %path.display(),
        position = scanned.end.valid_bytes,
        dropped_bytes = scanned.dropped_bytes,
        reason,
        "recovery truncated a segment at its first invalid batch"
    );
    report.dropped_bytes += scanned.dropped_bytes;
    report.truncations.push(Truncation {
        path,
        position: scanned.end.valid_bytes,
        dropped_bytes: scanned.dropped_bytes,
        reason,
    });
}

/// Truncates (and for the active segment re-preallocates) a scanned segment,
/// persists a rebuilt index of a sealed one, and maps it.
fn finish_segment(
    dir: &Path,
    scanned: Scanned,
    active: bool,
    config: &LogConfig,
) -> Result<(Segment, Option<File>), StorageError> {
    let path = files::offset_path(dir, scanned.base_offset, files::LOG_SUFFIX);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| StorageError::io("open", &path, source))?;
    let valid_bytes = scanned.end.valid_bytes;
    let needs_cut = !scanned.damaged_sealed
        && (scanned.dropped_bytes > 0 || (!active && scanned.file_len_bytes > valid_bytes));
    if needs_cut {
        file.set_len(valid_bytes)
            .and_then(|()| file.sync_all())
            .map_err(|source| StorageError::io("truncate", &path, source))?;
        if active {
            // Its persisted checkpoint may name the cut batch; the active
            // index lives in memory until the segment is sealed.
            files::remove_file(&files::offset_path(
                dir,
                scanned.base_offset,
                files::OFFSET_INDEX_SUFFIX,
            ))?;
            files::remove_file(&files::offset_path(
                dir,
                scanned.base_offset,
                files::TIME_INDEX_SUFFIX,
            ))?;
        }
    }
    let map_len_bytes = if active {
        let current = if needs_cut {
            valid_bytes
        } else {
            scanned.file_len_bytes
        };
        let target = preallocation_target(valid_bytes, current, config);
        sys::preallocate(&file, target)
            .map_err(|source| StorageError::io("fallocate", &path, source))?;
        // What a crashed process left in the page cache becomes durable
        // here, so the recovered end is also the flushed offset.
        file.sync_data()
            .map_err(|source| StorageError::io("fdatasync", &path, source))?;
        target
    } else {
        if !scanned.damaged_sealed && (scanned.rebuilt || scanned.dropped_bytes > 0) {
            scanned.index.persist(dir)?;
        }
        valid_bytes
    };
    let map = SegmentMap::new(&file, map_len_bytes, &path)?;
    let segment = Segment {
        base_offset: scanned.base_offset,
        next_offset: scanned.end.next_offset,
        written_bytes: valid_bytes,
        max_timestamp_ms: scanned.end.max_timestamp_ms,
        index: scanned.index,
        map,
    };
    Ok((segment, active.then_some(file)))
}

/// The preallocated length for a segment that must hold `needed_bytes`:
/// the next `preallocate_bytes` step, at most `segment_bytes` unless more is
/// needed, never less than the file already has.
pub(crate) fn preallocation_target(
    needed_bytes: u64,
    current_bytes: u64,
    config: &LogConfig,
) -> u64 {
    let step = config.preallocate_bytes;
    let stepped = (needed_bytes / step + 1) * step;
    stepped
        .min(config.segment_bytes)
        .max(needed_bytes)
        .max(current_bytes)
        .max(1)
}

/// Creates an empty, preallocated segment file; the caller fsyncs the dir.
pub(crate) fn create_segment_file(
    dir: &Path,
    base_offset: u64,
    preallocate_bytes: u64,
) -> Result<File, StorageError> {
    let path = files::offset_path(dir, base_offset, files::LOG_SUFFIX);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| StorageError::io("create", &path, source))?;
    sys::preallocate(&file, preallocate_bytes)
        .map_err(|source| StorageError::io("fallocate", &path, source))?;
    Ok(file)
}

/// Deletes a segment's log and index files; the caller fsyncs the dir.
pub(crate) fn delete_segment_files(dir: &Path, base_offset: u64) -> Result<(), StorageError> {
    for suffix in [
        files::LOG_SUFFIX,
        files::OFFSET_INDEX_SUFFIX,
        files::TIME_INDEX_SUFFIX,
    ] {
        files::remove_file(&files::offset_path(dir, base_offset, suffix))?;
    }
    Ok(())
}

fn drop_segments(
    dir: &Path,
    bases: &[u64],
    expected: u64,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    for &base_offset in bases {
        let path = files::offset_path(dir, base_offset, files::LOG_SUFFIX);
        let len_bytes = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        tracing::warn!(
            path = %path.display(),
            expected_base_offset = expected,
            dropped_bytes = len_bytes,
            "recovery deleted a segment after a break in the offsets"
        );
        delete_segment_files(dir, base_offset)?;
        report.segments_dropped.push(base_offset);
        report.dropped_bytes += len_bytes;
    }
    Ok(())
}

/// Index files whose segment is gone (an interrupted deletion).
fn remove_orphan_indexes(dir: &Path, bases: &[u64]) -> Result<(), StorageError> {
    for suffix in [files::OFFSET_INDEX_SUFFIX, files::TIME_INDEX_SUFFIX] {
        for offset in files::list_offsets(dir, suffix)? {
            if bases.binary_search(&offset).is_err() {
                files::remove_file(&files::offset_path(dir, offset, suffix))?;
            }
        }
    }
    Ok(())
}
