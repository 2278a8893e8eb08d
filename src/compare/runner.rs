//! Running one model sample by sample on either runtime and handing back its outputs
//! and chosen tensors of subgraph 0 as [`Value`]s.
//!
//! * [`Runner::reference`]: tflquant's interpreter; tensors are taken from its observer
//!   as they are produced. Quantized models are simulated (dequantize, float kernel,
//!   requantize), so integer results agree with the runtime's integer kernels to about
//!   one quantization step.
//! * [`Runner::litert`]: the official LiteRT runtime through its C API. Tensors other than
//!   outputs are read through a copy of the model that also outputs them
//!   ([`crate::litert::with_extra_outputs`]), compiled once and run per sample.
//! * [`Parallel`]: the reference interpreter, outputs only, several samples at once
//!   (stateless models), for `quantize`'s closing check.
//!
//! Both carry state (resource variables) from one sample to the next as their runtime
//! does, and reset it by the same [`ResetState`] policy: the interpreter by itself,
//! LiteRT by compiling the model again (a fresh compiled model has fresh variables;
//! LiteRT's own variable reset does not touch resource variables).

use std::collections::HashMap;

use crate::data::Array;
use crate::error::{Error, Result};
use crate::interp::state::{self, ResetState, Schedule};
use crate::interp::{Flow, Interpreter, TensorId, Value};
use crate::ir::Model;
use crate::litert::{CompiledModel, CpuKernels, LiteRt, OpenOptions, with_extra_outputs};

/// The values of one run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Subgraph-0 outputs, in order.
    pub outputs: Vec<Value>,
    /// One entry per requested tensor (`None` if the run produced no value for it).
    pub tensors: Vec<Option<Value>>,
}

/// Where LiteRT's value of a requested tensor comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The compiled copy's output at this position.
    Output(usize),
    /// The model input at this position (LiteRT hands out no inputs: the value given).
    Input(usize),
}

enum Engine<'m> {
    Reference(Box<Interpreter<'m>>),
    LiteRt {
        compiled: Box<CompiledModel>,
        outputs: usize,
        /// Per requested tensor: where its value comes from.
        sources: Vec<Source>,
        /// How to compile the model again (to reset its state).
        recompile: Box<Recompile>,
        /// When to reset; `None` for models without resource variables.
        schedule: Option<Schedule>,
    },
}

/// What compiles a LiteRT model again.
struct Recompile {
    lite: LiteRt,
    opts: OpenOptions,
    source: Recompiled,
}

enum Recompiled {
    File(std::path::PathBuf),
    Model(Box<Model>, String),
}

impl Recompile {
    fn compile(&self) -> Result<CompiledModel> {
        match &self.source {
            Recompiled::File(path) => self.lite.open(path, &self.opts),
            Recompiled::Model(m, name) => self.lite.open_model(m, name, &self.opts),
        }
    }
}

/// A model ready to run sample by sample, with the tensors to hand back.
pub struct Runner<'m> {
    engine: Engine<'m>,
    /// Requested subgraph-0 tensor index → positions in [`Run::tensors`] (a tensor may
    /// be asked for more than once).
    slots: HashMap<usize, Vec<usize>>,
    requested: usize,
}

impl<'m> Runner<'m> {
    /// The reference interpreter, capturing subgraph-0 tensors `tensors`.
    pub fn reference(model: &'m Model, tensors: &[usize]) -> Result<Runner<'m>> {
        Ok(Runner {
            engine: Engine::Reference(Box::new(Interpreter::new(model)?)),
            slots: slots(tensors),
            requested: tensors.len(),
        })
    }

    /// LiteRT with kernels `opts`, reading subgraph-0 tensors `tensors` (activations or
    /// inputs, not constants) as extra outputs.
    pub fn litert(
        lite: &LiteRt,
        model: &Model,
        tensors: &[usize],
        opts: &OpenOptions,
    ) -> Result<Runner<'m>> {
        let source = model.source.as_ref().map(|s| s.path.clone());
        let name = source
            .as_ref()
            .map_or_else(|| "model".to_string(), |p| p.display().to_string());
        let (outputs, inputs) = model
            .subgraphs
            .first()
            .map_or((0, Vec::new()), |sg| (sg.outputs.len(), sg.inputs.clone()));
        let input_pos = |t: usize| inputs.iter().position(|&i| i as i64 == t as i64);
        let fetch: Vec<usize> = tensors
            .iter()
            .copied()
            .filter(|&t| input_pos(t).is_none())
            .collect();
        let (recompile, positions) = match (&source, fetch.is_empty()) {
            // The user's own file when nothing extra is read.
            (Some(path), true) => (Recompiled::File(path.clone()), Vec::new()),
            _ => {
                let (copy, positions) = with_extra_outputs(model, &fetch)?;
                let name = format!("{name} (with extra outputs)");
                (Recompiled::Model(Box::new(copy), name), positions)
            }
        };
        let recompile = Recompile {
            lite: lite.clone(),
            opts: *opts,
            source: recompile,
        };
        let compiled = recompile.compile()?;
        let schedule =
            state::has_resource_variables(model).then(|| Schedule::new(ResetState::Auto, model));
        let mut fetched = positions.into_iter();
        let sources = tensors
            .iter()
            .map(|&t| match input_pos(t) {
                Some(i) => Ok(Source::Input(i)),
                None => fetched.next().map(Source::Output).ok_or_else(|| {
                    Error::Internal("fewer extra outputs than tensors asked for".into())
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Runner {
            engine: Engine::LiteRt {
                compiled: Box::new(compiled),
                outputs,
                sources,
                recompile: Box::new(recompile),
                schedule,
            },
            slots: slots(tensors),
            requested: tensors.len(),
        })
    }

    /// The LiteRT kernels in use (`None` for the reference interpreter).
    pub fn kernels(&self) -> Option<CpuKernels> {
        match &self.engine {
            Engine::Reference(_) => None,
            Engine::LiteRt { compiled, .. } => Some(compiled.kernels()),
        }
    }

    /// Sets when state is reset (default [`ResetState::Auto`]: never for models with
    /// resource variables, every sample for others).
    pub fn set_reset_policy(&mut self, policy: ResetState, model: &Model) {
        match &mut self.engine {
            Engine::Reference(interp) => interp.set_reset_policy(policy),
            Engine::LiteRt { schedule, .. } => {
                if let Some(s) = schedule {
                    *s = Schedule::new(policy, model);
                }
            }
        }
    }

    /// Resets the model's state now (e.g. where a new sequence starts).
    pub fn reset_state(&mut self) -> Result<()> {
        match &mut self.engine {
            Engine::Reference(interp) => interp.reset_state(),
            Engine::LiteRt {
                compiled,
                recompile,
                schedule,
                ..
            } => {
                if let Some(s) = schedule {
                    **compiled = recompile.compile()?;
                    s.restarted();
                }
            }
        }
        Ok(())
    }

    /// Runs one sample (one value per model input, with the input's shape).
    pub fn run(&mut self, inputs: &[Value]) -> Result<Run> {
        let mut tensors: Vec<Option<Value>> = vec![None; self.requested];
        match &mut self.engine {
            Engine::Reference(interp) => {
                let slots = &self.slots;
                let mut observe = |id: TensorId, v: &Value| {
                    if id.subgraph == 0
                        && let Some(ks) = slots.get(&id.tensor)
                    {
                        for &k in ks {
                            tensors[k] = Some(v.clone());
                        }
                    }
                    Flow::Continue
                };
                let outputs = interp
                    .run_observed(inputs, &mut observe)?
                    .ok_or_else(|| Error::Internal("the run stopped unasked".into()))?;
                Ok(Run { outputs, tensors })
            }
            Engine::LiteRt {
                compiled,
                outputs,
                sources,
                recompile,
                schedule,
            } => {
                if let Some(s) = schedule
                    && s.before()
                {
                    **compiled = recompile.compile()?;
                }
                let arrays: Vec<Array> = inputs.iter().map(Value::to_array).collect();
                let mut all = compiled.run(&arrays)?;
                let to_value = |a: &Array| {
                    Value::from_array(a).ok_or_else(|| {
                        Error::Internal(format!(
                            "LiteRT returned {} data, which the comparison cannot hold",
                            a.data.dtype_name()
                        ))
                    })
                };
                for (k, &src) in sources.iter().enumerate() {
                    tensors[k] = match src {
                        Source::Output(p) => all.get(p).map(to_value).transpose()?,
                        Source::Input(i) => inputs.get(i).cloned(),
                    };
                }
                all.truncate(*outputs);
                let outputs = all.iter().map(to_value).collect::<Result<Vec<_>>>()?;
                Ok(Run { outputs, tensors })
            }
        }
    }
}

/// A model on the reference interpreter running several samples at once, outputs only:
/// one interpreter per thread of the rayon pool (forks sharing the decoded constants
/// and packed weights), a single one for models with state that survives a run. Its
/// reference twin is [`Runner::reference`], one sample after the other; every sample
/// runs on an interpreter in its initial state, so the outputs are the same.
pub struct Parallel<'m> {
    interps: Vec<Interpreter<'m>>,
}

impl<'m> Parallel<'m> {
    pub fn new(model: &'m Model) -> Result<Parallel<'m>> {
        let first = Interpreter::new(model)?;
        let n = if state::is_stateful(model) {
            1
        } else {
            rayon::current_num_threads().max(1)
        };
        let mut interps: Vec<Interpreter> = (1..n).map(|_| first.fork()).collect();
        interps.push(first);
        Ok(Parallel { interps })
    }

    /// How many samples [`Parallel::run`] runs at once.
    pub fn workers(&self) -> usize {
        self.interps.len()
    }

    /// Runs the samples of `batch` (at most [`Parallel::workers`]; the rest is not
    /// run) side by side; their outputs, or errors, in order.
    pub fn run(&mut self, batch: &[Vec<Value>]) -> Vec<Result<Vec<Value>>> {
        use rayon::prelude::*;
        self.interps
            .par_iter_mut()
            .zip(batch.par_iter())
            .map(|(interp, inputs)| interp.run(inputs))
            .collect()
    }
}

fn slots(tensors: &[usize]) -> HashMap<usize, Vec<usize>> {
    let mut m: HashMap<usize, Vec<usize>> = HashMap::new();
    for (k, &t) in tensors.iter().enumerate() {
        m.entry(t).or_default().push(k);
    }
    m
}
