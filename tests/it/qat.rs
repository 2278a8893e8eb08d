//! Quantization-aware-trained models (`--mode qat`): the trained parameters of the float
//! QAT export's QUANTIZE→DEQUANTIZE pairs become a real integer model, checked against
//! TF's own integer conversion of the same QAT model: same scales and zero points, same
//! accuracy on the digits test split, on LiteRT. Plus the TF-converter parity of the
//! calibrated int8/int16x8 modes.

use std::path::{Path, PathBuf};

use tflquant::data::{self, ArrayData};
use tflquant::fb::{self, BuiltinOperator as Op, TensorType};
use tflquant::ir::{Model, Operator, QuantParams};

use crate::common::*;

/// Top-1 accuracy of a classifier on LiteRT over the QAT digits test split.
fn accuracy(model_path: &Path) -> f64 {
    let model = tflquant::read_path(model_path).unwrap();
    let x = data::read_npy(testdata("digits_qat.test.npy")).unwrap();
    let labels = data::read_npy(testdata("digits_qat.test_labels.npy"))
        .unwrap()
        .data
        .to_f64();
    let inputs = quantize_for_integer_inputs(&model, vec![x]);
    let out = litert_run(model_path, &inputs).unwrap();
    let scores = out[0].data.to_f64();
    let classes = scores.len() / labels.len();
    let correct = labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| {
            let row = &scores[i * classes..(i + 1) * classes];
            let best = (0..classes).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            best == l as usize
        })
        .count();
    correct as f64 / labels.len() as f64
}

/// The operators that compute (not QUANTIZE/DEQUANTIZE), in graph order.
fn compute_ops(m: &Model) -> Vec<&Operator> {
    m.subgraphs[0]
        .operators
        .iter()
        .filter(|o| !matches!(m.builtin(o), Op::Quantize | Op::Dequantize))
        .collect()
}

fn params_close(a: &QuantParams, b: &QuantParams, what: &str) {
    assert_eq!(a.scale.len(), b.scale.len(), "{what}: number of scales");
    for (x, y) in a.scale.iter().zip(&b.scale) {
        assert!(
            (x - y).abs() <= 1e-6 * y.abs(),
            "{what}: scale {x} vs TF {y}"
        );
    }
    assert_eq!(a.zero_point, b.zero_point, "{what}: zero points");
}

/// Compares, op by op, the parameters of every operator's output and weight/bias
/// inputs in our model and TF's (same operator sequence).
fn assert_same_parameters(ours: &Model, tf: &Model) {
    let (a, b) = (compute_ops(ours), compute_ops(tf));
    let kinds = |m: &Model, ops: &[&Operator]| ops.iter().map(|o| m.builtin(o)).collect::<Vec<_>>();
    assert_eq!(
        kinds(ours, &a),
        kinds(tf, &b),
        "different operator sequences"
    );
    let (sa, sb) = (&ours.subgraphs[0], &tf.subgraphs[0]);
    let mut compared = 0;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let kind = ours.builtin(x);
        let lists = [
            ("output", &x.outputs, &y.outputs),
            ("input", &x.inputs, &y.inputs),
        ];
        for (what, xs, ys) in lists {
            for (k, (&tx, &ty)) in xs.iter().zip(ys.iter()).enumerate() {
                let (Ok(tx), Ok(ty)) = (usize::try_from(tx), usize::try_from(ty)) else {
                    continue;
                };
                let (ta, tb) = (&sa.tensors[tx], &sb.tensors[ty]);
                match (ta.quantized(), tb.quantized()) {
                    (Some(p), Some(q)) => {
                        assert_eq!(ta.dtype, tb.dtype, "op {i} {kind:?} {what} {k}: dtype");
                        params_close(p, q, &format!("op {i} {kind:?} {what} {k} {:?}", ta.name));
                        compared += 1;
                    }
                    (None, None) => {}
                    (p, q) => panic!(
                        "op {i} {kind:?} {what} {k}: quantized {} vs TF {}",
                        p.is_some(),
                        q.is_some()
                    ),
                }
            }
        }
    }
    assert!(compared >= 15, "only {compared} tensors compared");
}

#[test]
fn qat_model_becomes_tfs_integer_model_without_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let float = testdata("qat_digits.float.tflite");
    for (iface, tf_name) in [
        ("float", "qat_digits.tf_int8.tflite"),
        ("int8", "qat_digits.tf_int8_int8io.tflite"),
    ] {
        let out = dir.path().join(format!("qat.{iface}.tflite"));
        quantize_cli(
            &float,
            &out,
            &["--mode", "qat", "--interface", iface, "--strict"],
        )
        .unwrap();
        let (ours, tf) = (
            tflquant::read_path(&out).unwrap(),
            tflquant::read_path(testdata(tf_name)).unwrap(),
        );
        // Fully integer, like TF's: no fake-quant pair left, only interface conversions.
        let ops = |m: &Model| {
            m.subgraphs[0]
                .operators
                .iter()
                .map(|o| m.builtin(o))
                .collect::<Vec<_>>()
        };
        let count = |m: &Model, k: Op| ops(m).iter().filter(|&&o| o == k).count();
        for k in [Op::Quantize, Op::Dequantize] {
            assert!(
                count(&ours, k) <= count(&tf, k),
                "--interface {iface}: more {k:?} than TF"
            );
        }
        assert_same_parameters(&ours, &tf);
        let (a, b) = (accuracy(&out), accuracy(&testdata(tf_name)));
        assert!(
            (a - b).abs() <= 0.005,
            "--interface {iface}: accuracy {a:.4} vs TF {b:.4}"
        );
    }
}

/// Removes the QUANTIZE→DEQUANTIZE pair after the first FULLY_CONNECTED, so that its
/// output has no trained range (and no same-scale neighbour), returning the new model.
fn without_fc1_output_pair(m: &Model) -> (Model, String) {
    let mut m = m.clone();
    let sg = &m.subgraphs[0];
    let fc = sg
        .operators
        .iter()
        .position(|o| m.builtin(o) == Op::FullyConnected)
        .unwrap();
    let y = sg.operators[fc].outputs[0];
    let name = sg.tensors[y as usize].name.clone();
    let q = sg
        .operators
        .iter()
        .position(|o| m.builtin(o) == Op::Quantize && o.inputs[0] == y)
        .unwrap();
    let qt = sg.operators[q].outputs[0];
    let d = sg
        .operators
        .iter()
        .position(|o| m.builtin(o) == Op::Dequantize && o.inputs[0] == qt)
        .unwrap();
    let dt = sg.operators[d].outputs[0];
    let sg = &mut m.subgraphs[0];
    for op in &mut sg.operators {
        for t in &mut op.inputs {
            if *t == dt {
                *t = y;
            }
        }
    }
    let (first, second) = (q.min(d), q.max(d));
    sg.operators.remove(second);
    sg.operators.remove(first);
    (m, name)
}

#[test]
fn tensors_without_a_trained_range_need_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let (m, fc1) =
        without_fc1_output_pair(&tflquant::read_path(testdata("qat_digits.float.tflite")).unwrap());
    let float = dir.path().join("qat_partial.tflite");
    tflquant::writer::write_path(&m, &float, &Default::default()).unwrap();
    let out = dir.path().join("q.tflite");
    let err = quantize_cli(&float, &out, &["--mode", "qat"]).unwrap_err();
    assert!(
        err.contains("--calibration") && err.contains("FULLY_CONNECTED"),
        "{err}"
    );
    assert!(!out.exists());
    // With calibration data the uncovered tensor is calibrated; the rest stays trained.
    let calib = testdata("digits_qat.calib.npy");
    quantize_cli(
        &float,
        &out,
        &[
            "--mode",
            "qat",
            "--calibration",
            calib.to_str().unwrap(),
            "--strict",
        ],
    )
    .unwrap();
    let q = tflquant::read_path(&out).unwrap();
    let t = q.subgraphs[0]
        .tensors
        .iter()
        .find(|t| t.name == fc1)
        .expect("fc1 output");
    assert_eq!(t.dtype, TensorType::Int8);
    let a = accuracy(&out);
    let b = accuracy(&testdata("qat_digits.tf_int8.tflite"));
    assert!(a >= b - 0.02, "accuracy {a:.4} vs TF {b:.4}");
}

/// The same trained points written as FAKE_QUANT operators (min/max options) give the
/// same integer model as the QUANTIZE→DEQUANTIZE form.
#[test]
fn fake_quant_operators_are_read_like_quantize_dequantize_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let src = tflquant::read_path(testdata("qat_digits.float.tflite")).unwrap();
    let mut m = src.clone();
    let fq = m.ensure_opcode(Op::FakeQuant, 1);
    let mut replaced = 0;
    let mut i = 0;
    while i + 1 < m.subgraphs[0].operators.len() {
        let sg = &m.subgraphs[0];
        let (q, d) = (&sg.operators[i], &sg.operators[i + 1]);
        let input = &sg.tensors[q.inputs[0] as usize];
        let is_pair = src.builtin(q) == Op::Quantize
            && src.builtin(d) == Op::Dequantize
            && d.inputs[0] == q.outputs[0]
            && !m.is_constant(input)
            && input.dtype == TensorType::Float32;
        if !is_pair {
            i += 1;
            continue;
        }
        let p = sg.tensors[q.outputs[0] as usize]
            .quantized()
            .unwrap()
            .clone();
        let (s, z) = (p.scale[0], p.zero_point[0] as f32 - 128.0);
        let mut op = Operator::new(fq, vec![q.inputs[0]], vec![d.outputs[0]]);
        op.builtin_options = Some(fb::BuiltinOptions::FakeQuantOptions(Box::new(
            fb::FakeQuantOptions {
                min: (-128.0 - z) * s,
                max: (127.0 - z) * s,
                num_bits: 8,
                narrow_range: false,
            },
        )));
        m.subgraphs[0].operators.splice(i..i + 2, [op]);
        replaced += 1;
        i += 1;
    }
    assert_eq!(replaced, 6, "activation pairs replaced");
    let fq_path = dir.path().join("qat_fake_quant.tflite");
    tflquant::writer::write_path(&m, &fq_path, &Default::default()).unwrap();
    let (a, b) = (dir.path().join("a.tflite"), dir.path().join("b.tflite"));
    quantize_cli(&testdata("qat_digits.float.tflite"), &a, &["--mode", "qat"]).unwrap();
    quantize_cli(&fq_path, &b, &["--mode", "qat"]).unwrap();
    let (ma, mb) = (
        tflquant::read_path(&a).unwrap(),
        tflquant::read_path(&b).unwrap(),
    );
    assert_same_parameters(&mb, &ma);
}

#[test]
fn qat_mode_on_a_plain_float_model_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.tflite");
    let err = quantize_cli(&testdata("cnn_digits.tflite"), &out, &["--mode", "qat"]).unwrap_err();
    assert!(
        err.contains("no QUANTIZE") && err.contains("--mode int8 --calibration"),
        "{err}"
    );
}

/// TF converter references of the calibrated modes: tflquant's SQNR is at least TF's −
/// 0.5 dB on the held-out data, with no more QUANTIZE/DEQUANTIZE operators.
#[test]
fn int8_and_int16x8_are_at_least_as_good_as_tfs_converter() {
    let dir = tempfile::tempdir().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, entry) in manifest["models"].as_object().unwrap() {
        for (key, mode) in [("tf_int8", "int8"), ("tf_int16x8", "int16x8")] {
            let Some(reference) = entry[key]["file"].as_str() else {
                continue;
            };
            if entry[key]["runs_in_litert"] == false {
                // TF's converter wrote a model LiteRT refuses (testdata/README.md); ours
                // of the same network must run.
                let calib = testdata(entry["calib"].as_str().unwrap());
                let out = dir.path().join(format!("{name}.{mode}.ours.tflite"));
                let args = ["--mode", mode, "--calibration", calib.to_str().unwrap()];
                quantize_cli(&testdata(name), &out, &args).unwrap();
                let m = tflquant::read_path(&out).unwrap();
                litert_run(&out, &sample_inputs(&testdata(name), &m, 2)).unwrap_or_else(|e| {
                    panic!("{name} {mode}: ours fails where TF's is broken: {e}")
                });
                continue;
            }
            let float = testdata(name);
            let calib = entry["calib"].as_str().unwrap();
            let out: PathBuf = dir.path().join(format!("{name}.{mode}.tflite"));
            quantize_cli(
                &float,
                &out,
                &[
                    "--mode",
                    mode,
                    "--calibration",
                    testdata(calib).to_str().unwrap(),
                ],
            )
            .unwrap_or_else(|e| panic!("{name} {mode}: {e}"));
            let fm = tflquant::read_path(&float).unwrap();
            let inputs = sample_inputs(&float, &fm, 32);
            let f_out = litert_run(&float, &inputs).unwrap();
            let sqnr_of = |path: &Path| -> f64 {
                let m = tflquant::read_path(path).unwrap();
                let o = litert_run(path, &quantize_for_integer_inputs(&m, inputs.clone())).unwrap();
                f_out
                    .iter()
                    .zip(&o)
                    .filter(|(a, _)| matches!(a.data, ArrayData::F32(_)))
                    .map(|(a, b)| sqnr_db(&a.data.to_f64(), &b.data.to_f64()))
                    .fold(f64::INFINITY, f64::min)
            };
            let (ours, theirs) = (sqnr_of(&out), sqnr_of(&testdata(reference)));
            eprintln!("{name} {mode}: tflquant {ours:.2} dB, TF {theirs:.2} dB");
            assert!(
                ours >= theirs - 0.5,
                "{name} {mode}: SQNR {ours:.2} dB vs TF {theirs:.2} dB"
            );
            let (om, tm) = (
                tflquant::read_path(&out).unwrap(),
                tflquant::read_path(testdata(reference)).unwrap(),
            );
            // Conversions inside the graph (not at its inputs and outputs) are what a
            // better plan avoids; at the boundary each integer output needs one, so an
            // operator we quantize where TF kept float may add one there.
            let (oi, ob) = conversions(&om);
            let (ti, tb) = (
                conversions(&tm),
                float_compute_ops(&tm).saturating_sub(float_compute_ops(&om)),
            );
            assert!(
                oi <= ti.0,
                "{name} {mode}: {oi} QUANTIZE/DEQUANTIZE inside the graph vs TF's {}",
                ti.0
            );
            assert!(
                ob <= ti.1 + tb,
                "{name} {mode}: {ob} at the boundary vs TF's {} (+{tb} ops we quantize and TF does not)",
                ti.1
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} TF references found");
}

/// (QUANTIZE/DEQUANTIZE operators inside the graph, those reading a model input or
/// writing a model output).
fn conversions(m: &Model) -> (usize, usize) {
    let sg = &m.subgraphs[0];
    let mut inside = 0;
    let mut boundary = 0;
    // A model input quantized for readers of two widths (int8 operators and int8's 16x8
    // tails for the float side) counts once: one conversion per input and width is the
    // price of the wider outputs, not a float island.
    let mut inputs_seen = std::collections::HashSet::new();
    for op in &sg.operators {
        if !matches!(m.builtin(op), Op::Quantize | Op::Dequantize) {
            continue;
        }
        // A change of width (int8 → int16 before a 16x8 tail, int16 → int8 for an int8
        // reader: int8's wider outputs for the float side) is no float island.
        let (x, y) = (
            sg.tensors[op.inputs[0] as usize].dtype,
            sg.tensors[op.outputs[0] as usize].dtype,
        );
        if x != TensorType::Float32 && y != TensorType::Float32 && x != y {
            continue;
        }
        let from_input = sg.inputs.contains(&op.inputs[0]);
        if from_input && !inputs_seen.insert(op.inputs[0]) {
            continue;
        }
        let at_boundary = from_input || sg.outputs.contains(&op.outputs[0]);
        if at_boundary {
            boundary += 1
        } else {
            inside += 1
        }
    }
    (inside, boundary)
}

/// Operators (other than QUANTIZE/DEQUANTIZE) that compute on float32 tensors.
fn float_compute_ops(m: &Model) -> usize {
    let sg = &m.subgraphs[0];
    sg.operators
        .iter()
        .filter(|op| !matches!(m.builtin(op), Op::Quantize | Op::Dequantize))
        .filter(|op| {
            op.outputs
                .iter()
                .any(|&t| t >= 0 && sg.tensors[t as usize].dtype == TensorType::Float32)
        })
        .count()
}

/// A QAT export given to `--mode int8` is detected (announced in the summary) and gets
/// the trained parameters, like `--mode qat`; `--mode int16x8` folds its fake-quant
/// pairs and calibrates. Both are integer and keep the QAT accuracy.
#[test]
fn qat_models_are_detected_in_the_calibrated_modes() {
    let dir = tempfile::tempdir().unwrap();
    let float = testdata("qat_digits.float.tflite");
    let calib = testdata("digits_qat.calib.npy");
    let out8 = dir.path().join("int8.tflite");
    let (code, _, err) = run_cli(&[
        "quantize".as_ref(),
        float.as_os_str(),
        "-o".as_ref(),
        out8.as_os_str(),
        "--mode".as_ref(),
        "int8".as_ref(),
        "--calibration".as_ref(),
        calib.as_os_str(),
        "--strict".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("QAT model detected"), "{err}");
    let qat = dir.path().join("qat.tflite");
    quantize_cli(&float, &qat, &["--mode", "qat"]).unwrap();
    assert_same_parameters(
        &tflquant::read_path(&out8).unwrap(),
        &tflquant::read_path(&qat).unwrap(),
    );
    let out16 = dir.path().join("int16.tflite");
    quantize_cli(
        &float,
        &out16,
        &[
            "--mode",
            "int16x8",
            "--calibration",
            calib.to_str().unwrap(),
            "--strict",
        ],
    )
    .unwrap();
    let tf = accuracy(&testdata("qat_digits.tf_int8.tflite"));
    for p in [&out8, &out16] {
        let a = accuracy(p);
        assert!(
            a >= tf - 0.005,
            "{}: accuracy {a:.4} vs TF's int8 {tf:.4}",
            p.display()
        );
    }
}
