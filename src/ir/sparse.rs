//! Sparse constant tensors (`SparsityParameters`) back to dense data.
//!
//! A sparse tensor stores its non-zero values in *traversal order*: `traversal_order`
//! lists the dense dimensions in storage order, followed by block dimensions (one per
//! entry of `block_map`, which names the dense dimension each block splits). Every
//! traversal level has metadata: DENSE levels have a size, SPARSE_CSR levels have
//! segments (where each parent's children start) and indices (which coordinates are
//! present). This walks the levels depth first exactly as the runtime's DENSIFY does and
//! scatters values into a zero-filled dense buffer. Every index is checked: a hostile
//! file yields an error, never an out-of-bounds write.

use crate::error::{Error, Loc, Result};
use crate::fb;

/// Dense bytes of a sparse tensor of the given dense `shape` and element size.
pub fn densify(
    shape: &[i32],
    elem_size: usize,
    sparsity: &fb::SparsityParameters,
    values: &[u8],
    at: &Loc,
) -> Result<Vec<u8>> {
    let bad = |what: String| Error::malformed(at.clone(), format!("sparsity: {what}"));
    let rank = shape.len();
    let order: Vec<usize> = sparsity
        .traversal_order
        .iter()
        .flatten()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative traversal index {d}"))))
        .collect::<Result<_>>()?;
    let block_map: Vec<usize> = sparsity
        .block_map
        .iter()
        .flatten()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative block_map entry {d}"))))
        .collect::<Result<_>>()?;
    let meta = sparsity.dim_metadata.as_deref().unwrap_or(&[]);
    if order.len() != rank + block_map.len() || meta.len() != order.len() {
        return Err(bad(format!(
            "traversal order of {} levels, {} block dimensions and {} metadata entries do not fit a rank-{rank} tensor",
            order.len(),
            block_map.len(),
            meta.len()
        )));
    }
    if let Some(&d) = order.iter().find(|&&d| d >= order.len()) {
        return Err(bad(format!("traversal index {d} out of range")));
    }
    if let Some(&d) = block_map.iter().find(|&&d| d >= rank) {
        return Err(bad(format!("block_map entry {d} out of range")));
    }
    // Block sizes as the runtime derives them: the dense size of the metadata entry at
    // the block dimension's id.
    let mut block_size = Vec::with_capacity(block_map.len());
    for b in 0..block_map.len() {
        let size = meta[order[rank + b]].dense_size;
        if size <= 0 {
            return Err(bad(format!("block dimension {b} has size {size}")));
        }
        block_size.push(size as usize);
    }
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    let total: usize = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("dense size overflows".into()))?;
    let bytes = total
        .checked_mul(elem_size)
        .ok_or_else(|| bad("dense size overflows".into()))?;

    let levels: Vec<Level> = meta
        .iter()
        .enumerate()
        .map(|(l, m)| match m.format {
            fb::DimensionType::Dense => {
                let size = usize::try_from(m.dense_size)
                    .map_err(|_| bad(format!("level {l}: dense size {}", m.dense_size)))?;
                Ok(Level::Dense(size))
            }
            fb::DimensionType::SparseCsr => Ok(Level::Sparse {
                segments: index_vector(m.array_segments.as_ref()),
                indices: index_vector(m.array_indices.as_ref()),
            }),
        })
        .collect::<Result<_>>()?;

    // Dense levels iterate their full size: their product may not exceed the number of
    // dense positions (a hostile size would otherwise loop for ages).
    let dense_product = levels.iter().try_fold(1usize, |a, l| match l {
        Level::Dense(n) => a.checked_mul(*n),
        Level::Sparse { .. } => Some(a),
    });
    if dense_product.is_none_or(|p| p > total.max(1)) {
        return Err(bad("dense level sizes exceed the tensor's size".into()));
    }
    let mut w = Walker {
        rank,
        order: &order,
        block_map: &block_map,
        block_size: &block_size,
        dims: &dims,
        levels: &levels,
        elem_size,
        values,
        next: 0,
        out: vec![0u8; bytes],
        coords: vec![0; order.len()],
    };
    w.walk(0, 0).map_err(bad)?;
    Ok(w.out)
}

enum Level {
    Dense(usize),
    Sparse {
        segments: Vec<i64>,
        indices: Vec<i64>,
    },
}

fn index_vector(v: Option<&fb::SparseIndexVector>) -> Vec<i64> {
    match v {
        Some(fb::SparseIndexVector::Int32Vector(v)) => {
            v.values.iter().flatten().map(|&x| x as i64).collect()
        }
        Some(fb::SparseIndexVector::Uint16Vector(v)) => {
            v.values.iter().flatten().map(|&x| x as i64).collect()
        }
        Some(fb::SparseIndexVector::Uint8Vector(v)) => {
            v.values.iter().flatten().map(|&x| x as i64).collect()
        }
        None => Vec::new(),
    }
}

struct Walker<'a> {
    rank: usize,
    order: &'a [usize],
    block_map: &'a [usize],
    block_size: &'a [usize],
    dims: &'a [usize],
    levels: &'a [Level],
    elem_size: usize,
    values: &'a [u8],
    /// Index of the next stored value.
    next: usize,
    out: Vec<u8>,
    coords: Vec<usize>,
}

impl Walker<'_> {
    fn walk(&mut self, level: usize, parent: usize) -> Result<(), String> {
        if level == self.levels.len() {
            return self.emit();
        }
        match &self.levels[level] {
            Level::Dense(size) => {
                for i in 0..*size {
                    self.coords[level] = i;
                    let child = parent
                        .checked_mul(*size)
                        .and_then(|p| p.checked_add(i))
                        .ok_or("index overflow")?;
                    self.walk(level + 1, child)?;
                }
            }
            Level::Sparse { segments, indices } => {
                let (Some(&lo), Some(&hi)) = (segments.get(parent), segments.get(parent + 1))
                else {
                    return Err(format!("level {level}: no segment for position {parent}"));
                };
                if lo < 0 || hi < lo || hi as usize > indices.len() {
                    return Err(format!("level {level}: bad segment {lo}..{hi}"));
                }
                for i in lo as usize..hi as usize {
                    let idx = indices[i];
                    if idx < 0 {
                        return Err(format!("level {level}: negative index {idx}"));
                    }
                    self.coords[level] = idx as usize;
                    self.walk(level + 1, i)?;
                }
            }
        }
        Ok(())
    }

    /// Places the next stored value at the dense position of the current coordinates.
    fn emit(&mut self) -> Result<(), String> {
        let mut dense = vec![0usize; self.rank];
        for (l, &dim) in self.order[..self.rank].iter().enumerate() {
            dense[dim] = self.coords[l];
        }
        for l in self.rank..self.order.len() {
            let b = self.order[l] - self.rank;
            let dim = *self
                .block_map
                .get(b)
                .ok_or("block level without a block_map entry")?;
            dense[dim] = dense[dim] * self.block_size[b] + self.coords[l];
        }
        let mut flat = 0usize;
        for (d, (&c, &n)) in dense.iter().zip(self.dims).enumerate() {
            if c >= n {
                return Err(format!(
                    "coordinate {c} of dimension {d} exceeds its size {n}"
                ));
            }
            flat = flat * n + c;
        }
        let src = self.next * self.elem_size;
        let value = self
            .values
            .get(src..src + self.elem_size)
            .ok_or("fewer stored values than the metadata describes")?;
        self.out[flat * self.elem_size..(flat + 1) * self.elem_size].copy_from_slice(value);
        self.next += 1;
        Ok(())
    }
}
