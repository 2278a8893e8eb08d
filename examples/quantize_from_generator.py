"""Quantize a float .tflite model to int8 with calibration samples from a generator.

    pip install .            # at the repository root: builds and installs `tflquant`
    python examples/quantize_from_generator.py [OUTDIR]

Calibration data usually comes out of a pipeline, not a file: here a generator reads
8x8 digit images and normalises them one at a time, as a `tf.data` pipeline or TF's
`representative_dataset` would. tflquant pulls one sample, runs it, drops it: memory
stays flat however many samples the generator yields. The result is checked against
the float model on held-out samples, with an HTML report of the error along the graph.
"""

import sys
from pathlib import Path

import numpy as np

import tflquant

root = Path(__file__).resolve().parent.parent
model = root / "testdata" / "cnn_digits.tflite"
out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
out = out_dir / "cnn_digits.int8.tflite"
page = out_dir / "cnn_digits.int8.html"


def representative_dataset():
    """Yields one [1, 8, 8, 1] float32 sample at a time (pixels in [0, 1])."""
    pixels = np.load(root / "testdata" / "cnn_digits.calib.npy")  # stands in for a pipeline
    for image in pixels:
        yield [image[None].astype(np.float32)]


held_out = np.load(root / "testdata" / "cnn_digits.test.npy")  # [N, 8, 8, 1]

report = tflquant.quantize(
    model,
    out,
    mode="int8",
    calibration=representative_dataset(),
    validate=held_out,  # an array [N, ...] works too, as does a path
    html=page,
)
print(report["summary"])
for o in report["validation"]["outputs"]:
    print(f"output {o['name']}: SQNR {o['sqnr_db']:.2f} dB, top-1 agreement {o['top1']:.2%}")
print(f"wrote {out} and {page}")
