//! The op rule table: what quantization may do to each builtin operator.
//!
//! One entry per operator, as data:
//! - the role of each input: activation, weight (with its per-channel axis), bias (with
//!   the inputs whose scales it multiplies), or not real-valued (shapes, indices, axes);
//! - the output constraint: a free range from calibration, shared with the inputs (the
//!   kernel needs identical scale and zero point: pooling, reshapes, concatenation...), a
//!   fixed scale and zero point per bit width (LOGISTIC, SOFTMAX, TANH...), or not
//!   real-valued (ARG_MAX, comparisons);
//! - whether the runtime has an int8 kernel and an int16 (16x8) kernel, a dynamic-range
//!   (hybrid) kernel, an INT4-weight kernel;
//! - whether its activation inputs are tied to one parameter set although the output is
//!   not real-valued (comparisons, ARG_MAX), and its full-integer input roles where they
//!   differ from the weight modes' (BATCH_MATMUL);
//! - a one-line reason for anything unusual.
//!
//! Beside the table, as data: operands with a singularity at 0 ([`SINGULAR_OPERANDS`]),
//! the sentinel headroom an operator needs ([`sentinel_headroom`]), the builtin-option
//! facts of quantized kernels ([`options`]), and what custom operators allow
//! ([`is_custom`], [`reads_int4_behind_dequantize`]).
//!
//! Passes read these; they do not match on operator names themselves. Facts come
//! from TFLite's kernels and quantizers (`operator_property.cc`, the MLIR converter's
//! dynamic-range interfaces) and ai-edge-quantizer's policy; `../../shared`'s
//! QUANT_SPEC.md lists them. Operators not listed stay float.

pub mod options;
pub mod version;

use crate::fb::BuiltinOperator as Op;

/// What an input of an operator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A real-valued tensor computed at run time (or a constant used like one).
    Activation,
    /// A real-valued constant the kernel reads as weights; `axis` is its output-channel
    /// dimension: the per-channel axis of the int8 kernel (and of the hybrid kernel when
    /// [`Rule::hybrid`] is `PerChannel`), and the axis weight-only modes use behind a
    /// DEQUANTIZE, where the operator computes in float and any axis is allowed.
    Weight { axis: Option<i32> },
    /// A bias added to the product of input `input` and weight `weight`: quantized to
    /// int32 (int64 in 16x8) with scale `s_input × s_weight`, zero point 0.
    Bias { input: usize, weight: usize },
    /// Shapes, indices, axes, paddings, sizes, conditions: never quantized.
    NonReal,
    /// A real-valued coefficient the kernel reads as int8 at every activation width,
    /// with its own (asymmetric) parameters: PRELU's alpha. The 16x8 kernel cannot take
    /// it as an int16 activation, so in 16x8 it must be a constant.
    Coefficient,
}

/// What the outputs of an operator are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// Own range, from calibration.
    Free,
    /// Every activation input and every output share one scale and zero point (the
    /// kernel moves values without rescaling, or requires equal parameters).
    Shared,
    /// Fixed parameters: `(scale, zero_point)` for int8 and for int16.
    Fixed {
        int8: (f32, i64),
        int16: Option<(f32, i64)>,
    },
    /// Not real-valued (indices, booleans): never quantized.
    NonReal,
}

/// Which dynamic-range (float activations × int8 weights) kernel exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hybrid {
    /// No hybrid kernel: int8 weights would need a DEQUANTIZE in front.
    No,
    /// Int8 weights with one scale per tensor.
    PerTensor,
    /// Int8 weights with one scale per output channel (or per tensor).
    PerChannel,
}

/// The rule for one builtin operator.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub op: Op,
    /// Roles of the inputs by position.
    pub inputs: &'static [Role],
    /// Role of inputs beyond `inputs` (variadic ops such as CONCATENATION, PACK).
    pub rest: Role,
    pub output: Output,
    /// The runtime has a full-integer int8 kernel.
    pub int8: bool,
    /// The runtime has an int16-activation (16x8) kernel.
    pub int16: bool,
    pub hybrid: Hybrid,
    /// Hybrid kernel has the `asymmetric_quantize_inputs` option (TF sets it: inputs
    /// are quantized per row with a zero point, which is more accurate).
    pub asymmetric_inputs: bool,
    /// Weight-only int4 (packed INT4 weights read directly by the kernel).
    pub int4_weights: bool,
    /// The activation inputs share one set of parameters although the output is not
    /// real-valued (comparisons, ARG_MAX: the kernel compares raw integers).
    pub tied_inputs: bool,
    /// Input roles in the full-integer modes where they differ from [`Rule::inputs`]
    /// (BATCH_MATMUL: both operands are activations; its hybrid kernel reads a weight).
    pub integer_inputs: Option<&'static [Role]>,
    /// Full-integer modes: constant operands read like activations take symmetric
    /// parameters (zero point 0) from their own data (BATCH_MATMUL's kernel needs them).
    pub symmetric_constants: bool,
    /// The int8 kernel (int8 input) can also write its fixed output in int16, with
    /// these parameters (SOFTMAX: LiteRT's `SoftmaxQuantized<int8_t, int16_t>`, which
    /// takes any output scale; DEQUANTIZE needs zero point 0 for int16). Used where
    /// only float readers and float model outputs read that output
    /// (`quant::integer::widths`: the final rounding 128 times finer, no extra operator).
    pub int16_output: Option<(f32, i64)>,
    pub why: &'static str,
}

impl Rule {
    /// The role of input `pos` (weight modes; see [`Rule::integer_role`]).
    pub fn role(&self, pos: usize) -> Role {
        self.inputs.get(pos).copied().unwrap_or(self.rest)
    }

    /// The role of input `pos` in the full-integer modes.
    pub fn integer_role(&self, pos: usize) -> Role {
        match self.integer_inputs {
            Some(roles) => roles.get(pos).copied().unwrap_or(self.rest),
            None => self.role(pos),
        }
    }

    /// Whether the runtime has a kernel for this operator at the given activation width.
    pub fn supports(&self, bits: u32) -> bool {
        match bits {
            8 => self.int8,
            16 => self.int16,
            _ => false,
        }
    }
}

use Role::{Activation as A, NonReal as N};

const fn w(axis: i32) -> Role {
    Role::Weight { axis: Some(axis) }
}
const W_TENSOR: Role = Role::Weight { axis: None };
const fn bias(input: usize, weight: usize) -> Role {
    Role::Bias { input, weight }
}

/// A rule with int8 and int16 kernels and a free output.
const fn rule(op: Op, inputs: &'static [Role], rest: Role) -> Rule {
    Rule {
        op,
        inputs,
        rest,
        output: Output::Free,
        int8: true,
        int16: true,
        hybrid: Hybrid::No,
        asymmetric_inputs: false,
        int4_weights: false,
        tied_inputs: false,
        integer_inputs: None,
        symmetric_constants: false,
        int16_output: None,
        why: "",
    }
}

/// Output parameters shared with the activation inputs.
const fn shared(mut r: Rule) -> Rule {
    r.output = Output::Shared;
    r
}

const fn fixed(mut r: Rule, int8: (f32, i64), int16: Option<(f32, i64)>) -> Rule {
    r.output = Output::Fixed { int8, int16 };
    r
}

/// The int8 kernel can write its fixed output in int16 too ([`Rule::int16_output`]).
const fn int16_output(mut r: Rule, params: (f32, i64)) -> Rule {
    r.int16_output = Some(params);
    r
}

const fn nonreal_out(mut r: Rule) -> Rule {
    r.output = Output::NonReal;
    r
}

/// The activation inputs share one set of parameters (with a non-real output).
const fn tied(mut r: Rule) -> Rule {
    r.tied_inputs = true;
    r
}

/// Full-integer roles that differ from the weight modes', with symmetric constants.
const fn integer_roles(mut r: Rule, roles: &'static [Role]) -> Rule {
    r.integer_inputs = Some(roles);
    r.symmetric_constants = true;
    r
}

/// No int16 kernel in the runtime.
const fn no16(mut r: Rule) -> Rule {
    r.int16 = false;
    r
}

/// No full-integer kernel handled by tflquant (the op stays float in int8/int16x8).
const fn float_only(mut r: Rule) -> Rule {
    r.int8 = false;
    r.int16 = false;
    r
}

const fn hybrid(mut r: Rule, h: Hybrid, asymmetric: bool) -> Rule {
    r.hybrid = h;
    r.asymmetric_inputs = asymmetric;
    r
}

const fn int4(mut r: Rule) -> Rule {
    r.int4_weights = true;
    r
}

const fn why(mut r: Rule, text: &'static str) -> Rule {
    r.why = text;
    r
}

/// LOGISTIC and SOFTMAX outputs lie in [0, 1].
const UNIT: (f32, i64) = (1.0 / 256.0, -128);
const UNIT16: Option<(f32, i64)> = Some((1.0 / 32768.0, 0));
/// Probabilities in int16 written by an int8 kernel: [0, 1] with 1.0 on the grid (no
/// int16 kernel reads them, so the 16x8 convention 1/32768, whose largest value is
/// 32767/32768, does not bind).
const PROBABILITY16: (f32, i64) = (1.0 / 32767.0, 0);
/// TANH output lies in [-1, 1].
const SIGNED_UNIT: (f32, i64) = (1.0 / 128.0, 0);

/// LSTM inputs: 0 input; 1-4 input weights; 5-8 recurrent weights ([cells, input] and
/// [cells, output]: rows are the output channels); 9-11 peephole weights; 12-15 gate
/// biases; 16 projection weights; 17 projection bias; 18-19 variable state; 20-23
/// layer-norm coefficients. The hybrid kernel takes per-tensor weights only
/// (`Hybrid::PerTensor`); the axes serve weight-only DEQUANTIZE.
const LSTM: &[Role] = &[
    A,
    w(0),
    w(0),
    w(0),
    w(0),
    w(0),
    w(0),
    w(0),
    w(0),
    W_TENSOR,
    W_TENSOR,
    W_TENSOR,
    bias(0, 1),
    bias(0, 2),
    bias(0, 3),
    bias(0, 4),
    w(0),
    A,
    A,
    A,
    A,
    A,
    A,
    A,
];

/// The table. Operators not listed have no rule: passes leave them alone.
pub static RULES: &[Rule] = &[
    // --- weights × activations ---------------------------------------------------
    int4(hybrid(
        rule(Op::FullyConnected, &[A, w(0), bias(0, 1)], N),
        Hybrid::PerChannel,
        true,
    )),
    why(
        int4(hybrid(
            rule(Op::Conv2d, &[A, w(0), bias(0, 1)], N),
            Hybrid::PerChannel,
            false,
        )),
        "INT4 filter with float input: LiteRT 2.3's builtin kernel and XNNPACK both run it (hybrid)",
    ),
    why(
        hybrid(
            rule(Op::DepthwiseConv2d, &[A, w(3), bias(0, 1)], N),
            Hybrid::PerChannel,
            false,
        ),
        "filter is [1, H, W, C·M]: channels are the last dimension",
    ),
    why(
        rule(Op::TransposeConv, &[N, w(0), A, bias(2, 1)], N),
        "input 0 is the output shape; input 2 the activation",
    ),
    why(
        integer_roles(
            hybrid(
                rule(Op::BatchMatmul, &[A, W_TENSOR], N),
                Hybrid::PerTensor,
                true,
            ),
            &[A, A],
        ),
        "both operands are activations in full-integer mode; hybrid only with a constant right-hand side",
    ),
    why(
        float_only(int4(hybrid(
            rule(Op::EmbeddingLookup, &[N, w(0)], N),
            Hybrid::PerChannel,
            false,
        ))),
        "input 0 holds ids; the table's rows are the channels",
    ),
    why(
        float_only(hybrid(rule(Op::Lstm, LSTM, A), Hybrid::PerTensor, true)),
        "full-integer LSTM needs calibrated gate intermediates; stays float",
    ),
    // Integer in int8 (LiteRT's 8x8_16 kernel); `quant/integer/recurrent.rs` quantizes inputs
    // 1..24 and the intermediates and narrows the fate to the variants it writes.
    why(
        no16(hybrid(
            rule(Op::UnidirectionalSequenceLstm, LSTM, A),
            Hybrid::PerTensor,
            true,
        )),
        "tflquant writes the 8x8_16 integer LSTM (int8 activations, int16 cell state), no 16x8",
    ),
    why(
        float_only(rule(Op::BidirectionalSequenceLstm, &[A], A)),
        "48 inputs; not quantized by tflquant yet",
    ),
    // Integer in int8 (LiteRT's `EvalIntegerSVDF`); `quant/integer/svdf.rs` quantizes inputs
    // 1..4 (int16 time weights and state, int32 bias at s_state × s_time).
    why(
        no16(hybrid(
            rule(Op::Svdf, &[A, w(0), w(0), bias(0, 1), A], A),
            Hybrid::PerTensor,
            true,
        )),
        "int8 input, int16 time weights and state; no 16x8 kernel (svdf.cc takes float32 or int8 input)",
    ),
    float_only(hybrid(
        rule(Op::Rnn, &[A, w(0), w(0), bias(0, 1), A], A),
        Hybrid::PerTensor,
        true,
    )),
    float_only(hybrid(
        rule(
            Op::UnidirectionalSequenceRnn,
            &[A, w(0), w(0), bias(0, 1), A],
            A,
        ),
        Hybrid::PerTensor,
        true,
    )),
    // --- arithmetic with their own output range -------------------------------------
    rule(Op::Add, &[A, A], N),
    rule(Op::Sub, &[A, A], N),
    rule(Op::Mul, &[A, A], N),
    rule(Op::Div, &[A, A], N),
    no16(rule(Op::SquaredDifference, &[A, A], N)),
    why(rule(Op::Mean, &[A, N], N), "input 1 holds the axes"),
    why(rule(Op::Sum, &[A, N], N), "input 1 holds the axes"),
    why(
        no16(rule(Op::ReduceProd, &[A, N], N)),
        "input 1 holds the axes",
    ),
    rule(Op::Abs, &[A], N),
    rule(Op::Rsqrt, &[A], N),
    rule(Op::Sqrt, &[A], N),
    rule(Op::Gelu, &[A], N),
    no16(rule(Op::HardSwish, &[A], N)),
    rule(Op::LeakyRelu, &[A], N),
    why(
        rule(Op::Prelu, &[A, Role::Coefficient], N),
        "alpha (input 1) is int8 with its own parameters, also in 16x8",
    ),
    rule(Op::Relu, &[A], N),
    rule(Op::Relu6, &[A], N),
    no16(rule(Op::ReluN1To1, &[A], N)),
    no16(rule(Op::Elu, &[A], N)),
    // --- fixed output ranges --------------------------------------------------------
    fixed(rule(Op::Logistic, &[A], N), UNIT, UNIT16),
    why(
        int16_output(
            fixed(rule(Op::Softmax, &[A], N), UNIT, UNIT16),
            PROBABILITY16,
        ),
        "in int8, probabilities read only by float operators or float model outputs are \
         written in int16 (LiteRT's int8 kernel writes both)",
    ),
    fixed(rule(Op::Tanh, &[A], N), SIGNED_UNIT, UNIT16),
    no16(fixed(rule(Op::L2Normalization, &[A], N), SIGNED_UNIT, None)),
    no16(fixed(
        rule(Op::LogSoftmax, &[A], N),
        (16.0 / 256.0, 127),
        None,
    )),
    // --- data movement: output shares the input's parameters --------------------------
    shared(rule(Op::AveragePool2d, &[A], N)),
    shared(rule(Op::MaxPool2d, &[A], N)),
    why(
        shared(rule(Op::Concatenation, &[A], A)),
        "inputs take the output's parameters; an input that cannot is requantized",
    ),
    why(
        shared(rule(Op::Reshape, &[A, N], N)),
        "input 1 is the new shape",
    ),
    shared(rule(Op::Squeeze, &[A], N)),
    why(
        shared(rule(Op::ExpandDims, &[A, N], N)),
        "input 1 is the axis",
    ),
    why(
        shared(rule(Op::Transpose, &[A, N], N)),
        "input 1 is the permutation",
    ),
    why(
        shared(rule(Op::Slice, &[A, N, N], N)),
        "inputs 1-2 are begin and size",
    ),
    why(
        shared(rule(Op::StridedSlice, &[A, N, N, N], N)),
        "inputs 1-3 are begin, end, strides",
    ),
    why(shared(rule(Op::Split, &[N, A], N)), "input 0 is the axis"),
    why(
        shared(rule(Op::SplitV, &[A, N, N], N)),
        "inputs 1-2 are the sizes and the axis",
    ),
    why(
        shared(rule(Op::Pad, &[A, N], N)),
        "input 1 holds the paddings",
    ),
    why(
        shared(rule(Op::Padv2, &[A, N, A], N)),
        "input 1 holds the paddings; the pad value shares the parameters",
    ),
    why(
        shared(rule(Op::MirrorPad, &[A, N], N)),
        "input 1 holds the paddings",
    ),
    why(
        shared(rule(Op::Gather, &[A, N], N)),
        "input 1 holds indices",
    ),
    why(
        shared(rule(Op::GatherNd, &[A, N], N)),
        "input 1 holds indices",
    ),
    why(
        shared(rule(Op::BroadcastTo, &[A, N], N)),
        "input 1 is the shape",
    ),
    why(
        no16(shared(rule(Op::Tile, &[A, N], N))),
        "input 1 holds the multiples",
    ),
    why(
        shared(rule(Op::ReverseV2, &[A, N], N)),
        "input 1 holds the axes",
    ),
    why(
        shared(rule(Op::Select, &[N, A, A], N)),
        "input 0 is the boolean condition",
    ),
    why(
        shared(rule(Op::SelectV2, &[N, A, A], N)),
        "input 0 is the boolean condition",
    ),
    shared(rule(Op::Pack, &[A], A)),
    shared(rule(Op::Unpack, &[A], N)),
    shared(rule(Op::Maximum, &[A, A], N)),
    shared(rule(Op::Minimum, &[A, A], N)),
    why(
        shared(rule(Op::ReduceMax, &[A, N], N)),
        "input 1 holds the axes",
    ),
    why(
        shared(rule(Op::ReduceMin, &[A, N], N)),
        "input 1 holds the axes",
    ),
    why(
        shared(rule(Op::ResizeBilinear, &[A, N], N)),
        "input 1 is the output size",
    ),
    why(
        shared(rule(Op::ResizeNearestNeighbor, &[A, N], N)),
        "input 1 is the output size",
    ),
    why(
        no16(shared(rule(Op::BatchToSpaceNd, &[A, N, N], N))),
        "inputs 1-2 are block shape and crops",
    ),
    why(
        no16(shared(rule(Op::SpaceToBatchNd, &[A, N, N], N))),
        "inputs 1-2 are block shape and paddings",
    ),
    no16(shared(rule(Op::SpaceToDepth, &[A], N))),
    no16(shared(rule(Op::DepthToSpace, &[A], N))),
    why(
        shared(rule(Op::DynamicUpdateSlice, &[A, A, N], N)),
        "input 2 holds the start indices",
    ),
    why(
        no16(shared(rule(Op::ScatterNd, &[N, A, N], N))),
        "inputs 0 and 2 are indices and the shape",
    ),
    why(
        no16(shared(rule(Op::Fill, &[N, A], N))),
        "input 0 is the shape; the fill value shares the parameters",
    ),
    // --- outputs that are not real-valued ----------------------------------------------
    why(
        nonreal_out(tied(no16(rule(Op::ArgMax, &[A, N], N)))),
        "output holds indices",
    ),
    why(
        nonreal_out(tied(no16(rule(Op::ArgMin, &[A, N], N)))),
        "output holds indices",
    ),
    nonreal_out(tied(rule(Op::Equal, &[A, A], N))),
    nonreal_out(tied(rule(Op::NotEqual, &[A, A], N))),
    nonreal_out(tied(no16(rule(Op::Less, &[A, A], N)))),
    nonreal_out(tied(no16(rule(Op::LessEqual, &[A, A], N)))),
    nonreal_out(tied(no16(rule(Op::Greater, &[A, A], N)))),
    nonreal_out(tied(no16(rule(Op::GreaterEqual, &[A, A], N)))),
    // --- resource variables: the kernels copy bytes of any type ------------------
    why(
        nonreal_out(rule(Op::VarHandle, &[], N)),
        "outputs a resource handle",
    ),
    why(
        rule(Op::ReadVariable, &[N], N),
        "copies the stored bytes: one parameter set per variable (quant/variables.rs)",
    ),
    why(
        rule(Op::AssignVariable, &[N, A], N),
        "stores the value's bytes: one parameter set per variable (quant/variables.rs)",
    ),
];

/// The rule of an operator, if it has one.
pub fn rule_for(op: Op) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.op == op)
}

/// Operators with a singularity at 0 in one input (its position): LOG and RSQRT of 0,
/// division by 0. Where that operand's calibrated values reach the integer zero, the
/// full-integer engine keeps it float (an audio front end's LOG turned int8 zeros into
/// -inf). Listed apart from [`RULES`]: LOG has no integer rule at all, and still keeps
/// its operand's producers float.
pub const SINGULAR_OPERANDS: &[(Op, usize)] = &[(Op::Log, 0), (Op::Rsqrt, 0), (Op::Div, 1)];

/// The input of `op` with a singularity at 0, if any ([`SINGULAR_OPERANDS`]).
pub fn singular_operand(op: Op) -> Option<usize> {
    SINGULAR_OPERANDS
        .iter()
        .find(|(o, _)| *o == op)
        .map(|&(_, pos)| pos)
}

/// Same-scale operators that compute new values (a mean, an interpolation): every
/// other [`Output::Shared`] operator only moves, selects or repeats its input values
/// (or writes a constant pad value), so its int8 output is exactly its float output
/// rounded to the shared parameters.
pub const SHARED_BUT_COMPUTING: &[Op] = &[Op::AveragePool2d, Op::ResizeBilinear];

/// Does `op` only move values: a same-scale operator that is not in
/// [`SHARED_BUT_COMPUTING`] (RESHAPE, TRANSPOSE, SLICE, GATHER, PAD, MAX_POOL_2D,
/// REDUCE_MAX...)? Quantizing such an operator saves no arithmetic; where both its
/// neighbours are float it only adds rounding (`quant/integer/fates.rs`).
pub fn moves_values(op: Op) -> bool {
    rule_for(op).is_some_and(|r| r.output == Output::Shared) && !SHARED_BUT_COMPUTING.contains(&op)
}

/// Is `op` a custom operator (`CUSTOM`, identified by its custom code)? The table has
/// no row for it: its kernel's quantized behaviour is unknown, so it reads and writes
/// float in the full-integer modes.
pub fn is_custom(op: Op) -> bool {
    op == Op::Custom
}

/// Can LiteRT run `op` on INT4 weights behind a DEQUANTIZE? Not a custom operator:
/// LiteRT runs the custom operators it knows through XNNPACK, which folds int8 and
/// float16 weights behind a DEQUANTIZE but not INT4 ones (the op then falls back to a
/// kernel that is not registered).
pub fn reads_int4_behind_dequantize(op: Op) -> bool {
    !is_custom(op)
}

/// What saturated sentinels (±inf, ±FLT_MAX, far-out mask values) in an operator's
/// inputs need to keep their meaning. Order-only operators (max pool, MINIMUM/MAXIMUM,
/// SELECT) need nothing: the saturated value stays the range's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentinelHeadroom {
    /// Nothing beyond saturation.
    None,
    /// SOFTMAX: a `-inf`-class input must weigh less than half an output step, so its
    /// input range reaches `ln(2 / step) / beta` below the ordinary minimum.
    Softmax,
    /// ADD (`subtract` false) and SUB: an operand holding sentinels must carry the output
    /// past its range whatever the other operand is.
    Sum { subtract: bool },
}

/// The sentinel headroom `op` needs.
pub fn sentinel_headroom(op: Op) -> SentinelHeadroom {
    match op {
        Op::Softmax => SentinelHeadroom::Softmax,
        Op::Add => SentinelHeadroom::Sum { subtract: false },
        Op::Sub => SentinelHeadroom::Sum { subtract: true },
        _ => SentinelHeadroom::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tied_inputs_only_where_the_output_is_not_real() {
        for r in RULES.iter().filter(|r| r.tied_inputs) {
            assert_eq!(r.output, Output::NonReal, "{:?}: Shared already ties", r.op);
        }
        for r in RULES.iter().filter(|r| r.integer_inputs.is_some()) {
            assert_eq!(
                r.integer_inputs.map(<[Role]>::len),
                Some(r.inputs.len()),
                "{:?}",
                r.op
            );
        }
    }

    #[test]
    fn one_rule_per_operator() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                assert_ne!(a.op, b.op, "duplicate rule for {:?}", a.op);
            }
        }
    }

    #[test]
    fn biases_point_at_an_activation_and_a_weight() {
        for r in RULES {
            for (pos, role) in r.inputs.iter().enumerate() {
                if let Role::Bias { input, weight } = *role {
                    assert_eq!(r.role(input), Role::Activation, "{:?} input {pos}", r.op);
                    assert!(
                        matches!(r.role(weight), Role::Weight { .. }),
                        "{:?} input {pos}",
                        r.op
                    );
                }
            }
        }
    }

    #[test]
    fn fixed_int16_outputs_are_symmetric() {
        for r in RULES {
            if let Output::Fixed {
                int16: Some((_, zp)),
                ..
            } = r.output
            {
                assert_eq!(zp, 0, "{:?}", r.op);
            }
        }
    }

    /// The coverage the project promises: ai-edge-quantizer's static int8 operators plus
    /// TF's extras (QUANT_SPEC.md), except STABLEHLO_COMPOSITE (not a single op) and
    /// WHERE (its only input is boolean and its output holds indices: nothing to
    /// quantize), and EMBEDDING_LOOKUP, whose int8 table is handled as a weight.
    #[test]
    fn covers_the_promised_int8_operators() {
        let promised = [
            Op::Add,
            Op::AveragePool2d,
            Op::BatchMatmul,
            Op::Concatenation,
            Op::FullyConnected,
            Op::Conv2d,
            Op::TransposeConv,
            Op::DepthwiseConv2d,
            Op::Gelu,
            Op::Logistic,
            Op::Mean,
            Op::Mul,
            Op::Reshape,
            Op::Rsqrt,
            Op::Softmax,
            Op::Split,
            Op::StridedSlice,
            Op::Sub,
            Op::Tanh,
            Op::Transpose,
            Op::Slice,
            Op::Sum,
            Op::Select,
            Op::SelectV2,
            Op::DynamicUpdateSlice,
            Op::Pad,
            Op::SquaredDifference,
            Op::MaxPool2d,
            Op::ResizeBilinear,
            Op::ResizeNearestNeighbor,
            Op::GatherNd,
            Op::Pack,
            Op::Unpack,
            Op::Div,
            Op::BroadcastTo,
            Op::Sqrt,
            Op::Gather,
            Op::HardSwish,
            Op::Maximum,
            Op::Padv2,
            Op::ReduceMin,
            Op::Equal,
            Op::NotEqual,
            Op::MirrorPad,
            Op::SpaceToDepth,
            Op::Relu,
            Op::Squeeze,
            Op::ExpandDims,
            Op::Tile,
            Op::ReverseV2,
            Op::DepthToSpace,
            Op::BatchToSpaceNd,
            Op::SpaceToBatchNd,
            Op::Minimum,
            Op::ReduceMax,
            Op::LeakyRelu,
            Op::Relu6,
            Op::ReluN1To1,
            Op::Prelu,
            Op::Abs,
            Op::LogSoftmax,
            Op::L2Normalization,
            Op::ArgMax,
            Op::Less,
            Op::LessEqual,
            Op::Greater,
            Op::GreaterEqual,
            Op::SplitV,
            Op::Fill,
        ];
        for op in promised {
            let r = rule_for(op).unwrap_or_else(|| panic!("no rule for {op:?}"));
            assert!(r.int8, "{op:?} must have an int8 kernel");
        }
    }
}
