//! Calibration on LiteRT, for models the reference interpreter cannot run (an operator
//! it has no kernel for, such as a custom op the runtime registers).
//!
//! Every float32 activation of subgraph 0 (produced by an operator, not constant, not
//! variable) is exposed as an extra output ([`with_extra_outputs`]); the copy is compiled
//! once and run per sample, and each value, plus the model inputs as given, is folded
//! into the same observers as the reference interpreter's calibration
//! ([`crate::calib::Collector`]): the ranges have the same form and, on models both run,
//! equal values up to float rounding (XNNPACK sums in another order). Tensors of other
//! subgraphs (loop bodies) cannot be read through the C API and get no range, nor do
//! dequantized float16/sparse weights ([`calibration_tensors`]).

use super::{CompiledModel, ElementType, LiteRt, OpenOptions, with_extra_outputs};
use crate::calib::{Collector, ObserverKind, Ranges, Samples, StreamRanges, carries_state};
use crate::error::{Error, Loc, Result};
use crate::fb::BuiltinOperator;
use crate::interp::{TensorId, Value};
use crate::ir::{Model, TensorType};

/// The subgraph-0 tensors LiteRT calibration reads: float32 activations, except the
/// outputs of DEQUANTIZE/DENSIFY of a constant (float16 or sparse weights, chains of them
/// included): XNNPACK folds
/// them into its weights and never writes the tensor (an extra output of one holds
/// garbage), and the quantizer turns such weights back into float32 constants first.
pub fn calibration_tensors(model: &Model) -> Vec<usize> {
    let Some(sg) = model.subgraphs.first() else {
        return Vec::new();
    };
    let produced = sg.producers();
    // A weight encoding: DEQUANTIZE/DENSIFY of a constant, or of such an output (sparse
    // float16: DENSIFY -> DEQUANTIZE). Chains are short; the depth bound keeps a hostile
    // file from recursing.
    fn static_weight(
        model: &Model,
        sg: &crate::ir::Subgraph,
        produced: &[Option<usize>],
        op: usize,
        depth: usize,
    ) -> bool {
        let op = &sg.operators[op];
        depth < 4
            && matches!(
                model.builtin(op),
                BuiltinOperator::Dequantize | BuiltinOperator::Densify
            )
            && op
                .inputs
                .first()
                .and_then(|&t| usize::try_from(t).ok())
                .is_some_and(|t| {
                    !model.tensor_data(&sg.tensors[t]).is_empty()
                        || produced[t]
                            .is_some_and(|p| static_weight(model, sg, produced, p, depth + 1))
                })
    }
    (0..sg.tensors.len())
        .filter(|&t| {
            let tensor = &sg.tensors[t];
            tensor.dtype == TensorType::Float32
                && produced[t].is_some_and(|p| !static_weight(model, sg, &produced, p, 0))
                && !tensor.is_variable
                && model.tensor_data(tensor).is_empty()
                && ElementType::from_tensor_type(tensor.dtype).is_some()
        })
        .collect()
}

impl LiteRt {
    /// Calibrates `model` on LiteRT over every sample of `samples` with observer
    /// `kind` (samples that form one stream ranged as `stream` says, as on the
    /// interpreter); `progress` is called after each sample.
    pub fn calibrate(
        &self,
        model: &Model,
        samples: Samples,
        kind: ObserverKind,
        stream: StreamRanges,
        opts: &OpenOptions,
        progress: &mut dyn FnMut(),
    ) -> Result<Ranges> {
        let sg = model
            .subgraphs
            .first()
            .ok_or_else(|| Error::malformed(Loc::model(), "no subgraphs"))?;
        let tensors = calibration_tensors(model);
        let (copy, positions) = with_extra_outputs(model, &tensors)?;
        let name = match &model.source {
            Some(s) => format!("{} (every float tensor as an output)", s.path.display()),
            None => "model with every float tensor as an output".to_string(),
        };
        let mut cm: CompiledModel = self.open_model(&copy, &name, opts)?;
        let mut collector = Collector::new(kind);
        if stream == StreamRanges::Extrapolate && carries_state(model, samples.reset_policy()) {
            collector.samples_form_a_stream();
        }
        for sample in samples {
            let sample = sample?;
            let arrays: Vec<_> = sample.iter().map(Value::to_array).collect();
            let outs = cm.run(&arrays)?;
            for (&t, v) in sg.inputs.iter().zip(&sample) {
                let id = TensorId {
                    subgraph: 0,
                    tensor: t as usize,
                };
                collector.observe(id, v);
            }
            for (&t, &p) in tensors.iter().zip(&positions) {
                let a = outs.get(p).ok_or_else(|| {
                    Error::Internal(format!("output {p} missing from the LiteRT run"))
                })?;
                let v = Value::from_array(a).ok_or_else(|| {
                    Error::Internal(format!(
                        "LiteRT returned {} data for float tensor {t}",
                        a.data.dtype_name()
                    ))
                })?;
                collector.observe(
                    TensorId {
                        subgraph: 0,
                        tensor: t,
                    },
                    &v,
                );
            }
            collector.end_sample();
            progress();
        }
        if collector.samples() == 0 {
            return Err(Error::Data("no calibration samples".into()));
        }
        Ok(collector.ranges(model))
    }
}
