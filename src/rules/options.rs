//! Builtin-option facts of quantized kernels, per operator: which options a quantized
//! operator must carry and which it may declare. The passes call these functions with
//! an operator and its options; the operator names live here, next to the rule table,
//! never in a pass.
//!
//! - 16x8 ADD and SUB must use the general-scale path (`pot_scale_int16 = false`): the
//!   default power-of-two path is meant for LSTM internals and rejects most scales.
//! - FULLY_CONNECTED and CONV_2D declare an int32 bias in 16x8 with
//!   `quantized_bias_type` (their default there is int64).
//! - Hybrid kernels with `asymmetric_quantize_inputs` (the rule's `asymmetric_inputs`)
//!   get it set, as TF's converter does: per-row asymmetric input quantization is more
//!   accurate.

use crate::fb::{self, BuiltinOperator as Op, BuiltinOptions as B, TensorType};

/// Sets the general-scale int16 path on a 16x8 ADD or SUB (options created when
/// missing); other operators are left as they are.
pub fn set_general_scale_int16(op: Op, options: &mut Option<B>) {
    match op {
        Op::Add => match options {
            Some(B::AddOptions(o)) => o.pot_scale_int16 = false,
            _ => {
                *options = Some(B::AddOptions(Box::new(fb::AddOptions {
                    pot_scale_int16: false,
                    ..Default::default()
                })))
            }
        },
        Op::Sub => match options {
            Some(B::SubOptions(o)) => o.pot_scale_int16 = false,
            _ => {
                *options = Some(B::SubOptions(Box::new(fb::SubOptions {
                    pot_scale_int16: false,
                    ..Default::default()
                })))
            }
        },
        _ => {}
    }
}

/// The 16x8 kernel of `op` accepts an int32 bias declared in its options.
pub fn declares_int32_bias_in_16x8(op: Op) -> bool {
    matches!(op, Op::FullyConnected | Op::Conv2d)
}

/// Declares an int32 bias (`quantized_bias_type`) where the options have the field.
pub fn set_int32_bias(options: &mut Option<B>) {
    match options {
        Some(B::FullyConnectedOptions(o)) => o.quantized_bias_type = TensorType::Int32,
        Some(B::Conv2DOptions(o)) => o.quantized_bias_type = TensorType::Int32,
        _ => {}
    }
}

/// Sets `asymmetric_quantize_inputs` on a hybrid operator's options (created for
/// FULLY_CONNECTED and BATCH_MATMUL when missing).
pub fn set_asymmetric_inputs(op: Op, options: &mut Option<B>) {
    match options {
        Some(B::FullyConnectedOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::BatchMatMulOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::SvdfOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::LstmOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::UnidirectionalSequenceLstmOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::RnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(B::SequenceRnnOptions(o)) => o.asymmetric_quantize_inputs = true,
        Some(_) => {}
        None => {
            *options = match op {
                Op::FullyConnected => Some(B::FullyConnectedOptions(Box::new(
                    fb::FullyConnectedOptions {
                        asymmetric_quantize_inputs: true,
                        ..Default::default()
                    },
                ))),
                Op::BatchMatmul => Some(B::BatchMatMulOptions(Box::new(fb::BatchMatMulOptions {
                    asymmetric_quantize_inputs: true,
                    ..Default::default()
                }))),
                _ => None,
            }
        }
    }
}
