"""Recurrent classifiers for full-integer LSTM/GRU (issue #13; part ``recurrent``).

Three Keras models over the digits read as 8 rows of 8 pixels, trained on the
``digits_qat`` split so that its 360 held-out digits (``digits_qat.test.npy``, labels
``digits_qat.test_labels.npy``) are never seen in training; their input is the
[8, 8, 1] image of that data, reshaped to the [8, 8] sequence inside the model:

  * ``lstm_digits``: LSTM(32) -> Dense(10) softmax: UNIDIRECTIONAL_SEQUENCE_LSTM;
  * ``gru_digits``: GRU(32) -> Dense(10) softmax: the GRU lowered to a WHILE loop;
  * ``lstm_gru_digits``: LSTM(32, return_sequences) -> GRU(32) -> Dense(10) softmax.

Training is short and deterministic (seeds reset per model, single thread).
"""

from common import tf, reset_seeds, convert_keras, write_bytes
import data

layers = tf.keras.layers


def _arch(kind, batch):
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Reshape((8, 8), name="rows")(inp)
    if kind in ("lstm", "lstm_gru"):
        x = layers.LSTM(32, return_sequences=kind == "lstm_gru", name="lstm")(x)
    if kind in ("gru", "lstm_gru"):
        x = layers.GRU(32, name="gru")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out, name=f"{kind}_digits")


def make(kind, report):
    reset_seeds()
    xtr, ytr = data.digits_qat_split("train")
    xte, yte = data.digits_qat_split("test")
    xtr, xte = xtr.reshape(-1, 8, 8, 1), xte.reshape(-1, 8, 8, 1)
    m = _arch(kind, None)
    m.compile(optimizer=tf.keras.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy")
    m.fit(xtr, ytr, epochs=15, batch_size=32, shuffle=True, verbose=0)
    acc = float((m.predict(xte, verbose=0).argmax(-1) == yte).mean())
    export = _arch(kind, 1)
    export.set_weights(m.get_weights())
    report[f"{kind}_digits"] = f"keras test accuracy {acc:.3f} (N={len(yte)})"
    write_bytes(f"{kind}_digits.tflite", convert_keras(export))


def make_all(report):
    for kind in ("lstm", "gru", "lstm_gru"):
        make(kind, report)


if __name__ == "__main__":
    rep = {}
    make_all(rep)
    print(rep)
