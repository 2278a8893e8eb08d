//! Resource variables in the full-integer modes: the state of streaming models.
//!
//! `READ_VARIABLE` and `ASSIGN_VARIABLE` copy bytes (LiteRT's `read_variable.cc`,
//! `assign_variable.cc`): the runtime neither converts nor checks parameters, and a
//! READ fails unless its output tensor has the type the variable holds. So every tensor
//! that goes into or comes out of one variable must carry the same integer type and the
//! same scale and zero point — one set per variable, shared across subgraphs (the
//! CALL_ONCE init subgraph assigns the initial value, the main subgraph reads and
//! assigns the state). This module owns those decisions; the engine (`integer.rs`)
//! calls it at three points:
//!
//! 1. [`widen_ranges`], before planning: the range of every tensor read from or
//!    assigned to a variable becomes the union over all of them (calibrated values
//!    flowing through READ/ASSIGN, plus the initial constants), so whichever group the
//!    engine puts them in covers the whole variable;
//! 2. [`consistent_fates`], after the fates: a variable is integer everywhere or float
//!    everywhere (one READ or ASSIGN left float makes all of that variable's float);
//! 3. [`unify`], after the parameters: the variable's parameters are those of its READ
//!    outputs (they must agree), an ASSIGN whose value has other parameters gets a
//!    requantizing QUANTIZE on that edge, and constant initial values are quantized
//!    with the variable's parameters.
//!
//! VAR_HANDLE, READ_VARIABLE and ASSIGN_VARIABLE keep their operator (version 1); only
//! the types of the tensors around them change.

use std::collections::BTreeMap;

use crate::calib::{Ranges, TensorRange};
use crate::error::{Error, Loc, Result};
use crate::fb::{BuiltinOperator as Op, BuiltinOptions as O, TensorType};
use crate::ir::{Model, QuantParams};

use super::math;
use super::report::{Fate, FloatReason};

/// (container, shared_name) of a variable.
type Key = (String, String);

/// Where one variable is read and assigned.
#[derive(Debug, Default)]
struct Uses {
    /// (subgraph, READ_VARIABLE operator, output tensor).
    reads: Vec<(usize, usize, usize)>,
    /// (subgraph, ASSIGN_VARIABLE operator, value tensor).
    assigns: Vec<(usize, usize, usize)>,
}

/// Every variable with its READ/ASSIGN operators, found through the VAR_HANDLE output
/// each one reads (in the same subgraph).
fn variables(model: &Model) -> BTreeMap<Key, Uses> {
    let mut out: BTreeMap<Key, Uses> = BTreeMap::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        let mut handle_of: BTreeMap<usize, Key> = BTreeMap::new();
        for op in &sg.operators {
            if model.builtin(op) != Op::VarHandle {
                continue;
            }
            let key = match &op.builtin_options {
                Some(O::VarHandleOptions(o)) => (
                    o.container.clone().unwrap_or_default(),
                    o.shared_name.clone().unwrap_or_default(),
                ),
                _ => Key::default(),
            };
            if let Some(&h) = op.outputs.first()
                && let Ok(h) = usize::try_from(h)
            {
                handle_of.insert(h, key);
            }
        }
        for (oi, op) in sg.operators.iter().enumerate() {
            let b = model.builtin(op);
            if !matches!(b, Op::ReadVariable | Op::AssignVariable) {
                continue;
            }
            let key = op
                .inputs
                .first()
                .and_then(|&h| usize::try_from(h).ok())
                .and_then(|h| handle_of.get(&h));
            let (Some(key), Some(t)) = (key, tensor_at(op, b)) else {
                continue;
            };
            let uses = out.entry(key.clone()).or_default();
            if b == Op::ReadVariable {
                uses.reads.push((si, oi, t));
            } else {
                uses.assigns.push((si, oi, t));
            }
        }
    }
    out
}

/// READ_VARIABLE's output, ASSIGN_VARIABLE's value.
fn tensor_at(op: &crate::ir::Operator, b: Op) -> Option<usize> {
    let t = if b == Op::ReadVariable {
        op.outputs.first()
    } else {
        op.inputs.get(1)
    };
    t.and_then(|&t| usize::try_from(t).ok())
}

fn name(key: &Key) -> String {
    if key.0.is_empty() {
        format!("variable {:?}", key.1)
    } else {
        format!("variable {:?}/{:?}", key.0, key.1)
    }
}

/// Step 1: every float32 tensor read from or assigned to a variable gets the union of
/// the ranges of all of them (constants by their values). Tensors never calibrated stay
/// without a range (the variable then stays float).
pub fn widen_ranges(model: &Model, ranges: &Ranges) -> Ranges {
    let mut out = ranges.clone();
    for uses in variables(model).values() {
        let members: Vec<(usize, usize)> = uses
            .reads
            .iter()
            .chain(&uses.assigns)
            .map(|&(si, _, t)| (si, t))
            .collect();
        if members
            .iter()
            .any(|&(si, t)| model.subgraphs[si].tensors[t].dtype != TensorType::Float32)
        {
            continue;
        }
        let mut union: Option<(f32, f32)> = None;
        let mut widen = |lo: f32, hi: f32| {
            union = Some(match union {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        };
        for &(si, t) in &members {
            let tensor = &model.subgraphs[si].tensors[t];
            if model.is_constant(tensor) {
                let v = math::f32_values(model.tensor_data(tensor));
                for x in v.iter().filter(|x| x.is_finite()) {
                    widen(*x, *x);
                }
            } else if let Some(r) = ranges.get(si, t) {
                widen(r.min, r.max);
            }
        }
        let Some((lo, hi)) = union else { continue };
        for &(si, t) in &members {
            let tensor = &model.subgraphs[si].tensors[t];
            if model.is_constant(tensor) {
                continue;
            }
            // A tensor never calibrated (not run) has no range to widen.
            if let Ok(i) = out
                .tensors
                .binary_search_by(|r| (r.subgraph, r.tensor).cmp(&(si, t)))
            {
                out.tensors[i].min = lo;
                out.tensors[i].max = hi;
            }
        }
    }
    out.tensors
        .sort_by_key(|r: &TensorRange| (r.subgraph, r.tensor));
    out
}

/// Step 2: a variable whose READ or ASSIGN operators do not all get quantized is left
/// float everywhere (a float READ of an integer variable fails at run time).
pub fn consistent_fates(model: &Model, fates: &mut [Vec<Fate>]) {
    for (key, uses) in variables(model) {
        let ops: Vec<(usize, usize)> = uses
            .reads
            .iter()
            .chain(&uses.assigns)
            .map(|&(si, oi, _)| (si, oi))
            .collect();
        let Some(&(fs, fo)) = ops
            .iter()
            .find(|&&(si, oi)| fates[si][oi] != Fate::Quantized)
        else {
            continue;
        };
        let why = match &fates[fs][fo] {
            Fate::Float { reason } => Some(Box::new(reason.clone())),
            Fate::Quantized => None,
        };
        for &(si, oi) in &ops {
            if fates[si][oi] == Fate::Quantized {
                fates[si][oi] = Fate::Float {
                    reason: FloatReason::Variable {
                        name: name(&key),
                        subgraph: fs,
                        operator: fo,
                        why: why.clone(),
                    },
                };
            }
        }
    }
}

/// What [`unify`] decided.
#[derive(Debug, Default)]
pub struct Unified {
    /// `(subgraph, ASSIGN_VARIABLE operator, 1)` → the variable's parameters, where the
    /// value's own parameters differ (requantized on that edge).
    pub requant: Vec<((usize, usize, usize), QuantParams)>,
    /// Constant values assigned to a variable (init subgraphs) → its parameters.
    pub constants: BTreeMap<(usize, usize), QuantParams>,
}

/// Step 3: one set of parameters per quantized variable. `activations` are the
/// parameters the engine chose (keyed by subgraph and original tensor index).
pub fn unify(
    model: &Model,
    fates: &[Vec<Fate>],
    activations: &BTreeMap<(usize, usize), QuantParams>,
) -> Result<Unified> {
    let mut out = Unified::default();
    for (key, uses) in variables(model) {
        let quantized = uses
            .reads
            .iter()
            .chain(&uses.assigns)
            .all(|&(si, oi, _)| fates[si][oi] == Fate::Quantized);
        if !quantized {
            continue;
        }
        // The variable's parameters: its READ outputs', else its first assigned
        // activation's.
        let mut chosen: Option<(QuantParams, (usize, usize))> = None;
        for &(si, _, t) in &uses.reads {
            let Some(p) = activations.get(&(si, t)) else {
                continue;
            };
            match &chosen {
                None => chosen = Some((p.clone(), (si, t))),
                Some((q, (s0, t0))) if q != p => {
                    return Err(Error::unsupported(
                        Loc::tensor(si, t),
                        format!(
                            "{} is read into tensors that need different quantization \
                             parameters (subgraph {s0} tensor {t0} and this one, through \
                             the operators they feed); a variable holds one set",
                            name(&key)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if chosen.is_none() {
            chosen = uses
                .assigns
                .iter()
                .find_map(|&(si, _, t)| activations.get(&(si, t)).map(|p| (p.clone(), (si, t))));
        }
        let Some((p, _)) = chosen else { continue };
        for &(si, oi, t) in &uses.assigns {
            let tensor = &model.subgraphs[si].tensors[t];
            if model.is_constant(tensor) {
                out.constants.insert((si, t), p.clone());
            } else if activations.get(&(si, t)) != Some(&p) {
                out.requant.push(((si, oi, 1), p.clone()));
            }
        }
    }
    Ok(out)
}
