//! Matrix products: the GEMM every heavy kernel goes through (a straightforward
//! reference; fast paths through an AVX-512 register tile when the CPU has it, else the
//! `matrixmultiply` crate; rows split over rayon; bias and fused activation applied
//! while a block is in cache, see [`Epilogue`]), FULLY_CONNECTED (incl.
//! keep_num_dims) and BATCH_MATMUL. Both fast paths accumulate each element over k in
//! index order with fused multiply-adds (`matrixmultiply` in blocks of k) and add the
//! bias after; results agree with LiteRT's to float rounding.

use rayon::prelude::*;

use crate::fb::BuiltinOptions as O;

use super::{Ctx, Ins, KResult, bad, broadcast_shapes, ensure, strides};
use crate::interp::keys::KeyAcc;
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

/// Rows of C computed (and finished by the [`Epilogue`]) at a time on one thread, so
/// the epilogue reads them while they are still in cache.
const ROW_BLOCK: usize = 256;

/// What happens to each row of `C = A · B` right after it is computed: `+ bias` (one
/// value per column) and a clamp to `[lo, hi]` (a fused activation), in that order, as
/// a separate pass over C would do.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub lo: f32,
    pub hi: f32,
    /// Where the finished rows' order keys are folded (see [`KeyAcc`]): every row
    /// of C once it holds its final values.
    pub keys: Option<&'a KeyAcc>,
}

impl<'a> Epilogue<'a> {
    /// Nothing: C stays the plain product.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
        keys: None,
    };

    /// Bias then the fused activation `act`; keys folded into `keys`, if any.
    pub fn new(
        bias: Option<&'a [f32]>,
        act: crate::fb::ActivationFunctionType,
        keys: Option<&'a KeyAcc>,
    ) -> KResult<Self> {
        let (lo, hi) = super::act_bounds(act)?;
        Ok(Epilogue { bias, lo, hi, keys })
    }

    fn is_none(&self) -> bool {
        self.bias.is_none()
            && self.lo == f32::NEG_INFINITY
            && self.hi == f32::INFINITY
            && self.keys.is_none()
    }

    /// [`Epilogue::apply`], then the rows' keys folded.
    pub fn finish(&self, c: &mut [f32], n: usize) {
        self.apply(c, n);
        if let Some(k) = self.keys {
            k.fold(c);
        }
    }

    /// Applies the epilogue to row-major rows of `n` columns.
    pub fn apply(&self, c: &mut [f32], n: usize) {
        if self.is_none() || n == 0 {
            return;
        }
        let clamp = !(self.lo == f32::NEG_INFINITY && self.hi == f32::INFINITY);
        for row in c.chunks_exact_mut(n) {
            if let Some(b) = self.bias {
                for (o, &bb) in row.iter_mut().zip(b) {
                    *o += bb;
                }
            }
            if clamp {
                for o in row.iter_mut() {
                    *o = o.max(self.lo).min(self.hi);
                }
            }
        }
    }
}

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
    sgemm_epilogue(m, k, n, a, b, c, &Epilogue::NONE)
}

/// [`sgemm`] followed by `epi` on every row, done block by block while the block is
/// in cache (the result equals `sgemm` then [`Epilogue::apply`] on all of C).
pub(crate) fn sgemm_epilogue(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    epi: &Epilogue,
) {
    sgemm_packed([m, k, n], a, b, c, epi, None)
}

/// B of a product packed once for the fast path and kept: a constant weight, reused
/// by every later product with it (see [`PackCell`]). Holds `⌈n / 32⌉ · 32 · k` values
/// (the weights padded to whole panels) and where B lived, so that a packing is never
/// used for another B.
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    /// Address and length of the B it was packed from.
    source: (usize, usize),
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    data: Vec<f32>,
}

impl PackedB {
    /// True when this is the packing of `b` as a k × n matrix.
    fn packs(&self, k: usize, n: usize, b: &Mat) -> bool {
        self.k == k && self.n == n && self.source == (b.data.as_ptr() as usize, b.data.len())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }
}

/// Where an op keeps the packing of its constant weight between runs: filled by the
/// first product that needs it, `None` inside when the CPU has no packed fast path.
pub(crate) type PackCell = std::sync::OnceLock<Option<PackedB>>;

/// The packing of B (k × n) the fast path would make, or `None` when products with
/// B take no packed fast path on this CPU (or B does not fit k × n).
pub(crate) fn pack(k: usize, n: usize, b: Mat) -> Option<PackedB> {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() && b.fits(k, n) && k > 0 && n > 0 {
        let mut data = vec![0f32; n.div_ceil(avx512::NR) * k * avx512::NR];
        avx512::pack_b(k, n, b, &mut data);
        return Some(PackedB {
            k,
            n,
            source: (b.data.as_ptr() as usize, b.data.len()),
            data,
        });
    }
    let _ = (k, n, b);
    None
}

/// The packing `cell` holds for `b` (packing it on first use), if any.
pub(crate) fn cached_pack<'c>(
    cell: Option<&'c PackCell>,
    k: usize,
    n: usize,
    b: Mat,
) -> Option<&'c PackedB> {
    cell?
        .get_or_init(|| pack(k, n, b))
        .as_ref()
        .filter(|p| p.packs(k, n, &b))
}

/// [`sgemm_epilogue`] using `packed` (the packing of this B) instead of packing B
/// again, when the fast path runs; the result is the same.
pub(crate) fn sgemm_packed(
    [m, k, n]: [usize; 3],
    a: Mat,
    b: Mat,
    c: &mut [f32],
    epi: &Epilogue,
    packed: Option<&PackedB>,
) {
    assert!(
        a.fits(m, k) && b.fits(k, n) && c.len() >= m * n,
        "sgemm bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        epi.finish(&mut c[..m * n], n);
        return;
    }
    let threads = rayon::current_num_threads();
    let work = m * n * k;
    #[cfg(target_arch = "x86_64")]
    if a.cs == 1 && avx512::available() {
        let prod = avx512::Product { m, k, n, a, b };
        let parallel = threads > 1 && work >= PAR_MIN_WORK;
        match packed.filter(|p| p.packs(k, n, &b)) {
            Some(p) => avx512::compute(&prod, c, epi, parallel, &p.data),
            None => avx512::sgemm(&prod, c, epi, parallel),
        }
        return;
    }
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
        epi.finish(c, n);
    };
    if threads <= 1 || work < PAR_MIN_WORK || m < 2 {
        if epi.is_none() {
            block(0..m, &mut c[..m * n]);
        } else {
            for (ci, cc) in c[..m * n].chunks_mut(ROW_BLOCK * n).enumerate() {
                let r0 = ci * ROW_BLOCK;
                block(r0..r0 + cc.len() / n, cc);
            }
        }
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

/// An AVX-512 GEMM for row-major A (`cs == 1`): B packed once per call into panels of
/// [`NR`](avx512::NR) columns, an `MR × NR` register tile of fused multiply-adds
/// accumulated over all of k in index order, rows split in blocks of [`ROW_BLOCK`]
/// (over the rayon pool when the product is large), the [`Epilogue`] applied to each
/// block while it is in cache. Chosen at run time when the CPU has AVX-512F;
/// [`sgemm_reference`] is its twin in the tests.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::{Epilogue, Mat, ROW_BLOCK};

    /// How many rows of the packed panel ahead [`tile`] asks the cache for (16: one
    /// float MobileNetV2 run ~5 % faster than none, 32: ~3 % more, 64: as 32).
    const PF: usize = 32;

    /// Rows of a register tile: 12 × 2 accumulators, the two B vectors and a
    /// broadcast take 27 of the 32 zmm registers, and each B load feeds 12 FMAs
    /// (with 8 rows: 8; a MobileNetV2 run measured the same with either, see
    /// docs/PERFORMANCE.md). The last rows of a block run as one shorter tile
    /// (`tile::<1..MR>`).
    pub(super) const MR: usize = 12;
    /// Columns of a register tile (two 16-lane vectors).
    pub(super) const NR: usize = 32;

    /// True when this CPU runs AVX-512F (detected once).
    pub(super) fn available() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx512f"))
    }

    /// The operands of `C = A · B`: A m × k, B k × n.
    pub(super) struct Product<'a> {
        pub m: usize,
        pub k: usize,
        pub n: usize,
        pub a: Mat<'a>,
        pub b: Mat<'a>,
    }

    /// `C = A · B` then `epi`; `a.cs == 1`, bounds checked by the caller.
    pub(super) fn sgemm(prod: &Product, c: &mut [f32], epi: &Epilogue, parallel: bool) {
        let len = prod.n.div_ceil(NR) * prod.k * NR;
        let mut run = |bp: &mut [f32]| {
            pack_b(prod.k, prod.n, prod.b, bp);
            compute(prod, c, epi, parallel, bp);
        };
        // The packing buffer is reused from call to call on this thread (no zeroing:
        // `pack_b` writes every value); a nested call (a job stolen while this one
        // waits) or a very large B gets a buffer of its own.
        PACK_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) if len <= PACK_BUF_MAX => {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
                run(&mut buf[..len]);
            }
            _ => run(&mut vec![0f32; len]),
        });
    }

    /// Largest packed B (in values) kept in [`PACK_BUF`] between calls.
    const PACK_BUF_MAX: usize = 1 << 22;

    thread_local! {
        /// The buffer [`sgemm`] packs B into, kept per thread.
        static PACK_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Packs B (k × n) into `bp`: panel q holds columns q·NR.. as k rows of NR values
    /// (zeros past n); every value of `bp` is written.
    pub(super) fn pack_b(k: usize, n: usize, b: Mat, bp: &mut [f32]) {
        for (q, panel) in bp.chunks_mut(k * NR).enumerate() {
            let cols = NR.min(n - q * NR);
            let j0 = q * NR;
            // Columns of B contiguous (weights stored [n, k]): 8 × 8 blocks transposed
            // in registers; the rest one value at a time.
            let (done_cols, done_k) = if b.rs == 1 {
                let (c8, k8) = (cols / 8 * 8, k / 8 * 8);
                for jj0 in (0..c8).step_by(8) {
                    for p0 in (0..k8).step_by(8) {
                        let src = &b.data[(j0 + jj0) * b.cs + p0..];
                        let dst = &mut panel[p0 * NR + jj0..];
                        // SAFETY: `available()` found AVX-512F (so AVX2). Rows
                        // j0+jj0 .. +8 of B's transpose hold k values each (b fits
                        // k × n), p0 + 8 <= k; dst holds 8 rows of NR from p0.
                        unsafe { transpose8(src, b.cs, dst, NR) };
                    }
                }
                (c8, k8)
            } else {
                (0, 0)
            };
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let row = p * b.rs + j0 * b.cs;
                let from = if p < done_k { done_cols } else { 0 };
                for (jj, d) in dst[..cols].iter_mut().enumerate().skip(from) {
                    *d = b.data[row + jj * b.cs];
                }
                dst[cols..].fill(0.0);
            }
        }
    }

    /// The tiles of `C = A · B` over packed B, block of rows by block of rows.
    pub(super) fn compute(
        prod: &Product,
        c: &mut [f32],
        epi: &Epilogue,
        parallel: bool,
        bp: &[f32],
    ) {
        let (m, k, n, a) = (prod.m, prod.k, prod.n, prod.a);
        let panels = n.div_ceil(NR);
        // Bias padded with zeros to whole panels, for the tile's epilogue.
        let mut bias_pad = vec![0f32; panels * NR];
        if let Some(bb) = epi.bias {
            bias_pad[..n].copy_from_slice(&bb[..n]);
        }
        let tile_epi = TileEpilogue {
            bias: epi.bias.is_some(),
            clamp: !(epi.lo == f32::NEG_INFINITY && epi.hi == f32::INFINITY),
            lo: epi.lo,
            hi: epi.hi,
        };
        let bias_pad = &bias_pad;
        let block = |r0: usize, cc: &mut [f32]| {
            let rows = cc.len() / n;
            for q in 0..panels {
                let cols = NR.min(n - q * NR);
                let panel = &bp[q * k * NR..(q + 1) * k * NR];
                let mut i = 0;
                while i < rows {
                    let take = (rows - i).min(MR);
                    let a_row = &a.data[(r0 + i) * a.rs..];
                    let c_tile = &mut cc[i * n + q * NR..];
                    // SAFETY: `available()` found AVX-512F. The tile reads rows
                    // r0+i .. r0+i+take of A, k values each (in bounds: the caller
                    // checked A fits m × k with cs == 1), k·NR values of `panel`, and
                    // writes `take` rows of `cols` values at stride n inside `c_tile`
                    // (row i+take-1 < rows, column q·NR + cols <= n).
                    unsafe {
                        let bias = &bias_pad[q * NR..(q + 1) * NR];
                        let geom = TileGeom {
                            k,
                            rs: a.rs,
                            ldc: n,
                            cols,
                        };
                        let (ap, bpp) = (a_row.as_ptr(), panel.as_ptr());
                        // The last rows of a block (fewer than MR) in one shorter
                        // tile, not row by row (a 1-row tile reloads B for 2 FMAs); a
                        // last panel of at most 16 columns with one vector a row.
                        let t = (&geom, ap, bpp, c_tile, bias, &tile_epi);
                        if cols <= 16 {
                            rows_tile::<1>(take, t);
                        } else {
                            rows_tile::<2>(take, t);
                        }
                    }
                    i += take;
                }
            }
            if let Some(keys) = epi.keys {
                keys.fold(cc);
            }
        };
        let c = &mut c[..m * n];
        if parallel {
            c.par_chunks_mut(ROW_BLOCK * n)
                .enumerate()
                .for_each(|(bi, cc)| block(bi * ROW_BLOCK, cc));
        } else {
            for (bi, cc) in c.chunks_mut(ROW_BLOCK * n).enumerate() {
                block(bi * ROW_BLOCK, cc);
            }
        }
    }

    /// Writes the transpose of the 8 × 8 block whose row r is `src[r·ld_src ..][..8]`
    /// to rows `dst[c·ld_dst ..][..8]` (c = 0..8).
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    unsafe fn transpose8(src: &[f32], ld_src: usize, dst: &mut [f32], ld_dst: usize) {
        assert!(src.len() >= 7 * ld_src + 8 && dst.len() >= 7 * ld_dst + 8);
        let sp = src.as_ptr();
        let mut r = [_mm256_setzero_ps(); 8];
        for (i, v) in r.iter_mut().enumerate() {
            // SAFETY: the assert above keeps every 8-wide load inside `src`.
            *v = unsafe { _mm256_loadu_ps(sp.add(i * ld_src)) };
        }
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        let dp = dst.as_mut_ptr();
        for (c, v) in out.into_iter().enumerate() {
            // SAFETY: the assert above keeps every 8-wide store inside `dst`.
            unsafe { _mm256_storeu_ps(dp.add(c * ld_dst), v) };
        }
    }

    /// The [`Epilogue`] as a tile applies it in registers.
    struct TileEpilogue {
        bias: bool,
        clamp: bool,
        lo: f32,
        hi: f32,
    }

    /// Where a tile reads and writes: k products per value, A's row stride `rs`, C's
    /// row stride `ldc`, `cols` valid columns of the NR.
    #[derive(Clone, Copy)]
    struct TileGeom {
        k: usize,
        rs: usize,
        ldc: usize,
        cols: usize,
    }

    /// [`tile`] for the `take` (1 ..= MR) rows left, `V` vectors of 16 columns.
    ///
    /// # Safety
    /// As [`tile`] with R = `take`.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_tile<const V: usize>(take: usize, t: TileArgs) {
        // SAFETY: forwarded contract, R = take.
        unsafe {
            match take {
                MR => tile::<MR, V>(t),
                11 => tile::<11, V>(t),
                10 => tile::<10, V>(t),
                9 => tile::<9, V>(t),
                8 => tile::<8, V>(t),
                7 => tile::<7, V>(t),
                6 => tile::<6, V>(t),
                5 => tile::<5, V>(t),
                4 => tile::<4, V>(t),
                3 => tile::<3, V>(t),
                2 => tile::<2, V>(t),
                _ => tile::<1, V>(t),
            }
        }
    }

    /// What [`tile`] reads and writes: geometry, A at the tile's first row, the packed
    /// panel, C at the tile's first element, the panel's bias (NR values), epilogue.
    type TileArgs<'t> = (
        &'t TileGeom,
        *const f32,
        *const f32,
        &'t mut [f32],
        &'t [f32],
        &'t TileEpilogue,
    );

    /// One `R × 16·V` tile: `C[i][j] = Σ_p A[i][p] · Bp[p][j]` for i < R, j < cols,
    /// accumulated with fused multiply-adds in p order, then `+ bias[j]` and the clamp
    /// `min(max(·, lo), hi)` (`max`/`min` return the bound for NaN, as `f32::max` /
    /// `f32::min` do). V = 1 for a last panel of at most 16 columns (the packed panel
    /// is still NR wide; its zero half is not multiplied).
    ///
    /// # Safety
    /// AVX-512F must be available; `a + i·rs + p` must be readable for i < R, p < k;
    /// `bp` must hold k·NR values; `c` must hold ·ldc + cols values.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const V: usize>((g, a, bp, c, bias, epi): TileArgs) {
        let TileGeom { k, rs, ldc, cols } = *g;
        assert!(c.len() >= (R - 1) * ldc + cols && cols <= 16 * V && V <= 2 && bias.len() == NR);
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for p in 0..k {
            // The panel's row PF steps ahead into L1 (a panel of more than ~384 rows
            // does not stay there between tiles); past the panel's end the hint reads
            // nothing (`wrapping_add`: never dereferenced).
            let ahead = bp.wrapping_add((p + PF) * NR);
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16).cast());
            let mut b = [_mm512_setzero_ps(); V];
            for (v, bv) in b.iter_mut().enumerate() {
                // SAFETY: p < k, v < 2: inside the panel's k·NR values.
                *bv = unsafe { _mm512_loadu_ps(bp.add(p * NR + 16 * v)) };
            }
            for (i, row) in acc.iter_mut().enumerate() {
                // SAFETY: i < R, p < k, see the function's contract.
                let av = _mm512_set1_ps(unsafe { *a.add(i * rs + p) });
                for (r, bv) in row.iter_mut().zip(&b) {
                    *r = _mm512_fmadd_ps(av, *bv, *r);
                }
            }
        }
        if epi.bias {
            let mut b = [_mm512_setzero_ps(); V];
            for (v, bv) in b.iter_mut().enumerate() {
                // SAFETY: bias holds NR = 32 values (asserted), v < 2.
                *bv = unsafe { _mm512_loadu_ps(bias.as_ptr().add(16 * v)) };
            }
            for row in acc.iter_mut() {
                for (r, bv) in row.iter_mut().zip(&b) {
                    *r = _mm512_add_ps(*r, *bv);
                }
            }
        }
        if epi.clamp {
            let (lo, hi) = (_mm512_set1_ps(epi.lo), _mm512_set1_ps(epi.hi));
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    // max(x, lo) is lo when x is NaN (the second operand wins).
                    *v = _mm512_min_ps(_mm512_max_ps(*v, lo), hi);
                }
            }
        }
        let mut masks: [__mmask16; V] = [0; V];
        for (v, m) in masks.iter_mut().enumerate() {
            let left = cols.saturating_sub(16 * v);
            *m = if left >= 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
        }
        for (i, row) in acc.iter().enumerate() {
            let dst = c[i * ldc..].as_mut_ptr();
            for (v, (r, m)) in row.iter().zip(&masks).enumerate() {
                // SAFETY: the masks cover only columns < cols, inside `c` by the assert.
                unsafe { _mm512_mask_storeu_ps(dst.add(16 * v), *m, *r) };
            }
        }
    }
}

/// FULLY_CONNECTED: `out = act(x · Wᵀ + bias)`; weights `[n, k]`; the input is flattened
/// to `[numel / k, k]` unless `keep_num_dims` keeps its leading dimensions.
pub(crate) fn fully_connected(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    fully_connected_with(ctx, ins, None)
}

/// [`fully_connected`] keeping the packing of its (constant) weights in `cell`.
pub(crate) fn fully_connected_with(
    ctx: &Ctx,
    ins: &Ins,
    cell: Option<&PackCell>,
) -> KResult<Value> {
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
    let bias = match ins.opt(2) {
        Some(bv) => {
            let b = ins.f32(2)?;
            ensure!(b.len() == n, "bias has {} elements, expected {n}", bv.len());
            Some(b)
        }
        None => None,
    };
    let mut out = vec![0f32; m * n];
    let wm = Mat {
        data: w,
        rs: 1,
        cs: k,
    };
    sgemm_packed(
        [m, k, n],
        Mat {
            data: x,
            rs: k,
            cs: 1,
        },
        wm,
        &mut out,
        &Epilogue::new(bias, act, ctx.out_keys)?,
        cached_pack(cell, k, n, wm),
    );
    if let Some(keys) = ctx.out_keys {
        keys.mark_complete();
    }
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
    fn gemm_with_epilogue_matches_reference_then_bias_and_clamp() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        // Shapes with register-tile tails in rows (not a multiple of 8) and columns
        // (not a multiple of 32), row blocks (> 256 rows) and a single row.
        for &(m, k, n) in &[
            (1, 40, 70),
            (9, 3, 33),
            (37, 17, 31),
            (300, 64, 65),
            (513, 8, 16),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
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
            let epi = Epilogue {
                bias: Some(&bias),
                lo: 0.0,
                hi: 0.75,
                keys: None,
            };
            let mut c_ref = vec![0f32; m * n];
            sgemm_reference(m, k, n, am, bm, &mut c_ref);
            epi.apply(&mut c_ref, n);
            let mut c_fast = vec![f32::NAN; m * n];
            let keys = crate::interp::keys::KeyAcc::default();
            let epi = Epilogue {
                keys: Some(&keys),
                ..epi
            };
            sgemm_epilogue(m, k, n, am, bm, &mut c_fast, &epi);
            // Every row's keys folded: those of one scan of C.
            keys.mark_complete();
            let (lo, hi) = crate::interp::keys::key_min_max(&c_fast);
            assert_eq!(keys.range(), Some(crate::interp::keys::KeyRange { lo, hi }));
            let tol = tolerance(k) + 2.0 * f32::EPSILON;
            for (x, y) in c_ref.iter().zip(&c_fast) {
                assert!((x - y).abs() <= tol, "{m}x{k}x{n}: {x} vs {y}");
            }
        }
    }

    /// The fast path's contract, bit for bit: each element a chain of fused
    /// multiply-adds over k in index order from 0, then `+ bias`, then the clamp. Row
    /// counts cover every tail of a row block (1 ..= MR rows left, and blocks of 256
    /// plus a tail); columns every panel tail (n mod 32 of 1, 15, 16, 17, 31, 0).
    #[test]
    fn fast_gemm_is_the_fma_chain_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut shapes: Vec<(usize, usize, usize)> = (1..=14).map(|m| (m, 19, 47)).collect();
        shapes.extend([
            (25, 1, 1),
            (26, 64, 15),
            (27, 5, 16),
            (37, 33, 17),
            (256 + 11, 24, 31),
            (512 + 7, 9, 64),
            (49, 160, 96),
        ]);
        for (m, k, n) in shapes {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0..2.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-2.0..2.0)).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
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
            for (bias, lo, hi) in [
                (None, f32::NEG_INFINITY, f32::INFINITY),
                (Some(&bias[..]), 0.0, 6.0),
            ] {
                let epi = Epilogue {
                    bias,
                    lo,
                    hi,
                    keys: None,
                };
                let mut want = vec![0f32; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = 0f32;
                        for p in 0..k {
                            acc = a[i * k + p].mul_add(b[j * k + p], acc);
                        }
                        want[i * n + j] = acc;
                    }
                }
                epi.apply(&mut want, n);
                let mut got = vec![f32::NAN; m * n];
                sgemm_epilogue(m, k, n, am, bm, &mut got, &epi);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                #[cfg(target_arch = "x86_64")]
                if avx512::available() {
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{m}x{k}x{n} bias {}",
                        bias.is_some()
                    );
                    continue;
                }
                // Without AVX-512 the product goes through `matrixmultiply`: within
                // rounding only (products here up to 4 in magnitude, bias and clamp
                // up to 6).
                let tol = tolerance(k) * 4.0 + 6.0 * f32::EPSILON;
                for (x, y) in want.iter().zip(&got) {
                    assert!((x - y).abs() <= tol, "{m}x{k}x{n}: {x} vs {y}");
                }
            }
        }
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
