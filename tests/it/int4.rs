//! `--mode weight-int4` on every kind of weight, with each rounding, checked on LiteRT
//! with and without its default (XNNPACK) delegate:
//! - every real weight of the test models is INT4 (biases stay float by design);
//! - CONV_2D and FULLY_CONNECTED read INT4 directly, every other reader through one
//!   DEQUANTIZE;
//! - each quantized layer stays within the bound its weight error implies
//!   ([`crate::weights::check_layer_bounds`], on LiteRT's own intermediates);
//! - gptq lowers the layer error it reports and the output error on held-out samples;
//! - `--int4-max-loss` keeps exactly the layers whose INT4 SQNR is below it as INT8;
//! - blockwise FULLY_CONNECTED (`--block-size`) computes the same on LiteRT's builtin
//!   kernels as with XNNPACK: fused activations become operators of their own, shapes
//!   the builtin blockwise kernel does not take stay per channel, and both runtimes'
//!   outputs are within the bound propagated from the weight errors.

use std::path::{Path, PathBuf};

use tflquant::data::Array;
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;

use crate::common::*;
use crate::weights::{check_layer_bounds, dequantize, weight_source};
use tflquant::fb;

/// Quantizes `file` with weight-int4 (every weight: --min-elements 0) and `extra`;
/// returns the output and its JSON report.
fn int4(file: &str, dir: &Path, tag: &str, extra: &[&str]) -> (PathBuf, serde_json::Value) {
    let input = testdata(file);
    let out = dir.join(format!("{file}.{tag}.tflite"));
    let report = dir.join(format!("{file}.{tag}.json"));
    let mut args = vec![
        "--mode",
        "weight-int4",
        "--min-elements",
        "0",
        // The small op models' tensors are smaller than their INT4 parameters.
        "--allow-larger",
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    quantize_cli(&input, &out, &args).unwrap_or_else(|e| panic!("{file} {tag}: {e}"));
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out, r)
}

/// The minimum SQNR over outputs; panics on a NaN.
fn sqnr(reference: &[Array], test: &[Array], what: &str) -> f64 {
    reference
        .iter()
        .zip(test)
        .map(|(a, b)| {
            let b = b.data.to_f64();
            assert!(b.iter().all(|v| !v.is_nan()), "{what}: NaN in an output");
            sqnr_db(&a.data.to_f64(), &b)
        })
        .fold(f64::INFINITY, f64::min)
}

/// The weight (input 1) of operator `oi` and whether it is read through a DEQUANTIZE.
fn weight_of(m: &Model, oi: usize) -> Option<(TensorType, bool)> {
    let g = &m.subgraphs[0];
    let ti = usize::try_from(*g.operators[oi].inputs.get(1)?).ok()?;
    let t = &g.tensors[ti];
    if m.is_constant(t) {
        return Some((t.dtype, false));
    }
    let p = g.producers()[ti]?;
    (m.builtin(&g.operators[p]) == Op::Dequantize)
        .then(|| (g.tensors[g.operators[p].inputs[0] as usize].dtype, true))
}

#[test]
fn every_weight_is_int4_and_runs_with_and_without_xnnpack_within_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for (file, calib) in [
        ("cnn_digits.tflite", "cnn_digits.calib.npy"),
        ("shared_weights_cnn.tflite", "cnn_digits.calib.npy"),
        ("mlp_large_fc.tflite", "mlp_large_fc.calib.npy"),
        ("tiny_transformer.tflite", "lstm_seq.calib.npy"),
        ("ops_conv_pool.tflite", "ops_conv_pool.calib.npy"),
        ("ops_reduce_misc.tflite", "ops_reduce_misc.calib.npy"),
    ] {
        let input = testdata(file);
        let float = tflquant::read_path(&input).unwrap();
        let inputs = sample_inputs(&input, &float, 4);
        let calib = testdata(calib);
        for (tag, extra) in [
            ("nearest", vec!["--rounding", "nearest"]),
            ("mse", vec![]),
            (
                "gptq",
                vec![
                    "--rounding",
                    "gptq",
                    "--calibration",
                    calib.to_str().unwrap(),
                    "--samples",
                    "64",
                ],
            ),
        ] {
            let what = format!("{file} {tag}");
            let (out, report) = int4(file, dir.path(), tag, &extra);
            // Nothing left float but biases (kept float by design) and non-real inputs.
            for l in report["left_float"].as_array().unwrap() {
                let reason = l["reason"].as_str().unwrap();
                assert!(
                    l["bias"] == true || reason.contains("not real-valued"),
                    "{what}: {} left float: {reason}",
                    l["name"]
                );
            }
            for q in report["quantized"].as_array().unwrap() {
                assert_eq!(q["new_dtype"], "INT4", "{what}: {}", q["name"]);
                let r = &q["rounding"];
                let method = r["method"].as_str().unwrap();
                let gain = r["gain_db"].as_f64().unwrap();
                match tag {
                    "nearest" => assert_eq!(gain, 0.0, "{what}"),
                    // The search includes the nearest scale: never worse.
                    "mse" => assert!(gain >= 0.0, "{what}: {}: gain {gain}", q["name"]),
                    _ if method == "gptq" => {
                        assert_eq!(r["measure"], "sequential");
                        assert!(gain > 0.0, "{what}: {}: gptq gain {gain}", q["name"]);
                    }
                    _ => assert!(r["fallback"].is_string(), "{what}: {r}"),
                }
            }
            let m = tflquant::read_path(&out).unwrap();
            let g = &m.subgraphs[0];
            for (oi, op) in g.operators.iter().enumerate() {
                let kind = m.builtin(op);
                let Some((dtype, through_dq)) = weight_of(&m, oi) else {
                    continue;
                };
                if !matches!(
                    kind,
                    Op::Conv2d
                        | Op::DepthwiseConv2d
                        | Op::FullyConnected
                        | Op::TransposeConv
                        | Op::BatchMatmul
                ) || dtype == TensorType::Float32 && !through_dq
                {
                    continue;
                }
                assert_eq!(dtype, TensorType::Int4, "{what}: op {oi} {kind:?}");
                // Read directly exactly where both LiteRT kernels take INT4.
                let direct = matches!(kind, Op::Conv2d | Op::FullyConnected);
                let odd_fc = kind == Op::FullyConnected
                    && g.tensors[op.inputs[1] as usize]
                        .shape
                        .last()
                        .is_some_and(|d| d % 2 != 0);
                assert_eq!(!through_dq, direct && !odd_fc, "{what}: op {oi} {kind:?}");
                kinds.insert(format!("{kind:?}"));
            }
            let reference = litert_run(&input, &inputs).unwrap();
            let xnn = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
            let builtin =
                litert_run_builtin(&out, &inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
            let (sx, sb) = (
                sqnr(&reference, &xnn, &what),
                sqnr(&reference, &builtin, &what),
            );
            eprintln!("{what}: SQNR XNNPACK {sx:.2} dB, builtin {sb:.2} dB");
            // The builtin kernels are checked layer by layer below; XNNPACK (hybrid
            // kernels quantizing activations its own way) must not be materially worse.
            assert!(
                sx >= sb - 3.0,
                "{what}: XNNPACK {sx:.2} dB vs builtin {sb:.2} dB"
            );
            check_layer_bounds(&float, &out, &inputs);
        }
    }
    for k in [
        "Conv2d",
        "DepthwiseConv2d",
        "FullyConnected",
        "TransposeConv",
        "BatchMatmul",
    ] {
        assert!(kinds.contains(k), "no INT4 {k} checked (saw {kinds:?})");
    }
}

/// GPTQ against round-to-nearest at the same size, on held-out samples in LiteRT.
#[test]
fn gptq_beats_nearest_on_held_out_samples() {
    let dir = tempfile::tempdir().unwrap();
    let file = "mlp_large_fc.tflite";
    let input = testdata(file);
    let float = tflquant::read_path(&input).unwrap();
    let test = load_samples("mlp_large_fc.test.npy", &float, 64);
    let calib = testdata("mlp_large_fc.calib.npy");
    let (near, _) = int4(file, dir.path(), "nearest", &["--rounding", "nearest"]);
    let (gptq, _) = int4(
        file,
        dir.path(),
        "gptq",
        &[
            "--rounding",
            "gptq",
            "--calibration",
            calib.to_str().unwrap(),
        ],
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(size(&near), size(&gptq), "same size");
    let reference = litert_run(&input, &test).unwrap();
    let sn = sqnr(&reference, &litert_run(&near, &test).unwrap(), "nearest");
    let sg = sqnr(&reference, &litert_run(&gptq, &test).unwrap(), "gptq");
    eprintln!("{file}: nearest {sn:.2} dB, gptq {sg:.2} dB");
    assert!(sg >= sn + 2.0, "gptq {sg:.2} dB vs nearest {sn:.2} dB");
}

/// The input of a model's last SOFTMAX (its logits).
fn logits_tensor(m: &Model) -> i32 {
    let g = &m.subgraphs[0];
    let op = g
        .operators
        .iter()
        .rev()
        .find(|op| m.builtin(op) == Op::Softmax)
        .expect("a SOFTMAX");
    op.inputs[0]
}

/// On the CNN and the transformer gptq is ≥ 2 dB over nearest at the same size, on the
/// 32 held-out samples: on the logits (LiteRT builtin kernels, every tensor kept), which
/// the saturating softmax does not hide, and on the softmax outputs (XNNPACK and the
/// builtin kernels).
#[test]
fn gptq_beats_nearest_on_the_logits_and_outputs_of_the_cnn_and_the_transformer() {
    let dir = tempfile::tempdir().unwrap();
    for (file, calib, test) in [
        (
            "cnn_digits.tflite",
            "cnn_digits.calib.npy",
            "cnn_digits.test.npy",
        ),
        (
            "tiny_transformer.tflite",
            "lstm_seq.calib.npy",
            "lstm_seq.test.npy",
        ),
    ] {
        let input = testdata(file);
        let float = tflquant::read_path(&input).unwrap();
        let x = load_samples(test, &float, 32);
        let calib = testdata(calib);
        let (near, _) = int4(file, dir.path(), "nearest", &["--rounding", "nearest"]);
        let (gptq, _) = int4(
            file,
            dir.path(),
            "gptq",
            &[
                "--rounding",
                "gptq",
                "--calibration",
                calib.to_str().unwrap(),
            ],
        );
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(size(&near), size(&gptq), "{file}: same size");
        let logits = |path: &Path| {
            let m = tflquant::read_path(path).unwrap();
            let t = logits_tensor(&m);
            let (_, all) = litert_run_all(path, &x).unwrap();
            let key = format!("t{t}");
            let v = all.iter().find(|(k, _)| *k == key).expect("logits kept");
            let v = v.1.data.to_f64();
            assert!(v.iter().all(|a| !a.is_nan()), "{}: NaN", path.display());
            v
        };
        let reference = logits(&input);
        let sn = sqnr_db(&reference, &logits(&near));
        let sg = sqnr_db(&reference, &logits(&gptq));
        // And on the softmax outputs (XNNPACK), on the same held-out samples.
        let out_ref = litert_run(&input, &x).unwrap();
        let on = sqnr(&out_ref, &litert_run(&near, &x).unwrap(), "nearest");
        let og = sqnr(&out_ref, &litert_run(&gptq, &x).unwrap(), "gptq");
        // And on LiteRT's builtin kernels (which read INT4 CONV_2D weights themselves).
        let bn = sqnr(&out_ref, &litert_run_builtin(&near, &x).unwrap(), "nearest");
        let bg = sqnr(&out_ref, &litert_run_builtin(&gptq, &x).unwrap(), "gptq");
        eprintln!(
            "{file}: logit SQNR nearest {sn:.2} dB, gptq {sg:.2} dB; output SQNR nearest {on:.2} dB, gptq {og:.2} dB; builtin kernels nearest {bn:.2} dB, gptq {bg:.2} dB"
        );
        assert!(
            bg >= bn + 2.0,
            "{file}: outputs, builtin kernels: gptq {bg:.2} dB vs nearest {bn:.2} dB"
        );
        assert!(
            sg >= sn + 2.0,
            "{file}: logits: gptq {sg:.2} dB vs nearest {sn:.2} dB"
        );
        assert!(
            og >= on + 2.0,
            "{file}: outputs: gptq {og:.2} dB vs nearest {on:.2} dB"
        );
    }
}

#[test]
fn int4_max_loss_keeps_the_layers_below_the_budget_int8() {
    let dir = tempfile::tempdir().unwrap();
    let file = "cnn_digits.tflite";
    let budget = 20.0;
    let (out, report) = int4(
        file,
        dir.path(),
        "maxloss",
        &["--rounding", "nearest", "--int4-max-loss", "20"],
    );
    let (mut int8, mut int4) = (0, 0);
    for q in report["quantized"].as_array().unwrap() {
        let s = q["rounding"]["int4_sqnr_db"].as_f64().unwrap();
        let kept = s < budget;
        assert_eq!(q["rounding"]["kept_int8"], kept, "{}", q["name"]);
        assert_eq!(q["new_dtype"], if kept { "INT8" } else { "INT4" });
        if kept { int8 += 1 } else { int4 += 1 }
    }
    assert!(
        int8 > 0 && int4 > 0,
        "{int8} INT8, {int4} INT4: budget splits nothing"
    );
    let float = tflquant::read_path(testdata(file)).unwrap();
    let inputs = sample_inputs(&testdata(file), &float, 4);
    litert_run_builtin(&out, &inputs).unwrap();
    check_layer_bounds(&float, &out, &inputs);
}

#[test]
fn int4_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("cnn_digits.tflite");
    let out = dir.path().join("x.tflite");
    for (args, says) in [
        (
            &["--mode", "weight-int4", "--rounding", "gptq"][..],
            "--calibration",
        ),
        (
            &["--mode", "weight-int8", "--rounding", "mse"][..],
            "weight-int4",
        ),
        (
            &["--mode", "dynamic", "--int4-max-loss", "20"][..],
            "weight-int4",
        ),
        (
            &["--mode", "weight-int8", "--calibration", "x.npy"][..],
            "--calibration",
        ),
    ] {
        let (code, _, err) = quantize_run(&input, &out, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// The default rounding is gptq with calibration data and mse without (each the best on
/// the test models' outputs and logits on average of what it can run, docs/ACCURACY.md);
/// samples given with an explicit rounding that needs none are reported, not silently
/// dropped.
#[test]
fn default_rounding_is_gptq_with_calibration_data_and_mse_without() {
    let dir = tempfile::tempdir().unwrap();
    let calib = testdata("cnn_digits.calib.npy");
    let file = "cnn_digits.tflite";
    let (_, with) = int4(
        file,
        dir.path(),
        "with",
        &["--calibration", calib.to_str().unwrap()],
    );
    let (_, without) = int4(file, dir.path(), "without", &[]);
    let (_, unused) = int4(
        file,
        dir.path(),
        "unused",
        &[
            "--calibration",
            calib.to_str().unwrap(),
            "--rounding",
            "mse",
        ],
    );
    for (r, want) in [(&with, "gptq"), (&without, "mse"), (&unused, "mse")] {
        let quantized = r["quantized"].as_array().unwrap();
        assert!(!quantized.is_empty());
        for q in quantized {
            let got = &q["rounding"]["method"];
            // gptq falls back to mse for weights without input statistics.
            let fell_back = q["rounding"]["fallback"].is_string();
            assert!(
                got == want || (want == "gptq" && fell_back && got == "mse"),
                "{}: {got} (want {want})",
                q["name"]
            );
        }
    }
    let gptq = with["quantized"].as_array().unwrap().iter();
    assert!(gptq.filter(|q| q["rounding"]["method"] == "gptq").count() >= 3);
    let notes = unused["notes"].to_string();
    assert!(
        notes.contains("calibration samples are not used"),
        "{notes}"
    );
}

/// Forward pass of a chain of FULLY_CONNECTED / activation / SOFTMAX operators
/// (subgraph 0 of the quantized model `quant`) in f64 with the weights as stored
/// (dequantized), and a bound on how far LiteRT may be from it: a FULLY_CONNECTED's
/// hybrid kernel rounds each input row to int8 (at most one step of the row's range),
/// so its output moves by at most `|Ŵ|·(e + step)` plus float slack; activations are
/// monotone (the bound moves through them exactly); a SOFTMAX probability is largest
/// with its logit at the top of its interval and the others at the bottom. Returns (values,
/// bound) of the output for one sample. The weights' own rounding is in the values, so
/// `|LiteRT − float| ≤ |values − float| + bound`.
fn chain_bound(quant: &Model, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    use fb::ActivationFunctionType as F;
    let g = &quant.subgraphs[0];
    let mut val: std::collections::HashMap<i32, (Vec<f64>, Vec<f64>)> = Default::default();
    val.insert(g.inputs[0], (x.to_vec(), vec![0.0; x.len()]));
    let act = |a: F, v: f64| match a {
        F::Relu => v.max(0.0),
        F::Relu6 => v.clamp(0.0, 6.0),
        F::ReluN1To1 => v.clamp(-1.0, 1.0),
        F::Tanh => v.tanh(),
        F::None => v,
        other => panic!("activation {other:?} not modelled"),
    };
    for (oi, op) in g.operators.iter().enumerate() {
        let kind = quant.builtin(op);
        if kind == Op::Dequantize {
            continue;
        }
        let (x, e) = val
            .get(&op.inputs[0])
            .unwrap_or_else(|| panic!("op {oi} {kind:?}: input not computed"))
            .clone();
        let out = match kind {
            Op::FullyConnected => {
                let w = weight_source(quant, 0, oi, 1).expect("constant weight");
                let (wq, _) = dequantize(quant, 0, &w);
                let bias = weight_source(quant, 0, oi, 2).map(|b| dequantize(quant, 0, &b).0);
                let (units, depth) = (w.shape[0] as usize, w.shape[1] as usize);
                assert_eq!(depth, x.len(), "op {oi}: one sample at a time");
                let a = match &op.builtin_options {
                    Some(fb::BuiltinOptions::FullyConnectedOptions(o)) => {
                        o.fused_activation_function
                    }
                    _ => F::None,
                };
                let (lo, hi) = x.iter().zip(&e).fold((0f64, 0f64), |(l, h), (&v, &d)| {
                    (l.min(v - d), h.max(v + d))
                });
                let step = (hi - lo) / 255.0;
                let mut y = vec![0.0; units];
                let mut ey = vec![0.0; units];
                for u in 0..units {
                    let mut acc = bias.as_ref().map_or(0.0, |b| b[u] as f64);
                    let mut bound = 1e-6;
                    for j in 0..depth {
                        let wq = wq[u * depth + j] as f64;
                        acc += wq * x[j];
                        bound += wq.abs() * (e[j] + step) + 1e-5 * (wq * x[j]).abs();
                    }
                    y[u] = act(a, acc);
                    ey[u] = monotone_bound(&[acc], &[bound], |v| act(a, v))[0];
                }
                (y, ey)
            }
            Op::Relu | Op::Relu6 | Op::ReluN1To1 | Op::Tanh => {
                let a = match kind {
                    Op::Relu => F::Relu,
                    Op::Relu6 => F::Relu6,
                    Op::ReluN1To1 => F::ReluN1To1,
                    _ => F::Tanh,
                };
                let y = x.iter().map(|&v| act(a, v)).collect();
                (y, monotone_bound(&x, &e, |v| act(a, v)))
            }
            Op::Softmax => {
                let beta = match &op.builtin_options {
                    Some(fb::BuiltinOptions::SoftmaxOptions(o)) => o.beta as f64,
                    _ => 1.0,
                };
                // p_i is largest with z_i at its top and every other z_j at its bottom.
                let p = |i: usize, dir: f64| {
                    let zi = x[i] + dir * e[i];
                    let others: f64 = (0..x.len())
                        .filter(|&j| j != i)
                        .map(|j| (beta * (x[j] - dir * e[j] - zi)).exp())
                        .sum();
                    1.0 / (1.0 + others)
                };
                let y: Vec<f64> = (0..x.len()).map(|i| p(i, 0.0)).collect();
                let ey = (0..x.len())
                    .map(|i| (p(i, 1.0) - y[i]).max(y[i] - p(i, -1.0)) + 1e-6)
                    .collect();
                (y, ey)
            }
            other => panic!("op {oi} {other:?} not modelled"),
        };
        val.insert(op.outputs[0], out);
    }
    val.remove(&g.outputs[0]).expect("output computed")
}

/// How far a monotone `f` moves values within `e` of `x`.
fn monotone_bound(x: &[f64], e: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
    x.iter()
        .zip(e)
        .map(|(&v, &d)| {
            let y = f(v);
            (f(v + d) - y).abs().max((f(v - d) - y).abs())
        })
        .collect()
}

/// Blockwise INT4 FULLY_CONNECTED on LiteRT's builtin kernels (which read blockwise
/// scales only in a 4-bit kernel that applies no fused activation and needs >= 4 output
/// units): the fused RELU / RELU6 become RELU / RELU6 operators, the 3-unit layer stays
/// per channel with its fused RELU, and the outputs with and without XNNPACK are within
/// the bound propagated from the float model's weights.
#[test]
fn blockwise_fully_connected_is_right_on_the_builtin_kernels_and_on_xnnpack() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["fc_fused_acts.tflite", "mlp_large_fc.tflite"] {
        let input = testdata(file);
        let float = tflquant::read_path(&input).unwrap();
        let (out, report) = int4(file, dir.path(), "block32", &["--block-size", "32"]);
        let m = tflquant::read_path(&out).unwrap();
        let g = &m.subgraphs[0];
        let consumers = g.consumers();
        let mut blockwise = 0;
        for (oi, op) in g.operators.iter().enumerate() {
            if m.builtin(op) != Op::FullyConnected {
                continue;
            }
            let w = weight_source(&m, 0, oi, 1).unwrap();
            let fused = match &op.builtin_options {
                Some(fb::BuiltinOptions::FullyConnectedOptions(o)) => o.fused_activation_function,
                _ => fb::ActivationFunctionType::None,
            };
            let original = float.subgraphs[0]
                .operators
                .iter()
                .find(|f| {
                    float.builtin(f) == Op::FullyConnected
                        && float.subgraphs[0].tensors[f.inputs[1] as usize].name == w.name
                })
                .expect("the float FULLY_CONNECTED");
            let original_act = match &original.builtin_options {
                Some(fb::BuiltinOptions::FullyConnectedOptions(o)) => o.fused_activation_function,
                _ => fb::ActivationFunctionType::None,
            };
            let is_blockwise = matches!(
                w.quant.as_ref().and_then(|q| q.details.as_ref()),
                Some(fb::QuantizationDetails::BlockwiseQuantization(_))
            );
            let (units, depth) = (w.shape[0], w.shape[1]);
            let qualifies = units >= 4 && depth >= 32 && depth % 2 == 0 && depth % 32 == 0;
            assert_eq!(w.dtype, TensorType::Int4, "{file}: op {oi}");
            assert_eq!(is_blockwise, qualifies, "{file}: op {oi} {:?}", w.shape);
            if !is_blockwise {
                assert_eq!(fused, original_act, "{file}: op {oi} keeps its activation");
                continue;
            }
            blockwise += 1;
            assert_eq!(fused, fb::ActivationFunctionType::None, "{file}: op {oi}");
            let readers = &consumers[op.outputs[0] as usize];
            let want = match original_act {
                fb::ActivationFunctionType::None => None,
                fb::ActivationFunctionType::Relu => Some(Op::Relu),
                fb::ActivationFunctionType::Relu6 => Some(Op::Relu6),
                other => panic!("{file}: activation {other:?} not in the test model"),
            };
            if let Some(want) = want {
                assert_eq!(readers.len(), 1, "{file}: op {oi}");
                let (ai, _) = readers[0];
                assert_eq!(ai, oi + 1, "{file}: the activation follows op {oi}");
                assert_eq!(m.builtin(&g.operators[ai]), want, "{file}: op {oi}");
            }
        }
        assert!(blockwise >= 2, "{file}: only {blockwise} blockwise layers");
        if file == "fc_fused_acts.tflite" {
            let notes = report["notes"].to_string();
            assert!(notes.contains("3 output units"), "{notes}");
        }
        let x = load_samples("mlp_large_fc.test.npy", &float, 32);
        let reference = litert_run(&input, &x).unwrap();
        let xnn = litert_run(&out, &x).unwrap();
        let builtin = litert_run_builtin(&out, &x).unwrap();
        let xs = x[0].data.to_f64();
        let depth = xs.len() / 32;
        let (r, a, b) = (
            reference[0].data.to_f64(),
            xnn[0].data.to_f64(),
            builtin[0].data.to_f64(),
        );
        let n_out = r.len() / 32;
        // Largest |LiteRT − stored-weights pass| / bound, and |LiteRT − float| / (its
        // derived bound |stored-weights pass − float| + bound), per runtime.
        let (mut worst, mut worst_float) = ([0f64; 2], [0f64; 2]);
        for s in 0..32 {
            let (y, e) = chain_bound(&m, &xs[s * depth..(s + 1) * depth]);
            for k in 0..n_out {
                let i = s * n_out + k;
                let to_float = (y[k] - r[i]).abs() + e[k];
                for (j, (run, got)) in [("XNNPACK", a[i]), ("builtin", b[i])]
                    .into_iter()
                    .enumerate()
                {
                    assert!(!got.is_nan(), "{file} {run}: NaN");
                    let err = (got - y[k]).abs();
                    assert!(
                        err <= e[k],
                        "{file} {run}: sample {s} output {k}: {got} vs {} with the stored weights: error {err} > bound {}",
                        y[k],
                        e[k]
                    );
                    assert!((got - r[i]).abs() <= to_float, "{file} {run}");
                    worst[j] = worst[j].max(err / e[k]);
                    worst_float[j] = worst_float[j].max((got - r[i]).abs() / to_float);
                }
            }
        }
        let (sx, sb) = (sqnr_db(&r, &a), sqnr_db(&r, &b));
        eprintln!(
            "{file} block 32: SQNR XNNPACK {sx:.2} dB, builtin {sb:.2} dB; largest error / bound (stored weights) {:.2e} / {:.2e}, (float) {:.2e} / {:.2e}",
            worst[0], worst[1], worst_float[0], worst_float[1]
        );
        // Layer by layer on the builtin kernels' own intermediates (a dropped fused
        // activation or misread scales fail here), then the two runtimes agree.
        check_layer_bounds(&float, &out, &sample_inputs(&input, &float, 4));
        assert!(
            (sx - sb).abs() < 3.0,
            "{file}: XNNPACK {sx:.2} vs builtin {sb:.2} dB"
        );
    }
}
