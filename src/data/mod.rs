//! Typed n-dimensional arrays and NumPy `.npy` / `.npz` files (through `npyz`).
//!
//! This is the exchange format of the command line (`run`, `calibrate`, `compare`) and of
//! the tests: arrays keyed by name, samples on the first axis.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{Error, Result};

/// The elements of an [`Array`].
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

/// A dense row-major array.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            ArrayData::F32($v) => $body,
            ArrayData::F64($v) => $body,
            ArrayData::I8($v) => $body,
            ArrayData::U8($v) => $body,
            ArrayData::I16($v) => $body,
            ArrayData::U16($v) => $body,
            ArrayData::I32($v) => $body,
            ArrayData::U32($v) => $body,
            ArrayData::I64($v) => $body,
            ArrayData::U64($v) => $body,
            ArrayData::Bool($v) => $body,
        }
    };
}

impl ArrayData {
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// NumPy's name of the element type (`float32`, `int8`, ...).
    pub fn dtype_name(&self) -> &'static str {
        match self {
            ArrayData::F32(_) => "float32",
            ArrayData::F64(_) => "float64",
            ArrayData::I8(_) => "int8",
            ArrayData::U8(_) => "uint8",
            ArrayData::I16(_) => "int16",
            ArrayData::U16(_) => "uint16",
            ArrayData::I32(_) => "int32",
            ArrayData::U32(_) => "uint32",
            ArrayData::I64(_) => "int64",
            ArrayData::U64(_) => "uint64",
            ArrayData::Bool(_) => "bool",
        }
    }

    /// Every element as `f64` (booleans as 0/1).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            ArrayData::Bool(v) => v.iter().map(|&b| b as u8 as f64).collect(),
            ArrayData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::F64(v) => v.clone(),
            ArrayData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::U16(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::U64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Every element as `f32` (booleans as 0/1).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            ArrayData::F32(v) => v.clone(),
            other => other.to_f64().into_iter().map(|x| x as f32).collect(),
        }
    }
}

impl Array {
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Array { shape, data }
    }

    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Array::new(shape, ArrayData::F32(data))
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// The shape, element kind and size, and NumPy type string of a `.npy` stream: C-ordered plain arrays only (a
/// Fortran-ordered or structured array is an error that says how to save it instead).
pub fn npy_layout<R: std::io::Read>(
    npy: &npyz::NpyFile<R>,
    what: &str,
) -> Result<(Vec<usize>, npyz::TypeChar, u64, String)> {
    if npy.order() == npyz::Order::Fortran {
        return Err(Error::Data(format!(
            "{what}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray(a)"
        )));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let npyz::DType::Plain(ts) = &dtype else {
        return Err(Error::Data(format!(
            "{what}: structured arrays are not supported (dtype {dtype:?})"
        )));
    };
    Ok((shape, ts.type_char(), ts.size_field(), ts.to_string()))
}

fn read_npy_file<R: std::io::Read>(npy: npyz::NpyFile<R>, what: &str) -> Result<Array> {
    let (shape, kind, size, ts) = npy_layout(&npy, what)?;
    let bad = |e: std::io::Error| Error::Data(format!("{what}: {e}"));
    use npyz::TypeChar as C;
    let data = match (kind, size) {
        (C::Float, 4) => ArrayData::F32(npy.into_vec().map_err(bad)?),
        (C::Float, 8) => ArrayData::F64(npy.into_vec().map_err(bad)?),
        // float16 has no array type of its own here: widened to float32 (exact).
        (C::Float, 2) => ArrayData::F32(
            npy.into_vec::<half::f16>()
                .map_err(bad)?
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        (C::Int, 1) => ArrayData::I8(npy.into_vec().map_err(bad)?),
        (C::Uint, 1) => ArrayData::U8(npy.into_vec().map_err(bad)?),
        (C::Int, 2) => ArrayData::I16(npy.into_vec().map_err(bad)?),
        (C::Uint, 2) => ArrayData::U16(npy.into_vec().map_err(bad)?),
        (C::Int, 4) => ArrayData::I32(npy.into_vec().map_err(bad)?),
        (C::Uint, 4) => ArrayData::U32(npy.into_vec().map_err(bad)?),
        (C::Int, 8) => ArrayData::I64(npy.into_vec().map_err(bad)?),
        (C::Uint, 8) => ArrayData::U64(npy.into_vec().map_err(bad)?),
        (C::Bool, 1) => ArrayData::Bool(npy.into_vec().map_err(bad)?),
        _ => {
            return Err(Error::Data(format!(
                "{what}: unsupported element type {}",
                ts
            )));
        }
    };
    Ok(Array { shape, data })
}

/// Reads a `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let f = BufReader::new(File::open(path).map_err(|e| Error::input(path, e))?);
    let npy = npyz::NpyFile::new(f)
        .map_err(|e| Error::Data(format!("{}: not a valid .npy file: {e}", path.display())))?;
    read_npy_file(npy, &path.display().to_string())
}

/// Reads every array of a `.npz` file, in the archive's order.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Array)>> {
    let path = path.as_ref();
    let f = BufReader::new(File::open(path).map_err(|e| Error::input(path, e))?);
    let mut z = npyz::npz::NpzArchive::new(f)
        .map_err(|e| Error::Data(format!("{}: not a valid .npz file: {e}", path.display())))?;
    let names: Vec<String> = z.array_names().map(String::from).collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let what = format!("{}[{name}]", path.display());
        let npy = z
            .by_name(&name)
            .map_err(|e| Error::Data(format!("{what}: {e}")))?
            .ok_or_else(|| Error::Internal(format!("{what}: listed but missing")))?;
        out.push((name, read_npy_file(npy, &what)?));
    }
    Ok(out)
}

/// Reads one array of a `.npz` file; `None` when the archive has no array `name`.
pub fn read_npz_member(path: impl AsRef<Path>, name: &str) -> Result<Option<Array>> {
    let path = path.as_ref();
    let f = BufReader::new(File::open(path).map_err(|e| Error::input(path, e))?);
    let mut z = npyz::npz::NpzArchive::new(f)
        .map_err(|e| Error::Data(format!("{}: not a valid .npz file: {e}", path.display())))?;
    let what = format!("{}[{name}]", path.display());
    match z
        .by_name(name)
        .map_err(|e| Error::Data(format!("{what}: {e}")))?
    {
        Some(npy) => Ok(Some(read_npy_file(npy, &what)?)),
        None => Ok(None),
    }
}

/// Writes arrays to a `.npz` file (uncompressed, like `np.savez`), in the given order.
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(String, Array)]) -> Result<()> {
    let path = path.as_ref();
    let mut z =
        npyz::npz::NpzWriter::new(BufWriter::new(File::create(path).map_err(io_err(path))?));
    for (name, a) in arrays {
        let shape: Vec<u64> = a.shape.iter().map(|&d| d as u64).collect();
        let opts = zip::write::FileOptions::default();
        each_variant!(&a.data, v => {
            let mut w = z
                .array(name, opts)
                .map_err(io_err(path))?
                .default_dtype()
                .shape(&shape)
                .begin_nd()
                .map_err(io_err(path))?;
            w.extend(v.iter().cloned()).map_err(io_err(path))?;
            w.finish().map_err(io_err(path))?;
        });
    }
    Ok(())
}

/// Writes one array to a `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, a: &Array) -> Result<()> {
    let path = path.as_ref();
    let shape: Vec<u64> = a.shape.iter().map(|&d| d as u64).collect();
    let f = BufWriter::new(File::create(path).map_err(io_err(path))?);
    each_variant!(&a.data, v => {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(f)
            .begin_nd()
            .map_err(io_err(path))?;
        w.extend(v.iter().cloned()).map_err(io_err(path))?;
        w.finish().map_err(io_err(path))?;
    });
    Ok(())
}
