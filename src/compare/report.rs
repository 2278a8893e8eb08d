//! The result of a comparison: one [`Entry`] per output (in output order) and, on
//! request, per intermediate tensor (worst first), rendered as text tables or JSON.
//!
//! JSON numbers that are not finite (SQNR of identical tensors is +∞) are `null`;
//! `identical` tells the cases apart. Metrics that do not apply to an entry (SQNR of
//! argmax indices, top-1 of a non-classifier) are `null` too.

use serde::Serialize;

use super::matching::{Kind, Pair};
use super::metrics::{Accumulator, Metrics};
use crate::fb;

/// The LiteRT runtime used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiteRtInfo {
    /// The `ai-edge-litert` release.
    pub version: String,
    pub library: String,
    /// CPU kernels the quantized model ran on (`XNNPACK`, `builtin`, `reference`).
    pub kernels: String,
}

/// The metrics of one compared tensor pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The tensor's name in the float model.
    pub name: String,
    /// Output position in the float model (outputs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<usize>,
    /// The tensor's name in the quantized model.
    pub quant_name: String,
    /// Tensor indices in subgraph 0 of each model.
    pub float_tensor: usize,
    pub quant_tensor: usize,
    /// The operator of the quantized model producing the tensor, and its index.
    pub op: Option<String>,
    pub op_index: Option<usize>,
    /// Shape in the float model (`-1` = dynamic).
    pub shape: Vec<i64>,
    pub float_dtype: String,
    pub quant_dtype: String,
    /// `"real"` (SQNR, MSE, max abs, cosine) or `"exact"` (agreement).
    pub compared_as: &'static str,
    /// Elements compared, over all samples.
    pub elements: u64,
    /// SQNR of the error added between the nearest compared tensors upstream and this
    /// one, in dB (see [`Entry::set_local`]); `null` when nothing was added (+∞) and
    /// for outputs.
    pub local_sqnr_db: Option<f64>,
    pub sqnr_db: Option<f64>,
    pub mse: Option<f64>,
    pub max_abs: Option<f64>,
    pub cosine: Option<f64>,
    /// Every element equal (for real tensors: SQNR is +∞).
    pub identical: bool,
    /// Top-1 agreement (class-score outputs only).
    pub top1: Option<f64>,
    /// Fraction of equal elements (exact comparisons only).
    pub agreement: Option<f64>,
    /// The metrics as computed (non-finite values kept).
    #[serde(skip)]
    pub metrics: Metrics,
    /// `local_sqnr_db` as computed (+∞ when nothing was added; `None` when unknown).
    #[serde(skip)]
    pub local: Option<f64>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

impl Entry {
    pub(super) fn new(p: &Pair, acc: &Accumulator) -> Entry {
        let m = acc.metrics();
        let real = p.kind == Kind::Real;
        let when_real = |x: f64| if real { finite(x) } else { None };
        Entry {
            name: p.float.name.clone(),
            output: p.output.map(|(i, _)| i),
            quant_name: p.quant.name.clone(),
            float_tensor: p.float.tensor,
            quant_tensor: p.quant.tensor,
            op: p.op.as_ref().map(|o| o.1.clone()),
            op_index: p.op.as_ref().map(|o| o.0),
            shape: p.float.shape.clone(),
            float_dtype: fb::dtype_name(p.float.dtype).to_string(),
            quant_dtype: fb::dtype_name(p.quant.dtype).to_string(),
            compared_as: if real { "real" } else { "exact" },
            elements: acc.n,
            sqnr_db: when_real(m.sqnr_db),
            mse: when_real(m.mse),
            max_abs: when_real(m.max_abs),
            cosine: when_real(m.cosine),
            identical: m.identical,
            top1: m.top1.filter(|_| real),
            agreement: (!real).then_some(m.agreement),
            local_sqnr_db: None,
            metrics: m,
            local: None,
        }
    }

    /// Sets the local SQNR from the noise ratio `ρ_in = Σ (r − t)² / Σ r²` the inputs
    /// already carry (the worst input): assuming the error of the inputs reaches this
    /// tensor with its relative power unchanged, the op(s) since added
    /// `ρ − ρ_in`, and `local_sqnr_db = −10·log10(ρ − ρ_in)`; +∞ when `ρ ≤ ρ_in`.
    /// With exact inputs it equals `sqnr_db`.
    pub fn set_local(&mut self, input_ratio: f64) {
        let added = self.metrics.noise_ratio - input_ratio;
        let local = if added.is_nan() {
            f64::NAN
        } else if added <= 0.0 {
            f64::INFINITY
        } else {
            -10.0 * added.log10()
        };
        self.local = Some(local);
        self.local_sqnr_db = finite(local);
    }

    fn is_real(&self) -> bool {
        self.compared_as == "real"
    }

    /// Sort key, lowest = worst: real tensors by local SQNR or SQNR (NaN counts as
    /// −∞), then exact tensors by agreement.
    fn badness(&self, by: SortKey) -> (u8, f64) {
        if self.is_real() {
            let s = match by {
                SortKey::Local => self.local.unwrap_or(self.metrics.sqnr_db),
                SortKey::Sqnr => self.metrics.sqnr_db,
            };
            (0, if s.is_nan() { f64::NEG_INFINITY } else { s })
        } else {
            (1, self.metrics.agreement)
        }
    }
}

/// What "worst first" means for the tensors list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Lowest local SQNR first: the tensor whose op(s) added the most error, which
    /// is where accuracy breaks (later tensors inherit the error and often show an
    /// even lower SQNR).
    #[default]
    Local,
    /// Lowest SQNR first: the accumulated error.
    Sqnr,
}

/// The result of a comparison (the JSON document of `tflquant compare --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Paths of the models.
    pub float: String,
    pub quant: String,
    /// `"reference"` or `"litert"`.
    pub runtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub litert: Option<LiteRtInfo>,
    pub samples: usize,
    /// One entry per output, in the float model's output order.
    pub outputs: Vec<Entry>,
    /// Activation tensors of the quantized model that could be matched by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant_activations: Option<usize>,
    /// Tensors present in both models and compared (before [`Report::keep_worst`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensors_compared: Option<usize>,
    /// Worst first (see [`SortKey`]; ties in the quantized model's operator order),
    /// exact tensors after the real ones by ascending agreement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<Entry>>,
    /// How `tensors` is sorted: `"local"` or `"sqnr"`.
    #[serde(serialize_with = "sort_key_name")]
    pub sorted_by: SortKey,
}

fn sort_key_name<S: serde::Serializer>(k: &SortKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.name())
}

impl SortKey {
    /// The command line's name.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Local => "local",
            SortKey::Sqnr => "sqnr",
        }
    }
}

impl Report {
    /// Sorts the tensors worst first by `by`.
    pub fn sort_tensors(&mut self, by: SortKey) {
        if let Some(t) = &mut self.tensors {
            t.sort_by(|a, b| {
                let (ka, kb) = (a.badness(by), b.badness(by));
                ka.0.cmp(&kb.0)
                    .then(ka.1.total_cmp(&kb.1))
                    .then(a.op_index.cmp(&b.op_index))
                    .then(a.quant_tensor.cmp(&b.quant_tensor))
            });
            self.tensors_compared = Some(t.len());
        }
        self.sorted_by = by;
    }

    /// Keeps the `n` worst tensors.
    pub fn keep_worst(&mut self, n: usize) {
        if let Some(t) = &mut self.tensors {
            t.truncate(n);
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// What ran both models, for people.
    pub fn runtime_text(&self) -> String {
        match &self.litert {
            Some(l) => format!(
                "litert: LiteRT {} ({} kernels), {}",
                l.version, l.kernels, l.library
            ),
            None => "reference: tflquant's interpreter; quantized ops simulated \
                     (dequantize, float kernel, requantize)"
                .to_string(),
        }
    }

    /// The outputs table.
    pub fn outputs_text(&self) -> String {
        let mut rows = vec![vec![
            "#".to_string(),
            "sqnr_db".into(),
            "mse".into(),
            "max_abs".into(),
            "cosine".into(),
            "top1".into(),
            "agree".into(),
            "name".into(),
        ]];
        for e in &self.outputs {
            let mut r = vec![e.output.unwrap_or(0).to_string()];
            r.extend(metric_cells(e));
            r.push(pct(e.top1));
            r.push(pct(e.agreement));
            r.push(e.name.clone());
            rows.push(r);
        }
        table(&rows, &[false, true, true, true, true, true, true, false])
    }

    /// The tensors table (empty without tensors).
    pub fn tensors_text(&self) -> String {
        let Some(tensors) = &self.tensors else {
            return String::new();
        };
        let mut rows = vec![vec![
            "local_db".to_string(),
            "sqnr_db".into(),
            "mse".into(),
            "max_abs".into(),
            "cosine".into(),
            "agree".into(),
            "op".into(),
            String::new(),
            "name".into(),
        ]];
        for e in tensors {
            let mut r = vec![e.local.map_or_else(|| "-".into(), db)];
            r.extend(metric_cells(e));
            r.push(pct(e.agreement));
            r.push(e.op_index.map_or_else(|| "-".into(), |i| i.to_string()));
            r.push(e.op.clone().unwrap_or_default());
            r.push(e.name.clone());
            rows.push(r);
        }
        table(
            &rows,
            &[true, true, true, true, true, true, true, false, false],
        )
    }

    /// The whole report as text: header, outputs, and tensors when compared.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "float    {}\nquant    {}\nruntime  {}\nsamples  {}\n\noutputs\n{}",
            self.float,
            self.quant,
            self.runtime_text(),
            self.samples,
            self.outputs_text()
        );
        if let Some(t) = &self.tensors {
            let total = self.tensors_compared.unwrap_or(t.len());
            let shown = if t.len() < total {
                format!("worst {} of {total}", t.len())
            } else {
                format!("{total}")
            };
            let of = self
                .quant_activations
                .map(|n| format!(" (of {n} activations of the quantized model)"))
                .unwrap_or_default();
            s.push_str(&format!(
                "\ntensors  {shown} in both models{of}, worst first by {}\n{}",
                match self.sorted_by {
                    SortKey::Local => "local_db (error added since the compared tensors upstream)",
                    SortKey::Sqnr => "sqnr_db",
                },
                self.tensors_text()
            ));
        }
        s
    }
}

/// sqnr_db, mse, max_abs, cosine cells (`-` where a metric does not apply).
fn metric_cells(e: &Entry) -> Vec<String> {
    if !e.is_real() {
        return vec!["-".into(); 4];
    }
    let m = &e.metrics;
    vec![
        db(m.sqnr_db),
        sci(m.mse),
        sci(m.max_abs),
        format!("{:.6}", m.cosine),
    ]
}

/// `12.34`, `inf`, `-inf`, `NaN`.
fn db(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        format!("{x}")
    }
}

/// `1.234e-05`: three decimals, a signed two-digit exponent (as C's `%.3e`).
fn sci(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let s = format!("{x:.3e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0))
}

/// Columns padded to their widest cell; `right[i]` aligns column `i` right. Every line
/// is indented by two spaces; the last column is not padded.
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.first().map_or(0, |r| r.len());
    let width: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(" ");
        for (c, cell) in r.iter().enumerate() {
            line.push(' ');
            if c + 1 == cols {
                line.push_str(cell);
            } else if right.get(c) == Some(&true) {
                line.push_str(&format!("{cell:>w$}", w = width[c]));
            } else {
                line.push_str(&format!("{cell:<w$}", w = width[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
