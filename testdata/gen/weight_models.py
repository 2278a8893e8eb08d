"""Models for the weight modes on real-world structures (issue #11; part ``weights``).

One model per structure class that real files hit:
  * ``sparse_fp16_cnn``: a digits CNN whose kernels are magnitude-pruned to 60%
    zeros, converted with ``Optimize.EXPERIMENTAL_SPARSITY`` + ``Optimize.DEFAULT``
    and ``supported_types=[float16]``: FLOAT16 sparse constants -> DENSIFY ->
    DEQUANTIZE -> CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED;
  * ``shared_weights_cnn``: a digits CNN that calls one Conv2D layer twice and one
    Dense layer twice, so one kernel constant feeds two CONV_2D and another two
    FULLY_CONNECTED operators;
  * ``tied_embedding``: token ids -> GATHER(table) -> mean -> FC -> logits =
    FC(h, table): one constant read by a GATHER (no hybrid kernel) and by a
    FULLY_CONNECTED (hybrid kernel), as language models tie their embeddings;
  * ``lstm_gru``: Keras LSTM(48) -> GRU(32) over the digit rows:
    UNIDIRECTIONAL_SEQUENCE_LSTM (gate weights as inputs 1-8) and a GRU lowered to
    a WHILE loop whose body computes the gates with FULLY_CONNECTED.

Training is short and deterministic (seeds reset per model, single thread).
"""

import numpy as np

from common import tf, schema, reset_seeds, convert_keras, convert_concrete, read_model_t, write_bytes
import data

layers = tf.keras.layers
BO = schema.BuiltinOperator

SPARSITY = 0.6


def _digits(shape):
    xtr, ytr = data.digits_split("train")
    xte, yte = data.digits_split("test")
    return xtr.reshape((-1,) + shape), ytr, xte.reshape((-1,) + shape), yte


def _train(build, shape, epochs, lr=1e-2, callbacks=None):
    reset_seeds()
    xtr, ytr, xte, yte = _digits(shape)
    m = build(None)
    m.compile(optimizer=tf.keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(xtr, ytr, epochs=epochs, batch_size=32, shuffle=True, verbose=0, callbacks=callbacks or [])
    acc = float((m.predict(xte, verbose=0).argmax(-1) == yte).mean())
    export = build(1)
    export.set_weights(m.get_weights())
    return m, export, acc


# --- sparse + float16 ---------------------------------------------------------

def _sparse_cnn_arch(batch):
    """Every kernel but conv1's has >= 1024 weights (TF's and tflquant's default threshold)."""
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)             # 72
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)              # 2304
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=4, activation="relu",
                               name="dwconv")(x)                                                # 1152
    x = layers.MaxPooling2D(2, name="pool")(x)                                                  # 4x4x128
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)              # 36864
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv4")(x)   # 9216
    x = layers.Flatten(name="flatten")(x)                                                       # 128
    x = layers.Dense(128, activation="relu", name="fc1")(x)                                    # 16384
    out = layers.Dense(10, activation="softmax", name="probs")(x)                              # 1280
    return tf.keras.Model(inp, out, name="sparse_fp16_cnn")


def _kernel_masks(model):
    """Magnitude masks keeping the largest (1 - SPARSITY) of every kernel (ndim >= 2)."""
    masks = []
    for w in model.get_weights():
        if w.ndim >= 2:
            k = int(round(w.size * SPARSITY))
            thr = np.sort(np.abs(w).ravel())[k - 1]
            masks.append(np.abs(w) > thr)
        else:
            masks.append(None)
    return masks


class _KeepMasks(tf.keras.callbacks.Callback):
    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def on_train_batch_end(self, batch, logs=None):
        ws = self.model.get_weights()
        self.model.set_weights([w if m is None else w * m for w, m in zip(ws, self.masks)])


def make_sparse_fp16_cnn(report):
    trained, _, acc_dense = _train(_sparse_cnn_arch, (8, 8, 1), epochs=8)
    masks = _kernel_masks(trained)
    trained.set_weights([w if m is None else w * m for w, m in zip(trained.get_weights(), masks)])
    xtr, ytr, xte, yte = _digits((8, 8, 1))
    trained.fit(xtr, ytr, epochs=3, batch_size=32, shuffle=True, verbose=0, callbacks=[_KeepMasks(masks)])
    acc = float((trained.predict(xte, verbose=0).argmax(-1) == yte).mean())
    export = _sparse_cnn_arch(1)
    export.set_weights(trained.get_weights())
    sparsity = [float((w == 0).mean()) for w in export.get_weights() if w.ndim >= 2]
    report["sparse_fp16_cnn"] = (f"keras test accuracy dense {acc_dense:.3f}, pruned {acc:.3f}; kernel sparsity "
                                 + ", ".join(f"{s:.2f}" for s in sparsity))
    write_bytes("sparse_fp16_cnn.tflite", convert_keras(
        export, optimizations=[tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY],
        supported_types=[tf.float16]))


# --- shared weights -------------------------------------------------------------

def _shared_cnn_arch(batch):
    """conv1 -> convS -> convS (one layer, one kernel, called twice) -> pool -> fc1 ->
    fcS -> fcS (one Dense layer called twice) -> probs."""
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Conv2D(24, 3, padding="same", activation="relu", name="conv1")(inp)
    conv_s = layers.Conv2D(24, 3, padding="same", activation="relu", name="conv_shared")  # 5184
    x = conv_s(x)
    x = conv_s(x)
    x = layers.MaxPooling2D(4, name="pool")(x)                                    # 2x2x24
    x = layers.Flatten(name="flatten")(x)                                         # 96
    x = layers.Dense(64, activation="relu", name="fc1")(x)                       # 6144
    fc_s = layers.Dense(64, activation="relu", name="fc_shared")                 # 4096
    x = fc_s(x)
    x = fc_s(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="shared_weights_cnn")


def make_shared_weights_cnn(report):
    _, export, acc = _train(_shared_cnn_arch, (8, 8, 1), epochs=8, lr=5e-3)
    report["shared_weights_cnn"] = f"keras test accuracy {acc:.3f}"
    write_bytes("shared_weights_cnn.tflite", convert_keras(export))


TIED_VOCAB = 17   # digit pixel intensities 0..16 are the token ids (as embedding_lookup)
TIED_DIM = 64


def make_tied_embedding(report):
    """ids [1,64] -> GATHER(E) -> mean over tokens -> FC(64, tanh) -> logits = h @ E^T [1,17].

    Trained to predict the histogram of the ids (a soft target) so that E carries real values.
    """
    reset_seeds()
    ids_tr = np.rint(data.digits_split("train")[0].reshape(-1, 64) * 16).astype(np.int32)
    hist = np.stack([np.bincount(r, minlength=TIED_VOCAB) for r in ids_tr]).astype(np.float32) / 64.0
    emb = tf.Variable(tf.random.normal([TIED_VOCAB, TIED_DIM], stddev=0.3, seed=1), name="embedding")
    w = tf.Variable(tf.random.normal([TIED_DIM, TIED_DIM], stddev=0.2, seed=2), name="w")
    b = tf.Variable(tf.zeros([TIED_DIM]), name="b")

    def forward(ids):
        h = tf.reduce_mean(tf.gather(emb, ids), axis=1)
        h = tf.tanh(tf.matmul(h, w) + b)
        return tf.matmul(h, emb, transpose_b=True)

    opt = tf.keras.optimizers.Adam(1e-2)
    for step in range(300):
        i = (step * 32) % (len(ids_tr) - 32)
        with tf.GradientTape() as tape:
            logits = forward(ids_tr[i:i + 32])
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(hist[i:i + 32], logits))
        opt.apply_gradients(zip(tape.gradient(loss, [emb, w, b]), [emb, w, b]))
    report["tied_embedding"] = f"final cross-entropy {float(loss):.3f}"

    class Mod(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.int32, name="ids")])
        def serve(self, ids):
            return {"logits": forward(ids)}

    mod = Mod()
    mod.emb, mod.w, mod.b = emb, w, b
    fn = mod.serve.get_concrete_function()
    write_bytes("tied_embedding.tflite", convert_concrete(fn, mod))


# --- recurrent ------------------------------------------------------------------

def _lstm_gru_arch(batch):
    inp = tf.keras.Input((8, 8), batch_size=batch, name="rows")
    x = layers.LSTM(48, return_sequences=True, name="lstm")(inp)   # gates: 4 x [48,8], 4 x [48,48]
    x = layers.GRU(32, name="gru")(x)                               # kernel [96,48], recurrent [96,32]
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="lstm_gru")


def make_lstm_gru(report):
    _, export, acc = _train(_lstm_gru_arch, (8, 8), epochs=6, lr=5e-3)
    report["lstm_gru"] = f"keras test accuracy {acc:.3f}"
    write_bytes("lstm_gru.tflite", convert_keras(export))


def make_all(report):
    make_sparse_fp16_cnn(report)
    make_shared_weights_cnn(report)
    make_tied_embedding(report)
    make_lstm_gru(report)


def describe(fname):
    """Op histogram and constant dtypes of a written model (for the generator's log)."""
    from collections import Counter
    import common
    m = read_model_t((common.TESTDATA / fname).read_bytes())
    consts = Counter()
    for sg in m.subgraphs:
        for t in sg.tensors:
            buf = m.buffers[t.buffer]
            if buf.data is not None and len(buf.data):
                consts[(common.tensor_type_name(t.type), t.sparsity is not None)] += len(buf.data)
    return dict(common.op_histogram(m)), dict(consts)


if __name__ == "__main__":
    import sys
    rep = {}
    for name in sys.argv[1:] or ["sparse_fp16_cnn", "shared_weights_cnn", "tied_embedding", "lstm_gru"]:
        globals()[f"make_{name}"](rep)
        print(name, rep.get(name), describe(f"{name}.tflite"))
