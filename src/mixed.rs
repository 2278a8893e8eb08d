//! Automatic mixed precision (`quantize --target-sqnr DB`, issue #15): which operators
//! of an int8 model to run in 16x8 or keep float (of an int16x8 model: to keep float)
//! so that every model output reaches a target SQNR against the float model.
//!
//! It sits above `quant` and `compare` (it quantizes candidates and measures them) and
//! changes nothing in either: a plan is a list of [`KeepFloat`] and [`Int16`] entries
//! handed to [`quant::quantize`] through [`quant::Options::keep_float`] and
//! [`quant::Options::int16`].
//!
//! The search, on at most [`SEARCH_SAMPLES`] calibration samples:
//! 1. **One float run**: the float model's outputs for every search sample are kept.
//! 2. **Sensitivity**: the all-integer model (the user's `--keep-float` and `--int16`
//!    applied) runs with every activation that has a float counterpart replaced by
//!    that counterpart's exact value (on the tensor's own grid), so each operator sees
//!    exact inputs; an operator's sensitivity is the SQNR of its output there, the
//!    error it adds itself ([`own_errors`]). Unlike the local SQNR of `compare
//!    --tensors` (output error minus input error), it is not masked where an operator
//!    shrinks the error its inputs carry (a saturated SOFTMAX, an averaging
//!    FULLY_CONNECTED, a pool), and an operator writing a model output behind a
//!    DEQUANTIZE is measured too. One float and one quantized run per sample.
//!    A second such run with every 16x8 candidate in 16x8 tells where 16x8 adds less
//!    error than the run's width; elsewhere (LiteRT's 16x8 SOFTMAX, built on lookup
//!    tables, is less accurate than its int8 one on confident outputs) an operator is
//!    raised straight to float.
//! 3. **Greedy by sensitivity, one level up**: the all-integer plan is evaluation #1;
//!    when it meets target + [`SEARCH_MARGIN_DB`] it is the answer. Otherwise
//!    operators are ranked from the lowest own-error SQNR. Each operator has a ladder
//!    of levels: the run's width, then 16x8 (in an int8 run, where the rule table has
//!    a 16x8 kernel and it measured better: [`Level::Int16`]), then float. The
//!    smallest prefix of the ranking raised one level with which every real-valued
//!    output reaches target + [`SEARCH_MARGIN_DB`] is found by bisection (the SQNR
//!    grows, not strictly, with the prefix).
//! 4. **Then float**: if the whole ranking raised one level does not reach it, the
//!    smallest prefix kept float (the rest still raised) is found the same way.
//! 5. **Lowering**: each raised operator, the least sensitive first, is lowered one
//!    level (float → 16x8 → the run's width) where the target still holds (at most
//!    [`MAX_LOWERING_TRIES`] tries, to bound the cost).
//!
//! **Folds.** The search samples are cut into [`SEARCH_FOLDS`] folds
//! ([`STREAM_FOLDS`] when they form one stream); each fold's ranges are collected on
//! the other folds' samples and its own samples are scored with them, so every search
//! sample is scored by a model whose ranges never saw it, as a deployed model's data.
//! **Score** ([`plan_score`]): per real-valued output, the lower of the pooled SQNR over
//! every scored sample with the mean error raised by [`NOISE_Z`] standard errors, and
//! the worst single sample's SQNR; the lowest over the outputs, minus
//! [`SEARCH_MARGIN_DB`]. A plan meets the target when its score does. (The worst
//! sample alone with a 6 dB margin, the rule before, kept cnn_digits' logits float at
//! T = 40 where the int8 model reaches 49 dB on held-out data; the pooled estimate
//! alone misses T = 40 on held-out data of six testdata models, by one held-out sample
//! that clips where no calibration sample did.)
//!
//! The objective is the smallest model with the fewest float islands: 16x8 is tried
//! before float because it keeps the model integer (no QUANTIZE/DEQUANTIZE pair around
//! a float island, weights still int8, only the biases of its operators int64). With n
//! candidates the search costs at most 1 + 2·(2·⌈log2 n⌉ + 1) + [`MAX_LOWERING_TRIES`]
//! evaluations. Each costs one quantization and one run of the quantized model over the
//! search samples per fold; the float outputs are never recomputed, and the weight
//! scales (the mse clipping search, most of a quantization's time) are computed once
//! for all candidates ([`quant::ptq::clipping::ScaleCache`]). Both sensitivity runs
//! share one float run per sample. The chosen plan is
//! then measured by `compare` (the same metrics) on the validation data, or the
//! calibration data when none is given (then with the folds' float outputs, when the
//! search samples are all of it: [`closing_float_outputs`]), and recorded in the report
//! ([`MixedPrecision`]). When even every candidate kept float misses the target, the
//! best plan measured is written and the report says the target was not reached.
//!
//! **Cost** (issue #15: at most 5× a plain int8 quantization). Where no state survives
//! a run, samples run side by side on the rayon pool, each fast path beside its
//! sequential reference twin and tested against it, so no decision and no byte
//! changes: the folds' calibrations ([`calibrate_folds`]), the sensitivity runs
//! ([`own_errors`]: contiguous runs of samples, the lowest SQNR taken in sample order),
//! each evaluation ([`Cache::errors`]: the first sample alone, then batches; energies
//! added and the early stop checked one sample after the other). `-v` logs each phase's
//! wall and CPU time.

use std::collections::HashMap;
use std::path::Path;

use crate::calib::{SampleOptions, Samples};
use crate::compare::{self, Accumulator, Kind};
use crate::error::{Error, Result};
use crate::interp::{SequenceIds, Value};
use crate::ir::Model;
use crate::quant::integer::Fate;
use crate::quant::report::{FloatReason, MixedPrecision, OpPrecision, OutputSqnr};
use crate::quant::select::{Int16, KeepFloat, KeepFloatBy, OpSelector};
use crate::quant::{self, Mode, Report};

/// Calibration samples the search runs at most (the first ones of the calibration data).
pub const SEARCH_SAMPLES: usize = 128;
/// The search asks this much more than the target of both estimates of a plan's SQNR
/// on unseen data ([`plan_score`]), so that the plan still reaches the target on other
/// data and on the runtime's integer kernels (about one quantization step from the
/// simulation). 3.5 dB misses T = 40 on one testdata model's held-out data
/// (shared_weights_cnn, 39.7 dB); 4 met every target on every model while int8
/// SOFTMAX probabilities were int8, and missed shared_weights_cnn by 0.05 dB once
/// they became int16 (its all-int8 score rose from 39.99 to 40.53 dB, its held-out
/// SQNR only from 39.66 to 39.95); 5 meets every target on every model.
pub const SEARCH_MARGIN_DB: f64 = 5.0;
/// Standard errors of the per-sample error added to the mean error in the pooled
/// estimate of [`plan_score`].
pub const NOISE_Z: f64 = 2.0;
/// Folds of the search samples: each fold's ranges are fitted on the others and its
/// samples scored with them.
pub const SEARCH_FOLDS: usize = 2;
/// Folds when the samples form one stream (a stateful model whose state flows from one
/// sample to the next): each fold fits on three quarters of the stream. The consecutive
/// frames of a stream share their extremes, so half of a 32-frame stream is too short
/// for the stream estimate of the ranges (`calib::stream_extreme` needs two blocks as
/// long as the stream's correlation) and its ranges fall far short of the whole
/// stream's (streaming_kws in int8, held-out: 28.3 dB with 16 frames, 38.8 with 32).
pub const STREAM_FOLDS: usize = 4;
/// With fewer search samples than this, candidates are measured on the samples the
/// ranges were collected on (no split).
pub const MIN_SPLIT_SAMPLES: usize = 8;
/// Candidates the lowering pass tries at most.
pub const MAX_LOWERING_TRIES: usize = 4;

/// What to search for and on which data.
#[derive(Debug, Clone)]
pub struct SearchOptions<'a> {
    /// Every real-valued model output must reach this SQNR, dB.
    pub target_db: f64,
    /// Search samples (the calibration data).
    pub calibration: &'a Path,
    /// Where the result is measured; `None`: the calibration data.
    pub validation: Option<&'a Path>,
    /// How samples are read (image normalisation, state resets, a sample limit).
    pub samples: SampleOptions,
    /// The observer the user's ranges were collected with (the search collects its
    /// own ranges on part of the calibration data with it).
    pub observer: crate::calib::ObserverKind,
}

/// One operator the search may raise (indices of the graph the engine plans).
struct Candidate {
    subgraph: usize,
    operator: usize,
    sensitivity_db: Option<f64>,
    /// Whether it may run in 16x8 inside an int8 model (an int8 run, a 16x8 kernel in
    /// the rule table, subgraph 0, not already 16x8 by `--int16`).
    int16: bool,
}

/// A candidate's precision in a plan, from the run's width up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Level {
    /// The run's width (int8, or 16x8 in an int16x8 run).
    Base,
    /// 16x8 inside an int8 model.
    Int16,
    Float,
}

/// The float model's side of the search: the samples candidates are measured on and
/// the float outputs for them, computed once.
struct Cache {
    samples: Vec<Vec<Value>>,
    sequences: SequenceIds,
    /// Index of `samples[0]` in the data (sequence ids are per data sample).
    offset: usize,
    reset: crate::interp::ResetState,
    float_outputs: Vec<Vec<Value>>,
}

impl Cache {
    fn new(
        model: &Model,
        samples: Vec<Vec<Value>>,
        sequences: SequenceIds,
        offset: usize,
        reset: crate::interp::ResetState,
    ) -> Result<Cache> {
        let mut runner = compare::Runner::reference(model, &[])?;
        runner.set_reset_policy(reset, model);
        let mut float_outputs = Vec::with_capacity(samples.len());
        for (i, s) in samples.iter().enumerate() {
            if sequences.starts_sequence(offset + i) {
                runner.reset_state()?;
            }
            float_outputs.push(runner.run(s)?.outputs);
        }
        Ok(Cache {
            samples,
            sequences,
            offset,
            reset,
            float_outputs,
        })
    }

    /// [`Cache::new`] with the float outputs computed elsewhere (a calibration run of
    /// the same samples in the same order, as [`Cache::new`] would run them: a unit
    /// test compares the two).
    fn with_outputs(
        samples: Vec<Vec<Value>>,
        sequences: SequenceIds,
        offset: usize,
        reset: crate::interp::ResetState,
        float_outputs: Vec<Vec<Value>>,
    ) -> Cache {
        Cache {
            samples,
            sequences,
            offset,
            reset,
            float_outputs,
        }
    }

    fn starts_sequence(&self, i: usize) -> bool {
        self.sequences.starts_sequence(self.offset + i)
    }

    /// Runs `quant` on the search samples and appends, per model output `k`, each
    /// sample's (signal, error) energies to `errors[k]` (real-valued outputs only; a NaN
    /// error counts as +∞). Stops, returning `false`, as soon as `fails(errors)` (the
    /// plan fails whatever the other samples give). Samples run side by side when no
    /// state survives a run ([`compare::runner::Parallel`]; the first one alone, on
    /// which a plan far from the target fails already); their energies are added
    /// one sample after the other, in order, checking `fails` after each, so the result
    /// is that of [`Cache::errors_sequential`], its reference twin (a test compares
    /// them).
    fn errors(
        &self,
        float: &Model,
        quant: &Model,
        errors: &mut Vec<Energies>,
        fails: &dyn Fn(&[Energies]) -> bool,
    ) -> Result<bool> {
        if crate::interp::state::is_stateful(quant) {
            return self.errors_sequential(float, quant, errors, fails);
        }
        let pairs = compare::match_outputs(float, quant)?;
        if errors.len() < pairs.len() {
            errors.resize(pairs.len(), Vec::new());
        }
        let mut runner = compare::runner::Parallel::new(quant)?;
        let (n, step) = (self.samples.len(), runner.workers().max(1));
        // The first sample alone: a plan far from the target fails on it, and the
        // others would be run for nothing.
        let starts = std::iter::once(0).chain((1..n).step_by(step));
        for start in starts.take_while(|&s| s < n) {
            let end = if start == 0 { 1 } else { (start + step).min(n) };
            for (i, q) in (start..end).zip(runner.run(&self.samples[start..end])) {
                self.add_errors(i, &pairs, &q?, errors)?;
                if fails(errors) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// [`Cache::errors`] one sample after the other on one interpreter, resetting its
    /// state where a sequence starts.
    fn errors_sequential(
        &self,
        float: &Model,
        quant: &Model,
        errors: &mut Vec<Energies>,
        fails: &dyn Fn(&[Energies]) -> bool,
    ) -> Result<bool> {
        let pairs = compare::match_outputs(float, quant)?;
        if errors.len() < pairs.len() {
            errors.resize(pairs.len(), Vec::new());
        }
        let mut runner = compare::Runner::reference(quant, &[])?;
        runner.set_reset_policy(self.reset, quant);
        for (i, s) in self.samples.iter().enumerate() {
            if self.starts_sequence(i) {
                runner.reset_state()?;
            }
            let q = runner.run(s)?.outputs;
            self.add_errors(i, &pairs, &q, errors)?;
            if fails(errors) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Appends sample `i`'s (signal, error) energies of the quantized outputs `q` to
    /// `errors` (see [`Cache::errors`]).
    fn add_errors(
        &self,
        i: usize,
        pairs: &[compare::Pair],
        q: &[Value],
        errors: &mut [Energies],
    ) -> Result<()> {
        for (k, pair) in pairs.iter().enumerate() {
            let (a, b) = pair.output.unwrap_or((k, k));
            let (Some(x), Some(y)) = (self.float_outputs[i].get(a), q.get(b)) else {
                return Err(Error::Internal(format!("output {k} missing from a run")));
            };
            let data = |why| {
                Error::Data(format!(
                    "sample {i}: output {k} ({:?}): {why}",
                    pair.float.name
                ))
            };
            if pair.kind == Kind::Real {
                let mut one = Accumulator::default();
                compare::accumulate(pair, &mut one, x, y).map_err(data)?;
                let m = one.metrics();
                let signal: f64 = x.data.to_f64_vec().iter().map(|v| v * v).sum();
                let error = if m.identical {
                    0.0
                } else if m.mse.is_nan() {
                    f64::INFINITY
                } else {
                    m.mse * one.n as f64
                };
                errors[k].push((signal, error));
            }
        }
        Ok(())
    }
}

/// One fold of the search data: the samples it holds out, the ranges fitted on the
/// others, and the float outputs of its held-out samples when another fold's calibration
/// run computed them as [`Cache::new`] would (`None`: run them again).
struct Fold {
    held: std::ops::Range<usize>,
    ranges: crate::calib::Ranges,
    float_outputs: Option<Vec<Vec<Value>>>,
}

/// The `k` folds of `all`: fold f holds out `held(f)` and fits its ranges on the samples
/// before and after it, each span run from a reset state. The float outputs fold f is
/// measured against come from another fold's calibration run, from a span that starts
/// where `held(f)` starts (fold f − 1's second span; fold 1's first span for fold 0), so
/// the held-out samples are not run through the float model a second time.
fn calibrate_folds(
    model: &Model,
    observer: crate::calib::ObserverKind,
    all: &[Vec<Value>],
    k: usize,
    sequences: &SequenceIds,
    reset: crate::interp::ResetState,
) -> Result<Vec<Fold>> {
    use rayon::prelude::*;
    let held = |f: usize| f * all.len() / k..(f + 1) * all.len() / k;
    // The folds' calibrations are independent (each its own interpreter and
    // collector, samples in the same order): side by side.
    let fitted = (0..k)
        .into_par_iter()
        .map(|g| {
            let h = held(g);
            let mut keep = Vec::new();
            if g + 1 < k {
                keep.push(held(g + 1));
            }
            if g == 1 {
                keep.push(held(0));
            }
            let mut kept = Vec::new();
            let mut c = crate::calib::Calibrator::new(model, observer)?;
            c.interpreter().set_reset_policy(reset);
            c.detect_stream();
            for span in [0..h.start, h.end..all.len()] {
                let start = span.start;
                for (i, x) in all[span].iter().enumerate() {
                    if i == 0 || sequences.starts_sequence(start + i) {
                        c.interpreter().reset_state();
                    }
                    // Kept outputs lie in a span that starts where their fold starts:
                    // they equal a run of that fold alone from a reset state.
                    let j = start + i;
                    if keep.iter().any(|r| r.contains(&j)) {
                        kept.push((j, c.add_sample_outputs(x)?));
                    } else {
                        c.add_sample(x)?;
                    }
                }
            }
            Ok((c.ranges(), kept))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut outputs: Vec<Option<Vec<Value>>> = vec![None; all.len()];
    let mut ranges = Vec::with_capacity(k);
    for (r, kept) in fitted {
        for (j, o) in kept {
            outputs[j] = Some(o);
        }
        ranges.push(r);
    }
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(f, ranges)| {
            let held = held(f);
            let float_outputs = outputs[held.clone()].iter_mut().map(Option::take).collect();
            Fold {
                held,
                ranges,
                float_outputs,
            }
        })
        .collect())
}

/// One output's (signal, error) energies, one pair per scored sample.
type Energies = Vec<(f64, f64)>;

/// SQNR dB of energies (+∞ without error, −∞ for an infinite one).
fn ratio_db(signal: f64, error: f64) -> f64 {
    if error == 0.0 {
        f64::INFINITY
    } else if !error.is_finite() {
        f64::NEG_INFINITY
    } else {
        10.0 * (signal / error).log10()
    }
}

/// The decision rule: the score of a plan from each held-out search sample's (signal,
/// error) energies per model output (`errors[k]`, the held-out samples of every fold,
/// each scored by a model whose ranges were fitted without it). Per output, the lower
/// of two estimates of the SQNR on unseen data, then the lowest over the outputs, minus
/// [`SEARCH_MARGIN_DB`]:
/// * the **pooled** SQNR (the target's own metric) with the mean error raised to its
///   upper confidence bound, mean + [`NOISE_Z`] standard errors of the per-sample
///   errors: the error of a few samples (a clipped logit) weighs in by how much it
///   varies, not only by its share of the mean;
/// * the **worst single sample**'s SQNR: held-out data have their own outliers (one
///   held-out sample of 32 clipping where no calibration sample did), which a bound
///   from the calibration samples' spread cannot see; a plan must hold on each sample.
fn plan_score(errors: &[Energies]) -> f64 {
    errors
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| pooled_bound_db(e).min(worst_sample_db(e)))
        .fold(f64::INFINITY, f64::min)
        - SEARCH_MARGIN_DB
}

/// The lowest single sample's SQNR.
fn worst_sample_db(e: &[(f64, f64)]) -> f64 {
    e.iter()
        .map(|&(s, x)| ratio_db(s, x))
        .fold(f64::INFINITY, f64::min)
}

/// The pooled SQNR with the mean error at its upper confidence bound (see
/// [`plan_score`]).
fn pooled_bound_db(e: &[(f64, f64)]) -> f64 {
    let n = e.len() as f64;
    let signal = e.iter().map(|p| p.0).sum::<f64>() / n;
    let mean = e.iter().map(|p| p.1).sum::<f64>() / n;
    let var = e.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    ratio_db(signal, mean + NOISE_Z * (var / n).sqrt())
}

/// An upper bound of [`plan_score`] on every superset of `errors` (the samples not
/// measured yet), given each output's signal energy over all held-out samples
/// (`signal[k]`): the worst sample so far, and the pooled SQNR with the error so far
/// (the error only grows). Below the goal the plan fails, whatever the rest gives.
fn score_bound(errors: &[Energies], signal: &[f64]) -> f64 {
    errors
        .iter()
        .zip(signal)
        .filter(|(e, _)| !e.is_empty())
        .map(|(e, &s)| {
            let error: f64 = e.iter().map(|p| p.1).sum();
            ratio_db(s, error).min(worst_sample_db(e))
        })
        .fold(f64::INFINITY, f64::min)
        - SEARCH_MARGIN_DB
}

/// The search state: the model, the options every candidate shares, what it measured.
struct Search<'a> {
    model: &'a Model,
    /// Per fold: the options with that fold's ranges, and the samples it is measured on.
    folds: Vec<(quant::Options, Cache)>,
    candidates: Vec<Candidate>,
    goal_db: f64,
    /// Per model output: the float model's signal energy over every held-out sample.
    signal: Vec<f64>,
    evaluations: usize,
    /// Memo: plan (one level per candidate) → score.
    seen: HashMap<Vec<Level>, f64>,
}

impl Search<'_> {
    fn options(&self, base: &quant::Options, plan: &[Level]) -> quant::Options {
        let mut o = base.clone();
        for (c, &level) in plan.iter().enumerate() {
            let select = OpSelector::Index {
                subgraph: self.candidates[c].subgraph,
                operator: self.candidates[c].operator,
            };
            let by = KeepFloatBy::Search {
                sensitivity_db: self.candidates[c].sensitivity_db,
            };
            match level {
                Level::Base => {}
                Level::Int16 => o.int16.push(Int16 { select, by }),
                Level::Float => o.keep_float.push(KeepFloat { select, by }),
            }
        }
        o
    }

    /// The level candidate `c` is raised to first: 16x8 where it can, else float.
    fn raised(&self, c: usize) -> Level {
        if self.candidates[c].int16 {
            Level::Int16
        } else {
            Level::Float
        }
    }

    /// The plan with candidates `0..j` float, `j..k` raised one level, the rest at the
    /// run's width (candidates are ranked most sensitive first).
    fn plan(&self, k: usize, j: usize) -> Vec<Level> {
        (0..self.candidates.len())
            .map(|c| match c {
                _ if c < j => Level::Float,
                _ if c < k => self.raised(c),
                _ => Level::Base,
            })
            .collect()
    }

    /// The worst output SQNR with plan `plan` (−∞ when that plan does not quantize).
    /// Below the goal, measuring stops at the first fold and sample that fail (the
    /// value is then an upper bound: enough for [`Search::meets`]; the unreachable
    /// case's [`Search::best_measured`] compares such bounds).
    fn eval(&mut self, plan: &[Level]) -> Result<f64> {
        let key = plan.to_vec();
        let set: Vec<usize> = (0..plan.len())
            .filter(|&c| plan[c] != Level::Base)
            .collect();
        if let Some(&w) = self.seen.get(&key) {
            return Ok(w);
        }
        if !plan.is_empty() && plan.iter().all(|&l| l == Level::Float) {
            // Every operator float: the float model itself.
            return Ok(f64::INFINITY);
        }
        self.evaluations += 1;
        let mut errors: Vec<Energies> = Vec::new();
        let (signal, goal) = (&self.signal, self.goal_db);
        let fails = |e: &[Energies]| score_bound(e, signal) < goal;
        let mut complete = true;
        for (base, cache) in &self.folds {
            let o = self.options(base, plan);
            match quant::quantize(self.model, &o) {
                Ok((q, _)) => {
                    if !cache.errors(self.model, &q, &mut errors, &fails)? {
                        complete = false;
                        break;
                    }
                }
                Err(e) => {
                    log::info!(
                        "target-sqnr: a plan with {} operators raised does not quantize: {e}",
                        set.len()
                    );
                    self.seen.insert(key, f64::NEG_INFINITY);
                    return Ok(f64::NEG_INFINITY);
                }
            }
        }
        let w = if complete {
            plan_score(&errors)
        } else {
            score_bound(&errors, signal)
        };
        log::info!(
            "target-sqnr: {} operator(s) int16x8, {} float → worst output {w:.2} dB",
            plan.iter().filter(|&&l| l == Level::Int16).count(),
            plan.iter().filter(|&&l| l == Level::Float).count(),
        );
        self.seen.insert(key, w);
        Ok(w)
    }

    fn meets(&mut self, plan: &[Level]) -> Result<bool> {
        Ok(self.eval(plan)? >= self.goal_db)
    }

    /// The smallest `x` in `1..=n` with `pass(x)`, by galloping (1, 2, 4... until one
    /// passes, `n` last) then bisection between the last that failed and the first
    /// that passed (`pass` grows, not strictly, with `x`; `x = 0` is known to fail);
    /// `None` when `pass(n)` fails. Galloping from 1 finds a small prefix where one
    /// suffices (the smallest model), also when a middle prefix is worse than a
    /// short one (a mixed-width boundary can cost more than it gains).
    fn bisect(
        &mut self,
        n: usize,
        plan: impl Fn(&Self, usize) -> Vec<Level>,
    ) -> Result<Option<usize>> {
        let (mut lo, mut hi) = (0, 1);
        loop {
            let x = hi.min(n);
            let p = plan(self, x);
            if self.meets(&p)? {
                hi = x;
                break;
            }
            if x == n {
                return Ok(None);
            }
            lo = x;
            hi = x * 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let p = plan(self, mid);
            if self.meets(&p)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let p = plan(self, hi);
        Ok(self.meets(&p)?.then_some(hi))
    }

    /// The search proper (steps 3 to 5 of the module documentation): the plan chosen,
    /// one level per candidate.
    fn choose(&mut self) -> Result<Vec<Level>> {
        let n = self.candidates.len();
        let base = self.plan(0, 0);
        if n == 0 || self.meets(&base)? {
            return Ok(base);
        }
        // Raise the most sensitive operators one level (16x8 where it can, else float).
        let mut plan = match self.bisect(n, |s, k| s.plan(k, 0))? {
            Some(k) => self.plan(k, 0),
            // Every candidate raised is not enough: float from the most sensitive on.
            None => match self.bisect(n, |s, j| s.plan(n, j))? {
                Some(j) => self.plan(n, j),
                None => return Ok(self.best_measured()),
            },
        };
        // Lowering: the least sensitive raised operators first, one level down
        // (float → 16x8 where it can, → the run's width).
        let raised: Vec<usize> = (0..n).rev().filter(|&c| plan[c] != Level::Base).collect();
        for c in raised.into_iter().take(MAX_LOWERING_TRIES) {
            if plan.iter().filter(|&&l| l != Level::Base).count() <= 1 {
                break;
            }
            let lower = match plan[c] {
                Level::Float if self.candidates[c].int16 => Level::Int16,
                _ => Level::Base,
            };
            let mut p = plan.clone();
            p[c] = lower;
            if self.meets(&p)? {
                plan = p;
            }
        }
        Ok(plan)
    }

    /// The best plan measured (the target unreachable): the highest score, then the
    /// fewest float operators, then the fewest 16x8 ones.
    fn best_measured(&self) -> Vec<Level> {
        let cost = |p: &Vec<Level>| {
            (
                p.iter().filter(|&&l| l == Level::Float).count(),
                p.iter().filter(|&&l| l == Level::Int16).count(),
            )
        };
        self.seen
            .iter()
            .filter(|(_, w)| w.is_finite() || **w == f64::INFINITY)
            .max_by(|a, b| a.1.total_cmp(b.1).then(cost(b.0).cmp(&cost(a.0))))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| self.plan(0, 0))
    }
}

/// Searches the plan, quantizes with it, and measures the result (see the module
/// documentation). `base` holds the user's options (mode, ranges, `--keep-float`...).
pub fn search(model: &Model, base: &quant::Options, s: &SearchOptions) -> Result<(Model, Report)> {
    if !matches!(base.mode, Mode::Int8 | Mode::Int16x8) {
        return Err(quant::OptionError::TargetSqnrMode {
            mode: base.mode.name(),
        }
        .into());
    }
    // The search data: the first calibration samples, split into folds (two; four for a
    // stream). Each fold's ranges are collected on the other folds' samples and its
    // candidates measured on its own, and a plan must meet the target in every fold: the search sees data its ranges
    // were not fitted to, as a deployed model does (with few samples, the SQNR on the
    // calibration data itself is optimistic by several dB).
    let opts = SampleOptions {
        max_samples: Some(
            s.samples
                .max_samples
                .unwrap_or(SEARCH_SAMPLES)
                .min(SEARCH_SAMPLES),
        ),
        ..s.samples.clone()
    };
    let source = Samples::open(s.calibration, model, &opts)?;
    if source.is_empty() {
        return Err(Error::Data(format!(
            "{}: no samples",
            s.calibration.display()
        )));
    }
    let sequences = source.sequences();
    let reset = source.reset_policy();
    let mut phase = Phases::start();
    let all = source.collect::<Result<Vec<_>>>()?;
    let searched = all.len();
    // Every candidate (and the final model) quantizes the same weights: their scales
    // are computed once.
    let scale_cache = Some(std::sync::Arc::new(
        quant::ptq::clipping::ScaleCache::default(),
    ));
    let mut search_base = base.clone();
    search_base.scale_cache = scale_cache.clone();
    search_base.interface = quant::integer::Interface::Float;
    let decisions = decision_cones(model, base)?;
    search_base.keep_float.extend(decisions.iter().cloned());
    let mut folds = Vec::new();
    let k = if crate::calib::carries_state(model, reset) {
        STREAM_FOLDS
    } else {
        SEARCH_FOLDS
    };
    if all.len() >= MIN_SPLIT_SAMPLES {
        // Last fold first: its all-integer model gives the sensitivities.
        for fold in calibrate_folds(model, s.observer, &all, k, &sequences, reset)?
            .into_iter()
            .rev()
        {
            let samples = all[fold.held.clone()].to_vec();
            let offset = fold.held.start;
            let cache = match fold.float_outputs {
                Some(outs) => Cache::with_outputs(samples, sequences.clone(), offset, reset, outs),
                None => Cache::new(model, samples, sequences.clone(), offset, reset)?,
            };
            let mut o = search_base.clone();
            o.ranges = Some(fold.ranges);
            folds.push((o, cache));
        }
    } else {
        let cache = Cache::new(model, all, sequences, 0, reset)?;
        folds.push((search_base, cache));
    }
    phase.done("fold calibrations");
    // Each output's signal energy over every held-out sample.
    let mut signal: Vec<f64> = Vec::new();
    for (_, cache) in &folds {
        for outs in &cache.float_outputs {
            if signal.len() < outs.len() {
                signal.resize(outs.len(), 0.0);
            }
            for (k, x) in outs.iter().enumerate() {
                signal[k] += x.data.to_f64_vec().iter().map(|v| v * v).sum::<f64>();
            }
        }
    }
    // The all-integer model of the first fold and every operator's own error: the
    // sensitivities.
    let (q0, r0) = quant::quantize(model, &folds[0].0)?;
    // Candidates: every operator the all-integer plan quantizes; its sensitivity is the
    // lowest own-error SQNR of its outputs (`None`: not measured, e.g. inside a called
    // subgraph).
    let folded_names = output_names(model, base)?;
    let folded_model = folded(model, base)?;
    let sensitivity_in = |own: &HashMap<String, f64>, si: usize, oi: usize| -> Option<f64> {
        if si != 0 {
            return None;
        }
        folded_names
            .get(&(si, oi))
            .into_iter()
            .flatten()
            .filter_map(|n| own.get(n.as_str()).copied())
            .reduce(|a, b| if a.is_nan() || a < b { a } else { b })
    };
    let int16_kernel = |si: usize, oi: usize| -> bool {
        let m = &folded_model;
        si == 0
            && m.subgraphs[si].operators.get(oi).is_some_and(|op| {
                let kind = m.builtin(op);
                kind != crate::fb::BuiltinOperator::UnidirectionalSequenceLstm
                    && crate::rules::rule_for(kind).is_some_and(|r| r.supports(16))
            })
    };
    phase.done("all-integer model");
    let (own, own16) = sensitivities(model, &folds[0], &q0, &r0, |f| {
        base.mode == Mode::Int8 && f.width.is_none() && int16_kernel(f.subgraph, f.operator)
    })?;
    phase.done("sensitivities");
    let sensitivity_of = |si: usize, oi: usize| sensitivity_in(&own, si, oi);
    let mut candidates: Vec<Candidate> = r0
        .ops
        .iter()
        .filter(|f| f.fate == Fate::Quantized)
        .map(|f| Candidate {
            subgraph: f.subgraph,
            operator: f.operator,
            sensitivity_db: sensitivity_of(f.subgraph, f.operator),
            int16: base.mode == Mode::Int8
                && f.width.is_none()
                && int16_kernel(f.subgraph, f.operator),
        })
        .collect();
    // Most sensitive first: NaN, then the lowest own-error SQNR; `None` last, in graph
    // order.
    let key = |c: &Candidate| match c.sensitivity_db {
        Some(d) if d.is_nan() => f64::NEG_INFINITY,
        Some(d) => d,
        None => f64::INFINITY,
    };
    candidates.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let n = candidates.len();
    let mut st = Search {
        model,
        folds,
        candidates,
        goal_db: s.target_db,
        signal,
        evaluations: 0,
        seen: HashMap::new(),
    };
    // 16x8 only where it measures better than the run's width: the operators' own
    // error with every 16x8 candidate in 16x8 (LiteRT's 16x8 SOFTMAX, built on lookup
    // tables, adds more error than the int8 one on confident outputs).
    if st.candidates.iter().any(|c| c.int16)
        && let Some(own16) = &own16
    {
        for c in st.candidates.iter_mut().filter(|c| c.int16) {
            let wide = sensitivity_in(own16, c.subgraph, c.operator);
            c.int16 = match (wide, c.sensitivity_db) {
                (Some(w), Some(b)) => w > b || (w == b && w.is_infinite()),
                _ => true,
            };
            if !c.int16 {
                log::info!(
                    "target-sqnr: {}:{} stays out of 16x8 (own error {:.1} dB in 16x8, {:.1} in the run's width)",
                    c.subgraph,
                    c.operator,
                    wide.unwrap_or(f64::NAN),
                    c.sensitivity_db.unwrap_or(f64::NAN)
                );
            }
        }
    }
    let chosen = st.choose()?;
    phase.done(&format!("search ({} evaluations)", st.evaluations));
    // The final model: the user's ranges (all the calibration data) and interface.
    let mut base = base.clone();
    base.keep_float.extend(decisions);
    base.scale_cache = scale_cache;
    let base = &base;
    let (out, mut report) = if n > 0 && chosen.iter().all(|&l| l == Level::Float) {
        float_model(model, &r0)
    } else {
        quant::quantize(model, &st.options(base, &chosen))?
    };
    phase.done("final model");
    // The result, measured as `compare` measures it.
    let data = s.validation.unwrap_or(s.calibration);
    let measured = match closing_float_outputs(model, &mut st.folds, s, searched)? {
        Some(f) => compare::compare_with_float_outputs(model, &out, &f, data, &s.samples)?,
        None => compare::compare(model, &out, data, &s.samples, &compare::Options::default())?,
    };
    phase.done("closing measurement");
    let outputs: Vec<OutputSqnr> = measured
        .outputs
        .iter()
        .map(|e| OutputSqnr {
            name: e.name.clone(),
            sqnr_db: if e.compared_as == "real" {
                e.sqnr_db.filter(|d| !d.is_nan())
            } else {
                None
            },
            identical: e.identical,
        })
        .collect();
    let reached = measured
        .outputs
        .iter()
        .filter(|e| e.compared_as == "real")
        .all(|e| e.identical || e.sqnr_db.is_some_and(|d| d >= s.target_db));
    let precision = match base.mode {
        Mode::Int16x8 => "int16x8",
        _ => "int8",
    };
    let plan = report
        .ops
        .iter()
        .map(|f| {
            let sensitivity_db = sensitivity_of(f.subgraph, f.operator);
            let (precision, reason) = match (&f.fate, &f.width) {
                (Fate::Quantized, Some(w)) => (w.precision.as_str(), w.reason.clone()),
                (Fate::Quantized, None) => (precision, "quantized".to_string()),
                (Fate::Float { reason }, _) => ("float", reason.to_string()),
            };
            OpPrecision {
                subgraph: f.subgraph,
                operator: f.operator,
                op: f.op.clone(),
                precision: precision.into(),
                sensitivity_db,
                reason,
            }
        })
        .collect();
    report.mixed_precision = Some(MixedPrecision {
        target_sqnr_db: s.target_db,
        search_margin_db: SEARCH_MARGIN_DB,
        reached,
        measured_on: data.display().to_string(),
        measured_samples: measured.samples,
        outputs,
        evaluations: st.evaluations,
        plan,
    });
    if !reached {
        report.note(format!(
            "--target-sqnr {}: not reached on {} even with the operators the search could \
             keep float; the best plan found was written (outputs: {})",
            s.target_db,
            data.display(),
            render_outputs(report.mixed_precision.as_ref())
        ));
    }
    Ok((out, report))
}

/// The float outputs the closing measurement compares with, taken from the search's
/// folds, when it measures on the search samples themselves: no validation data, every
/// calibration sample searched (at most [`SEARCH_SAMPLES`] of them), and no state
/// surviving a run (so that [`compare::compare_with_float_outputs`] reports what
/// [`compare::compare`] does: an integration test compares them). `None`: the float
/// model runs again.
fn closing_float_outputs(
    model: &Model,
    folds: &mut [(quant::Options, Cache)],
    s: &SearchOptions,
    searched: usize,
) -> Result<Option<crate::calib::FloatOutputs>> {
    if s.validation.is_some() || crate::interp::state::is_stateful(model) {
        return Ok(None);
    }
    if Samples::open(s.calibration, model, &s.samples)?.len() != searched {
        return Ok(None);
    }
    let mut caches: Vec<&mut Cache> = folds.iter_mut().map(|(_, c)| c).collect();
    caches.sort_by_key(|c| c.offset);
    let mut next = 0;
    for c in &caches {
        if c.offset != next || c.float_outputs.len() != c.samples.len() {
            return Ok(None);
        }
        next += c.samples.len();
    }
    if next != searched {
        return Ok(None);
    }
    let outputs = caches
        .into_iter()
        .flat_map(|c| std::mem::take(&mut c.float_outputs))
        .collect();
    Ok(Some(crate::calib::FloatOutputs(outputs)))
}

/// Wall and CPU time of the search's phases, logged (`-v`) as each ends.
struct Phases {
    wall: std::time::Instant,
    cpu: f64,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            wall: std::time::Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    fn done(&mut self, what: &str) {
        let cpu = process_cpu_seconds();
        log::info!(
            "target-sqnr: {what}: {:.3} s wall, {:.3} s CPU",
            self.wall.elapsed().as_secs_f64(),
            cpu - self.cpu
        );
        *self = Phases {
            wall: std::time::Instant::now(),
            cpu,
        };
    }
}

/// User + system CPU time of the process so far, seconds (NaN where unknown).
fn process_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `u` is a valid, writable rusage; getrusage fills it or fails.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) } == 0 {
            // SAFETY: getrusage succeeded, so `u` is initialised.
            let u = unsafe { u.assume_init() };
            let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
            return t(u.ru_utime) + t(u.ru_stime);
        }
    }
    f64::NAN
}

/// Own-error SQNR dB by float tensor name ([`own_errors`]).
type OwnErrors = HashMap<String, f64>;

/// The operators' own errors ([`own_errors`], on `fold`'s samples) in the all-integer
/// model `q0` (report `r0`) and, when some operator may run in 16x8 (`int16` of its
/// entry in `r0`) and that model quantizes, in the model with every such operator in
/// 16x8; both measured in one pass (one float run per sample).
fn sensitivities(
    model: &Model,
    fold: &(quant::Options, Cache),
    q0: &Model,
    r0: &Report,
    int16: impl Fn(&crate::quant::report::OpFate) -> bool,
) -> Result<(OwnErrors, Option<OwnErrors>)> {
    let (base, cache) = fold;
    let mut o = base.clone();
    for f in r0
        .ops
        .iter()
        .filter(|f| f.fate == Fate::Quantized && int16(f))
    {
        o.int16.push(Int16 {
            select: OpSelector::Index {
                subgraph: f.subgraph,
                operator: f.operator,
            },
            by: KeepFloatBy::Search {
                sensitivity_db: None,
            },
        });
    }
    let q16 = if o.int16.len() > base.int16.len() {
        quant::quantize(model, &o).ok().map(|(q, _)| q)
    } else {
        None
    };
    let mut qs = vec![q0];
    qs.extend(q16.as_ref());
    let mut own = own_errors(model, &qs, cache)?.into_iter();
    let own0 = own.next().unwrap_or_default();
    Ok((own0, own.next()))
}

/// The plan that keeps every operator float: the float model, unchanged, with a report
/// saying so (each operator's fate: the all-integer plan's reason, or the search's).
fn float_model(model: &Model, all_integer: &Report) -> (Model, Report) {
    let mut report = Report {
        mode: all_integer.mode.clone(),
        ..Default::default()
    };
    report.ops = all_integer
        .ops
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.fate == Fate::Quantized {
                f.fate = Fate::Float {
                    reason: FloatReason::Requested {
                        why: "kept float by --target-sqnr (the target needs every operator float)"
                            .into(),
                    },
                };
            }
            f
        })
        .collect();
    report.note(
        "--target-sqnr: only the float model reaches the target on the search data; it is \
         written unchanged",
    );
    let mut out = model.clone();
    out.source = None;
    (out, report)
}

/// Operators whose output is BOOL computed from float activations (GREATER, EQUAL...),
/// or a step function of them (FLOOR, CEIL, ROUND, FLOOR_DIV, FLOOR_MOD, SIGN): they and
/// every operator their real inputs come from (up to the model inputs) stay float, so a
/// decision (a WHILE trip count, a SELECT) or a step is taken on exact values (held-out
/// ops_elementwise: one FLOOR_DIV step flipped by a 16x8 producer's rounding cost 30 dB
/// where the calibration data scored 88). Indices of the graph the engine plans.
fn decision_cones(model: &Model, base: &quant::Options) -> Result<Vec<KeepFloat>> {
    use crate::fb::{BuiltinOperator as Op, TensorType};
    let m = folded(model, base)?;
    let mut keep = Vec::new();
    for (si, sg) in m.subgraphs.iter().enumerate() {
        let producers = sg.producers();
        let float_inputs = |oi: usize| -> Vec<usize> {
            sg.operators[oi]
                .inputs
                .iter()
                .filter_map(|&t| usize::try_from(t).ok())
                .filter(|&t| {
                    sg.tensors
                        .get(t)
                        .is_some_and(|x| x.dtype == TensorType::Float32 && !m.is_constant(x))
                })
                .collect()
        };
        let mut marked = vec![false; sg.operators.len()];
        for (oi, op) in sg.operators.iter().enumerate() {
            let bool_out = !op.outputs.is_empty()
                && op.outputs.iter().all(|&t| {
                    usize::try_from(t)
                        .ok()
                        .and_then(|t| sg.tensors.get(t))
                        .is_some_and(|x| x.dtype == TensorType::Bool)
                });
            // Step functions of float values: a rounding error flips their output by
            // a whole unit, as it flips a comparison.
            let step_out = matches!(
                m.builtin(op),
                Op::Floor | Op::Ceil | Op::Round | Op::FloorDiv | Op::FloorMod | Op::Sign
            );
            if !(bool_out || step_out) || float_inputs(oi).is_empty() {
                continue;
            }
            let decision = format!("{si}:{oi} {}", m.op_display_name(op));
            let mut stack = vec![oi];
            while let Some(o) = stack.pop() {
                if std::mem::replace(&mut marked[o], true) {
                    continue;
                }
                keep.push(KeepFloat {
                    select: OpSelector::Index {
                        subgraph: si,
                        operator: o,
                    },
                    by: KeepFloatBy::Decision {
                        decision: decision.clone(),
                    },
                });
                stack.extend(float_inputs(o).into_iter().filter_map(|t| producers[t]));
            }
        }
    }
    Ok(keep)
}

/// The graph the integer engine plans: weight encodings folded.
fn folded(model: &Model, base: &quant::Options) -> Result<Model> {
    let mut m = model.clone();
    let mut scratch = Report::default();
    let opts = quant::fold::FoldOptions {
        keep_sparse: base.mode == Mode::Float16,
    };
    quant::fold::fold_weight_encodings(&mut m, opts, &mut scratch)?;
    Ok(m)
}

/// Output tensor names of every operator of the graph the engine plans (weight
/// encodings folded), by (subgraph, operator).
fn output_names(
    model: &Model,
    base: &quant::Options,
) -> Result<HashMap<(usize, usize), Vec<String>>> {
    let m = folded(model, base)?;
    let mut names = HashMap::new();
    for (si, sg) in m.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            let outs = op
                .outputs
                .iter()
                .filter_map(|&t| usize::try_from(t).ok())
                .filter_map(|t| sg.tensors.get(t))
                .map(|t| t.name.clone())
                .collect();
            names.insert((si, oi), outs);
        }
    }
    Ok(names)
}

/// `name 31.2 dB, name 28.0 dB` for messages.
pub fn render_outputs(m: Option<&MixedPrecision>) -> String {
    m.map(|m| {
        m.outputs
            .iter()
            .map(|o| {
                format!(
                    "{:?} {}",
                    o.name,
                    match o.sqnr_db {
                        _ if o.identical => "identical".to_string(),
                        Some(d) => format!("{d:.1} dB"),
                        None => "n/a".into(),
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// Each operator's own error (the sensitivity): the quantized model runs with every
/// real-valued activation that has a float counterpart replaced by that counterpart's
/// exact value (quantized to the tensor's own parameters), so that each operator sees
/// exact inputs and its output carries only the error it adds itself (rounding of its
/// output, its weights, its kernel). Result, per quantized model of `qs`: the lowest
/// single sample's SQNR dB of each such output against the float value (as the search
/// scores plans), by float tensor name (subgraph 0; +∞ when it adds none, NaN when its
/// error is not a number). Unlike the local SQNR of `compare --tensors`, an operator
/// that shrinks the error its inputs carry (SOFTMAX, an averaging FULLY_CONNECTED) is
/// not masked by it. The float model runs once per sample for all of `qs`.
fn own_errors(model: &Model, qs: &[&Model], cache: &Cache) -> Result<Vec<HashMap<String, f64>>> {
    // Samples side by side when no state survives a run (each on interpreters in their
    // initial state, as one after the other would be).
    let workers = if crate::interp::state::is_stateful(model) {
        1
    } else {
        rayon::current_num_threads()
    };
    own_errors_on(model, qs, cache, workers)
}

/// [`own_errors`] on `workers` threads: contiguous runs of samples, one per worker, each
/// with its own forks of the interpreters; the lowest SQNR is then taken in sample
/// order, so the result does not depend on `workers` (a test compares 1 and 2). One
/// worker runs the samples in order, resetting state where a sequence starts.
fn own_errors_on(
    model: &Model,
    qs: &[&Model],
    cache: &Cache,
    workers: usize,
) -> Result<Vec<HashMap<String, f64>>> {
    use crate::interp::Interpreter;
    let twins = qs
        .iter()
        .map(|q| twins(model, q))
        .collect::<Result<Vec<_>>>()?;
    let mut float = Interpreter::new(model)?;
    float.set_reset_policy(cache.reset);
    let mut quants = qs
        .iter()
        .map(|q| {
            let mut i = Interpreter::new(q)?;
            i.set_reset_policy(cache.reset);
            Ok(i)
        })
        .collect::<Result<Vec<_>>>()?;
    let n = cache.samples.len();
    let workers = workers.min(n).max(1);
    let per_sample: Vec<SampleOwnErrors> = if workers > 1 {
        use rayon::prelude::*;
        let span = |w: usize| w * n / workers..(w + 1) * n / workers;
        let mut sets: Vec<(Interpreter, Vec<Interpreter>)> = (1..workers)
            .map(|_| (float.fork(), quants.iter().map(Interpreter::fork).collect()))
            .collect();
        sets.push((float, quants));
        let parts = sets
            .par_iter_mut()
            .enumerate()
            .map(|(w, (float, quants))| {
                span(w)
                    .map(|i| sample_own_errors(float, quants, &twins, &cache.samples[i]))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Vec<_>>();
        let mut all = Vec::with_capacity(n);
        for part in parts {
            all.extend(part?);
        }
        all
    } else {
        let mut all = Vec::with_capacity(n);
        for (i, s) in cache.samples.iter().enumerate() {
            if cache.starts_sequence(i) {
                float.reset_state();
                for q in &mut quants {
                    q.reset_state();
                }
            }
            all.push(sample_own_errors(&mut float, &mut quants, &twins, s)?);
        }
        all
    };
    // The lowest over the samples, in sample order.
    let mut worst: Vec<HashMap<usize, f64>> = vec![HashMap::new(); qs.len()];
    for sample in per_sample {
        for (found, worst) in sample.into_iter().zip(&mut worst) {
            for (f, d) in found {
                let w = worst.entry(f).or_insert(f64::INFINITY);
                if d.is_nan() || d < *w {
                    *w = d;
                }
            }
        }
    }
    let names = &model.subgraphs[0].tensors;
    Ok(worst
        .iter()
        .map(|worst| {
            worst
                .iter()
                .filter_map(|(&f, &d)| Some((names.get(f)?.name.clone(), d)))
                .collect()
        })
        .collect())
}

/// One sample's own errors per quantized model of [`own_errors`]: (float tensor, SQNR
/// dB) of each tensor measured.
type SampleOwnErrors = Vec<Vec<(usize, f64)>>;

/// One sample of [`own_errors`]: the float model runs once, keeping its subgraph-0
/// values; each quantized model then runs with its twins measured against them and
/// replaced by them ([`measure_and_requantize`]).
fn sample_own_errors(
    float: &mut crate::interp::Interpreter,
    quants: &mut [crate::interp::Interpreter],
    twins: &[Twins],
    s: &[Value],
) -> Result<SampleOwnErrors> {
    use crate::interp::{Flow, TensorId};
    let mut values: HashMap<usize, Value> = HashMap::new();
    float.run_observed(s, &mut |id: TensorId, v: &Value| {
        if id.subgraph == 0 {
            values.insert(id.tensor, v.clone());
        }
        Flow::Continue
    })?;
    let mut found = Vec::with_capacity(quants.len());
    for (quant, twin) in quants.iter_mut().zip(twins) {
        let mut acc: HashMap<usize, OwnSums> = HashMap::new();
        quant.run_observed(s, &mut |id: TensorId, v: &Value| {
            if id.subgraph != 0 {
                return Flow::Continue;
            }
            let Some((f, side)) = twin.get(&id.tensor) else {
                return Flow::Continue;
            };
            let Some(exact) = values.get(f) else {
                return Flow::Continue;
            };
            match measure_and_requantize(exact, v, side, || acc.entry(*f).or_default()) {
                Some(r) => Flow::Replace(r),
                None => Flow::Continue,
            }
        })?;
        found.push(acc.iter().map(|(&f, a)| (f, a.db())).collect());
    }
    Ok(found)
}

/// Quantized tensor → (float tensor, its side to read values with): see [`twins`].
type Twins = HashMap<usize, (usize, compare::Side)>;

/// The quantized tensors [`own_errors`] measures and replaces: quantized tensor →
/// (float tensor, its side to read values with).
fn twins(model: &Model, q: &Model) -> Result<Twins> {
    use crate::fb::BuiltinOperator as B;
    let tm = compare::match_tensors(model, q)?;
    let mut twin: HashMap<usize, (usize, compare::Side)> = tm
        .pairs
        .iter()
        .chain(&tm.aliases)
        .filter(|p| p.kind == Kind::Real)
        .map(|p| (p.quant.tensor, (p.float.tensor, p.quant.clone())))
        .collect();
    // A DEQUANTIZE writing a model output under the float name: its input is the
    // quantized operator's output (renamed), the same float tensor.
    if let Some(qs) = q.subgraphs.first() {
        for op in &qs.operators {
            if q.builtin(op) != B::Dequantize {
                continue;
            }
            let (Some(i), Some(o)) = (
                op.inputs.first().and_then(|&t| usize::try_from(t).ok()),
                op.outputs.first().and_then(|&t| usize::try_from(t).ok()),
            ) else {
                continue;
            };
            let Some(t) = qs.tensors.get(i) else { continue };
            if twin.contains_key(&i) || q.is_constant(t) {
                continue;
            }
            if let Some((f, _)) = twin.get(&o).cloned() {
                let side = compare::Side {
                    tensor: i,
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.iter().map(|&d| i64::from(d)).collect(),
                    quant: t.quantized().cloned(),
                };
                twin.insert(i, (f, side));
            }
        }
    }
    Ok(twin)
}

/// The sums of an [`Accumulator`] an own error needs (its SQNR, and whether the values
/// are identical), each added in the same order as [`Accumulator::add_real`] adds it,
/// so that [`OwnSums::db`] is the accumulator's SQNR (+∞ when identical, NaN kept) to
/// the bit (a unit test checks); the other sums (dot product, the test side's energy, the largest error) are
/// left out.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct OwnSums {
    n: u64,
    sum_ref2: f64,
    sum_err2: f64,
    equal: u64,
}

impl OwnSums {
    #[inline(always)]
    fn add_real(&mut self, reference: &[f64], test: &[f64]) {
        for (&r, &t) in reference.iter().zip(test) {
            let e = r - t;
            self.sum_ref2 += r * r;
            self.sum_err2 += e * e;
            self.equal += u64::from(r == t);
        }
        self.n += reference.len().min(test.len()) as u64;
    }

    /// SQNR dB: +∞ when identical (or without error), NaN kept.
    fn db(&self) -> f64 {
        if self.n > 0 && self.equal == self.n || self.sum_err2 == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.sum_ref2 / self.sum_err2).log10()
        }
    }
}

/// One step of [`own_errors`] at a quantized tensor: adds the error of its value `got`
/// against the float value `exact` to the sums `acc` hands out (only when both read as
/// real values of the same length), and returns `exact` on `got`'s grid to run on with
/// ([`requantize`]; `None`: keep `got`). The common cases (float, or int8 / uint8 /
/// int16 with per-tensor parameters, against float32) go element by element in chunks
/// ([`own_sums`]), without the f64 copies of the whole tensor that
/// [`measure_and_requantize_reference`], its reference twin, makes; the sums are added
/// in the same order, so the result is the same to the bit (a unit test checks).
fn measure_and_requantize<'a>(
    exact: &Value,
    got: &Value,
    side: &compare::Side,
    acc: impl FnOnce() -> &'a mut OwnSums,
) -> Option<Value> {
    use crate::interp::Data;
    let Data::F32(x) = &exact.data else {
        return measure_and_requantize_reference(exact, got, side, acc);
    };
    // The dequantized value of `got`'s element `j` (None: not the fast path's case).
    let per_tensor = side.quant.as_ref().filter(|p| p.scale.len() == 1).map(|p| {
        (
            p.zero_point.first().copied().unwrap_or(0),
            f64::from(p.scale[0]),
        )
    });
    let n = match &got.data {
        Data::F32(v) => v.len(),
        Data::I8(v) if per_tensor.is_some() => v.len(),
        Data::U8(v) if per_tensor.is_some() => v.len(),
        Data::I16(v) if per_tensor.is_some() => v.len(),
        _ => return measure_and_requantize_reference(exact, got, side, acc),
    };
    if n != x.len() {
        return None;
    }
    let (z, scale) = per_tensor.unwrap_or((0, 1.0));
    own_sums(x, &got.data, z, scale, acc());
    requantize(exact, got, side.quant.as_ref())
}

/// The chunked loop of [`measure_and_requantize`] (`got` float32, int8, uint8 or int16
/// with zero point `z` and `scale`, as long as `x`), compiled with AVX2 when the CPU has
/// it: the conversions to f64 vectorise; the sums stay one chain each, in element
/// order, with no fused multiply-add (the same code, the same bits).
fn own_sums(x: &[f32], got: &crate::interp::Data, z: i64, scale: f64, a: &mut OwnSums) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { own_sums_avx2(x, got, z, scale, a) };
    }
    own_sums_body(x, got, z, scale, a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn own_sums_avx2(x: &[f32], got: &crate::interp::Data, z: i64, scale: f64, a: &mut OwnSums) {
    own_sums_body(x, got, z, scale, a)
}

#[inline(always)]
fn own_sums_body(x: &[f32], got: &crate::interp::Data, z: i64, scale: f64, a: &mut OwnSums) {
    use crate::interp::Data;
    const CHUNK: usize = 4096;
    let n = x.len();
    let (mut r, mut t) = ([0f64; CHUNK], [0f64; CHUNK]);
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        for (k, &v) in x[start..start + len].iter().enumerate() {
            r[k] = f64::from(v);
        }
        let dq = |q: i64| (q - z) as f64 * scale;
        match got {
            Data::F32(v) => v[start..start + len]
                .iter()
                .zip(&mut t)
                .for_each(|(&v, t)| *t = f64::from(v)),
            Data::I8(v) => v[start..start + len]
                .iter()
                .zip(&mut t)
                .for_each(|(&v, t)| *t = dq(i64::from(v))),
            Data::U8(v) => v[start..start + len]
                .iter()
                .zip(&mut t)
                .for_each(|(&v, t)| *t = dq(i64::from(v))),
            Data::I16(v) => v[start..start + len]
                .iter()
                .zip(&mut t)
                .for_each(|(&v, t)| *t = dq(i64::from(v))),
            _ => return,
        }
        a.add_real(&r[..len], &t[..len]);
    }
}

/// [`measure_and_requantize`] as it reads: both values as f64 copies, then
/// [`requantize_reference`].
fn measure_and_requantize_reference<'a>(
    exact: &Value,
    got: &Value,
    side: &compare::Side,
    acc: impl FnOnce() -> &'a mut OwnSums,
) -> Option<Value> {
    let (Some(got_real), reference) = (side.real_values(got), exact.data.to_f64_vec()) else {
        return None;
    };
    if got_real.len() != reference.len() {
        return None;
    }
    acc().add_real(&reference, &got_real);
    requantize_reference(exact, got, side.quant.as_ref())
}

/// The float value `exact` in the representation of `like` (a float value as it is;
/// an int8/uint8/int16 one quantized per tensor with `params`, rounding half away from
/// zero and clamping as the interpreter requantizes); `None` when that does not apply
/// (other types, per-axis parameters, another shape). Each element straight to the
/// integer type in one pass ([`to_grid`]), where [`requantize_reference`], its
/// reference twin, goes through a vector of f64; the same arithmetic, so the same
/// values (a unit test checks).
fn requantize(
    exact: &Value,
    like: &Value,
    params: Option<&crate::ir::QuantParams>,
) -> Option<Value> {
    use crate::interp::Data;
    if exact.shape != like.shape {
        return None;
    }
    let Data::F32(x) = &exact.data else {
        return None;
    };
    let grid = || -> Option<(f64, f64)> {
        let p = params.filter(|p| p.scale.len() == 1)?;
        let (scale, zp) = (f64::from(p.scale[0]), p.zero_point.first().copied()? as f64);
        (scale > 0.0).then_some((scale, zp))
    };
    let data = match &like.data {
        Data::F32(_) => Data::F32(x.clone()),
        Data::I8(_) => grid().map(|(s, z)| Data::I8(to_grid(x, s, z)))?,
        Data::U8(_) => grid().map(|(s, z)| Data::U8(to_grid(x, s, z)))?,
        Data::I16(_) => grid().map(|(s, z)| Data::I16(to_grid(x, s, z)))?,
        _ => return None,
    };
    Value::new(like.shape.clone(), data)
}

/// An integer type [`requantize`] writes: its range, and the conversion of a value
/// already rounded and clamped to it.
trait GridInt: Copy {
    const LO: f64;
    const HI: f64;
    fn from_clamped(v: f64) -> Self;
}

impl GridInt for i8 {
    const LO: f64 = -128.0;
    const HI: f64 = 127.0;
    #[inline(always)]
    fn from_clamped(v: f64) -> i8 {
        v as i8
    }
}

impl GridInt for u8 {
    const LO: f64 = 0.0;
    const HI: f64 = 255.0;
    #[inline(always)]
    fn from_clamped(v: f64) -> u8 {
        v as u8
    }
}

impl GridInt for i16 {
    const LO: f64 = -32768.0;
    const HI: f64 = 32767.0;
    #[inline(always)]
    fn from_clamped(v: f64) -> i16 {
        v as i16
    }
}

/// `x` on the grid of `scale` and zero point `zp` in `T`: `round(v / scale) + zp`
/// (half away from zero), clamped to `T`'s range (NaN → 0, as `as` converts it).
/// Compiled with AVX2 when the CPU has it: the baseline build calls libm's `round` for
/// every element, while the AVX rounding sequence LLVM emits for it is exact (the same
/// code, the same values).
fn to_grid<T: GridInt>(x: &[f32], scale: f64, zp: f64) -> Vec<T> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { to_grid_avx2(x, scale, zp) };
    }
    to_grid_body(x, scale, zp)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn to_grid_avx2<T: GridInt>(x: &[f32], scale: f64, zp: f64) -> Vec<T> {
    to_grid_body(x, scale, zp)
}

#[inline(always)]
fn to_grid_body<T: GridInt>(x: &[f32], scale: f64, zp: f64) -> Vec<T> {
    x.iter()
        .map(|&v| T::from_clamped(((f64::from(v) / scale).round() + zp).clamp(T::LO, T::HI)))
        .collect()
}

/// [`requantize`] as it reads: the values rounded and clamped into a vector of f64,
/// then converted.
fn requantize_reference(
    exact: &Value,
    like: &Value,
    params: Option<&crate::ir::QuantParams>,
) -> Option<Value> {
    use crate::interp::Data;
    if exact.shape != like.shape {
        return None;
    }
    let Data::F32(x) = &exact.data else {
        return None;
    };
    let q = |lo: f64, hi: f64| -> Option<Vec<f64>> {
        let p = params.filter(|p| p.scale.len() == 1)?;
        let (scale, zp) = (f64::from(p.scale[0]), p.zero_point.first().copied()? as f64);
        (scale > 0.0).then(|| {
            x.iter()
                .map(|&v| ((f64::from(v) / scale).round() + zp).clamp(lo, hi))
                .collect()
        })
    };
    let data = match &like.data {
        Data::F32(_) => Data::F32(x.clone()),
        Data::I8(_) => Data::I8(q(-128.0, 127.0)?.into_iter().map(|v| v as i8).collect()),
        Data::U8(_) => Data::U8(q(0.0, 255.0)?.into_iter().map(|v| v as u8).collect()),
        Data::I16(_) => Data::I16(
            q(-32768.0, 32767.0)?
                .into_iter()
                .map(|v| v as i16)
                .collect(),
        ),
        _ => return None,
    };
    Value::new(like.shape.clone(), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::Data;
    use crate::ir::QuantParams;

    #[test]
    fn plan_score_takes_the_lower_of_the_pooled_bound_and_the_worst_sample() {
        // 31 samples at 50 dB and one at 30 dB (signal 1 each).
        let mut e: Energies = vec![(1.0, 1e-5); 31];
        e.push((1.0, 1e-3));
        // The worst sample: 30 dB.
        assert!((worst_sample_db(&e) - 30.0).abs() < 1e-9);
        // Pooled: mean error (31e-5 + 1e-3) / 32; the bound adds two standard errors.
        let mean: f64 = (31.0 * 1e-5 + 1e-3) / 32.0;
        let var: f64 = (31.0 * (1e-5 - mean).powi(2) + (1e-3 - mean).powi(2)) / 31.0;
        let want = -10.0 * (mean + 2.0 * (var / 32.0).sqrt()).log10();
        assert!((pooled_bound_db(&e) - want).abs() < 1e-9);
        assert!(want > 30.0 && want < 10.0 * (1.0 / mean).log10());
        // The score: the lower of both, minus the margin; the lowest output decides.
        let good: Energies = vec![(1.0, 1e-6); 32];
        let score = plan_score(&[good.clone(), e.clone(), Vec::new()]);
        assert!((score - (30.0 - SEARCH_MARGIN_DB)).abs() < 1e-9);
        // Identical outputs score +∞ (minus the margin); an infinite error −∞.
        assert_eq!(plan_score(&[vec![(1.0, 0.0); 4]]), f64::INFINITY);
        assert_eq!(plan_score(&[vec![(1.0, f64::INFINITY)]]), f64::NEG_INFINITY);
        // The bound with part of the samples is never below the score with all of them.
        let signal = [32.0, 32.0];
        for cut in 1..=32 {
            let part = [good[..cut].to_vec(), e[..cut].to_vec()];
            assert!(score_bound(&part, &signal) >= plan_score(&[good.clone(), e.clone()]));
        }
    }

    #[test]
    fn requantize_puts_exact_values_on_the_tensors_grid() {
        let exact = Value::new(vec![4], Data::F32(vec![0.0, 0.25, -0.25, 100.0])).unwrap();
        let like8 = Value::new(vec![4], Data::I8(vec![0; 4])).unwrap();
        let p = QuantParams::per_tensor(0.5, -10);
        // round(x / 0.5) + (-10), half away from zero, clamped to int8.
        let got = requantize(&exact, &like8, Some(&p)).unwrap();
        assert_eq!(got.data, Data::I8(vec![-10, -9, -11, 127]));
        let like16 = Value::new(vec![4], Data::I16(vec![0; 4])).unwrap();
        let p16 = QuantParams::per_tensor(0.001, 0);
        let got = requantize(&exact, &like16, Some(&p16)).unwrap();
        assert_eq!(got.data, Data::I16(vec![0, 250, -250, 32767]));
        // A float tensor (a float island) takes the exact value as it is.
        let likef = Value::new(vec![4], Data::F32(vec![0.0; 4])).unwrap();
        assert_eq!(requantize(&exact, &likef, None).unwrap().data, exact.data);
        // Per-axis parameters, another shape, no parameters: left alone.
        let axis = QuantParams::per_axis(vec![0.1, 0.2], vec![0, 0], 0);
        assert!(requantize(&exact, &like8, Some(&axis)).is_none());
        let other = Value::new(vec![2, 2], Data::I8(vec![0; 4])).unwrap();
        assert!(requantize(&exact, &other, Some(&p)).is_none());
        assert!(requantize(&exact, &like8, None).is_none());
    }

    #[test]
    fn measure_and_requantize_matches_its_reference_twin_to_the_bit() {
        use crate::fb::TensorType;
        // 10_000 elements: more than two chunks, the last one partial.
        let n = 10_000;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 97.0 - 5.0) * 1.0001)
            .collect();
        let exact = Value::new(vec![n], Data::F32(x.clone())).unwrap();
        let side = |dtype, quant| compare::Side {
            tensor: 0,
            name: "t".into(),
            dtype,
            shape: vec![n as i64],
            quant,
        };
        let q8 = QuantParams::per_tensor(0.04, 3);
        let qu8 = QuantParams::per_tensor(0.04, 128);
        let q16 = QuantParams::per_tensor(0.0002, 0);
        let axis = QuantParams::per_axis(vec![0.04; n], vec![0; n], 0);
        let cases = [
            (
                Value::new(vec![n], Data::I8((0..n).map(|i| (i % 251) as i8).collect())),
                side(TensorType::Int8, Some(q8.clone())),
            ),
            (
                Value::new(vec![n], Data::U8((0..n).map(|i| (i % 255) as u8).collect())),
                side(TensorType::Uint8, Some(qu8)),
            ),
            (
                Value::new(
                    vec![n],
                    Data::I16((0..n).map(|i| (i * 13) as i16).collect()),
                ),
                side(TensorType::Int16, Some(q16)),
            ),
            (
                Value::new(vec![n], Data::F32(x.iter().map(|v| v * 0.99).collect())),
                side(TensorType::Float32, None),
            ),
            // Per-axis parameters and no parameters: the reference's own answer.
            (
                Value::new(vec![n], Data::I8(vec![1; n])),
                side(TensorType::Int8, Some(axis)),
            ),
            (
                Value::new(vec![n], Data::I8(vec![1; n])),
                side(TensorType::Int8, None),
            ),
            // Another length: nothing measured, nothing replaced.
            (
                Value::new(vec![n - 1], Data::I8(vec![1; n - 1])),
                side(TensorType::Int8, Some(q8)),
            ),
        ];
        for (k, (got, side)) in cases.into_iter().enumerate() {
            let got = got.unwrap();
            let (mut fast, mut slow) = (OwnSums::default(), OwnSums::default());
            // Earlier sums carried over: the chunks add to them in order.
            fast.add_real(&[1.5, -2.0], &[1.25, -2.5]);
            slow.add_real(&[1.5, -2.0], &[1.25, -2.5]);
            let a = measure_and_requantize(&exact, &got, &side, || &mut fast);
            let b = measure_and_requantize_reference(&exact, &got, &side, || &mut slow);
            assert_eq!(fast, slow, "case {k}");
            // The first four measure every element; the last (lengths differ) none.
            let measured = match k {
                0..4 => n as u64,
                6 => 0,
                _ => fast.n - 2,
            };
            assert_eq!(fast.n, 2 + measured, "case {k}");
            assert_eq!(a.map(|v| v.data), b.map(|v| v.data), "case {k}");
        }
    }

    /// SQNR of an accumulator as an own error: +∞ when identical, NaN kept.
    fn db_nan(a: &Accumulator) -> f64 {
        let m = a.metrics();
        if m.identical {
            f64::INFINITY
        } else {
            m.sqnr_db
        }
    }

    #[test]
    fn own_sums_give_the_accumulators_own_error_to_the_bit() {
        // Pseudo-random values with errors of every size, identical values, no error
        // in one part, a NaN error: the SQNR of the lean sums is the accumulator's.
        let n = 9_000;
        let r: Vec<f64> = (0..n)
            .map(|i| ((i * 7919 % 1013) as f64 / 37.0 - 13.0) * 1.000_3)
            .collect();
        let noisy: Vec<f64> = r
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i * 31 % 17) as f64 - 8.0) * 1e-3 * (i % 5) as f64)
            .collect();
        let mut nan = noisy.clone();
        nan[4321] = f64::NAN;
        let cases: [(&[f64], &[f64]); 5] = [
            (&r, &noisy),
            (&r, &r),
            (&r[..100], &noisy[..100]),
            (&r, &nan),
            (&[], &[]),
        ];
        let mut finite = 0;
        for (k, (a, b)) in cases.iter().enumerate() {
            let (mut lean, mut full) = (OwnSums::default(), Accumulator::default());
            // Sums carried over from an earlier chunk.
            for (x, y) in [
                (&a[..a.len() / 2], &b[..b.len() / 2]),
                (&a[a.len() / 2..], &b[b.len() / 2..]),
            ] {
                lean.add_real(x, y);
                full.add_real(x, y);
            }
            assert_eq!(lean.n, full.n, "case {k}");
            assert_eq!(lean.db().to_bits(), db_nan(&full).to_bits(), "case {k}");
            finite += usize::from(lean.db().is_finite());
        }
        // Two cases with a finite SQNR, one identical (+∞), one NaN, one empty.
        assert_eq!(finite, 2);
        let mut same = OwnSums::default();
        same.add_real(&r, &r);
        assert_eq!(same.db(), f64::INFINITY);
    }

    #[test]
    fn requantize_matches_its_reference_twin_on_every_kind_of_value() {
        // Half-way points of several grids (rounding ties, both signs), values beyond
        // every type's range, zeros of both signs, subnormals, infinities and NaN.
        let mut x: Vec<f32> = Vec::new();
        for scale in [0.1f32, 1.0 / 255.0, 3.0, 1e-6] {
            for k in -40_000..40_000 {
                x.push((k as f32 + 0.5) * scale);
                x.push(k as f32 * scale * 1.000_001);
            }
        }
        x.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE / 8.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
            -1e30,
        ]);
        let n = x.len();
        let exact = Value::new(vec![n], Data::F32(x)).unwrap();
        let likes = [
            Value::new(vec![n], Data::I8(vec![0; n])).unwrap(),
            Value::new(vec![n], Data::U8(vec![0; n])).unwrap(),
            Value::new(vec![n], Data::I16(vec![0; n])).unwrap(),
            Value::new(vec![n], Data::F32(vec![0.0; n])).unwrap(),
        ];
        let mut compared = 0;
        for like in &likes {
            for (scale, zp) in [(0.1f32, 0), (1.0 / 255.0, -128), (3.0, 7), (1e-6, 128)] {
                let p = QuantParams::per_tensor(scale, zp);
                let fast = requantize(&exact, like, Some(&p)).unwrap();
                let slow = requantize_reference(&exact, like, Some(&p)).unwrap();
                assert_eq!(fast.shape, slow.shape);
                if let (Data::F32(a), Data::F32(b)) = (&fast.data, &slow.data) {
                    // NaN included: bit for bit.
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(a), bits(b));
                    compared += 1;
                    continue;
                }
                assert_eq!(fast.data, slow.data, "{:?} {scale} {zp}", like.data.dtype());
                compared += 1;
            }
        }
        assert_eq!(compared, 16);
        // Where the reference declines, so does the fast path.
        let zero = QuantParams::per_tensor(0.0, 0);
        assert!(requantize(&exact, &likes[0], Some(&zero)).is_none());
        assert!(requantize_reference(&exact, &likes[0], Some(&zero)).is_none());
    }

    /// cnn_digits, its first 12 calibration samples, and an int8 model calibrated on
    /// them.
    fn digits_int8() -> (
        Model,
        Vec<Vec<Value>>,
        SequenceIds,
        crate::interp::ResetState,
        Model,
    ) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let m = crate::reader::read_path(dir.join("cnn_digits.tflite")).unwrap();
        let opts = SampleOptions {
            max_samples: Some(12),
            ..Default::default()
        };
        let source = Samples::open(&dir.join("cnn_digits.calib.npy"), &m, &opts).unwrap();
        let (sequences, reset) = (source.sequences(), source.reset_policy());
        let all = source.collect::<Result<Vec<_>>>().unwrap();
        let ranges = crate::calib::calibrate(
            &m,
            Samples::open(&dir.join("cnn_digits.calib.npy"), &m, &opts).unwrap(),
            &Default::default(),
        )
        .unwrap();
        let mut o = quant::Options::new(Mode::Int8);
        o.ranges = Some(ranges);
        let (q, _) = quant::quantize(&m, &o).unwrap();
        (m, all, sequences, reset, q)
    }

    #[test]
    fn evaluating_samples_side_by_side_gives_the_sequential_energies_and_stop() {
        let (m, all, sequences, reset, q) = digits_int8();
        let cache = Cache::new(&m, all, sequences, 0, reset).unwrap();
        // Three workers: batches of three, and a stop inside a batch (after the fifth
        // sample) as well as none.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for stop_after in [5, 7, usize::MAX] {
            let fails = |e: &[Energies]| e.iter().any(|e| e.len() >= stop_after);
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let a = pool.install(|| cache.errors(&m, &q, &mut fast, &fails).unwrap());
            let b = cache.errors_sequential(&m, &q, &mut slow, &fails).unwrap();
            assert_eq!(a, b, "stop after {stop_after}");
            assert_eq!(a, stop_after == usize::MAX);
            assert_eq!(fast, slow, "stop after {stop_after}");
            let measured = fast.iter().map(Vec::len).max().unwrap();
            assert_eq!(measured, stop_after.min(12));
            assert!(fast.iter().flatten().all(|&(s, e)| s > 0.0 && e > 0.0));
        }
    }

    #[test]
    fn own_errors_do_not_depend_on_how_many_workers_measure_them() {
        let (m, all, sequences, reset, q) = digits_int8();
        let cache = Cache::new(&m, all, sequences, 0, reset).unwrap();
        let one = own_errors_on(&m, &[&q], &cache, 1).unwrap();
        let bits = |r: &[HashMap<String, f64>]| -> Vec<Vec<(String, u64)>> {
            r.iter()
                .map(|h| {
                    let mut v: Vec<_> = h.iter().map(|(k, d)| (k.clone(), d.to_bits())).collect();
                    v.sort();
                    v
                })
                .collect()
        };
        // Every quantized operator of this CNN is measured, with a finite own error.
        assert!(one[0].len() >= 6, "{:?}", one[0]);
        assert!(one[0].values().all(|d| d.is_finite()), "{:?}", one[0]);
        for workers in [2, 3, 5] {
            let many = own_errors_on(&m, &[&q], &cache, workers).unwrap();
            assert_eq!(bits(&many), bits(&one), "{workers} workers");
        }
    }

    #[test]
    fn the_closing_measurement_with_the_folds_float_outputs_reports_what_compare_does() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let data = dir.join("cnn_digits.calib.npy");
        let (m, all, sequences, reset, q) = digits_int8();
        let folds = calibrate_folds(
            &m,
            crate::calib::ObserverKind::MinMax,
            &all,
            SEARCH_FOLDS,
            &sequences,
            reset,
        )
        .unwrap();
        let caches = || -> Vec<(quant::Options, Cache)> {
            folds
                .iter()
                .rev()
                .map(|f| {
                    let outs = f.float_outputs.clone().unwrap();
                    let samples = all[f.held.clone()].to_vec();
                    let c =
                        Cache::with_outputs(samples, sequences.clone(), f.held.start, reset, outs);
                    (quant::Options::new(Mode::Int8), c)
                })
                .collect()
        };
        let opts = |max: Option<usize>, validation| SearchOptions {
            target_db: 30.0,
            calibration: &data,
            validation,
            samples: SampleOptions {
                max_samples: max,
                ..Default::default()
            },
            observer: crate::calib::ObserverKind::MinMax,
        };
        let s = opts(Some(12), None);
        let f = closing_float_outputs(&m, &mut caches(), &s, all.len())
            .unwrap()
            .expect("the search samples are the measured ones");
        assert_eq!(f.0.len(), 12);
        let got = compare::compare_with_float_outputs(&m, &q, &f, &data, &s.samples).unwrap();
        let want =
            compare::compare(&m, &q, &data, &s.samples, &compare::Options::default()).unwrap();
        assert_eq!(got, want);
        assert!(
            got.outputs
                .iter()
                .all(|o| o.sqnr_db.is_some_and(f64::is_finite))
        );
        // Validation data, or more samples measured than searched: the float model
        // runs again.
        let v = opts(Some(12), Some(data.as_path()));
        assert!(
            closing_float_outputs(&m, &mut caches(), &v, 12)
                .unwrap()
                .is_none()
        );
        let more = opts(None, None);
        assert!(
            closing_float_outputs(&m, &mut caches(), &more, 12)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_folds_calibration_outputs_are_the_float_outputs_cache_new_computes() {
        // A stateless CNN and a streaming model (state flows from sample to sample), in
        // two and four folds: every fold gets its held-out samples' float outputs from
        // another fold's calibration run, and they are what Cache::new computes for it,
        // to the bit.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        for (model, data) in [
            ("cnn_digits.tflite", "cnn_digits.calib.npy"),
            ("streaming_kws.tflite", "streaming_kws.calib.npy"),
        ] {
            let m = crate::reader::read_path(dir.join(model)).unwrap();
            let opts = SampleOptions {
                max_samples: Some(12),
                ..Default::default()
            };
            let source = Samples::open(&dir.join(data), &m, &opts).unwrap();
            let (sequences, reset) = (source.sequences(), source.reset_policy());
            let all = source.collect::<Result<Vec<_>>>().unwrap();
            assert_eq!(all.len(), 12, "{model}");
            for k in [2, 4] {
                let folds = calibrate_folds(
                    &m,
                    crate::calib::ObserverKind::MinMax,
                    &all,
                    k,
                    &sequences,
                    reset,
                )
                .unwrap();
                assert_eq!(folds.len(), k);
                for fold in folds {
                    let held = fold.held.clone();
                    let cache = Cache::new(
                        &m,
                        all[held.clone()].to_vec(),
                        sequences.clone(),
                        held.start,
                        reset,
                    )
                    .unwrap();
                    let outputs = fold
                        .float_outputs
                        .unwrap_or_else(|| panic!("{model} {k} {held:?}"));
                    assert_eq!(outputs, cache.float_outputs, "{model} k={k} {held:?}");
                }
            }
        }
    }
}
