//! Where does a quantized model lose accuracy? Runs a float model and its quantized
//! version on the same samples, on one runtime, and measures the error of every output
//! and, on request, of every intermediate tensor present in both models.
//!
//! ```text
//! Samples (DATA, opened once per model) ──► Runner(float)  ──► outputs, tensors ─┐
//!                                       └─► Runner(quant)  ──► outputs, tensors ─┴► Accumulators
//!                                                                   (f64, streamed) ──► Report
//! ```
//!
//! * [`matching`] decides which tensors are compared and how values become reals
//!   (outputs by position or signature name, intermediates by name; quantized tensors
//!   dequantized);
//! * [`metrics`] defines SQNR, MSE, max abs error, cosine similarity, top-1 and
//!   agreement, accumulated in `f64` over all samples;
//! * [`runner`] runs a model on the reference interpreter (quantized ops simulated:
//!   dequantize → float kernel → requantize) or on the official LiteRT runtime (read
//!   intermediates through a copy with extra outputs);
//! * [`report`] holds the result, rendered as text or JSON ([`html`]: as one
//!   self-contained page with a chart of the error along the graph). Tensors are sorted worst
//!   first by *local* SQNR, the error a tensor's op added on top of what its inputs
//!   already carried, because error propagates: a broken layer often leaves the tensors
//!   after it with an even lower SQNR than its own. Inputs and QUANTIZE/DEQUANTIZE
//!   outputs of the quantized model are compared too (with the float tensor they stand
//!   for), only to know what the first layers' inputs carry; they are not reported.
//!
//! Memory does not grow with the number of samples: each sample is run and folded into
//! the sums before the next one is read.

pub mod html;
pub mod matching;
pub mod metrics;
pub mod report;
pub mod runner;

use std::collections::HashMap;
use std::path::Path;

use crate::calib::{SampleOptions, Samples};
use crate::error::{Error, Result};
use crate::interp::{ResetState, SequenceIds, Value};
use crate::ir::Model;
use crate::litert::{CpuKernels, LiteRt, LoadOptions, OpenOptions};

pub use matching::{Kind, Pair, Side, TensorMatch, match_outputs, match_tensors};
pub use metrics::{Accumulator, Metrics};
pub use report::{Entry, LiteRtInfo, Report, SortKey};
pub use runner::{Run, Runner};

/// The runtime both models run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Runtime {
    /// tflquant's interpreter; quantized models are simulated.
    #[default]
    Reference,
    /// The official LiteRT runtime (`libLiteRt.so` through its C API).
    LiteRt,
}

impl Runtime {
    /// The command line's name.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Reference => "reference",
            Runtime::LiteRt => "litert",
        }
    }
}

/// What to compare and where to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub runtime: Runtime,
    /// How to find LiteRT ([`Runtime::LiteRt`] only).
    pub litert: LoadOptions,
    /// LiteRT kernels and threads ([`Runtime::LiteRt`] only; default XNNPACK, as the
    /// Python `Interpreter`).
    pub open: OpenOptions,
    /// Also compare every intermediate tensor present in both models.
    pub tensors: bool,
    /// When stateful models (resource variables, variable tensors) start again from
    /// their initial state; both models follow it on either runtime.
    pub reset: ResetState,
}

/// A comparison in progress: feed samples with [`Comparison::add_sample`], then take
/// the [`Comparison::report`].
pub struct Comparison<'m> {
    float_model: &'m Model,
    quant_model: &'m Model,
    outputs: Vec<Pair>,
    /// Name-matched tensors first (`listed` of them), then aliases.
    tensors: Vec<Pair>,
    listed: usize,
    quant_candidates: usize,
    out_acc: Vec<Accumulator>,
    tensor_acc: Vec<Accumulator>,
    /// Tensors dropped at run time (element counts differ), with the reason.
    dropped: Vec<Option<String>>,
    /// `None` when the caller runs the models ([`Comparison::outputs_only`]).
    runners: Option<(Runner<'m>, Runner<'m>)>,
    runtime: Runtime,
    litert: Option<LiteRtInfo>,
    tensors_requested: bool,
    samples: usize,
}

impl<'m> Comparison<'m> {
    /// Matches the models (an error when their inputs or outputs do not correspond)
    /// and prepares both runners (loading LiteRT when asked for).
    pub fn new(float: &'m Model, quant: &'m Model, opts: &Options) -> Result<Comparison<'m>> {
        let outputs = match_outputs(float, quant)?;
        let (tensors, listed, quant_candidates) = if opts.tensors {
            let m = match_tensors(float, quant)?;
            let listed = m.pairs.len();
            let mut all = m.pairs;
            all.extend(m.aliases);
            (all, listed, m.quant_candidates)
        } else {
            (Vec::new(), 0, 0)
        };
        let ft: Vec<usize> = tensors.iter().map(|p| p.float.tensor).collect();
        let qt: Vec<usize> = tensors.iter().map(|p| p.quant.tensor).collect();
        let (mut frun, mut qrun, litert) = match opts.runtime {
            Runtime::Reference => (
                Runner::reference(float, &ft)?,
                Runner::reference(quant, &qt)?,
                None,
            ),
            Runtime::LiteRt => {
                let lite = LiteRt::load(&opts.litert)?;
                let f = Runner::litert(&lite, float, &ft, &opts.open)?;
                let q = Runner::litert(&lite, quant, &qt, &opts.open)?;
                let info = LiteRtInfo {
                    version: lite.version().to_string(),
                    library: lite.library_path().display().to_string(),
                    kernels: q.kernels().unwrap_or(CpuKernels::Xnnpack).to_string(),
                };
                (f, q, Some(info))
            }
        };
        frun.set_reset_policy(opts.reset, float);
        qrun.set_reset_policy(opts.reset, quant);
        Ok(Comparison {
            float_model: float,
            quant_model: quant,
            out_acc: vec![Accumulator::default(); outputs.len()],
            tensor_acc: vec![Accumulator::default(); tensors.len()],
            dropped: vec![None; tensors.len()],
            outputs,
            tensors,
            listed,
            quant_candidates,
            runners: Some((frun, qrun)),
            runtime: opts.runtime,
            litert,
            tensors_requested: opts.tensors,
            samples: 0,
        })
    }

    /// A comparison of the outputs only, whose values the caller computes on the
    /// reference interpreter and hands to [`Comparison::add_outputs`] (e.g. the float
    /// outputs kept by calibration). The same report as [`Comparison::new`] with
    /// [`Runtime::Reference`] and no tensors, given the same values.
    pub fn outputs_only(float: &'m Model, quant: &'m Model) -> Result<Comparison<'m>> {
        let outputs = match_outputs(float, quant)?;
        Ok(Comparison {
            float_model: float,
            quant_model: quant,
            out_acc: vec![Accumulator::default(); outputs.len()],
            tensor_acc: Vec::new(),
            dropped: Vec::new(),
            outputs,
            tensors: Vec::new(),
            listed: 0,
            quant_candidates: 0,
            runners: None,
            runtime: Runtime::Reference,
            litert: None,
            tensors_requested: false,
            samples: 0,
        })
    }

    /// The output pairs.
    pub fn outputs(&self) -> &[Pair] {
        &self.outputs
    }

    /// The intermediate tensor pairs (empty unless asked for).
    pub fn tensors(&self) -> &[Pair] {
        &self.tensors[..self.listed]
    }

    /// Resets the state of both models now (where a new sequence starts).
    pub fn reset_state(&mut self) -> Result<()> {
        match &mut self.runners {
            Some((f, q)) => {
                f.reset_state()?;
                q.reset_state()
            }
            None => Ok(()),
        }
    }

    /// Runs one sample through both models and folds the values into the metrics.
    /// `float_inputs` and `quant_inputs` are the same sample prepared for each model
    /// (e.g. quantized for an integer input), as [`Samples`] yields them.
    pub fn add_sample(&mut self, float_inputs: &[Value], quant_inputs: &[Value]) -> Result<()> {
        let sample = self.samples;
        let Some((float, quant)) = &mut self.runners else {
            return Err(Error::Internal(
                "a comparison of given outputs cannot run samples".into(),
            ));
        };
        let f = float.run(float_inputs)?;
        let q = quant.run(quant_inputs)?;
        self.fold_outputs(&f.outputs, &q.outputs)?;
        for (k, pair) in self.tensors.iter().enumerate() {
            if self.dropped[k].is_some() {
                continue;
            }
            if let (Some(Some(a)), Some(Some(b))) = (f.tensors.get(k), q.tensors.get(k))
                && let Err(why) = accumulate(pair, &mut self.tensor_acc[k], a, b)
            {
                log::warn!(
                    "tensor {:?} not compared: sample {sample}: {why}",
                    pair.float.name
                );
                self.dropped[k] = Some(why);
            }
        }
        self.samples += 1;
        Ok(())
    }

    /// Folds one sample's outputs of both models, computed by the caller, into the
    /// metrics (a comparison made by [`Comparison::outputs_only`]).
    pub fn add_outputs(&mut self, float: &[Value], quant: &[Value]) -> Result<()> {
        if self.tensors_requested {
            return Err(Error::Internal(
                "a comparison of tensors needs both runs: use add_sample".into(),
            ));
        }
        self.fold_outputs(float, quant)?;
        self.samples += 1;
        Ok(())
    }

    /// Folds the outputs of one sample (sample number `self.samples`).
    fn fold_outputs(&mut self, f: &[Value], q: &[Value]) -> Result<()> {
        let sample = self.samples;
        for (k, pair) in self.outputs.iter().enumerate() {
            let (i, j) = pair.output.unwrap_or((k, k));
            let (Some(a), Some(b)) = (f.get(i), q.get(j)) else {
                return Err(Error::Internal(format!("output {k} missing from a run")));
            };
            if let Err(why) = accumulate(pair, &mut self.out_acc[k], a, b) {
                return Err(Error::Data(format!(
                    "sample {sample}: output {k} ({:?}): {why}",
                    pair.float.name
                )));
            }
        }
        Ok(())
    }

    /// The result so far: outputs in order, tensors worst first (see [`Report`]).
    pub fn report(&self) -> Report {
        let path = |m: &Model| {
            m.source
                .as_ref()
                .map(|s| s.path.display().to_string())
                .unwrap_or_default()
        };
        let outputs = self
            .outputs
            .iter()
            .zip(&self.out_acc)
            .map(|(p, a)| Entry::new(p, a))
            .collect();
        let usable = |k: usize| self.dropped[k].is_none() && self.tensor_acc[k].n > 0;
        let tensors = self.tensors_requested.then(|| {
            let ratios: HashMap<usize, f64> = (0..self.tensors.len())
                .filter(|&k| usable(k) && self.tensors[k].kind == Kind::Real)
                .map(|k| {
                    let m = self.tensor_acc[k].metrics();
                    (self.tensors[k].quant.tensor, m.noise_ratio)
                })
                .collect();
            let upstream = Upstream::new(self.quant_model, &ratios);
            (0..self.listed)
                .filter(|&k| usable(k))
                .map(|k| {
                    let p = &self.tensors[k];
                    let mut e = Entry::new(p, &self.tensor_acc[k]);
                    if p.kind == Kind::Real {
                        e.set_local(upstream.input_ratio(p.quant.tensor));
                    }
                    e
                })
                .collect()
        });
        let mut r = Report {
            float: path(self.float_model),
            quant: path(self.quant_model),
            runtime: self.runtime.name().to_string(),
            litert: self.litert.clone(),
            samples: self.samples,
            outputs,
            tensors_compared: None,
            quant_activations: self.tensors_requested.then_some(self.quant_candidates),
            tensors,
            sorted_by: SortKey::Local,
        };
        r.sort_tensors(SortKey::Local);
        r
    }
}

/// The error a tensor's inputs already carry: walking up the quantized model from a
/// tensor's producer to the nearest compared tensors (through tensors that are not
/// compared), the largest noise ratio `Σ (r − t)² / Σ r²` found. Model inputs that are
/// not compared, and ops without activation inputs, contribute none. A value read from a
/// resource variable comes from what was assigned to it (one invocation earlier).
struct Upstream<'a> {
    model: &'a Model,
    ratios: &'a HashMap<usize, f64>,
    producers: Vec<Option<usize>>,
    /// READ_VARIABLE output → the values assigned to that variable.
    state: HashMap<usize, Vec<usize>>,
    memo: std::cell::RefCell<HashMap<usize, f64>>,
}

impl<'a> Upstream<'a> {
    fn new(model: &'a Model, ratios: &'a HashMap<usize, f64>) -> Self {
        Upstream {
            model,
            ratios,
            producers: model
                .subgraphs
                .first()
                .map(|sg| sg.producers())
                .unwrap_or_default(),
            state: crate::interp::state::state_sources(model, 0),
            memo: Default::default(),
        }
    }

    /// The noise ratio the inputs of `tensor`'s producer carry.
    fn input_ratio(&self, tensor: usize) -> f64 {
        self.inputs_of(tensor, 0)
    }

    fn inputs_of(&self, tensor: usize, depth: usize) -> f64 {
        let Some(sg) = self.model.subgraphs.first() else {
            return 0.0;
        };
        let Some(op) = self.producers.get(tensor).copied().flatten() else {
            return 0.0;
        };
        let mut worst = 0f64;
        let assigned = self.state.get(&tensor).into_iter().flatten();
        let inputs = sg.operators[op]
            .inputs
            .iter()
            .filter_map(|&i| usize::try_from(i).ok())
            .chain(assigned.copied());
        for i in inputs {
            let Some(t) = sg.tensors.get(i) else { continue };
            if self.model.is_constant(t) {
                continue;
            }
            let r = match self.ratios.get(&i) {
                Some(&r) => r,
                // A cycle cannot occur in a valid graph; the depth bound guards anyway.
                None if depth < sg.operators.len() => {
                    if let Some(&r) = self.memo.borrow().get(&i) {
                        r
                    } else {
                        let r = self.inputs_of(i, depth + 1);
                        self.memo.borrow_mut().insert(i, r);
                        r
                    }
                }
                None => 0.0,
            };
            if r > worst || r.is_nan() {
                worst = r;
            }
        }
        worst
    }
}

/// Folds one pair of values into `acc`; `Err` says why they cannot be compared (also
/// used by the `--target-sqnr` search, which keeps the float side cached).
pub fn accumulate(
    pair: &Pair,
    acc: &mut Accumulator,
    a: &Value,
    b: &Value,
) -> std::result::Result<(), String> {
    if a.len() != b.len() {
        return Err(format!(
            "the float model gives {} elements {:?}, the quantized model {} {:?}",
            a.len(),
            a.shape,
            b.len(),
            b.shape
        ));
    }
    match pair.kind {
        Kind::Real => {
            let (Some(x), Some(y)) = (pair.float.real_values(a), pair.quant.real_values(b)) else {
                return Err(format!(
                    "values of type {} / {} cannot be read as reals with the tensors' \
                     quantization parameters",
                    crate::fb::dtype_name(a.dtype()),
                    crate::fb::dtype_name(b.dtype())
                ));
            };
            acc.add_real(&x, &y);
            if let Some(c) = pair.classes
                && a.shape.len() == 2
                && a.shape[1] == c
            {
                acc.add_top1(&x, &y, c);
            }
        }
        Kind::Exact => acc.add_exact(&pair.float.exact_values(a), &pair.quant.exact_values(b)),
    }
    Ok(())
}

/// Compares `quant` with `float` over every sample of `data` (`.npy`, `.npz` or an
/// image directory, as for calibration; opened once per model, so an integer input of
/// the quantized model gets the samples quantized with its parameters).
pub fn compare(
    float: &Model,
    quant: &Model,
    data: &Path,
    samples: &SampleOptions,
    opts: &Options,
) -> Result<Report> {
    let mut c = Comparison::new(float, quant, opts)?;
    let (fs, qs) = open_samples(float, quant, data, samples)?;
    let seq = SequenceIds::new(fs.sequence_ids().map(<[i64]>::to_vec));
    for (i, (a, b)) in fs.zip(qs).enumerate() {
        if seq.starts_sequence(i) {
            c.reset_state()?;
        }
        c.add_sample(&a?, &b?)?;
    }
    Ok(c.report())
}

/// The outputs of [`compare`] (reference interpreter, no tensors) when the float
/// model's outputs on the samples are known already (`float_outputs`, one entry per
/// sample of `data` in order, e.g. kept by calibration: [`crate::calib::FloatOutputs`]):
/// only the quantized model runs, several samples at once ([`runner::Parallel`]); the
/// sums are folded in sample order, so the report is the one [`compare`] gives.
pub fn compare_with_float_outputs(
    float: &Model,
    quant: &Model,
    float_outputs: &crate::calib::FloatOutputs,
    data: &Path,
    samples: &SampleOptions,
) -> Result<Report> {
    let mut c = Comparison::outputs_only(float, quant)?;
    let mut qs = Samples::open(data, quant, samples)?;
    if qs.is_empty() {
        return Err(Error::Data(format!("{}: no samples", data.display())));
    }
    if qs.len() != float_outputs.0.len() {
        return Err(Error::Internal(format!(
            "{}: {} samples for the quantized model, {} float outputs given",
            data.display(),
            qs.len(),
            float_outputs.0.len()
        )));
    }
    let mut runner = runner::Parallel::new(quant)?;
    let mut float_outputs = float_outputs.0.iter();
    loop {
        let batch = qs
            .by_ref()
            .take(runner.workers())
            .collect::<Result<Vec<_>>>()?;
        if batch.is_empty() {
            break;
        }
        for q in runner.run(&batch) {
            let f = float_outputs
                .next()
                .ok_or_else(|| Error::Internal("fewer float outputs than samples".into()))?;
            c.add_outputs(f, &q?)?;
        }
    }
    Ok(c.report())
}

/// Opens `data` for both models; an error when it holds no sample.
pub fn open_samples(
    float: &Model,
    quant: &Model,
    data: &Path,
    samples: &SampleOptions,
) -> Result<(Samples, Samples)> {
    let fs = Samples::open(data, float, samples)?;
    let qs = Samples::open(data, quant, samples)?;
    if fs.is_empty() {
        return Err(Error::Data(format!("{}: no samples", data.display())));
    }
    if fs.len() != qs.len() {
        return Err(Error::Internal(format!(
            "{}: {} samples for the float model, {} for the quantized one",
            data.display(),
            fs.len(),
            qs.len()
        )));
    }
    Ok((fs, qs))
}
