//! Structural checks of a [`Model`]: every index in range, shapes sane, constant data
//! of the size its dtype and shape imply, no tensor produced twice or read before the
//! operator that writes it, no operator output holding constant data or writing a
//! subgraph input, no cycle of subgraph calls. The
//! reader runs it on every model it returns and the quantizer after every pass, so
//! later code may index without checking again.

use super::{Model, Subgraph, TensorType};
use crate::error::{Error, Loc, Result};
use crate::fb;

/// Largest rank accepted. The format has no limit; no kernel goes beyond 8, and a cap
/// keeps a hostile file from making the tool allocate huge per-dimension vectors.
pub const MAX_RANK: usize = 16;

/// Checks the model; the error names the first problem found and where it is.
pub fn verify(model: &Model) -> Result<()> {
    for (i, code) in model.operator_codes.iter().enumerate() {
        if code.builtin == fb::BuiltinOperator::Custom && code.custom_code.is_none() {
            return Err(Error::malformed(
                format!("operator code {i}"),
                "CUSTOM operator without a custom_code",
            ));
        }
    }
    for (si, sg) in model.subgraphs.iter().enumerate() {
        verify_subgraph(model, si, sg)?;
    }
    for (i, m) in model.metadata.iter().enumerate() {
        if m.buffer as usize >= model.buffers.len() {
            return Err(Error::malformed(
                format!("metadata {i} ({:?})", m.name.as_deref().unwrap_or("")),
                format!(
                    "buffer index {} out of range (model has {} buffers)",
                    m.buffer,
                    model.buffers.len()
                ),
            ));
        }
    }
    for (i, s) in model.signature_defs.iter().enumerate() {
        let at = format!(
            "signature {i} ({:?})",
            s.signature_key.as_deref().unwrap_or("")
        );
        let sg = model
            .subgraphs
            .get(s.subgraph_index as usize)
            .ok_or_else(|| {
                Error::malformed(
                    at.as_str(),
                    format!(
                        "subgraph index {} out of range (model has {} subgraphs)",
                        s.subgraph_index,
                        model.subgraphs.len()
                    ),
                )
            })?;
        for (kind, maps) in [("input", &s.inputs), ("output", &s.outputs)] {
            for m in maps {
                if m.tensor_index as usize >= sg.tensors.len() {
                    return Err(Error::malformed(
                        at.as_str(),
                        format!(
                            "{kind} {:?} refers to tensor {} but subgraph {} has {} tensors",
                            m.name.as_deref().unwrap_or(""),
                            m.tensor_index,
                            s.subgraph_index,
                            sg.tensors.len()
                        ),
                    ));
                }
            }
        }
    }
    verify_call_graph(model)
}

fn verify_subgraph(model: &Model, si: usize, sg: &Subgraph) -> Result<()> {
    let n = sg.tensors.len();
    let check_io = |kind: &str, list: &[i32]| -> Result<()> {
        for &t in list {
            if t < 0 || t as usize >= n {
                return Err(Error::malformed(
                    Loc::subgraph(si),
                    format!("{kind} tensor index {t} out of range (subgraph has {n} tensors)"),
                ));
            }
        }
        Ok(())
    };
    check_io("input", &sg.inputs)?;
    check_io("output", &sg.outputs)?;

    for (ti, t) in sg.tensors.iter().enumerate() {
        let at = || Loc::tensor(si, ti).then(format!("{:?}", t.name));
        if t.shape.len() > MAX_RANK {
            return Err(Error::malformed(
                at(),
                format!("rank {} exceeds the limit of {MAX_RANK}", t.shape.len()),
            ));
        }
        if let Some(d) = t.shape.iter().find(|&&d| d < 0) {
            return Err(Error::malformed(
                at(),
                format!(
                    "negative dimension {d} in shape {:?} (unknown dimensions belong in shape_signature)",
                    t.shape
                ),
            ));
        }
        if let Some(sig) = &t.shape_signature {
            let compatible = sig.len() == t.shape.len()
                && sig.iter().zip(&t.shape).all(|(&s, &d)| s == -1 || s == d);
            if !sig.is_empty() && !compatible {
                return Err(Error::malformed(
                    at(),
                    format!("shape_signature {sig:?} does not match shape {:?}", t.shape),
                ));
            }
        }
        if t.num_elements().is_none_or(|e| e > i64::MAX as u64) {
            return Err(Error::malformed(
                at(),
                format!("element count of shape {:?} overflows", t.shape),
            ));
        }
        let buf = model.buffers.get(t.buffer as usize);
        if buf.is_none() && t.buffer != 0 {
            return Err(Error::malformed(
                at(),
                format!(
                    "buffer index {} out of range (model has {} buffers)",
                    t.buffer,
                    model.buffers.len()
                ),
            ));
        }
        let data_len = buf.map_or(0, |b| b.data.len() as u64);
        if data_len > 0
            && t.sparsity.is_none()
            && t.dtype != TensorType::String
            && let Some(expected) = t.dense_byte_size()
            && expected != data_len
        {
            return Err(Error::malformed(
                at(),
                format!(
                    "buffer {} holds {data_len} bytes but a {} tensor of shape {:?} needs {expected}",
                    t.buffer,
                    fb::dtype_name(t.dtype),
                    t.shape
                ),
            ));
        }
        if let Some(q) = &t.quant {
            if !q.zero_point.is_empty() && q.zero_point.len() != q.scale.len() {
                return Err(Error::malformed(
                    at(),
                    format!(
                        "{} scales but {} zero points",
                        q.scale.len(),
                        q.zero_point.len()
                    ),
                ));
            }
            if q.scale.len() > 1 {
                let axis = q.quantized_dimension;
                let dim = usize::try_from(axis).ok().and_then(|a| t.shape.get(a));
                if dim.is_none_or(|&d| d as usize != q.scale.len()) {
                    return Err(Error::malformed(
                        at(),
                        format!(
                            "{} per-axis scales along axis {axis} do not match shape {:?}",
                            q.scale.len(),
                            t.shape
                        ),
                    ));
                }
            }
        }
    }

    let mut produced_by: Vec<Option<usize>> = vec![None; n];
    for (oi, op) in sg.operators.iter().enumerate() {
        let at = Loc::op(si, oi);
        let Some(code) = model.operator_codes.get(op.opcode_index as usize) else {
            return Err(Error::malformed(
                at,
                format!(
                    "opcode index {} out of range (model has {} operator codes)",
                    op.opcode_index,
                    model.operator_codes.len()
                ),
            ));
        };
        let at = at.then(fb::op_name(code.builtin));
        let lists: [(&str, &[i32]); 3] = [
            ("input", &op.inputs),
            ("output", &op.outputs),
            ("intermediate", op.intermediates.as_deref().unwrap_or(&[])),
        ];
        for (kind, list) in lists {
            for (pos, &t) in list.iter().enumerate() {
                if t < -1 || t >= n as i32 {
                    return Err(Error::malformed(
                        at.then(format!("{kind} {pos}")),
                        format!("tensor index {t} out of range (subgraph has {n} tensors)"),
                    ));
                }
            }
        }
        for &t in op.outputs.iter().filter(|&&t| t >= 0) {
            let tensor = &sg.tensors[t as usize];
            if model
                .buffers
                .get(tensor.buffer as usize)
                .is_some_and(|b| !b.data.is_empty())
            {
                return Err(Error::malformed(
                    at.clone(),
                    format!(
                        "output tensor {t} {:?} holds constant data (buffer {}); an operator \
                         cannot compute a constant",
                        tensor.name, tensor.buffer
                    ),
                ));
            }
            if let Some(prev) = produced_by[t as usize].replace(oi) {
                return Err(Error::malformed(
                    at.clone(),
                    format!("tensor {t} is also the output of operator {prev}"),
                ));
            }
        }
    }
    // The runtime writes a subgraph's inputs before it runs; an operator writing one
    // too would make a cycle (found by the quantizer fuzz target).
    for &t in &sg.inputs {
        if let Some(oi) = produced_by[t as usize] {
            return Err(Error::malformed(
                Loc::op(si, oi).then(model.op_display_name(&sg.operators[oi])),
                format!("output tensor {t} is also an input of subgraph {si}"),
            ));
        }
    }
    // The runtime runs the operators in their listed order: one reading a tensor that
    // it or a later operator writes would read it before it holds a value (found by a
    // sweep of rewired operands: it also confused the integer rewrite).
    for (oi, op) in sg.operators.iter().enumerate() {
        for (pos, &t) in op.inputs.iter().enumerate().filter(|(_, t)| **t >= 0) {
            if let Some(p) = produced_by[t as usize].filter(|&p| p >= oi) {
                return Err(Error::malformed(
                    Loc::op(si, oi)
                        .then(model.op_display_name(op))
                        .then(format!("input {pos}")),
                    format!(
                        "tensor {t} is written by operator {p}, which does not run before this \
                         one (operators are listed in execution order)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Subgraph references must be in range and must not form a cycle (a WHILE body that
/// runs itself would make any executor recurse forever).
fn verify_call_graph(model: &Model) -> Result<()> {
    let n = model.subgraphs.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            for (field, target) in op.subgraph_refs() {
                if target < 0 || target as usize >= n {
                    return Err(Error::malformed(
                        Loc::op(si, oi).then(model.op_display_name(op)),
                        format!("{field} {target} out of range (model has {n} subgraphs)"),
                    ));
                }
                edges[si].push(target as usize);
            }
        }
    }
    // Iterative DFS with colours: 0 unvisited, 1 on the stack, 2 done.
    let mut colour = vec![0u8; n];
    for start in 0..n {
        if colour[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        colour[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&succ) = edges[node].get(*next) {
                *next += 1;
                match colour[succ] {
                    0 => {
                        colour[succ] = 1;
                        stack.push((succ, 0));
                    }
                    1 => {
                        let mut cycle: Vec<String> =
                            stack.iter().map(|(s, _)| s.to_string()).collect();
                        cycle.push(succ.to_string());
                        return Err(Error::malformed(
                            Loc::subgraph(node),
                            format!("cyclic subgraph calls: {}", cycle.join(" -> ")),
                        ));
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}
