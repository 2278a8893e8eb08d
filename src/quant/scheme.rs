//! The quantization scheme: what an integer value means and how its parameters are
//! chosen. One place for the arithmetic of parameters — the activation width,
//! asymmetric int8 / symmetric int16 activation parameters, affine quantization of
//! constants read like activations, bias scales (`s_in × s_w`) and their integer
//! limits, and TF's fake-quant nudging of trained `[min, max]` ranges.
//!
//! Conventions (TFLite's): `real = (q - zero_point) * scale`; rounding is to nearest,
//! ties away from zero. The bulk kernels over weight bytes (symmetric per-channel
//! scales, INT4 packing, float16) are in [`super::math`].

use crate::error::{Error, Loc, Result};
use crate::fb::TensorType;
use crate::ir::QuantParams;

/// Integer width of activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Width {
    /// int8 activations, int8 weights, int32 biases.
    #[default]
    Int8,
    /// int16 activations (symmetric), int8 weights, int64 (or int32) biases.
    Int16x8,
}

impl Width {
    /// Bits of an activation.
    pub fn bits(self) -> u32 {
        match self {
            Width::Int8 => 8,
            Width::Int16x8 => 16,
        }
    }

    /// The type of an activation.
    pub fn dtype(self) -> TensorType {
        match self {
            Width::Int8 => TensorType::Int8,
            Width::Int16x8 => TensorType::Int16,
        }
    }

    /// The integer range activations use: int8 all of it, int16 symmetric
    /// (`±32767`, zero point 0).
    pub fn int_range(self) -> (f32, f32) {
        match self {
            Width::Int8 => (-128.0, 127.0),
            Width::Int16x8 => (-32767.0, 32767.0),
        }
    }

    /// The bias type's default bits: 32 for int8, 64 for 16x8 (as TF's converter).
    /// `int8` or `int16x8`, as `--mode` names them.
    pub fn name(self) -> &'static str {
        match self {
            Width::Int8 => "int8",
            Width::Int16x8 => "int16x8",
        }
    }

    pub fn default_bias_bits(self) -> u32 {
        match self {
            Width::Int8 => 32,
            Width::Int16x8 => 64,
        }
    }
}

/// Asymmetric int8 / symmetric int16 parameters for a range, widened to include 0.
pub fn activation_params(min: f32, max: f32, width: Width) -> QuantParams {
    let (min, max) = (min.min(0.0), max.max(0.0));
    match width {
        Width::Int8 => {
            if max - min <= f32::MIN_POSITIVE {
                // All zeros: any scale represents them; take that of [-1, 1] so that
                // the rescaling multipliers of the kernels stay ordinary.
                return activation_params(-1.0, 1.0, width);
            }
            let scale = (max as f64 - min as f64) / 255.0;
            let zp = (-128.0 - min as f64 / scale).round().clamp(-128.0, 127.0) as i64;
            QuantParams::per_tensor(scale as f32, zp)
        }
        Width::Int16x8 => {
            let m = min.abs().max(max.abs());
            if m <= f32::MIN_POSITIVE {
                return QuantParams::per_tensor(1.0 / 32767.0, 0);
            }
            QuantParams::per_tensor(m / 32767.0, 0)
        }
    }
}

/// Symmetric per-tensor parameters of a constant operand of an integer BATCH_MATMUL
/// whose range is `[lo, hi]`: int8 takes `max(|lo|, hi) / 127` with zero point 0 (the
/// kernel reads both operands as symmetric), int16 its ordinary symmetric parameters.
pub fn symmetric_operand_params(lo: f32, hi: f32, width: Width) -> QuantParams {
    let m = lo.abs().max(hi);
    match width {
        Width::Int8 => QuantParams::per_tensor(if m > 0.0 { m / 127.0 } else { 1.0 }, 0),
        Width::Int16x8 => activation_params(-m, m, width),
    }
}

/// `round(v / scale) + zero_point`, clamped to the width's range, as little-endian
/// bytes of int8 or int16 (per-tensor parameters).
pub fn affine_bytes(values: &[f32], qp: &QuantParams, width: Width) -> Vec<u8> {
    let (s, z) = (qp.scale[0], qp.zero_point[0] as f32);
    let q = values.iter().map(move |&v| (v / s).round() + z);
    match width {
        Width::Int8 => q.map(|x| x.clamp(-128.0, 127.0) as i8 as u8).collect(),
        // Symmetric int16: a saturated sentinel lands on -32767, the range's end.
        Width::Int16x8 => q
            .flat_map(|x| (x.clamp(-32767.0, 32767.0) as i16).to_le_bytes())
            .collect(),
    }
}

/// The largest magnitude a bias of `bits` (32 or 64) holds, as f64.
pub fn bias_limit(bits: u32) -> f64 {
    if bits == 64 {
        i64::MAX as f64
    } else {
        i32::MAX as f64
    }
}

/// The integer type of a bias of `bits`.
pub fn bias_dtype(bits: u32) -> TensorType {
    if bits == 64 {
        TensorType::Int64
    } else {
        TensorType::Int32
    }
}

/// Bias scales: `s_in × s_w[c]` for each of `n` elements (one weight scale for all when
/// the weight is per tensor).
pub fn bias_scales(s_in: f32, w_scales: &[f32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|c| {
            s_in * w_scales[if w_scales.len() == 1 {
                0
            } else {
                c % w_scales.len()
            }]
        })
        .collect()
}

/// A bias quantized at `scales` as little-endian int32 or int64 bytes; `None` when a
/// value does not fit `bits` (the caller widens weight scales first, see
/// [`widen_weight_scales_for_bias`], so this is a bug when it happens).
pub fn quantize_bias(values: &[f32], scales: &[f32], bits: u32) -> Option<Vec<u8>> {
    let limit = bias_limit(bits);
    let q: Vec<i64> = values
        .iter()
        .zip(scales)
        .map(|(&b, &s)| (b as f64 / s as f64).round().clamp(-limit, limit) as i64)
        .collect();
    if q.iter().any(|&v| v.unsigned_abs() as f64 >= limit) {
        return None;
    }
    Some(if bits == 64 {
        q.iter().flat_map(|v| v.to_le_bytes()).collect()
    } else {
        q.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()
    })
}

/// Widens the weight `scales` (one per channel, or one) until every bias value fits
/// `bits` at `s_in × s_w`, with a 1% margin below the type's limit (the bias is rounded
/// after scaling). TF's converter does the same. Returns how many scales it widened.
pub fn widen_weight_scales_for_bias(
    bias: &[f32],
    s_in: f32,
    bits: u32,
    scales: &mut [f32],
) -> usize {
    let limit = bias_limit(bits) * 0.99;
    let mut widened = 0;
    for (c, &bv) in bias.iter().enumerate() {
        let k = if scales.len() == 1 {
            0
        } else {
            c % scales.len()
        };
        let need = (bv.abs() as f64 / (s_in as f64 * limit)) as f32;
        if need > scales[k] {
            scales[k] = need;
            widened += 1;
        }
    }
    widened
}

/// TF's fake-quant nudging: `[min, max]` → scale and an integer zero point (int8 range,
/// narrow ranges start at −127).
pub fn fake_quant_params(
    min: f32,
    max: f32,
    num_bits: i32,
    narrow: bool,
    at: &Loc,
) -> Result<QuantParams> {
    if num_bits != 8 {
        return Err(Error::unsupported(
            at.clone(),
            format!("FAKE_QUANT with {num_bits} bits (only 8-bit fake quantization maps to int8)"),
        ));
    }
    if !(min <= 0.0 && max >= 0.0 && max > min) {
        return Err(Error::malformed(
            at.clone(),
            format!("FAKE_QUANT range [{min}, {max}] must contain 0"),
        ));
    }
    let (qmin, qmax) = (if narrow { -127.0 } else { -128.0 }, 127.0f64);
    let scale = (max as f64 - min as f64) / (qmax - qmin);
    let zp = (qmin - min as f64 / scale).round().clamp(qmin, qmax) as i64;
    Ok(QuantParams::per_tensor(scale as f32, zp))
}

/// The real range `[(qmin − z)·s, (qmax − z)·s]` that per-tensor parameters represent
/// at `width`.
pub fn represented_range(p: &QuantParams, width: Width) -> (f32, f32) {
    let (qmin, qmax) = width.int_range();
    let (s, z) = (p.scale[0], p.zero_point[0] as f32);
    ((qmin - z) * s, (qmax - z) * s)
}

#[cfg(test)]
mod tests {
    //! Exact values of the parameter arithmetic, worked by hand from the formulas in the
    //! docs above (TFLite's conventions). Mutation testing (docs/TESTING.md) runs these.
    use super::*;

    fn pt(scale: f32, zp: i64) -> QuantParams {
        QuantParams::per_tensor(scale, zp)
    }

    #[test]
    fn widths() {
        assert_eq!((Width::Int8.bits(), Width::Int16x8.bits()), (8, 16));
        assert_eq!(Width::Int8.dtype(), TensorType::Int8);
        assert_eq!(Width::Int16x8.dtype(), TensorType::Int16);
        assert_eq!(Width::Int8.int_range(), (-128.0, 127.0));
        assert_eq!(Width::Int16x8.int_range(), (-32767.0, 32767.0));
        assert_eq!(Width::Int8.default_bias_bits(), 32);
        assert_eq!(Width::Int16x8.default_bias_bits(), 64);
    }

    #[test]
    fn activation_params_int8() {
        // [-1, 3]: scale 4/255, zero point round(-128 + 1 / (4/255)) = round(-64.25).
        let p = activation_params(-1.0, 3.0, Width::Int8);
        assert_eq!(p, pt((4.0f64 / 255.0) as f32, -64));
        // One-sided ranges are widened to include 0.
        assert_eq!(
            activation_params(0.5, 2.0, Width::Int8),
            pt((2.0f64 / 255.0) as f32, -128)
        );
        assert_eq!(
            activation_params(-2.0, -0.5, Width::Int8),
            pt((2.0f64 / 255.0) as f32, 127)
        );
        // All zero (or a width up to the smallest normal float): [-1, 1]'s parameters.
        let unit = pt((2.0f64 / 255.0) as f32, -1);
        assert_eq!(activation_params(0.0, 0.0, Width::Int8), unit);
        assert_eq!(activation_params(0.0, f32::MIN_POSITIVE, Width::Int8), unit);
        assert_ne!(activation_params(0.0, 1e-30, Width::Int8), unit);
    }

    #[test]
    fn activation_params_int16_are_symmetric() {
        assert_eq!(
            activation_params(-1.0, 3.0, Width::Int16x8),
            pt(3.0 / 32767.0, 0)
        );
        assert_eq!(
            activation_params(-4.0, 3.0, Width::Int16x8),
            pt(4.0 / 32767.0, 0)
        );
        assert_eq!(
            activation_params(0.0, f32::MIN_POSITIVE, Width::Int16x8),
            pt(1.0 / 32767.0, 0)
        );
        assert_eq!(
            activation_params(0.0, 1e-30, Width::Int16x8),
            pt(1e-30 / 32767.0, 0)
        );
    }

    #[test]
    fn symmetric_operand_params_of_constants() {
        assert_eq!(
            symmetric_operand_params(-0.5, 0.25, Width::Int8),
            pt(0.5 / 127.0, 0)
        );
        assert_eq!(
            symmetric_operand_params(-0.25, 0.5, Width::Int8),
            pt(0.5 / 127.0, 0)
        );
        assert_eq!(symmetric_operand_params(0.0, 0.0, Width::Int8), pt(1.0, 0));
        assert_eq!(
            symmetric_operand_params(-0.5, 0.25, Width::Int16x8),
            pt(0.5 / 32767.0, 0)
        );
    }

    #[test]
    fn affine_bytes_round_shift_and_clamp() {
        let qp = pt((4.0f64 / 255.0) as f32, -64);
        let b = affine_bytes(&[-1.0, 0.0, 0.5, 3.0, 100.0, -100.0], &qp, Width::Int8);
        let q: Vec<i8> = b.iter().map(|&x| x as i8).collect();
        assert_eq!(q, [-128, -64, -32, 127, 127, -128]);
        let qp16 = pt(1e-3, 3);
        let b = affine_bytes(&[0.0015, -40.0, 0.0, 40.0], &qp16, Width::Int16x8);
        let q: Vec<i16> = b
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(q, [5, -32767, 3, 32767]);
    }

    #[test]
    fn bias_limits_and_types() {
        assert_eq!(bias_limit(32), i32::MAX as f64);
        assert_eq!(bias_limit(64), i64::MAX as f64);
        assert_eq!(bias_dtype(32), TensorType::Int32);
        assert_eq!(bias_dtype(64), TensorType::Int64);
    }

    #[test]
    fn bias_scales_per_tensor_and_per_channel() {
        assert_eq!(bias_scales(0.5, &[2.0], 3), [1.0, 1.0, 1.0]);
        assert_eq!(bias_scales(0.5, &[1.0, 2.0, 3.0], 3), [0.5, 1.0, 1.5]);
    }

    #[test]
    fn quantize_bias_values_and_overflow() {
        let b = quantize_bias(&[1.0, -2.0, 0.3], &[0.5, 0.25, 0.2], 32).unwrap();
        let q: Vec<i32> = b
            .chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(q, [2, -8, 2]);
        // 2^31 does not fit int32 (saturates at the limit, which counts as overflow).
        assert_eq!(quantize_bias(&[2147483648.0], &[1.0], 32), None);
        assert_eq!(quantize_bias(&[-2147483648.0], &[1.0], 32), None);
        assert!(quantize_bias(&[2147483000.0], &[1.0], 32).is_some());
        let b = quantize_bias(&[3e9, -1.0], &[1.0, 1.0], 64).unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(
            i64::from_le_bytes(b[..8].try_into().unwrap()),
            3_000_000_000
        );
        assert_eq!(i64::from_le_bytes(b[8..].try_into().unwrap()), -1);
    }

    #[test]
    fn widen_weight_scales_until_the_bias_fits() {
        let limit = i32::MAX as f64 * 0.99;
        let need = |b: f64, s_in: f64| (b / (s_in * limit)) as f32;
        // Per channel: only channel 1 overflows at s_in·s_w.
        let mut s = [1e-3f32, 1e-3];
        assert_eq!(
            widen_weight_scales_for_bias(&[1.0, 1e6], 1e-3, 32, &mut s),
            1
        );
        assert_eq!(s, [1e-3, need(1e6, f64::from(1e-3_f32))]);
        // Once widened, the same bias needs nothing more.
        assert_eq!(
            widen_weight_scales_for_bias(&[1.0, 1e6], 1e-3, 32, &mut s),
            0
        );
        // Per tensor: every channel reads scale 0, which grows to the largest need.
        let mut s = [1e-3f32];
        assert_eq!(
            widen_weight_scales_for_bias(&[1e6, -2e6], 1e-3, 32, &mut s),
            2
        );
        assert_eq!(s, [need(2e6, f64::from(1e-3_f32))]);
        // Three channels on two scales (channel 2 reads scale 0).
        let mut s = [1e-3f32, 1e-3];
        assert_eq!(
            widen_weight_scales_for_bias(&[0.0, 0.0, 1e6], 1e-3, 32, &mut s),
            1
        );
        assert_eq!(s[1], 1e-3);
        // 64-bit biases fit.
        let mut s = [1e-3f32];
        assert_eq!(widen_weight_scales_for_bias(&[1e6], 1e-3, 64, &mut s), 0);
    }

    #[test]
    fn fake_quant_nudging() {
        let at = Loc::model();
        let p = fake_quant_params(-1.0, 1.0, 8, false, &at).unwrap();
        assert_eq!(p, pt((2.0f64 / 255.0) as f32, -1));
        let p = fake_quant_params(-1.0, 1.0, 8, true, &at).unwrap();
        assert_eq!(p, pt((2.0f64 / 254.0) as f32, 0));
        let p = fake_quant_params(0.0, 1.0, 8, false, &at).unwrap();
        assert_eq!(p, pt((1.0f64 / 255.0) as f32, -128));
        let p = fake_quant_params(-1.0, 0.0, 8, false, &at).unwrap();
        assert_eq!(p, pt((1.0f64 / 255.0) as f32, 127));
        let p = fake_quant_params(-0.5, 2.0, 8, false, &at).unwrap();
        assert_eq!(p, pt((2.5f64 / 255.0) as f32, -77));
        for (lo, hi, bits) in [
            (-1.0, 1.0, 4),
            (0.5, 1.0, 8),
            (-1.0, -0.5, 8),
            (0.0, 0.0, 8),
        ] {
            assert!(
                fake_quant_params(lo, hi, bits, false, &at).is_err(),
                "{lo} {hi} {bits}"
            );
        }
    }

    #[test]
    fn represented_ranges() {
        let s = (4.0f64 / 255.0) as f32;
        assert_eq!(
            represented_range(&pt(s, -64), Width::Int8),
            (-64.0 * s, 191.0 * s)
        );
        assert_eq!(
            represented_range(&pt(0.5, 0), Width::Int16x8),
            (-16383.5, 16383.5)
        );
    }
}
