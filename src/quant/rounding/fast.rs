//! INT4 rounding straight from a weight's little-endian f32 bytes (usually the model's
//! memory map): the fast twin of `weights::round_int4` for nearest and mse rounding
//! without a Hessian, which is what every large weight takes by default.
//!
//! The reference path copies the weight to a `Vec<f32>` (4 bytes a value), rounds it to
//! nearest *and* with the chosen method into two `Vec<i8>` (2 more), then packs: ~7× the
//! packed size on top of the input. Here nothing weight-sized is allocated but the
//! packed output:
//! 1. scales: the largest magnitude of each group, and for mse the clip-ratio search
//!    ([`mse_scales_bytes`]), in parallel over groups, vectorised across the
//!    [`CLIP_GRID`] candidate ratios (AVX2 when the CPU has it, same arithmetic);
//! 2. the packed nibbles ([`math::quantize_int4_packed_bytes`], in parallel);
//! 3. the report's errors (nearest and chosen, and the signal), one sequential pass in
//!    element order so that the sums are bit-identical to the reference's.
//!
//! Only weights whose groups are contiguous runs of elements take this path (axis 0,
//! blocks, or one scale for the whole tensor); a channel axis further in (a depthwise
//! filter behind a DEQUANTIZE) interleaves the groups and keeps the reference path.
//! Every result equals the reference's bit for bit (tested in `weights.rs`).

use super::super::math::{self, Channels};
use super::{CLIP_GRID, clip_ratio};

/// Candidate lanes: [`CLIP_GRID`] rounded up to a multiple of 8 (the padding lanes get
/// scale 1 and are never chosen).
const LANES: usize = CLIP_GRID.div_ceil(8) * 8;

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

/// Rounds the f32 weight in `bytes` to INT4 with `method`, one scale per group of `ch`
/// (which must be [`contiguous`]); `stored` maps computed scales to the values the
/// kernel will read (FLOAT16 for blockwise scales), as the reference does.
pub fn round_bytes(
    bytes: &[u8],
    ch: Channels,
    method: Method,
    stored: &dyn Fn(Vec<f32>) -> Vec<f32>,
) -> Rounded {
    const QMAX: f32 = 7.0;
    let base = math::symmetric_scales_bytes(bytes, ch, QMAX);
    let nearest_scales = stored(base.clone());
    let scales = match method {
        Method::Nearest => nearest_scales.clone(),
        Method::Mse => stored(mse_scales_bytes(bytes, ch, &base, QMAX)),
    };
    // The packing runs on the thread pool while this thread sums the errors.
    let (packed, (e_nearest, e_chosen, signal)) = rayon::join(
        || math::quantize_int4_packed_bytes(bytes, ch, &scales),
        || errors(bytes, ch, &nearest_scales, &scales, method, QMAX),
    );
    Rounded {
        packed,
        scales,
        nearest_scales,
        e_nearest,
        e_chosen,
        signal,
    }
}

/// `weights::weight_error`'s sums for nearest rounding and for `scales`, and the signal,
/// added in element order in f64 (bit-identical to the reference); the terms are
/// computed eight at a time, only the additions are sequential.
fn errors(
    bytes: &[u8],
    ch: Channels,
    nearest: &[f32],
    scales: &[f32],
    method: Method,
    qmax: f32,
) -> (f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); same code, same results.
        return unsafe { errors_avx2(bytes, ch, nearest, scales, method, qmax) };
    }
    errors_generic(bytes, ch, nearest, scales, method, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn errors_avx2(
    bytes: &[u8],
    ch: Channels,
    nearest: &[f32],
    scales: &[f32],
    method: Method,
    qmax: f32,
) -> (f64, f64, f64) {
    errors_generic(bytes, ch, nearest, scales, method, qmax)
}

#[inline(always)]
fn errors_generic(
    bytes: &[u8],
    ch: Channels,
    nearest: &[f32],
    scales: &[f32],
    method: Method,
    qmax: f32,
) -> (f64, f64, f64) {
    let n = bytes.len() / 4;
    let Some((groups, len)) = contiguous(ch, n) else {
        return (0.0, 0.0, 0.0);
    };
    // (NaN aside, where both sums are NaN anyway, `round_clamp` is the reference's
    // `round().clamp()`.)
    let d = |v: f32, s: f32| v as f64 - round_clamp(v / s, qmax) as f64 * s as f64;
    let (mut e_nearest, mut e_chosen, mut signal) = (0f64, 0f64, 0f64);
    for g in 0..groups {
        let (sn, sc) = (nearest[g], scales[g]);
        for c in bytes[4 * g * len..4 * (g + 1) * len].chunks(32) {
            let mut v = [0f32; 8];
            let k = c.len() / 4;
            for (x, b) in v.iter_mut().zip(c.chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            let dn: [f64; 8] = std::array::from_fn(|i| d(v[i], sn));
            for i in 0..k {
                e_nearest += dn[i] * dn[i];
                signal += v[i] as f64 * v[i] as f64;
            }
            if method == Method::Mse {
                let dc: [f64; 8] = std::array::from_fn(|i| d(v[i], sc));
                for x in &dc[..k] {
                    e_chosen += x * x;
                }
            }
        }
    }
    if method == Method::Nearest {
        e_chosen = e_nearest;
    }
    (e_nearest, e_chosen, signal)
}

/// [`super::mse_scales`] of contiguous groups straight from bytes, given the nearest
/// scales `base` (unstored): per group the candidate `base · clip_ratio(k)` with the
/// lowest squared rounding error, the first on ties. The error of every candidate is
/// summed in element order in f64, as the reference does, so the choice is identical.
pub fn mse_scales_bytes(bytes: &[u8], ch: Channels, base: &[f32], qmax: f32) -> Vec<f32> {
    use rayon::prelude::*;
    let n = bytes.len() / 4;
    let Some((groups, len)) = contiguous(ch, n) else {
        return super::mse_scales(&math::f32_values(bytes), ch, qmax);
    };
    (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut cand = [1f32; LANES];
            for (k, c) in cand.iter_mut().enumerate().take(CLIP_GRID) {
                *c = base[g] * clip_ratio(k);
            }
            let err = group_errors(&bytes[4 * g * len..4 * (g + 1) * len], &cand, qmax);
            let best = (0..CLIP_GRID).fold(0, |b, k| if err[k] < err[b] { k } else { b });
            base[g] * clip_ratio(best)
        })
        .collect()
}

/// Squared rounding errors of the f32 values in `bytes` for each candidate scale.
fn group_errors(bytes: &[u8], cand: &[f32; LANES], qmax: f32) -> [f64; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above); the function is the same
        // safe code compiled with AVX2 enabled (no FMA: results are identical).
        return unsafe { group_errors_avx2(bytes, cand, qmax) };
    }
    group_errors_generic(bytes, cand, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn group_errors_avx2(bytes: &[u8], cand: &[f32; LANES], qmax: f32) -> [f64; LANES] {
    group_errors_generic(bytes, cand, qmax)
}

/// The error sums, each candidate in its own lane so that the compiler vectorises
/// across candidates while every lane adds its terms in element order.
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

    /// The reference: float copy, `mse_scales`/`symmetric_scales`, `quantize_symmetric`,
    /// `pack_int4`, and the weight-error fold in element order.
    fn reference(
        v: &[f32],
        ch: Channels,
        method: Method,
        stored: &dyn Fn(Vec<f32>) -> Vec<f32>,
    ) -> Rounded {
        let nearest_scales = stored(math::symmetric_scales(v, ch, 7.0));
        let scales = match method {
            Method::Nearest => nearest_scales.clone(),
            Method::Mse => stored(super::super::mse_scales(v, ch, 7.0)),
        };
        let qn = math::quantize_symmetric(v, ch, &nearest_scales, 7.0);
        let qc = math::quantize_symmetric(v, ch, &scales, 7.0);
        let fold = |q: &[i8], s: &[f32]| {
            v.iter()
                .zip(q)
                .enumerate()
                .fold((0f64, 0f64), |(e, g), (i, (&x, &qi))| {
                    let d = x as f64 - qi as f64 * s[ch.of(i)] as f64;
                    (e + d * d, g + x as f64 * x as f64)
                })
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
    fn round_bytes_equals_the_reference_bit_for_bit() {
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
        type Stored<'a> = &'a dyn Fn(Vec<f32>) -> Vec<f32>;
        let cases: [(&[f32], Channels, Stored); 4] = [
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
        ];
        for (values, ch, stored) in cases {
            let bytes = math::f32_bytes(values);
            for method in [Method::Nearest, Method::Mse] {
                let want = reference(values, ch, method, stored);
                let got = round_bytes(&bytes, ch, method, stored);
                let what = format!("{ch:?} {method:?}");
                assert_eq!(got.packed, want.packed, "{what}");
                assert_eq!(got.scales, want.scales, "{what}");
                assert_eq!(got.nearest_scales, want.nearest_scales, "{what}");
                assert_eq!(got.e_nearest.to_bits(), want.e_nearest.to_bits(), "{what}");
                assert_eq!(got.e_chosen.to_bits(), want.e_chosen.to_bits(), "{what}");
                assert_eq!(got.signal.to_bits(), want.signal.to_bits(), "{what}");
            }
        }
        // mse did clip somewhere (the test would not tell the two methods apart else).
        let ch = Channels::new(&[rows as i32, cols as i32], Some(0));
        let r = round_bytes(&math::f32_bytes(&v), ch, Method::Mse, &same);
        assert!(r.scales.iter().zip(&r.nearest_scales).any(|(a, b)| a < b));
    }
}
