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
//! - `weight-int4`: INT4 read directly by the kernels that take it, INT4 + DEQUANTIZE
//!   (per channel) for the other weights.
//!
//! Biases (the rule table's bias role) stay float32 in the int8/int4 weight modes, as
//! TF and ai-edge-quantizer leave them: they are small and their error reaches every
//! output unscaled.

use crate::error::{Error, Loc, Result};
use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::ir::{self, Model, Operator, QuantParams, Tensor};
use crate::rules::{self, Hybrid, Role};

use super::math::{self, Channels};
use super::report::{LeftFloat, Report, TensorChange};
use super::{Mode, Options};

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
    // DEQUANTIZE operators are inserted after every decision is applied, so that the
    // operator indices the plan recorded stay valid throughout.
    let mut pending: Vec<Vec<Operator>> = vec![Vec::new(); model.subgraphs.len()];
    for d in &decisions {
        apply(model, d, report, &mut pending[d.subgraph])?;
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

/// Why weight-only int8/int4 leave biases float (reported for each; `dynamic` leaves
/// them too, as its hybrid kernels read float biases).
const BIAS_REASON: &str = "a bias: the weight-only modes keep biases float32 (as TF and \
     ai-edge-quantizer); they are small and their rounding error reaches every output";

fn plan(model: &Model, opts: &Options, report: &mut Report) -> Result<Vec<Decision>> {
    let min_elements = opts.min_elements();
    let mut decisions = Vec::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let consumers = sg.consumers();
        for (ti, t) in sg.tensors.iter().enumerate() {
            if !model.is_constant(t) || consumers[ti].is_empty() {
                continue;
            }
            let cons = &consumers[ti];
            let names = || consumer_names(model, sg, cons);
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
            let elements = t.num_elements().unwrap_or(0);
            let mut leave_as = |reason: String, bias: bool| {
                report.left_float.push(LeftFloat {
                    subgraph: si,
                    tensor: ti,
                    name: t.name.clone(),
                    consumers: names(),
                    elements,
                    reason,
                    bias,
                })
            };
            let uses: Vec<Use> = cons
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
            let mut leave = |reason: String| leave_as(reason, false);
            if uses.iter().any(|u| u.role() == Some(Role::NonReal)) {
                leave("not real-valued (a shape, index or axis input)".into());
                continue;
            }
            if sg.outputs.contains(&(ti as i32)) {
                leave("it is also a subgraph output".into());
                continue;
            }
            let is_bias = uses
                .iter()
                .any(|u| matches!(u.role(), Some(Role::Bias { .. })));
            match opts.mode {
                Mode::WeightInt8 | Mode::WeightInt4 if is_bias => {
                    leave_as(BIAS_REASON.into(), true);
                    continue;
                }
                Mode::Dynamic if is_bias => {
                    leave_as("a bias: hybrid kernels read float32 biases".into(), true);
                    continue;
                }
                _ => {}
            }
            let mut leave = |reason: String| leave_as(reason, false);
            if elements < min_elements {
                leave(format!(
                    "{elements} elements, fewer than --min-elements {min_elements}"
                ));
                continue;
            }
            let rank = t.shape.len();
            // Behind a DEQUANTIZE any axis is allowed: the first reader's output-channel
            // axis (readers of one constant nearly always agree).
            let dequantize_axis = || {
                uses.iter()
                    .find_map(|u| u.weight_axis(rank))
                    .filter(|_| !opts.per_tensor)
            };
            let (action, direct) = match opts.mode {
                Mode::Dynamic => {
                    let hybrid: Vec<&Use> = uses.iter().filter(|u| u.is_hybrid_weight()).collect();
                    if hybrid.is_empty() {
                        leave(no_hybrid_reason(&uses));
                        continue;
                    }
                    // One int8 tensor serves every hybrid reader: per channel only when
                    // all of them take per-channel weights on the same axis.
                    let axes: Vec<Option<usize>> = hybrid
                        .iter()
                        .map(|u| {
                            u.weight_axis(rank)
                                .filter(|_| u.rule.is_some_and(|r| r.hybrid == Hybrid::PerChannel))
                        })
                        .collect();
                    let axis =
                        axes[0].filter(|_| !opts.per_tensor && axes.iter().all(|a| *a == axes[0]));
                    (
                        Action::HybridInt8 { axis },
                        hybrid.iter().map(|u| (u.op, u.pos)).collect(),
                    )
                }
                Mode::WeightInt8 => (
                    Action::Int8Dequantize {
                        axis: dequantize_axis(),
                    },
                    Vec::new(),
                ),
                Mode::Int8 | Mode::Int16x8 | Mode::Qat => {
                    return Err(Error::Internal(
                        "full-integer modes do not use the weight pass".into(),
                    ));
                }
                Mode::Float16 => {
                    let integer_reader = uses.iter().find(|u| {
                        sg.operators[u.op].inputs.iter().any(|&i| {
                            usize::try_from(i)
                                .ok()
                                .and_then(|i| sg.tensors.get(i))
                                .is_some_and(|x| x.quantized().is_some())
                        })
                    });
                    if let Some(u) = integer_reader {
                        leave(format!(
                            "{} already reads quantized inputs; mixing float16 constants into it is not supported by the runtime's delegates",
                            fb::op_name(u.kind)
                        ));
                        continue;
                    }
                    (Action::Float16, Vec::new())
                }
                Mode::WeightInt4 => {
                    let direct: Vec<&Use> = uses.iter().filter(|u| u.reads_int4()).collect();
                    let only_direct = direct.len() == uses.len();
                    match opts.block_size {
                        Some(b)
                            if only_direct
                                && direct.iter().any(|u| u.kind != Op::FullyConnected) =>
                        {
                            leave(format!(
                                "blockwise INT4 (--block-size {b}) runs only in FULLY_CONNECTED, not {}",
                                fb::op_name(
                                    direct
                                        .iter()
                                        .find(|u| u.kind != Op::FullyConnected)
                                        .map_or(Op::Custom, |u| u.kind)
                                )
                            ));
                            continue;
                        }
                        Some(b)
                            if only_direct
                                && (rank != 2 || !(t.shape[1] as usize).is_multiple_of(b)) =>
                        {
                            leave(format!(
                                "input dimension of shape {:?} is not a multiple of --block-size {b}",
                                t.shape
                            ));
                            continue;
                        }
                        _ if !direct.is_empty() && t.shape.last().is_none_or(|&d| d % 2 != 0) => {
                            leave(format!(
                                "rows of shape {:?} have an odd length; INT4 rows are packed two values per byte",
                                t.shape
                            ));
                            continue;
                        }
                        // INT4 kernels read per-channel parameters on axis 0 (rows).
                        b if only_direct => (
                            Action::Int4 {
                                axis: Some(0),
                                block: b,
                            },
                            direct.iter().map(|u| (u.op, u.pos)).collect(),
                        ),
                        // Blockwise parameters are read by FULLY_CONNECTED only: a constant
                        // that other operators read too is per channel.
                        _ if !direct.is_empty() => (
                            Action::Int4 {
                                axis: Some(0),
                                block: None,
                            },
                            direct.iter().map(|u| (u.op, u.pos)).collect(),
                        ),
                        _ => (
                            Action::Int4 {
                                axis: dequantize_axis(),
                                block: None,
                            },
                            Vec::new(),
                        ),
                    }
                }
            };
            let dequantize = direct.len() < uses.len();
            decisions.push(Decision {
                subgraph: si,
                tensor: ti,
                action,
                direct,
                dequantize,
                consumers: names(),
            });
        }
    }
    Ok(decisions)
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
    report: &mut Report,
    pending: &mut Vec<Operator>,
) -> Result<()> {
    let (si, ti) = (d.subgraph, d.tensor);
    let t = model.subgraphs[si].tensors[ti].clone();
    let values = || math::f32_values(model.tensor_data(&t));
    let bytes_before = model.tensor_data(&t).len() as u64;
    let mut change = TensorChange {
        subgraph: si,
        tensor: ti,
        name: t.name.clone(),
        consumers: d.consumers.clone(),
        old_dtype: fb::dtype_name(t.dtype).into(),
        new_dtype: String::new(),
        bytes_before,
        bytes_after: 0,
        granularity: String::new(),
        axis: None,
        block_size: None,
        scale_min: None,
        scale_max: None,
        dequantize_inserted: d.dequantize,
    };
    let (dtype, data, quant) = match d.action {
        Action::HybridInt8 { axis } | Action::Int8Dequantize { axis } => {
            let ch = Channels::new(&t.shape, axis);
            let original = model.buffers[t.buffer as usize].data.clone();
            model.prefault_pages(&original);
            let (scales, data) = math::quantize_symmetric_bytes(&original, ch, 127.0);
            model.release_pages(&original);
            change.new_dtype = "INT8".into();
            change.granularity = granularity(axis).into();
            change.axis = axis.map(|a| a as i32);
            set_scale_range(&mut change, &scales);
            let zp = vec![0; scales.len()];
            let quant = QuantParams::per_axis(scales, zp, axis.unwrap_or(0) as i32);
            (TensorType::Int8, data, Some(quant))
        }
        Action::Float16 => {
            change.new_dtype = "FLOAT16".into();
            change.granularity = "cast".into();
            (TensorType::Float16, math::f16_bytes(&values()), None)
        }
        Action::Int4 { axis, block } => {
            let (data, quant) = match block {
                None => {
                    let ch = Channels::new(&t.shape, axis);
                    let values = values();
                    let scales = math::symmetric_scales(&values, ch, 7.0);
                    let q = math::quantize_symmetric(&values, ch, &scales, 7.0);
                    set_scale_range(&mut change, &scales);
                    change.granularity = granularity(axis).into();
                    change.axis = axis.map(|a| a as i32);
                    let zp = vec![0; scales.len()];
                    let axis = axis.unwrap_or(0) as i32;
                    (math::pack_int4(&q), QuantParams::per_axis(scales, zp, axis))
                }
                Some(b) => {
                    let (out, inp) = (t.shape[0] as usize, t.shape[1] as usize);
                    let blocks = inp / b;
                    // One scale per (row, block): the blocks are the channels of a
                    // [out·blocks, b] view of the weights.
                    let ch = Channels {
                        channels: out * blocks,
                        inner: b,
                    };
                    let values = values();
                    let scales = math::symmetric_scales(&values, ch, 7.0);
                    // Scales are stored as FLOAT16: quantize with the value the kernel
                    // will read back.
                    let scales: Vec<f32> = math::f16_to_f32(&math::f16_bytes(&scales))
                        .into_iter()
                        .map(|s| if s > 0.0 { s } else { f32::MIN_POSITIVE })
                        .collect();
                    let q = math::quantize_symmetric(&values, ch, &scales, 7.0);
                    set_scale_range(&mut change, &scales);
                    change.granularity = "blockwise".into();
                    change.axis = Some(0);
                    change.block_size = Some(b);
                    let scale_buffer = model.add_buffer(math::f16_bytes(&scales));
                    let mut st = Tensor::new(
                        format!("{}/block_scales", t.name),
                        TensorType::Float16,
                        vec![out as i32, blocks as i32],
                    );
                    st.buffer = scale_buffer;
                    let scale_tensor = model.subgraphs[si].add_tensor(st);
                    let quant = QuantParams {
                        details: Some(fb::QuantizationDetails::BlockwiseQuantization(Box::new(
                            fb::BlockwiseQuantization {
                                scales: scale_tensor,
                                zero_points: -1,
                                block_size: b as i32,
                            },
                        ))),
                        quantized_dimension: 0,
                        ..Default::default()
                    };
                    (math::pack_int4(&q), quant)
                }
            };
            change.new_dtype = "INT4".into();
            (TensorType::Int4, data, Some(quant))
        }
    };
    change.bytes_after = data.len() as u64;
    let buffer = model.add_buffer(data);
    let quantized = if d.dequantize {
        // Tensor `ti` becomes the DEQUANTIZE's float output that the other readers keep
        // reading; the quantized constant is a new tensor with the original name.
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
    } else {
        let q = &mut model.subgraphs[si].tensors[ti];
        q.dtype = dtype;
        q.buffer = buffer;
        q.quant = quant;
        ti as i32
    };
    for &(oi, pos) in &d.direct {
        model.subgraphs[si].operators[oi].inputs[pos] = quantized;
        set_asymmetric_inputs(model, si, oi);
    }
    report.quantized.push(change);
    Ok(())
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
    use fb::BuiltinOptions as B;
    let op = &mut model.subgraphs[si].operators[oi];
    match &mut op.builtin_options {
        Some(B::FullyConnectedOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::BatchMatMulOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::SvdfOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::LstmOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::UnidirectionalSequenceLstmOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::RnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::SequenceRnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(_) => {}
        None => {
            op.builtin_options = match op_kind {
                Op::FullyConnected => Some(B::FullyConnectedOptions(Box::new(
                    fb::FullyConnectedOptions {
                        asymmetric_quantize_inputs: true,
                        ..Default::default()
                    },
                ))),
                Op::BatchMatmul => Some(B::BatchMatMulOptions(Box::new(fb::BatchMatMulOptions {
                    asymmetric_quantize_inputs: true,
                    ..Default::default()
                }))),
                _ => None,
            }
        }
    }
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
