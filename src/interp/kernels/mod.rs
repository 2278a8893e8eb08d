//! Kernels: one function per builtin op family, each following TFLite's reference
//! kernels (`tflite/kernels/internal/reference/*.h`) for semantics. `table.rs` holds the
//! kernel table, one declaration per op from which coverage ([`lookup`], [`missing`]),
//! the up-front option checks and dispatch ([`eval`]) are derived. This module owns the
//! shared helpers (option access, integer-list inputs, broadcasting, fused activations)
//! and the kernel error type that the interpreter turns into an [`crate::Error`] with
//! the op's location.
//!
//! Kernels compute on float32 for real-valued data; the interpreter dequantizes
//! quantized inputs before and requantizes outputs after (see `super` docs).

pub(crate) mod activation;
pub(crate) mod conv;
pub(crate) mod custom;
mod dw3x3;
pub(crate) mod eigen_math;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod int16;
pub(crate) mod int8;
pub(crate) mod lstm;
pub(crate) mod lstm_hybrid;
pub(crate) mod lstm_int;
pub(crate) mod misc;
pub(crate) mod reduce;
pub(crate) mod resize;
pub(crate) mod rnn;
pub(crate) mod shape;
mod table;

pub(crate) use table::{Missing, Run, eval, eval_packed, lookup, missing, packs_weights};

use crate::fb::{self, ActivationFunctionType, BuiltinOptions, TensorType};
use crate::ir::{Operator, QuantParams};

use super::value::{Data, Value};

/// Why a kernel refused: bad data/shapes for this op (`Bad`), or a feature of the op
/// the interpreter does not implement (`Unsupported`).
#[derive(Debug)]
pub(crate) enum KErr {
    Bad(String),
    Unsupported(String),
}

pub(crate) type KResult<T> = Result<T, KErr>;

macro_rules! bad {
    ($($t:tt)*) => { return Err($crate::interp::kernels::KErr::Bad(format!($($t)*))) };
}
macro_rules! unsupported {
    ($($t:tt)*) => { return Err($crate::interp::kernels::KErr::Unsupported(format!($($t)*))) };
}
macro_rules! ensure {
    ($c:expr, $($t:tt)*) => { if !$c { $crate::interp::kernels::bad!($($t)*) } };
}
pub(crate) use {bad, ensure, unsupported};

/// What a kernel sees of its operator besides the input values.
pub(crate) struct Ctx<'a> {
    pub op: &'a Operator,
    /// Element type each output is computed in (float32 for quantized outputs, which the
    /// interpreter requantizes).
    pub out_types: Vec<TensorType>,
    /// Static shapes of the output tensors as the file states them (hints only).
    pub out_shapes: Vec<&'a [i32]>,
    /// Quantization parameters of the inputs and outputs (QUANTIZE/DEQUANTIZE read them).
    pub in_quant: Vec<Option<&'a QuantParams>>,
    pub out_quant: Vec<Option<&'a QuantParams>>,
    /// Quantization parameters of the operator's `intermediates` (an integer LSTM's).
    pub inter_quant: Vec<Option<&'a QuantParams>>,
    pub out_storage: Vec<TensorType>,
    /// The custom code of a CUSTOM op (`None` for builtins).
    pub custom_code: Option<&'a str>,
    /// Where a kernel that can folds the order keys of its first output, block by
    /// block while it writes it (`None` unless the interpreter asks for ranges).
    pub out_keys: Option<&'a crate::interp::keys::KeyAcc>,
    /// Float buffers the interpreter no longer needs, for outputs ([`Ctx::out_buffer`]).
    pub buffers: Option<&'a Buffers>,
}

/// Float buffers of values the interpreter no longer reads (returned when a value's
/// last reader has run), handed again to kernels that overwrite every element of
/// their output: a recycled buffer needs no zeroing and no fresh pages, which for a
/// convolution's output costs as much as a pass over it. At most [`Buffers::KEEP`]
/// are kept.
#[derive(Default)]
pub(crate) struct Buffers(std::sync::Mutex<Vec<Vec<f32>>>);

impl Buffers {
    /// Buffers kept at most.
    pub const KEEP: usize = 8;

    /// A vector of `len` values with arbitrary contents (the smallest kept buffer at
    /// least that long, shortened), or zeros when none fits.
    pub fn take(&self, len: usize) -> Vec<f32> {
        let Ok(mut kept) = self.0.lock() else {
            return vec![0f32; len];
        };
        // Models repeat their shapes sample after sample: an exact length first, else
        // the shortest at most twice as long (a shortened buffer stays short: the
        // largest ones are kept for the largest outputs).
        let best = kept.iter().position(|v| v.len() == len).or_else(|| {
            kept.iter()
                .enumerate()
                .filter(|(_, v)| v.len() > len && v.len() / 2 <= len)
                .min_by_key(|(_, v)| v.len())
                .map(|(i, _)| i)
        });
        match best {
            Some(i) => {
                let mut v = kept.swap_remove(i);
                v.truncate(len);
                v
            }
            None => vec![0f32; len],
        }
    }

    /// Keeps `v` for a later [`Buffers::take`] (dropped when [`Buffers::KEEP`] are
    /// kept and all are longer).
    pub fn give(&self, v: Vec<f32>) {
        let Ok(mut kept) = self.0.lock() else { return };
        if kept.len() < Self::KEEP {
            kept.push(v);
        } else if let Some((i, _)) = kept
            .iter()
            .enumerate()
            .filter(|(_, k)| k.len() < v.len())
            .min_by_key(|(_, k)| k.len())
        {
            // Full: the shortest kept buffer makes room for a longer one.
            kept[i] = v;
        }
    }
}

#[cfg(test)]
impl<'a> Ctx<'a> {
    /// A context for unit tests of the integer kernels: `op` with the given input and
    /// output parameters and one output stored as `out`.
    pub(crate) fn quantized_for_test(
        op: &'a Operator,
        in_q: &'a [QuantParams],
        out_q: &'a [QuantParams],
        out: TensorType,
    ) -> Self {
        Ctx {
            op,
            out_types: vec![out],
            out_shapes: vec![],
            in_quant: in_q.iter().map(Some).collect(),
            out_quant: out_q.iter().map(Some).collect(),
            inter_quant: vec![],
            out_storage: vec![],
            custom_code: None,
            out_keys: None,
            buffers: None,
        }
    }
}

impl Ctx<'_> {
    pub fn opts(&self) -> Option<&BuiltinOptions> {
        self.op.builtin_options.as_ref()
    }
    /// A vector of `len` values for an output the kernel overwrites entirely: a
    /// recycled buffer (arbitrary contents) when the interpreter has one, else zeros.
    pub fn out_buffer(&self, len: usize) -> Vec<f32> {
        match self.buffers {
            Some(b) => b.take(len),
            None => vec![0f32; len],
        }
    }

    pub fn out_type(&self, i: usize) -> TensorType {
        self.out_types
            .get(i)
            .copied()
            .unwrap_or(TensorType::Float32)
    }
}

/// Results of one op: its outputs, and new values for variable inputs it updates in
/// place (input position, value), e.g. an LSTM's state.
pub(crate) struct Outs {
    pub values: Vec<Value>,
    pub state: Vec<(usize, Value)>,
    /// Every value a variable input took inside the op (input position, values stacked
    /// on a new leading axis), e.g. an LSTM's cell state after each step: shown to
    /// observers before the final state so calibration ranges cover the whole sequence,
    /// never stored.
    pub trace: Vec<(usize, Value)>,
}

impl From<Vec<Value>> for Outs {
    fn from(values: Vec<Value>) -> Self {
        Outs {
            values,
            state: Vec::new(),
            trace: Vec::new(),
        }
    }
}

impl From<Value> for Outs {
    fn from(v: Value) -> Self {
        vec![v].into()
    }
}

/// The input values of one op, positions as in the operator (absent optional inputs
/// are `None`).
pub(crate) struct Ins<'a>(pub Vec<Option<&'a Value>>);

impl<'a> Ins<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Input `i`, which must be present.
    pub fn get(&self, i: usize) -> KResult<&'a Value> {
        match self.0.get(i) {
            Some(Some(v)) => Ok(v),
            Some(None) => bad!("input {i} is required but absent"),
            None => bad!("input {i} is required; the op has {} inputs", self.0.len()),
        }
    }
    /// Input `i` if present.
    pub fn opt(&self, i: usize) -> Option<&'a Value> {
        self.0.get(i).copied().flatten()
    }
    /// Input `i` as float32 data.
    pub fn f32(&self, i: usize) -> KResult<&'a [f32]> {
        let v = self.get(i)?;
        match &v.data {
            Data::F32(x) => Ok(x),
            d => unsupported!(
                "input {i} has type {}, expected FLOAT32",
                fb::dtype_name(d.dtype())
            ),
        }
    }
    /// Input `i` as a list of integers (shape, axis, paddings...).
    pub fn ints(&self, i: usize) -> KResult<Vec<i64>> {
        let v = self.get(i)?;
        match v.data.to_i64_vec() {
            Some(x) => Ok(x),
            None => bad!(
                "input {i} must hold integers, got {}",
                fb::dtype_name(v.dtype())
            ),
        }
    }
}

// ---- shared helpers -------------------------------------------------------------

/// Clamp bounds of a fused activation.
pub(crate) fn act_bounds(a: ActivationFunctionType) -> KResult<(f32, f32)> {
    use ActivationFunctionType as A;
    Ok(match a {
        A::None => (f32::NEG_INFINITY, f32::INFINITY),
        A::Relu => (0.0, f32::INFINITY),
        A::ReluN1To1 => (-1.0, 1.0),
        A::Relu6 => (0.0, 6.0),
        other => unsupported!("fused activation {other:?}"),
    })
}

/// Applies a fused activation in place.
pub(crate) fn apply_act(v: &mut [f32], a: ActivationFunctionType) -> KResult<()> {
    if a == ActivationFunctionType::None {
        return Ok(());
    }
    let (lo, hi) = act_bounds(a)?;
    for x in v {
        *x = x.max(lo).min(hi);
    }
    Ok(())
}

/// Resolves a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> KResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    ensure!(
        (0..r).contains(&a),
        "axis {axis} out of range for rank {rank}"
    );
    Ok(a as usize)
}

/// `f(i, chunk)` for each `size`-element chunk of `data` (the last may be shorter):
/// over the rayon pool when it has more than one thread, else in order on the calling
/// thread. A pool of one thread would only take the work from this thread and hand
/// the result back (two thread switches per call, ~7 % of a single-thread run of
/// MobileNetV2); every caller writes each chunk independently of the others, so the
/// result does not depend on the order.
pub(crate) fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    size: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    let size = size.max(1);
    if rayon::current_num_threads() <= 1 {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// NumPy broadcasting of two shapes.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bad!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

/// For each element of `out_shape`, the flat index into a tensor of `shape` broadcast
/// to it.
pub(crate) fn broadcast_index(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    if shape == out_shape {
        return (0..n).collect();
    }
    let r = out_shape.len();
    let pad = r - shape.len();
    let s = strides(shape);
    // Stride 0 along broadcast dimensions.
    let bs: Vec<usize> = (0..r)
        .map(|i| {
            if i < pad || shape[i - pad] == 1 {
                0
            } else {
                s[i - pad]
            }
        })
        .collect();
    let mut idx = Vec::with_capacity(n);
    let mut counter = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..n {
        idx.push(cur);
        for d in (0..r).rev() {
            counter[d] += 1;
            cur += bs[d];
            if counter[d] < out_shape[d] {
                break;
            }
            cur -= bs[d] * counter[d];
            counter[d] = 0;
        }
    }
    idx
}

/// Integer input `i` converted to non-negative sizes.
pub(crate) fn to_usize(v: &[i64], what: &str) -> KResult<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| KErr::Bad(format!("{what}: negative value {x}"))))
        .collect()
}

/// Checked element count of a shape (kernels must not allocate absurd outputs on a
/// hostile model): at most 2³⁰ elements (4 GiB of float32) per tensor.
pub(crate) fn checked_numel(shape: &[usize]) -> KResult<usize> {
    const LIMIT: usize = 1 << 30;
    let mut n: usize = 1;
    for &d in shape {
        n = match n.checked_mul(d) {
            Some(n) if n <= LIMIT => n,
            _ => bad!("shape {shape:?} has too many elements"),
        };
    }
    Ok(n)
}

/// Shorthand to build a value, checking the element count.
pub(crate) fn value(shape: Vec<usize>, data: Data) -> KResult<Value> {
    let n = data.len();
    match Value::new(shape, data) {
        Some(v) => Ok(v),
        None => Err(KErr::Bad(format!(
            "internal: {n} elements do not fit the shape"
        ))),
    }
}
