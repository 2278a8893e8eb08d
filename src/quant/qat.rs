//! Quantization-aware-trained (QAT) models: the trained quantization parameters are in
//! the float graph as QUANTIZE→DEQUANTIZE pairs (TF's converter without optimizations
//! writes them through UINT8 tensors), as FAKE_QUANT operators, or as int8 constants
//! behind DEQUANTIZE. This pass reads those parameters, folds the pairs away and returns
//! them as [`Overrides`]: the full-integer engine then uses exactly the trained scales
//! and zero points instead of calibrated ranges.
//!
//! Conventions of the integer model: activations int8 = uint8 − 128 with the same scale;
//! weights symmetric int8 (zero point 0), so a UINT8 weight pair must have zero point 128.

use std::collections::BTreeMap;

use crate::error::{Error, Loc, Result};
use crate::fb::{self, BuiltinOperator as Op, TensorType};
use crate::ir::{Model, QuantParams};

use super::math;
use super::report::Report;
use super::scheme::{self, Width, fake_quant_params};

/// Trained parameters per tensor, keyed by (subgraph, tensor) of the folded model.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Integer activation parameters (int8 convention).
    pub activations: BTreeMap<(usize, usize), QuantParams>,
    /// Symmetric weight scales (zero points 0), per channel along `quantized_dimension`.
    pub weights: BTreeMap<(usize, usize), QuantParams>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.activations.is_empty() && self.weights.is_empty()
    }
}

/// Counts the fake-quantization points of a model (QUANTIZE→DEQUANTIZE pairs and
/// FAKE_QUANT operators), to tell a QAT model from a plain float one.
pub fn count_fake_quant(model: &Model) -> usize {
    let mut n = 0;
    for sg in &model.subgraphs {
        let consumers = sg.consumers();
        for op in &sg.operators {
            match model.builtin(op) {
                Op::FakeQuant => n += 1,
                Op::Quantize => {
                    let Some(&q) = op.outputs.first() else {
                        continue;
                    };
                    let Ok(q) = usize::try_from(q) else { continue };
                    if !consumers[q].is_empty()
                        && consumers[q]
                            .iter()
                            .all(|&(c, _)| model.builtin(&sg.operators[c]) == Op::Dequantize)
                    {
                        n += 1;
                    }
                }
                _ => {}
            }
        }
    }
    n
}

/// Folds every fake-quantization point of every subgraph and returns the trained
/// parameters. The model is left a plain float model (plus the unused tensors that the
/// prune pass removes).
pub fn fold_fake_quant(model: &mut Model, report: &mut Report) -> Result<Overrides> {
    let mut out = Overrides::default();
    for si in 0..model.subgraphs.len() {
        let mut f = SubgraphFold {
            si,
            remove: vec![false; model.subgraphs[si].operators.len()],
            consumers: model.subgraphs[si].consumers(),
            merges: Vec::new(),
            out: &mut out,
        };
        for oi in 0..model.subgraphs[si].operators.len() {
            let op = &model.subgraphs[si].operators[oi];
            let at = Loc::op(si, oi).then(model.op_display_name(op));
            match model.builtin(op) {
                Op::Quantize => f.quantize_pair(model, oi, &at)?,
                Op::FakeQuant => f.fake_quant(model, oi, &at)?,
                Op::Dequantize => f.int8_weight(model, oi),
                _ => {}
            }
        }
        let (remove, merges) = (f.remove, f.merges);
        for (src, dst) in merges {
            let (keep, drop) = merge_tensors(model, si, src, dst);
            for map in [&mut out.activations, &mut out.weights] {
                if let Some(p) = map.remove(&(si, drop)) {
                    map.insert((si, keep), p);
                }
            }
        }
        let n = remove.iter().filter(|&&r| r).count();
        model.subgraphs[si].remove_ops(&remove);
        if n > 0 {
            report.note(format!(
                "subgraph {si}: folded {n} fake-quantization operators; {} activation and {} weight parameter sets taken from training",
                out.activations.keys().filter(|k| k.0 == si).count(),
                out.weights.keys().filter(|k| k.0 == si).count()
            ));
        }
    }
    Ok(out)
}

/// The fold of one subgraph: operators to remove, tensors to merge, and the
/// parameters found.
struct SubgraphFold<'a> {
    si: usize,
    remove: Vec<bool>,
    consumers: Vec<Vec<(usize, usize)>>,
    /// (float input, float output) pairs that become one tensor.
    merges: Vec<(usize, usize)>,
    out: &'a mut Overrides,
}

/// The first input and output of an operator.
fn in_out(op: &crate::ir::Operator) -> Option<(usize, usize)> {
    Some((
        op.inputs.first().and_then(|&t| usize::try_from(t).ok())?,
        op.outputs.first().and_then(|&t| usize::try_from(t).ok())?,
    ))
}

impl SubgraphFold<'_> {
    /// Records trained parameters `p` of tensor `src`: a weight's when it is constant.
    fn record(&mut self, model: &Model, src: usize, p: QuantParams, at: &Loc) -> Result<()> {
        let s = &model.subgraphs[self.si].tensors[src];
        if model.is_constant(s) {
            let w = weight_params(&p, s, at)?;
            self.out.weights.insert((self.si, src), w);
        } else if p.scale.len() > 1 || p.zero_point.len() > 1 {
            // (A fake-quantization point whose float input is an activation but whose
            // parameters are a weight's: LiteRT quantizes activations per tensor.)
            return Err(Error::unsupported(
                at.clone(),
                format!(
                    "{} per-axis scales on activation {:?}: activations take one scale and \
                     zero point (per tensor)",
                    p.scale.len(),
                    s.name
                ),
            ));
        } else {
            self.out.activations.insert((self.si, src), p);
        }
        Ok(())
    }

    /// A float QUANTIZE read only by DEQUANTIZE operators.
    fn quantize_pair(&mut self, model: &Model, oi: usize, at: &Loc) -> Result<()> {
        let sg = &model.subgraphs[self.si];
        let Some((src, q)) = in_out(&sg.operators[oi]) else {
            return Ok(());
        };
        let (s, qt) = (&sg.tensors[src], &sg.tensors[q]);
        if s.dtype != TensorType::Float32
            || self.consumers[q].is_empty()
            || !self.consumers[q]
                .iter()
                .all(|&(c, _)| model.builtin(&sg.operators[c]) == Op::Dequantize)
        {
            return Ok(());
        }
        let Some(params) = qt.quantized().cloned() else {
            return Ok(());
        };
        let int8 = to_int8_convention(&params, qt.dtype, at)?;
        self.record(model, src, int8, at)?;
        self.remove[oi] = true;
        for &(c, _) in &self.consumers[q] {
            self.remove[c] = true;
            if let Some(&d) = sg.operators[c].outputs.first() {
                self.merges.push((src, d as usize));
            }
        }
        Ok(())
    }

    fn fake_quant(&mut self, model: &Model, oi: usize, at: &Loc) -> Result<()> {
        let op = &model.subgraphs[self.si].operators[oi];
        let Some((src, dst)) = in_out(op) else {
            return Ok(());
        };
        let Some(fb::BuiltinOptions::FakeQuantOptions(o)) = &op.builtin_options else {
            return Err(Error::malformed(
                at.clone(),
                "FAKE_QUANT without its options",
            ));
        };
        let p = fake_quant_params(o.min, o.max, o.num_bits, o.narrow_range, at)?;
        self.record(model, src, p, at)?;
        self.remove[oi] = true;
        self.merges.push((src, dst));
        Ok(())
    }

    /// An int8 weight already quantized by the exporter: back to float values on its
    /// grid, with its scales as the override.
    fn int8_weight(&mut self, model: &mut Model, oi: usize) {
        let si = self.si;
        let sg = &model.subgraphs[si];
        let Some((src, dst)) = in_out(&sg.operators[oi]) else {
            return;
        };
        let s = &sg.tensors[src];
        if s.dtype != TensorType::Int8 || !model.is_constant(s) {
            return;
        }
        let Some(p) = s.quantized().cloned() else {
            return;
        };
        if p.zero_point.iter().any(|&z| z != 0) {
            return; // asymmetric int8 weights: leave as they are
        }
        if s.shape != sg.tensors[dst].shape {
            return; // the DEQUANTIZE's output takes the values: it must have their shape
        }
        let ch = math::Channels::new(
            &s.shape,
            p.is_per_axis().then_some(p.quantized_dimension as usize),
        );
        let values: Vec<f32> = model
            .tensor_data(s)
            .iter()
            .enumerate()
            .map(|(i, &b)| b as i8 as f32 * p.scale[ch.of(i)])
            .collect();
        let name = s.name.clone();
        let buffer = model.add_buffer(math::f32_bytes(&values));
        let t = &mut model.subgraphs[si].tensors[dst];
        t.buffer = buffer;
        t.name = name;
        self.out.weights.insert((si, dst), p);
        self.remove[oi] = true;
    }
}

/// Makes `a` and `b` one tensor: the one that is a subgraph input or output (or else
/// `a`) is kept, every reference to the other is redirected to it, and the overrides
/// follow. The dropped tensor becomes unused (pruned later).
fn merge_tensors(model: &mut Model, si: usize, a: usize, b: usize) -> (usize, usize) {
    let sg = &model.subgraphs[si];
    let io = |t: usize| sg.inputs.contains(&(t as i32)) || sg.outputs.contains(&(t as i32));
    let (keep, drop) = if io(b) && !io(a) { (b, a) } else { (a, b) };
    if keep != a {
        // The kept output tensor takes the float constant's data (never happens for
        // activations, which have no data) and the shape of the producer's tensor.
        let shape = model.subgraphs[si].tensors[a].shape.clone();
        let t = &mut model.subgraphs[si].tensors[keep];
        if t.shape.is_empty() {
            t.shape = shape;
        }
    }
    let sg = &mut model.subgraphs[si];
    let fix = |t: &mut i32| {
        if *t == drop as i32 {
            *t = keep as i32;
        }
    };
    for op in &mut sg.operators {
        op.inputs.iter_mut().for_each(fix);
        op.outputs.iter_mut().for_each(fix);
    }
    sg.inputs.iter_mut().for_each(fix);
    sg.outputs.iter_mut().for_each(fix);
    for s in model
        .signature_defs
        .iter_mut()
        .filter(|s| s.subgraph_index as usize == si)
    {
        for m in s.inputs.iter_mut().chain(s.outputs.iter_mut()) {
            if m.tensor_index as usize == drop {
                m.tensor_index = keep as u32;
            }
        }
    }
    (keep, drop)
}

/// Parameters of a UINT8 or INT8 (or INT16) fake-quant tensor in the int8 convention.
fn to_int8_convention(p: &QuantParams, dtype: TensorType, at: &Loc) -> Result<QuantParams> {
    let mut p = p.clone();
    match dtype {
        TensorType::Uint8 => p.zero_point.iter_mut().for_each(|z| *z -= 128),
        TensorType::Int8 | TensorType::Int16 => {}
        other => {
            return Err(Error::unsupported(
                at.clone(),
                format!(
                    "fake quantization through {} is not supported",
                    fb::dtype_name(other)
                ),
            ));
        }
    }
    if p.zero_point.len() != p.scale.len() {
        p.zero_point = vec![p.zero_point.first().copied().unwrap_or(0); p.scale.len()];
    }
    Ok(p)
}

/// Weight parameters must be symmetric (int8 zero point 0); per-axis when there are
/// several scales. Scalar shapes (TF writes `[]` for dense weights) take the weight's.
fn weight_params(p: &QuantParams, weight: &crate::ir::Tensor, at: &Loc) -> Result<QuantParams> {
    if p.zero_point.iter().any(|&z| z != 0) {
        return Err(Error::unsupported(
            at.clone(),
            format!(
                "weight {:?} was trained with asymmetric quantization (zero point {}); int8 kernels need symmetric weights",
                weight.name,
                p.zero_point[0] + 128
            ),
        ));
    }
    let mut w = QuantParams::per_axis(p.scale.clone(), vec![0; p.scale.len()], 0);
    if p.scale.len() > 1 {
        w.quantized_dimension = p.quantized_dimension;
    }
    Ok(w)
}

/// Ranges for the engine in QAT mode: the range each trained parameter set represents,
/// spread across operators whose kernels share parameters between inputs and outputs
/// (a MAX_POOL_2D between two fake-quant points needs none of its own), then calibrated
/// ranges for whatever is still uncovered. Trained parameters themselves are applied as
/// overrides; these ranges only decide which operators can be quantized.
pub fn ranges_with_overrides(
    model: &Model,
    overrides: &Overrides,
    calibrated: Option<&crate::calib::Ranges>,
    width: Width,
) -> crate::calib::Ranges {
    use crate::calib::{Ranges, TensorRange};
    use crate::rules::{self, Output, Role};
    let mut known: BTreeMap<(usize, usize), (f32, f32)> = BTreeMap::new();
    for (&k, p) in &overrides.activations {
        known.insert(k, scheme::represented_range(p, width));
    }
    // Same-scale operators pass ranges both ways until nothing changes.
    loop {
        let mut changed = false;
        for (si, sg) in model.subgraphs.iter().enumerate() {
            for op in &sg.operators {
                let Some(rule) = rules::rule_for(model.builtin(op)) else {
                    continue;
                };
                if rule.output != Output::Shared {
                    continue;
                }
                let members: Vec<usize> = op
                    .inputs
                    .iter()
                    .enumerate()
                    .filter(|&(pos, _)| rule.integer_role(pos) == Role::Activation)
                    .filter_map(|(_, &t)| usize::try_from(t).ok())
                    .chain(op.outputs.iter().filter_map(|&t| usize::try_from(t).ok()))
                    .filter(|&t| !model.is_constant(&sg.tensors[t]))
                    .collect();
                let Some(r) = members.iter().find_map(|&t| known.get(&(si, t)).copied()) else {
                    continue;
                };
                for &t in &members {
                    if let std::collections::btree_map::Entry::Vacant(e) = known.entry((si, t)) {
                        e.insert(r);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut tensors: Vec<TensorRange> = known
        .into_iter()
        .map(|((si, t), (min, max))| TensorRange {
            subgraph: si,
            tensor: t,
            name: model.subgraphs[si].tensors[t].name.clone(),
            min,
            max,
            sentinels: Default::default(),
            observer: None,
        })
        .collect();
    if let Some(c) = calibrated {
        for r in &c.tensors {
            if !tensors
                .iter()
                .any(|t| (t.subgraph, t.tensor) == (r.subgraph, r.tensor))
            {
                tensors.push(r.clone());
            }
        }
    }
    tensors.sort_by_key(|t| (t.subgraph, t.tensor));
    Ranges {
        observer: if calibrated.is_some() {
            "qat+calibration"
        } else {
            "qat"
        }
        .into(),
        samples: calibrated.map_or(0, |c| c.samples),
        tensors,
    }
}
