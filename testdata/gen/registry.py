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
