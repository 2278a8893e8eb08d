//! Plain recurrent operators: RNN, UNIDIRECTIONAL_SEQUENCE_RNN,
//! BIDIRECTIONAL_SEQUENCE_RNN (float; a hybrid op's int8 weights arrive dequantized) and
//! SVDF, in float and — with an int8 input — LiteRT's full-integer kernel, bit-exact.
//!
//! Semantics from LiteRT's kernels (`basic_rnn.cc`, `unidirectional_sequence_rnn.cc`,
//! `bidirectional_sequence_rnn.cc`, `svdf.cc` and `internal/reference/svdf.h`):
//! * RNN step: `h = act(W·x + R·h + b)`; the new `h` is the output and the new value of
//!   the hidden-state variable (input 4). The sequence ops run it over the time axis
//!   (`time_major` or batch-major); the bidirectional one runs a second set of weights
//!   over the reversed sequence and writes its outputs at their original time positions
//!   (merged on the last axis with `merge_outputs`).
//! * SVDF step (rank `r`, `F = units·r` filters, memory `M`): the state
//!   `[batch, F·M]` shifts left by one, the newest column becomes `W_feature·x`, each
//!   filter's time dot product `Σ_m W_time[f, m]·state[f, m]`, each unit sums its `r`
//!   filters, adds the bias and applies the activation.
//! * Integer SVDF (`EvalIntegerSVDF`): int8 input, int8 `W_feature`, int16 `W_time` and
//!   state (zero point 0), int32 bias; the feature product (input zero point removed)
//!   is rescaled by `s_x·s_wf / s_state` into the int16 state (saturated), the time
//!   products are summed in int32, the bias added after the reduction, the sum rescaled
//!   by `s_state·s_wt / s_y`, offset by the output zero point and saturated to int8. The
//!   kernel applies no activation itself (it requires RELU and relies on the output's
//!   parameters: a zero point of -128 makes the saturation a ReLU).

use crate::fb::{ActivationFunctionType as A, BuiltinOptions as O};
use crate::interp::value::{Data, Value};

use super::gemm::{Mat, sgemm};
use super::lstm::activate;
use super::lstm_int::{mbqm, quantize_multiplier};
use super::{Ctx, Ins, KErr, KResult, Outs, bad, ensure, unsupported};

/// `out[b, :] = a[b, :] · Wᵀ` with `W` `[n, k]` row-major, accumulated into `out`.
fn matmul_acc(batch: usize, k: usize, n: usize, a: &[f32], w: &[f32], out: &mut [f32]) {
    let mut tmp = vec![0f32; batch * n];
    sgemm(
        batch,
        k,
        n,
        Mat {
            data: a,
            rs: k,
            cs: 1,
        },
        Mat {
            data: w,
            rs: 1,
            cs: k,
        },
        &mut tmp,
    );
    out.iter_mut().zip(tmp).for_each(|(o, t)| *o += t);
}

/// One RNN cell's operands: weights `[units, n_in]`, recurrent weights `[units,
/// units]`, bias `[units]`.
struct Cell<'a> {
    w: &'a [f32],
    r: &'a [f32],
    b: &'a [f32],
    n_in: usize,
    units: usize,
}

impl<'a> Cell<'a> {
    fn new(ins: &Ins<'a>, w: usize, r: usize, b: usize, n_in: usize) -> KResult<Self> {
        let wv = ins.get(w)?;
        ensure!(
            wv.shape.len() == 2 && wv.shape[1] == n_in,
            "weights (input {w}) {:?} do not fit input size {n_in}",
            wv.shape
        );
        let units = wv.shape[0];
        let cell = Cell {
            w: ins.f32(w)?,
            r: ins.f32(r)?,
            b: ins.f32(b)?,
            n_in,
            units,
        };
        ensure!(
            cell.r.len() == units * units,
            "recurrent weights (input {r}) have {} elements, expected {units}x{units}",
            cell.r.len()
        );
        ensure!(
            cell.b.len() == units,
            "bias (input {b}) has {} elements, expected {units}",
            cell.b.len()
        );
        Ok(cell)
    }

    /// One step for every batch row: `h ← act(W·x + R·h + b)`.
    fn step(&self, x: &[f32], h: &mut Vec<f32>, batch: usize, act: A) -> KResult<()> {
        let mut acc: Vec<f32> = (0..batch).flat_map(|_| self.b.iter().copied()).collect();
        matmul_acc(batch, self.n_in, self.units, x, self.w, &mut acc);
        matmul_acc(batch, self.units, self.units, h, self.r, &mut acc);
        activate(act, &mut acc)?;
        *h = acc;
        Ok(())
    }

    /// Runs the cell over a sequence `[steps, batch, n_in]` (time-major, gathered),
    /// forwards or backwards; returns the outputs `[steps, batch, units]` and the final
    /// hidden state.
    fn run(
        &self,
        seq: &[Vec<f32>],
        mut h: Vec<f32>,
        batch: usize,
        act: A,
        reverse: bool,
    ) -> KResult<(Vec<Vec<f32>>, Vec<f32>)> {
        ensure!(
            h.len() == batch * self.units,
            "hidden state has {} elements, expected {batch}x{}",
            h.len(),
            self.units
        );
        let mut outs = vec![Vec::new(); seq.len()];
        let order: Vec<usize> = if reverse {
            (0..seq.len()).rev().collect()
        } else {
            (0..seq.len()).collect()
        };
        for t in order {
            self.step(&seq[t], &mut h, batch, act)?;
            outs[t] = h.clone();
        }
        Ok((outs, h))
    }
}

/// A 3-D sequence split into time steps of `[batch, n]` rows.
fn split_steps(v: &Value, x: &[f32], time_major: bool) -> KResult<(Vec<Vec<f32>>, usize, usize)> {
    let &[d0, d1, n] = v.shape.as_slice() else {
        bad!("input must be 3-D, got {:?}", v.shape);
    };
    let (steps, batch) = if time_major { (d0, d1) } else { (d1, d0) };
    let mut seq = vec![vec![0f32; batch * n]; steps];
    for (t, row) in seq.iter_mut().enumerate() {
        for b in 0..batch {
            let src = if time_major {
                t * batch + b
            } else {
                b * steps + t
            };
            row[b * n..(b + 1) * n].copy_from_slice(&x[src * n..(src + 1) * n]);
        }
    }
    Ok((seq, batch, n))
}

/// Joins time steps of `[batch, n]` rows into the 3-D layout.
fn join_steps(steps: &[Vec<f32>], batch: usize, n: usize, time_major: bool) -> Value {
    let t_len = steps.len();
    let mut out = vec![0f32; t_len * batch * n];
    for (t, row) in steps.iter().enumerate() {
        for b in 0..batch {
            let dst = if time_major {
                t * batch + b
            } else {
                b * t_len + t
            };
            out[dst * n..(dst + 1) * n].copy_from_slice(&row[b * n..(b + 1) * n]);
        }
    }
    let shape = if time_major {
        vec![t_len, batch, n]
    } else {
        vec![batch, t_len, n]
    };
    Value::f32(shape, out)
}

/// RNN: one step, `[batch, n_in]` in, `[batch, units]` out; input 4 is the hidden state.
pub(crate) fn rnn(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::RnnOptions(o)) = ctx.opts() else {
        bad!("missing RNNOptions");
    };
    let xv = ins.get(0)?;
    let &[batch, n_in] = xv.shape.as_slice() else {
        bad!("input must be 2-D, got {:?}", xv.shape);
    };
    let cell = Cell::new(ins, 1, 2, 3, n_in)?;
    let hv = ins.get(4)?;
    let mut h = ins.f32(4)?.to_vec();
    ensure!(
        h.len() == batch * cell.units,
        "hidden state has {} elements, expected {batch}x{}",
        h.len(),
        cell.units
    );
    cell.step(ins.f32(0)?, &mut h, batch, o.fused_activation_function)?;
    let out = Value::f32(vec![batch, cell.units], h.clone());
    Ok(Outs {
        values: vec![out],
        state: vec![(4, Value::f32(hv.shape.clone(), h))],
        trace: Vec::new(),
    })
}

/// UNIDIRECTIONAL_SEQUENCE_RNN: input 4 is the hidden state.
pub(crate) fn sequence_rnn(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::SequenceRnnOptions(o)) = ctx.opts() else {
        bad!("missing SequenceRNNOptions");
    };
    let (seq, batch, n_in) = split_steps(ins.get(0)?, ins.f32(0)?, o.time_major)?;
    let cell = Cell::new(ins, 1, 2, 3, n_in)?;
    let hv = ins.get(4)?;
    let (outs, h) = cell.run(
        &seq,
        ins.f32(4)?.to_vec(),
        batch,
        o.fused_activation_function,
        false,
    )?;
    Ok(Outs {
        values: vec![join_steps(&outs, batch, cell.units, o.time_major)],
        state: vec![(4, Value::f32(hv.shape.clone(), h))],
        trace: Vec::new(),
    })
}

/// BIDIRECTIONAL_SEQUENCE_RNN: forward cell (inputs 1-4), backward cell (5-8) over the
/// reversed sequence; the auxiliary input (9-11) is not supported.
pub(crate) fn bidirectional_sequence_rnn(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::BidirectionalSequenceRnnOptions(o)) = ctx.opts() else {
        bad!("missing BidirectionalSequenceRNNOptions");
    };
    if (9..12).any(|i| ins.opt(i).is_some()) {
        unsupported!("auxiliary input");
    }
    let act = o.fused_activation_function;
    let (seq, batch, n_in) = split_steps(ins.get(0)?, ins.f32(0)?, o.time_major)?;
    let fw = Cell::new(ins, 1, 2, 3, n_in)?;
    let bw = Cell::new(ins, 5, 6, 7, n_in)?;
    let (fw_out, fw_h) = fw.run(&seq, ins.f32(4)?.to_vec(), batch, act, false)?;
    let (bw_out, bw_h) = bw.run(&seq, ins.f32(8)?.to_vec(), batch, act, true)?;
    let state = vec![
        (4, Value::f32(ins.get(4)?.shape.clone(), fw_h)),
        (8, Value::f32(ins.get(8)?.shape.clone(), bw_h)),
    ];
    let values = merge_directions(
        &fw_out,
        fw.units,
        &bw_out,
        bw.units,
        batch,
        o.time_major,
        o.merge_outputs,
    );
    Ok(Outs {
        values,
        state,
        trace: Vec::new(),
    })
}

/// The outputs of a bidirectional op: both directions, or one merged on the last axis.
pub(crate) fn merge_directions(
    fw: &[Vec<f32>],
    n_fw: usize,
    bw: &[Vec<f32>],
    n_bw: usize,
    batch: usize,
    time_major: bool,
    merge: bool,
) -> Vec<Value> {
    if !merge {
        return vec![
            join_steps(fw, batch, n_fw, time_major),
            join_steps(bw, batch, n_bw, time_major),
        ];
    }
    let merged: Vec<Vec<f32>> = fw
        .iter()
        .zip(bw)
        .map(|(f, b)| {
            (0..batch)
                .flat_map(|r| {
                    f[r * n_fw..(r + 1) * n_fw]
                        .iter()
                        .chain(&b[r * n_bw..(r + 1) * n_bw])
                        .copied()
                })
                .collect()
        })
        .collect();
    vec![join_steps(&merged, batch, n_fw + n_bw, time_major)]
}

/// Shapes of an SVDF: batch, input size, filters, units, memory.
struct SvdfShape {
    batch: usize,
    n_in: usize,
    filters: usize,
    units: usize,
    memory: usize,
    rank: usize,
}

fn svdf_shape(ctx: &Ctx, ins: &Ins) -> KResult<(SvdfShape, A)> {
    let Some(O::SvdfOptions(o)) = ctx.opts() else {
        bad!("missing SVDFOptions");
    };
    let xv = ins.get(0)?;
    let &[batch, n_in] = xv.shape.as_slice() else {
        bad!("input must be 2-D, got {:?}", xv.shape);
    };
    let wf = ins.get(1)?;
    let wt = ins.get(2)?;
    ensure!(
        wf.shape.len() == 2 && wf.shape[1] == n_in,
        "feature weights {:?} do not fit input size {n_in}",
        wf.shape
    );
    let filters = wf.shape[0];
    let rank = usize::try_from(o.rank).unwrap_or(0);
    ensure!(
        rank > 0 && filters % rank == 0,
        "rank {} does not divide the {filters} filters",
        o.rank
    );
    ensure!(
        wt.shape.len() == 2 && wt.shape[0] == filters && wt.shape[1] > 0,
        "time weights {:?} do not fit {filters} filters",
        wt.shape
    );
    let memory = wt.shape[1];
    let units = filters / rank;
    if let Some(b) = ins.opt(3) {
        ensure!(
            b.len() == units,
            "bias has {} elements, expected {units}",
            b.len()
        );
    }
    let st = ins.get(4)?;
    ensure!(
        st.len() == batch * filters * memory,
        "state has {} elements, expected {batch}x{}",
        st.len(),
        filters * memory
    );
    Ok((
        SvdfShape {
            batch,
            n_in,
            filters,
            units,
            memory,
            rank,
        },
        o.fused_activation_function,
    ))
}

/// SVDF in float (also the hybrid op, whose int8 weights arrive dequantized).
pub(crate) fn svdf(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let (s, act) = svdf_shape(ctx, ins)?;
    let (x, wf, wt) = (ins.f32(0)?, ins.f32(1)?, ins.f32(2)?);
    let mut state = ins.f32(4)?.to_vec();
    // Shift every filter's memory left by one (an empty state has nothing to shift).
    if !state.is_empty() {
        state.copy_within(1.., 0);
    }
    let mut feat = vec![0f32; s.batch * s.filters];
    matmul_acc(s.batch, s.n_in, s.filters, x, wf, &mut feat);
    for (i, &f) in feat.iter().enumerate() {
        state[i * s.memory + s.memory - 1] = f;
    }
    let mut out = vec![0f32; s.batch * s.units];
    for b in 0..s.batch {
        for u in 0..s.units {
            let mut acc = 0f32;
            for r in 0..s.rank {
                let f = u * s.rank + r;
                let st = &state[(b * s.filters + f) * s.memory..][..s.memory];
                let w = &wt[f * s.memory..][..s.memory];
                acc += st.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
            }
            out[b * s.units + u] = acc;
        }
    }
    if ins.opt(3).is_some() {
        let bias = ins.f32(3)?;
        for row in out.chunks_exact_mut(s.units) {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        }
    }
    activate(act, &mut out)?;
    let sv = ins.get(4)?;
    Ok(Outs {
        values: vec![Value::f32(vec![s.batch, s.units], out)],
        state: vec![(4, Value::f32(sv.shape.clone(), state))],
        trace: Vec::new(),
    })
}

/// The single scale and zero point of quantized operand `i` (input) or the output.
fn qparams(q: Option<&crate::ir::QuantParams>, what: &str) -> KResult<(f32, i32)> {
    match q {
        Some(q) if !q.scale.is_empty() && !q.zero_point.is_empty() => {
            Ok((q.scale[0], q.zero_point[0] as i32))
        }
        _ => bad!("integer SVDF: {what} has no quantization parameters"),
    }
}

fn raw<'a, T>(ins: &Ins<'a>, i: usize, pick: fn(&'a Data) -> Option<&'a [T]>) -> KResult<&'a [T]> {
    let v = ins.get(i)?;
    pick(&v.data).ok_or_else(|| {
        KErr::Unsupported(format!(
            "integer SVDF: input {i} has type {}",
            crate::fb::dtype_name(v.dtype())
        ))
    })
}

/// SVDF, full integer (int8 input): LiteRT's `EvalIntegerSVDF`, on the stored integers.
pub(crate) fn svdf_int8(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let (s, act) = svdf_shape(ctx, ins)?;
    if act != A::Relu {
        unsupported!("integer SVDF with activation {act:?} (LiteRT requires RELU)");
    }
    let x = raw(ins, 0, |d| match d {
        Data::I8(v) => Some(v.as_slice()),
        _ => None,
    })?;
    let wf = raw(ins, 1, |d| match d {
        Data::I8(v) => Some(v.as_slice()),
        _ => None,
    })?;
    let wt = raw(ins, 2, |d| match d {
        Data::I16(v) => Some(v.as_slice()),
        _ => None,
    })?;
    let bias = match ins.opt(3) {
        Some(_) => Some(raw(ins, 3, |d| match d {
            Data::I32(v) => Some(v.as_slice()),
            _ => None,
        })?),
        None => None,
    };
    let mut state = raw(ins, 4, |d| match d {
        Data::I16(v) => Some(v.as_slice()),
        _ => None,
    })?
    .to_vec();
    let q = |i: usize, what: &str| qparams(ctx.in_quant.get(i).copied().flatten(), what);
    let (s_x, zp_x) = q(0, "the input")?;
    let (s_wf, _) = q(1, "the feature weights")?;
    let (s_wt, _) = q(2, "the time weights")?;
    let (s_st, _) = q(4, "the state")?;
    let (s_y, zp_y) = qparams(ctx.out_quant.first().copied().flatten(), "the output")?;
    // The kernel computes the effective scales in float, then converts them to double.
    let m1 = quantize_multiplier((s_x * s_wf / s_st) as f64);
    let m2 = quantize_multiplier((s_st * s_wt / s_y) as f64);
    ensure!(
        m1.1 <= 30 && m2.1 <= 30,
        "integer SVDF: effective scales {} and {} are out of range (at most 2^30)",
        s_x * s_wf / s_st,
        s_st * s_wt / s_y
    );
    if !state.is_empty() {
        state.copy_within(1.., 0);
    }
    for b in 0..s.batch {
        let xb = &x[b * s.n_in..][..s.n_in];
        for f in 0..s.filters {
            let w = &wf[f * s.n_in..][..s.n_in];
            let dot = w.iter().zip(xb).fold(0i32, |acc, (&w, &x)| {
                acc.wrapping_add(w as i32 * (x as i32 - zp_x))
            });
            let v = mbqm(dot, m1.0, m1.1).clamp(i16::MIN as i32, i16::MAX as i32);
            state[(b * s.filters + f) * s.memory + s.memory - 1] = v as i16;
        }
    }
    let mut out = vec![0i8; s.batch * s.units];
    for b in 0..s.batch {
        for u in 0..s.units {
            let mut acc = 0i32;
            for r in 0..s.rank {
                let f = u * s.rank + r;
                let st = &state[(b * s.filters + f) * s.memory..][..s.memory];
                let w = &wt[f * s.memory..][..s.memory];
                let dot = st
                    .iter()
                    .zip(w)
                    .fold(0i32, |a, (&s, &w)| a.wrapping_add(s as i32 * w as i32));
                acc = acc.wrapping_add(dot);
            }
            if let Some(bias) = bias {
                acc = acc.wrapping_add(bias[u]);
            }
            let v = mbqm(acc, m2.0, m2.1) + zp_y;
            out[b * s.units + u] = v.clamp(-128, 127) as i8;
        }
    }
    let sv = ins.get(4)?;
    let value = |shape: Vec<usize>, data: Data| {
        Value::new(shape, data)
            .ok_or_else(|| KErr::Bad("integer SVDF: shape does not fit its data".into()))
    };
    Ok(Outs {
        values: vec![value(vec![s.batch, s.units], Data::I8(out))?],
        state: vec![(4, value(sv.shape.clone(), Data::I16(state))?)],
        trace: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer SVDF's arithmetic against its float twin on the same (dequantized)
    /// operands: within the output step plus the state's rounding carried through.
    #[test]
    fn integer_svdf_follows_the_float_svdf() {
        use crate::fb::{SvdfOptions, TensorType};
        use crate::ir::{Operator, QuantParams};
        let (batch, n_in, units, rank, memory) = (2usize, 5usize, 3usize, 2usize, 4usize);
        let filters = units * rank;
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let xq: Vec<i8> = (0..batch * n_in).map(|_| (rnd() * 120.0) as i8).collect();
        let wfq: Vec<i8> = (0..filters * n_in).map(|_| (rnd() * 127.0) as i8).collect();
        let wtq: Vec<i16> = (0..filters * memory)
            .map(|_| (rnd() * 511.0) as i16)
            .collect();
        let bq: Vec<i32> = (0..units).map(|_| (rnd() * 2000.0) as i32).collect();
        let stq: Vec<i16> = (0..batch * filters * memory)
            .map(|_| (rnd() * 20000.0) as i16)
            .collect();
        let (s_x, zp_x, s_wf, s_wt, s_st) = (0.02f32, 5, 0.01f32, 0.002f32, 0.0005f32);
        let (s_y, zp_y) = (0.01f32, -128);
        let qp = |s: f32, z: i64| QuantParams::per_tensor(s, z);
        let in_q = [
            qp(s_x, zp_x as i64),
            qp(s_wf, 0),
            qp(s_wt, 0),
            qp(s_st * s_wt, 0),
            qp(s_st, 0),
        ];
        let out_q = [qp(s_y, zp_y as i64)];
        let mut op = Operator::new(0, vec![0, 1, 2, 3, 4], vec![5]);
        op.builtin_options = Some(O::SvdfOptions(Box::new(SvdfOptions {
            rank: rank as i32,
            fused_activation_function: A::Relu,
            asymmetric_quantize_inputs: false,
        })));
        let ctx = Ctx::quantized_for_test(&op, &in_q, &out_q, TensorType::Int8);
        let raw_vals = [
            Value::new(vec![batch, n_in], Data::I8(xq.clone())).unwrap(),
            Value::new(vec![filters, n_in], Data::I8(wfq.clone())).unwrap(),
            Value::new(vec![filters, memory], Data::I16(wtq.clone())).unwrap(),
            Value::new(vec![units], Data::I32(bq.clone())).unwrap(),
            Value::new(vec![batch, filters * memory], Data::I16(stq.clone())).unwrap(),
        ];
        let got = svdf_int8(&ctx, &Ins(raw_vals.iter().map(Some).collect())).unwrap();
        let f = |q: &[f64], s: f32, z: i32| -> Vec<f32> {
            q.iter().map(|&v| (v as f32 - z as f32) * s).collect()
        };
        let to64 = |v: &Value| v.data.to_f64_vec();
        let fl = [
            Value::f32(vec![batch, n_in], f(&to64(&raw_vals[0]), s_x, zp_x)),
            Value::f32(vec![filters, n_in], f(&to64(&raw_vals[1]), s_wf, 0)),
            Value::f32(vec![filters, memory], f(&to64(&raw_vals[2]), s_wt, 0)),
            Value::f32(vec![units], f(&to64(&raw_vals[3]), s_st * s_wt, 0)),
            Value::f32(
                vec![batch, filters * memory],
                f(&to64(&raw_vals[4]), s_st, 0),
            ),
        ];
        let want = svdf(&ctx, &Ins(fl.iter().map(Some).collect())).unwrap();
        let Data::I8(q) = &got.values[0].data else {
            panic!("int8 output")
        };
        let Data::F32(w) = &want.values[0].data else {
            panic!("float output")
        };
        // The newest state entry is rounded to s_st (half a step), times |W_time| ≤ 1
        // over `rank` filters, plus the output's own rounding.
        let bound = s_y + s_st * rank as f32 + 1e-6;
        let mut checked = 0;
        for (i, (&q, &w)) in q.iter().zip(w.iter()).enumerate() {
            let r = (q as i32 - zp_y) as f32 * s_y;
            let w_clamped = w.clamp(0.0, (127 - zp_y) as f32 * s_y);
            assert!(
                (r - w_clamped).abs() <= bound,
                "unit {i}: integer {r} vs float {w} (bound {bound})"
            );
            checked += 1;
        }
        assert_eq!(checked, batch * units);
    }
}
