//! Cross-layer equalization (`quantize --cle`, issue #15; Nagel et al. 2019, "Data-Free
//! Quantization Through Weight Equalization and Bias Correction"): a rewrite of the
//! *float* model, before calibration, that evens out the per-channel weight ranges of
//! two consecutive layers so that per-channel int8 weights and the per-tensor int8
//! activation between them lose less.
//!
//! For a pair `A → (nothing | RELU | MAX_POOL_2D | AVERAGE_POOL_2D …) → B` where
//! - `A` is CONV_2D or DEPTHWISE_CONV_2D and `B` is CONV_2D or a DEPTHWISE_CONV_2D of
//!   depth multiplier 1 (plain and depthwise-separable chains), or both are
//!   FULLY_CONNECTED,
//! - the operators between act per channel and commute with a positive per-channel
//!   scale (RELU; pools with a fused NONE or RELU), each the single reader of its input,
//! - `A`'s fused activation is NONE or RELU (positively homogeneous: `relu(x / s) =
//!   relu(x) / s` for `s > 0`),
//! - the tensor between them is float32, has exactly one reader and is no subgraph
//!   output, `B` reads it as its data input and has one weight input channel per channel
//!   of it (no grouped convolution),
//! - every weight and bias involved is a float32 constant that only this operator reads
//!   and whose buffer no other tensor shares,
//!
//! output channel `i` of `A` (weights and bias) is divided by `s_i` and input channel
//! `i` of `B`'s weights multiplied by it, with `s_i = sqrt(r1_i · r2_i) / r2_i` (`r1_i`:
//! largest magnitude of `A`'s output channel `i`, `r2_i`: of `B`'s input channel `i`), so
//! that both become `sqrt(r1_i · r2_i)`. The model computes the same function (up to
//! float rounding). Chains (`A → B → C`) share layers between pairs: all pairs are
//! swept again until no scale moves by more than [`CONVERGED`] (at most [`MAX_SWEEPS`]).
//!
//! **RELU6 (and RELU_N1_TO_1, TANH, …) pairs are skipped**, with the reason: clamping at
//! 6 is not scale-equivariant (`min(relu(x)/s, 6) ≠ min(relu(x), 6)/s` once the clamp is
//! active), so equalizing them would change the float model. AIMET replaces RELU6 by
//! RELU before equalizing, which changes the model's function on every input that
//! reaches the clamp; checking calibrated ranges only proves the clamp inactive on the
//! calibration data, not on what the model sees later. We keep the float model exact.
//!
//! Weights stored as FLOAT16 or sparse are folded to dense float32 first
//! ([`fold::fold_weight_encodings`], the quantizer's own first pass: tensor indices do
//! not change, so ranges calibrated on the result line up with the quantizer's graph).

use std::collections::HashMap;

use crate::error::Result;
use crate::fb::TensorType;
use crate::fb::{ActivationFunctionType as Act, BuiltinOperator as Op, BuiltinOptions as O};
use crate::ir::Model;
use crate::quant::fold;
use crate::quant::math::{Channels, f32_bytes, f32_values};
use crate::quant::report::Report;

/// Sweeps over all pairs at most.
pub const MAX_SWEEPS: usize = 20;
/// A sweep in which no scale differs from 1 by more than this ends the iteration.
pub const CONVERGED: f32 = 1e-4;
/// Scales are kept within `[1/MAX_SCALE, MAX_SCALE]` per sweep, so that a channel of
/// (almost) zeros on one side cannot push the other side's values to denormals or
/// infinity.
pub const MAX_SCALE: f32 = 1024.0;

/// One equalized pair, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub subgraph: usize,
    /// Operator indices of `A` and `B` in the rewritten model.
    pub first: usize,
    pub second: usize,
    pub channels: usize,
    /// Mean over channels of `min(r1_i/max r1, r2_i/max r2)` before and after: how much
    /// of each layer's per-tensor range its channels use (1 = all channels alike).
    pub balance_before: f32,
    pub balance_after: f32,
}

/// A candidate pair that was not equalized, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub subgraph: usize,
    pub operator: usize,
    pub why: String,
}

/// What [`equalize`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub pairs: Vec<Pair>,
    pub skipped: Vec<Skipped>,
    pub sweeps: usize,
}

impl Summary {
    /// Report notes: one line per pair and per skipped candidate.
    pub fn notes(&self) -> Vec<String> {
        let mut v = vec![format!(
            "--cle: {} pair(s) equalized in {} sweep(s), {} candidate(s) skipped",
            self.pairs.len(),
            self.sweeps,
            self.skipped.len()
        )];
        for p in &self.pairs {
            v.push(format!(
                "--cle: subgraph {} operators {} → {}: {} channels equalized (channel balance {:.2} → {:.2})",
                p.subgraph, p.first, p.second, p.channels, p.balance_before, p.balance_after
            ));
        }
        for s in &self.skipped {
            v.push(format!(
                "--cle: subgraph {} operator {} not equalized: {}",
                s.subgraph, s.operator, s.why
            ));
        }
        v
    }
}

/// Layer kinds CLE rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conv,
    Depthwise,
    FullyConnected,
}

impl Kind {
    fn of(op: Op) -> Option<Kind> {
        match op {
            Op::Conv2d => Some(Kind::Conv),
            Op::DepthwiseConv2d => Some(Kind::Depthwise),
            Op::FullyConnected => Some(Kind::FullyConnected),
            _ => None,
        }
    }

    /// Axis of the weight's output channels.
    fn out_axis(self, rank: usize) -> usize {
        match self {
            Kind::Depthwise => rank - 1,
            Kind::Conv | Kind::FullyConnected => 0,
        }
    }
}

/// Operators allowed between the two layers: they act on each channel alone and
/// commute with a positive per-channel scale (`f(x / s) = f(x) / s`).
#[derive(Debug, Clone, Copy)]
enum Between {
    Relu,
    MaxPool,
    AveragePool,
}

impl Between {
    fn of(op: Op) -> Option<Between> {
        match op {
            Op::Relu => Some(Between::Relu),
            Op::MaxPool2d => Some(Between::MaxPool),
            Op::AveragePool2d => Some(Between::AveragePool),
            _ => None,
        }
    }

    /// Pools only with a fused NONE or RELU.
    fn homogeneous(self, op: &crate::ir::Operator) -> bool {
        match (self, &op.builtin_options) {
            (Between::Relu, _) => true,
            (Between::MaxPool | Between::AveragePool, Some(O::Pool2DOptions(o))) => {
                matches!(o.fused_activation_function, Act::None | Act::Relu)
            }
            _ => false,
        }
    }
}

/// A pair found in the graph: tensor indices of the weights and bias involved.
#[derive(Debug, Clone)]
struct Found {
    subgraph: usize,
    first: usize,
    second: usize,
    w1: usize,
    out_axis1: usize,
    b1: Option<usize>,
    w2: usize,
    in_axis2: usize,
    channels: usize,
}

/// Working copies of every weight and bias involved: (subgraph, tensor) → values.
type Values = HashMap<(usize, usize), Vec<f32>>;

/// Equalizes every pair of `model` that qualifies (see the module header) and returns
/// the rewritten float model with what was done. The input is not modified.
pub fn equalize(model: &Model) -> Result<(Model, Summary)> {
    fold::check_weight_encodings(model)?;
    let mut m = model.clone();
    let mut scratch = Report::default();
    fold::fold_weight_encodings(
        &mut m,
        fold::FoldOptions { keep_sparse: false },
        &mut scratch,
    )?;
    let mut summary = Summary::default();
    let found = find_pairs(&m, &mut summary.skipped);
    if found.is_empty() {
        return Ok((m, summary));
    }
    let mut values: Values = HashMap::new();
    for f in &found {
        for t in [Some(f.w1), f.b1, Some(f.w2)].into_iter().flatten() {
            values.entry((f.subgraph, t)).or_insert_with(|| {
                let sg = &m.subgraphs[f.subgraph];
                f32_values(m.tensor_data(&sg.tensors[t]))
            });
        }
    }
    let before: Vec<f32> = found.iter().map(|f| pair_balance(&m, &values, f)).collect();
    for sweep in 0..MAX_SWEEPS {
        summary.sweeps = sweep + 1;
        let moved = found
            .iter()
            .map(|f| equalize_pair(&m, &mut values, f))
            .fold(0f32, f32::max);
        if moved <= CONVERGED {
            break;
        }
    }
    for (f, b) in found.iter().zip(before) {
        summary.pairs.push(Pair {
            subgraph: f.subgraph,
            first: f.first,
            second: f.second,
            channels: f.channels,
            balance_before: b,
            balance_after: pair_balance(&m, &values, f),
        });
    }
    let mut keys: Vec<_> = values.keys().copied().collect();
    keys.sort_unstable();
    for (si, t) in keys {
        let bytes = f32_bytes(&values[&(si, t)]);
        let b = m.add_buffer(bytes);
        m.subgraphs[si].tensors[t].buffer = b;
    }
    crate::quant::prune::prune(&mut m);
    Ok((m, summary))
}

/// The channel layouts of a pair's first weight (output channels) and second weight
/// (input channels).
fn pair_channels(m: &Model, f: &Found) -> (Channels, Channels) {
    let tensors = &m.subgraphs[f.subgraph].tensors;
    (
        Channels::new(&tensors[f.w1].shape, Some(f.out_axis1)),
        Channels::new(&tensors[f.w2].shape, Some(f.in_axis2)),
    )
}

/// The per-channel ranges `(r1, r2)` of a pair in its current values.
fn pair_ranges(m: &Model, values: &Values, f: &Found) -> (Vec<f32>, Vec<f32>) {
    let (ch1, ch2) = pair_channels(m, f);
    (
        channel_ranges(&values[&(f.subgraph, f.w1)], ch1),
        channel_ranges(&values[&(f.subgraph, f.w2)], ch2),
    )
}

fn pair_balance(m: &Model, values: &Values, f: &Found) -> f32 {
    let (r1, r2) = pair_ranges(m, values, f);
    balance(&r1, &r2)
}

/// One equalization step of a pair; returns the largest `|s_i − 1|`.
fn equalize_pair(m: &Model, values: &mut Values, f: &Found) -> f32 {
    let (r1, r2) = pair_ranges(m, values, f);
    let s: Vec<f32> = r1.iter().zip(&r2).map(|(&a, &b)| scale(a, b)).collect();
    let (ch1, ch2) = pair_channels(m, f);
    let mut rescale = |t: usize, ch: Channels, divide: bool| {
        if let Some(v) = values.get_mut(&(f.subgraph, t)) {
            scale_channels(v, ch, &s, divide);
        }
    };
    rescale(f.w1, ch1, true);
    if let Some(b) = f.b1 {
        rescale(b, Channels::new(&[f.channels as i32], Some(0)), true);
    }
    rescale(f.w2, ch2, false);
    s.iter().fold(0f32, |acc, &x| acc.max((x - 1.0).abs()))
}

/// `s = sqrt(r1 · r2) / r2`, 1 where either side is all zeros or not finite, clamped to
/// `[1/MAX_SCALE, MAX_SCALE]`.
fn scale(r1: f32, r2: f32) -> f32 {
    if !(r1 > 0.0 && r2 > 0.0 && r1.is_finite() && r2.is_finite()) {
        return 1.0;
    }
    ((r1 as f64 / r2 as f64).sqrt() as f32).clamp(1.0 / MAX_SCALE, MAX_SCALE)
}

/// Largest magnitude per channel.
fn channel_ranges(values: &[f32], ch: Channels) -> Vec<f32> {
    let mut r = vec![0f32; ch.channels];
    for (i, &v) in values.iter().enumerate() {
        let c = ch.of(i);
        r[c] = r[c].max(v.abs());
    }
    r
}

/// Divides (`divide`) or multiplies every value of channel `c` by `s[c]`.
fn scale_channels(values: &mut [f32], ch: Channels, s: &[f32], divide: bool) {
    for (i, v) in values.iter_mut().enumerate() {
        let k = s[ch.of(i)];
        if divide {
            *v /= k;
        } else {
            *v *= k;
        }
    }
}

/// Mean over channels of the smaller of the two relative channel ranges.
fn balance(r1: &[f32], r2: &[f32]) -> f32 {
    let m1 = r1.iter().copied().fold(0f32, f32::max);
    let m2 = r2.iter().copied().fold(0f32, f32::max);
    if m1 <= 0.0 || m2 <= 0.0 || r1.is_empty() {
        return 1.0;
    }
    let sum: f32 = r1.iter().zip(r2).map(|(a, b)| (a / m1).min(b / m2)).sum();
    sum / r1.len() as f32
}

/// The fused activation of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED.
fn activation(op: &crate::ir::Operator) -> Act {
    match &op.builtin_options {
        Some(O::Conv2DOptions(o)) => o.fused_activation_function,
        Some(O::DepthwiseConv2DOptions(o)) => o.fused_activation_function,
        Some(O::FullyConnectedOptions(o)) => o.fused_activation_function,
        _ => Act::None,
    }
}

fn index(t: i32) -> Option<usize> {
    usize::try_from(t).ok()
}

/// Every qualifying pair of the model; candidates `A` that have a rewritable successor
/// kind but fail a condition are recorded in `skipped` with the reason.
fn find_pairs(m: &Model, skipped: &mut Vec<Skipped>) -> Vec<Found> {
    // How many tensors (over all subgraphs) point at each buffer.
    let mut buffer_users = vec![0usize; m.buffers.len()];
    for sg in &m.subgraphs {
        for t in &sg.tensors {
            if let Some(n) = buffer_users.get_mut(t.buffer as usize) {
                *n += 1;
            }
        }
    }
    let mut out = Vec::new();
    for (si, sg) in m.subgraphs.iter().enumerate() {
        let view = View {
            m,
            sg,
            si,
            consumers: sg.consumers(),
            outputs: sg.outputs.iter().filter_map(|&t| index(t)).collect(),
            buffer_users: &buffer_users,
        };
        for oi in 0..sg.operators.len() {
            match view.pair(oi) {
                None => {}
                Some(Ok(f)) => out.push(f),
                Some(Err(why)) => skipped.push(Skipped {
                    subgraph: si,
                    operator: oi,
                    why,
                }),
            }
        }
    }
    out
}

/// One subgraph as [`find_pairs`] looks at it.
struct View<'a> {
    m: &'a Model,
    sg: &'a crate::ir::Subgraph,
    si: usize,
    consumers: Vec<Vec<(usize, usize)>>,
    outputs: Vec<usize>,
    buffer_users: &'a [usize],
}

impl View<'_> {
    /// A constant read by exactly one operator, float32, dense, with an unshared buffer.
    fn own_constant(&self, t: i32) -> Option<usize> {
        let t = index(t)?;
        let tensor = self.sg.tensors.get(t)?;
        (tensor.dtype == TensorType::Float32
            && tensor.sparsity.is_none()
            && tensor.quant.as_ref().is_none_or(|q| q.scale.is_empty())
            && self.m.is_constant(tensor)
            && self.consumers[t].len() == 1
            && self.buffer_users.get(tensor.buffer as usize) == Some(&1))
        .then_some(t)
    }

    /// The single reader `(operator, input position)` of a float intermediate tensor
    /// that is no subgraph output.
    fn single_reader(&self, t: usize) -> Option<(usize, usize)> {
        let ok = !self.outputs.contains(&t) && self.sg.tensors[t].dtype == TensorType::Float32;
        match self.consumers[t].as_slice() {
            [one] if ok => Some(*one),
            _ => None,
        }
    }

    /// The layer reading `A`'s output `t`, through per-channel homogeneous operators.
    fn next_layer(&self, t: usize) -> Option<(usize, usize)> {
        let (mut next, mut pos) = self.single_reader(t)?;
        while let Some(k) = Between::of(self.m.builtin(&self.sg.operators[next])) {
            let op = &self.sg.operators[next];
            if pos != 0 || !k.homogeneous(op) {
                return None;
            }
            let u = op.outputs.first().and_then(|&u| index(u))?;
            (next, pos) = self.single_reader(u)?;
        }
        Some((next, pos))
    }

    /// Operator `oi` as the first layer of a pair: `None` when it is no candidate,
    /// `Err(why)` when it is one that cannot be equalized.
    fn pair(&self, oi: usize) -> Option<std::result::Result<Found, String>> {
        let op = &self.sg.operators[oi];
        let k1 = Kind::of(self.m.builtin(op))?;
        let t = op.outputs.first().and_then(|&t| index(t))?;
        let (next, pos) = self.next_layer(t)?;
        let op2 = &self.sg.operators[next];
        let k2 = Kind::of(self.m.builtin(op2))?;
        let chain_ok = matches!(
            (k1, k2),
            (Kind::Conv | Kind::Depthwise, Kind::Conv | Kind::Depthwise)
                | (Kind::FullyConnected, Kind::FullyConnected)
        );
        if !chain_ok {
            return None;
        }
        Some(self.check(oi, next, pos, k1, k2))
    }

    /// The conditions on a candidate pair `oi → next` (see the module header).
    fn check(
        &self,
        oi: usize,
        next: usize,
        pos: usize,
        k1: Kind,
        k2: Kind,
    ) -> std::result::Result<Found, String> {
        let (op, op2) = (&self.sg.operators[oi], &self.sg.operators[next]);
        let act = activation(op);
        if !matches!(act, Act::None | Act::Relu) {
            return Err(format!(
                "its fused activation {act:?} is not scale-equivariant (only NONE and RELU are)"
            ));
        }
        if pos != 0 {
            return Err("the next layer reads its output as a weight".into());
        }
        let w1 = op
            .inputs
            .get(1)
            .and_then(|&w| self.own_constant(w))
            .ok_or_else(|| {
                "its weight is not a float32 constant of its own (shared or computed)".to_string()
            })?;
        let b1 = match op.inputs.get(2).copied() {
            None | Some(-1) => None,
            Some(b) => Some(
                self.own_constant(b)
                    .ok_or("its bias is not a float32 constant of its own")?,
            ),
        };
        let w2 = op2.inputs.get(1).and_then(|&w| self.own_constant(w)).ok_or_else(|| {
            format!(
                "the weight of operator {next} is not a float32 constant of its own (shared or computed)"
            )
        })?;
        let (s1, s2) = (&self.sg.tensors[w1].shape, &self.sg.tensors[w2].shape);
        let expected_rank = |k: Kind| if k == Kind::FullyConnected { 2 } else { 4 };
        if s1.len() != expected_rank(k1) || s2.len() != expected_rank(k2) {
            return Err("unexpected weight rank".into());
        }
        let out_axis1 = k1.out_axis(s1.len());
        let in_axis2 = s2.len() - 1;
        let channels = s1[out_axis1];
        if channels <= 0 || s2[in_axis2] != channels {
            return Err(format!(
                "operator {next} has {} weight input channels for {channels} output channels \
                 (grouped, or a depth multiplier above 1)",
                s2[in_axis2]
            ));
        }
        if let Some(b) = b1
            && self.sg.tensors[b].shape != [channels]
        {
            return Err("its bias does not have one value per output channel".into());
        }
        Ok(Found {
            subgraph: self.si,
            first: oi,
            second: next,
            w1,
            out_axis1,
            b1,
            w2,
            in_axis2,
            channels: channels as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_balances_the_two_ranges() {
        let s = scale(8.0, 2.0);
        assert!((8.0 / s - 2.0 * s).abs() < 1e-6, "both become sqrt(16) = 4");
        assert_eq!(scale(0.0, 3.0), 1.0);
        assert_eq!(scale(3.0, 0.0), 1.0);
        assert_eq!(scale(1e12, 1e-12), MAX_SCALE);
    }

    #[test]
    fn channel_ranges_and_scaling_follow_the_axis() {
        // Shape [2, 3]: channels on axis 0 are rows, on axis 1 columns.
        let v = [1.0, -4.0, 2.0, 0.5, 3.0, -1.0];
        assert_eq!(
            channel_ranges(&v, Channels::new(&[2, 3], Some(0))),
            [4.0, 3.0]
        );
        assert_eq!(
            channel_ranges(&v, Channels::new(&[2, 3], Some(1))),
            [1.0, 4.0, 2.0]
        );
        let mut w = v;
        scale_channels(
            &mut w,
            Channels::new(&[2, 3], Some(1)),
            &[1.0, 2.0, 4.0],
            false,
        );
        assert_eq!(w, [1.0, -8.0, 8.0, 0.5, 6.0, -4.0]);
    }
}
