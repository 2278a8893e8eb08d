//! The property the quantizer fuzz target (`fuzz/fuzz_targets/quantize.rs`) and the
//! deterministic mutation test (`quant_fuzz.rs`) check, shared by both through a
//! `#[path]` include, so it depends on nothing but the library.
//!
//! For a model the reader accepted, every mode either quantizes it into a model that
//! passes `ir::verify` and writes (and reads back), or rejects it with an exit-code-2
//! error (malformed, unsupported, usage, data). An internal error (exit 1) or a panic is
//! a finding.

use tflquant::calib::{Calibrator, ObserverKind, Ranges, TensorRange};
use tflquant::fb::{BuiltinOperator, TensorType};
use tflquant::interp::Value;
use tflquant::ir::{self, Model};
use tflquant::quant::{self, Mode, Options};
use tflquant::writer::{self, WriteOptions};

/// Every mode, in a fixed order.
pub const MODES: [Mode; 7] = [
    Mode::Dynamic,
    Mode::Float16,
    Mode::WeightInt8,
    Mode::WeightInt4,
    Mode::Int8,
    Mode::Int16x8,
    Mode::Qat,
];

/// Above this many elements in one tensor the calibration sample is not run (the
/// reference interpreter would allocate it); fixed ranges stand in.
const CALIBRATE_MAX_ELEMENTS: u64 = 1 << 20;

/// Ranges for the integer modes: one fixed sample (a ramp in [-1, 1]) through the
/// reference interpreter when the model is small and has no control flow (a mutated
/// loop condition could run forever), otherwise [-1, 1] for every float tensor.
pub fn ranges(model: &Model) -> Ranges {
    calibrated(model).unwrap_or_else(|| fixed_ranges(model))
}

fn calibrated(model: &Model) -> Option<Ranges> {
    let control_flow = [
        BuiltinOperator::While,
        BuiltinOperator::If,
        BuiltinOperator::CallOnce,
    ];
    let sg = model.subgraphs.first()?;
    let too_big = model
        .subgraphs
        .iter()
        .flat_map(|s| &s.tensors)
        .any(|t| t.num_elements().is_none_or(|n| n > CALIBRATE_MAX_ELEMENTS));
    let looping = model
        .subgraphs
        .iter()
        .flat_map(|s| &s.operators)
        .any(|op| control_flow.contains(&model.builtin(op)));
    if too_big || looping || model.subgraphs.len() > 1 {
        return None;
    }
    let mut inputs = Vec::new();
    for &t in &sg.inputs {
        let t = &sg.tensors[t as usize];
        if t.dtype != TensorType::Float32 {
            return None;
        }
        let n = t.num_elements()? as usize;
        let shape = t.shape.iter().map(|&d| d as usize).collect();
        let data = (0..n).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
        inputs.push(Value::f32(shape, data));
    }
    let mut c = Calibrator::new(model, ObserverKind::MinMax).ok()?;
    c.add_sample(&inputs).ok()?;
    Some(c.ranges())
}

fn fixed_ranges(model: &Model) -> Ranges {
    let mut tensors = Vec::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (ti, t) in sg.tensors.iter().enumerate() {
            if t.dtype == TensorType::Float32 && !model.is_constant(t) {
                tensors.push(TensorRange {
                    subgraph: si,
                    tensor: ti,
                    name: t.name.clone(),
                    min: -1.0,
                    max: 1.0,
                    sentinels: Default::default(),
                    observer: None,
                });
            }
        }
    }
    Ranges {
        observer: "minmax".into(),
        samples: 1,
        tensors,
    }
}

/// Runs every mode on `model`. `Ok(n)`: `n` modes produced a model, the rest rejected
/// it properly. `Err`: what went wrong, with the mode.
pub fn check(model: &Model) -> Result<usize, String> {
    let ranges = ranges(model);
    let mut accepted = 0;
    for mode in MODES {
        let mut opts = Options::new(mode);
        if mode.is_integer() {
            opts.ranges = Some(ranges.clone());
        }
        match quant::quantize(model, &opts) {
            Ok((out, _)) => {
                ir::verify(&out).map_err(|e| {
                    format!("--mode {}: accepted output fails verify: {e}", mode.name())
                })?;
                let bytes = writer::to_bytes(&out, &WriteOptions::default()).map_err(|e| {
                    format!(
                        "--mode {}: accepted output does not write: {e}",
                        mode.name()
                    )
                })?;
                tflquant::read_bytes(bytes.into()).map_err(|e| {
                    format!(
                        "--mode {}: written output does not read back: {e}",
                        mode.name()
                    )
                })?;
                accepted += 1;
            }
            Err(e) if e.exit_code() == 2 => {}
            Err(e) => return Err(format!("--mode {}: {e}", mode.name())),
        }
    }
    Ok(accepted)
}
