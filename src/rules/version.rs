//! Operator versions required by operator signatures (float, int8, int16x8, uint8,
//! hybrid, weight-only).
//!
//! The runtime registers each kernel for a range of versions; a model must declare at
//! least the version that introduced the signature it uses (e.g. FULLY_CONNECTED with
//! float input, per-channel int8 weights and float output is version 12). Passes call
//! [`required_version`] after changing an operator and raise its code's version to at
//! least that; versions are never lowered.
//!
//! # Where the numbers come from
//!
//! Every number is the one TFLite's converter computes in `GetBuiltinOperatorVersion`
//! (`tflite/converter/tools/versioning/op_version.cc` in LiteRT) from an operator's
//! signature: the dtype and shape of each input and output (an omitted input, index
//! `-1`, has no dtype), its builtin options, and a few derived facts that
//! `op_signature.cc` computes and that are reproduced here exactly:
//!
//! - *per-channel*: the weight has one scale per slice of the dimension the kernel
//!   reads channels from (CONV_2D: filter dim 0, any count ≥ 1; DEPTHWISE_CONV_2D: dim
//!   3, any count ≥ 1; FULLY_CONNECTED: dim 0, any count ≥ 1; EMBEDDING_LOOKUP: dim 0,
//!   more than one scale; DEQUANTIZE input / QUANTIZE output: the `quantized_dimension`,
//!   more than one scale);
//! - *grouped* CONV_2D: the input's channel count (dim 3) differs from the filter's;
//! - *input quantized* (ADD, ABS, MUL): the tensor has a quantization table at all, even
//!   an empty one;
//! - MUL's rescale `s_in1 · s_in2 / s_out` (first scale of each, all three non-zero);
//! - *broadcast above 4-D* (SUB, DIV, MAXIMUM, MINIMUM): inputs 0 and 1 have different
//!   shapes and some input has rank > 4.
//!
//! Options follow the runtime's parser: when an operator has no options table every
//! field is zero/false (so e.g. a DEPTHWISE_CONV_2D without options counts as dilated,
//! and an int16 SUB without options as not power-of-two scaled); when it has one, the
//! schema's values apply. In particular `quantized_bias_type` counts as set whenever the
//! CONV_2D / FULLY_CONNECTED / TRANSPOSE_CONV options table exists (its schema default
//! FLOAT32 is not "unset" for the parser), which is why int16x8 CONV_2D is 8 and int16x8
//! FULLY_CONNECTED 11 with either bias type.
//!
//! The converter sets each operator code's version to the maximum of this function over
//! the operators sharing the code; the tests check that against every TF-converted model
//! in `testdata/`.
//!
//! One number is tflquant's own: FULLY_CONNECTED with float input, INT4 weights and
//! float output (weight-only INT4, per channel or blockwise) gets at least 10, the
//! version that introduced INT4 filters, so that a runtime without INT4 support refuses
//! the model when loading it; TF's table has no row for this signature (it would say 1).
//!
//! One number TF writes is not loadable: int16x8 LSTM and UNIDIRECTIONAL_SEQUENCE_LSTM
//! are version 5, but the stock interpreter registers both only up to 4 (and its LSTM
//! kernels take int8 or float activations only); 5 is kept, as the converter's number.

use crate::fb::{self, BuiltinOperator as Op, TensorType as T};
use crate::ir::{Model, Operator, Subgraph, Tensor};

const F32: Option<T> = Some(T::Float32);
const F16: Option<T> = Some(T::Float16);
const BF16: Option<T> = Some(T::Bfloat16);
const F64: Option<T> = Some(T::Float64);
const I2: Option<T> = Some(T::Int2);
const I4: Option<T> = Some(T::Int4);
const U4: Option<T> = Some(T::Uint4);
const I8: Option<T> = Some(T::Int8);
const U8: Option<T> = Some(T::Uint8);
const I16: Option<T> = Some(T::Int16);
const U16: Option<T> = Some(T::Uint16);
const I32: Option<T> = Some(T::Int32);
const U32: Option<T> = Some(T::Uint32);
const I64: Option<T> = Some(T::Int64);
const BOOL: Option<T> = Some(T::Bool);
const STR: Option<T> = Some(T::String);
const C64: Option<T> = Some(T::Complex64);

/// The version of the first rule whose condition holds, 1 if none does. Each operator's
/// rules are listed from the newest signature to the oldest, as the converter tests them.
fn first(rules: &[(bool, i32)]) -> i32 {
    rules.iter().find(|(c, _)| *c).map_or(1, |&(_, v)| v)
}

fn is_f8(t: Option<T>) -> bool {
    matches!(t, Some(T::Float8E4m3fn | T::Float8E5m2))
}

/// The operator's tensors as the version rules see them.
struct Sig<'a> {
    sg: &'a Subgraph,
    op: &'a Operator,
}

impl<'a> Sig<'a> {
    fn tensor(&self, list: &[i32], i: usize) -> Option<&'a Tensor> {
        let t = usize::try_from(*list.get(i)?).ok()?;
        self.sg.tensors.get(t)
    }

    fn input(&self, i: usize) -> Option<&'a Tensor> {
        self.tensor(&self.op.inputs, i)
    }

    fn output(&self, i: usize) -> Option<&'a Tensor> {
        self.tensor(&self.op.outputs, i)
    }

    /// Dtype of input `i`; `None` when omitted.
    fn i(&self, i: usize) -> Option<T> {
        self.input(i).map(|t| t.dtype)
    }

    /// Dtype of output `i`.
    fn o(&self, i: usize) -> Option<T> {
        self.output(i).map(|t| t.dtype)
    }

    /// Rank of input `i` (0 when omitted).
    fn rank(&self, i: usize) -> usize {
        self.input(i).map_or(0, |t| t.shape.len())
    }

    fn shape(&self, i: usize) -> &'a [i32] {
        self.input(i).map_or(&[], |t| &t.shape)
    }

    /// Inputs 0 and 1 have different shapes and some input has rank > 4.
    fn broadcast_above_4d(&self) -> bool {
        let max_rank = (0..self.op.inputs.len())
            .map(|i| self.rank(i))
            .max()
            .unwrap_or(0);
        self.op.inputs.len() >= 2 && self.shape(0) != self.shape(1) && max_rank > 4
    }

    /// Input `i` has a quantization table (possibly empty).
    fn has_quant(&self, i: usize) -> bool {
        self.input(i).is_some_and(|t| t.quant.is_some())
    }

    fn options(&self) -> Option<&'a fb::BuiltinOptions> {
        self.op.builtin_options.as_ref()
    }
}

fn num_scales(t: &Tensor) -> usize {
    t.quant.as_ref().map_or(0, |q| q.scale.len())
}

/// `dim` of `t`'s shape equals the number of scales (and is non-negative).
fn scales_match_dim(t: &Tensor, dim: usize) -> bool {
    t.shape
        .get(dim)
        .is_some_and(|&d| usize::try_from(d).is_ok_and(|d| d == num_scales(t)))
}

/// One scale per slice of `quantized_dimension`, more than one scale.
fn per_axis_on_quantized_dim(t: Option<&Tensor>) -> bool {
    t.is_some_and(|t| {
        num_scales(t) > 1
            && t.quant.as_ref().is_some_and(|q| {
                usize::try_from(q.quantized_dimension).is_ok_and(|d| scales_match_dim(t, d))
            })
    })
}

/// The version `op` needs for the dtypes, shapes and options it has now (1 when nothing
/// special is used or the operator has a single version).
pub fn required_version(model: &Model, sg: &Subgraph, op: &Operator) -> i32 {
    let s = Sig { sg, op };
    let builtin = model.builtin(op);
    let v = match builtin {
        Op::Custom => 1,
        b => builtin_version(b, &s),
    };
    v.max(tflquant_minimum(builtin, &s)).max(1)
}

/// Versions tflquant requires beyond TF's table (see the module docs).
fn tflquant_minimum(op: Op, s: &Sig) -> i32 {
    match op {
        Op::FullyConnected if (s.i(0), s.i(1), s.o(0)) == (F32, I4, F32) => 10,
        _ => 1,
    }
}

/// The converter's rule for one builtin operator.
fn builtin_version(op: Op, s: &Sig) -> i32 {
    use fb::BuiltinOptions as O;
    let opts = s.options();
    let (a, b, c, y) = (s.i(0), s.i(1), s.i(2), s.o(0));
    let aby = (a, b, y);
    let a_any = |ts: &[Option<T>]| ts.contains(&a);
    match op {
        // ---- convolutions and matrix products -------------------------------------
        Op::Conv2d => {
            let bias_type_set = matches!(opts, Some(O::Conv2DOptions(_)));
            let filter = s.input(1);
            let per_channel = filter
                .is_some_and(|f| f.shape.first().is_some_and(|&n| n > 0) && scales_match_dim(f, 0));
            let grouped = match (s.shape(0).get(3), s.shape(1).get(3)) {
                (Some(x), Some(w)) => x != w,
                _ => false,
            };
            first(&[
                (aby == (I16, I8, I16) && bias_type_set, 8),
                (grouped, 6),
                (aby == (I16, I16, I16), 4),
                (aby == (I8, I8, I8), 3),
                (aby == (I8, I4, I8), 7),
                (aby == (F32, I8, F32) && per_channel, 5),
                (aby == (F32, I8, F32), 2),
            ])
        }
        Op::DepthwiseConv2d => {
            let dilated = match opts {
                Some(O::DepthwiseConv2DOptions(o)) => {
                    o.dilation_w_factor != 1 || o.dilation_h_factor != 1
                }
                _ => true,
            };
            let per_channel = s
                .input(1)
                .is_some_and(|f| f.shape.get(3).is_some_and(|&n| n > 0) && scales_match_dim(f, 3));
            first(&[
                (aby == (I16, I16, I16), 5),
                (aby == (F32, I8, F32) && per_channel, 6),
                (aby == (F32, I8, F32), 4),
                (aby == (I8, I8, I8), 3),
                // op_version.cc has no 16x8 row; TF's converter writes 3 (the int8
                // kernel's version, which is also the one holding the 16x8 kernel).
                (aby == (I16, I8, I16), 3),
                (aby == (I8, I4, I8), 7),
                (dilated, 2),
            ])
        }
        Op::TransposeConv => {
            // Input 0 is the output shape (INT32), so the int16 row never applies to a
            // well-formed operator; the converter tests it this way all the same.
            let (bias_type_set, fused) = match opts {
                Some(O::TransposeConvOptions(o)) => (
                    true,
                    o.fused_activation_function != fb::ActivationFunctionType::None,
                ),
                _ => (false, false),
            };
            let has_bias = s.op.inputs.len() == 4 && s.i(3).is_some();
            first(&[
                (aby == (I16, I8, I16) && bias_type_set, 5),
                (fused, 4),
                (has_bias, 3),
                (b == I8, 2),
            ])
        }
        Op::FullyConnected => {
            let o = match opts {
                Some(O::FullyConnectedOptions(o)) => Some(o),
                _ => None,
            };
            let w = s.input(1);
            let per_channel = w.is_some_and(|w| num_scales(w) > 0 && scales_match_dim(w, 0));
            let sparse = w.is_some_and(|w| w.sparsity.is_some());
            let keep_num_dims = o.is_some_and(|o| o.keep_num_dims);
            let asym = o.is_some_and(|o| o.asymmetric_quantize_inputs);
            let shuffled = o.is_some_and(|o| {
                o.weights_format == fb::FullyConnectedOptionsWeightsFormat::Shuffled4x16Int8
            });
            first(&[
                (b == I2, 14),
                (aby == (I16, I4, I16), 13),
                (aby == (F32, I8, F32) && per_channel, 12),
                (aby == (I16, I8, I16) && o.is_some(), 11),
                (sparse, 8),
                (aby == (I16, I16, I16), 7),
                (s.op.inputs.len() == 2, 6),
                (keep_num_dims, 5),
                (aby == (I8, I8, I8), 4),
                (aby == (I8, I4, I8), 10),
                (aby == (F32, I8, F32) && asym, 9),
                (aby == (F32, I8, F32), 3),
                (shuffled, 2),
            ])
        }
        Op::BatchMatmul => {
            let asym =
                matches!(opts, Some(O::BatchMatMulOptions(o)) if o.asymmetric_quantize_inputs);
            first(&[
                (a == I16, 3),
                (a == I8, 2),
                (aby == (F32, I8, F32) && asym, 4),
            ])
        }
        Op::EmbeddingLookup => {
            let per_channel = s
                .input(1)
                .is_some_and(|t| num_scales(t) > 1 && scales_match_dim(t, 0));
            first(&[(b == I4 || per_channel, 4), (b == I2, 5)])
        }

        // ---- recurrent ---------------------------------------------------------------
        // int16x8 (version 5) is not registered in the stock interpreter: module docs.
        Op::Lstm => {
            let (basic, asym) = match opts {
                Some(O::LstmOptions(o)) => (
                    o.kernel_type == fb::LstmKernelType::Basic,
                    o.asymmetric_quantize_inputs,
                ),
                _ => (false, false),
            };
            let full = !basic;
            first(&[
                (full && (a, c, y) == (I16, I8, I16), 5),
                (full && (a, c, y) == (F32, I8, F32) && asym, 4),
                (full && (a, c, y) == (F32, I8, F32), 3),
                (basic, 2),
            ])
        }
        Op::UnidirectionalSequenceLstm => {
            let (diagonal, asym) = match opts {
                Some(O::UnidirectionalSequenceLstmOptions(o)) => {
                    (o.diagonal_recurrent_tensors, o.asymmetric_quantize_inputs)
                }
                _ => (false, false),
            };
            first(&[
                ((a, c, y) == (I16, I8, I16), 5),
                (diagonal, 4),
                ((a, c, y) == (F32, I8, F32) && asym, 3),
                ((a, c, y) == (F32, I8, F32), 2),
            ])
        }
        Op::Svdf => {
            let asym = matches!(opts, Some(O::SvdfOptions(o)) if o.asymmetric_quantize_inputs);
            first(&[
                (a == I8, 3),
                (aby == (F32, I8, F32) && asym, 4),
                (aby == (F32, I8, F32), 2),
            ])
        }
        Op::Rnn
        | Op::UnidirectionalSequenceRnn
        | Op::BidirectionalSequenceRnn
        | Op::BidirectionalSequenceLstm => {
            let asym = match opts {
                Some(O::RnnOptions(o)) => o.asymmetric_quantize_inputs,
                Some(O::SequenceRnnOptions(o)) => o.asymmetric_quantize_inputs,
                Some(O::BidirectionalSequenceRnnOptions(o)) => o.asymmetric_quantize_inputs,
                Some(O::BidirectionalSequenceLstmOptions(o)) => o.asymmetric_quantize_inputs,
                _ => false,
            };
            first(&[((b, y) == (I8, F32) && asym, 3), ((b, y) == (I8, F32), 2)])
        }

        // ---- elementwise binary ------------------------------------------------------
        Op::Add => {
            let pot = matches!(opts, Some(O::AddOptions(o)) if o.pot_scale_int16);
            first(&[
                (a == F16, 6),
                (a == I16 && !s.has_quant(0), 5),
                (a == I64, 4),
                ((a, y) == (I16, I16) && !pot, 3),
                (a == I8, 2),
            ])
        }
        Op::Sub => {
            let pot = matches!(opts, Some(O::SubOptions(o)) if o.pot_scale_int16);
            first(&[
                ((a, y) == (I16, I16) && !pot, 5),
                (a == I64, 4),
                (s.broadcast_above_4d(), 3),
                (a == I8, 2),
            ])
        }
        Op::Mul => {
            let (quantized, rescale_ge_1) = mul_ext(s);
            first(&[
                (a == F16, 8),
                ((a == I16 && !quantized) || a == U32, 7),
                (a == C64, 6),
                (a == I64, 5),
                (a == I16, 4),
                (rescale_ge_1, 3),
                (a == I8, 2),
            ])
        }
        Op::Div => first(&[(s.broadcast_above_4d(), 2)]),
        Op::Maximum | Op::Minimum => first(&[
            ((a, y) == (I16, I16), 4),
            (s.broadcast_above_4d(), 3),
            (a == I8, 2),
        ]),
        Op::SquaredDifference => first(&[(a == I8, 2)]),
        Op::FloorDiv => first(&[(a_any(&[I16, I8]), 3), (a == F32, 2)]),
        Op::FloorMod => first(&[(a_any(&[I16, I8]), 2)]),
        Op::Equal => first(&[(a == I16, 5), (a == STR, 3), (a == I8, 2)]),
        Op::NotEqual => first(&[(a == I16, 4), (a == STR, 3), (a == I8, 2)]),
        Op::Less | Op::GreaterEqual => first(&[(a == I16, 3), (a == I8, 2)]),
        Op::Greater | Op::LessEqual => first(&[(a == I8, 2)]),

        // ---- pooling, activations, normalization -------------------------------------
        Op::MaxPool2d | Op::AveragePool2d => first(&[((a, y) == (I16, I16), 3), (a == I8, 2)]),
        Op::Logistic | Op::Tanh => first(&[((a, y) == (I16, I16), 3), (a == I8, 2)]),
        Op::Softmax => first(&[(a == F16, 4), (a == I16, 3), (a == I8, 2)]),
        Op::LogSoftmax => first(&[(a == I8, 2)]),
        Op::L2Normalization => first(&[(y == I8, 2)]),
        Op::Relu => first(&[(a == I16, 3), (a_any(&[I8, U8]), 2)]),
        Op::Relu6 | Op::Rsqrt => first(&[(a == I16, 3), (a == I8, 2)]),
        Op::LeakyRelu => first(&[(a == I16, 2)]),
        Op::Gelu => first(&[(a == F16, 3), (a_any(&[I8, U8]), 2)]),
        Op::Abs => first(&[
            (a == I32, 5),
            (a == I16 && s.has_quant(0), 3),
            (a == I16, 4),
            (a_any(&[I8, U8]), 2),
        ]),
        Op::Exp | Op::Log | Op::Sqrt => first(&[(a_any(&[I8, I16]), 2)]),
        Op::Sign => first(&[(a == I32, 2)]),
        Op::Sin | Op::Cos => first(&[(a == F16, 2)]),
        // One version for every dtype: the int8/int16 kernels came with version 1.
        Op::HardSwish
        | Op::Prelu
        | Op::ReluN1To1
        | Op::Relu0To1
        | Op::Elu
        | Op::Neg
        | Op::Square
        | Op::Cumsum => 1,

        // ---- reductions ----------------------------------------------------------------
        Op::Mean | Op::ReduceMax | Op::ReduceMin => first(&[(a == I16, 3), (a == I8, 2)]),
        Op::Sum => first(&[(a == I8, 2)]),
        Op::ReduceProd => first(&[(a_any(&[I8, I16]), 2)]),
        Op::ArgMax | Op::ArgMin => first(&[(a == BOOL, 3), (a == I8, 2)]),
        Op::TopkV2 => first(&[(a == I16 || b == I16 || s.o(1) == I16, 3), (a == I8, 2)]),

        // ---- shape and data movement ---------------------------------------------------
        Op::Concatenation => first(&[
            (is_f8(a), 7),
            (a == F16, 6),
            (a == I4, 5),
            (a == U32, 4),
            (a == I16, 3),
            (a == I8, 2),
        ]),
        Op::Transpose => {
            let r = s.rank(0);
            first(&[
                (a == F16, 9),
                (r > 6 || a == BF16, 8),
                (a == I4, 7),
                (r > 5, 6),
                (a == I16, 5),
                (r > 4, 4),
                (a == BOOL, 3),
                (a == I8, 2),
            ])
        }
        Op::Slice => first(&[
            (a == F16, 8),
            (a == I4, 7),
            (a == U32, 6),
            (s.rank(0) > 4, 5),
            (a == I16, 4),
            (a == STR, 3),
            (a == I8, 2),
        ]),
        Op::StridedSlice => {
            let (offset, masks) = match opts {
                Some(O::StridedSliceOptions(o)) => {
                    (o.offset, o.ellipsis_mask != 0 || o.new_axis_mask != 0)
                }
                _ => (false, false),
            };
            first(&[
                (offset, 8),
                (a == U32, 7),
                (masks, 6),
                (a == STR, 5),
                (s.rank(0) > 4, 4),
                (a == BOOL, 3),
                (a == I8, 2),
            ])
        }
        // Input 0 is the axis; the data is input 1.
        Op::Split => first(&[(is_f8(b), 5), (b == I16, 4), (b == I32, 3), (b == I8, 2)]),
        Op::SplitV => first(&[(is_f8(a), 3), (a == I8, 2)]),
        Op::Pad | Op::Padv2 => first(&[
            (is_f8(a), 6),
            (a == BOOL, 5),
            (s.rank(0) > 4, 4),
            (a == I16, 3),
            (a == I8, 2),
        ]),
        Op::MirrorPad => first(&[(a == I16, 3), (a == I8, 2)]),
        Op::Gather => {
            let batch_dims = matches!(opts, Some(O::GatherOptions(o)) if o.batch_dims != 0);
            first(&[
                (is_f8(a), 8),
                (a == I4, 7),
                (b == I16, 6),
                (batch_dims, 5),
                (a == I16, 4),
                (a == BOOL, 3),
                (a == I8, 2),
            ])
        }
        Op::GatherNd => first(&[
            (is_f8(a), 6),
            (a == BOOL, 5),
            (b == I16, 4),
            (a == I16, 3),
            (a == STR, 2),
        ]),
        Op::Pack => first(&[
            (is_f8(a), 5),
            (a == I8, 2),
            ((a, y) == (I16, I16), 3),
            (a == U32, 4),
        ]),
        Op::Unpack => first(&[
            (is_f8(a), 6),
            (a_any(&[I8, U8]), 2),
            (a == BOOL, 3),
            ((a, y) == (I16, I16), 4),
            (a_any(&[F16, BF16]), 5),
        ]),
        Op::Tile => first(&[(a == I8, 3), (a == STR, 2)]),
        // Version 1 was withdrawn: BROADCAST_TO starts at 2.
        Op::BroadcastTo => first(&[(is_f8(a), 4), (a_any(&[I8, I16]), 3), (true, 2)]),
        Op::ReverseV2 => first(&[(is_f8(a), 4), (a == I8, 3), (a == BOOL, 2)]),
        Op::Squeeze => first(&[(a == STR, 2)]),
        // Input 0 of SELECT is the condition: the int8 and uint32 rows test it, so they
        // never apply to a well-formed SELECT; kept as the converter has them.
        Op::Select => first(&[
            (a == U32, 4),
            ((0..3).any(|i| s.rank(i) == 5), 3),
            (a == I8, 2),
        ]),
        Op::SelectV2 => first(&[(a == U32, 2)]),
        Op::DynamicUpdateSlice => first(&[
            (a == BF16, 6),
            (a == I4, 5),
            (a == I16, 4),
            (a == F16, 3),
            (c == I64, 2),
        ]),
        Op::ResizeBilinear => {
            let half_pixel =
                matches!(opts, Some(O::ResizeBilinearOptions(o)) if o.half_pixel_centers);
            first(&[(a == I16, 4), (half_pixel, 3), (a == I8, 2)])
        }
        Op::ResizeNearestNeighbor => {
            let half_or_align = matches!(opts,
                Some(O::ResizeNearestNeighborOptions(o)) if o.half_pixel_centers || o.align_corners);
            first(&[(a == I16, 4), (half_or_align, 3), (a == I8, 2)])
        }
        Op::DepthToSpace | Op::SpaceToDepth => first(&[(a == I8, 2)]),
        Op::SpaceToBatchNd | Op::BatchToSpaceNd => {
            first(&[(a == I16, 4), (s.rank(0) != 4, 3), (a == I8, 2)])
        }
        Op::Fill => {
            let has_value = s.op.inputs.len() >= 2;
            first(&[
                (has_value && is_f8(b), 5),
                (has_value && b == F16, 4),
                (has_value && (b == I8 || b == I16), 3),
                (has_value && (b == BOOL || b == STR), 2),
            ])
        }
        Op::Where => first(&[(a != BOOL, 2)]),
        Op::SparseToDense => first(&[(c == I8 || c == U8, 3), (c == I64, 2)]),
        Op::Range => first(&[(a == I64, 2)]),
        Op::Reshape | Op::ExpandDims | Op::ScatterNd => 1,

        // ---- (de)quantization and casts -------------------------------------------------
        Op::Quantize => {
            let per_channel = per_axis_on_quantized_dim(s.output(0));
            first(&[
                (a == U4 || y == U4, 5),
                (a == I4 || y == I4, 4),
                (per_channel, 3),
                (y == I16, 2),
            ])
        }
        Op::Dequantize => {
            let per_channel = per_axis_on_quantized_dim(s.input(0));
            first(&[
                (is_f8(a), 9),
                (a == U4, 8),
                (a == I2, 7),
                (a == I4, 6),
                (a_any(&[I16, F16]), 3),
                (a == I8 && per_channel, 5),
                (a == I8, 2),
            ])
        }
        Op::FakeQuant => first(&[(
            matches!(opts, Some(O::FakeQuantOptions(o)) if o.narrow_range),
            2,
        )]),
        Op::Cast => {
            let either = |ts: &[Option<T>]| ts.contains(&a) || ts.contains(&y);
            first(&[
                (is_f8(a) || is_f8(y), 9),
                (either(&[I2, U4]), 8),
                (either(&[BF16]), 7),
                ((a, y) == (I4, F32), 6),
                (either(&[F64, F16]), 5),
                (either(&[U16]), 4),
                (either(&[I8]), 3),
                (either(&[U32]), 2),
            ])
        }
        _ => 1,
    }
}

/// MUL's derived facts: whether input 0 or 1 has a quantization table, and whether the
/// rescale `s_in1 · s_in2 / s_out` (first scales, all non-zero) is at least 1.
fn mul_ext(s: &Sig) -> (bool, bool) {
    if s.op.inputs.len() < 2 || s.op.outputs.is_empty() {
        return (false, false);
    }
    let quantized = s.has_quant(0) || s.has_quant(1);
    let first_scale = |t: Option<&Tensor>| -> f32 {
        t.and_then(|t| t.quant.as_ref())
            .and_then(|q| q.scale.first().copied())
            .unwrap_or(0.0)
    };
    let (s1, s2, so) = (
        first_scale(s.input(0)),
        first_scale(s.input(1)),
        first_scale(s.output(0)),
    );
    let rescale_ge_1 = s1 != 0.0 && s2 != 0.0 && so != 0.0 && s1 * s2 / so >= 1.0;
    (quantized, rescale_ge_1)
}

/// Hand-built signatures for what `testdata/` does not cover. Each expected number is the
/// converter's (`op_version.cc`), noted with the row that gives it when it is not
/// obvious.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Buffer, OperatorCode, QuantParams};
    use fb::BuiltinOptions as O;

    /// A tensor of a signature; `None` marks an omitted input (index -1).
    type S = Option<Tensor>;

    /// No quantization table at all.
    fn plain(dtype: T, shape: &[i32]) -> S {
        Some(Tensor::new("t", dtype, shape.to_vec()))
    }

    fn f32_(shape: &[i32]) -> S {
        plain(T::Float32, shape)
    }

    /// One scale for the tensor.
    fn q(dtype: T, shape: &[i32]) -> S {
        qs(dtype, shape, 0.05)
    }

    fn qs(dtype: T, shape: &[i32], scale: f32) -> S {
        plain(dtype, shape).map(|mut t| {
            t.quant = Some(QuantParams::per_tensor(scale, 0));
            t
        })
    }

    /// One scale per slice of `axis`.
    fn pc(dtype: T, shape: &[i32], axis: usize) -> S {
        let n = shape[axis] as usize;
        plain(dtype, shape).map(|mut t| {
            t.quant = Some(QuantParams::per_axis(
                vec![0.05; n],
                vec![0; n],
                axis as i32,
            ));
            t
        })
    }

    /// An empty quantization table (what TF writes on float tensors).
    fn empty_q(dtype: T, shape: &[i32]) -> S {
        plain(dtype, shape).map(|mut t| {
            t.quant = Some(QuantParams::default());
            t
        })
    }

    fn sparse(t: S) -> S {
        t.map(|mut t| {
            t.sparsity = Some(Default::default());
            t
        })
    }

    /// The version of one operator with these inputs, outputs and options.
    fn ver(op: Op, inputs: &[S], outputs: &[S], options: Option<O>) -> i32 {
        let mut sg = Subgraph::default();
        let mut add = |t: &S| -> i32 {
            match t {
                None => -1,
                Some(t) => {
                    sg.tensors.push(t.clone());
                    sg.tensors.len() as i32 - 1
                }
            }
        };
        let ins = inputs.iter().map(&mut add).collect();
        let outs = outputs.iter().map(&mut add).collect();
        let mut operator = Operator::new(0, ins, outs);
        operator.builtin_options = options;
        sg.operators.push(operator);
        let model = Model {
            version: 3,
            operator_codes: vec![OperatorCode {
                builtin: op,
                custom_code: None,
                version: 1,
            }],
            subgraphs: vec![sg],
            buffers: vec![Buffer::default()],
            ..Default::default()
        };
        let sg = &model.subgraphs[0];
        required_version(&model, sg, &sg.operators[0])
    }

    /// Same input and output signature for a unary operator.
    fn unary(op: Op, t: S) -> i32 {
        let ts = std::slice::from_ref(&t);
        ver(op, ts, ts, None)
    }

    fn binary(op: Op, a: S, b: S, y: S) -> i32 {
        ver(op, &[a, b], &[y], None)
    }

    fn fc_opts(f: impl FnOnce(&mut fb::FullyConnectedOptions)) -> Option<O> {
        let mut o = fb::FullyConnectedOptions::default();
        f(&mut o);
        Some(O::FullyConnectedOptions(Box::new(o)))
    }

    #[test]
    fn fully_connected() {
        let fc = |a: S, w: S, b: S, y: S, opts: Option<O>| {
            ver(Op::FullyConnected, &[a, w, b], &[y], opts)
        };
        let fc2 = |a: S, w: S, y: S| ver(Op::FullyConnected, &[a, w], &[y], fc_opts(|_| ()));
        let d = || fc_opts(|_| ());
        let (i8a, i16a) = (q(T::Int8, &[1, 8]), q(T::Int16, &[1, 8]));
        let (i8y, i16y) = (q(T::Int8, &[1, 4]), q(T::Int16, &[1, 4]));
        let w8 = pc(T::Int8, &[4, 8], 0);
        let (b32, b64) = (pc(T::Int32, &[4], 0), pc(T::Int64, &[4], 0));

        assert_eq!(
            fc(f32_(&[1, 8]), f32_(&[4, 8]), f32_(&[4]), f32_(&[1, 4]), d()),
            1
        );
        // int8: version 4, whether the bias is present or omitted (-1).
        assert_eq!(
            fc(i8a.clone(), w8.clone(), b32.clone(), i8y.clone(), d()),
            4
        );
        assert_eq!(fc(i8a.clone(), w8.clone(), None, i8y.clone(), d()), 4);
        // Two inputs (no bias slot at all) is version 6, keep_num_dims 5.
        assert_eq!(fc2(i8a.clone(), w8.clone(), i8y.clone()), 6);
        let keep = fc_opts(|o| o.keep_num_dims = true);
        assert_eq!(
            fc(i8a.clone(), w8.clone(), b32.clone(), i8y.clone(), keep),
            5
        );
        // int16x8: the options table makes quantized_bias_type "set": 11 for either bias.
        assert_eq!(
            fc(i16a.clone(), w8.clone(), b64.clone(), i16y.clone(), d()),
            11
        );
        assert_eq!(
            fc(i16a.clone(), w8.clone(), b32.clone(), i16y.clone(), d()),
            11
        );
        assert_eq!(fc2(i16a.clone(), w8.clone(), i16y.clone()), 11);
        // ... and without options it is not: the plain rows apply.
        assert_eq!(
            fc(i16a.clone(), w8.clone(), b64.clone(), i16y.clone(), None),
            1
        );
        // int16 weights too: 7.
        let w16 = pc(T::Int16, &[4, 8], 0);
        assert_eq!(fc(i16a.clone(), w16, b64.clone(), i16y.clone(), d()), 7);
        // uint8 is the original quantized kernel.
        let u8w = q(T::Uint8, &[4, 8]);
        let u8b = q(T::Int32, &[4]);
        assert_eq!(
            fc(q(T::Uint8, &[1, 8]), u8w, u8b, q(T::Uint8, &[1, 4]), d()),
            1
        );
        // INT4 / INT2 weights.
        let w4 = pc(T::Int4, &[4, 8], 0);
        assert_eq!(
            fc(i8a.clone(), w4.clone(), b32.clone(), i8y.clone(), d()),
            10
        );
        assert_eq!(
            fc(i16a.clone(), w4.clone(), b64.clone(), i16y.clone(), d()),
            13
        );
        let w2 = pc(T::Int2, &[4, 8], 0);
        assert_eq!(fc(i8a.clone(), w2, b32.clone(), i8y.clone(), d()), 14);

        // Hybrid: per-tensor 3, asymmetric inputs 9, per-channel 12 (before asymmetric).
        let (fa, fb_, fy) = (f32_(&[1, 8]), f32_(&[4]), f32_(&[1, 4]));
        let w8t = q(T::Int8, &[4, 8]);
        assert_eq!(fc(fa.clone(), w8t.clone(), fb_.clone(), fy.clone(), d()), 3);
        let asym = || fc_opts(|o| o.asymmetric_quantize_inputs = true);
        assert_eq!(
            fc(fa.clone(), w8t.clone(), fb_.clone(), fy.clone(), asym()),
            9
        );
        assert_eq!(
            fc(fa.clone(), w8.clone(), fb_.clone(), fy.clone(), asym()),
            12
        );
        assert_eq!(fc(fa.clone(), w8.clone(), fb_.clone(), fy.clone(), d()), 12);
        // One output row with one scale counts as per-channel for the converter.
        let one_row = q(T::Int8, &[1, 8]);
        assert_eq!(fc(fa.clone(), one_row, f32_(&[1]), f32_(&[1, 1]), d()), 12);
        // Weight-only INT4 (per channel or blockwise): tflquant's minimum 10.
        assert_eq!(fc(fa.clone(), w4, fb_.clone(), fy.clone(), d()), 10);
        assert_eq!(fc2(fa.clone(), q(T::Int4, &[4, 8]), fy.clone()), 10);
        // Sparse weights 8; shuffled weights 2.
        let sw = sparse(f32_(&[4, 8]));
        assert_eq!(fc(fa.clone(), sw, fb_.clone(), fy.clone(), d()), 8);
        let shuffled = fc_opts(|o| {
            o.weights_format = fb::FullyConnectedOptionsWeightsFormat::Shuffled4x16Int8
        });
        assert_eq!(fc(fa, f32_(&[4, 8]), fb_, fy, shuffled), 2);
    }

    fn conv_opts(f: impl FnOnce(&mut fb::Conv2DOptions)) -> Option<O> {
        let mut o = fb::Conv2DOptions::default();
        f(&mut o);
        Some(O::Conv2DOptions(Box::new(o)))
    }

    fn dw_opts(f: impl FnOnce(&mut fb::DepthwiseConv2DOptions)) -> Option<O> {
        let mut o = fb::DepthwiseConv2DOptions::default();
        f(&mut o);
        Some(O::DepthwiseConv2DOptions(Box::new(o)))
    }

    #[test]
    fn conv_2d() {
        let conv =
            |x: S, w: S, b: S, y: S, opts: Option<O>| ver(Op::Conv2d, &[x, w, b], &[y], opts);
        let d = || conv_opts(|_| ());
        let (x, y) = (&[1, 8, 8, 3][..], &[1, 8, 8, 4][..]);
        let w8 = pc(T::Int8, &[4, 3, 3, 3], 0);
        let b32 = pc(T::Int32, &[4], 0);
        assert_eq!(
            conv(f32_(x), f32_(&[4, 3, 3, 3]), f32_(&[4]), f32_(y), d()),
            1
        );
        assert_eq!(
            conv(q(T::Int8, x), w8.clone(), b32.clone(), q(T::Int8, y), d()),
            3
        );
        // uint8: 1.
        let u = |s: &[i32]| q(T::Uint8, s);
        assert_eq!(
            conv(u(x), u(&[4, 3, 3, 3]), q(T::Int32, &[4]), u(y), d()),
            1
        );
        // int16x8 with int64 (or int32) bias: 8 once options exist.
        let b64 = pc(T::Int64, &[4], 0);
        let (x16, y16) = (q(T::Int16, x), q(T::Int16, y));
        assert_eq!(
            conv(x16.clone(), w8.clone(), b64.clone(), y16.clone(), d()),
            8
        );
        assert_eq!(
            conv(x16.clone(), w8.clone(), b32.clone(), y16.clone(), d()),
            8
        );
        assert_eq!(conv(x16, w8.clone(), b64, y16, None), 1);
        // Grouped (input has 6 channels, filter 3): 6, float or int8.
        let x6 = &[1, 8, 8, 6][..];
        assert_eq!(
            conv(f32_(x6), f32_(&[4, 3, 3, 3]), f32_(&[4]), f32_(y), d()),
            6
        );
        assert_eq!(
            conv(q(T::Int8, x6), w8.clone(), b32.clone(), q(T::Int8, y), d()),
            6
        );
        // int4 filter with int8 activations: 7.
        let w4 = pc(T::Int4, &[4, 3, 3, 3], 0);
        assert_eq!(conv(q(T::Int8, x), w4, b32, q(T::Int8, y), d()), 7);
        // Hybrid: per-tensor 2, per-channel 5.
        let wt = q(T::Int8, &[4, 3, 3, 3]);
        assert_eq!(conv(f32_(x), wt, f32_(&[4]), f32_(y), d()), 2);
        assert_eq!(conv(f32_(x), w8, f32_(&[4]), f32_(y), d()), 5);
    }

    #[test]
    fn depthwise_conv_2d() {
        let dw = |x: S, w: S, b: S, y: S, opts: Option<O>| {
            ver(Op::DepthwiseConv2d, &[x, w, b], &[y], opts)
        };
        let d = || dw_opts(|_| ());
        let (x, y, wshape) = (&[1, 8, 8, 4][..], &[1, 8, 8, 4][..], &[1, 3, 3, 4][..]);
        let w8 = pc(T::Int8, wshape, 3);
        let b32 = pc(T::Int32, &[4], 0);
        assert_eq!(dw(f32_(x), f32_(wshape), f32_(&[4]), f32_(y), d()), 1);
        let dilated = dw_opts(|o| o.dilation_h_factor = 2);
        assert_eq!(dw(f32_(x), f32_(wshape), f32_(&[4]), f32_(y), dilated), 2);
        // Without options the parser leaves the dilation at 0: counted as dilated.
        assert_eq!(dw(f32_(x), f32_(wshape), f32_(&[4]), f32_(y), None), 2);
        assert_eq!(
            dw(q(T::Int8, x), w8.clone(), b32.clone(), q(T::Int8, y), d()),
            3
        );
        let w4 = pc(T::Int4, wshape, 3);
        assert_eq!(dw(q(T::Int8, x), w4, b32, q(T::Int8, y), d()), 7);
        // int16x8 has no row of its own in op_version.cc; TF's converter writes 3.
        let b64 = pc(T::Int64, &[4], 0);
        let (x16, y16) = (q(T::Int16, x), q(T::Int16, y));
        assert_eq!(
            dw(x16.clone(), w8.clone(), b64.clone(), y16.clone(), d()),
            3
        );
        let dilated = dw_opts(|o| o.dilation_w_factor = 2);
        assert_eq!(dw(x16, w8.clone(), b64, y16, dilated), 3);
        // Hybrid: per-tensor 4, per-channel 6.
        assert_eq!(dw(f32_(x), q(T::Int8, wshape), f32_(&[4]), f32_(y), d()), 4);
        assert_eq!(dw(f32_(x), w8, f32_(&[4]), f32_(y), d()), 6);
    }

    #[test]
    fn transpose_conv() {
        let opts = |act| {
            Some(O::TransposeConvOptions(Box::new(
                fb::TransposeConvOptions {
                    fused_activation_function: act,
                    ..Default::default()
                },
            )))
        };
        let none = || opts(fb::ActivationFunctionType::None);
        let shape = plain(T::Int32, &[4]);
        let (x, y, ws) = (&[1, 4, 4, 8][..], &[1, 8, 8, 2][..], &[2, 3, 3, 8][..]);
        let tc = |ins: &[S], out: S, o: Option<O>| ver(Op::TransposeConv, ins, &[out], o);
        let fl = [shape.clone(), f32_(ws), f32_(x)];
        assert_eq!(tc(&fl, f32_(y), none()), 1);
        assert_eq!(
            tc(
                &[fl[0].clone(), fl[1].clone(), fl[2].clone(), None],
                f32_(y),
                none()
            ),
            1
        );
        let with_bias = [fl[0].clone(), fl[1].clone(), fl[2].clone(), f32_(&[2])];
        assert_eq!(tc(&with_bias, f32_(y), none()), 3);
        assert_eq!(
            tc(&with_bias, f32_(y), opts(fb::ActivationFunctionType::Relu)),
            4
        );
        let w8 = pc(T::Int8, ws, 0);
        let i8 = [shape.clone(), w8.clone(), q(T::Int8, x)];
        assert_eq!(tc(&i8, q(T::Int8, y), none()), 2);
        let i8b = [
            i8[0].clone(),
            i8[1].clone(),
            i8[2].clone(),
            pc(T::Int32, &[2], 0),
        ];
        assert_eq!(tc(&i8b, q(T::Int8, y), none()), 3);
        // int16x8: the int16 row tests input 0 (the output shape), so it is the bias row.
        let i16b = [shape, w8, q(T::Int16, x), pc(T::Int64, &[2], 0)];
        assert_eq!(tc(&i16b, q(T::Int16, y), none()), 3);
    }

    #[test]
    fn batch_matmul() {
        let bmm = |a: S, b: S, y: S, asym: bool| {
            let o = fb::BatchMatMulOptions {
                asymmetric_quantize_inputs: asym,
                ..Default::default()
            };
            ver(
                Op::BatchMatmul,
                &[a, b],
                &[y],
                Some(O::BatchMatMulOptions(Box::new(o))),
            )
        };
        let (a, b, y) = (&[2, 3, 4][..], &[2, 4, 5][..], &[2, 3, 5][..]);
        assert_eq!(bmm(f32_(a), f32_(b), f32_(y), false), 1);
        assert_eq!(bmm(q(T::Int8, a), q(T::Int8, b), q(T::Int8, y), false), 2);
        assert_eq!(
            bmm(q(T::Int16, a), q(T::Int16, b), q(T::Int16, y), false),
            3
        );
        assert_eq!(bmm(q(T::Int16, a), q(T::Int8, b), q(T::Int16, y), false), 3);
        assert_eq!(bmm(f32_(a), q(T::Int8, b), f32_(y), true), 4);
        assert_eq!(bmm(f32_(a), q(T::Int8, b), f32_(y), false), 1);
    }

    #[test]
    fn add_sub_mul_div() {
        let add_opts = |pot| {
            Some(O::AddOptions(Box::new(fb::AddOptions {
                pot_scale_int16: pot,
                ..Default::default()
            })))
        };
        let sub_opts = |pot| {
            Some(O::SubOptions(Box::new(fb::SubOptions {
                pot_scale_int16: pot,
                ..Default::default()
            })))
        };
        let s = &[1, 4, 4, 3][..];
        let add =
            |t: fn(T, &[i32]) -> S, dt, o| ver(Op::Add, &[t(dt, s), t(dt, s)], &[t(dt, s)], o);
        assert_eq!(add(plain, T::Float32, add_opts(true)), 1);
        assert_eq!(add(q, T::Int8, add_opts(true)), 2);
        assert_eq!(add(q, T::Uint8, add_opts(true)), 1);
        // int16: general scales 3, power-of-two scales 1, no options (pot = false) 3,
        // plain (unquantized) int16 5.
        assert_eq!(add(q, T::Int16, add_opts(false)), 3);
        assert_eq!(add(q, T::Int16, add_opts(true)), 1);
        assert_eq!(add(q, T::Int16, None), 3);
        assert_eq!(add(plain, T::Int16, add_opts(false)), 5);
        assert_eq!(add(plain, T::Int64, None), 4);
        assert_eq!(add(plain, T::Float16, None), 6);
        // An empty quantization table still counts as "quantized" for ADD's int16 row.
        assert_eq!(add(empty_q, T::Int16, add_opts(false)), 3);
        // ADD has no broadcasting row.
        let b5 = (f32_(&[1, 2, 3, 4, 5]), f32_(&[5]));
        assert_eq!(binary(Op::Add, b5.0.clone(), b5.1.clone(), b5.0.clone()), 1);

        let sub =
            |t: fn(T, &[i32]) -> S, dt, o| ver(Op::Sub, &[t(dt, s), t(dt, s)], &[t(dt, s)], o);
        assert_eq!(sub(plain, T::Float32, sub_opts(true)), 1);
        assert_eq!(sub(q, T::Int8, sub_opts(true)), 2);
        assert_eq!(sub(q, T::Int16, sub_opts(false)), 5);
        assert_eq!(sub(q, T::Int16, None), 5);
        assert_eq!(sub(q, T::Int16, sub_opts(true)), 1);
        assert_eq!(sub(plain, T::Int64, None), 4);
        // Broadcasting with an input above 4-D: 3 (also int8); same shapes stay 1.
        assert_eq!(binary(Op::Sub, b5.0.clone(), b5.1.clone(), b5.0.clone()), 3);
        let q5 = (q(T::Int8, &[1, 2, 3, 4, 5]), q(T::Int8, &[1, 1, 1, 1, 5]));
        assert_eq!(binary(Op::Sub, q5.0.clone(), q5.1.clone(), q5.0.clone()), 3);
        assert_eq!(binary(Op::Sub, b5.0.clone(), b5.0.clone(), b5.0.clone()), 1);

        // MUL: int8 2, or 3 when s_in1 * s_in2 / s_out >= 1 (uint8 too).
        let mul = |dt, s1, s2, so| binary(Op::Mul, qs(dt, s, s1), qs(dt, s, s2), qs(dt, s, so));
        assert_eq!(mul(T::Int8, 0.1, 0.1, 0.05), 2);
        assert_eq!(mul(T::Int8, 0.5, 0.5, 0.25), 3);
        assert_eq!(mul(T::Uint8, 0.1, 0.1, 0.05), 1);
        assert_eq!(mul(T::Uint8, 1.0, 2.0, 0.5), 3);
        assert_eq!(mul(T::Int16, 0.1, 0.1, 0.05), 4);
        assert_eq!(
            binary(
                Op::Mul,
                plain(T::Int16, s),
                plain(T::Int16, s),
                plain(T::Int16, s)
            ),
            7
        );
        assert_eq!(binary(Op::Mul, f32_(s), f32_(s), f32_(s)), 1);
        assert_eq!(
            binary(
                Op::Mul,
                plain(T::Int64, s),
                plain(T::Int64, s),
                plain(T::Int64, s)
            ),
            5
        );
        assert_eq!(
            binary(
                Op::Mul,
                plain(T::Float16, s),
                plain(T::Float16, s),
                plain(T::Float16, s)
            ),
            8
        );

        // DIV: only broadcasting above 4-D matters.
        assert_eq!(binary(Op::Div, f32_(s), f32_(&[3]), f32_(s)), 1);
        assert_eq!(binary(Op::Div, b5.0.clone(), b5.1.clone(), b5.0.clone()), 2);
        assert_eq!(
            binary(Op::Div, q(T::Uint8, s), q(T::Uint8, s), q(T::Uint8, s)),
            1
        );
    }

    #[test]
    fn other_binary() {
        let s = &[1, 4, 4, 3][..];
        let same = |op, dt: T, quant: bool| {
            let t = if quant { q(dt, s) } else { plain(dt, s) };
            binary(op, t.clone(), t.clone(), t)
        };
        let cmp = |op, dt: T| binary(op, q(dt, s), q(dt, s), plain(T::Bool, s));
        for (op, v8, v16) in [
            (Op::SquaredDifference, 2, 1),
            (Op::Maximum, 2, 4),
            (Op::Minimum, 2, 4),
        ] {
            assert_eq!(same(op, T::Float32, false), 1, "{op:?}");
            assert_eq!(same(op, T::Int8, true), v8, "{op:?}");
            assert_eq!(same(op, T::Int16, true), v16, "{op:?}");
        }
        let b5 = (q(T::Int8, &[1, 2, 3, 4, 5]), q(T::Int8, &[5]));
        assert_eq!(
            binary(Op::Maximum, b5.0.clone(), b5.1.clone(), b5.0.clone()),
            3
        );
        assert_eq!(binary(Op::Minimum, b5.0.clone(), b5.1, b5.0), 3);
        for (op, v8, v16) in [
            (Op::Equal, 2, 5),
            (Op::NotEqual, 2, 4),
            (Op::Less, 2, 3),
            (Op::LessEqual, 2, 1),
            (Op::Greater, 2, 1),
            (Op::GreaterEqual, 2, 3),
        ] {
            assert_eq!(cmp(op, T::Float32), 1, "{op:?}");
            assert_eq!(cmp(op, T::Int8), v8, "{op:?}");
            assert_eq!(cmp(op, T::Uint8), 1, "{op:?}");
            assert_eq!(cmp(op, T::Int16), v16, "{op:?}");
        }
    }

    #[test]
    fn unary_by_dtype() {
        let s = &[1, 4, 4, 3][..];
        // (op, float, int8, int16, uint8), quantized tensors in and out.
        let table = [
            (Op::AveragePool2d, 1, 2, 3, 1),
            (Op::MaxPool2d, 1, 2, 3, 1),
            (Op::Logistic, 1, 2, 3, 1),
            (Op::Tanh, 1, 2, 3, 1),
            (Op::Softmax, 1, 2, 3, 1),
            (Op::LogSoftmax, 1, 2, 1, 1),
            (Op::L2Normalization, 1, 2, 1, 1),
            (Op::Gelu, 1, 2, 1, 2),
            (Op::Relu, 1, 2, 3, 2),
            (Op::Relu6, 1, 2, 3, 1),
            (Op::ReluN1To1, 1, 1, 1, 1),
            (Op::Elu, 1, 1, 1, 1),
            (Op::HardSwish, 1, 1, 1, 1),
            (Op::LeakyRelu, 1, 1, 2, 1),
            (Op::Rsqrt, 1, 2, 3, 1),
            (Op::Sqrt, 1, 2, 2, 1),
            (Op::Exp, 1, 2, 2, 1),
            (Op::Log, 1, 2, 2, 1),
            (Op::Neg, 1, 1, 1, 1),
            (Op::Abs, 1, 2, 3, 2),
            (Op::Cumsum, 1, 1, 1, 1),
            (Op::Reshape, 1, 1, 1, 1),
            (Op::Squeeze, 1, 1, 1, 1),
            (Op::ExpandDims, 1, 1, 1, 1),
            (Op::Concatenation, 1, 2, 3, 1),
            (Op::Pack, 1, 2, 3, 1),
            (Op::Unpack, 1, 2, 4, 2),
            (Op::Tile, 1, 3, 1, 1),
            (Op::BroadcastTo, 2, 3, 3, 2),
            (Op::ReverseV2, 1, 3, 1, 1),
            (Op::Slice, 1, 2, 4, 1),
            (Op::StridedSlice, 1, 2, 1, 1),
            (Op::SplitV, 1, 2, 1, 1),
            (Op::Pad, 1, 2, 3, 1),
            (Op::Padv2, 1, 2, 3, 1),
            (Op::MirrorPad, 1, 2, 3, 1),
            (Op::Gather, 1, 2, 4, 1),
            (Op::GatherNd, 1, 1, 3, 1),
            (Op::DepthToSpace, 1, 2, 1, 1),
            (Op::SpaceToDepth, 1, 2, 1, 1),
            (Op::SpaceToBatchNd, 1, 2, 4, 1),
            (Op::BatchToSpaceNd, 1, 2, 4, 1),
            (Op::Mean, 1, 2, 3, 1),
            (Op::Sum, 1, 2, 1, 1),
            (Op::ReduceMax, 1, 2, 3, 1),
            (Op::ReduceMin, 1, 2, 3, 1),
            (Op::ReduceProd, 1, 2, 2, 1),
            (Op::DynamicUpdateSlice, 1, 1, 4, 1),
            (Op::ResizeBilinear, 1, 2, 4, 1),
            (Op::ResizeNearestNeighbor, 1, 2, 4, 1),
            (Op::ArgMax, 1, 2, 1, 1),
            (Op::ArgMin, 1, 2, 1, 1),
            (Op::ScatterNd, 1, 1, 1, 1),
            (Op::Transpose, 1, 2, 5, 1),
            (Op::Select, 1, 1, 1, 1),
            (Op::SelectV2, 1, 1, 1, 1),
        ];
        for (op, vf, v8, v16, vu8) in table {
            for (dt, want) in [
                (T::Float32, vf),
                (T::Int8, v8),
                (T::Int16, v16),
                (T::Uint8, vu8),
            ] {
                let t = if dt == T::Float32 { f32_(s) } else { q(dt, s) };
                // Data in input 0 except SELECT / SELECT_V2 (condition first); the other
                // inputs are INT32 parameters. The version rules read only these.
                let ins = match op {
                    Op::Select | Op::SelectV2 => {
                        vec![plain(T::Bool, s), t.clone(), t.clone()]
                    }
                    _ => vec![t.clone(), plain(T::Int32, &[4])],
                };
                assert_eq!(ver(op, &ins, &[t], None), want, "{op:?} {dt:?}");
            }
        }
        // ABS on plain int16 is the non-quantized kernel: 4; int32 5.
        assert_eq!(unary(Op::Abs, plain(T::Int16, s)), 4);
        assert_eq!(unary(Op::Abs, plain(T::Int32, s)), 5);
        // L2_NORMALIZATION is decided by its output: int8 2.
        assert_eq!(
            ver(Op::L2Normalization, &[f32_(s)], &[q(T::Int8, s)], None),
            2
        );
    }

    #[test]
    fn rank_dependent() {
        let r = |n: usize| vec![2; n];
        let t8 = |n: usize| q(T::Int8, &r(n));
        let f = |n: usize| f32_(&r(n));
        let t16 = |n: usize| q(T::Int16, &r(n));
        let param = || plain(T::Int32, &[4]);
        let one = |op, t: S| ver(op, &[t.clone(), param()], &[t], None);
        // PAD / PADV2: above 4-D 4 (before int16/int8).
        for op in [Op::Pad, Op::Padv2] {
            assert_eq!(one(op, f(5)), 4);
            assert_eq!(one(op, t8(5)), 4);
            assert_eq!(one(op, t16(5)), 4);
            assert_eq!(one(op, t8(4)), 2);
        }
        // TRANSPOSE: 5-D 4, 6-D 6, 7-D 8; int16 5 up to 5-D.
        assert_eq!(one(Op::Transpose, f(5)), 4);
        assert_eq!(one(Op::Transpose, t8(5)), 4);
        assert_eq!(one(Op::Transpose, t16(5)), 5);
        assert_eq!(one(Op::Transpose, f(6)), 6);
        assert_eq!(one(Op::Transpose, t16(6)), 6);
        assert_eq!(one(Op::Transpose, f(7)), 8);
        // SLICE above 4-D 5; STRIDED_SLICE above 4-D 4.
        assert_eq!(one(Op::Slice, t8(5)), 5);
        assert_eq!(one(Op::Slice, t16(5)), 5);
        assert_eq!(one(Op::StridedSlice, t8(5)), 4);
        assert_eq!(one(Op::StridedSlice, t16(5)), 4);
        // SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND: any rank but 4 is 3 (int16 4 first).
        for op in [Op::SpaceToBatchNd, Op::BatchToSpaceNd] {
            assert_eq!(one(op, f(3)), 3);
            assert_eq!(one(op, t8(3)), 3);
            assert_eq!(one(op, t16(3)), 4);
        }
        // SELECT: some input of rank 5: 3.
        let sel = |t: S| {
            ver(
                Op::Select,
                &[plain(T::Bool, &r(5)), t.clone(), t.clone()],
                &[t],
                None,
            )
        };
        assert_eq!(sel(t8(5)), 3);
        assert_eq!(sel(f(5)), 3);
    }

    #[test]
    fn option_dependent() {
        let ss = |f: fn(&mut fb::StridedSliceOptions), t: S| {
            let mut o = fb::StridedSliceOptions::default();
            f(&mut o);
            let p = plain(T::Int32, &[4]);
            ver(
                Op::StridedSlice,
                &[t.clone(), p.clone(), p.clone(), p],
                &[t],
                Some(O::StridedSliceOptions(Box::new(o))),
            )
        };
        let s = &[1, 4, 4, 3][..];
        assert_eq!(ss(|_| (), q(T::Int8, s)), 2);
        assert_eq!(ss(|o| o.ellipsis_mask = 1, q(T::Int8, s)), 6);
        assert_eq!(ss(|o| o.new_axis_mask = 2, f32_(s)), 6);
        assert_eq!(ss(|o| o.offset = true, q(T::Int16, s)), 8);

        let rb = |align, half, t: S| {
            let o = fb::ResizeBilinearOptions {
                align_corners: align,
                half_pixel_centers: half,
            };
            ver(
                Op::ResizeBilinear,
                &[t.clone(), plain(T::Int32, &[2])],
                &[t],
                Some(O::ResizeBilinearOptions(Box::new(o))),
            )
        };
        assert_eq!(rb(true, false, f32_(s)), 1);
        assert_eq!(rb(false, true, f32_(s)), 3);
        assert_eq!(rb(false, true, q(T::Int8, s)), 3);
        assert_eq!(rb(true, false, q(T::Int8, s)), 2);
        assert_eq!(rb(false, true, q(T::Int16, s)), 4);
        let rn = |align, half, t: S| {
            let o = fb::ResizeNearestNeighborOptions {
                align_corners: align,
                half_pixel_centers: half,
            };
            ver(
                Op::ResizeNearestNeighbor,
                &[t.clone(), plain(T::Int32, &[2])],
                &[t],
                Some(O::ResizeNearestNeighborOptions(Box::new(o))),
            )
        };
        assert_eq!(rn(true, false, f32_(s)), 3);
        assert_eq!(rn(true, false, q(T::Int8, s)), 3);
        assert_eq!(rn(false, false, q(T::Int8, s)), 2);
        assert_eq!(rn(false, true, q(T::Int16, s)), 4);

        let gather = |batch_dims, t: S, idx: S| {
            let o = fb::GatherOptions {
                axis: 0,
                batch_dims,
            };
            ver(
                Op::Gather,
                &[t.clone(), idx],
                &[t],
                Some(O::GatherOptions(Box::new(o))),
            )
        };
        let idx = plain(T::Int32, &[2]);
        assert_eq!(gather(0, q(T::Int8, s), idx.clone()), 2);
        assert_eq!(gather(1, q(T::Int8, s), idx.clone()), 5);
        assert_eq!(gather(0, q(T::Int16, s), idx), 4);
        assert_eq!(gather(0, q(T::Int8, s), plain(T::Int16, &[2])), 6);
        assert_eq!(gather(0, q(T::Int4, s), plain(T::Int32, &[2])), 7);
        let gnd = |t: S, idx: S| ver(Op::GatherNd, &[t.clone(), idx], &[t], None);
        assert_eq!(gnd(q(T::Int8, s), plain(T::Int16, &[2, 1])), 4);
    }

    #[test]
    fn split_fill_where_dynamic_update_slice() {
        let s = &[1, 4, 4, 4][..];
        let axis = plain(T::Int32, &[]);
        let split = |t: S| ver(Op::Split, &[axis.clone(), t.clone()], &[t.clone(), t], None);
        assert_eq!(split(f32_(s)), 1);
        assert_eq!(split(q(T::Int8, s)), 2);
        assert_eq!(split(q(T::Int16, s)), 4);
        assert_eq!(split(plain(T::Int32, s)), 3);

        let dims = plain(T::Int32, &[4]);
        let fill = |v: S, y: S| ver(Op::Fill, &[dims.clone(), v], &[y], None);
        assert_eq!(fill(f32_(&[]), f32_(s)), 1);
        assert_eq!(fill(q(T::Int8, &[]), q(T::Int8, s)), 3);
        assert_eq!(fill(q(T::Int16, &[]), q(T::Int16, s)), 3);
        assert_eq!(fill(plain(T::Bool, &[]), plain(T::Bool, s)), 2);

        let wh = |c: S| ver(Op::Where, &[c], &[plain(T::Int64, &[3, 4])], None);
        assert_eq!(wh(plain(T::Bool, s)), 1);
        assert_eq!(wh(q(T::Int8, s)), 2);
        assert_eq!(wh(f32_(s)), 2);

        let dus = |t: S, idx: S| {
            ver(
                Op::DynamicUpdateSlice,
                &[t.clone(), t.clone(), idx],
                &[t],
                None,
            )
        };
        assert_eq!(dus(f32_(s), plain(T::Int32, &[4])), 1);
        assert_eq!(dus(f32_(s), plain(T::Int64, &[4])), 2);
        assert_eq!(dus(q(T::Int8, s), plain(T::Int32, &[4])), 1);
        assert_eq!(dus(q(T::Int16, s), plain(T::Int64, &[4])), 4);
    }

    #[test]
    fn quantize_and_dequantize() {
        let s = &[4, 3][..];
        let quantize = |x: S, y: S| ver(Op::Quantize, &[x], &[y], None);
        assert_eq!(quantize(f32_(s), q(T::Int8, s)), 1);
        assert_eq!(quantize(f32_(s), q(T::Uint8, s)), 1);
        assert_eq!(quantize(f32_(s), q(T::Int16, s)), 2);
        // Requantization uint8 <-> int8 and int8 -> int8: 1; int16 -> int16: 2.
        assert_eq!(quantize(q(T::Uint8, s), q(T::Int8, s)), 1);
        assert_eq!(quantize(q(T::Int8, s), q(T::Uint8, s)), 1);
        assert_eq!(quantize(q(T::Int8, s), q(T::Int8, s)), 1);
        assert_eq!(quantize(q(T::Int16, s), q(T::Int16, s)), 2);
        assert_eq!(quantize(q(T::Int16, s), q(T::Int8, s)), 1);
        // Per-channel output: 3, int8 or int16.
        assert_eq!(quantize(f32_(s), pc(T::Int8, s, 0)), 3);
        assert_eq!(quantize(f32_(s), pc(T::Int16, s, 1)), 3);
        assert_eq!(quantize(f32_(s), pc(T::Int4, s, 0)), 4);

        let deq = |x: S| ver(Op::Dequantize, &[x], &[f32_(s)], None);
        assert_eq!(deq(q(T::Uint8, s)), 1);
        assert_eq!(deq(q(T::Int8, s)), 2);
        assert_eq!(deq(pc(T::Int8, s, 0)), 5);
        assert_eq!(deq(pc(T::Int8, s, 1)), 5);
        assert_eq!(deq(q(T::Int16, s)), 3);
        assert_eq!(deq(plain(T::Float16, s)), 3);
        assert_eq!(deq(pc(T::Int4, s, 0)), 6);
        // Scales that do not match the quantized dimension are not per-channel.
        let mismatched = pc(T::Int8, s, 0).map(|mut t| {
            t.quant.as_mut().unwrap().quantized_dimension = 1;
            t
        });
        assert_eq!(deq(mismatched), 2);
        let out_of_range = pc(T::Int8, s, 0).map(|mut t| {
            t.quant.as_mut().unwrap().quantized_dimension = 5;
            t
        });
        assert_eq!(deq(out_of_range), 2);
    }

    #[test]
    fn embedding_lookup() {
        let ids = plain(T::Int32, &[3]);
        let el = |table: S| {
            ver(
                Op::EmbeddingLookup,
                &[ids.clone(), table],
                &[f32_(&[3, 8])],
                None,
            )
        };
        assert_eq!(el(f32_(&[10, 8])), 1);
        assert_eq!(el(q(T::Int8, &[10, 8])), 1);
        assert_eq!(el(q(T::Uint8, &[10, 8])), 1);
        assert_eq!(el(pc(T::Int8, &[10, 8], 0)), 4);
        assert_eq!(el(q(T::Int4, &[10, 8])), 4);
        assert_eq!(el(q(T::Int2, &[10, 8])), 5);
    }

    /// LSTM inputs: 0 activation, 1-8 weights, 9-11 peepholes (omitted), 12-15 biases,
    /// 16-17 projection (omitted), 18-19 state.
    fn lstm_inputs(act: T, weight: T, bias: T) -> Vec<S> {
        let mut v = vec![q(act, &[1, 2, 4])];
        v.extend((0..8).map(|_| q(weight, &[3, 4])));
        v.extend((0..3).map(|_| None));
        v.extend((0..4).map(|_| q(bias, &[3])));
        v.extend([None, None, q(act, &[1, 3]), q(T::Int16, &[1, 3])]);
        v
    }

    #[test]
    fn recurrent() {
        let ul = |act: T, w: T, bias: T, asym: bool, diagonal: bool| {
            let o = fb::UnidirectionalSequenceLstmOptions {
                asymmetric_quantize_inputs: asym,
                diagonal_recurrent_tensors: diagonal,
                ..Default::default()
            };
            let ins = lstm_inputs(act, w, bias);
            let out = q(act, &[1, 2, 3]);
            ver(
                Op::UnidirectionalSequenceLstm,
                &ins,
                &[out],
                Some(O::UnidirectionalSequenceLstmOptions(Box::new(o))),
            )
        };
        assert_eq!(ul(T::Float32, T::Float32, T::Float32, false, false), 1);
        assert_eq!(ul(T::Float32, T::Float32, T::Float32, false, true), 4);
        assert_eq!(ul(T::Float32, T::Int8, T::Float32, false, false), 2);
        assert_eq!(ul(T::Float32, T::Int8, T::Float32, true, false), 3);
        assert_eq!(ul(T::Int8, T::Int8, T::Int32, false, false), 1);
        assert_eq!(ul(T::Int16, T::Int8, T::Int64, false, false), 5);

        let lstm = |act: T, w: T, bias: T, asym: bool, kernel| {
            let o = fb::LstmOptions {
                asymmetric_quantize_inputs: asym,
                kernel_type: kernel,
                ..Default::default()
            };
            let ins = lstm_inputs(act, w, bias);
            let out = q(act, &[1, 3]);
            ver(Op::Lstm, &ins, &[out], Some(O::LstmOptions(Box::new(o))))
        };
        let full = fb::LstmKernelType::Full;
        assert_eq!(lstm(T::Float32, T::Float32, T::Float32, false, full), 1);
        let basic = fb::LstmKernelType::Basic;
        assert_eq!(lstm(T::Float32, T::Float32, T::Float32, false, basic), 2);
        assert_eq!(lstm(T::Float32, T::Int8, T::Float32, false, full), 3);
        assert_eq!(lstm(T::Float32, T::Int8, T::Float32, true, full), 4);
        assert_eq!(lstm(T::Int8, T::Int8, T::Int32, false, full), 1);
        assert_eq!(lstm(T::Int16, T::Int8, T::Int64, false, full), 5);

        let svdf = |act: T, w: T, asym: bool| {
            let o = fb::SvdfOptions {
                rank: 1,
                asymmetric_quantize_inputs: asym,
                ..Default::default()
            };
            let ins = [
                q(act, &[1, 4]),
                q(w, &[3, 4]),
                q(w, &[3, 2]),
                q(T::Int32, &[3]),
                q(T::Int16, &[1, 6]),
            ];
            ver(
                Op::Svdf,
                &ins,
                &[q(act, &[1, 3])],
                Some(O::SvdfOptions(Box::new(o))),
            )
        };
        assert_eq!(svdf(T::Float32, T::Float32, false), 1);
        assert_eq!(svdf(T::Float32, T::Int8, false), 2);
        assert_eq!(svdf(T::Float32, T::Int8, true), 4);
        assert_eq!(svdf(T::Int8, T::Int8, false), 3);
    }

    /// Degenerate signatures of every builtin (no tensors, omitted tensors, scalars of
    /// every dtype with per-axis parameters on a dimension they do not have, options of
    /// another operator): a version in the known range, never a panic.
    #[test]
    fn any_signature_is_safe() {
        let ops: Vec<Op> = (0..=400).filter_map(|i| Op::try_from(i).ok()).collect();
        let dtypes: Vec<T> = (0..=40).filter_map(|i| T::try_from(i).ok()).collect();
        assert!(ops.len() > 200 && dtypes.len() > 20);
        let mut odd = Vec::new();
        for dt in &dtypes {
            let mut t = Tensor::new("t", *dt, vec![]);
            t.quant = Some(QuantParams::per_axis(vec![0.5; 3], vec![0; 3], 7));
            odd.push(Some(t.clone()));
            t.quant.as_mut().unwrap().quantized_dimension = -1;
            t.shape = vec![3];
            odd.push(Some(t));
        }
        let add_opts = Some(O::AddOptions(Box::default()));
        for &op in &ops {
            let mut cases: Vec<(Vec<S>, Vec<S>, Option<O>)> = vec![
                (vec![], vec![], None),
                (vec![None; 5], vec![None], None),
                (vec![None; 24], vec![], add_opts.clone()),
            ];
            for t in &odd {
                cases.push((vec![t.clone()], vec![t.clone()], add_opts.clone()));
                cases.push((
                    vec![None, t.clone(), None, t.clone()],
                    vec![t.clone()],
                    None,
                ));
                cases.push((vec![t.clone(); 4], vec![t.clone(); 2], None));
            }
            for (ins, outs, opts) in cases {
                let v = ver(op, &ins, &outs, opts);
                assert!((1..=14).contains(&v), "{op:?}: {v}");
            }
        }
    }

    /// RNN-family hybrids: version 2 with int8 weights and a float output, 3 when the
    /// operator's own options ask for asymmetric input quantization (each operator reads
    /// its own options table).
    #[test]
    fn rnn_family_hybrid_versions() {
        let opts = |op: Op, asym: bool| -> Option<O> {
            Some(match op {
                Op::Rnn => O::RnnOptions(Box::new(fb::RnnOptions {
                    asymmetric_quantize_inputs: asym,
                    ..Default::default()
                })),
                Op::UnidirectionalSequenceRnn => {
                    O::SequenceRnnOptions(Box::new(fb::SequenceRnnOptions {
                        asymmetric_quantize_inputs: asym,
                        ..Default::default()
                    }))
                }
                Op::BidirectionalSequenceRnn => O::BidirectionalSequenceRnnOptions(Box::new(
                    fb::BidirectionalSequenceRnnOptions {
                        asymmetric_quantize_inputs: asym,
                        ..Default::default()
                    },
                )),
                _ => O::BidirectionalSequenceLstmOptions(Box::new(
                    fb::BidirectionalSequenceLstmOptions {
                        asymmetric_quantize_inputs: asym,
                        ..Default::default()
                    },
                )),
            })
        };
        for op in [
            Op::Rnn,
            Op::UnidirectionalSequenceRnn,
            Op::BidirectionalSequenceRnn,
            Op::BidirectionalSequenceLstm,
        ] {
            let v = |w: T, asym: bool| {
                ver(
                    op,
                    &[f32_(&[1, 4]), q(w, &[3, 4])],
                    &[f32_(&[1, 3])],
                    opts(op, asym),
                )
            };
            assert_eq!(v(T::Float32, false), 1, "{op:?} float");
            assert_eq!(v(T::Int8, false), 2, "{op:?} hybrid");
            assert_eq!(v(T::Int8, true), 3, "{op:?} hybrid, asymmetric inputs");
        }
    }
}
