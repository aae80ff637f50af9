//! Storage hot paths: `ShardLog::append` of one group commit (1 MiB of
//! 1 KiB-record batches) per write path (pwrite, io_uring when the kernel
//! allows it) with and without fdatasync; the raw cost of a 4 KiB write plus
//! fdatasync on the same filesystem, as context for the sync numbers; and
//! reads: a zero-copy 1 MiB read and a one-batch read at a random offset
//! (index lookup, header walk, one batch CRC).
//!
//! Logs live under the cargo target dir (`CARGO_TARGET_TMPDIR`), or under
//! `SURGE_BENCH_DIR` when set, so the numbers are for that filesystem.
//! Besides criterion's estimates, each append bench prints per-group
//! percentiles and the sync/no-sync ratio of medians.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use surge_benches::{group, group_bytes, LatencyLog};
use surge_broker::storage::{IoBackend, IoChoice, LogConfig, ShardLog};
use surge_protocol::batch::Checked;

/// One group commit: 16 batches of 64 records of 1 KiB (about 1 MiB).
const BATCHES_PER_GROUP: usize = 16;
const RECORDS_PER_BATCH: usize = 64;
const VALUE_BYTES: usize = 1024;
/// Bytes the fdatasync probe writes per operation.
const PROBE_WRITE_BYTES: usize = 4096;
/// Distinct 4 KiB blocks the probe cycles over (all allocated up front).
const PROBE_BLOCKS: u64 = 256;
/// Groups written before the read benches (about 64 MiB, one segment).
const READ_LOG_GROUPS: usize = 64;
const READ_MAX_BYTES: usize = 1 << 20;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(surge_benches::WARM_UP_TIME)
        .measurement_time(surge_benches::MEASUREMENT_TIME)
        .sample_size(surge_benches::SAMPLE_SIZE)
}

fn bench_root() -> PathBuf {
    std::env::var_os("SURGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

fn temp_dir() -> tempfile::TempDir {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir can be created");
    tempfile::tempdir_in(root).expect("temp dir in the bench dir")
}

/// The broker's defaults (256 MiB segments, 64 MiB preallocation), plus a
/// retention bound so a long run does not fill the disk.
fn log_config() -> LogConfig {
    LogConfig {
        retention_bytes: 1 << 30,
        ..LogConfig::default()
    }
}

/// The backends this machine has, by name; io_uring is skipped with a note
/// when the kernel (or a seccomp filter) refuses it.
fn backends() -> Vec<(&'static str, Arc<IoBackend>)> {
    let mut out = vec![(
        "pwrite",
        IoBackend::new(IoChoice::Pwrite).expect("pwrite needs no setup"),
    )];
    match IoBackend::new(IoChoice::Uring) {
        Ok(backend) => out.push(("io_uring", backend)),
        Err(error) => println!("note: io_uring unavailable ({error}); benching pwrite only"),
    }
    out
}

/// Appends `batches` in every timed iteration; retention runs between
/// iterations, outside the timing. Returns the per-append latencies.
fn bench_append(
    c: &mut Criterion,
    name: &str,
    io: &Arc<IoBackend>,
    batches: &[Checked],
    sync: bool,
) -> LatencyLog {
    let dir = temp_dir();
    let (mut log, _) = ShardLog::open(dir.path(), log_config(), Arc::clone(io)).expect("open log");
    let mut latencies = LatencyLog::default();
    let mut bench_group = c.benchmark_group("append/1MiB_group");
    bench_group.throughput(Throughput::Bytes(group_bytes(batches)));
    if sync {
        bench_group.sample_size(surge_benches::SLOW_SAMPLE_SIZE);
    }
    let label = if sync { "sync" } else { "nosync" };
    bench_group.bench_function(BenchmarkId::new(name, label), |bencher| {
        bencher.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let outcomes = log.append(black_box(batches), sync).expect("append");
                let elapsed = start.elapsed();
                black_box(outcomes);
                total += elapsed;
                latencies.record(elapsed);
                log.enforce_retention(0).expect("retention");
            }
            total
        })
    });
    bench_group.finish();
    log.close().expect("close log");
    println!(
        "append/1MiB_group/{name}/{label}: per group {}",
        latencies.summary()
    );
    latencies
}

fn append(c: &mut Criterion) {
    let batches = group(BATCHES_PER_GROUP, RECORDS_PER_BATCH, VALUE_BYTES);
    for (name, io) in backends() {
        let nosync = bench_append(c, name, &io, &batches, false);
        let sync = bench_append(c, name, &io, &batches, true);
        if let (Some(nosync_p50), Some(sync_p50)) = (nosync.percentile(0.5), sync.percentile(0.5)) {
            println!(
                "append/1MiB_group/{name}: sync/nosync p50 ratio {:.1}x ({:.1}us vs {:.1}us); \
                 fdatasync adds {:.1}us per group commit",
                sync_p50.as_secs_f64() / nosync_p50.as_secs_f64(),
                sync_p50.as_secs_f64() * 1e6,
                nosync_p50.as_secs_f64() * 1e6,
                (sync_p50.as_secs_f64() - nosync_p50.as_secs_f64()) * 1e6,
            );
        }
    }
}

/// A 4 KiB pwrite over an already allocated block plus fdatasync: the floor
/// under any synced append on this filesystem.
fn fdatasync_probe(c: &mut Criterion) {
    let dir = temp_dir();
    let path = dir.path().join("probe");
    let file = File::create(&path).expect("create probe file");
    let block = surge_benches::value(PROBE_WRITE_BYTES, 3);
    for index in 0..PROBE_BLOCKS {
        file.write_all_at(&block, index * PROBE_WRITE_BYTES as u64)
            .expect("prefill probe file");
    }
    file.sync_all().expect("sync probe file");
    let mut latencies = LatencyLog::default();
    let mut next_block = 0u64;
    let mut bench_group = c.benchmark_group("append/fdatasync_probe");
    bench_group.sample_size(surge_benches::SLOW_SAMPLE_SIZE);
    bench_group.throughput(Throughput::Bytes(PROBE_WRITE_BYTES as u64));
    bench_group.bench_function("pwrite_4KiB_fdatasync", |bencher| {
        bencher.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let position = (next_block % PROBE_BLOCKS) * PROBE_WRITE_BYTES as u64;
                next_block += 1;
                let start = Instant::now();
                file.write_all_at(&block, position).expect("probe write");
                file.sync_data().expect("probe fdatasync");
                let elapsed = start.elapsed();
                total += elapsed;
                latencies.record(elapsed);
            }
            total
        })
    });
    bench_group.finish();
    println!("append/fdatasync_probe: per op {}", latencies.summary());
}

/// Offsets spread over the first three quarters of the log (a fixed LCG),
/// so every 1 MiB read from one is full length.
fn scattered_offsets(record_count: u64) -> Vec<u64> {
    let limit = record_count * 3 / 4;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..1024)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 11) % limit
        })
        .collect()
}

fn read(c: &mut Criterion) {
    let dir = temp_dir();
    let io = IoBackend::new(IoChoice::Pwrite).expect("pwrite needs no setup");
    let (mut log, _) = ShardLog::open(dir.path(), log_config(), io).expect("open log");
    let batches = group(BATCHES_PER_GROUP, RECORDS_PER_BATCH, VALUE_BYTES);
    for _ in 0..READ_LOG_GROUPS {
        log.append(&batches, false).expect("prefill append");
    }
    log.sync().expect("prefill sync");
    let reader = log.reader();
    let end = log.written_offset();
    let offsets = scattered_offsets(end);
    let full_bytes = reader
        .read(0, READ_MAX_BYTES, end)
        .expect("read")
        .bytes
        .len();
    let batch_bytes = reader.read(0, 0, end).expect("read").bytes.len();

    let mut bench_group = c.benchmark_group("read");
    bench_group.throughput(Throughput::Bytes(full_bytes as u64));
    let mut cursor = 0usize;
    bench_group.bench_function("zero_copy_1MiB", |bencher| {
        bencher.iter(|| {
            cursor = (cursor + 1) % offsets.len();
            let chunk = reader
                .read(offsets[cursor], READ_MAX_BYTES, end)
                .expect("read");
            assert_eq!(chunk.bytes.len(), full_bytes, "every read is full length");
            chunk
        })
    });
    bench_group.throughput(Throughput::Bytes(batch_bytes as u64));
    bench_group.bench_function("one_batch_at_random_offset", |bencher| {
        bencher.iter(|| {
            cursor = (cursor + 1) % offsets.len();
            reader.read(offsets[cursor], 0, end).expect("read")
        })
    });
    bench_group.finish();
    drop(reader);
    log.close().expect("close log");
}

criterion_group! {
    name = benches;
    config = config();
    targets = append, fdatasync_probe, read
}
criterion_main!(benches);
