//! A model compiled for the CPU: the handles it owns, the signature of subgraph 0 it
//! runs, its buffers and its runs.
//!
//! Files, by job: `handles` (owners of the C handles, destroyed on drop), `compile`
//! (model creation, CPU options, compilation with the XNNPACK → builtin fallback, graph
//! preparation), `signature` (the signature running subgraph 0, matched to subgraph 0's
//! inputs and outputs), `run` (input checks, resizing, invoking, outputs, sample by
//! sample runs), `buffers` (a tensor buffer per signature position, remade when its
//! shape changes) and `diagnostics` (errors naming the C function and status, with the
//! runtime's own messages; why the model loader refused a model). Every C call goes
//! through [`ffi::call!`], so an error names the function that returned the status.

mod buffers;
mod compile;
mod diagnostics;
mod handles;
mod run;
mod signature;

use std::ffi::CString;
use std::path::PathBuf;
use std::rc::Rc;

use super::buffer::{AlignedBytes, Buffer};
use super::{CpuKernels, ElementType, OpenOptions, Runtime, TensorInfo, ffi};
use crate::error::{Error, Result};
use handles::{CompiledHandle, ModelHandle, OptionsHandle};

/// Where LiteRT reads the model from; kept alive as long as the LiteRT model.
pub(super) enum ModelSource {
    File(PathBuf, CString),
    Bytes(AlignedBytes),
}

/// The inputs or the outputs of a signature or subgraph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }
}

/// Where a subgraph input/output sits in the signature LiteRT runs.
#[derive(Debug, Clone)]
struct Slot {
    info: TensorInfo,
    sig_pos: usize,
}

/// A model compiled for the CPU, ready to run.
pub struct CompiledModel {
    // Fields drop in declaration order, which is the order LiteRT needs: the buffers,
    // then the compiled model, its options, the model, the bytes the model was read
    // from, and last the environment (`rt`).
    in_bufs: Vec<Option<Buffer>>,
    out_bufs: Vec<Option<Buffer>>,
    /// `None` until compiled (and after a failed compilation attempt).
    compiled: Option<CompiledHandle>,
    options: Option<OptionsHandle>,
    model: ModelHandle,
    /// Kept alive while LiteRT may read it (read by nobody else after loading).
    _source: ModelSource,
    rt: Rc<Runtime>,
    name: String,
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
}

impl CompiledModel {
    pub(super) fn new(
        rt: Rc<Runtime>,
        name: String,
        source: ModelSource,
        opts: &OpenOptions,
    ) -> Result<Self> {
        let model = compile::create_model(&rt, &name, &source)?;
        let mut cm = CompiledModel {
            in_bufs: Vec::new(),
            out_bufs: Vec::new(),
            compiled: None,
            options: None,
            model,
            _source: source,
            rt,
            name,
            signature: 0,
            signature_key: String::new(),
            kernels: opts.kernels,
            inputs: Vec::new(),
            outputs: Vec::new(),
            sig_output_types: Vec::new(),
            in_dims: Vec::new(),
            out_dims: Vec::new(),
        };
        // From here on, an early return drops `cm`, which releases what was created.
        cm.describe()?;
        cm.compile_with(opts)?;
        Ok(cm)
    }

    fn api(&self) -> &'static ffi::Api {
        self.rt.api()
    }

    /// The compiled model's handle (present once [`CompiledModel::new`] returned).
    fn compiled(&self) -> Result<ffi::CompiledModel> {
        self.compiled
            .as_ref()
            .map(CompiledHandle::raw)
            .ok_or_else(|| Error::Internal(format!("{}: LiteRT model not compiled", self.name)))
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
}
