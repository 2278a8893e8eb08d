//! UNIDIRECTIONAL_SEQUENCE_LSTM variants Keras does not write (issue #13): layer norm,
//! peephole, projection (with and without bias), CIFG, and a combination. The models
//! are built in Rust from the trained `lstm_digits` LSTM (its gate weights and biases;
//! its 10×32 classifier weights, scaled by 1/4, as the projection) plus layer-norm
//! coefficients ≈ 1 and peephole weights ≈ 0.1 (fixed seed), and fed sklearn digits
//! rows as sequences (8 steps of 8 pixels, `digits_qat.*.npy`). The model's output is
//! the LSTM's output sequence.
//!
//! * LiteRT runs every float model, and the interpreter's float kernel agrees with it.
//! * In `int8` every variant LiteRT's integer kernel runs correctly becomes integer: the
//!   operands have the types and scales the kernel reads (checked here), LiteRT runs the
//!   file, its outputs are within the derived SQNR floor of the float model, and
//!   `tflquant run` gives LiteRT's integers.
//! * A peephole LSTM with a projection to fewer outputs than cells stays hybrid (LiteRT's
//!   integer kernel applies the peepholes to the first outputs' cells only), and every
//!   variant stays hybrid in `int16x8` (LiteRT has no 16x8 LSTM); the reasons say so.

use std::path::{Path, PathBuf};

use tflquant::data::{Array, read_npy, write_npy};
use tflquant::fb::{self, ActivationFunctionType as Act, BuiltinOperator as Op, TensorType};
use tflquant::ir::{Model, Tensor};

use crate::common::*;
use crate::interp::run_ours;
use crate::planner::Graph;

const STEPS: usize = 8;
const FEATURES: usize = 8;
const CELLS: usize = 32;
/// Output size with projection (the trained classifier's 10 classes).
const PROJ: usize = 10;

/// A fixed-seed uniform generator (LCG).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, a: f32) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
    }
    fn vec(&mut self, n: usize, centre: f32, a: f32) -> Vec<f32> {
        (0..n).map(|_| centre + self.uniform(a)).collect()
    }
}

/// Which optional parts a test LSTM has.
#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    cifg: bool,
    peephole: bool,
    layer_norm: bool,
    /// `Some(with_bias)`: a projection to [`PROJ`] outputs.
    projection: Option<bool>,
    /// Cell clip 1.0 and projection clip 0.5 (both clip these models' values).
    clip: bool,
}

impl Spec {
    fn n_out(&self) -> usize {
        if self.projection.is_some() {
            PROJ
        } else {
            CELLS
        }
    }
}

const SPECS: [Spec; 8] = [
    Spec {
        name: "layer_norm",
        cifg: false,
        peephole: false,
        layer_norm: true,
        projection: None,
        clip: false,
    },
    Spec {
        name: "peephole",
        cifg: false,
        peephole: true,
        layer_norm: false,
        projection: None,
        clip: false,
    },
    Spec {
        name: "projection",
        cifg: false,
        peephole: false,
        layer_norm: false,
        projection: Some(true),
        clip: false,
    },
    Spec {
        name: "projection_no_bias",
        cifg: false,
        peephole: false,
        layer_norm: false,
        projection: Some(false),
        clip: false,
    },
    Spec {
        name: "projection_clipped",
        cifg: false,
        peephole: false,
        layer_norm: false,
        projection: Some(true),
        clip: true,
    },
    Spec {
        name: "cifg",
        cifg: true,
        peephole: false,
        layer_norm: false,
        projection: None,
        clip: false,
    },
    Spec {
        name: "cifg_layer_norm_peephole",
        cifg: true,
        peephole: true,
        layer_norm: true,
        projection: None,
        clip: false,
    },
    Spec {
        name: "layer_norm_peephole_projection",
        cifg: false,
        peephole: true,
        layer_norm: true,
        projection: Some(true),
        clip: false,
    },
];

/// The trained float operands of `lstm_digits`' LSTM (by input position) and its
/// classifier's weights `[10, 32]` and bias.
fn trained() -> (Vec<Option<Vec<f32>>>, Vec<f32>, Vec<f32>) {
    let m = tflquant::read_path(testdata("lstm_digits.tflite")).unwrap();
    let sg = &m.subgraphs[0];
    let floats = |t: usize| -> Vec<f32> {
        m.tensor_data(&sg.tensors[t])
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let lstm = sg
        .operators
        .iter()
        .find(|o| m.builtin(o) == Op::UnidirectionalSequenceLstm)
        .unwrap();
    let ops: Vec<Option<Vec<f32>>> = (0..24)
        .map(|pos| {
            let t = usize::try_from(*lstm.inputs.get(pos)?).ok()?;
            m.is_constant(&sg.tensors[t]).then(|| floats(t))
        })
        .collect();
    let fc = sg
        .operators
        .iter()
        .find(|o| m.builtin(o) == Op::FullyConnected)
        .unwrap();
    let w = floats(fc.inputs[1] as usize);
    let b = floats(fc.inputs[2] as usize);
    assert_eq!((w.len(), b.len()), (PROJ * CELLS, PROJ));
    (ops, w, b)
}

/// The float model of `spec`: `x [1, 8, 8]` → LSTM → `lstm_out [1, 8, n_out]`.
fn variant_model(spec: &Spec) -> Model {
    let (tr, pw, pb) = trained();
    let mut rng = Rng(0x15_7a);
    let mut g = Graph::new();
    let n_out = spec.n_out();
    let (c, o) = (CELLS as i32, n_out as i32);
    let x = g.act("x", &[1, STEPS as i32, FEATURES as i32]);
    let mut ins = vec![x];
    let gates = ["i", "f", "c", "o"];
    let skip_input = |k: usize| spec.cifg && k == 0;
    for (k, gate) in gates.iter().enumerate() {
        let w = tr[1 + k].clone().unwrap();
        ins.push(if skip_input(k) {
            -1
        } else {
            g.constant(&format!("lstm/w_{gate}"), &[c, FEATURES as i32], &w)
        });
    }
    for (k, gate) in gates.iter().enumerate() {
        // The trained [32, 32] recurrent weights; with projection their first 10 columns.
        let r = tr[5 + k].clone().unwrap();
        let r: Vec<f32> = r
            .chunks_exact(CELLS)
            .flat_map(|row| row[..n_out].to_vec())
            .collect();
        ins.push(if skip_input(k) {
            -1
        } else {
            g.constant(&format!("lstm/r_{gate}"), &[c, o], &r)
        });
    }
    for (k, gate) in ["i", "f", "o"].iter().enumerate() {
        let p = rng.vec(CELLS, 0.0, 0.2);
        ins.push(if spec.peephole && !skip_input(k) {
            g.constant(&format!("lstm/peephole_{gate}"), &[c], &p)
        } else {
            -1
        });
    }
    for (k, gate) in gates.iter().enumerate() {
        let b = tr[12 + k].clone().unwrap();
        ins.push(if skip_input(k) {
            -1
        } else {
            g.constant(&format!("lstm/b_{gate}"), &[c], &b)
        });
    }
    match spec.projection {
        Some(with_bias) => {
            let w: Vec<f32> = pw.iter().map(|v| v * 0.25).collect();
            ins.push(g.constant("lstm/projection", &[o, c], &w));
            ins.push(if with_bias {
                let b: Vec<f32> = pb.iter().map(|v| v * 0.25).collect();
                g.constant("lstm/projection_bias", &[o], &b)
            } else {
                -1
            });
        }
        None => ins.extend([-1, -1]),
    }
    let h = g.act("lstm/h", &[1, o]);
    let cs = g.act("lstm/c", &[1, c]);
    ins.extend([h, cs]);
    for (k, gate) in gates.iter().enumerate() {
        let l = rng.vec(CELLS, 1.0, 0.2);
        ins.push(if spec.layer_norm && !skip_input(k) {
            g.constant(&format!("lstm/layer_norm_{gate}"), &[c], &l)
        } else {
            -1
        });
    }
    assert_eq!(ins.len(), 24);
    let y = g.act("lstm_out", &[1, STEPS as i32, o]);
    g.op(
        Op::UnidirectionalSequenceLstm,
        &ins,
        &[y],
        Some(fb::BuiltinOptions::UnidirectionalSequenceLstmOptions(
            Box::new(fb::UnidirectionalSequenceLstmOptions {
                fused_activation_function: Act::Tanh,
                cell_clip: if spec.clip { 1.0 } else { 0.0 },
                proj_clip: if spec.clip { 0.5 } else { 0.0 },
                time_major: false,
                asymmetric_quantize_inputs: false,
                diagonal_recurrent_tensors: false,
            }),
        )),
    );
    let mut m = g.finish(&[x], &[y]);
    for t in [h, cs] {
        m.subgraphs[0].tensors[t as usize].is_variable = true;
    }
    m
}

/// Digits images `[n, 8, 8, 1]` as sequences `[n, 8, 8]` (rows are time steps), at most
/// `n` of them.
fn digits(file: &str, n: usize) -> Array {
    let a = read_npy(testdata(file)).unwrap();
    let n = n.min(a.shape[0]);
    let k = STEPS * FEATURES;
    Array::f32(
        vec![n, STEPS, FEATURES],
        a.data.to_f64()[..n * k].iter().map(|&v| v as f32).collect(),
    )
}

fn write(dir: &Path, name: &str, m: &Model) -> PathBuf {
    let p = dir.join(name);
    tflquant::writer::write_path(m, &p, &Default::default()).unwrap();
    p
}

/// Quantizes `input` in `mode` with the 64 calibration digits; the output model and
/// its report.
fn quantize(dir: &Path, input: &Path, mode: &str) -> (PathBuf, serde_json::Value) {
    let calib = dir.join("calib.npy");
    if !calib.exists() {
        write_npy(&calib, &digits("digits_qat.calib.npy", usize::MAX)).unwrap();
    }
    let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
    let out = dir.join(format!("{stem}.{mode}.tflite"));
    let report = dir.join(format!("{stem}.{mode}.json"));
    let (code, _, err) = quantize_run(
        input,
        &out,
        &[
            "--mode",
            mode,
            "--calibration",
            calib.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{}: {err}", input.display());
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out, r)
}

/// The report entry of the LSTM.
fn lstm_fate(r: &serde_json::Value) -> serde_json::Value {
    let ops: Vec<&serde_json::Value> = r["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["op"] == "UNIDIRECTIONAL_SEQUENCE_LSTM")
        .collect();
    assert_eq!(ops.len(), 1, "{r}");
    ops[0].clone()
}

/// The outputs of `tflquant run` (the reference interpreter), stacked like LiteRT's.
fn ours(m: &Model, inputs: &[Array]) -> Vec<f64> {
    run_ours(m, inputs)
        .iter()
        .flat_map(|(outs, _)| outs[0].to_array().data.to_f64())
        .collect()
}

fn the_lstm(m: &Model) -> &tflquant::ir::Operator {
    let ops: Vec<_> = m.subgraphs[0]
        .operators
        .iter()
        .filter(|o| m.builtin(o) == Op::UnidirectionalSequenceLstm)
        .collect();
    assert_eq!(ops.len(), 1);
    ops[0]
}

fn operand<'a>(m: &'a Model, op: &tflquant::ir::Operator, pos: usize) -> Option<&'a Tensor> {
    let t = usize::try_from(*op.inputs.get(pos)?).ok()?;
    Some(&m.subgraphs[0].tensors[t])
}

/// (scale, zero point) of a per-tensor quantized tensor.
fn params(t: &Tensor) -> (f64, i64) {
    let q = t
        .quant
        .as_ref()
        .unwrap_or_else(|| panic!("{}: not quantized", t.name));
    assert_eq!(q.scale.len(), 1, "{}: not per tensor", t.name);
    (q.scale[0] as f64, q.zero_point[0])
}

/// Integer values of a constant tensor.
fn ints(m: &Model, t: &Tensor) -> Vec<i64> {
    let d = m.tensor_data(t);
    match t.dtype {
        TensorType::Int8 => d.iter().map(|&b| b as i8 as i64).collect(),
        TensorType::Int16 => d
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
            .collect(),
        TensorType::Int32 => d
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
            .collect(),
        other => panic!("{}: {other:?}", t.name),
    }
}

/// The float model's LiteRT outputs agree with the interpreter's float kernel (within
/// 1e-5 of the largest output): the variant models are what the kernel computes, so
/// they are fit references for the quantized ones.
#[test]
fn lstm_variant_float_models_run_on_litert() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = vec![digits("digits_qat.test.npy", 64)];
    for spec in &SPECS {
        let m = variant_model(spec);
        let p = write(dir.path(), &format!("{}.tflite", spec.name), &m);
        let lite = litert_run(&p, &inputs).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        let lite = lite[0].data.to_f64();
        let mine = ours(&m, &inputs);
        assert_eq!(lite.len(), 64 * STEPS * spec.n_out());
        let big = lite.iter().fold(0f64, |a, v| a.max(v.abs()));
        let worst = lite
            .iter()
            .zip(&mine)
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        eprintln!(
            "{}: float max |y| {big:.3}, run vs LiteRT {worst:.2e}",
            spec.name
        );
        assert!(big > 0.1, "{}: degenerate outputs", spec.name);
        assert!(worst <= 1e-5 * big, "{}: {worst}", spec.name);
    }
}

/// Whether LiteRT's integer kernel runs `spec` as the float model means it.
fn integer(spec: &Spec) -> bool {
    !(spec.peephole && spec.projection.is_some())
}

/// SQNR floor for an LSTM output `f` (the float model's, over the test digits), derived
/// from the int8 step: one rounding of the output to the int8 grid over its range
/// (`s = (max − min) / 255`, noise `s²/12`) gives `10·log10(mean(f²) / (s²/12))`. The
/// quantized LSTM rounds its int8 state every step and feeds it back, and rounds its
/// input and the 16-bit gates: at most one rounding's noise per step for the state and
/// one for the rest, each reaching the output with gain at most 1 (the gates are
/// sigmoids and tanh of bounded slope, the cell decays by the forget gate), so the noise
/// is at most `2 × steps` such roundings: the floor is `10·log10(2 × 8)` = 12 dB lower.
fn sqnr_floor(f: &[f64]) -> f64 {
    let (lo, hi) = f
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let s = (hi - lo) / 255.0;
    let power = f.iter().map(|v| v * v).sum::<f64>() / f.len() as f64;
    10.0 * (power / (s * s / 12.0)).log10() - 10.0 * ((2 * STEPS) as f64).log10()
}

/// int8: the structure the integer kernel reads, LiteRT runs it, SQNR against the float
/// model above the derived floor, `run` equals LiteRT (identical integers; 1e-6 absorbs
/// the printing of the dequantized floats, which are 1/128 and more apart).
#[test]
fn lstm_variants_are_integer_in_int8() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = vec![digits("digits_qat.test.npy", 64)];
    for spec in SPECS.iter().filter(|s| integer(s)) {
        let m = variant_model(spec);
        let p = write(dir.path(), &format!("{}.tflite", spec.name), &m);
        let f = litert_run(&p, &inputs).unwrap()[0].data.to_f64();
        let (out, r) = quantize(dir.path(), &p, "int8");
        let fate = lstm_fate(&r);
        assert_eq!(fate["fate"], "quantized", "{}: {fate}", spec.name);
        let qm = tflquant::read_path(&out).unwrap();
        check_structure(spec, &m, &qm);
        let q = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{}: {e}", spec.name))[0]
            .data
            .to_f64();
        let s = sqnr_db(&f, &q);
        let floor = sqnr_floor(&f);
        let mine = ours(&qm, &inputs);
        assert_eq!(mine.len(), q.len());
        let worst = mine
            .iter()
            .zip(&q)
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        eprintln!(
            "{}: int8 SQNR {s:.1} dB (floor {floor:.1}), run vs LiteRT {worst:.2e}",
            spec.name
        );
        assert!(s >= floor, "{}: SQNR {s:.1} dB < {floor:.1}", spec.name);
        // sqnr_db rejects NaN on both sides; `run` too.
        assert!(mine.iter().all(|v| v.is_finite()), "{}: run", spec.name);
        assert!(worst <= 1e-6, "{}: run vs LiteRT {worst}", spec.name);
    }
}

/// Largest |value| of a float constant.
fn max_abs(m: &Model, t: &Tensor) -> f64 {
    m.tensor_data(t)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs() as f64)
        .fold(0.0, f64::max)
}

/// Largest |value| int8 parameters represent.
fn represented(p: (f64, i64)) -> f64 {
    (p.0 * (-128 - p.1) as f64)
        .abs()
        .max((p.0 * (127 - p.1) as f64).abs())
}

/// The operands as LiteRT's integer kernel reads them (`lstm.cc`
/// `PopulateQuantizedLstmParams8x8_16`, `CheckInputTensorDimensions`), for variant
/// `spec` quantized from float model `fm` into `qm`.
fn check_structure(spec: &Spec, fm: &Model, qm: &Model) {
    let name = spec.name;
    let (fop, op) = (the_lstm(fm), the_lstm(qm));
    let ty = |pos: usize| operand(qm, op, pos).map(|t| t.dtype);
    let x = params(operand(qm, op, 0).unwrap());
    assert_eq!(ty(0), Some(TensorType::Int8), "{name}");
    let y = &qm.subgraphs[0].tensors[op.outputs[0] as usize];
    assert_eq!(y.dtype, TensorType::Int8, "{name}");
    let y = params(y);
    // Absent operands stay absent (CIFG: the input gate; no projection bias...).
    for pos in 1..24 {
        assert_eq!(
            operand(fm, fop, pos).is_some(),
            operand(qm, op, pos).is_some(),
            "{name}: operand {pos}"
        );
    }
    // Symmetric per-tensor constants: int8 weights (gates 1-8, projection 16) with
    // max|w|/127, int16 peepholes (9-11) and layer-norm coefficients (20-23) with
    // max|w|/32767.
    let mut scale = [0f64; 24];
    for (positions, dtype, qmax) in [
        (&[1, 2, 3, 4, 5, 6, 7, 8, 16][..], TensorType::Int8, 127.0),
        (&[9, 10, 11, 20, 21, 22, 23][..], TensorType::Int16, 32767.0),
    ] {
        for &pos in positions {
            let (Some(ft), Some(qt)) = (operand(fm, fop, pos), operand(qm, op, pos)) else {
                continue;
            };
            assert_eq!(qt.dtype, dtype, "{name}: operand {pos}");
            let (s, zp) = params(qt);
            assert_eq!(zp, 0, "{name}: operand {pos}");
            let want = max_abs(fm, ft) / qmax;
            assert!(
                (s - want).abs() <= 1e-6 * want,
                "{name}: operand {pos}: {s} vs {want}"
            );
            scale[pos] = s;
        }
    }
    // Gate biases: s_input × s_weight, or s_norm × 2^-10 with layer norm; values within
    // half a step of the float ones.
    for g in 0..4 {
        let (Some(fb_), Some(qb)) = (operand(fm, fop, 12 + g), operand(qm, op, 12 + g)) else {
            continue;
        };
        assert_eq!(qb.dtype, TensorType::Int32, "{name}: bias {g}");
        let (s, zp) = params(qb);
        assert_eq!(zp, 0);
        let want = if spec.layer_norm {
            (scale[20 + g] as f32 * 2f32.powi(-10)) as f64
        } else {
            (x.0 as f32 * scale[1 + g] as f32) as f64
        };
        assert!(
            (s - want).abs() <= 1e-6 * want,
            "{name}: bias {g}: {s} vs {want}"
        );
        let fv: Vec<f64> = fm
            .tensor_data(fb_)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect();
        for (q, f) in ints(qm, qb).iter().zip(&fv) {
            assert!(
                (*q as f64 * s - f).abs() <= s * 0.5 + 1e-9,
                "{name}: bias {g}"
            );
        }
    }
    // States: the output state int8 with the output's parameters, the cell int16 at a
    // power of two 2^k, k <= -9 (CheckedLog2 and the kernel's bound).
    let h = operand(qm, op, 18).unwrap();
    assert!(h.is_variable && h.dtype == TensorType::Int8, "{name}");
    assert_eq!(params(h), y, "{name}: output state");
    let c = operand(qm, op, 19).unwrap();
    assert!(c.is_variable && c.dtype == TensorType::Int16, "{name}");
    let (sc, zc) = params(c);
    let k = sc.log2();
    assert!(
        zc == 0 && k == k.round() && k <= -9.0,
        "{name}: cell scale {sc}"
    );
    // Hidden value (intermediate 4): the output's parameters without projection (the
    // kernel writes it as the output state), 1/127 symmetric with projection.
    let inter = op.intermediates.as_ref().expect("intermediates");
    assert_eq!(inter.len(), 5, "{name}");
    let it = |i: usize| &qm.subgraphs[0].tensors[inter[i] as usize];
    assert_eq!(it(4).dtype, TensorType::Int8);
    let hidden = params(it(4));
    match spec.projection {
        Some(with_bias) => {
            assert_eq!(hidden, ((1.0f32 / 127.0) as f64, 0), "{name}");
            assert_eq!(ty(16), Some(TensorType::Int8));
            if with_bias {
                let pb = operand(qm, op, 17).unwrap();
                assert_eq!(pb.dtype, TensorType::Int32);
                let want = (scale[16] as f32 * hidden.0 as f32) as f64;
                let (s, zp) = params(pb);
                assert!(
                    zp == 0 && (s - want).abs() <= 1e-6 * want,
                    "{name}: {s} vs {want}"
                );
            }
        }
        None => assert_eq!(hidden, y, "{name}: hidden"),
    }
    // Gate intermediates: Q3.12 without layer norm; with layer norm int16 symmetric
    // holding the largest pre-normalisation value the quantized operands can produce.
    for g in 0..4 {
        assert_eq!(it(g).dtype, TensorType::Int16, "{name}");
        let (s, zp) = params(it(g));
        assert_eq!(zp, 0);
        if !spec.layer_norm {
            assert_eq!(s, 2f64.powi(-12), "{name}: gate {g}");
            continue;
        }
        let row_sums = |pos: usize, cols: usize| -> Vec<f64> {
            match operand(qm, op, pos) {
                None => vec![0.0; CELLS],
                Some(t) => ints(qm, t)
                    .chunks(cols)
                    .map(|r| r.iter().map(|v| v.abs() as f64).sum::<f64>() * scale[pos])
                    .collect(),
            }
        };
        let peep = [Some(9), Some(10), None, Some(11)][g];
        let ins = row_sums(1 + g, FEATURES);
        let rec = row_sums(5 + g, spec.n_out());
        let pp = peep.map_or(vec![0.0; CELLS], |p| row_sums(p, 1));
        let bound = (0..CELLS)
            .map(|r| ins[r] * represented(x) + rec[r] * represented(y) + pp[r] * sc * 32768.0)
            .fold(0.0, f64::max);
        if operand(qm, op, 1 + g).is_none() {
            // CIFG: the input gate's intermediate is never read; Q3.12.
            assert_eq!(s, 2f64.powi(-12), "{name}: CIFG input gate");
            continue;
        }
        let want = bound / 32767.0;
        assert!(
            (s - want).abs() <= 1e-5 * want,
            "{name}: gate {g}: {s} vs {want}"
        );
    }
}

/// Where LiteRT's integer kernel cannot run the variant (a peephole LSTM with a
/// projection to fewer outputs than cells, in `int8`; every variant in `int16x8`), the
/// LSTM stays a hybrid (int8 weights, float activations) with a reason that says what is
/// true of the runtime; LiteRT runs it, above the same derived SQNR floor.
#[test]
fn lstm_variants_without_an_integer_kernel_stay_hybrid() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = vec![digits("digits_qat.test.npy", 64)];
    let cases = SPECS
        .iter()
        .filter(|s| !integer(s))
        .map(|s| (s, "int8"))
        .chain(SPECS.iter().map(|s| (s, "int16x8")));
    for (spec, mode) in cases {
        let name = spec.name;
        let m = variant_model(spec);
        let p = write(dir.path(), &format!("{name}.tflite"), &m);
        let f = litert_run(&p, &inputs).unwrap()[0].data.to_f64();
        let (out, r) = quantize(dir.path(), &p, mode);
        let fate = lstm_fate(&r);
        let why = fate["reason"].as_str().unwrap_or_default();
        assert_eq!(fate["fate"], "float", "{name} {mode}: {fate}");
        assert!(
            why.contains("kept as a hybrid LSTM"),
            "{name} {mode}: {why}"
        );
        let runtime = if mode == "int8" {
            "LiteRT's integer kernel applies the peephole weights to the first 10 cells only"
        } else {
            "LiteRT has no UNIDIRECTIONAL_SEQUENCE_LSTM kernel with int16 activations"
        };
        assert!(why.contains(runtime), "{name} {mode}: {why}");
        let qm = tflquant::read_path(&out).unwrap();
        let op = the_lstm(&qm);
        assert_eq!(
            operand(&qm, op, 0).unwrap().dtype,
            TensorType::Float32,
            "{name} {mode}"
        );
        for pos in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16] {
            if let Some(t) = operand(&qm, op, pos) {
                assert_eq!(t.dtype, TensorType::Int8, "{name} {mode}: operand {pos}");
            }
        }
        let q = litert_run(&out, &inputs).unwrap_or_else(|e| panic!("{name} {mode}: {e}"))[0]
            .data
            .to_f64();
        let s = sqnr_db(&f, &q);
        let floor = sqnr_floor(&f);
        let mine = ours(&qm, &inputs);
        let worst = mine
            .iter()
            .zip(&q)
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        eprintln!(
            "{name} {mode}: hybrid SQNR {s:.1} dB (floor {floor:.1}), run vs LiteRT {worst:.2e}"
        );
        assert!(s >= floor, "{name} {mode}: SQNR {s:.1} dB < {floor:.1}");
    }
}
