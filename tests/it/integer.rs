//! Full-integer quantization (int8, int16x8) on every float testdata model, checked on
//! the official runtime: every integer op within its derived bound of the float op on
//! LiteRT's own inputs (`op_bounds`), every output above a smoke floor (TF's SQNR − 0.5 dB
//! or one derived from the output step), no NaN/Inf in outputs or scales, the graph
//! integer wherever the rule table says it can be, interfaces, strict mode, duplicated
//! constants.

use std::path::{Path, PathBuf};

use tflquant::data::{Array, ArrayData};
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::ir::Model;
use tflquant::rules;

use crate::common::*;

/// Float models with calibration data that LiteRT runs.
fn float_models() -> Vec<(PathBuf, String)> {
    all_models()
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().to_string();
            let entry = manifest_entry(&name)?;
            let calib = entry["calib"].as_str()?.to_string();
            let float =
                !name.contains(".tf_") && !name.starts_with("int8_") && !name.starts_with("qat_");
            (float && entry["runs_in_litert"].as_bool() == Some(true)).then_some((p, calib))
        })
        .collect()
}

/// Quantizes through the CLI; returns (output, report JSON) or the error text.
fn quantize(
    input: &Path,
    calib: &str,
    dir: &Path,
    mode: &str,
    extra: &[&str],
) -> Result<(PathBuf, serde_json::Value), String> {
    let stem = input.file_stem().unwrap().to_string_lossy().to_string();
    let out = dir.join(format!(
        "{stem}.{mode}{}.tflite",
        extra.join("").replace('-', "")
    ));
    let report = dir.join(format!("{stem}.{mode}.json"));
    let data = testdata(calib);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "quantize".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--mode".as_ref(),
        mode.as_ref(),
        "--calibration".as_ref(),
        data.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    let (code, _, err) = run_cli(&args);
    if code != 0 {
        return Err(err);
    }
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    Ok((out, r))
}

/// Real values of an output as the caller sees them: integer outputs (integer
/// interface) are dequantized with the output tensor's parameters.
fn real_outputs(model: &Model, outs: Vec<Array>) -> Vec<Vec<f64>> {
    let sg = &model.subgraphs[0];
    outs.into_iter()
        .zip(&sg.outputs)
        .map(|(a, &t)| {
            let t = &sg.tensors[t as usize];
            let v = a.data.to_f64();
            match (t.dtype, t.quantized()) {
                (TensorType::Int8 | TensorType::Uint8 | TensorType::Int16, Some(q)) => v
                    .iter()
                    .map(|&x| (x - q.zero_point[0] as f64) * q.scale[0] as f64)
                    .collect(),
                _ => v,
            }
        })
        .collect()
}

/// Per output: SQNR (dB) for real-valued outputs, the fraction of equal elements for
/// integer/boolean ones.
#[derive(Debug, Clone)]
enum Metric {
    Sqnr(f64),
    Agreement(f64),
}

fn metrics(
    float: &Model,
    float_out: &[Array],
    quant: &Model,
    quant_out: Vec<Array>,
) -> Vec<Metric> {
    let fo = real_outputs(float, float_out.to_vec());
    let qo = real_outputs(quant, quant_out);
    float_out
        .iter()
        .zip(fo.iter().zip(&qo))
        .map(|(a, (f, q))| match a.data {
            ArrayData::F32(_) | ArrayData::F64(_) => Metric::Sqnr(sqnr_db(f, q)),
            _ => Metric::Agreement(
                f.iter().zip(q).filter(|(x, y)| x == y).count() as f64 / f.len().max(1) as f64,
            ),
        })
        .collect()
}

/// Every op whose rule has a kernel at this width must compute on integers in the
/// output model, unless the report says why not and the reason is a non-float operand
/// (integer shape arithmetic) — never "no kernel" for an op the table says has one.
fn assert_integer_where_possible(name: &str, mode: &str, out: &Model, report: &serde_json::Value) {
    let bits = if mode == "int8" { 8 } else { 16 };
    for fate in report["ops"].as_array().unwrap() {
        if fate["fate"] == "float" {
            let reason = fate["reason"].as_str().unwrap();
            let op = fate["op"].as_str().unwrap();
            let has_kernel = rules::RULES
                .iter()
                .any(|r| tflquant::fb::op_name(r.op) == op && r.supports(bits));
            // "reaches 0": kept float at a singularity (LOG, RSQRT, DIV's divisor).
            // "only moves values": a value-moving op between float tensors only.
            assert!(
                !has_kernel
                    || reason.contains("not float32")
                    || reason.contains("reaches 0")
                    || reason.contains("only moves values"),
                "{name} {mode}: {op} stayed float although the rules have a kernel: {reason}"
            );
        }
    }
    // In the written model, every op with a kernel reads integer activations.
    for (si, sg) in out.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            let kind = out.builtin(op);
            let Some(rule) = rules::rule_for(kind) else {
                continue;
            };
            if !rule.supports(bits) || matches!(kind, Op::Quantize | Op::Dequantize) {
                continue;
            }
            for (pos, &t) in op.inputs.iter().enumerate() {
                let Ok(t) = usize::try_from(t) else { continue };
                let t = &sg.tensors[t];
                if rule.role(pos) == rules::Role::Activation && t.dtype == TensorType::Float32 {
                    let float_fate = report["ops"].as_array().unwrap().iter().any(|f| {
                        f["subgraph"] == si
                            && f["op"] == tflquant::fb::op_name(kind)
                            && f["fate"] == "float"
                    });
                    assert!(
                        float_fate,
                        "{name} {mode}: subgraph {si} op {oi} {kind:?} reads float {:?}",
                        t.name
                    );
                }
            }
        }
    }
}

/// Samples per model of the per-op and end-to-end checks.
const SAMPLES: usize = 8;

/// Every quantization parameter of every tensor of every subgraph is finite, every scale
/// positive, every zero point inside its type (0 for int16); the failure names the tensor.
fn check_params_finite(label: &str, m: &Model, failures: &mut Vec<String>) {
    for (si, sg) in m.subgraphs.iter().enumerate() {
        for (ti, t) in sg.tensors.iter().enumerate() {
            let Some(q) = t.quantized() else { continue };
            if let Some(s) = q.scale.iter().find(|s| !s.is_finite() || **s <= 0.0) {
                failures.push(format!(
                    "{label}: subgraph {si} tensor {ti} {:?}: scale {s}",
                    t.name
                ));
            }
            let range = match t.dtype {
                TensorType::Int8 => Some((-128, 127)),
                TensorType::Uint8 => Some((0, 255)),
                // LiteRT's int16 kernels take symmetric parameters only.
                TensorType::Int16 => Some((0, 0)),
                _ => None,
            };
            if let Some((lo, hi)) = range
                && let Some(z) = q.zero_point.iter().find(|&&z| z < lo || z > hi)
            {
                failures.push(format!(
                    "{label}: subgraph {si} tensor {ti} {:?}: zero point {z} outside {lo}..={hi}",
                    t.name
                ));
            }
        }
    }
}

/// The TF converter's model of the same float model in this mode, if testdata has one.
fn tf_reference(path: &Path, mode: &str) -> Option<PathBuf> {
    let stem = path.file_stem()?.to_string_lossy().to_string();
    let p = testdata(&format!("{stem}.tf_{mode}.tflite"));
    let name = p.file_name()?.to_string_lossy().to_string();
    (p.exists() && manifest_entry(&name)?["runs_in_litert"].as_bool() == Some(true)).then_some(p)
}

/// Per output: the metric, or a failure when a float output holds NaN/Inf.
fn output_metrics(
    label: &str,
    float: &Model,
    float_out: &[Array],
    quant: &Model,
    quant_out: Vec<Array>,
    failures: &mut Vec<String>,
) -> Vec<Option<Metric>> {
    let sg = &quant.subgraphs[0];
    for (k, a) in quant_out.iter().enumerate() {
        if let Some(i) = a.data.to_f64().iter().position(|v| !v.is_finite()) {
            failures.push(format!(
                "{label}: output {k} {:?} holds a non-finite value at element {i}",
                sg.tensors[sg.outputs[k] as usize].name
            ));
            return vec![None; float_out.len()];
        }
    }
    metrics(float, float_out, quant, quant_out)
        .into_iter()
        .map(Some)
        .collect()
}

/// RMS error, in 8-bit output steps, of the end-to-end smoke floor of an output
/// without a TF reference (see [`step_floor_db`]).
const SMOKE_RMS_STEPS: f64 = 32.0;

/// The smoke floor of a float output without a TF reference, from the output's 8-bit
/// quantization step `step = (max - min) / 255` of the float reference over the samples
/// (8 bits in both modes: int16x8 keeps int8 weights): the SQNR the output would have if
/// its RMS error were [`SMOKE_RMS_STEPS`] such steps, 10·log10(mean(r²) / (32·step)²).
/// Requantizing once costs step/√12 RMS; 32 steps leaves room for the per-op errors
/// (bounded by `op_bounds::K_TABLE`) accumulating through the layers and for ops kept
/// float on quantized inputs, which amplify their input's error (EXP, POW, FLOOR_DIV:
/// measured 14.1 dB on `ops_elementwise` int8 output 8 against a 16-step floor of 18.0), and still fails a scrambled output (wrong scale, zero point
/// or axis: errors of the order of the signal, SQNR near 0 dB). The per-op bounds are the
/// accuracy proof; this is a smoke check.
pub(crate) fn step_floor_db(reference: &[f64]) -> f64 {
    let (lo, hi) = reference
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    let step = (hi - lo).max(f64::MIN_POSITIVE) / 255.0;
    let p = reference.iter().map(|x| x * x).sum::<f64>() / reference.len().max(1) as f64;
    10.0 * (p / (SMOKE_RMS_STEPS * step).powi(2)).log10()
}

/// Outputs where tflquant's SQNR is more than 0.5 dB below the TF converter's model of
/// the same float model (measured with `SAMPLES` samples; reported, not excused: the
/// accuracy work is issue #15). They get the step-derived floor instead and are
/// printed on every run; an entry that is no longer below TF − 0.5 dB fails the test so
/// the list stays true. (model, mode, output index, TF dB, ours dB when listed).
const BELOW_TF: &[(&str, &str, usize, f64, f64)] = &[
    // TF keeps ELU float (its output is the float model's exactly; ELU has no 16x8
    // kernel, so it stays int8 here).
    ("ops_activation.tflite", "int8", 6, f64::INFINITY, 38.01),
    // TF keeps SPLIT_V → SUM → SUB float (exactly the float model's); the shape ops
    // whose outputs TF keeps float stay float here too (`fates::keep_float_moves`).
    ("ops_shape.tflite", "int8", 10, f64::INFINITY, 39.50),
];

/// The accuracy proof of full-integer quantization, every float testdata model × int8 /
/// int16x8: (1) every integer op of subgraph 0 within its derived bound of the float op on
/// LiteRT's own inputs (`op_bounds`); (2) every output of every model above a smoke floor:
/// the TF converter's SQNR − 0.5 dB where testdata has the TF model, else
/// [`step_floor_db`]; integer outputs agree at least as often as TF's (else in ≥ 90 % of
/// the elements); (3) no NaN/Inf in any output or any scale.
#[test]
fn every_float_model_as_int8_and_int16x8_every_op_within_its_bound_every_output_above_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut measured = Vec::new();
    let mut ops = crate::op_bounds::OpBounds::default();
    let mut n_models = 0;
    let mut skipped_ops = Vec::new();
    let mut below_tf = Vec::new();
    for (path, calib) in float_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let float = tflquant::read_path(&path).unwrap();
        let inputs = sample_inputs(&path, &float, SAMPLES);
        let float_out = litert_run(&path, &inputs).unwrap();
        n_models += 1;
        for mode in ["int8", "int16x8"] {
            let label = format!("{name} {mode}");
            let (out, report) = match quantize(&path, &calib, dir.path(), mode, &[]) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{label}: quantize fails: {e}"));
                    continue;
                }
            };
            let quant = tflquant::read_path(&out).unwrap();
            assert_integer_where_possible(&name, mode, &quant, &report);
            check_params_finite(&label, &quant, &mut failures);
            let q_in = quantize_for_integer_inputs(&quant, inputs.clone());
            // LiteRT's builtin resolver without delegates (needed to keep every tensor)
            // lacks the custom ops MaxPoolingWithArgmax2D / MaxUnpooling2D /
            // Convolution2DTransposeBias: such models get the end-to-end checks only.
            let q_out = if has_custom_op(&quant) {
                skipped_ops.push(label.clone());
                litert_run(&out, &q_in)
            } else {
                litert_run_all(&out, &q_in).map(|(o, tensors)| {
                    crate::op_bounds::check_ops(&label, &quant, &q_in, &tensors, &mut ops);
                    o
                })
            };
            // A failure here is collected like the others (the rest of the models still
            // run, so one broken build shows every model it breaks).
            let q_out = match q_out {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{label}: LiteRT fails: {e}"));
                    continue;
                }
            };
            let ours = output_metrics(&label, &float, &float_out, &quant, q_out, &mut failures);
            let tf = tf_reference(&path, mode).map(|p| {
                let m = tflquant::read_path(&p).unwrap();
                let o = litert_run(&p, &quantize_for_integer_inputs(&m, inputs.clone())).unwrap();
                output_metrics(
                    &format!("{label} TF"),
                    &float,
                    &float_out,
                    &m,
                    o,
                    &mut failures,
                )
            });
            let fo = real_outputs(&float, float_out.clone());
            for (k, m) in ours.iter().enumerate() {
                let out_name =
                    &float.subgraphs[0].tensors[float.subgraphs[0].outputs[k] as usize].name;
                let at = format!("{label}: output {k} {out_name:?}");
                let tf_m = tf.as_ref().and_then(|t| t.get(k).cloned().flatten());
                match (m, tf_m) {
                    (None, _) => {}
                    (Some(Metric::Sqnr(s)), tf) => {
                        let floor = step_floor_db(&fo[k]);
                        let listed = BELOW_TF
                            .iter()
                            .any(|e| e.0 == name && e.1 == mode && e.2 == k);
                        match tf {
                            Some(Metric::Sqnr(t)) => {
                                measured.push(format!("{at}: {s:.2} dB, TF {t:.2} dB"));
                                if *s < t - 0.5 && !listed {
                                    failures
                                        .push(format!("{at}: SQNR {s:.2} dB < TF {t:.2} dB - 0.5"));
                                }
                                if *s >= t - 0.5 && listed {
                                    failures.push(format!(
                                        "{at}: listed in BELOW_TF but {s:.2} dB ≥ TF {t:.2} - 0.5: remove the entry"
                                    ));
                                }
                                if listed {
                                    below_tf.push(format!("{at}: ours {s:.2} dB, TF {t:.2} dB"));
                                }
                            }
                            _ => measured.push(format!("{at}: {s:.2} dB, floor {floor:.2} dB")),
                        }
                        if *s < floor {
                            failures.push(format!(
                                "{at}: SQNR {s:.2} dB < {floor:.2} dB (RMS error above {SMOKE_RMS_STEPS} 8-bit steps of the output range)"
                            ));
                        }
                    }
                    (Some(Metric::Agreement(a)), t) => {
                        // Without TF: a majority, as smoke (each integer op is exact or
                        // within its bound per op; flips come from near-ties upstream).
                        let want = match t {
                            Some(Metric::Agreement(t)) => t,
                            _ => 0.5,
                        };
                        measured.push(format!("{at}: agreement {a:.4}, floor {want:.4}"));
                        if *a < want {
                            failures.push(format!("{at}: agreement {a:.4} < {want:.4}"));
                        }
                    }
                }
            }
        }
    }
    let mut table = String::new();
    for ((op, bits), s) in &ops.seen {
        let k = s.k.map_or("-".to_string(), |k| k.to_string());
        table.push_str(&format!(
            "{op:<24} {bits:>2} bits: max {} steps (k {k}) over {} elements, at {}\n",
            s.max_steps, s.elements, s.at
        ));
    }
    eprintln!(
        "{}\n{table}per-op check skipped (custom ops): {skipped_ops:?}\nbelow TF - 0.5 dB: {below_tf:#?}",
        measured.join("\n")
    );
    failures.extend(ops.failures);
    assert!(n_models >= 20, "only {n_models} models checked");
    assert!(
        ops.ops_compared >= 100,
        "only {} ops compared",
        ops.ops_compared
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Integer interfaces take integer inputs and give the same results as the float
/// interface on the same (quantized) inputs: the integer computation is identical (in
/// int8 up to the grid of the final SOFTMAX, int16 at a float output).
#[test]
fn integer_and_uint8_interfaces_match_the_float_interface() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("cnn_digits.tflite");
    let float = tflquant::read_path(&path).unwrap();
    for (mode, interfaces) in [
        ("int8", &["int8", "uint8"][..]),
        ("int16x8", &["int16"][..]),
    ] {
        let (base, _) = quantize(&path, "cnn_digits.calib.npy", dir.path(), mode, &[]).unwrap();
        let base_model = tflquant::read_path(&base).unwrap();
        for iface in interfaces {
            let (out, _) = quantize(
                &path,
                "cnn_digits.calib.npy",
                dir.path(),
                mode,
                &["--interface", iface],
            )
            .unwrap();
            let m = tflquant::read_path(&out).unwrap();
            let sg = &m.subgraphs[0];
            let input = &sg.tensors[sg.inputs[0] as usize];
            let output = &sg.tensors[sg.outputs[0] as usize];
            let want = match *iface {
                "int8" => TensorType::Int8,
                "uint8" => TensorType::Uint8,
                _ => TensorType::Int16,
            };
            assert_eq!(
                (input.dtype, output.dtype),
                (want, want),
                "{mode} --interface {iface}"
            );
            // Signatures point at the interface tensors.
            for s in &m.signature_defs {
                for t in s.inputs.iter().chain(&s.outputs) {
                    assert_eq!(
                        sg.tensors[t.tensor_index as usize].dtype, want,
                        "signature {:?}",
                        t.name
                    );
                }
            }
            // The uint8 interface is the int8 one shifted by exactly 128 (same scale): the
            // QUANTIZE between them is then lossless, at both ends of the range too.
            if *iface == "uint8" {
                for (k, t) in [(0, sg.inputs[0]), (1, sg.outputs[0])] {
                    let (u, twin) = {
                        let op = sg
                            .operators
                            .iter()
                            .find(|o| {
                                let kind = m.builtin(o);
                                (k == 0 && kind == Op::Quantize && o.inputs[0] == t)
                                    || (k == 1 && kind == Op::Quantize && o.outputs[0] == t)
                            })
                            .unwrap_or_else(|| panic!("uint8 interface {k}: no QUANTIZE"));
                        let other = if k == 0 { op.outputs[0] } else { op.inputs[0] };
                        (
                            sg.tensors[t as usize].quantized().unwrap(),
                            sg.tensors[other as usize].quantized().unwrap(),
                        )
                    };
                    assert_eq!(u.scale, twin.scale, "uint8 interface {k}: scales differ");
                    assert_eq!(
                        u.zero_point[0],
                        twin.zero_point[0] + 128,
                        "uint8 interface {k}: zero point {} is not int8's {} + 128",
                        u.zero_point[0],
                        twin.zero_point[0]
                    );
                }
            }
            // Same integer inputs: quantize the samples with the input's parameters,
            // feed the float interface their exact dequantized values.
            let q_in = quantize_for_integer_inputs(&m, sample_inputs(&path, &float, 16));
            let q = input.quantized().unwrap();
            let deq: Vec<f32> = q_in[0]
                .data
                .to_f64()
                .iter()
                .map(|&x| ((x - q.zero_point[0] as f64) * q.scale[0] as f64) as f32)
                .collect();
            let f_in = vec![Array::f32(q_in[0].shape.clone(), deq)];
            let a = real_outputs(&base_model, litert_run(&base, &f_in).unwrap());
            let b = real_outputs(&m, litert_run(&out, &q_in).unwrap());
            // In int8 the float interface's SOFTMAX writes its probabilities in int16
            // (1/32768), the integer interfaces in int8 (1/256): the same probabilities
            // rounded to two grids differ by at most the sum of the half steps
            // (`acc_int8.rs` checks the logits are identical and each rounding exact).
            let tol = if mode == "int8" {
                1.0 / 256.0 + 0.5 / 32767.0 + 1e-6
            } else {
                1e-6
            };
            for (x, y) in a[0].iter().zip(&b[0]) {
                assert!(
                    (x - y).abs() <= tol,
                    "{mode} --interface {iface}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn float_interface_keeps_signature_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("with_metadata_mlp.tflite");
    let calib = manifest_entry("with_metadata_mlp.tflite").unwrap()["calib"]
        .as_str()
        .unwrap()
        .to_string();
    let (out, _) = quantize(&path, &calib, dir.path(), "int8", &[]).unwrap();
    let (a, b) = (
        tflquant::read_path(&path).unwrap(),
        tflquant::read_path(&out).unwrap(),
    );
    assert_eq!(a.description, b.description);
    let names = |m: &Model| {
        m.metadata
            .iter()
            .map(|x| x.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    for (ma, mb) in a.metadata.iter().zip(&b.metadata) {
        assert_eq!(
            a.buffers[ma.buffer as usize].data,
            b.buffers[mb.buffer as usize].data
        );
    }
    let sg = &b.subgraphs[0];
    for s in &b.signature_defs {
        for t in s.inputs.iter().chain(&s.outputs) {
            let t = &sg.tensors[t.tensor_index as usize];
            assert_eq!(
                t.dtype,
                TensorType::Float32,
                "float interface tensor {:?}",
                t.name
            );
        }
    }
    let ops: Vec<Op> = sg.operators.iter().map(|o| b.builtin(o)).collect();
    assert_eq!(ops.first(), Some(&Op::Quantize), "{ops:?}");
    assert_eq!(ops.last(), Some(&Op::Dequantize), "{ops:?}");
}

#[test]
fn strict_mode_names_every_op_that_would_stay_float() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("ops_elementwise.tflite");
    let err = quantize(
        &path,
        "ops_elementwise.calib.npz",
        dir.path(),
        "int8",
        &["--strict"],
    )
    .unwrap_err();
    assert!(err.contains("--strict"), "{err}");
    for op in ["EXP", "LOG", "SIN", "COS", "POW", "FLOOR_DIV"] {
        assert!(err.contains(&format!("({op})")), "{op} missing from: {err}");
    }
    assert!(err.contains("subgraph 0, operator 0 (EXP)"), "{err}");
    // A model whose ops all have kernels passes --strict and is fully integer.
    let path = testdata("cnn_digits.tflite");
    let (out, _) = quantize(
        &path,
        "cnn_digits.calib.npy",
        dir.path(),
        "int8",
        &["--strict", "--interface", "int8"],
    )
    .unwrap();
    let m = tflquant::read_path(&out).unwrap();
    assert!(
        m.subgraphs[0]
            .tensors
            .iter()
            .all(|t| t.dtype != TensorType::Float32),
        "float tensors left"
    );
}

#[test]
fn bias_type_follows_the_mode_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("cnn_digits.tflite");
    for (mode, extra, want) in [
        ("int8", &[][..], TensorType::Int32),
        ("int16x8", &[][..], TensorType::Int64),
        ("int16x8", &["--bias", "int32"][..], TensorType::Int32),
    ] {
        let (out, _) = quantize(&path, "cnn_digits.calib.npy", dir.path(), mode, extra).unwrap();
        let m = tflquant::read_path(&out).unwrap();
        let sg = &m.subgraphs[0];
        let mut seen = 0;
        for op in &sg.operators {
            let kind = m.builtin(op);
            if matches!(kind, Op::Conv2d | Op::DepthwiseConv2d | Op::FullyConnected) {
                let b = &sg.tensors[op.inputs[2] as usize];
                // The 16x8 DEPTHWISE_CONV_2D kernel only takes int64 biases.
                let want = if kind == Op::DepthwiseConv2d && mode == "int16x8" {
                    TensorType::Int64
                } else {
                    want
                };
                assert_eq!(b.dtype, want, "{mode} {extra:?} {kind:?}");
                let w = &sg.tensors[op.inputs[1] as usize];
                let x = &sg.tensors[op.inputs[0] as usize];
                let (bq, wq, xq) = (
                    b.quantized().unwrap(),
                    w.quantized().unwrap(),
                    x.quantized().unwrap(),
                );
                for (c, &s) in bq.scale.iter().enumerate() {
                    let expect = xq.scale[0] * wq.scale[c];
                    assert!(
                        (s - expect).abs() <= expect * 1e-6,
                        "bias scale {s} vs s_in*s_w {expect}"
                    );
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 5);
        litert_run(&out, &sample_inputs(&path, &m, 2)).unwrap();
    }
}

#[test]
fn usage_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.tflite");
    let input = testdata("cnn_digits.tflite");
    let calib = testdata("cnn_digits.calib.npy");
    let wrong = testdata("mlp_large_fc.calib.npy");
    let run = |extra: &[&str]| quantize_run(&input, &out, extra);
    let cases: [(&[&str], &str); 6] = [
        (&["--mode", "int8"], "--calibration"),
        (
            &[
                "--mode",
                "int8",
                "--calibration",
                calib.to_str().unwrap(),
                "--interface",
                "int16",
            ],
            "--interface int16 needs --mode int16x8",
        ),
        (
            &[
                "--mode",
                "int16x8",
                "--calibration",
                calib.to_str().unwrap(),
                "--interface",
                "uint8",
            ],
            "--interface int8/uint8 needs --mode int8",
        ),
        (
            &[
                "--mode",
                "dynamic",
                "--calibration",
                calib.to_str().unwrap(),
            ],
            "--calibration applies to --mode int8 and int16x8",
        ),
        (
            &[
                "--mode",
                "int8",
                "--calibration",
                calib.to_str().unwrap(),
                "--observer",
                "median",
            ],
            "median",
        ),
        (
            &["--mode", "int8", "--calibration", wrong.to_str().unwrap()],
            "shape",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(!out.exists());
    }
}

/// A constant read by two operators that need different parameters is quantized
/// twice: MAXIMUM needs its inputs on the output's scale, ADD gives it its own range.
#[test]
fn a_constant_shared_by_ops_needing_different_parameters_is_duplicated() {
    use tflquant::fb;
    use tflquant::ir::{Operator, OperatorCode, Subgraph, Tensor};
    let mut m = Model {
        version: 3,
        ..Default::default()
    };
    for op in [Op::Maximum, Op::Add] {
        m.operator_codes.push(OperatorCode {
            builtin: op,
            custom_code: None,
            version: 1,
        });
    }
    let mut sg = Subgraph {
        name: Some("main".into()),
        debug_metadata_index: -1,
        ..Default::default()
    };
    let x = sg.add_tensor(Tensor::new("x", TensorType::Float32, vec![1, 4]));
    let c_values: Vec<u8> = [0.0f32, 1.0, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let cb = m.add_buffer(c_values);
    let mut c = Tensor::new("c", TensorType::Float32, vec![4]);
    c.buffer = cb;
    let c = sg.add_tensor(c);
    let y1 = sg.add_tensor(Tensor::new("max", TensorType::Float32, vec![1, 4]));
    let y2 = sg.add_tensor(Tensor::new("add", TensorType::Float32, vec![1, 4]));
    sg.operators.push(Operator::new(0, vec![x, c], vec![y1]));
    let mut add = Operator::new(1, vec![x, c], vec![y2]);
    add.builtin_options = Some(fb::BuiltinOptions::AddOptions(Box::default()));
    sg.operators.push(add);
    sg.inputs = vec![x];
    sg.outputs = vec![y1, y2];
    m.subgraphs.push(sg);
    let dir = tempfile::tempdir().unwrap();
    let float = dir.path().join("shared_const.tflite");
    tflquant::writer::write_path(&m, &float, &Default::default()).unwrap();
    let data: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) * 0.3).collect();
    let calib = dir.path().join("calib.npy");
    tflquant::data::write_npy(&calib, &Array::f32(vec![16, 4], data.clone())).unwrap();
    let (out, _) = quantize(
        &float,
        calib.to_str().unwrap(),
        dir.path(),
        "int8",
        &["--interface", "int8"],
    )
    .unwrap();
    let q = tflquant::read_path(&out).unwrap();
    let copies: Vec<&Tensor> = q.subgraphs[0]
        .tensors
        .iter()
        .filter(|t| t.name == "c")
        .collect();
    assert_eq!(copies.len(), 2, "{copies:#?}");
    assert_ne!(copies[0].quant, copies[1].quant);
    // And it computes what the float model does, within a few output steps.
    let inputs = vec![Array::f32(vec![16, 1, 4], data)];
    let f_out = litert_run(&float, &inputs).unwrap();
    let q_out = litert_run(&out, &quantize_for_integer_inputs(&q, inputs)).unwrap();
    let real = real_outputs(&q, q_out);
    for (k, (f, r)) in f_out.iter().zip(&real).enumerate() {
        let t = &q.subgraphs[0].tensors[q.subgraphs[0].outputs[k] as usize];
        let step = t.quantized().unwrap().scale[0] as f64;
        for (a, b) in f.data.to_f64().iter().zip(r) {
            assert!(
                (a - b).abs() <= 3.0 * step,
                "output {k}: {a} vs {b} (step {step})"
            );
        }
    }
}

/// A model output that other operators also read (`ops_elementwise`: SUB's output is a
/// model output and ABS's and SIGN's input): with `--interface uint8` its producer and
/// readers use the int8 twin, and only the interface QUANTIZE writes the uint8 tensor.
/// The readers used to read the uint8 tensor itself (ABS took uint8 into an int8
/// kernel: LiteRT refused to prepare the model) or through a DEQUANTIZE placed before
/// the QUANTIZE that writes it. The uint8 model computes what the int8-interface one
/// does: its integer outputs are the int8 ones + 128, its float outputs equal.
#[test]
fn uint8_outputs_read_inside_the_graph_keep_their_readers_on_int8() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("ops_elementwise.tflite");
    let float = tflquant::read_path(&path).unwrap();
    let sg = &float.subgraphs[0];
    let read_inside = |m: &Model, t: i32| {
        (m.subgraphs[0].operators.iter())
            .filter(|op| op.inputs.contains(&t))
            .count()
    };
    assert!(
        sg.outputs.iter().any(|&t| read_inside(&float, t) > 0),
        "the structure under test: an output read inside the graph"
    );
    let calib = "ops_elementwise.calib.npz";
    let (i8p, _) = quantize(&path, calib, dir.path(), "int8", &["--interface", "int8"]).unwrap();
    let (u8p, _) = quantize(&path, calib, dir.path(), "int8", &["--interface", "uint8"]).unwrap();
    let (mi, mu) = (
        tflquant::read_path(&i8p).unwrap(),
        tflquant::read_path(&u8p).unwrap(),
    );
    let sgu = &mu.subgraphs[0];
    let mut uint8_outputs = 0;
    for &t in &sgu.outputs {
        if sgu.tensors[t as usize].dtype == TensorType::Uint8 {
            uint8_outputs += 1;
            assert_eq!(
                read_inside(&mu, t),
                0,
                "uint8 output {t} is read inside the graph"
            );
        }
    }
    assert!(uint8_outputs >= 10, "{uint8_outputs} uint8 outputs");
    let a = litert_run(&i8p, &sample_inputs(&path, &mi, 8)).unwrap();
    let b = litert_run(&u8p, &sample_inputs(&path, &mu, 8)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        match (&x.data, &y.data) {
            (ArrayData::I8(x), ArrayData::U8(y)) => {
                let shifted: Vec<u8> = x.iter().map(|&v| (v as i16 + 128) as u8).collect();
                assert_eq!(&shifted, y, "output {k}");
            }
            (ArrayData::F32(x), ArrayData::F32(y)) => assert_eq!(x, y, "output {k}"),
            _ => panic!(
                "output {k}: {} and {}",
                x.data.dtype_name(),
                y.data.dtype_name()
            ),
        }
    }
}
