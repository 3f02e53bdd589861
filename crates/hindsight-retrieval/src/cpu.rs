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
//! CPU. This is the only module of the crate with `unsafe`.
#![allow(unsafe_code)]

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
}
