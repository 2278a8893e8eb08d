//! Order keys of floats: integers with the order of the floats they stand for, so that
//! the minimum and maximum of a tensor are an integer scan (no NaN special case in the
//! dependency chain, no ties between zeros of both signs). The range observers
//! (`calib::observer`) scan with them, and kernels that write a large output
//! (convolutions, FULLY_CONNECTED) fold each block of it into a [`KeyAcc`] while the
//! block is still in cache, when the interpreter is asked for output ranges
//! ([`Interpreter::run_observed_ranged`](super::Interpreter)): the observer then
//! reads the [`KeyRange`] instead of the tensor. Integer minimum and maximum do not
//! depend on the order of the values, so any split into blocks, on any thread, gives
//! the same keys as one scan.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The smallest and largest [`order_key`] of a tensor's non-NaN values (`i32::MAX`,
/// `i32::MIN` when there is none), as [`key_min_max`] computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub lo: i32,
    pub hi: i32,
}

/// A [`KeyRange`] accumulated block by block, from several threads, over one output
/// of a kernel. Only a kernel that folded every value of the output marks it
/// complete; an incomplete one gives no range (the observer scans the tensor).
pub(crate) struct KeyAcc {
    lo: AtomicI32,
    hi: AtomicI32,
    complete: AtomicBool,
}

impl Default for KeyAcc {
    fn default() -> Self {
        KeyAcc {
            lo: AtomicI32::new(i32::MAX),
            hi: AtomicI32::new(i32::MIN),
            complete: AtomicBool::new(false),
        }
    }
}

impl KeyAcc {
    /// Folds `xs` (part of the output) in.
    pub fn fold(&self, xs: &[f32]) {
        let (lo, hi) = key_min_max(xs);
        self.lo.fetch_min(lo, Ordering::Relaxed);
        self.hi.fetch_max(hi, Ordering::Relaxed);
    }

    /// Folds in keys a kernel computed itself (smallest, largest; `(i32::MAX,
    /// i32::MIN)` for none).
    pub fn fold_keys(&self, lo: i32, hi: i32) {
        self.lo.fetch_min(lo, Ordering::Relaxed);
        self.hi.fetch_max(hi, Ordering::Relaxed);
    }

    /// Says that every value of the output has been folded.
    pub fn mark_complete(&self) {
        self.complete.store(true, Ordering::Relaxed);
    }

    /// The range, if the kernel marked it complete.
    pub fn range(&self) -> Option<KeyRange> {
        self.complete.load(Ordering::Relaxed).then(|| KeyRange {
            lo: self.lo.load(Ordering::Relaxed),
            hi: self.hi.load(Ordering::Relaxed),
        })
    }
}

/// An integer with the order of the float: `a < b` ⇔ `key(a) < key(b)` for non-NaN
/// floats, with -0 just below +0. NaNs map beyond ±infinity (never compared here).
#[inline(always)]
pub(crate) fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// The float bits of an [`order_key`] (the map is its own inverse).
pub(crate) fn order_key_inverse(k: i32) -> i32 {
    k ^ (((k >> 31) as u32) >> 1) as i32
}

/// Smallest and largest [`order_key`] of the non-NaN values (`i32::MAX`, `i32::MIN`
/// when there is none: no float has those keys but NaNs), built for AVX-512 and AVX2
/// too and chosen at run time (integer min/max: every build gives the same answer).
pub(crate) fn key_min_max(xs: &[f32]) -> (i32, i32) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::interp::simd::{SimdLevel, simd_level};
        match simd_level() {
            // SAFETY: AVX-512F was detected at run time.
            SimdLevel::Avx512 => return unsafe { key_min_max_avx512(xs) },
            // SAFETY: AVX2 was detected at run time.
            SimdLevel::Avx2 => return unsafe { key_min_max_avx2(xs) },
            SimdLevel::Baseline => {}
        }
    }
    key_min_max_body(xs)
}

/// [`key_min_max_body`] in AVX-512F intrinsics: four pairs of accumulators kept in
/// registers, NaN lanes masked out of the integer minimum and maximum (the portable
/// body's select compiles to masked stores to the stack here, several times slower).
/// Integer min/max: the same answer as the body, which the tests check.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn key_min_max_avx512(xs: &[f32]) -> (i32, i32) {
    use std::arch::x86_64::*;
    const V: usize = 16;
    const U: usize = 4;
    let mut lo = [_mm512_set1_epi32(i32::MAX); U];
    let mut hi = [_mm512_set1_epi32(i32::MIN); U];
    let chunks = xs.chunks_exact(V * U);
    let rest = chunks.remainder();
    for c in chunks {
        for u in 0..U {
            // SAFETY: `c` holds V·U values, so u·V + 16 <= c.len().
            let v = unsafe { _mm512_loadu_ps(c.as_ptr().add(u * V)) };
            let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
            let b = _mm512_castps_si512(v);
            // order_key: the bits, with the magnitude bits flipped for negatives.
            let key = _mm512_xor_si512(b, _mm512_srli_epi32::<1>(_mm512_srai_epi32::<31>(b)));
            lo[u] = _mm512_mask_min_epi32(lo[u], ordered, lo[u], key);
            hi[u] = _mm512_mask_max_epi32(hi[u], ordered, hi[u], key);
        }
    }
    let l = _mm512_min_epi32(
        _mm512_min_epi32(lo[0], lo[1]),
        _mm512_min_epi32(lo[2], lo[3]),
    );
    let h = _mm512_max_epi32(
        _mm512_max_epi32(hi[0], hi[1]),
        _mm512_max_epi32(hi[2], hi[3]),
    );
    let (mut la, mut ha) = ([0i32; V], [0i32; V]);
    // SAFETY: each array holds 16 i32 (64 bytes); unaligned stores.
    unsafe {
        _mm512_storeu_si512(la.as_mut_ptr().cast(), l);
        _mm512_storeu_si512(ha.as_mut_ptr().cast(), h);
    }
    let (rl, rh) = key_min_max_body(rest);
    (
        la.into_iter().fold(rl, i32::min),
        ha.into_iter().fold(rh, i32::max),
    )
}

/// [`key_min_max_body`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn key_min_max_avx2(xs: &[f32]) -> (i32, i32) {
    key_min_max_body(xs)
}

#[inline(always)]
pub(crate) fn key_min_max_body(xs: &[f32]) -> (i32, i32) {
    const L: usize = 32;
    let mut lo = [i32::MAX; L];
    let mut hi = [i32::MIN; L];
    let chunks = xs.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            let (x, key) = (c[k], order_key(c[k]));
            let nan = x.is_nan();
            lo[k] = lo[k].min(if nan { i32::MAX } else { key });
            hi[k] = hi[k].max(if nan { i32::MIN } else { key });
        }
    }
    let (mut l, mut h) = (i32::MAX, i32::MIN);
    for k in 0..L {
        l = l.min(lo[k]);
        h = h.max(hi[k]);
    }
    for &x in rest {
        if !x.is_nan() {
            l = l.min(order_key(x));
            h = h.max(order_key(x));
        }
    }
    (l, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 intrinsics give the portable body's keys (NaN of both signs,
    /// zeros of both signs, infinities, every length around the 64-value step).
    #[test]
    fn avx512_keys_match_the_portable_body() {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            let specials = [
                0.0,
                -0.0,
                f32::NAN,
                -f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE,
                -1e30,
            ];
            for n in 0..300usize {
                for salt in 0..3u32 {
                    let xs: Vec<f32> = (0..n)
                        .map(|i| {
                            let h = (i as u32).wrapping_mul(2654435761).wrapping_add(salt * 977);
                            if h.is_multiple_of(5) {
                                specials[(h / 5) as usize % specials.len()]
                            } else {
                                ((h % 20011) as f32 - 10005.0) / 77.0
                            }
                        })
                        .collect();
                    // SAFETY: AVX-512F was detected above.
                    let fast = unsafe { key_min_max_avx512(&xs) };
                    assert_eq!(fast, key_min_max_body(&xs), "n {n} salt {salt}");
                }
            }
            // Nothing but NaN: no key.
            // SAFETY: as above.
            let none = unsafe { key_min_max_avx512(&[f32::NAN; 70]) };
            assert_eq!(none, (i32::MAX, i32::MIN));
        }
    }

    /// Blocks folded in any order, from several threads, give one scan's keys.
    #[test]
    fn folded_blocks_give_one_scans_keys() {
        use rayon::prelude::*;
        let xs: Vec<f32> = (0..10_000)
            .map(|i| match i % 997 {
                0 => f32::NAN,
                1 => -0.0,
                _ => ((i as f32) * 0.013).sin() * 40.0,
            })
            .collect();
        let acc = KeyAcc::default();
        assert_eq!(acc.range(), None);
        xs.par_chunks(313).rev().for_each(|c| acc.fold(c));
        acc.mark_complete();
        let (lo, hi) = key_min_max(&xs);
        assert_eq!(acc.range(), Some(KeyRange { lo, hi }));
        assert_eq!(
            f32::from_bits(order_key_inverse(lo) as u32),
            xs.iter()
                .copied()
                .filter(|x| !x.is_nan())
                .fold(f32::INFINITY, f32::min)
        );
    }
}
