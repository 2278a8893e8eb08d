//! Read → write with no change, for every testdata model: LiteRT gives bit-identical
//! outputs, `inspect --json` is unchanged, bytes are deterministic and aligned, and the
//! forced offset-buffer layout loads and matches too.

use std::path::Path;

use planus::ReadAsRoot;
use tflquant::writer::{self, BufferLayout, WriteOptions};

use crate::common::*;

fn inspect_json(path: &Path) -> serde_json::Value {
    let (code, out, err) = run_cli(&["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "inspect --json {} failed: {err}", path.display());
    let mut v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    // The file's own path and size differ between input and output by construction.
    let obj = v.as_object_mut().unwrap();
    obj.remove("file").expect("file key");
    obj.remove("file_bytes").expect("file_bytes key");
    v
}

/// Offsets of every buffer's data from the start of the file, read with the generated
/// bindings: `(inline data start, external offset)`.
fn buffer_positions(bytes: &[u8]) -> Vec<(Option<usize>, u64)> {
    let m = tflquant::fb::ModelRef::read_as_root(bytes).unwrap();
    let base = bytes.as_ptr() as usize;
    m.buffers()
        .unwrap()
        .unwrap()
        .iter()
        .map(|b| {
            let b = b.unwrap();
            let inline = b
                .data()
                .unwrap()
                .filter(|d| !d.is_empty())
                .map(|d| d.as_ptr() as usize - base);
            (inline, b.offset().unwrap())
        })
        .collect()
}

#[test]
fn convert_is_lossless_on_every_testdata_model() {
    let dir = tempfile::tempdir().unwrap();
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let out = dir.path().join(&name);
        let (code, _, err) = run_cli(&[
            "convert".as_ref(),
            path.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(code, 0, "{name}: convert failed: {err}");

        // Deterministic: a second write gives the same bytes.
        let model = tflquant::read_path(&path).unwrap();
        let again = writer::to_bytes(&model, &WriteOptions::default()).unwrap();
        let written = std::fs::read(&out).unwrap();
        assert_eq!(written, again, "{name}: two writes differ");

        // Every inline buffer's data starts on a 16-byte boundary.
        for (i, (inline, _)) in buffer_positions(&written).into_iter().enumerate() {
            if let Some(pos) = inline {
                assert_eq!(
                    pos % 16,
                    0,
                    "{name}: buffer {i} data at {pos} is not 16-byte aligned"
                );
            }
        }

        assert_eq!(
            inspect_json(&path),
            inspect_json(&out),
            "{name}: inspect --json differs after convert"
        );

        if has_custom_op(&model)
            && manifest_entry(&name).is_some_and(|e| e["runs_in_litert"] == false)
        {
            // LiteRT has no kernel for the test's custom op; structure was compared above.
            let err = litert_run(&path, &synthetic_inputs(&model, 1, 1)).unwrap_err();
            assert!(
                err.contains("custom") || err.contains("Custom"),
                "{name}: unexpected LiteRT error {err}"
            );
            continue;
        }
        let inputs = sample_inputs(&path, &model, 4);
        let a = litert_run(&path, &inputs)
            .unwrap_or_else(|e| panic!("{name}: original fails on LiteRT: {e}"));
        let b = litert_run(&out, &inputs)
            .unwrap_or_else(|e| panic!("{name}: converted fails on LiteRT: {e}"));
        assert_eq!(a, b, "{name}: LiteRT outputs differ after convert");
    }
}

#[test]
fn offset_buffer_layout_loads_and_matches() {
    let dir = tempfile::tempdir().unwrap();
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let model = tflquant::read_path(&path).unwrap();
        if has_custom_op(&model) {
            continue;
        }
        let out = dir.path().join(&name);
        writer::write_path(
            &model,
            &out,
            &WriteOptions {
                layout: BufferLayout::Offset,
            },
        )
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let positions = buffer_positions(&bytes);
        let mut external = 0;
        for (i, (inline, offset)) in positions.iter().enumerate() {
            let data_len = model.buffers[i].data.len();
            if *offset > 1 {
                external += 1;
                assert_eq!(
                    offset % 16,
                    0,
                    "{name}: buffer {i} offset {offset} unaligned"
                );
                let o = *offset as usize;
                assert_eq!(
                    &bytes[o..o + data_len],
                    &model.buffers[i].data[..],
                    "{name}: buffer {i} data"
                );
            } else if let Some(pos) = inline {
                assert_eq!(pos % 16, 0);
            }
        }
        assert!(
            external > 0,
            "{name}: no buffer was moved after the flatbuffer"
        );

        // Reading it back gives the same model.
        let back = tflquant::read_path(&out).unwrap();
        for (a, b) in model.buffers.iter().zip(&back.buffers) {
            assert_eq!(
                a.data, b.data,
                "{name}: buffer data changed through the offset layout"
            );
        }
        let inputs = sample_inputs(&path, &model, 2);
        let a = litert_run(&path, &inputs).unwrap();
        let b = litert_run(&out, &inputs)
            .unwrap_or_else(|e| panic!("{name}: offset layout fails on LiteRT: {e}"));
        assert_eq!(a, b, "{name}: LiteRT outputs differ with the offset layout");
    }
}

#[test]
fn inspect_json_agrees_with_the_official_schema_reader() {
    for path in all_models() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let ours = inspect_json(&path);
        let theirs = python_schema(&path);
        let ours_sgs = ours["subgraphs"].as_array().unwrap();
        let theirs_sgs = theirs["subgraphs"].as_array().unwrap();
        assert_eq!(ours_sgs.len(), theirs_sgs.len(), "{name}: subgraph count");
        assert_eq!(ours["buffers"], theirs["buffers"], "{name}: buffer count");
        for (si, (o, t)) in ours_sgs.iter().zip(theirs_sgs).enumerate() {
            let (ot, tt) = (
                o["tensors"].as_array().unwrap(),
                t["tensors"].as_array().unwrap(),
            );
            assert_eq!(ot.len(), tt.len(), "{name}: subgraph {si} tensor count");
            for (ti, (a, b)) in ot.iter().zip(tt).enumerate() {
                let at = format!("{name}: subgraph {si} tensor {ti}");
                assert_eq!(a["name"], b["name"], "{at} name");
                assert_eq!(a["dtype"], b["dtype"], "{at} dtype");
                assert_eq!(a["shape"], b["shape"], "{at} shape");
                assert_eq!(a["buffer"], b["buffer"], "{at} buffer");
                match (&a["quantization"], &b["quantization"]) {
                    (q, serde_json::Value::Null) => assert!(
                        q.is_null() || q["scale"].as_array().unwrap().is_empty(),
                        "{at}: we report quantization the schema reader does not see"
                    ),
                    (q, r) => {
                        // Python widens float32 to float64; compare as float32.
                        let f32s = |v: &serde_json::Value| -> Vec<f32> {
                            v.as_array()
                                .unwrap()
                                .iter()
                                .map(|x| x.as_f64().unwrap() as f32)
                                .collect()
                        };
                        assert_eq!(f32s(&q["scale"]), f32s(&r["scale"]), "{at} scales");
                        assert_eq!(q["zero_point"], r["zero_point"], "{at} zero points");
                        assert_eq!(
                            q["quantized_dimension"], r["quantized_dimension"],
                            "{at} axis"
                        );
                    }
                }
            }
            let (oo, to) = (
                o["operators"].as_array().unwrap(),
                t["operators"].as_array().unwrap(),
            );
            assert_eq!(oo.len(), to.len(), "{name}: subgraph {si} operator count");
            for (oi, (a, b)) in oo.iter().zip(to).enumerate() {
                let at = format!("{name}: subgraph {si} operator {oi}");
                let op = a["op"].as_str().unwrap();
                // Custom ops display as CUSTOM(code) in our report.
                let op = if op.starts_with("CUSTOM(") {
                    "CUSTOM"
                } else {
                    op
                };
                assert_eq!(op, b["op"].as_str().unwrap(), "{at} op");
                assert_eq!(a["inputs"], b["inputs"], "{at} inputs");
                assert_eq!(a["outputs"], b["outputs"], "{at} outputs");
            }
        }
    }
}

#[test]
fn legacy_opcode_model_reads_as_its_real_ops_and_is_written_with_both_codes() {
    let legacy = tflquant::read_path(testdata("legacy_opcodes_cnn.tflite")).unwrap();
    let modern = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    let ops = |m: &tflquant::Model| -> Vec<String> {
        m.subgraphs[0]
            .operators
            .iter()
            .map(|o| m.op_display_name(o))
            .collect()
    };
    assert_eq!(
        ops(&legacy),
        ops(&modern),
        "legacy opcodes must decode to the same ops"
    );
    assert!(
        !ops(&legacy).iter().any(|o| o == "ADD"),
        "legacy ops misread as ADD"
    );

    // Written back, both fields are set consistently.
    let bytes = writer::to_bytes(&legacy, &WriteOptions::default()).unwrap();
    let m = tflquant::fb::ModelRef::read_as_root(&bytes[..]).unwrap();
    for c in m.operator_codes().unwrap().unwrap().iter() {
        let c = c.unwrap();
        let code = c.builtin_code().unwrap() as i32;
        assert_eq!(c.deprecated_builtin_code().unwrap() as i32, code.min(127));
    }
}
