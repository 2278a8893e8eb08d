//! The signature LiteRT runs: the one whose subgraph is subgraph 0, with its inputs and
//! outputs matched by tensor index to subgraph 0's (which give the order callers use).

use std::ffi::c_char;

use super::diagnostics::c_str;
use super::{CompiledModel, Side, Slot};
use crate::error::{Error, Loc, Result};
use crate::litert::ffi::{self, call};
use crate::litert::{ElementType, TensorInfo};

impl CompiledModel {
    /// Finds the signature of subgraph 0 and maps its inputs and outputs to subgraph 0's.
    pub(super) fn describe(&mut self) -> Result<()> {
        let api = self.api();
        let model = self.model.raw();
        let mut sg0: ffi::Subgraph = std::ptr::null_mut();
        // SAFETY: `model` is live; out-pointer valid.
        self.check(call!(api, unsafe LiteRtGetModelSubgraph(model, 0, &mut sg0)))?;
        let (sig_index, sig) = self.find_signature(sg0)?;
        let mut key: *const c_char = std::ptr::null();
        // SAFETY: `sig` is live; the key is copied at once.
        self.check(call!(api, unsafe LiteRtGetSignatureKey(sig, &mut key)))?;
        // SAFETY: `key` is NUL-terminated and owned by the live model.
        self.signature_key = unsafe { c_str(key) };
        self.signature = sig_index;

        let sg_inputs = self.list(sg0, Side::Input)?;
        let sg_outputs = self.list(sg0, Side::Output)?;
        let sig_inputs = self.sig_list(sig, Side::Input)?;
        let sig_outputs = self.sig_list(sig, Side::Output)?;

        let inputs = self.match_slots(sg_inputs, &sig_inputs, Side::Input)?;
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
        let outputs = self.match_slots(sg_outputs, &sig_outputs, Side::Output)?;
        self.sig_output_types = sig_outputs.iter().map(|t| t.dtype).collect();
        self.inputs = inputs;
        self.outputs = outputs;
        Ok(())
    }

    /// The signature (index and handle) that runs subgraph `sg0`.
    fn find_signature(&self, sg0: ffi::Subgraph) -> Result<(usize, ffi::Signature)> {
        let api = self.api();
        let model = self.model.raw();
        let mut n_sigs: usize = 0;
        // SAFETY: `model` is live; out-pointer valid.
        self.check(call!(api, unsafe LiteRtGetNumModelSignatures(model, &mut n_sigs)))?;
        for s in 0..n_sigs {
            let mut sig: ffi::Signature = std::ptr::null_mut();
            let mut sg: ffi::Subgraph = std::ptr::null_mut();
            // SAFETY: `s` < number of signatures; out-pointers valid.
            self.check(call!(api, unsafe LiteRtGetModelSignature(model, s, &mut sig)))?;
            // SAFETY: `sig` belongs to the live model.
            self.check(call!(api, unsafe LiteRtGetSignatureSubgraph(sig, &mut sg)))?;
            if sg == sg0 {
                return Ok((s, sig));
            }
        }
        Err(Error::Unsupported {
            at: Loc(self.name.clone()),
            what: format!(
                "none of the model's {n_sigs} signatures runs subgraph 0, and LiteRT runs \
                 models through signatures"
            ),
        })
    }

    /// Subgraph-0 tensors of one side with their positions in the signature.
    fn match_slots(
        &self,
        subgraph: Vec<TensorInfo>,
        signature: &[TensorInfo],
        side: Side,
    ) -> Result<Vec<Slot>> {
        let mut slots = Vec::with_capacity(subgraph.len());
        for t in subgraph {
            let Some(pos) = signature.iter().position(|s| s.index == t.index) else {
                let what = match side {
                    Side::Input => format!(
                        "subgraph 0 input tensor {} \"{}\" is not an input of signature \"{}\"",
                        t.index, t.name, self.signature_key
                    ),
                    Side::Output => format!(
                        "subgraph 0 output tensor {} \"{}\" is not an output of signature \
                         \"{}\", and LiteRT returns signature outputs only",
                        t.index, t.name, self.signature_key
                    ),
                };
                return Err(Error::Unsupported {
                    at: Loc(self.name.clone()),
                    what,
                });
            };
            slots.push(Slot {
                info: t,
                sig_pos: pos,
            });
        }
        Ok(slots)
    }

    /// Inputs (or outputs) of a subgraph.
    fn list(&self, sg: ffi::Subgraph, side: Side) -> Result<Vec<TensorInfo>> {
        let api = self.api();
        let mut n: usize = 0;
        // SAFETY: `sg` belongs to the live model; out-pointer valid.
        self.check(match side {
            Side::Input => call!(api, unsafe LiteRtGetNumSubgraphInputs(sg, &mut n)),
            Side::Output => call!(api, unsafe LiteRtGetNumSubgraphOutputs(sg, &mut n)),
        })?;
        let mut out = Vec::with_capacity(n.min(4096));
        for i in 0..n {
            let mut t: ffi::Tensor = std::ptr::null_mut();
            // SAFETY: `i` < count; out-pointer valid.
            self.check(match side {
                Side::Input => call!(api, unsafe LiteRtGetSubgraphInput(sg, i, &mut t)),
                Side::Output => call!(api, unsafe LiteRtGetSubgraphOutput(sg, i, &mut t)),
            })?;
            out.push(self.tensor_info(t)?);
        }
        Ok(out)
    }

    /// Inputs (or outputs) of a signature, in signature order.
    fn sig_list(&self, sig: ffi::Signature, side: Side) -> Result<Vec<TensorInfo>> {
        let api = self.api();
        let mut n: usize = 0;
        // SAFETY: `sig` belongs to the live model; out-pointer valid.
        self.check(match side {
            Side::Input => call!(api, unsafe LiteRtGetNumSignatureInputs(sig, &mut n)),
            Side::Output => call!(api, unsafe LiteRtGetNumSignatureOutputs(sig, &mut n)),
        })?;
        let mut out = Vec::with_capacity(n.min(4096));
        for i in 0..n {
            let mut t: ffi::Tensor = std::ptr::null_mut();
            // SAFETY: `i` < count; out-pointer valid.
            self.check(match side {
                Side::Input => {
                    call!(api, unsafe LiteRtGetSignatureInputTensorByIndex(sig, i, &mut t))
                }
                Side::Output => {
                    call!(api, unsafe LiteRtGetSignatureOutputTensorByIndex(sig, i, &mut t))
                }
            })?;
            out.push(self.tensor_info(t)?);
        }
        Ok(out)
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
        // SAFETY: `t` is a tensor of the live model; the out-pointers are valid.
        self.check(call!(api, unsafe LiteRtGetTensorName(t, &mut name)))?;
        // SAFETY: the name belongs to the model and is copied before any other call.
        let name = unsafe { c_str(name) };
        // SAFETY: as above.
        self.check(call!(api, unsafe LiteRtGetTensorIndex(t, &mut index)))?;
        // SAFETY: as above; `ty` has the layout of LiteRtRankedTensorType.
        let called = call!(api, unsafe LiteRtGetRankedTensorType(t, &mut ty));
        if !called.ok() {
            return Err(Error::Unsupported {
                at: Loc(self.name.clone()),
                what: format!(
                    "tensor {index} \"{name}\" has no fixed rank ({})",
                    called.text()
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
}
