#!/usr/bin/env python3
"""Runs models in the official LiteRT interpreter for tflquant's tests.

Commands (all files are NumPy .npz; arrays hold samples on the first axis):

  run MODEL INPUTS.npz OUTPUTS.npz [--all-tensors]
      INPUTS holds `input_0`, `input_1`, ... in the order of the model's inputs
      (subgraph 0), each of shape [N, ...]; sample i is reshaped to the model input's
      shape; variable tensors are reset before each sample. OUTPUTS gets `output_0`,
      ... stacked over the N samples. With
      --all-tensors it also gets `t<index>` for every tensor of subgraph 0 that has a
      value after invoke (interpreter built with experimental_preserve_all_tensors and
      without the default XNNPACK delegate, whose partitions leave intermediates unset).

  schema MODEL OUT.json
      What the official schema's Python reader (ai_edge_litert.schema_py_generated)
      sees: per subgraph the tensors (name, dtype, shape, quantization) and operators
      (builtin op = max(deprecated_builtin_code, builtin_code), inputs, outputs).

Exit code 0 on success; on failure the message is on stderr and the code is 1.
"""
import json
import sys

import numpy as np


SUPPORTED_DTYPES = {"float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                    "uint32", "int64", "uint64", "bool"}


def load_interpreter(path, all_tensors=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    if all_tensors:
        # The default XNNPACK delegate runs whole partitions itself and leaves their
        # intermediate tensors unwritten: builtin kernels only, so every tensor is real.
        return Interpreter(
            model_path=path,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    return Interpreter(model_path=path)


def cmd_run(model, inputs_path, outputs_path, all_tensors):
    it = load_interpreter(model, all_tensors)
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


def main(argv):
    if len(argv) >= 4 and argv[1] == "run":
        cmd_run(argv[2], argv[3], argv[4], "--all-tensors" in argv[5:])
    elif len(argv) == 4 and argv[1] == "schema":
        cmd_schema(argv[2], argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
