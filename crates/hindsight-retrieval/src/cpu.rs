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

use hindsight_embeddings::{QuantizedQuery, SoftBlocks, BLOCK_DOCS};
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

/// Asks the CPU to bring the cache line at `p` closer (a hint: no effect
/// on results, never faults, whatever `p` is).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, part of every x86-64 CPU, and a
    // prefetch neither reads into the program nor faults on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `eta`'s scan over one run's codes: calls `visit(i, d)` for every `i`
/// (index into `codes`, in order) whose Hamming distance `d = popcount(
/// codes[i] ^ t)` is at most `max`; `visit` returns the cut-off from then
/// on. Returns the last cut-off. With AVX2, eight codes are compared at a
/// time (popcount by nibble lookup, `vpshufb`, and one 64-bit compare per
/// four codes); both paths visit the same docs with the same distances.
pub(crate) fn eta_scan<F: FnMut(usize, u32) -> u32>(
    codes: &[u64],
    t: u64,
    max: u32,
    visit: &mut F,
) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and POPCNT (checked just above).
        return unsafe { eta_scan_avx2(codes, t, max, visit) };
    }
    eta_scan_plain(codes, t, max, visit)
}

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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn eta_scan_avx2<F: FnMut(usize, u32) -> u32>(
    codes: &[u64],
    t: u64,
    mut max: u32,
    visit: &mut F,
) -> u32 {
    use std::arch::x86_64::*;
    // Per-byte popcount of a nibble, summed per 64-bit lane by `psadbw`.
    let lut = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let tv = _mm256_set1_epi64x(t as i64);
    let popcount = |x: __m256i| {
        let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
        let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low));
        _mm256_sad_epu8(_mm256_add_epi8(lo, hi), zero)
    };
    // Distances d <= max, i.e. max + 1 > d (both below 2^63).
    let mut bound = _mm256_set1_epi64x(i64::from(max) + 1);
    let chunks = codes.len() / 8;
    for c in 0..chunks {
        let at = c * 8;
        // SAFETY: `at + 8 <= codes.len()`.
        let (a, b) = unsafe {
            let p = codes.as_ptr().add(at);
            (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(4).cast()),
            )
        };
        let da = popcount(_mm256_xor_si256(a, tv));
        let db = popcount(_mm256_xor_si256(b, tv));
        let hits = _mm256_or_si256(_mm256_cmpgt_epi64(bound, da), _mm256_cmpgt_epi64(bound, db));
        if _mm256_testz_si256(hits, hits) != 0 {
            continue;
        }
        for (i, &code) in codes[at..at + 8].iter().enumerate() {
            let d = (code ^ t).count_ones();
            if d <= max {
                max = visit(at + i, d);
            }
        }
        bound = _mm256_set1_epi64x(i64::from(max) + 1);
    }
    let rest = chunks * 8;
    for (i, &code) in codes[rest..].iter().enumerate() {
        let d = (code ^ t).count_ones();
        if d <= max {
            max = visit(rest + i, d);
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
