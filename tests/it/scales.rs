//! No output of any mode on any testdata model carries a NaN, infinite, zero or
//! negative scale: weight modes on every model, integer modes on every model with
//! committed calibration data (its first 8 samples).

use tflquant::calib::{self, CalibOptions, SampleOptions, Samples};
use tflquant::ir::Model;
use tflquant::quant::{self, Options};

use crate::common::*;
use crate::quant_harness::MODES;

/// Every bad scale of `m`: `subgraph s, tensor t "name": scale[i] = x`.
fn bad_scales(m: &Model) -> Vec<String> {
    let mut bad = Vec::new();
    for (si, sg) in m.subgraphs.iter().enumerate() {
        for (ti, t) in sg.tensors.iter().enumerate() {
            let Some(q) = &t.quant else { continue };
            for (i, &s) in q.scale.iter().enumerate() {
                if !(s.is_finite() && s > 0.0) {
                    bad.push(format!(
                        "subgraph {si}, tensor {ti} {:?}: scale[{i}] = {s}",
                        t.name
                    ));
                }
            }
        }
    }
    bad
}

fn ranges_for(path: &std::path::Path, m: &Model) -> Option<calib::Ranges> {
    let name = path.file_name()?.to_string_lossy().to_string();
    let file = manifest_entry(&name)?["calib"].as_str()?.to_string();
    let opts = SampleOptions {
        max_samples: Some(8),
        ..Default::default()
    };
    let samples = Samples::open(&testdata(&file), m, &opts).ok()?;
    calib::calibrate(m, samples, &CalibOptions::default()).ok()
}

#[test]
fn no_output_of_any_mode_has_a_non_finite_scale() {
    let (mut outputs, mut integer_outputs) = (0, 0);
    let mut problems = Vec::new();
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let m = tflquant::read_path(&path).unwrap();
        let ranges = ranges_for(&path, &m);
        for mode in MODES {
            let mut opts = Options::new(mode);
            if mode.is_integer() {
                let Some(r) = &ranges else { continue };
                opts.ranges = Some(r.clone());
            }
            match quant::quantize(&m, &opts) {
                Ok((out, _)) => {
                    outputs += 1;
                    if mode.is_integer() {
                        integer_outputs += 1;
                    }
                    for b in bad_scales(&out) {
                        problems.push(format!("{name} --mode {}: {b}", mode.name()));
                    }
                }
                Err(e) => assert_eq!(e.exit_code(), 2, "{name} --mode {}: {e}", mode.name()),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Most (model, mode) pairs apply; the count guards against a vacuous pass.
    assert!(
        outputs >= 100 && integer_outputs >= 40,
        "{outputs} outputs, {integer_outputs} integer"
    );
}
