//! Hand-made and searched precision plans for the full-integer modes (issue #15):
//! which operators are forced to stay float, and which run in 16x8 inside an int8
//! model ([`Int16`], applied by the engine's `integer/widths.rs`).
//!
//! An [`OpSelector`] names operators the way a user sees them in `--dump-plan`:
//! `S:I` (operator I of subgraph S, indices of the graph the integer engine plans,
//! i.e. after FLOAT16/sparse weight encodings are folded), or a regular expression
//! that must match the whole operator type (`CONV_2D`, `CUSTOM(Name)`) or the whole
//! name of one of its output tensors. [`apply_keep_float`] is the one hook the engine
//! calls after planning fates: every selected operator that would be quantized stays
//! float, with the reason. The search's record lives in the report
//! ([`super::report::MixedPrecision`]).

use regex::Regex;

use crate::error::{Error, Result};
use crate::ir::Model;

use super::OptionError;
use super::integer::Fate;
use super::report::FloatReason;

/// Which operators a `--keep-float` entry (or the search) selects.
#[derive(Debug, Clone)]
pub enum OpSelector {
    /// Operator `operator` of subgraph `subgraph`.
    Index { subgraph: usize, operator: usize },
    /// Operators whose type or one of whose output tensor names the expression matches
    /// entirely.
    Pattern(Regex),
}

impl OpSelector {
    /// Parses `S:I` or a regular expression (anchored at both ends).
    pub fn parse(text: &str) -> Result<OpSelector> {
        if let Some((s, i)) = text.split_once(':')
            && let (Ok(subgraph), Ok(operator)) = (s.parse::<usize>(), i.parse::<usize>())
        {
            return Ok(OpSelector::Index { subgraph, operator });
        }
        Regex::new(&format!("^(?:{text})$"))
            .map(OpSelector::Pattern)
            .map_err(|error| {
                Error::Option(OptionError::InvalidSelector {
                    text: text.to_string(),
                    error,
                })
            })
    }

    /// Does this select operator `oi` of subgraph `si`?
    pub fn matches(&self, model: &Model, si: usize, oi: usize) -> bool {
        match self {
            OpSelector::Index { subgraph, operator } => *subgraph == si && *operator == oi,
            OpSelector::Pattern(re) => {
                let sg = &model.subgraphs[si];
                let op = &sg.operators[oi];
                re.is_match(&model.op_display_name(op))
                    || op
                        .outputs
                        .iter()
                        .filter_map(|&t| usize::try_from(t).ok())
                        .filter_map(|t| sg.tensors.get(t))
                        .any(|t| re.is_match(&t.name))
            }
        }
    }
}

impl std::fmt::Display for OpSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpSelector::Index { subgraph, operator } => write!(f, "{subgraph}:{operator}"),
            OpSelector::Pattern(re) => {
                let s = re.as_str();
                let inner = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                f.write_str(inner)
            }
        }
    }
}

/// Who asked for an operator to stay float.
#[derive(Debug, Clone)]
pub enum KeepFloatBy {
    /// The user (`--keep-float`): a selector that matches nothing is an error.
    User,
    /// The `--target-sqnr` search, with the operator's measured sensitivity.
    Search { sensitivity_db: Option<f64> },
    /// `--target-sqnr`: the operator computes (part of) the real inputs of a comparison
    /// (`decision`, e.g. `0:2 GREATER`), whose result quantization error can flip on
    /// unseen data by an amount no SQNR bounds.
    Decision { decision: String },
}

/// One forced-float entry of [`super::Options::keep_float`].
#[derive(Debug, Clone)]
pub struct KeepFloat {
    pub select: OpSelector,
    pub by: KeepFloatBy,
}

impl KeepFloat {
    /// A user's `--keep-float` entry.
    pub fn user(select: OpSelector) -> KeepFloat {
        KeepFloat {
            select,
            by: KeepFloatBy::User,
        }
    }

    fn reason(&self) -> String {
        match &self.by {
            KeepFloatBy::User => format!("kept float by --keep-float {}", self.select),
            KeepFloatBy::Search { sensitivity_db } => format!(
                "kept float by --target-sqnr (sensitivity: own-error SQNR {} in the all-integer model)",
                render_sensitivity(*sensitivity_db)
            ),
            KeepFloatBy::Decision { decision } => format!(
                "kept float by --target-sqnr: computes the real inputs of {decision} (a \
                 comparison or step function), whose result quantization could flip on \
                 unseen data"
            ),
        }
    }
}

/// The hook of the integer engine: every operator selected by an entry of `keep` that
/// would be quantized stays float with the entry's reason. A user's selector that
/// matches no operator at all is an error (a typo would otherwise pass silently).
pub fn apply_keep_float(model: &Model, keep: &[KeepFloat], fates: &mut [Vec<Fate>]) -> Result<()> {
    for k in keep {
        let mut matched = false;
        for (si, sg) in model.subgraphs.iter().enumerate() {
            for oi in 0..sg.operators.len() {
                if !k.select.matches(model, si, oi) {
                    continue;
                }
                matched = true;
                if fates[si][oi] == Fate::Quantized {
                    fates[si][oi] = Fate::Float {
                        reason: FloatReason::Requested { why: k.reason() },
                    };
                }
            }
        }
        if !matched && matches!(k.by, KeepFloatBy::User) {
            return Err(OptionError::KeepFloatMatchesNothing {
                selector: k.select.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// One entry of [`super::Options::int16`]: operators that run in 16x8 (int16
/// activations, int8 weights, int64 biases) inside an int8 model.
#[derive(Debug, Clone)]
pub struct Int16 {
    pub select: OpSelector,
    /// `User` (`--int16`: a selector that matches nothing is an error) or `Search`.
    pub by: KeepFloatBy,
}

impl Int16 {
    /// A user's `--int16` entry.
    pub fn user(select: OpSelector) -> Int16 {
        Int16 {
            select,
            by: KeepFloatBy::User,
        }
    }

    /// Why the operator runs in 16x8 (report).
    pub fn reason(&self) -> String {
        match &self.by {
            KeepFloatBy::Search { sensitivity_db } => format!(
                "int16x8 by --target-sqnr (sensitivity: own-error SQNR {} in the all-integer model)",
                render_sensitivity(*sensitivity_db)
            ),
            _ => format!("int16x8 by --int16 {}", self.select),
        }
    }

    /// The error for a user's selector that matches no operator.
    pub fn check_matched(&self, matched: bool) -> Result<()> {
        if !matched && matches!(self.by, KeepFloatBy::User) {
            return Err(OptionError::Int16MatchesNothing {
                selector: self.select.to_string(),
            }
            .into());
        }
        Ok(())
    }
}

/// A search sensitivity for a reason: `41.2 dB`, `∞ (adds no error)`, `NaN`, `n/a`.
fn render_sensitivity(db: Option<f64>) -> String {
    match db {
        None => "n/a".into(),
        Some(d) if d == f64::INFINITY => "∞ (adds no error)".into(),
        Some(d) => format!("{d:.1} dB"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_pattern() {
        assert!(matches!(
            OpSelector::parse("0:12").unwrap(),
            OpSelector::Index {
                subgraph: 0,
                operator: 12
            }
        ));
        let p = OpSelector::parse("CONV_.*").unwrap();
        assert_eq!(p.to_string(), "CONV_.*");
        let OpSelector::Pattern(re) = p else {
            panic!("pattern expected")
        };
        assert!(re.is_match("CONV_2D"));
        assert!(!re.is_match("DEPTHWISE_CONV_2D"), "anchored at the start");
        assert!(OpSelector::parse("(").is_err());
    }
}
