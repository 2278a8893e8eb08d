//! Exporter idioms (issue #19): sentinel constants and STABLEHLO_COMPOSITE, each
//! quantized model checked on the official runtime.
//!
//! Sentinel models are compared with their sentinel-free twins (`*.twin.tflite`, the same
//! function without the sentinel, made by `testdata/gen/idioms.py`). The bound: a
//! saturated sentinel is exact where it only has to be an end of the range (max pool,
//! MINIMUM/MAXIMUM, SELECT) and weighs less than half an output step after SOFTMAX, so
//! the only extra error a sentinel model may carry is one more rounding of the same
//! step on a path (the clip model's SUB, which the twin's converter folded into the
//! bias): at most double the noise power, 10·log10(2) = 3.01 dB below the twin.

use std::path::{Path, PathBuf};

use tflquant::data::Array;
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;

use crate::common::*;

/// One more rounding of the same step at most doubles the noise power.
const EXTRA_ROUNDING_DB: f64 = 3.0103;

/// Sentinel tensors the report must name: (kind, name prefix).
type Expected = &'static [(&'static str, &'static str)];

/// (model, data stem, sentinel tensors the report must name)
const SENTINEL_MODELS: &[(&str, &str, Expected)] = &[
    ("sentinel_pad_maxpool", "ops_conv_pool", &[("constant", "")]),
    (
        "sentinel_masked_attention",
        "lstm_seq",
        &[("constant", ""), ("activation", "add")],
    ),
    (
        "sentinel_select_attention",
        "lstm_seq",
        &[("constant", ""), ("activation", "SelectV2")],
    ),
    ("sentinel_clip", "mlp_large_fc", &[("constant", "")]),
];

fn quantize(
    input: &Path,
    stem: &str,
    dir: &Path,
    mode: &str,
) -> Result<(PathBuf, serde_json::Value), String> {
    let name = input.file_stem().unwrap().to_string_lossy().to_string();
    let out = dir.join(format!("{name}.{mode}.tflite"));
    let report = dir.join(format!("{name}.{mode}.json"));
    let calib = testdata(&format!("{stem}.calib.npy"));
    quantize_cli(
        input,
        &out,
        &[
            "--mode",
            mode,
            "--calibration",
            calib.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    )?;
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    Ok((out, r))
}

/// Output SQNR on LiteRT of `quant` against `float` on the held-out data; NaN fails.
fn litert_sqnr(float: &Path, quant: &Path, inputs: &[Array]) -> f64 {
    let f = litert_run(float, inputs).unwrap_or_else(|e| panic!("{float:?}: {e}"));
    let q = litert_run(quant, inputs).unwrap_or_else(|e| panic!("{quant:?}: {e}"));
    let (f, q) = (f[0].data.to_f64(), q[0].data.to_f64());
    assert!(
        q.iter().all(|x| x.is_finite()),
        "{quant:?}: non-finite output"
    );
    sqnr_db(&f, &q)
}

/// Integer values of every constant input of ops `op` in the quantized model.
fn const_ints(m: &Model, op: Op) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    for sg in &m.subgraphs {
        for o in sg.operators.iter().filter(|o| m.builtin(o) == op) {
            for &t in &o.inputs {
                let Ok(t) = usize::try_from(t) else { continue };
                let t = &sg.tensors[t];
                if !m.is_constant(t) || t.quantized().is_none() {
                    continue;
                }
                let bytes = m.tensor_data(t);
                out.push(match t.dtype {
                    TensorType::Int8 => bytes.iter().map(|&b| b as i8 as i64).collect(),
                    TensorType::Int16 => bytes
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                        .collect(),
                    _ => continue,
                });
            }
        }
    }
    out
}

#[test]
fn sentinel_models_quantize_within_the_bound_of_their_twins_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for &(name, stem, expect) in SENTINEL_MODELS {
        let path = testdata(&format!("{name}.tflite"));
        let twin = testdata(&format!("{name}.twin.tflite"));
        let model = tflquant::read_path(&path).unwrap();
        let inputs = load_samples(&format!("{stem}.test.npy"), &model, 32);
        for mode in ["int8", "int16x8"] {
            let (out, report) = quantize(&path, stem, dir.path(), mode).unwrap();
            let (tout, _) = quantize(&twin, stem, dir.path(), mode).unwrap();
            let s = litert_sqnr(&path, &out, &inputs);
            let t = litert_sqnr(&twin, &tout, &inputs);
            lines.push(format!("{name} {mode}: {s:.2} dB, twin {t:.2} dB"));
            assert!(
                s >= t - EXTRA_ROUNDING_DB,
                "{name} {mode}: SQNR {s:.2} dB, twin {t:.2} dB"
            );
            // Every operator is integer: the sentinel did not push anything to float.
            for f in report["ops"].as_array().unwrap() {
                assert_eq!(f["fate"], "quantized", "{name} {mode}: {f}");
            }
            // The report says where, and the sentinel saturates to the integer end.
            let used = report["sentinels"].as_array().unwrap();
            for (kind, prefix) in expect {
                assert!(
                    used.iter().any(|u| u["kind"] == *kind
                        && u["name"].as_str().unwrap().starts_with(prefix)
                        && u["below"].as_u64().unwrap() + u["above"].as_u64().unwrap() > 0),
                    "{name} {mode}: no {kind} {prefix:?} in {used:?}"
                );
            }
            let q = tflquant::read_path(&out).unwrap();
            let (lo, hi) = if mode == "int8" {
                (-128, 127)
            } else {
                (-32767, 32767)
            };
            match name {
                "sentinel_pad_maxpool" => assert_eq!(const_ints(&q, Op::Padv2), [vec![lo]]),
                "sentinel_clip" => {
                    assert_eq!(const_ints(&q, Op::Minimum), [vec![hi]]);
                    assert_eq!(const_ints(&q, Op::Maximum), [vec![lo]]);
                }
                "sentinel_select_attention" => {
                    assert_eq!(const_ints(&q, Op::SelectV2), [vec![lo]])
                }
                _ => {
                    // The mask: the 28 entries above the diagonal saturate.
                    let mask = const_ints(&q, Op::Add);
                    assert_eq!(mask.len(), 1, "{mask:?}");
                    assert_eq!(mask[0].iter().filter(|&&v| v == lo).count(), 28);
                }
            }
        }
    }
    eprintln!("{}", lines.join("\n"));
}

#[test]
fn quantize_warns_when_an_output_is_below_10_db_on_the_calibration_data() {
    let dir = tempfile::tempdir().unwrap();
    let calib = testdata("cnn_digits.calib.npy");
    let out = dir.path().join("bad.tflite");
    // The median as the range's ends clips almost everything.
    let (code, _, err) = quantize_run(
        &testdata("cnn_digits.tflite"),
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            calib.to_str().unwrap(),
            "--observer",
            "percentile:50",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: output \"StatefulPartitionedCall:0\" has an SQNR of")
            && err.contains("below 10 dB")
            && err.contains("the most error is added at tensor"),
        "{err}"
    );
    // A good quantization stays silent.
    let (code, _, err) = quantize_run(
        &testdata("cnn_digits.tflite"),
        &out,
        &["--mode", "int8", "--calibration", calib.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn composite_runs_its_decomposition_like_litert() {
    let path = testdata("composite_attention.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let inputs = load_samples("lstm_seq.test.npy", &model, 32);
    let lite = litert_run(&path, &inputs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("out.npz");
    let (code, _, err) = run_cli(&[
        "run".as_ref(),
        path.as_os_str(),
        "--input".as_ref(),
        testdata("lstm_seq.test.npy").as_os_str(),
        "-o".as_ref(),
        npz.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let ours = tflquant::data::read_npz(&npz).unwrap();
    let (a, b) = (ours[0].1.data.to_f64(), lite[0].data.to_f64());
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    eprintln!("composite_attention: run vs LiteRT max |diff| {max:e} over 32 samples");
    assert!(max <= 1e-4, "max |diff| {max}");
}

#[test]
fn composite_decomposition_is_quantized_and_runs_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("composite_attention.tflite");
    let flat = testdata("sentinel_masked_attention.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let inputs = load_samples("lstm_seq.test.npy", &model, 32);
    for mode in ["int8", "int16x8"] {
        let (out, report) = quantize(&path, "lstm_seq", dir.path(), mode).unwrap();
        let (fout, _) = quantize(&flat, "lstm_seq", dir.path(), mode).unwrap();
        for f in report["ops"].as_array().unwrap() {
            if f["op"] == "STABLEHLO_COMPOSITE" {
                assert_eq!(f["fate"], "float");
                assert!(
                    f["reason"]
                        .as_str()
                        .unwrap()
                        .contains("calls subgraph 1: its boundary tensors stay float"),
                    "{f}"
                );
            } else {
                assert_eq!(f["fate"], "quantized", "{mode}: {f}");
            }
        }
        // The ops of the decomposition compute on integers.
        let q = tflquant::read_path(&out).unwrap();
        let sg = &q.subgraphs[1];
        for op in &sg.operators {
            let kind = q.builtin(op);
            if matches!(kind, Op::Quantize | Op::Dequantize) {
                continue;
            }
            let t = &sg.tensors[op.outputs[0] as usize];
            assert_ne!(
                t.dtype,
                TensorType::Float32,
                "{mode}: {kind:?} {:?}",
                t.name
            );
        }
        // Same function as the flat model: the float boundary costs a DEQUANTIZE →
        // QUANTIZE pair with equal parameters (the same calibrated values), which is
        // lossless, so both SQNRs agree within one extra rounding.
        let s = litert_sqnr(&path, &out, &inputs);
        let f = litert_sqnr(&flat, &fout, &inputs);
        eprintln!("composite_attention {mode}: {s:.2} dB (flat model {f:.2} dB)");
        assert!(s >= f - EXTRA_ROUNDING_DB, "{mode}: {s:.2} vs {f:.2}");
    }
    // Weight modes quantize the weights inside the decomposition.
    for mode in ["dynamic", "weight-int8"] {
        let out = dir.path().join(format!("composite.{mode}.tflite"));
        let report = dir.path().join(format!("composite.{mode}.json"));
        quantize_cli(
            &path,
            &out,
            &["--mode", mode, "--report", report.to_str().unwrap()],
        )
        .unwrap();
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let inside = r["quantized"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["subgraph"] == 1)
            .count();
        assert_eq!(inside, 2, "{mode}: {r}");
        let s = litert_sqnr(&path, &out, &inputs);
        eprintln!("composite_attention {mode}: {s:.2} dB");
        assert!(s > 30.0, "{mode}: {s:.2} dB");
    }
}

/// Issue #15 item 2: LOG and DIV whose operands reach the integer zero stay float with
/// their producers, so no tensor of the quantized model is ever ±inf or NaN on LiteRT
/// (before: LOG gave -inf and LiteRT's int8 DIV refused a zero divisor at run time).
#[test]
fn singular_operands_never_give_inf_or_nan_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("singular_frontend.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let inputs = load_samples("mlp_large_fc.test.npy", &model, 32);
    for (mode, float_ops) in [("int8", &["LOG", "DIV"][..]), ("int16x8", &["LOG"][..])] {
        let (out, report) = quantize(&path, "mlp_large_fc", dir.path(), mode).unwrap();
        for op in float_ops {
            let f = report["ops"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["op"] == *op)
                .unwrap();
            assert_eq!(f["fate"], "float", "{mode}: {f}");
            assert!(
                f["reason"].as_str().unwrap().contains("reaches 0"),
                "{mode}: {f}"
            );
        }
        let (outs, tensors) =
            litert_run_all(&out, &inputs).unwrap_or_else(|e| panic!("{mode}: LiteRT fails: {e}"));
        for (name, a) in outs
            .iter()
            .map(|a| ("output".to_string(), a))
            .chain(tensors.iter().map(|(k, a)| (k.clone(), a)))
        {
            if let tflquant::data::ArrayData::F32(v) = &a.data {
                assert!(v.iter().all(|x| x.is_finite()), "{mode}: {name} not finite");
            }
        }
    }
}
