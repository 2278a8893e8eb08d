//! The model's lifetime up to its first run: creating the LiteRT model from a file or
//! bytes, CPU options (a TOML payload of opaque options), compilation with the
//! XNNPACK → builtin fallback, and preparing the graph (input and output shapes).

use std::ffi::{CStr, CString, c_char, c_void};

use super::diagnostics::load_error;
use super::handles::{CompiledHandle, ModelHandle, OpaqueHandle, OptionsHandle};
use super::{CompiledModel, ModelSource, Side};
use crate::error::{Error, Loc, Result};
use crate::litert::ffi::{self, Called, call};
use crate::litert::{CpuKernels, OpenOptions, Runtime};

/// Creates the LiteRT model from `source`, which must outlive it.
pub(super) fn create_model(rt: &Runtime, name: &str, source: &ModelSource) -> Result<ModelHandle> {
    let api = rt.api();
    let env = rt.env;
    let mut model: ffi::Model = std::ptr::null_mut();
    let called = match source {
        // SAFETY: `env` is live, `path` is NUL-terminated and outlives the call, `model`
        // is a valid out-pointer.
        ModelSource::File(_, path) => {
            call!(api, unsafe LiteRtCreateModelFromFile(env, path.as_ptr(), &mut model))
        }
        // SAFETY: `b` holds `b.len` initialised bytes at `as_ptr()` and is kept (in the
        // compiled model's `_source`) until after the model is destroyed, as the API asks.
        ModelSource::Bytes(b) => {
            call!(api, unsafe LiteRtCreateModelFromBuffer(env, b.as_ptr(), b.len, &mut model))
        }
    };
    // SAFETY: on success `model` is a live model made by LiteRtCreateModelFrom*, ours.
    let handle = called
        .ok()
        .then(|| unsafe { ModelHandle::from_raw(api, model) })
        .flatten();
    handle.ok_or_else(|| load_error(name, source, &rt.lib.version, called))
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

impl CompiledModel {
    /// Compiles with the requested kernels. XNNPACK runs with subgraph reshaping off, so
    /// a graph with dynamic-sized tensors (shapes that depend on values) is refused by
    /// the delegate instead of overrunning our output buffers (with reshaping on, LiteRT
    /// 2.3 lets XNNPACK grow an output past the buffer bound to it: heap corruption,
    /// seen on `ops_shape_dynamic.tflite`); such graphs then run on the builtin kernels,
    /// which check every output against its buffer.
    pub(super) fn compile_with(&mut self, opts: &OpenOptions) -> Result<()> {
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
        // No compiled model uses the previous options (compilation failed or has not
        // happened yet): released here.
        self.options = None;
        let mut options: ffi::Options = std::ptr::null_mut();
        // SAFETY: out-pointer valid.
        self.check(call!(api, unsafe LiteRtCreateOptions(&mut options)))?;
        // SAFETY: on success `options` is a live handle from LiteRtCreateOptions, ours.
        self.options = unsafe { OptionsHandle::from_raw(api, options) };
        // SAFETY: `options` is live (owned by `self.options`).
        self.check(call!(
            api,
            unsafe LiteRtSetOptionsHardwareAccelerators(options, ffi::HW_ACCELERATOR_CPU)
        ))?;
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

    fn add_opaque(&self, identifier: &'static CStr, toml: &str) -> Result<()> {
        let api = self.api();
        let options = self
            .options
            .as_ref()
            .ok_or_else(|| Error::Internal("LiteRT options missing".into()))?
            .raw();
        let payload = toml_payload(toml)?;
        let mut opaque: ffi::OpaqueOptions = std::ptr::null_mut();
        // SAFETY: `identifier` is a static NUL-terminated string; `payload` is a
        // NUL-terminated string from `CString::into_raw` whose ownership passes to the
        // opaque options, which free it with `free_toml_payload`. If creation fails we do
        // not know whether LiteRT already freed it, so it is leaked (a few bytes) rather
        // than risking a double free.
        self.check(call!(
            api,
            unsafe LiteRtCreateOpaqueOptions(
                identifier.as_ptr(),
                payload,
                Some(free_toml_payload),
                &mut opaque,
            )
        ))?;
        // SAFETY: on success `opaque` is a live handle from LiteRtCreateOpaqueOptions,
        // ours until added (if it is not added, dropping the owner destroys it once).
        let Some(owned) = (unsafe { OpaqueHandle::from_raw(api, opaque) }) else {
            return Err(self.null_or_fail(Called::refused("LiteRtCreateOpaqueOptions")));
        };
        // SAFETY: both handles are live; on success `options` owns `opaque`.
        let added = call!(api, unsafe LiteRtAddOpaqueOptions(options, owned.raw()));
        if added.ok() {
            owned.into_raw();
        }
        self.check(added)
    }

    fn compile(&mut self) -> Result<()> {
        let api = self.api();
        let env = self.rt.env;
        let model = self.model.raw();
        let options = self
            .options
            .as_ref()
            .ok_or_else(|| Error::Internal("LiteRT options missing".into()))?
            .raw();
        let mut compiled: ffi::CompiledModel = std::ptr::null_mut();
        // SAFETY: environment, model and options are live and outlive the compiled model
        // (see the field order of `CompiledModel`); out-pointer valid.
        let called =
            call!(api, unsafe LiteRtCreateCompiledModel(env, model, options, &mut compiled));
        // SAFETY: on success `compiled` is a live handle from LiteRtCreateCompiledModel.
        let handle = called
            .ok()
            .then(|| unsafe { CompiledHandle::from_raw(api, compiled) })
            .flatten();
        let Some(handle) = handle else {
            return Err(self.fail(called));
        };
        self.compiled = Some(handle);
        let prepared = self.prepare();
        if prepared.is_err() {
            self.destroy_compiled();
        }
        prepared
    }

    /// Releases the compiled model after its buffers.
    fn destroy_compiled(&mut self) {
        self.in_bufs.clear();
        self.out_bufs.clear();
        self.compiled = None;
    }

    /// Reads the input shapes and lets LiteRT prepare the graph (allocate tensors,
    /// compute output shapes).
    fn prepare(&mut self) -> Result<()> {
        let api = self.api();
        let compiled = self.compiled()?;
        let n_in = self.inputs.len();
        self.in_dims = vec![Vec::new(); n_in];
        for j in 0..n_in {
            let mut layout = ffi::Layout::default();
            // SAFETY: `compiled` is live, `j` < number of signature inputs, `layout` is a
            // valid LiteRtLayout to fill.
            self.check(call!(
                api,
                unsafe LiteRtGetCompiledModelInputTensorLayout(
                    compiled,
                    self.signature,
                    j,
                    &mut layout
                )
            ))?;
            self.in_dims[j] = self.layout_dims(&layout, Side::Input, j)?;
        }
        self.in_bufs = (0..n_in).map(|_| None).collect();
        self.out_bufs = (0..self.sig_output_types.len()).map(|_| None).collect();
        // Preparing the graph happens here: a model LiteRT cannot run (an unresolved
        // custom op, a failing Prepare) fails now, with the runtime's messages.
        self.update_output_dims()
    }
}
