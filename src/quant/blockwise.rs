//! Blockwise INT4 FULLY_CONNECTED that LiteRT's builtin kernels compute correctly.
//!
//! What LiteRT's builtin FULLY_CONNECTED does with a float input and an INT4 weight
//! (`tflite/kernels/fully_connected.cc`, google-ai-edge/LiteRT `02f5403`, read for
//! issue #21; the XNNPACK delegate handles every case below correctly):
//! - `Prepare` takes the optimized 4-bit path when the weight is constant, the input
//!   depth is even and at least 32 (`optimized_4bit::FilterDepth`) and there are at
//!   least 4 output units (`FilterWidth`); only that path's `Eval` reads blockwise
//!   scales (`EvalBlockwise4Bit`) — and it **applies no fused activation**;
//! - any other shape reaches the per-channel hybrid kernel (`EvalHybridDense`), which
//!   reads the blockwise parameters as affine ones: wrong outputs.
//!
//! So a weight is written blockwise only when every reader is a FULLY_CONNECTED that
//! takes the 4-bit path ([`refusal`] says why not otherwise: the weight then stays INT4
//! per channel), and the fused activation of each reader is written as an operator of
//! its own right after it ([`unfuse_activations`]): the FULLY_CONNECTED computes the
//! pre-activation into a new tensor, the activation writes the original output tensor
//! (name, readers and subgraph outputs unchanged).

use crate::fb::{self, ActivationFunctionType as Act, BuiltinOperator as Op};
use crate::ir::{Model, Operator, Tensor};

/// The smallest number of output units LiteRT's 4-bit kernel takes (its tile width).
pub const MIN_UNITS: i32 = 4;
/// The smallest input depth LiteRT's 4-bit kernel takes (its tile depth); it must also
/// be even.
pub const MIN_DEPTH: i32 = 32;

/// The operator computing fused activation `a` on its own; `None` for `NONE` and for
/// `SIGN_BIT`, which no builtin operator computes.
pub fn activation_op(a: Act) -> Option<Op> {
    match a {
        Act::Relu => Some(Op::Relu),
        Act::ReluN1To1 => Some(Op::ReluN1To1),
        Act::Relu6 => Some(Op::Relu6),
        Act::Tanh => Some(Op::Tanh),
        _ => None,
    }
}

/// The fused activation of a FULLY_CONNECTED (`NONE` without options).
fn fused(op: &Operator) -> Act {
    match &op.builtin_options {
        Some(fb::BuiltinOptions::FullyConnectedOptions(o)) => o.fused_activation_function,
        _ => Act::None,
    }
}

/// Why LiteRT's builtin kernel would not compute a blockwise INT4 weight of `shape`
/// (`[units, depth]`) read by the FULLY_CONNECTED operators `readers` of subgraph
/// `si`; `None` when it does (after [`unfuse_activations`]).
pub fn refusal(model: &Model, si: usize, shape: &[i32], readers: &[usize]) -> Option<String> {
    let &[units, depth] = shape else {
        return Some(format!("shape {shape:?} is not [units, depth]"));
    };
    if units < MIN_UNITS {
        return Some(format!(
            "{units} output units: LiteRT's builtin FULLY_CONNECTED reads blockwise scales only in its 4-bit kernel, which needs at least {MIN_UNITS} (fewer reach its per-channel hybrid kernel, which reads no blockwise scales)"
        ));
    }
    if depth < MIN_DEPTH || depth % 2 != 0 {
        return Some(format!(
            "input depth {depth}: LiteRT's builtin FULLY_CONNECTED reads blockwise scales only in its 4-bit kernel, which needs an even depth of at least {MIN_DEPTH}"
        ));
    }
    let sg = &model.subgraphs[si];
    for &oi in readers {
        let a = fused(&sg.operators[oi]);
        if a != Act::None && activation_op(a).is_none() {
            return Some(format!(
                "operator {oi} has fused activation {a:?}, which LiteRT's blockwise INT4 kernel does not apply and no builtin operator computes on its own"
            ));
        }
    }
    None
}

/// Moves the fused activation of each FULLY_CONNECTED `ops` (indices into subgraph
/// `si`) into an operator right after it; returns how many were moved. Operators after
/// the first moved one change index.
pub fn unfuse_activations(model: &mut Model, si: usize, ops: &[usize]) -> usize {
    let mut ops: Vec<usize> = ops.to_vec();
    ops.sort_unstable();
    ops.dedup();
    let mut moved = 0;
    // From the last, so that the indices still to visit stay valid.
    for &oi in ops.iter().rev() {
        let Some(kind) = activation_op(fused(&model.subgraphs[si].operators[oi])) else {
            continue;
        };
        let Some(&out) = model.subgraphs[si].operators[oi].outputs.first() else {
            continue;
        };
        let Some(out_t) = usize::try_from(out)
            .ok()
            .and_then(|o| model.subgraphs[si].tensors.get(o))
        else {
            continue;
        };
        let mut pre = Tensor::new(
            format!("{}/pre_activation", out_t.name),
            out_t.dtype,
            out_t.shape.clone(),
        );
        pre.shape_signature = out_t.shape_signature.clone();
        let opcode = model.ensure_opcode(kind, 1);
        let sg = &mut model.subgraphs[si];
        let pre = sg.add_tensor(pre);
        let fc = &mut sg.operators[oi];
        if let Some(fb::BuiltinOptions::FullyConnectedOptions(o)) = &mut fc.builtin_options {
            o.fused_activation_function = Act::None;
        }
        fc.outputs[0] = pre;
        sg.operators
            .insert(oi + 1, Operator::new(opcode, vec![pre], vec![out]));
        moved += 1;
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fused_activation_but_sign_bit_has_an_operator() {
        for (a, op) in [
            (Act::Relu, Some(Op::Relu)),
            (Act::ReluN1To1, Some(Op::ReluN1To1)),
            (Act::Relu6, Some(Op::Relu6)),
            (Act::Tanh, Some(Op::Tanh)),
            (Act::SignBit, None),
            (Act::None, None),
        ] {
            assert_eq!(activation_op(a), op, "{a:?}");
        }
    }
}
