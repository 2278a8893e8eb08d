//! Peak resident memory and time of `convert` and every weight mode on a generated FC
//! model, against `cp` of the same file and against the target
//! peak RSS ≤ input + output + 64 MiB (time ≤ 2× `cp`).
//!
//! Run: `cargo bench --bench memory` (the ~300 MB model), or
//! `cargo bench --bench memory -- big` (a ~2.9 GB model: 6 layers of 11000×11000; needs
//! ~6 GB of disk in `$TFLQUANT_BENCH_DIR` or `.`, and a few minutes to generate).
//! Each run is one process measured by `/usr/bin/time -v` (GNU time): wall time, CPU time
//! (user + system; steadier than wall time on a shared machine) and peak RSS.

mod common;

use std::process::Command;
use std::time::Instant;

const SLACK: u64 = 64 << 20;

fn main() {
    let big = std::env::args().any(|a| a == "big");
    let dir = common::bench_dir();
    let input = if big {
        let path = dir.path.join("fc_stack_big.tflite");
        if !path.exists() {
            let model = common::fc_stack(6, 11000);
            tflquant::writer::write_path(&model, &path, &Default::default())
                .expect("writing the big model");
        }
        path
    } else {
        common::fc_stack_300mb(&dir.path)
    };
    let in_size = std::fs::metadata(&input).unwrap().len();
    println!(
        "input {} ({:.1} MB); each contender reads it from the page cache",
        input.display(),
        in_size as f64 / 1e6
    );

    let cp_out = dir.path.join("cp.tflite");
    common::warm_page_cache(&input);
    let (cp_time, cp_cpu, cp_rss) = measure(Command::new("cp").arg(&input).arg(&cp_out));
    std::fs::remove_file(&cp_out).ok();
    println!(
        "{:<20} {:>9} {:>7} {:>8} {:>10} {:>10} {:>10}  target",
        "what", "time ms", "× cp", "cpu ms", "peak MB", "in+out MB", "bound MB"
    );
    println!(
        "{:<20} {:>9.0} {:>7.2} {:>8.0} {:>10.1}",
        "cp",
        cp_time * 1e3,
        1.0,
        cp_cpu * 1e3,
        cp_rss as f64 / 1e6
    );
    let bin = env!("CARGO_BIN_EXE_tflquant");
    let runs: [(&str, &[&str]); 7] = [
        ("convert", &["convert"]),
        ("dynamic", &["quantize", "--mode", "dynamic"]),
        ("float16", &["quantize", "--mode", "float16"]),
        ("weight-int8", &["quantize", "--mode", "weight-int8"]),
        ("weight-int4 (mse)", &["quantize", "--mode", "weight-int4"]),
        (
            "weight-int4 nearest",
            &["quantize", "--mode", "weight-int4", "--rounding", "nearest"],
        ),
        (
            "weight-int4 block32",
            &["quantize", "--mode", "weight-int4", "--block-size", "32"],
        ),
    ];
    for (name, args) in runs {
        let out = dir.path.join(format!("{}.tflite", name.replace(' ', "_")));
        common::warm_page_cache(&input);
        let mut cmd = Command::new(bin);
        cmd.arg("-q")
            .arg(args[0])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(&args[1..]);
        let (t, cpu, rss) = measure(&mut cmd);
        let out_size = std::fs::metadata(&out).unwrap().len();
        let bound = in_size + out_size + SLACK;
        println!(
            "{:<20} {:>9.0} {:>7.2} {:>8.0} {:>10.1} {:>10.1} {:>10.1}  {}",
            name,
            t * 1e3,
            t / cp_time,
            cpu * 1e3,
            rss as f64 / 1e6,
            (in_size + out_size) as f64 / 1e6,
            bound as f64 / 1e6,
            if rss <= bound && t <= 2.0 * cp_time {
                "met"
            } else if rss <= bound {
                "memory met, time not"
            } else {
                "NOT met"
            }
        );
        std::fs::remove_file(&out).ok();
    }
}

/// Wall time (s), CPU time (user + system, s) and peak RSS (bytes) of one run, through
/// GNU time.
fn measure(cmd: &mut Command) -> (f64, f64, u64) {
    let report = std::env::temp_dir().join(format!("tflquant-time-{}.txt", std::process::id()));
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let t = Instant::now();
    let st = Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(&program)
        .args(&args)
        .status()
        .expect("running /usr/bin/time (GNU time) — install the `time` package");
    let elapsed = t.elapsed().as_secs_f64();
    assert!(st.success(), "{program:?} {args:?} failed");
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::remove_file(&report).ok();
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("GNU time reports {name:?}"))
    };
    let kb = field("Maximum resident set size (kbytes): ");
    let cpu = field("User time (seconds): ") + field("System time (seconds): ");
    (elapsed, cpu, kb as u64 * 1024)
}
