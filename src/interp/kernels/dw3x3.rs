//! The 3×3 DEPTHWISE_CONV_2D interior in AVX-512F and AVX2 intrinsics (channel
//! multiplier 1, dilation 1, stride 1 or 2): the fast path of `conv::depthwise_row` for
//! the pixels whose window lies inside the input along x.
//!
//! Per block of 16 channels (AVX-512F; a last block of 8 and CPUs without AVX-512 in
//! AVX2) the 3 × 3 weights stay in registers over the whole output row; [`P`]
//! neighbouring output pixels are computed at once, each input vector loaded once and
//! multiplied into every pixel whose window covers it (stride 1: 6 loads for 4 pixels
//! instead of 12 per filter row). Every output element is still
//! `bias + tap₀ + tap₁ + …` in (ky, kx) order with a separate multiply and add per tap
//! (no fused multiply-add): the bits of `conv::depthwise_pixels`, its twin in the
//! tests, and of the build before this kernel. The clamp of the fused activation and
//! the fold of the order keys ([`crate::interp::keys`]) are applied in registers
//! before the store, so the row is not read again.

use std::ops::Range;

use crate::interp::simd::SimdLevel;

/// Output pixels computed together.
#[cfg(target_arch = "x86_64")]
const P: usize = 4;

/// One output row's 3×3 interior (see the module docs).
pub(crate) struct Row<'a> {
    /// The whole input, NHWC.
    pub x: &'a [f32],
    /// The filter, `[3, 3, c]`.
    pub w: &'a [f32],
    /// Channels (input = output, multiplier 1).
    pub c: usize,
    /// Input width.
    pub in_w: usize,
    /// Per filter row inside the input, in ky order: (offset of the input row's first
    /// element in `x`, ky).
    pub rows: &'a [(usize, usize)],
    /// Stride along x: 1 or 2.
    pub stride: usize,
    /// Padding before the first input column.
    pub pad: usize,
    /// The interior output pixels (every tap inside the input along x).
    pub pixels: Range<usize>,
    /// Added first, per channel.
    pub bias: Option<&'a [f32]>,
    /// The fused activation's `[lo, hi]`, if it clamps.
    pub clamp: Option<(f32, f32)>,
}

/// Order keys (smallest, largest) of what [`run`] stored, NaNs left out: the
/// [`key_min_max`](crate::interp::keys::key_min_max) of those values.
pub(crate) type Keys = (i32, i32);

/// Channels `0..c / 8 · 8` of the interior pixels of `row` into `orow` (the output row,
/// `out_w · c` values), with the vector instructions of `level` (AVX-512F: blocks of 16
/// channels, then one of 8 in AVX2 when `c mod 16 ≥ 8`; AVX2: blocks of 8; the bits are
/// the same), when the CPU runs them and the geometry fits; `None` leaves `orow`
/// untouched. With `fold_keys`, also the keys of the values written (`(i32::MAX,
/// i32::MIN)` when all are NaN).
pub(crate) fn run(row: &Row, orow: &mut [f32], fold_keys: bool, level: SimdLevel) -> Option<Keys> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2");
        if !fits(row, orow.len()) || !avx2 {
            return None;
        }
        let c16 = match level {
            SimdLevel::Avx512 if std::is_x86_feature_detected!("avx512f") => row.c / 16 * 16,
            SimdLevel::Avx512 | SimdLevel::Avx2 => 0,
            SimdLevel::Baseline => return None,
        };
        // SAFETY: AVX-512F (when c16 > 0) and AVX2 were detected at run time; `fits`
        // checked every index the kernels read and write, for channels 0..c / 8 · 8.
        let (wide, narrow) = unsafe {
            let wide = if c16 > 0 {
                avx512::row(row, orow, fold_keys)
            } else {
                (i32::MAX, i32::MIN)
            };
            (wide, avx2::row(row, orow, fold_keys, c16))
        };
        Some((wide.0.min(narrow.0), wide.1.max(narrow.1)))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (fits(row, orow.len()), fold_keys, level);
        None
    }
}

/// True when every load and store of the kernel stays inside `x`, `w`, `bias` and an
/// output row of `out_len` values.
fn fits(r: &Row, out_len: usize) -> bool {
    let Range { start, end } = r.pixels;
    if r.c < 8 || !(1..=2).contains(&r.stride) || r.rows.is_empty() || r.rows.len() > 3 {
        return false;
    }
    if start >= end || start * r.stride < r.pad {
        return false;
    }
    // The last pixel's window: columns last_col ..= last_col + 2.
    let last_col = (end - 1) * r.stride - r.pad;
    let Some(row_len) = r.in_w.checked_mul(r.c) else {
        return false;
    };
    last_col + 2 < r.in_w
        && r.rows
            .iter()
            .all(|&(off, ky)| ky < 3 && off.checked_add(row_len).is_some_and(|e| e <= r.x.len()))
        && r.w.len() >= 9 * r.c
        && r.bias.is_none_or(|b| b.len() >= r.c)
        && end.checked_mul(r.c).is_some_and(|e| e <= out_len)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Keys, P, Row};

    /// The kernel over the channel blocks of 8 of the row from channel `from` (a
    /// multiple of 8) on.
    ///
    /// # Safety
    /// AVX2 must be available and [`super::fits`] true.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn row(r: &Row, orow: &mut [f32], fold_keys: bool, from: usize) -> Keys {
        let mut keys = (_mm256_set1_epi32(i32::MAX), _mm256_set1_epi32(i32::MIN));
        for c0 in (from..r.c / 8 * 8).step_by(8) {
            // SAFETY: forwarded contract.
            unsafe {
                match (r.rows.len(), r.stride) {
                    (3, 1) => block::<3, 1>(r, c0, orow, fold_keys, &mut keys),
                    (3, _) => block::<3, 2>(r, c0, orow, fold_keys, &mut keys),
                    (2, 1) => block::<2, 1>(r, c0, orow, fold_keys, &mut keys),
                    (2, _) => block::<2, 2>(r, c0, orow, fold_keys, &mut keys),
                    (_, 1) => block::<1, 1>(r, c0, orow, fold_keys, &mut keys),
                    (_, _) => block::<1, 2>(r, c0, orow, fold_keys, &mut keys),
                }
            }
        }
        let (mut lo, mut hi) = ([0i32; 8], [0i32; 8]);
        // SAFETY: each array holds 8 i32 (32 bytes); unaligned stores.
        unsafe {
            _mm256_storeu_si256(lo.as_mut_ptr().cast(), keys.0);
            _mm256_storeu_si256(hi.as_mut_ptr().cast(), keys.1);
        }
        (
            lo.into_iter().fold(i32::MAX, i32::min),
            hi.into_iter().fold(i32::MIN, i32::max),
        )
    }

    /// Channels `c0..c0 + 8` of the row's interior pixels, `R` filter rows inside the
    /// input, stride `S`.
    ///
    /// # Safety
    /// As [`row`]; `c0 + 8 <= c`.
    #[target_feature(enable = "avx2")]
    unsafe fn block<const R: usize, const S: usize>(
        r: &Row,
        c0: usize,
        orow: &mut [f32],
        fold_keys: bool,
        keys: &mut (__m256i, __m256i),
    ) {
        let c = r.c;
        let (xp, wp, op) = (r.x.as_ptr(), r.w.as_ptr(), orow.as_mut_ptr());
        // Input row pointers at channel c0 and the weights of their filter rows.
        let mut xr = [xp; R];
        let mut wv = [[_mm256_setzero_ps(); 3]; R];
        for i in 0..R {
            let (off, ky) = r.rows[i];
            // SAFETY: `fits`: the input row lies inside `x`, ky < 3 and `w` holds 9·c.
            unsafe {
                xr[i] = xp.add(off + c0);
                for (kx, v) in wv[i].iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(wp.add((ky * 3 + kx) * c + c0));
                }
            }
        }
        let start = match r.bias {
            // SAFETY: `fits`: the bias holds c values.
            Some(b) => unsafe { _mm256_loadu_ps(b.as_ptr().add(c0)) },
            None => _mm256_setzero_ps(),
        };
        let g = Group {
            xr,
            wv,
            start,
            c,
            pad: r.pad,
            clamp: r
                .clamp
                .map(|(lo, hi)| (_mm256_set1_ps(lo), _mm256_set1_ps(hi))),
            fold_keys,
        };
        let mut ox = r.pixels.start;
        while ox + P <= r.pixels.end {
            // SAFETY: pixels ox..ox + P are interior (`fits`); forwarded contract.
            unsafe { g.pixels::<P, S>(ox, op.add(ox * c + c0), keys) };
            ox += P;
        }
        while ox < r.pixels.end {
            // SAFETY: as above, for one pixel.
            unsafe { g.pixels::<1, S>(ox, op.add(ox * c + c0), keys) };
            ox += 1;
        }
    }

    /// What a group of pixels of one channel block shares.
    struct Group<const R: usize> {
        xr: [*const f32; R],
        wv: [[__m256; 3]; R],
        start: __m256,
        c: usize,
        pad: usize,
        clamp: Option<(__m256, __m256)>,
        fold_keys: bool,
    }

    impl<const R: usize> Group<R> {
        /// Output pixels `ox..ox + N` (stride `S`) at `out` (pixel `ox`, channel c0).
        ///
        /// # Safety
        /// AVX2; the pixels are interior (every tap inside the input row along x), and
        /// `out + n·c .. + 8` is writable for n < N.
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn pixels<const N: usize, const S: usize>(
            &self,
            ox: usize,
            out: *mut f32,
            keys: &mut (__m256i, __m256i),
        ) {
            let c = self.c;
            let col = ox * S - self.pad;
            let mut acc = [self.start; N];
            for i in 0..R {
                // Input columns col .. col + (N-1)·S + 3: each loaded once, multiplied
                // into every pixel whose window covers it, in kx order per pixel.
                for j in 0..(N - 1) * S + 3 {
                    // SAFETY: interior pixels: column col + j is inside the row.
                    let xv = unsafe { _mm256_loadu_ps(self.xr[i].add((col + j) * c)) };
                    for (n, a) in acc.iter_mut().enumerate() {
                        if j >= n * S && j - n * S < 3 {
                            *a = _mm256_add_ps(*a, _mm256_mul_ps(xv, self.wv[i][j - n * S]));
                        }
                    }
                }
            }
            for (n, a) in acc.iter_mut().enumerate() {
                if let Some((lo, hi)) = self.clamp {
                    // `a.max(lo).min(hi)` as f32 does it: lo when a < lo or NaN, a
                    // otherwise (-0 stays -0 against lo = +0); then hi when hi < a.
                    let below = _mm256_cmp_ps::<_CMP_NGE_UQ>(*a, lo);
                    *a = _mm256_min_ps(hi, _mm256_blendv_ps(*a, lo, below));
                }
                // SAFETY: see the function's contract.
                unsafe { _mm256_storeu_ps(out.add(n * c), *a) };
                if self.fold_keys {
                    let b = _mm256_castps_si256(*a);
                    // order_key: the bits, with the magnitude bits flipped for negatives.
                    let key =
                        _mm256_xor_si256(b, _mm256_srli_epi32::<1>(_mm256_srai_epi32::<31>(b)));
                    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(*a, *a));
                    let (klo, khi) = (
                        _mm256_blendv_epi8(key, _mm256_set1_epi32(i32::MAX), nan),
                        _mm256_blendv_epi8(key, _mm256_set1_epi32(i32::MIN), nan),
                    );
                    keys.0 = _mm256_min_epi32(keys.0, klo);
                    keys.1 = _mm256_max_epi32(keys.1, khi);
                }
            }
        }
    }
}

/// The AVX-512F twin of [`avx2`]: blocks of 16 channels, the same operations in the
/// same order per element.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Keys, P, Row};

    /// The kernel over channels `0..c / 16 · 16` of the row.
    ///
    /// # Safety
    /// AVX-512F must be available and [`super::fits`] true.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row(r: &Row, orow: &mut [f32], fold_keys: bool) -> Keys {
        let mut keys = (_mm512_set1_epi32(i32::MAX), _mm512_set1_epi32(i32::MIN));
        for c0 in (0..r.c / 16 * 16).step_by(16) {
            // SAFETY: forwarded contract; c0 + 16 <= c.
            unsafe {
                match (r.rows.len(), r.stride) {
                    (3, 1) => block::<3, 1>(r, c0, orow, fold_keys, &mut keys),
                    (3, _) => block::<3, 2>(r, c0, orow, fold_keys, &mut keys),
                    (2, 1) => block::<2, 1>(r, c0, orow, fold_keys, &mut keys),
                    (2, _) => block::<2, 2>(r, c0, orow, fold_keys, &mut keys),
                    (_, 1) => block::<1, 1>(r, c0, orow, fold_keys, &mut keys),
                    (_, _) => block::<1, 2>(r, c0, orow, fold_keys, &mut keys),
                }
            }
        }
        (
            _mm512_reduce_min_epi32(keys.0),
            _mm512_reduce_max_epi32(keys.1),
        )
    }

    /// Channels `c0..c0 + 16` of the row's interior pixels, `R` filter rows inside the
    /// input, stride `S`.
    ///
    /// # Safety
    /// As [`row`]; `c0 + 16 <= c`.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const S: usize>(
        r: &Row,
        c0: usize,
        orow: &mut [f32],
        fold_keys: bool,
        keys: &mut (__m512i, __m512i),
    ) {
        let c = r.c;
        let (xp, wp, op) = (r.x.as_ptr(), r.w.as_ptr(), orow.as_mut_ptr());
        let mut xr = [xp; R];
        let mut wv = [[_mm512_setzero_ps(); 3]; R];
        for i in 0..R {
            let (off, ky) = r.rows[i];
            // SAFETY: `fits`: the input row lies inside `x`, ky < 3 and `w` holds 9·c.
            unsafe {
                xr[i] = xp.add(off + c0);
                for (kx, v) in wv[i].iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(wp.add((ky * 3 + kx) * c + c0));
                }
            }
        }
        let start = match r.bias {
            // SAFETY: `fits`: the bias holds c values.
            Some(b) => unsafe { _mm512_loadu_ps(b.as_ptr().add(c0)) },
            None => _mm512_setzero_ps(),
        };
        let g = Group {
            xr,
            wv,
            start,
            c,
            pad: r.pad,
            clamp: r
                .clamp
                .map(|(lo, hi)| (_mm512_set1_ps(lo), _mm512_set1_ps(hi))),
            fold_keys,
        };
        let mut ox = r.pixels.start;
        while ox + P <= r.pixels.end {
            // SAFETY: pixels ox..ox + P are interior (`fits`); forwarded contract.
            unsafe { g.pixels::<P, S>(ox, op.add(ox * c + c0), keys) };
            ox += P;
        }
        while ox < r.pixels.end {
            // SAFETY: as above, for one pixel.
            unsafe { g.pixels::<1, S>(ox, op.add(ox * c + c0), keys) };
            ox += 1;
        }
    }

    /// What a group of pixels of one channel block shares.
    struct Group<const R: usize> {
        xr: [*const f32; R],
        wv: [[__m512; 3]; R],
        start: __m512,
        c: usize,
        pad: usize,
        clamp: Option<(__m512, __m512)>,
        fold_keys: bool,
    }

    impl<const R: usize> Group<R> {
        /// Output pixels `ox..ox + N` (stride `S`) at `out` (pixel `ox`, channel c0).
        ///
        /// # Safety
        /// AVX-512F; the pixels are interior (every tap inside the input row along x),
        /// and `out + n·c .. + 16` is writable for n < N.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn pixels<const N: usize, const S: usize>(
            &self,
            ox: usize,
            out: *mut f32,
            keys: &mut (__m512i, __m512i),
        ) {
            let c = self.c;
            let col = ox * S - self.pad;
            let mut acc = [self.start; N];
            for i in 0..R {
                // Input columns col .. col + (N-1)·S + 3: each loaded once, multiplied
                // into every pixel whose window covers it, in kx order per pixel.
                for j in 0..(N - 1) * S + 3 {
                    // SAFETY: interior pixels: column col + j is inside the row.
                    let xv = unsafe { _mm512_loadu_ps(self.xr[i].add((col + j) * c)) };
                    for (n, a) in acc.iter_mut().enumerate() {
                        if j >= n * S && j - n * S < 3 {
                            *a = _mm512_add_ps(*a, _mm512_mul_ps(xv, self.wv[i][j - n * S]));
                        }
                    }
                }
            }
            for (n, a) in acc.iter_mut().enumerate() {
                if let Some((lo, hi)) = self.clamp {
                    // As the AVX2 kernel: lo when a < lo or NaN, then hi when hi < a.
                    let below = _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(*a, lo);
                    *a = _mm512_min_ps(hi, _mm512_mask_blend_ps(below, *a, lo));
                }
                // SAFETY: see the function's contract.
                unsafe { _mm512_storeu_ps(out.add(n * c), *a) };
                if self.fold_keys {
                    let b = _mm512_castps_si512(*a);
                    // order_key: the bits, with the magnitude bits flipped for negatives.
                    let key =
                        _mm512_xor_si512(b, _mm512_srli_epi32::<1>(_mm512_srai_epi32::<31>(b)));
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(*a, *a);
                    let (klo, khi) = (
                        _mm512_mask_blend_epi32(nan, key, _mm512_set1_epi32(i32::MAX)),
                        _mm512_mask_blend_epi32(nan, key, _mm512_set1_epi32(i32::MIN)),
                    );
                    keys.0 = _mm512_min_epi32(keys.0, klo);
                    keys.1 = _mm512_max_epi32(keys.1, khi);
                }
            }
        }
    }
}
