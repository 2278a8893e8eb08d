"""Load sample data for a model and run it in LiteRT (ai-edge-litert Interpreter).

Reference outputs are computed with ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``:
the builtin optimized kernels without the XNNPACK delegate, i.e. the TFLite
kernels a reimplementation follows (XNNPACK may round int8 results
differently).
"""

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from pathlib import Path

from common import TESTDATA, input_names


def data_path(stem, split):
    """testdata/<stem>.<split>.npy or .npz, whichever exists."""
    for ext in (".npy", ".npz"):
        p = TESTDATA / f"{stem}.{split}{ext}"
        if p.exists():
            return p
    raise FileNotFoundError(f"no data file for {stem}.{split}")


def make_interpreter(model_path):
    # custom ops LiteRT runs only through its XNNPACK delegate (registry.XNNPACK_MODELS)
    import registry
    resolver = (OpResolverType.AUTO if Path(model_path).name in registry.XNNPACK_MODELS
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it = Interpreter(model_path=str(model_path), experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    return it


def load_inputs(model_path, stem, split):
    """{input tensor name: array [N, ...]} for the model's inputs (npy -> its single input)."""
    names = input_names(Path(model_path).read_bytes())  # schema, so it works for custom_op too
    p = data_path(stem, split)
    if p.suffix == ".npy":
        assert len(names) == 1, f"{model_path.name}: .npy data but {len(names)} inputs"
        return {names[0]: np.load(p)}
    z = np.load(p)
    missing = set(names) - set(z.files)
    assert not missing, f"{p.name} lacks inputs {missing}"
    return {n: z[n] for n in names}


def _to_input_dtype(x, detail):
    """Float data -> the input tensor's dtype (quantize with the tensor's scale/zero point for int8)."""
    dt = detail["dtype"]
    if np.issubdtype(dt, np.floating) or x.dtype == dt:
        return x.astype(dt)
    scale, zp = detail["quantization"]
    if scale:
        info = np.iinfo(dt)
        return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dt)
    return x.astype(dt)


def run_samples(model_path, inputs, count):
    """Run the first ``count`` samples one at a time (batch 1), variables reset before each.

    Returns {output tensor name: array [count, *output tensor shape]}, in the
    model's output order.
    """
    it = make_interpreter(model_path)
    in_det = {d["name"]: d for d in it.get_input_details()}
    out_det = it.get_output_details()
    results = {d["name"]: [] for d in out_det}
    for i in range(count):
        # Variable tensors (the LSTM's h/c state) persist across Invoke() in
        # TFLite; reset them so every sample is an independent run.
        it.reset_all_variables()
        for name, arr in inputs.items():
            d = in_det[name]
            it.set_tensor(d["index"], _to_input_dtype(arr[i:i + 1], d))
        it.invoke()
        for d in out_det:
            results[d["name"]].append(it.get_tensor(d["index"]).copy())
    # always [count, *output_shape] (unambiguous also for outputs without a batch dim)
    return {k: np.stack(v) for k, v in results.items()}


def dequantize_output(model_path, name, values):
    """Float view of an output (dequantized if the tensor is quantized)."""
    it = make_interpreter(model_path)
    d = [d for d in it.get_output_details() if d["name"] == name][0]
    scale, zp = d["quantization"]
    if scale:
        return (values.astype(np.float32) - zp) * scale
    return values
