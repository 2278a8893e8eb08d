//! Data-movement kernels, type-generic: each computes, for every output element, the
//! flat index of the input element it copies (`Data::gather`). RESHAPE, SQUEEZE,
//! EXPAND_DIMS, TRANSPOSE, CONCATENATION, SPLIT(_V), SLICE, STRIDED_SLICE, PAD(V2),
//! MIRROR_PAD, GATHER(_ND), PACK, UNPACK, TILE, BROADCAST_TO, REVERSE_V2,
//! EMBEDDING_LOOKUP.

use crate::fb::{self, BuiltinOperator as B, BuiltinOptions as O, MirrorPadMode};

use super::elementwise::concat_data;
use super::{
    Ctx, Ins, KResult, apply_act, bad, broadcast_index, broadcast_shapes, checked_numel, ensure,
    norm_axis, strides, to_usize, value,
};
use crate::interp::value::{Data, Value};

/// Visits every coordinate of `shape` in row-major order, collecting `f(coord)`.
pub(crate) fn build_index(shape: &[usize], mut f: impl FnMut(&[usize]) -> usize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let mut c = vec![0usize; shape.len()];
    for _ in 0..n {
        out.push(f(&c));
        for d in (0..shape.len()).rev() {
            c[d] += 1;
            if c[d] < shape[d] {
                break;
            }
            c[d] = 0;
        }
    }
    out
}

#[cfg_attr(not(test), allow(dead_code))]
fn flat(coord: &[usize], strides: &[usize]) -> usize {
    coord.iter().zip(strides).map(|(a, b)| a * b).sum()
}

/// RESHAPE: the shape input (1-D) or the `new_shape` option; one dimension may be -1.
pub(crate) fn reshape(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let spec: Vec<i64> = match ins.opt(1) {
        Some(s) if s.shape.len() == 1 => ins.ints(1)?,
        _ => match ctx.opts() {
            Some(O::ReshapeOptions(o)) if o.new_shape.is_some() => {
                o.new_shape.iter().flatten().map(|&d| d as i64).collect()
            }
            _ => ctx
                .out_shapes
                .first()
                .map(|s| s.iter().map(|&d| d as i64).collect())
                .unwrap_or_default(),
        },
    };
    let shape = resolve_shape(&spec, x.len())?;
    value(shape, x.data.clone())
}

/// Resolves a shape with at most one -1 against an element count.
pub(crate) fn resolve_shape(spec: &[i64], n: usize) -> KResult<Vec<usize>> {
    let mut unknown = None;
    let mut known = 1usize;
    let mut out = Vec::with_capacity(spec.len());
    for (i, &d) in spec.iter().enumerate() {
        if d == -1 {
            ensure!(unknown.is_none(), "shape {spec:?} has more than one -1");
            unknown = Some(i);
            out.push(0);
        } else {
            ensure!(d >= 0, "shape {spec:?} has a negative dimension");
            known = known.saturating_mul(d as usize);
            out.push(d as usize);
        }
    }
    if let Some(i) = unknown {
        ensure!(
            known > 0 && n.is_multiple_of(known),
            "cannot reshape {n} elements to {spec:?}"
        );
        out[i] = n / known;
    } else {
        ensure!(known == n, "cannot reshape {n} elements to {spec:?}");
    }
    Ok(out)
}

/// SQUEEZE: drops the listed size-1 dimensions (all of them when none is listed).
pub(crate) fn squeeze(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let dims: Vec<i32> = match ctx.opts() {
        Some(O::SqueezeOptions(o)) => o.squeeze_dims.clone().unwrap_or_default(),
        _ => Vec::new(),
    };
    let r = x.shape.len();
    let mut drop = vec![false; r];
    if dims.is_empty() {
        for (d, &s) in x.shape.iter().enumerate() {
            drop[d] = s == 1;
        }
    } else {
        for &d in &dims {
            let a = norm_axis(d as i64, r)?;
            ensure!(
                x.shape[a] == 1,
                "cannot squeeze dimension {a} of {:?}",
                x.shape
            );
            drop[a] = true;
        }
    }
    let shape = x
        .shape
        .iter()
        .zip(&drop)
        .filter(|(_, d)| !**d)
        .map(|(s, _)| *s)
        .collect();
    value(shape, x.data.clone())
}

/// EXPAND_DIMS: inserts a 1 at the axis input (negative counts from rank + 1).
pub(crate) fn expand_dims(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let a = ins.ints(1)?;
    let &[axis] = a.as_slice() else {
        bad!("axis must be one value, got {a:?}");
    };
    let r = x.shape.len() as i64;
    let axis = if axis < 0 { axis + r + 1 } else { axis };
    ensure!(
        (0..=r).contains(&axis),
        "axis {axis} out of range for rank {r}"
    );
    let mut shape = x.shape.clone();
    shape.insert(axis as usize, 1);
    value(shape, x.data.clone())
}

/// TRANSPOSE by the permutation input.
pub(crate) fn transpose(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let perm = ins.ints(1)?;
    let r = x.shape.len();
    ensure!(perm.len() == r, "permutation {perm:?} for rank {r}");
    let perm: Vec<usize> = perm
        .iter()
        .map(|&p| norm_axis(p, r))
        .collect::<KResult<_>>()?;
    let mut seen = vec![false; r];
    for &p in &perm {
        ensure!(!seen[p], "permutation {perm:?} repeats an axis");
        seen[p] = true;
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let s = strides(&x.shape);
    let ps: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let idx = strided_index(&shape, &ps);
    value(shape, x.data.gather(&idx))
}

/// The flat source index of every element of a row-major `shape` whose axis d steps
/// `strides[d]` in the source: `build_index(shape, |c| flat(c, strides))` (its twin in
/// the tests) with the offset carried from element to element instead of recomputed,
/// the last axis a tight loop.
fn strided_index(shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let Some((&inner, outer)) = shape.split_last() else {
        out.push(0);
        return out;
    };
    if n == 0 {
        return out;
    }
    let step = strides[outer.len()];
    let mut c = vec![0usize; outer.len()];
    let mut base = 0usize;
    loop {
        out.extend((0..inner).map(|j| base + j * step));
        // Next outer coordinate (odometer), carrying the offset.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            c[d] += 1;
            base += strides[d];
            if c[d] < outer[d] {
                break;
            }
            base -= strides[d] * outer[d];
            c[d] = 0;
        }
    }
}

/// CONCATENATION along the option's axis, with a fused activation.
pub(crate) fn concat(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (axis, act) = match ctx.opts() {
        Some(O::ConcatenationOptions(o)) => (o.axis, o.fused_activation_function),
        _ => (0, fb::ActivationFunctionType::None),
    };
    let parts: Vec<&Value> = (0..ins.len()).map(|i| ins.get(i)).collect::<KResult<_>>()?;
    let Some(first) = parts.first() else {
        bad!("no inputs");
    };
    let r = first.shape.len();
    let a = norm_axis(axis as i64, r)?;
    let mut total = 0;
    for p in &parts {
        ensure!(
            p.shape.len() == r
                && p.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(d, (x, y))| d == a || x == y),
            "input shapes {:?} and {:?} do not concatenate along axis {a}",
            first.shape,
            p.shape
        );
        total += p.shape[a];
    }
    let outer: usize = first.shape[..a].iter().product();
    let inner: usize = first.shape[a + 1..].iter().product();
    // Flat index into the concatenation of all parts' data.
    let mut idx = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        let mut base = 0;
        for p in &parts {
            let blk = p.shape[a] * inner;
            idx.extend(base + o * blk..base + (o + 1) * blk);
            base += p.len();
        }
    }
    let all = concat_data(&parts.iter().map(|p| &p.data).collect::<Vec<_>>())?;
    let mut shape = first.shape.clone();
    shape[a] = total;
    let mut v = value(shape, all.gather(&idx))?;
    if let Data::F32(d) = &mut v.data {
        apply_act(d, act)?;
    }
    Ok(v)
}

/// Slices `x` along `axis` into pieces of the given sizes.
fn split_sizes(x: &Value, a: usize, sizes: &[usize]) -> KResult<Vec<Value>> {
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let dim = x.shape[a];
    let mut start = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &s in sizes {
        let mut idx = Vec::with_capacity(outer * s * inner);
        for o in 0..outer {
            let base = (o * dim + start) * inner;
            idx.extend(base..base + s * inner);
        }
        let mut shape = x.shape.clone();
        shape[a] = s;
        outs.push(value(shape, x.data.gather(&idx))?);
        start += s;
    }
    Ok(outs)
}

/// SPLIT (inputs axis, value) and SPLIT_V (inputs value, size_splits, axis).
pub(crate) fn split(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Vec<Value>> {
    let n_out = ctx.out_types.len();
    let (x, axis) = if b == B::Split {
        (ins.get(1)?, ins.ints(0)?)
    } else {
        (ins.get(0)?, ins.ints(2)?)
    };
    let &[axis] = axis.as_slice() else {
        bad!("axis must be one value");
    };
    let a = norm_axis(axis, x.shape.len())?;
    let dim = x.shape[a];
    let sizes: Vec<usize> = if b == B::Split {
        ensure!(
            n_out > 0 && dim % n_out == 0,
            "dimension {dim} does not split into {n_out}"
        );
        vec![dim / n_out; n_out]
    } else {
        let spec = ins.ints(1)?;
        ensure!(
            spec.len() == n_out,
            "{} sizes for {n_out} outputs",
            spec.len()
        );
        let known: i64 = spec.iter().filter(|&&s| s >= 0).sum();
        let fill = dim as i64 - known;
        let mut unknown = 0;
        let s: Vec<i64> = spec
            .iter()
            .map(|&s| {
                if s == -1 {
                    unknown += 1;
                    fill
                } else {
                    s
                }
            })
            .collect();
        ensure!(
            unknown <= 1 && s.iter().all(|&x| x >= 0) && s.iter().sum::<i64>() == dim as i64,
            "sizes {spec:?} do not split dimension {dim}"
        );
        s.iter().map(|&x| x as usize).collect()
    };
    split_sizes(x, a, &sizes)
}

/// SLICE: begin and size (-1 = to the end).
pub(crate) fn slice(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let (begin, size) = (ins.ints(1)?, ins.ints(2)?);
    let r = x.shape.len();
    ensure!(
        begin.len() == r && size.len() == r,
        "begin {begin:?} / size {size:?} for rank {r}"
    );
    let mut shape = Vec::with_capacity(r);
    let mut b0 = Vec::with_capacity(r);
    for d in 0..r {
        let dim = x.shape[d] as i64;
        let b = begin[d];
        let s = if size[d] == -1 { dim - b } else { size[d] };
        ensure!(
            b >= 0 && s >= 0 && b + s <= dim,
            "slice begin {b} size {s} outside dimension {d} of {:?}",
            x.shape
        );
        shape.push(s as usize);
        b0.push(b as usize);
    }
    let st = strides(&x.shape);
    let idx = build_index(&shape, |c| {
        c.iter()
            .zip(&b0)
            .zip(&st)
            .map(|((c, b), s)| (c + b) * s)
            .sum()
    });
    value(shape, x.data.gather(&idx))
}

/// STRIDED_SLICE's dense spec.
struct DenseSpec {
    /// Which begin/end/strides entry (if any) addresses each input dimension.
    dense: Vec<Option<usize>>,
    /// The output layout: `Some(d)` = input dimension d unless shrunk, `None` = a new
    /// axis.
    layout: Vec<Option<usize>>,
}

/// The dense spec of `k` begin/end/strides entries on an input of rank `r`.
fn strided_layout(o: &fb::StridedSliceOptions, k: usize, r: usize) -> KResult<DenseSpec> {
    let bit = |m: i32, i: usize| (m >> i) & 1 == 1;
    let ellipsis = (0..k).find(|&i| bit(o.ellipsis_mask, i));
    ensure!(
        (0..k).filter(|&i| bit(o.ellipsis_mask, i)).count() <= 1,
        "more than one ellipsis in ellipsis_mask {}",
        o.ellipsis_mask
    );
    let named = (0..k)
        .filter(|&i| !bit(o.new_axis_mask, i) && Some(i) != ellipsis)
        .count();
    ensure!(named <= r, "{named} sliced dimensions for rank {r}");
    let mut dense: Vec<Option<usize>> = vec![None; r];
    let mut layout: Vec<Option<usize>> = Vec::with_capacity(r + k);
    let mut d = 0;
    for i in 0..k {
        if Some(i) == ellipsis {
            // The ellipsis covers the dimensions the later named entries do not.
            let later = (i + 1..k).filter(|&j| !bit(o.new_axis_mask, j)).count();
            let stop = r - later;
            while d < stop {
                layout.push(Some(d));
                d += 1;
            }
        } else if bit(o.new_axis_mask, i) {
            layout.push(None);
        } else {
            dense[d] = Some(i);
            layout.push(Some(d));
            d += 1;
        }
    }
    while d < r {
        layout.push(Some(d));
        d += 1;
    }
    Ok(DenseSpec { dense, layout })
}

/// STRIDED_SLICE with TF's full semantics: begin/end/shrink-axis masks, negative
/// strides, `offset`, an ellipsis (expands to the dimensions not otherwise named) and
/// new axes (size-1 dimensions inserted into the output).
pub(crate) fn strided_slice(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let (begin, end, stride) = (ins.ints(1)?, ins.ints(2)?, ins.ints(3)?);
    let Some(O::StridedSliceOptions(o)) = ctx.opts() else {
        bad!("missing StridedSliceOptions");
    };
    let r = x.shape.len();
    let k = begin.len();
    ensure!(
        end.len() == k && stride.len() == k && k <= 32,
        "begin/end/strides lengths {}/{}/{}",
        k,
        end.len(),
        stride.len()
    );
    let bit = |m: i32, i: usize| (m >> i) & 1 == 1;
    let DenseSpec { dense, layout } = strided_layout(o, k, r)?;
    let mut starts = vec![0i64; r];
    let mut steps = vec![1i64; r];
    let mut full_shape = x.shape.clone();
    let mut shrunk = vec![false; r];
    for d in 0..r {
        let Some(i) = dense[d] else { continue };
        let dim = x.shape[d] as i64;
        let s = stride[i];
        ensure!(s != 0, "stride 0 in dimension {d}");
        let norm = |v: i64| if v < 0 { v + dim } else { v };
        if bit(o.shrink_axis_mask, i) {
            let b0 = norm(begin[i]);
            ensure!(
                (0..dim).contains(&b0),
                "shrink index {} out of range for dimension {d} of {:?}",
                begin[i],
                x.shape
            );
            starts[d] = b0;
            full_shape[d] = 1;
            shrunk[d] = true;
            continue;
        }
        let (lo, hi) = if s > 0 { (0, dim) } else { (-1, dim - 1) };
        let b = if bit(o.begin_mask, i) {
            if s > 0 { 0 } else { dim - 1 }
        } else {
            norm(begin[i]).clamp(lo, hi)
        };
        let e = if bit(o.end_mask, i) {
            if s > 0 { dim } else { -1 }
        } else if o.offset {
            (b + end[i]).clamp(lo, hi)
        } else {
            norm(end[i]).clamp(lo, hi)
        };
        let len = if s > 0 {
            if e > b { (e - b + s - 1) / s } else { 0 }
        } else if b > e {
            (b - e + (-s) - 1) / (-s)
        } else {
            0
        };
        starts[d] = b;
        steps[d] = s;
        full_shape[d] = len as usize;
    }
    let out_shape: Vec<usize> = layout
        .iter()
        .filter_map(|l| match l {
            None => Some(1),
            Some(d) if shrunk[*d] => None,
            Some(d) => Some(full_shape[*d]),
        })
        .collect();
    let st = strides(&x.shape);
    let idx = build_index(&full_shape, |c| {
        (0..r)
            .map(|d| ((starts[d] + c[d] as i64 * steps[d]) as usize) * st[d])
            .sum()
    });
    value(out_shape, x.data.gather(&idx))
}

/// The paddings input `[rank, 2]` as (before, after) pairs.
fn paddings(ins: &Ins, i: usize, rank: usize) -> KResult<Vec<(usize, usize)>> {
    let p = to_usize(&ins.ints(i)?, "paddings")?;
    ensure!(
        p.len() == rank * 2,
        "paddings have {} values for rank {rank}",
        p.len()
    );
    Ok(p.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

/// PAD / PADV2 (constant value from input 2, default 0).
pub(crate) fn pad(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let r = x.shape.len();
    let p = paddings(ins, 1, r)?;
    let shape: Vec<usize> = x
        .shape
        .iter()
        .zip(&p)
        .map(|(s, (a, b))| s + a + b)
        .collect();
    checked_numel(&shape)?;
    // Index x.len() is the fill value appended to the data.
    let fill = match ins.opt(2) {
        Some(c) => {
            ensure!(
                c.len() == 1 && c.dtype() == x.dtype(),
                "constant must be one value of the input's type"
            );
            c.data.clone()
        }
        None => {
            Data::zeros(x.dtype(), 1).ok_or_else(|| super::KErr::Unsupported("PAD type".into()))?
        }
    };
    let st = strides(&x.shape);
    let n = x.len();
    let idx = build_index(&shape, |c| {
        let mut f = 0;
        for d in 0..r {
            let v = c[d] as i64 - p[d].0 as i64;
            if v < 0 || v >= x.shape[d] as i64 {
                return n;
            }
            f += v as usize * st[d];
        }
        f
    });
    let all = concat_data(&[&x.data, &fill])?;
    value(shape, all.gather(&idx))
}

/// MIRROR_PAD: REFLECT (edge not repeated) or SYMMETRIC (edge repeated).
pub(crate) fn mirror_pad(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let r = x.shape.len();
    let p = paddings(ins, 1, r)?;
    let sym =
        matches!(ctx.opts(), Some(O::MirrorPadOptions(o)) if o.mode == MirrorPadMode::Symmetric);
    let off = if sym { 0 } else { 1 };
    for (d, &(a, b)) in p.iter().enumerate() {
        let lim = x.shape[d].saturating_sub(off);
        ensure!(
            a <= lim && b <= lim,
            "padding ({a}, {b}) too large for dimension {d} of {:?}",
            x.shape
        );
    }
    let shape: Vec<usize> = x
        .shape
        .iter()
        .zip(&p)
        .map(|(s, (a, b))| s + a + b)
        .collect();
    checked_numel(&shape)?;
    let st = strides(&x.shape);
    let idx = build_index(&shape, |c| {
        let mut f = 0;
        for d in 0..r {
            let n = x.shape[d] as i64;
            let mut v = c[d] as i64 - p[d].0 as i64;
            if v < 0 {
                v = -v - 1 + off as i64;
            } else if v >= n {
                v = 2 * n - v - 1 - off as i64;
            }
            f += v as usize * st[d];
        }
        f
    });
    value(shape, x.data.gather(&idx))
}

/// GATHER along `axis` with `batch_dims`.
pub(crate) fn gather(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let iv = ins.get(1)?;
    let ids = ins.ints(1)?;
    let (axis, batch_dims) = match ctx.opts() {
        Some(O::GatherOptions(o)) => (o.axis, o.batch_dims),
        _ => (0, 0),
    };
    let r = x.shape.len();
    let a = norm_axis(axis as i64, r)?;
    let bd = if batch_dims < 0 {
        batch_dims + iv.shape.len() as i32
    } else {
        batch_dims
    };
    ensure!(
        bd >= 0 && bd as usize <= a && (bd as usize) <= iv.shape.len(),
        "batch_dims {batch_dims} invalid for axis {a}"
    );
    let bd = bd as usize;
    ensure!(
        x.shape[..bd] == iv.shape[..bd],
        "batch dimensions of {:?} and indices {:?} differ",
        x.shape,
        iv.shape
    );
    let batch: usize = x.shape[..bd].iter().product();
    let outer: usize = x.shape[bd..a].iter().product();
    let dim = x.shape[a];
    let inner: usize = x.shape[a + 1..].iter().product();
    let per_batch_ids: usize = iv.shape[bd..].iter().product();
    for &i in &ids {
        ensure!(
            (0..dim as i64).contains(&i),
            "index {i} out of range for dimension {a} of size {dim}"
        );
    }
    let mut idx = Vec::with_capacity(batch * outer * per_batch_ids * inner);
    for b in 0..batch {
        for o in 0..outer {
            for j in 0..per_batch_ids {
                let i = ids[b * per_batch_ids + j] as usize;
                let base = ((b * outer + o) * dim + i) * inner;
                idx.extend(base..base + inner);
            }
        }
    }
    let mut shape = x.shape[..a].to_vec();
    shape.extend_from_slice(&iv.shape[bd..]);
    shape.extend_from_slice(&x.shape[a + 1..]);
    value(shape, x.data.gather(&idx))
}

/// GATHER_ND: the last dimension of the indices addresses the leading dimensions.
pub(crate) fn gather_nd(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let iv = ins.get(1)?;
    let ids = ins.ints(1)?;
    let Some(&depth) = iv.shape.last() else {
        bad!("indices must have rank >= 1");
    };
    ensure!(
        depth <= x.shape.len(),
        "index depth {depth} > rank {}",
        x.shape.len()
    );
    let inner: usize = x.shape[depth..].iter().product();
    let st = strides(&x.shape);
    let n = ids.len().checked_div(depth).unwrap_or(0);
    let mut idx = Vec::with_capacity(n * inner);
    for t in 0..n {
        let mut f = 0;
        for d in 0..depth {
            let i = ids[t * depth + d];
            ensure!(
                (0..x.shape[d] as i64).contains(&i),
                "index {i} out of range for dimension {d} of {:?}",
                x.shape
            );
            f += i as usize * st[d];
        }
        idx.extend(f..f + inner);
    }
    let mut shape = iv.shape[..iv.shape.len() - 1].to_vec();
    shape.extend_from_slice(&x.shape[depth..]);
    value(shape, x.data.gather(&idx))
}

/// PACK: stacks the inputs along a new axis.
pub(crate) fn pack(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let axis = match ctx.opts() {
        Some(O::PackOptions(o)) => o.axis,
        _ => 0,
    };
    let parts: Vec<&Value> = (0..ins.len()).map(|i| ins.get(i)).collect::<KResult<_>>()?;
    let Some(first) = parts.first() else {
        bad!("no inputs");
    };
    for p in &parts {
        ensure!(
            p.shape == first.shape,
            "input shapes {:?} and {:?} differ",
            first.shape,
            p.shape
        );
    }
    let r = first.shape.len();
    let a = norm_axis(axis as i64, r + 1)?;
    let outer: usize = first.shape[..a].iter().product();
    let inner: usize = first.shape[a..].iter().product();
    let n = parts.len();
    let mut idx = Vec::with_capacity(outer * n * inner);
    for o in 0..outer {
        for (k, _) in parts.iter().enumerate() {
            let base = k * first.len() + o * inner;
            idx.extend(base..base + inner);
        }
    }
    let all = concat_data(&parts.iter().map(|p| &p.data).collect::<Vec<_>>())?;
    let mut shape = first.shape.clone();
    shape.insert(a, n);
    value(shape, all.gather(&idx))
}

/// UNPACK: splits along an axis and drops it.
pub(crate) fn unpack(ctx: &Ctx, ins: &Ins) -> KResult<Vec<Value>> {
    let x = ins.get(0)?;
    let axis = match ctx.opts() {
        Some(O::UnpackOptions(o)) => o.axis,
        _ => 0,
    };
    let a = norm_axis(axis as i64, x.shape.len())?;
    let n = x.shape[a];
    let parts = split_sizes(x, a, &vec![1; n])?;
    Ok(parts
        .into_iter()
        .map(|mut p| {
            p.shape.remove(a);
            p
        })
        .collect())
}

/// TILE by the multiples input.
pub(crate) fn tile(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let m = to_usize(&ins.ints(1)?, "multiples")?;
    ensure!(
        m.len() == x.shape.len(),
        "multiples {m:?} for shape {:?}",
        x.shape
    );
    let shape: Vec<usize> = x.shape.iter().zip(&m).map(|(a, b)| a * b).collect();
    checked_numel(&shape)?;
    let st = strides(&x.shape);
    let idx = build_index(&shape, |c| {
        c.iter()
            .zip(&x.shape)
            .zip(&st)
            .map(|((c, d), s)| (c % d) * s)
            .sum()
    });
    value(shape, x.data.gather(&idx))
}

/// BROADCAST_TO the shape input.
pub(crate) fn broadcast_to(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let shape = to_usize(&ins.ints(1)?, "shape")?;
    let b = broadcast_shapes(&x.shape, &shape)?;
    ensure!(b == shape, "cannot broadcast {:?} to {shape:?}", x.shape);
    checked_numel(&shape)?;
    let idx = broadcast_index(&x.shape, &shape);
    value(shape, x.data.gather(&idx))
}

/// REVERSE_V2 along the axes input.
pub(crate) fn reverse(ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let r = x.shape.len();
    let mut rev = vec![false; r];
    for a in ins.ints(1)? {
        rev[norm_axis(a, r)?] = true;
    }
    let st = strides(&x.shape);
    let idx = build_index(&x.shape, |c| {
        (0..r)
            .map(|d| {
                let v = if rev[d] { x.shape[d] - 1 - c[d] } else { c[d] };
                v * st[d]
            })
            .sum()
    });
    value(x.shape.clone(), x.data.gather(&idx))
}

/// EMBEDDING_LOOKUP: rows of the table (input 1) by the ids (input 0).
pub(crate) fn embedding_lookup(ins: &Ins) -> KResult<Value> {
    let ids = ins.ints(0)?;
    let table = ins.get(1)?;
    ensure!(!table.shape.is_empty(), "table must have rank >= 1");
    let rows = table.shape[0];
    let inner: usize = table.shape[1..].iter().product();
    let mut idx = Vec::with_capacity(ids.len() * inner);
    for &i in &ids {
        ensure!(
            (0..rows as i64).contains(&i),
            "id {i} out of range for a table of {rows} rows"
        );
        let b = i as usize * inner;
        idx.extend(b..b + inner);
    }
    let mut shape = vec![ids.len()];
    shape.extend_from_slice(&table.shape[1..]);
    value(shape, table.data.gather(&idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The carried-offset index equals the per-element one (its twin) for every
    /// rotation and the reversal of the axes of several shapes, empty and rank-0 ones
    /// included.
    #[test]
    fn strided_index_matches_build_index() {
        let shapes: [&[usize]; 6] = [&[], &[5], &[2, 3], &[2, 3, 4], &[1, 4, 1, 3], &[2, 0, 3]];
        for shape in shapes {
            let s = strides(shape);
            let r = shape.len();
            let mut perm: Vec<usize> = (0..r).collect();
            let mut perms = vec![perm.clone()];
            for _ in 1..r {
                perm.rotate_left(1);
                perms.push(perm.clone());
            }
            perms.push((0..r).rev().collect());
            for p in perms {
                let out_shape: Vec<usize> = p.iter().map(|&a| shape[a]).collect();
                let ps: Vec<usize> = p.iter().map(|&a| s[a]).collect();
                assert_eq!(
                    strided_index(&out_shape, &ps),
                    build_index(&out_shape, |c| flat(c, &ps)),
                    "{shape:?} {p:?}"
                );
            }
        }
    }
}
