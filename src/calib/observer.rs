//! Range observers: per tensor, a small state fed with every value the tensor takes
//! on each sample, turned into a `(min, max)` range at the end. Memory per tensor is
//! constant (a fixed-size histogram at most), whatever the number of samples.
//!
//! * `minmax` — global minimum and maximum (TF's calibrator).
//! * `extrapolate` — `minmax` widened by the gap between the largest and the
//!   second-largest per-sample maximum (and likewise below): `2·X(n) − X(n−1)`, the
//!   Robson–Whitlock estimate of a distribution's end point from its two largest
//!   draws. A bound every sample reaches (pixels in [0, 1], RELU's 0, RELU6's 6) is not
//!   widened; a maximum one sample alone sets — the few-sample case, where unseen data
//!   go further — is, by as much as it stands out.
//! * `ema:C` — moving average of per-sample min/max, `new = C·old + (1−C)·sample`
//!   (ai-edge-quantizer's `moving_average_update`); the first sample sets it.
//! * `percentile:P` — the P-th and (100−P)-th percentiles from a histogram.
//! * `mse` — the shrunk range `[t·min, t·max]` that minimises the expected squared
//!   error of asymmetric int8 quantization over the histogram.
//! * `entropy` — TensorRT's KL-divergence threshold on the |x| histogram
//!   (128 quantized levels), clipped to `[min, max]`.
//! * **Streams** (`minmax` only): when the samples are one stream — a stateful model
//!   whose state flows from one sample to the next (`--reset-state` never / N) — the
//!   samples are not independent draws: consecutive frames of one utterance share their
//!   extremes, so n frames see about as far as a few independent samples and the range
//!   seen is short ([`stream_extreme`]). The range is then the seen extreme widened by
//!   the gap between the two largest *block* maxima, blocks as long as the stream's
//!   correlation (`(1+ρ)/(1−ρ)` samples, `ρ` the lag-1 autocorrelation of the
//!   per-sample extremes): `extrapolate` over effectively independent blocks. With
//!   uncorrelated samples (`ρ ≤ 0`) this is `extrapolate`'s `2·X(n) − X(n−1)`.
//!   `--stream-ranges seen` keeps the seen range (TF's calibrator).
//! * `auto` — per tensor, one of `minmax`, `percentile:99.99` and `mse`, chosen from the
//!   tensor's histogram by [`TensorStats::auto_choice`]: the candidate with the least
//!   expected int8 quantization error (rounding + clipping) on the calibrated
//!   distribution, where a clipping candidate must beat `minmax` by at least
//!   [`AUTO_MIN_GAIN_DB`] (values beyond a clipped range on unseen data saturate, which
//!   the calibration histogram cannot show: clipping must pay clearly to be chosen).
//!
//! **Sentinels** never set a range, whatever the observer ([`ordinary_min_max`]):
//! exporters write "minus infinity" as `-inf`, as the lowest float (`-3.4e38`, a max
//! pool's pad value, a clip bound) or as a mask constant (`-1e9` added before SOFTMAX).
//! A value is a sentinel when it is ±inf, when `|x| ≥ 1e30`, or when `|x| ≥ 1e6` and
//! `|x| ≥ 1e4 · m`, `m` being the largest magnitude below `1e6` in the same tensor (the
//! same sample): with such a value in the range, the ordinary values would span fewer
//! than 4 steps even of int16 (32767 / 1e4), so no range can serve both; the quantized
//! tensor saturates the sentinel to its integer minimum or maximum instead. Below `1e6`
//! nothing is a sentinel (large real activations stay in range). NaN is ignored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::interp::keys::{KeyRange, key_min_max, order_key, order_key_inverse};

/// Magnitude from which a finite value is always a sentinel (`-FLT_MAX` pads and clips).
pub const SENTINEL_ABS: f32 = 1e30;
/// Magnitude from which a value is a (mask-class) sentinel when it is also
/// [`FAR_RATIO`] times larger than every other value of its tensor.
pub const MASK_ABS: f32 = 1e6;
/// How much larger than the tensor's ordinary values a mask-class value must be.
pub const FAR_RATIO: f32 = 1e4;

/// How many sentinel values a tensor held, below (`-inf`, `-1e9`) and above its range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentinels {
    pub below: u64,
    pub above: u64,
}

impl Sentinels {
    pub fn is_none(&self) -> bool {
        self.below == 0 && self.above == 0
    }
    pub fn add(&mut self, o: Sentinels) {
        self.below += o.below;
        self.above += o.above;
    }
}

/// The smallest and largest ordinary (finite, non-sentinel) values of `xs` and the
/// sentinels it holds (see the module docs). `(inf, -inf)` when no value is ordinary.
pub fn ordinary_min_max(xs: &[f32]) -> (f32, f32, Sentinels) {
    ordinary_min_max_keyed(xs, None)
}

/// [`ordinary_min_max`] given the [`KeyRange`] of `xs` if it is known.
fn ordinary_min_max_keyed(xs: &[f32], keys: Option<KeyRange>) -> (f32, f32, Sentinels) {
    let (lo, hi) = fast_min_max_keyed(xs, keys);
    if lo.abs().max(hi.abs()) < MASK_ABS || lo > hi {
        // No infinity, nothing large: no sentinel (the common case, one fast pass).
        return (lo, hi, Sentinels::default());
    }
    ordinary_min_max_slow(xs)
}

/// The reference twin of [`ordinary_min_max`]: one plain scan per step.
fn ordinary_min_max_slow(xs: &[f32]) -> (f32, f32, Sentinels) {
    let m = xs
        .iter()
        .filter(|x| x.abs() < MASK_ABS)
        .fold(0f32, |m, x| m.max(x.abs()));
    let limit = SENTINEL_ABS.min(MASK_ABS.max(FAR_RATIO * m));
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut s = Sentinels::default();
    for &x in xs {
        if x.is_nan() {
            continue;
        }
        if x.abs() >= limit {
            if x < 0.0 {
                s.below += 1;
            } else {
                s.above += 1;
            }
        } else {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    (lo, hi, s)
}

/// Which observer to use, with its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ObserverKind {
    #[default]
    MinMax,
    /// `minmax` widened by the gap to the second most extreme per-sample value.
    Extrapolate(f32),
    Ema(f32),
    Percentile(f64),
    Mse,
    Entropy,
    /// Per tensor, the best of minmax, percentile:99.99 and mse on its histogram.
    Auto,
}

/// How `minmax` ranges tensors when the samples form one stream (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamRanges {
    /// Widened by the gap between the two largest block maxima ([`stream_extreme`]).
    #[default]
    Extrapolate,
    /// The range seen, as for independent samples (TF's calibrator).
    Seen,
}

impl fmt::Display for StreamRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamRanges::Extrapolate => "extrapolate",
            StreamRanges::Seen => "seen",
        })
    }
}

impl FromStr for StreamRanges {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "extrapolate" => Ok(StreamRanges::Extrapolate),
            "seen" => Ok(StreamRanges::Seen),
            _ => Err(Error::Usage(format!(
                "unknown --stream-ranges {s:?}: use extrapolate (the default) or seen"
            ))),
        }
    }
}

/// `auto`: the percentile candidate.
pub const AUTO_PERCENTILE: f64 = 99.99;
/// `auto`: how much less expected squared error (dB) a clipped range must give than
/// `minmax` to be chosen.
pub const AUTO_MIN_GAIN_DB: f64 = 3.0;

impl ObserverKind {
    /// True when the observer's state is the same whatever order the samples come in
    /// (minmax: a minimum and a maximum), so samples may run in parallel and their
    /// statistics be merged ([`TensorStats::merge`]) without changing the ranges.
    pub fn order_free(self) -> bool {
        matches!(self, ObserverKind::MinMax | ObserverKind::Extrapolate(_))
    }
}

impl fmt::Display for ObserverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObserverKind::MinMax => write!(f, "minmax"),
            ObserverKind::Extrapolate(g) if *g == 1.0 => write!(f, "extrapolate"),
            ObserverKind::Extrapolate(g) => write!(f, "extrapolate:{g}"),
            ObserverKind::Ema(c) => write!(f, "ema:{c}"),
            ObserverKind::Percentile(p) => write!(f, "percentile:{p}"),
            ObserverKind::Mse => write!(f, "mse"),
            ObserverKind::Entropy => write!(f, "entropy"),
            ObserverKind::Auto => write!(f, "auto"),
        }
    }
}

impl FromStr for ObserverKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "unknown observer {s:?}: {why}; use one of minmax, extrapolate, ema:0.95, percentile:99.99, mse, entropy, auto"
            ))
        };
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        Ok(match (name, arg) {
            ("minmax", None) => ObserverKind::MinMax,
            ("extrapolate", None) => ObserverKind::Extrapolate(1.0),
            ("extrapolate", Some(a)) => {
                let g: f32 = a
                    .parse()
                    .map_err(|_| bad("the extrapolation factor is not a number"))?;
                if !(g > 0.0 && g <= 1.0) {
                    return Err(bad("the extrapolation factor must be in (0, 1]"));
                }
                ObserverKind::Extrapolate(g)
            }
            ("mse", None) => ObserverKind::Mse,
            ("entropy", None) => ObserverKind::Entropy,
            ("auto", None) => ObserverKind::Auto,
            ("ema", None) => ObserverKind::Ema(0.95),
            ("ema", Some(a)) => {
                let c: f32 = a
                    .parse()
                    .map_err(|_| bad("the ema factor is not a number"))?;
                if !(0.0..1.0).contains(&c) {
                    return Err(bad("the ema factor must be in [0, 1)"));
                }
                ObserverKind::Ema(c)
            }
            ("percentile", Some(a)) => {
                let p: f64 = a
                    .parse()
                    .map_err(|_| bad("the percentile is not a number"))?;
                if !(50.0..=100.0).contains(&p) {
                    return Err(bad("the percentile must be in [50, 100]"));
                }
                ObserverKind::Percentile(p)
            }
            ("percentile", None) => {
                return Err(bad("percentile needs a value, e.g. percentile:99.99"));
            }
            _ => return Err(bad("not an observer name")),
        })
    }
}

/// Bins of the symmetric histogram `[-r, r]` (even; the middle is 0).
pub const HIST_BINS: usize = 8192;

/// A histogram over `[-r, r]` whose range doubles (merging bin pairs) when a value
/// falls outside, so it never needs a second pass.
#[derive(Debug, Clone)]
pub struct Histogram {
    pub r: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            r: 0.0,
            counts: vec![0; HIST_BINS],
        }
    }

    fn width(&self) -> f64 {
        2.0 * self.r / HIST_BINS as f64
    }

    fn grow_to(&mut self, a: f64) {
        if self.r == 0.0 {
            self.r = a.max(f64::MIN_POSITIVE);
            return;
        }
        while a > self.r {
            let mut next = vec![0u64; HIST_BINS];
            for (i, &c) in self.counts.iter().enumerate() {
                next[HIST_BINS / 4 + i / 2] += c;
            }
            self.counts = next;
            self.r *= 2.0;
        }
    }

    fn add(&mut self, xs: &[f32], lo: f32, hi: f32) {
        let a = (lo.abs().max(hi.abs())) as f64;
        if a > self.r || self.r == 0.0 {
            self.grow_to(a);
        }
        let scale = HIST_BINS as f64 / (2.0 * self.r);
        let last = HIST_BINS - 1;
        for &x in xs {
            // NaN, infinities and sentinels lie outside [lo, hi].
            if !(lo..=hi).contains(&x) {
                continue;
            }
            let b = ((x as f64 + self.r) * scale) as isize;
            self.counts[(b.max(0) as usize).min(last)] += 1;
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn center(&self, i: usize) -> f64 {
        -self.r + (i as f64 + 0.5) * self.width()
    }
}

/// The state of one tensor's observer.
#[derive(Debug, Clone)]
pub struct TensorStats {
    pub min: f32,
    pub max: f32,
    /// The second-smallest per-sample minimum and second-largest per-sample maximum
    /// (`extrapolate`); infinite until two samples were seen.
    min2: f32,
    max2: f32,
    ema: Option<(f32, f32)>,
    hist: Option<Histogram>,
    pub samples: u64,
    /// Sentinel values seen (they never set the range).
    pub sentinels: Sentinels,
    /// Each sample's `(min, max)` in order, kept only for samples that form a stream
    /// ([`TensorStats::record_series`]; see the module docs).
    series: Option<Vec<(f32, f32)>>,
}

impl TensorStats {
    pub fn new(kind: ObserverKind) -> Self {
        TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            min2: f32::INFINITY,
            max2: f32::NEG_INFINITY,
            ema: None,
            hist: matches!(
                kind,
                ObserverKind::Percentile(_)
                    | ObserverKind::Mse
                    | ObserverKind::Entropy
                    | ObserverKind::Auto
            )
            .then(Histogram::new),
            samples: 0,
            sentinels: Sentinels::default(),
            series: None,
        }
    }

    /// Keeps every later sample's extremes in order, for [`TensorStats::range`]'s
    /// stream estimate (samples that form one stream; see the module docs).
    pub fn record_series(&mut self) {
        self.series.get_or_insert_with(Vec::new);
    }

    /// The smallest and largest value seen, whatever the observer; `None` without
    /// samples.
    pub fn seen(&self) -> Option<(f32, f32)> {
        (self.samples > 0).then_some((self.min, self.max))
    }

    /// Feeds the values one tensor took on one sample (NaN is ignored; sentinels are
    /// counted, never ranged: see the module docs). A sample holding nothing but
    /// sentinels counts as `[0, 0]`.
    pub fn observe(&mut self, kind: ObserverKind, xs: &[f32]) {
        self.observe_keyed(kind, xs, None)
    }

    /// [`TensorStats::observe`] given the [`KeyRange`] of `xs` if the kernel that
    /// wrote them computed it (the same statistics, without reading `xs` again for
    /// its minimum and maximum).
    pub(crate) fn observe_keyed(&mut self, kind: ObserverKind, xs: &[f32], keys: Option<KeyRange>) {
        let (mut lo, mut hi, s) = ordinary_min_max_keyed(xs, keys);
        self.sentinels.add(s);
        if lo > hi {
            if s.is_none() {
                return;
            }
            (lo, hi) = (0.0, 0.0);
        }
        self.samples += 1;
        self.push_extremes(lo, hi);
        if let Some(series) = &mut self.series {
            series.push((lo, hi));
        }
        if let ObserverKind::Ema(c) = kind {
            self.ema = Some(match self.ema {
                None => (lo, hi),
                Some((a, b)) => (c * a + (1.0 - c) * lo, c * b + (1.0 - c) * hi),
            });
        }
        if let Some(h) = &mut self.hist {
            h.add(xs, lo, hi);
        }
    }

    /// Folds the statistics of other samples of the same tensor into these, as if
    /// this observer had seen them too. Only for observers whose state does not depend
    /// on the order of samples ([`ObserverKind::order_free`]); `None` for others.
    pub fn merge(&mut self, kind: ObserverKind, other: &TensorStats) -> Option<()> {
        if !kind.order_free() || self.series.is_some() || other.series.is_some() {
            return None;
        }
        self.push_extremes(other.min, other.max);
        self.push_extremes(other.min2, other.max2);
        self.samples += other.samples;
        self.sentinels.add(other.sentinels);
        Some(())
    }

    /// Takes one sample's (or one merged set's) extremes into the two smallest minima
    /// and the two largest maxima.
    fn push_extremes(&mut self, lo: f32, hi: f32) {
        if lo < self.min {
            self.min2 = self.min;
            self.min = lo;
        } else if lo < self.min2 {
            self.min2 = lo;
        }
        if hi > self.max {
            self.max2 = self.max;
            self.max = hi;
        } else if hi > self.max2 {
            self.max2 = hi;
        }
    }

    /// `extrapolate`: `[2·min − min2, 2·max − max2]` (the minmax range with one sample).
    fn extrapolated(&self, g: f32) -> (f32, f32) {
        let lo = if self.min2.is_finite() {
            self.min - g * (self.min2 - self.min)
        } else {
            self.min
        };
        let hi = if self.max2.is_finite() {
            self.max + g * (self.max - self.max2)
        } else {
            self.max
        };
        // A sample range above ±f32::MAX would overflow: keep the seen range then.
        (
            if lo.is_finite() { lo } else { self.min },
            if hi.is_finite() { hi } else { self.max },
        )
    }

    /// The range this observer chose; `None` if the tensor never had a value.
    pub fn range(&self, kind: ObserverKind) -> Option<(f32, f32)> {
        if self.samples == 0 {
            return None;
        }
        let (min, max) = (self.min, self.max);
        let clip = |lo: f64, hi: f64| -> (f32, f32) {
            let lo = (lo as f32).clamp(min, max);
            let hi = (hi as f32).clamp(min, max);
            (lo.min(hi), hi.max(lo))
        };
        Some(match kind {
            ObserverKind::MinMax => match &self.series {
                Some(series) => {
                    let lo: Vec<f32> = series.iter().map(|&(l, _)| -l).collect();
                    let hi: Vec<f32> = series.iter().map(|&(_, h)| h).collect();
                    (-stream_extreme(&lo, -min), stream_extreme(&hi, max))
                }
                None => (min, max),
            },
            ObserverKind::Extrapolate(g) => self.extrapolated(g),
            ObserverKind::Ema(_) => self.ema.unwrap_or((min, max)),
            ObserverKind::Percentile(p) => {
                let h = self.hist.as_ref()?;
                let (lo, hi) = percentile_range(h, p);
                clip(lo, hi)
            }
            ObserverKind::Mse => {
                let h = self.hist.as_ref()?;
                let (lo, hi) = mse_range(h, min as f64, max as f64);
                clip(lo, hi)
            }
            ObserverKind::Entropy => {
                let h = self.hist.as_ref()?;
                let t = entropy_threshold(h);
                clip(-t, t)
            }
            ObserverKind::Auto => self.auto_choice()?.1,
        })
    }

    /// `auto`: the observer chosen for this tensor and its range. Candidates are
    /// `minmax`, `percentile:99.99` and `mse`; each range is scored by the expected
    /// squared error of asymmetric int8 quantization over the histogram (the error
    /// `mse` minimises); the lowest score wins, but `percentile` or `mse` only when
    /// it is at least [`AUTO_MIN_GAIN_DB`] below `minmax`'s. `None` without samples.
    pub fn auto_choice(&self) -> Option<(ObserverKind, (f32, f32))> {
        let minmax = self.range(ObserverKind::MinMax)?;
        let Some(h) = self.hist.as_ref() else {
            return Some((ObserverKind::MinMax, minmax));
        };
        let bins = histogram_bins(h);
        let score = |r: (f32, f32)| quant_mse(&bins, r.0 as f64, r.1 as f64);
        let base = score(minmax);
        let mut best = (ObserverKind::MinMax, minmax, base);
        if !(base > 0.0 && base.is_finite()) {
            return Some((best.0, best.1));
        }
        let bar = base / 10f64.powf(AUTO_MIN_GAIN_DB / 10.0);
        for kind in [ObserverKind::Percentile(AUTO_PERCENTILE), ObserverKind::Mse] {
            let Some(r) = self.range(kind) else { continue };
            let e = score(r);
            log::debug!(
                "observer auto: {kind} gains {:.2} dB over minmax",
                10.0 * (base / e).log10()
            );
            if e <= bar && e < best.2 {
                best = (kind, r, e);
            }
        }
        Some((best.0, best.1))
    }
}

/// Fewest samples a stream needs for [`stream_extreme`] to extrapolate.
pub const STREAM_MIN_SAMPLES: usize = 4;
/// Largest lag-1 autocorrelation [`stream_extreme`] uses (blocks of at most 39 samples).
pub const STREAM_MAX_RHO: f64 = 0.95;

/// The maximum to quantize a stream's tensor to, from its per-sample maxima `xs` in
/// stream order (`seen` = their maximum, returned where nothing can be estimated):
/// blocks of `L = ⌈(1+ρ)/(1−ρ)⌉` consecutive samples (`ρ` = the lag-1
/// autocorrelation of `xs`, clamped to `[0, STREAM_MAX_RHO]`; the last block takes
/// the remainder), `M1 ≥ M2` the two largest block maxima, result `M1 + (M1 − M2)`.
/// `L` is the AR(1) factor between n correlated samples and as many independent ones.
/// Fewer than [`STREAM_MIN_SAMPLES`] samples or fewer than two blocks: `seen`. (For
/// minima, pass negated minima and negate the result.)
pub fn stream_extreme(xs: &[f32], seen: f32) -> f32 {
    let n = xs.len();
    if n < STREAM_MIN_SAMPLES || !seen.is_finite() {
        return seen;
    }
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let c: Vec<f64> = xs.iter().map(|&x| x as f64 - mean).collect();
    let var: f64 = c.iter().map(|x| x * x).sum();
    let rho = if var > 0.0 {
        c.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / var
    } else {
        0.0
    };
    let rho = if rho.is_finite() {
        rho.clamp(0.0, STREAM_MAX_RHO)
    } else {
        0.0
    };
    let len = ((1.0 + rho) / (1.0 - rho)).ceil().max(1.0) as usize;
    let blocks = n / len;
    if blocks < 2 {
        return seen;
    }
    let (mut m1, mut m2) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for b in 0..blocks {
        let end = if b + 1 == blocks { n } else { (b + 1) * len };
        let m = xs[b * len..end]
            .iter()
            .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
        if m > m1 {
            m2 = m1;
            m1 = m;
        } else if m > m2 {
            m2 = m;
        }
    }
    // `seen` itself (bit for bit: a minimum of +0 stays +0) unless truly wider.
    let e = m1 + (m1 - m2);
    if e.is_finite() && e > seen { e } else { seen }
}

/// Minimum and maximum ignoring NaN (infinities included): the bits of
/// [`lane_min_max`], faster. Floats are compared as integers of the same order
/// ([`order_key`]; -0 below +0), which has no NaN special case in the dependency chain
/// and no ties: equal keys are equal bits. Only where `lane_min_max`'s answer depends on
/// which of two zeros its lanes met first — a minimum that is -0 (a +0 may be there
/// too) or a maximum that is +0 (a -0 may be there too) — does it ask `lane_min_max`.
/// (ReLU outputs, minimum +0 without -0, stay on the fast path.) `(inf, -inf)` when
/// there is no non-NaN value.
#[cfg(test)]
fn fast_min_max(xs: &[f32]) -> (f32, f32) {
    fast_min_max_keyed(xs, None)
}

/// [`fast_min_max`] given the [`KeyRange`] of `xs` if a kernel computed it while
/// writing them (then `xs` is read only where zeros of both signs may tie).
fn fast_min_max_keyed(xs: &[f32], keys: Option<KeyRange>) -> (f32, f32) {
    let (lo, hi) = match keys {
        Some(k) => (k.lo, k.hi),
        None => key_min_max(xs),
    };
    if lo == order_key(-0.0) || hi == order_key(0.0) {
        return lane_min_max(xs);
    }
    let value = |k: i32, none: f32| {
        if k == i32::MAX || k == i32::MIN {
            none
        } else {
            f32::from_bits(order_key_inverse(k) as u32)
        }
    };
    (value(lo, f32::INFINITY), value(hi, f32::NEG_INFINITY))
}

/// The twin of [`fast_min_max`] (and its answer where zeros of both signs tie): 8 lanes
/// of `f32::min`/`f32::max`, built for AVX2 too and chosen at run time (the same lanes
/// in both builds, so the same result, signed zeros included).
fn lane_min_max(xs: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::is_x86_feature_detected!("avx2")) {
            // SAFETY: AVX2 was detected at run time.
            return unsafe { fast_min_max_avx2(xs) };
        }
    }
    fast_min_max_body(xs)
}

/// [`fast_min_max_body`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fast_min_max_avx2(xs: &[f32]) -> (f32, f32) {
    fast_min_max_body(xs)
}

#[inline(always)]
fn fast_min_max_body(xs: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; 8];
    let mut hi = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            lo[k] = lo[k].min(c[k]);
            hi[k] = hi[k].max(c[k]);
        }
    }
    let (mut l, mut h) = (f32::INFINITY, f32::NEG_INFINITY);
    for k in 0..8 {
        l = l.min(lo[k]);
        h = h.max(hi[k]);
    }
    for &x in rest {
        l = l.min(x);
        h = h.max(x);
    }
    (l, h)
}

/// Lower and upper percentile bounds (bin edges) of a histogram.
pub fn percentile_range(h: &Histogram, p: f64) -> (f64, f64) {
    let total = h.total() as f64;
    let w = h.width();
    let tail = total * (100.0 - p) / 100.0;
    // Lowest edge with more than `tail` values below it...
    let mut acc = 0f64;
    let mut lo = -h.r;
    for (i, &c) in h.counts.iter().enumerate() {
        if acc + c as f64 > tail {
            lo = -h.r + i as f64 * w;
            break;
        }
        acc += c as f64;
    }
    // ...and highest edge with more than `tail` values above it.
    acc = 0.0;
    let mut hi = h.r;
    for (i, &c) in h.counts.iter().enumerate().rev() {
        if acc + c as f64 > tail {
            hi = -h.r + (i + 1) as f64 * w;
            break;
        }
        acc += c as f64;
    }
    (lo, hi)
}

/// Expected squared error of asymmetric 8-bit quantization on `[lo, hi]` (widened to
/// include 0, as the quantizer does) over the non-empty bins `(centre, count)`.
fn quant_mse(bins: &[(f64, f64)], lo: f64, hi: f64) -> f64 {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / 255.0;
    if scale <= 0.0 {
        return f64::INFINITY;
    }
    let zp = (-128.0 - lo / scale).round();
    bins.iter()
        .map(|&(x, c)| {
            let q = ((x / scale).round() + zp).clamp(-128.0, 127.0);
            let d = x - (q - zp) * scale;
            c * d * d
        })
        .sum()
}

/// The non-empty bins of a histogram as `(centre, count)`.
fn histogram_bins(h: &Histogram) -> Vec<(f64, f64)> {
    h.counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, &c)| (h.center(i), c as f64))
        .collect()
}

/// The range `[a·min, b·max]`, a and b in (0, 1], with the least quantization MSE: a
/// 20×20 grid, then a 20×20 refinement around the best point.
pub fn mse_range(h: &Histogram, min: f64, max: f64) -> (f64, f64) {
    let bins = histogram_bins(h);
    let mut best = (1.0, 1.0, quant_mse(&bins, min, max));
    let search = |a0: f64, a1: f64, b0: f64, b1: f64, best: &mut (f64, f64, f64)| {
        const STEPS: usize = 20;
        for i in 0..=STEPS {
            let a = a0 + (a1 - a0) * i as f64 / STEPS as f64;
            for j in 0..=STEPS {
                let b = b0 + (b1 - b0) * j as f64 / STEPS as f64;
                if a <= 0.0 || b <= 0.0 || a > 1.0 || b > 1.0 {
                    continue;
                }
                let e = quant_mse(&bins, min * a, max * b);
                if e < best.2 {
                    *best = (a, b, e);
                }
            }
        }
    };
    search(0.0, 1.0, 0.0, 1.0, &mut best);
    let (a, b) = (best.0, best.1);
    search(a - 0.05, a + 0.05, b - 0.05, b + 0.05, &mut best);
    (min * best.0, max * best.1)
}

/// TensorRT's entropy calibration: the |x| threshold whose 128-level quantized
/// distribution has the least KL divergence from the clipped original.
pub fn entropy_threshold(h: &Histogram) -> f64 {
    const LEVELS: usize = 128;
    // Fold to |x|: 2048 bins over [0, r] (pairs of the half histogram).
    let half = HIST_BINS / 2;
    let group = 2;
    let nb = half / group;
    let mut abs = vec![0f64; nb];
    for (i, &c) in h.counts.iter().enumerate() {
        let d = if i >= half { i - half } else { half - 1 - i };
        abs[d / group] += c as f64;
    }
    let w = h.r / nb as f64;
    let last = abs.iter().rposition(|&c| c > 0.0).map_or(0, |i| i + 1);
    if last <= LEVELS {
        return last as f64 * w;
    }
    // suffix[i] = values at or beyond bin i (the outliers of threshold i).
    let mut suffix = vec![0f64; nb + 1];
    for i in (0..nb).rev() {
        suffix[i] = suffix[i + 1] + abs[i];
    }
    let mut best = (f64::INFINITY, last);
    let mut p = vec![0f64; nb];
    let mut q = vec![0f64; nb];
    for i in LEVELS..=last {
        // Reference distribution: the first i bins, outliers folded into the last.
        p[..i].copy_from_slice(&abs[..i]);
        p[i - 1] += suffix[i];
        // Candidate: the first i bins (without outliers) merged into LEVELS levels,
        // each spread back over its non-empty bins.
        for l in 0..LEVELS {
            let (s, e) = (l * i / LEVELS, (l + 1) * i / LEVELS);
            let sum: f64 = abs[s..e].iter().sum();
            let nz = abs[s..e].iter().filter(|&&c| c > 0.0).count();
            for k in s..e {
                q[k] = if abs[k] > 0.0 { sum / nz as f64 } else { 0.0 };
            }
        }
        let (ps, qs): (f64, f64) = (p[..i].iter().sum(), q[..i].iter().sum());
        if ps <= 0.0 || qs <= 0.0 {
            continue;
        }
        let mut kl = 0.0;
        for k in 0..i {
            if p[k] > 0.0 {
                let pk = p[k] / ps;
                // A non-empty reference bin over an empty candidate one (the folded
                // outliers): smoothed instead of an infinite divergence.
                let qk = (q[k] / qs).max(1e-12);
                kl += pk * (pk / qk).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1 as f64 * w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::keys::key_min_max_body;

    #[test]
    fn ordinary_min_max_matches_its_reference_twin() {
        let cases: [&[f32]; 8] = [
            &[],
            &[1.5],
            &[3.0, -2.0, 7.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -9.5, 6.0],
            &[f32::NAN, 1.0, f32::NAN, -1.0, 0.5, 0.25, 0.125, 2.0, 3.0],
            &[
                f32::INFINITY,
                1.0,
                2.0,
                f32::NEG_INFINITY,
                -3.0,
                0.0,
                0.0,
                0.0,
                9.0,
            ],
            &[f32::NAN, f32::NAN],
            &[-f32::MAX, 0.5, -0.25, 0.0, 1.0, -f32::MAX, 2.0, 3.0, 4.0],
            &[-1e9, 0.0, 0.0, -1e9, 3.5, -2.0, 0.0, 0.0, -1e9],
        ];
        for xs in cases {
            // The dispatched build and the baseline build give the same bits.
            let (f, g) = (lane_min_max(xs), fast_min_max_body(xs));
            assert_eq!(
                (f.0.to_bits(), f.1.to_bits()),
                (g.0.to_bits(), g.1.to_bits()),
                "{xs:?}"
            );
            let (a, b) = (ordinary_min_max(xs), ordinary_min_max_slow(xs));
            assert_eq!(a.2, b.2, "{xs:?}");
            assert!(
                a.0 == b.0 && a.1 == b.1 || (a.0 > a.1 && b.0 > b.1),
                "{xs:?}"
            );
        }
    }

    /// The integer-key scan gives the bits of the 8-lane float scan, zeros of both
    /// signs (in any order), NaN and infinities included, every build the same.
    #[test]
    fn key_min_max_gives_the_lane_scan_bits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let specials = [
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            -1.0,
        ];
        for case in 0..400 {
            let n = rng.random_range(0..100);
            let xs: Vec<f32> = (0..n)
                .map(|_| match case % 4 {
                    // Mostly zeros of both signs: the ties.
                    0 => specials[rng.random_range(0..3)],
                    1 => specials[rng.random_range(0..7)],
                    2 => -rng.random_range(0.0..4.0f32).floor(),
                    _ => rng.random_range(-3.0..3.0),
                })
                .collect();
            let (f, g) = (fast_min_max(&xs), lane_min_max(&xs));
            assert_eq!(
                (f.0.to_bits(), f.1.to_bits()),
                (g.0.to_bits(), g.1.to_bits()),
                "{xs:?}"
            );
            assert_eq!(key_min_max(&xs), key_min_max_body(&xs), "{xs:?}");
        }
    }

    #[test]
    fn auto_keeps_minmax_for_bounded_data_and_clips_rare_outliers() {
        // Uniform values: clipping cannot pay 3 dB, minmax is kept.
        let kind = ObserverKind::Auto;
        let mut s = TensorStats::new(kind);
        let xs: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0 - 0.5).collect();
        s.observe(kind, &xs);
        let (k, r) = s.auto_choice().unwrap();
        assert_eq!(k, ObserverKind::MinMax);
        assert_eq!(r, (s.min, s.max));
        // A large bulk and one far outlier: the bulk's rounding error under minmax
        // (4e6 values × step²/12, step = 201/255) outweighs the outlier's clipping error
        // (~199²) by about 7 dB, so a clipped range wins and is the tensor's range. (With
        // few values the outlier's error wins: squared error clips only rare outliers.)
        let mut s = TensorStats::new(kind);
        let mut xs: Vec<f32> = (0..4_000_000)
            .map(|i| (i % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        xs.push(200.0);
        s.observe(kind, &xs);
        let (k, r) = s.auto_choice().unwrap();
        assert!(
            matches!(k, ObserverKind::Mse | ObserverKind::Percentile(_)),
            "{k}"
        );
        assert!(r.1 < 50.0, "{r:?}");
        assert_eq!(s.range(kind), Some(r));
        assert_eq!("auto".parse::<ObserverKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), "auto");
    }

    #[test]
    fn sentinels_never_set_the_range() {
        // A max pool's pad value, a mask, infinities: the range is the ordinary values'.
        let (lo, hi, s) = ordinary_min_max(&[-f32::MAX, 0.5, -0.25, 2.0, -f32::MAX]);
        assert_eq!((lo, hi, s.below, s.above), (-0.25, 2.0, 2, 0));
        let (lo, hi, s) = ordinary_min_max(&[-1e9 + 3.0, 3.0, -4.0, 1e30, f32::NEG_INFINITY]);
        assert_eq!((lo, hi, s.below, s.above), (-4.0, 3.0, 2, 1));
        // Only zeros besides the mask: any mask-class value is far out.
        let (lo, hi, s) = ordinary_min_max(&[0.0, -1e9, 0.0]);
        assert_eq!((lo, hi, s.below), (0.0, 0.0, 1));
        // Large but not far (a 2e6 peak among values up to 500) and anything below 1e6
        // stay ordinary.
        let (lo, hi, s) = ordinary_min_max(&[2e6, 500.0, -3.0]);
        assert_eq!((lo, hi, s.is_none()), (-3.0, 2e6, true));
        let (lo, hi, s) = ordinary_min_max(&[-9.9e5, 1e-3]);
        assert_eq!((lo, hi, s.is_none()), (-9.9e5, 1e-3, true));
        // Observers: counted over samples; a sample of sentinels only counts as [0, 0].
        let mut t = TensorStats::new(ObserverKind::Percentile(99.0));
        t.observe(ObserverKind::Percentile(99.0), &[-f32::MAX; 4]);
        t.observe(ObserverKind::Percentile(99.0), &[-1.0, 2.0, f32::INFINITY]);
        assert_eq!((t.min, t.max), (-1.0, 2.0));
        assert_eq!((t.sentinels.below, t.sentinels.above), (4, 1));
        let (lo, hi) = t.range(ObserverKind::Percentile(99.0)).unwrap();
        assert!(lo >= -1.0 && hi <= 2.0, "[{lo}, {hi}]");
    }

    #[test]
    fn stream_extreme_extrapolates_over_blocks_of_the_streams_correlation() {
        // Uncorrelated (alternating: ρ < 0, clamped to 0): blocks of one sample, so
        // `2·X(n) − X(n−1)`.
        let alt = [1.0, 5.0, 2.0, 4.0, 1.0, 3.0];
        assert_eq!(stream_extreme(&alt, 5.0), 6.0);
        // Four "utterances" of four frames each: the frames of one share their level
        // (ρ ≈ 0.61, blocks of ⌈1.61 / 0.39⌉ = 5 frames, the last one 6: maxima 6, 6
        // and 9), so the gap is between utterances (9 − 6), not between the two
        // largest frames (9 − 8.9): 12, where `extrapolate` gives 9.1. A ramp (ρ =
        // 0.625 over 8 samples) is a single block: no estimate.
        let stream = [
            1.0, 1.2, 1.1, 1.0, 6.0, 5.9, 5.8, 6.0, 2.0, 2.1, 2.0, 1.9, 8.9, 9.0, 8.8, 8.7,
        ];
        assert_eq!(stream_extreme(&stream, 9.0), 12.0);
        // Too few samples, one block only, a bound every sample reaches: the seen value.
        assert_eq!(stream_extreme(&[1.0, 3.0, 2.0], 3.0), 3.0);
        let ramp: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(stream_extreme(&ramp, 7.0), 7.0);
        assert_eq!(stream_extreme(&[6.0; 8], 6.0), 6.0);
        // A minimum of +0 (RELU) stays +0 through the negation.
        let mut t = TensorStats::new(ObserverKind::MinMax);
        t.record_series();
        for x in &stream {
            t.observe(ObserverKind::MinMax, &[0.0, *x]);
        }
        let (lo, hi) = t.range(ObserverKind::MinMax).unwrap();
        assert_eq!((lo.to_bits(), hi), (0f32.to_bits(), 12.0));
        assert_eq!(t.seen(), Some((0.0, 9.0)));
        // Without the series (independent samples) `minmax` is the seen range, and
        // streams cannot be merged.
        let mut u = TensorStats::new(ObserverKind::MinMax);
        u.observe(ObserverKind::MinMax, &[0.0, 9.0]);
        assert_eq!(u.range(ObserverKind::MinMax), Some((0.0, 9.0)));
        assert!(u.merge(ObserverKind::MinMax, &t).is_none());
        assert_eq!("seen".parse::<StreamRanges>().unwrap(), StreamRanges::Seen);
        assert_eq!(StreamRanges::default().to_string(), "extrapolate");
        assert!("last".parse::<StreamRanges>().is_err());
    }

    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    fn feed(kind: ObserverKind, samples: &[Vec<f32>]) -> (f32, f32) {
        let mut s = TensorStats::new(kind);
        for x in samples {
            s.observe(kind, x);
        }
        s.range(kind).unwrap()
    }

    fn gaussian(seed: u64, n: usize, per: usize) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let d = Normal::new(0.0f32, 1.0).unwrap();
        (0..n)
            .map(|_| (0..per).map(|_| d.sample(&mut rng)).collect())
            .collect()
    }

    #[test]
    fn parses_observer_names() {
        assert_eq!(
            "minmax".parse::<ObserverKind>().unwrap(),
            ObserverKind::MinMax
        );
        assert_eq!(
            "ema:0.9".parse::<ObserverKind>().unwrap(),
            ObserverKind::Ema(0.9)
        );
        assert_eq!(
            "percentile:99.9".parse::<ObserverKind>().unwrap(),
            ObserverKind::Percentile(99.9)
        );
        for bad in ["median", "ema:2", "percentile", "percentile:abc", "mse:3"] {
            let e = bad.parse::<ObserverKind>().unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(
                e.to_string().contains("minmax, extrapolate, ema:0.95"),
                "{e}"
            );
        }
    }

    #[test]
    fn minmax_and_ema_on_known_samples() {
        let s = vec![vec![0.0, 1.0], vec![-2.0, 3.0], vec![-1.0, 1.0]];
        assert_eq!(feed(ObserverKind::MinMax, &s), (-2.0, 3.0));
        // ema 0.5: (0,1) → (-1, 2) → (-1, 1.5)
        assert_eq!(feed(ObserverKind::Ema(0.5), &s), (-1.0, 1.5));
    }

    #[test]
    fn extrapolate_widens_by_the_gap_to_the_second_extreme_sample() {
        // Per-sample extremes: min 0, -2, -1 and max 1, 3, 1.5: 3 + (3 - 1.5), -2 - (-1 + 2).
        let s = vec![vec![0.0, 1.0], vec![-2.0, 3.0], vec![-1.0, 1.5]];
        assert_eq!(feed(ObserverKind::Extrapolate(1.0), &s), (-3.0, 4.5));
        assert_eq!(feed(ObserverKind::Extrapolate(0.5), &s), (-2.5, 3.75));
        // A bound that several samples reach (RELU's 0, pixels' 1) is not widened.
        let relu = vec![vec![0.0, 0.5], vec![0.0, 1.0], vec![0.0, 1.0]];
        assert_eq!(feed(ObserverKind::Extrapolate(1.0), &relu), (0.0, 1.0));
        // One sample: minmax.
        assert_eq!(feed(ObserverKind::Extrapolate(1.0), &s[1..2]), (-2.0, 3.0));
        // Order-free: merged halves give the sequential statistics.
        let kind = ObserverKind::Extrapolate(1.0);
        let g = gaussian(3, 40, 50);
        let mut a = TensorStats::new(kind);
        let mut b = TensorStats::new(kind);
        for (i, x) in g.iter().enumerate() {
            if i % 3 == 0 { &mut a } else { &mut b }.observe(kind, x);
        }
        a.merge(kind, &b).unwrap();
        assert_eq!(a.range(kind), Some(feed(kind, &g)));
        assert_eq!(a.samples, 40);
        // The parameter is checked.
        assert_eq!("extrapolate".parse::<ObserverKind>().unwrap(), kind);
        assert_eq!(
            "extrapolate:0.5"
                .parse::<ObserverKind>()
                .unwrap()
                .to_string(),
            "extrapolate:0.5"
        );
        for bad in ["extrapolate:0", "extrapolate:1.5", "extrapolate:x"] {
            assert!(bad.parse::<ObserverKind>().is_err(), "{bad}");
        }
    }

    #[test]
    fn percentile_of_a_gaussian_matches_its_quantiles() {
        // 99.9th percentile of N(0,1) = 3.090; histogram bins are r/4096 wide and the
        // empirical quantile of 400k values has a standard error of about 0.01.
        let s = gaussian(1, 100, 4000);
        let (lo, hi) = feed(ObserverKind::Percentile(99.9), &s);
        assert!((hi - 3.090).abs() < 0.05, "hi {hi}");
        assert!((lo + 3.090).abs() < 0.05, "lo {lo}");
        // 100 keeps the full range.
        let (lo, hi) = feed(ObserverKind::Percentile(100.0), &s);
        let (mn, mx) = feed(ObserverKind::MinMax, &s);
        assert!(
            (lo - mn).abs() <= 2.0 * mx / HIST_BINS as f32
                && (hi - mx).abs() <= 2.0 * mx / HIST_BINS as f32
        );
    }

    #[test]
    fn mse_clips_a_long_tail_but_keeps_a_uniform_range() {
        // Uniform in [-1, 1]: clipping only adds error, the full range is best.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let u: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..5000).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let (lo, hi) = feed(ObserverKind::Mse, &u);
        assert!(lo < -0.97 && hi > 0.97, "uniform: [{lo}, {hi}]");
        // Laplace(b = 1), 100k values: max |x| is about ln(100k) ≈ 11.5; the MSE-optimal
        // 8-bit clipping of a Laplace is about 9.9 b (Banner et al. 2019), so the range
        // must shrink on both sides, but not below a few b.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let e = rand_distr::Exp::new(1.0f32).unwrap();
        let l: Vec<Vec<f32>> = (0..20)
            .map(|_| {
                (0..5000)
                    .map(|_| e.sample(&mut rng) * if rng.random_bool(0.5) { 1.0 } else { -1.0 })
                    .collect()
            })
            .collect();
        let (mn, mx) = feed(ObserverKind::MinMax, &l);
        let (lo, hi) = feed(ObserverKind::Mse, &l);
        assert!(hi < mx * 0.97 && hi > 5.0, "laplace hi {hi} (max {mx})");
        assert!(lo > mn * 0.97 && lo < -5.0, "laplace lo {lo} (min {mn})");
    }

    #[test]
    fn entropy_threshold_of_a_gaussian_is_a_few_sigma() {
        // TensorRT-style KL thresholds for N(0,1) with 128 levels land around 2.5–5σ,
        // inside the ~4.4σ maximum of 100k values.
        let g = gaussian(4, 20, 5000);
        let (_, mx) = feed(ObserverKind::MinMax, &g);
        let (lo, hi) = feed(ObserverKind::Entropy, &g);
        assert!(hi > 2.5 && hi < mx, "hi {hi} (max {mx})");
        assert!(lo < -2.5, "lo {lo}");
        // An outlier at 100 must not drag the threshold along (the histogram then
        // spans ±128, so the smallest threshold of 128 of 2048 bins is 8).
        let mut g = g;
        g[0][0] = 100.0;
        let (_, hi) = feed(ObserverKind::Entropy, &g);
        assert!(hi > 2.5 && hi < 20.0, "with outlier: hi {hi}");
        // All non-negative data: the lower bound stays at the minimum (0).
        let r: Vec<Vec<f32>> = gaussian(5, 10, 5000)
            .into_iter()
            .map(|v| v.into_iter().map(f32::abs).collect())
            .collect();
        let (lo, _) = feed(ObserverKind::Entropy, &r);
        assert!(lo >= 0.0, "lo {lo}");
    }

    #[test]
    fn histogram_growth_preserves_counts_and_positions() {
        let mut h = Histogram::new();
        h.add(&[0.5, -0.5], -0.5, 0.5);
        h.add(&[3.0], 3.0, 3.0);
        assert_eq!(h.total(), 3);
        assert!(h.r >= 3.0);
        let (lo, hi) = percentile_range(&h, 100.0);
        assert!(lo <= -0.5 && hi >= 3.0);
    }
}
