//! State that outlives one invocation, and when it goes back to the start.
//!
//! A model keeps state between invocations in two ways, both carried over by LiteRT from
//! one `Invoke` to the next:
//!
//! * **resource variables**: `VAR_HANDLE` names a variable by (container, shared_name);
//!   `ASSIGN_VARIABLE` creates it on first assignment (type and shape from the value) and
//!   overwrites it; `READ_VARIABLE` hands out its current value. Streaming models (keyword
//!   spotters, streaming audio) create them in a `CALL_ONCE` initialisation subgraph, which
//!   runs once per interpreter lifetime;
//! * **variable tensors** (the `is_variable` flag, e.g. the h/c state of a converted LSTM),
//!   updated in place by the op that reads them.
//!
//! [`ResetState`] says when that state goes back to its initial value (resource variables
//! gone, init subgraphs not yet run, variable tensors at their initial data: what a fresh
//! LiteRT interpreter has); [`Schedule`] applies it sample by sample, and is shared by the
//! interpreter and the LiteRT runner of `compare` so both reset at the same samples.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::fb::{BuiltinOperator as B, BuiltinOptions};
use crate::ir::Model;

/// When state is reset to its initial value, counted in invocations (samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResetState {
    /// [`ResetState::Never`] for models with resource variables (streaming models: the
    /// samples of a data file are one stream), [`ResetState::Every`] otherwise (a converted
    /// Keras LSTM starts every sequence from its initial state).
    #[default]
    Auto,
    /// Before every invocation: each sample is independent.
    Every,
    /// Never: state flows from one invocation to the next, as in the runtime.
    Never,
    /// Before invocations 0, N, 2N, … (e.g. N frames per utterance).
    EveryN(NonZeroUsize),
}

impl ResetState {
    /// `Auto` decided for `model` (the other policies are returned as they are).
    pub fn resolve(self, model: &Model) -> ResetState {
        match self {
            ResetState::Auto if has_resource_variables(model) => ResetState::Never,
            ResetState::Auto => ResetState::Every,
            other => other,
        }
    }
}

impl fmt::Display for ResetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetState::Auto => f.write_str("auto"),
            ResetState::Every => f.write_str("every"),
            ResetState::Never => f.write_str("never"),
            ResetState::EveryN(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for ResetState {
    type Err = Error;
    fn from_str(s: &str) -> Result<ResetState> {
        Ok(match s {
            "auto" => ResetState::Auto,
            "every" => ResetState::Every,
            "never" => ResetState::Never,
            n => match n.parse::<usize>().ok().and_then(NonZeroUsize::new) {
                Some(n) => ResetState::EveryN(n),
                None => {
                    return Err(Error::Usage(format!(
                        "reset policy {s:?}: expected auto, every, never or a number of samples N ≥ 1"
                    )));
                }
            },
        })
    }
}

/// True when some subgraph creates resource variables (`VAR_HANDLE`).
pub fn has_resource_variables(model: &Model) -> bool {
    model
        .subgraphs
        .iter()
        .flat_map(|sg| &sg.operators)
        .any(|op| model.builtin(op) == B::VarHandle)
}

/// True when the model has state that survives an invocation: resource variables or
/// variable tensors.
pub fn is_stateful(model: &Model) -> bool {
    has_resource_variables(model)
        || model
            .subgraphs
            .iter()
            .flat_map(|sg| &sg.tensors)
            .any(|t| t.is_variable)
}

/// For each READ_VARIABLE output of subgraph `si`, the values ASSIGN_VARIABLE writes to
/// the same variable in that subgraph: where a read value came from, one invocation
/// earlier (variables matched by their VAR_HANDLE's container and shared_name).
pub fn state_sources(model: &Model, si: usize) -> HashMap<usize, Vec<usize>> {
    let mut out = HashMap::new();
    let Some(sg) = model.subgraphs.get(si) else {
        return out;
    };
    let mut key_of: HashMap<i32, (String, String)> = HashMap::new();
    for op in &sg.operators {
        if model.builtin(op) != B::VarHandle {
            continue;
        }
        let key = match &op.builtin_options {
            Some(BuiltinOptions::VarHandleOptions(o)) => (
                o.container.clone().unwrap_or_default(),
                o.shared_name.clone().unwrap_or_default(),
            ),
            _ => Default::default(),
        };
        if let Some(&h) = op.outputs.first() {
            key_of.insert(h, key);
        }
    }
    let key = |op: &crate::ir::Operator| op.inputs.first().and_then(|h| key_of.get(h));
    for read in &sg.operators {
        if model.builtin(read) != B::ReadVariable {
            continue;
        }
        let (Some(k), Some(&out_t)) = (key(read), read.outputs.first()) else {
            continue;
        };
        let values: Vec<usize> = sg
            .operators
            .iter()
            .filter(|a| model.builtin(a) == B::AssignVariable && key(a) == Some(k))
            .filter_map(|a| a.inputs.get(1).and_then(|&v| usize::try_from(v).ok()))
            .collect();
        if let Ok(t) = usize::try_from(out_t) {
            out.insert(t, values);
        }
    }
    out
}

/// Decides, invocation by invocation, whether state is reset first. A reset made from
/// outside (e.g. where the `sequence_id` of an `.npz` changes) is reported with
/// [`Schedule::restarted`], after which the count of [`ResetState::EveryN`] starts again.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: ResetState,
    /// Invocations since the last reset.
    since: usize,
}

impl Schedule {
    /// A schedule for `model` (`Auto` resolved against it).
    pub fn new(policy: ResetState, model: &Model) -> Schedule {
        Schedule {
            policy: policy.resolve(model),
            since: 0,
        }
    }

    /// The resolved policy.
    pub fn policy(&self) -> ResetState {
        self.policy
    }

    /// Called before each invocation: true when the state must be reset first. The first
    /// invocation (and the first after a reset) starts from a fresh state and gets `false`.
    pub fn before(&mut self) -> bool {
        let due = match self.policy {
            ResetState::Every | ResetState::Auto => self.since > 0,
            ResetState::Never => false,
            ResetState::EveryN(n) => self.since >= n.get(),
        };
        if due {
            self.since = 0;
        }
        self.since += 1;
        due
    }

    /// Notes a reset made from outside (the count starts again).
    pub fn restarted(&mut self) {
        self.since = 0;
    }
}

/// Tells where a new sequence starts from per-sample sequence ids: at every change.
#[derive(Debug, Clone, Default)]
pub struct SequenceIds {
    ids: Option<Vec<i64>>,
}

impl SequenceIds {
    pub fn new(ids: Option<Vec<i64>>) -> SequenceIds {
        SequenceIds { ids }
    }

    /// True when sample `i` (> 0) has another id than sample `i - 1`.
    pub fn starts_sequence(&self, i: usize) -> bool {
        match &self.ids {
            Some(ids) if i > 0 => ids.get(i) != ids.get(i - 1),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: ResetState, n: usize, restart_at: Option<usize>) -> Vec<bool> {
        let mut s = Schedule { policy, since: 0 };
        (0..n)
            .map(|i| {
                if Some(i) == restart_at {
                    s.restarted();
                }
                s.before()
            })
            .collect()
    }

    #[test]
    fn policies_reset_at_the_right_invocations() {
        assert_eq!(
            run(ResetState::Every, 5, None),
            [false, true, true, true, true]
        );
        assert_eq!(run(ResetState::Never, 5, None), [false; 5]);
        let n2 = ResetState::EveryN(NonZeroUsize::new(2).unwrap());
        assert_eq!(run(n2, 5, None), [false, false, true, false, true]);
        // A reset from outside at 1 restarts the count: next due at 3.
        assert_eq!(run(n2, 5, Some(1)), [false, false, false, true, false]);
    }

    #[test]
    fn sequence_ids_start_a_sequence_at_every_change() {
        let s = SequenceIds::new(Some(vec![7, 7, 3, 3, 7]));
        let starts: Vec<bool> = (0..5).map(|i| s.starts_sequence(i)).collect();
        assert_eq!(starts, [false, false, true, false, true]);
        assert!(!SequenceIds::default().starts_sequence(3));
    }

    #[test]
    fn parses_and_prints() {
        for s in ["auto", "every", "never", "5"] {
            assert_eq!(s.parse::<ResetState>().unwrap().to_string(), s);
        }
        assert!("0".parse::<ResetState>().is_err());
        assert!("sometimes".parse::<ResetState>().is_err());
    }
}
