//! Cache hints shared by the index (row reads) and the retrieval kernels.

#![allow(unsafe_code)]

/// Asks the CPU to bring the cache line at `p` closer (a hint: no effect
/// on results, never faults, whatever `p` is).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, part of every x86-64 CPU, and a
    // prefetch neither reads into the program nor faults on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] of every cache line of `s`.
#[inline(always)]
pub fn prefetch_slice<T>(s: &[T]) {
    let bytes = std::mem::size_of_val(s);
    let p = s.as_ptr().cast::<u8>();
    let mut at = 0;
    while at < bytes {
        prefetch(p.wrapping_add(at));
        at += 64;
    }
    // An unaligned slice may end on one more line.
    if bytes > 0 {
        prefetch(p.wrapping_add(bytes - 1));
    }
}
