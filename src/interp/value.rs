//! [`Value`]: a typed, dense, row-major tensor as the interpreter passes it between ops,
//! plus conversions from constant buffers and to/from [`crate::data::Array`], and the
//! affine (de)quantization arithmetic the interpreter's quantized simulation uses.

use half::f16;

use crate::data::{Array, ArrayData};
use crate::fb::TensorType;
use crate::ir::QuantParams;

/// The elements of a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// Applies `$body` to the vector inside any [`Data`] variant.
macro_rules! each_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::F32($v) => $body,
            Data::F16($v) => $body,
            Data::F64($v) => $body,
            Data::I8($v) => $body,
            Data::U8($v) => $body,
            Data::I16($v) => $body,
            Data::I32($v) => $body,
            Data::U32($v) => $body,
            Data::I64($v) => $body,
            Data::Bool($v) => $body,
        }
    };
}
/// Like `each_data!`, rebuilding the same variant from the body's vector.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::F32($v) => Data::F32($body),
            Data::F16($v) => Data::F16($body),
            Data::F64($v) => Data::F64($body),
            Data::I8($v) => Data::I8($body),
            Data::U8($v) => Data::U8($body),
            Data::I16($v) => Data::I16($body),
            Data::I32($v) => Data::I32($body),
            Data::U32($v) => Data::U32($body),
            Data::I64($v) => Data::I64($body),
            Data::Bool($v) => Data::Bool($body),
        }
    };
}
#[allow(unused_imports)]
pub(crate) use {each_data, map_data};

impl Data {
    pub fn len(&self) -> usize {
        each_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the elements take in memory.
    pub fn byte_len(&self) -> usize {
        each_data!(self, v => std::mem::size_of_val(v.as_slice()))
    }

    /// The TFLite element type this data holds.
    pub fn dtype(&self) -> TensorType {
        match self {
            Data::F32(_) => TensorType::Float32,
            Data::F16(_) => TensorType::Float16,
            Data::F64(_) => TensorType::Float64,
            Data::I8(_) => TensorType::Int8,
            Data::U8(_) => TensorType::Uint8,
            Data::I16(_) => TensorType::Int16,
            Data::I32(_) => TensorType::Int32,
            Data::U32(_) => TensorType::Uint32,
            Data::I64(_) => TensorType::Int64,
            Data::Bool(_) => TensorType::Bool,
        }
    }

    /// Every element as `f64` (booleans 0/1), for integer-valued index/shape inputs and
    /// generic numeric code.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            Data::F64(v) => v.clone(),
            Data::I8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Integer elements as `i64` (`None` for floating point and bool data).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
            _ => return None,
        })
    }

    /// A vector of `n` zeros of type `t`; `None` for types the interpreter does not hold.
    pub fn zeros(t: TensorType, n: usize) -> Option<Data> {
        Some(match t {
            TensorType::Float32 => Data::F32(vec![0.0; n]),
            TensorType::Float16 => Data::F16(vec![f16::ZERO; n]),
            TensorType::Float64 => Data::F64(vec![0.0; n]),
            TensorType::Int8 => Data::I8(vec![0; n]),
            TensorType::Uint8 => Data::U8(vec![0; n]),
            TensorType::Int16 => Data::I16(vec![0; n]),
            TensorType::Int32 => Data::I32(vec![0; n]),
            TensorType::Uint32 => Data::U32(vec![0; n]),
            TensorType::Int64 => Data::I64(vec![0; n]),
            TensorType::Bool => Data::Bool(vec![false; n]),
            _ => return None,
        })
    }

    /// Decodes little-endian buffer bytes of type `t`; `None` for unsupported types or a
    /// length that is not a multiple of the element size.
    pub fn from_le_bytes(t: TensorType, b: &[u8]) -> Option<Data> {
        fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
            if !b.len().is_multiple_of(N) {
                return None;
            }
            Some(
                b.chunks_exact(N)
                    .map(|c| {
                        let mut a = [0u8; N];
                        a.copy_from_slice(c);
                        f(a)
                    })
                    .collect(),
            )
        }
        Some(match t {
            TensorType::Float32 => Data::F32(chunks(b, f32::from_le_bytes)?),
            TensorType::Float16 => Data::F16(chunks(b, f16::from_le_bytes)?),
            TensorType::Float64 => Data::F64(chunks(b, f64::from_le_bytes)?),
            TensorType::Int8 => Data::I8(b.iter().map(|&x| x as i8).collect()),
            TensorType::Uint8 => Data::U8(b.to_vec()),
            TensorType::Int16 => Data::I16(chunks(b, i16::from_le_bytes)?),
            TensorType::Int32 => Data::I32(chunks(b, i32::from_le_bytes)?),
            TensorType::Uint32 => Data::U32(chunks(b, u32::from_le_bytes)?),
            TensorType::Int64 => Data::I64(chunks(b, i64::from_le_bytes)?),
            TensorType::Bool => Data::Bool(b.iter().map(|&x| x != 0).collect()),
            _ => return None,
        })
    }

    /// Gathers elements by index (used by every data-movement kernel).
    pub fn gather(&self, idx: &[usize]) -> Data {
        map_data!(self, v => idx.iter().map(|&i| v[i]).collect())
    }
}

/// A tensor value: element data and shape (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Value {
    /// A value; `None` if the shape's element count differs from the data length.
    pub fn new(shape: Vec<usize>, data: Data) -> Option<Value> {
        (shape.iter().product::<usize>() == data.len()).then_some(Value { shape, data })
    }

    /// An `f32` value (the caller guarantees the element count).
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Value {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Value {
            shape,
            data: Data::F32(data),
        }
    }

    pub fn scalar_f32(x: f32) -> Value {
        Value::f32(vec![], vec![x])
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dtype(&self) -> TensorType {
        self.data.dtype()
    }

    /// The `f32` elements, if this is a float32 value.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Converts to the exchange array type (float16 becomes float32: NumPy files of the
    /// CLI carry no half type).
    pub fn to_array(&self) -> Array {
        let data = match &self.data {
            Data::F32(v) => ArrayData::F32(v.clone()),
            Data::F16(v) => ArrayData::F32(v.iter().map(|x| x.to_f32()).collect()),
            Data::F64(v) => ArrayData::F64(v.clone()),
            Data::I8(v) => ArrayData::I8(v.clone()),
            Data::U8(v) => ArrayData::U8(v.clone()),
            Data::I16(v) => ArrayData::I16(v.clone()),
            Data::I32(v) => ArrayData::I32(v.clone()),
            Data::U32(v) => ArrayData::U32(v.clone()),
            Data::I64(v) => ArrayData::I64(v.clone()),
            Data::Bool(v) => ArrayData::Bool(v.clone()),
        };
        Array {
            shape: self.shape.clone(),
            data,
        }
    }

    /// Converts from the exchange array type; `None` for element types TFLite has no
    /// tensor type the interpreter holds for (uint16, uint64).
    pub fn from_array(a: &Array) -> Option<Value> {
        let data = match &a.data {
            ArrayData::F32(v) => Data::F32(v.clone()),
            ArrayData::F64(v) => Data::F64(v.clone()),
            ArrayData::I8(v) => Data::I8(v.clone()),
            ArrayData::U8(v) => Data::U8(v.clone()),
            ArrayData::I16(v) => Data::I16(v.clone()),
            ArrayData::I32(v) => Data::I32(v.clone()),
            ArrayData::U32(v) => Data::U32(v.clone()),
            ArrayData::I64(v) => Data::I64(v.clone()),
            ArrayData::Bool(v) => Data::Bool(v.clone()),
            ArrayData::U16(_) | ArrayData::U64(_) => return None,
        };
        Value::new(a.shape.clone(), data)
    }

    /// Minimum and maximum of the finite-or-not float elements (NaN ignored); `None` for
    /// non-float data or when there is no non-NaN element.
    pub fn min_max_f32(&self) -> Option<(f32, f32)> {
        let v = self.as_f32()?;
        let mut it = v.iter().copied().filter(|x| !x.is_nan());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
    }
}

impl From<Array> for Value {
    /// Panics only for uint16/uint64 arrays; use [`Value::from_array`] for fallible input.
    fn from(a: Array) -> Value {
        Value::from_array(&a).expect("array element type without a TFLite tensor type")
    }
}

impl From<&Value> for Array {
    fn from(v: &Value) -> Array {
        v.to_array()
    }
}

/// The integer range of a quantized type, `None` for types that are not quantized
/// storage types.
pub fn quant_range(t: TensorType) -> Option<(i64, i64)> {
    Some(match t {
        TensorType::Int8 => (-128, 127),
        TensorType::Uint8 => (0, 255),
        TensorType::Int16 => (-32768, 32767),
        TensorType::Int32 => (i32::MIN as i64, i32::MAX as i64),
        TensorType::Int64 => (i64::MIN, i64::MAX),
        _ => return None,
    })
}

/// Per-element (scale, zero point) lookup for per-tensor or per-axis parameters over a
/// tensor of `shape`.
struct ParamIndex<'a> {
    q: &'a QuantParams,
    /// Elements per step of the quantized axis (product of the later dimensions).
    inner: usize,
    channels: usize,
}

impl<'a> ParamIndex<'a> {
    fn new(q: &'a QuantParams, shape: &[usize]) -> Option<Self> {
        if q.scale.is_empty() {
            return None;
        }
        if q.scale.len() == 1 {
            return Some(ParamIndex {
                q,
                inner: 1,
                channels: 1,
            });
        }
        let axis = usize::try_from(q.quantized_dimension).ok()?;
        let channels = *shape.get(axis)?;
        if channels != q.scale.len() {
            return None;
        }
        Some(ParamIndex {
            q,
            inner: shape[axis + 1..].iter().product(),
            channels,
        })
    }

    /// True when every zero point lies in `[lo, hi]`.
    fn zero_points_within(&self, lo: i64, hi: i64) -> bool {
        (0..self.channels).all(|c| (lo..=hi).contains(&self.at(c * self.inner).1))
    }

    #[inline]
    fn at(&self, i: usize) -> (f32, i64) {
        let c = if self.channels == 1 {
            0
        } else {
            (i / self.inner) % self.channels
        };
        (
            self.q.scale[c],
            self.q.zero_point.get(c).copied().unwrap_or(0),
        )
    }
}

/// `real = (q - zero_point) * scale` for every element of an integer value (per-tensor
/// or per-axis). `None` if the data is not integer or the parameters do not fit the
/// shape.
///
/// int8, uint8 and int16 data take a fast path (no widening copy, no per-element
/// parameter lookup, one f32 multiply: `q - zero_point` is exact in f32 for them, and
/// the product of two f32 rounded once equals the f64 product narrowed, so the result
/// is bit-identical); [`dequantize_reference`] is its twin in the tests.
pub fn dequantize(v: &Value, q: &QuantParams) -> Option<Value> {
    let p = ParamIndex::new(q, &v.shape)?;
    let out = match &v.data {
        Data::I8(x) => dequantize_blocks(x, &p),
        Data::U8(x) => dequantize_blocks(x, &p),
        Data::I16(x) => dequantize_blocks(x, &p),
        _ => return dequantize_reference(v, q),
    };
    Some(Value::f32(v.shape.clone(), out))
}

/// The fast path of [`dequantize`]: runs of `inner` elements share one channel's
/// parameters (the whole tensor for per-tensor parameters).
fn dequantize_blocks<T: Copy + Into<i32>>(x: &[T], p: &ParamIndex) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    let run = if p.channels == 1 {
        x.len().max(1)
    } else {
        p.inner.max(1)
    };
    for (b, chunk) in x.chunks(run).enumerate() {
        let (s, z) = p.at(b * run);
        // |q - z| < 2^24 for 8- and 16-bit data with a zero point of the same type; a
        // zero point outside that (a malformed file) goes through the f64 formula.
        if z.unsigned_abs() < 1 << 23 {
            let z = z as i32;
            out.extend(chunk.iter().map(|&q| s * (q.into() - z) as f32));
        } else {
            out.extend(
                chunk
                    .iter()
                    .map(|&q| (s as f64 * (q.into() as i64 - z) as f64) as f32),
            );
        }
    }
    out
}

/// The reference twin of [`dequantize`]: every element widened to i64, its parameters
/// looked up by index, the product taken in f64 and narrowed.
pub fn dequantize_reference(v: &Value, q: &QuantParams) -> Option<Value> {
    let p = ParamIndex::new(q, &v.shape)?;
    let ints = v.data.to_i64_vec()?;
    let out = ints
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let (s, z) = p.at(i);
            // The runtime multiplies in the scale's precision, then narrows to float.
            (s as f64 * (x - z) as f64) as f32
        })
        .collect();
    Some(Value::f32(v.shape.clone(), out))
}

/// Rounds half away from zero (C's `round`), as TFLite's quantizer does.
#[inline]
pub fn round_half_away(x: f32) -> f32 {
    x.round()
}

/// `q = clamp(round(real / scale) + zero_point)` into the range of `t` (round half away
/// from zero, as TFLite's reference QUANTIZE). `None` if `t` is no quantized storage type,
/// the value is not float32 or the parameters do not fit.
///
/// int8, uint8 and int16 targets take a fast path: runs of elements sharing one
/// channel's parameters, the clamp done on the rounded f32 against the range shifted
/// by the zero point (`clamp(r + z, lo, hi) = clamp(r, lo - z, hi - z) + z` for
/// integers; both bounds are exact in f32), no i64 per element. The result is
/// identical to [`quantize_reference`], its twin in the tests.
pub fn quantize(v: &Value, q: &QuantParams, t: TensorType) -> Option<Value> {
    let p = ParamIndex::new(q, &v.shape)?;
    let (lo, hi) = quant_range(t)?;
    let x = v.as_f32()?;
    let fast = matches!(t, TensorType::Int8 | TensorType::Uint8 | TensorType::Int16)
        && p.zero_points_within(lo, hi);
    if !fast {
        return quantize_reference(v, q, t);
    }
    let data = match t {
        TensorType::Int8 => Data::I8(quantize_blocks(x, &p, lo, hi)),
        TensorType::Uint8 => Data::U8(quantize_blocks(x, &p, lo, hi)),
        _ => Data::I16(quantize_blocks(x, &p, lo, hi)),
    };
    Some(Value {
        shape: v.shape.clone(),
        data,
    })
}

/// [`quantize`], also overwriting the float32 `v` with the dequantized result
/// (`(q - zero_point) * scale`, the bits [`dequantize`] gives for the integers) in the
/// same pass, when both take their fast paths (int8, uint8 and int16 targets, zero
/// points in range): then `(integers, true)`. Otherwise `(quantize(v), false)` and `v`
/// is unchanged. The simulation of a quantized model reads every requantized tensor
/// back as reals; this spares each reader a dequantizing pass and a new buffer.
pub fn quantize_keeping_reals(
    v: &mut Value,
    q: &QuantParams,
    t: TensorType,
) -> Option<(Value, bool)> {
    let p = ParamIndex::new(q, &v.shape)?;
    let (lo, hi) = quant_range(t)?;
    let fast = matches!(t, TensorType::Int8 | TensorType::Uint8 | TensorType::Int16)
        && p.zero_points_within(lo, hi);
    let shape = v.shape.clone();
    let x = match &mut v.data {
        Data::F32(x) if fast => x,
        _ => return quantize(v, q, t).map(|ints| (ints, false)),
    };
    let data = match t {
        TensorType::Int8 => Data::I8(fake_quantize_blocks(x, &p, lo, hi)),
        TensorType::Uint8 => Data::U8(fake_quantize_blocks(x, &p, lo, hi)),
        _ => Data::I16(fake_quantize_blocks(x, &p, lo, hi)),
    };
    Some((Value { shape, data }, true))
}

/// [`quantize_blocks`] that also leaves the dequantized values in `x`.
fn fake_quantize_blocks<T: Narrow>(x: &mut [f32], p: &ParamIndex, lo: i64, hi: i64) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    let run = QuantRun::len(p, x.len());
    for (b, chunk) in x.chunks_mut(run).enumerate() {
        fake_quantize_run(chunk, &QuantRun::at(p, b * run, lo, hi), &mut out);
    }
    out
}

/// [`quantize_run`] that also writes each element's dequantized value back, dispatched
/// the same way.
fn fake_quantize_run<T: Narrow>(xs: &mut [f32], q: &QuantRun, out: &mut Vec<T>) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::interp::simd::{SimdLevel, simd_level};
        match simd_level() {
            // SAFETY: AVX-512F was detected at run time.
            SimdLevel::Avx512 => return unsafe { fake_quantize_run_avx512(xs, q, out) },
            // SAFETY: AVX2 was detected at run time.
            SimdLevel::Avx2 => return unsafe { fake_quantize_run_avx2(xs, q, out) },
            SimdLevel::Baseline => {}
        }
    }
    fake_quantize_run_body(xs, q, out)
}

/// [`fake_quantize_run_body`] compiled with AVX-512F enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fake_quantize_run_avx512<T: Narrow>(xs: &mut [f32], q: &QuantRun, out: &mut Vec<T>) {
    fake_quantize_run_body(xs, q, out)
}

/// [`fake_quantize_run_body`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fake_quantize_run_avx2<T: Narrow>(xs: &mut [f32], q: &QuantRun, out: &mut Vec<T>) {
    fake_quantize_run_body(xs, q, out)
}

#[inline(always)]
fn fake_quantize_run_body<T: Narrow>(xs: &mut [f32], q: &QuantRun, out: &mut Vec<T>) {
    out.extend(xs.iter_mut().map(|x| {
        // The integer as in `quantize_run_body`.
        let r = round_half_away_exact(*x / q.s);
        let r = if r.is_nan() {
            0.0
        } else {
            r.max(q.lo).min(q.hi)
        };
        let int = (r + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32;
        // `dequantize_blocks`: `s * (stored - z) as f32`, and `stored - z` is `int`.
        *x = q.s * int as f32;
        T::narrow(int + q.z)
    }));
}

/// The fast path of [`quantize`] for 8- and 16-bit targets (zero points in range).
fn quantize_blocks<T: Narrow>(x: &[f32], p: &ParamIndex, lo: i64, hi: i64) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    let run = QuantRun::len(p, x.len());
    for (b, chunk) in x.chunks(run).enumerate() {
        quantize_run(chunk, &QuantRun::at(p, b * run, lo, hi), &mut out);
    }
    out
}

/// The stored integer types of the fast quantize path: a clamped `i32` narrowed.
trait Narrow: Copy {
    fn narrow(v: i32) -> Self;
}

impl Narrow for i8 {
    #[inline(always)]
    fn narrow(v: i32) -> Self {
        v as i8
    }
}

impl Narrow for u8 {
    #[inline(always)]
    fn narrow(v: i32) -> Self {
        v as u8
    }
}

impl Narrow for i16 {
    #[inline(always)]
    fn narrow(v: i32) -> Self {
        v as i16
    }
}

/// One run of elements sharing (scale, zero point): the clamp bounds already shifted
/// by the zero point.
struct QuantRun {
    s: f32,
    z: i32,
    lo: f32,
    hi: f32,
}

impl QuantRun {
    /// Elements per run in a tensor of `n`: all of them with one scale, else one
    /// channel's inner block.
    fn len(p: &ParamIndex, n: usize) -> usize {
        if p.channels == 1 {
            n.max(1)
        } else {
            p.inner.max(1)
        }
    }

    /// The run starting at element `start`, clamped to `[lo, hi]` (stored integers).
    fn at(p: &ParamIndex, start: usize, lo: i64, hi: i64) -> QuantRun {
        let (s, z) = p.at(start);
        QuantRun {
            s,
            z: z as i32,
            lo: (lo - z) as f32,
            hi: (hi - z) as f32,
        }
    }
}

/// Appends the quantized `xs` to `out`, built for AVX-512 and AVX2 too (where rounding
/// is one vector instruction instead of a call to `roundf`) and chosen at run time;
/// every build gives the same integers.
fn quantize_run<T: Narrow>(xs: &[f32], q: &QuantRun, out: &mut Vec<T>) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::interp::simd::{SimdLevel, simd_level};
        match simd_level() {
            // SAFETY: AVX-512F was detected at run time.
            SimdLevel::Avx512 => return unsafe { quantize_run_avx512(xs, q, out) },
            // SAFETY: AVX2 was detected at run time.
            SimdLevel::Avx2 => return unsafe { quantize_run_avx2(xs, q, out) },
            SimdLevel::Baseline => {}
        }
    }
    quantize_run_body(xs, q, out)
}

/// [`quantize_run_body`] compiled with AVX-512F enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_run_avx512<T: Narrow>(xs: &[f32], q: &QuantRun, out: &mut Vec<T>) {
    quantize_run_body(xs, q, out)
}

/// [`quantize_run_body`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_run_avx2<T: Narrow>(xs: &[f32], q: &QuantRun, out: &mut Vec<T>) {
    quantize_run_body(xs, q, out)
}

/// 1.5 · 2^23: an f32 whose last mantissa bit is worth 1 (see [`quantize_run_body`]).
const MAGIC: f32 = 12_582_912.0;

#[inline(always)]
fn quantize_run_body<T: Narrow>(xs: &[f32], q: &QuantRun, out: &mut Vec<T>) {
    out.extend(xs.iter().map(|&r| {
        let r = round_half_away_exact(r / q.s);
        // NaN maps to the zero point; infinities saturate through the clamp.
        let r = if r.is_nan() {
            0.0
        } else {
            r.max(q.lo).min(q.hi)
        };
        // `r` is an integer within ±2^17 here: adding 1.5 · 2^23 puts it in the
        // mantissa exactly, read back without a (scalar, saturating) float → int cast.
        let int = (r + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32;
        T::narrow(int + q.z)
    }));
}

/// [`round_half_away`] without a call to `roundf`: truncate, then step away from zero
/// when the dropped fraction (exact: `x - trunc(x)` loses no bits) is at least one
/// half. Equal to `f32::round` for every input (infinities and NaN pass through).
#[inline(always)]
fn round_half_away_exact(x: f32) -> f32 {
    let t = x.trunc();
    if (x - t).abs() >= 0.5 {
        t + 1f32.copysign(x)
    } else {
        t
    }
}

/// The reference twin of [`quantize`]: parameters looked up per element, the rounded
/// value widened to i64, shifted and clamped there.
pub fn quantize_reference(v: &Value, q: &QuantParams, t: TensorType) -> Option<Value> {
    let p = ParamIndex::new(q, &v.shape)?;
    let (lo, hi) = quant_range(t)?;
    let x = v.as_f32()?;
    let qi = |i: usize, r: f32| -> i64 {
        let (s, z) = p.at(i);
        let r = round_half_away(r / s);
        // NaN maps to the zero point; infinities saturate through the clamp.
        let r = if r.is_nan() { 0 } else { r as i64 };
        r.saturating_add(z).clamp(lo, hi)
    };
    let it = x.iter().enumerate().map(|(i, &r)| qi(i, r));
    let data = match t {
        TensorType::Int8 => Data::I8(it.map(|x| x as i8).collect()),
        TensorType::Uint8 => Data::U8(it.map(|x| x as u8).collect()),
        TensorType::Int16 => Data::I16(it.map(|x| x as i16).collect()),
        TensorType::Int32 => Data::I32(it.map(|x| x as i32).collect()),
        TensorType::Int64 => Data::I64(it.collect()),
        _ => return None,
    };
    Some(Value {
        shape: v.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_away_and_clamps() {
        let q = QuantParams::per_tensor(0.5, -1);
        let v = Value::f32(vec![5], vec![0.25, -0.25, 1.0, 1000.0, -1000.0]);
        let out = quantize(&v, &q, TensorType::Int8).unwrap();
        assert_eq!(out.data, Data::I8(vec![0, -2, 1, 127, -128]));
        let back = dequantize(&out, &q).unwrap();
        assert_eq!(back.as_f32().unwrap(), &[0.5, -0.5, 1.0, 64.0, -63.5]);
    }

    #[test]
    fn per_axis_dequantize_uses_the_channel_of_each_element() {
        let q = QuantParams::per_axis(vec![1.0, 10.0], vec![0, 0], 1);
        let v = Value::new(vec![2, 2], Data::I8(vec![1, 1, 2, 2])).unwrap();
        let out = dequantize(&v, &q).unwrap();
        assert_eq!(out.as_f32().unwrap(), &[1.0, 10.0, 2.0, 20.0]);
    }

    /// The call-free rounding equals `f32::round` on ties, near-ties, large values,
    /// infinities and NaN.
    #[test]
    fn exact_rounding_is_round_half_away() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut xs = vec![
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999997,
            -0.49999997,
            8388607.5,
            8388608.0,
            16777217.0,
            1e30,
            -1e30,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        xs.extend((0..10_000).map(|_| rng.random_range(-300.0f32..300.0)));
        xs.extend((0..1000).map(|i| i as f32 * 0.5 - 250.0));
        for x in xs {
            assert_eq!(
                round_half_away_exact(x).to_bits(),
                x.round().to_bits(),
                "{x}"
            );
        }
        assert!(round_half_away_exact(f32::NAN).is_nan());
    }

    /// The fast (de)quantization paths give exactly what their reference twins give:
    /// per-tensor and per-axis parameters, every 8/16-bit type, values around the
    /// rounding ties and the clamps, infinities and NaN.
    #[test]
    fn fast_quantize_and_dequantize_match_their_reference_twins() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let shape = vec![3, 4, 5];
        let n = 60;
        let mut x: Vec<f32> = (0..n).map(|_| rng.random_range(-300.0..300.0)).collect();
        x[0] = f32::NAN;
        x[1] = f32::INFINITY;
        x[2] = f32::NEG_INFINITY;
        x[3] = 2.5;
        x[4] = -2.5;
        x[5] = 1e30;
        x[6] = -0.0;
        let v = Value::f32(shape.clone(), x);
        let params = [
            QuantParams::per_tensor(0.5, -1),
            QuantParams::per_tensor(0.01, 3),
            QuantParams::per_tensor(1.7, 0),
            QuantParams::per_axis(vec![0.5, 1.0, 0.25, 3.0], vec![0, 1, -2, 5], 1),
            QuantParams::per_axis(vec![0.1, 2.0, 0.3, 0.7, 1.5], vec![0; 5], 2),
        ];
        let bits =
            |v: &Value| -> Vec<u32> { v.as_f32().unwrap().iter().map(|x| x.to_bits()).collect() };
        let mut kept_reals = 0;
        for q in &params {
            for t in [TensorType::Int8, TensorType::Uint8, TensorType::Int16] {
                let fast = quantize(&v, q, t).unwrap();
                let slow = quantize_reference(&v, q, t).unwrap();
                assert_eq!(fast, slow, "quantize {t:?} {q:?}");
                let back = dequantize(&fast, q).unwrap();
                let back_ref = dequantize_reference(&fast, q).unwrap();
                assert_eq!(bits(&back), bits(&back_ref), "dequantize {t:?} {q:?}");
                // Quantizing in one pass with the reals left behind: the same integers,
                // and the reals those integers dequantize to, bit for bit.
                let mut w = v.clone();
                let (ints, kept) = quantize_keeping_reals(&mut w, q, t).unwrap();
                assert_eq!(ints, slow, "quantize_keeping_reals {t:?} {q:?}");
                if kept {
                    kept_reals += 1;
                    assert_eq!(bits(&w), bits(&back_ref), "reals {t:?} {q:?}");
                } else {
                    assert_eq!(bits(&w), bits(&v), "untouched {t:?} {q:?}");
                }
            }
        }
        // Every case but uint8 with a negative zero point (the reference path).
        assert_eq!(kept_reals, 13);
        // A zero point outside the type's range (a malformed file) takes the reference.
        let q = QuantParams::per_tensor(0.5, 300);
        assert_eq!(
            quantize(&v, &q, TensorType::Int8),
            quantize_reference(&v, &q, TensorType::Int8)
        );
        let mut w = v.clone();
        let (ints, kept) = quantize_keeping_reals(&mut w, &q, TensorType::Int8).unwrap();
        assert!(!kept);
        assert_eq!(Some(ints), quantize_reference(&v, &q, TensorType::Int8));
        assert_eq!(bits(&w), bits(&v));
    }
}
