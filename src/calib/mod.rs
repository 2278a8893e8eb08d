//! Calibration: run the interpreter over samples and collect a range per float tensor
//! of every subgraph it runs (model inputs and activations; constants need none),
//! with a chosen [`ObserverKind`]. Samples are streamed ([`samples::Samples`]); the
//! memory used does not grow with their number.
//!
//! The result, [`Ranges`], is what the quantizer consumes; its JSON form is
//!
//! ```json
//! {"observer": "minmax", "samples": 64,
//!  "tensors": [{"subgraph": 0, "tensor": 12, "name": "conv/Relu", "min": -0.5, "max": 3.25}]}
//! ```
//!
//! with tensors sorted by (subgraph, tensor).

pub mod observer;
pub mod samples;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fb::TensorType;
use crate::interp::{Flow, Interpreter, TensorId, Value};
use crate::ir::Model;

pub use observer::{ObserverKind, Sentinels, TensorStats};
pub use samples::{
    ChannelOrder, ImageOptions, InputSpec, Normalize, SampleArray, SampleOptions, Samples,
    sample_from_arrays,
};

/// The range of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorRange {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    pub min: f32,
    pub max: f32,
    /// Sentinel values (±inf, ±FLT_MAX, far-out masks) seen over all samples; they are
    /// not in `[min, max]` (see [`observer`]). Absent when none.
    #[serde(default, skip_serializing_if = "Sentinels::is_none")]
    pub sentinels: Sentinels,
}

/// Ranges of a calibration run (see the module docs for the JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    pub observer: String,
    pub samples: usize,
    pub tensors: Vec<TensorRange>,
}

impl Ranges {
    /// The range of a tensor, if calibrated.
    pub fn get(&self, subgraph: usize, tensor: usize) -> Option<&TensorRange> {
        self.tensors
            .binary_search_by(|r| (r.subgraph, r.tensor).cmp(&(subgraph, tensor)))
            .ok()
            .map(|i| &self.tensors[i])
    }

    /// Reads `ranges.json`.
    pub fn load(path: impl AsRef<Path>) -> Result<Ranges> {
        let path = path.as_ref();
        let text = std::fs::read(path).map_err(|e| Error::input(path, e))?;
        let mut r: Ranges = serde_json::from_slice(&text)
            .map_err(|e| Error::Data(format!("{}: not a ranges file: {e}", path.display())))?;
        r.tensors.sort_by_key(|t| (t.subgraph, t.tensor));
        for w in r.tensors.windows(2) {
            if (w[0].subgraph, w[0].tensor) == (w[1].subgraph, w[1].tensor) {
                return Err(Error::Data(format!(
                    "{}: subgraph {} tensor {} is listed twice",
                    path.display(),
                    w[0].subgraph,
                    w[0].tensor
                )));
            }
        }
        Ok(r)
    }

    /// The JSON text (pretty, one tensor per line block, stable order).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes `ranges.json` (to a temporary file, then renamed).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        std::io::Write::write_all(&mut tmp, self.to_json().as_bytes())
            .map_err(|e| Error::io(path, e))?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

/// Options of a calibration run.
#[derive(Debug, Clone, Default)]
pub struct CalibOptions {
    pub observer: ObserverKind,
    /// Called after each sample with (done, total).
    pub progress: Option<fn(usize, usize)>,
}

/// Statistics of every float tensor over samples, fed by any runtime: the reference
/// interpreter ([`Calibrator`]) or LiteRT (`crate::litert::LiteRt::calibrate`), so that
/// both produce ranges the same way.
pub struct Collector {
    kind: ObserverKind,
    stats: BTreeMap<TensorId, TensorStats>,
    samples: usize,
}

impl Collector {
    pub fn new(kind: ObserverKind) -> Self {
        Collector {
            kind,
            stats: BTreeMap::new(),
            samples: 0,
        }
    }

    /// Folds one value of a tensor into its statistics (non-float32 values are
    /// ignored). A tensor seen several times in one sample (a loop body) is folded once
    /// per occurrence.
    pub fn observe(&mut self, id: TensorId, v: &Value) {
        if let Some(x) = v.as_f32() {
            let kind = self.kind;
            self.stats
                .entry(id)
                .or_insert_with(|| TensorStats::new(kind))
                .observe(kind, x);
        }
    }

    /// Counts one sample as done.
    pub fn end_sample(&mut self) {
        self.samples += 1;
    }

    /// Samples folded so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The ranges collected so far, for the float32 tensors of `model`.
    pub fn ranges(&self, model: &Model) -> Ranges {
        let tensors = self
            .stats
            .iter()
            .filter_map(|(id, s)| {
                let t = &model.subgraphs[id.subgraph].tensors[id.tensor];
                if t.dtype != TensorType::Float32 {
                    return None;
                }
                // Model inputs keep their full range whatever the observer: their range
                // is a property of the data format (pixels in [0, 1], ...), and clipping
                // them costs every later layer.
                let is_input = model.subgraphs[id.subgraph]
                    .inputs
                    .contains(&(id.tensor as i32));
                let kind = if is_input {
                    ObserverKind::MinMax
                } else {
                    self.kind
                };
                let (min, max) = s.range(kind)?;
                Some(TensorRange {
                    subgraph: id.subgraph,
                    tensor: id.tensor,
                    name: t.name.clone(),
                    min,
                    max,
                    sentinels: s.sentinels,
                })
            })
            .collect();
        Ranges {
            observer: self.kind.to_string(),
            samples: self.samples,
            tensors,
        }
    }
}

/// Collects statistics of every float tensor over samples on the reference
/// interpreter, streaming.
pub struct Calibrator<'m> {
    interp: Interpreter<'m>,
    collector: Collector,
}

impl<'m> Calibrator<'m> {
    pub fn new(model: &'m Model, kind: ObserverKind) -> Result<Self> {
        Ok(Calibrator {
            interp: Interpreter::new(model)?,
            collector: Collector::new(kind),
        })
    }

    /// Runs `samples` in order, resetting state by their policy and where their
    /// sequence ids change (stateful models see one stream per sequence, as in
    /// deployment); `progress` is called after each with (done, total).
    pub fn add_samples(
        &mut self,
        samples: Samples,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let total = samples.len();
        let seq = samples.sequences();
        self.interp.set_reset_policy(samples.reset_policy());
        for (i, s) in samples.enumerate() {
            if seq.starts_sequence(i) {
                self.interp.reset_state();
            }
            self.add_sample(&s?)?;
            progress(i + 1, total);
        }
        Ok(())
    }

    /// The interpreter (e.g. to turn on per-op timing).
    pub fn interpreter(&mut self) -> &mut Interpreter<'m> {
        &mut self.interp
    }

    /// Runs one sample and folds every float tensor value into its statistics. A tensor
    /// seen several times in one sample (a loop body) is folded once per occurrence.
    pub fn add_sample(&mut self, inputs: &[Value]) -> Result<()> {
        let collector = &mut self.collector;
        let mut obs = |id: TensorId, v: &Value| {
            collector.observe(id, v);
            Flow::Continue
        };
        self.interp.run_observed(inputs, &mut obs)?;
        self.collector.end_sample();
        Ok(())
    }

    /// The ranges collected so far.
    pub fn ranges(&self) -> Ranges {
        self.collector.ranges(self.interp.model())
    }
}

/// Calibrates `model` over every sample of `samples` (stateful models: see
/// [`Calibrator::add_samples`]).
pub fn calibrate(model: &Model, samples: Samples, opts: &CalibOptions) -> Result<Ranges> {
    let mut c = Calibrator::new(model, opts.observer)?;
    c.add_samples(samples, &mut |done, total| {
        if let Some(p) = opts.progress {
            p(done, total);
        }
    })?;
    if c.collector.samples() == 0 {
        return Err(Error::Data("no calibration samples".into()));
    }
    Ok(c.ranges())
}
