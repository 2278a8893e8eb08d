//! `tflquant quantize --mode dynamic` of a ~300 MB float model (4 FULLY_CONNECTED layers
//! of 4352×4352), against `cp` of the same file, with the peak memory of the process.
//!
//! Run: `cargo bench --bench quantize`. Targets: time ≤ 2× `cp`; peak RSS ≤ input size +
//! output size (weights are streamed from the memory map and written once).

mod common;

use std::process::Command;

fn main() {
    let dir = common::bench_dir();
    let input = common::fc_stack_300mb(&dir.path);
    let in_size = std::fs::metadata(&input).unwrap().len();
    common::warm_page_cache(&input); // every contender reads from memory

    let bin = env!("CARGO_BIN_EXE_tflquant");
    let out = dir.path.join("dynamic.tflite");
    let quantize = common::median(5, || {
        let st = Command::new(bin)
            .args(["-q", "quantize"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--mode", "dynamic"])
            .status()
            .unwrap();
        assert!(st.success());
    });
    let peak = children_peak_rss();
    let out_size = std::fs::metadata(&out).unwrap().len();
    let cp_out = dir.path.join("cp.tflite");
    let cp = common::median(5, || {
        assert!(
            Command::new("cp")
                .arg(&input)
                .arg(&cp_out)
                .status()
                .unwrap()
                .success()
        );
    });
    println!(
        "input {:.1} MB → dynamic int8 output {:.1} MB",
        in_size as f64 / 1e6,
        out_size as f64 / 1e6
    );
    println!(
        "quantize --mode dynamic   median {:8.1} ms",
        common::ms(quantize)
    );
    println!("cp of the input           median {:8.1} ms", common::ms(cp));
    println!(
        "quantize / cp             {:8.2}×      target ≤ 2×",
        quantize.as_secs_f64() / cp.as_secs_f64()
    );
    println!(
        "peak RSS of quantize      {:8.1} MB   input + output = {:.1} MB (target: ≤)",
        peak as f64 / 1e6,
        (in_size + out_size) as f64 / 1e6
    );
}

/// Largest resident set of any child process waited for so far, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    usage.ru_maxrss as u64 * 1024
}
