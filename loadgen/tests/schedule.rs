//! Intended send times: open loop at a fixed rate, trace replay with time
//! compression, and both ways of scaling a trace.

use std::path::Path;

use surge_loadgen::config::{parse_compress, TraceScale};
use surge_loadgen::scenarios::open_loop;
use surge_loadgen::scenarios::trace_replay::Trace;

#[test]
fn open_loop_at_rate_r_spaces_events_one_over_r() {
    let schedule = open_loop::schedule(5_000.0, 2_000_000);
    let times: Vec<u64> = schedule.share(0, 1).collect();
    assert_eq!(times.len(), 10_000);
    assert_eq!(times[0], 0);
    assert_eq!(times[1], 200);
    assert_eq!(times[9_999], 1_999_800);
    assert!(times.windows(2).all(|pair| pair[1] - pair[0] == 200));
}

#[test]
fn open_loop_split_over_producers_keeps_the_total_rate() {
    let schedule = open_loop::schedule(1_000.0, 1_000_000);
    let shares: Vec<Vec<u64>> = (0..4)
        .map(|index| schedule.share(index, 4).collect())
        .collect();
    assert!(shares.iter().all(|share| share.len() == 250));
    // Producer 1 sends events 1, 5, 9, ... of the whole.
    assert_eq!(&shares[1][..3], &[1_000, 5_000, 9_000]);
}

const TWO_ROWS: &str = "timestamp,value\n2014-07-01 00:00:00,10\n2014-07-01 00:05:00,20\n";

#[test]
fn compressed_two_row_trace_maps_rows_to_segments() {
    let trace = Trace::parse(TWO_ROWS, Path::new("two.csv")).unwrap();
    // 300 trace seconds per row, played 100 times faster: 3 s per row.
    let compress = parse_compress("300:3").unwrap();
    let scale = TraceScale::PerUnit { events_per_s: 1.0 };
    let schedule = trace.schedule(compress, scale).unwrap();
    assert_eq!(schedule.end_us(), 6_000_000);
    assert_eq!(schedule.rate_at(0), 10.0);
    assert_eq!(schedule.rate_at(2_999_999), 10.0);
    assert_eq!(schedule.rate_at(3_000_000), 20.0);
    let times: Vec<u64> = schedule.share(0, 1).collect();
    assert_eq!(times.len(), 30 + 60);
    assert_eq!(times[29], 2_900_000);
    assert_eq!(times[30], 3_000_000);
    assert_eq!(times[31], 3_050_000);
}

#[test]
fn trace_scales_per_unit_or_to_a_peak_rate() {
    let trace = Trace::parse(TWO_ROWS, Path::new("two.csv")).unwrap();
    let per_unit = trace
        .schedule(100.0, TraceScale::PerUnit { events_per_s: 3.0 })
        .unwrap();
    assert_eq!(per_unit.rate_at(0), 30.0);
    assert_eq!(per_unit.rate_at(4_000_000), 60.0);
    let to_peak = trace
        .schedule(
            100.0,
            TraceScale::PeakRate {
                events_per_s: 5_000.0,
            },
        )
        .unwrap();
    assert_eq!(to_peak.rate_at(0), 2_500.0);
    assert_eq!(to_peak.rate_at(4_000_000), 5_000.0);
}

#[test]
fn shipped_traces_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no traces at {}; nothing to check", dir.display());
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "csv") {
            let trace = Trace::load(&path).unwrap_or_else(|error| panic!("{error}"));
            assert!(trace.rows().len() > 1000, "{}", path.display());
            let one_day_in_ten_minutes = parse_compress("86400:600").unwrap();
            let scale = TraceScale::PeakRate {
                events_per_s: 10_000.0,
            };
            trace.schedule(one_day_in_ten_minutes, scale).unwrap();
        }
    }
}
