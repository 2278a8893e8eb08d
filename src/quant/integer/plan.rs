//! What the planning steps share and hand to rewiring: the chosen [`Params`], the
//! context of one subgraph's planning ([`Ctx`]), the same-scale groups ([`Groups`],
//! [`GroupRanges`]), the ranges of constants and the tensors WHILE loops carry as integers
//! ([`Carried`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::calib::Ranges;
use crate::calib::observer::{Sentinels, ordinary_min_max};
use crate::ir::{Model, Operator, QuantParams, Tensor};
use crate::rules::{self, Role, Rule};

use super::super::math;
use super::super::report::Fate;
use super::super::scheme::Width;

/// Parameters chosen for activations, and requantized edges.
#[derive(Default)]
pub(super) struct Params {
    /// Integer parameters of every activation that has an integer version.
    pub activations: BTreeMap<(usize, usize), QuantParams>,
    /// The range each activation's parameters came from (report).
    pub range_of: BTreeMap<(usize, usize), (f32, f32)>,
    /// `(subgraph, operator, input position)` → parameters the input must be
    /// requantized to (its group's parameters differ from the tensor's own).
    pub requant: BTreeMap<(usize, usize, usize), QuantParams>,
    /// Ranges of constants that hold sentinels, widened so the saturated sentinel
    /// still dominates the operator's output (`sentinels.rs`).
    pub const_range: BTreeMap<(usize, usize), (f32, f32)>,
    /// Constants that must take given parameters (values assigned to a variable).
    pub constants: BTreeMap<(usize, usize), QuantParams>,
    /// Tensors carried through WHILE loops as integers (`loops.rs`).
    pub carried: Carried,
    /// Every quantized operator's and activation's width (`widths.rs`).
    pub widths: super::widths::Widths,
    /// Width of the requantized edges of [`Params::requant`] that is not the run's.
    pub requant_width: BTreeMap<(usize, usize, usize), Width>,
}
/// What `loops::decide` settled about WHILE loops, read by rewiring.
#[derive(Debug, Default)]
pub(super) struct Carried {
    /// (subgraph, WHILE operator) → carried positions with their parameters.
    pub ops: BTreeMap<(usize, usize), BTreeMap<usize, QuantParams>>,
    /// Inputs and outputs of cond/body subgraphs that hold integers.
    pub boundary: BTreeSet<(usize, usize)>,
}

impl Carried {
    /// Whether output `t` of operator `p` in subgraph `si` is a carried WHILE output.
    pub fn writes_integer(&self, model: &Model, si: usize, p: usize, t: usize) -> bool {
        let Some(pos) = self.ops.get(&(si, p)) else {
            return false;
        };
        model.subgraphs[si].operators[p]
            .outputs
            .iter()
            .position(|&o| o == t as i32)
            .is_some_and(|k| pos.contains_key(&k))
    }
}

/// What the planning of one subgraph reads.
pub(super) struct Ctx<'a> {
    pub model: &'a Model,
    pub si: usize,
    /// The fates of the subgraph's operators.
    pub fates: &'a [Fate],
    pub ranges: &'a Ranges,
    pub width: Width,
    pub widths: &'a super::widths::Widths,
}

impl Ctx<'_> {
    /// The width quantized operator `oi` computes in.
    pub fn op_width(&self, oi: usize) -> Width {
        self.widths.op(self.si, oi)
    }

    /// The width of activation `t`'s integer version.
    pub fn tensor_width(&self, t: usize) -> Width {
        self.widths.tensor(self.si, t)
    }

    pub fn quantized(&self, oi: usize) -> bool {
        self.fates[oi] == Fate::Quantized
    }

    pub fn is_constant(&self, t: usize) -> bool {
        self.model
            .is_constant(&self.model.subgraphs[self.si].tensors[t])
    }

    /// The quantized operators of the subgraph with their rules.
    pub fn quantized_ops(&self) -> impl Iterator<Item = (usize, &Operator, &'static Rule)> {
        self.model.subgraphs[self.si]
            .operators
            .iter()
            .enumerate()
            .filter(|&(oi, _)| self.quantized(oi))
            .map(|(oi, op)| {
                let rule =
                    rules::rule_for(self.model.builtin(op)).expect("quantized ops have rules");
                (oi, op, rule)
            })
    }
}

pub(super) use super::union_find::Groups;

/// Each group's range (keyed by its root), the union of its members'.
pub(super) type GroupRanges = HashMap<usize, (f32, f32)>;

/// The range of a constant's ordinary values (sentinels excluded: they saturate to
/// the integer minimum or maximum; see `calib::observer`), widened to include 0, and
/// the sentinels it holds.
pub(super) fn data_range_with_sentinels(model: &Model, t: &Tensor) -> ((f32, f32), Sentinels) {
    let v = math::f32_values(model.tensor_data(t));
    let (lo, hi, s) = ordinary_min_max(&v);
    if lo > hi {
        return ((0.0, 0.0), s);
    }
    // `+ 0.0` turns a -0.0 end (a mask of -0.0 and -1e9) into 0.0.
    ((lo.min(0.0) + 0.0, hi.max(0.0) + 0.0), s)
}

/// The range of a constant's ordinary values, widened to include 0.
pub(super) fn data_range(model: &Model, t: &Tensor) -> (f32, f32) {
    data_range_with_sentinels(model, t).0
}

/// The first non-constant activation input of an operator whose inputs share
/// parameters although its output is not real-valued (comparisons, ARG_MAX).
pub(super) fn shared_anchor_input(
    model: &Model,
    si: usize,
    inputs: &[i32],
    rule: &Rule,
) -> Option<usize> {
    let sg = &model.subgraphs[si];
    inputs.iter().enumerate().find_map(|(pos, &t)| {
        let t = usize::try_from(t).ok()?;
        (rule.integer_role(pos) == Role::Activation && !model.is_constant(&sg.tensors[t]))
            .then_some(t)
    })
}
