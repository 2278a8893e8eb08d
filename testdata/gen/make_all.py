#!/usr/bin/env python3
"""Regenerate everything in testdata/: models, sample data, expected outputs, manifest, README.

Usage (from the repository root, with a venv that has
``pip install tensorflow-cpu tf-keras tensorflow-model-optimization ai-edge-litert scikit-learn scikit-image``):

    /path/to/venv/bin/python testdata/gen/make_all.py                        # everything
    /path/to/venv/bin/python testdata/gen/make_all.py --only quant_refs,qat  # only those parts

Parts (registry.PARTS says which file belongs to which):
  base        the original models and data (models.py, ops_models.py);
  quant_refs  TF full-integer int8 / 16x8 references of committed float models
              (quant_refs.py; needs the committed float models and their data);
  qat         the quantization-aware-training model and its data (qat.py);
  idioms      exporter idioms: sentinel constants with their twins, STABLEHLO_COMPOSITE
              (idioms.py; uses the committed data of other parts);
  custom_ops  models with the custom ops LiteRT's XNNPACK delegate runs (custom_ops.py;
              needs the ops_conv_pool data);
  streaming   the streaming model with resource-variable state, its TF int8 reference
              and frame data (streaming.py);
  weights     weight-mode structures: sparse float16, shared and tied weights, LSTM->GRU
              (weight_models.py; uses the base data);
  int4        INT4 on every kind of weight: a tiny transformer (int4_models.py; uses
              the base data);
  int4_blockwise  blockwise INT4 FULLY_CONNECTED with fused activations and a layer too
              narrow for LiteRT's blockwise kernel (int4_blockwise.py; uses the base data);
  recurrent   LSTM, GRU and LSTM->GRU digit classifiers for full-integer recurrent
              models (recurrent.py; uses the qat part's digits_qat data);
  bilstm      Keras Bidirectional(LSTM) digit classifier (bilstm.py; digits_qat data);
  docs        nothing but manifest.json and README.md (+ check.py), e.g. after
              editing a description in registry.py.

Takes about a minute on 2 CPU cores.  Steps:
  1. (everything only) delete the previously generated files in testdata/ (not gen/);
     with --only nothing is deleted and only the files of the chosen parts are written;
  2. train/convert/rewrite the models of the chosen parts and write their
     calibration / held-out sample data (<stem>.calib.* / <stem>.test.*, labels);
  3. run the first registry.N_EXPECTED held-out samples of every runnable
     model of the chosen parts in LiteRT and store the outputs in <model>.expected.npz;
  4. write manifest.json and README.md from registry.py (always all models);
  5. run check.py (asserts every property; exits non-zero on failure).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402  (configures TensorFlow before anything imports it)
from common import TESTDATA, write_bytes, save_npy, save_npz, input_names  # noqa: E402
import data  # noqa: E402
import models  # noqa: E402
import ops_models  # noqa: E402
import idioms  # noqa: E402
import qat  # noqa: E402
import quant_refs  # noqa: E402
import custom_ops  # noqa: E402
import weight_models  # noqa: E402
import int4_models  # noqa: E402
import int4_blockwise  # noqa: E402
import recurrent  # noqa: E402
import bilstm  # noqa: E402
import registry  # noqa: E402
import runner  # noqa: E402
import streaming  # noqa: E402

N_PHOTO_CALIB = 48
N_PHOTO_TEST = 24


def clean():
    for p in list(TESTDATA.iterdir()) + list((TESTDATA / "invalid").glob("*.tflite")):
        if p.is_file() and (p.suffix in (".tflite", ".npy", ".npz") or p.name == "manifest.json"):
            p.unlink()


def build_models(report):
    models.make_cnn_family(report)
    models.make_fp16_weights_cnn(report)
    models.make_mlp_small_family(report)
    models.make_sparse_models(report)
    models.make_while_loop(report)
    models.make_mlp_large_fc(report)
    models.make_lstm_seq(report)
    models.make_embedding_lookup(report)
    for name in ("ops_elementwise", "ops_activation", "ops_conv_pool", "ops_shape",
                 "ops_shape_dynamic", "ops_reduce_misc"):
        common.reset_seeds()
        write_bytes(f"{name}.tflite", getattr(ops_models, f"build_{name}")())


def write_data():
    """Sample data, one calib/test pair per data stem of registry.DATA."""
    for split in ("calib", "test"):
        x, y = data.digits_split(split)
        n = len(x)
        save_npy(f"cnn_digits.{split}.npy", x.reshape(n, 8, 8, 1))
        save_npy(f"mlp_large_fc.{split}.npy", x.reshape(n, 64))
        save_npy(f"lstm_seq.{split}.npy", x.reshape(n, 8, 8))
        save_npy(f"ops_reduce_misc.{split}.npy", x.reshape(n, 8, 8))
        save_npy(f"embedding_lookup.{split}.npy", models.digit_ids(split))
        save_npy(f"ops_activation.{split}.npy", ops_models.activation_inputs(split, n))
        if split == "test":
            save_npy("digits.test_labels.npy", y.astype(np.int32))

        n_photo = N_PHOTO_CALIB if split == "calib" else N_PHOTO_TEST
        save_npy(f"ops_conv_pool.{split}.npy", ops_models.conv_pool_inputs(split, n_photo))
        save_npy(f"ops_shape.{split}.npy", ops_models.shape_inputs(split, n_photo))
        ex, ey = ops_models.elementwise_inputs(split, n_photo)
        # keyed by the stored input tensor names (the converter orders them y, x)
        names = {n.split("_")[-1]: n for n in input_names((TESTDATA / "ops_elementwise.tflite").read_bytes())}
        assert set(names) == {"x:0", "y:0"}, names
        save_npz(f"ops_elementwise.{split}.npz", {names["x:0"]: ex, names["y:0"]: ey})


def write_expected(parts):
    for fname, stem, runnable, _ in registry.MODELS:
        if not runnable or registry.PARTS[fname] not in parts:
            continue
        path = TESTDATA / fname
        inputs = runner.load_inputs(path, stem, "test")
        out = runner.run_samples(path, inputs, registry.N_EXPECTED)
        dest = TESTDATA / fname.replace(".tflite", ".expected.npz")
        np.savez_compressed(dest, **out)
        print(f"  wrote {dest.name} ({len(out)} outputs)")


def signature_outputs(path):
    """{signature output name: output tensor name} of the first SignatureDef (or None)."""
    m = common.read_model_t(path.read_bytes())
    if not m.signatureDefs:
        return None
    sd = m.signatureDefs[0]
    sg = m.subgraphs[sd.subgraphIndex]
    return {o.name.decode(): common.tensor_name(sg.tensors[o.tensorIndex]) for o in sd.outputs}


def write_manifest():
    man = {"note": "generated by testdata/gen/make_all.py; see README.md",
           "expected_samples": registry.N_EXPECTED,
           "models": {}}
    for fname, stem, runnable, desc in registry.MODELS:
        ext = ".npz" if runner.data_path(stem, "calib").suffix == ".npz" else ".npy"
        entry = {"calib": f"{stem}.calib{ext}", "test": f"{stem}.test{ext}",
                 "runs_in_litert": runnable, "description": desc}
        if runnable:
            entry["expected"] = fname.replace(".tflite", ".expected.npz")
        sig = signature_outputs(TESTDATA / fname)
        if sig:
            entry["signature_outputs"] = sig
        if fname in registry.CLASSIFIERS:
            entry["test_labels"] = registry.test_labels(stem)
        entry.update(registry.manifest_extra(
            fname, lambda f: quant_refs.float_ops((TESTDATA / f).read_bytes())))
        man["models"][fname] = entry
    (TESTDATA / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    print("  wrote manifest.json")


README_HEAD = """# testdata

Small TensorFlow Lite models and real sample data for the tflquant tests.
Everything here is generated by `testdata/gen/make_all.py`; CI does **not**
run it (it needs TensorFlow) — the generated files are committed.  To
regenerate (about a minute on 2 cores), from the repository root:

    python -m venv /path/to/venv
    /path/to/venv/bin/pip install tensorflow-cpu tf-keras tensorflow-model-optimization ai-edge-litert scikit-learn scikit-image
    /path/to/venv/bin/python testdata/gen/make_all.py

(made with tensorflow-cpu 2.21, tf_keras 2.21, tensorflow-model-optimization
0.8.1, ai-edge-litert 2.3.0, scikit-learn 1.9, scikit-image 0.26).  Seeds are
fixed, TF op determinism is on and training is single-threaded: two runs on
the same setup gave byte-identical files (other TF versions or CPUs may not).
`make_all.py` ends by running `testdata/gen/check.py`, which loads every model
with the official schema bindings, asserts the property each file exists for,
and runs it in the LiteRT interpreter (all except `custom_op.tflite`).
`python testdata/gen/check.py` can be run alone.

Conventions:
* A `.npy` for a single-input model has shape `[N, d1..dk]` where the model
  input is `[1, d1..dk]`; a `.npz` for a multi-input model holds one such array
  per input, keyed by the input tensor's name as stored in the `.tflite`.
* `<stem>.calib.*` (N=64 digits / 48 photo crops) and `<stem>.test.*` (N=32
  digits / 24 photo crops; `digits_qat.test.npy`: N=360) are disjoint: test
  digits are never used for training; calibration and test photo crops come
  from different photos.  Several models share one data stem (listed per model
  below and in `manifest.json`).  All digits test sets except `digits_qat` hold
  the same 32 digits in the same order; their labels are in
  `digits.test_labels.npy` (`digits_qat`: `digits_qat.test_labels.npy`, whose
  first 32 digits are those 32).
* `<model>.expected.npz`: LiteRT outputs (builtin kernels, no XNNPACK) of the
  first 4 test samples, run one at a time (`custom_*` models: with the XNNPACK
  delegate, the only LiteRT path that runs their custom ops); keyed by output tensor name; each
  array has shape `[4, *output_tensor_shape]`, in the tensor's own dtype.
  Variable tensors are reset before each sample: in `lstm_seq.tflite` the
  LSTM h/c state inputs are `is_variable` tensors, which TFLite carries over
  from one Invoke to the next unless reset.
* `manifest.json`: the same model -> data mapping in machine-readable form,
  plus `signature_outputs` (signature output name -> output tensor name; the
  ops_* models name their outputs `PartitionedCall:N`, the signature names
  them after the op, e.g. `add_relu`).
* Data come only from packages: scikit-learn's bundled `load_digits()` and
  scikit-image's bundled photos (astronaut, coffee, chelsea for calibration;
  rocket, immunohistochemistry for test). No random inputs.

Not converter output (object-API rewrites of converted models, each checked
to run in LiteRT except the custom op): `no_signature_mlp`,
`with_metadata_mlp`, `custom_op`, `legacy_opcodes_cnn`, `embedding_lookup`
(EMBEDDING_LOOKUP), and the beta=1.5 SOFTMAX in `ops_activation`.

TF quantization references (`<model>.tf_int8.tflite`, `<model>.tf_int16x8.tflite`,
part `quant_refs`, `gen/quant_refs.py`): the TF converter's own full-integer
quantization of `cnn_digits`, `mlp_large_fc`, `fp16_weights_cnn`,
`ops_conv_pool`, `ops_activation`, `ops_shape` and `dynamic_batch_mlp`, with
every sample of the float model's calibration file (in file order) as
representative dataset and a float32 interface.  They quantize the same network
as the committed float model: the generator rebuilds the float source, converts
it to float again and asserts that it reproduces the committed model's outputs
on the whole test set (all but two are byte-identical conversions; see each
model below) before quantizing.  Two 16x8 references are invalid converter
output that LiteRT refuses (`runs_in_litert: false`, no expected outputs),
kept because they are what TF produces, in `invalid/` so that tests running
every `testdata/*.tflite` in LiteRT do not pick them up.  The converter is not deterministic
for `ops_shape.tf_int8.tflite`: depending on the run (same inputs, another
process) UNPACK is also left in float32, with otherwise equal outputs; the
manifest's `float_ops` describe the committed file.  Everything else
regenerates byte-identically.  `manifest.json` records, on the float model
(`tf_int8`, `tf_int16x8`) and on the reference (`reference_of`,
`tf_conversion`), the calibration file, `supported_ops`, whether ops were left
in float (`float_fallback`, `float_ops`) and, for the two 16x8 references TF
writes invalid (`converter_defect`), why LiteRT refuses them.

QAT (part `qat`, `gen/qat.py`, issue #6): `qat_digits.*.tflite`, a 3-conv/2-dense
digits CNN trained with tfmot `quantize_model`, converted three ways; its data
`digits_qat.*` have a 360-digit test set (the accuracy comparison uses all of
it) disjoint from the QAT training digits.

Streaming (part `streaming`, `gen/streaming.py`, issue #20): `streaming_kws.*.tflite`
keep state between invocations in resource variables (VAR_HANDLE / READ_VARIABLE /
ASSIGN_VARIABLE, initialised by a CALL_ONCE subgraph); their data are frames meant
to be run in order as one stream.  LiteRT's `reset_all_variables()` does not reset
resource variables, so their expected outputs are the first 4 test frames streamed
through one interpreter.

Regenerate only these parts (the other files are left untouched; manifest.json
and README.md are rewritten for all models):

    /path/to/venv/bin/python testdata/gen/make_all.py --only quant_refs,qat,streaming

Not produced: L2_POOL_2D (TF has no op the converter lowers to it; the
sqrt(avg_pool(x^2)) pattern stays SQUARE/AVERAGE_POOL_2D/SQRT), ONES_LIKE (no
such TFLite builtin; tf.ones_like becomes SHAPE + BROADCAST_TO). SQUEEZE and
EXPAND_DIMS only survive with dynamic shapes, hence `ops_shape_dynamic`.

"""


def write_readme():
    lines = [README_HEAD, "## Models\n"]
    for fname, stem, runnable, desc in registry.MODELS:
        ext = runner.data_path(stem, "calib").suffix
        lines.append(f"* `{fname}` — {desc}. Data: `{stem}.calib{ext}` / `{stem}.test{ext}`."
                     + ("" if runnable else " No expected outputs."))
    lines.append("\n## Sample data\n")
    for stem, desc in registry.DATA.items():
        ext = runner.data_path(stem, "calib").suffix
        users = [f for f, s, _, _ in registry.MODELS if s == stem]
        lines.append(f"* `{stem}.calib{ext}`, `{stem}.test{ext}` — {desc}. Used by: "
                     + ", ".join(f"`{u}`" for u in users) + ".")
    lines.append("* `digits.test_labels.npy` — int32 [32], the digit classes of every digits `*.test.*` set "
                 "(all use the same held-out digits in the same order) except `digits_qat`.")
    lines.append(f"* `digits_qat.test_labels.npy` — int32 [{data.N_QAT_TEST}], the digit classes of "
                 "`digits_qat.test.npy` (its first 32 equal `digits.test_labels.npy`).")
    for fname, stem, runnable, _ in registry.MODELS:
        if runnable:
            lines.append(f"* `{fname.replace('.tflite', '.expected.npz')}` — LiteRT outputs of `{fname}` "
                         f"for the first {registry.N_EXPECTED} samples of `{stem}.test.*` (see Conventions).")
    lines.append("* `manifest.json` — model -> data/expected/labels mapping and descriptions.")
    lines.append("\n## Generator scripts (`gen/`)\n")
    lines.append("* `gen/make_all.py` — entry point, runs everything below then `check.py`.")
    lines.append("* `gen/common.py` — TF setup (tf_keras, determinism), conversion helpers, "
                 "flatbuffer object-API read/write (16-byte aligned buffers), op histogram.")
    lines.append("* `gen/data.py` — digits splits and photo crops.")
    lines.append("* `gen/models.py` — trained models and the object-API rewrites "
                 "(no signature, metadata, custom op, legacy opcodes, EMBEDDING_LOOKUP).")
    lines.append("* `gen/ops_models.py` — op-coverage graphs (tf.function) and the SOFTMAX-beta rewrite.")
    lines.append("* `gen/quant_refs.py` — TF full-integer int8/16x8 references of committed float models "
                 "(rebuilds and verifies the float source first).")
    lines.append("* `gen/qat.py` — quantization-aware-training digits CNN (tfmot) and its three conversions.")
    lines.append("* `gen/idioms.py` — exporter idioms (issue #19): sentinel constants (-FLT_MAX pad, -1e9 / -inf "
                 "masks, +-FLT_MAX clip) each with a sentinel-free twin, and the STABLEHLO_COMPOSITE rewrite.")
    lines.append("* `gen/custom_ops.py` — models with the custom ops LiteRT's XNNPACK delegate runs "
                 "(Convolution2DTransposeBias, MaxPoolingWithArgmax2D, MaxUnpooling2D; raw C-struct options).")
    lines.append("* `gen/streaming.py` — streaming keyword-spotter-like model whose state lives in "
                 "resource variables (tf.Module + tf.Variable), and TF's int8 conversion of it.")
    lines.append("* `gen/weight_models.py` — weight-mode structures (issue #11): sparse float16 CNN, shared "
                 "and tied weights, LSTM->GRU.")
    lines.append("* `gen/int4_models.py` — INT4 on every kind of weight (issue #21): a tiny transformer.")
    lines.append("* `gen/int4_blockwise.py` — blockwise INT4 FULLY_CONNECTED on LiteRT's builtin kernels "
                 "(issue #21): fused RELU / RELU6 and a layer too narrow for the blockwise kernel.")
    lines.append("* `gen/recurrent.py` — LSTM, GRU and LSTM->GRU digit classifiers (issue #13) trained on the "
                 "digits_qat split (360 held-out digits).")
    lines.append("* `gen/bilstm.py` — Keras Bidirectional(LSTM) digit classifier (issue #13): what the converter "
                 "makes of it (two UNIDIRECTIONAL_SEQUENCE_LSTM and REVERSE_V2).")
    lines.append("* `gen/registry.py` — list of models/data with the descriptions used here (and what the "
                 "converter produced for each TF reference).")
    lines.append("* `gen/runner.py` — LiteRT runner used for expected outputs and checks.")
    lines.append("* `gen/check.py` — property assertions + one LiteRT run per model; prints op histograms.")
    (TESTDATA / "README.md").write_text("\n".join(lines) + "\n")
    print("  wrote README.md")


PARTS = ("base", "quant_refs", "qat", "idioms", "custom_ops", "streaming", "weights", "int4", "int4_blockwise", "recurrent", "bilstm")
PSEUDO_PARTS = ("docs",)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated parts to regenerate: " + ", ".join(PARTS + PSEUDO_PARTS))
    args = ap.parse_args()
    parts = PARTS if not args.only else tuple(p.strip() for p in args.only.split(","))
    unknown = set(parts) - set(PARTS) - set(PSEUDO_PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}")
    t0 = time.time()
    report = {}
    if set(parts) == set(PARTS):
        clean()
    if "base" in parts:
        print("== base models")
        build_models(report)
        print("== base data")
        write_data()
    if "quant_refs" in parts:
        print("== TF quantization references")
        quant_refs.make_quant_refs(report)
    if "qat" in parts:
        print("== QAT")
        qat.make_qat(report)
        qat.write_data()
    if "idioms" in parts:
        print("== exporter idioms")
        idioms.make_idioms()
    if "custom_ops" in parts:
        print("== custom ops (XNNPACK)")
        custom_ops.make_custom_ops(report)
    if "streaming" in parts:
        print("== streaming")
        streaming.make_streaming(report)
        streaming.write_data()
    if "weights" in parts:
        print("== weight-mode structures")
        weight_models.make_all(report)
    if "int4" in parts:
        print("== INT4 models")
        int4_models.make_all(report)
    if "int4_blockwise" in parts:
        print("== blockwise INT4 model")
        int4_blockwise.make_all(report)
    if "recurrent" in parts:
        print("== recurrent classifiers")
        recurrent.make_all(report)
    if "bilstm" in parts:
        print("== Keras Bidirectional(LSTM)")
        bilstm.make_all(report)
    print("== expected outputs")
    write_expected(parts)
    write_manifest()
    write_readme()
    print("== training report")
    for k, v in report.items():
        print(f"  {k}: {v}")
    print(f"== generated in {time.time() - t0:.0f}s; checking")
    import check
    sys.exit(check.main())


if __name__ == "__main__":
    main()
