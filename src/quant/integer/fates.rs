//! Step 1: which operators are quantized. An operator is quantized when the rule table
//! has a kernel for the bit width and every real-valued input it needs has a range (or
//! is a constant); otherwise it stays float with the reason. Singular operands that
//! reach the integer zero keep their operator float ([`keep_singular_operands_float`]);
//! groups of value-moving operators between float tensors stay float
//! ([`keep_float_moves`]); `--strict` turns any float operator into an error ([`strict_check`]).

use crate::calib::Ranges;
use crate::error::{Error, Loc, Result};
use crate::fb::{self, TensorType};
use crate::ir::{Model, Operator};
use crate::rules::{self, Output, Role, Rule};

use super::super::report::{Fate, FloatReason, Operand};
use super::super::scheme::{Width, activation_params};
use super::{IntegerOptions, tensor_ref};

/// Decides which operators are quantized.
pub(super) fn plan_fates(model: &Model, ranges: &Ranges, opts: &IntegerOptions) -> Vec<Vec<Fate>> {
    let bits = opts.width.bits();
    model
        .subgraphs
        .iter()
        .enumerate()
        .map(|(si, sg)| {
            sg.operators
                .iter()
                .map(|op| fate_of(model, si, op, ranges, bits))
                .collect()
        })
        .collect()
}

/// The fate of one operator of subgraph `si`.
pub(super) fn fate_of(model: &Model, si: usize, op: &Operator, ranges: &Ranges, bits: u32) -> Fate {
    let code = model.code(op);
    let float = |reason: FloatReason| Fate::Float { reason };
    if rules::is_custom(code.builtin) {
        return float(FloatReason::CustomOp {
            op: model.op_display_name(op),
        });
    }
    let Some(rule) = rules::rule_for(code.builtin) else {
        if let Some((_, sub)) = op.subgraph_refs().first() {
            // STABLEHLO_COMPOSITE, WHILE, IF...: each subgraph is quantized on its own,
            // so the boundary stays float. (LiteRT 2.3 also runs a composite whose
            // integer boundary tensors match on both sides; tflquant does not write
            // that yet.)
            return float(FloatReason::CallsSubgraph {
                op: model.op_display_name(op),
                subgraph: *sub as usize,
            });
        }
        return float(FloatReason::NoRule {
            op: model.op_display_name(op),
        });
    };
    if !rule.supports(bits) {
        return float(FloatReason::NoKernel {
            bits,
            op: fb::op_name(rule.op),
            why: rule.why,
        });
    }
    let check = OperandCheck {
        model,
        si,
        op,
        rule,
        ranges,
        bits,
    };
    check.all().map_or_else(float, |()| Fate::Quantized)
}

/// Every real-valued operand of one operator must be float32 and, unless constant,
/// calibrated.
struct OperandCheck<'a> {
    model: &'a Model,
    si: usize,
    op: &'a Operator,
    rule: &'a Rule,
    ranges: &'a Ranges,
    bits: u32,
}

impl OperandCheck<'_> {
    fn all(&self) -> std::result::Result<(), FloatReason> {
        for (pos, &t) in self.op.inputs.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            self.input(pos, t)?;
        }
        self.outputs()
    }

    fn is_constant(&self, t: usize) -> bool {
        self.model
            .is_constant(&self.model.subgraphs[self.si].tensors[t])
    }

    fn input(&self, pos: usize, t: usize) -> std::result::Result<(), FloatReason> {
        let (model, rule) = (self.model, self.rule);
        let tensor = &model.subgraphs[self.si].tensors[t];
        let constant = model.is_constant(tensor);
        match rule.integer_role(pos) {
            Role::NonReal => return Ok(()),
            _ if tensor.dtype != TensorType::Float32 => {
                return Err(FloatReason::NotFloat32 {
                    operand: Operand::Input(pos),
                    name: tensor.name.clone(),
                    dtype: fb::dtype_name(tensor.dtype),
                });
            }
            Role::Coefficient if !constant && self.bits == 16 => {
                return Err(FloatReason::ComputedCoefficient {
                    pos,
                    name: tensor.name.clone(),
                });
            }
            // Both operands are activations in full-integer BATCH_MATMUL.
            Role::Weight { .. } | Role::Bias { .. } if !constant => {
                return Err(FloatReason::ComputedWeight {
                    pos,
                    name: tensor.name.clone(),
                });
            }
            Role::Bias { input, weight } => self.bias(pos, t, input, weight)?,
            _ => {}
        }
        if !constant && self.ranges.get(self.si, t).is_none() {
            return Err(FloatReason::NoRange {
                operand: Operand::Input(pos),
                name: tensor.name.clone(),
            });
        }
        Ok(())
    }

    /// The bias scale is input scale × weight scale: both must exist, the input as a
    /// computed (calibrated) tensor.
    fn bias(
        &self,
        pos: usize,
        t: usize,
        input: usize,
        weight: usize,
    ) -> std::result::Result<(), FloatReason> {
        let tensor = &self.model.subgraphs[self.si].tensors[t];
        let computed = |i: usize| tensor_ref(&self.op.inputs, i).map(|t| !self.is_constant(t));
        if computed(input) != Some(true) || computed(weight).is_none() {
            return Err(FloatReason::BiasWithoutOperands {
                pos,
                name: tensor.name.clone(),
                input,
                weight,
            });
        }
        if tensor.shape.len() != 1 {
            return Err(FloatReason::BiasNotVector {
                pos,
                name: tensor.name.clone(),
                shape: tensor.shape.clone(),
            });
        }
        Ok(())
    }

    fn outputs(&self) -> std::result::Result<(), FloatReason> {
        for &t in &self.op.outputs {
            let Ok(t) = usize::try_from(t) else { continue };
            let tensor = &self.model.subgraphs[self.si].tensors[t];
            match self.rule.output {
                Output::NonReal => {}
                _ if tensor.dtype != TensorType::Float32 => {
                    return Err(FloatReason::NotFloat32 {
                        operand: Operand::Output,
                        name: tensor.name.clone(),
                        dtype: fb::dtype_name(tensor.dtype),
                    });
                }
                Output::Free if self.ranges.get(self.si, t).is_none() => {
                    return Err(FloatReason::NoRange {
                        operand: Operand::Output,
                        name: tensor.name.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `--strict`: every operator that would still compute on float32 tensors is an error.
pub(super) fn strict_check(model: &Model, fates: &[Vec<Fate>]) -> Result<()> {
    let mut bad = Vec::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            let Fate::Float { reason } = &fates[si][oi] else {
                continue;
            };
            let touches_float = op
                .inputs
                .iter()
                .chain(&op.outputs)
                .filter_map(|&t| usize::try_from(t).ok())
                .any(|t| sg.tensors[t].dtype == TensorType::Float32);
            if touches_float {
                bad.push(format!(
                    "  subgraph {si}, operator {oi} ({}): {reason}",
                    model.op_display_name(op)
                ));
            }
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::unsupported(
        Loc::model(),
        format!(
            "--strict: {} operator(s) would stay float:\n{}\n(drop --strict to keep them float between DEQUANTIZE/QUANTIZE)",
            bad.len(),
            bad.join("\n")
        ),
    ))
}

/// A singular operand whose calibrated values come within this many quantization steps
/// of 0 is treated as reaching 0 (issue #15).
const SINGULAR_MARGIN_STEPS: f32 = 4.0;

/// Numerically safe defaults: where a singular operand's (`rules::SINGULAR_OPERANDS`)
/// calibrated values reach the integer zero (the smallest magnitude seen is below
/// [`SINGULAR_MARGIN_STEPS`] steps of its parameters: unseen data go lower than the
/// calibration data),
/// small values would round to exactly 0 and the operator would give ±inf or NaN. The
/// operator, and the operators producing that operand (through same-scale operators
/// such as RESHAPE, up to the first one that computes), stay float, with the reason: the
/// operand then never passes through an integer tensor.
pub(super) fn keep_singular_operands_float(
    model: &Model,
    ranges: &Ranges,
    width: Width,
    fates: &mut [Vec<Fate>],
) {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let producers = sg.producers();
        for (oi, op) in sg.operators.iter().enumerate() {
            let kind = model.builtin(op);
            if let Some(pos) = rules::singular_operand(kind) {
                let Some(t) = tensor_ref(&op.inputs, pos) else {
                    continue;
                };
                let Some((min, max, step)) = reaches_zero(model, si, t, ranges, width) else {
                    continue;
                };
                let why = format!(
                    "input {pos} {:?} of {} reaches 0 (calibrated [{min}, {max}], within \
                     {SINGULAR_MARGIN_STEPS} steps of 0, step {step:e}): integer rounding would \
                     make it exactly 0 and the result ±inf/NaN",
                    sg.tensors[t].name,
                    fb::op_name(kind),
                );
                fates[si][oi] = Fate::Float {
                    reason: FloatReason::SingularOperand { why: why.clone() },
                };
                keep_producers_float(model, si, &producers, (oi, t), &why, &mut fates[si]);
            }
        }
    }
}

/// The calibrated range and step of computed tensor `t` when its smallest magnitude
/// comes within [`SINGULAR_MARGIN_STEPS`] steps of the integer zero at `width`; `None` for constants, uncalibrated tensors
/// and ranges that stay clear of 0.
fn reaches_zero(
    model: &Model,
    si: usize,
    t: usize,
    ranges: &Ranges,
    width: Width,
) -> Option<(f32, f32, f32)> {
    let r = ranges.get(si, t)?;
    if model.is_constant(&model.subgraphs[si].tensors[t]) {
        return None;
    }
    let step = activation_params(r.min, r.max, width).scale[0];
    let smallest = if r.min <= 0.0 && r.max >= 0.0 {
        0.0
    } else {
        r.min.abs().min(r.max.abs())
    };
    // Issue #15: within half a step the calibration data themselves round to 0; a
    // minimum a few steps above 0 is reached by unseen data (held-out digits took
    // singular_frontend's divisor to 0 from 1.2 steps).
    (smallest < SINGULAR_MARGIN_STEPS * step).then_some((r.min, r.max, step))
}

/// Walks up from operand `t` of operator `oi` through same-scale operators to the one
/// that computes it, keeping each float.
fn keep_producers_float(
    model: &Model,
    si: usize,
    producers: &[Option<usize>],
    (oi, t): (usize, usize),
    why: &str,
    fates: &mut [Fate],
) {
    let sg = &model.subgraphs[si];
    let mut cur = t;
    while let Some(p) = producers[cur] {
        if fates[p] == Fate::Quantized {
            fates[p] = Fate::Float {
                reason: FloatReason::ProducesSingularOperand {
                    consumer: oi,
                    why: why.to_string(),
                },
            };
        }
        let shared = rules::rule_for(model.builtin(&sg.operators[p]))
            .is_some_and(|r| r.output == Output::Shared);
        match tensor_ref(&sg.operators[p].inputs, 0) {
            Some(next) if shared => cur = next,
            _ => break,
        }
    }
}

/// Float islands of value-moving operators (issue #15): a connected group of quantized
/// operators that only move values ([`rules::moves_values`]: RESHAPE, TRANSPOSE,
/// STRIDED_SLICE, TILE, GATHER, PAD, MAX_POOL_2D...) whose every computed input comes
/// from a float tensor (a model input of the float interface or a float operator's
/// output) and whose every output is read only by float operators or is a model output.
/// Quantized, such a group computes nothing: it would read a QUANTIZE and end in a
/// DEQUANTIZE, and its outputs would be its float outputs rounded to 8 bits. So it
/// stays float, exact and with two operators fewer (TF's converter leaves such groups
/// float too). Subgraph 0 with the float interface only: other subgraphs' boundaries
/// and integer interfaces are integer by choice.
pub(super) fn keep_float_moves(model: &Model, fates: &mut [Vec<Fate>]) {
    let (Some(sg), Some(fates)) = (model.subgraphs.first(), fates.first_mut()) else {
        return;
    };
    let n = sg.operators.len();
    let member: Vec<bool> = (0..n)
        .map(|oi| {
            fates[oi] == Fate::Quantized && rules::moves_values(model.builtin(&sg.operators[oi]))
        })
        .collect();
    let producers = sg.producers();
    let consumers = sg.consumers();
    // Union-find over members joined by the tensors between them.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (oi, op) in sg.operators.iter().enumerate() {
        if !member[oi] {
            continue;
        }
        for t in op.inputs.iter().filter_map(|&t| usize::try_from(t).ok()) {
            if let Some(p) = producers.get(t).copied().flatten().filter(|&p| member[p]) {
                let (a, b) = (root(&mut parent, oi), root(&mut parent, p));
                parent[a] = b;
            }
        }
    }
    let is_input = |t: usize| sg.inputs.iter().any(|&i| usize::try_from(i) == Ok(t));
    // WHILE/IF count as integer boundaries: `loops` carries their tensors as integers,
    // so a group between a loop and the float model would still need its QUANTIZE (in
    // int16x8 a float→int16 one where the group would have requantized int16→int16).
    let loop_op = |oi: usize| {
        matches!(
            model.builtin(&sg.operators[oi]),
            fb::BuiltinOperator::While | fb::BuiltinOperator::If
        )
    };
    // Per group: (every boundary is float, at least one computed input).
    let mut ok = vec![(true, false); n];
    for (oi, op) in sg.operators.iter().enumerate() {
        if !member[oi] {
            continue;
        }
        let g = root(&mut parent, oi);
        let rule = rules::rule_for(model.builtin(op));
        for (pos, &t) in op.inputs.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            let real = rule.is_some_and(|r| r.integer_role(pos) != Role::NonReal);
            if !real || model.is_constant(&sg.tensors[t]) {
                continue;
            }
            match producers.get(t).copied().flatten() {
                Some(p) if member[p] => {}
                Some(p) if matches!(fates[p], Fate::Float { .. }) && !loop_op(p) => ok[g].1 = true,
                None if is_input(t) && !sg.tensors[t].is_variable => ok[g].1 = true,
                _ => ok[g].0 = false,
            }
        }
        for t in op.outputs.iter().filter_map(|&t| usize::try_from(t).ok()) {
            let read_float = consumers[t]
                .iter()
                .all(|&(c, _)| member[c] || matches!(fates[c], Fate::Float { .. }) && !loop_op(c));
            if !read_float {
                ok[g].0 = false;
            }
        }
    }
    for oi in 0..n {
        if !member[oi] {
            continue;
        }
        let g = root(&mut parent, oi);
        if ok[g] == (true, true) {
            fates[oi] = Fate::Float {
                reason: FloatReason::MovesFloatValues,
            };
        }
    }
}
