//! Matrix products: the GEMM every heavy kernel goes through (a straightforward
//! reference and a fast path through the `matrixmultiply` crate, split over rows with
//! rayon), FULLY_CONNECTED (incl. keep_num_dims) and BATCH_MATMUL.

use rayon::prelude::*;

use crate::fb::BuiltinOptions as O;

use super::{Ctx, Ins, KResult, apply_act, bad, broadcast_shapes, ensure, strides};
use crate::interp::value::Value;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Mat<'_> {
    /// True when every element of a `rows × cols` view lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        let last = (rows - 1).checked_mul(self.rs).and_then(|r| {
            (cols - 1)
                .checked_mul(self.cs)
                .and_then(|c| r.checked_add(c))
        });
        last.is_some_and(|l| l < self.data.len())
    }
}

/// Multiply-adds below which threads cost more than they save.
const PAR_MIN_WORK: usize = 1 << 16;

#[cfg_attr(not(test), allow(dead_code))]
/// `C = A · B` with `A` m×k, `B` k×n, `C` row-major m×n (overwritten): the reference,
/// one dot product per element, accumulated in f32 in index order.
pub(crate) fn sgemm_reference(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for p in 0..k {
                acc += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            c[i * n + j] = acc;
        }
    }
}

/// `C = A · B` through `matrixmultiply`, rows split over the rayon pool for large
/// products. Same contract as [`sgemm_reference`].
pub(crate) fn sgemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32]) {
    assert!(
        a.fits(m, k) && b.fits(k, n) && c.len() >= m * n,
        "sgemm bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    let work = m * n * k;
    let block = |rows: std::ops::Range<usize>, c: &mut [f32]| {
        let mm = rows.len();
        let a_off = rows.start * a.rs;
        // SAFETY: `fits` checked above that every (i, p) with i < m, p < k indexes
        // inside `a.data` (and likewise for b, c); the block reads rows
        // `rows` ⊂ 0..m of A starting at `a_off`, and writes exactly the `mm × n`
        // row-major slice `c` it was handed, which no other block aliases.
        unsafe {
            matrixmultiply::sgemm(
                mm,
                k,
                n,
                1.0,
                a.data.as_ptr().add(a_off),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr(),
                b.rs as isize,
                b.cs as isize,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    };
    if threads <= 1 || work < PAR_MIN_WORK || m < 2 {
        block(0..m, &mut c[..m * n]);
        return;
    }
    let chunk_rows = m.div_ceil(threads * 2).max(4);
    c[..m * n]
        .par_chunks_mut(chunk_rows * n)
        .enumerate()
        .for_each(|(ci, cc)| {
            let r0 = ci * chunk_rows;
            block(r0..r0 + cc.len() / n, cc);
        });
}

/// FULLY_CONNECTED: `out = act(x · Wᵀ + bias)`; weights `[n, k]`; the input is flattened
/// to `[numel / k, k]` unless `keep_num_dims` keeps its leading dimensions.
pub(crate) fn fully_connected(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (xv, wv) = (ins.get(0)?, ins.get(1)?);
    let (x, w) = (ins.f32(0)?, ins.f32(1)?);
    ensure!(
        wv.shape.len() == 2,
        "weights must be 2-D, got shape {:?}",
        wv.shape
    );
    let (n, k) = (wv.shape[0], wv.shape[1]);
    ensure!(
        k > 0 && x.len() % k == 0,
        "input shape {:?} does not fit weights {:?}",
        xv.shape,
        wv.shape
    );
    let m = x.len() / k;
    let (act, keep) = match ctx.opts() {
        Some(O::FullyConnectedOptions(o)) => (o.fused_activation_function, o.keep_num_dims),
        _ => (crate::fb::ActivationFunctionType::None, false),
    };
    let mut out = vec![0f32; m * n];
    sgemm(
        m,
        k,
        n,
        Mat {
            data: x,
            rs: k,
            cs: 1,
        },
        Mat {
            data: w,
            rs: 1,
            cs: k,
        },
        &mut out,
    );
    if let Some(bv) = ins.opt(2) {
        let b = ins.f32(2)?;
        ensure!(b.len() == n, "bias has {} elements, expected {n}", bv.len());
        for row in out.chunks_exact_mut(n.max(1)) {
            for (o, &bb) in row.iter_mut().zip(b) {
                *o += bb;
            }
        }
    }
    apply_act(&mut out, act)?;
    let shape = if keep {
        ensure!(
            xv.shape.last() == Some(&k),
            "keep_num_dims needs the last input dimension {k}, got {:?}",
            xv.shape
        );
        let mut s = xv.shape.clone();
        if let Some(l) = s.last_mut() {
            *l = n;
        }
        s
    } else {
        vec![m, n]
    };
    Ok(Value::f32(shape, out))
}

/// BATCH_MATMUL with adj_x/adj_y and broadcast batch dimensions.
pub(crate) fn batch_matmul(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (lv, rv) = (ins.get(0)?, ins.get(1)?);
    let (l, r) = (ins.f32(0)?, ins.f32(1)?);
    let (adj_x, adj_y) = match ctx.opts() {
        Some(O::BatchMatMulOptions(o)) => (o.adj_x, o.adj_y),
        _ => (false, false),
    };
    let (ls, rs) = (&lv.shape, &rv.shape);
    ensure!(
        ls.len() >= 2 && rs.len() >= 2,
        "operands need rank >= 2, got {ls:?} and {rs:?}"
    );
    let (lr, lc) = (ls[ls.len() - 2], ls[ls.len() - 1]);
    let (rr, rc) = (rs[rs.len() - 2], rs[rs.len() - 1]);
    let (m, k) = if adj_x { (lc, lr) } else { (lr, lc) };
    let (k2, n) = if adj_y { (rc, rr) } else { (rr, rc) };
    if k != k2 {
        bad!("inner dimensions differ: {ls:?} (adj_x {adj_x}) × {rs:?} (adj_y {adj_y})");
    }
    let lb = &ls[..ls.len() - 2];
    let rb = &rs[..rs.len() - 2];
    let batch = broadcast_shapes(lb, rb)?;
    let nb: usize = batch.iter().product();
    let li = super::broadcast_index(lb, &batch);
    let ri = super::broadcast_index(rb, &batch);
    let mut out = vec![0f32; nb * m * n];
    let (lsz, rsz) = (lr * lc, rr * rc);
    for bi in 0..nb {
        let a = &l[li[bi] * lsz..(li[bi] + 1) * lsz];
        let b = &r[ri[bi] * rsz..(ri[bi] + 1) * rsz];
        let am = if adj_x {
            Mat {
                data: a,
                rs: 1,
                cs: m,
            }
        } else {
            Mat {
                data: a,
                rs: k,
                cs: 1,
            }
        };
        let bm = if adj_y {
            Mat {
                data: b,
                rs: 1,
                cs: k,
            }
        } else {
            Mat {
                data: b,
                rs: n,
                cs: 1,
            }
        };
        sgemm(m, k, n, am, bm, &mut out[bi * m * n..(bi + 1) * m * n]);
    }
    let _ = strides;
    let mut shape = batch;
    shape.extend([m, n]);
    Ok(Value::f32(shape, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// float32 sums of k products accumulated in different orders differ by up to
    /// about k·ε·Σ|aᵢbᵢ| (values here are in [-1, 1]); per term of the sum we allow
    /// this many units of ε.
    const ULPS_PER_TERM: f32 = 4.0;

    fn tolerance(k: usize) -> f32 {
        (k as f32) * f32::EPSILON * ULPS_PER_TERM
    }

    #[test]
    fn fast_gemm_matches_reference_with_strides_and_threads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (64, 27, 16),
            (200, 144, 33),
            (5, 0, 3),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            // B given transposed (n × k storage), as FULLY_CONNECTED weights are.
            let am = Mat {
                data: &a,
                rs: k,
                cs: 1,
            };
            let bm = Mat {
                data: &b,
                rs: 1,
                cs: k,
            };
            let mut c_ref = vec![0f32; m * n];
            let mut c_fast = vec![1f32; m * n];
            sgemm_reference(m, k, n, am, bm, &mut c_ref);
            sgemm(m, k, n, am, bm, &mut c_fast);
            let tol = tolerance(k.max(1));
            for (x, y) in c_ref.iter().zip(&c_fast) {
                assert!((x - y).abs() <= tol, "{m}x{k}x{n}: {x} vs {y}");
            }
        }
    }
}
