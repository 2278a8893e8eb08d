//! Per-inference latency of the reference interpreter (run by hand, not a test):
//!
//!     cargo bench --bench latency -- MODEL.tflite [ITERATIONS=30] [THREADS=all]
//!
//! Inputs are deterministic values in [0, 1) of each input's static shape. Prints the
//! median, minimum and maximum wall time of `Interpreter::run` after 3 warm-up runs,
//! and the median CPU time of the process per run (`cpu_ms`: all threads; on a loaded
//! machine it is the steadier number, and with one thread it is the latency an idle
//! machine would show).
//! `benches/compare_litert.py` drives it side by side with LiteRT.

use std::time::Instant;

use tflquant::fb::TensorType;
use tflquant::interp::{Data, Interpreter, Value};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench --bench latency -- MODEL.tflite [ITERATIONS] [THREADS]");
        std::process::exit(2);
    };
    let iters: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    if let Some(t) = args.get(2).and_then(|s| s.parse().ok()) {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .expect("thread pool");
    }
    let model = tflquant::read_path(path).expect("model");
    let mut it = Interpreter::new(&model).expect("interpreter");
    let sg = &model.subgraphs[0];
    let inputs: Vec<Value> = sg
        .inputs
        .iter()
        .map(|&t| {
            let t = &sg.tensors[t as usize];
            let shape: Vec<usize> = t.shape.iter().map(|&d| d.max(1) as usize).collect();
            let n: usize = shape.iter().product();
            let data = match t.dtype {
                TensorType::Float32 => Data::F32(
                    (0..n)
                        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
                        .collect(),
                ),
                TensorType::Int32 => Data::I32((0..n).map(|i| (i % 4) as i32).collect()),
                other => panic!("no synthetic input for {other:?}"),
            };
            Value::new(shape, data).expect("shape")
        })
        .collect();
    for _ in 0..3 {
        it.run(&inputs).expect("run");
    }
    let mut cpu: Vec<f64> = Vec::with_capacity(iters);
    let mut ms: Vec<f64> = (0..iters)
        .map(|_| {
            let c0 = cpu_ms();
            let t0 = Instant::now();
            it.run(&inputs).expect("run");
            let wall = t0.elapsed().as_secs_f64() * 1e3;
            cpu.push(cpu_ms() - c0);
            wall
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    println!(
        "threads={} iterations={iters} median_ms={:.3} min_ms={:.3} max_ms={:.3} cpu_ms={:.3}",
        rayon::current_num_threads(),
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        cpu[cpu.len() / 2]
    );
}

/// CPU time used by this process so far (all threads), in milliseconds.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}
