//! Pooled logs: empty shard directories made durable ahead of time, so a
//! topology change can take one for a successor without waiting for a
//! single fsync (see `streams::pool`).
//!
//! A pooled directory holds exactly one file, segment 0, preallocated and
//! fsynced together with the directory before the pool offers it. Taking
//! it (`adopt`) opens and maps that segment; nothing is scanned, written or
//! synced, because nothing can have been written to it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::error::StorageError;
use super::files;
use super::index::SegmentIndex;
use super::mmap::SegmentMap;
use super::recovery::{self, Recovered, RecoveryReport};
use super::segment::Segment;

/// Creates a pooled log in `dir` (which must not exist): segment 0 of
/// `preallocate_bytes`, the file and `dir` fsynced. The caller makes
/// `dir`'s own entry durable. A successor the pool could not supply is
/// made this way in its shard directory.
pub fn create_pooled(dir: &Path, preallocate_bytes: u64) -> Result<(), StorageError> {
    std::fs::create_dir(dir).map_err(|source| StorageError::io("create dir", dir, source))?;
    let file = recovery::create_segment_file(dir, 0, preallocate_bytes.max(1))?;
    file.sync_all().map_err(|source| {
        StorageError::io(
            "fsync",
            files::offset_path(dir, 0, files::LOG_SUFFIX),
            source,
        )
    })?;
    files::sync_dir(dir)
}

/// Checks that `dir` is a pooled log: segment 0, of at least one byte, and
/// nothing else. Returns the segment's length.
pub fn check_pooled(dir: &Path) -> Result<u64, StorageError> {
    let path = files::offset_path(dir, 0, files::LOG_SUFFIX);
    let mut names = 0;
    let entries =
        std::fs::read_dir(dir).map_err(|source| StorageError::io("read_dir", dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::io("read_dir", dir, source))?;
        names += 1;
        if entry.path() != path {
            return Err(not_pooled(dir, "holds a file besides segment 0"));
        }
    }
    if names != 1 {
        return Err(not_pooled(dir, "has no segment 0"));
    }
    let len_bytes = std::fs::metadata(&path)
        .map_err(|source| StorageError::io("stat", &path, source))?
        .len();
    if len_bytes == 0 {
        return Err(not_pooled(dir, "segment 0 is not preallocated"));
    }
    Ok(len_bytes)
}

/// Opens the pooled log in `dir` for writing, as recovery would leave an
/// empty log, without reading or syncing anything.
pub(crate) fn adopt(dir: &Path) -> Result<Recovered, StorageError> {
    let len_bytes = check_pooled(dir)?;
    let path = files::offset_path(dir, 0, files::LOG_SUFFIX);
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| StorageError::io("open", &path, source))?;
    let map = SegmentMap::new(&file, len_bytes, &path)?;
    let segment = Segment {
        base_offset: 0,
        next_offset: 0,
        written_bytes: 0,
        max_timestamp_ms: i64::MIN,
        index: SegmentIndex::new(0),
        map,
    };
    Ok(Recovered {
        segments: vec![segment],
        active_file: file,
        report: RecoveryReport {
            segments_kept: 1,
            ..RecoveryReport::default()
        },
    })
}

fn not_pooled(dir: &Path, reason: &str) -> StorageError {
    StorageError::Corrupt {
        path: dir.to_owned(),
        position: 0,
        reason: format!("not a pooled log: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_log_checks_and_anything_else_does_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("entry");
        create_pooled(&dir, 1 << 20).unwrap();
        assert_eq!(check_pooled(&dir).unwrap(), 1 << 20);
        assert!(create_pooled(&dir, 1 << 20).is_err(), "it exists already");
        std::fs::write(dir.join("stray"), b"x").unwrap();
        assert!(check_pooled(&dir).is_err());
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(check_pooled(&empty).is_err());
        assert!(adopt(&empty).is_err());
    }
}
