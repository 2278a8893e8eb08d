//! Peak resident memory and time of `convert` and every weight mode on a generated FC
//! model, against `cp` of the same file and against the targets
//! peak RSS ≤ input + output + 64 MiB and time ≤ 2× `cp` (issue #14).
//!
//! Run: `cargo bench --bench memory` (the ~300 MB model), or
//! `cargo bench --bench memory -- big` (a ~2.9 GB model: 6 layers of 11000×11000; needs
//! ~6 GB of disk in `$TFLQUANT_BENCH_DIR` or `.`, and a few minutes to generate).
//! Other arguments keep only the contenders whose name contains one of them
//! (`-- big int4`). `TFLQUANT_BENCH_RUNS` (default 3) paired runs per contender: each
//! run of a contender directly follows a `cp` of the same file, and the table gives
//! the medians of both times and of the per-pair ratios (the machine's load moves
//! both; the ratio of a pair is steadier than either time). The load average is
//! printed before and after. Each run is one process measured by `/usr/bin/time -v`
//! (GNU time): wall time, CPU time (user + system) and peak RSS (the largest of the
//! runs). `TFLQUANT_BENCH_BIN=PATH` measures another `tflquant` binary instead of this
//! build's (e.g. the previous main's, to pair two builds on the same machine).

mod common;

use std::process::Command;
use std::time::Instant;

const SLACK: u64 = 64 << 20;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let big = args.iter().any(|a| a == "big");
    let filters: Vec<&String> = args.iter().filter(|a| *a != "big").collect();
    let runs: usize = std::env::var("TFLQUANT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
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
        "input {} ({:.1} MB); each run reads it from the page cache; {runs} paired runs \
         (cp, then the contender) per line; load average {}",
        input.display(),
        in_size as f64 / 1e6,
        load()
    );
    println!(
        "{:<20} {:>9} {:>9} {:>7} {:>8} {:>10} {:>10} {:>10}  target",
        "what", "time ms", "cp ms", "× cp", "cpu ms", "peak MB", "in+out MB", "bound MB"
    );
    let bin = std::env::var("TFLQUANT_BENCH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tflquant").to_string());
    println!("binary {bin}");
    let contenders: [(&str, &[&str]); 7] = [
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
    let cp_out = dir.path.join("cp.tflite");
    for (name, argv) in contenders {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let out = dir
            .path
            .join(format!("{}.tflite", name.replace([' ', '(', ')'], "_")));
        let (mut t, mut t_cp, mut ratio, mut cpu) = (vec![], vec![], vec![], vec![]);
        let (mut rss, mut out_size) = (0u64, 0u64);
        for _ in 0..runs {
            common::warm_page_cache(&input);
            let (tc, _, _) = measure(Command::new("cp").arg(&input).arg(&cp_out));
            std::fs::remove_file(&cp_out).ok();
            common::warm_page_cache(&input);
            let mut cmd = Command::new(&bin);
            cmd.arg("-q")
                .arg(argv[0])
                .arg(&input)
                .arg("-o")
                .arg(&out)
                .args(&argv[1..]);
            let (tt, c, r) = measure(&mut cmd);
            out_size = std::fs::metadata(&out).unwrap().len();
            std::fs::remove_file(&out).ok();
            t.push(tt);
            t_cp.push(tc);
            ratio.push(tt / tc);
            cpu.push(c);
            rss = rss.max(r);
        }
        let (t, t_cp, ratio, cpu) = (median(t), median(t_cp), median(ratio), median(cpu));
        let bound = in_size + out_size + SLACK;
        println!(
            "{:<20} {:>9.0} {:>9.0} {:>7.2} {:>8.0} {:>10.1} {:>10.1} {:>10.1}  {}",
            name,
            t * 1e3,
            t_cp * 1e3,
            ratio,
            cpu * 1e3,
            rss as f64 / 1e6,
            (in_size + out_size) as f64 / 1e6,
            bound as f64 / 1e6,
            match (rss <= bound, ratio <= 2.0) {
                (true, true) => "met",
                (true, false) => "memory met, time not",
                (false, true) => "time met, memory not",
                (false, false) => "NOT met",
            }
        );
    }
    println!("load average {}", load());
}

/// The median of a non-empty list (the upper one of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `/proc/loadavg`'s 1, 5 and 15-minute averages.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
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
