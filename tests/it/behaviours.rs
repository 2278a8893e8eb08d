//! Promised behaviours of the command line, each with a test that fails when the
//! behaviour breaks: deterministic bytes for every mode and thread count, `quantize
//! --ranges`, `quantize --observer`, `--dump-plan`, and calibration memory that does not
//! grow with the number of samples. Every model written is run on LiteRT.

use std::path::{Path, PathBuf};

use tflquant::data::Array;
use tflquant::fb::BuiltinOperator as Op;
use tflquant::ir::Model;

use crate::common::*;

/// `tflquant quantize` that must succeed.
fn quantize_ok(input: &Path, out: &Path, args: &[&str]) {
    if let Err(e) = quantize_cli(input, out, args) {
        panic!("quantize {} {args:?}: {e}", input.display());
    }
}

/// Runs `path` on LiteRT with held-out samples of `source` (the float model it came
/// from); every output must be finite.
fn runs_on_litert(path: &Path, source: &Path) {
    let q = tflquant::read_path(path).unwrap();
    let m = tflquant::read_path(source).unwrap();
    let inputs = quantize_for_integer_inputs(&q, sample_inputs(source, &m, 4));
    let outs = litert_run(path, &inputs)
        .unwrap_or_else(|e| panic!("{}: LiteRT refuses it: {e}", path.display()));
    for (k, o) in outs.iter().enumerate() {
        let v = o.data.to_f64();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{}: output {k} is not finite",
            path.display()
        );
    }
}

/// Every mode gives the same bytes (model and report) on every run and with one or two
/// kernel threads: run A with `--threads 1`, B and C with `--threads 2`. Catches any
/// order dependence in calibration (parallel kernels, hash-map iteration), in gptq's
/// statistics, or in the writer.
#[test]
fn every_mode_writes_the_same_bytes_on_every_run_and_thread_count() {
    let cnn = testdata("cnn_digits.tflite");
    let calib = testdata("cnn_digits.calib.npy");
    let qat = testdata("qat_digits.float.tflite");
    let qat_calib = testdata("digits_qat.calib.npy");
    let c = calib.to_str().unwrap();
    let qc = qat_calib.to_str().unwrap();
    let cases: Vec<(&Path, Vec<&str>)> = vec![
        (&cnn, vec!["--mode", "dynamic"]),
        (&cnn, vec!["--mode", "float16"]),
        (&cnn, vec!["--mode", "weight-int8"]),
        (&cnn, vec!["--mode", "weight-int4"]),
        (&cnn, vec!["--mode", "weight-int4", "--calibration", c]),
        (&cnn, vec!["--mode", "int8", "--calibration", c]),
        (
            &cnn,
            vec![
                "--mode",
                "int8",
                "--calibration",
                c,
                "--observer",
                "entropy",
            ],
        ),
        (&cnn, vec!["--mode", "int16x8", "--calibration", c]),
        (&qat, vec!["--mode", "qat", "--calibration", qc]),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (k, (model, args)) in cases.iter().enumerate() {
        let mut outs = Vec::new();
        for (run, threads) in ["1", "2", "2"].iter().enumerate() {
            let out = dir.path().join(format!("{k}_{run}.tflite"));
            let report = dir.path().join(format!("{k}_{run}.json"));
            let mut a = args.clone();
            a.extend(["--report", report.to_str().unwrap()]);
            if a.contains(&"--calibration") {
                a.extend(["--samples", "40", "--threads", threads]);
            }
            quantize_ok(model, &out, &a);
            outs.push((
                std::fs::read(&out).unwrap(),
                std::fs::read(&report).unwrap(),
                out,
            ));
        }
        for run in 1..3 {
            assert!(
                outs[run].0 == outs[0].0,
                "{args:?}: run {run} wrote other model bytes than run 0"
            );
            assert!(
                outs[run].1 == outs[0].1,
                "{args:?}: run {run} wrote another report than run 0"
            );
        }
        runs_on_litert(&outs[0].2, model);
    }
}

/// The input tensor of the quantized model's first QUANTIZE (float interface).
fn input_params(m: &Model) -> (f32, i64) {
    let sg = &m.subgraphs[0];
    let x = sg.inputs[0];
    let q = sg
        .operators
        .iter()
        .find(|o| o.inputs.first() == Some(&x) && m.builtin(o) == Op::Quantize)
        .expect("a QUANTIZE after the input");
    let t = &sg.tensors[q.outputs[0] as usize];
    let p = t.quantized().unwrap();
    (p.scale[0], p.zero_point[0])
}

fn calibrate(model: &Path, data: &Path, out: &Path, extra: &[&str]) {
    let mut a: Vec<&std::ffi::OsStr> = vec![
        "calibrate".as_ref(),
        model.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--samples".as_ref(),
        "40".as_ref(),
    ];
    a.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    let (code, _, err) = run_cli(&a);
    assert_eq!(code, 0, "calibrate: {err}");
}

/// `quantize --ranges R` (R from `tflquant calibrate`) writes the bytes `quantize
/// --calibration` writes on the same samples, and follows an edited range exactly: the
/// input set to [-2, 6] gets scale 8/255 and zero point -64. Catches: --ranges ignored
/// or read for the wrong tensors, a calibration path that differs from `calibrate`.
#[test]
fn quantize_with_ranges_uses_them() {
    let model = testdata("cnn_digits.tflite");
    let data = testdata("cnn_digits.calib.npy");
    let dir = tempfile::tempdir().unwrap();
    let ranges = dir.path().join("ranges.json");
    calibrate(&model, &data, &ranges, &[]);
    let a = dir.path().join("a.tflite");
    let b = dir.path().join("b.tflite");
    quantize_ok(
        &model,
        &a,
        &[
            "--mode",
            "int8",
            "--calibration",
            data.to_str().unwrap(),
            "--samples",
            "40",
        ],
    );
    quantize_ok(
        &model,
        &b,
        &["--mode", "int8", "--ranges", ranges.to_str().unwrap()],
    );
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());

    // Edit the input's range.
    let m = tflquant::read_path(&model).unwrap();
    let input_name = &m.subgraphs[0].tensors[m.subgraphs[0].inputs[0] as usize].name;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ranges).unwrap()).unwrap();
    let entry = doc["tensors"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == **input_name && t["subgraph"] == 0)
        .expect("the input has a range");
    entry["min"] = (-2.0).into();
    entry["max"] = 6.0.into();
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, doc.to_string()).unwrap();
    let c = dir.path().join("c.tflite");
    quantize_ok(
        &model,
        &c,
        &["--mode", "int8", "--ranges", edited.to_str().unwrap()],
    );
    let qc = tflquant::read_path(&c).unwrap();
    assert_eq!(input_params(&qc), (8.0 / 255.0, -64));
    assert_ne!(
        input_params(&tflquant::read_path(&b).unwrap()),
        (8.0 / 255.0, -64)
    );
    runs_on_litert(&b, &model);
    runs_on_litert(&c, &model);
}

/// Activation ranges of a report: name → (min, max).
fn report_ranges(report: &Path) -> std::collections::BTreeMap<String, (f64, f64)> {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    r["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "activation" && !t["range"].is_null())
        .map(|t| {
            let r = &t["range"];
            (
                t["name"].as_str().unwrap().to_string(),
                (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()),
            )
        })
        .collect()
}

/// `quantize --observer percentile:90` uses that observer: the same bytes as
/// `calibrate --observer percentile:90` + `quantize --ranges`, every activation range
/// inside the min/max one and some strictly narrower. Catches: the flag ignored (the
/// bytes equal min/max's), or applied differently from `calibrate`.
#[test]
fn quantize_observer_flag_sets_the_ranges() {
    let model = testdata("cnn_digits.tflite");
    let data = testdata("cnn_digits.calib.npy");
    let d = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> PathBuf { dir.path().join(n) };
    let (minmax, pct, via) = (p("minmax.tflite"), p("pct.tflite"), p("via.tflite"));
    let (r_mm, r_pct) = (p("minmax.json"), p("pct.json"));
    let base = ["--mode", "int8", "--calibration", d, "--samples", "40"];
    let mut a = base.to_vec();
    a.extend(["--report", r_mm.to_str().unwrap()]);
    quantize_ok(&model, &minmax, &a);
    let mut a = base.to_vec();
    a.extend([
        "--observer",
        "percentile:90",
        "--report",
        r_pct.to_str().unwrap(),
    ]);
    quantize_ok(&model, &pct, &a);
    let ranges = p("ranges.json");
    calibrate(&model, &data, &ranges, &["--observer", "percentile:90"]);
    quantize_ok(
        &model,
        &via,
        &["--mode", "int8", "--ranges", ranges.to_str().unwrap()],
    );
    let bytes = |p: &Path| std::fs::read(p).unwrap();
    assert!(
        bytes(&pct) == bytes(&via),
        "--observer differs from calibrate --observer"
    );
    assert!(
        bytes(&pct) != bytes(&minmax),
        "--observer percentile:90 changed nothing"
    );
    let (mm, pc) = (report_ranges(&r_mm), report_ranges(&r_pct));
    assert_eq!(mm.len(), pc.len());
    let mut narrower = 0;
    for (name, &(lo, hi)) in &pc {
        let (mlo, mhi) = mm[name];
        assert!(
            lo >= mlo && hi <= mhi,
            "{name}: [{lo}, {hi}] outside [{mlo}, {mhi}]"
        );
        narrower += usize::from(lo > mlo || hi < mhi);
    }
    assert!(narrower > 0, "no range narrower than min/max: {pc:?}");
    runs_on_litert(&pct, &model);
}

/// `--dump-plan` prints one line per operator of the model, in order, with its fate,
/// and one line per quantized tensor whose scale and zero point are those of the
/// written model's tensor. Catches: a plan that omits operators or tensors, or prints
/// parameters other than those written.
#[test]
fn dump_plan_prints_the_written_decisions() {
    let model = testdata("cnn_digits.tflite");
    let data = testdata("cnn_digits.calib.npy");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.tflite");
    let (code, stdout, err) = quantize_run(
        &model,
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            data.to_str().unwrap(),
            "--samples",
            "40",
            "--dump-plan",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let m = tflquant::read_path(&model).unwrap();
    let q = tflquant::read_path(&out).unwrap();
    let mut lines = stdout.lines();
    assert!(
        lines
            .by_ref()
            .any(|l| l.starts_with("operators (int8 mode):")),
        "{stdout}"
    );
    let sg = &m.subgraphs[0];
    for (oi, op) in sg.operators.iter().enumerate() {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("plan ends before op {oi}"));
        let mut w = l.split_whitespace();
        assert_eq!(w.next(), Some(format!("0:{oi}").as_str()), "{l}");
        assert_eq!(w.next(), Some(m.op_display_name(op).as_str()), "{l}");
        assert_eq!(w.next(), Some("quantized"), "{l}");
    }
    let rest: Vec<&str> = lines.collect();
    let tensors = rest
        .iter()
        .position(|l| *l == "tensors:")
        .expect("tensors:");
    // Plan lines name tensors; the index printed is the planner's (before unused float
    // constants are dropped), so the written model is searched by name.
    let t = &q.subgraphs[0].tensors;
    let mut listed = std::collections::BTreeSet::new();
    for l in &rest[tensors + 1..] {
        if l.starts_with("note:") {
            continue;
        }
        // "  0:12   activation INT8   scale 1.2e-2 zp -5 from [lo, hi]  name" or
        // "  0:22   weight     INT8   axis 0 ×16 scale lo..hi  name"
        let w: Vec<&str> = l.split_whitespace().collect();
        let name = l.rsplit("  ").next().unwrap();
        let found = if w[3] == "axis" {
            let (lo, hi) = w[7].split_once("..").unwrap();
            let (lo, hi): (f32, f32) = (lo.parse().unwrap(), hi.parse().unwrap());
            t.iter().position(|t| {
                t.name == name
                    && t.quantized().is_some_and(|p| {
                        p.quantized_dimension.to_string() == w[4]
                            && format!("×{}", p.scale.len()) == w[5]
                            && p.scale.iter().copied().fold(f32::INFINITY, f32::min) == lo
                            && p.scale.iter().copied().fold(0f32, f32::max) == hi
                    })
            })
        } else {
            assert_eq!(w[3], "scale", "{l}");
            let scale: f32 = w[4].parse().unwrap();
            let zp: i64 = w[6].parse().unwrap();
            // An activation's integer version is that tensor or its `/quantized` twin.
            t.iter().position(|t| {
                (t.name == name || t.name == format!("{name}/quantized"))
                    && t.quantized()
                        .is_some_and(|p| p.scale == [scale] && p.zero_point == [zp])
            })
        };
        let i = found.unwrap_or_else(|| panic!("the output has no tensor as planned: {l}"));
        listed.insert(i);
    }
    // And every integer tensor of the output is in the plan.
    for (i, x) in t.iter().enumerate() {
        if x.quantized().is_some() {
            assert!(
                listed.contains(&i),
                "tensor {i} {} is not in the plan",
                x.name
            );
        }
    }
    runs_on_litert(&out, &model);
}

/// Peak resident memory of `tflquant ARGS` in KiB ([`peak_rss`]).
fn peak_rss_kib(args: &[&std::ffi::OsStr]) -> u64 {
    let mut cmd = tflquant();
    cmd.args(args);
    let (out, peak) = peak_rss(cmd);
    assert!(
        out.status.success(),
        "tflquant {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    peak / 1024
}

/// `calibrate` streams its samples: the peak RSS over 1,000 samples of 48 KiB each
/// (47 MiB of data) exceeds the peak over 10 samples by less than 12 MiB (measured:
/// about 10 MiB both; the margin is for allocator noise). Catches: the
/// data read whole (+47 MiB), per-sample values kept by an observer or the interpreter.
#[test]
fn calibration_memory_does_not_grow_with_the_number_of_samples() {
    let mut g = crate::planner::Graph::new();
    let x = g.act("x", &[1, 64, 64, 3]);
    let y = g.act("y", &[1, 64, 64, 3]);
    g.op(Op::Relu, &[x], &[y], None);
    let m = g.finish(&[x], &[y]);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("relu.tflite");
    tflquant::writer::write_path(&m, &model, &Default::default()).unwrap();
    let per = 64 * 64 * 3;
    let mut peaks = Vec::new();
    for n in [10usize, 1000] {
        let data = dir.path().join(format!("d{n}.npy"));
        let v: Vec<f32> = (0..n * per)
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        tflquant::data::write_npy(&data, &Array::f32(vec![n, 64, 64, 3], v)).unwrap();
        let out = dir.path().join(format!("r{n}.json"));
        let peak = peak_rss_kib(&[
            "calibrate".as_ref(),
            model.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(r["samples"], n, "all samples seen");
        peaks.push(peak);
    }
    eprintln!("calibrate peak RSS: {peaks:?} KiB at 10 and 1000 samples");
    let growth = peaks[1].saturating_sub(peaks[0]);
    assert!(
        growth < 12 * 1024,
        "peak RSS {} KiB at 10 samples, {} KiB at 1000: +{growth} KiB",
        peaks[0],
        peaks[1]
    );
    // The model quantizes with those ranges and runs.
    let q = dir.path().join("q.tflite");
    let r = dir.path().join("r1000.json");
    quantize_ok(
        &model,
        &q,
        &["--mode", "int8", "--ranges", r.to_str().unwrap()],
    );
    let input = vec![Array::f32(vec![1, 1, 64, 64, 3], vec![0.5; per])];
    let out = litert_run(&q, &input).unwrap();
    let v = out[0].data.to_f64();
    assert!(
        v.iter().all(|x| (x - 0.5).abs() <= 1.0 / 255.0 * 2.0),
        "relu(0.5) off"
    );
}
