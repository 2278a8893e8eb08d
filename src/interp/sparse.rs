//! Densification of sparse constant tensors (`SparsityParameters`: traversal order,
//! block map, DENSE / SPARSE_CSR dimension metadata), as TFLite's format converter
//! does for DENSIFY and for FULLY_CONNECTED reading sparse weights directly. Every
//! index of the (untrusted) metadata is range-checked.

use crate::fb::{self, DimensionType, SparseIndexVector};

fn index_vec(v: &Option<SparseIndexVector>) -> Vec<usize> {
    match v {
        Some(SparseIndexVector::Int32Vector(x)) => x
            .values
            .iter()
            .flatten()
            .map(|&i| i.max(0) as usize)
            .collect(),
        Some(SparseIndexVector::Uint16Vector(x)) => {
            x.values.iter().flatten().map(|&i| i as usize).collect()
        }
        Some(SparseIndexVector::Uint8Vector(x)) => {
            x.values.iter().flatten().map(|&i| i as usize).collect()
        }
        None => Vec::new(),
    }
}

struct Level {
    dense: Option<usize>,
    segments: Vec<usize>,
    indices: Vec<usize>,
}

/// The sparsity metadata, checked against the rank: traversal order, block map and one
/// level per traversed dimension.
struct Layout {
    order: Vec<usize>,
    block_map: Vec<usize>,
    levels: Vec<Level>,
    /// Block sizes: the dense sizes of the block levels (levels `rank..`).
    block_size: Vec<usize>,
}

impl Layout {
    fn new(sp: &fb::SparsityParameters, rank: usize) -> Result<Layout, String> {
        let order: Vec<usize> = sp
            .traversal_order
            .iter()
            .flatten()
            .map(|&i| usize::try_from(i).map_err(|_| format!("negative traversal index {i}")))
            .collect::<Result<_, _>>()?;
        let block_map: Vec<usize> = sp
            .block_map
            .iter()
            .flatten()
            .map(|&i| usize::try_from(i).map_err(|_| format!("negative block_map entry {i}")))
            .collect::<Result<_, _>>()?;
        let meta = sp.dim_metadata.as_deref().unwrap_or(&[]);
        let levels_n = order.len();
        if levels_n != rank + block_map.len() || meta.len() != levels_n {
            return Err(format!(
                "traversal order of {levels_n}, {} block dims and {} dimension metadata do not fit rank {rank}",
                block_map.len(),
                meta.len()
            ));
        }
        let mut seen = vec![false; levels_n];
        for &o in &order {
            if o >= levels_n || std::mem::replace(&mut seen[o], true) {
                return Err(format!("traversal order {order:?} is not a permutation"));
            }
        }
        if block_map.iter().any(|&b| b >= rank) {
            return Err(format!(
                "block_map {block_map:?} out of range for rank {rank}"
            ));
        }
        let levels: Vec<Level> = meta
            .iter()
            .map(|m| Level {
                dense: (m.format == DimensionType::Dense).then_some(m.dense_size.max(0) as usize),
                segments: index_vec(&m.array_segments),
                indices: index_vec(&m.array_indices),
            })
            .collect();
        let block_size: Vec<usize> = (0..block_map.len())
            .map(|i| levels[rank + i].dense.unwrap_or(0))
            .collect();
        Ok(Layout {
            order,
            block_map,
            levels,
            block_size,
        })
    }

    /// The range of children of the node `prev` of `level`.
    fn children(&self, level: usize, prev: usize) -> Result<(usize, usize), String> {
        let l = &self.levels[level];
        match l.dense {
            Some(n) => Ok((0, n)),
            None => {
                let (Some(&a), Some(&b)) = (l.segments.get(prev), l.segments.get(prev + 1)) else {
                    return Err(format!("array_segments of level {level} too short"));
                };
                if a > b || b > l.indices.len() {
                    return Err(format!(
                        "array_segments of level {level} out of order or range"
                    ));
                }
                Ok((a, b))
            }
        }
    }

    /// The coordinates in the dense tensor of `shape` of a leaf at traversal
    /// coordinates `coord`.
    fn dense_coord(&self, coord: &[usize], rank: usize) -> Result<Vec<usize>, String> {
        let mut orig = vec![0usize; rank];
        for (i, &o) in self.order.iter().enumerate().take(rank) {
            if o >= rank {
                return Err("block dimension traversed before an original one".into());
            }
            orig[o] = coord[i];
        }
        for (i, &o) in self.order.iter().enumerate().skip(rank) {
            let b = o
                .checked_sub(rank)
                .ok_or("original dimension after a block one")?;
            let d = self.block_map[b];
            orig[d] = orig[d] * self.block_size[b] + coord[i];
        }
        Ok(orig)
    }
}

/// Positions in the dense tensor of `shape` of each stored value, in storage order.
/// Errors describe the first inconsistency of the metadata.
pub(crate) fn dense_positions(
    sp: &fb::SparsityParameters,
    shape: &[usize],
    stored: usize,
) -> Result<Vec<usize>, String> {
    let rank = shape.len();
    let layout = Layout::new(sp, rank)?;
    let levels_n = layout.levels.len();
    if levels_n == 0 {
        return Err("no dimension metadata (a scalar cannot be sparse)".into());
    }
    let strides = super::kernels::strides(shape);
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(stored);
    let mut coord = vec![0usize; levels_n];
    // Iterative depth-first walk: a stack of (level, prev_idx, next child, end).
    let mut stack: Vec<(usize, usize, usize, usize)> = Vec::new();
    let (start, end) = layout.children(0, 0)?;
    stack.push((0, 0, start, end));
    while let Some(top) = stack.last_mut() {
        let (level, prev, next, end) = *top;
        if next >= end {
            stack.pop();
            continue;
        }
        top.2 += 1;
        let l = &layout.levels[level];
        let (c, child_prev) = match l.dense {
            Some(n) => (next, prev * n + next),
            None => (l.indices[next], next),
        };
        coord[level] = c;
        if level + 1 < levels_n {
            let (start, end) = layout.children(level + 1, child_prev)?;
            stack.push((level + 1, child_prev, start, end));
            continue;
        }
        // A leaf: map traversal coordinates back to the dense index.
        let orig = layout.dense_coord(&coord, rank)?;
        let mut flat = 0;
        for d in 0..rank {
            if orig[d] >= shape[d] {
                return Err(format!(
                    "sparse coordinate {orig:?} outside shape {shape:?}"
                ));
            }
            flat += orig[d] * strides[d];
        }
        if out.len() >= stored || flat >= total {
            return Err(format!(
                "metadata addresses more than the {stored} stored values"
            ));
        }
        out.push(flat);
    }
    if out.len() != stored {
        return Err(format!(
            "metadata addresses {} values but the buffer stores {stored}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Used to index the first level of an empty list and panic.
    #[test]
    fn a_sparse_scalar_is_an_error_not_a_panic() {
        let sp = fb::SparsityParameters::default();
        let err = dense_positions(&sp, &[], 1).unwrap_err();
        assert!(err.contains("no dimension metadata"), "{err}");
    }
}
