#!/usr/bin/env python3
"""Two tflquant binaries on the same quantize command, alternating, process by process.

    python3 benches/pair_bins.py BIN_A BIN_B MODEL [--runs N] [-- extra quantize args]

Each round runs A then B (`tflquant -q quantize MODEL -o OUT --mode MODE ...`, the output
removed before each run) and records wall time, user and system CPU time and peak RSS
(`os.wait4`). Prints the medians, the median of the per-round B/A ratios (the machine's
load moves both runs of a round; their ratio is steadier than either time) and whether the
two outputs are byte-identical. Used for the paired figures in docs/PERFORMANCE.md; the
memory bench (`cargo bench --bench memory`) is the one paired with `cp`.
"""
import argparse
import os
import statistics as st
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--mode", default="weight-int4")
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = ap.parse_args(argv)
    out_dir = tempfile.mkdtemp(prefix="tflquant-pair-", dir=os.path.dirname(os.path.abspath(args.model)))
    res = {"A": [], "B": []}
    outs = {t: os.path.join(out_dir, f"{t}.tflite") for t in res}
    for _ in range(args.runs):
        for t, binary in (("A", args.a), ("B", args.b)):
            if os.path.exists(outs[t]):
                os.remove(outs[t])
            cmd = [binary, "-q", "quantize", args.model, "-o", outs[t], "--mode", args.mode] + extra
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            if status != 0:
                sys.exit(f"{' '.join(cmd)} failed ({status})")
            res[t].append((wall * 1e3, ru.ru_utime * 1e3, ru.ru_stime * 1e3, ru.ru_maxrss / 1024))
    for t in res:
        w, u, s, r = zip(*res[t])
        cpu = [a + b for a, b in zip(u, s)]
        print(f"{t}: wall {st.median(w):6.1f} ms  user {st.median(u):6.1f}  sys {st.median(s):5.1f}  "
              f"cpu {st.median(cpu):6.1f} ms  peak RSS {max(r):.1f} MB")
    rw = st.median([b[0] / a[0] for a, b in zip(res["A"], res["B"])])
    rc = st.median([(b[1] + b[2]) / (a[1] + a[2]) for a, b in zip(res["A"], res["B"])])
    print(f"B/A: wall {rw:.3f}  cpu {rc:.3f}  ({args.runs} rounds, load {os.getloadavg()[0]:.2f})")
    same = open(outs["A"], "rb").read() == open(outs["B"], "rb").read()
    print("outputs byte-identical" if same else "OUTPUTS DIFFER")
    for o in outs.values():
        os.remove(o)
    os.rmdir(out_dir)


if __name__ == "__main__":
    main()
