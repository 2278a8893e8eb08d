//! The per-op accuracy proof of full-integer models: every integer op of subgraph 0,
//! run by LiteRT, is compared with the float op evaluated on the *same* integer inputs.
//!
//! For one quantized model and a few samples, LiteRT runs once with every tensor of
//! subgraph 0 kept (`litert_run_all`, builtin kernels). Then tflquant's reference
//! interpreter runs the quantized model sample by sample and an observer replaces each
//! tensor it produces with LiteRT's value, so that every op reads exactly the integers
//! LiteRT's kernel read. The interpreter's simulation of a quantized op is: dequantize
//! the inputs with their own parameters, run the float kernel, requantize with the
//! output's scale and zero point (round half away from zero, clamp). Before replacing,
//! that value is compared with LiteRT's integer output: the two may be at most `k`
//! output steps apart, `k` per op family from [`K_TABLE`], derived from the integer
//! kernel's arithmetic (the reason is written beside each entry).
//!
//! An op family without an entry fails the test (a new kernel needs its bound derived
//! first). Outputs that are integer but not quantized (ARG_MAX indices, comparisons,
//! shape arithmetic) must match exactly unless the table says otherwise. Float outputs
//! (ops kept float) are not integer ops and are not compared here. Subgraphs other
//! than 0 (WHILE bodies) are not covered: LiteRT's Python interpreter exposes the
//! tensors of subgraph 0 only; their effect is in the WHILE op's output, which is
//! checked end to end (see `tests/it/integer.rs`).

use std::collections::{BTreeMap, HashMap};

use tflquant::data::Array;
use tflquant::fb::{BuiltinOperator as Op, TensorType};
use tflquant::interp::{Flow, Interpreter, TensorId, Value};
use tflquant::ir::Model;

use tflquant::data::ArrayData;

/// Sample `i` of an array holding samples on axis 0 (any element type).
pub fn sample(a: &Array, i: usize) -> Array {
    let per: usize = a.shape[1..].iter().product();
    let r = i * per..(i + 1) * per;
    let data = match &a.data {
        ArrayData::F32(v) => ArrayData::F32(v[r].to_vec()),
        ArrayData::F64(v) => ArrayData::F64(v[r].to_vec()),
        ArrayData::I8(v) => ArrayData::I8(v[r].to_vec()),
        ArrayData::U8(v) => ArrayData::U8(v[r].to_vec()),
        ArrayData::I16(v) => ArrayData::I16(v[r].to_vec()),
        ArrayData::U16(v) => ArrayData::U16(v[r].to_vec()),
        ArrayData::I32(v) => ArrayData::I32(v[r].to_vec()),
        ArrayData::U32(v) => ArrayData::U32(v[r].to_vec()),
        ArrayData::I64(v) => ArrayData::I64(v[r].to_vec()),
        ArrayData::U64(v) => ArrayData::U64(v[r].to_vec()),
        ArrayData::Bool(v) => ArrayData::Bool(v[r].to_vec()),
    };
    Array::new(a.shape[1..].to_vec(), data)
}

/// Output steps an integer kernel may differ from "float op on the dequantized
/// inputs, requantized once". `bits`: 8 (int8/uint8 outputs), 16 (int16) or 0 (both).
pub struct Bound {
    pub op: Op,
    pub bits: u8,
    pub k: i64,
    pub why: &'static str,
}

const fn b(op: Op, bits: u8, k: i64, why: &'static str) -> Bound {
    Bound { op, bits, k, why }
}

/// One fixed-point rescale (MultiplyByQuantizedMultiplier: 31-bit multiplier, rounding
/// right shift) of an exact int32/int64 accumulator: the result differs from
/// round(real/scale) by at most one step (the multiplier's 2^-31 relative error plus the
/// double rounding of the rounding-doubling-high-mul and the shift).
const ONE_RESCALE: &str = "exact integer accumulator, one fixed-point rescale: ±1 step";
/// Pure data movement: the output holds input integers (the rules give input and output
/// the same parameters).
const MOVE: &str = "moves integers, no arithmetic (same parameters in and out): exact";
/// Integer results that are not quantized: indices, booleans, shapes.
const EXACT: &str = "compares or counts integers of one scale (rules: shared parameters): exact";
/// 8-bit transcendental kernels (LOGISTIC, TANH, ELU, GELU, RSQRT, SOFTMAX's exp, ...)
/// fill a 256-entry table with round(f(dequantized input) / s_out) + z_out, computed in
/// float or double: the simulation computes the same rounding in float32 and can land on
/// the other side of a half step: ±1.
const LUT8: &str =
    "256-entry table of the rounded float function: ±1 (float32 vs double at a half step)";

pub const K_TABLE: &[Bound] = &[
    b(Op::Conv2d, 0, 1, ONE_RESCALE),
    b(Op::DepthwiseConv2d, 0, 1, ONE_RESCALE),
    b(Op::FullyConnected, 0, 1, ONE_RESCALE),
    b(Op::TransposeConv, 0, 1, ONE_RESCALE),
    b(Op::BatchMatmul, 0, 1, ONE_RESCALE),
    b(Op::Mean, 0, 1, ONE_RESCALE),
    b(Op::Sum, 0, 1, ONE_RESCALE),
    b(
        Op::AveragePool2d,
        0,
        1,
        "integer sum, rounded integer division by the count: ±1 step",
    ),
    b(Op::Relu, 0, 1, ONE_RESCALE),
    b(Op::Relu6, 0, 1, ONE_RESCALE),
    b(Op::ReluN1To1, 0, 1, ONE_RESCALE),
    b(
        Op::LeakyRelu,
        0,
        1,
        "one rescale per branch (identity or alpha): ±1 step",
    ),
    b(
        Op::Prelu,
        0,
        1,
        "one rescale per branch (identity or alpha·x): ±1 step",
    ),
    b(
        Op::Quantize,
        0,
        1,
        "float input: one rounding; integer input: one fixed-point rescale: ±1",
    ),
    b(
        Op::Add,
        0,
        1,
        "inputs left-shifted 20 (8-bit) / 15 (16-bit) bits and rescaled with 31-bit multipliers, summed, one output rescale: the input rescales lose < 2^-20 of a step, the output rescale ±1",
    ),
    b(Op::Sub, 0, 1, "as ADD: ±1 step"),
    b(Op::Mul, 0, 1, "exact integer product, one rescale: ±1 step"),
    b(
        Op::SquaredDifference,
        0,
        1,
        "inputs rescaled as ADD, exact square, one rescale: ±1 step",
    ),
    b(
        Op::Div,
        0,
        1,
        "fixed-point reciprocal of the divisor (31 bits), product, one rescale: ±1 step",
    ),
    b(
        Op::Abs,
        0,
        1,
        "|q - z| exact, one rescale to the output's parameters: ±1 step",
    ),
    b(Op::Sqrt, 8, 1, LUT8),
    b(
        Op::Sqrt,
        16,
        1,
        "16-bit SQRT: the kernel's int16 path was not read (assumed: one table lookup and one rounding, as the 8-bit path); measured 1",
    ),
    b(Op::Rsqrt, 8, 1, LUT8),
    b(
        Op::Rsqrt,
        16,
        16,
        "16-bit RSQRT: fixed-point inverse square root (Newton iterations on a Q-format value, result shifted to the output scale): relative error ~2^-12 of the result, up to 16 steps of a 2^-15-range output; measured 11",
    ),
    b(Op::Logistic, 8, 1, LUT8),
    b(
        Op::Logistic,
        16,
        2,
        "16-bit LOGISTIC: input rescaled to Q3.12 (one rounding, slope ≤ 1/4), 513-entry int16 table with linear interpolation (interpolation ≤ 1 step): ±2",
    ),
    b(Op::Tanh, 8, 1, LUT8),
    b(
        Op::Tanh,
        16,
        4,
        "16-bit TANH: input rescaled to Q3.12 (one rounding, slope ≤ 1 → ±1 output step ×2 for the Q3.12 vs output Q0.15 scale), 513-entry int16 table with linear interpolation (±1), output rounding (±1): ±4",
    ),
    b(Op::Elu, 0, 1, LUT8),
    b(Op::Gelu, 8, 1, LUT8),
    b(
        Op::Gelu,
        16,
        2,
        "16-bit GELU: 513-entry int16 table with linear interpolation (±1) over the rounded input (±1): ±2",
    ),
    b(
        Op::HardSwish,
        0,
        1,
        "fixed-point relu6(x+3)/6 · x with rounding shifts, one output rescale: ±1 step",
    ),
    b(
        Op::L2Normalization,
        0,
        1,
        "exact sum of squares, fixed-point inverse square root, one rescale: ±1 step",
    ),
    b(
        Op::Softmax,
        8,
        1,
        "8-bit SOFTMAX (LiteRT's optimized kernel): float exp table of the scaled input difference, float sum and reciprocal, one rounding to the fixed output step (1/256, or 1/32768 when it writes int16 probabilities): ±1",
    ),
    b(
        Op::Softmax,
        16,
        32,
        "16-bit SOFTMAX: exp(x) and 1/(1+x) through 513-entry int16 tables with linear interpolation (each ~2^-11 relative), the sum rescaled to Q-format: relative error ~2^-10 of a 1.0 = 2^15-step output → up to 32 steps; measured 18",
    ),
    b(
        Op::LogSoftmax,
        0,
        1,
        "8-bit LOG_SOFTMAX: exp-sum in fixed point, log via fixed-point table, output on the fixed step 16/256: ±1",
    ),
    b(
        Op::ReduceProd,
        0,
        2,
        "one rescale per product of the running value (n-1 roundings, relative); testdata reduces ≤ 4 elements: ±2",
    ),
    b(
        Op::ResizeBilinear,
        8,
        1,
        "interpolation weights on 10 fractional bits: error < 255·2^-10 < 1 step, plus the output rounding: ±1",
    ),
    b(
        Op::ResizeBilinear,
        16,
        65,
        "interpolation weights on 10 fractional bits: error up to (input span 2^16)·2^-10 = 64 steps, plus the output rounding: ±65; measured 62",
    ),
    b(Op::MaxPool2d, 0, 0, MOVE),
    b(Op::ReduceMax, 0, 0, MOVE),
    b(Op::ReduceMin, 0, 0, MOVE),
    b(Op::Reshape, 0, 0, MOVE),
    b(Op::Squeeze, 0, 0, MOVE),
    b(Op::ExpandDims, 0, 0, MOVE),
    b(Op::Transpose, 0, 0, MOVE),
    b(Op::Gather, 0, 0, MOVE),
    b(Op::GatherNd, 0, 0, MOVE),
    b(Op::StridedSlice, 0, 0, MOVE),
    b(Op::Slice, 0, 0, MOVE),
    b(Op::Pad, 0, 0, MOVE),
    b(Op::Padv2, 0, 0, MOVE),
    b(Op::MirrorPad, 0, 0, MOVE),
    b(Op::SpaceToDepth, 0, 0, MOVE),
    b(Op::DepthToSpace, 0, 0, MOVE),
    b(Op::SpaceToBatchNd, 0, 0, MOVE),
    b(Op::BatchToSpaceNd, 0, 0, MOVE),
    b(Op::ReverseV2, 0, 0, MOVE),
    b(Op::BroadcastTo, 0, 0, MOVE),
    b(Op::Tile, 0, 0, MOVE),
    b(Op::Pack, 0, 0, MOVE),
    b(Op::Unpack, 0, 0, MOVE),
    b(Op::Split, 0, 0, MOVE),
    b(Op::SplitV, 0, 0, MOVE),
    b(Op::Concatenation, 0, 0, MOVE),
    b(Op::Maximum, 0, 0, MOVE),
    b(Op::Minimum, 0, 0, MOVE),
    b(Op::Select, 0, 0, MOVE),
    b(Op::SelectV2, 0, 0, MOVE),
    b(Op::Fill, 0, 0, MOVE),
    b(Op::ResizeNearestNeighbor, 0, 0, MOVE),
    b(Op::ReadVariable, 0, 0, "returns the stored integers: exact"),
    b(Op::ArgMax, 0, 0, EXACT),
    b(Op::ArgMin, 0, 0, EXACT),
    b(Op::Equal, 0, 0, EXACT),
    b(Op::NotEqual, 0, 0, EXACT),
    b(Op::Less, 0, 0, EXACT),
    b(Op::LessEqual, 0, 0, EXACT),
    b(Op::Greater, 0, 0, EXACT),
    b(Op::GreaterEqual, 0, 0, EXACT),
    b(Op::LogicalAnd, 0, 0, EXACT),
    b(Op::LogicalOr, 0, 0, EXACT),
    b(Op::LogicalNot, 0, 0, EXACT),
    b(
        Op::Cast,
        0,
        0,
        "integer shape arithmetic on integers: exact",
    ),
    b(Op::Shape, 0, 0, "integer shape arithmetic: exact"),
    b(Op::Range, 0, 0, "integer shape arithmetic: exact"),
];

/// Ops whose output is not one kernel's arithmetic: control flow runs other subgraphs
/// (their ops are not visible in LiteRT's subgraph-0 tensors); checked end to end. The
/// integer LSTM carries int16 cell and int8 hidden state over every step of the sequence
/// (one float evaluation of the whole sequence accumulates T steps of state rounding): its
/// fixed-point arithmetic is reproduced by the interpreter and checked identical to
/// LiteRT's output in `recurrent::recurrent_models_are_integer_accurate_and_run_like_litert`.
pub const NOT_PER_OP: &[Op] = &[
    Op::While,
    Op::If,
    Op::CallOnce,
    Op::StablehloComposite,
    Op::UnidirectionalSequenceLstm,
];

/// The bound of an op family at an output width, if derived.
pub fn bound(op: Op, bits: u8) -> Option<&'static Bound> {
    K_TABLE
        .iter()
        .find(|e| e.op == op && (e.bits == 0 || e.bits == bits))
}

/// The largest difference seen for one op family at one width.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub max_steps: i64,
    /// The bound of the family (None: not derived yet).
    pub k: Option<i64>,
    pub elements: usize,
    /// Where the maximum was seen: model, mode, operator index, tensor name.
    pub at: String,
}

/// Per (op name, bits): the largest difference; and the failures.
#[derive(Debug, Default)]
pub struct OpBounds {
    pub seen: BTreeMap<(String, u8), Seen>,
    pub failures: Vec<String>,
    pub ops_compared: usize,
}

fn bits_of(t: TensorType) -> u8 {
    match t {
        TensorType::Int16 => 16,
        _ => 8,
    }
}

/// Compares every integer op of subgraph 0 of `quant` (run by LiteRT on `inputs`, with
/// `lit_tensors` the `t<index>` arrays of that run) with the float op on the same
/// integer inputs. `label` names the model and mode in messages.
pub fn check_ops(
    label: &str,
    quant: &Model,
    inputs: &[Array],
    lit_tensors: &[(String, Array)],
    acc: &mut OpBounds,
) {
    let sg = &quant.subgraphs[0];
    let mut producer: HashMap<usize, usize> = HashMap::new();
    for (oi, op) in sg.operators.iter().enumerate() {
        for &t in &op.outputs {
            if let Ok(t) = usize::try_from(t) {
                producer.insert(t, oi);
            }
        }
    }
    let lit: HashMap<usize, &Array> = lit_tensors
        .iter()
        .filter_map(|(k, a)| Some((k.strip_prefix('t')?.parse().ok()?, a)))
        .collect();
    let mut compared_ops = std::collections::BTreeSet::new();
    let mut it = Interpreter::new(quant).expect("interpreter on the quantized model");
    let n = inputs[0].shape[0];
    for s in 0..n {
        let ins: Vec<Value> = inputs
            .iter()
            .map(|a| Value::from_array(&sample(a, s)).expect("input value"))
            .collect();
        let mut obs = |id: TensorId, v: &Value| {
            if id.subgraph != 0 {
                return Flow::Continue;
            }
            let Some(theirs) = lit.get(&id.tensor).map(|a| sample(a, s)) else {
                return Flow::Continue;
            };
            let tensor = &sg.tensors[id.tensor];
            if let Some(&oi) = producer.get(&id.tensor)
                && tensor.dtype != TensorType::Float32
                && !NOT_PER_OP.contains(&quant.builtin(&sg.operators[oi]))
            {
                let op = quant.builtin(&sg.operators[oi]);
                let name = tflquant::fb::op_name(op).to_string();
                // The kernel's width: the output's, but an int8 kernel that writes its
                // fixed output in int16 (`Rule::int16_output`: SOFTMAX at a float
                // output) is the 8-bit one.
                let first_in = sg.operators[oi].inputs.first().copied().unwrap_or(-1);
                let int16_output =
                    tflquant::rules::rule_for(op).is_some_and(|r| r.int16_output.is_some());
                let bits = match usize::try_from(first_in) {
                    Ok(i) if int16_output => bits_of(sg.tensors[i].dtype),
                    _ => bits_of(tensor.dtype),
                };
                let ours = v.to_array();
                let at = format!(
                    "{label}: op {oi} {name} -> tensor {} {:?}",
                    id.tensor, tensor.name
                );
                if ours.len() != theirs.len() {
                    acc.failures.push(format!(
                        "{at}: {} elements, LiteRT has {}",
                        ours.len(),
                        theirs.len()
                    ));
                } else {
                    let d = ours
                        .data
                        .to_f64()
                        .iter()
                        .zip(theirs.data.to_f64())
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f64, f64::max) as i64;
                    let e = acc.seen.entry((name.clone(), bits)).or_default();
                    e.elements += ours.len();
                    e.k = bound(op, bits).map(|b| b.k);
                    if d > e.max_steps || e.at.is_empty() {
                        e.max_steps = e.max_steps.max(d);
                        e.at = at.clone();
                    }
                    compared_ops.insert(oi);
                    match bound(op, bits) {
                        None => acc.failures.push(format!(
                            "{at}: no bound for {name} at {bits} bits in K_TABLE \
                             (derive one from the kernel; measured {d} steps)"
                        )),
                        Some(b) if d > b.k => acc.failures.push(format!(
                            "{at} sample {s}: {d} steps from the float op on LiteRT's \
                             inputs, bound {} ({})",
                            b.k, b.why
                        )),
                        _ => {}
                    }
                }
            }
            match Value::from_array(&theirs) {
                Some(r) => Flow::Replace(r),
                None => Flow::Continue,
            }
        };
        it.run_observed(&ins, &mut obs)
            .unwrap_or_else(|e| panic!("{label}: interpreter: {e}"))
            .expect("not stopped");
    }
    acc.ops_compared += compared_ops.len();
}
