//! The write path, chosen once at startup: io_uring (a gather write linked
//! to an fdatasync when syncing, one submission) or the portable fallback
//! (a pwritev loop plus fdatasync). Both take the group's buffers as they
//! are, so batches go from the request buffers to the page cache in one
//! copy.
//!
//! `IoBackend` is the choice, shared by every log; each log opens its own
//! `IoWriter` (its own ring), owned by its single writer. Shards never wait
//! on one another's fdatasync, which is what lets group commit on several
//! shards proceed in parallel.

use std::fs::File;
use std::io::{self, IoSlice};
use std::sync::Arc;

use io_uring::IoUring;

use super::config::IoChoice;
use super::error::StorageError;
use super::sys;

/// Entries in the ring: one write and its linked fsync per submission.
const RING_ENTRIES: u32 = 8;

/// The write path chosen for all logs.
pub struct IoBackend {
    uring: bool,
}

/// One log's writer: its own ring, or pwrite.
pub(crate) struct IoWriter {
    ring: Option<IoUring>,
}

impl std::fmt::Debug for IoWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IoWriter")
            .field("name", &self.name())
            .finish()
    }
}

impl std::fmt::Debug for IoBackend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IoBackend")
            .field("name", &self.name())
            .finish()
    }
}

impl IoBackend {
    /// Sets up the write path. `Auto` falls back to pwrite when io_uring
    /// cannot be set up (the reason is logged); `Uring` then fails.
    pub fn new(choice: IoChoice) -> Result<Arc<IoBackend>, StorageError> {
        let backend = match choice {
            IoChoice::Pwrite => {
                tracing::info!("storage write path: pwrite (configured)");
                IoBackend { uring: false }
            }
            IoChoice::Uring => {
                IoUring::new(RING_ENTRIES)
                    .map_err(|source| StorageError::UringUnavailable { source })?;
                tracing::info!("storage write path: io_uring (configured)");
                IoBackend { uring: true }
            }
            IoChoice::Auto => match IoUring::new(RING_ENTRIES) {
                Ok(_) => {
                    tracing::info!("storage write path: io_uring (auto)");
                    IoBackend { uring: true }
                }
                Err(error) => {
                    tracing::warn!(%error, "io_uring unavailable; storage write path: pwrite");
                    IoBackend { uring: false }
                }
            },
        };
        Ok(Arc::new(backend))
    }

    /// "io_uring" or "pwrite".
    pub fn name(&self) -> &'static str {
        if self.uring {
            "io_uring"
        } else {
            "pwrite"
        }
    }

    /// A writer for one log. A ring that cannot be set up now (the kernel's
    /// locked-memory limit, say) degrades that log to pwrite, with a warning.
    pub(crate) fn writer(&self) -> IoWriter {
        if !self.uring {
            return IoWriter { ring: None };
        }
        match IoUring::new(RING_ENTRIES) {
            Ok(ring) => IoWriter { ring: Some(ring) },
            Err(error) => {
                tracing::warn!(%error, "cannot set up an io_uring for a log; it uses pwrite");
                IoWriter { ring: None }
            }
        }
    }
}

impl IoWriter {
    pub(crate) fn name(&self) -> &'static str {
        if self.ring.is_some() {
            "io_uring"
        } else {
            "pwrite"
        }
    }

    /// Writes all of `bufs`, in order, at `position`; with `sync`, the
    /// data is fdatasynced before this returns. `bufs` is consumed.
    pub(crate) fn write_all_at(
        &mut self,
        file: &File,
        position: u64,
        bufs: &mut [IoSlice<'_>],
        sync: bool,
    ) -> io::Result<()> {
        match &mut self.ring {
            Some(ring) => sys::uring_write_all(ring, file, position, bufs, sync),
            None => {
                sys::pwritev_all(file, position, bufs)?;
                if sync {
                    file.sync_data()?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Writes 100,000 bytes at 10 as 3,000 buffers of uneven sizes (more
    /// than one gather write takes, some empty) and reads them back.
    fn write_and_read_back(backend: &IoBackend, sync: bool) {
        let mut file = tempfile::tempfile().unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|value| value as u8).collect();
        let mut parts = Vec::new();
        let mut rest = &payload[..];
        for at in 0.. {
            if rest.is_empty() {
                break;
            }
            let (part, tail) = rest.split_at((at % 67).min(rest.len()));
            parts.push(IoSlice::new(part));
            rest = tail;
        }
        assert!(parts.len() > 2 * 1024, "more buffers than one write takes");
        let mut writer = backend.writer();
        assert_eq!(writer.name(), backend.name());
        writer.write_all_at(&file, 10, &mut parts, sync).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 10 + payload.len());
        assert_eq!(&back[10..], &payload[..]);
    }

    #[test]
    fn pwrite_writes_at_position() {
        let backend = IoBackend::new(IoChoice::Pwrite).unwrap();
        assert_eq!(backend.name(), "pwrite");
        write_and_read_back(&backend, false);
        write_and_read_back(&backend, true);
    }

    #[test]
    fn auto_picks_uring_exactly_when_uring_is_available() {
        let auto = IoBackend::new(IoChoice::Auto).unwrap();
        match IoBackend::new(IoChoice::Uring) {
            Ok(uring) => {
                assert_eq!(uring.name(), "io_uring");
                assert_eq!(auto.name(), "io_uring");
                write_and_read_back(&uring, false);
                write_and_read_back(&uring, true);
            }
            Err(StorageError::UringUnavailable { .. }) => assert_eq!(auto.name(), "pwrite"),
            Err(other) => panic!("unexpected error {other}"),
        }
        write_and_read_back(&auto, true);
    }

    #[test]
    fn write_to_read_only_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        for choice in [IoChoice::Auto, IoChoice::Pwrite] {
            let backend = IoBackend::new(choice).unwrap();
            assert!(backend
                .writer()
                .write_all_at(&file, 0, &mut [IoSlice::new(b"data")], true)
                .is_err());
        }
    }
}
