//! Full-integer SVDF (LiteRT's `EvalIntegerSVDF`, `svdf.cc`).
//!
//! The generic engine gives input 0 and the output ordinary int8 parameters; the hooks
//! in `recurrent.rs` leave inputs 1..4 to this module, which quantizes them as the
//! kernel and TF's quantizer (`operator_property.cc`, SVDF entry) expect:
//! * feature weights (input 1): int8 symmetric, one scale per tensor (the kernel reads
//!   `scale[0]`);
//! * time weights (input 2): int16 holding 10 bits (symmetric, `max|w| / 511`): TF's
//!   quantizer keeps 6 bits free for the int32 sum of `memory` int16 × int16 products;
//! * state (input 4, a variable): int16, zero point 0 (the kernel writes the newest
//!   column without a zero point), scale `max|state| / 32767` from its calibrated range;
//! * bias (input 3): int32 at `s_state × s_time` (it is added to the reduced time sum);
//! * the output: int8 from calibration. The kernel applies no activation: it requires
//!   RELU and saturates at -128, so the output's range (a ReLU's, starting at 0) gives
//!   the zero point -128 that makes the saturation the ReLU. Where the planner gave the
//!   output other parameters (a shared-scale group reaching below 0), the SVDF writes
//!   zero point -128 and a QUANTIZE requantizes.
//!
//! Several SVDF operators may share one state variable and one set of weights (a model
//! unrolled over time): each tensor is quantized once.

use std::collections::HashMap;

use crate::calib::Ranges;
use crate::error::Result;
use crate::fb::{self, ActivationFunctionType as Act, BuiltinOperator as Op, TensorType};
use crate::ir::{Model, QuantParams};
use crate::quant::math::{self, Channels};
use crate::quant::report::Report;

use super::operands::{OpSite, input, new_const, record};

pub(super) const FEATURE_WEIGHTS: usize = 1;
pub(super) const TIME_WEIGHTS: usize = 2;
pub(super) const BIAS: usize = 3;
pub(super) const STATE: usize = 4;
/// Largest magnitude of the int16 time weights (10 bits).
const TIME_MAX: f32 = 511.0;

/// Why LiteRT's integer SVDF cannot run this operator as tflquant writes it, or `None`.
pub(super) fn unsupported(model: &Model, si: usize, oi: usize, ranges: &Ranges) -> Option<String> {
    let sg = &model.subgraphs[si];
    let op = &sg.operators[oi];
    let Some(fb::BuiltinOptions::SvdfOptions(o)) = &op.builtin_options else {
        return Some("the operator has no SVDFOptions".into());
    };
    if o.fused_activation_function != Act::Relu {
        return Some(format!(
            "fused activation {:?}: LiteRT's integer SVDF runs with RELU only (svdf.cc \
             checks it and applies no other activation)",
            o.fused_activation_function
        ));
    }
    for (pos, what) in [
        (FEATURE_WEIGHTS, "feature weights"),
        (TIME_WEIGHTS, "time weights"),
    ] {
        let ok = input(op, pos).is_some_and(|t| {
            sg.tensors[t].dtype == TensorType::Float32 && model.is_constant(&sg.tensors[t])
        });
        if !ok {
            return Some(format!(
                "the {what} (input {pos}) are not a float32 constant"
            ));
        }
    }
    if let Some(b) = input(op, BIAS)
        && !(sg.tensors[b].dtype == TensorType::Float32 && model.is_constant(&sg.tensors[b]))
    {
        return Some("the bias (input 3) is not a float32 constant".into());
    }
    let Some(state) = input(op, STATE).filter(|&t| sg.tensors[t].is_variable) else {
        return Some("the state (input 4) is not a variable tensor".into());
    };
    match ranges.get(si, state) {
        Some(r) if r.min.is_finite() && r.max.is_finite() => None,
        _ => Some("the state (input 4) has no calibrated range".into()),
    }
}

/// Quantizes inputs 1..4 of every SVDF the generic rewrite made integer (input 0 now
/// int8).
pub(super) fn apply(model: &mut Model, ranges: &Ranges, report: &mut Report) -> Result<()> {
    for si in 0..model.subgraphs.len() {
        // Original tensor → its integer version (weights shared by unrolled SVDFs).
        let mut done: HashMap<usize, (usize, f32)> = HashMap::new();
        let mut requantize = Vec::new();
        for oi in 0..model.subgraphs[si].operators.len() {
            let op = &model.subgraphs[si].operators[oi];
            if model.builtin(op) != Op::Svdf {
                continue;
            }
            let sg = &model.subgraphs[si];
            let Some(x) = input(op, 0) else { continue };
            if sg.tensors[x].dtype != TensorType::Int8 {
                continue;
            }
            let svdf = IntegerSvdf {
                at: OpSite {
                    si,
                    oi,
                    kind: "integer SVDF",
                },
                x,
            };
            svdf.quantize(model, ranges, &mut done, report)?;
            if let Some(q) = svdf.relu_output(model) {
                requantize.push((oi, q));
            }
        }
        // Each requantization right after its SVDF (from the last, so indices hold).
        for (oi, q) in requantize.into_iter().rev() {
            model.subgraphs[si].operators.insert(oi + 1, q);
        }
    }
    Ok(())
}

/// One SVDF made integer: subgraph, operator, input tensor.
struct IntegerSvdf {
    at: OpSite,
    x: usize,
}

impl IntegerSvdf {
    fn quantize(
        &self,
        model: &mut Model,
        ranges: &Ranges,
        done: &mut HashMap<usize, (usize, f32)>,
        report: &mut Report,
    ) -> Result<()> {
        let si = self.at.si;
        if model.subgraphs[si].tensors[self.x].quantized().is_none() {
            return Err(self.at.internal("input has no parameters"));
        }
        let wf = self
            .at
            .input(model, FEATURE_WEIGHTS, "missing feature weights")?;
        let wt = self.at.input(model, TIME_WEIGHTS, "missing time weights")?;
        let state = self.at.input(model, STATE, "missing state")?;
        let (nf, _) = self.weight(model, wf, TensorType::Int8, 127.0, done, report);
        self.at.set_input(model, FEATURE_WEIGHTS, nf);
        let (nt, s_time) = self.weight(model, wt, TensorType::Int16, TIME_MAX, done, report);
        self.at.set_input(model, TIME_WEIGHTS, nt);
        let s_state = self.state(model, ranges, state, report)?;
        if let Some(b) = input(&model.subgraphs[si].operators[self.at.oi], BIAS) {
            let nb = self.bias(model, b, s_state * s_time, done, report);
            self.at.set_input(model, BIAS, nb);
        }
        if let Some(fb::BuiltinOptions::SvdfOptions(o)) =
            &mut model.subgraphs[si].operators[self.at.oi].builtin_options
        {
            o.asymmetric_quantize_inputs = false;
        }
        Ok(())
    }

    /// The kernel's saturation at -128 is the ReLU only with the output zero point -128.
    /// An output whose parameters reach below 0 (a shared-scale group took them, e.g. a
    /// CONCATENATION with negative inputs) is written by the SVDF with the same scale and
    /// zero point -128 into a new tensor, which a QUANTIZE (int8 → int8) requantizes
    /// into the planned parameters; returns that QUANTIZE.
    fn relu_output(&self, model: &mut Model) -> Option<crate::ir::Operator> {
        let si = self.at.si;
        let y =
            usize::try_from(*model.subgraphs[si].operators[self.at.oi].outputs.first()?).ok()?;
        let out = model.subgraphs[si].tensors[y].clone();
        let q = out.quantized()?.clone();
        if q.zero_point.first() == Some(&-128) {
            return None;
        }
        let mut relu = out.clone();
        relu.name = format!("{}/relu", out.name);
        relu.quant = Some(QuantParams::per_tensor(q.scale[0], -128));
        let ri = model.subgraphs[si].add_tensor(relu);
        model.subgraphs[si].operators[self.at.oi].outputs[0] = ri;
        let code = model.ensure_opcode(Op::Quantize, 1);
        Some(crate::ir::Operator::new(code, vec![ri], vec![y as i32]))
    }

    /// A symmetric per-tensor weight with `max` levels each side; returns the new tensor
    /// and its scale.
    fn weight(
        &self,
        model: &mut Model,
        t: usize,
        dtype: TensorType,
        max: f32,
        done: &mut HashMap<usize, (usize, f32)>,
        report: &mut Report,
    ) -> (usize, f32) {
        if let Some(&hit) = done.get(&t) {
            return hit;
        }
        let si = self.at.si;
        let tensor = model.subgraphs[si].tensors[t].clone();
        let values = math::f32_values(model.tensor_data(&tensor));
        let ch = Channels::new(&tensor.shape, None);
        let scales = math::symmetric_scales(&values, ch, max);
        // `math::quantize_symmetric` stops at int8; the int16 time weights are rounded here.
        let bytes: Vec<u8> = match dtype {
            TensorType::Int16 => values
                .iter()
                .flat_map(|&v| ((v / scales[0]).round().clamp(-max, max) as i16).to_le_bytes())
                .collect(),
            _ => math::quantize_symmetric(&values, ch, &scales, max)
                .iter()
                .map(|&v| v as u8)
                .collect(),
        };
        let ni = new_const(
            model,
            si,
            &tensor,
            dtype,
            bytes,
            QuantParams::per_tensor(scales[0], 0),
        );
        let nt = model.subgraphs[si].tensors[ni].clone();
        record(report, si, ni, &nt, "weight", None);
        done.insert(t, (ni, scales[0]));
        (ni, scales[0])
    }

    /// The int32 bias at `scale`.
    fn bias(
        &self,
        model: &mut Model,
        t: usize,
        scale: f32,
        done: &mut HashMap<usize, (usize, f32)>,
        report: &mut Report,
    ) -> usize {
        if let Some(&(hit, _)) = done.get(&t) {
            return hit;
        }
        let si = self.at.si;
        let tensor = model.subgraphs[si].tensors[t].clone();
        let values = math::f32_values(model.tensor_data(&tensor));
        let lim = i32::MAX as f64;
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&b| {
                ((b as f64 / scale as f64).round().clamp(-lim, lim) as i32).to_le_bytes()
            })
            .collect();
        let ni = new_const(
            model,
            si,
            &tensor,
            TensorType::Int32,
            bytes,
            QuantParams::per_tensor(scale, 0),
        );
        let nt = model.subgraphs[si].tensors[ni].clone();
        record(report, si, ni, &nt, "bias", None);
        done.insert(t, (ni, scale));
        ni
    }

    /// The state variable as int16, zero point 0, from its calibrated range (once when
    /// several SVDFs share it); returns its scale.
    fn state(
        &self,
        model: &mut Model,
        ranges: &Ranges,
        t: usize,
        report: &mut Report,
    ) -> Result<f32> {
        let si = self.at.si;
        let tensor = &model.subgraphs[si].tensors[t];
        if tensor.dtype == TensorType::Int16 {
            return tensor
                .quantized()
                .map(|q| q.scale[0])
                .ok_or_else(|| self.at.internal("int16 state without parameters"));
        }
        let r = ranges
            .get(si, t)
            .ok_or_else(|| self.at.internal("state has no range"))?;
        let m = r.min.abs().max(r.max.abs());
        // A state that never left 0 still needs a legal scale.
        let scale = if m > 0.0 { m / 32767.0 } else { 1.0 / 32767.0 };
        let tensor = &mut model.subgraphs[si].tensors[t];
        tensor.dtype = TensorType::Int16;
        tensor.quant = Some(QuantParams::per_tensor(scale, 0));
        tensor.buffer = 0;
        let tensor = tensor.clone();
        record(report, si, t, &tensor, "state", Some((r.min, r.max)));
        Ok(scale)
    }
}
