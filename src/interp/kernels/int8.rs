//! int8 FULLY_CONNECTED with the arithmetic LiteRT runs by default: the op reads and
//! writes the stored integers here instead of the float simulation (dequantize, float
//! kernel, requantize; see `super::super`), so that `run` of an int8 model gives the
//! runtime's integers for it.
//!
//! LiteRT's default CPU path hands an int8 FULLY_CONNECTED with constant symmetric int8
//! weights (per tensor or per output channel) and an int32 bias to its XNNPACK delegate
//! (`delegates/xnnpack/xnnpack_delegate.cc`: `VisitFullyConnectedNode`), whose QS8/QC8W
//! kernels requantize in float32 ("fp32" requantization): `acc = Σ w·(x − zp_x) + bias`
//! in 32 bits, converted to float32, multiplied by the float32 scale
//! `s_x·s_w / s_y` (computed in float32, per output channel), clamped to the fused
//! activation's range, rounded to nearest with ties to even (the magic-bias trick or
//! `cvtps2dq`), plus the output zero point. TFLite's own kernels (`fully_connected.cc`
//! with `reference_integer_ops::FullyConnected`, used without the delegate) requantize
//! with `MultiplyByQuantizedMultiplier`'s fixed point instead; the two part at about
//! one output in a few hundred, by one step. Measured on ai-edge-litert 2.3 (the int8
//! `lstm_digits` and `cnn_digits` heads, per tensor and per channel, 100 digits each):
//! the fp32 form gives the default interpreter's FULLY_CONNECTED outputs exactly (0 of
//! 16,800 differ), the fixed-point form differs on 12 to 24 of them.
//!
//! The float simulation is this kernel's reference twin (tests: within one step).
//!
//! int8 SOFTMAX (int8 input, int8 or int16 output) likewise: LiteRT hands it to no
//! delegate (XNNPACK takes float SOFTMAX only) and its optimized kernel
//! (`optimized_ops::Softmax<In, Out>`, `activations.cc`) works in float32: a table of
//! `expf(−s_x·β·d)` for the 256 input differences `d = max − x`, the row's sum of table
//! entries in order, `1 / (sum · s_y)`, each entry times it rounded half away from zero
//! (`std::round`), plus the output zero point, saturated. At int8's 1/256 the float
//! simulation lands on the same integers; at the int16 probabilities tflquant writes
//! for a float output (1/32767) it can differ by a step, so both run this way.

use crate::fb::TensorType;
use crate::fb::{ActivationFunctionType as Act, BuiltinOperator as B, BuiltinOptions as O};
use crate::interp::value::{Data, Value};
use crate::ir::{Operator, QuantParams, Subgraph, Tensor};

use super::{Ctx, Ins, KResult, Outs, bad, ensure, unsupported, value};

fn tensor<'s>(sg: &'s Subgraph, ids: &[i32], i: usize) -> Option<&'s Tensor> {
    let t = usize::try_from(*ids.get(i)?).ok()?;
    sg.tensors.get(t)
}

/// A tensor of type `dtype` with one scale and zero point.
fn per_tensor(t: Option<&Tensor>, dtype: TensorType) -> bool {
    t.is_some_and(|t| t.dtype == dtype && t.quantized().is_some_and(|q| q.scale.len() == 1))
}

/// An int8 tensor with one scale and zero point.
fn per_tensor8(t: Option<&Tensor>) -> bool {
    per_tensor(t, TensorType::Int8)
}

/// True when op `op` (builtin `b`) of `sg` is an int8 FULLY_CONNECTED the XNNPACK
/// delegate takes and this module runs: int8 input and output per tensor, constant
/// 2-D int8 weights with zero points 0 (one scale, or one per output channel), an
/// absent or constant int32 bias, a clamping fused activation (or none), and every
/// requantization scale within what XNNPACK accepts.
pub(crate) fn runs_exact(b: B, op: &Operator, sg: &Subgraph) -> bool {
    if b == B::Softmax {
        let out = tensor(sg, &op.outputs, 0);
        return per_tensor8(tensor(sg, &op.inputs, 0))
            && (per_tensor8(out) || per_tensor(out, TensorType::Int16));
    }
    if b != B::FullyConnected {
        return false;
    }
    let input = |i| tensor(sg, &op.inputs, i);
    if !per_tensor8(input(0)) || !per_tensor8(tensor(sg, &op.outputs, 0)) {
        return false;
    }
    let weights = input(1).is_some_and(|w| {
        w.dtype == TensorType::Int8
            && w.buffer != 0
            && w.shape.len() == 2
            && w.quantized().is_some_and(|q| {
                let n = w.shape[0].max(0) as usize;
                q.zero_point.iter().all(|&z| z == 0)
                    && (q.scale.len() == 1 || (q.scale.len() == n && q.quantized_dimension == 0))
            })
    });
    let bias = match op.inputs.get(2) {
        None | Some(-1) => true,
        Some(_) => input(2).is_some_and(|t| t.dtype == TensorType::Int32 && t.buffer != 0),
    };
    let act = match &op.builtin_options {
        Some(O::FullyConnectedOptions(o)) => {
            matches!(
                o.fused_activation_function,
                Act::None | Act::Relu | Act::Relu6 | Act::ReluN1To1
            ) && o.weights_format == crate::fb::FullyConnectedOptionsWeightsFormat::Default
        }
        _ => true,
    };
    // XNNPACK refuses a requantization scale outside [2^-32, 256) (LiteRT then runs
    // its own kernel): those stay simulated.
    let scales_ok = || {
        let (Some(x), Some(w), Some(y)) = (
            input(0).and_then(Tensor::quantized),
            input(1).and_then(Tensor::quantized),
            tensor(sg, &op.outputs, 0).and_then(Tensor::quantized),
        ) else {
            return false;
        };
        w.scale.iter().all(|&sw| {
            let s = x.scale[0] * sw / y.scale[0];
            (2f32.powi(-32)..256.0).contains(&s)
        })
    };
    weights && bias && act && op.inputs.len() <= 3 && scales_ok()
}

/// Runs op `b` on stored integers (the caller checked [`runs_exact`]).
pub(crate) fn eval(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    match b {
        B::FullyConnected => Ok(fully_connected(ctx, ins)?.into()),
        B::Softmax => Ok(softmax(ctx, ins)?.into()),
        other => unsupported!("no int8 kernel for {}", crate::fb::op_name(other)),
    }
}

fn params<'a>(q: Option<&Option<&'a QuantParams>>, what: &str) -> KResult<&'a QuantParams> {
    match q.copied().flatten() {
        Some(q) if !q.scale.is_empty() => Ok(q),
        _ => bad!("int8 FULLY_CONNECTED: {what} has no quantization parameters"),
    }
}

fn zero_point(q: &QuantParams) -> i32 {
    q.zero_point.first().copied().unwrap_or(0) as i32
}

/// The fused activation's range in output integers, as XNNPACK's operator builds it
/// from the delegate's float bounds (`lrintf(bound / s_y) + zp_y`, saturated to int8).
fn act_range(act: Act, scale: f32, zp: i32) -> KResult<(i32, i32)> {
    let q = |x: f32| (zp + (x / scale).round_ties_even() as i32).clamp(-128, 127);
    Ok(match act {
        Act::None => (-128, 127),
        Act::Relu => (q(0.0), 127),
        Act::Relu6 => (q(0.0), q(6.0)),
        Act::ReluN1To1 => (q(-1.0), q(1.0)),
        other => unsupported!("int8 FULLY_CONNECTED: fused activation {other:?}"),
    })
}

fn fully_connected(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let xv = ins.get(0)?;
    let Data::I8(x) = &xv.data else {
        unsupported!("int8 FULLY_CONNECTED: input must be INT8");
    };
    let wv = ins.get(1)?;
    let Data::I8(w) = &wv.data else {
        unsupported!("int8 FULLY_CONNECTED: weights must be INT8");
    };
    let super::int16::FcGeometry { n, k, m, act, keep } =
        super::int16::fc_geometry(ctx, xv, x.len(), wv)?;
    let bias = match ins.opt(2).map(|b| &b.data) {
        Some(Data::I32(b)) if b.len() == n => Some(b.as_slice()),
        Some(Data::I32(b)) => bad!("bias has {} elements, expected {n}", b.len()),
        Some(d) => unsupported!(
            "int8 FULLY_CONNECTED: bias is {}, expected INT32",
            crate::fb::dtype_name(d.dtype())
        ),
        None => None,
    };
    let xq = params(ctx.in_quant.first(), "the input")?;
    let wq = params(ctx.in_quant.get(1), "the weights")?;
    let yq = params(ctx.out_quant.first(), "the output")?;
    let (sx, zx, sy, zy) = (xq.scale[0], zero_point(xq), yq.scale[0], zero_point(yq));
    let (lo, hi) = act_range(act, sy, zy)?;
    ensure!(
        wq.scale.len() == 1 || wq.scale.len() == n,
        "{} weight scales for {n} output channels",
        wq.scale.len()
    );
    // float32 throughout, in XNNPACK's order: (s_x · s_w) / s_y.
    let scale: Vec<f32> = (0..n)
        .map(|c| sx * wq.scale[if wq.scale.len() == 1 { 0 } else { c }] / sy)
        .collect();
    let mut out = Vec::with_capacity(m * n);
    for row in x.chunks_exact(k) {
        for c in 0..n {
            let acc = w[c * k..(c + 1) * k]
                .iter()
                .zip(row)
                .fold(0i32, |a, (&w, &x)| {
                    a.wrapping_add(w as i32 * (x as i32 - zx))
                });
            let acc = acc.wrapping_add(bias.map_or(0, |b| b[c]));
            let y = (acc as f32 * scale[c]).round_ties_even() as i32;
            out.push((y.saturating_add(zy)).clamp(lo, hi) as i8);
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
    value(shape, Data::I8(out))
}

/// int8 SOFTMAX over the last axis as LiteRT's optimized kernel computes it (module
/// docs), writing int8 or int16 (`ctx.out_types`).
fn softmax(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let xv = ins.get(0)?;
    let Data::I8(x) = &xv.data else {
        unsupported!("int8 SOFTMAX: input must be INT8");
    };
    ensure!(!xv.shape.is_empty(), "input must have rank >= 1");
    let beta = match ctx.opts() {
        Some(O::SoftmaxOptions(o)) => o.beta,
        _ => 1.0,
    };
    let xq = params(ctx.in_quant.first(), "the input")?;
    let yq = params(ctx.out_quant.first(), "the output")?;
    let (sy, zy) = (yq.scale[0], zero_point(yq));
    // table[255 − d] = expf(−s_x·β·d), d = 0..=255.
    let k = -xq.scale[0] * beta;
    let mut table = [0f32; 256];
    for d in 0..256usize {
        table[255 - d] = (k * d as f32).exp();
    }
    let depth = *xv.shape.last().unwrap_or(&1);
    let wide = ctx.out_types.first() == Some(&TensorType::Int16);
    let (lo, hi) = match wide {
        true => (i16::MIN as i32, i16::MAX as i32),
        false => (i8::MIN as i32, i8::MAX as i32),
    };
    let mut out: Vec<i32> = Vec::with_capacity(x.len());
    if depth > 0 {
        for row in x.chunks_exact(depth) {
            let max = row.iter().map(|&v| v as i32).max().unwrap_or(-128);
            let entry = |v: i8| table[(255 - max + v as i32) as usize];
            let sum = row.iter().fold(0f32, |s, &v| s + entry(v));
            let inv = 1.0 / (sum * sy);
            out.extend(
                row.iter()
                    .map(|&v| ((entry(v) * inv).round() as i32 + zy).clamp(lo, hi)),
            );
        }
    }
    let data = match wide {
        true => Data::I16(out.into_iter().map(|v| v as i16).collect()),
        false => Data::I8(out.into_iter().map(|v| v as i8).collect()),
    };
    value(xv.shape.clone(), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fb::FullyConnectedOptions;

    /// Reference twin of the int8 SOFTMAX: the real softmax in f64 of the dequantized
    /// row (β = 0.7), rounded to the output step. The kernel's float32 table, sum and
    /// reciprocal are within 2^-20 relative of it, so its integer is the rounded one or,
    /// at a near-tie, the next (≤ 1 step), and int8's clamp at 255/256 holds a
    /// probability above it. Rows: random, one dominant entry, all equal.
    #[test]
    fn integer_softmax_follows_the_real_one_at_int8_and_int16() {
        use crate::fb::SoftmaxOptions;
        use crate::ir::QuantParams;
        let mut seed = 5u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            ((seed >> 8) % 256) as i32 - 128
        };
        let depth = 10;
        let mut x: Vec<i8> = (0..depth * 6).map(|_| rnd() as i8).collect();
        x.extend([127i8, -128, -128, -128, -128, -128, -128, -128, -128, -128]);
        x.extend([3i8; 10]);
        let (sx, zx, beta) = (0.11f32, -3i32, 0.7f32);
        let mut op = Operator::new(0, vec![0], vec![1]);
        op.builtin_options = Some(O::SoftmaxOptions(Box::new(SoftmaxOptions { beta })));
        for (dtype, sy, zy, qmax) in [
            (TensorType::Int8, 1.0f32 / 256.0, -128i32, 127i32),
            (TensorType::Int16, 1.0f32 / 32767.0, 0, 32767),
        ] {
            let in_q = [QuantParams::per_tensor(sx, zx as i64)];
            let out_q = [QuantParams::per_tensor(sy, zy as i64)];
            let ctx = Ctx::quantized_for_test(&op, &in_q, &out_q, dtype);
            let vals = [Value::new(vec![x.len() / depth, depth], Data::I8(x.clone())).unwrap()];
            let ins = Ins(vals.iter().map(Some).collect());
            let y = softmax(&ctx, &ins).unwrap();
            let got: Vec<i32> = match &y.data {
                Data::I8(v) => v.iter().map(|&v| v as i32).collect(),
                Data::I16(v) => v.iter().map(|&v| v as i32).collect(),
                _ => panic!("{:?}", y.data.dtype()),
            };
            for (r, row) in x.chunks(depth).enumerate() {
                let real: Vec<f64> = row
                    .iter()
                    .map(|&v| ((v as i32 - zx) as f64 * sx as f64 * beta as f64).exp())
                    .collect();
                let sum: f64 = real.iter().sum();
                for (j, e) in real.iter().enumerate() {
                    let want = ((e / sum / sy as f64).round() as i32 + zy).min(qmax);
                    let q = got[r * depth + j];
                    assert!(
                        (q - want).abs() <= 1,
                        "{dtype:?} row {r} entry {j}: {q} vs {want}"
                    );
                }
            }
        }
    }

    /// Reference twin: the real-valued FULLY_CONNECTED in f64 on the dequantized
    /// operands. The kernel's result is that value rounded to the output step: within
    /// half a step, plus the float32 rounding of `acc` (exact below 2^24) and of the
    /// scale (relative 2^-23 of at most 128 steps, 2e-5 step); the fused RELU6 clamps.
    #[test]
    fn integer_fully_connected_follows_the_real_one() {
        use crate::ir::QuantParams;
        let (m, k, n) = (3usize, 37usize, 6usize);
        let mut seed = 11u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let xq: Vec<i8> = (0..m * k).map(|_| (rnd() * 127.0) as i8).collect();
        let wq: Vec<i8> = (0..n * k).map(|_| (rnd() * 127.0) as i8).collect();
        let bq: Vec<i32> = (0..n).map(|_| (rnd() * 3000.0) as i32).collect();
        let (sx, zx, sy, zy) = (0.031f32, -7i32, 0.027f32, -128i32);
        for per_channel in [false, true] {
            let sw: Vec<f32> = if per_channel {
                (0..n).map(|c| 0.004 + 0.001 * c as f32).collect()
            } else {
                vec![0.006]
            };
            let wparams = QuantParams::per_axis(sw.clone(), vec![0; sw.len()], 0);
            let in_q = [
                QuantParams::per_tensor(sx, zx as i64),
                wparams,
                QuantParams::per_tensor(sx * sw[0], 0),
            ];
            let out_q = [QuantParams::per_tensor(sy, zy as i64)];
            let mut op = Operator::new(0, vec![0, 1, 2], vec![3]);
            op.builtin_options = Some(O::FullyConnectedOptions(Box::new(FullyConnectedOptions {
                fused_activation_function: Act::Relu6,
                ..Default::default()
            })));
            let ctx = Ctx::quantized_for_test(&op, &in_q, &out_q, TensorType::Int8);
            let vals = [
                Value::new(vec![m, k], Data::I8(xq.clone())).unwrap(),
                Value::new(vec![n, k], Data::I8(wq.clone())).unwrap(),
                Value::new(vec![n], Data::I32(bq.clone())).unwrap(),
            ];
            let got = fully_connected(&ctx, &Ins(vals.iter().map(Some).collect())).unwrap();
            assert_eq!(got.shape, vec![m, n]);
            let Data::I8(q) = &got.data else {
                panic!("int8 output")
            };
            let mut clamped = 0;
            for r in 0..m {
                for c in 0..n {
                    let s = sw[if per_channel { c } else { 0 }] as f64;
                    let real: f64 = (0..k)
                        .map(|i| {
                            (wq[c * k + i] as f64 * s)
                                * ((xq[r * k + i] as i32 - zx) as f64 * sx as f64)
                        })
                        .sum::<f64>()
                        + bq[c] as f64 * sx as f64 * s;
                    let want = (real.clamp(0.0, 6.0) / sy as f64 + zy as f64).clamp(-128.0, 127.0);
                    let got = q[r * n + c] as f64;
                    assert!(
                        (got - want).abs() <= 0.5 + 1e-3,
                        "row {r} channel {c}: {got} vs {want} (per channel {per_channel})"
                    );
                    clamped += usize::from(real <= 0.0 || real >= 6.0);
                }
            }
            assert!(
                clamped < m * n,
                "every output clamped: the test checks nothing"
            );
        }
    }
}
