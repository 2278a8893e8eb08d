//! int16x8 kernels with LiteRT's integer arithmetic: the ops of an `int16x8` model whose
//! int16 activations LiteRT computes in fixed point (or in the table lookups its kernels
//! build) read and write the stored integers here instead of the float simulation
//! (dequantize, float kernel, requantize; see `super::super`), so that `run` gives the
//! runtime's integers. The facts come from LiteRT's kernels (`fully_connected.cc`,
//! `add.cc`, `sub.cc`, `mul.cc`, `activations.cc`; Prepare for the parameters, Eval
//! for the path taken with the default `kGenericOptimized` kernels) and the reference
//! implementations they call (`internal/reference/integer_ops/{fully_connected,mul,
//! logistic,tanh}.h`, `internal/reference/{add,softmax}.h`, `internal/common.h`):
//!
//! * FULLY_CONNECTED, int16 input and output, int8 weights (per tensor or per output
//!   channel), int64 bias: `acc = Σ (w − zp_w)·x + bias` in 64 bits, then
//!   `round(acc · s_x·s_w / s_y)` in double precision (LiteRT's reference kernel
//!   requantizes in floating point), the fused activation's clamp. With an int32 bias
//!   or none LiteRT takes its optimized (ruy) path instead: simulated.
//! * ADD, SUB with general scales: each input `(q − zp) << 15` rescaled by a Q0.31
//!   multiplier of `s_in / (2·max s_in)`, summed (or subtracted), rescaled by
//!   `2·max s_in / (2^15·s_y)` (TFLite's double-rounding `MultiplyByQuantizedMultiplier`
//!   throughout). LiteRT's x86-64 wheel runs blocks of 16 elements with AVX2, which
//!   folds the shift by 15 into the input rescaling (one rounding instead of two): the
//!   kernel does the same where LiteRT does (measured on `gru_digits`: the scalar form
//!   everywhere parted from LiteRT by up to 9 steps on 2 of 360 digits). The power-of-two path (`pot_scale_int16` with every scale a power
//!   of two) is simulated.
//! * MUL: `q1·q2` rescaled by the multiplier of `s1·s2/s_y` (computed in float32, as
//!   the kernel does).
//! * LOGISTIC, TANH: a scale of exactly `2^-12` (TANH also `2^-11`) runs gemmlowp's
//!   16-bit fixed-point functions (shared with `lstm_int`); any other scale is first
//!   rescaled to `1/(3·4096)` by an integer multiplier and looked up with linear
//!   interpolation in LiteRT's 256-entry sigmoid table (sigmoid(i/24) in Q0.16, each
//!   entry biased by half the interpolation error at its midpoint; [`sigmoid_table`]
//!   rebuilds it and a test pins its checksum).
//! * SOFTMAX: `exp` of the scaled difference to the row maximum and `1/(1+x)` of the
//!   normalised sum from LiteRT's 513-entry interpolated int16 tables (built as
//!   LiteRT's `LUTPopulate` builds them, in double precision), output in Q0.15.
//!
//! * QUANTIZE of an int16 tensor (to int16 or int8): LiteRT's `Requantize` with the
//!   multiplier of `s_in / s_out` ([`requantize`], called by `misc::quantize`).
//!
//! Move ops (RESHAPE, SPLIT, GATHER, STRIDED_SLICE...) are exact in the simulation
//! already (same parameters in and out); DEQUANTIZE is a real conversion.
//! Every other int16 op stays simulated. The float kernels are these kernels'
//! reference twins: the tests check each against them within a few int16 steps.

use std::sync::OnceLock;

use crate::fb::{
    ActivationFunctionType as Act, BuiltinOperator as B, BuiltinOptions as O, TensorType,
};
use crate::interp::value::{Data, Value};
use crate::ir::{Operator, QuantParams, Subgraph, Tensor};

use super::lstm_int::{logistic16, mbqm, quantize_multiplier, rdbp32, srdhm32, srmbpot16, tanh16};
use super::{
    Ctx, Ins, KResult, Outs, bad, broadcast_index, broadcast_shapes, ensure, unsupported, value,
};

/// The per-tensor scale and zero point of a quantized int16 tensor.
fn per_tensor16(t: &Tensor) -> Option<(f32, i64)> {
    let q = t.quantized()?;
    (t.dtype == TensorType::Int16 && q.scale.len() == 1)
        .then(|| (q.scale[0], q.zero_point.first().copied().unwrap_or(0)))
}

fn tensor<'s>(sg: &'s Subgraph, ids: &[i32], i: usize) -> Option<&'s Tensor> {
    let t = usize::try_from(*ids.get(i)?).ok()?;
    sg.tensors.get(t)
}

/// `CheckedLog2` of LiteRT (float32 arithmetic): the rounded log2 and whether `x` is a
/// power of two to within 1e-3 in the exponent.
fn checked_log2(x: f32) -> (bool, i32) {
    let l = x.ln() * (1.0f32 / 2f32.ln());
    let r = l.round();
    ((l - r).abs() < 1e-3, r as i32)
}

/// True when op `op` (builtin `b`) of `sg` runs with LiteRT's int16 arithmetic here
/// (see the module documentation for which ops and parameters).
pub(crate) fn runs_exact(b: B, op: &Operator, sg: &Subgraph) -> bool {
    let input = |i| tensor(sg, &op.inputs, i);
    let output = tensor(sg, &op.outputs, 0);
    let int16 = |t: Option<&Tensor>| t.and_then(per_tensor16).is_some();
    if !int16(output) || !int16(input(0)) {
        return false;
    }
    match b {
        B::FullyConnected => {
            let w = input(1).filter(|w| w.dtype == TensorType::Int8 && w.quantized().is_some());
            let bias = input(2).filter(|t| t.dtype == TensorType::Int64);
            w.is_some() && bias.is_some() && op.inputs.len() == 3
        }
        B::Add | B::Sub => {
            if !int16(input(1)) {
                return false;
            }
            let pot_option = match &op.builtin_options {
                Some(O::AddOptions(o)) => o.pot_scale_int16,
                Some(O::SubOptions(o)) => o.pot_scale_int16,
                _ => true,
            };
            let all_pot = [input(0), input(1), output]
                .into_iter()
                .filter_map(|t| t.and_then(per_tensor16))
                .all(|(s, _)| checked_log2(s).0);
            !(pot_option && all_pot)
        }
        B::Mul => int16(input(1)),
        B::Logistic | B::Tanh | B::Softmax => true,
        _ => false,
    }
}

/// Runs op `b` on stored integers (the caller checked [`runs_exact`]).
pub(crate) fn eval(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let v = match b {
        B::FullyConnected => fully_connected(ctx, ins)?,
        B::Add | B::Sub => add_sub(b, ctx, ins)?,
        B::Mul => mul(ctx, ins)?,
        B::Logistic | B::Tanh => logistic_tanh(b, ctx, ins)?,
        B::Softmax => softmax(ctx, ins)?,
        other => unsupported!("no int16 kernel for {}", crate::fb::op_name(other)),
    };
    Ok(v.into())
}

// ---- operands ---------------------------------------------------------------------

fn i16s<'a>(ins: &Ins<'a>, i: usize) -> KResult<&'a [i16]> {
    match &ins.get(i)?.data {
        Data::I16(v) => Ok(v),
        d => unsupported!(
            "int16 kernel: input {i} is {}, expected INT16",
            crate::fb::dtype_name(d.dtype())
        ),
    }
}

fn params<'a>(q: Option<&Option<&'a QuantParams>>, what: &str) -> KResult<&'a QuantParams> {
    match q.copied().flatten() {
        Some(q) if !q.scale.is_empty() => Ok(q),
        _ => bad!("int16 kernel: {what} has no quantization parameters"),
    }
}

/// Scale and zero point of input `i`.
fn input_q(ctx: &Ctx, i: usize) -> KResult<(f32, i32)> {
    let q = params(ctx.in_quant.get(i), &format!("input {i}"))?;
    Ok((
        q.scale[0],
        q.zero_point.first().copied().unwrap_or(0) as i32,
    ))
}

fn output_q(ctx: &Ctx) -> KResult<(f32, i32)> {
    let q = params(ctx.out_quant.first(), "the output")?;
    Ok((
        q.scale[0],
        q.zero_point.first().copied().unwrap_or(0) as i32,
    ))
}

/// The clamp of a fused activation on an int16 output (`CalculateActivationRangeQuantized`).
fn act_range(act: Act, scale: f32, zp: i32) -> KResult<(i32, i32)> {
    let (lo, hi) = (i16::MIN as i32, i16::MAX as i32);
    let q = |x: f32| zp + (x / scale).round() as i32;
    Ok(match act {
        Act::None => (lo, hi),
        Act::Relu => (lo.max(q(0.0)), hi),
        Act::Relu6 => (lo.max(q(0.0)), hi.min(q(6.0))),
        Act::ReluN1To1 => (lo.max(q(-1.0)), hi.min(q(1.0))),
        other => unsupported!("int16 kernel: fused activation {other:?}"),
    })
}

fn out16(shape: Vec<usize>, v: Vec<i16>) -> KResult<Value> {
    value(shape, Data::I16(v))
}

// ---- FULLY_CONNECTED --------------------------------------------------------------

/// FULLY_CONNECTED's geometry for the integer kernels, checked against 2-D weights.
pub(super) struct FcGeometry {
    /// Output channels.
    pub(super) n: usize,
    /// Inputs per row.
    pub(super) k: usize,
    /// Rows.
    pub(super) m: usize,
    /// The fused activation.
    pub(super) act: Act,
    /// `keep_num_dims`.
    pub(super) keep: bool,
}

/// [`FcGeometry`] of a FULLY_CONNECTED whose input `xv` has `x_len` elements.
pub(super) fn fc_geometry(ctx: &Ctx, xv: &Value, x_len: usize, wv: &Value) -> KResult<FcGeometry> {
    ensure!(
        wv.shape.len() == 2,
        "weights must be 2-D, got shape {:?}",
        wv.shape
    );
    let (n, k) = (wv.shape[0], wv.shape[1]);
    ensure!(
        k > 0 && x_len.is_multiple_of(k),
        "input shape {:?} does not fit weights {:?}",
        xv.shape,
        wv.shape
    );
    let (act, keep) = match ctx.opts() {
        Some(O::FullyConnectedOptions(o)) => (o.fused_activation_function, o.keep_num_dims),
        _ => (Act::None, false),
    };
    Ok(FcGeometry {
        n,
        k,
        m: x_len / k,
        act,
        keep,
    })
}

fn fully_connected(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let xv = ins.get(0)?;
    let x = i16s(ins, 0)?;
    let wv = ins.get(1)?;
    let Data::I8(w) = &wv.data else {
        unsupported!("int16 FULLY_CONNECTED: weights must be INT8");
    };
    let FcGeometry { n, k, m, act, keep } = fc_geometry(ctx, xv, x.len(), wv)?;
    let bias = match ins.opt(2).map(|b| &b.data) {
        Some(Data::I64(b)) if b.len() == n => Some(b.as_slice()),
        Some(Data::I64(b)) => bad!("bias has {} elements, expected {n}", b.len()),
        Some(d) => unsupported!(
            "int16 FULLY_CONNECTED: bias is {}, expected INT64",
            crate::fb::dtype_name(d.dtype())
        ),
        None => None,
    };
    let (sx, zx) = input_q(ctx, 0)?;
    let wq = params(ctx.in_quant.get(1), "the weights")?;
    let (sy, zy) = output_q(ctx)?;
    let (lo, hi) = act_range(act, sy, zy)?;
    let per_channel = wq.scale.len() > 1;
    ensure!(
        !per_channel || wq.scale.len() == n,
        "{} weight scales for {n} output channels",
        wq.scale.len()
    );
    // Per channel the weights are symmetric (the kernel ignores their zero points).
    let w_offset = if per_channel {
        0
    } else {
        -wq.zero_point.first().copied().unwrap_or(0)
    };
    let eff: Vec<f64> = (0..n)
        .map(|c| {
            let sw = if per_channel {
                wq.scale[c]
            } else {
                wq.scale[0]
            };
            sx as f64 * sw as f64 / sy as f64
        })
        .collect();
    let mut out = Vec::with_capacity(m * n);
    for row in x.chunks_exact(k) {
        for c in 0..n {
            let wr = &w[c * k..(c + 1) * k];
            let mut acc: i64 = wr
                .iter()
                .zip(row)
                .map(|(&w, &x)| (w as i64 + w_offset) * (x as i64 - zx as i64))
                .sum();
            if let Some(b) = bias {
                acc = acc.wrapping_add(b[c]);
            }
            let scaled = (acc as f64 * eff[c]).round() as i64 + zy as i64;
            out.push(scaled.clamp(lo as i64, hi as i64) as i16);
        }
    }
    let shape = if keep {
        let mut s = xv.shape.clone();
        if let Some(l) = s.last_mut() {
            *l = n;
        }
        s
    } else {
        vec![m, n]
    };
    out16(shape, out)
}

// ---- ADD, SUB, MUL ------------------------------------------------------------------

/// TFLite's `QuantizeMultiplierSmallerThanOneExp` (a multiplier in (0, 1)).
fn multiplier_below_one(m: f64) -> (i32, i32) {
    quantize_multiplier(m)
}

/// `MultiplyByQuantizedMultiplierSmallerThanOneExp` (double rounding).
fn scale_down(x: i32, (m, shift): (i32, i32)) -> i32 {
    if shift > 0 {
        // A multiplier above one (SUB of tiny output scales): the general form.
        return mbqm(x, m, shift);
    }
    rdbp32(srdhm32(x, m), -shift)
}

/// Two int16 inputs broadcast to one output shape: flat indices into each.
fn broadcast2(ins: &Ins) -> KResult<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let (a, b) = (ins.get(0)?, ins.get(1)?);
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let ia = broadcast_index(&a.shape, &shape);
    let ib = broadcast_index(&b.shape, &shape);
    Ok((shape, ia, ib))
}

fn fused(ctx: &Ctx) -> Act {
    match ctx.opts() {
        Some(O::AddOptions(o)) => o.fused_activation_function,
        Some(O::SubOptions(o)) => o.fused_activation_function,
        Some(O::MulOptions(o)) => o.fused_activation_function,
        _ => Act::None,
    }
}

fn add_sub(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (x1, x2) = (i16s(ins, 0)?, i16s(ins, 1)?);
    let (s1, z1) = input_q(ctx, 0)?;
    let (s2, z2) = input_q(ctx, 1)?;
    let (sy, zy) = output_q(ctx)?;
    let (lo, hi) = act_range(fused(ctx), sy, zy)?;
    const LEFT_SHIFT: i32 = 15;
    // As the kernel computes them: the larger scale doubled in float32, the ratios in
    // double precision.
    let twice = (2.0 * s1.max(s2)) as f64;
    let m1 = multiplier_below_one(s1 as f64 / twice);
    let m2 = multiplier_below_one(s2 as f64 / twice);
    let my = multiplier_below_one(twice / (((1 << LEFT_SHIFT) as f32 * sy) as f64));
    let (shape, i1, i2) = broadcast2(ins)?;
    let sub = b == B::Sub;
    let same_shape = ins.get(0)?.shape == ins.get(1)?.shape;
    // LiteRT's x86-64 build runs blocks of 16 elements of a same-shape ADD/SUB (and of
    // SUB's fast broadcasts) with AVX2, which shifts left by 15 and rescales in one
    // multiplication; the scalar loop (the rest, and ADD's broadcasts) shifts, then
    // rescales with double rounding. Both give the same result but for rare ties.
    let blocks = if same_shape {
        shape.iter().product::<usize>() / 16 * 16
    } else if sub {
        usize::MAX
    } else {
        0
    };
    let out = i1
        .iter()
        .zip(&i2)
        .enumerate()
        .map(|(k, (&a, &c))| {
            let (a, c) = (x1[a] as i32 - z1, x2[c] as i32 - z2);
            let (a, c) = if k < blocks {
                (
                    mbqm(a, m1.0, LEFT_SHIFT + m1.1),
                    mbqm(c, m2.0, LEFT_SHIFT + m2.1),
                )
            } else {
                (
                    scale_down(a << LEFT_SHIFT, m1),
                    scale_down(c << LEFT_SHIFT, m2),
                )
            };
            let raw = if sub {
                a.wrapping_sub(c)
            } else {
                a.wrapping_add(c)
            };
            (scale_down(raw, my) + zy).clamp(lo, hi) as i16
        })
        .collect();
    out16(shape, out)
}

fn mul(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (x1, x2) = (i16s(ins, 0)?, i16s(ins, 1)?);
    let (s1, z1) = input_q(ctx, 0)?;
    let (s2, z2) = input_q(ctx, 1)?;
    let (sy, zy) = output_q(ctx)?;
    let (lo, hi) = act_range(fused(ctx), sy, zy)?;
    // float32 product and quotient, as the kernel computes them.
    let (m, shift) = quantize_multiplier((s1 * s2 / sy) as f64);
    let (shape, i1, i2) = broadcast2(ins)?;
    let out = i1
        .iter()
        .zip(&i2)
        .map(|(&a, &c)| {
            let p = (x1[a] as i32 - z1).wrapping_mul(x2[c] as i32 - z2);
            (zy + mbqm(p, m, shift)).clamp(lo, hi) as i16
        })
        .collect();
    out16(shape, out)
}

// ---- LOGISTIC, TANH -----------------------------------------------------------------

/// LiteRT's table of sigmoid(i/24) in Q0.16 for i in 0..256, shared by its int16
/// LOGISTIC and TANH: each entry is the rounded sample minus half the error linear
/// interpolation makes at the midpoint to the next entry; the last is saturated.
pub(crate) fn sigmoid_table() -> &'static [u16; 256] {
    static TABLE: OnceLock<[u16; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let s = |x: f64| 65536.0 / (1.0 + (-x).exp());
        let mut t = [0u16; 256];
        for (i, e) in t.iter_mut().enumerate() {
            if i == 255 {
                *e = u16::MAX;
                continue;
            }
            let x = i as f64 / 24.0;
            let v = s(x);
            let interp_err = (v + s(x + 1.0 / 24.0)) / 2.0 - s(x + 1.0 / 48.0);
            *e = (v - interp_err / 2.0).round().min(65535.0) as u16;
        }
        t
    })
}

/// How a LOGISTIC/TANH rescales its input (`SigmoidPrepare`/`TanhPrepare`).
enum ActInput {
    /// A power-of-two scale: gemmlowp's fixed point on Q3.12 after a left shift.
    Pot(i32),
    /// Other scales: `(x·multiplier + round) >> shift` to the table's `1/(3·4096)`.
    Lut { multiplier: i32, shift: i32 },
}

fn act_input(b: B, scale: f32) -> ActInput {
    let (pot, log2) = checked_log2(scale);
    let shift = (15 - 3) + log2;
    let pot_shifts = if b == B::Tanh { 0..=1 } else { 0..=0 };
    if pot && pot_shifts.contains(&shift) {
        return ActInput::Pot(shift);
    }
    let mut multiplier = scale as f64 * 4096.0 * 3.0;
    let mut shift = 0;
    while multiplier <= 32767.0 / 2.0 && shift <= 30 {
        shift += 1;
        multiplier *= 2.0;
    }
    ActInput::Lut {
        multiplier: multiplier as i32,
        shift,
    }
}

fn logistic_lut(x: i16, multiplier: i32, shift: i32) -> i16 {
    let t = sigmoid_table();
    let round = if shift > 0 { 1 << (shift - 1) } else { 0 };
    let input = (x as i32 * multiplier + round) >> shift;
    let abs = input.unsigned_abs();
    let uh = (abs >> 9) as usize;
    let r: u32 = if uh >= 255 {
        0x7fff << 10
    } else {
        let (ua, ub) = (t[uh] as u32, t[uh + 1] as u32);
        (ua << 9) + (abs & 0x1ff) * (ub - ua)
    };
    let r = if input >= 0 {
        r + (1 << 9)
    } else {
        (1u32 << 25) - r + (1 << 9) - 1
    };
    (r >> 10) as i16
}

fn tanh_lut(x: i16, multiplier: i32, shift: i32) -> i16 {
    let t = sigmoid_table();
    let round = if shift > 0 { 1 << (shift - 1) } else { 0 };
    let input = (x as i32 * multiplier + round) >> shift;
    let abs = input.unsigned_abs();
    let uh = (abs >> 8) as usize;
    let r: i32 = if uh >= 255 {
        0xffff << 8
    } else {
        let (ua, ub) = (t[uh] as i32, t[uh + 1] as i32);
        (ua << 8) + (abs & 0xff) as i32 * (ub - ua)
    };
    let r = if input >= 0 {
        r - (1 << 23) + (1 << 7)
    } else {
        -r + (1 << 23) + (1 << 7) - 1
    };
    (r >> 8) as i16
}

fn logistic_tanh(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let xv = ins.get(0)?;
    let x = i16s(ins, 0)?;
    let (s, z) = input_q(ctx, 0)?;
    let (sy, zy) = output_q(ctx)?;
    ensure!(
        z == 0 && zy == 0,
        "int16 {}: zero points must be 0 (LiteRT refuses others)",
        crate::fb::op_name(b)
    );
    ensure!(
        sy == 1.0 / 32768.0,
        "int16 {}: output scale must be 2^-15 (LiteRT refuses {sy})",
        crate::fb::op_name(b)
    );
    let out = match (b, act_input(b, s)) {
        (B::Logistic, ActInput::Pot(_)) => x.iter().map(|&v| logistic16(v, 3)).collect(),
        (_, ActInput::Pot(shift)) => x.iter().map(|&v| tanh16(srmbpot16(v, shift), 3)).collect(),
        (B::Logistic, ActInput::Lut { multiplier, shift }) => x
            .iter()
            .map(|&v| logistic_lut(v, multiplier, shift))
            .collect(),
        (_, ActInput::Lut { multiplier, shift }) => {
            x.iter().map(|&v| tanh_lut(v, multiplier, shift)).collect()
        }
    };
    out16(xv.shape.clone(), out)
}

// ---- QUANTIZE (requantization) ------------------------------------------------------

/// QUANTIZE of an int16 tensor to int16 or int8 (per tensor): LiteRT's `Requantize`,
/// `(q − zp_in)` times the multiplier of `s_in / s_out` (double precision) plus
/// `zp_out`, saturated. `None` for any other QUANTIZE (the caller converts through
/// reals).
pub(crate) fn requantize(ctx: &Ctx, x: &Value, t: TensorType) -> KResult<Option<Value>> {
    let Data::I16(q) = &x.data else {
        return Ok(None);
    };
    let per_tensor = |p: Option<&Option<&QuantParams>>| {
        p.copied()
            .flatten()
            .filter(|p| p.scale.len() == 1)
            .map(|p| {
                (
                    p.scale[0],
                    p.zero_point.first().copied().unwrap_or(0) as i32,
                )
            })
    };
    let (Some((si, zi)), Some((so, zo))) = (
        per_tensor(ctx.in_quant.first()),
        per_tensor(ctx.out_quant.first()),
    ) else {
        return Ok(None);
    };
    let (m, shift) = quantize_multiplier(si as f64 / so as f64);
    let r = |v: i16| mbqm(v as i32 - zi, m, shift) + zo;
    let data = match t {
        TensorType::Int16 => Data::I16(
            q.iter()
                .map(|&v| r(v).clamp(-32768, 32767) as i16)
                .collect(),
        ),
        TensorType::Int8 => Data::I8(q.iter().map(|&v| r(v).clamp(-128, 127) as i8).collect()),
        _ => return Ok(None),
    };
    value(x.shape.clone(), data).map(Some)
}

// ---- SOFTMAX ------------------------------------------------------------------------

/// LiteRT's `LUTPopulate<int16_t>` in double precision: 512 samples of `f` over the
/// input range, each biased by half the interpolation error at its midpoint, and the
/// end point, all in the output's Q0.15-like range.
fn populate_lut(input: (f64, i32), output: (f64, i32), f: impl Fn(f64) -> f64) -> [i16; 513] {
    let (in_scale, in_zp) = input;
    let (out_scale, out_zp) = output;
    let (lo, hi) = (i16::MIN as f64, i16::MAX as f64);
    let in_min = in_scale * (i16::MIN as i32 - in_zp) as f64;
    let in_max = in_scale * (i16::MAX as i32 - in_zp) as f64;
    let out_min = out_scale * (i16::MIN as i32 - out_zp) as f64;
    let out_max = out_scale * (i16::MAX as i32 - out_zp) as f64;
    let steps = 512;
    let step = (in_max - in_min) / steps as f64;
    let half_step = step / 2.0;
    let inv = 65536.0 / (out_max - out_min);
    let mut lut = [0i16; 513];
    for (i, e) in lut.iter_mut().take(steps).enumerate() {
        let val = f(in_min + i as f64 * step);
        let val_mid = f(in_min + i as f64 * step + half_step);
        let val_next = f(in_min + (i + 1) as f64 * step);
        let sample = (val * inv).round();
        let mid_interp = ((val_next * inv + (val * inv).round()) / 2.0).round();
        let mid = (val_mid * inv).round();
        let bias = ((mid_interp - mid) / 2.0).round();
        *e = (sample - bias).clamp(lo, hi) as i16;
    }
    lut[steps] = (f(in_max) * inv).round().clamp(lo, hi) as i16;
    lut
}

/// The interpolated lookup of a 513-entry table (`LUTLookup`).
fn lut_lookup(v: i16, lut: &[i16; 513]) -> i16 {
    let index = (256 + (v as i32 >> 7)) as usize;
    let offset = (v & 0x7f) as i32;
    let base = lut[index] as i32;
    let slope = lut[index + 1] as i32 - base;
    (base + ((slope * offset + 64) >> 7)) as i16
}

/// exp on [-10, 0] and 1/(1+x) on [0, 1], as SOFTMAX's Prepare builds them.
fn softmax_luts() -> &'static ([i16; 513], [i16; 513]) {
    static LUTS: OnceLock<([i16; 513], [i16; 513])> = OnceLock::new();
    LUTS.get_or_init(|| {
        let range = 65535.0;
        let out = (2.0 / range, 0);
        (
            populate_lut((10.0 / range, 32767), out, f64::exp),
            populate_lut((1.0 / range, -32768), out, |x| 1.0 / (1.0 + x)),
        )
    })
}

fn softmax(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let xv = ins.get(0)?;
    let x = i16s(ins, 0)?;
    let (s, z) = input_q(ctx, 0)?;
    let (_, zy) = output_q(ctx)?;
    ensure!(
        z == 0 && zy == 0,
        "int16 SOFTMAX: zero points must be 0 (LiteRT refuses others)"
    );
    let beta = match ctx.opts() {
        Some(O::SoftmaxOptions(o)) => o.beta,
        _ => 1.0,
    };
    // float32 product, then scaled so that [-65535, 0] covers [-10, 0].
    let (m, shift) = quantize_multiplier((s * beta) as f64 / (10.0 / 65535.0));
    let depth = xv.shape.last().copied().unwrap_or(1);
    ensure!(depth > 0, "SOFTMAX over an empty last dimension");
    let (exp_lut, recip_lut) = softmax_luts();
    let mut out = Vec::with_capacity(x.len());
    let mut exps = vec![0i16; depth];
    for row in x.chunks(depth) {
        let max = row.iter().copied().max().unwrap_or(0) as i32;
        let mut sum: i32 = 0;
        for (e, &v) in exps.iter_mut().zip(row) {
            let scaled = mbqm(v as i32 - max, m, shift);
            let sym = (scaled + 32767).clamp(-32768, 32767) as i16;
            *e = lut_lookup(sym, exp_lut);
            sum += *e as i32;
        }
        ensure!(sum > 0, "int16 SOFTMAX: the exponentials sum to {sum}");
        let headroom = (sum as u32).leading_zeros() as i32;
        let shifted = (((sum as i64) << (headroom - 1)) + (1 << 13)) >> 14;
        let sym = (shifted as i32 - ((1 << 15) + (1 << 16))).clamp(-32768, 32767) as i16;
        let recip = lut_lookup(sym, recip_lut) as i64;
        let right = 31 - headroom;
        let round = 1i64 << (right - 1);
        for &e in &exps[..row.len()] {
            let r = ((e as i64 * recip + round) >> right) as i32;
            out.push(r.clamp(0, 32767) as i16);
        }
    }
    out16(xv.shape.clone(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference twins: the float functions. Bounds in int16 output steps (2^-15): the
    /// table's interpolation between samples 1/24 apart (Q0.16) and the input rescaling
    /// keep LOGISTIC/TANH within 4 steps; SOFTMAX's tables (512 samples over their range) within 8.
    #[test]
    fn table_kernels_follow_the_float_functions() {
        let step = 1.0 / 32768.0;
        for scale in [3e-4f32, 1.7e-3] {
            let ActInput::Lut { multiplier, shift } = act_input(B::Logistic, scale) else {
                panic!("{scale} is not a power of two");
            };
            for raw in (-32768i32..=32767).step_by(37) {
                let x = raw as f64 * scale as f64;
                let s = logistic_lut(raw as i16, multiplier, shift) as f64 * step;
                assert!(
                    (s - 1.0 / (1.0 + (-x).exp())).abs() <= 4.0 * step,
                    "σ({x}) = {s}"
                );
            }
            let ActInput::Lut { multiplier, shift } = act_input(B::Tanh, scale) else {
                panic!("{scale} is not a power of two");
            };
            for raw in (-32768i32..=32767).step_by(37) {
                let x = raw as f64 * scale as f64;
                let t = tanh_lut(raw as i16, multiplier, shift) as f64 * step;
                assert!((t - x.tanh()).abs() <= 4.0 * step, "tanh({x}) = {t}");
            }
        }
        assert!(matches!(
            act_input(B::Logistic, 1.0 / 4096.0),
            ActInput::Pot(0)
        ));
        assert!(matches!(act_input(B::Tanh, 1.0 / 2048.0), ActInput::Pot(1)));
        assert!(matches!(
            act_input(B::Logistic, 1.0 / 2048.0),
            ActInput::Lut { .. }
        ));
        let (exp_lut, recip_lut) = softmax_luts();
        for raw in (-32768i32..=32767).step_by(53) {
            // exp on [-10, 0], 1/(1+x) on [0, 1], both Q0.15.
            let e = lut_lookup(raw as i16, exp_lut) as f64 * step;
            let x = (raw + 32768) as f64 * 10.0 / 65535.0 - 10.0;
            assert!((e - x.exp()).abs() <= 8.0 * step, "exp({x}) = {e}");
            let r = lut_lookup(raw as i16, recip_lut) as f64 * step;
            let x = (raw + 32768) as f64 / 65535.0;
            assert!((r - 1.0 / (1.0 + x)).abs() <= 8.0 * step, "1/(1+{x}) = {r}");
        }
    }

    #[test]
    fn the_sigmoid_table_is_litert_s() {
        // Checksums and entries of the table in LiteRT's `internal/common.h`.
        let t = sigmoid_table();
        let sum: u64 = t.iter().map(|&v| v as u64).sum();
        let weighted: u64 = t
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u64 + 1) * v as u64)
            .sum();
        assert_eq!((sum, weighted), (15_670_629, 2_123_733_574));
        assert_eq!(
            (t[0], t[4], t[100], t[200], t[255]),
            (32768, 35493, 64536, 65520, 65535)
        );
    }
}
