//! Command-line front end: one module per subcommand; arguments become typed options
//! here and nowhere else.

mod calib_runtime;
mod calibrate;
mod compare;
mod convert;
mod explain;
mod inspect;
mod litert_run;
mod quantize;
mod run;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 failure while working (I/O error, internal error); \
2 invalid input or usage (bad flag, unreadable or malformed model, unsupported op, bad data).";

#[derive(Parser)]
#[command(name = "tflquant", version, about = "Read, inspect, rewrite and quantize TensorFlow Lite (LiteRT) models.", after_help = EXIT_CODES)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what is inside a model: summary, per-tensor table, or JSON.
    Inspect(inspect::Args),
    /// Quantize a float model: weights only (dynamic, float16, weight-int8, weight-int4), full
    /// integer from calibration data (int8, int16x8), or from quantization-aware training (qat).
    Quantize(Box<quantize::Args>),
    /// Read a model and write it back unchanged (identity rewrite).
    Convert(convert::Args),
    /// Run a model on samples with the reference interpreter; save or summarise outputs.
    Run(run::Args),
    /// Collect per-tensor ranges over calibration samples (ranges.json).
    Calibrate(calibrate::Args),
    /// Measure a quantized model's error against its float original, per output and per
    /// tensor (reference interpreter or LiteRT).
    Compare(compare::Args),
    /// Run a model on the official LiteRT runtime through its C API (a debugging aid).
    #[command(hide = true)]
    LitertRun(litert_run::Args),
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A status line on stderr (summaries, progress), suppressed by `-q`.
pub(crate) fn status(text: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{text}");
    }
}

/// Writes command output to stdout. A closed pipe (`tflquant inspect m | head`) is
/// not an error: the reader has what it wanted.
pub(crate) fn print_out(text: &str) -> tflquant::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(tflquant::Error::Io {
            path: "<stdout>".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("TFLQUANT_LOG")
        .format_timestamp(None)
        .init();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Quantize(a) => quantize::run(*a),
        Command::Convert(a) => convert::run(a),
        Command::LitertRun(a) => litert_run::run(a),
        Command::Run(a) => run::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Compare(a) => compare::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let e = explain::for_cli(e);
            let top = e.to_string();
            eprintln!("error: {top}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // Messages that already quote their cause do not repeat it.
                let text = s.to_string();
                if !top.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                source = s.source();
            }
            e.exit_code()
        }
    }
}
