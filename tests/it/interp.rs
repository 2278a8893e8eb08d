//! The float interpreter against the official runtime: outputs and every intermediate
//! tensor of subgraph 0 for every test model, quantized-model simulation, and the
//! up-front error for ops without a kernel.

use std::collections::HashMap;
use std::path::Path;

use tflquant::data::{Array, ArrayData};
use tflquant::interp::{Flow, Interpreter, TensorId, Value};
use tflquant::ir::Model;

use crate::common::*;

/// float32 kernels that compute the same maths in another order (or with another
/// libm) differ by a few ulps per operation; through a handful of layers that stays
/// far below 1e-4 of the tensor's magnitude.
pub const REL_TOL: f64 = 1e-4;

/// Sample `i` of an array holding samples on axis 0.
pub fn sample(a: &Array, i: usize) -> Array {
    let per: usize = a.shape[1..].iter().product();
    let r = i * per..(i + 1) * per;
    let data = match &a.data {
        ArrayData::F32(v) => ArrayData::F32(v[r].to_vec()),
        ArrayData::I32(v) => ArrayData::I32(v[r].to_vec()),
        ArrayData::I64(v) => ArrayData::I64(v[r].to_vec()),
        ArrayData::I8(v) => ArrayData::I8(v[r].to_vec()),
        ArrayData::U8(v) => ArrayData::U8(v[r].to_vec()),
        ArrayData::Bool(v) => ArrayData::Bool(v[r].to_vec()),
        other => panic!("unexpected dtype {}", other.dtype_name()),
    };
    Array::new(a.shape[1..].to_vec(), data)
}

/// Runs the interpreter on each sample; returns per sample the outputs and the last
/// value of every tensor of subgraph 0.
pub fn run_ours(model: &Model, inputs: &[Array]) -> Vec<(Vec<Value>, HashMap<usize, Value>)> {
    let mut it = Interpreter::new(model).expect("interpreter");
    let n = inputs[0].shape[0];
    (0..n)
        .map(|s| {
            let ins: Vec<Value> = inputs
                .iter()
                .map(|a| Value::from_array(&sample(a, s)).unwrap())
                .collect();
            let mut seen = HashMap::new();
            let mut obs = |id: TensorId, v: &Value| {
                if id.subgraph == 0 {
                    seen.insert(id.tensor, v.clone());
                }
                Flow::Continue
            };
            let outs = it
                .run_observed(&ins, &mut obs)
                .expect("run")
                .expect("not stopped");
            (outs, seen)
        })
        .collect()
}

/// max |a - b| / max |b| (exact equality required for integer/bool data).
pub fn rel_diff(ours: &Array, theirs: &Array) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "element counts differ");
    let (a, b) = (ours.data.to_f64(), theirs.data.to_f64());
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(0f64, f64::max);
    let exact = !matches!(theirs.data, ArrayData::F32(_) | ArrayData::F64(_));
    if exact && diff > 0.0 {
        return f64::INFINITY;
    }
    diff / scale
}

pub fn is_float_model(model: &Model) -> bool {
    // Quantized activations (int8 models) are checked by the simulation test.
    !model.subgraphs[0]
        .tensors
        .iter()
        .any(|t| t.quantized().is_some() && model.tensor_data(t).is_empty())
}

/// Compares outputs and all intermediates of one model with LiteRT.
fn check_model(path: &Path, tol: f64) -> (usize, f64) {
    let model = tflquant::read_path(path).unwrap();
    let inputs = sample_inputs(path, &model, 4);
    let (lit_outs, lit_tensors) = litert_run_all(path, &inputs).expect("LiteRT run");
    let ours = run_ours(&model, &inputs);
    let name = path.file_name().unwrap().to_string_lossy();
    let mut worst = 0f64;
    for (oi, lo) in lit_outs.iter().enumerate() {
        for (s, (outs, _)) in ours.iter().enumerate() {
            let d = rel_diff(&outs[oi].to_array(), &sample(lo, s));
            worst = worst.max(d);
            assert!(
                d <= tol,
                "{name}: output {oi} sample {s}: relative difference {d:e}"
            );
        }
    }
    let sg = &model.subgraphs[0];
    let mut compared = 0;
    for (k, lt) in &lit_tensors {
        let t: usize = k[1..].parse().unwrap();
        // LiteRT adds scratch tensors after the model's own.
        let Some(tensor) = sg.tensors.get(t) else {
            continue;
        };
        if model.is_constant(tensor) {
            continue;
        }
        for (s, (_, seen)) in ours.iter().enumerate() {
            let v = seen.get(&t).unwrap_or_else(|| {
                panic!(
                    "{name}: tensor {t} {:?} has a LiteRT value but none of ours",
                    tensor.name
                )
            });
            let d = rel_diff(&v.to_array(), &sample(lt, s));
            worst = worst.max(d);
            assert!(
                d <= tol,
                "{name}: tensor {t} {:?} sample {s}: relative difference {d:e}",
                tensor.name
            );
        }
        compared += 1;
    }
    (compared, worst)
}

#[test]
fn float_models_match_litert_outputs_and_every_intermediate() {
    let mut checked = Vec::new();
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let model = tflquant::read_path(&path).unwrap();
        if has_custom_op(&model) || !is_float_model(&model) || name.contains("tf_dynamic") {
            continue;
        }
        let (n, worst) = check_model(&path, REL_TOL);
        assert!(n > 0, "{name}: no intermediate compared");
        checked.push(format!("{name}: {n} tensors, worst {worst:.1e}"));
    }
    eprintln!("{}", checked.join("\n"));
    assert!(checked.len() >= 20, "only {} models checked", checked.len());
}

/// Element-wise agreement of a simulated quantized tensor with LiteRT's integer
/// kernels: the fraction of elements within one quantization step (in real units).
fn within_one_step(ours: &Array, theirs: &Array, step: f64) -> f64 {
    let (a, b) = (ours.data.to_f64(), theirs.data.to_f64());
    let ok = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| (*x - *y).abs() <= step * 1.000_001)
        .count();
    ok as f64 / a.len().max(1) as f64
}

#[test]
fn quantized_models_are_simulated_within_one_step_of_litert() {
    for name in [
        "int8_quantized_cnn.tflite",
        "int8_quantized_cnn_int8io.tflite",
    ] {
        let path = testdata(name);
        let model = tflquant::read_path(&path).unwrap();
        let inputs = sample_inputs(&path, &model, 4);
        let (_, lit_tensors) = litert_run_all(&path, &inputs).expect("LiteRT run");
        let ours = run_ours(&model, &inputs);
        let sg = &model.subgraphs[0];
        let (mut total, mut good, mut compared) = (0usize, 0f64, 0);
        for (k, lt) in &lit_tensors {
            let t: usize = k[1..].parse().unwrap();
            let Some(tensor) = sg.tensors.get(t) else {
                continue;
            };
            if model.is_constant(tensor) {
                continue;
            }
            // Compare in real units: integers with their parameters, floats as they are.
            let step = tensor.quantized().map_or(0.0, |q| q.scale[0] as f64);
            let real = |a: &Array| -> Array {
                match tensor.quantized() {
                    Some(q) => Array::new(
                        a.shape.clone(),
                        ArrayData::F64(
                            a.data
                                .to_f64()
                                .iter()
                                .map(|&x| (x - q.zero_point[0] as f64) * q.scale[0] as f64)
                                .collect(),
                        ),
                    ),
                    None => a.clone(),
                }
            };
            for (s, (_, seen)) in ours.iter().enumerate() {
                let v = &seen[&t];
                let (a, b) = (real(&v.to_array()), real(&sample(lt, s)));
                // Float tensors (the interface) may differ by one step of the
                // quantized tensor next to them; take the largest scale in the graph.
                let step = if step == 0.0 { 1.0 / 256.0 } else { step };
                let frac = within_one_step(&a, &b, step);
                good += frac * a.len() as f64;
                total += a.len();
            }
            compared += 1;
        }
        let frac = good / total as f64;
        eprintln!(
            "{name}: {compared} tensors, {:.3}% of elements within one step",
            frac * 100.0
        );
        assert!(compared >= 9, "{name}: only {compared} tensors compared");
        assert!(
            frac >= 0.99,
            "{name}: only {:.3}% within one step",
            frac * 100.0
        );
    }
}

#[test]
fn dynamic_range_models_stay_close_to_litert_hybrid_kernels() {
    // LiteRT's hybrid kernels quantize activations to int8 on the fly; the interpreter
    // uses dequantized weights and float activations, so the outputs differ by the
    // activation quantization error (~1/127 of a row's range), not by float rounding.
    for name in [
        "mlp_large_fc.tf_dynamic.tflite",
        "cnn_digits.tf_dynamic.tflite",
    ] {
        let path = testdata(name);
        let model = tflquant::read_path(&path).unwrap();
        let inputs = sample_inputs(&path, &model, 4);
        let lit = litert_run(&path, &inputs).expect("LiteRT run");
        let ours = run_ours(&model, &inputs);
        for (s, (outs, _)) in ours.iter().enumerate() {
            let d = rel_diff(&outs[0].to_array(), &sample(&lit[0], s));
            eprintln!("{name} sample {s}: {d:e}");
            assert!(
                d <= 2.0 / 127.0,
                "{name} sample {s}: relative difference {d:e}"
            );
        }
    }
}

#[test]
fn custom_op_is_named_in_the_interpreter_error() {
    let model = tflquant::read_path(testdata("custom_op.tflite")).unwrap();
    let err = Interpreter::new(&model).err().expect("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("subgraph 0, operator 2 (CUSTOM(TflquantTestOp))"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn every_op_without_a_kernel_is_listed_at_once() {
    use tflquant::fb::BuiltinOperator;
    let mut model = tflquant::read_path(testdata("while_loop.tflite")).unwrap();
    // Turn the body's TANH into a builtin without a kernel and the main graph's SUM
    // into another custom op.
    let rfft = model.ensure_opcode(BuiltinOperator::Rfft2d, 1);
    model.operator_codes.push(tflquant::ir::OperatorCode {
        builtin: BuiltinOperator::Custom,
        custom_code: Some("Other".into()),
        version: 1,
    });
    let other = (model.operator_codes.len() - 1) as u32;
    let find = |m: &Model, sg: usize, b: BuiltinOperator| {
        m.subgraphs[sg]
            .operators
            .iter()
            .position(|o| m.builtin(o) == b)
            .unwrap()
    };
    let tanh = find(&model, 2, BuiltinOperator::Tanh);
    let sum = find(&model, 0, BuiltinOperator::Sum);
    model.subgraphs[2].operators[tanh].opcode_index = rfft;
    model.subgraphs[0].operators[sum].opcode_index = other;
    // And an option no kernel implements: a fused TANH on the body's FULLY_CONNECTED.
    let fc = find(&model, 2, BuiltinOperator::FullyConnected);
    match &mut model.subgraphs[2].operators[fc].builtin_options {
        Some(tflquant::fb::BuiltinOptions::FullyConnectedOptions(o)) => {
            o.fused_activation_function = tflquant::fb::ActivationFunctionType::Tanh
        }
        other => panic!("unexpected options {other:?}"),
    }
    let msg = Interpreter::new(&model)
        .err()
        .expect("must fail")
        .to_string();
    assert!(msg.contains("3 ops"), "{msg}");
    assert!(
        msg.contains(&format!(
            "subgraph 2, operator {fc} (FULLY_CONNECTED with fused activation Tanh)"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("subgraph 0, operator {sum} (CUSTOM(Other))")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("subgraph 2, operator {tanh} (RFFT2D)")),
        "{msg}"
    );
}

/// A one-op model built with the IR and the writer (TF's converter never emits
/// L2_POOL_2D).
#[test]
fn l2_pool_matches_litert_on_a_hand_built_model() {
    use tflquant::fb::{self, BuiltinOperator, TensorType};
    use tflquant::ir::{Buffer, Operator, Subgraph, Tensor};
    let mut model = Model {
        version: 3,
        buffers: vec![Buffer::default()],
        ..Default::default()
    };
    let code = model.ensure_opcode(BuiltinOperator::L2Pool2d, 1);
    let mut sg = Subgraph {
        name: Some("main".into()),
        ..Default::default()
    };
    let x = sg.add_tensor(Tensor::new("x", TensorType::Float32, vec![1, 7, 6, 3]));
    let y = sg.add_tensor(Tensor::new("y", TensorType::Float32, vec![1, 4, 3, 3]));
    let mut op = Operator::new(code, vec![x], vec![y]);
    op.builtin_options = Some(fb::BuiltinOptions::Pool2DOptions(Box::new(
        fb::Pool2DOptions {
            padding: fb::Padding::Same,
            stride_w: 2,
            stride_h: 2,
            filter_width: 3,
            filter_height: 2,
            fused_activation_function: fb::ActivationFunctionType::Relu6,
        },
    )));
    sg.operators.push(op);
    sg.inputs = vec![x];
    sg.outputs = vec![y];
    model.subgraphs.push(sg);
    tflquant::ir::verify(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l2_pool.tflite");
    tflquant::writer::write_path(&model, &path, &Default::default()).unwrap();
    let model = tflquant::read_path(&path).unwrap();
    let inputs = synthetic_inputs(&model, 3, 42);
    let lit = litert_run(&path, &inputs).expect("LiteRT run");
    let ours = run_ours(&model, &inputs);
    for (s, (outs, _)) in ours.iter().enumerate() {
        let d = rel_diff(&outs[0].to_array(), &sample(&lit[0], s));
        assert!(d <= REL_TOL, "sample {s}: relative difference {d:e}");
    }
}

/// Hostile variations of real models must give errors, never panics: every op of every
/// test model with its inputs reversed, and every model on out-of-range synthetic data.
#[test]
fn scrambled_models_fail_without_panicking() {
    let mut errors = 0;
    let mut runs = 0;
    for path in all_models() {
        let model = tflquant::read_path(&path).unwrap();
        if has_custom_op(&model) {
            continue;
        }
        let inputs: Vec<Value> = synthetic_inputs(&model, 1, 9)
            .iter()
            .map(|a| Value::from_array(&sample(a, 0)).unwrap())
            .collect();
        // Synthetic data itself (ids 0..4 may be fine or out of range: either way no panic).
        let mut it = Interpreter::new(&model).unwrap();
        let _ = it.run(&inputs);
        for si in 0..model.subgraphs.len() {
            for oi in 0..model.subgraphs[si].operators.len() {
                let mut m = model.clone();
                m.subgraphs[si].operators[oi].inputs.reverse();
                // Ops may now read tensors produced later: the planner must cope too.
                let Ok(mut it) = Interpreter::new(&m) else {
                    errors += 1;
                    continue;
                };
                runs += 1;
                if it.run(&inputs).is_err() {
                    errors += 1;
                }
            }
        }
    }
    assert!(runs > 300, "only {runs} runs");
    assert!(errors > 100, "only {errors} scrambled models failed");
}

/// QUANTIZE → DEQUANTIZE inside a float graph is fake quantization: per-tensor int8 and
/// per-tensor int16 pairs (hand-built, written, and run in LiteRT) must agree exactly —
/// both sides round x/scale half away from zero and clamp.
#[test]
fn quantize_dequantize_pairs_are_exact_fake_quantization() {
    use tflquant::fb::{BuiltinOperator, TensorType};
    use tflquant::ir::{Buffer, Operator, QuantParams, Subgraph, Tensor};
    let mut model = Model {
        version: 3,
        buffers: vec![Buffer::default()],
        ..Default::default()
    };
    let q = model.ensure_opcode(BuiltinOperator::Quantize, 1);
    let dq = model.ensure_opcode(BuiltinOperator::Dequantize, 1);
    let mut sg = Subgraph::default();
    let shape = vec![1, 5, 7];
    let x = sg.add_tensor(Tensor::new("x", TensorType::Float32, shape.clone()));
    let mut outs = Vec::new();
    for (i, (t, scale, zp)) in [
        (TensorType::Int8, 0.0123f32, 3i64),
        (TensorType::Int16, 0.0004, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut qt = Tensor::new(format!("q{i}"), t, shape.clone());
        qt.quant = Some(QuantParams::per_tensor(scale, zp));
        let qi = sg.add_tensor(qt);
        let y = sg.add_tensor(Tensor::new(
            format!("y{i}"),
            TensorType::Float32,
            shape.clone(),
        ));
        sg.operators.push(Operator::new(q, vec![x], vec![qi]));
        sg.operators.push(Operator::new(dq, vec![qi], vec![y]));
        outs.push(y);
    }
    sg.inputs = vec![x];
    sg.outputs = outs;
    model.subgraphs.push(sg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qdq.tflite");
    tflquant::writer::write_path(&model, &path, &Default::default()).unwrap();
    let model = tflquant::read_path(&path).unwrap();
    // Values up to ±2: the int8 pair clips at (−128−3)·0.0123 and (127−3)·0.0123.
    let inputs: Vec<Array> = synthetic_inputs(&model, 4, 77)
        .into_iter()
        .map(|a| {
            let ArrayData::F32(v) = a.data else {
                unreachable!()
            };
            Array::f32(a.shape, v.into_iter().map(|x| x * 2.0).collect())
        })
        .collect();
    let lit = litert_run(&path, &inputs).expect("LiteRT run");
    let ours = run_ours(&model, &inputs);
    for (o, l) in lit.iter().enumerate() {
        for (s, (outs, _)) in ours.iter().enumerate() {
            assert_eq!(outs[o].to_array(), sample(l, s), "output {o} sample {s}");
        }
    }
}

/// Observers can stop a run and replace values; variable state is reset per run unless
/// asked otherwise.
#[test]
fn observers_stop_and_replace_and_variables_reset_by_default() {
    use tflquant::interp::Options;
    let model = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    let x = Value::from_array(&sample(
        &load_samples("cnn_digits.test.npy", &model, 1)[0],
        0,
    ))
    .unwrap();
    let mut it = Interpreter::new(&model).unwrap();
    let base = it.run(std::slice::from_ref(&x)).unwrap();
    // Stop at the first op output: no outputs, and fewer tensors seen.
    let mut seen = 0;
    let mut stop = |id: TensorId, _: &Value| {
        seen += 1;
        if id.tensor != model.subgraphs[0].inputs[0] as usize {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    assert!(
        it.run_observed(std::slice::from_ref(&x), &mut stop)
            .unwrap()
            .is_none()
    );
    assert_eq!(seen, 2);
    // Replacing the input with zeros changes the output like running on zeros does.
    let mut batched = vec![1];
    batched.extend_from_slice(&x.shape);
    let zeros = Value::f32(batched, vec![0.0; x.len()]);
    let mut replace = |id: TensorId, _: &Value| {
        if id.tensor == model.subgraphs[0].inputs[0] as usize {
            Flow::Replace(zeros.clone())
        } else {
            Flow::Continue
        }
    };
    let replaced = it
        .run_observed(std::slice::from_ref(&x), &mut replace)
        .unwrap()
        .unwrap();
    assert_eq!(replaced, it.run(std::slice::from_ref(&zeros)).unwrap());
    assert_ne!(replaced, base);

    // LSTM state: reset by default (same input, same output); carried over on request.
    let model = tflquant::read_path(testdata("lstm_seq.tflite")).unwrap();
    let x =
        Value::from_array(&sample(&load_samples("lstm_seq.test.npy", &model, 1)[0], 0)).unwrap();
    let mut it = Interpreter::new(&model).unwrap();
    let a = it.run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(a, it.run(std::slice::from_ref(&x)).unwrap());
    let opts = Options {
        reset: tflquant::interp::ResetState::Never,
        ..Default::default()
    };
    let mut it = Interpreter::with_options(&model, opts).unwrap();
    let first = it.run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(first, a);
    assert_ne!(
        it.run(std::slice::from_ref(&x)).unwrap(),
        a,
        "state was not carried over"
    );
    it.reset_state();
    assert_eq!(it.run(std::slice::from_ref(&x)).unwrap(), a);
}

/// begin, end, strides, ellipsis/new-axis/shrink/begin/end masks, output shape.
type Case = (
    Vec<i32>,
    Vec<i32>,
    Vec<i32>,
    i32,
    i32,
    i32,
    i32,
    i32,
    Vec<i32>,
);

/// STRIDED_SLICE with an ellipsis and new axes (TF's converter rewrites them away, other
/// producers do not), hand-built and compared with LiteRT.
#[test]
fn strided_slice_with_ellipsis_and_new_axis_matches_litert() {
    use tflquant::fb::{self, BuiltinOperator, TensorType};
    use tflquant::ir::{Buffer, Operator, Subgraph, Tensor};
    let mut model = Model {
        version: 3,
        buffers: vec![Buffer::default()],
        ..Default::default()
    };
    let code = model.ensure_opcode(BuiltinOperator::StridedSlice, 6);
    let mut sg = Subgraph::default();
    let x = sg.add_tensor(Tensor::new("x", TensorType::Float32, vec![2, 3, 4, 5]));
    let mut outs = Vec::new();
    // (begin, end, strides, ellipsis, new_axis, shrink, begin_mask, end_mask, out shape)
    let cases: [Case; 3] = [
        // x[..., 1:3, None]
        (
            vec![0, 1, 0],
            vec![0, 3, 0],
            vec![1, 1, 1],
            1,
            4,
            0,
            0,
            0,
            vec![2, 3, 4, 2, 1],
        ),
        // x[None, 1, ..., ::-2]
        (
            vec![0, 1, 0, 0],
            vec![0, 2, 0, 0],
            vec![1, 1, 1, -2],
            4,
            1,
            2,
            8,
            8,
            vec![1, 3, 4, 3],
        ),
        // x[:, None, -1, 1::2] (no ellipsis: the last dimension is implicit)
        (
            vec![0, 0, -1, 1],
            vec![0, 0, 0, 5],
            vec![1, 1, 1, 2],
            0,
            2,
            4,
            1,
            1,
            vec![2, 1, 2, 5],
        ),
    ];
    for (i, (b, e, s, ell, na, sh, bm, em, shape)) in cases.into_iter().enumerate() {
        let mut consts = Vec::new();
        for (name, v) in [("begin", b), ("end", e), ("strides", s)] {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let buf = model.add_buffer(bytes);
            let mut t = Tensor::new(
                format!("{name}{i}"),
                TensorType::Int32,
                vec![v.len() as i32],
            );
            t.buffer = buf;
            consts.push(sg.add_tensor(t));
        }
        let y = sg.add_tensor(Tensor::new(format!("y{i}"), TensorType::Float32, shape));
        let mut op = Operator::new(code, vec![x, consts[0], consts[1], consts[2]], vec![y]);
        op.builtin_options = Some(fb::BuiltinOptions::StridedSliceOptions(Box::new(
            fb::StridedSliceOptions {
                begin_mask: bm,
                end_mask: em,
                ellipsis_mask: ell,
                new_axis_mask: na,
                shrink_axis_mask: sh,
                offset: false,
            },
        )));
        sg.operators.push(op);
        outs.push(y);
    }
    sg.inputs = vec![x];
    sg.outputs = outs;
    model.subgraphs.push(sg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strided.tflite");
    tflquant::writer::write_path(&model, &path, &Default::default()).unwrap();
    let model = tflquant::read_path(&path).unwrap();
    let inputs = synthetic_inputs(&model, 2, 5);
    let lit = litert_run(&path, &inputs).expect("LiteRT run");
    let ours = run_ours(&model, &inputs);
    for (o, l) in lit.iter().enumerate() {
        for (s, (outs, _)) in ours.iter().enumerate() {
            assert_eq!(outs[o].to_array(), sample(l, s), "case {o} sample {s}");
        }
    }
}
