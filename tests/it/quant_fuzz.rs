//! A short deterministic version of the quantizer fuzz target: byte mutations of real
//! models (fixed seed) through every mode. No panic, no internal error; every accepted
//! output passes `ir::verify` and writes (see `quant_harness.rs`).

use crate::common::*;
use crate::quant_harness;

/// `m` as a model file gives it: written and read back, so that the reader's checks apply
/// (what they reject never reaches a mode); `None` when the reader rejects it.
fn as_read(m: &tflquant::ir::Model) -> Option<tflquant::ir::Model> {
    let bytes = tflquant::writer::to_bytes(m, &Default::default()).ok()?;
    tflquant::read_bytes(bytes.into()).ok()
}

/// Seeds: small models covering every family of passes (fp16 weights, sparse, QAT
/// pairs, already-quantized, LSTM, control flow, embedding, per-op rules).
/// With each, how many of the 7 modes must accept the unmutated model.
const SEEDS: [(&str, usize); 9] = [
    ("fp16_weights_cnn.tflite", 5),
    ("sparse_dense_mlp.tflite", 6),
    ("qat_digits.float.tflite", 5),
    ("int8_quantized_cnn.tflite", 0),
    ("lstm_seq.tflite", 6),
    ("while_loop.tflite", 3),
    ("embedding_lookup.tflite", 6),
    ("ops_conv_pool.tflite", 3),
    ("dynamic_batch_mlp.tflite", 6),
];

/// Mutates 1–4 places of `b`: a random byte, a flipped bit, or a 32-bit field (offset,
/// index, length, dimension) set to an extreme.
pub fn mutate(b: &mut [u8], rng: &mut impl rand::Rng) {
    for _ in 0..rng.random_range(1..=4) {
        let i = rng.random_range(0..b.len());
        match rng.random_range(0..3) {
            0 => b[i] = rng.random(),
            1 => b[i] ^= 1 << rng.random_range(0..8),
            _ => {
                let v: u32 =
                    [0, 1, 2, 0x7fff_ffff, 0xffff_ffff, rng.random()][rng.random_range(0..6)];
                let i = i.min(b.len() - 4);
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

#[test]
fn mutated_models_through_every_mode() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9a47);
    let originals: Vec<Vec<u8>> = SEEDS
        .iter()
        .map(|(n, _)| std::fs::read(testdata(n)).unwrap())
        .collect();
    // The unmutated seeds pass too, and most modes accept them.
    for ((name, min), bytes) in SEEDS.iter().zip(&originals) {
        let m = tflquant::read_bytes(bytes.clone().into()).unwrap();
        let accepted = quant_harness::check(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            accepted >= *min,
            "{name}: only {accepted} modes accepted it"
        );
    }
    let (mut read, mut outputs) = (0, 0);
    let mut findings = Vec::new();
    for round in 0..ROUNDS {
        let mut b = originals[round % originals.len()].clone();
        mutate(&mut b, &mut rng);
        let Ok(m) = tflquant::read_bytes(b.into()) else {
            continue;
        };
        read += 1;
        match quant_harness::check(&m) {
            Ok(n) => outputs += n,
            Err(e) => findings.push(format!(
                "round {round} ({}): {e}",
                SEEDS[round % SEEDS.len()].0
            )),
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    // Most mutations hit weights or padding: the reader must accept many and the
    // quantizer must produce outputs for them.
    assert!(
        read > ROUNDS / 4 && outputs > read,
        "{read} read, {outputs} outputs"
    );
}

const ROUNDS: usize = 200;

/// Found by the fuzz target (`fuzz/README.md`): a FULLY_CONNECTED whose activation
/// input is its own bias constant made int8 fail with "internal error: bias of op 7:
/// input 0 has no parameters". The bias scale needs a calibrated input: the op stays
/// float, with the reason, and the rest of the model is quantized.
#[test]
fn fully_connected_reading_a_constant_as_input_stays_float() {
    use tflquant::fb::BuiltinOperator;
    use tflquant::quant::report::{Fate, FloatReason};
    use tflquant::quant::{Mode, Options};
    let mut m = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    let oi = m.subgraphs[0]
        .operators
        .iter()
        .rposition(|op| m.builtin(op) == BuiltinOperator::FullyConnected)
        .unwrap();
    let op = &mut m.subgraphs[0].operators[oi];
    op.inputs[0] = op.inputs[2];
    quant_harness::check(&m).unwrap();
    let mut opts = Options::new(Mode::Int8);
    opts.ranges = Some(quant_harness::ranges(&m));
    let (_, report) = tflquant::quant::quantize(&m, &opts).unwrap();
    let fate = report
        .ops
        .iter()
        .find(|f| f.subgraph == 0 && f.operator == oi)
        .map(|f| &f.fate);
    match fate {
        Some(Fate::Float { reason }) => assert!(
            matches!(reason, FloatReason::BiasWithoutOperands { .. })
                && reason.to_string().contains("is a bias"),
            "{reason}"
        ),
        other => panic!("operator {oi}: {other:?}"),
    }
    assert!(report.ops.iter().any(|f| matches!(f.fate, Fate::Quantized)));
}

/// Replays what the libFuzzer target saved (`fuzz/artifacts/quantize/*`) through the
/// same harness, without libFuzzer: `cargo test --test it replay_fuzz_artifacts --
/// --ignored` after a fuzzing run, to confirm fixes (see `fuzz/README.md`).
#[test]
#[ignore = "needs artifacts from a cargo-fuzz run"]
fn replay_fuzz_artifacts() {
    let dir = root().join("fuzz/artifacts/quantize");
    let entries = std::fs::read_dir(&dir).expect("fuzz/artifacts/quantize: run the fuzzer first");
    let mut findings = Vec::new();
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        n += 1;
        let Ok(m) = tflquant::read_bytes(std::fs::read(&path).unwrap().into()) else {
            continue;
        };
        if let Err(e) = quant_harness::check(&m) {
            findings.push(format!("{}: {e}", path.display()));
        }
    }
    eprintln!("{n} artifacts replayed");
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Found by the fuzz target: a DEQUANTIZE with an absent (-1) input made the float16
/// folding pass panic (index out of bounds) in every mode.
#[test]
fn dequantize_with_an_absent_input_does_not_panic() {
    use tflquant::fb::BuiltinOperator;
    let mut m = tflquant::read_path(testdata("fp16_weights_cnn.tflite")).unwrap();
    let oi = m.subgraphs[0]
        .operators
        .iter()
        .position(|op| m.builtin(op) == BuiltinOperator::Dequantize)
        .unwrap();
    m.subgraphs[0].operators[oi].inputs[0] = -1;
    quant_harness::check(&m).unwrap();
}

/// Found by the fuzz target (2026-12-07): a model without subgraphs made `--mode int8`
/// with a float interface panic while planning the wider outputs (index out of bounds).
/// Every mode now returns a model or says there is nothing to quantize (exit 2).
#[test]
fn a_model_without_subgraphs_does_not_panic() {
    let mut m = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    m.subgraphs.clear();
    m.signature_defs.clear();
    let m = as_read(&m).expect("the reader accepts it");
    quant_harness::check(&m).unwrap();
}

/// Found by the fuzz target: a CONV_2D whose bias was a 4-D constant (another op's
/// weights) made int8 write 144 per-axis scales on a [1, 3, 3, 16] tensor (internal
/// error). A bias that is not a vector keeps its operator float.
#[test]
fn a_bias_that_is_not_a_vector_keeps_its_operator_float() {
    use tflquant::quant::report::{Fate, FloatReason};
    use tflquant::quant::{Mode, Options};
    let mut m = tflquant::read_path(testdata("cnn_digits.tflite")).unwrap();
    // Operator 3 (CONV_2D) takes operator 1's depthwise weights as its bias.
    let dw = m.subgraphs[0].operators[1].inputs[1];
    assert_eq!(m.subgraphs[0].tensors[dw as usize].shape.len(), 4);
    m.subgraphs[0].operators[3].inputs[2] = dw;
    quant_harness::check(&m).unwrap();
    let mut opts = Options::new(Mode::Int8);
    opts.ranges = Some(quant_harness::ranges(&m));
    let (_, report) = tflquant::quant::quantize(&m, &opts).unwrap();
    let fate = report.ops.iter().find(|f| f.operator == 3).map(|f| &f.fate);
    match fate {
        Some(Fate::Float { reason }) => assert!(
            matches!(reason, FloatReason::BiasNotVector { .. })
                && reason.to_string().contains("biases are vectors"),
            "{reason}"
        ),
        other => panic!("operator 3: {other:?}"),
    }
}

/// Found by the fuzz target (2026-12-07): an LSTM without its output gate's bias (input
/// 15 absent) made `--mode int8` stop with an internal error in the integer LSTM's
/// rewrite. Such an LSTM now keeps float activations (a hybrid LSTM) with the reason;
/// the other LSTM of the model is still integer.
#[test]
fn an_lstm_without_a_gate_bias_stays_float() {
    use tflquant::fb::BuiltinOperator;
    use tflquant::quant::report::Fate;
    use tflquant::quant::{Mode, Options};
    let mut m = tflquant::read_path(testdata("bilstm_digits.tflite")).unwrap();
    let lstms: Vec<usize> = (m.subgraphs[0].operators.iter().enumerate())
        .filter(|(_, op)| m.builtin(op) == BuiltinOperator::UnidirectionalSequenceLstm)
        .map(|(oi, _)| oi)
        .collect();
    assert_eq!(lstms.len(), 2);
    m.subgraphs[0].operators[lstms[0]].inputs[15] = -1;
    let m = as_read(&m).expect("the reader accepts it");
    quant_harness::check(&m).unwrap();
    let mut opts = Options::new(Mode::Int8);
    opts.ranges = Some(quant_harness::ranges(&m));
    let (_, report) = tflquant::quant::quantize(&m, &opts).unwrap();
    let fate = |oi: usize| {
        report
            .ops
            .iter()
            .find(|f| f.operator == oi)
            .map(|f| &f.fate)
    };
    match fate(lstms[0]) {
        Some(Fate::Float { reason }) => {
            assert!(reason.to_string().contains("input 15 "), "{reason}")
        }
        other => panic!("operator {}: {other:?}", lstms[0]),
    }
    assert!(
        matches!(fate(lstms[1]), Some(Fate::Quantized)),
        "{:?}",
        fate(lstms[1])
    );
}

/// The fuzz finding above, generalised: every operand of every LSTM in the recurrent test
/// models, absent (-1) or replaced by the LSTM's input activation, through every mode
/// (230 variants). Each mode returns a valid model or rejects the input with exit 2.
#[test]
fn every_lstm_operand_absent_or_an_activation() {
    use tflquant::fb::BuiltinOperator;
    let mut failures = Vec::new();
    for name in [
        "lstm_digits.tflite",
        "bilstm_digits.tflite",
        "lstm_gru.tflite",
        "lstm_seq.tflite",
    ] {
        let m0 = tflquant::read_path(testdata(name)).unwrap();
        let sg = &m0.subgraphs[0];
        let lstms = (sg.operators.iter().enumerate())
            .filter(|(_, op)| m0.builtin(op) == BuiltinOperator::UnidirectionalSequenceLstm);
        for (oi, op) in lstms {
            for pos in 1..op.inputs.len() {
                for replace in [-1, op.inputs[0]] {
                    let mut m = m0.clone();
                    m.subgraphs[0].operators[oi].inputs[pos] = replace;
                    let Some(m) = as_read(&m) else { continue };
                    if let Err(e) = quant_harness::check(&m) {
                        failures.push(format!("{name} op {oi} input {pos} := {replace}: {e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Wiring mutations, the class of the fuzz findings above, on every testdata model under
/// 64 KiB: an input of an operator made absent (-1), the subgraph's first input, the
/// operator's next operand or another tensor; an output made absent, the last tensor or
/// the model's first output. What the reader accepts goes through every mode: each
/// returns a valid model or rejects the input with exit 2. All ~10 000 variants take
/// minutes in a debug build, so each model takes at most [`WIRING_CASES`] of its
/// variants, spread evenly over its operators.
#[test]
fn rewired_operands_through_every_mode() {
    let mut paths: Vec<_> = std::fs::read_dir(root().join("testdata"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 65536))
        .collect();
    paths.sort();
    let (mut failures, mut tried) = (Vec::new(), 0);
    for path in &paths {
        let m0 = tflquant::read_path(path).unwrap();
        // (subgraph, operator, is an output, position, new tensor)
        let mut variants = Vec::new();
        for (si, sg) in m0.subgraphs.iter().enumerate() {
            let n = sg.tensors.len() as i32;
            for (oi, op) in sg.operators.iter().enumerate() {
                for pos in 0..op.inputs.len() {
                    let first = sg.inputs.first().copied().unwrap_or(-1);
                    let next = op.inputs[(pos + 1) % op.inputs.len()];
                    let other = (oi * 7 + pos * 13 + 5) as i32 % n.max(1);
                    for to in [-1, first, next, other] {
                        if to != op.inputs[pos] {
                            variants.push((si, oi, false, pos, to));
                        }
                    }
                }
                for pos in 0..op.outputs.len() {
                    let output = sg.outputs.first().copied().unwrap_or(-1);
                    for to in [-1, n - 1, output] {
                        if to != op.outputs[pos] {
                            variants.push((si, oi, true, pos, to));
                        }
                    }
                }
            }
        }
        let step = variants.len().div_ceil(WIRING_CASES).max(1);
        for &(si, oi, output, pos, to) in variants.iter().step_by(step) {
            let mut m = m0.clone();
            let op = &mut m.subgraphs[si].operators[oi];
            let list = if output {
                &mut op.outputs
            } else {
                &mut op.inputs
            };
            list[pos] = to;
            let Some(m) = as_read(&m) else { continue };
            tried += 1;
            if let Err(e) = quant_harness::check(&m) {
                let name = path.file_name().unwrap().to_string_lossy();
                let kind = if output { "output" } else { "input" };
                failures.push(format!(
                    "{name}: subgraph {si} op {oi} {kind} {pos} := {to}: {e}"
                ));
            }
        }
    }
    assert!(
        paths.len() >= 40 && tried >= 500,
        "{} models, {tried} variants",
        paths.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Variants per model in [`rewired_operands_through_every_mode`].
const WIRING_CASES: usize = 32;

/// Found by [`rewired_operands_through_every_mode`] (2026-12-07): a QAT model's weight
/// QUANTIZE→DEQUANTIZE pair fed an activation instead (the model input) handed the
/// weight's 16 per-axis scales to the activation, and `--mode int8` stopped with an
/// internal error (an invalid graph). Such parameters are now rejected with exit 2.
#[test]
fn per_axis_fake_quant_parameters_on_an_activation_are_rejected() {
    use tflquant::fb::BuiltinOperator;
    use tflquant::quant::{Mode, Options};
    let mut m = tflquant::read_path(testdata("qat_digits.float.tflite")).unwrap();
    let sg = &m.subgraphs[0];
    // The last one (conv3's weights): the first feeds a CONV_2D that also reads the
    // model input, which then stays float for reading its own input as a weight.
    let oi = (sg.operators.iter())
        .rposition(|op| {
            m.builtin(op) == BuiltinOperator::Quantize
                && sg.tensors[op.outputs[0] as usize]
                    .quantized()
                    .is_some_and(|p| p.scale.len() > 1)
        })
        .expect("a per-axis weight QUANTIZE");
    m.subgraphs[0].operators[oi].inputs[0] = m.subgraphs[0].inputs[0];
    let m = as_read(&m).expect("the reader accepts it");
    quant_harness::check(&m).unwrap();
    let err = tflquant::quant::quantize(&m, &Options::new(Mode::Int8)).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string().contains("per-axis scales on activation"),
        "{err}"
    );
}
