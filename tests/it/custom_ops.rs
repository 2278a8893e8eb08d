//! Models with custom operators (issue 12): the MediaPipe custom ops LiteRT's default
//! CPU path (XNNPACK) runs have kernels in the interpreter that match LiteRT; they stay
//! float when quantizing, between DEQUANTIZE and QUANTIZE, with the operators around
//! them integer; calibration runs on LiteRT when the interpreter lacks a kernel, with
//! the same ranges as the interpreter where both run; an op neither runtime knows is a
//! clear exit-2 error.
//!
//! Findings (ai-edge-litert 2.3.0): the Python `Interpreter` runs the three ops only
//! with its default XNNPACK delegate (the builtin resolvers report an unresolved custom
//! op); the C API (`libLiteRt.so`) runs them too (its compiled model registers stub
//! kernels so that XNNPACK takes them). XNNPACK stores argmax indices as `uint32` bits in
//! the float32 indices tensor, column-major within the window, and refuses SAME padding
//! for MaxUnpooling2D.

use std::path::Path;

use tflquant::calib::{self, CalibOptions, ObserverKind, SampleOptions, Samples};
use tflquant::compare::Runner;
use tflquant::data::{self, Array, ArrayData};
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::interp::Value;
use tflquant::ir::Model;
use tflquant::litert::{LiteRt, LoadOptions, OpenOptions};

use crate::common::*;

const CUSTOM_MODELS: &[&str] = &["custom_deconv.tflite", "custom_argmax_unpool.tflite"];

fn lite() -> LiteRt {
    LiteRt::load(&LoadOptions::default())
        .unwrap_or_else(|e| panic!("LiteRT could not be loaded ({e}); run ./scripts/test"))
}

fn data_of(name: &str, split: &str) -> String {
    manifest_entry(name).unwrap()[split]
        .as_str()
        .unwrap()
        .to_string()
}

/// Largest |a − b| relative to the largest |b| (bit patterns compared for the argmax
/// indices, which are uint32 bits in float32 tensors: must be equal).
fn rel(a: &Value, b: &Value, indices: bool) -> f64 {
    let (x, y) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    assert_eq!(x.len(), y.len());
    if indices {
        let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        return if same { 0.0 } else { f64::INFINITY };
    }
    let scale = y.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    let d = x
        .iter()
        .zip(y)
        .fold(0f64, |m, (p, q)| m.max((*p as f64 - *q as f64).abs()));
    assert!(x.iter().all(|v| v.is_finite()), "NaN/inf in our values");
    d / scale
}

/// Each custom op's outputs and the model outputs: the interpreter against LiteRT
/// (XNNPACK, the default) on every held-out sample, within 1e-5 relative.
#[test]
fn custom_op_kernels_match_litert() {
    let lite = lite();
    for &name in CUSTOM_MODELS {
        let path = testdata(name);
        let model = tflquant::read_path(&path).unwrap();
        let sg = &model.subgraphs[0];
        let custom: Vec<usize> = sg
            .operators
            .iter()
            .filter(|op| model.builtin(op) == Op::Custom)
            .flat_map(|op| op.outputs.iter().map(|&t| t as usize))
            .collect();
        assert!(!custom.is_empty(), "{name}: no custom op");
        let mut ours = Runner::reference(&model, &custom).unwrap();
        let mut theirs = Runner::litert(&lite, &model, &custom, &OpenOptions::default()).unwrap();
        let samples = Samples::open(
            &testdata(&data_of(name, "test")),
            &model,
            &SampleOptions::default(),
        )
        .unwrap();
        let (mut n, mut worst) = (0, 0f64);
        for s in samples {
            let s = s.unwrap();
            let (a, b) = (ours.run(&s).unwrap(), theirs.run(&s).unwrap());
            for (k, &t) in custom.iter().enumerate() {
                let indices = sg.tensors[t].name == "argmax_indices";
                let d = rel(
                    a.tensors[k].as_ref().unwrap(),
                    b.tensors[k].as_ref().unwrap(),
                    indices,
                );
                assert!(
                    d <= 1e-5,
                    "{name}: tensor {t} {:?}: {d:e}",
                    sg.tensors[t].name
                );
                worst = worst.max(d);
            }
            for (x, y) in a.outputs.iter().zip(&b.outputs) {
                let d = rel(x, y, false);
                assert!(d <= 1e-5, "{name}: output: {d:e}");
            }
            n += 1;
        }
        assert_eq!(n, 24, "{name}: samples");
        eprintln!("{name}: custom-op outputs within {worst:.1e} of LiteRT over {n} samples");
    }
}

/// `tflquant run` of a custom-op model matches the Python LiteRT interpreter within 1e-4.
#[test]
fn run_command_matches_litert_on_custom_op_models() {
    let dir = tempfile::tempdir().unwrap();
    for &name in CUSTOM_MODELS {
        let path = testdata(name);
        let model = tflquant::read_path(&path).unwrap();
        let out = dir.path().join(format!("{name}.npz"));
        let input = testdata(&data_of(name, "test"));
        let (code, _, err) = run_cli(&[
            "run".as_ref(),
            path.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        let ours = data::read_npz(&out).unwrap();
        let theirs = litert_run(&path, &sample_inputs(&path, &model, 24)).unwrap();
        assert_eq!(ours.len(), theirs.len());
        for ((_, a), b) in ours.iter().zip(&theirs) {
            assert_eq!(a.len(), b.len(), "{name}");
            let d = crate::interp::rel_diff(a, b);
            assert!(d <= 1e-4, "{name}: run differs from LiteRT by {d:e}");
        }
    }
}

fn float_input_of(model: &Model, t: i32) -> bool {
    model.subgraphs[0].tensors[t as usize].dtype == TensorType::Float32
}

fn real(a: &Array) -> Vec<f64> {
    match &a.data {
        ArrayData::F32(_) => a.data.to_f64(),
        d => panic!("float output expected, got {}", d.dtype_name()),
    }
}

/// int8 and int16x8: the custom ops stay float between DEQUANTIZE and QUANTIZE with the
/// reason in the report, every other operator reads and writes integers, the model runs
/// on LiteRT with finite outputs, and --strict names the custom op.
#[test]
fn custom_ops_stay_float_between_dequantize_and_quantize() {
    let dir = tempfile::tempdir().unwrap();
    for &name in CUSTOM_MODELS {
        let path = testdata(name);
        let float = tflquant::read_path(&path).unwrap();
        let calib = testdata(&data_of(name, "calib"));
        let inputs = sample_inputs(&path, &float, 24);
        let want = litert_run(&path, &inputs).unwrap();
        for (mode, int) in [("int8", TensorType::Int8), ("int16x8", TensorType::Int16)] {
            let out = dir.path().join(format!("{name}.{mode}.tflite"));
            let report = dir.path().join(format!("{name}.{mode}.json"));
            let args = [
                "--mode",
                mode,
                "--calibration",
                calib.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
            ];
            quantize_cli(&path, &out, &args).unwrap();
            let q = tflquant::read_path(&out).unwrap();
            let sg = &q.subgraphs[0];
            let producers = sg.producers();
            let consumers = |t: i32| -> Vec<Op> {
                sg.operators
                    .iter()
                    .filter(|op| op.inputs.contains(&t))
                    .map(|op| q.builtin(op))
                    .collect()
            };
            let mut customs = 0;
            for op in &sg.operators {
                let kind = q.builtin(op);
                if kind == Op::Custom {
                    customs += 1;
                    for &t in op.inputs.iter().chain(&op.outputs) {
                        assert!(
                            float_input_of(&q, t),
                            "{name} {mode}: custom op on integers"
                        );
                    }
                    // Its activation input comes from a DEQUANTIZE (or the other custom
                    // op), its outputs go to QUANTIZE (or the other custom op).
                    let src = producers[op.inputs[0] as usize]
                        .map(|p| q.builtin(&sg.operators[p]))
                        .unwrap();
                    assert!(
                        matches!(src, Op::Dequantize | Op::Custom),
                        "{name} {mode}: custom op input from {src:?}"
                    );
                    for &t in &op.outputs {
                        for c in consumers(t) {
                            assert!(
                                matches!(c, Op::Quantize | Op::Custom),
                                "{name} {mode}: custom op output read by {c:?}"
                            );
                        }
                    }
                } else if !matches!(kind, Op::Quantize | Op::Dequantize) {
                    // Every other op computes on integers: the run's, or int16 for an
                    // operator whose output only the float model output reads (int8's
                    // wider outputs for the float side: a 16x8 tail).
                    let out_t = op.outputs[0];
                    let x = sg.tensors[op.inputs[0] as usize].dtype;
                    let y = sg.tensors[out_t as usize].dtype;
                    let float_side = consumers(out_t).iter().all(|c| *c == Op::Dequantize);
                    if int == TensorType::Int8 && y == TensorType::Int16 {
                        assert!(
                            float_side && matches!(x, TensorType::Int8 | TensorType::Int16),
                            "{name} {mode}: {kind:?} {x:?} -> {y:?} read by {:?}",
                            consumers(out_t)
                        );
                    } else {
                        assert_eq!((x, y), (int, int), "{name} {mode}: {kind:?}");
                    }
                }
            }
            assert!(customs >= 1);
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
            let reasons: Vec<&str> = r["ops"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["fate"] == "float")
                .map(|f| f["reason"].as_str().unwrap())
                .collect();
            assert_eq!(reasons.len(), customs, "{name} {mode}: {reasons:?}");
            assert!(
                reasons.iter().all(|w| w.contains("is a custom operator")),
                "{reasons:?}"
            );
            // Runs on LiteRT (sqnr_db fails on NaN/Inf). The accuracy floor of every
            // output is checked with every other model in
            // `integer::every_float_model_as_int8_and_int16x8_...`.
            let got = litert_run(&out, &inputs).unwrap();
            let s = sqnr_db(&real(&want[0]), &real(&got[0]));
            eprintln!("{name} {mode}: SQNR {s:.2} dB on LiteRT");
            // --strict names the custom op.
            let strict = dir.path().join(format!("{name}.{mode}.strict.tflite"));
            let mut sargs = args.to_vec();
            sargs.push("--strict");
            let (code, _, err) = quantize_run(&path, &strict, &sargs);
            assert_eq!(code, 2, "{name} {mode}: --strict: {err}");
            assert!(
                err.contains("CUSTOM(") && err.contains("custom operator"),
                "{err}"
            );
            assert!(!strict.exists());
        }
    }
}

/// LiteRT calibration equals the interpreter's on every float testdata model both run
/// (the C API's limits and hybrid models, whose kernels quantize activations on the fly,
/// excepted): same tensors of subgraph 0, min/max within float rounding.
#[test]
fn litert_calibration_equals_the_reference_on_every_model_both_run() {
    let lite = lite();
    let mut checked = Vec::new();
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(entry) = manifest_entry(&name) else {
            continue;
        };
        // Not run by the C API (variable tensors, value-dependent output shapes; see
        // litert_capi.rs: ops_shape_dynamic's computed RESHAPE becomes such an output
        // once exposed), or hybrid kernels that compute other values by design.
        let skip = crate::litert_capi::CAPI_LIMITS
            .iter()
            .any(|(limited, _)| *limited == name)
            || name == "ops_shape_dynamic.tflite"
            || name.contains("tf_dynamic")
            || entry["runs_in_litert"] != true;
        let model = tflquant::read_path(&path).unwrap();
        // Calibration is for float models; the interpreter simulates quantized ones.
        if skip
            || !crate::interp::is_float_model(&model)
            || !tflquant::interp::unsupported_ops(&model).is_empty()
        {
            continue;
        }
        let calib = testdata(entry["calib"].as_str().unwrap());
        let open = || Samples::open(&calib, &model, &SampleOptions::default()).unwrap();
        let ours = calib::calibrate(
            &model,
            open(),
            &CalibOptions {
                observer: ObserverKind::MinMax,
                progress: None,
            },
        )
        .unwrap();
        let theirs = lite
            .calibrate(
                &model,
                open(),
                ObserverKind::MinMax,
                calib::StreamRanges::default(),
                &OpenOptions::default(),
                &mut || {},
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours.samples, theirs.samples);
        let mut worst = 0f64;
        for r in &theirs.tensors {
            let o = ours
                .get(r.subgraph, r.tensor)
                .unwrap_or_else(|| panic!("{name}: no reference range for tensor {}", r.tensor));
            let scale = o.min.abs().max(o.max.abs()).max(1e-30) as f64;
            let d = ((o.min - r.min).abs().max((o.max - r.max).abs()) as f64) / scale;
            assert!(d <= 1e-6, "{name}: tensor {} {:?}: {d:e}", r.tensor, r.name);
            worst = worst.max(d);
        }
        // Every float tensor of subgraph 0 the interpreter calibrated, LiteRT did too
        // (but dequantized float16/sparse weights, which XNNPACK folds).
        let read = tflquant::litert::calibration_tensors(&model);
        let sg = &model.subgraphs[0];
        let n0 = ours
            .tensors
            .iter()
            .filter(|r| {
                r.subgraph == 0
                    && (read.contains(&r.tensor) || sg.inputs.contains(&(r.tensor as i32)))
            })
            .count();
        assert_eq!(theirs.tensors.len(), n0, "{name}: tensor sets differ");
        checked.push(format!("{name} ({n0} tensors, worst {worst:.1e})"));
    }
    eprintln!("{}", checked.join("\n"));
    assert!(
        checked.len() >= 19,
        "only {} models: {checked:?}",
        checked.len()
    );
    assert!(checked.iter().any(|c| c.starts_with("custom_deconv")));
}

/// `auto` calibrates a model with a custom op the interpreter has no kernel for on
/// LiteRT when LiteRT runs it; a custom op neither runtime knows is exit code 2 naming
/// the op and both ways out, and nothing is written.
#[test]
fn custom_op_neither_runtime_knows_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("custom_op.tflite");
    let calib = testdata("mlp_large_fc.calib.npy");
    for rt in ["auto", "litert"] {
        let out = dir.path().join(format!("q.{rt}.tflite"));
        let (code, _, err) = quantize_run(
            &path,
            &out,
            &[
                "--mode",
                "int8",
                "--calibration",
                calib.to_str().unwrap(),
                "--calibration-runtime",
                rt,
            ],
        );
        assert_eq!(code, 2, "{rt}: {err}");
        for want in [
            "CUSTOM(TflquantTestOp)",
            "--calibration-runtime litert --litert-lib PATH",
            "--ranges ranges.json",
            "Encountered unresolved custom op",
        ] {
            assert!(err.contains(want), "{rt}: missing {want:?} in {err}");
        }
        assert!(!out.exists());
    }
    // reference: the interpreter's error with the way to LiteRT.
    let (code, _, err) = run_cli(&[
        "calibrate".as_ref(),
        path.as_os_str(),
        "--data".as_ref(),
        calib.as_os_str(),
        "-o".as_ref(),
        dir.path().join("r.json").as_os_str(),
        "--calibration-runtime".as_ref(),
        "reference".as_ref(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CUSTOM(TflquantTestOp)") && err.contains("--calibration-runtime litert"));
    // No LiteRT at all: both ways out, and why LiteRT is missing.
    let out = dir.path().join("q.none.tflite");
    let o = tflquant()
        .arg("quantize")
        .arg(&path)
        .arg("-o")
        .arg(&out)
        .args(["--mode", "int8", "--calibration", calib.to_str().unwrap()])
        .env_remove("TFLQUANT_PYTHON")
        .env("TFLQUANT_LITERT_LIB", dir.path().join("missing.so"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot be loaded") && err.contains("--ranges ranges.json"),
        "{err}"
    );
    // The second way out: ranges from elsewhere (here the same MLP with its TANH, from
    // which custom_op.tflite was made; same tensor indices). The custom op stays float.
    let ranges = dir.path().join("mlp.json");
    let (code, _, err) = run_cli(&[
        "calibrate".as_ref(),
        testdata("no_signature_mlp.tflite").as_os_str(),
        "--data".as_ref(),
        calib.as_os_str(),
        "-o".as_ref(),
        ranges.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let out = dir.path().join("q.ranges.tflite");
    let (code, plan, err) = quantize_run(
        &path,
        &out,
        &[
            "--mode",
            "int8",
            "--ranges",
            ranges.to_str().unwrap(),
            "--dump-plan",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains(
            "CUSTOM(TflquantTestOp)   float: CUSTOM(TflquantTestOp) is a custom operator"
        ),
        "{plan}"
    );
    let q = tflquant::read_path(&out).unwrap();
    let ops: Vec<Op> = q.subgraphs[0]
        .operators
        .iter()
        .map(|op| q.builtin(op))
        .collect();
    let c = ops.iter().position(|&o| o == Op::Custom).unwrap();
    assert_eq!(
        (ops[c - 1], ops[c + 1]),
        (Op::Dequantize, Op::Quantize),
        "{ops:?}"
    );
}

/// `auto` on a custom-op model the interpreter runs stays on the interpreter; forced
/// `litert`, the same ranges come back and --validate follows it onto LiteRT.
#[test]
fn calibration_runtime_flag_chooses_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("custom_deconv.tflite");
    let calib = testdata(&data_of("custom_deconv.tflite", "calib"));
    let test = testdata(&data_of("custom_deconv.tflite", "test"));
    let mut ranges = Vec::new();
    for rt in ["auto", "litert"] {
        let out = dir.path().join(format!("{rt}.json"));
        let (code, _, err) = run_cli(&[
            "calibrate".as_ref(),
            path.as_os_str(),
            "--data".as_ref(),
            calib.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--calibration-runtime".as_ref(),
            rt.as_ref(),
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("note:"), "{rt}: {err}");
        ranges.push(calib::Ranges::load(&out).unwrap());
    }
    assert_eq!(ranges[0].tensors.len(), ranges[1].tensors.len());
    let out = dir.path().join("q.tflite");
    let (code, stdout, err) = quantize_run(
        &path,
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            calib.to_str().unwrap(),
            "--calibration-runtime",
            "litert",
            "--validate",
            test.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("runtime litert"), "{stdout}");
    check_file(&out);
}

fn check_file(p: &Path) {
    let m = tflquant::read_path(p).unwrap();
    assert!(m.subgraphs[0].operators.len() > 4);
}
