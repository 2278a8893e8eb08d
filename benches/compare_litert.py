#!/usr/bin/env python3
"""Side-by-side benchmark of tflquant's reference interpreter (run by hand, not a test).

1. Per-inference latency of `Interpreter::run` (benches/latency.rs) against the LiteRT
   Python interpreter, same model, same thread count, on a MobileNetV2-sized model.
2. Calibration throughput on 100 samples: `tflquant calibrate` (whole command: model
   load, data streaming, min/max of every tensor, JSON) against LiteRT's inference
   throughput on the same samples with the same threads (a whole Python process that
   imports LiteRT, loads the model and invokes it once per sample: the yardstick of
   issue #16), and against ai-edge-quantizer's `Quantizer.calibrate` (the call alone)
   with its static int8 recipe. `--model M --data D.npy` measures another model (e.g. a
   transformer encoder; `--model encoder` makes one) instead of MobileNetV2; `--skip-aeq`
   leaves ai-edge-quantizer out.

Both processes' CPU time (user + system, all threads) is printed next to wall time: on
a loaded machine the CPU time is the steadier number.

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


def make_encoder(path, data, n):
    """A 4-layer transformer encoder (64 tokens × 128, 4 heads, FFN 512) and n samples."""
    if not os.path.exists(path):
        import tensorflow as tf
        tf.random.set_seed(0)
        L, D, H, F = 64, 128, 4, 512
        x = tf.keras.Input((L, D), batch_size=1)
        h = x
        for _ in range(4):
            a = tf.keras.layers.MultiHeadAttention(H, D // H)(h, h)
            h = tf.keras.layers.LayerNormalization()(h + a)
            f = tf.keras.layers.Dense(D)(tf.keras.layers.Dense(F, activation="gelu")(h))
            h = tf.keras.layers.LayerNormalization()(h + f)
        y = tf.keras.layers.Dense(10)(tf.keras.layers.GlobalAveragePooling1D()(h))
        with open(path, "wb") as fh:
            fh.write(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(x, y)).convert())
    xs = np.random.default_rng(0).standard_normal((n, 64, 128)).astype(np.float32)
    np.save(data, xs)
    return xs


def litert_cpu_latency(model, threads, iters):
    """Median CPU time (process, all threads) of one XNNPACK invoke, in ms."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model, num_threads=threads)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    n = int(np.prod(d["shape"]))
    it.set_tensor(d["index"], (((np.arange(n) * 7919) % 1000) / 1000.0).astype(np.float32).reshape(d["shape"]))
    for _ in range(3):
        it.invoke()
    ms = []
    for _ in range(iters):
        t0 = time.process_time()
        it.invoke()
        ms.append((time.process_time() - t0) * 1e3)
    return statistics.median(ms)


def ours_latency(model, threads, iters):
    """(median wall ms, median CPU ms) of the latency bench."""
    out = subprocess.run(
        ["cargo", "bench", "-q", "--bench", "latency", "--", model, str(iters), str(threads)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"median_ms=([0-9.]+).*cpu_ms=([0-9.]+)", out)
    if not m:
        sys.exit(f"unexpected output from the latency bench: {out}")
    return float(m.group(1)), float(m.group(2))


def timed_process(cmd):
    """(wall s, CPU s of the child: user + system) of one process."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu


def median_process(cmd, runs):
    res = [timed_process(cmd) for _ in range(runs)]
    return statistics.median(r[0] for r in res), statistics.median(r[1] for r in res)


LITERT_RUN = r"""
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
model, data, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
xs = np.load(data, mmap_mode="r")
it = Interpreter(model_path=model, num_threads=threads)
it.allocate_tensors()
d = it.get_input_details()[0]
for x in xs:
    it.set_tensor(d["index"], np.ascontiguousarray(x[None], dtype=np.float32))
    it.invoke()
"""


def litert_throughput(model, data, threads, runs=3):
    """(wall s, CPU s) of a Python process running every sample through LiteRT."""
    return median_process([sys.executable, "-c", LITERT_RUN, model, data, str(threads)], runs)


def ours_calibration(model, data, threads, runs=3):
    """(wall s, CPU s) of `tflquant calibrate`."""
    exe = os.path.join(ROOT, "target/release/tflquant")
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    return median_process([exe, "-q", "calibrate", model, "--data", data, "-o", f"{WORK}/ranges.json",
                           "--threads", str(threads)], runs)


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
    ap.add_argument("--calib-threads", type=int, default=2,
                    help="threads of both contenders in the calibration comparison")
    ap.add_argument("--model", help="another float model (default: MobileNetV2), or `encoder` "
                    "for a generated 4-layer transformer encoder")
    ap.add_argument("--data", help="its samples (.npy, one per row)")
    ap.add_argument("--skip-aeq", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    if a.model == "encoder":
        model, data = f"{WORK}/encoder.tflite", f"{WORK}/encoder_{a.samples}.npy"
        samples = make_encoder(model, data, a.samples)
    elif a.model:
        model, data = a.model, a.data
        samples = np.load(data)
    else:
        model = f"{WORK}/mobilenet_v2.tflite"
        make_model(model)
        data = f"{WORK}/calib_{a.samples}.npy"
        rng = np.random.default_rng(0)
        samples = rng.uniform(-1, 1, size=(a.samples, 224, 224, 3)).astype(np.float32)
        np.save(data, samples)
    n = len(samples)

    print(f"model {model} ({os.path.getsize(model) / 1e6:.1f} MB), threads {a.threads}")
    if not a.skip_latency:
        ours, ours_cpu = ours_latency(model, a.threads, a.iterations)
        lit_x = litert_latency(model, a.threads, a.iterations, xnnpack=True)
        lit_cpu = litert_cpu_latency(model, a.threads, a.iterations)
        lit_b = litert_latency(model, a.threads, a.iterations, xnnpack=False)
        print(f"latency median: tflquant {ours:.1f} ms (CPU {ours_cpu:.1f} ms) | LiteRT+XNNPACK "
              f"{lit_x:.1f} ms (CPU {lit_cpu:.1f} ms) | ratio wall {ours / lit_x:.2f}, CPU "
              f"{ours_cpu / lit_cpu:.2f} | LiteRT builtin kernels {lit_b:.1f} ms (ratio {ours / lit_b:.2f})")
    t = a.calib_threads
    # Paired: each contender in turn, so both see the same load; medians of 3.
    pairs = [(ours_calibration(model, data, t, runs=1), litert_throughput(model, data, t, runs=1))
             for _ in range(3)]
    oc, oc_cpu = (statistics.median(p[0][i] for p in pairs) for i in (0, 1))
    lc, lc_cpu = (statistics.median(p[1][i] for p in pairs) for i in (0, 1))
    print(f"{n} samples, {t} threads, median of 3 processes: tflquant calibrate {oc:.2f} s "
          f"(CPU {oc_cpu:.2f} s, {n / oc:.1f} samples/s) | LiteRT inference {lc:.2f} s (CPU "
          f"{lc_cpu:.2f} s, {n / lc:.1f} samples/s) | ratio wall {oc / lc:.2f}, CPU {oc_cpu / lc_cpu:.2f} "
          f"(goal <= 1.2)")
    if not a.skip_aeq:
        ac = aeq_calibration(model, samples, t)
        print(f"ai-edge-quantizer calibrate (the call alone) {ac:.1f} s ({n / ac:.1f} samples/s) | "
              f"ratio tflquant/aeq {oc / ac:.2f}")


if __name__ == "__main__":
    main()
