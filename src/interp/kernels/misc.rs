//! Small kernels: CAST, SHAPE, RANGE, FILL, ZEROS_LIKE/ONES_LIKE, QUANTIZE,
//! DEQUANTIZE (int8/uint8/int16 with per-tensor or per-axis parameters, float16) and
//! FAKE_QUANT.

use crate::fb::{self, BuiltinOptions as O, TensorType};

use super::{Ctx, Ins, KResult, bad, checked_numel, ensure, to_usize, unsupported, value};
use crate::interp::value::{self as val, Data, Value};

/// Converts data to `t` the way C++ `static_cast` does (float → int truncates).
pub(crate) fn cast_data(d: &Data, t: TensorType) -> KResult<Data> {
    if d.dtype() == t {
        return Ok(d.clone());
    }
    let f = d.to_f64_vec();
    let ints = d.to_i64_vec();
    let as_i64 = |x: &f64| -> i64 { if x.is_nan() { 0 } else { *x as i64 } };
    let i: Vec<i64> = match &ints {
        Some(v) => v.clone(),
        None => f.iter().map(as_i64).collect(),
    };
    Ok(match t {
        TensorType::Float32 => Data::F32(f.iter().map(|&x| x as f32).collect()),
        TensorType::Float64 => Data::F64(f),
        TensorType::Float16 => Data::F16(f.iter().map(|&x| half::f16::from_f64(x)).collect()),
        TensorType::Bool => Data::Bool(f.iter().map(|&x| x != 0.0).collect()),
        TensorType::Int8 => Data::I8(i.iter().map(|&x| x as i8).collect()),
        TensorType::Uint8 => Data::U8(i.iter().map(|&x| x as u8).collect()),
        TensorType::Int16 => Data::I16(i.iter().map(|&x| x as i16).collect()),
        TensorType::Int32 => Data::I32(i.iter().map(|&x| x as i32).collect()),
        TensorType::Uint32 => Data::U32(i.iter().map(|&x| x as u32).collect()),
        TensorType::Int64 => Data::I64(i),
        other => unsupported!("CAST to {}", fb::dtype_name(other)),
    })
}

pub(crate) fn cast(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    value(x.shape.clone(), cast_data(&x.data, ctx.out_type(0))?)
}

/// SHAPE as int32 or int64 (the output tensor's type).
pub(crate) fn shape_of(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let dims: Vec<i64> = x.shape.iter().map(|&d| d as i64).collect();
    let data = match ctx.out_type(0) {
        TensorType::Int64 => Data::I64(dims),
        _ => Data::I32(dims.iter().map(|&d| d as i32).collect()),
    };
    value(vec![x.shape.len()], data)
}

/// RANGE(start, limit, delta), int or float.
pub(crate) fn range(ins: &Ins) -> KResult<Value> {
    let (s, l, d) = (ins.get(0)?, ins.get(1)?, ins.get(2)?);
    ensure!(
        s.len() == 1 && l.len() == 1 && d.len() == 1,
        "start, limit and delta must be scalars"
    );
    let (a, b, c) = (
        s.data.to_f64_vec()[0],
        l.data.to_f64_vec()[0],
        d.data.to_f64_vec()[0],
    );
    ensure!(c != 0.0, "delta must not be 0");
    ensure!(
        (c > 0.0 && b >= a) || (c < 0.0 && b <= a),
        "range {a}..{b} by {c} is empty in the wrong direction"
    );
    let n = match s.data {
        Data::I32(_) | Data::I64(_) => ((b - a).abs() / c.abs()).ceil() as usize,
        _ => ((b - a) / c).abs().ceil() as usize,
    };
    checked_numel(&[n])?;
    let data = match s.data {
        Data::I32(_) => Data::I32((0..n).map(|i| (a + i as f64 * c) as i32).collect()),
        Data::I64(_) => Data::I64((0..n).map(|i| (a + i as f64 * c) as i64).collect()),
        Data::F32(_) => {
            let (a, c) = (a as f32, c as f32);
            Data::F32((0..n).map(|i| a + i as f32 * c).collect())
        }
        _ => unsupported!("RANGE on {}", fb::dtype_name(s.dtype())),
    };
    value(vec![n], data)
}

/// FILL(dims, value).
pub(crate) fn fill(ins: &Ins) -> KResult<Value> {
    let shape = to_usize(&ins.ints(0)?, "dims")?;
    let v = ins.get(1)?;
    ensure!(v.len() == 1, "value must be a scalar");
    let n = checked_numel(&shape)?;
    value(shape, v.data.gather(&vec![0; n]))
}

/// ZEROS_LIKE (ONES_LIKE is no TFLite builtin: TF lowers it to SHAPE + BROADCAST_TO).
pub(crate) fn zeros_like(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let zero = Data::zeros(x.dtype(), x.len()).ok_or_else(|| {
        super::KErr::Unsupported(format!("ZEROS_LIKE of {}", fb::dtype_name(x.dtype())))
    })?;
    value(x.shape.clone(), zero)
}

/// DEQUANTIZE: float16 → float32, or integers with the input's parameters → float32.
pub(crate) fn dequantize(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    match &x.data {
        Data::F16(v) => value(
            x.shape.clone(),
            Data::F32(v.iter().map(|h| h.to_f32()).collect()),
        ),
        Data::F32(_) => Ok(x.clone()),
        _ => {
            let Some(q) = ctx.in_quant.first().copied().flatten() else {
                bad!("integer input without quantization parameters");
            };
            val::dequantize(x, q).ok_or_else(|| {
                super::KErr::Bad(format!(
                    "cannot dequantize {} {:?} with {} scales",
                    fb::dtype_name(x.dtype()),
                    x.shape,
                    q.scale.len()
                ))
            })
        }
    }
}

/// QUANTIZE: float32 → the output's integer type and parameters (round half away from
/// zero, clamp), or integer → integer requantization through float.
pub(crate) fn quantize(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let Some(oq) = ctx.out_quant.first().copied().flatten() else {
        bad!("output has no quantization parameters");
    };
    let t = ctx.out_storage.first().copied().unwrap_or(TensorType::Int8);
    if let Some(v) = super::int16::requantize(ctx, x, t)? {
        return Ok(v);
    }
    let real = match &x.data {
        Data::F32(_) => x.clone(),
        Data::F16(v) => Value::f32(x.shape.clone(), v.iter().map(|h| h.to_f32()).collect()),
        _ => {
            let Some(iq) = ctx.in_quant.first().copied().flatten() else {
                bad!("integer input without quantization parameters");
            };
            val::dequantize(x, iq)
                .ok_or_else(|| super::KErr::Bad("input parameters do not fit its shape".into()))?
        }
    };
    val::quantize(&real, oq, t).ok_or_else(|| {
        super::KErr::Bad(format!(
            "cannot quantize to {} with {} scales",
            fb::dtype_name(t),
            oq.scale.len()
        ))
    })
}

/// FAKE_QUANT: TensorFlow's nudged min/max fake quantization.
pub(crate) fn fake_quant(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let Some(O::FakeQuantOptions(o)) = ctx.opts() else {
        bad!("missing FakeQuantOptions");
    };
    let x = ins.f32(0)?;
    ensure!(
        (2..=16).contains(&o.num_bits) && o.min <= o.max,
        "num_bits {} / range [{}, {}] invalid",
        o.num_bits,
        o.min,
        o.max
    );
    let qmin = if o.narrow_range { 1.0f32 } else { 0.0 };
    let qmax = ((1u32 << o.num_bits) - 1) as f32;
    let scale = (o.max - o.min) / (qmax - qmin);
    let (nmin, nmax) = if scale == 0.0 {
        (0.0, 0.0)
    } else {
        let zp_from_min = qmin - o.min / scale;
        let zp = if zp_from_min < qmin {
            qmin
        } else if zp_from_min > qmax {
            qmax
        } else {
            zp_from_min.round()
        };
        ((qmin - zp) * scale, (qmax - zp) * scale)
    };
    let out = x
        .iter()
        .map(|&v| {
            if scale == 0.0 {
                return 0.0;
            }
            let c = v.clamp(nmin, nmax);
            ((c - nmin) / scale + 0.5).floor() * scale + nmin
        })
        .collect();
    Ok(Value::f32(ins.get(0)?.shape.clone(), out))
}
