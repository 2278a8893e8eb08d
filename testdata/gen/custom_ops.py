"""Models with the custom operators LiteRT's default CPU path runs (part ``custom_ops``).

LiteRT's XNNPACK delegate implements three MediaPipe custom operators
(``tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc``): ``Convolution2DTransposeBias``,
``MaxPoolingWithArgmax2D`` and ``MaxUnpooling2D``.  Their ``custom_options`` are the raw
C structs the delegate memcpy's: ``TfLiteTransposeConvParams`` (int32 padding, stride_w,
stride_h; 12 bytes as in MediaPipe's files) and ``TfLitePoolParams`` (int32 padding,
stride_w, stride_h, filter_w, filter_h, activation, then 4 int32 of computed padding:
40 bytes).  TfLitePadding: 1 = SAME, 2 = VALID.

Both models are small Keras segmenters trained briefly on the 16x16 photo crops of
``ops_conv_pool`` (target: the pixels brighter than the crop's mean), converted, then
rewritten with the object API:

* ``custom_deconv.tflite``: TRANSPOSE_CONV (with bias) -> CUSTOM Convolution2DTransposeBias
  (input, filter, bias; the output_shape input dropped, the output tensor keeps its shape);
* ``custom_argmax_unpool.tflite``: MAX_POOL_2D -> CUSTOM MaxPoolingWithArgmax2D with a
  second float32 output (the indices), RESIZE_NEAREST_NEIGHBOR (UpSampling2D) ->
  CUSTOM MaxUnpooling2D(values, indices).

They run in LiteRT only with the XNNPACK delegate (the Python Interpreter's default; the
builtin resolvers report an unresolved custom op), so their expected outputs are made with
the default delegates (runner.XNNPACK_MODELS).
"""

import struct

import numpy as np
import tensorflow as tf

import common
from common import read_model_t, write_model_t, schema, write_bytes
import ops_models

BO = schema.BuiltinOperator

SAME, VALID = 1, 2  # TfLitePadding


def deconv_options(padding, stride_w, stride_h):
    return struct.pack("<3i", padding, stride_w, stride_h)


def pool_options(padding, size):
    return struct.pack("<6i", padding, size, size, size, size, 0) + bytes(16)


def _targets(x):
    lum = x.mean(axis=-1, keepdims=True)
    return (lum > lum.mean(axis=(1, 2, 3), keepdims=True)).astype(np.float32)


def _train(model):
    x = ops_models.conv_pool_inputs("calib", 48)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    model.fit(x, _targets(x), epochs=40, batch_size=16, verbose=0, shuffle=False)
    xt = ops_models.conv_pool_inputs("test", 24)
    acc = float(((model.predict(xt, verbose=0) > 0.5) == (_targets(xt) > 0.5)).mean())
    return acc


def _custom_code(m, name):
    for i, c in enumerate(m.operatorCodes):
        cc = c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode
        if common.opcode_builtin(c) == BO.CUSTOM and cc == name:
            return i
    c = schema.OperatorCodeT()
    c.builtinCode = BO.CUSTOM
    c.deprecatedBuiltinCode = BO.CUSTOM
    c.customCode = name
    c.version = 1
    m.operatorCodes.append(c)
    return len(m.operatorCodes) - 1


def _make_custom(m, op, name, options):
    op.opcodeIndex = _custom_code(m, name)
    op.builtinOptionsType = 0
    op.builtinOptions = None
    op.customOptions = np.frombuffer(options, dtype=np.uint8).copy()
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS


def _ops(m, code):
    sg = m.subgraphs[0]
    return [op for op in sg.operators if common.opcode_builtin(m.operatorCodes[op.opcodeIndex]) == code]


def deconv_model():
    common.reset_seeds()
    inp = tf.keras.Input((16, 16, 3), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = tf.keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same",
                                        bias_initializer="random_normal")(x)
    x = tf.keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = tf.keras.Model(inp, x)
    acc = _train(model)
    m = read_model_t(common.convert_keras(model))
    (op,) = _ops(m, BO.TRANSPOSE_CONV)
    o = op.builtinOptions
    assert len(op.inputs) == 4 and op.inputs[3] >= 0, "TRANSPOSE_CONV without bias"
    assert o.fusedActivationFunction == 0
    pad = SAME if o.padding == schema.Padding.SAME else VALID
    _, w, x_in, bias = [int(i) for i in op.inputs]
    op.inputs = np.array([x_in, w, bias], dtype=np.int32)
    _make_custom(m, op, "Convolution2DTransposeBias", deconv_options(pad, o.strideW, o.strideH))
    return write_model_t(m), acc


def argmax_unpool_model():
    common.reset_seeds()
    inp = tf.keras.Input((16, 16, 3), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.MaxPool2D(2)(x)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.UpSampling2D(2)(x)
    x = tf.keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = tf.keras.Model(inp, x)
    acc = _train(model)
    m = read_model_t(common.convert_keras(model))
    sg = m.subgraphs[0]
    (pool,) = _ops(m, BO.MAX_POOL_2D)
    (up,) = _ops(m, BO.RESIZE_NEAREST_NEIGHBOR)
    values = sg.tensors[pool.outputs[0]]
    idx = schema.TensorT()
    idx.shape = np.array(values.shape, dtype=np.int32)
    idx.type = schema.TensorType.FLOAT32
    idx.name = "argmax_indices"
    idx.buffer = 0
    sg.tensors.append(idx)
    idx_t = len(sg.tensors) - 1
    pool.outputs = np.array([int(pool.outputs[0]), idx_t], dtype=np.int32)
    _make_custom(m, pool, "MaxPoolingWithArgmax2D", pool_options(VALID, 2))
    up.inputs = np.array([int(up.inputs[0]), idx_t], dtype=np.int32)
    _make_custom(m, up, "MaxUnpooling2D", pool_options(VALID, 2))
    return write_model_t(m), acc


def make_custom_ops(report):
    data, acc = deconv_model()
    write_bytes("custom_deconv.tflite", data)
    report["custom_deconv (Keras, before the rewrite) pixel accuracy"] = round(acc, 3)
    data, acc = argmax_unpool_model()
    write_bytes("custom_argmax_unpool.tflite", data)
    report["custom_argmax_unpool (Keras with UpSampling2D, before the rewrite) pixel accuracy"] = round(acc, 3)
