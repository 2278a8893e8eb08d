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
use crate::interp::keys::KeyRange;
use crate::interp::{Flow, Interpreter, TensorId, Value};
use crate::ir::Model;

pub use observer::{ObserverKind, Sentinels, StreamRanges, TensorStats};
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
    /// `--observer auto`: the observer chosen for this tensor (`minmax`,
    /// `percentile:99.99`, `mse`; model inputs always `minmax`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
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
    /// The samples form one stream: `minmax` keeps each sample's extremes in order
    /// (see [`observer`], *Streams*).
    stream: bool,
}

impl Collector {
    pub fn new(kind: ObserverKind) -> Self {
        Collector {
            kind,
            stats: BTreeMap::new(),
            samples: 0,
            stream: false,
        }
    }

    /// Declares the samples one stream (state flows from each to the next): with
    /// `minmax`, every tensor's range comes from [`observer::stream_extreme`].
    pub fn samples_form_a_stream(&mut self) {
        if self.kind != ObserverKind::MinMax {
            return;
        }
        self.stream = true;
        for s in self.stats.values_mut() {
            s.record_series();
        }
    }

    /// Folds one value of a tensor into its statistics (non-float32 values are
    /// ignored). A tensor seen several times in one sample (a loop body) is folded once
    /// per occurrence.
    pub fn observe(&mut self, id: TensorId, v: &Value) {
        self.observe_keyed(id, v, None)
    }

    /// [`Collector::observe`] given the value's [`KeyRange`] if the kernel that wrote
    /// it computed one (the same statistics).
    fn observe_keyed(&mut self, id: TensorId, v: &Value, keys: Option<KeyRange>) {
        if let Some(x) = v.as_f32() {
            let (kind, stream) = (self.kind, self.stream);
            self.stats
                .entry(id)
                .or_insert_with(|| {
                    let mut s = TensorStats::new(kind);
                    if stream {
                        s.record_series();
                    }
                    s
                })
                .observe_keyed(kind, x, keys);
        }
    }

    /// Folds another collector's statistics (other samples of the same model) into
    /// this one. Only for order-free observers ([`ObserverKind::order_free`]).
    fn merge(&mut self, other: Collector) -> Result<()> {
        for (id, s) in other.stats {
            match self.stats.entry(id) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(s);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    e.get_mut().merge(self.kind, &s).ok_or_else(|| {
                        Error::Internal(format!(
                            "the {} observer cannot merge statistics of parallel samples",
                            self.kind
                        ))
                    })?;
                }
            }
        }
        self.samples += other.samples;
        Ok(())
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
                let (observer, (min, max)) = match kind {
                    ObserverKind::Auto => {
                        let (k, r) = s.auto_choice()?;
                        (Some(k.to_string()), r)
                    }
                    _ if self.kind == ObserverKind::Auto => {
                        (Some(kind.to_string()), s.range(kind)?)
                    }
                    _ if is_input => (None, s.seen()?),
                    _ => (None, s.range(kind)?),
                };
                Some(TensorRange {
                    subgraph: id.subgraph,
                    tensor: id.tensor,
                    name: t.name.clone(),
                    min,
                    max,
                    sentinels: s.sentinels,
                    observer,
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

/// Which float outputs a calibration run keeps for a later comparison with the
/// quantized model (`quantize`'s closing SQNR check): those of the first `samples`
/// samples, as long as they take at most `max_bytes` together. The default keeps none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepOutputs {
    pub samples: usize,
    pub max_bytes: usize,
}

/// The float model's outputs on the first samples of a calibration run, in sample
/// order: the values [`Interpreter::run`] returns for them, bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatOutputs(pub Vec<Vec<Value>>);

/// What the workers of one calibration run keep of [`KeepOutputs`].
#[derive(Default)]
struct Kept {
    want: KeepOutputs,
    outputs: Vec<(usize, Vec<Value>)>,
    bytes: usize,
    /// The budget was exceeded: nothing is handed back.
    over: bool,
}

impl Kept {
    /// Keeps the outputs of sample `i` if wanted and within the budget.
    fn offer(&mut self, i: usize, outputs: Vec<Value>) {
        if i >= self.want.samples || self.over {
            return;
        }
        let bytes: usize = outputs.iter().map(|v| v.data.byte_len()).sum();
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.want.max_bytes {
            self.over = true;
            self.outputs = Vec::new();
            return;
        }
        self.outputs.push((i, outputs));
    }

    /// The outputs of samples `0..min(samples, total)`, in order; `None` if any is
    /// missing or the budget was exceeded.
    fn take(&mut self, total: usize) -> Option<FloatOutputs> {
        let want = self.want.samples.min(total);
        let mut outputs = std::mem::take(&mut self.outputs);
        if self.over || want == 0 || outputs.len() != want {
            return None;
        }
        outputs.sort_by_key(|(i, _)| *i);
        if outputs.iter().enumerate().any(|(k, (i, _))| k != *i) {
            return None;
        }
        Some(FloatOutputs(outputs.into_iter().map(|(_, v)| v).collect()))
    }
}

/// Collects statistics of every float tensor over samples on the reference
/// interpreter, streaming.
pub struct Calibrator<'m> {
    interp: Interpreter<'m>,
    collector: Collector,
    stream_ranges: StreamRanges,
    kept: Kept,
}

impl<'m> Calibrator<'m> {
    pub fn new(model: &'m Model, kind: ObserverKind) -> Result<Self> {
        Ok(Calibrator {
            interp: Interpreter::new(model)?,
            collector: Collector::new(kind),
            stream_ranges: StreamRanges::default(),
            kept: Kept::default(),
        })
    }

    /// Keeps the float outputs of the first samples [`Calibrator::add_samples`] runs
    /// (see [`KeepOutputs`]; none by default), for [`Calibrator::take_outputs`]. Models
    /// with state that survives a run keep none: their outputs depend on the reset
    /// policy of the run that made them.
    pub fn keep_outputs(&mut self, keep: KeepOutputs) {
        if crate::interp::state::is_stateful(self.interp.model()) {
            return;
        }
        self.kept = Kept {
            want: keep,
            ..Kept::default()
        };
    }

    /// The outputs kept by [`Calibrator::keep_outputs`] of the first samples of the
    /// last [`Calibrator::add_samples`] (`min(samples, run)` of them), once; `None`
    /// when none were asked for, the budget was exceeded, or the run ended early.
    pub fn take_outputs(&mut self) -> Option<FloatOutputs> {
        let total = self.collector.samples();
        self.kept.take(total)
    }

    /// How `minmax` ranges tensors when [`Calibrator::add_samples`] finds the samples
    /// form one stream ([`StreamRanges::Extrapolate`] unless set).
    pub fn set_stream_ranges(&mut self, s: StreamRanges) {
        self.stream_ranges = s;
    }

    /// Declares the samples one stream when the interpreter's reset policy lets the
    /// model's state flow from one sample to the next (and the stream ranges are
    /// [`StreamRanges::Extrapolate`]). [`Calibrator::add_samples`] calls it; callers
    /// that feed [`Calibrator::add_sample`] themselves call it first.
    pub fn detect_stream(&mut self) {
        if self.stream_ranges == StreamRanges::Extrapolate
            && carries_state(self.interp.model(), self.interp.reset_policy())
        {
            self.collector.samples_form_a_stream();
        }
    }

    /// Runs `samples` in order, resetting state by their policy and where their
    /// sequence ids change (stateful models see one stream per sequence, as in
    /// deployment); `progress` is called after each with (done, total).
    ///
    /// Samples run in parallel, one interpreter per thread of the rayon pool, when that
    /// cannot change the result (see [`Calibrator::parallel_workers`]); the ranges are
    /// then the same as run one after the other.
    pub fn add_samples(
        &mut self,
        samples: Samples,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let workers = self.parallel_workers(&samples);
        if workers > 1 {
            return self.add_samples_parallel(samples, workers, progress);
        }
        self.add_samples_sequential(samples, progress)
    }

    /// How many samples [`Calibrator::add_samples`] runs at once: one per thread of the
    /// rayon pool when the observer is order-free (minmax), the model has no state that
    /// survives a run, the samples form no sequences and per-op timing is off; 1
    /// otherwise. Running whole samples side by side keeps both cores busy on the many
    /// small ops of a small model, where splitting each op does not pay.
    pub fn parallel_workers(&self, samples: &Samples) -> usize {
        let model = self.interp.model();
        if !self.collector.kind.order_free()
            || self.interp.timing_enabled()
            || crate::interp::state::is_stateful(model)
            || samples.sequence_ids().is_some()
        {
            return 1;
        }
        rayon::current_num_threads().min(samples.len()).max(1)
    }

    /// The reference twin of [`Calibrator::add_samples_parallel`]: one sample after
    /// the other on this calibrator's interpreter.
    fn add_samples_sequential(
        &mut self,
        samples: Samples,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let total = samples.len();
        let seq = samples.sequences();
        self.interp.set_reset_policy(samples.reset_policy());
        self.detect_stream();
        for (i, s) in samples.enumerate() {
            if seq.starts_sequence(i) {
                self.interp.reset_state();
            }
            let outputs = run_sample(&mut self.interp, &mut self.collector, &s?)?;
            self.kept.offer(i, outputs);
            progress(i + 1, total);
        }
        Ok(())
    }

    /// Runs `samples` on `workers` interpreters at once (this calibrator's and
    /// `workers - 1` new ones, each a task of the rayon pool, so kernels inside keep
    /// using the same threads), then merges their statistics. This thread reads the
    /// samples (at most `workers` wait in the queue: memory does not grow with their
    /// number) and reports progress. On failure the error of the earliest failing
    /// sample is returned, as the sequential run would.
    fn add_samples_parallel(
        &mut self,
        samples: Samples,
        workers: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc::{channel, sync_channel};

        let total = samples.len();
        let kind = self.collector.kind;
        let (work_tx, work_rx) = sync_channel::<(usize, Vec<Value>)>(workers);
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = channel::<(usize, Result<()>)>();
        let stop = AtomicBool::new(false);
        let collected: Mutex<Vec<Collector>> = Mutex::new(Vec::with_capacity(workers));
        let kept = Mutex::new(&mut self.kept);
        let mut first_err: Option<(usize, Error)> = None;
        let mut done = 0usize;
        let mut note = |(i, r): (usize, Result<()>), first_err: &mut Option<(usize, Error)>| match r
        {
            Ok(()) => {
                done += 1;
                progress(done, total);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                if first_err.as_ref().is_none_or(|(j, _)| i < *j) {
                    *first_err = Some((i, e));
                }
            }
        };
        // The other workers share this interpreter's constants and packed weights.
        let mut forks: Vec<Interpreter> = (1..workers).map(|_| self.interp.fork()).collect();
        let mut own = Some(&mut self.interp);
        rayon::in_place_scope(|scope| {
            for _ in 0..workers {
                let interp = own.take();
                let fork = if interp.is_none() { forks.pop() } else { None };
                let (work_rx, done_tx, stop, collected, kept) =
                    (&work_rx, done_tx.clone(), &stop, &collected, &kept);
                scope.spawn(move |_| {
                    let mut fresh = fork;
                    let mut interp = interp.or(fresh.as_mut());
                    let mut collector = Collector::new(kind);
                    // Drain the queue to its end even after a failure, so the reader
                    // never blocks on a full queue.
                    loop {
                        let next = match work_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        let Ok((i, inputs)) = next else { break };
                        let Some(interp) = interp.as_deref_mut() else {
                            continue;
                        };
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let r = run_sample(interp, &mut collector, &inputs).map(|outputs| {
                            if let Ok(mut k) = kept.lock() {
                                k.offer(i, outputs);
                            }
                        });
                        let _ = done_tx.send((i, r));
                    }
                    if let Ok(mut c) = collected.lock() {
                        c.push(collector);
                    }
                });
            }
            drop(done_tx);
            for (i, s) in samples.enumerate() {
                while let Ok(m) = done_rx.try_recv() {
                    note(m, &mut first_err);
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match s {
                    Ok(inputs) => {
                        if work_tx.send((i, inputs)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        note((i, Err(e)), &mut first_err);
                        break;
                    }
                }
            }
            drop(work_tx);
            for m in done_rx.iter() {
                note(m, &mut first_err);
            }
        });
        if let Some((_, e)) = first_err {
            return Err(e);
        }
        let collected = collected
            .into_inner()
            .map_err(|_| Error::Internal("a calibration worker panicked".into()))?;
        for c in collected {
            self.collector.merge(c)?;
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
        run_sample(&mut self.interp, &mut self.collector, inputs).map(drop)
    }

    /// [`Calibrator::add_sample`], also handing back the float model's outputs of the
    /// run (the `--target-sqnr` search measures candidates against them).
    pub fn add_sample_outputs(&mut self, inputs: &[Value]) -> Result<Vec<Value>> {
        run_sample(&mut self.interp, &mut self.collector, inputs)
    }

    /// The ranges collected so far.
    pub fn ranges(&self) -> Ranges {
        self.collector.ranges(self.interp.model())
    }
}

/// True when `policy` lets a stateful `model`'s state flow from one sample to the next
/// (the samples are then one stream, or streams of N).
pub fn carries_state(model: &Model, policy: crate::interp::ResetState) -> bool {
    use crate::interp::ResetState;
    crate::interp::state::is_stateful(model)
        && match policy.resolve(model) {
            ResetState::Never => true,
            ResetState::EveryN(n) => n.get() > 1,
            ResetState::Auto | ResetState::Every => false,
        }
}

/// Runs one sample on `interp` and folds every float tensor value into `collector`;
/// returns the model's outputs.
fn run_sample(
    interp: &mut Interpreter,
    collector: &mut Collector,
    inputs: &[Value],
) -> Result<Vec<Value>> {
    let mut obs = |id: TensorId, v: &Value, keys: Option<KeyRange>| {
        collector.observe_keyed(id, v, keys);
        Flow::Continue
    };
    let outputs = interp
        .run_observed_ranged(inputs, &mut obs)?
        .ok_or_else(|| Error::Internal("a calibration run stopped unasked".into()))?;
    collector.end_sample();
    Ok(outputs)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The parallel path gives exactly the ranges of its sequential twin (minmax is
    /// order-free), however many workers run, and counts every sample.
    #[test]
    fn parallel_samples_give_the_sequential_ranges() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let model = crate::read_path(dir.join("cnn_digits.tflite")).unwrap();
        let data = dir.join("cnn_digits.calib.npy");
        let open = || Samples::open(&data, &model, &SampleOptions::default()).unwrap();
        let total = open().len();
        let mut seq = Calibrator::new(&model, ObserverKind::MinMax).unwrap();
        seq.add_samples_sequential(open(), &mut |_, _| {}).unwrap();
        let want = seq.ranges();
        assert_eq!(want.samples, total);
        assert!(want.tensors.len() > 5);
        for workers in [2, 3] {
            let mut par = Calibrator::new(&model, ObserverKind::MinMax).unwrap();
            let mut last = 0;
            par.add_samples_parallel(open(), workers, &mut |done, _| last = done)
                .unwrap();
            assert_eq!(last, total);
            assert_eq!(par.ranges(), want, "{workers} workers");
        }
    }

    /// Order-dependent observers never take the parallel path.
    #[test]
    fn only_minmax_runs_samples_in_parallel() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let model = crate::read_path(dir.join("cnn_digits.tflite")).unwrap();
        let samples = Samples::open(
            &dir.join("cnn_digits.calib.npy"),
            &model,
            &SampleOptions::default(),
        )
        .unwrap();
        for kind in [ObserverKind::Ema(0.9), ObserverKind::Percentile(99.9)] {
            let c = Calibrator::new(&model, kind).unwrap();
            assert_eq!(c.parallel_workers(&samples), 1, "{kind}");
        }
    }
}
