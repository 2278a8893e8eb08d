//! What the quantized kernels need besides parameters: the bias width an operator
//! takes, and the builtin options a quantized operator must carry.

use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::ir::Model;

use super::super::scheme::Width;
use super::IntegerOptions;

/// Bias width of an operator: int32 in int8; in 16x8 int64, or int32 when asked and the
/// kernel accepts it (FULLY_CONNECTED and CONV_2D, through `quantized_bias_type`).
pub(super) fn bias_bits_for(op: Op, opts: &IntegerOptions) -> u32 {
    match opts.width {
        Width::Int8 => 32,
        Width::Int16x8 if opts.bias_bits == 32 && matches!(op, Op::FullyConnected | Op::Conv2d) => {
            32
        }
        Width::Int16x8 => 64,
    }
}

/// Options the quantized kernels need: 16x8 ADD/SUB use the general-scale path (the
/// default power-of-two path is meant for LSTM internals and rejects most scales), and
/// int32 biases in 16x8 are declared with `quantized_bias_type`.
pub(super) fn fix_options(model: &mut Model, si: usize, oi: usize, opts: &IntegerOptions) {
    use fb::BuiltinOptions as B;
    if opts.width != Width::Int16x8 {
        return;
    }
    let kind = model.builtin(&model.subgraphs[si].operators[oi]);
    let op = &mut model.subgraphs[si].operators[oi];
    match kind {
        Op::Add => match &mut op.builtin_options {
            Some(B::AddOptions(o)) => o.pot_scale_int16 = false,
            _ => {
                op.builtin_options = Some(B::AddOptions(Box::new(fb::AddOptions {
                    pot_scale_int16: false,
                    ..Default::default()
                })))
            }
        },
        Op::Sub => match &mut op.builtin_options {
            Some(B::SubOptions(o)) => o.pot_scale_int16 = false,
            _ => {
                op.builtin_options = Some(B::SubOptions(Box::new(fb::SubOptions {
                    pot_scale_int16: false,
                    ..Default::default()
                })))
            }
        },
        Op::FullyConnected | Op::Conv2d if bias_bits_for(kind, opts) == 32 => {
            match &mut op.builtin_options {
                Some(B::FullyConnectedOptions(o)) => o.quantized_bias_type = TensorType::Int32,
                Some(B::Conv2DOptions(o)) => o.quantized_bias_type = TensorType::Int32,
                _ => {}
            }
        }
        _ => {}
    }
}
