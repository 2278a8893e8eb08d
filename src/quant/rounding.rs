//! Rounding of INT4 weights: round to nearest, MSE-optimal scale search, and GPTQ-style
//! error-compensating rounding from calibration statistics.
//!
//! Every function here works on one weight viewed as a row-major matrix `[rows, cols]`
//! whose rows are output channels (axis 0: FULLY_CONNECTED `[out, in]`, CONV_2D
//! `[out, kh, kw, in]` flattened to `[out, kh·kw·in]`), with one scale per row or per
//! `(row, block of cols)` ([`Groups`]). Other layouts (a channel axis that is not the
//! first) are described by [`math::Channels`] and only use [`mse_scales`].
//!
//! - **nearest**: scale = max|w| / qmax per group, `round(w / scale)`.
//! - **mse**: per group, the clip ratio `r` in a grid ([`CLIP_GRID`]) whose scale
//!   `r · max|w| / qmax` gives the lowest squared rounding error (clipping a few large
//!   values buys a finer step for all the others).
//! - **gptq**: the layer's input second moment `H = Σ x xᵀ` (rows of a FULLY_CONNECTED's
//!   input, im2col patches of a CONV_2D's) makes the output error of a row `δw H δwᵀ`.
//!   Columns are quantized one at a time and the error of each is spread over the
//!   columns not yet quantized through `H⁻¹` (upper Cholesky factor), as in Frantar et
//!   al., "GPTQ" (2022); `H` is dampened by 10% of its mean diagonal
//!   ([`GPTQ_DAMPENING`]). Scales come from the mse search on the weights rounded
//!   (min/max scales instead measured no better: docs/ACCURACY.md). With error
//!   feedback (`quant::weights` runs the layers in order, `H` from the inputs `x_q` the
//!   partly quantized model gives the layer), the weights rounded are
//!   [`feedback_target`]'s `W'`, fitted so that `W' x_q` is close to the float
//!   layer's `W x_f`.
//!
//! [`layer_error`] measures what the choice costs: `Σ_rows δw H δwᵀ` with the
//! calibration `H`, or the plain squared weight error when there is none (`H = I`);
//! [`feedback_error`] the output error against the float layer, `Σ ‖W x_f − Q x_q‖²`.

pub mod fast;

use rayon::prelude::*;

use super::math::{self, Channels};

/// Clip ratios tried by the mse search: 1.00, 0.99, …, 0.50.
pub const CLIP_GRID: usize = 51;

/// Dampening added to `H`'s diagonal, relative to its mean diagonal. 10%, not the 1%
/// of Frantar et al.: the calibration sets here are small (64 samples; a
/// FULLY_CONNECTED with 128 inputs then has a rank-deficient `H`), and the stronger
/// dampening generalises better to held-out samples — the logit SQNR averaged over the
/// four test models rises by 0.9 / 0.5 dB (32 / 512 samples), best on three of four
/// (docs/ACCURACY.md, "GPTQ: what was tried").
pub const GPTQ_DAMPENING: f64 = 0.1;

/// The rounding when none is asked for and there are no calibration samples: mse (with
/// samples, gptq: [`super::Options::rounding`]). On the test models mse beats nearest
/// on average on every measure (outputs and logits, 32 and 512 held-out digits), though
/// not on every model (docs/ACCURACY.md, "Default rounding").
pub const DEFAULT: Rounding = Rounding::Mse;

/// How INT4 weights are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Scale from the channel's (block's) largest magnitude, round to nearest.
    Nearest,
    /// Scale from a clip-ratio search minimising the squared rounding error.
    #[default]
    Mse,
    /// Error-compensating rounding with the layer's input Hessian (needs calibration
    /// samples); falls back to mse for weights without one.
    Gptq,
}

impl Rounding {
    pub fn name(self) -> &'static str {
        match self {
            Rounding::Nearest => "nearest",
            Rounding::Mse => "mse",
            Rounding::Gptq => "gptq",
        }
    }
}

/// Which scale each element of a `[rows, cols]` matrix uses: one per row, or one per
/// `(row, block)` of `block` consecutive columns.
#[derive(Debug, Clone, Copy)]
pub struct Groups {
    pub rows: usize,
    pub cols: usize,
    pub block: Option<usize>,
}

impl Groups {
    fn per_row(&self) -> usize {
        self.block.map_or(1, |b| self.cols / b)
    }

    /// The group of element (r, c).
    pub fn of(&self, r: usize, c: usize) -> usize {
        r * self.per_row() + self.block.map_or(0, |b| c / b)
    }

    /// The same grouping as [`Channels`] over the flat matrix.
    pub fn channels(&self) -> Channels {
        Channels {
            channels: self.rows * self.per_row(),
            inner: self.block.unwrap_or(self.cols),
        }
    }
}

/// Squared error of rounding `v` with `scale` to `[-qmax, qmax]`.
#[inline(always)]
fn sq_err(v: f32, scale: f32, qmax: f32) -> f64 {
    let q = (v / scale).round().clamp(-qmax, qmax);
    let d = (v - q * scale) as f64;
    d * d
}

/// Per channel, the scale among `r · max|w| / qmax` (r on [`CLIP_GRID`]) with the
/// lowest squared rounding error; ratio 1 (the nearest-rounding scale) wins ties.
/// Long channels of large weights ([`fast::uses_histogram`]) estimate the errors on a
/// histogram instead of summing all 51 over every element: INT4 on a fine one, every
/// candidate ([`fast::fine_histogram_argmin`]), INT8 on a coarse one, coarse to fine
/// ([`fast::histogram_scale`]).
/// Channels are searched in parallel (rayon).
pub fn mse_scales(values: &[f32], ch: Channels, qmax: f32) -> Vec<f32> {
    let base = math::symmetric_scales(values, ch, qmax);
    let mut members = vec![Vec::new(); ch.channels];
    for (i, &v) in values.iter().enumerate() {
        members[ch.of(i)].push(v);
    }
    // Channels in parallel (the int8 modes' default clipping searches every weight
    // here): each channel's sums run in the same order on one thread.
    base.par_iter()
        .zip(&members)
        .map(|(&s, v)| {
            if fast::uses_histogram(v.len(), values.len()) {
                if qmax <= 7.0 {
                    let k = fast::fine_histogram_argmin(&math::f32_bytes(v), s, qmax);
                    return s * clip_ratio(k);
                }
                return fast::histogram_scale(v, s, qmax);
            }
            let e = grid_errors(v, s, qmax);
            let best = (0..CLIP_GRID).fold(0, |b, k| if e[k] < e[b] { k } else { b });
            s * clip_ratio(best)
        })
        .collect()
}

/// Squared rounding error of a channel's values `v` at each scale `s · clip_ratio(k)` of
/// the grid, compiled with AVX2 when the CPU has it (the baseline build calls `roundf`
/// for each of the 51 terms of every value). Same code, same bits: each ratio's sum is
/// added in element order, no fused multiply-add, and the AVX rounding sequence LLVM
/// emits for `round` is exact.
fn grid_errors(v: &[f32], s: f32, qmax: f32) -> [f64; CLIP_GRID] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { grid_errors_avx2(v, s, qmax) };
    }
    grid_errors_body(v, s, qmax)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn grid_errors_avx2(v: &[f32], s: f32, qmax: f32) -> [f64; CLIP_GRID] {
    grid_errors_body(v, s, qmax)
}

#[inline(always)]
fn grid_errors_body(v: &[f32], s: f32, qmax: f32) -> [f64; CLIP_GRID] {
    let mut e = [0f64; CLIP_GRID];
    for &x in v {
        for (k, e) in e.iter_mut().enumerate() {
            *e += sq_err(x, s * clip_ratio(k), qmax);
        }
    }
    e
}

#[inline(always)]
const fn clip_ratio(k: usize) -> f32 {
    1.0 - k as f32 / (CLIP_GRID as f32 - 1.0) * 0.5
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ U`) of a dampened `H` (`n × n`,
/// row-major). Columns with a zero diagonal (inputs that never fire) get diagonal 1.
/// `None` when `H` is not positive definite even after dampening.
pub fn inverse_cholesky_upper(h: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut a = h.to_vec();
    let mean_diag = (0..n).map(|i| a[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let damp = GPTQ_DAMPENING * mean_diag.max(f64::MIN_POSITIVE);
    for i in 0..n {
        if a[i * n + i] <= 0.0 {
            a[i * n + i] = 1.0;
        }
        a[i * n + i] += damp;
    }
    let l = cholesky_lower(&a, n)?;
    // H⁻¹ = L⁻ᵀ L⁻¹: invert L (lower triangular), then form the product.
    let mut li = vec![0f64; n * n];
    for c in 0..n {
        li[c * n + c] = 1.0 / l[c * n + c];
        for r in c + 1..n {
            let s: f64 = (c..r).map(|k| l[r * n + k] * li[k * n + c]).sum();
            li[r * n + c] = -s / l[r * n + r];
        }
    }
    let mut inv = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (i..n).map(|k| li[k * n + i] * li[k * n + j]).sum();
            inv[i * n + j] = s;
            inv[j * n + i] = s;
        }
    }
    // Upper factor of H⁻¹: the transpose of its lower factor.
    let lo = cholesky_lower(&inv, n)?;
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = lo[j * n + i];
        }
    }
    Some(u)
}

/// Lower Cholesky factor of a symmetric positive definite `n × n` matrix.
fn cholesky_lower(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// GPTQ: quantizes `w` (`[rows, cols]`) column by column with fixed `scales` (one per
/// group), compensating each column's rounding error on the later columns through
/// `u`, the upper Cholesky factor of the dampened inverse Hessian
/// ([`inverse_cholesky_upper`]). Returns the integer values, row-major.
pub fn gptq(w: &[f32], g: Groups, scales: &[f32], u: &[f64], qmax: f32) -> Vec<i8> {
    let (rows, n) = (g.rows, g.cols);
    let mut work: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let mut q = vec![0i8; w.len()];
    for c in 0..n {
        let d = u[c * n + c];
        for r in 0..rows {
            let s = scales[g.of(r, c)] as f64;
            let v = work[r * n + c];
            let qi = (v / s).round().clamp(-qmax as f64, qmax as f64);
            q[r * n + c] = qi as i8;
            let e = (v - qi * s) / d;
            let row = &mut work[r * n..(r + 1) * n];
            for j in c + 1..n {
                row[j] -= e * u[c * n + j];
            }
        }
    }
    q
}

/// Act-order GPTQ: [`gptq`] with the columns quantized in order of decreasing
/// `H` diagonal (the inputs with the most energy first, while the most columns are
/// left to absorb their error; Frantar et al.'s "act-order"). `h` is the undampened
/// `n × n` Hessian; scales stay those of the original groups. `None` when the
/// dampened, permuted `H` is not positive definite.
pub fn gptq_act_order(
    w: &[f32],
    g: Groups,
    scales: &[f32],
    h: &[f64],
    qmax: f32,
) -> Option<Vec<i8>> {
    let n = g.cols;
    let mut perm: Vec<usize> = (0..n).collect();
    // Stable: ties keep the natural order.
    perm.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]));
    let mut hp = vec![0f64; n * n];
    for (i, &pi) in perm.iter().enumerate() {
        for (j, &pj) in perm.iter().enumerate() {
            hp[i * n + j] = h[pi * n + pj];
        }
    }
    let u = inverse_cholesky_upper(&hp, n)?;
    let rows = g.rows;
    let mut work: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let mut q = vec![0i8; w.len()];
    for (k, &c) in perm.iter().enumerate() {
        let d = u[k * n + k];
        for r in 0..rows {
            let s = scales[g.of(r, c)] as f64;
            let v = work[r * n + c];
            let qi = (v / s).round().clamp(-qmax as f64, qmax as f64);
            q[r * n + c] = qi as i8;
            let e = (v - qi * s) / d;
            let row = &mut work[r * n..(r + 1) * n];
            for (j, &pj) in perm.iter().enumerate().skip(k + 1) {
                row[pj] -= e * u[k * n + j];
            }
        }
    }
    Some(q)
}

/// Error feedback: the weights `W'` (`[rows, n]`) that map the quantized model's layer
/// inputs `x_q` closest to the float layer's outputs `W x_f`, shrunk toward `W`:
/// `W' (H_q + λI) = W (C + λI)ᵀ` with `H_q = Σ x_q x_qᵀ`, `C = Σ x_q x_fᵀ` (`n × n`,
/// row-major) and `λ` = [`GPTQ_DAMPENING`] × the mean diagonal of `H_q`. `None` when
/// there are no inputs (`H_q = 0`), `H_q + λI` is not positive definite or the fit is
/// not finite.
pub fn feedback_target(w: &[f32], n: usize, hq: &[f64], c: &[f64]) -> Option<Vec<f32>> {
    let mean_diag = (0..n).map(|i| hq[i * n + i]).sum::<f64>() / n.max(1) as f64;
    if !(mean_diag > 0.0 && mean_diag.is_finite()) {
        return None;
    }
    let damp = GPTQ_DAMPENING * mean_diag;
    let mut a = hq.to_vec();
    for i in 0..n {
        a[i * n + i] += damp;
    }
    let l = cholesky_lower(&a, n)?;
    let mut out = Vec::with_capacity(w.len());
    for wr in w.chunks_exact(n) {
        // rhs = (C + λI) wᵀ
        let b: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| c[i * n + j] * wr[j] as f64).sum::<f64>() + damp * wr[i] as f64)
            .collect();
        let mut y = vec![0f64; n];
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
            y[i] = (b[i] - s) / l[i * n + i];
        }
        let mut x = vec![0f64; n];
        for i in (0..n).rev() {
            let t: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
            x[i] = (y[i] - t) / l[i * n + i];
        }
        out.extend(x.into_iter().map(|v| v as f32));
    }
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Accumulates `C += Σ a bᵀ` over the rows of `a` and `b` (both `[rows, n]`).
pub fn add_cross_products(c: &mut [f64], a: &[f32], b: &[f32], n: usize) {
    for (ra, rb) in a.chunks_exact(n).zip(b.chunks_exact(n)) {
        for i in 0..n {
            let ai = ra[i] as f64;
            if ai == 0.0 {
                continue;
            }
            let ci = &mut c[i * n..(i + 1) * n];
            for j in 0..n {
                ci[j] += ai * rb[j] as f64;
            }
        }
    }
}

/// The layer's output error against the float layer with error feedback:
/// `Σ ‖W x_f − Q̂ x_q‖²` over the calibration rows, for `Q̂ = q·scale` (`[rows, n]`), from
/// `H_q = Σ x_q x_qᵀ`, `C = Σ x_q x_fᵀ` and `H_f = Σ x_f x_fᵀ`: per row
/// `Q̂ H_q Q̂ᵀ − 2 Q̂ C Wᵀ + W H_f Wᵀ`. Also returns the signal `Σ_rows W H_f Wᵀ`.
pub fn feedback_error(
    w: &[f32],
    q: &[i8],
    g: Groups,
    scales: &[f32],
    stats: FeedbackStats,
) -> (f64, f64) {
    let n = g.cols;
    let (mut err, mut sig) = (0f64, 0f64);
    let mut d = vec![0f64; n];
    for r in 0..g.rows {
        for c in 0..n {
            d[c] = q[r * n + c] as f64 * scales[g.of(r, c)] as f64;
        }
        let wr = &w[r * n..(r + 1) * n];
        let (mut qq, mut qw, mut ww) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let (hq, c, hf) = (
                &stats.hq[i * n..(i + 1) * n],
                &stats.cross[i * n..(i + 1) * n],
                &stats.hf[i * n..(i + 1) * n],
            );
            let (mut a, mut b, mut e) = (0f64, 0f64, 0f64);
            for j in 0..n {
                a += hq[j] * d[j];
                b += c[j] * wr[j] as f64;
                e += hf[j] * wr[j] as f64;
            }
            qq += d[i] * a;
            qw += d[i] * b;
            ww += wr[i] as f64 * e;
        }
        err += (qq - 2.0 * qw + ww).max(0.0);
        sig += ww;
    }
    (err, sig)
}

/// The second moments [`feedback_error`] needs (`n × n`, row-major, symmetric but
/// `cross`).
#[derive(Clone, Copy)]
pub struct FeedbackStats<'a> {
    /// `Σ x_q x_qᵀ`: the quantized model's layer inputs.
    pub hq: &'a [f64],
    /// `Σ x_q x_fᵀ`.
    pub cross: &'a [f64],
    /// `Σ x_f x_fᵀ`: the float model's.
    pub hf: &'a [f64],
}

/// Output error of quantized weights: `Σ_rows δw H δwᵀ` for `δw = w − q·scale`, or the
/// squared weight error when `h` is `None`. Also returns the signal `Σ_rows w H wᵀ`
/// (`Σ w²`) so that `10·log10(signal / error)` is the layer's SQNR estimate.
pub fn layer_error(
    w: &[f32],
    q: &[i8],
    g: Groups,
    scales: &[f32],
    h: Option<&[f64]>,
) -> (f64, f64) {
    let n = g.cols;
    let mut err = 0f64;
    let mut sig = 0f64;
    let mut d = vec![0f64; n];
    for r in 0..g.rows {
        for c in 0..n {
            d[c] = w[r * n + c] as f64 - q[r * n + c] as f64 * scales[g.of(r, c)] as f64;
        }
        let wr = &w[r * n..(r + 1) * n];
        match h {
            None => {
                err += d.iter().map(|x| x * x).sum::<f64>();
                sig += wr.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            }
            Some(h) => {
                for i in 0..n {
                    let hi = &h[i * n..(i + 1) * n];
                    let (mut a, mut b) = (0f64, 0f64);
                    for j in 0..n {
                        a += hi[j] * d[j];
                        b += hi[j] * wr[j] as f64;
                    }
                    err += d[i] * a;
                    sig += wr[i] as f64 * b;
                }
            }
        }
    }
    (err, sig)
}

/// Accumulates `H += Σ x xᵀ` over the rows of `x` (`[rows, n]`); only the upper
/// triangle is computed, then mirrored by [`symmetrize`].
pub fn add_outer_products(h: &mut [f64], x: &[f32], n: usize) {
    for row in x.chunks_exact(n) {
        for i in 0..n {
            let xi = row[i] as f64;
            if xi == 0.0 {
                continue;
            }
            let hi = &mut h[i * n..(i + 1) * n];
            for j in i..n {
                hi[j] += xi * row[j] as f64;
            }
        }
    }
}

/// Copies the upper triangle of `h` to the lower one.
pub fn symmetrize(h: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            h[i * n + j] = h[j * n + i];
        }
    }
}

/// The geometry of a CONV_2D for im2col.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    /// Input `[n, h, w, c]`.
    pub input: [usize; 4],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub same_padding: bool,
}

impl ConvGeometry {
    /// Patch length `kh·kw·c`, the column count of the filter viewed as a matrix.
    pub fn patch_len(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.input[3]
    }

    /// Output size and padding before, per spatial dimension (TFLite's rule).
    fn out_and_pad(&self, d: usize) -> (usize, usize) {
        let (i, k, s, dil) = (
            self.input[1 + d],
            self.kernel[d],
            self.stride[d],
            self.dilation[d],
        );
        let eff = (k - 1) * dil + 1;
        if self.same_padding {
            let out = i.div_ceil(s);
            let total = ((out - 1) * s + eff).saturating_sub(i);
            (out, total / 2)
        } else {
            (i.saturating_sub(eff) / s + 1, 0)
        }
    }

    /// The im2col patches of one input (`[n, h, w, c]`, NHWC), at most `max_patches`
    /// of them (evenly spaced) so that large feature maps stay cheap; each patch is
    /// `[kh, kw, c]` in the filter's element order, zeros where it overhangs.
    pub fn patches(&self, x: &[f32], max_patches: usize) -> Vec<f32> {
        let [n, h, w, c] = self.input;
        let (oh, ph) = self.out_and_pad(0);
        let (ow, pw) = self.out_and_pad(1);
        let total = n * oh * ow;
        let step = total.div_ceil(max_patches.max(1)).max(1);
        let len = self.patch_len();
        let mut out = Vec::with_capacity(total.div_ceil(step) * len);
        for p in (0..total).step_by(step) {
            let (b, rem) = (p / (oh * ow), p % (oh * ow));
            let (oy, ox) = (rem / ow, rem % ow);
            for ky in 0..self.kernel[0] {
                let iy = (oy * self.stride[0] + ky * self.dilation[0]) as isize - ph as isize;
                for kx in 0..self.kernel[1] {
                    let ix = (ox * self.stride[1] + kx * self.dilation[1]) as isize - pw as isize;
                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                        out.extend(std::iter::repeat_n(0.0, c));
                    } else {
                        let at = ((b * h + iy as usize) * w + ix as usize) * c;
                        out.extend_from_slice(&x[at..at + c]);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed pseudo-random sequence (xorshift), in [-1, 1); also used by
    /// `ptq::clipping`'s tests.
    pub(crate) fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The AVX2 build of the grid search (the one `mse_scales` runs on this CPU) adds
    /// the same bits as the baseline body: values at exact halves of a step, of both
    /// signs, zeros, values clipped at ±qmax, noise, for int8 and int4 maxima.
    #[test]
    fn grid_errors_dispatch_equals_the_body_bit_for_bit() {
        let mut v = noise(300, 7);
        let s = 0.01f32;
        for k in -130..130 {
            v.push((k as f32 + 0.5) * s);
            v.push(k as f32 * s * 0.75);
        }
        v.extend([0.0, -0.0, 5.0, -5.0, 1e-30, -1e-30]);
        for qmax in [127.0, 7.0] {
            let a = grid_errors(&v, s, qmax).map(f64::to_bits);
            let b = grid_errors_body(&v, s, qmax).map(f64::to_bits);
            assert_eq!(a, b, "qmax {qmax}");
        }
    }

    #[test]
    fn mse_scales_never_lose_to_nearest_and_clip_outliers() {
        // Gaussian-ish rows with one outlier each: clipping pays.
        let (rows, cols) = (8, 64);
        let mut w: Vec<f32> = noise(rows * cols, 7)
            .chunks(4)
            .flat_map(|c| {
                let s: f32 = c.iter().sum::<f32>() / 2.0;
                [s, s * 0.5, -s, s * 0.25]
            })
            .collect();
        for r in 0..rows {
            w[r * cols] = 3.0;
        }
        let g = Groups {
            rows,
            cols,
            block: None,
        };
        let near = math::symmetric_scales(&w, g.channels(), 7.0);
        let mse = mse_scales(&w, g.channels(), 7.0);
        let qn = math::quantize_symmetric(&w, g.channels(), &near, 7.0);
        let qm = math::quantize_symmetric(&w, g.channels(), &mse, 7.0);
        let (en, _) = layer_error(&w, &qn, g, &near, None);
        let (em, _) = layer_error(&w, &qm, g, &mse, None);
        assert!(em < en * 0.95, "mse {em} vs nearest {en}");
        assert!(mse.iter().zip(&near).all(|(m, n)| m <= n && *m >= n * 0.5));
    }

    #[test]
    fn act_order_is_gptq_in_the_order_of_decreasing_diagonal() {
        // Columns scaled so that H's diagonal decreases: act-order keeps the natural
        // order and must give gptq's result exactly; reversed, it still runs.
        let (rows, cols) = (6, 12);
        let x: Vec<f32> = noise(200 * cols, 5)
            .chunks(cols)
            .flat_map(|r| {
                (0..cols)
                    .map(|j| r[j] * (cols - j) as f32 + 0.3 * r[(j + 1) % cols])
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut h = vec![0f64; cols * cols];
        add_outer_products(&mut h, &x, cols);
        symmetrize(&mut h, cols);
        assert!((1..cols).all(|j| h[j * cols + j] < h[(j - 1) * cols + j - 1]));
        let w = noise(rows * cols, 9);
        let g = Groups {
            rows,
            cols,
            block: None,
        };
        let s = mse_scales(&w, g.channels(), 7.0);
        let u = inverse_cholesky_upper(&h, cols).unwrap();
        let natural = gptq(&w, g, &s, &u, 7.0);
        assert_eq!(gptq_act_order(&w, g, &s, &h, 7.0).unwrap(), natural);
        // Reversed energies: a different order, still a valid rounding with lower
        // layer error than nearest.
        let mut hr = vec![0f64; cols * cols];
        for i in 0..cols {
            for j in 0..cols {
                hr[i * cols + j] = h[(cols - 1 - i) * cols + (cols - 1 - j)];
            }
        }
        let q = gptq_act_order(&w, g, &s, &hr, 7.0).unwrap();
        assert!(q.iter().all(|&v| (-7..=7).contains(&v)));
        let near_s = math::symmetric_scales(&w, g.channels(), 7.0);
        let near = math::quantize_symmetric(&w, g.channels(), &near_s, 7.0);
        let (en, _) = layer_error(&w, &near, g, &near_s, Some(&hr));
        let (eq, _) = layer_error(&w, &q, g, &s, Some(&hr));
        assert!(eq < en, "act-order {eq} vs nearest {en}");
    }

    #[test]
    fn cholesky_factor_inverts_the_dampened_hessian() {
        let n = 5;
        let x = noise(40 * n, 3);
        let mut h = vec![0f64; n * n];
        add_outer_products(&mut h, &x, n);
        symmetrize(&mut h, n);
        let u = inverse_cholesky_upper(&h, n).unwrap();
        // (Uᵀ U) (H + λI) = I.
        let damp = GPTQ_DAMPENING * (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0;
                for k in 0..n {
                    let inv_ik: f64 = (0..n).map(|m| u[m * n + i] * u[m * n + k]).sum();
                    let hk = h[k * n + j] + if k == j { damp } else { 0.0 };
                    s += inv_ik * hk;
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-9, "({i},{j}) = {s}");
            }
        }
    }

    #[test]
    fn gptq_lowers_the_output_error_on_correlated_inputs() {
        let (rows, cols) = (16, 32);
        // Correlated inputs: each column mixes its neighbour.
        let base = noise(400 * cols, 11);
        let x: Vec<f32> = base
            .chunks(cols)
            .flat_map(|r| {
                (0..cols)
                    .map(|j| r[j] + 0.8 * r[(j + 1) % cols])
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut h = vec![0f64; cols * cols];
        add_outer_products(&mut h, &x, cols);
        symmetrize(&mut h, cols);
        let w = noise(rows * cols, 5);
        let g = Groups {
            rows,
            cols,
            block: None,
        };
        let scales = mse_scales(&w, g.channels(), 7.0);
        let qn = math::quantize_symmetric(&w, g.channels(), &scales, 7.0);
        let u = inverse_cholesky_upper(&h, cols).unwrap();
        let qg = gptq(&w, g, &scales, &u, 7.0);
        let (en, _) = layer_error(&w, &qn, g, &scales, Some(&h));
        let (eg, _) = layer_error(&w, &qg, g, &scales, Some(&h));
        assert!(eg < en * 0.8, "gptq {eg} vs rounding {en}");
        assert!(qg.iter().all(|&v| (-7..=7).contains(&v)));
    }

    /// `Σ a bᵀ` over rows, `n × n`, computed directly.
    fn moments(a: &[f32], b: &[f32], n: usize) -> Vec<f64> {
        let mut m = vec![0f64; n * n];
        for (ra, rb) in a.chunks(n).zip(b.chunks(n)) {
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] += ra[i] as f64 * rb[j] as f64;
                }
            }
        }
        m
    }

    #[test]
    fn cross_products_are_the_direct_sum() {
        let n = 6;
        let (a, b) = (noise(30 * n, 2), noise(30 * n, 8));
        let mut c = vec![0f64; n * n];
        add_cross_products(&mut c, &a, &b, n);
        let want = moments(&a, &b, n);
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-9));
    }

    /// Inputs `x_f` and a distorted copy `x_q` (each input scaled and mixed with its
    /// neighbour, plus noise), as a layer sees them after quantized layers.
    fn distorted(rows: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let xf = noise(rows * n, 13);
        let e = noise(rows * n, 17);
        let xq = xf
            .chunks(n)
            .zip(e.chunks(n))
            .flat_map(|(r, e)| {
                (0..n)
                    .map(|j| 0.9 * r[j] + 0.2 * r[(j + 1) % n] + 0.05 * e[j])
                    .collect::<Vec<_>>()
            })
            .collect();
        (xf, xq)
    }

    #[test]
    fn feedback_target_undoes_the_input_error_and_is_w_without_one() {
        let (rows, n) = (5, 8);
        let w = noise(rows * n, 21);
        let (xf, xq) = distorted(400, n);
        // Same inputs: W itself (the shrinkage pulls toward W, the fit is W).
        let hf = moments(&xf, &xf, n);
        let same = feedback_target(&w, n, &hf, &hf).unwrap();
        assert!(same.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-5));
        // No inputs: no fit (plain GPTQ on W then).
        let zero = vec![0f64; n * n];
        assert!(feedback_target(&w, n, &zero, &zero).is_none());
        // Distorted inputs: W' x_q is much closer to W x_f than W x_q is.
        let (hq, c) = (moments(&xq, &xq, n), moments(&xq, &xf, n));
        let target = feedback_target(&w, n, &hq, &c).unwrap();
        let g = Groups {
            rows,
            cols: n,
            block: None,
        };
        let stats = FeedbackStats {
            hq: &hq,
            cross: &c,
            hf: &hf,
        };
        // Σ ‖W x_f − V x_q‖² over the rows, summed directly.
        let out_err = |v: &[f32]| -> f64 {
            let mut e = 0f64;
            for (rf, rq) in xf.chunks(n).zip(xq.chunks(n)) {
                for r in 0..rows {
                    let want: f64 = (0..n).map(|j| w[r * n + j] as f64 * rf[j] as f64).sum();
                    let got: f64 = (0..n).map(|j| v[r * n + j] as f64 * rq[j] as f64).sum();
                    e += (want - got) * (want - got);
                }
            }
            e
        };
        assert!(
            out_err(&target) < out_err(&w) * 0.2,
            "target {} vs W {}",
            out_err(&target),
            out_err(&w)
        );
        // feedback_error matches the direct sum for quantized values.
        let s = mse_scales(&w, g.channels(), 7.0);
        let q = math::quantize_symmetric(&w, g.channels(), &s, 7.0);
        let deq: Vec<f32> = (0..w.len()).map(|i| q[i] as f32 * s[i / n]).collect();
        let (e, sig) = feedback_error(&w, &q, g, &s, stats);
        let direct = out_err(&deq);
        assert!(
            (e - direct).abs() < 1e-6 * direct.max(1.0),
            "{e} vs {direct}"
        );
        let (_, sig_w) = layer_error(&w, &q, g, &s, Some(&hf));
        assert!((sig - sig_w).abs() < 1e-9 * sig_w);
        // GPTQ on the target with H_q beats nearest of W on that error.
        let qg = gptq_act_order(
            &target,
            g,
            &mse_scales(&target, g.channels(), 7.0),
            &hq,
            7.0,
        )
        .unwrap();
        let sg = mse_scales(&target, g.channels(), 7.0);
        let ns = math::symmetric_scales(&w, g.channels(), 7.0);
        let qn = math::quantize_symmetric(&w, g.channels(), &ns, 7.0);
        let (eg, _) = feedback_error(&w, &qg, g, &sg, stats);
        let (en, _) = feedback_error(&w, &qn, g, &ns, stats);
        assert!(eg < en * 0.5, "gptq with feedback {eg} vs nearest {en}");
    }

    #[test]
    fn im2col_matches_a_direct_convolution() {
        let geo = ConvGeometry {
            input: [1, 5, 4, 3],
            kernel: [3, 2],
            stride: [2, 1],
            dilation: [1, 2],
            same_padding: true,
        };
        let x = noise(5 * 4 * 3, 9);
        let wt = noise(2 * geo.patch_len(), 4);
        let p = geo.patches(&x, usize::MAX);
        let (oh, ph) = geo.out_and_pad(0);
        let (ow, pw) = geo.out_and_pad(1);
        assert_eq!(p.len(), oh * ow * geo.patch_len());
        for oy in 0..oh {
            for ox in 0..ow {
                let patch = &p[(oy * ow + ox) * geo.patch_len()..][..geo.patch_len()];
                for o in 0..2 {
                    let via: f32 = patch
                        .iter()
                        .zip(&wt[o * geo.patch_len()..])
                        .map(|(a, b)| a * b)
                        .sum();
                    let mut direct = 0f32;
                    for ky in 0..3 {
                        for kx in 0..2 {
                            let iy = (oy * 2 + ky) as isize - ph as isize;
                            let ix = (ox + kx * 2) as isize - pw as isize;
                            if iy < 0 || ix < 0 || iy >= 5 || ix >= 4 {
                                continue;
                            }
                            for c in 0..3 {
                                direct += x[((iy as usize) * 4 + ix as usize) * 3 + c]
                                    * wt[o * geo.patch_len() + (ky * 2 + kx) * 3 + c];
                            }
                        }
                    }
                    assert!((via - direct).abs() < 1e-5);
                }
            }
        }
    }
}
