//! Peak memory of the command line (issue #14): on a generated ~100 MB float model in a
//! temporary directory, `convert` and every weight mode keep the process's peak resident
//! set within input size + output size + 64 MiB. The peak is the child's own `VmHWM`
//! ([`peak_rss`]; `wait4`'s rusage would carry this test process's memory into the child).

use std::path::Path;

use crate::common::*;

const SLACK: u64 = 64 << 20;

/// The benchmarks' weight-dominated model (`benches/common`), one definition for both.
#[path = "../../benches/common/mod.rs"]
pub(crate) mod bench_common;
use bench_common::fc_stack;

fn check_mode(input: &Path, dir: &Path, name: &str, args: &[&str]) -> String {
    let out = dir.join(format!("{name}.tflite"));
    let mut cmd = tflquant();
    cmd.arg("-q").arg(args[0]).arg(input).arg("-o").arg(&out);
    cmd.args(&args[1..]);
    let (out_run, peak) = peak_rss(cmd);
    assert!(
        out_run.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out_run.stderr)
    );
    let in_size = std::fs::metadata(input).unwrap().len();
    let out_size = std::fs::metadata(&out).unwrap().len();
    let bound = in_size + out_size + SLACK;
    std::fs::remove_file(&out).unwrap();
    let line = format!(
        "{name}: peak {:.1} MB, input + output + 64 MiB = {:.1} MB",
        peak as f64 / 1e6,
        bound as f64 / 1e6
    );
    assert!(peak <= bound, "{line}");
    line
}

#[test]
fn every_weight_mode_stays_within_input_plus_output_plus_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("fc_stack_100mb.tflite");
    // 4 × 2560² float weights: 104.9 MB.
    tflquant::writer::write_path(&fc_stack(4, 2560), &input, &Default::default()).unwrap();
    assert!(std::fs::metadata(&input).unwrap().len() > 100_000_000);
    // INT4 with nearest rounding: the default mse search takes the same memory (one
    // scale per group more) but minutes in a debug build; `cargo bench --bench memory`
    // measures it in release.
    let runs: [(&str, &[&str]); 6] = [
        ("convert", &["convert"]),
        ("dynamic", &["quantize", "--mode", "dynamic"]),
        ("float16", &["quantize", "--mode", "float16"]),
        ("weight-int8", &["quantize", "--mode", "weight-int8"]),
        (
            "weight-int4",
            &["quantize", "--mode", "weight-int4", "--rounding", "nearest"],
        ),
        (
            "weight-int4-block32",
            &[
                "quantize",
                "--mode",
                "weight-int4",
                "--rounding",
                "nearest",
                "--block-size",
                "32",
            ],
        ),
    ];
    for (name, args) in runs {
        eprintln!("{}", check_mode(&input, dir.path(), name, args));
    }
}
