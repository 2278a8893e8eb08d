//! The owned intermediate representation of a TFLite model.
//!
//! It mirrors the file format one to one (subgraphs, tensors, operators, operator codes,
//! buffers, signatures, metadata) so that a read → write round trip loses nothing. Parts
//! the tool never interprets (builtin options, sparsity, variant types, external buffers)
//! are kept as the generated owned flatbuffer types and written back unchanged.
//!
//! Two deliberate differences from the wire format:
//! - an operator code's builtin op is one field ([`OperatorCode::builtin`]); the reader
//!   merges the legacy `deprecated_builtin_code` byte into it and the writer emits both;
//! - buffer bytes are [`Data`]: a [`Bytes`] slice of the memory-mapped input until a pass
//!   replaces them, so reading a 300 MB model copies no weights; a pass may leave its
//!   result deferred (computed from the source bytes as the writer streams it).
//!
//! Indices keep the file's types (`i32` for tensor references where `-1` means "no
//! tensor", `u32` for buffers), so the IR can represent exactly what a file can.

mod data;
mod dtype;
mod edit;
pub mod sparse;
mod verify;

pub use bytes::Bytes;
pub use data::{Data, Deferred};
pub use dtype::{dtype_bits, dtype_byte_size, is_real_valued};
pub use verify::{MAX_RANK, verify};

use crate::fb;
pub use crate::fb::{BuiltinOperator, TensorType};

/// A whole model.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Schema version (3 for every current producer).
    pub version: u32,
    pub description: Option<String>,
    pub operator_codes: Vec<OperatorCode>,
    pub subgraphs: Vec<Subgraph>,
    /// Buffer 0 is, by convention, the empty buffer that tensors without data use.
    pub buffers: Vec<Buffer>,
    /// Legacy list of buffer indices holding metadata (superseded by `metadata`).
    pub metadata_buffer: Option<Vec<i32>>,
    pub metadata: Vec<Metadata>,
    pub signature_defs: Vec<SignatureDef>,
    /// Carried through untouched (data lives in other files).
    pub external_buffer_groups: Option<Vec<fb::ExternalBufferGroup>>,
    pub external_buffers: Option<Vec<fb::ExternalBuffer>>,
    /// Where the model was read from, so the writer can refuse to overwrite it.
    pub source: Option<Source>,
    /// The memory map buffer data borrow from, if the model was mapped.
    pub mapped: Option<MappedFile>,
}

/// A read-only memory map of a model file, shared by every [`Bytes`] slice of it, and
/// the open file it maps (the writer copies unchanged data from it in the kernel).
#[derive(Debug, Clone)]
pub struct MappedFile(
    pub std::sync::Arc<memmap2::Mmap>,
    pub std::sync::Arc<std::fs::File>,
);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Identity of the file a model was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: std::path::PathBuf,
    /// `(device, inode)` on Unix; `None` elsewhere.
    pub file_id: Option<(u64, u64)>,
    /// Where the flatbuffer part of the file (tables and inline data, not the data of
    /// the offset layout) ends; LiteRT refuses a file where this is above
    /// [`crate::fb::FLATBUFFER_MAX_BYTES`].
    pub flatbuffer_end: u64,
}

/// An entry of the operator-code table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperatorCode {
    /// The effective builtin operator: `max(deprecated_builtin_code, builtin_code)`.
    pub builtin: BuiltinOperator,
    /// Set for `CUSTOM` ops (and kept as found for others).
    pub custom_code: Option<String>,
    pub version: i32,
}

/// One subgraph: the main graph, or a body/condition of control flow.
#[derive(Debug, Clone, Default)]
pub struct Subgraph {
    pub name: Option<String>,
    pub tensors: Vec<Tensor>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<Operator>,
    pub debug_metadata_index: i32,
}

/// A tensor: a graph edge, a constant (buffer with data) or a variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: TensorType,
    /// Static shape; dynamic dimensions are 1 here and -1 in `shape_signature`.
    pub shape: Vec<i32>,
    pub shape_signature: Option<Vec<i32>>,
    /// Index into [`Model::buffers`]; 0 means no data.
    pub buffer: u32,
    pub quant: Option<QuantParams>,
    pub is_variable: bool,
    pub sparsity: Option<fb::SparsityParameters>,
    pub has_rank: bool,
    pub variant_tensors: Option<Vec<fb::VariantSubType>>,
    pub external_buffer: u32,
}

impl Tensor {
    /// A plain activation tensor (no data, no quantization).
    pub fn new(name: impl Into<String>, dtype: TensorType, shape: Vec<i32>) -> Self {
        Tensor {
            name: name.into(),
            dtype,
            shape,
            shape_signature: None,
            buffer: 0,
            quant: None,
            is_variable: false,
            sparsity: None,
            has_rank: true,
            variant_tensors: None,
            external_buffer: 0,
        }
    }

    /// Number of elements of the static shape; `None` if a dimension is negative or the
    /// product overflows `u64`.
    pub fn num_elements(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, &d| {
            u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
    }

    /// Bytes the dense data of this tensor takes (packed for sub-byte types); `None` for
    /// strings, resources, variants, or an overflowing shape.
    pub fn dense_byte_size(&self) -> Option<u64> {
        dtype_byte_size(self.dtype, self.num_elements()?)
    }

    /// The quantization parameters if they carry at least one scale.
    pub fn quantized(&self) -> Option<&QuantParams> {
        self.quant.as_ref().filter(|q| !q.scale.is_empty())
    }
}

/// Quantization parameters: `real = (q - zero_point) * scale`, one pair per tensor or one
/// per slice along `quantized_dimension`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantParams {
    pub min: Vec<f32>,
    pub max: Vec<f32>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub details: Option<fb::QuantizationDetails>,
    pub quantized_dimension: i32,
}

impl QuantParams {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i64) -> Self {
        QuantParams {
            scale: vec![scale],
            zero_point: vec![zero_point],
            ..Default::default()
        }
    }

    /// Per-axis parameters along `axis`.
    pub fn per_axis(scale: Vec<f32>, zero_point: Vec<i64>, axis: i32) -> Self {
        QuantParams {
            scale,
            zero_point,
            quantized_dimension: axis,
            ..Default::default()
        }
    }

    /// True when there is more than one scale (one per slice along an axis).
    pub fn is_per_axis(&self) -> bool {
        self.scale.len() > 1
    }

    /// True when nothing is set at all (TF writes such empty tables for float tensors).
    pub fn is_empty(&self) -> bool {
        self.min.is_empty()
            && self.max.is_empty()
            && self.scale.is_empty()
            && self.zero_point.is_empty()
            && self.details.is_none()
    }
}

/// An operator instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Index into [`Model::operator_codes`].
    pub opcode_index: u32,
    /// Tensor indices; `-1` marks an omitted optional input.
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub intermediates: Option<Vec<i32>>,
    pub builtin_options: Option<fb::BuiltinOptions>,
    pub builtin_options_2: Option<fb::BuiltinOptions2>,
    /// Custom options; also holds options the file kept outside the flatbuffer
    /// (`large_custom_options_offset/size`), which the writer puts back inline.
    pub custom_options: Option<Bytes>,
    pub custom_options_format: fb::CustomOptionsFormat,
    pub mutating_variable_inputs: Option<Vec<bool>>,
    pub debug_metadata_index: i32,
}

impl Operator {
    /// An operator with the given code and tensors and no options.
    pub fn new(opcode_index: u32, inputs: Vec<i32>, outputs: Vec<i32>) -> Self {
        Operator {
            opcode_index,
            inputs,
            outputs,
            intermediates: None,
            builtin_options: None,
            builtin_options_2: None,
            custom_options: None,
            custom_options_format: fb::CustomOptionsFormat::Flexbuffers,
            mutating_variable_inputs: None,
            debug_metadata_index: -1,
        }
    }
}

/// A data buffer. Empty data means "no data" (activations, buffer 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buffer {
    pub data: Data,
}

impl Buffer {
    pub fn new(data: impl Into<Data>) -> Self {
        Buffer { data: data.into() }
    }
}

/// A named metadata entry pointing at a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub name: Option<String>,
    pub buffer: u32,
}

/// A signature: named inputs and outputs of one subgraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureDef {
    pub signature_key: Option<String>,
    pub subgraph_index: u32,
    pub inputs: Vec<TensorMap>,
    pub outputs: Vec<TensorMap>,
}

/// A signature's name for a tensor of its subgraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMap {
    pub name: Option<String>,
    pub tensor_index: u32,
}

impl Model {
    /// The operator code of an operator. Panics on an index [`verify`] would reject.
    pub fn code(&self, op: &Operator) -> &OperatorCode {
        &self.operator_codes[op.opcode_index as usize]
    }

    /// The builtin operator of an operator.
    pub fn builtin(&self, op: &Operator) -> BuiltinOperator {
        self.code(op).builtin
    }

    /// A display name for an operator: `CONV_2D`, or `CUSTOM(MyOp)`.
    pub fn op_display_name(&self, op: &Operator) -> String {
        let code = self.code(op);
        match (&code.builtin, &code.custom_code) {
            (BuiltinOperator::Custom, Some(c)) => format!("CUSTOM({c})"),
            (b, _) => fb::op_name(*b).to_string(),
        }
    }

    /// The data of a tensor's buffer (empty for activations).
    pub fn tensor_data(&self, tensor: &Tensor) -> &[u8] {
        self.buffers
            .get(tensor.buffer as usize)
            .map_or(&[][..], |b| &b.data[..])
    }

    /// The length of a tensor's buffer data (0 for activations); computes no deferred
    /// data.
    pub fn tensor_data_len(&self, tensor: &Tensor) -> usize {
        self.buffers
            .get(tensor.buffer as usize)
            .map_or(0, |b| b.data.len())
    }

    /// Maps all pages of `data` in one call when it belongs to the model's memory map
    /// (`MADV_POPULATE_READ`): a kernel about to read a large weight then takes no page
    /// fault per 4 KiB. Best effort; no-op elsewhere or on kernels without it.
    pub fn prefault_pages(&self, data: &[u8]) {
        if let Some((map, offset)) = self.map_offset(data) {
            let _ = map.advise_range(memmap2::Advice::PopulateRead, offset, data.len());
        }
    }

    /// The file `data` was mapped from and its offset there, if `data` lies inside the
    /// model's memory map (unchanged input data: the writer copies it file to file).
    pub fn mapped_source(&self, data: &[u8]) -> Option<(&std::fs::File, u64)> {
        let MappedFile(map, file) = self.mapped.as_ref()?;
        let (base, start) = (map.as_ptr() as usize, data.as_ptr() as usize);
        (!data.is_empty() && start >= base && start + data.len() <= base + map.len())
            .then(|| (&**file, (start - base) as u64))
    }

    /// The model's map and the offset of `data` in it, if `data` lies inside it.
    fn map_offset(&self, data: &[u8]) -> Option<(&memmap2::Mmap, usize)> {
        let MappedFile(map, _) = self.mapped.as_ref()?;
        let base = map.as_ptr() as usize;
        let start = data.as_ptr() as usize;
        (!data.is_empty() && start >= base && start + data.len() <= base + map.len())
            .then(|| (&**map, start - base))
    }

    /// Tells the OS that this process no longer needs the pages of `data` if they belong
    /// to the model's memory map (a weight just replaced by its quantized form), so that
    /// quantizing a huge model does not keep all of its input resident. The bytes stay
    /// valid: a later read faults them in from the file again. No-op otherwise.
    ///
    /// A large range is released in parts of [`RELEASE_PART`] bytes on the thread pool:
    /// the cost is per page (~2.5 ms for 76 MB on one thread, the other core idle), and
    /// parts of a range share no page table.
    pub fn release_pages(&self, data: &[u8]) {
        use rayon::prelude::*;
        let Some((map, offset)) = self.map_offset(data) else {
            return;
        };
        // SAFETY: MADV_DONTNEED on a read-only, file-backed shared mapping only drops
        // resident pages; later accesses re-read the unchanged file, so every slice of
        // the map (including `data`) keeps its contents. It is never applied to
        // anonymous memory: the range was checked to lie inside the file mapping (and
        // each part lies inside the range).
        let release = |at: usize, len: usize| {
            let _ =
                unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, at, len) };
        };
        let parts = data.len().div_ceil(RELEASE_PART);
        if parts < 2 {
            release(offset, data.len());
            return;
        }
        (0..parts).into_par_iter().for_each(|i| {
            let at = i * RELEASE_PART;
            release(offset + at, RELEASE_PART.min(data.len() - at));
        });
    }

    /// True when the tensor has constant data.
    pub fn is_constant(&self, tensor: &Tensor) -> bool {
        self.tensor_data_len(tensor) > 0
    }
}

/// Runs `f` on `bytes[range]`, where `file` holds `bytes` at the given offset
/// ([`Model::mapped_source`]): read with a positioned read into a buffer of this thread,
/// so that the mapped pages are never touched (a parallel pass over a weight of hundreds
/// of MB keeps only its tasks' bytes resident, not the weight); on the slice itself
/// without a file, off unix, or when the read fails (a file cut short since it was
/// mapped: the map's bytes then fault as before). `f` must not call this again on the
/// same thread (the buffer is borrowed while it runs).
pub fn with_file_bytes<R>(
    bytes: &[u8],
    range: std::ops::Range<usize>,
    file: Option<(&std::fs::File, u64)>,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let src = &bytes[range.clone()];
    #[cfg(unix)]
    if let Some((file, at)) = file {
        use std::os::unix::fs::FileExt;
        return TASK_BYTES.with_borrow_mut(|buf| {
            buf.resize(src.len(), 0);
            if file.read_exact_at(buf, at + range.start as u64).is_ok() {
                f(buf)
            } else {
                f(src)
            }
        });
    }
    let _ = file;
    f(src)
}

thread_local! {
    /// A task's bytes, read from the file by [`with_file_bytes`] (kept for the thread's
    /// next task: the tasks of one pass have about the same size, ~256 KB).
    static TASK_BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes [`Model::release_pages`] gives one task of the thread pool.
const RELEASE_PART: usize = 8 << 20;
