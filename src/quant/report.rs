//! What a quantization run did, for `--report FILE.json` and the one-line summary.

use serde::Serialize;

/// The report of one `quantize` run. Serialised as JSON with this field order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    /// Size of the model before and after (bytes of the serialised file).
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// Every tensor whose type changed.
    pub quantized: Vec<TensorChange>,
    /// Every real-valued float weight left float, with the reason.
    pub left_float: Vec<LeftFloat>,
    /// Full-integer modes: every operator's fate (quantized, or float with the reason).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<super::integer::OpFate>,
    /// Full-integer modes: every integer tensor's parameters and the range they came from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<super::integer::TensorParams>,
    /// Full-integer modes: tensors holding sentinels (±inf, ±FLT_MAX, far-out mask
    /// values) that were kept out of their range and saturate to the integer min/max.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<SentinelUse>,
    /// Everything else worth knowing (folded fp16/sparse constants, already quantized
    /// tensors, inserted operators).
    pub notes: Vec<String>,
}

/// One tensor the run changed.
#[derive(Debug, Serialize)]
pub struct TensorChange {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    /// Operators that read it, e.g. `"3 FULLY_CONNECTED"`.
    pub consumers: Vec<String>,
    pub old_dtype: String,
    pub new_dtype: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// `per-tensor`, `per-channel`, `blockwise`, or `cast` (float16).
    pub granularity: String,
    pub axis: Option<i32>,
    pub block_size: Option<usize>,
    pub scale_min: Option<f32>,
    pub scale_max: Option<f32>,
    /// A DEQUANTIZE now produces the float tensor the consumers read.
    pub dequantize_inserted: bool,
}

/// A tensor whose sentinel values did not set its range (see `calib::observer`).
#[derive(Debug, Serialize)]
pub struct SentinelUse {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    /// `constant`, or `activation` (counts over all calibration samples).
    pub kind: String,
    /// Sentinels below the range (`-inf`, `-FLT_MAX`, `-1e9`) and above it.
    pub below: u64,
    pub above: u64,
    /// The range of the ordinary values, as widened by the quantizer.
    pub range: Option<(f32, f32)>,
}

/// A real-valued float weight that was not quantized.
#[derive(Debug, Serialize)]
pub struct LeftFloat {
    pub subgraph: usize,
    pub tensor: usize,
    pub name: String,
    pub consumers: Vec<String>,
    pub elements: u64,
    pub reason: String,
}

impl Report {
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Operators that still compute in float: in full-integer modes those with a float
    /// fate; otherwise the consumers of weights left float, counted once each.
    pub fn ops_left_float(&self) -> usize {
        if !self.ops.is_empty() {
            return self
                .ops
                .iter()
                .filter(|o| matches!(o.fate, super::integer::Fate::Float { .. }))
                .count();
        }
        let mut ops: Vec<(usize, &str)> = self
            .left_float
            .iter()
            .flat_map(|l| l.consumers.iter().map(move |c| (l.subgraph, c.as_str())))
            .collect();
        ops.sort();
        ops.dedup();
        ops.len()
    }

    /// `dynamic: 708.6 KiB → 190.2 KiB (3.73×), 3 tensors quantized, 2 weights left
    /// float, 1 op left float`.
    pub fn summary(&self) -> String {
        let ratio = if self.output_bytes > 0 {
            self.input_bytes as f64 / self.output_bytes as f64
        } else {
            0.0
        };
        let size = if ratio >= 1.0 {
            format!("{ratio:.2}× smaller")
        } else {
            format!("{:.2}× larger", 1.0 / ratio.max(1e-9))
        };
        format!(
            "{}: {} → {} ({size}), {} tensors quantized, {} weights left float, {} ops left float",
            self.mode,
            crate::inspect::human_bytes(self.input_bytes),
            crate::inspect::human_bytes(self.output_bytes),
            self.quantized.len().max(self.tensors.len()),
            self.left_float.len(),
            self.ops_left_float()
        )
    }
}
