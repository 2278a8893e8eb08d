//! UNIDIRECTIONAL_SEQUENCE_LSTM (float): TFLite's 24-input layout with optional CIFG
//! (no input gate), peepholes, layer normalisation, projection and clipping. The new
//! output and cell states are returned as updates of the variable inputs 18 and 19.

use crate::fb::{ActivationFunctionType as A, BuiltinOptions as O};

use super::gemm::{Mat, sgemm};
use super::{Ctx, Ins, KResult, Outs, bad, ensure, unsupported};
use crate::interp::value::Value;

/// LiteRT's `ApplyActivationToVector` (NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGMOID)
/// for the float recurrent kernels (LSTM here, RNN/SVDF in `rnn`).
pub(super) fn activate(a: A, v: &mut [f32]) -> KResult<()> {
    match a {
        A::None => {}
        A::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        A::ReluN1To1 => v.iter_mut().for_each(|x| *x = x.clamp(-1.0, 1.0)),
        A::Relu6 => v.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        A::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
        // TFLite's kTfLiteActSigmoid shares the schema value SIGN_BIT.
        A::SignBit => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
    }
    Ok(())
}

/// One gate's weights for a step.
struct Gate<'a> {
    w_in: &'a [f32],
    w_rec: &'a [f32],
    peep: Option<&'a [f32]>,
    bias: Option<&'a [f32]>,
    norm: Option<&'a [f32]>,
}

fn opt_f32<'a>(ins: &Ins<'a>, i: usize) -> KResult<Option<&'a [f32]>> {
    match ins.opt(i) {
        Some(_) => Ok(Some(ins.f32(i)?)),
        None => Ok(None),
    }
}

impl Gate<'_> {
    /// `pre = W_in·x + W_rec·h (+ peephole∘c)`, optional layer norm, `+ bias`, activation.
    #[allow(clippy::too_many_arguments)]
    fn eval(
        &self,
        x: &[f32],
        h: &[f32],
        c: &[f32],
        batch: usize,
        n_in: usize,
        n_out: usize,
        n_cell: usize,
        act: A,
    ) -> KResult<Vec<f32>> {
        let mut g = vec![0f32; batch * n_cell];
        let mut tmp = vec![0f32; batch * n_cell];
        sgemm(
            batch,
            n_in,
            n_cell,
            Mat {
                data: x,
                rs: n_in,
                cs: 1,
            },
            Mat {
                data: self.w_in,
                rs: 1,
                cs: n_in,
            },
            &mut g,
        );
        sgemm(
            batch,
            n_out,
            n_cell,
            Mat {
                data: h,
                rs: n_out,
                cs: 1,
            },
            Mat {
                data: self.w_rec,
                rs: 1,
                cs: n_out,
            },
            &mut tmp,
        );
        for (a, b) in g.iter_mut().zip(&tmp) {
            *a += b;
        }
        if let Some(p) = self.peep {
            for (row, crow) in g.chunks_exact_mut(n_cell).zip(c.chunks_exact(n_cell)) {
                for ((a, &pw), &cv) in row.iter_mut().zip(p).zip(crow) {
                    *a += pw * cv;
                }
            }
        }
        for row in g.chunks_exact_mut(n_cell) {
            if let Some(ln) = self.norm {
                let mean = row.iter().sum::<f32>() / n_cell as f32;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n_cell as f32;
                let inv = 1.0 / (var + 1e-8).sqrt();
                for (a, &l) in row.iter_mut().zip(ln) {
                    *a = (*a - mean) * inv * l;
                }
            }
            if let Some(b) = self.bias {
                for (a, &bb) in row.iter_mut().zip(b) {
                    *a += bb;
                }
            }
        }
        activate(act, &mut g)?;
        Ok(g)
    }
}

pub(crate) fn unidirectional_sequence_lstm(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::UnidirectionalSequenceLstmOptions(o)) = ctx.opts() else {
        bad!("missing UnidirectionalSequenceLSTMOptions");
    };
    if o.diagonal_recurrent_tensors {
        unsupported!("diagonal recurrent weights");
    }
    ensure!(
        ins.len() >= 20,
        "expected at least 20 inputs, got {}",
        ins.len()
    );
    let xv = ins.get(0)?;
    let x = ins.f32(0)?;
    let &[d0, d1, n_in] = xv.shape.as_slice() else {
        bad!("input must be 3-D, got {:?}", xv.shape);
    };
    let (steps, batch) = if o.time_major { (d0, d1) } else { (d1, d0) };
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
        "recurrent-to-forget weights {:?}",
        rw.shape
    );
    let n_out = rw.shape[1];
    let cifg = ins.opt(1).is_none();
    let check = |i: usize, n: usize| -> KResult<()> {
        if let Some(v) = ins.opt(i) {
            ensure!(
                v.len() == n,
                "input {i} has {} elements, expected {n}",
                v.len()
            );
        }
        Ok(())
    };
    for i in 1..=4 {
        check(i, n_cell * n_in)?;
    }
    for i in 5..=8 {
        check(i, n_cell * n_out)?;
    }
    for i in (9..=15).chain(20..=23) {
        check(i, n_cell)?;
    }
    check(16, n_out * n_cell)?;
    check(17, n_out)?;
    check(18, batch * n_out)?;
    check(19, batch * n_cell)?;
    let gate = |wi: usize, ri: usize, pi: Option<usize>, bi: usize, li: usize| -> KResult<Gate> {
        Ok(Gate {
            w_in: ins.f32(wi)?,
            w_rec: ins.f32(ri)?,
            peep: match pi {
                Some(p) => opt_f32(ins, p)?,
                None => None,
            },
            bias: opt_f32(ins, bi)?,
            norm: opt_f32(ins, li)?,
        })
    };
    let ig = if cifg {
        None
    } else {
        Some(gate(1, 5, Some(9), 12, 20)?)
    };
    let fg = gate(2, 6, Some(10), 13, 21)?;
    let cg = gate(3, 7, None, 14, 22)?;
    let og = gate(4, 8, Some(11), 15, 23)?;
    let proj_w = opt_f32(ins, 16)?;
    let proj_b = opt_f32(ins, 17)?;
    let mut h = ins.f32(18)?.to_vec();
    let mut c = ins.f32(19)?.to_vec();
    let act = o.fused_activation_function;
    let mut out = vec![0f32; steps * batch * n_out];
    // The cell state after every step, for calibration (the integer kernel's int16 cell
    // scale must cover the whole sequence, not only its last step).
    let mut cell_trace = Vec::with_capacity(steps * batch * n_cell);
    let mut xt = vec![0f32; batch * n_in];
    for t in 0..steps {
        for b in 0..batch {
            let src = if o.time_major {
                t * batch + b
            } else {
                b * steps + t
            };
            xt[b * n_in..(b + 1) * n_in].copy_from_slice(&x[src * n_in..(src + 1) * n_in]);
        }
        let i_gate = match &ig {
            Some(g) => Some(g.eval(&xt, &h, &c, batch, n_in, n_out, n_cell, A::SignBit)?),
            None => None,
        };
        let f_gate = fg.eval(&xt, &h, &c, batch, n_in, n_out, n_cell, A::SignBit)?;
        let c_gate = cg.eval(&xt, &h, &c, batch, n_in, n_out, n_cell, act)?;
        for k in 0..batch * n_cell {
            let i = match &i_gate {
                Some(ig) => ig[k],
                None => 1.0 - f_gate[k],
            };
            c[k] = f_gate[k] * c[k] + i * c_gate[k];
            if o.cell_clip > 0.0 {
                c[k] = c[k].clamp(-o.cell_clip, o.cell_clip);
            }
        }
        cell_trace.extend_from_slice(&c);
        let o_gate = og.eval(&xt, &h, &c, batch, n_in, n_out, n_cell, A::SignBit)?;
        let mut hc = c.clone();
        activate(act, &mut hc)?;
        for (v, &og) in hc.iter_mut().zip(&o_gate) {
            *v *= og;
        }
        match proj_w {
            Some(pw) => {
                let mut p = vec![0f32; batch * n_out];
                sgemm(
                    batch,
                    n_cell,
                    n_out,
                    Mat {
                        data: &hc,
                        rs: n_cell,
                        cs: 1,
                    },
                    Mat {
                        data: pw,
                        rs: 1,
                        cs: n_cell,
                    },
                    &mut p,
                );
                for row in p.chunks_exact_mut(n_out) {
                    if let Some(pb) = proj_b {
                        row.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
                    }
                    if o.proj_clip > 0.0 {
                        row.iter_mut()
                            .for_each(|a| *a = a.clamp(-o.proj_clip, o.proj_clip));
                    }
                }
                h = p;
            }
            None => {
                ensure!(
                    n_out == n_cell,
                    "output size {n_out} differs from cell size {n_cell} without projection"
                );
                h = hc;
            }
        }
        for b in 0..batch {
            let dst = if o.time_major {
                t * batch + b
            } else {
                b * steps + t
            };
            out[dst * n_out..(dst + 1) * n_out].copy_from_slice(&h[b * n_out..(b + 1) * n_out]);
        }
    }
    let shape = if o.time_major {
        vec![steps, batch, n_out]
    } else {
        vec![batch, steps, n_out]
    };
    let hs = ins.get(18)?.shape.clone();
    let cs = ins.get(19)?.shape.clone();
    let mut ts = vec![steps];
    ts.extend(&cs);
    Ok(Outs {
        values: vec![Value::f32(shape, out)],
        state: vec![(18, Value::f32(hs, h)), (19, Value::f32(cs, c))],
        trace: vec![(19, Value::f32(ts, cell_trace))],
    })
}

/// BIDIRECTIONAL_SEQUENCE_LSTM (float): the forward LSTM (inputs 1-17, states 35-36)
/// over the sequence and the backward one (inputs 18-34, states 37-38) over the reversed
/// sequence, each as [`unidirectional_sequence_lstm`]; the backward outputs go back to
/// their original time positions; `merge_outputs` joins both on the last axis. The
/// auxiliary input (39-47) is not supported.
pub(crate) fn bidirectional_sequence_lstm(ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    let Some(O::BidirectionalSequenceLstmOptions(o)) = ctx.opts() else {
        bad!("missing BidirectionalSequenceLSTMOptions");
    };
    ensure!(
        ins.len() >= 39,
        "expected at least 39 inputs, got {}",
        ins.len()
    );
    if (39..48).any(|i| ins.opt(i).is_some()) {
        unsupported!("auxiliary input");
    }
    let mut op = ctx.op.clone();
    op.builtin_options = Some(O::UnidirectionalSequenceLstmOptions(Box::new(
        crate::fb::UnidirectionalSequenceLstmOptions {
            fused_activation_function: o.fused_activation_function,
            cell_clip: o.cell_clip,
            proj_clip: o.proj_clip,
            time_major: o.time_major,
            asymmetric_quantize_inputs: o.asymmetric_quantize_inputs,
            diagonal_recurrent_tensors: false,
        },
    )));
    let inner = Ctx {
        op: &op,
        out_types: vec![crate::fb::TensorType::Float32],
        out_shapes: vec![],
        in_quant: vec![],
        out_quant: vec![],
        inter_quant: vec![],
        out_storage: vec![],
        custom_code: None,
        out_keys: None,
        buffers: None,
    };
    let x = ins.get(0)?;
    let reversed = reverse_time(x, ins.f32(0)?, o.time_major)?;
    let direction = |first: usize, states: usize, x: &Value| -> KResult<Outs> {
        let mut v: Vec<Option<&Value>> = vec![Some(x)];
        v.extend((first..first + 17).map(|i| ins.opt(i)));
        v.extend([ins.opt(states), ins.opt(states + 1)]);
        v.extend([None; 4]);
        unidirectional_sequence_lstm(&inner, &Ins(v))
    };
    let fw = direction(1, 35, x)?;
    let bw = direction(18, 37, &reversed)?;
    let (Some(fw_out), Some(bw_out)) = (fw.values.first(), bw.values.first()) else {
        bad!("an LSTM direction produced no output");
    };
    let bw_out = reverse_time(bw_out, bw_out.as_f32().unwrap_or(&[]), o.time_major)?;
    let (Some(f), Some(b)) = (fw_out.as_f32(), bw_out.as_f32()) else {
        bad!("an LSTM direction produced a non-float output");
    };
    let values = if o.merge_outputs {
        let (nf, nb) = (fw_out.shape[2], bw_out.shape[2]);
        let rows = fw_out.shape[0] * fw_out.shape[1];
        let mut m = Vec::with_capacity(rows * (nf + nb));
        for r in 0..rows {
            m.extend_from_slice(&f[r * nf..(r + 1) * nf]);
            m.extend_from_slice(&b[r * nb..(r + 1) * nb]);
        }
        let mut shape = fw_out.shape.clone();
        shape[2] = nf + nb;
        vec![Value::f32(shape, m)]
    } else {
        vec![fw_out.clone(), bw_out]
    };
    // States and traces: the inner kernel's 18/19 are 35/36 (forward), 37/38 (backward).
    let remap = |v: Vec<(usize, Value)>, base: usize| -> Vec<(usize, Value)> {
        v.into_iter().map(|(p, v)| (p - 18 + base, v)).collect()
    };
    let mut state = remap(fw.state, 35);
    state.extend(remap(bw.state, 37));
    let mut trace = remap(fw.trace, 35);
    trace.extend(remap(bw.trace, 37));
    Ok(Outs {
        values,
        state,
        trace,
    })
}

/// A 3-D float sequence with its time axis reversed.
fn reverse_time(v: &Value, x: &[f32], time_major: bool) -> KResult<Value> {
    let &[d0, d1, n] = v.shape.as_slice() else {
        bad!("input must be 3-D, got {:?}", v.shape);
    };
    ensure!(
        x.len() == d0 * d1 * n,
        "sequence data does not fit its shape"
    );
    let mut out = vec![0f32; x.len()];
    for a in 0..d0 {
        for b in 0..d1 {
            let (sa, sb) = if time_major {
                (d0 - 1 - a, b)
            } else {
                (a, d1 - 1 - b)
            };
            let (dst, src) = ((a * d1 + b) * n, (sa * d1 + sb) * n);
            out[dst..dst + n].copy_from_slice(&x[src..src + n]);
        }
    }
    Ok(Value::f32(v.shape.clone(), out))
}
