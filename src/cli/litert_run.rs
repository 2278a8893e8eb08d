//! `tflquant litert-run MODEL INPUTS.npz OUTPUTS.npz` (hidden, for debugging): runs a
//! model on the official LiteRT runtime through its C API, one invoke per sample, like
//! `tests/litert_helper.py run`.
//!
//! INPUTS holds one array per subgraph-0 input, keyed `input_0`, `input_1`, ... or by the
//! input tensor's name, samples on axis 0. OUTPUTS gets `output_0`, ... stacked over the
//! samples, and `t<index>` for every tensor asked for with `--tensors`.

use std::path::PathBuf;

use tflquant::data::{self, Array};
use tflquant::litert::{CpuKernels, LiteRt, LoadOptions, OpenOptions, RuntimeLog};
use tflquant::{Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Model to run (.tflite).
    model: PathBuf,
    /// Input samples (.npz).
    inputs: PathBuf,
    /// Where to write the outputs (.npz).
    outputs: PathBuf,
    /// The LiteRT runtime library (libLiteRt.so, or the ai_edge_litert package directory);
    /// default: $TFLQUANT_LITERT_LIB, else the ai_edge_litert package of $TFLQUANT_PYTHON
    /// (or python3).
    #[arg(long, value_name = "PATH")]
    litert_lib: Option<PathBuf>,
    /// CPU kernels: LiteRT's default (XNNPACK), or TFLite's builtin or reference kernels.
    #[arg(long, value_enum, default_value_t = Kernels::Xnnpack)]
    kernels: Kernels,
    /// Also fetch these subgraph-0 tensors (comma-separated indices).
    #[arg(long, value_delimiter = ',')]
    tensors: Vec<usize>,
    /// Show LiteRT's own log on stderr.
    #[arg(long)]
    litert_log: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kernels {
    Xnnpack,
    Builtin,
    Reference,
}

pub fn run(a: Args) -> Result<()> {
    let lite = LiteRt::load(&LoadOptions {
        lib: a.litert_lib.clone(),
        python: None,
        log: if a.litert_log {
            RuntimeLog::Info
        } else {
            RuntimeLog::Silent
        },
    })?;
    log::info!(
        "LiteRT {} from {} ({})",
        lite.version(),
        lite.library_path().display(),
        lite.origin()
    );
    let opts = OpenOptions {
        kernels: match a.kernels {
            Kernels::Xnnpack => CpuKernels::Xnnpack,
            Kernels::Builtin => CpuKernels::Builtin,
            Kernels::Reference => CpuKernels::Reference,
        },
        num_threads: None,
    };
    let model = tflquant::read_path(&a.model)?;
    let sg = model
        .subgraphs
        .first()
        .ok_or_else(|| Error::Usage(format!("{}: no subgraphs", a.model.display())))?;
    let given = data::read_npz(&a.inputs)?;
    let mut inputs: Vec<Array> = Vec::with_capacity(sg.inputs.len());
    for (i, &t) in sg.inputs.iter().enumerate() {
        let name = usize::try_from(t)
            .ok()
            .and_then(|t| sg.tensors.get(t))
            .map(|t| t.name.as_str())
            .unwrap_or("");
        let key = format!("input_{i}");
        let a_in = given
            .iter()
            .find(|(k, _)| *k == key || (!name.is_empty() && k == name))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{}: no array `{key}` or `{name}` for input {i}",
                    a.inputs.display()
                ))
            })?;
        inputs.push(a_in.1.clone());
    }
    let (outputs, tensors) = if a.tensors.is_empty() {
        let mut cm = lite.open(&a.model, &opts)?;
        (cm.run_samples(&inputs)?, Vec::new())
    } else {
        let run = lite.run_with_tensors(&model, &a.tensors, &inputs, &opts)?;
        (run.outputs, run.tensors)
    };
    let mut out: Vec<(String, Array)> = outputs
        .into_iter()
        .enumerate()
        .map(|(i, a)| (format!("output_{i}"), a))
        .collect();
    out.extend(
        a.tensors
            .iter()
            .zip(tensors)
            .map(|(t, a)| (format!("t{t}"), a)),
    );
    data::write_npz(&a.outputs, &out)?;
    log::info!("wrote {}", a.outputs.display());
    Ok(())
}
