//! Shared helpers: paths, the official LiteRT runtime (through `tests/litert_helper.py`),
//! sample inputs, and running the `tflquant` binary.

#![allow(dead_code)]

use std::ops::Add;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod noise;

use tflquant::data::{self, Array, ArrayData};
use tflquant::fb::TensorType;
use tflquant::ir::Model;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn testdata(name: &str) -> PathBuf {
    root().join("testdata").join(name)
}

/// Every `.tflite` in `testdata/`, sorted.
pub fn all_models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("testdata"))
        .expect("testdata/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no models in testdata/");
    v
}

/// The Python interpreter of the virtual environment with `ai-edge-litert`.
///
/// `scripts/test` creates `.venv` and sets `TFLQUANT_PYTHON`. A missing runtime is a test
/// failure, never a skip.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let p = std::env::var_os("TFLQUANT_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".venv/bin/python"));
        let ok = Command::new(&p)
            .args(["-c", "import ai_edge_litert.interpreter, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the official LiteRT runtime is not available at {}.\n\
             Run the tests with ./scripts/test (it creates .venv with ai-edge-litert and numpy), \
             or point TFLQUANT_PYTHON at a python that has `pip install -r scripts/requirements-test.txt`.",
            p.display()
        );
        p
    })
}

/// Runs `model` on LiteRT; `inputs[i]` holds samples of model input `i` on axis 0.
/// Returns the outputs stacked over samples, or LiteRT's error text.
pub fn litert_run(model: &Path, inputs: &[Array]) -> Result<Vec<Array>, String> {
    litert_run_inner(model, inputs, &[]).map(|(outs, _)| outs)
}

/// Like [`litert_run`] with the samples as one stream through one interpreter: nothing
/// is reset between them (state flows as in deployment). With `all`, every tensor of
/// subgraph 0 too (builtin kernels), as [`litert_run_all`].
pub fn litert_run_stream(model: &Path, inputs: &[Array], all: bool) -> RunResult {
    let flags: &[&str] = if all {
        &["--stream", "--all-tensors"]
    } else {
        &["--stream"]
    };
    litert_run_inner(model, inputs, flags)
}

/// Like [`litert_run`] with LiteRT's builtin kernels only (no XNNPACK delegate).
pub fn litert_run_builtin(model: &Path, inputs: &[Array]) -> Result<Vec<Array>, String> {
    litert_run_inner(model, inputs, &["--builtin"]).map(|(outs, _)| outs)
}

/// Outputs, and named extra arrays (`t<index>` intermediates).
pub type RunResult = Result<(Vec<Array>, Vec<(String, Array)>), String>;

/// Like [`litert_run`], also returning every tensor of subgraph 0 (`t<index>` keys).
pub fn litert_run_all(model: &Path, inputs: &[Array]) -> RunResult {
    litert_run_inner(model, inputs, &["--all-tensors"])
}

fn litert_run_inner(model: &Path, inputs: &[Array], flags: &[&str]) -> RunResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = dir.path().join("in.npz");
    let out = dir.path().join("out.npz");
    let named: Vec<(String, Array)> = inputs
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("input_{i}"), a.clone()))
        .collect();
    data::write_npz(&inp, &named).expect("writing inputs");
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/litert_helper.py"))
        .arg("run")
        .arg(model)
        .arg(&inp)
        .arg(&out);
    cmd.args(flags);
    let o = cmd.output().expect("running python");
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let arrays = data::read_npz(&out).expect("reading outputs");
    let mut outputs = Vec::new();
    let mut rest = Vec::new();
    for (k, a) in arrays {
        if let Some(i) = k.strip_prefix("output_") {
            outputs.push((i.parse::<usize>().unwrap(), a));
        } else {
            rest.push((k, a));
        }
    }
    outputs.sort_by_key(|(i, _)| *i);
    Ok((outputs.into_iter().map(|(_, a)| a).collect(), rest))
}

/// What the official schema's Python reader sees (see `litert_helper.py schema`).
pub fn python_schema(model: &Path) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("schema.json");
    let o = Command::new(python())
        .arg(root().join("tests/litert_helper.py"))
        .arg("schema")
        .arg(model)
        .arg(&out)
        .output()
        .expect("running python");
    assert!(
        o.status.success(),
        "schema dump failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// The entry of `testdata/manifest.json` for a model file name (calibration/test data,
/// whether it runs in LiteRT, ...), if any.
pub fn manifest_entry(file_name: &str) -> Option<serde_json::Value> {
    static MANIFEST: OnceLock<serde_json::Value> = OnceLock::new();
    let m = MANIFEST.get_or_init(|| {
        serde_json::from_slice(
            &std::fs::read(testdata("manifest.json")).expect("testdata/manifest.json"),
        )
        .expect("valid manifest")
    });
    m["models"].get(file_name).cloned()
}

/// Loads a data file of the manifest (`.npy` for one input, `.npz` keyed by input tensor
/// name) as one array per input of subgraph 0, at most `n` samples.
pub fn load_samples(file: &str, model: &Model, n: usize) -> Vec<Array> {
    let path = testdata(file);
    let sg = &model.subgraphs[0];
    if file.ends_with(".npy") {
        assert_eq!(
            sg.inputs.len(),
            1,
            "{file}: .npy data for a multi-input model"
        );
        return vec![take_samples(data::read_npy(&path).unwrap(), n)];
    }
    let arrays = data::read_npz(&path).unwrap();
    sg.inputs
        .iter()
        .map(|&t| {
            let name = &sg.tensors[t as usize].name;
            let a = arrays
                .iter()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("{file}: no array for input {name}"));
            take_samples(a.1.clone(), n)
        })
        .collect()
}

/// Held-out sample inputs for a testdata model (the manifest's `test` data), or
/// deterministic synthetic values for models without data.
pub fn sample_inputs(path: &Path, model: &Model, n: usize) -> Vec<Array> {
    let name = path.file_name().unwrap().to_string_lossy();
    match manifest_entry(&name).and_then(|e| e["test"].as_str().map(String::from)) {
        Some(file) => quantize_for_integer_inputs(model, load_samples(&file, model, n)),
        None => synthetic_inputs(model, n, 0x5eed),
    }
}

/// Float samples for an integer-interface input are quantized with that input's scale
/// and zero point (round half away from zero, clamped), as a caller of the model would.
pub fn quantize_for_integer_inputs(model: &Model, inputs: Vec<Array>) -> Vec<Array> {
    let sg = &model.subgraphs[0];
    inputs
        .into_iter()
        .zip(&sg.inputs)
        .map(|(a, &t)| {
            let t = &sg.tensors[t as usize];
            let ArrayData::F32(v) = &a.data else { return a };
            let Some(q) = t.quantized() else { return a };
            let (s, z) = (
                q.scale[0],
                q.zero_point.first().copied().unwrap_or(0) as f32,
            );
            let q = |lo: f32, hi: f32| v.iter().map(move |&x| (x / s).round().add(z).clamp(lo, hi));
            let data = match t.dtype {
                TensorType::Int8 => ArrayData::I8(q(-128.0, 127.0).map(|x| x as i8).collect()),
                TensorType::Uint8 => ArrayData::U8(q(0.0, 255.0).map(|x| x as u8).collect()),
                TensorType::Int16 => {
                    ArrayData::I16(q(-32768.0, 32767.0).map(|x| x as i16).collect())
                }
                _ => return a,
            };
            Array::new(a.shape.clone(), data)
        })
        .collect()
}

fn take_samples(a: Array, n: usize) -> Array {
    let n = n.min(a.shape[0]);
    let per: usize = a.shape[1..].iter().product();
    let mut shape = a.shape.clone();
    shape[0] = n;
    let data = match a.data {
        ArrayData::F32(v) => ArrayData::F32(v[..n * per].to_vec()),
        ArrayData::I32(v) => ArrayData::I32(v[..n * per].to_vec()),
        ArrayData::I64(v) => ArrayData::I64(v[..n * per].to_vec()),
        ArrayData::I8(v) => ArrayData::I8(v[..n * per].to_vec()),
        ArrayData::U8(v) => ArrayData::U8(v[..n * per].to_vec()),
        other => panic!("unexpected sample dtype {}", other.dtype_name()),
    };
    Array::new(shape, data)
}

/// Deterministic inputs for every input of subgraph 0, `n` samples each.
pub fn synthetic_inputs(model: &Model, n: usize, seed: u64) -> Vec<Array> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sg = &model.subgraphs[0];
    sg.inputs
        .iter()
        .map(|&t| {
            let t = &sg.tensors[t as usize];
            let per: usize = t.shape.iter().map(|&d| d.max(1) as usize).product();
            let mut shape = vec![n];
            shape.extend(t.shape.iter().map(|&d| d.max(1) as usize));
            // Sample i is reshaped to the model input's shape by the helper, so [n, ...shape].
            let len = n * per;
            let data = match t.dtype {
                TensorType::Float32 => {
                    ArrayData::F32((0..len).map(|_| rng.random_range(-1.0..1.0)).collect())
                }
                TensorType::Int32 => {
                    ArrayData::I32((0..len).map(|_| rng.random_range(0..4)).collect())
                }
                TensorType::Int64 => {
                    ArrayData::I64((0..len).map(|_| rng.random_range(0..4)).collect())
                }
                TensorType::Int8 => {
                    ArrayData::I8((0..len).map(|_| rng.random_range(-128..=127)).collect())
                }
                TensorType::Uint8 => {
                    ArrayData::U8((0..len).map(|_| rng.random_range(0..=255)).collect())
                }
                TensorType::Bool => {
                    ArrayData::Bool((0..len).map(|_| rng.random_bool(0.5)).collect())
                }
                other => panic!("no synthetic inputs for {other:?}"),
            };
            Array::new(shape, data)
        })
        .collect()
}

/// The `tflquant` binary built for these tests.
pub fn tflquant() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tflquant"))
}

/// Runs the binary and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let o: Output = tflquant().args(args).output().expect("running tflquant");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// True when the model contains a custom op (LiteRT cannot run it without a registration).
pub fn has_custom_op(model: &Model) -> bool {
    model
        .operator_codes
        .iter()
        .any(|c| c.builtin == tflquant::fb::BuiltinOperator::Custom)
}

/// Index of the largest value of `row` (0 if empty).
pub fn argmax(row: &[f64]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}

/// Share of correct top-1 predictions: `out` holds one row of class scores per label.
pub fn top1_accuracy(out: &[f64], labels: &[f64]) -> f64 {
    let classes = out.len() / labels.len();
    let right = labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| argmax(&out[i * classes..(i + 1) * classes]) == l as usize)
        .count();
    right as f64 / labels.len() as f64
}

/// SQNR in dB of `test` against `reference` (+inf when identical).
///
/// Panics when either side holds a NaN or an infinity: a non-finite output is a failure
/// however the rest compares (a NaN would otherwise vanish in a `min` over outputs).
pub fn sqnr_db(reference: &[f64], test: &[f64]) -> f64 {
    assert_eq!(reference.len(), test.len(), "sqnr_db: lengths differ");
    if let Some(i) = reference.iter().position(|v| !v.is_finite()) {
        panic!(
            "reference output holds a non-finite value {} at element {i}",
            reference[i]
        );
    }
    if let Some(i) = test.iter().position(|v| !v.is_finite()) {
        panic!(
            "tested output holds a non-finite value {} at element {i}",
            test[i]
        );
    }
    let signal: f64 = reference.iter().map(|x| x * x).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// `tflquant quantize INPUT -o OUT ARGS...`: (exit code, stdout, stderr).
pub fn quantize_run(input: &Path, out: &Path, args: &[&str]) -> (i32, String, String) {
    let mut a: Vec<&std::ffi::OsStr> = vec![
        "quantize".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    a.extend(args.iter().map(|s| std::ffi::OsStr::new(*s)));
    run_cli(&a)
}

/// [`quantize_run`] that wants success; the error text when it fails.
pub fn quantize_cli(input: &Path, out: &Path, args: &[&str]) -> Result<(), String> {
    let (code, _, err) = quantize_run(input, out, args);
    if code == 0 { Ok(()) } else { Err(err) }
}

/// Runs `cmd` (a `tflquant` command) to completion and returns its output and its peak
/// resident memory in bytes: the child's `VmHWM` in `/proc/PID/status`, read every few
/// milliseconds until it exits (the high-water mark only grows, so the last reading is
/// the peak up to a few ms before exit). `wait4`/`getrusage(RUSAGE_CHILDREN)` would not
/// do: a child spawned by vfork/fork keeps the parent's high-water mark through `exec`
/// (Linux saves it in the process's signal struct), so it reports the test process's
/// own memory whenever that is larger — other tests running in the same process.
pub fn peak_rss(mut cmd: Command) -> (Output, u64) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let exe_path = format!("/proc/{}/exe", child.id());
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_tflquant")).unwrap();
    let mut peak_kib = 0;
    loop {
        // Only once the child runs tflquant: before `exec` it is a copy of this process.
        let running = std::fs::read_link(&exe_path).is_ok_and(|p| p == exe);
        if running
            && let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kb);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let out = child.wait_with_output().unwrap();
    assert!(peak_kib > 0, "no VmHWM reading of the child");
    (out, peak_kib * 1024)
}
