//! Serialising the IR to a `.tflite` file.
//!
//! - **Deterministic**: the bytes depend only on the IR (no timestamps, no hash-map order).
//! - **Aligned**: every buffer's data starts at a multiple of 16 bytes from the start of
//!   the file, as the runtime's `force_align: 16` asks (planus does not honour that
//!   attribute, so the writer places the data itself, see [`write_aligned_bytes`]).
//! - **Large models**: a flatbuffer cannot exceed 2 GiB. When the data would push it past
//!   that, tensor data go after the flatbuffer and each `Buffer` records its `offset`
//!   and `size` ([`BufferLayout::Offset`]); LiteRT loads such files. The layout can be
//!   forced on small models, so it is tested.
//! - **Atomic**: [`write_path`] writes a temporary file next to the target and renames it
//!   over the target only when everything succeeded, and refuses to overwrite the file
//!   the model was read from.

use std::io::{BufWriter, Write};
use std::path::Path;

use planus::{Builder, Offset};

use crate::error::{Error, Result};
use crate::fb;
use crate::ir::{Model, Operator, QuantParams, Subgraph, Tensor};

/// Alignment of buffer data in the file.
pub const DATA_ALIGNMENT: usize = 16;

/// Above this much tensor data the automatic layout moves data after the flatbuffer.
/// The flatbuffer limit is 2 GiB (signed 32-bit offsets); the margin leaves room for the
/// tables themselves.
pub const INLINE_DATA_LIMIT: u64 = (1 << 31) - (256 << 20);

/// Where buffer data goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BufferLayout {
    /// Inline unless the data would exceed [`INLINE_DATA_LIMIT`].
    #[default]
    Auto,
    /// Inside the flatbuffer (the classic layout).
    Inline,
    /// Tensor data after the flatbuffer, referenced by `Buffer.offset`/`size`. Metadata
    /// buffers stay inline, since readers of metadata look only there.
    Offset,
}

/// Options of the writer.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub layout: BufferLayout,
}

/// Serialises the model into memory.
pub fn to_bytes(model: &Model, opts: &WriteOptions) -> Result<Vec<u8>> {
    let plan = Plan::new(model, opts);
    let mut out = Vec::new();
    plan.emit(model, &mut out)
        .map_err(|e| Error::Internal(format!("writing to memory: {e}")))?;
    Ok(out)
}

/// Writes the model to `path` atomically (temporary file in the same directory, then
/// rename). Refuses to overwrite the file the model was read from.
pub fn write_path(model: &Model, path: impl AsRef<Path>, opts: &WriteOptions) -> Result<()> {
    let path = path.as_ref();
    refuse_own_input(model, path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let plan = Plan::new(model, opts);
    let tmp = tempfile::Builder::new()
        .prefix(".tflquant-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        plan.emit(model, &mut w)
            .and_then(|()| w.flush())
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn refuse_own_input(model: &Model, path: &Path) -> Result<()> {
    let Some(src) = &model.source else {
        return Ok(());
    };
    let same = match (src.file_id, file_id(path)) {
        (Some(a), Some(b)) => a == b,
        _ => match (src.path.canonicalize(), path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
    };
    if same {
        return Err(Error::Usage(format!(
            "refusing to overwrite the input model {}: choose another output path with -o",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// The decided layout: which buffers go after the flatbuffer, and the flatbuffer bytes.
struct Plan {
    flatbuffer: Vec<u8>,
    /// `(buffer index, absolute file offset)` of data stored after the flatbuffer.
    tail: Vec<(usize, u64)>,
}

impl Plan {
    fn new(model: &Model, opts: &WriteOptions) -> Self {
        let tensor_buffers = tensor_buffer_flags(model);
        let data_total: u64 = model
            .buffers
            .iter()
            .map(|b| b.data.len() as u64 + DATA_ALIGNMENT as u64)
            .sum();
        let offset_layout = match opts.layout {
            BufferLayout::Inline => false,
            BufferLayout::Offset => true,
            BufferLayout::Auto => data_total > INLINE_DATA_LIMIT,
        };
        if !offset_layout {
            return Plan {
                flatbuffer: build(model, &[]),
                tail: Vec::new(),
            };
        }
        let moved: Vec<usize> = (0..model.buffers.len())
            .filter(|&i| tensor_buffers[i] && !model.buffers[i].data.is_empty())
            .collect();
        // Pass 1 with placeholder offsets measures the flatbuffer; the offsets are fixed
        // size fields, so pass 2 with the real offsets has exactly the same length.
        let placeholder: Vec<(usize, u64)> = moved.iter().map(|&i| (i, u64::MAX)).collect();
        let len = build(model, &placeholder).len() as u64;
        let mut at = len;
        let mut tail = Vec::with_capacity(moved.len());
        for &i in &moved {
            at = at.next_multiple_of(DATA_ALIGNMENT as u64);
            tail.push((i, at));
            at += model.buffers[i].data.len() as u64;
        }
        let flatbuffer = build(model, &tail);
        debug_assert_eq!(flatbuffer.len() as u64, len);
        Plan { flatbuffer, tail }
    }

    fn emit(&self, model: &Model, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.flatbuffer)?;
        let mut pos = self.flatbuffer.len() as u64;
        let zeros = [0u8; DATA_ALIGNMENT];
        for &(i, offset) in &self.tail {
            w.write_all(&zeros[..(offset - pos) as usize])?;
            let data = &model.buffers[i].data;
            w.write_all(data)?;
            pos = offset + data.len() as u64;
        }
        Ok(())
    }
}

/// Which buffers hold tensor data (as opposed to metadata).
fn tensor_buffer_flags(model: &Model) -> Vec<bool> {
    let mut flags = vec![false; model.buffers.len()];
    for t in model.subgraphs.iter().flat_map(|s| &s.tensors) {
        if let Some(f) = flags.get_mut(t.buffer as usize) {
            *f = true;
        }
    }
    for m in &model.metadata {
        if let Some(f) = flags.get_mut(m.buffer as usize) {
            *f = false;
        }
    }
    flags
}

/// Builds the flatbuffer. Buffers listed in `tail` get `offset`/`size` instead of data.
fn build(model: &Model, tail: &[(usize, u64)]) -> Vec<u8> {
    let data_bytes: usize = model.buffers.iter().map(|b| b.data.len() + 32).sum();
    let mut b = Builder::with_capacity(data_bytes + (1 << 16));

    // Created first, so that data end up last in the file, as other writers do.
    let mut tail_iter = tail.iter().peekable();
    let mut buffers = Vec::with_capacity(model.buffers.len());
    for (i, buf) in model.buffers.iter().enumerate() {
        let external = tail_iter.next_if(|(j, _)| *j == i).map(|&(_, off)| off);
        let offset = match external {
            Some(off) => {
                fb::Buffer::create(&mut b, None::<Offset<[u8]>>, off, buf.data.len() as u64)
            }
            None if buf.data.is_empty() => {
                fb::Buffer::create(&mut b, None::<Offset<[u8]>>, 0u64, 0u64)
            }
            None => {
                let data = write_aligned_bytes(&mut b, &buf.data);
                fb::Buffer::create(&mut b, data, 0u64, 0u64)
            }
        };
        buffers.push(offset);
    }

    let subgraphs: Vec<_> = model
        .subgraphs
        .iter()
        .map(|sg| subgraph(&mut b, sg))
        .collect();

    let codes: Vec<_> = model
        .operator_codes
        .iter()
        .map(|c| {
            let code = c.builtin as i32;
            // The legacy byte saturates at 127 (PLACEHOLDER_FOR_GREATER_OP_CODES).
            let legacy = code.min(fb::BuiltinOperator::PlaceholderForGreaterOpCodes as i32) as i8;
            fb::OperatorCode::create(
                &mut b,
                legacy,
                c.custom_code.as_deref(),
                c.version,
                c.builtin,
            )
        })
        .collect();

    let metadata: Vec<_> = model
        .metadata
        .iter()
        .map(|m| fb::Metadata::create(&mut b, m.name.as_deref(), m.buffer))
        .collect();

    let signatures: Vec<_> = model
        .signature_defs
        .iter()
        .map(|s| {
            let mut maps = |v: &[crate::ir::TensorMap]| {
                let offs: Vec<_> = v
                    .iter()
                    .map(|m| fb::TensorMap::create(&mut b, m.name.as_deref(), m.tensor_index))
                    .collect();
                b.create_vector(&offs)
            };
            let inputs = maps(&s.inputs);
            let outputs = maps(&s.outputs);
            fb::SignatureDef::create(
                &mut b,
                inputs,
                outputs,
                s.signature_key.as_deref(),
                s.subgraph_index,
            )
        })
        .collect();

    let root = fb::Model::create(
        &mut b,
        model.version,
        codes.as_slice(),
        subgraphs.as_slice(),
        model.description.as_deref(),
        buffers.as_slice(),
        model.metadata_buffer.as_deref(),
        (!metadata.is_empty()).then_some(metadata.as_slice()),
        (!signatures.is_empty()).then_some(signatures.as_slice()),
        model.external_buffer_groups.as_deref(),
        model.external_buffers.as_deref(),
    );
    let bytes = b.finish(root, Some(*crate::reader::FILE_IDENTIFIER));
    fix_header(bytes.to_vec())
}

/// planus 1.3 writes the 8-byte header as `[identifier][offset relative to byte 4]`; the
/// format (and every other reader) wants `[root offset][identifier]`. Rewrites it.
fn fix_header(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes[0..4] == *crate::reader::FILE_IDENTIFIER {
        let rel = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let root = rel + 4;
        bytes[0..4].copy_from_slice(&root.to_le_bytes());
        bytes[4..8].copy_from_slice(crate::reader::FILE_IDENTIFIER);
    }
    bytes
}

/// Writes a `[ubyte]` vector whose first data byte is 16-byte aligned in the final file.
///
/// A flatbuffer vector is a `u32` length followed by the bytes. planus aligns the start
/// of each write, so the data are written first (aligned to 16), then the length right
/// before them (aligned to 4, which needs no padding since 16k - 4 is a multiple of 4).
fn write_aligned_bytes(b: &mut Builder, data: &[u8]) -> Offset<[u8]> {
    // SAFETY: `write_with` requires the closure to initialise every byte of the slice it
    // is given; both closures copy exactly `len` bytes into a slice of length `len`.
    // (`write_with` is planus' documented-hidden hook; the version is pinned with `=`.)
    unsafe {
        b.write_with(data.len(), DATA_ALIGNMENT - 1, |_, out| {
            for (o, &d) in out.iter_mut().zip(data) {
                o.write(d);
            }
        });
        let len = (data.len() as u32).to_le_bytes();
        b.write_with(4, 3, |_, out| {
            for (o, &d) in out.iter_mut().zip(&len) {
                o.write(d);
            }
        });
    }
    b.current_offset()
}

fn subgraph(b: &mut Builder, sg: &Subgraph) -> Offset<fb::SubGraph> {
    let tensors: Vec<_> = sg.tensors.iter().map(|t| tensor(b, t)).collect();
    let operators: Vec<_> = sg.operators.iter().map(|o| operator(b, o)).collect();
    fb::SubGraph::create(
        b,
        tensors.as_slice(),
        sg.inputs.as_slice(),
        sg.outputs.as_slice(),
        operators.as_slice(),
        sg.name.as_deref(),
        sg.debug_metadata_index,
    )
}

fn tensor(b: &mut Builder, t: &Tensor) -> Offset<fb::Tensor> {
    let quant = t.quant.as_ref().map(|q| quant(b, q));
    fb::Tensor::create(
        b,
        t.shape.as_slice(),
        t.dtype,
        t.buffer,
        t.name.as_str(),
        quant,
        t.is_variable,
        t.sparsity.as_ref(),
        t.shape_signature.as_deref(),
        t.has_rank,
        t.variant_tensors.as_deref(),
        t.external_buffer,
    )
}

fn quant(b: &mut Builder, q: &QuantParams) -> Offset<fb::QuantizationParameters> {
    let nonempty_f = |v: &[f32]| (!v.is_empty()).then(|| v.to_vec());
    fb::QuantizationParameters::create(
        b,
        nonempty_f(&q.min),
        nonempty_f(&q.max),
        nonempty_f(&q.scale),
        (!q.zero_point.is_empty()).then_some(q.zero_point.as_slice()),
        q.details.as_ref(),
        q.quantized_dimension,
    )
}

fn operator(b: &mut Builder, op: &Operator) -> Offset<fb::Operator> {
    let custom = op.custom_options.as_ref().map(|c| b.create_vector(&c[..]));
    fb::Operator::create(
        b,
        op.opcode_index,
        op.inputs.as_slice(),
        op.outputs.as_slice(),
        op.builtin_options.as_ref(),
        custom,
        op.custom_options_format,
        op.mutating_variable_inputs.as_deref(),
        op.intermediates.as_deref(),
        0u64,
        0u64,
        op.builtin_options_2.as_ref(),
        op.debug_metadata_index,
    )
}
