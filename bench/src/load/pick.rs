//! Reproducible pseudo-random choices: the client that sends message `seq` and the client it
//! is addressed to are pure functions of `(seq, salt)`, so the accounting can recompute them
//! and two servers get exactly the same load.

/// SplitMix64's finalizer: a cheap, well-mixed 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A pseudo-random index in `0..n` for message `seq` under `salt` (0 when `n` is 0).
pub(crate) fn pick(seq: u64, salt: u64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (mix(seq ^ mix(salt)) % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly_and_depends_on_the_salt() {
        let mut counts = [0u32; 3];
        for seq in 0..30_000 {
            counts[pick(seq, 7, 3)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)));
        let same = (0..1000).filter(|&s| pick(s, 1, 100) == pick(s, 2, 100));
        assert!(same.count() < 50);
    }
}
