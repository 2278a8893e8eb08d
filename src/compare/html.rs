//! A comparison as one self-contained HTML page (`compare --html`, `quantize --validate
//! … --html`): per-output metrics, the error each op added along the graph as a chart
//! (local SQNR by operator order, coloured by op type, a tooltip per mark), weight bytes
//! by dtype before and after, and the quantization plan when the caller has one.
//!
//! Everything is inline (SVG, CSS, a few lines of JavaScript for the tooltips; every mark
//! also carries an SVG `<title>`, so hovering works with scripts off): no network, no
//! external file. Each compared tensor gets exactly one `<circle class="mark">` with its
//! metrics in `data-*` attributes, which is what the tests count.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::{Entry, Report};
use crate::inspect::human_bytes;
use crate::ir::Model;
use crate::quant;

/// What the page shows.
pub struct HtmlInput<'a> {
    /// The comparison; its `tensors` (if any) become the chart.
    pub report: &'a Report,
    pub float_model: &'a Model,
    pub quant_model: &'a Model,
    /// The quantization plan, when the quantized model was made in this run.
    pub plan: Option<&'a quant::Report>,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Colour-blind-friendly palette (Okabe–Ito, then Tableau) for op types.
const PALETTE: [&str; 14] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF", "#9467BD", "#2CA02C",
];

fn num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        Some(v) if v.is_nan() => "NaN".into(),
        Some(v) if v > 0.0 => "+∞".into(),
        Some(_) => "−∞".into(),
        None => "–".into(),
    }
}

fn sci(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.3e}"),
        _ => "–".into(),
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{:.2}%", v * 100.0))
}

/// The SQNR of an entry as shown: +∞ when identical.
fn sqnr_of(e: &Entry) -> Option<f64> {
    (e.compared_as == "real").then_some(e.metrics.sqnr_db)
}

/// Renders the page.
pub fn render(input: &HtmlInput) -> String {
    let r = input.report;
    let mut h = String::new();
    let title = format!("tflquant compare: {}", file_name(&r.quant));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let _ = write!(
        h,
        "<table class=\"kv\">\n<tr><th>float</th><td>{}</td></tr>\n<tr><th>quantized</th><td>{}</td></tr>\n\
         <tr><th>runtime</th><td>{}</td></tr>\n<tr><th>samples</th><td>{}</td></tr>\n</table>\n",
        escape(&r.float),
        escape(&r.quant),
        escape(&r.runtime_text()),
        r.samples
    );
    outputs_section(&mut h, r);
    chart_section(&mut h, r);
    weights_section(&mut h, input.float_model, input.quant_model);
    if let Some(plan) = input.plan {
        plan_section(&mut h, plan);
    }
    let _ = write!(
        h,
        "<div id=\"tip\" role=\"tooltip\"></div>\n<script>{JS}</script>\n</body>\n</html>\n"
    );
    h
}

/// Renders the page and writes it to `path` (to a temporary file, then renamed).
pub fn write(path: &std::path::Path, input: &HtmlInput) -> crate::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let io = |e: std::io::Error| crate::Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    #[cfg(unix)]
    {
        // A page to share and open in a browser: readable like any file the user writes.
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    std::io::Write::write_all(&mut tmp, render(input).as_bytes()).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn outputs_section(h: &mut String, r: &Report) {
    h.push_str(
        "<h2>Outputs</h2>\n<table class=\"grid\" id=\"outputs\">\n<tr><th>#</th><th class=\"text\">name</th>\
         <th>sqnr_db</th><th>mse</th><th>max_abs</th><th>cosine</th><th>top1</th><th>agree</th></tr>\n",
    );
    for e in &r.outputs {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.output.unwrap_or(0),
            escape(&e.name),
            num(sqnr_of(e), 2),
            sci(e.mse),
            sci(e.max_abs),
            num(e.cosine, 6),
            pct(e.top1),
            pct(e.agreement)
        );
    }
    h.push_str("</table>\n");
}

/// Chart geometry.
const W: f64 = 960.0;
const H: f64 = 360.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

fn chart_section(h: &mut String, r: &Report) {
    h.push_str("<h2>Error added along the graph</h2>\n");
    let Some(tensors) = &r.tensors else {
        h.push_str("<p>No intermediate tensors were compared.</p>\n");
        return;
    };
    let mut entries: Vec<&Entry> = tensors.iter().collect();
    entries.sort_by_key(|e| (e.op_index.unwrap_or(usize::MAX), e.quant_tensor));
    let _ = writeln!(
        h,
        "<p>One mark per compared tensor ({}), at the index of the quantized model's operator \
         producing it. Height: <em>local SQNR</em>, the error that operator added (dB, higher is \
         better); marks in the band at the top added no error (+∞) or are compared exactly \
         (hollow). Hover a mark for its name, op and metrics.</p>",
        entries.len()
    );
    // Op types → colours, in order of first appearance.
    let mut colours: BTreeMap<String, &str> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for e in &entries {
        let op = e.op.clone().unwrap_or_else(|| "input".into());
        if !colours.contains_key(&op) {
            colours.insert(op.clone(), PALETTE[order.len() % PALETTE.len()]);
            order.push(op);
        }
    }
    let finite: Vec<f64> = entries
        .iter()
        .filter_map(|e| e.local.filter(|v| v.is_finite()))
        .collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 60.0);
    }
    lo = (lo / 10.0).floor() * 10.0;
    hi = ((hi / 10.0).ceil() * 10.0).max(lo + 10.0);
    let max_op = entries
        .iter()
        .filter_map(|e| e.op_index)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let band = 18.0; // the +∞ / exact band at the top
    let plot_top = TOP + band + 6.0;
    let plot_h = H - plot_top - BOTTOM;
    let x_of = |i: f64| LEFT + plot_w * (i + 0.5) / (max_op + 1.0);
    let y_of = |v: f64| plot_top + plot_h * (hi - v) / (hi - lo);
    let _ = writeln!(
        h,
        "<svg id=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"local SQNR per tensor by operator index\">"
    );
    // Grid and axes.
    let step = if hi - lo > 80.0 { 20.0 } else { 10.0 };
    let mut v = lo;
    while v <= hi + 1e-9 {
        let y = y_of(v);
        let _ = writeln!(
            h,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        v += step;
    }
    let _ = writeln!(
        h,
        "<rect class=\"band\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w:.1}\" height=\"{band}\"/>\
         <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">+∞</text>",
        LEFT - 6.0,
        TOP + band / 2.0 + 4.0
    );
    let x_step = (max_op / 12.0).ceil().max(1.0);
    let mut i = 0.0;
    while i <= max_op {
        let _ = writeln!(
            h,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{i}</text>",
            x_of(i),
            H - BOTTOM + 16.0
        );
        i += x_step;
    }
    let _ = writeln!(
        h,
        "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">operator index (quantized model)</text>\
         <text class=\"label\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">local SQNR (dB)</text>",
        LEFT + plot_w / 2.0,
        H - 6.0,
        plot_top + plot_h / 2.0
    );
    // The marks.
    for e in &entries {
        let op = e.op.clone().unwrap_or_else(|| "input".into());
        let colour = colours.get(&op).copied().unwrap_or("#000");
        let x = x_of(e.op_index.map_or(0.0, |i| i as f64));
        let exact = e.compared_as != "real";
        let (y, hollow) = match e.local {
            _ if exact => (TOP + band / 2.0, true),
            Some(v) if v.is_finite() => (y_of(v), false),
            Some(v) if v.is_nan() => (y_of(lo), false),
            Some(v) if v < 0.0 => (y_of(lo), false),
            _ => (TOP + band / 2.0, false),
        };
        let local = if exact { None } else { e.local };
        let tip = format!(
            "{}\nop {} {}\nlocal SQNR {} dB · SQNR {} dB\nMSE {} · max abs {} · cosine {}{}",
            e.name,
            e.op_index.map_or_else(|| "-".into(), |i| i.to_string()),
            op,
            num(local, 2),
            num(sqnr_of(e), 2),
            sci(e.mse),
            sci(e.max_abs),
            num(e.cosine, 6),
            e.agreement
                .map(|a| format!(" · agreement {}", pct(Some(a))))
                .unwrap_or_default()
        );
        let fill = if hollow { "none" } else { colour };
        let _ = writeln!(
            h,
            "<circle class=\"mark\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{fill}\" stroke=\"{colour}\" \
             data-name=\"{}\" data-op=\"{}\" data-op-index=\"{}\" data-local-sqnr-db=\"{}\" data-sqnr-db=\"{}\" \
             data-tip=\"{}\"><title>{}</title></circle>",
            escape(&e.name),
            escape(&op),
            e.op_index.map_or_else(String::new, |i| i.to_string()),
            num(local, 3),
            num(sqnr_of(e), 3),
            escape(&tip),
            escape(&tip)
        );
    }
    h.push_str("</svg>\n<div class=\"legend\">");
    for op in &order {
        let _ = write!(
            h,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colours.get(op).copied().unwrap_or("#000"),
            escape(op)
        );
    }
    h.push_str("</div>\n");
}

fn weights_section(h: &mut String, float: &Model, quant: &Model) {
    let before = crate::inspect::Report::new(float).weight_bytes_by_dtype;
    let after = crate::inspect::Report::new(quant).weight_bytes_by_dtype;
    h.push_str("<h2>Weight bytes by dtype</h2>\n");
    let dtypes: Vec<&String> = {
        let mut d: Vec<&String> = before.keys().chain(after.keys()).collect();
        d.sort();
        d.dedup();
        d
    };
    let colour = |d: &str| {
        let i = dtypes.iter().position(|x| x.as_str() == d).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let total_b: u64 = before.values().sum();
    let total_a: u64 = after.values().sum();
    let max = total_b.max(total_a).max(1) as f64;
    let bar_w = 700.0;
    let _ = writeln!(
        h,
        "<svg id=\"weights\" viewBox=\"0 0 960 96\" width=\"960\" height=\"96\" role=\"img\" aria-label=\"weight bytes by dtype\">"
    );
    for (row, (label, map, total)) in [("float", &before, total_b), ("quantized", &after, total_a)]
        .into_iter()
        .enumerate()
    {
        let y = 10.0 + row as f64 * 40.0;
        let _ = writeln!(
            h,
            "<text class=\"label\" x=\"90\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            y + 18.0
        );
        let mut x = 100.0;
        for (d, &b) in map.iter() {
            let w = bar_w * b as f64 / max;
            let _ = writeln!(
                h,
                "<rect class=\"wbar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"26\" fill=\"{}\" \
                 data-dtype=\"{}\" data-bytes=\"{b}\"><title>{}: {} ({b} bytes)</title></rect>",
                colour(d),
                escape(d),
                escape(d),
                human_bytes(b)
            );
            x += w;
        }
        let _ = writeln!(
            h,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 6.0,
            y + 18.0,
            human_bytes(total)
        );
    }
    h.push_str("</svg>\n<table class=\"grid\" id=\"weight-bytes\">\n<tr><th>dtype</th><th>float</th><th>quantized</th></tr>\n");
    for d in &dtypes {
        let _ = writeln!(
            h,
            "<tr><td class=\"text\"><i class=\"sw\" style=\"background:{}\"></i>{}</td><td>{}</td><td>{}</td></tr>",
            colour(d),
            escape(d),
            before
                .get(*d)
                .map_or_else(|| "–".into(), |&b| human_bytes(b)),
            after
                .get(*d)
                .map_or_else(|| "–".into(), |&b| human_bytes(b))
        );
    }
    let _ = writeln!(
        h,
        "<tr><th>total</th><th>{}</th><th>{}</th></tr>\n</table>",
        human_bytes(total_b),
        human_bytes(total_a)
    );
}

fn plan_section(h: &mut String, plan: &quant::Report) {
    let _ = writeln!(
        h,
        "<h2>Quantization plan</h2>\n<p>{}</p>",
        escape(&plan.summary())
    );
    if !plan.ops.is_empty() {
        h.push_str("<table class=\"grid\" id=\"plan\">\n<tr><th>subgraph</th><th>#</th><th class=\"text\">op</th><th class=\"text\">precision</th><th class=\"text\">reason</th></tr>\n");
        for f in &plan.ops {
            let (prec, reason) = match &f.fate {
                quant::report::Fate::Quantized => ("integer", String::new()),
                quant::report::Fate::Float { reason } => ("float", reason.to_string()),
            };
            let _ = writeln!(
                h,
                "<tr class=\"{prec}\"><td>{}</td><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{prec}</td><td class=\"text\">{}</td></tr>",
                f.subgraph,
                f.operator,
                escape(&f.op),
                escape(&reason)
            );
        }
        h.push_str("</table>\n");
    }
    if !plan.quantized.is_empty() {
        h.push_str("<h3>Tensors changed</h3>\n<table class=\"grid\" id=\"plan-tensors\">\n<tr><th>tensor</th><th>consumers</th><th>dtype</th><th>granularity</th><th>bytes</th></tr>\n");
        for t in &plan.quantized {
            let _ = writeln!(
                h,
                "<tr><td class=\"name\">{}</td><td class=\"text\">{}</td><td class=\"text\">{} → {}</td><td class=\"text\">{}</td><td>{} → {}</td></tr>",
                escape(&t.name),
                escape(&t.consumers.join(", ")),
                escape(&t.old_dtype),
                escape(&t.new_dtype),
                escape(&t.granularity),
                human_bytes(t.bytes_before),
                human_bytes(t.bytes_after)
            );
        }
        h.push_str("</table>\n");
    }
    if !plan.left_float.is_empty() {
        h.push_str("<h3>Weights left float</h3>\n<table class=\"grid\" id=\"plan-left-float\">\n<tr><th>tensor</th><th>consumers</th><th>reason</th></tr>\n");
        for t in &plan.left_float {
            let _ = writeln!(
                h,
                "<tr><td class=\"name\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
                escape(&t.name),
                escape(&t.consumers.join(", ")),
                escape(&t.reason)
            );
        }
        h.push_str("</table>\n");
    }
    if !plan.notes.is_empty() {
        h.push_str("<ul class=\"notes\">\n");
        for n in &plan.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>\n");
    }
}

const CSS: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px}
table.kv th{text-align:left;padding-right:12px;color:#555;font-weight:normal}
table.grid{border-collapse:collapse}table.grid td,table.grid th{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.grid td.name,table.grid td.text,table.grid th.text{text-align:left;word-break:break-all}
table.grid tr.float td{background:#fff4e5}
svg text{font-size:11px;fill:#444}svg text.label{font-size:12px;fill:#222}
line.grid{stroke:#eee}rect.band{fill:#f4f7f4}
circle.mark{stroke-width:1.5;cursor:pointer;opacity:.85}circle.mark:hover{opacity:1;stroke:#000;stroke-width:2}
.legend span{display:inline-block;margin:2px 12px 2px 0}
.legend i,i.sw{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
#tip{position:fixed;display:none;background:#222;color:#fff;padding:6px 8px;border-radius:4px;
white-space:pre;font:12px/1.35 ui-monospace,monospace;pointer-events:none;max-width:640px;overflow:hidden}
";

const JS: &str = "
(function(){var t=document.getElementById('tip');
document.querySelectorAll('circle.mark').forEach(function(c){
c.addEventListener('mousemove',function(e){t.textContent=c.getAttribute('data-tip');t.style.display='block';
t.style.left=(e.clientX+14)+'px';t.style.top=(e.clientY+14)+'px';});
c.addEventListener('mouseleave',function(){t.style.display='none';});});})();
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("a<b>&\"c'"),
            "a&lt;b&gt;&amp;&quot;c&#39;".to_string()
        );
    }

    #[test]
    fn numbers_show_infinities_and_missing_values() {
        assert_eq!(num(Some(f64::INFINITY), 2), "+∞");
        assert_eq!(num(Some(f64::NEG_INFINITY), 2), "−∞");
        assert_eq!(num(None, 2), "–");
        assert_eq!(num(Some(1.234), 1), "1.2");
    }
}
