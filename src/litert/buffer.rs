//! Host-memory tensor buffers LiteRT reads inputs from and writes outputs to, and the
//! aligned copy of a model held in memory. Copies in and out go through a locked buffer
//! whose size was checked against the tensor when it was created.

use std::ffi::c_void;

use super::ffi::{self, Called, call};

/// Model bytes kept at a 64-byte aligned address (LiteRT reads tensor data in place).
pub(super) struct AlignedBytes {
    pub(super) blocks: Vec<Block>,
    pub(super) len: usize,
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Block(pub(super) [u8; 64]);

impl AlignedBytes {
    pub(super) fn new(bytes: &[u8]) -> Self {
        let mut blocks = vec![Block([0; 64]); bytes.len().div_ceil(64)];
        for (b, chunk) in blocks.iter_mut().zip(bytes.chunks(64)) {
            b.0[..chunk.len()].copy_from_slice(chunk);
        }
        AlignedBytes {
            blocks,
            len: bytes.len(),
        }
    }

    pub(super) fn as_ptr(&self) -> *const c_void {
        self.blocks.as_ptr().cast()
    }
}

/// A managed LiteRT tensor buffer of a fixed shape.
pub(super) struct Buffer {
    pub(super) api: &'static ffi::Api,
    pub(super) handle: ffi::TensorBuffer,
    pub(super) dims: Vec<i32>,
    pub(super) bytes: usize,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: `handle` came from LiteRtCreateManagedTensorBufferFromRequirements and
        // is destroyed once, before the compiled model (see `CompiledModel::drop`).
        unsafe { (self.api.LiteRtDestroyTensorBuffer)(self.handle) };
    }
}

/// Copies `bytes` into a buffer of exactly that size.
pub(super) fn write_buffer(buf: &Buffer, bytes: &[u8]) -> std::result::Result<(), Called> {
    if bytes.len() != buf.bytes {
        return Err(Called::refused("LiteRtLockTensorBuffer (size check)"));
    }
    let mut p: *mut c_void = std::ptr::null_mut();
    // SAFETY: `handle` is live; out-pointer valid.
    let locked = call!(buf.api, unsafe LiteRtLockTensorBuffer(buf.handle, &mut p, ffi::LOCK_WRITE));
    if !locked.ok() {
        return Err(locked);
    }
    if p.is_null() {
        // SAFETY: locked just above.
        unsafe { (buf.api.LiteRtUnlockTensorBuffer)(buf.handle) };
        return Err(Called::refused("LiteRtLockTensorBuffer"));
    }
    // SAFETY: while locked, `p` points to the buffer's packed host memory, which was
    // checked at creation to be `buf.bytes` long; `bytes` has exactly that length and
    // cannot overlap memory LiteRT allocated.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len()) };
    // SAFETY: locked above, unlocked once.
    let unlocked = call!(buf.api, unsafe LiteRtUnlockTensorBuffer(buf.handle));
    if !unlocked.ok() {
        return Err(unlocked);
    }
    Ok(())
}

/// Copies a buffer's packed bytes out.
pub(super) fn read_buffer(buf: &Buffer) -> std::result::Result<Vec<u8>, Called> {
    let mut p: *mut c_void = std::ptr::null_mut();
    // SAFETY: `handle` is live; out-pointer valid.
    let locked = call!(buf.api, unsafe LiteRtLockTensorBuffer(buf.handle, &mut p, ffi::LOCK_READ));
    if !locked.ok() {
        return Err(locked);
    }
    if p.is_null() {
        // SAFETY: locked just above.
        unsafe { (buf.api.LiteRtUnlockTensorBuffer)(buf.handle) };
        return Err(Called::refused("LiteRtLockTensorBuffer"));
    }
    // SAFETY: while locked, `p` points to `buf.bytes` initialised bytes of packed host
    // memory (size checked at creation); they are copied before unlocking.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), buf.bytes) }.to_vec();
    // SAFETY: locked above, unlocked once.
    let unlocked = call!(buf.api, unsafe LiteRtUnlockTensorBuffer(buf.handle));
    if !unlocked.ok() {
        return Err(unlocked);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_bytes_keep_content_at_a_64_byte_boundary() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        let a = AlignedBytes::new(&data);
        assert_eq!(a.as_ptr() as usize % 64, 0);
        assert_eq!(a.len, 200);
        let back: Vec<u8> = a.blocks.iter().flat_map(|b| b.0).take(a.len).collect();
        assert_eq!(back, data);
    }
}
