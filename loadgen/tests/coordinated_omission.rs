//! A 100 ms broker stall at a fixed rate must show up as about 100 slow
//! samples (one per event the stall delayed), not one.

use surge_loadgen::scenarios::open_loop::simulate_stall;

#[test]
fn a_stall_yields_many_slow_samples_from_intended_time() {
    // 1,000 events/s for 2 s, 50 us service, stalled from 0.5 s to 0.6 s.
    let (from_intended, from_sent) = simulate_stall(1_000.0, 2_000_000, 50, (500_000, 600_000));
    assert_eq!(from_intended.len(), 2_000);
    let slow = from_intended.count_at_or_above(10_000);
    assert!(
        (85..=100).contains(&slow),
        "slow samples from intended time: {slow}"
    );
    assert!(from_intended.percentiles().p99_us >= 50_000);
    // The blind measure sees the stall once: a p99 that looks healthy.
    assert_eq!(from_sent.count_at_or_above(10_000), 1);
    assert!(from_sent.percentiles().p99_us < 100);
}

#[test]
fn no_stall_no_slow_samples() {
    let (from_intended, _) = simulate_stall(1_000.0, 1_000_000, 50, (0, 0));
    assert_eq!(from_intended.count_at_or_above(51), 0);
}
