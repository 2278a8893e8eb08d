#!/usr/bin/env python3
"""Side-by-side benchmark of tflquant's reference interpreter (run by hand, not a test).

1. Per-inference latency of `Interpreter::run` (benches/latency.rs) against the LiteRT
   Python interpreter, same model, same thread count, on a MobileNetV2-sized model.
2. Calibration throughput on 100 samples: `tflquant calibrate` (whole command: model
   load, data streaming, min/max of every tensor, JSON) against ai-edge-quantizer's
   `Quantizer.calibrate` (the call alone) with its static int8 recipe.

Needs a Python with tensorflow, ai-edge-litert and ai-edge-quantizer (outside the
repository, e.g. `python -m venv /opt/aeq && /opt/aeq/bin/pip install tensorflow-cpu
ai-edge-quantizer`), and a Rust toolchain. Generated files go to /tmp only:

    /opt/aeq/bin/python benches/compare_litert.py [--threads 1] [--iterations 30]

Reports medians and ratios (ours / theirs; below 1 means tflquant is faster).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = "/tmp/tflquant_bench"


def make_model(path):
    if os.path.exists(path):
        return
    import tensorflow as tf
    tf.random.set_seed(0)
    m = tf.keras.applications.MobileNetV2(weights=None)
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    with open(path, "wb") as f:
        f.write(conv.convert())


def litert_latency(model, threads, iters, xnnpack):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_path=model, num_threads=threads, **kw)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    n = int(np.prod(d["shape"]))
    x = (((np.arange(n) * 7919) % 1000) / 1000.0).astype(np.float32).reshape(d["shape"])
    it.set_tensor(d["index"], x)
    for _ in range(3):
        it.invoke()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        it.invoke()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def ours_latency(model, threads, iters):
    out = subprocess.run(
        ["cargo", "bench", "-q", "--bench", "latency", "--", model, str(iters), str(threads)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"median_ms=([0-9.]+)", out)
    if not m:
        sys.exit(f"unexpected output from the latency bench: {out}")
    return float(m.group(1))


def ours_calibration(model, data, threads, runs=3):
    exe = os.path.join(ROOT, "target/release/tflquant")
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([exe, "-q", "calibrate", model, "--data", data, "-o", f"{WORK}/ranges.json",
                        "--threads", str(threads)], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def aeq_calibration(model, samples, threads, runs=3):
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model)
    sig = it.get_signature_list()
    key = next(iter(sig))
    in_name = sig[key]["inputs"][0]
    data = {key: [{in_name: samples[i:i + 1]} for i in range(len(samples))]}
    times = []
    for _ in range(runs):
        q = quantizer.Quantizer(model)
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        t0 = time.perf_counter()
        q.calibrate(data, num_threads=threads)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--samples", type=int, default=100)
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    model = f"{WORK}/mobilenet_v2.tflite"
    make_model(model)
    data = f"{WORK}/calib_{a.samples}.npy"
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, size=(a.samples, 224, 224, 3)).astype(np.float32)
    np.save(data, samples)

    print(f"model {model} ({os.path.getsize(model) / 1e6:.1f} MB), threads {a.threads}")
    ours = ours_latency(model, a.threads, a.iterations)
    lit_x = litert_latency(model, a.threads, a.iterations, xnnpack=True)
    lit_b = litert_latency(model, a.threads, a.iterations, xnnpack=False)
    print(f"latency median: tflquant {ours:.1f} ms | LiteRT+XNNPACK {lit_x:.1f} ms "
          f"(ratio {ours / lit_x:.2f}) | LiteRT builtin kernels {lit_b:.1f} ms (ratio {ours / lit_b:.2f})")
    oc = ours_calibration(model, data, a.threads)
    ac = aeq_calibration(model, samples, a.threads)
    print(f"calibration of {a.samples} samples, median of 3: tflquant {oc:.1f} s "
          f"({a.samples / oc:.1f} samples/s) | ai-edge-quantizer {ac:.1f} s "
          f"({a.samples / ac:.1f} samples/s) | ratio {oc / ac:.2f}")


if __name__ == "__main__":
    main()
