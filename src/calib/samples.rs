//! Sample sources for calibration and `run`, streamed one sample at a time (memory does
//! not grow with the number of samples):
//!
//! * `.npy` for a single-input model: `[N, d1..dk]` where the input is `[1, d1..dk]`
//!   (the batch dimension of 1 implied), or `[N, 1, d1..dk]`;
//! * `.npz` with one such array per input, found by input tensor name, signature input
//!   name, or `input_0`, `input_1`… in input order (compressed archives are inflated to
//!   a temporary file, never to memory);
//! * a directory of PNG/JPEG images for a single NHWC input (C = 1 or 3), resized to the
//!   input size, normalised by `--mean/--std` or `--scale/--offset`, RGB or BGR.
//!
//! An `.npz` may also hold a `sequence_id` array (`[N]`, integers, one per sample) that
//! says which samples form one stream: a stateful model's state is reset where it
//! changes ([`Samples::sequence_ids`]; see [`crate::interp::state`]).
//!
//! Float samples for an int8/uint8/int16 input with quantization parameters are
//! quantized with them. Anything else that does not fit says what was expected and
//! what was found ([`Error::Data`], exit code 2), naming the file (and the archive
//! member) and, for what is wrong inside the data, the sample: an array with no samples,
//! an element type the input cannot take, a file that ends early, a NaN or infinite
//! value (it would become a NaN or infinite range, hence scale, in the model).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fb::{self, TensorType};
use crate::interp::state::{ResetState, SequenceIds};
use crate::interp::value::{self, Data, Value};
use crate::ir::{Model, QuantParams};

/// How image files become input values.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    pub normalize: Normalize,
    pub channels: ChannelOrder,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            normalize: Normalize::ScaleOffset {
                scale: 1.0 / 255.0,
                offset: 0.0,
            },
            channels: ChannelOrder::Rgb,
        }
    }
}

/// Pixel (0..=255) → input value.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalize {
    /// `(pixel - mean[c]) / std[c]`; one value or one per channel.
    MeanStd { mean: Vec<f32>, std: Vec<f32> },
    /// `pixel * scale + offset` (default: scale 1/255, offset 0, i.e. [0, 1]).
    ScaleOffset { scale: f32, offset: f32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// Options of a sample source.
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// Use at most this many samples.
    pub max_samples: Option<usize>,
    pub image: ImageOptions,
    /// Where a stateful model starts again from its initial state, in samples (besides
    /// changes of the `.npz`'s `sequence_id`); [`Samples::reset_policy`] hands it on.
    pub reset: ResetState,
}

/// What one model input expects.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub index: usize,
    pub tensor: usize,
    pub name: String,
    pub signature_name: Option<String>,
    pub dtype: TensorType,
    /// Shape signature (-1 = any size).
    pub shape: Vec<i64>,
    pub quant: Option<QuantParams>,
}

impl InputSpec {
    /// The inputs of subgraph 0.
    pub fn of_model(model: &Model) -> Vec<InputSpec> {
        let Some(sg) = model.subgraphs.first() else {
            return Vec::new();
        };
        let sig = model.signature_defs.iter().find(|s| s.subgraph_index == 0);
        sg.inputs
            .iter()
            .enumerate()
            .filter_map(|(i, &t)| {
                let ti = usize::try_from(t).ok()?;
                let tensor = sg.tensors.get(ti)?;
                let shape = match &tensor.shape_signature {
                    Some(s) if !s.is_empty() => s.iter().map(|&d| d as i64).collect(),
                    _ => tensor.shape.iter().map(|&d| d as i64).collect(),
                };
                Some(InputSpec {
                    index: i,
                    tensor: ti,
                    name: tensor.name.clone(),
                    signature_name: sig.and_then(|s| {
                        s.inputs
                            .iter()
                            .find(|m| m.tensor_index as usize == ti)
                            .and_then(|m| m.name.clone())
                    }),
                    dtype: tensor.dtype,
                    shape,
                    quant: tensor.quantized().cloned(),
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!("input {} ({:?})", self.index, self.name)
    }

    fn shape_text(&self) -> String {
        let d: Vec<String> = self
            .shape
            .iter()
            .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
            .collect();
        format!("[{}]", d.join(","))
    }

    fn fits(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .all(|(&d, &s)| s < 0 || d as i64 == s)
    }

    /// The per-sample value shape for data whose samples have `rest` (the data shape
    /// without its first axis); `None` if it does not fit.
    fn sample_shape(&self, rest: &[usize]) -> Option<Vec<usize>> {
        if self.fits(rest) {
            return Some(rest.to_vec());
        }
        let mut b = vec![1];
        b.extend_from_slice(rest);
        (matches!(self.shape.first(), Some(&1) | Some(&-1)) && self.fits(&b)).then_some(b)
    }

    fn numpy_dtype(&self) -> String {
        fb::dtype_name(self.dtype).to_lowercase()
    }

    /// `input 0 ("x") is float32 [1,8]: expected data of shape {a}8] or {b}1,8]`: the
    /// shapes that fit, without and with the batch dimension.
    fn expected(&self, a: &str, b: &str) -> String {
        let rest: Vec<String> = self
            .shape
            .iter()
            .skip(1)
            .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
            .collect();
        format!(
            "{} is {} {}: expected data of shape {a}{}] or {b}{}]",
            self.describe(),
            self.numpy_dtype(),
            self.shape_text(),
            rest.join(","),
            self.shape_text().trim_matches(['[', ']'])
        )
    }

    /// Data of type `data_t` fits this input: the same type, or float32 for a quantized
    /// integer input.
    fn check_dtype(&self, data_t: TensorType, what: &str) -> Result<()> {
        let quantizable = data_t == TensorType::Float32 && self.quant.is_some();
        if data_t == self.dtype || quantizable {
            return Ok(());
        }
        let hint = if data_t == TensorType::Float64 && self.dtype == TensorType::Float32 {
            " (use a.astype(np.float32))"
        } else {
            ""
        };
        Err(Error::Data(format!(
            "{what}: {} expects {} samples, got {}{hint}",
            self.describe(),
            self.numpy_dtype(),
            fb::dtype_name(data_t).to_lowercase()
        )))
    }

    /// The names an array for this input may have in an `.npz` (or a dict of arrays):
    /// the tensor name, the signature input name, `input_K`.
    /// "WHAT: no array for INPUT (looked for NAMES); HOLDER has HAVE": the error of a
    /// data source (a file, an in-memory sample) that has no array for this input.
    fn missing_array(&self, what: &str, holder: &str, have: &[String]) -> Error {
        let looked: Vec<String> = self
            .wanted_names()
            .iter()
            .map(|w| format!("{w:?}"))
            .collect();
        Error::Data(format!(
            "{what}: no array for {} (looked for {}); {holder} has {}",
            self.describe(),
            looked.join(", "),
            have.join(", ")
        ))
    }

    fn wanted_names(&self) -> Vec<String> {
        let mut wanted = vec![self.name.clone()];
        wanted.extend(self.signature_name.clone());
        wanted.push(format!("input_{}", self.index));
        wanted
    }

    /// Converts a sample's data to this input's type: same type, or float for a
    /// quantized integer input (quantized with its parameters).
    fn convert(&self, shape: Vec<usize>, data: Data, what: &str) -> Result<Value> {
        let v = Value::new(shape, data)
            .ok_or_else(|| Error::Internal(format!("{what}: sample size mismatch")))?;
        if v.dtype() == self.dtype {
            return Ok(v);
        }
        if let (Some(q), TensorType::Float32) = (&self.quant, v.dtype())
            && let Some(qv) = value::quantize(&v, q, self.dtype)
        {
            return Ok(qv);
        }
        Err(Error::Data(format!(
            "{what}: {} expects {} samples, got {}",
            self.describe(),
            self.numpy_dtype(),
            fb::dtype_name(v.dtype()).to_lowercase()
        )))
    }
}

/// Reads `n` elements at a time from an array file.
type ElementReader = Box<dyn FnMut(usize) -> std::io::Result<Data>>;

struct ArrayStream {
    read: ElementReader,
    what: String,
    /// Index of the next sample (for messages).
    index: usize,
    n: usize,
    per: usize,
    sample_shape: Vec<usize>,
    spec: InputSpec,
}

impl ArrayStream {
    fn open<R: Read + 'static>(
        npy: npyz::NpyFile<R>,
        what: String,
        spec: &InputSpec,
    ) -> Result<ArrayStream> {
        let (shape, kind, size, ts) = crate::data::npy_layout(&npy, &what)?;
        let expected = || spec.expected("[N,", "[N,");
        let Some((&n, rest)) = shape.split_first() else {
            return Err(Error::Data(format!("{what}: a scalar; {}", expected())));
        };
        if n == 0 {
            return Err(Error::Data(format!(
                "{what}: holds no samples (shape {shape:?}); {}",
                expected()
            )));
        }
        let Some(sample_shape) = spec.sample_shape(rest) else {
            return Err(Error::Data(format!(
                "{what}: got data of shape {shape:?} {}; {}",
                ts,
                expected()
            )));
        };
        let per: usize = rest.iter().product();
        macro_rules! reader {
            ($t:ty, $var:ident) => {{
                let mut r = npy
                    .data::<$t>()
                    .map_err(|e| Error::Data(format!("{what}: {e}")))?;
                Box::new(move |k: usize| {
                    let v: std::io::Result<Vec<$t>> = r.by_ref().take(k).collect();
                    Ok(Data::$var(v?))
                }) as ElementReader
            }};
        }
        use npyz::TypeChar as C;
        let little = matches!(npy.dtype(), npyz::DType::Plain(t) if t.endianness() == npyz::Endianness::Little);
        let read = match (kind, size) {
            // Little-endian float32 (numpy's default): whole samples read at once
            // and converted in one loop, not one element at a time.
            (C::Float, 4) if little => {
                let mut r = npy.into_inner();
                let mut bytes: Vec<u8> = Vec::new();
                Box::new(move |k: usize| {
                    // In bounded chunks: a header promising more than the file
                    // holds fails at its end, not by allocating the promise.
                    const CHUNK: usize = 1 << 20;
                    let mut v: Vec<f32> = Vec::with_capacity(k.min(1 << 24));
                    while v.len() < k {
                        let take = (k - v.len()).min(CHUNK);
                        bytes.resize(take * 4, 0);
                        r.read_exact(&mut bytes)?;
                        v.extend(
                            bytes
                                .chunks_exact(4)
                                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        );
                    }
                    Ok(Data::F32(v))
                }) as ElementReader
            }
            (C::Float, 4) => reader!(f32, F32),
            (C::Float, 8) => reader!(f64, F64),
            (C::Int, 1) => reader!(i8, I8),
            (C::Uint, 1) => reader!(u8, U8),
            (C::Int, 2) => reader!(i16, I16),
            (C::Int, 4) => reader!(i32, I32),
            (C::Uint, 4) => reader!(u32, U32),
            (C::Int, 8) => reader!(i64, I64),
            (C::Bool, 1) => reader!(bool, Bool),
            _ => {
                return Err(Error::Data(format!(
                    "{what}: element type {ts} not supported; {}",
                    expected()
                )));
            }
        };
        let data_t = match (kind, size) {
            (C::Float, 4) => TensorType::Float32,
            (C::Float, 8) => TensorType::Float64,
            (C::Int, 1) => TensorType::Int8,
            (C::Uint, 1) => TensorType::Uint8,
            (C::Int, 2) => TensorType::Int16,
            (C::Int, 4) => TensorType::Int32,
            (C::Uint, 4) => TensorType::Uint32,
            (C::Int, 8) => TensorType::Int64,
            _ => TensorType::Bool,
        };
        spec.check_dtype(data_t, &what)?;
        let s = ArrayStream {
            read,
            what,
            index: 0,
            n,
            per,
            sample_shape,
            spec: spec.clone(),
        };
        Ok(s)
    }

    fn next(&mut self) -> Result<Value> {
        let i = self.index;
        self.index += 1;
        let at = || format!("{}: sample {i} of {}", self.what, self.n);
        let data = (self.read)(self.per).map_err(|e| {
            let truncated = e.kind() == std::io::ErrorKind::UnexpectedEof;
            Error::Data(if truncated {
                format!("{}: the file ends early (truncated?)", at())
            } else {
                format!("{}: {e}", at())
            })
        })?;
        if data.len() != self.per {
            return Err(Error::Data(format!(
                "{}: the file ends early (truncated?)",
                at()
            )));
        }
        if let Some((j, x)) = first_non_finite(&data) {
            return Err(Error::Data(format!(
                "{}, element {j}: {x} ({}); samples must be finite: drop or repair it \
                 (e.g. a[np.isfinite(a).reshape(len(a), -1).all(axis=1)])",
                at(),
                self.spec.describe()
            )));
        }
        self.spec.convert(self.sample_shape.clone(), data, &at())
    }
}

/// The first NaN or infinite element of float data, with its index.
fn first_non_finite(data: &Data) -> Option<(usize, f64)> {
    match data {
        Data::F32(v) => v
            .iter()
            .position(|x| !x.is_finite())
            .map(|j| (j, v[j] as f64)),
        Data::F64(v) => v.iter().position(|x| !x.is_finite()).map(|j| (j, v[j])),
        _ => None,
    }
}

fn open_npy(path: &Path, spec: &InputSpec) -> Result<ArrayStream> {
    let f = BufReader::new(File::open(path).map_err(|e| Error::input(path, e))?);
    let npy = npyz::NpyFile::new(f)
        .map_err(|e| Error::Data(format!("{}: not a valid .npy file: {e}", path.display())))?;
    ArrayStream::open(npy, path.display().to_string(), spec)
}

/// Opens one member of an `.npz` as a stream of its own: stored members are read in
/// place, compressed ones are inflated into an anonymous temporary file first.
fn open_npz_member(path: &Path, name: &str, spec: &InputSpec) -> Result<ArrayStream> {
    let what = format!("{}[{name}]", path.display());
    let bad = |e: &dyn std::fmt::Display| Error::Data(format!("{what}: {e}"));
    let file = File::open(path).map_err(|e| Error::input(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| bad(&e))?;
    let member = format!("{name}.npy");
    let mut entry = zip.by_name(&member).map_err(|e| bad(&e))?;
    let reader: Box<dyn Read> = if entry.compression() == zip::CompressionMethod::Stored {
        let (start, size) = (entry.data_start(), entry.size());
        let mut f = File::open(path).map_err(|e| Error::input(path, e))?;
        f.seek(SeekFrom::Start(start)).map_err(|e| bad(&e))?;
        Box::new(BufReader::new(f.take(size)))
    } else {
        let mut tmp = tempfile::tempfile().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        std::io::copy(&mut entry, &mut tmp).map_err(|e| bad(&e))?;
        tmp.seek(SeekFrom::Start(0)).map_err(|e| bad(&e))?;
        Box::new(BufReader::new(tmp))
    };
    let npy = npyz::NpyFile::new(reader).map_err(|e| bad(&e))?;
    ArrayStream::open(npy, what, spec)
}

fn npz_names(path: &Path) -> Result<Vec<String>> {
    let f = BufReader::new(File::open(path).map_err(|e| Error::input(path, e))?);
    let z = npyz::npz::NpzArchive::new(f)
        .map_err(|e| Error::Data(format!("{}: not a valid .npz file: {e}", path.display())))?;
    Ok(z.array_names().map(String::from).collect())
}

enum Kind {
    Arrays(Vec<ArrayStream>),
    Images {
        files: Vec<PathBuf>,
        spec: Box<InputSpec>,
        opts: ImageOptions,
    },
}

/// Name of the optional `.npz` array of per-sample sequence ids.
pub const SEQUENCE_ID: &str = "sequence_id";

/// A stream of samples, one value per model input each.
pub struct Samples {
    kind: Kind,
    total: usize,
    next: usize,
    sequence_ids: Option<Vec<i64>>,
    reset: ResetState,
}

impl Samples {
    /// Opens `path` (.npy, .npz or a directory of images) for the inputs of `model`.
    pub fn open(path: &Path, model: &Model, opts: &SampleOptions) -> Result<Samples> {
        let specs = InputSpec::of_model(model);
        let meta = std::fs::metadata(path).map_err(|e| Error::input(path, e))?;
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let mut sequence_ids = None;
        let kind = if meta.is_dir() {
            let [spec] = specs.as_slice() else {
                return Err(Error::Data(format!(
                    "{}: an image directory feeds a single-input model; this one has {} inputs (use .npz)",
                    path.display(),
                    specs.len()
                )));
            };
            image_source(path, spec, &opts.image)?
        } else if ext == "npy" {
            let [spec] = specs.as_slice() else {
                return Err(Error::Data(format!(
                    "{}: a .npy file feeds a single-input model; this one has {} inputs (use .npz with one array per input)",
                    path.display(),
                    specs.len()
                )));
            };
            Kind::Arrays(vec![open_npy(path, spec)?])
        } else if ext == "npz" {
            let names = npz_names(path)?;
            let mut streams = Vec::new();
            let mut used = Vec::new();
            for spec in &specs {
                let wanted = spec.wanted_names();
                let found = wanted
                    .iter()
                    .find(|w| names.contains(w))
                    .cloned()
                    .or_else(|| (names.len() == 1 && specs.len() == 1).then(|| names[0].clone()));
                let Some(name) = found else {
                    let what = path.display().to_string();
                    return Err(spec.missing_array(&what, "the file", &names));
                };
                streams.push(open_npz_member(path, &name, spec)?);
                used.push(name);
            }
            if let Some(first) = streams.first() {
                for s in &streams {
                    if s.n != first.n {
                        return Err(Error::Data(format!(
                            "{}: {} holds {} samples but {} holds {}",
                            path.display(),
                            first.what,
                            first.n,
                            s.what,
                            s.n
                        )));
                    }
                }
            }
            if names.iter().any(|n| n == SEQUENCE_ID) && !used.iter().any(|n| n == SEQUENCE_ID) {
                let n = streams.first().map_or(0, |s| s.n);
                sequence_ids = Some(read_sequence_ids(path, n)?);
            }
            Kind::Arrays(streams)
        } else {
            return Err(Error::Usage(format!(
                "{}: calibration data must be a .npy or .npz file or a directory of images",
                path.display()
            )));
        };
        let available = match &kind {
            Kind::Arrays(s) => s.first().map_or(1, |s| s.n),
            Kind::Images { files, .. } => files.len(),
        };
        let total = opts.max_samples.map_or(available, |m| m.min(available));
        Ok(Samples {
            kind,
            total,
            next: 0,
            sequence_ids,
            reset: opts.reset,
        })
    }

    /// The `sequence_id` of every sample of an `.npz` that has one (in file order; as
    /// many as the file holds, also when `max_samples` yields fewer).
    pub fn sequence_ids(&self) -> Option<&[i64]> {
        self.sequence_ids.as_deref()
    }

    /// Where new sequences start, from [`Samples::sequence_ids`].
    pub fn sequences(&self) -> SequenceIds {
        SequenceIds::new(self.sequence_ids.clone())
    }

    /// The reset policy given in [`SampleOptions::reset`].
    pub fn reset_policy(&self) -> ResetState {
        self.reset
    }

    /// Number of samples this source yields.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Iterator for Samples {
    type Item = Result<Vec<Value>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some(match &mut self.kind {
            Kind::Arrays(streams) => streams.iter_mut().map(|s| s.next()).collect(),
            Kind::Images { files, spec, opts } => {
                load_image(&files[i], spec, opts).map(|v| vec![v])
            }
        })
    }
}

/// The `sequence_id` array of an `.npz`: integers, shape `[N]` for N samples.
fn read_sequence_ids(path: &Path, n: usize) -> Result<Vec<i64>> {
    let what = format!("{}[{SEQUENCE_ID}]", path.display());
    let a = crate::data::read_npz_member(path, SEQUENCE_ID)?
        .ok_or_else(|| Error::Internal(format!("{what}: listed but missing")))?;
    if a.shape != [n] {
        return Err(Error::Data(format!(
            "{what}: expected one id per sample, shape [{n}], got {:?}",
            a.shape
        )));
    }
    use crate::data::ArrayData as D;
    Ok(match a.data {
        D::I8(v) => v.into_iter().map(i64::from).collect(),
        D::U8(v) => v.into_iter().map(i64::from).collect(),
        D::I16(v) => v.into_iter().map(i64::from).collect(),
        D::U16(v) => v.into_iter().map(i64::from).collect(),
        D::I32(v) => v.into_iter().map(i64::from).collect(),
        D::U32(v) => v.into_iter().map(i64::from).collect(),
        D::I64(v) => v,
        other => {
            return Err(Error::Data(format!(
                "{what}: sequence ids must be integers, got {}",
                other.dtype_name()
            )));
        }
    })
}

/// One input's array of one sample held in memory (the Python package's generators,
/// arrays and dicts): no sample axis, `key` names the input as in an `.npz` (tensor
/// name, signature input name or `input_K`), `None` for the input at its position.
#[derive(Debug, Clone)]
pub struct SampleArray {
    pub key: Option<String>,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Turns the arrays of one in-memory sample into the model's input values, with the
/// checks and messages of the file sources: every input needs an array (by key, else
/// by position), of the input's shape with or without its batch dimension of 1, of its
/// type (float32 is quantized for a quantized integer input). `what` names the sample
/// in messages (`calibration sample 3`).
pub fn sample_from_arrays(
    specs: &[InputSpec],
    arrays: Vec<SampleArray>,
    what: &str,
) -> Result<Vec<Value>> {
    let keyed = arrays.iter().any(|a| a.key.is_some());
    if !keyed && arrays.len() != specs.len() {
        return Err(Error::Data(format!(
            "{what}: the model has {} inputs, the sample has {} arrays (give one array per \
             input, in input order, or a dict keyed by input name)",
            specs.len(),
            arrays.len()
        )));
    }
    let names: Vec<String> = arrays.iter().filter_map(|a| a.key.clone()).collect();
    let mut arrays: Vec<Option<SampleArray>> = arrays.into_iter().map(Some).collect();
    let mut values = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let slot = if keyed {
            let wanted = spec.wanted_names();
            let found = wanted
                .iter()
                .find_map(|w| {
                    arrays
                        .iter()
                        .position(|a| a.as_ref().and_then(|a| a.key.as_ref()) == Some(w))
                })
                .or_else(|| (arrays.len() == 1 && specs.len() == 1).then_some(0));
            let Some(k) = found else {
                return Err(spec.missing_array(what, "the sample", &names));
            };
            k
        } else {
            i
        };
        let Some(a) = arrays.get_mut(slot).and_then(Option::take) else {
            return Err(Error::Data(format!(
                "{what}: {} is given twice",
                spec.describe()
            )));
        };
        let data_t = a.data.dtype();
        let Some(shape) = spec.sample_shape(&a.shape) else {
            return Err(Error::Data(format!(
                "{what}: got a sample of shape {:?} {}; {}",
                a.shape,
                fb::dtype_name(data_t).to_lowercase(),
                spec.expected("[", "[")
            )));
        };
        if shape.iter().product::<usize>() != a.data.len() {
            return Err(Error::Data(format!(
                "{what}: shape {:?} holds {} elements, the data {}",
                a.shape,
                shape.iter().product::<usize>(),
                a.data.len()
            )));
        }
        spec.check_dtype(data_t, what)?;
        values.push(spec.convert(shape, a.data, what)?);
    }
    Ok(values)
}

fn image_source(dir: &Path, spec: &InputSpec, opts: &ImageOptions) -> Result<Kind> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::input(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                matches!(
                    e.to_string_lossy().to_lowercase().as_str(),
                    "png" | "jpg" | "jpeg"
                )
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Data(format!(
            "{}: no .png/.jpg/.jpeg images in the directory",
            dir.display()
        )));
    }
    let ok = spec.shape.len() == 4
        && spec.shape[1] > 0
        && spec.shape[2] > 0
        && matches!(spec.shape[3], 1 | 3);
    if !ok {
        return Err(Error::Data(format!(
            "{}: images need an NHWC input with 1 or 3 channels and a fixed size; {} is {}",
            dir.display(),
            spec.describe(),
            spec.shape_text()
        )));
    }
    if let Normalize::MeanStd { mean, std } = &opts.normalize {
        let c = spec.shape[3] as usize;
        for (n, v) in [("--mean", mean), ("--std", std)] {
            if v.len() != 1 && v.len() != c {
                return Err(Error::Usage(format!(
                    "{n} has {} values; give 1 or {c} (one per channel)",
                    v.len()
                )));
            }
        }
        if std.contains(&0.0) {
            return Err(Error::Usage("--std must not contain 0".into()));
        }
    }
    Ok(Kind::Images {
        files,
        spec: Box::new(spec.clone()),
        opts: opts.clone(),
    })
}

fn load_image(path: &Path, spec: &InputSpec, opts: &ImageOptions) -> Result<Value> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::input(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::input(path, e))?
        .decode()
        .map_err(|e| Error::Data(format!("{}: cannot decode image: {e}", path.display())))?;
    let (h, w, c) = (
        spec.shape[1] as u32,
        spec.shape[2] as u32,
        spec.shape[3] as usize,
    );
    let img = img.resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut pixels: Vec<u8> = if c == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    if c == 3 && opts.channels == ChannelOrder::Bgr {
        for px in pixels.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
    }
    let shape = vec![1, h as usize, w as usize, c];
    let what = path.display().to_string();
    if spec.dtype == TensorType::Uint8 && spec.quant.is_none() {
        return spec.convert(shape, Data::U8(pixels), &what);
    }
    let at = |v: &[f32], ch: usize| if v.len() == 1 { v[0] } else { v[ch] };
    let vals: Vec<f32> = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let p = p as f32;
            match &opts.normalize {
                Normalize::MeanStd { mean, std } => (p - at(mean, i % c)) / at(std, i % c),
                Normalize::ScaleOffset { scale, offset } => p * scale + offset,
            }
        })
        .collect();
    spec.convert(shape, Data::F32(vals), &what)
}
