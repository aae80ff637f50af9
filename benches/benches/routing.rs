//! Routing hot path: the key hash every keyed event pays on the producer
//! (and the broker, when it checks ownership), and the lookup of the shard
//! whose inclusive hash range holds it, among 64 equal ranges.
//!
//! The client's `Router` is crate-private, so `route` below repeats its
//! lookup (a `partition_point` over ranges sorted by start, then a bounds
//! check); if `Router` becomes public, bench it directly instead.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use surge_protocol::routing::{equal_ranges, key_hash};

/// Keys hashed per iteration, so one iteration is long enough to time and
/// the inputs vary (no branch predictor or cache sees one key only).
const KEYS_PER_ITER: usize = 1024;
const SHARD_COUNT: u32 = 64;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(surge_benches::WARM_UP_TIME)
        .measurement_time(surge_benches::MEASUREMENT_TIME)
        .sample_size(surge_benches::SAMPLE_SIZE)
}

fn keys(key_bytes: usize) -> Vec<Vec<u8>> {
    (0..KEYS_PER_ITER as u64)
        .map(|index| surge_benches::value(key_bytes, index.wrapping_mul(0x9E37_79B9)))
        .collect()
}

/// The shard whose range holds `hash`, as `client::router::Router::route`
/// finds it. `ranges` are sorted by start.
fn route(ranges: &[(u64, u64)], hash: u64) -> Option<usize> {
    let index = ranges.partition_point(|&(start, _)| start <= hash);
    let at = index.checked_sub(1)?;
    (hash <= ranges[at].1).then_some(at)
}

fn key_hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing/key_hash");
    for key_bytes in [16usize, 64] {
        let keys = keys(key_bytes);
        group.throughput(Throughput::Elements(KEYS_PER_ITER as u64));
        group.bench_with_input(
            BenchmarkId::new("1024_keys", format!("{key_bytes}B")),
            &keys,
            |bencher, keys| {
                bencher.iter(|| {
                    keys.iter()
                        .fold(0u64, |acc, key| acc ^ key_hash(black_box(key)))
                })
            },
        );
    }
    group.finish();
}

fn shard_lookup(c: &mut Criterion) {
    let ranges = equal_ranges(SHARD_COUNT);
    let keys = keys(16);
    let hashes: Vec<u64> = keys.iter().map(|key| key_hash(key)).collect();
    let mut group = c.benchmark_group("routing/shard_lookup");
    group.throughput(Throughput::Elements(KEYS_PER_ITER as u64));
    group.bench_function(BenchmarkId::new("64_ranges", "1024_hashes"), |bencher| {
        bencher.iter(|| {
            hashes
                .iter()
                .map(|&hash| route(&ranges, black_box(hash)).expect("ranges cover all"))
                .sum::<usize>()
        })
    });
    group.bench_function(
        BenchmarkId::new("64_ranges", "1024_keys_16B_hash_and_lookup"),
        |bencher| {
            bencher.iter(|| {
                keys.iter()
                    .map(|key| route(&ranges, key_hash(black_box(key))).expect("ranges cover all"))
                    .sum::<usize>()
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = key_hashing, shard_lookup
}
criterion_main!(benches);
