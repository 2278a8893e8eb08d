"""Trained (tf_keras) models: foundation, weight-quantization parity, LSTM, embedding.

Every ``make_*`` function trains (a few seconds on the digits data set),
converts with the TFLite converter and writes one or more .tflite files.
Models are trained with a free batch dimension and then copied into an
identical model whose Input has ``batch_size=1`` before conversion, so that
every model except ``dynamic_batch_mlp`` has a static ``[1, ...]`` input
(``shape_signature`` absent or without -1).

Rewrites that the TF converter cannot produce (no signature, metadata,
custom op, legacy opcodes, EMBEDDING_LOOKUP) are done on the converted
flatbuffer with the schema object API (``common.read_model_t`` /
``common.write_model_t``).
"""

import numpy as np
from flatbuffers import flexbuffers

import common
from common import (tf, schema, reset_seeds, convert_keras, convert_concrete,
                    representative_from, read_model_t, write_model_t, write_bytes)
import data

layers = tf.keras.layers
BO = schema.BuiltinOperator


def _fit(model, x, y, epochs, lr=1e-2, batch_size=32):
    """Short deterministic training run; returns held-out accuracy on the digits test split."""
    model.compile(optimizer=tf.keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)


def _accuracy(model, x, y):
    return float((model.predict(x, verbose=0).argmax(-1) == y).mean())


def _digits(kind):
    """(train_x, train_y, test_x, test_y) shaped for 'image' [N,8,8,1], 'rows' [N,8,8] or 'flat' [N,64]."""
    xtr, ytr = data.digits_split("train")
    xte, yte = data.digits_split("test")
    shape = {"image": (8, 8, 1), "rows": (8, 8), "flat": (64,)}[kind]
    return xtr.reshape((-1,) + shape), ytr, xte.reshape((-1,) + shape), yte


def _trained(build, kind, epochs, lr=1e-2):
    """Build with free batch, train, copy weights into a batch-1 twin; return (model_b1, acc)."""
    reset_seeds()
    xtr, ytr, xte, yte = _digits(kind)
    train_model = build(None)
    _fit(train_model, xtr, ytr, epochs, lr)
    acc = _accuracy(train_model, xte, yte)
    export = build(1)
    export.set_weights(train_model.get_weights())
    return export, acc


# ---------------------------------------------------------------------------
# model architectures
# ---------------------------------------------------------------------------

def _cnn_digits_arch(batch):
    """CONV_2D(relu) -> DEPTHWISE_CONV_2D(relu6) -> MAX_POOL -> CONV_2D(relu)
    -> AVERAGE_POOL -> RESHAPE -> FC(relu, 128x64 = 8192 weights) -> FC -> SOFTMAX."""
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6, name="dwconv")(x)
    x = layers.MaxPooling2D(2, name="maxpool")(x)                       # 4x4x16
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)  # 4608 weights
    x = layers.AveragePooling2D(2, name="avgpool")(x)                   # 2x2x32
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="cnn_digits")


def _cnn_b_arch(batch):
    """Second small CNN (different layout) for the fp16 model: strided conv + global mean."""
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Conv2D(12, 3, padding="same", activation=tf.nn.relu6, name="conv1")(inp)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)  # 3456 weights
    x = layers.Conv2D(32, 3, padding="valid", activation="relu", name="conv3")(x)            # 9216 weights
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="cnn_b")


def _mlp_small_arch(batch):
    """64 -> FC(32, relu) -> FC(16) -> TANH -> FC(10) -> SOFTMAX (TANH kept as its own op)."""
    inp = tf.keras.Input((64,), batch_size=batch, name="pixels")
    x = layers.Dense(32, activation="relu", name="fc1")(inp)
    x = layers.Dense(16, name="fc2")(x)
    x = layers.Activation("tanh", name="tanh")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="mlp_small")


MLP_LARGE_HIDDEN = 384  # 64*384 + 384*384 + 384*10 = 175,104 weights -> ~690 KB float32


def _mlp_large_arch(batch):
    inp = tf.keras.Input((64,), batch_size=batch, name="pixels")
    x = layers.Dense(MLP_LARGE_HIDDEN, activation="relu", name="fc1")(inp)
    x = layers.Dense(MLP_LARGE_HIDDEN, activation="relu", name="fc2")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="mlp_large_fc")


def _lstm_arch(batch):
    """Digit rows as a sequence: 8 steps x 8 features -> LSTM(16, return_sequences) -> FC."""
    inp = tf.keras.Input((8, 8), batch_size=batch, name="rows")
    x = layers.LSTM(16, return_sequences=True, name="lstm")(inp)   # [1,8,16]
    x = layers.Flatten(name="flatten")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="lstm_seq")


# ---------------------------------------------------------------------------
# the trained Keras models (deterministic: seeds are reset in _trained); also
# used by quant_refs.py to rebuild the float source of the TF references
# ---------------------------------------------------------------------------

def cnn_digits_keras():
    """(batch-1 Keras model of cnn_digits.tflite, Keras test accuracy)."""
    return _trained(_cnn_digits_arch, "image", epochs=12)


def cnn_b_keras():
    """(batch-1 float32 Keras source of fp16_weights_cnn.tflite, Keras test accuracy)."""
    return _trained(_cnn_b_arch, "image", epochs=12)


def mlp_small_keras():
    """(batch-1 Keras small MLP of no_signature/with_metadata/custom_op/dynamic_batch, accuracy)."""
    return _trained(_mlp_small_arch, "flat", epochs=15)


def mlp_small_dynamic(model):
    """The same small MLP with a free batch dimension (dynamic_batch_mlp.tflite)."""
    dyn = _mlp_small_arch(None)
    dyn.set_weights(model.get_weights())
    return dyn


def mlp_large_keras():
    """(batch-1 Keras model of mlp_large_fc.tflite, Keras test accuracy)."""
    return _trained(_mlp_large_arch, "flat", epochs=6, lr=2e-3)


# ---------------------------------------------------------------------------
# foundation models
# ---------------------------------------------------------------------------

def make_cnn_family(report):
    """cnn_digits + its TF dynamic-range / float16 / int8 conversions + legacy opcodes."""
    model, acc = cnn_digits_keras()
    report["cnn_digits"] = f"keras test accuracy {acc:.3f}"
    calib = data.digits_split("calib")[0].reshape(-1, 8, 8, 1)

    base = convert_keras(model)
    write_bytes("cnn_digits.tflite", base)
    write_bytes("cnn_digits.tf_dynamic.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT]))
    write_bytes("cnn_digits.tf_float16.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT],
                              supported_types=[tf.float16]))
    # Full-integer int8 (per-channel conv/FC weights, int8 activations).
    # Float interface: QUANTIZE at the input, DEQUANTIZE at the output.
    write_bytes("int8_quantized_cnn.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT],
                              representative=representative_from(calib), int8_ops=True))
    # Same, with an int8 interface (input/output tensors are int8).
    write_bytes("int8_quantized_cnn_int8io.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT],
                              representative=representative_from(calib), int8_ops=True,
                              inference_input_type=tf.int8, inference_output_type=tf.int8))
    write_bytes("legacy_opcodes_cnn.tflite", legacy_opcodes(base))


def legacy_opcodes(tflite_bytes):
    """Rewrite every OperatorCode to the pre-2.4 encoding.

    ``builtin_code`` (int32 field) is set to 0 (= ADD, the default, so it is
    not even written) and the real operator is only in the legacy int8 field
    ``deprecated_builtin_code``.  Readers must take max(builtin_code,
    deprecated_builtin_code), as the TFLite runtime does.
    """
    m = read_model_t(tflite_bytes)
    for opc in m.operatorCodes:
        real = common.opcode_builtin(opc)
        assert real < 127, f"opcode {real} does not fit the legacy field"
        opc.builtinCode = 0
        opc.deprecatedBuiltinCode = real
    return write_model_t(m)


def make_fp16_weights_cnn(report):
    model, acc = cnn_b_keras()
    report["fp16_weights_cnn"] = f"keras test accuracy {acc:.3f}"
    write_bytes("fp16_weights_cnn.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT],
                              supported_types=[tf.float16]))


def make_mlp_small_family(report):
    """One small trained MLP, written four ways: no signature, extra metadata,
    custom op, dynamic batch."""
    model, acc = mlp_small_keras()
    report["mlp_small"] = f"keras test accuracy {acc:.3f}"
    base = convert_keras(model)
    write_bytes("no_signature_mlp.tflite", strip_signatures(base))
    write_bytes("with_metadata_mlp.tflite", add_metadata(base))
    write_bytes("custom_op.tflite", tanh_to_custom(base))

    # dynamic batch: same weights in a model whose Input batch is None
    write_bytes("dynamic_batch_mlp.tflite", convert_keras(mlp_small_dynamic(model)))


def strip_signatures(tflite_bytes):
    """Remove the SignatureDef vector entirely (field absent, not an empty vector)."""
    m = read_model_t(tflite_bytes)
    m.signatureDefs = None
    return write_model_t(m)


META_NAME = "tflquant_test_meta"
META_BYTES = b"tflquant test metadata v1\x00\x01\x02\x03\xfe\xff"
DESCRIPTION = "tflquant test model: small digits MLP with extra metadata"


def add_metadata(tflite_bytes):
    """Append a Metadata entry pointing at a new buffer, and set Model.description."""
    m = read_model_t(tflite_bytes)
    buf = schema.BufferT()
    buf.data = np.frombuffer(META_BYTES, dtype=np.uint8).copy()
    m.buffers.append(buf)
    md = schema.MetadataT()
    md.name = META_NAME
    md.buffer = len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [md]
    m.description = DESCRIPTION
    return write_model_t(m)


CUSTOM_CODE = "TflquantTestOp"
CUSTOM_OPTIONS = {"activation": "tanh", "scale": 1.0, "version": 1}


def tanh_to_custom(tflite_bytes):
    """Turn the TANH op into a CUSTOM op "TflquantTestOp" with FlexBuffer custom_options.

    The TANH OperatorCode entry is used by exactly one op, so the entry itself
    is rewritten (builtin_code CUSTOM, custom_code set); the op gets
    custom_options = FlexBuffer map CUSTOM_OPTIONS.  No runtime knows this op.
    """
    m = read_model_t(tflite_bytes)
    sg = m.subgraphs[0]
    idx = [i for i, opc in enumerate(m.operatorCodes) if common.opcode_builtin(opc) == BO.TANH]
    assert len(idx) == 1
    users = [op for op in sg.operators if op.opcodeIndex == idx[0]]
    assert len(users) == 1
    opc = m.operatorCodes[idx[0]]
    opc.builtinCode = BO.CUSTOM
    opc.deprecatedBuiltinCode = BO.CUSTOM
    opc.customCode = CUSTOM_CODE
    opc.version = 1
    op = users[0]
    op.builtinOptionsType = 0
    op.builtinOptions = None
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(CUSTOM_OPTIONS)), dtype=np.uint8).copy()
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    return write_model_t(m)


def make_sparse_models(report):
    """Pruned MLPs converted with EXPERIMENTAL_SPARSITY -> sparse weights + DENSIFY.

    sparse_dense_mlp: unstructured magnitude pruning to 85% sparsity.
    sparse_block1x4_mlp: same with block_size=(1,4) (block_map in SparsityParameters).
    """
    import tensorflow_model_optimization as tfmot
    xtr, ytr, xte, yte = _digits("flat")

    def arch(batch):
        inp = tf.keras.Input((64,), batch_size=batch, name="pixels")
        x = layers.Dense(128, activation="relu", name="fc1")(inp)
        x = layers.Dense(64, activation="relu", name="fc2")(x)
        out = layers.Dense(10, activation="softmax", name="probs")(x)
        return tf.keras.Model(inp, out)

    for name, block in (("sparse_dense_mlp", None), ("sparse_block1x4_mlp", (4, 1))):
        reset_seeds()
        kw = dict(pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.85, begin_step=0, frequency=10))
        if block:
            kw["block_size"] = block
        pruned = tfmot.sparsity.keras.prune_low_magnitude(arch(None), **kw)
        pruned.compile(optimizer=tf.keras.optimizers.Adam(1e-2),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        pruned.fit(xtr, ytr, epochs=8, batch_size=32, shuffle=True, verbose=0,
                   callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        stripped = tfmot.sparsity.keras.strip_pruning(pruned)
        acc = _accuracy(stripped, xte, yte)
        export = arch(1)
        export.set_weights(stripped.get_weights())
        sparsity = [float((w == 0).mean()) for w in export.get_weights() if w.ndim == 2]
        report[name] = f"keras test accuracy {acc:.3f}, kernel sparsity " + \
            ", ".join(f"{s:.2f}" for s in sparsity)
        write_bytes(f"{name}.tflite",
                    convert_keras(export, optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]))


def make_while_loop(report):
    """tf.while_loop with a data-dependent trip count (3 or 4) -> WHILE + cond/body subgraphs.

    h = reshape(x, [4,16]); repeat n times: h = tanh(h @ W + b), where
    n = 3 + (sum(x) > 20).  W, b are fixed seeded constants.
    """
    reset_seeds()
    r = np.random.RandomState(7)

    class WhileModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.constant((r.standard_normal((16, 16)) * 0.3).astype(np.float32))
            self.b = tf.constant(np.linspace(-0.1, 0.1, 16, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32, name="pixels")])
        def serve(self, x):
            h = tf.reshape(x, [4, 16])
            n = tf.cast(tf.reduce_sum(x) > 20.0, tf.int32) + 3

            def cond(i, h):
                return i < n

            def body(i, h):
                return i + 1, tf.tanh(tf.matmul(h, self.w) + self.b)

            _, h = tf.while_loop(cond, body, [tf.constant(0), h])
            return {"state": tf.reshape(h, [1, 64])}

    m = WhileModule()
    write_bytes("while_loop.tflite", convert_concrete(m.serve.get_concrete_function(), m))


# ---------------------------------------------------------------------------
# weight-quantization parity: large FC model
# ---------------------------------------------------------------------------

def make_mlp_large_fc(report):
    model, acc = mlp_large_keras()
    report["mlp_large_fc"] = f"keras test accuracy {acc:.3f}"
    write_bytes("mlp_large_fc.tflite", convert_keras(model))
    write_bytes("mlp_large_fc.tf_dynamic.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT]))
    write_bytes("mlp_large_fc.tf_float16.tflite",
                convert_keras(model, optimizations=[tf.lite.Optimize.DEFAULT],
                              supported_types=[tf.float16]))


# ---------------------------------------------------------------------------
# LSTM and embedding
# ---------------------------------------------------------------------------

def make_lstm_seq(report):
    model, acc = _trained(_lstm_arch, "rows", epochs=8)
    report["lstm_seq"] = f"keras test accuracy {acc:.3f}"
    write_bytes("lstm_seq.tflite", convert_keras(model))


EMBED_VOCAB = 17   # digit pixel intensities 0..16 are the token ids
EMBED_DIM = 8


def digit_ids(split):
    """Token ids for the embedding model: the raw 0..16 pixel values of each digit, int32 [N,64]."""
    x, _ = data.digits_split(split)
    return np.rint(x.reshape(-1, 64) * 16.0).astype(np.int32)


def make_embedding_lookup(report):
    """Embedding table trained in Keras, exported as a tf.function:

        ids [1,64] int32 -> RESHAPE [64] -> GATHER(table, ids) [64,8]
            -> RESHAPE [1,512] -> FULLY_CONNECTED -> SOFTMAX

    then GATHER(params, indices) is rewritten to EMBEDDING_LOOKUP(ids, params)
    (operand order swapped, no options), which the TF converter never emits.
    """
    reset_seeds()
    _, ytr = data.digits_split("train")
    _, yte = data.digits_split("test")
    inp = tf.keras.Input((64,), dtype=tf.int32, name="ids")
    x = layers.Embedding(EMBED_VOCAB, EMBED_DIM, name="embed")(inp)
    x = layers.Flatten()(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    km = tf.keras.Model(inp, out)
    _fit(km, digit_ids("train"), ytr, epochs=10)
    report["embedding_lookup"] = f"keras test accuracy {_accuracy(km, digit_ids('test'), yte):.3f}"
    table, w, b = [v.astype(np.float32) for v in km.get_weights()]

    class EmbedModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.table, self.w, self.b = tf.constant(table), tf.constant(w), tf.constant(b)

        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.int32, name="ids")])
        def serve(self, ids):
            rows = tf.gather(self.table, tf.reshape(ids, [64]))
            logits = tf.matmul(tf.reshape(rows, [1, 64 * EMBED_DIM]), self.w) + self.b
            return {"probs": tf.nn.softmax(logits)}

    mod = EmbedModule()
    write_bytes("embedding_lookup.tflite",
                gather_to_embedding_lookup(convert_concrete(mod.serve.get_concrete_function(), mod)))


def gather_to_embedding_lookup(tflite_bytes):
    m = read_model_t(tflite_bytes)
    sg = m.subgraphs[0]
    idx = [i for i, opc in enumerate(m.operatorCodes) if common.opcode_builtin(opc) == BO.GATHER]
    assert len(idx) == 1
    users = [op for op in sg.operators if op.opcodeIndex == idx[0]]
    assert len(users) == 1
    op = users[0]
    params, ids = op.inputs
    assert sg.tensors[ids].type == schema.TensorType.INT32 and len(sg.tensors[ids].shape) == 1
    opc = m.operatorCodes[idx[0]]
    opc.builtinCode = BO.EMBEDDING_LOOKUP
    opc.deprecatedBuiltinCode = BO.EMBEDDING_LOOKUP
    opc.version = 1
    op.inputs = np.array([ids, params], dtype=np.int32)
    op.builtinOptionsType = 0
    op.builtinOptions = None
    return write_model_t(m)
