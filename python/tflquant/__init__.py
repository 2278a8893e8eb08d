"""tflquant: read, inspect and quantize TensorFlow Lite (LiteRT) models from Python.

The same library as the ``tflquant`` command line, with the same names and defaults:

>>> import numpy as np, tflquant
>>> def samples():                       # any iterable: a generator, tf.data, a list
...     for x in np.load("testdata/cnn_digits.calib.npy"):
...         yield x                      # one sample: [8, 8, 1] or [1, 8, 8, 1]
>>> report = tflquant.quantize("testdata/cnn_digits.tflite", "cnn.int8.tflite",
...                            mode="int8", calibration=samples())
>>> report["summary"]
'int8: 57.9 KiB → 21.9 KiB (2.65× smaller), ...'

Functions return the command's JSON document as a dict:

============================  =====================================================
``inspect(path)``             ``tflquant inspect MODEL --json``
``calibrate(model, data)``    ``tflquant calibrate MODEL --data DATA`` (ranges.json)
``quantize(src, dst, mode)``  ``tflquant quantize ... --report`` (+ ``summary``,
                              and ``validation`` with ``validate=DATA``)
``compare(float, quant, data)`` ``tflquant compare ... --json``
============================  =====================================================

Keyword options are the command line's flags with ``_`` for ``-`` (``--min-elements 0``
is ``min_elements=0``, ``--per-tensor`` is ``per_tensor=True``); ``None`` means the
default.

Data (``data``, ``calibration``, ``validate``) is one of:

* a path: ``.npy``, ``.npz`` or a directory of images, exactly as on the command line;
* a NumPy array ``[N, ...]`` (samples on the first axis) for a single-input model;
* a dict ``{input name: array [N, ...]}`` (keys as in an ``.npz``: the input tensor's
  name, its signature name, or ``input_0``, ``input_1``...);
* any iterable or generator yielding one sample at a time: an array (with or without
  the batch dimension of 1), a list of arrays (one per input, in input order), or a
  dict by input name. TF's ``representative_dataset`` functions work as they are
  (``calibration=representative_dataset()``).

Samples are pulled one at a time, run and dropped: memory stays flat whatever N. A
progress bar shows on stderr when it is a terminal (``quiet=True`` hides it).
``threads=N`` sizes the kernels' thread pool, which is global: the first call that
gives it decides for the rest of the process.
float32 samples for an int8/uint8/int16 input with quantization parameters are
quantized with them; anything else must have the input's type (float64 is refused, as
for ``.npy``: use ``a.astype(np.float32)``).

Errors: bad input or usage (the command line's exit code 2: a malformed model, data
that does not fit, an option that does not apply) raises ``ValueError`` with the
command line's message; I/O failures raise ``OSError``; unknown keywords
``TypeError``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Iterator, List, Optional, Tuple

from . import _native

__all__ = ["inspect", "calibrate", "quantize", "compare", "__version__"]

__version__: str = _native.__version__

# One array of one sample as the native module reads it.
_Array = Tuple[Optional[str], str, Tuple[int, ...], bytes]


def _np():
    import numpy

    return numpy


def _array(key: Optional[str], x: Any) -> _Array:
    """One input's array of one sample: contiguous, little-endian, as bytes."""
    np = _np()
    a = np.asarray(x)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    a = np.ascontiguousarray(a)
    return (key, a.dtype.name, tuple(int(d) for d in a.shape), a.tobytes())


def _sample(item: Any) -> List[_Array]:
    """One sample from an iterable: an array, a list/tuple of arrays, or a dict."""
    np = _np()
    if isinstance(item, Mapping):
        return [_array(str(k), v) for k, v in item.items()]
    if isinstance(item, (list, tuple)) and item and all(
        hasattr(v, "__array__") or isinstance(v, np.ndarray) for v in item
    ):
        return [_array(None, v) for v in item]
    return [_array(None, item)]


def _rows(arrays: Mapping[str, Any], what: str) -> Iterator[List[_Array]]:
    np = _np()
    cols = {str(k): np.asarray(v) for k, v in arrays.items()}
    ns = {k: (v.shape[0] if v.ndim else None) for k, v in cols.items()}
    if any(n is None for n in ns.values()):
        raise ValueError(f"{what}: every array of the dict needs samples on its first axis [N, ...]")
    if len(set(ns.values())) > 1:
        raise ValueError(f"{what}: the arrays hold different numbers of samples: {ns}")
    n = next(iter(ns.values()), 0)
    for i in range(n):
        yield [_array(k, v[i]) for k, v in cols.items()]


def _source(data: Any, what: str) -> Any:
    """A path (as ``str``) or a stream ``("stream", iterator, length, what)``."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    np = _np()
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise ValueError(f"{what}: a scalar; give samples on the first axis [N, ...]")
        return ("stream", (_sample(data[i]) for i in range(data.shape[0])), int(data.shape[0]), what)
    if isinstance(data, Mapping):
        n = None
        for v in data.values():
            n = int(np.shape(v)[0]) if np.ndim(v) else None
            break
        return ("stream", _rows(data, what), n, what)
    if isinstance(data, Iterable):
        n = len(data) if hasattr(data, "__len__") else None
        return ("stream", (_sample(x) for x in data), n, what)
    raise TypeError(
        f"{what}: expected a path, a NumPy array [N, ...], a dict of arrays or an iterable of "
        f"samples, got {type(data).__name__}"
    )


def _litert_default(options: dict, runtime_key: str) -> None:
    """``runtime="litert"``: use the ``ai_edge_litert`` package of this interpreter unless
    ``litert_lib`` or ``$TFLQUANT_LITERT_LIB`` says otherwise."""
    if options.get(runtime_key) != "litert" or options.get("litert_lib") is not None:
        return
    if os.environ.get("TFLQUANT_LITERT_LIB"):
        return
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is not None and spec.submodule_search_locations:
        options["litert_lib"] = list(spec.submodule_search_locations)[0]


def inspect(path: "str | os.PathLike[str]") -> dict:
    """What is inside a model: ``tflquant inspect MODEL --json`` as a dict (version,
    signatures, operator codes, subgraphs with operators and tensors, quantization
    parameters in full, ``weight_bytes_by_dtype``, ``quantized_tensors``)."""
    return json.loads(_native.inspect(os.fspath(path)))


def calibrate(model: "str | os.PathLike[str]", data: Any, **options: Any) -> dict:
    """Per-tensor ranges of ``model`` over ``data``: the ``ranges.json`` document
    (``{"observer", "samples", "tensors": [{"subgraph", "tensor", "name", "min", "max"}]}``).

    Options: ``observer`` (``"minmax"`` (default), ``"extrapolate"``, ``"ema:C"``, ``"percentile:P"``,
    ``"mse"``, ``"entropy"``), ``samples`` (at most N), the image options ``mean``,
    ``std``, ``scale``, ``offset``, ``rgb``, ``bgr``, ``threads``, ``quiet``, ``reset_state``. Save the
    result with ``json.dump`` and pass it to ``quantize(..., ranges=path)``.
    """
    return json.loads(_native.calibrate(os.fspath(model), _source(data, "data"), **options))


def quantize(
    src: "str | os.PathLike[str]",
    dst: "str | os.PathLike[str]",
    mode: str,
    calibration: Any = None,
    **options: Any,
) -> dict:
    """Quantize the float model ``src`` into ``dst``; returns the ``--report`` document
    plus ``summary`` (the command line's one-line summary) and, with ``validate=``,
    ``validation`` (the ``compare`` document of ``dst`` against ``src``).

    ``mode``: ``"dynamic"``, ``"float16"``, ``"weight-int8"``, ``"weight-int4"``,
    ``"int8"``, ``"int16x8"``, ``"qat"``. The full-integer modes need ``calibration``
    (data, see the module docs) or ``ranges="ranges.json"``.

    Options (the command line's, default in brackets): ``per_tensor`` [False],
    ``min_elements`` [1024; 0 for float16], ``block_size`` [None: per channel],
    ``ranges``, ``observer`` ["minmax"], ``interface`` ["float"; "int8", "uint8",
    "int16"], ``strict`` [False], ``allow_larger`` [False], ``bias`` ["int32"/"int64" by mode], ``validate``
    (data), ``validate_runtime`` ["reference"; "litert"], ``html`` (a path: the
    validation as a self-contained page, needs ``validate``), ``litert_lib``, and the
    data options ``samples`` (limits the calibration set), ``mean``, ``std``, ``scale``,
    ``offset``, ``rgb``, ``bgr``, ``threads``, ``quiet``, ``reset_state``.
    """
    if "validate" in options:
        options["validate"] = _source(options["validate"], "validate")
    _litert_default(options, "validate_runtime")
    doc = _native.quantize(
        os.fspath(src), os.fspath(dst), mode, _source(calibration, "calibration"), **options
    )
    return json.loads(doc)


def compare(
    float: "str | os.PathLike[str]",
    quant: "str | os.PathLike[str]",
    data: Any,
    **options: Any,
) -> dict:
    """The error of ``quant`` against ``float`` over ``data``: the ``compare --json``
    document (``outputs`` with ``sqnr_db``, ``mse``, ``max_abs``, ``cosine``, ``top1``...;
    with ``tensors=True`` every intermediate tensor, worst first).

    Options: ``runtime`` ["reference"; "litert": the official runtime, by default the
    ``ai_edge_litert`` package of this Python], ``tensors`` [False], ``sort`` ["local";
    "sqnr"], ``top`` [None], ``html`` (a path: a self-contained page with the error
    along the graph), ``litert_lib``, and the data options ``samples``, ``mean``,
    ``std``, ``scale``, ``offset``, ``rgb``, ``bgr``, ``threads``, ``quiet``, ``reset_state``.
    """
    _litert_default(options, "runtime")
    return json.loads(
        _native.compare(os.fspath(float), os.fspath(quant), _source(data, "data"), **options)
    )
