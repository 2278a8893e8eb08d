//! Reading intermediate tensors out of LiteRT.
//!
//! The C API returns only a signature's outputs. To see other tensors of subgraph 0, the
//! model is copied with those tensors appended to subgraph 0's outputs and to the
//! outputs of every SignatureDef of subgraph 0 (LiteRT runs through the signature, so
//! an output missing there would not come back), written with our own writer, and run
//! from memory. Tensors that already are outputs are not added twice. Subgraph inputs
//! are not added either: their values are the inputs given. Constants have no run-time
//! value and are refused.
//!
//! Extra outputs change nothing in the computation: a tensor that is both consumed by
//! later ops and an output is ordinary in TFLite (the runtime keeps it in its own
//! allocation instead of reusing the memory). The tests check that the original outputs
//! stay bit-identical and that the tensors equal the Python interpreter's preserved
//! intermediates.

use super::{CompiledModel, ElementType, LiteRt, OpenOptions};
use crate::data::Array;
use crate::error::{Error, Loc, Result};
use crate::fb::BuiltinOperator;
use crate::ir::{Model, Operator, OperatorCode, Subgraph, Tensor, TensorMap, TensorType};

/// Outputs and requested tensors of a run over samples (all stacked on axis 0).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRun {
    /// The model's own outputs, in subgraph-0 order.
    pub outputs: Vec<Array>,
    /// One array per requested tensor, in the order requested.
    pub tensors: Vec<Array>,
}

/// A copy of `model` whose subgraph 0 (and its signatures) also output `tensors`
/// (indices into subgraph 0). Returns the copy and, per requested tensor, its position
/// among subgraph 0's outputs in the copy.
pub fn with_extra_outputs(model: &Model, tensors: &[usize]) -> Result<(Model, Vec<usize>)> {
    let mut m = model.clone();
    m.source = None;
    let sg: &mut Subgraph = m
        .subgraphs
        .first_mut()
        .ok_or_else(|| Error::malformed(Loc::model(), "no subgraphs"))?;
    let mut positions = Vec::with_capacity(tensors.len());
    let mut added = Vec::new();
    for &t in tensors {
        let tensor = sg.tensors.get(t).ok_or_else(|| {
            Error::Usage(format!(
                "tensor {t} does not exist: subgraph 0 has {} tensors",
                sg.tensors.len()
            ))
        })?;
        let at = Loc::tensor(0, t).then(format!("\"{}\"", tensor.name));
        let t32 = i32::try_from(t)
            .map_err(|_| Error::Usage(format!("tensor index {t} is out of range")))?;
        if sg.inputs.contains(&t32) {
            return Err(Error::Usage(format!(
                "{at} is an input of subgraph 0: its value is the input itself"
            )));
        }
        let has_data = model
            .buffers
            .get(tensor.buffer as usize)
            .is_some_and(|b| !b.data.is_empty());
        if has_data {
            return Err(Error::Usage(format!(
                "{at} is a constant (buffer {}): it has no run-time value to fetch",
                tensor.buffer
            )));
        }
        if ElementType::from_tensor_type(tensor.dtype).is_none() {
            return Err(Error::unsupported(
                at,
                format!(
                    "{} tensors cannot be read from LiteRT (supported: float32, int8, uint8, \
                     int16, int32, int64, bool)",
                    crate::fb::dtype_name(tensor.dtype)
                ),
            ));
        }
        let pos = match sg.outputs.iter().position(|&o| o == t32) {
            Some(p) => p,
            None => {
                sg.outputs.push(t32);
                added.push(t32);
                sg.outputs.len() - 1
            }
        };
        positions.push(pos);
    }
    for sig in m
        .signature_defs
        .iter_mut()
        .filter(|s| s.subgraph_index == 0)
    {
        for &t in &added {
            if sig.outputs.iter().any(|o| o.tensor_index as i32 == t) {
                continue;
            }
            let mut name = format!("tflquant_tensor_{t}");
            while sig.outputs.iter().any(|o| o.name.as_deref() == Some(&name)) {
                name.push('_');
            }
            sig.outputs.push(TensorMap {
                name: Some(name),
                tensor_index: t as u32,
            });
        }
    }
    Ok((m, positions))
}

impl LiteRt {
    /// Runs `model` on samples (axis 0 of each input, as [`CompiledModel::run_samples`])
    /// and also returns the values of the subgraph-0 tensors `tensors`, through a copy
    /// of the model that outputs them (see [`with_extra_outputs`]). Requested subgraph
    /// inputs come back as given (with the model's input shape).
    pub fn run_with_tensors(
        &self,
        model: &Model,
        tensors: &[usize],
        inputs: &[Array],
        opts: &OpenOptions,
    ) -> Result<TensorRun> {
        let sg = model
            .subgraphs
            .first()
            .ok_or_else(|| Error::malformed(Loc::model(), "no subgraphs"))?;
        let n_outputs = sg.outputs.len();
        let input_pos = |t: usize| sg.inputs.iter().position(|&i| i as i64 == t as i64);
        let fetch: Vec<usize> = tensors
            .iter()
            .copied()
            .filter(|&t| input_pos(t).is_none())
            .collect();
        let (copy, positions) = with_extra_outputs(model, &fetch)?;
        let name = match &model.source {
            Some(s) => format!("{} (with extra outputs)", s.path.display()),
            None => "model with extra outputs".to_string(),
        };
        let mut cm: CompiledModel = self.open_model(&copy, &name, opts)?;
        let mut outs = cm.run_samples(inputs)?;
        let mut fetched = positions.iter();
        let mut values = Vec::with_capacity(tensors.len());
        for &t in tensors {
            if let Some(i) = input_pos(t) {
                let a = inputs.get(i).ok_or_else(|| {
                    Error::Data(format!("input {i} missing (got {} arrays)", inputs.len()))
                })?;
                let sample_shape = a.shape.get(1..).unwrap_or(&[]);
                let mut shape = vec![a.shape.first().copied().unwrap_or(1)];
                shape.extend(cm.sample_shape(i, sample_shape)?);
                values.push(Array {
                    shape,
                    data: a.data.clone(),
                });
            } else {
                let &p = fetched
                    .next()
                    .ok_or_else(|| Error::Internal("fewer fetched tensors than asked".into()))?;
                let v = outs
                    .get(p)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("output {p} missing from the run")))?;
                values.push(v);
            }
        }
        outs.truncate(n_outputs);
        Ok(TensorRun {
            outputs: outs,
            tensors: values,
        })
    }
}

/// The load-time self test's model: `x: f32[2,3,5] → ABS → y → CAST → z: i32[2,3,5]`,
/// outputs `y` and `z`, no signature (LiteRT makes a placeholder one).
pub(crate) fn self_test_model() -> Model {
    let shape = vec![2, 3, 5];
    Model {
        version: 3,
        description: Some("tflquant LiteRT self test".into()),
        operator_codes: vec![
            OperatorCode {
                builtin: BuiltinOperator::Abs,
                custom_code: None,
                version: 1,
            },
            OperatorCode {
                builtin: BuiltinOperator::Cast,
                custom_code: None,
                version: 1,
            },
        ],
        subgraphs: vec![Subgraph {
            name: Some("main".into()),
            tensors: vec![
                Tensor::new("x", TensorType::Float32, shape.clone()),
                Tensor::new("y", TensorType::Float32, shape.clone()),
                Tensor::new("z", TensorType::Int32, shape),
            ],
            inputs: vec![0],
            outputs: vec![1, 2],
            operators: vec![
                Operator::new(0, vec![0], vec![1]),
                Operator::new(1, vec![1], vec![2]),
            ],
            debug_metadata_index: -1,
        }],
        buffers: vec![crate::ir::Buffer::default()],
        ..Default::default()
    }
}
