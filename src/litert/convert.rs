//! Element types the runtime wrapper supports, and the moves between [`Array`]s and the
//! raw little-endian bytes of LiteRT's tensor buffers (copied element by element, so no
//! alignment or bit-pattern assumption is made about the runtime's memory).

use std::ffi::c_int;

use super::ffi::element;
use crate::data::{Array, ArrayData};
use crate::error::{Error, Result};
use crate::fb::TensorType;

/// Element type of a model input or output, as LiteRT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    I8,
    U8,
    I16,
    I32,
    I64,
    Bool,
    /// A type this wrapper cannot exchange with [`Array`]s (float16, string, ...): the
    /// LiteRT element type code.
    Other(c_int),
}

impl ElementType {
    pub(crate) fn from_code(code: c_int) -> Self {
        match code {
            element::FLOAT32 => ElementType::F32,
            element::INT8 => ElementType::I8,
            element::UINT8 => ElementType::U8,
            element::INT16 => ElementType::I16,
            element::INT32 => ElementType::I32,
            element::INT64 => ElementType::I64,
            element::BOOL => ElementType::Bool,
            other => ElementType::Other(other),
        }
    }

    /// The model-file type of the same name, if the wrapper supports it.
    pub fn from_tensor_type(t: TensorType) -> Option<Self> {
        Some(match t {
            TensorType::Float32 => ElementType::F32,
            TensorType::Int8 => ElementType::I8,
            TensorType::Uint8 => ElementType::U8,
            TensorType::Int16 => ElementType::I16,
            TensorType::Int32 => ElementType::I32,
            TensorType::Int64 => ElementType::I64,
            TensorType::Bool => ElementType::Bool,
            _ => return None,
        })
    }

    /// NumPy's name (`float32`, `int8`, ...), as [`ArrayData::dtype_name`] spells it.
    pub fn name(&self) -> String {
        match self {
            ElementType::F32 => "float32".into(),
            ElementType::I8 => "int8".into(),
            ElementType::U8 => "uint8".into(),
            ElementType::I16 => "int16".into(),
            ElementType::I32 => "int32".into(),
            ElementType::I64 => "int64".into(),
            ElementType::Bool => "bool".into(),
            ElementType::Other(c) => element::name(*c),
        }
    }

    /// Bytes per element; `None` for unsupported types.
    pub fn size(&self) -> Option<usize> {
        Some(match self {
            ElementType::I8 | ElementType::U8 | ElementType::Bool => 1,
            ElementType::I16 => 2,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::I64 => 8,
            ElementType::Other(_) => return None,
        })
    }

    /// True when `data` holds elements of this type.
    pub fn matches(&self, data: &ArrayData) -> bool {
        matches!(
            (self, data),
            (ElementType::F32, ArrayData::F32(_))
                | (ElementType::I8, ArrayData::I8(_))
                | (ElementType::U8, ArrayData::U8(_))
                | (ElementType::I16, ArrayData::I16(_))
                | (ElementType::I32, ArrayData::I32(_))
                | (ElementType::I64, ArrayData::I64(_))
                | (ElementType::Bool, ArrayData::Bool(_))
        )
    }
}

impl std::fmt::Display for ElementType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The little-endian bytes of an array's elements (booleans as 0/1 bytes).
pub(crate) fn array_bytes(data: &ArrayData) -> Result<Vec<u8>> {
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    Ok(match data {
        ArrayData::F32(v) => le(v, f32::to_le_bytes),
        ArrayData::I8(v) => le(v, i8::to_le_bytes),
        ArrayData::U8(v) => v.clone(),
        ArrayData::I16(v) => le(v, i16::to_le_bytes),
        ArrayData::I32(v) => le(v, i32::to_le_bytes),
        ArrayData::I64(v) => le(v, i64::to_le_bytes),
        ArrayData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        other => {
            return Err(Error::Data(format!(
                "{} arrays cannot be passed to LiteRT (supported: float32, int8, uint8, int16, \
                 int32, int64, bool)",
                other.dtype_name()
            )));
        }
    })
}

/// Builds an array of `elem` with `shape` from little-endian bytes. The byte count must
/// be exactly the elements times the element size.
pub(crate) fn array_from_bytes(
    elem: ElementType,
    shape: Vec<usize>,
    bytes: &[u8],
) -> Result<Array> {
    let count: usize = shape.iter().product();
    let size = elem
        .size()
        .ok_or_else(|| Error::Internal(format!("no byte size for {elem}")))?;
    if count.checked_mul(size) != Some(bytes.len()) {
        return Err(Error::Internal(format!(
            "LiteRT buffer of {} bytes does not hold {count} {elem} elements of shape {shape:?}",
            bytes.len()
        )));
    }
    fn conv<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let data = match elem {
        ElementType::F32 => ArrayData::F32(conv(bytes, f32::from_le_bytes)),
        ElementType::I8 => ArrayData::I8(conv(bytes, i8::from_le_bytes)),
        ElementType::U8 => ArrayData::U8(bytes.to_vec()),
        ElementType::I16 => ArrayData::I16(conv(bytes, i16::from_le_bytes)),
        ElementType::I32 => ArrayData::I32(conv(bytes, i32::from_le_bytes)),
        ElementType::I64 => ArrayData::I64(conv(bytes, i64::from_le_bytes)),
        ElementType::Bool => ArrayData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        ElementType::Other(_) => {
            return Err(Error::Internal(format!("cannot convert {elem}")));
        }
    };
    Ok(Array { shape, data })
}

/// Sample `s` of an array whose first axis counts samples: shape `shape[1..]`.
pub(crate) fn sample(a: &Array, s: usize) -> Result<Array> {
    let (&n, rest) = a
        .shape
        .split_first()
        .ok_or_else(|| Error::Data("a scalar array has no samples axis".into()))?;
    if s >= n {
        return Err(Error::Internal(format!("sample {s} of {n}")));
    }
    let per: usize = rest.iter().product();
    let range = s * per..(s + 1) * per;
    if range.end > a.data.len() {
        return Err(Error::Data(format!(
            "array of shape {:?} holds {} elements",
            a.shape,
            a.data.len()
        )));
    }
    macro_rules! cut {
        ($($v:ident),*) => {
            match &a.data {
                $(ArrayData::$v(v) => ArrayData::$v(v[range].to_vec()),)*
            }
        };
    }
    let data = cut!(F32, F64, I8, U8, I16, U16, I32, U32, I64, U64, Bool);
    Ok(Array {
        shape: rest.to_vec(),
        data,
    })
}

/// Stacks arrays of one shape and type on a new first axis.
pub(crate) fn stack(parts: Vec<Array>, what: &str) -> Result<Array> {
    let Some(first) = parts.first() else {
        return Err(Error::Internal(format!("{what}: nothing to stack")));
    };
    let shape0 = first.shape.clone();
    let mut shape = vec![parts.len()];
    shape.extend(&shape0);
    for (i, p) in parts.iter().enumerate() {
        if p.shape != shape0 {
            return Err(Error::Data(format!(
                "{what}: sample {i} has shape {:?}, sample 0 has {:?}; samples of different \
                 shapes cannot be stacked",
                p.shape, shape0
            )));
        }
    }
    macro_rules! cat {
        ($($v:ident),*) => {
            match &first.data {
                $(ArrayData::$v(_) => {
                    let mut out = Vec::new();
                    for p in &parts {
                        match &p.data {
                            ArrayData::$v(v) => out.extend_from_slice(v),
                            other => {
                                return Err(Error::Internal(format!(
                                    "{what}: mixed types {} and {}",
                                    first.data.dtype_name(),
                                    other.dtype_name()
                                )))
                            }
                        }
                    }
                    ArrayData::$v(out)
                })*
            }
        };
    }
    let data = cat!(F32, F64, I8, U8, I16, U16, I32, U32, I64, U64, Bool);
    Ok(Array { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let arrays = [
            ArrayData::F32(vec![1.5, -0.0, f32::MIN_POSITIVE]),
            ArrayData::I8(vec![-128, 0, 127]),
            ArrayData::U8(vec![0, 1, 255]),
            ArrayData::I16(vec![-32768, 5, 32767]),
            ArrayData::I32(vec![i32::MIN, 0, i32::MAX]),
            ArrayData::I64(vec![i64::MIN, 7, i64::MAX]),
            ArrayData::Bool(vec![true, false, true]),
        ];
        let elems = [
            ElementType::F32,
            ElementType::I8,
            ElementType::U8,
            ElementType::I16,
            ElementType::I32,
            ElementType::I64,
            ElementType::Bool,
        ];
        for (d, e) in arrays.into_iter().zip(elems) {
            assert!(e.matches(&d));
            let b = array_bytes(&d).unwrap();
            let back = array_from_bytes(e, vec![3], &b).unwrap();
            assert_eq!(back.data, d);
        }
        assert!(array_from_bytes(ElementType::F32, vec![2], &[0u8; 7]).is_err());
        assert!(array_bytes(&ArrayData::F64(vec![1.0])).is_err());
    }

    #[test]
    fn sample_and_stack() {
        let a = Array::new(vec![3, 2], ArrayData::I32(vec![0, 1, 2, 3, 4, 5]));
        let parts: Vec<Array> = (0..3).map(|s| sample(&a, s).unwrap()).collect();
        assert_eq!(parts[1].data, ArrayData::I32(vec![2, 3]));
        assert_eq!(stack(parts, "x").unwrap(), a);
        assert!(sample(&a, 3).is_err());
        let bad = vec![
            Array::new(vec![1], ArrayData::I32(vec![0])),
            Array::new(vec![2], ArrayData::I32(vec![0, 1])),
        ];
        assert!(stack(bad, "x").unwrap_err().to_string().contains("shape"));
    }
}
