//! `tflquant quantize IN -o OUT --mode MODE [options]`.

use std::path::PathBuf;

use tflquant::calib::samples::Samples;
use tflquant::calib::{KeepOutputs, Ranges};
use tflquant::quant::integer::Interface;
use tflquant::quant::rounding::Rounding;
use tflquant::quant::{self, Mode, Options};
use tflquant::writer::{self, WriteOptions};
use tflquant::{Error, Result};

use super::calibrate::DataArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Input model (.tflite), float.
    input: PathBuf,
    /// Output model (.tflite); never the input itself.
    #[arg(short, long)]
    output: PathBuf,
    /// What to quantize:
    /// `dynamic` = int8 weights for ops with dynamic-range (hybrid) kernels, float activations;
    /// `float16` = float16 weights + DEQUANTIZE;
    /// `weight-int8` = int8 weights + DEQUANTIZE (float compute);
    /// `weight-int4` = packed int4 weights: read directly by FULLY_CONNECTED, CONV_2D and
    /// EMBEDDING_LOOKUP, behind one DEQUANTIZE for every other reader;
    /// `int8` = full integer: int8 activations and weights, int32 biases (needs --calibration);
    /// `int16x8` = int16 activations, int8 weights, int64 biases (needs --calibration);
    /// `qat` = int8 from a quantization-aware-trained model, with the trained scales and
    /// zero points of its QUANTIZE→DEQUANTIZE pairs / FAKE_QUANT ops (--calibration only
    /// for tensors training did not cover).
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// One scale per weight tensor instead of one per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// Weight modes: leave weights with fewer elements float [default: 1024; 0 for float16].
    #[arg(long, value_name = "N")]
    min_elements: Option<u64>,
    /// Blockwise int4 (weight-int4 only): one float16 scale per block of N input values.
    #[arg(long, value_name = "N", value_parser = parse_block_size)]
    block_size: Option<usize>,
    /// int8/int16x8: calibration samples (.npy, .npz or an image directory, as for
    /// `tflquant calibrate`); ranges are collected with --observer. weight-int4: the
    /// samples whose layer inputs gptq rounding uses.
    #[arg(long, value_name = "DATA", conflicts_with = "ranges")]
    calibration: Option<PathBuf>,
    /// weight-int4: how weights are rounded. `nearest` = scale from the largest
    /// magnitude; `mse` = clip ratio searched per channel/block for the lowest squared
    /// error; `gptq` = error-compensating rounding with each layer's input statistics
    /// (needs --calibration) [default: gptq with --calibration, else mse: the best on
    /// average of what each can run, docs/ACCURACY.md].
    #[arg(long, value_enum)]
    rounding: Option<RoundingArg>,
    /// weight-int4: a weight whose layer SQNR under INT4 is below DB decibels stays INT8
    /// (measured on the calibration inputs with --calibration, else on the weights).
    #[arg(long, value_name = "DB")]
    int4_max_loss: Option<f64>,
    /// int8/int16x8: use ranges from `tflquant calibrate` instead of calibrating.
    #[arg(long, value_name = "ranges.json")]
    ranges: Option<PathBuf>,
    /// int8/int16x8: range observer: minmax, extrapolate[:G] (minmax widened by G × the gap
    /// to the second most extreme sample; G = 1 by default), ema:C, percentile:P, mse,
    /// entropy, or auto
    /// (per tensor the one of minmax, percentile:99.99, mse with the least expected int8
    /// error on its histogram; clipping must gain 3 dB over minmax; see README).
    #[arg(long, default_value = "minmax")]
    observer: String,
    /// int8/int16x8: type of the model's inputs and outputs. `float` adds QUANTIZE after
    /// inputs and DEQUANTIZE before outputs; `int8`/`int16` make them integer; `uint8`
    /// converts uint8 (zero point + 128) with QUANTIZE operators.
    #[arg(long, value_enum, default_value_t = InterfaceArg::Float)]
    interface: InterfaceArg,
    /// int8/int16x8: integer only; any operator that would stay float is an error.
    #[arg(long)]
    strict: bool,
    /// int8/int16x8: keep these operators float (repeatable): `S:I` (subgraph:operator as
    /// --dump-plan numbers them), or a regular expression matching the whole operator
    /// type (`CONV_2D`, `LOG|RSQRT`) or the whole name of one of its output tensors.
    /// Applied before --target-sqnr's automatic choice.
    #[arg(long, value_name = "OP_OR_TENSOR_REGEX")]
    keep_float: Vec<String>,
    /// int8: run these operators in 16x8 (int16 activations, int8 weights, int64
    /// biases; repeatable, selected like --keep-float); QUANTIZE operators convert
    /// between int8 and int16 tensors. Operators without a 16x8 kernel stay int8 (a note
    /// says why). Applied after --keep-float, before --target-sqnr's automatic choice.
    #[arg(long, value_name = "OP_OR_TENSOR_REGEX")]
    int16: Vec<String>,
    /// int8: keep the operators whose outputs only float operators or float model outputs
    /// read int8, with int8 outputs. By default (with --interface float) such a SOFTMAX
    /// writes its probabilities in int16 and such an operator without weights that has a
    /// 16x8 kernel runs in 16x8, so the model's last rounding is 128 to 256 times finer; this
    /// flag is for accelerators that run int8 only (see README).
    #[arg(long)]
    int8_outputs: bool,
    /// int8/int16x8: automatic mixed precision: keep the operators most sensitive to
    /// quantization float until every model output reaches DB decibels of SQNR against
    /// the float model (searched on the calibration data, measured on --validate data,
    /// else the calibration data; see README).
    #[arg(long, value_name = "DB")]
    target_sqnr: Option<f64>,
    /// int8/int16x8: cross-layer equalization of the float model before calibration:
    /// evens out the per-channel weight ranges of CONV_2D/DEPTHWISE_CONV_2D→CONV_2D and
    /// FULLY_CONNECTED→FULLY_CONNECTED pairs (NONE or RELU between; RELU6 pairs are
    /// skipped) without changing the float model's outputs (see README).
    #[arg(long)]
    cle: bool,
    /// int8/int16x8: how the per-channel scales of int8 weights are chosen. `minmax` =
    /// the channel's largest magnitude / 127 (TF's converter); `mse` = the clip ratio
    /// (1.00 … 0.50) with the lowest squared rounding error per channel; `mse-hidden` =
    /// `mse` except on the output layers (weighted operators whose outputs reach a model
    /// output through unweighted ones), which keep `minmax`
    /// [default: mse-hidden in int8, minmax in int16x8 and qat; see README].
    #[arg(long, value_enum)]
    weight_clipping: Option<ClippingArg>,
    /// int8/int16x8: empirical bias correction: subtract from each output channel's
    /// bias the mean error the quantized weights add (FULLY_CONNECTED, CONV_2D,
    /// DEPTHWISE_CONV_2D), measured on the --calibration samples. `--bias-correction`
    /// alone means `on` [default: off; see README].
    #[arg(long, value_enum, value_name = "on|off", num_args = 0..=1, default_missing_value = "on")]
    bias_correction: Option<OnOff>,
    /// int16x8: bias type [default: int64, as TF's converter].
    #[arg(long, value_enum)]
    bias: Option<BiasArg>,
    /// Weight modes: keep an output more than 1% larger than the input (by default such
    /// a run is an error that says why the model did not shrink, and the output is
    /// removed; full-integer modes only warn).
    #[arg(long)]
    allow_larger: bool,
    /// Print every decision (operator fates, tensor parameters) to stdout.
    #[arg(long)]
    dump_plan: bool,
    /// Write a JSON report of every decision (`-` for stdout).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    validate: super::compare::ValidateArgs,
    #[command(flatten)]
    calib_runtime: super::calib_runtime::CalibRuntimeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Dynamic,
    Float16,
    WeightInt8,
    WeightInt4,
    Int8,
    Int16x8,
    Qat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InterfaceArg {
    Float,
    Int8,
    Uint8,
    Int16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoundingArg {
    Nearest,
    Mse,
    Gptq,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClippingArg {
    Minmax,
    Mse,
    MseHidden,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BiasArg {
    Int32,
    Int64,
}

fn parse_block_size(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if quant::BLOCK_SIZES.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is not a supported block size; use 32, 64, 128 or 256"
        ))
    }
}

/// Checks flag combinations and turns the arguments into options.
fn options(a: &Args) -> Result<Options> {
    let mode = match a.mode {
        ModeArg::Dynamic => Mode::Dynamic,
        ModeArg::Float16 => Mode::Float16,
        ModeArg::WeightInt8 => Mode::WeightInt8,
        ModeArg::WeightInt4 => Mode::WeightInt4,
        ModeArg::Int8 => Mode::Int8,
        ModeArg::Int16x8 => Mode::Int16x8,
        ModeArg::Qat => Mode::Qat,
    };
    let usage = |m: String| Err(Error::Usage(m));
    if a.block_size.is_some() && mode != Mode::WeightInt4 {
        return usage(format!(
            "--block-size applies to --mode weight-int4 only (got --mode {}); drop --block-size or use --mode weight-int4",
            mode.name()
        ));
    }
    if mode != Mode::WeightInt4 {
        let int4_flags = [
            (a.rounding.is_some(), "--rounding"),
            (a.int4_max_loss.is_some(), "--int4-max-loss"),
        ];
        if let Some((_, flag)) = int4_flags.iter().find(|(set, _)| *set) {
            return usage(format!(
                "{flag} applies to --mode weight-int4 only (got --mode {})",
                mode.name()
            ));
        }
    }
    if matches!(a.rounding, Some(RoundingArg::Gptq)) && a.calibration.is_none() {
        return usage("--rounding gptq needs --calibration DATA (.npy, .npz or an image directory): it uses each layer's inputs on those samples; or use --rounding mse".into());
    }
    if a.int4_max_loss.is_some_and(|db| !db.is_finite()) {
        return usage("--int4-max-loss needs a finite number of decibels, e.g. 20".into());
    }
    if mode.is_integer() {
        if mode != Mode::Qat && a.calibration.is_none() && a.ranges.is_none() {
            return usage(format!(
                "--mode {} needs calibration data: add --calibration DATA (.npy, .npz or an image directory) or --ranges ranges.json",
                mode.name()
            ));
        }
        if a.min_elements.is_some() {
            return usage("--min-elements applies to the weight modes only; full-integer modes quantize every weight".into());
        }
        match (mode, a.interface) {
            (Mode::Int8, InterfaceArg::Int16) => {
                return usage(
                    "--interface int16 needs --mode int16x8 (int8 models have int8 tensors)".into(),
                );
            }
            (Mode::Qat, InterfaceArg::Int16) => {
                return usage("--interface int16 needs --mode int16x8; QAT models are int8".into());
            }
            (Mode::Int16x8, InterfaceArg::Int8 | InterfaceArg::Uint8) => {
                return usage("--interface int8/uint8 needs --mode int8 (int16x8 models have int16 tensors); use --interface int16".into());
            }
            _ => {}
        }
        if matches!(a.bias, Some(BiasArg::Int64)) && mode != Mode::Int16x8 {
            return usage(
                "--bias int64 applies to --mode int16x8; int8 models use int32 biases".into(),
            );
        }
    } else {
        let integer_flags = [
            (
                a.calibration.is_some() && mode != Mode::WeightInt4,
                "--calibration",
            ),
            (a.ranges.is_some(), "--ranges"),
            (a.interface != InterfaceArg::Float, "--interface"),
            (a.strict, "--strict"),
            (a.bias.is_some(), "--bias"),
            (!a.keep_float.is_empty(), "--keep-float"),
            (!a.int16.is_empty(), "--int16"),
            (a.int8_outputs, "--int8-outputs"),
            (a.target_sqnr.is_some(), "--target-sqnr"),
            (a.cle, "--cle"),
            (a.weight_clipping.is_some(), "--weight-clipping"),
            (a.bias_correction.is_some(), "--bias-correction"),
        ];
        if let Some((_, flag)) = integer_flags.iter().find(|(set, _)| *set) {
            return usage(format!(
                "{flag} applies to --mode int8 and int16x8 (--calibration also to weight-int4) only (got --mode {})",
                mode.name()
            ));
        }
    }
    if let Some(db) = a.target_sqnr {
        if !db.is_finite() || db <= 0.0 {
            return usage(format!(
                "--target-sqnr {db}: give a positive, finite number of decibels, e.g. 30"
            ));
        }
        if a.calibration.is_none() {
            return usage(
                "--target-sqnr needs --calibration DATA: the search measures every operator on those samples"
                    .into(),
            );
        }
        if mode == Mode::Qat {
            return usage("--target-sqnr applies to --mode int8 and int16x8 (QAT models keep their trained parameters)".into());
        }
    }
    if !a.int16.is_empty() && mode != Mode::Int8 {
        return usage(format!(
            "--int16 picks 16x8 operators inside an int8 model: it applies to --mode int8 (got --mode {}; --mode int16x8 runs every operator in 16x8)",
            mode.name()
        ));
    }
    if !a.int16.is_empty() && a.interface != InterfaceArg::Float {
        return usage(
            "--int16 needs --interface float: an integer interface fixes the model's input and output types to the run's width"
                .into(),
        );
    }
    if a.cle && a.ranges.is_some() {
        return usage("--cle rewrites the float model before calibration, so ranges collected on the original (--ranges) do not fit it; use --calibration DATA instead".into());
    }
    if a.cle && mode == Mode::Qat {
        return usage("--cle applies to --mode int8 and int16x8: a QAT model's trained parameters belong to its weights as they are".into());
    }
    if a.bias_correction == Some(OnOff::On) && a.calibration.is_none() {
        return usage("--bias-correction needs --calibration DATA: it measures each layer's input on those samples (ranges alone do not carry them)".into());
    }
    if a.int8_outputs && mode != Mode::Int8 {
        return usage(format!(
            "--int8-outputs applies to --mode int8 (got --mode {}: its outputs have the run's width)",
            mode.name()
        ));
    }
    let mut o = Options::new(mode);
    o.int8_outputs = a.int8_outputs;
    o.weight_clipping = a.weight_clipping.map(|c| match c {
        ClippingArg::Minmax => quant::ptq::WeightClipping::Minmax,
        ClippingArg::Mse => quant::ptq::WeightClipping::Mse,
        ClippingArg::MseHidden => quant::ptq::WeightClipping::MseHidden,
    });
    o.bias_correction = a.bias_correction.map(|b| b == OnOff::On);
    o.keep_float = a
        .keep_float
        .iter()
        .map(|s| quant::select::OpSelector::parse(s).map(quant::select::KeepFloat::user))
        .collect::<Result<_>>()?;
    o.int16 = a
        .int16
        .iter()
        .map(|s| quant::select::OpSelector::parse(s).map(quant::select::Int16::user))
        .collect::<Result<_>>()?;
    o.per_tensor = a.per_tensor;
    o.min_elements = a.min_elements;
    o.block_size = a.block_size;
    o.rounding = a.rounding.map(|r| match r {
        RoundingArg::Nearest => Rounding::Nearest,
        RoundingArg::Mse => Rounding::Mse,
        RoundingArg::Gptq => Rounding::Gptq,
    });
    o.int4_max_loss_db = a.int4_max_loss;
    o.strict = a.strict;
    o.interface = match a.interface {
        InterfaceArg::Float => Interface::Float,
        InterfaceArg::Int8 | InterfaceArg::Int16 => Interface::Integer,
        InterfaceArg::Uint8 => Interface::Uint8,
    };
    o.bias_bits = a.bias.map(|b| match b {
        BiasArg::Int32 => 32,
        BiasArg::Int64 => 64,
    });
    Ok(o)
}

pub fn run(a: Args) -> Result<()> {
    let mut opts = options(&a)?;
    // Checked before any work (--reset-state is read again for calibration/validation).
    let samples = a.data_args.sample_options()?;
    a.data_args.apply_threads()?;
    let model = tflquant::read_path(&a.input)?;
    // --cle: the float model is rewritten before anything calibrates or quantizes it.
    let (model, cle_notes) = if a.cle {
        let (m, summary) = quant::ptq::cle::equalize(&model)?;
        (m, summary.notes())
    } else {
        (model, Vec::new())
    };
    // The runtime that calibrated, which --validate defaults to.
    let mut used = None;
    // The float model's outputs on the closing check's samples, kept by calibration.
    let mut kept = None;
    if opts.mode.is_integer() {
        let mut calibrate = |m: &tflquant::Model, data: &std::path::Path, keep| {
            let c = super::calib_runtime::calibrate(
                m,
                data,
                &a.data_args,
                &a.observer,
                &a.calib_runtime,
                keep,
            )?;
            used = Some(c.runtime);
            kept = c.float_outputs;
            Ok::<_, Error>(c.ranges)
        };
        opts.ranges = match (&a.ranges, &a.calibration) {
            (Some(r), _) => Some(Ranges::load(r)?),
            (None, Some(data)) if opts.mode == Mode::Qat => {
                // Calibrate the float graph the QAT pass leaves, so that indices line up.
                let folded = quant::folded_for_calibration(&model, &opts)?;
                Some(calibrate(&folded, data, KeepOutputs::default())?)
            }
            // The closing check compares with `model` on the first calibration samples.
            (None, Some(data)) => {
                let keep = KeepOutputs {
                    samples: if a.target_sqnr.is_none() {
                        CHECK_SAMPLES
                    } else {
                        0
                    },
                    max_bytes: KEEP_OUTPUT_BYTES,
                };
                Some(calibrate(&model, data, keep)?)
            }
            // options() requires ranges for every integer mode but qat.
            (None, None) => None,
        };
    }
    let wants_samples = match opts.mode {
        Mode::WeightInt4 => true,
        m => m.is_integer() && opts.bias_correction(),
    };
    if let (true, Some(data)) = (wants_samples, &a.calibration) {
        let samples = Samples::open(data, &model, &a.data_args.sample_options()?)?;
        let samples = samples.collect::<Result<Vec<_>>>()?;
        if samples.is_empty() {
            return Err(Error::Data(format!("{}: no samples", data.display())));
        }
        opts.samples = Some(std::sync::Arc::new(samples));
    }
    let (out, mut report) = match (a.target_sqnr, &a.calibration) {
        (Some(target_db), Some(data)) => {
            let search = tflquant::mixed::SearchOptions {
                target_db,
                calibration: data,
                validation: a.validate.data(),
                samples: samples.clone(),
                observer: a.observer.parse()?,
            };
            let r = tflquant::mixed::search(&model, &opts, &search)?;
            print_search(r.1.mixed_precision.as_ref(), &r.1.mode);
            r
        }
        _ => quant::quantize(&model, &opts)?,
    };
    for n in cle_notes {
        report.note(n);
    }
    record_observer_choices(&mut report, opts.ranges.as_ref());
    if a.dump_plan {
        super::print_out(&quant::integer::render_plan(&report))?;
    }
    writer::write_path(&out, &a.output, &WriteOptions::default())?;
    let larger = report.check_size(
        file_len(&a.input),
        file_len(&a.output),
        opts.mode,
        a.allow_larger,
    );
    // --target-sqnr measured the result already (and printed it).
    if let (Some(data), Mode::Int8 | Mode::Int16x8 | Mode::Qat) = (&a.calibration, opts.mode)
        && a.target_sqnr.is_none()
        && let Some(w) = calibration_check(&model, &out, data, &samples, kept.as_ref())
    {
        eprintln!("warning: {w}");
        report.note(format!("warning: {w}"));
    }
    if let Some(path) = &a.report {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Internal(format!("rendering the report: {e}")))?;
        if path.as_os_str() == "-" {
            super::print_out(&format!("{json}\n"))?;
        } else {
            std::fs::write(path, json + "\n").map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
        }
    }
    super::status(&report.summary());
    if larger {
        let grown = report.growth_message(opts.mode);
        // The weight modes exist to make a model smaller: an output that grew is a
        // failure unless asked for. Full-integer modes change what computes (integer
        // kernels, NPUs), and on graphs with few weights their QUANTIZE/DEQUANTIZE
        // operators and parameters may outweigh the savings: a warning.
        if !a.allow_larger && !opts.mode.is_integer() {
            let _ = std::fs::remove_file(&a.output);
            return Err(Error::Unsupported {
                at: tflquant::error::Loc::model(),
                what: format!(
                    "{grown}\n{} was not kept; pass --allow-larger to keep a larger output, or choose another --mode",
                    a.output.display()
                ),
            });
        }
        let kept = if a.allow_larger {
            "--allow-larger"
        } else {
            "full-integer modes keep a larger output"
        };
        super::status(&format!("warning: {grown}\n(kept: {kept})"));
    }
    let stdout_taken = a.report.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let runtime = match used {
        Some(rt) if a.validate.is_set() => rt,
        _ if a.validate.is_set() => a.calib_runtime.resolve(&model, "validating"),
        _ => super::compare::RuntimeArg::Reference,
    };
    let target = super::compare::ValidateTarget {
        default_runtime: runtime,
        litert: a.calib_runtime.load_options(),
    };
    super::compare::validate(
        &a.validate,
        &a.input,
        &a.output,
        &samples,
        stdout_taken,
        &target,
        &report,
    )
}

/// Outputs below this SQNR against the float model on the calibration data get a
/// warning at the end of `quantize`.
const WARN_SQNR_DB: f64 = 10.0;
/// Calibration samples the check runs (both models, reference interpreter).
const CHECK_SAMPLES: usize = 32;
/// Memory the float outputs kept from calibration for the check may take; beyond it
/// the check runs the float model again.
const KEEP_OUTPUT_BYTES: usize = 64 << 20;

/// Runs the quantized model against the float one on (the first 32 of) the
/// calibration samples with the reference interpreter; when an output's SQNR is below
/// 10 dB (or not a number), says which and names the tensor adding the most error.
/// `float_outputs`: the float model's outputs on those samples, kept by calibration
/// (the same interpreter on the same samples: the same values), so that only the
/// quantized model runs. A comparison that cannot run is skipped (logged): the model
/// is written already.
fn calibration_check(
    float: &tflquant::ir::Model,
    quant: &tflquant::ir::Model,
    data: &std::path::Path,
    samples: &tflquant::calib::SampleOptions,
    float_outputs: Option<&tflquant::calib::FloatOutputs>,
) -> Option<String> {
    use tflquant::compare::{self, Options as CompareOptions};
    let samples = tflquant::calib::SampleOptions {
        max_samples: Some(
            samples
                .max_samples
                .unwrap_or(CHECK_SAMPLES)
                .min(CHECK_SAMPLES),
        ),
        ..samples.clone()
    };
    let bad = |x: Option<f64>| x.is_some_and(|d| d.is_nan() || d < WARN_SQNR_DB);
    // Outputs only first; the intermediate tensors (which name the culprit) are compared
    // only when an output is below the bar.
    let run = |tensors: bool| {
        let opts = CompareOptions {
            tensors,
            ..Default::default()
        };
        let r = match float_outputs {
            Some(f) if !tensors => {
                compare::compare_with_float_outputs(float, quant, f, data, &samples)
            }
            _ => compare::compare(float, quant, data, &samples, &opts),
        };
        r.map_err(|e| log::info!("the SQNR check on the calibration data did not run: {e}"))
            .ok()
    };
    if !run(false)?.outputs.iter().any(|o| bad(o.sqnr_db)) {
        return None;
    }
    let r = run(true)?;
    let worst = r.outputs.iter().filter(|o| bad(o.sqnr_db)).min_by(|a, b| {
        a.sqnr_db
            .partial_cmp(&b.sqnr_db)
            .unwrap_or(std::cmp::Ordering::Less)
    })?;
    let culprit = r
        .tensors
        .as_ref()
        .and_then(|t| t.first())
        .map(|t| {
            format!(
                "; the most error is added at tensor {:?} ({}, local SQNR {})",
                t.name,
                t.op.as_deref().unwrap_or("?"),
                t.local_sqnr_db
                    .map_or("n/a".into(), |d| format!("{d:.1} dB"))
            )
        })
        .unwrap_or_default();
    Some(format!(
        "output {:?} has an SQNR of {} dB against the float model on {} calibration samples \
         (below {WARN_SQNR_DB} dB){culprit}; inspect with `tflquant compare FLOAT QUANT --data DATA --tensors`",
        worst.name,
        worst.sqnr_db.map_or("NaN".into(), |d| format!("{d:.1}")),
        r.samples
    ))
}

/// `--observer auto`: the observer chosen per tensor into the report, with a count.
fn record_observer_choices(report: &mut quant::Report, ranges: Option<&Ranges>) {
    let Some(ranges) = ranges else { return };
    report.observers = ranges
        .tensors
        .iter()
        .filter_map(|t| {
            Some(quant::report::ObserverChoice {
                subgraph: t.subgraph,
                tensor: t.tensor,
                name: t.name.clone(),
                observer: t.observer.clone()?,
                range: (t.min, t.max),
            })
        })
        .collect();
    if report.observers.is_empty() {
        return;
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for c in &report.observers {
        *counts.entry(c.observer.as_str()).or_default() += 1;
    }
    let text: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let note = format!("--observer auto chose: {}", text.join(", "));
    report.note(note);
}

/// The `--target-sqnr` result on stderr: reached or not, per output, what stayed float.
fn print_search(m: Option<&quant::report::MixedPrecision>, mode: &str) {
    let Some(m) = m else { return };
    let kept: Vec<String> = m
        .plan
        .iter()
        .filter(|p| p.precision == "float")
        .map(|p| format!("{}:{} {}", p.subgraph, p.operator, p.op))
        .collect();
    let int16 = m
        .plan
        .iter()
        .filter(|p| p.precision == "int16x8" && mode == "int8")
        .count();
    super::status(&format!(
        "target-sqnr {} dB: {} on {} ({} samples): {}; {int16} operator(s) int16x8, {} float{}{}; {} evaluations",
        m.target_sqnr_db,
        if m.reached {
            "reached"
        } else {
            "NOT reached (best plan written)"
        },
        m.measured_on,
        m.measured_samples,
        tflquant::mixed::render_outputs(Some(m)),
        kept.len(),
        if kept.is_empty() { "" } else { ": " },
        kept.join(", "),
        m.evaluations
    ));
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
