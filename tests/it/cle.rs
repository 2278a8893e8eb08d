//! Cross-layer equalization (`quantize --cle`, issue #15 item 3): the rewrite keeps the
//! float model's outputs on the reference interpreter, evens out the weight ranges it
//! claims to, skips what is not scale-equivariant, and the int8 model it leads to runs
//! on LiteRT.

use tflquant::data::ArrayData;
use tflquant::quant::ptq::cle;

use crate::common::*;
use crate::interp::run_ours;

/// Models with equalizable pairs and the pairs (first → second operator) expected.
const EXPECTED: &[(&str, &[(usize, usize)])] = &[
    // CONV(RELU) → DEPTHWISE, and FC(RELU) → FC; the DEPTHWISE has RELU6: skipped.
    ("cnn_digits.tflite", &[(0, 1), (6, 7)]),
    ("mlp_large_fc.tflite", &[(0, 1), (1, 2)]),
    ("sparse_fp16_cnn.tflite", &[(0, 1), (2, 4), (4, 5), (7, 8)]),
];

/// Float32 rounding of the rescaled weights changes outputs far below this.
const FLOAT_TOLERANCE_DB: f64 = 90.0;

fn test_file(name: &str) -> String {
    manifest_entry(name).unwrap()["test"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn cle_keeps_the_float_outputs_and_balances_the_pairs() {
    for &(name, pairs) in EXPECTED {
        let model = tflquant::read_path(testdata(name)).unwrap();
        let (eq, summary) = cle::equalize(&model).unwrap();
        let found: Vec<(usize, usize)> =
            summary.pairs.iter().map(|p| (p.first, p.second)).collect();
        assert_eq!(found, pairs, "{name}: pairs");
        for p in &summary.pairs {
            assert!(
                p.balance_after > p.balance_before,
                "{name}: {p:?} did not even out the channel ranges"
            );
        }
        // The weights did change (a no-op rewrite would pass the equality below).
        let sg = &eq.subgraphs[0];
        let t = &sg.tensors[sg.operators[pairs[0].0].inputs[1] as usize];
        let before = model.subgraphs[0]
            .tensors
            .iter()
            .find(|x| x.name == t.name)
            .unwrap();
        assert_ne!(model.tensor_data(before), eq.tensor_data(t), "{name}");
        let inputs = load_samples(&test_file(name), &model, 16);
        let a = run_ours(&model, &inputs);
        let b = run_ours(&eq, &inputs);
        for (s, ((oa, _), (ob, _))) in a.iter().zip(&b).enumerate() {
            for (k, (x, y)) in oa.iter().zip(ob).enumerate() {
                let db = sqnr_db(&x.data.to_f64_vec(), &y.data.to_f64_vec());
                assert!(
                    db >= FLOAT_TOLERANCE_DB,
                    "{name}: sample {s} output {k}: {db:.1} dB between the float model and its equalized twin"
                );
            }
        }
    }
}

#[test]
fn cle_skips_relu6_and_shared_weights_with_the_reason() {
    let model = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    let (_, s) = cle::equalize(&model).unwrap();
    assert!(
        s.skipped
            .iter()
            .any(|k| k.operator == 1 && k.why.contains("Relu6")),
        "{s:?}"
    );
    // Every weight of shared_weights_cnn's chains is read by two layers.
    let model = tflquant::read_path(testdata("shared_weights_cnn.tflite")).unwrap();
    let (eq, s) = cle::equalize(&model).unwrap();
    assert!(s.pairs.is_empty(), "{s:?}");
    assert!(!s.skipped.is_empty() && s.skipped.iter().all(|k| k.why.contains("own")));
    for (a, b) in model.subgraphs[0]
        .tensors
        .iter()
        .zip(&eq.subgraphs[0].tensors)
    {
        assert_eq!(model.tensor_data(a), eq.tensor_data(b), "{}", a.name);
    }
}

#[test]
fn cle_int8_runs_on_litert_and_reports_the_pairs() {
    let dir = tempfile::tempdir().unwrap();
    for &(name, pairs) in EXPECTED {
        let input = testdata(name);
        let calib = manifest_entry(name).unwrap()["calib"]
            .as_str()
            .unwrap()
            .to_string();
        let out = dir.path().join(name);
        let report = dir.path().join(format!("{name}.json"));
        quantize_cli(
            &input,
            &out,
            &[
                "--mode",
                "int8",
                "--calibration",
                testdata(&calib).to_str().unwrap(),
                "--samples",
                "32",
                "--cle",
                "--report",
                report.to_str().unwrap(),
            ],
        )
        .unwrap();
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let notes: Vec<&str> = r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .filter(|n| n.starts_with("--cle: subgraph") && n.contains("channels equalized"))
            .collect();
        assert_eq!(notes.len(), pairs.len(), "{name}: {notes:?}");
        // Every CONV/DEPTHWISE/FC is int8 in the written model.
        let q = tflquant::read_path(&out).unwrap();
        let sg = &q.subgraphs[0];
        for op in &sg.operators {
            let b = q.builtin(op);
            use tflquant::fb::BuiltinOperator as B;
            if matches!(b, B::Conv2d | B::DepthwiseConv2d | B::FullyConnected) {
                let w = &sg.tensors[op.inputs[1] as usize];
                assert_eq!(w.dtype, tflquant::fb::TensorType::Int8, "{name}: {b:?}");
            }
        }
        let fm = tflquant::read_path(&input).unwrap();
        let inputs = load_samples(&test_file(name), &fm, 32);
        let fo = litert_run(&input, &inputs).unwrap();
        let qo = litert_run(&out, &inputs).unwrap();
        for (k, (a, b)) in fo.iter().zip(&qo).enumerate() {
            assert!(matches!(a.data, ArrayData::F32(_)));
            let db = sqnr_db(&a.data.to_f64(), &b.data.to_f64());
            // These softmax classifiers reach 48–50 dB in plain int8 (docs/ACCURACY.md);
            // a broken rewrite (a wrong channel axis) falls far below.
            assert!(
                db >= 40.0,
                "{name}: output {k}: {db:.1} dB with --cle on LiteRT"
            );
        }
    }
}

#[test]
fn cle_is_an_int8_int16x8_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tflite");
    let (code, _, err) = quantize_run(
        &testdata("cnn_digits.tflite"),
        &out,
        &["--mode", "weight-int8", "--cle"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cle"), "{err}");
    // Ranges of the original model do not fit the equalized one.
    let ranges = dir.path().join("r.json");
    std::fs::write(&ranges, r#"{"observer":"minmax","samples":1,"tensors":[]}"#).unwrap();
    let (code, _, err) = quantize_run(
        &testdata("cnn_digits.tflite"),
        &out,
        &[
            "--mode",
            "int8",
            "--cle",
            "--ranges",
            ranges.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--cle") && err.contains("--calibration"),
        "{err}"
    );
}
