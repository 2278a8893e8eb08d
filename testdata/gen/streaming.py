"""Streaming keyword-spotter-like model with resource-variable state (issue #20)
(``make_all.py --only streaming``).

A digit is read as a stream of 8 frames (its rows, 8 features each). A small
causal conv net over time is trained in Keras on whole digits (8 frames in, the
class at the last frame out):

    frames [8, 8] -> conv1 (3 frames x 8 -> 16, ReLU) -> conv2 (3 frames x 16 -> 16, ReLU)
                  -> last step -> dense 10 (logits)

with two zero frames padded in front of each conv (causal).  Its streaming twin is
a ``tf.Module`` whose ``tf.function`` takes ONE frame per call, keeps the previous 2
frames of each conv's input in ``tf.Variable``s (the way streaming pipelines such as
microWakeWord / kws_streaming keep state), concatenates the new frame, convolves
and assigns the new state back.  Converted with resource variables enabled this
gives VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE in the main subgraph and a
CALL_ONCE initialisation subgraph that assigns the zero initial state.  Its
receptive field is 5 frames, so the output at the last frame of a digit depends
only on that digit: streamed over consecutive digits it gives the whole-digit
model's logits at every 8th frame (asserted here).

Files:
* ``streaming_kws.tflite`` - float32;
* ``streaming_kws.tf_int8.tflite`` - TF's own int8 conversion of the same network
  (Optimize.DEFAULT, TFLITE_BUILTINS_INT8, representative dataset = the calibration
  frames in order, one frame per step, so the state flows as in deployment) with
  ``_experimental_variable_quantization`` on, which makes the variables int8
  (READ/ASSIGN on INT8 tensors, int8 initial values in the init subgraph);
* data: ``streaming_kws.calib.npy`` (64 calibration digits = 512 frames [512,8]) and
  ``streaming_kws.test.npy`` (the 32 test digits = 256 frames [256,8]), in order.
"""

import numpy as np

import common
from common import tf, reset_seeds, write_bytes, save_npy
import data

layers = tf.keras.layers

FLOAT = "streaming_kws.tflite"
INT8 = "streaming_kws.tf_int8.tflite"
FRAMES, FEATURES, CH = 8, 8, 16
EPOCHS = 40


def frames(split):
    """(frames [N*8, 8] float32, labels [N]) of a digits split, digit after digit."""
    x, y = data.digits_split(split)
    return x.reshape(-1, FEATURES).astype(np.float32), y


def _keras_model():
    inp = tf.keras.Input((FRAMES, FEATURES), batch_size=None, name="frames")
    x = layers.Reshape((FRAMES, 1, FEATURES))(inp)
    x = layers.ZeroPadding2D(((2, 0), (0, 0)))(x)
    x = layers.Conv2D(CH, (3, 1), activation="relu", name="conv1")(x)
    x = layers.ZeroPadding2D(((2, 0), (0, 0)))(x)
    x = layers.Conv2D(CH, (3, 1), activation="relu", name="conv2")(x)
    x = layers.Lambda(lambda t: t[:, -1, 0, :], name="last")(x)
    out = layers.Dense(10, name="logits")(x)
    return tf.keras.Model(inp, out, name="kws")


class StreamingKws(tf.Module):
    """One frame per call; the 2 previous input frames of each conv live in variables."""

    def __init__(self, keras_model):
        super().__init__()
        w = {l.name: l.get_weights() for l in keras_model.layers if l.get_weights()}
        self.w1, self.b1 = (tf.constant(a) for a in w["conv1"])
        self.w2, self.b2 = (tf.constant(a) for a in w["conv2"])
        self.wd, self.bd = (tf.constant(a) for a in w["logits"])
        self.state1 = tf.Variable(tf.zeros([1, 2, 1, FEATURES]), trainable=False, name="state1")
        self.state2 = tf.Variable(tf.zeros([1, 2, 1, CH]), trainable=False, name="state2")

    @tf.function(input_signature=[tf.TensorSpec([1, FEATURES], tf.float32, name="frame")])
    def step(self, frame):
        x = tf.reshape(frame, [1, 1, 1, FEATURES])
        buf1 = tf.concat([self.state1, x], axis=1)
        self.state1.assign(buf1[:, 1:])
        h1 = tf.nn.relu(tf.nn.conv2d(buf1, self.w1, 1, "VALID") + self.b1)
        buf2 = tf.concat([self.state2, h1], axis=1)
        self.state2.assign(buf2[:, 1:])
        h2 = tf.nn.relu(tf.nn.conv2d(buf2, self.w2, 1, "VALID") + self.b2)
        return {"logits": tf.matmul(tf.reshape(h2, [1, CH]), self.wd) + self.bd}


def _convert(module, representative=None):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
    conv.experimental_enable_resource_variables = True
    if representative is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv._experimental_variable_quantization = True
    return conv.convert()


def stream(model_bytes, x):
    """Run every frame of ``x`` through one LiteRT interpreter, in order (state flows)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=bytes(model_bytes),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for f in x:
        it.set_tensor(i["index"], f[None])
        it.invoke()
        out.append(it.get_tensor(o["index"]).copy())
    return np.concatenate(out)


def make_streaming(report):
    tf.keras.backend.clear_session()
    reset_seeds()
    xtr, ytr = data.digits_split("train")
    xte, yte = data.digits_split("test")
    model = _keras_model()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=EPOCHS, batch_size=64, shuffle=True, verbose=0)
    keras_logits = model.predict(xte, verbose=0)
    acc = float((keras_logits.argmax(-1) == yte).mean())

    module = StreamingKws(model)
    fbytes = _convert(module)
    write_bytes(FLOAT, fbytes)
    calib, _ = frames("calib")
    test, _ = frames("test")

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]
    qbytes = _convert(StreamingKws(model), representative)
    write_bytes(INT8, qbytes)

    # streamed over consecutive digits, every 8th frame gives the whole-digit logits
    f_out = stream(fbytes, test)
    last = f_out[FRAMES - 1::FRAMES]
    err = float(np.abs(last - keras_logits).max())
    assert err < 1e-4, f"streaming logits differ from the Keras model by {err}"
    q_out = stream(qbytes, test)
    sqnr = 10 * np.log10((f_out.astype(np.float64) ** 2).sum() / ((f_out - q_out).astype(np.float64) ** 2).sum())
    stream_acc = float((last.argmax(-1) == yte).mean())
    report["streaming_kws"] = (f"keras test accuracy {acc:.3f}; streamed float at every 8th frame "
                               f"{stream_acc:.3f} (max |diff| to keras {err:.1e}); TF int8 SQNR over the "
                               f"{len(test)}-frame test stream {sqnr:.2f} dB")


def write_data():
    for split in ("calib", "test"):
        x, y = frames(split)
        save_npy(f"streaming_kws.{split}.npy", x)
