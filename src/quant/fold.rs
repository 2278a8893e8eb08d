//! Normalising real producers' weight encodings to plain float32 constants before
//! quantizing: FLOAT16 constants behind DEQUANTIZE (MediaPipe, TF's float16 mode) and
//! sparse constants (behind DENSIFY, or read sparse by FULLY_CONNECTED).
//!
//! The encodings stack (TF's sparsity + float16 path writes FLOAT16 sparse constant →
//! DENSIFY → DEQUANTIZE → operator), so [`fold_weight_encodings`] repeats the single
//! folds until none applies: the order in which they meet does not matter.
//! [`check_weight_encodings`] runs before any pass: a FLOAT16 or sparse constant whose
//! size does not fit the operator that decodes it is malformed input, named as such.

use crate::error::{Error, Loc, Result};
use crate::fb::{BuiltinOperator as Op, TensorType};
use crate::ir::{self, Model};

use super::math;
use super::report::Report;

/// What the folds may leave as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldOptions {
    /// Keep sparse constants behind DENSIFY (float16 mode: dense float16 would be larger
    /// than the sparse encoding; sparse float32 ones are cast to sparse float16 instead).
    pub keep_sparse: bool,
}

/// Folds DENSIFY and FLOAT16 DEQUANTIZE of constants, in any combination, until none is
/// left. Returns how many folds were made.
pub fn fold_weight_encodings(
    model: &mut Model,
    opts: FoldOptions,
    report: &mut Report,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let n = densify_constants_with(model, opts, report)? + fold_fp16_dequantize(model, report)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// Rejects FLOAT16 and sparse constants that do not fit the DEQUANTIZE or DENSIFY that
/// decodes them (element counts differ, or DENSIFY changes the type): the folds would
/// otherwise build constants whose bytes do not match their shape.
pub fn check_weight_encodings(model: &Model) -> Result<()> {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let producers = sg.producers();
        // A DEQUANTIZE input made by DENSIFY of a constant becomes a constant too.
        let densified_constant = |t: usize| {
            producers[t].is_some_and(|p| {
                let op = &sg.operators[p];
                model.builtin(op) == Op::Densify
                    && op
                        .inputs
                        .first()
                        .and_then(|&i| usize::try_from(i).ok())
                        .and_then(|i| sg.tensors.get(i))
                        .is_some_and(|c| model.is_constant(c))
            })
        };
        for (oi, op) in sg.operators.iter().enumerate() {
            let kind = model.builtin(op);
            if !matches!(kind, Op::Dequantize | Op::Densify) || op.inputs.len() != 1 {
                continue;
            }
            let (Some(&src), Some(&dst)) = (op.inputs.first(), op.outputs.first()) else {
                continue;
            };
            let (Ok(src), Ok(dst)) = (usize::try_from(src), usize::try_from(dst)) else {
                continue;
            };
            let (s, d) = (&sg.tensors[src], &sg.tensors[dst]);
            let encoded = s.dtype == TensorType::Float16 || s.sparsity.is_some();
            if !encoded || !(model.is_constant(s) || densified_constant(src)) {
                continue;
            }
            let (n_in, n_out) = (s.num_elements(), d.num_elements());
            let bad = |what: String| {
                Err(Error::malformed(
                    Loc(format!(
                        "subgraph {si}, tensor {src} {:?} (input of operator {oi}, {})",
                        s.name,
                        crate::fb::op_name(kind)
                    )),
                    what,
                ))
            };
            if n_in != n_out {
                return bad(format!(
                    "the {} constant has shape {:?} ({} values) but the {} output {:?} has shape {:?} ({} values); \
                     the file is damaged or was written by a faulty tool",
                    crate::fb::dtype_name(s.dtype),
                    s.shape,
                    n_in.map_or("?".into(), |n| n.to_string()),
                    crate::fb::op_name(kind),
                    d.name,
                    d.shape,
                    n_out.map_or("?".into(), |n| n.to_string()),
                ));
            }
            if kind == Op::Densify && s.dtype != d.dtype {
                return bad(format!(
                    "DENSIFY turns a {} constant into a {} tensor {:?}; it cannot change the type",
                    crate::fb::dtype_name(s.dtype),
                    crate::fb::dtype_name(d.dtype),
                    d.name
                ));
            }
        }
    }
    Ok(())
}

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
            report.folds.float16_folded += 1;
            report.note(format!(
                "subgraph {si}: folded FLOAT16 constant {name:?} behind DEQUANTIZE into float32"
            ));
        }
        model.subgraphs[si].remove_ops(&remove);
    }
    Ok(folded)
}

/// Sparse constants become dense: DENSIFY of a constant is folded away, and a sparse
/// constant read directly by an operator is replaced by its dense data.
pub fn densify_constants(model: &mut Model, report: &mut Report) -> Result<usize> {
    densify_constants_with(model, FoldOptions::default(), report)
}

/// The (input, output) tensors of a DENSIFY with one of each; `None` for any other
/// operator, and for an absent (-1) input or output, which folds nothing (a fuzz finding:
/// it panicked).
fn densify_operands(model: &Model, op: &ir::Operator) -> Option<(usize, usize)> {
    if model.builtin(op) != Op::Densify || op.inputs.len() != 1 || op.outputs.len() != 1 {
        return None;
    }
    Some((
        usize::try_from(op.inputs[0]).ok()?,
        usize::try_from(op.outputs[0]).ok()?,
    ))
}

fn densify_constants_with(
    model: &mut Model,
    opts: FoldOptions,
    report: &mut Report,
) -> Result<usize> {
    let mut count = 0;
    for si in 0..model.subgraphs.len() {
        let mut remove = vec![false; model.subgraphs[si].operators.len()];
        // DENSIFY(constant) → constant.
        for oi in 0..model.subgraphs[si].operators.len() {
            let sg = &model.subgraphs[si];
            let Some((src, dst)) = densify_operands(model, &sg.operators[oi]) else {
                continue;
            };
            let s = &sg.tensors[src];
            let Some(sp) = s.sparsity.as_ref().filter(|_| model.is_constant(s)) else {
                continue;
            };
            if sg.outputs.contains(&(dst as i32)) || opts.keep_sparse {
                continue;
            }
            let sparse_len = model.tensor_data(s).len() as u64;
            let dense = dense_bytes(model, s, sp, &Loc::tensor(si, src))?;
            report.folds.densified += 1;
            report.folds.sparse_bytes += sparse_len;
            report.folds.dense_bytes += dense.len() as u64;
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
        model.subgraphs[si].remove_ops(&remove);

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
            // Kept sparse constants are read by their DENSIFY only.
            let sg = &model.subgraphs[si];
            if opts.keep_sparse
                && consumers[ti]
                    .iter()
                    .all(|&(oi, _)| model.builtin(&sg.operators[oi]) == Op::Densify)
            {
                continue;
            }
            let sparse_len = model.tensor_data(t).len() as u64;
            let dense = dense_bytes(model, t, sp, &Loc::tensor(si, ti))?;
            report.folds.densified += 1;
            report.folds.sparse_bytes += sparse_len;
            report.folds.dense_bytes += dense.len() as u64;
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

/// Float16 mode: a sparse float32 constant behind DENSIFY becomes a sparse FLOAT16
/// constant → DENSIFY (FLOAT16) → DEQUANTIZE → the float32 tensor the readers read, the
/// encoding TF's converter writes for sparse float16 weights: half the bytes, still
/// sparse. Returns the changes made, for the report.
pub fn sparse_to_float16(model: &mut Model) -> Vec<super::report::TensorChange> {
    let mut changes = Vec::new();
    let opcode = model.ensure_opcode(Op::Dequantize, 1);
    for si in 0..model.subgraphs.len() {
        let consumers = model.subgraphs[si].consumers();
        let mut inserts: Vec<(usize, ir::Operator)> = Vec::new();
        for oi in 0..model.subgraphs[si].operators.len() {
            let sg = &model.subgraphs[si];
            let Some((src, dst)) = densify_operands(model, &sg.operators[oi]) else {
                continue;
            };
            let (s, d) = (&sg.tensors[src], &sg.tensors[dst]);
            if s.dtype != TensorType::Float32
                || d.dtype != TensorType::Float32
                || s.sparsity.is_none()
                || !model.is_constant(s)
                || consumers[src].len() != 1
                || s.quantized().is_some()
            {
                continue;
            }
            let before = model.tensor_data(s);
            let half = math::f16_bytes(&math::f32_values(before));
            changes.push(super::report::TensorChange {
                subgraph: si,
                tensor: src,
                name: s.name.clone(),
                consumers: vec![format!("{oi} DENSIFY")],
                old_dtype: "FLOAT32".into(),
                new_dtype: "FLOAT16".into(),
                bytes_before: before.len() as u64,
                bytes_after: half.len() as u64,
                granularity: "cast".into(),
                axis: None,
                block_size: None,
                scale_min: None,
                scale_max: None,
                dequantize_inserted: true,
                rounding: None,
            });
            let mut dense16 = ir::Tensor::new(
                format!("{}/float16", d.name),
                TensorType::Float16,
                d.shape.clone(),
            );
            dense16.shape_signature = d.shape_signature.clone();
            let buffer = model.add_buffer(half);
            let sg = &mut model.subgraphs[si];
            sg.tensors[src].dtype = TensorType::Float16;
            sg.tensors[src].buffer = buffer;
            let d16 = sg.add_tensor(dense16);
            sg.operators[oi].outputs[0] = d16;
            inserts.push((
                oi + 1,
                ir::Operator::new(opcode, vec![d16], vec![dst as i32]),
            ));
        }
        let sg = &mut model.subgraphs[si];
        for (pos, op) in inserts.into_iter().rev() {
            sg.operators.insert(pos, op);
        }
    }
    changes
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
            Error::unsupported(
                at.clone(),
                format!("sparse constant of type {}", crate::fb::dtype_name(t.dtype)),
            )
        })?
        / 8;
    ir::sparse::densify(&t.shape, elem as usize, sp, model.tensor_data(t), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Model {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        crate::read_path(&path).unwrap()
    }

    fn count(m: &Model, op: Op) -> usize {
        m.subgraphs
            .iter()
            .flat_map(|g| &g.operators)
            .filter(|o| m.builtin(o) == op)
            .count()
    }

    /// Sparse FLOAT16 → DENSIFY → DEQUANTIZE folds to the same float32 constants
    /// whichever single fold runs first.
    #[test]
    fn stacked_encodings_fold_in_any_order() {
        let src = model("sparse_fp16_cnn.tflite");
        assert_eq!(count(&src, Op::Densify), 7);
        let mut a = src.clone();
        let n =
            fold_weight_encodings(&mut a, FoldOptions::default(), &mut Report::default()).unwrap();
        assert_eq!(n, 7 + 14, "7 DENSIFY, 14 DEQUANTIZE (7 kernels, 7 biases)");
        let mut b = src.clone();
        fold_fp16_dequantize(&mut b, &mut Report::default()).unwrap();
        densify_constants(&mut b, &mut Report::default()).unwrap();
        fold_fp16_dequantize(&mut b, &mut Report::default()).unwrap();
        for m in [&a, &b] {
            ir::verify(m).unwrap();
            assert_eq!(count(m, Op::Densify) + count(m, Op::Dequantize), 0);
        }
        for (ta, tb) in a.subgraphs[0].tensors.iter().zip(&b.subgraphs[0].tensors) {
            assert_eq!(a.tensor_data(ta), b.tensor_data(tb), "{}", ta.name);
        }
        // The float16 mode keeps the sparse chains and folds the dense ones only.
        let mut c = src.clone();
        let keep = FoldOptions { keep_sparse: true };
        fold_weight_encodings(&mut c, keep, &mut Report::default()).unwrap();
        assert_eq!((count(&c, Op::Densify), count(&c, Op::Dequantize)), (7, 7));
    }

    /// A DENSIFY whose output does not hold the sparse constant's values, and a
    /// FLOAT16 constant larger than its DEQUANTIZE's output, are malformed.
    #[test]
    fn mismatched_encodings_are_malformed() {
        let mut m = model("sparse_fp16_cnn.tflite");
        check_weight_encodings(&m).unwrap();
        let g = &m.subgraphs[0];
        let (oi, op) = g
            .operators
            .iter()
            .enumerate()
            .find(|(_, o)| m.builtin(o) == Op::Densify)
            .unwrap();
        let (dense, name) = (
            op.outputs[0] as usize,
            g.tensors[op.inputs[0] as usize].name.clone(),
        );
        m.subgraphs[0].tensors[dense].shape = vec![3];
        let e = check_weight_encodings(&m).unwrap_err().to_string();
        assert!(e.starts_with("malformed model") && e.contains(&name), "{e}");
        assert!(e.contains(&format!("operator {oi}, DENSIFY")), "{e}");

        // The dense FLOAT16 tensor agrees with DENSIFY but not with the DEQUANTIZE
        // after it.
        let mut m = model("sparse_fp16_cnn.tflite");
        let g = &m.subgraphs[0];
        let dq = g
            .operators
            .iter()
            .find(|o| m.builtin(o) == Op::Dequantize && o.inputs[0] as usize == dense)
            .unwrap();
        let out = dq.outputs[0] as usize;
        m.subgraphs[0].tensors[out].shape = vec![3];
        let e = check_weight_encodings(&m).unwrap_err().to_string();
        assert!(e.contains("DEQUANTIZE") && e.contains("3 values"), "{e}");
    }
}
