//! Broken and hostile models: each class gets an error that says what and where, exit
//! code 2, no panic and no output file.

use tflquant::fb::{self, BuiltinOperator};
use tflquant::ir::Model;
use tflquant::writer::{self, BufferLayout, WriteOptions};

use crate::common::*;

fn model(name: &str) -> Model {
    tflquant::read_path(testdata(name)).unwrap()
}

fn bytes_of(m: &Model) -> Vec<u8> {
    writer::to_bytes(m, &WriteOptions::default()).unwrap()
}

/// The library and both commands reject `bytes` with a message containing every part of
/// `expect`, exit code 2, and leave no output behind.
fn assert_rejected(bytes: &[u8], expect: &[&str]) {
    let err = tflquant::read_bytes(bytes.to_vec().into()).expect_err("model must be rejected");
    let msg = err.to_string();
    for e in expect {
        assert!(msg.contains(e), "message {msg:?} lacks {e:?}");
    }
    assert_eq!(err.exit_code(), 2);

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.tflite");
    let output = dir.path().join("out.tflite");
    std::fs::write(&input, bytes).unwrap();
    let (code, _, stderr) = run_cli(&[
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ]);
    assert_eq!(code, 2, "convert exit code; stderr: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "convert stderr {stderr:?} lacks {e:?}");
    }
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(!output.exists(), "an output file was left behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );
    let (code, stdout, stderr) = run_cli(&["inspect".as_ref(), input.as_os_str()]);
    assert_eq!(code, 2, "inspect exit code; stderr: {stderr}");
    assert!(stdout.is_empty());
}

#[test]
fn empty_file() {
    assert_rejected(b"", &["not a TFLite model", "empty"]);
}

#[test]
fn every_truncation_of_a_model_is_rejected_without_panic() {
    let bytes = std::fs::read(testdata("cnn_digits.tflite")).unwrap();
    for len in 0..bytes.len() {
        let r = tflquant::read_bytes(bytes[..len].to_vec().into());
        assert!(r.is_err(), "prefix of {len} bytes was accepted");
    }
    // A cut inside the tables says what probably happened.
    let err = tflquant::read_bytes(bytes[..bytes.len() / 2].to_vec().into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated or damaged"), "{err}");
    // And through the CLI for a few representative lengths.
    for len in [3, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = tflquant::read_bytes(bytes[..len].to_vec().into())
            .unwrap_err()
            .to_string();
        let first_words: Vec<&str> = err.split(':').take(1).collect();
        assert_rejected(&bytes[..len], &first_words);
    }
}

#[test]
fn wrong_file_identifier() {
    let mut bytes = std::fs::read(testdata("cnn_digits.tflite")).unwrap();
    bytes[4..8].copy_from_slice(b"ONNX");
    assert_rejected(&bytes, &["not a TFLite model", "\"ONNX\"", "TFL3"]);
}

#[test]
fn random_bytes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut bytes: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
    assert_rejected(&bytes, &["not a TFLite model"]);
    // With a valid identifier the flatbuffer parser has to reject it.
    bytes[4..8].copy_from_slice(b"TFL3");
    assert_rejected(&bytes, &["malformed model"]);
}

#[test]
fn tensor_index_out_of_range() {
    let mut m = model("cnn_digits.tflite");
    m.subgraphs[0].operators[1].inputs[0] = 999;
    assert_rejected(
        &bytes_of(&m),
        &[
            "subgraph 0, operator 1",
            "input 0",
            "tensor index 999 out of range",
        ],
    );
}

#[test]
fn buffer_index_out_of_range() {
    let mut m = model("cnn_digits.tflite");
    m.subgraphs[0].tensors[2].buffer = 4242;
    assert_rejected(
        &bytes_of(&m),
        &["subgraph 0, tensor 2", "buffer index 4242 out of range"],
    );
}

#[test]
fn opcode_index_out_of_range() {
    let mut m = model("cnn_digits.tflite");
    m.subgraphs[0].operators[0].opcode_index = 77;
    assert_rejected(
        &bytes_of(&m),
        &["subgraph 0, operator 0", "opcode index 77 out of range"],
    );
}

#[test]
fn subgraph_index_out_of_range() {
    let mut m = model("while_loop.tflite");
    let (si, oi) = find_op(&m, BuiltinOperator::While);
    match &mut m.subgraphs[si].operators[oi].builtin_options {
        Some(fb::BuiltinOptions::WhileOptions(o)) => o.body_subgraph_index = 12,
        other => panic!("WHILE without WhileOptions: {other:?}"),
    }
    assert_rejected(
        &bytes_of(&m),
        &[
            &format!("subgraph {si}, operator {oi}"),
            "body_subgraph_index 12 out of range",
        ],
    );
}

#[test]
fn cyclic_subgraph_calls() {
    let mut m = model("while_loop.tflite");
    let (si, oi) = find_op(&m, BuiltinOperator::While);
    match &mut m.subgraphs[si].operators[oi].builtin_options {
        Some(fb::BuiltinOptions::WhileOptions(o)) => o.body_subgraph_index = si as i32,
        other => panic!("WHILE without WhileOptions: {other:?}"),
    }
    assert_rejected(&bytes_of(&m), &["cyclic subgraph calls"]);
}

#[test]
fn buffer_past_the_end_of_the_file() {
    let m = model("cnn_digits.tflite");
    let bytes = writer::to_bytes(
        &m,
        &WriteOptions {
            layout: BufferLayout::Offset,
        },
    )
    .unwrap();
    // Cut the data after the flatbuffer: the last buffer now points past the end.
    let cut = &bytes[..bytes.len() - 8];
    assert_rejected(cut, &["buffer", "past the end of the file"]);
}

#[test]
fn negative_dimension() {
    let mut m = model("cnn_digits.tflite");
    let t = m.subgraphs[0].operators[0].outputs[0] as usize;
    m.subgraphs[0].tensors[t].shape[1] = -5;
    assert_rejected(
        &bytes_of(&m),
        &[&format!("subgraph 0, tensor {t}"), "negative dimension -5"],
    );
}

#[test]
fn overflowing_element_count() {
    let mut m = model("cnn_digits.tflite");
    let t = m.subgraphs[0].operators[0].outputs[0] as usize;
    m.subgraphs[0].tensors[t].shape = vec![1 << 30, 1 << 30, 1 << 30];
    m.subgraphs[0].tensors[t].shape_signature = None;
    assert_rejected(
        &bytes_of(&m),
        &[&format!("subgraph 0, tensor {t}"), "overflows"],
    );
}

#[test]
fn constant_data_of_the_wrong_size() {
    let mut m = model("cnn_digits.tflite");
    let (ti, t) = m.subgraphs[0]
        .tensors
        .iter()
        .enumerate()
        .find(|(_, t)| {
            m.is_constant(t) && t.dtype == fb::TensorType::Float32 && t.num_elements().unwrap() > 4
        })
        .map(|(i, t)| (i, t.clone()))
        .unwrap();
    let short = m.buffers[t.buffer as usize].data.bytes().slice(..8);
    m.buffers[t.buffer as usize].data = short.into();
    assert_rejected(
        &bytes_of(&m),
        &[&format!("subgraph 0, tensor {ti}"), "holds 8 bytes"],
    );
}

#[test]
fn unknown_operator_from_a_newer_schema() {
    // A model whose only operator code uses the highest value this schema knows; then the
    // value is patched to one it does not know, as a model from a future schema would have.
    let mut m = model("cnn_digits.tflite");
    let known = BuiltinOperator::StablehloCase as i32;
    m.operator_codes.truncate(1);
    m.operator_codes[0].builtin = BuiltinOperator::StablehloCase;
    m.subgraphs[0].operators.truncate(1);
    let mut bytes = bytes_of(&m);
    let pattern = known.to_le_bytes();
    let hits: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == pattern)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "the op code value must occur exactly once to patch it"
    );
    bytes[hits[0]..hits[0] + 4].copy_from_slice(&250i32.to_le_bytes());
    assert_rejected(&bytes, &["operator code 0", "250", "newer"]);
}

/// Found by the quantizer fuzz target: a constant written by an operator made float16
/// fail with an internal error (the DEQUANTIZE it inserted became a second producer).
#[test]
fn an_operator_writing_a_constant() {
    let mut m = model("cnn_digits.tflite");
    let c = m.subgraphs[0].operators[0].inputs[1];
    assert!(m.is_constant(&m.subgraphs[0].tensors[c as usize]));
    m.subgraphs[0].operators[2].outputs[0] = c;
    assert_rejected(
        &bytes_of(&m),
        &[
            "subgraph 0, operator 2",
            &format!("output tensor {c}"),
            "holds constant data",
        ],
    );
}

/// Found by the wiring sweep (`quant_fuzz::rewired_operands_through_every_mode`): an
/// operator reading a tensor that a later operator writes (the runtime runs them in
/// their listed order) made int8 write two QUANTIZE operators into one tensor.
#[test]
fn an_operator_reading_a_later_operators_output() {
    let mut m = model("cnn_digits.tflite");
    let later = m.subgraphs[0].operators[2].outputs[0];
    m.subgraphs[0].operators[1].inputs[0] = later;
    assert_rejected(
        &bytes_of(&m),
        &[
            "subgraph 0, operator 1",
            "input 0",
            &format!("tensor {later} is written by operator 2, which does not run before this one"),
        ],
    );
}

/// Found by the quantizer fuzz target: an operator writing the graph input made int8
/// fail with an internal error (two producers once QUANTIZE was inserted).
#[test]
fn an_operator_writing_a_subgraph_input() {
    let mut m = model("cnn_digits.tflite");
    let input = m.subgraphs[0].inputs[0];
    m.subgraphs[0].operators[6].outputs[0] = input;
    assert_rejected(
        &bytes_of(&m),
        &[
            "subgraph 0, operator 6",
            &format!("output tensor {input} is also an input of subgraph 0"),
        ],
    );
}

#[test]
fn missing_input_file_and_bad_flags() {
    let (code, _, err) = run_cli(&["inspect".as_ref(), "/nonexistent/model.tflite".as_ref()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/nonexistent/model.tflite") && err.contains("No such file"),
        "{err}"
    );

    let (code, _, err) = run_cli(&[
        "convert".as_ref(),
        testdata("cnn_digits.tflite").as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--output"), "{err}");

    let (code, _, err) = run_cli(&["inspect".as_ref(), "--frobnicate".as_ref()]);
    assert_eq!(code, 2);
    assert!(err.contains("--frobnicate"), "{err}");
}

#[test]
fn refuses_to_overwrite_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.tflite");
    std::fs::copy(testdata("cnn_digits.tflite"), &p).unwrap();
    let before = std::fs::read(&p).unwrap();
    let (code, _, err) = run_cli(&[
        "convert".as_ref(),
        p.as_os_str(),
        "-o".as_ref(),
        p.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to overwrite the input"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), before, "input was modified");
}

/// Random mutations of real models (fixed seed): the reader may accept or reject, but
/// never panic; whatever it accepts must survive write → read.
#[test]
fn random_mutations_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7f1);
    let originals: Vec<Vec<u8>> = [
        "cnn_digits.tflite",
        "while_loop.tflite",
        "sparse_dense_mlp.tflite",
        "int8_quantized_cnn.tflite",
    ]
    .iter()
    .map(|n| std::fs::read(testdata(n)).unwrap())
    .collect();
    let mut accepted = 0;
    for round in 0..3000 {
        let mut b = originals[round % originals.len()].clone();
        for _ in 0..rng.random_range(1..=4) {
            let i = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => b[i] = rng.random(),
                1 => b[i] ^= 1 << rng.random_range(0..8),
                _ => {
                    // A 32-bit field (offset, index, length) set to an extreme.
                    let v: u32 =
                        [0, 1, 0x7fff_ffff, 0xffff_ffff, rng.random()][rng.random_range(0..5)];
                    let i = i.min(b.len() - 4);
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        if let Ok(m) = tflquant::read_bytes(b.into()) {
            accepted += 1;
            let again = bytes_of(&m);
            tflquant::read_bytes(again.into())
                .expect("an accepted model must survive write → read");
        }
    }
    // Mutations of padding and data bytes are harmless, so some must be accepted.
    assert!(accepted > 0);
}

fn find_op(m: &Model, op: BuiltinOperator) -> (usize, usize) {
    for (si, sg) in m.subgraphs.iter().enumerate() {
        for (oi, o) in sg.operators.iter().enumerate() {
            if m.builtin(o) == op {
                return (si, oi);
            }
        }
    }
    panic!("no {op:?} in the model");
}

/// Found by the fuzz target (2026-12-07): `run` on a model without subgraphs, fed a
/// `.npz` without arrays (what such a model's zero inputs ask for), panicked (index out of
/// bounds). Now exit 2 with the reason; the other commands already said so.
#[test]
fn run_on_a_model_without_subgraphs() {
    let mut m = model("cnn_digits.tflite");
    m.subgraphs.clear();
    m.signature_defs.clear();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.tflite");
    std::fs::write(&input, bytes_of(&m)).unwrap();
    let npz = dir.path().join("none.npz");
    zip::ZipWriter::new(std::fs::File::create(&npz).unwrap())
        .finish()
        .unwrap();
    let out = dir.path().join("out.npz");
    let (code, _, err) = run_cli(&[
        "run".as_ref(),
        input.as_os_str(),
        "--input".as_ref(),
        npz.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the model has no subgraph"), "{err}");
    assert!(!out.exists());
}
