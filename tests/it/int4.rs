//! `--mode weight-int4` on every kind of weight, with each rounding, checked on LiteRT
//! with and without its default (XNNPACK) delegate:
//! - every real weight of the test models is INT4 (biases stay float by design);
//! - CONV_2D and FULLY_CONNECTED read INT4 directly, every other reader through one
//!   DEQUANTIZE;
//! - each quantized layer stays within the bound its weight error implies
//!   ([`crate::weights::check_layer_bounds`], on LiteRT's own intermediates);
//! - gptq lowers the layer error it reports and the output error on held-out samples;
//! - `--int4-max-loss` keeps exactly the layers whose INT4 SQNR is below it as INT8.

use std::path::{Path, PathBuf};

use tflquant::data::Array;
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;

use crate::common::*;
use crate::weights::check_layer_bounds;

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
                        assert_eq!(r["measure"], "hessian");
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

/// On the CNN and the transformer, whose softmax outputs saturate, gptq's gain shows on
/// the logits (LiteRT builtin kernels, every tensor kept): ≥ 2 dB over nearest at the
/// same size, on held-out samples.
#[test]
fn gptq_beats_nearest_on_the_logits_of_the_cnn_and_the_transformer() {
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
        eprintln!("{file}: logit SQNR nearest {sn:.2} dB, gptq {sg:.2} dB");
        assert!(
            sg >= sn + 2.0,
            "{file}: gptq {sg:.2} dB vs nearest {sn:.2} dB"
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

/// The default rounding is mse with or without calibration data (mse is the best on the
/// test models' outputs on average, docs/ACCURACY.md); samples given without a use for
/// them are reported, not silently dropped.
#[test]
fn default_rounding_is_mse_even_with_calibration_data() {
    let dir = tempfile::tempdir().unwrap();
    let calib = testdata("cnn_digits.calib.npy");
    let (_, r) = int4(
        "cnn_digits.tflite",
        dir.path(),
        "default",
        &["--calibration", calib.to_str().unwrap()],
    );
    let quantized = r["quantized"].as_array().unwrap();
    assert!(!quantized.is_empty());
    for q in quantized {
        assert_eq!(q["rounding"]["method"], "mse", "{}", q["name"]);
        assert_eq!(q["rounding"]["measure"], "weights", "{}", q["name"]);
    }
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("calibration samples are not used"),
        "{notes}"
    );
}
