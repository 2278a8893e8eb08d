//! Step 4: constant inputs of quantized operators become new integer tensors, per role:
//! weights symmetric int8 per channel (trained scales in QAT; widened where a bias
//! would overflow), biases int32/int64 at `s_in × s_w`, int8 coefficients from their own
//! range, and constants read like activations with their same-scale group's parameters
//! or their own range. One tensor per distinct parameter set: a constant shared by
//! operators that need different parameters is duplicated, one that needs the same
//! parameters again is reused.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::fb::{self, TensorType};
use crate::ir::{Model, QuantParams, Tensor};
use crate::rules::{Output, Role, Rule};

use super::super::math::{self, Channels};
use super::super::ptq::{bias, clipping};
use super::super::report::{BiasCorrection, ClipStats, Report, TensorParams};
use super::super::scheme::{self, Width, activation_params};
use super::kernel_options::bias_bits_for;
use super::plan::{Params, data_range, shared_anchor_input};
use super::{IntegerOptions, tensor_ref};

/// One constant operand: input `pos` (tensor `t`) of quantized operator `oi` of
/// subgraph `si`, with the operator's original operand lists (activation parameters are
/// keyed by original indices; the operator may already read or write integer versions).
pub(super) struct Site<'a> {
    pub si: usize,
    pub oi: usize,
    pub pos: usize,
    pub t: usize,
    pub rule: &'static Rule,
    pub orig_in: &'a [i32],
    pub orig_out: &'a [i32],
}

/// A quantized constant before it becomes a tensor.
struct Quantized {
    /// `weight`, `bias` or `constant` (report).
    kind: &'static str,
    dtype: TensorType,
    data: Vec<u8>,
    qp: QuantParams,
    /// Set when the data depend on the operator, not only on the parameters (a
    /// bias-corrected bias): such a tensor is reused only for the same data.
    data_key: Option<u64>,
}

/// Quantizes the constants of one run, reusing a tensor when the same constant needs
/// the same parameters again.
pub(super) struct Constants<'a> {
    params: &'a Params,
    opts: &'a IntegerOptions,
    cache: HashMap<(usize, String), usize>,
    /// The subgraph's output layers ([`clipping::output_layers`]): their weights keep
    /// min/max scales under `--weight-clipping mse-hidden`.
    output_layers: HashSet<usize>,
}

impl<'a> Constants<'a> {
    pub fn new(
        params: &'a Params,
        opts: &'a IntegerOptions,
        output_layers: HashSet<usize>,
    ) -> Self {
        Constants {
            params,
            opts,
            cache: HashMap::new(),
            output_layers,
        }
    }

    /// Quantizes the constant at `site` as its role requires and returns the new tensor.
    /// `None` leaves the input as it is (non-real inputs, non-float constants).
    pub fn quantize(
        &mut self,
        model: &mut Model,
        site: &Site,
        report: &mut Report,
    ) -> Result<Option<usize>> {
        let tensor = model.subgraphs[site.si].tensors[site.t].clone();
        if tensor.dtype != TensorType::Float32 {
            return Ok(None);
        }
        let values = math::f32_values(model.tensor_data(&tensor));
        let rule = site.rule;
        let q = match rule.integer_role(site.pos) {
            Role::NonReal => return Ok(None),
            Role::Weight { axis } => self.weight(model, site, axis, &values, report),
            Role::Bias { input, weight } => {
                self.bias(model, site, (input, weight), &values, report)?
            }
            Role::Coefficient => {
                let (lo, hi) = data_range(model, &tensor);
                let qp = activation_params(lo, hi, Width::Int8);
                let data = scheme::affine_bytes(&values, &qp, Width::Int8);
                Quantized {
                    kind: "constant",
                    dtype: TensorType::Int8,
                    data,
                    qp,
                    data_key: None,
                }
            }
            _ => self.activation_like(model, site, &values),
        };
        Ok(Some(self.store(
            model,
            (site.si, site.t),
            &tensor,
            q,
            report,
        )))
    }

    /// Constant `t` of subgraph `si` quantized with the given parameters (the initial
    /// value of a tensor carried through a loop, `loops.rs`).
    pub fn with_params(
        &mut self,
        model: &mut Model,
        (si, t): (usize, usize),
        qp: &QuantParams,
        report: &mut Report,
    ) -> usize {
        let tensor = model.subgraphs[si].tensors[t].clone();
        let values = math::f32_values(model.tensor_data(&tensor));
        let width = self.opts.width;
        let q = Quantized {
            kind: "constant",
            dtype: width.dtype(),
            data: scheme::affine_bytes(&values, qp, width),
            qp: qp.clone(),
            data_key: None,
        };
        self.store(model, (si, t), &tensor, q, report)
    }

    /// Activation parameters the operator reads at its original input `pos`: the
    /// requantized copy's where the edge is requantized, else the tensor's own.
    fn act_params(&self, site: &Site, pos: usize) -> Option<QuantParams> {
        if let Some(p) = self.params.requant.get(&(site.si, site.oi, pos)) {
            return Some(p.clone());
        }
        self.params
            .activations
            .get(&(site.si, tensor_ref(site.orig_in, pos)?))
            .cloned()
    }

    /// The width the operator at `site` computes in.
    fn op_width(&self, site: &Site) -> Width {
        self.params.widths.op(site.si, site.oi)
    }

    /// The per-channel axis of a weight read at `role` (`None`: per tensor).
    fn weight_axis(&self, axis: Option<i32>, shape: &[i32]) -> Option<usize> {
        axis.filter(|_| !self.opts.per_tensor)
            .and_then(|a| usize::try_from(a).ok())
            .filter(|&a| a < shape.len())
    }

    fn weight(
        &self,
        model: &Model,
        site: &Site,
        axis: Option<i32>,
        values: &[f32],
        report: &mut Report,
    ) -> Quantized {
        let tensor = &model.subgraphs[site.si].tensors[site.t];
        let axis = self.weight_axis(axis, &tensor.shape);
        let trained = self.opts.overrides.weights.get(&(site.si, site.t));
        let axis = match trained {
            Some(p) if p.is_per_axis() => usize::try_from(p.quantized_dimension).ok(),
            Some(_) => None,
            None => axis,
        };
        let ch = Channels::new(&tensor.shape, axis);
        let mut scales = match trained {
            Some(p) => p.scale.clone(),
            None => {
                // PTQ hook: min/max or MSE-clipped scales (`ptq::clipping`).
                let (scales, clip) = self.weight_scales(site.oi, values, ch);
                if let Some(c) = clip {
                    let name = model.op_display_name(&model.subgraphs[site.si].operators[site.oi]);
                    report.ptq_layer(site.si, site.oi, &name).clipping = Some(c);
                }
                scales
            }
        };
        self.widen_for_bias(model, site, &mut scales, report);
        let q = math::quantize_symmetric(values, ch, &scales, 127.0);
        let n = scales.len();
        Quantized {
            kind: "weight",
            dtype: TensorType::Int8,
            data: q.iter().map(|&v| v as u8).collect(),
            qp: QuantParams::per_axis(scales, vec![0; n], axis.unwrap_or(0) as i32),
            data_key: None,
        }
    }

    /// The int8 scales of weight `values` read by operator `oi` ([`clipping::weight_scales`]
    /// with [`clipping::WeightClipping::for_layer`], through the shared cache when the run
    /// has one).
    fn weight_scales(
        &self,
        oi: usize,
        values: &[f32],
        ch: Channels,
    ) -> (Vec<f32>, Option<ClipStats>) {
        let clipping = self
            .opts
            .weight_clipping
            .for_layer(self.output_layers.contains(&oi));
        match &self.opts.scale_cache {
            Some(cache) => cache.weight_scales(values, ch, clipping),
            None => clipping::weight_scales(values, ch, clipping),
        }
    }

    /// If the bias of the operator (the input whose role is `Bias { weight: pos }`)
    /// would not fit its integer type at `s_in × s_w`, widens the weight scales of the
    /// channels concerned until it does (TF's converter does the same; the
    /// alternative, failing, helps nobody). Reported as a note.
    fn widen_for_bias(&self, model: &Model, site: &Site, scales: &mut [f32], report: &mut Report) {
        let (si, oi, rule) = (site.si, site.oi, site.rule);
        let sg = &model.subgraphs[si];
        let op = &sg.operators[oi];
        let Some((bias_pos, input)) =
            (0..op.inputs.len()).find_map(|b| match rule.integer_role(b) {
                Role::Bias { input, weight } if weight == site.pos => Some((b, input)),
                _ => None,
            })
        else {
            return;
        };
        let Some(b) = tensor_ref(&op.inputs, bias_pos).map(|b| &sg.tensors[b]) else {
            return;
        };
        if !model.is_constant(b) || b.dtype != TensorType::Float32 {
            return;
        }
        let Some(s_in) = self.act_params(site, input).map(|p| p.scale[0]) else {
            return;
        };
        let bits = bias_bits_for(rule.op, self.op_width(site), self.opts);
        let bias = math::f32_values(model.tensor_data(b));
        let widened = scheme::widen_weight_scales_for_bias(&bias, s_in, bits, scales);
        if widened > 0 {
            report.note(format!(
                "subgraph {si}, operator {oi}: widened {widened} weight scale(s) so that bias {:?} fits {bits} bits",
                b.name
            ));
        }
    }

    fn bias(
        &self,
        model: &Model,
        site: &Site,
        (input, weight): (usize, usize),
        values: &[f32],
        report: &mut Report,
    ) -> Result<Quantized> {
        let (si, oi) = (site.si, site.oi);
        let sg = &model.subgraphs[si];
        let s_in = self
            .act_params(site, input)
            .ok_or_else(|| {
                Error::Internal(format!("bias of op {oi}: input {input} has no parameters"))
            })?
            .scale[0];
        let w_ref = tensor_ref(&sg.operators[oi].inputs, weight)
            .ok_or_else(|| Error::Internal(format!("bias of op {oi}: no weight")))?;
        let w_tensor = &sg.tensors[w_ref];
        let w_scales: Vec<f32> = match &w_tensor.quant {
            Some(q) if !q.scale.is_empty() => q.scale.clone(),
            _ => {
                // The weight is quantized as this op's input `weight`: recompute.
                let wv = math::f32_values(model.tensor_data(w_tensor));
                let axis = match site.rule.integer_role(weight) {
                    Role::Weight { axis } => self.weight_axis(axis, &w_tensor.shape),
                    _ => None,
                };
                let ch = Channels::new(&w_tensor.shape, axis);
                self.weight_scales(oi, &wv, ch).0
            }
        };
        let bits = bias_bits_for(site.rule.op, self.op_width(site), self.opts);
        let scales = scheme::bias_scales(s_in, &w_scales, values.len());
        // PTQ hook: empirical bias correction (`ptq::bias`).
        let corrected = self.corrected_bias(model, site, weight, values, report);
        let data_key = corrected.as_ref().map(|c| data_hash(c));
        let data = match corrected.and_then(|c| scheme::quantize_bias(&c, &scales, bits)) {
            Some(d) => Some(d),
            None if data_key.is_some() => {
                report.note(format!(
                    "subgraph {si}, operator {oi}: the corrected bias {:?} does not fit {bits} bits; written uncorrected",
                    sg.tensors[site.t].name
                ));
                scheme::quantize_bias(values, &scales, bits)
            }
            None => scheme::quantize_bias(values, &scales, bits),
        };
        let data = data.ok_or_else(|| {
            Error::Internal(format!(
                "subgraph {si}: bias {:?} overflows {bits} bits although the weight range was widened",
                sg.tensors[site.t].name
            ))
        })?;
        let n = scales.len();
        let qp = if w_scales.len() > 1 {
            QuantParams::per_axis(scales, vec![0; n], 0)
        } else {
            QuantParams::per_tensor(scales[0], 0)
        };
        Ok(Quantized {
            kind: "bias",
            dtype: scheme::bias_dtype(bits),
            data,
            qp,
            data_key,
        })
    }

    /// With bias correction on, the bias `values` of the operator at `site` minus the
    /// mean error its quantized weight (input `weight`, already integer) adds per
    /// output channel; reported either way.
    fn corrected_bias(
        &self,
        model: &Model,
        site: &Site,
        weight: usize,
        values: &[f32],
        report: &mut Report,
    ) -> Option<Vec<f32>> {
        let means = self.opts.input_means.as_ref()?;
        let sg = &model.subgraphs[site.si];
        let op = &sg.operators[site.oi];
        let name = model.op_display_name(op);
        let skip = |report: &mut Report, why: String| {
            report.ptq_layer(site.si, site.oi, &name).bias_correction = Some(BiasCorrection {
                channels: values.len(),
                mean_abs_shift: 0.0,
                max_abs_shift: 0.0,
                skipped: Some(why),
            });
            None
        };
        let (Some(wq), Some(wf)) = (
            tensor_ref(&op.inputs, weight).map(|t| &sg.tensors[t]),
            tensor_ref(site.orig_in, weight).map(|t| &sg.tensors[t]),
        ) else {
            return skip(report, "the operator has no weight".into());
        };
        let (Some(qp), TensorType::Int8, TensorType::Float32) = (&wq.quant, wq.dtype, wf.dtype)
        else {
            return skip(report, "the weight is not a quantized constant".into());
        };
        let float = math::f32_values(model.tensor_data(wf));
        let int: Vec<i8> = model.tensor_data(wq).iter().map(|&b| b as i8).collect();
        let w = bias::QuantizedWeight {
            shape: &wq.shape,
            float: &float,
            int: &int,
            scales: &qp.scale,
            axis: (qp.scale.len() > 1).then_some(qp.quantized_dimension.max(0) as usize),
        };
        match means.correction((site.si, site.oi), site.rule.op, &w) {
            Err(why) => skip(report, why.to_string()),
            Ok(shift) if shift.len() != values.len() => skip(
                report,
                "the bias does not have one value per output channel".into(),
            ),
            Ok(shift) => {
                let abs = shift.iter().map(|d| d.abs());
                report.ptq_layer(site.si, site.oi, &name).bias_correction = Some(BiasCorrection {
                    channels: shift.len(),
                    mean_abs_shift: abs.clone().sum::<f64>() / shift.len().max(1) as f64,
                    max_abs_shift: abs.fold(0.0, f64::max),
                    skipped: None,
                });
                Some(
                    values
                        .iter()
                        .zip(&shift)
                        .map(|(&b, &d)| (b as f64 - d) as f32)
                        .collect(),
                )
            }
        }
    }

    /// A constant read like an activation: shared operators give it their group's
    /// parameters, others its own range.
    fn activation_like(&self, model: &Model, site: &Site, values: &[f32]) -> Quantized {
        let (si, rule, params) = (site.si, site.rule, self.params);
        let tensor = &model.subgraphs[si].tensors[site.t];
        let width = self.op_width(site);
        let group = match rule.output {
            Output::Shared => {
                tensor_ref(site.orig_out, 0).and_then(|a| params.activations.get(&(si, a)))
            }
            // Comparisons, ARG_MAX: inputs share the first activation input's (its
            // requantized copy's where it has one).
            _ if rule.tied_inputs => {
                shared_anchor_input(model, si, site.orig_in, rule).and_then(|a| {
                    let pos = site.orig_in.iter().position(|&x| x == a as i32)?;
                    params
                        .requant
                        .get(&(si, site.oi, pos))
                        .or_else(|| params.activations.get(&(si, a)))
                })
            }
            _ => None,
        };
        let group = params.constants.get(&(si, site.t)).or(group).cloned();
        let qp = match group {
            Some(g) => g,
            None if rule.symmetric_constants => {
                let (lo, hi) = data_range(model, tensor);
                scheme::symmetric_operand_params(lo, hi, width)
            }
            None => {
                let (lo, hi) = params
                    .const_range
                    .get(&(si, site.t))
                    .copied()
                    .unwrap_or_else(|| data_range(model, tensor));
                activation_params(lo, hi, width)
            }
        };
        Quantized {
            kind: "constant",
            dtype: width.dtype(),
            data: scheme::affine_bytes(values, &qp, width),
            qp,
            data_key: None,
        }
    }

    /// The tensor holding `q` (a cached one when the same constant was quantized with
    /// the same parameters before), reported.
    fn store(
        &mut self,
        model: &mut Model,
        (si, t): (usize, usize),
        tensor: &Tensor,
        q: Quantized,
        report: &mut Report,
    ) -> usize {
        let Quantized {
            kind,
            dtype,
            data,
            qp,
            data_key,
        } = q;
        let mut key = (
            t,
            format!(
                "{dtype:?}{:?}{:?}{}",
                qp.scale, qp.zero_point, qp.quantized_dimension
            ),
        );
        if let Some(h) = data_key {
            key.1.push_str(&format!(" data {h:016x}"));
        }
        if let Some(&existing) = self.cache.get(&key) {
            return existing;
        }
        let buffer = model.add_buffer(data);
        let mut nt = Tensor::new(tensor.name.clone(), dtype, tensor.shape.clone());
        nt.shape_signature = tensor.shape_signature.clone();
        nt.buffer = buffer;
        nt.quant = Some(qp.clone());
        let ni = model.subgraphs[si].add_tensor(nt) as usize;
        self.cache.insert(key, ni);
        report.tensors.push(TensorParams {
            subgraph: si,
            tensor: ni,
            name: tensor.name.clone(),
            kind: kind.into(),
            dtype: fb::dtype_name(dtype).into(),
            range: None,
            scale: qp.scale.clone(),
            zero_point: qp.zero_point.clone(),
            axis: qp.is_per_axis().then_some(qp.quantized_dimension),
        });
        ni
    }
}

/// A hash of a corrected bias' values (the cache key of data that depend on the
/// operator).
fn data_hash(values: &[f32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in values {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}
