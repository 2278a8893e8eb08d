"""Models for INT4 weights on every kind of weight (issue #21; part ``int4``).

  * ``tiny_transformer``: a one-block encoder over the 8 rows of a digit (8 tokens of
    8 pixels): token projection Dense(32) + learned positions, 2-head self-attention
    (Keras MultiHeadAttention: einsum projections and the attention products), residual
    + LayerNormalization, feed-forward Dense(64, gelu) -> Dense(32), residual +
    LayerNormalization, mean over tokens, Dense(10) softmax.  The converter writes the
    projections as FULLY_CONNECTED / BATCH_MATMUL with constant weights and the
    attention as BATCH_MATMUL of two activations.

Training is short and deterministic (seeds reset, single thread).  Data: the
``lstm_seq`` stem (digits as [8, 8] sequences).
"""

from common import tf, reset_seeds, convert_keras, write_bytes
import data

layers = tf.keras.layers

D_MODEL = 32
HEADS = 2


def _transformer_arch(batch):
    inp = tf.keras.Input((8, 8), batch_size=batch, name="rows")
    x = layers.Dense(D_MODEL, name="embed")(inp)                          # 8x32
    pos = layers.Embedding(8, D_MODEL, name="positions")(tf.range(8)[tf.newaxis, :])
    x = x + pos
    att = layers.MultiHeadAttention(HEADS, D_MODEL // HEADS, name="attention")(x, x)
    x = layers.LayerNormalization(epsilon=1e-5, name="norm1")(x + att)
    f = layers.Dense(64, activation="gelu", name="ffn1")(x)
    f = layers.Dense(D_MODEL, name="ffn2")(f)
    x = layers.LayerNormalization(epsilon=1e-5, name="norm2")(x + f)
    x = layers.GlobalAveragePooling1D(name="mean")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="tiny_transformer")


def make_tiny_transformer(report):
    reset_seeds()
    xtr, ytr = data.digits_split("train")
    xte, yte = data.digits_split("test")
    xtr, xte = xtr.reshape(-1, 8, 8), xte.reshape(-1, 8, 8)
    m = _transformer_arch(None)
    m.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    m.fit(xtr, ytr, epochs=40, batch_size=32, shuffle=True, verbose=0)
    acc = float((m.predict(xte, verbose=0).argmax(-1) == yte).mean())
    # A static batch of 1 around the trained model itself (a second instance with
    # set_weights gets MultiHeadAttention's lazily built weights in another order).
    inp = tf.keras.Input((8, 8), batch_size=1, name="rows")
    export = tf.keras.Model(inp, m(inp, training=False), name="tiny_transformer")
    report["tiny_transformer"] = f"keras test accuracy {acc:.3f}"
    write_bytes("tiny_transformer.tflite", convert_keras(export))


def make_all(report):
    make_tiny_transformer(report)


if __name__ == "__main__":
    rep = {}
    make_all(rep)
    print(rep)
