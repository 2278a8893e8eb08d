//! Activations (LOGISTIC, TANH, RELU family, LEAKY_RELU, PRELU, ELU, HARD_SWISH, GELU)
//! and the normalisations over the last axis (SOFTMAX, LOG_SOFTMAX, L2_NORMALIZATION).

use crate::fb::{BuiltinOperator as B, BuiltinOptions as O};

use super::{Ctx, Ins, KResult, apply_act, broadcast_index, broadcast_shapes, ensure, unsupported};
use crate::interp::value::Value;

/// One-input, element-wise activations.
pub(crate) fn pointwise(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let x = ins.f32(0)?;
    let shape = ins.get(0)?.shape.clone();
    let out: Vec<f32> = match b {
        B::Logistic => x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
        B::Tanh => x.iter().map(|&v| v.tanh()).collect(),
        B::Relu => x.iter().map(|&v| v.max(0.0)).collect(),
        B::Relu6 => x.iter().map(|&v| v.clamp(0.0, 6.0)).collect(),
        B::ReluN1To1 => x.iter().map(|&v| v.clamp(-1.0, 1.0)).collect(),
        B::Relu0To1 => x.iter().map(|&v| v.clamp(0.0, 1.0)).collect(),
        B::LeakyRelu => {
            let alpha = match ctx.opts() {
                Some(O::LeakyReluOptions(o)) => o.alpha,
                _ => 0.0,
            };
            x.iter()
                .map(|&v| if v > 0.0 { v } else { v * alpha })
                .collect()
        }
        B::Elu => x
            .iter()
            .map(|&v| if v < 0.0 { v.exp_m1() } else { v })
            .collect(),
        B::HardSwish => x
            .iter()
            .map(|&v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0)
            .collect(),
        B::Gelu => {
            let approximate = matches!(ctx.opts(), Some(O::GeluOptions(o)) if o.approximate);
            if approximate {
                let k = (2.0f32 / std::f32::consts::PI).sqrt();
                x.iter()
                    .map(|&v| 0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh()))
                    .collect()
            } else {
                x.iter()
                    .map(|&v| 0.5 * v * libm::erfcf(-v * std::f32::consts::FRAC_1_SQRT_2))
                    .collect()
            }
        }
        other => unsupported!("activation {other:?}"),
    };
    Ok(Value::f32(shape, out))
}

/// PRELU: `x >= 0 ? x : alpha * x`, alpha broadcast against x.
pub(crate) fn prelu(ins: &Ins) -> KResult<Value> {
    let (xv, av) = (ins.get(0)?, ins.get(1)?);
    let (x, a) = (ins.f32(0)?, ins.f32(1)?);
    let shape = broadcast_shapes(&xv.shape, &av.shape)?;
    let ix = broadcast_index(&xv.shape, &shape);
    let ia = broadcast_index(&av.shape, &shape);
    let out = ix
        .iter()
        .zip(&ia)
        .map(|(&i, &j)| if x[i] >= 0.0 { x[i] } else { x[i] * a[j] })
        .collect();
    Ok(Value::f32(shape, out))
}

/// SOFTMAX (with beta) and LOG_SOFTMAX over the last axis.
pub(crate) fn softmax(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let v = ins.get(0)?;
    let x = ins.f32(0)?;
    ensure!(!v.shape.is_empty(), "input must have rank >= 1");
    let depth = *v.shape.last().unwrap_or(&1);
    let beta = match ctx.opts() {
        Some(O::SoftmaxOptions(o)) => o.beta,
        _ => 1.0,
    };
    let mut out = vec![0f32; x.len()];
    if depth > 0 {
        for (row, o) in x.chunks_exact(depth).zip(out.chunks_exact_mut(depth)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if b == B::Softmax {
                let mut sum = 0f32;
                for (oi, &xi) in o.iter_mut().zip(row) {
                    *oi = ((xi - max) * beta).exp();
                    sum += *oi;
                }
                for oi in o.iter_mut() {
                    *oi /= sum;
                }
            } else {
                let sum: f32 = row.iter().map(|&xi| (xi - max).exp()).sum();
                let log_sum = sum.ln();
                for (oi, &xi) in o.iter_mut().zip(row) {
                    *oi = xi - max - log_sum;
                }
            }
        }
    }
    Ok(Value::f32(v.shape.clone(), out))
}

/// L2_NORMALIZATION over the last axis: `x / max(sqrt(sum(x²)), 1e-6)`.
pub(crate) fn l2_norm(ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let v = ins.get(0)?;
    let x = ins.f32(0)?;
    let depth = *v.shape.last().unwrap_or(&1);
    let mut out = vec![0f32; x.len()];
    if depth > 0 {
        for (row, o) in x.chunks_exact(depth).zip(out.chunks_exact_mut(depth)) {
            let sq: f32 = row.iter().map(|&a| a * a).sum();
            let norm = sq.sqrt().max(1e-6);
            for (oi, &xi) in o.iter_mut().zip(row) {
                *oi = xi / norm;
            }
        }
    }
    if let Some(O::L2NormOptions(o)) = ctx.opts() {
        apply_act(&mut out, o.fused_activation_function)?;
    }
    Ok(Value::f32(v.shape.clone(), out))
}
