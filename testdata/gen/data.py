"""Real sample data for training, calibration and held-out tests.

Only data bundled with the installed packages is used (no downloads):
  * scikit-learn ``load_digits()``: 1797 8x8 grey digit images, pixel values
    0..16, scaled here to [0, 1];
  * scikit-image bundled photos (``skimage.data.astronaut/coffee/chelsea/...``),
    down-scaled and cut into small RGB crops on a fixed grid, values in [0, 1].

All splits are deterministic (fixed RandomState / fixed crop grids).
"""

import numpy as np
from skimage import data as skdata
from skimage.transform import resize
from sklearn.datasets import load_digits

N_CALIB = 64
N_TEST = 32

_digits_cache = None


def digits():
    """Return dict with x (N,8,8) float32 in [0,1], y (N,) int64 and the split indices.

    ``test`` (32 images) is never used for training; ``calib`` (64 images) is a
    fixed subset of the training pool; ``train`` is everything except ``test``.
    """
    global _digits_cache
    if _digits_cache is None:
        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)
        y = d.target.astype(np.int64)
        perm = np.random.RandomState(0).permutation(len(x))
        test = perm[:N_TEST]
        train = perm[N_TEST:]
        calib = train[:N_CALIB]
        _digits_cache = dict(x=x, y=y, train=train, calib=calib, test=test)
    return _digits_cache


def digits_split(split):
    d = digits()
    idx = d[split]
    return d["x"][idx], d["y"][idx]


# Photos split by image so that calibration and test crops never overlap.
_CALIB_PHOTOS = ("astronaut", "coffee", "chelsea")
_TEST_PHOTOS = ("rocket", "immunohistochemistry")


def _photo(name):
    img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    return img.astype(np.float32) / 255.0


def photo_crops(split, size, count, scale_to=64):
    """``count`` RGB crops of ``size`` x ``size`` (float32 [0,1], shape (count,size,size,3)).

    Each photo is first resized (anti-aliased) so its short side is
    ``scale_to`` pixels, then crops are taken on a regular grid, cycling over
    the photos of the split ('calib' or 'test').
    """
    names = _CALIB_PHOTOS if split == "calib" else _TEST_PHOTOS
    per_photo = []
    for name in names:
        img = _photo(name)
        h, w = img.shape[:2]
        s = scale_to / min(h, w)
        img = resize(img, (round(h * s), round(w * s)), anti_aliasing=True,
                     preserve_range=True).astype(np.float32)
        h, w = img.shape[:2]
        crops = []
        step = max(1, size // 2)
        for r in range(0, h - size + 1, step):
            for c in range(0, w - size + 1, step):
                crops.append(img[r:r + size, c:c + size])
        # spread the picks over the whole photo, deterministically
        crops = np.stack(crops)
        pick = np.linspace(0, len(crops) - 1, num=min(len(crops), count)).round().astype(int)
        per_photo.append(crops[pick])
    # interleave photos
    out = []
    i = 0
    while len(out) < count:
        src = per_photo[i % len(per_photo)]
        j = i // len(per_photo)
        if j < len(src):
            out.append(src[j])
        i += 1
        if i > count * len(per_photo) * 2:
            break
    return np.clip(np.stack(out[:count]), 0.0, 1.0).astype(np.float32)


# QAT split (qat.py): a larger held-out set, since the QAT accuracy comparison uses
# the whole test split.  Same permutation as digits(): the QAT test set is the
# first N_QAT_TEST permuted digits (its first 32 are the usual 32 test digits, in
# the same order), the QAT model trains on the rest, and its calibration set is the
# first N_CALIB of those training digits.
N_QAT_TEST = 360


def digits_qat_split(split):
    """'train' / 'calib' / 'test' of the QAT split: (x (N,8,8) float32 in [0,1], y (N,) int64)."""
    d = digits()
    perm = np.concatenate([d["test"], d["train"]])
    idx = {"test": perm[:N_QAT_TEST], "train": perm[N_QAT_TEST:],
           "calib": perm[N_QAT_TEST:N_QAT_TEST + N_CALIB]}[split]
    return d["x"][idx], d["y"][idx]
