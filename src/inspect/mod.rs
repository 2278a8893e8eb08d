//! What is inside a model, for people (text tables) and programs (JSON).
//!
//! [`Report::new`] gathers everything from the IR once; [`Report::render_summary`],
//! [`Report::render_tensors`] and the serde `Serialize` impl (JSON) only format it. JSON
//! key order is the struct field order, maps are sorted: the output is stable. Nothing
//! here reads buffer data except metadata values, so inspecting a 300 MB model touches
//! almost none of its pages.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::fb;
use crate::ir::{Model, Tensor};

/// Everything `inspect` shows.
#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub description: Option<String>,
    pub metadata: Vec<MetadataInfo>,
    pub signatures: Vec<SignatureInfo>,
    pub operator_codes: Vec<OpCodeInfo>,
    pub subgraphs: Vec<SubgraphInfo>,
    pub buffers: usize,
    /// Bytes of constant tensor data per dtype name. Data stored once count once, however
    /// many tensors or buffers refer to them: the sum never exceeds the file.
    pub weight_bytes_by_dtype: BTreeMap<String, u64>,
    pub quantized_tensors: QuantCounts,
    /// Problems that do not stop reading the model but will stop other tools (empty
    /// when there are none).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct MetadataInfo {
    pub name: Option<String>,
    pub buffer: u32,
    pub bytes: usize,
    /// The value as text when it is short printable UTF-8 (e.g. `min_runtime_version`).
    pub text: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SignatureInfo {
    pub key: Option<String>,
    pub subgraph: u32,
    pub inputs: Vec<SignatureTensor>,
    pub outputs: Vec<SignatureTensor>,
}

#[derive(Debug, Serialize)]
pub struct SignatureTensor {
    pub name: Option<String>,
    pub tensor: u32,
}

#[derive(Debug, Serialize)]
pub struct OpCodeInfo {
    pub op: String,
    pub custom_code: Option<String>,
    pub version: i32,
}

#[derive(Debug, Serialize)]
pub struct SubgraphInfo {
    pub index: usize,
    pub name: Option<String>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    /// Operator name → count, sorted by name.
    pub op_histogram: BTreeMap<String, usize>,
    pub operators: Vec<OperatorInfo>,
    pub tensors: Vec<TensorInfo>,
}

#[derive(Debug, Serialize)]
pub struct OperatorInfo {
    pub index: usize,
    pub op: String,
    pub version: i32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

#[derive(Debug, Serialize)]
pub struct TensorInfo {
    pub index: usize,
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i32>,
    pub shape_signature: Option<Vec<i32>>,
    pub buffer: u32,
    /// Bytes of constant data (0 for activations).
    pub data_bytes: usize,
    pub is_variable: bool,
    pub sparse: bool,
    pub quantization: Option<QuantInfo>,
    /// `"<op index> <OP_NAME>"` of the producing operator, if any.
    pub producer: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QuantInfo {
    /// `"per-tensor"`, `"per-axis"`, `"blockwise"`, `"custom"`, or `"range-only"` (min/max
    /// without scales, as fake-quant exporters write).
    pub kind: String,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub quantized_dimension: i32,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
    /// Block size for blockwise quantization.
    pub block_size: Option<i32>,
}

#[derive(Debug, Default, Serialize)]
pub struct QuantCounts {
    pub per_tensor: usize,
    pub per_axis: usize,
    pub other: usize,
}

impl Report {
    pub fn new(model: &Model) -> Self {
        let metadata = model
            .metadata
            .iter()
            .map(|m| {
                let data = model
                    .buffers
                    .get(m.buffer as usize)
                    .map_or(&[][..], |b| &b.data[..]);
                MetadataInfo {
                    name: m.name.clone(),
                    buffer: m.buffer,
                    bytes: data.len(),
                    text: printable(data),
                }
            })
            .collect();
        let signatures = model
            .signature_defs
            .iter()
            .map(|s| {
                let conv = |v: &[crate::ir::TensorMap]| {
                    v.iter()
                        .map(|m| SignatureTensor {
                            name: m.name.clone(),
                            tensor: m.tensor_index,
                        })
                        .collect()
                };
                SignatureInfo {
                    key: s.signature_key.clone(),
                    subgraph: s.subgraph_index,
                    inputs: conv(&s.inputs),
                    outputs: conv(&s.outputs),
                }
            })
            .collect();
        let operator_codes = model
            .operator_codes
            .iter()
            .map(|c| OpCodeInfo {
                op: fb::op_name(c.builtin).to_string(),
                custom_code: c.custom_code.clone(),
                version: c.version,
            })
            .collect();

        let mut weight_bytes_by_dtype = BTreeMap::new();
        let mut quantized_tensors = QuantCounts::default();
        // Data already counted, by their place in memory (the file's map): buffers that
        // share a tensor, and distinct buffers pointing at the same bytes.
        let mut seen_data = std::collections::HashSet::new();
        let mut subgraphs = Vec::new();
        for (si, sg) in model.subgraphs.iter().enumerate() {
            let producers = sg.producers();
            let mut op_histogram = BTreeMap::new();
            let operators = sg
                .operators
                .iter()
                .enumerate()
                .map(|(oi, op)| {
                    let name = model.op_display_name(op);
                    *op_histogram.entry(name.clone()).or_insert(0) += 1;
                    OperatorInfo {
                        index: oi,
                        op: name,
                        version: model.code(op).version,
                        inputs: op.inputs.clone(),
                        outputs: op.outputs.clone(),
                    }
                })
                .collect();
            let tensors = sg
                .tensors
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    let data = model.tensor_data(t);
                    let data_bytes = data.len();
                    if data_bytes > 0 && seen_data.insert((data.as_ptr() as usize, data_bytes)) {
                        *weight_bytes_by_dtype
                            .entry(fb::dtype_name(t.dtype).to_string())
                            .or_insert(0) += data_bytes as u64;
                    }
                    let quantization = quant_info(t);
                    match quantization.as_ref().map(|q| q.kind.as_str()) {
                        Some("per-tensor") => quantized_tensors.per_tensor += 1,
                        Some("per-axis") => quantized_tensors.per_axis += 1,
                        Some("range-only") | None => {}
                        Some(_) => quantized_tensors.other += 1,
                    }
                    TensorInfo {
                        index: ti,
                        name: t.name.clone(),
                        dtype: fb::dtype_name(t.dtype).to_string(),
                        shape: t.shape.clone(),
                        shape_signature: t.shape_signature.clone(),
                        buffer: t.buffer,
                        data_bytes,
                        is_variable: t.is_variable,
                        sparse: t.sparsity.is_some(),
                        quantization,
                        producer: producers[ti]
                            .map(|oi| format!("{oi} {}", model.op_display_name(&sg.operators[oi]))),
                    }
                })
                .collect();
            subgraphs.push(SubgraphInfo {
                index: si,
                name: sg.name.clone(),
                inputs: sg.inputs.clone(),
                outputs: sg.outputs.clone(),
                op_histogram,
                operators,
                tensors,
            });
        }
        let mut warnings = Vec::new();
        if let Some(src) = &model.source
            && src.flatbuffer_end > crate::fb::FLATBUFFER_MAX_BYTES
        {
            warnings.push(format!(
                "the flatbuffer part of this file (tables and inline data) ends at byte {}, \
                 beyond the {} bytes a flatbuffer can hold: LiteRT refuses this file (\"not a \
                 valid Flatbuffer buffer\"); rewrite it with tensor data after the flatbuffer \
                 (tflquant convert --buffer-layout offset)",
                src.flatbuffer_end,
                crate::fb::FLATBUFFER_MAX_BYTES
            ));
        }
        Report {
            version: model.version,
            description: model.description.clone(),
            metadata,
            signatures,
            operator_codes,
            subgraphs,
            buffers: model.buffers.len(),
            weight_bytes_by_dtype,
            quantized_tensors,
            warnings,
        }
    }

    /// The human summary (`tflquant inspect MODEL`).
    pub fn render_summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "schema version  {}", self.version);
        if let Some(d) = &self.description {
            let _ = writeln!(s, "description     {d}");
        }
        for m in &self.metadata {
            let name = m.name.as_deref().unwrap_or("(unnamed)");
            match &m.text {
                Some(t) => {
                    let _ = writeln!(s, "metadata        {name} = {t}");
                }
                None => {
                    let _ = writeln!(
                        s,
                        "metadata        {name} ({})",
                        human_bytes(m.bytes as u64)
                    );
                }
            }
        }
        if self.signatures.is_empty() {
            let _ = writeln!(s, "signatures      none");
        }
        for sig in &self.signatures {
            let list = |v: &[SignatureTensor]| {
                v.iter()
                    .map(|t| format!("{}→t{}", t.name.as_deref().unwrap_or("?"), t.tensor))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                s,
                "signature       {:?} (subgraph {}): inputs {}; outputs {}",
                sig.key.as_deref().unwrap_or(""),
                sig.subgraph,
                list(&sig.inputs),
                list(&sig.outputs)
            );
        }
        for sg in &self.subgraphs {
            let _ = writeln!(
                s,
                "\nsubgraph {}{}: {} tensors, {} operators",
                sg.index,
                sg.name
                    .as_deref()
                    .map(|n| format!(" {n:?}"))
                    .unwrap_or_default(),
                sg.tensors.len(),
                sg.operators.len()
            );
            for (kind, list) in [("input ", &sg.inputs), ("output", &sg.outputs)] {
                for &t in list {
                    if let Some(t) = sg.tensors.get(t as usize) {
                        let _ = writeln!(s, "  {kind} {}", tensor_line(t));
                    }
                }
            }
            let ops = sg
                .op_histogram
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "  ops    {}",
                if ops.is_empty() { "none".into() } else { ops }
            );
        }
        let w = self
            .weight_bytes_by_dtype
            .iter()
            .map(|(k, v)| format!("{k} {}", human_bytes(*v)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "\nweights         {}",
            if w.is_empty() { "none".into() } else { w }
        );
        let q = &self.quantized_tensors;
        let _ = writeln!(
            s,
            "quantized       {} tensors per-tensor, {} per-axis{}",
            q.per_tensor,
            q.per_axis,
            if q.other > 0 {
                format!(", {} other (blockwise/custom)", q.other)
            } else {
                String::new()
            }
        );
        for w in &self.warnings {
            let _ = writeln!(s, "\nwarning: {w}");
        }
        s
    }

    /// One row per tensor (`tflquant inspect MODEL --tensors`).
    pub fn render_tensors(&self) -> String {
        let mut s = String::new();
        for sg in &self.subgraphs {
            let _ = writeln!(s, "subgraph {}", sg.index);
            let rows: Vec<[String; 7]> = sg
                .tensors
                .iter()
                .map(|t| {
                    [
                        t.index.to_string(),
                        shorten(&t.name, NAME_WIDTH),
                        t.dtype.clone(),
                        shape_str(&t.shape, t.shape_signature.as_deref()),
                        if t.data_bytes > 0 {
                            human_bytes(t.data_bytes as u64)
                        } else {
                            "-".into()
                        },
                        t.quantization.as_ref().map_or("-".into(), quant_str),
                        t.producer.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            let header = [
                "#",
                "name",
                "dtype",
                "shape",
                "bytes",
                "quantization",
                "producer",
            ];
            let mut widths = header.map(|h| h.chars().count());
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let mut l = String::new();
                for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                    if i + 1 == cells.len() {
                        l.push_str(c);
                    } else {
                        let pad = w - c.chars().count();
                        l.push_str(c);
                        l.push_str(&" ".repeat(pad + 2));
                    }
                }
                l.trim_end().to_string()
            };
            let _ = writeln!(s, "{}", line(&header.map(String::from)));
            for r in &rows {
                let _ = writeln!(s, "{}", line(r));
            }
        }
        s
    }
}

/// Longest tensor name shown in the table (TF joins fused op names with `;`, which can
/// run to hundreds of characters); `--json` has the full names.
const NAME_WIDTH: usize = 56;

/// `s` cut to `max` characters, ending in `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn quant_info(t: &Tensor) -> Option<QuantInfo> {
    let q = t.quant.as_ref().filter(|q| !q.is_empty())?;
    let block_size = match &q.details {
        Some(fb::QuantizationDetails::BlockwiseQuantization(b)) => Some(b.block_size),
        _ => None,
    };
    let kind = if block_size.is_some() {
        "blockwise"
    } else if q.details.is_some() {
        "custom"
    } else if q.scale.len() > 1 {
        "per-axis"
    } else if q.scale.len() == 1 {
        "per-tensor"
    } else {
        "range-only"
    };
    Some(QuantInfo {
        kind: kind.into(),
        scale: q.scale.clone(),
        zero_point: q.zero_point.clone(),
        quantized_dimension: q.quantized_dimension,
        min: q.min.clone(),
        max: q.max.clone(),
        block_size,
    })
}

fn quant_str(q: &QuantInfo) -> String {
    match q.kind.as_str() {
        "per-tensor" => format!(
            "scale {} zp {}",
            fmt_f32(q.scale[0]),
            q.zero_point.first().copied().unwrap_or(0)
        ),
        "per-axis" => {
            let (lo, hi) = q
                .scale
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| {
                    (lo.min(s), hi.max(s))
                });
            let zps: std::collections::BTreeSet<i64> = q.zero_point.iter().copied().collect();
            let zp = if zps.len() == 1 {
                zps.iter().next().map(|z| z.to_string()).unwrap_or_default()
            } else {
                "mixed".into()
            };
            format!(
                "axis {} ×{} scale {}..{} zp {zp}",
                q.quantized_dimension,
                q.scale.len(),
                fmt_f32(lo),
                fmt_f32(hi)
            )
        }
        "blockwise" => format!("blockwise, block {}", q.block_size.unwrap_or(0)),
        "range-only" => format!(
            "range [{}, {}]",
            q.min.first().map_or("?".into(), |v| fmt_f32(*v)),
            q.max.first().map_or("?".into(), |v| fmt_f32(*v))
        ),
        other => other.to_string(),
    }
}

fn tensor_line(t: &TensorInfo) -> String {
    let mut l = format!(
        "t{} {:?} {} {}",
        t.index,
        t.name,
        t.dtype,
        shape_str(&t.shape, t.shape_signature.as_deref())
    );
    if let Some(q) = &t.quantization {
        let _ = write!(l, " ({})", quant_str(q));
    }
    l
}

/// `[1,8,8,1]`, with `-1` dimensions of the signature shown as `?`.
fn shape_str(shape: &[i32], sig: Option<&[i32]>) -> String {
    let dims: Vec<String> = shape
        .iter()
        .enumerate()
        .map(|(i, d)| match sig.and_then(|s| s.get(i)) {
            Some(-1) => "?".to_string(),
            _ => d.to_string(),
        })
        .collect();
    format!("[{}]", dims.join(","))
}

fn fmt_f32(v: f32) -> String {
    format!("{v:.6e}")
}

pub use crate::units::human_bytes;

/// The data as text if it is short, valid UTF-8 without control characters.
fn printable(data: &[u8]) -> Option<String> {
    if data.is_empty() || data.len() > 256 {
        return None;
    }
    let s = std::str::from_utf8(data).ok()?;
    let s = s.trim_end_matches('\0');
    (!s.is_empty() && !s.chars().any(|c| c.is_control())).then(|| s.to_string())
}
