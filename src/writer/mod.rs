//! Serialising the IR to a `.tflite` file.
//!
//! - **Deterministic**: the bytes depend only on the IR (no timestamps, no hash-map order).
//! - **Aligned**: every buffer's data starts at a multiple of 16 bytes from the start of
//!   the file, as the runtime's `force_align: 16` asks (planus does not honour that
//!   attribute, so the writer places the data itself, see [`Plan`]).
//! - **Large models**: a flatbuffer cannot exceed 2 GiB. When the data would push it past
//!   that, tensor data go after the flatbuffer and each `Buffer` records its `offset`
//!   and `size` ([`BufferLayout::Offset`]); LiteRT loads such files. The layout can be
//!   forced on small models, so it is tested.
//!   An inline flatbuffer above [`FLATBUFFER_MAX_BYTES`] is refused
//!   ([`Error::FlatbufferTooLarge`]): LiteRT cannot load it.
//! - **Atomic and checked**: [`write_path`] writes a temporary file next to the target,
//!   reads it back with [`crate::reader`] (tables only) and renames it over the target
//!   only when everything succeeded; it refuses to overwrite the file the model was read
//!   from. The file's mode is what the umask gives a new file.
//! - **Shared data once**: buffers with identical bytes are stored once.
//! - **Unchanged data copied file to file**: a large buffer still in the input's memory
//!   map is copied by the kernel (`copy_file_range`, as `cp` does; Linux) instead of
//!   being faulted in and written from user space; anything the kernel declines is
//!   written the ordinary way.
//! - **Deferred data streamed**: data a pass left deferred ([`crate::ir::Data`]) are
//!   computed block by block into one reused buffer and written from it.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use planus::{Builder, Offset};

use crate::error::{Error, Result};
use crate::fb;
use crate::ir::{Data, Deferred, Model, Operator, QuantParams, Subgraph, Tensor};

/// Alignment of buffer data in the file.
pub const DATA_ALIGNMENT: usize = 16;

/// Above this much tensor data the automatic layout moves data after the flatbuffer.
/// The flatbuffer limit is 2 GiB (signed 32-bit offsets); the margin leaves room for the
/// tables themselves.
pub const INLINE_DATA_LIMIT: u64 = (1 << 31) - (256 << 20);

/// The largest flatbuffer LiteRT loads (a wire fact, defined in [`crate::fb`] so that
/// `error` can name it without depending on the writer).
pub use crate::fb::FLATBUFFER_MAX_BYTES;

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

/// Serialises the model into memory, as it is: unlike [`write_path`], the result is not
/// read back, so tests can build malformed files with it.
pub fn to_bytes(model: &Model, opts: &WriteOptions) -> Result<Vec<u8>> {
    let plan = Plan::new(model, opts)?;
    let mut out = Vec::new();
    plan.emit(model, &mut out, None)
        .map_err(|e| Error::Internal(format!("writing to memory: {e}")))?;
    Ok(out)
}

/// Writes the model to `path` atomically (temporary file in the same directory, then
/// rename). Refuses to overwrite the file the model was read from.
///
/// Before the rename, the written file is read back by [`crate::reader`] (which runs
/// [`crate::ir::verify`]) and its tables compared with the model: the tables only, so
/// this costs little even on a model of gigabytes. A file that fails is removed and the
/// error is internal: the writer produced something it cannot read.
///
/// The file gets the permissions a newly created file gets (0666 minus the umask,
/// usually 0644), not the 0600 of a private temporary file.
pub fn write_path(model: &Model, path: impl AsRef<Path>, opts: &WriteOptions) -> Result<()> {
    let path = path.as_ref();
    refuse_own_input(model, path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let plan = Plan::new(model, opts)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tflquant-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode passed to open(2), which applies the umask to it.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        plan.emit(model, &mut w, Some(tmp.as_file()))
            .and_then(|()| w.flush())
            .map_err(|e| Error::io(path, e))?;
    }
    let back = crate::reader::read_path(tmp.path());
    check_read_back(model, back, path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// The written model must read back with the same tables: every tensor's dtype, shape
/// and buffer, every operator's code and connections, every buffer's length.
fn check_read_back(model: &Model, back: Result<Model>, what: &Path) -> Result<()> {
    let what = what.display();
    let fail = |why: String| Error::Internal(format!("{what} does not read back: {why}"));
    let back = back.map_err(|e| fail(e.to_string()))?;
    let lengths = |m: &Model| m.buffers.iter().map(|b| b.data.len()).collect::<Vec<_>>();
    if lengths(&back) != lengths(model) {
        return Err(fail("buffer lengths differ".into()));
    }
    if back.subgraphs.len() != model.subgraphs.len() || back.operator_codes != model.operator_codes
    {
        return Err(fail("subgraphs or operator codes differ".into()));
    }
    for (si, (a, b)) in model.subgraphs.iter().zip(&back.subgraphs).enumerate() {
        let tensors_equal = a.tensors.len() == b.tensors.len()
            && a.tensors.iter().zip(&b.tensors).all(|(x, y)| {
                (x.dtype, &x.shape, x.buffer, &x.name) == (y.dtype, &y.shape, y.buffer, &y.name)
            });
        let ops_equal = a.operators.len() == b.operators.len()
            && a.operators.iter().zip(&b.operators).all(|(x, y)| {
                (x.opcode_index, &x.inputs, &x.outputs) == (y.opcode_index, &y.inputs, &y.outputs)
            });
        if !tensors_equal || !ops_equal || (&a.inputs, &a.outputs) != (&b.inputs, &b.outputs) {
            return Err(fail(format!("subgraph {si} differs")));
        }
    }
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

/// The decided file: the flatbuffer's tables (small, in memory, header fixed, data
/// references patched) followed by every buffer's data, streamed from the IR's bytes.
///
/// Buffer data never enter the planus builder: copying hundreds of megabytes of weights
/// into it and out again would cost more than writing the file. The tables are built
/// with an empty placeholder vector for every inline buffer; once the tables' length is
/// known, the data vectors are laid out after them (each `[u32 length][data]`, data
/// 16-byte aligned) and each `Buffer.data` reference is rewritten to point there. In
/// the offset layout, `Buffer.offset`/`size` are set instead (fixed-size fields, so a
/// first build with placeholder values measures the tables exactly).
///
/// Buffers with identical bytes are stored once ([`shared_data`]): the later ones'
/// references point at the first one's data.
struct Plan {
    tables: Vec<u8>,
    chunks: Vec<Chunk>,
}

/// One buffer's data in the file, after the tables.
struct Chunk {
    buffer: usize,
    /// Absolute position of the data's first byte.
    pos: u64,
    /// Inline vectors carry their `u32` length in the 4 bytes before `pos`.
    length_prefix: bool,
}

impl Plan {
    fn new(model: &Model, opts: &WriteOptions) -> Result<Self> {
        let data_total: u64 = model
            .buffers
            .iter()
            .map(|b| b.data.len() as u64 + DATA_ALIGNMENT as u64)
            .sum();
        match opts.layout {
            BufferLayout::Inline => Plan::with_layout(model, false),
            BufferLayout::Offset => Plan::with_layout(model, true),
            BufferLayout::Auto if data_total > INLINE_DATA_LIMIT => Plan::with_layout(model, true),
            // Large tables can still push an inline file over the limit.
            BufferLayout::Auto => match Plan::with_layout(model, false) {
                Err(Error::FlatbufferTooLarge { .. }) => Plan::with_layout(model, true),
                other => other,
            },
        }
    }

    fn with_layout(model: &Model, offset_layout: bool) -> Result<Self> {
        let tensor_buffers = tensor_buffer_flags(model);
        let external = |i: usize| offset_layout && tensor_buffers[i];
        let with_data: Vec<usize> = (0..model.buffers.len())
            .filter(|&i| !model.buffers[i].data.is_empty())
            .collect();
        let stored_in = shared_data(model, &with_data, external);

        let placeholder: Vec<(usize, u64)> = with_data
            .iter()
            .filter(|&&i| external(i))
            .map(|&i| (i, u64::MAX))
            .collect();
        let tables_len = build(model, &placeholder).len() as u64;

        // Inline vectors first (they belong to the flatbuffer), then external data.
        let mut at = tables_len;
        let mut chunks = Vec::with_capacity(with_data.len());
        let mut pos_of = vec![0u64; model.buffers.len()];
        let ordered = with_data
            .iter()
            .filter(|&&i| !external(i))
            .chain(with_data.iter().filter(|&&i| external(i)))
            .filter(|&&i| stored_in[i] == i);
        let mut flatbuffer_len = tables_len;
        for &i in ordered {
            let length_prefix = !external(i);
            let pos = if length_prefix {
                (at + 4).next_multiple_of(DATA_ALIGNMENT as u64)
            } else {
                at.next_multiple_of(DATA_ALIGNMENT as u64)
            };
            chunks.push(Chunk {
                buffer: i,
                pos,
                length_prefix,
            });
            pos_of[i] = pos;
            at = pos + model.buffers[i].data.len() as u64;
            if length_prefix {
                flatbuffer_len = at;
            }
        }
        if flatbuffer_len > FLATBUFFER_MAX_BYTES {
            return Err(Error::FlatbufferTooLarge {
                bytes: flatbuffer_len,
                offset_layout,
            });
        }
        // Sorted by buffer index, as `build` expects.
        let offsets: Vec<(usize, u64)> = with_data
            .iter()
            .filter(|&&i| external(i))
            .map(|&i| (i, pos_of[stored_in[i]]))
            .collect();
        let mut tables = build(model, &offsets);
        if tables.len() as u64 != tables_len {
            return Err(Error::Internal(format!(
                "flatbuffer length changed between passes ({tables_len} → {})",
                tables.len()
            )));
        }
        for &i in with_data.iter().filter(|&&i| !external(i)) {
            patch_buffer_data_ref(&mut tables, i, pos_of[stored_in[i]] - 4)?;
        }
        Ok(Plan { tables, chunks })
    }

    /// Writes the file through `w`. With `file` (the file `w` writes to, at its
    /// position), large buffers still in the input's memory map are copied from the
    /// input file by the kernel ([`copy_file_data`]) after `w` is flushed, instead of
    /// through the map: no page of them is mapped or copied through user space, as
    /// `cp` does.
    fn emit(
        &self,
        model: &Model,
        w: &mut impl Write,
        file: Option<&std::fs::File>,
    ) -> std::io::Result<()> {
        w.write_all(&self.tables)?;
        let mut pos = self.tables.len() as u64;
        let zeros = [0u8; DATA_ALIGNMENT + 4];
        for c in &self.chunks {
            let data = &model.buffers[c.buffer].data;
            let start = if c.length_prefix { c.pos - 4 } else { c.pos };
            w.write_all(&zeros[..(start - pos) as usize])?;
            if c.length_prefix {
                w.write_all(&(data.len() as u32).to_le_bytes())?;
            }
            pos = c.pos + data.len() as u64;
            if let Some(d) = data.pending() {
                stream_deferred(model, d, w)?;
                continue;
            }
            let mut copied = 0;
            if let (Some(out), Some((src, offset))) = (file, model.mapped_source(data))
                && data.len() >= FILE_COPY_MIN
            {
                w.flush()?;
                copied = copy_file_data(src, offset, out, data.len())?;
            }
            w.write_all(&data[copied..])?;
        }
        Ok(())
    }
}

/// Bytes of deferred data computed and written per block by [`stream_deferred`]: large
/// enough that a write costs little per byte, small enough to stay in cache.
const STREAM_BLOCK: usize = 1 << 20;

/// Writes deferred data ([`crate::ir::Deferred`]) block by block, each block computed
/// by two threads into one reused buffer, instead of computing the whole data first.
/// Each block's source pages are mapped in one call before and released after, as the
/// weight passes do for whole weights.
fn stream_deferred(model: &Model, d: &Deferred, w: &mut impl Write) -> std::io::Result<()> {
    let unit = d.unit();
    let block = STREAM_BLOCK.div_ceil(unit) * unit;
    let mut buf = vec![0u8; block.min(d.len())];
    let mut start = 0;
    while start < d.len() {
        let n = block.min(d.len() - start);
        let src = d.source_of(start, n);
        model.prefault_pages(src);
        let (a, b) = buf[..n].split_at_mut((n / 2).div_ceil(unit) * unit);
        let half = a.len();
        rayon::join(|| d.encode(start, a), || d.encode(start + half, b));
        w.write_all(&buf[..n])?;
        model.release_pages(src);
        start += n;
    }
    Ok(())
}

/// Buffers of at least this many bytes are copied file to file by [`copy_file_data`];
/// smaller ones go through the writer's buffer (a system call each would cost more).
const FILE_COPY_MIN: usize = 1 << 20;

/// Copies `len` bytes at `offset` of `src` to `dst` at its current position (which it
/// advances) inside the kernel (`copy_file_range`), and returns how many were copied:
/// fewer than `len` (down to 0) when the kernel or file system cannot (another file
/// system, an old kernel, a sandbox refusing the call), for the caller to write the
/// rest itself. Errors of the output (a full disk) are errors.
#[cfg(target_os = "linux")]
fn copy_file_data(
    src: &std::fs::File,
    offset: u64,
    dst: &std::fs::File,
    len: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut done = 0usize;
    while done < len {
        let Ok(mut off_in) = libc::loff_t::try_from(offset + done as u64) else {
            return Ok(done);
        };
        // SAFETY: both descriptors are open files borrowed for the call; `off_in` is a
        // valid pointer to a local; a null output offset means "at the file position".
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                len - done,
                0,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            // End of the input file: it shrank under us; the caller's write reports it.
            0 => return Ok(done),
            _ => {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::ENOSPC | libc::EDQUOT | libc::EIO | libc::EFBIG) => Err(e),
                    Some(libc::EINTR) => continue,
                    _ => Ok(done),
                };
            }
        }
    }
    Ok(done)
}

#[cfg(not(target_os = "linux"))]
fn copy_file_data(
    _src: &std::fs::File,
    _offset: u64,
    _dst: &std::fs::File,
    _len: usize,
) -> std::io::Result<usize> {
    Ok(0)
}

/// For every buffer in `with_data`, the buffer whose stored bytes it uses: itself, or
/// the first earlier buffer with identical bytes stored the same way (`external`).
///
/// Candidates are grouped by length and a fingerprint of a few sampled bytes, then
/// compared in full: hashing every byte would read each weight page once more than
/// writing it does, while the sample reads a few hundred bytes per buffer and the full
/// comparison only runs on buffers that are almost certainly equal. The choice depends
/// only on the bytes and the buffer order, so the output stays deterministic.
/// Buffers of variable tensors keep their own bytes (the runtime writes to variables).
fn shared_data(model: &Model, with_data: &[usize], external: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut stored_in: Vec<usize> = (0..model.buffers.len()).collect();
    let mut variable = vec![false; model.buffers.len()];
    for t in model.subgraphs.iter().flat_map(|s| &s.tensors) {
        if t.is_variable
            && let Some(v) = variable.get_mut(t.buffer as usize)
        {
            *v = true;
        }
    }
    let mut groups: HashMap<(bool, usize, u64), Vec<usize>> = HashMap::new();
    for &i in with_data {
        if variable[i] {
            continue;
        }
        let data = &model.buffers[i].data;
        let key = (external(i), data.len(), fingerprint(data));
        // (Equal bytes are equal however they are held: a deferred buffer equal to
        // another is computed here, which only happens to duplicates.)
        let group = groups.entry(key).or_default();
        match group
            .iter()
            .find(|&&r| model.buffers[r].data[..] == data[..])
        {
            Some(&r) => stored_in[i] = r,
            None => group.push(i),
        }
    }
    stored_in
}

/// A hash of up to 64 evenly spaced 8-byte windows of `data` (all of it when short);
/// deferred data compute only those windows ([`Data::copy_at`]).
fn fingerprint(data: &Data) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    const WINDOWS: usize = 64;
    const WIDTH: usize = 8;
    if data.len() <= WINDOWS * WIDTH {
        data[..].hash(&mut h);
    } else {
        let step = (data.len() - WIDTH) / (WINDOWS - 1);
        let mut window = [0u8; WIDTH];
        for k in 0..WINDOWS {
            data.copy_at(k * step, &mut window);
            window[..].hash(&mut h);
        }
    }
    h.finish()
}

/// Points `Model.buffers[buffer].data` at the vector whose length prefix is at `target`.
///
/// Reads only the tables this writer just built: root offset → `Model` → field 4
/// (`buffers`) → element `buffer` → `Buffer` → field 0 (`data`), following the
/// flatbuffer rules (tables start with an `soffset` to their vtable; a vtable is
/// `[u16 vtable size][u16 table size][u16 field offsets...]`; references are `u32`
/// offsets relative to their own position).
fn patch_buffer_data_ref(bytes: &mut [u8], buffer: usize, target: u64) -> Result<()> {
    let bad = |what: &str| Error::Internal(format!("patching buffer {buffer}: {what}"));
    let u32_at = |b: &[u8], pos: usize| -> Result<usize> {
        b.get(pos..pos + 4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| bad("offset outside the tables"))
    };
    let field = |b: &[u8], table: usize, index: usize| -> Result<usize> {
        let soff = i32::from_le_bytes(
            b.get(table..table + 4)
                .ok_or_else(|| bad("table outside the tables"))?
                .try_into()
                .expect("4 bytes"),
        );
        let vtable = (table as i64 - soff as i64) as usize;
        let entry = vtable + 4 + 2 * index;
        let vt_len = u16::from_le_bytes(
            b.get(vtable..vtable + 2)
                .ok_or_else(|| bad("vtable"))?
                .try_into()
                .expect("2 bytes"),
        ) as usize;
        if entry + 2 > vtable + vt_len {
            return Err(bad("field missing from vtable"));
        }
        let off = u16::from_le_bytes(b[entry..entry + 2].try_into().expect("2 bytes")) as usize;
        if off == 0 {
            return Err(bad("field not set"));
        }
        Ok(table + off)
    };
    let root = u32_at(bytes, 0)?;
    let buffers_field = field(bytes, root, 4)?;
    let vector = buffers_field + u32_at(bytes, buffers_field)?;
    let elem = vector + 4 + 4 * buffer;
    let table = elem + u32_at(bytes, elem)?;
    let data_field = field(bytes, table, 0)?;
    let rel = u32::try_from(target - data_field as u64).map_err(|_| bad("data beyond 4 GiB"))?;
    bytes[data_field..data_field + 4].copy_from_slice(&rel.to_le_bytes());
    Ok(())
}

/// Which buffers may go after the flatbuffer in the offset layout: all but metadata
/// (readers of metadata look for it inline). Buffers no tensor uses go too, so that no
/// stray data can keep a large model's flatbuffer over the limit.
fn tensor_buffer_flags(model: &Model) -> Vec<bool> {
    let mut flags = vec![true; model.buffers.len()];
    let metadata = model.metadata.iter().map(|m| m.buffer as usize);
    let legacy = model.metadata_buffer.iter().flatten().map(|&b| b as usize);
    for b in metadata.chain(legacy) {
        if let Some(f) = flags.get_mut(b) {
            *f = false;
        }
    }
    flags
}

/// Builds the flatbuffer's tables (see [`Plan`]): buffers listed in `external` get
/// `offset`/`size`; every other buffer with data gets a placeholder `data` reference that
/// [`patch_buffer_data_ref`] redirects to the real vector after the tables.
fn build(model: &Model, external: &[(usize, u64)]) -> Vec<u8> {
    let mut b = Builder::with_capacity(1 << 16);

    // One shared empty vector; created first, so it sits at the very end of the tables.
    let placeholder: Offset<[u8]> = b.create_vector(&[0u8; 0][..]);
    let mut external = external.iter().peekable();
    let mut buffers = Vec::with_capacity(model.buffers.len());
    for (i, buf) in model.buffers.iter().enumerate() {
        let offset = match external.next_if(|(j, _)| *j == i) {
            Some(&(_, off)) => {
                fb::Buffer::create(&mut b, None::<Offset<[u8]>>, off, buf.data.len() as u64)
            }
            None if buf.data.is_empty() => {
                fb::Buffer::create(&mut b, None::<Offset<[u8]>>, 0u64, 0u64)
            }
            None => fb::Buffer::create(&mut b, placeholder, 0u64, 0u64),
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
    // Data vectors are 16-byte aligned in the file: make the tables' length a multiple
    // of 16 too, so positions computed after them are absolute file positions.
    // SAFETY: a zero-length write initialises nothing and needs nothing initialised.
    unsafe { b.write_with(0, DATA_ALIGNMENT - 1, |_, _| {}) };
    let mut bytes = b
        .finish(root, Some(*crate::reader::FILE_IDENTIFIER))
        .to_vec();
    fix_header(&mut bytes);
    bytes
}

/// planus 1.3 writes the 8-byte header as `[identifier][root offset relative to byte 4]`;
/// the format (and every other reader) wants `[root offset][identifier]`.
fn fix_header(bytes: &mut [u8]) {
    if bytes[0..4] == *crate::reader::FILE_IDENTIFIER {
        let rel = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        bytes[0..4].copy_from_slice(&(rel + 4).to_le_bytes());
        bytes[4..8].copy_from_slice(crate::reader::FILE_IDENTIFIER);
    }
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
