//! A log's pages after they are written: their writeback, started early,
//! and how much of the newest data stays cached.
//!
//! Writeback: a `write` stream's data would otherwise wait for the
//! periodic fdatasync (or the kernel's 30 s expiry) and then go to disk
//! all at once, a second's worth per shard, while appends stall around it:
//! 1 KiB `max` runs swung between 465 and 739 MB/s from one second to the
//! next and averaged 611-615. Starting writeback every few MiB written
//! spreads it out (RocksDB's `bytes_per_sync` does the same): 710-760 MB/s
//! every second, 726-734 on average (BENCHMARKS.md).
//!
//! The window: dropping a log's older pages from the page cache once they
//! are durable (`LogConfig::cache_window_bytes`; 0 leaves the cache to the
//! kernel). Why: a log that only grows also grows the page cache, and
//! every new page is memory the kernel takes from its free lists. On a
//! virtual machine whose host reclaims free guest memory (balloon, free
//! page reporting), each such page is faulted in on the host at first
//! touch, and buffered writes then run at that rate, not the disk's: 291
//! MB/s against 1,204 MB/s with O_DIRECT on the same disk (BENCHMARKS.md).
//! Dropping what tail readers have left behind hands its pages back to the
//! free lists, where the next writes take them again while they are warm.
//!
//! Readers are unaffected beyond speed: a dropped page is read from disk
//! again on its next access. Only data that is durable (fdatasynced) is
//! dropped, and dropping is advice that may fail without any harm.

use std::fs::File;

use super::mmap::SegmentMap;
use super::sys;

/// Dropping waits until this much more is due, so that a group commit of
/// a few KiB does not cost two system calls.
const DROP_STEP_BYTES: u64 = 4 << 20;
/// Writeback of unsynced data starts once this much more is written.
const WRITEBACK_STEP_BYTES: u64 = 8 << 20;
/// Ranges start this aligned, at or before where the last one ended: the
/// kernel drops only whole pages, so a page the last range ended inside
/// would stay cached. A multiple of every page size Linux uses.
const DROP_ALIGN_BYTES: u64 = 64 << 10;

/// The segment the log rolled away from, until its cached tail is dropped.
/// Its file stays open until then: if retention deletes the segment
/// meanwhile, its space comes back at most a window of appends later.
#[derive(Debug)]
struct Cooling {
    file: File,
    map: SegmentMap,
    written_bytes: u64,
    dropped_to: u64,
}

/// One log's pages; the log tells it about writes, durable data and rolls.
#[derive(Debug)]
pub(crate) struct LogPages {
    window_bytes: u64,
    previous: Option<Cooling>,
    /// Everything of the active segment below this was dropped.
    active_dropped_to: u64,
    /// Writeback was started for the active segment below this.
    writeback_from: u64,
}

impl LogPages {
    pub(crate) fn new(window_bytes: u64) -> LogPages {
        LogPages {
            window_bytes,
            previous: None,
            active_dropped_to: 0,
            writeback_from: 0,
        }
    }

    /// The active segment's first `written_bytes` are written, not synced:
    /// starts their writeback once a step of them waits.
    pub(crate) fn written(&mut self, file: &File, written_bytes: u64) {
        if written_bytes >= self.writeback_from + WRITEBACK_STEP_BYTES {
            let len = written_bytes - self.writeback_from;
            if let Err(error) = sys::start_writeback(file, self.writeback_from, len) {
                tracing::debug!(%error, "starting writeback of log pages failed");
            }
            self.writeback_from = written_bytes;
        }
    }

    /// The active segment's first `written_bytes` are durable: drops what
    /// lies more than the window behind its end, here or in the segment
    /// before it.
    pub(crate) fn durable(&mut self, file: &File, map: &SegmentMap, written_bytes: u64) {
        if self.window_bytes == 0 {
            return;
        }
        if written_bytes >= self.window_bytes {
            if let Some(previous) = self.previous.take() {
                previous.drop_rest();
            }
            let to = written_bytes - self.window_bytes;
            if to >= self.active_dropped_to + DROP_STEP_BYTES {
                drop_range(file, map, self.active_dropped_to, Some(to));
                self.active_dropped_to = to;
            }
        } else if let Some(previous) = &mut self.previous {
            let kept_there = self.window_bytes - written_bytes;
            let to = previous.written_bytes.saturating_sub(kept_there);
            if to >= previous.dropped_to + DROP_STEP_BYTES {
                previous.drop_to(to);
            }
        }
    }

    /// The log rolled: `file` and `map`, `written_bytes` long and durable,
    /// are now the segment before the active one.
    pub(crate) fn rolled(&mut self, file: File, map: SegmentMap, written_bytes: u64) {
        self.writeback_from = 0;
        if self.window_bytes == 0 {
            return;
        }
        if let Some(older) = self.previous.take() {
            older.drop_rest();
        }
        self.previous = Some(Cooling {
            file,
            map,
            written_bytes,
            dropped_to: self.active_dropped_to,
        });
        self.active_dropped_to = 0;
    }
}

impl Cooling {
    fn drop_to(&mut self, to: u64) {
        if to > self.dropped_to {
            drop_range(&self.file, &self.map, self.dropped_to, Some(to));
            self.dropped_to = to;
        }
    }

    /// Drops everything from `dropped_to` to the end of the file, the
    /// partly written last page and any page past it included.
    fn drop_rest(self) {
        drop_range(&self.file, &self.map, self.dropped_to, None);
    }
}

/// Unmaps `start..end` (`None`: to the end of the file) from this
/// process's map (pages a reader touched stay cached while mapped) and
/// drops them from the page cache.
fn drop_range(file: &File, map: &SegmentMap, start: u64, end: Option<u64>) {
    let start = start - start % DROP_ALIGN_BYTES;
    let map_len = map.len() as u64;
    let map_end = end.map_or(map_len, |end| end.min(map_len));
    if start < map_end {
        map.release(start as usize, map_end as usize);
    }
    // posix_fadvise takes a length of 0 for "to the end of the file".
    let len = end.map_or(0, |end| end - start);
    if let Err(error) = sys::drop_cached(file, start, len) {
        tracing::debug!(%error, "dropping cached log pages failed");
    }
}
