//! Weight quantization: dynamic-range int8, float16, weight-only int8, int4.
//!
//! Decide first, then apply. [`plan`] walks every float32 constant of every subgraph and
//! decides, from the op rule table and the options, what becomes of it (with a reason
//! when it stays float) and which of its readers read the quantized tensor directly
//! (hybrid int8 and INT4 kernels) and which read it through a DEQUANTIZE; [`apply`]
//! rewrites the graph accordingly. A constant read by several operators is quantized
//! once: the direct readers share the quantized tensor, the others share one DEQUANTIZE
//! that produces the float tensor they already read.
//!
//! Per mode:
//! - `dynamic`: a weight read by hybrid kernels (rule `hybrid`) becomes int8, per channel
//!   when every hybrid reader accepts the same channel axis; other readers of it get a
//!   DEQUANTIZE; constants without a hybrid reader stay float.
//! - `float16`: every float32 constant (biases included) becomes FLOAT16 + DEQUANTIZE.
//! - `weight-int8`: int8 + DEQUANTIZE, per channel along the weight's output-channel axis
//!   (the operator computes in float, so recurrent gate weights are per channel too).
//! - `weight-int4`: INT4 read directly by the kernels that take it (FULLY_CONNECTED,
//!   CONV_2D, EMBEDDING_LOOKUP: the rule table's `int4_weights`), INT4 + DEQUANTIZE (per
//!   channel) for the other weights; blockwise only for weights FULLY_CONNECTED alone
//!   reads and LiteRT's builtin kernel computes blockwise ([`super::blockwise`], which
//!   also writes their fused activations as operators of their own). Values are
//!   rounded by [`super::rounding`] (nearest, mse, or gptq with error feedback: the
//!   layer-input Hessians [`sequential_hessians`] gathers layer by layer from
//!   calibration samples run through the float model and the partly quantized one);
//!   `--int4-max-loss` writes a weight whose INT4 layer SQNR is below the budget as int8.
//!
//! Biases (the rule table's bias role) stay float32 in the int8/int4 weight modes, as
//! TF and ai-edge-quantizer leave them: they are small and their error reaches every
//! output unscaled.

use crate::error::{Error, Loc, Result};
use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::ir::{self, Model, Operator, QuantParams, Tensor};
use crate::rules::{self, Hybrid, Role};

use std::collections::HashMap;

use super::math::{self, Channels};
use super::report::{LeftFloat, Report, RoundingReport, TensorChange};
use super::rounding::{self, Groups, Rounding};
use super::{Mode, OptionError, Options};

/// What happens to one constant.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// Symmetric int8 (axis = per-channel dimension); hybrid kernels read it directly.
    HybridInt8 { axis: Option<usize> },
    /// Symmetric int8 constant + DEQUANTIZE.
    Int8Dequantize { axis: Option<usize> },
    /// FLOAT16 constant + DEQUANTIZE.
    Float16,
    /// Packed INT4, per channel along `axis` or blockwise (axis 0, FULLY_CONNECTED only).
    Int4 {
        axis: Option<usize>,
        block: Option<usize>,
    },
}

/// One reader of a constant: operator `op` reads it as input `pos`.
#[derive(Debug, Clone, Copy)]
struct Use {
    op: usize,
    pos: usize,
    kind: Op,
    rule: Option<&'static rules::Rule>,
}

impl Use {
    fn role(&self) -> Option<Role> {
        self.rule.map(|r| r.role(self.pos))
    }

    /// The output-channel axis the rule table gives this input, if it is a weight.
    fn weight_axis(&self, rank: usize) -> Option<usize> {
        match self.role() {
            Some(Role::Weight { axis: Some(a) }) => usize::try_from(a).ok().filter(|&a| a < rank),
            _ => None,
        }
    }

    fn is_hybrid_weight(&self) -> bool {
        self.rule.is_some_and(|r| r.hybrid != Hybrid::No)
            && matches!(self.role(), Some(Role::Weight { .. }))
    }

    fn reads_int4(&self) -> bool {
        self.rule.is_some_and(|r| r.int4_weights) && self.pos == 1
    }
}

#[derive(Debug)]
struct Decision {
    subgraph: usize,
    tensor: usize,
    action: Action,
    /// Readers that read the quantized tensor itself, as `(operator, input position)`.
    direct: Vec<(usize, usize)>,
    /// Whether other readers remain: they read the float tensor, now produced by one
    /// DEQUANTIZE of the quantized constant.
    dequantize: bool,
    /// Display names of the consumers, taken at planning time.
    consumers: Vec<String>,
}

/// Runs the weight pass for `opts.mode` over every subgraph.
pub fn quantize_weights(model: &mut Model, opts: &Options, report: &mut Report) -> Result<()> {
    let decisions = plan(model, opts, report)?;
    // The layer-input statistics: for gptq, and for --int4-max-loss's measure (on the
    // calibration inputs when there are samples).
    let gptq = opts.rounding() == Rounding::Gptq;
    let hessians = match (&opts.samples, opts.mode) {
        (None, Mode::WeightInt4) if gptq => {
            return Err(OptionError::GptqWithoutSamples.into());
        }
        (Some(samples), Mode::WeightInt4) if gptq => {
            sequential_hessians(model, &decisions, samples, opts)?
        }
        (Some(samples), Mode::WeightInt4) if opts.int4_max_loss_db.is_some() => {
            collect_hessians(model, &decisions, samples)?
        }
        (Some(_), Mode::WeightInt4) => {
            report.note(format!(
                "the calibration samples are not used: --rounding {} needs none (--rounding gptq and --int4-max-loss use them)",
                opts.rounding().name()
            ));
            HashMap::new()
        }
        _ => HashMap::new(),
    };
    // DEQUANTIZE operators are inserted after every decision is applied, so that the
    // operator indices the plan recorded stay valid throughout.
    let mut pending: Vec<Vec<Operator>> = vec![Vec::new(); model.subgraphs.len()];
    if decisions
        .iter()
        .any(|d| matches!(d.action, Action::Int4 { block: Some(_), .. }))
    {
        report.note(BLOCKWISE_NOTE);
    }
    for d in &decisions {
        let h = hessians.get(&(d.subgraph, d.tensor));
        apply(model, d, opts, h, report, &mut pending[d.subgraph])?;
    }
    // LiteRT's builtin blockwise INT4 kernel applies no fused activation: each reader
    // of a blockwise weight gets its activation as an operator of its own (before the
    // DEQUANTIZE operators go in: the plan's operator indices still hold).
    for si in 0..model.subgraphs.len() {
        let readers: Vec<usize> = decisions
            .iter()
            .filter(|d| d.subgraph == si && matches!(d.action, Action::Int4 { block: Some(_), .. }))
            // --int4-max-loss may have kept it int8 (per channel).
            .filter(|d| model.subgraphs[si].tensors[d.tensor].dtype == TensorType::Int4)
            .flat_map(|d| d.direct.iter().map(|&(oi, _)| oi))
            .collect();
        let moved = super::blockwise::unfuse_activations(model, si, &readers);
        if moved > 0 {
            report.note(format!(
                "subgraph {si}: {moved} FULLY_CONNECTED operators reading blockwise INT4 weights have their fused activation written as an operator of its own after them (LiteRT's builtin blockwise INT4 kernel applies none)"
            ));
        }
    }
    for (si, ops) in pending.into_iter().enumerate() {
        // Constants need nothing computed first: DEQUANTIZE ops go to the front, in
        // the order they were created (deterministic).
        model.subgraphs[si].operators.splice(0..0, ops);
    }
    Ok(())
}

fn consumer_names(model: &Model, sg: &ir::Subgraph, cons: &[(usize, usize)]) -> Vec<String> {
    cons.iter()
        .map(|&(oi, _)| format!("{oi} {}", model.op_display_name(&sg.operators[oi])))
        .collect()
}

/// The input second moment `H = Σ x xᵀ` of a weight's layer, `n × n` (row-major): of
/// the float model's inputs, or for gptq of the inputs the layer sees once the weights
/// before it are quantized, with what error feedback needs.
struct Hessian {
    n: usize,
    h: Vec<f64>,
    feedback: Option<Feedback>,
}

/// gptq's error feedback for one weight ([`sequential_hessians`]).
struct Feedback {
    /// The weights to round: those that map the quantized model's layer inputs closest
    /// to the float layer's outputs ([`rounding::feedback_target`]).
    target: Vec<f32>,
    /// `Σ x_q x_fᵀ` and `Σ x_f x_fᵀ` (`h` is `Σ x_q x_qᵀ`), for the report's error.
    cross: Vec<f64>,
    float_h: Vec<f64>,
}

/// Where one weight's Hessian comes from: the activation input of a reader.
#[derive(Clone, Copy)]
enum Reader {
    /// FULLY_CONNECTED: rows of the input, `n` = input depth.
    Rows { n: usize },
    /// CONV_2D: im2col patches.
    Conv(rounding::ConvGeometry),
}

/// A weight: (subgraph, tensor).
type WeightKey = (usize, usize);

/// im2col patches taken per sample and convolution (evenly spaced over the output).
const MAX_PATCHES_PER_SAMPLE: usize = 256;

/// The layer inputs of the weights a Hessian can be gathered for: every per-row INT4
/// weight read as input 1 of a FULLY_CONNECTED or CONV_2D, by activation tensor, with
/// each such weight's column count.
type Wanted = HashMap<crate::interp::TensorId, Vec<(WeightKey, Reader)>>;

fn hessian_readers(model: &Model, decisions: &[Decision]) -> (Wanted, Vec<(WeightKey, usize)>) {
    use crate::interp::TensorId;
    let mut wanted: Wanted = HashMap::new();
    let mut keys = Vec::new();
    for d in decisions {
        if !matches!(d.action, Action::Int4 { axis: Some(0), .. }) {
            continue;
        }
        let sg = &model.subgraphs[d.subgraph];
        let w = &sg.tensors[d.tensor];
        let dims: Vec<usize> = w.shape.iter().map(|&x| x.max(0) as usize).collect();
        let Some((&rows, rest)) = dims.split_first() else {
            continue;
        };
        let cols: usize = rest.iter().product();
        if rows == 0 || cols == 0 {
            continue;
        }
        for op in &sg.operators {
            if op.inputs.get(1) != Some(&(d.tensor as i32)) {
                continue;
            }
            let Some(x) = op.inputs.first().and_then(|&i| usize::try_from(i).ok()) else {
                continue;
            };
            let reader = match (model.builtin(op), &op.builtin_options) {
                (Op::FullyConnected, _) => Reader::Rows { n: cols },
                (Op::Conv2d, Some(fb::BuiltinOptions::Conv2DOptions(o))) if dims.len() == 4 => {
                    let xs = &sg.tensors[x].shape;
                    if xs.len() != 4 || xs.iter().any(|&v| v <= 0) || xs[3] as usize != dims[3] {
                        continue;
                    }
                    Reader::Conv(rounding::ConvGeometry {
                        input: [
                            xs[0] as usize,
                            xs[1] as usize,
                            xs[2] as usize,
                            xs[3] as usize,
                        ],
                        kernel: [dims[1], dims[2]],
                        stride: [o.stride_h.max(1) as usize, o.stride_w.max(1) as usize],
                        dilation: [
                            o.dilation_h_factor.max(1) as usize,
                            o.dilation_w_factor.max(1) as usize,
                        ],
                        same_padding: o.padding == fb::Padding::Same,
                    })
                }
                _ => continue,
            };
            wanted
                .entry(TensorId {
                    subgraph: d.subgraph,
                    tensor: x,
                })
                .or_default()
                .push(((d.subgraph, d.tensor), reader));
            let key = (d.subgraph, d.tensor);
            if !keys.iter().any(|&(k, _)| k == key) {
                keys.push((key, cols));
            }
        }
    }
    (wanted, keys)
}

/// One sample's layer-input rows per weight (`[rows, n]`, row-major: a FULLY_CONNECTED's
/// input rows, a CONV_2D's im2col patches; readers of a shared weight one after another).
fn sample_rows(
    it: &mut crate::interp::Interpreter,
    wanted: &Wanted,
    sample: &[crate::interp::Value],
) -> Result<HashMap<WeightKey, Vec<f32>>> {
    use crate::interp::{Flow, TensorId};
    let mut rows: HashMap<WeightKey, Vec<f32>> = HashMap::new();
    let mut observe = |id: TensorId, v: &crate::interp::Value| {
        let (Some(readers), Some(x)) = (wanted.get(&id), v.as_f32()) else {
            return Flow::Continue;
        };
        for &(key, reader) in readers {
            match reader {
                Reader::Rows { n } if x.len() % n == 0 => {
                    rows.entry(key).or_default().extend_from_slice(x)
                }
                Reader::Conv(geo) if v.shape == geo.input => rows
                    .entry(key)
                    .or_default()
                    .extend(geo.patches(x, MAX_PATCHES_PER_SAMPLE)),
                _ => {}
            }
        }
        Flow::Continue
    };
    it.run_observed(sample, &mut observe)?;
    Ok(rows)
}

/// Runs the calibration samples through the (float) model and accumulates, for every
/// per-row INT4 weight read as input 1 of a FULLY_CONNECTED or CONV_2D, the Hessian of
/// that layer's input (summed over the readers of a shared weight).
fn collect_hessians(
    model: &Model,
    decisions: &[Decision],
    samples: &[Vec<crate::interp::Value>],
) -> Result<HashMap<WeightKey, Hessian>> {
    let (wanted, keys) = hessian_readers(model, decisions);
    let mut out: HashMap<WeightKey, Hessian> = keys
        .iter()
        .map(|&(k, n)| {
            (
                k,
                Hessian {
                    n,
                    h: vec![0.0; n * n],
                    feedback: None,
                },
            )
        })
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut it = crate::interp::Interpreter::new(model)?;
    for sample in samples {
        for (key, x) in sample_rows(&mut it, &wanted, sample)? {
            if let Some(hs) = out.get_mut(&key) {
                rounding::add_outer_products(&mut hs.h, &x, hs.n);
            }
        }
    }
    for hs in out.values_mut() {
        rounding::symmetrize(&mut hs.h, hs.n);
    }
    Ok(out)
}

/// gptq's statistics, layer by layer with error feedback. Weights are taken in the order
/// of their first reader (operators are stored in execution order). For each, the
/// calibration samples run through the float model and through a working copy whose
/// earlier weights hold their quantized values, giving the layer's inputs `x_f` and
/// `x_q`; the weight rounded is then not `W` but the `W'` that maps `x_q` closest to
/// `W x_f` ([`rounding::feedback_target`], with `H_q = Σ x_q x_qᵀ` as GPTQ's Hessian),
/// so that each layer also undoes the error the earlier ones put into its inputs.
/// After each weight is rounded (as [`apply`] will round it, from the same statistics)
/// the working copy gets its dequantized values. Two calibration passes per weight
/// with a Hessian (docs/ACCURACY.md: +3.1 dB logit SQNR on average over the
/// float-input GPTQ).
fn sequential_hessians(
    model: &Model,
    decisions: &[Decision],
    samples: &[Vec<crate::interp::Value>],
    opts: &Options,
) -> Result<HashMap<WeightKey, Hessian>> {
    let mut work = model.clone();
    let mut out = HashMap::new();
    let first_reader = |d: &Decision| {
        model.subgraphs[d.subgraph]
            .operators
            .iter()
            .position(|op| op.inputs.contains(&(d.tensor as i32)))
            .unwrap_or(usize::MAX)
    };
    let mut order: Vec<&Decision> = decisions
        .iter()
        .filter(|d| matches!(d.action, Action::Int4 { .. }))
        .collect();
    order.sort_by_key(|d| (d.subgraph, first_reader(d)));
    for d in order {
        let Action::Int4 { axis, block } = d.action else {
            continue;
        };
        let key = (d.subgraph, d.tensor);
        let h = feedback_hessian(model, &work, d, samples)?;
        let t = &model.subgraphs[d.subgraph].tensors[d.tensor];
        let original = model.tensor_data(t);
        let source = WeightSource {
            file: None,
            prefault: &|_| {},
        };
        let r = round_int4(&t.shape, original, &source, axis, block, opts, h.as_ref());
        let n = original.len() / 4;
        let deq: Vec<f32> = if opts
            .int4_max_loss_db
            .is_some_and(|db| r.report.int4_sqnr_db < db)
        {
            // Kept int8 (as [`int4`] writes it).
            let values = math::f32_values(original);
            let ch = Channels::new(&t.shape, axis.or(block.map(|_| 0)));
            let scales = math::symmetric_scales(&values, ch, 127.0);
            let q = math::quantize_symmetric(&values, ch, &scales, 127.0);
            (0..n).map(|i| q[i] as f32 * scales[ch.of(i)]).collect()
        } else {
            let ch = int4_channels(&t.shape, n, axis, block);
            let q = math::unpack_int4(&r.packed, n);
            (0..n).map(|i| q[i] as f32 * r.scales[ch.of(i)]).collect()
        };
        let b = work.add_buffer(math::f32_bytes(&deq));
        work.subgraphs[d.subgraph].tensors[d.tensor].buffer = b;
        if let Some(h) = h {
            out.insert(key, h);
        }
    }
    Ok(out)
}

/// One weight's statistics for [`sequential_hessians`]: `H_q`, and the error feedback
/// (none when `H_q` is not positive definite even dampened: plain GPTQ on `W` then).
/// `None` for a weight without a FULLY_CONNECTED or CONV_2D reader.
fn feedback_hessian(
    float: &Model,
    work: &Model,
    d: &Decision,
    samples: &[Vec<crate::interp::Value>],
) -> Result<Option<Hessian>> {
    let key = (d.subgraph, d.tensor);
    let (wanted, keys) = hessian_readers(work, std::slice::from_ref(d));
    let Some(&(_, n)) = keys.first() else {
        return Ok(None);
    };
    let (mut h, mut cross, mut float_h) = (vec![0f64; n * n], vec![0f64; n * n], vec![0f64; n * n]);
    let mut it_f = crate::interp::Interpreter::new(float)?;
    let mut it_q = crate::interp::Interpreter::new(work)?;
    for sample in samples {
        let xf = sample_rows(&mut it_f, &wanted, sample)?;
        let xq = sample_rows(&mut it_q, &wanted, sample)?;
        if let (Some(xf), Some(xq)) = (xf.get(&key), xq.get(&key))
            && xf.len() == xq.len()
        {
            rounding::add_outer_products(&mut h, xq, n);
            rounding::add_outer_products(&mut float_h, xf, n);
            rounding::add_cross_products(&mut cross, xq, xf, n);
        }
    }
    rounding::symmetrize(&mut h, n);
    rounding::symmetrize(&mut float_h, n);
    let t = &float.subgraphs[d.subgraph].tensors[d.tensor];
    let w = math::f32_values(float.tensor_data(t));
    let feedback = rounding::feedback_target(&w, n, &h, &cross).map(|target| Feedback {
        target,
        cross,
        float_h,
    });
    Ok(Some(Hessian { n, h, feedback }))
}

/// The groups of an INT4 weight's scales, as [`round_int4`] orders them.
fn int4_channels(shape: &[i32], len: usize, axis: Option<usize>, block: Option<usize>) -> Channels {
    match (axis, block) {
        (_, Some(b)) => Groups {
            rows: shape[0] as usize,
            cols: shape[1] as usize,
            block: Some(b),
        }
        .channels(),
        (Some(0), None) if !shape.is_empty() && shape[0] > 0 => Groups {
            rows: shape[0] as usize,
            cols: len / shape[0] as usize,
            block: None,
        }
        .channels(),
        _ => Channels::new(shape, axis),
    }
}

/// What LiteRT 2.3 does with blockwise INT4 (measured: docs/ACCURACY.md; why:
/// [`super::blockwise`]).
const BLOCKWISE_NOTE: &str = "blockwise INT4: written only for FULLY_CONNECTED weights that LiteRT 2.3's \
     builtin 4-bit kernel computes blockwise (>= 4 output units, even input depth >= 32); the others \
     stay INT4 per channel";

/// Why weight-only int8/int4 leave biases float (reported for each; `dynamic` leaves
/// them too, as its hybrid kernels read float biases).
const BIAS_REASON: &str = "a bias: the weight-only modes keep biases float32 (as TF and \
     ai-edge-quantizer); they are small and their rounding error reaches every output";

fn plan(model: &Model, opts: &Options, report: &mut Report) -> Result<Vec<Decision>> {
    let mut decisions = Vec::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let consumers = sg.consumers();
        for (ti, t) in sg.tensors.iter().enumerate() {
            if !model.is_constant(t) || consumers[ti].is_empty() {
                continue;
            }
            if t.quantized().is_some() {
                report.note(format!(
                    "subgraph {si}: tensor {ti} {:?} is already quantized ({}); left as it is",
                    t.name,
                    fb::dtype_name(t.dtype)
                ));
                continue;
            }
            if t.dtype != TensorType::Float32 || t.sparsity.is_some() {
                continue;
            }
            let c = Constant::new(model, (si, ti), &consumers[ti]);
            match c.verdict(opts, report)? {
                Verdict::Quantize { action, direct } => {
                    let dequantize = direct.len() < c.uses.len();
                    decisions.push(Decision {
                        subgraph: si,
                        tensor: ti,
                        action,
                        direct,
                        dequantize,
                        consumers: c.names(),
                    });
                }
                Verdict::Leave { reason, bias } => report.left_float.push(LeftFloat {
                    subgraph: si,
                    tensor: ti,
                    name: c.t.name.clone(),
                    consumers: c.names(),
                    elements: c.elements,
                    reason,
                    bias,
                }),
            }
        }
    }
    Ok(decisions)
}

/// What becomes of one float32 constant.
enum Verdict {
    /// Quantized as `action`; `direct` readers read the quantized tensor itself.
    Quantize {
        action: Action,
        direct: Vec<(usize, usize)>,
    },
    /// Left float, with the reason (`bias`: it is a bias).
    Leave { reason: String, bias: bool },
}

fn leave(reason: impl Into<String>) -> Result<Verdict> {
    Ok(Verdict::Leave {
        reason: reason.into(),
        bias: false,
    })
}

/// One float32 constant of subgraph `si` and its readers.
struct Constant<'a> {
    model: &'a Model,
    sg: &'a ir::Subgraph,
    si: usize,
    ti: usize,
    t: &'a Tensor,
    cons: &'a [(usize, usize)],
    uses: Vec<Use>,
    elements: u64,
}

impl<'a> Constant<'a> {
    fn new(model: &'a Model, (si, ti): (usize, usize), cons: &'a [(usize, usize)]) -> Self {
        let sg = &model.subgraphs[si];
        let t = &sg.tensors[ti];
        let uses = cons
            .iter()
            .map(|&(oi, pos)| {
                let kind = model.builtin(&sg.operators[oi]);
                Use {
                    op: oi,
                    pos,
                    kind,
                    rule: rules::rule_for(kind),
                }
            })
            .collect();
        Constant {
            model,
            sg,
            si,
            ti,
            t,
            cons,
            uses,
            elements: t.num_elements().unwrap_or(0),
        }
    }

    fn names(&self) -> Vec<String> {
        consumer_names(self.model, self.sg, self.cons)
    }

    fn verdict(&self, opts: &Options, report: &mut Report) -> Result<Verdict> {
        if self.uses.iter().any(|u| u.role() == Some(Role::NonReal)) {
            return leave("not real-valued (a shape, index or axis input)");
        }
        if self.sg.outputs.contains(&(self.ti as i32)) {
            return leave("it is also a subgraph output");
        }
        let is_bias = self
            .uses
            .iter()
            .any(|u| matches!(u.role(), Some(Role::Bias { .. })));
        let bias_reason = match opts.mode {
            Mode::WeightInt8 | Mode::WeightInt4 if is_bias => Some(BIAS_REASON),
            Mode::Dynamic if is_bias => Some("a bias: hybrid kernels read float32 biases"),
            _ => None,
        };
        if let Some(reason) = bias_reason {
            return Ok(Verdict::Leave {
                reason: reason.into(),
                bias: true,
            });
        }
        let (elements, min_elements) = (self.elements, opts.min_elements());
        if elements < min_elements {
            return leave(format!(
                "{elements} elements, fewer than --min-elements {min_elements}"
            ));
        }
        match opts.mode {
            Mode::Dynamic => Ok(self.dynamic(opts)),
            Mode::WeightInt8 => Ok(self.dequantized_int8(opts)),
            Mode::Int8 | Mode::Int16x8 | Mode::Qat => Err(Error::Internal(
                "full-integer modes do not use the weight pass".into(),
            )),
            Mode::Float16 => Ok(self.float16()),
            // LiteRT runs the custom operators it knows through XNNPACK, which folds
            // int8 and float16 weights behind a DEQUANTIZE but not INT4 ones (the op
            // then falls back to a kernel that is not registered): int8 instead.
            Mode::WeightInt4
                if self
                    .uses
                    .iter()
                    .any(|u| !rules::reads_int4_behind_dequantize(u.kind)) =>
            {
                report.note(format!(
                    "subgraph {}: tensor {} {:?} is INT8, not INT4: a custom operator reads it, and LiteRT's XNNPACK delegate, which runs custom operators, reads no INT4 weights behind a DEQUANTIZE",
                    self.si, self.ti, self.t.name
                ));
                Ok(self.dequantized_int8(opts))
            }
            Mode::WeightInt4 => Ok(self.int4(opts, report)),
        }
    }

    /// Behind a DEQUANTIZE any axis is allowed: the first reader's output-channel axis
    /// (readers of one constant nearly always agree).
    fn dequantize_axis(&self, opts: &Options) -> Option<usize> {
        self.uses
            .iter()
            .find_map(|u| u.weight_axis(self.t.shape.len()))
            .filter(|_| !opts.per_tensor)
    }

    fn dequantized_int8(&self, opts: &Options) -> Verdict {
        Verdict::Quantize {
            action: Action::Int8Dequantize {
                axis: self.dequantize_axis(opts),
            },
            direct: Vec::new(),
        }
    }

    fn dynamic(&self, opts: &Options) -> Verdict {
        let hybrid: Vec<&Use> = self.uses.iter().filter(|u| u.is_hybrid_weight()).collect();
        if hybrid.is_empty() {
            return Verdict::Leave {
                reason: no_hybrid_reason(&self.uses),
                bias: false,
            };
        }
        // One int8 tensor serves every hybrid reader: per channel only when all of them
        // take per-channel weights on the same axis.
        let rank = self.t.shape.len();
        let axes: Vec<Option<usize>> = hybrid
            .iter()
            .map(|u| {
                u.weight_axis(rank)
                    .filter(|_| u.rule.is_some_and(|r| r.hybrid == Hybrid::PerChannel))
            })
            .collect();
        let axis = axes[0].filter(|_| !opts.per_tensor && axes.iter().all(|a| *a == axes[0]));
        Verdict::Quantize {
            action: Action::HybridInt8 { axis },
            direct: hybrid.iter().map(|u| (u.op, u.pos)).collect(),
        }
    }

    fn float16(&self) -> Verdict {
        let sg = self.sg;
        let integer_reader = self.uses.iter().find(|u| {
            sg.operators[u.op].inputs.iter().any(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| sg.tensors.get(i))
                    .is_some_and(|x| x.quantized().is_some())
            })
        });
        if let Some(u) = integer_reader {
            return Verdict::Leave {
                reason: format!(
                    "{} already reads quantized inputs; mixing float16 constants into it is not supported by the runtime's delegates",
                    fb::op_name(u.kind)
                ),
                bias: false,
            };
        }
        Verdict::Quantize {
            action: Action::Float16,
            direct: Vec::new(),
        }
    }

    fn int4(&self, opts: &Options, report: &mut Report) -> Verdict {
        let (t, uses) = (self.t, &self.uses);
        // FULLY_CONNECTED's INT4 kernel reads rows packed two values per byte: a weight
        // with odd rows goes through a DEQUANTIZE instead.
        let odd_rows = t.shape.last().is_none_or(|&d| d % 2 != 0);
        let direct: Vec<&Use> = uses
            .iter()
            .filter(|u| u.reads_int4() && !(odd_rows && u.kind == Op::FullyConnected))
            .collect();
        let only_direct = direct.len() == uses.len();
        let fc_only = only_direct && direct.iter().all(|u| u.kind == Op::FullyConnected);
        let readers: Vec<usize> = direct.iter().map(|u| u.op).collect();
        let refusal = opts.block_size.and_then(|b| {
            if odd_rows && uses.iter().all(|u| u.kind == Op::FullyConnected) {
                Some(format!("its input depth (shape {:?}) is odd: FULLY_CONNECTED reads it through a DEQUANTIZE, which ignores blockwise scales", t.shape))
            } else if !fc_only {
                Some("only FULLY_CONNECTED reads blockwise INT4 in LiteRT 2.3 (its DEQUANTIZE ignores blockwise scales)".to_string())
            } else if t.shape.len() != 2 || !(t.shape[1] as usize).is_multiple_of(b) {
                Some(format!("its input dimension (shape {:?}) is not a multiple of {b}", t.shape))
            } else {
                super::blockwise::refusal(self.model, self.si, &t.shape, &readers)
            }
        });
        let blockwise = opts.block_size.filter(|_| refusal.is_none());
        if let (Some(b), Some(why)) = (opts.block_size, refusal) {
            report.note(format!(
                "subgraph {}: tensor {} {:?} is INT4 per channel, not blockwise (--block-size {b}): {why}",
                self.si, self.ti, t.name,
            ));
        }
        let direct: Vec<(usize, usize)> = direct.iter().map(|u| (u.op, u.pos)).collect();
        let action = match blockwise {
            Some(b) => Action::Int4 {
                axis: Some(0),
                block: Some(b),
            },
            // INT4 kernels read per-channel parameters on axis 0 (rows).
            None if !direct.is_empty() => Action::Int4 {
                axis: Some(0),
                block: None,
            },
            None => Action::Int4 {
                axis: self.dequantize_axis(opts),
                block: None,
            },
        };
        Verdict::Quantize { action, direct }
    }
}

/// Why `dynamic` leaves a constant none of whose readers is a hybrid kernel's weight.
fn no_hybrid_reason(uses: &[Use]) -> String {
    match uses {
        [u] => match u.rule.filter(|r| r.hybrid != Hybrid::No) {
            None => format!(
                "{} has no dynamic-range kernel; use --mode weight-int8 to store it as int8 behind a DEQUANTIZE",
                fb::op_name(u.kind)
            ),
            Some(_) => format!(
                "input {} of {} is not a weight the hybrid kernel can read as int8",
                u.pos,
                fb::op_name(u.kind)
            ),
        },
        _ => format!(
            "none of its {} readers ({}) is a dynamic-range kernel reading it as a weight; use --mode weight-int8 to store it as int8 behind a DEQUANTIZE",
            uses.len(),
            uses.iter()
                .map(|u| format!("{} input {}", fb::op_name(u.kind), u.pos))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn apply(
    model: &mut Model,
    d: &Decision,
    opts: &Options,
    hessian: Option<&Hessian>,
    report: &mut Report,
    pending: &mut Vec<Operator>,
) -> Result<()> {
    let (si, ti) = (d.subgraph, d.tensor);
    let t = model.subgraphs[si].tensors[ti].clone();
    let mut change = TensorChange {
        subgraph: si,
        tensor: ti,
        name: t.name.clone(),
        consumers: d.consumers.clone(),
        old_dtype: fb::dtype_name(t.dtype).into(),
        new_dtype: String::new(),
        bytes_before: model.tensor_data(&t).len() as u64,
        bytes_after: 0,
        granularity: String::new(),
        axis: None,
        block_size: None,
        scale_min: None,
        scale_max: None,
        dequantize_inserted: d.dequantize,
        rounding: None,
    };
    let (dtype, data, quant) = match d.action {
        Action::HybridInt8 { axis } | Action::Int8Dequantize { axis } => {
            int8_from_bytes(model, &t, axis, &mut change)
        }
        Action::Float16 => {
            // Deferred: the writer converts the (mapped) bytes block by block as it
            // writes them; nothing weight-sized is allocated.
            let original = model.buffers[t.buffer as usize].data.bytes();
            let data = ir::Data::deferred(original, (4, 2), math::f16_run);
            change.new_dtype = "FLOAT16".into();
            change.granularity = "cast".into();
            (TensorType::Float16, data, None)
        }
        Action::Int4 { axis, block } => {
            let w = Int4Site {
                si,
                t: &t,
                axis,
                block,
            };
            int4(model, &w, opts, hessian, &mut change)
        }
    };
    change.bytes_after = data.len() as u64;
    let quantized = install(model, d, (dtype, data, quant), pending);
    for &(oi, pos) in &d.direct {
        model.subgraphs[si].operators[oi].inputs[pos] = quantized;
        set_asymmetric_inputs(model, si, oi);
    }
    report.quantized.push(change);
    Ok(())
}

/// A quantized constant: its type, data and parameters.
type QuantizedData = (TensorType, ir::Data, Option<QuantParams>);

/// Symmetric int8 straight from the constant's (mapped) bytes.
fn int8_from_bytes(
    model: &Model,
    t: &Tensor,
    axis: Option<usize>,
    change: &mut TensorChange,
) -> QuantizedData {
    let ch = Channels::new(&t.shape, axis);
    // No prefault of the map first: with contiguous channels each parallel task reads
    // its bytes from the file (the map's pages are never touched); otherwise the tasks
    // fault their own pages side by side, instead of one thread mapping the whole weight.
    let original = model.buffers[t.buffer as usize].data.clone();
    let file = model.mapped_source(&original);
    let (scales, data) = math::quantize_symmetric_bytes_from(&original, file, ch, 127.0);
    model.release_pages(&original);
    (
        TensorType::Int8,
        data.into(),
        Some(int8_params(scales, axis, change)),
    )
}

/// Per-axis symmetric int8 parameters, recorded in the report's change.
fn int8_params(scales: Vec<f32>, axis: Option<usize>, change: &mut TensorChange) -> QuantParams {
    change.new_dtype = "INT8".into();
    change.granularity = granularity(axis).into();
    change.axis = axis.map(|a| a as i32);
    set_scale_range(change, &scales);
    let zp = vec![0; scales.len()];
    QuantParams::per_axis(scales, zp, axis.unwrap_or(0) as i32)
}

/// The weight an INT4 action quantizes: tensor `t` of subgraph `si`, per channel on
/// `axis` or in blocks of `block`.
struct Int4Site<'a> {
    si: usize,
    t: &'a Tensor,
    axis: Option<usize>,
    block: Option<usize>,
}

/// INT4 (packed), or int8 when `--int4-max-loss` finds INT4 costs the layer more.
fn int4(
    model: &mut Model,
    w: &Int4Site,
    opts: &Options,
    hessian: Option<&Hessian>,
    change: &mut TensorChange,
) -> QuantizedData {
    let (t, axis, block) = (w.t, w.axis, w.block);
    // Straight from the (mapped) bytes, whose pages are released once read.
    let original = model.buffers[t.buffer as usize].data.clone();
    let source = WeightSource {
        file: model.mapped_source(&original),
        prefault: &|d| model.prefault_pages(d),
    };
    let r = round_int4(&t.shape, &original, &source, axis, block, opts, hessian);
    model.release_pages(&original);
    let keep_int8 = opts
        .int4_max_loss_db
        .is_some_and(|db| r.report.int4_sqnr_db < db);
    change.rounding = Some(RoundingReport {
        kept_int8: keep_int8,
        ..r.report.clone()
    });
    if keep_int8 {
        // INT4 costs this layer more than the budget: int8 (nearest rounding is within
        // a step of 1/254 of the range), same axis, per channel for a blockwise
        // candidate.
        let axis = axis.or(block.map(|_| 0));
        let ch = Channels::new(&t.shape, axis);
        let values = math::f32_values(model.tensor_data(t));
        let scales = math::symmetric_scales(&values, ch, 127.0);
        let q = math::quantize_symmetric(&values, ch, &scales, 127.0);
        let data: Vec<u8> = q.iter().map(|&v| v as u8).collect();
        return (
            TensorType::Int8,
            ir::Data::from(data),
            Some(int8_params(scales, axis, change)),
        );
    }
    set_scale_range(change, &r.scales);
    let quant = match block {
        None => {
            change.granularity = granularity(axis).into();
            change.axis = axis.map(|a| a as i32);
            let zp = vec![0; r.scales.len()];
            QuantParams::per_axis(r.scales, zp, axis.unwrap_or(0) as i32)
        }
        Some(b) => {
            change.granularity = "blockwise".into();
            change.axis = Some(0);
            change.block_size = Some(b);
            blockwise_params(model, w.si, t, b, &r.scales)
        }
    };
    change.new_dtype = "INT4".into();
    (TensorType::Int4, r.packed.into(), Some(quant))
}

/// Blockwise parameters: the block scales as a new FLOAT16 tensor `[out, blocks]`.
fn blockwise_params(
    model: &mut Model,
    si: usize,
    t: &Tensor,
    b: usize,
    scales: &[f32],
) -> QuantParams {
    let (out, blocks) = (t.shape[0] as usize, t.shape[1] as usize / b);
    let scale_buffer = model.add_buffer(math::f16_bytes(scales));
    let mut st = Tensor::new(
        format!("{}/block_scales", t.name),
        TensorType::Float16,
        vec![out as i32, blocks as i32],
    );
    st.buffer = scale_buffer;
    let scale_tensor = model.subgraphs[si].add_tensor(st);
    QuantParams {
        details: Some(fb::QuantizationDetails::BlockwiseQuantization(Box::new(
            fb::BlockwiseQuantization {
                scales: scale_tensor,
                zero_points: -1,
                block_size: b as i32,
            },
        ))),
        quantized_dimension: 0,
        ..Default::default()
    }
}

/// Stores the quantized data and returns the tensor the direct readers read: the
/// constant itself, or (when other readers remain) a new quantized tensor with the
/// original name while tensor `ti` becomes the output of a DEQUANTIZE of it.
fn install(model: &mut Model, d: &Decision, q: QuantizedData, pending: &mut Vec<Operator>) -> i32 {
    let (si, ti) = (d.subgraph, d.tensor);
    let (dtype, data, quant) = q;
    let buffer = model.add_buffer(data);
    if !d.dequantize {
        let q = &mut model.subgraphs[si].tensors[ti];
        q.dtype = dtype;
        q.buffer = buffer;
        q.quant = quant;
        return ti as i32;
    }
    let opcode = model.ensure_opcode(Op::Dequantize, 1);
    let sg = &mut model.subgraphs[si];
    let float = &mut sg.tensors[ti];
    let mut q = Tensor::new(float.name.clone(), dtype, float.shape.clone());
    q.shape_signature = float.shape_signature.clone();
    q.buffer = buffer;
    q.quant = quant;
    float.name = format!("{}/dequantize", float.name);
    float.buffer = 0;
    float.quant = None;
    let qi = sg.add_tensor(q);
    pending.push(Operator::new(opcode, vec![qi], vec![ti as i32]));
    qi
}

/// One weight rounded to INT4: values, scales (one per channel or block, blockwise ones
/// as the FLOAT16 the kernel reads), and the report of the rounding.
struct Int4Weight {
    /// The values packed two per byte.
    packed: Vec<u8>,
    scales: Vec<f32>,
    report: RoundingReport,
}

/// Where [`round_int4`] may take a weight's bytes from besides memory.
struct WeightSource<'a> {
    /// The model's file and the offset that holds the bytes (a mapped model): the fast
    /// path reads each task's bytes from it with a positioned read, so the weight's pages
    /// are never mapped into the process.
    file: Option<(&'a std::fs::File, u64)>,
    /// Maps the pages of the bytes in one call, before the reference path reads them all.
    /// The fast path does not call it: its parallel tasks read or fault their own pages
    /// side by side, instead of one thread mapping the whole weight first (a serial
    /// ~2.5 ms for 76 MB).
    prefault: &'a dyn Fn(&[u8]),
}

/// Rounds a weight (its little-endian f32 bytes) to INT4 with `opts.rounding()`, and
/// measures the result against round-to-nearest on the layer's output error (with a
/// Hessian) or on the weights. Without a Hessian and with contiguous groups (every
/// large FULLY_CONNECTED or CONV_2D weight) it runs [`rounding::fast::round_bytes`]
/// on the bytes (read from `source.file` when the model is mapped); otherwise the
/// reference below on a float copy (after `source.prefault`).
fn round_int4(
    shape: &[i32],
    bytes: &[u8],
    source: &WeightSource,
    axis: Option<usize>,
    block: Option<usize>,
    opts: &Options,
    hessian: Option<&Hessian>,
) -> Int4Weight {
    const QMAX: f32 = 7.0;
    // The matrix view (rows = channels on axis 0) GPTQ and the Hessian error need.
    let groups = match (axis, block) {
        (_, Some(b)) => Some(Groups {
            rows: shape[0] as usize,
            cols: shape[1] as usize,
            block: Some(b),
        }),
        (Some(0), None) if !shape.is_empty() && shape[0] > 0 => Some(Groups {
            rows: shape[0] as usize,
            cols: bytes.len() / 4 / shape[0] as usize,
            block: None,
        }),
        _ => None,
    };
    let ch = match groups {
        Some(g) => g.channels(),
        None => Channels::new(shape, axis),
    };
    // Blockwise scales are stored as FLOAT16: round with the value the kernel reads.
    let stored = move |s: Vec<f32>| -> Vec<f32> {
        if block.is_none() {
            return s;
        }
        math::f16_to_f32(&math::f16_bytes(&s))
            .into_iter()
            .map(|v| if v > 0.0 { v } else { f32::MIN_POSITIVE })
            .collect()
    };
    let asked = opts.rounding();
    let h = hessian.filter(|h| groups.is_some_and(|g| g.cols == h.n));
    let mut fallback = None;
    let method = match asked {
        Rounding::Gptq if h.is_none() => {
            fallback = Some(
                "no input statistics for this weight (gptq needs a FULLY_CONNECTED or CONV_2D reader with channels on axis 0): mse".to_string(),
            );
            Rounding::Mse
        }
        m => m,
    };
    if h.is_none()
        && let Some(w) = round_int4_fast(bytes, source.file, ch, method, &stored, &fallback)
    {
        return w;
    }
    (source.prefault)(bytes);
    let values = &math::f32_values(bytes)[..];
    let nearest_scales = stored(math::symmetric_scales(values, ch, QMAX));
    let nearest = math::quantize_symmetric(values, ch, &nearest_scales, QMAX);
    let (q, scales) = match method {
        Rounding::Nearest => (nearest.clone(), nearest_scales.clone()),
        Rounding::Mse => {
            let s = stored(rounding::mse_scales(values, ch, QMAX));
            (math::quantize_symmetric(values, ch, &s, QMAX), s)
        }
        Rounding::Gptq => {
            let (g, hs) = (groups.expect("checked"), h.expect("checked"));
            // With error feedback, the weights that undo the earlier layers' error.
            let target = hs.feedback.as_ref().map_or(values, |f| &f.target[..]);
            let s = stored(rounding::mse_scales(target, ch, QMAX));
            match rounding::gptq_act_order(target, g, &s, &hs.h, QMAX) {
                Some(q) => (q, s),
                None => {
                    fallback =
                        Some("the layer's input Hessian is not positive definite: mse".into());
                    let s = stored(rounding::mse_scales(values, ch, QMAX));
                    (math::quantize_symmetric(values, ch, &s, QMAX), s)
                }
            }
        }
    };
    let method = if fallback.is_some() && method == Rounding::Gptq {
        Rounding::Mse
    } else {
        method
    };
    let (gain_db, int4_sqnr_db, measure) = measure_rounding(
        values,
        (&nearest, &nearest_scales),
        (&q, &scales),
        groups.zip(h).filter(|_| method == Rounding::Gptq),
        groups.zip(h),
        ch,
    );
    Int4Weight {
        packed: math::pack_int4(&q),
        scales,
        report: RoundingReport {
            method: method.name().into(),
            fallback,
            measure: measure.into(),
            gain_db,
            int4_sqnr_db,
            kept_int8: false,
        },
    }
}

/// What a rounding bought on one weight: the gain over nearest (dB), the INT4 SQNR (dB)
/// and the measure's name. With gptq's error feedback (`feedback`): the layer's output
/// error against the float layer's on the calibration samples, both roundings reading
/// the same (partly quantized) inputs, and the SQNR of the rounding alone (target
/// against rounded, on those inputs), which --int4-max-loss compares with its budget.
/// Otherwise on the Hessian (`hessian`) when there is one, else on the weights.
fn measure_rounding(
    values: &[f32],
    nearest: (&[i8], &[f32]),
    chosen: (&[i8], &[f32]),
    feedback: Option<(Groups, &Hessian)>,
    hessian: Option<(Groups, &Hessian)>,
    ch: Channels,
) -> (f64, f64, &'static str) {
    if let Some((g, h)) = feedback
        && let Some(f) = &h.feedback
    {
        let stats = rounding::FeedbackStats {
            hq: &h.h,
            cross: &f.cross,
            hf: &f.float_h,
        };
        let (e_near, _) = rounding::feedback_error(values, nearest.0, g, nearest.1, stats);
        let (e, _) = rounding::feedback_error(values, chosen.0, g, chosen.1, stats);
        let (e_own, signal) = rounding::layer_error(&f.target, chosen.0, g, chosen.1, Some(&h.h));
        return (db(e_near, e), db(signal, e_own), "sequential");
    }
    let error = |q: &[i8], s: &[f32]| match hessian {
        Some((g, h)) => rounding::layer_error(values, q, g, s, Some(&h.h)),
        None => weight_error(values, q, ch, s),
    };
    let (e_near, signal) = error(nearest.0, nearest.1);
    let (e, _) = error(chosen.0, chosen.1);
    let measure = if hessian.is_some() {
        "hessian"
    } else {
        "weights"
    };
    (db(e_near, e), db(signal, e), measure)
}

/// `10·log10(a / b)`, with the limits for zero terms.
fn db(a: f64, b: f64) -> f64 {
    if b <= 0.0 {
        if a <= 0.0 { 0.0 } else { f64::INFINITY }
    } else if a <= 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (a / b).log10()
    }
}

/// [`round_int4`] for nearest and mse on weights whose groups are contiguous, straight
/// from the bytes ([`rounding::fast::round_bytes`]); `None` for the other cases.
fn round_int4_fast(
    bytes: &[u8],
    file: Option<(&std::fs::File, u64)>,
    ch: Channels,
    method: Rounding,
    stored: rounding::fast::Stored,
    fallback: &Option<String>,
) -> Option<Int4Weight> {
    let m = match method {
        Rounding::Nearest => rounding::fast::Method::Nearest,
        Rounding::Mse => rounding::fast::Method::Mse,
        Rounding::Gptq => return None,
    };
    let r = rounding::fast::round_bytes_from(bytes, file, ch, m, stored)?;
    Some(Int4Weight {
        packed: r.packed,
        scales: r.scales,
        report: RoundingReport {
            method: method.name().into(),
            fallback: fallback.clone(),
            measure: "weights".into(),
            gain_db: db(r.e_nearest, r.e_chosen),
            int4_sqnr_db: db(r.signal, r.e_chosen),
            kept_int8: false,
        },
    })
}

/// Squared weight error and squared weights, over channels `ch`: added in element order
/// within bands of [`rounding::fast::band_len`] elements, then band after band (one
/// band, a plain loop, up to 2^18 elements). The fast path adds the same terms in
/// another order (lanes per group), within a bound of these sums.
fn weight_error(values: &[f32], q: &[i8], ch: Channels, scales: &[f32]) -> (f64, f64) {
    let band = rounding::fast::band_len(ch, values.len());
    let mut total = (0f64, 0f64);
    for start in (0..values.len()).step_by(band) {
        let end = (start + band).min(values.len());
        let (e, s) = (start..end).fold((0f64, 0f64), |(e, s), i| {
            let (v, qi) = (values[i], q[i]);
            let d = v as f64 - qi as f64 * scales[ch.of(i)] as f64;
            (e + d * d, s + v as f64 * v as f64)
        });
        total = (total.0 + e, total.1 + s);
    }
    total
}

fn granularity(axis: Option<usize>) -> &'static str {
    if axis.is_some() {
        "per-channel"
    } else {
        "per-tensor"
    }
}

fn set_scale_range(change: &mut TensorChange, scales: &[f32]) {
    change.scale_min = scales.iter().copied().reduce(f32::min);
    change.scale_max = scales.iter().copied().reduce(f32::max);
}

/// Sets `asymmetric_quantize_inputs` on a hybrid operator whose rule asks for it (TF's
/// converter does the same: per-row asymmetric input quantization is more accurate).
fn set_asymmetric_inputs(model: &mut Model, si: usize, oi: usize) {
    let op_kind = model.builtin(&model.subgraphs[si].operators[oi]);
    if !rules::rule_for(op_kind).is_some_and(|r| r.asymmetric_inputs) {
        return;
    }
    let op = &mut model.subgraphs[si].operators[oi];
    rules::options::set_asymmetric_inputs(op_kind, &mut op.builtin_options);
}

/// An error for a run that found nothing to do, naming the flags that would change that.
pub fn nothing_to_quantize(model: &Model, opts: &Options, report: &Report) -> Error {
    let already = model
        .subgraphs
        .iter()
        .flat_map(|s| &s.tensors)
        .filter(|t| t.quantized().is_some())
        .count();
    let float_consts = model
        .subgraphs
        .iter()
        .flat_map(|s| &s.tensors)
        .filter(|t| t.dtype == TensorType::Float32 && model.is_constant(t))
        .count();
    let float16_consts = model
        .subgraphs
        .iter()
        .flat_map(|s| &s.tensors)
        .filter(|t| t.dtype == TensorType::Float16 && model.is_constant(t))
        .count();
    let what = if float_consts == 0 && float16_consts > 0 && opts.mode == Mode::Float16 {
        format!(
            "the model's weights are already float16 ({float16_consts} FLOAT16 constants);              --mode float16 has nothing left to convert"
        )
    } else if float_consts == 0 && already > 0 {
        format!(
            "the model has no float32 weights: it is already quantized ({already} quantized tensors)"
        )
    } else if float_consts == 0 {
        "the model has no float32 weights".to_string()
    } else {
        format!(
            "none of its {} float32 weights qualifies for --mode {} ({}); see --report for each reason, \
             or lower --min-elements (now {})",
            float_consts,
            opts.mode.name(),
            report
                .left_float
                .first()
                .map_or("no consumers".to_string(), |l| format!(
                    "e.g. {:?}: {}",
                    l.name, l.reason
                )),
            opts.min_elements()
        )
    };
    Error::unsupported(Loc::model(), format!("nothing to quantize: {what}"))
}
