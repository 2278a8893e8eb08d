//! `tflquant::litert`: the official LiteRT runtime driven through its C API
//! (`libLiteRt.so`), checked against the Python interpreter of the same wheel.
//!
//! Findings these tests pin down (ai-edge-litert 2.3.0):
//! - Default kernels (XNNPACK, as in the Python `Interpreter`'s default) give outputs and
//!   intermediates bit-identical to Python's; the builtin kernels reproduce
//!   `testdata/*.expected.npz` (made with `BUILTIN_WITHOUT_DEFAULT_DELEGATES`) bit for bit.
//!   The two kernel sets differ by up to a few float32 ulps, and by much more on
//!   dynamic-range models (XNNPACK quantizes activations its own way).
//! - Three testdata models cannot run through the 2.3 C API at all ([`CAPI_LIMITS`]).
//! - A graph with value-dependent shapes runs on the builtin kernels (XNNPACK with
//!   subgraph reshaping would overrun the output buffers).

use std::path::{Path, PathBuf};

use tflquant::data::{self, Array, ArrayData};
use tflquant::ir::Model;
use tflquant::litert::{
    CpuKernels, ElementType, LiteRt, LoadOptions, OpenOptions, Origin, with_extra_outputs,
};

use crate::common::*;

/// Models of `runs_in_litert` that the 2.3 C API cannot run, with the text its error
/// must contain. A newer runtime that lifts a limit makes the test fail: update the list.
pub(crate) const CAPI_LIMITS: &[(&str, &str)] = &[
    // The model loader (litert/core/model/model_load.cc) rejects `is_variable` tensors
    // (the LSTM's state).
    ("lstm_seq.tflite", "variable tensors"),
    ("lstm_gru.tflite", "variable tensors"),
    ("lstm_digits.tflite", "variable tensors"),
    ("lstm_gru_digits.tflite", "variable tensors"),
    ("bilstm_digits.tflite", "variable tensors"),
    // Outputs whose shape depends on input values (RANGE, FILL, ...) are dynamic
    // tensors; LiteRT binds caller buffers to every output, which TFLite refuses for them.
    ("ops_reduce_misc.tflite", "allocation_type"),
    // The C API fails to prepare a FULLY_CONNECTED without bias inside the composite's
    // decomposition subgraph (the Python interpreter of the same wheel runs the model).
    ("composite_attention.tflite", "NumElements(bias)"),
];

/// The runtime, found the way users find it (`TFLQUANT_PYTHON` is set by `scripts/test`).
/// A missing runtime fails the test with the loader's message, never skips it.
fn lite() -> LiteRt {
    LiteRt::load(&LoadOptions::default()).unwrap_or_else(|e| {
        panic!(
            "the LiteRT runtime could not be loaded: {e}\n\
             Run the tests with ./scripts/test (it installs ai-edge-litert into .venv and \
             sets TFLQUANT_PYTHON)."
        )
    })
}

fn default_opts() -> OpenOptions {
    OpenOptions::default()
}

fn kernels(k: CpuKernels) -> OpenOptions {
    OpenOptions {
        kernels: k,
        num_threads: None,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Models the manifest says the Python interpreter runs.
fn litert_models() -> Vec<PathBuf> {
    all_models()
        .into_iter()
        .filter(|p| manifest_entry(&file_name(p)).is_some_and(|e| e["runs_in_litert"] == true))
        .collect()
}

fn limit_of(name: &str) -> Option<&'static str> {
    CAPI_LIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// Same shape, same type, same bits (float32 compared by bit pattern).
fn same_bits(a: &Array, b: &Array) -> bool {
    a.shape == b.shape
        && match (&a.data, &b.data) {
            (ArrayData::F32(x), ArrayData::F32(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
            }
            (x, y) => x == y,
        }
}

/// Largest |a - b| relative to the largest |b| of the array.
fn rel_err(a: &Array, b: &Array) -> f64 {
    assert_eq!(a.shape, b.shape);
    let (x, y) = (a.data.to_f64(), b.data.to_f64());
    let scale = y
        .iter()
        .fold(0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    x.iter()
        .zip(&y)
        .fold(0f64, |m, (p, q)| m.max((p - q).abs()))
        / scale
}

fn run_default(
    lite: &LiteRt,
    path: &Path,
    inputs: &[Array],
) -> tflquant::Result<(Vec<Array>, CpuKernels)> {
    let mut cm = lite.open(path, &default_opts())?;
    let outs = cm.run_samples(inputs)?;
    Ok((outs, cm.kernels()))
}

#[test]
fn outputs_equal_the_python_interpreter_on_every_litert_model() {
    let lite = lite();
    let mut identical = 0;
    for path in litert_models() {
        let name = file_name(&path);
        let model = tflquant::read_path(&path).unwrap();
        let inputs = sample_inputs(&path, &model, 64);
        let py = litert_run(&path, &inputs)
            .unwrap_or_else(|e| panic!("{name}: the Python interpreter failed: {e}"));
        let got = run_default(&lite, &path, &inputs);
        if let Some(why) = limit_of(&name) {
            let e = got.err().unwrap_or_else(|| {
                panic!("{name} now runs through the C API: remove it from CAPI_LIMITS")
            });
            assert!(e.to_string().contains(why), "{name}: unexpected error: {e}");
            assert_eq!(e.exit_code(), 2, "{name}: {e}");
            continue;
        }
        let (outs, used) = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outs.len(), py.len(), "{name}: number of outputs");
        for (k, (o, p)) in outs.iter().zip(&py).enumerate() {
            if used == CpuKernels::Xnnpack {
                // Same kernels as Python's default: bit for bit.
                assert!(
                    same_bits(o, p),
                    "{name}: output {k} differs from Python's (max rel err {:e})",
                    rel_err(o, p)
                );
            } else {
                // A graph XNNPACK refuses runs on the builtin kernels, Python's on XNNPACK.
                assert_eq!(o.shape, p.shape, "{name}: output {k} shape");
                let e = rel_err(o, p);
                assert!(
                    e <= 1e-6,
                    "{name}: output {k}: rel err {e:e} on {used} kernels"
                );
            }
        }
        identical += (used == CpuKernels::Xnnpack) as usize;
    }
    assert!(
        identical >= 20,
        "only {identical} models compared bit for bit"
    );
}

#[test]
fn builtin_kernels_reproduce_the_expected_outputs_bit_for_bit() {
    let lite = lite();
    let mut checked = 0;
    for path in litert_models() {
        let name = file_name(&path);
        let Some(expected) =
            manifest_entry(&name).and_then(|e| e["expected"].as_str().map(String::from))
        else {
            continue;
        };
        if limit_of(&name).is_some() {
            continue; // covered by the test above
        }
        if manifest_entry(&name).is_some_and(|e| e["litert_kernels"] == "xnnpack") {
            continue; // custom ops only XNNPACK runs; expected outputs are XNNPACK's
        }
        let model = tflquant::read_path(&path).unwrap();
        let want = data::read_npz(testdata(&expected)).unwrap();
        let n = want[0].1.shape[0];
        let inputs = sample_inputs(&path, &model, n);
        let mut cm = lite.open(&path, &kernels(CpuKernels::Builtin)).unwrap();
        assert_eq!(cm.kernels(), CpuKernels::Builtin);
        let outs = cm
            .run_samples(&inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (info, o) in cm.outputs().iter().zip(&outs) {
            let (_, w) = want
                .iter()
                .find(|(k, _)| *k == info.name)
                .unwrap_or_else(|| panic!("{name}: {expected} has no {}", info.name));
            assert!(
                same_bits(o, w),
                "{name}: output {} differs from {expected} (max rel err {:e})",
                info.name,
                rel_err(o, w)
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} models checked");
}

#[test]
fn reference_kernels_take_effect_and_differ_from_builtin() {
    // LiteRT 2.3 reads the CPU kernel mode under two option identifiers; with only one,
    // "reference" silently ran the builtin kernels.
    let lite = lite();
    let path = testdata("ops_conv_pool.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let inputs = sample_inputs(&path, &model, 4);
    let run = |k| {
        let mut cm = lite.open(&path, &kernels(k)).unwrap();
        assert_eq!(cm.kernels(), k);
        cm.run_samples(&inputs).unwrap()
    };
    let (b, r) = (run(CpuKernels::Builtin), run(CpuKernels::Reference));
    assert!(b.iter().zip(&r).any(|(x, y)| !same_bits(x, y)));
    for (x, y) in b.iter().zip(&r) {
        assert!(
            rel_err(y, x) < 1e-5,
            "reference vs builtin: {:e}",
            rel_err(y, x)
        );
    }
}

/// Non-constant, non-input tensors of subgraph 0 with a type the wrapper exchanges.
fn activations(model: &Model) -> Vec<usize> {
    let sg = &model.subgraphs[0];
    (0..sg.tensors.len())
        .filter(|&t| {
            let tensor = &sg.tensors[t];
            !model.is_constant(tensor)
                && !sg.inputs.contains(&(t as i32))
                && ElementType::from_tensor_type(tensor.dtype).is_some()
        })
        .collect()
}

#[test]
fn intermediates_equal_the_python_interpreters_preserved_tensors() {
    let lite = lite();
    for name in [
        "cnn_digits.tflite",
        "ops_conv_pool.tflite",
        "while_loop.tflite",
        "int8_quantized_cnn.tflite",
    ] {
        let path = testdata(name);
        let model = tflquant::read_path(&path).unwrap();
        let inputs = sample_inputs(&path, &model, 8);
        let tensors = activations(&model);
        let (py_out, py_tensors) = litert_run_all(&path, &inputs).unwrap();
        // The Python helper keeps intermediates by running without the XNNPACK delegate
        // (builtin kernels), so the C API runs the same kernels here.
        let builtin = kernels(CpuKernels::Builtin);
        let run = lite
            .run_with_tensors(&model, &tensors, &inputs, &builtin)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Extra outputs change nothing: the outputs equal Python's and a plain run's.
        let plain = lite
            .open(&path, &builtin)
            .unwrap()
            .run_samples(&inputs)
            .unwrap();
        assert_eq!(run.outputs.len(), py_out.len());
        for (k, o) in run.outputs.iter().enumerate() {
            assert!(same_bits(o, &py_out[k]), "{name}: output {k} vs Python");
            assert!(
                same_bits(o, &plain[k]),
                "{name}: output {k} vs the unedited model"
            );
        }
        let sg = &model.subgraphs[0];
        let consumers = sg.consumers();
        let mut compared = 0;
        for (&t, got) in tensors.iter().zip(&run.tensors) {
            match py_tensors.iter().find(|(k, _)| *k == format!("t{t}")) {
                Some((_, want)) => {
                    assert!(
                        same_bits(got, want),
                        "{name}: tensor {t} \"{}\" differs from Python's (max rel err {:e})",
                        sg.tensors[t].name,
                        rel_err(got, want)
                    );
                    compared += 1;
                }
                // Python has no value for a result nothing reads (while_loop's fourth
                // WHILE output); the copy with extra outputs computes it.
                None => assert!(
                    consumers[t].is_empty() && !sg.outputs.contains(&(t as i32)),
                    "{name}: Python has no value for live tensor {t}"
                ),
            }
        }
        assert!(
            compared + 1 >= tensors.len(),
            "{name}: compared {compared} of {}",
            tensors.len()
        );
    }
}

#[test]
fn extra_outputs_are_added_once_to_subgraph_and_signature() {
    let path = testdata("cnn_digits.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let sg = &model.subgraphs[0];
    let out = sg.outputs[0] as usize;
    let mid = activations(&model).into_iter().find(|&t| t != out).unwrap();
    let (copy, pos) = with_extra_outputs(&model, &[mid, out, mid]).unwrap();
    let csg = &copy.subgraphs[0];
    assert_eq!(
        csg.outputs.len(),
        sg.outputs.len() + 1,
        "the output is not added twice"
    );
    assert_eq!(pos, vec![sg.outputs.len(), 0, sg.outputs.len()]);
    let sig = &copy.signature_defs[0];
    assert_eq!(sig.outputs.len(), model.signature_defs[0].outputs.len() + 1);
    let added = sig.outputs.last().unwrap();
    assert_eq!(added.tensor_index as usize, mid);
    assert_eq!(
        added.name.as_deref(),
        Some(format!("tflquant_tensor_{mid}").as_str())
    );

    // Inputs, constants and missing tensors are refused with a reason.
    let input = sg.inputs[0] as usize;
    let e = with_extra_outputs(&model, &[input])
        .unwrap_err()
        .to_string();
    assert!(e.contains("is an input"), "{e}");
    let constant = (0..sg.tensors.len())
        .find(|&t| model.is_constant(&sg.tensors[t]))
        .unwrap();
    let e = with_extra_outputs(&model, &[constant])
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a constant"), "{e}");
    let e = with_extra_outputs(&model, &[sg.tensors.len()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");

    // Through run_with_tensors: an output asked for is the output, an input the input.
    let lite = lite();
    let inputs = sample_inputs(&path, &model, 3);
    let run = lite
        .run_with_tensors(&model, &[out, input, mid], &inputs, &default_opts())
        .unwrap();
    assert!(same_bits(&run.tensors[0], &run.outputs[0]));
    assert_eq!(run.tensors[1].shape, vec![3, 1, 8, 8, 1]);
    assert_eq!(run.tensors[1].data, inputs[0].data);
}

#[test]
fn library_is_found_the_way_users_find_it() {
    let lite = lite();
    assert!(lite.version().is_supported(), "{}", lite.version());
    assert!(lite.library_path().is_file());
    assert!(lite.library_path().ends_with("ai_edge_litert/libLiteRt.so"));
    let python = std::env::var_os("TFLQUANT_PYTHON")
        .filter(|_| std::env::var_os("TFLQUANT_LITERT_LIB").is_none());
    if let Some(py) = python {
        assert_eq!(lite.origin(), &Origin::Python(PathBuf::from(py)));
    }
    // Loading again reuses the library; both environments work side by side.
    let again = LiteRt::load(&LoadOptions {
        lib: Some(lite.library_path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(again.origin(), &Origin::Explicit);
    let path = testdata("mlp_large_fc.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let inputs = sample_inputs(&path, &model, 2);
    let a = run_default(&lite, &path, &inputs).unwrap().0;
    let b = run_default(&again, &path, &inputs).unwrap().0;
    assert!(same_bits(&a[0], &b[0]));
    // The package directory is accepted for the library.
    let dir = lite.library_path().parent().unwrap().to_path_buf();
    LiteRt::load(&LoadOptions {
        lib: Some(dir),
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn a_missing_library_says_how_to_install_the_runtime() {
    let bogus = PathBuf::from("/nonexistent/ai_edge_litert/libLiteRt.so");
    let e = LiteRt::load(&LoadOptions {
        lib: Some(bogus.clone()),
        ..Default::default()
    })
    .err()
    .unwrap();
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 2, "{msg}");
    assert!(
        msg.contains("/nonexistent/ai_edge_litert/libLiteRt.so"),
        "{msg}"
    );
    assert!(msg.contains("pip install ai-edge-litert==2.3.0"), "{msg}");
    assert!(msg.contains("--litert-lib"), "{msg}");

    // The environment variables, as users set them, through the binary.
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in.npz"), dir.path().join("out.npz"));
    let model = testdata("mlp_large_fc.tflite");
    let run = |envs: &[(&str, &str)], remove: &[&str]| {
        let mut cmd = tflquant();
        cmd.args([
            "litert-run".as_ref(),
            model.as_os_str(),
            inp.as_os_str(),
            out.as_os_str(),
        ]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        let o = cmd.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[("TFLQUANT_LITERT_LIB", "/nonexistent/libLiteRt.so")], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/nonexistent/libLiteRt.so") && err.contains("$TFLQUANT_LITERT_LIB"),
        "{err}"
    );
    assert!(err.contains("pip install ai-edge-litert==2.3.0"), "{err}");
    let (code, err) = run(
        &[("TFLQUANT_PYTHON", "/nonexistent/python")],
        &["TFLQUANT_LITERT_LIB"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/python"), "{err}");
    assert!(err.contains("pip install ai-edge-litert==2.3.0"), "{err}");
}

/// `site/ai_edge_litert/libLiteRt.so` holding `bytes`, with a dist-info for `version`
/// (none if `None`).
fn fake_install(site: &Path, bytes: &[u8], version: Option<&str>) -> PathBuf {
    let pkg = site.join("ai_edge_litert");
    std::fs::create_dir_all(&pkg).unwrap();
    let lib = pkg.join("libLiteRt.so");
    std::fs::write(&lib, bytes).unwrap();
    if let Some(v) = version {
        let di = site.join(format!("ai_edge_litert-{v}.dist-info"));
        std::fs::create_dir_all(&di).unwrap();
        std::fs::write(
            di.join("METADATA"),
            format!("Name: ai-edge-litert\nVersion: {v}\n"),
        )
        .unwrap();
        std::fs::write(
            di.join("RECORD"),
            format!("ai_edge_litert/libLiteRt.so,sha256=x,{}\n", bytes.len()),
        )
        .unwrap();
    }
    lib
}

#[test]
fn other_releases_and_unidentified_libraries_are_refused() {
    let load = |lib: PathBuf| {
        LiteRt::load(&LoadOptions {
            lib: Some(lib),
            ..Default::default()
        })
        .err()
        .expect("must be refused")
    };
    let dir = tempfile::tempdir().unwrap();
    // Another release: refused before it is loaded.
    let lib = fake_install(&dir.path().join("a"), b"not a library", Some("2.4.0"));
    let e = load(lib);
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 2);
    assert!(
        msg.contains("ai-edge-litert 2.4.0") && msg.contains("2.3.x"),
        "{msg}"
    );
    assert!(msg.contains("pip install ai-edge-litert==2.3.0"), "{msg}");
    // The right release number but not a loadable library.
    let lib = fake_install(&dir.path().join("b"), b"not a library", Some("2.3.0"));
    let msg = load(lib).to_string();
    assert!(msg.contains("cannot load the LiteRT runtime"), "{msg}");
    assert!(msg.contains("pip install ai-edge-litert==2.3.0"), "{msg}");
    // No metadata: the version cannot be vouched for.
    let lib = fake_install(&dir.path().join("c"), b"not a library", None);
    let msg = load(lib).to_string();
    assert!(
        msg.contains("cannot tell which ai-edge-litert release"),
        "{msg}"
    );
}

#[test]
fn wrong_inputs_say_what_was_expected_and_what_came() {
    let lite = lite();
    let path = testdata("cnn_digits.tflite");
    let mut cm = lite.open(&path, &default_opts()).unwrap();
    let info = &cm.inputs()[0];
    assert_eq!(info.shape, vec![1, 8, 8, 1]);
    assert_eq!(info.dtype, ElementType::F32);

    let e = cm
        .run(&[Array::new(vec![1, 8, 8, 1], ArrayData::I32(vec![0; 64]))])
        .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(msg.contains("expected float32 data, got int32"), "{msg}");
    assert!(msg.contains("serving_default_image:0"), "{msg}");

    let msg = cm
        .run(&[Array::f32(vec![1, 8, 8, 2], vec![0.0; 128])])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("expected shape [1, 8, 8, 1], got [1, 8, 8, 2]"),
        "{msg}"
    );

    let msg = cm.run(&[]).unwrap_err().to_string();
    assert!(msg.contains("has 1 inputs, got 0 arrays"), "{msg}");

    let msg = cm
        .run_samples(&[Array::f32(vec![2, 64], vec![0.0; 128])])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("expected samples of shape [1, 8, 8, 1]") && msg.contains("[64]"),
        "{msg}"
    );

    // The model still runs after refusing bad inputs.
    let model = tflquant::read_path(&path).unwrap();
    cm.run_samples(&sample_inputs(&path, &model, 2)).unwrap();
}

#[test]
fn dynamic_inputs_are_resized() {
    let lite = lite();
    let path = testdata("dynamic_batch_mlp.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let mut cm = lite.open(&path, &default_opts()).unwrap();
    assert_eq!(cm.inputs()[0].shape, vec![-1, 64]);
    let inputs = sample_inputs(&path, &model, 3);
    let single = cm.run_samples(&inputs).unwrap();
    // One run with a batch of 3, then single samples again.
    let batch = cm.run(&inputs).unwrap();
    assert_eq!(batch[0].shape, vec![3, 10]);
    assert_eq!(single[0].shape, vec![3, 1, 10]);
    assert!(same_bits(
        &Array::new(vec![3, 10], single[0].data.clone()),
        &batch[0]
    ));
    let again = cm.run_samples(&inputs).unwrap();
    assert!(same_bits(&again[0], &single[0]));
    // A fixed dimension still has to match.
    let msg = cm
        .run(&[Array::f32(vec![2, 63], vec![0.0; 126])])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("expected shape [any, 64], got [2, 63]"),
        "{msg}"
    );
}

#[test]
fn graphs_with_value_dependent_shapes_run_on_builtin_kernels() {
    // ops_shape_dynamic: an output whose size is only known while running. XNNPACK
    // (subgraph reshaping off) refuses the graph, the builtin kernels report that the
    // output outgrew its buffer, and the run is repeated with a buffer of the new size.
    let lite = lite();
    let path = testdata("ops_shape_dynamic.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let mut cm = lite.open(&path, &default_opts()).unwrap();
    assert_eq!(cm.kernels(), CpuKernels::Builtin);
    let inputs = sample_inputs(&path, &model, 3);
    let outs = cm.run_samples(&inputs).unwrap();
    let py = litert_run(&path, &inputs).unwrap();
    for (o, p) in outs.iter().zip(&py) {
        assert!(same_bits(o, p));
    }
    assert_eq!(outs[1].shape, vec![3, 1, 64]);
}

#[test]
fn refused_models_name_the_failing_call_and_the_runtimes_reason() {
    let lite = lite();
    // A custom op LiteRT has no kernel for: the runtime's own message comes along.
    let e = lite
        .open(testdata("custom_op.tflite"), &default_opts())
        .err()
        .expect("custom_op.tflite must be refused");
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(msg.contains("custom_op.tflite"), "{msg}");
    assert!(
        msg.contains("LiteRtGetCompiledModelOutputTensorLayouts failed"),
        "{msg}"
    );
    assert!(msg.contains("kLiteRtStatusErrorRuntimeFailure"), "{msg}");
    assert!(
        msg.contains("unresolved custom op: TflquantTestOp"),
        "{msg}"
    );

    // The model loader's refusals are explained from the model itself.
    let msg = lite
        .open(testdata("lstm_seq.tflite"), &default_opts())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("LiteRtCreateModelFromFile failed"), "{msg}");
    assert!(
        msg.contains("variable tensors (subgraph 0, tensor"),
        "{msg}"
    );

    // Operator intermediates (as quantized LSTMs carry) are refused by the loader too.
    let mut model = tflquant::read_path(testdata("mlp_large_fc.tflite")).unwrap();
    let sg = &mut model.subgraphs[0];
    let scratch = sg.add_tensor(tflquant::ir::Tensor::new(
        "scratch",
        tflquant::ir::TensorType::Float32,
        vec![1],
    ));
    sg.operators[0].intermediates = Some(vec![scratch]);
    let msg = lite
        .open_model(&model, "with_intermediates", &default_opts())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("LiteRtCreateModelFromBuffer failed"), "{msg}");
    assert!(
        msg.contains("operator intermediates (subgraph 0, operator 0"),
        "{msg}"
    );

    // A kernel set lacking an op of the model.
    let msg = lite
        .open(
            testdata("ops_activation.tflite"),
            &kernels(CpuKernels::Reference),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("not with the reference kernels"), "{msg}");
    assert!(msg.contains("LiteRtCreateCompiledModel failed"), "{msg}");

    // Not a model at all.
    let msg = lite
        .open_bytes(b"definitely not a flatbuffer", "junk", &default_opts())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("LiteRtCreateModelFromBuffer failed"), "{msg}");
    assert!(msg.contains("reader rejects it too"), "{msg}");
    let e = lite
        .open(testdata("no_such_model.tflite"), &default_opts())
        .err()
        .unwrap();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn the_debug_command_runs_models_like_the_python_helper() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("ops_elementwise.tflite");
    let model = tflquant::read_path(&path).unwrap();
    let inputs = sample_inputs(&path, &model, 3);
    let (inp, out) = (dir.path().join("in.npz"), dir.path().join("out.npz"));
    // Keyed by input tensor name, as the testdata .npz files are.
    let named: Vec<(String, Array)> = model.subgraphs[0]
        .inputs
        .iter()
        .zip(&inputs)
        .map(|(&t, a)| {
            (
                model.subgraphs[0].tensors[t as usize].name.clone(),
                a.clone(),
            )
        })
        .collect();
    data::write_npz(&inp, &named).unwrap();
    let mid = activations(&model)[0];
    let tensors = format!("{mid}");
    let (code, _, err) = run_cli(&[
        "litert-run".as_ref(),
        path.as_os_str(),
        inp.as_os_str(),
        out.as_os_str(),
        "--tensors".as_ref(),
        tensors.as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let got = data::read_npz(&out).unwrap();
    let py = litert_run(&path, &inputs).unwrap();
    for (k, p) in py.iter().enumerate() {
        let (_, o) = got
            .iter()
            .find(|(n, _)| *n == format!("output_{k}"))
            .unwrap();
        assert!(same_bits(o, p), "output {k}");
    }
    assert!(got.iter().any(|(n, _)| *n == format!("t{mid}")));
}
