//! What the writer puts on disk: never a file the runtime cannot load (the 2 GiB
//! flatbuffer limit; every output read back before the rename), permissions from the
//! umask, identical data stored once and counted once by `inspect`, unchanged data
//! copied file to file with the same bytes as a write from memory.

use std::path::Path;

use bytes::Bytes;
use tflquant::Error;
use tflquant::fb::TensorType;
use tflquant::ir::{Buffer, Model, Tensor};
use tflquant::writer::{self, BufferLayout, FLATBUFFER_MAX_BYTES, WriteOptions};

use crate::common::*;

fn model(name: &str) -> Model {
    tflquant::read_path(testdata(name)).unwrap()
}

fn inline() -> WriteOptions {
    WriteOptions {
        layout: BufferLayout::Inline,
    }
}

/// A zero-filled mapping of `len` bytes backed by a sparse file: no memory, no disk.
fn sparse_bytes(dir: &Path, len: u64) -> Bytes {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join("sparse.bin"))
        .unwrap();
    f.set_len(len).unwrap();
    // SAFETY: the file is private to this test and never written while mapped.
    let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    Bytes::from_owner(map)
}

/// Files in `dir` other than `keep`.
fn other_files(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn inline_layout_above_the_flatbuffer_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = model("cnn_digits.tflite");
    // A constant of 2 GiB + 4 MiB, unused by any operator.
    let elements: i32 = (1 << 29) + (1 << 20);
    let data = sparse_bytes(dir.path(), elements as u64 * 4);
    m.buffers.push(Buffer { data: data.into() });
    let mut t: Tensor = m.subgraphs[0].tensors[0].clone();
    t.name = "huge".into();
    t.dtype = TensorType::Float32;
    t.shape = vec![elements];
    t.shape_signature = None;
    t.quant = None;
    t.buffer = (m.buffers.len() - 1) as u32;
    m.subgraphs[0].tensors.push(t);
    tflquant::ir::verify(&m).unwrap();

    let out = dir.path().join("out.tflite");
    let err = writer::write_path(&m, &out, &inline()).unwrap_err();
    match &err {
        Error::FlatbufferTooLarge {
            bytes,
            offset_layout: false,
        } => assert!(*bytes > FLATBUFFER_MAX_BYTES && *bytes < FLATBUFFER_MAX_BYTES + (8 << 20)),
        other => panic!("expected FlatbufferTooLarge, got {other}"),
    }
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(msg.contains("offset buffer layout"), "{msg}");
    assert!(!out.exists());
    assert_eq!(
        other_files(dir.path(), &["sparse.bin"]),
        Vec::<String>::new()
    );
    // In memory too.
    assert!(matches!(
        writer::to_bytes(&m, &inline()),
        Err(Error::FlatbufferTooLarge { .. })
    ));
}

/// `cnn_digits.tflite` written inline with one extra buffer (no tensor uses it) whose
/// data vector is stretched to end past 2 GiB: the file is sparse, so this costs no
/// disk, and the reader accepts it (unused buffers have no size to match). Returns
/// the path and the bytes of the original part.
fn oversized_inline_file(dir: &Path) -> std::path::PathBuf {
    let mut m = model("cnn_digits.tflite");
    let marker: Vec<u8> = (0..16u8).map(|i| 0xa0 + i).collect();
    m.buffers.push(Buffer {
        data: Bytes::from(marker.clone()).into(),
    });
    let mut bytes = writer::to_bytes(&m, &inline()).unwrap();
    // The last buffer's data is the last chunk: `[u32 length][16 bytes]` at the end.
    let n = bytes.len();
    assert_eq!(&bytes[n - 16..], &marker[..]);
    let extra: u64 = 1 << 31;
    let len = u32::try_from(16 + extra).unwrap();
    bytes[n - 20..n - 16].copy_from_slice(&len.to_le_bytes());
    let path = dir.join("oversized.tflite");
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(n as u64 + extra).unwrap();
    path
}

#[test]
fn oversized_inline_file_inspect_warns_convert_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let big = oversized_inline_file(dir.path());

    let (code, out, err) = run_cli(&["inspect".as_ref(), big.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning: the flatbuffer part"), "{out}");
    assert!(out.contains("LiteRT refuses this file"), "{out}");
    assert!(out.contains("--buffer-layout offset"), "{out}");
    let (code, out, err) = run_cli(&["inspect".as_ref(), big.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: the flatbuffer part"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);

    let out = dir.path().join("out.tflite");
    let (code, _, err) = run_cli(&[
        "convert".as_ref(),
        big.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--buffer-layout".as_ref(),
        "inline".as_ref(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("pass --buffer-layout offset"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        other_files(dir.path(), &["oversized.tflite"]),
        Vec::<String>::new()
    );

    // A model under the limit gets no warning.
    let (code, out, _) = run_cli(&[
        "inspect".as_ref(),
        testdata("cnn_digits.tflite").as_os_str(),
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("warning"), "{out}");
}

/// The default layout moves the stray 2 GiB buffer after the flatbuffer: the output
/// loads in LiteRT and computes what the original does. Writes 2 GiB of zeros.
#[test]
fn oversized_inline_file_converts_to_the_offset_layout_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let big = oversized_inline_file(dir.path());
    let out = dir.path().join("out.tflite");
    let (code, _, err) = run_cli(&[
        "convert".as_ref(),
        big.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let back = tflquant::read_path(&out).unwrap();
    let src = back.source.as_ref().unwrap();
    assert!(src.flatbuffer_end < 1 << 20, "{}", src.flatbuffer_end);
    assert!(std::fs::metadata(&out).unwrap().len() > 1 << 31);
    let (code, text, _) = run_cli(&["inspect".as_ref(), out.as_os_str()]);
    assert_eq!(code, 0);
    assert!(!text.contains("warning"), "{text}");

    let orig = testdata("cnn_digits.tflite");
    let m = model("cnn_digits.tflite");
    let inputs = sample_inputs(&orig, &m, 2);
    let a = litert_run(&orig, &inputs).unwrap();
    let b = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("LiteRT refuses it: {e}"));
    assert_eq!(a, b);
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs the binary under a given umask (in a shell, so the test process keeps its own).
fn run_with_umask(umask: &str, args: &[&Path]) -> (i32, String) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tflquant"));
    for a in args {
        cmd.arg(a);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn outputs_honour_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("mlp_large_fc.tflite");
    for (umask, expected) in [("022", 0o644), ("027", 0o640), ("077", 0o600)] {
        let conv = dir.path().join(format!("conv_{umask}.tflite"));
        let (code, err) = run_with_umask(
            umask,
            &[Path::new("convert"), &input, Path::new("-o"), &conv],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(mode_of(&conv), expected, "convert under umask {umask}");

        let q = dir.path().join(format!("q_{umask}.tflite"));
        let (code, err) = run_with_umask(
            umask,
            &[
                Path::new("quantize"),
                &input,
                Path::new("-o"),
                &q,
                Path::new("--mode"),
                Path::new("dynamic"),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(mode_of(&q), expected, "quantize under umask {umask}");
    }
}

/// Bytes of weights `inspect --json` reports, summed over dtypes.
fn inspect_weight_bytes(path: &Path) -> u64 {
    let (code, out, err) = run_cli(&["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["weight_bytes_by_dtype"]
        .as_object()
        .unwrap()
        .values()
        .map(|b| b.as_u64().unwrap())
        .sum()
}

#[test]
fn identical_buffers_are_stored_once_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let orig = testdata("mlp_large_fc.tflite");
    let mut m = model("mlp_large_fc.tflite");
    // Point the largest constant at a copy of its bytes in a new buffer (a different
    // allocation with the same content), leaving the original buffer unused.
    let (ti, size) = m.subgraphs[0]
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (i, m.tensor_data(t).len()))
        .max_by_key(|&(_, n)| n)
        .unwrap();
    assert!(size > 100_000);
    let old = m.subgraphs[0].tensors[ti].buffer as usize;
    let copy = Bytes::copy_from_slice(&m.buffers[old].data);
    m.buffers.push(Buffer { data: copy.into() });
    m.subgraphs[0].tensors[ti].buffer = (m.buffers.len() - 1) as u32;

    let out = dir.path().join("dedup.tflite");
    writer::write_path(&m, &out, &WriteOptions::default()).unwrap();
    let orig_len = std::fs::metadata(&orig).unwrap().len();
    let out_len = std::fs::metadata(&out).unwrap().len();
    // One more buffer table (and vtable), but not its data.
    assert!(
        out_len < orig_len + 128,
        "{out_len} bytes written, the original has {orig_len}"
    );
    // Deterministic, and the two buffers read back as the same bytes of the file.
    let again = writer::to_bytes(&m, &WriteOptions::default()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), again);
    let back = tflquant::read_path(&out).unwrap();
    let (a, b) = (
        &back.buffers[old].data,
        back.buffers.last().unwrap().data.clone(),
    );
    assert_eq!(a.as_ptr(), b.as_ptr());
    assert_eq!(a.len(), b.len());
    // inspect counts the data once: as many weight bytes as the original.
    assert_eq!(inspect_weight_bytes(&out), inspect_weight_bytes(&orig));
    assert!(inspect_weight_bytes(&out) < out_len);

    // Also in the offset layout, and LiteRT computes the same as on the original.
    let off = dir.path().join("dedup_offset.tflite");
    let opts = WriteOptions {
        layout: BufferLayout::Offset,
    };
    writer::write_path(&m, &off, &opts).unwrap();
    assert!(std::fs::metadata(&off).unwrap().len() < orig_len + 128);
    let inputs = sample_inputs(&orig, &m, 4);
    let expected = litert_run(&orig, &inputs).unwrap();
    assert_eq!(litert_run(&out, &inputs).unwrap(), expected);
    assert_eq!(litert_run(&off, &inputs).unwrap(), expected);
}

#[test]
fn a_shared_buffer_counts_once_in_inspect() {
    // Two tensors on one buffer: the bytes exist once in the file.
    let dir = tempfile::tempdir().unwrap();
    let mut m = model("mlp_large_fc.tflite");
    let before: u64 = {
        let p = dir.path().join("before.tflite");
        writer::write_path(&m, &p, &WriteOptions::default()).unwrap();
        inspect_weight_bytes(&p)
    };
    let (ti, t) = m.subgraphs[0]
        .tensors
        .iter()
        .enumerate()
        .find(|(_, t)| m.is_constant(t))
        .map(|(i, t)| (i, t.clone()))
        .unwrap();
    let mut twin = t.clone();
    twin.name = format!("{}_twin", t.name);
    m.subgraphs[0].tensors.push(twin);
    let p = dir.path().join("shared.tflite");
    writer::write_path(&m, &p, &WriteOptions::default()).unwrap();
    assert_eq!(
        inspect_weight_bytes(&p),
        before,
        "tensor {ti} counted twice"
    );
}

#[test]
fn an_output_that_does_not_read_back_is_not_written() {
    // The writer serialises whatever IR it gets; one that breaks an invariant (an
    // operator input out of range) writes, fails the read-back, and leaves nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut m = model("cnn_digits.tflite");
    m.subgraphs[0].operators[0].inputs[0] = 9999;
    let out = dir.path().join("bad.tflite");
    let err = writer::write_path(&m, &out, &WriteOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Internal(_)), "{msg}");
    assert!(msg.contains("does not read back"), "{msg}");
    assert!(msg.contains("tensor index 9999 out of range"), "{msg}");
    assert!(!out.exists());
    assert_eq!(other_files(dir.path(), &[]), Vec::<String>::new());
}

/// Large buffers still in the input's memory map are copied by the kernel from the
/// input file (`copy_file_range`): the file must be byte for byte what the in-memory
/// serialisation gives, in both layouts (data at other offsets than in the input), with
/// small buffers written between the copied ones, and a buffer replaced in memory.
#[test]
fn unchanged_mapped_data_copied_file_to_file_gives_the_same_bytes() {
    use crate::memory::bench_common;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tflite");
    // Three FC layers of 700² floats (1.96 MB each: copied), biases of 2.8 KB (written).
    let mut m = bench_common::fc_stack(3, 700);
    // An odd-sized large buffer, so that later data sits at other alignments.
    let odd: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i * 7 % 251) as u8).collect();
    let odd_buffer = m.add_buffer(odd);
    let mut t = Tensor::new("odd", TensorType::Uint8, vec![(3 << 20) + 5]);
    t.buffer = odd_buffer;
    m.subgraphs[0].add_tensor(t);
    writer::write_path(&m, &input, &inline()).unwrap();
    let mut read = tflquant::read_path(&input).unwrap();
    assert!(read.mapped.is_some(), "the input is memory-mapped");
    // One large buffer replaced in memory: written, not copied.
    let replaced = read.subgraphs[0].tensors[1].buffer as usize;
    let len = read.buffers[replaced].data.len();
    read.buffers[replaced].data = Bytes::from(vec![0x5a; len]).into();
    for layout in [BufferLayout::Inline, BufferLayout::Offset] {
        let opts = WriteOptions { layout };
        let out = dir.path().join(format!("{layout:?}.tflite"));
        writer::write_path(&read, &out, &opts).unwrap();
        let want = writer::to_bytes(&read, &opts).unwrap();
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), want.len(), "{layout:?}");
        assert!(
            got == want,
            "{layout:?}: the copied file differs from the serialisation"
        );
    }
}

/// A test encoding of deferred data: each 4-byte unit to its bytes reversed and negated.
fn reversed(src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(4)) {
        d.copy_from_slice(&[!s[3], !s[2], !s[1], !s[0]]);
    }
}

#[test]
fn deferred_data_is_written_as_its_computed_bytes() {
    // A buffer of deferred data (no tensor reads it) added to a real model: 3 MiB
    // and a bit (several streamed blocks and a partial one). The file is the one of
    // the computed bytes, in both layouts, and writing does not compute the whole
    // data first. Then the same with two more buffers holding the same bytes, one
    // computed and one deferred: the data are stored once, as any identical buffers.
    let dir = tempfile::tempdir().unwrap();
    let mut m = model("mlp_large_fc.tflite");
    let src: Vec<u8> = (0..(3 << 20) + 4 * 1001u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let src = Bytes::from(src);
    m.buffers.push(Buffer::default());
    let b = m.buffers.len() - 1;
    let mut computed = vec![0u8; src.len()];
    reversed(&src, &mut computed);
    let deferred = || tflquant::ir::Data::deferred(src.clone(), (4, 4), reversed);
    let mut plain = m.clone();
    plain.buffers[b].data = computed.clone().into();
    m.buffers[b].data = deferred();
    // The length of the inline file.
    let check = |m: &Model, plain: &Model, what: &str| {
        let mut inline_len = 0;
        for layout in [BufferLayout::Inline, BufferLayout::Offset] {
            let opts = WriteOptions { layout };
            let want = writer::to_bytes(plain, &opts).unwrap();
            let got = writer::to_bytes(m, &opts).unwrap();
            assert!(got == want, "{what}, {layout:?}: the files differ");
            let path = dir.path().join(format!("deferred_{layout:?}.tflite"));
            writer::write_path(m, &path, &opts).unwrap();
            let written = std::fs::read(&path).unwrap();
            assert!(written == want, "{what}, {layout:?}: write_path");
            if layout == BufferLayout::Inline {
                inline_len = want.len();
            }
        }
        inline_len
    };
    let single = check(&m, &plain, "one deferred buffer");
    assert!(
        m.buffers[b].data.pending().is_some(),
        "writing computed the whole data"
    );
    m.buffers.push(Buffer {
        data: computed.clone().into(),
    });
    m.buffers.push(Buffer { data: deferred() });
    for _ in 0..2 {
        plain.buffers.push(Buffer {
            data: computed.clone().into(),
        });
    }
    let shared = check(&m, &plain, "three equal buffers");
    // Two more buffer tables, no more data.
    assert!(shared < single + 128, "{shared} bytes, {single} with one");
}
