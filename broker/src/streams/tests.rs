//! Changes against the disk: pooled and inline successors, the journal
//! replayed and compacted at start, claims a crash left half done, and
//! streams written by older builds.

use std::path::Path;
use std::time::{Duration, Instant};

use surge_protocol::stream::StreamConfig;
use tokio::sync::watch;

use super::pool::POOL_SLOTS;
use super::*;
use crate::storage::{IoChoice, ProducerKey, ProducerState};
use crate::topology::{Change, Claim, Record, JOURNAL_FILE};

fn open(data: &Path, pool_slots: usize) -> Streams {
    let config = BrokerConfig {
        data_dir: data.to_owned(),
        ..BrokerConfig::default()
    };
    let io = IoBackend::new(IoChoice::Pwrite).unwrap();
    Streams::open_with_pool(&config, io, watch::channel(0).0, pool_slots).unwrap()
}

fn create(streams: &Streams, shards: u32) {
    let config = StreamConfig {
        shard_count: shards,
        segment_bytes: 1 << 20,
        ..StreamConfig::default()
    };
    streams.create("s", &config).unwrap();
}

fn split(shard: u32) -> Change {
    Change::Split { shard, at: 1 << 62 }
}

fn shard_dir(data: &Path, id: u32) -> std::path::PathBuf {
    data.join("streams").join("s").join(id.to_string())
}

fn slots(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join(pool::POOL_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn wait_for_pool(streams: &Streams, ready: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while streams.pools[0].ready() != ready {
        assert!(Instant::now() < deadline, "the pool was not refilled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_change_takes_pooled_successors_and_the_pool_refills() {
    let data = tempfile::tempdir().unwrap();
    let streams = open(data.path(), POOL_SLOTS);
    assert_eq!(streams.pools[0].ready(), POOL_SLOTS);
    create(&streams, 1);
    let before = slots(data.path());
    let done = streams.change("s", split(0)).await.unwrap();
    assert_eq!(done.created, vec![1, 2]);
    let after_change = slots(data.path());
    let taken: Vec<_> = before
        .iter()
        .filter(|slot| !after_change.contains(slot))
        .collect();
    assert!(taken.len() >= 2, "two slots became shards 1 and 2");
    for id in [1, 2] {
        assert!(shard_dir(data.path(), id)
            .join("00000000000000000000.producers")
            .exists());
    }
    wait_for_pool(&streams, POOL_SLOTS).await;
    assert!(streams.get("s").unwrap().journal.lock().position() > 0);
    streams.close_all().await;
    drop(streams);
    let reopened = open(data.path(), POOL_SLOTS);
    let view = reopened.get("s").unwrap().view();
    assert_eq!(view.meta.epoch, 2);
    assert_eq!(view.shards.len(), 3);
    reopened.close_all().await;
}

#[tokio::test]
async fn a_change_with_the_pool_empty_creates_successors_inline() {
    let data = tempfile::tempdir().unwrap();
    let streams = open(data.path(), 0);
    create(&streams, 2);
    assert_eq!(streams.pools[0].ready(), 0);
    streams.change("s", split(0)).await.unwrap();
    streams
        .change("s", Change::Merge { left: 2, right: 3 })
        .await
        .unwrap();
    assert!(slots(data.path()).is_empty());
    streams.close_all().await;
    drop(streams);
    let reopened = open(data.path(), 0);
    let view = reopened.get("s").unwrap().view();
    assert_eq!(view.meta.epoch, 3);
    assert_eq!(view.meta.config().shard_count, 2);
    reopened.close_all().await;
}

/// What a crash after the commit and before settling leaves: the record
/// in the journal, the successor still in its pool slot (the rename was
/// not durable) and no producer snapshot.
#[tokio::test]
async fn a_committed_claim_a_crash_undid_is_finished_at_start() {
    let data = tempfile::tempdir().unwrap();
    let streams = open(data.path(), 2);
    create(&streams, 1);
    let meta = streams.get("s").unwrap().view().meta.clone();
    streams.close_all().await;
    drop(streams);
    let pool_slots = slots(data.path());
    let inherited: ProducerState = [(
        ProducerKey {
            producer_id: 7,
            origin_shard: 0,
        },
        41,
    )]
    .into_iter()
    .collect();
    let plan = topology::plan(&meta, &split(0), 1).unwrap();
    let record = Record {
        epoch: meta.epoch + 1,
        sealed: vec![(0, 0)],
        created: plan
            .created
            .iter()
            .zip(&pool_slots)
            .map(|(shard, slot)| Claim {
                shard: shard.clone(),
                slot: Some(slot.clone()),
            })
            .collect(),
        producers: inherited.clone(),
    };
    let stream_dir = data.path().join("streams").join("s");
    let (mut journal, _, _) = Journal::open(&stream_dir, meta).unwrap();
    journal.append(&record).unwrap();
    drop(journal);

    let reopened = open(data.path(), 2);
    let stream = reopened.get("s").unwrap();
    let view = stream.view();
    assert_eq!(view.meta.epoch, 2);
    assert_eq!(view.meta.shards[0].sealed_at, Some(0));
    for id in [1, 2] {
        assert!(shard_dir(data.path(), id).is_dir(), "shard {id}");
        assert_eq!(view.shards[&id].written(), 0);
    }
    assert!(
        pool_slots
            .iter()
            .all(|slot| !slots(data.path()).contains(slot)),
        "the claimed slots left the pool"
    );
    assert_eq!(stream.journal.lock().position(), 0, "compacted at start");
    let (meta_on_disk, version) = StreamMeta::load_versioned(&stream_dir).unwrap();
    assert_eq!((meta_on_disk.epoch, version), (2, topology::META_VERSION));
    reopened.close_all().await;
    drop(reopened);
    // The inherited state was made durable in the successors.
    let log = crate::storage::ShardLog::open(
        &shard_dir(data.path(), 1),
        crate::storage::LogConfig::default(),
        IoBackend::new(IoChoice::Pwrite).unwrap(),
    )
    .unwrap()
    .0;
    assert_eq!(log.producer_state(), inherited);
}

#[tokio::test]
async fn an_uncommitted_claim_is_removed_at_start() {
    let data = tempfile::tempdir().unwrap();
    let streams = open(data.path(), 2);
    create(&streams, 1);
    streams.close_all().await;
    drop(streams);
    let slot = slots(data.path()).remove(0);
    std::fs::rename(
        data.path().join(pool::POOL_DIR).join(&slot),
        shard_dir(data.path(), 1),
    )
    .unwrap();
    let reopened = open(data.path(), 2);
    assert_eq!(reopened.get("s").unwrap().view().meta.epoch, 1);
    assert!(!shard_dir(data.path(), 1).exists());
    assert_eq!(reopened.pools[0].ready(), 2, "refilled at start");
    reopened.close_all().await;
}

#[tokio::test]
async fn a_version_2_stream_gets_a_journal_and_changes_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let streams = open(data.path(), 2);
    create(&streams, 2);
    streams.close_all().await;
    drop(streams);
    // As the build before the journal left it: a v2 file, no journal.
    let stream_dir = data.path().join("streams").join("s");
    let v3 = std::fs::read(stream_dir.join(topology::META_FILE)).unwrap();
    assert!(v3.starts_with(b"SURGE-STREAM v3 "));
    let json = &v3[v3.iter().position(|&byte| byte == b'\n').unwrap() + 1..];
    let mut v2 = format!(
        "SURGE-STREAM v2 len={} crc32c={:08x}\n",
        json.len(),
        crc32c::crc32c(json)
    )
    .into_bytes();
    v2.extend_from_slice(json);
    std::fs::write(stream_dir.join(topology::META_FILE), &v2).unwrap();
    std::fs::remove_file(stream_dir.join(JOURNAL_FILE)).unwrap();

    let reopened = open(data.path(), 2);
    assert!(stream_dir.join(JOURNAL_FILE).exists());
    let (_, version) = StreamMeta::load_versioned(&stream_dir).unwrap();
    assert_eq!(version, topology::META_VERSION);
    reopened.change("s", split(0)).await.unwrap();
    reopened.close_all().await;
    drop(reopened);
    let again = open(data.path(), 2);
    assert_eq!(again.get("s").unwrap().view().meta.epoch, 2);
    again.close_all().await;
}

#[tokio::test]
async fn a_journal_past_half_full_is_compacted_and_reloads() {
    let data = tempfile::tempdir().unwrap();
    let streams = open(data.path(), 0);
    create(&streams, 1);
    let mut compacted = false;
    let mut shard = 0;
    for round in 0..200 {
        let done = streams.change("s", split(shard)).await.unwrap();
        let (low, high) = (done.created[0], done.created[1]);
        streams
            .change(
                "s",
                Change::Merge {
                    left: low,
                    right: high,
                },
            )
            .await
            .unwrap();
        shard = high + 1;
        let position = streams.get("s").unwrap().journal.lock().position();
        if round > 0 && position < 2_000 {
            compacted = true;
            break;
        }
    }
    assert!(compacted, "the journal was never compacted");
    let epoch = streams.get("s").unwrap().epoch();
    let stream_dir = data.path().join("streams").join("s");
    assert!(StreamMeta::load(&stream_dir).unwrap().epoch <= epoch);
    streams.close_all().await;
    drop(streams);
    let reopened = open(data.path(), 0);
    assert_eq!(reopened.get("s").unwrap().epoch(), epoch);
    assert_eq!(StreamMeta::load(&stream_dir).unwrap().epoch, epoch);
    reopened.close_all().await;
}
