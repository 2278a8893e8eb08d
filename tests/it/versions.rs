//! Operator versions against TF's converter: every operator code of every model in
//! `testdata/` must carry exactly the version [`required_version`] computes.
//!
//! TF's exporter writes one operator code per builtin, starting at version 0, and raises
//! it to the version each operator using it needs; so a code's version is the maximum of
//! the operators' versions, not each operator's own. The test therefore compares, per
//! code, the maximum of `required_version` over the operators using it with the stored
//! version (which also checks that no operator needs more than its code has).
//!
//! The object-API rewrites in `testdata/` (see its README) kept the converter's codes,
//! and the hand-built ones use the versions the converter would write, so they are
//! checked the same way. CUSTOM codes have no builtin version and are skipped; a code no
//! operator uses has nothing to compare.
//!
//! One exception: TF 2.21's 16x8 conversions (`*.tf_int16x8.tflite`) declare the versions
//! of the int8 signatures (CONV_2D 3, MAX_POOL_2D 2, QUANTIZE 1, ...) where
//! `op_version.cc` asks more for int16 ones (8, 3, 2); the runtime accepts both, and we
//! keep the table's numbers. For those files the test checks that TF never declares
//! more than we compute.

use std::collections::BTreeMap;
use std::path::Path;

use tflquant::fb::{self, BuiltinOperator as Op};
use tflquant::ir::Model;
use tflquant::quant::{self, Mode, Options};
use tflquant::rules::version::required_version;

use crate::common::*;

fn model_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Per operator code index: (max required version, operators using it).
fn required_per_code(m: &Model) -> BTreeMap<usize, (i32, usize)> {
    let mut per_code = BTreeMap::new();
    for sg in &m.subgraphs {
        for op in &sg.operators {
            let e = per_code
                .entry(op.opcode_index as usize)
                .or_insert((i32::MIN, 0));
            e.0 = e.0.max(required_version(m, sg, op));
            e.1 += 1;
        }
    }
    per_code
}

#[test]
fn converter_versions_of_every_testdata_model() {
    let mut ops_checked = 0;
    let mut codes_checked = 0;
    let mut above_1 = Vec::new();
    let mut failures = Vec::new();
    for path in all_models() {
        let name = model_name(&path);
        let m = tflquant::read_path(&path).unwrap();
        for (ci, (need, users)) in required_per_code(&m) {
            let code = &m.operator_codes[ci];
            if code.builtin == Op::Custom {
                continue;
            }
            codes_checked += 1;
            ops_checked += users;
            let tf_16x8 = name.contains(".tf_int16x8.");
            if (tf_16x8 && code.version > need) || (!tf_16x8 && need != code.version) {
                failures.push(format!(
                    "{name}: code {ci} {} has version {} but its {users} operator(s) need {need}",
                    fb::op_name(code.builtin),
                    code.version
                ));
            }
            if code.version > 1 {
                above_1.push(format!("{}={}", fb::op_name(code.builtin), code.version));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus is large enough to mean something: float, int8, dynamic-range, float16,
    // sparse and option-dependent versions all occur.
    assert!(ops_checked >= 300, "only {ops_checked} operators checked");
    above_1.sort();
    above_1.dedup();
    for expect in [
        "CONV_2D=3",
        "CONV_2D=5",
        "FULLY_CONNECTED=4",
        "FULLY_CONNECTED=5",
        "FULLY_CONNECTED=8",
        "FULLY_CONNECTED=12",
        "DEQUANTIZE=2",
        "DEQUANTIZE=3",
        "SOFTMAX=2",
        "STRIDED_SLICE=4",
        "TRANSPOSE_CONV=3",
        "RESIZE_BILINEAR=3",
        "BROADCAST_TO=2",
    ] {
        assert!(
            above_1.iter().any(|v| v == expect),
            "{expect} no longer occurs in testdata: {above_1:?}"
        );
    }
    eprintln!(
        "{ops_checked} operators under {codes_checked} operator codes checked; \
         versions above 1: {above_1:?}"
    );
}

/// The engine's pass gives the converter's versions back: with every code reset to
/// version 1, `bump_versions` raises each builtin to the version TF wrote.
#[test]
fn bump_versions_restores_converter_versions() {
    for path in all_models() {
        let name = model_name(&path);
        if name.contains(".tf_int16x8.") {
            continue; // see the module docs
        }
        let original = tflquant::read_path(&path).unwrap();
        let mut m = original.clone();
        for c in &mut m.operator_codes {
            c.version = 1;
        }
        quant::bump_versions(&mut m);
        let used = |m: &Model| -> BTreeMap<Op, i32> {
            let mut v = BTreeMap::new();
            for sg in &m.subgraphs {
                for op in &sg.operators {
                    let c = m.code(op);
                    if c.builtin != Op::Custom {
                        let e = v.entry(c.builtin).or_insert(0);
                        *e = (*e).max(c.version);
                    }
                }
            }
            v
        };
        assert_eq!(used(&m), used(&original), "{name}");
    }
}

/// Max version per builtin over the codes the operators of `m` use.
fn versions_by_builtin(m: &Model) -> BTreeMap<String, i32> {
    let mut v = BTreeMap::new();
    for sg in &m.subgraphs {
        for op in &sg.operators {
            let c = m.code(op);
            let e = v.entry(fb::op_name(c.builtin).to_string()).or_insert(0);
            *e = (*e).max(c.version);
        }
    }
    v
}

/// tflquant's dynamic-range and float16 outputs declare the same versions as TF's own
/// conversions of the same float models.
#[test]
fn quantized_models_declare_tf_versions() {
    for (float, mode, tf) in [
        (
            "cnn_digits.tflite",
            Mode::Dynamic,
            "cnn_digits.tf_dynamic.tflite",
        ),
        (
            "cnn_digits.tflite",
            Mode::Float16,
            "cnn_digits.tf_float16.tflite",
        ),
        (
            "mlp_large_fc.tflite",
            Mode::Dynamic,
            "mlp_large_fc.tf_dynamic.tflite",
        ),
        (
            "mlp_large_fc.tflite",
            Mode::Float16,
            "mlp_large_fc.tf_float16.tflite",
        ),
    ] {
        let input = tflquant::read_path(testdata(float)).unwrap();
        let (ours, _) = quant::quantize(&input, &Options::new(mode)).unwrap();
        let theirs = tflquant::read_path(testdata(tf)).unwrap();
        assert_eq!(
            versions_by_builtin(&ours),
            versions_by_builtin(&theirs),
            "{float} in mode {} vs {tf}",
            mode.name()
        );
    }
}
