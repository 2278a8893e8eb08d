//! Quantization arithmetic: scales, rounding, packing. Pure functions on slices.
//!
//! Conventions (TFLite's): `real = (q - zero_point) * scale`; rounding is to nearest,
//! ties away from zero (`f32::round`); symmetric weights use the narrow range
//! `[-qmax, qmax]` (int8: ±127, int4: ±7) with zero point 0.

/// Little-endian f32 values of a constant's bytes.
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// How a tensor's elements map to channels: element `i` belongs to channel
/// `(i / inner) % channels`, where `inner` is the product of the dimensions after `axis`.
#[derive(Debug, Clone, Copy)]
pub struct Channels {
    pub channels: usize,
    pub inner: usize,
}

impl Channels {
    /// One channel per index of `axis` of `shape`; the whole tensor when `axis` is None.
    pub fn new(shape: &[i32], axis: Option<usize>) -> Self {
        match axis {
            None => Channels {
                channels: 1,
                inner: 1,
            },
            Some(a) => Channels {
                channels: shape[a].max(1) as usize,
                inner: shape[a + 1..].iter().map(|&d| d.max(1) as usize).product(),
            },
        }
    }

    pub fn of(&self, i: usize) -> usize {
        (i / self.inner) % self.channels
    }
}

/// Symmetric scale per channel: `max |x| / qmax`. A channel of zeros gets scale 1 (any
/// positive scale represents it exactly; 0 is illegal for the runtime).
pub fn symmetric_scales(values: &[f32], ch: Channels, qmax: f32) -> Vec<f32> {
    let mut absmax = vec![0f32; ch.channels];
    for (i, &v) in values.iter().enumerate() {
        let c = ch.of(i);
        absmax[c] = absmax[c].max(v.abs());
    }
    absmax
        .into_iter()
        .map(|m| {
            if m > 0.0 && m.is_finite() {
                m / qmax
            } else {
                1.0
            }
        })
        .collect()
}

/// `round(x / scale)` clamped to `[-qmax, qmax]`, per channel.
pub fn quantize_symmetric(values: &[f32], ch: Channels, scales: &[f32], qmax: f32) -> Vec<i8> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[ch.of(i)]).round().clamp(-qmax, qmax) as i8)
        .collect()
}

/// Packs 4-bit values (each in [-8, 7]) two per byte, the first in the low nibble, as
/// the runtime's INT4 tensors store them.
pub fn pack_int4(values: &[i8]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|p| {
            let lo = (p[0] as u8) & 0x0f;
            let hi = p.get(1).map_or(0, |&v| (v as u8) & 0x0f);
            lo | (hi << 4)
        })
        .collect()
}

/// Inverse of [`pack_int4`] for `n` values.
pub fn unpack_int4(bytes: &[u8], n: usize) -> Vec<i8> {
    (0..n)
        .map(|i| {
            let b = bytes[i / 2];
            let nib = if i % 2 == 0 { b & 0x0f } else { b >> 4 };
            ((nib << 4) as i8) >> 4
        })
        .collect()
}

/// IEEE half-precision bytes of f32 values (round to nearest even, as TF's converter).
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

/// f32 values of IEEE half-precision bytes.
pub fn f16_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_scales_use_the_largest_magnitude_of_each_channel() {
        // shape [2, 3], axis 0: rows are channels.
        let v = [0.5, -1.27, 0.1, 0.0, 0.0, 0.0];
        let ch = Channels::new(&[2, 3], Some(0));
        let s = symmetric_scales(&v, ch, 127.0);
        assert_eq!(s, vec![0.01, 1.0]);
        let q = quantize_symmetric(&v, ch, &s, 127.0);
        assert_eq!(q, vec![50, -127, 10, 0, 0, 0]);
    }

    #[test]
    fn last_axis_channels() {
        // shape [1, 2, 2], axis 2 (depthwise-style): elements alternate channels.
        let ch = Channels::new(&[1, 2, 2], Some(2));
        assert_eq!(
            (0..4).map(|i| ch.of(i)).collect::<Vec<_>>(),
            vec![0, 1, 0, 1]
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero_and_clamped() {
        let ch = Channels::new(&[4], None);
        let q = quantize_symmetric(&[0.5, -0.5, 1.5, 300.0], ch, &[1.0], 127.0);
        assert_eq!(q, vec![1, -1, 2, 127]);
    }

    #[test]
    fn int4_packing_round_trips() {
        let v: Vec<i8> = vec![-8, 7, 0, -1, 3];
        let p = pack_int4(&v);
        assert_eq!(p, vec![0x78, 0xf0, 0x03]);
        assert_eq!(unpack_int4(&p, v.len()), v);
    }

    #[test]
    fn f16_round_trip_of_representable_values() {
        let v = [1.0f32, -2.5, 0.0, 65504.0];
        assert_eq!(f16_to_f32(&f16_bytes(&v)), v.to_vec());
    }
}
