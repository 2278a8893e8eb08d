"""TF converter full-integer references of committed float models (``make_all.py --only quant_refs``).

For every float model in ``registry.TF_REF_SOURCES`` this writes
``<model>.tf_int8.tflite`` and ``<model>.tf_int16x8.tflite``: the TFLite
converter's own full-integer quantization of the *same network*, with
``Optimize.DEFAULT`` and as representative dataset every sample of the float
model's calibration file (``<stem>.calib.npy`` as committed, in file order, one
``[1, ...]`` sample per step).  The interface stays float32 (QUANTIZE at the
inputs, DEQUANTIZE at the outputs).  ``supported_ops`` is
``[TFLITE_BUILTINS_INT8]`` resp.
``[EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]``, plus
``TFLITE_BUILTINS`` for 16x8 when some op has no 16x8 quantization (the strict
conversion is then asserted to fail).  The ops the converter leaves in float
are compared with ``registry.TF_REFS`` so the manifest/README stay truthful.

Same network: the float source is rebuilt in memory (the Keras models are
retrained with the generator's fixed seeds, the op graphs are the same
tf.Modules) and converted to float once more; that conversion must give the
committed float model's outputs in LiteRT on the whole test split (bit-identical
or within 1e-6).  If it does not (e.g. another TF version trains differently),
the Keras weights are instead read from the committed .tflite
(``keras_weights_from_tflite``) and the check is repeated.
"""

import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

import common
from common import tf, schema, TESTDATA, read_model_t, representative_from, write_bytes
import models
import ops_models
import registry
import runner

BO = schema.BuiltinOperator
TT = schema.TensorType

STRICT_16X8 = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"


# ---------------------------------------------------------------------------
# float sources
# ---------------------------------------------------------------------------

def _keras_source(fname):
    """Keras float source of a committed float model (retrained, deterministic)."""
    if fname == "cnn_digits.tflite":
        return models.cnn_digits_keras()[0]
    if fname == "mlp_large_fc.tflite":
        return models.mlp_large_keras()[0]
    if fname == "dynamic_batch_mlp.tflite":
        return models.mlp_small_dynamic(models.mlp_small_keras()[0])
    if fname == "fp16_weights_cnn.tflite":
        # The committed model stores every weight and bias as FLOAT16 (+ DEQUANTIZE):
        # the network it computes is the float32 source with its weights rounded to
        # float16, so that is the network the references quantize.
        model = models.cnn_b_keras()[0]
        model.set_weights([w.astype(np.float16).astype(np.float32) for w in model.get_weights()])
        return model
    return None


def source(fname):
    """(kind, object, converter factory) for a float model of registry.TF_REF_SOURCES."""
    km = _keras_source(fname)
    if km is not None:
        return "keras", km, lambda: tf.lite.TFLiteConverter.from_keras_model(km)
    name = fname[:-len(".tflite")]
    mod = ops_models.graph_module(name)
    fn = mod.serve.get_concrete_function()
    return "graph", mod, lambda: tf.lite.TFLiteConverter.from_concrete_functions([fn], mod)


def keras_weights_from_tflite(model, tflite_bytes):
    """Load the CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights and biases of a
    float .tflite into the Keras layers of the same architecture (in op order).

    Constants behind a DEQUANTIZE (FLOAT16 weights) are widened to float32.
    TFLite layouts: conv [O,H,W,I] -> Keras [H,W,I,O]; depthwise [1,H,W,I*M] ->
    [H,W,I,M]; fully connected [O,I] -> [I,O].
    """
    m = read_model_t(tflite_bytes)
    sg = m.subgraphs[0]
    producer = {o: op for op in sg.operators for o in op.outputs}

    def const(i):
        t = sg.tensors[i]
        data = m.buffers[t.buffer].data
        if data is not None and len(data):
            dt = {TT.FLOAT32: "<f4", TT.FLOAT16: "<f2"}[t.type]
            return np.frombuffer(bytes(data), dt).astype(np.float32).reshape(t.shape)
        op = producer[i]
        assert common.opcode_builtin(m.operatorCodes[op.opcodeIndex]) == BO.DEQUANTIZE
        return const(op.inputs[0])

    found = []
    for op in sg.operators:
        code = common.opcode_builtin(m.operatorCodes[op.opcodeIndex])
        if code in (BO.CONV_2D, BO.DEPTHWISE_CONV_2D, BO.FULLY_CONNECTED):
            found.append((code, const(op.inputs[1]), const(op.inputs[2])))
    layers = [layer for layer in model.layers if layer.get_weights()]
    assert len(layers) == len(found), (len(layers), len(found))
    for layer, (code, w, b) in zip(layers, found):
        kind = type(layer).__name__
        if code == BO.CONV_2D:
            assert kind == "Conv2D", kind
            w = w.transpose(1, 2, 3, 0)
        elif code == BO.DEPTHWISE_CONV_2D:
            assert kind == "DepthwiseConv2D", kind
            kh, kw_, cin, mult = layer.get_weights()[0].shape
            w = w.reshape(kh, kw_, cin, mult)
        else:
            assert kind == "Dense", kind
            w = w.T
        layer.set_weights([w, b])


# ---------------------------------------------------------------------------
# same-network verification
# ---------------------------------------------------------------------------

def signature_outputs(tflite_bytes):
    """{signature output name: output tensor name} of the first SignatureDef, or None."""
    m = read_model_t(tflite_bytes)
    if not m.signatureDefs:
        return None
    sd = m.signatureDefs[0]
    sg = m.subgraphs[sd.subgraphIndex]
    return {o.name.decode(): common.tensor_name(sg.tensors[o.tensorIndex]) for o in sd.outputs}


def outputs_by_signature(path, inputs, count):
    """Run ``count`` samples; {signature output name (or tensor name): [count, ...]}."""
    out = runner.run_samples(path, inputs, count)
    sig = signature_outputs(path.read_bytes())
    if sig is None:
        return out
    return {k: out[v] for k, v in sig.items()}


def compare_float(committed, fresh_bytes, stem):
    """Max |difference| between the committed float model and a fresh float conversion on
    every test sample (None if the outputs do not even have the same names/shapes)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / committed.name
        tmp.write_bytes(fresh_bytes)
        inputs = runner.load_inputs(committed, stem, "test")
        n = len(next(iter(inputs.values())))
        a = outputs_by_signature(committed, inputs, n)
        b = outputs_by_signature(tmp, runner.load_inputs(tmp, stem, "test"), n)
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        return None
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)


def verified_source(fname, stem, notes):
    """Float source of ``fname`` whose float conversion reproduces the committed model."""
    committed = TESTDATA / fname
    kind, obj, factory = source(fname)
    fresh = factory().convert()
    same_bytes = fresh == committed.read_bytes()
    diff = compare_float(committed, fresh, stem)
    if (diff is None or diff > 1e-6) and kind == "keras":
        print(f"  {fname}: retrained weights differ (max diff {diff}); loading weights from the .tflite")
        keras_weights_from_tflite(obj, committed.read_bytes())
        fresh = factory().convert()
        same_bytes = fresh == committed.read_bytes()
        diff = compare_float(committed, fresh, stem)
        notes["weights"] = f"loaded from {fname}"
    assert diff is not None and diff <= 1e-6, f"{fname}: float source does not reproduce the committed model ({diff})"
    notes["float_check"] = "byte-identical float conversion" if same_bytes else \
        f"float conversion outputs within {diff:.1e} of the committed model"
    notes["float_max_abs_diff"] = diff
    return factory


# ---------------------------------------------------------------------------
# conversion and analysis
# ---------------------------------------------------------------------------

def convert_ref(factory, calib, supported_ops):
    conv = factory()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_from(calib)
    conv.target_spec.supported_ops = [getattr(tf.lite.OpsSet, s) for s in supported_ops]
    return conv.convert()


def float_ops(tflite_bytes):
    """Counter of ops (other than QUANTIZE/DEQUANTIZE) that compute in float32: some
    non-constant input or output is FLOAT32."""
    m = read_model_t(tflite_bytes)
    hist = Counter()
    for sg in m.subgraphs:
        for op in sg.operators:
            code = common.opcode_builtin(m.operatorCodes[op.opcodeIndex])
            if code in (BO.QUANTIZE, BO.DEQUANTIZE):
                continue
            ts = [sg.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
            if any(t.type == TT.FLOAT32 and not (m.buffers[t.buffer].data is not None
                                                 and len(m.buffers[t.buffer].data)) for t in ts):
                hist[common.builtin_name(code)] += 1
    return dict(sorted(hist.items()))


def unsupported_16x8(factory, calib):
    """Op names the strict 16x8 conversion rejects (it must fail)."""
    try:
        convert_ref(factory, calib, [STRICT_16X8])
    except Exception as e:  # tf.lite ConverterError
        ops = sorted(set(re.findall(r"not yet supported for op: '([A-Z0-9_]+)'", str(e))))
        assert ops, f"strict 16x8 conversion failed for another reason: {e}"
        return ops
    raise AssertionError("strict 16x8 conversion unexpectedly succeeded")


def make_quant_refs(report):
    """Write every <model>.tf_int8.tflite / <model>.tf_int16x8.tflite of registry.TF_REFS."""
    tf.keras.backend.clear_session()
    for fname, stem in registry.TF_REF_SOURCES.items():
        notes = {}
        factory = verified_source(fname, stem, notes)
        calib = np.load(TESTDATA / f"{stem}.calib.npy")
        for ref in registry.refs_of(fname):
            data = convert_ref(factory, calib, ref["supported_ops"])
            got = float_ops(data)
            assert got in registry.allowed_float_ops(ref), \
                f"{ref['file']}: float ops {got}, registry says {registry.allowed_float_ops(ref)}"
            old = TESTDATA / ref["file"]
            if ref["unstable_float_ops"] and old.exists() and old.read_bytes() != data:
                print(f"  NOTE {ref['file']}: the converter is not deterministic for this model; this run "
                      f"differs from the existing file (float ops {got}); do not commit it by accident")
            if ref["strict_unsupported"]:
                bad = unsupported_16x8(factory, calib)
                assert bad == ref["strict_unsupported"], f"{ref['file']}: strict 16x8 rejects {bad}"
            if ref.get("identical_to"):
                same = data == (TESTDATA / ref["identical_to"]).read_bytes()
                assert same, f"{ref['file']} differs from {ref['identical_to']}"
            (TESTDATA / ref["file"]).parent.mkdir(exist_ok=True)
            write_bytes(ref["file"], data)
        report[fname] = notes["float_check"] + (f"; weights {notes['weights']}" if "weights" in notes else "")
