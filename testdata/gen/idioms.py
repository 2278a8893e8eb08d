"""Exporter idioms (issue #19)  (``make_all.py --only idioms``).

Sentinel constants as exporters write them, each with a sentinel-free twin that
computes the same function (or, for the mask, the same function to ~1e-13), so a
test can compare the quantized SQNR of both:

* ``sentinel_pad_maxpool`` - CONV_2D, PADV2 with the lowest float (-3.4e38) as pad
  value, MAX_POOL_2D VALID; twin: the same MAX_POOL_2D with SAME padding (TFLite pads
  a max pool with -inf itself).
* ``sentinel_masked_attention`` - causal self-attention whose scores get a constant
  mask of 0 / -1e9 added before SOFTMAX; twin: the mask value is -30 (e^-30 ~ 1e-13,
  an ordinary value).
* ``sentinel_select_attention`` - the same attention masked with SELECT_V2(causal,
  scores, -inf) (the converter writes the fill as -FLT_MAX; an object-API rewrite
  puts -inf back, as litert-torch writes it); twin: -30 instead of -inf.
* ``sentinel_clip`` - MLP with tf.clip_by_value(h, -FLT_MAX, FLT_MAX) (MINIMUM,
  MAXIMUM with +-3.4e38); twin: without the clip.

``singular_frontend`` (issue #15 item 2): LOG(SQUARE(FC(x)) + 1e-6) and a DIV by
ABS(FC(x)) + 1e-3, whose operands reach 0 in int8.

And a STABLEHLO_COMPOSITE model as litert-torch writes them:

* ``composite_attention`` - the masked attention model (-1e9 mask) whose attention
  core (BATCH_MATMUL, MUL, ADD mask, SOFTMAX, BATCH_MATMUL, output projection
  FULLY_CONNECTED with a 32x32 weight) is moved by an object-API rewrite into a
  decomposition subgraph called by one STABLEHLO_COMPOSITE op named
  ``odml.attention_block`` (composite attributes: a FlexBuffer map {scale: 0.17677669};
  see COMPOSITE_NAME for why not ``odml.scaled_dot_product_attention``).

Weights are seeded random (the idioms are about graph structure); inputs are the
committed real sample data of other models (photo crops, digits).
"""

import numpy as np
from flatbuffers import flexbuffers

import common
from common import tf, schema, reset_seeds, write_bytes, read_model_t, write_model_t, opcode_builtin

FLT_MAX = float(np.finfo(np.float32).max)
# Not "odml.scaled_dot_product_attention": LiteRT's XNNPACK delegate replaces composites of
# that name by its fused SDPA kernel, which requires 4-D [B,T,N,H] query/key/value (and
# refuses this 3-D block: "query_dim->size != 4"); an unknown name runs the decomposition,
# which is what LiteRT does for every composite it has no fused kernel for.
COMPOSITE_NAME = "odml.attention_block"
D = 32  # attention width


def _spec(shape, name):
    return tf.TensorSpec(shape, tf.float32, name=name)


def _w(shape, fan_in, seed):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(0, 1 / np.sqrt(fan_in), size=shape).astype(np.float32))


# --- pad then max-pool -------------------------------------------------------

class _PadPool(tf.Module):
    def __init__(self, sentinel):
        super().__init__()
        self.sentinel = sentinel
        self.w1 = _w([3, 3, 3, 8], 27, 1)
        self.b1 = _w([8], 8, 2)
        self.w2 = _w([1, 1, 8, 8], 8, 3)

    @tf.function(input_signature=[_spec([1, 16, 16, 3], "image")])
    def serve(self, x):
        h = tf.nn.conv2d(x, self.w1, 1, "SAME") + self.b1 - 0.2  # negatives too
        if self.sentinel:
            # the pad value is the lowest float, "minus infinity" for the max pool
            h = tf.pad(h, [[0, 0], [0, 1], [0, 1], [0, 0]], constant_values=-FLT_MAX)
            h = tf.nn.max_pool2d(h, 3, 2, "VALID")
        else:
            h = tf.nn.max_pool2d(h, 3, 2, "SAME")
        return {"out": tf.nn.conv2d(h, self.w2, 1, "VALID")}


# --- masked attention --------------------------------------------------------

def _causal(neg):
    m = np.triu(np.ones((8, 8), np.float32), 1) * neg
    return tf.constant(np.where(np.isnan(m), 0, m).astype(np.float32))


class _Attention(tf.Module):
    """x: [1,8,8] (8 digit rows of 8 pixels) -> [1,8,10]; causal self-attention."""

    def __init__(self, mask_value, select):
        super().__init__()
        self.mask_value = mask_value
        self.select = select
        self.w_in = _w([8, D], 8, 10)
        # q and k 4x larger: scores spread over several units, so the softmax is far
        # from uniform and a broken score range shows in the output
        self.wq, self.wk = (4.0 * _w([D, D], D, s) for s in (11, 12))
        self.wv = _w([D, D], D, 13)
        self.wo = _w([D, D], D, 14)
        self.w_out = _w([D, 10], D, 15)

    @tf.function(input_signature=[_spec([1, 8, 8], "rows")])
    def serve(self, x):
        h = tf.nn.relu(tf.matmul(x, self.w_in))
        q, k, v = (tf.matmul(h, w) for w in (self.wq, self.wk, self.wv))
        s = tf.matmul(q, k, transpose_b=True) * (1.0 / np.sqrt(D))
        if self.select:
            keep = tf.constant(np.tril(np.ones((8, 8), bool)))
            s = tf.where(keep, s, tf.fill([1, 8, 8], tf.constant(self.mask_value, tf.float32)))
        else:
            s = s + tf.constant(np.triu(np.ones((8, 8), np.float32), 1) * np.float32(self.mask_value))
        a = tf.matmul(tf.nn.softmax(s, axis=-1), v)
        a = tf.matmul(a, self.wo)
        return {"logits": tf.matmul(a, self.w_out)}


# --- clip with +-FLT_MAX ---------------------------------------------------------

class _Clip(tf.Module):
    def __init__(self, sentinel):
        super().__init__()
        self.sentinel = sentinel
        self.w1 = _w([64, 32], 64, 20)
        self.w2 = _w([32, 10], 32, 21)

    @tf.function(input_signature=[_spec([1, 64], "pixels")])
    def serve(self, x):
        h = tf.matmul(x, self.w1) - 0.1
        if self.sentinel:
            h = tf.clip_by_value(h, -FLT_MAX, FLT_MAX)
        return {"logits": tf.matmul(h, self.w2)}


# --- singular operands (issue #15 item 2) -------------------------------------------

class _Singular(tf.Module):
    """An audio-style float front end: log power, and a ratio by a small magnitude."""

    def __init__(self):
        super().__init__()
        self.w1 = _w([64, 32], 64, 30)
        self.w2 = _w([64, 16], 64, 31)
        self.w3 = _w([64, 16], 64, 32)
        self.w4 = _w([32, 10], 32, 33)

    @tf.function(input_signature=[_spec([1, 64], "pixels")])
    def serve(self, x):
        h = tf.matmul(x, self.w1)
        logpow = tf.math.log(tf.square(h) + 1e-6)                   # LOG of a power near 0
        ratio = tf.matmul(x, self.w2) / (tf.abs(tf.matmul(x, self.w3)) + 1e-3)  # DIV by ~0
        return {"logits": tf.matmul(logpow, self.w4), "ratio": ratio}


def _convert(module):
    return common.convert_concrete(module.serve.get_concrete_function(), module)


# --- STABLEHLO_COMPOSITE rewrite ---------------------------------------------------

def _ensure_opcode(m, builtin, version=1):
    for i, oc in enumerate(m.operatorCodes):
        if opcode_builtin(oc) == builtin and oc.version == version:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    m.operatorCodes.append(oc)
    return len(m.operatorCodes) - 1


def _make_composite(data):
    """Moves the attention core of the converted attention model into a decomposition
    subgraph called by a STABLEHLO_COMPOSITE op."""
    m = read_model_t(data)
    sg = m.subgraphs[0]
    code = lambda op: opcode_builtin(m.operatorCodes[op.opcodeIndex])  # noqa: E731
    ops = list(sg.operators)
    bmm = [i for i, op in enumerate(ops) if code(op) == schema.BuiltinOperator.BATCH_MATMUL]
    # the core: from the scores BATCH_MATMUL to the FULLY_CONNECTED (or BATCH_MATMUL) after
    # the second BATCH_MATMUL (the output projection)
    first, second = bmm[0], bmm[1]
    last = second + 1
    assert code(ops[last]) in (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.BATCH_MATMUL)
    core = ops[first:last + 1]
    produced = {t for op in core for t in op.outputs}
    consumed_outside = {t for op in ops[:first] + ops[last + 1:] for t in op.inputs} | set(sg.outputs)
    is_const = lambda t: m.buffers[sg.tensors[t].buffer].data is not None and len(m.buffers[sg.tensors[t].buffer].data) > 0  # noqa: E731,E501
    ins = []
    for op in core:
        for t in op.inputs:
            if t >= 0 and t not in produced and not is_const(t) and t not in ins:
                ins.append(t)
    outs = [t for t in produced if t in consumed_outside]
    assert len(ins) == 3 and len(outs) == 1, (ins, outs)
    # the decomposition: copies of every tensor the core touches
    used = []
    for op in core:
        for t in list(op.inputs) + list(op.outputs):
            if t >= 0 and t not in used:
                used.append(t)
    remap = {t: i for i, t in enumerate(used)}
    dec = schema.SubGraphT()
    dec.name = COMPOSITE_NAME + ".impl"
    dec.tensors = []
    for t in used:
        src = sg.tensors[t]
        nt = schema.TensorT()
        nt.shape, nt.shapeSignature, nt.type, nt.name = src.shape, src.shapeSignature, src.type, src.name
        nt.buffer = src.buffer if is_const(t) else 0
        dec.tensors.append(nt)
    for op in core:
        op.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [remap[t] for t in op.outputs]
    dec.operators = core
    dec.inputs = [remap[t] for t in ins]
    dec.outputs = [remap[t] for t in outs]
    m.subgraphs.append(dec)
    # the composite op in place of the core
    comp = schema.OperatorT()
    comp.opcodeIndex = _ensure_opcode(m, schema.BuiltinOperator.STABLEHLO_COMPOSITE)
    comp.inputs, comp.outputs = ins, outs
    opts = schema.StableHLOCompositeOptionsT()
    opts.name = COMPOSITE_NAME
    opts.decompositionSubgraphIndex = len(m.subgraphs) - 1
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Key("scale")
        fbb.Float(float(1 / np.sqrt(D)))
    opts.compositeAttributes = list(fbb.Finish())
    opts.compositeAttributesFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    opts.version = 1
    comp.builtinOptions2Type = schema.BuiltinOptions2.StableHLOCompositeOptions
    comp.builtinOptions2 = opts
    sg.operators = ops[:first] + [comp] + ops[last + 1:]
    # tensors the main graph no longer uses are left unused but valid (core intermediates)
    return write_model_t(m)


def _true_inf(data):
    """The converter stores tf.fill(-inf) as -FLT_MAX; exporters such as litert-torch
    write -inf itself: put it back (object-API rewrite of the scalar constant)."""
    m = read_model_t(data)
    hits = 0
    for sg in m.subgraphs:
        for t in sg.tensors:
            b = m.buffers[t.buffer].data
            if t.type == schema.TensorType.FLOAT32 and b is not None and len(b) == 4:
                if np.frombuffer(bytes(b), "<f4")[0] == -FLT_MAX:
                    m.buffers[t.buffer].data = list(np.array([-np.inf], "<f4").tobytes())
                    hits += 1
    assert hits == 1, hits
    return write_model_t(m)


def make_idioms():
    reset_seeds()
    for name, module in [
        ("sentinel_pad_maxpool", _PadPool(True)),
        ("sentinel_pad_maxpool.twin", _PadPool(False)),
        ("sentinel_masked_attention", _Attention(-1e9, False)),
        ("sentinel_masked_attention.twin", _Attention(-30.0, False)),
        ("sentinel_select_attention", _Attention(-np.inf, True)),
        ("sentinel_select_attention.twin", _Attention(-30.0, True)),
        ("sentinel_clip", _Clip(True)),
        ("sentinel_clip.twin", _Clip(False)),
        ("singular_frontend", _Singular()),
    ]:
        write_bytes(f"{name}.tflite", _convert(module))
    write_bytes("sentinel_select_attention.tflite",
                _true_inf((common.TESTDATA / "sentinel_select_attention.tflite").read_bytes()))
    write_bytes("composite_attention.tflite",
                _make_composite((common.TESTDATA / "sentinel_masked_attention.tflite").read_bytes()))
