#!/usr/bin/env python3
"""Writes the full-integer table of docs/ACCURACY.md (issue #15): every testdata model
with calibration and held-out data x {TF converter's int8 / int16x8 reference where
committed, tflquant int8 and int16x8 defaults, each PTQ algorithm alone on int8 (--cle,
--observer auto, --observer extrapolate), --target-sqnr 25 / 30 / 40} -> SQNR of
every real-valued output against the float model, top-1 agreement with the float model
and accuracy where labels exist, and the file size.

Usage (from the repository root, after `cargo build --release`):
    .venv/bin/python benches/accuracy.py [--tflquant target/release/tflquant] [--write]

tflquant calibrates on the first 32 samples of the model's calibration file (the TF
references were converted with every calibration sample, 48, 64 or 512; the row
"tflquant int8, TF's samples" calibrates on those same samples); everything is
measured on the model's held-out test file on LiteRT (ai-edge-litert, default XNNPACK
delegate; the builtin kernels where XNNPACK fails). Models with resource variables run
their samples as one stream; others reset variable tensors before each sample.
The same defaults for every model: no per-model tuning. Without --write the table is
printed; with it, the section between the markers in docs/ACCURACY.md is replaced.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TD = os.path.join(ROOT, "testdata")
CALIB_SAMPLES = 32
TARGETS = [25, 30, 40]
# Each weight PTQ algorithm alone and both together (quant::ptq), in the mode of
# --ptq-mode (int8 by default), against the last entry (neither).
PTQ_WEIGHT_VARIANTS = [
    ("--weight-clipping mse-hidden", ["--weight-clipping", "mse-hidden", "--bias-correction", "off"]),
    ("--weight-clipping mse", ["--weight-clipping", "mse", "--bias-correction", "off"]),
    ("--bias-correction", ["--weight-clipping", "minmax", "--bias-correction", "on"]),
    ("mse clipping + bias correction", ["--weight-clipping", "mse", "--bias-correction", "on"]),
    ("minmax, no bias correction", ["--weight-clipping", "minmax", "--bias-correction", "off"]),
]
# For models with a TF reference: tflquant int8 calibrated on the same samples as TF's
# converter (every sample of the calibration file), the same-data view of the comparison.
SAME_SAMPLES = "tflquant int8, TF's samples"
BEGIN = "<!-- benches/accuracy.py: begin -->"
END = "<!-- benches/accuracy.py: end -->"


def models():
    m = json.load(open(os.path.join(TD, "manifest.json")))["models"]
    out = []
    for name, e in sorted(m.items()):
        if ".tf_" in name or name.startswith(("int8_quantized", "qat_")):
            continue
        if e.get("runs_in_litert") and e.get("calib") and e.get("test"):
            out.append((name, e))
    return out


def load(path):
    if path.endswith(".npy"):
        return {None: np.load(path)}
    z = np.load(path)
    return {k: z[k] for k in z.files}


def write_first(src, dst_dir, n):
    d = load(src)
    if None in d:
        p = os.path.join(dst_dir, "calib.npy")
        np.save(p, d[None][:n])
    else:
        p = os.path.join(dst_dir, "calib.npz")
        np.savez(p, **{k: v[:n] for k, v in d.items()})
    return p


def interpreter(path, builtin):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {}
    if builtin:
        kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_path=path, **kw)


def run(path, data, stream):
    """Outputs (float64, dequantized) per output, stacked over samples."""
    last = None
    for builtin in (False, True):
        try:
            return run_with(path, data, stream, builtin)
        except Exception as e:  # noqa: BLE001 - report and try the other kernels
            last = e
    raise last


def run_with(path, data, stream, builtin):
    it = interpreter(path, builtin)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    n = len(next(iter(data.values())))
    ys = [[] for _ in outs]
    for s in range(n):
        if not stream:
            it.reset_all_variables()
        for d in ins:
            v = data[None] if None in data else data[d["name"]]
            x = v[s].reshape(d["shape"])
            if d["dtype"] != np.float32 and np.issubdtype(d["dtype"], np.integer) and d["quantization"][0]:
                sc, z = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / sc) + z, info.min, info.max)
            it.set_tensor(d["index"], x.astype(d["dtype"]))
        it.invoke()
        for k, o in enumerate(outs):
            y = it.get_tensor(o["index"]).astype(np.float64)
            if o["dtype"] != np.float32 and o["quantization"][0]:
                sc, z = o["quantization"]
                y = (y - z) * sc
            ys[k].append(y.copy())
    real = [o["dtype"] in (np.float32,) or bool(o["quantization"][0]) for o in outs]
    return [np.stack(y) for y in ys], real, [o["name"] for o in outs]


def sqnr(ref, y):
    if not np.all(np.isfinite(y)):
        return float("nan")
    e = ((ref - y) ** 2).sum()
    return float("inf") if e == 0 else float(10 * np.log10((ref ** 2).sum() / e))


def mean_db(v):
    f = [min(d, 100) for d in v if d == d]
    return float(np.mean(f)) if f else float("nan")


def fmt(db):
    if db != db:
        return "NaN"
    return "∞" if db == float("inf") else f"{db:.1f}"


def missed_run(target_runs, name, label):
    """A --target-sqnr run that wrote nothing LiteRT runs counts as a miss."""
    tm = re.match(r"int8 --target-sqnr (\d+)$", label)
    if tm:
        target_runs.setdefault(int(tm.group(1)), []).append((name, 0, -float("inf")))
        print(f"{name}: {label} MISSED: no model LiteRT runs", file=sys.stderr)


def ptq_weight_summary(per_model, mode):
    """Each PTQ weight variant minus the int8 baseline without them, per model, on the
    mean output SQNR (inf as 100 dB) and on the lowest output SQNR: the mean over the
    models, the worst model, and every model."""
    base = f"{mode} {PTQ_WEIGHT_VARIANTS[-1][0]}"
    out = []
    for label in (f"{mode} {v[0]}" for v in PTQ_WEIGHT_VARIANTS[:-1]):
        for what, f in (("mean output SQNR", lambda v: float(np.mean([min(d, 100) for d in v if d == d]))),
                        ("lowest output SQNR", lambda v: min(min(d, 100) if d == d else -100 for d in v))):
            diffs = [(n, f(r[label]) - f(r[base])) for n, r in per_model
                     if r.get(label) and r.get(base)]
            if not diffs:
                continue
            worst = min(diffs, key=lambda x: x[1])
            out.append(
                f"{label} − {base}, {what} per model: mean {np.mean([d for _, d in diffs]):+.2f} dB "
                f"over {len(diffs)} models, lowest {worst[1]:+.2f} dB ({worst[0]}); "
                + ", ".join(f"{n} {d:+.2f}" for n, d in diffs)
                + "\n"
            )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tflquant", default=os.path.join(ROOT, "target/release/tflquant"))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--ptq-mode", default="int8", choices=["int8", "int16x8"],
                    help="the mode of the weight PTQ rows")
    ap.add_argument("--configs", help="regular expression: run only the quantizations whose label it finds")
    a = ap.parse_args()
    rows, summary, algos = [], [], {}
    rows, summary = [], []
    ptq_weight_results = []
    target_runs = {}  # --target-sqnr T -> [(model, size in bytes, lowest output SQNR)]
    tmp = tempfile.mkdtemp()
    for name, e in models():
        if a.only and name not in a.only.split(","):
            continue
        stem = name[: -len(".tflite")]
        float_path = os.path.join(TD, name)
        calib = write_first(os.path.join(TD, e["calib"]), tmp, CALIB_SAMPLES)
        test = load(os.path.join(TD, e["test"]))
        labels = None
        if e.get("test_labels"):
            labels = np.load(os.path.join(TD, e["test_labels"]))
        stream = stem.startswith("streaming")
        try:
            ref, real, names = run(float_path, test, stream)
        except Exception as ex:  # noqa: BLE001
            print(f"{name}: float model does not run on LiteRT: {ex}", file=sys.stderr)
            continue
        configs = []
        for tf_kind in ("tf_int8", "tf_int16x8"):
            p = os.path.join(TD, f"{stem}.{tf_kind}.tflite")
            if os.path.exists(p):
                configs.append((f"TF {tf_kind[3:]}", p, None))
        configs.append(("tflquant int8", None, ["--mode", "int8"]))
        configs.append(("tflquant int16x8", None, ["--mode", "int16x8"]))
        if any(c[0] == "TF int8" for c in configs):
            configs.append((SAME_SAMPLES, None, ["--mode", "int8"]))
        # Each PTQ algorithm alone on top of the int8 default (issue #15 item 3).
        configs.append(("int8 --cle", None, ["--mode", "int8", "--cle"]))
        configs.append(("int8 --observer auto", None, ["--mode", "int8", "--observer", "auto"]))
        configs.append(("int8 --observer extrapolate", None,
                        ["--mode", "int8", "--observer", "extrapolate"]))
        # PTQ weight algorithms (ptq-weights), each alone and both, int8 (explicit
        # on/off so that the rows stay what they say whatever the defaults are).
        for label, extra in PTQ_WEIGHT_VARIANTS:
            configs.append((f"{a.ptq_mode} {label}", None, ["--mode", a.ptq_mode] + extra))
        for t in TARGETS:
            configs.append((f"int8 --target-sqnr {t}", None, ["--mode", "int8", "--target-sqnr", str(t)]))
        if a.configs:
            configs = [c for c in configs if re.search(a.configs, c[0])]
        results = {}
        for label, path, args in configs:
            note = ""
            if args is not None:
                path = os.path.join(tmp, f"{stem}.{label.replace(' ', '_')}.tflite")
                rep = path + ".json"
                cal = os.path.join(TD, e["calib"]) if label == SAME_SAMPLES else calib
                cmd = [a.tflquant, "-q", "quantize", float_path, "-o", path, "--calibration", cal,
                       "--report", rep] + args
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    why = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1][:80]
                    rows.append((name, label, "error: " + why, "", "", ""))
                    missed_run(target_runs, name, label)
                    continue
                r = json.load(open(rep))
                mp = r.get("mixed_precision")
                if mp:
                    fl = sum(1 for x in mp["plan"] if x["precision"] == "float")
                    note = f"{fl}/{len(mp['plan'])} ops float"
            try:
                ys, _, _ = run(path, test, stream)
            except Exception as ex:  # noqa: BLE001
                rows.append((name, label, f"LiteRT error: {str(ex)[:60]}", "", "", ""))
                missed_run(target_runs, name, label)
                continue
            dbs = [sqnr(r_, y) for r_, y, ok in zip(ref, ys, real) if ok]
            agree = acc = ""
            if labels is not None and len(ys) == 1 and ys[0].ndim >= 2 and ys[0].shape[-1] == 10:
                pf = ref[0].reshape(len(ref[0]), -1).argmax(1)
                pq = ys[0].reshape(len(ys[0]), -1).argmax(1)
                agree = f"{100 * (pf == pq).mean():.0f}%"
                acc = f"{100 * (pq == labels[: len(pq)]).mean():.0f}% (float {100 * (pf == labels[: len(pf)]).mean():.0f}%)"
            results[label] = dbs
            if len(dbs) <= 2:
                per = " / ".join(fmt(d) for d in dbs)
            else:
                finite = [d for d in dbs if d == d]
                per = f"min {fmt(min(dbs, key=lambda d: (d == d, d)))}, mean {fmt(float(np.mean([min(d, 100) for d in finite])) if finite else float('nan'))} ({len(dbs)} outputs)"
            size = os.path.getsize(path)
            tm = re.match(r"int8 --target-sqnr (\d+)$", label)
            if tm:
                # Every real-valued output must reach T on the held-out file: flag a miss.
                t = int(tm.group(1))
                low = min((d if d == d else -float("inf") for d in dbs), default=float("inf"))
                target_runs.setdefault(t, []).append((name, size, low))
                if low < t:
                    note = f"{note}, MISSES {t} dB".lstrip(", ")
                    print(f"{name}: --target-sqnr {t} MISSED on the held-out file: {fmt(low)} dB",
                          file=sys.stderr)
            rows.append((name, label, per, f"{agree} {acc}".strip(), f"{size / 1024:.1f} KiB", note))
            print("|".join(rows[-1]), file=sys.stderr)
        if "tflquant int8" in results:
            for label, v in results.items():
                if label in ("int8 --cle", "int8 --observer auto", "int8 --observer extrapolate"):
                    algos.setdefault(label, []).append(
                        (name, mean_db(v) - mean_db(results["tflquant int8"])))
        ptq_weight_results.append((name, results))
        if "TF int8" in results and "tflquant int8" in results:
            def m(v):
                f = [min(d, 100) for d in v if d == d]
                return float(np.mean(f)) if f else float("nan")

            def lo(v):
                return min((d if d == d else -100 for d in v), default=float("nan"))
            ours, theirs = results["tflquant int8"], results["TF int8"]
            same = results.get(SAME_SAMPLES)
            summary.append((name, m(ours) - m(theirs), lo(ours) - lo(theirs),
                            m(same) - m(theirs) if same else float("nan"),
                            lo(same) - lo(theirs) if same else float("nan")))
    lines = [
        "| model | quantization | output SQNR dB (held-out, LiteRT) | top-1 agreement / accuracy | size | plan |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    if summary:
        lines.append("")
        for k, what, ours in ((1, "mean output SQNR (∞ as 100 dB)", "tflquant int8"),
                              (2, "lowest output SQNR", "tflquant int8"),
                              (3, "mean output SQNR (∞ as 100 dB)", SAME_SAMPLES),
                              (4, "lowest output SQNR", SAME_SAMPLES)):
            diffs = [x[k] for x in summary]
            worst = min(summary, key=lambda x: x[k])
            lines.append(
                f"{ours} − TF int8, {what} per model: mean {np.mean(diffs):+.2f} dB, "
                f"lowest {worst[k]:+.2f} dB ({worst[0]}); "
                + ", ".join(f"{x[0]} {x[k]:+.2f}" for x in summary)
                + "\n"
            )
    for label, d in algos.items():
        worst = min(d, key=lambda x: x[1])
        lines.append(
            f"`{label}` − tflquant int8 default, mean output SQNR (∞ as 100 dB) per model: "
            f"mean {np.mean([x[1] for x in d]):+.2f} dB, lowest {worst[1]:+.2f} dB ({worst[0]}), "
            f"{sum(1 for x in d if abs(x[1]) >= 0.05)} of {len(d)} models moved by ≥ 0.05 dB\n"
        )
    for t, runs in sorted(target_runs.items()):
        missed = [f"{n} {fmt(d)} dB" for n, _, d in runs if d < t]
        lines.append(
            f"`--target-sqnr {t}`: {sum(s for _, s, _ in runs) / 1024:.1f} KiB summed over "
            f"{len(runs)} models; target met on the held-out file by "
            f"{len(runs) - len(missed)} of {len(runs)}"
            + (f", MISSED by {', '.join(missed)}" if missed else "") + "\n"
        )
    lines += ptq_weight_summary(ptq_weight_results, a.ptq_mode)
    table = "\n".join(lines)
    print(table)
    if a.write:
        doc = os.path.join(ROOT, "docs/ACCURACY.md")
        text = open(doc).read()
        if BEGIN in text:
            pre, rest = text.split(BEGIN, 1)
            post = rest.split(END, 1)[1]
            text = pre + BEGIN + "\n" + table + "\n" + END + post
        else:
            text = text.rstrip("\n") + "\n\n" + BEGIN + "\n" + table + "\n" + END + "\n"
        open(doc, "w").write(text)


if __name__ == "__main__":
    main()
