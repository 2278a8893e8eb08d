//! UNIDIRECTIONAL_SEQUENCE_LSTM (float): TFLite's 24-input layout with optional CIFG
//! (no input gate), peepholes, layer normalisation, projection and clipping. The new
//! output and cell states are returned as updates of the variable inputs 18 and 19.

use crate::fb::{ActivationFunctionType as A, BuiltinOptions as O};

use super::gemm::{Mat, sgemm};
use super::{Ctx, Ins, KResult, Outs, bad, ensure, unsupported};
use crate::interp::value::Value;

fn activate(a: A, v: &mut [f32]) -> KResult<()> {
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
