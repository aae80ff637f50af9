//! Idempotent-producer state across seal-and-succeed: sequences per
//! (producer, origin shard), successors inheriting their parents' state,
//! judging appends at a sealed shard, and forwarded sub-batches.

use super::*;

fn key(producer_id: u64, origin_shard: u32) -> ProducerKey {
    ProducerKey {
        producer_id,
        origin_shard,
    }
}

fn appended(base_offset: u64) -> AppendOutcome {
    AppendOutcome::Appended { base_offset }
}

/// A piece of a batch sent to `origin_shard`, as the broker forwards it.
fn piece_from(origin_shard: u32, producer_id: u64, base_sequence: u64, records: u32) -> Checked {
    let builder = BatchBuilder::new(origin_shard, producer_id, base_sequence).forwarded();
    with_records(builder, base_sequence, records, 1)
}

const UNKNOWN_DUPLICATE: AppendOutcome = AppendOutcome::Duplicate { base_offset: None };

/// A successor as a topology change makes one: an empty pooled log
/// adopted, given its parents' state (each covering every origin), and
/// settled (the state persisted).
fn successor(dir: &Path, parents: &[ProducerState]) -> ShardLog {
    successor_inheriting(dir, &ProducerState::inherited(parents, |_, _| true))
}

fn successor_inheriting(dir: &Path, inherited: &ProducerState) -> ShardLog {
    if dir.exists() {
        std::fs::remove_dir(dir).unwrap(); // An empty temporary directory.
    }
    super::super::create_pooled(dir, 1 << 20).unwrap();
    let mut log =
        ShardLog::adopt(dir, config(), IoBackend::new(IoChoice::Pwrite).unwrap()).unwrap();
    log.inherit(inherited);
    ShardLog::persist_inherited(dir, inherited).unwrap();
    log
}

/// A sealed parent (origin 1) where producer 7 stored sequences 0..=9.
fn sealed_parent(dir: &Path) -> ShardLog {
    let (mut log, _) = open(dir, IoChoice::Pwrite);
    let outcomes = log.append(&[batch_from(1, 7, 0, 10, 1)], true).unwrap();
    assert_eq!(outcomes, vec![appended(0)]);
    log.sync().unwrap();
    log
}

#[test]
fn sequences_are_per_producer_and_origin_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    let outcomes = log
        .append(
            &[
                batch_from(1, 7, 0, 2, 1),
                batch_from(2, 7, 0, 3, 1),
                batch_from(1, 7, 2, 1, 1),
                batch_from(2, 7, 2, 1, 1),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            appended(0),
            appended(2),
            appended(5),
            AppendOutcome::OutOfOrder {
                expected_sequence: 3
            },
        ]
    );
    let state = log.producer_state();
    assert_eq!(state.len(), 2);
    assert_eq!(state.last_sequence(key(7, 1)), Some(2));
    assert_eq!(state.last_sequence(key(7, 2)), Some(2));
    drop(log); // Crash: rebuilt from the headers, keyed by origin.
    let (mut log, _) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(log.producer_state(), state);
    assert_eq!(
        log.append(
            &[batch_from(2, 7, 0, 3, 1), batch_from(1, 7, 2, 1, 1)],
            true
        )
        .unwrap(),
        vec![
            AppendOutcome::Duplicate {
                base_offset: Some(2)
            },
            AppendOutcome::Duplicate {
                base_offset: Some(5)
            },
        ]
    );
    log.close().unwrap(); // Clean: from the snapshot.
    let (log, _) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(log.producer_state(), state);
}

#[test]
fn successor_continues_inherited_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let parent = sealed_parent(&dir.path().join("x"));
    let state = parent.producer_state();
    assert_eq!(state.last_sequence(key(7, 1)), Some(9));
    let mut child = successor(&dir.path().join("c1"), std::slice::from_ref(&state));
    assert_eq!(child.written_offset(), 0);
    assert_eq!(child.producer_state(), state);
    let outcomes = child
        .append(
            &[
                batch_from(1, 7, 10, 2, 1),
                batch_from(1, 8, 100, 1, 1),
                batch_from(2, 7, 50, 1, 1),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        outcomes,
        vec![appended(0), appended(2), appended(3)],
        "continuation and unknown keys are accepted"
    );
    let mut other = successor(&dir.path().join("c2"), &[state]);
    for base_sequence in [0, 5, 9] {
        assert_eq!(
            other
                .append(&[batch_from(1, 7, base_sequence, 1, 1)], true)
                .unwrap(),
            vec![UNKNOWN_DUPLICATE],
            "sequence {base_sequence} was stored by the parent"
        );
    }
    assert_eq!(other.written_offset(), 0, "duplicates store nothing");
}

/// Regression: the successor of a merge took the highest sequence per
/// key, so where a crash had left a forwarded batch's piece in one parent
/// only, the producer's retry was a duplicate and the other piece was lost.
#[test]
fn successor_of_a_merge_takes_the_lowest_sequence_its_parents_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let left: ProducerState = [(key(7, 1), 4), (key(8, 1), 2)].into_iter().collect();
    let right: ProducerState = [(key(7, 1), 9), (key(9, 2), 0)].into_iter().collect();
    // Both parents cover origin 1; only the right one covers origin 2.
    let inherited =
        ProducerState::inherited(&[left, right], |parent, origin| origin == 1 || parent == 1);
    let mut child = successor_inheriting(dir.path(), &inherited);
    let state = child.producer_state();
    assert_eq!(state.len(), 2, "{state:?}");
    assert_eq!(state.last_sequence(key(7, 1)), Some(4));
    assert_eq!(state.last_sequence(key(9, 2)), Some(0));
    assert_eq!(
        child
            .append(
                &[
                    batch_from(1, 7, 3, 1, 1),
                    batch_from(1, 7, 5, 1, 1),
                    batch_from(1, 8, 3, 1, 1),
                    batch_from(2, 9, 0, 1, 1),
                    batch_from(2, 9, 1, 1, 1),
                ],
                true
            )
            .unwrap(),
        vec![
            UNKNOWN_DUPLICATE,
            appended(0),
            appended(1),
            UNKNOWN_DUPLICATE,
            appended(2)
        ]
    );
}

#[test]
fn successor_table_survives_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let inherited: ProducerState = [(key(7, 1), 9), (key(8, 3), 20)].into_iter().collect();
    let child = successor(dir.path(), std::slice::from_ref(&inherited));
    drop(child); // Crash right after creation.
    let (mut child, _) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(child.producer_state(), inherited);
    assert_eq!(
        child.append(&[batch_from(1, 7, 10, 2, 1)], true).unwrap(),
        vec![appended(0)]
    );
    drop(child); // Crash after a write: snapshot plus headers.
    let (mut child, _) = open(dir.path(), IoChoice::Pwrite);
    let state = child.producer_state();
    assert_eq!(state.last_sequence(key(7, 1)), Some(11));
    assert_eq!(state.last_sequence(key(8, 3)), Some(20));
    assert_eq!(
        child.append(&[batch_from(3, 8, 20, 1, 1)], true).unwrap(),
        vec![UNKNOWN_DUPLICATE]
    );
    // Enough to roll: the snapshot written at a roll keeps the inherited
    // entry; a forwarded piece may still skip a sibling's sequences.
    fill(&mut child, 60);
    assert!(segment_paths(dir.path()).len() > 1);
    drop(child);
    let (mut child, _) = open(dir.path(), IoChoice::Pwrite);
    assert_eq!(child.producer_state().last_sequence(key(8, 3)), Some(20));
    let end = child.written_offset();
    assert_eq!(
        child
            .append(&[piece_from(1, 7, 15, 1), batch_from(3, 8, 19, 1, 1)], true)
            .unwrap(),
        vec![appended(end), UNKNOWN_DUPLICATE]
    );
    assert!(matches!(
        ShardLog::adopt(
            dir.path(),
            config(),
            IoBackend::new(IoChoice::Pwrite).unwrap()
        ),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn check_sealed_agrees_with_append_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = sealed_parent(&dir.path().join("a"));
    let mut appended_to = sealed_parent(&dir.path().join("b"));
    let batches = [
        batch_from(1, 7, 0, 10, 1), // Duplicate of the last batch.
        batch_from(1, 7, 3, 2, 1),  // Older: out of order.
        batch_from(1, 7, 10, 2, 1), // Next: forwarded.
        batch_from(1, 7, 15, 1, 1), // Gap.
        batch_from(1, 7, 12, 1, 1), // Next after the forwarded one.
        batch_from(2, 7, 0, 1, 1),  // Another origin: new.
        batch(0, 0, 1, 1),          // Not idempotent.
    ];
    let before = (checked.written_offset(), checked.producer_state());
    let verdicts = checked.check_sealed(&batches);
    assert_eq!(checked.check_sealed(&batches), verdicts, "nothing changed");
    assert_eq!((checked.written_offset(), checked.producer_state()), before);
    let outcomes = appended_to.append(&batches, true).unwrap();
    assert_eq!(verdicts.len(), outcomes.len());
    for (verdict, outcome) in verdicts.iter().zip(&outcomes) {
        match verdict {
            None => assert!(matches!(outcome, AppendOutcome::Appended { .. })),
            Some(verdict) => assert_eq!(verdict, outcome),
        }
    }
    assert_eq!(
        verdicts.iter().filter(|verdict| verdict.is_none()).count(),
        4
    );
    // A retry within the call of a batch that would be forwarded.
    let retried = [batch_from(1, 7, 10, 2, 1), batch_from(1, 7, 10, 2, 1)];
    assert_eq!(
        checked.check_sealed(&retried),
        vec![None, Some(UNKNOWN_DUPLICATE)]
    );
    // Sealed: synced, and reads keep working with nothing appended again.
    checked.sync().unwrap();
    assert_eq!(checked.flushed_offset(), checked.written_offset());
    assert_eq!(
        read_all(&checked.reader(), checked.written_offset()),
        vec![(0, 10)]
    );
}

#[test]
fn forwarded_sub_batches_continue_and_retry_as_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let parent = sealed_parent(&dir.path().join("x"));
    let state = parent.producer_state();
    let mut left = successor(&dir.path().join("c1"), std::slice::from_ref(&state));
    let mut right = successor(&dir.path().join("c2"), &[state]);
    // Original batch: sequences 10..=14 (n = 5), split 2 / 3; each
    // sub-batch has base_sequence + n - k and ends at sequence 14.
    let to_left = piece_from(1, 7, 10 + 5 - 2, 2);
    let to_right = piece_from(1, 7, 10 + 5 - 3, 3);
    assert_eq!(
        left.append(std::slice::from_ref(&to_left), true).unwrap(),
        vec![appended(0)]
    );
    assert_eq!(
        right.append(std::slice::from_ref(&to_right), true).unwrap(),
        vec![appended(0)]
    );
    let duplicate_at_zero = AppendOutcome::Duplicate {
        base_offset: Some(0),
    };
    assert_eq!(
        left.append(std::slice::from_ref(&to_left), true).unwrap(),
        vec![duplicate_at_zero]
    );
    assert_eq!(
        right.append(std::slice::from_ref(&to_right), true).unwrap(),
        vec![duplicate_at_zero]
    );
    // The next original (15..=17, n = 3): whole to the left, split 1 / 2
    // at the right.
    assert_eq!(
        left.append(&[piece_from(1, 7, 15, 3)], true).unwrap(),
        vec![appended(2)]
    );
    assert_eq!(
        right
            .append(&[piece_from(1, 7, 15 + 3 - 1, 1)], true)
            .unwrap(),
        vec![appended(3)]
    );
    // Older sub-batches retried after newer ones: stored before.
    assert_eq!(
        left.append(&[to_left], true).unwrap(),
        vec![UNKNOWN_DUPLICATE]
    );
    assert_eq!(
        right.append(&[to_right], true).unwrap(),
        vec![UNKNOWN_DUPLICATE]
    );
    assert_eq!(left.producer_state().last_sequence(key(7, 1)), Some(17));
    assert_eq!(right.producer_state().last_sequence(key(7, 1)), Some(17));
}
