//! Quantization arithmetic: scales, rounding, packing. Pure functions on slices.
//!
//! Conventions (TFLite's): `real = (q - zero_point) * scale`; rounding is to nearest,
//! ties away from zero (`f32::round`); symmetric weights use the narrow range
//! `[-qmax, qmax]` (int8: ±127, int4: ±7) with zero point 0.

/// Little-endian f32 values of a constant's bytes.
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// How a tensor's elements map to channels: element `i` belongs to channel
/// `(i / inner) % channels`, where `inner` is the product of the dimensions after `axis`.
#[derive(Debug, Clone, Copy)]
pub struct Channels {
    pub channels: usize,
    pub inner: usize,
}

impl Channels {
    /// One channel per index of `axis` of `shape`; the whole tensor when `axis` is None.
    pub fn new(shape: &[i32], axis: Option<usize>) -> Self {
        match axis {
            None => Channels {
                channels: 1,
                inner: 1,
            },
            Some(a) => Channels {
                channels: shape[a].max(1) as usize,
                inner: shape[a + 1..].iter().map(|&d| d.max(1) as usize).product(),
            },
        }
    }

    pub fn of(&self, i: usize) -> usize {
        (i / self.inner) % self.channels
    }
}

/// Symmetric scale per channel: `max |x| / qmax`. A channel of zeros gets scale 1 (any
/// positive scale represents it exactly; 0 is illegal for the runtime).
pub fn symmetric_scales(values: &[f32], ch: Channels, qmax: f32) -> Vec<f32> {
    let mut absmax = vec![0f32; ch.channels];
    for (i, &v) in values.iter().enumerate() {
        let c = ch.of(i);
        absmax[c] = absmax[c].max(v.abs());
    }
    absmax
        .into_iter()
        .map(|m| symmetric_scale(m, qmax))
        .collect()
}

/// The symmetric scale of a channel whose largest magnitude is `m`: `m / qmax`, 1 for a
/// channel of zeros or with an infinity.
#[inline(always)]
pub(crate) fn symmetric_scale(m: f32, qmax: f32) -> f32 {
    if m > 0.0 && m.is_finite() {
        m / qmax
    } else {
        1.0
    }
}

/// `round(x / scale)` clamped to `[-qmax, qmax]`, per channel.
pub fn quantize_symmetric(values: &[f32], ch: Channels, scales: &[f32], qmax: f32) -> Vec<i8> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[ch.of(i)]).round().clamp(-qmax, qmax) as i8)
        .collect()
}

/// Elements per parallel work item of the byte kernels below.
const CHUNK: usize = 1 << 16;

/// Calls `f(channel, from, to)` for each maximal run `[from, to)` of `range` whose
/// elements share a channel (as [`Channels::of`] gives it): the byte kernels below loop
/// over a run with one scale, which the compiler vectorises (a division per element to
/// find the channel dominated their time once).
#[inline(always)]
fn for_each_run(
    ch: Channels,
    range: std::ops::Range<usize>,
    mut f: impl FnMut(usize, usize, usize),
) {
    if ch.channels <= 1 {
        if !range.is_empty() {
            f(0, range.start, range.end);
        }
        return;
    }
    let inner = ch.inner.max(1);
    let mut i = range.start;
    while i < range.end {
        let to = ((i / inner + 1) * inner).min(range.end);
        f(ch.of(i), i, to);
        i = to;
    }
}

/// The little-endian f32 values of `bytes` (whole 4-byte groups).
#[inline(always)]
fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Round half away from zero (as `f32::round`), clamped to `[-qmax, qmax]`, for
/// `qmax ≤ 127`,, as an `i8`, in f32 operations only, which the
/// compiler vectorises: the magnitude capped at `qmax + 1` (a NaN becomes that too, as
/// `f32::min` returns the other operand; positive, as in the reference), truncated,
/// plus one when the fraction (exact in f32) is at least ½, capped at `qmax`, negated
/// when `x < 0`. The integer-valued result `r` (|r| ≤ 127) is read off the low bits of
/// `r + 1.5·2²³`: in `[2²³, 2²⁴)` floats are the integers, so that sum is exact and its
/// mantissa is `r + 2²²` (a safe stand-in for the saturating `as` cast, which does not
/// vectorise).
#[inline(always)]
pub(crate) fn round_clamped_i8(x: f32, qmax: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let a = x.abs().min(qmax + 1.0);
    let t = a.trunc();
    let r = if a - t >= 0.5 { t + 1.0 } else { t };
    let r = r.min(qmax);
    let r = if x < 0.0 { -r } else { r };
    (r + MAGIC).to_bits() as u8 as i8
}

/// Runs `body` compiled with AVX2 when the CPU has it (the same safe code: results are
/// identical, Rust never fuses multiply-adds on its own), else as it is.
macro_rules! with_avx2 {
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty $body:block) => {
        #[inline(always)]
        fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

with_avx2!(quantize_run_i8(src: &[u8], dst: &mut [u8], scale: f32, qmax: f32) -> () {
    for (d, v) in dst.iter_mut().zip(f32s(src)) {
        *d = round_clamped_i8(v / scale, qmax) as u8;
    }
});

with_avx2!(quantize_run_i4(src: &[u8], dst: &mut [i8], scale: f32) -> () {
    // `(v / scale).round().clamp(-7, 7) as i8`, NaN to 0 as that cast gives.
    for (d, v) in dst.iter_mut().zip(f32s(src)) {
        let x = v / scale;
        let q = round_clamped_i8(x, 7.0);
        *d = if x.is_nan() { 0 } else { q };
    }
});

with_avx2!(abs_max_run(src: &[u8]) -> f32 {
    // Eight independent lanes: vectorised, and the maximum does not depend on order.
    let mut lanes = [0f32; 8];
    let mut it = src.chunks_exact(32);
    for c in &mut it {
        for (l, v) in lanes.iter_mut().zip(f32s(c)) {
            *l = l.max(v.abs());
        }
    }
    let rest = f32s(it.remainder()).fold(0f32, |m, v| m.max(v.abs()));
    lanes.iter().fold(rest, |m, &l| m.max(l))
});

/// A zeroed buffer of `len` bytes for a converted weight, with transparent huge pages
/// asked for its whole 2 MiB pages (`MADV_HUGEPAGE`, Linux) before anything touches it:
/// a weight's output of tens of MB then takes one page fault per 2 MiB instead of one per
/// 4 KiB. On the 303 MB benchmark model (the same binary with and without the advice, 10
/// alternating pairs) weight-int8 measured −10 % wall and −11.5 % CPU (system time 99 →
/// 73 ms); INT4, whose packed output is a quarter the size, within noise. Peak RSS equal.
/// Advice only: where the kernel gives no huge page (or the memory was already touched)
/// nothing changes but the page size.
pub fn output_buffer(len: usize) -> Vec<u8> {
    let buf = vec![0u8; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buf.as_ptr() as usize;
        let (from, to) = (start.next_multiple_of(HUGE), (start + len) / HUGE * HUGE);
        if to > from {
            // SAFETY: `[from, to)` lies inside `buf`'s allocation (this process's own
            // memory); MADV_HUGEPAGE only marks the mapping, it reads or changes no byte.
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    buf
}

/// Symmetric per-channel quantization straight from a constant's little-endian f32
/// bytes: the scales (as [`symmetric_scales`]) and the int8 values (as
/// [`quantize_symmetric`], stored as bytes), computed in parallel without copying the
/// weights to a float vector first. Used for large weights (hundreds of MB).
pub fn quantize_symmetric_bytes(bytes: &[u8], ch: Channels, qmax: f32) -> (Vec<f32>, Vec<u8>) {
    quantize_symmetric_bytes_from(bytes, None, ch, qmax)
}

/// [`quantize_symmetric_bytes`] of `bytes` that `file` also holds at the given offset
/// (the model's memory map of it): with contiguous channels, each task reads its bytes
/// with a positioned read ([`crate::ir::with_file_bytes`]) instead of faulting the map's
/// pages, so the weight is never resident as a whole. The same scales and bytes.
pub fn quantize_symmetric_bytes_from(
    bytes: &[u8],
    file: Option<(&std::fs::File, u64)>,
    ch: Channels,
    qmax: f32,
) -> (Vec<f32>, Vec<u8>) {
    use rayon::prelude::*;
    assert!(
        (0.0..=127.0).contains(&qmax),
        "8-bit kernel asked for qmax {qmax}"
    );
    let n = bytes.len() / 4;
    let mut out = output_buffer(n);
    if ch.channels > 1 && ch.channels.checked_mul(ch.inner) == Some(n) {
        // Each channel one contiguous run (axis 0): a task takes whole channels of about
        // CHUNK elements and reads each from memory once — its largest magnitude, then
        // its values while the caches still hold them — instead of a pass for the scales
        // and another for the values. The same scales (a maximum does not depend on how
        // the run is cut) and bytes.
        let rows = (CHUNK / ch.inner).max(1);
        let scales: Vec<Vec<f32>> = out
            .par_chunks_mut(rows * ch.inner)
            .enumerate()
            .map(|(i, dst)| {
                let from = 4 * i * rows * ch.inner;
                crate::ir::with_file_bytes(bytes, from..from + 4 * dst.len(), file, |src| {
                    let mut scales = Vec::with_capacity(rows);
                    for (d, s) in dst
                        .chunks_exact_mut(ch.inner)
                        .zip(src.chunks_exact(4 * ch.inner))
                    {
                        let scale = symmetric_scale(abs_max_run(s), qmax);
                        quantize_run_i8(s, d, scale, qmax);
                        scales.push(scale);
                    }
                    scales
                })
            })
            .collect();
        return (scales.concat(), out);
    }
    let scales = symmetric_scales_bytes(bytes, ch, qmax);
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, dst)| {
        let base = c * CHUNK;
        for_each_run(ch, base..base + dst.len(), |k, from, to| {
            quantize_run_i8(
                &bytes[4 * from..4 * to],
                &mut dst[from - base..to - base],
                scales[k],
                qmax,
            )
        });
    });
    (scales, out)
}

/// [`symmetric_scales`] straight from little-endian f32 bytes, in parallel.
pub fn symmetric_scales_bytes(bytes: &[u8], ch: Channels, qmax: f32) -> Vec<f32> {
    use rayon::prelude::*;
    let n = bytes.len() / 4;
    let absmax = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut m = vec![0f32; ch.channels];
            for_each_run(ch, c * CHUNK..((c + 1) * CHUNK).min(n), |k, from, to| {
                m[k] = m[k].max(abs_max_run(&bytes[4 * from..4 * to]));
            });
            m
        })
        .reduce(
            || vec![0f32; ch.channels],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x = x.max(y));
                a
            },
        );
    absmax
        .into_iter()
        .map(|m| symmetric_scale(m, qmax))
        .collect()
}

/// INT4 values of little-endian f32 bytes, packed: the fast twin of
/// `pack_int4(&quantize_symmetric(&f32_values(bytes), ch, scales, 7.0))`, in parallel and
/// without the intermediate float and int8 vectors (a weight of hundreds of MB would
/// otherwise need 5× its packed size in memory).
pub fn quantize_int4_packed_bytes(bytes: &[u8], ch: Channels, scales: &[f32]) -> Vec<u8> {
    use rayon::prelude::*;
    let n = bytes.len() / 4;
    let mut out = output_buffer(n.div_ceil(2));
    // CHUNK is even: a chunk of output bytes holds whole pairs of elements.
    out.par_chunks_mut(CHUNK / 2)
        .enumerate()
        .for_each(|(c, dst)| {
            let base = c * CHUNK;
            let end = (base + CHUNK).min(n);
            let mut q = vec![0i8; end - base];
            for_each_run(ch, base..end, |k, from, to| {
                quantize_run_i4(
                    &bytes[4 * from..4 * to],
                    &mut q[from - base..to - base],
                    scales[k],
                )
            });
            for (d, p) in dst.iter_mut().zip(q.chunks(2)) {
                let lo = (p[0] as u8) & 0x0f;
                let hi = p.get(1).map_or(0, |&v| (v as u8) & 0x0f);
                *d = lo | (hi << 4);
            }
        });
    out
}

/// Packs 4-bit values (each in [-8, 7]) two per byte, the first in the low nibble, as
/// the runtime's INT4 tensors store them.
pub fn pack_int4(values: &[i8]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|p| {
            let lo = (p[0] as u8) & 0x0f;
            let hi = p.get(1).map_or(0, |&v| (v as u8) & 0x0f);
            lo | (hi << 4)
        })
        .collect()
}

/// Inverse of [`pack_int4`] for `n` values.
pub fn unpack_int4(bytes: &[u8], n: usize) -> Vec<i8> {
    (0..n)
        .map(|i| {
            let b = bytes[i / 2];
            let nib = if i % 2 == 0 { b & 0x0f } else { b >> 4 };
            ((nib << 4) as i8) >> 4
        })
        .collect()
}

/// IEEE half-precision bytes of f32 values (round to nearest even, as TF's converter).
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

/// Half-precision bytes of the little-endian f32 `bytes`, converted straight from them
/// (in parallel, no intermediate `Vec<f32>`): the fast twin of
/// `f16_bytes(&f32_values(bytes))`, used on weights of any size.
pub fn f16_bytes_of_f32_le(bytes: &[u8]) -> Vec<u8> {
    use rayon::prelude::*;
    let n = bytes.len() / 4;
    let mut out = output_buffer(2 * n);
    out.par_chunks_mut(2 * CHUNK)
        .enumerate()
        .for_each(|(c, dst)| {
            let src = &bytes[4 * c * CHUNK..4 * (c * CHUNK + dst.len() / 2)];
            f16_run(src, dst);
        });
    out
}

/// Values converted per call of `half`'s slice conversion (a few KB on the stack).
const F16_RUN: usize = 1024;

/// Half-precision bytes of the f32 bytes `src` into `dst` (half as long), through
/// `half`'s slice conversion: eight values per F16C instruction when the CPU has it,
/// the same instruction and rounding mode (nearest even) as `f16::from_f32` per value,
/// and the same software fallback without it, so the bits are [`f16_bytes`]' (tested).
/// Each value on its own: the encoding of [`crate::ir::Data::deferred`] float16 data.
pub fn f16_run(src: &[u8], dst: &mut [u8]) {
    use half::slice::HalfFloatSliceExt;
    let mut f = [0f32; F16_RUN];
    let mut h = [half::f16::ZERO; F16_RUN];
    for (s, d) in src.chunks(4 * F16_RUN).zip(dst.chunks_mut(2 * F16_RUN)) {
        let n = s.len() / 4;
        for (x, v) in f.iter_mut().zip(f32s(s)) {
            *x = v;
        }
        h[..n].convert_from_f32_slice(&f[..n]);
        for (o, v) in d.chunks_exact_mut(2).zip(&h[..n]) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// f32 values of IEEE half-precision bytes.
pub fn f16_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference twin of [`round_clamped_i8`] (the form the int8 byte kernel used
    /// before: the f64 conversions and the saturating cast keep it scalar): the
    /// magnitude plus one half, truncated, in f64 (exact), capped at `qmax`; NaN gives
    /// `qmax`.
    fn round_clamped(x: f32, qmax: f32) -> i32 {
        let a = (x.abs() as f64 + 0.5).min(qmax as f64) as i32;
        if x < 0.0 { -a } else { a }
    }

    #[test]
    fn per_channel_scales_use_the_largest_magnitude_of_each_channel() {
        // shape [2, 3], axis 0: rows are channels.
        let v = [0.5, -1.27, 0.1, 0.0, 0.0, 0.0];
        let ch = Channels::new(&[2, 3], Some(0));
        let s = symmetric_scales(&v, ch, 127.0);
        assert_eq!(s, vec![0.01, 1.0]);
        let q = quantize_symmetric(&v, ch, &s, 127.0);
        assert_eq!(q, vec![50, -127, 10, 0, 0, 0]);
    }

    #[test]
    fn last_axis_channels() {
        // shape [1, 2, 2], axis 2 (depthwise-style): elements alternate channels.
        let ch = Channels::new(&[1, 2, 2], Some(2));
        assert_eq!(
            (0..4).map(|i| ch.of(i)).collect::<Vec<_>>(),
            vec![0, 1, 0, 1]
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero_and_clamped() {
        let ch = Channels::new(&[4], None);
        let q = quantize_symmetric(&[0.5, -0.5, 1.5, 300.0], ch, &[1.0], 127.0);
        assert_eq!(q, vec![1, -1, 2, 127]);
    }

    #[test]
    fn byte_kernel_matches_the_reference_functions() {
        // Values around rounding boundaries, zeros, a whole zero channel, extremes.
        let shape = [5, 7];
        let mut v: Vec<f32> = (0..35)
            .map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.13)
            .collect();
        v[3] = 0.499_999_97;
        v[4] = -2.5;
        for x in &mut v[14..21] {
            *x = 0.0;
        }
        let bytes = f32_bytes(&v);
        for axis in [None, Some(0), Some(1)] {
            let ch = Channels::new(&shape, axis);
            let (s, q) = quantize_symmetric_bytes(&bytes, ch, 127.0);
            assert_eq!(s, symmetric_scales(&v, ch, 127.0), "{axis:?}");
            let want: Vec<u8> = quantize_symmetric(&v, ch, &s, 127.0)
                .iter()
                .map(|&x| x as u8)
                .collect();
            assert_eq!(q, want, "{axis:?}");
        }
    }

    /// The reference's int8 values of `v` with `scales`, as bytes.
    fn reference_int8_bytes(v: &[f32], ch: Channels, scales: &[f32]) -> Vec<u8> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| round_clamped(x / scales[ch.of(i)], 127.0) as i8 as u8)
            .collect()
    }

    /// Channels of 5000 contiguous values: 13 a task, four tasks, the last short; one
    /// channel of zeros and one with an infinity (scale 1), NaN ignored by the scales;
    /// largest magnitudes at a channel's first and last value, and at a task's edges.
    fn channels_across_tasks() -> (Vec<f32>, Channels) {
        let (channels, inner) = (40, 5000);
        let mut state = 0x2545_f491u32;
        let mut v: Vec<f32> = (0..channels * inner)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * (1 + state % 7) as f32
            })
            .collect();
        for x in &mut v[7 * inner..8 * inner] {
            *x = 0.0;
        }
        v[20 * inner + 3] = f32::INFINITY;
        v[33 * inner + 9] = f32::NAN;
        v[5 * inner] = 100.0;
        v[6 * inner + inner - 1] = -100.0;
        v[13 * inner] = -50.0;
        v[13 * inner - 1] = 60.0;
        (v, Channels { channels, inner })
    }

    #[test]
    fn the_fused_per_channel_kernel_matches_the_reference_across_tasks() {
        let (v, ch) = channels_across_tasks();
        let (s, q) = quantize_symmetric_bytes(&f32_bytes(&v), ch, 127.0);
        assert_eq!(s, symmetric_scales(&v, ch, 127.0));
        assert_eq!((s[7], s[20]), (1.0, 1.0));
        assert_eq!(q, reference_int8_bytes(&v, ch, &s));
    }

    #[test]
    fn the_per_channel_kernel_reads_the_file_as_it_reads_memory() {
        use std::io::Write;
        // The weight behind 12 bytes of something else in the file; then a file cut
        // short, whose failed reads fall back to the bytes in memory.
        let (v, ch) = channels_across_tasks();
        let bytes = f32_bytes(&v);
        let want = quantize_symmetric_bytes(&bytes, ch, 127.0);
        let file_of = |data: &[u8]| {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&[7u8; 12]).unwrap();
            f.write_all(data).unwrap();
            f
        };
        for f in [file_of(&bytes), file_of(&bytes[..bytes.len() / 2])] {
            let got = quantize_symmetric_bytes_from(&bytes, Some((&f, 12)), ch, 127.0);
            assert_eq!(got, want);
        }
        // The read really is the file's: other bytes there give other scales, and the
        // same as quantizing those bytes from memory.
        let half: Vec<f32> = v.iter().map(|x| x * 0.5).collect();
        let other = f32_bytes(&half);
        let got = quantize_symmetric_bytes_from(&bytes, Some((&file_of(&other), 12)), ch, 127.0);
        assert_ne!(got.0, want.0);
        assert_eq!(got, quantize_symmetric_bytes(&other, ch, 127.0));
    }

    #[test]
    fn fast_rounding_agrees_with_f32_round_near_halves() {
        for x in [
            0.5f32,
            -0.5,
            1.5,
            2.5,
            0.499_999_97,
            -0.499_999_97,
            126.5,
            127.49,
            300.0,
            -300.0,
        ] {
            let want = x.round().clamp(-127.0, 127.0) as i32;
            assert_eq!(round_clamped(x, 127.0), want, "{x}");
            assert_eq!(round_clamped_i8(x, 127.0) as i32, want, "{x}");
        }
    }

    /// Edge cases and pseudo-random bit patterns (every class of f32: NaNs with
    /// payloads, infinities, subnormals, huge values) for the vectorisable rounding
    /// against its reference twin, for int8 and int4 ranges.
    fn rounding_inputs() -> Vec<f32> {
        let mut xs = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.499_999_97,
            -0.499_999_97,
            0.500_000_06,
            6.5,
            7.5,
            -7.5,
            8.0,
            126.5,
            -126.5,
            127.5,
            128.0,
            -128.5,
            1e-40,
            -1e-45,
            f32::MIN_POSITIVE,
            8_388_607.5,
            8_388_608.0,
            16_777_217.0,
            -3e38,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc0_1234),
        ];
        let mut s = 0x2545_f491u32;
        for i in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            // Half raw bit patterns, half values spread over the quantized range.
            xs.push(if i % 2 == 0 {
                f32::from_bits(s)
            } else {
                (s as f32 / u32::MAX as f32 - 0.5) * 300.0
            });
        }
        xs
    }

    #[test]
    fn vectorisable_rounding_equals_its_reference_twin() {
        for qmax in [127.0f32, 7.0, 1.0, 0.0] {
            for &x in &rounding_inputs() {
                let want = round_clamped(x, qmax);
                assert_eq!(
                    round_clamped_i8(x, qmax) as i32,
                    want,
                    "{x:?} ({:#x}), qmax {qmax}",
                    x.to_bits()
                );
            }
        }
    }

    #[test]
    fn int8_byte_kernel_equals_the_reference_rounding_on_every_class_of_value() {
        // One scale for the whole tensor, and per channel across chunk boundaries; the
        // values include NaN and infinities (the byte kernel gives them ±127, as the
        // reference rounding does; scales ignore NaN and infinities give scale 1).
        let v = rounding_inputs();
        let bytes = f32_bytes(&v);
        for ch in [
            Channels {
                channels: 1,
                inner: v.len(),
            },
            Channels {
                channels: 7,
                inner: 13,
            },
        ] {
            let (scales, q) = quantize_symmetric_bytes(&bytes, ch, 127.0);
            assert_eq!(q, reference_int8_bytes(&v, ch, &scales));
        }
    }

    #[test]
    fn int4_packing_round_trips() {
        let v: Vec<i8> = vec![-8, 7, 0, -1, 3];
        let p = pack_int4(&v);
        assert_eq!(p, vec![0x78, 0xf0, 0x03]);
        assert_eq!(unpack_int4(&p, v.len()), v);
    }

    #[test]
    fn f16_round_trip_of_representable_values() {
        let v = [1.0f32, -2.5, 0.0, 65504.0];
        assert_eq!(f16_to_f32(&f16_bytes(&v)), v.to_vec());
        // The streaming twin agrees with the reference on every value, across chunks.
        let many: Vec<f32> = (0..3 * CHUNK + 7)
            .map(|i| (i as f32 - 1e5) * 0.37)
            .chain([f32::NAN, f32::INFINITY, -0.0, 1e-8, 7e4])
            .collect();
        let fast = f16_bytes_of_f32_le(&f32_bytes(&many));
        assert_eq!(fast, f16_bytes(&many));
    }

    #[test]
    fn slice_f16_conversion_equals_the_per_value_one_on_every_class_of_value() {
        // Ties to even at every magnitude, subnormal halves and underflow, overflow to
        // infinity, NaN payloads, plus pseudo-random bit patterns; an odd count so the
        // last run is partial.
        let mut v = rounding_inputs();
        v.extend([
            65504.0f32,
            65519.99,
            65520.0,
            -65520.0,
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            -(1.0 + 1.0 / 2048.0),
            5.960_464_5e-8,
            2.980_232_2e-8,
            2.980_232_4e-8,
            8.940_697e-8,
            6.097_555e-5,
            6.103_515_6e-5,
            1e-10,
            -1e-10,
        ]);
        for e in -30..20 {
            for m in 0..8u32 {
                let x = f32::from_bits((((e + 127) as u32) << 23) | (m << 12) | 0x1000);
                v.extend([x, -x]);
            }
        }
        v.push(1.0);
        let fast = f16_bytes_of_f32_le(&f32_bytes(&v));
        let want = f16_bytes(&v);
        for (i, (a, b)) in fast.chunks(2).zip(want.chunks(2)).enumerate() {
            assert_eq!(a, b, "value {i}: {:?} ({:#x})", v[i], v[i].to_bits());
            // And the software conversion (what a CPU without F16C runs).
            let soft = half::f16::from_f32_const(v[i]).to_le_bytes();
            assert_eq!(a, soft, "value {i}: {:?} ({:#x})", v[i], v[i].to_bits());
        }
        assert_eq!(fast.len(), want.len());
    }

    #[test]
    fn byte_kernels_agree_with_the_reference_across_chunks() {
        // Odd length (a last half-filled byte), several chunks, a zero channel, NaN.
        let n = 2 * CHUNK + 2 * 5 + 1;
        let mut v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0)
            .collect();
        v[3] = f32::NAN;
        let bytes = f32_bytes(&v);
        for ch in [
            Channels {
                channels: 1,
                inner: n,
            },
            Channels {
                channels: 3,
                inner: 11,
            },
        ] {
            let scales = symmetric_scales(&v, ch, 7.0);
            assert_eq!(symmetric_scales_bytes(&bytes, ch, 7.0), scales);
            let reference = pack_int4(&quantize_symmetric(&v, ch, &scales, 7.0));
            assert_eq!(quantize_int4_packed_bytes(&bytes, ch, &scales), reference);
            // The int8 byte kernel across chunk boundaries too (NaN aside: it rounds
            // NaN to the largest value, the reference to 0).
            let finite: Vec<f32> = v
                .iter()
                .map(|&x| if x.is_nan() { 0.0 } else { x })
                .collect();
            let (s8, q8) = quantize_symmetric_bytes(&f32_bytes(&finite), ch, 127.0);
            assert_eq!(s8, symmetric_scales(&finite, ch, 127.0));
            let want: Vec<u8> = quantize_symmetric(&finite, ch, &s8, 127.0)
                .iter()
                .map(|&x| x as u8)
                .collect();
            assert_eq!(q8, want);
        }
    }
}
