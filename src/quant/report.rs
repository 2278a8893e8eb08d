//! What a quantization run did, for `--report FILE.json`, the one-line summary and
//! `--dump-plan` ([`render_plan`]). The record types live here, not in the passes that
//! fill them, so that every pass and every renderer depends on this module and this
//! module on no pass.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fb::{self, TensorType};
use crate::ir::Model;

/// The report of one `quantize` run. Serialised as JSON with this field order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    /// Size of the model before and after (bytes of the serialised file).
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// Every tensor whose type changed.
    pub quantized: Vec<TensorChange>,
    /// Every real-valued float weight left float, with the reason.
    pub left_float: Vec<LeftFloat>,
    /// Full-integer modes: every operator's fate (quantized, or float with the reason).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpFate>,
    /// Full-integer modes: every integer tensor's parameters and the range they came from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TensorParams>,
    /// Full-integer modes: tensors holding sentinels (±inf, ±FLT_MAX, far-out mask
    /// values) that were kept out of their range and saturate to the integer min/max.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<SentinelUse>,
    /// Everything else worth knowing (folded fp16/sparse constants, already quantized
    /// tensors, inserted operators).
    pub notes: Vec<String>,
    /// Bytes of constant data per type before and after, each buffer counted once.
    pub weight_bytes_by_dtype: WeightBytes,
    /// What the folds of FLOAT16 and sparse constants did.
    pub folds: Folds,
    /// Set by the command line once the output is written: whether it is larger than
    /// the input, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_check: Option<SizeCheck>,
    /// `--target-sqnr`: the searched plan and what it reached (issue #15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixed_precision: Option<MixedPrecision>,
    /// `--observer auto`: the observer chosen for each calibrated tensor.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<ObserverChoice>,
    /// Full-integer modes: what the weight PTQ algorithms (`--weight-clipping mse`,
    /// `--bias-correction`) did, per operator (`quant::ptq`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ptq: Vec<PtqLayer>,
}

/// `--observer auto`'s choice for one tensor (see `calib::observer`).
#[derive(Debug, Clone, Serialize)]
pub struct ObserverChoice {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    /// `minmax`, `percentile:99.99` or `mse`.
    pub observer: String,
    pub range: (f32, f32),
}

/// What the weight PTQ algorithms did to one operator's weight and bias.
#[derive(Debug, Clone, Serialize)]
pub struct PtqLayer {
    pub subgraph: usize,
    pub operator: usize,
    pub op: String,
    /// `--weight-clipping mse`: the weight's channels, how many were clipped, and the
    /// weight's squared rounding error with min/max scales and with the chosen ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clipping: Option<ClipStats>,
    /// `--bias-correction`: the shift of the bias, or why there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_correction: Option<BiasCorrection>,
}

/// What `--weight-clipping mse` changed in one weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClipStats {
    pub elements: usize,
    pub channels: usize,
    pub clipped: usize,
    pub sq_err_minmax: f64,
    pub sq_err_chosen: f64,
}

/// What `--bias-correction` did to one operator's bias: `E[ΔW·x]` subtracted per
/// output channel (mean and largest magnitude, and relative to the bias' RMS), or why
/// it was skipped.
#[derive(Debug, Clone, Serialize)]
pub struct BiasCorrection {
    pub channels: usize,
    pub mean_abs_shift: f64,
    pub max_abs_shift: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Constant bytes per type (`"INT8"`, `"FLOAT32"`, ...), before and after a run.
#[derive(Debug, Default, Serialize)]
pub struct WeightBytes {
    pub before: BTreeMap<String, u64>,
    pub after: BTreeMap<String, u64>,
    /// The type this mode compresses weights to (`INT8`, `FLOAT16`, `INT4`).
    pub mode_dtype: String,
    /// Share of the constant bytes after the run that are of `mode_dtype` (0..1).
    pub mode_dtype_share: f64,
}

/// Counts of the weight-encoding folds.
#[derive(Debug, Default, Serialize)]
pub struct Folds {
    /// FLOAT16 constants behind DEQUANTIZE turned into float32.
    pub float16_folded: usize,
    /// Sparse constants made dense, with their bytes before (non-zero values only; the
    /// indices live in the flatbuffer) and after.
    pub densified: usize,
    pub sparse_bytes: u64,
    pub dense_bytes: u64,
}

/// The output-size check of a run (`quantize` refuses an output more than 1% larger
/// than its input unless `--allow-larger`).
#[derive(Debug, Serialize)]
pub struct SizeCheck {
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// The output is more than 1% larger than the input.
    pub larger: bool,
    /// It was kept anyway (`--allow-larger`).
    pub allowed: bool,
    /// Why the run could not shrink the model.
    pub reasons: Vec<String>,
}

/// How much larger than its input an output may be before a run counts as growing it.
pub const SIZE_TOLERANCE: f64 = 0.01;

impl Report {
    /// Records the input and output file sizes and the size check (`size_check`):
    /// whether the output is more than [`SIZE_TOLERANCE`] larger, and whether it is kept
    /// anyway (`allow_larger`, or a full-integer mode, which only warns). Returns true
    /// when the output grew; the caller refuses it when [`SizeCheck::allowed`] is false.
    pub fn check_size(
        &mut self,
        input_bytes: u64,
        output_bytes: u64,
        mode: super::Mode,
        allow_larger: bool,
    ) -> bool {
        self.input_bytes = input_bytes;
        self.output_bytes = output_bytes;
        let larger = output_bytes as f64 > input_bytes as f64 * (1.0 + SIZE_TOLERANCE);
        self.size_check = Some(SizeCheck {
            input_bytes,
            output_bytes,
            larger,
            allowed: larger && (allow_larger || mode.is_integer()),
            reasons: if larger {
                self.growth_reasons()
            } else {
                Vec::new()
            },
        });
        larger
    }

    /// "--mode M makes the model larger: A → B bytes (+x%), because: …" (after
    /// [`Report::check_size`]).
    pub fn growth_message(&self, mode: super::Mode) -> String {
        let why: String = self
            .size_check
            .iter()
            .flat_map(|c| &c.reasons)
            .map(|r| format!("\n  - {r}"))
            .collect();
        format!(
            "--mode {} makes the model larger: {} → {} bytes (+{:.1}%), because:{why}",
            mode.name(),
            self.input_bytes,
            self.output_bytes,
            (self.output_bytes as f64 / self.input_bytes.max(1) as f64 - 1.0) * 100.0
        )
    }
}

/// Bytes of constant data per tensor type in a model, each buffer counted once (the
/// first tensor that references it gives the type).
pub fn weight_bytes_by_dtype(model: &Model) -> BTreeMap<String, u64> {
    let mut seen = vec![false; model.buffers.len()];
    let mut by = BTreeMap::new();
    for t in model.subgraphs.iter().flat_map(|s| &s.tensors) {
        let n = model.tensor_data_len(t) as u64;
        let Some(slot) = seen.get_mut(t.buffer as usize) else {
            continue;
        };
        if n == 0 || *slot {
            continue;
        }
        *slot = true;
        *by.entry(fb::dtype_name(t.dtype).to_string()).or_insert(0) += n;
    }
    by
}

/// The share of `bytes` that are of type `dtype` (0 when there are none at all).
pub fn dtype_share(bytes: &BTreeMap<String, u64>, dtype: TensorType) -> f64 {
    let total: u64 = bytes.values().sum();
    let of = bytes.get(fb::dtype_name(dtype)).copied().unwrap_or(0);
    if total == 0 {
        0.0
    } else {
        of as f64 / total as f64
    }
}

/// One tensor the run changed.
#[derive(Debug, Serialize)]
pub struct TensorChange {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    /// Operators that read it, e.g. `"3 FULLY_CONNECTED"`.
    pub consumers: Vec<String>,
    pub old_dtype: String,
    pub new_dtype: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// `per-tensor`, `per-channel`, `blockwise`, or `cast` (float16).
    pub granularity: String,
    pub axis: Option<i32>,
    pub block_size: Option<usize>,
    pub scale_min: Option<f32>,
    pub scale_max: Option<f32>,
    /// A DEQUANTIZE now produces the float tensor the consumers read.
    pub dequantize_inserted: bool,
    /// weight-int4: how the weight was rounded, and what it bought.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounding: Option<RoundingReport>,
}

/// weight-int4: the rounding of one weight and its effect on the layer's output error.
#[derive(Debug, Clone, Serialize)]
pub struct RoundingReport {
    /// `nearest`, `mse` or `gptq`.
    pub method: String,
    /// Why the method differs from the one asked for (gptq without input statistics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// What the error is measured on: `sequential` (gptq: the layer's output error
    /// against the float model's on the calibration samples, `Σ ‖W x_f − Q x_q‖²`, with
    /// the weights before it quantized in `x_q`, for nearest and gptq alike; the INT4
    /// SQNR is the rounding's own error on those inputs), `hessian` (the layer's output
    /// error on the float model's calibration inputs, `Σ δw H δwᵀ`: `--int4-max-loss`
    /// with nearest or mse) or `weights` (squared weight error).
    pub measure: String,
    /// Error reduction against round-to-nearest, in dB (≥ 0 means better).
    pub gain_db: f64,
    /// The layer's INT4 SQNR estimate (signal over error on the same measure), dB.
    pub int4_sqnr_db: f64,
    /// `--int4-max-loss`: the INT4 SQNR was below the budget, the weight is INT8.
    pub kept_int8: bool,
}

/// A tensor whose sentinel values did not set its range (see `calib::observer`).
#[derive(Debug, Serialize)]
pub struct SentinelUse {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    /// `constant`, or `activation` (counts over all calibration samples).
    pub kind: String,
    /// Sentinels below the range (`-inf`, `-FLT_MAX`, `-1e9`) and above it.
    pub below: u64,
    pub above: u64,
    /// The range of the ordinary values, as widened by the quantizer.
    pub range: Option<(f32, f32)>,
}

/// A real-valued float weight that was not quantized.
#[derive(Debug, Serialize)]
pub struct LeftFloat {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    pub consumers: Vec<String>,
    pub elements: u64,
    pub reason: String,
    /// A bias the weight modes keep float by design (not counted as a weight left
    /// float, nor its readers as operators left float).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bias: bool,
}

impl Report {
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The PTQ record of operator `oi` of subgraph `si` (created on first use).
    pub fn ptq_layer(&mut self, si: usize, oi: usize, op: &str) -> &mut PtqLayer {
        let i = match self
            .ptq
            .iter()
            .position(|l| (l.subgraph, l.operator) == (si, oi))
        {
            Some(i) => i,
            None => {
                self.ptq.push(PtqLayer {
                    subgraph: si,
                    operator: oi,
                    op: op.to_string(),
                    clipping: None,
                    bias_correction: None,
                });
                self.ptq.len() - 1
            }
        };
        &mut self.ptq[i]
    }

    /// Operators that still compute in float: in full-integer modes those with a float
    /// fate; otherwise the consumers of weights left float, counted once each.
    pub fn ops_left_float(&self) -> usize {
        if !self.ops.is_empty() {
            return self
                .ops
                .iter()
                .filter(|o| matches!(o.fate, Fate::Float { .. }))
                .count();
        }
        let mut ops: Vec<(usize, &str)> = self
            .weights_left_float()
            .flat_map(|l| l.consumers.iter().map(move |c| (l.subgraph, c.as_str())))
            .collect();
        ops.sort();
        ops.dedup();
        ops.len()
    }

    /// Why the output did not shrink: the folds that grew constants, the share of the
    /// weight bytes left in other types, the largest weights left float.
    pub fn growth_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let f = &self.folds;
        if f.densified > 0 && f.dense_bytes > f.sparse_bytes {
            reasons.push(format!(
                "{} sparse constants were made dense ({} of non-zero values → {}): this mode \
                 has no sparse encoding, and the dense form is larger",
                f.densified,
                crate::units::human_bytes(f.sparse_bytes),
                crate::units::human_bytes(f.dense_bytes)
            ));
        }
        let w = &self.weight_bytes_by_dtype;
        let after_total: u64 = w.after.values().sum();
        if after_total > 0 && w.mode_dtype_share < 0.9 {
            let others: Vec<String> = w
                .after
                .iter()
                .filter(|(k, _)| **k != w.mode_dtype)
                .map(|(k, v)| format!("{k} {}", crate::units::human_bytes(*v)))
                .collect();
            reasons.push(format!(
                "only {:.0}% of the weight bytes are {} (the rest: {})",
                w.mode_dtype_share * 100.0,
                w.mode_dtype,
                others.join(", ")
            ));
        }
        let mut left: Vec<&LeftFloat> = self.weights_left_float().collect();
        left.sort_by_key(|l| std::cmp::Reverse(l.elements));
        for l in left.iter().take(3) {
            reasons.push(format!("{:?} left float: {}", l.name, l.reason));
        }
        if reasons.is_empty() {
            reasons.push(
                "the quantized constants and inserted operators do not save more than the \
                 per-channel scales and operator tables they add"
                    .into(),
            );
        }
        reasons
    }

    /// Weights left float, biases kept float by design excepted.
    pub fn weights_left_float(&self) -> impl Iterator<Item = &LeftFloat> {
        self.left_float.iter().filter(|l| !l.bias)
    }

    /// `dynamic: 708.6 KiB → 190.2 KiB (3.73×), 3 tensors quantized, 2 weights left
    /// float, 1 op left float`.
    pub fn summary(&self) -> String {
        let ratio = if self.output_bytes > 0 {
            self.input_bytes as f64 / self.output_bytes as f64
        } else {
            0.0
        };
        let size = if ratio >= 1.0 {
            format!("{ratio:.2}× smaller")
        } else {
            format!("{:.2}× larger", 1.0 / ratio.max(1e-9))
        };
        format!(
            "{}: {} → {} ({size}), {} tensors quantized, {} weights left float, {} ops left float",
            self.mode,
            crate::units::human_bytes(self.input_bytes),
            crate::units::human_bytes(self.output_bytes),
            self.quantized.len().max(self.tensors.len()),
            self.weights_left_float().count(),
            self.ops_left_float()
        )
    }
}

/// The record of a `--target-sqnr` search, in the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MixedPrecision {
    /// The target every output had to reach, dB.
    pub target_sqnr_db: f64,
    /// The margin the search added on its own data (held-out data score lower).
    pub search_margin_db: f64,
    /// Whether every output reached the target on the measured data.
    pub reached: bool,
    /// The data the result was measured on (`--validate` data, else the calibration data).
    pub measured_on: String,
    pub measured_samples: usize,
    /// Per model output: SQNR on the measured data (the same metric as `compare`).
    pub outputs: Vec<OutputSqnr>,
    /// Quantized-model evaluations the search ran (besides the float run).
    pub evaluations: usize,
    /// Per operator: precision, sensitivity, reason.
    pub plan: Vec<OpPrecision>,
}

/// One output's SQNR after the search.
#[derive(Debug, Clone, Serialize)]
pub struct OutputSqnr {
    pub name: String,
    /// `None`: identical (+∞), not a number (NaN), or an exact (non-real) output.
    pub sqnr_db: Option<f64>,
    /// Every value equal to the float model's.
    pub identical: bool,
}

/// One operator's place in the searched plan.
#[derive(Debug, Clone, Serialize)]
pub struct OpPrecision {
    pub subgraph: usize,
    pub operator: usize,
    pub op: String,
    /// `int8`, `int16x8` or `float`.
    pub precision: String,
    /// SQNR of the operator's output in the all-integer model run with exact inputs
    /// (the error it adds itself), dB; `None` where it could not be measured or is
    /// +∞ (it adds none).
    pub sensitivity_db: Option<f64>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Subgraph, Tensor};

    /// A buffer two tensors share counts once; empty buffers not at all.
    #[test]
    fn weight_bytes_count_each_buffer_once() {
        let mut m = Model::default();
        let shared = m.add_buffer(vec![0u8; 8]);
        let own = m.add_buffer(vec![0u8; 4]);
        let mut sg = Subgraph::default();
        for (dtype, buffer) in [
            (TensorType::Float32, shared),
            (TensorType::Float32, shared),
            (TensorType::Int8, own),
            (TensorType::Float32, 0),
        ] {
            let mut t = Tensor::new("t", dtype, vec![4]);
            t.buffer = buffer;
            sg.add_tensor(t);
        }
        m.subgraphs.push(sg);
        let by = weight_bytes_by_dtype(&m);
        assert_eq!(by.get("FLOAT32"), Some(&8));
        assert_eq!(by.get("INT8"), Some(&4));
        assert_eq!(by.len(), 2);
        assert!((dtype_share(&by, TensorType::Int8) - 4.0 / 12.0).abs() < 1e-12);
        assert_eq!(dtype_share(&BTreeMap::new(), TensorType::Int8), 0.0);
    }
}

/// What happens to one operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "fate", rename_all = "kebab-case")]
pub enum Fate {
    Quantized,
    Float {
        /// Serialised as its text.
        #[serde(serialize_with = "as_text")]
        reason: FloatReason,
    },
}

fn as_text<S: serde::Serializer>(r: &FloatReason, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(r)
}

/// Which operand of an operator a [`FloatReason`] is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Input at this position.
    Input(usize),
    Output,
}

/// Why an operator stays float in a full-integer mode. Callers match variants; the
/// text (`Display`) is what reports and `--dump-plan` show.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatReason {
    /// A custom operator (`op` is its display name).
    CustomOp { op: String },
    /// A control-flow or composite operator calling `subgraph`.
    CallsSubgraph { op: String, subgraph: usize },
    /// A WHILE whose float32 carried tensors at positions `integer` cross the loop as
    /// `dtype` (one set of parameters per position, `quant/integer/loops.rs`); `float`
    /// lists the positions that stay float32, with the reason.
    Loop {
        op: String,
        cond: usize,
        body: usize,
        integer: Vec<usize>,
        float: Vec<(usize, String)>,
        dtype: &'static str,
    },
    /// The rule table has no row for the operator.
    NoRule { op: String },
    /// The runtime has no kernel for the operator at `bits`; `why` is the rule's note.
    NoKernel {
        bits: u32,
        op: &'static str,
        why: &'static str,
    },
    /// An operand the kernel reads as real-valued is not float32.
    NotFloat32 {
        operand: Operand,
        name: String,
        dtype: &'static str,
    },
    /// A 16x8 int8 coefficient computed at run time.
    ComputedCoefficient { pos: usize, name: String },
    /// A weight (or bias) computed at run time.
    ComputedWeight { pos: usize, name: String },
    /// A bias whose input or weight is missing, or whose input is a constant.
    BiasWithoutOperands {
        pos: usize,
        name: String,
        input: usize,
        weight: usize,
    },
    /// A bias that is not a vector.
    BiasNotVector {
        pos: usize,
        name: String,
        shape: Vec<i32>,
    },
    /// An operand the calibration never computed.
    NoRange { operand: Operand, name: String },
    /// A singular operand (LOG, RSQRT, DIV's divisor) whose values reach the integer 0;
    /// `why` says which and with what range.
    SingularOperand { why: String },
    /// The producer of such an operand of operator `consumer`.
    ProducesSingularOperand { consumer: usize, why: String },
    /// A value-moving operator (RESHAPE, TRANSPOSE, GATHER...) between float tensors only:
    /// quantized it would compute nothing and only round (`quant/integer/fates.rs`).
    MovesFloatValues,
    /// Kept float on request: `--keep-float` or the `--target-sqnr` search (`why` says which).
    Requested { why: String },
    /// A recurrent operator in a variant (or at a width) LiteRT's integer kernel does not
    /// run; `why` says what (quant/integer/recurrent.rs).
    RecurrentVariant { why: String },
    /// An LSTM left float for `why` whose weights are int8 for LiteRT's hybrid kernel.
    HybridLstm { why: Box<FloatReason> },
    /// Another recurrent operator (`op`: RNN, SVDF, the sequence and bidirectional
    /// ones) left float for `why` whose weights are int8 for LiteRT's hybrid kernel.
    HybridRecurrent {
        op: &'static str,
        why: Box<FloatReason>,
    },
    /// A resource variable all of whose readers and writers must share one type, and
    /// another of them (`subgraph`, `operator`) stays float for `why`.
    Variable {
        name: String,
        subgraph: usize,
        operator: usize,
        why: Option<Box<FloatReason>>,
    },
}

impl FloatReason {
    /// An operand without a calibrated range decided it (also through a variable).
    pub fn is_missing_range(&self) -> bool {
        match self {
            FloatReason::NoRange { .. } => true,
            FloatReason::Variable { why: Some(w), .. } => w.is_missing_range(),
            _ => false,
        }
    }
}

/// The text of [`FloatReason::MovesFloatValues`].
const MOVES_FLOAT_VALUES: &str = "only moves values, read from float tensors and read by \
    float operators or the float model outputs: quantized it would compute nothing and only \
    add rounding, a QUANTIZE and a DEQUANTIZE";

impl std::fmt::Display for FloatReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use FloatReason as R;
        match self {
            R::CustomOp { op } => write!(
                f,
                "{op} is a custom operator: its kernel's integer support is \
                 unknown (the custom kernels LiteRT ships take float32 only), \
                 so it stays float between DEQUANTIZE and QUANTIZE"
            ),
            R::CallsSubgraph { op, subgraph: sub } => write!(
                f,
                "{op} calls subgraph {sub}: its boundary tensors stay float \
                 (each subgraph is quantized on its own; the operators inside \
                 subgraph {sub} are quantized there, between \
                 QUANTIZE/DEQUANTIZE)"
            ),
            R::Loop { .. } => fmt_loop(self, f),
            R::NoRule { op } => write!(f, "{op} has no quantized kernel in tflquant's rule table"),
            R::NoKernel { bits, op, why } => {
                let ty = if *bits == 8 { "int8" } else { "int16" };
                write!(f, "the runtime has no {ty} kernel for {op}")?;
                if !why.is_empty() {
                    write!(f, " ({why})")?;
                }
                Ok(())
            }
            R::NotFloat32 {
                operand: Operand::Input(pos),
                name,
                dtype,
            } => write!(f, "input {pos} {name:?} is {dtype}, not float32"),
            R::NotFloat32 {
                operand: Operand::Output,
                name,
                dtype,
            } => write!(f, "output {name:?} is {dtype}, not float32"),
            R::ComputedCoefficient { pos, name } => write!(
                f,
                "input {pos} {name:?} is computed at run time; the 16x8 kernel reads it as int8"
            ),
            R::ComputedWeight { pos, name } => {
                write!(f, "input {pos} {name:?} is a weight computed at run time")
            }
            R::BiasWithoutOperands {
                pos,
                name,
                input,
                weight,
            } => write!(
                f,
                "input {pos} {name:?} is a bias, but input {input} (whose scale it takes) \
                 is missing or a constant, or weight input {weight} is missing"
            ),
            R::BiasNotVector { pos, name, shape } => write!(
                f,
                "input {pos} {name:?} is a bias of shape {shape:?}; biases are vectors"
            ),
            R::NoRange {
                operand: Operand::Input(pos),
                name,
            } => write!(
                f,
                "input {pos} {name:?} has no calibrated range (the calibration never computed it)"
            ),
            R::NoRange {
                operand: Operand::Output,
                name,
            } => write!(f, "output {name:?} has no calibrated range"),
            R::SingularOperand { why } => write!(f, "{why}; kept float with its producer"),
            R::ProducesSingularOperand { consumer, why } => write!(
                f,
                "produces the operand of operator {consumer}: {why}; kept float"
            ),
            R::MovesFloatValues => f.write_str(MOVES_FLOAT_VALUES),
            R::Requested { why } | R::RecurrentVariant { why } => write!(f, "{why}"),
            R::HybridLstm { why } => fmt_hybrid(f, why, "LSTM"),
            R::HybridRecurrent { op, why } => fmt_hybrid(f, why, op),
            R::Variable {
                name,
                subgraph,
                operator,
                why,
            } => {
                write!(
                    f,
                    "{name} must have one type everywhere, and subgraph {subgraph} operator \
                     {operator} stays float ("
                )?;
                if let Some(w) = why {
                    write!(f, "{w}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// The text of [`FloatReason::HybridLstm`] and [`FloatReason::HybridRecurrent`].
fn fmt_hybrid(f: &mut std::fmt::Formatter<'_>, why: &FloatReason, op: &str) -> std::fmt::Result {
    write!(
        f,
        "{why}; kept as a hybrid {op}: int8 weights (per tensor), float \
         activations quantized on the fly by LiteRT's dynamic-range kernel"
    )
}

/// The text of [`FloatReason::Loop`].
fn fmt_loop(r: &FloatReason, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let FloatReason::Loop {
        op,
        cond,
        body,
        integer,
        float,
        dtype,
    } = r
    else {
        return Ok(());
    };
    write!(
        f,
        "{op} computes nothing itself (control flow over cond subgraph {cond} and body subgraph {body}); "
    )?;
    if integer.is_empty() {
        write!(f, "no carried tensor crosses it as {dtype}")?;
    } else {
        write!(
            f,
            "carried tensors {integer:?} cross it as {dtype}, one set of parameters per \
             position in the outer graph, cond and body"
        )?;
    }
    for (pos, why) in float {
        write!(f, "; carried tensor {pos} stays float32: {why}")?;
    }
    Ok(())
}

/// One operator's fate, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct OpFate {
    pub subgraph: usize,
    pub operator: usize,
    pub op: String,
    #[serde(flatten)]
    pub fate: Fate,
    /// A quantized operator computing in another width than the run's (issue #15:
    /// 16x8 operators in an int8 model); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<OpWidth>,
}

/// The width a quantized operator computes in when it is not the run's, and why.
#[derive(Debug, Clone, Serialize)]
pub struct OpWidth {
    /// `int16x8`.
    pub precision: String,
    pub reason: String,
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

/// The decisions of a run as text (`--dump-plan`): operator fates, then tensor
/// parameters.
pub fn render_plan(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "operators ({} mode):", report.mode);
    for o in &report.ops {
        match &o.fate {
            Fate::Quantized => match &o.width {
                None => {
                    let _ = writeln!(
                        s,
                        "  {}:{:<4} {:<24} quantized",
                        o.subgraph, o.operator, o.op
                    );
                }
                Some(w) => {
                    let _ = writeln!(
                        s,
                        "  {}:{:<4} {:<24} quantized {}: {}",
                        o.subgraph, o.operator, o.op, w.precision, w.reason
                    );
                }
            },
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
