//! Run-time CPU dispatch for the scans of the embedding strategies.
//!
//! The workspace builds for baseline x86-64 (SSE2, no POPCNT), where
//! `u64::count_ones` is a dozen instructions and a 32-float inner product
//! runs four floats at a time. An embedding scan is compiled a second
//! time with AVX2 and POPCNT enabled when the CPU has them (checked once by
//! the standard library and cached): [`avx2_dispatch!`] defines such a
//! function. The two compilations give identical
//! results: Rust never contracts `a * b + c` into an FMA, and the summation
//! order is the source's in both, so the brute-force checks hold on every
//! CPU. [`soft_scan`], `sim-soft`'s quantised bound scan, is written with
//! AVX2 intrinsics and a plain twin that computes the same integers and
//! the same f32 bounds. This is the only module of the crate with `unsafe`.
#![allow(unsafe_code)]

use hindsight_embeddings::{QuantizedQuery, SoftBlocks, BLOCK_DOCS, PLANE_DOCS};
use hindsight_index::DocId;

/// Whether the AVX2 + POPCNT compilation of the scans runs on this CPU.
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name(args) -> R` whose body is compiled twice, once as is
/// and once with AVX2 and POPCNT enabled, and which runs the second when
/// [`has_avx2`] (the body is pasted into both, so nothing depends on the
/// inliner; functions it calls that are `#[inline]` are compiled into
/// each). The body may use only its arguments.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $crate::cpu::avx2_dispatch! { $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[allow(unsafe_code)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,popcnt")]
            fn with_avx2($($arg: $ty),*) -> $ret $body
            fn baseline($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::has_avx2() {
                // SAFETY: the CPU supports AVX2 and POPCNT (checked just
                // above), all that `with_avx2`'s `#[target_feature]` needs.
                return unsafe { with_avx2($($arg),*) };
            }
            baseline($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;

pub(crate) use hindsight_core::cache::{prefetch, prefetch_slice};

/// `eta`'s scan without SIMD: calls `visit(i, d)` for every `i` (index
/// into `codes`, in order) whose Hamming distance `d = popcount(codes[i] ^
/// t)` is at most the cut-off (`max`, then what `visit` returns); returns
/// the last cut-off. [`eta_planes_scan`] visits the same docs.
#[inline]
fn eta_scan_plain<F: FnMut(usize, u32) -> u32>(
    codes: &[u64],
    t: u64,
    mut max: u32,
    visit: &mut F,
) -> u32 {
    for (i, &c) in codes.iter().enumerate() {
        let d = (c ^ t).count_ones();
        if d <= max {
            max = visit(i, d);
        }
    }
    max
}

avx2_dispatch! {
    /// Adds the Hamming distance of every code of `codes` to `t` to
    /// `hist` (index: distance; `eta`'s pilot sample), with POPCNT where
    /// the CPU has it.
    pub(crate) fn eta_histogram(codes: &[u64], t: u64, hist: &mut [u32; 65]) {
        for &c in codes {
            hist[(c ^ t).count_ones() as usize] += 1;
        }
    }
}

/// `eta`'s scan over docs `start..end` of a segment from its bit planes
/// ([`hindsight_embeddings::SegmentCodes::eta_planes`]): calls
/// `visit(doc, d)` for every doc in the range, in doc order, whose Hamming
/// distance `d = popcount(codes[doc] ^ t)` is at most the cut-off (`max`,
/// then what `visit` returns), and returns the last cut-off: exactly what
/// [`eta_scan_plain`] does on `codes[start..end]` (with doc ids offset by
/// `start`). With AVX2 a block of 256 docs is one pass of carry-save
/// adders over its 64 planes (the distances of all 256 as 7 bit-sliced
/// counters: by instruction count about 1.5 logic operations a doc,
/// against about 3 for a nibble-table popcount; not timed on its own),
/// compared with the cut-off bit-sliced as well;
/// only the docs within it are looked at one by one.
pub(crate) fn eta_planes_scan<F: FnMut(DocId, u32) -> u32>(
    planes: &[u64],
    codes: &[u64],
    t: &PlaneTarget,
    range: (DocId, DocId),
    max: u32,
    visit: &mut F,
) -> u32 {
    let (start, end) = range;
    if start >= end {
        return max;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && planes.len() >= (end as usize).div_ceil(PLANE_DOCS) * PLANE_DOCS {
        // SAFETY: the CPU supports AVX2 and POPCNT (checked just above),
        // and `planes` covers every block of the range.
        return unsafe { eta_planes_avx2(planes, codes, t, range, max, visit) };
    }
    eta_scan_plain(
        &codes[start as usize..end as usize],
        t.code,
        max,
        &mut |i, d| visit(start + i as DocId, d),
    )
}

/// A target code as the bit-plane scan reads it: plane `j` is flipped
/// (xor with all ones) where the code's bit `j` is set, so the planes then
/// hold 1 where a doc's bit differs. Made once per query, not per tile.
pub(crate) struct PlaneTarget {
    code: u64,
    flip: [[u64; 4]; 64],
}

impl PlaneTarget {
    pub(crate) fn new(code: u64) -> PlaneTarget {
        PlaneTarget {
            code,
            flip: std::array::from_fn(|j| [if code >> j & 1 == 1 { u64::MAX } else { 0 }; 4]),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn eta_planes_avx2<F: FnMut(DocId, u32) -> u32>(
    planes: &[u64],
    codes: &[u64],
    target: &PlaneTarget,
    (start, end): (DocId, DocId),
    mut max: u32,
    visit: &mut F,
) -> u32 {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_si256();
    let all = _mm256_set1_epi8(-1);
    let t = target.code;
    let flip = target.flip.as_ptr() as *const __m256i;
    // a + b + c = 2 h + l, lane by lane.
    #[inline(always)]
    unsafe fn csa(a: __m256i, b: __m256i, c: __m256i) -> (__m256i, __m256i) {
        let u = _mm256_xor_si256(a, b);
        (
            _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u, c)),
            _mm256_xor_si256(u, c),
        )
    }
    let first = start as usize / PLANE_DOCS;
    let last = (end as usize).div_ceil(PLANE_DOCS);
    for b in first..last {
        // SAFETY: `planes` holds `last * PLANE_DOCS` words (checked by
        // the caller), so block `b`'s 64 planes of 4 words are in bounds.
        let p = unsafe { planes.as_ptr().add(b * PLANE_DOCS) } as *const __m256i;
        // SAFETY: `j < 64`: plane `j` of the block and row `j` of `flip`.
        let x = |j: usize| unsafe {
            _mm256_xor_si256(
                _mm256_loadu_si256(p.add(j)),
                _mm256_loadu_si256(flip.add(j)),
            )
        };
        // Harley-Seal: 16 planes a round into ones..eights plus one
        // sixteens vector; the invariant is distance = ones + 2 twos +
        // 4 fours + 8 eights + 16 (sum of the sixteens).
        let (mut ones, mut twos, mut fours, mut eights) = (zero, zero, zero, zero);
        let mut sixteens = [zero; 4];
        // Planes j..j + 8 into (ones, twos), giving two fours carries.
        let eight = |ones: __m256i, twos: __m256i, j: usize| unsafe {
            let (twos_a, o) = csa(ones, x(j), x(j + 1));
            let (twos_b, o) = csa(o, x(j + 2), x(j + 3));
            let (fours_a, tw) = csa(twos, twos_a, twos_b);
            let (twos_a, o) = csa(o, x(j + 4), x(j + 5));
            let (twos_b, o) = csa(o, x(j + 6), x(j + 7));
            let (fours_b, tw) = csa(tw, twos_a, twos_b);
            (o, tw, fours_a, fours_b)
        };
        for (r, sixteen) in sixteens.iter_mut().enumerate() {
            let (o, tw, fours_a, fours_b) = eight(ones, twos, 16 * r);
            let (eights_a, fo) = csa(fours, fours_a, fours_b);
            let (o, tw, fours_a, fours_b) = eight(o, tw, 16 * r + 8);
            let (eights_b, fo) = csa(fo, fours_a, fours_b);
            let (s, e) = csa(eights, eights_a, eights_b);
            (ones, twos, fours, eights) = (o, tw, fo, e);
            *sixteen = s;
        }
        // The four sixteens (0..=4 each lane) in binary: b16 + 2 b32 + 4 b64.
        let (c32a, b16) = csa(sixteens[0], sixteens[1], sixteens[2]);
        let c32b = _mm256_and_si256(b16, sixteens[3]);
        let b16 = _mm256_xor_si256(b16, sixteens[3]);
        let b32 = _mm256_xor_si256(c32a, c32b);
        let b64 = _mm256_and_si256(c32a, c32b);
        let bits = [ones, twos, fours, eights, b16, b32, b64];
        // Every distance is at most 64; below that, distance > max
        // bit-sliced from the top bit down.
        let within = if max >= 64 {
            all
        } else {
            let (mut gt, mut eq) = (zero, all);
            for (k, &bit) in bits.iter().enumerate().rev() {
                if max >> k & 1 == 0 {
                    gt = _mm256_or_si256(gt, _mm256_and_si256(eq, bit));
                    eq = _mm256_andnot_si256(bit, eq);
                } else {
                    eq = _mm256_and_si256(eq, bit);
                }
            }
            _mm256_andnot_si256(gt, all)
        };
        if _mm256_testz_si256(within, within) != 0 {
            continue;
        }
        // The docs within: their distances come from the counters (the
        // codes themselves are not read: another cache miss each).
        let mut words = [0u64; 4];
        let mut counts = [[0u64; 4]; 7];
        // SAFETY: `words` and each `counts[k]` are 32 bytes.
        unsafe {
            _mm256_storeu_si256(words.as_mut_ptr().cast(), within);
            for (c, &bit) in counts.iter_mut().zip(&bits) {
                _mm256_storeu_si256(c.as_mut_ptr().cast(), bit);
            }
        }
        let base = b * PLANE_DOCS;
        for (w, &word) in words.iter().enumerate() {
            let mut m = word;
            while m != 0 {
                let lane = m.trailing_zeros();
                m &= m - 1;
                let doc = base + 64 * w + lane as usize;
                if doc < start as usize || doc >= end as usize {
                    continue;
                }
                let d = counts
                    .iter()
                    .enumerate()
                    .map(|(k, c)| ((c[w] >> lane & 1) as u32) << k)
                    .sum::<u32>();
                debug_assert_eq!(d, (codes[doc] ^ t).count_ones());
                if d <= max {
                    max = visit(doc as DocId, d);
                }
            }
        }
    }
    max
}

/// `sim-soft`'s quantised scan (bounds in
/// [`hindsight_embeddings::quantized`]) over docs `start..end` of `blocks`:
/// calls `visit(doc, acc)` for every doc whose upper bound is at least
/// `cut`, in doc order, where `acc` is the doc's integer product
/// `<q_t, q_v>`; `visit` returns the cut from then on. Returns the last
/// cut. On a CPU with AVX2 eight docs are bounded at a time (`maddubs` on
/// the blocked `i8` layout); the integers and the f32 operations that
/// compare them with the cut are the same on both paths.
pub(crate) fn soft_scan<F: FnMut(DocId, i32) -> f32>(
    blocks: &SoftBlocks,
    q: &QuantizedQuery,
    e: f32,
    range: (DocId, DocId),
    cut: f32,
    visit: &mut F,
) -> f32 {
    if range.0 >= range.1 {
        return cut;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && blocks.groups() <= MAX_GROUPS {
        // SAFETY: the CPU supports AVX2 (checked just above), all that
        // `soft_scan_avx2`'s `#[target_feature]` needs. The common
        // dimensions get a copy with the group loop unrolled.
        return unsafe {
            match blocks.groups() {
                4 => soft_scan_avx2::<4, F>(blocks, q, e, range, cut, visit),
                8 => soft_scan_avx2::<8, F>(blocks, q, e, range, cut, visit),
                16 => soft_scan_avx2::<16, F>(blocks, q, e, range, cut, visit),
                _ => soft_scan_avx2::<0, F>(blocks, q, e, range, cut, visit),
            }
        };
    }
    soft_scan_plain(blocks, q, e, range, cut, visit)
}

/// How many blocks ahead `soft_scan` asks for the bytes of (2 KB at
/// dimension 32).
const PREFETCH_BLOCKS: usize = 8;

/// The lanes of block `b` that lie in `start..end`, as a bit mask.
#[inline]
fn lanes_in(b: usize, (start, end): (DocId, DocId)) -> u32 {
    let first = b * BLOCK_DOCS;
    let lo = (start as usize).saturating_sub(first).min(BLOCK_DOCS);
    let hi = (end as usize).saturating_sub(first).min(BLOCK_DOCS);
    ((1u32 << hi) - 1) & !((1u32 << lo) - 1)
}

fn soft_scan_plain<F: FnMut(DocId, i32) -> f32>(
    blocks: &SoftBlocks,
    q: &QuantizedQuery,
    e: f32,
    range: (DocId, DocId),
    mut cut: f32,
    visit: &mut F,
) -> f32 {
    let mut thr = q.coarse_threshold(cut, e, blocks.max_scale());
    for b in range.0 as usize / BLOCK_DOCS..(range.1 as usize).div_ceil(BLOCK_DOCS) {
        let acc = blocks.block_dots(b, q);
        let scales = blocks.block_scales(b);
        let lanes = lanes_in(b, range);
        for lane in 0..BLOCK_DOCS {
            if lanes & (1 << lane) != 0
                && acc[lane] > thr
                && q.bounds(acc[lane], scales[lane], e).1 >= cut
            {
                cut = visit((b * BLOCK_DOCS + lane) as DocId, acc[lane]);
                thr = q.coarse_threshold(cut, e, blocks.max_scale());
            }
        }
    }
    cut
}

/// The most groups (dimension / 4) the AVX2 scan keeps in registers.
const MAX_GROUPS: usize = 16;

/// `G`: the number of groups when known at compile time (the loop over
/// them unrolled), 0 for any other (at most [`MAX_GROUPS`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn soft_scan_avx2<const G: usize, F: FnMut(DocId, i32) -> f32>(
    blocks: &SoftBlocks,
    q: &QuantizedQuery,
    e: f32,
    range: (DocId, DocId),
    mut cut: f32,
    visit: &mut F,
) -> f32 {
    use std::arch::x86_64::*;
    let groups = if G > 0 { G } else { blocks.groups() };
    // The target's bytes four at a time, broadcast to the 8 lanes, and
    // their absolute values (maddubs multiplies unsigned by signed: |t| by
    // sign(t) * v, which is t * v; |t|, |v| <= 127, so no pair saturates).
    let mut tq = [_mm256_setzero_si256(); MAX_GROUPS];
    let mut ta = [_mm256_setzero_si256(); MAX_GROUPS];
    for g in 0..groups {
        tq[g] = _mm256_set1_epi32(q.packed[g]);
        ta[g] = _mm256_abs_epi8(tq[g]);
    }
    let ones = _mm256_set1_epi16(1);
    let max_scale = blocks.max_scale();
    let mut thr_s = q.coarse_threshold(cut, e, max_scale);
    let mut thr = _mm256_set1_epi32(thr_s);
    let first = range.0 as usize / BLOCK_DOCS;
    let last = (range.1 as usize).div_ceil(BLOCK_DOCS);
    for b in first..last {
        if b + PREFETCH_BLOCKS < last {
            // The hardware prefetcher alone left the loads waiting (perf:
            // most samples on the first use of a block's bytes).
            let ahead = blocks.block(b + PREFETCH_BLOCKS);
            for off in (0..ahead.len()).step_by(64) {
                prefetch(ahead[off..].as_ptr());
            }
        }
        let block = blocks.block(b);
        let mut acc = _mm256_setzero_si256();
        for g in 0..groups {
            // SAFETY: `block` holds `groups * 32` bytes.
            let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(g * 32).cast()) };
            let p = _mm256_maddubs_epi16(ta[g], _mm256_sign_epi8(v, tq[g]));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
        }
        let mut hits = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(acc, thr))) as u32;
        if hits == 0 {
            continue;
        }
        if b == first || b + 1 == last {
            hits &= lanes_in(b, range);
        }
        if hits == 0 {
            continue;
        }
        let scales = blocks.block_scales(b);
        let mut lanes = [0i32; BLOCK_DOCS];
        // SAFETY: `lanes` holds 8 i32.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
        while hits != 0 {
            let lane = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            // The pre-test with the current cut (it may have risen since
            // the block was compared), then the bound itself.
            if lanes[lane] > thr_s && q.bounds(lanes[lane], scales[lane], e).1 >= cut {
                cut = visit((b * BLOCK_DOCS + lane) as DocId, lanes[lane]);
                thr_s = q.coarse_threshold(cut, e, max_scale);
            }
        }
        thr = _mm256_set1_epi32(thr_s);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    avx2_dispatch! {
        fn dot_and_popcount(a: &[f32], b: &[f32], codes: &[u64]) -> (u32, u32) {
            let d = hindsight_embeddings::dot(a, b);
            (d.to_bits(), codes.iter().map(|c| c.count_ones()).sum())
        }
    }

    #[test]
    fn both_compilations_agree() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let codes: Vec<u64> = (0..100u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let plain = (
            hindsight_embeddings::dot(&a, &b).to_bits(),
            codes.iter().map(|c| c.count_ones()).sum(),
        );
        assert_eq!(dot_and_popcount(&a, &b, &codes), plain);
        prefetch(a.as_ptr());
    }

    /// The bit-plane scan visits exactly the docs, distances and order of
    /// the plain scan over the same range, with a cut-off that falls as
    /// docs are visited, for ranges that start and end inside blocks,
    /// codes of every distance (0 to 64) and every starting cut-off.
    #[test]
    fn the_plane_scan_equals_the_plain_scan() {
        let mut state = 3u64;
        for case in 0..60u64 {
            state = hindsight_core::splitmix64(state ^ case);
            let len = 1 + (state % 3000) as usize;
            let t = hindsight_core::splitmix64(state ^ 1);
            // Codes at every distance from t: flip the first k bits of a
            // random permutation (cheaply: of a rotated mask).
            let codes: Vec<u64> = (0..len as u64)
                .map(|i| {
                    let r = hindsight_core::splitmix64(state ^ (i + 2));
                    let k = (r % 65) as u32;
                    let mask = if k == 64 {
                        u64::MAX
                    } else {
                        ((1u64 << k) - 1).rotate_left((r >> 8) as u32 % 64)
                    };
                    match case % 3 {
                        0 => r,
                        _ => t ^ mask,
                    }
                })
                .collect();
            let planes = hindsight_embeddings::transpose_codes(&codes);
            let start = (state >> 12) as usize % len;
            let end = start + (state >> 24) as usize % (len - start + 1);
            let max0 = [64u32, 40, 31, 20, 3, 0][case as usize % 6];
            let n = 1 + (state >> 40) as usize % 60;
            let run = |planes_path: bool| {
                let mut seen: Vec<(DocId, u32)> = Vec::new();
                let mut cut = max0;
                let mut visit = |doc: DocId, d: u32| {
                    seen.push((doc, d));
                    // A cut-off that falls once n docs were seen.
                    if seen.len().is_multiple_of(n) && cut > 0 {
                        cut -= 1;
                    }
                    cut
                };
                let last = if planes_path {
                    let target = PlaneTarget::new(t);
                    eta_planes_scan(
                        &planes,
                        &codes,
                        &target,
                        (start as DocId, end as DocId),
                        max0,
                        &mut visit,
                    )
                } else {
                    eta_scan_plain(&codes[start..end], t, max0, &mut |i, d| {
                        visit((start + i) as DocId, d)
                    })
                };
                (seen, last)
            };
            assert_eq!(
                run(true),
                run(false),
                "case {case}: {len} codes, {start}..{end}, max {max0}"
            );
        }
    }

    /// Both versions of `soft_scan` visit the same docs with the same
    /// integers and end on the same cut, for ranges that start and end
    /// inside blocks and a cut that rises as docs are visited.
    #[test]
    fn both_soft_scans_agree() {
        let dim = 13;
        let docs: Vec<Vec<f32>> = (0..101u64)
            .map(|d| {
                (0..dim as u64)
                    .map(|i| (hindsight_core::splitmix64(d * 31 + i) % 2001) as f32 / 1000.0 - 1.0)
                    .collect()
            })
            .collect();
        let blocks = SoftBlocks::build(dim, docs.len(), |d| &docs[d as usize]);
        let t: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.7).sin()).collect();
        let q = QuantizedQuery::new(&t, blocks.groups());
        let e = q.err * blocks.max_norm();
        for range in [(0, 101), (3, 97), (9, 15), (17, 18), (40, 40)] {
            // 0: plain; 1: AVX2 with the groups known at run time; 2:
            // AVX2 unrolled for 4 groups (this dimension's).
            let run = |path: u8| {
                let mut seen = Vec::new();
                let mut visit = |doc: DocId, acc: i32| {
                    seen.push((doc, acc));
                    // A rising cut: the largest lower bound so far.
                    let s =
                        blocks.block_scales(doc as usize / BLOCK_DOCS)[doc as usize % BLOCK_DOCS];
                    seen.iter()
                        .fold(f32::NEG_INFINITY, |m, &(_, a)| m.max(q.bounds(a, s, e).0))
                };
                let start = f32::NEG_INFINITY;
                let cut = match path {
                    0 => soft_scan_plain(&blocks, &q, e, range, start, &mut visit),
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 checked.
                    1 if has_avx2() => unsafe {
                        soft_scan_avx2::<0, _>(&blocks, &q, e, range, start, &mut visit)
                    },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 checked.
                    2 if has_avx2() => unsafe {
                        soft_scan_avx2::<4, _>(&blocks, &q, e, range, start, &mut visit)
                    },
                    _ => return None,
                };
                Some((seen, cut.to_bits()))
            };
            let plain = run(0).unwrap();
            assert!(plain.0.iter().all(|&(d, _)| d >= range.0 && d < range.1));
            for path in [1, 2] {
                if let Some(avx) = run(path) {
                    assert_eq!(avx, plain, "range {range:?}, path {path}");
                }
            }
        }
    }
}
