"""The list of every file in testdata/: which data each model uses, and what it is.

Used by make_all.py (to write data, expected outputs, manifest.json and
README.md) and by check.py (to know what to load and run).
"""

# Data sets.  "stem" files are <stem>.calib.npy / <stem>.test.npy (or .npz for
# multi-input models).  All digits-based test sets use the same 32 held-out
# digits in the same order (labels in digits.test_labels.npy); calibration
# sets are 64 training-pool digits.  Photo sets use different photos for
# calibration (astronaut, coffee, chelsea) and test (rocket, immunohistochemistry).
DATA = {
    "cnn_digits": "digits as images, float32 [N,8,8,1] in [0,1] (sklearn load_digits / 16)",
    "mlp_large_fc": "digits flattened, float32 [N,64] in [0,1]",
    "lstm_seq": "digits as 8 rows of 8 features, float32 [N,8,8] in [0,1]",
    "embedding_lookup": "digit pixel intensities 0..16 used as token ids, int32 [N,64] (not float: the model input is int32)",
    "ops_elementwise": "npz, two inputs: x = 4x4 RGB photo crops [N,4,4,3] in [0,1]; y = mean brightness of each crop row [N,4,1,1]",
    "ops_activation": "digits flattened and standardized with training-set mean/std, float32 [N,64] (values about -3..6)",
    "ops_conv_pool": "16x16 RGB photo crops, float32 [N,16,16,3] in [0,1] (skimage photos downscaled to short side 64)",
    "ops_shape": "8x8 RGB photo crops, float32 [N,8,8,3] in [0,1] (skimage photos downscaled to short side 40)",
    "ops_reduce_misc": "digits as images without channel dim, float32 [N,8,8] in [0,1]",
}

# (file, data stem, runnable in LiteRT, description)
MODELS = [
    # --- foundation -------------------------------------------------------
    ("cnn_digits.tflite", "cnn_digits", True,
     "main demo float CNN trained on digits: CONV_2D(fused RELU), DEPTHWISE_CONV_2D(fused RELU6), MAX_POOL_2D, "
     "AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED (128x64 = 8192 weights, fused RELU), SOFTMAX; SignatureDef "
     "serving_default; static [1,8,8,1] input"),
    ("fp16_weights_cnn.tflite", "cnn_digits", True,
     "second digits CNN (strided conv, global MEAN) converted with supported_types=[float16] + Optimize.DEFAULT: "
     "FLOAT16 constant weights feeding DEQUANTIZE ops"),
    ("sparse_dense_mlp.tflite", "mlp_large_fc", True,
     "MLP 64-128-64-10 pruned with tfmot prune_low_magnitude (unstructured, 85%), strip_pruning, converted with "
     "Optimize.EXPERIMENTAL_SPARSITY: float weights stored sparse (CSR: dims DENSE,SPARSE_CSR) + DENSIFY before each FC"),
    ("sparse_block1x4_mlp.tflite", "mlp_large_fc", True,
     "same MLP pruned with block_size=(4,1) on the Keras [in,out] kernel (= 1x4 blocks of the TFLite [out,in] "
     "weights): sparse weights with block_map=[1] (3 dims DENSE,SPARSE_CSR,DENSE(4)) consumed directly by "
     "FULLY_CONNECTED, no DENSIFY"),
    ("while_loop.tflite", "mlp_large_fc", True,
     "tf.function with tf.while_loop (h = tanh(h W + b), data-dependent trip count 3 or 4): WHILE op, 3 subgraphs "
     "(main, cond with LESS, body with FULLY_CONNECTED/ADD/TANH)"),
    ("no_signature_mlp.tflite", "mlp_large_fc", True,
     "small digits MLP (64-32-16-10, FC/TANH/SOFTMAX) with the SignatureDef vector removed (object-API rewrite)"),
    ("with_metadata_mlp.tflite", "mlp_large_fc", True,
     "same MLP plus a Metadata entry 'tflquant_test_meta' -> new buffer (bytes in models.META_BYTES) besides the "
     "converter's min_runtime_version and CONVERSION_METADATA, and Model.description set (object-API rewrite)"),
    ("int8_quantized_cnn.tflite", "cnn_digits", True,
     "cnn_digits fully int8-quantized by the TF converter (TFLITE_BUILTINS_INT8, representative set = "
     "cnn_digits.calib.npy): per-axis int8 conv/FC weights, int32 biases, int8 activations, float interface "
     "(QUANTIZE in, DEQUANTIZE out)"),
    ("int8_quantized_cnn_int8io.tflite", "cnn_digits", True,
     "same full-int8 conversion with inference_input_type/output_type=int8 (int8 input and output tensors; "
     "quantize the float samples with the input tensor's scale/zero_point)"),
    ("custom_op.tflite", "mlp_large_fc", False,
     "small MLP whose TANH was rewritten into a CUSTOM op: OperatorCode builtin_code=CUSTOM, "
     "custom_code='TflquantTestOp', op custom_options = FlexBuffer map {activation:'tanh', scale:1.0, version:1}. "
     "Does NOT run in LiteRT (unresolved custom op) by design"),
    ("dynamic_batch_mlp.tflite", "mlp_large_fc", True,
     "same small MLP converted from a Keras model with free batch: input shape [1,64], shape_signature [-1,64]"),
    ("legacy_opcodes_cnn.tflite", "cnn_digits", True,
     "cnn_digits with every OperatorCode rewritten to builtin_code=0 (ADD, field absent) and the real code only in "
     "deprecated_builtin_code; same outputs as cnn_digits.tflite"),
    # --- weight-quantization parity --------------------------------------
    ("mlp_large_fc.tflite", "mlp_large_fc", True,
     "weight-dominated float MLP 64-384-384-10 (175k weights, ~690 KB), FC(fused RELU) x2, FC, SOFTMAX"),
    ("mlp_large_fc.tf_dynamic.tflite", "mlp_large_fc", True,
     "mlp_large_fc converted by TF with Optimize.DEFAULT and no representative set (dynamic-range: int8 weights, "
     "float activations)"),
    ("mlp_large_fc.tf_float16.tflite", "mlp_large_fc", True,
     "mlp_large_fc converted by TF with supported_types=[float16]: FLOAT16 weights + DEQUANTIZE"),
    ("cnn_digits.tf_dynamic.tflite", "cnn_digits", True,
     "cnn_digits converted by TF dynamic-range (Optimize.DEFAULT, no dataset): only weights with >= 1024 elements "
     "(conv2 4608, fc1 8192) become int8, the small ones stay float32"),
    ("cnn_digits.tf_float16.tflite", "cnn_digits", True,
     "cnn_digits converted by TF with supported_types=[float16]: FLOAT16 weights + DEQUANTIZE"),
    # --- interpreter coverage ---------------------------------------------
    ("ops_elementwise.tflite", "ops_elementwise", True,
     "two inputs x[1,4,4,3], y[1,4,1,1]; ADD(fused RELU), SUB, MUL(fused RELU6), DIV, FLOOR_DIV, POW, "
     "SQUARED_DIFFERENCE, MAXIMUM, MINIMUM, EXP, LOG, SQRT, RSQRT, SQUARE, NEG, ABS, SIN, COS, FLOOR, CEIL, ROUND, "
     "SIGN with broadcasting against [3], [1,4,1,1] and scalars; one named output per op"),
    ("ops_activation.tflite", "ops_activation", True,
     "LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, PRELU, ELU, HARD_SWISH, GELU (approximate and exact), "
     "SOFTMAX (beta=1 and beta=1.5, the latter by folding the preceding MUL with the object API), LOG_SOFTMAX, "
     "L2_NORMALIZATION, MUL with fused RELU6"),
    ("ops_conv_pool.tflite", "ops_conv_pool", True,
     "CONV_2D (stride 2 SAME fused RELU, VALID fused RELU6, dilation 2), DEPTHWISE_CONV_2D (depth multiplier 2, "
     "fused RELU), TRANSPOSE_CONV (with bias), AVERAGE_POOL_2D, MAX_POOL_2D (SAME), RESIZE_BILINEAR (align_corners, "
     "half_pixel_centers, neither), RESIZE_NEAREST_NEIGHBOR (half_pixel_centers, align_corners), "
     "SQUARE/AVERAGE_POOL/SQRT (the L2-pool pattern; TF never emits L2_POOL_2D)"),
    ("ops_shape.tflite", "ops_shape", True,
     "RESHAPE, TRANSPOSE, CONCATENATION, SPLIT, SPLIT_V, SLICE, STRIDED_SLICE (negative stride, begin/end masks, "
     "shrink_axis_mask, one on a 5-D tensor; the converter rewrites new-axis/ellipsis masks away), PAD, PADV2, MIRROR_PAD (REFLECT, SYMMETRIC), GATHER, GATHER_ND, PACK, UNPACK, TILE, "
     "BROADCAST_TO, REVERSE_V2, DEPTH_TO_SPACE, SPACE_TO_DEPTH, SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND"),
    ("ops_shape_dynamic.tflite", "ops_shape", True,
     "dynamic-batch input [-1,8,8,3]: SQUEEZE and EXPAND_DIMS (with static shapes the converter turns both into "
     "RESHAPE), plus SHAPE/STRIDED_SLICE/PACK feeding a RESHAPE with a computed shape"),
    ("ops_reduce_misc.tflite", "ops_reduce_misc", True,
     "dynamic-batch input [-1,8,8]: MEAN, SUM, REDUCE_MAX, REDUCE_MIN, REDUCE_PROD (keep_dims true/false), "
     "BATCH_MATMUL (activation x activation adj_y, activation x constant [1,8,5]), FULLY_CONNECTED keep_num_dims "
     "on 3-D input (with bias+RELU and without), SELECT, SELECT_V2, EQUAL, NOT_EQUAL, LESS, LESS_EQUAL, GREATER, "
     "GREATER_EQUAL, LOGICAL_AND/OR/NOT, CAST, SHAPE, RANGE, FILL, ZEROS_LIKE, ARG_MAX (int64), ARG_MIN (int32), "
     "CUMSUM (plain, exclusive+reverse); bool/int outputs"),
    ("lstm_seq.tflite", "lstm_seq", True,
     "Keras LSTM(16, return_sequences) over 8 digit rows of 8 features -> UNIDIRECTIONAL_SEQUENCE_LSTM, "
     "RESHAPE, FULLY_CONNECTED, SOFTMAX"),
    ("embedding_lookup.tflite", "embedding_lookup", True,
     "int32 ids [1,64] -> RESHAPE -> EMBEDDING_LOOKUP(ids, table 17x8) -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX "
     "(GATHER rewritten to EMBEDDING_LOOKUP with the object API; trained on digits)"),
]

# classifiers whose output is digit-class probabilities (checked for accuracy)
CLASSIFIERS = {
    "cnn_digits.tflite", "fp16_weights_cnn.tflite", "sparse_dense_mlp.tflite",
    "sparse_block1x4_mlp.tflite", "no_signature_mlp.tflite", "with_metadata_mlp.tflite",
    "int8_quantized_cnn.tflite", "int8_quantized_cnn_int8io.tflite", "dynamic_batch_mlp.tflite",
    "legacy_opcodes_cnn.tflite", "mlp_large_fc.tflite", "mlp_large_fc.tf_dynamic.tflite",
    "mlp_large_fc.tf_float16.tflite", "cnn_digits.tf_dynamic.tflite", "cnn_digits.tf_float16.tflite",
    "lstm_seq.tflite", "embedding_lookup.tflite",
}

# number of held-out samples whose LiteRT outputs are stored in <model>.expected.npz
N_EXPECTED = 4


# ---------------------------------------------------------------------------
# TF converter full-integer references  (make_all.py --only quant_refs; quant_refs.py)
# ---------------------------------------------------------------------------
# float model -> its data stem (the references use <stem>.calib.npy, every sample, in
# file order, as representative dataset, and are tested on <stem>.test.npy)
TF_REF_SOURCES = {
    "cnn_digits.tflite": "cnn_digits",
    "mlp_large_fc.tflite": "mlp_large_fc",
    "fp16_weights_cnn.tflite": "cnn_digits",
    "ops_conv_pool.tflite": "ops_conv_pool",
    "ops_activation.tflite": "ops_activation",
    "ops_shape.tflite": "ops_shape",
    "dynamic_batch_mlp.tflite": "mlp_large_fc",
}

OPS_INT8 = ["TFLITE_BUILTINS_INT8"]
OPS_16X8 = ["EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"]
OPS_16X8_FALLBACK = OPS_16X8 + ["TFLITE_BUILTINS"]

# What the converter (tensorflow 2.21) produced; quant_refs.py asserts it again when
# regenerating and check.py asserts it on the files.  float_ops: ops other than
# QUANTIZE/DEQUANTIZE with a non-constant FLOAT32 input or output, {op: count}.
# strict_unsupported: ops named by the failing strict 16x8 conversion ("Quantization
# to 16x8-bit not yet supported for op"), which is why TFLITE_BUILTINS was added.
# unstable_float_ops: ops the converter leaves in float32 in some runs only (it is not
# deterministic for that model); manifest.json records the committed file's own set.
# litert_error: the converter output is invalid and LiteRT refuses it at prepare.
_REF_FACTS = {
    ("cnn_digits.tflite", "int8"): dict(float_ops={}, identical_to="int8_quantized_cnn.tflite"),
    ("cnn_digits.tflite", "int16x8"): dict(float_ops={}),
    ("mlp_large_fc.tflite", "int8"): dict(float_ops={}),
    ("mlp_large_fc.tflite", "int16x8"): dict(float_ops={}),
    ("fp16_weights_cnn.tflite", "int8"): dict(float_ops={}),
    ("fp16_weights_cnn.tflite", "int16x8"): dict(float_ops={}),
    ("ops_conv_pool.tflite", "int8"): dict(float_ops={"SQUARE": 1}),
    ("ops_conv_pool.tflite", "int16x8"): dict(float_ops={"SQRT": 1, "SQUARE": 1},
                                              strict_unsupported=["SQRT", "SQUARE"]),
    ("ops_activation.tflite", "int8"): dict(float_ops={"ELU": 1}),
    ("ops_activation.tflite", "int16x8"): dict(
        float_ops={"ELU": 1, "HARD_SWISH": 1, "L2_NORMALIZATION": 1, "LOG_SOFTMAX": 1, "PRELU": 1,
                   "RELU_N1_TO_1": 1},
        strict_unsupported=["ELU", "HARD_SWISH", "L2_NORMALIZATION", "LOG_SOFTMAX", "PRELU", "RELU_N1_TO_1"],
        mixed_op="ELU",
        litert_error="input->type != output->type (INT16 != FLOAT32)",
        defect="ELU reads the INT16 input tensor directly and writes FLOAT32 (the converter inserted no "
               "DEQUANTIZE before it, unlike for the other fallback ops)"),
    ("ops_shape.tflite", "int8"): dict(
        float_ops={"ADD": 1, "MUL": 2, "RESHAPE": 1, "SPLIT": 1, "SPLIT_V": 1, "STRIDED_SLICE": 4, "SUB": 1,
                   "SUM": 1, "TILE": 1, "TRANSPOSE": 1},
        # not deterministic: in some converter runs (different processes, same inputs)
        # UNPACK also stays float32; the file's own set is in manifest.json
        unstable_float_ops={"UNPACK": 1}),
    ("ops_shape.tflite", "int16x8"): dict(
        float_ops={"DEPTH_TO_SPACE": 1, "SPACE_TO_DEPTH": 1},
        strict_unsupported=["DEPTH_TO_SPACE", "SPACE_TO_DEPTH"],
        mixed_op="PADV2",
        litert_error="op_context.input->type != op_context.constant_values->type (INT16 != FLOAT32)",
        defect="PADV2 has an INT16 input but kept its FLOAT32 constant_values operand"),
    ("dynamic_batch_mlp.tflite", "int8"): dict(float_ops={}),
    ("dynamic_batch_mlp.tflite", "int16x8"): dict(float_ops={}),
}

# per float model: what the float source of the references is
REF_SOURCE_NOTES = {
    "cnn_digits.tflite": "the cnn_digits Keras model (retrained with the fixed seeds; its float conversion is "
                         "byte-identical to cnn_digits.tflite)",
    "mlp_large_fc.tflite": "the mlp_large_fc Keras model (retrained; float conversion byte-identical to "
                           "mlp_large_fc.tflite)",
    "fp16_weights_cnn.tflite": "the float32 Keras source of fp16_weights_cnn (retrained) with every weight and "
                               "bias rounded to float16, i.e. exactly the values fp16_weights_cnn.tflite stores "
                               "(its float conversion gives bit-identical outputs to fp16_weights_cnn.tflite)",
    "ops_conv_pool.tflite": "the same tf.function graph (float conversion byte-identical to ops_conv_pool.tflite)",
    "ops_activation.tflite": "the same tf.function graph, before the object-API SOFTMAX-beta fold: output "
                             "softmax_beta is MUL(x, 1.5) + SOFTMAX(beta=1) here, not SOFTMAX(beta=1.5) (float "
                             "conversion outputs within 3e-8 of ops_activation.tflite)",
    "ops_shape.tflite": "the same tf.function graph (float conversion byte-identical to ops_shape.tflite)",
    "dynamic_batch_mlp.tflite": "the small-MLP Keras model with free batch (retrained; float conversion "
                                "byte-identical to dynamic_batch_mlp.tflite); the references keep "
                                "shape_signature [-1,64]",
}


def _ref_entry(float_model, kind):
    facts = _REF_FACTS[(float_model, kind)]
    stem = TF_REF_SOURCES[float_model]
    strict = facts.get("strict_unsupported", [])
    ops = OPS_INT8 if kind == "int8" else (OPS_16X8_FALLBACK if strict else OPS_16X8)
    # invalid converter output lives in testdata/invalid/, out of the way of tests that
    # run every testdata/*.tflite in LiteRT
    folder = "invalid/" if facts.get("litert_error") else ""
    return {
        "file": folder + float_model.replace(".tflite", f".tf_{kind}.tflite"),
        "float_model": float_model,
        "kind": kind,
        "stem": stem,
        "calib": f"{stem}.calib.npy",
        "supported_ops": ops,
        "float_ops": facts["float_ops"],
        "unstable_float_ops": facts.get("unstable_float_ops", {}),
        "strict_unsupported": strict,
        "mixed_op": facts.get("mixed_op"),
        "litert_error": facts.get("litert_error"),
        "defect": facts.get("defect"),
        "identical_to": facts.get("identical_to"),
    }


TF_REFS = [_ref_entry(f, k) for f in TF_REF_SOURCES for k in ("int8", "int16x8")]


def allowed_float_ops(r):
    """The float-op sets the converter may produce for reference ``r``."""
    out = [dict(r["float_ops"])]
    if r["unstable_float_ops"]:
        out.append(dict(sorted({**r["float_ops"], **r["unstable_float_ops"]}.items())))
    return out


def refs_of(float_model):
    return [r for r in TF_REFS if r["float_model"] == float_model]


def ref_by_file(fname):
    return next((r for r in TF_REFS if r["file"] == fname), None)


def _fmt_ops(d):
    return ", ".join(f"{k}" + (f" x{v}" if v > 1 else "") for k, v in d.items())


def _ref_description(r):
    src = r["float_model"]
    kind = "int8" if r["kind"] == "int8" else "16x8: int16 activations, int8 weights"
    head = (f"{src} quantized by the TF converter ({kind}): Optimize.DEFAULT, representative_dataset = every "
            f"sample of {r['calib']} in file order, supported_ops=[{', '.join(r['supported_ops'])}], float32 "
            "interface (QUANTIZE in, DEQUANTIZE out)")
    if r["kind"] == "int8":
        if not r["float_ops"]:
            body = "fully int8 between the interface QUANTIZE/DEQUANTIZE (int8 activations, int8 weights per-axis " \
                   "for conv/FC, int32 biases)"
        else:
            body = ("TFLITE_BUILTINS_INT8 converts, yet the converter leaves these ops in float32 (QUANTIZE/"
                    f"DEQUANTIZE around them): {_fmt_ops(r['float_ops'])}")
            if r["unstable_float_ops"]:
                body += (f", and in some runs also {_fmt_ops(r['unstable_float_ops'])}: the converter is NOT "
                         "deterministic for this model (same inputs, different processes give different files; "
                         "manifest.json float_ops has this file's set)")
    else:
        body = "int16 activations (symmetric, zero point 0), int8 weights (per-axis for conv/FC), int64 biases"
        if r["strict_unsupported"]:
            body += (f"; the strict 16x8 conversion fails ('Quantization to 16x8-bit not yet supported for op') on "
                     f"{', '.join(r['strict_unsupported'])}, so TFLITE_BUILTINS was added and these ops stay float32: "
                     f"{_fmt_ops(r['float_ops'])}")
        else:
            body += "; no float fallback"
    if r["identical_to"]:
        body += f"; byte-identical to {r['identical_to']}"
    if r["litert_error"]:
        body += (f". CONVERTER DEFECT: {r['defect']}; LiteRT refuses the model at prepare "
                 f"('{r['litert_error']}'). Does NOT run in LiteRT; kept (in invalid/) as TF's actual 16x8 "
                 "output (quantization parameters of every other tensor)")
    return f"{head}; {body}. Float source: {REF_SOURCE_NOTES[src]}"


REF_MODELS = [(r["file"], r["stem"], r["litert_error"] is None, _ref_description(r)) for r in TF_REFS]


# ---------------------------------------------------------------------------
# quantization-aware training (issue #6)  (make_all.py --only qat; qat.py)
# ---------------------------------------------------------------------------
QAT_DATA = {
    "digits_qat": "digits as images, float32 [N,8,8,1] in [0,1] (load_digits / 16, the preprocessing the QAT "
                  "model was trained with); test = 360 held-out digits (the first 32 are the 32 digits of every "
                  "other digits test set, same order), calib = 64 digits of the QAT training pool; labels in "
                  "digits_qat.test_labels.npy",
}

QAT_MODELS = [
    ("qat_digits.float.tflite", "digits_qat", True,
     "tfmot quantize_model QAT CNN (conv1 8 / conv2 16 3x3 SAME ReLU, 2x2 max pool, conv3 16 ReLU, flatten, fc1 32 "
     "ReLU, logits 10; no softmax) converted WITHOUT optimizations: a float32 graph with 11 QUANTIZE->DEQUANTIZE "
     "pairs through UINT8 tensors (the FakeQuant nodes; no FAKE_QUANT op is left): 1 on the input (scale 1/255, "
     "zero point 0), 5 on the weights (float32 constants already on the int grid: w/scale is an integer in "
     "[-127,127]; zero point 128; per-channel on axis 0 for the 3 conv weights, per-tensor for the 2 FC weights, "
     "whose QUANTIZE/DEQUANTIZE output tensors the converter declares with shape []), 5 on the activations "
     "(per-tensor, asymmetric: conv1, conv2, conv3 (placed after the flatten RESHAPE), fc1, logits; the ReLU "
     "outputs' ranges still reach about -5 because tfmot's moving-average ranges start at [-6, 6] and training "
     "was short, so their zero points are about 100-125, not 0); biases plain float32. Output: logits [1,10]"),
    ("qat_digits.tf_int8.tflite", "digits_qat", True,
     "the same QAT Keras model converted by TF with Optimize.DEFAULT and no representative dataset: fully int8 "
     "(per-channel int8 conv weights, per-tensor int8 FC weights, int32 biases, int8 activations whose scales are "
     "the QAT ones and zero points the UINT8 ones minus 128), float32 interface (QUANTIZE in, DEQUANTIZE out)"),
    ("qat_digits.tf_int8_int8io.tflite", "digits_qat", True,
     "same conversion with inference_input_type/output_type=int8: int8 input and output, no QUANTIZE/DEQUANTIZE "
     "ops"),
]

# ---------------------------------------------------------------------------
# exporter idioms (issue #19)  (make_all.py --only idioms; idioms.py)
# ---------------------------------------------------------------------------
_TWIN = "sentinel-free twin of {} computing the same function: {}"
IDIOM_MODELS = [
    ("sentinel_pad_maxpool.tflite", "ops_conv_pool", True,
     "CONV_2D 3x3 (8 ch, seeded random weights, bias - 0.2 so values go negative), PADV2 (bottom/right 1) whose pad "
     "value is the lowest float -3.4028235e38, MAX_POOL_2D 3x3 stride 2 VALID, CONV_2D 1x1: a sentinel constant "
     "(issue #19)"),
    ("sentinel_pad_maxpool.twin.tflite", "ops_conv_pool", True,
     _TWIN.format("sentinel_pad_maxpool", "MAX_POOL_2D SAME, no PADV2")),
    ("sentinel_masked_attention.tflite", "lstm_seq", True,
     "causal self-attention over the 8 digit rows (FC 8->32 + RELU, q/k/v FCs 32x32, BATCH_MATMUL q k^T, MUL 1/sqrt(32), "
     "ADD of a constant [8,8] mask of 0 / -1e9 above the diagonal, SOFTMAX, BATCH_MATMUL with v, FC 32x32, "
     "FC 32->10); seeded random weights, q/k 4x larger so the scores spread over several units"),
    ("sentinel_masked_attention.twin.tflite", "lstm_seq", True,
     _TWIN.format("sentinel_masked_attention", "mask value -30 instead of -1e9 (e^-30 ~ 1e-13)")),
    ("sentinel_select_attention.tflite", "lstm_seq", True,
     "the same attention masked with SELECT_V2(causal BOOL constant, scores, scalar constant -inf; the converter "
     "wrote -FLT_MAX, an object-API rewrite put -inf back)"),
    ("sentinel_select_attention.twin.tflite", "lstm_seq", True,
     _TWIN.format("sentinel_select_attention", "-30 instead of -inf")),
    ("sentinel_clip.tflite", "mlp_large_fc", True,
     "FC 64->32, SUB 0.1, tf.clip_by_value(-FLT_MAX, FLT_MAX) = MINIMUM with 3.4028235e38 and MAXIMUM with "
     "-3.4028235e38, FC 32->10; seeded random weights"),
    ("sentinel_clip.twin.tflite", "mlp_large_fc", True,
     _TWIN.format("sentinel_clip", "no clip")),
    ("singular_frontend.tflite", "mlp_large_fc", True,
     "audio-style float front end on digits (issue #15 item 2): output 'logits' = FC(LOG(SQUARE(FC 64->32) + 1e-6)), "
     "output 'ratio' = FC 64->16 / (ABS(FC 64->16) + 1e-3): the operands of LOG and of the DIV divisor come "
     "within an int8 step of 0; seeded random weights"),
    ("composite_attention.tflite", "lstm_seq", True,
     "sentinel_masked_attention whose attention core (BATCH_MATMUL, MUL, ADD -1e9 mask, SOFTMAX, the v projection "
     "FC, BATCH_MATMUL, output projection FC 32x32) was moved by an object-API rewrite into a decomposition "
     "subgraph (subgraph 1) called by one STABLEHLO_COMPOSITE op named odml.attention_block (version 1, "
     "FlexBuffer attributes {scale}); not named odml.scaled_dot_product_attention because XNNPACK replaces that "
     "name by its fused SDPA, which needs 4-D operands; outputs identical to sentinel_masked_attention"),
]
# custom operators LiteRT's XNNPACK path runs (issue #12)  (make_all.py --only custom_ops;
# custom_ops.py).  They run with the XNNPACK delegate only (runner.XNNPACK_MODELS).
# ---------------------------------------------------------------------------
CUSTOM_OPS_MODELS = [
    ("custom_deconv.tflite", "ops_conv_pool", True,
     "16x16 photo segmenter: CONV_2D (stride 2, RELU) -> CUSTOM Convolution2DTransposeBias (3x3, stride 2, SAME, "
     "8 channels; custom_options = raw TfLiteTransposeConvParams, 12 bytes: padding 1, stride_w 2, stride_h 2) "
     "-> CONV_2D 1x1 -> LOGISTIC (object-API rewrite of a converted TRANSPOSE_CONV with bias; trained 40 epochs "
     "on the calibration crops to mark pixels brighter than the crop mean). Runs in LiteRT with XNNPACK only"),
    ("custom_argmax_unpool.tflite", "ops_conv_pool", True,
     "16x16 photo segmenter: CONV_2D -> CUSTOM MaxPoolingWithArgmax2D (2x2 VALID; outputs values and float32 "
     "indices 'argmax_indices') -> CONV_2D -> CUSTOM MaxUnpooling2D(values, indices) -> CONV_2D 1x1 -> LOGISTIC; "
     "custom_options = raw TfLitePoolParams, 40 bytes (padding 2, strides 2, filter 2x2, activation 0, computed "
     "padding 0); rewritten from MAX_POOL_2D and RESIZE_NEAREST_NEIGHBOR (trained with UpSampling2D, so the "
     "unpooled model's mask is rougher). Runs in LiteRT with XNNPACK only"),
]
XNNPACK_MODELS = {f for f, *_ in CUSTOM_OPS_MODELS}
# streaming model with resource-variable state (issue #20)  (make_all.py --only streaming;
# streaming.py)
# ---------------------------------------------------------------------------
STREAMING_DATA = {
    "streaming_kws": "digits read as streams of 8 frames (their rows, 8 features in [0,1]), digit after digit: "
                     "calib = the 64 calibration digits (512 frames [512,8]), test = the 32 test digits (256 frames "
                     "[256,8], labels of every 8th frame in digits.test_labels.npy); one frame per invocation, the "
                     "state flowing from frame to frame",
}

STREAMING_MODELS = [
    ("streaming_kws.tflite", "streaming_kws", True,
     "streaming causal conv keyword-spotter-like net (tf.Module, one frame [1,8] per call; trained as a Keras "
     "model on whole digits): the 2 previous input frames of each of its 2 convs live in tf.Variables, converted "
     "with resource variables: main subgraph VAR_HANDLE x2, READ_VARIABLE x2, CONCATENATION, CONV_2D (fused "
     "RELU), STRIDED_SLICE, ASSIGN_VARIABLE x2, FULLY_CONNECTED -> logits [1,10]; subgraph 1 (run by "
     "CALL_ONCE) assigns the zero initial state [1,2,1,8] and [1,2,1,16]. Streamed over consecutive digits, "
     "every 8th output is the whole-digit logits. Expected outputs: the first 4 test frames as one stream"),
    ("streaming_kws.tf_int8.tflite", "streaming_kws", True,
     "streaming_kws quantized by the TF converter (Optimize.DEFAULT, TFLITE_BUILTINS_INT8, representative "
     "dataset = the 512 calibration frames in order, one per step, _experimental_variable_quantization on): "
     "int8 state variables (READ_VARIABLE/ASSIGN_VARIABLE on INT8 tensors with the parameters of the "
     "concatenation they feed, int8 initial values in the CALL_ONCE subgraph), int8 conv/FC, float interface"),
]
# weight modes on real-world structures (issue #11)  (make_all.py --only weights;
# weight_models.py).  They reuse existing data stems.
# ---------------------------------------------------------------------------
WEIGHT_MODELS = [
    ("sparse_fp16_cnn.tflite", "cnn_digits", True,
     "digits CNN (conv1 8, conv2 32, depthwise x4, pool, conv3 32, conv4 32 stride 2, fc1 128, probs 10) whose "
     "kernels are magnitude-pruned to 60% zeros and fine-tuned with the masks, converted with "
     "Optimize.DEFAULT + EXPERIMENTAL_SPARSITY and supported_types=[float16]: every kernel is a sparse FLOAT16 "
     "constant -> DENSIFY -> DEQUANTIZE -> CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (biases dense FLOAT16 "
     "-> DEQUANTIZE); all kernels but conv1's have >= 1024 weights"),
    ("shared_weights_cnn.tflite", "cnn_digits", True,
     "digits CNN calling one Conv2D layer (24->24 3x3, 5184 weights) twice and one Dense layer (64x64) twice: "
     "one kernel constant read by two CONV_2D, another by two FULLY_CONNECTED, their biases shared likewise"),
    ("tied_embedding.tflite", "embedding_lookup", True,
     "tied embedding (tf.function): ids [1,64] -> GATHER(E [17,64]) -> MEAN -> FC(64) -> TANH -> "
     "FC(h, E) logits [1,17]; E is one constant read by GATHER (no hybrid kernel) and FULLY_CONNECTED "
     "(hybrid kernel); trained to predict the id histogram"),
    ("lstm_gru.tflite", "lstm_seq", True,
     "Keras LSTM(48, return_sequences) -> GRU(32) -> Dense(10) softmax over 8 digit rows: "
     "UNIDIRECTIONAL_SEQUENCE_LSTM with 8 gate weights (4 x [48,8], 4 x [48,48]) and the GRU lowered to a WHILE "
     "loop whose body computes its gates with FULLY_CONNECTED ([96,48] and [96,32] constants in the body)"),
]
CLASSIFIERS |= {"sparse_fp16_cnn.tflite", "shared_weights_cnn.tflite", "lstm_gru.tflite"}

# ---------------------------------------------------------------------------
# INT4 on every kind of weight (issue #21)  (make_all.py --only int4; int4_models.py)
# ---------------------------------------------------------------------------
INT4_MODELS = [
    ("tiny_transformer.tflite", "lstm_seq", True,
     "one-block transformer encoder over the 8 rows of a digit: Dense(32) token projection + learned "
     "positions, 2-head self-attention (FULLY_CONNECTED projections, BATCH_MATMUL of activations), "
     "residual + LayerNormalization (MEAN/SQUARED_DIFFERENCE/RSQRT), FFN Dense(64, GELU) -> Dense(32), "
     "residual + LayerNormalization, MEAN over tokens, Dense(10) softmax; 9.4k weights"),
]
CLASSIFIERS |= {"tiny_transformer.tflite"}

# ---------------------------------------------------------------------------
# Blockwise INT4 FULLY_CONNECTED on LiteRT's builtin kernels (issue #21)  (make_all.py
# --only int4_blockwise; int4_blockwise.py)
# ---------------------------------------------------------------------------
INT4_BLOCKWISE_MODELS = [
    ("fc_fused_acts.tflite", "mlp_large_fc", True,
     "MLP over flattened digits with fused activations: Dense(64, relu) -> Dense(32, relu6) -> Dense(32, tanh; "
     "TANH written as its own op) -> Dense(3, relu) -> Dense(10) softmax; the 3-unit layer is too narrow for "
     "LiteRT's blockwise INT4 kernel (>= 4 output units); 7.3k weights"),
]
CLASSIFIERS |= {"fc_fused_acts.tflite"}

# ---------------------------------------------------------------------------
# Recurrent classifiers for full-integer LSTM / GRU (issue #13)  (make_all.py --only
# recurrent; recurrent.py).  Trained on the digits_qat split: its 360 held-out digits.
# ---------------------------------------------------------------------------
RECURRENT_MODELS = [
    ("lstm_digits.tflite", "digits_qat", True,
     "Keras LSTM(32) -> Dense(10) softmax over the 8 rows of a digit (input [1,8,8,1] reshaped to [1,8,8]): "
     "RESHAPE, UNIDIRECTIONAL_SEQUENCE_LSTM (gate weights 4 x [32,8], 4 x [32,32]), STRIDED_SLICE of the last "
     "step, FULLY_CONNECTED, SOFTMAX; trained on the digits_qat split (360 held-out digits)"),
    ("gru_digits.tflite", "digits_qat", True,
     "Keras GRU(32) -> Dense(10) softmax over the 8 rows of a digit (input [1,8,8,1] reshaped): the GRU lowered "
     "to a WHILE loop (cond with LESS, body computing the gates with FULLY_CONNECTED, LOGISTIC, TANH, MUL); "
     "trained on the digits_qat split"),
    ("lstm_gru_digits.tflite", "digits_qat", True,
     "Keras LSTM(32, return_sequences) -> GRU(32) -> Dense(10) softmax over the 8 rows of a digit (input "
     "[1,8,8,1] reshaped): UNIDIRECTIONAL_SEQUENCE_LSTM feeding a GRU lowered to a WHILE loop; trained on the "
     "digits_qat split"),
]
CLASSIFIERS |= {f for f, *_ in RECURRENT_MODELS}

# Keras Bidirectional(LSTM) (issue #13)  (make_all.py --only bilstm; bilstm.py).
BILSTM_MODELS = [
    ("bilstm_digits.tflite", "digits_qat", True,
     "Keras Bidirectional(LSTM(16)) -> Dense(10) softmax over the 8 rows of a digit (input [1,8,8,1] reshaped): "
     "the converter writes two UNIDIRECTIONAL_SEQUENCE_LSTM (the backward one behind REVERSE_V2), not "
     "BIDIRECTIONAL_SEQUENCE_LSTM; trained on the digits_qat split"),
]
CLASSIFIERS |= {f for f, *_ in BILSTM_MODELS}

# file -> part of make_all.py that produces it
PARTS = {f: "base" for f, *_ in MODELS}
PARTS.update({f: "idioms" for f, *_ in IDIOM_MODELS})
PARTS.update({f: "quant_refs" for f, *_ in REF_MODELS})
PARTS.update({f: "qat" for f, *_ in QAT_MODELS})
PARTS.update({f: "custom_ops" for f, *_ in CUSTOM_OPS_MODELS})
PARTS.update({f: "streaming" for f, *_ in STREAMING_MODELS})
PARTS.update({f: "weights" for f, *_ in WEIGHT_MODELS})
PARTS.update({f: "int4" for f, *_ in INT4_MODELS})
PARTS.update({f: "int4_blockwise" for f, *_ in INT4_BLOCKWISE_MODELS})
PARTS.update({f: "recurrent" for f, *_ in RECURRENT_MODELS})
PARTS.update({f: "bilstm" for f, *_ in BILSTM_MODELS})
DATA_PARTS = {stem: "base" for stem in DATA}
DATA_PARTS.update({stem: "qat" for stem in QAT_DATA})
DATA_PARTS.update({stem: "streaming" for stem in STREAMING_DATA})

MODELS = (MODELS + REF_MODELS + QAT_MODELS + IDIOM_MODELS + CUSTOM_OPS_MODELS + STREAMING_MODELS + WEIGHT_MODELS
          + INT4_MODELS + INT4_BLOCKWISE_MODELS + RECURRENT_MODELS + BILSTM_MODELS)
DATA = {**DATA, **QAT_DATA, **STREAMING_DATA}

CLASSIFIERS |= {r["file"] for r in TF_REFS if r["float_model"] in CLASSIFIERS}
CLASSIFIERS |= {f for f, *_ in QAT_MODELS}


def test_labels(stem):
    """Labels file of a classifier's test data stem."""
    return "digits_qat.test_labels.npy" if stem == "digits_qat" else "digits.test_labels.npy"


def manifest_extra(fname, float_ops_of):
    """Extra manifest.json fields of a model (TF reference flags, QAT provenance).

    ``float_ops_of(file)`` returns the {op: count} of float32 ops of a reference file as
    written (it can differ from run to run where the converter is not deterministic).
    """
    extra = {}
    refs = refs_of(fname)
    for r in refs:
        fo = float_ops_of(r["file"])
        assert fo in allowed_float_ops(r), (r["file"], fo)
        extra[f"tf_{r['kind']}"] = {
            "file": r["file"], "calib": r["calib"], "supported_ops": r["supported_ops"],
            "float_fallback": bool(fo), "float_ops": fo,
            "runs_in_litert": r["litert_error"] is None}
        if r["unstable_float_ops"]:
            extra[f"tf_{r['kind']}"]["converter_nondeterministic"] = True
    if fname == "cnn_digits.tflite":
        extra["tf_int8"]["identical_to"] = "int8_quantized_cnn.tflite"
    r = ref_by_file(fname)
    if r:
        fo = float_ops_of(fname)
        extra["reference_of"] = r["float_model"]
        extra["tf_conversion"] = {
            "optimizations": ["DEFAULT"],
            "representative_dataset": r["calib"],
            "representative_samples": "all, in file order, one [1,...] sample per step",
            "supported_ops": r["supported_ops"],
            "float_fallback": bool(fo),
            "float_ops": fo,
            "strict_16x8_unsupported_ops": r["strict_unsupported"],
            "inference_input_type": "float32", "inference_output_type": "float32",
        }
        if r["identical_to"]:
            extra["tf_conversion"]["identical_to"] = r["identical_to"]
        if r["unstable_float_ops"]:
            extra["tf_conversion"]["converter_nondeterministic"] = (
                f"in some runs the converter also leaves {sorted(r['unstable_float_ops'])} in float32")
        if r["litert_error"]:
            extra["converter_defect"] = {"op": r["mixed_op"], "what": r["defect"],
                                         "litert_error": r["litert_error"]}
    if fname in XNNPACK_MODELS:
        # LiteRT runs their custom ops through the XNNPACK delegate only: the builtin
        # resolvers report an unresolved custom op; expected outputs are XNNPACK's
        extra["litert_kernels"] = "xnnpack"
    if fname in {f for f, *_ in QAT_MODELS}:
        conv = {"qat_digits.float.tflite": {"optimizations": [], "inference_input_type": "float32",
                                            "inference_output_type": "float32"},
                "qat_digits.tf_int8.tflite": {"optimizations": ["DEFAULT"], "representative_dataset": None,
                                              "inference_input_type": "float32", "inference_output_type": "float32"},
                "qat_digits.tf_int8_int8io.tflite": {"optimizations": ["DEFAULT"], "representative_dataset": None,
                                                     "inference_input_type": "int8",
                                                     "inference_output_type": "int8"}}[fname]
        extra["tf_conversion"] = {"source": "tfmot.quantization.keras.quantize_model (QAT)", **conv}
        extra["qat_family"] = [f for f, *_ in QAT_MODELS]
    return extra
