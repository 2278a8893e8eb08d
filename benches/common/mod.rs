//! Helpers shared by the benchmarks: a large synthetic float model, timing with medians.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use tflquant::fb::{self, BuiltinOperator, TensorType};
use tflquant::ir::{Model, Operator, OperatorCode, Subgraph, Tensor};

/// A float model made of `layers` FULLY_CONNECTED layers of `width × width` weights
/// (plus biases), fed by a `[1, width]` input: weight-dominated, like the large models
/// users quantize. Weights are deterministic pseudo-random values in [-0.05, 0.05).
pub fn fc_stack(layers: usize, width: usize) -> Model {
    let mut m = Model {
        version: 3,
        description: Some("tflquant benchmark FC stack".into()),
        ..Default::default()
    };
    m.operator_codes.push(OperatorCode {
        builtin: BuiltinOperator::FullyConnected,
        custom_code: None,
        version: 1,
    });
    let mut sg = Subgraph {
        name: Some("main".into()),
        debug_metadata_index: -1,
        ..Default::default()
    };
    let w = width as i32;
    let mut x = sg.add_tensor(Tensor::new("input", TensorType::Float32, vec![1, w]));
    sg.inputs.push(x);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for l in 0..layers {
        let mut weights = Vec::with_capacity(width * width * 4);
        for _ in 0..width * width {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
            weights.extend_from_slice(&v.to_le_bytes());
        }
        let wb = m.add_buffer(weights);
        let mut wt = Tensor::new(format!("fc{l}/weights"), TensorType::Float32, vec![w, w]);
        wt.buffer = wb;
        let wt = sg.add_tensor(wt);
        let bb = m.add_buffer(vec![0u8; width * 4]);
        let mut bt = Tensor::new(format!("fc{l}/bias"), TensorType::Float32, vec![w]);
        bt.buffer = bb;
        let bt = sg.add_tensor(bt);
        let y = sg.add_tensor(Tensor::new(
            format!("fc{l}/out"),
            TensorType::Float32,
            vec![1, w],
        ));
        let mut op = Operator::new(0, vec![x, wt, bt], vec![y]);
        op.builtin_options = Some(fb::BuiltinOptions::FullyConnectedOptions(Box::default()));
        sg.operators.push(op);
        x = y;
    }
    sg.outputs.push(x);
    m.subgraphs.push(sg);
    m
}

/// Where a benchmark keeps its files: `$TFLQUANT_BENCH_DIR` if set (kept, and the
/// generated model reused between runs), else a temporary directory under `.`.
pub struct BenchDir {
    pub path: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn bench_dir() -> BenchDir {
    match std::env::var_os("TFLQUANT_BENCH_DIR") {
        Some(d) => {
            let path = std::path::PathBuf::from(d);
            std::fs::create_dir_all(&path).expect("creating TFLQUANT_BENCH_DIR");
            BenchDir { path, _tmp: None }
        }
        None => {
            let tmp = tempfile::tempdir_in(".").expect("temp dir for the benchmark");
            BenchDir {
                path: tmp.path().to_path_buf(),
                _tmp: Some(tmp),
            }
        }
    }
}

/// The ~300 MB FC-stack model (4 layers of 4352×4352) in `dir`, generated if missing.
pub fn fc_stack_300mb(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("fc_stack_300mb.tflite");
    if !path.exists() {
        let model = fc_stack(4, 4352);
        tflquant::writer::write_path(&model, &path, &tflquant::writer::WriteOptions::default())
            .expect("writing the benchmark model");
    }
    path
}

/// Reads a file once so that it is in the page cache, without keeping it in memory (a
/// large resident parent would also inflate the peak RSS reported for its children).
pub fn warm_page_cache(path: &std::path::Path) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).expect("read") > 0 {}
}

/// Runs `f` `n` times and returns the median duration.
pub fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// Peak resident set size of this process so far, in bytes (Linux `VmHWM`).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
