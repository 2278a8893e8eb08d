//! `tflquant._native`: the Rust side of the `tflquant` Python package (built by maturin
//! from `pyproject.toml`; the Python side is `python/tflquant/__init__.py`).
//!
//! Four functions mirror the command line — `inspect`, `calibrate`, `quantize`, `compare` —
//! and return the command's JSON document as text (`inspect --json`, `ranges.json`,
//! `quantize --report`, `compare --json`), which the Python side turns into a dict.
//!
//! Keyword options are listed once, in [`OPTIONS`]: name (the command line's flag with
//! `_` for `-`), the functions that take it, and the field of the library's options it
//! sets. Adding an option is one line there.
//!
//! Data (`calibration=`, `data=`, `validate=`) is a path, read by the library as the
//! command line reads it, or a stream: a Python iterator the Python side builds from an
//! array, a dict of arrays or any iterable, yielding one sample at a time as a list of
//! `(key or None, dtype name, shape, little-endian bytes)`. Each sample is converted
//! with [`tflquant::calib::sample_from_arrays`] (the checks and messages of the file
//! readers), run and dropped before the next is pulled: memory does not grow with N.
//!
//! Errors: invalid input or usage (the command line's exit code 2) is `ValueError`,
//! an I/O failure `OSError`, an internal error `RuntimeError`; the message is the
//! library's.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use serde::Serialize;

use tflquant::calib::{
    self, ChannelOrder, ImageOptions, InputSpec, Normalize, ObserverKind, Ranges, SampleArray,
    SampleOptions, Samples,
};
use tflquant::compare::{self, Comparison, Runtime, SortKey};
use tflquant::fb::TensorType;
use tflquant::interp::Value;
use tflquant::interp::value::Data;
use tflquant::litert::{LoadOptions, OpenOptions};
use tflquant::quant::{self, Mode, integer::Interface};
use tflquant::writer::{self, WriteOptions};
use tflquant::{Error, Model};

/// A library error as a Python exception carrying the same message (option errors
/// name the keyword arguments, as the command line names its flags).
fn py_err(e: Error) -> PyErr {
    let msg = match &e {
        Error::Option(o) => explain_option_error(o),
        e => e.to_string(),
    };
    match e {
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Internal(_) | Error::InvalidAfterPass { .. } => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

trait OrPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> OrPy<T> for tflquant::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(py_err)
    }
}

/// The Python text of a library option error: keyword names where the package takes
/// the option, the library's own words otherwise.
fn explain_option_error(e: &quant::OptionError) -> String {
    use quant::OptionError as O;
    match e {
        O::BlockSize { n, .. } => format!(
            "block_size={n}: blockwise quantization takes 32, 64, 128 or 256 and only \
             applies to mode=\"weight-int4\""
        ),
        O::QatWithoutFakeQuant => {
            "mode=\"qat\": the model has no QUANTIZE→DEQUANTIZE pairs, FAKE_QUANT operators \
             or int8 weights behind DEQUANTIZE; quantize a float model with mode=\"int8\" \
             and calibration=DATA instead"
                .into()
        }
        O::MissingRanges { mode } => {
            format!("mode={mode:?} needs calibration data: pass calibration=DATA")
        }
        e => e.to_string(),
    }
}

fn usage(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Which function takes an option.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Func {
    Calibrate,
    Quantize,
    Compare,
}
use Func::{Calibrate as C, Compare as X, Quantize as Q};

impl Func {
    fn name(self) -> &'static str {
        match self {
            C => "calibrate",
            Q => "quantize",
            X => "compare",
        }
    }
}

/// Everything the keyword options set; the library's options structs where they exist.
struct Settings {
    /// `samples=` and the image options (`mean`, `std`, `scale`, `offset`, `bgr`) are
    /// folded into `data.image` by [`Settings::finish`].
    data: SampleOptions,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
    scale: Option<f32>,
    offset: Option<f32>,
    rgb: bool,
    bgr: bool,
    threads: Option<usize>,
    quiet: bool,
    observer: String,
    quant: quant::Options,
    ranges: Option<PathBuf>,
    interface: String,
    bias: Option<String>,
    validate: Option<Py<PyAny>>,
    validate_runtime: String,
    html: Option<PathBuf>,
    runtime: String,
    tensors: bool,
    sort: String,
    top: Option<usize>,
    litert_lib: Option<PathBuf>,
    allow_larger: bool,
}

impl Default for Settings {
    /// The command line's defaults.
    fn default() -> Self {
        Settings {
            data: SampleOptions::default(),
            mean: None,
            std: None,
            scale: None,
            offset: None,
            rgb: false,
            bgr: false,
            threads: None,
            quiet: false,
            observer: "minmax".into(),
            quant: quant::Options::new(Mode::Dynamic),
            ranges: None,
            interface: "float".into(),
            bias: None,
            validate: None,
            validate_runtime: "reference".into(),
            html: None,
            runtime: "reference".into(),
            tensors: false,
            sort: "local".into(),
            top: None,
            litert_lib: None,
            allow_larger: false,
        }
    }
}

type Setter = fn(&mut Settings, &Bound<'_, PyAny>) -> PyResult<()>;

/// `set!(a.b)`: the option's value, converted, goes to `settings.a.b`.
macro_rules! set {
    ($($field:ident).+) => {
        |s, v| {
            s.$($field).+ = v.extract()?;
            Ok(())
        }
    };
}

const DATA: &[Func] = &[C, Q, X];

/// Every keyword option: name, functions taking it, where it goes. Names and defaults
/// are the command line's (`--min-elements N` is `min_elements=N`).
const OPTIONS: &[(&str, &[Func], Setter)] = &[
    // Data options (`calibrate`, `quantize --calibration/--validate`, `compare --data`).
    ("samples", DATA, set!(data.max_samples)),
    ("mean", DATA, set!(mean)),
    ("std", DATA, set!(std)),
    ("scale", DATA, set!(scale)),
    ("offset", DATA, set!(offset)),
    ("rgb", DATA, set!(rgb)),
    ("bgr", DATA, set!(bgr)),
    ("threads", DATA, set!(threads)),
    ("quiet", DATA, set!(quiet)),
    ("reset_state", DATA, |s, v| {
        // "auto", "every", "never" or a number of samples, as --reset-state.
        let text = match v.extract::<usize>() {
            Ok(n) => n.to_string(),
            Err(_) => v.extract::<String>()?,
        };
        s.data.reset = text.parse().map_err(py_err)?;
        Ok(())
    }),
    // Calibration.
    ("observer", &[C, Q], set!(observer)),
    // Quantization.
    ("per_tensor", &[Q], set!(quant.per_tensor)),
    ("min_elements", &[Q], set!(quant.min_elements)),
    ("block_size", &[Q], set!(quant.block_size)),
    ("ranges", &[Q], set!(ranges)),
    ("interface", &[Q], set!(interface)),
    ("strict", &[Q], set!(quant.strict)),
    ("allow_larger", &[Q], set!(allow_larger)),
    ("bias", &[Q], set!(bias)),
    ("validate", &[Q], |s, v| {
        s.validate = (!v.is_none()).then(|| v.clone().unbind());
        Ok(())
    }),
    ("validate_runtime", &[Q], set!(validate_runtime)),
    ("html", &[Q, X], set!(html)),
    // Comparison.
    ("runtime", &[X], set!(runtime)),
    ("tensors", &[X], set!(tensors)),
    ("sort", &[X], set!(sort)),
    ("top", &[X], set!(top)),
    ("litert_lib", &[X, Q], set!(litert_lib)),
];

impl Settings {
    /// Reads the keyword options of `func`; an unknown one is a `TypeError`, as in Python.
    fn from_kwargs(func: Func, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Settings> {
        let mut s = Settings::default();
        let Some(kwargs) = kwargs else {
            return Ok(s);
        };
        for (k, v) in kwargs.iter() {
            let name: String = k.extract()?;
            let Some((_, _, setter)) = OPTIONS
                .iter()
                .find(|(n, funcs, _)| *n == name && funcs.contains(&func))
            else {
                let known: Vec<&str> = OPTIONS
                    .iter()
                    .filter(|(_, f, _)| f.contains(&func))
                    .map(|(n, _, _)| *n)
                    .collect();
                return Err(PyTypeError::new_err(format!(
                    "{}() got an unexpected keyword argument '{name}'; it takes {}",
                    func.name(),
                    known.join(", ")
                )));
            };
            if v.is_none() {
                continue; // None = the default, as an absent flag
            }
            setter(&mut s, &v).map_err(|e| {
                let got = v
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                PyTypeError::new_err(format!("{name}={}: {e} (got {got})", repr(&v)))
            })?;
        }
        s.finish()?;
        Ok(s)
    }

    /// Folds the image options into `data.image` and sizes the thread pool.
    fn finish(&mut self) -> PyResult<()> {
        self.data.image = ImageOptions {
            normalize: match (&self.mean, &self.std) {
                (Some(m), Some(s)) => Normalize::MeanStd {
                    mean: m.clone(),
                    std: s.clone(),
                },
                (None, None) => Normalize::ScaleOffset {
                    scale: self.scale.unwrap_or(1.0 / 255.0),
                    offset: self.offset.unwrap_or(0.0),
                },
                _ => return Err(usage("mean and std go together: give both")),
            },
            channels: if self.bgr {
                ChannelOrder::Bgr
            } else {
                ChannelOrder::Rgb
            },
        };
        if self.rgb && self.bgr {
            return Err(usage("rgb and bgr exclude each other"));
        }
        if self.mean.is_some() && (self.scale.is_some() || self.offset.is_some()) {
            return Err(usage(
                "mean/std and scale/offset exclude each other: normalise images one way",
            ));
        }
        if let Some(n) = self.threads {
            if n == 0 {
                return Err(usage("threads must be at least 1"));
            }
            // The pool is global: the first call that asks for a size sets it.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
        Ok(())
    }

    fn runtime(&self, value: &str, name: &str) -> PyResult<Runtime> {
        match value {
            "reference" => Ok(Runtime::Reference),
            "litert" => Ok(Runtime::LiteRt),
            v => Err(usage(format!(
                "{name}={v:?}: use \"reference\" (tflquant's interpreter) or \"litert\" (the official runtime)"
            ))),
        }
    }

    fn compare_options(&self, runtime: Runtime, tensors: bool) -> compare::Options {
        compare::Options {
            runtime,
            litert: LoadOptions {
                lib: self.litert_lib.clone(),
                ..Default::default()
            },
            open: OpenOptions {
                num_threads: self.threads.and_then(|n| u32::try_from(n).ok()),
                ..Default::default()
            },
            tensors,
            reset: self.data.reset,
        }
    }
}

fn repr(v: &Bound<'_, PyAny>) -> String {
    v.repr().map(|r| r.to_string()).unwrap_or_default()
}

/// Samples: a path, or a stream built by the Python side.
enum Source<'py> {
    Path(PathBuf),
    /// An iterator of samples, its length when known, and what to call it in messages.
    Stream {
        iter: Bound<'py, PyAny>,
        len: Option<usize>,
        what: String,
    },
}

impl<'py> Source<'py> {
    fn from_py(obj: &Bound<'py, PyAny>) -> PyResult<Source<'py>> {
        if let Ok(t) = obj.cast::<PyTuple>()
            && t.len() == 4
            && t.get_item(0)?
                .extract::<String>()
                .is_ok_and(|k| k == "stream")
        {
            return Ok(Source::Stream {
                iter: t.get_item(1)?,
                len: t.get_item(2)?.extract()?,
                what: t.get_item(3)?.extract()?,
            });
        }
        Ok(Source::Path(obj.extract()?))
    }

    fn describe(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Stream { what, .. } => what.clone(),
        }
    }
}

/// NumPy's dtype name → the tensor type of its elements.
fn element_type(name: &str) -> Option<TensorType> {
    Some(match name {
        "float32" => TensorType::Float32,
        "float16" => TensorType::Float16,
        "float64" => TensorType::Float64,
        "int8" => TensorType::Int8,
        "uint8" => TensorType::Uint8,
        "int16" => TensorType::Int16,
        "int32" => TensorType::Int32,
        "uint32" => TensorType::Uint32,
        "int64" => TensorType::Int64,
        "bool" => TensorType::Bool,
        _ => return None,
    })
}

/// One sample from the stream: `[(key, dtype, shape, bytes), ...]`.
fn sample_arrays(item: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<SampleArray>> {
    let mut out = Vec::new();
    for a in item.try_iter()? {
        let a = a?;
        let (key, dtype, shape, bytes): (Option<String>, String, Vec<usize>, Bound<'_, PyBytes>) =
            a.extract()?;
        let Some(t) = element_type(&dtype) else {
            return Err(usage(format!(
                "{what}: element type {dtype} is not supported (use float32, or the input's integer type)"
            )));
        };
        let Some(data) = Data::from_le_bytes(t, bytes.as_bytes()) else {
            return Err(usage(format!(
                "{what}: {} bytes are not a whole number of {dtype} elements",
                bytes.as_bytes().len()
            )));
        };
        out.push(SampleArray { key, shape, data });
    }
    Ok(out)
}

/// A progress bar on stderr when it is a terminal and `quiet` is not set.
fn progress_bar(len: Option<usize>, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (pb, template) = match len {
        Some(n) => (
            indicatif::ProgressBar::new(n as u64),
            "{msg} {bar:40} {pos}/{len} samples [{elapsed_precise} < {eta_precise}]",
        ),
        None => (
            indicatif::ProgressBar::no_length(),
            "{msg} {pos} samples [{elapsed_precise}]",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Feeds every sample of `data` to `f`, prepared for `first` and (for a comparison) for
/// `second`, one at a time. Returns the number of samples; none is an error.
fn feed(
    py: Python<'_>,
    data: &Source<'_>,
    first: &Model,
    second: Option<&Model>,
    s: &Settings,
    label: &str,
    mut f: impl FnMut(&[Value], &[Value]) -> tflquant::Result<()>,
) -> PyResult<usize> {
    let mut n = 0usize;
    match data {
        Source::Path(path) => {
            let (a, b) = match second {
                Some(q) => {
                    let (a, b) = compare::open_samples(first, q, path, &s.data).py()?;
                    (a, Some(b))
                }
                None => (Samples::open(path, first, &s.data).py()?, None),
            };
            if a.is_empty() {
                return Err(py_err(Error::Data(format!(
                    "{}: no samples",
                    path.display()
                ))));
            }
            let pb = progress_bar(Some(a.len()), label, s.quiet);
            let mut b = b;
            for x in a {
                let x = x.py()?;
                let y = match &mut b {
                    Some(b) => b
                        .next()
                        .ok_or_else(|| py_err(Error::Internal("sample streams differ".into())))?
                        .py()?,
                    None => Vec::new(),
                };
                f(&x, &y).py()?;
                n += 1;
                pb.inc(1);
                py.check_signals()?;
            }
            pb.finish_and_clear();
        }
        Source::Stream { iter, len, what } => {
            let specs_a = InputSpec::of_model(first);
            let specs_b = second.map(InputSpec::of_model);
            let total = match (len, s.data.max_samples) {
                (Some(l), Some(m)) => Some((*l).min(m)),
                (l, m) => l.or(m),
            };
            let pb = progress_bar(total, label, s.quiet);
            for item in iter.try_iter()? {
                if s.data.max_samples.is_some_and(|m| n >= m) {
                    break;
                }
                let item = item?;
                let at = format!("{what} sample {n}");
                let arrays = sample_arrays(&item, &at)?;
                let y = match &specs_b {
                    Some(sb) => calib::sample_from_arrays(sb, arrays.clone(), &at).py()?,
                    None => Vec::new(),
                };
                let x = calib::sample_from_arrays(&specs_a, arrays, &at).py()?;
                f(&x, &y).py()?;
                n += 1;
                pb.inc(1);
                py.check_signals()?;
            }
            pb.finish_and_clear();
            if n == 0 {
                return Err(py_err(Error::Data(format!("{what}: no samples"))));
            }
        }
    }
    Ok(n)
}

fn calibrate_model(
    py: Python<'_>,
    model: &Model,
    data: &Source<'_>,
    s: &Settings,
) -> PyResult<Ranges> {
    let kind: ObserverKind = s.observer.parse().py()?;
    let mut c = calib::Calibrator::new(model, kind).py()?;
    // Samples that form one stream: ranges as the command line's (README, streams).
    c.detect_stream();
    feed(py, data, model, None, s, "calibrating", |x, _| {
        c.add_sample(x)
    })?;
    Ok(c.ranges())
}

/// Runs a comparison of two model files over `data`.
fn run_comparison(
    py: Python<'_>,
    float: &Path,
    quant: &Path,
    data: &Source<'_>,
    s: &Settings,
    opts: &compare::Options,
) -> PyResult<(compare::Report, Model, Model)> {
    let fm = tflquant::read_path(float).py()?;
    let qm = tflquant::read_path(quant).py()?;
    let report = {
        let mut c = Comparison::new(&fm, &qm, opts).py()?;
        feed(py, data, &fm, Some(&qm), s, "comparing", |a, b| {
            c.add_sample(a, b)
        })?;
        c.report()
    };
    Ok((report, fm, qm))
}

fn write_html(
    path: &Path,
    report: &compare::Report,
    fm: &Model,
    qm: &Model,
    plan: Option<&quant::Report>,
) -> PyResult<()> {
    compare::html::write(
        path,
        &compare::html::HtmlInput {
            report,
            float_model: fm,
            quant_model: qm,
            plan,
        },
    )
    .py()
}

fn json<T: Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyRuntimeError::new_err(format!("rendering JSON: {e}")))
}

/// `tflquant inspect MODEL --json`.
#[pyfunction]
fn inspect(path: PathBuf) -> PyResult<String> {
    #[derive(Serialize)]
    struct Doc<'a> {
        file: String,
        file_bytes: u64,
        #[serde(flatten)]
        report: &'a tflquant::inspect::Report,
    }
    let model = tflquant::read_path(&path).py()?;
    let report = tflquant::inspect::Report::new(&model);
    let file_bytes = std::fs::metadata(&path)
        .map_err(|e| {
            py_err(Error::Io {
                path: path.clone(),
                source: e,
            })
        })?
        .len();
    json(&Doc {
        file: path.display().to_string(),
        file_bytes,
        report: &report,
    })
}

/// `tflquant calibrate MODEL --data DATA`: the ranges document.
#[pyfunction]
#[pyo3(signature = (model, data, **kwargs))]
fn calibrate(
    py: Python<'_>,
    model: PathBuf,
    data: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let s = Settings::from_kwargs(C, kwargs)?;
    let data = Source::from_py(data)?;
    let m = tflquant::read_path(&model).py()?;
    json(&calibrate_model(py, &m, &data, &s)?)
}

fn parse_mode(mode: &str) -> PyResult<Mode> {
    let all = [
        Mode::Dynamic,
        Mode::Float16,
        Mode::WeightInt8,
        Mode::WeightInt4,
        Mode::Int8,
        Mode::Int16x8,
        Mode::Qat,
    ];
    all.into_iter().find(|m| m.name() == mode).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|m| m.name()).collect();
        usage(format!("mode={mode:?} is not one of {}", names.join(", ")))
    })
}

/// Checks option combinations as the command line does (flags spelled as keywords).
fn quantize_options(mode: Mode, s: &mut Settings, calibration: bool) -> PyResult<()> {
    s.quant.mode = mode;
    if calibration && s.ranges.is_some() {
        return Err(usage("calibration and ranges exclude each other: give one"));
    }
    if mode.is_integer() {
        if s.quant.min_elements.is_some() {
            return Err(usage(
                "min_elements applies to the weight modes only; full-integer modes quantize every weight",
            ));
        }
        s.quant.interface = match (mode, s.interface.as_str()) {
            (_, "float") => Interface::Float,
            (Mode::Int8 | Mode::Qat, "int8") | (Mode::Int16x8, "int16") => Interface::Integer,
            (Mode::Int8 | Mode::Qat, "uint8") => Interface::Uint8,
            (Mode::Int8 | Mode::Qat, "int16") => {
                return Err(usage(
                    "interface=\"int16\" needs mode=\"int16x8\" (int8 models have int8 tensors)",
                ));
            }
            (Mode::Int16x8, "int8" | "uint8") => {
                return Err(usage(
                    "interface=\"int8\"/\"uint8\" needs mode=\"int8\" (int16x8 models have int16 tensors); use interface=\"int16\"",
                ));
            }
            (_, other) => {
                return Err(usage(format!(
                    "interface={other:?} is not one of float, int8, uint8, int16"
                )));
            }
        };
        s.quant.bias_bits = match (s.bias.as_deref(), mode) {
            (None, _) => None,
            (Some("int32"), _) => Some(32),
            (Some("int64"), Mode::Int16x8) => Some(64),
            (Some("int64"), _) => {
                return Err(usage(
                    "bias=\"int64\" applies to mode=\"int16x8\"; int8 models use int32 biases",
                ));
            }
            (Some(other), _) => {
                return Err(usage(format!("bias={other:?} is not one of int32, int64")));
            }
        };
    } else {
        let integer_only = [
            (calibration, "calibration"),
            (s.ranges.is_some(), "ranges"),
            (s.interface != "float", "interface"),
            (s.quant.strict, "strict"),
            (s.bias.is_some(), "bias"),
        ];
        if let Some((_, name)) = integer_only.iter().find(|(set, _)| *set) {
            return Err(usage(format!(
                "{name} applies to mode=\"int8\", \"int16x8\" and \"qat\" only (got mode={:?})",
                mode.name()
            )));
        }
    }
    if s.html.is_some() && s.validate.is_none() {
        return Err(usage(
            "html needs validate=DATA: the page shows the validation",
        ));
    }
    Ok(())
}

/// `tflquant quantize SRC -o DST --mode MODE ...`: the `--report` document, with the
/// one-line `summary` and, with `validate=`, the comparison as `validation`.
#[pyfunction]
#[pyo3(signature = (src, dst, mode, calibration=None, **kwargs))]
fn quantize(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    mode: &str,
    calibration: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let mut s = Settings::from_kwargs(Q, kwargs)?;
    let mode = parse_mode(mode)?;
    let calibration = calibration.filter(|c| !c.is_none());
    quantize_options(mode, &mut s, calibration.is_some())?;
    let model = tflquant::read_path(&src).py()?;
    if mode.is_integer() {
        s.quant.ranges = match (&s.ranges, calibration) {
            (Some(r), _) => Some(Ranges::load(r).py()?),
            (None, Some(c)) => {
                let data = Source::from_py(c)?;
                if mode == Mode::Qat {
                    // Calibrate the float graph the QAT pass leaves, so that indices line up.
                    let folded = quant::folded_for_calibration(&model, &s.quant).py()?;
                    Some(calibrate_model(py, &folded, &data, &s)?)
                } else {
                    Some(calibrate_model(py, &model, &data, &s)?)
                }
            }
            (None, None) => None,
        };
    }
    let (out, mut report) = quant::quantize(&model, &s.quant).py()?;
    writer::write_path(&out, &dst, &WriteOptions::default()).py()?;
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if report.check_size(len(&src), len(&dst), mode, s.allow_larger)
        && !report.size_check.as_ref().is_some_and(|c| c.allowed)
    {
        // As the command line: a weight mode that grew the model keeps nothing.
        let _ = std::fs::remove_file(&dst);
        return Err(usage(format!(
            "{}\n{} was not kept; pass allow_larger=True to keep a larger output, or choose another mode",
            report.growth_message(mode),
            dst.display()
        )));
    }
    // Through text, so that f32 values keep their shortest form, as in the CLI's report.
    let mut doc: serde_json::Value = serde_json::from_str(&json(&report)?)
        .map_err(|e| PyRuntimeError::new_err(format!("rendering the report: {e}")))?;
    if let serde_json::Value::Object(map) = &mut doc {
        map.insert("summary".into(), report.summary().into());
    }
    if let Some(v) = &s.validate {
        let v = v.bind(py).clone();
        let data = Source::from_py(&v)?;
        let runtime = s.runtime(&s.validate_runtime, "validate_runtime")?;
        let opts = s.compare_options(runtime, s.html.is_some());
        // validate= limits nothing: samples= is for the calibration set, as on the command line.
        let vs = Settings {
            data: SampleOptions {
                max_samples: None,
                ..s.data.clone()
            },
            quiet: s.quiet,
            ..Default::default()
        };
        let (cmp, fm, qm) = run_comparison(py, &src, &dst, &data, &vs, &opts).map_err(|e| {
            // The model is written; say so, as the command line does.
            if e.is_instance_of::<PyValueError>(py) {
                usage(format!(
                    "{} was written, but validate={} could not run: {}",
                    dst.display(),
                    data.describe(),
                    e.value(py)
                ))
            } else {
                e
            }
        })?;
        if let Some(path) = &s.html {
            write_html(path, &cmp, &fm, &qm, Some(&report))?;
        }
        if let serde_json::Value::Object(map) = &mut doc {
            let c: serde_json::Value = serde_json::from_str(&json(&cmp)?)
                .map_err(|e| PyRuntimeError::new_err(format!("rendering JSON: {e}")))?;
            map.insert("validation".into(), c);
        }
    }
    json(&doc)
}

/// `tflquant compare FLOAT QUANT --data DATA ... --json`.
#[pyfunction]
#[pyo3(name = "compare", signature = (float, quant, data, **kwargs))]
fn compare_models(
    py: Python<'_>,
    float: PathBuf,
    quant: PathBuf,
    data: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let s = Settings::from_kwargs(X, kwargs)?;
    let runtime = s.runtime(&s.runtime, "runtime")?;
    if s.litert_lib.is_some() && runtime != Runtime::LiteRt {
        return Err(usage(
            "litert_lib applies to runtime=\"litert\" only; add runtime=\"litert\"",
        ));
    }
    let sort = match s.sort.as_str() {
        "local" => SortKey::Local,
        "sqnr" => SortKey::Sqnr,
        v => return Err(usage(format!("sort={v:?}: use \"local\" or \"sqnr\""))),
    };
    if s.top == Some(0) {
        return Err(usage("top must be at least 1"));
    }
    let data = Source::from_py(data)?;
    let opts = s.compare_options(runtime, s.tensors || s.html.is_some());
    let (mut report, fm, qm) = run_comparison(py, &float, &quant, &data, &s, &opts)?;
    report.sort_tensors(sort);
    if let Some(path) = &s.html {
        write_html(path, &report, &fm, &qm, None)?;
        if !s.tensors {
            report.tensors = None;
            report.tensors_compared = None;
            report.quant_activations = None;
        }
    }
    if let Some(n) = s.top {
        report.keep_worst(n);
    }
    json(&report)
}

/// The option names each function takes, for the Python side's documentation checks.
#[pyfunction]
fn option_names(func: &str) -> Vec<&'static str> {
    OPTIONS
        .iter()
        .filter(|(_, f, _)| f.iter().any(|f| f.name() == func))
        .map(|(n, _, _)| *n)
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(calibrate, m)?)?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    m.add_function(wrap_pyfunction!(compare_models, m)?)?;
    m.add_function(wrap_pyfunction!(option_names, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
