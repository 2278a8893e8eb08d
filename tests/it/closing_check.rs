//! `quantize`'s closing SQNR check reuses calibration's float outputs (issue #16):
//! - the outputs a calibration run keeps are bit for bit those of a plain
//!   `Interpreter::run` on the same samples, on the parallel and on the sequential
//!   calibration path, for every stateless testdata model with calibration data;
//! - stateful models, an exceeded memory budget and a run shorter than asked keep none;
//! - comparing with the kept outputs (the quantized model alone, several samples at
//!   once) gives exactly the report of `compare` running both models one sample after
//!   the other, also for an integer interface (the quantized model's samples differ);
//! - the command line's warning below 10 dB still names the output and the culprit
//!   (`idioms.rs`) and does not depend on the number of threads.

use std::path::{Path, PathBuf};

use tflquant::calib::{
    Calibrator, FloatOutputs, KeepOutputs, ObserverKind, SampleOptions, Samples,
};
use tflquant::compare::{self, Options as CompareOptions};
use tflquant::interp::{Interpreter, Value};
use tflquant::ir::Model;
use tflquant::quant::{self, Mode, Options};

use crate::common::*;

/// Samples kept in these tests (the command line keeps 32).
const KEEP: usize = 12;

/// Every testdata model with calibration data (`X.tflite` beside `X.calib.npy|npz`).
fn calibrated_models() -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for path in all_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        for ext in ["npy", "npz"] {
            let data = testdata(&format!("{stem}.calib.{ext}"));
            if data.exists() {
                v.push((path.clone(), data));
            }
        }
    }
    assert!(v.len() >= 8, "{v:?}");
    v
}

fn calibrate_keeping(
    model: &Model,
    data: &Path,
    kind: ObserverKind,
    keep: KeepOutputs,
) -> Option<FloatOutputs> {
    let samples = Samples::open(data, model, &SampleOptions::default()).unwrap();
    let mut c = Calibrator::new(model, kind).unwrap();
    c.keep_outputs(keep);
    c.add_samples(samples, &mut |_, _| {}).unwrap();
    c.take_outputs()
}

fn keep(samples: usize) -> KeepOutputs {
    KeepOutputs {
        samples,
        max_bytes: 1 << 30,
    }
}

/// Equal bit for bit (float32: NaN equals NaN of the same pattern, -0 differs from 0;
/// other types by value).
fn same_bits(a: &Value, b: &Value) -> bool {
    let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    a.shape == b.shape
        && match (a.as_f32(), b.as_f32()) {
            (Some(x), Some(y)) => bits(x) == bits(y),
            (None, None) => a.data == b.data,
            _ => false,
        }
}

#[test]
fn calibration_keeps_the_float_outputs_bit_for_bit() {
    let mut checked = 0;
    for (path, data) in calibrated_models() {
        let name = path.display().to_string();
        let model = tflquant::read_path(&path).unwrap();
        let stateful = tflquant::interp::state::is_stateful(&model);
        // minmax runs samples in parallel (on a machine with more than one core),
        // ema one after the other.
        for kind in [ObserverKind::MinMax, ObserverKind::Ema(0.9)] {
            let kept = calibrate_keeping(&model, &data, kind, keep(KEEP));
            if stateful {
                assert!(kept.is_none(), "{name}: a stateful model keeps no outputs");
                continue;
            }
            let kept = kept.unwrap_or_else(|| panic!("{name} {kind}: no outputs kept"));
            let samples = Samples::open(&data, &model, &SampleOptions::default()).unwrap();
            let want = samples.len().min(KEEP);
            assert_eq!(kept.0.len(), want, "{name} {kind}");
            let mut interp = Interpreter::new(&model).unwrap();
            for (i, s) in samples.take(want).enumerate() {
                let run = interp.run(&s.unwrap()).unwrap();
                assert_eq!(run.len(), kept.0[i].len(), "{name} sample {i}");
                for (k, (a, b)) in run.iter().zip(&kept.0[i]).enumerate() {
                    assert!(
                        same_bits(a, b),
                        "{name} {kind}: sample {i} output {k} differs from Interpreter::run"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked} runs checked");
}

#[test]
fn outputs_are_not_kept_beyond_the_budget_or_the_run() {
    let model = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    let data = testdata("cnn_digits.calib.npy");
    let total = Samples::open(&data, &model, &SampleOptions::default())
        .unwrap()
        .len();
    // cnn_digits has 10 float logits per sample: 40 bytes.
    let tight = KeepOutputs {
        samples: 4,
        max_bytes: 4 * 40 - 1,
    };
    assert!(calibrate_keeping(&model, &data, ObserverKind::MinMax, tight).is_none());
    let exact = KeepOutputs {
        samples: 4,
        max_bytes: 4 * 40,
    };
    let kept = calibrate_keeping(&model, &data, ObserverKind::MinMax, exact).unwrap();
    assert_eq!(kept.0.len(), 4);
    // Asking for more than the run has keeps all of them; asking for none keeps none.
    let all = calibrate_keeping(&model, &data, ObserverKind::MinMax, keep(total + 5)).unwrap();
    assert_eq!(all.0.len(), total);
    assert!(calibrate_keeping(&model, &data, ObserverKind::MinMax, keep(0)).is_none());
    assert!(
        calibrate_keeping(&model, &data, ObserverKind::MinMax, KeepOutputs::default()).is_none()
    );
}

/// The check with kept outputs against its reference twin, `compare::compare`.
fn assert_same_report(path: &Path, data: &Path, opts: &Options) {
    let name = format!("{} ({:?})", path.display(), opts.interface);
    let model = tflquant::read_path(path).unwrap();
    let samples = SampleOptions {
        max_samples: Some(KEEP),
        ..Default::default()
    };
    let kept = calibrate_keeping(&model, data, ObserverKind::MinMax, keep(KEEP)).unwrap();
    let (q, _) = quant::quantize(&model, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = compare::compare(&model, &q, data, &samples, &CompareOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = compare::compare_with_float_outputs(&model, &q, &kept, data, &samples)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got.samples, kept.0.len(), "{name}");
    assert!(!got.outputs.is_empty(), "{name}");
    for o in &got.outputs {
        // An output no kind of metric covers would make the comparison vacuous.
        assert!(
            o.sqnr_db.is_some_and(f64::is_finite) || o.agreement.is_some() || o.identical,
            "{name}: {o:?}"
        );
    }
    assert_eq!(got, want, "{name}");
}

#[test]
fn the_check_with_kept_outputs_reports_what_compare_reports() {
    let mut checked = 0;
    for (path, data) in calibrated_models() {
        let model = tflquant::read_path(&path).unwrap();
        if tflquant::interp::state::is_stateful(&model) {
            continue;
        }
        let samples = Samples::open(&data, &model, &SampleOptions::default()).unwrap();
        let ranges = tflquant::calib::calibrate(&model, samples, &Default::default()).unwrap();
        let mut opts = Options::new(Mode::Int8);
        opts.ranges = Some(ranges);
        if quant::quantize(&model, &opts).is_err() {
            continue;
        }
        assert_same_report(&path, &data, &opts);
        checked += 1;
        if path.ends_with("cnn_digits.tflite") {
            // Integer inputs: the quantized model reads the samples quantized.
            opts.interface = tflquant::quant::integer::Interface::Integer;
            assert_same_report(&path, &data, &opts);
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked} models checked");
}

/// The command line's warning, computed from kept outputs, does not depend on how many
/// interpreters run the check's quantized model.
#[test]
fn the_warning_is_the_same_on_one_and_on_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let calib = testdata("cnn_digits.calib.npy");
    let warning = |extra: &[&str]| {
        let out = dir.path().join("bad.tflite");
        let mut args = vec![
            "--mode",
            "int8",
            "--calibration",
            calib.to_str().unwrap(),
            "--observer",
            "percentile:50",
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = quantize_run(&testdata("cnn_digits.tflite"), &out, &args);
        assert_eq!(code, 0, "{err}");
        let w: Vec<&str> = err.lines().filter(|l| l.contains("has an SQNR")).collect();
        assert_eq!(w.len(), 1, "{err}");
        w[0].to_string()
    };
    // --threads 1 runs the check's quantized model on one interpreter, the default
    // on one per core.
    let kept = warning(&[]);
    let one_thread = warning(&["--threads", "1"]);
    assert_eq!(kept, one_thread);
    assert!(kept.contains("on 32 calibration samples"), "{kept}");
}
