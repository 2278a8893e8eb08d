//! `tflquant compare FLOAT QUANT --data DATA [--runtime reference|litert] [--tensors]
//! [--top N] [--json]`: where a quantized model loses accuracy. Also home of
//! `quantize --validate DATA` ([`ValidateArgs`], [`validate`]).

use std::path::{Path, PathBuf};

use tflquant::calib::SampleOptions;
use tflquant::compare::{Comparison, Options, Report, Runtime, SortKey, open_samples};
use tflquant::litert::{LoadOptions, OpenOptions};
use tflquant::{Error, Result};

use super::calibrate::{DataArgs, progress_bar};

#[derive(clap::Args)]
pub struct Args {
    /// The float model (the reference).
    float: PathBuf,
    /// The quantized model to check against it.
    quant: PathBuf,
    /// Samples: .npy (single input), .npz (one array per input, keyed by input name or
    /// input_0, input_1, ...), or a directory of PNG/JPEG images; as for `calibrate`.
    /// Float samples are quantized for integer inputs of the quantized model.
    #[arg(long)]
    data: PathBuf,
    /// `reference`: tflquant's interpreter, which runs quantized models by simulation
    /// (dequantize, float kernel, requantize; about one quantization step from the
    /// runtime's integer kernels); `litert`: the official LiteRT runtime (libLiteRt.so).
    #[arg(long, value_enum, default_value_t = RuntimeArg::Reference)]
    runtime: RuntimeArg,
    /// Also compare every intermediate tensor present in both models (same name, same
    /// element count), worst first.
    #[arg(long)]
    tensors: bool,
    /// With --tensors: what "worst" means. `local`: the error a tensor's op added
    /// (local SQNR: the tensor's error minus what its inputs already carried), which
    /// puts the op that breaks accuracy first; `sqnr`: the accumulated error.
    #[arg(long, value_enum, default_value_t = SortArg::Local, requires = "tensors")]
    sort: SortArg,
    /// With --tensors: show only the N worst tensors.
    #[arg(long, value_name = "N", requires = "tensors", value_parser = clap::value_parser!(u64).range(1..))]
    top: Option<u64>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML page: per-output metrics, the error each op added
    /// along the graph (chart), weight bytes by dtype. Compares every intermediate tensor
    /// for it (--tensors and --top only shape what is printed).
    #[arg(long, value_name = "REPORT.html")]
    html: Option<PathBuf>,
    /// The LiteRT runtime library (libLiteRt.so, or the ai_edge_litert package
    /// directory) for --runtime litert; default: $TFLQUANT_LITERT_LIB, else the
    /// ai_edge_litert package of $TFLQUANT_PYTHON (or python3).
    #[arg(long, value_name = "PATH")]
    litert_lib: Option<PathBuf>,
    #[command(flatten)]
    data_args: DataArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    /// tflquant's interpreter (quantized ops simulated).
    Reference,
    /// the official LiteRT runtime (libLiteRt.so).
    Litert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SortArg {
    Local,
    Sqnr,
}

impl From<RuntimeArg> for Runtime {
    fn from(r: RuntimeArg) -> Runtime {
        match r {
            RuntimeArg::Reference => Runtime::Reference,
            RuntimeArg::Litert => Runtime::LiteRt,
        }
    }
}

/// Runs the comparison over every sample of `data`, with a progress bar. An op the
/// reference interpreter cannot run gets a hint to use LiteRT (`runtime_flag litert`).
fn run_comparison(
    float: &Path,
    quant: &Path,
    data: &Path,
    samples: &SampleOptions,
    opts: &Options,
    runtime_flag: &str,
) -> Result<Report> {
    let fm = tflquant::read_path(float)?;
    let qm = tflquant::read_path(quant)?;
    let opts = &Options {
        reset: samples.reset,
        ..opts.clone()
    };
    let mut c = Comparison::new(&fm, &qm, opts).map_err(|e| match e {
        Error::Unsupported { at, what } if opts.runtime == Runtime::Reference => {
            Error::Unsupported {
                at,
                what: format!(
                    "{what}; tflquant's interpreter cannot run this model, {runtime_flag} \
                     litert runs both models on the official runtime"
                ),
            }
        }
        e => e,
    })?;
    let (fs, qs) = open_samples(&fm, &qm, data, samples)?;
    let pb = progress_bar(fs.len(), "comparing");
    let seq = fs.sequences();
    for (i, (a, b)) in fs.zip(qs).enumerate() {
        if seq.starts_sequence(i) {
            c.reset_state()?;
        }
        c.add_sample(&a?, &b?)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(c.report())
}

pub fn run(a: Args) -> Result<()> {
    if a.litert_lib.is_some() && a.runtime != RuntimeArg::Litert {
        return Err(Error::Usage(
            "--litert-lib applies to --runtime litert only; add --runtime litert".into(),
        ));
    }
    a.data_args.apply_threads()?;
    let opts = Options {
        runtime: a.runtime.into(),
        litert: LoadOptions {
            lib: a.litert_lib.clone(),
            ..Default::default()
        },
        open: OpenOptions {
            num_threads: a.data_args.threads.and_then(|n| u32::try_from(n).ok()),
            ..Default::default()
        },
        tensors: a.tensors || a.html.is_some(),
        ..Default::default()
    };
    let mut report = run_comparison(
        &a.float,
        &a.quant,
        &a.data,
        &a.data_args.sample_options()?,
        &opts,
        "--runtime",
    )?;
    report.sort_tensors(match a.sort {
        SortArg::Local => SortKey::Local,
        SortArg::Sqnr => SortKey::Sqnr,
    });
    if let Some(path) = &a.html {
        write_html(path, &report, &a.float, &a.quant, None)?;
        if !a.tensors {
            report.tensors = None;
            report.tensors_compared = None;
            report.quant_activations = None;
        }
    }
    if let Some(n) = a.top {
        report.keep_worst(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if a.json {
        super::print_out(&(report.to_json() + "\n"))
    } else {
        super::print_out(&report.to_text())
    }
}

/// `quantize --validate DATA [--validate-runtime R]`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// After writing, compare the output with the input model on these samples (as
    /// `tflquant compare`; .npy, .npz or an image directory, normalised by the same data
    /// flags as --calibration) and print the per-output error.
    #[arg(long, value_name = "DATA")]
    validate: Option<PathBuf>,
    /// Runtime for --validate: `reference` (tflquant's interpreter, quantized ops
    /// simulated) or `litert` (the official runtime, found as for `compare`) [default:
    /// the runtime that calibrated, see --calibration-runtime].
    #[arg(long, value_enum, requires = "validate")]
    validate_runtime: Option<RuntimeArg>,
    /// With --validate: also write the comparison as a self-contained HTML page (as
    /// `compare --html`), with the quantization plan.
    #[arg(long, value_name = "REPORT.html", requires = "validate")]
    html: Option<PathBuf>,
}

impl ValidateArgs {
    /// True when --validate was given.
    pub fn is_set(&self) -> bool {
        self.validate.is_some()
    }

    /// The --validate data, if given.
    pub fn data(&self) -> Option<&Path> {
        self.validate.as_deref()
    }
}

/// Where `--validate` runs when --validate-runtime is not given, and how LiteRT is found.
pub struct ValidateTarget {
    pub default_runtime: RuntimeArg,
    pub litert: LoadOptions,
}

/// Writes the HTML page of a comparison (`--html`).
fn write_html(
    path: &Path,
    report: &Report,
    float: &Path,
    quant: &Path,
    plan: Option<&tflquant::quant::Report>,
) -> Result<()> {
    let fm = tflquant::read_path(float)?;
    let qm = tflquant::read_path(quant)?;
    tflquant::compare::html::write(
        path,
        &tflquant::compare::html::HtmlInput {
            report,
            float_model: &fm,
            quant_model: &qm,
            plan,
        },
    )
}

/// Runs `--validate` (nothing without it): compares `output` with `input` and prints
/// the per-output summary on stdout, or on stderr when stdout carries something else
/// (`--report -`).
pub fn validate(
    args: &ValidateArgs,
    input: &Path,
    output: &Path,
    samples: &SampleOptions,
    stdout_taken: bool,
    target: &ValidateTarget,
    plan: &tflquant::quant::Report,
) -> Result<()> {
    let Some(data) = &args.validate else {
        return Ok(());
    };
    let opts = Options {
        runtime: args
            .validate_runtime
            .unwrap_or(target.default_runtime)
            .into(),
        litert: target.litert.clone(),
        tensors: args.html.is_some(),
        ..Default::default()
    };
    let report = run_comparison(
        input,
        output,
        data,
        &SampleOptions {
            // --samples limits the calibration set, not the validation set.
            max_samples: None,
            ..samples.clone()
        },
        &opts,
        "--validate-runtime",
    )
    .map_err(|e| match e {
        // Failures while working keep their kind (exit code 1).
        Error::Io { .. } | Error::Internal(_) | Error::InvalidAfterPass { .. } => e,
        e => Error::Usage(format!(
            "{} was written, but --validate {} could not run: {e}",
            output.display(),
            data.display()
        )),
    })?;
    let text = format!(
        "validation: {} against {} on {} ({} samples, runtime {})\n{}",
        output.display(),
        input.display(),
        data.display(),
        report.samples,
        report.runtime,
        report.outputs_text()
    );
    if let Some(path) = &args.html {
        write_html(path, &report, input, output, Some(plan))?;
    }
    if stdout_taken {
        eprint!("{text}");
        Ok(())
    } else {
        super::print_out(&text)
    }
}
