//! WHILE loops in the full-integer modes: the tensors a loop carries cross it as
//! integers, with one set of parameters per carried position.
//!
//! LiteRT's WHILE kernel (`while.cc`) copies the bytes of each carried tensor from the
//! operator's input `k` to input `k` of the cond and body subgraphs, from body output `k`
//! back to body input `k` every iteration, and finally to the operator's output `k`; it
//! gives the destination the source's type and converts nothing. So the five tensors of
//! position `k` — outer input, cond input, body input, body output, outer output — must
//! have one type, and their integers mean the same only with one scale and zero point.
//! This module decides, for each float32 position of a WHILE, whether it is carried as
//! an integer (a *chain*), and with which parameters:
//!
//! 1. [`candidates`], after the fates: a position is a candidate when its cond and body
//!    subgraphs belong to this WHILE alone, its five tensors are float32, body output `k`
//!    is written by a quantized operator of the body (or is body input `k` itself, a
//!    loop-invariant tensor) and some quantized operator of the loop reads or writes it,
//!    and (int8 runs) its initial value is not state a float operator writes in place
//!    ([`float_state_writer`]); otherwise it stays float32 with the reason (shown on the
//!    WHILE's fate);
//! 2. [`widen_ranges`], before the parameters: every calibrated member of a chain gets
//!    the union of the chain's calibrated ranges (the outer input's range, and a
//!    constant initial value's data, count in the union but keep their own range), so
//!    the planner usually gives the members equal parameters;
//! 3. [`decide`], after the parameters: the chain's parameters `C` are those the
//!    planner gave body output `k` (the value fed back), or body input `k` for a
//!    loop-invariant tensor; the cond/body inputs, the body output and the outer output
//!    take `C`, and where a same-scale operator reading one of them planned other
//!    parameters that edge is requantized (a QUANTIZE int→int); a chain whose body output
//!    has fixed parameters (TANH, LOGISTIC) that do not cover its calibrated values stays
//!    float32; the outer input is requantized to `C`
//!    on the WHILE's edge where its own parameters differ (a constant is quantized with
//!    `C`, a float tensor gets a QUANTIZE right before the WHILE).
//!
//! Rewiring (`rewire.rs`) then keeps the original index of every cond/body boundary
//! tensor of a chain as the integer version and lets the WHILE read and write integer
//! versions at the carried positions.

use std::collections::BTreeMap;

use crate::calib::Ranges;
use crate::fb::{BuiltinOperator as Op, BuiltinOptions as O, TensorType};
use crate::ir::{Model, QuantParams};

use super::super::report::{Fate, FloatReason};
use super::super::scheme::{Width, activation_params};
use super::plan::{Carried, Params, data_range};

/// One carried position `pos` of the WHILE operator `oi` of subgraph `si`.
#[derive(Debug, Clone)]
pub(super) struct Chain {
    si: usize,
    oi: usize,
    pos: usize,
    cond: usize,
    body: usize,
    outer_in: usize,
    cond_in: usize,
    body_in: usize,
    body_out: usize,
    outer_out: usize,
}

impl Chain {
    /// A loop-invariant position: the body hands its input back unchanged.
    fn invariant(&self) -> bool {
        self.body_in == self.body_out
    }

    /// The members whose parameters this module sets, as (subgraph, tensor).
    fn boundary(&self) -> [(usize, usize); 4] {
        [
            (self.cond, self.cond_in),
            (self.body, self.body_in),
            (self.body, self.body_out),
            (self.si, self.outer_out),
        ]
    }
}

/// The float32 positions of one WHILE that stay float, with the reason.
pub(super) type Kept = BTreeMap<(usize, usize), Vec<(usize, String)>>;

/// The cond and body subgraphs of a WHILE whose loop can carry integers: both exist,
/// no other operator runs them, and their inputs and outputs match the operator's.
fn loop_of(
    model: &Model,
    refs: &BTreeMap<usize, usize>,
    si: usize,
    oi: usize,
) -> Option<(usize, usize)> {
    let op = &model.subgraphs[si].operators[oi];
    if model.builtin(op) != Op::While {
        return None;
    }
    let Some(O::WhileOptions(o)) = &op.builtin_options else {
        return None;
    };
    let (cond, body) = (
        usize::try_from(o.cond_subgraph_index).ok()?,
        usize::try_from(o.body_subgraph_index).ok()?,
    );
    let n = op.inputs.len();
    let (c, b) = (model.subgraphs.get(cond)?, model.subgraphs.get(body)?);
    let fits = cond != body
        && cond != si
        && body != si
        && refs.get(&cond) == Some(&1)
        && refs.get(&body) == Some(&1)
        && c.inputs.len() == n
        && b.inputs.len() == n
        && b.outputs.len() == n
        && op.outputs.len() == n;
    fits.then_some((cond, body))
}

/// How many operators run each subgraph.
fn subgraph_refs(model: &Model) -> BTreeMap<usize, usize> {
    let mut refs = BTreeMap::new();
    for sg in &model.subgraphs {
        for op in &sg.operators {
            for (_, s) in op.subgraph_refs() {
                if let Ok(s) = usize::try_from(s) {
                    *refs.entry(s).or_insert(0) += 1;
                }
            }
        }
    }
    refs
}

/// Step 1: the positions that can be carried as integers, and the reasons of the
/// float32 positions that cannot.
pub(super) fn candidates(model: &Model, fates: &[Vec<Fate>], width: Width) -> (Vec<Chain>, Kept) {
    let refs = subgraph_refs(model);
    let (mut chains, mut kept) = (Vec::new(), Kept::new());
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for oi in 0..sg.operators.len() {
            let Some((cond, body)) = loop_of(model, &refs, si, oi) else {
                continue;
            };
            let why = kept.entry((si, oi)).or_default();
            let op = &sg.operators[oi];
            for pos in 0..op.inputs.len() {
                let at =
                    |list: &[i32], k: usize| list.get(k).and_then(|&t| usize::try_from(t).ok());
                let (c, b) = (&model.subgraphs[cond], &model.subgraphs[body]);
                let (Some(outer_in), Some(cond_in), Some(body_in), Some(body_out), Some(outer_out)) = (
                    at(&op.inputs, pos),
                    at(&c.inputs, pos),
                    at(&b.inputs, pos),
                    at(&b.outputs, pos),
                    at(&op.outputs, pos),
                ) else {
                    continue;
                };
                if sg.tensors.get(outer_in).map(|t| t.dtype) != Some(TensorType::Float32) {
                    continue;
                }
                let chain = Chain {
                    si,
                    oi,
                    pos,
                    cond,
                    body,
                    outer_in,
                    cond_in,
                    body_in,
                    body_out,
                    outer_out,
                };
                match check(model, fates, &chain, width) {
                    Ok(()) => chains.push(chain),
                    Err(w) => why.push((pos, w)),
                }
            }
        }
    }
    (chains, kept)
}

/// Why position `chain.pos` cannot be carried as an integer, if so.
fn check(model: &Model, fates: &[Vec<Fate>], chain: &Chain, width: Width) -> Result<(), String> {
    let members = [
        (chain.si, chain.outer_in),
        (chain.cond, chain.cond_in),
        (chain.body, chain.body_in),
        (chain.body, chain.body_out),
        (chain.si, chain.outer_out),
    ];
    for (s, t) in members {
        let Some(tensor) = model.subgraphs[s].tensors.get(t) else {
            return Err(format!("subgraph {s} has no tensor {t}"));
        };
        if tensor.dtype != TensorType::Float32 {
            return Err(format!(
                "subgraph {s} tensor {t} {:?} is not float32",
                tensor.name
            ));
        }
    }
    let b = &model.subgraphs[chain.body];
    let quantized = |s: usize, p: usize| fates[s].get(p) == Some(&Fate::Quantized);
    if width == Width::Int8
        && let Some(w) = float_state_writer(model, fates, chain)
    {
        return Err(w);
    }
    if !chain.invariant() {
        if b.inputs.contains(&(chain.body_out as i32)) {
            return Err(format!(
                "body output {} is another position's body input",
                chain.pos
            ));
        }
        match b.producers()[chain.body_out] {
            None => {
                return Err(format!(
                    "body output {} is not computed in the body",
                    chain.pos
                ));
            }
            Some(p) if !quantized(chain.body, p) => {
                return Err(format!(
                    "body output {} is computed by operator {p} ({}) of subgraph {}, which stays float",
                    chain.pos,
                    model.op_display_name(&b.operators[p]),
                    chain.body
                ));
            }
            Some(_) => return Ok(()),
        }
    }
    let read = |s: usize, t: usize| {
        model.subgraphs[s].consumers()[t]
            .iter()
            .any(|&(p, _)| quantized(s, p))
    };
    if read(chain.body, chain.body_in) || read(chain.cond, chain.cond_in) {
        Ok(())
    } else {
        Err(format!(
            "no quantized operator of the loop reads carried tensor {}",
            chain.pos
        ))
    }
}

/// Why the outer input cannot be quantized before the loop, if so: it is a variable
/// tensor that a float operator of the same subgraph also reads, i.e. state that
/// operator writes in place (a float LSTM's output state fed to the loop as its initial
/// value). A QUANTIZE reading it would have no data edge to that write, and LiteRT's
/// XNNPACK delegate, which orders the nodes it takes by data edges only, runs such a
/// QUANTIZE before the writer: the loop then starts from the state before the write
/// (lstm_gru_digits with its LSTM float: 5.5 dB on held-out samples with XNNPACK, 22
/// dB with the builtin kernels). In int8 runs only: XNNPACK takes no float→int16
/// QUANTIZE, and the int16x8 loops keep their integer state.
fn float_state_writer(model: &Model, fates: &[Vec<Fate>], chain: &Chain) -> Option<String> {
    let sg = &model.subgraphs[chain.si];
    let t = sg.tensors.get(chain.outer_in)?;
    if !t.is_variable {
        return None;
    }
    let (p, op) = sg.operators.iter().enumerate().find(|&(p, op)| {
        p != chain.oi
            && op.inputs.contains(&(chain.outer_in as i32))
            && fates[chain.si].get(p) != Some(&Fate::Quantized)
    })?;
    Some(format!(
        "initial value {:?} of position {} is state that operator {p} ({}), float, writes in \
         place: a QUANTIZE of it has no data edge to that write and a delegate may run it first",
        t.name,
        chain.pos,
        model.op_display_name(op)
    ))
}

/// The union of the calibrated ranges of a chain's members (a constant outer input by
/// its data).
fn union_range(model: &Model, ranges: &Ranges, chain: &Chain) -> Option<(f32, f32)> {
    let mut union: Option<(f32, f32)> = None;
    let mut widen = |lo: f32, hi: f32| {
        union = Some(union.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    };
    let outer = &model.subgraphs[chain.si].tensors[chain.outer_in];
    if model.is_constant(outer) {
        let (lo, hi) = data_range(model, outer);
        widen(lo, hi);
    } else if let Some(r) = ranges.get(chain.si, chain.outer_in) {
        widen(r.min, r.max);
    }
    for (s, t) in chain.boundary() {
        if let Some(r) = ranges.get(s, t) {
            widen(r.min, r.max);
        }
    }
    union
}

/// Step 2: every calibrated boundary member of a chain gets the chain's union range.
pub(super) fn widen_ranges(model: &Model, ranges: &Ranges, chains: &[Chain]) -> Ranges {
    let mut out = ranges.clone();
    for chain in chains {
        let Some((lo, hi)) = union_range(model, ranges, chain) else {
            continue;
        };
        for (s, t) in chain.boundary() {
            if let Ok(i) = out
                .tensors
                .binary_search_by(|r| (r.subgraph, r.tensor).cmp(&(s, t)))
            {
                out.tensors[i].min = lo;
                out.tensors[i].max = hi;
            }
        }
    }
    out
}

/// What [`decide`] reads besides the parameters it updates.
pub(super) struct Decide<'a> {
    pub model: &'a Model,
    pub ranges: &'a Ranges,
    pub width: Width,
}

/// Step 3: the parameters of each chain; boundary members take them, edges that planned
/// others are requantized; the WHILE operators' fates say what is carried how.
pub(super) fn decide(
    d: &Decide,
    chains: &[Chain],
    mut kept: Kept,
    fates: &mut [Vec<Fate>],
    params: &mut Params,
) -> Carried {
    let model = d.model;
    let mut carried = Carried::default();
    for chain in chains {
        let planned = if chain.invariant() {
            params
                .activations
                .get(&(chain.body, chain.body_in))
                .cloned()
                .or_else(|| {
                    union_range(model, d.ranges, chain)
                        .map(|(lo, hi)| activation_params(lo, hi, d.width))
                })
        } else {
            params
                .activations
                .get(&(chain.body, chain.body_out))
                .cloned()
        };
        let Some(c) = planned.filter(|p| p.scale.len() == 1 && p.zero_point.len() == 1) else {
            kept.entry((chain.si, chain.oi)).or_default().push((
                chain.pos,
                format!("carried tensor {} has no calibrated range", chain.pos),
            ));
            continue;
        };
        if let Some(why) = clips(model, d, chain, &c) {
            kept.entry((chain.si, chain.oi))
                .or_default()
                .push((chain.pos, why));
            continue;
        }
        for (s, t) in chain.boundary() {
            let old = params.activations.insert((s, t), c.clone());
            if let Some(old) = old.filter(|o| *o != c) {
                requantize_readers(model, fates, (s, t), &old, params);
            }
        }
        carried.boundary.insert((chain.cond, chain.cond_in));
        carried.boundary.insert((chain.body, chain.body_in));
        carried.boundary.insert((chain.body, chain.body_out));
        if let Some(p) = params.activations.get(&(chain.si, chain.outer_in))
            && *p != c
        {
            params
                .requant
                .insert((chain.si, chain.oi, chain.pos), c.clone());
        }
        carried
            .ops
            .entry((chain.si, chain.oi))
            .or_default()
            .insert(chain.pos, c);
    }
    record_fates(model, d.width, &carried, kept, fates);
    carried
}

/// Each WHILE's fate names its carried positions and why the others stay float32.
fn record_fates(
    model: &Model,
    width: Width,
    carried: &Carried,
    kept: Kept,
    fates: &mut [Vec<Fate>],
) {
    for ((si, oi), mut float) in kept {
        let integer: Vec<usize> = carried
            .ops
            .get(&(si, oi))
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        if integer.is_empty() && float.is_empty() {
            continue;
        }
        float.sort();
        let op = &model.subgraphs[si].operators[oi];
        let (cond, body) = match &op.builtin_options {
            Some(O::WhileOptions(o)) => (
                o.cond_subgraph_index as usize,
                o.body_subgraph_index as usize,
            ),
            _ => continue,
        };
        fates[si][oi] = Fate::Float {
            reason: FloatReason::Loop {
                op: model.op_display_name(op),
                cond,
                body,
                integer,
                float,
                dtype: crate::fb::dtype_name(width.dtype()),
            },
        };
    }
}

/// Why the chain's parameters `c` cannot carry it: fixed parameters of the body output
/// (a LOGISTIC or TANH writes it) that do not cover the values the chain's members
/// took in calibration by more than one step (the initial value would saturate).
fn clips(model: &Model, d: &Decide, chain: &Chain, c: &QuantParams) -> Option<String> {
    let (lo, hi) = union_range(model, d.ranges, chain)?;
    let (s, z) = (c.scale[0], c.zero_point[0] as f32);
    let (qmin, qmax) = match d.width {
        Width::Int8 => (-128.0, 127.0),
        Width::Int16x8 => (-32767.0, 32767.0),
    };
    let (rlo, rhi) = ((qmin - z) * s, (qmax - z) * s);
    // Saturating by up to one step costs what rounding does.
    (lo < rlo - s || hi > rhi + s).then(|| {
        format!(
            "its values [{lo}, {hi}] exceed what body output {}'s parameters (scale {s:e}, \
             zero point {z}) represent, [{rlo}, {rhi}]",
            chain.pos
        )
    })
}

/// Quantized operators of subgraph `s` reading `t`, which now holds the chain's
/// parameters, and whose kernel ties that input's parameters to others (same-scale
/// operators, comparisons) read it requantized to the `old` parameters they were planned
/// with (unless that edge is requantized already). Other readers take the chain's
/// parameters as they are (a bias follows them: it is quantized with `t`'s parameters).
fn requantize_readers(
    model: &Model,
    fates: &[Vec<Fate>],
    (s, t): (usize, usize),
    old: &QuantParams,
    params: &mut Params,
) {
    let sg = &model.subgraphs[s];
    for &(p, pos) in &sg.consumers()[t] {
        let kind = model.builtin(&sg.operators[p]);
        let tied = crate::rules::rule_for(kind)
            .is_some_and(|r| r.output == crate::rules::Output::Shared || r.tied_inputs);
        if fates[s][p] != Fate::Quantized || !tied || super::recurrent::own_operand(kind, pos) {
            continue;
        }
        params
            .requant
            .entry((s, p, pos))
            .or_insert_with(|| old.clone());
    }
}
