//! Custom operators that LiteRT's default CPU path executes: the MediaPipe operators
//! its XNNPACK delegate implements (`tensorflow/lite/delegates/xnnpack/
//! xnnpack_delegate.cc`, `VisitNode`, case `kTfLiteBuiltinCustom`; LiteRT's compiled
//! model registers stub kernels for exactly these names so that the delegate takes
//! them). [`SUPPORTED`] is the coverage list; [`eval`] runs one.
//!
//! | custom code | inputs → outputs | options |
//! |---|---|---|
//! | `Convolution2DTransposeBias` | input NHWC, filter `[O,H,W,I]`, bias `[O]` → output | `TfLiteTransposeConvParams` |
//! | `MaxPoolingWithArgmax2D` | input NHWC → values, indices | `TfLitePoolParams` |
//! | `MaxUnpooling2D` | values, indices → output | `TfLitePoolParams` |
//!
//! `custom_options` hold the raw C struct, copied as the delegate does
//! (`SafeCopyCustomData`: the first `min(len, sizeof)` bytes, the rest zero), all
//! fields little-endian `int32`: `TfLiteTransposeConvParams` = padding, stride_width,
//! stride_height, activation (12 bytes in MediaPipe's files); `TfLitePoolParams` =
//! padding, stride_width, stride_height, filter_width, filter_height, activation,
//! computed paddings (24 + 16 bytes). Padding is `TfLitePadding` (1 SAME, 2 VALID;
//! 0, unknown, is refused like the delegate does).
//!
//! Semantics follow the delegate (what the runtime computes), not MediaPipe's own
//! reference kernels where the two differ:
//! * the transposed convolution takes its output size from the output tensor's shape
//!   in the file and ignores the fused activation; SAME padding is TFLite's
//!   `ComputePaddingHeightWidth` applied to that output size;
//! * argmax pooling has stride = window (the delegate refuses anything else),
//!   SAME padding replicates edge values (XNNPACK clamps window coordinates), the
//!   index of the maximum within the window is `x · window_height + y` (column-major,
//!   first maximum wins) and is stored as the *bit pattern* of a `uint32` in the
//!   float32 indices tensor (values like 4e-45); Relu-family activations are ignored
//!   (the delegate logs and ignores them), others refused;
//! * unpooling writes each value at `(in_y · window_h + idx mod window_h,
//!   in_x · window_w + idx div window_h)`, zeros elsewhere, output `[N, H·wh, W·ww, C]`;
//!   VALID padding only (the delegate refuses SAME, and LiteRT then fails to run it).
//!   An index tensor written by MediaPipe's own kernel (float values
//!   `y · window_w + x + 0.1`) is decoded its way; an index outside the window writes
//!   nothing.

use super::{Ctx, Ins, KResult, Outs, bad, checked_numel, ensure, value};
use crate::fb::TensorType;
use crate::interp::value::{Data, Value};

/// The custom codes [`eval`] runs.
pub(crate) const SUPPORTED: &[&str] = &[
    "Convolution2DTransposeBias",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
];

/// True if [`eval`] has a kernel for this custom code.
pub(crate) fn supported(code: &str) -> bool {
    SUPPORTED.contains(&code)
}

/// Why a custom op cannot run (checked before running so that the interpreter's
/// up-front error can name it): an unknown code, or options the runtime refuses.
pub(crate) fn unsupported(code: Option<&str>, options: Option<&[u8]>) -> Option<String> {
    let Some(code) = code.filter(|c| supported(c)) else {
        return Some(String::new());
    };
    let opts = options.unwrap_or(&[]);
    let checked = match code {
        "Convolution2DTransposeBias" => DeconvParams::parse(opts).map(|_| ()),
        "MaxUnpooling2D" => PoolParams::parse(opts).and_then(|p| unpool_padding(&p)),
        _ => PoolParams::parse(opts).map(|_| ()),
    };
    checked.err().map(|e| match e {
        super::KErr::Bad(w) | super::KErr::Unsupported(w) => w,
    })
}

/// Runs custom op `code`.
pub(crate) fn eval(code: &str, ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let opts = ctx.op.custom_options.as_deref().unwrap_or(&[]);
    Ok(match code {
        "Convolution2DTransposeBias" => deconv(&DeconvParams::parse(opts)?, ctx, ins)?.into(),
        "MaxPoolingWithArgmax2D" => argmax_pool(&PoolParams::parse(opts)?, ctx, ins)?,
        "MaxUnpooling2D" => unpool(&PoolParams::parse(opts)?, ctx, ins)?.into(),
        other => super::unsupported!("no kernel for custom op {other:?}"),
    })
}

// ---- options ----------------------------------------------------------------------

/// `int32` field `i` of a raw C struct, zero past the end (as `SafeCopyCustomData`).
fn field(raw: &[u8], i: usize) -> i32 {
    match raw.get(i * 4..i * 4 + 4) {
        Some(b) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pad {
    Same,
    Valid,
}

fn padding(v: i32) -> KResult<Pad> {
    match v {
        1 => Ok(Pad::Same),
        2 => Ok(Pad::Valid),
        other => {
            bad!("custom_options: invalid padding mode {other} (TfLitePadding: 1 SAME, 2 VALID)")
        }
    }
}

fn positive(v: i32, what: &str) -> KResult<usize> {
    ensure!(v > 0, "custom_options: invalid {what} {v}");
    Ok(v as usize)
}

/// `TfLiteTransposeConvParams` (activation ignored by the delegate).
#[derive(Debug, Clone, Copy)]
struct DeconvParams {
    padding: Pad,
    stride_w: usize,
    stride_h: usize,
}

impl DeconvParams {
    fn parse(raw: &[u8]) -> KResult<Self> {
        Ok(DeconvParams {
            padding: padding(field(raw, 0))?,
            stride_w: positive(field(raw, 1), "stride width")?,
            stride_h: positive(field(raw, 2), "stride height")?,
        })
    }
}

/// `TfLitePoolParams` as the delegate checks them (`CheckMediaPipePoolParams`).
#[derive(Debug, Clone, Copy)]
struct PoolParams {
    padding: Pad,
    filter_w: usize,
    filter_h: usize,
}

impl PoolParams {
    fn parse(raw: &[u8]) -> KResult<Self> {
        let padding = padding(field(raw, 0))?;
        let stride_w = positive(field(raw, 1), "stride width")?;
        let stride_h = positive(field(raw, 2), "stride height")?;
        let filter_w = positive(field(raw, 3), "filter width")?;
        let filter_h = positive(field(raw, 4), "filter height")?;
        ensure!(
            filter_w == stride_w && filter_h == stride_h,
            "custom_options: filter {filter_h}x{filter_w} differs from stride \
             {stride_h}x{stride_w} (the runtime's kernel needs them equal)"
        );
        match field(raw, 5) {
            // None; Relu, ReluN1To1, Relu6 are accepted and ignored by the delegate.
            0..=3 => {}
            a => bad!("custom_options: fused activation {a} is not supported by the runtime"),
        }
        Ok(PoolParams {
            padding,
            filter_w,
            filter_h,
        })
    }
}

// ---- kernels ----------------------------------------------------------------------

fn nhwc(v: &Value, what: &str) -> KResult<[usize; 4]> {
    match v.shape.as_slice() {
        &[n, h, w, c] => Ok([n, h, w, c]),
        s => bad!("{what} must be 4-D NHWC, got shape {s:?}"),
    }
}

/// The output tensor's static 4-D shape from the file, if it has one.
fn file_shape(ctx: &Ctx, i: usize) -> Option<[usize; 4]> {
    match ctx.out_shapes.get(i).copied() {
        Some(&[n, h, w, c]) if [n, h, w, c].iter().all(|&d| d > 0) => {
            Some([n as usize, h as usize, w as usize, c as usize])
        }
        _ => None,
    }
}

/// Padding before the first element of a transposed convolution with SAME padding:
/// TFLite's `ComputePaddingHeightWidth` on the output size (as the delegate).
fn deconv_pad_same(out: usize, input: usize, k: usize, s: usize, what: &str) -> KResult<usize> {
    let expected_in = out.div_ceil(s);
    ensure!(
        expected_in == input,
        "inconsistent {what}: output {out} with stride {s} needs input {expected_in}, got {input}"
    );
    let total = ((expected_in.max(1) - 1) * s + k).saturating_sub(out);
    Ok(total / 2)
}

/// `Convolution2DTransposeBias`: TRANSPOSE_CONV with a bias input.
fn deconv(p: &DeconvParams, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (xv, wv) = (ins.get(0)?, ins.get(1)?);
    let (x, w, bias) = (ins.f32(0)?, ins.f32(1)?, ins.f32(2)?);
    let [n, ih, iw, ic] = nhwc(xv, "input")?;
    let [oc, kh, kw, fc] = nhwc(wv, "filter")?;
    ensure!(
        fc == ic,
        "filter {:?} does not fit input {:?}",
        wv.shape,
        xv.shape
    );
    ensure!(
        bias.len() == oc,
        "bias has {} elements, expected {oc}",
        bias.len()
    );
    // The runtime takes the output size from the output tensor; without one, it is
    // MediaPipe's formula.
    let [on, oh, ow, occ] = match file_shape(ctx, 0) {
        Some(s) => s,
        None => {
            let size = |i: usize, k: usize, s: usize| {
                let full = s * (i.max(1) - 1) + k;
                match p.padding {
                    Pad::Same => full - k.saturating_sub((i.max(1) - 1) % s + 1),
                    Pad::Valid => full,
                }
            };
            [n, size(ih, kh, p.stride_h), size(iw, kw, p.stride_w), oc]
        }
    };
    ensure!(
        on == n && occ == oc,
        "output shape {:?} does not fit input {:?} and filter {:?}",
        [on, oh, ow, occ],
        xv.shape,
        wv.shape
    );
    // The delegate's `CalculateTransposeConvPaddings` refuses these (LiteRT then fails).
    match p.padding {
        Pad::Same => ensure!(
            kh >= p.stride_h && kw >= p.stride_w,
            "SAME padding with a {kh}x{kw} kernel smaller than the stride {}x{} \
             (the runtime refuses it)",
            p.stride_h,
            p.stride_w
        ),
        Pad::Valid => ensure!(
            kh <= oh && kw <= ow,
            "VALID padding with a {kh}x{kw} kernel larger than the output {oh}x{ow} \
             (the runtime refuses it)"
        ),
    }
    let (pad_h, pad_w) = match p.padding {
        Pad::Same => (
            deconv_pad_same(oh, ih, kh, p.stride_h, "height")?,
            deconv_pad_same(ow, iw, kw, p.stride_w, "width")?,
        ),
        Pad::Valid => (0, 0),
    };
    let total = checked_numel(&[n, oh, ow, oc])?;
    let mut out: Vec<f32> = bias.iter().copied().cycle().take(total).collect();
    for b in 0..n {
        for iy in 0..ih {
            for ix in 0..iw {
                let xin = &x[((b * ih + iy) * iw + ix) * ic..][..ic];
                for ky in 0..kh {
                    let oy = (iy * p.stride_h + ky) as isize - pad_h as isize;
                    if oy < 0 || oy as usize >= oh {
                        continue;
                    }
                    for kx in 0..kw {
                        let ox = (ix * p.stride_w + kx) as isize - pad_w as isize;
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
    value(vec![n, oh, ow, oc], Data::F32(out))
}

/// `MaxPoolingWithArgmax2D`: max pooling with window = stride, plus the index of the
/// maximum within each window (see the module docs for its encoding).
fn argmax_pool(p: &PoolParams, ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let xv = ins.get(0)?;
    let x = ins.f32(0)?;
    let [n, ih, iw, c] = nhwc(xv, "input")?;
    let (ph, pw) = (p.filter_h, p.filter_w);
    let (oh, ow, pad_t, pad_l) = match p.padding {
        Pad::Same => {
            let (oh, ow) = (ih.div_ceil(ph), iw.div_ceil(pw));
            (oh, ow, (oh * ph - ih) / 2, (ow * pw - iw) / 2)
        }
        Pad::Valid => (ih / ph, iw / pw, 0, 0),
    };
    let total = checked_numel(&[n, oh, ow, c])?;
    ensure!(
        ih > 0 && iw > 0,
        "input {:?} has an empty spatial dimension",
        xv.shape
    );
    let mut vals = Vec::with_capacity(total);
    let mut idx = Vec::with_capacity(total);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut best = f32::NEG_INFINITY;
                    let mut at = 0u32;
                    let mut first = true;
                    // Column-major within the window, as XNNPACK's indirection buffer.
                    for kx in 0..pw {
                        let sx = (ox * pw + kx).saturating_sub(pad_l).min(iw - 1);
                        for ky in 0..ph {
                            let sy = (oy * ph + ky).saturating_sub(pad_t).min(ih - 1);
                            let v = x[((b * ih + sy) * iw + sx) * c + ch];
                            if first || v > best {
                                best = v;
                                at = (kx * ph + ky) as u32;
                                first = false;
                            }
                        }
                    }
                    vals.push(best);
                    idx.push(at);
                }
            }
        }
    }
    let shape = vec![n, oh, ow, c];
    let indices = match ctx.out_type(1) {
        TensorType::Int32 => Data::I32(idx.iter().map(|&i| i as i32).collect()),
        TensorType::Float32 => Data::F32(idx.iter().map(|&i| f32::from_bits(i)).collect()),
        other => bad!(
            "indices output of type {} is not supported (float32 or int32)",
            crate::fb::dtype_name(other)
        ),
    };
    Ok(vec![
        value(shape.clone(), Data::F32(vals))?,
        value(shape, indices)?,
    ]
    .into())
}

/// Decodes one stored index into `(dy, dx)` within a `ph × pw` window: XNNPACK's
/// `uint32` bits (`dx · ph + dy`) first, else MediaPipe's float (`dy · pw + dx`).
fn window_pos(stored: f32, ph: usize, pw: usize) -> Option<(usize, usize)> {
    let size = ph * pw;
    let bits = stored.to_bits() as usize;
    if bits < size {
        return Some((bits % ph, bits / ph));
    }
    (stored.is_finite() && stored >= 0.0 && (stored as usize) < size).then(|| {
        let k = stored as usize;
        (k / pw, k % pw)
    })
}

/// The delegate refuses SAME padding for unpooling (its kernel has none), and LiteRT
/// then fails to run the op: refused here too.
fn unpool_padding(p: &PoolParams) -> KResult<()> {
    ensure!(
        p.padding == Pad::Valid,
        "custom_options: SAME padding, which the runtime's unpooling kernel refuses"
    );
    Ok(())
}

/// `MaxUnpooling2D`: scatters each value to the window position its index names.
fn unpool(p: &PoolParams, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    unpool_padding(p)?;
    let (xv, iv) = (ins.get(0)?, ins.get(1)?);
    let x = ins.f32(0)?;
    let [n, ih, iw, c] = nhwc(xv, "input")?;
    ensure!(
        iv.shape == xv.shape,
        "indices {:?} must have the shape of the values {:?}",
        iv.shape,
        xv.shape
    );
    let idx: Vec<f32> = match &iv.data {
        Data::F32(v) => v.clone(),
        Data::I32(v) => v.iter().map(|&i| f32::from_bits(i as u32)).collect(),
        d => bad!(
            "indices of type {} are not supported (float32 or int32)",
            crate::fb::dtype_name(d.dtype())
        ),
    };
    let (ph, pw) = (p.filter_h, p.filter_w);
    let (oh, ow) = (ih * ph, iw * pw);
    if let Some(s) = file_shape(ctx, 0) {
        ensure!(
            s == [n, oh, ow, c],
            "output tensor shape {s:?} differs from [{n}, {oh}, {ow}, {c}] \
             (input × window, as the runtime computes it)"
        );
    }
    let mut out = vec![0f32; checked_numel(&[n, oh, ow, c])?];
    for b in 0..n {
        for y in 0..ih {
            for xx in 0..iw {
                for ch in 0..c {
                    let i = ((b * ih + y) * iw + xx) * c + ch;
                    if let Some((dy, dx)) = window_pos(idx[i], ph, pw) {
                        out[((b * oh + y * ph + dy) * ow + xx * pw + dx) * c + ch] = x[i];
                    }
                }
            }
        }
    }
    value(vec![n, oh, ow, c], Data::F32(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_opts(pad: i32, w: i32, h: i32, act: i32) -> Vec<u8> {
        [pad, w, h, w, h, act, 0, 0, 0, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    #[test]
    fn options_parse_like_the_delegate() {
        // MediaPipe's 12-byte TfLiteTransposeConvParams: padding, stride_w, stride_h.
        let raw: Vec<u8> = [1i32, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let d = DeconvParams::parse(&raw).unwrap();
        assert_eq!((d.padding, d.stride_w, d.stride_h), (Pad::Same, 2, 3));
        // Missing bytes read as zero: padding 0 (unknown) is refused.
        assert!(DeconvParams::parse(&[]).is_err());
        let p = PoolParams::parse(&pool_opts(2, 2, 3, 1)).unwrap();
        assert_eq!((p.padding, p.filter_w, p.filter_h), (Pad::Valid, 2, 3));
        // Filter ≠ stride, tanh activation: refused.
        let mut bad = pool_opts(2, 2, 2, 0);
        bad[12..16].copy_from_slice(&3i32.to_le_bytes());
        assert!(PoolParams::parse(&bad).is_err());
        assert!(PoolParams::parse(&pool_opts(2, 2, 2, 4)).is_err());
        assert_eq!(
            unsupported(Some("MaxPoolingWithArgmax2D"), Some(&pool_opts(1, 2, 2, 0))),
            None
        );
        assert!(unsupported(Some("MaxUnpooling2D"), Some(&pool_opts(1, 2, 2, 0))).is_some());
        assert_eq!(unsupported(Some("Nope"), None), Some(String::new()));
    }

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn run(code: &str, opts: Vec<u8>, out_shapes: &[&[i32]], inputs: &[&Value]) -> Outs {
        let mut op = crate::ir::Operator::new(0, vec![], vec![]);
        op.custom_options = Some(opts.into());
        let ctx = Ctx {
            op: &op,
            out_types: vec![TensorType::Float32; out_shapes.len()],
            out_shapes: out_shapes.to_vec(),
            in_quant: vec![None; inputs.len()],
            out_quant: vec![None; out_shapes.len()],
            inter_quant: Vec::new(),
            out_storage: vec![TensorType::Float32; out_shapes.len()],
            custom_code: Some(code),
            out_keys: None,
            buffers: None,
        };
        let ins = Ins(inputs.iter().map(|v| Some(*v)).collect());
        match eval(code, &ctx, &ins) {
            Ok(o) => o,
            Err(super::super::KErr::Bad(w) | super::super::KErr::Unsupported(w)) => panic!("{w}"),
        }
    }

    /// The scatter kernel against a gather formulation of the same sum (the reference
    /// twin): every output is bias + Σ input[(o + pad − k) / s] · filter[k] over the
    /// taps where the division is exact.
    #[test]
    fn deconv_matches_its_gather_twin() {
        for (pad, ih, k, s, oh) in [
            (1, 4, 3, 2, 8),
            (1, 5, 3, 2, 9),
            (2, 3, 4, 2, 8),
            (1, 3, 3, 3, 9),
            (2, 2, 2, 3, 5),
        ] {
            let (n, ic, oc) = (2, 3, 4);
            let x = Value::f32(vec![n, ih, ih, ic], values(n * ih * ih * ic, 1));
            let w = Value::f32(vec![oc, k, k, ic], values(oc * k * k * ic, 2));
            let b = Value::f32(vec![oc], values(oc, 3));
            let opts: Vec<u8> = [pad, s as i32, s as i32]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let shape = [n as i32, oh as i32, oh as i32, oc as i32];
            let out = run("Convolution2DTransposeBias", opts, &[&shape], &[&x, &w, &b]);
            let got = out.values[0].as_f32().unwrap();
            let p = if pad == 1 {
                ((ih - 1) * s + k).saturating_sub(oh) / 2
            } else {
                0
            };
            let (xs, ws, bs) = (
                x.as_f32().unwrap(),
                w.as_f32().unwrap(),
                b.as_f32().unwrap(),
            );
            let mut worst = 0f32;
            for bi in 0..n {
                for oy in 0..oh {
                    for ox in 0..oh {
                        for o in 0..oc {
                            let mut acc = bs[o];
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (ny, nx) = (oy + p, ox + p);
                                    if ny < ky
                                        || nx < kx
                                        || (ny - ky) % s != 0
                                        || (nx - kx) % s != 0
                                    {
                                        continue;
                                    }
                                    let (iy, ix) = ((ny - ky) / s, (nx - kx) / s);
                                    if iy >= ih || ix >= ih {
                                        continue;
                                    }
                                    for i in 0..ic {
                                        acc += xs[((bi * ih + iy) * ih + ix) * ic + i]
                                            * ws[((o * k + ky) * k + kx) * ic + i];
                                    }
                                }
                            }
                            let g = got[((bi * oh + oy) * oh + ox) * oc + o];
                            worst = worst.max((g - acc).abs());
                        }
                    }
                }
            }
            assert!(
                worst < 1e-5,
                "pad {pad} in {ih} k {k} s {s} out {oh}: {worst}"
            );
        }
    }

    /// Unpooling the argmax pooling's values with its indices puts every window's maximum
    /// back where it was and zeros elsewhere.
    #[test]
    fn unpooling_inverts_argmax_pooling() {
        let x = Value::f32(vec![1, 6, 4, 3], values(72, 7));
        let opts = pool_opts(2, 2, 3, 0); // VALID, window 3 high, 2 wide
        let pooled = run(
            "MaxPoolingWithArgmax2D",
            opts.clone(),
            &[&[1, 2, 2, 3], &[1, 2, 2, 3]],
            &[&x],
        );
        let (v, i) = (&pooled.values[0], &pooled.values[1]);
        assert_eq!(v.shape, vec![1, 2, 2, 3]);
        let back = run("MaxUnpooling2D", opts, &[&[1, 6, 4, 3]], &[v, i]);
        let (xs, ys) = (x.as_f32().unwrap(), back.values[0].as_f32().unwrap());
        for wy in 0..2 {
            for wx in 0..2 {
                for c in 0..3 {
                    let cells: Vec<usize> = (0..3)
                        .flat_map(|dy| {
                            (0..2).map(move |dx| ((wy * 3 + dy) * 4 + wx * 2 + dx) * 3 + c)
                        })
                        .collect();
                    let max = cells.iter().map(|&j| xs[j]).fold(f32::MIN, f32::max);
                    for &j in &cells {
                        let want = if xs[j] == max { max } else { 0.0 };
                        assert_eq!(ys[j], want);
                    }
                }
            }
        }
    }

    #[test]
    fn window_index_decoding() {
        // XNNPACK bits: index 3 in a 2x2 window = column 1, row 1; index 1 = row 1, col 0.
        assert_eq!(window_pos(f32::from_bits(1), 2, 2), Some((1, 0)));
        assert_eq!(window_pos(f32::from_bits(2), 2, 2), Some((0, 1)));
        // MediaPipe float: 1.1 = row 0, column 1.
        assert_eq!(window_pos(1.1, 2, 2), Some((0, 1)));
        assert_eq!(window_pos(7.0, 2, 2), None);
        assert_eq!(window_pos(f32::NAN, 2, 2), None);
    }
}
