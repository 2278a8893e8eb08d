//! NHWC convolutions and pooling: CONV_2D (im2col + GEMM fast path, grouped and
//! reference versions), DEPTHWISE_CONV_2D (row-parallel fast path + reference),
//! TRANSPOSE_CONV, AVERAGE/MAX/L2 pooling. Padding follows TFLite's
//! `ComputePaddingHeightWidth`: SAME pads `total / 2` before, the rest after.

use crate::fb::{ActivationFunctionType, BuiltinOperator as B, BuiltinOptions as O, Padding};

#[cfg(doc)]
use super::Buffers;
use super::dw3x3;
use super::gemm::{Epilogue, Mat, PackCell, cached_pack, sgemm_packed};
use super::{
    Ctx, Ins, KResult, apply_act, bad, checked_numel, ensure, for_each_chunk_mut, to_usize,
};

fn shape_len(shape: &[usize]) -> usize {
    shape.iter().product()
}
use crate::interp::simd::{SimdLevel, simd_level};
use crate::interp::value::Value;

/// Geometry of one spatial dimension of a window op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dim {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub output: usize,
    /// Padding before the first element.
    pub pad: usize,
}

impl Dim {
    fn new(pad: Padding, input: usize, kernel: usize, stride: i32, dilation: i32) -> KResult<Dim> {
        ensure!(
            stride >= 1 && dilation >= 1,
            "stride {stride} and dilation {dilation} must be >= 1"
        );
        ensure!(kernel >= 1, "window size must be >= 1");
        let (stride, dilation) = (stride as usize, dilation as usize);
        let eff = (kernel - 1) * dilation + 1;
        let output = match pad {
            Padding::Same => input.div_ceil(stride),
            Padding::Valid => {
                if input >= eff {
                    (input - eff + stride) / stride
                } else {
                    0
                }
            }
        };
        let total = ((output.max(1) - 1) * stride + eff).saturating_sub(input);
        Ok(Dim {
            input,
            kernel,
            stride,
            dilation,
            output,
            pad: total / 2,
        })
    }

    /// Input coordinate of output `o`, window tap `k` (may be outside the input).
    #[inline]
    fn src(&self, o: usize, k: usize) -> Option<usize> {
        let p = (o * self.stride + k * self.dilation) as isize - self.pad as isize;
        (p >= 0 && (p as usize) < self.input).then_some(p as usize)
    }
}

fn nhwc(v: &Value, what: &str) -> KResult<[usize; 4]> {
    match v.shape.as_slice() {
        &[n, h, w, c] => Ok([n, h, w, c]),
        s => bad!("{what} must be 4-D NHWC, got shape {s:?}"),
    }
}

fn bias_of<'a>(ins: &Ins<'a>, i: usize, n: usize) -> KResult<Option<&'a [f32]>> {
    match ins.opt(i) {
        None => Ok(None),
        Some(_) => {
            let b = ins.f32(i)?;
            ensure!(b.len() == n, "bias has {} elements, expected {n}", b.len());
            Ok(Some(b))
        }
    }
}

/// Parameters of a CONV_2D, shared by the fast and the reference kernel.
pub(crate) struct ConvGeom {
    pub batch: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub filter_c: usize,
    pub h: Dim,
    pub w: Dim,
}

/// Reference CONV_2D (any groups): one accumulation per output element.
pub(crate) fn conv2d_reference(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let groups = g.in_c / g.filter_c;
    let oc_per_group = g.out_c / groups;
    let (kh, kw) = (g.h.kernel, g.w.kernel);
    let mut out = vec![0f32; g.batch * g.h.output * g.w.output * g.out_c];
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.h.output {
            for ox in 0..g.w.output {
                for oc in 0..g.out_c {
                    let grp = oc / oc_per_group;
                    let mut acc = 0f32;
                    for ky in 0..kh {
                        let Some(iy) = g.h.src(oy, ky) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = g.w.src(ox, kx) else { continue };
                            let xi =
                                ((b * g.h.input + iy) * g.w.input + ix) * g.in_c + grp * g.filter_c;
                            let wi = ((oc * kh + ky) * kw + kx) * g.filter_c;
                            for ic in 0..g.filter_c {
                                acc += x[xi + ic] * w[wi + ic];
                            }
                        }
                    }
                    out[o] = acc + bias.map_or(0.0, |b| b[oc]);
                    o += 1;
                }
            }
        }
    }
    out
}

/// Fast CONV_2D for one group: im2col (skipped for 1×1 stride-1 unpadded kernels) and
/// one GEMM `[pixels, kh·kw·c] × [kh·kw·c, out_c]`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn conv2d_fast(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let epi = Epilogue {
        bias,
        ..Epilogue::NONE
    };
    conv2d_fast_epilogue(g, x, w, &epi)
}

/// [`conv2d_fast`] with the bias and the fused activation applied by the GEMM to each
/// block of rows while it is in cache ([`Epilogue`]).
pub(crate) fn conv2d_fast_epilogue(g: &ConvGeom, x: &[f32], w: &[f32], epi: &Epilogue) -> Vec<f32> {
    conv2d_fast_packed(g, x, w, epi, None)
}

/// [`conv2d_fast_epilogue`] keeping the packing of the (constant) filter in `cell`
/// (the same result).
pub(crate) fn conv2d_fast_packed(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    cell: Option<&PackCell>,
) -> Vec<f32> {
    let len = g.batch * g.h.output * g.w.output * g.out_c;
    conv2d_fast_into(g, x, w, (epi, cell), vec![0f32; len])
}

/// [`conv2d_fast_packed`] writing into `out` (batch · pixels · out_c values, any
/// contents: every one is overwritten), e.g. a recycled buffer ([`Buffers`]).
pub(crate) fn conv2d_fast_into(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    (epi, cell): (&Epilogue, Option<&PackCell>),
    mut out: Vec<f32>,
) -> Vec<f32> {
    let (kh, kw, c) = (g.h.kernel, g.w.kernel, g.in_c);
    let k = kh * kw * c;
    let pixels = g.h.output * g.w.output;
    let m = g.batch * pixels;
    assert_eq!(out.len(), m * g.out_c, "conv2d output size");
    let direct = kh == 1
        && kw == 1
        && g.h.stride == 1
        && g.w.stride == 1
        && g.h.pad == 0
        && g.w.pad == 0
        && g.h.output == g.h.input
        && g.w.output == g.w.input;
    let wm = Mat {
        data: w,
        rs: 1,
        cs: k,
    };
    let packed = cached_pack(cell, k, g.out_c, wm);
    if direct {
        sgemm_packed(
            [m, k, g.out_c],
            Mat {
                data: x,
                rs: k,
                cs: 1,
            },
            wm,
            &mut out,
            epi,
            packed,
        );
    } else {
        // im2col row r = (b, oy, ox): the window's taps (ky, kx, c), zeros where padded.
        // Every element is written: the buffer is this thread's from the last call.
        let mut cols = COLS.with(|c| c.take());
        cols.resize(m * k, 0.0);
        cols.truncate(m * k);
        let row_len = g.w.output * k;
        for_each_chunk_mut(&mut cols, row_len, |r, rows| im2col_row(g, x, r, rows));
        sgemm_packed(
            [m, k, g.out_c],
            Mat {
                data: &cols,
                rs: k,
                cs: 1,
            },
            wm,
            &mut out,
            epi,
            packed,
        );
        if cols.capacity() <= KEEP_COLS {
            COLS.with(|c| c.replace(cols));
        }
    }
    out
}

thread_local! {
    /// The im2col buffer of the last CONV_2D this thread ran, reused by the next (a new
    /// one of a few MB per call costs its page faults each time). Taken out while in
    /// use, so a nested call on the same thread (rayon) allocates its own.
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest im2col buffer (in values) kept per thread: 16 MiB.
const KEEP_COLS: usize = 4 << 20;

/// Fills the im2col rows of output row `r` = (batch, oy) (`rows`: one row of
/// `kh·kw·in_c` taps per output pixel, zeros where padded; every element written): the taps
/// of one filter row whose sources are adjacent in the input (stride along the window
/// 1: no dilation) are one copy of `n·in_c` values, not `n` copies of `in_c` (the first
/// layer of an image model has 3 channels: a call to `memcpy` per 12 bytes).
fn im2col_row(g: &ConvGeom, x: &[f32], r: usize, rows: &mut [f32]) {
    let (kh, kw, c) = (g.h.kernel, g.w.kernel, g.in_c);
    let k = kh * kw * c;
    let (b, oy) = (r / g.h.output, r % g.h.output);
    for ox in 0..g.w.output {
        let dst = &mut rows[ox * k..(ox + 1) * k];
        for ky in 0..kh {
            let Some(iy) = g.h.src(oy, ky) else {
                dst[ky * kw * c..(ky + 1) * kw * c].fill(0.0);
                continue;
            };
            let mut kx = 0;
            while kx < kw {
                let Some(ix) = g.w.src(ox, kx) else {
                    let d = (ky * kw + kx) * c;
                    dst[d..d + c].fill(0.0);
                    kx += 1;
                    continue;
                };
                let mut n = 1;
                while kx + n < kw && g.w.src(ox, kx + n) == Some(ix + n) {
                    n += 1;
                }
                let s = ((b * g.h.input + iy) * g.w.input + ix) * c;
                let d = (ky * kw + kx) * c;
                dst[d..d + n * c].copy_from_slice(&x[s..s + n * c]);
                kx += n;
            }
        }
    }
}

/// CONV_2D: input NHWC, filter `[out_c, kh, kw, in_c / groups]`, optional bias.
pub(crate) fn conv2d(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    conv2d_with(ctx, ins, None)
}

/// [`conv2d`] keeping the packing of its (constant) filter in `cell`.
pub(crate) fn conv2d_with(ctx: &Ctx, ins: &Ins, cell: Option<&PackCell>) -> KResult<Value> {
    let Some(O::Conv2DOptions(o)) = ctx.opts() else {
        bad!("missing Conv2DOptions");
    };
    let (xv, wv) = (ins.get(0)?, ins.get(1)?);
    let (x, w) = (ins.f32(0)?, ins.f32(1)?);
    let [n, ih, iw, ic] = nhwc(xv, "input")?;
    let [oc, kh, kw, fc] = nhwc(wv, "filter")?;
    ensure!(
        fc > 0 && ic % fc == 0 && oc % (ic / fc).max(1) == 0,
        "filter {:?} does not fit input {:?}",
        wv.shape,
        xv.shape
    );
    let g = ConvGeom {
        batch: n,
        in_c: ic,
        out_c: oc,
        filter_c: fc,
        h: Dim::new(o.padding, ih, kh, o.stride_h, o.dilation_h_factor)?,
        w: Dim::new(o.padding, iw, kw, o.stride_w, o.dilation_w_factor)?,
    };
    let shape = vec![n, g.h.output, g.w.output, oc];
    checked_numel(&shape)?;
    checked_numel(&[n * g.h.output * g.w.output, kh * kw * ic])?;
    let bias = bias_of(ins, 2, oc)?;
    let out = if fc == ic {
        let epi = Epilogue::new(bias, o.fused_activation_function, ctx.out_keys)?;
        let out = conv2d_fast_into(&g, x, w, (&epi, cell), ctx.out_buffer(shape_len(&shape)));
        if let Some(keys) = ctx.out_keys {
            keys.mark_complete();
        }
        out
    } else {
        let mut out = conv2d_reference(&g, x, w, bias);
        apply_act(&mut out, o.fused_activation_function)?;
        out
    };
    Ok(Value::f32(shape, out))
}

/// Parameters of a DEPTHWISE_CONV_2D.
#[derive(Debug)]
pub(crate) struct DwGeom {
    pub batch: usize,
    pub in_c: usize,
    pub mult: usize,
    pub h: Dim,
    pub w: Dim,
}

#[cfg_attr(not(test), allow(dead_code))]
/// Reference DEPTHWISE_CONV_2D: output channel `ic * mult + m` reads input channel `ic`.
pub(crate) fn depthwise_reference(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let oc = g.in_c * g.mult;
    let mut out = vec![0f32; g.batch * g.h.output * g.w.output * oc];
    for b in 0..g.batch {
        for oy in 0..g.h.output {
            for ox in 0..g.w.output {
                for c in 0..oc {
                    let ic = c / g.mult;
                    let mut acc = 0f32;
                    for ky in 0..g.h.kernel {
                        let Some(iy) = g.h.src(oy, ky) else { continue };
                        for kx in 0..g.w.kernel {
                            let Some(ix) = g.w.src(ox, kx) else { continue };
                            acc += x[((b * g.h.input + iy) * g.w.input + ix) * g.in_c + ic]
                                * w[(ky * g.w.kernel + kx) * oc + c];
                        }
                    }
                    out[((b * g.h.output + oy) * g.w.output + ox) * oc + c] =
                        acc + bias.map_or(0.0, |b| b[c]);
                }
            }
        }
    }
    out
}

/// Fast DEPTHWISE_CONV_2D: output rows in parallel, channels innermost, the row loop
/// compiled again for AVX2 and AVX-512F and chosen at run time (see [`simd_level`]). All
/// builds multiply and add separately (no fused multiply-add), in the same order, so
/// they give the same bits; [`depthwise_reference`] is the twin the tests compare with.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn depthwise_fast(g: &DwGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let epi = Epilogue {
        bias,
        ..Epilogue::NONE
    };
    depthwise_fast_epilogue(g, x, w, &epi)
}

/// [`depthwise_fast`] with the fused activation's clamp applied to each output pixel
/// right after its sum (bias first, as in a separate pass).
pub(crate) fn depthwise_fast_epilogue(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
) -> Vec<f32> {
    let len = g.batch * g.h.output * g.w.output * g.in_c * g.mult;
    depthwise_fast_into(g, x, w, epi, vec![0f32; len])
}

/// [`depthwise_fast_epilogue`] writing into `out` (any contents: every value is
/// overwritten), e.g. a recycled buffer ([`Buffers`]).
pub(crate) fn depthwise_fast_into(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    out: Vec<f32>,
) -> Vec<f32> {
    depthwise_at(simd_level(), g, x, w, epi, out)
}

/// [`depthwise_fast_into`] with the kernels of `level`, which must not exceed
/// [`simd_level`] (the tests run each level's kernels on one CPU).
fn depthwise_at(
    level: SimdLevel,
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    mut out: Vec<f32>,
) -> Vec<f32> {
    assert!(level <= simd_level(), "{level:?} beyond this CPU");
    let oc = g.in_c * g.mult;
    let row = g.w.output * oc;
    assert_eq!(
        out.len(),
        g.batch * g.h.output * row,
        "depthwise output size"
    );
    for_each_chunk_mut(&mut out, row, |r, orow| {
        // The 3×3 kernel computes most of the row and folds its keys in registers;
        // its edges are compiled for the same level.
        let folded = match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                // SAFETY: level <= `simd_level()` (asserted), which returns Avx512 only
                // after detecting AVX-512F.
                unsafe { dw3x3_row_avx512(g, x, w, epi, r, orow) }
            }
            _ => dw3x3_row(g, x, w, epi, r, orow, level),
        };
        if folded {
            return;
        }
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                // SAFETY: level <= `simd_level()` (asserted), which returns Avx512
                // only after detecting AVX-512F.
                unsafe { depthwise_row_avx512(g, x, w, epi, r, orow) }
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => {
                // SAFETY: level <= `simd_level()` (asserted), which returns Avx2 or
                // more only after detecting AVX2 at run time.
                unsafe { depthwise_row_avx2(g, x, w, epi, r, orow) }
            }
            _ => depthwise_row(g, x, w, epi, r, orow),
        }
        // The row's keys while it is in cache.
        if let Some(keys) = epi.keys {
            keys.fold(orow);
        }
    });
    out
}

/// [`dw3x3_row`] at AVX-512F, its edges and last channels compiled with AVX-512F
/// enabled (the same operations: no contraction into FMAs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dw3x3_row_avx512(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    r: usize,
    orow: &mut [f32],
) -> bool {
    dw3x3_row(g, x, w, epi, r, orow, SimdLevel::Avx512)
}

/// Row `r` of a 3×3 depthwise convolution (multiplier 1, dilation 1 and stride 1 or 2
/// along x) with its interior from the AVX-512F / AVX2 kernel of `level` ([`dw3x3`]),
/// the edges and the channels past the last block of 8 pixel by pixel
/// ([`depthwise_pixels`], [`interior_block`]): the bits of [`depthwise_row`]. The row's
/// keys are folded into `epi.keys` (the kernel's from registers). False, with `orow`
/// untouched, when the geometry or the CPU does not fit the kernel.
#[inline(always)]
fn dw3x3_row(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    r: usize,
    orow: &mut [f32],
    level: SimdLevel,
) -> bool {
    if g.mult != 1 || g.h.kernel != 3 || g.w.kernel != 3 || g.w.dilation != 1 {
        return false;
    }
    let (lo, hi) = interior(&g.w);
    let oc = g.in_c;
    let (b, oy) = (r / g.h.output, r % g.h.output);
    let mut rows = [(0usize, 0usize); 3];
    let mut nr = 0;
    for ky in 0..3 {
        if let Some(iy) = g.h.src(oy, ky) {
            rows[nr] = ((b * g.h.input + iy) * g.w.input * oc, ky);
            nr += 1;
        }
    }
    let clamp = !(epi.lo == f32::NEG_INFINITY && epi.hi == f32::INFINITY);
    let job = dw3x3::Row {
        x,
        w,
        c: oc,
        in_w: g.w.input,
        rows: &rows[..nr],
        stride: g.w.stride,
        pad: g.w.pad,
        pixels: lo..hi,
        bias: epi.bias,
        clamp: clamp.then_some((epi.lo, epi.hi)),
    };
    let Some((klo, khi)) = dw3x3::run(&job, orow, epi.keys.is_some(), level) else {
        return false;
    };
    depthwise_pixels(g, x, w, epi, r, 0..lo, orow);
    depthwise_pixels(g, x, w, epi, r, hi..g.w.output, orow);
    let done = oc / 8 * 8;
    if done < oc {
        // The taps of the interior, as `depthwise_interior` lists them.
        let mut taps = [(0usize, 0usize); 9];
        let mut nt = 0;
        for &(off, ky) in &rows[..nr] {
            for kx in 0..3 {
                taps[nt] = (off + kx * oc, (ky * 3 + kx) * oc);
                nt += 1;
            }
        }
        for c0 in done..oc {
            interior_block::<1>(g, (x, w), epi, &taps[..nt], c0, lo..hi, orow);
        }
    }
    if let Some(keys) = epi.keys {
        if done < oc {
            keys.fold(orow);
        } else {
            keys.fold(&orow[..lo * oc]);
            keys.fold(&orow[hi * oc..]);
            keys.fold_keys(klo, khi);
        }
    }
    true
}

/// [`depthwise_row`] compiled with AVX-512F enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn depthwise_row_avx512(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    r: usize,
    orow: &mut [f32],
) {
    depthwise_row(g, x, w, epi, r, orow)
}

/// [`depthwise_row`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn depthwise_row_avx2(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    r: usize,
    orow: &mut [f32],
) {
    depthwise_row(g, x, w, epi, r, orow)
}

/// Channels accumulated in registers at a time by [`depthwise_row`].
const DW_BLOCK: usize = 16;

/// Output pixels `pixels` of row `r` (= batch · out_h + y) of a depthwise convolution,
/// pixel by pixel: the taps of each pixel listed, then per block of [`DW_BLOCK`]
/// channels the sum kept in registers over all taps; every element is `bias + tap₀ +
/// tap₁ + …` in (ky, kx) order, taps outside the input skipped. The edges of
/// [`depthwise_row`], and its twin in the tests for the interior.
#[inline(always)]
fn depthwise_pixels(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    r: usize,
    pixels: std::ops::Range<usize>,
    orow: &mut [f32],
) {
    let bias = epi.bias;
    let clamp = !(epi.lo == f32::NEG_INFINITY && epi.hi == f32::INFINITY);
    let oc = g.in_c * g.mult;
    let (b, oy) = (r / g.h.output, r % g.h.output);
    // (input offset, filter offset) of each tap inside the input, for one pixel.
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(g.h.kernel * g.w.kernel);
    for ox in pixels {
        let acc = &mut orow[ox * oc..(ox + 1) * oc];
        taps.clear();
        for ky in 0..g.h.kernel {
            let Some(iy) = g.h.src(oy, ky) else { continue };
            for kx in 0..g.w.kernel {
                let Some(ix) = g.w.src(ox, kx) else { continue };
                taps.push((
                    ((b * g.h.input + iy) * g.w.input + ix) * g.in_c,
                    (ky * g.w.kernel + kx) * oc,
                ));
            }
        }
        if g.mult == 1 {
            let blocks = oc / DW_BLOCK;
            for cb in 0..blocks {
                let c0 = cb * DW_BLOCK;
                let mut a = [0f32; DW_BLOCK];
                if let Some(bb) = bias {
                    a.copy_from_slice(&bb[c0..c0 + DW_BLOCK]);
                }
                for &(xo, wo) in &taps {
                    let xin = &x[xo + c0..xo + c0 + DW_BLOCK];
                    let wt = &w[wo + c0..wo + c0 + DW_BLOCK];
                    for l in 0..DW_BLOCK {
                        a[l] += xin[l] * wt[l];
                    }
                }
                acc[c0..c0 + DW_BLOCK].copy_from_slice(&a);
            }
            let c0 = blocks * DW_BLOCK;
            let tail = &mut acc[c0..];
            match bias {
                Some(bb) => tail.copy_from_slice(&bb[c0..]),
                None => tail.fill(0.0),
            }
            for &(xo, wo) in &taps {
                let xin = &x[xo + c0..xo + oc];
                let wt = &w[wo + c0..wo + oc];
                for ((a, &xi), &wi) in tail.iter_mut().zip(xin).zip(wt) {
                    *a += xi * wi;
                }
            }
        } else {
            match bias {
                Some(bb) => acc.copy_from_slice(bb),
                None => acc.fill(0.0),
            }
            for &(xo, wo) in &taps {
                let xin = &x[xo..xo + g.in_c];
                let wt = &w[wo..wo + oc];
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += xin[c / g.mult] * wt[c];
                }
            }
        }
        if clamp {
            for a in acc.iter_mut() {
                *a = a.max(epi.lo).min(epi.hi);
            }
        }
    }
}

/// Most taps [`depthwise_row`]'s interior path keeps the weights of (larger windows go
/// pixel by pixel).
const DW_MAX_TAPS: usize = 25;

/// One output row `r` (= batch · out_h + y) of a depthwise convolution. Pixels whose
/// window lies inside the input along x (the interior; rows outside the input are
/// skipped for the whole row) run channel block by channel block with the block's
/// weights held in registers over the row ([`depthwise_interior`]); the edges, channel
/// multipliers above 1 and large windows go pixel by pixel ([`depthwise_pixels`]). Both
/// give every element as `bias + tap₀ + tap₁ + …` in (ky, kx) order with separate
/// multiplies and adds: the same bits.
#[inline(always)]
fn depthwise_row(g: &DwGeom, x: &[f32], w: &[f32], epi: &Epilogue, r: usize, orow: &mut [f32]) {
    let (lo, hi) = interior(&g.w);
    if g.mult != 1 || g.h.kernel * g.w.kernel > DW_MAX_TAPS || lo >= hi {
        depthwise_pixels(g, x, w, epi, r, 0..g.w.output, orow);
        return;
    }
    depthwise_pixels(g, x, w, epi, r, 0..lo, orow);
    depthwise_interior(g, x, w, epi, r, lo..hi, orow);
    depthwise_pixels(g, x, w, epi, r, hi..g.w.output, orow);
}

/// The outputs `lo..hi` of `d` whose every tap lies inside the input.
fn interior(d: &Dim) -> (usize, usize) {
    let lo = d.pad.div_ceil(d.stride);
    let reach = (d.kernel - 1) * d.dilation;
    // o·stride + reach − pad < input  ⇔  o·stride < input + pad − reach.
    let hi = match (d.input + d.pad).checked_sub(reach) {
        Some(lim) if lim > 0 => (lim - 1) / d.stride + 1,
        _ => 0,
    };
    (lo, hi.min(d.output))
}

/// The interior pixels `pixels` of row `r` (see [`depthwise_row`]; channel multiplier
/// 1): per block of [`DW_BLOCK`] channels the taps' weights are loaded once and kept
/// over the row, each pixel's sum in registers over the taps.
#[inline(always)]
fn depthwise_interior(
    g: &DwGeom,
    x: &[f32],
    w: &[f32],
    epi: &Epilogue,
    r: usize,
    pixels: std::ops::Range<usize>,
    orow: &mut [f32],
) {
    let oc = g.in_c;
    let (b, oy) = (r / g.h.output, r % g.h.output);
    // Per tap (rows inside the input, every column): input offset from the pixel's
    // first window column, filter offset.
    let mut taps = [(0usize, 0usize); DW_MAX_TAPS];
    let mut nt = 0;
    for ky in 0..g.h.kernel {
        let Some(iy) = g.h.src(oy, ky) else { continue };
        for kx in 0..g.w.kernel {
            taps[nt] = (
                ((b * g.h.input + iy) * g.w.input + kx * g.w.dilation) * oc,
                (ky * g.w.kernel + kx) * oc,
            );
            nt += 1;
        }
    }
    let taps = &taps[..nt];
    let blocks = oc / DW_BLOCK;
    for cb in 0..blocks {
        interior_block::<DW_BLOCK>(g, (x, w), epi, taps, cb * DW_BLOCK, pixels.clone(), orow);
    }
    for c0 in blocks * DW_BLOCK..oc {
        interior_block::<1>(g, (x, w), epi, taps, c0, pixels.clone(), orow);
    }
}

/// Channels `c0..c0 + L` of the interior pixels `pixels` (see [`depthwise_interior`]).
#[inline(always)]
fn interior_block<const L: usize>(
    g: &DwGeom,
    (x, w): (&[f32], &[f32]),
    epi: &Epilogue,
    taps: &[(usize, usize)],
    c0: usize,
    pixels: std::ops::Range<usize>,
    orow: &mut [f32],
) {
    let oc = g.in_c;
    let clamp = !(epi.lo == f32::NEG_INFINITY && epi.hi == f32::INFINITY);
    let mut wts = [[0f32; L]; DW_MAX_TAPS];
    for (wt, &(_, wo)) in wts.iter_mut().zip(taps) {
        wt.copy_from_slice(&w[wo + c0..wo + c0 + L]);
    }
    let wts = &wts[..taps.len()];
    let mut start = [0f32; L];
    if let Some(bb) = epi.bias {
        start.copy_from_slice(&bb[c0..c0 + L]);
    }
    for ox in pixels {
        // The window's first column: inside the input for interior pixels.
        let col = (ox * g.w.stride - g.w.pad) * oc + c0;
        let mut a = start;
        for (&(xo, _), wt) in taps.iter().zip(wts) {
            let xin = &x[col + xo..col + xo + L];
            for l in 0..L {
                a[l] += xin[l] * wt[l];
            }
        }
        if clamp {
            for v in a.iter_mut() {
                *v = v.max(epi.lo).min(epi.hi);
            }
        }
        orow[ox * oc + c0..ox * oc + c0 + L].copy_from_slice(&a);
    }
}

/// DEPTHWISE_CONV_2D: filter `[1, kh, kw, in_c · multiplier]`.
pub(crate) fn depthwise(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let Some(O::DepthwiseConv2DOptions(o)) = ctx.opts() else {
        bad!("missing DepthwiseConv2DOptions");
    };
    let (xv, wv) = (ins.get(0)?, ins.get(1)?);
    let (x, w) = (ins.f32(0)?, ins.f32(1)?);
    let [n, ih, iw, ic] = nhwc(xv, "input")?;
    let [one, kh, kw, oc] = nhwc(wv, "filter")?;
    ensure!(
        one == 1 && ic > 0 && oc % ic == 0,
        "filter {:?} does not fit input {:?}",
        wv.shape,
        xv.shape
    );
    let g = DwGeom {
        batch: n,
        in_c: ic,
        mult: oc / ic,
        h: Dim::new(o.padding, ih, kh, o.stride_h, o.dilation_h_factor)?,
        w: Dim::new(o.padding, iw, kw, o.stride_w, o.dilation_w_factor)?,
    };
    let shape = vec![n, g.h.output, g.w.output, oc];
    checked_numel(&shape)?;
    let bias = bias_of(ins, 2, oc)?;
    let epi = Epilogue::new(bias, o.fused_activation_function, ctx.out_keys)?;
    let out = depthwise_fast_into(&g, x, w, &epi, ctx.out_buffer(shape_len(&shape)));
    if let Some(keys) = ctx.out_keys {
        keys.mark_complete();
    }
    Ok(Value::f32(shape, out))
}

/// TRANSPOSE_CONV: inputs (output_shape, filter `[out_c, kh, kw, in_c]`, input, bias?).
pub(crate) fn transpose_conv(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let Some(O::TransposeConvOptions(o)) = ctx.opts() else {
        bad!("missing TransposeConvOptions");
    };
    let out_shape = to_usize(&ins.ints(0)?, "output_shape")?;
    let (wv, xv) = (ins.get(1)?, ins.get(2)?);
    let (w, x) = (ins.f32(1)?, ins.f32(2)?);
    let [n, ih, iw, ic] = nhwc(xv, "input")?;
    let [oc, kh, kw, fc] = nhwc(wv, "filter")?;
    let &[on, oh, ow, occ] = out_shape.as_slice() else {
        bad!("output_shape must have 4 elements, got {out_shape:?}");
    };
    ensure!(
        on == n && occ == oc && fc == ic,
        "output_shape {out_shape:?}, filter {:?} and input {:?} do not fit",
        wv.shape,
        xv.shape
    );
    checked_numel(&out_shape)?;
    // Padding as the runtime computes it: from the output size, as if convolving it.
    let dh = Dim::new(o.padding, oh, kh, o.stride_h, 1)?;
    let dw = Dim::new(o.padding, ow, kw, o.stride_w, 1)?;
    let (sh, sw) = (dh.stride, dw.stride);
    let mut out = vec![0f32; n * oh * ow * oc];
    for b in 0..n {
        for iy in 0..ih {
            for ix in 0..iw {
                let xin = &x[((b * ih + iy) * iw + ix) * ic..][..ic];
                for ky in 0..kh {
                    let oy = (iy * sh + ky) as isize - dh.pad as isize;
                    if oy < 0 || oy as usize >= oh {
                        continue;
                    }
                    for kx in 0..kw {
                        let ox = (ix * sw + kx) as isize - dw.pad as isize;
                        if ox < 0 || ox as usize >= ow {
                            continue;
                        }
                        let dst =
                            &mut out[((b * oh + oy as usize) * ow + ox as usize) * oc..][..oc];
                        for (c, d) in dst.iter_mut().enumerate() {
                            let wt = &w[((c * kh + ky) * kw + kx) * ic..][..ic];
                            *d += xin.iter().zip(wt).map(|(a, b)| a * b).sum::<f32>();
                        }
                    }
                }
            }
        }
    }
    if let Some(bb) = bias_of(ins, 3, oc)? {
        for row in out.chunks_exact_mut(oc.max(1)) {
            for (o, &b) in row.iter_mut().zip(bb) {
                *o += b;
            }
        }
    }
    apply_act(&mut out, o.fused_activation_function)?;
    Ok(Value::f32(out_shape, out))
}

/// AVERAGE_POOL_2D (mean over the valid part of the window), MAX_POOL_2D, L2_POOL_2D
/// (`sqrt(mean(x²))` over the valid part).
pub(crate) fn pool(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let Some(O::Pool2DOptions(o)) = ctx.opts() else {
        bad!("missing Pool2DOptions");
    };
    let xv = ins.get(0)?;
    let x = ins.f32(0)?;
    let [n, ih, iw, c] = nhwc(xv, "input")?;
    ensure!(
        o.filter_height >= 1 && o.filter_width >= 1,
        "filter size {}x{} must be positive",
        o.filter_height,
        o.filter_width
    );
    let h = Dim::new(o.padding, ih, o.filter_height as usize, o.stride_h, 1)?;
    let w = Dim::new(o.padding, iw, o.filter_width as usize, o.stride_w, 1)?;
    let shape = vec![n, h.output, w.output, c];
    checked_numel(&shape)?;
    let row = w.output * c;
    let mut out = vec![0f32; n * h.output * row];
    for_each_chunk_mut(&mut out, row, |r, orow| {
        let (bi, oy) = (r / h.output, r % h.output);
        let mut acc = vec![0f32; c];
        for ox in 0..w.output {
            let init = if b == B::MaxPool2d {
                f32::NEG_INFINITY
            } else {
                0.0
            };
            acc.fill(init);
            let mut count = 0usize;
            for ky in 0..h.kernel {
                let Some(iy) = h.src(oy, ky) else { continue };
                for kx in 0..w.kernel {
                    let Some(ix) = w.src(ox, kx) else { continue };
                    count += 1;
                    let xin = &x[((bi * ih + iy) * iw + ix) * c..][..c];
                    match b {
                        B::MaxPool2d => acc.iter_mut().zip(xin).for_each(|(a, &v)| *a = a.max(v)),
                        B::L2Pool2d => acc.iter_mut().zip(xin).for_each(|(a, &v)| *a += v * v),
                        _ => acc.iter_mut().zip(xin).for_each(|(a, &v)| *a += v),
                    }
                }
            }
            let dst = &mut orow[ox * c..(ox + 1) * c];
            let cnt = count.max(1) as f32;
            for (d, &a) in dst.iter_mut().zip(&acc) {
                *d = match b {
                    B::MaxPool2d => a,
                    B::L2Pool2d => (a / cnt).sqrt(),
                    _ => a / cnt,
                };
            }
        }
    });
    apply_act(&mut out, o.fused_activation_function)?;
    let _ = ActivationFunctionType::None;
    Ok(Value::f32(shape, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::keys::{KeyAcc, KeyRange, key_min_max};
    use rand::{Rng, SeedableRng};

    /// Accumulating k products of values in [-1, 1] in another order changes the sum by
    /// at most about k·ε·k; the margin covers the bias addition.
    const MARGIN: f32 = 4.0;

    fn tol(k: usize) -> f32 {
        MARGIN * k as f32 * f32::EPSILON * k as f32
    }

    /// Every level a kernel may be built for; the tests run those this CPU has.
    const SIMD_LEVELS: [SimdLevel; 3] = [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512];

    fn rand_vec(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// The reference twin of [`im2col_row`]: one copy per tap.
    fn im2col_row_reference(g: &ConvGeom, x: &[f32], r: usize, rows: &mut [f32]) {
        let (kh, kw, c) = (g.h.kernel, g.w.kernel, g.in_c);
        let k = kh * kw * c;
        let (b, oy) = (r / g.h.output, r % g.h.output);
        for ox in 0..g.w.output {
            let dst = &mut rows[ox * k..(ox + 1) * k];
            for ky in 0..kh {
                let Some(iy) = g.h.src(oy, ky) else { continue };
                for kx in 0..kw {
                    let Some(ix) = g.w.src(ox, kx) else { continue };
                    let s = ((b * g.h.input + iy) * g.w.input + ix) * c;
                    let d = (ky * kw + kx) * c;
                    dst[d..d + c].copy_from_slice(&x[s..s + c]);
                }
            }
        }
    }

    /// Copying adjacent taps at once (and zeros where padded) gives exactly the rows the
    /// per-tap copy gives in zeroed rows: SAME and VALID padding, strides, dilation, 1
    /// and 3 channels, odd sizes.
    #[test]
    fn im2col_runs_fill_what_per_tap_copies_fill() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut checked = 0;
        for pad in [Padding::Same, Padding::Valid] {
            for &(k, s, d, ih, iw, c) in &[
                (3, 2, 1, 9, 8, 3),
                (3, 1, 1, 7, 7, 1),
                (3, 1, 2, 10, 11, 4),
                (5, 3, 1, 11, 12, 2),
                (2, 2, 1, 6, 5, 3),
                (7, 2, 1, 15, 14, 3),
            ] {
                let g = ConvGeom {
                    batch: 2,
                    in_c: c,
                    out_c: 1,
                    filter_c: c,
                    h: Dim::new(pad, ih, k, s, d).unwrap(),
                    w: Dim::new(pad, iw, k, s, d).unwrap(),
                };
                let x = rand_vec(&mut rng, 2 * ih * iw * c);
                let len = g.w.output * k * k * c;
                for r in 0..g.batch * g.h.output {
                    // Stale NaNs in the reused buffer must all be overwritten.
                    let (mut a, mut b) = (vec![f32::NAN; len], vec![0.0; len]);
                    im2col_row(&g, &x, r, &mut a);
                    im2col_row_reference(&g, &x, r, &mut b);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b), "{pad:?} k{k} s{s} d{d} row {r}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn fast_conv_matches_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for &(pad, k, s, d, ih, c, oc) in &[
            (Padding::Same, 3, 2, 1, 9, 3, 8),
            (Padding::Valid, 3, 1, 2, 10, 4, 5),
            (Padding::Same, 1, 1, 1, 6, 7, 3),
            (Padding::Valid, 5, 3, 1, 11, 2, 4),
        ] {
            let g = ConvGeom {
                batch: 2,
                in_c: c,
                out_c: oc,
                filter_c: c,
                h: Dim::new(pad, ih, k, s, d).unwrap(),
                w: Dim::new(pad, ih + 1, k, s, d).unwrap(),
            };
            let x = rand_vec(&mut rng, 2 * ih * (ih + 1) * c);
            let w = rand_vec(&mut rng, oc * k * k * c);
            let bias = rand_vec(&mut rng, oc);
            let r = conv2d_reference(&g, &x, &w, Some(&bias));
            let f = conv2d_fast(&g, &x, &w, Some(&bias));
            assert_eq!(r.len(), f.len());
            // Into a buffer of stale values (NaN), keys folded: the same values (every
            // one written), the keys of the whole output.
            let keys = KeyAcc::default();
            let epi = Epilogue {
                bias: Some(&bias),
                keys: Some(&keys),
                ..Epilogue::NONE
            };
            let into = conv2d_fast_into(&g, &x, &w, (&epi, None), vec![f32::NAN; f.len()]);
            assert_eq!(into, f);
            keys.mark_complete();
            let (lo, hi) = key_min_max(&f);
            assert_eq!(keys.range(), Some(KeyRange { lo, hi }));
            let t = tol(k * k * c);
            for (a, b) in r.iter().zip(&f) {
                assert!((a - b).abs() <= t, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn fast_depthwise_matches_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for &(pad, k, s, d, mult) in &[
            (Padding::Same, 3, 1, 1, 1),
            (Padding::Same, 3, 2, 1, 2),
            (Padding::Valid, 3, 1, 2, 3),
            (Padding::Same, 3, 1, 1, 1),
            (Padding::Valid, 5, 2, 1, 1),
            (Padding::Same, 3, 2, 1, 1),
            (Padding::Valid, 3, 2, 1, 1),
            (Padding::Same, 5, 1, 2, 1),
            (Padding::Valid, 7, 1, 1, 1),
            (Padding::Same, 11, 1, 1, 1),
        ] {
            // 37 channels: two register blocks and a tail.
            let (ih, c) = (9, if mult == 1 { 37 } else { 5 });
            let g = DwGeom {
                batch: 2,
                in_c: c,
                mult,
                h: Dim::new(pad, ih, k, s, d).unwrap(),
                w: Dim::new(pad, ih, k, s, d).unwrap(),
            };
            let x = rand_vec(&mut rng, 2 * ih * ih * c);
            let w = rand_vec(&mut rng, k * k * c * mult);
            let bias = rand_vec(&mut rng, c * mult);
            let r = depthwise_reference(&g, &x, &w, Some(&bias));
            let f = depthwise_fast(&g, &x, &w, Some(&bias));
            let keys = KeyAcc::default();
            let epi = Epilogue {
                bias: Some(&bias),
                keys: Some(&keys),
                ..Epilogue::NONE
            };
            let into = depthwise_fast_into(&g, &x, &w, &epi, vec![f32::NAN; f.len()]);
            assert_eq!(into, f, "stale values left: {pad:?} k{k} s{s} d{d}");
            keys.mark_complete();
            let (lo, hi) = key_min_max(&f);
            assert_eq!(keys.range(), Some(KeyRange { lo, hi }));
            let t = tol(k * k);
            for (a, b) in r.iter().zip(&f) {
                assert!((a - b).abs() <= t, "{a} vs {b}");
            }
            // The baseline build of the row loop gives the same bits as the one the
            // CPU dispatch chose.
            let row = g.w.output * c * mult;
            let mut base = vec![0f32; f.len()];
            for (ri, orow) in base.chunks_mut(row).enumerate() {
                let epi = Epilogue {
                    bias: Some(&bias),
                    ..Epilogue::NONE
                };
                depthwise_row(&g, &x, &w, &epi, ri, orow);
            }
            assert_eq!(base, f, "baseline and {:?} builds differ", simd_level());
            // The interior path gives the bits of going pixel by pixel.
            let mut px = vec![0f32; f.len()];
            for (ri, orow) in px.chunks_mut(row).enumerate() {
                let epi = Epilogue {
                    bias: Some(&bias),
                    ..Epilogue::NONE
                };
                depthwise_pixels(&g, &x, &w, &epi, ri, 0..g.w.output, orow);
            }
            assert_eq!(
                px, f,
                "interior and pixel paths differ: {pad:?} k{k} s{s} d{d}"
            );
        }
    }

    /// Every output of the fast path (fed into stale memory, keys folded), on random
    /// geometries: the bits of going pixel by pixel (the summation order is the same),
    /// the keys of a scan, and the reference within float rounding. Shapes cover both
    /// strides of the 3×3 kernel, other kernels, dilation, both paddings, multipliers,
    /// channel counts that are not multiples of 8, tiny inputs and every activation.
    #[test]
    fn fast_depthwise_matches_twins_on_random_shapes() {
        use ActivationFunctionType as A;
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let mut dw3x3_cases = 0;
        for case in 0..300 {
            let k = [3, 3, 3, 1, 2, 5][rng.random_range(0..6)];
            let kw = if rng.random_bool(0.8) {
                k
            } else {
                rng.random_range(1..4)
            };
            let (s, sw) = (rng.random_range(1..4), rng.random_range(1..3));
            let (d, dw) = if rng.random_bool(0.8) {
                (1, 1)
            } else {
                (rng.random_range(1..3), rng.random_range(1..3))
            };
            let mult = if rng.random_bool(0.8) {
                1
            } else {
                rng.random_range(2..4)
            };
            let c = [1, 3, 8, 13, 16, 24, 37, 40, 53][rng.random_range(0..9)];
            let pad = if rng.random_bool(0.5) {
                Padding::Same
            } else {
                Padding::Valid
            };
            let (ih, iw) = (rng.random_range(1..10), rng.random_range(1..20));
            let batch = rng.random_range(1..3);
            let act = [A::None, A::Relu, A::Relu6, A::ReluN1To1][rng.random_range(0..4)];
            let g = DwGeom {
                batch,
                in_c: c,
                mult,
                h: Dim::new(pad, ih, k, s, d).unwrap(),
                w: Dim::new(pad, iw, kw, sw, dw).unwrap(),
            };
            let oc = c * mult;
            let x = rand_vec(&mut rng, batch * ih * iw * c);
            let w = rand_vec(&mut rng, k * kw * oc);
            let bias = rand_vec(&mut rng, oc);
            let bias = rng.random_bool(0.8).then_some(&bias[..]);
            let n = batch * g.h.output * g.w.output * oc;
            let row = g.w.output * oc;
            let mut px = vec![0f32; n];
            let plain = Epilogue::new(bias, act, None).unwrap();
            for (ri, orow) in px.chunks_mut(row.max(1)).enumerate() {
                depthwise_pixels(&g, &x, &w, &plain, ri, 0..g.w.output, orow);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let mut f = Vec::new();
            // Every level's kernels this CPU runs (AVX-512F, AVX2, the scalar build).
            for level in SIMD_LEVELS.into_iter().filter(|&l| l <= simd_level()) {
                let keys = KeyAcc::default();
                let epi = Epilogue::new(bias, act, Some(&keys)).unwrap();
                f = depthwise_at(level, &g, &x, &w, &epi, vec![f32::NAN; n]);
                keys.mark_complete();
                let what = format!("case {case} ({level:?}): {g:?} pad {pad:?} act {act:?}");
                assert!(f.iter().all(|v| !v.is_nan()), "NaN (unwritten) in {what}");
                let (lo, hi) = key_min_max(&f);
                assert_eq!(keys.range(), Some(KeyRange { lo, hi }), "keys of {what}");
                assert_eq!(bits(&f), bits(&px), "fast and pixel paths differ: {what}");
            }
            let what = format!("case {case}: {g:?} pad {pad:?} act {act:?}");
            let mut r = depthwise_reference(&g, &x, &w, bias);
            apply_act(&mut r, act).unwrap();
            let t = tol(k * kw);
            for (a, b) in r.iter().zip(&f) {
                assert!((a - b).abs() <= t, "{a} vs {b}: {what}");
            }
            let (ilo, ihi) = interior(&g.w);
            if mult == 1 && k == 3 && kw == 3 && dw == 1 && sw <= 2 && c >= 8 && ilo < ihi {
                dw3x3_cases += 1;
            }
        }
        assert!(
            dw3x3_cases >= 30,
            "only {dw3x3_cases} cases reach the 3×3 kernel"
        );
    }

    /// The 3×3 kernel's clamp and keys on NaN, zeros of both signs and values beyond
    /// the bounds: what `f32::max` / `f32::min` and the key scan give.
    #[test]
    fn dw3x3_clamp_and_keys_follow_the_scalar_rules() {
        let c = 16;
        let g = DwGeom {
            batch: 1,
            in_c: c,
            mult: 1,
            h: Dim::new(Padding::Same, 3, 3, 1, 1).unwrap(),
            w: Dim::new(Padding::Same, 9, 3, 1, 1).unwrap(),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut x: Vec<f32> = rand_vec(&mut rng, 3 * 9 * c)
            .iter()
            .map(|v| v * 8.0)
            .collect();
        // NaN inputs: their outputs are NaN before the clamp.
        x[4 * c + 1] = f32::NAN;
        x[(9 + 5) * c + 2] = f32::NAN;
        let w = vec![1.0; 9 * c];
        // A -0 bias and a window of -0 inputs give a -0 sum (channel 3 of pixel 1, row
        // 1: an interior pixel), which a clamp at lo = +0 keeps.
        let mut bias = vec![0.0; c];
        bias[3] = -0.0;
        for iy in 0..3 {
            for ix in 0..3 {
                x[(iy * 9 + ix) * c + 3] = -0.0;
            }
        }
        for level in SIMD_LEVELS.into_iter().filter(|&l| l <= simd_level()) {
            for (lo, hi) in [
                (0.0, 6.0),
                (-1.0, 1.0),
                (0.0, f32::INFINITY),
                (f32::NEG_INFINITY, f32::INFINITY),
            ] {
                let keys = KeyAcc::default();
                let epi = Epilogue {
                    bias: Some(&bias),
                    lo,
                    hi,
                    keys: Some(&keys),
                };
                let n = 3 * 9 * c;
                let f = depthwise_at(level, &g, &x, &w, &epi, vec![f32::NAN; n]);
                keys.mark_complete();
                let mut px = vec![0f32; n];
                let plain = Epilogue { keys: None, ..epi };
                for (ri, orow) in px.chunks_mut(9 * c).enumerate() {
                    depthwise_pixels(&g, &x, &w, &plain, ri, 0..9, orow);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&f), bits(&px), "{level:?} clamp [{lo}, {hi}]");
                let (klo, khi) = key_min_max(&f);
                assert_eq!(
                    keys.range(),
                    Some(KeyRange { lo: klo, hi: khi }),
                    "clamp [{lo}, {hi}]"
                );
                let z = f[(9 + 1) * c + 3];
                assert!(
                    z == 0.0 && z.is_sign_negative(),
                    "-0 sum became {z} [{lo}, {hi}]"
                );
                let nans = f.iter().filter(|v| v.is_nan()).count();
                if lo == f32::NEG_INFINITY {
                    assert!(nans > 0, "NaN sums stay NaN without a clamp");
                } else {
                    assert_eq!(nans, 0, "the clamp maps NaN to lo [{lo}, {hi}]");
                }
            }
        }
    }

    /// `interior` is exactly the outputs whose every tap is inside the input.
    #[test]
    fn interior_outputs_have_every_tap_inside() {
        for pad in [Padding::Same, Padding::Valid] {
            for input in 1..12 {
                for kernel in 1..6 {
                    for stride in 1..4 {
                        for dilation in 1..3 {
                            let d = Dim::new(pad, input, kernel, stride, dilation).unwrap();
                            let (lo, hi) = interior(&d);
                            for o in 0..d.output {
                                let inside = (0..kernel).all(|k| d.src(o, k).is_some());
                                assert_eq!(inside, (lo..hi).contains(&o), "{d:?} output {o}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        // in 4, kernel 3, stride 2 → out 2, total pad 1 → 0 before, 1 after.
        let d = Dim::new(Padding::Same, 4, 3, 2, 1).unwrap();
        assert_eq!((d.output, d.pad), (2, 0));
        let d = Dim::new(Padding::Same, 5, 3, 1, 1).unwrap();
        assert_eq!((d.output, d.pad), (5, 1));
    }
}
