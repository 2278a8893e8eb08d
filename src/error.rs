//! Errors of the library, one enum for all of it.
//!
//! Every variant says *where* (a file path, or a location such as
//! `subgraph 0, operator 3 (CONV_2D), input 1`) and *what*. The CLI maps each
//! variant to an exit code with [`Error::exit_code`]: invalid input or usage is
//! `2`, a failure while doing the work (I/O, an internal invariant) is `1`.
//!
//! Option errors are typed ([`OptionError`], also `quant::OptionError`) and name no
//! command-line flag; `cli::explain_option_error` (and the Python package) turn them
//! into flag (keyword) names and fixes. A graph that fails verification after a
//! quantization pass is [`Error::InvalidAfterPass`], keeping the verifier's error as
//! its source.

use std::{fmt, path::PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed while working (disk full, permissions of the
    /// output directory, ...).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An input file named on the command line cannot be opened (missing, a directory,
    /// no permission): a usage error.
    #[error("cannot open {path}: {source}")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a TFLite flatbuffer at all (empty, wrong identifier, ...).
    #[error("not a TFLite model: {0}")]
    NotTflite(String),

    /// The flatbuffer is damaged or hostile: an offset points outside the file,
    /// an index is out of range, a count exceeds a limit, an enum value is unknown.
    #[error("malformed model: {at}: {what}")]
    Malformed { at: Loc, what: String },

    /// The model is well formed but uses something this operation cannot handle.
    #[error("unsupported: {at}: {what}")]
    Unsupported { at: Loc, what: String },

    /// A command-line argument or option value is wrong; the text says how to fix it.
    #[error("{0}")]
    Usage(String),

    /// A quantization option does not fit the model or the other options (typed;
    /// `cli::explain_option_error` gives the command line's text with flag names).
    #[error(transparent)]
    Option(#[from] OptionError),

    /// Input data (calibration samples, ranges, ...) does not fit the model.
    #[error("{0}")]
    Data(String),

    /// The model's flatbuffer (tables and inline data) would exceed the 2 GiB a
    /// flatbuffer can address; LiteRT refuses such a file, so none is written.
    #[error(
        "the model's flatbuffer would be {bytes} bytes, above the {} bytes a flatbuffer can \
         hold (LiteRT refuses such a file: \"not a valid Flatbuffer buffer\"); {}",
        crate::fb::FLATBUFFER_MAX_BYTES,
        if *offset_layout {
            "its tables and metadata alone are too large"
        } else {
            "store tensor data after the flatbuffer (the offset buffer layout)"
        }
    )]
    FlatbufferTooLarge { bytes: u64, offset_layout: bool },

    /// A bug: an internal invariant did not hold. Reported, never a panic.
    #[error("internal error: {0}")]
    Internal(String),

    /// A bug: the graph failed verification after a quantization pass; `source` is
    /// what the verifier found.
    #[error("internal error: the graph is invalid after pass {pass}: {source}")]
    InvalidAfterPass {
        pass: &'static str,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Exit code for the command line: 2 for invalid input/usage, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. } | Error::Internal(_) | Error::InvalidAfterPass { .. } => 1,
            Error::Input { .. }
            | Error::NotTflite(_)
            | Error::Malformed { .. }
            | Error::Unsupported { .. }
            | Error::Usage(_)
            | Error::Option(_)
            | Error::Data(_)
            | Error::FlatbufferTooLarge { .. } => 2,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Input {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(at: impl Into<Loc>, what: impl fmt::Display) -> Self {
        Error::Malformed {
            at: at.into(),
            what: what.to_string(),
        }
    }

    #[allow(dead_code)] // used by the quantizer
    pub(crate) fn unsupported(at: impl Into<Loc>, what: impl fmt::Display) -> Self {
        Error::Unsupported {
            at: at.into(),
            what: what.to_string(),
        }
    }
}

/// A quantization option that does not fit the model or the other options, in the
/// library's terms (modes, block sizes, selectors; no flag names). Re-exported as
/// `quant::OptionError`; `cli::explain_option_error` gives the command line's text
/// with flag names and fixes, the Python package its keyword names. (It lives here,
/// not in `quant/`, so that `error` depends on no other module.)
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    /// Blockwise quantization was asked with an unsupported block size, or in a mode
    /// other than weight-int4.
    #[error(
        "block size {n}: blockwise quantization takes 32, 64, 128 or 256 and only applies \
         to the weight-int4 mode (mode {mode})"
    )]
    BlockSize { n: usize, mode: &'static str },

    /// The QAT mode was asked for a model with no fake-quantization points.
    #[error(
        "mode qat: the model has no QUANTIZE→DEQUANTIZE pairs, FAKE_QUANT operators or \
         int8 weights behind DEQUANTIZE; quantize a float model in the int8 mode with \
         calibration data instead"
    )]
    QatWithoutFakeQuant,

    /// A full-integer mode was asked without activation ranges.
    #[error("mode {mode} needs calibration data (activation ranges)")]
    MissingRanges { mode: &'static str },

    /// An operator selector is neither `S:I` nor a valid regular expression.
    #[error("{text:?} is neither S:I (subgraph:operator) nor a valid regular expression: {error}")]
    InvalidSelector { text: String, error: regex::Error },

    /// A selector of operators to keep float matches no operator of the model.
    #[error(
        "keep-float selector {selector}: no operator matches (give S:I, an operator type \
         such as CONV_2D, or a regular expression matching a whole output tensor name)"
    )]
    KeepFloatMatchesNothing { selector: String },

    /// A selector of operators to run in 16x8 matches no operator of the model.
    #[error(
        "int16 selector {selector}: no operator matches (give S:I, an operator type such \
         as CONV_2D, or a regular expression matching a whole output tensor name)"
    )]
    Int16MatchesNothing { selector: String },

    /// GPTQ rounding was asked without calibration samples.
    #[error("gptq rounding needs calibration samples")]
    GptqWithoutSamples,

    /// The SQNR-target search was asked in a mode it does not search.
    #[error("the SQNR-target search applies to modes int8 and int16x8, not {mode}")]
    TargetSqnrMode { mode: &'static str },
}

/// A location inside a model, rendered like `subgraph 0, tensor 12 "dense/kernel"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loc(pub String);

impl Loc {
    /// The model as a whole.
    pub fn model() -> Self {
        Loc("model".into())
    }
    pub fn subgraph(sg: usize) -> Self {
        Loc(format!("subgraph {sg}"))
    }
    pub fn tensor(sg: usize, t: usize) -> Self {
        Loc(format!("subgraph {sg}, tensor {t}"))
    }
    pub fn op(sg: usize, op: usize) -> Self {
        Loc(format!("subgraph {sg}, operator {op}"))
    }
    /// Appends a further step: `Loc::op(0, 3).then("input 1")`.
    pub fn then(&self, more: impl fmt::Display) -> Self {
        Loc(format!("{}, {more}", self.0))
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Loc {
    fn from(s: &str) -> Self {
        Loc(s.to_string())
    }
}

impl From<String> for Loc {
    fn from(s: String) -> Self {
        Loc(s)
    }
}
