//! `tflquant compare` and `quantize --validate`:
//! - on LiteRT, the metrics equal NumPy's over the Python `Interpreter`'s outputs;
//! - the reference interpreter's simulated int8 tensors stay within one quantization
//!   step of LiteRT's integer kernels on every int8 testdata model;
//! - a deliberately mis-quantized layer comes first in the tensor list;
//! - non-float outputs are compared by agreement; outputs pair up by signature name;
//! - the runners hand back inputs and repeated tensors;
//! - `--html`: one chart mark per compared tensor, the broken layer lowest, nothing
//!   loaded from outside;
//! - the command line: text, JSON, --top, --sort, and exit code 2 with a clear message
//!   for models that do not match, data of the wrong shape, an unknown runtime, a
//!   missing LiteRT library.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tflquant::calib::{SampleOptions, Samples};
use tflquant::compare::{self, Options, Report, Runner, Runtime};
use tflquant::fb::{self, BuiltinOperator, TensorType};
use tflquant::interp::Value;
use tflquant::ir::{Model, Operator, Tensor};
use tflquant::litert::{LiteRt, LoadOptions, OpenOptions};
use tflquant::writer::{self, WriteOptions};

use crate::common::*;

/// Relative agreement required between our metrics and NumPy's (both in float64 over
/// the same runtime outputs; only the summation order differs).
const REL_TOL: f64 = 1e-6;

/// Fraction of elements the simulation must hold within one quantization step.
const ONE_STEP_FRACTION: f64 = 0.99;

/// Runs the binary with the test runtime's Python (LiteRT is found through it).
fn cli<S: AsRef<OsStr>>(args: &[S]) -> (i32, String, String) {
    let o = tflquant()
        .args(args)
        .env("TFLQUANT_PYTHON", python())
        .env_remove("TFLQUANT_LITERT_LIB")
        .output()
        .expect("running tflquant");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `["compare", FLOAT, QUANT, "--data", DATA, extra...]` as owned arguments.
fn compare_args(float: &Path, quant: &Path, data: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "compare".into(),
        float.into(),
        quant.into(),
        "--data".into(),
        data.into(),
    ];
    v.extend(extra.iter().map(OsString::from));
    v
}

fn lite() -> LiteRt {
    LiteRt::load(&LoadOptions {
        python: Some(python().to_path_buf()),
        ..Default::default()
    })
    .expect("LiteRT runtime (run the tests with ./scripts/test)")
}

fn write(m: &Model, path: &Path) -> PathBuf {
    let mut m = m.clone();
    m.source = None;
    writer::write_path(&m, path, &WriteOptions::default()).unwrap();
    path.to_path_buf()
}

/// `int8_quantized_cnn.tflite` with the weight and bias scales of the layer whose output
/// name starts with `layer` multiplied by `factor`: the layer's real outputs come out
/// `factor` times too large (then clipped to the int8 range), on LiteRT and in the
/// simulation alike.
fn mis_quantized(layer: &str, factor: f32, dir: &Path) -> PathBuf {
    let mut m = tflquant::read_path(testdata("int8_quantized_cnn.tflite")).unwrap();
    let sg = &mut m.subgraphs[0];
    let op = sg
        .operators
        .iter()
        .find(|op| sg.tensors[op.outputs[0] as usize].name.starts_with(layer))
        .unwrap_or_else(|| panic!("no operator produces {layer}*"))
        .clone();
    for t in [op.inputs[1], op.inputs[2]] {
        let q = sg.tensors[t as usize].quant.as_mut().unwrap();
        q.scale.iter_mut().for_each(|s| *s *= factor);
    }
    write(&m, &dir.join(format!("mis_quantized_x{factor}.tflite")))
}

/// `model` with an ARG_MAX (int64, axis 1) of output 0 appended as a second output.
fn with_argmax(model: &Path, dir: &Path, name: &str) -> PathBuf {
    let mut m = tflquant::read_path(model).unwrap();
    let axis = m.add_buffer(1i32.to_le_bytes().to_vec());
    let code = m.ensure_opcode(BuiltinOperator::ArgMax, 1);
    let sg = &mut m.subgraphs[0];
    let scores = sg.outputs[0];
    let mut axis_t = Tensor::new("argmax/axis", TensorType::Int32, vec![1]);
    axis_t.buffer = axis;
    let axis_t = sg.add_tensor(axis_t);
    let out = sg.add_tensor(Tensor::new("argmax", TensorType::Int64, vec![1]));
    let mut op = Operator::new(code, vec![scores, axis_t], vec![out]);
    op.builtin_options = Some(fb::BuiltinOptions::ArgMaxOptions(Box::new(
        fb::ArgMaxOptions {
            output_type: TensorType::Int64,
        },
    )));
    sg.operators.push(op);
    sg.outputs.push(out);
    m.signature_defs.clear();
    write(&m, &dir.join(name))
}

fn compare_lib(float: &Path, quant: &Path, data: &str, runtime: Runtime) -> Report {
    let (f, q) = (
        tflquant::read_path(float).unwrap(),
        tflquant::read_path(quant).unwrap(),
    );
    let opts = Options {
        runtime,
        litert: LoadOptions {
            python: Some(python().to_path_buf()),
            ..Default::default()
        },
        tensors: true,
        ..Default::default()
    };
    compare::compare(&f, &q, &testdata(data), &SampleOptions::default(), &opts)
        .unwrap_or_else(|e| panic!("{} vs {}: {e}", float.display(), quant.display()))
}

fn close(ours: &Json, numpy: &Json, what: &str) {
    match (ours.as_f64(), numpy.as_f64()) {
        (None, None) => assert!(
            ours.is_null() && numpy.is_null(),
            "{what}: {ours} vs {numpy}"
        ),
        (Some(a), Some(b)) => {
            let tol = REL_TOL * a.abs().max(b.abs()) + 1e-300;
            assert!((a - b).abs() <= tol, "{what}: ours {a:e}, NumPy {b:e}");
        }
        _ => panic!("{what}: ours {ours}, NumPy {numpy}"),
    }
}

#[test]
fn litert_metrics_equal_numpy_on_the_python_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    // Our own weight quantization too, so a model LiteRT sees for the first time is in.
    let ours = dir.path().join("mlp.weight-int8.tflite");
    let (code, _, err) = cli(&[
        os("quantize"),
        testdata("mlp_large_fc.tflite").as_os_str(),
        os("-o"),
        ours.as_os_str(),
        os("--mode"),
        os("weight-int8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let cases: Vec<(PathBuf, PathBuf, &str)> = vec![
        (
            testdata("cnn_digits.tflite"),
            testdata("int8_quantized_cnn.tflite"),
            "cnn_digits.test.npy",
        ),
        (
            testdata("cnn_digits.tflite"),
            testdata("int8_quantized_cnn_int8io.tflite"),
            "cnn_digits.test.npy",
        ),
        (
            testdata("cnn_digits.tflite"),
            testdata("cnn_digits.tf_dynamic.tflite"),
            "cnn_digits.test.npy",
        ),
        (
            testdata("cnn_digits.tflite"),
            testdata("cnn_digits.tf_float16.tflite"),
            "cnn_digits.test.npy",
        ),
        (
            testdata("mlp_large_fc.tflite"),
            testdata("mlp_large_fc.tf_dynamic.tflite"),
            "mlp_large_fc.test.npy",
        ),
        (
            testdata("mlp_large_fc.tflite"),
            ours,
            "mlp_large_fc.test.npy",
        ),
        // Two inputs, 23 outputs, identical: every SQNR is +inf (null), every MSE 0.
        (
            testdata("ops_elementwise.tflite"),
            testdata("ops_elementwise.tflite"),
            "ops_elementwise.test.npz",
        ),
    ];
    for (float, quant, data) in cases {
        let name = format!(
            "{} vs {}",
            float.file_name().unwrap().to_string_lossy(),
            quant.file_name().unwrap().to_string_lossy()
        );
        // One .npz with `input_<i>` arrays feeds both sides.
        let fm = tflquant::read_path(&float).unwrap();
        let inputs = load_samples(data, &fm, usize::MAX);
        let npz = dir.path().join("inputs.npz");
        let named: Vec<(String, tflquant::data::Array)> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, a)| (format!("input_{i}"), a))
            .collect();
        tflquant::data::write_npz(&npz, &named).unwrap();

        let (code, out, err) = cli(&[
            os("compare"),
            float.as_os_str(),
            quant.as_os_str(),
            os("--data"),
            npz.as_os_str(),
            os("--runtime"),
            os("litert"),
            os("--json"),
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        let ours: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(ours["runtime"], "litert");
        assert_eq!(ours["litert"]["kernels"], "XNNPACK", "{name}");

        let result = dir.path().join("numpy.json");
        let o = std::process::Command::new(python())
            .arg(root().join("tests/litert_helper.py"))
            .args([OsStr::new("metrics"), float.as_os_str(), quant.as_os_str()])
            .args([npz.as_os_str(), result.as_os_str()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let numpy: Json = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();

        let (a, b) = (
            ours["outputs"].as_array().unwrap(),
            numpy["outputs"].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{name}: output count");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            for key in ["sqnr_db", "mse", "max_abs", "cosine", "top1"] {
                close(&x[key], &y[key], &format!("{name}: output {i} {key}"));
            }
        }
        eprintln!(
            "{name}: {} outputs agree, first SQNR {}",
            a.len(),
            a[0]["sqnr_db"]
        );
    }
}

/// Every testdata model with int8 activations (tensors an op produces, int8 with
/// quantization parameters).
fn int8_models() -> Vec<PathBuf> {
    all_models()
        .into_iter()
        .filter(|p| {
            let m = tflquant::read_path(p).unwrap();
            let sg = &m.subgraphs[0];
            let produced = sg.producers();
            sg.tensors.iter().enumerate().any(|(i, t)| {
                produced[i].is_some() && t.dtype == TensorType::Int8 && t.quantized().is_some()
            })
        })
        .collect()
}

#[test]
fn reference_simulation_is_within_one_step_of_litert_on_every_int8_model() {
    let models = int8_models();
    assert!(models.len() >= 2, "int8 models: {models:?}");
    let lite = lite();
    for path in models {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let model = tflquant::read_path(&path).unwrap();
        let sg = &model.subgraphs[0];
        let produced = sg.producers();
        // Every int8 activation, the integer outputs included.
        let int8: Vec<usize> = (0..sg.tensors.len())
            .filter(|&i| {
                let t = &sg.tensors[i];
                produced[i].is_some() && t.dtype == TensorType::Int8 && t.quantized().is_some()
            })
            .collect();
        let outputs: Vec<usize> = sg.outputs.iter().map(|&t| t as usize).collect();
        let mut reference = Runner::reference(&model, &int8).unwrap();
        let mut litert = Runner::litert(&lite, &model, &int8, &OpenOptions::default()).unwrap();
        let data = manifest_entry(&name).unwrap()["test"]
            .as_str()
            .unwrap()
            .to_string();
        let samples = Samples::open(&testdata(&data), &model, &SampleOptions::default()).unwrap();
        let (mut total, mut within, mut out_total, mut out_within) = (0usize, 0usize, 0, 0);
        for s in samples {
            let s: Vec<Value> = s.unwrap();
            let (a, b) = (reference.run(&s).unwrap(), litert.run(&s).unwrap());
            for (k, &t) in int8.iter().enumerate() {
                let (x, y) = (
                    a.tensors[k].as_ref().unwrap(),
                    b.tensors[k].as_ref().unwrap(),
                );
                let (x, y) = (x.data.to_i64_vec().unwrap(), y.data.to_i64_vec().unwrap());
                assert_eq!(x.len(), y.len(), "{name}: tensor {t}");
                let ok = x
                    .iter()
                    .zip(&y)
                    .filter(|(p, q)| (*p - *q).abs() <= 1)
                    .count();
                total += x.len();
                within += ok;
                if outputs.contains(&t)
                    || sg.outputs.iter().any(|&o| {
                        // The int8 tensor a final DEQUANTIZE turns into the float output.
                        produced[o as usize]
                            .is_some_and(|op| sg.operators[op].inputs[0] as usize == t)
                    })
                {
                    out_total += x.len();
                    out_within += ok;
                }
            }
        }
        let frac = within as f64 / total as f64;
        let out_frac = out_within as f64 / out_total.max(1) as f64;
        eprintln!(
            "{name}: {} int8 tensors, {:.3}% of elements within one step ({:.3}% of the output's)",
            int8.len(),
            frac * 100.0,
            out_frac * 100.0
        );
        assert!(out_total > 0, "{name}: no integer output compared");
        assert!(
            frac >= ONE_STEP_FRACTION,
            "{name}: {:.3}% within one step",
            frac * 100.0
        );
        assert!(
            out_frac >= ONE_STEP_FRACTION,
            "{name}: output {:.3}%",
            out_frac * 100.0
        );
    }
}

#[test]
fn runners_hand_back_inputs_and_tensors_asked_for_twice() {
    let path = testdata("int8_quantized_cnn_int8io.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let lite = lite();
    // The int8 input, a conv output twice, the output.
    let asked = [0, 13, 13, 20];
    let mut runners = [
        Runner::reference(&model, &asked).unwrap(),
        Runner::litert(&lite, &model, &asked, &OpenOptions::default()).unwrap(),
    ];
    let mut samples = Samples::open(
        &testdata("cnn_digits.test.npy"),
        &model,
        &SampleOptions::default(),
    )
    .unwrap();
    let s = samples.next().unwrap().unwrap();
    for r in &mut runners {
        let run = r.run(&s).unwrap();
        let t: Vec<&Value> = run.tensors.iter().map(|v| v.as_ref().unwrap()).collect();
        assert_eq!(t[0], &s[0], "the input comes back as given");
        assert_eq!(t[1], t[2]);
        assert_eq!(t[1].shape, [1, 8, 8, 16]);
        assert_eq!(t[3], &run.outputs[0]);
    }
}

#[test]
fn a_mis_quantized_layer_is_ranked_first_on_both_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let float = testdata("cnn_digits.tflite");
    // A conv in the middle (its error propagates: the pool after it ends up with a lower
    // SQNR than the conv itself) and the first fully connected layer.
    for (layer, factor) in [("cnn_digits/conv2/", 4.0), ("cnn_digits/fc1/", 0.25)] {
        let quant = mis_quantized(layer, factor, dir.path());
        for runtime in [Runtime::Reference, Runtime::LiteRt] {
            let r = compare_lib(&float, &quant, "cnn_digits.test.npy", runtime);
            let t = r.tensors.as_ref().unwrap();
            assert!(
                t[0].name.starts_with(layer),
                "{layer} ×{factor} on {runtime:?}: first is {} ({:?} dB local)",
                t[0].name,
                t[0].local_sqnr_db
            );
            let (first, second) = (t[0].local.unwrap(), t[1].local.unwrap());
            assert!(
                first < 0.0 || first + 3.0 < second,
                "{layer}: {first} vs {second}"
            );
            // Sorted by local SQNR, ascending.
            let locals: Vec<f64> = t.iter().filter_map(|e| e.local).collect();
            assert!(locals.windows(2).all(|w| w[0] <= w[1]), "{locals:?}");
        }
    }
    // Through the command line: the first line of the tensor table names the layer.
    let quant = mis_quantized("cnn_digits/conv2/", 4.0, dir.path());
    let (code, out, err) = cli(&[
        os("compare"),
        float.as_os_str(),
        quant.as_os_str(),
        os("--data"),
        testdata("cnn_digits.test.npy").as_os_str(),
        os("--tensors"),
        os("--top"),
        os("1"),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim_start().starts_with("local_db"))
        .unwrap();
    assert!(lines[header + 1].contains("CONV_2D"), "{out}");
    assert!(lines[header + 1].contains("cnn_digits/conv2/Relu"), "{out}");
    assert_eq!(lines.len(), header + 2, "--top 1 shows one tensor:\n{out}");
    // --sort sqnr shows the accumulated view: the pool after the conv is worse.
    let (code, out, _) = cli(&[
        os("compare"),
        float.as_os_str(),
        quant.as_os_str(),
        os("--data"),
        testdata("cnn_digits.test.npy").as_os_str(),
        os("--tensors"),
        os("--sort"),
        os("sqnr"),
        os("--json"),
    ]);
    assert_eq!(code, 0);
    let j: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(j["sorted_by"], "sqnr");
    let sqnr: Vec<f64> = j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["sqnr_db"].as_f64())
        .collect();
    assert!(sqnr.windows(2).all(|w| w[0] <= w[1]), "{sqnr:?}");
    assert_eq!(j["tensors"][0]["name"], "cnn_digits/avgpool/AvgPool");
}

#[test]
fn non_float_outputs_are_compared_by_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let float = with_argmax(
        &testdata("cnn_digits.tflite"),
        dir.path(),
        "float_argmax.tflite",
    );
    let bad = mis_quantized("cnn_digits/conv2/", 4.0, dir.path());
    let quant = with_argmax(&bad, dir.path(), "quant_argmax.tflite");
    for runtime in [Runtime::Reference, Runtime::LiteRt] {
        let r = compare_lib(&float, &quant, "cnn_digits.test.npy", runtime);
        let (scores, argmax) = (&r.outputs[0], &r.outputs[1]);
        assert_eq!(argmax.compared_as, "exact");
        assert_eq!(argmax.quant_dtype, "INT64");
        assert_eq!(
            (argmax.sqnr_db, argmax.mse, argmax.cosine),
            (None, None, None)
        );
        assert_eq!(argmax.top1, None);
        let agree = argmax.agreement.unwrap();
        // The argmax of the scores agrees exactly as often as the scores' top-1.
        assert_eq!(Some(agree), scores.top1, "{runtime:?}");
        assert!(agree < 1.0 && agree > 0.5, "{runtime:?}: {agree}");
        assert_eq!(argmax.elements, 32);
    }
}

#[test]
fn outputs_are_matched_by_signature_name_when_both_models_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let float = testdata("ops_elementwise.tflite");
    // The same model with its outputs in reverse order; the signature still names them.
    let mut m = tflquant::read_path(&float).unwrap();
    m.subgraphs[0].outputs.reverse();
    let reversed = write(&m, &dir.path().join("reversed.tflite"));
    let r = compare_lib(
        &float,
        &reversed,
        "ops_elementwise.test.npz",
        Runtime::Reference,
    );
    assert_eq!(r.outputs.len(), 23);
    for (i, e) in r.outputs.iter().enumerate() {
        assert!(e.identical, "output {i} {:?} vs {:?}", e.name, e.quant_name);
        assert_eq!(e.name, e.quant_name);
        assert_eq!(e.output, Some(i));
    }
    // Without a signature on one side, outputs pair up by position.
    m.signature_defs.clear();
    let unsigned = write(&m, &dir.path().join("unsigned.tflite"));
    let (f, q) = (
        tflquant::read_path(&float).unwrap(),
        tflquant::read_path(&unsigned).unwrap(),
    );
    let pairs = compare::match_outputs(&f, &q).unwrap();
    assert!(pairs.iter().all(|p| p.output.is_some_and(|(i, j)| i == j)));
    let r = compare_lib(
        &float,
        &unsigned,
        "ops_elementwise.test.npz",
        Runtime::Reference,
    );
    assert!(
        r.outputs
            .iter()
            .any(|e| e.name != e.quant_name && !e.identical)
    );
}

/// Lines of the text report, for the checks below.
fn text_report(extra: &[&str]) -> (String, Vec<String>) {
    let (code, out, err) = cli(&compare_args(
        &testdata("cnn_digits.tflite"),
        &testdata("int8_quantized_cnn.tflite"),
        &testdata("cnn_digits.test.npy"),
        extra,
    ));
    assert_eq!(code, 0, "{err}");
    let lines = out.lines().map(String::from).collect();
    (out, lines)
}

#[test]
fn text_report_shows_outputs_then_tensors() {
    let (out, lines) = text_report(&[]);
    assert!(
        lines[0].starts_with("float    ") && lines[0].ends_with("cnn_digits.tflite"),
        "{out}"
    );
    assert!(lines[1].starts_with("quant    "), "{out}");
    assert!(
        lines[2].starts_with("runtime  reference: tflquant's interpreter"),
        "{out}"
    );
    assert_eq!(lines[3], "samples  32");
    assert_eq!(lines[5], "outputs");
    let cols: Vec<&str> = lines[6].split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "#", "sqnr_db", "mse", "max_abs", "cosine", "top1", "agree", "name"
        ]
    );
    let row: Vec<&str> = lines[7].split_whitespace().collect();
    assert_eq!(row[0], "0");
    assert!(row[1].parse::<f64>().unwrap() > 30.0, "{out}");
    assert_eq!(row[5], "100.00%");
    assert_eq!(row[7], "StatefulPartitionedCall:0");
    assert_eq!(lines.len(), 8, "no tensors without --tensors:\n{out}");

    let (out, lines) = text_report(&["--tensors"]);
    assert_eq!(
        lines[9],
        "tensors  9 in both models (of 11 activations of the quantized model), worst first by \
         local_db (error added since the compared tensors upstream)",
        "{out}"
    );
    let cols: Vec<&str> = lines[10].split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "local_db", "sqnr_db", "mse", "max_abs", "cosine", "agree", "op", "name"
        ]
    );
    assert_eq!(lines.len(), 11 + 9, "{out}");
    // Every activation of the float model that the int8 model also has, once.
    for name in [
        "cnn_digits/conv1/Relu",
        "cnn_digits/maxpool/MaxPool",
        "cnn_digits/flatten/Reshape",
    ] {
        assert_eq!(
            lines[11..].iter().filter(|l| l.contains(name)).count(),
            1,
            "{name}\n{out}"
        );
    }
    // The QUANTIZE output the converter added has no float counterpart.
    assert!(!out.contains("tfl.quantize"), "{out}");
}

#[test]
fn json_report_has_the_documented_keys_and_top_keeps_the_worst() {
    let (out, _) = text_report(&["--tensors", "--json"]);
    let j: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(j["runtime"], "reference");
    assert_eq!(j["samples"], 32);
    assert_eq!(j["sorted_by"], "local");
    assert_eq!(j["tensors_compared"], 9);
    assert_eq!(j["quant_activations"], 11);
    let keys = [
        "name",
        "quant_name",
        "float_tensor",
        "quant_tensor",
        "op",
        "op_index",
        "shape",
        "float_dtype",
        "quant_dtype",
        "compared_as",
        "elements",
        "local_sqnr_db",
        "sqnr_db",
        "mse",
        "max_abs",
        "cosine",
        "identical",
        "top1",
        "agreement",
    ];
    let out0 = &j["outputs"][0];
    for k in keys {
        assert!(out0.get(k).is_some(), "outputs[0] lacks {k}: {out0}");
    }
    assert_eq!(out0["output"], 0);
    assert_eq!(out0["name"], "StatefulPartitionedCall:0");
    assert_eq!(out0["shape"], serde_json::json!([1, 10]));
    assert_eq!(out0["elements"], 320);
    assert_eq!(out0["top1"], 1.0);
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 9);
    for t in tensors {
        for k in keys {
            assert!(t.get(k).is_some(), "a tensor lacks {k}: {t}");
        }
        assert!(t.get("output").is_none());
        // The DEQUANTIZE that makes the float output is the only float tensor.
        let float_out = t["name"] == "StatefulPartitionedCall:0";
        assert_eq!(
            t["quant_dtype"],
            if float_out { "FLOAT32" } else { "INT8" },
            "{t}"
        );
        assert!(t["cosine"].as_f64().unwrap() > 0.99, "{t}");
    }

    let (out, _) = text_report(&["--tensors", "--json", "--top", "3"]);
    let top: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(top["tensors_compared"], 9);
    assert_eq!(top["tensors"].as_array().unwrap()[..], tensors[..3]);

    // --top needs --tensors; N is at least 1.
    for extra in [&["--top", "3"][..], &["--tensors", "--top", "0"]] {
        let (code, _, err) = cli(&compare_args(
            &testdata("cnn_digits.tflite"),
            &testdata("int8_quantized_cnn.tflite"),
            &testdata("cnn_digits.test.npy"),
            extra,
        ));
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains("--top"), "{err}");
    }
}

/// Runs `compare` expecting exit code 2; returns stderr.
fn refused(float: &Path, quant: &Path, data: &Path, extra: &[&str]) -> String {
    let (code, out, err) = cli(&compare_args(float, quant, data, extra));
    assert_eq!(code, 2, "{extra:?}: stdout {out}\nstderr {err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn mismatched_models_are_refused_with_both_sides_named() {
    let dir = tempfile::tempdir().unwrap();
    let cnn = testdata("cnn_digits.tflite");
    let data = testdata("cnn_digits.test.npy");

    // Another input shape.
    let err = refused(&cnn, &testdata("mlp_large_fc.tflite"), &data, &[]);
    assert!(err.contains("the models do not match"), "{err}");
    assert!(
        err.contains("input 0 is [1,8,8,1]") && err.contains("[1,64]"),
        "{err}"
    );

    // One output more.
    let mut m = tflquant::read_path(&cnn).unwrap();
    m.subgraphs[0].outputs.push(18);
    m.signature_defs.clear();
    let two = write(&m, &dir.path().join("two_outputs.tflite"));
    let err = refused(&cnn, &two, &data, &[]);
    assert!(
        err.contains("has 1 output,") && err.contains("has 2 outputs"),
        "{err}"
    );
    assert!(
        err.contains("cnn_digits.tflite") && err.contains("two_outputs.tflite"),
        "{err}"
    );

    // Same count, another shape: the FC before the classifier as the output.
    let mut m = tflquant::read_path(&cnn).unwrap();
    m.subgraphs[0].outputs = vec![18];
    m.signature_defs.clear();
    let other = write(&m, &dir.path().join("other_output.tflite"));
    let err = refused(&cnn, &other, &data, &[]);
    assert!(
        err.contains("output 0 is [1,10]") && err.contains("but [1,64]"),
        "{err}"
    );

    // A float output against an integer one without quantization parameters.
    let argmax = with_argmax(&cnn, dir.path(), "argmax.tflite");
    let mut m = tflquant::read_path(&argmax).unwrap();
    m.subgraphs[0].outputs.swap(0, 1);
    let swapped = write(&m, &dir.path().join("swapped.tflite"));
    let err = refused(&argmax, &swapped, &data, &[]);
    assert!(err.contains("do not match: output 0"), "{err}");
}

#[test]
fn bad_data_runtime_and_library_are_usage_errors() {
    let cnn = testdata("cnn_digits.tflite");
    let int8 = testdata("int8_quantized_cnn.tflite");
    let data = testdata("cnn_digits.test.npy");

    // Data of another model.
    let err = refused(&cnn, &int8, &testdata("mlp_large_fc.test.npy"), &[]);
    assert!(err.contains("mlp_large_fc.test.npy"), "{err}");
    assert!(err.contains("expected data of shape [N,8,8,1]"), "{err}");
    // No such file.
    let err = refused(&cnn, &int8, Path::new("/nonexistent/data.npy"), &[]);
    assert!(err.contains("/nonexistent/data.npy"), "{err}");

    let err = refused(&cnn, &int8, &data, &["--runtime", "tpu"]);
    assert!(
        err.contains("'tpu'") && err.contains("reference, litert"),
        "{err}"
    );

    let err = refused(
        &cnn,
        &int8,
        &data,
        &[
            "--runtime",
            "litert",
            "--litert-lib",
            "/nonexistent/libLiteRt.so",
        ],
    );
    assert!(err.contains("/nonexistent/libLiteRt.so"), "{err}");
    assert!(err.contains("pip install ai-edge-litert==2.3.0"), "{err}");

    let err = refused(
        &cnn,
        &int8,
        &data,
        &["--litert-lib", "/nonexistent/libLiteRt.so"],
    );
    assert!(err.contains("--runtime litert"), "{err}");

    let err = refused(
        &cnn,
        &testdata("custom_op.tflite"),
        &testdata("mlp_large_fc.test.npy"),
        &[],
    );
    assert!(err.contains("do not match"), "{err}");
}

#[test]
fn quantize_validate_prints_the_output_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.tflite");
    let base = |extra: &[&str]| {
        let mut args: Vec<OsString> = vec![
            "quantize".into(),
            testdata("cnn_digits.tflite").into(),
            "-o".into(),
            out.clone().into(),
            "--mode".into(),
            "weight-int8".into(),
            "--validate".into(),
            testdata("cnn_digits.test.npy").into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        cli(&args)
    };
    for runtime in ["reference", "litert"] {
        let (code, stdout, err) = base(&["--validate-runtime", runtime]);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines[0].starts_with("validation: "), "{stdout}");
        assert!(
            lines[0].ends_with(&format!("(32 samples, runtime {runtime})")),
            "{stdout}"
        );
        assert!(
            lines[1].split_whitespace().eq([
                "#", "sqnr_db", "mse", "max_abs", "cosine", "top1", "agree", "name"
            ]),
            "{stdout}"
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert!(row[1].parse::<f64>().unwrap() > 30.0, "{stdout}");
        assert_eq!(row[7], "StatefulPartitionedCall:0");
    }
    // With the JSON report on stdout, the summary goes to stderr.
    let (code, stdout, err) = base(&["--report", "-"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Json>(&stdout).expect("stdout holds only the report");
    assert!(err.contains("validation: "), "{err}");
    // INT4 weights: the reference interpreter cannot run them; the message says the model
    // was written and how to validate it anyway, which works.
    let int4 = dir.path().join("q4.tflite");
    let int4_args = |runtime: &str| -> Vec<OsString> {
        vec![
            "quantize".into(),
            testdata("mlp_large_fc.tflite").into(),
            "-o".into(),
            int4.clone().into(),
            "--mode".into(),
            "weight-int4".into(),
            "--validate".into(),
            testdata("mlp_large_fc.test.npy").into(),
            "--validate-runtime".into(),
            runtime.into(),
        ]
    };
    let (code, _, err) = cli(&int4_args("reference"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("q4.tflite was written, but --validate"),
        "{err}"
    );
    assert!(err.contains("--validate-runtime litert"), "{err}");
    assert!(int4.exists());
    let (code, stdout, err) = cli(&int4_args("litert"));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("StatefulPartitionedCall:0"), "{stdout}");
    // Without --validate, --validate-runtime is refused.
    let (code, _, err) = cli(&[
        os("quantize"),
        testdata("cnn_digits.tflite").as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--mode"),
        os("weight-int8"),
        os("--validate-runtime"),
        os("litert"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--validate"), "{err}");
}

/// The `data-*` attributes of every chart mark of an HTML page (a plain scan: the page is
/// ours and writes every mark as `<circle class="mark" ...>` on one line; python/tests
/// parse it with a real HTML parser).
fn html_marks(page: &str) -> Vec<std::collections::HashMap<String, String>> {
    page.lines()
        .filter(|l| l.starts_with("<circle class=\"mark\""))
        .map(|l| {
            let mut attrs = std::collections::HashMap::new();
            for part in l.split("\" ").flat_map(|p| p.split(" data-")) {
                if let Some((k, v)) = part.split_once("=\"") {
                    attrs.insert(k.trim_start_matches("data-").to_string(), v.to_string());
                }
            }
            attrs
        })
        .collect()
}

#[test]
fn html_page_marks_every_tensor_and_puts_the_broken_layer_lowest() {
    let dir = tempfile::tempdir().unwrap();
    let broken = mis_quantized("cnn_digits/conv2", 4.0, dir.path());
    let page = dir.path().join("report.html");
    let args = compare_args(
        &testdata("cnn_digits.tflite"),
        &broken,
        &testdata("cnn_digits.test.npy"),
        &[
            "--tensors",
            "--json",
            "--top",
            "2",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    let (code, stdout, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    let doc: Json = serde_json::from_str(&stdout).unwrap();
    // --top cuts what is printed, not the page.
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 2);
    let n = doc["tensors_compared"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(&page).unwrap();
    let marks = html_marks(&text);
    assert_eq!(marks.len(), n, "one mark per compared tensor");
    assert!(n >= 8);
    // Self-contained: nothing is loaded from anywhere.
    for bad in ["src=", "href=", "http://", "https://", "<link", "@import"] {
        assert!(!text.contains(bad), "the page contains {bad}");
    }
    // The lowest mark is the layer the JSON ranks worst: the broken conv.
    let worst = marks
        .iter()
        .filter_map(|m| Some((m.get("local-sqnr-db")?.parse::<f64>().ok()?, m)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    assert!(
        worst.1["name"].starts_with("cnn_digits/conv2"),
        "{:?}",
        worst.1
    );
    assert_eq!(worst.1["op"], "CONV_2D");
    let first = &doc["tensors"][0];
    assert!((worst.0 - first["local_sqnr_db"].as_f64().unwrap()).abs() < 1e-3);
    // quantize --html needs --validate.
    let (code, _, err) = cli(&[
        os("quantize"),
        testdata("cnn_digits.tflite").as_os_str(),
        os("-o"),
        dir.path().join("q.tflite").as_os_str(),
        os("--mode"),
        os("dynamic"),
        os("--html"),
        page.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--validate"), "{err}");
}
