//! Spatial rearrangements of NHWC tensors: RESIZE_BILINEAR and
//! RESIZE_NEAREST_NEIGHBOR (align_corners, half_pixel_centers as TFLite's reference),
//! DEPTH_TO_SPACE / SPACE_TO_DEPTH, BATCH_TO_SPACE_ND / SPACE_TO_BATCH_ND.

use crate::fb::{BuiltinOperator as B, BuiltinOptions as O};

use super::elementwise::concat_data;
use super::shape::build_index;
use super::{Ctx, Ins, KResult, bad, checked_numel, ensure, strides, to_usize, unsupported, value};
use crate::interp::value::{Data, Value};

pub(crate) fn resize(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let xv = ins.get(0)?;
    let &[n, ih, iw, c] = xv.shape.as_slice() else {
        bad!("input must be 4-D NHWC, got {:?}", xv.shape);
    };
    ensure!(
        ih > 0 && iw > 0,
        "input {:?} has an empty spatial dimension",
        xv.shape
    );
    let size = to_usize(&ins.ints(1)?, "size")?;
    let &[oh, ow] = size.as_slice() else {
        bad!("size must have 2 values, got {size:?}");
    };
    ensure!(oh > 0 && ow > 0, "output size {oh}x{ow} must be positive");
    let shape = vec![n, oh, ow, c];
    checked_numel(&shape)?;
    let (align, half) = match ctx.opts() {
        Some(O::ResizeBilinearOptions(o)) => (o.align_corners, o.half_pixel_centers),
        Some(O::ResizeNearestNeighborOptions(o)) => (o.align_corners, o.half_pixel_centers),
        _ => (false, false),
    };
    let scale = |i: usize, o: usize| -> f32 {
        if align && o > 1 {
            (i - 1) as f32 / (o - 1) as f32
        } else {
            i as f32 / o as f32
        }
    };
    let (sh, sw) = (scale(ih, oh), scale(iw, ow));
    if b == B::ResizeNearestNeighbor {
        let near = |o: usize, s: f32, isz: usize| -> usize {
            let off = if half { 0.5 } else { 0.0 };
            let v = (o as f32 + off) * s;
            let v = if align { v.round() } else { v.floor() };
            (v.max(0.0) as usize).min(isz - 1)
        };
        let ys: Vec<usize> = (0..oh).map(|y| near(y, sh, ih)).collect();
        let xs: Vec<usize> = (0..ow).map(|x| near(x, sw, iw)).collect();
        let idx = build_index(&shape, |q| {
            ((q[0] * ih + ys[q[1]]) * iw + xs[q[2]]) * c + q[3]
        });
        return value(shape, xv.data.gather(&idx));
    }
    let Data::F32(x) = &xv.data else {
        unsupported!("RESIZE_BILINEAR on non-float data");
    };
    // (lower, upper, fraction) per output coordinate.
    let interp = |o: usize, s: f32, isz: usize| -> (usize, usize, f32) {
        let v = if half {
            (o as f32 + 0.5) * s - 0.5
        } else {
            o as f32 * s
        };
        let lo = (v.floor().max(0.0) as usize).min(isz - 1);
        let hi = (v.ceil().max(0.0) as usize).min(isz - 1);
        (lo, hi, v - lo as f32)
    };
    let ys: Vec<_> = (0..oh).map(|y| interp(y, sh, ih)).collect();
    let xs: Vec<_> = (0..ow).map(|x| interp(x, sw, iw)).collect();
    let at = |b: usize, y: usize, x_: usize, ch: usize| x[((b * ih + y) * iw + x_) * c + ch];
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for bi in 0..n {
        for &(y0, y1, dy) in &ys {
            for &(x0, x1, dx) in &xs {
                for ch in 0..c {
                    out.push(
                        at(bi, y0, x0, ch) * (1.0 - dy) * (1.0 - dx)
                            + at(bi, y1, x0, ch) * dy * (1.0 - dx)
                            + at(bi, y0, x1, ch) * (1.0 - dy) * dx
                            + at(bi, y1, x1, ch) * dy * dx,
                    );
                }
            }
        }
    }
    value(shape, Data::F32(out))
}

/// DEPTH_TO_SPACE (DCR order, as TFLite) and SPACE_TO_DEPTH.
pub(crate) fn depth_space(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let &[n, h, w, c] = x.shape.as_slice() else {
        bad!("input must be 4-D NHWC, got {:?}", x.shape);
    };
    let bs = match ctx.opts() {
        Some(O::DepthToSpaceOptions(o)) => o.block_size,
        Some(O::SpaceToDepthOptions(o)) => o.block_size,
        _ => 0,
    };
    ensure!(bs >= 1, "block_size {bs} must be >= 1");
    let bs = bs as usize;
    if b == B::DepthToSpace {
        ensure!(c % (bs * bs) == 0, "depth {c} not divisible by {bs}²");
        let oc = c / (bs * bs);
        let shape = vec![n, h * bs, w * bs, oc];
        let idx = build_index(&shape, |q| {
            let (y, x_) = (q[1] / bs, q[2] / bs);
            let d = ((q[1] % bs) * bs + q[2] % bs) * oc + q[3];
            ((q[0] * h + y) * w + x_) * c + d
        });
        value(shape, x.data.gather(&idx))
    } else {
        ensure!(
            h % bs == 0 && w % bs == 0,
            "spatial size {h}x{w} not divisible by {bs}"
        );
        let shape = vec![n, h / bs, w / bs, c * bs * bs];
        let idx = build_index(&shape, |q| {
            let d = q[3] / c;
            let (dy, dx, ic) = (d / bs, d % bs, q[3] % c);
            ((q[0] * h + q[1] * bs + dy) * w + q[2] * bs + dx) * c + ic
        });
        value(shape, x.data.gather(&idx))
    }
}

/// SPACE_TO_BATCH_ND (block_shape, paddings) and BATCH_TO_SPACE_ND (block_shape, crops).
pub(crate) fn batch_space(b: B, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let block = to_usize(&ins.ints(1)?, "block_shape")?;
    let pc = to_usize(&ins.ints(2)?, "paddings/crops")?;
    let m = block.len();
    ensure!(
        m >= 1 && x.shape.len() > m && pc.len() == 2 * m && block.iter().all(|&b| b > 0),
        "block_shape {block:?} / paddings {pc:?} do not fit input {:?}",
        x.shape
    );
    let prod: usize = block.iter().product();
    let st = strides(&x.shape);
    let r = x.shape.len();
    if b == B::SpaceToBatchNd {
        let nb = x.shape[0];
        let mut shape = vec![nb * prod];
        for i in 0..m {
            let padded = x.shape[1 + i] + pc[2 * i] + pc[2 * i + 1];
            ensure!(
                padded % block[i] == 0,
                "padded size {padded} not divisible by {}",
                block[i]
            );
            shape.push(padded / block[i]);
        }
        shape.extend_from_slice(&x.shape[1 + m..]);
        checked_numel(&shape)?;
        let zero =
            Data::zeros(x.dtype(), 1).ok_or_else(|| super::KErr::Unsupported("type".into()))?;
        let fill = x.len();
        let bst = strides(&block);
        let idx = build_index(&shape, |q| {
            let (off, bi) = (q[0] / nb, q[0] % nb);
            let mut f = bi * st[0];
            for i in 0..m {
                let bo = (off / bst[i]) % block[i];
                let p = (q[1 + i] * block[i] + bo) as i64 - pc[2 * i] as i64;
                if p < 0 || p >= x.shape[1 + i] as i64 {
                    return fill;
                }
                f += p as usize * st[1 + i];
            }
            f + (1 + m..r).map(|d| q[d] * st[d]).sum::<usize>()
        });
        let all = concat_data(&[&x.data, &zero])?;
        value(shape, all.gather(&idx))
    } else {
        ensure!(
            x.shape[0] % prod == 0,
            "batch {} not divisible by {prod}",
            x.shape[0]
        );
        let nb = x.shape[0] / prod;
        let mut shape = vec![nb];
        for i in 0..m {
            let full = x.shape[1 + i] * block[i];
            ensure!(pc[2 * i] + pc[2 * i + 1] <= full, "crops {pc:?} too large");
            shape.push(full - pc[2 * i] - pc[2 * i + 1]);
        }
        shape.extend_from_slice(&x.shape[1 + m..]);
        let bst = strides(&block);
        let idx = build_index(&shape, |q| {
            let mut off = 0;
            let mut f = 0;
            for i in 0..m {
                let p = q[1 + i] + pc[2 * i];
                off += (p % block[i]) * bst[i];
                f += (p / block[i]) * st[1 + i];
            }
            f + (off * nb + q[0]) * st[0] + (1 + m..r).map(|d| q[d] * st[d]).sum::<usize>()
        });
        value(shape, x.data.gather(&idx))
    }
}
