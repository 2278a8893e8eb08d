//! UNIDIRECTIONAL_SEQUENCE_LSTM, full integer ("8x8_16"): int8 input, output and output
//! state, int8 per-tensor gate weights, int32 gate biases, int16 cell state with a
//! power-of-two scale; optionally CIFG (no input gate), int16 peephole weights, int16
//! layer-norm coefficients with the gate intermediates' scales, and an int8 projection
//! with an int32 bias. Bit-exact with LiteRT's integer kernel, following the arithmetic
//! of `lstm_eval.cc` (`LstmStepInteger8x8_16`) and the portable tensor utilities:
//!
//! * each gate: `acc = Σ w·x + (bias − zp_x·Σw)`, rescaled by the effective scale
//!   `s_x·s_w / s_gate` (fixed-point multiplier), saturated to int16, plus the same
//!   for the recurrent product with the output state, plus (peephole) `p·c` rescaled by
//!   `2^k·s_p / s_gate`. `s_gate` is `2^-12` (Q3.12) without layer norm; with layer
//!   norm it is the gate's intermediate scale, the bias is left out of the product, and
//!   `PortableApplyLayerNorm` normalises the row in integers (mean and variance in
//!   int64, `1/sqrt` by gemmlowp's Newton-Raphson) into Q3.12 with the int16
//!   coefficients and the int32 bias at `s_norm·2^-10`;
//! * then sigmoid (input, forget, output gates) or tanh (cell gate) in 16-bit fixed
//!   point (gemmlowp's `logistic` and `tanh` on Q3.12 → Q0.15); CIFG takes
//!   `32767 − f` as the input gate;
//! * cell: `c = f·c >> 15 + i·g >> (30 + k)` with rounding, saturated, clipped when the
//!   operator has a cell clip (`2^k` = the cell scale);
//! * hidden: `tanh(c)` with `15 + k` integer bits, times the output gate, rescaled by
//!   `2^-30 / s_hidden` and offset by the hidden zero point into int8 (intermediate 4's
//!   parameters); without projection that is the new output state and the step's
//!   output, with projection `Σ w_p·hidden + bias` rescaled by `s_p·s_hidden / s_out`
//!   plus the output zero point (and the raw clip `proj_clip / s_out`) is.
//!
//! With peepholes and a projection to fewer outputs than cells LiteRT passes the output
//! size as the peephole length (`VectorBatchVectorCwiseProductAccumulate(.., n_output,
//! ..)`), so only the first cells get their peephole: this kernel refuses that case and
//! tflquant keeps such an LSTM hybrid.
//! The fixed-point helpers below mirror gemmlowp's (`fixedpoint.h`) for int16 and
//! TFLite's `MultiplyByQuantizedMultiplier` / `QuantizeMultiplier` (double rounding).

use crate::fb::BuiltinOptions as O;
use crate::interp::value::{Data, Value};

use super::{Ctx, Ins, KResult, Outs, bad, ensure, unsupported};

// ---- 32-bit fixed point (TFLite) ------------------------------------------------

pub(crate) fn srdhm32(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

pub(crate) fn rdbp32(x: i32, e: i32) -> i32 {
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding, the default build).
pub(crate) fn mbqm(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    rdbp32(srdhm32(x.wrapping_mul(1 << left), m), right)
}

/// TFLite's `QuantizeMultiplier`: `m = q · 2^shift`, `q` in Q0.31 within [0.5, 1).
pub(crate) fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 || !m.is_finite() {
        return (0, 0);
    }
    // frexp: m = f · 2^e with f in [0.5, 1).
    let mut e = m.abs().log2().floor() as i32 + 1;
    let mut f = m / 2f64.powi(e);
    if f.abs() >= 1.0 {
        f /= 2.0;
        e += 1;
    } else if f.abs() < 0.5 {
        f *= 2.0;
        e -= 1;
    }
    let mut q = (f * (1i64 << 31) as f64).round() as i64;
    if q == 1i64 << 31 {
        q /= 2;
        e += 1;
    }
    if e < -31 {
        return (0, 0);
    }
    (q as i32, e)
}

// ---- 16-bit fixed point (gemmlowp) ----------------------------------------------

fn srdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    let ab = a as i32 * b as i32;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

fn rdbp16(x: i16, e: i32) -> i16 {
    rdbp32(x as i32, e) as i16
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT` on int16.
pub(crate) fn srmbpot16(x: i16, e: i32) -> i16 {
    if e > 0 {
        let threshold = (1i32 << (15 - e)) - 1;
        if x as i32 > threshold {
            i16::MAX
        } else if (x as i32) < -threshold {
            i16::MIN
        } else {
            ((x as i32) << e) as i16
        }
    } else if e < 0 {
        rdbp16(x, -e)
    } else {
        x
    }
}

/// An int32 gemmlowp constant rescaled to int16 raw.
fn rc(v: i32) -> i16 {
    rdbp32(v, 16) as i16
}

fn sat_add16(a: i16, b: i16) -> i16 {
    (a as i32 + b as i32).clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

fn rounding_half_sum16(a: i16, b: i16) -> i16 {
    let sum = a as i32 + b as i32;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i16
}

/// exp(a) for a in [-1/4, 0), Q0.15 in and out.
fn exp_quarter(a: i16) -> i16 {
    let constant_term = rc(1895147668);
    let one_third = rc(715827883);
    let x = a.wrapping_add(1 << 12);
    let x2 = srdhm16(x, x);
    let x3 = srdhm16(x2, x);
    let x4 = srdhm16(x2, x2);
    let x4_over_4 = srmbpot16(x4, -2);
    let t = srdhm16(x4_over_4.wrapping_add(x3), one_third).wrapping_add(x2);
    let poly = srmbpot16(t, -1);
    sat_add16(constant_term, srdhm16(constant_term, x.wrapping_add(poly)))
}

/// exp(a) for a ≤ 0 with `ib` integer bits; Q0.15 out.
fn exp_negative(a: i16, ib: i32) -> i16 {
    let fb = 15 - ib;
    let one_quarter: i16 = 1 << (fb - 2);
    let mask = one_quarter - 1;
    let amq = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_quarter(srmbpot16(amq, ib));
    let remainder = amq.wrapping_sub(a) as i32;
    for (exp, mult) in [
        (-2, 1672461947),
        (-1, 1302514674),
        (0, 790015084),
        (1, 290630308),
        (2, 39332535),
        (3, 720401),
        (4, 242),
    ] {
        if ib > exp && remainder & (1 << (fb + exp)) != 0 {
            result = srdhm16(result, rc(mult));
        }
    }
    if ib > 5 {
        let clamp = rc(-(1 << (36 - ib)));
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 { i16::MAX } else { result }
}

/// Newton-Raphson iterations shared by the two divisions (x ≈ 2 / (1 + a), Q2.13).
fn newton(a: i16) -> i16 {
    let half_den = rounding_half_sum16(a, i16::MAX);
    let mut x = rc(1515870810).wrapping_add(srdhm16(half_den, rc(-1010580540)));
    for _ in 0..3 {
        let hdx = srdhm16(half_den, x);
        let one_minus = (1i16 << 13).wrapping_sub(hdx);
        x = x.wrapping_add(srmbpot16(srdhm16(x, one_minus), 2));
    }
    x
}

/// Logistic of a value with `ib` integer bits, Q0.15 out.
pub(crate) fn logistic16(a: i16, ib: i32) -> i16 {
    if a == 0 {
        return rc(1 << 30);
    }
    let pos = a > 0;
    let abs = if pos { a } else { a.wrapping_neg() };
    let r = srmbpot16(newton(exp_negative(abs.wrapping_neg(), ib)), 1);
    if pos { r } else { i16::MAX.wrapping_sub(r) }
}

/// Tanh of a value with `ib` integer bits, Q0.15 out.
pub(crate) fn tanh16(a: i16, ib: i32) -> i16 {
    if a == 0 {
        return 0;
    }
    let neg = a < 0;
    let n = if neg { a } else { a.wrapping_neg() };
    let x = newton(exp_negative(n, ib + 1));
    let t = srmbpot16(x.wrapping_sub(1 << 13), 2);
    if neg { t.wrapping_neg() } else { t }
}

// ---- 32-bit helpers of the layer norm (TFLite's common.h, gemmlowp) --------------

/// gemmlowp's `SaturatingRoundingMultiplyByPOT` on int32 for a positive exponent.
fn srmbpot32(x: i32, e: i32) -> i32 {
    let threshold = (1i32 << (31 - e)) - 1;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x << e
    }
}

/// TFLite's `GetInvSqrtQuantizedMultiplierExp(input, reverse_shift = -1)`: the
/// multiplier and (left) shift of `1 / sqrt(input)` by five Newton-Raphson steps in
/// gemmlowp's Q3.28.
pub(crate) fn inv_sqrt_multiplier(input: i32) -> (i32, i32) {
    if input <= 1 {
        return (i32::MAX, 0);
    }
    let mut input = input;
    let mut shift = 11;
    while input >= 1 << 29 {
        input /= 4;
        shift += 1;
    }
    let max_left_shift_bits = (input as u32).leading_zeros() - 1;
    let left_shift_bit_pairs = max_left_shift_bits / 2 - 1;
    shift -= left_shift_bit_pairs as i32;
    input <<= 2 * left_shift_bit_pairs;
    let fixed_input = input >> 1;
    let half_input = rdbp32(fixed_input, 1);
    let half_three = (1i32 << 28) + (1 << 27);
    let mut x: i32 = 1 << 28;
    for _ in 0..5 {
        let x3 = srmbpot32(srdhm32(srdhm32(x, x), x), 6);
        x = srmbpot32(
            srdhm32(half_three, x).wrapping_sub(srdhm32(half_input, x3)),
            3,
        );
    }
    let mut mult = srdhm32(x, 1518500250);
    if shift < 0 {
        mult <<= -shift;
        shift = 0;
    }
    (mult, -shift)
}

/// One gate's layer normalisation: int16 coefficients, int32 bias at `s_norm · 2^-10`,
/// the coefficients' scale as a multiplier, and the variance guard.
struct Norm<'a> {
    w: &'a [i16],
    bias: &'a [i32],
    m: (i32, i32),
    guard: i32,
}

impl Norm<'_> {
    /// TFLite's `PortableApplyLayerNorm` on one batch row (int16 in, Q3.12 out).
    fn apply(&self, row: &mut [i16]) {
        let n = row.len() as i64;
        let (mut sum, mut sum_sq) = (0i64, 0i64);
        for &v in row.iter() {
            sum += v as i64;
            sum_sq += (v as i32 * v as i32) as i64;
        }
        let mean = (sum * 1024 / n) as i32;
        let temp = ((1i64 << 20) / n) as i32;
        let variance = sum_sq * temp as i64 - mean as i64 * mean as i64;
        let mut variance2 = (variance / (1i64 << 20)) as i32;
        if variance2 < 1 {
            variance2 = self.guard;
        }
        let (inv_a, inv_b) = inv_sqrt_multiplier(variance2);
        for (j, v) in row.iter_mut().enumerate() {
            let shifted = (1024 * *v as i32).wrapping_sub(mean);
            let rescaled = mbqm(shifted, inv_a, inv_b);
            let val3 = rescaled
                .wrapping_mul(self.w[j] as i32)
                .wrapping_add(self.bias[j]) as i64;
            let val4 = (if val3 > 0 { val3 + 512 } else { val3 - 512 } / 1024) as i32;
            let val5 = mbqm(val4, self.m.0, self.m.1 + 12);
            *v = val5.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
    }
}

// ---- the operator ---------------------------------------------------------------

fn i8s<'a>(ins: &Ins<'a>, i: usize) -> KResult<&'a [i8]> {
    match &ins.get(i)?.data {
        Data::I8(v) => Ok(v),
        d => unsupported!("integer LSTM: input {i} is {:?}, expected INT8", d.dtype()),
    }
}

fn i16s<'a>(ins: &Ins<'a>, i: usize) -> KResult<&'a [i16]> {
    match &ins.get(i)?.data {
        Data::I16(v) => Ok(v),
        d => unsupported!("integer LSTM: input {i} is {:?}, expected INT16", d.dtype()),
    }
}

fn i32s<'a>(ins: &Ins<'a>, i: usize) -> KResult<&'a [i32]> {
    match &ins.get(i)?.data {
        Data::I32(v) => Ok(v),
        d => unsupported!("integer LSTM: input {i} is {:?}, expected INT32", d.dtype()),
    }
}

/// One gate's integer weights, folded biases, rescaling multipliers, and the optional
/// peephole (int16 weights and multiplier) and layer norm.
struct Gate<'a> {
    w_in: &'a [i8],
    w_rec: &'a [i8],
    bias_in: Vec<i32>,
    bias_rec: Vec<i32>,
    m_in: (i32, i32),
    m_rec: (i32, i32),
    peep: Option<(&'a [i16], (i32, i32))>,
    norm: Option<Norm<'a>>,
}

impl Gate<'_> {
    /// Pre-activation in Q3.12 (saturated int16) for one batch row: the input product,
    /// the recurrent product and the peephole product, each rescaled and added with
    /// saturation, then the layer norm.
    fn pre(&self, x: &[i8], h: &[i8], c: &[i16], out: &mut [i16]) {
        let (n_in, n_out) = (x.len(), h.len());
        let sat = |v: i32| v.clamp(i16::MIN as i32, i16::MAX as i32);
        for (row, o) in out.iter_mut().enumerate() {
            let mut acc = self.bias_in[row];
            for (w, &v) in self.w_in[row * n_in..(row + 1) * n_in].iter().zip(x) {
                acc = acc.wrapping_add(*w as i32 * v as i32);
            }
            let v = sat(mbqm(acc, self.m_in.0, self.m_in.1));
            let mut acc = self.bias_rec[row];
            for (w, &v) in self.w_rec[row * n_out..(row + 1) * n_out].iter().zip(h) {
                acc = acc.wrapping_add(*w as i32 * v as i32);
            }
            let mut v = sat(mbqm(acc, self.m_rec.0, self.m_rec.1) + v);
            if let Some((p, m)) = self.peep {
                v = sat(mbqm(p[row] as i32 * c[row] as i32, m.0, m.1) + v);
            }
            *o = v as i16;
        }
        if let Some(norm) = &self.norm {
            norm.apply(out);
        }
    }
}

fn scale_of(ctx: &Ctx, i: usize) -> KResult<(f32, i32)> {
    match ctx.in_quant.get(i).copied().flatten() {
        Some(q) if !q.scale.is_empty() => Ok((
            q.scale[0],
            q.zero_point.first().copied().unwrap_or(0) as i32,
        )),
        _ => bad!("integer LSTM: input {i} has no quantization parameters"),
    }
}

/// Operand positions of one gate: input and recurrent weights, peephole, bias, layer
/// norm coefficients, and the gate's intermediate.
struct GatePos {
    w_in: usize,
    w_rec: usize,
    peep: Option<usize>,
    bias: usize,
    norm: usize,
    inter: usize,
}

const INPUT_GATE: GatePos = GatePos {
    w_in: 1,
    w_rec: 5,
    peep: Some(9),
    bias: 12,
    norm: 20,
    inter: 0,
};
const FORGET_GATE: GatePos = GatePos {
    w_in: 2,
    w_rec: 6,
    peep: Some(10),
    bias: 13,
    norm: 21,
    inter: 1,
};
const CELL_GATE: GatePos = GatePos {
    w_in: 3,
    w_rec: 7,
    peep: None,
    bias: 14,
    norm: 22,
    inter: 2,
};
const OUTPUT_GATE: GatePos = GatePos {
    w_in: 4,
    w_rec: 8,
    peep: Some(11),
    bias: 15,
    norm: 23,
    inter: 3,
};

/// The sizes and scales every gate needs.
struct Dims {
    n_in: usize,
    n_cell: usize,
    n_out: usize,
    s_x: f32,
    zp_x: i32,
    s_h: f32,
    zp_h: i32,
    k: i32,
    layer_norm: bool,
}

fn make_gate<'a>(ctx: &Ctx, ins: &Ins<'a>, d: &Dims, p: &GatePos) -> KResult<Gate<'a>> {
    let (n_in, n_cell, n_out) = (d.n_in, d.n_cell, d.n_out);
    let w_in = i8s(ins, p.w_in)?;
    let w_rec = i8s(ins, p.w_rec)?;
    ensure!(
        w_in.len() == n_cell * n_in && w_rec.len() == n_cell * n_out,
        "gate weights {}/{} do not fit {n_cell} cells",
        p.w_in,
        p.w_rec
    );
    // Gate scale: the intermediate's with layer norm, else Q3.12.
    let gate_scale = if d.layer_norm {
        match ctx.inter_quant.get(p.inter).copied().flatten() {
            Some(q) if !q.scale.is_empty() => q.scale[0],
            _ => bad!(
                "layer-norm integer LSTM: intermediate {} has no quantization parameters",
                p.inter
            ),
        }
    } else {
        2f32.powi(-12)
    };
    let row_sums = |w: &[i8], n: usize| -> Vec<i32> {
        (0..n_cell)
            .map(|r| w[r * n..(r + 1) * n].iter().map(|&v| v as i32).sum())
            .collect()
    };
    // With layer norm the bias belongs to the normalisation, not to the product.
    let bias = if d.layer_norm {
        None
    } else {
        let b = i32s(ins, p.bias)?;
        ensure!(
            b.len() == n_cell,
            "gate bias {} has {} elements",
            p.bias,
            b.len()
        );
        Some(b)
    };
    let bias_in = row_sums(w_in, n_in)
        .iter()
        .enumerate()
        .map(|(r, &s)| {
            bias.map_or(0, |b| b[r])
                .wrapping_add(s.wrapping_mul(-d.zp_x))
        })
        .collect();
    let bias_rec = row_sums(w_rec, n_out)
        .iter()
        .map(|&s| s.wrapping_mul(-d.zp_h))
        .collect();
    let (sw_in, _) = scale_of(ctx, p.w_in)?;
    let (sw_rec, _) = scale_of(ctx, p.w_rec)?;
    let peep = match p.peep.filter(|&i| ins.opt(i).is_some()) {
        Some(i) => {
            let w = i16s(ins, i)?;
            ensure!(w.len() == n_cell, "peephole {i} has {} elements", w.len());
            let (s, _) = scale_of(ctx, i)?;
            // The kernel computes 2^k in double, the product in double, stores float.
            let e = (2f64.powi(d.k) * s as f64 / gate_scale as f64) as f32;
            Some((w, quantize_multiplier(e as f64)))
        }
        None => None,
    };
    let norm = if d.layer_norm {
        let w = i16s(ins, p.norm)?;
        let bias = i32s(ins, p.bias)?;
        ensure!(
            w.len() == n_cell && bias.len() == n_cell,
            "layer norm {}/{} do not fit {n_cell} cells",
            p.norm,
            p.bias
        );
        let (s, _) = scale_of(ctx, p.norm)?;
        Some(Norm {
            w,
            bias,
            m: quantize_multiplier(s as f64),
            guard: ((10000.0 * s) as i32).max(1),
        })
    } else {
        None
    };
    // The kernel computes the effective scales in float32, in this order.
    Ok(Gate {
        w_in,
        w_rec,
        bias_in,
        bias_rec,
        m_in: quantize_multiplier((sw_in * d.s_x / gate_scale) as f64),
        m_rec: quantize_multiplier((sw_rec * d.s_h / gate_scale) as f64),
        peep,
        norm,
    })
}

/// The projection: int8 weights `[n_out, n_cell]`, the folded bias, the multiplier
/// `s_w · s_hidden / s_out`, and the clip in output steps (0: none).
struct Projection<'a> {
    w: &'a [i8],
    bias: Vec<i32>,
    m: (i32, i32),
    clip: i32,
}

pub(crate) fn unidirectional_sequence_lstm_int8(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::UnidirectionalSequenceLstmOptions(o)) = ctx.opts() else {
        bad!("missing UnidirectionalSequenceLSTMOptions");
    };
    let x = i8s(ins, 0)?;
    let (steps, batch, n_in, n_cell, n_out) = lstm_dims(ins, o.time_major)?;
    let cifg = ins.opt(1).is_none();
    let layer_norm = ins.opt(21).is_some();
    let projection = ins.opt(16).is_some();
    let peephole = ins.opt(11).is_some();
    if peephole && n_out != n_cell {
        unsupported!(
            "integer LSTM with peepholes and a projection to {n_out} of {n_cell} cells \
             (LiteRT's kernel applies the peepholes to the first {n_out} cells only)"
        );
    }
    let (s_x, zp_x) = scale_of(ctx, 0)?;
    let (s_h, zp_h) = scale_of(ctx, 18)?;
    let (s_c, _) = scale_of(ctx, 19)?;
    let k = s_c.log2().round() as i32;
    ensure!(
        2f32.powi(k) == s_c && (-15..=-9).contains(&k),
        "cell state scale {s_c} is not a power of two 2^k with -15 <= k <= -9"
    );
    let out_q = match ctx.out_quant.first().copied().flatten() {
        Some(q) if !q.scale.is_empty() => q,
        _ => bad!("integer LSTM: the output has no quantization parameters"),
    };
    // The hidden value's parameters: intermediate 4 (tflquant writes the output's
    // without projection; TF's converter may not), the output's when the operator has
    // no intermediates.
    let hidden_q = match ctx.inter_quant.get(4).copied().flatten() {
        Some(q) if !q.scale.is_empty() => q,
        _ if projection => bad!("integer LSTM with projection: intermediate 4 has no parameters"),
        _ => out_q,
    };
    let (s_y, zp_y) = (
        hidden_q.scale[0],
        hidden_q.zero_point.first().copied().unwrap_or(0) as i32,
    );
    let d = Dims {
        n_in,
        n_cell,
        n_out,
        s_x,
        zp_x,
        s_h,
        zp_h,
        k,
        layer_norm,
    };
    let ig = if cifg {
        None
    } else {
        Some(make_gate(ctx, ins, &d, &INPUT_GATE)?)
    };
    let fg = make_gate(ctx, ins, &d, &FORGET_GATE)?;
    let cg = make_gate(ctx, ins, &d, &CELL_GATE)?;
    let og = make_gate(ctx, ins, &d, &OUTPUT_GATE)?;
    let hidden_m =
        quantize_multiplier((2f64.powi(-15) / s_y as f64 * 2f64.powi(-15)) as f32 as f64);
    let proj = if projection {
        let w = i8s(ins, 16)?;
        ensure!(w.len() == n_out * n_cell, "projection weights do not fit");
        let (s_w, _) = scale_of(ctx, 16)?;
        let bias = match ins.opt(17) {
            Some(_) => i32s(ins, 17)?.to_vec(),
            None => vec![0; n_out],
        };
        ensure!(
            bias.len() == n_out,
            "projection bias has {} elements",
            bias.len()
        );
        // Runtime: PrecomputeZeroPointTimesWeightWithBias(hidden_zp, ...) adds
        // +zp·Σw (tflquant writes the hidden value with zero point 0).
        let bias = (0..n_out)
            .map(|r| {
                let s: i32 = w[r * n_cell..(r + 1) * n_cell]
                    .iter()
                    .map(|&v| v as i32)
                    .sum();
                bias[r].wrapping_add(s.wrapping_mul(zp_y))
            })
            .collect();
        let clip = if o.proj_clip > 0.0 {
            (o.proj_clip / out_q.scale[0]).clamp(-128.0, 127.0) as i8 as i32
        } else {
            0
        };
        Some(Projection {
            w,
            bias,
            m: quantize_multiplier((s_w * s_y / s_h) as f64),
            clip,
        })
    } else {
        None
    };
    let cell_clip = if o.cell_clip > 0.0 {
        (o.cell_clip / s_c).clamp(-32768.0, 32767.0) as i16
    } else {
        0
    };
    let mut h = match &ins.get(18)?.data {
        Data::I8(v) if v.len() == batch * n_out => v.clone(),
        _ => bad!(
            "integer LSTM: output state must be INT8 with {} elements",
            batch * n_out
        ),
    };
    let mut c = match &ins.get(19)?.data {
        Data::I16(v) if v.len() == batch * n_cell => v.clone(),
        _ => bad!(
            "integer LSTM: cell state must be INT16 with {} elements",
            batch * n_cell
        ),
    };
    let mut out = vec![0i8; steps * batch * n_out];
    let (mut gi, mut gf, mut gg, mut go) = (
        vec![0i16; n_cell],
        vec![0i16; n_cell],
        vec![0i16; n_cell],
        vec![0i16; n_cell],
    );
    let mut hidden = vec![0i8; n_cell];
    for t in 0..steps {
        for b in 0..batch {
            let src = if o.time_major {
                t * batch + b
            } else {
                b * steps + t
            };
            let xt = &x[src * n_in..(src + 1) * n_in];
            let hb = &mut h[b * n_out..(b + 1) * n_out];
            let cb = &mut c[b * n_cell..(b + 1) * n_cell];
            fg.pre(xt, hb, cb, &mut gf);
            gf.iter_mut().for_each(|v| *v = logistic16(*v, 3));
            cg.pre(xt, hb, cb, &mut gg);
            gg.iter_mut().for_each(|v| *v = tanh16(*v, 3));
            if let Some(ig) = &ig {
                ig.pre(xt, hb, cb, &mut gi);
                gi.iter_mut().for_each(|v| *v = logistic16(*v, 3));
            } else {
                // CIFG: the input gate is 1 - forget (Sub1Vector: 32767 - f).
                for (i, &f) in gi.iter_mut().zip(&gf) {
                    *i = i16::MAX - f;
                }
            }
            for j in 0..n_cell {
                let kept = rdbp32(gf[j] as i32 * cb[j] as i32, 15);
                let added = rdbp32(gi[j] as i32 * gg[j] as i32, 30 + k);
                let mut v = sat_add16(kept as i16, added as i16);
                if cell_clip > 0 {
                    v = v.clamp(-cell_clip, cell_clip);
                }
                cb[j] = v;
            }
            og.pre(xt, hb, cb, &mut go);
            go.iter_mut().for_each(|v| *v = logistic16(*v, 3));
            for j in 0..n_cell {
                let tc = tanh16(cb[j], 15 + k);
                let v = mbqm(go[j] as i32 * tc as i32, hidden_m.0, hidden_m.1) + zp_y;
                hidden[j] = v.clamp(-128, 127) as i8;
            }
            match &proj {
                Some(p) => {
                    for (r, hv) in hb.iter_mut().enumerate() {
                        let mut acc = p.bias[r];
                        for (w, &v) in p.w[r * n_cell..(r + 1) * n_cell].iter().zip(&hidden) {
                            acc = acc.wrapping_add(*w as i32 * v as i32);
                        }
                        let mut v = (mbqm(acc, p.m.0, p.m.1) + zp_h).clamp(-128, 127);
                        if p.clip > 0 {
                            v = v.clamp(-p.clip, p.clip);
                        }
                        *hv = v as i8;
                    }
                }
                None => hb.copy_from_slice(&hidden),
            }
            out[src * n_out..(src + 1) * n_out].copy_from_slice(hb);
        }
    }
    let shape = if o.time_major {
        vec![steps, batch, n_out]
    } else {
        vec![batch, steps, n_out]
    };
    let hs = ins.get(18)?.shape.clone();
    let cs = ins.get(19)?.shape.clone();
    let value = |shape: Vec<usize>, data: Data| {
        Value::new(shape, data).ok_or_else(|| {
            super::KErr::Bad("integer LSTM: state shape does not fit its data".into())
        })
    };
    Ok(Outs {
        values: vec![value(shape, Data::I8(out))?],
        state: vec![
            (18, value(hs, Data::I8(h))?),
            (19, value(cs, Data::I16(c))?),
        ],
        trace: Vec::new(),
    })
}

/// Steps, batch, input, cell and output sizes of an LSTM: a 3-D input, input-to-forget
/// weights `[cell, input]`, recurrent-to-forget weights `[cell, output]`; without a
/// projection the output size must be the cell size.
fn lstm_dims(ins: &Ins, time_major: bool) -> KResult<(usize, usize, usize, usize, usize)> {
    let xv = ins.get(0)?;
    let &[d0, d1, n_in] = xv.shape.as_slice() else {
        bad!("input must be 3-D, got {:?}", xv.shape);
    };
    let (steps, batch) = if time_major { (d0, d1) } else { (d1, d0) };
    let fw = ins.get(2)?;
    ensure!(
        fw.shape.len() == 2 && fw.shape[1] == n_in,
        "input-to-forget weights {:?} do not fit input size {n_in}",
        fw.shape
    );
    let n_cell = fw.shape[0];
    let rw = ins.get(6)?;
    ensure!(
        rw.shape.len() == 2 && rw.shape[0] == n_cell,
        "recurrent-to-forget weights {:?} do not fit {n_cell} cells",
        rw.shape
    );
    let n_out = rw.shape[1];
    ensure!(
        n_out == n_cell || ins.opt(16).is_some(),
        "output size {n_out} differs from cell size {n_cell} without projection"
    );
    Ok((steps, batch, n_in, n_cell, n_out))
}
/// Steps, batch, input size and cell size of a plain LSTM (no projection): a 3-D input,
/// input-to-forget weights `[cell, input]`, recurrent-to-forget weights whose second
/// dimension (the output size) is the cell size. The hybrid kernel's (it runs the plain
/// variant only).
pub(crate) fn plain_dims(ins: &Ins, time_major: bool) -> KResult<(usize, usize, usize, usize)> {
    let (steps, batch, n_in, n_cell, n_out) = lstm_dims(ins, time_major)?;
    ensure!(
        n_out == n_cell,
        "output size {n_out} differs from cell size {n_cell} without projection"
    );
    Ok((steps, batch, n_in, n_cell))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_logistic_and_tanh_follow_the_float_functions() {
        // Reference twin: the float functions, within a few Q0.15 steps.
        for raw in (-32768i32..=32767).step_by(97) {
            let a = raw as i16;
            let x = raw as f64 / 4096.0; // Q3.12
            let s = logistic16(a, 3) as f64 / 32768.0;
            let t = tanh16(a, 3) as f64 / 32768.0;
            assert!(
                (s - 1.0 / (1.0 + (-x).exp())).abs() < 4e-4,
                "logistic({x}) = {s}"
            );
            assert!((t - x.tanh()).abs() < 4e-4, "tanh({x}) = {t}");
        }
        for ib in 0..=6 {
            for raw in (-32768i32..=32767).step_by(211) {
                let x = raw as f64 / 2f64.powi(15 - ib);
                let t = tanh16(raw as i16, ib) as f64 / 32768.0;
                assert!((t - x.tanh()).abs() < 4e-4, "tanh_{ib}({x}) = {t}");
            }
        }
    }

    #[test]
    fn inverse_square_root_follows_the_float_function() {
        // Reference twin: 1/sqrt(v) in float, within 1e-5 relative (five Newton steps
        // in Q3.28, then a Q0.31 product).
        assert_eq!(inv_sqrt_multiplier(1), (i32::MAX, 0));
        for v in [2i32, 3, 17, 1000, 65_535, 1 << 20, 123_456_789, i32::MAX] {
            let (m, shift) = inv_sqrt_multiplier(v);
            let got = m as f64 * 2f64.powi(shift - 31);
            let want = 1.0 / (v as f64).sqrt();
            assert!(
                (got / want - 1.0).abs() < 1e-5,
                "1/sqrt({v}): {got} vs {want}"
            );
        }
    }

    #[test]
    fn integer_layer_norm_follows_the_float_normalisation() {
        // Reference twin: (x - mean) / std * w + b in float, for a row of 32 int16
        // values. The kernel normalises to 10 fractional bits (`1024·(x − mean)/std`,
        // rounded), so the result is within one 2^-10 step times the coefficient
        // (≤ 1.2) plus one more step (the mean's truncation, the Q3.12 rounding).
        let row: Vec<i16> = (0..32).map(|i| ((i * 37 % 29) as i16 - 14) * 300).collect();
        let w_real: Vec<f32> = (0..32).map(|i| 0.8 + 0.4 * (i as f32 / 31.0)).collect();
        let b_real: Vec<f32> = (0..32).map(|i| -0.5 + i as f32 / 31.0).collect();
        let s_w = 1.2f32 / 32767.0;
        let w: Vec<i16> = w_real.iter().map(|v| (v / s_w).round() as i16).collect();
        let s_b = s_w * 2f32.powi(-10);
        let bias: Vec<i32> = b_real.iter().map(|v| (v / s_b).round() as i32).collect();
        let norm = Norm {
            w: &w,
            bias: &bias,
            m: quantize_multiplier(s_w as f64),
            guard: 1,
        };
        let mut out = row.clone();
        norm.apply(&mut out);
        let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let mean = x.iter().sum::<f64>() / 32.0;
        let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 32.0).sqrt();
        for j in 0..32 {
            let want = (x[j] - mean) / sd * w_real[j] as f64 + b_real[j] as f64;
            let got = out[j] as f64 / 4096.0;
            assert!((got - want).abs() <= 2.2 / 1024.0, "{j}: {got} vs {want}");
        }
    }

    #[test]
    fn quantize_multiplier_decomposes_like_tflite() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        let (m, s) = quantize_multiplier(0.3);
        assert!(((m as f64) * 2f64.powi(s - 31) - 0.3).abs() < 1e-9);
        assert_eq!(mbqm(1000, 1 << 30, 0), 500);
        assert_eq!(mbqm(-1000, 1 << 30, 0), -500);
    }
}
