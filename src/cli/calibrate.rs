//! `tflquant calibrate MODEL --data DATA -o ranges.json [--observer minmax]`: per-tensor
//! ranges over calibration samples. Also home of the sample-data flags shared with
//! `run` ([`DataArgs`]).

use std::io::IsTerminal;
use std::path::PathBuf;

use tflquant::calib::{
    self, ChannelOrder, ImageOptions, Normalize, ObserverKind, SampleOptions, Samples,
};
use tflquant::{Error, Result};

/// Where samples come from and how images are turned into inputs.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// Use at most N samples.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Images: subtract this mean from pixels in 0..255 (one value or one per channel,
    /// comma-separated), then divide by --std.
    #[arg(long, value_delimiter = ',', num_args = 1.., requires = "std", conflicts_with_all = ["scale", "offset"], allow_negative_numbers = true)]
    pub mean: Option<Vec<f32>>,
    /// Images: divide by this after subtracting --mean (one value or one per channel).
    #[arg(long, value_delimiter = ',', num_args = 1.., requires = "mean", allow_negative_numbers = true)]
    pub std: Option<Vec<f32>>,
    /// Images: value = pixel × scale + offset (default 1/255 and 0, i.e. [0, 1]).
    #[arg(long, allow_negative_numbers = true)]
    pub scale: Option<f32>,
    /// Images: see --scale.
    #[arg(long, allow_negative_numbers = true)]
    pub offset: Option<f32>,
    /// Images: channel order RGB (the default).
    #[arg(long, conflicts_with = "bgr")]
    pub rgb: bool,
    /// Images: channel order BGR.
    #[arg(long)]
    pub bgr: bool,
    /// Worker threads for the kernels (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub state: StateArgs,
}

// ---- stateful models (issue #20) ---------------------------------------------------

/// When a stateful model's state (resource variables, variable tensors) starts again.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// Stateful models: `auto` (default: the samples are one stream for models with
    /// resource variables, independent for others), `every` (reset before every
    /// sample), `never` (one stream), or N (reset every N samples, e.g. frames per
    /// utterance). An .npz may also hold a `sequence_id` array (one integer per sample):
    /// the state is reset wherever it changes.
    #[arg(long, value_name = "auto|every|never|N", default_value = "auto")]
    pub reset_state: String,
    /// Calibration of a stateful model whose samples form one stream (state flows from
    /// sample to sample), `--observer minmax`: `extrapolate` (default) widens each range
    /// by the gap between the two largest maxima of blocks as long as the stream's
    /// correlation (consecutive frames share their extremes: n frames see about as far
    /// as n / block independent samples); `seen` keeps the range seen (TF's calibrator).
    /// See README.
    #[arg(long, value_name = "extrapolate|seen", default_value = "extrapolate")]
    pub stream_ranges: String,
}

impl StateArgs {
    pub fn policy(&self) -> Result<tflquant::interp::ResetState> {
        self.reset_state
            .parse()
            .map_err(|e: Error| Error::Usage(format!("--reset-state: {e}")))
    }

    pub fn stream_ranges(&self) -> Result<calib::StreamRanges> {
        self.stream_ranges.parse()
    }
}

// -------------------------------------------------------------------------------------

impl DataArgs {
    pub fn sample_options(&self) -> Result<SampleOptions> {
        let normalize = match (&self.mean, &self.std) {
            (Some(m), Some(s)) => Normalize::MeanStd {
                mean: m.clone(),
                std: s.clone(),
            },
            _ => Normalize::ScaleOffset {
                scale: self.scale.unwrap_or(1.0 / 255.0),
                offset: self.offset.unwrap_or(0.0),
            },
        };
        Ok(SampleOptions {
            reset: self.state.policy()?,
            max_samples: self.samples,
            image: ImageOptions {
                normalize,
                channels: if self.bgr {
                    ChannelOrder::Bgr
                } else {
                    ChannelOrder::Rgb
                },
            },
        })
    }

    /// Sizes the global thread pool (once per process).
    pub fn apply_threads(&self) -> Result<()> {
        if let Some(n) = self.threads {
            if n == 0 {
                return Err(Error::Usage("--threads must be at least 1".into()));
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .map_err(|e| Error::Internal(format!("thread pool: {e}")))?;
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Float model (.tflite).
    model: PathBuf,
    /// Samples: .npy (single input), .npz (one array per input, keyed by input name or
    /// input_0, input_1, ...), or a directory of PNG/JPEG images.
    #[arg(long)]
    data: PathBuf,
    /// Where to write the ranges (JSON).
    #[arg(short, long)]
    output: PathBuf,
    /// minmax (default), extrapolate[:G] (minmax widened by G × the gap to the second most
    /// extreme per-sample value), ema:C (moving average, e.g. ema:0.95), percentile:P (e.g.
    /// percentile:99.99), mse, entropy, auto (per tensor the best of minmax, percentile:99.99
    /// and mse on its histogram; see README).
    #[arg(long, default_value = "minmax")]
    observer: String,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    calib_runtime: super::calib_runtime::CalibRuntimeArgs,
}

/// A progress bar on stderr, hidden when -q is given or stderr is no terminal.
pub fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let quiet = log::max_level() < log::LevelFilter::Warn;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} samples [{elapsed_precise} < {eta_precise}]",
    ) {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Logs the ops that took the most time (with -v).
pub fn log_timings(interp: &tflquant::interp::Interpreter) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let mut t = interp.timings();
    let total: f64 = t.iter().map(|x| x.total.as_secs_f64()).sum();
    t.sort_by_key(|x| std::cmp::Reverse(x.total));
    log::info!("per-op time (total {:.3} s):", total);
    for x in t.iter().filter(|x| x.calls > 0) {
        log::info!(
            "  subgraph {} op {:>3} {:<24} {:>6} calls {:>10.3} ms {:>5.1}%",
            x.subgraph,
            x.op,
            x.name,
            x.calls,
            x.total.as_secs_f64() * 1e3,
            100.0 * x.total.as_secs_f64() / total.max(1e-12)
        );
    }
}

/// Calibrates `model` over the samples of `data` with a progress bar; shared by
/// `calibrate` and `quantize --calibration`. Also hands back the float outputs `keep`
/// asks for (see [`calib::KeepOutputs`]).
pub fn calibrate_model(
    model: &tflquant::Model,
    data: &std::path::Path,
    data_args: &DataArgs,
    observer: &str,
    keep: calib::KeepOutputs,
) -> Result<(calib::Ranges, Option<calib::FloatOutputs>)> {
    let kind: ObserverKind = observer.parse()?;
    let samples = Samples::open(data, model, &data_args.sample_options()?)?;
    let total = samples.len();
    if total == 0 {
        return Err(Error::Data(format!("{}: no samples", data.display())));
    }
    let mut c = calib::Calibrator::new(model, kind)?;
    c.set_stream_ranges(data_args.state.stream_ranges()?);
    c.keep_outputs(keep);
    c.interpreter()
        .set_timing(log::log_enabled!(log::Level::Info));
    let pb = progress_bar(total, "calibrating");
    c.add_samples(samples, &mut |_, _| pb.inc(1))?;
    pb.finish_and_clear();
    log_timings(c.interpreter());
    Ok((c.ranges(), c.take_outputs()))
}

pub fn run(a: Args) -> Result<()> {
    a.data_args.apply_threads()?;
    let model = tflquant::read_path(&a.model)?;
    let ranges = super::calib_runtime::calibrate(
        &model,
        &a.data,
        &a.data_args,
        &a.observer,
        &a.calib_runtime,
        calib::KeepOutputs::default(),
    )?
    .ranges;
    ranges.save(&a.output)?;
    log::info!(
        "wrote {} ranges ({} samples, observer {}) to {}",
        ranges.tensors.len(),
        ranges.samples,
        ranges.observer,
        a.output.display()
    );
    Ok(())
}
