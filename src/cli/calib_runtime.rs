//! `--calibration-runtime reference|litert|auto` and `--litert-lib PATH` of `calibrate`
//! and `quantize` (one flag block, flattened into both): which runtime collects the
//! ranges, and, for `quantize --validate`, the default of `--validate-runtime`.
//!
//! * `reference`: tflquant's interpreter;
//! * `litert`: the official runtime (`libLiteRt.so`), every float tensor of subgraph 0
//!   exposed as an output ([`tflquant::litert::LiteRt::calibrate`]);
//! * `auto` (default): the interpreter, unless it has no kernel for some operator of the
//!   model: then LiteRT, announced on stderr. When neither can run the model, the error
//!   (exit code 2) names the operators and both ways out: a LiteRT build that registers
//!   them (`--calibration-runtime litert --litert-lib PATH`), or ranges from elsewhere
//!   (`--ranges`).

use std::path::{Path, PathBuf};

use tflquant::calib::{FloatOutputs, KeepOutputs, ObserverKind, Ranges, Samples};
use tflquant::error::Loc;
use tflquant::interp::{self, UnsupportedOp};
use tflquant::litert::{LiteRt, LoadOptions, OpenOptions};
use tflquant::{Error, Model, Result};

use super::calibrate::{DataArgs, progress_bar};
use super::compare::RuntimeArg;

/// The flag block.
#[derive(clap::Args, Debug)]
pub struct CalibRuntimeArgs {
    /// Runtime that collects the ranges: `reference` (tflquant's interpreter), `litert`
    /// (the official runtime, every float tensor read as an extra output), `auto` (the
    /// interpreter, or LiteRT when the interpreter has no kernel for some operator, e.g.
    /// a custom op). `quantize --validate` defaults to the same runtime.
    #[arg(long, value_enum, default_value_t = CalibRuntime::Auto)]
    pub calibration_runtime: CalibRuntime,
    /// The LiteRT runtime library (libLiteRt.so, or the ai_edge_litert package
    /// directory) for LiteRT calibration and validation; default: $TFLQUANT_LITERT_LIB,
    /// else the ai_edge_litert package of $TFLQUANT_PYTHON (or python3).
    #[arg(long, value_name = "PATH")]
    pub litert_lib: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibRuntime {
    Reference,
    Litert,
    Auto,
}

impl CalibRuntimeArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            lib: self.litert_lib.clone(),
            ..Default::default()
        }
    }

    /// The runtime `auto` resolves to for `model`, announcing a switch to LiteRT.
    pub fn resolve(&self, model: &Model, what: &str) -> RuntimeArg {
        match self.calibration_runtime {
            CalibRuntime::Reference => RuntimeArg::Reference,
            CalibRuntime::Litert => RuntimeArg::Litert,
            CalibRuntime::Auto => {
                let missing = interp::unsupported_ops(model);
                if missing.is_empty() {
                    RuntimeArg::Reference
                } else {
                    super::status(&format!(
                        "note: tflquant's interpreter has no kernel for {}: {what} on LiteRT",
                        list(&missing)
                    ));
                    RuntimeArg::Litert
                }
            }
        }
    }
}

fn list(ops: &[UnsupportedOp]) -> String {
    ops.iter()
        .map(|m| format!("subgraph {}, operator {} ({})", m.subgraph, m.op, m.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The two ways out when neither runtime can calibrate.
const WAYS_OUT: &str = "ways out: `--calibration-runtime litert --litert-lib PATH` with a LiteRT \
     build that registers these operators, or ranges collected elsewhere via `--ranges \
     ranges.json` (custom operators stay float in the quantized model either way)";

/// What [`calibrate`] hands back.
pub struct Calibrated {
    pub ranges: Ranges,
    /// The runtime that collected them.
    pub runtime: RuntimeArg,
    /// The float outputs asked for by [`KeepOutputs`] (reference interpreter only).
    pub float_outputs: Option<FloatOutputs>,
}

/// Calibrates `model` over `data` on the runtime chosen by `rt`, keeping the float
/// outputs `keep` asks for when the reference interpreter runs.
pub fn calibrate(
    model: &Model,
    data: &Path,
    data_args: &DataArgs,
    observer: &str,
    rt: &CalibRuntimeArgs,
    keep: KeepOutputs,
) -> Result<Calibrated> {
    let runtime = rt.resolve(model, "collecting the ranges");
    let missing = interp::unsupported_ops(model);
    match runtime {
        RuntimeArg::Reference => {
            let (ranges, float_outputs) = super::calibrate::calibrate_model(
                model, data, data_args, observer, keep,
            )
            .map_err(|e| match e {
                Error::Unsupported { at, what } if !missing.is_empty() => Error::Unsupported {
                    at,
                    what: format!(
                        "{what}; `--calibration-runtime litert` (or `auto`) collects \
                                 the ranges on LiteRT instead, or pass `--ranges ranges.json` \
                                 collected elsewhere"
                    ),
                },
                e => e,
            })?;
            Ok(Calibrated {
                ranges,
                runtime: RuntimeArg::Reference,
                float_outputs,
            })
        }
        RuntimeArg::Litert => {
            let lite = LiteRt::load(&rt.load_options()).map_err(|e| {
                if missing.is_empty() {
                    e
                } else {
                    Error::Unsupported {
                        at: Loc::model(),
                        what: format!(
                            "tflquant's interpreter has no kernel for {}, and LiteRT, which \
                             could collect the ranges instead, cannot be loaded: {e}; {WAYS_OUT}",
                            list(&missing)
                        ),
                    }
                }
            })?;
            let kind: ObserverKind = observer.parse()?;
            let samples = Samples::open(data, model, &data_args.sample_options()?)?;
            let total = samples.len();
            if total == 0 {
                return Err(Error::Data(format!("{}: no samples", data.display())));
            }
            let open = OpenOptions {
                num_threads: data_args.threads.and_then(|n| u32::try_from(n).ok()),
                ..Default::default()
            };
            let pb = progress_bar(total, "calibrating (LiteRT)");
            let r = lite
                .calibrate(
                    model,
                    samples,
                    kind,
                    data_args.state.stream_ranges()?,
                    &open,
                    &mut || pb.inc(1),
                )
                .map_err(|e| match e {
                    Error::Unsupported { at, what } if !missing.is_empty() => Error::Unsupported {
                        at,
                        what: format!(
                            "neither runtime can run {}: tflquant's interpreter has no \
                                 kernel, and LiteRT {} ({}) fails: {what}; {WAYS_OUT}",
                            list(&missing),
                            lite.version(),
                            lite.library_path().display()
                        ),
                    },
                    e => e,
                })?;
            pb.finish_and_clear();
            Ok(Calibrated {
                ranges: r,
                runtime: RuntimeArg::Litert,
                float_outputs: None,
            })
        }
    }
}
