//! Which tensor of the float model is compared with which tensor of the quantized one,
//! and how their values become comparable numbers.
//!
//! * **Outputs** (subgraph 0) are matched by position; when both models have a
//!   SignatureDef for subgraph 0 whose output names are the same set, by signature output
//!   name instead. Both models must have the same number of inputs and outputs, with the
//!   same shapes (a dynamic dimension matches any size) and comparable kinds (below);
//!   anything else is an error naming both sides.
//! * **Intermediate tensors** (subgraph 0) are matched by tensor name. Only activations
//!   are candidates: tensors produced by an operator of subgraph 0 (constants and model
//!   inputs are not), not variable, with a non-empty name that occurs once in their
//!   model, of a type both runtimes can hand out (float32, int8, uint8, int16, int32,
//!   int64, bool). A pair also needs the same element count and comparable kinds. So the
//!   QUANTIZE/DEQUANTIZE outputs and `/dequantize` weights a quantizer adds, and float
//!   constants that were folded or renamed, are left out by construction.
//! * **Kinds**: a tensor is *real* when it is float (float32/float16/float64) or int8,
//!   uint8 or int16 with quantization parameters (per tensor or per axis), which are
//!   dequantized as `(q − zero_point) · scale` in `f64` before any metric; every other
//!   tensor (argmax indices, booleans, integers without parameters) is *exact* and
//!   compared by agreement rate. A real tensor is never paired with an exact one.
//! * **Class scores**: a real output whose float-model shape is `[1, C]` (batch
//!   dimension 1 or dynamic) with `C ≥ 2` also gets top-1 agreement.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::fb::{self, TensorType};
use crate::interp::Value;
use crate::ir::{Model, QuantParams, Subgraph, Tensor};

/// How the values of a pair are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Real numbers (float, or dequantized integers): SQNR, MSE, max abs, cosine.
    Real,
    /// Compared for equality: agreement rate.
    Exact,
}

/// One side of a pair: a tensor of subgraph 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// Tensor index in subgraph 0.
    pub tensor: usize,
    pub name: String,
    pub dtype: TensorType,
    /// Shape (the shape signature when there is one: `-1` = dynamic).
    pub shape: Vec<i64>,
    /// Parameters the values are dequantized with (real integer tensors only).
    pub quant: Option<QuantParams>,
}

impl Side {
    fn new(sg: &Subgraph, t: usize) -> Option<Side> {
        let tensor = sg.tensors.get(t)?;
        Some(Side {
            tensor: t,
            name: tensor.name.clone(),
            dtype: tensor.dtype,
            shape: shape_of(tensor),
            quant: dequant_params(tensor).cloned(),
        })
    }

    /// Values as real numbers: floats as they are, quantized integers dequantized.
    /// `None` when the value is of another type or the parameters do not fit its shape.
    pub fn real_values(&self, v: &Value) -> Option<Vec<f64>> {
        use crate::interp::Data;
        match (&v.data, &self.quant) {
            (Data::F32(_) | Data::F16(_) | Data::F64(_), _) => Some(v.data.to_f64_vec()),
            (Data::I8(_) | Data::U8(_) | Data::I16(_), Some(q)) => dequantize(v, q),
            _ => None,
        }
    }

    /// Values as numbers for an exact comparison.
    pub fn exact_values(&self, v: &Value) -> Vec<f64> {
        v.data.to_f64_vec()
    }

    fn kind(&self) -> Kind {
        kind_of(self.dtype, self.quant.is_some())
    }
}

/// Why two tensors are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// Outputs: by position or signature name.
    Output,
    /// Intermediates: by tensor name.
    Name,
    /// A model input of the quantized model and the float model's input at the same
    /// position (used only to attribute error, see [`TensorMatch::aliases`]).
    Input,
    /// The output of a QUANTIZE/DEQUANTIZE of the quantized model (a conversion) and
    /// the float counterpart of its input (used only to attribute error).
    Conversion,
}

/// A float-model tensor and the quantized-model tensor it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub float: Side,
    pub quant: Side,
    pub kind: Kind,
    pub by: MatchedBy,
    /// For outputs: the position in each model's output list.
    pub output: Option<(usize, usize)>,
    /// Number of classes when the output looks like class scores.
    pub classes: Option<usize>,
    /// The operator of the quantized model producing the tensor: index and name.
    pub op: Option<(usize, String)>,
}

/// Types whose values both runtimes hand out.
fn readable(t: TensorType) -> bool {
    matches!(
        t,
        TensorType::Float32
            | TensorType::Int8
            | TensorType::Uint8
            | TensorType::Int16
            | TensorType::Int32
            | TensorType::Int64
            | TensorType::Bool
    )
}

fn is_float(t: TensorType) -> bool {
    matches!(
        t,
        TensorType::Float32 | TensorType::Float16 | TensorType::Float64
    )
}

/// The parameters a tensor's integer values are dequantized with, if it holds
/// quantized reals (int8/uint8/int16 with at least one scale).
fn dequant_params(t: &Tensor) -> Option<&QuantParams> {
    t.quantized().filter(|_| {
        matches!(
            t.dtype,
            TensorType::Int8 | TensorType::Uint8 | TensorType::Int16
        )
    })
}

fn kind_of(t: TensorType, quantized: bool) -> Kind {
    if is_float(t) || quantized {
        Kind::Real
    } else {
        Kind::Exact
    }
}

fn shape_of(t: &Tensor) -> Vec<i64> {
    match &t.shape_signature {
        Some(s) if s.len() == t.shape.len() => s.iter().map(|&d| d as i64).collect(),
        _ => t.shape.iter().map(|&d| d as i64).collect(),
    }
}

fn shape_text(s: &[i64]) -> String {
    let d: Vec<String> = s
        .iter()
        .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", d.join(","))
}

/// Same rank, and every dimension equal unless one of them is dynamic.
fn shapes_compatible(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| x < 0 || y < 0 || x == y)
}

/// `(q − zero_point) · scale` in `f64`, per tensor or along the quantized axis.
fn dequantize(v: &Value, q: &QuantParams) -> Option<Vec<f64>> {
    let ints = v.data.to_i64_vec()?;
    let (inner, channels) = if q.scale.len() == 1 {
        (1, 1)
    } else {
        let axis = usize::try_from(q.quantized_dimension).ok()?;
        let channels = *v.shape.get(axis)?;
        if channels != q.scale.len() {
            return None;
        }
        (
            v.shape[axis + 1..].iter().product::<usize>().max(1),
            channels,
        )
    };
    Some(
        ints.iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = (i / inner) % channels;
                let z = q.zero_point.get(c).copied().unwrap_or(0);
                (x - z) as f64 * q.scale[c] as f64
            })
            .collect(),
    )
}

fn subgraph0<'a>(m: &'a Model, which: &str) -> Result<&'a Subgraph> {
    m.subgraphs
        .first()
        .ok_or_else(|| Error::Data(format!("the {which} model has no subgraphs")))
}

fn index(t: i32) -> usize {
    usize::try_from(t).unwrap_or(usize::MAX)
}

/// Output names of the SignatureDef of subgraph 0, by output position; `None` without
/// one or when an output has no name there.
fn signature_names(m: &Model, sg: &Subgraph) -> Option<Vec<String>> {
    let sig = m.signature_defs.iter().find(|s| s.subgraph_index == 0)?;
    sg.outputs
        .iter()
        .map(|&t| {
            sig.outputs
                .iter()
                .find(|o| o.tensor_index as i64 == t as i64)
                .and_then(|o| o.name.clone())
        })
        .collect()
}

/// `"cnn.tflite"`-style description for messages.
fn describe(m: &Model, which: &str) -> String {
    match &m.source {
        Some(s) => format!("the {which} model {}", s.path.display()),
        None => format!("the {which} model"),
    }
}

/// Pairs the outputs of both models (see the module documentation); every mismatch is
/// an [`Error::Data`] naming both sides.
pub fn match_outputs(float: &Model, quant: &Model) -> Result<Vec<Pair>> {
    let (fs, qs) = (subgraph0(float, "float")?, subgraph0(quant, "quantized")?);
    let (fd, qd) = (describe(float, "float"), describe(quant, "quantized"));
    let mismatch = |what: String| Error::Data(format!("the models do not match: {what}"));
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if fs.inputs.len() != qs.inputs.len() {
        return Err(mismatch(format!(
            "{fd} has {}, {qd} has {}",
            count(fs.inputs.len(), "input"),
            count(qs.inputs.len(), "input")
        )));
    }
    for (i, (&a, &b)) in fs.inputs.iter().zip(&qs.inputs).enumerate() {
        let (Some(a), Some(b)) = (Side::new(fs, index(a)), Side::new(qs, index(b))) else {
            return Err(mismatch(format!("input {i} refers to no tensor")));
        };
        if !shapes_compatible(&a.shape, &b.shape) {
            return Err(mismatch(format!(
                "input {i} is {} {:?} in {fd} but {} {:?} in {qd}",
                shape_text(&a.shape),
                a.name,
                shape_text(&b.shape),
                b.name
            )));
        }
    }
    if fs.outputs.len() != qs.outputs.len() {
        return Err(mismatch(format!(
            "{fd} has {}, {qd} has {}",
            count(fs.outputs.len(), "output"),
            count(qs.outputs.len(), "output")
        )));
    }
    // Position in the quantized model for each float output.
    let mut order: Vec<usize> = (0..fs.outputs.len()).collect();
    if let (Some(fnames), Some(qnames)) = (signature_names(float, fs), signature_names(quant, qs)) {
        let mut a = fnames.clone();
        let mut b = qnames.clone();
        a.sort();
        b.sort();
        a.dedup();
        if a == b && a.len() == fnames.len() {
            order = fnames
                .iter()
                .map(|n| qnames.iter().position(|m| m == n).unwrap_or(0))
                .collect();
        }
    }
    let qprod = qs.producers();
    let mut pairs = Vec::with_capacity(order.len());
    for (i, &j) in order.iter().enumerate() {
        let (Some(f), Some(q)) = (
            Side::new(fs, index(fs.outputs[i])),
            Side::new(qs, index(qs.outputs[j])),
        ) else {
            return Err(mismatch(format!("output {i} refers to no tensor")));
        };
        let at = if i == j {
            format!("output {i}")
        } else {
            format!("output {i} (output {j} of the quantized model, same signature name)")
        };
        if !shapes_compatible(&f.shape, &q.shape) {
            return Err(mismatch(format!(
                "{at} is {} {:?} in {fd} but {} {:?} in {qd}",
                shape_text(&f.shape),
                f.name,
                shape_text(&q.shape),
                q.name
            )));
        }
        if f.kind() != q.kind() {
            let what = |s: &Side| match s.kind() {
                Kind::Real => format!("real-valued ({})", fb::dtype_name(s.dtype)),
                Kind::Exact => format!("{} without quantization", fb::dtype_name(s.dtype)),
            };
            return Err(mismatch(format!(
                "{at} {:?} is {} in {fd} but {} in {qd}",
                f.name,
                what(&f),
                what(&q)
            )));
        }
        let classes = match f.shape.as_slice() {
            [b, c] if f.kind() == Kind::Real && (*b == 1 || *b < 0) && *c >= 2 => Some(*c as usize),
            _ => None,
        };
        let op = producer(quant, qs, &qprod, q.tensor);
        pairs.push(Pair {
            kind: f.kind(),
            by: MatchedBy::Output,
            float: f,
            quant: q,
            output: Some((i, j)),
            classes,
            op,
        });
    }
    Ok(pairs)
}

fn producer(m: &Model, sg: &Subgraph, prod: &[Option<usize>], t: usize) -> Option<(usize, String)> {
    let oi = prod.get(t).copied().flatten()?;
    Some((oi, m.op_display_name(&sg.operators[oi])))
}

/// Activation tensors of subgraph 0 that may be compared, by name (names occurring more
/// than once are left out).
fn candidates(m: &Model, sg: &Subgraph) -> HashMap<String, usize> {
    let prod = sg.producers();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in &sg.tensors {
        *count.entry(t.name.as_str()).or_default() += 1;
    }
    sg.tensors
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            prod[*i].is_some()
                && !t.is_variable
                && !t.name.is_empty()
                && count.get(t.name.as_str()) == Some(&1)
                && readable(t.dtype)
                && !m.is_constant(t)
                && t.num_elements().is_some()
        })
        .map(|(i, t)| (t.name.clone(), i))
        .collect()
}

/// The intermediate tensors present in both models.
#[derive(Debug, Clone)]
pub struct TensorMatch {
    /// Pairs, in the execution order of the quantized model's producers.
    pub pairs: Vec<Pair>,
    /// Pairs compared only to attribute error ([`MatchedBy::Input`],
    /// [`MatchedBy::Conversion`]); not reported.
    pub aliases: Vec<Pair>,
    /// Activation tensors of the quantized model that were candidates.
    pub quant_candidates: usize,
}

/// Pairs the intermediate tensors of both models (see the module documentation).
pub fn match_tensors(float: &Model, quant: &Model) -> Result<TensorMatch> {
    let (fs, qs) = (subgraph0(float, "float")?, subgraph0(quant, "quantized")?);
    let fc = candidates(float, fs);
    let qc = candidates(quant, qs);
    let qprod = qs.producers();
    let mut pairs = Vec::new();
    for (name, &qt) in &qc {
        let Some(&ft) = fc.get(name) else { continue };
        let (Some(f), Some(q)) = (Side::new(fs, ft), Side::new(qs, qt)) else {
            continue;
        };
        let same_count = fs.tensors[ft].num_elements() == qs.tensors[qt].num_elements();
        if !same_count || f.kind() != q.kind() {
            log::debug!(
                "tensor {name:?}: {} {} vs {} {}: not compared",
                fb::dtype_name(f.dtype),
                shape_text(&f.shape),
                fb::dtype_name(q.dtype),
                shape_text(&q.shape)
            );
            continue;
        }
        pairs.push(Pair {
            kind: f.kind(),
            by: MatchedBy::Name,
            float: f,
            quant: q,
            output: None,
            classes: None,
            op: producer(quant, qs, &qprod, qt),
        });
    }
    pairs.sort_by_key(|p| (p.op.as_ref().map(|o| o.0), p.quant.tensor));
    let aliases = aliases(float, quant, &pairs)?;
    Ok(TensorMatch {
        pairs,
        aliases,
        quant_candidates: qc.len(),
    })
}

/// Real tensors of the quantized model that have no same-named float counterpart but
/// stand for a float tensor: its inputs (by position) and the outputs of its
/// QUANTIZE/DEQUANTIZE ops (the counterpart of the converted input). They tell how much
/// error a layer's inputs already carry (see `Report`'s `local_sqnr_db`).
fn aliases(float: &Model, quant: &Model, pairs: &[Pair]) -> Result<Vec<Pair>> {
    use crate::fb::BuiltinOperator as B;
    let (fs, qs) = (subgraph0(float, "float")?, subgraph0(quant, "quantized")?);
    // Float counterpart of each quantized-model tensor known so far.
    let mut twin: HashMap<usize, usize> = pairs
        .iter()
        .map(|p| (p.quant.tensor, p.float.tensor))
        .collect();
    let mut out = Vec::new();
    let add = |qt: usize, ft: usize, by: MatchedBy, out: &mut Vec<Pair>| {
        let (Some(f), Some(q)) = (Side::new(fs, ft), Side::new(qs, qt)) else {
            return false;
        };
        let ok = f.kind() == Kind::Real
            && q.kind() == Kind::Real
            && readable(q.dtype)
            && fs.tensors[ft].num_elements() == qs.tensors[qt].num_elements();
        if ok {
            out.push(Pair {
                float: f,
                quant: q,
                kind: Kind::Real,
                by,
                output: None,
                classes: None,
                op: None,
            });
        }
        ok
    };
    for (&qi, &fi) in qs.inputs.iter().zip(&fs.inputs) {
        let (qi, fi) = (index(qi), index(fi));
        if !twin.contains_key(&qi) && add(qi, fi, MatchedBy::Input, &mut out) {
            twin.insert(qi, fi);
        }
    }
    // Conversions may be chained (QUANTIZE → QUANTIZE); operators are in execution
    // order in every converter's output, a second sweep covers the rest.
    for _ in 0..2 {
        for op in &qs.operators {
            if !matches!(quant.builtin(op), B::Quantize | B::Dequantize) {
                continue;
            }
            let (Some(&i), Some(&o)) = (op.inputs.first(), op.outputs.first()) else {
                continue;
            };
            let (i, o) = (index(i), index(o));
            if twin.contains_key(&o) || qs.tensors.get(i).is_none_or(|t| quant.is_constant(t)) {
                continue;
            }
            if let Some(&ft) = twin.get(&i)
                && add(o, ft, MatchedBy::Conversion, &mut out)
            {
                twin.insert(o, ft);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::Data;

    #[test]
    fn dequantizes_per_tensor_and_per_axis_in_f64() {
        let v = Value::new(vec![2, 2], Data::I8(vec![-128, 1, 3, 127])).unwrap();
        let per_tensor = QuantParams::per_tensor(0.1, -128);
        let got = dequantize(&v, &per_tensor).unwrap();
        let s = 0.1f32 as f64;
        assert_eq!(got, vec![0.0, 129.0 * s, 131.0 * s, 255.0 * s]);
        let per_axis = QuantParams::per_axis(vec![1.0, 0.5], vec![0, 1], 1);
        assert_eq!(
            dequantize(&v, &per_axis).unwrap(),
            vec![-128.0, 0.0, 3.0, 63.0]
        );
        let wrong = QuantParams::per_axis(vec![1.0, 0.5, 2.0], vec![0, 0, 0], 1);
        assert_eq!(dequantize(&v, &wrong), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of(TensorType::Float32, false), Kind::Real);
        assert_eq!(kind_of(TensorType::Int8, true), Kind::Real);
        assert_eq!(kind_of(TensorType::Int64, false), Kind::Exact);
        assert_eq!(kind_of(TensorType::Bool, false), Kind::Exact);
        assert!(shapes_compatible(&[-1, 10], &[1, 10]));
        assert!(!shapes_compatible(&[1, 10], &[1, 12]));
        assert!(!shapes_compatible(&[10], &[1, 10]));
    }
}
