//! `--observer auto` (issue #15 item 3): per tensor the observer with the least expected
//! int8 error on its histogram; the choice is in ranges.json and `--report`, model
//! inputs keep minmax, and where every choice is minmax the model is the minmax model.

use std::path::Path;

use tflquant::data::ArrayData;

use crate::common::*;

fn quantize_with(
    dir: &Path,
    name: &str,
    observer: &str,
) -> (std::path::PathBuf, serde_json::Value) {
    let e = manifest_entry(name).unwrap();
    let out = dir.join(format!("{name}.{observer}.tflite"));
    let report = dir.join(format!("{name}.{observer}.json"));
    quantize_cli(
        &testdata(name),
        &out,
        &[
            "--mode",
            "int8",
            "--calibration",
            testdata(e["calib"].as_str().unwrap()).to_str().unwrap(),
            "--samples",
            "32",
            "--observer",
            observer,
            "--report",
            report.to_str().unwrap(),
        ],
    )
    .unwrap();
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out, r)
}

/// Per output (real-valued): SQNR against the float model on LiteRT, held-out data.
fn litert_sqnr(name: &str, quant: &Path) -> Vec<f64> {
    let input = testdata(name);
    let fm = tflquant::read_path(&input).unwrap();
    let test = manifest_entry(name).unwrap()["test"]
        .as_str()
        .unwrap()
        .to_string();
    let inputs = load_samples(&test, &fm, 32);
    let fo = litert_run(&input, &inputs).unwrap();
    let qo = litert_run(quant, &inputs).unwrap();
    fo.iter()
        .zip(&qo)
        .filter(|(a, _)| matches!(a.data, ArrayData::F32(_)))
        .map(|(a, b)| sqnr_db(&a.data.to_f64(), &b.data.to_f64()))
        .collect()
}

#[test]
fn observer_auto_reports_its_choice_per_tensor_and_runs_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let name = "ops_elementwise.tflite";
    let (auto, r) = quantize_with(dir.path(), name, "auto");
    let (minmax, r0) = quantize_with(dir.path(), name, "minmax");
    assert!(r0.get("observers").is_none(), "only auto records choices");
    let choices = r["observers"].as_array().unwrap();
    let model = tflquant::read_path(testdata(name)).unwrap();
    let sg = &model.subgraphs[0];
    let activations = sg
        .tensors
        .iter()
        .filter(|t| t.dtype == tflquant::fb::TensorType::Float32 && !model.is_constant(t))
        .count();
    assert!(
        !choices.is_empty() && choices.len() <= activations,
        "{} choices for {activations} float activations",
        choices.len()
    );
    let mut clipped = 0;
    for c in choices {
        let obs = c["observer"].as_str().unwrap();
        assert!(["minmax", "percentile:99.99", "mse"].contains(&obs), "{c}");
        let t = c["tensor"].as_u64().unwrap() as i32;
        if sg.inputs.contains(&t) {
            assert_eq!(obs, "minmax", "model inputs keep their full range: {c}");
        }
        clipped += usize::from(obs != "minmax");
    }
    // This model has heavy-tailed tensors (the histogram gains > 3 dB by clipping).
    assert!(clipped > 0, "auto chose minmax everywhere");
    let notes = r["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("--observer auto chose:")),
        "{notes:?}"
    );
    // On LiteRT no output loses more than half a dB to minmax (a clip chosen only where
    // it pays 3 dB on the histogram).
    let a = litert_sqnr(name, &auto);
    let b = litert_sqnr(name, &minmax);
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            *x >= y - 0.5 || *x >= 60.0,
            "output {k}: auto {x:.2} dB, minmax {y:.2} dB"
        );
    }
}

#[test]
fn observer_auto_that_keeps_minmax_everywhere_writes_the_minmax_model() {
    let dir = tempfile::tempdir().unwrap();
    let name = "cnn_digits.tflite";
    let (auto, r) = quantize_with(dir.path(), name, "auto");
    let (minmax, _) = quantize_with(dir.path(), name, "minmax");
    let choices = r["observers"].as_array().unwrap();
    assert!(
        choices.iter().all(|c| c["observer"] == "minmax"),
        "{choices:?}"
    );
    assert_eq!(std::fs::read(auto).unwrap(), std::fs::read(minmax).unwrap());
}
