#!/usr/bin/env python3
"""Runs models in the official LiteRT interpreter for tflquant's tests.

Commands (all files are NumPy .npz; arrays hold samples on the first axis):

  run MODEL INPUTS.npz OUTPUTS.npz [--all-tensors] [--stream] [--builtin]
      INPUTS holds `input_0`, `input_1`, ... in the order of the model's inputs
      (subgraph 0), each of shape [N, ...]; sample i is reshaped to the model input's
      shape; variable tensors are reset before each sample (reset_all_variables, which
      leaves resource variables alone), or with --stream nothing is reset: the samples
      run as one stream through one interpreter. OUTPUTS gets `output_0`,
      ... stacked over the N samples. With
      --all-tensors it also gets `t<index>` for every tensor of subgraph 0 that has a
      value after invoke (interpreter built with experimental_preserve_all_tensors and
      without the default XNNPACK delegate, whose partitions leave intermediates unset).
      --builtin: builtin kernels only (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
      to check what runs without XNNPACK; the default is the Interpreter's default
      (XNNPACK applied).

  schema MODEL OUT.json
      What the official schema's Python reader (ai_edge_litert.schema_py_generated)
      sees: per subgraph the tensors (name, dtype, shape, quantization) and operators
      (builtin op = max(deprecated_builtin_code, builtin_code), inputs, outputs).

  metrics FLOAT QUANT INPUTS.npz OUT.json
      What `tflquant compare --runtime litert` must print, computed independently with
      NumPy: both models run sample by sample in the default Interpreter (XNNPACK, like
      LiteRT's C API default); INPUTS holds float samples `input_0`, ... for the float
      model, quantized for an integer input of QUANT with its scale/zero point (float32
      division, round half away from zero, clamp); quantized integer outputs are
      dequantized in float64 as (q - zero_point) * scale. Per output, over all samples
      flattened, in float64: sqnr_db = 10 log10(sum r^2 / sum (r-t)^2), mse, max_abs,
      cosine, and top1 (argmax agreement per sample) for [1, C] outputs with C >= 2.
      OUT gets {"outputs": [{"sqnr_db", "mse", "max_abs", "cosine", "top1"}, ...]}
      (infinities as null).

Exit code 0 on success; on failure the message is on stderr and the code is 1.
"""
import json
import sys

import numpy as np


SUPPORTED_DTYPES = {"float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                    "uint32", "int64", "uint64", "bool"}


def load_interpreter(path, all_tensors=False, builtin=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    if builtin and not all_tensors:
        return Interpreter(
            model_path=path,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    if all_tensors:
        # The default XNNPACK delegate runs whole partitions itself and leaves their
        # intermediate tensors unwritten: builtin kernels only, so every tensor is real.
        return Interpreter(
            model_path=path,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    return Interpreter(model_path=path)


def cmd_run(model, inputs_path, outputs_path, all_tensors, stream=False, builtin=False):
    it = load_interpreter(model, all_tensors, builtin)
    it.allocate_tensors()
    ins = it.get_input_details()
    outs = it.get_output_details()
    data = np.load(inputs_path)
    arrays = [data[f"input_{i}"] for i in range(len(ins))]
    n = arrays[0].shape[0] if arrays else 1
    results = {f"output_{i}": [] for i in range(len(outs))}
    tensor_vals = {}
    for s in range(n):
        # Samples are independent: variable tensors (LSTM state) start from their
        # initial values, as in testdata's expected outputs.
        if not stream:
            it.reset_all_variables()
        for d, a in zip(ins, arrays):
            x = a[s]
            if x.dtype != d["dtype"]:
                raise SystemExit(f"input {d['name']}: got {x.dtype}, model wants {d['dtype']}")
            it.set_tensor(d["index"], x.reshape(d["shape"]))
        it.invoke()
        for i, d in enumerate(outs):
            results[f"output_{i}"].append(it.get_tensor(d["index"]).copy())
        if all_tensors:
            for d in it.get_tensor_details():
                try:
                    v = it.get_tensor(d["index"])
                except ValueError:
                    continue  # no data (e.g. an unused optional tensor)
                v = np.array(v, copy=True)
                if v.dtype == np.float16:
                    v = v.astype(np.float32)  # .npz readers need not know half floats
                elif v.dtype.name not in SUPPORTED_DTYPES:
                    continue  # e.g. int4 or string tensors
                tensor_vals.setdefault(f"t{d['index']}", []).append(v)
    out = {k: np.stack(v) for k, v in results.items()}
    for k, v in tensor_vals.items():
        if len(v) == n and all(x.shape == v[0].shape for x in v):
            out[k] = np.stack(v)
    np.savez(outputs_path, **out)


def cmd_schema(model, out_path):
    from ai_edge_litert import schema_py_generated as S
    buf = open(model, "rb").read()
    m = S.Model.GetRootAsModel(buf, 0)
    type_names = {v: k for k, v in vars(S.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        codes.append(max(c.DeprecatedBuiltinCode(), c.BuiltinCode()))
    subgraphs = []
    for si in range(m.SubgraphsLength()):
        sg = m.Subgraphs(si)
        tensors = []
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            q = t.Quantization()
            quant = None
            if q is not None and q.ScaleLength() > 0:
                quant = {
                    "scale": [float(x) for x in q.ScaleAsNumpy()],
                    "zero_point": [int(x) for x in q.ZeroPointAsNumpy()] if q.ZeroPointLength() else [],
                    "quantized_dimension": q.QuantizedDimension(),
                }
            tensors.append({
                "name": (t.Name() or b"").decode(),
                "dtype": type_names[t.Type()],
                "shape": [int(x) for x in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                "buffer": t.Buffer(),
                "quantization": quant,
            })
        ops = []
        for oi in range(sg.OperatorsLength()):
            o = sg.Operators(oi)
            ops.append({
                "op": op_names[codes[o.OpcodeIndex()]],
                "inputs": [int(x) for x in o.InputsAsNumpy()] if o.InputsLength() else [],
                "outputs": [int(x) for x in o.OutputsAsNumpy()] if o.OutputsLength() else [],
            })
        subgraphs.append({"tensors": tensors, "operators": ops})
    with open(out_path, "w") as f:
        json.dump({"subgraphs": subgraphs, "buffers": m.BuffersLength()}, f)


def quantize_input(x, detail):
    """A float sample for an integer input, as tflquant's sample loader quantizes it."""
    scale, zero = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.floating) or scale == 0:
        return x
    info = np.iinfo(detail["dtype"])
    r = x.astype(np.float32) / np.float32(scale)
    r = np.sign(r) * np.floor(np.abs(r) + np.float32(0.5))  # half away from zero
    return np.clip(r + zero, info.min, info.max).astype(detail["dtype"])


def real_values(v, detail):
    scale, zero = detail["quantization"]
    if np.issubdtype(v.dtype, np.integer) and scale != 0:
        return (v.astype(np.float64) - zero) * np.float64(np.float32(scale))
    return v.astype(np.float64)


def run_samples(path, arrays, quantize):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    results = [[] for _ in outs]
    for s in range(arrays[0].shape[0]):
        for d, a in zip(ins, arrays):
            x = a[s].reshape(d["shape"])
            it.set_tensor(d["index"], quantize_input(x, d) if quantize else x)
        it.invoke()
        for i, d in enumerate(outs):
            results[i].append(real_values(it.get_tensor(d["index"]).copy(), d))
    return [np.stack(r) for r in results]


def cmd_metrics(float_model, quant_model, inputs_path, out_path):
    data = np.load(inputs_path)
    arrays = [data[f"input_{i}"] for i in range(len(data.files))]
    ref = run_samples(float_model, arrays, False)
    test = run_samples(quant_model, arrays, True)
    finite = lambda x: float(x) if np.isfinite(x) else None
    entries = []
    for r, t in zip(ref, test):
        err = r - t
        signal, noise = np.sum(r * r), np.sum(err * err)
        sqnr = np.inf if noise == 0 else 10 * np.log10(signal / noise)
        cos = np.sum(r * t) / (np.sqrt(np.sum(r * r)) * np.sqrt(np.sum(t * t)))
        top1 = None
        if r.ndim == 3 and r.shape[1] == 1 and r.shape[2] >= 2:
            top1 = float(np.mean(np.argmax(r[:, 0], axis=1) == np.argmax(t[:, 0], axis=1)))
        entries.append({
            "sqnr_db": finite(sqnr),
            "mse": float(np.mean(err * err)),
            "max_abs": float(np.max(np.abs(err))),
            "cosine": float(cos),
            "top1": top1,
        })
    with open(out_path, "w") as f:
        json.dump({"outputs": entries}, f)


def main(argv):
    if len(argv) >= 4 and argv[1] == "run":
        cmd_run(argv[2], argv[3], argv[4], "--all-tensors" in argv[5:], "--stream" in argv[5:],
                "--builtin" in argv[5:])
    elif len(argv) == 6 and argv[1] == "metrics":
        cmd_metrics(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 4 and argv[1] == "schema":
        cmd_schema(argv[2], argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
