//! `tflquant inspect MODEL [--tensors] [--json]`.

use std::path::PathBuf;

use serde::Serialize;
use tflquant::inspect::Report;
use tflquant::{Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Model to inspect (.tflite).
    model: PathBuf,
    /// One row per tensor: index, name, dtype, shape, bytes, quantization, producer.
    #[arg(long)]
    tensors: bool,
    /// Everything, machine-readable (stable key order; per-axis parameters in full).
    #[arg(long, conflicts_with = "tensors")]
    json: bool,
}

/// The JSON document: the file, then the model report.
#[derive(Serialize)]
struct JsonOut<'a> {
    file: String,
    file_bytes: u64,
    #[serde(flatten)]
    report: &'a Report,
}

pub fn run(a: Args) -> Result<()> {
    let model = tflquant::read_path(&a.model)?;
    let report = Report::new(&model);
    if a.json || a.tensors {
        // The summary shows warnings itself; the other forms leave them to stderr.
        for w in &report.warnings {
            super::status(&format!("warning: {w}"));
        }
    }
    if a.json {
        let file_bytes = std::fs::metadata(&a.model)
            .map_err(|e| Error::Io {
                path: a.model.clone(),
                source: e,
            })?
            .len();
        let out = JsonOut {
            file: a.model.display().to_string(),
            file_bytes,
            report: &report,
        };
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| Error::Internal(format!("rendering JSON: {e}")))?;
        super::print_out(&format!("{text}\n"))
    } else if a.tensors {
        super::print_out(&report.render_tensors())
    } else {
        let file_bytes = std::fs::metadata(&a.model).map(|m| m.len()).unwrap_or(0);
        super::print_out(&format!(
            "model           {} ({})\n{}",
            a.model.display(),
            tflquant::inspect::human_bytes(file_bytes),
            report.render_summary()
        ))
    }
}
