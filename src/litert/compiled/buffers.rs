//! The tensor buffers bound to the signature's inputs and outputs: one per position,
//! made for the current shape from the compiled model's buffer requirements (or, for an
//! output that grew at run time, as plain host memory of the new size), and remade when
//! the shape changes.

use super::{CompiledModel, Side};
use crate::error::{Error, Loc, Result};
use crate::litert::ElementType;
use crate::litert::buffer::Buffer;
use crate::litert::ffi::{self, call};

impl CompiledModel {
    /// Current dimensions of one side, by signature position.
    pub(super) fn dims(&self, side: Side) -> &[Vec<i32>] {
        match side {
            Side::Input => &self.in_dims,
            Side::Output => &self.out_dims,
        }
    }

    /// Buffers of one side, by signature position.
    pub(super) fn buffers(&self, side: Side) -> &[Option<Buffer>] {
        match side {
            Side::Input => &self.in_bufs,
            Side::Output => &self.out_bufs,
        }
    }

    fn buffers_mut(&mut self, side: Side) -> &mut [Option<Buffer>] {
        match side {
            Side::Input => &mut self.in_bufs,
            Side::Output => &mut self.out_bufs,
        }
    }

    /// The buffer of signature input/output `j`, (re)created for the current shape.
    pub(super) fn buffer(&mut self, side: Side, j: usize, elem: ElementType) -> Result<&Buffer> {
        let dims = self.dims(side)[j].clone();
        if self.buffers(side)[j]
            .as_ref()
            .is_none_or(|b| b.dims != dims)
        {
            let fresh = self.create_buffer(side, j, elem, &dims)?;
            self.buffers_mut(side)[j] = Some(fresh);
        }
        self.buffers(side)[j]
            .as_ref()
            .ok_or_else(|| Error::Internal("tensor buffer missing".into()))
    }

    /// A managed buffer for signature position `j` of `side` holding `elem` of shape
    /// `dims`, checked to be exactly as large as the tensor.
    fn create_buffer(
        &self,
        side: Side,
        j: usize,
        elem: ElementType,
        dims: &[i32],
    ) -> Result<Buffer> {
        let api = self.api();
        let what = side.name();
        let (ty, bytes) = self.buffer_type(side, j, elem, dims)?;
        let (req, req_size) = self.requirements(side, j)?;
        let mut handle: ffi::TensorBuffer = std::ptr::null_mut();
        let env = self.rt.env;
        let called = if req_size >= bytes {
            // SAFETY: `env` and `req` are live, `ty` is a valid LiteRtRankedTensorType
            // read during the call, `handle` a valid out-pointer.
            call!(
                api,
                unsafe LiteRtCreateManagedTensorBufferFromRequirements(env, &ty, req, &mut handle)
            )
        } else {
            // The requirements still give the size from before an output grew at run
            // time (LiteRT caches them): a plain host-memory buffer of the new size.
            // SAFETY: `env` is live, `ty` a valid LiteRtRankedTensorType read during the
            // call, `handle` a valid out-pointer.
            call!(
                api,
                unsafe LiteRtCreateManagedTensorBuffer(
                    env,
                    ffi::BUFFER_TYPE_HOST_MEMORY,
                    &ty,
                    bytes,
                    &mut handle
                )
            )
        };
        if !called.ok() || handle.is_null() {
            return Err(self.fail(called));
        }
        let buf = Buffer {
            api,
            handle,
            dims: dims.to_vec(),
            bytes,
        };
        let mut packed: usize = 0;
        // SAFETY: `handle` is live; out-pointer valid.
        self.check(call!(api, unsafe LiteRtGetTensorBufferPackedSize(handle, &mut packed)))?;
        if packed != bytes {
            return Err(Error::Internal(format!(
                "{}: LiteRT made a {packed}-byte buffer for signature {what} {j} ({elem} {dims:?}, \
                 {bytes} bytes)",
                self.name
            )));
        }
        Ok(buf)
    }

    /// The ranked tensor type of the buffer and its size in bytes.
    fn buffer_type(
        &self,
        side: Side,
        j: usize,
        elem: ElementType,
        dims: &[i32],
    ) -> Result<(ffi::RankedTensorType, usize)> {
        let what = side.name();
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
        let element_type = match elem {
            ElementType::F32 => ffi::element::FLOAT32,
            ElementType::I8 => ffi::element::INT8,
            ElementType::U8 => ffi::element::UINT8,
            ElementType::I16 => ffi::element::INT16,
            ElementType::I32 => ffi::element::INT32,
            ElementType::I64 => ffi::element::INT64,
            ElementType::Bool => ffi::element::BOOL,
            ElementType::Other(c) => c,
        };
        Ok((
            ffi::RankedTensorType {
                element_type,
                layout,
            },
            bytes,
        ))
    }

    /// The compiled model's buffer requirements for signature position `j` (owned by
    /// the compiled model) and the buffer size they give.
    fn requirements(&self, side: Side, j: usize) -> Result<(ffi::TensorBufferRequirements, usize)> {
        let api = self.api();
        let compiled = self.compiled()?;
        let sig = self.signature;
        let mut req: ffi::TensorBufferRequirements = std::ptr::null_mut();
        // SAFETY: `compiled` is live, `j` is a valid signature position, `req` a valid
        // out-pointer; the requirements stay owned by the compiled model.
        self.check(match side {
            Side::Input => call!(
                api,
                unsafe LiteRtGetCompiledModelInputBufferRequirements(compiled, sig, j, &mut req)
            ),
            Side::Output => call!(
                api,
                unsafe LiteRtGetCompiledModelOutputBufferRequirements(compiled, sig, j, &mut req)
            ),
        })?;
        let mut req_size: usize = 0;
        // SAFETY: `req` is live (owned by the compiled model); out-pointer valid.
        self.check(call!(
            api,
            unsafe LiteRtGetTensorBufferRequirementsBufferSize(req, &mut req_size)
        ))?;
        Ok((req, req_size))
    }
}
