//! Zipf key sanity: rank 1 is the most frequent, frequencies fall with
//! rank as 1/k^s, and a seed makes the sequence repeat.

use surge_loadgen::workload::{EventFactory, KeyDist, SizeDist, WorkloadConfig, Zipf};

const DRAWS: usize = 200_000;

fn histogram(keys: u64, exponent: f64, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(keys, exponent);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = vec![0_u64; keys as usize + 1];
    for _ in 0..DRAWS {
        let rank = zipf.sample(&mut rng);
        assert!((1..=keys).contains(&rank), "rank {rank} out of 1..={keys}");
        counts[rank as usize] += 1;
    }
    counts
}

#[test]
fn rank_one_is_most_frequent_and_ratios_follow_the_exponent() {
    let counts = histogram(1_000, 1.1, 42);
    let top = counts[1];
    assert!(counts[2..].iter().all(|&count| count < top));
    // P(1) / P(2) = 2^1.1 = 2.14; allow sampling noise.
    let ratio = counts[1] as f64 / counts[2] as f64;
    assert!((1.95..=2.35).contains(&ratio), "rank1/rank2 = {ratio}");
    // Head heavier than tail.
    let head: u64 = counts[1..=10].iter().sum();
    let tail: u64 = counts[991..=1000].iter().sum();
    assert!(head > 50 * tail, "head {head} tail {tail}");
}

#[test]
fn exponent_below_one_and_huge_key_spaces_work() {
    let counts = histogram(50, 0.5, 1);
    assert!(counts[1] > counts[50]);
    let zipf = Zipf::new(1 << 40, 1.2);
    let mut rng = fastrand::Rng::with_seed(3);
    assert!((0..1_000).all(|_| (1..=1 << 40).contains(&zipf.sample(&mut rng))));
}

#[test]
fn same_seed_same_keys() {
    assert_eq!(histogram(100, 1.0, 7), histogram(100, 1.0, 7));
    assert_ne!(histogram(100, 1.0, 7), histogram(100, 1.0, 8));
    let config = WorkloadConfig {
        event_size: SizeDist::Uniform { min: 10, max: 100 },
        keys: 1_000,
        key_dist: KeyDist::Zipf { exponent: 1.1 },
        types: 4,
        seed: 99,
    };
    let draw = |index| {
        let mut factory = EventFactory::new(&config, index);
        (0..100)
            .map(|at| factory.next_event(at))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(0), draw(0));
    assert_ne!(draw(0), draw(1));
}
