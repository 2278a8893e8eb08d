//! INT4 rounding straight from a weight's little-endian f32 bytes (usually the model's
//! memory map): the fast twin of `weights::round_int4` for nearest and mse rounding
//! without a Hessian, which is what every large weight takes by default.
//!
//! The reference path copies the weight to a `Vec<f32>` (4 bytes a value), rounds it to
//! nearest *and* with the chosen method into two `Vec<i8>` (2 more), then packs: ~7× the
//! packed size on top of the input. Here nothing weight-sized is allocated but the
//! packed output, and the weight is read from memory once: it is cut into **bands** of
//! whole groups of about [`TASK`] elements (256 KB of f32, kept in L2 from the search to
//! the packing), and each band, in parallel, goes through
//! 1. the scales: the largest magnitude of each group, and for mse the clip-ratio search
//!    ([`search`]: on groups of up to [`EXACT_SEARCH_MAX`] elements the choice of the
//!    full grid of [`CLIP_GRID`] ratios, found by [`grid_argmin`] — an f32 screen of the
//!    ratios in AVX2 (groups of ≤ 64 in AVX-512 when the CPU has it) that stops once the
//!    clipped values alone cost more than the best so far, then exact f64 sums of only
//!    the near-best, the same choice bit for bit;
//!    on longer groups [`fine_histogram_argmin`]: every ratio estimated on a histogram
//!    of 512 bins with exact integer sums, in O(levels) each, within a bound of the
//!    exact errors — not the same choice on near ties, checked against the exact grid
//!    by `benches/int4_quality.rs` and the tests);
//! 2. in one pass ([`pack`]), the packed nibbles and the report's errors (nearest and
//!    chosen, and the signal): the reference's f64 terms, added in lanes per group, the
//!    groups and bands in order — not the reference's element-order chain, so the sums
//!    differ from it in their last bits (bounded in the tests).
//!
//! Every band's result depends on its bytes only, so the output is the same for any
//! number of threads. The kernels are plain Rust compiled once more with AVX2 (runtime
//! dispatch, one check per band; no FMA), the screen, the packing and the histogram's
//! positions in AVX2 intrinsics beside their generic twins; the short groups' screen
//! also in AVX-512F (estimates only: its fused `d` and sums stay within the screen's
//! bound, plus an absolute part its cut covers), and
//! the packing in AVX-512F (fused multiply-adds; the same bytes; its sums' lanes and fused adds
//! change a report's last bits against an AVX2-only CPU).
//!
//! Only weights whose groups are contiguous runs of elements take this path (axis 0,
//! blocks, or one scale for the whole tensor); a channel axis further in (a depthwise
//! filter behind a DEQUANTIZE) interleaves the groups and keeps the reference path.
//! The packed values and scales equal the reference's (`super::mse_scales` takes the
//! same histogram search on long groups) bit for bit; the error sums within their
//! bound (tested in this file).

use super::super::math::{self, Channels};
use super::{CLIP_GRID, clip_ratio};

/// Candidate lanes: [`CLIP_GRID`] rounded up to a multiple of 8 (the padding lanes get
/// scale 1 and are never chosen).
const LANES: usize = CLIP_GRID.div_ceil(8) * 8;

/// [`clip_ratio`] of every candidate lane, computed at compile time (the same IEEE
/// operations; the padding lanes 1); saves the grid's 51 divisions per group.
const RATIOS: [f32; LANES] = {
    let mut r = [1f32; LANES];
    let mut k = 0;
    while k < CLIP_GRID {
        r[k] = clip_ratio(k);
        k += 1;
    }
    r
};

/// Elements per band (about; bands hold whole groups): 1 MB of f32, which the caches
/// hold while a band is scaled, packed and measured. Weights of up to this many
/// elements (every testdata weight) are one band.
pub const BAND: usize = 1 << 18;

/// Groups longer than this, in weights of more than [`BAND`] elements, take the
/// histogram mse search ([`fine_histogram_argmin`] for INT4, [`histogram_scale`] for
/// INT8); the others try every ratio of the grid on
/// every element (≤ 13M candidate evaluations a weight). A small weight can afford
/// the exact search, and needs it when its values sit on a lattice (a QAT weight): 128
/// bins do not resolve one (on `qat_digits.float`'s per-tensor FC weight the histogram
/// loses 0.25 dB of gain).
pub const EXACT_SEARCH_MAX: usize = 4096;

/// Whether a group of `len` values in a weight of `n` takes the histogram search.
pub fn uses_histogram(len: usize, n: usize) -> bool {
    len > EXACT_SEARCH_MAX && n > BAND
}

/// Step of the histogram search's coarse pass over the grid (then ±`COARSE - 1`).
const COARSE: usize = 5;

/// How one INT4 weight is rounded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Nearest,
    Mse,
}

/// What [`round_bytes`] returns: the packed values, the scales the kernel reads, and
/// the squared errors of nearest rounding and of the chosen one with the squared
/// weights (`weights::weight_error`'s sums).
pub struct Rounded {
    pub packed: Vec<u8>,
    pub scales: Vec<f32>,
    pub nearest_scales: Vec<f32>,
    pub e_nearest: f64,
    pub e_chosen: f64,
    pub signal: f64,
}

/// Maps computed scales to the values the kernel will read (FLOAT16 for blockwise
/// scales); called once per band.
pub type Stored<'a> = &'a (dyn Fn(Vec<f32>) -> Vec<f32> + Sync);

/// `(groups, group length)` when every group of `ch` is one contiguous run of the `n`
/// elements, `None` when the groups interleave (or the weight is empty).
pub fn contiguous(ch: Channels, n: usize) -> Option<(usize, usize)> {
    if n == 0 {
        None
    } else if ch.channels == 1 {
        Some((1, n))
    } else if ch.channels.checked_mul(ch.inner) == Some(n) {
        Some((ch.channels, ch.inner))
    } else {
        None
    }
}

/// Groups per band for groups of `len` elements: about [`BAND`] elements, at least one
/// group, and an even number of elements (a band's packed bytes are its own).
fn band_groups(len: usize) -> usize {
    let g = (BAND / len.max(1)).max(1);
    if len % 2 == 1 && g % 2 == 1 { g + 1 } else { g }
}

/// Elements a task of [`round_bytes`] takes: whole groups of about this many (256 KB of
/// f32, which L2 keeps between the search and the packing pass).
const TASK: usize = 1 << 16;

/// Groups per task for groups of `len` elements: about [`TASK`] elements, at least one
/// group, and an even number of elements (a task's packed bytes are its own).
fn task_groups(len: usize) -> usize {
    let g = (TASK / len.max(1)).max(1);
    if len % 2 == 1 && g % 2 == 1 { g + 1 } else { g }
}

/// Elements per band of a weight of `n` elements grouped by `ch` (the reference's error
/// sums go band by band too). A weight whose groups interleave is one band.
pub fn band_len(ch: Channels, n: usize) -> usize {
    match contiguous(ch, n) {
        Some((_, len)) => band_groups(len) * len,
        None => n.max(1),
    }
}

/// One band's share of [`Rounded`].
struct Band {
    scales: Vec<f32>,
    nearest_scales: Vec<f32>,
    sums: (f64, f64, f64),
}

/// Rounds the f32 weight in `bytes` to INT4 with `method`, one scale per group of `ch`;
/// `stored` maps computed scales to the values the kernel will read, as the reference
/// does. `None` when the groups are not [`contiguous`].
pub fn round_bytes(bytes: &[u8], ch: Channels, method: Method, stored: Stored) -> Option<Rounded> {
    round_bytes_from(bytes, None, ch, method, stored)
}

/// [`round_bytes`] of `bytes` that `file` also holds at the given offset (the model's
/// memory map of it): each task reads its bytes with a positioned read into a buffer of
/// its thread instead of touching the map, so the weight's pages are never mapped into
/// the process (peak RSS of the 303 MB benchmark model: 116 → 45 MB; a read that fails
/// falls back to the map). The same result as [`round_bytes`] bit for bit.
pub fn round_bytes_from(
    bytes: &[u8],
    file: Option<(&std::fs::File, u64)>,
    ch: Channels,
    method: Method,
    stored: Stored,
) -> Option<Rounded> {
    use rayon::prelude::*;
    let n = bytes.len() / 4;
    let (groups, len) = contiguous(ch, n)?;
    let per_band = task_groups(len);
    let histogram = uses_histogram(len, n);
    let mut packed = math::output_buffer(n.div_ceil(2));
    // One band a task; each band's results depend on its bytes only, so the output is
    // the same on any number of threads.
    let bands: Vec<Band> = packed
        .par_chunks_mut(per_band * len / 2)
        .enumerate()
        .map(|(b, dst)| {
            let (g0, g1) = (b * per_band, ((b + 1) * per_band).min(groups));
            let range = 4 * g0 * len..4 * g1 * len;
            crate::ir::with_file_bytes(bytes, range, file, |src| {
                band(src, len, method, histogram, stored, dst)
            })
        })
        .collect();
    let mut r = Rounded {
        packed,
        scales: Vec::with_capacity(groups),
        nearest_scales: Vec::with_capacity(groups),
        e_nearest: 0.0,
        e_chosen: 0.0,
        signal: 0.0,
    };
    for b in bands {
        r.scales.extend(b.scales);
        r.nearest_scales.extend(b.nearest_scales);
        r.e_nearest += b.sums.0;
        r.e_chosen += b.sums.1;
        r.signal += b.sums.2;
    }
    Some(r)
}

/// One band: whole groups of `len` elements in `src`, packed into `dst`.
fn band(
    src: &[u8],
    len: usize,
    method: Method,
    histogram: bool,
    stored: Stored,
    dst: &mut [u8],
) -> Band {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the function is the same
        // safe code compiled with AVX2 enabled (no FMA: results are identical).
        return unsafe { band_avx2(src, len, method, histogram, stored, dst) };
    }
    band_generic(src, len, method, histogram, stored, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn band_avx2(
    src: &[u8],
    len: usize,
    method: Method,
    histogram: bool,
    stored: Stored,
    dst: &mut [u8],
) -> Band {
    band_generic(src, len, method, histogram, stored, dst)
}

#[inline(always)]
fn band_generic(
    src: &[u8],
    len: usize,
    method: Method,
    histogram: bool,
    stored: Stored,
    dst: &mut [u8],
) -> Band {
    const QMAX: f32 = 7.0;
    // (Plain loops, not iterator adapters with closures: those were left out of line,
    // compiled without AVX2.)
    let mut maxima = Vec::with_capacity(src.len() / (4 * len));
    let mut base = Vec::with_capacity(src.len() / (4 * len));
    for g in src.chunks_exact(4 * len) {
        let m = abs_max(g);
        maxima.push(m);
        base.push(math::symmetric_scale(m, QMAX));
    }
    let nearest_scales = stored(base.clone());
    let scales = match method {
        Method::Nearest => nearest_scales.clone(),
        Method::Mse => {
            let mut values = Vec::new();
            let mut chosen = Vec::with_capacity(base.len());
            for ((g, &s), &m) in src.chunks_exact(4 * len).zip(&base).zip(&maxima) {
                chosen.push(search(g, m, s, QMAX, histogram, &mut values));
            }
            stored(chosen)
        }
    };
    let sums = pack(
        src,
        len,
        &scales,
        &nearest_scales,
        method == Method::Mse,
        dst,
    );
    Band {
        scales,
        nearest_scales,
        sums,
    }
}

/// The largest magnitude of the f32 values in `bytes` (NaN ignored, as `f32::max`
/// does); eight independent lanes, the maximum does not depend on the order. Each step
/// is `if a > m { a } else { m }` from a start of 0 (never NaN): a NaN `a` keeps `m`,
/// as `f32::max` would, and the form is one `maxps` (`f32::max`'s NaN rule on both
/// operands is not), also in the tree that joins the lanes.
#[inline(always)]
fn abs_max(bytes: &[u8]) -> f32 {
    #[inline(always)]
    fn gt(a: f32, m: f32) -> f32 {
        if a > m { a } else { m }
    }
    let mut lanes = [0f32; 8];
    let mut it = bytes.chunks_exact(32);
    for c in &mut it {
        #[cfg(target_arch = "x86_64")]
        {
            let ahead = c.as_ptr().wrapping_add(PREFETCH);
            // SAFETY: a prefetch is a hint: any address, no fault.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ahead.cast())
            };
        }
        for (l, b) in lanes.iter_mut().zip(c.chunks_exact(4)) {
            *l = gt(f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs(), *l);
        }
    }
    let rest = it.remainder().chunks_exact(4).fold(0f32, |m, b| {
        gt(f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs(), m)
    });
    let l4: [f32; 4] = std::array::from_fn(|i| gt(lanes[i], lanes[i + 4]));
    let l2: [f32; 2] = std::array::from_fn(|i| gt(l4[i], l4[i + 2]));
    gt(gt(l2[0], l2[1]), rest)
}

/// Bytes ahead of [`abs_max`]'s loads its prefetches reach. abs-max is the first read
/// of a weight's pages (the memory map): the hardware's prefetcher stops at each 4 KiB
/// page, these hints run ahead across it (~5 % less CPU on the 303 MB model).
const PREFETCH: usize = 1024;

/// Elements whose INT4 values [`pack`] keeps before writing them out as bytes.
const PACK: usize = 512;

/// The INT4 values of whole groups of `len` elements (scales `scales`), packed two per
/// byte into `dst` (`src` holds an even number of elements, or ends the weight), and in
/// the same pass `weights::weight_error`'s sums: the squared errors of nearest rounding
/// (scales `nearest`) and of the chosen one, and the signal.
///
/// The terms are the reference's f64 terms (`v − q·s` in f64 from f32 `v`, `s` and the
/// integer `q`), added in four f64 lanes a sum (element `i` of a group into lane
/// `i mod 4`; in the AVX2 path, groups of whole eights, eight lanes, `i mod 8`, lane `j`
/// joined with lane `j + 4` first; in the AVX-512 path, groups of whole sixteens,
/// sixteen lanes, `i mod 16`, joined `j` with `j + 8` first: so the paths may differ
/// in the last bits), the
/// lanes added at the end of each group and the groups in order: another
/// order of the same terms than the reference's element-order chain (within
/// `2(n − 1)·2⁻⁵³` of each sum, all terms being ≥ 0), but twelve independent chains
/// instead of three, and no pass of its own over the weight. With `mse` false the
/// chosen scales are the nearest ones and the nearest sum is the chosen one.
///
/// The chosen rounding is `(v / scale).round().clamp(-7, 7)`, NaN to 0 as that cast
/// gives; the nearest one's term (only with `mse`) divides by its own scale.
#[inline(always)]
fn pack(
    src: &[u8],
    len: usize,
    scales: &[f32],
    nearest: &[f32],
    mse: bool,
    dst: &mut [u8],
) -> (f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = pack_kernel(len) {
        // Groups of whole eights: each group's bytes are its own.
        let (mut en, mut ec, mut es) = (0f64, 0f64, 0f64);
        for (g, (v, d)) in src
            .chunks_exact(4 * len)
            .zip(dst.chunks_exact_mut(len / 2))
            .enumerate()
        {
            let (n, c, s) = kernel.run(mse, v, scales[g], nearest[g], d);
            en += n;
            ec += c;
            es += s;
        }
        return (if mse { en } else { ec }, ec, es);
    }
    pack_generic(src, len, scales, nearest, mse, dst)
}

/// The vectorised [`pack`] of one group: AVX-512 (groups of a multiple of 16) or AVX2
/// (of 8). Both give the same levels and bytes as [`pack_generic`]; their sums add the
/// same f64 terms in another order (eight lanes each), so the last bits of a report may
/// differ between CPUs.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PackKernel {
    Avx2,
    Avx512,
}

/// The best [`PackKernel`] this CPU has for groups of `len` values, if any.
#[cfg(target_arch = "x86_64")]
fn pack_kernel(len: usize) -> Option<PackKernel> {
    use crate::interp::simd::{SimdLevel, simd_level};
    match simd_level() {
        SimdLevel::Avx512 if len.is_multiple_of(16) => Some(PackKernel::Avx512),
        SimdLevel::Avx512 | SimdLevel::Avx2 if len.is_multiple_of(8) => Some(PackKernel::Avx2),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
impl PackKernel {
    /// Packs group `v` (scale `s`, nearest scale `sn`) into `d`: the group's (nearest
    /// with `mse`, chosen, signal) sums.
    #[inline(always)]
    fn run(self, mse: bool, v: &[u8], s: f32, sn: f32, d: &mut [u8]) -> (f64, f64, f64) {
        // SAFETY: the CPU supports the kernel's instructions (`pack_kernel` detected
        // them) and the group's length is a multiple of its width.
        unsafe {
            match (self, mse) {
                (PackKernel::Avx512, true) => pack_group_avx512::<true>(v, s, sn, d),
                (PackKernel::Avx512, false) => pack_group_avx512::<false>(v, s, sn, d),
                (PackKernel::Avx2, true) => pack_group_avx2::<true>(v, s, sn, d),
                (PackKernel::Avx2, false) => pack_group_avx2::<false>(v, s, sn, d),
            }
        }
    }
}

/// [`pack_group_avx2`] sixteen values at a time in AVX-512: the same levels (mask
/// registers instead of blends), the nibbles of eight pairs from the 64-bit lanes, and
/// the same f64 differences, each sum in sixteen f64 lanes (element `i` into lane
/// `i mod 16`; each square added by a fused multiply-add, unrounded), joined as lane `j`
/// with `j + 8`, then `j` with `j + 4`, then a tree.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_group_avx512<const MSE: bool>(
    v: &[u8],
    s: f32,
    sn: f32,
    dst: &mut [u8],
) -> (f64, f64, f64) {
    use std::arch::x86_64::*;
    debug_assert!(v.len().is_multiple_of(64) && dst.len() * 8 == v.len());
    let (cap, top, half, one, zero) = (
        _mm512_set1_ps(8.0),
        _mm512_set1_ps(7.0),
        _mm512_set1_ps(0.5),
        _mm512_set1_ps(1.0),
        _mm512_setzero_ps(),
    );
    let level = |x: __m512, s: __m512| {
        let y = _mm512_div_ps(x, s);
        // min_ps(a, b) is `a < b ? a : b`: a NaN gives the cap (then 0 below).
        let a = _mm512_min_ps(_mm512_abs_ps(y), cap);
        let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a);
        let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_sub_ps(a, t), half);
        let r = _mm512_min_ps(_mm512_mask_add_ps(t, up, t, one), top);
        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, zero);
        let r = _mm512_mask_sub_ps(r, neg, zero, r);
        // NaN to 0.
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(y, y), r)
    };
    let halves = |x: __m512| {
        let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x));
        (
            _mm512_cvtps_pd(_mm512_castps512_ps256(x)),
            _mm512_cvtps_pd(_mm256_castpd_ps(hi)),
        )
    };
    let (vs, vsn) = (_mm512_set1_ps(s), _mm512_set1_ps(sn));
    let (sd, snd) = (_mm512_set1_pd(f64::from(s)), _mm512_set1_pd(f64::from(sn)));
    let nib = _mm512_set1_epi32(0x0f);
    let mut acc = [_mm512_setzero_pd(); 6];
    for (c, d) in v.chunks_exact(64).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: `c` holds 64 bytes (unaligned load).
        let x = unsafe { _mm512_loadu_ps(c.as_ptr().cast()) };
        let q = level(x, vs);
        // Nibbles: the low four bits of each i32 level; the pair (2j, 2j+1) is 64-bit
        // lane j, its high level's nibble moved next to the low one, the low bytes out.
        let m = _mm512_and_si512(_mm512_cvtps_epi32(q), nib);
        let b = _mm512_cvtepi64_epi8(_mm512_or_si512(m, _mm512_srli_epi64::<28>(m)));
        d.copy_from_slice(&_mm_cvtsi128_si64(b).to_le_bytes());
        let (xl, xh) = halves(x);
        let (ql, qh) = halves(q);
        // `x − q·s` fused: the same f64 number (q·s is exact in f64); each square added
        // unrounded (fused), within the sum's bound.
        let dl = _mm512_fnmadd_pd(ql, sd, xl);
        let dh = _mm512_fnmadd_pd(qh, sd, xh);
        acc[0] = _mm512_fmadd_pd(dl, dl, acc[0]);
        acc[1] = _mm512_fmadd_pd(dh, dh, acc[1]);
        acc[4] = _mm512_fmadd_pd(xl, xl, acc[4]);
        acc[5] = _mm512_fmadd_pd(xh, xh, acc[5]);
        if MSE {
            let (nl, nh) = halves(level(x, vsn));
            let dl = _mm512_fnmadd_pd(nl, snd, xl);
            let dh = _mm512_fnmadd_pd(nh, snd, xh);
            acc[2] = _mm512_fmadd_pd(dl, dl, acc[2]);
            acc[3] = _mm512_fmadd_pd(dh, dh, acc[3]);
        }
    }
    let sum = |a: __m512d, b: __m512d| {
        let mut l = [0f64; 8];
        // SAFETY: `l` holds eight f64.
        unsafe { _mm512_storeu_pd(l.as_mut_ptr(), _mm512_add_pd(a, b)) };
        ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
    };
    (
        sum(acc[2], acc[3]),
        sum(acc[0], acc[1]),
        sum(acc[4], acc[5]),
    )
}

/// [`pack`] of one group of a multiple of 8 values (`v`: its f32 bytes) into its own
/// `dst`, in AVX2 intrinsics: the same levels (the division, then
/// `math::round_clamped_i8`'s rounding: truncate the capped magnitude, add one from a
/// fraction of ½, cap at 7, the sign; NaN to 0) and the same f64 terms, eight at a
/// time, each sum in eight f64 lanes. Returns the group's (nearest with `MSE`, chosen,
/// signal) sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_group_avx2<const MSE: bool>(
    v: &[u8],
    s: f32,
    sn: f32,
    dst: &mut [u8],
) -> (f64, f64, f64) {
    use std::arch::x86_64::*;
    debug_assert!(v.len().is_multiple_of(32) && dst.len() * 8 == v.len());
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    let (cap, top, half, one) = (
        _mm256_set1_ps(8.0),
        _mm256_set1_ps(7.0),
        _mm256_set1_ps(0.5),
        _mm256_set1_ps(1.0),
    );
    let level = |x: __m256, s: __m256| {
        let y = _mm256_div_ps(x, s);
        // min_ps(a, b) is `a < b ? a : b`: a NaN gives the cap (then 0 below).
        let a = _mm256_min_ps(_mm256_and_ps(y, abs), cap);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a);
        let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_sub_ps(a, t), half), one);
        let r = _mm256_min_ps(_mm256_add_ps(t, up), top);
        let r = _mm256_or_ps(r, _mm256_and_ps(y, sign));
        _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(y, y), r)
    };
    let halves = |x: __m256| {
        (
            _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
        )
    };
    let (vs, vsn) = (_mm256_set1_ps(s), _mm256_set1_ps(sn));
    let (sd, snd) = (_mm256_set1_pd(f64::from(s)), _mm256_set1_pd(f64::from(sn)));
    let nib = _mm_set1_epi16(0x0f);
    let gather = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    let mut acc = [_mm256_setzero_pd(); 6];
    for (c, d) in v.chunks_exact(32).zip(dst.chunks_exact_mut(4)) {
        // SAFETY: `c` holds 32 bytes (unaligned load).
        let x = unsafe { _mm256_loadu_ps(c.as_ptr().cast()) };
        let q = level(x, vs);
        // Nibbles: i16 levels, low four bits, pairs (2j, 2j+1) into the low byte of
        // 32-bit lane j, those four bytes out.
        let qi = _mm256_cvtps_epi32(q);
        let p16 = _mm_packs_epi32(
            _mm256_castsi256_si128(qi),
            _mm256_extracti128_si256::<1>(qi),
        );
        let m = _mm_and_si128(p16, nib);
        let b = _mm_shuffle_epi8(_mm_or_si128(m, _mm_srli_epi32::<12>(m)), gather);
        d.copy_from_slice(&_mm_cvtsi128_si32(b).to_le_bytes());
        let (xl, xh) = halves(x);
        let (ql, qh) = halves(q);
        let dl = _mm256_sub_pd(xl, _mm256_mul_pd(ql, sd));
        let dh = _mm256_sub_pd(xh, _mm256_mul_pd(qh, sd));
        acc[0] = _mm256_add_pd(acc[0], _mm256_mul_pd(dl, dl));
        acc[1] = _mm256_add_pd(acc[1], _mm256_mul_pd(dh, dh));
        acc[4] = _mm256_add_pd(acc[4], _mm256_mul_pd(xl, xl));
        acc[5] = _mm256_add_pd(acc[5], _mm256_mul_pd(xh, xh));
        if MSE {
            let (nl, nh) = halves(level(x, vsn));
            let dl = _mm256_sub_pd(xl, _mm256_mul_pd(nl, snd));
            let dh = _mm256_sub_pd(xh, _mm256_mul_pd(nh, snd));
            acc[2] = _mm256_add_pd(acc[2], _mm256_mul_pd(dl, dl));
            acc[3] = _mm256_add_pd(acc[3], _mm256_mul_pd(dh, dh));
        }
    }
    let sum = |a: __m256d, b: __m256d| {
        let mut l = [0f64; 4];
        // SAFETY: `l` holds four f64.
        unsafe { _mm256_storeu_pd(l.as_mut_ptr(), _mm256_add_pd(a, b)) };
        (l[0] + l[1]) + (l[2] + l[3])
    };
    (
        sum(acc[2], acc[3]),
        sum(acc[0], acc[1]),
        sum(acc[4], acc[5]),
    )
}

/// [`pack`] in plain code: any group length (a group may start on the high nibble of a
/// byte); the levels of [`PACK`] elements at a time, then their bytes.
#[inline(always)]
fn pack_generic(
    src: &[u8],
    len: usize,
    scales: &[f32],
    nearest: &[f32],
    mse: bool,
    dst: &mut [u8],
) -> (f64, f64, f64) {
    let mut q = [0i8; PACK];
    let (mut en, mut ec, mut es) = (0f64, 0f64, 0f64);
    // `at`: the next element of the band to pack; whole bytes per PACK elements (even).
    let n = src.len() / 4;
    let mut at = 0;
    let mut g = 0;
    let mut lanes = [[0f64; 4]; 3];
    while at < n {
        let end = (at + PACK).min(n);
        let mut i = at;
        while i < end {
            let stop = ((g + 1) * len).min(end);
            let (s, sn) = (scales[g], nearest[g]);
            let v = &src[4 * i..4 * stop];
            let out = &mut q[i - at..stop - at];
            let mut quads = v.chunks_exact(16);
            let mut outs = out.chunks_exact_mut(4);
            let mut lane = (i - g * len) % 4;
            if lane == 0 {
                for (c, o) in (&mut quads).zip(&mut outs) {
                    for j in 0..4 {
                        let b = &c[4 * j..4 * j + 4];
                        let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        let (t, d) = term(x, s);
                        o[j] = t;
                        lanes[1][j] += d;
                        lanes[2][j] += x as f64 * x as f64;
                        if mse {
                            lanes[0][j] += term(x, sn).1;
                        }
                    }
                }
            }
            // The rest one at a time (a group's or a chunk's end not on four).
            let done = (v.len() - quads.remainder().len()) / 4;
            let (v, out) = if lane == 0 {
                (&v[4 * done..], &mut out[done..])
            } else {
                (v, out)
            };
            for (b, o) in v.chunks_exact(4).zip(out.iter_mut()) {
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let (t, d) = term(x, s);
                *o = t;
                lanes[1][lane] += d;
                lanes[2][lane] += x as f64 * x as f64;
                if mse {
                    lanes[0][lane] += term(x, sn).1;
                }
                lane = (lane + 1) % 4;
            }
            i = stop;
            if i == (g + 1) * len {
                // The group's end: its lanes into the band's sums.
                let sum = |l: &mut [f64; 4]| {
                    let s = (l[0] + l[1]) + (l[2] + l[3]);
                    *l = [0.0; 4];
                    s
                };
                en += sum(&mut lanes[0]);
                ec += sum(&mut lanes[1]);
                es += sum(&mut lanes[2]);
                g += 1;
            }
        }
        let q = &q[..end - at];
        let bytes = &mut dst[at / 2..end.div_ceil(2)];
        let mut pairs = q.chunks_exact(2);
        for (d, p) in bytes.iter_mut().zip(&mut pairs) {
            *d = ((p[0] as u8) & 0x0f) | ((p[1] as u8) << 4);
        }
        if let ([last], Some(d)) = (pairs.remainder(), bytes.last_mut()) {
            *d = (*last as u8) & 0x0f;
        }
        at = end;
    }
    (if mse { en } else { ec }, ec, es)
}

/// One value's INT4 level with scale `s` (NaN to 0) and its squared error in f64 (the
/// reference's term: NaN for a NaN value).
#[inline(always)]
fn term(x: f32, s: f32) -> (i8, f64) {
    let y = x / s;
    let r = math::round_clamped_i8(y, 7.0);
    let q = if y.is_nan() { 0 } else { r };
    let d = x as f64 - q as f64 * s as f64;
    (q, d * d)
}

/// The mse scale of one group (its f32 bytes, largest magnitude `m`) whose nearest
/// scale is `base`:
/// [`fine_histogram_argmin`] when `histogram` ([`uses_histogram`]), else every ratio of
/// the grid (as [`super::mse_scales`]: [`short_argmin`] for groups of ≤ [`SHORT`] on a
/// CPU with AVX-512F, else [`grid_argmin`]); `values` is scratch.
#[inline(always)]
fn search(
    group: &[u8],
    m: f32,
    base: f32,
    qmax: f32,
    histogram: bool,
    values: &mut Vec<f32>,
) -> f32 {
    if histogram {
        return base * RATIOS[fine_histogram_argmin(group, base, qmax)];
    }
    if let Some(k) = short_argmin(group, m, base, qmax) {
        return base * RATIOS[k];
    }
    let cand = candidates(base);
    values.clear();
    values.resize(group.len() / 4, 0.0);
    for (x, b) in values.iter_mut().zip(group.chunks_exact(4)) {
        *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    base * RATIOS[grid_argmin(values, m, &cand, qmax)]
}

/// Relative slack of [`grid_argmin`]'s screen: a candidate whose f32 estimate is within
/// this of the smallest estimate is summed exactly. The estimates are within 4.3·10⁻⁵
/// of the exact sums (see [`grid_argmin`]): 20× margin.
const SCREEN_SLACK: f32 = 1e-3;

/// [`SCREEN_SLACK`] for groups of at most [`SHORT`] values, whose estimates are within
/// 191u ≈ 1.2·10⁻⁵ of the exact sums (see [`grid_argmin`]): 8× margin (a cut needs
/// twice the bound). Fewer candidates within it than within 10⁻³: on blocks of 32
/// uniform values, ~1 % of the groups need the exact sums instead of ~10 %.
const SHORT_SLACK: f32 = 1e-4;

/// The screen's relative slack for a group of `len` values.
fn slack(len: usize) -> f32 {
    if len <= SHORT {
        SHORT_SLACK
    } else {
        SCREEN_SLACK
    }
}

/// Absolute slack of the screen: covers f32 underflow in the estimates' squares
/// (≤ 2⁻¹⁴⁹ a term).
const SCREEN_FLOOR: f32 = 1e-37;

/// The smallest candidate scale the screen takes: below, `d`'s f32 rounding is no longer
/// relative (subnormal products), and every candidate is summed exactly.
const SCREEN_MIN_SCALE: f32 = 1e-30;

/// The index of the first smallest of [`group_errors`]' exact sums (the reference's
/// choice, bit for bit) for `values` whose largest magnitude is `m` ([`abs_max`]), for
/// INT4 (`qmax` ≤ 7) — without summing all 51 in f64.
///
/// 1. **Screen** ([`screen`]): each candidate's error estimated in f32 (`q` from the
///    product with the reciprocal and round-half-even, the squares and their sum in
///    f32; vectorised across the values: ~7 operations per value and candidate instead
///    of the exact sum's ~25 with a division).
/// 2. **Exact** ([`exact_among`]): the candidates whose estimate is within
///    [`SCREEN_SLACK`] ([`SHORT_SLACK`] for short groups; and [`SCREEN_FLOOR`]) of the
///    smallest are summed as the reference sums them (f32
///    `d`, f64 squares added in element order); the first smallest of them wins. A
///    single survivor needs no sum.
///
/// Why every candidate that can win survives: where the estimate's `q` equals the
/// reference's, its `d` is the same f32 number; they differ only where `v / s` is
/// within 14 ulps of a half-integer (the reciprocal and the product round twice; ties
/// round to even), where both `|d|` are `s · (½ ± 21u)`: the squares agree to 170u.
/// With the f32 squares (u) and the sums (sixteen lanes of ≤ 256 terms, a tree of four, then
/// ≤ 7 more, for groups of ≤ [`EXACT_SEARCH_MAX`]: < 515u; groups of ≤ [`SHORT`]: four
/// chains of ≤ 16 and a tree of two, < 20u) an estimate is within 720u ≈ 4.3·10⁻⁵ of the exact
/// error (short groups: 191u ≈ 1.2·10⁻⁵), and the reference's f64 sum of (exact) f64
/// squares within 10⁻¹² of it. On a CPU with AVX-512F, [`search`] gives short groups to
/// [`short_argmin`] instead (the same choice; this is its twin in the tests). A
/// NaN or infinite estimate (a NaN or infinite value, f32 overflow), a scale below
/// [`SCREEN_MIN_SCALE`] or a longer group sum every candidate exactly.
#[inline(never)]
fn grid_argmin(values: &[f32], m: f32, cand: &[f32; LANES], qmax: f32) -> usize {
    debug_assert!(qmax <= 7.0, "the screen's error bound assumes INT4");
    if values.len() > EXACT_SEARCH_MAX
        || cand[CLIP_GRID - 1].is_nan()
        || cand[CLIP_GRID - 1] < SCREEN_MIN_SCALE
    {
        return first_least(&group_errors_of(values, cand, qmax));
    }
    let est = screen(values, m, cand, qmax);
    // Eight lanes (vectorised): the smallest estimate, and whether any is NaN or
    // infinite (the padding lanes are f32::MAX: finite, never the smallest).
    let (mut least, mut bad) = ([f32::MAX; 8], [false; 8]);
    for c in est.chunks_exact(8) {
        for i in 0..8 {
            least[i] = if c[i] < least[i] { c[i] } else { least[i] };
            bad[i] |= !c[i].is_finite();
        }
    }
    if bad.contains(&true) {
        return first_least(&group_errors_of(values, cand, qmax));
    }
    let least = least
        .iter()
        .fold(f32::MAX, |m, &l| if l < m { l } else { m });
    let cut = least * (1.0 + slack(values.len())) + SCREEN_FLOOR;
    let mut alive = 0u64;
    for (k, &e) in est[..CLIP_GRID].iter().enumerate() {
        alive |= u64::from(e <= cut) << k;
    }
    exact_among(values, cand, qmax, alive)
}

/// [`grid_argmin`]'s choice for a group of at most [`SHORT`] values whose nearest scale
/// is `base`, straight from its f32 bytes on a CPU with AVX-512F
/// ([`screen_short_avx512`], then [`exact_among`]; the values are copied and the 51
/// candidate scales computed only when several candidates survive the cut, ~1 % of
/// blocks of 32); `None` elsewhere (no AVX-512F, a longer group, a scale below
/// [`SCREEN_MIN_SCALE`] or NaN), where [`grid_argmin`] takes the group.
#[inline(always)]
fn short_argmin(group: &[u8], m: f32, base: f32, qmax: f32) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if group.len() <= 4 * SHORT
        && base * RATIOS[CLIP_GRID - 1] >= SCREEN_MIN_SCALE
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        debug_assert!(qmax <= 7.0, "the screen's error bound assumes INT4");
        let mut est = [f32::MAX; 64];
        // SAFETY: the CPU supports AVX-512F (checked just above).
        let Some(alive) = (unsafe { screen_short_avx512(group, m, base, qmax, &mut est) }) else {
            return Some(first_least(&group_errors(group, &candidates(base), qmax)));
        };
        if alive.count_ones() <= 1 {
            return Some((alive.trailing_zeros() as usize).min(CLIP_GRID - 1));
        }
        let mut values = [0f32; SHORT];
        for (x, b) in values.iter_mut().zip(group.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        return Some(exact_among(
            &values[..group.len() / 4],
            &candidates(base),
            qmax,
            alive,
        ));
    }
    let _ = (group, m, base, qmax);
    None
}

/// The candidate scales of a group whose nearest scale is `base` (padding lanes 1).
#[inline(always)]
fn candidates(base: f32) -> [f32; LANES] {
    let mut cand = [1f32; LANES];
    for (c, &r) in cand.iter_mut().zip(&RATIOS).take(CLIP_GRID) {
        *c = base * r;
    }
    cand
}

/// [`grid_argmin`]'s exact step: the first smallest exact sum among the candidates set
/// in `alive` (not empty: the smallest estimate is always below the cut); a single
/// survivor needs no sum.
fn exact_among(values: &[f32], cand: &[f32; LANES], qmax: f32, mut alive: u64) -> usize {
    let first = alive.trailing_zeros() as usize;
    if alive.count_ones() <= 1 {
        return first.min(CLIP_GRID - 1);
    }
    let mut best = (first, exact_error(values, cand[first], qmax));
    alive &= alive - 1;
    while alive != 0 {
        let k = alive.trailing_zeros() as usize;
        alive &= alive - 1;
        let e = exact_error(values, cand[k], qmax);
        if e < best.1 {
            best = (k, e);
        }
    }
    best.0
}

/// The reference's choice among sums: the first smallest (a NaN never wins).
fn first_least(err: &[f64; LANES]) -> usize {
    (0..CLIP_GRID).fold(0, |b, k| if err[k] < err[b] { k } else { b })
}

/// [`group_errors`] of f32 values: every candidate's exact sum.
fn group_errors_of(values: &[f32], cand: &[f32; LANES], qmax: f32) -> [f64; LANES] {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    group_errors(&bytes, cand, qmax)
}

/// One candidate's lane of [`group_errors`]: the same terms added in the same order
/// (the terms computed eight at a time, compiled with AVX2 when the CPU has it).
#[inline(never)]
fn exact_error(values: &[f32], s: f32, qmax: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the same safe code
        // compiled with AVX2 enabled (no FMA: results are identical).
        return unsafe { exact_error_avx2(values, s, qmax) };
    }
    exact_error_generic(values, s, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exact_error_avx2(values: &[f32], s: f32, qmax: f32) -> f64 {
    exact_error_generic(values, s, qmax)
}

#[inline(always)]
fn exact_error_generic(values: &[f32], s: f32, qmax: f32) -> f64 {
    let term = |v: f32| (v - round_clamp(v / s, qmax) * s) as f64;
    let mut e = 0f64;
    let mut eights = values.chunks_exact(8);
    for c in &mut eights {
        let d: [f64; 8] = std::array::from_fn(|i| term(c[i]));
        for x in d {
            e += x * x;
        }
    }
    for &v in eights.remainder() {
        let d = term(v);
        e += d * d;
    }
    e
}

/// [`screen_generic`] compiled on its own, with AVX2 when the CPU has it.
#[inline(never)]
fn screen(values: &[f32], m: f32, cand: &[f32; LANES], qmax: f32) -> [f32; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the same safe code
        // compiled with AVX2 enabled.
        return unsafe {
            if values.len() <= SHORT {
                screen_short_avx2(values, m, cand, qmax)
            } else {
                screen_avx2(values, m, cand, qmax)
            }
        };
    }
    screen_generic(values, m, cand, qmax)
}

/// Groups of at most this many values take [`screen_short_avx2`].
const SHORT: usize = 64;

/// [`screen_generic`] for short groups (blocks of 32 or 64) in AVX2 intrinsics, eight
/// candidates a vector instead of eight values: the same operations on each value and
/// candidate (so the same f32 terms), no horizontal sums, and the early stop checked
/// before each eight candidates (on the largest value, then on all:
/// [`StopBound`]). Each candidate's terms are added in four chains (value
/// `i` into chain `i mod 4`, ≤ 16 terms each), then `(c0 + c1) + (c2 + c3)`: another
/// order of the f32 sum, within the bound [`grid_argmin`] takes (< 20u against 515u).
/// Candidates evaluated beyond the stop get their estimate instead of `f32::MAX`: being
/// out of reach, it exceeds any cut.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn screen_short_avx2(
    values: &[f32],
    m: f32,
    cand: &[f32; LANES],
    qmax: f32,
) -> [f32; LANES] {
    use std::arch::x86_64::*;
    debug_assert!(values.len() <= SHORT);
    let mut mags = [0f32; SHORT];
    for (a, &v) in mags.iter_mut().zip(values) {
        *a = v.abs();
    }
    let mags = &mags[..values.len().min(SHORT)];
    let mut est = [f32::MAX; LANES];
    let top = _mm256_set1_ps(qmax);
    // The smallest estimate so far, lane by lane (min_ps(a, b) is `a < b ? a : b`: a NaN
    // estimate keeps the lane, as `f32::min` ignores it); the padding lanes of the last
    // eight candidates are left out.
    let mut lanes = _mm256_set1_ps(f32::MAX);
    let stop = StopBound::new(mags);
    for k0 in (0..CLIP_GRID).step_by(8) {
        if k0 > 0 {
            let least = hmin8(lanes);
            if out_of_reach(m, cand[k0], qmax, least) || stop.out_of_reach(m, cand[k0], qmax, least)
            {
                break;
            }
        }
        // SAFETY: k0 + 8 ≤ LANES (LANES is CLIP_GRID rounded up to a multiple of 8).
        let vs = unsafe { _mm256_loadu_ps(cand.as_ptr().add(k0)) };
        let vinv = _mm256_div_ps(_mm256_set1_ps(1.0), vs);
        let term = |v: f32| {
            let y = _mm256_set1_ps(v);
            // min_ps(a, b) is `a < b ? a : b`: a NaN gives qmax, as the generic code.
            let x = _mm256_min_ps(_mm256_mul_ps(y, vinv), top);
            let q = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
            let d = _mm256_sub_ps(y, _mm256_mul_ps(q, vs));
            _mm256_mul_ps(d, d)
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut quads = mags.chunks_exact(4);
        for c in &mut quads {
            for j in 0..4 {
                acc[j] = _mm256_add_ps(acc[j], term(c[j]));
            }
        }
        for (j, &v) in quads.remainder().iter().enumerate() {
            acc[j] = _mm256_add_ps(acc[j], term(v));
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        lanes = fold_octet(&mut est, k0, sum, lanes);
    }
    est
}

/// [`screen_short_avx2`] in AVX-512, with [`grid_argmin`]'s cut: the candidates whose
/// estimate (stored in `est`, `f32::MAX` for those not evaluated) passes the cut, or
/// `None` when an estimate is NaN or infinite. Two values a vector (lanes 0–7 the
/// eight candidates on value `2p`, lanes 8–15 on value `2p + 1`), so each instruction
/// does twice the work; the same level `q` on each value and candidate, but `d` and its
/// square each one fused multiply-add ([`octet`]: six operations a vector, not seven;
/// the estimate within 1.2·10⁻⁵ relative plus an absolute `7u·base²` a value of the
/// exact error, which the cut covers: [`short_cut`]). Each candidate's terms go into
/// eight chains (two halves × four accumulators, ≤ 8 terms each), then a tree of three:
/// another order of the f32 sum, within the bound [`grid_argmin`] takes (< 12u). The
/// first two octets are always summed, side by side; the early stop after them is
/// [`StopBound`]'s, in eight f64 lanes; the values (and padding zeros, which add 0 to
/// every sum) stay in registers. The choice after [`exact_among`] is the full grid's,
/// bit for bit, as [`grid_argmin`]'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn screen_short_avx512(
    group: &[u8],
    m: f32,
    base: f32,
    qmax: f32,
    est: &mut [f32; 64],
) -> Option<u64> {
    debug_assert!(group.len() <= 4 * SHORT);
    if group.len() <= 4 * SHORT / 2 {
        screen_pairs::<{ SHORT / 4 }>(group, m, base, qmax, est)
    } else {
        screen_pairs::<{ SHORT / 2 }>(group, m, base, qmax, est)
    }
}

/// [`screen_short_avx512`] on at most `2 P` values (`P` a multiple of 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn screen_pairs<const P: usize>(
    group: &[u8],
    m: f32,
    base: f32,
    qmax: f32,
    est: &mut [f32; 64],
) -> Option<u64> {
    use std::arch::x86_64::*;
    let mut pair = [_mm512_setzero_ps(); P];
    let mut wide = [_mm512_setzero_pd(); P];
    spread_pairs(group, &mut pair, &mut wide);
    let wide = &wide[..P / 4];
    let abs = short_abs(group.len() / 4, base);
    // A candidate whose exact error exceeds this is out of reach: its estimate exceeds
    // any cut (within 1.2·10⁻⁵ relative and `abs / 2` absolute of its error).
    let reach = |least: f32| {
        least as f64 * (1.0 + 2.0 * SCREEN_SLACK as f64)
            + 2.0 * SCREEN_FLOOR as f64
            + 2.0 * abs as f64
    };
    // [`StopBound`]'s bound, which also covers [`out_of_reach`] (the largest value's
    // term, the same f64 number, is one of its terms, all ≥ 0).
    let stop = |s: f32, least: f32| {
        m.is_finite() && clipped_bound(wide, (qmax * s) as f64 * (1.0 + 1e-6)) > reach(least)
    };
    est.fill(f32::MAX);
    let top = _mm512_set1_ps(qmax);
    // The first two octets are summed without a stop between them (on blocks of 32
    // uniform values the second is out of reach of the first in 0.03 % of the blocks):
    // two independent chains, and the third octet's stop bound, which does not depend
    // on the estimates, beside them.
    let bound16 = clipped_bound(wide, (qmax * (base * RATIOS[16])) as f64 * (1.0 + 1e-6));
    let (e0, e1) = (octet(&pair, base, top, 0), octet(&pair, base, top, 8));
    // SAFETY: 16 ≤ 64.
    unsafe {
        _mm256_storeu_ps(est.as_mut_ptr(), e0);
        _mm256_storeu_ps(est.as_mut_ptr().add(8), e1);
    }
    let mut lanes = _mm256_min_ps(e0, e1);
    let least = hmin8(lanes);
    if m.is_finite() && bound16 > reach(least) {
        return survivors16(e0, e1, least, abs);
    }
    // Whether the octet after the next is out of reach of the estimates so far: known
    // while the next one is summed (a larger least than after it, so a weaker but valid
    // stop), it ends the loop with less work thrown away when the branch was guessed
    // wrong.
    let mut early = stop(base * RATIOS[24], least);
    for k0 in (16..CLIP_GRID).step_by(8) {
        if k0 > 16 {
            if early {
                break;
            }
            let least = hmin8(lanes);
            if stop(base * RATIOS[k0], least) {
                break;
            }
            early = k0 + 8 < CLIP_GRID && stop(base * RATIOS[k0 + 8], least);
        }
        lanes = fold_octet(est, k0, octet(&pair, base, top, k0), lanes);
    }
    survivors(est, hmin8(lanes), abs)
}

/// 1.5·2²³: `(x + ROUND_MAGIC) − ROUND_MAGIC` is `x` rounded half to even for
/// `0 ≤ x ≤ 2²²` (the sum lies in [2²³, 2²⁴), where the unit of an f32 is 1).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// The absolute part of the cut of [`screen_short_avx512`] for a group of `n` values
/// whose nearest scale is `base`: `10⁻⁶ · n · base²`, twice the absolute part of its
/// estimates' bound (`7u · s²` a value, `s ≤ base`, u = 2⁻²⁴: 4.2·10⁻⁷ · n · base²; see
/// [`octet`]). 0 when `base²` underflows f32, where [`SCREEN_FLOOR`] covers it (a
/// term's part is then below 10⁻⁴⁴); infinite when it overflows (every candidate is
/// then summed exactly).
#[inline(always)]
fn short_abs(n: usize, base: f32) -> f32 {
    n as f32 * base * base * 1e-6
}

/// [`screen_pairs`]' estimates of the eight candidates `base · RATIOS[k0..k0 + 8]` over
/// the pairs of values `pair` (the padding lanes' scales are never chosen).
///
/// The level `q` is the other screens' (the product with the reciprocal, clamped,
/// rounded half to even — by [`ROUND_MAGIC`], the same integer), but `d = y − q·s` is
/// one fused multiply-add, rounded once, where the reference rounds `q·s` first and
/// then the difference: six single operations a vector instead of seven (and one of
/// them, `roundscale`, two on one port). So `d` is no longer the reference's f32 number: with
/// `D = y − q·s` exact, `|d_ref − D| ≤ 7us + u|D|` and `|d − D| ≤ u|D|`, so (first
/// order in u = 2⁻²⁴) `|d_ref² − d²| ≤ 14us|D| + 4uD² ≤ 7us² + 11u·d_ref²`: a relative
/// part (11u, inside the 170u [`grid_argmin`] counts where `q` differs near a
/// half-step; with the squares added by fused multiply-adds and the sums' < 12u, the
/// estimate stays within 191u ≈ 1.2·10⁻⁵ of the exact error) and an absolute one,
/// `7u·s²` a value, which the cut covers ([`short_abs`]): it matters only where the
/// errors are near 0 (values on a candidate's lattice).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn octet<const P: usize>(
    pair: &[std::arch::x86_64::__m512; P],
    base: f32,
    top: std::arch::x86_64::__m512,
    k0: usize,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    debug_assert!(k0 + 8 <= LANES);
    // SAFETY: k0 + 8 ≤ LANES (LANES is CLIP_GRID rounded up to a multiple of 8).
    let s8 = _mm256_mul_ps(_mm256_set1_ps(base), unsafe {
        _mm256_loadu_ps(RATIOS.as_ptr().add(k0))
    });
    let inv8 = _mm256_div_ps(_mm256_set1_ps(1.0), s8);
    let twice = |x: __m256| {
        let x = _mm512_castps256_ps512(x);
        _mm512_shuffle_f32x4::<0b01_00_01_00>(x, x)
    };
    let (vs, vinv) = (twice(s8), twice(inv8));
    let magic = _mm512_set1_ps(ROUND_MAGIC);
    let mut acc = [_mm512_setzero_ps(); 4];
    for (p, &y) in pair.iter().enumerate() {
        // min_ps(a, b) is `a < b ? a : b`: a NaN gives qmax, as the generic code.
        let x = _mm512_min_ps(_mm512_mul_ps(y, vinv), top);
        // Rounded half to even by adding and taking away 1.5·2²³ (exact for 0 ≤ x ≤ 7:
        // the sum's unit is 1), as `roundscale` rounds: two single operations either
        // vector port takes instead of its two on one port (−5 % time a block).
        let q = _mm512_sub_ps(_mm512_add_ps(x, magic), magic);
        let d = _mm512_fnmadd_ps(q, vs, y);
        acc[p % 4] = _mm512_fmadd_ps(d, d, acc[p % 4]);
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm256_add_ps(
        _mm512_castps512_ps256(sum),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(sum))),
    )
}

/// [`screen_pairs`]' cut of the smallest estimate `least` ([`short_abs`] `abs`).
#[inline(always)]
fn short_cut(least: f32, abs: f32) -> f32 {
    least * (1.0 + SHORT_SLACK) + SCREEN_FLOOR + abs
}

/// [`screen_pairs`]' cut, on sixteen estimates a compare: `None` when an estimate of the
/// grid is NaN or infinite, else the candidates at or below the cut of `least`
/// ([`short_cut`]; the f32::MAX of those not evaluated are above any finite cut, and an
/// infinite one keeps every candidate, all then summed exactly).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn survivors(est: &[f32; 64], least: f32, abs: f32) -> Option<u64> {
    use std::arch::x86_64::*;
    let cut = _mm512_set1_ps(short_cut(least, abs));
    let inf = _mm512_set1_ps(f32::INFINITY);
    let (mut alive, mut finite) = (0u64, 0u64);
    for (i, c) in est.chunks_exact(16).enumerate() {
        // SAFETY: `c` holds 16 f32.
        let e = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        alive |= u64::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(e, cut)) << (16 * i);
        finite |= u64::from(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(e), inf)) << (16 * i);
    }
    let grid = (1u64 << CLIP_GRID) - 1;
    if finite & grid != grid {
        return None;
    }
    Some(alive & grid)
}

/// [`survivors`] when only the first sixteen candidates were evaluated (estimates `e0`
/// and `e1`; the others are `f32::MAX`, finite and above any finite cut, and an
/// infinite cut — an infinite `least` or absolute part — keeps them all).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn survivors16(
    e0: std::arch::x86_64::__m256,
    e1: std::arch::x86_64::__m256,
    least: f32,
    abs: f32,
) -> Option<u64> {
    use std::arch::x86_64::*;
    let cut = short_cut(least, abs);
    let e = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
        _mm512_castps_pd(_mm512_castps256_ps512(e0)),
        _mm256_castps_pd(e1),
    ));
    let finite = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(e), _mm512_set1_ps(f32::INFINITY));
    if finite != 0xffff {
        return None;
    }
    let alive = u64::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(e, _mm512_set1_ps(cut)));
    let rest = ((1u64 << CLIP_GRID) - 1) & !0xffff;
    Some(if f32::MAX <= cut { alive | rest } else { alive })
}

/// `-1` in the lanes of the last octet of candidates that are on the grid, `0` in the
/// padding lanes.
const LAST_OCTET: [i32; 8] = {
    let mut p = [0i32; 8];
    let mut i = 0;
    while i < 8 {
        p[i] = if CLIP_GRID / 8 * 8 + i < CLIP_GRID {
            -1
        } else {
            0
        };
        i += 1;
    }
    p
};

/// The smallest of eight f32 lanes (`min_ps`: a NaN lane is passed over where the other
/// operand is a number).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn hmin8(lanes: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let l = _mm_min_ps(
        _mm256_castps256_ps128(lanes),
        _mm256_extractf128_ps::<1>(lanes),
    );
    let l = _mm_min_ps(l, _mm_movehl_ps(l, l));
    _mm_cvtss_f32(_mm_min_ss(l, _mm_movehdup_ps(l)))
}

/// The short screens' step after an octet: stores the estimates `sum` of candidates
/// `k0..k0 + 8` in `est` (lanes past the grid set back to `f32::MAX`) and returns the
/// running minimum `lanes` with them folded in (lanes past the grid left out, by
/// [`LAST_OCTET`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn fold_octet(
    est: &mut [f32],
    k0: usize,
    sum: std::arch::x86_64::__m256,
    lanes: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let out = &mut est[k0..k0 + 8];
    // SAFETY: `out` holds 8 f32 (unaligned store).
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    if k0 + 8 <= CLIP_GRID {
        return _mm256_min_ps(sum, lanes);
    }
    for e in &mut est[CLIP_GRID..k0 + 8] {
        *e = f32::MAX;
    }
    // SAFETY: LAST_OCTET holds 8 i32.
    let pad = unsafe { _mm256_loadu_si256(LAST_OCTET.as_ptr().cast()) };
    _mm256_min_ps(
        _mm256_blendv_ps(lanes, sum, _mm256_castsi256_ps(pad)),
        lanes,
    )
}

/// For [`screen_pairs`]: lane `l` of vector `p` reads value `2p + l / 8` of sixteen.
const SPREAD: [[i32; 16]; 8] = {
    let mut t = [[0i32; 16]; 8];
    let mut p = 0;
    while p < 8 {
        let mut l = 0;
        while l < 16 {
            t[p][l] = (2 * p + l / 8) as i32;
            l += 1;
        }
        p += 1;
    }
    t
};

/// [`screen_pairs`]' values: `pair[p]` = [a(2p) × 8, a(2p + 1) × 8] and, for the stop
/// bound, `wide[q]` the magnitudes 8q … 8q + 7 times 1 − 10⁻⁶ in f64; zeros past the
/// group's values (which add 0 to every sum).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn spread_pairs<const P: usize>(
    group: &[u8],
    pair: &mut [std::arch::x86_64::__m512; P],
    wide: &mut [std::arch::x86_64::__m512d; P],
) {
    use std::arch::x86_64::*;
    let n = (group.len() / 4).min(2 * P);
    let shrink = _mm512_set1_pd(1.0 - 1e-6);
    for c in 0..P / 8 {
        let lo = (16 * c).min(n);
        let rest = n - lo;
        let mask = if rest >= 16 {
            0xffff
        } else {
            (1u16 << rest) - 1
        };
        // SAFETY: the mask covers the f32 bytes of values lo..lo + rest, inside the
        // slice (an unaligned load; x86-64 is little-endian).
        let a = _mm512_abs_ps(unsafe {
            _mm512_maskz_loadu_ps(mask, group.as_ptr().add(4 * lo).cast())
        });
        for p in 0..8 {
            // SAFETY: SPREAD[p] holds 16 i32.
            let idx = unsafe { _mm512_loadu_si512(SPREAD[p].as_ptr().cast()) };
            pair[8 * c + p] = _mm512_permutexvar_ps(idx, a);
        }
        let halves = [
            _mm512_castps512_ps256(a),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a))),
        ];
        for (h, &x) in halves.iter().enumerate() {
            wide[2 * c + h] = _mm512_mul_pd(_mm512_cvtps_pd(x), shrink);
        }
    }
}

/// `out_of_reach_all`'s bound in eight f64 lanes: Σ max(a − t, 0)² over the shrunk
/// magnitudes `wide` (the order of the sum does not matter: a bound, far inside the
/// slack of the reach; a NaN magnitude adds 0, as `f64::max`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn clipped_bound(wide: &[std::arch::x86_64::__m512d], t: f64) -> f64 {
    use std::arch::x86_64::*;
    let t = _mm512_set1_pd(t);
    let zero = _mm512_setzero_pd();
    let mut acc = [zero; 2];
    for (i, &a) in wide.iter().enumerate() {
        // max_pd(x, 0) is `x > 0 ? x : 0`.
        let d = _mm512_max_pd(_mm512_sub_pd(a, t), zero);
        acc[i % 2] = _mm512_fmadd_pd(d, d, acc[i % 2]);
    }
    _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]))
}

/// [`screen_generic`] in AVX2 intrinsics (LLVM split the generic loop's eight lanes
/// into SSE pieces): the same operations on each value, two accumulators of eight
/// lanes per candidate (another order of the f32 sum, within the same bound).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn screen_avx2(values: &[f32], m: f32, cand: &[f32; LANES], qmax: f32) -> [f32; LANES] {
    use std::arch::x86_64::*;
    let mut est = [f32::MAX; LANES];
    let (head, tail) = values.split_at(values.len() / 8 * 8);
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let top = _mm256_set1_ps(qmax);
    let mut least = f32::MAX;
    for (k, e) in est.iter_mut().enumerate().take(CLIP_GRID) {
        let s = cand[k];
        if k > 0 && out_of_reach(m, s, qmax, least) {
            break;
        }
        let inv = 1.0 / s;
        let (vs, vinv) = (_mm256_set1_ps(s), _mm256_set1_ps(inv));
        let term = |c: &[f32]| {
            // SAFETY: `c` holds 8 values (chunks_exact(8) below).
            let y = _mm256_and_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, abs);
            // min_ps(a, b) is `a < b ? a : b`: a NaN gives qmax, as the generic code.
            let x = _mm256_min_ps(_mm256_mul_ps(y, vinv), top);
            let q = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
            let d = _mm256_sub_ps(y, _mm256_mul_ps(q, vs));
            _mm256_mul_ps(d, d)
        };
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut pairs = head.chunks_exact(16);
        for c in &mut pairs {
            a0 = _mm256_add_ps(a0, term(&c[..8]));
            a1 = _mm256_add_ps(a1, term(&c[8..]));
        }
        if let Some(c) = pairs.remainder().get(..8) {
            a0 = _mm256_add_ps(a0, term(c));
        }
        let a = _mm256_add_ps(a0, a1);
        let h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_movehdup_ps(h));
        let mut sum = _mm_cvtss_f32(h);
        for &v in tail {
            let y = v.abs();
            let x = y * inv;
            let x = if x < qmax { x } else { qmax };
            let d = y - x.round_ties_even() * s;
            sum += d * d;
        }
        *e = sum;
        least = least.min(sum);
    }
    est
}

/// [`grid_argmin`]'s f32 estimates of each candidate's squared error (padding lanes
/// `f32::MAX`): on the magnitudes (the error of `v` and `-v` is the same), eight values
/// at a time, eight partial sums per candidate added as a tree.
#[inline(always)]
fn screen_generic(values: &[f32], m: f32, cand: &[f32; LANES], qmax: f32) -> [f32; LANES] {
    let mut inv = [0f32; LANES];
    for (r, &s) in inv.iter_mut().zip(cand) {
        *r = 1.0 / s;
    }
    let mut est = [f32::MAX; LANES];
    let full = values.len() / 8 * 8;
    let (head, tail) = values.split_at(full);
    let mut least = f32::MAX;
    for (k, e) in est.iter_mut().enumerate().take(CLIP_GRID) {
        let (s, inv) = (cand[k], inv[k]);
        if k > 0 && out_of_reach(m, s, qmax, least) {
            break;
        }
        let mut acc = [0f32; 8];
        for c in head.chunks_exact(8) {
            for i in 0..8 {
                let y = c[i].abs();
                let x = y * inv;
                // `min` as a compare-select: a NaN gives qmax (its `d` is NaN anyway).
                let x = if x < qmax { x } else { qmax };
                let d = y - x.round_ties_even() * s;
                acc[i] += d * d;
            }
        }
        for &v in tail {
            let y = v.abs();
            let x = y * inv;
            let x = if x < qmax { x } else { qmax };
            let d = y - x.round_ties_even() * s;
            acc[0] += d * d;
        }
        // A tree, not a chain: three vector additions.
        let a4: [f32; 4] = std::array::from_fn(|i| acc[i] + acc[i + 4]);
        let a2: [f32; 2] = std::array::from_fn(|i| a4[i] + a4[i + 2]);
        *e = a2[0] + a2[1];
        least = least.min(*e);
    }
    est
}

/// Whether candidate scale `s` (and every smaller one) cannot pass [`grid_argmin`]'s
/// cut, given the smallest estimate so far `least` and the group's largest magnitude
/// `m`: that value rounds to `qmax` (or lower when `m / s < qmax - ½`, where this
/// bound is 0), so its own error alone is at least `(m − qmax·s)²` (here with 10⁻⁶ of
/// relative slack for the f32 roundings of `d`), which grows as `s` shrinks. The
/// estimate of such a candidate, within 4.3·10⁻⁵ of its error, would exceed any cut.
#[inline(always)]
fn out_of_reach(m: f32, s: f32, qmax: f32, least: f32) -> bool {
    let d = (m as f64 * (1.0 - 1e-6) - (qmax * s) as f64 * (1.0 + 1e-6)).max(0.0);
    let reach = least as f64 * (1.0 + 2.0 * SCREEN_SLACK as f64) + 2.0 * SCREEN_FLOOR as f64;
    m.is_finite() && d * d > reach
}

/// [`out_of_reach`] with every value, not only the largest: each magnitude `a` above
/// `qmax·s` rounds to at most `qmax`, so the group's error is at least the sum of
/// `(a − qmax·s)²` over them (the same relative slack per value), which grows as `s`
/// shrinks. On blocks of 32 uniform values it stops the short screen after 2.2 of its
/// eight-candidate steps on average instead of 3.0. The reference twin is
/// `out_of_reach_all`; this is the same bound in AVX2, four f64 lanes (a bound, not
/// an estimate: f64 rounding in any order is far inside the slack of the reach).
#[cfg(target_arch = "x86_64")]
struct StopBound {
    /// The magnitudes times `1 − 10⁻⁶` in f64, zero-padded to a multiple of four.
    a: [std::arch::x86_64::__m256d; SHORT / 4],
    quads: usize,
}

#[cfg(target_arch = "x86_64")]
impl StopBound {
    #[target_feature(enable = "avx2")]
    fn new(mags: &[f32]) -> StopBound {
        use std::arch::x86_64::*;
        let mut a = [_mm256_setzero_pd(); SHORT / 4];
        let shrink = _mm256_set1_pd(1.0 - 1e-6);
        for (q, c) in a.iter_mut().zip(mags.chunks(4)) {
            let mut x = [0f32; 4];
            x[..c.len()].copy_from_slice(c);
            // SAFETY: `x` holds four f32.
            let v = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(x.as_ptr()) });
            *q = _mm256_mul_pd(v, shrink);
        }
        StopBound {
            a,
            quads: mags.len().div_ceil(4),
        }
    }

    /// `out_of_reach_all` of these magnitudes.
    #[target_feature(enable = "avx2")]
    fn out_of_reach(&self, m: f32, s: f32, qmax: f32, least: f32) -> bool {
        use std::arch::x86_64::*;
        let t = _mm256_set1_pd((qmax * s) as f64 * (1.0 + 1e-6));
        let zero = _mm256_setzero_pd();
        let mut acc = [zero; 2];
        for (i, &a) in self.a[..self.quads].iter().enumerate() {
            // max_pd(x, 0) is `x > 0 ? x : 0`: a NaN magnitude adds 0, as `f64::max`.
            let d = _mm256_max_pd(_mm256_sub_pd(a, t), zero);
            acc[i % 2] = _mm256_add_pd(acc[i % 2], _mm256_mul_pd(d, d));
        }
        let v = _mm256_add_pd(acc[0], acc[1]);
        let h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        let bound = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
        let reach = least as f64 * (1.0 + 2.0 * SCREEN_SLACK as f64) + 2.0 * SCREEN_FLOOR as f64;
        m.is_finite() && bound > reach
    }
}

/// The reference twin of [`StopBound::out_of_reach`], in plain code (the tests).
#[cfg(test)]
fn out_of_reach_all(mags: &[f32], m: f32, s: f32, qmax: f32, least: f32) -> bool {
    let t = (qmax * s) as f64 * (1.0 + 1e-6);
    let mut acc = [0f64; 4];
    for c in mags.chunks(4) {
        for (e, &a) in acc.iter_mut().zip(c) {
            let d = (a as f64 * (1.0 - 1e-6) - t).max(0.0);
            *e += d * d;
        }
    }
    let bound = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    let reach = least as f64 * (1.0 + 2.0 * SCREEN_SLACK as f64) + 2.0 * SCREEN_FLOOR as f64;
    m.is_finite() && bound > reach
}

/// [`group_errors_generic`] compiled on its own (with AVX2 when the CPU has it): inlined
/// into the band kernel it ran 3× slower on groups of 32 (blockwise mse).
#[inline(never)]
fn group_errors(bytes: &[u8], cand: &[f32; LANES], qmax: f32) -> [f64; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the same safe code
        // compiled with AVX2 enabled (no FMA: results are identical).
        return unsafe { group_errors_avx2(bytes, cand, qmax) };
    }
    group_errors_generic(bytes, cand, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn group_errors_avx2(bytes: &[u8], cand: &[f32; LANES], qmax: f32) -> [f64; LANES] {
    group_errors_generic(bytes, cand, qmax)
}

/// Squared rounding errors of the f32 values in `bytes` for each candidate scale, each
/// candidate in its own lane so that the compiler vectorises across candidates while
/// every lane adds its terms in element order.
#[inline(always)]
fn group_errors_generic(bytes: &[u8], cand: &[f32; LANES], qmax: f32) -> [f64; LANES] {
    let mut err = [0f64; LANES];
    for b in bytes.chunks_exact(4) {
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (e, &s) in err.iter_mut().zip(cand) {
            let d = (v - round_clamp(v / s, qmax) * s) as f64;
            *e += d * d;
        }
    }
    err
}

/// The mse scale of one long group (`values`, nearest scale `base`) for INT8 (`mse_scales`
/// with `qmax` 127; INT4 took it before [`fine_histogram_argmin`]), from each
/// candidate's error computed on a histogram of the magnitudes instead of on every
/// value: one pass puts each |v| in one of [`BINS`] equal bins over `[0, max|v|]` and
/// sums per bin the count, Σ|v| and Σv²; a bin whose values all round to the same
/// level `q` (its two edges do) has the exact error `Σv² − 2qs·Σ|v| + (qs)²·count`;
/// the few bins that straddle a rounding boundary (≤ 8 per candidate of 128) get a
/// correction of second order in the bin width ([`Histogram::error`]). The grid is searched coarse to fine: every [`COARSE`]-th ratio,
/// then ±2 and ±1 around the best (15 candidates of 51, each ~[`BINS`] operations).
///
/// On 11000-value uniform, Gaussian and Laplacian rows, with and without outliers, the
/// chosen scale's exact error is within 0.2% of the full grid search's and never above
/// nearest rounding's by more than 0.05% (tested).
///
/// Compiled on its own with AVX2 when the CPU has it (same code, same bits): reached
/// from the band kernel through an iterator it was not inlined there, and its baseline
/// build called `truncf` for every bin edge.
#[inline(never)]
pub fn histogram_scale(values: &[f32], base: f32, qmax: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the same safe code
        // compiled with AVX2 enabled (no FMA: results are identical).
        return unsafe { histogram_scale_avx2(values, base, qmax) };
    }
    histogram_scale_inline(values, base, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn histogram_scale_avx2(values: &[f32], base: f32, qmax: f32) -> f32 {
    histogram_scale_inline(values, base, qmax)
}

/// How close a choice of scales comes to the exact full grid search, group by group:
/// what `benches/int4_quality.rs` and the tests check the fast searches with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quality {
    /// Groups compared (those with a NaN or infinite value are left out).
    pub groups: usize,
    /// Groups whose chosen scale's error is not the exact search's smallest.
    pub differ: usize,
    /// Σ of each group's exact squared error with the chosen scale.
    pub chosen: f64,
    /// Σ of each group's smallest exact squared error on the grid.
    pub best: f64,
    /// The largest `chosen / best − 1` of a group (0 when every choice is the best).
    pub worst: f64,
}

impl Quality {
    /// `self` and `other` together.
    pub fn merge(self, other: Quality) -> Quality {
        Quality {
            groups: self.groups + other.groups,
            differ: self.differ + other.differ,
            chosen: self.chosen + other.chosen,
            best: self.best + other.best,
            worst: self.worst.max(other.worst),
        }
    }

    /// `Σ chosen / Σ best − 1`.
    pub fn excess(&self) -> f64 {
        if self.best > 0.0 {
            self.chosen / self.best - 1.0
        } else if self.chosen > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// Clip ratio `k` of the grid (`super::clip_ratio`).
pub fn ratio(k: usize) -> f32 {
    RATIOS[k]
}

/// The INT4 nearest scale of a group (its f32 bytes): `max|v| / 7`, 1 for zeros or an
/// infinity.
pub fn nearest_scale(group: &[u8]) -> f32 {
    math::symmetric_scale(abs_max(group), 7.0)
}

/// [`Quality`] of INT4 `scales` (one per group of `len` elements of the f32 `bytes`,
/// before any storage rounding) against the exact full grid ([`group_errors`]: every
/// ratio, each error summed exactly; the reference twin of every search here). Groups
/// in parallel.
pub fn quality(bytes: &[u8], len: usize, scales: &[f32]) -> Quality {
    use rayon::prelude::*;
    bytes
        .par_chunks(4 * len)
        .zip(scales)
        .map(|(g, &s)| {
            let base = nearest_scale(g);
            let mut cand = [1f32; LANES];
            for (c, &r) in cand.iter_mut().zip(&RATIOS).take(CLIP_GRID) {
                *c = base * r;
            }
            let err = group_errors(g, &cand, 7.0);
            if err[..CLIP_GRID].iter().any(|e| !e.is_finite()) {
                return Quality::default();
            }
            let best = err[first_least(&err)];
            let chosen = match cand[..CLIP_GRID].iter().position(|&c| c == s) {
                Some(k) => err[k],
                None => {
                    let mut c = [s; LANES];
                    c[0] = s;
                    group_errors(g, &c, 7.0)[0]
                }
            };
            let worst = if chosen <= best {
                0.0
            } else if best > 0.0 {
                chosen / best - 1.0
            } else {
                f64::INFINITY
            };
            Quality {
                groups: 1,
                differ: usize::from(chosen != best),
                chosen,
                best,
                worst,
            }
        })
        .reduce(Quality::default, Quality::merge)
}

/// Bins of [`fine_histogram_argmin`]'s histogram.
const FINE_BINS: usize = 512;

/// Sub-bin resolution of [`fine_histogram_argmin`]'s positions: a value's position is
/// kept in 1/2¹⁷ of a bin (an integer below 2²⁶), so that the sums of positions are
/// exact. (1024 bins of 2¹⁶ were tried: the same quality rule met with 3× less excess
/// on the 303 MB model, +0.000023 % against +0.0002 %, for ~10 % more time in the
/// search: the prefix sums run over every bin of every group.)
const FINE_SUB: u32 = 17;

/// The largest position (sub-bins), in the last bin: 2²⁶ − 4 is an f32 (2²⁶ − 1 is not:
/// it would round to 2²⁶, one bin past the last).
const FINE_LAST: f32 = ((FINE_BINS << FINE_SUB) - 4) as f32;

/// Values a histogram takes before its packed sums ([`fine_histogram_argmin`]) are
/// moved out: the position sums of one bin (of both histograms, which the prefix sums
/// add entry to entry) must stay below 2^[`FINE_FIELD`].
const FINE_FLUSH: usize = (1 << (FINE_FIELD - FINE_BINS.ilog2() - FINE_SUB)) - 1;

/// Bits of a histogram entry that hold the sum of its positions; the count is above:
/// each value adds `1 << FINE_FIELD | position`.
const FINE_FIELD: u32 = 40;

/// The index on the grid of the INT4 mse scale of one long group (`group`: its f32
/// bytes; `base`: its nearest scale), from each candidate's error computed on a fine
/// histogram of the magnitudes, all [`CLIP_GRID`] candidates in O(levels) each:
///
/// 1. **Histogram**: each |v| as a position in [`FINE_BINS`] bins over `[0, base·qmax]`,
///    in 1/2¹⁷ of a bin (an integer, capped at the last bin; vectorised 8 at a time),
///    and one 64-bit integer addition per value, `1 << 40 | position` (the count above
///    the sum of the positions), into
///    its bin (two histograms, even and odd values, so that neighbours rarely wait on
///    the same bin). Integer sums: exact, in any order.
/// 2. **Prefix sums** over the bins of the count `N` and of the positions `U` (bin
///    units), exact in integers.
/// 3. **Each candidate** `s` (σ = s in bin units): the error minus the constant Σu² is
///    `Σ_q [(qσ)²·N_q − 2qσ·U_q]` over the levels `q` = 1..qmax, each level's bins a
///    range of the prefix sums (the bin that holds a rounding boundary `t = (q + ½)σ`
///    counted at the lower level), then, for each such bin, the move of its values above
///    `t` one level up (`−2σ Σ_{u>t} (u − t)`) taken as if the bin's values were spread
///    evenly (`−σ·n·(hi − t)²`).
///
/// The estimate differs from the exact error only through the ≤ qmax bins that hold a
/// boundary (each by at most `2σ·n_bin` bin units²) and the positions' resolution (the
/// sub-bin truncation and the f32 product, ≤ 2⁻¹³ of a bin a value): bounded in the
/// tests against [`group_errors`], the exact full grid (the reference twin). The first
/// smallest estimate wins, as the reference's first smallest sum.
///
/// A group with a NaN or an infinity (every exact error is NaN or infinite: the
/// reference keeps ratio 1), or whose scale is below [`SCREEN_MIN_SCALE`] (positions
/// would overflow), takes the exact full grid.
#[inline(never)]
pub fn fine_histogram_argmin(group: &[u8], base: f32, qmax: f32) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the same safe code
        // compiled with AVX2 enabled.
        return unsafe { fine_histogram_argmin_avx2(group, base, qmax) };
    }
    fine_histogram_argmin_inline(group, base, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fine_histogram_argmin_avx2(group: &[u8], base: f32, qmax: f32) -> usize {
    fine_histogram_argmin_inline(group, base, qmax)
}

/// The exact full grid's choice for `group` (the reference twin of the histogram and
/// screened searches): the first smallest of [`group_errors`].
fn exact_argmin(group: &[u8], base: f32, qmax: f32) -> usize {
    let mut cand = [1f32; LANES];
    for (c, &r) in cand.iter_mut().zip(&RATIOS).take(CLIP_GRID) {
        *c = base * r;
    }
    first_least(&group_errors(group, &cand, qmax))
}

#[inline(always)]
fn fine_histogram_argmin_inline(group: &[u8], base: f32, qmax: f32) -> usize {
    debug_assert!(qmax == 7.0, "INT4: levels 0..=7");
    match fine_estimates(group, base) {
        Some(est) => first_least(&est),
        None => exact_argmin(group, base, qmax),
    }
}

/// [`fine_histogram_argmin`]'s estimates: each candidate's squared error minus Σu², in
/// bin units (`u = |v| / width`, width `base · 7 / FINE_BINS`); padding lanes
/// infinite. `None` for a NaN or infinite value or a scale out of range.
#[inline(always)]
fn fine_estimates(group: &[u8], base: f32) -> Option<[f64; LANES]> {
    const L: usize = 7;
    if !(base >= SCREEN_MIN_SCALE && base.is_finite()) {
        return None;
    }
    let mut cn = [0u64; FINE_BINS + 1];
    let mut cp = [0u64; FINE_BINS + 1];
    if !fine_bins(group, base * L as f32, &mut cn, &mut cp) {
        return None;
    }
    let unit = 1.0 / f64::from(1u32 << FINE_SUB);
    // Counts and positions (bin units) below bin `b`; truncated positions are half a
    // sub-bin below the values on average.
    let n = |b: usize| cn[b] as i64 as f64;
    let u = |b: usize| (cp[b] as i64 as f64 + 0.5 * n(b)) * unit;
    let (n_all, u_all) = (n(FINE_BINS), u(FINE_BINS));
    let mut est = [f64::INFINITY; LANES];
    for (e, c) in est.iter_mut().zip(fine_candidates()) {
        let sigma = c.sigma;
        // Level 7 from the last boundary's bin on; levels 1..=6 between boundaries;
        // each boundary's bin counted at the lower level, its part above the boundary
        // moved up as if spread evenly.
        let mut err = 0f64;
        let (mut n_hi, mut u_hi) = (n_all, u_all);
        for q in (0..L).rev() {
            let b = c.bin[q];
            let (n_lo, u_lo) = (n(b + 1), u(b + 1));
            let qs = (q + 1) as f64 * sigma;
            err += qs * qs * (n_hi - n_lo) - 2.0 * qs * (u_hi - u_lo);
            err -= c.moved[q] * (n_lo - n(b));
            (n_hi, u_hi) = (n_lo, u_lo);
        }
        *e = err;
    }
    Some(est)
}

/// One candidate of [`fine_histogram_argmin`] (INT4): its step σ in bin units, the bin
/// holding each rounding boundary `t_q = (q + ½)σ` (q = 0..6) and the factor
/// `σ·(bin + 1 − t_q)²` of that bin's count in the even-spread move.
struct FineCandidate {
    sigma: f64,
    bin: [usize; 7],
    moved: [f64; 7],
}

/// [`FineCandidate`]s of the grid (the same for every group: the bins span the group's
/// `base · 7`, so σ = ratio · bins / 7), computed once. Every boundary is inside the
/// bins: `t_q ≤ 6.5/7 · FINE_BINS` (ratios ≤ 1).
fn fine_candidates() -> &'static [FineCandidate; CLIP_GRID] {
    static TABLE: std::sync::OnceLock<[FineCandidate; CLIP_GRID]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|k| {
            let sigma = f64::from(RATIOS[k]) * FINE_BINS as f64 / 7.0;
            let t = |q: usize| (q as f64 + 0.5) * sigma;
            let bin: [usize; 7] = std::array::from_fn(|q| (t(q) as usize).min(FINE_BINS - 1));
            let moved = std::array::from_fn(|q| {
                let above = (bin[q] + 1) as f64 - t(q);
                sigma * above * above
            });
            FineCandidate { sigma, bin, moved }
        })
    })
}

/// [`fine_histogram_argmin`]'s histogram of the magnitudes of the f32 values in `group`
/// over `[0, top]`, as exact prefix sums over the bins (`[b]`: the bins below `b`) of
/// the count (`cn`) and of the positions in sub-bins (`cp`); false when a value is NaN
/// or infinite.
#[inline(always)]
fn fine_bins(
    group: &[u8],
    top: f32,
    cn: &mut [u64; FINE_BINS + 1],
    cp: &mut [u64; FINE_BINS + 1],
) -> bool {
    const CHUNK: usize = 64;
    const FIELD: u64 = (1 << FINE_FIELD) - 1;
    let scale = (FINE_BINS << FINE_SUB) as f32 / top;
    let mut hist = [[0u64; FINE_BINS]; 2];
    // Counts and position sums moved out of `hist` (groups of more than FINE_FLUSH).
    let mut moved: Option<Box<[[u64; 2]; FINE_BINS]>> = None;
    let mut pos = [0u32; CHUNK];
    let mut bad = false;
    let mut taken = 0;
    for c in group.chunks(4 * CHUNK) {
        let m = c.len() / 4;
        bad |= positions(c, scale, &mut pos);
        let mut pairs = pos[..m].chunks_exact(2);
        for p in &mut pairs {
            for (h, &p) in hist.iter_mut().zip(p) {
                h[(p >> FINE_SUB) as usize & (FINE_BINS - 1)] +=
                    (1u64 << FINE_FIELD) | u64::from(p);
            }
        }
        if let [p] = pairs.remainder() {
            hist[0][(p >> FINE_SUB) as usize & (FINE_BINS - 1)] +=
                (1u64 << FINE_FIELD) | u64::from(*p);
        }
        taken += m;
        if taken + CHUNK > FINE_FLUSH {
            let to = moved.get_or_insert_with(|| Box::new([[0; 2]; FINE_BINS]));
            for b in 0..FINE_BINS {
                for h in hist.iter_mut() {
                    to[b][0] += h[b] >> FINE_FIELD;
                    to[b][1] += h[b] & FIELD;
                    h[b] = 0;
                }
            }
            taken = 0;
        }
    }
    if bad {
        return false;
    }
    // Exact integer prefix sums (< 2⁶⁴: a group would need ≥ 2³⁸ values to overflow).
    let (mut n, mut p) = (0u64, 0u64);
    for b in 0..FINE_BINS {
        // The two entries' fields add without a carry between them (FINE_FLUSH).
        let h = hist[0][b] + hist[1][b];
        let (mut bn, mut bs) = (h >> FINE_FIELD, h & FIELD);
        if let Some(to) = &moved {
            bn += to[b][0];
            bs += to[b][1];
        }
        n += bn;
        p += bs;
        cn[b + 1] = n;
        cp[b + 1] = p;
    }
    true
}

/// The positions of up to [`fine_bins`]' 64 values (f32 bytes `c`) in sub-bins: `|v| ·
/// scale` truncated, capped at the last sub-bin; whether one of them is NaN or
/// infinite (its position is then anything).
#[inline(always)]
fn positions(c: &[u8], scale: f32, pos: &mut [u32; 64]) -> bool {
    let last = FINE_LAST;
    let mut bad = 0u32;
    let mut eights = c.chunks_exact(32);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        bad = unsafe { positions_avx2(&mut eights, scale, pos) };
    }
    for (p, e) in pos.chunks_exact_mut(8).zip(&mut eights) {
        for (p, b) in p.iter_mut().zip(e.chunks_exact(4)) {
            let y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs();
            // NaN and infinities flagged.
            bad |= u32::from(!y.is_finite());
            let x = y * scale;
            let x = if x < last { x } else { last };
            *p = x as u32;
        }
    }
    let done = (c.len() - eights.remainder().len()) / 4;
    for (p, b) in pos[done..]
        .iter_mut()
        .zip(eights.remainder().chunks_exact(4))
    {
        let y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs();
        bad |= u32::from(!y.is_finite());
        let x = y * scale;
        *p = (if x < last { x } else { last }) as u32;
    }
    bad != 0
}

/// [`positions`] of the whole eights of `eights` (all of them taken) in AVX2
/// intrinsics: the same product and cap (`min_ps(x, last)` is `x < last ? x : last`),
/// truncated by `cvttps` (exact: the positions are below 2²⁶).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn positions_avx2(
    eights: &mut std::slice::ChunksExact<'_, u8>,
    scale: f32,
    pos: &mut [u32; 64],
) -> u32 {
    use std::arch::x86_64::*;
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (vscale, last, max) = (
        _mm256_set1_ps(scale),
        _mm256_set1_ps(FINE_LAST),
        _mm256_set1_ps(f32::MAX),
    );
    let mut bad = _mm256_setzero_ps();
    for (p, e) in pos.chunks_exact_mut(8).zip(eights) {
        // SAFETY: `e` holds 32 bytes, `p` 8 u32 (unaligned load and store).
        let y = _mm256_and_ps(unsafe { _mm256_loadu_ps(e.as_ptr().cast()) }, abs);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLE_UQ>(y, max));
        let x = _mm256_min_ps(_mm256_mul_ps(y, vscale), last);
        unsafe { _mm256_storeu_si256(p.as_mut_ptr().cast(), _mm256_cvttps_epi32(x)) };
    }
    _mm256_movemask_ps(bad) as u32
}

/// Bins of [`histogram_scale`]'s histogram.
const BINS: usize = 128;

/// [`histogram_scale`], inlined into the AVX2-compiled band kernel.
#[inline(always)]
fn histogram_scale_inline(values: &[f32], base: f32, qmax: f32) -> f32 {
    let m = base * qmax;
    let inv = BINS as f32 / m;
    let (count, s1, s2) = bins(values, inv);
    let mut mean = [0f32; BINS];
    for b in 0..BINS {
        mean[b] = if count[b] == 0 {
            0.0
        } else {
            (s1[b] / count[b] as f64) as f32
        };
    }
    let h = Histogram {
        count: &count,
        s1: &s1,
        s2: &s2,
        mean: &mean,
        width: m / BINS as f32,
    };
    // Coarse: every COARSE-th ratio; then ±2 around the best, then ±1 around that
    // (the error is near-convex in the ratio: this finds the best of ±3 with 4 more).
    let mut best = (0, h.error(base, qmax));
    let consider = |k: usize, best: &mut (usize, f64)| {
        let e = h.error(base * clip_ratio(k), qmax);
        if e < best.1 || (e == best.1 && k < best.0) {
            *best = (k, e);
        }
    };
    for k in (COARSE..CLIP_GRID).step_by(COARSE) {
        consider(k, &mut best);
    }
    for step in [2, 1] {
        let c = best.0;
        for k in [c.wrapping_sub(step), c + step] {
            if k < CLIP_GRID {
                consider(k, &mut best);
            }
        }
    }
    base * clip_ratio(best.0)
}

/// Count, Σ|v| and Σv² (in element order) of the magnitudes of `values` in [`BINS`]
/// bins: value `v` goes to bin `(|v| · inv) as usize`, capped at the last (a NaN goes
/// to bin 0, an infinity to the last: their sums are NaN or infinite, every estimate
/// is and ratio 1 stays). The reference twin (`bins_reference` in the tests) is the
/// plain loop; this gives the same bits:
/// 1. the bin numbers and magnitudes of 64 values at a time, vectorised (no branch: a
///    compare-select for NaN and the cap, then the truncated value read off the low
///    bits of `t + 1.5·2²³`);
/// 2. one addition of `[1, |v|, v², 0]` to the bin's `[count, Σ|v|, Σv², -]`, a single
///    4-lane f64 vector addition (each lane adds its terms in element order, as the
///    scalar sums; the count is exact in f64) instead of three scalar read-add-writes.
#[inline(always)]
fn bins(values: &[f32], inv: f32) -> ([u32; BINS], [f64; BINS], [f64; BINS]) {
    const LAST: f32 = (BINS - 1) as f32;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: see `math::round_clamped_i8`
    const CHUNK: usize = 64;
    let mut acc = [[0f64; 4]; BINS];
    let mut bin = [0u8; CHUNK];
    let mut mag = [0f32; CHUNK];
    for c in values.chunks(CHUNK) {
        for ((k, a), &v) in bin.iter_mut().zip(mag.iter_mut()).zip(c) {
            let y = v.abs();
            let x = y * inv;
            // NaN (fails `>= 0`) to 0, then capped at LAST.
            let t = if x >= 0.0 { x } else { 0.0 };
            let t = if t < LAST { t } else { LAST };
            *k = ((t.trunc() + MAGIC).to_bits() & 0xff) as u8;
            *a = y;
        }
        for (&k, &a) in bin.iter().zip(&mag).take(c.len()) {
            let a = a as f64;
            let add = [1.0, a, a * a, 0.0];
            let s = &mut acc[k as usize & (BINS - 1)];
            for j in 0..4 {
                s[j] += add[j];
            }
        }
    }
    let mut count = [0u32; BINS];
    let mut s1 = [0f64; BINS];
    let mut s2 = [0f64; BINS];
    for (b, a) in acc.iter().enumerate() {
        count[b] = a[0] as u32;
        s1[b] = a[1];
        s2[b] = a[2];
    }
    (count, s1, s2)
}

/// [`histogram_scale`]'s bins: count, Σ|v|, Σv² and mean |v| of each, and their width.
struct Histogram<'a> {
    count: &'a [u32; BINS],
    s1: &'a [f64; BINS],
    s2: &'a [f64; BINS],
    mean: &'a [f32; BINS],
    width: f32,
}

impl Histogram<'_> {
    /// The squared rounding error with scale `s`: exact for the bins whose edges round
    /// to the same level; a bin `[lo, hi)` that straddles the boundary `t` between
    /// levels `q` and `q + 1` has the exact error of all its values at level `q` minus
    /// `Σ_{v ≥ t} 2s(|v| − t)`, which is taken as if the bin's values were spread
    /// evenly (`s·n·(hi − t)² / (hi − lo)`: second order in the bin width).
    #[inline(always)]
    fn error(&self, s: f32, qmax: f32) -> f64 {
        let step = self.width / s;
        let mut level = [0f32; BINS + 1];
        for (e, l) in level.iter_mut().enumerate() {
            *l = round_clamp(e as f32 * step, qmax);
        }
        let mut err = 0f64;
        for b in 0..BINS {
            let (ql, qh) = (level[b], level[b + 1]);
            let n = self.count[b] as f64;
            let q = if qh - ql > 1.0 {
                // (A bin wider than a step: not on the grid's ratios; its mean's level.)
                round_clamp(self.mean[b] / s, qmax)
            } else {
                ql
            };
            let qs = (q * s) as f64;
            err += self.s2[b] - 2.0 * qs * self.s1[b] + qs * qs * n;
            if qh - ql == 1.0 {
                let (lo, hi) = (
                    b as f64 * self.width as f64,
                    (b + 1) as f64 * self.width as f64,
                );
                let t = ((ql + 0.5) * s) as f64;
                let above = (hi - t).clamp(0.0, hi - lo);
                err -= s as f64 * n * above * above / (hi - lo);
            }
        }
        err
    }
}

/// `x.round().clamp(-qmax, qmax)` (half away from zero) in a form that vectorises:
/// the magnitude, capped at `qmax + 1` (which rounds to at least `qmax` either way),
/// truncated, plus one when the exact fraction is ≥ ½, capped at
/// `qmax`, with `x`'s sign. NaN gives ±`qmax` where the reference gives NaN; the
/// error it feeds is NaN either way (a NaN `x` comes from a NaN value).
#[inline(always)]
fn round_clamp(x: f32, qmax: f32) -> f32 {
    let a = x.abs().min(qmax + 1.0);
    let t = a.trunc();
    let r = if a - t >= 0.5 { t + 1.0 } else { t };
    r.min(qmax).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::math;
    #[test]
    fn vectorisable_rounding_equals_round_then_clamp() {
        let mut xs = vec![
            0.5f32,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.499_999_97,
            -0.499_999_97,
            6.5,
            7.49,
            7.5,
            8.0,
            -9.7,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-40,
        ];
        let mut s = 0x9e37_79b9u32;
        for _ in 0..10_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            xs.push((s as f32 / u32::MAX as f32 - 0.5) * 20.0);
        }
        for x in xs {
            let want = x.round().clamp(-7.0, 7.0);
            let got = round_clamp(x, 7.0);
            assert_eq!(got, want, "{x}");
        }
        assert!(round_clamp(f32::NAN, 7.0).abs() == 7.0);
    }

    #[test]
    fn abs_max_equals_the_fold_of_f32_max_and_ratios_the_grid() {
        // The reference twin: `f32::max` over the magnitudes in order, from 0.
        let fold = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let mut s = 0x2545_f491u32;
        let mut cases: Vec<Vec<f32>> = Vec::new();
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 100] {
            let v: Vec<f32> = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s as f32 / u32::MAX as f32 - 0.5) * 3.0
                })
                .collect();
            for special in [None, Some(f32::NAN), Some(-f32::NAN), Some(f32::INFINITY)] {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    let mut w = v.clone();
                    if let (Some(x), Some(slot)) = (special, w.get_mut(at)) {
                        *slot = x;
                    }
                    cases.push(w);
                }
            }
        }
        cases.push(vec![f32::NAN; 40]);
        cases.push(vec![-0.0; 9]);
        cases.push(vec![f32::NEG_INFINITY, 1.0, f32::NAN]);
        for v in cases {
            let got = abs_max(&math::f32_bytes(&v));
            assert_eq!(got.to_bits(), fold(&v).to_bits(), "{v:?}");
        }
        for k in 0..LANES {
            let want = if k < CLIP_GRID {
                clip_ratio(std::hint::black_box(k))
            } else {
                1.0
            };
            assert_eq!(RATIOS[k].to_bits(), want.to_bits(), "lane {k}");
        }
    }

    #[test]
    fn round_bytes_equals_the_reference_with_infinities() {
        // A group with an infinity takes scale 1, and the sums are infinite.
        let (rows, cols) = (5, 40);
        let mut v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.07)
            .collect();
        v[3] = f32::INFINITY;
        v[cols + 5] = f32::NEG_INFINITY;
        let ch = Channels::new(&[rows as i32, cols as i32], Some(0));
        let same = |s: Vec<f32>| s;
        for method in [Method::Nearest, Method::Mse] {
            let want = reference(&v, ch, method, &same);
            let got = round_bytes(&math::f32_bytes(&v), ch, method, &same).expect("contiguous");
            assert_eq!(got.packed, want.packed, "{method:?}");
            assert_eq!(got.scales, want.scales, "{method:?}");
            assert_eq!(
                got.e_nearest.to_bits(),
                want.e_nearest.to_bits(),
                "{method:?}"
            );
            assert_eq!(
                got.e_chosen.to_bits(),
                want.e_chosen.to_bits(),
                "{method:?}"
            );
            assert_eq!(got.signal.to_bits(), want.signal.to_bits(), "{method:?}");
        }
    }

    /// Groups that stress [`grid_argmin`]'s screen: random (uniform, Gaussian-ish, with
    /// outliers), on the lattice of some candidate's scale (exact ties and zero errors),
    /// on half-steps (rounding boundaries), sparse, all zero, tiny, huge, with NaN and
    /// infinities; lengths 1 to 4097.
    fn screen_cases() -> Vec<Vec<f32>> {
        let mut s = 0x51ed_270bu32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32
        };
        let mut cases = Vec::new();
        for len in [1usize, 2, 7, 8, 9, 31, 32, 33, 64, 128, 255, 4096, 4097] {
            for kind in 0..12 {
                let mut v: Vec<f32> = (0..len)
                    .map(|i| {
                        let u = next() - 0.5;
                        match kind {
                            0 => u,
                            1 => (0..4).map(|_| next() - 0.5).sum::<f32>() * 0.03,
                            2 => {
                                if i % 13 == 3 {
                                    u * 9.0
                                } else {
                                    u * 0.1
                                }
                            }
                            // Multiples of a candidate's step (k = 0, 10, 25).
                            3 => (u * 15.0).round() * 0.1,
                            4 => (u * 15.0).round() * 0.1 * clip_ratio(10),
                            5 => (u * 15.0).round() * (1.0 / 7.0) * clip_ratio(25),
                            // Half-steps: on the rounding boundaries of ratio 1.
                            6 => ((u * 14.0).round() + 0.5) * 0.05,
                            7 => {
                                if i % 5 == 0 {
                                    u
                                } else {
                                    0.0
                                }
                            }
                            8 => 0.0,
                            9 => u * 1e-33,
                            10 => u * 3e19,
                            _ => u * 2.0,
                        }
                    })
                    .collect();
                if kind == 11 && len > 2 {
                    v[len / 2] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][len % 3];
                }
                cases.push(v);
            }
        }
        cases
    }

    #[test]
    fn the_screened_grid_search_chooses_as_the_full_grid() {
        let (mut screened, mut several, mut pruned) = (0, 0, 0);
        for v in screen_cases() {
            let bytes = math::f32_bytes(&v);
            let base = math::symmetric_scale(abs_max(&bytes), 7.0);
            let mut cand = [1f32; LANES];
            for (k, c) in cand.iter_mut().enumerate().take(CLIP_GRID) {
                *c = base * clip_ratio(k);
            }
            let want = first_least(&group_errors(&bytes, &cand, 7.0));
            let got = grid_argmin(&v, abs_max(&bytes), &cand, 7.0);
            assert_eq!(
                got,
                want,
                "{} values, first {:?}",
                v.len(),
                &v[..v.len().min(4)]
            );
            screened += usize::from(v.len() <= EXACT_SEARCH_MAX);
            let m = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            let est = screen(&v, m, &cand, 7.0);
            let least = est[..CLIP_GRID]
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            let cut = least * (1.0 + SCREEN_SLACK) + SCREEN_FLOOR;
            several += usize::from(est[..CLIP_GRID].iter().filter(|&&e| e <= cut).count() > 1);
            // A finite estimate is within its bound of the exact sum (an infinite or
            // NaN one sends the group to the full grid).
            let exact = group_errors(&bytes, &cand, 7.0);
            // One candidate's exact sum is its lane of the full grid's, bit for bit.
            for k in 0..CLIP_GRID {
                for got in [
                    super::exact_error(&v, cand[k], 7.0),
                    exact_error_generic(&v, cand[k], 7.0),
                ] {
                    assert!(
                        got.to_bits() == exact[k].to_bits() || (got.is_nan() && exact[k].is_nan()),
                        "{} values, candidate {k}: {got} vs {}",
                        v.len(),
                        exact[k]
                    );
                }
            }
            // The dispatched kernel (AVX2 here) and the generic one.
            for (est, which) in [
                (screen(&v, m, &cand, 7.0), "dispatched"),
                (screen_generic(&v, m, &cand, 7.0), "generic"),
            ] {
                let least = est[..CLIP_GRID].iter().copied().fold(f32::MAX, f32::min);
                for k in 0..CLIP_GRID {
                    if est[k] == f32::MAX && v.len() <= EXACT_SEARCH_MAX {
                        // Left out as out of reach: it could not have passed the cut.
                        pruned += 1;
                        assert!(
                            exact[k] > (least as f64 * (1.0 + SCREEN_SLACK as f64)),
                            "{which}: {} values, candidate {k} left out: {} vs least {least}",
                            v.len(),
                            exact[k]
                        );
                        continue;
                    }
                    if v.len() <= EXACT_SEARCH_MAX && est[k].is_finite() && base >= SCREEN_MIN_SCALE
                    {
                        let bound = exact[k] * relative_bound(v.len()) + 1e-40;
                        assert!(
                            (est[k] as f64 - exact[k]).abs() <= bound,
                            "{which}: {} values, candidate {k}: estimate {} vs {}",
                            v.len(),
                            est[k],
                            exact[k]
                        );
                    }
                }
            }
        }
        // The single-survivor shortcut, the exact tie-break and the early stop all ran.
        assert!(
            screened > 100 && several > 10 && pruned > 1000,
            "{screened} screened, {several} with ties, {pruned} candidates left out"
        );
    }

    /// The proven bound of a screen's estimate relative to the exact sum (see
    /// [`grid_argmin`]: 720u, short groups 191u).
    fn relative_bound(len: usize) -> f64 {
        if len <= SHORT { 1.2e-5 } else { 4.4e-5 }
    }

    /// The AVX-512 short screen against its twins: its estimates within the bound of the
    /// exact sums, those it leaves out out of reach, its survivors exactly the estimates
    /// within the cut (the best among them), and `None` exactly when the AVX2 kernel has
    /// a NaN or infinite estimate.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_short_screen_keeps_the_best_and_agrees_with_the_avx2_one() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F: skipped");
            return;
        }
        let (mut checked, mut several, mut pruned) = (0, 0, 0);
        for v in screen_cases() {
            if v.len() > SHORT {
                continue;
            }
            let bytes = math::f32_bytes(&v);
            let m = abs_max(&bytes);
            let base = math::symmetric_scale(m, 7.0);
            if base < SCREEN_MIN_SCALE / 0.5 {
                continue;
            }
            let mut cand = [1f32; LANES];
            for (k, c) in cand.iter_mut().enumerate().take(CLIP_GRID) {
                *c = base * clip_ratio(k);
            }
            let exact = group_errors(&bytes, &cand, 7.0);
            let want = first_least(&exact);
            let mut est = [0f32; 64];
            // SAFETY: AVX-512F checked above.
            let got = unsafe { screen_short_avx512(&bytes, m, base, 7.0, &mut est) };
            // SAFETY: AVX-512F implies AVX2.
            let twin = unsafe { screen_short_avx2(&v, m, &cand, 7.0) };
            let twin_bad = twin[..CLIP_GRID].iter().any(|e| !e.is_finite());
            // The search's entry (the kernel, then the exact sums or the full grid).
            assert_eq!(
                short_argmin(&bytes, m, base, 7.0),
                Some(want),
                "{} values",
                v.len()
            );
            let Some(alive) = got else {
                assert!(twin_bad, "{} values: None without a bad estimate", v.len());
                continue;
            };
            assert!(
                !twin_bad,
                "{} values: the AVX2 screen has a bad estimate",
                v.len()
            );
            let least = est[..CLIP_GRID].iter().copied().fold(f32::MAX, f32::min);
            // The fused `d`'s absolute part (see `octet`): 7u·s² a value, s ≤ base;
            // the cut adds at least twice it.
            let abs_part = 7.0 * 2f64.powi(-24) * v.len() as f64 * (base as f64).powi(2);
            let abs = short_abs(v.len(), base);
            assert!(
                abs as f64 >= 2.0 * abs_part || abs_part < 1e-44,
                "{abs} {abs_part}"
            );
            let cut = short_cut(least, abs);
            for k in 0..CLIP_GRID {
                assert_eq!(
                    alive >> k & 1 == 1,
                    est[k] <= cut,
                    "{} values, k {k}",
                    v.len()
                );
                if est[k] == f32::MAX {
                    pruned += 1;
                    assert!(exact[k] > least as f64 * (1.0 + SCREEN_SLACK as f64));
                    continue;
                }
                let bound = exact[k] * relative_bound(v.len()) + abs_part + 1e-40;
                assert!(
                    (est[k] as f64 - exact[k]).abs() <= bound,
                    "{} values, candidate {k}: estimate {} vs {}",
                    v.len(),
                    est[k],
                    exact[k]
                );
                if twin[k] != f32::MAX {
                    assert!((est[k] as f64 - twin[k] as f64).abs() <= 2.0 * bound);
                }
            }
            assert!(
                alive >> want & 1 == 1,
                "{} values: best {want} cut",
                v.len()
            );
            assert_eq!(exact_among(&v, &cand, 7.0, alive), want);
            several += usize::from(alive.count_ones() > 1);
            checked += 1;
        }
        assert!(
            checked > 80 && several > 5 && pruned > 1000,
            "{checked} checked, {several} with several survivors, {pruned} left out"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vectorised_stop_bound_equals_its_reference_twin() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        // The same decision wherever the bound is not within 10⁻⁹ of the reach (f64
        // sums in another order); NaN magnitudes add nothing in both.
        let mut checked = 0;
        for v in screen_cases() {
            if v.len() > SHORT {
                continue;
            }
            let mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
            let m = mags.iter().fold(0f32, |m, &x| m.max(x));
            // SAFETY: AVX2 checked above.
            let stop = unsafe { StopBound::new(&mags) };
            for k in [0, 8, 16, 24, 40] {
                let s = math::symmetric_scale(m, 7.0) * clip_ratio(k);
                for least in [0.0, 1e-6, 1e-3, 0.1, 10.0, f32::MAX] {
                    let want = out_of_reach_all(&mags, m, s, 7.0, least);
                    // SAFETY: AVX2 checked above.
                    let got = unsafe { stop.out_of_reach(m, s, 7.0, least) };
                    let near = {
                        let t = (7.0 * s) as f64 * (1.0 + 1e-6);
                        let b: f64 = mags
                            .iter()
                            .map(|&a| (a as f64 * (1.0 - 1e-6) - t).max(0.0).powi(2))
                            .sum();
                        let reach = least as f64 * (1.0 + 2.0 * SCREEN_SLACK as f64)
                            + 2.0 * SCREEN_FLOOR as f64;
                        (b - reach).abs() <= 1e-9 * b.max(reach)
                    };
                    if !near {
                        assert_eq!(got, want, "{} values, k {k}, least {least}", v.len());
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    /// The reference twin of [`bins`]: the plain loop.
    fn bins_reference(values: &[f32], inv: f32) -> ([u32; BINS], [f64; BINS], [f64; BINS]) {
        let mut count = [0u32; BINS];
        let mut s1 = [0f64; BINS];
        let mut s2 = [0f64; BINS];
        for &v in values {
            let a = v.abs();
            let b = ((a * inv) as usize).min(BINS - 1);
            count[b] += 1;
            s1[b] += a as f64;
            s2[b] += a as f64 * a as f64;
        }
        (count, s1, s2)
    }

    #[test]
    fn histogram_bins_equal_their_reference_twin() {
        // Values on and next to bin edges, zeros, the maximum, beyond it, NaN,
        // infinities, subnormals, and random magnitudes; a partial last chunk.
        let inv = BINS as f32 / 3.5;
        let mut v: Vec<f32> = (0..=BINS as u32 + 2)
            .flat_map(|k| {
                let e = k as f32 / inv;
                [e, -e, e.next_up(), e.next_down(), -e.next_down()]
            })
            .collect();
        v.extend([
            0.0,
            -0.0,
            3.5,
            -3.5,
            1e30,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            1e-40,
        ]);
        let mut s = 0x9e37_79b9u32;
        for _ in 0..10_001 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.push((s as f32 / u32::MAX as f32 - 0.5) * 8.0);
        }
        for inv in [inv, 1e-3, 1e30, f32::INFINITY] {
            let (c, a, b) = bins(&v, inv);
            let (rc, ra, rb) = bins_reference(&v, inv);
            assert_eq!(c, rc, "{inv}");
            // NaN sums: compare NaN-ness (payloads are not promised), the rest bitwise.
            for k in 0..BINS {
                for (x, y) in [(a[k], ra[k]), (b[k], rb[k])] {
                    assert!(
                        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                        "bin {k}, inv {inv}: {x} vs {y}"
                    );
                }
            }
        }
    }

    /// The reference: float copy, `mse_scales`/`symmetric_scales`, `quantize_symmetric`,
    /// `pack_int4`, and the weight-error fold in element order.
    fn reference(v: &[f32], ch: Channels, method: Method, stored: Stored) -> Rounded {
        let nearest_scales = stored(math::symmetric_scales(v, ch, 7.0));
        let scales = match method {
            Method::Nearest => nearest_scales.clone(),
            Method::Mse => stored(super::super::mse_scales(v, ch, 7.0)),
        };
        let qn = math::quantize_symmetric(v, ch, &nearest_scales, 7.0);
        let qc = math::quantize_symmetric(v, ch, &scales, 7.0);
        // Element order within a band, bands in order (`weights::weight_error`).
        let band = band_len(ch, v.len());
        let fold = |q: &[i8], s: &[f32]| {
            let mut total = (0f64, 0f64);
            for start in (0..v.len()).step_by(band) {
                let end = (start + band).min(v.len());
                let (e, g) = (start..end).fold((0f64, 0f64), |(e, g), i| {
                    let d = v[i] as f64 - q[i] as f64 * s[ch.of(i)] as f64;
                    (e + d * d, g + v[i] as f64 * v[i] as f64)
                });
                total = (total.0 + e, total.1 + g);
            }
            total
        };
        let (e_nearest, signal) = fold(&qn, &nearest_scales);
        let (e_chosen, _) = fold(&qc, &scales);
        Rounded {
            packed: math::pack_int4(&qc),
            scales,
            nearest_scales,
            e_nearest,
            e_chosen,
            signal,
        }
    }

    #[test]
    fn round_bytes_equals_the_reference_and_its_sums_within_their_bound() {
        // Gaussian-ish rows with outliers (mse clips them), a zero row, exact halves,
        // an odd total length, per row / per block (FLOAT16 scales) / per tensor.
        let (rows, cols) = (7, 96);
        let mut s = 0x2545_f491u32;
        let mut v: Vec<f32> = (0..rows * cols)
            .map(|_| {
                let mut acc = 0f32;
                for _ in 0..4 {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    acc += s as f32 / u32::MAX as f32 - 0.5;
                }
                acc * 0.1
            })
            .collect();
        for r in 0..rows {
            v[r * cols + r] = 0.9 * (r as f32 - 3.0);
        }
        for x in &mut v[2 * cols..3 * cols] {
            *x = 0.0;
        }
        v[5 * cols + 1] = 0.25;
        let f16 = |s: Vec<f32>| -> Vec<f32> {
            math::f16_to_f32(&math::f16_bytes(&s))
                .into_iter()
                .map(|x| if x > 0.0 { x } else { f32::MIN_POSITIVE })
                .collect()
        };
        let same = |s: Vec<f32>| s;
        let odd = &v[..v.len() - 1];
        // Several bands: 130 rows of 4097 (odd, and long enough for the histogram search:
        // 64 rows a band), with Laplacian-ish values and a few outliers; blocks of 32.
        let (long_rows, long_cols) = (130, EXACT_SEARCH_MAX + 1);
        let long: Vec<f32> = (0..long_rows * long_cols)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = (s as f32 + 1.0) / (u32::MAX as f32 + 2.0);
                let x = -u.ln() * if i % 2 == 0 { 0.05 } else { -0.05 };
                if i % 9973 == 0 { x * 20.0 } else { x }
            })
            .collect();
        let cases: [(&[f32], Channels, Stored); 6] = [
            (
                &v,
                Channels::new(&[rows as i32, cols as i32], Some(0)),
                &same,
            ),
            (
                &v,
                Channels {
                    channels: rows * 3,
                    inner: 32,
                },
                &f16,
            ),
            (&v, Channels::new(&[(rows * cols) as i32], None), &same),
            (odd, Channels::new(&[odd.len() as i32], None), &same),
            (
                &long,
                Channels::new(&[long_rows as i32, long_cols as i32], Some(0)),
                &same,
            ),
            (
                &long[..long.len() / 64 * 64],
                Channels {
                    channels: long.len() / 64 * 2,
                    inner: 32,
                },
                &f16,
            ),
        ];
        for (values, ch, stored) in cases {
            let bytes = math::f32_bytes(values);
            for method in [Method::Nearest, Method::Mse] {
                let want = reference(values, ch, method, stored);
                let got = round_bytes(&bytes, ch, method, stored).expect("contiguous");
                let what = format!("{ch:?} {method:?}");
                assert_eq!(got.packed, want.packed, "{what}");
                assert_eq!(got.scales, want.scales, "{what}");
                assert_eq!(got.nearest_scales, want.nearest_scales, "{what}");
                assert_sums_close(&got, &want, values.len(), &what);
            }
        }
        // mse did clip somewhere (the test would not tell the two methods apart else).
        let ch = Channels::new(&[rows as i32, cols as i32], Some(0));
        let r = round_bytes(&math::f32_bytes(&v), ch, Method::Mse, &same).expect("contiguous");
        assert!(r.scales.iter().zip(&r.nearest_scales).any(|(a, b)| a < b));
    }

    /// Every vectorised pack kernel this CPU runs gives [`pack_generic`]'s bytes, and its
    /// sums within the bound of another order of the same terms: values on and next to
    /// every rounding boundary, beyond the clip, zeros, NaN and infinities, for the
    /// chosen and the nearest scale.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vectorised_pack_kernels_equal_the_generic_pass() {
        let len = 160;
        let (s, sn) = (0.013f32, 0.017f32);
        // Group 0: values on and next to every rounding boundary of `s`, both signs;
        // groups 1 and 2 random, group 2 under scales that rounded to zero (`0 / 0` is
        // NaN: the reference's level 0); group 3 the special values, NaN included, then
        // random. Each group's sums are compared on their own, so the NaN group hides
        // no other.
        let mut v = Vec::with_capacity(4 * len);
        for k in 0..=8 {
            let t = (k as f32 + 0.5) * s;
            for x in [
                t,
                f32::from_bits(t.to_bits() - 1),
                f32::from_bits(t.to_bits() + 1),
            ] {
                v.extend([x, -x]);
            }
        }
        let mut state = 0x9e37_79b9u32;
        let mut random = |v: &mut Vec<f32>, to: usize| {
            while v.len() < to {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                v.push((state as f32 / u32::MAX as f32 - 0.5) * 0.25);
            }
        };
        random(&mut v, 2 * len + 20);
        v.extend([0.0, -0.0, 0.0, 1e-30, -1e-30]);
        random(&mut v, 3 * len);
        v.extend([
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            7.5 * sn,
            1e-30,
        ]);
        random(&mut v, 4 * len);
        let bytes = math::f32_bytes(&v);
        let scales = [s, sn, 0.0, sn];
        let nearest = [sn, s * 0.5, 0.0, s];
        let mut kernels = vec![PackKernel::Avx2];
        if crate::interp::simd::simd_level() == crate::interp::simd::SimdLevel::Avx512 {
            kernels.push(PackKernel::Avx512);
        }
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for mse in [false, true] {
            for (g, src) in bytes.chunks_exact(4 * len).enumerate() {
                let mut want = vec![0u8; len / 2];
                let w = pack_generic(src, len, &scales[g..], &nearest[g..], mse, &mut want);
                for &k in &kernels {
                    let mut got = vec![0u8; len / 2];
                    let r = k.run(mse, src, scales[g], nearest[g], &mut got);
                    assert_eq!(got, want, "{k:?} mse {mse} group {g}");
                    let n = if mse { r.0 } else { r.1 };
                    for (got, want, what) in [
                        (n, w.0, "nearest"),
                        (r.1, w.1, "chosen"),
                        (r.2, w.2, "signal"),
                    ] {
                        // Sums of ≥ 0 terms (NaN and infinite ones alike on both sides).
                        let bound = 2.0 * len as f64 * f64::EPSILON * want.abs();
                        assert!(
                            got == want
                                || (got - want).abs() <= bound
                                || (got.is_nan() && want.is_nan()),
                            "{k:?} mse {mse} group {g} {what}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The fast path's error sums against the reference's: the same f64 terms (all ≥ 0)
    /// in another order. Each sum of n terms is within (n − 1)·2⁻⁵³ of the exact sum, so
    /// the two within twice that.
    fn assert_sums_close(got: &Rounded, want: &Rounded, n: usize, what: &str) {
        let bound = |x: f64| 2.0 * n as f64 * f64::EPSILON / 2.0 * x;
        for (g, w, name) in [
            (got.e_nearest, want.e_nearest, "nearest"),
            (got.e_chosen, want.e_chosen, "chosen"),
            (got.signal, want.signal, "signal"),
        ] {
            assert!((g - w).abs() <= bound(w), "{what} {name}: {g} vs {w}");
        }
    }

    /// Exact squared error of a group rounded with `s` (the reference's sum).
    fn exact_error(v: &[f32], s: f32) -> f64 {
        v.iter().fold(0f64, |e, &x| {
            let d = (x - (x / s).round().clamp(-7.0, 7.0) * s) as f64;
            e + d * d
        })
    }

    /// Rows like the benchmark's (uniform) and real FC weights (Gaussian: a sum of
    /// uniforms, Laplacian), the second half with a few outliers, 11000 per row.
    fn long_rows() -> Vec<Vec<f32>> {
        let mut s = 0x1234_5678u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 + 1.0) / (u32::MAX as f32 + 2.0)
        };
        (0..12)
            .map(|r| {
                (0..11000)
                    .map(|i| {
                        let x = match r % 3 {
                            0 => (0..4).map(|_| next() - 0.5).sum::<f32>() * 0.05,
                            1 => -next().ln() * if next() < 0.5 { 0.02 } else { -0.02 },
                            _ => (next() - 0.5) * 0.1,
                        };
                        if r >= 6 && i % 3001 == 7 { x * 12.0 } else { x }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_histogram_search_is_within_a_fraction_of_a_percent_of_the_full_grid() {
        for (r, v) in long_rows().iter().enumerate() {
            let base = math::symmetric_scales(v, Channels::new(&[v.len() as i32], None), 7.0)[0];
            let full = (0..CLIP_GRID)
                .map(|k| exact_error(v, base * clip_ratio(k)))
                .fold(f64::INFINITY, f64::min);
            let got = exact_error(v, histogram_scale(v, base, 7.0));
            let nearest = exact_error(v, base);
            eprintln!(
                "row {r}: histogram {:+.4}% against the full grid, nearest {:+.4}%",
                (got / full - 1.0) * 100.0,
                (nearest / full - 1.0) * 100.0
            );
            assert!(
                got <= nearest * 1.0005,
                "row {r}: {got} > nearest {nearest}"
            );
            assert!(
                got <= full * 1.002,
                "row {r}: histogram {got} vs full grid {full} ({:+.3}%)",
                (got / full - 1.0) * 100.0
            );
        }
    }

    /// Rows for the fine histogram: [`long_rows`], a few tiny ones, a QAT-like row on a
    /// lattice, and one with an exact half-step pattern.
    fn fine_rows() -> Vec<Vec<f32>> {
        let mut rows = vec![
            vec![1.0f32, 0.3, 0.3, 0.3],
            vec![1.0f32, 0.5, 0.2, 0.01, -0.7],
            vec![0.0; 300],
        ];
        rows.extend(long_rows());
        rows.push(
            (0..384)
                .map(|i| ((i * 7919 % 383) as f32 - 191.0) * 1e-3)
                .collect(),
        );
        rows.push(
            (0..5000)
                .map(|i| ((i * 37 % 29) as f32 - 14.0) / 14.0 * 0.02)
                .collect(),
        );
        rows.push(
            (0..4400)
                .map(|i| (((i % 15) as f32 - 7.0) + 0.5) * 0.01)
                .collect(),
        );
        // Longer than FINE_FLUSH: the histograms' packed sums are moved out twice.
        let long = long_rows();
        rows.push((0..150_000).map(|i| long[i % 12][i % 11000]).collect());
        rows
    }

    #[test]
    fn fine_histogram_estimates_are_within_their_bound_of_the_exact_errors() {
        for (r, v) in fine_rows().iter().enumerate() {
            let bytes = math::f32_bytes(v);
            let base = nearest_scale(&bytes);
            let est = fine_estimates(&bytes, base).expect("finite");
            let (mut cn, mut cp) = ([0u64; FINE_BINS + 1], [0u64; FINE_BINS + 1]);
            assert!(fine_bins(&bytes, base * 7.0, &mut cn, &mut cp));
            assert_eq!(cn[FINE_BINS], v.len() as u64);
            let width = (base * 7.0 / FINE_BINS as f32) as f64;
            let su2: f64 = v.iter().map(|&x| (x.abs() as f64 / width).powi(2)).sum();
            let mut cand = [1f32; LANES];
            for (c, &q) in cand.iter_mut().zip(&RATIOS).take(CLIP_GRID) {
                *c = base * q;
            }
            let exact = group_errors(&bytes, &cand, 7.0);
            for (k, c) in fine_candidates().iter().enumerate() {
                let got = est[k] + su2;
                let want = exact[k] / (width * width);
                // The boundaries' bins (each of their values off by ≤ 2σ), the
                // positions (≤ 2⁻¹³ bin a value, times 2qσ ≤ 14σ), and the f64
                // cancellation against Σu² (terms ≤ 49σ²n, 8 levels).
                let straddle: u64 = c.bin.iter().map(|&b| cn[b + 1] - cn[b]).sum();
                let n = v.len() as f64;
                let bound = 2.0 * c.sigma * straddle as f64
                    + 14.0 * c.sigma * n / 8192.0
                    + 64.0 * f64::EPSILON * (su2 + 49.0 * c.sigma * c.sigma * n);
                assert!(
                    (got - want).abs() <= bound,
                    "row {r}, candidate {k}: {got} vs {want} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn the_fine_histogram_search_meets_the_quality_rule() {
        // Σ at most 0.01 % above the exact grid's best, no group 0.5 % above.
        let (mut all, mut rows) = (Quality::default(), 0);
        for v in fine_rows() {
            let bytes = math::f32_bytes(&v);
            let base = nearest_scale(&bytes);
            let s = base * RATIOS[fine_histogram_argmin(&bytes, base, 7.0)];
            let q = quality(&bytes, v.len(), &[s]);
            assert!(q.worst <= 5e-3, "{} values: {:?}", v.len(), q);
            all = all.merge(q);
            rows += 1;
        }
        assert_eq!(all.groups, rows);
        assert!(all.excess() <= 1e-4, "{all:?}");
        // A NaN or an infinity keeps ratio 1, as the exact grid.
        for bad in [f32::NAN, f32::INFINITY] {
            let mut v = long_rows()[0].clone();
            v[17] = bad;
            let bytes = math::f32_bytes(&v);
            let base = nearest_scale(&bytes);
            assert_eq!(fine_histogram_argmin(&bytes, base, 7.0), 0);
            assert_eq!(exact_argmin(&bytes, base, 7.0), 0);
        }
    }

    #[test]
    fn reading_the_file_gives_the_same_bits_as_the_map() {
        use std::io::Write;
        // 48 rows of 11000 in bands of 23, 23 and 2 rows, behind 12 bytes of something
        // else in the file; then a file cut short, whose failed reads fall back to the
        // bytes in memory.
        let v: Vec<f32> = long_rows().concat().repeat(4);
        let bytes = math::f32_bytes(&v);
        let ch = Channels::new(&[(v.len() / 11000) as i32, 11000], Some(0));
        let same = |s: Vec<f32>| s;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 12]).unwrap();
        f.write_all(&bytes).unwrap();
        let mut short = tempfile::tempfile().unwrap();
        short.write_all(&[7u8; 12]).unwrap();
        short.write_all(&bytes[..bytes.len() / 2]).unwrap();
        for method in [Method::Mse, Method::Nearest] {
            let want = round_bytes(&bytes, ch, method, &same).expect("contiguous");
            for file in [&f, &short] {
                let got = round_bytes_from(&bytes, Some((file, 12)), ch, method, &same)
                    .expect("contiguous");
                assert_eq!(got.packed, want.packed, "{method:?}");
                assert_eq!(got.scales, want.scales, "{method:?}");
                for (g, w) in [
                    (got.e_chosen, want.e_chosen),
                    (got.e_nearest, want.e_nearest),
                    (got.signal, want.signal),
                ] {
                    assert_eq!(g.to_bits(), w.to_bits(), "{method:?}");
                }
            }
        }
        // The read really is the file's: other bytes there give another result.
        let mut other = tempfile::tempfile().unwrap();
        other.write_all(&[7u8; 12]).unwrap();
        other
            .write_all(&math::f32_bytes(
                &v.iter().map(|x| x * 0.5).collect::<Vec<_>>(),
            ))
            .unwrap();
        let want = round_bytes(&bytes, ch, Method::Mse, &same).expect("contiguous");
        let got = round_bytes_from(&bytes, Some((&other, 12)), ch, Method::Mse, &same)
            .expect("contiguous");
        assert_ne!(got.scales, want.scales);
    }

    #[test]
    fn round_bytes_gives_the_same_bits_on_any_number_of_threads() {
        let rows = long_rows();
        // 48 rows: bands of 23, 23 and 2 rows.
        let v: Vec<f32> = rows.concat().repeat(4);
        let bytes = math::f32_bytes(&v);
        let ch = Channels::new(&[(v.len() / 11000) as i32, 11000], Some(0));
        let same = |s: Vec<f32>| s;
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| round_bytes(&bytes, ch, Method::Mse, &same).expect("contiguous"))
        };
        let one = run(1);
        for threads in [2, 3] {
            let r = run(threads);
            assert_eq!(r.packed, one.packed, "{threads} threads");
            assert_eq!(r.scales, one.scales, "{threads} threads");
            assert_eq!(
                r.e_chosen.to_bits(),
                one.e_chosen.to_bits(),
                "{threads} threads"
            );
            assert_eq!(
                r.e_nearest.to_bits(),
                one.e_nearest.to_bits(),
                "{threads} threads"
            );
            assert_eq!(
                r.signal.to_bits(),
                one.signal.to_bits(),
                "{threads} threads"
            );
        }
    }
}
