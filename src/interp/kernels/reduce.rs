//! Reductions over axes (MEAN, SUM, REDUCE_MAX/MIN/PROD/ANY/ALL, keep_dims), ARG_MAX /
//! ARG_MIN and CUMSUM.

use crate::fb::{self, BuiltinOperator as B, BuiltinOptions as O, TensorType};

use super::{Ctx, Ins, KResult, bad, ensure, norm_axis, unsupported, value};
use crate::interp::value::{Data, Value};

/// The reduced axes, deduplicated and sorted.
fn axes(ins: &Ins, rank: usize) -> KResult<Vec<bool>> {
    let mut red = vec![false; rank];
    for a in ins.ints(1)? {
        red[norm_axis(a, rank)?] = true;
    }
    Ok(red)
}

/// The output shape with the reduced axes kept as 1, and how many input elements
/// reduce into each output element.
fn reduced_shape(shape: &[usize], red: &[bool]) -> (Vec<usize>, usize) {
    let out_full: Vec<usize> = shape
        .iter()
        .zip(red)
        .map(|(&s, &r)| if r { 1 } else { s })
        .collect();
    let count = shape
        .iter()
        .zip(red)
        .filter(|(_, r)| **r)
        .map(|(s, _)| *s)
        .product();
    (out_full, count)
}

/// For each input element, the output element it reduces into (`out_full`: from
/// [`reduced_shape`]). Built only where a loop needs it: for MEAN over 7×7×1280 it
/// cost more than the sums.
fn reduce_map(shape: &[usize], red: &[bool], out_full: &[usize]) -> Vec<usize> {
    let ost = super::strides(out_full);
    super::shape::build_index(shape, |c| {
        c.iter()
            .zip(red)
            .zip(&ost)
            .map(|((&c, &r), &s)| if r { 0 } else { c * s })
            .sum()
    })
}

/// When the reduced axes are one contiguous run (MEAN over H and W of NHWC): the
/// shape as `[outer, reduced, inner]` element counts.
fn contiguous_run(shape: &[usize], red: &[bool]) -> Option<[usize; 3]> {
    let first = red.iter().position(|&r| r)?;
    let last = red.iter().rposition(|&r| r)?;
    if red[first..=last].iter().any(|&r| !r) {
        return None;
    }
    let p = |s: &[usize]| s.iter().product::<usize>();
    Some([
        p(&shape[..first]),
        p(&shape[first..=last]),
        p(&shape[last + 1..]),
    ])
}

/// Float SUM/MEAN's sums over `[outer, reduced, inner]`: each output accumulates its
/// elements in index order, as [`reduce`]'s general loop does (the same bits: its twin
/// in the tests), with no per-element index.
fn sum_run(v: &[f32], [outer, red, inner]: [usize; 3]) -> Vec<f32> {
    let mut acc = vec![0f32; outer * inner];
    if inner == 0 {
        return acc;
    }
    for (o, a) in acc.chunks_exact_mut(inner).enumerate() {
        for r in 0..red {
            let x = &v[(o * red + r) * inner..][..inner];
            for (a, &x) in a.iter_mut().zip(x) {
                *a += x;
            }
        }
    }
    acc
}

pub(crate) fn reduce(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let keep = matches!(ctx.opts(), Some(O::ReducerOptions(o)) if o.keep_dims);
    let red = axes(ins, x.shape.len())?;
    let (full, count) = reduced_shape(&x.shape, &red);
    let index = || reduce_map(&x.shape, &red, &full);
    let n_out: usize = full.iter().product();
    let shape: Vec<usize> = if keep {
        full.clone()
    } else {
        x.shape
            .iter()
            .zip(&red)
            .filter(|(_, r)| !**r)
            .map(|(s, _)| *s)
            .collect()
    };
    let data = match &x.data {
        Data::F32(v)
            if matches!(b, B::Mean | B::Sum) && contiguous_run(&x.shape, &red).is_some() =>
        {
            let run = contiguous_run(&x.shape, &red).unwrap_or_default();
            let mut acc = sum_run(v, run);
            if b == B::Mean {
                let c = count as f32;
                acc.iter_mut().for_each(|a| *a /= c);
            }
            Data::F32(acc)
        }
        Data::F32(v) => {
            let (init, f): (f32, fn(f32, f32) -> f32) = match b {
                B::Mean | B::Sum => (0.0, |a, x| a + x),
                B::ReduceMax => (f32::NEG_INFINITY, f32::max),
                B::ReduceMin => (f32::INFINITY, f32::min),
                B::ReduceProd => (1.0, |a, x| a * x),
                other => unsupported!("{} on FLOAT32", fb::op_name(other)),
            };
            let mut acc = vec![init; n_out];
            for (&o, &xv) in index().iter().zip(v) {
                acc[o] = f(acc[o], xv);
            }
            if b == B::Mean {
                let c = count as f32;
                acc.iter_mut().for_each(|a| *a /= c);
            }
            Data::F32(acc)
        }
        Data::Bool(v) => {
            let any = match b {
                B::ReduceAny => true,
                B::ReduceAll => false,
                other => unsupported!("{} on BOOL", fb::op_name(other)),
            };
            let mut acc = vec![!any; n_out];
            for (&o, &xv) in index().iter().zip(v) {
                acc[o] = if any { acc[o] || xv } else { acc[o] && xv };
            }
            Data::Bool(acc)
        }
        d => {
            let Some(v) = d.to_i64_vec() else {
                unsupported!("{} on {}", fb::op_name(b), fb::dtype_name(d.dtype()));
            };
            let (init, f): (i64, fn(i64, i64) -> i64) = match b {
                B::Mean | B::Sum => (0, |a, x| a.wrapping_add(x)),
                B::ReduceMax => (i64::MIN, i64::max),
                B::ReduceMin => (i64::MAX, i64::min),
                B::ReduceProd => (1, |a, x| a.wrapping_mul(x)),
                other => unsupported!("{} on integers", fb::op_name(other)),
            };
            let mut acc = vec![init; n_out];
            for (&o, &xv) in index().iter().zip(&v) {
                acc[o] = f(acc[o], xv);
            }
            if b == B::Mean {
                let c = count.max(1) as i64;
                acc.iter_mut().for_each(|a| *a /= c);
            }
            let vals = acc;
            match d {
                Data::I8(_) => Data::I8(vals.iter().map(|&x| x as i8).collect()),
                Data::U8(_) => Data::U8(vals.iter().map(|&x| x as u8).collect()),
                Data::I16(_) => Data::I16(vals.iter().map(|&x| x as i16).collect()),
                Data::I32(_) => Data::I32(vals.iter().map(|&x| x as i32).collect()),
                Data::U32(_) => Data::U32(vals.iter().map(|&x| x as u32).collect()),
                _ => Data::I64(vals),
            }
        }
    };
    value(shape, data)
}

/// ARG_MAX / ARG_MIN along the axis input; the first index wins ties.
pub(crate) fn arg_min_max(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let a = ins.ints(1)?;
    let &[axis] = a.as_slice() else {
        bad!("axis must be one value, got {a:?}");
    };
    let ax = norm_axis(axis, x.shape.len())?;
    let v = x.data.to_f64_vec();
    let outer: usize = x.shape[..ax].iter().product();
    let dim = x.shape[ax];
    let inner: usize = x.shape[ax + 1..].iter().product();
    ensure!(dim > 0, "cannot take the arg over an empty dimension");
    let mut res = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0usize;
            let mut bv = v[o * dim * inner + i];
            for d in 1..dim {
                let cv = v[(o * dim + d) * inner + i];
                let better = if b == B::ArgMax { cv > bv } else { cv < bv };
                if better {
                    best = d;
                    bv = cv;
                }
            }
            res.push(best as i64);
        }
    }
    let mut shape = x.shape.clone();
    shape.remove(ax);
    let data = match ctx.out_type(0) {
        TensorType::Int32 => Data::I32(res.into_iter().map(|x| x as i32).collect()),
        _ => Data::I64(res),
    };
    value(shape, data)
}

/// CUMSUM along the axis input, optionally exclusive and/or reversed.
pub(crate) fn cumsum(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let a = ins.ints(1)?;
    let &[axis] = a.as_slice() else {
        bad!("axis must be one value");
    };
    let ax = norm_axis(axis, x.shape.len())?;
    let (exclusive, reverse) = match ctx.opts() {
        Some(O::CumsumOptions(o)) => (o.exclusive, o.reverse),
        _ => (false, false),
    };
    let outer: usize = x.shape[..ax].iter().product();
    let dim = x.shape[ax];
    let inner: usize = x.shape[ax + 1..].iter().product();
    macro_rules! scan {
        ($v:expr, $zero:expr, $add:expr) => {{
            let add = $add;
            let v = $v;
            let mut out = vec![$zero; v.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut acc = $zero;
                    for s in 0..dim {
                        let d = if reverse { dim - 1 - s } else { s };
                        let k = (o * dim + d) * inner + i;
                        if exclusive {
                            out[k] = acc;
                            acc = add(acc, v[k]);
                        } else {
                            acc = add(acc, v[k]);
                            out[k] = acc;
                        }
                    }
                }
            }
            out
        }};
    }
    let data = match &x.data {
        Data::F32(v) => Data::F32(scan!(v, 0f32, |a: f32, b: f32| a + b)),
        Data::I32(v) => Data::I32(scan!(v, 0i32, i32::wrapping_add)),
        Data::I64(v) => Data::I64(scan!(v, 0i64, i64::wrapping_add)),
        d => unsupported!("CUMSUM on {}", fb::dtype_name(d.dtype())),
    };
    value(x.shape.clone(), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-wise sums give the bits of the per-element index loop.
    #[test]
    fn run_sums_match_the_indexed_loop() {
        let shape = [2usize, 5, 7, 3];
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.731).sin() * 1e3).collect();
        for red in [
            [false, true, true, false],
            [true, false, false, false],
            [false, false, false, true],
            [true, true, true, true],
            [false, true, false, false],
        ] {
            let (full, _) = reduced_shape(&shape, &red);
            let idx = reduce_map(&shape, &red, &full);
            let mut slow = vec![0f32; full.iter().product()];
            for (&o, &x) in idx.iter().zip(&v) {
                slow[o] += x;
            }
            let run = contiguous_run(&shape, &red).unwrap();
            let fast = sum_run(&v, run);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "{red:?}");
        }
        assert_eq!(contiguous_run(&shape, &[true, false, true, false]), None);
    }
}
