//! Default int8 accuracy against TF's converter (issue #15): the planner rules that
//! decide where int8 loses to TF, each checked on LiteRT.

use tflquant::fb::{BuiltinOperator as Op, TensorType};

use crate::common::*;

/// `quantize --mode int8` of `input` into `out` calibrated on the first 32 samples of
/// `cal`, with `extra` flags: (output model, its `--report`, written next to `out`).
fn int8_32(
    input: &std::path::Path,
    cal: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> (tflquant::ir::Model, serde_json::Value) {
    let report = out.with_extension("json");
    let mut args = vec![
        "--mode",
        "int8",
        "--calibration",
        cal.to_str().unwrap(),
        "--samples",
        "32",
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    quantize_cli(input, out, &args).unwrap();
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (tflquant::read_path(out).unwrap(), r)
}

/// `ops_shape` int8 with its first 32 calibration samples: (output model, report).
fn ops_shape_int8(
    dir: &std::path::Path,
    extra: &[&str],
) -> (tflquant::ir::Model, serde_json::Value) {
    let calib = manifest_entry("ops_shape.tflite").unwrap()["calib"]
        .as_str()
        .unwrap()
        .to_string();
    let out = dir.join(format!("ops_shape{}.tflite", extra.join("")));
    int8_32(
        &testdata("ops_shape.tflite"),
        &testdata(&calib),
        &out,
        extra,
    )
}

/// A group of value-moving operators (RESHAPE, TRANSPOSE, TILE, STRIDED_SLICE, GATHER,
/// PAD...) that reads only the float model input and is read only by model outputs
/// stays float: its outputs on LiteRT are the float model's exactly (int8 would round
/// them to 8 bits: ~50 dB). A group that feeds int8 arithmetic stays int8 (UNPACK feeds a
/// SUB), and with `--interface int8` nothing of this applies.
#[test]
fn value_moving_operators_between_float_tensors_stay_float_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let float = tflquant::read_path(testdata("ops_shape.tflite")).unwrap();
    let inputs = sample_inputs(&testdata("ops_shape.tflite"), &float, 16);
    let float_out = litert_run(&testdata("ops_shape.tflite"), &inputs).unwrap();
    let (quant, report) = ops_shape_int8(dir.path(), &[]);
    let moved: Vec<&str> = report["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["fate"] == "float" && f["reason"].as_str().unwrap().contains("only moves values")
        })
        .map(|f| f["op"].as_str().unwrap())
        .collect();
    for op in [
        "TRANSPOSE",
        "TILE",
        "STRIDED_SLICE",
        "RESHAPE",
        "GATHER",
        "PAD",
        "MIRROR_PAD",
    ] {
        assert!(
            moved.contains(&op),
            "{op} not kept float as a value mover: {moved:?}"
        );
    }
    assert!(
        !moved.contains(&"UNPACK"),
        "UNPACK feeds an int8 SUB: {moved:?}"
    );
    let q_out = litert_run(&dir.path().join("ops_shape.tflite"), &inputs).unwrap();
    let sg = &quant.subgraphs[0];
    let producers = sg.producers();
    let (mut exact, mut rounded) = (0, 0);
    for (k, (f, q)) in float_out.iter().zip(&q_out).enumerate() {
        let t = sg.outputs[k] as usize;
        let producer = producers[t].map(|p| quant.builtin(&sg.operators[p]));
        let db = sqnr_db(&f.data.to_f64(), &q.data.to_f64());
        let mover =
            producer.is_some_and(|p| p != Op::Dequantize && tflquant::rules::moves_values(p));
        if mover {
            assert_eq!(
                db,
                f64::INFINITY,
                "output {k} ({producer:?}, float) differs from the float model"
            );
            exact += 1;
        } else {
            // Every other output is int8 arithmetic or int8 data behind a DEQUANTIZE.
            assert_eq!(producer, Some(Op::Dequantize), "output {k}");
            assert!(db.is_finite() && db > 30.0, "output {k}: {db} dB");
            rounded += 1;
        }
    }
    assert!(
        exact >= 14 && rounded >= 6,
        "exact {exact}, rounded {rounded}"
    );
    // UNPACK stays int8 (its group feeds SUB).
    let unpack = sg
        .operators
        .iter()
        .find(|o| quant.builtin(o) == Op::Unpack)
        .unwrap();
    assert_eq!(
        sg.tensors[unpack.inputs[0] as usize].dtype,
        TensorType::Int8
    );

    // Integer interface: the model's own input is int8, nothing stays float.
    let (quant, report) = ops_shape_int8(dir.path(), &["--interface", "int8"]);
    assert!(
        report["ops"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("only moves values"))),
        "--interface int8 kept value movers float"
    );
    let sg = &quant.subgraphs[0];
    let transpose = sg
        .operators
        .iter()
        .find(|o| quant.builtin(o) == Op::Transpose)
        .unwrap();
    assert_eq!(
        sg.tensors[transpose.outputs[0] as usize].dtype,
        TensorType::Int8
    );
}

/// Calibration on few frames of a stream: streaming_kws calibrated on its first 32
/// frames (4 digits; TF's reference used all 512). With the range seen
/// (`--stream-ranges seen`, TF's calibrator) its logits and second conv clip on
/// held-out digits; the default extrapolates each range over blocks of the stream's
/// correlation length (`calib::observer::stream_extreme`) and is within 0.5 dB of TF's
/// 512-frame reference, LiteRT, 256 held-out frames as one stream (measured: seen
/// 34.50, default 38.83, TF 39.28 dB). `--observer extrapolate` (every sample taken as
/// independent) gains less (37.46 dB).
#[test]
fn stream_ranges_extrapolate_a_stream_calibrated_with_32_frames_to_tf() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("streaming_kws.tflite");
    let e = manifest_entry("streaming_kws.tflite").unwrap();
    let float = tflquant::read_path(&input).unwrap();
    let test = load_samples(e["test"].as_str().unwrap(), &float, usize::MAX);
    let (reference, _) = litert_run_stream(&input, &test, false).unwrap();
    let sqnr = |path: &std::path::Path| {
        let (q, _) = litert_run_stream(path, &test, false).unwrap();
        sqnr_db(&reference[0].data.to_f64(), &q[0].data.to_f64())
    };
    let tf = sqnr(&testdata("streaming_kws.tf_int8.tflite"));
    let cal = testdata(e["calib"].as_str().unwrap());
    let mut db = Vec::new();
    for (name, extra) in [
        ("seen", &["--stream-ranges", "seen"][..]),
        ("default", &[][..]),
        ("extrapolate", &["--observer", "extrapolate"][..]),
    ] {
        let out = dir.path().join(format!("{name}.tflite"));
        int8_32(&input, &cal, &out, extra);
        db.push(sqnr(&out));
    }
    let [seen, default, extrapolate] = db[..] else {
        unreachable!()
    };
    assert!(seen.is_finite() && seen > 30.0, "seen {seen} dB");
    assert!(
        tf.is_finite() && tf > seen + 3.0,
        "TF {tf} dB, seen {seen} dB"
    );
    assert!(
        default >= seen + 3.0 && default >= tf - 0.5,
        "default {default} dB, seen {seen} dB, TF {tf} dB"
    );
    assert!(
        extrapolate >= seen + 2.0,
        "extrapolate {extrapolate} dB vs seen {seen} dB"
    );
}

/// In int8 a SOFTMAX whose probabilities only a float model output reads writes them in
/// int16 (scale 1/32767, zero point 0): LiteRT's int8 kernel writes int16 too, so the
/// operators are the same and only the last rounding is 128 times finer. Checked on
/// LiteRT with cnn_digits' held-out digits, against `--interface int8` (where the output
/// is int8 by contract and SOFTMAX keeps 1/256):
/// - structure: SOFTMAX reads int8 in both; its output is INT16 (1/32767, 0: 1.0 on the
///   grid) read only by the DEQUANTIZE that makes the float model output, or INT8 (1/256,
///   -128);
/// - the integer logits LiteRT computes are identical in both models;
/// - each probability is the exact softmax of those logits rounded to the grid: within
///   half a step plus 1e-6 (a few float32 roundings of a value ≤ 1 in LiteRT's table,
///   sum and reciprocal), except int8's clamp at 255/256 (a probability above it is
///   within one step);
/// - so the output SQNR against the float model is higher with int16 probabilities.
#[test]
fn softmax_at_a_float_output_writes_exact_int16_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("cnn_digits.tflite");
    let cal = testdata("cnn_digits.calib.npy");
    let float = tflquant::read_path(&input).unwrap();
    let samples = sample_inputs(&input, &float, 32);
    let float_out = litert_run(&input, &samples).unwrap()[0].data.to_f64();
    let mut logits = Vec::new();
    let mut db = Vec::new();
    for (iface, wide) in [("float", true), ("int8", false)] {
        let out = dir.path().join(format!("{iface}.tflite"));
        let (q, r) = int8_32(&input, &cal, &out, &["--interface", iface]);
        let sg = &q.subgraphs[0];
        let softmax: Vec<_> = sg
            .operators
            .iter()
            .filter(|o| q.builtin(o) == Op::Softmax)
            .collect();
        assert_eq!(softmax.len(), 1, "{iface}: one SOFTMAX");
        let (ti, to) = (
            softmax[0].inputs[0] as usize,
            softmax[0].outputs[0] as usize,
        );
        assert_eq!(
            sg.tensors[ti].dtype,
            TensorType::Int8,
            "{iface}: SOFTMAX input"
        );
        let (dtype, step, zero) = if wide {
            (TensorType::Int16, 1.0 / 32767.0, 0)
        } else {
            (TensorType::Int8, 1.0 / 256.0, -128)
        };
        let p_out = sg.tensors[to].quantized().expect("quantized output");
        assert_eq!(
            (
                sg.tensors[to].dtype,
                p_out.scale.clone(),
                p_out.zero_point.clone()
            ),
            (dtype, vec![step as f32], vec![zero]),
            "{iface}: SOFTMAX output"
        );
        let readers: Vec<_> = sg
            .operators
            .iter()
            .filter(|o| o.inputs.contains(&(to as i32)))
            .collect();
        if wide {
            assert!(
                readers.len() == 1
                    && q.builtin(readers[0]) == Op::Dequantize
                    && readers[0].outputs[0] == sg.outputs[0],
                "the int16 probabilities are read only by the output DEQUANTIZE"
            );
            assert!(
                r["notes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n.as_str().unwrap().contains("writes its output in int16")),
                "the report says why: {}",
                r["notes"]
            );
        }
        let q_in = quantize_for_integer_inputs(&q, samples.clone());
        let (outs, tensors) = litert_run_all(&out, &q_in).unwrap();
        let get = |t: usize| {
            tensors
                .iter()
                .find(|(k, _)| *k == format!("t{t}"))
                .unwrap_or_else(|| panic!("{iface}: LiteRT kept no tensor {t}"))
                .1
                .data
                .to_f64()
        };
        let (x, probs) = (get(ti), get(to));
        let p_in = sg.tensors[ti].quantized().unwrap();
        let (s_in, z_in) = (p_in.scale[0] as f64, p_in.zero_point[0] as f64);
        for (row, (xr, pr)) in x.chunks(10).zip(probs.chunks(10)).enumerate() {
            let e: Vec<f64> = xr.iter().map(|&v| ((v - z_in) * s_in).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (k, (&ek, &qk)) in e.iter().zip(pr).enumerate() {
                let (exact, got) = (ek / sum, (qk - zero as f64) * step);
                let qmax = if wide {
                    i16::MAX as f64
                } else {
                    i8::MAX as f64
                };
                let top = (qmax - zero as f64) * step;
                let tol = if exact > top { step } else { step / 2.0 } + 1e-6;
                assert!(
                    (exact - got).abs() <= tol,
                    "{iface}: sample {row} class {k}: {got} vs the exact {exact}"
                );
            }
        }
        logits.push(x);
        let y = &outs[0].data.to_f64();
        let y: Vec<f64> = match wide {
            true => y.clone(),
            false => y.iter().map(|&v| (v - zero as f64) * step).collect(),
        };
        db.push(sqnr_db(&float_out, &y));
    }
    assert_eq!(
        logits[0], logits[1],
        "the integer logits differ between interfaces"
    );
    assert!(
        db[0] > db[1],
        "int16 probabilities {} dB, int8 {} dB",
        db[0],
        db[1]
    );
}

/// Int8's wider outputs for the float side, on ops_activation (every activation reads the
/// model input; most write a model output):
/// - by default an operator whose output only DEQUANTIZEs read runs in 16x8 (reads and
///   writes INT16, its report width says why) when the rule table gives it a 16x8 kernel
///   and it has no weights and computes (not a same-scale operator); a SOFTMAX there
///   reads int8 and writes int16; every other operator stays int8;
/// - `--int8-outputs` keeps every operator int8 with int8 outputs;
/// - on LiteRT, every output written in int16 is at least as close to the float model as
///   with `--int8-outputs` (the same or a finer input, a finer output); the others are
///   identical.
#[test]
fn float_side_tails_run_in_16x8_and_int8_outputs_turns_them_off() {
    use tflquant::rules::{Output, Role, rule_for};
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("ops_activation.tflite");
    let cal = testdata("ops_activation.calib.npy");
    let float = tflquant::read_path(&input).unwrap();
    let samples = sample_inputs(&input, &float, 32);
    let float_out = litert_run(&input, &samples).unwrap();
    let mut runs = Vec::new();
    for extra in [&[][..], &["--int8-outputs"][..]] {
        let out = dir.path().join(format!("oa{}.tflite", extra.len()));
        let (q, r) = int8_32(&input, &cal, &out, extra);
        let wide = extra.is_empty();
        let sg = &q.subgraphs[0];
        let mut tails = 0;
        for op in &sg.operators {
            let kind = q.builtin(op);
            if matches!(kind, Op::Quantize | Op::Dequantize) {
                continue;
            }
            let y = op.outputs[0];
            let float_side = sg
                .operators
                .iter()
                .filter(|o| o.inputs.contains(&y))
                .all(|o| q.builtin(o) == Op::Dequantize);
            let rule = rule_for(kind).unwrap();
            let no_weights = (0..op.inputs.len()).all(|p| {
                !matches!(
                    rule.integer_role(p),
                    Role::Weight { .. } | Role::Bias { .. }
                )
            });
            let computes = matches!(rule.output, Output::Free | Output::Fixed { .. });
            use TensorType::{Int8, Int16};
            let want = match (wide && float_side, kind) {
                (false, _) => (Int8, Int8),
                (true, Op::Softmax) => (Int8, Int16),
                (true, _) if rule.int16 && no_weights && computes => (Int16, Int16),
                (true, _) => (Int8, Int8),
            };
            let got = (
                sg.tensors[op.inputs[0] as usize].dtype,
                sg.tensors[y as usize].dtype,
            );
            assert_eq!((kind, got), (kind, want), "{extra:?}");
            tails += usize::from(want == (Int16, Int16));
        }
        let widths: Vec<&serde_json::Value> = r["ops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["width"]["precision"] == "int16x8")
            .collect();
        assert_eq!(widths.len(), tails, "{extra:?}: report widths");
        for o in &widths {
            let why = o["width"]["reason"].as_str().unwrap();
            assert!(why.contains("float side"), "{o}");
        }
        if wide {
            assert!(tails >= 8, "16x8 tails: {tails}");
        }
        let int16_out: Vec<bool> = sg
            .outputs
            .iter()
            .map(|&t| {
                let deq = sg.operators.iter().find(|o| o.outputs[0] == t).unwrap();
                sg.tensors[deq.inputs[0] as usize].dtype == TensorType::Int16
            })
            .collect();
        let outs = litert_run(&out, &samples).unwrap();
        let db: Vec<f64> = outs
            .iter()
            .zip(&float_out)
            .map(|(y, f)| sqnr_db(&f.data.to_f64(), &y.data.to_f64()))
            .collect();
        runs.push((db, int16_out));
    }
    let (wide, int16_out) = &runs[0];
    let (narrow, _) = &runs[1];
    for k in 0..wide.len() {
        if int16_out[k] {
            assert!(
                wide[k] >= narrow[k],
                "output {k}: {:.2} dB wider, {:.2} dB --int8-outputs",
                wide[k],
                narrow[k]
            );
        } else {
            assert_eq!(wide[k], narrow[k], "output {k} (int8 in both)");
        }
    }
}
