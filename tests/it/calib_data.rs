//! Bad calibration data: each case is an error (exit 2) that names the file and, for
//! what is wrong inside the data, the sample; no model is written. Never a NaN or
//! infinite range that would become a scale in the model.

use std::path::{Path, PathBuf};

use tflquant::data::{self, Array, ArrayData};

use crate::common::*;

/// `quantize --mode int8 --calibration DATA` on `model`: the error text, after checking
/// the exit code, the `error:` prefix and that nothing was written.
fn rejected(model: &str, calib: &Path, dir: &Path) -> String {
    let out = dir.join("out.tflite");
    let (code, _, err) = quantize_run(
        &testdata(model),
        &out,
        &["--mode", "int8", "--calibration", calib.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(&calib.display().to_string()),
        "the message does not name the file: {err}"
    );
    assert!(!out.exists(), "a model was written");
    err
}

fn digits() -> Array {
    data::read_npy(testdata("cnn_digits.calib.npy")).unwrap()
}

fn f32s(a: &mut Array) -> &mut Vec<f32> {
    match &mut a.data {
        ArrayData::F32(v) => v,
        other => panic!("float32 expected, got {}", other.dtype_name()),
    }
}

fn save_npy(dir: &Path, name: &str, a: &Array) -> PathBuf {
    let p = dir.join(name);
    data::write_npy(&p, a).unwrap();
    p
}

#[test]
fn nan_and_infinite_samples_name_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let per = 8 * 8;
    for (bad, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let mut a = digits();
        f32s(&mut a)[5 * per + 17] = bad;
        let p = save_npy(dir.path(), "bad.npy", &a);
        let err = rejected("cnn_digits.tflite", &p, dir.path());
        assert!(err.contains("sample 5 of 64, element 17"), "{err}");
        assert!(err.contains(shown), "{err}");
        assert!(err.contains("must be finite"), "{err}");
    }
    // In an .npz member, the member is named too.
    let mut arrays = data::read_npz(testdata("ops_elementwise.calib.npz")).unwrap();
    // The member order of an archive is not guaranteed: take one by name.
    let (name, a) = arrays
        .iter_mut()
        .find(|(n, _)| n == "serving_default_y:0")
        .unwrap();
    let name = name.clone();
    let per: usize = a.shape[1..].iter().product();
    f32s(a)[3 * per + 2] = f32::NAN;
    let p = dir.path().join("bad.npz");
    data::write_npz(&p, &arrays).unwrap();
    let err = rejected("ops_elementwise.tflite", &p, dir.path());
    assert!(
        err.contains(&format!("[{name}]: sample 3 of 48, element 2")),
        "{err}"
    );
}

#[test]
fn an_array_without_samples_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = Array::f32(vec![0, 8, 8, 1], vec![]);
    let p = save_npy(dir.path(), "empty.npy", &empty);
    let err = rejected("cnn_digits.tflite", &p, dir.path());
    assert!(
        err.contains("holds no samples (shape [0, 8, 8, 1])"),
        "{err}"
    );
    // A file of zero bytes is not an .npy at all.
    let p = dir.path().join("zero.npy");
    std::fs::write(&p, b"").unwrap();
    let err = rejected("cnn_digits.tflite", &p, dir.path());
    assert!(err.contains("not a valid .npy file"), "{err}");
}

#[test]
fn a_wrong_element_type_says_what_the_input_takes() {
    let dir = tempfile::tempdir().unwrap();
    let a = digits();
    let ints = Array::new(
        a.shape.clone(),
        ArrayData::I32(a.data.to_f32().iter().map(|&x| x as i32).collect()),
    );
    let p = save_npy(dir.path(), "ints.npy", &ints);
    let err = rejected("cnn_digits.tflite", &p, dir.path());
    assert!(err.contains("expects float32 samples, got int32"), "{err}");
    let doubles = Array::new(a.shape.clone(), ArrayData::F64(a.data.to_f64()));
    let p = save_npy(dir.path(), "doubles.npy", &doubles);
    let err = rejected("cnn_digits.tflite", &p, dir.path());
    assert!(
        err.contains("got float64 (use a.astype(np.float32))"),
        "{err}"
    );
    let shorts = Array::new(a.shape.clone(), ArrayData::U16(vec![0; a.len()]));
    let p = save_npy(dir.path(), "shorts.npy", &shorts);
    let err = rejected("cnn_digits.tflite", &p, dir.path());
    assert!(err.contains("element type <u2 not supported"), "{err}");
}

#[test]
fn truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // An .npz cut anywhere loses its central directory.
    let z = std::fs::read(testdata("ops_elementwise.calib.npz")).unwrap();
    for cut in [z.len() / 3, z.len() - 10] {
        let p = dir.path().join("cut.npz");
        std::fs::write(&p, &z[..cut]).unwrap();
        let err = rejected("ops_elementwise.tflite", &p, dir.path());
        assert!(err.contains("not a valid .npz file"), "{err}");
    }
    // An .npy cut inside its data: the first sample that is incomplete is named.
    let y = std::fs::read(testdata("cnn_digits.calib.npy")).unwrap();
    let header = y.len() - 64 * 64 * 4;
    let p = dir.path().join("cut.npy");
    std::fs::write(&p, &y[..header + 10 * 64 * 4 + 100]).unwrap();
    let err = rejected("cnn_digits.tflite", &p, dir.path());
    assert!(
        err.contains("sample 10 of 64: the file ends early (truncated?)"),
        "{err}"
    );
}
