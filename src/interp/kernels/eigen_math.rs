//! Eigen's float `tanh` and `logistic` as LiteRT's CPU kernels compute them, to the bit.
//!
//! LiteRT's hybrid LSTM applies its gate activations with `tensor_utils::ApplyTanhToVector`
//! and `ApplySigmoidToVector` (`tflite/kernels/internal/tensor_utils.h`), which are Eigen's
//! `array().tanh()` and `array().logistic()` over the whole gate vector; the float TANH and
//! LOGISTIC ops' optimized kernels use the same functors. Neither is the correctly rounded
//! function: `tanh` is Eigen's `ptanh_float` (the `EIGEN_FAST_MATH` 9/8-degree rational
//! interpolant, `arch/Default/GenericPacketMathTrig.h`), `logistic` is
//! `scalar_logistic_op<float>` (`functors/UnaryFunctors.h`): a packet path with its own
//! `exp(x/2)²` and a scalar path `expf(x) / (1 + expf(x))`.
//!
//! Which variant and arithmetic the runtime runs was read from ai-edge-litert 2.3's x86-64
//! library (`libpywrap_litert_common.so`, the activation kernels' loops disassembled): SSE
//! packets of 4 floats (`minps`/`mulps`/`addps`/`divps`, `roundps` for the floor), no FMA
//! (the non-FMA clamp constant 7.90738964 is in the binary, the FMA one is not), every
//! `pmadd` a rounded multiply then a rounded add. Eigen walks a vector whose destination is
//! 16-byte aligned (LiteRT's tensors are 64-byte aligned) in packets of 4 from the start and
//! finishes the last `len % 4` elements with the scalar functor: [`tanh_slice`] and
//! [`logistic_slice`] do the same.
//!
//! The reference twins are the correctly rounded functions (`f64` `tanh`, `1 / (1 + e^-x)`);
//! the unit tests bound the distance in ulps over a sweep and pin values LiteRT computed.

/// Eigen's `ptanh_float` (fast-math, non-FMA build): clamp to ±7.90738964 (where the
/// interpolant reaches 1), then `x + x³·P(x²)` over `Q(x²)`, Horner with rounded steps.
pub(crate) fn tanh(a: f32) -> f32 {
    // The constants as the runtime's binary holds them (bits), Eigen's decimals beside.
    let clamp = f32::from_bits(0x40fd_0956); // 7.90738964080810547
    let alpha = [
        f32::from_bits(0x326f_951e), // 1.394553628e-8
        f32::from_bits(0x37b0_63dc), // 2.102733560e-5
        f32::from_bits(0x3b66_bc7f), // 3.520756727e-3
        f32::from_bits(0x3e09_3cf6), // 1.340216100e-1
    ];
    let beta = [
        f32::from_bits(0x3557_2c00), // 8.015776984e-7
        f32::from_bits(0x39ae_6d96), // 3.326951409e-4
        f32::from_bits(0x3cd4_c460), // 2.597254514e-2
        f32::from_bits(0x3eef_4922), // 4.673548340e-1
        1.0,
    ];
    // `pmax(pmin(a, c), -c)`: SSE's minps/maxps return the second operand on a NaN, the
    // input here, so a NaN stays a NaN.
    let x = if a.is_nan() {
        a
    } else {
        a.min(clamp).max(-clamp)
    };
    let x2 = x * x;
    let x3 = x2 * x;
    let mut p = alpha[0];
    for &c in &alpha[1..] {
        p = p * x2 + c;
    }
    let mut q = beta[0];
    for &c in &beta[1..] {
        q = q * x2 + c;
    }
    (x3 * p + x) / q
}

/// Eigen's `scalar_logistic_op<float>::packetOp`: `e = exp(x/2)²` with Cephes' range
/// reduction and a degree-5 polynomial, then `e / (1 + e)`; zero below −104.
pub(crate) fn logistic_packet(a: f32) -> f32 {
    let exp_hi = f32::from_bits(0x4185_1592); // 16.6355324
    let log2ef = f32::from_bits(0x3fb8_aa3b); // 1.44269504088896341
    let c1 = f32::from_bits(0xbf31_8000); // -0.693359375
    let c2 = f32::from_bits(0x395e_8083); // 2.12194440e-4
    let p2 = f32::from_bits(0x3eff_fee0); // 0.49999141693115234375
    let p3 = f32::from_bits(0x3e2a_ab38); // 0.16666877269744873046875
    let p4 = f32::from_bits(0x3d2b_9df0); // 4.1898667812347412109375e-2
    let p5 = f32::from_bits(0x3c08_8e52); // 8.33471305668354034423828125e-3
    if a.is_nan() {
        return a;
    }
    let x = a.min(exp_hi) * 0.5;
    let m = (x * log2ef + 0.5).floor();
    let r = m * c1 + x;
    let r = m * c2 + r;
    let r2 = r * r;
    let p_even = r2 * p4 + p2;
    let p_odd = r2 * p5 + p3;
    let p = r * p_odd + p_even;
    let p = r2 * p + (r + 1.0);
    // `pldexp_fast`: 2^m built from the biased exponent clamped to [0, 255].
    let biased = (m + 127.0).clamp(0.0, 255.0) as u32;
    let e = p * f32::from_bits(biased << 23);
    let e = e * e;
    if a < -104.0 { 0.0 } else { e / (1.0 + e) }
}

/// Eigen's scalar `scalar_logistic_op<float>`: `e = expf(min(x, 16.6355324))`, `e / (1 + e)`
/// (the runtime calls the C library's `expf`, as Rust's `f32::exp` does on Linux).
pub(crate) fn logistic_scalar(a: f32) -> f32 {
    let e = a.min(f32::from_bits(0x4185_1592)).exp();
    e / (1.0 + e)
}

/// `array().tanh()` over a vector in place (scalar and packet paths compute alike).
pub(crate) fn tanh_slice(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = tanh(*x));
}

/// `array().logistic()` over an aligned vector in place: packets of 4, then the scalar
/// functor for the last `len % 4` elements.
pub(crate) fn logistic_slice(v: &mut [f32]) {
    let packed = v.len() / 4 * 4;
    let (body, tail) = v.split_at_mut(packed);
    body.iter_mut().for_each(|x| *x = logistic_packet(*x));
    tail.iter_mut().for_each(|x| *x = logistic_scalar(*x));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps between a float and the correctly rounded value of `r`.
    fn ulps(a: f32, r: f64) -> u32 {
        let b = r as f32;
        let key = |x: f32| {
            let i = x.to_bits() as i32;
            if i < 0 { i32::MIN - i } else { i }
        };
        (key(a) as i64 - key(b) as i64).unsigned_abs() as u32
    }

    /// Reference twins. Eigen documents the float logistic's worst case as 4.5 ulps
    /// (exhaustively measured in double) and `ptanh_float` as "accurate up to a couple
    /// of ulps"; without FMA it reaches 1 before its clamp at 7.9074, where `1 − tanh` is
    /// still a few ulps of the floats below 1 (2^-24 apart): measured 6 ulps, 3.4e-7, so
    /// within 6 ulps and 4e-7 absolute. The sweep covers the gates' range and beyond.
    #[test]
    fn eigen_functions_within_their_documented_ulps() {
        let mut x = -20.0f32;
        let (mut worst_t, mut worst_l, mut abs_t) = (0, 0, 0f64);
        while x < 20.0 {
            let d = x as f64;
            worst_t = worst_t.max(ulps(tanh(x), d.tanh()));
            abs_t = abs_t.max((tanh(x) as f64 - d.tanh()).abs());
            if x > -20.0 {
                // Relative accuracy, so tiny outputs (x ≪ 0) are included.
                worst_l = worst_l.max(ulps(logistic_packet(x), 1.0 / (1.0 + (-d).exp())));
            }
            x += 0.000_731;
        }
        assert!(
            worst_t <= 6 && abs_t <= 4e-7,
            "tanh: {worst_t} ulps, {abs_t:e}"
        );
        assert!(worst_l <= 5, "logistic: {worst_l} ulps");
        assert_eq!(tanh(9.0), 1.0);
        assert_eq!(tanh(-9.0), -1.0);
        assert_eq!(logistic_packet(-200.0), 0.0);
        assert_eq!(logistic_packet(30.0), 1.0);
        assert!(tanh(f32::NAN).is_nan() && logistic_packet(f32::NAN).is_nan());
    }

    /// Values LiteRT computed (ai-edge-litert 2.3, the float TANH and LOGISTIC ops with
    /// the builtin kernels, no delegate), as bits: input, output (inputs where NumPy's float32 functions give another
    /// float). A sweep of 1,048,579 inputs (a grid
    /// over [-20, 20] and normal samples of σ 4) matched LiteRT bit for bit, where Rust's
    /// `tanh` and `1 / (1 + exp(-x))` (the C library's) differ on 45% and 61% of them.
    const TANH: [(u32, u32); 8] = [
        (0xc0c6_24c9, 0xbf7f_ff72), // -6.1919904 -> -0.99999154
        (0xc050_2c6f, 0xbf7f_3c4c), // -3.252712 -> -0.9970138
        (0xc01f_17d9, 0xbf7c_79b8), // -2.4858305 -> -0.9862323
        (0xbf20_4a06, 0xbf0e_2d79), // -0.6261295 -> -0.55538136
        (0xbefa_ff1f, 0xbee8_a6bc), // -0.49022767 -> -0.45439708
        (0xbea8_2f15, 0xbea2_628c), // -0.3284842 -> -0.3171581
        (0x4062_bb3c, 0x3f7f_9258), // 3.5426779 -> 0.9983268
        (0x411f_194c, 0x3f80_0000), // 9.943676 -> 1.0
    ];
    const LOGISTIC: [(u32, u32); 8] = [
        (0xc193_5286, 0x322c_b9fb), // -18.415295 -> 1.0054005e-8
        (0xc167_c565, 0x3509_55f5), // -14.485692 -> 5.116156e-7
        (0xc144_51c1, 0x369d_6360), // -12.269959 -> 4.6905334e-6
        (0xc058_7e3c, 0x3d06_83a4), // -3.3827047 -> 0.032840386
        (0xbfad_96d6, 0x3e51_c7ed), // -1.3561656 -> 0.20486422
        (0xbf93_4b0d, 0x3e76_1fee), // -1.1507279 -> 0.24035618
        (0x3fa4_3f61, 0x3f48_721d), // 1.2831842 -> 0.78299123
        (0x4185_9d75, 0x3f80_0000), // 16.701883 -> 1.0
    ];
    /// Seven inputs near -8 where the packet and the scalar logistic differ, as one
    /// LOGISTIC op of 7 elements: LiteRT's outputs are the packet's for the first four
    /// and the scalar's for the last three.
    const LOGISTIC_7: [(u32, u32); 7] = [
        (0xc0ff_ff70, 0x39af_d505),
        (0xc0ff_fed0, 0x39af_d874),
        (0xc0ff_fe30, 0x39af_dbe1),
        (0xc0ff_fd90, 0x39af_df50),
        (0xc0ff_fcf0, 0x39af_e2c2),
        (0xc0ff_fc50, 0x39af_e632),
        (0xc0ff_fbb0, 0x39af_e9a0),
    ];

    #[test]
    fn matches_values_litert_computed() {
        for (x, y) in TANH {
            let x = f32::from_bits(x);
            assert_eq!(tanh(x).to_bits(), y, "tanh({x})");
        }
        for (x, y) in LOGISTIC {
            let x = f32::from_bits(x);
            assert_eq!(logistic_packet(x).to_bits(), y, "logistic({x})");
        }
        let mut v: Vec<f32> = LOGISTIC_7.iter().map(|p| f32::from_bits(p.0)).collect();
        for &x in &v {
            assert_ne!(logistic_packet(x).to_bits(), logistic_scalar(x).to_bits());
        }
        logistic_slice(&mut v);
        let got: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = LOGISTIC_7.iter().map(|p| p.1).collect();
        assert_eq!(got, want);
    }

    /// `tanh_slice` is the element function throughout (its packet and scalar paths are
    /// the same arithmetic).
    #[test]
    fn tanh_slice_is_elementwise() {
        let v: Vec<f32> = (0..7).map(|i| i as f32 * 0.37 - 1.1).collect();
        let mut t = v.clone();
        tanh_slice(&mut t);
        assert!(
            t.iter()
                .zip(&v)
                .all(|(&y, &x)| y.to_bits() == tanh(x).to_bits())
        );
    }
}
