//! Weight quantization (dynamic, float16, weight-int8, weight-int4) on every testdata
//! model, checked on the official runtime:
//! - every output model loads and runs;
//! - every quantized FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D and EMBEDDING_LOOKUP in
//!   it stays within the error bound its weight quantization step implies (checked layer
//!   by layer on LiteRT's own intermediate tensors; full-integer layers add one step of
//!   their output grid);
//! - real-world structures (issue #11): sparse float16 chains in every mode, shared and
//!   tied constants stored once, biases kept float, recurrent weights per channel,
//!   malformed float16 refused, no weight mode writes a larger file;
//! - parity with TF's converter (same weights quantized, SQNR no worse than 0.5 dB);
//! - sizes shrink as the bit widths say; output bytes are deterministic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tflquant::data::Array;
use tflquant::fb::{self, BuiltinOperator as Op, TensorType};
use tflquant::ir::{Model, Tensor};
use tflquant::quant::math;

use crate::common::*;

const MODES: [&str; 4] = ["dynamic", "float16", "weight-int8", "weight-int4"];

/// Quantizes through the CLI; returns the output path, or the error text.
fn quantize(input: &Path, out_dir: &Path, mode: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let stem = input.file_stem().unwrap().to_string_lossy().to_string();
    let out = out_dir.join(format!("{stem}.{mode}{}.tflite", extra.join("")));
    let mut args = vec!["--mode", mode];
    args.extend_from_slice(extra);
    quantize_cli(input, &out, &args).map(|()| out)
}

/// SQNR of every output of `test` against `reference` on the same inputs (minimum).
fn output_sqnr(reference: &Path, test: &Path, inputs: &[Array]) -> f64 {
    let a = litert_run(reference, inputs).unwrap();
    let b = litert_run(test, inputs).unwrap_or_else(|e| panic!("{}: {e}", test.display()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| sqnr_db(&x.data.to_f64(), &y.data.to_f64()))
        .fold(f64::INFINITY, f64::min)
}

/// Real values of a constant as the runtime sees them (float32, float16, or quantized
/// int8/int4 with per-tensor, per-axis or blockwise scales), with the largest rounding
/// error each element may carry relative to the float original.
pub(crate) fn dequantize(model: &Model, sg: usize, t: &Tensor) -> (Vec<f32>, Vec<f32>) {
    let data = model.tensor_data(t);
    let n = t.num_elements().unwrap() as usize;
    match t.dtype {
        TensorType::Float32 => (math::f32_values(data), vec![0.0; n]),
        TensorType::Float16 => {
            let v = math::f16_to_f32(data);
            // Round to nearest: at most half a unit in the last place (2^-11 relative),
            // and half the smallest subnormal step (2^-25) for tiny values.
            let err = v
                .iter()
                .map(|x| (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25)))
                .collect();
            (v, err)
        }
        TensorType::Int8 | TensorType::Int4 => {
            let q: Vec<i8> = if t.dtype == TensorType::Int8 {
                data.iter().map(|&b| b as i8).collect()
            } else {
                math::unpack_int4(data, n)
            };
            let qp = t
                .quant
                .as_ref()
                .expect("quantized constant without parameters");
            let scale_of: Box<dyn Fn(usize) -> f32> = match &qp.details {
                Some(fb::QuantizationDetails::BlockwiseQuantization(b)) => {
                    let st = &model.subgraphs[sg].tensors[b.scales as usize];
                    let scales = math::f16_to_f32(model.tensor_data(st));
                    let block = b.block_size as usize;
                    Box::new(move |i| scales[i / block])
                }
                _ if qp.scale.len() > 1 => {
                    let ch = math::Channels::new(&t.shape, Some(qp.quantized_dimension as usize));
                    let s = qp.scale.clone();
                    Box::new(move |i| s[ch.of(i)])
                }
                _ => {
                    let s = qp.scale[0];
                    Box::new(move |_| s)
                }
            };
            let zp = qp.zero_point.first().copied().unwrap_or(0) as f32;
            let v = (0..n).map(|i| (q[i] as f32 - zp) * scale_of(i)).collect();
            let err = (0..n).map(|i| scale_of(i) / 2.0).collect();
            (v, err)
        }
        TensorType::Int32 | TensorType::Int64 => {
            // Full-integer biases: scale per channel (s_x · s_w), zero point 0.
            let q: Vec<f64> = if t.dtype == TensorType::Int32 {
                data.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect()
            } else {
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect()
            };
            let qp = t.quant.as_ref().expect("integer bias without parameters");
            let s = |i: usize| qp.scale[if qp.scale.len() > 1 { i } else { 0 }];
            let v = (0..n).map(|i| (q[i] * s(i) as f64) as f32).collect();
            let err = (0..n).map(|i| s(i) / 2.0).collect();
            (v, err)
        }
        other => panic!("unexpected constant type {other:?}"),
    }
}

/// A LiteRT intermediate as real values: integer tensors with parameters dequantized.
fn fetch_real(all: &[(String, Array)], m: &Model, t: i32) -> Option<Vec<f32>> {
    let v = fetch(all, t)?;
    let tensor = &m.subgraphs[0].tensors[t as usize];
    Some(match tensor.quantized() {
        Some(q) if matches!(tensor.dtype, TensorType::Int8 | TensorType::Int16) => {
            let (s, z) = (
                q.scale[0],
                q.zero_point.first().copied().unwrap_or(0) as f32,
            );
            v.iter().map(|&x| (x - z) * s).collect()
        }
        _ => v,
    })
}

/// An integer output's step and representable range (full-integer modes); none for
/// float outputs.
fn output_grid(m: &Model, t: i32) -> Option<(f64, f64, f64)> {
    let tensor = &m.subgraphs[0].tensors[t as usize];
    let q = tensor.quantized()?;
    let (lo, hi) = match tensor.dtype {
        TensorType::Int8 => (-128.0, 127.0),
        TensorType::Int16 => (-32768.0, 32767.0),
        _ => return None,
    };
    let (s, z) = (
        q.scale[0] as f64,
        q.zero_point.first().copied().unwrap_or(0) as f64,
    );
    Some((s, (lo - z) * s, (hi - z) * s))
}

/// The constant that feeds input `pos` of an operator: the tensor itself, or the
/// constant behind a DEQUANTIZE that produces it.
pub(crate) fn weight_source(model: &Model, sg: usize, op: usize, pos: usize) -> Option<Tensor> {
    let g = &model.subgraphs[sg];
    let ti = usize::try_from(*g.operators[op].inputs.get(pos)?).ok()?;
    let t = &g.tensors[ti];
    if model.is_constant(t) {
        return Some(t.clone());
    }
    let p = g.producers()[ti]?;
    let prod = &g.operators[p];
    if model.builtin(prod) == Op::Dequantize {
        let c = &g.tensors[prod.inputs[0] as usize];
        if model.is_constant(c) {
            return Some(c.clone());
        }
    }
    None
}

/// The original float values of a weight, found by name in the float model: a float
/// constant, or a FLOAT16 or sparse constant (which real producers put behind DEQUANTIZE
/// or DENSIFY) turned into the float32 values the float model computes with.
fn original_weight(float: &Model, name: &str) -> Option<Vec<f32>> {
    for (si, g) in float.subgraphs.iter().enumerate() {
        for (ti, t) in g.tensors.iter().enumerate() {
            if t.name != name || !float.is_constant(t) {
                continue;
            }
            if let Some(sp) = &t.sparsity {
                let f16 = t.dtype == TensorType::Float16;
                let dense = tflquant::ir::sparse::densify(
                    &t.shape,
                    if f16 { 2 } else { 4 },
                    sp,
                    float.tensor_data(t),
                    &tflquant::error::Loc::tensor(si, ti),
                )
                .unwrap();
                return Some(if f16 {
                    math::f16_to_f32(&dense)
                } else {
                    math::f32_values(&dense)
                });
            }
            return Some(dequantize(float, si, t).0);
        }
    }
    None
}

fn fetch(all: &[(String, Array)], t: i32) -> Option<Vec<f32>> {
    all.iter()
        .find(|(k, _)| *k == format!("t{t}"))
        .map(|(_, a)| a.data.to_f32())
}

/// Checks every quantized FULLY_CONNECTED and EMBEDDING_LOOKUP of `quant` layer by layer:
/// LiteRT's output of the layer, given LiteRT's own input to it, differs from the float
/// computation with the original weights by at most what the quantization steps imply:
///   |Δy_i| ≤ δb_i               (bias rounding, when the bias is quantized too)
///          + Σ_j |x_j|·δW_ij  (weight rounding, δW = half a step per element)
///          + Σ_j |W'_ij|·s_x   (hybrid kernels also quantize x per row: step s_x)
///          + 1e-5·Σ_j |x_j||W_ij| + 1e-6  (float32 accumulation).
/// Returns how many layers were checked, and how many of them were convolutions.
pub(crate) fn check_layer_bounds(
    float: &Model,
    quant_path: &Path,
    inputs: &[Array],
) -> (usize, usize) {
    let quant = tflquant::read_path(quant_path).unwrap();
    let Ok((_, all)) = litert_run_all(quant_path, inputs) else {
        panic!("{} does not run", quant_path.display())
    };
    let g = &quant.subgraphs[0];
    let mut checked = 0;
    let mut convs = 0;
    for (oi, op) in g.operators.iter().enumerate() {
        let kind = quant.builtin(op);
        if !matches!(
            kind,
            Op::FullyConnected | Op::EmbeddingLookup | Op::Conv2d | Op::DepthwiseConv2d
        ) {
            continue;
        }
        let Some(w) = weight_source(&quant, 0, oi, 1) else {
            continue;
        };
        if w.dtype == TensorType::Float32 {
            continue;
        }
        let Some(w_float) = original_weight(float, &w.name) else {
            panic!(
                "{}: weight {:?} not found in the float model",
                quant_path.display(),
                w.name
            )
        };
        let (w_q, w_err) = dequantize(&quant, 0, &w);
        // Rounding other than to nearest (mse clipping, gptq) may move a weight by more
        // than half a step: the error the file actually holds, never less than the
        // nearest-rounding bound.
        let w_err: Vec<f32> = w_err
            .iter()
            .zip(w_q.iter().zip(&w_float))
            .map(|(&e, (&q, &f))| e.max((q - f).abs()))
            .collect();
        let (Some(x), Some(y)) = (
            fetch_real(&all, &quant, op.inputs[0]),
            fetch_real(&all, &quant, op.outputs[0]),
        ) else {
            continue; // LiteRT did not keep these tensors
        };
        // Full integer: the output is rounded to its grid (one step, for the kernel's
        // fixed-point rescaling and rounding) and saturates at the ends of its range.
        let grid = output_grid(&quant, op.outputs[0]);
        let at = format!("{}: op {oi} {}", quant_path.display(), fb::op_name(kind));
        match kind {
            Op::FullyConnected => {
                let (units, depth) = (w.shape[0] as usize, w.shape[1] as usize);
                let rows = x.len() / depth;
                let hybrid = g.tensors[op.inputs[0] as usize].dtype == TensorType::Float32
                    && model_reads_quantized(&quant, 0, oi);
                // The float bias, and the rounding error the quantized model's bias carries
                // (a float16 or int8 bias in the weight-only modes).
                let bias = weight_source(&quant, 0, oi, 2).map(|b| {
                    let (values, err) = dequantize(&quant, 0, &b);
                    (original_weight(float, &b.name).unwrap_or(values), err)
                });
                let act = match &op.builtin_options {
                    Some(fb::BuiltinOptions::FullyConnectedOptions(o)) => {
                        o.fused_activation_function
                    }
                    _ => fb::ActivationFunctionType::None,
                };
                for r in 0..rows {
                    let xr = &x[r * depth..(r + 1) * depth];
                    let (lo, hi) = xr
                        .iter()
                        .fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
                    let s_x = if hybrid { (hi - lo) / 255.0 } else { 0.0 };
                    for u in 0..units {
                        let row = u * depth..(u + 1) * depth;
                        let mut y_ref = bias.as_ref().map_or(0.0, |b| b.0[u] as f64);
                        let mut bound = 1e-6f64 + bias.as_ref().map_or(0.0, |b| b.1[u] as f64);
                        for (j, &xj) in xr.iter().enumerate() {
                            let k = row.start + j;
                            y_ref += xj as f64 * w_float[k] as f64;
                            bound += (xj.abs() * w_err[k]) as f64
                                + (w_q[k].abs() * s_x) as f64
                                + 1e-5 * (xj.abs() * w_float[k].abs()) as f64;
                        }
                        let mut y_ref = activate(y_ref, act);
                        if let Some((step, lo, hi)) = grid {
                            y_ref = y_ref.clamp(lo, hi);
                            bound += step;
                        }
                        let got = y[r * units + u] as f64;
                        assert!(
                            (got - y_ref).abs() <= bound,
                            "{at}: row {r} unit {u}: LiteRT {got} vs float {y_ref}, error {} > bound {bound}",
                            (got - y_ref).abs()
                        );
                    }
                }
            }
            Op::EmbeddingLookup => {
                let ids = all
                    .iter()
                    .find(|(k, _)| *k == format!("t{}", op.inputs[0]))
                    .unwrap()
                    .1
                    .data
                    .to_f64();
                let width = w.shape[1..].iter().product::<i32>() as usize;
                for (n, &id) in ids.iter().enumerate() {
                    let id = id as usize;
                    for c in 0..width {
                        let k = id * width + c;
                        let got = y[n * width + c];
                        let bound = w_err[k] + 1e-6;
                        assert!(
                            (got - w_float[k]).abs() <= bound,
                            "{at}: id {id} column {c}: {got} vs {} (bound {bound})",
                            w_float[k]
                        );
                    }
                }
            }
            Op::Conv2d | Op::DepthwiseConv2d => {
                check_conv_bound(
                    &at, &quant, float, oi, &w, &w_float, &w_q, &w_err, &x, &y, grid,
                );
                convs += 1;
            }
            _ => unreachable!(),
        }
        checked += 1;
    }
    (checked, convs)
}

/// A convolution's bound, computed with convolutions: for each output element,
///   |Δy| ≤ conv(|x|, δW) + δb  +  s_x·conv(1, |W'|)  (hybrid)  +  1e-5·conv(|x|, |W|) + 1e-6,
/// each term run by tflquant's interpreter on a one-operator copy of the layer (same
/// options, padding and strides) with the weights replaced by the bound's factors.
#[allow(clippy::too_many_arguments)]
fn check_conv_bound(
    at: &str,
    quant: &Model,
    float: &Model,
    oi: usize,
    w: &Tensor,
    w_float: &[f32],
    w_q: &[f32],
    w_err: &[f32],
    x: &[f32],
    y: &[f32],
    grid: Option<(f64, f64, f64)>,
) {
    let g = &quant.subgraphs[0];
    let op = &g.operators[oi];
    let x_t = &g.tensors[op.inputs[0] as usize];
    let y_t = &g.tensors[op.outputs[0] as usize];
    let hybrid =
        x_t.dtype == TensorType::Float32 && matches!(w.dtype, TensorType::Int8 | TensorType::Int4);
    let bias = weight_source(quant, 0, oi, 2).map(|b| {
        let (values, err) = dequantize(quant, 0, &b);
        (original_weight(float, &b.name).unwrap_or(values), err)
    });
    let zeros = vec![0f32; y_t.shape.last().copied().unwrap_or(1) as usize];
    let (b_float, b_err) = bias.as_ref().map_or((&zeros, &zeros), |(v, e)| (v, e));
    let per_x: usize = x_t.shape.iter().map(|&d| d as usize).product();
    let per_y: usize = y_t.shape.iter().map(|&d| d as usize).product();
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    for n in 0..x.len() / per_x {
        let xs = &x[n * per_x..(n + 1) * per_x];
        let ys = &y[n * per_y..(n + 1) * per_y];
        let y_ref = one_conv(quant, op, xs, w_float, b_float, false);
        let xa = abs(xs);
        let b1 = one_conv(quant, op, &xa, w_err, b_err, true);
        let tol = one_conv(quant, op, &xa, &abs(w_float), &zeros, true);
        let b2 = if hybrid {
            // The hybrid kernel quantizes each sample symmetrically: step max|x|/127.
            let s_x = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let ones: Vec<f32> = xs.iter().map(|_| s_x).collect();
            one_conv(quant, op, &ones, &abs(w_q), &zeros, true)
        } else {
            vec![0.0; per_y]
        };
        for i in 0..per_y {
            let mut bound = (b1[i] + b2[i]) as f64 + 1e-5 * tol[i] as f64 + 1e-6;
            let mut want = y_ref[i] as f64;
            if let Some((step, lo, hi)) = grid {
                want = want.clamp(lo, hi);
                bound += step;
            }
            let err = (ys[i] as f64 - want).abs();
            assert!(
                err <= bound,
                "{at}: sample {n} element {i}: LiteRT {} vs float {want} (error {err:e} > bound {bound:e})",
                ys[i]
            );
        }
    }
}

/// Runs a float copy of convolution `op` alone on one sample with the given weights
/// and bias; `linear` drops its fused activation.
fn one_conv(
    src: &Model,
    op: &tflquant::ir::Operator,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    linear: bool,
) -> Vec<f32> {
    use tflquant::fb::{ActivationFunctionType as F, BuiltinOptions as B};
    use tflquant::interp::{Interpreter, Value};
    use tflquant::ir::{OperatorCode, Subgraph};
    let g = &src.subgraphs[0];
    let shape = |i: i32| g.tensors[i as usize].shape.clone();
    let mut m = Model {
        version: 3,
        ..Default::default()
    };
    m.operator_codes.push(OperatorCode {
        builtin: src.builtin(op),
        custom_code: None,
        version: 1,
    });
    let mut sg = Subgraph {
        debug_metadata_index: -1,
        ..Default::default()
    };
    let xi = sg.add_tensor(Tensor::new("x", TensorType::Float32, shape(op.inputs[0])));
    let mut wt = Tensor::new("w", TensorType::Float32, shape(op.inputs[1]));
    wt.buffer = m.add_buffer(math::f32_bytes(w));
    let wi = sg.add_tensor(wt);
    let mut bt = Tensor::new("b", TensorType::Float32, vec![b.len() as i32]);
    bt.buffer = m.add_buffer(math::f32_bytes(b));
    let bi = sg.add_tensor(bt);
    let yi = sg.add_tensor(Tensor::new("y", TensorType::Float32, shape(op.outputs[0])));
    let mut new = tflquant::ir::Operator::new(0, vec![xi, wi, bi], vec![yi]);
    new.builtin_options = op.builtin_options.clone();
    if linear {
        match &mut new.builtin_options {
            Some(B::Conv2DOptions(o)) => o.fused_activation_function = F::None,
            Some(B::DepthwiseConv2DOptions(o)) => o.fused_activation_function = F::None,
            _ => {}
        }
    }
    sg.operators.push(new);
    sg.inputs = vec![xi];
    sg.outputs = vec![yi];
    m.subgraphs.push(sg);
    let x_shape: Vec<usize> = shape(op.inputs[0]).iter().map(|&d| d as usize).collect();
    let mut it = Interpreter::new(&m).unwrap();
    let out = it.run(&[Value::f32(x_shape, x.to_vec())]).unwrap();
    out[0].as_f32().unwrap().to_vec()
}

/// True when the operator reads its weight as a quantized tensor (hybrid kernel).
fn model_reads_quantized(m: &Model, sg: usize, op: usize) -> bool {
    let g = &m.subgraphs[sg];
    let t = &g.tensors[g.operators[op].inputs[1] as usize];
    matches!(t.dtype, TensorType::Int8 | TensorType::Int4)
}

fn activate(x: f64, a: fb::ActivationFunctionType) -> f64 {
    use fb::ActivationFunctionType as F;
    match a {
        F::Relu => x.max(0.0),
        F::Relu6 => x.clamp(0.0, 6.0),
        F::ReluN1To1 => x.clamp(-1.0, 1.0),
        _ => x,
    }
}

#[test]
fn every_mode_on_every_testdata_model_runs_on_litert_within_the_layer_error_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut layers = 0;
    let mut conv_layers = 0;
    let mut outputs = 0;
    let mut per_mode: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut layers_per_mode: std::collections::BTreeMap<&str, usize> = Default::default();
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let model = tflquant::read_path(&path).unwrap();
        let inputs = sample_inputs(&path, &model, 4);
        for mode in MODES {
            // A low threshold so the small test models have weights to quantize; sizes
            // are not the point here (see `no_mode_writes_a_larger_file`).
            let flags = ["--min-elements", "16", "--allow-larger"];
            let out = match quantize(&path, dir.path(), mode, &flags) {
                Ok(out) => out,
                Err(e) => {
                    // Allowed refusals, each with its reason.
                    assert!(e.contains("nothing to quantize"), "{name} {mode}: {e}");
                    if e.contains("already float16") {
                        assert_eq!(mode, "float16", "{name}: {e}");
                        continue;
                    }
                    assert_eq!(
                        e.contains("already quantized"),
                        model
                            .subgraphs
                            .iter()
                            .flat_map(|s| &s.tensors)
                            .all(|t| t.dtype != TensorType::Float32 || !model.is_constant(t)),
                        "{name} {mode}: {e}"
                    );
                    continue;
                }
            };
            if has_custom_op(&model) {
                // LiteRT cannot run the test's unknown custom op; the rest of the
                // structure is checked. The XNNPACK custom ops run (the layer bounds need
                // every intermediate, which only the builtin kernels hand out).
                tflquant::read_path(&out).unwrap();
                if manifest_entry(&name).is_some_and(|e| e["runs_in_litert"] == true) {
                    let o = litert_run(&out, &inputs)
                        .unwrap_or_else(|e| panic!("{name} {mode}: LiteRT fails: {e}"));
                    assert!(o[0].data.to_f64().iter().all(|v| v.is_finite()));
                }
                continue;
            }
            let outs = litert_run(&out, &inputs)
                .unwrap_or_else(|e| panic!("{name} {mode}: LiteRT fails: {e}"));
            let sg = &model.subgraphs[0];
            for (k, o) in outs.iter().enumerate() {
                if let Some(i) = o.data.to_f64().iter().position(|v| !v.is_finite()) {
                    panic!(
                        "{name} {mode}: output {k} {:?} holds a non-finite value at element {i}",
                        sg.tensors[sg.outputs[k] as usize].name
                    );
                }
            }
            outputs += 1;
            *per_mode.entry(mode).or_insert(0) += 1;
            let (n, c) = check_layer_bounds(&model, &out, &inputs);
            layers += n;
            conv_layers += c;
            *layers_per_mode.entry(mode).or_insert(0) += n;
        }
    }
    // Per mode, not only in total: a mode that refuses (or skips) every model fails.
    for mode in MODES {
        let (ran, n) = (
            per_mode.get(mode).copied().unwrap_or(0),
            layers_per_mode.get(mode).copied().unwrap_or(0),
        );
        assert!(ran >= 15, "{mode}: only {ran} quantized models ran");
        assert!(
            n >= 10,
            "{mode}: only {n} layers checked against their bound"
        );
    }
    assert!(outputs >= 50, "only {outputs} quantized models ran");
    assert!(
        layers >= 40,
        "only {layers} layers were checked against their bound"
    );
    assert!(
        conv_layers >= 20,
        "only {conv_layers} convolutions were checked against their bound"
    );
    eprintln!(
        "{outputs} quantized models ran; {layers} layers ({conv_layers} convolutions) within their bounds; per mode: {per_mode:?}, layers {layers_per_mode:?}"
    );
}

#[test]
fn weight_dominated_model_shrinks_by_the_bit_width_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("mlp_large_fc.tflite");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let before = size(&input);
    for (mode, extra, at_least) in [
        ("dynamic", &[][..], 3.6),
        ("weight-int8", &[][..], 3.6),
        ("float16", &[][..], 1.95),
        ("weight-int4", &[][..], 6.5),
        ("weight-int4", &["--block-size", "32"][..], 6.3),
    ] {
        let out = quantize(&input, dir.path(), mode, extra).unwrap();
        let ratio = before / size(&out);
        assert!(
            ratio >= at_least,
            "{mode} {extra:?}: only {ratio:.2}× smaller"
        );
    }
}

/// The set of (name, dtype) of constants whose type is not float32 in a model.
fn quantized_constants(m: &Model) -> BTreeSet<(String, String)> {
    m.subgraphs
        .iter()
        .flat_map(|g| &g.tensors)
        .filter(|t| {
            m.is_constant(t)
                && matches!(
                    t.dtype,
                    TensorType::Int8 | TensorType::Float16 | TensorType::Int4
                )
        })
        .map(|t| (t.name.clone(), fb::dtype_name(t.dtype).to_string()))
        .collect()
}

#[test]
fn parity_with_the_tf_converter_dynamic_and_float16() {
    let dir = tempfile::tempdir().unwrap();
    for stem in ["cnn_digits", "mlp_large_fc"] {
        let float = testdata(&format!("{stem}.tflite"));
        let model = tflquant::read_path(&float).unwrap();
        let inputs = sample_inputs(&float, &model, 32);
        for (mode, tf_suffix) in [("dynamic", "tf_dynamic"), ("float16", "tf_float16")] {
            let tf = testdata(&format!("{stem}.{tf_suffix}.tflite"));
            let ours = quantize(&float, dir.path(), mode, &[]).unwrap();
            let tf_model = tflquant::read_path(&tf).unwrap();
            let our_model = tflquant::read_path(&ours).unwrap();
            assert_eq!(
                quantized_constants(&our_model),
                quantized_constants(&tf_model),
                "{stem} {mode}: different weights quantized than TF's converter"
            );
            let (s_ours, s_tf) = (
                output_sqnr(&float, &ours, &inputs),
                output_sqnr(&float, &tf, &inputs),
            );
            assert!(
                s_ours >= s_tf - 0.5,
                "{stem} {mode}: SQNR {s_ours:.2} dB vs TF {s_tf:.2} dB"
            );
        }
    }
}

#[test]
fn fp16_and_sparse_models_quantize_to_int8_with_good_sqnr() {
    let dir = tempfile::tempdir().unwrap();
    for stem in [
        "fp16_weights_cnn",
        "sparse_dense_mlp",
        "sparse_block1x4_mlp",
    ] {
        let float = testdata(&format!("{stem}.tflite"));
        let model = tflquant::read_path(&float).unwrap();
        let inputs = sample_inputs(&float, &model, 32);
        for mode in ["dynamic", "weight-int8"] {
            // The 85%-sparse float32 weights are larger as dense int8 (see
            // `no_mode_writes_a_larger_file`); this test is about the folds.
            let out = quantize(&float, dir.path(), mode, &["--allow-larger"]).unwrap();
            let m = tflquant::read_path(&out).unwrap();
            let ops: Vec<Op> = m.subgraphs[0]
                .operators
                .iter()
                .map(|o| m.builtin(o))
                .collect();
            assert!(
                !ops.contains(&Op::Densify),
                "{stem} {mode}: DENSIFY left in"
            );
            assert!(
                !m.subgraphs[0]
                    .tensors
                    .iter()
                    .any(|t| t.dtype == TensorType::Float16 || t.sparsity.is_some()),
                "{stem} {mode}: float16 or sparse constants left in"
            );
            assert!(
                !quantized_constants(&m).is_empty(),
                "{stem} {mode}: nothing became int8"
            );
            let s = output_sqnr(&float, &out, &inputs);
            assert!(s >= 25.0, "{stem} {mode}: SQNR {s:.2} dB < 25 dB");
        }
    }
}

#[test]
fn output_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("cnn_digits.tflite");
    for mode in MODES {
        let a = std::fs::read(quantize(&input, dir.path(), mode, &[]).unwrap()).unwrap();
        let b = std::fs::read(quantize(&input, dir.path(), mode, &["-q"]).unwrap()).unwrap();
        assert_eq!(a, b, "{mode}: two runs differ");
    }
}

#[test]
fn report_lists_changes_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.tflite");
    let report = dir.path().join("r.json");
    let input = testdata("cnn_digits.tflite");
    let (code, _, err) = run_cli(&[
        "quantize".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--mode".as_ref(),
        "dynamic".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    // The one-line summary on stderr.
    assert!(
        err.contains("dynamic:") && err.contains("tensors quantized") && err.contains("smaller"),
        "{err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let q = r["quantized"].as_array().unwrap();
    let names: Vec<&str> = q.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cnn_digits/conv2/Conv2D", "cnn_digits/fc1/MatMul"]);
    for c in q {
        assert_eq!(c["new_dtype"], "INT8");
        assert_eq!(c["granularity"], "per-channel");
        assert!(c["bytes_after"].as_u64().unwrap() * 4 == c["bytes_before"].as_u64().unwrap());
    }
    let left = r["left_float"].as_array().unwrap();
    assert!(left.iter().any(|l| {
        l["name"] == "cnn_digits/conv1/Conv2D"
            && l["reason"]
                .as_str()
                .unwrap()
                .contains("fewer than --min-elements 1024")
    }));
    assert!(r["input_bytes"].as_u64().unwrap() > r["output_bytes"].as_u64().unwrap());
}

#[test]
fn bad_flags_and_inputs_name_the_flag_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.tflite");
    let input = testdata("mlp_large_fc.tflite");
    let run = |extra: &[&str]| quantize_run(&input, &out, extra);
    let (code, _, err) = run(&["--mode", "int3"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--mode") && err.contains("weight-int4"),
        "{err}"
    );
    let (code, _, err) = run(&["--mode", "weight-int4", "--block-size", "17"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--block-size") && err.contains("32, 64, 128 or 256"),
        "{err}"
    );
    let (code, _, err) = run(&["--mode", "dynamic", "--block-size", "32"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--block-size") && err.contains("weight-int4"),
        "{err}"
    );
    // Nothing qualifies: every weight is below the threshold.
    let (code, _, err) = run(&["--mode", "dynamic", "--min-elements", "100000000"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("nothing to quantize") && err.contains("--min-elements"),
        "{err}"
    );
    // A model that is already integer.
    let int8 = testdata("int8_quantized_cnn.tflite");
    let (code, _, err) = run_cli(&[
        "quantize".as_ref(),
        int8.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--mode".as_ref(),
        "dynamic".as_ref(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("already quantized"), "{err}");
    assert!(!out.exists(), "an output was written for a failed run");
}

/// `--per-tensor` gives one scale (zero point 0) per weight; the input is untouched.
#[test]
fn per_tensor_flag_gives_one_scale() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("mlp_large_fc.tflite");
    let before = std::fs::read(&input).unwrap();
    let out = quantize(&input, dir.path(), "dynamic", &["--per-tensor"]).unwrap();
    assert_eq!(std::fs::read(&input).unwrap(), before);
    let m = tflquant::read_path(&out).unwrap();
    let q: Vec<&Tensor> = m.subgraphs[0]
        .tensors
        .iter()
        .filter(|t| t.dtype == TensorType::Int8)
        .collect();
    assert!(!q.is_empty());
    for t in q {
        let p = t.quant.as_ref().unwrap();
        assert_eq!(p.scale.len(), 1, "{}", t.name);
        assert_eq!(p.zero_point, vec![0]);
    }
}

// --- real-world structures (issue #11) --------------------------------------------

/// Every mode, with the extra flags it needs for `model` (calibration for the
/// full-integer modes).
fn all_modes(calib: &str) -> Vec<(&'static str, Vec<String>)> {
    let calib = testdata(calib).to_string_lossy().to_string();
    let mut v: Vec<(&str, Vec<String>)> = MODES.iter().map(|m| (*m, Vec::new())).collect();
    for m in ["int8", "int16x8"] {
        v.push((m, vec!["--calibration".into(), calib.clone()]));
    }
    v
}

/// The type a mode stores its weights in.
fn mode_dtype(mode: &str) -> TensorType {
    match mode {
        "float16" => TensorType::Float16,
        "weight-int4" => TensorType::Int4,
        _ => TensorType::Int8,
    }
}

/// Constant bytes per type, each buffer counted once.
fn weight_bytes(m: &Model) -> std::collections::BTreeMap<TensorType, u64> {
    let mut seen = BTreeSet::new();
    let mut by = std::collections::BTreeMap::new();
    for t in m.subgraphs.iter().flat_map(|g| &g.tensors) {
        let n = m.tensor_data(t).len() as u64;
        if n > 0 && seen.insert(t.buffer) {
            *by.entry(t.dtype).or_insert(0) += n;
        }
    }
    by
}

fn ops_of(m: &Model) -> Vec<Op> {
    m.subgraphs
        .iter()
        .flat_map(|g| &g.operators)
        .map(|o| m.builtin(o))
        .collect()
}

/// Quantizes with `--report`; returns (output, report JSON).
fn quantize_with_report(
    input: &Path,
    dir: &Path,
    mode: &str,
    extra: &[String],
) -> (PathBuf, serde_json::Value) {
    let stem = input.file_stem().unwrap().to_string_lossy().to_string();
    let out = dir.join(format!("{stem}.{mode}.tflite"));
    let report = dir.join(format!("{stem}.{mode}.json"));
    let mut args: Vec<&str> = vec!["--mode", mode, "--report", report.to_str().unwrap()];
    args.extend(extra.iter().map(String::as_str));
    quantize_cli(input, &out, &args).unwrap_or_else(|e| panic!("{stem} {mode}: {e}"));
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out, r)
}

/// Sparse float16 weights (FLOAT16 sparse → DENSIFY → DEQUANTIZE → op) in every mode:
/// the chain is folded (float16 mode keeps it: it is already the smallest float16
/// form), ≥ 90% of the weight bytes end up in the mode's type, the file does not grow,
/// and LiteRT runs every quantized layer within its derived bound.
#[test]
fn sparse_float16_model_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("sparse_fp16_cnn.tflite");
    let float = tflquant::read_path(&input).unwrap();
    assert_eq!(
        ops_of(&float).iter().filter(|o| **o == Op::Densify).count(),
        7,
        "the test model lost its DENSIFY → DEQUANTIZE chains"
    );
    let inputs = sample_inputs(&input, &float, 8);
    let in_size = std::fs::metadata(&input).unwrap().len();
    let mut layers = 0;
    for (mode, extra) in all_modes("cnn_digits.calib.npy") {
        let (out, report) = quantize_with_report(&input, dir.path(), mode, &extra);
        let m = tflquant::read_path(&out).unwrap();
        let ops = ops_of(&m);
        let f16_consts = m
            .subgraphs
            .iter()
            .flat_map(|g| &g.tensors)
            .filter(|t| t.dtype == TensorType::Float16 && m.is_constant(t))
            .count();
        if mode == "float16" {
            assert_eq!(
                ops.iter().filter(|o| **o == Op::Densify).count(),
                7,
                "float16: the sparse FLOAT16 chains should stay"
            );
        } else {
            assert!(!ops.contains(&Op::Densify), "{mode}: DENSIFY left");
            assert_eq!(f16_consts, 0, "{mode}: FLOAT16 constants left");
        }
        let bytes = weight_bytes(&m);
        let total: u64 = bytes.values().sum();
        let share = *bytes.get(&mode_dtype(mode)).unwrap_or(&0) as f64 / total as f64;
        assert!(
            share >= 0.9,
            "{mode}: only {:.1}% of the weight bytes are {:?}: {bytes:?}",
            share * 100.0,
            mode_dtype(mode)
        );
        let reported = report["weight_bytes_by_dtype"]["mode_dtype_share"]
            .as_f64()
            .unwrap();
        assert!(
            (reported - share).abs() < 1e-9,
            "{mode}: report says {reported}"
        );
        let out_size = std::fs::metadata(&out).unwrap().len();
        assert!(
            out_size as f64 <= in_size as f64 * 1.01,
            "{mode}: {in_size} → {out_size} bytes"
        );
        assert_eq!(report["size_check"]["larger"], false, "{mode}");
        litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{mode}: {e}"));
        // Full integer too: each layer given LiteRT's own (dequantized) input, within
        // its weight and bias rounding plus one step of its output grid.
        let (n, _) = check_layer_bounds(&float, &out, &inputs);
        layers += n;
        eprintln!(
            "sparse_fp16_cnn {mode}: {in_size} → {out_size} bytes, {:.1}% {:?}",
            share * 100.0,
            mode_dtype(mode)
        );
    }
    // dynamic, weight-int8, weight-int4: the six kernels with >= 1024 weights each;
    // int8 and int16x8: all seven layers.
    assert!(
        layers >= 18 + 14,
        "only {layers} layers checked against their bound"
    );
}

/// A constant read by several operators is quantized once, in the mode's type; the
/// readers share it directly (hybrid / INT4 kernels) or through one DEQUANTIZE.
#[test]
fn shared_constants_are_stored_once_in_the_mode_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for (file, min_readers) in [
        ("shared_weights_cnn.tflite", 2),
        ("tied_embedding.tflite", 2),
    ] {
        let input = testdata(file);
        let float = tflquant::read_path(&input).unwrap();
        let inputs = sample_inputs(&input, &float, 8);
        let g = &float.subgraphs[0];
        let consumers = g.consumers();
        let shared: Vec<(String, usize)> = g
            .tensors
            .iter()
            .enumerate()
            .filter(|(ti, t)| {
                float.is_constant(t)
                    && consumers[*ti].len() >= min_readers
                    && t.num_elements().unwrap() >= 1024
            })
            .map(|(ti, t)| (t.name.clone(), consumers[ti].len()))
            .collect();
        assert!(!shared.is_empty(), "{file}: no shared weight");
        for mode in MODES {
            let (out, _) = quantize_with_report(&input, dir.path(), mode, &[]);
            let m = tflquant::read_path(&out).unwrap();
            let q = &m.subgraphs[0];
            let qcons = q.consumers();
            for (name, readers) in &shared {
                let stored: Vec<usize> = (0..q.tensors.len())
                    .filter(|&ti| q.tensors[ti].name == *name && m.is_constant(&q.tensors[ti]))
                    .collect();
                assert_eq!(
                    stored.len(),
                    1,
                    "{file} {mode}: {name:?} stored {} times",
                    stored.len()
                );
                let ti = stored[0];
                let t = &q.tensors[ti];
                let want = if mode == "weight-int4" && file == "shared_weights_cnn.tflite" {
                    // FULLY_CONNECTED and CONV_2D both read INT4 directly.
                    TensorType::Int4
                } else {
                    mode_dtype(mode)
                };
                assert_eq!(t.dtype, want, "{file} {mode}: {name:?}");
                // Every original reader reads it directly or through the one DEQUANTIZE.
                let dq: Vec<usize> = qcons[ti]
                    .iter()
                    .filter(|(oi, _)| m.builtin(&q.operators[*oi]) == Op::Dequantize)
                    .map(|(oi, _)| *oi)
                    .collect();
                assert!(
                    dq.len() <= 1,
                    "{file} {mode}: {name:?} has {} DEQUANTIZE",
                    dq.len()
                );
                let direct = qcons[ti].len() - dq.len();
                let through = dq
                    .first()
                    .map_or(0, |&d| qcons[q.operators[d].outputs[0] as usize].len());
                assert_eq!(
                    direct + through,
                    *readers,
                    "{file} {mode}: {name:?} read by {direct} directly + {through} through DEQUANTIZE"
                );
                if mode == "dynamic" && file == "tied_embedding.tflite" {
                    assert_eq!((direct, through), (1, 1), "FC direct, GATHER dequantized");
                }
            }
            litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{file} {mode}: {e}"));
            check_layer_bounds(&float, &out, &inputs);
            let s = output_sqnr(&input, &out, &inputs);
            eprintln!("{file} {mode}: SQNR {s:.2} dB");
            // INT4 is checked by the layer bounds alone (4-bit logits of a tied
            // embedding are coarse: about 13 dB).
            assert!(
                mode == "weight-int4" || s >= 20.0,
                "{file} {mode}: SQNR {s:.2} dB"
            );
        }
    }
}

/// weight-int8 and weight-int4 leave biases float32 (float16 makes them FLOAT16).
#[test]
fn weight_modes_keep_biases_float() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("cnn_digits.tflite");
    for (mode, bias_type) in [
        ("weight-int8", TensorType::Float32),
        ("weight-int4", TensorType::Float32),
        ("float16", TensorType::Float16),
    ] {
        let extra = ["--min-elements".to_string(), "0".to_string()];
        let (out, report) = quantize_with_report(&input, dir.path(), mode, &extra);
        let m = tflquant::read_path(&out).unwrap();
        let g = &m.subgraphs[0];
        let mut biases = 0;
        for (oi, op) in g.operators.iter().enumerate() {
            if !matches!(
                m.builtin(op),
                Op::Conv2d | Op::DepthwiseConv2d | Op::FullyConnected
            ) {
                continue;
            }
            let b = weight_source(&m, 0, oi, 2).expect("a bias");
            assert_eq!(b.dtype, bias_type, "{mode}: bias {:?}", b.name);
            biases += 1;
        }
        assert_eq!(biases, 5, "{mode}");
        if bias_type == TensorType::Float32 {
            let left = report["left_float"].as_array().unwrap();
            let why: Vec<&str> = left
                .iter()
                .filter_map(|l| l["reason"].as_str())
                .filter(|r| r.contains("a bias"))
                .collect();
            assert_eq!(why.len(), 5, "{mode}: {left:?}");
        }
    }
}

/// The per-channel axis of every quantized LSTM gate weight, or None when per-tensor.
fn lstm_weight_axes(m: &Model) -> Vec<Option<i32>> {
    let g = &m.subgraphs[0];
    let (oi, _) = g
        .operators
        .iter()
        .enumerate()
        .find(|(_, o)| m.builtin(o) == Op::UnidirectionalSequenceLstm)
        .unwrap();
    (1..=8)
        .filter_map(|pos| weight_source(m, 0, oi, pos))
        .filter(|t| t.dtype == TensorType::Int8)
        .map(|t| {
            let q = t.quant.as_ref().unwrap();
            (q.scale.len() > 1).then_some(q.quantized_dimension)
        })
        .collect()
}

/// Behind a DEQUANTIZE the LSTM computes in float: weight-int8 quantizes its gate
/// weights per output channel (axis 0), which beats per-tensor; the GRU's gate weights
/// inside the WHILE body are per channel too.
#[test]
fn recurrent_weights_are_per_channel_in_weight_int8() {
    let dir = tempfile::tempdir().unwrap();
    for (file, floor) in [("lstm_gru.tflite", 45.0), ("lstm_seq.tflite", 40.0)] {
        let input = testdata(file);
        let float = tflquant::read_path(&input).unwrap();
        let inputs = sample_inputs(&input, &float, 32);
        let flags = ["--min-elements", "0"];
        let per_channel = quantize(&input, dir.path(), "weight-int8", &flags).unwrap();
        let flags_t = ["--min-elements", "0", "--per-tensor"];
        let per_tensor = quantize(&input, dir.path(), "weight-int8", &flags_t).unwrap();
        let dynamic = quantize(&input, dir.path(), "dynamic", &flags).unwrap();
        let m = tflquant::read_path(&per_channel).unwrap();
        assert_eq!(lstm_weight_axes(&m), vec![Some(0); 8], "{file}");
        for (si, g) in m.subgraphs.iter().enumerate().skip(1) {
            for (oi, op) in g.operators.iter().enumerate() {
                if m.builtin(op) == Op::FullyConnected {
                    let w = weight_source(&m, si, oi, 1).unwrap();
                    let q = w.quant.as_ref().unwrap();
                    assert!(
                        q.scale.len() > 1 && q.quantized_dimension == 0,
                        "{file}: {:?}",
                        w.name
                    );
                }
            }
        }
        assert_eq!(
            lstm_weight_axes(&tflquant::read_path(&per_tensor).unwrap()),
            vec![None; 8]
        );
        let (s_ch, s_t, s_dyn) = (
            output_sqnr(&input, &per_channel, &inputs),
            output_sqnr(&input, &per_tensor, &inputs),
            output_sqnr(&input, &dynamic, &inputs),
        );
        eprintln!(
            "{file}: weight-int8 per-channel {s_ch:.2} dB, per-tensor {s_t:.2} dB, dynamic {s_dyn:.2} dB"
        );
        assert!(
            s_ch > s_t,
            "{file}: per-channel {s_ch:.2} dB ≤ per-tensor {s_t:.2} dB"
        );
        assert!(
            s_ch >= floor,
            "{file}: per-channel {s_ch:.2} dB < {floor} dB"
        );
    }
}

/// A FLOAT16 constant whose size does not match the DEQUANTIZE that decodes it is
/// malformed input: exit code 2, the tensor named, before any pass runs.
#[test]
fn malformed_float16_constant_is_rejected_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src = testdata("fp16_weights_cnn.tflite");
    let mut m = tflquant::read_path(&src).unwrap();
    let g = &m.subgraphs[0];
    let (ti, _) = g
        .operators
        .iter()
        .filter(|o| m.builtin(o) == Op::Dequantize)
        .map(|o| o.inputs[0] as usize)
        .map(|ti| (ti, &g.tensors[ti]))
        .find(|(_, t)| t.dtype == TensorType::Float16 && t.num_elements().unwrap() > 8)
        .unwrap();
    let name = g.tensors[ti].name.clone();
    let n = g.tensors[ti].num_elements().unwrap() as usize;
    // Keep the constant consistent with its own shape (the reader accepts it), but
    // give it more values than the DEQUANTIZE output holds.
    let buffer = m.add_buffer(vec![0u8; 2 * (n + 6)]);
    let t = &mut m.subgraphs[0].tensors[ti];
    t.shape = vec![(n + 6) as i32];
    t.shape_signature = None;
    t.buffer = buffer;
    let bad = dir.path().join("bad_fp16.tflite");
    tflquant::writer::write_path(&m, &bad, &Default::default()).unwrap();
    for mode in ["dynamic", "weight-int8", "float16"] {
        let out = dir.path().join("out.tflite");
        let (code, _, err) = quantize_run(&bad, &out, &["--mode", mode]);
        assert_eq!(code, 2, "{mode}: {err}");
        assert!(
            err.contains("malformed")
                && err.contains(&name)
                && err.contains(&format!("{} values", n + 6)),
            "{mode}: {err}"
        );
        assert!(!err.contains("internal error"), "{err}");
        assert!(!out.exists());
    }
}

/// No mode writes a file more than 1% larger than it read; when one would, the run
/// says why (stderr and report) and fails unless --allow-larger.
#[test]
fn no_mode_writes_a_larger_file() {
    let dir = tempfile::tempdir().unwrap();
    for (file, calib) in [
        ("sparse_fp16_cnn.tflite", "cnn_digits.calib.npy"),
        ("shared_weights_cnn.tflite", "cnn_digits.calib.npy"),
        ("lstm_gru.tflite", "lstm_seq.calib.npy"),
        ("fp16_weights_cnn.tflite", "cnn_digits.calib.npy"),
        ("cnn_digits.tflite", "cnn_digits.calib.npy"),
        ("mlp_large_fc.tflite", "mlp_large_fc.calib.npy"),
    ] {
        let input = testdata(file);
        let in_size = std::fs::metadata(&input).unwrap().len();
        for (mode, extra) in all_modes(calib) {
            if file == "lstm_gru.tflite" && extra.iter().any(|e| e == "--calibration") {
                continue; // full-integer LSTM stays float; WHILE bodies are not calibrated
            }
            let (out, report) = quantize_with_report(&input, dir.path(), mode, &extra);
            let out_size = std::fs::metadata(&out).unwrap().len();
            assert!(
                out_size as f64 <= in_size as f64 * 1.01,
                "{file} {mode}: {in_size} → {out_size} bytes"
            );
            assert_eq!(
                report["size_check"]["output_bytes"], out_size,
                "{file} {mode}"
            );
            assert!(report["weight_bytes_by_dtype"]["before"].is_object());
        }
    }
    // A model this tool can only grow: 85%-sparse float32 weights made dense in int8
    // (no sparse int8 encoding here).
    let input = testdata("sparse_dense_mlp.tflite");
    let out = dir.path().join("grown.tflite");
    let report = dir.path().join("grown.json");
    let args = [
        "--mode",
        "weight-int8",
        "--report",
        report.to_str().unwrap(),
    ];
    let (code, _, err) = quantize_run(&input, &out, &args);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("makes the model larger")
            && err.contains("sparse constants were made dense")
            && err.contains("--allow-larger"),
        "{err}"
    );
    assert!(!out.exists(), "the larger output was kept");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["size_check"]["larger"], true);
    assert_eq!(r["size_check"]["allowed"], false);
    assert!(!r["size_check"]["reasons"].as_array().unwrap().is_empty());
    let mut args = args.to_vec();
    args.push("--allow-larger");
    let (code, _, err) = quantize_run(&input, &out, &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning") && err.contains("larger"), "{err}");
    assert!(out.exists());
}
