//! Full-integer recurrent models (#13): the Keras LSTM classifier (`lstm_seq`) and the
//! stacked LSTM → GRU classifier (`lstm_gru`, the GRU lowered to a WHILE loop) in int8:
//! LiteRT runs LiteRT's integer LSTM kernel on them, their constants are integer, their
//! accuracy matches the float model's, and the reference interpreter's integer LSTM
//! kernel gives LiteRT's outputs.

use tflquant::data::read_npy;
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;

use crate::common::*;
use crate::interp::run_ours;

/// Output SQNR floors on LiteRT (int8 vs float, `lstm_seq.test.npy`). Measured 48.9 dB
/// (lstm_seq) and 41.7 dB (lstm_gru) when written; each floor is the measurement less
/// 6 dB, one bit of int8 resolution, so a regression of a whole bit fails.
const FLOORS: [(&str, f64); 2] = [("lstm_seq.tflite", 42.9), ("lstm_gru.tflite", 35.7)];

/// The integer LSTM of a quantized model: (subgraph 0) operator index.
fn lstm(m: &Model) -> usize {
    m.subgraphs[0]
        .operators
        .iter()
        .position(|o| m.builtin(o) == Op::UnidirectionalSequenceLstm)
        .expect("an LSTM")
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}

/// Share of correct top-1 predictions over `labels`.
fn accuracy(out: &[f64], labels: &[f64]) -> f64 {
    let classes = out.len() / labels.len();
    let right = labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| argmax(&out[i * classes..(i + 1) * classes]) == l as usize)
        .count();
    right as f64 / labels.len() as f64
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

#[test]
fn int8_recurrent_models_are_integer_accurate_and_run_like_litert() {
    let dir = tempfile::tempdir().unwrap();
    let labels = read_npy(testdata("digits.test_labels.npy"))
        .unwrap()
        .data
        .to_f64();
    for (file, floor) in FLOORS {
        let input = testdata(file);
        let out = dir.path().join(file);
        let report = dir.path().join(format!("{file}.json"));
        let (code, _, err) = quantize_run(
            &input,
            &out,
            &[
                "--mode",
                "int8",
                "--calibration",
                testdata("lstm_seq.calib.npy").to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{file}: {err}");
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let lstm_fate = r["ops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == "UNIDIRECTIONAL_SEQUENCE_LSTM")
            .expect("LSTM in the report");
        assert_eq!(lstm_fate["fate"], "quantized", "{file}: {lstm_fate}");
        // >= 90% of the constant bytes integer.
        let after = r["weight_bytes_by_dtype"]["after"].as_object().unwrap();
        let total: f64 = after.values().map(|v| v.as_f64().unwrap()).sum();
        let int: f64 = after
            .iter()
            .filter(|(k, _)| k.starts_with("INT"))
            .map(|(_, v)| v.as_f64().unwrap())
            .sum();
        assert!(int / total >= 0.9, "{file}: {after:?}");

        let qm = tflquant::read_path(&out).unwrap();
        check_structure(&qm, file);

        let fm = tflquant::read_path(&input).unwrap();
        let inputs = load_samples("lstm_seq.test.npy", &fm, labels.len());
        let f = litert_run(&input, &inputs).unwrap_or_else(|e| panic!("{file}: {e}"));
        let q = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{file} int8: {e}"));
        let (f, q) = (f[0].data.to_f64(), q[0].data.to_f64());
        let s = sqnr_db(&f, &q); // panics on a NaN
        assert!(s >= floor, "{file}: SQNR {s:.1} dB < {floor} dB");
        let (af, aq) = (accuracy(&f, &labels), accuracy(&q, &labels));
        assert!(
            aq >= af - 0.01,
            "{file}: int8 accuracy {aq:.3} vs float {af:.3}"
        );

        // The reference interpreter runs the integer LSTM bit-exactly: outputs within one
        // step of the int8 output (1/256, the softmax's), i.e. equal integers.
        let ours = run_ours(&qm, &inputs);
        let mut worst = 0f64;
        for (i, (outs, _)) in ours.iter().enumerate() {
            let o = outs[0].to_array().data.to_f64();
            let n = o.len();
            for (a, b) in o.iter().zip(&q[i * n..(i + 1) * n]) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(
            worst <= 1.0 / 256.0 + 1e-6,
            "{file}: interpreter vs LiteRT differ by {worst}"
        );
    }
}

/// 16x8 has no integer LSTM in tflquant: the LSTM stays float and the reason says so.
#[test]
fn int16x8_keeps_the_lstm_float_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lstm_seq.16x8.tflite");
    let (code, stdout, err) = quantize_run(
        &testdata("lstm_seq.tflite"),
        &out,
        &[
            "--mode",
            "int16x8",
            "--calibration",
            testdata("lstm_seq.calib.npy").to_str().unwrap(),
            "--dump-plan",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let plan = format!("{stdout}{err}");
    let line = plan
        .lines()
        .find(|l| l.contains("UNIDIRECTIONAL_SEQUENCE_LSTM"))
        .expect("LSTM in the plan");
    assert!(
        line.contains("float") && line.contains("8x8_16") && line.contains("16x8"),
        "{line}"
    );
    let m = tflquant::read_path(&out).unwrap();
    let op = &m.subgraphs[0].operators[lstm(&m)];
    let x = &m.subgraphs[0].tensors[op.inputs[0] as usize];
    assert_eq!(x.dtype, TensorType::Float32);
    let inputs = load_samples("lstm_seq.test.npy", &m, 4);
    let q = litert_run(&out, &inputs).unwrap();
    assert!(q[0].data.to_f64().iter().all(|v| v.is_finite()));
}
