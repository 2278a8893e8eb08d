//! Operator versions required by quantized operator signatures.
//!
//! The runtime registers each kernel for a range of versions; a model must declare at
//! least the version that introduced the signature it uses (e.g. FULLY_CONNECTED with
//! float input, per-channel int8 weights and float output is version 12). The numbers
//! follow TFLite's `op_version.cc`. Passes call [`required_version`] after changing an
//! operator and raise its code's version to at least that; versions are never lowered.

use crate::fb::{self, BuiltinOperator as Op, TensorType as T};
use crate::ir::{Model, Operator, Subgraph};

/// The version `op` needs for the dtypes and parameters it has now (1 when nothing
/// special is used or the operator is not covered here).
pub fn required_version(model: &Model, sg: &Subgraph, op: &Operator) -> i32 {
    let dtype = |list: &[i32], i: usize| -> Option<T> {
        list.get(i)
            .and_then(|&t| usize::try_from(t).ok())
            .and_then(|t| sg.tensors.get(t))
            .map(|t| t.dtype)
    };
    let per_channel = |i: usize| -> bool {
        op.inputs
            .get(i)
            .and_then(|&t| usize::try_from(t).ok())
            .and_then(|t| sg.tensors.get(t))
            .and_then(|t| t.quantized())
            .is_some_and(|q| q.is_per_axis())
    };
    let blockwise = |i: usize| -> bool {
        op.inputs
            .get(i)
            .and_then(|&t| usize::try_from(t).ok())
            .and_then(|t| sg.tensors.get(t))
            .and_then(|t| t.quant.as_ref())
            .is_some_and(|q| q.details.is_some())
    };
    let (in0, in1, out0) = (
        dtype(&op.inputs, 0),
        dtype(&op.inputs, 1),
        dtype(&op.outputs, 0),
    );
    let f32_ = Some(T::Float32);
    match model.builtin(op) {
        Op::FullyConnected => {
            let asym = matches!(&op.builtin_options,
                Some(fb::BuiltinOptions::FullyConnectedOptions(o)) if o.asymmetric_quantize_inputs);
            match (in0, in1, out0) {
                (i, Some(T::Int4), o) if i == f32_ && o == f32_ && blockwise(1) => 10,
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ && per_channel(1) => 12,
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ && asym => 9,
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ => 3,
                (i, Some(T::Int4), o) if i == f32_ && o == f32_ => 10,
                _ => 1,
            }
        }
        Op::Conv2d => match (in0, in1, out0) {
            (i, Some(T::Int8), o) if i == f32_ && o == f32_ && per_channel(1) => 5,
            (i, Some(T::Int8), o) if i == f32_ && o == f32_ => 2,
            _ => 1,
        },
        Op::DepthwiseConv2d => match (in0, in1, out0) {
            (i, Some(T::Int8), o) if i == f32_ && o == f32_ && per_channel(1) => 6,
            (i, Some(T::Int8), o) if i == f32_ && o == f32_ => 4,
            _ => 1,
        },
        Op::BatchMatmul => {
            let asym = matches!(&op.builtin_options,
                Some(fb::BuiltinOptions::BatchMatMulOptions(o)) if o.asymmetric_quantize_inputs);
            match (in0, in1, out0) {
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ && asym => 4,
                _ => 1,
            }
        }
        Op::EmbeddingLookup => match in1 {
            Some(T::Int4) => 4,
            Some(T::Int8) if per_channel(1) => 4,
            Some(T::Int8) | Some(T::Uint8) => 2,
            _ => 1,
        },
        Op::Svdf => {
            let asym = matches!(&op.builtin_options,
                Some(fb::BuiltinOptions::SvdfOptions(o)) if o.asymmetric_quantize_inputs);
            match (in0, in1) {
                (i, Some(T::Int8)) if i == f32_ && asym => 4,
                (i, Some(T::Int8)) if i == f32_ => 2,
                _ => 1,
            }
        }
        Op::Dequantize => match in0 {
            Some(T::Int4) => 6,
            Some(T::Int16) | Some(T::Float16) => 3,
            Some(T::Int8) if per_channel(0) => 5,
            Some(T::Int8) => 2,
            _ => 1,
        },
        Op::UnidirectionalSequenceLstm => {
            let asym = matches!(&op.builtin_options,
                Some(fb::BuiltinOptions::UnidirectionalSequenceLstmOptions(o)) if o.asymmetric_quantize_inputs);
            match (in0, dtype(&op.inputs, 2), out0) {
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ && asym => 3,
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ => 2,
                _ => 1,
            }
        }
        Op::Lstm => {
            let asym = matches!(&op.builtin_options,
                Some(fb::BuiltinOptions::LstmOptions(o)) if o.asymmetric_quantize_inputs);
            match (in0, dtype(&op.inputs, 2), out0) {
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ && asym => 4,
                (i, Some(T::Int8), o) if i == f32_ && o == f32_ => 3,
                _ => 1,
            }
        }
        Op::Rnn | Op::UnidirectionalSequenceRnn => {
            let asym = match &op.builtin_options {
                Some(fb::BuiltinOptions::RnnOptions(o)) => o.asymmetric_quantize_inputs,
                Some(fb::BuiltinOptions::SequenceRnnOptions(o)) => o.asymmetric_quantize_inputs,
                _ => false,
            };
            match (in1, out0) {
                (Some(T::Int8), o) if o == f32_ && asym => 3,
                (Some(T::Int8), o) if o == f32_ => 2,
                _ => 1,
            }
        }
        _ => 1,
    }
}
