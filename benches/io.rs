//! Reading, inspecting and identity-converting a ~300 MB float model, against `cp`.
//!
//! Run: `cargo bench --bench io`. Prints medians (warm page cache for every contender)
//! and the ratios the project tracks:
//! - inspect (read + verify + report) must not touch weight bytes: target < 100 ms;
//! - convert (read + write) should run near disk speed: target ≤ 2× `cp`.

mod common;

use std::process::Command;

use tflquant::writer::{self, WriteOptions};

fn main() {
    let dir = common::bench_dir();
    let input = common::fc_stack_300mb(&dir.path);
    let size = std::fs::metadata(&input).unwrap().len();
    println!(
        "model: {} ({:.1} MB, 4 FULLY_CONNECTED layers 4352×4352)",
        input.display(),
        size as f64 / 1e6
    );

    // Warm the page cache once so that every contender reads from memory.
    common::warm_page_cache(&input);

    let inspect = common::median(11, || {
        let m = tflquant::read_path(&input).unwrap();
        let r = tflquant::inspect::Report::new(&m);
        std::hint::black_box(r.render_summary());
    });
    let out = dir.path.join("out.tflite");
    let convert = common::median(5, || {
        let m = tflquant::read_path(&input).unwrap();
        writer::write_path(&m, &out, &WriteOptions::default()).unwrap();
    });
    let cp_out = dir.path.join("cp.tflite");
    let cp = common::median(5, || {
        let st = Command::new("cp")
            .arg(&input)
            .arg(&cp_out)
            .status()
            .unwrap();
        assert!(st.success());
    });
    println!(
        "inspect (read+verify+report) median {:8.3} ms   target < 100 ms",
        common::ms(inspect)
    );
    println!(
        "convert (read+write)         median {:8.1} ms",
        common::ms(convert)
    );
    println!(
        "cp of the same file          median {:8.1} ms",
        common::ms(cp)
    );
    println!(
        "convert / cp                 {:8.2}×      target ≤ 2×",
        convert.as_secs_f64() / cp.as_secs_f64()
    );
    if let Some(rss) = common::peak_rss() {
        println!(
            "peak RSS of this process     {:8.1} MB (includes building the model once)",
            rss as f64 / 1e6
        );
    }
}
