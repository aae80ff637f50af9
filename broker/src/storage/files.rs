//! File naming in a shard directory and the crash-safe file primitives
//! (fsync a directory, write-temp-fsync-rename).
//!
//! A shard directory holds, per segment, `<base_offset:020>.log`,
//! `<base>.index` and `<base>.timeindex`, plus producer snapshots
//! `<offset:020>.producers`. Temporary files end in `.tmp` and are removed
//! at open.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::StorageError;

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
pub(crate) const PRODUCERS_SUFFIX: &str = "producers";
const TEMP_SUFFIX: &str = "tmp";

/// `<dir>/<offset:020>.<suffix>`.
pub(crate) fn offset_path(dir: &Path, offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{offset:020}.{suffix}"))
}

/// The offset a file name encodes if it is `<20 digits>.<suffix>`.
pub(crate) fn parse_offset_name(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Sorted offsets of every `<offset>.<suffix>` file in `dir`.
pub(crate) fn list_offsets(dir: &Path, suffix: &str) -> Result<Vec<u64>, StorageError> {
    let mut offsets = Vec::new();
    let entries = fs::read_dir(dir).map_err(|source| StorageError::io("read_dir", dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::io("read_dir", dir, source))?;
        if let Some(offset) = entry
            .file_name()
            .to_str()
            .and_then(|name| parse_offset_name(name, suffix))
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Removes leftover `*.tmp` files of an interrupted atomic write.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<(), StorageError> {
    let entries = fs::read_dir(dir).map_err(|source| StorageError::io("read_dir", dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::io("read_dir", dir, source))?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == TEMP_SUFFIX) {
            remove_file(&path)?;
        }
    }
    Ok(())
}

/// fsyncs a directory so created, renamed and deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| StorageError::io("fsync dir", dir, source))
}

/// Writes `bytes` to `path` crash-safely: temp file, fsync, rename. The
/// caller fsyncs the directory (once for several files).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".");
    temp.push(TEMP_SUFFIX);
    let temp = PathBuf::from(temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|source| StorageError::io("create", &temp, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| StorageError::io("write", &temp, source))?;
    fs::rename(&temp, path).map_err(|source| StorageError::io("rename", path, source))
}

/// Reads a whole file of at most `max_bytes`; `Ok(None)` if it is missing.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError> {
    let len = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StorageError::io("stat", path, source)),
    };
    if len > max_bytes {
        return Err(StorageError::Corrupt {
            path: path.to_owned(),
            position: 0,
            reason: format!("file of {len} bytes exceeds the bound {max_bytes}"),
        });
    }
    fs::read(path)
        .map(Some)
        .map_err(|source| StorageError::io("read", path, source))
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove_file(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StorageError::io("remove", path, source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let path = offset_path(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_offset_name(name, LOG_SUFFIX), Some(42));
        assert_eq!(parse_offset_name(name, OFFSET_INDEX_SUFFIX), None);
        assert_eq!(parse_offset_name("42.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_offset_name("0000000000000000004x.log", LOG_SUFFIX),
            None
        );
    }

    #[test]
    fn write_atomic_replaces_and_read_bounded_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two!").unwrap();
        assert_eq!(read_bounded(&path, 4).unwrap().unwrap(), b"two!");
        assert!(read_bounded(&path, 3).is_err());
        assert!(read_bounded(&dir.path().join("missing"), 3)
            .unwrap()
            .is_none());
    }
}
