"""A model for blockwise INT4 FULLY_CONNECTED on LiteRT's builtin kernels (issue #21;
part ``int4_blockwise``).

  * ``fc_fused_acts``: an MLP over flattened digits whose FULLY_CONNECTED layers carry
    every fused activation Keras writes into one (RELU, RELU6, TANH) and one layer of
    3 units, too few for LiteRT's blockwise INT4 kernel (it needs >= 4 output units):
    Dense(64, relu) -> Dense(32, relu6) -> Dense(32, tanh) -> Dense(3, relu) ->
    Dense(10) softmax.

Training is short and deterministic (seeds reset, single thread).  Data: the
``mlp_large_fc`` stem (digits flattened, [N, 64]).
"""

from common import tf, reset_seeds, convert_keras, write_bytes
import data

layers = tf.keras.layers


def _arch(batch):
    inp = tf.keras.Input((64,), batch_size=batch, name="pixels")
    x = layers.Dense(64, activation="relu", name="fc_relu")(inp)
    x = layers.Dense(32, activation=tf.nn.relu6, name="fc_relu6")(x)
    x = layers.Dense(32, activation="tanh", name="fc_tanh")(x)
    x = layers.Dense(3, activation="relu", name="fc_narrow")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="fc_fused_acts")


def make_fc_fused_acts(report):
    reset_seeds()
    xtr, ytr = data.digits_split("train")
    xte, yte = data.digits_split("test")
    xtr, xte = xtr.reshape(-1, 64), xte.reshape(-1, 64)
    m = _arch(None)
    m.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    m.fit(xtr, ytr, epochs=60, batch_size=32, shuffle=True, verbose=0)
    acc = float((m.predict(xte, verbose=0).argmax(-1) == yte).mean())
    export = _arch(1)
    export.set_weights(m.get_weights())
    report["fc_fused_acts"] = f"keras test accuracy {acc:.3f}"
    write_bytes("fc_fused_acts.tflite", convert_keras(export))


def make_all(report):
    make_fc_fused_acts(report)


if __name__ == "__main__":
    rep = {}
    make_all(rep)
    print(rep)
