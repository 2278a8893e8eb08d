"""Shared helpers for the tflquant test-data generators.

Importing this module first configures TensorFlow for reproducible, quiet,
CPU-only runs (legacy tf_keras instead of Keras 3, oneDNN off, deterministic
ops, single-threaded).  Every generator module imports it before TensorFlow.

Contents:
  * paths: TESTDATA (the testdata/ folder) and helpers to write files there;
  * seeding: ``reset_seeds()`` to call at the start of every model builder;
  * conversion: thin wrappers around ``tf.lite.TFLiteConverter``;
  * flatbuffer object API: ``read_model_t`` / ``write_model_t`` to rewrite a
    .tflite with ``ai_edge_litert.schema_py_generated`` (buffers re-packed
    16-byte aligned, like the TF converter does);
  * ``op_histogram`` / ``builtin_name`` for inspection.
"""

import os

# --- environment, must happen before TensorFlow is imported -----------------
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras -> tf_keras (Keras 2), needed by tfmot
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU kernels
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import random
from collections import Counter
from pathlib import Path

import flatbuffers
import numpy as np
import tensorflow as tf

from ai_edge_litert import schema_py_generated as schema

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.experimental.enable_op_determinism()
tf.get_logger().setLevel("ERROR")

# testdata/ is the parent of this gen/ folder.
TESTDATA = Path(__file__).resolve().parent.parent

SEED = 1234


def reset_seeds(seed=SEED):
    """Reset every RNG that can influence a model build or training run."""
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.keras.utils.set_random_seed(seed)


def out_path(name):
    return TESTDATA / name


def write_bytes(name, data):
    """Write ``data`` to testdata/<name> and return the path."""
    p = out_path(name)
    p.write_bytes(bytes(data))
    print(f"  wrote {name} ({len(data)} bytes)")
    return p


def save_npy(name, array):
    p = out_path(name)
    np.save(p, array)
    print(f"  wrote {name} {array.dtype} {list(array.shape)}")
    return p


def save_npz(name, arrays):
    p = out_path(name)
    np.savez(p, **arrays)
    desc = ", ".join(f"{k}:{v.dtype}{list(v.shape)}" for k, v in arrays.items())
    print(f"  wrote {name} {{{desc}}}")
    return p


# --- conversion --------------------------------------------------------------

def convert_keras(model, *, optimizations=None, supported_types=None,
                  representative=None, int8_ops=False, inference_input_type=None,
                  inference_output_type=None):
    """Convert a (tf_keras) model with the standard TFLite converter."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    return _configure_and_convert(conv, optimizations, supported_types,
                                  representative, int8_ops,
                                  inference_input_type, inference_output_type)


def convert_concrete(fn, trackable=None, **kw):
    """Convert a tf.function's concrete function (signature name serving_default)."""
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], trackable)
    return _configure_and_convert(conv, kw.get("optimizations"),
                                  kw.get("supported_types"), kw.get("representative"),
                                  kw.get("int8_ops", False), kw.get("inference_input_type"),
                                  kw.get("inference_output_type"))


def _configure_and_convert(conv, optimizations, supported_types, representative,
                           int8_ops, inference_input_type, inference_output_type):
    if optimizations:
        conv.optimizations = list(optimizations)
    if supported_types:
        conv.target_spec.supported_types = list(supported_types)
    if representative is not None:
        conv.representative_dataset = representative
    if int8_ops:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if inference_input_type is not None:
        conv.inference_input_type = inference_input_type
    if inference_output_type is not None:
        conv.inference_output_type = inference_output_type
    return conv.convert()


def representative_from(array):
    """Representative-dataset generator yielding one [1, ...] sample at a time."""
    def gen():
        for i in range(array.shape[0]):
            yield [array[i:i + 1].astype(np.float32)]
    return gen


# --- flatbuffer object API ---------------------------------------------------

class _AlignedBufferT(schema.BufferT):
    """BufferT whose data vector is packed with 16-byte alignment.

    The generated ``BufferT.Pack`` aligns byte vectors to 1 byte only; the TF
    converter aligns constant data to 16 bytes, so we do the same to keep the
    rewritten files as close as possible to converter output.
    """

    def Pack(self, builder):
        data_off = None
        if self.data is not None and len(self.data) > 0:
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), 16)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data_off = builder.EndVector(len(raw))
        schema.BufferStart(builder)
        if data_off is not None:
            schema.BufferAddData(builder, data_off)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def read_model_t(data):
    """Parse .tflite bytes into a mutable ``schema.ModelT``."""
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def write_model_t(model_t):
    """Serialize a ``schema.ModelT`` back to .tflite bytes (identifier TFL3)."""
    if model_t.buffers:
        fixed = []
        for b in model_t.buffers:
            nb = _AlignedBufferT()
            nb.data, nb.offset, nb.size = b.data, b.offset, b.size
            fixed.append(nb)
        model_t.buffers = fixed
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                  if not k.startswith("_") and isinstance(v, int)}
_TENSOR_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items()
                      if not k.startswith("_") and isinstance(v, int)}


def builtin_name(code):
    return _BUILTIN_NAMES.get(code, f"UNKNOWN_{code}")


def tensor_type_name(code):
    return _TENSOR_TYPE_NAMES.get(code, f"UNKNOWN_{code}")


def opcode_builtin(opc):
    """Effective builtin code of an OperatorCodeT (max of new and legacy field)."""
    return max(opc.builtinCode, opc.deprecatedBuiltinCode)


def op_histogram(model_t):
    """Counter of operator names over all subgraphs (custom ops as CUSTOM:<code>)."""
    hist = Counter()
    for sg in model_t.subgraphs or []:
        for op in sg.operators or []:
            opc = model_t.operatorCodes[op.opcodeIndex]
            code = opcode_builtin(opc)
            if code == schema.BuiltinOperator.CUSTOM:
                cc = opc.customCode.decode() if isinstance(opc.customCode, bytes) else opc.customCode
                hist[f"CUSTOM:{cc}"] += 1
            else:
                hist[builtin_name(code)] += 1
    return hist


def tensor_name(t):
    n = t.name
    return n.decode() if isinstance(n, bytes) else n


def input_names(data):
    """Names of the main subgraph's input tensors, in model input order."""
    m = read_model_t(data)
    sg = m.subgraphs[0]
    return [tensor_name(sg.tensors[i]) for i in sg.inputs]
