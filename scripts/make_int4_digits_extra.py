"""Write scripts/int4_digits_extra.npz: 512 more sklearn digits for scripts/int4_accuracy.py.

They are train[64:576] of testdata/gen/data.py's split (neither the models' calibration nor their
held-out samples; they are training samples of the float models, so they measure quantization
error, not accuracy). Pixels are stored as uint8 (the digits' 0..16 scale), labels as uint8.
Run with a Python that has scikit-learn: `python scripts/make_int4_digits_extra.py`.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testdata", "gen"))
import data  # noqa: E402

d = data.digits()
idx = d["train"][64:576]
pixels = np.rint(d["x"][idx] * 16).astype(np.uint8)
labels = d["y"][idx].astype(np.uint8)
np.savez_compressed(os.path.join(ROOT, "scripts", "int4_digits_extra.npz"), pixels=pixels, labels=labels)
