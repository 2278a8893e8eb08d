//! Step 2: parameters of every activation read or written by a quantized operator.
//! Activations get parameters from their ranges; operators whose kernel needs equal
//! input and output parameters join their tensors into one same-scale group
//! (union-find) whose range is the union of the members' ranges; fixed outputs
//! (LOGISTIC, SOFTMAX...) impose theirs on the group; a shared input whose group
//! carries different fixed parameters is requantized on that edge instead. Trained
//! (QAT) parameters win over ranges, fixed outputs over both.

use std::collections::HashMap;

use crate::calib::Ranges;
use crate::error::{Error, Result};
use crate::ir::{Model, Operator, QuantParams};
use crate::rules::{Output, Role, Rule};

use super::super::report::Fate;
use super::super::scheme::{Width, activation_params};
use super::plan::{Ctx, GroupRanges, Groups, Params, data_range, shared_anchor_input};
use super::{IntegerOptions, sentinels};

/// An activation input of a shared-parameter operator: `(operator, input position,
/// tensor, anchor)`, where the anchor is the tensor whose group it should join.
type SharedInput = (usize, usize, usize, usize);

/// The same-scale constraints of one subgraph's quantized operators.
struct Constraints {
    groups: Groups,
    /// Tensors needing an integer version (non-constant activations).
    needed: Vec<bool>,
    /// Fixed parameters imposed by an operator's output: (scale, zp).
    fixed: Vec<Option<(f32, i64)>>,
    shared_inputs: Vec<SharedInput>,
    /// Fixed parameters per group root.
    group_fixed: HashMap<usize, (f32, i64)>,
}

/// Chooses parameters for every activation read or written by a quantized operator.
pub(super) fn plan_params(
    model: &Model,
    ranges: &Ranges,
    fates: &[Vec<Fate>],
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
        };
        let mut c = Constraints::collect(&ctx)?;
        let requant_edges = c.join_shared();
        let mut group_range = c.group_ranges(&ctx);
        sentinels::headroom(&ctx, &mut c.groups, &mut group_range, &mut p.const_range);
        c.assign(&ctx, opts, &group_range, &mut p)?;
        for (oi, pos, _, anchor) in requant_edges {
            let target = p.activations[&(si, anchor)].clone();
            p.requant.insert((si, oi, pos), target);
        }
    }
    Ok(p)
}

impl Constraints {
    fn collect(ctx: &Ctx) -> Result<Self> {
        let n = ctx.model.subgraphs[ctx.si].tensors.len();
        let mut c = Constraints {
            groups: Groups::new(n),
            needed: vec![false; n],
            fixed: vec![None; n],
            shared_inputs: Vec::new(),
            group_fixed: HashMap::new(),
        };
        for (oi, op, rule) in ctx.quantized_ops() {
            c.add_op(ctx, oi, op, rule)?;
        }
        Ok(c)
    }

    /// The constraints one quantized operator adds.
    fn add_op(&mut self, ctx: &Ctx, oi: usize, op: &Operator, rule: &Rule) -> Result<()> {
        let acts: Vec<(usize, usize)> = op
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(pos, &t)| Some((pos, usize::try_from(t).ok()?)))
            .filter(|&(pos, t)| {
                let real_act =
                    matches!(rule.integer_role(pos), Role::Activation | Role::Coefficient);
                real_act && !ctx.is_constant(t)
            })
            // Recurrent hook: LSTM state operands get their parameters in recurrent.rs.
            .filter(|&(pos, _)| !super::recurrent::own_operand(rule.op, pos))
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
                let f = match ctx.width {
                    Width::Int8 => int8,
                    Width::Int16x8 => int16.ok_or_else(|| {
                        Error::Internal(format!("{:?} has no int16 fixed output", rule.op))
                    })?,
                };
                for &t in &outs {
                    self.fixed[t] = Some(f);
                }
            }
            Output::Shared => {
                let anchor = outs.first().copied().or(acts.first().map(|a| a.1));
                if let Some(anchor) = anchor {
                    for &t in &outs {
                        self.groups.union(anchor, t);
                    }
                    for &(pos, t) in &acts {
                        self.shared_inputs.push((oi, pos, t, anchor));
                    }
                }
            }
            _ => {}
        }
        // Comparisons and ARG_MAX: inputs share one set of parameters.
        if rule.tied_inputs
            && let Some(&(_, first)) = acts.first()
        {
            for &(pos, t) in &acts[1..] {
                self.shared_inputs.push((oi, pos, t, first));
            }
        }
        Ok(())
    }

    /// Joins shared inputs into their operator's group unless both carry different
    /// fixed parameters; returns those edges, which are requantized instead.
    fn join_shared(&mut self) -> Vec<SharedInput> {
        for t in 0..self.fixed.len() {
            if let Some(f) = self.fixed[t] {
                let r = self.groups.find(t);
                self.group_fixed.entry(r).or_insert(f);
            }
        }
        let mut requant_edges = Vec::new();
        for &(oi, pos, t, anchor) in &self.shared_inputs {
            let (rt, ra) = (self.groups.find(t), self.groups.find(anchor));
            if rt == ra {
                continue;
            }
            let fixed = (
                self.group_fixed.get(&rt).copied(),
                self.group_fixed.get(&ra).copied(),
            );
            match fixed {
                (Some(a), Some(b)) if a != b => requant_edges.push((oi, pos, t, anchor)),
                (ft, fa) => {
                    self.groups.union(rt, ra);
                    let r = self.groups.find(rt);
                    if let Some(f) = ft.or(fa) {
                        self.group_fixed.insert(r, f);
                    }
                }
            }
        }
        requant_edges
    }

    /// Each group's range: the union of its members' calibrated ranges, and of the
    /// constants shared operators read.
    fn group_ranges(&mut self, ctx: &Ctx) -> GroupRanges {
        let mut group_range = GroupRanges::new();
        for t in 0..self.needed.len() {
            if !self.needed[t] {
                continue;
            }
            if let Some(r) = ctx.ranges.get(ctx.si, t) {
                let g = self.groups.find(t);
                let e = group_range.entry(g).or_insert((r.min, r.max));
                e.0 = e.0.min(r.min);
                e.1 = e.1.max(r.max);
            }
        }
        for (_, op, rule) in ctx.quantized_ops() {
            self.widen_for_constants(ctx, op, rule, &mut group_range);
        }
        group_range
    }

    /// Constants read like activations by a shared operator widen its group's range.
    fn widen_for_constants(
        &mut self,
        ctx: &Ctx,
        op: &Operator,
        rule: &Rule,
        group_range: &mut GroupRanges,
    ) {
        let (model, sg) = (ctx.model, &ctx.model.subgraphs[ctx.si]);
        let anchor = match rule.output {
            Output::Shared => op.outputs.iter().find_map(|&t| usize::try_from(t).ok()),
            _ if rule.tied_inputs => shared_anchor_input(model, ctx.si, &op.inputs, rule),
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

    /// Parameters of every needed tensor: its group's fixed parameters, else its
    /// group's trained ones (the first member's in tensor order), else from its
    /// group's range.
    fn assign(
        &mut self,
        ctx: &Ctx,
        opts: &IntegerOptions,
        group_range: &GroupRanges,
        p: &mut Params,
    ) -> Result<()> {
        let (si, n) = (ctx.si, self.needed.len());
        let mut group_override: HashMap<usize, QuantParams> = HashMap::new();
        for t in 0..n {
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
            } else if let Some(q) = group_override.get(&g) {
                q.clone()
            } else if let Some(&(lo, hi)) = group_range.get(&g) {
                p.range_of.insert((si, t), (lo, hi));
                activation_params(lo, hi, ctx.width)
            } else {
                return Err(Error::Internal(format!(
                    "subgraph {si}, tensor {t} {:?}: no range for a quantized activation",
                    ctx.model.subgraphs[si].tensors[t].name
                )));
            };
            p.activations.insert((si, t), params);
        }
        Ok(())
    }
}
