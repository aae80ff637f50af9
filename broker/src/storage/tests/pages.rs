//! A log's pages (`pages`): unsynced data goes to writeback in steps;
//! with the page-cache window, durable data more than the window
//! behind the end leaves the page cache, pages a reader mapped included;
//! the newest stays; data not yet synced and logs without a window keep
//! theirs; every byte still reads back, and a read behind the window
//! brings in what follows it.

use std::fs::File;

use super::*;

const WINDOW: u64 = 6 << 20;
/// About 64 KiB per batch: a few hundred batches fill the tests' logs.
const VALUE_BYTES: usize = 64 << 10;
const BIG_BATCH_BYTES: usize = 1 << 20;

fn config(window: u64, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        preallocate_bytes: segment_bytes,
        max_batch_bytes: BIG_BATCH_BYTES,
        cache_window_bytes: window,
        ..LogConfig::default()
    }
}

/// A fresh log in a temporary directory, on the pwrite path.
fn open_log(window: u64, segment_bytes: u64) -> (tempfile::TempDir, ShardLog) {
    let dir = tempfile::tempdir().unwrap();
    let io = IoBackend::new(IoChoice::Pwrite).unwrap();
    let (log, _) = ShardLog::open(dir.path(), config(window, segment_bytes), io).unwrap();
    (dir, log)
}

/// A batch of one record whose value is `seq` repeated.
fn big_batch(seq: u64) -> Checked {
    let mut builder = BatchBuilder::new(0, 0, 0);
    builder.push(0, None, &vec![seq as u8; VALUE_BYTES], &[]);
    Checked::new(builder.finish(), BIG_BATCH_BYTES).expect("a built batch checks")
}

/// Appends batches `from..to` in groups of 8, synced or not.
fn append_range(log: &mut ShardLog, from: u64, to: u64, sync: bool) {
    let seqs: Vec<u64> = (from..to).collect();
    for group in seqs.chunks(8) {
        let batches: Vec<Checked> = group.iter().map(|seq| big_batch(*seq)).collect();
        log.append(&batches, sync).unwrap();
    }
}

/// Fraction of the pages of `start..end` of `path` in the page cache.
fn cached_fraction(path: &Path, start: u64, end: u64) -> f64 {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    let pages = sys::cached_pages(&file, len).unwrap();
    let (first, last) = ((start >> 12) as usize, (end >> 12) as usize);
    let range = &pages[first..last.min(pages.len())];
    range.iter().filter(|cached| **cached).count() as f64 / range.len() as f64
}

/// Every batch reads back with the value it was written with.
fn assert_reads_back(log: &ShardLog, count: u64) {
    let reader = log.reader();
    let mut offset = 0;
    while offset < count {
        let chunk = reader.read(offset, 4 << 20, count).unwrap();
        for stored in split_batches(&chunk.bytes, BIG_BATCH_BYTES).unwrap() {
            let value = stored.records().remove(0).value;
            assert_eq!(
                value,
                vec![stored.header.base_offset as u8; VALUE_BYTES],
                "batch {} reads back",
                stored.header.base_offset
            );
            offset = stored.header.next_offset();
        }
    }
    assert_eq!(offset, count);
}

#[test]
fn synced_data_behind_the_window_leaves_the_cache_and_reads_back() {
    let (dir, mut log) = open_log(WINDOW, 256 << 20);
    append_range(&mut log, 0, 64, true);
    // A tail reader maps the first 4 MiB; the window must drop them anyway.
    assert_reads_back(&log, 64);
    append_range(&mut log, 64, 320, true);
    let path = &segment_paths(dir.path())[0];
    let end = log.size_bytes();
    let kept_from = end - WINDOW;
    // Dropping goes in steps, so up to one step more than the window stays.
    let dropped = cached_fraction(path, 0, kept_from - (4 << 20));
    let kept = cached_fraction(path, kept_from, end);
    assert_eq!(dropped, 0.0, "data behind the window left the cache");
    assert!(kept > 0.9, "the newest window stays cached: {kept}");
    assert_reads_back(&log, 320);
}

#[test]
fn rolled_segments_leave_the_cache_once_the_window_moves_past_them() {
    let (dir, mut log) = open_log(WINDOW, 8 << 20);
    append_range(&mut log, 0, 400, true);
    let paths = segment_paths(dir.path());
    assert!(paths.len() >= 4, "the log rolled: {paths:?}");
    for path in &paths[..paths.len() - 2] {
        assert_eq!(
            cached_fraction(path, 0, 8 << 20),
            0.0,
            "{path:?} left the cache"
        );
    }
    assert_reads_back(&log, 400);
}

#[test]
fn unsynced_data_stays_cached_until_a_detached_sync_covers_it() {
    let (dir, mut log) = open_log(WINDOW, 256 << 20);
    append_range(&mut log, 0, 320, false);
    let path = &segment_paths(dir.path())[0];
    assert!(
        cached_fraction(path, 0, 8 << 20) > 0.9,
        "nothing is dropped before it is durable"
    );
    let job = log.sync_job().unwrap().expect("unsynced data");
    log.synced(job.run().unwrap());
    let end = log.size_bytes();
    assert_eq!(cached_fraction(path, 0, end - WINDOW - (4 << 20)), 0.0);
    assert_reads_back(&log, 320);
}

#[test]
fn without_a_window_the_cache_is_left_alone() {
    let (dir, mut log) = open_log(0, 256 << 20);
    append_range(&mut log, 0, 320, true);
    let path = &segment_paths(dir.path())[0];
    assert!(cached_fraction(path, 0, 8 << 20) > 0.9);
}

/// A reader behind the window gets the data after its chunk read ahead,
/// so catching up does not fault the segment in a few pages at a time.
/// The range checked lies beyond what the kernel reads around a fault
/// (`read_ahead_kb`, 8 MiB here, half of it ahead).
#[test]
fn a_read_behind_the_window_prefetches_what_follows_it() {
    let (dir, mut log) = open_log(WINDOW, 256 << 20);
    append_range(&mut log, 0, 640, true);
    let path = &segment_paths(dir.path())[0];
    let chunk = log.reader().read(100, 64 << 10, 640).unwrap();
    let position = (log.reader().read(0, 64 << 10, 640).unwrap().bytes.len() * 100) as u64;
    let (from, to) = (position + (5 << 20), position + (8 << 20));
    assert!(
        to < log.size_bytes() - WINDOW - (4 << 20),
        "checked where dropped"
    );
    assert!(chunk.bytes.len() < 1 << 20);
    // The read-ahead is asynchronous: wait for it, boundedly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cached_fraction(path, from, to) < 0.9 {
        assert!(
            std::time::Instant::now() < deadline,
            "5-8 MiB after the chunk were not read ahead: {}",
            cached_fraction(path, from, to)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Unsynced data is handed to writeback as it is written, not only at the
/// next sync. (Left alone, dirty pages wait up to 30 s,
/// `dirty_expire_centisecs`.)
#[test]
fn unsynced_data_is_written_back_in_steps() {
    let (dir, mut log) = open_log(0, 256 << 20);
    append_range(&mut log, 0, 320, false);
    let path = &segment_paths(dir.path())[0];
    let file = File::open(path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let unclean = sys::unclean_pages(&file, 0, 8 << 20)
            .expect("cachestat (Linux 6.5 or later) counts dirty pages");
        if unclean == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{unclean} pages of the first 8 MiB are still dirty"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_reads_back(&log, 320);
}
