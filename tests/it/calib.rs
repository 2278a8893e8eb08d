//! Calibration against the official runtime (min/max of LiteRT's intermediates over the
//! same samples), observer ranges, sample sources, and the `run` / `calibrate` commands
//! including their bad-input errors.

use std::path::Path;

use tflquant::calib::{self, CalibOptions, ObserverKind, Ranges, SampleOptions, Samples};
use tflquant::data::{self, Array, ArrayData};
use tflquant::ir::Model;

use crate::common::*;
use crate::interp::{REL_TOL, rel_diff};

fn calibrate(model: &Model, data: &str, kind: ObserverKind) -> Ranges {
    let samples = Samples::open(&testdata(data), model, &SampleOptions::default()).unwrap();
    calib::calibrate(
        model,
        samples,
        &CalibOptions {
            observer: kind,
            progress: None,
        },
    )
    .unwrap()
}

/// min/max over samples of every float tensor LiteRT reports.
fn litert_ranges(path: &Path, model: &Model, data: &str) -> Vec<(usize, f32, f32)> {
    let inputs = load_samples(data, model, usize::MAX);
    let (_, tensors) = litert_run_all(path, &inputs).expect("LiteRT run");
    let sg = &model.subgraphs[0];
    let mut out = Vec::new();
    for (k, a) in tensors {
        let t: usize = k[1..].parse().unwrap();
        let Some(tensor) = sg.tensors.get(t) else {
            continue;
        };
        if model.is_constant(tensor) {
            continue;
        }
        let ArrayData::F32(v) = &a.data else { continue };
        let mn = v.iter().copied().fold(f32::INFINITY, f32::min);
        let mx = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        out.push((t, mn, mx));
    }
    out.sort_by_key(|x| x.0);
    out
}

#[test]
fn minmax_ranges_equal_litert_intermediates() {
    // Models whose float results are bit-identical to LiteRT's (element-wise and data
    // movement ops): the ranges must be equal exactly. cnn_digits (GEMM accumulation
    // order differs) within the float tolerance of the interpreter tests.
    for (name, exact) in [
        ("ops_elementwise.tflite", true),
        ("ops_shape.tflite", true),
        ("cnn_digits.tflite", false),
    ] {
        let path = testdata(name);
        let model = tflquant::read_path(&path).unwrap();
        let data = manifest_entry(name).unwrap()["calib"]
            .as_str()
            .unwrap()
            .to_string();
        let ours = calibrate(&model, &data, ObserverKind::MinMax);
        let theirs = litert_ranges(&path, &model, &data);
        // digits calibration sets hold 64 samples, photo crops 48.
        assert_eq!(ours.samples, if name.starts_with("cnn") { 64 } else { 48 });
        assert!(theirs.len() >= 9, "{name}: only {} tensors", theirs.len());
        for (t, mn, mx) in theirs {
            let r = ours
                .get(0, t)
                .unwrap_or_else(|| panic!("{name}: no range for tensor {t}"));
            if exact {
                assert_eq!((r.min, r.max), (mn, mx), "{name}: tensor {t} {:?}", r.name);
            } else {
                let scale = mn.abs().max(mx.abs()) as f64;
                let d = ((r.min - mn).abs().max((r.max - mx).abs()) as f64) / scale.max(1e-30);
                assert!(d <= REL_TOL, "{name}: tensor {t}: {d:e}");
            }
        }
        // Every float tensor of the subgraph that is not constant has a range.
        let sg = &model.subgraphs[0];
        for (t, tensor) in sg.tensors.iter().enumerate() {
            let float = tensor.dtype == tflquant::fb::TensorType::Float32;
            if float && !model.is_constant(tensor) {
                assert!(ours.get(0, t).is_some(), "{name}: tensor {t} has no range");
            }
        }
    }
}

#[test]
fn every_observer_range_lies_inside_the_minmax_range() {
    let model = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    let mm = calibrate(&model, "cnn_digits.calib.npy", ObserverKind::MinMax);
    for kind in [
        "ema:0.95",
        "percentile:99.99",
        "percentile:99",
        "mse",
        "entropy",
    ] {
        let k: ObserverKind = kind.parse().unwrap();
        let r = calibrate(&model, "cnn_digits.calib.npy", k);
        assert_eq!(r.observer, kind);
        assert_eq!(r.tensors.len(), mm.tensors.len(), "{kind}");
        let mut shrunk = 0;
        for (a, b) in r.tensors.iter().zip(&mm.tensors) {
            assert_eq!((a.subgraph, a.tensor), (b.subgraph, b.tensor));
            assert!(
                a.min >= b.min && a.max <= b.max && a.min <= a.max,
                "{kind}: tensor {} [{}, {}] not inside [{}, {}]",
                a.tensor,
                a.min,
                a.max,
                b.min,
                b.max
            );
            if a.max < b.max {
                shrunk += 1;
            }
        }
        // These observers exist to clip outliers: some ranges must be narrower.
        assert!(shrunk > 0, "{kind}: no range narrower than min/max");
    }
}

#[test]
fn ranges_round_trip_through_json_with_lookup() {
    let model = tflquant::read_path(testdata("while_loop.tflite")).unwrap();
    let r = calibrate(&model, "mlp_large_fc.calib.npy", ObserverKind::MinMax);
    // Tensors of the loop body (subgraph 2) are calibrated too.
    assert!(
        r.tensors.iter().any(|t| t.subgraph == 2),
        "no body tensor ranges"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ranges.json");
    r.save(&p).unwrap();
    let back = Ranges::load(&p).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(v["observer"], "minmax");
    assert_eq!(v["samples"], 64);
    let first = &v["tensors"][0];
    for k in ["subgraph", "tensor", "name", "min", "max"] {
        assert!(first.get(k).is_some(), "missing key {k}");
    }
    let mut keys: Vec<(u64, u64)> = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["subgraph"].as_u64().unwrap(),
                t["tensor"].as_u64().unwrap(),
            )
        })
        .collect();
    let sorted = {
        let mut s = keys.clone();
        s.sort();
        s
    };
    assert_eq!(keys, sorted);
    keys.dedup();
    let t = &r.tensors[3];
    assert_eq!(back.get(t.subgraph, t.tensor), Some(t));
    assert_eq!(back.get(9, 9), None);
}

#[test]
fn run_command_matches_litert_expected_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npz");
    let (code, _, err) = run_cli(&[
        "run".as_ref(),
        testdata("cnn_digits.tflite").as_os_str(),
        "--input".as_ref(),
        testdata("cnn_digits.test.npy").as_os_str(),
        "--samples".as_ref(),
        "4".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        "--tensors".as_ref(),
        "all".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let ours = data::read_npz(&out).unwrap();
    let expected = data::read_npz(testdata("cnn_digits.expected.npz")).unwrap();
    for (name, e) in &expected {
        let (_, o) = ours.iter().find(|(k, _)| k == name).expect("output saved");
        assert_eq!(o.shape, vec![4, 10], "batch dimension of 1 dropped");
        let d = rel_diff(o, e);
        assert!(d <= REL_TOL, "{name}: {d:e}");
    }
    // All non-constant tensors of subgraph 0, samples on axis 0.
    assert_eq!(
        ours.len(),
        10,
        "{:?}",
        ours.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert!(ours.iter().all(|(_, a)| a.shape[0] == 4));
    // Without -o: a summary line per output.
    let (code, stdout, _) = run_cli(&[
        "run".as_ref(),
        testdata("ops_elementwise.tflite").as_os_str(),
        "--input".as_ref(),
        testdata("ops_elementwise.test.npz").as_os_str(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("24 samples run"), "{stdout}");
    assert!(
        stdout.contains("PartitionedCall:0  float32 [24, 4, 4, 3]  min "),
        "{stdout}"
    );
}

#[test]
fn calibrate_command_writes_the_library_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ranges.json");
    let (code, _, err) = run_cli(&[
        "calibrate".as_ref(),
        testdata("ops_elementwise.tflite").as_os_str(),
        "--data".as_ref(),
        testdata("ops_elementwise.calib.npz").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--observer".as_ref(),
        "percentile:99.9".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let model = tflquant::read_path(testdata("ops_elementwise.tflite")).unwrap();
    let lib = calibrate(
        &model,
        "ops_elementwise.calib.npz",
        "percentile:99.9".parse().unwrap(),
    );
    assert_eq!(Ranges::load(&out).unwrap(), lib);
}

/// PNG images are resized to the input size and normalised; checked through `run`
/// saving the model input itself.
#[test]
fn image_directory_feeds_an_nhwc_input() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    // ops_shape takes [1,8,8,3]: one image at that size, one to be resized.
    let a = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 200]));
    a.save(imgs.join("a.png")).unwrap();
    let b = image::RgbImage::from_pixel(16, 12, image::Rgb([10, 20, 30]));
    b.save(imgs.join("b.png")).unwrap();
    std::fs::write(imgs.join("notes.txt"), "not an image").unwrap();
    let out = dir.path().join("out.npz");
    let (code, _, err) = run_cli(&[
        "run".as_ref(),
        testdata("ops_shape.tflite").as_os_str(),
        "--input".as_ref(),
        imgs.as_os_str(),
        "--mean".as_ref(),
        "0,10,20".as_ref(),
        "--std".as_ref(),
        "2".as_ref(),
        "--bgr".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        "--tensors".as_ref(),
        "serving_default_image:0".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let arrays = data::read_npz(&out).unwrap();
    let (_, x) = arrays
        .iter()
        .find(|(k, _)| k == "serving_default_image:0")
        .unwrap();
    assert_eq!(x.shape, vec![2, 8, 8, 3]);
    let v = x.data.to_f32();
    // Image a, pixel (x=1, y=2): RGB (30, 60, 200) → BGR (200, 60, 30) → (p - mean) / 2.
    let px = &v[(2 * 8 + 1) * 3..(2 * 8 + 1) * 3 + 3];
    assert_eq!(px, &[100.0, 25.0, 5.0]);
    // Image b is uniform: resizing keeps it.
    let px = &v[8 * 8 * 3..8 * 8 * 3 + 3];
    assert_eq!(px, &[15.0, 5.0, -5.0]);
}

/// `.npz` archives written by np.savez_compressed are read too.
#[test]
fn compressed_npz_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.npz");
    let src = testdata("ops_elementwise.calib.npz");
    let o = std::process::Command::new(python())
        .args([
            "-c",
            "import numpy as np,sys; d=np.load(sys.argv[1]); np.savez_compressed(sys.argv[2], **{k: d[k] for k in d.files})",
        ])
        .arg(&src)
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = tflquant::read_path(testdata("ops_elementwise.tflite")).unwrap();
    let a: Vec<_> = Samples::open(&p, &model, &SampleOptions::default())
        .unwrap()
        .map(|s| s.unwrap())
        .collect();
    let b: Vec<_> = Samples::open(&src, &model, &SampleOptions::default())
        .unwrap()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(a.len(), 48);
    assert_eq!(a, b);
    // Inputs are matched by name, not archive order: x is [1,4,4,3], y is [1,4,1,1].
    assert_eq!(a[0][0].shape, vec![1, 4, 1, 1]);
    assert_eq!(a[0][1].shape, vec![1, 4, 4, 3]);
}

/// Runs both commands on bad input; each must fail with exit code 2 and a message
/// containing every part of `expect`.
fn assert_both_fail(model: &str, data: &Path, extra: &[&str], expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out_json = dir.path().join("r.json");
    let mut cal: Vec<&std::ffi::OsStr> = vec![
        "calibrate".as_ref(),
        testdata(model).into_os_string().leak(),
        "--data".as_ref(),
        data.as_os_str(),
        "-o".as_ref(),
        out_json.as_os_str(),
    ];
    cal.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    let (code, _, err) = run_cli(&cal);
    assert_eq!(code, 2, "calibrate: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for e in expect {
        assert!(err.contains(e), "calibrate stderr {err:?} lacks {e:?}");
    }
    assert!(!out_json.exists());
    if extra.is_empty() {
        let (code, stdout, err) = run_cli(&[
            "run".as_ref(),
            testdata(model).as_os_str(),
            "--input".as_ref(),
            data.as_os_str(),
        ]);
        assert_eq!(code, 2, "run: {err}");
        assert!(stdout.is_empty());
        for e in expect {
            assert!(err.contains(e), "run stderr {err:?} lacks {e:?}");
        }
    }
}

#[test]
fn bad_data_and_options_fail_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    // Wrong shape: 64-feature rows for an 8x8x1 image model.
    assert_both_fail(
        "cnn_digits.tflite",
        &testdata("mlp_large_fc.calib.npy"),
        &[],
        &[
            "got data of shape [64, 64]",
            "expected data of shape [N,8,8,1] or [N,1,8,8,1]",
        ],
    );
    // Wrong dtype: int32 ids for a float model.
    assert_both_fail(
        "mlp_large_fc.tflite",
        &testdata("embedding_lookup.calib.npy"),
        &[],
        &["expects float32 samples, got int32"],
    );
    // float64 data gets a hint.
    let f64p = dir.path().join("f64.npy");
    data::write_npy(
        &f64p,
        &Array::new(vec![2, 64], ArrayData::F64(vec![0.5; 128])),
    )
    .unwrap();
    assert_both_fail(
        "mlp_large_fc.tflite",
        &f64p,
        &[],
        &["got float64", "astype(np.float32)"],
    );
    // Missing data file.
    let missing = dir.path().join("nope.npy");
    assert_both_fail(
        "mlp_large_fc.tflite",
        &missing,
        &[],
        &["cannot open", "nope.npy"],
    );
    // An npz without an array for an input.
    let npz = dir.path().join("x.npz");
    data::write_npz(
        &npz,
        &[("z".into(), Array::f32(vec![1, 4, 4, 3], vec![0.0; 48]))],
    )
    .unwrap();
    assert_both_fail(
        "ops_elementwise.tflite",
        &npz,
        &[],
        &[
            "no array for input 0 (\"serving_default_y:0\")",
            "input_0",
            "the file has z",
        ],
    );
    // Unsupported op: the custom op is named (on the interpreter; `auto` would try
    // LiteRT next, see custom_ops.rs).
    assert_both_fail(
        "custom_op.tflite",
        &testdata("mlp_large_fc.calib.npy"),
        &["--calibration-runtime", "reference"],
        &["subgraph 0, operator 2 (CUSTOM(TflquantTestOp))"],
    );
    // Unknown observer.
    assert_both_fail(
        "mlp_large_fc.tflite",
        &testdata("mlp_large_fc.calib.npy"),
        &["--observer", "median"],
        &["unknown observer \"median\"", "percentile:99.99"],
    );
}
