//! Streaming models whose state lives in resource variables (issue #20):
//! `testdata/streaming_kws.tflite` (float) and TF's int8 conversion of it. The interpreter
//! against LiteRT over a stream, quantization of the state, and the `--reset-state` /
//! `sequence_id` controls.

use std::path::Path;

use tflquant::data::{self, Array, ArrayData};
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::interp::{Flow, Interpreter, TensorId, Value};
use tflquant::ir::{Model, QuantParams};

use crate::common::*;

const FLOAT: &str = "streaming_kws.tflite";
const TF_INT8: &str = "streaming_kws.tf_int8.tflite";
/// Frames per digit: the model's receptive field is 5 frames, so the outputs of frames
/// 4..7 of a digit depend on that digit only.
const FRAMES: usize = 8;

fn frames(n: usize) -> Array {
    let a = data::read_npy(testdata("streaming_kws.test.npy")).unwrap();
    let ArrayData::F32(v) = a.data else {
        panic!("float frames")
    };
    let per: usize = a.shape[1..].iter().product();
    Array::f32(vec![n, per], v[..n * per].to_vec())
}

fn sample(a: &Array, i: usize) -> Value {
    let per: usize = a.shape[1..].iter().product();
    let ArrayData::F32(v) = &a.data else {
        panic!("float frames")
    };
    Value::f32(a.shape[1..].to_vec(), v[i * per..(i + 1) * per].to_vec())
}

fn f32s(a: &Array) -> Vec<f64> {
    let v = a.data.to_f64();
    assert!(v.iter().all(|x| x.is_finite()), "non-finite values");
    v
}

/// Our interpreter over `n` frames in order (default policy: one stream), with every
/// subgraph-0 tensor value per frame.
/// Per frame: the outputs, and every (tensor, value) of subgraph 0.
type Streamed = (Vec<Vec<f64>>, Vec<Vec<(usize, Value)>>);

fn stream_ours(model: &Model, x: &Array) -> Streamed {
    let mut it = Interpreter::new(model).unwrap();
    let mut outs = Vec::new();
    let mut seen = Vec::new();
    for i in 0..x.shape[0] {
        let mut vals = Vec::new();
        let mut obs = |id: TensorId, v: &Value| {
            if id.subgraph == 0 {
                vals.push((id.tensor, v.clone()));
            }
            Flow::Continue
        };
        let o = it.run_observed(&[sample(x, i)], &mut obs).unwrap().unwrap();
        outs.push(o[0].to_array().data.to_f64());
        seen.push(vals);
    }
    (outs, seen)
}

/// `run` of the float model matches LiteRT frame after frame, state carried over, within
/// 1e-4 over 64 consecutive invocations (8 digits).
#[test]
fn float_streaming_model_matches_litert_over_a_stream() {
    let path = testdata(FLOAT);
    let model = tflquant::read_path(&path).unwrap();
    let x = frames(64);
    let (ours, _) = stream_ours(&model, &x);
    let (lit, _) = litert_run_stream(&path, std::slice::from_ref(&x), false).unwrap();
    let lit = f32s(&lit[0]);
    let ours: Vec<f64> = ours.concat();
    assert_eq!(ours.len(), lit.len());
    let worst = ours
        .iter()
        .zip(&lit)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "float stream: max |ours - LiteRT| = {worst:e} over {} values",
        lit.len()
    );
    assert!(worst <= 1e-4, "max |ours - LiteRT| = {worst}");
    // The state matters: a fresh state at every frame gives other outputs.
    let mut fresh = Interpreter::with_options(
        &model,
        tflquant::interp::Options {
            reset: tflquant::interp::ResetState::Every,
            ..Default::default()
        },
    )
    .unwrap();
    let differs = (0..64).any(|i| {
        let o = fresh.run(&[sample(&x, i)]).unwrap()[0]
            .to_array()
            .data
            .to_f64();
        o.iter()
            .zip(&lit[i * 10..(i + 1) * 10])
            .any(|(a, b)| (a - b).abs() > 1e-3)
    });
    assert!(differs, "resetting every frame changed nothing: no state?");
}

/// The int8 tensors of subgraph 0 (state read from the variables included) and the
/// outputs of TF's int8 streaming model: within one quantization step of LiteRT's
/// integer kernels on ≥ 99% of the values over 32 consecutive invocations.
#[test]
fn tf_int8_streaming_model_is_simulated_within_one_step() {
    let path = testdata(TF_INT8);
    let model = tflquant::read_path(&path).unwrap();
    let sg = &model.subgraphs[0];
    let x = frames(32);
    let (ours, seen) = stream_ours(&model, &x);
    let (lit, tensors) = litert_run_stream(&path, std::slice::from_ref(&x), true).unwrap();
    // Output: DEQUANTIZE of an int8 tensor; one step is its scale.
    let out_t = sg.outputs[0] as usize;
    let producer = sg.producers()[out_t].unwrap();
    let q_in = sg.operators[producer].inputs[0] as usize;
    let step = sg.tensors[q_in].quant.as_ref().unwrap().scale[0] as f64;
    let lit = f32s(&lit[0]);
    let ours = ours.concat();
    let within = ours
        .iter()
        .zip(&lit)
        .filter(|(a, b)| (*a - *b).abs() <= step * 1.0001)
        .count();
    eprintln!("int8 outputs: {within} of {} within one step", lit.len());
    assert!(
        within as f64 >= 0.99 * lit.len() as f64,
        "outputs: {within} of {} within one step ({step})",
        lit.len()
    );
    // Every int8 activation of subgraph 0, in quantization steps.
    let mut checked = 0;
    let mut reads = 0;
    for (t, tensor) in sg.tensors.iter().enumerate() {
        if tensor.dtype != TensorType::Int8 || model.is_constant(tensor) {
            continue;
        }
        let Some((_, a)) = tensors.iter().find(|(k, _)| *k == format!("t{t}")) else {
            continue;
        };
        let theirs = a.data.to_f64();
        let mine: Vec<f64> = seen
            .iter()
            .flat_map(|vals| {
                vals.iter()
                    .find(|(k, _)| *k == t)
                    .map(|(_, v)| v.to_array().data.to_f64())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(mine.len(), theirs.len(), "tensor {t} {:?}", tensor.name);
        let ok = mine
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| (*a - *b).abs() <= 1.0)
            .count();
        eprintln!(
            "  t{t} {:?}: {ok} of {} within one step",
            tensor.name,
            theirs.len()
        );
        assert!(
            ok as f64 >= 0.99 * theirs.len() as f64,
            "tensor {t} {:?}: {ok} of {} within one step",
            tensor.name,
            theirs.len()
        );
        checked += 1;
        if sg.producers()[t].is_some_and(|p| model.builtin(&sg.operators[p]) == Op::ReadVariable) {
            reads += 1;
        }
    }
    assert!(
        checked >= 8 && reads == 2,
        "checked {checked} int8 tensors, {reads} variable reads"
    );
}

/// (READ_VARIABLE outputs, ASSIGN_VARIABLE values) per VAR_HANDLE name, over every
/// subgraph: (subgraph, tensor).
/// (subgraph, tensor) lists.
type At = Vec<(usize, usize)>;

fn variable_tensors(m: &Model) -> Vec<(String, At, At)> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<String, (At, At)> = BTreeMap::new();
    for (si, sg) in m.subgraphs.iter().enumerate() {
        let mut handle = BTreeMap::new();
        for op in &sg.operators {
            if m.builtin(op) == Op::VarHandle {
                let Some(tflquant::fb::BuiltinOptions::VarHandleOptions(o)) = &op.builtin_options
                else {
                    panic!("VAR_HANDLE without options")
                };
                handle.insert(op.outputs[0], o.shared_name.clone().unwrap());
            }
        }
        for op in &sg.operators {
            let b = m.builtin(op);
            let name = || handle[&op.inputs[0]].clone();
            if b == Op::ReadVariable {
                by.entry(name())
                    .or_default()
                    .0
                    .push((si, op.outputs[0] as usize));
            } else if b == Op::AssignVariable {
                by.entry(name())
                    .or_default()
                    .1
                    .push((si, op.inputs[1] as usize));
            }
        }
    }
    by.into_iter().map(|(k, (r, a))| (k, r, a)).collect()
}

fn params(m: &Model, (si, t): (usize, usize)) -> (TensorType, QuantParams) {
    let t = &m.subgraphs[si].tensors[t];
    (t.dtype, t.quant.clone().unwrap_or_default())
}

/// `quantize --mode int8` of the float streaming model: the state is int8 with one set
/// of parameters per variable on every READ and ASSIGN (main and init subgraph), the
/// resource ops are kept, and on LiteRT over the 256-frame test stream every output's
/// SQNR is at least TF's int8 reference's − 0.5 dB.
#[test]
fn int8_quantization_of_the_streaming_model_matches_tf_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kws.int8.tflite");
    quantize_cli(
        &testdata(FLOAT),
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            testdata("streaming_kws.calib.npy").to_str().unwrap(),
        ],
    )
    .unwrap();
    let q = tflquant::read_path(&out).unwrap();
    let float = tflquant::read_path(testdata(FLOAT)).unwrap();
    // Structure: the resource ops survive, in the same number.
    for op in [
        Op::VarHandle,
        Op::ReadVariable,
        Op::AssignVariable,
        Op::CallOnce,
    ] {
        let count = |m: &Model| {
            m.subgraphs
                .iter()
                .flat_map(|sg| &sg.operators)
                .filter(|o| m.builtin(o) == op)
                .count()
        };
        assert_eq!(count(&q), count(&float), "{op:?}");
    }
    // One parameter set per variable, int8, on every READ output and ASSIGN value; the
    // init subgraph's value is an int8 constant with the same parameters.
    let vars = variable_tensors(&q);
    assert_eq!(vars.len(), 2);
    for (name, reads, assigns) in &vars {
        let (dt, p) = params(&q, reads[0]);
        assert_eq!(dt, TensorType::Int8, "{name}");
        assert_eq!(p.scale.len(), 1, "{name}: per-tensor");
        for &m in reads.iter().chain(assigns) {
            assert_eq!(
                params(&q, m),
                (dt, p.clone()),
                "{name}: subgraph {} tensor {}",
                m.0,
                m.1
            );
        }
        let init: Vec<_> = assigns.iter().filter(|(si, _)| *si == 1).collect();
        assert_eq!(init.len(), 1, "{name}: assigned once in the init subgraph");
        let (si, t) = *init[0];
        let tensor = &q.subgraphs[si].tensors[t];
        assert!(q.is_constant(tensor), "{name}: initial value is a constant");
        // The zero initial state is the zero point.
        let zp = p.zero_point[0] as i8 as u8;
        assert!(q.tensor_data(tensor).iter().all(|&b| b == zp), "{name}");
    }
    // Fully integer between the interface QUANTIZE/DEQUANTIZE.
    for sg in &q.subgraphs {
        for op in &sg.operators {
            let b = q.builtin(op);
            if matches!(b, Op::Quantize | Op::Dequantize) {
                continue;
            }
            for &t in op.inputs.iter().chain(&op.outputs) {
                if let Ok(t) = usize::try_from(t) {
                    assert_ne!(
                        sg.tensors[t].dtype,
                        TensorType::Float32,
                        "{b:?} touches float"
                    );
                }
            }
        }
    }
    // Accuracy over the whole test stream, all on LiteRT.
    let x = frames(256);
    let run = |p: &Path| {
        let (o, _) = litert_run_stream(p, std::slice::from_ref(&x), false).unwrap();
        o.iter().map(f32s).collect::<Vec<_>>()
    };
    let f = run(&testdata(FLOAT));
    let tf = run(&testdata(TF_INT8));
    let ours = run(&out);
    for k in 0..f.len() {
        let (s_tf, s_ours) = (sqnr_db(&f[k], &tf[k]), sqnr_db(&f[k], &ours[k]));
        eprintln!("output {k}: SQNR ours {s_ours:.2} dB, TF int8 {s_tf:.2} dB");
        assert!(
            s_ours >= s_tf - 0.5,
            "output {k}: ours {s_ours:.2} dB < TF {s_tf:.2} dB − 0.5"
        );
        assert!(s_ours > 30.0, "output {k}: {s_ours:.2} dB");
    }
}

/// Calibration streams too: the state read from a variable covers the frames before;
/// resetting before every sample leaves it at its zero initial value.
#[test]
fn calibration_sees_the_state_of_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let model = tflquant::read_path(testdata(FLOAT)).unwrap();
    let read_t = model.subgraphs[0]
        .operators
        .iter()
        .find(|o| {
            model.builtin(o) == Op::ReadVariable && {
                let t = o.outputs[0] as usize;
                model.subgraphs[0].tensors[t].shape == [1, 2, 1, 8]
            }
        })
        .map(|o| o.outputs[0] as usize)
        .unwrap();
    let range = |policy: &str| {
        let out = dir.path().join(format!("{policy}.json"));
        let (code, _, err) = run_cli(&[
            "calibrate".as_ref(),
            testdata(FLOAT).as_os_str(),
            "--data".as_ref(),
            testdata("streaming_kws.calib.npy").as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--reset-state".as_ref(),
            policy.as_ref(),
        ]);
        assert_eq!(code, 0, "{err}");
        let r = tflquant::calib::Ranges::load(&out).unwrap();
        let r = r.get(0, read_t).unwrap();
        (r.min, r.max)
    };
    // The state holds the two previous frames: digit rows in [0, 1].
    assert_eq!(range("auto"), range("never"));
    let (lo, hi) = range("auto");
    assert!(lo == 0.0 && hi > 0.9 && hi <= 1.0, "[{lo}, {hi}]");
    assert_eq!(range("every"), (0.0, 0.0));
}

/// `--reset-state 8` and an `.npz` `sequence_id` changing every 8 frames give the same
/// outputs, on `run` and on `compare` with both runtimes; frames 4..7 of each digit do
/// not see the digit before (the receptive field is 5 frames), so they equal the plain
/// stream, while frames 0..3 differ.
#[test]
fn reset_every_n_and_sequence_ids_restart_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let x = frames(64);
    let input_name = {
        let m = tflquant::read_path(testdata(FLOAT)).unwrap();
        m.subgraphs[0].tensors[m.subgraphs[0].inputs[0] as usize]
            .name
            .clone()
    };
    let npz = dir.path().join("seq.npz");
    let ids: Vec<i32> = (0..64).map(|i| (i / FRAMES) as i32 * 7 + 3).collect();
    data::write_npz(
        &npz,
        &[
            (input_name, x.clone()),
            (
                "sequence_id".into(),
                Array::new(vec![64], ArrayData::I32(ids)),
            ),
        ],
    )
    .unwrap();
    let npy = dir.path().join("x.npy");
    data::write_npy(&npy, &x).unwrap();
    let float = testdata(FLOAT);
    let run = |input: &Path, extra: &[&str]| {
        let out = dir.path().join("out.npz");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "run".as_ref(),
            float.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let (code, _, err) = run_cli(&args);
        assert_eq!(code, 0, "{err}");
        data::read_npz(&out).unwrap().remove(0).1.data.to_f64()
    };
    let stream = run(&npy, &[]);
    let every8 = run(&npy, &["--reset-state", "8"]);
    let by_id = run(&npz, &[]);
    assert_eq!(every8, by_id);
    for i in 0..64 {
        let (a, b) = (&stream[i * 10..(i + 1) * 10], &every8[i * 10..(i + 1) * 10]);
        if i % FRAMES >= 4 {
            assert_eq!(a, b, "frame {i}");
        } else if i >= FRAMES && i % FRAMES == 0 {
            assert_ne!(a, b, "frame {i}: no reset");
        }
    }
    // compare: the same resets on LiteRT (recompiled model) and the reference.
    let q = testdata(TF_INT8);
    let sqnr = |input: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "compare".as_ref(),
            float.as_os_str(),
            q.as_os_str(),
            "--data".as_ref(),
            input.as_os_str(),
            "--json".as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let (code, out, err) = run_cli(&args);
        assert_eq!(code, 0, "{err}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        j["outputs"][0]["sqnr_db"].as_f64().unwrap()
    };
    let litert = ["--runtime", "litert"];
    let l_stream = sqnr(&npy, &litert);
    let l_every8 = sqnr(&npy, &["--runtime", "litert", "--reset-state", "8"]);
    let l_by_id = sqnr(&npz, &litert);
    let r_every8 = sqnr(&npy, &["--reset-state", "8"]);
    assert_eq!(l_every8, l_by_id);
    assert_ne!(l_every8, l_stream);
    assert!(
        (l_every8 - r_every8).abs() < 0.5,
        "{l_every8} vs {r_every8}"
    );
}

/// Bad policies and bad sequence ids are usage/data errors (exit 2) that say what is
/// expected.
#[test]
fn bad_reset_policy_and_sequence_ids_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(&[
        "run".as_ref(),
        testdata(FLOAT).as_os_str(),
        "--input".as_ref(),
        testdata("streaming_kws.test.npy").as_os_str(),
        "--reset-state".as_ref(),
        "0".as_ref(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--reset-state") && err.contains("never"),
        "{err}"
    );
    let npz = dir.path().join("bad.npz");
    data::write_npz(
        &npz,
        &[
            ("input_0".into(), frames(8)),
            (
                "sequence_id".into(),
                Array::new(vec![7], ArrayData::I32(vec![0; 7])),
            ),
        ],
    )
    .unwrap();
    let (code, _, err) = run_cli(&[
        "run".as_ref(),
        testdata(FLOAT).as_os_str(),
        "--input".as_ref(),
        npz.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("sequence_id") && err.contains("[8]"), "{err}");
}

/// A state written through an op with fixed output parameters (TANH: 1/128, 0) while
/// its READ side shares the concatenation's: the ASSIGN edge is requantized to the
/// variable's parameters (the variable holds one set), and LiteRT streams the result
/// close to the float model.
#[test]
fn assign_with_other_parameters_is_requantized_to_the_variable() {
    use tflquant::ir::{Operator, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let mut m = tflquant::read_path(testdata(FLOAT)).unwrap();
    let tanh = m.ensure_opcode(Op::Tanh, 1);
    let sg = &mut m.subgraphs[0];
    let pos = sg
        .operators
        .iter()
        .position(|o| {
            o.inputs.len() == 2 && {
                let v = &sg.tensors[o.inputs[1] as usize];
                v.shape == [1, 2, 1, 8] && v.dtype == TensorType::Float32
            }
        })
        .expect("the ASSIGN of the 8-feature state");
    let value = sg.operators[pos].inputs[1];
    let t = sg.add_tensor(Tensor::new(
        "state1_tanh",
        TensorType::Float32,
        vec![1, 2, 1, 8],
    ));
    sg.operators[pos].inputs[1] = t;
    sg.operators
        .insert(pos, Operator::new(tanh, vec![value], vec![t]));
    let float = dir.path().join("kws_tanh.tflite");
    tflquant::writer::write_path(&m, &float, &Default::default()).unwrap();
    let out = dir.path().join("kws_tanh.int8.tflite");
    quantize_cli(
        &float,
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            testdata("streaming_kws.calib.npy").to_str().unwrap(),
        ],
    )
    .unwrap();
    let q = tflquant::read_path(&out).unwrap();
    for (name, reads, assigns) in variable_tensors(&q) {
        let p = params(&q, reads[0]);
        assert_eq!(p.0, TensorType::Int8, "{name}");
        for &a in &assigns {
            assert_eq!(params(&q, a), p, "{name}: ASSIGN value");
        }
        if name == "state1" {
            // Not TANH's fixed parameters: a QUANTIZE int8 → int8 feeds the ASSIGN.
            assert_ne!(p.1.scale[0], 1.0 / 128.0);
            let sg = &q.subgraphs[0];
            let (_, t) = assigns.iter().find(|(si, _)| *si == 0).copied().unwrap();
            let producer = sg.producers()[t].unwrap();
            assert_eq!(q.builtin(&sg.operators[producer]), Op::Quantize);
            let src = &sg.tensors[sg.operators[producer].inputs[0] as usize];
            assert_eq!(src.dtype, TensorType::Int8);
            assert_eq!(src.quant.as_ref().unwrap().scale, vec![1.0 / 128.0]);
        }
    }
    let x = frames(256);
    let f = litert_run_stream(&float, std::slice::from_ref(&x), false)
        .unwrap()
        .0;
    let o = litert_run_stream(&out, std::slice::from_ref(&x), false)
        .unwrap()
        .0;
    let s = sqnr_db(&f32s(&f[0]), &f32s(&o[0]));
    eprintln!("tanh-state variant: int8 SQNR {s:.2} dB on LiteRT");
    assert!(s > 30.0, "SQNR {s:.2} dB");
}

/// Variable tensors of the older kind (a converted Keras LSTM's h/c state) follow the
/// same option: reset before every sample by default (`auto`), carried over with
/// `--reset-state never`.
#[test]
fn lstm_variable_tensors_follow_the_reset_option() {
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("lstm_seq.tflite");
    let input = testdata("lstm_seq.test.npy");
    let run = |policy: &str| {
        let out = dir.path().join(format!("{policy}.npz"));
        let (code, _, err) = run_cli(&[
            "run".as_ref(),
            model.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--samples".as_ref(),
            "4".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            "--reset-state".as_ref(),
            policy.as_ref(),
        ]);
        assert_eq!(code, 0, "{err}");
        data::read_npz(&out).unwrap().remove(0).1.data.to_f64()
    };
    let (auto, every, never) = (run("auto"), run("every"), run("never"));
    assert_eq!(auto, every);
    let per = auto.len() / 4;
    assert_eq!(auto[..per], never[..per], "the first sample starts fresh");
    assert_ne!(auto[per..], never[per..], "state not carried over");
}

/// `compare --tensors`: a value read from a variable carries the error of what was
/// assigned to it one invocation earlier, so READ_VARIABLE is not blamed for it (its
/// local SQNR is far above its accumulated SQNR).
#[test]
fn compare_tensors_traces_state_error_to_the_assignment() {
    let (code, out, err) = run_cli(&[
        "compare".as_ref(),
        testdata(FLOAT).as_os_str(),
        testdata(TF_INT8).as_os_str(),
        "--data".as_ref(),
        testdata("streaming_kws.test.npy").as_os_str(),
        "--tensors".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tensors = j["tensors"].as_array().unwrap();
    let reads: Vec<_> = tensors
        .iter()
        .filter(|t| t["op"] == "READ_VARIABLE")
        .collect();
    assert_eq!(reads.len(), 2);
    for t in reads {
        let (local, acc) = (t["local_sqnr_db"].as_f64(), t["sqnr_db"].as_f64().unwrap());
        assert!(
            local.is_none_or(|l| l > acc + 10.0),
            "{}: local {local:?} vs accumulated {acc}",
            t["name"]
        );
    }
    assert_ne!(
        tensors[0]["op"], "READ_VARIABLE",
        "worst first: {}",
        tensors[0]
    );
}

/// Reading a variable nothing has assigned yet (here: the CALL_ONCE init removed) is a
/// data error naming the variable, as LiteRT fails the invoke.
#[test]
fn reading_an_unassigned_variable_is_an_error_naming_it() {
    let mut m = tflquant::read_path(testdata(FLOAT)).unwrap();
    let sg = &mut m.subgraphs[0];
    let call_once = m
        .operator_codes
        .iter()
        .position(|c| c.builtin == Op::CallOnce)
        .unwrap() as u32;
    sg.operators.retain(|o| o.opcode_index != call_once);
    let mut it = Interpreter::new(&m).unwrap();
    let err = it.run(&[sample(&frames(1), 0)]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("READ_VARIABLE")
            && msg.contains("state")
            && msg.contains("before any ASSIGN_VARIABLE"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), 2);
}
