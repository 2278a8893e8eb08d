//! The kernel table: one [`KernelDecl`] per op the interpreter runs, from which
//! everything else about coverage is derived — whether an op is supported
//! ([`lookup`], [`missing`]), which of its options no kernel implements (the
//! declaration's `unsupported_options`, checked by [`Interpreter::new`] so that its
//! up-front error names them), how it runs (a kernel function, or the interpreter's own
//! control flow / resource variable handling) and whether it reads and writes stored
//! integers instead of reals.
//!
//! To add a kernel: write it in the family's file with the usual signature
//! (`fn(…) -> KResult<Value | Vec<Value> | Outs>`) and add one row to [`KERNELS`]; an
//! option the kernel refuses goes in that row's `unsupported_options`, so the up-front
//! check and the kernel cannot drift. A duplicate row fails to compile.
//!
//! [`Interpreter::new`]: crate::interp::Interpreter::new

use super::{
    Ctx, Ins, KResult, Outs, act_bounds, activation, conv, custom, elementwise as ew, gemm, lstm,
    lstm_hybrid, lstm_int, misc, reduce, resize, rnn, shape, unsupported,
};
use crate::fb::{self, ActivationFunctionType, BuiltinOperator as B, BuiltinOptions as O};
use crate::ir::Operator;

/// A kernel: the op (for kernels shared by a family), its context and its inputs.
pub(crate) type KernelFn = fn(B, &Ctx, &Ins) -> KResult<Outs>;

/// A check of an operator's options (and custom code, for CUSTOM) before running.
pub(crate) type OptionsCheck = fn(&Operator, Option<&str>) -> Option<Missing>;

/// How the interpreter runs an op.
#[derive(Clone, Copy)]
pub(crate) enum Run {
    /// A kernel function computing the outputs from the inputs.
    Kernel(KernelFn),
    /// WHILE, IF, CALL_ONCE, STABLEHLO_COMPOSITE: the interpreter runs other subgraphs.
    ControlFlow,
    /// VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE: the interpreter's resource variables.
    Resource,
}

/// Why the interpreter cannot run an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Missing {
    /// No kernel for the op (or custom code).
    Kernel,
    /// A kernel, but not for this feature of the op's options (e.g. a fused TANH).
    Options(String),
}

/// Everything the interpreter knows about one op.
#[derive(Clone, Copy)]
pub(crate) struct KernelDecl {
    pub op: B,
    pub run: Run,
    /// Features of the operator's options the kernel does not implement.
    pub unsupported_options: OptionsCheck,
    /// Reads quantized inputs as the stored integers (QUANTIZE, DEQUANTIZE; control flow
    /// and resource ops move stored values as they are, as LiteRT copies bytes). Every
    /// other op reads reals (dequantized inputs).
    pub raw_inputs: bool,
    /// Writes its quantized outputs as stored integers itself (QUANTIZE); every other op
    /// computes reals, which the interpreter requantizes.
    pub raw_outputs: bool,
}

impl KernelDecl {
    const fn kernel(op: B, run: KernelFn) -> Self {
        KernelDecl {
            op,
            run: Run::Kernel(run),
            unsupported_options: no_options,
            raw_inputs: false,
            raw_outputs: false,
        }
    }
    const fn interpreter(op: B, run: Run) -> Self {
        KernelDecl {
            op,
            run,
            unsupported_options: no_options,
            raw_inputs: true,
            raw_outputs: false,
        }
    }
    const fn options(mut self, check: OptionsCheck) -> Self {
        self.unsupported_options = check;
        self
    }
    const fn raw_inputs(mut self) -> Self {
        self.raw_inputs = true;
        self
    }
    const fn raw_outputs(mut self) -> Self {
        self.raw_outputs = true;
        self
    }
}

/// A kernel result of any shape as [`Outs`].
fn outs<T: Into<Outs>>(r: KResult<T>) -> KResult<Outs> {
    r.map(Into::into)
}

use KernelDecl as K;

/// One row per op, grouped by kernel family.
#[rustfmt::skip]
const KERNELS: &[KernelDecl] = &[
    // elementwise.rs: binary arithmetic (Add/Sub/Mul/Div options carry a fused
    // activation), comparisons, logical ops, unary maths, SELECT.
    K::kernel(B::Add, binary).options(arith_options),
    K::kernel(B::Sub, binary).options(arith_options),
    K::kernel(B::Mul, binary).options(arith_options),
    K::kernel(B::Div, binary).options(arith_options),
    K::kernel(B::FloorDiv, binary).options(arith_options),
    K::kernel(B::FloorMod, binary).options(arith_options),
    K::kernel(B::Pow, binary).options(arith_options),
    K::kernel(B::SquaredDifference, binary).options(arith_options),
    K::kernel(B::Maximum, binary).options(arith_options),
    K::kernel(B::Minimum, binary).options(arith_options),
    K::kernel(B::Equal, binary).options(arith_options),
    K::kernel(B::NotEqual, binary).options(arith_options),
    K::kernel(B::Less, binary).options(arith_options),
    K::kernel(B::LessEqual, binary).options(arith_options),
    K::kernel(B::Greater, binary).options(arith_options),
    K::kernel(B::GreaterEqual, binary).options(arith_options),
    K::kernel(B::LogicalAnd, binary).options(arith_options),
    K::kernel(B::LogicalOr, binary).options(arith_options),
    K::kernel(B::Exp, unary),
    K::kernel(B::Log, unary),
    K::kernel(B::Sqrt, unary),
    K::kernel(B::Rsqrt, unary),
    K::kernel(B::Square, unary),
    K::kernel(B::Neg, unary),
    K::kernel(B::Abs, unary),
    K::kernel(B::Sin, unary),
    K::kernel(B::Cos, unary),
    K::kernel(B::Floor, unary),
    K::kernel(B::Ceil, unary),
    K::kernel(B::Round, unary),
    K::kernel(B::Sign, unary),
    K::kernel(B::LogicalNot, unary),
    K::kernel(B::Select, |b, _, i| outs(ew::select(b, i))),
    K::kernel(B::SelectV2, |b, _, i| outs(ew::select(b, i))),
    // activation.rs
    K::kernel(B::Logistic, pointwise),
    K::kernel(B::Tanh, pointwise),
    K::kernel(B::Relu, pointwise),
    K::kernel(B::Relu6, pointwise),
    K::kernel(B::ReluN1To1, pointwise),
    K::kernel(B::Relu0To1, pointwise),
    K::kernel(B::LeakyRelu, pointwise),
    K::kernel(B::Elu, pointwise),
    K::kernel(B::HardSwish, pointwise),
    K::kernel(B::Gelu, pointwise),
    K::kernel(B::Prelu, |_, _, i| outs(activation::prelu(i))),
    K::kernel(B::Softmax, |b, c, i| outs(activation::softmax(b, c, i))),
    K::kernel(B::LogSoftmax, |b, c, i| outs(activation::softmax(b, c, i))),
    K::kernel(B::L2Normalization, |_, c, i| outs(activation::l2_norm(c, i)))
        .options(l2_norm_options),
    // conv.rs
    K::kernel(B::Conv2d, |_, c, i| outs(conv::conv2d(c, i))).options(conv_options),
    K::kernel(B::DepthwiseConv2d, |_, c, i| outs(conv::depthwise(c, i))).options(depthwise_options),
    K::kernel(B::TransposeConv, |_, c, i| outs(conv::transpose_conv(c, i)))
        .options(transpose_conv_options),
    K::kernel(B::AveragePool2d, pool).options(pool_options),
    K::kernel(B::MaxPool2d, pool).options(pool_options),
    K::kernel(B::L2Pool2d, pool).options(pool_options),
    // gemm.rs
    K::kernel(B::FullyConnected, |_, c, i| outs(gemm::fully_connected(c, i)))
        .options(fully_connected_options),
    K::kernel(B::BatchMatmul, |_, c, i| outs(gemm::batch_matmul(c, i))),
    // reduce.rs
    K::kernel(B::Mean, reduction),
    K::kernel(B::Sum, reduction),
    K::kernel(B::ReduceMax, reduction),
    K::kernel(B::ReduceMin, reduction),
    K::kernel(B::ReduceProd, reduction),
    K::kernel(B::ReduceAny, reduction),
    K::kernel(B::ReduceAll, reduction),
    K::kernel(B::ArgMax, |b, c, i| outs(reduce::arg_min_max(b, c, i))),
    K::kernel(B::ArgMin, |b, c, i| outs(reduce::arg_min_max(b, c, i))),
    K::kernel(B::Cumsum, |_, c, i| outs(reduce::cumsum(c, i))),
    // shape.rs
    K::kernel(B::Reshape, |_, c, i| outs(shape::reshape(c, i))),
    K::kernel(B::Squeeze, |_, c, i| outs(shape::squeeze(c, i))),
    K::kernel(B::ExpandDims, |_, _, i| outs(shape::expand_dims(i))),
    K::kernel(B::Transpose, |_, _, i| outs(shape::transpose(i))),
    K::kernel(B::Concatenation, |_, c, i| outs(shape::concat(c, i))).options(concat_options),
    K::kernel(B::Split, |b, c, i| outs(shape::split(b, c, i))),
    K::kernel(B::SplitV, |b, c, i| outs(shape::split(b, c, i))),
    K::kernel(B::Slice, |_, _, i| outs(shape::slice(i))),
    K::kernel(B::StridedSlice, |_, c, i| outs(shape::strided_slice(c, i))),
    K::kernel(B::Pad, |_, _, i| outs(shape::pad(i))),
    K::kernel(B::Padv2, |_, _, i| outs(shape::pad(i))),
    K::kernel(B::MirrorPad, |_, c, i| outs(shape::mirror_pad(c, i))),
    K::kernel(B::Gather, |_, c, i| outs(shape::gather(c, i))),
    K::kernel(B::GatherNd, |_, _, i| outs(shape::gather_nd(i))),
    K::kernel(B::Pack, |_, c, i| outs(shape::pack(c, i))),
    K::kernel(B::Unpack, |_, c, i| outs(shape::unpack(c, i))),
    K::kernel(B::Tile, |_, _, i| outs(shape::tile(i))),
    K::kernel(B::BroadcastTo, |_, _, i| outs(shape::broadcast_to(i))),
    K::kernel(B::ReverseV2, |_, _, i| outs(shape::reverse(i))),
    K::kernel(B::EmbeddingLookup, |_, _, i| outs(shape::embedding_lookup(i))),
    // resize.rs
    K::kernel(B::ResizeBilinear, |b, c, i| outs(resize::resize(b, c, i))),
    K::kernel(B::ResizeNearestNeighbor, |b, c, i| outs(resize::resize(b, c, i))),
    K::kernel(B::DepthToSpace, |b, c, i| outs(resize::depth_space(b, c, i))),
    K::kernel(B::SpaceToDepth, |b, c, i| outs(resize::depth_space(b, c, i))),
    K::kernel(B::BatchToSpaceNd, |b, _, i| outs(resize::batch_space(b, i))),
    K::kernel(B::SpaceToBatchNd, |b, _, i| outs(resize::batch_space(b, i))),
    // misc.rs
    K::kernel(B::Cast, |_, c, i| outs(misc::cast(c, i))),
    K::kernel(B::Shape, |_, c, i| outs(misc::shape_of(c, i))),
    K::kernel(B::Range, |_, _, i| outs(misc::range(i))),
    K::kernel(B::Fill, |_, _, i| outs(misc::fill(i))),
    K::kernel(B::ZerosLike, |_, _, i| outs(misc::zeros_like(i))),
    K::kernel(B::Dequantize, |_, c, i| outs(misc::dequantize(c, i))).raw_inputs(),
    K::kernel(B::Quantize, |_, c, i| outs(misc::quantize(c, i))).raw_inputs().raw_outputs(),
    // The tensor was densified when constants were decoded.
    K::kernel(B::Densify, |_, _, i| outs(Ok(i.get(0)?.clone()))),
    K::kernel(B::FakeQuant, |_, c, i| outs(misc::fake_quant(c, i))),
    // lstm.rs
    // An int8 input means LiteRT's integer kernel, int8 weights with a float input its
    // hybrid kernel (for these the interpreter passes raw values).
    K::kernel(B::UnidirectionalSequenceLstm, |_, c, i| {
        if i.opt(0).is_some_and(|v| v.dtype() == fb::TensorType::Int8) {
            lstm_int::unidirectional_sequence_lstm_int8(c, i)
        } else if i.opt(2).is_some_and(|v| v.dtype() == fb::TensorType::Int8) {
            lstm_hybrid::unidirectional_sequence_lstm_hybrid(c, i)
        } else {
            lstm::unidirectional_sequence_lstm(c, i)
        }
    })
        .options(lstm_options),
    K::kernel(B::BidirectionalSequenceLstm, |_, c, i| lstm::bidirectional_sequence_lstm(c, i))
        .options(aux_input_options),
    // rnn.rs: an int8 input means LiteRT's integer SVDF (the interpreter passes raw values).
    K::kernel(B::Svdf, |_, c, i| {
        if i.opt(0).is_some_and(|v| v.dtype() == fb::TensorType::Int8) {
            rnn::svdf_int8(c, i)
        } else {
            rnn::svdf(c, i)
        }
    }),
    K::kernel(B::Rnn, |_, c, i| rnn::rnn(c, i)),
    K::kernel(B::UnidirectionalSequenceRnn, |_, c, i| rnn::sequence_rnn(c, i)),
    K::kernel(B::BidirectionalSequenceRnn, |_, c, i| rnn::bidirectional_sequence_rnn(c, i))
        .options(aux_input_options),
    // custom.rs: the custom codes LiteRT's XNNPACK delegate runs.
    K::kernel(B::Custom, |_, c, i| custom::eval(c.custom_code.unwrap_or_default(), c, i))
        .options(custom_options),
    // The interpreter itself (`super::super`).
    K::interpreter(B::While, Run::ControlFlow),
    K::interpreter(B::If, Run::ControlFlow),
    K::interpreter(B::CallOnce, Run::ControlFlow),
    K::interpreter(B::StablehloComposite, Run::ControlFlow),
    K::interpreter(B::VarHandle, Run::Resource),
    K::interpreter(B::ReadVariable, Run::Resource),
    K::interpreter(B::AssignVariable, Run::Resource),
];

// ---- kernels shared by a family -------------------------------------------------

fn binary(b: B, c: &Ctx, i: &Ins) -> KResult<Outs> {
    outs(ew::binary(b, c, i))
}
fn unary(b: B, _: &Ctx, i: &Ins) -> KResult<Outs> {
    outs(ew::unary(b, i))
}
fn pointwise(b: B, c: &Ctx, i: &Ins) -> KResult<Outs> {
    outs(activation::pointwise(b, c, i))
}
fn pool(b: B, c: &Ctx, i: &Ins) -> KResult<Outs> {
    outs(conv::pool(b, c, i))
}
fn reduction(b: B, c: &Ctx, i: &Ins) -> KResult<Outs> {
    outs(reduce::reduce(b, c, i))
}

// ---- option checks ----------------------------------------------------------------

fn no_options(_: &Operator, _: Option<&str>) -> Option<Missing> {
    None
}

/// A fused activation no kernel implements (TANH, SIGN_BIT).
fn fused(act: ActivationFunctionType) -> Option<Missing> {
    act_bounds(act)
        .err()
        .map(|_| Missing::Options(format!("fused activation {act:?}")))
}

/// A check of the fused activation in the options table `$variant` (the one the kernel
/// reads).
macro_rules! fused_activation_in {
    ($name:ident, $($variant:ident)|+) => {
        fn $name(op: &Operator, _: Option<&str>) -> Option<Missing> {
            match op.builtin_options.as_ref()? {
                $(O::$variant(o) => fused(o.fused_activation_function),)+
                _ => None,
            }
        }
    };
}

// `elementwise::binary` applies the activation of any of the four arithmetic tables.
fused_activation_in!(
    arith_options,
    AddOptions | SubOptions | MulOptions | DivOptions
);
fused_activation_in!(conv_options, Conv2DOptions);
fused_activation_in!(depthwise_options, DepthwiseConv2DOptions);
fused_activation_in!(transpose_conv_options, TransposeConvOptions);
fused_activation_in!(pool_options, Pool2DOptions);
fused_activation_in!(concat_options, ConcatenationOptions);
fused_activation_in!(l2_norm_options, L2NormOptions);

fn fully_connected_options(op: &Operator, _: Option<&str>) -> Option<Missing> {
    match op.builtin_options.as_ref()? {
        O::FullyConnectedOptions(o) => {
            if o.weights_format != fb::FullyConnectedOptionsWeightsFormat::Default {
                return Some(Missing::Options(format!(
                    "weights format {:?}",
                    o.weights_format
                )));
            }
            fused(o.fused_activation_function)
        }
        _ => None,
    }
}

fn lstm_options(op: &Operator, _: Option<&str>) -> Option<Missing> {
    match op.builtin_options.as_ref()? {
        O::UnidirectionalSequenceLstmOptions(o) if o.diagonal_recurrent_tensors => {
            Some(Missing::Options("diagonal recurrent weights".into()))
        }
        _ => None,
    }
}

/// The auxiliary input of the bidirectional recurrent ops (BIDIRECTIONAL_SEQUENCE_LSTM
/// inputs 39-47, BIDIRECTIONAL_SEQUENCE_RNN inputs 9-11) has no kernel here.
fn aux_input_options(op: &Operator, _: Option<&str>) -> Option<Missing> {
    let first = match op.builtin_options.as_ref()? {
        O::BidirectionalSequenceLstmOptions(_) => 39,
        O::BidirectionalSequenceRnnOptions(_) => 9,
        _ => return None,
    };
    op.inputs
        .iter()
        .skip(first)
        .any(|&t| t >= 0)
        .then(|| Missing::Options("auxiliary input".into()))
}

/// An unknown custom code has no kernel; a known one may have options the runtime
/// refuses.
fn custom_options(op: &Operator, code: Option<&str>) -> Option<Missing> {
    custom::unsupported(code, op.custom_options.as_deref()).map(|why| {
        if why.is_empty() {
            Missing::Kernel
        } else {
            Missing::Options(why)
        }
    })
}

// ---- lookup -------------------------------------------------------------------------

/// Above every `BuiltinOperator` code (the schema's largest is 209).
const CODES: usize = 256;

/// `INDEX[op code]` = 1 + the op's row in [`KERNELS`], 0 for none; built at compile
/// time, which also refuses a duplicate row.
static INDEX: [u8; CODES] = {
    let mut index = [0u8; CODES];
    let mut row = 0;
    assert!(KERNELS.len() < u8::MAX as usize);
    while row < KERNELS.len() {
        let code = KERNELS[row].op as i32 as usize;
        assert!(code < CODES, "op code above CODES");
        assert!(index[code] == 0, "two rows for one op in KERNELS");
        index[code] = row as u8 + 1;
        row += 1;
    }
    index
};

/// The declaration of `op`, if the interpreter runs it.
pub(crate) fn lookup(op: B) -> Option<&'static KernelDecl> {
    let row = *INDEX.get(op as i32 as usize)?;
    KERNELS.get(usize::from(row).checked_sub(1)?)
}

/// Why the interpreter cannot run `operator` (builtin `op`, custom code `custom_code`),
/// or `None` when it can.
pub(crate) fn missing(op: B, custom_code: Option<&str>, operator: &Operator) -> Option<Missing> {
    match lookup(op) {
        Some(decl) => (decl.unsupported_options)(operator, custom_code),
        None => Some(Missing::Kernel),
    }
}

/// Whether `op` keeps the packing of a constant weight (input 1) between runs when
/// given a [`gemm::PackCell`] ([`eval_packed`]).
pub(crate) fn packs_weights(op: B) -> bool {
    matches!(op, B::Conv2d | B::FullyConnected)
}

/// [`eval`] for an op whose weight input is a constant: CONV_2D and FULLY_CONNECTED keep
/// its packing for the GEMM in `cell` (the first run fills it, later runs reuse it;
/// the results are the same as [`eval`]'s).
pub(crate) fn eval_packed(op: B, ctx: &Ctx, ins: &Ins, cell: &gemm::PackCell) -> KResult<Outs> {
    match op {
        B::Conv2d => outs(conv::conv2d_with(ctx, ins, Some(cell))),
        B::FullyConnected => outs(gemm::fully_connected_with(ctx, ins, Some(cell))),
        _ => eval(op, ctx, ins),
    }
}

/// Runs one op that has a kernel function (not control flow or resource ops).
pub(crate) fn eval(op: B, ctx: &Ctx, ins: &Ins) -> KResult<Outs> {
    match lookup(op).map(|d| d.run) {
        Some(Run::Kernel(f)) => f(op, ctx, ins),
        _ => unsupported!("no kernel for {}", fb::op_name(op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_op_and_every_row_found() {
        let mut seen = std::collections::HashSet::new();
        for d in KERNELS {
            assert!(seen.insert(d.op), "two rows for {}", fb::op_name(d.op));
            let found = lookup(d.op).map(|f| f.op);
            assert_eq!(found, Some(d.op), "{}", fb::op_name(d.op));
        }
        let rows = B::ENUM_VALUES.iter().filter(|&&b| lookup(b).is_some());
        assert_eq!(rows.count(), KERNELS.len());
    }

    /// Ops the rule table gives a full-integer kernel but the interpreter cannot run:
    /// models with them are calibrated on LiteRT (`--calibration-runtime`).
    const CALIBRATED_ON_LITERT_ONLY: &[B] = &[B::DynamicUpdateSlice, B::ScatterNd];

    /// Full-integer modes calibrate the float model, by default on the interpreter: every
    /// op the rule table quantizes to int8 or int16 has a kernel, but the known gaps.
    #[test]
    fn every_op_the_rule_table_quantizes_has_a_kernel() {
        let missing: Vec<&str> = crate::rules::RULES
            .iter()
            .filter(|r| r.supports(8) || r.supports(16))
            .filter(|r| lookup(r.op).is_none() && !CALIBRATED_ON_LITERT_ONLY.contains(&r.op))
            .map(|r| fb::op_name(r.op))
            .collect();
        assert!(missing.is_empty(), "no kernel for {missing:?}");
        for &op in CALIBRATED_ON_LITERT_ONLY {
            assert!(
                lookup(op).is_none(),
                "{} has a kernel now: drop it from the list",
                fb::op_name(op)
            );
        }
    }

    #[test]
    fn raw_inputs_and_outputs_are_the_conversions_and_the_interpreters_own_ops() {
        let raw_in: Vec<B> = KERNELS
            .iter()
            .filter(|d| d.raw_inputs)
            .map(|d| d.op)
            .collect();
        assert_eq!(
            raw_in,
            [
                B::Dequantize,
                B::Quantize,
                B::While,
                B::If,
                B::CallOnce,
                B::StablehloComposite,
                B::VarHandle,
                B::ReadVariable,
                B::AssignVariable
            ]
        );
        let raw_out: Vec<B> = KERNELS
            .iter()
            .filter(|d| d.raw_outputs)
            .map(|d| d.op)
            .collect();
        assert_eq!(raw_out, [B::Quantize]);
    }
}
