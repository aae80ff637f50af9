//! Crash-safe state files: each is rewritten whole through a temp file,
//! fsync, rename and a directory fsync, so a crash leaves either the old or
//! the new file. A reader checks magic, version, length and checksum and
//! never trusts a length it has not bounded.
//!
//! Layout (little endian):
//!
//! ```text
//! 0      4       6      8          16        20
//! | SGAS | ver u16 | kind u16 | len u64 | crc32c u32 | body (len bytes) |
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::AutoscalerError;

const MAGIC: [u8; 4] = *b"SGAS";
const VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 20;
/// No state file is larger; a length above this is corruption.
pub const BODY_BYTES_MAX: u64 = 256 << 20;

/// What a state file holds; a file of another kind is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    History = 1,
    Hints = 2,
    Decisions = 3,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> AutoscalerError {
    AutoscalerError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

pub fn encode(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(kind as u16).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

pub fn decode<'a>(path: &Path, kind: Kind, bytes: &'a [u8]) -> Result<&'a [u8], AutoscalerError> {
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(
            path,
            format!("{} bytes, shorter than a header", bytes.len()),
        ));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt(path, "bad magic"));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(corrupt(path, format!("unknown version {version}")));
    }
    let found_kind = u16::from_le_bytes([bytes[6], bytes[7]]);
    if found_kind != kind as u16 {
        return Err(corrupt(
            path,
            format!("kind {found_kind}, expected {}", kind as u16),
        ));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8-byte slice"));
    if len > BODY_BYTES_MAX || len != (bytes.len() - HEADER_BYTES) as u64 {
        return Err(corrupt(
            path,
            format!(
                "body length {len}, file holds {}",
                bytes.len() - HEADER_BYTES
            ),
        ));
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4-byte slice"));
    let body = &bytes[HEADER_BYTES..];
    if crc32c::crc32c(body) != crc {
        return Err(corrupt(path, "checksum mismatch"));
    }
    Ok(body)
}

/// Writes `body` to `path` atomically and durably.
pub fn write(path: &Path, kind: Kind, body: &[u8]) -> Result<(), AutoscalerError> {
    let dir = path.parent().ok_or_else(|| {
        AutoscalerError::invalid("state_dir", "a state file needs a parent directory")
    })?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&encode(kind, body))?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads a state file; `Ok(None)` when it does not exist yet.
pub fn read(path: &Path, kind: Kind) -> Result<Option<Vec<u8>>, AutoscalerError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(Some(decode(path, kind, &bytes)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_golden() {
        let bytes = encode(Kind::Hints, b"ab");
        assert_eq!(&bytes[..4], b"SGAS");
        assert_eq!(&bytes[4..8], &[1, 0, 2, 0]);
        assert_eq!(&bytes[8..16], &2u64.to_le_bytes());
        assert_eq!(&bytes[16..20], &crc32c::crc32c(b"ab").to_le_bytes());
        assert_eq!(bytes.len(), HEADER_BYTES + 2);
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        assert!(read(&path, Kind::History).expect("read").is_none());
        write(&path, Kind::History, b"hello").expect("write");
        assert_eq!(
            read(&path, Kind::History).expect("read").as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[test]
    fn flipped_byte_is_a_checksum_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        write(&path, Kind::Decisions, b"decisions").expect("write");
        let mut bytes = fs::read(&path).expect("read back");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).expect("corrupt");
        let err = read(&path, Kind::Decisions).expect_err("corruption detected");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn truncated_and_wrong_kind_files_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        write(&path, Kind::Hints, b"hints").expect("write");
        assert!(read(&path, Kind::History).is_err());
        let bytes = fs::read(&path).expect("read back");
        fs::write(&path, &bytes[..bytes.len() - 2]).expect("truncate");
        let err = read(&path, Kind::Hints).expect_err("truncation detected");
        assert!(err.to_string().contains("length"), "{err}");
    }
}
