//! int8 models with 16x8 operators (issue #15, `--int16 REGEX`): which tensors become
//! int16, the QUANTIZE operators on every edge between an int8 and an int16 tensor,
//! same-scale groups with one width, and the written models on LiteRT (XNNPACK and the
//! builtin kernels).

use std::collections::BTreeMap;
use std::path::Path;

use tflquant::data::{Array, ArrayData};
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;

use crate::common::*;

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Quantizes `model` in int8 with `extra` options; returns the written model and report.
fn int8(
    dir: &Path,
    model: &str,
    calib: &str,
    tag: &str,
    extra: &[&str],
) -> (std::path::PathBuf, serde_json::Value) {
    let out = dir.join(format!("{model}.{tag}.tflite"));
    let rep = dir.join(format!("{model}.{tag}.json"));
    let calib = testdata(calib);
    let mut args = vec![
        "--mode",
        "int8",
        "--calibration",
        calib.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    quantize_cli(&testdata(model), &out, &args).unwrap_or_else(|e| panic!("{model} {tag}: {e}"));
    (out.clone(), report(&rep))
}

/// The dtype of an operator's output 0.
fn out_dtype(m: &Model, op: &tflquant::ir::Operator) -> TensorType {
    m.subgraphs[0].tensors[op.outputs[0] as usize].dtype
}

/// QUANTIZE operators by (input type, output type).
fn quantize_edges(m: &Model) -> BTreeMap<(TensorType, TensorType), usize> {
    let sg = &m.subgraphs[0];
    let mut edges = BTreeMap::new();
    for op in &sg.operators {
        if m.builtin(op) == Op::Quantize {
            let a = sg.tensors[op.inputs[0] as usize].dtype;
            *edges.entry((a, out_dtype(m, op))).or_insert(0) += 1;
        }
    }
    edges
}

/// Every operator other than QUANTIZE/DEQUANTIZE reads activations of its own width:
/// integer activation inputs have the type of its integer output.
fn assert_no_mixed_operator(m: &Model) {
    let sg = &m.subgraphs[0];
    for (oi, op) in sg.operators.iter().enumerate() {
        let kind = m.builtin(op);
        // The integer LSTM reads its int16 cell state by design.
        if matches!(
            kind,
            Op::Quantize | Op::Dequantize | Op::UnidirectionalSequenceLstm
        ) {
            continue;
        }
        if op.outputs.is_empty() {
            continue;
        }
        let mut out = out_dtype(m, op);
        if !matches!(out, TensorType::Int8 | TensorType::Int16) {
            continue;
        }
        // An int8 kernel that writes its fixed output in int16 (`Rule::int16_output`:
        // SOFTMAX, where only the float side reads it) has width int8.
        let int16_output =
            tflquant::rules::rule_for(kind).is_some_and(|r| r.int16_output.is_some());
        if int16_output && out == TensorType::Int16 {
            let x = &sg.tensors[op.inputs[0] as usize];
            if x.dtype == TensorType::Int8 {
                out = TensorType::Int8;
            }
        }
        for &t in &op.inputs {
            let Ok(t) = usize::try_from(t) else { continue };
            let x = &sg.tensors[t];
            if m.is_constant(x) || !matches!(x.dtype, TensorType::Int8 | TensorType::Int16) {
                continue;
            }
            assert_eq!(x.dtype, out, "operator {oi} {kind:?} reads {:?}", x.name);
        }
    }
}

/// Per real-valued output: SQNR of `quant` against `float` on LiteRT with XNNPACK and
/// with the builtin kernels (both must run; NaN fails). A model with custom operators
/// runs with XNNPACK twice (the builtin-only resolver does not register them).
fn litert_sqnr(float: &Path, quant: &Path, test: &str, n: usize) -> Vec<f64> {
    let fm = tflquant::read_path(float).unwrap();
    let inputs = load_samples(test, &fm, n);
    let fo = litert_run(float, &inputs).unwrap_or_else(|e| panic!("{float:?}: {e}"));
    let xnn = litert_run(quant, &inputs).unwrap_or_else(|e| panic!("{quant:?} XNNPACK: {e}"));
    let builtin = if has_custom_op(&fm) {
        xnn.clone()
    } else {
        litert_run_builtin(quant, &inputs).unwrap_or_else(|e| panic!("{quant:?} builtin: {e}"))
    };
    let mut v = Vec::new();
    for (k, a) in fo.iter().enumerate() {
        if !matches!(a.data, ArrayData::F32(_)) {
            continue;
        }
        for (which, o) in [("XNNPACK", &xnn), ("builtin", &builtin)] {
            let q = o[k].data.to_f64();
            assert!(
                q.iter().all(|x| !x.is_nan()),
                "{quant:?} output {k}: NaN on {which}"
            );
            v.push(sqnr_db(&a.data.to_f64(), &q));
        }
    }
    v
}

fn tensor_by_name<'a>(m: &'a Model, name: &str) -> &'a tflquant::ir::Tensor {
    m.subgraphs[0]
        .tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name:?}"))
}

#[test]
fn int16_by_type_structure_and_litert() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r) = int8(
        dir.path(),
        "cnn_digits.tflite",
        "cnn_digits.calib.npy",
        "conv16",
        &["--int16", "CONV_2D"],
    );
    // The report: both CONV_2D by the flag, the pools/reshape behind conv2 by their
    // same-scale group, the rest int8.
    let mut widths = Vec::new();
    for o in r["ops"].as_array().unwrap() {
        assert_eq!(o["fate"], "quantized", "{o}");
        widths.push((
            o["op"].as_str().unwrap().to_string(),
            o["width"]["precision"]
                .as_str()
                .unwrap_or("int8")
                .to_string(),
            o["width"]["reason"].as_str().unwrap_or("").to_string(),
        ));
    }
    let want = [
        ("CONV_2D", "int16x8"),
        ("DEPTHWISE_CONV_2D", "int8"),
        ("MAX_POOL_2D", "int8"),
        ("CONV_2D", "int16x8"),
        ("AVERAGE_POOL_2D", "int16x8"),
        ("RESHAPE", "int16x8"),
        ("FULLY_CONNECTED", "int8"),
        ("FULLY_CONNECTED", "int8"),
        ("SOFTMAX", "int8"),
    ];
    let got: Vec<(&str, &str)> = widths
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(widths[0].2, "int16x8 by --int16 CONV_2D");
    assert!(widths[4].2.contains("same-scale group"), "{:?}", widths[4]);

    // The model: int16 outputs (symmetric) where 16x8, int8 elsewhere, int64 biases of
    // the 16x8 convolutions, int32 of the int8 ones.
    let m = tflquant::read_path(&out).unwrap();
    let sg = &m.subgraphs[0];
    let compute: Vec<&tflquant::ir::Operator> = sg
        .operators
        .iter()
        .filter(|op| !matches!(m.builtin(op), Op::Quantize | Op::Dequantize))
        .collect();
    assert_eq!(compute.len(), want.len());
    for (op, (name, width)) in compute.iter().zip(want) {
        let t = &sg.tensors[op.outputs[0] as usize];
        let q = t.quantized().expect("integer output");
        if name == "SOFTMAX" {
            // int8, writing its probabilities for the float output in int16.
            let x = &sg.tensors[op.inputs[0] as usize];
            assert_eq!((x.dtype, t.dtype), (TensorType::Int8, TensorType::Int16));
        } else if width == "int16x8" {
            assert_eq!(t.dtype, TensorType::Int16, "{name}");
            assert_eq!(q.zero_point, [0], "{name}: int16 is symmetric");
        } else {
            assert_eq!(t.dtype, TensorType::Int8, "{name}");
        }
        if matches!(name, "CONV_2D" | "DEPTHWISE_CONV_2D" | "FULLY_CONNECTED") {
            let b = &sg.tensors[op.inputs[2] as usize];
            let want_b = if width == "int16x8" {
                TensorType::Int64
            } else {
                TensorType::Int32
            };
            assert_eq!(b.dtype, want_b, "{name} bias");
            assert_eq!(
                sg.tensors[op.inputs[1] as usize].dtype,
                TensorType::Int8,
                "{name}: weights stay int8"
            );
        }
    }
    // One QUANTIZE per width change: the float input into conv1 (int16), conv1 →
    // depthwise (16→8), max pool → conv2 (8→16), reshape → fc1 (16→8).
    let edges = quantize_edges(&m);
    let want_edges = BTreeMap::from([
        ((TensorType::Float32, TensorType::Int16), 1),
        ((TensorType::Int16, TensorType::Int8), 2),
        ((TensorType::Int8, TensorType::Int16), 1),
    ]);
    assert_eq!(edges, want_edges);
    assert_no_mixed_operator(&m);
    // conv1's int16 output has twice its calibrated range (the 16x8 headroom of an
    // int8 run); the int8 copy the depthwise conv reads has the calibrated range
    // itself, as plain int8 would (within one int8 step at either end).
    let conv1 = &sg.tensors[compute[0].outputs[0] as usize];
    let copy = &sg.tensors[compute[1].inputs[0] as usize];
    assert_eq!(copy.dtype, TensorType::Int8);
    let calibrated = r["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == conv1.name.as_str() && t["kind"] == "activation")
        .unwrap()["range"][1]
        .as_f64()
        .unwrap();
    let q16 = conv1.quantized().unwrap();
    let q8 = copy.quantized().unwrap();
    let hi16 = 32767.0 * q16.scale[0] as f64;
    let hi8 = (127 - q8.zero_point[0]) as f64 * q8.scale[0] as f64;
    assert!(
        (hi16 - 2.0 * calibrated).abs() <= q16.scale[0] as f64 * 2.0,
        "int16 max {hi16}, calibrated {calibrated}"
    );
    assert!(
        (hi8 - calibrated).abs() <= q8.scale[0] as f64,
        "int8 copy max {hi8}, calibrated {calibrated}"
    );

    // LiteRT runs it with and without XNNPACK. Every activation is int8 or finer and
    // the weights are plain int8's, so it keeps plain int8's accuracy bound (the
    // keep-float test's: 40 dB; plain int8 measures 49 dB here).
    for db in litert_sqnr(
        &testdata("cnn_digits.tflite"),
        &out,
        "cnn_digits.test.npy",
        32,
    ) {
        assert!(db > 40.0, "{db} dB");
    }
}

#[test]
fn same_scale_group_takes_int16_and_requantizes_its_int8_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r) = int8(
        dir.path(),
        "cnn_digits.tflite",
        "cnn_digits.calib.npy",
        "reshape16",
        &["--int16", "RESHAPE"],
    );
    let ops = r["ops"].as_array().unwrap();
    let width = |i: usize| ops[i]["width"]["precision"].as_str().unwrap_or("int8");
    // RESHAPE (5) selected; AVERAGE_POOL_2D (4) shares its input's parameters: same
    // group, 16x8 too; conv2 (3) that writes the group's input stays int8.
    assert_eq!(
        (width(3), width(4), width(5)),
        ("int8", "int16x8", "int16x8")
    );
    let m = tflquant::read_path(&out).unwrap();
    let pool = tensor_by_name(&m, "cnn_digits/avgpool/AvgPool");
    let flat = tensor_by_name(&m, "cnn_digits/flatten/Reshape");
    assert_eq!(
        (pool.dtype, flat.dtype),
        (TensorType::Int16, TensorType::Int16)
    );
    assert_eq!(pool.quant, flat.quant, "one group, one set of parameters");
    let conv2 = tensor_by_name(
        &m,
        "cnn_digits/conv2/Relu;cnn_digits/conv2/BiasAdd;cnn_digits/conv2/Conv2D;cnn_digits/conv2/BiasAdd/ReadVariableOp1",
    );
    assert_eq!(conv2.dtype, TensorType::Int8);
    // The pool reads a requantized int16 copy of conv2's output with the group's
    // parameters (AVERAGE_POOL_2D's kernel needs equal input and output parameters).
    let sg = &m.subgraphs[0];
    let pool_op = sg
        .operators
        .iter()
        .find(|op| m.builtin(op) == Op::AveragePool2d)
        .unwrap();
    let pool_in = &sg.tensors[pool_op.inputs[0] as usize];
    assert_eq!(pool_in.dtype, TensorType::Int16);
    assert_eq!(pool_in.quant, pool.quant);
    assert_eq!(
        quantize_edges(&m),
        BTreeMap::from([
            ((TensorType::Float32, TensorType::Int8), 1),
            ((TensorType::Int8, TensorType::Int16), 1),
            ((TensorType::Int16, TensorType::Int8), 1),
        ])
    );
    assert_no_mixed_operator(&m);
    for db in litert_sqnr(
        &testdata("cnn_digits.tflite"),
        &out,
        "cnn_digits.test.npy",
        32,
    ) {
        assert!(db > 40.0, "{db} dB");
    }
}

/// Every activation in 16x8 removes the activations' rounding error (2^8 finer steps)
/// and keeps the same int8 weights: the logits (SOFTMAX's input) can only get closer to
/// the float model's. (At the output itself int8 now writes int16 probabilities rounded
/// exactly, which LiteRT's table-based 16-bit SOFTMAX does not: `acc_int8.rs`.)
#[test]
fn all_int16_is_at_least_as_accurate_as_int8() {
    let dir = tempfile::tempdir().unwrap();
    let float = testdata("mlp_large_fc.tflite");
    let (plain, _) = int8(
        dir.path(),
        "mlp_large_fc.tflite",
        "mlp_large_fc.calib.npy",
        "plain",
        &[],
    );
    let (mixed, r) = int8(
        dir.path(),
        "mlp_large_fc.tflite",
        "mlp_large_fc.calib.npy",
        "all16",
        &["--int16", ".*"],
    );
    for o in r["ops"].as_array().unwrap() {
        assert_eq!(o["width"]["precision"], "int16x8", "{o}");
    }
    let m = tflquant::read_path(&mixed).unwrap();
    assert_eq!(
        quantize_edges(&m),
        BTreeMap::from([((TensorType::Float32, TensorType::Int16), 1)]),
        "no int8 activation left, no requantization"
    );
    let fm = tflquant::read_path(&float).unwrap();
    let inputs = load_samples("mlp_large_fc.test.npy", &fm, 32);
    // The real values of the tensor SOFTMAX reads, on LiteRT with every tensor kept.
    let logits = |path: &Path, inputs: &[Array]| {
        let m = tflquant::read_path(path).unwrap();
        let sg = &m.subgraphs[0];
        let op = sg
            .operators
            .iter()
            .find(|o| m.builtin(o) == Op::Softmax)
            .expect("a SOFTMAX");
        let t = op.inputs[0] as usize;
        let (_, all) = litert_run_all(path, inputs).unwrap();
        let v = all
            .iter()
            .find(|(k, _)| *k == format!("t{t}"))
            .expect("the logits")
            .1
            .data
            .to_f64();
        match sg.tensors[t].quantized() {
            Some(q) => v
                .iter()
                .map(|&x| (x - q.zero_point[0] as f64) * q.scale[0] as f64)
                .collect(),
            None => v,
        }
    };
    let f = logits(&float, &inputs);
    let a = sqnr_db(&f, &logits(&plain, &inputs));
    let b = sqnr_db(&f, &logits(&mixed, &inputs));
    assert!(b >= a, "logits: int8 {a:.2} dB, all 16x8 {b:.2} dB");
}

/// Every testdata model with every other quantized operator in 16x8 (the most int8 ↔
/// int16 edges): it loads and runs on LiteRT with and without XNNPACK, without NaN,
/// every operator reads activations of its own width, and each output stays above the
/// step-derived smoke floor of the integer tests.
#[test]
fn every_model_with_alternating_widths_runs_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    let mut mixed_edges = 0;
    for (name, e) in m["models"].as_object().unwrap() {
        if name.contains(".tf_")
            || name.starts_with("int8_quantized")
            || name.starts_with("qat_")
            || e["runs_in_litert"].as_bool() != Some(true)
            || !e["calib"].is_string()
            || !e["test"].is_string()
        {
            continue;
        }
        let calib = e["calib"].as_str().unwrap();
        let test = e["test"].as_str().unwrap();
        let (_, plain) = int8(dir.path(), name, calib, "plain", &[]);
        let picks: Vec<String> = plain["ops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["subgraph"] == 0 && o["fate"] == "quantized")
            .step_by(2)
            .map(|o| format!("0:{}", o["operator"]))
            .collect();
        if picks.is_empty() {
            continue;
        }
        let mut args = Vec::new();
        for p in &picks {
            args.extend(["--int16", p.as_str()]);
        }
        let (out, _) = int8(dir.path(), name, calib, "alt", &args);
        let qm = tflquant::read_path(&out).unwrap();
        assert_no_mixed_operator(&qm);
        let edges = quantize_edges(&qm);
        mixed_edges += edges
            .get(&(TensorType::Int8, TensorType::Int16))
            .unwrap_or(&0)
            + edges
                .get(&(TensorType::Int16, TensorType::Int8))
                .unwrap_or(&0);
        let float = testdata(name);
        let fm = tflquant::read_path(&float).unwrap();
        let stateful = fm.operator_codes.iter().any(|c| c.builtin == Op::VarHandle);
        if stateful {
            // Streams: LiteRT runs them as one stream (no XNNPACK variant here).
            let inputs = load_samples(test, &fm, 16);
            let (o, _) =
                litert_run_stream(&out, &inputs, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            for a in &o {
                assert!(a.data.to_f64().iter().all(|x| !x.is_nan()), "{name}: NaN");
            }
        } else {
            let fo = litert_run(&float, &load_samples(test, &fm, 16)).unwrap();
            let floors: Vec<f64> = fo
                .iter()
                .filter(|a| matches!(a.data, ArrayData::F32(_)))
                .map(|a| crate::integer::step_floor_db(&a.data.to_f64()))
                .collect();
            let dbs = litert_sqnr(&float, &out, test, 16);
            for (k, db) in dbs.iter().enumerate() {
                let floor = floors[k / 2];
                assert!(
                    *db >= floor,
                    "{name}: output {} ({}) {db:.2} dB < floor {floor:.2} dB",
                    k / 2,
                    if k % 2 == 0 { "XNNPACK" } else { "builtin" }
                );
            }
        }
        checked += 1;
    }
    eprintln!("{checked} models, {mixed_edges} int8<->int16 QUANTIZE edges");
    assert!(checked >= 30, "only {checked} models checked");
    assert!(mixed_edges >= 30, "only {mixed_edges} mixed edges");
}

#[test]
fn operator_without_16x8_kernel_stays_int8_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r) = int8(
        dir.path(),
        "ops_activation.tflite",
        "ops_activation.calib.npy",
        "hs",
        &["--int16", "HARD_SWISH|LOGISTIC"],
    );
    let ops = r["ops"].as_array().unwrap();
    let by = |op: &str| ops.iter().find(|o| o["op"] == op).unwrap().clone();
    assert!(by("HARD_SWISH")["width"].is_null(), "{}", by("HARD_SWISH"));
    assert_eq!(by("LOGISTIC")["width"]["precision"], "int16x8");
    let notes: Vec<&str> = r["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.contains("HARD_SWISH") && n.contains("stays int8"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", r["notes"]);
    // LOGISTIC's fixed 16x8 output parameters (scale 1/32768, zero point 0).
    let m = tflquant::read_path(&out).unwrap();
    let sg = &m.subgraphs[0];
    let lo = sg
        .operators
        .iter()
        .find(|op| m.builtin(op) == Op::Logistic)
        .unwrap();
    let t = &sg.tensors[lo.outputs[0] as usize];
    assert_eq!(t.dtype, TensorType::Int16);
    let q = t.quantized().unwrap();
    assert_eq!((q.scale[0], q.zero_point[0]), (1.0 / 32768.0, 0));
    let _ = litert_sqnr(
        &testdata("ops_activation.tflite"),
        &out,
        "ops_activation.test.npy",
        8,
    );
}

#[test]
fn int16_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let calib = testdata("cnn_digits.calib.npy");
    let c = calib.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--mode", "int8", "--calibration", c, "--int16", "NOT_AN_OP"],
            "--int16 NOT_AN_OP: no operator matches",
        ),
        (
            vec!["--mode", "int8", "--calibration", c, "--int16", "("],
            "neither S:I",
        ),
        (
            vec![
                "--mode",
                "int16x8",
                "--calibration",
                c,
                "--int16",
                "CONV_2D",
            ],
            "applies to --mode int8",
        ),
        (
            vec![
                "--mode",
                "int8",
                "--calibration",
                c,
                "--interface",
                "int8",
                "--int16",
                "CONV_2D",
            ],
            "--int16 needs --interface float",
        ),
        (
            vec!["--mode", "dynamic", "--int16", "CONV_2D"],
            "--int16 applies",
        ),
    ] {
        let (code, _, err) = quantize_run(
            &testdata("cnn_digits.tflite"),
            &dir.path().join("x.tflite"),
            &args,
        );
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `--target-sqnr` raises sensitive operators to 16x8 before float: shared_weights_cnn at
/// 40 dB stays all-integer (no float operator, so no float island), the report and the
/// stderr summary say which operators are 16x8 and why, the search stays within its
/// evaluation bound, and held-out data on LiteRT reach the target.
#[test]
fn target_sqnr_prefers_int16_to_float() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("shared_weights_cnn.tflite");
    let out = dir.path().join("t.tflite");
    let rep = dir.path().join("t.json");
    let calib = testdata("cnn_digits.calib.npy");
    let (code, _, err) = quantize_run(
        &input,
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            calib.to_str().unwrap(),
            "--samples",
            "32",
            "--target-sqnr",
            "40",
            "--report",
            rep.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = report(&rep);
    let mp = &r["mixed_precision"];
    let plan = mp["plan"].as_array().unwrap();
    let count = |p: &str| plan.iter().filter(|o| o["precision"] == p).count();
    assert!(count("int16x8") >= 1, "{plan:?}");
    assert_eq!(count("float"), 0, "{plan:?}");
    for o in plan.iter().filter(|o| o["precision"] == "int16x8") {
        let why = o["reason"].as_str().unwrap();
        assert!(
            why.starts_with("int16x8 by --target-sqnr (sensitivity: own-error SQNR")
                || why.contains("same-scale group"),
            "{o}"
        );
    }
    assert!(
        err.contains(&format!(
            "{} operator(s) int16x8, 0 float",
            count("int16x8")
        )),
        "{err}"
    );
    let n = plan.len() as f64;
    let bound = 1.0 + 2.0 * n.log2().ceil() + 2.0 + 4.0;
    assert!(mp["evaluations"].as_f64().unwrap() <= bound, "{mp}");
    let m = tflquant::read_path(&out).unwrap();
    for op in &m.subgraphs[0].operators {
        if !matches!(m.builtin(op), Op::Quantize | Op::Dequantize) {
            assert_ne!(out_dtype(&m, op), TensorType::Float32, "{op:?}");
        }
    }
    for db in litert_sqnr(&input, &out, "cnn_digits.test.npy", 32) {
        assert!(db >= 40.0, "{db} dB");
    }
}
