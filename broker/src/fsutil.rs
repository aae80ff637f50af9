//! Crash-safe file primitives: write a temp file, fsync, rename, fsync the
//! directory; and the directory fsync every creation or deletion needs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Makes directory entries (creations, renames, deletions) durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `contents` so that a crash leaves either the old
/// file or the new one, never a mix.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    write_temp(dir, name, contents)?;
    commit_temp(dir, name)
}

/// The first half of `write_atomic`: `contents` durable in a temp file next
/// to `dir/name`, which is not touched yet. Callers that must make other
/// files durable before the replacement do that meanwhile.
pub fn write_temp(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(temp_path(dir, name))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The second half of `write_atomic`: renames the temp file over
/// `dir/name` and makes the rename durable.
pub fn commit_temp(dir: &Path, name: &str) -> std::io::Result<()> {
    fs::rename(temp_path(dir, name), dir.join(name))?;
    fsync_dir(dir)
}

fn temp_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "meta", b"one").unwrap();
        write_atomic(dir.path(), "meta", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("meta")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("meta")]);
    }
}
