//! Random-hyperplane hashing of item vectors (SimHash, Charikar, STOC
//! 2002), as ETA (Chen et al., "End-to-End User Behavior Retrieval in
//! Click-Through Rate Prediction Model", 2021) and SDIM (Cao et al.,
//! "Sampling Is All You Need on Modeling Long-Term User Behaviors for CTR
//! Prediction", CIKM 2022) use it.
//!
//! * ETA: an `m`-bit code per vector, bit `i` set iff `<h_i, v> > 0` for a
//!   random hyperplane `h_i`; the Hamming distance of two codes estimates
//!   the angle between the vectors (`P[bit differs] = angle / pi`).
//! * SDIM: `R` rounds of `B` bits each (other hyperplanes); a round's `B`
//!   bits are its bucket, and a behavior collides with the target in a
//!   round when their buckets are equal (`P = (1 - angle / pi)^B`). The `R`
//!   buckets are packed into one `u64` (`R * B <= 64`), round `r` at bits
//!   `r * B .. (r + 1) * B`, so the number of colliding rounds is a few
//!   word operations ([`SdimLayout::collisions`]).
//!
//! Hyperplanes are drawn from a recorded seed (coordinates: sums of 12
//! uniforms minus 6, an approximately standard normal drawn with integer
//! and exact float arithmetic only, so the same seed gives the same planes
//! on every platform) and are stored in the embeddings file as well, so
//! codes computed later (for items appended after attaching) use exactly
//! the planes of the stored codes.

use hindsight_core::splitmix64;

/// Inner product with eight independent accumulators (vectorizes; every
/// caller, brute-force checks included, uses this exact summation order).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    for ((a, x), y) in acc.iter_mut().zip(ca.remainder()).zip(cb.remainder()) {
        *a += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `count` hyperplanes of dimension `dim` (row-major) drawn from `seed`.
pub fn hyperplanes(dim: usize, count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next_unit = || {
        state = splitmix64(state);
        // 24 random bits: exact in f32.
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..dim * count)
        .map(|_| {
            let mut s = 0f32;
            for _ in 0..12 {
                s += next_unit();
            }
            s - 6.0
        })
        .collect()
}

/// The sign bits of `v` against `planes` (`bits` rows of `v.len()`): bit
/// `i` is set iff `<plane_i, v> > 0`. `bits <= 64`.
pub fn sign_bits(planes: &[f32], bits: u32, v: &[f32]) -> u64 {
    let mut code = 0u64;
    for (i, plane) in planes
        .chunks_exact(v.len().max(1))
        .take(bits as usize)
        .enumerate()
    {
        if dot(plane, v) > 0.0 {
            code |= 1 << i;
        }
    }
    code
}

/// The Hamming distance of two codes.
#[inline]
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// How SDIM's rounds are packed into a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdimLayout {
    /// Rounds (hash signatures).
    pub rounds: u32,
    /// Bits per round.
    pub bits: u32,
    high: u64,
    low: u64,
}

impl SdimLayout {
    /// Most bits of one round.
    pub const MAX_BITS: u32 = 16;

    /// The layout of `rounds` rounds of `bits` bits (`rounds * bits <= 64`,
    /// `1 <= bits <= 16`, at least one round).
    pub fn new(rounds: u32, bits: u32) -> Option<SdimLayout> {
        if rounds == 0 || bits == 0 || bits > Self::MAX_BITS || rounds.saturating_mul(bits) > 64 {
            return None;
        }
        let (mut high, mut low) = (0u64, 0u64);
        for r in 0..rounds {
            let at = r * bits;
            high |= 1u64 << (at + bits - 1);
            low |= ((1u64 << (bits - 1)) - 1) << at;
        }
        Some(SdimLayout {
            rounds,
            bits,
            high,
            low,
        })
    }

    /// Number of rounds in which signatures `a` and `b` have the same
    /// bucket.
    #[inline]
    pub fn collisions(&self, a: u64, b: u64) -> u32 {
        let x = a ^ b;
        // A group's high bit of `y` is set iff one of its low bits is:
        // (x & low) + low stays below 2^bits within each group.
        let y = (x & self.low).wrapping_add(self.low);
        let nonzero = (y | x) & self.high;
        (!nonzero & self.high).count_ones()
    }

    /// The bucket of round `r` of signature `sig`.
    pub fn bucket(&self, sig: u64, r: u32) -> u64 {
        (sig >> (r * self.bits)) & ((1u64 << self.bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dot_matches_the_plain_sum_closely() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.125).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn hyperplanes_are_seeded_and_centered() {
        let p = hyperplanes(16, 64, 7);
        assert_eq!(p, hyperplanes(16, 64, 7));
        assert_ne!(p, hyperplanes(16, 64, 8));
        let mean = p.iter().sum::<f32>() / p.len() as f32;
        let var = p.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / p.len() as f32;
        assert!(mean.abs() < 0.1, "{mean}");
        assert!((var - 1.0).abs() < 0.15, "{var}");
    }

    #[test]
    fn similar_vectors_get_close_codes() {
        let planes = hyperplanes(8, 64, 1);
        let v = [1.0, 0.5, -0.2, 0.3, 0.9, -1.0, 0.1, 0.0];
        let near = [1.0, 0.45, -0.2, 0.35, 0.9, -1.0, 0.1, 0.05];
        let far: Vec<f32> = v.iter().map(|x| -x).collect();
        let c = sign_bits(&planes, 64, &v);
        assert!(hamming(c, sign_bits(&planes, 64, &near)) < 10);
        // The opposite vector flips every bit whose product is non-zero.
        assert!(hamming(c, sign_bits(&planes, 64, &far)) > 54);
    }

    #[test]
    fn layouts_reject_impossible_shapes() {
        assert!(SdimLayout::new(0, 4).is_none());
        assert!(SdimLayout::new(4, 0).is_none());
        assert!(SdimLayout::new(9, 8).is_none());
        assert!(SdimLayout::new(64, 1).is_some());
        assert!(SdimLayout::new(4, 16).is_some());
        assert!(SdimLayout::new(1, 17).is_none());
        assert!(SdimLayout::new(u32::MAX, 2).is_none());
    }

    proptest! {
        #[test]
        fn collisions_count_equal_buckets(rounds in 1u32..=16, bits in 1u32..=16, a: u64, b: u64, same: u64) {
            prop_assume!(rounds * bits <= 64);
            let l = SdimLayout::new(rounds, bits).unwrap();
            let used = if rounds * bits == 64 { u64::MAX } else { (1u64 << (rounds * bits)) - 1 };
            // Make some rounds equal on purpose.
            let mut b = b & used;
            let a = a & used;
            for r in 0..rounds {
                if same >> r & 1 == 1 {
                    let m = ((1u64 << bits) - 1) << (r * bits);
                    b = (b & !m) | (a & m);
                }
            }
            let brute = (0..rounds).filter(|&r| l.bucket(a, r) == l.bucket(b, r)).count() as u32;
            prop_assert_eq!(l.collisions(a, b), brute);
        }
    }
}
