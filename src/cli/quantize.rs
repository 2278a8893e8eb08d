//! `tflquant quantize IN -o OUT --mode MODE [options]`.

use std::path::PathBuf;

use tflquant::quant::{self, Mode, Options};
use tflquant::writer::{self, WriteOptions};
use tflquant::{Error, Result};

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
    /// `weight-int4` = packed int4 weights for FULLY_CONNECTED / EMBEDDING_LOOKUP.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// One scale per weight tensor instead of one per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// Leave weights with fewer elements float [default: 1024; 0 for float16].
    #[arg(long, value_name = "N")]
    min_elements: Option<u64>,
    /// Blockwise int4 (weight-int4 only): one float16 scale per block of N input values.
    #[arg(long, value_name = "N", value_parser = parse_block_size)]
    block_size: Option<usize>,
    /// Write a JSON report of every tensor changed and every weight left float (`-` for stdout).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    #[command(flatten)]
    validate: super::compare::ValidateArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Dynamic,
    Float16,
    WeightInt8,
    WeightInt4,
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

pub fn run(a: Args) -> Result<()> {
    let mode = match a.mode {
        ModeArg::Dynamic => Mode::Dynamic,
        ModeArg::Float16 => Mode::Float16,
        ModeArg::WeightInt8 => Mode::WeightInt8,
        ModeArg::WeightInt4 => Mode::WeightInt4,
    };
    if a.block_size.is_some() && mode != Mode::WeightInt4 {
        return Err(Error::Usage(format!(
            "--block-size applies to --mode weight-int4 only (got --mode {}); drop --block-size or use --mode weight-int4",
            mode.name()
        )));
    }
    let opts = Options {
        mode,
        per_tensor: a.per_tensor,
        min_elements: a.min_elements,
        block_size: a.block_size,
    };
    let model = tflquant::read_path(&a.input)?;
    let (out, mut report) = quant::quantize(&model, &opts)?;
    writer::write_path(&out, &a.output, &WriteOptions::default())?;
    report.input_bytes = file_len(&a.input);
    report.output_bytes = file_len(&a.output);
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
    let stdout_taken = a.report.as_ref().is_some_and(|p| p.as_os_str() == "-");
    super::compare::validate(&a.validate, &a.input, &a.output, stdout_taken)
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
