#!/usr/bin/env python3
"""Verify every generated file in testdata/.

For each model in registry.MODELS:
  * parse it with the official schema bindings (ai_edge_litert.schema_py_generated)
    and assert the property the file exists for (see CHECKS below);
  * print its op histogram;
  * unless it cannot run (custom_op.tflite: LiteRT has no kernel for the
    custom op, which is asserted instead), run the first held-out sample in
    the LiteRT interpreter, compare with <model>.expected.npz, and for digit
    classifiers check the accuracy on all held-out digits (32, or 360 for digits_qat).
TF quantization references (registry.TF_REFS) are also compared with their float
model on the whole test set (SQNR of every output, printed); the two 16x8
references TF writes invalid are asserted to be refused by LiteRT, with the
recorded error.  The QAT models are cross-checked against each other (the int8
conversion must carry exactly the QAT float model's grid weights and ranges).
Also checks sizes (each model < 1 MB, all files together <= 4.2 MB) and that the
sample data are float32 (int32 only for the embedding ids) with N in range.

Exit status 0 when everything passes.
"""

import json
import struct
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from flatbuffers import flexbuffers  # noqa: E402

import common  # noqa: E402
from common import TESTDATA, schema, read_model_t, op_histogram, builtin_name, tensor_name  # noqa: E402
import registry  # noqa: E402
import runner  # noqa: E402

BO = schema.BuiltinOperator
AF = schema.ActivationFunctionType
TT = schema.TensorType
AF_RELU, AF_RELU6 = schema.ActivationFunctionType.RELU, schema.ActivationFunctionType.RELU6

# the metadata / custom-op constants are defined in models.py; duplicated here
# so check.py does not depend on the generator modules
META_NAME = "tflquant_test_meta"
META_BYTES = b"tflquant test metadata v1\x00\x01\x02\x03\xfe\xff"
DESCRIPTION = "tflquant test model: small digits MLP with extra metadata"
CUSTOM_CODE = "TflquantTestOp"
CUSTOM_OPTIONS = {"activation": "tanh", "scale": 1.0, "version": 1}

DYNAMIC_INPUT_MODELS = {"dynamic_batch_mlp.tflite", "ops_reduce_misc.tflite", "ops_shape_dynamic.tflite",
                        "dynamic_batch_mlp.tf_int8.tflite", "dynamic_batch_mlp.tf_int16x8.tflite"}


# --- small model-inspection helpers -----------------------------------------

class M:
    """A parsed model with convenience accessors."""

    def __init__(self, fname):
        self.fname = fname
        self.raw = (TESTDATA / fname).read_bytes()
        self.t = read_model_t(self.raw)

    def code(self, op):
        return common.opcode_builtin(self.t.operatorCodes[op.opcodeIndex])

    def ops(self, code=None, subgraph=None):
        """[(subgraph, op)] optionally filtered by builtin code / subgraph index."""
        out = []
        for si, sg in enumerate(self.t.subgraphs):
            if subgraph is not None and si != subgraph:
                continue
            for op in sg.operators or []:
                if code is None or self.code(op) == code:
                    out.append((sg, op))
        return out

    def names(self):
        return {builtin_name(self.code(op)) for _, op in self.ops()}

    def is_const(self, t):
        b = self.t.buffers[t.buffer].data
        return b is not None and len(b) > 0

    def const_array(self, t):
        dt = {TT.FLOAT32: "<f4", TT.INT32: "<i4", TT.INT8: "i1", TT.FLOAT16: "<f2", TT.INT64: "<i8",
              TT.UINT8: "u1", TT.INT16: "<i2"}[t.type]
        return np.frombuffer(bytes(self.t.buffers[t.buffer].data), dtype=dt)

    def consts(self):
        return [(sg, t) for sg in self.t.subgraphs for t in sg.tensors if self.is_const(t)]

    def main_inputs(self):
        sg = self.t.subgraphs[0]
        return [sg.tensors[i] for i in sg.inputs]

    def main_outputs(self):
        sg = self.t.subgraphs[0]
        return [sg.tensors[i] for i in sg.outputs]


def need(cond, msg):
    if not cond:
        raise AssertionError(msg)


def need_ops(m, *names):
    missing = set(names) - m.names()
    need(not missing, f"missing ops {sorted(missing)}")


def fused(m, code):
    return {op.builtinOptions.fusedActivationFunction for _, op in m.ops(code)}


def numel(t):
    return int(np.prod(t.shape)) if t.shape is not None else 0


# --- per-model property checks ------------------------------------------------

def check_cnn_digits(m):
    need_ops(m, "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX")
    need(AF_RELU in fused(m, BO.CONV_2D), "no CONV_2D with fused RELU")
    need(AF_RELU6 in fused(m, BO.DEPTHWISE_CONV_2D), "no DEPTHWISE_CONV_2D with fused RELU6")
    need(AF_RELU in fused(m, BO.FULLY_CONNECTED), "no FC with fused RELU")
    need(m.t.signatureDefs and m.t.signatureDefs[0].signatureKey == b"serving_default", "no SignatureDef")
    big = [t for _, t in m.consts() if t.type == TT.FLOAT32 and numel(t) >= 1024]
    need(len(big) >= 2, "fewer than 2 float weights with >= 1024 elements")


def _check_fp16(m):
    f16 = [t for _, t in m.consts() if t.type == TT.FLOAT16]
    need(f16, "no FLOAT16 constant tensors")
    deq = m.ops(BO.DEQUANTIZE)
    need(deq, "no DEQUANTIZE op")
    for sg, op in deq:
        need(sg.tensors[op.inputs[0]].type == TT.FLOAT16, "DEQUANTIZE input not FLOAT16")
    need(not [t for _, t in m.consts() if t.type == TT.FLOAT32 and numel(t) >= 64],
         "float32 weights left in a float16 model")


def check_fp16_weights_cnn(m):
    _check_fp16(m)
    need_ops(m, "CONV_2D", "MEAN", "FULLY_CONNECTED", "DEQUANTIZE")


def _sparse_tensors(m):
    return [(sg, t) for sg in m.t.subgraphs for t in sg.tensors if t.sparsity is not None]


def _stored_density(m, t):
    """stored values / dense elements of a sparse constant."""
    return (len(m.t.buffers[t.buffer].data) // 4) / numel(t)


def check_sparse_dense_mlp(m):
    need_ops(m, "DENSIFY", "FULLY_CONNECTED")
    sp = _sparse_tensors(m)
    need(len(sp) == 3, f"expected 3 sparse weights, found {len(sp)}")
    dens_inputs = {op.inputs[0] for _, op in m.ops(BO.DENSIFY)}
    sg0 = m.t.subgraphs[0]
    need({i for i, t in enumerate(sg0.tensors) if t.sparsity is not None} == dens_inputs,
         "DENSIFY inputs are not exactly the sparse tensors")
    for _, t in sp:
        need(list(t.sparsity.traversalOrder) == [0, 1], "unexpected traversal order")
        need([d.format for d in t.sparsity.dimMetadata] == [schema.DimensionType.DENSE,
                                                            schema.DimensionType.SPARSE_CSR], "not CSR")
        need(_stored_density(m, t) <= 0.2, f"sparsity below 80% ({_stored_density(m, t):.2f} dense)")


def check_sparse_block1x4_mlp(m):
    need("DENSIFY" not in m.names(), "unexpected DENSIFY")
    sp = _sparse_tensors(m)
    need(len(sp) == 3, f"expected 3 sparse weights, found {len(sp)}")
    fc_weights = {op.inputs[1] for _, op in m.ops(BO.FULLY_CONNECTED)}
    sg0 = m.t.subgraphs[0]
    need({i for i, t in enumerate(sg0.tensors) if t.sparsity is not None} == fc_weights,
         "FC weights are not the sparse tensors")
    for _, t in sp:
        s = t.sparsity
        need(list(s.blockMap) == [1] and list(s.traversalOrder) == [0, 1, 2], "not a 1x4 block layout")
        need(s.dimMetadata[2].format == schema.DimensionType.DENSE and s.dimMetadata[2].denseSize == 4,
             "block dim not dense 4")
        need(_stored_density(m, t) <= 0.2, "sparsity below 80%")


def check_while_loop(m):
    w = m.ops(BO.WHILE, subgraph=0)
    need(len(w) == 1, "no WHILE in main subgraph")
    need(len(m.t.subgraphs) == 3, "expected 3 subgraphs")
    opts = w[0][1].builtinOptions
    need({opts.condSubgraphIndex, opts.bodySubgraphIndex} == {1, 2}, "bad cond/body indices")
    body = {builtin_name(m.code(op)) for op in m.t.subgraphs[opts.bodySubgraphIndex].operators}
    need({"TANH", "FULLY_CONNECTED"} <= body, f"body ops {body}")


def check_no_signature_mlp(m):
    need(not m.t.signatureDefs, "SignatureDefs still present")
    need_ops(m, "FULLY_CONNECTED", "TANH", "SOFTMAX")


def check_with_metadata_mlp(m):
    md = {x.name.decode(): x.buffer for x in m.t.metadata}
    need({META_NAME, "min_runtime_version", "CONVERSION_METADATA"} <= set(md), f"metadata {sorted(md)}")
    need(bytes(m.t.buffers[md[META_NAME]].data) == META_BYTES, "metadata bytes differ")
    need(m.t.description.decode() == DESCRIPTION, "description not set")
    need(m.t.signatureDefs, "SignatureDef lost")


def _check_int8(m, io_type):
    need_ops(m, "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX")
    need(all(t.type == io_type for t in m.main_inputs() + m.main_outputs()), "interface type")
    for code in (BO.CONV_2D, BO.DEPTHWISE_CONV_2D, BO.FULLY_CONNECTED):
        for sg, op in m.ops(code):
            x, w, b = (sg.tensors[i] for i in op.inputs[:3])
            need(x.type == TT.INT8 and w.type == TT.INT8 and b.type == TT.INT32,
                 f"{builtin_name(code)} not int8/int8/int32")
            q = w.quantization
            axis = q.quantizedDimension
            need(len(q.scale) == w.shape[axis] > 1, f"{builtin_name(code)} weights not per-axis")
    if io_type == TT.FLOAT32:
        need_ops(m, "QUANTIZE", "DEQUANTIZE")


def check_int8_quantized_cnn(m):
    _check_int8(m, TT.FLOAT32)


def check_int8_quantized_cnn_int8io(m):
    _check_int8(m, TT.INT8)


def check_custom_op(m):
    customs = [(i, c) for i, c in enumerate(m.t.operatorCodes) if common.opcode_builtin(c) == BO.CUSTOM]
    need(len(customs) == 1 and customs[0][1].customCode.decode() == CUSTOM_CODE, "no TflquantTestOp opcode")
    need(customs[0][1].builtinCode == BO.CUSTOM, "builtin_code not CUSTOM")
    users = [op for _, op in m.ops() if op.opcodeIndex == customs[0][0]]
    need(len(users) == 1, "custom op not used once")
    opts = flexbuffers.Loads(bytes(users[0].customOptions))
    need(opts == CUSTOM_OPTIONS, f"custom_options {opts}")
    need("TANH" not in m.names(), "TANH still present")


def check_dynamic_batch_mlp(m):
    (inp,) = m.main_inputs()
    need(inp.shapeSignature is not None and list(inp.shapeSignature) == [-1, 64],
         f"shape_signature {inp.shapeSignature}")
    need(list(inp.shape) == [1, 64], "shape")


def check_legacy_opcodes_cnn(m):
    for c in m.t.operatorCodes:
        need(c.builtinCode == 0 and 0 < c.deprecatedBuiltinCode < 127, "opcode not legacy-only")
    # builtin_code must be absent from the flatbuffer (default 0); check with the reader API
    fb = schema.Model.GetRootAs(m.raw, 0)
    for i in range(fb.OperatorCodesLength()):
        oc = fb.OperatorCodes(i)
        need(oc.BuiltinCode() == 0 and oc.DeprecatedBuiltinCode() > 0, "reader sees wrong code")
    check_cnn_digits(m)
    a = np.load(TESTDATA / "legacy_opcodes_cnn.expected.npz")
    b = np.load(TESTDATA / "cnn_digits.expected.npz")
    need(all(np.array_equal(a[k], b[k]) for k in a.files), "outputs differ from cnn_digits")


def check_mlp_large_fc(m):
    need(600_000 <= len(m.raw) <= 900_000, f"size {len(m.raw)}")
    need(m.names() == {"FULLY_CONNECTED", "SOFTMAX"}, f"ops {m.names()}")


def _check_dynamic_range(m, base):
    b = M(base)
    big_float = {tensor_name(t) for _, t in b.consts() if t.type == TT.FLOAT32 and numel(t) >= 1024}
    int8 = {tensor_name(t) for _, t in m.consts() if t.type == TT.INT8}
    need(int8, "no INT8 weights")
    need(len(int8) == len(big_float), f"{len(int8)} int8 weights vs {len(big_float)} weights >= 1024")
    need(all(numel(t) >= 1024 for _, t in m.consts() if t.type == TT.INT8), "int8 weight < 1024 elements")
    need(all(t.type == TT.FLOAT32 for t in m.main_inputs() + m.main_outputs()), "interface not float")


def check_mlp_large_fc_tf_dynamic(m):
    _check_dynamic_range(m, "mlp_large_fc.tflite")


def check_cnn_digits_tf_dynamic(m):
    _check_dynamic_range(m, "cnn_digits.tflite")
    small_float = [t for _, t in m.consts() if t.type == TT.FLOAT32 and t.shape is not None and len(t.shape) == 4]
    need(small_float, "expected small conv weights left in float32")


def check_tf_float16(m):
    _check_fp16(m)


def check_ops_elementwise(m):
    need_ops(m, "ADD", "SUB", "MUL", "DIV", "FLOOR_DIV", "POW", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM",
             "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "NEG", "ABS", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SIGN")
    need(AF_RELU in fused(m, BO.ADD), "no ADD with fused RELU")
    need(AF_RELU6 in fused(m, BO.MUL), "no MUL with fused RELU6")
    need(len(m.main_inputs()) == 2, "expected 2 inputs")
    # broadcasting: some binary op combines [1,4,4,3] with [3] and with [1,4,1,1]
    shapes = set()
    for sg, op in m.ops():
        if len(op.inputs) == 2:
            shapes.add(tuple(tuple(sg.tensors[i].shape) for i in op.inputs))
    need(((1, 4, 4, 3), (3,)) in shapes and ((1, 4, 4, 3), (1, 4, 1, 1)) in shapes, "broadcast shapes missing")


def check_ops_activation(m):
    need_ops(m, "LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "ELU", "HARD_SWISH",
             "GELU", "SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION")
    need({op.builtinOptions.approximate for _, op in m.ops(BO.GELU)} == {True, False}, "GELU variants")
    need({round(op.builtinOptions.beta, 4) for _, op in m.ops(BO.SOFTMAX)} == {1.0, 1.5}, "SOFTMAX betas")
    need(AF_RELU6 in fused(m, BO.MUL), "no MUL with fused RELU6")


def check_ops_conv_pool(m):
    need_ops(m, "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "AVERAGE_POOL_2D", "MAX_POOL_2D",
             "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
    conv = [op.builtinOptions for _, op in m.ops(BO.CONV_2D)]
    need(any(o.strideH == 2 and o.padding == schema.Padding.SAME for o in conv), "no stride-2 SAME conv")
    need(any(o.padding == schema.Padding.VALID for o in conv), "no VALID conv")
    need(any(o.dilationHFactor == 2 and o.dilationWFactor == 2 for o in conv), "no dilated conv")
    need({AF_RELU, AF_RELU6} <= {o.fusedActivationFunction for o in conv}, "conv fused activations")
    need(any(op.builtinOptions.depthMultiplier == 2 for _, op in m.ops(BO.DEPTHWISE_CONV_2D)), "depth mult 2")
    need(all(len(op.inputs) == 4 and op.inputs[3] >= 0 for _, op in m.ops(BO.TRANSPOSE_CONV)), "tconv bias")
    bil = {(o.alignCorners, o.halfPixelCenters) for o in (op.builtinOptions for _, op in m.ops(BO.RESIZE_BILINEAR))}
    need(bil == {(True, False), (False, True), (False, False)}, f"bilinear variants {bil}")
    nn = {(o.alignCorners, o.halfPixelCenters)
          for o in (op.builtinOptions for _, op in m.ops(BO.RESIZE_NEAREST_NEIGHBOR))}
    need(nn == {(True, False), (False, True)}, f"nearest variants {nn}")


def check_ops_shape(m):
    need_ops(m, "RESHAPE", "TRANSPOSE", "CONCATENATION", "SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "PAD",
             "PADV2", "MIRROR_PAD", "GATHER", "GATHER_ND", "PACK", "UNPACK", "TILE", "BROADCAST_TO", "REVERSE_V2",
             "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND")
    modes = {op.builtinOptions.mode for _, op in m.ops(BO.MIRROR_PAD)}
    need(modes == {schema.MirrorPadMode.REFLECT, schema.MirrorPadMode.SYMMETRIC}, f"mirror pad modes {modes}")
    ss = m.ops(BO.STRIDED_SLICE)
    opts = [op.builtinOptions for _, op in ss]
    need(any(o.shrinkAxisMask for o in opts), "no shrink_axis_mask")
    need(any(o.beginMask or o.endMask for o in opts), "no begin/end mask")
    neg = any((m.const_array(sg.tensors[op.inputs[3]]) < 0).any() for sg, op in ss)
    need(neg, "no negative stride")


def check_ops_shape_dynamic(m):
    need_ops(m, "SQUEEZE", "EXPAND_DIMS")
    need(list(m.main_inputs()[0].shapeSignature) == [-1, 8, 8, 3], "input not dynamic batch")


def check_ops_reduce_misc(m):
    need_ops(m, "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "BATCH_MATMUL", "FULLY_CONNECTED",
             "SELECT", "SELECT_V2", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL",
             "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "CAST", "SHAPE", "RANGE", "FILL", "ZEROS_LIKE",
             "ARG_MAX", "ARG_MIN", "CUMSUM")
    keep = set()
    for code in (BO.MEAN, BO.SUM, BO.REDUCE_MAX, BO.REDUCE_MIN, BO.REDUCE_PROD):
        keep |= {op.builtinOptions.keepDims for _, op in m.ops(code)}
    need(keep == {True, False}, "keep_dims variants")
    need({op.builtinOptions.keepDims for _, op in m.ops(BO.REDUCE_PROD)} == {True, False}, "prod keep_dims")
    bmm_const = [m.is_const(sg.tensors[op.inputs[1]]) for sg, op in m.ops(BO.BATCH_MATMUL)]
    need(sorted(bmm_const) == [False, True], "BATCH_MATMUL act x act and act x const")
    fc = [(op.builtinOptions, sg.tensors[op.inputs[0]]) for sg, op in m.ops(BO.FULLY_CONNECTED)]
    need(any(o.keepNumDims and len(t.shape) == 3 for o, t in fc), "no FC keep_num_dims on 3-D input")
    need(any(o.fusedActivationFunction == AF_RELU for o, _ in fc), "no FC with fused RELU")
    cs = {(op.builtinOptions.exclusive, op.builtinOptions.reverse) for _, op in m.ops(BO.CUMSUM)}
    need(cs == {(False, False), (True, True)}, f"cumsum variants {cs}")
    need(list(m.main_inputs()[0].shapeSignature) == [-1, 8, 8], "input not dynamic batch")
    out_types = {t.type for t in m.main_outputs()}
    need({TT.FLOAT32, TT.BOOL, TT.INT32, TT.INT64} <= out_types, "expected float/bool/int32/int64 outputs")


def check_lstm_seq(m):
    need_ops(m, "UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX")
    (sg, op), = m.ops(BO.UNIDIRECTIONAL_SEQUENCE_LSTM)
    need(list(sg.tensors[op.outputs[0]].shape) == [1, 8, 16], "LSTM output not [1,8,16] (return_sequences)")


def check_embedding_lookup(m):
    need_ops(m, "EMBEDDING_LOOKUP", "FULLY_CONNECTED")
    need("GATHER" not in m.names(), "GATHER left")
    need(m.main_inputs()[0].type == TT.INT32, "ids not int32")
    (sg, op), = m.ops(BO.EMBEDDING_LOOKUP)
    ids, table = (sg.tensors[i] for i in op.inputs)
    need(ids.type == TT.INT32 and len(ids.shape) == 1 and m.is_const(table) and list(table.shape) == [17, 8],
         "EMBEDDING_LOOKUP operands")


def _const_values(m, code):
    """Float constant inputs of every op `code`, flattened."""
    out = []
    for sg, op in m.ops(code):
        for i in op.inputs:
            if i >= 0 and m.is_const(sg.tensors[i]) and sg.tensors[i].type == TT.FLOAT32:
                out.extend(np.asarray(m.const_array(sg.tensors[i])).ravel().tolist())
    return out


def _check_twin(m, ops):
    twin = M(m.fname.replace(".tflite", ".twin.tflite"))
    need_ops(twin, *ops)
    x = runner.load_inputs(TESTDATA / m.fname, registry_stem(m.fname), "test")
    a = runner.run_samples(TESTDATA / m.fname, x, 8)
    b = runner.run_samples(TESTDATA / twin.fname, x, 8)
    for k in a:
        (kb,) = b
        need(np.allclose(a[k], b[kb], rtol=1e-5, atol=1e-6), f"{m.fname} and its twin differ")
    return "same outputs as its twin"


def registry_stem(fname):
    return next(s for f, s, *_ in registry.MODELS if f == fname)


def check_sentinel_pad_maxpool(m):
    need_ops(m, "PADV2", "MAX_POOL_2D")
    need(min(_const_values(m, BO.PADV2)) == -np.finfo(np.float32).max, "PADV2 pad value is not -FLT_MAX")
    return _check_twin(m, ["MAX_POOL_2D"])


def check_sentinel_masked_attention(m):
    need_ops(m, "BATCH_MATMUL", "SOFTMAX", "ADD")
    need(min(_const_values(m, BO.ADD)) == -1e9, "no -1e9 mask")
    return _check_twin(m, ["SOFTMAX"])


def check_sentinel_select_attention(m):
    need_ops(m, "SELECT_V2", "SOFTMAX")
    need(-np.inf in _const_values(m, BO.SELECT_V2), "no -inf in SELECT_V2")
    return _check_twin(m, ["SELECT_V2"])


def check_sentinel_clip(m):
    need_ops(m, "MINIMUM", "MAXIMUM")
    fmax = float(np.finfo(np.float32).max)
    need(_const_values(m, BO.MINIMUM) == [fmax] and _const_values(m, BO.MAXIMUM) == [-fmax], "clip bounds")
    return _check_twin(m, ["FULLY_CONNECTED"])


def check_twin(m):
    need(m.fname.endswith(".twin.tflite"), "not a twin")


def check_composite_attention(m):
    (sg, op), = m.ops(BO.STABLEHLO_COMPOSITE)
    o = op.builtinOptions2
    need(o.name.decode() == "odml.attention_block", "composite name")
    dec = m.t.subgraphs[o.decompositionSubgraphIndex]
    need(len(dec.inputs) == len(op.inputs) == 3 and len(dec.outputs) == len(op.outputs) == 1, "composite arity")
    ops = {builtin_name(m.t.operatorCodes[d.opcodeIndex].builtinCode) for d in dec.operators}
    need({"BATCH_MATMUL", "SOFTMAX", "ADD", "FULLY_CONNECTED"} <= ops, f"decomposition ops {ops}")
    x = runner.load_inputs(TESTDATA / m.fname, "lstm_seq", "test")
    a = runner.run_samples(TESTDATA / m.fname, x, 8)
    b = runner.run_samples(TESTDATA / "sentinel_masked_attention.tflite", x, 8)
    need(all(np.array_equal(a[k], b[k]) for k in a), "outputs differ from sentinel_masked_attention")
    return "same outputs as sentinel_masked_attention"


def check_singular_frontend(m):
    need_ops(m, "LOG", "DIV")


def _custom_ops_of(m):
    """[(custom code, op)] of subgraph 0."""
    out = []
    for _, op in m.ops():
        c = m.t.operatorCodes[op.opcodeIndex]
        if common.opcode_builtin(c) == BO.CUSTOM:
            out.append((c.customCode.decode(), op))
    return out


def check_custom_deconv(m):
    ((code, op),) = _custom_ops_of(m)
    need(code == "Convolution2DTransposeBias", f"custom op {code}")
    need(bytes(op.customOptions) == struct.pack("<3i", 1, 2, 2), "TfLiteTransposeConvParams bytes")
    need(len(op.inputs) == 3 and len(op.outputs) == 1, "inputs/outputs")
    need("TRANSPOSE_CONV" not in m.names(), "TRANSPOSE_CONV left")


def check_custom_argmax_unpool(m):
    ops = dict(_custom_ops_of(m))
    need(set(ops) == {"MaxPoolingWithArgmax2D", "MaxUnpooling2D"}, f"custom ops {sorted(ops)}")
    opts = struct.pack("<6i", 2, 2, 2, 2, 2, 0) + bytes(16)
    pool, unpool = ops["MaxPoolingWithArgmax2D"], ops["MaxUnpooling2D"]
    need(bytes(pool.customOptions) == opts and bytes(unpool.customOptions) == opts, "TfLitePoolParams bytes")
    need(len(pool.outputs) == 2 and unpool.inputs[1] == pool.outputs[1], "indices not wired to the unpooling")
    need("MAX_POOL_2D" not in m.names() and "RESIZE_NEAREST_NEIGHBOR" not in m.names(), "rewritten ops left")


def check_sparse_fp16_cnn(m):
    need_ops(m, "DENSIFY", "DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    sp = _sparse_tensors(m)
    need(len(sp) == 7 and all(t.type == TT.FLOAT16 for _, t in sp), "expected 7 sparse FLOAT16 kernels")
    for sg, op in m.ops(BO.DENSIFY):
        (dq,) = [o for o in sg.operators if op.outputs[0] in list(o.inputs)]
        need(m.code(dq) == BO.DEQUANTIZE, "DENSIFY output not read by a DEQUANTIZE")
        need(sg.tensors[op.outputs[0]].type == TT.FLOAT16, "DENSIFY output not FLOAT16")
    for _, t in sp:
        density = (len(m.t.buffers[t.buffer].data) // 2) / numel(t)
        need(0.35 <= density <= 0.45, f"stored density {density:.2f}, expected about 0.4")


def _readers(sg, ti):
    return [op for op in sg.operators if ti in list(op.inputs)]


def check_shared_weights_cnn(m):
    sg = m.t.subgraphs[0]
    shared = {}
    for ti, t in enumerate(sg.tensors):
        readers = _readers(sg, ti)
        if m.is_const(t) and len(readers) > 1 and numel(t) >= 1024:
            shared[builtin_name(m.code(readers[0]))] = len(readers)
    need(shared == {"CONV_2D": 2, "FULLY_CONNECTED": 2}, f"shared kernels {shared}")


def check_tied_embedding(m):
    need_ops(m, "GATHER", "FULLY_CONNECTED")
    sg = m.t.subgraphs[0]
    tied = [ti for ti, t in enumerate(sg.tensors)
            if m.is_const(t) and {builtin_name(m.code(o)) for o in _readers(sg, ti)} == {"GATHER", "FULLY_CONNECTED"}]
    need(len(tied) == 1, "no constant read by both GATHER and FULLY_CONNECTED")


def check_lstm_gru(m):
    need_ops(m, "UNIDIRECTIONAL_SEQUENCE_LSTM", "WHILE", "FULLY_CONNECTED")
    body_fc = [op for si, sg in enumerate(m.t.subgraphs) if si > 0
               for op in sg.operators if m.code(op) == BO.FULLY_CONNECTED]
    need(len(body_fc) == 2, "GRU body should compute its gates with 2 FULLY_CONNECTED")


def check_tiny_transformer(m):
    need_ops(m, "FULLY_CONNECTED", "BATCH_MATMUL", "GELU", "SOFTMAX", "RSQRT")
    sg = m.t.subgraphs[0]
    fc_weights = [op.inputs[1] for _, op in m.ops(BO.FULLY_CONNECTED)]
    need(all(m.is_const(sg.tensors[i]) for i in fc_weights), "a FULLY_CONNECTED weight is not constant")
    need(len(fc_weights) >= 6, f"only {len(fc_weights)} FULLY_CONNECTED projections")


def check_fc_fused_acts(m):
    need_ops(m, "FULLY_CONNECTED", "TANH", "SOFTMAX")
    sg = m.t.subgraphs[0]
    shapes = {tuple(sg.tensors[op.inputs[1]].shape): op.builtinOptions.fusedActivationFunction
              for _, op in m.ops(BO.FULLY_CONNECTED)}
    need( {AF.RELU, AF.RELU6} <= set(shapes.values()),
         f"fused RELU and RELU6 expected: {shapes}")
    need(shapes.get((3, 32)) == AF.RELU, f"a [3, 32] FULLY_CONNECTED with fused RELU expected: {shapes}")


CHECKS = {
    "fc_fused_acts.tflite": check_fc_fused_acts,
    "singular_frontend.tflite": check_singular_frontend,
    "sentinel_pad_maxpool.tflite": check_sentinel_pad_maxpool,
    "sentinel_masked_attention.tflite": check_sentinel_masked_attention,
    "sentinel_select_attention.tflite": check_sentinel_select_attention,
    "sentinel_clip.tflite": check_sentinel_clip,
    "composite_attention.tflite": check_composite_attention,
    **{f"{n}.twin.tflite": check_twin for n in ("sentinel_pad_maxpool", "sentinel_masked_attention",
                                               "sentinel_select_attention", "sentinel_clip")},
    "custom_deconv.tflite": check_custom_deconv,
    "custom_argmax_unpool.tflite": check_custom_argmax_unpool,
    "tiny_transformer.tflite": check_tiny_transformer,
    "sparse_fp16_cnn.tflite": check_sparse_fp16_cnn,
    "shared_weights_cnn.tflite": check_shared_weights_cnn,
    "tied_embedding.tflite": check_tied_embedding,
    "lstm_gru.tflite": check_lstm_gru,
    "cnn_digits.tflite": check_cnn_digits,
    "fp16_weights_cnn.tflite": check_fp16_weights_cnn,
    "sparse_dense_mlp.tflite": check_sparse_dense_mlp,
    "sparse_block1x4_mlp.tflite": check_sparse_block1x4_mlp,
    "while_loop.tflite": check_while_loop,
    "no_signature_mlp.tflite": check_no_signature_mlp,
    "with_metadata_mlp.tflite": check_with_metadata_mlp,
    "int8_quantized_cnn.tflite": check_int8_quantized_cnn,
    "int8_quantized_cnn_int8io.tflite": check_int8_quantized_cnn_int8io,
    "custom_op.tflite": check_custom_op,
    "dynamic_batch_mlp.tflite": check_dynamic_batch_mlp,
    "legacy_opcodes_cnn.tflite": check_legacy_opcodes_cnn,
    "mlp_large_fc.tflite": check_mlp_large_fc,
    "mlp_large_fc.tf_dynamic.tflite": check_mlp_large_fc_tf_dynamic,
    "mlp_large_fc.tf_float16.tflite": check_tf_float16,
    "cnn_digits.tf_dynamic.tflite": check_cnn_digits_tf_dynamic,
    "cnn_digits.tf_float16.tflite": check_tf_float16,
    "ops_elementwise.tflite": check_ops_elementwise,
    "ops_activation.tflite": check_ops_activation,
    "ops_conv_pool.tflite": check_ops_conv_pool,
    "ops_shape.tflite": check_ops_shape,
    "ops_shape_dynamic.tflite": check_ops_shape_dynamic,
    "ops_reduce_misc.tflite": check_ops_reduce_misc,
    "lstm_seq.tflite": check_lstm_seq,
    "embedding_lookup.tflite": check_embedding_lookup,
}


# --- TF full-integer references (registry.TF_REFS) ---------------------------------

QDQ = (BO.QUANTIZE, BO.DEQUANTIZE)
WEIGHTED = (BO.CONV_2D, BO.DEPTHWISE_CONV_2D, BO.FULLY_CONNECTED)


def float_ops(m):
    """{op: count} of ops other than QUANTIZE/DEQUANTIZE with a non-constant FLOAT32 input or output."""
    hist = {}
    for sg, op in m.ops():
        if m.code(op) in QDQ:
            continue
        ts = [sg.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
        if any(t.type == TT.FLOAT32 and not m.is_const(t) for t in ts):
            name = builtin_name(m.code(op))
            hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items()))


def mixed_ops(m):
    """Ops (not QUANTIZE/DEQUANTIZE) mixing INT8/INT16 and FLOAT32 operands (invalid for TFLite kernels)."""
    out = []
    for sg, op in m.ops():
        if m.code(op) in QDQ:
            continue
        types = {sg.tensors[i].type for i in list(op.inputs) + list(op.outputs) if i >= 0}
        if types & {TT.INT8, TT.INT16} and TT.FLOAT32 in types:
            out.append(builtin_name(m.code(op)))
    return out


def _interface_only_float(m):
    """Fully integer between the interface: FLOAT32 tensors are only the model inputs/outputs,
    QUANTIZE only reads a model input (or requantizes), DEQUANTIZE only writes a model output."""
    sg = m.t.subgraphs[0]
    io = set(sg.inputs) | set(sg.outputs)
    for i, t in enumerate(sg.tensors):
        need(t.type != TT.FLOAT32 or i in io, f"float32 tensor {tensor_name(t)!r} inside the graph")
    for _, op in m.ops(BO.QUANTIZE):
        need(op.inputs[0] in sg.inputs or sg.tensors[op.inputs[0]].type != TT.FLOAT32, "inner float QUANTIZE")
    for _, op in m.ops(BO.DEQUANTIZE):
        need(op.outputs[0] in sg.outputs, "DEQUANTIZE not at an output")


def _check_weighted_ops(m, act_type, bias_type):
    for code in WEIGHTED:
        for sg, op in m.ops(code):
            x, w, y = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
            need(x.type == act_type and y.type == act_type and w.type == TT.INT8,
                 f"{builtin_name(code)} activations/weights {x.type}/{y.type}/{w.type}")
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                need(sg.tensors[op.inputs[2]].type == bias_type, f"{builtin_name(code)} bias type")
            q = w.quantization
            if code != BO.FULLY_CONNECTED or len(q.scale) > 1:
                need(len(q.scale) == w.shape[q.quantizedDimension], f"{builtin_name(code)} weights not per-axis")
            need(not np.any(q.zeroPoint), "weight zero point != 0")


def _check_int16_activations(m):
    for sg, op in m.ops():
        for i in list(op.inputs) + list(op.outputs):
            t = sg.tensors[i] if i >= 0 else None
            if t is None or m.is_const(t):
                continue
            need(t.type != TT.INT8, f"int8 activation {tensor_name(t)!r} in a 16x8 model")
            if t.type == TT.INT16:
                need(not np.any(t.quantization.zeroPoint), f"int16 activation with zero point {tensor_name(t)!r}")


def sqnr_db(ref, test):
    ref = ref.astype(np.float64)
    err = np.sum((ref - test.astype(np.float64)) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref ** 2) / err))


def _signature_outputs(m):
    sd = m.t.signatureDefs[0]
    sg = m.t.subgraphs[sd.subgraphIndex]
    return {o.name.decode(): tensor_name(sg.tensors[o.tensorIndex]) for o in sd.outputs}


def ref_sqnr(ref_m, float_fname, stem):
    """{signature output: SQNR (dB)} of the reference vs its float model on the whole test set."""
    fm = M(float_fname)
    inputs = runner.load_inputs(TESTDATA / float_fname, stem, "test")
    n = len(next(iter(inputs.values())))
    a = runner.run_samples(TESTDATA / float_fname, inputs, n)
    b = runner.run_samples(TESTDATA / ref_m.fname, runner.load_inputs(TESTDATA / ref_m.fname, stem, "test"), n)
    fa, fb = _signature_outputs(fm), _signature_outputs(ref_m)
    need(set(fa) == set(fb), "signature outputs differ from the float model")
    return {k: sqnr_db(a[fa[k]], b[fb[k]]) for k in fa}


# minimum SQNR (dB) of any output vs the float model; well below what TF 2.21 gave
SQNR_MIN = {"int8": 10.0, "int16x8": 30.0}


def check_tf_ref(m, r):
    need(all(t.type == TT.FLOAT32 for t in m.main_inputs() + m.main_outputs()), "interface not float32")
    got = float_ops(m)
    need(got in registry.allowed_float_ops(r), f"float ops {got}, registry allows {registry.allowed_float_ops(r)}")
    man = json.loads((TESTDATA / "manifest.json").read_text())["models"]
    need(man[m.fname]["tf_conversion"]["float_ops"] == got, "manifest float_ops differ from the file")
    need(man[r["float_model"]][f"tf_{r['kind']}"]["float_ops"] == got, "float model's manifest entry differs")
    mixed = mixed_ops(m)
    need(mixed == ([r["mixed_op"]] if r["mixed_op"] else []), f"ops mixing integer and float operands: {mixed}")
    if r["kind"] == "int8":
        _check_weighted_ops(m, TT.INT8, TT.INT32)
        need(not any(t.type == TT.INT16 for _, t in m.consts()), "int16 tensors in an int8 model")
    else:
        _check_weighted_ops(m, TT.INT16, TT.INT64)
        _check_int16_activations(m)
        need(any(t.type == TT.INT16 for sg in m.t.subgraphs for t in sg.tensors), "no INT16 tensors")
    if not r["float_ops"]:
        _interface_only_float(m)
    if r["identical_to"]:
        need(m.raw == (TESTDATA / r["identical_to"]).read_bytes(), f"not identical to {r['identical_to']}")
    if r["float_model"] in DYNAMIC_INPUT_MODELS:
        need(list(m.main_inputs()[0].shapeSignature) == [-1, 64], "shape_signature not [-1,64]")
    if r["litert_error"]:
        return ""
    sq = ref_sqnr(m, r["float_model"], r["stem"])
    worst = min(sq, key=sq.get)
    need(sq[worst] >= SQNR_MIN[r["kind"]], f"SQNR of {worst} {sq[worst]:.1f} dB < {SQNR_MIN[r['kind']]}")
    if len(sq) == 1:
        return f"SQNR {sq[worst]:.1f} dB vs {r['float_model']}"
    vals = sorted(sq.values())
    return (f"SQNR vs {r['float_model']}: min {vals[0]:.1f} dB ({worst}), median {vals[len(vals) // 2]:.1f}, "
            f"max {vals[-1]:.1f} over {len(vals)} outputs")


def check_litert_refuses(fname, message):
    try:
        it = runner.make_interpreter(TESTDATA / fname)
        it.invoke()
    except (RuntimeError, ValueError) as e:
        need(message in str(e), f"unexpected LiteRT error: {e}")
        return f"LiteRT refuses it as recorded ({message})"
    raise AssertionError(f"{fname} unexpectedly runs in LiteRT")


# --- QAT (issue #6) -------------------------------------------------------------------

QAT_OPS = {"QUANTIZE": 11, "DEQUANTIZE": 11, "CONV_2D": 3, "MAX_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}
QAT_INT8_OPS = {"CONV_2D": 3, "MAX_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}


def qat_pairs(m):
    """QUANTIZE->DEQUANTIZE pairs of the QAT float model: list of (kind, QUANTIZE op, DEQUANTIZE op)
    with kind 'input' / 'weight' / 'activation'."""
    sg = m.t.subgraphs[0]
    consumers = {}
    for op in sg.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    pairs = []
    for _, q in m.ops(BO.QUANTIZE):
        src, mid = sg.tensors[q.inputs[0]], sg.tensors[q.outputs[0]]
        need(src.type == TT.FLOAT32 and mid.type == TT.UINT8, "QUANTIZE not FLOAT32 -> UINT8")
        users = consumers.get(q.outputs[0], [])
        need(len(users) == 1 and m.code(users[0]) == BO.DEQUANTIZE, "QUANTIZE not followed by one DEQUANTIZE")
        dq = users[0]
        need(sg.tensors[dq.outputs[0]].type == TT.FLOAT32, "DEQUANTIZE output not FLOAT32")
        kind = "input" if q.inputs[0] in sg.inputs else ("weight" if m.is_const(src) else "activation")
        pairs.append((kind, q, dq))
    return pairs


def _qat_float_params(m):
    """Per weighted op of the QAT float model, in op order: (code, grid weights as int, weight scales,
    output activation (scale, uint8 zero point))."""
    sg = m.t.subgraphs[0]
    producer = {o: op for op in sg.operators for o in op.outputs}
    consumers = {}
    for op in sg.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    out = []
    for op in sg.operators:
        code = m.code(op)
        if code not in (BO.CONV_2D, BO.FULLY_CONNECTED):
            continue
        q = producer[producer[op.inputs[1]].inputs[0]]          # DEQUANTIZE <- QUANTIZE <- const
        w_t, wq = sg.tensors[q.inputs[0]], sg.tensors[q.outputs[0]].quantization
        scale = np.asarray(wq.scale, np.float64)
        w = m.const_array(w_t).reshape(w_t.shape).astype(np.float64)
        ws = w / (scale.reshape(-1, *[1] * (w.ndim - 1)) if len(scale) > 1 else scale[0])
        t = op.outputs[0]
        nxt = consumers[t][0]
        if m.code(nxt) == BO.RESHAPE:                               # conv3: pair after the flatten
            nxt = consumers[nxt.outputs[0]][0]
        need(m.code(nxt) == BO.QUANTIZE, "weighted op output not fake-quantized")
        aq = sg.tensors[nxt.outputs[0]].quantization
        out.append((code, np.round(ws).astype(np.int64), scale, (aq.scale[0], int(aq.zeroPoint[0]))))
    return out


def check_qat_float(m):
    hist = {k: v for k, v in sorted(op_histogram(m.t).items())}
    need(hist == dict(sorted(QAT_OPS.items())), f"ops {hist}")
    need("FAKE_QUANT" not in m.names(), "FAKE_QUANT op present")
    pairs = qat_pairs(m)
    kinds = [k for k, _, _ in pairs]
    need((kinds.count("input"), kinds.count("weight"), kinds.count("activation")) == (1, 5, 5),
         f"pairs input/weight/activation {kinds}")
    sg = m.t.subgraphs[0]
    consumers = {}
    for op in sg.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    for kind, q, dq in pairs:
        src, mid = sg.tensors[q.inputs[0]], sg.tensors[q.outputs[0]]
        qp = mid.quantization
        zp, sc = np.asarray(qp.zeroPoint), np.asarray(qp.scale)
        if kind == "input":
            need(len(sc) == 1 and abs(sc[0] - 1 / 255) < 1e-7 and zp[0] == 0, f"input pair {sc} {zp}")
        elif kind == "activation":
            need(len(sc) == 1 and 0 <= zp[0] <= 255, "activation pair not per-tensor uint8")
        else:
            need(np.all(zp == 128), f"weight zero points {np.unique(zp)}")
            user = consumers[dq.outputs[0]][0]
            w = m.const_array(src).reshape(src.shape).astype(np.float64)
            if m.code(user) == BO.CONV_2D:
                need(len(sc) == src.shape[0] > 1 and qp.quantizedDimension == 0, "conv weights not per-channel")
                grid = w / sc.reshape(-1, 1, 1, 1)
                need(list(mid.shape) == list(src.shape), "conv weight Q/DQ shape")
            else:
                need(m.code(user) == BO.FULLY_CONNECTED and len(sc) == 1, "FC weights not per-tensor")
                grid = w / sc[0]
                # converter quirk: the FC weight QUANTIZE/DEQUANTIZE outputs are declared with shape []
                need(list(mid.shape) == [] and list(sg.tensors[dq.outputs[0]].shape) == [], "FC weight Q/DQ shape")
            need(np.abs(grid - np.round(grid)).max() < 1e-3, "weights not on the quantization grid")
            need(np.abs(np.round(grid)).max() <= 127, "weights outside [-127, 127] steps")
    for code in (BO.CONV_2D, BO.FULLY_CONNECTED):
        for sg_, op in m.ops(code):
            need(m.is_const(sg_.tensors[op.inputs[2]]) and sg_.tensors[op.inputs[2]].type == TT.FLOAT32,
                 "bias not a float32 constant")


def _check_qat_int8(m, io_type):
    hist = {k: v for k, v in sorted(op_histogram(m.t).items())}
    want = dict(QAT_INT8_OPS)
    if io_type == TT.FLOAT32:
        want.update(QUANTIZE=1, DEQUANTIZE=1)
    need(hist == dict(sorted(want.items())), f"ops {hist}")
    need(all(t.type == io_type for t in m.main_inputs() + m.main_outputs()), "interface type")
    _check_weighted_ops(m, TT.INT8, TT.INT32)
    if io_type == TT.FLOAT32:
        _interface_only_float(m)
    else:
        need(not any(t.type == TT.FLOAT32 for sg in m.t.subgraphs for t in sg.tensors), "float32 tensor left")
    # exactly the QAT float model's grid weights and ranges
    ref = _qat_float_params(M("qat_digits.float.tflite"))
    ops = [(sg, op) for sg, op in m.ops() if m.code(op) in (BO.CONV_2D, BO.FULLY_CONNECTED)]
    need(len(ops) == len(ref) == 5, "weighted op count")
    for (sg, op), (code, wq, wscale, (ascale, azp)) in zip(ops, ref):
        need(m.code(op) == code, "op order differs from the QAT float model")
        w, y = sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
        need(np.allclose(np.asarray(w.quantization.scale), wscale, rtol=1e-6), "weight scales differ")
        need(np.array_equal(m.const_array(w).reshape(w.shape).astype(np.int64), wq), "int8 weights != QAT grid")
        need(abs(y.quantization.scale[0] - ascale) <= 1e-6 * ascale and y.quantization.zeroPoint[0] == azp - 128,
             "activation scale / zero point differ from the QAT ranges")


def check_qat_int8(m):
    _check_qat_int8(m, TT.FLOAT32)


def check_qat_int8io(m):
    _check_qat_int8(m, TT.INT8)


CHECKS.update({"qat_digits.float.tflite": check_qat_float,
               "qat_digits.tf_int8.tflite": check_qat_int8,
               "qat_digits.tf_int8_int8io.tflite": check_qat_int8io})
def _check_streaming(m, state_type):
    need_ops(m, "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE", "CONCATENATION", "CONV_2D")
    need(len(m.t.subgraphs) == 2, f"{len(m.t.subgraphs)} subgraphs, expected main + init")
    reads = m.ops(BO.READ_VARIABLE, subgraph=0)
    need(len(reads) == 2 and len(m.ops(BO.ASSIGN_VARIABLE, subgraph=0)) == 2, "2 READ + 2 ASSIGN in main")
    for sg, op in reads:
        t = sg.tensors[op.outputs[0]]
        need(t.type == state_type, f"READ_VARIABLE output is {t.type}, expected {state_type}")
    init = m.ops(BO.ASSIGN_VARIABLE, subgraph=1)
    need(len(init) == 2, "the init subgraph assigns both variables")
    for sg, op in init:
        v = sg.tensors[op.inputs[1]]
        need(m.is_const(v) and v.type == state_type and not m.const_array(v).any() if state_type == TT.FLOAT32
             else m.is_const(v) and v.type == state_type, "initial value")
    ins = m.main_inputs()
    need(len(ins) == 1 and list(ins[0].shape) == [1, 8], "one frame [1,8] in")


CHECKS["lstm_digits.tflite"] = lambda m: need_ops(m, "UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED")
CHECKS["gru_digits.tflite"] = lambda m: need_ops(m, "WHILE", "FULLY_CONNECTED")
CHECKS["lstm_gru_digits.tflite"] = check_lstm_gru
# Keras Bidirectional(LSTM): two unidirectional LSTMs, the backward one behind REVERSE_V2.
CHECKS["bilstm_digits.tflite"] = lambda m: (
    need_ops(m, "UNIDIRECTIONAL_SEQUENCE_LSTM", "REVERSE_V2", "CONCATENATION"),
    need("BIDIRECTIONAL_SEQUENCE_LSTM" not in m.names(), "a BIDIRECTIONAL_SEQUENCE_LSTM appeared"),
)
CHECKS["streaming_kws.tflite"] = lambda m: _check_streaming(m, TT.FLOAT32)
CHECKS["streaming_kws.tf_int8.tflite"] = lambda m: _check_streaming(m, TT.INT8)


for _r in registry.TF_REFS:
    CHECKS[_r["file"]] = (lambda r: lambda m: check_tf_ref(m, r))(_r)

# (lo, hi) sample counts of the calib / test files; digits_qat has a large test set
N_RANGE = {"calib": (32, 64), "test": (16, 32)}
N_RANGE_BY_STEM = {("digits_qat", "test"): (300, 400),
                   ("streaming_kws", "calib"): (512, 512), ("streaming_kws", "test"): (256, 256)}


# --- generic checks -------------------------------------------------------------

def check_generic(m, stem, runnable):
    need(m.raw[4:8] == b"TFL3", "file identifier is not TFL3")
    need(len(m.raw) < 1_000_000, f"{len(m.raw)} bytes >= 1 MB")
    if m.fname not in DYNAMIC_INPUT_MODELS:
        for t in m.main_inputs():
            need(t.shape[0] == 1 and (t.shapeSignature is None or -1 not in list(t.shapeSignature)),
                 "input should be static batch 1")
    for split in ("calib", "test"):
        lo, hi = N_RANGE_BY_STEM.get((stem, split), N_RANGE[split])
        inputs = runner.load_inputs(TESTDATA / m.fname, stem, split)
        for name, arr in inputs.items():
            need(lo <= arr.shape[0] <= hi, f"{split} N={arr.shape[0]}")
            want = np.int32 if stem == "embedding_lookup" else np.float32
            need(arr.dtype == want, f"{split} data dtype {arr.dtype}")
    if not runnable:
        return ""
    path = TESTDATA / m.fname
    test = runner.load_inputs(path, stem, "test")
    out = runner.run_samples(path, test, 1)
    exp = np.load(TESTDATA / m.fname.replace(".tflite", ".expected.npz"))
    need(set(exp.files) == set(out), "expected.npz keys differ from outputs")
    for k, v in out.items():
        e = exp[k][:1]
        need(e.shape == v.shape and e.dtype == v.dtype, f"{k}: expected {e.dtype}{e.shape} got {v.dtype}{v.shape}")
        if np.issubdtype(v.dtype, np.floating):
            need(np.allclose(v, e, rtol=1e-5, atol=1e-6, equal_nan=True), f"{k}: output differs from expected")
            need(np.isfinite(v).all(), f"{k}: non-finite output")
        else:
            need(np.array_equal(v, e), f"{k}: output differs from expected")
    if m.fname in registry.CLASSIFIERS:
        labels = np.load(TESTDATA / registry.test_labels(stem))
        need(len(labels) == len(next(iter(test.values()))), "labels and test data differ in length")
        allout = runner.run_samples(path, test, len(labels))
        (name, probs), = allout.items()
        acc = float((probs.reshape(len(labels), -1).argmax(-1) == labels).mean())
        need(acc >= 0.85, f"test accuracy {acc:.3f}")
        return f"test acc {acc:.3f} (N={len(labels)})"
    return "ran"


def check_custom_op_fails_in_litert():
    try:
        runner.make_interpreter(TESTDATA / "custom_op.tflite")
    except (RuntimeError, ValueError) as e:
        need(CUSTOM_CODE in str(e) or "custom" in str(e).lower(), f"unexpected error: {e}")
        return "LiteRT refuses it as expected (unresolved custom op)"
    raise AssertionError("custom_op.tflite unexpectedly loaded in LiteRT")


def main():
    failures = 0
    total = 0
    for fname, stem, runnable, _ in registry.MODELS:
        try:
            m = M(fname)
            total += len(m.raw)
            extra = CHECKS[fname](m)
            note = check_generic(m, stem, runnable)
            if extra:
                note = f"{note}; {extra}" if note else extra
            if not runnable:
                ref = registry.ref_by_file(fname)
                note = check_litert_refuses(fname, ref["litert_error"]) if ref else check_custom_op_fails_in_litert()
            status = "ok"
        except Exception as e:  # report every failure, not just the first
            status, note = "FAIL", f"{type(e).__name__}: {e}"
            if not isinstance(e, AssertionError):
                traceback.print_exc()
            failures += 1
        hist = ""
        try:
            hist = ", ".join(f"{k}:{v}" for k, v in sorted(op_histogram(read_model_t(
                (TESTDATA / fname).read_bytes())).items()))
        except Exception:
            pass
        size = (TESTDATA / fname).stat().st_size if (TESTDATA / fname).exists() else 0
        print(f"[{status}] {fname} ({size} B) {note}\n       ops: {hist}")
    all_bytes = sum(p.stat().st_size for p in TESTDATA.rglob("*")
                    if p.is_file() and "gen" not in p.relative_to(TESTDATA).parts)
    print(f"models: {total} bytes; all testdata files: {all_bytes} bytes")
    if all_bytes > 5_000_000:
        print("FAIL: testdata larger than ~5 MB (the brief: a few MB in all)")
        failures += 1
    print(f"{len(registry.MODELS) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
