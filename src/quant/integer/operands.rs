//! Small helpers for the operators whose operands are quantized by their own module
//! (`recurrent.rs`: LSTM; `svdf.rs`: SVDF) instead of the generic passes: an operand's
//! tensor index, a new constant tensor beside the original, and its report entry.

use crate::fb::{self, TensorType};
use crate::ir::{Model, QuantParams, Tensor};

use super::TensorParams;
use crate::quant::report::Report;

/// Input `pos` of `op` as a tensor index (`None`: absent optional input).
pub(super) fn input(op: &crate::ir::Operator, pos: usize) -> Option<usize> {
    op.inputs.get(pos).and_then(|&t| usize::try_from(t).ok())
}

/// Where an operator that is being made integer (an LSTM, an SVDF) sits: its operand
/// lookups and its internal errors, which name it.
pub(super) struct OpSite {
    pub(super) si: usize,
    pub(super) oi: usize,
    /// What the operator is, for errors ("integer LSTM").
    pub(super) kind: &'static str,
}

impl OpSite {
    pub(super) fn internal(&self, what: &str) -> crate::error::Error {
        crate::error::Error::Internal(format!(
            "subgraph {}, operator {} ({}): {what}",
            self.si, self.oi, self.kind
        ))
    }

    pub(super) fn input(
        &self,
        model: &Model,
        pos: usize,
        what: &str,
    ) -> crate::error::Result<usize> {
        input(&model.subgraphs[self.si].operators[self.oi], pos).ok_or_else(|| self.internal(what))
    }

    pub(super) fn set_input(&self, model: &mut Model, pos: usize, t: usize) {
        model.subgraphs[self.si].operators[self.oi].inputs[pos] = t as i32;
    }
}

/// A new constant tensor shaped and named like `like`, holding `data` as `dtype`.
pub(super) fn new_const(
    model: &mut Model,
    si: usize,
    like: &Tensor,
    dtype: TensorType,
    data: Vec<u8>,
    qp: QuantParams,
) -> usize {
    let buffer = model.add_buffer(data);
    let mut nt = Tensor::new(like.name.clone(), dtype, like.shape.clone());
    nt.shape_signature = like.shape_signature.clone();
    nt.buffer = buffer;
    nt.quant = Some(qp);
    model.subgraphs[si].add_tensor(nt) as usize
}

/// Records quantized tensor `t` (a weight, bias, state or intermediate) in the report.
pub(super) fn record(
    report: &mut Report,
    si: usize,
    t: usize,
    tensor: &Tensor,
    kind: &str,
    range: Option<(f32, f32)>,
) {
    let qp = tensor.quant.clone().unwrap_or_default();
    report.tensors.push(TensorParams {
        subgraph: si,
        tensor: t,
        name: tensor.name.clone(),
        kind: kind.into(),
        dtype: fb::dtype_name(tensor.dtype).into(),
        range,
        scale: qp.scale,
        zero_point: qp.zero_point,
        axis: None,
    });
}
