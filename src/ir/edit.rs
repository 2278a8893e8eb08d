//! Small graph edits and queries shared by the passes: adding tensors, buffers and
//! operator codes, removing operators, finding producers and consumers, subgraph
//! references.

use super::{Buffer, BuiltinOperator, Data, Model, Operator, OperatorCode, Subgraph, Tensor};
use crate::fb;

impl Model {
    /// Index of an operator code for `builtin` at `version`, appended if missing.
    pub fn ensure_opcode(&mut self, builtin: BuiltinOperator, version: i32) -> u32 {
        let want = OperatorCode {
            builtin,
            custom_code: None,
            version,
        };
        if let Some(i) = self.operator_codes.iter().position(|c| *c == want) {
            return i as u32;
        }
        self.operator_codes.push(want);
        (self.operator_codes.len() - 1) as u32
    }

    /// Appends a buffer holding `data` and returns its index. Buffer 0 is kept as the
    /// empty buffer: it is created first if the model has none.
    pub fn add_buffer(&mut self, data: impl Into<Data>) -> u32 {
        if self.buffers.is_empty() {
            self.buffers.push(Buffer::default());
        }
        self.buffers.push(Buffer::new(data));
        (self.buffers.len() - 1) as u32
    }
}

impl Subgraph {
    /// Removes the operators flagged in `remove`, keeping the order of the rest.
    pub fn remove_ops(&mut self, remove: &[bool]) {
        let mut i = 0;
        self.operators.retain(|_| {
            let keep = !remove[i];
            i += 1;
            keep
        });
    }

    /// Appends a tensor and returns its index.
    pub fn add_tensor(&mut self, tensor: Tensor) -> i32 {
        self.tensors.push(tensor);
        (self.tensors.len() - 1) as i32
    }

    /// For each tensor, the operator that produces it (if any).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.tensors.len()];
        for (i, op) in self.operators.iter().enumerate() {
            for &t in &op.outputs {
                if let Some(slot) = usize::try_from(t).ok().and_then(|t| p.get_mut(t)) {
                    *slot = Some(i);
                }
            }
        }
        p
    }

    /// For each tensor, the operators that read it, as `(operator, input position)`.
    pub fn consumers(&self) -> Vec<Vec<(usize, usize)>> {
        let mut c = vec![Vec::new(); self.tensors.len()];
        for (i, op) in self.operators.iter().enumerate() {
            for (pos, &t) in op.inputs.iter().enumerate() {
                if let Some(slot) = usize::try_from(t).ok().and_then(|t| c.get_mut(t)) {
                    slot.push((i, pos));
                }
            }
        }
        c
    }
}

impl Operator {
    /// Subgraphs this operator runs (control flow, calls, StableHLO regions), as
    /// `(option field, subgraph index)`.
    pub fn subgraph_refs(&self) -> Vec<(&'static str, i64)> {
        use fb::BuiltinOptions as B;
        use fb::BuiltinOptions2 as B2;
        let mut refs = Vec::new();
        match &self.builtin_options {
            Some(B::WhileOptions(o)) => {
                refs.push(("cond_subgraph_index", o.cond_subgraph_index as i64));
                refs.push(("body_subgraph_index", o.body_subgraph_index as i64));
            }
            Some(B::IfOptions(o)) => {
                refs.push(("then_subgraph_index", o.then_subgraph_index as i64));
                refs.push(("else_subgraph_index", o.else_subgraph_index as i64));
            }
            Some(B::CallOnceOptions(o)) => {
                refs.push(("init_subgraph_index", o.init_subgraph_index as i64))
            }
            Some(B::CallOptions(o)) => refs.push(("subgraph", o.subgraph as i64)),
            _ => {}
        }
        match &self.builtin_options_2 {
            Some(B2::StablehloWhileOptions(o)) => {
                refs.push(("cond_subgraph_index", o.cond_subgraph_index as i64));
                refs.push(("body_subgraph_index", o.body_subgraph_index as i64));
            }
            Some(B2::StablehloReduceOptions(o)) => {
                refs.push(("body_subgraph_index", o.body_subgraph_index as i64))
            }
            Some(B2::StablehloReduceWindowOptions(o)) => {
                refs.push(("body_subgraph_index", o.body_subgraph_index as i64))
            }
            Some(B2::StablehloSortOptions(o)) => refs.push((
                "comparator_subgraph_index",
                o.comparator_subgraph_index as i64,
            )),
            Some(B2::StablehloScatterOptions(o)) => refs.push((
                "update_computation_subgraph_index",
                o.update_computation_subgraph_index as i64,
            )),
            Some(B2::StablehloCaseOptions(o)) => {
                for &i in o.branch_subgraph_indices.iter().flatten() {
                    refs.push(("branch_subgraph_indices", i as i64));
                }
            }
            Some(B2::StableHloCompositeOptions(o)) => refs.push((
                "decomposition_subgraph_index",
                o.decomposition_subgraph_index as i64,
            )),
            _ => {}
        }
        refs
    }
}
