//! Quantization: options, the ordered list of passes, and the driver.
//!
//! A run clones the IR (cheap: buffer data are shared `Bytes`), runs the passes of its
//! mode in order, checks the graph with [`ir::verify`] after each pass (a failing check
//! names the pass: a bug, reported, never a panic) and returns the new model with a
//! [`Report`] of every decision, including the constant bytes per type before and after.
//! Malformed weight encodings are rejected before the first pass
//! ([`fold::check_weight_encodings`]).

pub mod blockwise;
pub mod fold;
pub mod integer;
pub mod math;
pub mod prune;
pub mod ptq;
pub mod qat;
pub mod report;
pub mod rounding;
pub mod scheme;
pub mod select;
pub mod variables;
pub mod weights;

pub use crate::error::OptionError;
pub use report::Report;

use crate::error::{Error, Result};
use crate::ir::{self, Model};
use crate::rules::version::required_version;

/// Quantization mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Int8 weights read by hybrid kernels; float activations.
    Dynamic,
    /// FLOAT16 constants + DEQUANTIZE.
    Float16,
    /// Int8 constants + DEQUANTIZE (float compute).
    WeightInt8,
    /// Packed INT4 weights: read directly by FULLY_CONNECTED, CONV_2D and
    /// EMBEDDING_LOOKUP, through one DEQUANTIZE by every other reader.
    WeightInt4,
    /// Full integer: int8 activations and weights, int32 biases (needs ranges).
    Int8,
    /// 16x8: int16 activations, int8 weights, int64 biases (needs ranges).
    Int16x8,
    /// Int8 from a quantization-aware-trained model: the trained parameters of its
    /// fake-quantization points, ranges only for tensors they do not cover.
    Qat,
}

impl Mode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dynamic => "dynamic",
            Mode::Float16 => "float16",
            Mode::WeightInt8 => "weight-int8",
            Mode::WeightInt4 => "weight-int4",
            Mode::Int8 => "int8",
            Mode::Int16x8 => "int16x8",
            Mode::Qat => "qat",
        }
    }

    /// The type this mode stores weights in.
    pub fn weight_dtype(self) -> crate::fb::TensorType {
        use crate::fb::TensorType as T;
        match self {
            Mode::Float16 => T::Float16,
            Mode::WeightInt4 => T::Int4,
            _ => T::Int8,
        }
    }

    /// Full-integer modes need calibrated ranges.
    pub fn is_integer(self) -> bool {
        matches!(self, Mode::Int8 | Mode::Int16x8 | Mode::Qat)
    }
}

/// Options of a quantization run.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// One scale per tensor even where per-channel is possible.
    pub per_tensor: bool,
    /// Weights with fewer elements stay float. `None`: the mode's default (1024 for the
    /// integer modes, as TF; 0 for float16, which TF applies to every weight).
    pub min_elements: Option<u64>,
    /// Blockwise INT4 block size (32, 64, 128 or 256); `None` is per channel.
    pub block_size: Option<usize>,
    /// Full-integer modes: calibrated ranges of the float model's tensors.
    pub ranges: Option<crate::calib::Ranges>,
    /// Full-integer modes: the model's interface types.
    pub interface: integer::Interface,
    /// Full-integer modes: an operator that would stay float is an error.
    pub strict: bool,
    /// Full-integer modes: bias bits (32 or 64); `None` = 32 for int8, 64 for 16x8.
    pub bias_bits: Option<u32>,
    /// weight-int4: how weights are rounded; `None` = gptq when calibration samples
    /// are given, mse otherwise.
    pub rounding: Option<rounding::Rounding>,
    /// weight-int4: calibration samples (one value per model input each) for gptq;
    /// full-integer modes: the samples `--bias-correction` measures layer inputs on.
    pub samples: Option<std::sync::Arc<Vec<Vec<crate::interp::Value>>>>,
    /// weight-int4: a weight whose INT4 layer SQNR (dB) is below this stays INT8.
    pub int4_max_loss_db: Option<f64>,
    /// Full-integer modes: operators forced to stay float (`--keep-float`, or the
    /// `--target-sqnr` search), applied after the engine plans fates (issue #15).
    pub keep_float: Vec<select::KeepFloat>,
    /// Mode int8: operators that run in 16x8 (`--int16`, or the `--target-sqnr`
    /// search), applied after `keep_float` (issue #15).
    pub int16: Vec<select::Int16>,
    /// Full-integer modes: how int8 weight scales are chosen; `None` = the mode's
    /// default ([`ptq::default_clipping`]).
    pub weight_clipping: Option<ptq::WeightClipping>,
    /// Full-integer modes: empirical bias correction (needs `samples`); `None` =
    /// [`ptq::DEFAULT_BIAS_CORRECTION`].
    pub bias_correction: Option<bool>,
    /// Full-integer modes: int8 weight scales computed once and reused by every run
    /// that shares this cache (the `--target-sqnr` search); `None`: computed per run.
    /// The output is the same either way.
    pub scale_cache: Option<std::sync::Arc<ptq::clipping::ScaleCache>>,
    /// Mode int8: keep every operator whose output only the float side reads int8 with
    /// int8 outputs (`--int8-outputs`): no int16 SOFTMAX probabilities, no 16x8
    /// operator before a float model output (`quant::integer::widths`).
    pub int8_outputs: bool,
}

impl Options {
    pub fn new(mode: Mode) -> Self {
        Options {
            mode,
            per_tensor: false,
            min_elements: None,
            block_size: None,
            ranges: None,
            interface: integer::Interface::Float,
            strict: false,
            bias_bits: None,
            rounding: None,
            samples: None,
            int4_max_loss_db: None,
            keep_float: Vec::new(),
            int16: Vec::new(),
            weight_clipping: None,
            bias_correction: None,
            scale_cache: None,
            int8_outputs: false,
        }
    }

    /// The weight clipping in effect (full-integer modes).
    pub fn weight_clipping(&self) -> ptq::WeightClipping {
        self.weight_clipping
            .unwrap_or_else(|| ptq::default_clipping(self.mode))
    }

    /// Whether bias correction is asked for (full-integer modes; it runs when
    /// calibration samples are given).
    pub fn bias_correction(&self) -> bool {
        self.bias_correction.unwrap_or(ptq::DEFAULT_BIAS_CORRECTION)
    }

    /// The INT4 rounding in effect: as asked, else gptq when calibration samples are
    /// given and [`rounding::DEFAULT`] (mse) without (the best on average of what each
    /// can run: docs/ACCURACY.md, "Default rounding").
    pub fn rounding(&self) -> rounding::Rounding {
        self.rounding.unwrap_or(if self.samples.is_some() {
            rounding::Rounding::Gptq
        } else {
            rounding::DEFAULT
        })
    }

    pub fn min_elements(&self) -> u64 {
        self.min_elements.unwrap_or(match self.mode {
            Mode::Float16 => 0,
            _ => 1024,
        })
    }
}

/// Block sizes blockwise INT4 accepts.
pub const BLOCK_SIZES: [usize; 4] = [32, 64, 128, 256];

/// What the passes of one run share: the options, the report, and what one pass hands
/// to the next (trained QAT parameters).
pub struct Run<'o> {
    pub opts: &'o Options,
    pub report: Report,
    pub overrides: qat::Overrides,
    /// The trained parameters of a QAT model are used (`--mode qat`, or `--mode int8`
    /// on a model that turned out to have fake-quantization points).
    pub qat: bool,
}

type Pass = fn(&mut Model, &mut Run) -> Result<()>;

/// The passes of a mode, in order, as named functions; the graph is verified after
/// each. The full-integer modes' list starts with the fold passes, which
/// [`folded_for_calibration`] runs alone (a prefix of the same list).
fn passes(mode: Mode) -> Vec<(&'static str, Pass)> {
    let mut list: Vec<(&'static str, Pass)> =
        vec![("fold-weight-encodings", fold_weight_encodings)];
    match mode {
        Mode::Int8 | Mode::Int16x8 | Mode::Qat => {
            list.push((LAST_FOLD_PASS, fold_fake_quantization));
            list.push(("quantize-integer", quantize_integer));
        }
        Mode::Float16 => {
            list.push(("sparse-to-float16", sparse_to_float16));
            list.push(("quantize-weights", quantize_weights));
        }
        Mode::Dynamic | Mode::WeightInt8 | Mode::WeightInt4 => {
            list.push(("quantize-weights", quantize_weights));
        }
    }
    list.push(("operator-versions", operator_versions));
    list.push(("prune", prune_pass));
    list
}

/// The passes that make the float graph the quantizer works on (the prefix of
/// [`passes`] up to and including this one): calibrating that graph gives ranges
/// whose tensor indices line up with the quantizer's.
const LAST_FOLD_PASS: &str = "fold-fake-quantization";

/// Real producers' weight encodings back to float32. float16 mode keeps sparse
/// constants sparse (dense float16 would be larger); every other mode needs plain
/// float32 weights.
fn fold_weight_encodings(m: &mut Model, r: &mut Run) -> Result<()> {
    let opts = fold::FoldOptions {
        keep_sparse: r.opts.mode == Mode::Float16,
    };
    fold::fold_weight_encodings(m, opts, &mut r.report).map(drop)
}

/// QAT: fake-quantization points become trained parameters (`qat::Overrides`).
fn fold_fake_quantization(m: &mut Model, r: &mut Run) -> Result<()> {
    let mode = r.opts.mode;
    if mode == Mode::Qat {
        r.overrides = qat::fold_fake_quant(m, &mut r.report)?;
        if r.overrides.is_empty() {
            return Err(OptionError::QatWithoutFakeQuant.into());
        }
        r.qat = true;
    } else if mode.is_integer() && qat::count_fake_quant(m) > 0 {
        // A QAT export given to int8/int16x8: its pairs would otherwise keep every
        // operator float. int8 uses the trained parameters (as --mode qat, with the
        // calibration for the rest); 16x8 only folds them and calibrates.
        let overrides = qat::fold_fake_quant(m, &mut r.report)?;
        if mode == Mode::Int8 {
            r.overrides = overrides;
            r.qat = true;
            r.report.mode = "int8 (QAT model detected: trained parameters used)".into();
        } else {
            r.report.note(
                "the model has fake-quantization points (QAT): folded; int16 activations \
                 use calibrated ranges instead of the trained int8 parameters",
            );
        }
    }
    Ok(())
}

/// float16 mode: sparse float32 constants become sparse FLOAT16 + DEQUANTIZE.
fn sparse_to_float16(m: &mut Model, r: &mut Run) -> Result<()> {
    let changes = fold::sparse_to_float16(m);
    r.report.quantized.extend(changes);
    Ok(())
}

/// The weight modes' pass (`weights.rs`).
fn quantize_weights(m: &mut Model, r: &mut Run) -> Result<()> {
    weights::quantize_weights(m, r.opts, &mut r.report)
}

/// The full-integer engine (`integer/`), with trained parameters in QAT.
fn quantize_integer(m: &mut Model, r: &mut Run) -> Result<()> {
    let o = r.opts;
    let width = match o.mode {
        Mode::Int16x8 => scheme::Width::Int16x8,
        _ => scheme::Width::Int8,
    };
    let ranges = match (r.qat, &o.ranges) {
        (true, given) => qat::ranges_with_overrides(m, &r.overrides, given.as_ref(), width),
        (false, Some(ranges)) => ranges.clone(),
        (false, None) => {
            return Err(OptionError::MissingRanges {
                mode: o.mode.name(),
            }
            .into());
        }
    };
    let io = integer::IntegerOptions {
        width,
        interface: o.interface,
        strict: o.strict,
        bias_bits: o.bias_bits.unwrap_or(width.default_bias_bits()),
        per_tensor: o.per_tensor,
        overrides: std::mem::take(&mut r.overrides),
        keep_float: o.keep_float.clone(),
        int16: o.int16.clone(),
        weight_clipping: o.weight_clipping(),
        input_means: bias_correction_means(m, o, &mut r.report)?,
        scale_cache: o.scale_cache.clone(),
        int8_outputs: o.int8_outputs,
    };
    integer::quantize_integer(m, &ranges, &io, &mut r.report)?;
    if r.qat && o.ranges.is_none() {
        qat_ranges_complete(&r.report)?;
    }
    Ok(())
}

/// Bias correction's layer-input means, measured on the float graph `m` (the fold
/// passes' result) with the calibration samples; `None` when it is off, or with a note
/// when no samples were given (ranges from a file).
fn bias_correction_means(
    m: &Model,
    o: &Options,
    report: &mut Report,
) -> Result<Option<std::sync::Arc<ptq::InputMeans>>> {
    if !o.bias_correction() {
        return Ok(None);
    }
    match o.samples.as_deref() {
        Some(samples) if !samples.is_empty() => {
            Ok(Some(std::sync::Arc::new(ptq::bias::collect(m, samples)?)))
        }
        _ => {
            report.note(
                "bias correction: no calibration samples (ranges given without data), biases are not corrected",
            );
            Ok(None)
        }
    }
}

/// `--mode qat` without calibration: every operator training left without a range is
/// an error (it would silently stay float).
fn qat_ranges_complete(report: &Report) -> Result<()> {
    let missing: Vec<String> = report
        .ops
        .iter()
        .filter_map(|f| match &f.fate {
            report::Fate::Float { reason } if reason.is_missing_range() => Some(format!(
                "  subgraph {}, operator {} ({}): {reason}",
                f.subgraph, f.operator, f.op
            )),
            _ => None,
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Data(format!(
        "--mode qat: {} operator(s) read or write tensors that training gave no range and no same-scale neighbour covers:\n{}\nadd --calibration DATA to calibrate them",
        missing.len(),
        missing.join("\n")
    )))
}

fn operator_versions(m: &mut Model, _: &mut Run) -> Result<()> {
    bump_versions(m);
    Ok(())
}

fn prune_pass(m: &mut Model, _: &mut Run) -> Result<()> {
    prune::prune(m);
    Ok(())
}

/// Runs `passes` on `m`, verifying the graph after each.
fn run_passes(m: &mut Model, run: &mut Run, passes: &[(&'static str, Pass)]) -> Result<()> {
    for (name, pass) in passes {
        pass(m, run)?;
        ir::verify(m).map_err(|e| Error::InvalidAfterPass {
            pass: name,
            source: Box::new(e),
        })?;
        log::debug!("pass {name} done");
    }
    Ok(())
}

fn new_run(opts: &Options) -> Run<'_> {
    Run {
        opts,
        report: Report {
            mode: opts.mode.name().to_string(),
            ..Default::default()
        },
        overrides: qat::Overrides::default(),
        qat: false,
    }
}

/// The float model the fold passes leave for `opts` (weight encodings and
/// fake-quantization folded, tensor indices unchanged), for calibrating a QAT model's
/// tensors training did not cover: ranges of this model line up with the model
/// `quantize` works on.
pub fn folded_for_calibration(model: &Model, opts: &Options) -> Result<Model> {
    fold::check_weight_encodings(model)?;
    let mut m = model.clone();
    let list = passes(opts.mode);
    let n = list
        .iter()
        .position(|(name, _)| *name == LAST_FOLD_PASS)
        .map_or(0, |i| i + 1);
    run_passes(&mut m, &mut new_run(opts), &list[..n])?;
    Ok(m)
}

/// Quantizes a model. The input is not modified.
pub fn quantize(model: &Model, opts: &Options) -> Result<(Model, Report)> {
    if let Some(b) = opts.block_size
        && (opts.mode != Mode::WeightInt4 || !BLOCK_SIZES.contains(&b))
    {
        return Err(OptionError::BlockSize {
            n: b,
            mode: opts.mode.name(),
        }
        .into());
    }
    // Malformed encodings are the input's fault: say so before any pass runs.
    fold::check_weight_encodings(model)?;
    let mut m = model.clone();
    m.source = None;
    let mut run = new_run(opts);
    run_passes(&mut m, &mut run, &passes(opts.mode))?;
    let mut report = run.report;
    if report.quantized.is_empty() && report.tensors.is_empty() {
        return Err(weights::nothing_to_quantize(model, opts, &report));
    }
    let mode_dtype = opts.mode.weight_dtype();
    report.weight_bytes_by_dtype = report::WeightBytes {
        before: report::weight_bytes_by_dtype(model),
        after: report::weight_bytes_by_dtype(&m),
        mode_dtype: crate::fb::dtype_name(mode_dtype).to_string(),
        mode_dtype_share: 0.0,
    };
    report.weight_bytes_by_dtype.mode_dtype_share =
        report::dtype_share(&report.weight_bytes_by_dtype.after, mode_dtype);
    Ok((m, report))
}

/// Raises every operator's version to what its current signature needs. Operators
/// sharing a code entry but needing different versions get separate entries.
pub fn bump_versions(model: &mut Model) {
    for si in 0..model.subgraphs.len() {
        for oi in 0..model.subgraphs[si].operators.len() {
            let sg = &model.subgraphs[si];
            let op = &sg.operators[oi];
            let code = model.code(op);
            let need = required_version(model, sg, op);
            if need > code.version {
                let builtin = code.builtin;
                let idx = if code.custom_code.is_none() {
                    model.ensure_opcode(builtin, need)
                } else {
                    continue;
                };
                model.subgraphs[si].operators[oi].opcode_index = idx;
            }
        }
    }
}
