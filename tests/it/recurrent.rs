//! Full-integer recurrent models (#13): the Keras LSTM classifier (`lstm_seq`) and the
//! stacked LSTM → GRU classifier (`lstm_gru`, the GRU lowered to a WHILE loop) in int8:
//! LiteRT runs LiteRT's integer LSTM kernel on them, their constants are integer, their
//! accuracy matches the float model's, and the reference interpreter's integer LSTM
//! kernel gives LiteRT's outputs.

use std::collections::HashMap;
use tflquant::data::read_npy;
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;

use crate::common::noise::check_floor;
use crate::common::*;
use crate::interp::run_ours;

/// The models: (file, data stem, labels). `*_digits` were trained on the digits_qat
/// split (360 held-out digits); `lstm_seq`/`lstm_gru` on the base split (32 held out).
const MODELS: [(&str, &str, &str); 5] = [
    ("lstm_seq.tflite", "lstm_seq", "digits.test_labels.npy"),
    ("lstm_gru.tflite", "lstm_seq", "digits.test_labels.npy"),
    (
        "lstm_digits.tflite",
        "digits_qat",
        "digits_qat.test_labels.npy",
    ),
    (
        "gru_digits.tflite",
        "digits_qat",
        "digits_qat.test_labels.npy",
    ),
    (
        "lstm_gru_digits.tflite",
        "digits_qat",
        "digits_qat.test_labels.npy",
    ),
];

/// The WHILE of a quantized model (subgraph 0) carries every float32 position as an
/// integer of the run's width with one set of parameters across the outer input and
/// output, the cond inputs and the body inputs and outputs, and its body converts
/// nothing (no QUANTIZE/DEQUANTIZE per iteration). Returns the carried positions.
pub fn check_integer_loop(m: &Model, file: &str, dtype: TensorType) -> Vec<usize> {
    let sg = &m.subgraphs[0];
    let op = sg
        .operators
        .iter()
        .find(|o| m.builtin(o) == Op::While)
        .expect("a WHILE");
    let Some(tflquant::fb::BuiltinOptions::WhileOptions(o)) = &op.builtin_options else {
        panic!("{file}: WHILE options");
    };
    let (cond, body) = (
        &m.subgraphs[o.cond_subgraph_index as usize],
        &m.subgraphs[o.body_subgraph_index as usize],
    );
    let mut carried = Vec::new();
    for k in 0..op.inputs.len() {
        let members = [
            &sg.tensors[op.inputs[k] as usize],
            &sg.tensors[op.outputs[k] as usize],
            &cond.tensors[cond.inputs[k] as usize],
            &body.tensors[body.inputs[k] as usize],
            &body.tensors[body.outputs[k] as usize],
        ];
        if members[0].dtype == TensorType::Int32 {
            continue;
        }
        for t in members {
            assert_eq!(t.dtype, dtype, "{file}: carried {k}: {:?}", t.name);
            assert!(t.quant.is_some(), "{file}: carried {k}: {:?}", t.name);
            assert_eq!(
                t.quant, members[0].quant,
                "{file}: carried {k}: {:?}",
                t.name
            );
        }
        carried.push(k);
    }
    for o in &body.operators {
        let b = m.builtin(o);
        assert!(
            b != Op::Quantize && b != Op::Dequantize,
            "{file}: the body converts ({b:?})"
        );
    }
    carried
}

/// The integer LSTM of a quantized model: (subgraph 0) operator index.
fn lstm(m: &Model) -> usize {
    m.subgraphs[0]
        .operators
        .iter()
        .position(|o| m.builtin(o) == Op::UnidirectionalSequenceLstm)
        .expect("an LSTM")
}

/// The LSTM carries what LiteRT's 8x8_16 kernel reads: int8 input/output/state, int8
/// per-tensor weights, int32 biases at `s_in × s_w`, an int16 cell state with a
/// power-of-two scale of at most 2^-9, five intermediates (gates at 2^-12, hidden with
/// the output's parameters).
fn check_structure(m: &Model, file: &str) {
    let sg = &m.subgraphs[0];
    let op = &sg.operators[lstm(m)];
    let t = |pos: usize| &sg.tensors[op.inputs[pos] as usize];
    let q = |pos: usize| t(pos).quant.clone().expect("quantized");
    let out = &sg.tensors[op.outputs[0] as usize];
    assert_eq!(t(0).dtype, TensorType::Int8, "{file}: input");
    assert_eq!(out.dtype, TensorType::Int8, "{file}: output");
    for pos in 1..=8 {
        assert_eq!(t(pos).dtype, TensorType::Int8, "{file}: weight {pos}");
        assert_eq!(q(pos).scale.len(), 1, "{file}: weight {pos} per tensor");
        assert_eq!(q(pos).zero_point, vec![0], "{file}: weight {pos} symmetric");
    }
    for (k, pos) in (12..=15).enumerate() {
        assert_eq!(t(pos).dtype, TensorType::Int32, "{file}: bias {pos}");
        let want = q(0).scale[0] * q(1 + k).scale[0];
        assert!(
            (q(pos).scale[0] - want).abs() <= want * 1e-6,
            "{file}: bias {pos} scale"
        );
    }
    assert!(t(18).is_variable && t(19).is_variable, "{file}: states");
    assert_eq!(t(18).dtype, TensorType::Int8);
    assert_eq!(
        t(18).quant,
        out.quant,
        "{file}: output state = output params"
    );
    assert_eq!(t(19).dtype, TensorType::Int16);
    let cs = q(19).scale[0];
    let k = cs.log2().round() as i32;
    assert!(
        2f32.powi(k) == cs && (-15..=-9).contains(&k),
        "{file}: cell scale {cs}"
    );
    let inter = op.intermediates.clone().expect("intermediates");
    assert_eq!(inter.len(), 5, "{file}");
    for &i in &inter[..4] {
        let it = &sg.tensors[i as usize];
        assert_eq!(it.dtype, TensorType::Int16);
        assert_eq!(it.quant.as_ref().unwrap().scale, vec![2f32.powi(-12)]);
    }
    assert_eq!(
        sg.tensors[inter[4] as usize].quant, out.quant,
        "{file}: hidden"
    );
}

/// The fallback LSTM: float input, int8 per-tensor weights, asymmetric input quantization.
fn check_hybrid(m: &Model, file: &str) {
    let sg = &m.subgraphs[0];
    let op = &sg.operators[lstm(m)];
    let t = |pos: usize| &sg.tensors[op.inputs[pos] as usize];
    assert_eq!(t(0).dtype, TensorType::Float32, "{file}: input");
    for pos in 1..=8 {
        assert_eq!(t(pos).dtype, TensorType::Int8, "{file}: weight {pos}");
        assert_eq!(t(pos).quant.as_ref().unwrap().scale.len(), 1, "{file}");
    }
    for pos in 12..=15 {
        assert_eq!(t(pos).dtype, TensorType::Float32, "{file}: bias {pos}");
    }
    let Some(tflquant::fb::BuiltinOptions::UnidirectionalSequenceLstmOptions(o)) =
        &op.builtin_options
    else {
        panic!("{file}: options");
    };
    assert!(o.asymmetric_quantize_inputs, "{file}");
}

#[test]
fn recurrent_models_are_integer_accurate_and_run_like_litert() {
    let dir = tempfile::tempdir().unwrap();
    for (file, stem, labels) in MODELS {
        for mode in ["int8", "int16x8"] {
            check_model(dir.path(), file, stem, labels, mode);
        }
    }
}

fn check_model(dir: &std::path::Path, file: &str, stem: &str, labels: &str, mode: &str) {
    let labels = read_npy(testdata(labels)).unwrap().data.to_f64();
    let input = testdata(file);
    let out = dir.join(format!("{mode}.{file}"));
    let report = dir.join(format!("{mode}.{file}.json"));
    let (code, _, err) = quantize_run(
        &input,
        &out,
        &[
            "--mode",
            mode,
            "--calibration",
            testdata(&format!("{stem}.calib.npy")).to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{file}: {err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let lstm_fate = r["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "UNIDIRECTIONAL_SEQUENCE_LSTM");
    if let Some(lstm_fate) = lstm_fate {
        if mode == "int8" {
            assert_eq!(lstm_fate["fate"], "quantized", "{file}: {lstm_fate}");
        } else {
            // The fallback: float activations, int8 weights for LiteRT's hybrid kernel.
            let why = lstm_fate["reason"].as_str().unwrap_or_default();
            assert!(
                why.contains(
                    "LiteRT has no UNIDIRECTIONAL_SEQUENCE_LSTM kernel with int16 activations"
                ) && why.contains("hybrid"),
                "{why}"
            );
        }
    }
    // >= 90% of the constant bytes integer.
    let after = r["weight_bytes_by_dtype"]["after"].as_object().unwrap();
    let total: f64 = after.values().map(|v| v.as_f64().unwrap()).sum();
    let int: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("INT"))
        .map(|(_, v)| v.as_f64().unwrap())
        .sum();
    assert!(int / total >= 0.9, "{file} {mode}: {after:?}");

    let qm = tflquant::read_path(&out).unwrap();
    if qm.subgraphs.len() > 1 {
        // The GRU's loop: hidden state, last output and input sequence carried as integers.
        let dtype = if mode == "int8" {
            TensorType::Int8
        } else {
            TensorType::Int16
        };
        assert_eq!(
            check_integer_loop(&qm, file, dtype),
            vec![2, 3, 4],
            "{file}"
        );
        let w = r["ops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == "WHILE")
            .expect("WHILE fate");
        let why = w["reason"].as_str().unwrap_or_default();
        let ty = if mode == "int8" { "INT8" } else { "INT16" };
        assert!(
            why.contains(&format!("carried tensors [2, 3, 4] cross it as {ty}")),
            "{why}"
        );
    }
    if lstm_fate.is_some() {
        if mode == "int8" {
            check_structure(&qm, file);
        } else {
            check_hybrid(&qm, file);
        }
    }

    let fm = tflquant::read_path(&input).unwrap();
    let inputs = load_samples(&format!("{stem}.test.npy"), &fm, labels.len());
    let f = litert_run(&input, &inputs).unwrap_or_else(|e| panic!("{file}: {e}"));
    let q = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{file} int8: {e}"));
    let (f, q) = (f[0].data.to_f64(), q[0].data.to_f64());
    let s = sqnr_db(&f, &q); // panics on a NaN
    check_floor(&format!("{file} {mode}"), &fm, &qm, &inputs, s);
    let (af, aq) = (top1_accuracy(&f, &labels), top1_accuracy(&q, &labels));
    assert!(
        aq >= af - 0.01,
        "{file} {mode}: accuracy {aq:.3} vs float {af:.3}"
    );

    let ours = run_ours(&qm, &inputs);
    if lstm_fate.is_some() {
        check_lstm_output(file, &qm, &out, &inputs, &ours);
    }
    if mode == "int16x8" {
        check_int16_run(file, &ours, &q);
        return;
    }
    // `run` against LiteRT in int8. The interpreter runs the integer LSTM bit-exactly
    // (its output tensor holds LiteRT's integers, checked above) and the int8
    // FULLY_CONNECTED with XNNPACK's float32 requantization, which LiteRT's default
    // interpreter runs (`interp/kernels/int8.rs`); the integer GRU loops and the
    // SOFTMAX (simulated in float, then requantized) give LiteRT's integers on these
    // data too. So the outputs must be LiteRT's: every output of every held-out sample
    // within 1e-6 (int8 outputs are 1/256 apart; 1e-6 only absorbs the printing of the
    // dequantized floats).
    let mut worst = 0f64;
    for (i, (outs, _)) in ours.iter().enumerate() {
        let o = outs[0].to_array().data.to_f64();
        let n = o.len();
        for (a, b) in o.iter().zip(&q[i * n..(i + 1) * n]) {
            assert!(!a.is_nan() && !b.is_nan(), "{file}: NaN in sample {i}");
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("{file} int8: largest |run - LiteRT| {worst:e}");
    assert!(
        worst <= 1e-6,
        "{file}: interpreter vs LiteRT differ by {worst}"
    );
}

/// The LSTM's output tensor from `run` is LiteRT's, bit for bit, on every sample: the
/// integer LSTM's int8 values (int8), the hybrid LSTM's float32 values (int16x8; its
/// per-step quantization, products, Eigen's tanh and sigmoid and the cell update all
/// as LiteRT computes them). LiteRT's tensor comes from its builtin kernels (which run
/// the LSTM with or without the XNNPACK delegate, which does not take it).
fn check_lstm_output(
    file: &str,
    qm: &Model,
    out: &std::path::Path,
    inputs: &[tflquant::data::Array],
    ours: &[(
        Vec<tflquant::interp::Value>,
        HashMap<usize, tflquant::interp::Value>,
    )],
) {
    let t = qm.subgraphs[0].operators[lstm(qm)].outputs[0] as usize;
    let (_, named) = litert_run_all(out, inputs).unwrap_or_else(|e| panic!("{file}: {e}"));
    let theirs = &named
        .iter()
        .find(|(k, _)| *k == format!("t{t}"))
        .expect("LSTM output from LiteRT")
        .1;
    let theirs = theirs.data.to_f64();
    let n = theirs.len() / ours.len();
    for (i, (_, seen)) in ours.iter().enumerate() {
        let mine = seen[&t].to_array().data.to_f64();
        assert_eq!(
            mine,
            theirs[i * n..(i + 1) * n],
            "{file}: LSTM output, sample {i}"
        );
    }
}

/// `run` of an int16x8 model against LiteRT: the int16 kernels (FULLY_CONNECTED, ADD,
/// SUB, MUL, LOGISTIC, TANH, SOFTMAX, requantizing QUANTIZE) and the hybrid LSTM follow
/// LiteRT's arithmetic, the hybrid LSTM's float tanh and sigmoid being Eigen's
/// approximations as LiteRT computes them (`eigen_math.rs`), so every output of every
/// sample is within 1e-4 (about three int16 steps of the softmax's 2^-15); any NaN fails.
/// (With the C library's tanh and sigmoid instead, one sample of `lstm_digits` parted by
/// 1.8e-3 and one of `lstm_gru_digits` by 1.2e-4: a hidden value one ulp from a rounding
/// tie of the next step's int8 quantization.)
fn check_int16_run(
    file: &str,
    ours: &[(
        Vec<tflquant::interp::Value>,
        HashMap<usize, tflquant::interp::Value>,
    )],
    q: &[f64],
) {
    let n = q.len() / ours.len();
    let mut over = Vec::new();
    let mut per_sample = Vec::new();
    for (i, (outs, _)) in ours.iter().enumerate() {
        let o = outs[0].to_array().data.to_f64();
        let worst = o
            .iter()
            .zip(&q[i * n..(i + 1) * n])
            .map(|(a, b)| {
                assert!(!a.is_nan() && !b.is_nan(), "{file}: NaN in sample {i}");
                (a - b).abs()
            })
            .fold(0f64, f64::max);
        per_sample.push(worst);
        if worst > 1e-4 {
            over.push((i, worst));
        }
    }
    let worst = per_sample.iter().fold(0f64, |m, &w| m.max(w));
    eprintln!("{file} int16x8: largest |run - LiteRT| {worst:e}");
    assert!(
        over.is_empty(),
        "{file} int16x8: run vs LiteRT above 1e-4 on {} samples: {over:?}",
        over.len()
    );
}

/// `while_loop` (h = tanh(h W + b) three or four times): in int8 and int16x8 the carried
/// h crosses the WHILE as an integer (int8: the TANH output's fixed 1/128, which covers
/// the initial values to within one step), LiteRT runs it, and `run` gives LiteRT's
/// outputs in both modes (int8: the loop's FULLY_CONNECTED as XNNPACK computes it, the
/// TANH simulated; int16x8: the int16 FULLY_CONNECTED, ADD, TANH and requantization
/// with LiteRT's arithmetic).
#[test]
fn while_loop_carries_integers() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("while_loop.tflite");
    let fm = tflquant::read_path(&input).unwrap();
    let calib = dir.path().join("calib.npy");
    tflquant::data::write_npy(&calib, &synthetic_inputs(&fm, 64, 7)[0]).unwrap();
    let inputs = synthetic_inputs(&fm, 32, 8);
    let f = litert_run(&input, &inputs).unwrap();
    let f = f[0].data.to_f64();
    // (mode, dtype, output step); the SQNR floors derived from the steps (`check_floor`).
    for (mode, dtype, step) in [
        ("int8", TensorType::Int8, 1.0 / 128.0),
        ("int16x8", TensorType::Int16, 1e-4),
    ] {
        let out = dir.path().join(format!("{mode}.tflite"));
        let (code, _, err) = quantize_run(
            &input,
            &out,
            &["--mode", mode, "--calibration", calib.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{mode}: {err}");
        let qm = tflquant::read_path(&out).unwrap();
        assert_eq!(check_integer_loop(&qm, mode, dtype), vec![2], "{mode}");
        let q = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{mode}: {e}"));
        let q = q[0].data.to_f64();
        let s = sqnr_db(&f, &q);
        check_floor(&format!("while_loop {mode}"), &fm, &qm, &inputs, s);
        let ours = run_ours(&qm, &inputs);
        let n = q.len() / ours.len();
        let mut worst = 0f64;
        for (i, (outs, _)) in ours.iter().enumerate() {
            let o = outs[0].to_array().data.to_f64();
            for (a, b) in o.iter().zip(&q[i * n..(i + 1) * n]) {
                assert!(!a.is_nan() && !b.is_nan(), "{mode}: NaN in sample {i}");
                worst = worst.max((a - b).abs());
            }
        }
        // LiteRT's outputs: the loop's FULLY_CONNECTED (int8: XNNPACK's float32
        // requantization; int16x8: int64 bias, double requantization), ADD, TANH and
        // the requantizations run with LiteRT's arithmetic; 1e-6 absorbs the printing of
        // the dequantized floats (`step`, the output step, is far larger).
        assert!(step > 1e-6);
        eprintln!("while_loop {mode}: largest |run - LiteRT| {worst:e}");
        assert!(worst <= 1e-6, "{mode}: run vs LiteRT {worst}");
    }
}
