//! Normalising real producers' weight encodings to plain float32 constants before
//! quantizing: FLOAT16 constants behind DEQUANTIZE (MediaPipe, TF's float16 mode) and
//! sparse constants (behind DENSIFY, or read sparse by FULLY_CONNECTED).

use crate::error::{Loc, Result};
use crate::fb::{BuiltinOperator as Op, TensorType};
use crate::ir::{self, Model};

use super::math;
use super::report::Report;

/// FLOAT16 constant → DEQUANTIZE → float32 becomes a float32 constant; the DEQUANTIZE
/// disappears. Returns how many were folded.
pub fn fold_fp16_dequantize(model: &mut Model, report: &mut Report) -> Result<usize> {
    let mut folded = 0;
    for si in 0..model.subgraphs.len() {
        let mut remove = vec![false; model.subgraphs[si].operators.len()];
        for oi in 0..model.subgraphs[si].operators.len() {
            let sg = &model.subgraphs[si];
            let op = &sg.operators[oi];
            if model.builtin(op) != Op::Dequantize || op.inputs.len() != 1 || op.outputs.len() != 1
            {
                continue;
            }
            // An absent (-1) input or output folds nothing (a fuzz finding: it panicked).
            let (Ok(src), Ok(dst)) = (
                usize::try_from(op.inputs[0]),
                usize::try_from(op.outputs[0]),
            ) else {
                continue;
            };
            let (s, d) = (&sg.tensors[src], &sg.tensors[dst]);
            if s.dtype != TensorType::Float16
                || d.dtype != TensorType::Float32
                || !model.is_constant(s)
                || s.sparsity.is_some()
                || sg.outputs.contains(&(dst as i32))
            {
                continue;
            }
            let values = math::f16_to_f32(model.tensor_data(s));
            let name = s.name.clone();
            let buffer = model.add_buffer(math::f32_bytes(&values));
            // The folded constant takes the weight's own name (the DEQUANTIZE output is
            // usually the same name with a suffix); the FLOAT16 tensor is pruned later.
            let t = &mut model.subgraphs[si].tensors[dst];
            t.buffer = buffer;
            t.name = name.clone();
            remove[oi] = true;
            folded += 1;
            report.note(format!(
                "subgraph {si}: folded FLOAT16 constant {name:?} behind DEQUANTIZE into float32"
            ));
        }
        remove_ops(&mut model.subgraphs[si], &remove);
    }
    Ok(folded)
}

/// Sparse constants become dense: DENSIFY of a constant is folded away, and a sparse
/// constant read directly by an operator is replaced by its dense data.
pub fn densify_constants(model: &mut Model, report: &mut Report) -> Result<usize> {
    let mut count = 0;
    for si in 0..model.subgraphs.len() {
        let mut remove = vec![false; model.subgraphs[si].operators.len()];
        // DENSIFY(constant) → constant.
        for oi in 0..model.subgraphs[si].operators.len() {
            let sg = &model.subgraphs[si];
            let op = &sg.operators[oi];
            if model.builtin(op) != Op::Densify || op.inputs.len() != 1 || op.outputs.len() != 1 {
                continue;
            }
            // An absent (-1) input or output folds nothing (a fuzz finding: it panicked).
            let (Ok(src), Ok(dst)) = (
                usize::try_from(op.inputs[0]),
                usize::try_from(op.outputs[0]),
            ) else {
                continue;
            };
            let s = &sg.tensors[src];
            let Some(sp) = s.sparsity.as_ref().filter(|_| model.is_constant(s)) else {
                continue;
            };
            if sg.outputs.contains(&(dst as i32)) {
                continue;
            }
            let dense = dense_bytes(model, s, sp, &Loc::tensor(si, src))?;
            let name = s.name.clone();
            let buffer = model.add_buffer(dense);
            let t = &mut model.subgraphs[si].tensors[dst];
            t.buffer = buffer;
            t.name = name.clone();
            remove[oi] = true;
            count += 1;
            report.note(format!(
                "subgraph {si}: folded DENSIFY of sparse constant {name:?}"
            ));
        }
        remove_ops(&mut model.subgraphs[si], &remove);

        // Sparse constants still read by operators (e.g. block-sparse FULLY_CONNECTED).
        let consumers = model.subgraphs[si].consumers();
        for ti in 0..model.subgraphs[si].tensors.len() {
            let t = &model.subgraphs[si].tensors[ti];
            let Some(sp) = t.sparsity.as_ref().filter(|_| model.is_constant(t)) else {
                continue;
            };
            if consumers[ti].is_empty() {
                continue;
            }
            let dense = dense_bytes(model, t, sp, &Loc::tensor(si, ti))?;
            let buffer = model.add_buffer(dense);
            let t = &mut model.subgraphs[si].tensors[ti];
            t.buffer = buffer;
            t.sparsity = None;
            count += 1;
            report.note(format!(
                "subgraph {si}: densified sparse constant {:?} read directly by an operator",
                t.name
            ));
        }
    }
    Ok(count)
}

fn dense_bytes(
    model: &Model,
    t: &ir::Tensor,
    sp: &crate::fb::SparsityParameters,
    at: &Loc,
) -> Result<Vec<u8>> {
    let elem = ir::dtype_bits(t.dtype)
        .filter(|b| b % 8 == 0)
        .ok_or_else(|| {
            crate::Error::unsupported(
                at.clone(),
                format!("sparse constant of type {}", crate::fb::dtype_name(t.dtype)),
            )
        })?
        / 8;
    ir::sparse::densify(&t.shape, elem as usize, sp, model.tensor_data(t), at)
}

/// Removes the operators flagged in `remove`, keeping the order of the rest.
pub fn remove_ops(sg: &mut ir::Subgraph, remove: &[bool]) {
    let mut i = 0;
    sg.operators.retain(|_| {
        let keep = !remove[i];
        i += 1;
        keep
    });
}
