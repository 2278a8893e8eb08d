//! Post-training quantization algorithms for the weights of the full-integer modes
//! (int8, int16x8; issue #15 item 3). Each is behind an option and hooked into the
//! constants step of the integer engine (`integer/constants.rs`) in a few lines; what
//! each did is recorded per layer in the report ([`super::report::PtqLayer`]).
//!
//! - **MSE weight clipping** ([`clipping`], `--weight-clipping mse`): per output
//!   channel, the clip ratio whose int8 scale gives the lowest squared rounding error
//!   of the weight, searched on the grid of the INT4 mse rounding
//!   ([`super::rounding::mse_scales`], ratios 1.00 … 0.50). Ratio 1 (the min/max scale)
//!   is a candidate and wins ties, so a channel's weight MSE never exceeds min/max's.
//! - **Empirical bias correction** ([`bias`], `--bias-correction`): the quantized
//!   weights add `ΔW·x` to every output; its mean over the calibration data,
//!   `ΔW·E[x]`, is subtracted from the bias of each output channel. `E[x]` is measured
//!   once per layer on the float model with the reference interpreter: the mean of each
//!   input feature (FULLY_CONNECTED) or the mean im2col patch (CONV_2D,
//!   DEPTHWISE_CONV_2D: per kernel tap and input channel, with the zeros of the padding
//!   counted where the kernel overhangs), so the correction is exact for the float
//!   model's input distribution. Operators without a bias tensor are left as they are
//!   (reported).

pub mod bias;
pub mod clipping;

pub use bias::InputMeans;
pub use clipping::WeightClipping;

/// `--weight-clipping` when none is given.
pub const DEFAULT_CLIPPING: WeightClipping = WeightClipping::Minmax;

/// `--bias-correction` when none is given (it also needs calibration samples).
pub const DEFAULT_BIAS_CORRECTION: bool = false;
