"""Interpreter-coverage models: small float graphs that exercise many TFLite ops.

Each ``make_ops_*`` function writes one model plus its calibration / held-out
input files.  The graphs are written as ``tf.function`` methods of a
``tf.Module`` (weights are fixed, deterministic constants; there is nothing
to learn) and converted with ``from_concrete_functions`` so the model keeps a
``serving_default`` SignatureDef.  Every op result that matters is returned
as its own named output so a test can compare each op separately.

Constants come from ``_const`` (a seeded RandomState, not the input data);
all inputs are real images (scikit-image photos) or digits.
"""

import numpy as np

import common
from common import tf, convert_concrete, reset_seeds
import data


def _const(shape, seed, scale=0.5, offset=0.0):
    """Deterministic float32 constant (weights, not sample data)."""
    r = np.random.RandomState(seed)
    return (r.standard_normal(shape) * scale + offset).astype(np.float32)


def _spec(shape, name, dtype=tf.float32):
    return tf.TensorSpec(shape, dtype, name=name)


# ---------------------------------------------------------------------------
# ops_elementwise: binary ops with broadcasting + unary math ops
# ---------------------------------------------------------------------------

class _Elementwise(tf.Module):
    """x: [1,4,4,3] image crop; y: [1,4,1,1] per-row brightness of that crop."""

    def __init__(self):
        super().__init__()
        self.c3 = tf.constant([0.5, 1.5, -0.25], tf.float32)          # broadcasts as [3]

    @tf.function(input_signature=[_spec([1, 4, 4, 3], "x"), _spec([1, 4, 1, 1], "y")])
    def serve(self, x, y):
        c3 = self.c3
        yp = y + 0.5                       # ADD (activation [1,4,1,1] + scalar)
        return {
            "add_relu": tf.nn.relu(x + c3),                    # ADD [1,4,4,3]+[3], fused RELU
            "sub": x - y,                                      # SUB [1,4,4,3]-[1,4,1,1]
            "mul_relu6": tf.nn.relu6(x * yp * 8.0),            # MUL (fused RELU6 when fusable)
            "mul_c3": x * c3,                                  # MUL by [3]
            "div": x / yp,                                     # DIV by activation
            "floor_div": tf.math.floordiv(x * 4.0, yp),        # FLOOR_DIV
            "pow": tf.pow(x + 0.5, yp),                        # POW
            "squared_difference": tf.math.squared_difference(x, y),
            "maximum": tf.maximum(x, y),
            "minimum": tf.minimum(x, c3),
            "exp": tf.exp(x),
            "log": tf.math.log(x + 0.1),
            "sqrt": tf.sqrt(x),
            "rsqrt": tf.math.rsqrt(x + 0.1),
            "square": tf.square(x),            # (square(x - y) would fuse into SQUARED_DIFFERENCE)
            "neg": tf.negative(x),
            "abs": tf.abs(x - y),
            "sin": tf.sin(x * 3.0),
            "cos": tf.cos(x * 3.0),
            "floor": tf.floor(x * 4.0),
            "ceil": tf.math.ceil(x * 4.0),
            "round": tf.round(x * 4.0),
            "sign": tf.sign(x - y),
        }


def build_ops_elementwise():
    m = _Elementwise()
    return convert_concrete(m.serve.get_concrete_function(), m)


def elementwise_inputs(split, n):
    """x: 4x4 RGB photo crops; y: mean brightness of each crop row (real data)."""
    x = data.photo_crops(split, 4, n, scale_to=24)
    y = x.mean(axis=(2, 3)).reshape(n, 4, 1, 1).astype(np.float32)
    return x, y


# ---------------------------------------------------------------------------
# ops_activation
# ---------------------------------------------------------------------------

class _Activation(tf.Module):
    """x: [1,64] standardized digit image (values roughly in [-3, 6])."""

    def __init__(self):
        super().__init__()
        # PReLU slopes, stored negated: the converter matches
        # relu(x) + (-alpha) * relu(-x) (with a constant -alpha) to PRELU.
        self.neg_alpha = tf.constant(-np.linspace(0.05, 0.5, 64, dtype=np.float32))

    @tf.function(input_signature=[_spec([1, 64], "x")])
    def serve(self, x):
        def prelu(v):
            return tf.nn.relu(v) + self.neg_alpha * tf.nn.relu(-v)

        def hard_swish(v):
            return v * tf.nn.relu6(v + 3.0) * (1.0 / 6.0)

        def gelu_exact(v):  # the converter fuses this form into GELU(approximate=false)
            return 0.5 * v * (1.0 + tf.math.erf(v / 1.4142135623730951))

        return {
            "logistic": tf.sigmoid(x),
            "tanh": tf.tanh(x),
            "relu": tf.nn.relu(x),
            "relu6": tf.nn.relu6(x),
            "mul_fused_relu6": tf.nn.relu6(x * 2.0),          # MUL with fused RELU6
            "relu_n1_to_1": tf.minimum(tf.maximum(x, -1.0), 1.0),
            "leaky_relu": tf.nn.leaky_relu(x, alpha=0.2),
            "prelu": prelu(x + 0.25),  # own input: relu(x) is shared with "relu" and would block the match
            "elu": tf.nn.elu(x),
            "hard_swish": hard_swish(x),
            "gelu_tanh": tf.nn.gelu(x, approximate=True),
            # exact GELU is matched from this exact form; it is applied to x - 0.25 so
            # that its 0.5*v is not CSE-merged with the tanh GELU's 0.5*x
            "gelu_erf": gelu_exact(x - 0.25),
            "softmax": tf.nn.softmax(x),
            "softmax_beta": tf.nn.softmax(x * 1.5),  # MUL+SOFTMAX, folded into beta=1.5 afterwards
            "log_softmax": tf.nn.log_softmax(x),
            "l2_normalization": tf.math.l2_normalize(x, axis=-1),
        }


def build_ops_activation():
    m = _Activation()
    return fold_mul_into_softmax_beta(convert_concrete(m.serve.get_concrete_function(), m))


def fold_mul_into_softmax_beta(tflite_bytes):
    """Rewrite MUL(x, scalar c) -> SOFTMAX(beta=1) into SOFTMAX(x, beta=c).

    The TF converter always emits SOFTMAX with beta=1 (a temperature stays a
    separate MUL), so a beta != 1 can only be produced by this object-API
    rewrite.  softmax(c*x) == SOFTMAX(x, beta=c) exactly as TFLite defines
    beta.  The MUL op is removed; its scalar constant and output tensor are
    left in the tensor table unused (harmless, and a reader must cope).
    """
    model = common.read_model_t(tflite_bytes)
    sg = model.subgraphs[0]
    producer = {o: op for op in sg.operators for o in op.outputs}
    consumers = {}
    for op in sg.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    code = lambda op: common.opcode_builtin(model.operatorCodes[op.opcodeIndex])
    S = common.schema.BuiltinOperator
    folded = 0
    for op in list(sg.operators):
        if code(op) != S.SOFTMAX:
            continue
        mul = producer.get(op.inputs[0])
        if mul is None or code(mul) != S.MUL or mul.builtinOptions.fusedActivationFunction != 0:
            continue
        if len(consumers.get(mul.outputs[0], [])) != 1 or mul.outputs[0] in sg.outputs:
            continue
        scalar = None
        for k, t_idx in enumerate(mul.inputs):
            t = sg.tensors[t_idx]
            buf = model.buffers[t.buffer].data
            if buf is not None and len(buf) == 4 and (t.shape is None or len(t.shape) == 0):
                scalar, other = float(np.frombuffer(bytes(buf), "<f4")[0]), mul.inputs[1 - k]
        if scalar is None:
            continue
        op.inputs[0] = other
        op.builtinOptions.beta = scalar
        sg.operators.remove(mul)
        folded += 1
    assert folded == 1, f"expected one MUL->SOFTMAX pair, folded {folded}"
    return common.write_model_t(model)


def activation_inputs(split, n):
    """Digits flattened to 64 values and standardized with the training-set stats."""
    xtr, _ = data.digits_split("train")
    xtr = xtr.reshape(-1, 64)
    mu, sd = xtr.mean(0), xtr.std(0) + 0.1
    x, _ = data.digits_split(split)
    x = x[:n].reshape(n, 64)
    return ((x - mu) / sd).astype(np.float32)


# ---------------------------------------------------------------------------
# ops_conv_pool
# ---------------------------------------------------------------------------

class _ConvPool(tf.Module):
    """x: [1,16,16,3] RGB photo crop."""

    def __init__(self):
        super().__init__()
        self.w_s2 = tf.constant(_const([3, 3, 3, 8], 1, 0.3))
        self.b_s2 = tf.constant(_const([8], 2, 0.1))
        self.w_valid = tf.constant(_const([3, 3, 3, 6], 3, 0.3))
        self.b_valid = tf.constant(_const([6], 4, 0.1))
        self.w_dil = tf.constant(_const([3, 3, 3, 4], 5, 0.3))
        self.w_dw = tf.constant(_const([3, 3, 3, 2], 6, 0.3))     # depth multiplier 2
        self.b_dw = tf.constant(_const([6], 7, 0.1))
        self.w_tc = tf.constant(_const([3, 3, 4, 8], 8, 0.3))     # [h,w,out,in]
        self.b_tc = tf.constant(_const([4], 9, 0.1))

    @tf.function(input_signature=[_spec([1, 16, 16, 3], "image")])
    def serve(self, x):
        conv_s2 = tf.nn.relu(tf.nn.conv2d(x, self.w_s2, 2, "SAME") + self.b_s2)        # [1,8,8,8]
        conv_valid = tf.nn.relu6(tf.nn.conv2d(x, self.w_valid, 1, "VALID") + self.b_valid)  # [1,14,14,6]
        conv_dil = tf.nn.conv2d(x, self.w_dil, 1, "SAME", dilations=2)                  # [1,16,16,4]
        dw = tf.nn.relu(tf.nn.depthwise_conv2d(x, self.w_dw, [1, 1, 1, 1], "SAME") + self.b_dw)  # [1,16,16,6]
        tconv = tf.nn.conv2d_transpose(conv_s2, self.w_tc, [1, 16, 16, 4], 2, "SAME") + self.b_tc
        return {
            "conv_stride2_same_relu": conv_s2,
            "conv_valid_relu6": conv_valid,
            "conv_dilation2": conv_dil,
            "depthwise_mult2_relu": dw,
            "transpose_conv": tconv,
            "avg_pool": tf.nn.avg_pool2d(x, 2, 2, "VALID"),
            "max_pool_same": tf.nn.max_pool2d(conv_valid, 3, 2, "SAME"),
            "l2_pool": tf.sqrt(tf.nn.avg_pool2d(tf.square(x), 2, 2, "VALID")),
            "resize_bilinear_align_corners": tf.compat.v1.image.resize_bilinear(
                x, [23, 23], align_corners=True),
            "resize_bilinear_half_pixel": tf.image.resize(x, [24, 24], method="bilinear"),
            "resize_bilinear_legacy": tf.compat.v1.image.resize_bilinear(
                x, [11, 11], align_corners=False, half_pixel_centers=False),
            "resize_nearest_half_pixel": tf.image.resize(x, [24, 24], method="nearest"),
            "resize_nearest_align_corners": tf.compat.v1.image.resize_nearest_neighbor(
                x, [9, 9], align_corners=True),
        }


def build_ops_conv_pool():
    m = _ConvPool()
    return convert_concrete(m.serve.get_concrete_function(), m)


def conv_pool_inputs(split, n):
    return data.photo_crops(split, 16, n, scale_to=64)


# ---------------------------------------------------------------------------
# ops_shape
# ---------------------------------------------------------------------------

class _Shape(tf.Module):
    """x: [1,8,8,3] RGB photo crop."""

    @tf.function(input_signature=[_spec([1, 8, 8, 3], "image")])
    def serve(self, x):
        x4 = tf.concat([x, tf.reduce_mean(x, axis=-1, keepdims=True)], axis=-1)  # [1,8,8,4] CONCATENATION
        s0, s1, s2 = tf.split(x, 3, axis=-1)                                       # SPLIT
        v0, v1 = tf.split(x, [1, 2], axis=-1)                                      # SPLIT_V
        rows = tf.unstack(x, axis=1)                                               # UNPACK -> 8 x [1,8,3]
        s2b = tf.space_to_batch_nd(x4, [2, 2], [[0, 0], [0, 0]])                   # [4,4,4,4]
        s2b = tf.nn.relu(s2b - 0.25)
        return {
            "reshape": tf.reshape(x, [1, 64, 3]),
            "transpose": tf.transpose(x, [0, 3, 1, 2]),
            "concat": x4,
            "split": s0 + s1 * 2.0 + s2 * 3.0,
            "split_v": v0 - tf.reduce_sum(v1, axis=-1, keepdims=True),
            "slice": tf.slice(x, [0, 1, 2, 0], [1, 5, 4, 2]),
            "strided_slice_rev": x[:, ::-1, 1:7:2, :],
            "strided_slice_shrink": x[:, 2, -3:, 1],
            "strided_slice_newaxis": x[:, tf.newaxis, ..., ::2],
            "pad": tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]),
            "padv2": tf.pad(x, [[0, 0], [1, 1], [0, 2], [0, 1]], constant_values=0.5),
            "mirror_pad_reflect": tf.pad(x, [[0, 0], [2, 2], [1, 1], [0, 0]], mode="REFLECT"),
            "mirror_pad_symmetric": tf.pad(x, [[0, 0], [1, 2], [2, 0], [0, 0]], mode="SYMMETRIC"),
            "gather": tf.gather(x, [7, 0, 3, 3], axis=2),
            "gather_nd": tf.gather_nd(x, [[0, 1, 2], [0, 7, 7], [0, 4, 0]]),
            "pack": tf.stack([rows[0], rows[7], rows[3]], axis=1),
            "unpack": rows[5] - rows[2],
            "tile": tf.tile(x[:, :2, :2, :], [1, 2, 3, 1]),
            "broadcast_to": tf.broadcast_to(tf.reduce_max(x, axis=[1, 2], keepdims=True), [1, 3, 2, 3]),
            "reverse_v2": tf.reverse(x, axis=[2]),
            "depth_to_space": tf.nn.depth_to_space(x4, 2),
            "space_to_depth": tf.nn.space_to_depth(x, 2),
            "space_to_batch_nd": s2b,
            "batch_to_space_nd": tf.batch_to_space(s2b, [2, 2], [[0, 0], [0, 0]]),
        }


def build_ops_shape():
    m = _Shape()
    return convert_concrete(m.serve.get_concrete_function(), m)


class _ShapeDynamic(tf.Module):
    """x: [-1,8,8,3] (dynamic batch).  With a fully static shape the converter
    rewrites SQUEEZE and EXPAND_DIMS into RESHAPE, so they live here."""

    @tf.function(input_signature=[_spec([None, 8, 8, 3], "image")])
    def serve(self, x):
        n = tf.shape(x)[0]
        flat = tf.reshape(x, tf.stack([n, -1, 3]))      # [-1, -1, 3]: two unknown dims
        return {
            "expand_dims": tf.expand_dims(x * 2.0, axis=1),                 # EXPAND_DIMS
            "squeeze": tf.squeeze(flat[:, :, 1:2], axis=2) - 0.5,           # SQUEEZE
        }


def build_ops_shape_dynamic():
    m = _ShapeDynamic()
    return convert_concrete(m.serve.get_concrete_function(), m)


def shape_inputs(split, n):
    return data.photo_crops(split, 8, n, scale_to=40)


# ---------------------------------------------------------------------------
# ops_reduce_misc
# ---------------------------------------------------------------------------

class _ReduceMisc(tf.Module):
    """x: [-1,8,8] digit image (batch left dynamic so SHAPE/FILL/RANGE/ZEROS_LIKE survive)."""

    def __init__(self):
        super().__init__()
        self.w2 = tf.constant(_const([8, 5], 11, 0.4))
        self.w3 = tf.constant(_const([1, 8, 5], 12, 0.4))
        self.wfc = tf.constant(_const([8, 6], 13, 0.4))  # FC keep_num_dims, with bias + RELU
        self.bfc = tf.constant(_const([6], 14, 0.1))

    @tf.function(input_signature=[_spec([None, 8, 8], "digit")])
    def serve(self, x):
        pos = x > 0.5                                   # GREATER (scalar)
        shape = tf.shape(x)                              # SHAPE
        n = shape[0]
        return {
            "mean_keep": tf.reduce_mean(x, axis=1, keepdims=True),
            "mean": tf.reduce_mean(x, axis=[1, 2]),
            "sum": tf.reduce_sum(x, axis=2),
            "sum_keep": tf.reduce_sum(x, axis=[1, 2], keepdims=True),
            "reduce_max": tf.reduce_max(x, axis=1),
            "reduce_min_keep": tf.reduce_min(1.0 - x, axis=2, keepdims=True),  # (min(x) is 0 on every row)
            "reduce_prod": tf.reduce_prod(x * 0.5 + 0.75, axis=2),
            "reduce_prod_keep": tf.reduce_prod(x[:, :, :4] + 0.5, axis=1, keepdims=True),
            "batch_matmul_act_act": tf.matmul(x, x, transpose_b=True),
            "batch_matmul_act_const3": tf.matmul(x, self.w3),
            "matmul_act_const2": tf.matmul(x, self.w2),
            "fully_connected_keep_dims_relu": tf.nn.relu(tf.matmul(x, self.wfc) + self.bfc),
            "select": tf.compat.v1.where(pos, x, 1.0 - x),
            "select_v2": tf.where(x > tf.reduce_mean(x, axis=2, keepdims=True), x, -x),
            "equal": tf.equal(x, 0.0),
            "not_equal": tf.not_equal(x, 1.0),
            "less": tf.less(x, 0.25),
            "less_equal": tf.less_equal(x, x[:, ::-1, :]),
            "greater_equal": tf.greater_equal(x, 0.75),
            "logical_and": tf.logical_and(pos, tf.less(x, 0.9)),
            "logical_or": tf.logical_or(tf.equal(x, 0.0), tf.equal(x, 1.0)),
            # logical_not of a comparison is folded into the inverse comparison
            "logical_not": tf.logical_not(tf.logical_and(pos, tf.less(x, 0.9))),
            "cast_bool_float": tf.cast(pos, tf.float32) * 2.0,
            "cast_float_int": tf.cast(x * 16.0, tf.int32),
            "shape": shape,
            "range": tf.range(0, n * 5, 2),
            "fill": tf.fill(tf.stack([n, 3]), 0.25),
            "zeros_like": tf.zeros_like(x) + x[:, :1, :],
            "ones_like": tf.ones_like(x) - x,
            "arg_max": tf.argmax(x, axis=2),
            "arg_min": tf.argmin(x, axis=1, output_type=tf.int32),
            "cumsum": tf.cumsum(x, axis=2),
            "cumsum_exclusive_reverse": tf.cumsum(x, axis=1, exclusive=True, reverse=True),
        }


def build_ops_reduce_misc():
    m = _ReduceMisc()
    return convert_concrete(m.serve.get_concrete_function(), m)


def reduce_misc_inputs(split, n):
    x, _ = data.digits_split(split)
    return x[:n].astype(np.float32)


def graph_module(name):
    """A fresh instance of the tf.Module behind ``<name>.tflite`` (its ``serve`` is the
    converted function), before any object-API rewrite; used by quant_refs.py."""
    return {"ops_elementwise": _Elementwise, "ops_activation": _Activation, "ops_conv_pool": _ConvPool,
            "ops_shape": _Shape, "ops_shape_dynamic": _ShapeDynamic, "ops_reduce_misc": _ReduceMisc}[name]()
