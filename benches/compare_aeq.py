#!/usr/bin/env python3
"""tflquant against ai-edge-quantizer (and TF's converter), side by side. Run by hand.

Two comparisons, each contender in its own process (time = median of --runs, peak
memory = max resident set size of the process):

  dynamic   `tflquant quantize --mode dynamic` vs ai-edge-quantizer's `dynamic_wi8_afp32`
            recipe on a ~300 MB float model (4 FULLY_CONNECTED layers of 4352×4352,
            made by `cargo bench --bench quantize` in the work directory).
  int8      full int8 incl. calibration on 100 samples of a MobileNetV2-sized model
            (keras MobileNetV2, weights=None, 224×224): `tflquant quantize --mode int8
            --calibration` vs `static_wi8_ai8` (calibrate + quantize); SQNR of both
            against the float model on 16 held-out inputs (LiteRT); LiteRT latency of
            our int8 model vs TF converter's int8 model of the same network and data.

Inputs are real photos (scikit-image's bundled samples, random 224×224 crops, scaled to
[-1, 1] as MobileNetV2 expects). Needs a Python with tensorflow, ai-edge-litert,
ai-edge-quantizer and scikit-image (outside the repository), and a Rust toolchain:

    python -m venv /opt/aeq && /opt/aeq/bin/pip install tensorflow-cpu ai-edge-quantizer scikit-image
    /opt/aeq/bin/python benches/compare_aeq.py [dynamic|int8|all] [--runs 3] [--threads 2]

Generated files go to /tmp/tflquant_bench (override with --work).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tflquant_exe():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "tflquant")


def timed_with_time(cmd):
    """(wall s, peak RSS MB, CPU s = user + system) of the child, from GNU time."""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M %U %S"] + cmd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    kb, user, sys_ = r.stderr.strip().splitlines()[-1].split()
    return dt, int(kb) / 1024.0, float(user) + float(sys_)


def median_runs(n, cmd):
    res = [timed_with_time(cmd) for _ in range(n)]
    return statistics.median(r[0] for r in res), max(r[1] for r in res)


def paired_runs(n, cmd_a, cmd_b):
    """Runs a and b in turn n times (paired: both see the same load); per command the
    (median wall s, max peak RSS MB, median CPU s)."""
    ra, rb = [], []
    for _ in range(n):
        ra.append(timed_with_time(cmd_a))
        rb.append(timed_with_time(cmd_b))
    return [(statistics.median(r[0] for r in rs), max(r[1] for r in rs),
             statistics.median(r[2] for r in rs)) for rs in (ra, rb)]


AEQ_SCRIPT = r"""
import sys, numpy as np
from ai_edge_quantizer import quantizer, recipe
model, out, which = sys.argv[1], sys.argv[2], sys.argv[3]
q = quantizer.Quantizer(model)
if which == "dynamic":
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    q.quantize().export_model(out, overwrite=True)
else:
    data = np.load(sys.argv[4])
    threads = int(sys.argv[5])
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model)
    sig = it.get_signature_list()
    key = next(iter(sig))
    name = sig[key]["inputs"][0]
    calib = {key: [{name: x[None]} for x in data]}
    res = q.calibrate(calib, num_threads=threads)
    q.quantize(res).export_model(out, overwrite=True)
"""


def bench_dynamic(a, exe):
    model = os.path.join(a.work, "fc_stack_300mb.tflite")
    if not os.path.exists(model):
        env = dict(os.environ, TFLQUANT_BENCH_DIR=a.work)
        subprocess.run(["cargo", "bench", "--bench", "quantize"], cwd=ROOT, env=env, check=True)
    size = os.path.getsize(model) / 1e6
    ours = os.path.join(a.work, "fc_dynamic.tflquant.tflite")
    theirs = os.path.join(a.work, "fc_dynamic.aeq.tflite")
    t_ours, m_ours = median_runs(a.runs, [exe, "-q", "quantize", model, "-o", ours, "--mode", "dynamic"])
    t_aeq, m_aeq = median_runs(a.runs, [sys.executable, "-c", AEQ_SCRIPT, model, theirs, "dynamic"])
    print(f"dynamic int8, {size:.0f} MB FC stack (median of {a.runs}):")
    print(f"  tflquant           {t_ours:8.2f} s   peak RSS {m_ours:8.0f} MB   output {os.path.getsize(ours)/1e6:.1f} MB")
    print(f"  ai-edge-quantizer  {t_aeq:8.2f} s   peak RSS {m_aeq:8.0f} MB   output {os.path.getsize(theirs)/1e6:.1f} MB")
    print(f"  time ratio aeq/tflquant {t_aeq / t_ours:6.1f}×   memory ratio {m_aeq / m_ours:5.1f}×")


def photos(n, seed):
    import skimage.data as d
    from skimage.transform import resize
    imgs = [d.astronaut(), d.coffee(), d.chelsea(), d.rocket(), d.immunohistochemistry()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        h, w = img.shape[:2]
        s = int(rng.integers(224, min(h, w) + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = resize(img[y:y + s, x:x + s], (224, 224), anti_aliasing=True)
        out.append((crop * 2.0 - 1.0).astype(np.float32))
    return np.stack(out)


def run_litert(model, xs, threads, iters=None):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model, num_threads=threads)
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in xs:
        v = x[None]
        if d["dtype"] != np.float32:  # integer interface: quantize with the input's parameters
            s, z = d["quantization"]
            info = np.iinfo(d["dtype"])
            v = np.clip(np.round(v / s) + z, info.min, info.max)
        it.set_tensor(d["index"], v.astype(d["dtype"]))
        it.invoke()
        y = it.get_tensor(o["index"]).astype(np.float64)
        if o["dtype"] != np.float32:
            s, z = o["quantization"]
            y = (y - z) * s
        outs.append(y.copy())
    lat = None
    if iters:
        ts = []
        for _ in range(iters):
            t = time.perf_counter()
            it.invoke()
            ts.append(time.perf_counter() - t)
        lat = statistics.median(ts)
    return np.stack(outs), lat


def sqnr(ref, y):
    e = ((ref - y) ** 2).sum()
    return float("inf") if e == 0 else 10 * np.log10((ref ** 2).sum() / e)


def mobilenet_v2(work):
    """The MobileNetV2 set-up (made once in `work`, TensorFlow needed only then): the
    float model, TF's int8 conversion of it, 100 calibration photos, 16 test photos."""
    # Logits, not probabilities: with random weights (weights=None, no download) the
    # softmax of 1000 classes is almost uniform and its int8 output (scale 1/256) says
    # nothing about accuracy.
    model = os.path.join(work, "mobilenet_v2_logits.tflite")
    tf_int8 = os.path.join(work, "mnv2_logits.int8.tf.tflite")
    calib = os.path.join(work, "photos_calib_100.npy")
    test = os.path.join(work, "photos_test_16.npy")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(calib):
        np.save(calib, photos(100, 1))
        np.save(test, photos(16, 2))
    if not (os.path.exists(model) and os.path.exists(tf_int8)):
        import tensorflow as tf
        # One Keras network for both: the float model every tool quantizes, and TF's own
        # int8 conversion of it with the same calibration photos.
        tf.random.set_seed(0)
        m = tf.keras.applications.MobileNetV2(weights=None, classifier_activation=None)
        # With random weights and the default batch-norm statistics, activations shrink
        # layer by layer (logits ~1e-11): a degenerate network. Give every batch norm the
        # statistics of real photos (one pass in training mode with momentum 0), so the
        # network computes O(1) activations like a trained one.
        for layer in m.layers:
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                layer.momentum = 0.0
        m(np.load(calib)[:32], training=True)
        with open(model, "wb") as f:
            f.write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
        c = tf.lite.TFLiteConverter.from_keras_model(m)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        cd = np.load(calib)
        c.representative_dataset = lambda: ([x[None]] for x in cd)
        with open(tf_int8, "wb") as f:
            f.write(c.convert())
    return model, tf_int8, calib, test


def bench_int8(a, exe):
    model, tf_int8, calib, test = mobilenet_v2(a.work)
    ours = os.path.join(a.work, "mnv2_logits.int8.tflquant.tflite")
    theirs = os.path.join(a.work, "mnv2_logits.int8.aeq.tflite")
    (t_ours, m_ours, c_ours), (t_aeq, m_aeq, c_aeq) = paired_runs(
        a.runs,
        [exe, "-q", "quantize", model, "-o", ours, "--mode", "int8", "--calibration", calib,
         "--threads", str(a.threads)],
        [sys.executable, "-c", AEQ_SCRIPT, model, theirs, "int8", calib, str(a.threads)])
    xs = np.load(test)
    ref, lat_f = run_litert(model, xs, a.threads, iters=30)
    y_ours, lat_ours = run_litert(ours, xs, a.threads, iters=30)
    y_aeq, lat_aeq = run_litert(theirs, xs, a.threads, iters=30)
    y_tf, lat_tf = run_litert(tf_int8, xs, a.threads, iters=30)
    print(f"int8 MobileNetV2 incl. calibration on 100 photos (median of {a.runs}, {a.threads} threads):")
    print(f"  tflquant           {t_ours:8.2f} s   peak RSS {m_ours:6.0f} MB   SQNR {sqnr(ref, y_ours):6.2f} dB")
    print(f"  ai-edge-quantizer  {t_aeq:8.2f} s   peak RSS {m_aeq:6.0f} MB   SQNR {sqnr(ref, y_aeq):6.2f} dB")
    print(f"  TF converter int8                                          SQNR {sqnr(ref, y_tf):6.2f} dB (same network, same data)")
    print(f"  time ratio aeq/tflquant {t_aeq / t_ours:6.1f}× (wall, {t_ours:.2f} s vs {t_aeq:.2f} s), "
          f"{c_aeq / c_ours:.1f}× (CPU, user + system: {c_ours:.2f} s vs {c_aeq:.2f} s)")
    print(f"  LiteRT latency (median of 30): float {lat_f*1e3:.2f} ms, tflquant int8 {lat_ours*1e3:.2f} ms, "
          f"TF int8 {lat_tf*1e3:.2f} ms, aeq int8 {lat_aeq*1e3:.2f} ms; ours/TF {lat_ours/lat_tf:.2f}×")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("which", nargs="?", default="all", choices=["dynamic", "int8", "all"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/tflquant_bench")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    exe = tflquant_exe()
    if a.which in ("dynamic", "all"):
        bench_dynamic(a, exe)
    if a.which in ("int8", "all"):
        bench_int8(a, exe)


if __name__ == "__main__":
    main()
