"""Quantization-aware training model (issue #6)  (``make_all.py --only qat``).

A small digits CNN (3 conv + 2 dense) is trained in float for a few epochs, then
wrapped with ``tfmot.quantization.keras.quantize_model`` (default 8-bit scheme:
per-channel symmetric conv weights, per-tensor symmetric dense weights, both
narrow range; moving-average asymmetric activation ranges) and fine-tuned for a
few more epochs.  Data: ``data.digits_qat_split`` (360 held-out test digits,
training on the other 1437).  Three conversions of the same QAT Keras model:

* ``qat_digits.float.tflite`` - no optimizations: float graph in which every
  FakeQuant node became a QUANTIZE (to UINT8) -> DEQUANTIZE pair;
* ``qat_digits.tf_int8.tflite`` - ``Optimize.DEFAULT`` (no representative
  dataset: the QAT ranges are used), float32 interface;
* ``qat_digits.tf_int8_int8io.tflite`` - same with int8 input/output.
"""

import numpy as np

import common
from common import tf, reset_seeds, write_bytes, save_npy
import data

layers = tf.keras.layers

FLOAT_EPOCHS = 8
QAT_EPOCHS = 4


def _arch(batch):
    inp = tf.keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)                                     # 4x4x16
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)                                           # 256
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    out = layers.Dense(10, name="logits")(x)   # logits: no softmax, so its output range is a QAT range too
    return tf.keras.Model(inp, out, name="qat_digits")


def images(split):
    x, y = data.digits_qat_split(split)
    return x.reshape(-1, 8, 8, 1).astype(np.float32), y


def write_data():
    for split in ("calib", "test"):
        x, y = images(split)
        save_npy(f"digits_qat.{split}.npy", x)
        if split == "test":
            save_npy("digits_qat.test_labels.npy", y.astype(np.int32))


def _compile(model, lr):
    model.compile(optimizer=tf.keras.optimizers.Adam(lr),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def make_qat(report):
    import tensorflow_model_optimization as tfmot
    # fresh Keras name counters, so the tensor names (quantize_layer, ...) do not
    # depend on what was built before in the same process
    tf.keras.backend.clear_session()
    reset_seeds()
    xtr, ytr = images("train")
    xte, yte = images("test")

    model = _arch(None)
    _compile(model, 1e-2)
    model.fit(xtr, ytr, epochs=FLOAT_EPOCHS, batch_size=32, shuffle=True, verbose=0)
    float_acc = float((model.predict(xte, verbose=0).argmax(-1) == yte).mean())

    qat = tfmot.quantization.keras.quantize_model(model)
    _compile(qat, 1e-3)
    qat.fit(xtr, ytr, epochs=QAT_EPOCHS, batch_size=32, shuffle=True, verbose=0)
    qat_acc = float((qat.predict(xte, verbose=0).argmax(-1) == yte).mean())
    report["qat_digits"] = f"keras test accuracy: float {float_acc:.3f}, after QAT {qat_acc:.3f} (N={len(yte)})"

    # batch-1 twin with the same weights and quantizer variables
    export = tfmot.quantization.keras.quantize_model(_arch(1))
    export.set_weights(qat.get_weights())

    def convert(**kw):
        conv = tf.lite.TFLiteConverter.from_keras_model(export)
        for k, v in kw.items():
            setattr(conv, k, v)
        return conv.convert()

    write_bytes("qat_digits.float.tflite", convert())
    write_bytes("qat_digits.tf_int8.tflite", convert(optimizations=[tf.lite.Optimize.DEFAULT]))
    write_bytes("qat_digits.tf_int8_int8io.tflite",
                convert(optimizations=[tf.lite.Optimize.DEFAULT],
                        inference_input_type=tf.int8, inference_output_type=tf.int8))
