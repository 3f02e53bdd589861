//! int8 copies of a segment's per-doc vectors, blocked for `sim-soft`'s
//! scan, with bounds that keep the scan exact.
//!
//! Why: an exact inner-product scan over a 50k-behavior history reads one
//! f32 vector per behavior in the random order of the user's items
//! (`4 x dim` bytes from anywhere in the store), and was memory-bound
//! (docs/benchmarks.md, "Embedding retrieval"). Here each doc's vector is
//! copied in doc order, quantised to `i8` with a per-doc scale
//! (`dim + 4` bytes a doc), so a run is one sequential read of a quarter
//! of the bytes, and eight docs' inner products come out of a few integer
//! SIMD instructions (the kernel is `hindsight-retrieval`'s `cpu` module).
//!
//! **Exactness.** The quantised product is only used to discard docs that
//! cannot be among the N best; the kept ones are rescored with the exact
//! f32 [`dot`](crate::dot) of the full vectors, so the result is exactly
//! what the full-precision scan returns. For a target `t = s_t q_t + e_t`
//! and a doc `v = s_v q_v + e_v` (integer vectors `q`, scales `s`, rounding
//! errors `|e_t[d]| <= s_t / 2`, `|e_v[d]| <= s_v / 2`):
//!
//! ```text
//! <t, v> = s_t s_v <q_t, q_v> + s_t <q_t, e_v> + <e_t, v>
//! |s_t <q_t, e_v>| <= s_v * (s_t * sum_d |q_t[d]|) / 2
//! |<e_t, v>|       <= |e_t|_2 * max_v |v|_2
//! ```
//!
//! so, with `acc = <q_t, q_v>` (exact in `i32`), `h = s_t * sum |q_t| / 2`
//! and `E = (|e_t|_2 + 1e-3 |t|_2) * max_v |v|_2`:
//!
//! ```text
//! lower = (acc * s_t - h) * s_v - E  <=  <t, v>  <=  (acc * s_t + h) * s_v + E = upper
//! ```
//!
//! The `1e-3 |t|_2 max |v|_2` term covers every f32 rounding (of the
//! bounds themselves and of the exact `dot`, whose error is below `dim *
//! 2^-24 |t| |v|`, that is under `1e-3` up to dimension 16k). A doc whose
//! `upper` is below the N-th largest `lower` seen so far is not among the
//! N best ([`QuantizedQuery`] holds `s_t`, `h` and the `E` factor).
//! Before the bound, the scan compares `acc` itself with an integer
//! threshold derived from the cut and the segment's largest scale
//! ([`QuantizedQuery::coarse_threshold`]): one compare per doc, and the
//! float bound only for the docs that pass it.
//!
//! Layout: blocks of [`BLOCK_DOCS`] = 8 docs; a block holds `groups =
//! ceil(dim / 4)` runs of 32 bytes, run `g` = the 8 docs' dims `4g..4g+4`
//! (doc `l` at bytes `4l..4l+4`, dims past `dim` zero), so one 32-byte load
//! feeds one `maddubs` for eight docs. Docs past the segment's end are
//! zero with scale 0.

use hindsight_index::DocId;

/// Docs per block.
pub const BLOCK_DOCS: usize = 8;

/// The quantised, blocked vectors of one segment's docs (see the module
/// docs). Built once per segment, on first use by `sim-soft`.
#[derive(Debug, Clone)]
pub struct SoftBlocks {
    groups: usize,
    docs: usize,
    data: Vec<i8>,
    scales: Vec<f32>,
    max_norm: f32,
    max_scale: f32,
}

/// Quantises `v` with the scale `max |v| / 127` into `out` (`out.len() >=
/// v.len()`; the rest is left as is); returns the scale (0 for a zero
/// vector).
fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out[..v.len()].fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl SoftBlocks {
    /// Quantises the vectors of docs `0..docs` (`vector(doc)`, each of
    /// length `dim`).
    pub fn build<'a>(dim: usize, docs: usize, vector: impl Fn(DocId) -> &'a [f32]) -> SoftBlocks {
        let groups = dim.div_ceil(4).max(1);
        let blocks = docs.div_ceil(BLOCK_DOCS);
        let mut data = vec![0i8; blocks * groups * 4 * BLOCK_DOCS];
        let mut scales = vec![0f32; blocks * BLOCK_DOCS];
        let mut q = vec![0i8; groups * 4];
        let mut max_norm = 0f64;
        for (doc, scale) in scales.iter_mut().enumerate().take(docs) {
            let v = vector(doc as DocId);
            q.fill(0);
            *scale = quantize(v, &mut q);
            let norm: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            max_norm = max_norm.max(norm.sqrt());
            let (b, lane) = (doc / BLOCK_DOCS, doc % BLOCK_DOCS);
            for g in 0..groups {
                let at = ((b * groups + g) * BLOCK_DOCS + lane) * 4;
                data[at..at + 4].copy_from_slice(&q[g * 4..g * 4 + 4]);
            }
        }
        let max_scale = scales.iter().fold(0f32, |m, &x| m.max(x));
        SoftBlocks {
            groups,
            docs,
            data,
            scales,
            max_scale,
            // Rounded up: a bound, not an estimate.
            max_norm: (max_norm * (1.0 + 1e-6)) as f32,
        }
    }

    /// Runs of 32 bytes per block (`ceil(dim / 4)`).
    #[inline]
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Docs held.
    #[inline]
    pub fn docs(&self) -> usize {
        self.docs
    }

    /// The `groups() * 32` bytes of block `b` (docs `8b..8b+8`).
    #[inline]
    pub fn block(&self, b: usize) -> &[i8] {
        let len = self.groups * 4 * BLOCK_DOCS;
        &self.data[b * len..(b + 1) * len]
    }

    /// The 8 per-doc scales of block `b`.
    #[inline]
    pub fn block_scales(&self, b: usize) -> &[f32] {
        &self.scales[b * BLOCK_DOCS..(b + 1) * BLOCK_DOCS]
    }

    /// The largest L2 norm of the docs' full vectors (rounded up).
    #[inline]
    pub fn max_norm(&self) -> f32 {
        self.max_norm
    }

    /// The largest per-doc scale.
    #[inline]
    pub fn max_scale(&self) -> f32 {
        self.max_scale
    }

    /// `<q_t, q_v>` of the 8 docs of block `b` (the plain version of the
    /// SIMD kernel: both give the same integers).
    pub fn block_dots(&self, b: usize, q: &QuantizedQuery) -> [i32; BLOCK_DOCS] {
        let block = self.block(b);
        let mut acc = [0i32; BLOCK_DOCS];
        for g in 0..self.groups {
            let tq = &q.q[g * 4..g * 4 + 4];
            for (lane, a) in acc.iter_mut().enumerate() {
                let at = (g * BLOCK_DOCS + lane) * 4;
                for k in 0..4 {
                    *a += i32::from(block[at + k]) * i32::from(tq[k]);
                }
            }
        }
        acc
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() + self.scales.len() * 4
    }
}

/// A target vector quantised for [`SoftBlocks`], with the terms of the
/// bounds (module docs).
#[derive(Debug, Clone)]
pub struct QuantizedQuery {
    /// `q_t`, padded with zeros to `groups * 4`.
    pub q: Vec<i8>,
    /// `q_t` four bytes at a time, as the kernel broadcasts them.
    pub packed: Vec<i32>,
    /// `s_t`.
    pub scale: f32,
    /// `h = s_t * sum |q_t| / 2`.
    pub half_abs: f32,
    /// `|e_t|_2 + 1e-3 |t|_2` (times a segment's `max_norm`: `E`).
    pub err: f32,
    /// `1 / s_t` in f64 (0 for a zero target), for
    /// [`coarse_threshold`](Self::coarse_threshold).
    inv_scale: f64,
}

impl QuantizedQuery {
    /// Quantises `t` for blocks of `groups` runs.
    pub fn new(t: &[f32], groups: usize) -> QuantizedQuery {
        let mut q = vec![0i8; (groups * 4).max(t.len().next_multiple_of(4))];
        let scale = quantize(t, &mut q);
        let mut err2 = 0f64;
        let mut norm2 = 0f64;
        for (d, &x) in t.iter().enumerate() {
            let e = f64::from(x) - f64::from(scale) * f64::from(q[d]);
            err2 += e * e;
            norm2 += f64::from(x) * f64::from(x);
        }
        if scale == 0.0 {
            // Zero (or non-finite) target: every doc scores 0 exactly, or
            // the caller's exact scores decide.
            err2 = norm2;
        }
        let abs: i64 = q.iter().map(|&x| i64::from(x).abs()).sum();
        let packed = q
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]))
            .collect();
        QuantizedQuery {
            q,
            packed,
            scale,
            half_abs: (f64::from(scale) * abs as f64 / 2.0 * (1.0 + 1e-6)) as f32,
            err: ((err2.sqrt() + 1e-3 * norm2.sqrt()) * (1.0 + 1e-6)) as f32,
            inv_scale: if scale > 0.0 {
                1.0 / f64::from(scale)
            } else {
                0.0
            },
        }
    }

    /// An integer pre-test of [`bounds`](Self::bounds)' upper bound
    /// against `cut` for the docs of blocks whose largest scale is
    /// `max_scale` (`e` as for `bounds`): a doc whose `acc` is at most the
    /// returned value has an upper bound below `cut` (its scale is at
    /// most `max_scale`, and below the cut `e` the pre-test admits
    /// everything: `i32::MIN`). Computed in f64 with a margin of two, so
    /// the pre-test never drops a doc the f32 bound would keep. One
    /// integer compare per doc instead of the bound's five float
    /// operations.
    pub fn coarse_threshold(&self, cut: f32, e: f32, max_scale: f32) -> i32 {
        if cut.is_nan() || cut <= e || self.scale <= 0.0 || max_scale <= 0.0 {
            return i32::MIN;
        }
        // `(cut - e) / max_scale - h) / s_t`, with `1 / s_t` computed once;
        // the f64 rounding (relative 1e-16) is far inside the margin.
        let x = ((f64::from(cut) - f64::from(e)) / f64::from(max_scale) - f64::from(self.half_abs))
            * self.inv_scale;
        (x.floor() - 2.0).clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
    }

    /// `(lower, upper)` of `<t, v>` for a doc of scale `scale` whose
    /// quantised product is `acc`, in a segment where `e = err *
    /// max_norm`. The SIMD kernel computes `upper` with the same f32
    /// operations in the same order.
    #[inline]
    pub fn bounds(&self, acc: i32, scale: f32, e: f32) -> (f32, f32) {
        let a = acc as f32 * self.scale;
        (
            (a - self.half_abs) * scale - e,
            (a + self.half_abs) * scale + e,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot;

    fn vectors(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        s = hindsight_core::splitmix64(s);
                        // Mixed magnitudes, some exact zeros.
                        let x = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                        if s.is_multiple_of(7) {
                            0.0
                        } else {
                            x * [1.0, 0.01, 30.0][(s % 3) as usize]
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_bounds_hold_for_every_doc() {
        for (dim, seed) in [(32usize, 1u64), (6, 2), (1, 3), (33, 4), (64, 5)] {
            let docs = vectors(seed, 203, dim);
            let blocks = SoftBlocks::build(dim, docs.len(), |d| &docs[d as usize]);
            assert_eq!(blocks.groups(), dim.div_ceil(4));
            for t in vectors(seed ^ 99, 20, dim)
                .into_iter()
                .chain([vec![0.0; dim], docs[5].clone()])
            {
                let q = QuantizedQuery::new(&t, blocks.groups());
                let e = q.err * blocks.max_norm();
                for b in 0..docs.len().div_ceil(BLOCK_DOCS) {
                    let acc = blocks.block_dots(b, &q);
                    for (lane, (&acc, &scale)) in acc.iter().zip(blocks.block_scales(b)).enumerate()
                    {
                        let doc = b * BLOCK_DOCS + lane;
                        if doc >= docs.len() {
                            continue;
                        }
                        let (lo, hi) = q.bounds(acc, scale, e);
                        let exact = dot(&t, &docs[doc]);
                        assert!(
                            lo <= exact && exact <= hi,
                            "dim {dim} doc {doc}: {lo} <= {exact} <= {hi}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_coarse_test_never_drops_a_doc_the_bound_keeps() {
        let docs = vectors(21, 500, 32);
        let blocks = SoftBlocks::build(32, docs.len(), |d| &docs[d as usize]);
        for t in vectors(22, 10, 32) {
            let q = QuantizedQuery::new(&t, blocks.groups());
            let e = q.err * blocks.max_norm();
            let mut uppers = Vec::new();
            for b in 0..docs.len().div_ceil(BLOCK_DOCS) {
                let acc = blocks.block_dots(b, &q);
                for (&acc, &scale) in acc.iter().zip(blocks.block_scales(b)) {
                    uppers.push((acc, q.bounds(acc, scale, e).1));
                }
            }
            let mut cuts: Vec<f32> = uppers.iter().map(|u| u.1).collect();
            cuts.extend([f32::NEG_INFINITY, 0.0, e, e * 1.01, 1e30]);
            for &cut in &cuts {
                let thr = q.coarse_threshold(cut, e, blocks.max_scale());
                for &(acc, upper) in &uppers {
                    assert!(
                        acc > thr || upper < cut,
                        "cut {cut}: acc {acc} <= {thr} but upper {upper}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_bounds_are_tight_enough_to_prune() {
        // Random vectors of dimension 32: the bound's half-width is a few
        // percent of the scores' spread, so most docs are pruned.
        let docs = vectors(11, 1000, 32);
        let blocks = SoftBlocks::build(32, docs.len(), |d| &docs[d as usize]);
        let t = &vectors(12, 1, 32)[0];
        let q = QuantizedQuery::new(t, blocks.groups());
        let e = q.err * blocks.max_norm();
        let exact: Vec<f32> = docs.iter().map(|v| dot(t, v)).collect();
        let spread = exact.iter().fold(0f32, |m, x| m.max(x.abs()));
        let acc = blocks.block_dots(0, &q);
        let (lo, hi) = q.bounds(acc[0], blocks.block_scales(0)[0], e);
        assert!(
            hi - lo < 0.2 * spread,
            "width {} vs spread {spread}",
            hi - lo
        );
    }
}
