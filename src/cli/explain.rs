//! The command line's words for the library's typed option errors: flag names and
//! fixes. The library ([`OptionError`]) says what is wrong without naming flags; this
//! is the one place that maps each variant to the text the CLI prints.

use tflquant::Error;
use tflquant::quant::OptionError;

/// An error as the command line reports it: option errors become usage errors
/// naming flags; every other error is unchanged.
pub(crate) fn for_cli(e: Error) -> Error {
    match e {
        Error::Option(o) => Error::Usage(explain_option_error(&o)),
        e => e,
    }
}

/// The CLI's text for an option error, naming the flags involved and how to fix it.
pub(crate) fn explain_option_error(e: &OptionError) -> String {
    match e {
        OptionError::BlockSize { n, .. } => format!(
            "--block-size {n}: blockwise quantization takes 32, 64, 128 or 256 and only \
             applies to --mode weight-int4"
        ),
        OptionError::QatWithoutFakeQuant => {
            "--mode qat: the model has no QUANTIZE→DEQUANTIZE pairs, FAKE_QUANT operators \
             or int8 weights behind DEQUANTIZE; quantize a float model with --mode int8 \
             --calibration DATA instead"
                .into()
        }
        OptionError::MissingRanges { mode } => {
            format!("--mode {mode} needs calibration data: pass --calibration DATA")
        }
        OptionError::InvalidSelector { text, error } => format!(
            "{text:?} is neither S:I (subgraph:operator, as --dump-plan numbers them) \
             nor a valid regular expression: {error}"
        ),
        OptionError::KeepFloatMatchesNothing { selector } => format!(
            "--keep-float {selector}: no operator matches (give S:I as --dump-plan numbers \
             operators, an operator type such as CONV_2D, or a regular expression \
             matching a whole output tensor name)"
        ),
        OptionError::Int16MatchesNothing { selector } => format!(
            "--int16 {selector}: no operator matches (give S:I as --dump-plan numbers \
             operators, an operator type such as CONV_2D, or a regular expression \
             matching a whole output tensor name)"
        ),
        OptionError::GptqWithoutSamples => "gptq rounding needs calibration samples".into(),
        OptionError::TargetSqnrMode { mode } => {
            format!("--target-sqnr applies to --mode int8 and int16x8, not {mode}")
        }
    }
}
