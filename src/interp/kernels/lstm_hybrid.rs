//! UNIDIRECTIONAL_SEQUENCE_LSTM, dynamic range ("hybrid"): float32 input, output and
//! states, int8 weights with one scale per tensor. This is LiteRT's hybrid kernel
//! (`lstm_eval.cc`, `LstmStepHybrid` and `CalculateLstmGateHybrid`, with the portable
//! tensor utilities) for the plain variant (no CIFG, peephole, projection or layer
//! norm), which tflquant's integer modes write as the fallback of an LSTM that cannot be
//! integer. Each step the kernel quantizes the input row and the output state to int8
//! on the fly, one scale per batch row (`BatchQuantizeFloats`: asymmetric with a zero
//! point when the operator's `asymmetric_quantize_inputs` is set, else symmetric to
//! ±127; the range subtracted in float32, values rounded half away from zero as the
//! runtime's NEON-derived loops do, [`round_row`]), multiplies them with the int8 weights in 32-bit integers (less the zero point
//! times the row sums), and scales each product by `s_weights · s_row` onto the float
//! gate, which starts at its bias; a row of zeros skips its product. The gates'
//! activations and the cell update then run in float as in the float kernel, tanh and
//! the sigmoid being Eigen's float approximations as the runtime computes them
//! (`eigen_math.rs`): one ulp off at a rounding tie of the next step's quantization
//! would move a hidden value by a whole int8 step.
//!
//! The float kernel (`lstm.rs`, fed the dequantized weights) is this kernel's reference
//! twin; the difference between them is the on-the-fly quantization of the input and
//! the state, which is what this kernel reproduces.

use crate::fb::{ActivationFunctionType as A, BuiltinOptions as O};
use crate::interp::value::{Data, Value};
use crate::ir::{Operator, Subgraph};

use super::{Ctx, Ins, KResult, Outs, bad, ensure, unsupported};

/// True for an LSTM this kernel runs: float32 input, int8 quantized gate weights, and
/// none of the optional parts (CIFG, peephole, projection, layer norm).
pub(crate) fn runs_hybrid(op: &Operator, sg: &Subgraph) -> bool {
    let t = |i: usize| {
        op.inputs
            .get(i)
            .and_then(|&t| usize::try_from(t).ok())
            .and_then(|t| sg.tensors.get(t))
    };
    let float_input = t(0).is_some_and(|t| t.dtype == crate::fb::TensorType::Float32);
    let int8_weights = (1..9).all(|i| {
        t(i).is_some_and(|t| t.dtype == crate::fb::TensorType::Int8 && t.quantized().is_some())
    });
    let plain = (9..12).chain(16..18).chain(20..24).all(|i| t(i).is_none());
    float_input && int8_weights && plain
}

/// `x · inv` rounded to an integer as LiteRT's x86-64 build quantizes a row: its
/// `AsymmetricQuantizeFloats` / `SymmetricQuantizeFloats` are the NEON versions (through
/// NEON_2_SSE), whose blocks of 8 use `RoundToNearest`: `x·inv ± 0.5` added in float32,
/// then truncated (half away from zero); the last `len % 8` elements use `TfLiteRound`
/// (`std::round`, half away from zero in exact arithmetic). Read from
/// `libpywrap_litert_common.so` (ai-edge-litert 2.3), disassembled.
fn round_row(v: &[f32], inv: f32, lo: i32, hi: i32, zp: i32) -> Vec<i8> {
    let blocks = v.len() / 8 * 8;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            let m = x * inv;
            let r = if i < blocks {
                (m + if m < 0.0 { -0.5 } else { 0.5 }).trunc()
            } else {
                m.round()
            };
            (r as i32).saturating_add(zp).clamp(lo, hi) as i8
        })
        .collect()
}

/// One row quantized to int8 as `BatchQuantizeFloats` does: (values, scale, zero point).
fn quantize_row(v: &[f32], asymmetric: bool) -> (Vec<i8>, f32, i32) {
    if asymmetric {
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let (rmin, rmax) = (lo.min(0.0), hi.max(0.0));
        if rmin == rmax {
            return (vec![0; v.len()], 1.0, 0);
        }
        let (qmin, qmax) = (-128.0f64, 127.0f64);
        // The range is subtracted in float32, the rest in double (as the kernel does).
        let scale = (rmax - rmin) as f64 / (qmax - qmin);
        let (rmin, rmax) = (rmin as f64, rmax as f64);
        let from_min = qmin - rmin / scale;
        let from_max = qmax - rmax / scale;
        let err_min = qmin.abs() + (rmin / scale).abs();
        let err_max = qmax.abs() + (rmax / scale).abs();
        let zp = if err_min < err_max {
            from_min
        } else {
            from_max
        };
        let zp = if zp <= qmin {
            -128
        } else if zp >= qmax {
            127
        } else {
            zp.round() as i32
        };
        let scale = scale as f32;
        let inv = if scale == 0.0 { 0.0 } else { 1.0f32 / scale };
        (round_row(v, inv, -128, 127, zp), scale, zp)
    } else {
        let range = v.iter().fold(0f32, |m, &x| m.max(x.abs()));
        if range == 0.0 {
            return (vec![0; v.len()], 1.0, 0);
        }
        let inv = 127.0 / range;
        (round_row(v, inv, -127, 127, 0), range / 127.0, 0)
    }
}

/// A quantized row (input or output state) ready to multiply.
struct QRow {
    q: Vec<i8>,
    scale: f32,
    zp: i32,
    zero: bool,
}

impl QRow {
    fn new(v: &[f32], asymmetric: bool) -> QRow {
        let zero = v.iter().all(|&x| x == 0.0);
        if zero {
            return QRow {
                q: Vec::new(),
                scale: 1.0,
                zp: 0,
                zero,
            };
        }
        let (q, scale, zp) = quantize_row(v, asymmetric);
        QRow { q, scale, zp, zero }
    }
}

/// One gate's int8 weights, their scales and row sums, and its float bias.
struct Gate<'a> {
    w_in: &'a [i8],
    w_rec: &'a [i8],
    s_in: f32,
    s_rec: f32,
    sum_in: Vec<i32>,
    sum_rec: Vec<i32>,
    bias: Option<&'a [f32]>,
}

fn accumulate(gate: &mut [f32], w: &[i8], sums: &[i32], s_w: f32, row: &QRow) {
    if row.zero {
        return;
    }
    let n = row.q.len();
    let scale = s_w * row.scale;
    for (r, g) in gate.iter_mut().enumerate() {
        let mut dot: i32 = w[r * n..(r + 1) * n]
            .iter()
            .zip(&row.q)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        dot -= sums[r] * row.zp;
        *g += dot as f32 * scale;
    }
}

impl Gate<'_> {
    /// The gate over the rows of one kernel step (`rows` input and state rows, one
    /// after another), activation applied over the whole vector as LiteRT does.
    fn eval(&self, x: &[QRow], h: &[QRow], n_cell: usize, act: A) -> Vec<f32> {
        let mut g = Vec::with_capacity(x.len() * n_cell);
        for (xq, hq) in x.iter().zip(h) {
            let mut row = match self.bias {
                Some(b) => b.to_vec(),
                None => vec![0.0; n_cell],
            };
            accumulate(&mut row, self.w_in, &self.sum_in, self.s_in, xq);
            accumulate(&mut row, self.w_rec, &self.sum_rec, self.s_rec, hq);
            g.extend_from_slice(&row);
        }
        apply(act, &mut g);
        g
    }
}

/// A fused activation as `tensor_utils::ApplyActivationToVector` computes it over one
/// vector: tanh and the sigmoid are Eigen's float approximations (`eigen_math.rs`), bit
/// for bit; the float kernel (`lstm.rs`) keeps the C library's functions.
fn apply(a: A, v: &mut [f32]) {
    match a {
        A::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        A::ReluN1To1 => v.iter_mut().for_each(|x| *x = x.clamp(-1.0, 1.0)),
        A::Relu6 => v.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        A::Tanh => super::eigen_math::tanh_slice(v),
        // TFLite's kTfLiteActSigmoid shares the schema value SIGN_BIT.
        A::SignBit => super::eigen_math::logistic_slice(v),
        A::None => {}
    }
}

fn i8s<'a>(ins: &Ins<'a>, i: usize) -> KResult<&'a [i8]> {
    match &ins.get(i)?.data {
        Data::I8(v) => Ok(v),
        d => unsupported!("hybrid LSTM: input {i} is {:?}, expected INT8", d.dtype()),
    }
}

fn f32s<'a>(ins: &Ins<'a>, i: usize) -> KResult<Option<&'a [f32]>> {
    match ins.opt(i).map(|v| &v.data) {
        Some(Data::F32(v)) => Ok(Some(v)),
        Some(d) => unsupported!(
            "hybrid LSTM: input {i} is {:?}, expected FLOAT32",
            d.dtype()
        ),
        None => Ok(None),
    }
}

fn row_sums(w: &[i8], cols: usize) -> Vec<i32> {
    w.chunks(cols.max(1))
        .map(|r| r.iter().map(|&v| v as i32).sum())
        .collect()
}

pub(crate) fn unidirectional_sequence_lstm_hybrid(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::UnidirectionalSequenceLstmOptions(o)) = ctx.opts() else {
        bad!("missing UnidirectionalSequenceLSTMOptions");
    };
    let Some(x) = f32s(ins, 0)? else {
        bad!("input 0 is required");
    };
    let (steps, batch, n_in, n_cell) = super::lstm_int::plain_dims(ins, o.time_major)?;
    let n_out = n_cell;
    let scale = |i: usize| match ctx.in_quant.get(i).copied().flatten() {
        Some(q) if !q.scale.is_empty() => Ok(q.scale[0]),
        _ => Err(super::KErr::Bad(format!(
            "hybrid LSTM: weights {i} have no quantization parameters"
        ))),
    };
    let gate = |wi: usize, ri: usize, bi: usize| -> KResult<Gate> {
        let (w_in, w_rec) = (i8s(ins, wi)?, i8s(ins, ri)?);
        let bias = f32s(ins, bi)?;
        ensure!(
            w_in.len() == n_cell * n_in
                && w_rec.len() == n_cell * n_out
                && bias.is_none_or(|b| b.len() == n_cell),
            "gate operands {wi}/{ri}/{bi} do not fit {n_cell} cells"
        );
        Ok(Gate {
            w_in,
            w_rec,
            s_in: scale(wi)?,
            s_rec: scale(ri)?,
            sum_in: row_sums(w_in, n_in),
            sum_rec: row_sums(w_rec, n_out),
            bias,
        })
    };
    let (ig, fg, cg, og) = (
        gate(1, 5, 12)?,
        gate(2, 6, 13)?,
        gate(3, 7, 14)?,
        gate(4, 8, 15)?,
    );
    let state = |i: usize, n: usize| -> KResult<Vec<f32>> {
        match f32s(ins, i)? {
            Some(v) if v.len() == batch * n => Ok(v.to_vec()),
            _ => bad!(
                "hybrid LSTM: state {i} must be FLOAT32 with {} elements",
                batch * n
            ),
        }
    };
    let mut h = state(18, n_out)?;
    let mut c = state(19, n_cell)?;
    let asym = o.asymmetric_quantize_inputs;
    let sigmoid = A::SignBit;
    let mut out = vec![0f32; steps * batch * n_out];
    // LiteRT's kernel steps all batch rows at once when the input is time-major, and
    // each row through its whole sequence otherwise (`n_batch = 1`): the activations
    // apply over the step's rows together, which decides Eigen's packet/scalar split.
    let groups: Vec<(usize, usize)> = if o.time_major {
        vec![(0, batch)]
    } else {
        (0..batch).map(|b| (b, b + 1)).collect()
    };
    for &(b0, b1) in &groups {
        for t in 0..steps {
            let src = |b: usize| {
                if o.time_major {
                    t * batch + b
                } else {
                    b * steps + t
                }
            };
            let xq: Vec<QRow> = (b0..b1)
                .map(|b| QRow::new(&x[src(b) * n_in..(src(b) + 1) * n_in], asym))
                .collect();
            let hs = &mut h[b0 * n_out..b1 * n_out];
            let hq: Vec<QRow> = hs.chunks(n_out).map(|r| QRow::new(r, asym)).collect();
            let gi = ig.eval(&xq, &hq, n_cell, sigmoid);
            let gf = fg.eval(&xq, &hq, n_cell, sigmoid);
            let gg = cg.eval(&xq, &hq, n_cell, o.fused_activation_function);
            let cs = &mut c[b0 * n_cell..b1 * n_cell];
            for j in 0..cs.len() {
                let mut v = gf[j] * cs[j];
                v += gg[j] * gi[j];
                if o.cell_clip > 0.0 {
                    v = v.clamp(-o.cell_clip, o.cell_clip);
                }
                cs[j] = v;
            }
            let go = og.eval(&xq, &hq, n_cell, sigmoid);
            let mut tc = cs.to_vec();
            apply(o.fused_activation_function, &mut tc);
            for j in 0..hs.len() {
                hs[j] = go[j] * tc[j];
            }
            for (k, b) in (b0..b1).enumerate() {
                out[src(b) * n_out..(src(b) + 1) * n_out]
                    .copy_from_slice(&hs[k * n_out..(k + 1) * n_out]);
            }
        }
    }
    let shape = if o.time_major {
        vec![steps, batch, n_out]
    } else {
        vec![batch, steps, n_out]
    };
    let value = |shape: Vec<usize>, v: Vec<f32>| {
        Value::new(shape, Data::F32(v))
            .ok_or_else(|| super::KErr::Bad("hybrid LSTM: state shape does not fit".into()))
    };
    Ok(Outs {
        values: vec![value(shape, out)?],
        state: vec![
            (18, value(ins.get(18)?.shape.clone(), h)?),
            (19, value(ins.get(19)?.shape.clone(), c)?),
        ],
        trace: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's rounding of a row: half away from zero (negative ties down, which
    /// a "half up" rounding of `zp + x·inv` would not give); in blocks of 8 the ±0.5 is
    /// added in float32, so 0.49999997 + 0.5 rounds to 1.0 there, while the scalar tail
    /// (`std::round`) gives 0.
    #[test]
    fn rows_round_half_away_with_the_blocks_float_addition() {
        let just_below_half = f32::from_bits(0x3eff_ffff);
        let v = [
            -2.5,
            -1.5,
            -0.5,
            0.5,
            1.5,
            2.5,
            -just_below_half,
            just_below_half,
            just_below_half,
        ];
        assert_eq!(
            round_row(&v, 1.0, -128, 127, 0),
            [-3, -2, -1, 1, 2, 3, -1, 1, 0]
        );
        // The zero point is added after rounding, then the clamp.
        assert_eq!(round_row(&[-0.5, 127.5], 1.0, -128, 127, -128), [-128, 0]);
        assert_eq!(round_row(&[200.0], 1.0, -128, 127, 0), [127]);
    }

    /// The asymmetric range is subtracted in float32: with values whose difference
    /// rounds in float32 (-0.1430206, 0.8489594), the scale is that rounded range over
    /// 255, one ulp from the scale of the exact range.
    #[test]
    fn asymmetric_scale_uses_the_float_range() {
        let (lo, hi) = (f32::from_bits(3_188_880_382), f32::from_bits(1_062_819_175));
        let (_, scale, _) = quantize_row(&[lo, hi], true);
        assert_eq!(scale, ((hi - lo) as f64 / 255.0) as f32);
        assert_ne!(
            scale,
            ((hi as f64 - lo as f64) / 255.0) as f32,
            "pick other values"
        );
        let (q, _, zp) = quantize_row(&[0.0; 4], true);
        assert_eq!((q, zp), (vec![0; 4], 0));
    }
}
