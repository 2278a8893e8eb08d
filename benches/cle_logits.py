"""--cle at the logits (the input of the last SOFTMAX), where the saturated softmax of the
testdata classifiers does not hide small changes: default / --cle / --per-tensor /
--per-tensor --cle, int8, 32 calibration samples, 32 held-out samples, LiteRT builtin kernels.

Usage: .venv/bin/python benches/cle_logits.py target/release/tflquant
"""
import os, sys, subprocess, json, tempfile, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
B = sys.argv[1]
TD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testdata") + "/"
TMP = tempfile.mkdtemp()
man = json.load(open(TD + "manifest.json"))["models"]
def logits(path, xs):
    it = Interpreter(model_path=path, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = it._get_ops_details()
    sm = [o for o in ops if o["op_name"] == "SOFTMAX"][-1]
    # walk back through DEQUANTIZE/QUANTIZE: take softmax input
    t = sm["inputs"][0]
    d = [x for x in it.get_tensor_details() if x["index"] == t][0]
    inp = it.get_input_details()[0]
    out = []
    for x in xs:
        v = x.reshape(inp["shape"])
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]; v = np.clip(np.round(v / s) + z, -128, 127)
        it.set_tensor(inp["index"], v.astype(inp["dtype"])); it.invoke()
        y = it.get_tensor(t).astype(np.float64)
        if d["dtype"] != np.float32:
            s, z = d["quantization"]; y = (y - z) * s
        out.append(y.copy())
    return np.stack(out)
for m in (sys.argv[2].split(",") if len(sys.argv) > 2 else ["cnn_digits", "mlp_large_fc", "sparse_fp16_cnn", "dynamic_batch_mlp", "fp16_weights_cnn", "sparse_dense_mlp", "sparse_block1x4_mlp"]):
    e = man[m + ".tflite"]
    xs = np.load(TD + e["test"])[:32]
    ref = logits(TD + m + ".tflite", xs)
    row = []
    for f in ["", "--cle", "--per-tensor", "--per-tensor --cle"]:
        o = os.path.join(TMP, f"{m}.tflite")
        subprocess.run([B, "-q", "quantize", TD + m + ".tflite", "-o", o, "--mode", "int8", "--calibration", TD + e["calib"], "--samples", "32"] + f.split(), check=True)
        q = logits(o, xs)
        row.append(f"[{f or 'default'}] {10*np.log10((ref**2).sum()/((ref-q)**2).sum()):.2f}")
    print(m, " ".join(row), flush=True)
