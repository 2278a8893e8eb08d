//! Empirical bias correction (see [`super`]): the mean of each layer's input on the
//! calibration samples ([`collect`]), and the bias shift `ΔW·E[x]` it gives
//! ([`InputMeans::correction`]).
//!
//! A FULLY_CONNECTED `y = W x + b` quantized to `Wq = W + ΔW` computes on average
//! `ΔW·E[x]` more per output; subtracting it from `b` makes the quantized layer unbiased
//! on the data. A convolution is a FULLY_CONNECTED over im2col patches, so `E[x]` is
//! the mean patch (`[kh, kw, in]`, zeros where the kernel overhangs the input, as the
//! kernel sees them); a depthwise output channel `o` reads input channel `o / M` of
//! the same patch (M the depth multiplier).

use std::collections::HashMap;

use crate::error::Result;
use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::interp::{Flow, Interpreter, TensorId, Value};
use crate::ir::Model;
use crate::quant::math::Channels;
use crate::quant::rounding::ConvGeometry;

/// im2col patches averaged per sample and convolution (evenly spaced over the output
/// when there are more).
const MAX_PATCHES_PER_SAMPLE: usize = 4096;

/// `(subgraph, operator)`.
type LayerKey = (usize, usize);

/// How a layer reads its input, and so how its input mean is laid out.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// FULLY_CONNECTED: rows of `n` input features.
    Rows { n: usize },
    /// CONV_2D or DEPTHWISE_CONV_2D: im2col patches `[kh, kw, in]`.
    Patches(ConvGeometry),
}

impl Reader {
    fn len(&self) -> usize {
        match self {
            Reader::Rows { n } => *n,
            Reader::Patches(g) => g.patch_len(),
        }
    }
}

/// The mean input of one layer: per input feature (FULLY_CONNECTED) or per patch
/// element (convolutions), over every row / patch of every calibration sample.
#[derive(Debug, Clone)]
pub struct LayerMean {
    sum: Vec<f64>,
    count: u64,
    /// Input channels of a convolution's patch (the last patch dimension).
    in_channels: usize,
}

impl LayerMean {
    fn mean(&self) -> impl Iterator<Item = f64> + '_ {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(move |s| s / n)
    }
}

/// The input means of every FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D with a
/// constant float weight and a bias, keyed by `(subgraph, operator)`.
#[derive(Debug, Clone, Default)]
pub struct InputMeans {
    layers: HashMap<(usize, usize), LayerMean>,
    /// Calibration samples they were measured on.
    pub samples: usize,
}

/// Why an operator's bias is not corrected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D.
    Op,
    /// Its input was never seen with the shape the layer needs (not run, or a shape
    /// that differs from the model's).
    NoData,
    /// The weight's layout does not fit the mean (shape mismatch).
    Shape,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skip::Op => "only FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D are corrected",
            Skip::NoData => "the layer's input was not seen on the calibration samples",
            Skip::Shape => "the weight's shape does not fit the layer's input",
        })
    }
}

/// The reader of operator `op`'s input 0 when bias correction applies to it (a
/// constant float32 weight as input 1 and a bias tensor as input 2).
fn reader(model: &Model, si: usize, oi: usize) -> Option<Reader> {
    let sg = &model.subgraphs[si];
    let op = &sg.operators[oi];
    let t = |pos: usize| op.inputs.get(pos).and_then(|&i| usize::try_from(i).ok());
    let (x, w) = (t(0)?, t(1)?);
    t(2)?;
    let wt = &sg.tensors[w];
    if !model.is_constant(wt) || wt.dtype != TensorType::Float32 {
        return None;
    }
    let dims: Vec<usize> = wt.shape.iter().map(|&d| d.max(0) as usize).collect();
    let xs = &sg.tensors[x].shape;
    let input4 = || -> Option<[usize; 4]> {
        (xs.len() == 4 && xs.iter().all(|&v| v > 0)).then(|| {
            [
                xs[0] as usize,
                xs[1] as usize,
                xs[2] as usize,
                xs[3] as usize,
            ]
        })
    };
    match (model.builtin(op), &op.builtin_options) {
        (Op::FullyConnected, _) if dims.len() == 2 && dims[1] > 0 => {
            Some(Reader::Rows { n: dims[1] })
        }
        (Op::Conv2d, Some(fb::BuiltinOptions::Conv2DOptions(o))) if dims.len() == 4 => {
            let input = input4()?;
            (input[3] == dims[3]).then_some(())?;
            Some(Reader::Patches(ConvGeometry {
                input,
                kernel: [dims[1], dims[2]],
                stride: [o.stride_h.max(1) as usize, o.stride_w.max(1) as usize],
                dilation: [
                    o.dilation_h_factor.max(1) as usize,
                    o.dilation_w_factor.max(1) as usize,
                ],
                same_padding: o.padding == fb::Padding::Same,
            }))
        }
        (Op::DepthwiseConv2d, Some(fb::BuiltinOptions::DepthwiseConv2DOptions(o)))
            if dims.len() == 4 =>
        {
            let input = input4()?;
            (input[3] > 0 && dims[0] == 1 && dims[3].is_multiple_of(input[3])).then_some(())?;
            Some(Reader::Patches(ConvGeometry {
                input,
                kernel: [dims[1], dims[2]],
                stride: [o.stride_h.max(1) as usize, o.stride_w.max(1) as usize],
                dilation: [
                    o.dilation_h_factor.max(1) as usize,
                    o.dilation_w_factor.max(1) as usize,
                ],
                same_padding: o.padding == fb::Padding::Same,
            }))
        }
        _ => None,
    }
}

/// Runs `samples` through the float `model` with the reference interpreter and
/// averages the input of every layer bias correction applies to.
pub fn collect(model: &Model, samples: &[Vec<Value>]) -> Result<InputMeans> {
    let mut wanted: HashMap<TensorId, Vec<(LayerKey, Reader)>> = HashMap::new();
    let mut layers = HashMap::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            let Some(r) = reader(model, si, oi) else {
                continue;
            };
            let Some(x) = op.inputs.first().and_then(|&i| usize::try_from(i).ok()) else {
                continue;
            };
            let in_channels = match r {
                Reader::Rows { n } => n,
                Reader::Patches(g) => g.input[3],
            };
            wanted
                .entry(TensorId {
                    subgraph: si,
                    tensor: x,
                })
                .or_default()
                .push(((si, oi), r));
            layers.insert(
                (si, oi),
                LayerMean {
                    sum: vec![0.0; r.len()],
                    count: 0,
                    in_channels,
                },
            );
        }
    }
    if wanted.is_empty() {
        return Ok(InputMeans {
            layers,
            samples: samples.len(),
        });
    }
    let mut it = Interpreter::new(model)?;
    for sample in samples {
        let mut observe = |id: TensorId, v: &Value| {
            let (Some(readers), Some(x)) = (wanted.get(&id), v.as_f32()) else {
                return Flow::Continue;
            };
            for &(key, reader) in readers {
                let Some(m) = layers.get_mut(&key) else {
                    continue;
                };
                match reader {
                    Reader::Rows { n } if x.len() % n == 0 => add_rows(m, x, n),
                    Reader::Patches(geo) if v.shape == geo.input => {
                        let p = geo.patches(x, MAX_PATCHES_PER_SAMPLE);
                        add_rows(m, &p, geo.patch_len());
                    }
                    _ => {}
                }
            }
            Flow::Continue
        };
        it.run_observed(sample, &mut observe)?;
    }
    Ok(InputMeans {
        layers,
        samples: samples.len(),
    })
}

fn add_rows(m: &mut LayerMean, x: &[f32], n: usize) {
    for row in x.chunks_exact(n) {
        for (s, &v) in m.sum.iter_mut().zip(row) {
            *s += v as f64;
        }
        m.count += 1;
    }
}

/// A quantized weight as the bias correction reads it: the float values, the integer
/// values and their per-channel scales.
pub struct QuantizedWeight<'a> {
    pub shape: &'a [i32],
    pub float: &'a [f32],
    pub int: &'a [i8],
    pub scales: &'a [f32],
    /// The channel axis of `scales` (`None`: one scale).
    pub axis: Option<usize>,
}

impl InputMeans {
    /// `E[ΔW·x]` per output channel of operator `(si, oi)` (the amount to subtract
    /// from its bias), or why there is none.
    pub fn correction(
        &self,
        (si, oi): (usize, usize),
        op: Op,
        w: &QuantizedWeight,
    ) -> std::result::Result<Vec<f64>, Skip> {
        if !matches!(op, Op::FullyConnected | Op::Conv2d | Op::DepthwiseConv2d) {
            return Err(Skip::Op);
        }
        let m = self.layers.get(&(si, oi)).ok_or(Skip::NoData)?;
        if m.count == 0 {
            return Err(Skip::NoData);
        }
        let mean: Vec<f64> = m.mean().collect();
        let dims: Vec<usize> = w.shape.iter().map(|&d| d.max(0) as usize).collect();
        let n = w.float.len();
        if w.int.len() != n || dims.iter().product::<usize>() != n || n == 0 {
            return Err(Skip::Shape);
        }
        let ch = Channels::new(w.shape, w.axis);
        if w.scales.len() != ch.channels {
            return Err(Skip::Shape);
        }
        let dq = |i: usize| w.int[i] as f64 * w.scales[ch.of(i)] as f64 - w.float[i] as f64;
        if op == Op::DepthwiseConv2d {
            // [1, kh, kw, oc]: element i is tap i / oc of output channel i % oc.
            let oc = *dims.last().ok_or(Skip::Shape)?;
            let ic = m.in_channels;
            if ic == 0 || !oc.is_multiple_of(ic) || mean.len() != (n / oc) * ic {
                return Err(Skip::Shape);
            }
            let mult = oc / ic;
            let mut out = vec![0f64; oc];
            for i in 0..n {
                let (tap, o) = (i / oc, i % oc);
                out[o] += dq(i) * mean[tap * ic + o / mult];
            }
            Ok(out)
        } else {
            // [out, k...]: rows of the flattened weight against the mean row / patch.
            let k = mean.len();
            if k == 0 || !n.is_multiple_of(k) || dims.first() != Some(&(n / k)) {
                return Err(Skip::Shape);
            }
            Ok((0..n / k)
                .map(|o| (0..k).map(|j| dq(o * k + j) * mean[j]).sum())
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn means(key: LayerKey, mean: &[f64], in_channels: usize) -> InputMeans {
        let mut layers = HashMap::new();
        layers.insert(
            key,
            LayerMean {
                sum: mean.iter().map(|m| m * 4.0).collect(),
                count: 4,
                in_channels,
            },
        );
        InputMeans { layers, samples: 4 }
    }

    #[test]
    fn fully_connected_correction_is_the_weight_error_times_the_mean_input() {
        // [2, 3] weight, per-channel scales 0.1 and 0.5.
        let float = [0.26f32, -0.14, 0.05, 1.2, -0.74, 0.3];
        let scales = [0.1f32, 0.5];
        let int: Vec<i8> = float
            .iter()
            .enumerate()
            .map(|(i, v)| (v / scales[i / 3]).round() as i8)
            .collect();
        let mean = [1.0, -2.0, 0.5];
        let m = means((0, 7), &mean, 3);
        let w = QuantizedWeight {
            shape: &[2, 3],
            float: &float,
            int: &int,
            scales: &scales,
            axis: Some(0),
        };
        let got = m.correction((0, 7), Op::FullyConnected, &w).unwrap();
        for o in 0..2 {
            let want: f64 = (0..3)
                .map(|j| {
                    let i = o * 3 + j;
                    (int[i] as f64 * scales[o] as f64 - float[i] as f64) * mean[j]
                })
                .sum();
            assert!((got[o] - want).abs() < 1e-12, "{o}: {} vs {want}", got[o]);
        }
        // Another operator has no mean; other op types are not corrected.
        assert_eq!(
            m.correction((0, 8), Op::FullyConnected, &w),
            Err(Skip::NoData)
        );
        assert_eq!(m.correction((0, 7), Op::TransposeConv, &w), Err(Skip::Op));
    }

    #[test]
    fn depthwise_channel_reads_its_input_channel_of_each_tap() {
        // [1, 2, 1, 4]: two taps, 2 input channels, multiplier 2; one scale per output.
        let float: Vec<f32> = (0..8).map(|i| 0.013 * (i as f32 + 1.0)).collect();
        let scales = [0.004f32, 0.005, 0.006, 0.007];
        let int: Vec<i8> = float
            .iter()
            .enumerate()
            .map(|(i, v)| (v / scales[i % 4]).round() as i8)
            .collect();
        // Mean patch [tap, in_channel]: tap 0 (1, 3), tap 1 (-2, 5).
        let mean = [1.0, 3.0, -2.0, 5.0];
        let m = means((1, 0), &mean, 2);
        let w = QuantizedWeight {
            shape: &[1, 2, 1, 4],
            float: &float,
            int: &int,
            scales: &scales,
            axis: Some(3),
        };
        let got = m.correction((1, 0), Op::DepthwiseConv2d, &w).unwrap();
        for o in 0..4 {
            let want: f64 = (0..2)
                .map(|t| {
                    let i = t * 4 + o;
                    (int[i] as f64 * scales[o] as f64 - float[i] as f64) * mean[t * 2 + o / 2]
                })
                .sum();
            assert!((got[o] - want).abs() < 1e-12, "{o}: {} vs {want}", got[o]);
        }
    }
}
