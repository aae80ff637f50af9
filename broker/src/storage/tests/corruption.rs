//! Damage on disk: a flipped byte, a torn tail, a corrupt index or a
//! damaged sealed segment is found at recovery or on read, is never
//! served, and takes no more than the damaged batches with it.

use super::*;

#[test]
fn flipped_byte_truncates_at_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 30);
    let last_segment = segment_paths(dir.path()).pop().unwrap();
    let segment_bytes = log
        .reader()
        .state
        .read()
        .segments
        .last()
        .unwrap()
        .written_bytes;
    let base: u64 = last_segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    drop(log);
    let mut bytes = std::fs::read(&last_segment).unwrap();
    let middle = (segment_bytes / 2) as usize;
    bytes[middle] ^= 0x55;
    std::fs::write(&last_segment, &bytes).unwrap();

    let (log, report) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(report.truncations.len(), 1, "{report:?}");
    let cut = &report.truncations[0];
    assert_eq!(cut.path, last_segment);
    assert!(cut.position <= middle as u64 && cut.position > 0);
    assert!(cut.dropped_bytes >= segment_bytes - cut.position);
    assert!(log.written_offset() > base && log.written_offset() < 90);
    let batches = read_all(&log.reader(), log.written_offset());
    assert_eq!(batches.last().unwrap().0 + 3, log.written_offset());
}

/// Damages the third batch of the first (sealed, mapped) segment in place,
/// `at` bytes into the batch, and checks what reads make of it.
fn damage_third_batch_and_read(at: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 30);
    let end = log.written_offset();
    let first_segment = segment_paths(dir.path()).remove(0);
    let third_position = {
        let chunk = log.reader().read(0, 1, end).unwrap();
        let first_size = chunk.bytes.len();
        let second = log.reader().read(chunk.next_offset, 1, end).unwrap();
        first_size + second.bytes.len()
    };
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&first_segment)
            .unwrap();
        file.write_all_at(&[0xEE], (third_position + at) as u64)
            .unwrap();
    }
    let whole = log.reader().read(0, usize::MAX, end).unwrap();
    assert_eq!(
        whole.bytes.len(),
        third_position,
        "a read must stop before the damaged batch"
    );
    let damaged_offset = whole.next_offset;
    match log.reader().read(damaged_offset, usize::MAX, end) {
        Err(StorageError::Corrupt { position, .. }) => assert_eq!(position, third_position as u64),
        other => panic!("expected a corrupt-batch error, got {other:?}"),
    }
}

#[test]
fn damage_after_recovery_is_never_served() {
    damage_third_batch_and_read(70);
}

#[test]
fn damaged_base_offset_is_never_served_nor_mistaken_for_the_end() {
    // The base offset lies outside the checksum; density catches it.
    damage_third_batch_and_read(2);
}

#[test]
fn damage_in_a_sealed_segment_keeps_the_later_segments_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 60);
    let end = log.written_offset();
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 3, "need sealed segments: {segments:?}");
    let second_base: u64 = segments[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The last batch of the first segment: where its index checkpoint
    // points, so recovery reads it.
    let last_batch_position = {
        let mut position = 0u64;
        let mut offset = 0u64;
        let mut last = 0u64;
        while offset < second_base {
            let chunk = log.reader().read(offset, 1, end).unwrap();
            last = position;
            position += chunk.bytes.len() as u64;
            offset = chunk.next_offset;
        }
        last
    };
    log.close().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segments[0])
            .unwrap();
        file.write_all_at(&[0xEE], last_batch_position + 70)
            .unwrap();
    }
    let (log, report) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(
        log.written_offset(),
        end,
        "later segments survive: {report:?}"
    );
    assert!(report.segments_dropped.is_empty(), "{report:?}");
    assert_eq!(segment_paths(dir.path()).len(), segments.len());
    let after = log.reader().read(second_base, usize::MAX, end).unwrap();
    assert!(!after.bytes.is_empty(), "the next segment is served");
    let before = log.reader().read(0, usize::MAX, end).unwrap();
    assert_eq!(
        before.bytes.len() as u64,
        last_batch_position,
        "served up to the damage"
    );
    assert!(matches!(
        log.reader().read(before.next_offset, usize::MAX, end),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn torn_tail_keeps_whole_batches_and_garbage_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 4);
    let one_batch = log.reader().read(0, 1, 3).unwrap().bytes.len() as u64;
    drop(log);
    let path = segment_paths(dir.path()).pop().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(4 * one_batch - 7).unwrap(); // Torn last batch.
    drop(file);
    let (mut log, report) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(log.written_offset(), 9);
    assert_eq!(report.truncations[0].position, 3 * one_batch);
    fill(&mut log, 1);
    assert_eq!(read_all(&log.reader(), 12).len(), 4);
    drop(log);
    // Garbage after the end, then zeros.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(4 * one_batch + 10) as usize] = 0xAB;
    std::fs::write(&path, &bytes).unwrap();
    let (log, report) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(log.written_offset(), 12);
    assert_eq!(report.truncations.len(), 1);
    assert_eq!(report.truncations[0].dropped_bytes, 11);
    drop(log);
    let (_, report) = open(dir.path(), IoChoice::Pwrite);
    assert!(
        report.truncations.is_empty(),
        "zeros after the end are not a truncation"
    );
}

#[test]
fn corrupt_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 40);
    log.close().unwrap();
    let index_path = segment_paths(dir.path())[0].with_extension("index");
    let mut bytes = std::fs::read(&index_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&index_path, &bytes).unwrap();
    let (log, report) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(report.indexes_rebuilt, 1);
    assert_eq!(log.written_offset(), 120);
    assert_eq!(read_all(&log.reader(), 120).len(), 40);
    assert_ne!(
        std::fs::read(&index_path).unwrap(),
        bytes,
        "rebuilt index persisted"
    );
}

#[test]
fn a_damaged_sealed_segment_does_not_take_later_segments_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 60);
    let end = log.written_offset();
    log.close().unwrap();
    let paths = segment_paths(dir.path());
    assert!(paths.len() >= 3);
    // Damage the first batch of the second segment and lose its index, so
    // recovery scans it from the start.
    let mut bytes = std::fs::read(&paths[1]).unwrap();
    bytes[20] ^= 0xFF;
    std::fs::write(&paths[1], &bytes).unwrap();
    std::fs::remove_file(paths[1].with_extension("index")).unwrap();
    let (log, report) = open(dir.path(), IoChoice::Pwrite);
    let second_base: u64 = paths[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(log.written_offset(), end, "{report:?}");
    assert!(report.segments_dropped.is_empty(), "{report:?}");
    assert!(report.truncations.is_empty(), "{report:?}");
    assert_eq!(segment_paths(dir.path()).len(), paths.len());
    assert_eq!(
        read_all(&log.reader(), second_base).len() as u64,
        second_base / 3
    );
    assert!(matches!(
        log.reader().read(second_base, usize::MAX, end),
        Err(StorageError::Corrupt { .. })
    ));
    let third_base: u64 = paths[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!log
        .reader()
        .read(third_base, usize::MAX, end)
        .unwrap()
        .bytes
        .is_empty());
}

/// Regression: an empty segment file starting inside an earlier segment
/// (what a roll that failed after creating its file leaves, when appends
/// then went on in the old segment) was taken for a break in the offsets,
/// and recovery deleted every segment after it.
#[test]
fn an_empty_file_a_failed_roll_left_does_not_cut_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    fill(&mut log, 60);
    let end = log.written_offset();
    drop(log);
    let bases = files::list_offsets(dir.path(), files::LOG_SUFFIX).unwrap();
    assert!(bases.len() >= 3, "rolled: {bases:?}");
    let stray_base = bases[1] - 1;
    let stray = files::offset_path(dir.path(), stray_base, files::LOG_SUFFIX);
    std::fs::write(&stray, vec![0; 4096]).unwrap();
    let (log, report) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(report.strays_removed, vec![stray_base]);
    assert!(report.segments_dropped.is_empty(), "{report:?}");
    assert_eq!(log.written_offset(), end);
    assert_eq!(read_all(&log.reader(), end).len(), 60);
    assert!(!stray.exists());
}
