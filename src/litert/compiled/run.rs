//! Runs: inputs checked against the model, dynamic inputs resized, buffers written,
//! the model invoked (once more with larger output buffers when an output outgrew its
//! buffer), outputs read back with the shapes the run produced; and runs sample by
//! sample with the outputs stacked.

use super::{CompiledModel, Side};
use crate::data::Array;
use crate::error::{Error, Loc, Result};
use crate::litert::buffer::{read_buffer, write_buffer};
use crate::litert::convert;
use crate::litert::ffi::{self, call};

/// Whether LiteRT (re)allocates the graph's tensors before reporting output shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allocation {
    /// Report the shapes as they are (after a run).
    AsIs,
    /// Re-allocate first (after a resize).
    Update,
}

impl CompiledModel {
    /// Runs the model once. `inputs[i]` is subgraph-0 input `i` with exactly its shape
    /// (dynamic dimensions free); returns the outputs in subgraph-0 order.
    pub fn run(&mut self, inputs: &[Array]) -> Result<Vec<Array>> {
        self.check_arity(inputs)?;
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
            let buf = self.buffer(Side::Input, j, elem)?;
            write_buffer(buf, &bytes).map_err(|e| self.null_or_fail(e))?;
        }
        self.bind_outputs()?;
        self.invoke_checked()?;
        self.read_outputs()
    }

    fn check_arity(&self, inputs: &[Array]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Data(format!(
                "{}: the model has {} inputs, got {} arrays",
                self.name,
                self.inputs.len(),
                inputs.len()
            )));
        }
        Ok(())
    }

    /// A buffer of the current shape for every signature output.
    fn bind_outputs(&mut self) -> Result<()> {
        for j in 0..self.sig_output_types.len() {
            let elem = self.sig_output_types[j];
            self.buffer(Side::Output, j, elem)?;
        }
        Ok(())
    }

    /// The subgraph-0 outputs after a run. Outputs whose shape depends on values may
    /// come out smaller than the buffer bound to them: the shapes are read back.
    fn read_outputs(&self) -> Result<Vec<Array>> {
        let actual = self.output_dims(Allocation::AsIs)?;
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
            let mut bytes = read_buffer(buf).map_err(|e| self.null_or_fail(e))?;
            bytes.truncate(len);
            out.push(convert::array_from_bytes(slot.info.dtype, shape, &bytes)?);
        }
        Ok(out)
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

    /// Invokes; when the run fails because an output outgrew its buffer (the builtin
    /// kernels check this before writing: "Custom allocation is too small"), rebinds
    /// buffers of the new sizes and runs once more.
    fn invoke_checked(&mut self) -> Result<()> {
        let first = match self.invoke() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Ok(actual) = self.output_dims(Allocation::AsIs) else {
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
        self.bind_outputs()?;
        self.invoke()
    }

    fn invoke(&mut self) -> Result<()> {
        let api = self.api();
        let compiled = self.compiled()?;
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
        self.check(call!(
            api,
            unsafe LiteRtRunCompiledModel(
                compiled,
                self.signature,
                ins.len(),
                ins.as_mut_ptr(),
                outs.len(),
                outs.as_mut_ptr(),
            )
        ))
    }

    /// Runs each sample separately (one invoke per sample, in order, like the Python
    /// test helper) and stacks the outputs on a new first axis. `inputs[i]` holds the
    /// samples of input `i` on axis 0; a sample has the input's shape, or the input's
    /// shape without its leading batch dimension of 1.
    pub fn run_samples(&mut self, inputs: &[Array]) -> Result<Vec<Array>> {
        self.check_arity(inputs)?;
        let n = self.sample_count(inputs)?;
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

    /// The number of samples, the same on axis 0 of every input (1 without inputs).
    fn sample_count(&self, inputs: &[Array]) -> Result<usize> {
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
        Ok(n)
    }

    /// The shape a sample of input `i` is run with: its own if it fits the input, else
    /// the input's shape when the sample lacks only a leading batch dimension of 1.
    pub(in crate::litert) fn sample_shape(&self, i: usize, sample: &[usize]) -> Result<Vec<usize>> {
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
        let compiled = self.compiled()?;
        // SAFETY: `compiled` is live; `dims` points to `dims.len()` ints read during the
        // call only.
        self.check(call!(
            api,
            unsafe LiteRtCompiledModelResizeInputTensor(
                compiled,
                self.signature,
                j,
                dims.as_ptr(),
                dims.len(),
            )
        ))?;
        self.in_dims[j] = dims.to_vec();
        self.in_bufs[j] = None;
        Ok(())
    }

    /// The dimensions of a layout LiteRT reported for signature position `pos`.
    pub(super) fn layout_dims(
        &self,
        layout: &ffi::Layout,
        side: Side,
        pos: usize,
    ) -> Result<Vec<i32>> {
        let what = side.name();
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
    pub(super) fn update_output_dims(&mut self) -> Result<()> {
        self.out_dims = self.output_dims(Allocation::Update)?;
        Ok(())
    }

    /// The output shapes LiteRT currently has, by signature position.
    fn output_dims(&self, allocation: Allocation) -> Result<Vec<Vec<i32>>> {
        let api = self.api();
        let compiled = self.compiled()?;
        let n = self.sig_output_types.len();
        // LiteRT 2.3 copies each output's dimensions without checking the rank against
        // LITERT_TENSOR_MAX_RANK: a rank above 8 would write past `dimensions`. The
        // declared ranks were checked (<= 8) when the model was described; one spare
        // layout at the end keeps even a wrong runtime rank (up to 33) inside memory we
        // own, and such ranks are rejected below.
        let mut layouts = vec![ffi::Layout::default(); n + 1];
        // SAFETY: `compiled` is live; `layouts` has room for `n` layouts, the number of
        // outputs of the signature, plus the spare one.
        self.check(call!(
            api,
            unsafe LiteRtGetCompiledModelOutputTensorLayouts(
                compiled,
                self.signature,
                n,
                layouts.as_mut_ptr(),
                allocation == Allocation::Update,
            )
        ))?;
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
            .map(|(j, l)| self.layout_dims(l, Side::Output, j))
            .collect()
    }
}

/// A declared shape with dynamic dimensions shown as `any`: `[any, 64]`.
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
