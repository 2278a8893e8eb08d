//! MSE-optimal clipping of per-channel int8 weight scales (see [`super`]).
//!
//! The search is the INT4 mse rounding's ([`rounding::mse_scales`]) with the int8
//! maximum: per channel, `r · max|w| / 127` for the clip ratios `r` of
//! [`rounding::CLIP_GRID`], keeping the one with the lowest squared rounding error.

use std::collections::{HashMap, HashSet};

use crate::ir::Model;
use crate::quant::math::{self, Channels};
use crate::quant::report::ClipStats;
use crate::quant::rounding;
use crate::rules::{self, Role};

/// How the per-channel scales of int8 weights are chosen in the integer modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightClipping {
    /// `max|w| / 127` per channel (TF's converter).
    #[default]
    Minmax,
    /// The clip ratio with the lowest squared rounding error per channel, on every
    /// layer.
    Mse,
    /// `Mse` on every layer but the output layers ([`output_layers`]), which keep
    /// min/max scales (the default in int8: [`super::default_clipping`]).
    #[serde(rename = "mse-hidden")]
    MseHidden,
}

impl WeightClipping {
    pub fn name(self) -> &'static str {
        match self {
            WeightClipping::Minmax => "minmax",
            WeightClipping::Mse => "mse",
            WeightClipping::MseHidden => "mse-hidden",
        }
    }

    /// The clipping of the weights of an operator: min/max for an output layer under
    /// `MseHidden`, else `self` ([`weight_scales`] treats `MseHidden` as `Mse`).
    pub fn for_layer(self, output_layer: bool) -> WeightClipping {
        match self {
            WeightClipping::MseHidden if output_layer => WeightClipping::Minmax,
            c => c,
        }
    }
}

/// The operators of subgraph `si` whose weights `--weight-clipping mse-hidden` leaves at
/// their min/max scales: those with a constant weight (a [`Role::Weight`] input in the
/// full-integer modes) from whose outputs a subgraph output is reached through
/// operators without one (the layers writing the logits, a regression's output...).
///
/// Why (docs/ACCURACY.md, "Weight clipping at the output layers"): clipping trades
/// the many small rounding errors of a channel for a few large ones on its largest
/// weights. A hidden layer's output channel feeds many later channels that average
/// its error; an output layer's channel is a model output, where the concentrated
/// error shows undiluted (and a SOFTMAX after it amplifies a runner-up logit's error).
/// With int16 probabilities, mse on every layer lost 0.30 dB on average against
/// min/max over the testdata models (14.3 dB on embedding_lookup, whose only weight is
/// its logits layer); on the hidden layers alone it gains +0.02 dB on average and
/// loses at most 0.12 dB on any model.
pub fn output_layers(model: &Model, si: usize) -> HashSet<usize> {
    let sg = &model.subgraphs[si];
    let weighted = |oi: usize| {
        let op = &sg.operators[oi];
        let Some(rule) = rules::rule_for(model.builtin(op)) else {
            return false;
        };
        op.inputs.iter().enumerate().any(|(pos, &t)| {
            matches!(rule.integer_role(pos), Role::Weight { .. })
                && usize::try_from(t)
                    .ok()
                    .and_then(|t| sg.tensors.get(t))
                    .is_some_and(|t| model.is_constant(t))
        })
    };
    let consumers = sg.consumers();
    let outputs: HashSet<i32> = sg.outputs.iter().copied().collect();
    (0..sg.operators.len())
        .filter(|&oi| weighted(oi))
        .filter(|&oi| {
            // Forward from `oi` through operators without a weight.
            let mut stack = vec![oi];
            let mut seen = HashSet::new();
            while let Some(o) = stack.pop() {
                if !seen.insert(o) {
                    continue;
                }
                for &t in &sg.operators[o].outputs {
                    if outputs.contains(&t) {
                        return true;
                    }
                    let readers = usize::try_from(t).ok().and_then(|t| consumers.get(t));
                    for &(c, _) in readers.into_iter().flatten() {
                        if !weighted(c) {
                            stack.push(c);
                        }
                    }
                }
            }
            false
        })
        .collect()
}

/// The int8 maximum of symmetric weights.
const QMAX: f32 = 127.0;

/// Per-channel scales of `values` (channels `ch`) with `clipping`; for mse also what
/// the search changed.
pub fn weight_scales(
    values: &[f32],
    ch: Channels,
    clipping: WeightClipping,
) -> (Vec<f32>, Option<ClipStats>) {
    let minmax = math::symmetric_scales(values, ch, QMAX);
    match clipping {
        WeightClipping::Minmax => (minmax, None),
        WeightClipping::Mse | WeightClipping::MseHidden => {
            let chosen = rounding::mse_scales(values, ch, QMAX);
            let stats = ClipStats {
                elements: values.len(),
                channels: ch.channels,
                clipped: minmax.iter().zip(&chosen).filter(|(a, b)| b < a).count(),
                sq_err_minmax: channel_sq_errors(values, ch, &minmax).iter().sum(),
                sq_err_chosen: channel_sq_errors(values, ch, &chosen).iter().sum(),
            };
            (chosen, Some(stats))
        }
    }
}

/// [`weight_scales`] computed once per (values, channels, clipping) and handed back on
/// every later call with the same arguments, for runs that quantize the same weights
/// many times (the `--target-sqnr` search quantizes dozens of candidate models that
/// differ only in which operators are int8, 16x8 or float; the mse search of every
/// weight is most of a quantization's time). A hit compares the values bit for bit, so
/// the result is [`weight_scales`]' own (a pure function), never a hash collision's.
#[derive(Debug, Default)]
pub struct ScaleCache {
    entries: std::sync::Mutex<HashMap<CacheKey, Vec<CacheEntry>>>,
}

type CacheKey = (u64, usize, usize, usize, WeightClipping);
type CacheEntry = (Vec<u32>, (Vec<f32>, Option<ClipStats>));

impl ScaleCache {
    /// [`weight_scales`] of the arguments, computed on the first call only.
    pub fn weight_scales(
        &self,
        values: &[f32],
        ch: Channels,
        clipping: WeightClipping,
    ) -> (Vec<f32>, Option<ClipStats>) {
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let key = (
            fingerprint(&bits),
            values.len(),
            ch.channels,
            ch.inner,
            clipping,
        );
        let lookup = |map: &HashMap<CacheKey, Vec<CacheEntry>>| {
            map.get(&key)?
                .iter()
                .find(|(v, _)| *v == bits)
                .map(|(_, r)| r.clone())
        };
        if let Some(hit) = self.entries.lock().ok().and_then(|m| lookup(&m)) {
            return hit;
        }
        let r = weight_scales(values, ch, clipping);
        if let Ok(mut m) = self.entries.lock() {
            m.entry(key).or_default().push((bits, r.clone()));
        }
        r
    }
}

/// A cheap 64-bit fingerprint of a weight's bits (the cache's hash; equality is
/// checked on the values themselves).
fn fingerprint(bits: &[u32]) -> u64 {
    bits.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Squared rounding error of each channel with `scales`.
pub fn channel_sq_errors(values: &[f32], ch: Channels, scales: &[f32]) -> Vec<f64> {
    let mut err = vec![0f64; ch.channels];
    for (i, &v) in values.iter().enumerate() {
        let c = ch.of(i);
        let q = (v / scales[c]).round().clamp(-QMAX, QMAX);
        let d = v as f64 - q as f64 * scales[c] as f64;
        err[c] += d * d;
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::rounding::tests::noise;

    #[test]
    fn mse_never_loses_to_minmax_per_channel_and_clips_bell_shaped_channels() {
        // Bell-shaped channels (sums of four uniforms) of 4096 values: the few largest
        // values are worth clipping at 8 bits; half of them get a scaled copy of
        // their largest value (a tail), which must not make mse lose either.
        let (rows, cols) = (8, 4096);
        let base = noise(rows * cols * 4, 21);
        let mut w: Vec<f32> = base
            .chunks(4)
            .map(|c| c.iter().sum::<f32>() / 4.0)
            .collect();
        for r in (1..rows).step_by(2) {
            let m = w[r * cols..(r + 1) * cols]
                .iter()
                .fold(0f32, |a, v| a.max(v.abs()));
            w[r * cols + 3] = 1.3 * m;
        }
        let ch = Channels {
            channels: rows,
            inner: cols,
        };
        let (mm, none) = weight_scales(&w, ch, WeightClipping::Minmax);
        assert!(none.is_none());
        let (ms, stats) = weight_scales(&w, ch, WeightClipping::Mse);
        let stats = stats.unwrap();
        let (em, es) = (
            channel_sq_errors(&w, ch, &mm),
            channel_sq_errors(&w, ch, &ms),
        );
        for c in 0..rows {
            assert!(
                es[c] <= em[c],
                "channel {c}: mse {} > minmax {}",
                es[c],
                em[c]
            );
            assert!(ms[c] <= mm[c] && ms[c] >= mm[c] * 0.5);
            if c % 2 == 0 {
                assert!(es[c] < em[c] * 0.99, "channel {c}: {} vs {}", es[c], em[c]);
            }
        }
        assert!(stats.clipped >= rows / 2);
        assert!((stats.sq_err_minmax - em.iter().sum::<f64>()).abs() < 1e-12);
        assert!((stats.sq_err_chosen - es.iter().sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn uniform_and_zero_channels_keep_their_minmax_scale() {
        // A channel of ±1 only (exact at ratio 1) and an all-zero channel: nothing to
        // gain by clipping, ties keep min/max.
        let w: Vec<f32> = (0..64)
            .map(|i| {
                if i < 32 {
                    if i % 2 == 0 { 1.0 } else { -1.0 }
                } else {
                    0.0
                }
            })
            .collect();
        let ch = Channels {
            channels: 2,
            inner: 32,
        };
        let (mm, _) = weight_scales(&w, ch, WeightClipping::Minmax);
        let (ms, stats) = weight_scales(&w, ch, WeightClipping::Mse);
        assert_eq!(mm, ms);
        assert_eq!(stats.unwrap().clipped, 0);
    }

    #[test]
    fn the_scale_cache_hands_back_what_weight_scales_computes() {
        let w = noise(4 * 256, 5);
        let ch = Channels {
            channels: 4,
            inner: 256,
        };
        let cache = ScaleCache::default();
        for clipping in [WeightClipping::Mse, WeightClipping::Minmax] {
            let direct = weight_scales(&w, ch, clipping);
            // First call computes, the second is a hit: both the direct result.
            assert_eq!(cache.weight_scales(&w, ch, clipping), direct);
            assert_eq!(cache.weight_scales(&w, ch, clipping), direct);
        }
        // Other values (one element changed), other channels: not the cached result.
        let mut v = w.clone();
        v[7] *= 3.0;
        assert_eq!(
            cache.weight_scales(&v, ch, WeightClipping::Mse),
            weight_scales(&v, ch, WeightClipping::Mse)
        );
        let ch2 = Channels {
            channels: 2,
            inner: 512,
        };
        assert_eq!(
            cache.weight_scales(&w, ch2, WeightClipping::Mse),
            weight_scales(&w, ch2, WeightClipping::Mse)
        );
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.values().map(Vec::len).sum::<usize>(), 4);
    }
}
