//! Step 1b: the activation width of every quantized operator and activation in an
//! int8 run with 16x8 operators (issue #15: `--int16 REGEX`, or the `--target-sqnr`
//! search), and the wider outputs of operators read only on the float side. Without
//! either every width is the run's.
//!
//! * **Operators**: one selected by an [`Int16`](crate::quant::select::Int16) entry runs in 16x8 (int16 activations,
//!   symmetric; int8 weights; int64 biases) when it is quantized, sits in subgraph 0,
//!   is not an integer LSTM, touches no tensor a WHILE/IF carries or a resource variable
//!   holds (those keep the run's width: `loops.rs`, `variables.rs`), and the rule table
//!   gives it a 16x8 kernel with its operands (the fate it would have at 16 bits is
//!   "quantized"); otherwise it stays int8 and a note says why. Float wins:
//!   `--keep-float` is applied first.
//! * **Same-scale groups**: the operators whose kernel needs equal input and output
//!   parameters (CONCATENATION, RESHAPE, MAX_POOL_2D...) or tied inputs (comparisons),
//!   joined through the activations they share, take one width: 16x8 when any of them
//!   is selected or any activation of the group is written by a 16x8 operator, and
//!   every one of them has a 16x8 kernel; int8 otherwise (with a note).
//! * **Activations**: the width of their producer when it is quantized; otherwise
//!   (model inputs, outputs of float operators) 16x8 when any quantized reader computes
//!   in 16x8. A reader of another width reads a requantized copy (a QUANTIZE
//!   int8→int16 or int16→int8, which LiteRT's `quantize.cc` runs in both directions):
//!   `params.rs` plans the copy's parameters, `rewire.rs` inserts it.
//! * **Wider outputs for the float side** (int8 runs with `--interface float`, unless
//!   `--int8-outputs`): where only float operators and float model outputs read an
//!   operator's output, the model's last rounding need not be int8's. An int8 operator
//!   whose kernel also writes int16 (SOFTMAX) writes it in int16 ([`int16_outputs`]); an
//!   operator without weights that has a 16x8 kernel (LOGISTIC, TANH, the RELU family,
//!   ADD, MUL...) runs in 16x8 like an `--int16` pick (a **16x8 tail**,
//!   [`float_side_tails`]): its input is requantized int8→int16 if an int8 operator
//!   writes it, and its output is rounded on a grid 256 times finer. Operators with
//!   weights stay int8 (16x8 convolutions cost run time); same-scale operators only move
//!   values.
//! * **Headroom**: a 16x8 activation of an int8 run gets [`INT16_HEADROOM`] times its
//!   calibrated range (`params.rs`). The 16-bit grid is still 128 times finer than
//!   int8's, and values beyond what the calibration data showed then do not clip: on
//!   held-out data, clipping, not rounding, is what such an operator's error is made of
//!   (sentinel_clip: held-out values 17% beyond the calibrated minimum cost 38 dB where
//!   the calibration data scored 92).

/// Factor on the calibrated range of a 16x8 activation in an int8 run.
pub const INT16_HEADROOM: f32 = 2.0;

use std::collections::{BTreeMap, HashSet};

use crate::calib::Ranges;
use crate::error::Result;
use crate::fb::BuiltinOperator as Op;
use crate::ir::Model;
use crate::rules::{self, Output, Role};

use super::super::report::{Fate, Report};
use super::super::scheme::Width;
use super::IntegerOptions;
use super::union_find::Groups;

/// The width of every quantized operator and activation.
#[derive(Debug, Clone, Default)]
pub(super) struct Widths {
    /// The run's width (`--mode`).
    pub run: Width,
    /// Operators that compute in another width than the run's, with the reason.
    pub ops: BTreeMap<(usize, usize), (Width, String)>,
    /// Activations whose integer version has another width than the run's.
    pub tensors: BTreeMap<(usize, usize), Width>,
}

impl Widths {
    /// Every operator and activation at the run's width.
    pub fn uniform(run: Width) -> Widths {
        Widths {
            run,
            ..Default::default()
        }
    }

    pub fn op(&self, si: usize, oi: usize) -> Width {
        self.ops.get(&(si, oi)).map_or(self.run, |w| w.0)
    }

    pub fn tensor(&self, si: usize, t: usize) -> Width {
        self.tensors.get(&(si, t)).copied().unwrap_or(self.run)
    }
}

/// Plans the widths (see the module documentation).
pub(super) fn plan_widths(
    model: &Model,
    ranges: &Ranges,
    fates: &[Vec<Fate>],
    opts: &IntegerOptions,
    report: &mut Report,
) -> Result<Widths> {
    let mut w = Widths::uniform(opts.width);
    if opts.width != Width::Int8 {
        return Ok(w);
    }
    let pinned = pinned_tensors(model);
    let wide_outputs = !opts.int8_outputs && opts.interface == super::Interface::Float;
    let read = match wide_outputs {
        true => quantized_readers(model, fates),
        false => Vec::new(),
    };
    let tails = match wide_outputs {
        true => float_side_tails(model, fates, &read, &pinned),
        false => Vec::new(),
    };
    if !opts.int16.is_empty() || !tails.is_empty() {
        let run = Run {
            model,
            ranges,
            fates,
            opts,
            pinned: &pinned,
        };
        plan_int16_ops(&run, &tails, &mut w, report)?;
    }
    if wide_outputs {
        int16_outputs(model, fates, &read, &pinned, &mut w, report);
    }
    Ok(w)
}

/// What planning 16x8 operators reads.
struct Run<'a> {
    model: &'a Model,
    ranges: &'a Ranges,
    fates: &'a [Vec<Fate>],
    opts: &'a IntegerOptions,
    pinned: &'a HashSet<(usize, usize)>,
}

/// Whether activation `t` of subgraph 0 is read only on the float side: by no quantized
/// operator (`quantized_reader`) and held by no WHILE/IF or resource variable. (A model
/// output is then a float one: wider outputs are planned with `--interface float` only.)
fn float_side(quantized_reader: &[bool], pinned: &HashSet<(usize, usize)>, t: usize) -> bool {
    !quantized_reader[t] && !pinned.contains(&(0, t))
}

/// Tensors of subgraph 0 that a quantized operator reads.
fn quantized_readers(model: &Model, fates: &[Vec<Fate>]) -> Vec<bool> {
    let Some(sg) = model.subgraphs.first() else {
        return Vec::new();
    };
    let mut read = vec![false; sg.tensors.len()];
    for (oi, op) in sg.operators.iter().enumerate() {
        if fates[0][oi] == Fate::Quantized {
            for t in op.inputs.iter().filter_map(|&t| usize::try_from(t).ok()) {
                read[t] = true;
            }
        }
    }
    read
}

/// The **16x8 tails** (see the module documentation): quantized operators of subgraph 0
/// without weights or biases, with a real-valued output of their own (not a same-scale
/// operator, which only moves values) and a 16x8 kernel, whose outputs only the float
/// side reads. SOFTMAX is not one: its int8 kernel writes int16 itself, exactly
/// rounded, where LiteRT's 16-bit SOFTMAX works through lookup tables
/// ([`int16_outputs`]).
fn float_side_tails(
    model: &Model,
    fates: &[Vec<Fate>],
    read: &[bool],
    pinned: &HashSet<(usize, usize)>,
) -> Vec<usize> {
    let Some(sg) = model.subgraphs.first() else {
        return Vec::new();
    };
    let mut tails = Vec::new();
    for (oi, op) in sg.operators.iter().enumerate() {
        let Some(rule) = rules::rule_for(model.builtin(op)) else {
            continue;
        };
        let computes = matches!(rule.output, Output::Free | Output::Fixed { .. });
        let no_weights = (0..op.inputs.len()).all(|pos| {
            !matches!(
                rule.integer_role(pos),
                Role::Weight { .. } | Role::Bias { .. }
            )
        });
        let outs: Vec<usize> = op
            .outputs
            .iter()
            .filter_map(|&t| usize::try_from(t).ok())
            .collect();
        if fates[0][oi] == Fate::Quantized
            && computes
            && no_weights
            && rule.int16
            && rule.int16_output.is_none()
            && !outs.is_empty()
            && outs.iter().all(|&t| float_side(read, pinned, t))
        {
            tails.push(oi);
        }
    }
    tails
}

/// The 16x8 operators selected by `--int16` / the search, their same-scale groups and
/// the activation widths that follow from them.
fn plan_int16_ops(run: &Run, tails: &[usize], w: &mut Widths, report: &mut Report) -> Result<()> {
    let Run {
        model,
        ranges,
        fates,
        opts,
        pinned,
    } = *run;
    let eligible = |si: usize, oi: usize| eligible(model, ranges, pinned, si, oi);
    let mut refused: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for pick in &opts.int16 {
        let mut matched = false;
        for (si, sg) in model.subgraphs.iter().enumerate() {
            for oi in 0..sg.operators.len() {
                if !pick.select.matches(model, si, oi) {
                    continue;
                }
                matched = true;
                if fates[si][oi] != Fate::Quantized || w.ops.contains_key(&(si, oi)) {
                    continue;
                }
                match eligible(si, oi) {
                    Ok(()) => {
                        w.ops.insert((si, oi), (Width::Int16x8, pick.reason()));
                    }
                    Err(why) => {
                        refused.insert((si, oi), why);
                    }
                }
            }
        }
        pick.check_matched(matched)?;
    }
    // 16x8 tails: chosen by the rule, so one that cannot run in 16x8 stays int8 quietly.
    for &oi in tails {
        if !w.ops.contains_key(&(0, oi)) && eligible(0, oi).is_ok() {
            w.ops.insert(
                (0, oi),
                (
                    Width::Int16x8,
                    "int16x8 for the float side: only float operators or float model outputs \
                     read its output (no weights; its output rounding 256 times finer)"
                        .into(),
                ),
            );
        }
    }
    widen_groups(model, fates, &eligible, w, &mut refused);
    for ((si, oi), why) in refused {
        let op = model.op_display_name(&model.subgraphs[si].operators[oi]);
        report.note(format!(
            "subgraph {si}, operator {oi} ({op}): stays int8 although selected for int16x8: {why}"
        ));
    }
    tensor_widths(model, fates, pinned, w);
    Ok(())
}

/// Int16 outputs of int8 operators (see the module documentation): an int8 operator
/// whose kernel can also write its fixed output in int16 ([`rules::Rule::int16_output`]:
/// SOFTMAX) writes it in int16 where only the float side reads it ([`float_side`]), in
/// subgraph 0. The values then leave the integer part of the model through a DEQUANTIZE
/// from int16: the same operators, the last rounding on a grid 128 times finer
/// (SOFTMAX: 1/32767 instead of 1/256, where a confident classifier's small
/// probabilities are otherwise whole int8 steps).
fn int16_outputs(
    model: &Model,
    fates: &[Vec<Fate>],
    read: &[bool],
    pinned: &HashSet<(usize, usize)>,
    w: &mut Widths,
    report: &mut Report,
) {
    let si = 0;
    let Some(sg) = model.subgraphs.first() else {
        return;
    };
    for (oi, op) in sg.operators.iter().enumerate() {
        let wide = fates[si][oi] == Fate::Quantized
            && w.op(si, oi) == Width::Int8
            && rules::rule_for(model.builtin(op)).is_some_and(|r| r.int16_output.is_some());
        if !wide {
            continue;
        }
        for t in op.outputs.iter().filter_map(|&t| usize::try_from(t).ok()) {
            if float_side(read, pinned, t) && w.tensor(si, t) == Width::Int8 {
                w.tensors.insert((si, t), Width::Int16x8);
                let name = model.op_display_name(op);
                report.note(format!(
                    "subgraph {si}, operator {oi} ({name}): writes its output in int16 \
                     (only float operators or float model outputs read it; the int8 kernel \
                     writes int16 too)"
                ));
            }
        }
    }
}

/// Tensors that keep the run's width: read or written by an operator that calls
/// subgraphs (WHILE, IF: carried as integers by `loops.rs`) or by a resource-variable
/// operator (one parameter set per variable: `variables.rs`).
fn pinned_tensors(model: &Model) -> HashSet<(usize, usize)> {
    let mut pinned = HashSet::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for op in &sg.operators {
            let kind = model.builtin(op);
            let pins = !op.subgraph_refs().is_empty()
                || matches!(kind, Op::ReadVariable | Op::AssignVariable | Op::VarHandle);
            if pins {
                for &t in op.inputs.iter().chain(&op.outputs) {
                    if let Ok(t) = usize::try_from(t) {
                        pinned.insert((si, t));
                    }
                }
            }
        }
    }
    pinned
}

/// Whether operator `oi` of subgraph `si` can run in 16x8 inside an int8 model, or why not.
fn eligible(
    model: &Model,
    ranges: &Ranges,
    pinned: &HashSet<(usize, usize)>,
    si: usize,
    oi: usize,
) -> std::result::Result<(), String> {
    let op = &model.subgraphs[si].operators[oi];
    if si != 0 {
        return Err("mixed widths are planned in subgraph 0 only".into());
    }
    if model.builtin(op) == Op::UnidirectionalSequenceLstm {
        return Err("an integer LSTM keeps the run's width".into());
    }
    if op
        .inputs
        .iter()
        .chain(&op.outputs)
        .filter_map(|&t| usize::try_from(t).ok())
        .any(|t| pinned.contains(&(si, t)))
    {
        return Err(
            "it reads or writes a tensor a WHILE/IF carries or a resource variable holds, \
             which keeps the run's width"
                .into(),
        );
    }
    match super::fates::fate_of(model, si, op, ranges, 16) {
        Fate::Quantized => Ok(()),
        Fate::Float { reason } => Err(format!("in 16x8 it would stay float: {reason}")),
    }
}

/// Same-scale groups take one width (see the module documentation).
fn widen_groups(
    model: &Model,
    fates: &[Vec<Fate>],
    eligible: &dyn Fn(usize, usize) -> std::result::Result<(), String>,
    w: &mut Widths,
    refused: &mut BTreeMap<(usize, usize), String>,
) {
    let si = 0;
    let sg = &model.subgraphs[si];
    let producers = sg.producers();
    let mut groups = Groups::new(sg.tensors.len());
    // Shared operators and the tensor standing for each one's group.
    let mut shared: Vec<(usize, usize)> = Vec::new();
    for (oi, op) in sg.operators.iter().enumerate() {
        if fates[si][oi] != Fate::Quantized {
            continue;
        }
        let Some(rule) = rules::rule_for(model.builtin(op)) else {
            continue;
        };
        let is_shared = rule.output == Output::Shared;
        if !is_shared && !rule.tied_inputs {
            continue;
        }
        let mut members: Vec<usize> = op
            .inputs
            .iter()
            .enumerate()
            .filter(|&(pos, _)| rule.integer_role(pos) == Role::Activation)
            .filter_map(|(_, &t)| usize::try_from(t).ok())
            .filter(|&t| !model.is_constant(&sg.tensors[t]))
            .collect();
        if is_shared {
            members.extend(op.outputs.iter().filter_map(|&t| usize::try_from(t).ok()));
        }
        let Some(&first) = members.first() else {
            continue;
        };
        for &m in &members[1..] {
            groups.union(first, m);
        }
        shared.push((oi, first));
    }
    if shared.is_empty() {
        return;
    }
    // Groups that take 16x8: a selected member operator, or a member activation
    // written by a 16x8 operator.
    let mut wide = vec![false; sg.tensors.len()];
    for &(oi, anchor) in &shared {
        if w.op(si, oi) == Width::Int16x8 {
            wide[groups.find(anchor)] = true;
        }
    }
    for t in 0..sg.tensors.len() {
        if let Some(p) = producers[t]
            && w.op(si, p) == Width::Int16x8
        {
            wide[groups.find(t)] = true;
        }
    }
    // A group with an operator that cannot run in 16x8 stays int8.
    let mut blocked: BTreeMap<usize, String> = BTreeMap::new();
    for &(oi, anchor) in &shared {
        let g = groups.find(anchor);
        if wide[g]
            && let Err(why) = eligible(si, oi)
        {
            let op = model.op_display_name(&sg.operators[oi]);
            blocked.entry(g).or_insert(format!(
                "its same-scale group holds operator {oi} ({op}): {why}"
            ));
        }
    }
    for &(oi, anchor) in &shared {
        let g = groups.find(anchor);
        if !wide[g] {
            continue;
        }
        match blocked.get(&g) {
            Some(why) => {
                if w.ops.remove(&(si, oi)).is_some() {
                    refused.insert((si, oi), why.clone());
                }
            }
            None => {
                w.ops.entry((si, oi)).or_insert((
                    Width::Int16x8,
                    "int16x8: its same-scale group is int16x8".into(),
                ));
            }
        }
    }
}

/// Activation widths: the producer's when it is quantized, else 16x8 when a quantized
/// reader computes in 16x8.
fn tensor_widths(
    model: &Model,
    fates: &[Vec<Fate>],
    pinned: &HashSet<(usize, usize)>,
    w: &mut Widths,
) {
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let producers = sg.producers();
        let mut wide = vec![false; sg.tensors.len()];
        for (oi, op) in sg.operators.iter().enumerate() {
            if fates[si][oi] != Fate::Quantized || w.op(si, oi) != Width::Int16x8 {
                continue;
            }
            for t in op.inputs.iter().filter_map(|&t| usize::try_from(t).ok()) {
                wide[t] = true;
            }
        }
        for t in 0..sg.tensors.len() {
            let width = match producers[t] {
                _ if pinned.contains(&(si, t)) => w.run,
                Some(p) if fates[si][p] == Fate::Quantized => w.op(si, p),
                _ if wide[t] => Width::Int16x8,
                _ => w.run,
            };
            if width != w.run {
                w.tensors.insert((si, t), width);
            }
        }
    }
}
