//! Full-integer UNIDIRECTIONAL_SEQUENCE_LSTM (LiteRT's "8x8_16" integer kernel) and SVDF,
//! and the hybrid fallback of every recurrent operator.
//!
//! The generic engine (`integer.rs`) decides the operator's fate from the rule table and
//! gives its input 0 and output ordinary int8 parameters; this module owns everything
//! else about the operator, through three small hooks:
//! * [`refine_fates`]: a calibrated LSTM the kernel can run in integer stays quantized;
//!   any other stays float with a reason that says what the runtime lacks;
//! * [`own_operand`]: the generic passes leave inputs 1..24 of an integer LSTM alone;
//! * [`apply`]: after the generic rewrite, quantizes them as the kernel expects.
//!
//! Fallback: an LSTM that stays float (another variant, 16x8, no calibrated state) keeps
//! int8 per-tensor weights with `asymmetric_quantize_inputs`, which LiteRT's hybrid
//! LSTM kernel runs, instead of all its weights in float32; the reason says so. The same
//! fallback covers the recurrent operators LiteRT runs in float or hybrid only (RNN,
//! UNIDIRECTIONAL/BIDIRECTIONAL_SEQUENCE_RNN, BIDIRECTIONAL_SEQUENCE_LSTM: the reason
//! names the kernel) and an SVDF left float.
//!
//! SVDF: the same three hooks make it integer in int8 where LiteRT's integer SVDF runs it
//! (fused RELU); `svdf.rs` quantizes its operands.
//!
//! What LiteRT's integer kernel expects (read from `lstm.cc`,
//! `unidirectional_sequence_lstm.cc`, `lstm_eval.cc` and the LSTM entries of
//! `tools/optimize/operator_property.cc`; written up in `docs/RECURRENT.md`):
//! * input and output int8 (asymmetric); the output-state variable (input 18) int8 with
//!   the output's parameters (the kernel copies the state into the output each step);
//! * gate weights (inputs 1-8) and projection weights (16) int8 symmetric, one scale
//!   per tensor;
//! * gate biases (12-15) int32 with scale `s_input × s_input_to_gate_weight`, added to
//!   the input product before rescaling; with layer norm they belong to the
//!   normalisation instead, at `s_layer_norm × 2^-10`;
//! * peephole weights (9-11) and layer-norm coefficients (20-23) int16 symmetric per
//!   tensor (`max|w| / 32767`);
//! * projection bias (17) int32 at `s_projection × s_hidden`;
//! * cell-state variable (input 19) int16, zero point 0, scale a power of two `2^k` with
//!   `k ≤ -9` (the kernel checks it); tflquant takes the smallest `2^p ≥ max|c|`,
//!   `p ≥ 0`, and `k = p - 15`, as TF's quantizer does;
//! * five `intermediates`: without layer norm the kernel fixes the gate scales at
//!   `2^-12` (Q3.12); with layer norm intermediates 0-3 scale the gates before the
//!   normalisation (int16): tflquant gives each the scale that holds the largest value
//!   the quantized operands can produce (`Σ|w_in|·max|x| + Σ|w_rec|·max|h| + |p|·max|c|`
//!   per row), which never saturates, where TF's quantizer calibrates them; the
//!   normalisation itself is scale-free and writes Q3.12. Intermediate 4 is the hidden
//!   value `o ∘ tanh(c)`: the output's parameters without projection (the kernel writes
//!   it straight into the output state), symmetric `1/127` with projection (a sigmoid
//!   times a tanh lies in (-1, 1)).
//!
//! Supported in int8: the plain variant Keras writes, CIFG, peephole, layer norm,
//! projection with or without bias, and their combinations, with cell clipping (the
//! kernel clips the int16 cell state) — except peepholes with a projection to fewer
//! outputs than cells: LiteRT's `lstm_eval.cc` passes the output size as the peephole
//! length, so only the first cells would get their peephole (kept hybrid, with that
//! reason). No variant in int16x8 (LiteRT has no 16x8 LSTM).

use crate::calib::Ranges;
use crate::error::Result;
use crate::fb::{self, ActivationFunctionType as Act, BuiltinOperator as Op, TensorType};
use crate::ir::{Model, QuantParams, Tensor};

use super::operands::{OpSite, input, new_const, record};
use super::{Fate, IntegerOptions, Width};
use crate::quant::math::{self, Channels};
use crate::quant::report::{FloatReason, Report};

/// Input positions of the LSTM operands this module quantizes itself.
const INPUT_WEIGHTS: [usize; 4] = [1, 2, 3, 4];
const RECURRENT_WEIGHTS: [usize; 4] = [5, 6, 7, 8];
const BIASES: [usize; 4] = [12, 13, 14, 15];
/// Peephole positions per gate (the cell gate has none).
const PEEPHOLES: [Option<usize>; 4] = [Some(9), Some(10), None, Some(11)];
/// Layer-norm coefficient positions per gate.
const LAYER_NORMS: [Option<usize>; 4] = [Some(20), Some(21), Some(22), Some(23)];
const OUTPUT_STATE: usize = 18;
const CELL_STATE: usize = 19;
/// Largest cell-state magnitude the kernel accepts: scale `2^-9` × 32768.
const MAX_CELL: f32 = 64.0;

/// Whether input `pos` of an integer `op` is quantized here (or in `svdf.rs`), not by
/// the generic passes.
pub(super) fn own_operand(op: Op, pos: usize) -> bool {
    match op {
        Op::UnidirectionalSequenceLstm => pos != 0,
        Op::Svdf => (1..=4).contains(&pos),
        _ => false,
    }
}

/// Why LiteRT's integer kernel cannot run this LSTM as tflquant writes it, or `None`.
fn unsupported(model: &Model, si: usize, oi: usize, ranges: &Ranges) -> Option<String> {
    let sg = &model.subgraphs[si];
    let op = &sg.operators[oi];
    let Some(fb::BuiltinOptions::UnidirectionalSequenceLstmOptions(o)) = &op.builtin_options else {
        return Some("the operator has no UnidirectionalSequenceLSTMOptions".into());
    };
    if let Some(why) = Variant::of(model, si, op).err() {
        return Some(why);
    }
    if o.diagonal_recurrent_tensors {
        return Some("diagonal recurrent weights have no integer kernel in LiteRT".into());
    }
    if o.fused_activation_function != Act::Tanh {
        return Some(format!(
            "cell activation {:?}: LiteRT's integer LSTM computes tanh only",
            o.fused_activation_function
        ));
    }
    if op.inputs.len() < 20
        || !matches!(input(op, OUTPUT_STATE), Some(t) if sg.tensors[t].is_variable)
    {
        return Some("the output state (input 18) is not a variable tensor".into());
    }
    let cell = input(op, CELL_STATE).filter(|&t| sg.tensors[t].is_variable);
    let Some(cell) = cell else {
        return Some("the cell state (input 19) is not a variable tensor".into());
    };
    let Some(r) = ranges.get(si, cell) else {
        return Some("the cell state has no calibrated range".into());
    };
    let m = r.min.abs().max(r.max.abs());
    if !m.is_finite() || m > MAX_CELL {
        return Some(format!(
            "the calibrated cell state reaches {m}; LiteRT's integer kernel needs a \
             power-of-two cell scale of at most 2^-9, i.e. |c| <= {MAX_CELL}"
        ));
    }
    None
}

/// Which optional parts an LSTM has (TFLite's 24-input layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Variant {
    /// No input gate (inputs 1, 5, 9, 12, 20 absent): `i = 1 − f`.
    cifg: bool,
    /// Peephole weights (9-11).
    peephole: bool,
    /// Layer-norm coefficients (20-23).
    layer_norm: bool,
    /// Projection weights (16), with or without a bias (17).
    projection: bool,
}

impl Variant {
    /// The variant of `op`, or why LiteRT's integer kernel cannot run it.
    fn of(model: &Model, si: usize, op: &crate::ir::Operator) -> std::result::Result<Self, String> {
        let sg = &model.subgraphs[si];
        let has = |pos: usize| input(op, pos).is_some();
        // The forget, cell and output gates' weights (2-4, 6-8) and biases (13-15).
        if let Some(pos) = [2, 3, 4, 6, 7, 8, 13, 14, 15]
            .into_iter()
            .find(|&p| !has(p))
        {
            return Err(format!(
                "input {pos} (a forget, cell or output gate's weights or bias) is absent"
            ));
        }
        let cifg = !has(1);
        let gate_in = |pos: usize| cifg || has(pos);
        if cifg && (has(5) || has(9) || has(12) || has(20)) || !gate_in(5) || !gate_in(12) {
            return Err(
                "the input gate's operands (1, 5, 12) are neither all present nor \
                        all absent (CIFG)"
                    .into(),
            );
        }
        let peephole = has(9) || has(10) || has(11);
        if peephole && !(has(10) && has(11) && gate_in(9)) {
            return Err("incomplete peephole weights (9-11)".into());
        }
        // LiteRT decides layer norm from the forget gate's coefficients (input 21).
        let layer_norm = has(21);
        if (has(20) || has(22) || has(23)) && !layer_norm
            || layer_norm && !(has(22) && has(23) && gate_in(20))
        {
            return Err("incomplete layer-norm coefficients (20-23)".into());
        }
        let projection = has(16);
        if has(17) && !projection {
            return Err("a projection bias (17) without projection weights (16)".into());
        }
        let dims = |pos: usize| input(op, pos).map(|t| sg.tensors[t].shape.clone());
        let (n_cell, n_out) = match dims(6).as_deref() {
            Some(&[c, o]) => (c, o),
            _ => return Err("the recurrent-to-forget weights (6) are not 2-D".into()),
        };
        if peephole && projection && n_out != n_cell {
            return Err(format!(
                "peephole LSTM with a projection to {n_out} of {n_cell} cells: LiteRT's \
                 integer kernel applies the peephole weights to the first {n_out} cells only \
                 (lstm_eval.cc passes the output size as the peephole length)"
            ));
        }
        Ok(Variant {
            cifg,
            peephole,
            layer_norm,
            projection,
        })
    }
}

/// Turns the generic fate of each integer-capable LSTM into a precise one.
pub(super) fn refine_fates(
    model: &Model,
    ranges: &Ranges,
    opts: &IntegerOptions,
    fates: &mut [Vec<Fate>],
) {
    refine_lstm_fates(model, ranges, opts, fates);
    refine_svdf_fates(model, ranges, opts, fates);
    hybrid_fallback(model, fates);
}

/// LSTM: integer in int8 where LiteRT's 8x8_16 kernel runs the variant.
fn refine_lstm_fates(
    model: &Model,
    ranges: &Ranges,
    opts: &IntegerOptions,
    fates: &mut [Vec<Fate>],
) {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            if model.builtin(op) != Op::UnidirectionalSequenceLstm {
                continue;
            }
            if opts.width != Width::Int8 {
                fates[si][oi] = Fate::Float {
                    reason: FloatReason::RecurrentVariant {
                        why: "LiteRT has no UNIDIRECTIONAL_SEQUENCE_LSTM kernel with int16 \
                              activations: its integer kernel (8x8_16) reads int8 input and \
                              output, and it registers the operator up to version 4 (version 5, \
                              int16 activations, is TFLite Micro's)"
                            .into(),
                    },
                };
            } else if fates[si][oi] != Fate::Quantized {
                // The generic reason (an uncalibrated operand...) stands.
            } else if let Some(why) = unsupported(model, si, oi, ranges) {
                fates[si][oi] = Fate::Float {
                    reason: FloatReason::RecurrentVariant { why },
                };
            }
        }
    }
}

/// SVDF: integer in int8 where LiteRT's integer kernel runs it.
fn refine_svdf_fates(
    model: &Model,
    ranges: &Ranges,
    opts: &IntegerOptions,
    fates: &mut [Vec<Fate>],
) {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            if model.builtin(op) != Op::Svdf {
                continue;
            }
            if opts.width != Width::Int8 {
                fates[si][oi] = Fate::Float {
                    reason: FloatReason::RecurrentVariant {
                        why: "LiteRT has no SVDF kernel with int16 activations: svdf.cc takes \
                              a float32 input (float or hybrid) or an int8 one (integer), and \
                              TF's quantizer marks SVDF quantizable_int16 = false"
                            .into(),
                    },
                };
            } else if fates[si][oi] == Fate::Quantized
                && let Some(why) = super::svdf::unsupported(model, si, oi, ranges)
            {
                fates[si][oi] = Fate::Float {
                    reason: FloatReason::RecurrentVariant { why },
                };
            }
        }
    }
}

/// Fallback: a recurrent operator left float keeps int8 weights (LiteRT's hybrid
/// kernel); one LiteRT runs in float or hybrid only says so.
fn hybrid_fallback(model: &Model, fates: &mut [Vec<Fate>]) {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            let kind = model.builtin(op);
            let Fate::Float { reason } = &mut fates[si][oi] else {
                continue;
            };
            if let Some(runtime) = no_integer_kernel(kind)
                && matches!(
                    reason,
                    FloatReason::NoKernel { .. } | FloatReason::NoRule { .. }
                )
            {
                *reason = FloatReason::RecurrentVariant {
                    why: runtime.into(),
                };
            }
            let Some(name) = hybrid_name(kind) else {
                continue;
            };
            if !hybrid_ok(model, si, op) {
                continue;
            }
            let why = Box::new(std::mem::replace(
                reason,
                FloatReason::NoRule { op: String::new() },
            ));
            *reason = if kind == Op::UnidirectionalSequenceLstm {
                FloatReason::HybridLstm { why }
            } else {
                FloatReason::HybridRecurrent { op: name, why }
            };
        }
    }
}

/// What LiteRT lacks for a recurrent operator that has no integer kernel at all.
fn no_integer_kernel(op: Op) -> Option<&'static str> {
    Some(match op {
        Op::Rnn => {
            "LiteRT's RNN kernel (basic_rnn.cc) runs float32 or hybrid (float32 input, int8 \
             weights) only: it has no kernel for int8 or int16 activations"
        }
        Op::UnidirectionalSequenceRnn => {
            "LiteRT's UNIDIRECTIONAL_SEQUENCE_RNN kernel (unidirectional_sequence_rnn.cc) \
             runs float32 or hybrid (float32 input, int8 weights) only: it has no kernel for \
             int8 or int16 activations"
        }
        Op::BidirectionalSequenceRnn => {
            "LiteRT's BIDIRECTIONAL_SEQUENCE_RNN kernel (bidirectional_sequence_rnn.cc) \
             runs float32 or hybrid (float32 input, int8 weights) only: it has no kernel for \
             int8 or int16 activations"
        }
        Op::BidirectionalSequenceLstm => {
            "LiteRT's BIDIRECTIONAL_SEQUENCE_LSTM kernel (bidirectional_sequence_lstm.cc, \
             registered up to version 3) runs float32 or hybrid (float32 input, int8 weights) \
             only: unlike UNIDIRECTIONAL_SEQUENCE_LSTM it has no integer (8x8_16) kernel"
        }
        _ => return None,
    })
}

/// The operators with a hybrid kernel this fallback writes, by name.
fn hybrid_name(op: Op) -> Option<&'static str> {
    Some(match op {
        Op::UnidirectionalSequenceLstm => "LSTM",
        Op::BidirectionalSequenceLstm => "BIDIRECTIONAL_SEQUENCE_LSTM",
        Op::Svdf => "SVDF",
        Op::Rnn => "RNN",
        Op::UnidirectionalSequenceRnn => "UNIDIRECTIONAL_SEQUENCE_RNN",
        Op::BidirectionalSequenceRnn => "BIDIRECTIONAL_SEQUENCE_RNN",
        _ => return None,
    })
}

/// Positions of an LSTM's weight matrices and peephole vectors: the hybrid kernel reads
/// all of them as int8 once input 4 is int8.
const HYBRID_WEIGHTS: [usize; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16];

/// The weight operands a recurrent operator's hybrid kernel reads as int8 (per tensor),
/// and the one that must be present (its type selects the hybrid path).
fn hybrid_weights(op: Op) -> (&'static [usize], usize) {
    match op {
        Op::UnidirectionalSequenceLstm => (&HYBRID_WEIGHTS, 4),
        // Forward 1-11 and 16, backward 18-28 and 33, auxiliary 40-47.
        Op::BidirectionalSequenceLstm => (
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                33, 40, 41, 42, 43, 44, 45, 46, 47,
            ],
            4,
        ),
        // Feature and time weights (the hybrid kernel dequantizes the time weights).
        Op::Svdf | Op::Rnn | Op::UnidirectionalSequenceRnn => (&[1, 2], 1),
        // Forward 1-2, backward 5-6, auxiliary 10-11.
        Op::BidirectionalSequenceRnn => (&[1, 2, 5, 6, 10, 11], 1),
        _ => (&[], usize::MAX),
    }
}

/// A float recurrent operator whose weights are all float32 constants (float input):
/// the hybrid kernel can take them as int8.
fn hybrid_ok(model: &Model, si: usize, op: &crate::ir::Operator) -> bool {
    let sg = &model.subgraphs[si];
    let (weights, key) = hybrid_weights(model.builtin(op));
    let float_in = input(op, 0).is_some_and(|t| sg.tensors[t].dtype == TensorType::Float32);
    float_in
        && input(op, key).is_some()
        && weights.iter().all(|&pos| match input(op, pos) {
            None => true,
            Some(t) => {
                sg.tensors[t].dtype == TensorType::Float32 && model.is_constant(&sg.tensors[t])
            }
        })
}

/// Quantizes the weights of a float recurrent operator for the hybrid kernel (the
/// fallback); `done` maps weights already quantized (shared by unrolled operators).
fn apply_hybrid(
    model: &mut Model,
    si: usize,
    oi: usize,
    done: &mut std::collections::HashMap<usize, usize>,
    report: &mut Report,
) {
    let (weights, _) = hybrid_weights(model.builtin(&model.subgraphs[si].operators[oi]));
    for &pos in weights {
        let Some(t) = input(&model.subgraphs[si].operators[oi], pos) else {
            continue;
        };
        if let Some(&ni) = done.get(&t) {
            model.subgraphs[si].operators[oi].inputs[pos] = ni as i32;
            continue;
        }
        let tensor = model.subgraphs[si].tensors[t].clone();
        let values = math::f32_values(model.tensor_data(&tensor));
        let ch = Channels::new(&tensor.shape, None);
        let scales = math::symmetric_scales(&values, ch, 127.0);
        let q = math::quantize_symmetric(&values, ch, &scales, 127.0);
        let ni = new_const(
            model,
            si,
            &tensor,
            TensorType::Int8,
            q.iter().map(|&v| v as u8).collect(),
            QuantParams::per_tensor(scales[0], 0),
        );
        done.insert(t, ni);
        model.subgraphs[si].operators[oi].inputs[pos] = ni as i32;
        record(
            report,
            si,
            ni,
            &model.subgraphs[si].tensors[ni],
            "weight",
            None,
        );
    }
    use fb::BuiltinOptions as B;
    match &mut model.subgraphs[si].operators[oi].builtin_options {
        Some(B::UnidirectionalSequenceLstmOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::BidirectionalSequenceLstmOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::SvdfOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::RnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::SequenceRnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::BidirectionalSequenceRnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        _ => {}
    }
}

/// Exponent `k` of the cell-state scale `2^k`: the smallest `2^p ≥ max|c|` (p in
/// 0..=10, TF's rule), `k = p - 15`.
pub fn cell_scale_exponent(max_abs: f32) -> i32 {
    let mut p = 0;
    while p < 10 && 2f32.powi(p) < max_abs {
        p += 1;
    }
    p - 15
}

/// Quantizes the operands of every LSTM the generic rewrite made integer (input 0 now
/// int8): weights, biases, both state variables, and the five intermediates.
pub(super) fn apply(model: &mut Model, ranges: &Ranges, report: &mut Report) -> Result<()> {
    super::svdf::apply(model, ranges, report)?;
    for si in 0..model.subgraphs.len() {
        // State variables made integer, with the LSTM that owns them.
        let mut states: Vec<(usize, usize)> = Vec::new();
        let mut hybrid_done = std::collections::HashMap::new();
        for oi in 0..model.subgraphs[si].operators.len() {
            let op = &model.subgraphs[si].operators[oi];
            let kind = model.builtin(op);
            if kind != Op::UnidirectionalSequenceLstm {
                if hybrid_name(kind).is_some() && hybrid_ok(model, si, op) {
                    apply_hybrid(model, si, oi, &mut hybrid_done, report);
                }
                continue;
            }
            let sg = &model.subgraphs[si];
            let (Some(x), Some(y)) = (
                input(op, 0),
                op.outputs.first().and_then(|&t| usize::try_from(t).ok()),
            ) else {
                continue;
            };
            if sg.tensors[x].dtype != TensorType::Int8 {
                if hybrid_ok(model, si, op) {
                    apply_hybrid(model, si, oi, &mut hybrid_done, report);
                }
                continue;
            }
            let lstm = IntegerLstm {
                at: OpSite {
                    si,
                    oi,
                    kind: "integer LSTM",
                },
                x,
                y,
            };
            states.extend(lstm.quantize(model, ranges, report)?);
        }
        dequantize_shared_states(model, si, &states);
    }
    Ok(())
}

/// One LSTM made integer: subgraph, operator, input and output tensors.
struct IntegerLstm {
    at: OpSite,
    x: usize,
    y: usize,
}

/// Scale of the hidden value `o ∘ tanh(c)` (intermediate 4) when a projection reads it:
/// symmetric over [-1, 1] (the product of a sigmoid and a tanh), zero point 0.
pub const HIDDEN_SCALE: f32 = 1.0 / 127.0;

/// Largest magnitude int8 parameters represent.
fn max_abs(q: &QuantParams) -> f32 {
    let zp = q.zero_point.first().copied().unwrap_or(0) as f32;
    let s = q.scale.first().copied().unwrap_or(0.0);
    (s * (-128.0 - zp)).abs().max((s * (127.0 - zp)).abs())
}

impl IntegerLstm {
    /// Quantizes every operand; returns the state variables (with the operator).
    fn quantize(
        &self,
        model: &mut Model,
        ranges: &Ranges,
        report: &mut Report,
    ) -> Result<[(usize, usize); 2]> {
        let sg = &model.subgraphs[self.at.si];
        let op = &sg.operators[self.at.oi];
        let variant = Variant::of(model, self.at.si, op).map_err(|why| self.at.internal(&why))?;
        let in_q = sg.tensors[self.x]
            .quant
            .clone()
            .ok_or_else(|| self.at.internal("input has no parameters"))?;
        let s_in = in_q.scale[0];
        let out_q = sg.tensors[self.y]
            .quant
            .clone()
            .ok_or_else(|| self.at.internal("output has no parameters"))?;
        let w = self.quantize_weights(model, report)?;
        // Layer norm: coefficients int16 symmetric, the bias at s_norm · 2^-10.
        let norm = if variant.layer_norm {
            self.quantize_int16(model, &LAYER_NORMS, "layer norm", report)?
        } else {
            [None; 4]
        };
        let bias_scale: Vec<Option<f32>> = (0..4)
            .map(|g| match norm[g] {
                Some((_, s)) => Some(s * 2f32.powi(-10)),
                None => w[INPUT_WEIGHTS[g]].map(|(_, s)| s_in * s),
            })
            .collect();
        self.quantize_biases(model, &bias_scale, report)?;
        let peep = if variant.peephole {
            self.quantize_int16(model, &PEEPHOLES, "peephole", report)?
        } else {
            [None; 4]
        };
        let hidden_q = if variant.projection {
            let hq = QuantParams::per_tensor(HIDDEN_SCALE, 0);
            self.quantize_projection(model, HIDDEN_SCALE, report)?;
            hq
        } else {
            out_q.clone()
        };
        let states = self.quantize_states(model, ranges, &out_q, report)?;
        // Gate intermediates: Q3.12 without layer norm (the kernel fixes it); with layer
        // norm the scale that holds the largest pre-normalisation value the quantized
        // operands can produce (never saturates; the normalisation is scale-free).
        let cell_scale = model.subgraphs[self.at.si].tensors[states[1].0]
            .quant
            .as_ref()
            .map_or(0.0, |q| q.scale[0]);
        let gate_q: Vec<QuantParams> = (0..4)
            .map(|g| {
                if !variant.layer_norm {
                    return QuantParams::per_tensor(2f32.powi(-12), 0);
                }
                let bound = self.gate_bound(
                    model,
                    g,
                    [max_abs(&in_q), max_abs(&out_q), cell_scale * 32768.0],
                    &w,
                    peep[g],
                );
                // A gate without operands (CIFG's input gate) is never read: Q3.12.
                let s = if bound > 0.0 && bound.is_finite() {
                    bound / 32767.0
                } else {
                    2f32.powi(-12)
                };
                QuantParams::per_tensor(s, 0)
            })
            .collect();
        self.add_intermediates(model, states[1].0, &gate_q, &hidden_q, report);
        let op = &mut model.subgraphs[self.at.si].operators[self.at.oi];
        if let Some(fb::BuiltinOptions::UnidirectionalSequenceLstmOptions(o)) =
            &mut op.builtin_options
        {
            o.asymmetric_quantize_inputs = false;
        }
        Ok(states)
    }

    /// The largest |pre-activation| of gate `g` (0 input, 1 forget, 2 cell, 3 output)
    /// before layer norm: `max_row Σ|w_in|·max|x| + Σ|w_rec|·max|h| + |p|·max|c|` over
    /// the quantized weights; `max_abs` = [input, output state, cell].
    fn gate_bound(
        &self,
        model: &Model,
        g: usize,
        max_abs: [f32; 3],
        w: &[Option<(usize, f32)>; 9],
        peep: Option<(usize, f32)>,
    ) -> f32 {
        let sg = &model.subgraphs[self.at.si];
        let rows = |t: usize, s: f32| -> Vec<f32> {
            let tensor = &sg.tensors[t];
            let cols = tensor.shape.last().copied().unwrap_or(1).max(1) as usize;
            let data = model.tensor_data(tensor);
            let vals: Vec<f32> = match tensor.dtype {
                TensorType::Int16 => data
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 * s)
                    .collect(),
                _ => data.iter().map(|&b| (b as i8) as f32 * s).collect(),
            };
            let cols = if tensor.shape.len() == 1 { 1 } else { cols };
            vals.chunks(cols)
                .map(|r| r.iter().map(|v| v.abs()).sum())
                .collect()
        };
        let mut total: Vec<f32> = Vec::new();
        let mut add = |v: Vec<f32>, m: f32| {
            if total.is_empty() {
                total = vec![0.0; v.len()];
            }
            for (t, x) in total.iter_mut().zip(v) {
                *t += x * m;
            }
        };
        if let Some((t, s)) = w[INPUT_WEIGHTS[g]] {
            add(rows(t, s), max_abs[0]);
        }
        if let Some((t, s)) = w[RECURRENT_WEIGHTS[g]] {
            add(rows(t, s), max_abs[1]);
        }
        if let Some((t, s)) = peep {
            add(rows(t, s), max_abs[2]);
        }
        total.into_iter().fold(0.0, f32::max)
    }

    /// Gate weights: int8 symmetric, per tensor; returns each present position's new
    /// tensor and scale (CIFG: 1 and 5 absent).
    fn quantize_weights(
        &self,
        model: &mut Model,
        report: &mut Report,
    ) -> Result<[Option<(usize, f32)>; 9]> {
        let si = self.at.si;
        let mut w = [None; 9];
        for pos in INPUT_WEIGHTS.into_iter().chain(RECURRENT_WEIGHTS) {
            let op = &model.subgraphs[si].operators[self.at.oi];
            if input(op, pos).is_none() && (pos == 1 || pos == 5) {
                continue;
            }
            let t = self.at.input(model, pos, "missing gate weight")?;
            w[pos] = Some(self.quantize_int8(model, t, pos, "weight", report));
        }
        Ok(w)
    }

    /// Replaces input `pos` (float tensor `t`) by an int8 symmetric per-tensor copy.
    fn quantize_int8(
        &self,
        model: &mut Model,
        t: usize,
        pos: usize,
        role: &str,
        report: &mut Report,
    ) -> (usize, f32) {
        let si = self.at.si;
        let tensor = model.subgraphs[si].tensors[t].clone();
        let values = math::f32_values(model.tensor_data(&tensor));
        let ch = Channels::new(&tensor.shape, None);
        let scales = math::symmetric_scales(&values, ch, 127.0);
        let q = math::quantize_symmetric(&values, ch, &scales, 127.0);
        let ni = new_const(
            model,
            si,
            &tensor,
            TensorType::Int8,
            q.iter().map(|&v| v as u8).collect(),
            QuantParams::per_tensor(scales[0], 0),
        );
        self.at.set_input(model, pos, ni);
        record(report, si, ni, &model.subgraphs[si].tensors[ni], role, None);
        (ni, scales[0])
    }

    /// Peephole weights or layer-norm coefficients (`positions`, one per gate, absent
    /// ones skipped): int16 symmetric per tensor, as TF's quantizer writes them.
    fn quantize_int16(
        &self,
        model: &mut Model,
        positions: &[Option<usize>; 4],
        role: &str,
        report: &mut Report,
    ) -> Result<[Option<(usize, f32)>; 4]> {
        let si = self.at.si;
        let mut out = [None; 4];
        for (g, &pos) in positions.iter().enumerate() {
            let Some(pos) = pos else { continue };
            let Some(t) = input(&model.subgraphs[si].operators[self.at.oi], pos) else {
                continue;
            };
            let tensor = model.subgraphs[si].tensors[t].clone();
            if tensor.dtype != TensorType::Float32 || !model.is_constant(&tensor) {
                return Err(self
                    .at
                    .internal(&format!("{role} operand {pos} is not float32")));
            }
            let values = math::f32_values(model.tensor_data(&tensor));
            let m = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if m > 0.0 { m / 32767.0 } else { 1.0 };
            let q: Vec<u8> = values
                .iter()
                .flat_map(|&v| ((v / s).round().clamp(-32767.0, 32767.0) as i16).to_le_bytes())
                .collect();
            let ni = new_const(
                model,
                si,
                &tensor,
                TensorType::Int16,
                q,
                QuantParams::per_tensor(s, 0),
            );
            self.at.set_input(model, pos, ni);
            record(report, si, ni, &model.subgraphs[si].tensors[ni], role, None);
            out[g] = Some((ni, s));
        }
        Ok(out)
    }

    /// Gate biases (absent ones skipped: CIFG): int32 at `scale[g]` (s_input ×
    /// s_input_to_gate_weight, or s_norm × 2^-10 with layer norm).
    fn quantize_biases(
        &self,
        model: &mut Model,
        scale: &[Option<f32>],
        report: &mut Report,
    ) -> Result<()> {
        for (k, pos) in BIASES.into_iter().enumerate() {
            if input(&model.subgraphs[self.at.si].operators[self.at.oi], pos).is_none() && k == 0 {
                continue;
            }
            let t = self.at.input(model, pos, "missing gate bias")?;
            let s = scale[k].ok_or_else(|| self.at.internal("gate bias without a scale"))?;
            self.quantize_int32(model, t, pos, s, report);
        }
        Ok(())
    }

    /// Replaces input `pos` (float tensor `t`) by int32 at scale `s`.
    fn quantize_int32(&self, model: &mut Model, t: usize, pos: usize, s: f32, report: &mut Report) {
        let si = self.at.si;
        let tensor = model.subgraphs[si].tensors[t].clone();
        let values = math::f32_values(model.tensor_data(&tensor));
        let lim = i32::MAX as f64;
        let q: Vec<u8> = values
            .iter()
            .flat_map(|&b| ((b as f64 / s as f64).round().clamp(-lim, lim) as i32).to_le_bytes())
            .collect();
        let ni = new_const(
            model,
            si,
            &tensor,
            TensorType::Int32,
            q,
            QuantParams::per_tensor(s, 0),
        );
        self.at.set_input(model, pos, ni);
        record(
            report,
            si,
            ni,
            &model.subgraphs[si].tensors[ni],
            "bias",
            None,
        );
    }

    /// Projection: int8 symmetric weights (16), the optional bias (17) int32 at
    /// `s_projection × s_hidden`.
    fn quantize_projection(
        &self,
        model: &mut Model,
        s_hidden: f32,
        report: &mut Report,
    ) -> Result<()> {
        let t = self.at.input(model, 16, "missing projection weights")?;
        let (_, s) = self.quantize_int8(model, t, 16, "weight", report);
        if let Some(b) = input(&model.subgraphs[self.at.si].operators[self.at.oi], 17) {
            self.quantize_int32(model, b, 17, s * s_hidden, report);
        }
        Ok(())
    }

    /// State variables: int8 output state with the output's parameters; int16 cell state
    /// with a power-of-two scale. Their (zero) initial data stay implicit: LiteRT resets
    /// an int8 variable to its zero point, others to 0. Returns (output state, cell).
    fn quantize_states(
        &self,
        model: &mut Model,
        ranges: &Ranges,
        out_q: &QuantParams,
        report: &mut Report,
    ) -> Result<[(usize, usize); 2]> {
        let (si, oi) = (self.at.si, self.at.oi);
        let h = self.at.input(model, OUTPUT_STATE, "no output state")?;
        let c = self.at.input(model, CELL_STATE, "no cell state")?;
        let c_range = ranges
            .get(si, c)
            .map(|r| (r.min, r.max))
            .ok_or_else(|| self.at.internal("cell state has no range"))?;
        let k = cell_scale_exponent(c_range.0.abs().max(c_range.1.abs()));
        let h_range = ranges.get(si, h).map(|r| (r.min, r.max));
        for (t, dtype, qp, range) in [
            (h, TensorType::Int8, out_q.clone(), h_range),
            (
                c,
                TensorType::Int16,
                QuantParams::per_tensor(2f32.powi(k), 0),
                Some(c_range),
            ),
        ] {
            let tensor = &mut model.subgraphs[si].tensors[t];
            tensor.dtype = dtype;
            tensor.quant = Some(qp);
            tensor.buffer = 0;
            let tensor = tensor.clone();
            record(report, si, t, &tensor, "state", range);
        }
        Ok([(h, oi), (c, oi)])
    }

    /// Intermediates: the four gates (int16, `gate_q`), then the hidden value (int8,
    /// `hidden_q`: the output's parameters without projection).
    fn add_intermediates(
        &self,
        model: &mut Model,
        cell: usize,
        gate_q: &[QuantParams],
        hidden_q: &QuantParams,
        report: &mut Report,
    ) {
        let si = self.at.si;
        let cell_shape = model.subgraphs[si].tensors[cell].shape.clone();
        let name = model.subgraphs[si].tensors[self.y].name.clone();
        let mut inter = Vec::with_capacity(5);
        for (i, gate) in [
            "input_gate",
            "forget_gate",
            "cell_gate",
            "output_gate",
            "hidden",
        ]
        .iter()
        .enumerate()
        {
            let (dtype, qp) = match gate_q.get(i) {
                Some(q) => (TensorType::Int16, q.clone()),
                None => (TensorType::Int8, hidden_q.clone()),
            };
            let mut t = Tensor::new(
                format!("{name}/intermediate/{gate}"),
                dtype,
                cell_shape.clone(),
            );
            t.quant = Some(qp);
            let ti = model.subgraphs[si].add_tensor(t) as usize;
            record(
                report,
                si,
                ti,
                &model.subgraphs[si].tensors[ti].clone(),
                "intermediate",
                None,
            );
            inter.push(ti as i32);
        }
        model.subgraphs[si].operators[self.at.oi].intermediates = Some(inter);
    }
}

/// Other readers of a state variable made integer (the converter lets a GRU's initial
/// state read the LSTM's output-state variable, which the LSTM updates in place) read it
/// through a DEQUANTIZE placed right before them, so they see the same values as before.
/// A reader after the LSTM of its output state reads the last time step of the LSTM's
/// output instead (the same values): a DEQUANTIZE of the variable itself has no data
/// dependency on the LSTM, and LiteRT's XNNPACK delegate runs it before the LSTM.
fn dequantize_shared_states(model: &mut Model, si: usize, states: &[(usize, usize)]) {
    if states.is_empty() {
        return;
    }
    let old = std::mem::take(&mut model.subgraphs[si].operators);
    let owners: Vec<crate::ir::Operator> = states.iter().map(|&(_, o)| old[o].clone()).collect();
    let mut ops = Vec::with_capacity(old.len());
    for (oi, mut op) in old.into_iter().enumerate() {
        for pos in 0..op.inputs.len() {
            let Ok(t) = usize::try_from(op.inputs[pos]) else {
                continue;
            };
            let Some((k, &(_, owner))) = states
                .iter()
                .enumerate()
                .find(|&(_, &(s, owner))| s == t && owner != oi)
            else {
                continue;
            };
            let mut t = t;
            if owner < oi
                && let Some(last) = last_step(model, si, &owners[k], t, &mut ops)
            {
                t = last;
            }
            let src = model.subgraphs[si].tensors[t].clone();
            let mut f = Tensor::new(
                format!("{}/dequantized", src.name),
                TensorType::Float32,
                src.shape.clone(),
            );
            f.shape_signature = src.shape_signature.clone();
            let fi = model.subgraphs[si].add_tensor(f);
            let code = model.ensure_opcode(Op::Dequantize, 1);
            ops.push(crate::ir::Operator::new(code, vec![t as i32], vec![fi]));
            op.inputs[pos] = fi;
        }
        ops.push(op);
    }
    model.subgraphs[si].operators = ops;
}

/// The last time step of the output of LSTM `lstm` as a new int8 tensor `[batch,
/// units]` (a STRIDED_SLICE appended to `ops`): what its output-state variable `h` holds
/// once the LSTM ran. `None` (the caller reads the variable) unless `h` is the LSTM's
/// output state and the shapes are static and fit.
fn last_step(
    model: &mut Model,
    si: usize,
    lstm: &crate::ir::Operator,
    h: usize,
    ops: &mut Vec<crate::ir::Operator>,
) -> Option<usize> {
    if input(lstm, OUTPUT_STATE) != Some(h) {
        return None;
    }
    let time_major = match &lstm.builtin_options {
        Some(fb::BuiltinOptions::UnidirectionalSequenceLstmOptions(o)) => o.time_major,
        _ => return None,
    };
    let y = lstm
        .outputs
        .first()
        .and_then(|&t| usize::try_from(t).ok())?;
    let sg = &model.subgraphs[si];
    let (out, var) = (sg.tensors[y].clone(), &sg.tensors[h]);
    let [a, b, units] = out.shape[..] else {
        return None;
    };
    let (batch, steps) = if time_major { (b, a) } else { (a, b) };
    if batch <= 0 || steps <= 0 || var.shape != [batch, units] || out.quant != var.quant {
        return None;
    }
    let (begin, end, shrink) = if time_major {
        ([steps - 1, 0, 0], [steps, batch, units], 1)
    } else {
        ([0, steps - 1, 0], [batch, steps, units], 2)
    };
    let mut operand = |name: &str, v: [i32; 3]| {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let buffer = model.add_buffer(bytes);
        let mut t = Tensor::new(format!("{}/{name}", out.name), TensorType::Int32, vec![3]);
        t.buffer = buffer;
        model.subgraphs[si].add_tensor(t)
    };
    let ins = vec![
        operand("last_step_begin", begin),
        operand("last_step_end", end),
        operand("last_step_strides", [1, 1, 1]),
    ];
    let mut last = Tensor::new(
        format!("{}/last_step", out.name),
        TensorType::Int8,
        vec![batch, units],
    );
    last.quant = out.quant.clone();
    let li = model.subgraphs[si].add_tensor(last);
    let code = model.ensure_opcode(Op::StridedSlice, 2);
    let mut slice = crate::ir::Operator::new(code, [vec![y as i32], ins].concat(), vec![li]);
    slice.builtin_options = Some(fb::BuiltinOptions::StridedSliceOptions(Box::new(
        fb::StridedSliceOptions {
            shrink_axis_mask: shrink,
            ..Default::default()
        },
    )));
    ops.push(slice);
    Some(li as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_scale_is_the_smallest_power_of_two_covering_the_range() {
        assert_eq!(cell_scale_exponent(0.0), -15);
        assert_eq!(cell_scale_exponent(1.0), -15);
        assert_eq!(cell_scale_exponent(1.01), -14);
        assert_eq!(cell_scale_exponent(3.0), -13);
        assert_eq!(cell_scale_exponent(64.0), -9);
        assert_eq!(cell_scale_exponent(65.0), -8);
    }

    /// A model with one LSTM reading a tensor at each position in `present` (shapes for
    /// `cells` cells and `outputs` outputs), absent elsewhere.
    fn lstm_with(present: &[usize], cells: i32, outputs: i32) -> Model {
        let mut sg = crate::ir::Subgraph::default();
        let mut inputs = vec![-1i32; 24];
        for &pos in present {
            let shape = match pos {
                1..=4 => vec![cells, 8],
                5..=8 => vec![cells, outputs],
                16 => vec![outputs, cells],
                17 | 18 => vec![1, outputs],
                19 => vec![1, cells],
                _ => vec![cells],
            };
            inputs[pos] = sg.add_tensor(Tensor::new(format!("t{pos}"), TensorType::Float32, shape));
        }
        let mut model = Model::default();
        sg.operators
            .push(crate::ir::Operator::new(0, inputs, vec![]));
        model.subgraphs.push(sg);
        model
    }

    #[test]
    fn lstm_variants_are_recognised_and_malformed_ones_refused() {
        let plain: Vec<usize> = (0..9).chain(12..16).chain(18..20).collect();
        let with = |extra: &[usize], without: &[usize]| -> Vec<usize> {
            plain
                .iter()
                .chain(extra)
                .copied()
                .filter(|p| !without.contains(p))
                .collect()
        };
        let of = |present: &[usize], outputs: i32| {
            let m = lstm_with(present, 32, outputs);
            Variant::of(&m, 0, &m.subgraphs[0].operators[0])
        };
        let v = |cifg, peephole, layer_norm, projection| Variant {
            cifg,
            peephole,
            layer_norm,
            projection,
        };
        assert_eq!(of(&plain, 32), Ok(v(false, false, false, false)));
        assert_eq!(
            of(&with(&[], &[1, 5, 12]), 32),
            Ok(v(true, false, false, false))
        );
        assert_eq!(
            of(&with(&[9, 10, 11], &[]), 32),
            Ok(v(false, true, false, false))
        );
        assert_eq!(
            of(&with(&[10, 11, 21, 22, 23], &[1, 5, 12]), 32),
            Ok(v(true, true, true, false))
        );
        assert_eq!(of(&with(&[16], &[]), 10), Ok(v(false, false, false, true)));
        // Projecting to every cell keeps the peepholes whole.
        assert_eq!(
            of(&with(&[9, 10, 11, 16, 17], &[]), 32),
            Ok(v(false, true, false, true))
        );
        let err = |present: &[usize], outputs: i32| of(present, outputs).unwrap_err();
        assert!(err(&with(&[9, 10, 11, 16, 17], &[]), 10).contains("first 10 cells only"));
        assert!(err(&with(&[], &[5]), 32).contains("input gate"));
        assert!(err(&with(&[], &[1]), 32).contains("input gate"));
        assert!(err(&with(&[9, 10], &[]), 32).contains("incomplete peephole"));
        assert!(err(&with(&[10, 11], &[]), 32).contains("incomplete peephole"));
        assert!(err(&with(&[21, 22, 23], &[]), 32).contains("incomplete layer-norm"));
        assert!(err(&with(&[20, 22, 23], &[]), 32).contains("incomplete layer-norm"));
        assert!(err(&with(&[17], &[]), 32).contains("projection bias"));
    }

    #[test]
    fn only_lstm_and_svdf_operands_beyond_the_input_are_owned() {
        assert!(!own_operand(Op::UnidirectionalSequenceLstm, 0));
        assert!(own_operand(Op::UnidirectionalSequenceLstm, 19));
        assert!(!own_operand(Op::Svdf, 0));
        assert!((1..=4).all(|pos| own_operand(Op::Svdf, pos)));
        assert!(!own_operand(Op::Rnn, 1));
        assert!(!own_operand(Op::FullyConnected, 1));
    }

    #[test]
    fn every_hybrid_operator_reads_its_key_weight_as_int8() {
        for op in [
            Op::UnidirectionalSequenceLstm,
            Op::BidirectionalSequenceLstm,
            Op::Svdf,
            Op::Rnn,
            Op::UnidirectionalSequenceRnn,
            Op::BidirectionalSequenceRnn,
        ] {
            assert!(hybrid_name(op).is_some(), "{op:?}");
            let (weights, key) = hybrid_weights(op);
            assert!(weights.contains(&key), "{op:?}: key {key} not quantized");
        }
        assert_eq!(hybrid_weights(Op::FullyConnected).0, &[] as &[usize]);
    }
}
