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

fn is_float_model(model: &Model) -> bool {
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
