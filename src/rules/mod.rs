//! The op rule table: what quantization may do to each builtin operator.
//!
//! One entry per operator, as data: the role of each input (activation, weight with its
//! per-channel axis, bias, or not real-valued), whether the runtime has a dynamic-range
//! (hybrid) kernel, and a one-line reason for anything unusual. Passes read this table;
//! they never match on operator names themselves. Facts come from TFLite's kernels and
//! its quantizers (`operator_property.cc`, the MLIR converter's dynamic-range op
//! interfaces, ai-edge-quantizer's policy); see `../../docs/ARCHITECTURE.md`.

pub mod version;

use crate::fb::BuiltinOperator as Op;

/// What an input of an operator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A real-valued tensor computed at run time (or a constant used like one).
    Activation,
    /// A real-valued constant the kernel reads as weights; `axis` is the per-channel
    /// dimension when the kernel supports per-channel parameters.
    Weight { axis: Option<i32> },
    /// A bias added to the product of input `input` and weight `weight`.
    Bias { input: usize, weight: usize },
    /// Shapes, indices, axes, paddings, sizes: never quantized.
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
    pub hybrid: Hybrid,
    /// Hybrid kernel has the `asymmetric_quantize_inputs` option (TF sets it: inputs
    /// are quantized per row with a zero point, which is more accurate).
    pub asymmetric_inputs: bool,
    /// Weight-only int4 (packed INT4 weights read directly by the kernel).
    pub int4_weights: bool,
    pub why: &'static str,
}

impl Rule {
    /// The role of input `pos`.
    pub fn role(&self, pos: usize) -> Role {
        self.inputs.get(pos).copied().unwrap_or(self.rest)
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

const fn rule(op: Op, inputs: &'static [Role], rest: Role) -> Rule {
    Rule {
        op,
        inputs,
        rest,
        hybrid: Hybrid::No,
        asymmetric_inputs: false,
        int4_weights: false,
        why: "",
    }
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

/// LSTM inputs: 0 input; 1-4 input weights; 5-8 recurrent weights; 9-11 peephole
/// weights; 12-15 gate biases; 16 projection weights; 17 projection bias; 18-19
/// variable state; 20-23 layer-norm coefficients.
const LSTM: &[Role] = &[
    A, W_TENSOR, W_TENSOR, W_TENSOR, W_TENSOR, W_TENSOR, W_TENSOR, W_TENSOR, W_TENSOR, W_TENSOR,
    W_TENSOR, W_TENSOR, A, A, A, A, W_TENSOR, A, A, A, A, A, A, A,
];

/// The table. Operators not listed have no rule: passes leave them alone.
pub static RULES: &[Rule] = &[
    int4(hybrid(
        rule(Op::FullyConnected, &[A, w(0), bias(0, 1)], N),
        Hybrid::PerChannel,
        true,
    )),
    hybrid(
        rule(Op::Conv2d, &[A, w(0), bias(0, 1)], N),
        Hybrid::PerChannel,
        false,
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
        hybrid(
            rule(Op::BatchMatmul, &[A, W_TENSOR], N),
            Hybrid::PerTensor,
            true,
        ),
        "hybrid only with a constant right-hand side",
    ),
    why(
        int4(hybrid(
            rule(Op::EmbeddingLookup, &[N, w(0)], N),
            Hybrid::PerChannel,
            false,
        )),
        "input 0 holds ids; the table's rows are the channels",
    ),
    why(rule(Op::Gather, &[A, N, N], N), "input 1 holds indices"),
    hybrid(rule(Op::Lstm, LSTM, A), Hybrid::PerTensor, true),
    hybrid(
        rule(Op::UnidirectionalSequenceLstm, LSTM, A),
        Hybrid::PerTensor,
        true,
    ),
    why(
        hybrid(
            rule(Op::BidirectionalSequenceLstm, &[A], A),
            Hybrid::No,
            false,
        ),
        "48 inputs; not quantized by tflquant yet",
    ),
    hybrid(
        rule(Op::Svdf, &[A, W_TENSOR, W_TENSOR, A, A], A),
        Hybrid::PerTensor,
        true,
    ),
    hybrid(
        rule(Op::Rnn, &[A, W_TENSOR, W_TENSOR, A, A], A),
        Hybrid::PerTensor,
        true,
    ),
    hybrid(
        rule(
            Op::UnidirectionalSequenceRnn,
            &[A, W_TENSOR, W_TENSOR, A, A],
            A,
        ),
        Hybrid::PerTensor,
        true,
    ),
];

/// The rule of an operator, if it has one.
pub fn rule_for(op: Op) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.op == op)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
