#!/usr/bin/env python3
"""Writes the INT4 table of docs/ACCURACY.md: per test model, size and output SQNR of
`tflquant quantize --mode weight-int4` for each rounding (nearest, mse, gptq), per
channel and blockwise (--block-size 32), against the float model on held-out samples.

Usage: scripts/int4_accuracy.py [--tflquant PATH] [--python-litert]  (run from the repo root)

Every weight is quantized (--min-elements 0). gptq calibrates on MODEL's `.calib.npy`
(first 100 samples); SQNR is measured on its `.test.npy` in LiteRT (ai-edge-litert), once
with the default XNNPACK delegate and once with the builtin kernels only; the table shows
both (they differ: the hybrid CONV_2D/FULLY_CONNECTED kernels quantize activations
differently in XNNPACK and in the builtin kernels).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

MODELS = [
    # (model, calibration samples, held-out samples)
    ("cnn_digits.tflite", "cnn_digits.calib.npy", "cnn_digits.test.npy"),
    ("shared_weights_cnn.tflite", "cnn_digits.calib.npy", "cnn_digits.test.npy"),
    ("mlp_large_fc.tflite", "mlp_large_fc.calib.npy", "mlp_large_fc.test.npy"),
]
ROUNDINGS = ["nearest", "mse", "gptq"]
GRANULARITY = [("per channel", []), ("block 32", ["--block-size", "32"])]


def run(path, x, xnnpack):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {} if xnnpack else dict(
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it = Interpreter(model_path=path, **kw)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for s in x:
        it.set_tensor(i["index"], s.reshape(i["shape"]).astype(np.float32))
        it.invoke()
        ys.append(it.get_tensor(o["index"]).astype(np.float64).copy())
    return np.stack(ys)


def sqnr(ref, y):
    assert not np.isnan(y).any(), "NaN in an output"
    return 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tflquant", default="target/debug/tflquant")
    ap.add_argument("--calib-samples", type=int, default=100)
    a = ap.parse_args()
    td = "testdata"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, calib, test in MODELS:
            src = os.path.join(td, model)
            x = np.load(os.path.join(td, test))
            ref = {k: run(src, x, k) for k in (True, False)}
            fsize = os.path.getsize(src)
            for gname, gflags in GRANULARITY:
                for r in ROUNDINGS:
                    out = os.path.join(tmp, f"{model}.{r}.{len(gflags)}.tflite")
                    cmd = [a.tflquant, "quantize", src, "-o", out, "--mode", "weight-int4",
                           "--min-elements", "0", "--rounding", r, "-q"] + gflags
                    if r == "gptq":
                        cmd += ["--calibration", os.path.join(td, calib),
                                "--samples", str(a.calib_samples)]
                    subprocess.run(cmd, check=True)
                    s = {k: sqnr(ref[k], run(out, x, k)) for k in (True, False)}
                    rows.append((model, gname, r, fsize, os.path.getsize(out), s[True], s[False]))
    print("| model | scales | rounding | size (float → int4) | SQNR XNNPACK (dB) | SQNR builtin (dB) |")
    print("|---|---|---|---|---|---|")
    for m, g, r, f, q, sx, sb in rows:
        print(f"| {m} | {g} | {r} | {f / 1024:.1f} → {q / 1024:.1f} KiB | {sx:.2f} | {sb:.2f} |")


if __name__ == "__main__":
    main()
