//! The model's interface in full-integer modes: with `--interface uint8`, every integer
//! input and output of subgraph 0 becomes uint8 (zero point + 128) and a QUANTIZE
//! converts between it and an int8 twin that the graph uses.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::fb::{BuiltinOperator as Op, TensorType};
use crate::ir::{Model, Operator, QuantParams};

/// uint8 interface: every integer input/output tensor of subgraph 0 becomes uint8 with
/// zero point + 128; a QUANTIZE converts between it and an int8 twin the graph uses.
pub(super) fn uint8_interface(
    model: &mut Model,
    si: usize,
    activations: &BTreeMap<(usize, usize), QuantParams>,
    new_ops_after: &mut BTreeMap<Option<usize>, Vec<Operator>>,
    n_orig: usize,
) -> Result<()> {
    let inputs: Vec<usize> = model.subgraphs[si]
        .inputs
        .iter()
        .filter_map(|&t| usize::try_from(t).ok())
        .collect();
    let outputs: Vec<usize> = model.subgraphs[si]
        .outputs
        .iter()
        .filter_map(|&t| usize::try_from(t).ok())
        .collect();
    let code = model.ensure_opcode(Op::Quantize, 1);
    let producers = model.subgraphs[si].producers();
    for (is_input, list) in [(true, inputs), (false, outputs)] {
        for t in list {
            if t >= n_orig || !activations.contains_key(&(si, t)) {
                continue;
            }
            let int8 = model.subgraphs[si].tensors[t].clone();
            if int8.dtype != TensorType::Int8 {
                continue;
            }
            let q = int8
                .quant
                .clone()
                .expect("integer interface tensors have parameters");
            // The int8 twin takes over every use inside the graph: its producer and every
            // reader, including the operators this rewrite still has to insert (a float
            // reader's DEQUANTIZE). Only the interface QUANTIZE touches the uint8 tensor.
            let mut twin = int8.clone();
            twin.name = format!("{}/int8", int8.name);
            let twin_i = model.subgraphs[si].add_tensor(twin);
            let sg = &mut model.subgraphs[si];
            let pending = new_ops_after.values_mut().flatten();
            for op in sg.operators.iter_mut().chain(pending) {
                for x in op.inputs.iter_mut().chain(op.outputs.iter_mut()) {
                    if *x == t as i32 {
                        *x = twin_i;
                    }
                }
            }
            let u = &mut sg.tensors[t];
            u.dtype = TensorType::Uint8;
            u.quant = Some(QuantParams::per_tensor(q.scale[0], q.zero_point[0] + 128));
            if is_input {
                new_ops_after
                    .entry(None)
                    .or_default()
                    .insert(0, Operator::new(code, vec![t as i32], vec![twin_i]));
            } else {
                new_ops_after
                    .entry(producers[t])
                    .or_default()
                    .push(Operator::new(code, vec![twin_i], vec![t as i32]));
            }
        }
    }
    Ok(())
}
