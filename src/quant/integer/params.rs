//! Step 2: parameters of every activation read or written by a quantized operator.
//! Activations get parameters from their ranges; operators whose kernel needs equal
//! input and output parameters join their tensors into one same-scale group
//! (union-find) whose range is the union of the members' ranges; a fixed output
//! (LOGISTIC, SOFTMAX...) joins a group only if its parameters hold the group's values,
//! and then imposes them; otherwise it is requantized on its edge into the group
//! (`Constraints::join_shared` says why, from LiteRT's and TF's sources). Trained
//! (QAT) parameters win over ranges, fixed outputs over both.
//!
//! With mixed widths (`widths.rs`), an operator that reads an activation of another
//! width than its own reads a requantized copy: the copy is a node of its own in the
//! union-find (a "view" of the tensor at the operator's width, with the tensor's range),
//! so it joins same-scale groups like any activation and its parameters become the
//! requantize edge's target.

use std::collections::{BTreeMap, HashMap};

use crate::calib::Ranges;
use crate::error::{Error, Result};
use crate::ir::{Model, Operator, QuantParams};
use crate::rules::{Output, Role, Rule};

use super::super::report::Fate;
use super::super::scheme::{Width, activation_params, represented_range};
use super::plan::{Ctx, GroupRanges, Groups, Params, data_range, shared_anchor_input};
use super::{IntegerOptions, sentinels};

/// An activation input of a shared-parameter operator: operator `op` reads tensor `t`
/// at input `pos`, and `t` should join the group of `anchor` (the operator's output,
/// or for tied inputs its first activation input, read at `anchor_pos`).
#[derive(Clone, Copy)]
struct SharedInput {
    op: usize,
    pos: usize,
    t: usize,
    anchor: usize,
    anchor_pos: Option<usize>,
}

/// An input edge requantized instead of joined: `(operator, input position)` takes the
/// parameters of tensor `like`'s group.
struct Requant {
    op: usize,
    pos: usize,
    like: usize,
}

/// The same-scale constraints of one subgraph's quantized operators. Nodes are the
/// subgraph's tensors, then one view per input edge whose width differs from its
/// operator's.
struct Constraints {
    groups: Groups,
    /// The tensor count of the subgraph (nodes past it are views).
    n: usize,
    /// `(operator, input position)` → its view node.
    views: HashMap<(usize, usize), usize>,
    /// Per view (node − `n`): the tensor it copies and the edge.
    view_of: Vec<(usize, usize, usize)>,
    /// Tensors needing an integer version (non-constant activations).
    needed: Vec<bool>,
    /// Fixed parameters imposed by an operator's output: (scale, zp).
    fixed: Vec<Option<(f32, i64)>>,
    shared_inputs: Vec<SharedInput>,
    /// Fixed parameters per group root.
    group_fixed: HashMap<usize, (f32, i64)>,
}

/// Whether fixed parameters `(scale, zero point)` hold the values `[lo, hi]`, to
/// within one step beyond either end (a fixed output's own float range may end a step
/// past what its parameters represent, e.g. SOFTMAX's 1.0 on `[0, 255/256]`).
fn covers((s, z): (f32, i64), (lo, hi): (f32, f32), width: Width) -> bool {
    let (rlo, rhi) = represented_range(&QuantParams::per_tensor(s, z), width);
    lo >= rlo - s && hi <= rhi + s
}

/// Joins the groups of `a` and `b`, their ranges too.
fn merge(groups: &mut Groups, group_range: &mut GroupRanges, a: usize, b: usize) {
    let (ra, rb) = (groups.find(a), groups.find(b));
    if ra == rb {
        return;
    }
    let ranges = (group_range.remove(&ra), group_range.remove(&rb));
    groups.union(ra, rb);
    let merged = match ranges {
        (Some(x), Some(y)) => Some((x.0.min(y.0), x.1.max(y.1))),
        (x, y) => x.or(y),
    };
    if let Some(m) = merged {
        group_range.insert(groups.find(ra), m);
    }
}

/// Chooses parameters for every activation read or written by a quantized operator.
pub(super) fn plan_params(
    model: &Model,
    ranges: &Ranges,
    fates: &[Vec<Fate>],
    widths: &super::widths::Widths,
    opts: &IntegerOptions,
) -> Result<Params> {
    let mut p = Params::default();
    for si in 0..model.subgraphs.len() {
        let ctx = Ctx {
            model,
            si,
            fates: &fates[si],
            ranges,
            width: opts.width,
            widths,
        };
        let mut c = Constraints::collect(&ctx)?;
        let (mut group_range, requant_edges) = c.join_shared(&ctx);
        sentinels::headroom(&ctx, &mut c.groups, &mut group_range, &mut p.const_range);
        let views = c.assign(&ctx, opts, &group_range, &mut p)?;
        // Views first: an edge both viewed and requantized into a fixed group takes
        // the group's parameters (one QUANTIZE does both).
        for (k, &(_, op, pos)) in c.view_of.iter().enumerate() {
            p.requant.insert((si, op, pos), views[k].clone());
            p.requant_width.insert((si, op, pos), ctx.op_width(op));
        }
        for r in requant_edges {
            let target = match r.like.checked_sub(c.n) {
                Some(k) => views[k].clone(),
                None => p.activations[&(si, r.like)].clone(),
            };
            p.requant.insert((si, r.op, r.pos), target);
            let w = c.node_width(&ctx, r.like);
            if w != ctx.width {
                p.requant_width.insert((si, r.op, r.pos), w);
            } else {
                p.requant_width.remove(&(si, r.op, r.pos));
            }
        }
    }
    p.widths = widths.clone();
    Ok(p)
}

impl Constraints {
    fn collect(ctx: &Ctx) -> Result<Self> {
        let n = ctx.model.subgraphs[ctx.si].tensors.len();
        // Views: activation inputs of another width than their operator's.
        let mut views = HashMap::new();
        let mut view_of = Vec::new();
        if !ctx.widths.tensors.is_empty() || !ctx.widths.ops.is_empty() {
            for (oi, op, rule) in ctx.quantized_ops() {
                for (pos, t) in activation_inputs(ctx, op, rule) {
                    if ctx.tensor_width(t) != ctx.op_width(oi) {
                        views.insert((oi, pos), n + view_of.len());
                        view_of.push((t, oi, pos));
                    }
                }
            }
        }
        let total = n + view_of.len();
        let mut c = Constraints {
            groups: Groups::new(total),
            n,
            views,
            view_of,
            needed: vec![false; total],
            fixed: vec![None; total],
            shared_inputs: Vec::new(),
            group_fixed: HashMap::new(),
        };
        for (oi, op, rule) in ctx.quantized_ops() {
            c.add_op(ctx, oi, op, rule)?;
        }
        Ok(c)
    }

    /// The tensor node `x` stands for (itself, or the tensor a view copies).
    fn tensor_of(&self, x: usize) -> usize {
        x.checked_sub(self.n).map_or(x, |k| self.view_of[k].0)
    }

    /// The width of node `x`: its tensor's, or a view's operator's.
    fn node_width(&self, ctx: &Ctx, x: usize) -> Width {
        match x.checked_sub(self.n) {
            Some(k) => ctx.op_width(self.view_of[k].1),
            None => ctx.tensor_width(x),
        }
    }

    /// The constraints one quantized operator adds.
    fn add_op(&mut self, ctx: &Ctx, oi: usize, op: &Operator, rule: &Rule) -> Result<()> {
        let acts: Vec<(usize, usize)> = activation_inputs(ctx, op, rule)
            .map(|(pos, t)| (pos, self.views.get(&(oi, pos)).copied().unwrap_or(t)))
            .collect();
        for &(_, t) in &acts {
            self.needed[t] = true;
        }
        let outs: Vec<usize> = op
            .outputs
            .iter()
            .filter_map(|&t| usize::try_from(t).ok())
            .collect();
        if rule.output != Output::NonReal {
            for &t in &outs {
                self.needed[t] = true;
            }
        }
        match rule.output {
            Output::Fixed { int8, int16 } => {
                // By the operator's width, and for an int8 operator's int16 output
                // (`widths.rs`) the parameters its int8 kernel writes int16 with.
                let missing =
                    || Error::Internal(format!("{:?} has no int16 fixed output", rule.op));
                for &t in &outs {
                    let f = match (ctx.op_width(oi), ctx.tensor_width(t)) {
                        (Width::Int8, Width::Int8) => int8,
                        (Width::Int8, Width::Int16x8) => rule.int16_output.ok_or_else(missing)?,
                        (Width::Int16x8, _) => int16.ok_or_else(missing)?,
                    };
                    self.fixed[t] = Some(f);
                }
            }
            Output::Shared => {
                let anchor = outs.first().copied().or(acts.first().map(|a| a.1));
                if let Some(anchor) = anchor {
                    for &t in &outs {
                        self.groups.union(anchor, t);
                    }
                    let anchor_pos = acts.iter().find(|a| a.1 == anchor).map(|a| a.0);
                    for &(pos, t) in &acts {
                        self.shared_inputs.push(SharedInput {
                            op: oi,
                            pos,
                            t,
                            anchor,
                            anchor_pos,
                        });
                    }
                }
            }
            _ => {}
        }
        // Comparisons and ARG_MAX: inputs share one set of parameters.
        if rule.tied_inputs
            && let Some(&(first_pos, first)) = acts.first()
        {
            for &(pos, t) in &acts[1..] {
                self.shared_inputs.push(SharedInput {
                    op: oi,
                    pos,
                    t,
                    anchor: first,
                    anchor_pos: Some(first_pos),
                });
            }
        }
        Ok(())
    }

    /// Joins shared inputs into their operator's group and returns the group ranges
    /// and the edges requantized instead of joined.
    ///
    /// Tensors without fixed parameters join freely; the group's range is the union
    /// of its members'. A tensor with fixed parameters (LOGISTIC's output...) is joined
    /// only into a group whose parameters become its own, and a group takes fixed
    /// parameters only when they cover all its values ([`covers`]): the first such
    /// candidate in tensor order, else parameters from its range. Every fixed member
    /// not joined reaches the group through a requantize edge (QUANTIZE int8→int8).
    ///
    /// Why: LiteRT's int8 CONCATENATION (like the other same-scale kernels) rejects
    /// inputs whose scale or zero point differ from the output's
    /// (`tensorflow/lite/kernels/concatenation.cc`, Prepare), and TF's quantizer
    /// (`tools/optimize/quantize_model.cc`, `ApplyConstraints`) keeps the output's
    /// parameters from the output's own range and inserts a QUANTIZE before every input
    /// whose parameters differ. A group that took a fixed member's parameters
    /// regardless of the other members clipped them: CONCATENATION(LOGISTIC(x),
    /// TANH(x)) on LOGISTIC's `[0, 1)` turned every negative tanh into 0.
    fn join_shared(&mut self, ctx: &Ctx) -> (GroupRanges, Vec<Requant>) {
        let mut requant = Vec::new();
        let mut pending = Vec::new();
        for &e in &self.shared_inputs {
            match (self.fixed[e.t], self.fixed[e.anchor]) {
                (None, None) => self.groups.union(e.t, e.anchor),
                (Some(a), Some(b)) if a == b => self.groups.union(e.t, e.anchor),
                (Some(_), Some(_)) => requant.push(Requant {
                    op: e.op,
                    pos: e.pos,
                    like: e.anchor,
                }),
                _ => pending.push(e),
            }
        }
        for t in 0..self.fixed.len() {
            if let Some(f) = self.fixed[t] {
                let r = self.groups.find(t);
                self.group_fixed.insert(r, f);
            }
        }
        let mut group_range = self.group_ranges(ctx);
        // Per free group (root): its fixed candidates, as (fixed tensor, the edge that
        // would requantize it, the group's tensor on that edge).
        let mut candidates: BTreeMap<usize, Vec<(usize, Requant)>> = BTreeMap::new();
        for e in pending {
            let (f, free, r) = if self.fixed[e.t].is_some() {
                let r = Requant {
                    op: e.op,
                    pos: e.pos,
                    like: e.anchor,
                };
                (e.t, e.anchor, r)
            } else {
                let Some(pos) = e.anchor_pos else { continue };
                let r = Requant {
                    op: e.op,
                    pos,
                    like: e.t,
                };
                (e.anchor, e.t, r)
            };
            let g = self.groups.find(free);
            candidates.entry(g).or_default().push((f, r));
        }
        for (g, mut cands) in candidates {
            cands.sort_by_key(|c| c.0);
            let mut values = group_range.get(&g).copied();
            for &(f, _) in &cands {
                let v = self.fixed_values(ctx, f);
                values = Some(values.map_or(v, |u| (u.0.min(v.0), u.1.max(v.1))));
            }
            let chosen = cands.iter().find_map(|&(f, _)| {
                let p = self.fixed[f]?;
                values
                    .is_none_or(|v| covers(p, v, self.node_width(ctx, f)))
                    .then_some(p)
            });
            match chosen {
                Some(p) => {
                    for (f, r) in cands {
                        if self.fixed[f] == Some(p) {
                            merge(&mut self.groups, &mut group_range, g, f);
                            let root = self.groups.find(g);
                            self.group_fixed.insert(root, p);
                        } else {
                            requant.push(r);
                        }
                    }
                }
                None => {
                    if let Some(v) = values {
                        group_range.insert(g, v);
                    }
                    requant.extend(cands.into_iter().map(|c| c.1));
                }
            }
        }
        (group_range, requant)
    }

    /// The values a tensor with fixed parameters carries: its calibrated range
    /// within the range its parameters represent.
    fn fixed_values(&self, ctx: &Ctx, t: usize) -> (f32, f32) {
        let Some((s, z)) = self.fixed[t] else {
            return (0.0, 0.0);
        };
        let (lo, hi) = represented_range(&QuantParams::per_tensor(s, z), self.node_width(ctx, t));
        match ctx.ranges.get(ctx.si, self.tensor_of(t)) {
            Some(r) => (r.min.clamp(lo, hi), r.max.clamp(lo, hi)),
            None => (lo, hi),
        }
    }

    /// Each group's range: the union of its members' calibrated ranges, and of the
    /// constants shared operators read.
    fn group_ranges(&mut self, ctx: &Ctx) -> GroupRanges {
        let mut group_range = GroupRanges::new();
        for t in 0..self.needed.len() {
            if !self.needed[t] {
                continue;
            }
            if let Some(r) = ctx.ranges.get(ctx.si, self.tensor_of(t)) {
                let g = self.groups.find(t);
                let e = group_range.entry(g).or_insert((r.min, r.max));
                e.0 = e.0.min(r.min);
                e.1 = e.1.max(r.max);
            }
        }
        for (oi, op, rule) in ctx.quantized_ops() {
            self.widen_for_constants(ctx, oi, op, rule, &mut group_range);
        }
        group_range
    }

    /// Constants read like activations by a shared operator widen its group's range.
    fn widen_for_constants(
        &mut self,
        ctx: &Ctx,
        oi: usize,
        op: &Operator,
        rule: &Rule,
        group_range: &mut GroupRanges,
    ) {
        let (model, sg) = (ctx.model, &ctx.model.subgraphs[ctx.si]);
        let anchor = match rule.output {
            Output::Shared => op.outputs.iter().find_map(|&t| usize::try_from(t).ok()),
            _ if rule.tied_inputs => shared_anchor_input(model, ctx.si, &op.inputs, rule)
                .map(|t| self.view_or(oi, &op.inputs, t)),
            _ => return,
        };
        for (pos, &t) in op.inputs.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            if rule.integer_role(pos) != Role::Activation || !ctx.is_constant(t) {
                continue;
            }
            if let Some(a) = anchor {
                let (lo, hi) = data_range(model, &sg.tensors[t]);
                let e = group_range.entry(self.groups.find(a)).or_insert((lo, hi));
                e.0 = e.0.min(lo);
                e.1 = e.1.max(hi);
            }
        }
    }

    /// The node operator `oi` reads for tensor `t` (its first input position holding
    /// it): the view where there is one, else `t`.
    fn view_or(&self, oi: usize, inputs: &[i32], t: usize) -> usize {
        inputs
            .iter()
            .position(|&x| x == t as i32)
            .and_then(|pos| self.views.get(&(oi, pos)).copied())
            .unwrap_or(t)
    }

    /// Parameters of every needed tensor: its group's fixed parameters, else its
    /// group's trained ones (the first member's in tensor order), else from its
    /// group's range. Returns the views' parameters (in view order).
    fn assign(
        &mut self,
        ctx: &Ctx,
        opts: &IntegerOptions,
        group_range: &GroupRanges,
        p: &mut Params,
    ) -> Result<Vec<QuantParams>> {
        let (si, n) = (ctx.si, self.needed.len());
        let mut views = vec![QuantParams::per_tensor(1.0, 0); self.view_of.len()];
        let mut group_override: HashMap<usize, QuantParams> = HashMap::new();
        for t in 0..self.n {
            if let Some(q) = opts.overrides.activations.get(&(si, t)) {
                group_override
                    .entry(self.groups.find(t))
                    .or_insert_with(|| q.clone());
            }
        }
        for t in 0..n {
            if !self.needed[t] {
                continue;
            }
            let g = self.groups.find(t);
            let params = if let Some(&(s, z)) = self.group_fixed.get(&g) {
                QuantParams::per_tensor(s, z)
            } else if let Some(q) = group_override
                .get(&g)
                // Trained parameters are int8's: a 16x8 group plans its own.
                .filter(|_| self.node_width(ctx, t) == ctx.width)
            {
                q.clone()
            } else if let Some(&(lo, hi)) = group_range.get(&g) {
                if t < self.n {
                    p.range_of.insert((si, t), (lo, hi));
                }
                let w = self.node_width(ctx, t);
                if w == Width::Int16x8 && ctx.width == Width::Int8 {
                    // 16x8 in an int8 run: headroom for unseen data (`widths.rs`).
                    let h = super::widths::INT16_HEADROOM;
                    activation_params(lo * h, hi * h, w)
                } else {
                    activation_params(lo, hi, w)
                }
            } else {
                return Err(Error::Internal(format!(
                    "subgraph {si}, tensor {} {:?}: no range for a quantized activation",
                    self.tensor_of(t),
                    ctx.model.subgraphs[si].tensors[self.tensor_of(t)].name
                )));
            };
            match t.checked_sub(self.n) {
                Some(k) => views[k] = params,
                None => {
                    p.activations.insert((si, t), params);
                }
            }
        }
        Ok(views)
    }
}

/// The real-valued, non-constant activation inputs of a quantized operator as
/// `(position, tensor)` (LSTM state operands excluded: `recurrent.rs` plans them).
fn activation_inputs<'a>(
    ctx: &'a Ctx,
    op: &'a Operator,
    rule: &'a Rule,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    op.inputs
        .iter()
        .enumerate()
        .filter_map(|(pos, &t)| Some((pos, usize::try_from(t).ok()?)))
        .filter(move |&(pos, t)| {
            let real_act = matches!(rule.integer_role(pos), Role::Activation | Role::Coefficient);
            real_act && !ctx.is_constant(t)
        })
        // Recurrent hook: LSTM state operands get their parameters in recurrent.rs.
        .filter(move |&(pos, _)| !super::recurrent::own_operand(rule.op, pos))
}
