//! The output SQNR a quantized model's own quantization steps predict, and the floor a
//! test derives from it (#13: recurrent floors derived, not measured − 6 dB).
//!
//! The noise model: every rounding the quantized model does adds an error uniform in
//! ±step/2, independent of the signal and of the other roundings (variance step²/12),
//! and every value outside a tensor's range is clamped to it (the clipping error, taken
//! from the float values themselves). [`predict`] injects exactly these errors into the
//! float model run by the reference interpreter and measures what reaches the output:
//!
//! - every activation tensor whose producer rounds (not the data movers, which copy
//!   integers, nor control flow) gets its quantized twin's clamp and ±step/2 noise;
//!   the WHILE body's tensors get it on every iteration, so the loop's recurrence
//!   carries it as the integer loop does;
//! - every weight and bias gets its quantized twin's rounding as modelled noise too
//!   (clamp to the twin's grid, per channel, ±step/2), not the twin's values: a bug in the
//!   weights' quantization must not be baked into the prediction;
//! - the model's inputs are data, not computed: their rounding to the input grid is
//!   computed exactly (a zero stays exact);
//! - a fused LSTM is replaced by [`Lstm`], the float LSTM with the roundings of the
//!   kernel that runs it: LiteRT's integer 8x8_16 kernel (gate pre-activations on the
//!   2^-12 grid the kernel fixes without layer norm, clamped to int16, the gates in
//!   Q0.15, the two products of the cell update each rounded to the int16 cell step and
//!   clamped, tanh(c) in Q0.15, the hidden state rounded to the output's int8 step,
//!   clamped, and fed back), or the hybrid kernel (each step's input and previous hidden
//!   state quantized to int8 over their own range including 0,
//!   `asymmetric_quantize_inputs`).
//!
//! Injecting every error at once (a Monte Carlo run of the model) rather than one tensor
//! at a time and summing keeps the nonlinear propagation (saturating gates, the
//! recurrence) and costs one float run per realization; for small errors both agree.
//!
//! The floor is the predicted SQNR less a statistical allowance: under the model the
//! measured noise power is one realization of the mean noise power over the held-out
//! samples (the weights' rounding is shared by every sample, so the spread is taken over
//! whole realizations, [`REALIZATIONS`] of them, fixed seed), so it lies within [`Z`]
//! standard errors of the prediction. Nothing else: no constant chosen after seeing the
//! results. What the model leaves out — integer function approximations (LiteRT's
//! LOGISTIC/TANH int8 tables are exact to the output rounding; the LSTM's fixed-point
//! sigmoid/tanh err by a few Q0.15 steps, 2^-15, far below the 2^-12 pre-activation and
//! int8 hidden steps), requantization multipliers (31-bit) — is far below the modelled
//! roundings. A build that computes something else than its steps say (weights quantized
//! off their written scale, an LSTM output grid its readers do not share) lands below the
//! floor; a consistent change of a step (the floor moves with it) or a field the kernel
//! ignores does not (docs/TESTING.md, "Deliberately broken builds").

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use tflquant::data::Array;
use tflquant::fb::{ActivationFunctionType, BuiltinOperator as Op, BuiltinOptions, TensorType};
use tflquant::interp::{Flow, Interpreter, TensorId, Value};
use tflquant::ir::{Model, Tensor};

/// Standard errors of allowance (one-sided).
pub const Z: f64 = 3.0;

/// Noise realizations per prediction (the spread of each sample's noise power across
/// them gives the statistical allowance).
pub const REALIZATIONS: usize = 8;

/// A per-tensor integer grid: `real = (q - zp) * scale`, `q` in `[qmin, qmax]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub scale: f64,
    pub zp: f64,
    pub qmin: f64,
    pub qmax: f64,
}

impl Grid {
    fn of(t: &Tensor) -> Option<Grid> {
        let q = t.quantized()?;
        if q.scale.len() != 1 {
            return None;
        }
        let (qmin, qmax) = match t.dtype {
            TensorType::Int8 => (-128.0, 127.0),
            TensorType::Uint8 => (0.0, 255.0),
            TensorType::Int16 => (-32768.0, 32767.0),
            _ => return None,
        };
        Some(Grid {
            scale: q.scale[0] as f64,
            zp: q.zero_point.first().copied().unwrap_or(0) as f64,
            qmin,
            qmax,
        })
    }

    /// A symmetric int16 grid of step `scale`.
    fn int16(scale: f64) -> Grid {
        Grid {
            scale,
            zp: 0.0,
            qmin: -32768.0,
            qmax: 32767.0,
        }
    }

    /// `x` clamped to the grid's range.
    fn clamp(&self, x: f64) -> f64 {
        x.clamp(
            (self.qmin - self.zp) * self.scale,
            (self.qmax - self.zp) * self.scale,
        )
    }

    /// The actual rounding (half away from zero) and clamping of `x` to the grid.
    fn round(&self, x: f64) -> f64 {
        ((x / self.scale).round() + self.zp).clamp(self.qmin, self.qmax) * self.scale
            - self.zp * self.scale
    }

    /// The modelled rounding: clamp to the grid's range, then ±step/2 uniform noise.
    fn noisy(&self, x: f64, rng: &mut impl Rng) -> f64 {
        let lo = (self.qmin - self.zp) * self.scale;
        let hi = (self.qmax - self.zp) * self.scale;
        x.clamp(lo, hi) + self.scale * (rng.random::<f64>() - 0.5)
    }
}

/// What [`predict`] found.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Output SQNR (dB) the noise model predicts (first output, all samples).
    pub sqnr_db: f64,
    /// The statistical allowance (dB) below it.
    pub allowance_db: f64,
    /// `sqnr_db - allowance_db`.
    pub floor_db: f64,
    /// Activation tensors (over all subgraphs) that inject noise.
    pub sources: usize,
    /// Constants given their twin's rounding.
    pub weights: usize,
    /// Fused LSTMs modelled.
    pub lstms: usize,
}

/// The float model's tensor `name` of subgraph `si`, as the quantized model spells it:
/// a quantized twin of a float interface tensor carries the suffix `/quantized`.
fn grids_by_name(q: &Model) -> Vec<HashMap<String, Grid>> {
    q.subgraphs
        .iter()
        .map(|sg| {
            let mut m = HashMap::new();
            for t in &sg.tensors {
                if q.is_constant(t) {
                    continue;
                }
                if let Some(g) = Grid::of(t) {
                    let name = t.name.strip_suffix("/quantized").unwrap_or(&t.name);
                    m.insert(name.to_string(), g);
                }
            }
            m
        })
        .collect()
}

/// Ops whose output integers are copies of their input integers (same grid): no
/// rounding of their own.
fn moves(op: Op) -> bool {
    matches!(
        op,
        Op::Reshape
            | Op::Squeeze
            | Op::ExpandDims
            | Op::Split
            | Op::SplitV
            | Op::Slice
            | Op::StridedSlice
            | Op::Gather
            | Op::Transpose
            | Op::ReverseV2
            | Op::Pack
            | Op::Unpack
            | Op::Concatenation
            | Op::MaxPool2d
    )
}

/// The grid of channel `c` of a constant quantized tensor (per tensor: `c` = 0).
fn const_grid(t: &Tensor, c: usize) -> Grid {
    let q = t.quantized().expect("quantized constant");
    let (qmin, qmax) = match t.dtype {
        TensorType::Int4 => (-8.0, 7.0),
        TensorType::Int8 => (-128.0, 127.0),
        TensorType::Int16 => (-32768.0, 32767.0),
        TensorType::Int32 => (i32::MIN as f64, i32::MAX as f64),
        TensorType::Int64 => (i64::MIN as f64, i64::MAX as f64),
        other => panic!("{}: constant of type {other:?}", t.name),
    };
    Grid {
        scale: q.scale[c] as f64,
        zp: q.zero_point.get(c).copied().unwrap_or(0) as f64,
        qmin,
        qmax,
    }
}

/// The float model with every constant that the quantized model quantized (its twin:
/// same subgraph, same name) given that twin's rounding as modelled noise: clamped to
/// the twin's grid (per channel along its axis), plus ±step/2.
fn with_noisy_weights(f: &Model, q: &Model, rng: &mut impl Rng) -> (Model, usize) {
    let mut m = f.clone();
    let mut count = 0;
    for si in 0..m.subgraphs.len() {
        for ti in 0..m.subgraphs[si].tensors.len() {
            let t = &f.subgraphs[si].tensors[ti];
            if t.dtype != TensorType::Float32 || !f.is_constant(t) {
                continue;
            }
            let Some(qt) = q.subgraphs[si]
                .tensors
                .iter()
                .find(|u| u.name == t.name && q.is_constant(u) && u.dtype != TensorType::Float32)
            else {
                continue;
            };
            let Some(qp) = qt.quantized() else { continue };
            assert_eq!(
                qt.shape, t.shape,
                "{}: quantized twin has another shape",
                t.name
            );
            let dims: Vec<usize> = t.shape.iter().map(|&d| d.max(1) as usize).collect();
            let axis = qp.quantized_dimension as usize;
            let inner: usize = dims.get(axis + 1..).map_or(1, |d| d.iter().product());
            let channels = qp.scale.len();
            let grids: Vec<Grid> = (0..channels).map(|c| const_grid(qt, c)).collect();
            let bytes: Vec<u8> = f32_const(f, t)
                .iter()
                .enumerate()
                .flat_map(|(i, &w)| {
                    let g = &grids[if channels > 1 {
                        (i / inner) % channels
                    } else {
                        0
                    }];
                    (g.noisy(w as f64, rng) as f32).to_le_bytes()
                })
                .collect();
            let b = m.add_buffer(bytes);
            m.subgraphs[si].tensors[ti].buffer = b;
            count += 1;
        }
    }
    (m, count)
}

fn f32_const(m: &Model, t: &Tensor) -> Vec<f32> {
    m.tensor_data(t)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// How the quantized model runs an LSTM.
#[derive(Debug, Clone, Copy)]
enum LstmKind {
    /// LiteRT's integer 8x8_16 kernel: the output's int8 grid, the int16 cell step.
    Integer { hidden: Grid, cell: f64 },
    /// The hybrid kernel: float activations, each step's matmul inputs quantized to int8.
    Hybrid,
}

/// A fused UNIDIRECTIONAL_SEQUENCE_LSTM (no peephole, projection or layer norm; every
/// gate; tanh) with the roundings of the kernel that runs its quantized twin.
struct Lstm {
    /// Input-to-gate [n_cell × n_in] and recurrent [n_cell × n_out] weights, biases, for
    /// the gates i, f, g, o.
    w: [Vec<f32>; 4],
    r: [Vec<f32>; 4],
    b: [Vec<f32>; 4],
    n_in: usize,
    n_cell: usize,
    time_major: bool,
    cell_clip: f64,
    kind: LstmKind,
    input: usize,
    output: usize,
}

impl Lstm {
    /// The LSTM of float op `oi` of subgraph `si`, with the weights of `fq` (the float
    /// model with quantized weights) and the kernel of `q`'s twin (by output name).
    fn new(f: &Model, fq: &Model, q: &Model, si: usize, oi: usize) -> Lstm {
        let sg = &fq.subgraphs[si];
        let op = &sg.operators[oi];
        let Some(BuiltinOptions::UnidirectionalSequenceLstmOptions(o)) = &op.builtin_options else {
            panic!("LSTM options");
        };
        assert_eq!(
            o.fused_activation_function,
            ActivationFunctionType::Tanh,
            "the noise model's LSTM is tanh only"
        );
        for pos in [9, 10, 11, 16, 17, 20, 21, 22, 23] {
            assert!(
                op.inputs.get(pos).is_none_or(|&t| t < 0),
                "the noise model's LSTM has no input {pos} (peephole/projection/norm)"
            );
        }
        let c = |pos: usize| f32_const(fq, &sg.tensors[op.inputs[pos] as usize]);
        let name = &f.subgraphs[si].tensors[op.outputs[0] as usize].name;
        let qsg = &q.subgraphs[si];
        let qop = qsg
            .operators
            .iter()
            .find(|o| {
                o.outputs
                    .first()
                    .is_some_and(|&t| t >= 0 && &qsg.tensors[t as usize].name == name)
            })
            .expect("the quantized LSTM");
        let qt = |pos: usize| &qsg.tensors[qop.inputs[pos] as usize];
        let kind = if qt(0).dtype == TensorType::Float32 {
            LstmKind::Hybrid
        } else {
            let hidden = Grid::of(&qsg.tensors[qop.outputs[0] as usize]).expect("output grid");
            let cell = Grid::of(qt(19)).expect("cell grid").scale;
            // The gate intermediates: without layer norm LiteRT's kernel fixes their step
            // at 2^-12 whatever the file says (`lstm.cc`), as [`Lstm::run`] does; the
            // structure test checks the file says so too.
            LstmKind::Integer { hidden, cell }
        };
        let w = [c(1), c(2), c(3), c(4)];
        let n_cell = sg.tensors[op.inputs[2] as usize].shape[0] as usize;
        let n_in = sg.tensors[op.inputs[2] as usize].shape[1] as usize;
        Lstm {
            w,
            r: [c(5), c(6), c(7), c(8)],
            b: [c(12), c(13), c(14), c(15)],
            n_in,
            n_cell,
            time_major: o.time_major,
            cell_clip: o.cell_clip as f64,
            kind,
            input: op.inputs[0] as usize,
            output: op.outputs[0] as usize,
        }
    }

    /// Runs the LSTM on `x` ([batch, time, n_in] or time-major) from zero state; with
    /// `rng` the kernel's roundings are injected, without it the float LSTM.
    fn run(&self, x: &Value, mut rng: Option<&mut rand::rngs::StdRng>) -> Value {
        let xs = x.as_f32().expect("float LSTM input");
        let (d0, d1) = (x.shape[0], x.shape[1]);
        let (steps, batch) = if self.time_major { (d0, d1) } else { (d1, d0) };
        let (n_in, n) = (self.n_in, self.n_cell);
        let mut out = vec![0f32; steps * batch * n];
        let q15 = Grid::int16(2f64.powi(-15));
        let pre = Grid::int16(2f64.powi(-12));
        for b in 0..batch {
            let mut h = vec![0f64; n];
            let mut c = vec![0f64; n];
            for t in 0..steps {
                let src = if self.time_major {
                    t * batch + b
                } else {
                    b * steps + t
                };
                let mut xt: Vec<f64> = xs[src * n_in..(src + 1) * n_in]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let mut hq = h.clone();
                if let (Some(r), LstmKind::Hybrid) = (rng.as_deref_mut(), self.kind) {
                    dynamic_int8(&mut xt, r);
                    dynamic_int8(&mut hq, r);
                }
                let mut gates = [vec![0f64; n], vec![0f64; n], vec![0f64; n], vec![0f64; n]];
                for (g, gate) in gates.iter_mut().enumerate() {
                    for (k, v) in gate.iter_mut().enumerate() {
                        let wi = &self.w[g][k * n_in..(k + 1) * n_in];
                        let ri = &self.r[g][k * n..(k + 1) * n];
                        let a: f64 = wi.iter().zip(&xt).map(|(&w, &x)| w as f64 * x).sum();
                        let rr: f64 = ri.iter().zip(&hq).map(|(&w, &x)| w as f64 * x).sum();
                        let mut z = a + self.b[g][k] as f64 + rr;
                        if let (Some(r), LstmKind::Integer { .. }) = (rng.as_deref_mut(), self.kind)
                        {
                            // The input and recurrent parts are each rescaled to 2^-12 and
                            // rounded, then added with int16 saturation.
                            let zi = pre.noisy(a + self.b[g][k] as f64, r);
                            z = pre.clamp(zi + pre.noisy(rr, r));
                        }
                        let y = if g == 2 { z.tanh() } else { sigmoid(z) };
                        *v = match (rng.as_deref_mut(), self.kind) {
                            (Some(r), LstmKind::Integer { .. }) => q15.noisy(y, r),
                            _ => y,
                        };
                    }
                }
                for k in 0..n {
                    let (i, f, g, o) = (gates[0][k], gates[1][k], gates[2][k], gates[3][k]);
                    let (mut fc, mut ig) = (f * c[k], i * g);
                    let mut ck;
                    if let (Some(r), LstmKind::Integer { cell, .. }) =
                        (rng.as_deref_mut(), self.kind)
                    {
                        let cg = Grid::int16(cell);
                        fc = cg.noisy(fc, r);
                        ig = cg.noisy(ig, r);
                        ck = cg.clamp(fc + ig);
                    } else {
                        ck = fc + ig;
                    }
                    if self.cell_clip > 0.0 {
                        ck = ck.clamp(-self.cell_clip, self.cell_clip);
                    }
                    c[k] = ck;
                    let mut th = ck.tanh();
                    let mut hk = o * th;
                    if let (Some(r), LstmKind::Integer { hidden, .. }) =
                        (rng.as_deref_mut(), self.kind)
                    {
                        th = q15.noisy(th, r);
                        hk = hidden.noisy(o * th, r);
                    }
                    h[k] = hk;
                }
                let dst = if self.time_major {
                    t * batch + b
                } else {
                    b * steps + t
                };
                for k in 0..n {
                    out[dst * n + k] = h[k] as f32;
                }
            }
        }
        let shape = if self.time_major {
            vec![steps, batch, n]
        } else {
            vec![batch, steps, n]
        };
        Value::f32(shape, out)
    }
}

/// The hybrid kernel's quantization of a matmul input (`asymmetric_quantize_inputs`):
/// int8 over [min(0, min), max(0, max)], as ±step/2 noise (a zero vector stays exact).
fn dynamic_int8(v: &mut [f64], r: &mut impl Rng) {
    let lo = v.iter().fold(0f64, |m, &x| m.min(x));
    let hi = v.iter().fold(0f64, |m, &x| m.max(x));
    if hi == lo {
        return;
    }
    let s = (hi - lo) / 255.0;
    for x in v.iter_mut() {
        *x += s * (r.random::<f64>() - 0.5);
    }
}

/// Output samples of `model` (first output, flattened per sample) run by the reference
/// interpreter, with `observe` seeing and replacing values.
fn run_samples(
    model: &Model,
    inputs: &[Array],
    mut observe: impl FnMut(TensorId, &Value) -> Flow,
) -> Vec<Vec<f64>> {
    let mut it = Interpreter::new(model).expect("interpreter");
    let n = inputs[0].shape[0];
    (0..n)
        .map(|s| {
            let ins: Vec<Value> = inputs
                .iter()
                .map(|a| Value::from_array(&crate::interp::sample(a, s)).unwrap())
                .collect();
            let outs = it
                .run_observed(&ins, &mut observe)
                .expect("run")
                .expect("not stopped");
            outs[0].to_array().data.to_f64()
        })
        .collect()
}

/// Predicts the output SQNR of `q` (the quantized `f`) on `inputs` (float samples of
/// `f`'s inputs, axis 0) from `q`'s steps, with the floor (see the module header).
pub fn predict(f: &Model, q: &Model, inputs: &[Array], seed: u64) -> Prediction {
    assert_eq!(f.subgraphs.len(), q.subgraphs.len(), "subgraphs differ");
    let grids = grids_by_name(q);
    // Where the noise goes: (subgraph, tensor) of the float model → grid; the LSTMs by
    // (subgraph, op) and output tensor.
    let mut inject: HashMap<TensorId, Grid> = HashMap::new();
    let mut lstm_ops: Vec<(usize, usize)> = Vec::new();
    for (si, sg) in f.subgraphs.iter().enumerate() {
        let grid = |t: usize| grids[si].get(&sg.tensors[t].name).copied();
        if si == 0 {
            for &t in &sg.inputs {
                if let Some(g) = grid(t as usize) {
                    inject.insert(
                        TensorId {
                            subgraph: 0,
                            tensor: t as usize,
                        },
                        g,
                    );
                }
            }
        }
        for (oi, op) in sg.operators.iter().enumerate() {
            let b = f.builtin(op);
            if b == Op::While {
                continue;
            }
            if b == Op::UnidirectionalSequenceLstm {
                let l = Lstm::new(f, f, q, si, oi);
                let id = TensorId {
                    subgraph: si,
                    tensor: l.output,
                };
                // The integer kernel's output is its hidden grid, modelled inside.
                if let (LstmKind::Hybrid, Some(g)) = (l.kind, grid(l.output)) {
                    inject.insert(id, g);
                }
                lstm_ops.push((si, oi));
                continue;
            }
            let first_in = op.inputs.iter().find(|&&t| t >= 0).map(|&t| t as usize);
            for &t in op.outputs.iter().filter(|&&t| t >= 0) {
                let Some(g) = grid(t as usize) else { continue };
                if moves(b) && first_in.and_then(grid) == Some(g) {
                    continue;
                }
                inject.insert(
                    TensorId {
                        subgraph: si,
                        tensor: t as usize,
                    },
                    g,
                );
            }
        }
    }
    let lstms_of = |m: &Model| -> HashMap<TensorId, Lstm> {
        lstm_ops
            .iter()
            .map(|&(si, oi)| {
                let l = Lstm::new(f, m, q, si, oi);
                let id = TensorId {
                    subgraph: si,
                    tensor: l.output,
                };
                (id, l)
            })
            .collect()
    };
    let lstm_inputs: Vec<TensorId> = lstms_of(f)
        .iter()
        .map(|(id, l)| TensorId {
            subgraph: id.subgraph,
            tensor: l.input,
        })
        .collect();
    let reference = run_samples(f, inputs, |_, _| Flow::Continue);

    // The model's own LSTM, without noise, is the interpreter's float LSTM.
    let lstms = lstms_of(f);
    let mut seen: HashMap<TensorId, Value> = HashMap::new();
    let mut worst = 0f64;
    run_samples(f, inputs, |id, v| {
        if let Some(l) = lstms.get(&id) {
            let x = &seen[&TensorId {
                subgraph: id.subgraph,
                tensor: l.input,
            }];
            let mine = l.run(x, None);
            let theirs = v.as_f32().expect("float LSTM output");
            for (a, b) in mine.as_f32().unwrap().iter().zip(theirs) {
                worst = worst.max((a - b).abs() as f64);
            }
        }
        if lstm_inputs.contains(&id) {
            seen.insert(id, v.clone());
        }
        Flow::Continue
    });
    assert!(
        worst <= 1e-5,
        "the noise model's LSTM differs from the interpreter's by {worst}"
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = reference.len();
    // Mean output noise power over the samples, per realization.
    let mut means = Vec::with_capacity(REALIZATIONS);
    let mut weights = 0;
    for _ in 0..REALIZATIONS {
        let (fr, count) = with_noisy_weights(f, q, &mut rng);
        weights = count;
        let lstms = lstms_of(&fr);
        let mut seen: HashMap<TensorId, Value> = HashMap::new();
        let noisy = run_samples(&fr, inputs, |id, v| {
            let mut out: Option<Value> = None;
            if let Some(l) = lstms.get(&id) {
                let x = &seen[&TensorId {
                    subgraph: id.subgraph,
                    tensor: l.input,
                }];
                out = Some(l.run(x, Some(&mut rng)));
            }
            if let Some(g) = inject.get(&id) {
                let base = out.as_ref().unwrap_or(v);
                let xs = base.as_f32().expect("float activation");
                // The model's inputs are data, not computed: their rounding is known.
                let given = id.subgraph == 0 && f.subgraphs[0].inputs.contains(&(id.tensor as i32));
                let ys: Vec<f32> = xs
                    .iter()
                    .map(|&x| {
                        if given {
                            g.round(x as f64) as f32
                        } else {
                            g.noisy(x as f64, &mut rng) as f32
                        }
                    })
                    .collect();
                out = Some(Value::f32(base.shape.clone(), ys));
            }
            if lstm_inputs.contains(&id) {
                seen.insert(id, out.clone().unwrap_or_else(|| v.clone()));
            }
            match out {
                Some(r) => Flow::Replace(r),
                None => Flow::Continue,
            }
        });
        let mut total = 0f64;
        for (i, (y, r)) in noisy.iter().zip(&reference).enumerate() {
            let p: f64 = y.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum();
            assert!(p.is_finite(), "NaN in the noise model's output, sample {i}");
            total += p;
        }
        means.push(total / n as f64);
    }
    let signal: f64 = reference.iter().flatten().map(|x| x * x).sum::<f64>() / n as f64;
    let noise = means.iter().sum::<f64>() / REALIZATIONS as f64;
    // The measured mean noise power is one realization; its spread is that of `means`
    // (the weights' rounding is shared by every sample, so the samples' noises are not
    // independent: the spread is taken over whole realizations), and the prediction's
    // own error is that spread over sqrt(R).
    let var =
        means.iter().map(|m| (m - noise) * (m - noise)).sum::<f64>() / (REALIZATIONS - 1) as f64;
    let se = (var * (1.0 + 1.0 / REALIZATIONS as f64)).sqrt();
    let sqnr_db = 10.0 * (signal / noise).log10();
    let allowance_db = 10.0 * ((noise + Z * se) / noise).log10();
    Prediction {
        sqnr_db,
        allowance_db,
        floor_db: sqnr_db - allowance_db,
        sources: inject.len(),
        weights,
        lstms: lstm_ops.len(),
    }
}

/// The SQNR floor derived from the quantized model's steps ([`predict`]): the
/// measured SQNR `s` (LiteRT, quantized vs float, the held-out samples) is at least the
/// noise model's prediction less its statistical allowance.
pub fn check_floor(ctx: &str, fm: &Model, qm: &Model, inputs: &[Array], s: f64) {
    let p = predict(fm, qm, inputs, 0x5eed);
    eprintln!(
        "{ctx}: SQNR {s:.2} dB, predicted {:.2} dB, floor {:.2} dB (allowance {:.2} dB; \
         {} activations, {} constants, {} LSTMs)",
        p.sqnr_db, p.floor_db, p.allowance_db, p.sources, p.weights, p.lstms
    );
    assert!(
        s >= p.floor_db,
        "{ctx}: SQNR {s:.2} dB below the floor {:.2} dB its steps give (predicted {:.2} dB)",
        p.floor_db,
        p.sqnr_db
    );
}
