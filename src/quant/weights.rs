//! Weight quantization: dynamic-range int8, float16, weight-only int8, int4.
//!
//! Decide first, then apply. [`plan`] walks every float32 constant of every subgraph and
//! decides, from the op rule table and the options, what becomes of it (with a reason
//! when it stays float); [`apply`] rewrites the graph accordingly. Weights read by a
//! kernel that accepts quantized weights (hybrid int8, int4) change type in place; for
//! the weight-only modes a new quantized constant feeds a DEQUANTIZE that produces the
//! float tensor the consumers already read.

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
    /// Symmetric int8 (axis = per-channel dimension), read directly by a hybrid kernel.
    HybridInt8 { axis: Option<usize> },
    /// Symmetric int8 constant + DEQUANTIZE.
    Int8Dequantize { axis: Option<usize> },
    /// FLOAT16 constant + DEQUANTIZE.
    Float16,
    /// Packed INT4 read directly by the kernel; per channel (axis 0) or blockwise.
    Int4 { block: Option<usize> },
}

#[derive(Debug)]
struct Decision {
    subgraph: usize,
    tensor: usize,
    action: Action,
    /// Operators whose options must change with the weight (hybrid asymmetric inputs).
    /// Indices are valid until the first DEQUANTIZE insertion; only modes that insert
    /// none change options.
    ops: Vec<usize>,
    /// Display names of the consumers, taken at planning time.
    consumers: Vec<String>,
}

/// Runs the weight pass for `opts.mode` over every subgraph.
pub fn quantize_weights(model: &mut Model, opts: &Options, report: &mut Report) -> Result<()> {
    let decisions = plan(model, opts, report)?;
    for d in &decisions {
        apply(model, d, opts, report)?;
    }
    Ok(())
}

fn consumer_names(model: &Model, sg: &ir::Subgraph, cons: &[(usize, usize)]) -> Vec<String> {
    cons.iter()
        .map(|&(oi, _)| format!("{oi} {}", model.op_display_name(&sg.operators[oi])))
        .collect()
}

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
            if t.dtype != TensorType::Float32 {
                continue;
            }
            let elements = t.num_elements().unwrap_or(0);
            let mut leave = |reason: String| {
                report.left_float.push(LeftFloat {
                    subgraph: si,
                    tensor: ti,
                    name: t.name.clone(),
                    consumers: names(),
                    elements,
                    reason,
                })
            };
            let roles: Vec<(Op, Option<&rules::Rule>, usize)> = cons
                .iter()
                .map(|&(oi, pos)| {
                    let op = model.builtin(&sg.operators[oi]);
                    (op, rules::rule_for(op), pos)
                })
                .collect();
            if roles
                .iter()
                .any(|(_, r, pos)| r.is_some_and(|r| r.role(*pos) == Role::NonReal))
            {
                leave("not real-valued (a shape, index or axis input)".into());
                continue;
            }
            if sg.outputs.contains(&(ti as i32)) {
                leave("it is also a subgraph output".into());
                continue;
            }
            if cons.len() > 1 {
                leave(format!(
                    "shared by {} operators; shared weights are never quantized",
                    cons.len()
                ));
                continue;
            }
            let (op, rule, pos) = roles[0];
            let oi = cons[0].0;
            let role = rule.map(|r| r.role(pos));
            let weight_axis = match role {
                Some(Role::Weight { axis }) => axis,
                _ => None,
            };
            if elements < min_elements {
                leave(format!(
                    "{elements} elements, fewer than --min-elements {min_elements}"
                ));
                continue;
            }
            let axis = |per_channel_ok: bool| -> Option<usize> {
                weight_axis
                    .filter(|_| per_channel_ok && !opts.per_tensor)
                    .and_then(|a| usize::try_from(a).ok())
                    .filter(|&a| a < t.shape.len())
            };
            let action = match opts.mode {
                Mode::Dynamic => {
                    let Some(rule) = rule.filter(|r| r.hybrid != Hybrid::No) else {
                        leave(format!(
                            "{} has no dynamic-range kernel; use --mode weight-int8 to store it as int8 behind a DEQUANTIZE",
                            fb::op_name(op)
                        ));
                        continue;
                    };
                    if !matches!(role, Some(Role::Weight { .. })) {
                        leave(format!(
                            "input {pos} of {} is not a weight the hybrid kernel can read as int8",
                            fb::op_name(op)
                        ));
                        continue;
                    }
                    Action::HybridInt8 {
                        axis: axis(rule.hybrid == Hybrid::PerChannel),
                    }
                }
                Mode::WeightInt8 => Action::Int8Dequantize { axis: axis(true) },
                Mode::Int8 | Mode::Int16x8 | Mode::Qat => {
                    return Err(Error::Internal(
                        "full-integer modes do not use the weight pass".into(),
                    ));
                }
                Mode::Float16 => {
                    let op_ref = &sg.operators[oi];
                    let integer_input = op_ref.inputs.iter().any(|&i| {
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| sg.tensors.get(i))
                            .is_some_and(|x| x.quantized().is_some())
                    });
                    if integer_input {
                        leave(format!(
                            "{} already reads quantized inputs; mixing float16 constants into it is not supported by the runtime's delegates",
                            fb::op_name(op)
                        ));
                        continue;
                    }
                    Action::Float16
                }
                Mode::WeightInt4 => {
                    let ok = rule.is_some_and(|r| r.int4_weights) && pos == 1;
                    if !ok {
                        leave(format!(
                            "{} input {pos} cannot read INT4 weights in the runtime",
                            fb::op_name(op)
                        ));
                        continue;
                    }
                    match opts.block_size {
                        Some(b) if op != Op::FullyConnected => {
                            leave(format!(
                                "blockwise INT4 (--block-size {b}) runs only in FULLY_CONNECTED, not {}",
                                fb::op_name(op)
                            ));
                            continue;
                        }
                        Some(b)
                            if t.shape.len() != 2 || !(t.shape[1] as usize).is_multiple_of(b) =>
                        {
                            leave(format!(
                                "input dimension of shape {:?} is not a multiple of --block-size {b}",
                                t.shape
                            ));
                            continue;
                        }
                        _ if t.shape.last().is_none_or(|&d| d % 2 != 0) => {
                            leave(format!(
                                "rows of shape {:?} have an odd length; INT4 rows are packed two values per byte",
                                t.shape
                            ));
                            continue;
                        }
                        b => Action::Int4 { block: b },
                    }
                }
            };
            decisions.push(Decision {
                subgraph: si,
                tensor: ti,
                action,
                ops: vec![oi],
                consumers: names(),
            });
        }
    }
    Ok(decisions)
}

fn apply(model: &mut Model, d: &Decision, opts: &Options, report: &mut Report) -> Result<()> {
    let (si, ti) = (d.subgraph, d.tensor);
    let t = model.subgraphs[si].tensors[ti].clone();
    let consumers = d.consumers.clone();
    let bytes_before = model.tensor_data(&t).len() as u64;
    let mut change = TensorChange {
        subgraph: si,
        tensor: ti,
        name: t.name.clone(),
        consumers,
        old_dtype: fb::dtype_name(t.dtype).into(),
        new_dtype: String::new(),
        bytes_before,
        bytes_after: 0,
        granularity: String::new(),
        axis: None,
        block_size: None,
        scale_min: None,
        scale_max: None,
        dequantize_inserted: false,
    };
    match d.action {
        Action::HybridInt8 { axis } | Action::Int8Dequantize { axis } => {
            let ch = Channels::new(&t.shape, axis);
            let original = model.buffers[t.buffer as usize].data.clone();
            model.prefault_pages(&original);
            let (scales, data) = math::quantize_symmetric_bytes(&original, ch, 127.0);
            model.release_pages(&original);
            change.bytes_after = data.len() as u64;
            change.new_dtype = "INT8".into();
            change.granularity = if axis.is_some() {
                "per-channel"
            } else {
                "per-tensor"
            }
            .into();
            change.axis = axis.map(|a| a as i32);
            set_scale_range(&mut change, &scales);
            let quant = QuantParams::per_axis(
                scales.clone(),
                vec![0; scales.len()],
                axis.unwrap_or(0) as i32,
            );
            if matches!(d.action, Action::HybridInt8 { .. }) {
                let buffer = model.add_buffer(data);
                let t = &mut model.subgraphs[si].tensors[ti];
                t.dtype = TensorType::Int8;
                t.buffer = buffer;
                t.quant = Some(quant);
                for &oi in &d.ops {
                    set_asymmetric_inputs(model, si, oi);
                }
            } else {
                insert_dequantized_constant(model, si, ti, TensorType::Int8, data, Some(quant));
                change.dequantize_inserted = true;
            }
        }
        Action::Float16 => {
            // Straight from the (mapped) bytes, whose pages are released once read.
            let original = model.buffers[t.buffer as usize].data.clone();
            model.prefault_pages(&original);
            let data = math::f16_bytes_of_f32_le(&original);
            model.release_pages(&original);
            change.bytes_after = data.len() as u64;
            change.new_dtype = "FLOAT16".into();
            change.granularity = "cast".into();
            insert_dequantized_constant(model, si, ti, TensorType::Float16, data, None);
            change.dequantize_inserted = true;
        }
        Action::Int4 { block } => {
            // Straight from the (mapped) bytes, whose pages are released once read.
            let original = model.buffers[t.buffer as usize].data.clone();
            model.prefault_pages(&original);
            let (data, quant) = match block {
                None => {
                    let ch = Channels::new(&t.shape, Some(0));
                    let scales = math::symmetric_scales_bytes(&original, ch, 7.0);
                    let packed = math::quantize_int4_packed_bytes(&original, ch, &scales);
                    set_scale_range(&mut change, &scales);
                    change.granularity = "per-channel".into();
                    change.axis = Some(0);
                    let zp = vec![0; scales.len()];
                    (packed, QuantParams::per_axis(scales, zp, 0))
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
                    let scales = math::symmetric_scales_bytes(&original, ch, 7.0);
                    // Scales are stored as FLOAT16: quantize with the value the kernel
                    // will read back.
                    let scales: Vec<f32> = math::f16_to_f32(&math::f16_bytes(&scales))
                        .into_iter()
                        .collect();
                    let scales: Vec<f32> = scales
                        .into_iter()
                        .map(|s| if s > 0.0 { s } else { f32::MIN_POSITIVE })
                        .collect();
                    let packed = math::quantize_int4_packed_bytes(&original, ch, &scales);
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
                    (packed, quant)
                }
            };
            model.release_pages(&original);
            change.bytes_after = data.len() as u64;
            change.new_dtype = "INT4".into();
            let buffer = model.add_buffer(data);
            let t = &mut model.subgraphs[si].tensors[ti];
            t.dtype = TensorType::Int4;
            t.buffer = buffer;
            t.quant = Some(quant);
            for &oi in &d.ops {
                set_asymmetric_inputs(model, si, oi);
            }
        }
    }
    let _ = opts;
    report.quantized.push(change);
    Ok(())
}

fn set_scale_range(change: &mut TensorChange, scales: &[f32]) {
    change.scale_min = scales.iter().copied().reduce(f32::min);
    change.scale_max = scales.iter().copied().reduce(f32::max);
}

/// Replaces float constant `ti` by `new constant (dtype, data, quant) → DEQUANTIZE → ti`:
/// the consumers keep reading tensor `ti`, which becomes the DEQUANTIZE's output. The
/// new constant takes the original name; the float tensor gets a `/dequantize` suffix.
fn insert_dequantized_constant(
    model: &mut Model,
    si: usize,
    ti: usize,
    dtype: TensorType,
    data: Vec<u8>,
    quant: Option<QuantParams>,
) {
    let buffer = model.add_buffer(data);
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
    // Constants need nothing computed first: DEQUANTIZE ops go to the front, in the
    // order they are created (deterministic).
    let pos = sg
        .operators
        .iter()
        .take_while(|o| o.opcode_index == opcode && o.inputs.len() == 1)
        .count();
    sg.operators
        .insert(pos, Operator::new(opcode, vec![qi], vec![ti as i32]));
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
    let what = if float_consts == 0 && already > 0 {
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
