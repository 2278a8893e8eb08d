//! Sentinel values (±inf, ±FLT_MAX, far-out mask values; the rule is in
//! `calib/observer.rs`) never set a range: they saturate to the integer minimum or
//! maximum. Where their meaning depends on distance, not only on order, their groups get
//! headroom ([`headroom`]); every tensor holding them is reported
//! ([`report_sentinels`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::calib::Ranges;
use crate::calib::observer::Sentinels;
use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::ir::Model;

use super::super::report::{Fate, Report, SentinelUse};
use super::super::scheme::Width;
use super::plan::{Ctx, GroupRanges, Groups, Params, data_range, data_range_with_sentinels};
use super::tensor_ref;

/// Records every tensor read or written by a quantized operator whose sentinels were
/// kept out of its range, and sums them up in a note.
pub(super) fn report_sentinels(
    model: &Model,
    ranges: &Ranges,
    fates: &[Vec<Fate>],
    params: &Params,
    report: &mut Report,
) {
    let mut seen = BTreeSet::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            if fates[si][oi] != Fate::Quantized {
                continue;
            }
            for &t in op.inputs.iter().chain(&op.outputs) {
                let Ok(t) = usize::try_from(t) else { continue };
                if sg.tensors[t].dtype != TensorType::Float32 || !seen.insert((si, t)) {
                    continue;
                }
                if let Some(u) = sentinel_use(model, ranges, params, (si, t)) {
                    report.sentinels.push(u);
                }
            }
        }
    }
    if !report.sentinels.is_empty() {
        let names: Vec<String> = report
            .sentinels
            .iter()
            .map(|u| format!("{:?}", u.name))
            .collect();
        report.note(format!(
            "{} tensor(s) hold sentinels (±inf, ±FLT_MAX, far-out mask values) kept out of \
             their ranges; they saturate to the integer minimum/maximum: {}",
            names.len(),
            names.join(", ")
        ));
    }
}

/// The sentinels tensor `t` of subgraph `si` holds, if any, with the range used.
fn sentinel_use(
    model: &Model,
    ranges: &Ranges,
    params: &Params,
    (si, t): (usize, usize),
) -> Option<SentinelUse> {
    let tensor = &model.subgraphs[si].tensors[t];
    let (kind, s, range) = if model.is_constant(tensor) {
        let (r, s) = data_range_with_sentinels(model, tensor);
        let r = params.const_range.get(&(si, t)).copied().unwrap_or(r);
        ("constant", s, Some(r))
    } else {
        let r = ranges.get(si, t)?;
        let range = params.range_of.get(&(si, t)).copied();
        ("activation", r.sentinels, range)
    };
    if s.is_none() {
        return None;
    }
    Some(SentinelUse {
        subgraph: si,
        tensor: t,
        name: tensor.name.clone(),
        kind: kind.into(),
        below: s.below,
        above: s.above,
        range,
    })
}

/// Makes room for saturated sentinels where their meaning depends on distance, not
/// only on order (max pool, MINIMUM/MAXIMUM, SELECT keep them right as the range's
/// ends):
/// * a SOFTMAX input that held `-inf`-class values gets its lower end `ln(2 / step) /
///   beta` below its ordinary minimum (`step` = the output's, 1/256 or 1/32768): a
///   saturated entry then weighs less than half an output step in every row;
/// * an ADD/SUB operand holding sentinels gets the end on their side far enough that
///   adding it to any value of the other operand lands beyond the output's range: the
///   output saturates, as the float model's does.
pub(super) fn headroom(
    ctx: &Ctx,
    groups: &mut Groups,
    group_range: &mut GroupRanges,
    const_range: &mut BTreeMap<(usize, usize), (f32, f32)>,
) {
    softmax_headroom(ctx, groups, group_range);
    let mut h = AddSub {
        ctx,
        groups,
        group_range,
        const_range,
    };
    for (oi, op) in ctx.model.subgraphs[ctx.si].operators.iter().enumerate() {
        let kind = ctx.model.builtin(op);
        if !ctx.quantized(oi) || !matches!(kind, Op::Add | Op::Sub) {
            continue;
        }
        let (Some(a), Some(b), Some(o)) = (
            tensor_ref(&op.inputs, 0),
            tensor_ref(&op.inputs, 1),
            tensor_ref(&op.outputs, 0),
        ) else {
            continue;
        };
        h.widen(kind == Op::Sub, (a, b), o);
    }
}

/// The sentinels a tensor holds: a constant's from its data, an activation's from its
/// calibrated range.
fn sentinels_of(ctx: &Ctx, t: usize) -> Sentinels {
    let tensor = &ctx.model.subgraphs[ctx.si].tensors[t];
    if ctx.model.is_constant(tensor) {
        data_range_with_sentinels(ctx.model, tensor).1
    } else {
        ctx.ranges
            .get(ctx.si, t)
            .map(|r| r.sentinels)
            .unwrap_or_default()
    }
}

fn softmax_headroom(ctx: &Ctx, groups: &mut Groups, group_range: &mut GroupRanges) {
    for (oi, op) in ctx.model.subgraphs[ctx.si].operators.iter().enumerate() {
        let Some(t) = tensor_ref(&op.inputs, 0) else {
            continue;
        };
        if !ctx.quantized(oi)
            || ctx.model.builtin(op) != Op::Softmax
            || sentinels_of(ctx, t).below == 0
        {
            continue;
        }
        let beta = match &op.builtin_options {
            Some(fb::BuiltinOptions::SoftmaxOptions(o)) if o.beta > 0.0 => o.beta,
            _ => 1.0,
        };
        let levels: f32 = if ctx.width == Width::Int8 {
            256.0
        } else {
            32768.0
        };
        if let Some(r) = group_range.get_mut(&groups.find(t)) {
            r.0 -= (2.0 * levels).ln() / beta;
        }
    }
}

/// ADD/SUB headroom: the ranges it reads and widens.
struct AddSub<'a, 'c> {
    ctx: &'a Ctx<'c>,
    groups: &'a mut Groups,
    group_range: &'a mut GroupRanges,
    const_range: &'a mut BTreeMap<(usize, usize), (f32, f32)>,
}

impl AddSub<'_, '_> {
    fn range_of(&mut self, t: usize) -> Option<(f32, f32)> {
        let (model, si) = (self.ctx.model, self.ctx.si);
        match self.const_range.get(&(si, t)) {
            Some(&r) => Some(r),
            None if self.ctx.is_constant(t) => {
                Some(data_range(model, &model.subgraphs[si].tensors[t]))
            }
            None => self.group_range.get(&self.groups.find(t)).copied(),
        }
    }

    /// `o = a + b` (or `a − b` when `sub`): each operand holding sentinels gets the end
    /// on their side far enough to carry `o` past its range.
    fn widen(&mut self, sub: bool, (a, b): (usize, usize), o: usize) {
        let (Some((lo_o, hi_o)), Some(ra), Some(rb)) =
            (self.range_of(o), self.range_of(a), self.range_of(b))
        else {
            return;
        };
        // out = a + b, or a − b = a + (−b).
        let (sign_b, plus_b) = if sub {
            (-1.0, (-rb.1, -rb.0))
        } else {
            (1.0, rb)
        };
        for (c, (lo_c, hi_c), (lo_x, hi_x), sign) in [(a, ra, plus_b, 1.0f32), (b, rb, ra, sign_b)]
        {
            let s = sentinels_of(self.ctx, c);
            if s.is_none() {
                continue;
            }
            // out = x + sign·c: the sentinel side of c must carry out past its range.
            let (mut lo, mut hi) = (lo_c, hi_c);
            let (to_low, to_high) = if sign > 0.0 {
                (lo_o - hi_x, hi_o - lo_x)
            } else {
                (lo_x - hi_o, hi_x - lo_o)
            };
            if s.below > 0 {
                lo = lo.min(to_low);
            }
            if s.above > 0 {
                hi = hi.max(to_high);
            }
            if self.ctx.is_constant(c) {
                self.const_range.insert((self.ctx.si, c), (lo, hi));
            } else if let Some(r) = self.group_range.get_mut(&self.groups.find(c)) {
                *r = (lo, hi);
            }
        }
    }
}
