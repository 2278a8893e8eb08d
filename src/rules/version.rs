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
//! float output (weight-only INT4, per channel or blockwise) needs at least 10, the
//! first version whose runtime reads INT4 filters; TF's table has no row for it.

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
