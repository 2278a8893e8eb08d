//! A model compiled for the CPU: finding the signature of subgraph 0, CPU options,
//! compilation (with the XNNPACK → builtin fallback), input checks, buffers and runs.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::PathBuf;
use std::rc::Rc;

use super::buffer::{AlignedBytes, Buffer, read_buffer, write_buffer};
use super::{CpuKernels, ElementType, OpenOptions, Runtime, TensorInfo, convert, ffi, status_text};
use crate::data::Array;
use crate::error::{Error, Loc, Result};

/// Where LiteRT reads the model from; kept alive as long as the LiteRT model.
pub(super) enum ModelSource {
    File(PathBuf, CString),
    Bytes(AlignedBytes),
}

/// Where a subgraph input/output sits in the signature LiteRT runs.
#[derive(Debug, Clone)]
struct Slot {
    info: TensorInfo,
    sig_pos: usize,
}

/// A model compiled for the CPU, ready to run.
pub struct CompiledModel {
    rt: Rc<Runtime>,
    name: String,
    model: ffi::Model,
    options: ffi::Options,
    compiled: ffi::CompiledModel,
    /// Kept alive while LiteRT may read it.
    source: ModelSource,
    signature: usize,
    signature_key: String,
    /// The kernels the model was compiled with.
    kernels: CpuKernels,
    /// Subgraph-0 inputs and outputs, in subgraph order.
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    /// Element types of the signature's outputs, by signature position (some may not be
    /// subgraph outputs).
    sig_output_types: Vec<ElementType>,
    /// Current input dimensions, by signature position.
    in_dims: Vec<Vec<i32>>,
    /// Current output dimensions, by signature position.
    out_dims: Vec<Vec<i32>>,
    in_bufs: Vec<Option<Buffer>>,
    out_bufs: Vec<Option<Buffer>>,
}

impl Drop for CompiledModel {
    fn drop(&mut self) {
        // Buffers first, then the compiled model, its options, the model; the bytes the
        // model was read from and the environment (`rt`) go after this body.
        self.in_bufs.clear();
        self.out_bufs.clear();
        let api = self.rt.api();
        // SAFETY: each handle is either null (never created) or was created by the
        // matching LiteRtCreate* call and is destroyed exactly once, in reverse order of
        // dependency: the compiled model refers to its options and model.
        unsafe {
            if !self.compiled.is_null() {
                (api.LiteRtDestroyCompiledModel)(self.compiled);
            }
            if !self.options.is_null() {
                (api.LiteRtDestroyOptions)(self.options);
            }
            if !self.model.is_null() {
                (api.LiteRtDestroyModel)(self.model);
            }
        }
    }
}

/// Frees an opaque-options payload made by [`toml_payload`].
///
/// # Safety
/// `p` is null or a pointer from `CString::into_raw`, freed once.
unsafe extern "C" fn free_toml_payload(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: per the function contract, `p` came from `CString::into_raw`.
        drop(unsafe { CString::from_raw(p.cast::<c_char>()) });
    }
}

fn toml_payload(text: &str) -> Result<*mut c_void> {
    let s = CString::new(text).map_err(|_| Error::Internal("NUL byte in LiteRT options".into()))?;
    Ok(s.into_raw().cast())
}

/// Reads a C string owned by LiteRT (null → empty).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid during the call.
unsafe fn c_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the function contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl CompiledModel {
    pub(super) fn new(
        rt: Rc<Runtime>,
        name: String,
        source: ModelSource,
        opts: &OpenOptions,
    ) -> Result<Self> {
        let mut cm = CompiledModel {
            rt,
            name,
            model: std::ptr::null_mut(),
            options: std::ptr::null_mut(),
            compiled: std::ptr::null_mut(),
            source,
            signature: 0,
            signature_key: String::new(),
            kernels: opts.kernels,
            inputs: Vec::new(),
            outputs: Vec::new(),
            sig_output_types: Vec::new(),
            in_dims: Vec::new(),
            out_dims: Vec::new(),
            in_bufs: Vec::new(),
            out_bufs: Vec::new(),
        };
        // From here on, an early return drops `cm`, which releases what was created.
        cm.create_model()?;
        cm.describe()?;
        cm.compile_with(opts)?;
        Ok(cm)
    }

    fn api(&self) -> &'static ffi::Api {
        self.rt.api()
    }

    /// An error about the model: the failing call, its status and the runtime's messages.
    fn fail(&self, call: &str, status: ffi::Status) -> Error {
        let mut what = status_text(call, status);
        if let Some(m) = self.runtime_messages() {
            what.push_str(": ");
            what.push_str(&m);
        }
        Error::Unsupported {
            at: Loc(self.name.clone()),
            what: format!("LiteRT {what}"),
        }
    }

    /// Messages the runtime's buffer error reporter collected since the last call (then
    /// cleared), one line each.
    fn runtime_messages(&self) -> Option<String> {
        if self.compiled.is_null() {
            return None;
        }
        let api = self.api();
        let mut p: *mut c_char = std::ptr::null_mut();
        // SAFETY: `compiled` is live; `p` is a valid out-pointer.
        let status = unsafe { (api.LiteRtCompiledModelGetErrorMessages)(self.compiled, &mut p) };
        if status != ffi::STATUS_OK || p.is_null() {
            return None;
        }
        // SAFETY: on success `p` is a NUL-terminated string LiteRT allocated with malloc
        // and handed to us; it is read once and then freed with the C library's free.
        let text = unsafe {
            let t = c_str(p);
            ffi::free(p.cast());
            t
        };
        // SAFETY: `compiled` is live.
        unsafe { (api.LiteRtCompiledModelClearErrors)(self.compiled) };
        let mut lines: Vec<&str> = Vec::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        (!lines.is_empty()).then(|| lines.join(" "))
    }

    fn create_model(&mut self) -> Result<()> {
        let api = self.api();
        let env = self.rt.env;
        let mut model: ffi::Model = std::ptr::null_mut();
        let (call, status) = match &self.source {
            ModelSource::File(_, path) => (
                "LiteRtCreateModelFromFile",
                // SAFETY: `env` is live, `path` is NUL-terminated and outlives the call,
                // `model` is a valid out-pointer.
                unsafe { (api.LiteRtCreateModelFromFile)(env, path.as_ptr(), &mut model) },
            ),
            ModelSource::Bytes(b) => (
                "LiteRtCreateModelFromBuffer",
                // SAFETY: `b` holds `b.len` initialised bytes at `as_ptr()` and is kept
                // (in `self.source`) until after the model is destroyed, as the API asks.
                unsafe { (api.LiteRtCreateModelFromBuffer)(env, b.as_ptr(), b.len, &mut model) },
            ),
        };
        if status != ffi::STATUS_OK || model.is_null() {
            let why = self.load_blockers();
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "LiteRT cannot read the model: {}{why}",
                    status_text(call, status)
                ),
            });
        }
        self.model = model;
        Ok(())
    }

    /// Why LiteRT's model loader may have refused the model, found by reading it with
    /// our reader: the loader of LiteRT 2.3 (`litert/core/model/model_load.cc`) rejects
    /// variable tensors, variant tensors, operator intermediates and mutating variable
    /// inputs, all of which the Python `Interpreter` runs. It logs the reason only.
    fn load_blockers(&self) -> String {
        let read = match &self.source {
            ModelSource::File(path, _) => crate::reader::read_path(path),
            ModelSource::Bytes(b) => {
                let mut v: Vec<u8> = b.blocks.iter().flat_map(|x| x.0).collect();
                v.truncate(b.len);
                crate::reader::read_bytes(v.into())
            }
        };
        let model = match read {
            Ok(m) => m,
            Err(e) => return format!(" (tflquant's reader rejects it too: {e})"),
        };
        let mut found: Vec<String> = Vec::new();
        for (si, sg) in model.subgraphs.iter().enumerate() {
            let first = |what: &str, i: usize, name: &str| {
                format!("{what} ({}, e.g. \"{name}\")", Loc::tensor(si, i))
            };
            if let Some((i, t)) = sg.tensors.iter().enumerate().find(|(_, t)| t.is_variable) {
                found.push(first("variable tensors", i, &t.name));
            }
            if let Some((i, t)) = sg
                .tensors
                .iter()
                .enumerate()
                .find(|(_, t)| t.variant_tensors.as_ref().is_some_and(|v| !v.is_empty()))
            {
                found.push(first("variant tensors", i, &t.name));
            }
            for (oi, op) in sg.operators.iter().enumerate() {
                if op.intermediates.as_ref().is_some_and(|v| !v.is_empty()) {
                    found.push(format!(
                        "operator intermediates ({} {})",
                        Loc::op(si, oi),
                        model.op_display_name(op)
                    ));
                    break;
                }
            }
            if let Some(oi) = sg.operators.iter().position(|op| {
                op.mutating_variable_inputs
                    .as_ref()
                    .is_some_and(|v| !v.is_empty())
            }) {
                found.push(format!("mutating variable inputs ({})", Loc::op(si, oi)));
            }
        }
        if found.is_empty() {
            String::new()
        } else {
            format!(
                "; the model has {}, which the model loader of ai-edge-litert {}'s C API \
                 does not support (the Python Interpreter runs such models)",
                found.join(", "),
                self.rt.lib.version
            )
        }
    }

    /// A call returning a status, turned into a model error.
    fn check(&self, call: &str, status: ffi::Status) -> Result<()> {
        if status == ffi::STATUS_OK {
            Ok(())
        } else {
            Err(self.fail(call, status))
        }
    }

    /// Name, index and ranked type of a tensor handle.
    fn tensor_info(&self, t: ffi::Tensor) -> Result<TensorInfo> {
        let api = self.api();
        if t.is_null() {
            return Err(Error::Internal("LiteRT returned a null tensor".into()));
        }
        let mut name: *const c_char = std::ptr::null();
        let mut index: u32 = 0;
        let mut ty = ffi::RankedTensorType::default();
        // SAFETY: `t` is a tensor of the live model; the out-pointers are valid. The name
        // belongs to the model and is copied before any other call.
        let name = unsafe {
            self.check(
                "LiteRtGetTensorName",
                (api.LiteRtGetTensorName)(t, &mut name),
            )?;
            c_str(name)
        };
        // SAFETY: as above.
        self.check("LiteRtGetTensorIndex", unsafe {
            (api.LiteRtGetTensorIndex)(t, &mut index)
        })?;
        // SAFETY: as above; `ty` has the layout of LiteRtRankedTensorType.
        let status = unsafe { (api.LiteRtGetRankedTensorType)(t, &mut ty) };
        if status != ffi::STATUS_OK {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "tensor {index} \"{name}\" has no fixed rank ({})",
                    status_text("LiteRtGetRankedTensorType", status)
                ),
            });
        }
        let dims = ty.layout.dims().ok_or_else(|| {
            Error::Internal(format!(
                "LiteRT reports rank {} for tensor {index} \"{name}\"",
                ty.layout.rank()
            ))
        })?;
        Ok(TensorInfo {
            name,
            index: index as usize,
            dtype: ElementType::from_code(ty.element_type),
            shape: dims.to_vec(),
        })
    }

    /// Finds the signature of subgraph 0 and maps its inputs and outputs to subgraph 0's.
    fn describe(&mut self) -> Result<()> {
        let api = self.api();
        let model = self.model;
        let mut sg0: ffi::Subgraph = std::ptr::null_mut();
        // SAFETY: `model` is live; out-pointer valid.
        self.check("LiteRtGetModelSubgraph", unsafe {
            (api.LiteRtGetModelSubgraph)(model, 0, &mut sg0)
        })?;
        let mut n_sigs: usize = 0;
        // SAFETY: as above.
        self.check("LiteRtGetNumModelSignatures", unsafe {
            (api.LiteRtGetNumModelSignatures)(model, &mut n_sigs)
        })?;
        let mut found = None;
        for s in 0..n_sigs {
            let mut sig: ffi::Signature = std::ptr::null_mut();
            let mut sg: ffi::Subgraph = std::ptr::null_mut();
            // SAFETY: `s` < number of signatures; out-pointers valid.
            self.check("LiteRtGetModelSignature", unsafe {
                (api.LiteRtGetModelSignature)(model, s, &mut sig)
            })?;
            // SAFETY: `sig` belongs to the live model.
            self.check("LiteRtGetSignatureSubgraph", unsafe {
                (api.LiteRtGetSignatureSubgraph)(sig, &mut sg)
            })?;
            if sg == sg0 {
                found = Some((s, sig));
                break;
            }
        }
        let Some((sig_index, sig)) = found else {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "none of the model's {n_sigs} signatures runs subgraph 0, and LiteRT runs \
                     models through signatures"
                ),
            });
        };
        let mut key: *const c_char = std::ptr::null();
        // SAFETY: `sig` is live; the key is copied at once.
        self.signature_key = unsafe {
            self.check(
                "LiteRtGetSignatureKey",
                (api.LiteRtGetSignatureKey)(sig, &mut key),
            )?;
            c_str(key)
        };
        self.signature = sig_index;

        let sg_inputs = self.list(sg0, true)?;
        let sg_outputs = self.list(sg0, false)?;
        let sig_inputs = self.sig_list(sig, true)?;
        let sig_outputs = self.sig_list(sig, false)?;

        let mut inputs = Vec::new();
        for t in sg_inputs {
            let pos = sig_inputs
                .iter()
                .position(|s| s.index == t.index)
                .ok_or_else(|| Error::Unsupported {
                    at: Loc(self.name.clone()),
                    what: format!(
                        "subgraph 0 input tensor {} \"{}\" is not an input of signature \"{}\"",
                        t.index, t.name, self.signature_key
                    ),
                })?;
            inputs.push(Slot {
                info: t,
                sig_pos: pos,
            });
        }
        if inputs.len() != sig_inputs.len() {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "signature \"{}\" has {} inputs, subgraph 0 has {}",
                    self.signature_key,
                    sig_inputs.len(),
                    inputs.len()
                ),
            });
        }
        let mut outputs = Vec::new();
        for t in sg_outputs {
            let pos = sig_outputs
                .iter()
                .position(|s| s.index == t.index)
                .ok_or_else(|| Error::Unsupported {
                    at: Loc(self.name.clone()),
                    what: format!(
                        "subgraph 0 output tensor {} \"{}\" is not an output of signature \
                         \"{}\", and LiteRT returns signature outputs only",
                        t.index, t.name, self.signature_key
                    ),
                })?;
            outputs.push(Slot {
                info: t,
                sig_pos: pos,
            });
        }
        self.sig_output_types = sig_outputs.iter().map(|t| t.dtype).collect();
        self.inputs = inputs;
        self.outputs = outputs;
        Ok(())
    }

    /// Inputs (or outputs) of a subgraph.
    fn list(&self, sg: ffi::Subgraph, inputs: bool) -> Result<Vec<TensorInfo>> {
        let api = self.api();
        let mut n: usize = 0;
        let (count_call, get_call) = if inputs {
            ("LiteRtGetNumSubgraphInputs", "LiteRtGetSubgraphInput")
        } else {
            ("LiteRtGetNumSubgraphOutputs", "LiteRtGetSubgraphOutput")
        };
        // SAFETY: `sg` belongs to the live model; out-pointer valid.
        let status = unsafe {
            if inputs {
                (api.LiteRtGetNumSubgraphInputs)(sg, &mut n)
            } else {
                (api.LiteRtGetNumSubgraphOutputs)(sg, &mut n)
            }
        };
        self.check(count_call, status)?;
        let mut out = Vec::with_capacity(n.min(4096));
        for i in 0..n {
            let mut t: ffi::Tensor = std::ptr::null_mut();
            // SAFETY: `i` < count; out-pointer valid.
            let status = unsafe {
                if inputs {
                    (api.LiteRtGetSubgraphInput)(sg, i, &mut t)
                } else {
                    (api.LiteRtGetSubgraphOutput)(sg, i, &mut t)
                }
            };
            self.check(get_call, status)?;
            out.push(self.tensor_info(t)?);
        }
        Ok(out)
    }

    /// Inputs (or outputs) of a signature, in signature order.
    fn sig_list(&self, sig: ffi::Signature, inputs: bool) -> Result<Vec<TensorInfo>> {
        let api = self.api();
        let mut n: usize = 0;
        let (count_call, get_call) = if inputs {
            (
                "LiteRtGetNumSignatureInputs",
                "LiteRtGetSignatureInputTensorByIndex",
            )
        } else {
            (
                "LiteRtGetNumSignatureOutputs",
                "LiteRtGetSignatureOutputTensorByIndex",
            )
        };
        // SAFETY: `sig` belongs to the live model; out-pointer valid.
        let status = unsafe {
            if inputs {
                (api.LiteRtGetNumSignatureInputs)(sig, &mut n)
            } else {
                (api.LiteRtGetNumSignatureOutputs)(sig, &mut n)
            }
        };
        self.check(count_call, status)?;
        let mut out = Vec::with_capacity(n.min(4096));
        for i in 0..n {
            let mut t: ffi::Tensor = std::ptr::null_mut();
            // SAFETY: `i` < count; out-pointer valid.
            let status = unsafe {
                if inputs {
                    (api.LiteRtGetSignatureInputTensorByIndex)(sig, i, &mut t)
                } else {
                    (api.LiteRtGetSignatureOutputTensorByIndex)(sig, i, &mut t)
                }
            };
            self.check(get_call, status)?;
            out.push(self.tensor_info(t)?);
        }
        Ok(out)
    }

    /// Options for the CPU accelerator with `kernels`, replacing any previous ones.
    ///
    /// CPU options travel as a TOML payload of opaque options. LiteRT 2.3 reads them
    /// twice under two identifiers: the XNNPACK accelerator under "xnnpack" (whether to
    /// create the delegate, its flags and threads), the compiled model under
    /// "cpu_delegate" (builtin or reference op resolver, interpreter threads). Only with
    /// both does `kernel_mode = "reference"` take effect (checked: reference results
    /// then differ from builtin ones), so the payload goes under both.
    /// "runtime_options_string" selects the buffer error reporter.
    fn create_options(&mut self, kernels: CpuKernels, threads: Option<u32>) -> Result<()> {
        let api = self.api();
        if !self.options.is_null() {
            // SAFETY: no compiled model uses these options (compilation failed or has
            // not happened yet); destroyed once and reset to null.
            unsafe { (api.LiteRtDestroyOptions)(self.options) };
            self.options = std::ptr::null_mut();
        }
        let mut options: ffi::Options = std::ptr::null_mut();
        // SAFETY: out-pointer valid.
        self.check("LiteRtCreateOptions", unsafe {
            (api.LiteRtCreateOptions)(&mut options)
        })?;
        self.options = options;
        // SAFETY: `options` is live.
        self.check("LiteRtSetOptionsHardwareAccelerators", unsafe {
            (api.LiteRtSetOptionsHardwareAccelerators)(options, ffi::HW_ACCELERATOR_CPU)
        })?;
        let mut cpu = match kernels {
            CpuKernels::Xnnpack => format!("flags = {}\n", ffi::XNNPACK_FLAGS),
            CpuKernels::Builtin => "kernel_mode = \"builtin\"\n".to_string(),
            CpuKernels::Reference => "kernel_mode = \"reference\"\n".to_string(),
        };
        if let Some(n) = threads {
            cpu.push_str(&format!("num_threads = {n}\n"));
        }
        self.add_opaque(c"xnnpack", &cpu)?;
        self.add_opaque(c"cpu_delegate", &cpu)?;
        // kLiteRtErrorReporterModeBuffer = 2: messages kept for
        // LiteRtCompiledModelGetErrorMessages.
        self.add_opaque(c"runtime_options_string", "error_reporter_mode = 2\n")
    }

    /// Compiles with the requested kernels. XNNPACK runs with subgraph reshaping off, so
    /// a graph with dynamic-sized tensors (shapes that depend on values) is refused by
    /// the delegate instead of overrunning our output buffers (with reshaping on, LiteRT
    /// 2.3 lets XNNPACK grow an output past the buffer bound to it: heap corruption,
    /// seen on `ops_shape_dynamic.tflite`); such graphs then run on the builtin kernels,
    /// which check every output against its buffer.
    fn compile_with(&mut self, opts: &OpenOptions) -> Result<()> {
        self.create_options(opts.kernels, opts.num_threads)?;
        let first = match self.compile() {
            Ok(()) => {
                self.kernels = opts.kernels;
                return Ok(());
            }
            Err(e) => e,
        };
        let other = match opts.kernels {
            CpuKernels::Xnnpack => CpuKernels::Builtin,
            _ => CpuKernels::Xnnpack,
        };
        self.create_options(other, opts.num_threads)?;
        match (opts.kernels, self.compile()) {
            (CpuKernels::Xnnpack, Ok(())) => {
                log::warn!(
                    "{}: XNNPACK cannot take this model (dynamic-sized tensors?); running it \
                     on LiteRT's builtin kernels",
                    self.name
                );
                self.kernels = CpuKernels::Builtin;
                Ok(())
            }
            // With XNNPACK the graph is prepared inside LiteRtCreateCompiledModel, whose
            // failures come without the runtime's messages; the builtin kernels prepare it
            // afterwards, where the messages can be fetched: report that attempt.
            (CpuKernels::Xnnpack, Err(second)) => Err(second),
            (_, Ok(())) => {
                let first = match first {
                    Error::Unsupported { what, .. } => what,
                    other => other.to_string(),
                };
                Err(Error::Unsupported {
                    at: Loc(self.name.clone()),
                    what: format!(
                        "the model compiles with LiteRT's default (XNNPACK) kernels but not \
                         with the {} kernels, probably for an op they lack ({first})",
                        opts.kernels
                    ),
                })
            }
            (_, Err(_)) => Err(first),
        }
    }

    fn add_opaque(&self, identifier: &'static CStr, toml: &str) -> Result<()> {
        let api = self.api();
        let payload = toml_payload(toml)?;
        let mut opaque: ffi::OpaqueOptions = std::ptr::null_mut();
        // SAFETY: `identifier` is a static NUL-terminated string; `payload` is a
        // NUL-terminated string from `CString::into_raw` whose ownership passes to the
        // opaque options, which free it with `free_toml_payload`. If creation fails we do
        // not know whether LiteRT already freed it, so it is leaked (a few bytes) rather
        // than risking a double free.
        let status = unsafe {
            (api.LiteRtCreateOpaqueOptions)(
                identifier.as_ptr(),
                payload,
                Some(free_toml_payload),
                &mut opaque,
            )
        };
        self.check("LiteRtCreateOpaqueOptions", status)?;
        // SAFETY: both handles are live; on success `options` owns `opaque`.
        let status = unsafe { (api.LiteRtAddOpaqueOptions)(self.options, opaque) };
        if status != ffi::STATUS_OK {
            // SAFETY: not added, so still ours to destroy (once).
            unsafe { (api.LiteRtDestroyOpaqueOptions)(opaque) };
        }
        self.check("LiteRtAddOpaqueOptions", status)
    }

    fn compile(&mut self) -> Result<()> {
        let api = self.api();
        let mut compiled: ffi::CompiledModel = std::ptr::null_mut();
        // SAFETY: environment, model and options are live and outlive the compiled model
        // (see Drop); out-pointer valid.
        let status = unsafe {
            (api.LiteRtCreateCompiledModel)(self.rt.env, self.model, self.options, &mut compiled)
        };
        if status != ffi::STATUS_OK || compiled.is_null() {
            return Err(self.fail("LiteRtCreateCompiledModel", status));
        }
        self.compiled = compiled;
        let prepared = self.prepare();
        if prepared.is_err() {
            self.destroy_compiled();
        }
        prepared
    }

    fn destroy_compiled(&mut self) {
        self.in_bufs.clear();
        self.out_bufs.clear();
        if !self.compiled.is_null() {
            // SAFETY: created by LiteRtCreateCompiledModel, its buffers are gone, and
            // the handle is reset so it is destroyed once.
            unsafe { (self.api().LiteRtDestroyCompiledModel)(self.compiled) };
            self.compiled = std::ptr::null_mut();
        }
    }

    /// Reads the input shapes and lets LiteRT prepare the graph (allocate tensors,
    /// compute output shapes).
    fn prepare(&mut self) -> Result<()> {
        let api = self.api();
        let compiled = self.compiled;
        let n_in = self.inputs.len();
        self.in_dims = vec![Vec::new(); n_in];
        for j in 0..n_in {
            let mut layout = ffi::Layout::default();
            // SAFETY: `compiled` is live, `j` < number of signature inputs, `layout` is a
            // valid LiteRtLayout to fill.
            let status = unsafe {
                (api.LiteRtGetCompiledModelInputTensorLayout)(
                    compiled,
                    self.signature,
                    j,
                    &mut layout,
                )
            };
            self.check("LiteRtGetCompiledModelInputTensorLayout", status)?;
            self.in_dims[j] = self.layout_dims(&layout, "input", j)?;
        }
        self.in_bufs = (0..n_in).map(|_| None).collect();
        self.out_bufs = (0..self.sig_output_types.len()).map(|_| None).collect();
        // Preparing the graph happens here: a model LiteRT cannot run (an unresolved
        // custom op, a failing Prepare) fails now, with the runtime's messages.
        self.update_output_dims()
    }

    fn layout_dims(&self, layout: &ffi::Layout, what: &str, pos: usize) -> Result<Vec<i32>> {
        let dims = layout.dims().ok_or_else(|| {
            Error::Internal(format!(
                "{}: LiteRT reports rank {} for signature {what} {pos}",
                self.name,
                layout.rank()
            ))
        })?;
        if layout.has_strides() {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!("signature {what} {pos} has a strided layout"),
            });
        }
        Ok(dims.to_vec())
    }

    /// Re-reads the output shapes, letting LiteRT re-allocate first (after a resize).
    fn update_output_dims(&mut self) -> Result<()> {
        self.out_dims = self.output_dims(true)?;
        Ok(())
    }

    /// The output shapes LiteRT currently has, by signature position; with `update`,
    /// LiteRT first (re)allocates the graph's tensors.
    fn output_dims(&self, update: bool) -> Result<Vec<Vec<i32>>> {
        let api = self.api();
        let n = self.sig_output_types.len();
        // LiteRT 2.3 copies each output's dimensions without checking the rank against
        // LITERT_TENSOR_MAX_RANK: a rank above 8 would write past `dimensions`. The
        // declared ranks were checked (<= 8) when the model was described; one spare
        // layout at the end keeps even a wrong runtime rank (up to 33) inside memory we
        // own, and such ranks are rejected below.
        let mut layouts = vec![ffi::Layout::default(); n + 1];
        // SAFETY: `compiled` is live; `layouts` has room for `n` layouts, the number of
        // outputs of the signature, plus the spare one.
        let status = unsafe {
            (api.LiteRtGetCompiledModelOutputTensorLayouts)(
                self.compiled,
                self.signature,
                n,
                layouts.as_mut_ptr(),
                update,
            )
        };
        self.check("LiteRtGetCompiledModelOutputTensorLayouts", status)?;
        if layouts[n] != ffi::Layout::default() {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "an output has a rank above {} at run time, which LiteRT cannot report",
                    ffi::MAX_RANK
                ),
            });
        }
        layouts[..n]
            .iter()
            .enumerate()
            .map(|(j, l)| self.layout_dims(l, "output", j))
            .collect()
    }

    /// The model's inputs, in subgraph-0 order.
    pub fn inputs(&self) -> Vec<TensorInfo> {
        self.inputs.iter().map(|s| s.info.clone()).collect()
    }

    /// The model's outputs, in subgraph-0 order.
    pub fn outputs(&self) -> Vec<TensorInfo> {
        self.outputs.iter().map(|s| s.info.clone()).collect()
    }

    /// The kernels the model runs on: those asked for, except that a graph XNNPACK
    /// refuses (dynamic-sized tensors) runs on [`CpuKernels::Builtin`].
    pub fn kernels(&self) -> CpuKernels {
        self.kernels
    }

    /// The key of the signature LiteRT runs (`<placeholder signature>` for models
    /// without SignatureDefs).
    pub fn signature_key(&self) -> &str {
        &self.signature_key
    }

    /// Checks an input against the model: element type, rank, and every dimension that
    /// is not dynamic. Returns the dimensions as `i32`.
    fn check_input(&self, i: usize, a: &Array) -> Result<Vec<i32>> {
        let t = &self.inputs[i].info;
        let what = format!(
            "{}: input {i} (tensor {} \"{}\")",
            self.name, t.index, t.name
        );
        if t.dtype.size().is_none() {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "input {i} (tensor {} \"{}\") is {}, which tflquant cannot pass to LiteRT",
                    t.index, t.name, t.dtype
                ),
            });
        }
        if !t.dtype.matches(&a.data) {
            return Err(Error::Data(format!(
                "{what}: expected {} data, got {}",
                t.dtype,
                a.data.dtype_name()
            )));
        }
        let shape_ok = a.shape.len() == t.shape.len()
            && a.shape
                .iter()
                .zip(&t.shape)
                .all(|(&g, &w)| w < 0 || g as i64 == w as i64);
        if !shape_ok {
            return Err(Error::Data(format!(
                "{what}: expected shape {}, got {:?}",
                show_shape(&t.shape),
                a.shape
            )));
        }
        if a.shape.iter().product::<usize>() != a.data.len() {
            return Err(Error::Data(format!(
                "{what}: array of shape {:?} holds {} elements",
                a.shape,
                a.data.len()
            )));
        }
        a.shape
            .iter()
            .map(|&d| {
                i32::try_from(d)
                    .map_err(|_| Error::Data(format!("{what}: dimension {d} is too large")))
            })
            .collect()
    }

    /// Runs the model once. `inputs[i]` is subgraph-0 input `i` with exactly its shape
    /// (dynamic dimensions free); returns the outputs in subgraph-0 order.
    pub fn run(&mut self, inputs: &[Array]) -> Result<Vec<Array>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Data(format!(
                "{}: the model has {} inputs, got {} arrays",
                self.name,
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut dims = Vec::with_capacity(inputs.len());
        for (i, a) in inputs.iter().enumerate() {
            dims.push(self.check_input(i, a)?);
        }
        // Resize dynamic inputs whose shape changed, then let LiteRT recompute outputs.
        let mut resized = false;
        for (i, d) in dims.iter().enumerate() {
            let j = self.inputs[i].sig_pos;
            if *d != self.in_dims[j] {
                self.resize(j, d)?;
                resized = true;
            }
        }
        if resized {
            self.update_output_dims()?;
        }
        for (i, a) in inputs.iter().enumerate() {
            let j = self.inputs[i].sig_pos;
            let elem = self.inputs[i].info.dtype;
            let bytes = convert::array_bytes(&a.data)?;
            let buf = self.buffer(true, j, elem)?;
            write_buffer(buf, &bytes).map_err(|e| self.buffer_error(e))?;
        }
        for j in 0..self.sig_output_types.len() {
            let elem = self.sig_output_types[j];
            self.buffer(false, j, elem)?;
        }
        self.invoke_checked()?;
        // Outputs whose shape depends on values may come out smaller than the buffer
        // bound to them: read back the shapes the run produced.
        let actual = self.output_dims(false)?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for slot in &self.outputs {
            let j = slot.sig_pos;
            let buf = self.out_bufs[j]
                .as_ref()
                .ok_or_else(|| Error::Internal("output buffer missing".into()))?;
            let dims = actual
                .get(j)
                .ok_or_else(|| Error::Internal("output shape missing".into()))?;
            let shape: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
            let len = shape
                .iter()
                .product::<usize>()
                .checked_mul(slot.info.dtype.size().unwrap_or(0))
                .filter(|&n| n <= buf.bytes)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "{}: output {} has shape {dims:?} after the run, larger than its \
                         {}-byte buffer",
                        self.name, slot.info.index, buf.bytes
                    ))
                })?;
            let mut bytes = read_buffer(buf).map_err(|e| self.buffer_error(e))?;
            bytes.truncate(len);
            out.push(convert::array_from_bytes(slot.info.dtype, shape, &bytes)?);
        }
        Ok(out)
    }

    /// Invokes; when the run fails because an output outgrew its buffer (the builtin
    /// kernels check this before writing: "Custom allocation is too small"), rebinds
    /// buffers of the new sizes and runs once more.
    fn invoke_checked(&mut self) -> Result<()> {
        let first = match self.invoke() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Ok(actual) = self.output_dims(false) else {
            return Err(first);
        };
        let grew = actual.iter().zip(&self.out_bufs).any(|(d, b)| {
            let need = d.iter().map(|&x| x.max(0) as usize).product::<usize>();
            b.as_ref()
                .is_some_and(|b| need > b.dims.iter().map(|&x| x.max(0) as usize).product())
        });
        if !grew {
            return Err(first);
        }
        self.out_dims = actual;
        for j in 0..self.sig_output_types.len() {
            let elem = self.sig_output_types[j];
            self.buffer(false, j, elem)?;
        }
        self.invoke()
    }

    /// Runs each sample separately (one invoke per sample, in order, like the Python
    /// test helper) and stacks the outputs on a new first axis. `inputs[i]` holds the
    /// samples of input `i` on axis 0; a sample has the input's shape, or the input's
    /// shape without its leading batch dimension of 1.
    pub fn run_samples(&mut self, inputs: &[Array]) -> Result<Vec<Array>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Data(format!(
                "{}: the model has {} inputs, got {} arrays",
                self.name,
                self.inputs.len(),
                inputs.len()
            )));
        }
        let n = match inputs.first() {
            None => 1,
            Some(a) => *a.shape.first().ok_or_else(|| {
                Error::Data(format!(
                    "{}: input 0 has no samples axis (a scalar)",
                    self.name
                ))
            })?,
        };
        for (i, a) in inputs.iter().enumerate() {
            if a.shape.first() != Some(&n) {
                return Err(Error::Data(format!(
                    "{}: input {i} holds {:?} samples (shape {:?}), input 0 holds {n}",
                    self.name,
                    a.shape.first(),
                    a.shape
                )));
            }
        }
        let mut per_output: Vec<Vec<Array>> = vec![Vec::with_capacity(n); self.outputs.len()];
        for s in 0..n {
            let mut sample_inputs = Vec::with_capacity(inputs.len());
            for (i, a) in inputs.iter().enumerate() {
                let mut x = convert::sample(a, s)?;
                x.shape = self.sample_shape(i, &x.shape)?;
                sample_inputs.push(x);
            }
            let outs = self.run(&sample_inputs)?;
            for (k, o) in outs.into_iter().enumerate() {
                per_output[k].push(o);
            }
        }
        per_output
            .into_iter()
            .enumerate()
            .map(|(k, parts)| {
                let t = &self.outputs[k].info;
                convert::stack(
                    parts,
                    &format!(
                        "{}: output {k} (tensor {} \"{}\")",
                        self.name, t.index, t.name
                    ),
                )
            })
            .collect()
    }

    /// The shape a sample of input `i` is run with: its own if it fits the input, else
    /// the input's shape when the sample lacks only a leading batch dimension of 1.
    pub(super) fn sample_shape(&self, i: usize, sample: &[usize]) -> Result<Vec<usize>> {
        let t = &self.inputs[i].info;
        let fits = |s: &[usize]| {
            s.len() == t.shape.len()
                && s.iter()
                    .zip(&t.shape)
                    .all(|(&g, &w)| w < 0 || g as i64 == w as i64)
        };
        if fits(sample) {
            return Ok(sample.to_vec());
        }
        let mut with_batch = vec![1usize];
        with_batch.extend_from_slice(sample);
        if matches!(t.shape.first(), Some(1) | Some(-1)) && fits(&with_batch) {
            return Ok(with_batch);
        }
        Err(Error::Data(format!(
            "{}: input {i} (tensor {} \"{}\"): expected samples of shape {} (or without the \
             leading 1), got samples of shape {sample:?}",
            self.name,
            t.index,
            t.name,
            show_shape(&t.shape)
        )))
    }

    fn resize(&mut self, j: usize, dims: &[i32]) -> Result<()> {
        let api = self.api();
        // SAFETY: `compiled` is live; `dims` points to `dims.len()` ints read during the
        // call only.
        let status = unsafe {
            (api.LiteRtCompiledModelResizeInputTensor)(
                self.compiled,
                self.signature,
                j,
                dims.as_ptr(),
                dims.len(),
            )
        };
        self.check("LiteRtCompiledModelResizeInputTensor", status)?;
        self.in_dims[j] = dims.to_vec();
        self.in_bufs[j] = None;
        Ok(())
    }

    /// The buffer of signature input/output `j`, (re)created for the current shape.
    fn buffer(&mut self, input: bool, j: usize, elem: ElementType) -> Result<&Buffer> {
        let dims = if input {
            self.in_dims[j].clone()
        } else {
            self.out_dims[j].clone()
        };
        let current = if input {
            &self.in_bufs[j]
        } else {
            &self.out_bufs[j]
        };
        if current.as_ref().is_none_or(|b| b.dims != dims) {
            let fresh = self.create_buffer(input, j, elem, &dims)?;
            let slot = if input {
                &mut self.in_bufs[j]
            } else {
                &mut self.out_bufs[j]
            };
            *slot = Some(fresh);
        }
        let slot = if input {
            &self.in_bufs[j]
        } else {
            &self.out_bufs[j]
        };
        slot.as_ref()
            .ok_or_else(|| Error::Internal("tensor buffer missing".into()))
    }

    fn create_buffer(
        &self,
        input: bool,
        j: usize,
        elem: ElementType,
        dims: &[i32],
    ) -> Result<Buffer> {
        let api = self.api();
        let what = if input { "input" } else { "output" };
        let size = elem.size().ok_or_else(|| Error::Unsupported {
            at: Loc(self.name.clone()),
            what: format!(
                "signature {what} {j} is {elem}, which tflquant cannot exchange with LiteRT"
            ),
        })?;
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .ok_or_else(|| Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!("signature {what} {j} has shape {dims:?} (unknown size)"),
            })?;
        let bytes = count.checked_mul(size).ok_or_else(|| {
            Error::Data(format!(
                "{}: {what} {j} of shape {dims:?} is too large",
                self.name
            ))
        })?;
        let layout = ffi::Layout::new(dims).ok_or_else(|| Error::Unsupported {
            at: Loc(self.name.clone()),
            what: format!(
                "signature {what} {j} has rank {} > {}",
                dims.len(),
                ffi::MAX_RANK
            ),
        })?;
        let ty = ffi::RankedTensorType {
            element_type: match elem {
                ElementType::F32 => ffi::element::FLOAT32,
                ElementType::I8 => ffi::element::INT8,
                ElementType::U8 => ffi::element::UINT8,
                ElementType::I16 => ffi::element::INT16,
                ElementType::I32 => ffi::element::INT32,
                ElementType::I64 => ffi::element::INT64,
                ElementType::Bool => ffi::element::BOOL,
                ElementType::Other(c) => c,
            },
            layout,
        };
        let mut req: ffi::TensorBufferRequirements = std::ptr::null_mut();
        // SAFETY: `compiled` is live, `j` is a valid signature position, `req` a valid
        // out-pointer; the requirements stay owned by the compiled model.
        let status = unsafe {
            if input {
                (api.LiteRtGetCompiledModelInputBufferRequirements)(
                    self.compiled,
                    self.signature,
                    j,
                    &mut req,
                )
            } else {
                (api.LiteRtGetCompiledModelOutputBufferRequirements)(
                    self.compiled,
                    self.signature,
                    j,
                    &mut req,
                )
            }
        };
        self.check(
            if input {
                "LiteRtGetCompiledModelInputBufferRequirements"
            } else {
                "LiteRtGetCompiledModelOutputBufferRequirements"
            },
            status,
        )?;
        let mut req_size: usize = 0;
        // SAFETY: `req` is live (owned by the compiled model); out-pointer valid.
        let status =
            unsafe { (api.LiteRtGetTensorBufferRequirementsBufferSize)(req, &mut req_size) };
        self.check("LiteRtGetTensorBufferRequirementsBufferSize", status)?;
        let mut handle: ffi::TensorBuffer = std::ptr::null_mut();
        let (call, status) = if req_size >= bytes {
            (
                "LiteRtCreateManagedTensorBufferFromRequirements",
                // SAFETY: `env` and `req` are live, `ty` is a valid
                // LiteRtRankedTensorType read during the call, `handle` a valid
                // out-pointer.
                unsafe {
                    (api.LiteRtCreateManagedTensorBufferFromRequirements)(
                        self.rt.env,
                        &ty,
                        req,
                        &mut handle,
                    )
                },
            )
        } else {
            // The requirements still give the size from before an output grew at run
            // time (LiteRT caches them): a plain host-memory buffer of the new size.
            (
                "LiteRtCreateManagedTensorBuffer",
                // SAFETY: `env` is live, `ty` a valid LiteRtRankedTensorType read during
                // the call, `handle` a valid out-pointer.
                unsafe {
                    (api.LiteRtCreateManagedTensorBuffer)(
                        self.rt.env,
                        ffi::BUFFER_TYPE_HOST_MEMORY,
                        &ty,
                        bytes,
                        &mut handle,
                    )
                },
            )
        };
        if status != ffi::STATUS_OK || handle.is_null() {
            return Err(self.fail(call, status));
        }
        let buf = Buffer {
            api,
            handle,
            dims: dims.to_vec(),
            bytes,
        };
        let mut packed: usize = 0;
        // SAFETY: `handle` is live; out-pointer valid.
        let status = unsafe { (api.LiteRtGetTensorBufferPackedSize)(handle, &mut packed) };
        self.check("LiteRtGetTensorBufferPackedSize", status)?;
        if packed != bytes {
            return Err(Error::Internal(format!(
                "{}: LiteRT made a {packed}-byte buffer for signature {what} {j} ({elem} {dims:?}, \
                 {bytes} bytes)",
                self.name
            )));
        }
        Ok(buf)
    }

    fn invoke(&mut self) -> Result<()> {
        let api = self.api();
        let mut ins: Vec<ffi::TensorBuffer> = Vec::with_capacity(self.in_bufs.len());
        for b in &self.in_bufs {
            ins.push(
                b.as_ref()
                    .ok_or_else(|| Error::Internal("input buffer missing".into()))?
                    .handle,
            );
        }
        let mut outs: Vec<ffi::TensorBuffer> = Vec::with_capacity(self.out_bufs.len());
        for b in &self.out_bufs {
            outs.push(
                b.as_ref()
                    .ok_or_else(|| Error::Internal("output buffer missing".into()))?
                    .handle,
            );
        }
        // SAFETY: `compiled` is live; `ins`/`outs` hold one live buffer per signature
        // input/output, in signature order, each made from the compiled model's own
        // requirements for the current shapes.
        let status = unsafe {
            (api.LiteRtRunCompiledModel)(
                self.compiled,
                self.signature,
                ins.len(),
                ins.as_mut_ptr(),
                outs.len(),
                outs.as_mut_ptr(),
            )
        };
        self.check("LiteRtRunCompiledModel", status)
    }

    fn buffer_error(&self, (call, status): (&'static str, ffi::Status)) -> Error {
        if status == ffi::STATUS_OK {
            Error::Internal(format!("{}: {call} returned a null pointer", self.name))
        } else {
            self.fail(call, status)
        }
    }
}

/// `[-1, 64]` shown as `[?, 64]`... kept numeric but readable: `[-1 (dynamic), 64]`.
fn show_shape(shape: &[i32]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|&d| {
            if d < 0 {
                "any".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
