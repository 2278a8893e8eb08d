"""Keras Bidirectional(LSTM) digit classifier (issue #13; part ``bilstm``).

What TF's converter makes of ``Bidirectional(LSTM)``: no BIDIRECTIONAL_SEQUENCE_LSTM, but
two UNIDIRECTIONAL_SEQUENCE_LSTM operators, the backward one reading the sequence through
REVERSE_V2, their last steps concatenated.  Same data and training as ``recurrent.py``
(the digits_qat split: 360 held-out digits never seen in training):

  * ``bilstm_digits``: Bidirectional(LSTM(16)) -> Dense(10) softmax over the 8 rows of a
    digit (input [1, 8, 8, 1] reshaped to [1, 8, 8]).
"""

from common import tf, reset_seeds, convert_keras, write_bytes
import data

layers = tf.keras.layers


def _arch(batch):
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Reshape((8, 8), name="rows")(inp)
    x = layers.Bidirectional(layers.LSTM(16, name="lstm"), name="bilstm")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name="bilstm_digits")


def make_all(report):
    reset_seeds()
    xtr, ytr = data.digits_qat_split("train")
    xte, yte = data.digits_qat_split("test")
    xtr, xte = xtr.reshape(-1, 8, 8, 1), xte.reshape(-1, 8, 8, 1)
    m = _arch(None)
    m.compile(optimizer=tf.keras.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy")
    m.fit(xtr, ytr, epochs=15, batch_size=32, shuffle=True, verbose=0)
    acc = float((m.predict(xte, verbose=0).argmax(-1) == yte).mean())
    export = _arch(1)
    export.set_weights(m.get_weights())
    report["bilstm_digits"] = f"keras test accuracy {acc:.3f} (N={len(yte)})"
    write_bytes("bilstm_digits.tflite", convert_keras(export))


if __name__ == "__main__":
    rep = {}
    make_all(rep)
    print(rep)
