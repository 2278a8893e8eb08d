#!/usr/bin/env python3
"""Cost of `--target-sqnr` (issue #15: "aim for <= 5x the time of a plain int8
quantization on a MobileNet-sized model"). Run by hand.

On the MobileNetV2 set-up of benches/compare_aeq.py (keras MobileNetV2, weights=None,
batch-norm statistics from real photos, logits output; scikit-image photos, no network),
each run in its own process, in turn (paired: every command of a round sees the same
machine load): `tflquant quantize --mode int8 --calibration PHOTOS` and the same with
`--target-sqnr 30` and `--target-sqnr 40`. Prints per command the median wall time of
--runs rounds, the ratio to plain int8, the output SQNR on the 16 held-out photos
(LiteRT), the file size and the plan (operators int16x8 / float), and the load average
(the ratio, not the seconds, is the result on a shared machine).

    python benches/target_sqnr.py [--runs 3] [--samples 32] [--threads 2]

Needs numpy and ai-edge-litert (the repository's .venv has both); TensorFlow and
scikit-image only the first time, to make the model and photos in --work
(/tmp/tflquant_bench, shared with compare_aeq.py).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_aeq  # noqa: E402

ROOT = compare_aeq.ROOT
TARGETS = [30, 40]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--samples", type=int, default=32,
                   help="calibration photos (the first N of the 100), for every command")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/tflquant_bench")
    p.add_argument("--tflquant", default=os.path.join(ROOT, "target", "release", "tflquant"))
    a = p.parse_args()
    model, _, calib, test = compare_aeq.mobilenet_v2(a.work)
    out = os.path.join(a.work, "target_sqnr")
    os.makedirs(out, exist_ok=True)
    base = [a.tflquant, "-q", "quantize", model, "--mode", "int8", "--calibration", calib,
            "--samples", str(a.samples), "--threads", str(a.threads)]
    labels = ["int8"] + [f"--target-sqnr {t}" for t in TARGETS]
    cmds = {}
    for label in labels:
        stem = label.replace("--", "").replace(" ", "_")
        path = os.path.join(out, f"mnv2.{stem}.tflite")
        extra = [] if label == "int8" else label.split()
        cmds[label] = (path, base + ["-o", path, "--report", path + ".json"] + extra)
    load_before = os.getloadavg()
    times = {label: [] for label in labels}
    for _ in range(a.runs):
        for label in labels:
            t = time.perf_counter()
            subprocess.run(cmds[label][1], check=True)
            times[label].append(time.perf_counter() - t)
    load_after = os.getloadavg()
    xs = np.load(test)
    ref, _ = compare_aeq.run_litert(model, xs, a.threads)
    t_int8 = statistics.median(times["int8"])
    print(f"MobileNetV2 (logits), {a.samples} calibration photos, {a.threads} threads, "
          f"median of {a.runs} paired runs; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after (1 min), {os.cpu_count()} CPUs")
    for label in labels:
        path = cmds[label][0]
        t = statistics.median(times[label])
        y, _ = compare_aeq.run_litert(path, xs, a.threads)
        r = json.load(open(path + ".json"))
        plan = ""
        mp = r.get("mixed_precision")
        if mp:
            count = lambda p: sum(1 for x in mp["plan"] if x["precision"] == p)  # noqa: E731
            plan = (f"  plan {count('int16x8')} int16x8 / {count('float')} float of "
                    f"{len(mp['plan'])}, {mp['evaluations']} evaluations")
        print(f"  {label:18s} {t:8.2f} s  {t / t_int8:5.1f}x int8   SQNR {compare_aeq.sqnr(ref, y):6.2f} dB"
              f" (16 held-out photos, LiteRT)   {os.path.getsize(path) / 2**20:5.2f} MiB{plan}")


if __name__ == "__main__":
    main()
