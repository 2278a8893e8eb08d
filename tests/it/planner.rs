//! The integer planner on tiny graphs built in Rust (no Python, no files to generate):
//! each test builds a model of a few operators with [`Graph`] (a WHILE's cond and body
//! as further subgraphs), quantizes it
//! through the public API (`quant::quantize`) with ranges it sets itself, asserts the
//! plan (which parameters, which conversions) and runs the output on LiteRT against
//! the float model with a bound derived from the quantization steps.
//!
//! What each test catches when it breaks is said in its doc comment.

use tflquant::calib::{Calibrator, ObserverKind, Ranges};
use tflquant::data::Array;
use tflquant::fb::{self, BuiltinOperator as Op, TensorType};
use tflquant::interp::Value;
use tflquant::ir::{Model, Operator, QuantParams, SignatureDef, Subgraph, Tensor, TensorMap};
use tflquant::quant::{self, Mode, Options, Report};

use crate::common::*;

/// A test-only model builder: one subgraph at a time (`next_subgraph` starts the next),
/// opcodes and buffers added on demand.
pub struct Graph {
    m: Model,
    sg: Subgraph,
}

impl Graph {
    pub fn new() -> Self {
        Graph {
            m: Model {
                version: 3,
                // Buffer 0: the empty buffer of activations.
                buffers: vec![Default::default()],
                ..Default::default()
            },
            sg: Subgraph {
                name: Some("main".into()),
                debug_metadata_index: -1,
                ..Default::default()
            },
        }
    }

    /// A float32 activation.
    pub fn act(&mut self, name: &str, shape: &[i32]) -> i32 {
        self.sg
            .add_tensor(Tensor::new(name, TensorType::Float32, shape.to_vec()))
    }

    /// A float32 constant.
    pub fn constant(&mut self, name: &str, shape: &[i32], values: &[f32]) -> i32 {
        let n: i32 = shape.iter().product();
        assert_eq!(
            n as usize,
            values.len(),
            "{name}: shape and values disagree"
        );
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut t = Tensor::new(name, TensorType::Float32, shape.to_vec());
        t.buffer = self.m.add_buffer(bytes);
        self.sg.add_tensor(t)
    }

    pub fn op(
        &mut self,
        op: Op,
        inputs: &[i32],
        outputs: &[i32],
        opts: Option<fb::BuiltinOptions>,
    ) {
        let code = self.m.ensure_opcode(op, 1);
        let mut o = Operator::new(code, inputs.to_vec(), outputs.to_vec());
        o.builtin_options = opts;
        self.sg.operators.push(o);
    }

    /// An int32 constant (loop counters).
    pub fn constant_i32(&mut self, name: &str, shape: &[i32], values: &[i32]) -> i32 {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut t = Tensor::new(name, TensorType::Int32, shape.to_vec());
        t.buffer = self.m.add_buffer(bytes);
        self.sg.add_tensor(t)
    }

    /// Ends the current subgraph with these inputs and outputs and starts the next one
    /// (subgraph indices follow the order of the calls; `finish` ends the last one).
    pub fn next_subgraph(&mut self, inputs: &[i32], outputs: &[i32], name: &str) {
        let next = Subgraph {
            name: Some(name.into()),
            debug_metadata_index: -1,
            ..Default::default()
        };
        let mut sg = std::mem::replace(&mut self.sg, next);
        sg.inputs = inputs.to_vec();
        sg.outputs = outputs.to_vec();
        self.m.subgraphs.push(sg);
    }

    pub fn finish(mut self, inputs: &[i32], outputs: &[i32]) -> Model {
        self.sg.inputs = inputs.to_vec();
        self.sg.outputs = outputs.to_vec();
        self.m.subgraphs.push(self.sg);
        self.m
    }
}

fn fc_options() -> Option<fb::BuiltinOptions> {
    Some(fb::BuiltinOptions::FullyConnectedOptions(Box::default()))
}

/// Min/max ranges of every float tensor over `samples` (one value per model input each,
/// through the reference interpreter); `fixed` then overrides the named tensors' ranges.
fn ranges(model: &Model, samples: &[Vec<Value>], fixed: &[(&str, f32, f32)]) -> Ranges {
    let mut c = Calibrator::new(model, ObserverKind::MinMax).unwrap();
    for s in samples {
        c.add_sample(s).unwrap();
    }
    let mut r = c.ranges();
    for &(name, lo, hi) in fixed {
        let t = r
            .tensors
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no range for {name}"));
        (t.min, t.max) = (lo, hi);
    }
    r
}

/// The planner's rules on small graphs whose operators mostly write model outputs: in
/// int8 without the wider outputs for the float side (`--int8-outputs`), which would make
/// those operators 16x8 tails (tested in `acc_int8.rs`).
fn options(mode: Mode, ranges: &Ranges) -> Options {
    let mut o = Options::new(mode);
    o.ranges = Some(ranges.clone());
    o.int8_outputs = true;
    o
}

fn quantize(model: &Model, opts: &Options) -> (Model, Report) {
    let (out, report) = quant::quantize(model, opts).unwrap_or_else(|e| panic!("{e}"));
    tflquant::ir::verify(&out).unwrap();
    (out, report)
}

fn tensor<'a>(m: &'a Model, name: &str) -> (usize, &'a Tensor) {
    m.subgraphs[0]
        .tensors
        .iter()
        .enumerate()
        .find(|(_, t)| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn params(t: &Tensor) -> &QuantParams {
    t.quantized()
        .unwrap_or_else(|| panic!("{} has no parameters", t.name))
}

/// Input `pos` of the first `op` of subgraph 0.
fn operand(m: &Model, op: Op, pos: usize) -> &Tensor {
    let sg = &m.subgraphs[0];
    let o = sg
        .operators
        .iter()
        .find(|o| m.builtin(o) == op)
        .unwrap_or_else(|| panic!("no {op:?}"));
    &sg.tensors[o.inputs[pos] as usize]
}

/// Operators as (builtin, inputs, outputs).
fn ops(m: &Model) -> Vec<(Op, Vec<i32>, Vec<i32>)> {
    m.subgraphs[0]
        .operators
        .iter()
        .map(|o| (m.builtin(o), o.inputs.clone(), o.outputs.clone()))
        .collect()
}

/// Every operator of the run quantized (the report's fates).
fn assert_all_quantized(report: &Report) {
    let r = serde_json::to_value(report).unwrap();
    for o in r["ops"].as_array().unwrap() {
        assert_eq!(o["fate"], "quantized", "{o}");
    }
}

/// Writes `m` into `dir/name` (read back by the writer).
fn write(dir: &std::path::Path, name: &str, m: &Model) -> std::path::PathBuf {
    let p = dir.join(name);
    tflquant::writer::write_path(m, &p, &Default::default()).unwrap();
    p
}

/// Dequantized outputs of a model with integer outputs (float outputs as they are).
fn real(m: &Model, outs: &[Array]) -> Vec<Vec<f64>> {
    let sg = &m.subgraphs[0];
    outs.iter()
        .zip(&sg.outputs)
        .map(|(a, &t)| {
            let v = a.data.to_f64();
            match sg.tensors[t as usize].quantized() {
                Some(q) => v
                    .iter()
                    .map(|&x| (x - q.zero_point[0] as f64) * q.scale[0] as f64)
                    .collect(),
                None => v,
            }
        })
        .collect()
}

fn assert_finite(what: &str, v: &[f64]) {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        panic!("{what}: non-finite value {} at {i}", v[i]);
    }
}

/// Values of a ramp over [lo, hi] (both ends included), `n` of them.
fn ramp(n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
        .collect()
}

/// The real range int8 per-tensor parameters represent.
fn represented_range(p: &QuantParams) -> (f32, f32) {
    let (s, z) = (p.scale[0], p.zero_point[0] as f32);
    ((-128.0 - z) * s, (127.0 - z) * s)
}

/// The fixed int8 output parameters of LOGISTIC and TANH.
fn fixed_params(op: Op) -> QuantParams {
    match op {
        Op::Logistic => QuantParams::per_tensor(1.0 / 256.0, -128),
        Op::Tanh => QuantParams::per_tensor(1.0 / 128.0, 0),
        _ => unreachable!(),
    }
}

/// CONCATENATION(first(x), second(x)) for LOGISTIC and TANH in either order: the
/// shared-scale group takes TANH's parameters (the only ones that hold both halves'
/// values), LOGISTIC's edge is requantized by an int8→int8 QUANTIZE into them; on
/// LiteRT the output is the float model's within one output step plus the roundings on
/// the way.
fn concat_of_fixed_outputs(first: Op, second: Op) {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 8]);
    let a = g.act("first", &[1, 8]);
    let b = g.act("second", &[1, 8]);
    let y = g.act("concat", &[1, 16]);
    g.op(first, &[x], &[a], None);
    g.op(second, &[x], &[b], None);
    g.op(
        Op::Concatenation,
        &[a, b],
        &[y],
        Some(fb::BuiltinOptions::ConcatenationOptions(Box::new(
            fb::ConcatenationOptions {
                axis: 1,
                ..Default::default()
            },
        ))),
    );
    let m = g.finish(&[x], &[y]);
    let xs = ramp(8 * 8, -4.0, 4.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(8)
        .map(|c| vec![Value::f32(vec![1, 8], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);

    let (pa, pb) = (fixed_params(first), fixed_params(second));
    let (ai, at) = tensor(&q, "first");
    let (bi, bt) = tensor(&q, "second");
    let (yi, _) = tensor(&q, "concat/quantized");
    assert_eq!(params(at), &pa);
    assert_eq!(params(bt), &pb);
    // Position of the TANH input (joins the group) and of the LOGISTIC one.
    let (keep, req_pos) = if first == Op::Tanh { (0, 1) } else { (1, 0) };
    let (kept_i, req_src) = if keep == 0 { (ai, bi) } else { (bi, ai) };
    let group = fixed_params(Op::Tanh);
    assert_eq!(params(&q.subgraphs[0].tensors[yi]), &group);
    let o = ops(&q);
    let concat = o.iter().find(|o| o.0 == Op::Concatenation).unwrap();
    assert_eq!(
        concat.1[keep], kept_i as i32,
        "the TANH output joins the group"
    );
    // The LOGISTIC input is a requantized copy of its output, made by QUANTIZE int8→int8.
    let req = concat.1[req_pos] as usize;
    assert_ne!(
        req, req_src,
        "the LOGISTIC output is read without requantization"
    );
    let req_t = &q.subgraphs[0].tensors[req];
    assert_eq!(req_t.dtype, TensorType::Int8);
    assert_eq!(params(req_t), &group);
    let producer = o
        .iter()
        .find(|o| o.2 == [req as i32])
        .expect("a producer of the requantized tensor");
    assert_eq!(producer.0, Op::Quantize);
    assert_eq!(producer.1, [req_src as i32]);
    let quantizes = o.iter().filter(|o| o.0 == Op::Quantize).count();
    assert_eq!(quantizes, 2, "input QUANTIZE + one requantize edge: {o:?}");

    // LiteRT: one output step, plus the input's rounding (|f'| ≤ 1: half a step of x)
    // and half a step of each function's own output before requantization.
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 8], xs)];
    let f = litert_run(&fp, &input).unwrap();
    let got = litert_run(&qp, &input).unwrap();
    let (f, got) = (f[0].data.to_f64(), got[0].data.to_f64());
    assert_finite("float", &f);
    assert_finite("int8", &got);
    let s_x = params(tensor(&q, "x/quantized").1).scale[0] as f64;
    let (sa, sb) = (pa.scale[0] as f64, pb.scale[0] as f64);
    let bound = sa + s_x / 2.0 + sa / 2.0 + sb / 2.0;
    for (i, (u, v)) in f.iter().zip(&got).enumerate() {
        assert!(
            (u - v).abs() <= bound,
            "element {i}: {u} vs {v} (bound {bound})"
        );
    }
}

/// CONCATENATION(TANH(x), LOGISTIC(x)): the group takes TANH's (1/128, 0), which covers
/// LOGISTIC's [0, 1); the LOGISTIC edge is requantized. Catches: a conflict silently
/// merged (one half on the wrong scale), the requantize edge missing or on the wrong
/// input, fixed parameters changed.
#[test]
fn fixed_parameters_conflicting_in_a_shared_group_get_a_requantize_edge() {
    concat_of_fixed_outputs(Op::Tanh, Op::Logistic);
}

/// The same graph with the inputs the other way round. The planner used to give the
/// group the first fixed member's parameters, LOGISTIC's (1/256, -128), whose range
/// [0, 1) cannot hold TANH's negative half: the CONCATENATION output clipped every
/// negative tanh value to 0 (LiteRT gave 0 where the float model gives -0.999).
/// Catches: fixed parameters chosen by tensor order instead of by what they cover.
#[test]
fn fixed_parameters_of_the_first_member_must_not_clip_the_others() {
    concat_of_fixed_outputs(Op::Logistic, Op::Tanh);
}

/// CONCATENATION(LOGISTIC(x), x) with x in [-4, 4]: the group of the CONCATENATION
/// used to take LOGISTIC's fixed (1/256, -128), and x joined it, so x itself (read by LOGISTIC
/// too) was quantized on [0, 1): every negative x and every x above 1 was clipped, in
/// both halves of the output. Now LOGISTIC's parameters cannot hold the group's
/// [-4, 4], so the group keeps its range's parameters and the LOGISTIC edge is
/// requantized into them. Catches: a fixed member's parameters imposed on members
/// whose range they cannot hold.
#[test]
fn a_free_activation_joining_a_fixed_group_is_not_clipped() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 8]);
    let a = g.act("sigmoid", &[1, 8]);
    let y = g.act("concat", &[1, 16]);
    g.op(Op::Logistic, &[x], &[a], None);
    g.op(
        Op::Concatenation,
        &[a, x],
        &[y],
        Some(fb::BuiltinOptions::ConcatenationOptions(Box::new(
            fb::ConcatenationOptions {
                axis: 1,
                ..Default::default()
            },
        ))),
    );
    let m = g.finish(&[x], &[y]);
    let xs = ramp(8 * 8, -4.0, 4.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(8)
        .map(|c| vec![Value::f32(vec![1, 8], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    // The group (x and the output) keeps x's range; LOGISTIC keeps its own parameters
    // and is read through a requantizing QUANTIZE.
    let (xi, xt) = tensor(&q, "x/quantized");
    let (si_, st) = tensor(&q, "sigmoid");
    let (yi, yt) = tensor(&q, "concat/quantized");
    assert_eq!(params(st), &fixed_params(Op::Logistic));
    assert_eq!(params(xt), params(yt));
    // x's [-4, 4] to within one step (the zero point is rounded), not LOGISTIC's [0, 1).
    let (lo, hi) = represented_range(params(xt));
    let step = 8.0 / 255.0;
    assert!(lo <= -4.0 + step && hi >= 4.0 - step, "x on [{lo}, {hi}]");
    let o = ops(&q);
    let concat = o.iter().find(|o| o.0 == Op::Concatenation).unwrap();
    assert_eq!(concat.2, [yi as i32]);
    assert_eq!(concat.1[1], xi as i32, "x joins the group");
    let req = concat.1[0];
    let producer = o.iter().find(|o| o.2 == [req]).expect("a requantize op");
    assert_eq!(producer.0, Op::Quantize);
    assert_eq!(producer.1, [si_ as i32]);
    assert_eq!(params(&q.subgraphs[0].tensors[req as usize]), params(yt));
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 8], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("int8", &got);
    // The output's range is x's, [-4, 4]: one step 8/255, plus half an input step.
    let bound = 1.5 * 8.0 / 255.0;
    for (i, (u, v)) in f.iter().zip(&got).enumerate() {
        assert!(
            (u - v).abs() <= bound,
            "element {i}: {u} vs {v} (bound {bound})"
        );
    }
}

/// CONCATENATION of `fixed_op(x)` and (optionally) x itself, with the calibrated
/// ranges given: (x, fixed output, concatenation) as `(lo, hi)`. Returns the int8 model.
fn concat_with_fixed(
    fixed_op: Op,
    with_x: bool,
    rx: (f32, f32),
    rf: (f32, f32),
    ry: (f32, f32),
) -> Model {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let f = g.act("fixed", &[1, 4]);
    let y = g.act("concat", &[1, if with_x { 8 } else { 4 }]);
    g.op(fixed_op, &[x], &[f], None);
    let ins: Vec<i32> = if with_x { vec![f, x] } else { vec![f] };
    g.op(
        Op::Concatenation,
        &ins,
        &[y],
        Some(fb::BuiltinOptions::ConcatenationOptions(Box::new(
            fb::ConcatenationOptions {
                axis: 1,
                ..Default::default()
            },
        ))),
    );
    let m = g.finish(&[x], &[y]);
    let sample = vec![vec![Value::f32(vec![1, 4], vec![0.0, 0.1, 0.2, 0.3])]];
    let r = ranges(
        &m,
        &sample,
        &[
            ("x", rx.0, rx.1),
            ("fixed", rf.0, rf.1),
            ("concat", ry.0, ry.1),
        ],
    );
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    q
}

/// The QUANTIZE operators of a model.
fn quantizes(m: &Model) -> usize {
    ops(m).iter().filter(|o| o.0 == Op::Quantize).count()
}

/// A group takes a fixed output's parameters exactly when they hold the group's values
/// to within one step. Catches: the one-step tolerance dropped or misapplied at either
/// end (SOFTMAX's 1.0 on its [0, 255/256] must not cost a requantize; TANH's [-1, 1)
/// must not take a group reaching -4), a group that never takes fixed parameters (x
/// in [-0.5, 0.5] joins TANH's and needs no requantize).
#[test]
fn a_shared_group_takes_fixed_parameters_exactly_when_they_cover_it() {
    let softmax = QuantParams::per_tensor(1.0 / 256.0, -128);
    let tanh = fixed_params(Op::Tanh);
    // SOFTMAX reaching 1.0 (one logit dominating): within one step of 255/256.
    let q = concat_with_fixed(Op::Softmax, false, (-1.0, 1.0), (0.0, 1.0), (0.0, 1.0));
    assert_eq!(params(tensor(&q, "concat/quantized").1), &softmax);
    assert_eq!(quantizes(&q), 1, "only the input's QUANTIZE: {:?}", ops(&q));
    // TANH and x in [-0.5, 0.5]: TANH's parameters hold it; x takes them.
    let q = concat_with_fixed(Op::Tanh, true, (-0.5, 0.5), (-0.47, 0.47), (-0.5, 0.5));
    assert_eq!(params(tensor(&q, "concat/quantized").1), &tanh);
    assert_eq!(params(tensor(&q, "x/quantized").1), &tanh);
    assert_eq!(quantizes(&q), 1, "only the input's QUANTIZE: {:?}", ops(&q));
    // x in [-4, 0.5]: only the low end is beyond TANH's range; the group keeps x's.
    let q = concat_with_fixed(Op::Tanh, true, (-4.0, 0.5), (-0.999, 0.47), (-4.0, 0.5));
    let y = params(tensor(&q, "concat/quantized").1);
    let (lo, hi) = represented_range(y);
    let step = 4.5 / 255.0;
    assert!(
        lo <= -4.0 + step && hi >= 0.5 - step,
        "group on [{lo}, {hi}]"
    );
    assert_eq!(quantizes(&q), 2, "input + requantized TANH: {:?}", ops(&q));
    // Just beyond one step below TANH's -1: not covered either.
    let q = concat_with_fixed(Op::Tanh, true, (-1.02, 0.5), (-0.77, 0.47), (-1.02, 0.5));
    assert_ne!(params(tensor(&q, "concat/quantized").1), &tanh);
    assert_eq!(quantizes(&q), 2, "input + requantized TANH: {:?}", ops(&q));
}

/// GATHER(x, ARG_MAX(x)): the indices are computed (not a constant) and not real-valued,
/// so they are no activation of the GATHER: they keep int32 and join no group; x and the
/// output share one set of parameters. On LiteRT the int8 model picks the same element
/// as the float model, within one step. Catches: non-real inputs counted as activations
/// (`add_op`'s filter), which gave the indices int8 parameters.
#[test]
fn computed_indices_are_no_activation_of_a_shared_operator() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let mut axis = Tensor::new("axis", TensorType::Int32, vec![1]);
    axis.buffer = g.m.add_buffer(1i32.to_le_bytes().to_vec());
    let axis = g.sg.add_tensor(axis);
    let idx =
        g.sg.add_tensor(Tensor::new("idx", TensorType::Int32, vec![1]));
    let y = g.act("y", &[1, 1]);
    g.op(
        Op::ArgMax,
        &[x, axis],
        &[idx],
        Some(fb::BuiltinOptions::ArgMaxOptions(Box::new(
            fb::ArgMaxOptions {
                output_type: TensorType::Int32,
            },
        ))),
    );
    g.op(
        Op::Gather,
        &[x, idx],
        &[y],
        Some(fb::BuiltinOptions::GatherOptions(Box::new(
            fb::GatherOptions {
                axis: 1,
                ..Default::default()
            },
        ))),
    );
    let m = g.finish(&[x], &[y]);
    let xs = ramp(4 * 8, -2.0, 3.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    // --strict: GATHER only moves values between float tensors here, which would keep it
    // float (`fates::keep_float_moves`); this test is about its integer form.
    let mut o = options(Mode::Int8, &r);
    o.strict = true;
    let (q, report) = quantize(&m, &o);
    assert_all_quantized(&report);
    let (_, it) = tensor(&q, "idx");
    assert_eq!(it.dtype, TensorType::Int32);
    assert!(it.quantized().is_none(), "indices got parameters");
    let (_, xt) = tensor(&q, "x/quantized");
    let (_, yt) = tensor(&q, "y/quantized");
    assert_eq!(params(xt), params(yt));
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("int8", &got);
    let step = params(yt).scale[0] as f64;
    for (i, (u, v)) in f.iter().zip(&got).enumerate() {
        assert!(
            (u - v).abs() <= step,
            "element {i}: {u} vs {v} (step {step})"
        );
    }
}

/// LESS(LOGISTIC(x), TANH(x)): the comparison's inputs share parameters, but both carry
/// different fixed ones; each output keeps its own (LiteRT's LOGISTIC and TANH kernels
/// require them) and the second input is read through a requantizing QUANTIZE.
/// Structure only. Catches: the two fixed tensors united into one group (one of them on
/// the other's parameters), or a requantize edge between equal parameters.
#[test]
fn different_fixed_parameters_meeting_on_tied_inputs_are_requantized_not_united() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let a = g.act("sigmoid", &[1, 4]);
    let b = g.act("tanh", &[1, 4]);
    let lt =
        g.sg.add_tensor(Tensor::new("lt", TensorType::Bool, vec![1, 4]));
    g.op(Op::Logistic, &[x], &[a], None);
    g.op(Op::Tanh, &[x], &[b], None);
    g.op(Op::Less, &[a, b], &[lt], None);
    let m = g.finish(&[x], &[lt]);
    let xs = ramp(4 * 8, -3.0, 3.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    let (ai, at) = tensor(&q, "sigmoid");
    let (_, bt) = tensor(&q, "tanh");
    assert_eq!(params(at), &fixed_params(Op::Logistic));
    assert_eq!(params(bt), &fixed_params(Op::Tanh));
    let o = ops(&q);
    let less = o.iter().find(|o| o.0 == Op::Less).unwrap();
    assert_eq!(less.1[0], ai as i32);
    assert_eq!(quantizes(&q), 2, "input + one requantize: {o:?}");
    let req = less.1[1];
    assert_eq!(
        params(&q.subgraphs[0].tensors[req as usize]),
        &fixed_params(Op::Logistic)
    );
}

/// Constants read like activations by a shared-parameter operator widen the group's
/// range, so the group's parameters hold the constant's values: the constant is stored
/// on them within half a step, never clipped.
/// - CONCATENATION(x, c), with the ranges of x and of the output edited to [0, 1] (as
///   `quantize --ranges` allows) and c = [-0.5, 1.5, 2, 3]: the group must reach [-0.5, 3];
///   on LiteRT the output is the float model's within half a step (the input's and the
///   constant's rounding; CONCATENATION copies integers).
/// - LESS(x, c) (tied inputs: x and c share parameters), x calibrated on [0, 1]: the
///   group must reach c's [-0.5, 3]; on LiteRT the comparison equals the float one
///   (x = 1 < 2 is true, with c clipped to x's range it is 1 < 1, false).
///
/// Catches (each checked by hand): the `Output::Shared` arm of `widen_for_constants`
/// deleted (CONCATENATION's constant clipped to [0, 1]), its tied-inputs guard false
/// (LESS's constant clipped), the role filter inverted (activation constants skipped),
/// a tied constant quantized on its own range (`activation_like`'s tied-inputs guard).
#[test]
fn constants_read_by_a_shared_operator_widen_its_group() {
    let c_values = [-0.5f32, 1.5, 2.0, 3.0];
    // The group's parameters hold c within one step at either end (the zero point is
    // rounded), and c's bytes are its values on them.
    let assert_holds_c = |q: &Model, what: &str, c: &Tensor, group: &QuantParams| {
        assert_eq!(params(c), group, "{what}: c takes the group's parameters");
        let (lo, hi) = represented_range(group);
        let s = group.scale[0];
        assert!(
            lo <= -0.5 + s && hi >= 3.0 - s,
            "{what}: group on [{lo}, {hi}] does not hold c's [-0.5, 3]"
        );
        let want: Vec<u8> = c_values
            .iter()
            .map(|v| {
                ((v / s).round() + group.zero_point[0] as f32).clamp(-128.0, 127.0) as i8 as u8
            })
            .collect();
        assert_eq!(q.tensor_data(c), want.as_slice(), "{what}: c's bytes");
    };
    let xs = ramp(4 * 8, 0.0, 1.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let dir = tempfile::tempdir().unwrap();

    // CONCATENATION(x, c) with edited ranges.
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let c = g.constant("c", &[1, 4], &c_values);
    let y = g.act("concat", &[1, 8]);
    g.op(
        Op::Concatenation,
        &[x, c],
        &[y],
        Some(fb::BuiltinOptions::ConcatenationOptions(Box::new(
            fb::ConcatenationOptions {
                axis: 1,
                ..Default::default()
            },
        ))),
    );
    let m = g.finish(&[x], &[y]);
    let r = ranges(&m, &samples, &[("x", 0.0, 1.0), ("concat", 0.0, 1.0)]);
    // --strict: CONCATENATION only moves values between float tensors here, which would
    // keep it float (`fates::keep_float_moves`); this test is about its integer form.
    let mut o = options(Mode::Int8, &r);
    o.strict = true;
    let (q, report) = quantize(&m, &o);
    assert_all_quantized(&report);
    let group = params(tensor(&q, "concat/quantized").1).clone();
    assert_eq!(params(tensor(&q, "x/quantized").1), &group);
    assert_holds_c(
        &q,
        "CONCATENATION",
        operand(&q, Op::Concatenation, 1),
        &group,
    );
    let fp = write(dir.path(), "concat_f.tflite", &m);
    let qp = write(dir.path(), "concat_q.tflite", &q);
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("int8 CONCATENATION", &got);
    // Rounding x and c to the group's step: half a step (float32 slack 1e-6).
    let bound = group.scale[0] as f64 / 2.0 + 1e-6;
    for (i, (u, v)) in f.iter().zip(&got).enumerate() {
        assert!(
            (u - v).abs() <= bound,
            "CONCATENATION element {i}: {u} vs {v} (bound {bound})"
        );
    }

    // LESS(x, c): the comparison's inputs are tied.
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let c = g.constant("c", &[1, 4], &c_values);
    let lt =
        g.sg.add_tensor(Tensor::new("lt", TensorType::Bool, vec![1, 4]));
    g.op(Op::Less, &[x, c], &[lt], None);
    let m = g.finish(&[x], &[lt]);
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    let group = params(tensor(&q, "x/quantized").1).clone();
    assert_eq!(params(operand(&q, Op::Less, 0)), &group);
    assert_holds_c(&q, "LESS", operand(&q, Op::Less, 1), &group);
    let fp = write(dir.path(), "less_f.tflite", &m);
    let qp = write(dir.path(), "less_q.tflite", &q);
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    // x and c are at least 0.5 apart: no rounding can flip a comparison.
    assert_eq!(got, f, "LESS on LiteRT: int8 vs float");

    // LESS(c, x): the constant first; the anchor of the tied inputs is still x (the
    // first input that is computed), whose group reaches c's range.
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let c = g.constant("c", &[1, 4], &c_values);
    let lt =
        g.sg.add_tensor(Tensor::new("lt", TensorType::Bool, vec![1, 4]));
    g.op(Op::Less, &[c, x], &[lt], None);
    let m = g.finish(&[x], &[lt]);
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    let group = params(tensor(&q, "x/quantized").1).clone();
    assert_eq!(params(operand(&q, Op::Less, 1)), &group);
    assert_holds_c(&q, "LESS(c, x)", operand(&q, Op::Less, 0), &group);
    let fp = write(dir.path(), "less_cx_f.tflite", &m);
    let qp = write(dir.path(), "less_cx_q.tflite", &q);
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_eq!(got, f, "LESS(c, x) on LiteRT: int8 vs float");

    // LESS(x, c) with c inside x's [0, 1]: c still takes x's parameters (tied inputs),
    // not those of its own range ([0.3, 0.9] widened to 0: scale 0.9/255).
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let c = g.constant("c", &[1, 4], &[0.3, 0.5, 0.7, 0.9]);
    let lt =
        g.sg.add_tensor(Tensor::new("lt", TensorType::Bool, vec![1, 4]));
    g.op(Op::Less, &[x, c], &[lt], None);
    let m = g.finish(&[x], &[lt]);
    let r = ranges(&m, &samples, &[]);
    let (q, _) = quantize(&m, &options(Mode::Int8, &r));
    let group = params(tensor(&q, "x/quantized").1);
    assert_eq!(group, &QuantParams::per_tensor(1.0 / 255.0, -128));
    assert_eq!(
        params(operand(&q, Op::Less, 1)),
        group,
        "LESS: a constant inside x's range"
    );
}

/// The FULLY_CONNECTED model of the interface and bias tests: x [1,4] → y [1,3].
/// Channel 1 has tiny weights and a large bias (it overflows int32 at s_in·s_w).
fn fc_model(bias1: f32) -> Model {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    #[rustfmt::skip]
    let w = g.constant("w", &[3, 4], &[
        0.5, -0.25, 0.75, -1.0,
        1e-5, -2e-5, 0.5e-5, 1e-5,
        -0.3, 0.6, 0.2, -0.1,
    ]);
    let b = g.constant("b", &[3], &[0.1, bias1, -0.2]);
    let y = g.act("y", &[1, 3]);
    g.op(Op::FullyConnected, &[x, w, b], &[y], fc_options());
    g.finish(&[x], &[y])
}

/// Samples of x over [-1, 3] (ends included), as (interpreter values, LiteRT array).
fn fc_samples() -> (Vec<Vec<Value>>, Vec<Array>) {
    let xs = ramp(4 * 16, -1.0, 3.0);
    let values = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    (values, vec![Array::f32(vec![16, 1, 4], xs)])
}

/// uint8 interface: the boundary tensors are the int8 ones shifted by +128 (same
/// scale), converted by QUANTIZE ops. The input range [-1, 3] puts the int8 zero point
/// at -64, so the shift is visible everywhere: LiteRT gets the int8 model's input bytes
/// plus 128 and must give its output bytes plus 128. Catches: a shift of 127 or 129, a
/// changed scale, a missing or misplaced QUANTIZE, an interface tensor left int8.
#[test]
fn uint8_interface_is_the_int8_interface_shifted_by_128() {
    use tflquant::quant::integer::Interface;
    let m = fc_model(0.5);
    let (samples, input) = fc_samples();
    let r = ranges(&m, &samples, &[("x", -1.0, 3.0)]);
    let mut o8 = options(Mode::Int8, &r);
    o8.interface = Interface::Integer;
    let mut ou = o8.clone();
    ou.interface = Interface::Uint8;
    let (q8, _) = quantize(&m, &o8);
    let (qu, report) = quantize(&m, &ou);
    assert_all_quantized(&report);

    for name in ["x", "y"] {
        let (i8_idx, t8) = tensor(&q8, name);
        let (u_idx, tu) = tensor(&qu, name);
        assert_eq!(t8.dtype, TensorType::Int8, "{name}");
        assert_eq!(tu.dtype, TensorType::Uint8, "{name}");
        let (p8, pu) = (params(t8), params(tu));
        assert_eq!(pu.scale, p8.scale, "{name}");
        assert_eq!(pu.zero_point[0], p8.zero_point[0] + 128, "{name}");
        // The interface keeps its tensor indices (signatures stay right).
        assert_eq!(i8_idx, u_idx, "{name}");
    }
    assert_eq!(params(tensor(&q8, "x").1).zero_point[0], -64);
    // uint8 x → QUANTIZE → int8 twin → FC → int8 twin → QUANTIZE → uint8 y.
    let (xi, yi) = (tensor(&qu, "x").0 as i32, tensor(&qu, "y").0 as i32);
    let o = ops(&qu);
    let kinds: Vec<Op> = o.iter().map(|o| o.0).collect();
    assert_eq!(kinds, [Op::Quantize, Op::FullyConnected, Op::Quantize]);
    assert_eq!(o[0].1, [xi]);
    assert_eq!(o[1].1[0], o[0].2[0]);
    assert_eq!(o[2].1, o[1].2);
    assert_eq!(o[2].2, [yi]);
    for t in [o[0].2[0], o[1].2[0]] {
        let t = &qu.subgraphs[0].tensors[t as usize];
        assert_eq!(t.dtype, TensorType::Int8, "{}", t.name);
    }

    let dir = tempfile::tempdir().unwrap();
    let p8 = write(dir.path(), "int8.tflite", &q8);
    let pu = write(dir.path(), "uint8.tflite", &qu);
    let in8 = quantize_for_integer_inputs(&q8, input.clone());
    let inu = quantize_for_integer_inputs(&qu, input.clone());
    let (b8, bu) = (in8[0].data.to_f64(), inu[0].data.to_f64());
    assert!(
        b8.iter().zip(&bu).all(|(a, b)| b - a == 128.0),
        "{b8:?} vs {bu:?}"
    );
    let out8 = litert_run(&p8, &in8).unwrap();
    let outu = litert_run(&pu, &inu).unwrap();
    let (y8, yu) = (out8[0].data.to_f64(), outu[0].data.to_f64());
    assert_finite("int8", &y8);
    for (i, (a, b)) in y8.iter().zip(&yu).enumerate() {
        assert_eq!(b - a, 128.0, "output element {i}: int8 {a}, uint8 {b}");
    }
    // And both compute the float model within the steps (see the bias test's bound).
    let fp = write(dir.path(), "f.tflite", &m);
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let ru = &real(&qu, &outu)[0];
    let s_y = params(tensor(&qu, "y").1).scale[0] as f64;
    for (a, b) in f.iter().zip(ru) {
        assert!((a - b).abs() <= 3.0 * s_y, "{a} vs {b} (step {s_y})");
    }
}

/// A bias that overflows int32 at s_in·s_w (channel 1: weights ~1e-5, bias 50) widens
/// that channel's weight scale, and only that one, to |b| / (s_in · 0.99 · (2³¹−1));
/// the bias is then quantized at exactly s_in·s_w and fits. In 16x8 the int64 bias
/// needs no widening, but `--bias int32` does. Catches: no widening (the bias saturates:
/// LiteRT's channel 1 is far off), widening other channels, a bias scale that is not
/// s_in·s_w (×1.01), bias width chosen wrong.
#[test]
fn a_bias_that_overflows_int32_widens_its_channel_weight_scale() {
    let m = fc_model(50.0);
    let (samples, input) = fc_samples();
    let r = ranges(&m, &samples, &[("x", -1.0, 3.0)]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);

    let s_in = params(tensor(&q, "x/quantized").1).scale[0];
    let w = params(operand(&q, Op::FullyConnected, 1));
    let b_t = operand(&q, Op::FullyConnected, 2);
    assert_eq!(b_t.dtype, TensorType::Int32);
    let b = params(b_t);
    let max_abs = [1.0f32, 2e-5, 0.6];
    let limit = i32::MAX as f64 * 0.99;
    let widened = (50.0f64 / (s_in as f64 * limit)) as f32;
    assert!(widened > max_abs[1] / 127.0, "the test needs an overflow");
    assert_eq!(w.scale, [max_abs[0] / 127.0, widened, max_abs[2] / 127.0]);
    assert_eq!(w.quantized_dimension, 0);
    for c in 0..3 {
        assert_eq!(b.scale[c], s_in * w.scale[c], "bias scale of channel {c}");
        assert_eq!(b.zero_point[c], 0);
    }
    let bq: Vec<i32> = q
        .tensor_data(b_t)
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want1 = (50.0f64 / b.scale[1] as f64).round();
    assert_eq!(bq[1] as f64, want1);
    assert!(want1 > 0.98 * i32::MAX as f64 && want1 < i32::MAX as f64);
    assert_eq!(bq[0] as f64, (0.1f64 / b.scale[0] as f64).round());
    let notes = report.notes.join("\n");
    assert!(
        notes.contains("widened 1 weight scale(s) so that bias \"b\" fits 32 bits"),
        "{notes}"
    );

    // On LiteRT: |y − y_float| ≤ Σ_j|W_cj|·s_in/2 + Σ_j|x_j|·s_w,c/2 + s_out (input and
    // weight rounding, then output rounding and the kernel's fixed-point multiplier).
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("int8", &got);
    let s_out = params(tensor(&q, "y/quantized").1).scale[0] as f64;
    let wsum = [2.5, 5.5e-5, 1.2];
    let xs = input[0].data.to_f64();
    for (k, (a, b)) in f.iter().zip(&got).enumerate() {
        let (sample, c) = (k / 3, k % 3);
        let xsum: f64 = xs[sample * 4..sample * 4 + 4].iter().map(|v| v.abs()).sum();
        let bound = wsum[c] * s_in as f64 / 2.0 + xsum * w.scale[c] as f64 / 2.0 + s_out;
        assert!(
            (a - b).abs() <= bound,
            "sample {sample} channel {c}: {a} vs {b} (bound {bound})"
        );
    }

    // 16x8: int64 bias, no widening; with 32-bit biases the same widening.
    let (q16, rep16) = quantize(&m, &options(Mode::Int16x8, &r));
    assert_eq!(
        operand(&q16, Op::FullyConnected, 2).dtype,
        TensorType::Int64
    );
    let w16 = params(operand(&q16, Op::FullyConnected, 1));
    assert_eq!(w16.scale[1], max_abs[1] / 127.0);
    assert!(
        !rep16.notes.iter().any(|n| n.contains("widened")),
        "{:?}",
        rep16.notes
    );
    let mut o32 = options(Mode::Int16x8, &r);
    o32.bias_bits = Some(32);
    let (q32, rep32) = quantize(&m, &o32);
    assert_eq!(
        operand(&q32, Op::FullyConnected, 2).dtype,
        TensorType::Int32
    );
    let s16 = params(tensor(&q32, "x/quantized").1).scale[0];
    let widened16 = (50.0f64 / (s16 as f64 * limit)) as f32;
    let w32 = params(operand(&q32, Op::FullyConnected, 1));
    assert_eq!(w32.scale[1], widened16);
    assert!(
        rep32.notes.iter().any(|n| n.contains("fits 32 bits")),
        "{:?}",
        rep32.notes
    );
    let p32 = write(dir.path(), "q32.tflite", &q32);
    let got32 = litert_run(&p32, &input).unwrap()[0].data.to_f64();
    let s_out16 = params(tensor(&q32, "y/quantized").1).scale[0] as f64;
    for (k, (a, b)) in f.iter().zip(&got32).enumerate() {
        let (sample, c) = (k / 3, k % 3);
        let xsum: f64 = xs[sample * 4..sample * 4 + 4].iter().map(|v| v.abs()).sum();
        let bound = wsum[c] * s16 as f64 / 2.0 + xsum * w32.scale[c] as f64 / 2.0 + s_out16;
        assert!(
            (a - b).abs() <= bound,
            "16x8 sample {sample} channel {c}: {a} vs {b}"
        );
    }
}

/// A constant read by MAXIMUM (shared scale: it takes the output group's parameters)
/// and by ADD (its own range [0, 3]: scale 3/255, zero point -128) becomes two int8
/// constants with exactly those parameters. Catches: one copy reused for both (one op
/// reads it on the wrong scale), the ADD copy taking the group's parameters.
#[test]
fn a_constant_shared_by_ops_needing_different_parameters_gets_one_copy_each() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let c = g.constant("c", &[4], &[0.0, 1.0, 2.0, 3.0]);
    let y1 = g.act("max", &[1, 4]);
    let y2 = g.act("add", &[1, 4]);
    g.op(Op::Maximum, &[x, c], &[y1], None);
    g.op(
        Op::Add,
        &[x, c],
        &[y2],
        Some(fb::BuiltinOptions::AddOptions(Box::default())),
    );
    let m = g.finish(&[x], &[y1, y2]);
    let xs = ramp(4 * 8, -6.0, 5.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    // --strict: MAXIMUM only moves values between float tensors here, which would keep it
    // float (`fates::keep_float_moves`); this test is about its integer form.
    let mut opts = options(Mode::Int8, &r);
    opts.strict = true;
    let (q, report) = quantize(&m, &opts);
    assert_all_quantized(&report);
    let o = ops(&q);
    let max = o.iter().find(|o| o.0 == Op::Maximum).unwrap();
    let add = o.iter().find(|o| o.0 == Op::Add).unwrap();
    let sg = &q.subgraphs[0];
    let (cm, ca) = (
        &sg.tensors[max.1[1] as usize],
        &sg.tensors[add.1[1] as usize],
    );
    assert_ne!(max.1[1], add.1[1]);
    assert_eq!((cm.name.as_str(), ca.name.as_str()), ("c", "c"));
    let group = params(&sg.tensors[max.2[0] as usize]);
    assert_eq!(
        params(cm),
        group,
        "MAXIMUM's constant takes the group's parameters"
    );
    assert_eq!(params(&sg.tensors[max.1[0] as usize]), group);
    assert_eq!(params(ca), &QuantParams::per_tensor(3.0 / 255.0, -128));
    // The bytes are the values on those parameters.
    let expect = |p: &QuantParams| -> Vec<u8> {
        [0.0f32, 1.0, 2.0, 3.0]
            .iter()
            .map(|v| {
                ((v / p.scale[0]).round() + p.zero_point[0] as f32).clamp(-128.0, 127.0) as i8 as u8
            })
            .collect()
    };
    assert_eq!(q.tensor_data(cm), expect(params(cm)).as_slice());
    assert_eq!(q.tensor_data(ca), expect(params(ca)).as_slice());

    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let f = litert_run(&fp, &input).unwrap();
    let got = litert_run(&qp, &input).unwrap();
    for (k, (a, b)) in f.iter().zip(&got).enumerate() {
        let (a, b) = (a.data.to_f64(), b.data.to_f64());
        assert_finite("int8", &b);
        // Output k: input rounding (half a step of x) + the constant's (half its step)
        // + the output's (one step, with the kernel's rescaling).
        let s_out = params(&sg.tensors[max.2[0] as usize]).scale[0] as f64;
        let s_add = params(tensor(&q, "add/quantized").1).scale[0] as f64;
        let s_x = params(tensor(&q, "x/quantized").1).scale[0] as f64;
        let bound = if k == 0 {
            s_out / 2.0 + s_out / 2.0 + s_out
        } else {
            s_x / 2.0 + 3.0 / 255.0 / 2.0 + s_add
        };
        for (i, (u, v)) in a.iter().zip(&b).enumerate() {
            assert!(
                (u - v).abs() <= bound,
                "output {k}[{i}]: {u} vs {v} (bound {bound})"
            );
        }
    }
}

/// Runs signature `serving_default` of `model` on LiteRT with named float inputs
/// (quantized with the signature input's own parameters when it is integer) and returns
/// the named outputs as real values (dequantized likewise).
fn run_signature(
    model: &std::path::Path,
    inputs: &[(&str, Vec<f32>, Vec<usize>)],
) -> std::collections::BTreeMap<String, Vec<f64>> {
    const SCRIPT: &str = r#"
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
r = it.get_signature_runner("serving_default")
feeds = {}
details = r.get_input_details()
for name, spec in json.loads(sys.argv[2]).items():
    d = details[name]
    x = np.array(spec["values"], dtype=np.float32).reshape(spec["shape"])
    if d["dtype"] != np.float32:
        s, z = d["quantization"]
        info = np.iinfo(d["dtype"])
        x = np.clip(np.round(x / s) + z, info.min, info.max).astype(d["dtype"])
    feeds[name] = x
out = r(**feeds)
res = {}
for name, d in r.get_output_details().items():
    v = out[name].astype(np.float64)
    if d["dtype"] != np.float32:
        s, z = d["quantization"]
        v = (v - z) * s
    res[name] = v.ravel().tolist()
print(json.dumps(res))
"#;
    let spec: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(n, v, s)| {
            (
                (*n).to_string(),
                serde_json::json!({"values": v, "shape": s}),
            )
        })
        .collect();
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(model)
        .arg(serde_json::Value::Object(spec).to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A signature listing the subgraph's inputs in the other order (`first` → a, `second`
/// → b, subgraph inputs [b, a]) still names the right tensors after quantization, with
/// every interface: LiteRT's signature runner computes `a − b`, not `b − a`, and with
/// an integer interface each signature input carries its own tensor's parameters.
/// Catches: signature indices remapped by position, or interface tensors moved.
#[test]
fn signature_indices_follow_their_tensors_through_quantization() {
    use tflquant::quant::integer::Interface;
    let mut g = Graph::new();
    let a = g.act("a", &[1, 4]);
    let b = g.act("b", &[1, 4]);
    let d = g.act("d", &[1, 4]);
    g.op(
        Op::Sub,
        &[a, b],
        &[d],
        Some(fb::BuiltinOptions::SubOptions(Box::default())),
    );
    let mut m = g.finish(&[b, a], &[d]);
    m.signature_defs.push(SignatureDef {
        signature_key: Some("serving_default".into()),
        subgraph_index: 0,
        inputs: vec![
            TensorMap {
                name: Some("first".into()),
                tensor_index: a as u32,
            },
            TensorMap {
                name: Some("second".into()),
                tensor_index: b as u32,
            },
        ],
        outputs: vec![TensorMap {
            name: Some("diff".into()),
            tensor_index: d as u32,
        }],
    });
    let av = ramp(4 * 6, 0.0, 1.0);
    let bv = ramp(4 * 6, -4.0, 4.0);
    let samples: Vec<Vec<Value>> = (0..6)
        .map(|i| {
            vec![
                Value::f32(vec![1, 4], bv[i * 4..i * 4 + 4].to_vec()),
                Value::f32(vec![1, 4], av[i * 4..i * 4 + 4].to_vec()),
            ]
        })
        .collect();
    let r = ranges(&m, &samples, &[]);
    let dir = tempfile::tempdir().unwrap();
    for (k, interface) in [Interface::Float, Interface::Integer, Interface::Uint8]
        .into_iter()
        .enumerate()
    {
        let mut o = options(Mode::Int8, &r);
        o.interface = interface;
        let (q, report) = quantize(&m, &o);
        assert_all_quantized(&report);
        let sig = &q.signature_defs[0];
        let sg = &q.subgraphs[0];
        let names = |l: &[TensorMap]| -> Vec<(String, String)> {
            l.iter()
                .map(|t| {
                    let name = t.name.clone().unwrap();
                    (name, sg.tensors[t.tensor_index as usize].name.clone())
                })
                .collect()
        };
        let want = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(names(&sig.inputs), want(&[("first", "a"), ("second", "b")]));
        assert_eq!(names(&sig.outputs), want(&[("diff", "d")]));
        assert_eq!(sg.inputs, [b, a], "{interface:?}");
        if interface != Interface::Float {
            let pa = params(&sg.tensors[a as usize]);
            let pb = params(&sg.tensors[b as usize]);
            // a in [0, 1], b in [-4, 4]: scales 1/255 and 8/255.
            assert_eq!(pa.scale, [1.0 / 255.0], "{interface:?}");
            assert_eq!(pb.scale, [8.0 / 255.0], "{interface:?}");
        }
        let p = write(dir.path(), &format!("sig{k}.tflite"), &q);
        let (xa, xb) = (vec![0.25f32, 0.5, 0.75, 1.0], vec![-3.5f32, -1.0, 2.0, 3.5]);
        let out = run_signature(
            &p,
            &[
                ("second", xb.clone(), vec![1, 4]),
                ("first", xa.clone(), vec![1, 4]),
            ],
        );
        let got = &out["diff"];
        assert_finite("diff", got);
        // Input rounding (half a step each) and one output step.
        // Calibrated d = a − b lies in [-3, 4]: step 7/255; inputs a half step each.
        let bound = 0.5 / 255.0 + 4.0 / 255.0 + 7.0 / 255.0;
        for i in 0..4 {
            let want = (xa[i] - xb[i]) as f64;
            assert!(
                (got[i] - want).abs() <= bound,
                "{interface:?} element {i}: {} vs {want}",
                got[i]
            );
        }
    }
}

/// DEPTHWISE_CONV_2D weights [1, 3, 3, 2] are quantized per channel along axis 3 (the
/// output channels), one scale per channel from that channel's largest magnitude, and
/// the bias at s_in·s_w per channel. Channel 1's weights are 100× smaller than channel
/// 0's: on a per-tensor scale they would round to a few levels. Catches: an axis off by
/// one (2: three scales; the table's axis is what is tested), per-tensor weights, a
/// bias scale not following its channel.
#[test]
fn depthwise_weights_are_per_channel_along_axis_3() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 5, 5, 2]);
    // [1, 3, 3, 2]: kh, kw, channel innermost.
    let wv: Vec<f32> = (0..9)
        .flat_map(|k| {
            let v = (k as f32 - 4.0) / 4.0;
            [v, v * 0.01 + 0.002]
        })
        .collect();
    let w = g.constant("w", &[1, 3, 3, 2], &wv);
    let bias = g.constant("bias", &[2], &[0.25, -0.01]);
    let y = g.act("y", &[1, 3, 3, 2]);
    g.op(
        Op::DepthwiseConv2d,
        &[x, w, bias],
        &[y],
        Some(fb::BuiltinOptions::DepthwiseConv2DOptions(Box::new(
            fb::DepthwiseConv2DOptions {
                padding: fb::Padding::Valid,
                stride_w: 1,
                stride_h: 1,
                depth_multiplier: 1,
                dilation_w_factor: 1,
                dilation_h_factor: 1,
                ..Default::default()
            },
        ))),
    );
    let m = g.finish(&[x], &[y]);
    let n = 4;
    let xs = ramp(n * 50, -1.0, 1.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(50)
        .map(|c| vec![Value::f32(vec![1, 5, 5, 2], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    let wq = params(operand(&q, Op::DepthwiseConv2d, 1));
    let max0 = wv.iter().step_by(2).fold(0f32, |a, v| a.max(v.abs()));
    let max1 = wv
        .iter()
        .skip(1)
        .step_by(2)
        .fold(0f32, |a, v| a.max(v.abs()));
    assert_eq!(wq.quantized_dimension, 3);
    assert_eq!(wq.scale, [max0 / 127.0, max1 / 127.0]);
    assert_eq!(wq.zero_point, [0, 0]);
    let bq = params(operand(&q, Op::DepthwiseConv2d, 2));
    let s_in = params(tensor(&q, "x/quantized").1).scale[0];
    assert_eq!(bq.scale, [s_in * wq.scale[0], s_in * wq.scale[1]]);
    let wt = operand(&q, Op::DepthwiseConv2d, 1);
    let wbytes: Vec<i8> = q.tensor_data(wt).iter().map(|&b| b as i8).collect();
    for (i, (&v, &qv)) in wv.iter().zip(&wbytes).enumerate() {
        let s = wq.scale[i % 2];
        assert_eq!(qv as f32, (v / s).round(), "weight element {i}");
    }

    // LiteRT: |y − y_float| ≤ Σ|w_c|·s_in/2 + Σ|x|·s_w,c/2 + s_out per channel.
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![n, 1, 5, 5, 2], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("int8", &got);
    let s_out = params(tensor(&q, "y/quantized").1).scale[0] as f64;
    let wsum = [
        wv.iter().step_by(2).map(|v| v.abs() as f64).sum::<f64>(),
        wv.iter()
            .skip(1)
            .step_by(2)
            .map(|v| v.abs() as f64)
            .sum::<f64>(),
    ];
    for (k, (a, b)) in f.iter().zip(&got).enumerate() {
        let c = k % 2;
        // |x| ≤ 1 over the 9 taps.
        let bound = wsum[c] * s_in as f64 / 2.0 + 9.0 * wq.scale[c] as f64 / 2.0 + s_out;
        assert!(
            (a - b).abs() <= bound,
            "element {k} (channel {c}): {a} vs {b}"
        );
    }
}

/// The rule table's facts that the kernels fix (TFLite `operator_property.cc` and the
/// kernels' `Prepare`): per-channel weight axes, fixed output parameters per width,
/// which ops lack an int16 kernel, the role of variadic inputs. Catches: a typo in a
/// constant of the table (an axis, 1/256, 1/32768), `supports` or `role` answering
/// wrong, a lookup returning another op's rule.
#[test]
fn rule_table_facts_from_the_kernels() {
    use tflquant::rules::{Output, Role, rule_for};
    let r = |op: Op| rule_for(op).unwrap_or_else(|| panic!("no rule for {op:?}"));
    for (op, axis) in [
        (Op::FullyConnected, 0),
        (Op::Conv2d, 0),
        (Op::DepthwiseConv2d, 3),
    ] {
        let rule = r(op);
        assert_eq!(rule.op, op);
        assert_eq!(rule.role(0), Role::Activation, "{op:?}");
        assert_eq!(rule.role(1), Role::Weight { axis: Some(axis) }, "{op:?}");
        assert_eq!(
            rule.role(2),
            Role::Bias {
                input: 0,
                weight: 1
            },
            "{op:?}"
        );
        assert_eq!(rule.output, Output::Free, "{op:?}");
        assert!(rule.supports(8) && rule.supports(16), "{op:?}");
        assert!(!rule.supports(4) && !rule.supports(32), "{op:?}");
    }
    let unit16 = Some((1.0 / 32768.0, 0));
    for (op, int8, int16) in [
        (Op::Logistic, (1.0 / 256.0, -128), unit16),
        (Op::Softmax, (1.0 / 256.0, -128), unit16),
        (Op::Tanh, (1.0 / 128.0, 0), unit16),
        (Op::L2Normalization, (1.0 / 128.0, 0), None),
        (Op::LogSoftmax, (16.0 / 256.0, 127), None),
    ] {
        assert_eq!(r(op).output, Output::Fixed { int8, int16 }, "{op:?}");
    }
    // No int16 kernel: the op stays float in 16x8 (the fate test below).
    for op in [Op::HardSwish, Op::Elu, Op::LogSoftmax, Op::L2Normalization] {
        assert!(r(op).supports(8) && !r(op).supports(16), "{op:?}");
    }
    // Variadic inputs take `rest`: every CONCATENATION input is an activation.
    let concat = r(Op::Concatenation);
    assert_eq!(concat.output, Output::Shared);
    assert_eq!(concat.role(7), Role::Activation);
    assert_eq!(r(Op::Reshape).role(1), Role::NonReal);
    assert_eq!(r(Op::ArgMax).output, Output::NonReal);
    assert!(rule_for(Op::Custom).is_none());
}

/// 16x8: an op without an int16 kernel (HARD_SWISH) stays float between DEQUANTIZE and
/// QUANTIZE, with the reason; the FULLY_CONNECTED before it is int16. Catches: the
/// width check of the fates answering "supported" for every width.
#[test]
fn an_op_without_an_int16_kernel_stays_float_in_16x8() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let w = g.constant("w", &[4, 4], &ramp(16, -1.0, 1.0));
    let h = g.act("h", &[1, 4]);
    let y = g.act("y", &[1, 4]);
    g.op(Op::FullyConnected, &[x, w, -1], &[h], fc_options());
    g.op(Op::HardSwish, &[h], &[y], None);
    let m = g.finish(&[x], &[y]);
    let xs = ramp(4 * 8, -3.0, 3.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int16x8, &r));
    let rep = serde_json::to_value(&report).unwrap();
    let fates = rep["ops"].as_array().unwrap();
    assert_eq!(fates[0]["fate"], "quantized", "{fates:?}");
    assert_eq!(fates[1]["fate"], "float", "{fates:?}");
    let why = fates[1]["reason"].as_str().unwrap();
    assert!(why.contains("no int16 kernel for HARD_SWISH"), "{why}");
    let o = ops(&q);
    let kinds: Vec<Op> = o.iter().map(|o| o.0).collect();
    assert_eq!(
        kinds,
        [
            Op::Quantize,
            Op::FullyConnected,
            Op::Dequantize,
            Op::HardSwish
        ]
    );
    assert_eq!(params(tensor(&q, "h").1).scale.len(), 1);
    assert_eq!(tensor(&q, "h").1.dtype, TensorType::Int16);
    // And it runs: within a few int16 steps plus the int8 weights' rounding.
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("16x8", &got);
    // |hard_swish'| ≤ 1.5; h's error: Σ|x|·s_w/2 (s_w = 1/127) + int16 steps (tiny).
    let bound = 1.5 * (4.0 * 3.0 / 127.0 / 2.0 + 1e-3);
    for (i, (a, b)) in f.iter().zip(&got).enumerate() {
        assert!(
            (a - b).abs() <= bound,
            "element {i}: {a} vs {b} (bound {bound})"
        );
    }
}

/// An activation whose calibrated range is all zeros gets the parameters of [-1, 1]
/// (scale 2/255, zero point round(-128 + 127.5) = -1), so the kernels' rescaling
/// multipliers stay ordinary; a range [0, 6] gets (6/255, -128) and [-2, 6] gets
/// (8/255, -64); 16x8 is symmetric (max |x| / 32767, zero point 0). Catches: the
/// all-zero fallback on another range, the zero point formula.
#[test]
fn activation_parameters_of_degenerate_and_one_sided_ranges() {
    let m = fc_model(0.5);
    let (samples, _) = fc_samples();
    for (lo, hi, want8, want16) in [
        (0.0, 0.0, (2.0f64 / 255.0, -1), 1.0f32 / 32767.0),
        (0.0, 6.0, (6.0 / 255.0, -128), 6.0f32 / 32767.0),
        (-2.0, 6.0, (8.0 / 255.0, -64), 6.0f32 / 32767.0),
    ] {
        let r = ranges(&m, &samples, &[("x", lo, hi)]);
        let (q, _) = quantize(&m, &options(Mode::Int8, &r));
        let p = params(tensor(&q, "x/quantized").1);
        assert_eq!(
            (p.scale[0], p.zero_point[0]),
            (want8.0 as f32, want8.1),
            "[{lo}, {hi}]"
        );
        let (q, _) = quantize(&m, &options(Mode::Int16x8, &r));
        let p = params(tensor(&q, "x/quantized").1);
        assert_eq!(
            (p.scale[0], p.zero_point[0]),
            (want16, 0),
            "16x8 [{lo}, {hi}]"
        );
    }
}

/// The fates (`"quantized"` / `"float"`) and reasons of a report, in operator order.
fn fates(report: &Report) -> Vec<(String, String)> {
    let r = serde_json::to_value(report).unwrap();
    r["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["fate"].as_str().unwrap_or_default().to_string(),
                o["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// DIV(x, RESHAPE(ADD(a, b))), b constant: a divisor whose calibrated range comes within 4 steps of
/// 0 keeps the DIV float, and its producers too, through the same-scale RESHAPE up to
/// the ADD that computes it (each with the reason); a divisor clear of 0 leaves all
/// three quantized, in int8 and 16x8; x's producer is never touched. Structure only (fates are decisions).
/// Catches: `reaches_zero` answering a constant range (every DIV float, or none), the
/// 4-step margin on the wrong side, the producer walk stopping at RESHAPE or
/// passing the ADD.
#[test]
fn singular_operands_reaching_zero_keep_their_operator_and_producers_float() {
    let mut g = Graph::new();
    // x = ADD(x0, c) stays quantized in every case (a model with no quantized
    // operator reading a float constant is refused).
    let x0 = g.act("x0", &[1, 4]);
    let c = g.constant("c", &[1, 4], &[0.5, -0.5, 0.25, -0.25]);
    let x = g.act("x", &[1, 4]);
    g.op(
        Op::Add,
        &[x0, c],
        &[x],
        Some(fb::BuiltinOptions::AddOptions(Box::default())),
    );
    let a = g.act("a", &[1, 4]);
    let b = g.constant("b", &[1, 4], &[0.25, 0.5, 0.75, 1.0]);
    let s = g.act("sum", &[1, 4]);
    let d = g.act("d", &[1, 4]);
    let y = g.act("y", &[1, 4]);
    let shape = {
        let mut t = Tensor::new("shape", TensorType::Int32, vec![2]);
        t.buffer = g.m.add_buffer(
            [1i32, 4]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        g.sg.add_tensor(t)
    };
    g.op(
        Op::Add,
        &[a, b],
        &[s],
        Some(fb::BuiltinOptions::AddOptions(Box::default())),
    );
    g.op(Op::Reshape, &[s, shape], &[d], None);
    g.op(
        Op::Div,
        &[x, d],
        &[y],
        Some(fb::BuiltinOptions::DivOptions(Box::default())),
    );
    let m = g.finish(&[x0, a], &[y]);
    let v = |lo, hi| Value::f32(vec![1, 4], ramp(4, lo, hi));
    let samples = vec![vec![v(-1.0, 1.0), v(0.25, 1.0)]];
    for mode in [Mode::Int8, Mode::Int16x8] {
        // d (and sum, same scale) on [lo, 2]: int8 step 2/255 (4 steps = 0.031), 16x8
        // step 2/32767 (4 steps = 2.4e-4).
        let (near, clear) = if mode == Mode::Int8 {
            (0.03, 0.032)
        } else {
            (2.4e-4, 2.5e-4)
        };
        for (lo, singular) in [(0.5, false), (clear, false), (near, true), (0.0, true)] {
            let r = ranges(&m, &samples, &[("sum", lo, 2.0), ("d", lo, 2.0)]);
            let (_, report) = quantize(&m, &options(mode, &r));
            let f = fates(&report);
            let what = format!("{mode:?}, divisor on [{lo}, 2]: {f:?}");
            if !singular {
                assert!(f.iter().all(|f| f.0 == "quantized"), "{what}");
                continue;
            }
            assert_eq!(f[0].0, "quantized", "{what}");
            assert!(f[1..].iter().all(|f| f.0 == "float"), "{what}");
            assert!(f[3].1.contains("input 1 \"d\" of DIV reaches 0"), "{what}");
            for p in [1, 2] {
                assert!(
                    f[p].1.starts_with("produces the operand of operator 3"),
                    "{what}"
                );
            }
        }
    }
}

/// PRELU(ADD(x, c), alpha) with alpha computed at run time: quantized in int8 (a
/// calibrated activation), float in 16x8 with the reason (LiteRT's 16x8 PRELU reads
/// alpha as int8); with a constant alpha both widths are quantized. (The ADD brings the
/// float constant tflquant needs to quantize a model at all.) Structure only.
/// Catches: the computed-coefficient check dropped or applied in int8 too.
#[test]
fn a_computed_prelu_coefficient_keeps_prelu_float_in_16x8_only() {
    for constant in [false, true] {
        let mut g = Graph::new();
        let x0 = g.act("x0", &[1, 4]);
        let c = g.constant("c", &[1, 4], &[0.5, -0.5, 0.25, -0.25]);
        let x = g.act("x", &[1, 4]);
        g.op(
            Op::Add,
            &[x0, c],
            &[x],
            Some(fb::BuiltinOptions::AddOptions(Box::default())),
        );
        let alpha = if constant {
            g.constant("alpha", &[1, 4], &[0.1, 0.2, 0.3, 0.4])
        } else {
            g.act("alpha", &[1, 4])
        };
        let y = g.act("y", &[1, 4]);
        g.op(Op::Prelu, &[x, alpha], &[y], None);
        let ins = if constant { vec![x0] } else { vec![x0, alpha] };
        let m = g.finish(&ins, &[y]);
        let mut sample = vec![Value::f32(vec![1, 4], ramp(4, -1.0, 1.0))];
        if !constant {
            sample.push(Value::f32(vec![1, 4], ramp(4, 0.1, 0.4)));
        }
        let r = ranges(&m, &[sample], &[]);
        for mode in [Mode::Int8, Mode::Int16x8] {
            let (_, report) = quantize(&m, &options(mode, &r));
            let f = fates(&report);
            let what = format!("{mode:?}, constant alpha {constant}: {f:?}");
            assert_eq!(f[0].0, "quantized", "{what}");
            if constant || mode == Mode::Int8 {
                assert_eq!(f[1].0, "quantized", "{what}");
            } else {
                assert_eq!(f[1].0, "float", "{what}");
                assert!(
                    f[1].1
                        .contains("input 1 \"alpha\" is computed at run time; the 16x8 kernel reads it as int8"),
                    "{what}"
                );
            }
        }
    }
}

/// p = SOFTMAX(d), d = SUB(mask, x) with mask = [0, 0, 0, -1e9] (a sentinel: it never
/// sets a range) and x in [-2, 1]: d's ordinary range is about [-0.9, 2]. The SOFTMAX input's
/// group gets ln(2 · 256) below its minimum (a saturated entry weighs under half an
/// output step), and the mask's range reaches far enough below that mask − x always
/// lands under d's minimum: on LiteRT the masked d is exactly d's integer minimum (the
/// float model's -1e9 saturated) and its probability 0 within one output step; the
/// other entries within the derived bounds.
/// Catches: the SOFTMAX headroom skipped for inputs holding sentinels (or given to the
/// others: `softmax_headroom`'s test), SUB's operand range negated wrongly in
/// `AddSub::widen` (the mask's saturated value too high: mask − x stays inside d's
/// range).
#[test]
fn a_masked_sentinel_saturates_through_sub_and_weighs_nothing_in_softmax() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let mask = g.constant("mask", &[1, 4], &[0.0, 0.0, 0.0, -1e9]);
    let d = g.act("d", &[1, 4]);
    let p = g.act("p", &[1, 4]);
    g.op(
        Op::Sub,
        &[mask, x],
        &[d],
        Some(fb::BuiltinOptions::SubOptions(Box::default())),
    );
    g.op(
        Op::Softmax,
        &[d],
        &[p],
        Some(fb::BuiltinOptions::SoftmaxOptions(Box::new(
            fb::SoftmaxOptions { beta: 1.0 },
        ))),
    );
    let m = g.finish(&[x], &[d, p]);
    let xs = ramp(4 * 8, -2.0, 1.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    let pd = params(tensor(&q, "d/quantized").1).clone();
    let (d_lo, d_hi) = represented_range(&pd);
    // d's ordinary minimum (unmasked entries: -x) and ln(512) below.
    let d_min = xs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 3)
        .map(|(_, &x)| -x)
        .fold(f32::INFINITY, f32::min);
    let want_lo = d_min - 512f32.ln();
    assert!(
        (d_lo - want_lo).abs() <= pd.scale[0] && d_hi >= 2.0 - pd.scale[0],
        "d on [{d_lo}, {d_hi}], want [{want_lo}, 2]"
    );
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs.clone())];
    let f = litert_run(&fp, &input).unwrap();
    let got = litert_run(&qp, &input).unwrap();
    let (fd, fp_) = (f[0].data.to_f64(), f[1].data.to_f64());
    let (gd, gp) = (got[0].data.to_f64(), got[1].data.to_f64());
    assert_finite("int8 d", &gd);
    assert_finite("int8 p", &gp);
    let s_x = params(tensor(&q, "x/quantized").1).scale[0] as f64;
    let s_d = pd.scale[0] as f64;
    // d: x's rounding and one output step (SUB's rescale, k = 1).
    let bound_d = s_x / 2.0 + s_d;
    // p: |∂p_i/∂d| summed ≤ 1/2, the saturated entry's weight < 1/512, one step.
    let bound_p = bound_d / 2.0 + 1.0 / 512.0 + 1.0 / 256.0;
    for i in 0..gd.len() {
        if i % 4 == 3 {
            assert!(fd[i] < -1e8, "float d[{i}] = {}", fd[i]);
            assert!(
                (gd[i] - d_lo as f64).abs() <= 1e-6,
                "masked d[{i}]: {} is not d's minimum {d_lo} (x = {})",
                gd[i],
                xs[i]
            );
            assert!(gp[i].abs() <= 1.0 / 256.0, "masked p[{i}] = {}", gp[i]);
        } else {
            assert!(
                (gd[i] - fd[i]).abs() <= bound_d,
                "d[{i}]: {} vs {} (bound {bound_d})",
                gd[i],
                fd[i]
            );
            assert!(
                (gp[i] - fp_[i]).abs() <= bound_p,
                "p[{i}]: {} vs {} (bound {bound_p})",
                gp[i],
                fp_[i]
            );
        }
    }
}

/// e = SUB(x, mask) with mask = [0, 0, 0, 1e9] subtracted (x in [-2, 1]): the mask's
/// upper end reaches far enough that x − mask always lands under e's minimum: on
/// LiteRT the masked e is exactly e's integer minimum (the float model's -1e9
/// saturated), the others within x's rounding and one step.
/// Catches: the subtracted operand's sentinel end computed wrongly in `AddSub::widen`
/// (`hi_x − lo_o`: the mask saturating near 0, e = x).
#[test]
fn a_subtracted_sentinel_saturates_the_difference() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let mask = g.constant("mask", &[1, 4], &[0.0, 0.0, 0.0, 1e9]);
    let e = g.act("e", &[1, 4]);
    g.op(
        Op::Sub,
        &[x, mask],
        &[e],
        Some(fb::BuiltinOptions::SubOptions(Box::default())),
    );
    let m = g.finish(&[x], &[e]);
    let xs = ramp(4 * 8, -2.0, 1.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int8, &r));
    assert_all_quantized(&report);
    let pe = params(tensor(&q, "e/quantized").1).clone();
    let (e_lo, _) = represented_range(&pe);
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs.clone())];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("int8 e", &got);
    let s_x = params(tensor(&q, "x/quantized").1).scale[0] as f64;
    let bound = s_x / 2.0 + pe.scale[0] as f64;
    for i in 0..got.len() {
        if i % 4 == 3 {
            assert!(f[i] < -1e8, "float e[{i}] = {}", f[i]);
            assert!(
                (got[i] - e_lo as f64).abs() <= 1e-6,
                "masked e[{i}]: {} is not e's minimum {e_lo} (x = {})",
                got[i],
                xs[i]
            );
        } else {
            assert!(
                (got[i] - f[i]).abs() <= bound,
                "e[{i}]: {} vs {} (bound {bound})",
                got[i],
                f[i]
            );
        }
    }
}

/// ADD and SUB in 16x8 declare the general-scale int16 path (`pot_scale_int16 =
/// false`; the flatbuffer default, true, is LiteRT's power-of-two path for LSTM
/// internals, which needs power-of-two scales); on LiteRT y = (x + c) − x2 is the float
/// model's within x's rounding (twice) and two output steps.
/// Catches: the option left at its default (`rules::options::set_general_scale_int16`).
#[test]
fn add_and_sub_in_16x8_use_the_general_scale_path() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let c = g.constant("c", &[1, 4], &[0.3, -0.7, 1.1, -1.9]);
    let s = g.act("s", &[1, 4]);
    let y = g.act("y", &[1, 4]);
    g.op(Op::Add, &[x, c], &[s], None);
    g.op(Op::Sub, &[s, x], &[y], None);
    let m = g.finish(&[x], &[y]);
    let xs = ramp(4 * 8, -3.0, 2.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, report) = quantize(&m, &options(Mode::Int16x8, &r));
    assert_all_quantized(&report);
    for o in &q.subgraphs[0].operators {
        let pot = match &o.builtin_options {
            Some(fb::BuiltinOptions::AddOptions(a)) => a.pot_scale_int16,
            Some(fb::BuiltinOptions::SubOptions(a)) => a.pot_scale_int16,
            None if matches!(q.builtin(o), Op::Add | Op::Sub) => true,
            _ => continue,
        };
        assert!(!pot, "{:?} keeps pot_scale_int16", q.builtin(o));
    }
    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap_or_else(|e| panic!("LiteRT: {e}"))[0]
        .data
        .to_f64();
    assert_finite("16x8", &got);
    let step = |n: &str| params(tensor(&q, n).1).scale[0] as f64;
    let bound = step("x/quantized") + step("c") / 2.0 + step("s") + step("y/quantized");
    for (i, (u, v)) in f.iter().zip(&got).enumerate() {
        assert!(
            (u - v).abs() <= bound,
            "element {i}: {u} vs {v} (bound {bound})"
        );
    }
}

/// h = WHILE(i < 3) { h + x } with a constant initial h0 (and x carried unchanged), then
/// z = h + x: a float constant carried into the loop as an integer is stored as integers
/// with the loop's parameters (those of the body's output, which every member of the
/// carried position shares), not kept float and converted by a QUANTIZE before the
/// WHILE; the loop's integer output feeds the ADD after it directly. On LiteRT
/// z = h0 + 4x is the float model's within h's four roundings (h0 and three ADD
/// outputs), x's four (it is rounded once and added four times) and z's, half a step
/// each.
/// Catches: the constant branch of `Rewire::rewire_loop` skipped (an extra QUANTIZE and
/// a float constant left in the model), the constant quantized with other parameters
/// than the loop's, a carried WHILE output not recognised as written in integers
/// (`Carried::writes_integer`: a DEQUANTIZE nobody reads after the WHILE).
#[test]
fn a_constant_carried_into_a_while_is_stored_as_integers_with_the_loop_parameters() {
    let h0_values = [0.5f32, -0.25, 0.75, 0.1];
    let mut g = Graph::new();
    // Subgraph 0: (i, h, x) = WHILE(0, h0, x); y = h.
    let i0 = g.constant_i32("i0", &[], &[0]);
    let h0 = g.constant("h0", &[1, 4], &h0_values);
    let x = g.act("x", &[1, 4]);
    let (i_out, h, x_out) = (
        g.act("i_out", &[]),
        g.act("h", &[1, 4]),
        g.act("x_out", &[1, 4]),
    );
    g.sg.tensors[i_out as usize].dtype = TensorType::Int32;
    let whiles = fb::WhileOptions {
        cond_subgraph_index: 1,
        body_subgraph_index: 2,
    };
    g.op(
        Op::While,
        &[i0, h0, x],
        &[i_out, h, x_out],
        Some(fb::BuiltinOptions::WhileOptions(Box::new(whiles))),
    );
    let z = g.act("z", &[1, 4]);
    let add = || Some(fb::BuiltinOptions::AddOptions(Box::default()));
    g.op(Op::Add, &[h, x], &[z], add());
    g.next_subgraph(&[x], &[z], "cond");
    // Subgraph 1: i < 3.
    let (ci, ch, cx) = (g.act("ci", &[]), g.act("ch", &[1, 4]), g.act("cx", &[1, 4]));
    g.sg.tensors[ci as usize].dtype = TensorType::Int32;
    let three = g.constant_i32("three", &[], &[3]);
    let go = g.act("go", &[]);
    g.sg.tensors[go as usize].dtype = TensorType::Bool;
    g.op(Op::Less, &[ci, three], &[go], None);
    g.next_subgraph(&[ci, ch, cx], &[go], "body");
    // Subgraph 2: (i + 1, h + x, x).
    let (bi, bh, bx) = (g.act("bi", &[]), g.act("bh", &[1, 4]), g.act("bx", &[1, 4]));
    g.sg.tensors[bi as usize].dtype = TensorType::Int32;
    let one = g.constant_i32("one", &[], &[1]);
    let (bi2, bh2) = (g.act("bi2", &[]), g.act("bh2", &[1, 4]));
    g.sg.tensors[bi2 as usize].dtype = TensorType::Int32;
    g.op(Op::Add, &[bi, one], &[bi2], add());
    g.op(Op::Add, &[bh, bx], &[bh2], add());
    let m = g.finish(&[bi, bh, bx], &[bi2, bh2, bx]);
    tflquant::ir::verify(&m).unwrap();

    let xs = ramp(4 * 8, -1.0, 1.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    let (q, _) = quantize(&m, &options(Mode::Int8, &r));

    // The WHILE reads h0 as an int8 constant with the body input's parameters, which
    // hold h0's values; nothing converts it at run time.
    let sg = &q.subgraphs[0];
    let w = sg
        .operators
        .iter()
        .find(|o| q.builtin(o) == Op::While)
        .expect("the WHILE");
    let h0q = &sg.tensors[w.inputs[1] as usize];
    assert!(q.is_constant(h0q), "{} is not a constant", h0q.name);
    assert_eq!(h0q.dtype, TensorType::Int8, "{}", h0q.name);
    let body_h = &q.subgraphs[2].tensors[q.subgraphs[2].inputs[1] as usize];
    assert_eq!(body_h.dtype, TensorType::Int8, "{}", body_h.name);
    let c = params(body_h);
    assert_eq!(params(h0q), c, "h0 and the body's h");
    let (lo, hi) = represented_range(c);
    assert!(h0_values.iter().all(|&v| lo <= v && v <= hi), "{c:?}");
    let stored: Vec<f32> = q
        .tensor_data(h0q)
        .iter()
        .map(|&b| (b as i8 as f32 - c.zero_point[0] as f32) * c.scale[0])
        .collect();
    for (v, s) in h0_values.iter().zip(&stored) {
        assert!(
            (v - s).abs() <= c.scale[0] / 2.0 + 1e-7,
            "h0 {v} stored as {s}"
        );
    }
    for o in &sg.operators {
        for &t in &o.inputs {
            let Ok(t) = usize::try_from(t) else { continue };
            let t = &sg.tensors[t];
            assert!(
                !(q.is_constant(t) && t.dtype == TensorType::Float32),
                "{:?} reads the float constant {}",
                q.builtin(o),
                t.name
            );
        }
    }
    let kinds: Vec<Op> = ops(&q).iter().map(|o| o.0).collect();
    assert_eq!(
        kinds,
        [Op::Quantize, Op::While, Op::Add, Op::Dequantize],
        "{kinds:?}"
    );
    let o = ops(&q);
    assert_eq!(o[2].1[0], o[1].2[1], "the ADD reads the WHILE's integer h");

    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap_or_else(|e| panic!("LiteRT: {e}"))[0]
        .data
        .to_f64();
    assert_finite("int8", &got);
    let s_h = c.scale[0] as f64;
    let s_x = params(&q.subgraphs[2].tensors[q.subgraphs[2].inputs[2] as usize]).scale[0] as f64;
    let s_z = params(&sg.tensors[o[2].2[0] as usize]).scale[0] as f64;
    let bound = 4.0 * s_h / 2.0 + 4.0 * s_x / 2.0 + s_z / 2.0 + 1e-6;
    for (i, (u, v)) in f.iter().zip(&got).enumerate() {
        assert!(
            (u - v).abs() <= bound,
            "element {i}: {u} vs {v} (bound {bound})"
        );
    }
}

/// y = ADD(x, c) with every value of c equal (0.5, then -0.5): c is quantized on the
/// range from 0 to its value, like any constant ([0, 0.5]: int8 scale 0.5/255, zero
/// point -128, c stored as 127; [-0.5, 0]: zero point 127, c stored as -128; int16
/// scale 0.5/32767, c stored as ±32767): c is exact. On LiteRT y is the float model's
/// within x's and y's rounding (half a step each).
/// Catches: a constant whose minimum equals its maximum taken for one without ordinary
/// values (`plan::data_range_with_sentinels` returning [0, 0]: c then gets the scale
/// of [-1, 1] and is no longer exact).
#[test]
fn a_constant_of_equal_values_is_quantized_on_the_range_from_zero_to_its_value() {
    for v in [0.5f32, -0.5] {
        let mut g = Graph::new();
        let x = g.act("x", &[1, 4]);
        let c = g.constant("c", &[1, 4], &[v; 4]);
        let y = g.act("y", &[1, 4]);
        g.op(
            Op::Add,
            &[x, c],
            &[y],
            Some(fb::BuiltinOptions::AddOptions(Box::default())),
        );
        let m = g.finish(&[x], &[y]);
        let xs = ramp(4 * 8, -1.0, 1.0);
        let samples: Vec<Vec<Value>> = xs
            .chunks(4)
            .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
            .collect();
        let r = ranges(&m, &samples, &[]);
        let dir = tempfile::tempdir().unwrap();
        let fp = write(dir.path(), "f.tflite", &m);
        let input = vec![Array::f32(vec![8, 1, 4], xs)];
        let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
        for (mode, scale, zp, stored) in [
            (
                Mode::Int8,
                (0.5f64 / 255.0) as f32,
                if v > 0.0 { -128 } else { 127 },
                if v > 0.0 { 127 } else { -128 },
            ),
            (
                Mode::Int16x8,
                0.5f32 / 32767.0,
                0,
                if v > 0.0 { 32767 } else { -32767 },
            ),
        ] {
            let what = format!("c = {v}, {mode:?}");
            let (q, report) = quantize(&m, &options(mode, &r));
            assert_all_quantized(&report);
            let ct = operand(&q, Op::Add, 1);
            assert_eq!(ct.name, "c", "{what}");
            let p = params(ct);
            assert_eq!(p.scale, [scale], "{what}");
            assert_eq!(p.zero_point, [zp], "{what}");
            let data = q.tensor_data(ct);
            let ints: Vec<i64> = if mode == Mode::Int8 {
                data.iter().map(|&b| b as i8 as i64).collect()
            } else {
                data.chunks(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
                    .collect()
            };
            assert_eq!(ints, [stored; 4], "{what}");
            let qp = write(dir.path(), "q.tflite", &q);
            let got = litert_run(&qp, &input).unwrap_or_else(|e| panic!("{what}: {e}"))[0]
                .data
                .to_f64();
            assert_finite(&what, &got);
            let step = |n: &str| params(tensor(&q, n).1).scale[0] as f64;
            let bound = (step("x/quantized") + step("y/quantized")) / 2.0 + 1e-6;
            for (i, (a, b)) in f.iter().zip(&got).enumerate() {
                assert!(
                    (a - b).abs() <= bound,
                    "{what}: element {i}: {a} vs {b} (bound {bound})"
                );
            }
        }
    }
}

/// y = MAXIMUM(x, mask) with mask = [-0, -0, -0, -1e9] (a sentinel and negative zeros,
/// as a mask computed as `-1e9 · m` holds): the report lists the mask's sentinel with
/// its ordinary range [0, 0] written as +0 at both ends (`-0.0` in a JSON report reads
/// like a bug); the mask takes x's group parameters, the sentinel saturates to the
/// integer minimum and the zeros are the zero point. On LiteRT y is the float model's
/// within half of x's step (MAXIMUM picks one of two integers on one scale).
/// Catches: the `+ 0.0` of `plan::data_range_with_sentinels` turned into `- 0.0`
/// (debug builds: `f32::min(-0.0, 0.0)` is -0.0 there).
#[test]
fn a_mask_of_negative_zeros_reports_its_ordinary_range_as_positive_zeros() {
    let mut g = Graph::new();
    let x = g.act("x", &[1, 4]);
    let mask = g.constant("mask", &[1, 4], &[-0.0, -0.0, -0.0, -1e9]);
    let y = g.act("y", &[1, 4]);
    g.op(Op::Maximum, &[x, mask], &[y], None);
    let m = g.finish(&[x], &[y]);
    let xs = ramp(4 * 8, -1.0, 1.0);
    let samples: Vec<Vec<Value>> = xs
        .chunks(4)
        .map(|c| vec![Value::f32(vec![1, 4], c.to_vec())])
        .collect();
    let r = ranges(&m, &samples, &[]);
    // --strict: MAXIMUM only moves values between float tensors here, which would keep
    // it float (`fates::keep_float_moves`); this test is about its integer form.
    let mut o = options(Mode::Int8, &r);
    o.strict = true;
    let (q, report) = quantize(&m, &o);
    assert_all_quantized(&report);
    let s: Vec<_> = report
        .sentinels
        .iter()
        .filter(|s| s.name == "mask")
        .collect();
    assert_eq!(s.len(), 1, "{:?}", report.sentinels);
    assert_eq!(
        (s[0].kind.as_str(), s[0].below, s[0].above),
        ("constant", 1, 0)
    );
    let (lo, hi) = s[0].range.expect("a constant's range");
    assert_eq!(
        (lo.to_bits(), hi.to_bits()),
        (0.0f32.to_bits(), 0.0f32.to_bits()),
        "range ({lo:?}, {hi:?})"
    );
    let xq = params(tensor(&q, "x/quantized").1).clone();
    let mq = operand(&q, Op::Maximum, 1);
    assert_eq!(params(mq), &xq, "the mask takes x's parameters");
    let z = xq.zero_point[0] as i8 as u8;
    assert_eq!(q.tensor_data(mq), [z, z, z, (-128i8) as u8]);

    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &q);
    let input = vec![Array::f32(vec![8, 1, 4], xs)];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap_or_else(|e| panic!("LiteRT: {e}"))[0]
        .data
        .to_f64();
    assert_finite("int8", &got);
    let bound = xq.scale[0] as f64 / 2.0 + 1e-6;
    for (i, (a, b)) in f.iter().zip(&got).enumerate() {
        assert!(
            (a - b).abs() <= bound,
            "element {i}: {a} vs {b} (bound {bound})"
        );
    }
}

/// y = ADD(DEQUANTIZE(q), x) with q an int8 model input (scale 0.05, zero point 3) and
/// `--interface uint8`: only the interface tensors tflquant quantized become uint8 (x and
/// y: zero point + 128); the model's own int8 input q keeps its type and parameters (a
/// caller feeds it int8 already). On LiteRT y is the float model's within half a step
/// each of x, y and DEQUANTIZE(q) (requantized for the ADD).
/// Catches: `uint8_interface` shifting every int8 interface tensor (its
/// quantized-by-tflquant test turned from `||` into `&&`).
#[test]
fn uint8_interface_leaves_the_models_own_int8_input_alone() {
    use tflquant::quant::integer::Interface;
    let mut g = Graph::new();
    let q = g.act("q", &[1, 4]);
    g.sg.tensors[q as usize].dtype = TensorType::Int8;
    g.sg.tensors[q as usize].quant = Some(QuantParams::per_tensor(0.05, 3));
    let qf = g.act("qf", &[1, 4]);
    g.op(Op::Dequantize, &[q], &[qf], None);
    let x = g.act("x", &[1, 4]);
    let y = g.act("y", &[1, 4]);
    g.op(
        Op::Add,
        &[qf, x],
        &[y],
        Some(fb::BuiltinOptions::AddOptions(Box::default())),
    );
    let m = g.finish(&[q, x], &[y]);
    let qs: Vec<i8> = (0..32).map(|i| (i * 7 % 61 - 30) as i8).collect();
    let xs = ramp(4 * 8, -1.0, 3.0);
    let samples: Vec<Vec<Value>> = qs
        .chunks(4)
        .zip(xs.chunks(4))
        .map(|(a, b)| {
            vec![
                Value::new(vec![1, 4], tflquant::interp::Data::I8(a.to_vec())).unwrap(),
                Value::f32(vec![1, 4], b.to_vec()),
            ]
        })
        .collect();
    let r = ranges(&m, &samples, &[]);
    let mut o = options(Mode::Int8, &r);
    o.interface = Interface::Uint8;
    let (qm, report) = quantize(&m, &o);
    // The DEQUANTIZE of the model's own input stays as it is; the ADD is integer.
    assert_eq!(fates(&report)[1].0, "quantized", "{:?}", fates(&report));
    let sg = &qm.subgraphs[0];
    let qt = &sg.tensors[sg.inputs[0] as usize];
    assert_eq!((qt.name.as_str(), qt.dtype), ("q", TensorType::Int8));
    assert_eq!(params(qt), &QuantParams::per_tensor(0.05, 3));
    for name in ["x", "y"] {
        assert_eq!(tensor(&qm, name).1.dtype, TensorType::Uint8, "{name}");
    }

    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &qm);
    let input = vec![
        Array::new(vec![8, 1, 4], tflquant::data::ArrayData::I8(qs)),
        Array::f32(vec![8, 1, 4], xs),
    ];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let out = litert_run(&qp, &quantize_for_integer_inputs(&qm, input))
        .unwrap_or_else(|e| panic!("LiteRT: {e}"));
    let got = &real(&qm, &out)[0];
    assert_finite("uint8", got);
    let step = |n: &str| params(tensor(&qm, n).1).scale[0] as f64;
    // q's values are exact in float; the ADD reads them requantized to qf's parameters.
    let bound = (step("qf/quantized") + step("x") + step("y")) / 2.0 + 1e-6;
    for (i, (a, b)) in f.iter().zip(got).enumerate() {
        assert!(
            (a - b).abs() <= bound,
            "element {i}: {a} vs {b} (bound {bound})"
        );
    }
}
