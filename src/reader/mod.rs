//! Reading `.tflite` files into the IR.
//!
//! The file is memory-mapped (falling back to `read` where mapping is impossible) and
//! wrapped in a [`Bytes`] so that buffer data in the IR are zero-copy slices of the map.
//! Every field is read exactly once through planus' checked accessors: an offset outside
//! the file, an unknown enum value or union tag (a model from a newer schema), invalid
//! UTF-8, or an index out of range becomes an [`Error`] naming the place, never a panic.
//!
//! Hostile files are also bounded in what they make us allocate: flatbuffers let many
//! tables point at one vector, so a small file could describe a huge IR. The reader
//! counts what it materialises against a budget proportional to the file size
//! ([`Budget`]); a real model stays far below it.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use bytes::Bytes;
use planus::ReadAsRoot;

use crate::error::{Error, Loc, Result};
use crate::fb;
use crate::ir::{
    self, Buffer, MappedFile, Metadata, Model, Operator, OperatorCode, QuantParams, SignatureDef,
    Source, Subgraph, Tensor, TensorMap,
};

/// The 4-byte file identifier of TFLite flatbuffers, at bytes 4..8.
pub const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// Reads and verifies a model file.
pub fn read_path(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let (bytes, mapped) = map_file(path)?;
    let (mut model, flatbuffer_end) = read_verified(bytes).map_err(|e| match e {
        Error::NotTflite(what) => Error::NotTflite(format!("{}: {what}", path.display())),
        other => other,
    })?;
    model.source = Some(Source {
        path: path.to_path_buf(),
        file_id: file_id(path),
        flatbuffer_end,
    });
    model.mapped = mapped;
    Ok(model)
}

/// Reads and verifies a model held in memory. Buffer data stay slices of `bytes`.
pub fn read_bytes(bytes: Bytes) -> Result<Model> {
    read_verified(bytes).map(|(model, _)| model)
}

/// The model and where its flatbuffer part ends (see [`Source::flatbuffer_end`]).
fn read_verified(bytes: Bytes) -> Result<(Model, u64)> {
    if bytes.is_empty() {
        return Err(Error::NotTflite("the file is empty".into()));
    }
    if bytes.len() < 8 {
        return Err(Error::NotTflite(format!(
            "the file has {} bytes, fewer than a flatbuffer header (8)",
            bytes.len()
        )));
    }
    if &bytes[4..8] != FILE_IDENTIFIER {
        return Err(Error::NotTflite(format!(
            "file identifier is {:?}, expected \"TFL3\"",
            String::from_utf8_lossy(&bytes[4..8])
        )));
    }
    let len = bytes.len();
    // An offset or length past the end is what a truncated download or copy looks like.
    let hint = |e: Error| match e {
        Error::Malformed { at, what }
            if what.contains("Invalid offset") || what.contains("Invalid length") =>
        {
            Error::Malformed {
                at,
                what: format!("{what} (the file has {len} bytes: truncated or damaged?)"),
            }
        }
        other => other,
    };
    let root = fb::ModelRef::read_as_root(&bytes)
        .map_err(|e| hint(Error::malformed("root table", describe(&e))))?;
    let mut converter = Converter {
        file: &bytes,
        budget: Budget::for_file(bytes.len()),
        inline_end: 0,
    };
    let model = converter.model(root).map_err(hint)?;
    ir::verify(&model)?;
    // The tables of every known producer come before the inline data; the root table's
    // offset bounds them from below otherwise.
    let root_at = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64;
    Ok((model, converter.inline_end.max(root_at)))
}

/// Maps the file into memory; reads it instead where mapping is impossible (empty
/// files, pipes, some network file systems).
fn map_file(path: &Path) -> Result<(Bytes, Option<MappedFile>)> {
    let file = File::open(path).map_err(|e| Error::input(path, e))?;
    let meta = file.metadata().map_err(|e| Error::input(path, e))?;
    if meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is a directory, not a .tflite file",
            path.display()
        )));
    }
    if meta.is_file() && meta.len() > 0 {
        // SAFETY: the map is only read. Another process truncating or rewriting the
        // file while we run would change the bytes under us (a truncation can even
        // raise SIGBUS); that is the usual caveat of mapped files, accepted by every
        // mmap-based reader. tflquant itself never writes to a file it has mapped: the
        // writer refuses its own input and replaces outputs by rename.
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            let mapped = MappedFile(std::sync::Arc::new(map), std::sync::Arc::new(file));
            return Ok((Bytes::from_owner(mapped.clone()), Some(mapped)));
        }
    }
    let mut data = Vec::new();
    (&file)
        .read_to_end(&mut data)
        .map_err(|e| Error::input(path, e))?;
    Ok((Bytes::from(data), None))
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

/// Renders a planus error; an unknown enum value or union tag gets the likely cause.
fn describe(e: &planus::Error) -> String {
    let loc = &e.source_location;
    let place = format!("{}.{}", loc.type_, loc.method);
    match e.error_kind {
        planus::errors::ErrorKind::UnknownEnumTag { source } => format!(
            "{place} has the value {}, which this schema does not know (a model from a newer \
             TFLite schema?); refusing to guess",
            source.tag
        ),
        planus::errors::ErrorKind::UnknownUnionTag { tag } => format!(
            "{place} has the union tag {tag}, which this schema does not know (a model from a \
             newer TFLite schema?); refusing to guess"
        ),
        kind => format!("{place} at byte {}: {kind}", loc.byte_offset),
    }
}

/// Limits what a file can make the reader allocate.
struct Budget {
    left: u64,
}

impl Budget {
    /// Units are roughly bytes of IR. A model's IR is about the size of its flatbuffer
    /// part (buffer data are not copied); eight times that plus 16 MiB of slack is far
    /// above any real file and far below an amplification attack.
    fn for_file(len: usize) -> Self {
        Budget {
            left: 8 * len as u64 + (16 << 20),
        }
    }

    fn spend(&mut self, units: u64, at: &Loc) -> Result<()> {
        self.left = self.left.checked_sub(units).ok_or_else(|| {
            Error::malformed(
                at.clone(),
                "the file describes far more data than it contains (shared offsets?); refusing to expand it",
            )
        })?;
        Ok(())
    }
}

/// Counts bytes written to it (used to size options for the budget).
struct CountingWriter(u64);

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Converter<'f> {
    file: &'f Bytes,
    budget: Budget,
    /// End of the furthest inline vector (buffer data, custom options) seen so far.
    inline_end: u64,
}

/// Attaches a location to a planus result.
fn at<T>(r: planus::Result<T>, loc: &Loc) -> Result<T> {
    r.map_err(|e| Error::malformed(loc.clone(), describe(&e)))
}

impl Converter<'_> {
    /// A zero-copy slice of the file for bytes planus handed out.
    fn slice_of(&mut self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            return Bytes::new();
        }
        let base = self.file.as_ptr() as usize;
        let start = part.as_ptr() as usize - base;
        self.inline_end = self.inline_end.max((start + part.len()) as u64);
        self.file.slice(start..start + part.len())
    }

    /// Bytes `offset..offset+size` of the file, for data stored after the flatbuffer.
    fn tail_range(&self, offset: u64, size: u64, loc: &Loc) -> Result<Bytes> {
        let len = self.file.len() as u64;
        if size > len || offset > len - size {
            return Err(Error::malformed(
                loc.clone(),
                format!(
                    "data at offset {offset} with size {size} lies past the end of the file ({len} bytes)"
                ),
            ));
        }
        Ok(self.file.slice(offset as usize..(offset + size) as usize))
    }

    fn ints(&mut self, v: Option<planus::Vector<'_, i32>>, loc: &Loc) -> Result<Vec<i32>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        self.budget.spend(4 * v.len() as u64, loc)?;
        Ok(v.iter().collect())
    }

    fn string(&mut self, s: Option<&str>, loc: &Loc) -> Result<Option<String>> {
        let Some(s) = s else { return Ok(None) };
        self.budget.spend(s.len() as u64, loc)?;
        Ok(Some(s.to_owned()))
    }

    /// Converts a part the tool carries through as a generated owned type, charging
    /// its serialized size to the budget.
    fn owned<R, T>(&mut self, r: R, loc: &Loc) -> Result<T>
    where
        T: TryFrom<R, Error = planus::Error> + serde::Serialize,
    {
        let value = at(T::try_from(r), loc)?;
        let mut counter = CountingWriter(0);
        serde_json::to_writer(&mut counter, &value)
            .map_err(|e| Error::Internal(format!("sizing {loc}: {e}")))?;
        self.budget.spend(counter.0, loc)?;
        Ok(value)
    }

    fn model(&mut self, m: fb::ModelRef<'_>) -> Result<Model> {
        let loc = Loc::from("root table");
        let version = at(m.version(), &loc)?;
        let description = self.string(at(m.description(), &loc)?, &loc)?;

        let mut operator_codes = Vec::new();
        if let Some(codes) = at(m.operator_codes(), &loc)? {
            self.budget.spend(16 * codes.len() as u64, &loc)?;
            for (i, c) in codes.iter().enumerate() {
                let loc = Loc(format!("operator code {i}"));
                operator_codes.push(self.operator_code(at(c, &loc)?, &loc)?);
            }
        }

        let mut buffers = Vec::new();
        if let Some(bufs) = at(m.buffers(), &loc)? {
            self.budget.spend(32 * bufs.len() as u64, &loc)?;
            for (i, b) in bufs.iter().enumerate() {
                let loc = Loc(format!("buffer {i}"));
                let b = at(b, &loc)?;
                let data = at(b.data(), &loc)?;
                let (offset, size) = (at(b.offset(), &loc)?, at(b.size(), &loc)?);
                let data = match data {
                    Some(d) if !d.is_empty() => self.slice_of(d),
                    // offset 0 and 1 are placeholders meaning "no external data".
                    _ if offset > 1 => self.tail_range(offset, size, &loc)?,
                    _ => Bytes::new(),
                };
                buffers.push(Buffer { data: data.into() });
            }
        }

        let mut subgraphs = Vec::new();
        if let Some(sgs) = at(m.subgraphs(), &loc)? {
            for (si, sg) in sgs.iter().enumerate() {
                let loc = Loc::subgraph(si);
                subgraphs.push(self.subgraph(si, at(sg, &loc)?)?);
            }
        }

        let metadata_buffer = match at(m.metadata_buffer(), &loc)? {
            Some(v) => Some(self.ints(Some(v), &loc)?),
            None => None,
        };

        let mut metadata = Vec::new();
        if let Some(md) = at(m.metadata(), &loc)? {
            self.budget.spend(16 * md.len() as u64, &loc)?;
            for (i, e) in md.iter().enumerate() {
                let loc = Loc(format!("metadata {i}"));
                let e = at(e, &loc)?;
                metadata.push(Metadata {
                    name: self.string(at(e.name(), &loc)?, &loc)?,
                    buffer: at(e.buffer(), &loc)?,
                });
            }
        }

        let mut signature_defs = Vec::new();
        if let Some(sigs) = at(m.signature_defs(), &loc)? {
            for (i, s) in sigs.iter().enumerate() {
                let loc = Loc(format!("signature {i}"));
                signature_defs.push(self.signature(at(s, &loc)?, &loc)?);
            }
        }

        let external_buffer_groups = match at(m.external_buffer_groups(), &loc)? {
            Some(v) => Some(self.owned_vec(v, &loc)?),
            None => None,
        };
        let external_buffers = match at(m.external_buffers(), &loc)? {
            Some(v) => Some(self.owned_vec(v, &loc)?),
            None => None,
        };

        Ok(Model {
            version,
            description,
            operator_codes,
            subgraphs,
            buffers,
            metadata_buffer,
            metadata,
            signature_defs,
            external_buffer_groups,
            external_buffers,
            source: None,
            mapped: None,
        })
    }

    fn owned_vec<'a, R, T>(
        &mut self,
        v: planus::Vector<'a, planus::Result<R>>,
        loc: &Loc,
    ) -> Result<Vec<T>>
    where
        planus::Result<R>: planus::VectorRead<'a>,
        T: TryFrom<R, Error = planus::Error> + serde::Serialize,
    {
        let mut out = Vec::with_capacity(v.len().min(1 << 16));
        for item in v.iter() {
            out.push(self.owned(at(item, loc)?, loc)?);
        }
        Ok(out)
    }

    fn operator_code(&mut self, c: fb::OperatorCodeRef<'_>, loc: &Loc) -> Result<OperatorCode> {
        let legacy = at(c.deprecated_builtin_code(), loc)?;
        let builtin = at(c.builtin_code(), loc)?;
        if legacy < 0 {
            return Err(Error::malformed(
                loc.clone(),
                format!("deprecated_builtin_code is negative ({legacy})"),
            ));
        }
        // Files written before builtin_code existed only set the legacy byte (and leave
        // builtin_code at 0 = ADD); newer files set both, the byte saturating at 127.
        let effective = (legacy as i32).max(builtin as i32);
        let builtin = fb::BuiltinOperator::try_from(effective).map_err(|e| {
            Error::malformed(
                loc.clone(),
                format!(
                    "unknown builtin operator {} (model from a newer schema?)",
                    e.tag
                ),
            )
        })?;
        Ok(OperatorCode {
            builtin,
            custom_code: self.string(at(c.custom_code(), loc)?, loc)?,
            version: at(c.version(), loc)?,
        })
    }

    fn subgraph(&mut self, si: usize, sg: fb::SubGraphRef<'_>) -> Result<Subgraph> {
        let loc = Loc::subgraph(si);
        let mut tensors = Vec::new();
        if let Some(ts) = at(sg.tensors(), &loc)? {
            self.budget.spend(64 * ts.len() as u64, &loc)?;
            tensors.reserve(ts.len());
            for (ti, t) in ts.iter().enumerate() {
                let loc = Loc::tensor(si, ti);
                tensors.push(self.tensor(at(t, &loc)?, &loc)?);
            }
        }
        let mut operators = Vec::new();
        if let Some(ops) = at(sg.operators(), &loc)? {
            self.budget.spend(64 * ops.len() as u64, &loc)?;
            operators.reserve(ops.len());
            for (oi, op) in ops.iter().enumerate() {
                let loc = Loc::op(si, oi);
                operators.push(self.operator(at(op, &loc)?, &loc)?);
            }
        }
        Ok(Subgraph {
            name: self.string(at(sg.name(), &loc)?, &loc)?,
            inputs: self.ints(at(sg.inputs(), &loc)?, &loc)?,
            outputs: self.ints(at(sg.outputs(), &loc)?, &loc)?,
            tensors,
            operators,
            debug_metadata_index: at(sg.debug_metadata_index(), &loc)?,
        })
    }

    fn tensor(&mut self, t: fb::TensorRef<'_>, loc: &Loc) -> Result<Tensor> {
        let shape = at(t.shape(), loc)?;
        let shape_signature = at(t.shape_signature(), loc)?;
        for (what, v) in [("shape", shape), ("shape_signature", shape_signature)] {
            if let Some(v) = v
                && v.len() > ir::MAX_RANK
            {
                return Err(Error::malformed(
                    loc.clone(),
                    format!(
                        "{what} has rank {}, above the limit of {}",
                        v.len(),
                        ir::MAX_RANK
                    ),
                ));
            }
        }
        let quant = match at(t.quantization(), loc)? {
            Some(q) => Some(self.quant(q, loc)?),
            None => None,
        };
        let sparsity = match at(t.sparsity(), loc)? {
            Some(s) => Some(self.owned(s, loc)?),
            None => None,
        };
        let variant_tensors = match at(t.variant_tensors(), loc)? {
            Some(v) => Some(self.owned_vec(v, loc)?),
            None => None,
        };
        let name = self.string(at(t.name(), loc)?, loc)?.unwrap_or_default();
        Ok(Tensor {
            name,
            dtype: at(t.type_(), loc)?,
            shape: self.ints(shape, loc)?,
            shape_signature: match shape_signature {
                Some(s) => Some(self.ints(Some(s), loc)?),
                None => None,
            },
            buffer: at(t.buffer(), loc)?,
            quant,
            is_variable: at(t.is_variable(), loc)?,
            sparsity,
            has_rank: at(t.has_rank(), loc)?,
            variant_tensors,
            external_buffer: at(t.external_buffer(), loc)?,
        })
    }

    fn quant(&mut self, q: fb::QuantizationParametersRef<'_>, loc: &Loc) -> Result<QuantParams> {
        let floats = |this: &mut Self, v: Option<planus::Vector<'_, f32>>| -> Result<Vec<f32>> {
            let Some(v) = v else { return Ok(Vec::new()) };
            this.budget.spend(4 * v.len() as u64, loc)?;
            Ok(v.iter().collect())
        };
        let min = floats(self, at(q.min(), loc)?)?;
        let max = floats(self, at(q.max(), loc)?)?;
        let scale = floats(self, at(q.scale(), loc)?)?;
        let zero_point = match at(q.zero_point(), loc)? {
            Some(v) => {
                self.budget.spend(8 * v.len() as u64, loc)?;
                v.iter().collect()
            }
            None => Vec::new(),
        };
        let details = match at(q.details(), loc)? {
            Some(d) => Some(self.owned(d, loc)?),
            None => None,
        };
        Ok(QuantParams {
            min,
            max,
            scale,
            zero_point,
            details,
            quantized_dimension: at(q.quantized_dimension(), loc)?,
        })
    }

    fn operator(&mut self, op: fb::OperatorRef<'_>, loc: &Loc) -> Result<Operator> {
        let builtin_options = match at(op.builtin_options(), loc)? {
            Some(o) => Some(self.owned(o, loc)?),
            None => None,
        };
        let builtin_options_2 = match at(op.builtin_options_2(), loc)? {
            Some(o) => Some(self.owned(o, loc)?),
            None => None,
        };
        let large_offset = at(op.large_custom_options_offset(), loc)?;
        let custom_options = match at(op.custom_options(), loc)? {
            Some(c) => Some(self.slice_of(c)),
            None if large_offset > 1 => {
                let size = at(op.large_custom_options_size(), loc)?;
                Some(self.tail_range(large_offset, size, loc)?)
            }
            None => None,
        };
        let intermediates = match at(op.intermediates(), loc)? {
            Some(v) => Some(self.ints(Some(v), loc)?),
            None => None,
        };
        let mutating_variable_inputs = match at(op.mutating_variable_inputs(), loc)? {
            Some(v) => {
                self.budget.spend(v.len() as u64, loc)?;
                Some(v.iter().collect())
            }
            None => None,
        };
        Ok(Operator {
            opcode_index: at(op.opcode_index(), loc)?,
            inputs: self.ints(at(op.inputs(), loc)?, loc)?,
            outputs: self.ints(at(op.outputs(), loc)?, loc)?,
            intermediates,
            builtin_options,
            builtin_options_2,
            custom_options,
            custom_options_format: at(op.custom_options_format(), loc)?,
            mutating_variable_inputs,
            debug_metadata_index: at(op.debug_metadata_index(), loc)?,
        })
    }

    fn signature(&mut self, s: fb::SignatureDefRef<'_>, loc: &Loc) -> Result<SignatureDef> {
        let mut maps = |v: Option<planus::Vector<'_, planus::Result<fb::TensorMapRef<'_>>>>| {
            let mut out = Vec::new();
            if let Some(v) = v {
                self.budget.spend(16 * v.len() as u64, loc)?;
                for m in v.iter() {
                    let m = at(m, loc)?;
                    out.push(TensorMap {
                        name: self.string(at(m.name(), loc)?, loc)?,
                        tensor_index: at(m.tensor_index(), loc)?,
                    });
                }
            }
            Ok::<_, Error>(out)
        };
        let inputs = maps(at(s.inputs(), loc)?)?;
        let outputs = maps(at(s.outputs(), loc)?)?;
        Ok(SignatureDef {
            signature_key: self.string(at(s.signature_key(), loc)?, loc)?,
            subgraph_index: at(s.subgraph_index(), loc)?,
            inputs,
            outputs,
        })
    }
}
