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

pub use observer::{ObserverKind, TensorStats};
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

/// Collects statistics of every float tensor over samples, streaming.
pub struct Calibrator<'m> {
    interp: Interpreter<'m>,
    kind: ObserverKind,
    stats: BTreeMap<TensorId, TensorStats>,
    samples: usize,
}

impl<'m> Calibrator<'m> {
    pub fn new(model: &'m Model, kind: ObserverKind) -> Result<Self> {
        Ok(Calibrator {
            interp: Interpreter::new(model)?,
            kind,
            stats: BTreeMap::new(),
            samples: 0,
        })
    }

    /// The interpreter (e.g. to turn on per-op timing).
    pub fn interpreter(&mut self) -> &mut Interpreter<'m> {
        &mut self.interp
    }

    /// Runs one sample and folds every float tensor value into its statistics. A tensor
    /// seen several times in one sample (a loop body) is folded once per occurrence.
    pub fn add_sample(&mut self, inputs: &[Value]) -> Result<()> {
        let kind = self.kind;
        let stats = &mut self.stats;
        let mut obs = |id: TensorId, v: &Value| {
            if let Some(x) = v.as_f32() {
                stats
                    .entry(id)
                    .or_insert_with(|| TensorStats::new(kind))
                    .observe(kind, x);
            }
            Flow::Continue
        };
        self.interp.run_observed(inputs, &mut obs)?;
        self.samples += 1;
        Ok(())
    }

    /// The ranges collected so far.
    pub fn ranges(&self) -> Ranges {
        let model = self.interp.model();
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

/// Calibrates `model` over every sample of `samples`.
pub fn calibrate(model: &Model, samples: Samples, opts: &CalibOptions) -> Result<Ranges> {
    let total = samples.len();
    let mut c = Calibrator::new(model, opts.observer)?;
    for (i, s) in samples.enumerate() {
        c.add_sample(&s?)?;
        if let Some(p) = opts.progress {
            p(i + 1, total);
        }
    }
    if c.samples == 0 {
        return Err(Error::Data("no calibration samples".into()));
    }
    Ok(c.ranges())
}
