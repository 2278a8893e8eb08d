//! Errors of a compiled model: a failed C call becomes an error naming the function, its
//! status and the messages the runtime's buffer error reporter collected; a model the
//! loader refuses is read with our reader to say why.

use std::ffi::{CStr, c_char};

use super::{CompiledModel, ModelSource};
use crate::error::{Error, Loc, Result};
use crate::litert::Version;
use crate::litert::ffi::{self, Called, call};

/// Reads a C string owned by LiteRT (null → empty).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid during the call.
pub(super) unsafe fn c_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the function contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl CompiledModel {
    /// An error about the model: the failing call, its status and the runtime's messages.
    pub(super) fn fail(&self, called: Called) -> Error {
        let mut what = called.text();
        if let Some(m) = self.runtime_messages() {
            what.push_str(": ");
            what.push_str(&m);
        }
        Error::Unsupported {
            at: Loc(self.name.clone()),
            what: format!("LiteRT {what}"),
        }
    }

    /// A call's status turned into a model error.
    pub(super) fn check(&self, called: Called) -> Result<()> {
        if called.ok() {
            Ok(())
        } else {
            Err(self.fail(called))
        }
    }

    /// A C call that failed, or whose result failed our check (a null pointer, a size).
    pub(super) fn null_or_fail(&self, called: Called) -> Error {
        if called.ok() {
            Error::Internal(format!(
                "{}: {} returned a null pointer",
                self.name, called.name
            ))
        } else {
            self.fail(called)
        }
    }

    /// Messages the runtime's buffer error reporter collected since the last call (then
    /// cleared), one line each.
    fn runtime_messages(&self) -> Option<String> {
        let compiled = self.compiled.as_ref()?.raw();
        let api = self.api();
        let mut p: *mut c_char = std::ptr::null_mut();
        // SAFETY: `compiled` is live; `p` is a valid out-pointer.
        let called = call!(api, unsafe LiteRtCompiledModelGetErrorMessages(compiled, &mut p));
        if !called.ok() || p.is_null() {
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
        let _ = call!(api, unsafe LiteRtCompiledModelClearErrors(compiled));
        let mut lines: Vec<&str> = Vec::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        (!lines.is_empty()).then(|| lines.join(" "))
    }
}

/// The error for a model LiteRT's loader refused (`called`), with what in the model
/// may have made it refuse.
pub(super) fn load_error(
    name: &str,
    source: &ModelSource,
    version: &Version,
    called: Called,
) -> Error {
    let why = load_blockers(source, version);
    Error::Unsupported {
        at: Loc(name.to_string()),
        what: format!("LiteRT cannot read the model: {}{why}", called.text()),
    }
}

/// Why LiteRT's model loader may have refused the model, found by reading it with
/// our reader: the loader of LiteRT 2.3 (`litert/core/model/model_load.cc`) rejects
/// variable tensors, variant tensors, operator intermediates and mutating variable
/// inputs, all of which the Python `Interpreter` runs. It logs the reason only.
fn load_blockers(source: &ModelSource, version: &Version) -> String {
    let read = match source {
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
    let found = blockers(&model);
    if found.is_empty() {
        String::new()
    } else {
        format!(
            "; the model has {}, which the model loader of ai-edge-litert {version}'s C API \
             does not support (the Python Interpreter runs such models)",
            found.join(", "),
        )
    }
}

/// What of the model LiteRT 2.3's loader refuses, the first of each kind per subgraph.
fn blockers(model: &crate::ir::Model) -> Vec<String> {
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
    found
}
