//! Full-integer quantization: int8 (int8 activations and weights, int32 biases) and
//! 16x8 (int16 activations, int8 weights, int64 or int32 biases) from calibrated ranges.
//!
//! Decide, then apply:
//! 1. **Fates** ([`plan_fates`]): every operator is quantized when the rule table has a
//!    kernel for the bit width and every real-valued input it needs has a range (or is
//!    a constant); otherwise it stays float, with the reason.
//! 2. **Parameters** ([`plan_params`]): activations of quantized operators get
//!    parameters from their ranges; operators whose kernel needs equal input and output
//!    parameters join their tensors into one group (union-find) whose range is the union
//!    of the members' ranges; fixed outputs (LOGISTIC, SOFTMAX...) impose theirs on the
//!    group; a member that cannot take a group's fixed parameters is requantized on that
//!    edge (a QUANTIZE int→int).
//! 3. **Apply** ([`apply`]): every activation has a float and an integer version; which
//!    one keeps the original tensor index depends on its producer and on the model
//!    interface (subgraph inputs/outputs keep their index so signatures stay right).
//!    Quantized operators read and write integer versions, float operators float ones,
//!    and QUANTIZE/DEQUANTIZE operators are placed right after the producer. Constants
//!    become new integer tensors (weights per channel, biases at `s_in × s_w`,
//!    constant activations with their own range), one per distinct parameter set, so a
//!    constant shared by operators that need different parameters is duplicated.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::calib::Ranges;
use crate::calib::observer::{Sentinels, ordinary_min_max};
use crate::error::{Error, Loc, Result};
use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::ir::{Model, Operator, QuantParams, Tensor};
use crate::rules::{self, Output, Role, Rule};

use super::math::{self, Channels};
use super::report::Report;

/// Integer width of activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// int8 activations, int8 weights, int32 biases.
    Int8,
    /// int16 activations (symmetric), int8 weights, int64 (or int32) biases.
    Int16x8,
}

impl Width {
    fn bits(self) -> u32 {
        match self {
            Width::Int8 => 8,
            Width::Int16x8 => 16,
        }
    }
    fn dtype(self) -> TensorType {
        match self {
            Width::Int8 => TensorType::Int8,
            Width::Int16x8 => TensorType::Int16,
        }
    }
}

/// The types of the model's own inputs and outputs (subgraph 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    /// Float inputs and outputs: QUANTIZE after each input, DEQUANTIZE before each output.
    #[default]
    Float,
    /// The inputs and outputs carry int8 (int16 in 16x8) themselves.
    Integer,
    /// uint8 inputs and outputs (zero point + 128), converted by QUANTIZE operators.
    Uint8,
}

/// Options of a full-integer run.
#[derive(Debug, Clone)]
pub struct IntegerOptions {
    pub width: Width,
    pub interface: Interface,
    /// Every operator that computes in float is an error.
    pub strict: bool,
    /// Bias type: 32 or 64 bits (16x8 default 64, as TF's converter).
    pub bias_bits: u32,
    /// One weight scale per tensor instead of one per output channel.
    pub per_tensor: bool,
    /// Trained parameters (QAT) that take precedence over ranges.
    pub overrides: super::qat::Overrides,
}

/// What happens to one operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "fate", rename_all = "kebab-case")]
pub enum Fate {
    Quantized,
    Float { reason: String },
}

/// One operator's fate, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct OpFate {
    pub subgraph: usize,
    pub operator: usize,
    pub op: String,
    #[serde(flatten)]
    pub fate: Fate,
}

/// One tensor's chosen parameters, for the report and `--dump-plan`.
#[derive(Debug, Clone, Serialize)]
pub struct TensorParams {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    /// `activation`, `weight`, `bias`, `constant`.
    pub kind: String,
    pub dtype: String,
    /// Calibrated (or data) range the parameters were derived from.
    pub range: Option<(f32, f32)>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub axis: Option<i32>,
}

/// Runs full-integer quantization on `model` (already folded) with calibrated `ranges`.
pub fn quantize_integer(
    model: &mut Model,
    ranges: &Ranges,
    opts: &IntegerOptions,
    report: &mut Report,
) -> Result<()> {
    // Resource variables (streaming state): one range, one fate, one parameter set per
    // variable (`variables.rs`).
    let ranges = &super::variables::widen_ranges(model, ranges);
    let mut fates = plan_fates(model, ranges, opts);
    // Recurrent hook: which LSTMs the integer kernel runs as tflquant writes them.
    super::recurrent::refine_fates(model, ranges, opts, &mut fates);
    super::variables::consistent_fates(model, &mut fates);
    keep_singular_operands_float(model, ranges, opts.width, &mut fates);
    if opts.strict {
        strict_check(model, &fates)?;
    }
    let mut params = plan_params(model, ranges, &fates, opts)?;
    let unified = super::variables::unify(model, &fates, &params.activations)?;
    params.requant.extend(unified.requant);
    params.constants = unified.constants;
    for (si, sg_fates) in fates.iter().enumerate() {
        for (oi, fate) in sg_fates.iter().enumerate() {
            let op = &model.subgraphs[si].operators[oi];
            report.ops.push(OpFate {
                subgraph: si,
                operator: oi,
                op: model.op_display_name(op),
                fate: fate.clone(),
            });
        }
    }
    for (&(si, ti), p) in &params.activations {
        let t = &model.subgraphs[si].tensors[ti];
        report.tensors.push(TensorParams {
            subgraph: si,
            tensor: ti,
            name: t.name.clone(),
            kind: "activation".into(),
            dtype: fb::dtype_name(opts.width.dtype()).into(),
            range: params.range_of.get(&(si, ti)).copied(),
            scale: p.scale.clone(),
            zero_point: p.zero_point.clone(),
            axis: None,
        });
    }
    report_sentinels(model, ranges, &fates, &params, report);
    apply(model, &fates, &params, opts, report)?;
    // Recurrent hook: weights, biases, states and intermediates of integer LSTMs.
    super::recurrent::apply(model, ranges, report)
}

/// Records every tensor read or written by a quantized operator whose sentinels were
/// kept out of its range, and sums them up in a note.
fn report_sentinels(
    model: &Model,
    ranges: &Ranges,
    fates: &[Vec<Fate>],
    params: &Params,
    report: &mut Report,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            if fates[si][oi] != Fate::Quantized {
                continue;
            }
            for &t in op.inputs.iter().chain(&op.outputs) {
                let Ok(t) = usize::try_from(t) else { continue };
                let tensor = &sg.tensors[t];
                if tensor.dtype != TensorType::Float32 || !seen.insert((si, t)) {
                    continue;
                }
                let (kind, s, range) = if model.is_constant(tensor) {
                    let (r, s) = data_range_with_sentinels(model, tensor);
                    let r = params.const_range.get(&(si, t)).copied().unwrap_or(r);
                    ("constant", s, Some(r))
                } else {
                    let Some(r) = ranges.get(si, t) else { continue };
                    let range = params.range_of.get(&(si, t)).copied();
                    ("activation", r.sentinels, range)
                };
                if s.is_none() {
                    continue;
                }
                report.sentinels.push(super::report::SentinelUse {
                    subgraph: si,
                    tensor: t,
                    name: tensor.name.clone(),
                    kind: kind.into(),
                    below: s.below,
                    above: s.above,
                    range,
                });
            }
        }
    }
    if !report.sentinels.is_empty() {
        let names: Vec<String> = report
            .sentinels
            .iter()
            .map(|u| format!("{:?}", u.name))
            .collect();
        report.note(format!(
            "{} tensor(s) hold sentinels (±inf, ±FLT_MAX, far-out mask values) kept out of \
             their ranges; they saturate to the integer minimum/maximum: {}",
            names.len(),
            names.join(", ")
        ));
    }
}

fn tensor_ref(list: &[i32], pos: usize) -> Option<usize> {
    list.get(pos).and_then(|&t| usize::try_from(t).ok())
}

/// Operands at which an operator has a singularity at 0: LOG and RSQRT inputs, the
/// divisor of DIV (issue #15: an audio front end's LOG turned int8 zeros into -inf).
const SINGULAR_OPERANDS: &[(Op, usize)] = &[(Op::Log, 0), (Op::Rsqrt, 0), (Op::Div, 1)];

/// Numerically safe defaults: where a singular operand's calibrated values reach the
/// integer zero (the smallest magnitude seen is below half a step of its parameters),
/// small values would round to exactly 0 and the operator would give ±inf or NaN. The
/// operator, and the operators producing that operand (through same-scale operators
/// such as RESHAPE, up to the first one that computes), stay float, with the reason: the
/// operand then never passes through an integer tensor.
fn keep_singular_operands_float(
    model: &Model,
    ranges: &Ranges,
    width: Width,
    fates: &mut [Vec<Fate>],
) {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let producers = sg.producers();
        for (oi, op) in sg.operators.iter().enumerate() {
            let kind = model.builtin(op);
            for &(_, pos) in SINGULAR_OPERANDS.iter().filter(|(o, _)| *o == kind) {
                let Some(t) = tensor_ref(&op.inputs, pos) else {
                    continue;
                };
                let tensor = &sg.tensors[t];
                let Some(r) = ranges.get(si, t) else { continue };
                if model.is_constant(tensor) {
                    continue;
                }
                let step = activation_params(r.min, r.max, width).scale[0];
                let smallest = if r.min <= 0.0 && r.max >= 0.0 {
                    0.0
                } else {
                    r.min.abs().min(r.max.abs())
                };
                if smallest >= step / 2.0 {
                    continue;
                }
                let why = format!(
                    "input {pos} {:?} of {} reaches 0 (calibrated [{}, {}], step {step:e}): \
                     integer rounding would make it exactly 0 and the result ±inf/NaN",
                    tensor.name,
                    fb::op_name(kind),
                    r.min,
                    r.max
                );
                fates[si][oi] = Fate::Float {
                    reason: format!("{why}; kept float with its producer"),
                };
                // Walk up through same-scale operators to the one that computes it.
                let mut cur = t;
                while let Some(p) = producers[cur] {
                    if fates[si][p] == Fate::Quantized {
                        fates[si][p] = Fate::Float {
                            reason: format!(
                                "produces the operand of operator {oi}: {why}; kept float"
                            ),
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
        }
    }
}

/// Decides which operators are quantized.
fn plan_fates(model: &Model, ranges: &Ranges, opts: &IntegerOptions) -> Vec<Vec<Fate>> {
    let bits = opts.width.bits();
    model
        .subgraphs
        .iter()
        .enumerate()
        .map(|(si, sg)| {
            sg.operators
                .iter()
                .map(|op| {
                    let code = model.code(op);
                    let float = |reason: String| Fate::Float { reason };
                    if code.builtin == Op::Custom {
                        return float(format!(
                            "{} is a custom operator: its kernel's integer support is \
                             unknown (the custom kernels LiteRT ships take float32 only), \
                             so it stays float between DEQUANTIZE and QUANTIZE",
                            model.op_display_name(op)
                        ));
                    }
                    let Some(rule) = rules::rule_for(code.builtin) else {
                        if let Some((_, sub)) = op.subgraph_refs().first() {
                            // STABLEHLO_COMPOSITE, WHILE, IF...: each subgraph is
                            // quantized on its own, so the boundary stays float. (LiteRT
                            // 2.3 also runs a composite whose integer boundary tensors
                            // match on both sides; tflquant does not write that yet.)
                            return float(format!(
                                "{} calls subgraph {sub}: its boundary tensors stay float \
                                 (each subgraph is quantized on its own; the operators inside \
                                 subgraph {sub} are quantized there, between \
                                 QUANTIZE/DEQUANTIZE)",
                                model.op_display_name(op)
                            ));
                        }
                        return float(format!(
                            "{} has no quantized kernel in tflquant's rule table",
                            model.op_display_name(op)
                        ));
                    };
                    if !rule.supports(bits) {
                        return float(format!(
                            "the runtime has no {} kernel for {}{}",
                            if bits == 8 { "int8" } else { "int16" },
                            fb::op_name(rule.op),
                            if rule.why.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", rule.why)
                            }
                        ));
                    }
                    check_operands(model, si, op, rule, ranges, bits)
                        .map_or_else(float, |()| Fate::Quantized)
                })
                .collect()
        })
        .collect()
}

/// Every real-valued operand must be float32 and, unless constant, calibrated.
fn check_operands(
    model: &Model,
    si: usize,
    op: &Operator,
    rule: &Rule,
    ranges: &Ranges,
    bits: u32,
) -> std::result::Result<(), String> {
    let sg = &model.subgraphs[si];
    for (pos, &t) in op.inputs.iter().enumerate() {
        let Ok(t) = usize::try_from(t) else { continue };
        let tensor = &sg.tensors[t];
        let role = rule.role(pos);
        match role {
            Role::NonReal => continue,
            _ if tensor.dtype != TensorType::Float32 => {
                return Err(format!(
                    "input {pos} {:?} is {}, not float32",
                    tensor.name,
                    fb::dtype_name(tensor.dtype)
                ));
            }
            Role::Coefficient if !model.is_constant(tensor) && bits == 16 => {
                return Err(format!(
                    "input {pos} {:?} is computed at run time; the 16x8 kernel reads it as int8",
                    tensor.name
                ));
            }
            Role::Weight { .. } | Role::Bias { .. } if !model.is_constant(tensor) => {
                if rule.op == Op::BatchMatmul {
                    // Both operands are activations in full-integer BATCH_MATMUL.
                } else {
                    return Err(format!(
                        "input {pos} {:?} is a weight computed at run time",
                        tensor.name
                    ));
                }
            }
            // The bias scale is input scale × weight scale: both must exist, the input
            // as a computed (calibrated) tensor.
            Role::Bias { input, weight } => {
                let computed = |i: usize| {
                    tensor_ref(&op.inputs, i).map(|t| !model.is_constant(&sg.tensors[t]))
                };
                if computed(input) != Some(true) || computed(weight).is_none() {
                    return Err(format!(
                        "input {pos} {:?} is a bias, but input {input} (whose scale it takes) \
                         is missing or a constant, or weight input {weight} is missing",
                        tensor.name
                    ));
                }
                if tensor.shape.len() != 1 {
                    return Err(format!(
                        "input {pos} {:?} is a bias of shape {:?}; biases are vectors",
                        tensor.name, tensor.shape
                    ));
                }
            }
            _ => {}
        }
        if !model.is_constant(tensor) && ranges.get(si, t).is_none() {
            return Err(format!(
                "input {pos} {:?} has no calibrated range (the calibration never computed it)",
                tensor.name
            ));
        }
    }
    for &t in &op.outputs {
        let Ok(t) = usize::try_from(t) else { continue };
        let tensor = &sg.tensors[t];
        match rule.output {
            Output::NonReal => {}
            _ if tensor.dtype != TensorType::Float32 => {
                return Err(format!(
                    "output {:?} is {}, not float32",
                    tensor.name,
                    fb::dtype_name(tensor.dtype)
                ));
            }
            Output::Free if ranges.get(si, t).is_none() => {
                return Err(format!("output {:?} has no calibrated range", tensor.name));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `--strict`: every operator that would still compute on float32 tensors is an error.
fn strict_check(model: &Model, fates: &[Vec<Fate>]) -> Result<()> {
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

/// Parameters chosen for activations, and requantized edges.
struct Params {
    /// Integer parameters of every activation that has an integer version.
    activations: BTreeMap<(usize, usize), QuantParams>,
    /// The range each activation's parameters came from (report).
    range_of: BTreeMap<(usize, usize), (f32, f32)>,
    /// `(subgraph, operator, input position)` → parameters the input must be
    /// requantized to (its group's parameters differ from the tensor's own).
    requant: BTreeMap<(usize, usize, usize), QuantParams>,
    /// Ranges of constants that hold sentinels, widened so the saturated sentinel
    /// still dominates the operator's output ([`sentinel_headroom`]).
    const_range: BTreeMap<(usize, usize), (f32, f32)>,
    /// Constants that must take given parameters (values assigned to a variable).
    constants: BTreeMap<(usize, usize), QuantParams>,
}

/// Union-find over tensor indices of one subgraph.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(n: usize) -> Self {
        Groups {
            parent: (0..n).collect(),
        }
    }
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb.max(ra)] = rb.min(ra);
        }
    }
}

/// Asymmetric int8 / symmetric int16 parameters for a range, widened to include 0.
pub fn activation_params(min: f32, max: f32, width: Width) -> QuantParams {
    let (min, max) = (min.min(0.0), max.max(0.0));
    match width {
        Width::Int8 => {
            if max - min <= f32::MIN_POSITIVE {
                // All zeros: any scale represents them; take that of [-1, 1] so that
                // the rescaling multipliers of the kernels stay ordinary.
                return activation_params(-1.0, 1.0, width);
            }
            let scale = (max as f64 - min as f64) / 255.0;
            let zp = (-128.0 - min as f64 / scale).round().clamp(-128.0, 127.0) as i64;
            QuantParams::per_tensor(scale as f32, zp)
        }
        Width::Int16x8 => {
            let m = min.abs().max(max.abs());
            if m <= f32::MIN_POSITIVE {
                return QuantParams::per_tensor(1.0 / 32767.0, 0);
            }
            QuantParams::per_tensor(m / 32767.0, 0)
        }
    }
}

/// The range of a constant's ordinary values (sentinels excluded: they saturate to
/// the integer minimum or maximum; see `calib::observer`), widened to include 0, and
/// the sentinels it holds.
fn data_range_with_sentinels(model: &Model, t: &Tensor) -> ((f32, f32), Sentinels) {
    let v = math::f32_values(model.tensor_data(t));
    let (lo, hi, s) = ordinary_min_max(&v);
    if lo > hi {
        return ((0.0, 0.0), s);
    }
    // `+ 0.0` turns a -0.0 end (a mask of -0.0 and -1e9) into 0.0.
    ((lo.min(0.0) + 0.0, hi.max(0.0) + 0.0), s)
}

fn data_range(model: &Model, t: &Tensor) -> (f32, f32) {
    data_range_with_sentinels(model, t).0
}

/// Chooses parameters for every activation read or written by a quantized operator.
fn plan_params(
    model: &Model,
    ranges: &Ranges,
    fates: &[Vec<Fate>],
    opts: &IntegerOptions,
) -> Result<Params> {
    let mut p = Params {
        activations: BTreeMap::new(),
        range_of: BTreeMap::new(),
        requant: BTreeMap::new(),
        const_range: BTreeMap::new(),
        constants: BTreeMap::new(),
    };
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let n = sg.tensors.len();
        let mut groups = Groups::new(n);
        // Tensors needing an integer version (non-constant activations).
        let mut needed = vec![false; n];
        // Fixed parameters imposed by an operator's output: (scale, zp).
        let mut fixed: Vec<Option<(f32, i64)>> = vec![None; n];
        // Shared-op edges: (op, input pos, tensor) of activation inputs of shared ops.
        let mut shared_inputs = Vec::new();
        for (oi, op) in sg.operators.iter().enumerate() {
            if fates[si][oi] != Fate::Quantized {
                continue;
            }
            let rule = rules::rule_for(model.builtin(op)).expect("quantized ops have rules");
            let acts: Vec<(usize, usize)> = op
                .inputs
                .iter()
                .enumerate()
                .filter_map(|(pos, &t)| Some((pos, usize::try_from(t).ok()?)))
                .filter(|&(pos, t)| {
                    let real_act = matches!(rule.role(pos), Role::Activation | Role::Coefficient)
                        || (rule.op == Op::BatchMatmul && !model.is_constant(&sg.tensors[t]));
                    real_act && !model.is_constant(&sg.tensors[t])
                })
                // Recurrent hook: LSTM state operands get their parameters in recurrent.rs.
                .filter(|&(pos, _)| !super::recurrent::own_operand(rule.op, pos))
                .collect();
            for &(_, t) in &acts {
                needed[t] = true;
            }
            let outs: Vec<usize> = op
                .outputs
                .iter()
                .filter_map(|&t| usize::try_from(t).ok())
                .collect();
            if rule.output != Output::NonReal {
                for &t in &outs {
                    needed[t] = true;
                }
            }
            match rule.output {
                Output::Fixed { int8, int16 } => {
                    let f = match opts.width {
                        Width::Int8 => int8,
                        Width::Int16x8 => int16.ok_or_else(|| {
                            Error::Internal(format!("{:?} has no int16 fixed output", rule.op))
                        })?,
                    };
                    for &t in &outs {
                        fixed[t] = Some(f);
                    }
                }
                Output::Shared => {
                    let anchor = outs.first().copied().or(acts.first().map(|a| a.1));
                    if let Some(anchor) = anchor {
                        for &t in &outs {
                            groups.union(anchor, t);
                        }
                        for &(pos, t) in &acts {
                            shared_inputs.push((oi, pos, t, anchor));
                        }
                    }
                }
                Output::NonReal => {
                    // Comparisons and ARG_MAX: inputs share one set of parameters.
                    if let Some(&(_, first)) = acts.first() {
                        for &(pos, t) in &acts[1..] {
                            shared_inputs.push((oi, pos, t, first));
                        }
                    }
                }
                _ => {}
            }
        }
        // Join shared inputs into their op's group unless both carry different fixed
        // parameters; those edges are requantized instead.
        let mut group_fixed: HashMap<usize, (f32, i64)> = HashMap::new();
        for t in 0..n {
            if let Some(f) = fixed[t] {
                let r = groups.find(t);
                group_fixed.entry(r).or_insert(f);
            }
        }
        let mut requant_edges = Vec::new();
        for &(oi, pos, t, anchor) in &shared_inputs {
            let (rt, ra) = (groups.find(t), groups.find(anchor));
            if rt == ra {
                continue;
            }
            match (group_fixed.get(&rt).copied(), group_fixed.get(&ra).copied()) {
                (Some(a), Some(b)) if a != b => requant_edges.push((oi, pos, t, anchor)),
                (ft, fa) => {
                    groups.union(rt, ra);
                    let r = groups.find(rt);
                    if let Some(f) = ft.or(fa) {
                        group_fixed.insert(r, f);
                    }
                }
            }
        }
        // Each group's range: the union of its members' calibrated ranges.
        let mut group_range: HashMap<usize, (f32, f32)> = HashMap::new();
        for t in 0..n {
            if !needed[t] {
                continue;
            }
            if let Some(r) = ranges.get(si, t) {
                let g = groups.find(t);
                let e = group_range.entry(g).or_insert((r.min, r.max));
                e.0 = e.0.min(r.min);
                e.1 = e.1.max(r.max);
            }
        }
        // Constants read by shared operators widen their group's range too.
        for (oi, op) in sg.operators.iter().enumerate() {
            if fates[si][oi] != Fate::Quantized {
                continue;
            }
            let rule = rules::rule_for(model.builtin(op)).expect("rule");
            let anchor = match rule.output {
                Output::Shared => op.outputs.iter().find_map(|&t| usize::try_from(t).ok()),
                Output::NonReal => shared_anchor_input(model, si, &op.inputs, rule),
                _ => continue,
            };
            for (pos, &t) in op.inputs.iter().enumerate() {
                let Ok(t) = usize::try_from(t) else { continue };
                if rule.role(pos) != Role::Activation || !model.is_constant(&sg.tensors[t]) {
                    continue;
                }
                if let Some(a) = anchor {
                    let (lo, hi) = data_range(model, &sg.tensors[t]);
                    let e = group_range.entry(groups.find(a)).or_insert((lo, hi));
                    e.0 = e.0.min(lo);
                    e.1 = e.1.max(hi);
                }
            }
        }
        sentinel_headroom(
            model,
            si,
            &fates[si],
            ranges,
            opts.width,
            &mut groups,
            &mut group_range,
            &mut p.const_range,
        );
        // Trained parameters (QAT): the first member's in tensor order wins the group.
        let mut group_override: HashMap<usize, QuantParams> = HashMap::new();
        for t in 0..n {
            if let Some(p) = opts.overrides.activations.get(&(si, t)) {
                group_override
                    .entry(groups.find(t))
                    .or_insert_with(|| p.clone());
            }
        }
        for t in 0..n {
            if !needed[t] {
                continue;
            }
            let g = groups.find(t);
            let params = if let Some(&(s, z)) = group_fixed.get(&g) {
                QuantParams::per_tensor(s, z)
            } else if let Some(p) = group_override.get(&g) {
                p.clone()
            } else if let Some(&(lo, hi)) = group_range.get(&g) {
                p.range_of.insert((si, t), (lo, hi));
                activation_params(lo, hi, opts.width)
            } else {
                return Err(Error::Internal(format!(
                    "subgraph {si}, tensor {t} {:?}: no range for a quantized activation",
                    sg.tensors[t].name
                )));
            };
            p.activations.insert((si, t), params);
        }
        for (oi, pos, _, anchor) in requant_edges {
            let target = p.activations[&(si, anchor)].clone();
            p.requant.insert((si, oi, pos), target);
        }
    }
    Ok(p)
}

/// Makes room for saturated sentinels where their meaning depends on distance, not
/// only on order (max pool, MINIMUM/MAXIMUM, SELECT keep them right as the range's
/// ends):
/// * a SOFTMAX input that held `-inf`-class values gets its lower end `ln(2 / step) /
///   beta` below its ordinary minimum (`step` = the output's, 1/256 or 1/32768): a
///   saturated entry then weighs less than half an output step in every row;
/// * an ADD/SUB operand holding sentinels gets the end on their side far enough that
///   adding it to any value of the other operand lands beyond the output's range: the
///   output saturates, as the float model's does.
#[allow(clippy::too_many_arguments)]
fn sentinel_headroom(
    model: &Model,
    si: usize,
    fates: &[Fate],
    ranges: &Ranges,
    width: Width,
    groups: &mut Groups,
    group_range: &mut HashMap<usize, (f32, f32)>,
    const_range: &mut BTreeMap<(usize, usize), (f32, f32)>,
) {
    let sg = &model.subgraphs[si];
    let sentinels_of = |t: usize| -> Sentinels {
        let tensor = &sg.tensors[t];
        if model.is_constant(tensor) {
            data_range_with_sentinels(model, tensor).1
        } else {
            ranges.get(si, t).map(|r| r.sentinels).unwrap_or_default()
        }
    };
    let quantized = |oi: usize| fates[oi] == Fate::Quantized;
    for (oi, op) in sg.operators.iter().enumerate() {
        let Some(t) = tensor_ref(&op.inputs, 0) else {
            continue;
        };
        if !quantized(oi) || model.builtin(op) != Op::Softmax || sentinels_of(t).below == 0 {
            continue;
        }
        let beta = match &op.builtin_options {
            Some(fb::BuiltinOptions::SoftmaxOptions(o)) if o.beta > 0.0 => o.beta,
            _ => 1.0,
        };
        let levels: f32 = if width == Width::Int8 { 256.0 } else { 32768.0 };
        if let Some(r) = group_range.get_mut(&groups.find(t)) {
            r.0 -= (2.0 * levels).ln() / beta;
        }
    }
    for (oi, op) in sg.operators.iter().enumerate() {
        let kind = model.builtin(op);
        if !quantized(oi) || !matches!(kind, Op::Add | Op::Sub) {
            continue;
        }
        let (Some(a), Some(b), Some(o)) = (
            tensor_ref(&op.inputs, 0),
            tensor_ref(&op.inputs, 1),
            tensor_ref(&op.outputs, 0),
        ) else {
            continue;
        };
        let mut range_of = |t: usize| -> Option<(f32, f32)> {
            match const_range.get(&(si, t)) {
                Some(&r) => Some(r),
                None if model.is_constant(&sg.tensors[t]) => {
                    Some(data_range(model, &sg.tensors[t]))
                }
                None => group_range.get(&groups.find(t)).copied(),
            }
        };
        let (Some((lo_o, hi_o)), Some(ra), Some(rb)) = (range_of(o), range_of(a), range_of(b))
        else {
            continue;
        };
        // out = a + b, or a − b = a + (−b).
        let (sub, plus_b) = match kind {
            Op::Sub => (-1.0, (-rb.1, -rb.0)),
            _ => (1.0, rb),
        };
        for (c, (lo_c, hi_c), (lo_x, hi_x), sign) in [(a, ra, plus_b, 1.0f32), (b, rb, ra, sub)] {
            let s = sentinels_of(c);
            if s.is_none() {
                continue;
            }
            // out = x + sign·c: the sentinel side of c must carry out past its range.
            let (mut lo, mut hi) = (lo_c, hi_c);
            let (to_low, to_high) = if sign > 0.0 {
                (lo_o - hi_x, hi_o - lo_x)
            } else {
                (lo_x - hi_o, hi_x - lo_o)
            };
            if s.below > 0 {
                lo = lo.min(to_low);
            }
            if s.above > 0 {
                hi = hi.max(to_high);
            }
            if model.is_constant(&sg.tensors[c]) {
                const_range.insert((si, c), (lo, hi));
            } else if let Some(r) = group_range.get_mut(&groups.find(c)) {
                *r = (lo, hi);
            }
        }
    }
}

/// How the integer and float versions of an activation map to tensor indices.
#[derive(Debug, Clone, Copy)]
struct Versions {
    float: Option<usize>,
    int: Option<usize>,
}

fn apply(
    model: &mut Model,
    fates: &[Vec<Fate>],
    params: &Params,
    opts: &IntegerOptions,
    report: &mut Report,
) -> Result<()> {
    let width = opts.width;
    for si in 0..model.subgraphs.len() {
        let n_orig = model.subgraphs[si].tensors.len();
        let producers = model.subgraphs[si].producers();
        let quantized_op = |oi: usize| fates[si][oi] == Fate::Quantized;
        let is_input = |t: usize| model.subgraphs[si].inputs.contains(&(t as i32));
        let is_output = |t: usize| model.subgraphs[si].outputs.contains(&(t as i32));
        let integer_io = si == 0 && opts.interface != Interface::Float;

        // 1. Which version keeps each activation's original index.
        let mut versions: Vec<Versions> = (0..n_orig)
            .map(|t| Versions {
                float: Some(t),
                int: None,
            })
            .collect();
        let mut int_owned = vec![false; n_orig];
        for (&(s, t), _) in params.activations.range((si, 0)..(si + 1, 0)) {
            debug_assert_eq!(s, si);
            let io = is_input(t) || is_output(t);
            let produced_int = producers[t].is_some_and(quantized_op);
            let original_is_int = if io {
                integer_io
            } else {
                produced_int || (producers[t].is_none() && integer_io)
            };
            if original_is_int {
                versions[t] = Versions {
                    float: None,
                    int: Some(t),
                };
                int_owned[t] = true;
            }
        }

        // 2. Create the missing versions lazily while rewiring.
        let mut new_ops_after: BTreeMap<Option<usize>, Vec<Operator>> = BTreeMap::new();
        let place_after = |t: usize| producers.get(t).copied().flatten();

        // Helper closures cannot borrow model mutably twice; use small functions.
        let ensure_int = |model: &mut Model,
                          versions: &mut Vec<Versions>,
                          new_ops_after: &mut BTreeMap<Option<usize>, Vec<Operator>>,
                          t: usize|
         -> usize {
            if let Some(q) = versions[t].int {
                return q;
            }
            let p = params.activations[&(si, t)].clone();
            let f = versions[t].float.expect("a float version exists");
            let q = twin(
                &model.subgraphs[si].tensors[f],
                "/quantized",
                width.dtype(),
                Some(p),
            );
            let qi = model.subgraphs[si].add_tensor(q) as usize;
            let code = model.ensure_opcode(Op::Quantize, 1);
            new_ops_after
                .entry(place_after(t))
                .or_default()
                .push(Operator::new(code, vec![f as i32], vec![qi as i32]));
            versions[t].int = Some(qi);
            qi
        };
        let ensure_float = |model: &mut Model,
                            versions: &mut Vec<Versions>,
                            new_ops_after: &mut BTreeMap<Option<usize>, Vec<Operator>>,
                            t: usize|
         -> usize {
            if let Some(f) = versions[t].float {
                return f;
            }
            let q = versions[t].int.expect("an integer version exists");
            let f = twin(
                &model.subgraphs[si].tensors[q],
                "/dequantized",
                TensorType::Float32,
                None,
            );
            let fi = model.subgraphs[si].add_tensor(f) as usize;
            let code = model.ensure_opcode(Op::Dequantize, 1);
            new_ops_after
                .entry(place_after(t))
                .or_default()
                .push(Operator::new(code, vec![q as i32], vec![fi as i32]));
            versions[t].float = Some(fi);
            fi
        };

        // Subgraph outputs of a float interface keep their float index; a quantized
        // producer writes a new integer tensor that a DEQUANTIZE turns into it.
        // Outputs of an integer interface keep the integer index.
        let ops_len = model.subgraphs[si].operators.len();
        let mut constant_cache: HashMap<(usize, String), usize> = HashMap::new();
        for oi in 0..ops_len {
            let q = quantized_op(oi);
            if q {
                fix_options(model, si, oi, opts);
            }
            let op_kind = model.builtin(&model.subgraphs[si].operators[oi]);
            let rule = rules::rule_for(op_kind);
            // Outputs. The original operands are kept for parameter lookups.
            let outs = model.subgraphs[si].operators[oi].outputs.clone();
            let ins = model.subgraphs[si].operators[oi].inputs.clone();
            for (k, &t) in outs.iter().enumerate() {
                let Ok(t) = usize::try_from(t) else { continue };
                if t >= n_orig || !params.activations.contains_key(&(si, t)) {
                    continue;
                }
                let target = if q {
                    match versions[t].int {
                        Some(i) => i,
                        None => {
                            // The original index is float (an output of a float
                            // interface): the op writes a new integer tensor.
                            let qt = twin(
                                &model.subgraphs[si].tensors[t],
                                "/quantized",
                                width.dtype(),
                                Some(params.activations[&(si, t)].clone()),
                            );
                            let qi = model.subgraphs[si].add_tensor(qt) as usize;
                            versions[t].int = Some(qi);
                            let code = model.ensure_opcode(Op::Dequantize, 1);
                            new_ops_after
                                .entry(Some(oi))
                                .or_default()
                                .push(Operator::new(code, vec![qi as i32], vec![t as i32]));
                            qi
                        }
                    }
                } else {
                    ensure_float(model, &mut versions, &mut new_ops_after, t)
                };
                model.subgraphs[si].operators[oi].outputs[k] = target as i32;
            }
            // Inputs.
            for (pos, &t) in ins.iter().enumerate() {
                let Ok(t) = usize::try_from(t) else { continue };
                if t >= n_orig {
                    continue;
                }
                // Recurrent hook: recurrent::apply quantizes an integer LSTM's operands.
                if q && super::recurrent::own_operand(op_kind, pos) {
                    continue;
                }
                let tensor = model.subgraphs[si].tensors[t].clone();
                if model.is_constant(&tensor) {
                    if !q {
                        continue;
                    }
                    let rule = rule.expect("quantized ops have rules");
                    if let Some(new) = quantize_constant(
                        model,
                        si,
                        oi,
                        pos,
                        t,
                        rule,
                        params,
                        (&ins, &outs),
                        opts,
                        &mut constant_cache,
                        report,
                    )? {
                        model.subgraphs[si].operators[oi].inputs[pos] = new as i32;
                    }
                    continue;
                }
                if !params.activations.contains_key(&(si, t)) {
                    continue;
                }
                let target = if q {
                    let i = ensure_int(model, &mut versions, &mut new_ops_after, t);
                    if let Some(rp) = params.requant.get(&(si, oi, pos)) {
                        let p = (rp.clone(), width.dtype());
                        requantize(model, si, i, p, &mut new_ops_after, place_after(t))
                    } else {
                        i
                    }
                } else {
                    ensure_float(model, &mut versions, &mut new_ops_after, t)
                };
                model.subgraphs[si].operators[oi].inputs[pos] = target as i32;
            }
        }
        // Activations whose original index is the integer version (including the
        // inputs and outputs of an integer interface) change type in place; a uint8
        // interface then turns its boundary tensors into uint8 with converting QUANTIZEs.
        for t in (0..n_orig).filter(|&t| int_owned[t]) {
            let tensor = &mut model.subgraphs[si].tensors[t];
            tensor.dtype = width.dtype();
            tensor.quant = Some(params.activations[&(si, t)].clone());
        }
        if integer_io && opts.interface == Interface::Uint8 {
            uint8_interface(model, si, &params.activations, &mut new_ops_after, n_orig)?;
        }
        // 3. Rebuild the operator list with conversions after their producers.
        let mut ops = Vec::new();
        let old = std::mem::take(&mut model.subgraphs[si].operators);
        if let Some(first) = new_ops_after.remove(&None) {
            ops.extend(first);
        }
        for (oi, op) in old.into_iter().enumerate() {
            ops.push(op);
            if let Some(after) = new_ops_after.remove(&Some(oi)) {
                ops.extend(after);
            }
        }
        model.subgraphs[si].operators = ops;
    }
    Ok(())
}

/// Bias width of an operator: int32 in int8; in 16x8 int64, or int32 when asked and the
/// kernel accepts it (FULLY_CONNECTED and CONV_2D, through `quantized_bias_type`).
fn bias_bits_for(op: Op, opts: &IntegerOptions) -> u32 {
    match opts.width {
        Width::Int8 => 32,
        Width::Int16x8 if opts.bias_bits == 32 && matches!(op, Op::FullyConnected | Op::Conv2d) => {
            32
        }
        Width::Int16x8 => 64,
    }
}

/// Options the quantized kernels need: 16x8 ADD/SUB use the general-scale path (the
/// default power-of-two path is meant for LSTM internals and rejects most scales), and
/// int32 biases in 16x8 are declared with `quantized_bias_type`.
fn fix_options(model: &mut Model, si: usize, oi: usize, opts: &IntegerOptions) {
    use fb::BuiltinOptions as B;
    if opts.width != Width::Int16x8 {
        return;
    }
    let kind = model.builtin(&model.subgraphs[si].operators[oi]);
    let op = &mut model.subgraphs[si].operators[oi];
    match kind {
        Op::Add => match &mut op.builtin_options {
            Some(B::AddOptions(o)) => o.pot_scale_int16 = false,
            _ => {
                op.builtin_options = Some(B::AddOptions(Box::new(fb::AddOptions {
                    pot_scale_int16: false,
                    ..Default::default()
                })))
            }
        },
        Op::Sub => match &mut op.builtin_options {
            Some(B::SubOptions(o)) => o.pot_scale_int16 = false,
            _ => {
                op.builtin_options = Some(B::SubOptions(Box::new(fb::SubOptions {
                    pot_scale_int16: false,
                    ..Default::default()
                })))
            }
        },
        Op::FullyConnected | Op::Conv2d if bias_bits_for(kind, opts) == 32 => {
            match &mut op.builtin_options {
                Some(B::FullyConnectedOptions(o)) => o.quantized_bias_type = TensorType::Int32,
                Some(B::Conv2DOptions(o)) => o.quantized_bias_type = TensorType::Int32,
                _ => {}
            }
        }
        _ => {}
    }
}

/// The first non-constant activation input of an operator whose inputs share
/// parameters although its output is not real-valued (comparisons, ARG_MAX).
fn shared_anchor_input(model: &Model, si: usize, inputs: &[i32], rule: &Rule) -> Option<usize> {
    let sg = &model.subgraphs[si];
    inputs.iter().enumerate().find_map(|(pos, &t)| {
        let t = usize::try_from(t).ok()?;
        (rule.role(pos) == Role::Activation && !model.is_constant(&sg.tensors[t])).then_some(t)
    })
}

/// `round(v / scale) + zero_point`, clamped to the width's range, as little-endian
/// bytes of int8 or int16 (per-tensor parameters).
fn affine_bytes(values: &[f32], qp: &QuantParams, width: Width) -> Vec<u8> {
    let (s, z) = (qp.scale[0], qp.zero_point[0] as f32);
    let q = values.iter().map(move |&v| (v / s).round() + z);
    match width {
        Width::Int8 => q.map(|x| x.clamp(-128.0, 127.0) as i8 as u8).collect(),
        // Symmetric int16: a saturated sentinel lands on -32767, the range's end.
        Width::Int16x8 => q
            .flat_map(|x| (x.clamp(-32767.0, 32767.0) as i16).to_le_bytes())
            .collect(),
    }
}

/// A new tensor like `src` (shape, signature) named `src.name + suffix`, of `dtype`.
fn twin(src: &Tensor, suffix: &str, dtype: TensorType, quant: Option<QuantParams>) -> Tensor {
    let mut t = Tensor::new(format!("{}{suffix}", src.name), dtype, src.shape.clone());
    t.shape_signature = src.shape_signature.clone();
    t.quant = quant;
    t
}

/// A QUANTIZE from integer tensor `src` to a new integer tensor with parameters `p.0`
/// of type `p.1` (given: `src` may be an original index whose type changes only after
/// rewiring).
fn requantize(
    model: &mut Model,
    si: usize,
    src: usize,
    p: (QuantParams, TensorType),
    new_ops_after: &mut BTreeMap<Option<usize>, Vec<Operator>>,
    after: Option<usize>,
) -> usize {
    let s = &model.subgraphs[si].tensors[src];
    let t = twin(s, "/requantized", p.1, Some(p.0));
    let ti = model.subgraphs[si].add_tensor(t) as usize;
    let code = model.ensure_opcode(Op::Quantize, 1);
    new_ops_after.entry(after).or_default().push(Operator::new(
        code,
        vec![src as i32],
        vec![ti as i32],
    ));
    ti
}

/// uint8 interface: every integer input/output tensor of subgraph 0 becomes uint8 with
/// zero point + 128; a QUANTIZE converts between it and an int8 twin the graph uses.
fn uint8_interface(
    model: &mut Model,
    si: usize,
    activations: &BTreeMap<(usize, usize), QuantParams>,
    new_ops_after: &mut BTreeMap<Option<usize>, Vec<Operator>>,
    n_orig: usize,
) -> Result<()> {
    let inputs: Vec<usize> = model.subgraphs[si]
        .inputs
        .iter()
        .filter_map(|&t| usize::try_from(t).ok())
        .collect();
    let outputs: Vec<usize> = model.subgraphs[si]
        .outputs
        .iter()
        .filter_map(|&t| usize::try_from(t).ok())
        .collect();
    let code = model.ensure_opcode(Op::Quantize, 1);
    let producers = model.subgraphs[si].producers();
    for (is_input, list) in [(true, inputs), (false, outputs)] {
        for t in list {
            if t >= n_orig || !activations.contains_key(&(si, t)) {
                continue;
            }
            let int8 = model.subgraphs[si].tensors[t].clone();
            if int8.dtype != TensorType::Int8 {
                continue;
            }
            let q = int8
                .quant
                .clone()
                .expect("integer interface tensors have parameters");
            // The int8 twin takes over every use inside the graph.
            let mut twin = int8.clone();
            twin.name = format!("{}/int8", int8.name);
            let twin_i = model.subgraphs[si].add_tensor(twin);
            let sg = &mut model.subgraphs[si];
            for op in &mut sg.operators {
                let list = if is_input {
                    &mut op.inputs
                } else {
                    &mut op.outputs
                };
                for x in list.iter_mut() {
                    if *x == t as i32 {
                        *x = twin_i;
                    }
                }
            }
            let u = &mut sg.tensors[t];
            u.dtype = TensorType::Uint8;
            u.quant = Some(QuantParams::per_tensor(q.scale[0], q.zero_point[0] + 128));
            if is_input {
                new_ops_after
                    .entry(None)
                    .or_default()
                    .insert(0, Operator::new(code, vec![t as i32], vec![twin_i]));
            } else {
                new_ops_after
                    .entry(producers[t])
                    .or_default()
                    .push(Operator::new(code, vec![twin_i], vec![t as i32]));
            }
        }
    }
    Ok(())
}

/// Quantizes constant input `pos` of quantized operator `oi` as its role requires and
/// returns the new tensor (reused when the same constant needs the same parameters
/// again). `None` leaves the input as it is (non-real inputs).
#[allow(clippy::too_many_arguments)]
fn quantize_constant(
    model: &mut Model,
    si: usize,
    oi: usize,
    pos: usize,
    t: usize,
    rule: &Rule,
    params: &Params,
    operands: (&[i32], &[i32]),
    opts: &IntegerOptions,
    cache: &mut HashMap<(usize, String), usize>,
    report: &mut Report,
) -> Result<Option<usize>> {
    let sg = &model.subgraphs[si];
    let tensor = sg.tensors[t].clone();
    if tensor.dtype != TensorType::Float32 {
        return Ok(None);
    }
    let op = &sg.operators[oi];
    // Activation parameters are keyed by the operands' original indices (the operator
    // itself may already read or write their integer versions).
    let (orig_in, orig_out) = operands;
    let act_params = |pos: usize| -> Option<QuantParams> {
        params
            .activations
            .get(&(si, tensor_ref(orig_in, pos)?))
            .cloned()
    };
    let values = math::f32_values(model.tensor_data(&tensor));
    let (kind, dtype, data, qp): (&str, TensorType, Vec<u8>, QuantParams) = match rule.role(pos) {
        Role::NonReal => return Ok(None),
        Role::Weight { axis } if rule.op != Op::BatchMatmul => {
            let axis = axis
                .filter(|_| !opts.per_tensor)
                .and_then(|a| usize::try_from(a).ok())
                .filter(|&a| a < tensor.shape.len());
            let trained = opts.overrides.weights.get(&(si, t));
            let axis = match trained {
                Some(p) if p.is_per_axis() => usize::try_from(p.quantized_dimension).ok(),
                Some(_) => None,
                None => axis,
            };
            let ch = Channels::new(&tensor.shape, axis);
            let mut scales = match trained {
                Some(p) => p.scale.clone(),
                None => math::symmetric_scales(&values, ch, 127.0),
            };
            widen_for_bias(
                model,
                si,
                oi,
                pos,
                rule,
                &act_params,
                opts,
                &mut scales,
                report,
            );
            let q = math::quantize_symmetric(&values, ch, &scales, 127.0);
            let n = scales.len();
            (
                "weight",
                TensorType::Int8,
                q.iter().map(|&v| v as u8).collect(),
                QuantParams::per_axis(scales, vec![0; n], axis.unwrap_or(0) as i32),
            )
        }
        Role::Bias { input, weight } => {
            let s_in = act_params(input)
                .ok_or_else(|| {
                    Error::Internal(format!("bias of op {oi}: input {input} has no parameters"))
                })?
                .scale[0];
            let w_ref = tensor_ref(&op.inputs, weight)
                .ok_or_else(|| Error::Internal(format!("bias of op {oi}: no weight")))?;
            let w_tensor = &sg.tensors[w_ref];
            let w_scales: Vec<f32> = match &w_tensor.quant {
                Some(q) if !q.scale.is_empty() => q.scale.clone(),
                _ => {
                    // The weight is quantized as this op's input `weight`: recompute.
                    let wv = math::f32_values(model.tensor_data(w_tensor));
                    let axis = match rule.role(weight) {
                        Role::Weight { axis } => axis
                            .filter(|_| !opts.per_tensor)
                            .and_then(|a| usize::try_from(a).ok())
                            .filter(|&a| a < w_tensor.shape.len()),
                        _ => None,
                    };
                    math::symmetric_scales(&wv, Channels::new(&w_tensor.shape, axis), 127.0)
                }
            };
            let bits = bias_bits_for(rule.op, opts);
            let limit = if bits == 64 {
                i64::MAX as f64
            } else {
                i32::MAX as f64
            };
            let scales: Vec<f32> = (0..values.len())
                .map(|c| {
                    s_in * w_scales[if w_scales.len() == 1 {
                        0
                    } else {
                        c % w_scales.len()
                    }]
                })
                .collect();
            let q: Vec<i64> = values
                .iter()
                .zip(&scales)
                .map(|(&b, &s)| (b as f64 / s as f64).round().clamp(-limit, limit) as i64)
                .collect();
            if q.iter().any(|&v| v.unsigned_abs() as f64 >= limit) {
                return Err(Error::Internal(format!(
                    "subgraph {si}: bias {:?} overflows {bits} bits although the weight range was widened",
                    tensor.name
                )));
            }
            let data: Vec<u8> = if bits == 64 {
                q.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                q.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()
            };
            let n = scales.len();
            let qp = if w_scales.len() > 1 {
                QuantParams::per_axis(scales, vec![0; n], 0)
            } else {
                QuantParams::per_tensor(scales[0], 0)
            };
            (
                "bias",
                if bits == 64 {
                    TensorType::Int64
                } else {
                    TensorType::Int32
                },
                data,
                qp,
            )
        }
        Role::Coefficient => {
            let (lo, hi) = data_range(model, &tensor);
            let qp = activation_params(lo, hi, Width::Int8);
            let data = affine_bytes(&values, &qp, Width::Int8);
            ("constant", TensorType::Int8, data, qp)
        }
        _ => {
            // A constant read like an activation: shared operators give it their
            // group's parameters, others its own range.
            let anchor = match rule.output {
                Output::Shared => tensor_ref(orig_out, 0),
                // Comparisons, ARG_MAX: inputs share the first activation input's.
                Output::NonReal => shared_anchor_input(model, si, orig_in, rule),
                _ => None,
            };
            let group = params
                .constants
                .get(&(si, t))
                .cloned()
                .or_else(|| anchor.and_then(|a| params.activations.get(&(si, a)).cloned()));
            let qp = match group {
                Some(g) => g,
                None if rule.op == Op::BatchMatmul => {
                    let (lo, hi) = data_range(model, &tensor);
                    let m = lo.abs().max(hi);
                    match opts.width {
                        Width::Int8 => {
                            QuantParams::per_tensor(if m > 0.0 { m / 127.0 } else { 1.0 }, 0)
                        }
                        Width::Int16x8 => activation_params(-m, m, opts.width),
                    }
                }
                None => {
                    let (lo, hi) = params
                        .const_range
                        .get(&(si, t))
                        .copied()
                        .unwrap_or_else(|| data_range(model, &tensor));
                    activation_params(lo, hi, opts.width)
                }
            };
            let (dtype, data) = (opts.width.dtype(), affine_bytes(&values, &qp, opts.width));
            ("constant", dtype, data, qp)
        }
    };
    let key = (
        t,
        format!(
            "{dtype:?}{:?}{:?}{}",
            qp.scale, qp.zero_point, qp.quantized_dimension
        ),
    );
    if let Some(&existing) = cache.get(&key) {
        return Ok(Some(existing));
    }
    let buffer = model.add_buffer(data);
    let mut nt = Tensor::new(tensor.name.clone(), dtype, tensor.shape.clone());
    nt.shape_signature = tensor.shape_signature.clone();
    nt.buffer = buffer;
    nt.quant = Some(qp.clone());
    let ni = model.subgraphs[si].add_tensor(nt) as usize;
    cache.insert(key, ni);
    report.tensors.push(TensorParams {
        subgraph: si,
        tensor: ni,
        name: tensor.name.clone(),
        kind: kind.into(),
        dtype: fb::dtype_name(dtype).into(),
        range: None,
        scale: qp.scale.clone(),
        zero_point: qp.zero_point.clone(),
        axis: qp.is_per_axis().then_some(qp.quantized_dimension),
    });
    Ok(Some(ni))
}

/// If the bias of operator `oi` (the input whose role is `Bias { weight: pos }`) would
/// not fit its integer type at `s_in × s_w`, widens the weight scales of the channels
/// concerned until it does (TF's converter does the same; the alternative, failing,
/// helps nobody). Reported as a note.
#[allow(clippy::too_many_arguments)]
fn widen_for_bias(
    model: &Model,
    si: usize,
    oi: usize,
    pos: usize,
    rule: &Rule,
    act_params: &dyn Fn(usize) -> Option<QuantParams>,
    opts: &IntegerOptions,
    scales: &mut [f32],
    report: &mut Report,
) {
    let sg = &model.subgraphs[si];
    let op = &sg.operators[oi];
    let Some((bias_pos, input)) = (0..op.inputs.len()).find_map(|b| match rule.role(b) {
        Role::Bias { input, weight } if weight == pos => Some((b, input)),
        _ => None,
    }) else {
        return;
    };
    let Some(b) = tensor_ref(&op.inputs, bias_pos).map(|b| &sg.tensors[b]) else {
        return;
    };
    if !model.is_constant(b) || b.dtype != TensorType::Float32 {
        return;
    }
    let Some(s_in) = act_params(input).map(|p| p.scale[0]) else {
        return;
    };
    // Keep a margin below the type's limit: the bias is rounded after scaling.
    let bits = bias_bits_for(rule.op, opts);
    let limit = if bits == 64 {
        i64::MAX as f64
    } else {
        i32::MAX as f64
    } * 0.99;
    let bias = math::f32_values(model.tensor_data(b));
    let mut widened = 0;
    for (c, &bv) in bias.iter().enumerate() {
        let k = if scales.len() == 1 {
            0
        } else {
            c % scales.len()
        };
        let need = (bv.abs() as f64 / (s_in as f64 * limit)) as f32;
        if need > scales[k] {
            scales[k] = need;
            widened += 1;
        }
    }
    if widened > 0 {
        report.note(format!(
            "subgraph {si}, operator {oi}: widened {widened} weight scale(s) so that bias {:?} fits {bits} bits",
            b.name
        ));
    }
}

/// The decisions of a run as text (`--dump-plan`): operator fates, then tensor
/// parameters.
pub fn render_plan(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "operators ({} mode):", report.mode);
    for o in &report.ops {
        match &o.fate {
            Fate::Quantized => {
                let _ = writeln!(
                    s,
                    "  {}:{:<4} {:<24} quantized",
                    o.subgraph, o.operator, o.op
                );
            }
            Fate::Float { reason } => {
                let _ = writeln!(
                    s,
                    "  {}:{:<4} {:<24} float: {reason}",
                    o.subgraph, o.operator, o.op
                );
            }
        }
    }
    for q in &report.quantized {
        let _ = writeln!(
            s,
            "  weight {}:{} {:?} {} → {} ({})",
            q.subgraph, q.tensor, q.name, q.old_dtype, q.new_dtype, q.granularity
        );
    }
    if !report.tensors.is_empty() {
        let _ = writeln!(s, "tensors:");
    }
    for t in &report.tensors {
        let scale = match t.scale.len() {
            1 => format!("scale {:e} zp {}", t.scale[0], t.zero_point[0]),
            n => {
                let lo = t.scale.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = t.scale.iter().copied().fold(0f32, f32::max);
                format!("axis {} ×{n} scale {lo:e}..{hi:e}", t.axis.unwrap_or(0))
            }
        };
        let range = t
            .range
            .map(|(lo, hi)| format!(" from [{lo}, {hi}]"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {}:{:<4} {:<10} {:<6} {scale}{range}  {}",
            t.subgraph, t.tensor, t.kind, t.dtype, t.name
        );
    }
    for n in &report.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
