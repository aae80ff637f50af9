//! Codec hot paths: encoding and decoding a produce request (the frame body
//! every produce carries), building a batch on the producer side, and the
//! two broker-side batch checks: `validate` (CRC plus a walk over every
//! record, run on every produced batch) and `verify_checksum` (CRC only, run
//! on every batch read back from storage).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use surge_benches::{batch, batch_of_size, key, produce_request, value};
use surge_protocol::batch::{validate, verify_checksum, BatchBuilder, MAX_BATCH_BYTES};
use surge_protocol::produce::ProduceRequest;
use surge_protocol::Wire;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(surge_benches::WARM_UP_TIME)
        .measurement_time(surge_benches::MEASUREMENT_TIME)
        .sample_size(surge_benches::SAMPLE_SIZE)
}

/// Produce requests of 1, 16 and 64 parts, each a batch of 100 x 100 B
/// records (about 14 KiB). Batches over 256 B are spliced into the
/// writer, not copied, so encoding is per part, not per byte; `decode`
/// slices the batches out of the body without copying.
fn produce_request_codec(c: &mut Criterion) {
    let one_batch = batch(100, 100);
    let mut group = c.benchmark_group("codec/produce_request");
    for part_count in [1usize, 16, 64] {
        let request = produce_request(part_count, &one_batch);
        let body = request.to_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("encode_chunks", part_count),
            &request,
            |bencher, request| {
                bencher.iter(|| {
                    let mut writer = surge_protocol::Writer::new();
                    request.encode(&mut writer);
                    writer.into_chunks()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("decode", part_count),
            &body,
            |bencher, body| {
                bencher.iter(|| {
                    ProduceRequest::decode_all(black_box(body).clone()).expect("valid body")
                })
            },
        );
    }
    group.finish();
}

/// `BatchBuilder` with 100 records of 100 B and of 1 KiB (16 B keys, no
/// headers): record copies plus one CRC over the batch.
fn batch_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/batch_build");
    for value_bytes in [100usize, 1024] {
        let payload = value(value_bytes, 7);
        let keys: Vec<_> = (0..100u64).map(key).collect();
        let size = batch(100, value_bytes).len();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("100_records", value_bytes), |bencher| {
            bencher.iter(|| {
                let mut builder = BatchBuilder::new(0, 1, 0);
                for (index, key) in keys.iter().enumerate() {
                    builder.push(1_700_000_000_000 + index as i64, Some(key), &payload, &[]);
                }
                builder.finish()
            })
        });
    }
    group.finish();
}

/// The batch checks on 64 KiB and 1 MiB batches of 100 B and 1 KiB
/// records: `validate` pays per record, `verify_checksum` only per byte.
fn batch_checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/batch_check");
    for (size_name, target_bytes) in [("64KiB", 64usize << 10), ("1MiB", 1 << 20)] {
        for value_bytes in [100usize, 1024] {
            let bytes: Bytes = batch_of_size(target_bytes, value_bytes);
            let label = format!("{size_name}/{value_bytes}B_records");
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_with_input(
                BenchmarkId::new("validate", &label),
                &bytes,
                |bencher, bytes| {
                    bencher
                        .iter(|| validate(black_box(bytes), MAX_BATCH_BYTES).expect("valid batch"))
                },
            );
            // The CRC does not depend on record size: one variant suffices.
            if value_bytes == 1024 {
                group.bench_with_input(
                    BenchmarkId::new("verify_checksum", size_name),
                    &bytes,
                    |bencher, bytes| {
                        bencher.iter(|| {
                            verify_checksum(black_box(bytes), bytes.len()).expect("valid batch")
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = produce_request_codec, batch_build, batch_checks
}
criterion_main!(benches);
