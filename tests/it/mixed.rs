//! Hand-made and automatic mixed precision (issue #15): `--keep-float` forces operators
//! float with the reason; `--target-sqnr T` (int8 / int16x8 / float per operator)
//! reaches T dB on every real-valued output of every testdata model with calibration
//! data, on held-out samples, on LiteRT. `--int16`: `mixed_width.rs`.

use std::path::Path;

use tflquant::data::{Array, ArrayData};
use tflquant::fb::TensorType;
use tflquant::ir::Model;

use crate::common::*;

/// Calibration samples, as docs/ACCURACY.md: at most 32.
const CALIB_SAMPLES: &str = "32";

/// Every float testdata model with calibration and held-out data that LiteRT runs:
/// (model, calibration file, test file).
fn models_with_data() -> Vec<(String, String, String)> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("manifest.json")).unwrap()).unwrap();
    let mut v: Vec<(String, String, String)> = m["models"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, e)| {
            // Converter outputs (already quantized) are references, not inputs.
            !k.contains(".tf_")
                && !k.starts_with("int8_quantized")
                && !k.starts_with("qat_")
                && e["runs_in_litert"].as_bool() == Some(true)
                && e["calib"].is_string()
                && e["test"].is_string()
        })
        .map(|(k, e)| {
            (
                k.clone(),
                e["calib"].as_str().unwrap().to_string(),
                e["test"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Runs on LiteRT (XNNPACK, else builtin kernels); models with resource variables as
/// one stream (their samples are consecutive frames).
fn run(model_path: &Path, model: &Model, inputs: &[Array]) -> Result<Vec<Array>, String> {
    let stateful = model
        .operator_codes
        .iter()
        .any(|c| c.builtin == tflquant::fb::BuiltinOperator::VarHandle);
    if stateful {
        return litert_run_stream(model_path, inputs, false).map(|(o, _)| o);
    }
    litert_run(model_path, inputs).or_else(|_| litert_run_builtin(model_path, inputs))
}

/// Per real-valued output: SQNR of `quant` against `float` on the first `n` test
/// samples.
fn output_sqnr(float: &Path, quant: &Path, test: &str, n: usize) -> Vec<(usize, f64)> {
    let fm = tflquant::read_path(float).unwrap();
    let qm = tflquant::read_path(quant).unwrap();
    let inputs = load_samples(test, &fm, n);
    let fo = run(float, &fm, &inputs).unwrap_or_else(|e| panic!("{float:?} on LiteRT: {e}"));
    let qo = run(quant, &qm, &inputs).unwrap_or_else(|e| panic!("{quant:?} on LiteRT: {e}"));
    assert_eq!(fo.len(), qo.len());
    fo.iter()
        .zip(&qo)
        .enumerate()
        .filter(|(_, (a, _))| matches!(a.data, ArrayData::F32(_)))
        .map(|(k, (a, b))| (k, sqnr_db(&a.data.to_f64(), &b.data.to_f64())))
        .collect()
}

fn target_sqnr_on_every_model(target: f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, calib, test) in models_with_data() {
        let input = testdata(&name);
        let out = dir.path().join(format!("{name}.{target}.tflite"));
        let report = dir.path().join(format!("{name}.{target}.json"));
        let t = target.to_string();
        let (code, _, err) = quantize_run(
            &input,
            &out,
            &[
                "--mode",
                "int8",
                "--calibration",
                testdata(&calib).to_str().unwrap(),
                "--samples",
                CALIB_SAMPLES,
                "--target-sqnr",
                &t,
                "--report",
                report.to_str().unwrap(),
            ],
        );
        if code != 0 {
            failures.push(format!("{name}: exit {code}: {err}"));
            continue;
        }
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let mp = &r["mixed_precision"];
        assert_eq!(mp["target_sqnr_db"].as_f64(), Some(target), "{name}");
        let plan = mp["plan"].as_array().unwrap();
        assert_eq!(
            plan.len(),
            r["ops"].as_array().unwrap().len(),
            "{name}: one plan entry per operator"
        );
        for p in plan {
            let precision = p["precision"].as_str().unwrap();
            assert!(
                ["int8", "int16x8", "float"].contains(&precision),
                "{name}: {p}"
            );
        }
        let bound = target;
        // The whole held-out file (up to 360 samples: the digits RNNs; 256 frames:
        // streaming_kws), as docs/ACCURACY.md measures it.
        for (k, db) in output_sqnr(&input, &out, &test, usize::MAX) {
            // NaN fails too.
            if db.is_nan() || db < bound {
                failures.push(format!(
                    "{name}: output {k}: {db:.2} dB < {bound} dB on held-out {test} (LiteRT)"
                ));
            }
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} models checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn target_sqnr_25_reached_on_held_out_data_litert() {
    target_sqnr_on_every_model(25.0);
}

#[test]
fn target_sqnr_30_reached_on_held_out_data_litert() {
    target_sqnr_on_every_model(30.0);
}

/// Held-out data clip where the calibration data did not (sentinel_clip's held-out values
/// reach 17% beyond the calibrated minimum, shared_weights_cnn's 50% beyond the maximum):
/// met by the search's worst-sample estimate and int16x8 with range headroom, not
/// per-model exceptions.
#[test]
fn target_sqnr_40_reached_on_held_out_data_litert() {
    target_sqnr_on_every_model(40.0);
}

/// No larger than needed: where the int8 model clearly reaches the target,
/// `--target-sqnr 40` keeps every operator int8 (no float, no 16x8), and the plan is
/// measured on the full held-out file on LiteRT. dynamic_batch_mlp and sparse_fp16_cnn
/// score 79 and 91 dB in int8 on held-out data. (cnn_digits, 70 dB, was this test's
/// model while SOFTMAX probabilities were int8: with int16 probabilities one search
/// sample whose logits clip with its fold's ranges scores 43 dB, below T + the 5 dB
/// margin, and 6 of its 9 operators stay float: docs/ACCURACY.md.)
#[test]
fn target_sqnr_40_writes_the_int8_model_when_it_suffices_litert() {
    let dir = tempfile::tempdir().unwrap();
    for (model, calib, test) in [
        (
            "dynamic_batch_mlp.tflite",
            "mlp_large_fc.calib.npy",
            "mlp_large_fc.test.npy",
        ),
        (
            "sparse_fp16_cnn.tflite",
            "cnn_digits.calib.npy",
            "cnn_digits.test.npy",
        ),
    ] {
        let input = testdata(model);
        let calib = testdata(calib);
        let out = dir.path().join(format!("{model}.t40.tflite"));
        let report = dir.path().join(format!("{model}.t40.json"));
        quantize_cli(
            &input,
            &out,
            &[
                "--mode",
                "int8",
                "--calibration",
                calib.to_str().unwrap(),
                "--samples",
                CALIB_SAMPLES,
                "--target-sqnr",
                "40",
                "--report",
                report.to_str().unwrap(),
            ],
        )
        .unwrap();
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let plan = r["mixed_precision"]["plan"].as_array().unwrap();
        let raised: Vec<_> = plan.iter().filter(|o| o["precision"] != "int8").collect();
        assert!(raised.is_empty(), "{model}: {raised:?}");
        for (k, db) in output_sqnr(&input, &out, test, usize::MAX) {
            assert!(
                db >= 40.0,
                "{model} output {k}: {db:.2} dB on held-out data (LiteRT)"
            );
        }
    }
}

/// `--mode int16x8 --target-sqnr T` chooses between int16x8 and float only (never int8),
/// and meets T on held-out data on LiteRT: cnn_digits in int16x8 scores 65 dB there, so
/// T = 70 needs float operators and T = 50 keeps some int16x8.
#[test]
fn target_sqnr_int16x8_chooses_between_int16x8_and_float_litert() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("cnn_digits.tflite");
    let calib = testdata("cnn_digits.calib.npy");
    for target in [50.0, 70.0] {
        let out = dir.path().join(format!("i16.{target}.tflite"));
        let report = dir.path().join(format!("i16.{target}.json"));
        let t = target.to_string();
        quantize_cli(
            &input,
            &out,
            &[
                "--mode",
                "int16x8",
                "--calibration",
                calib.to_str().unwrap(),
                "--samples",
                CALIB_SAMPLES,
                "--target-sqnr",
                &t,
                "--report",
                report.to_str().unwrap(),
            ],
        )
        .unwrap();
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let mp = &r["mixed_precision"];
        assert_eq!(mp["reached"], true, "{target}: {mp}");
        let plan = mp["plan"].as_array().unwrap();
        let count = |p: &str| plan.iter().filter(|o| o["precision"] == p).count();
        assert_eq!(count("int8"), 0, "{target}: {plan:?}");
        assert_eq!(count("int16x8") + count("float"), plan.len(), "{plan:?}");
        assert!(
            count("float") >= 1,
            "{target}: int16x8 alone scores 65 dB: {plan:?}"
        );
        if target == 50.0 {
            assert!(count("int16x8") >= 1, "{plan:?}");
        }
        for (k, db) in output_sqnr(&input, &out, "cnn_digits.test.npy", 32) {
            assert!(
                db >= target,
                "{target}: output {k}: {db:.2} dB on held-out data (LiteRT)"
            );
        }
    }
}

#[test]
fn keep_float_by_type_and_index_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("cnn_digits.tflite");
    let out = dir.path().join("kf.tflite");
    let report = dir.path().join("kf.json");
    let calib = testdata("cnn_digits.calib.npy");
    quantize_cli(
        &input,
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            calib.to_str().unwrap(),
            "--keep-float",
            "CONV_2D",
            "--keep-float",
            "0:6",
            "--report",
            report.to_str().unwrap(),
        ],
    )
    .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ops = r["ops"].as_array().unwrap();
    let mut forced = 0;
    for o in ops {
        let by_type = o["op"] == "CONV_2D";
        let by_index = o["operator"] == 6;
        let reason = o["reason"].as_str().unwrap_or("");
        if by_type || by_index {
            assert_eq!(o["fate"], "float", "{o}");
            let flag = if by_type { "CONV_2D" } else { "0:6" };
            assert_eq!(reason, format!("kept float by --keep-float {flag}"));
            forced += 1;
        } else {
            assert_eq!(o["fate"], "quantized", "{o}");
        }
    }
    assert_eq!(forced, 3, "two CONV_2D and operator 6");
    // The written model: the kept operators read and write float32, the others int8
    // (SOFTMAX reads int8 and writes its probabilities for the float output in int16).
    let m = tflquant::read_path(&out).unwrap();
    let sg = &m.subgraphs[0];
    for op in &sg.operators {
        let name = m.op_display_name(op);
        let out_t = &sg.tensors[op.outputs[0] as usize];
        match name.as_str() {
            "CONV_2D" => assert_eq!(out_t.dtype, TensorType::Float32),
            "DEPTHWISE_CONV_2D" | "MAX_POOL_2D" => {
                assert_eq!(out_t.dtype, TensorType::Int8, "{name}")
            }
            "SOFTMAX" => {
                let in_t = &sg.tensors[op.inputs[0] as usize];
                assert_eq!(
                    (in_t.dtype, out_t.dtype),
                    (TensorType::Int8, TensorType::Int16)
                )
            }
            _ => {}
        }
    }
    let fcs: Vec<TensorType> = sg
        .operators
        .iter()
        .filter(|op| m.op_display_name(op) == "FULLY_CONNECTED")
        .map(|op| sg.tensors[op.outputs[0] as usize].dtype)
        .collect();
    assert_eq!(
        fcs,
        [TensorType::Float32, TensorType::Int8],
        "fc1 (0:6) float, probs int8"
    );
    // LiteRT runs it; keeping operators float can only remove error sources, so it is at
    // least as close to the float model as ~8 bits (plain int8 measures 49 dB here).
    for (k, db) in output_sqnr(&input, &out, "cnn_digits.test.npy", 32) {
        assert!(db > 40.0, "output {k}: {db} dB");
    }
}

#[test]
fn keep_float_by_output_tensor_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kf.tflite");
    let report = dir.path().join("kf.json");
    let calib = testdata("cnn_digits.calib.npy");
    quantize_cli(
        &testdata("cnn_digits.tflite"),
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            calib.to_str().unwrap(),
            "--keep-float",
            "cnn_digits/maxpool/.*",
            "--report",
            report.to_str().unwrap(),
        ],
    )
    .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let float: Vec<&str> = r["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["fate"] == "float")
        .map(|o| o["op"].as_str().unwrap())
        .collect();
    assert_eq!(float, ["MAX_POOL_2D"]);
}

#[test]
fn keep_float_that_matches_nothing_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let calib = testdata("cnn_digits.calib.npy");
    for (sel, want) in [
        ("NOT_AN_OP", "no operator matches"),
        ("0:99", "no operator matches"),
        ("(", "neither S:I"),
    ] {
        let (code, _, err) = quantize_run(
            &testdata("cnn_digits.tflite"),
            &dir.path().join("x.tflite"),
            &[
                "--mode",
                "int8",
                "--calibration",
                calib.to_str().unwrap(),
                "--keep-float",
                sel,
            ],
        );
        assert_eq!(code, 2, "{sel}: {err}");
        assert!(err.contains(want), "{sel}: {err}");
    }
    let (code, _, err) = quantize_run(
        &testdata("cnn_digits.tflite"),
        &dir.path().join("x.tflite"),
        &["--mode", "float16", "--keep-float", "CONV_2D"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--keep-float applies to"), "{err}");
}
