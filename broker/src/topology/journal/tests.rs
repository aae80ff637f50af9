//! Records: encoding, corruption, applying; the journal: replay, stale
//! records after a compaction, retraction.

use super::*;
use crate::storage::ProducerKey;
use crate::topology::meta::test_settings;
use crate::topology::{plan, Change};

fn split_record(meta: &StreamMeta, shard: u32, end: u64) -> Record {
    let parent = &meta.shards[shard as usize];
    let at = parent.hash_start + (parent.hash_end - parent.hash_start) / 2 + 1;
    let plan = plan(meta, &Change::Split { shard, at }, 1).unwrap();
    Record {
        epoch: meta.epoch + 1,
        sealed: vec![(shard, end)],
        created: plan
            .created
            .into_iter()
            .map(|shard| Claim {
                slot: Some(format!("slot-{}", shard.id)),
                shard,
            })
            .collect(),
        producers: [(
            ProducerKey {
                producer_id: 3,
                origin_shard: shard,
            },
            9,
        )]
        .into_iter()
        .collect(),
    }
}

#[test]
fn a_record_round_trips_and_any_flipped_byte_ends_the_journal() {
    let meta = StreamMeta::new("s", test_settings(), 1);
    let record = split_record(&meta, 0, 5);
    let bytes = record.encode();
    assert_eq!(
        Record::decode(&bytes).unwrap(),
        Found::Record(record.clone(), bytes.len())
    );
    for at in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x01;
        assert_eq!(Record::decode(&corrupt), Ok(Found::End), "flip at {at}");
    }
    for len in 0..bytes.len() {
        assert_eq!(
            Record::decode(&bytes[..len]),
            Ok(Found::End),
            "cut at {len}"
        );
    }
    let next = record.apply(&meta).unwrap();
    assert_eq!(next.epoch, 2);
    assert_eq!(next.shards[0].sealed_at, Some(5));
    assert_eq!(next.next_shard_id, 3);
}

#[test]
fn a_record_of_an_unknown_version_is_refused() {
    let meta = StreamMeta::new("s", test_settings(), 1);
    let mut bytes = split_record(&meta, 0, 5).encode();
    bytes[4] = 9;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[..RECORD_CRC_AT]),
        &bytes[RECORD_HEADER_BYTES..],
    );
    bytes[RECORD_CRC_AT..RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    let err = Record::decode(&bytes).unwrap_err();
    assert!(err.contains("version 9"), "{err}");
}

#[test]
fn a_record_that_does_not_continue_the_metadata_is_refused() {
    let meta = StreamMeta::new("s", test_settings(), 2);
    let record = split_record(&meta, 0, 5);
    let after = record.apply(&meta).unwrap();
    let err = record.apply(&after).unwrap_err();
    assert!(err.contains("epoch"), "{err}");
    let mut sealed_twice = split_record(&after, 1, 5);
    sealed_twice.sealed = vec![(0, 5)];
    let err = sealed_twice.apply(&after).unwrap_err();
    assert!(err.contains("not open"), "{err}");
    let mut reordered = split_record(&after, 1, 5);
    reordered.created.reverse();
    let err = reordered.apply(&after).unwrap_err();
    assert!(err.contains("out of order"), "{err}");
}

#[test]
fn replay_applies_records_in_order_and_ignores_those_before_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let meta = StreamMeta::new("s", test_settings(), 1);
    let mut journal = Journal::create(dir.path()).unwrap();
    let first = split_record(&meta, 0, 5);
    let second_meta = first.apply(&meta).unwrap();
    let second = split_record(&second_meta, 1, 0);
    journal.append(&first).unwrap();
    journal.append(&second).unwrap();
    let third_meta = second.apply(&second_meta).unwrap();
    let (reopened, records, replayed) = Journal::open(dir.path(), meta.clone()).unwrap();
    assert_eq!(records, vec![first.clone(), second.clone()]);
    assert_eq!(replayed, third_meta);
    assert_eq!(reopened.position(), journal.position());
    // Compacted at the second record's epoch: both are stale now, and
    // a later record written over the first stops before the second.
    let mut journal = reopened;
    journal.settled(true);
    journal.compacted();
    let (_, records, replayed) = Journal::open(dir.path(), third_meta.clone()).unwrap();
    assert!(records.is_empty());
    assert_eq!(replayed, third_meta);
    let fourth = split_record(&third_meta, 2, 1);
    journal.append(&fourth).unwrap();
    let (_, records, _) = Journal::open(dir.path(), third_meta).unwrap();
    assert_eq!(records, vec![fourth]);
}

#[test]
fn a_retracted_record_is_not_replayed_and_its_place_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = StreamMeta::new("s", test_settings(), 1);
    let mut journal = Journal::create(dir.path()).unwrap();
    let record = split_record(&meta, 0, 5);
    journal.append(&record).unwrap();
    journal.retract_last().unwrap();
    assert_eq!(journal.position(), 0);
    let (_, records, replayed) = Journal::open(dir.path(), meta.clone()).unwrap();
    assert!(records.is_empty());
    assert_eq!(replayed, meta);
    journal.append(&record).unwrap();
    let (_, records, _) = Journal::open(dir.path(), meta).unwrap();
    assert_eq!(records, vec![record]);
}
