//! Full-integer quantization: int8 (int8 activations and weights, int32 biases) and
//! 16x8 (int16 activations, int8 weights, int64 or int32 biases) from calibrated ranges.
//!
//! Decide, then apply, one file per step:
//! 1. **Fates** (`fates.rs`): every operator is quantized when the rule table has a
//!    kernel for the bit width and every real-valued input it needs has a range (or is
//!    a constant); otherwise it stays float, with the reason. Singular operands (LOG,
//!    RSQRT, DIV's divisor) that reach the integer zero keep their operator float;
//!    value-moving operators (RESHAPE, TRANSPOSE...) with only float neighbours stay
//!    float (quantized they would only round).
//! 2. **Parameters** (`params.rs`): activations of quantized operators get parameters
//!    from their ranges; operators whose kernel needs equal input and output parameters
//!    join their tensors into one group (union-find) whose range is the union of the
//!    members' ranges; a fixed output (LOGISTIC, SOFTMAX...) gives the group its
//!    parameters only if they hold every member's values; a fixed output that does not
//!    is requantized on its edge (a QUANTIZE int→int). Sentinels get headroom
//!    (`sentinels.rs`).
//! 3. **Rewiring** (`rewire.rs`): every activation has a float and an integer version;
//!    which one keeps the original tensor index depends on its producer and on the model
//!    interface (subgraph inputs/outputs keep their index so signatures stay right;
//!    `interface.rs` for uint8). Quantized operators read and write integer versions,
//!    float operators float ones, and QUANTIZE/DEQUANTIZE operators are placed right
//!    after the producer.
//! 4. **Constants** (`constants.rs`): constants become new integer tensors per role
//!    (weights per channel, biases at `s_in × s_w`, constant activations with their own
//!    range), one per distinct parameter set, so a constant shared by operators that
//!    need different parameters is duplicated.
//!
//! The arithmetic of parameters is [`super::scheme`]; the records of the report are
//! [`super::report`].

mod constants;
mod fates;
mod interface;
mod kernel_options;
mod loops;
mod operands;
mod params;
mod plan;
mod recurrent;
mod rewire;
mod sentinels;
mod svdf;
mod union_find;
mod widths;

use crate::calib::Ranges;
use crate::error::Result;
use crate::fb;
use crate::ir::Model;

use super::report::Report;

/// Kept for callers that name these through `quant::integer` (the report records and
/// `Width` live in [`super::report`] and [`super::scheme`]).
pub use super::report::{Fate, OpFate, TensorParams, render_plan};
pub use super::scheme::Width;

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
    /// Operators forced to stay float (issue #15: `--keep-float`, `--target-sqnr`).
    pub keep_float: Vec<super::select::KeepFloat>,
    /// Operators that run in 16x8 in an int8 run (issue #15: `--int16`, `--target-sqnr`).
    pub int16: Vec<super::select::Int16>,
    /// How int8 weight scales are chosen (`quant::ptq::clipping`).
    pub weight_clipping: super::ptq::WeightClipping,
    /// Bias correction's layer-input means (`quant::ptq::bias`); `None`: off.
    pub input_means: Option<std::sync::Arc<super::ptq::InputMeans>>,
    /// Weight scales shared with other runs ([`super::Options::scale_cache`]).
    pub scale_cache: Option<std::sync::Arc<super::ptq::clipping::ScaleCache>>,
    /// No wider outputs for the float side (`widths.rs`): `--int8-outputs`.
    pub int8_outputs: bool,
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
    let mut fates = fates::plan_fates(model, ranges, opts);
    // Recurrent hook: which LSTMs the integer kernel runs as tflquant writes them.
    recurrent::refine_fates(model, ranges, opts, &mut fates);
    super::variables::consistent_fates(model, &mut fates);
    fates::keep_singular_operands_float(model, ranges, opts.width, &mut fates);
    // Hand-made / searched precision plans (issue #15): forced float fates, after the
    // singular operands (whose producers stay float whatever the operator's fate).
    if !opts.keep_float.is_empty() {
        super::select::apply_keep_float(model, &opts.keep_float, &mut fates)?;
        super::variables::consistent_fates(model, &mut fates);
    }
    if opts.strict {
        fates::strict_check(model, &fates)?;
    } else if opts.interface == Interface::Float {
        // Value-moving operators between float tensors only stay float (issue #15).
        fates::keep_float_moves(model, &mut fates);
    }
    // Mixed widths (issue #15): 16x8 operators in an int8 run (`widths.rs`).
    let widths = widths::plan_widths(model, ranges, &fates, opts, report)?;
    // WHILE loops: carried tensors get one range per position before planning, one
    // set of parameters after it (`loops.rs`).
    let (chains, kept) = loops::candidates(model, &fates, opts.width);
    let ranges = &loops::widen_ranges(model, ranges, &chains);
    let mut params = params::plan_params(model, ranges, &fates, &widths, opts)?;
    let d = loops::Decide {
        model,
        ranges,
        width: opts.width,
    };
    params.carried = loops::decide(&d, &chains, kept, &mut fates, &mut params);
    let unified = super::variables::unify(model, &fates, &params.activations)?;
    params.requant.extend(unified.requant);
    params.constants = unified.constants;
    report_plan(model, &fates, &params, report);
    sentinels::report_sentinels(model, ranges, &fates, &params, report);
    rewire::apply(model, &fates, &params, opts, report)?;
    // Recurrent hook: weights, biases, states and intermediates of integer LSTMs.
    recurrent::apply(model, ranges, report)
}

/// Records every operator's fate and every activation's parameters.
fn report_plan(model: &Model, fates: &[Vec<Fate>], params: &plan::Params, report: &mut Report) {
    for (si, sg_fates) in fates.iter().enumerate() {
        for (oi, fate) in sg_fates.iter().enumerate() {
            let op = &model.subgraphs[si].operators[oi];
            // Only an operator of another width than the run's records one.
            let width = params
                .widths
                .ops
                .get(&(si, oi))
                .filter(|_| *fate == Fate::Quantized)
                .map(|(w, why)| super::report::OpWidth {
                    precision: w.name().into(),
                    reason: why.clone(),
                });
            report.ops.push(OpFate {
                subgraph: si,
                operator: oi,
                op: model.op_display_name(op),
                fate: fate.clone(),
                width,
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
            dtype: fb::dtype_name(params.widths.tensor(si, ti).dtype()).into(),
            range: params.range_of.get(&(si, ti)).copied(),
            scale: p.scale.clone(),
            zero_point: p.zero_point.clone(),
            axis: None,
        });
    }
}

/// The tensor at position `pos` of an operator's input or output list, if present.
fn tensor_ref(list: &[i32], pos: usize) -> Option<usize> {
    list.get(pos).and_then(|&t| usize::try_from(t).ok())
}
