//! Removes what nothing refers to any more: tensors (e.g. a folded FLOAT16 constant),
//! buffers (replaced weights) and operator codes; remaps every index that points at them.

use crate::fb;
use crate::ir::Model;

/// Prunes unreferenced tensors, buffers and operator codes. Returns how many tensors and
/// buffers were removed.
pub fn prune(model: &mut Model) -> (usize, usize) {
    let removed_tensors = prune_tensors(model);
    let removed_buffers = prune_buffers(model);
    prune_operator_codes(model);
    (removed_tensors, removed_buffers)
}

/// Tensors no operator, subgraph, signature or quantization detail refers to.
fn prune_tensors(model: &mut Model) -> usize {
    let mut removed_tensors = 0;
    for (si, sg) in model.subgraphs.iter_mut().enumerate() {
        let mut used = vec![false; sg.tensors.len()];
        let mut mark = |t: i32| {
            if let Some(u) = usize::try_from(t).ok().and_then(|t| used.get_mut(t)) {
                *u = true;
            }
        };
        for op in &sg.operators {
            op.inputs.iter().for_each(|&t| mark(t));
            op.outputs.iter().for_each(|&t| mark(t));
            op.intermediates.iter().flatten().for_each(|&t| mark(t));
        }
        sg.inputs.iter().for_each(|&t| mark(t));
        sg.outputs.iter().for_each(|&t| mark(t));
        for s in model
            .signature_defs
            .iter()
            .filter(|s| s.subgraph_index as usize == si)
        {
            for m in s.inputs.iter().chain(&s.outputs) {
                mark(m.tensor_index as i32);
            }
        }
        // Tensors referenced from other tensors' quantization details (blockwise scales).
        for t in &sg.tensors {
            for r in detail_refs(t.quant.as_ref().and_then(|q| q.details.as_ref())) {
                mark(r);
            }
        }
        if used.iter().all(|&u| u) {
            continue;
        }
        let before = sg.tensors.len();
        let map: Vec<i32> = compact(&mut sg.tensors, &used)
            .into_iter()
            .map(|m| m.map_or(-1, |i| i as i32))
            .collect();
        removed_tensors += before - sg.tensors.len();
        let remap = |t: &mut i32| {
            if *t >= 0 {
                *t = map[*t as usize];
            }
        };
        for op in &mut sg.operators {
            op.inputs.iter_mut().for_each(remap);
            op.outputs.iter_mut().for_each(remap);
            op.intermediates.iter_mut().flatten().for_each(remap);
        }
        sg.inputs.iter_mut().for_each(remap);
        sg.outputs.iter_mut().for_each(remap);
        for t in &mut sg.tensors {
            if let Some(d) = t.quant.as_mut().and_then(|q| q.details.as_mut()) {
                remap_details(d, &map);
            }
        }
        for s in model
            .signature_defs
            .iter_mut()
            .filter(|s| s.subgraph_index as usize == si)
        {
            for m in s.inputs.iter_mut().chain(s.outputs.iter_mut()) {
                m.tensor_index = map[m.tensor_index as usize] as u32;
            }
        }
    }
    removed_tensors
}

/// Buffers no tensor or metadata entry refers to; 0 stays the empty sentinel.
fn prune_buffers(model: &mut Model) -> usize {
    let mut used = vec![false; model.buffers.len()];
    if let Some(u) = used.first_mut() {
        *u = true;
    }
    for t in model.subgraphs.iter().flat_map(|s| &s.tensors) {
        if let Some(u) = used.get_mut(t.buffer as usize) {
            *u = true;
        }
    }
    for m in &model.metadata {
        if let Some(u) = used.get_mut(m.buffer as usize) {
            *u = true;
        }
    }
    for &b in model.metadata_buffer.iter().flatten() {
        if let Some(u) = usize::try_from(b).ok().and_then(|b| used.get_mut(b)) {
            *u = true;
        }
    }
    let before = model.buffers.len();
    let map: Vec<u32> = compact(&mut model.buffers, &used)
        .into_iter()
        .map(|m| m.unwrap_or(0) as u32)
        .collect();
    let removed_buffers = before - model.buffers.len();
    for t in model
        .subgraphs
        .iter_mut()
        .flat_map(|s| s.tensors.iter_mut())
    {
        t.buffer = map.get(t.buffer as usize).copied().unwrap_or(0);
    }
    for m in &mut model.metadata {
        m.buffer = map[m.buffer as usize];
    }
    for b in model.metadata_buffer.iter_mut().flatten() {
        if let Some(&n) = usize::try_from(*b).ok().and_then(|i| map.get(i)) {
            *b = n as i32;
        }
    }
    removed_buffers
}

/// Operator codes no operator uses.
fn prune_operator_codes(model: &mut Model) {
    let mut used = vec![false; model.operator_codes.len()];
    for op in model.subgraphs.iter().flat_map(|s| &s.operators) {
        used[op.opcode_index as usize] = true;
    }
    if !used.iter().all(|&u| u) {
        let map = compact(&mut model.operator_codes, &used);
        for op in model
            .subgraphs
            .iter_mut()
            .flat_map(|s| s.operators.iter_mut())
        {
            op.opcode_index = map[op.opcode_index as usize].unwrap_or(0) as u32;
        }
    }
}

/// Keeps the items flagged in `used` (in order) and returns, for every old index, the
/// new one (`None` for removed items).
fn compact<T>(items: &mut Vec<T>, used: &[bool]) -> Vec<Option<usize>> {
    let mut next = 0;
    let map = used
        .iter()
        .map(|&u| {
            u.then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        used[i - 1]
    });
    map
}

/// Tensor indices inside quantization details.
fn detail_refs(d: Option<&fb::QuantizationDetails>) -> Vec<i32> {
    match d {
        Some(fb::QuantizationDetails::BlockwiseQuantization(b)) => vec![b.scales, b.zero_points],
        Some(fb::QuantizationDetails::MultiAxisQuantization(m)) => vec![m.scales, m.zero_points],
        _ => Vec::new(),
    }
}

fn remap_details(d: &mut fb::QuantizationDetails, map: &[i32]) {
    let fix = |t: &mut i32| {
        if *t >= 0 {
            *t = map.get(*t as usize).copied().unwrap_or(-1);
        }
    };
    match d {
        fb::QuantizationDetails::BlockwiseQuantization(b) => {
            fix(&mut b.scales);
            fix(&mut b.zero_points);
        }
        fb::QuantizationDetails::MultiAxisQuantization(m) => {
            fix(&mut m.scales);
            fix(&mut m.zero_points);
        }
        _ => {}
    }
}
