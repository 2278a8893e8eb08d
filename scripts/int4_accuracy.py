#!/usr/bin/env python3
"""Writes the INT4 table of docs/ACCURACY.md: per test model, size and SQNR of
`tflquant quantize --mode weight-int4` for each rounding (nearest, mse, gptq), per
channel and blockwise (--block-size 32), against the float model on held-out samples.

Usage (from the repository root, after `cargo build`):
    .venv/bin/python scripts/int4_accuracy.py [--tflquant target/debug/tflquant]

Every weight is quantized (--min-elements 0).  gptq calibrates on the model's
`.calib.npy`; everything is measured on its `.test.npy` in LiteRT (ai-edge-litert):
  * output SQNR with the default XNNPACK delegate and with the builtin kernels only;
  * logit SQNR: the input of the model's last SOFTMAX (builtin kernels, every tensor
    preserved), which the saturating softmax does not hide;
  * top-1 agreement with the float model (XNNPACK);
  * the output and logit SQNR again on 512 more digits (scripts/int4_digits_extra.npz:
    sklearn digits from the models' training pool, none of them a calibration or
    held-out sample; pixel values 0..16, divided by 16 as the test files are; made by
    scripts/make_int4_digits_extra.py).  The
    32 held-out digits are too few for softmax outputs that saturate: the output SQNR
    there is set by the one or two least confident samples.

Then, per model and granularity, gptq's gain over nearest on each measure with a 90%
interval: the 5th and 95th percentiles of the gain over 2000 resamplings of the samples
(with replacement, fixed seed; the gain is 10·log10 of nearest's summed squared error
over gptq's on the same resampled samples). An interval whose low end is above 2 dB is
a gain that does not depend on which few samples were drawn.
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np

MODELS = [
    # (model, calibration samples, held-out samples)
    ("cnn_digits.tflite", "cnn_digits.calib.npy", "cnn_digits.test.npy"),
    ("shared_weights_cnn.tflite", "cnn_digits.calib.npy", "cnn_digits.test.npy"),
    ("tiny_transformer.tflite", "lstm_seq.calib.npy", "lstm_seq.test.npy"),
    ("mlp_large_fc.tflite", "mlp_large_fc.calib.npy", "mlp_large_fc.test.npy"),
]
ROUNDINGS = ["nearest", "mse", "gptq"]
EXTRA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "int4_digits_extra.npz")
GRANULARITY = [("per channel", []), ("block 32", ["--block-size", "32"])]


def interpreter(path, builtin, keep=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {}
    if builtin:
        kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if keep:
        kw["experimental_preserve_all_tensors"] = True
    return Interpreter(model_path=path, **kw)


def run(path, x, builtin, tensor_name=None):
    """Outputs over the samples, and the named tensor's values (builtin kernels only)."""
    it = interpreter(path, builtin, keep=tensor_name is not None)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    idx = None
    if tensor_name is not None:
        idx = next(d["index"] for d in it.get_tensor_details() if d["name"] == tensor_name)
    ys, ts = [], []
    for s in x:
        it.set_tensor(i["index"], s.reshape(i["shape"]).astype(np.float32))
        it.invoke()
        ys.append(it.get_tensor(o["index"]).astype(np.float64).copy())
        if idx is not None:
            ts.append(it.get_tensor(idx).astype(np.float64).copy())
    return np.stack(ys), (np.stack(ts) if ts else None)


def logits_name(path):
    """Name of the input tensor of the model's last SOFTMAX (None without one)."""
    from ai_edge_litert import schema_py_generated as S
    m = S.Model.GetRootAsModel(open(path, "rb").read(), 0)
    sg = m.Subgraphs(0)
    name = None
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        c = m.OperatorCodes(op.OpcodeIndex())
        if max(c.DeprecatedBuiltinCode(), c.BuiltinCode()) == S.BuiltinOperator.SOFTMAX:
            name = sg.Tensors(op.Inputs(0)).Name().decode()
    return name


def sqnr(ref, y):
    assert not np.isnan(y).any(), "NaN in an output"
    return 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())


def sample_errors(ref, y):
    """Squared error per sample (first axis)."""
    assert not np.isnan(y).any(), "NaN in an output"
    return ((ref - y) ** 2).reshape(len(ref), -1).sum(1)


def gain_interval(e_near, e_gptq, rounds=2000, seed=0):
    """gptq's gain over nearest (dB) on all samples, and its 5th / 95th percentiles over
    `rounds` resamplings of the samples with replacement."""
    rng = np.random.default_rng(seed)
    n = len(e_near)
    g = []
    for _ in range(rounds):
        i = rng.integers(0, n, n)
        g.append(10 * np.log10(e_near[i].sum() / e_gptq[i].sum()))
    lo, hi = np.percentile(g, [5, 95])
    return 10 * np.log10(e_near.sum() / e_gptq.sum()), lo, hi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tflquant", default="target/debug/tflquant")
    a = ap.parse_args()
    td = "testdata"
    rows = []
    errors = {}  # (model, granularity, rounding) -> per-sample squared errors per measure
    with tempfile.TemporaryDirectory() as tmp:
        for model, calib, test in MODELS:
            src = os.path.join(td, model)
            x = np.load(os.path.join(td, test))
            lname = logits_name(src)
            ref_x, _ = run(src, x, False)
            ref_b, ref_l = run(src, x, True, lname)
            xe = np.load(EXTRA)["pixels"].astype(np.float32) / 16.0
            ref_ex, _ = run(src, xe, False)
            _, ref_el = run(src, xe, True, lname)
            fsize = os.path.getsize(src)
            for gname, gflags in GRANULARITY:
                for r in ROUNDINGS:
                    out = os.path.join(tmp, f"{model}.{r}.{len(gflags)}.tflite")
                    cmd = [a.tflquant, "quantize", src, "-o", out, "--mode", "weight-int4",
                           "--min-elements", "0", "--rounding", r, "-q"] + gflags
                    if r == "gptq":
                        cmd += ["--calibration", os.path.join(td, calib)]
                    subprocess.run(cmd, check=True)
                    y_x, _ = run(out, x, False)
                    y_b, y_l = run(out, x, True, lname)
                    y_ex, _ = run(out, xe, False)
                    _, y_el = run(out, xe, True, lname)
                    errors[(model, gname, r)] = [
                        sample_errors(ref_x, y_x), sample_errors(ref_b, y_b),
                        sample_errors(ref_ex, y_ex),
                        None if y_l is None else sample_errors(ref_l, y_l), sample_errors(ref_el, y_el)]
                    top1 = (y_x.reshape(len(x), -1).argmax(-1) == ref_x.reshape(len(x), -1).argmax(-1)).mean()
                    rows.append((model, gname, r, fsize, os.path.getsize(out), sqnr(ref_x, y_x),
                                 sqnr(ref_b, y_b), None if y_l is None else sqnr(ref_l, y_l), top1, len(x),
                                 sqnr(ref_ex, y_ex), sqnr(ref_el, y_el), len(xe)))
    print("| model | scales | rounding | size (float → int4) | output SQNR, XNNPACK | output SQNR, builtin | logit SQNR | top-1 agree | 512 digits: output SQNR | 512 digits: logit SQNR |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m, g, r, f, q, sx, sb, sl, t1, n, se, sel, ne in rows:
        logit = "–" if sl is None else f"{sl:.2f} dB"
        print(f"| {m} | {g} | {r} | {f / 1024:.1f} → {q / 1024:.1f} KiB | {sx:.2f} dB | {sb:.2f} dB | {logit} "
              f"| {t1 * 100:.1f}% of {n} | {se:.2f} dB | {sel:.2f} dB |")
    print()
    print("| model | scales | outputs, 32, XNNPACK | outputs, 32, builtin | outputs, 512 | logits, 32 | logits, 512 |")
    print("|---|---|---|---|---|---|---|")
    for model, _, _ in MODELS:
        for gname, _ in GRANULARITY:
            near, gptq = errors[(model, gname, "nearest")], errors[(model, gname, "gptq")]
            cells = []
            for en, eg in zip(near, gptq):
                if en is None:
                    cells.append("–")
                    continue
                g, lo, hi = gain_interval(en, eg)
                cells.append(f"{g:+.1f} [{lo:+.1f}, {hi:+.1f}]")
            print(f"| {model.removesuffix('.tflite')} | {gname} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
