//! Step 3: rewiring. Every activation has a float and an integer version; which one
//! keeps the original tensor index depends on its producer and on the model interface
//! (subgraph inputs and outputs keep their index so signatures stay right). Quantized
//! operators read and write integer versions, float operators float ones; the missing
//! versions are created on first use, with the QUANTIZE or DEQUANTIZE that computes
//! them placed right after the producer. [`Rewire`] owns that state for one subgraph.

use std::collections::{BTreeMap, HashMap};

use crate::error::Result;
use crate::fb::{BuiltinOperator as Op, TensorType};
use crate::ir::{Model, Operator, QuantParams, Tensor};
use crate::rules;

use super::super::report::{Fate, Report};
use super::super::scheme::Width;
use super::constants::{Constants, Site};
use super::kernel_options::fix_options;
use super::plan::Params;
use super::{IntegerOptions, Interface, interface};

/// How the integer and float versions of an activation map to tensor indices.
#[derive(Debug, Clone, Copy)]
struct Versions {
    float: Option<usize>,
    int: Option<usize>,
}

/// Rewires every subgraph of `model` to the decided fates and parameters.
pub(super) fn apply(
    model: &mut Model,
    fates: &[Vec<Fate>],
    params: &Params,
    opts: &IntegerOptions,
    report: &mut Report,
) -> Result<()> {
    for si in 0..model.subgraphs.len() {
        let output_layers = crate::quant::ptq::clipping::output_layers(model, si);
        let mut rw = Rewire::new(model, si, &fates[si], params, opts);
        let mut constants = Constants::new(params, opts, output_layers);
        for oi in 0..rw.model.subgraphs[si].operators.len() {
            rw.rewire_op(oi, &mut constants, report)?;
        }
        rw.finish()?;
    }
    Ok(())
}

/// The rewiring state of one subgraph.
struct Rewire<'a> {
    model: &'a mut Model,
    si: usize,
    fates: &'a [Fate],
    params: &'a Params,
    opts: &'a IntegerOptions,
    /// Tensors before rewiring; new ones are versions and quantized constants.
    n_orig: usize,
    /// The producer of each original tensor.
    producers: Vec<Option<usize>>,
    versions: Vec<Versions>,
    /// Activations whose original index is the integer version.
    int_owned: Vec<bool>,
    /// Subgraph 0 of a model with an integer (or uint8) interface.
    integer_io: bool,
    /// Operators to insert after each original operator (`None`: at the start).
    new_ops_after: BTreeMap<Option<usize>, Vec<Operator>>,
    /// Copies of an activation at another width or parameters made for its readers,
    /// by (original tensor, integer type, scale bits, zero points): readers that need
    /// the same copy share one QUANTIZE.
    copies: HashMap<CopyKey, usize>,
}

/// What identifies a copy of an activation (see [`Rewire::copies`]).
type CopyKey = (usize, TensorType, Vec<u32>, Vec<i64>);

fn copy_key(t: usize, dtype: TensorType, p: &QuantParams) -> CopyKey {
    (
        t,
        dtype,
        p.scale.iter().map(|s| s.to_bits()).collect(),
        p.zero_point.clone(),
    )
}

impl<'a> Rewire<'a> {
    /// Decides which version keeps each activation's original index.
    fn new(
        model: &'a mut Model,
        si: usize,
        fates: &'a [Fate],
        params: &'a Params,
        opts: &'a IntegerOptions,
    ) -> Self {
        let sg = &model.subgraphs[si];
        let n_orig = sg.tensors.len();
        let producers = sg.producers();
        let integer_io = si == 0 && opts.interface != Interface::Float;
        let mut versions: Vec<Versions> = (0..n_orig)
            .map(|t| Versions {
                float: Some(t),
                int: None,
            })
            .collect();
        let mut int_owned = vec![false; n_orig];
        for (&(_, t), _) in params.activations.range((si, 0)..(si + 1, 0)) {
            let io = sg.inputs.contains(&(t as i32)) || sg.outputs.contains(&(t as i32));
            let produced_int = producers[t].is_some_and(|p| {
                fates[p] == Fate::Quantized || params.carried.writes_integer(model, si, p, t)
            });
            let original_is_int = if io {
                // Cond/body boundary tensors of a loop carried as integers.
                integer_io || params.carried.boundary.contains(&(si, t))
            } else {
                produced_int || (producers[t].is_none() && integer_io)
            };
            if original_is_int {
                versions[t] = Versions {
                    float: None,
                    int: Some(t),
                };
                int_owned[t] = true;
            }
        }
        Rewire {
            model,
            si,
            fates,
            params,
            opts,
            n_orig,
            producers,
            versions,
            int_owned,
            integer_io,
            new_ops_after: BTreeMap::new(),
            copies: HashMap::new(),
        }
    }

    fn act_params(&self, t: usize) -> QuantParams {
        self.params.activations[&(self.si, t)].clone()
    }

    fn has_params(&self, t: usize) -> bool {
        self.params.activations.contains_key(&(self.si, t))
    }

    /// Where conversions of original tensor `t` go: after its producer.
    fn place_after(&self, t: usize) -> Option<usize> {
        self.producers.get(t).copied().flatten()
    }

    /// Adds `tensor` and an operator `code` from `src` to it, inserted after `after`.
    fn convert(&mut self, code: Op, src: usize, tensor: Tensor, after: Option<usize>) -> usize {
        let ti = self.model.subgraphs[self.si].add_tensor(tensor) as usize;
        let code = self.model.ensure_opcode(code, 1);
        self.new_ops_after
            .entry(after)
            .or_default()
            .push(Operator::new(code, vec![src as i32], vec![ti as i32]));
        ti
    }

    /// The integer version of activation `t`, made by a QUANTIZE if missing.
    fn ensure_int(&mut self, t: usize) -> usize {
        if let Some(q) = self.versions[t].int {
            return q;
        }
        let f = self.versions[t].float.expect("a float version exists");
        let p = self.act_params(t);
        let dtype = self.params.widths.tensor(self.si, t).dtype();
        let q = twin(
            &self.model.subgraphs[self.si].tensors[f],
            "/quantized",
            dtype,
            Some(p),
        );
        let qi = self.convert(Op::Quantize, f, q, self.place_after(t));
        self.versions[t].int = Some(qi);
        qi
    }

    /// The float version of activation `t`, made by a DEQUANTIZE if missing.
    fn ensure_float(&mut self, t: usize) -> usize {
        if let Some(f) = self.versions[t].float {
            return f;
        }
        let q = self.versions[t].int.expect("an integer version exists");
        let f = twin(
            &self.model.subgraphs[self.si].tensors[q],
            "/dequantized",
            TensorType::Float32,
            None,
        );
        let fi = self.convert(Op::Dequantize, q, f, self.place_after(t));
        self.versions[t].float = Some(fi);
        fi
    }

    /// A QUANTIZE from integer tensor `src` (the version of original tensor `t`) to a
    /// new integer tensor with parameters `p` of width `width` (given: `src` may be an
    /// original index whose type changes only after rewiring).
    fn requantize(&mut self, t: usize, src: usize, p: QuantParams, width: Width) -> usize {
        let dtype = width.dtype();
        let s = &self.model.subgraphs[self.si].tensors[src];
        let r = twin(s, "/requantized", dtype, Some(p));
        self.convert(Op::Quantize, src, r, self.place_after(t))
    }

    /// The tensor quantized operator `oi` writes for output `t`: its integer version, or
    /// where the original index is float (an output of a float interface) a new
    /// integer tensor that a DEQUANTIZE after `oi` turns into it.
    fn int_output(&mut self, oi: usize, t: usize) -> usize {
        if let Some(i) = self.versions[t].int {
            return i;
        }
        let dtype = self.params.widths.tensor(self.si, t).dtype();
        let qt = twin(
            &self.model.subgraphs[self.si].tensors[t],
            "/quantized",
            dtype,
            Some(self.act_params(t)),
        );
        let qi = self.model.subgraphs[self.si].add_tensor(qt) as usize;
        self.versions[t].int = Some(qi);
        let code = self.model.ensure_opcode(Op::Dequantize, 1);
        self.new_ops_after
            .entry(Some(oi))
            .or_default()
            .push(Operator::new(code, vec![qi as i32], vec![t as i32]));
        qi
    }

    /// Points operator `oi` at the versions its fate needs, quantizing its constants.
    fn rewire_op(
        &mut self,
        oi: usize,
        constants: &mut Constants,
        report: &mut Report,
    ) -> Result<()> {
        let si = self.si;
        let q = self.fates[oi] == Fate::Quantized;
        if q {
            let width = self.params.widths.op(si, oi);
            fix_options(self.model, (si, oi), width, self.opts);
        }
        if let Some(carried) = self.params.carried.ops.get(&(si, oi)) {
            return self.rewire_loop(oi, carried, constants, report);
        }
        // The original operands are kept for parameter lookups.
        let outs = self.model.subgraphs[si].operators[oi].outputs.clone();
        let ins = self.model.subgraphs[si].operators[oi].inputs.clone();
        for (k, &t) in outs.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            if t >= self.n_orig || !self.has_params(t) {
                continue;
            }
            let target = if q {
                self.int_output(oi, t)
            } else {
                self.ensure_float(t)
            };
            self.model.subgraphs[si].operators[oi].outputs[k] = target as i32;
        }
        for (pos, &t) in ins.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            if t >= self.n_orig {
                continue;
            }
            // Recurrent hook: recurrent::apply quantizes an integer LSTM's operands.
            let kind = self.model.builtin(&self.model.subgraphs[si].operators[oi]);
            if q && super::recurrent::own_operand(kind, pos) {
                continue;
            }
            let target = if self.model.is_constant(&self.model.subgraphs[si].tensors[t]) {
                if !q {
                    continue;
                }
                let rule =
                    rules::rule_for(self.model.builtin(&self.model.subgraphs[si].operators[oi]))
                        .expect("quantized ops have rules");
                let site = Site {
                    si,
                    oi,
                    pos,
                    t,
                    rule,
                    orig_in: &ins,
                    orig_out: &outs,
                };
                match constants.quantize(self.model, &site, report)? {
                    Some(new) => new,
                    None => continue,
                }
            } else if !self.has_params(t) {
                continue;
            } else if q {
                self.int_input(oi, pos, t)
            } else {
                self.ensure_float(t)
            };
            self.model.subgraphs[si].operators[oi].inputs[pos] = target as i32;
        }
        Ok(())
    }

    /// A WHILE carrying integers at the positions of `carried` (with their parameters):
    /// it reads and writes integer versions there, float versions elsewhere.
    fn rewire_loop(
        &mut self,
        oi: usize,
        carried: &BTreeMap<usize, QuantParams>,
        constants: &mut Constants,
        report: &mut Report,
    ) -> Result<()> {
        let si = self.si;
        let outs = self.model.subgraphs[si].operators[oi].outputs.clone();
        let ins = self.model.subgraphs[si].operators[oi].inputs.clone();
        for (k, &t) in outs.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            if t >= self.n_orig || !self.has_params(t) {
                continue;
            }
            let target = if carried.contains_key(&k) {
                self.int_output(oi, t)
            } else {
                self.ensure_float(t)
            };
            self.model.subgraphs[si].operators[oi].outputs[k] = target as i32;
        }
        for (pos, &t) in ins.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            if t >= self.n_orig {
                continue;
            }
            let target = match carried.get(&pos) {
                Some(c) if self.model.is_constant(&self.model.subgraphs[si].tensors[t]) => {
                    constants.with_params(self.model, (si, t), c, report)
                }
                Some(_) if self.has_params(t) => self.int_input(oi, pos, t),
                Some(c) => {
                    // A float tensor only the WHILE reads as an integer (such as a state
                    // variable an LSTM updates in place): quantized right before the loop.
                    let f = self.versions[t].float.unwrap_or(t);
                    let dtype = self.opts.width.dtype();
                    let q = twin(
                        &self.model.subgraphs[si].tensors[f],
                        "/quantized",
                        dtype,
                        Some(c.clone()),
                    );
                    self.convert(Op::Quantize, f, q, oi.checked_sub(1))
                }
                None if self.has_params(t)
                    && !self.model.is_constant(&self.model.subgraphs[si].tensors[t]) =>
                {
                    self.ensure_float(t)
                }
                None => continue,
            };
            self.model.subgraphs[si].operators[oi].inputs[pos] = target as i32;
        }
        Ok(())
    }

    /// The integer tensor quantized operator `oi` reads as input `pos` (original `t`):
    /// its integer version, requantized where its group's parameters differ.
    fn int_input(&mut self, oi: usize, pos: usize, t: usize) -> usize {
        let key = (self.si, oi, pos);
        // Mixed widths: a float activation (a model input, a float operator's output)
        // that a reader of the other width needs is quantized for it directly, once
        // rounded, as that reader's width alone would (a comparison's ties stay ties).
        if let (Some(&width), Some(rp), false) = (
            self.params.requant_width.get(&key),
            self.params.requant.get(&key),
            self.int_owned[t],
        ) {
            return self.shared_copy(copy_key(t, width.dtype(), rp), |rw| {
                let f = rw.versions[t].float.expect("a float version exists");
                let q = twin(
                    &rw.model.subgraphs[rw.si].tensors[f],
                    "/quantized",
                    width.dtype(),
                    Some(rp.clone()),
                );
                rw.convert(Op::Quantize, f, q, rw.place_after(t))
            });
        }
        let i = self.ensure_int(t);
        match self.params.requant.get(&key) {
            Some(rp) => {
                let width = self
                    .params
                    .requant_width
                    .get(&key)
                    .copied()
                    .unwrap_or(self.opts.width);
                self.shared_copy(copy_key(t, width.dtype(), rp), |rw| {
                    rw.requantize(t, i, rp.clone(), width)
                })
            }
            None => i,
        }
    }

    /// The copy `key` names, made by `make` on first use and shared by later readers.
    fn shared_copy(&mut self, key: CopyKey, make: impl FnOnce(&mut Self) -> usize) -> usize {
        if let Some(&c) = self.copies.get(&key) {
            return c;
        }
        let c = make(self);
        self.copies.insert(key, c);
        c
    }

    /// Activations whose original index is the integer version (including the inputs
    /// and outputs of an integer interface) change type in place; a uint8 interface
    /// then turns its boundary tensors into uint8 with converting QUANTIZEs; the
    /// operator list is rebuilt with conversions after their producers.
    fn finish(mut self) -> Result<()> {
        let si = self.si;
        for t in (0..self.n_orig).filter(|&t| self.int_owned[t]) {
            let params = self.act_params(t);
            let dtype = self.params.widths.tensor(si, t).dtype();
            let tensor = &mut self.model.subgraphs[si].tensors[t];
            tensor.dtype = dtype;
            tensor.quant = Some(params);
        }
        if self.integer_io && self.opts.interface == Interface::Uint8 {
            interface::uint8_interface(
                self.model,
                si,
                &self.params.activations,
                &mut self.new_ops_after,
                self.n_orig,
            )?;
        }
        let mut ops = Vec::new();
        let old = std::mem::take(&mut self.model.subgraphs[si].operators);
        if let Some(first) = self.new_ops_after.remove(&None) {
            ops.extend(first);
        }
        for (oi, op) in old.into_iter().enumerate() {
            ops.push(op);
            if let Some(after) = self.new_ops_after.remove(&Some(oi)) {
                ops.extend(after);
            }
        }
        self.model.subgraphs[si].operators = ops;
        Ok(())
    }
}

/// A new tensor like `src` (shape, signature) named `src.name + suffix`, of `dtype`.
fn twin(src: &Tensor, suffix: &str, dtype: TensorType, quant: Option<QuantParams>) -> Tensor {
    let mut t = Tensor::new(format!("{}{suffix}", src.name), dtype, src.shape.clone());
    t.shape_signature = src.shape_signature.clone();
    t.quant = quant;
    t
}
