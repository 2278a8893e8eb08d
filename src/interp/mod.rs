//! The float reference interpreter: runs a [`Model`] over the IR, every subgraph
//! including control flow (WHILE, IF, CALL_ONCE) and STABLEHLO_COMPOSITE (run, as
//! LiteRT does without a fused kernel, by calling its decomposition subgraph), and lets the caller observe (or
//! replace) every tensor value produced, also inside loop bodies.
//!
//! * [`Interpreter::new`] checks up front that every op of every subgraph has a kernel
//!   and reports *all* that do not (subgraph, operator index, op name) in one error;
//!   it decodes constants once (float16 kept for DEQUANTIZE, sparse tensors densified,
//!   quantized constants also kept dequantized).
//! * Ops run in topological order; a value is freed after its last reader.
//! * State that survives a run — resource variables (`VAR_HANDLE`, `READ_VARIABLE`,
//!   `ASSIGN_VARIABLE`, created once per state lifetime by a `CALL_ONCE` init subgraph)
//!   and variable tensors (`is_variable`, e.g. LSTM state) — follows LiteRT's semantics
//!   and is reset as [`Options::reset`] says: by default carried over from run to run for
//!   models with resource variables (a stream), reset before every run otherwise; see
//!   [`state`]. [`Interpreter::reset_state`] resets it on demand.
//! * **Quantized models are mostly simulated, not run bit-exactly**: a tensor of type
//!   int8/uint8/int16/int32/int64 with quantization parameters holds integers; an op
//!   reading it sees `(q - zero_point) * scale` (per tensor or per axis) in float32,
//!   runs its float kernel, and an integer output with parameters is requantized
//!   (round half away from zero, clamped to its type's range). QUANTIZE and DEQUANTIZE
//!   are real conversions. The runtime's integer kernels round intermediate products
//!   differently, so results agree to about one quantization step, not bit for bit.
//!   Exact exceptions, which read and write the stored integers with LiteRT's
//!   arithmetic: the full-integer LSTM (`kernels/lstm_int.rs`); in int16x8,
//!   FULLY_CONNECTED with an int64 bias, ADD and SUB (general scales), MUL, LOGISTIC,
//!   TANH, SOFTMAX and QUANTIZE of int16 (`kernels/int16.rs`); in int8, FULLY_CONNECTED
//!   with XNNPACK's float32 requantization, which LiteRT runs by default
//!   (`kernels/int8.rs`); and the plain hybrid
//!   LSTM (float input, int8 weights), including its on-the-fly int8 quantization of
//!   input and state (`kernels/lstm_hybrid.rs`). Other dynamic-range ("hybrid") ops see
//!   dequantized weights and float activations; the runtime quantizes their activations
//!   on the fly, which this simulation does not.

mod kernels;
pub(crate) mod keys;
pub(crate) mod simd;
mod sparse;
pub mod state;
pub mod value;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use state::{ResetState, Schedule, SequenceIds};
pub use value::{Data, Value};

use crate::error::{Error, Loc, Result};
use crate::fb::{self, BuiltinOperator as B, BuiltinOptions as O, TensorType};
use crate::ir::{Model, Tensor};

use kernels::{Ctx, Ins, KErr, Missing, Run};
use keys::{KeyAcc, KeyRange};

/// A tensor of a subgraph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId {
    pub subgraph: usize,
    pub tensor: usize,
}

/// The interpreter's observer inside: each value with its [`KeyRange`] when the
/// kernel that wrote it computed one ([`Interpreter::run_observed_ranged`]).
pub(crate) type Observer<'o> = dyn FnMut(TensorId, &Value, Option<KeyRange>) -> Flow + 'o;

/// What an observer wants after seeing a value.
#[derive(Debug)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop the run now ([`Interpreter::run_observed`] returns `Ok(None)`).
    Stop,
    /// Use this value instead of the one computed (same tensor, any shape the consumers
    /// accept); the observer is not called again for it.
    Replace(Value),
}

/// Run-time options.
#[derive(Debug, Clone)]
pub struct Options {
    /// When state (resource variables, CALL_ONCE status, variable tensors) goes back to
    /// its initial value, counted in runs. Default [`ResetState::Auto`]: never for models
    /// with resource variables, before every run otherwise.
    pub reset: ResetState,
    /// Upper bound of iterations of one WHILE op (a guard against endless loops).
    pub max_loop_iterations: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reset: ResetState::Auto,
            max_loop_iterations: 10_000_000,
        }
    }
}

/// Time spent per op (for `-v` logging), accumulated over runs.
#[derive(Debug, Clone, Default)]
pub struct OpTiming {
    pub subgraph: usize,
    pub op: usize,
    pub name: String,
    pub calls: u64,
    pub total: Duration,
}

type Slot = Option<Arc<Value>>;

/// The execution plan of one subgraph.
#[derive(Clone)]
struct Plan {
    /// Operator indices in execution order.
    order: Vec<usize>,
    /// For each tensor, the position in `order` after which nobody reads it (`None`:
    /// keep, e.g. subgraph outputs, constants and variables).
    last_use: Vec<Option<usize>>,
    /// Per operator: builtin op and display name.
    ops: Vec<(B, String)>,
}

/// Per-tensor constant data.
#[derive(Clone)]
struct Const {
    /// As stored (float16 stays float16, int8 stays int8; sparse densified).
    raw: Arc<Value>,
    /// Dequantized float32 for quantized tensors.
    real: Option<Arc<Value>>,
}

/// The interpreter for one model. See the module documentation.
pub struct Interpreter<'m> {
    model: &'m Model,
    plans: Vec<Plan>,
    consts: Vec<Vec<Option<Const>>>,
    /// Current values of variable tensors.
    variables: HashMap<TensorId, Arc<Value>>,
    initial_variables: HashMap<TensorId, Arc<Value>>,
    /// Init subgraphs a CALL_ONCE has run (LiteRT keys the status by subgraph).
    called_once: HashSet<usize>,
    /// Resource id of every VAR_HANDLE op, by (subgraph, operator): one id per
    /// (container, shared_name), numbered in model order, as LiteRT does.
    handles: HandleIds,
    /// (container, shared_name) of each resource id, for messages.
    resource_names: Vec<(String, String)>,
    /// Current values of resource variables, by id (absent until first assigned).
    resources: HashMap<i32, Arc<Value>>,
    schedule: Schedule,
    options: Options,
    timing: Option<Vec<Vec<OpTiming>>>,
    /// During [`Interpreter::run_observed_ranged`]: kernels are handed a [`KeyAcc`].
    want_ranges: bool,
    /// Float buffers of freed values, reused for kernel outputs (not shared by forks).
    buffers: kernels::Buffers,
    /// Per subgraph and operator: where CONV_2D / FULLY_CONNECTED with a constant weight
    /// keep its packing for the GEMM (`None` for every other op). Filled on first use,
    /// kept for the interpreter's life and shared with its [`Interpreter::fork`]s: the
    /// cost is about one more copy of those weights (padded to panels of 32 output
    /// channels; [`Interpreter::packed_weight_bytes`]).
    packs: Arc<Vec<Vec<Option<PackCell>>>>,
}

/// See [`Interpreter`]'s `packs`.
type PackCell = kernels::gemm::PackCell;

/// An op the interpreter has no kernel for (or whose options no kernel implements,
/// e.g. a fused TANH), as listed in the error of [`Interpreter::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    pub subgraph: usize,
    pub op: usize,
    pub name: String,
}

/// Every op of the model the interpreter cannot run.
pub fn unsupported_ops(model: &Model) -> Vec<UnsupportedOp> {
    let mut out = Vec::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            let code = model.code(op);
            let name = model.op_display_name(op);
            if let Some(missing) = kernels::missing(code.builtin, code.custom_code.as_deref(), op) {
                out.push(UnsupportedOp {
                    subgraph: si,
                    op: oi,
                    name: match missing {
                        Missing::Kernel => name,
                        Missing::Options(why) => format!("{name} with {why}"),
                    },
                });
            }
        }
    }
    out
}

/// True for integer storage types that hold quantized reals when the tensor has
/// quantization parameters.
fn is_quant_storage(t: TensorType) -> bool {
    matches!(
        t,
        TensorType::Int8
            | TensorType::Uint8
            | TensorType::Int16
            | TensorType::Int32
            | TensorType::Int64
    )
}

/// The tensor's quantization parameters if it holds quantized reals.
fn quantized(t: &Tensor) -> Option<&crate::ir::QuantParams> {
    t.quantized().filter(|_| is_quant_storage(t.dtype))
}

fn tensor_shape(t: &Tensor) -> Vec<usize> {
    t.shape.iter().map(|&d| d.max(0) as usize).collect()
}

fn op_loc(sg: usize, op: usize, name: &str) -> Loc {
    Loc::op(sg, op).then(name)
}

fn kernel_error(e: KErr, at: Loc) -> Error {
    match e {
        KErr::Unsupported(what) => Error::unsupported(at, what),
        KErr::Bad(what) => Error::Data(format!("{at}: {what}")),
    }
}

/// An op being run, for messages: its location is formatted only when needed.
#[derive(Clone, Copy)]
struct OpAt<'n> {
    si: usize,
    oi: usize,
    name: &'n str,
}

impl OpAt<'_> {
    fn loc(&self) -> Loc {
        op_loc(self.si, self.oi, self.name)
    }
}

/// What a kernel sees of op `oi` of subgraph `si` besides its input values. Quantized
/// outputs are computed in float32 (and requantized by the interpreter) unless the
/// kernel writes stored integers itself (`raw_outputs`).
fn kernel_ctx(model: &Model, si: usize, oi: usize, raw_outputs: bool) -> Ctx<'_> {
    let sg = &model.subgraphs[si];
    let op = &sg.operators[oi];
    let out_tensors: Vec<Option<&Tensor>> = op
        .outputs
        .iter()
        .map(|&t| usize::try_from(t).ok().map(|t| &sg.tensors[t]))
        .collect();
    let in_quant = op
        .inputs
        .iter()
        .map(|&t| {
            usize::try_from(t)
                .ok()
                .and_then(|t| sg.tensors[t].quantized())
        })
        .collect();
    Ctx {
        op,
        out_types: out_tensors
            .iter()
            .map(|t| match t {
                Some(t) if quantized(t).is_some() && !raw_outputs => TensorType::Float32,
                Some(t) => t.dtype,
                None => TensorType::Float32,
            })
            .collect(),
        out_shapes: out_tensors
            .iter()
            .map(|t| t.map_or(&[][..], |t| t.shape.as_slice()))
            .collect(),
        in_quant,
        out_quant: out_tensors
            .iter()
            .map(|t| t.and_then(|t| t.quantized()))
            .collect(),
        inter_quant: op
            .intermediates
            .iter()
            .flatten()
            .map(|&t| {
                usize::try_from(t)
                    .ok()
                    .and_then(|t| sg.tensors.get(t))
                    .and_then(|t| t.quantized())
            })
            .collect(),
        out_storage: out_tensors
            .iter()
            .map(|t| t.map_or(TensorType::Float32, |t| t.dtype))
            .collect(),
        custom_code: model.code(op).custom_code.as_deref(),
        out_keys: None,
        buffers: None,
    }
}

impl<'m> Interpreter<'m> {
    /// Prepares `model` for running: checks every op has a kernel (the error lists all
    /// that do not), plans execution order, decodes constants.
    pub fn new(model: &'m Model) -> Result<Interpreter<'m>> {
        Self::with_options(model, Options::default())
    }

    /// [`Interpreter::new`] with options.
    pub fn with_options(model: &'m Model, options: Options) -> Result<Interpreter<'m>> {
        let missing = unsupported_ops(model);
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|m| format!("subgraph {}, operator {} ({})", m.subgraph, m.op, m.name))
                .collect();
            return Err(Error::unsupported(
                Loc::model(),
                format!(
                    "the interpreter has no kernel for {} op{}: {}",
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" },
                    list.join("; ")
                ),
            ));
        }
        if model.subgraphs.is_empty() {
            return Err(Error::malformed(Loc::model(), "the model has no subgraph"));
        }
        let mut plans = Vec::with_capacity(model.subgraphs.len());
        let mut consts = Vec::with_capacity(model.subgraphs.len());
        let mut initial_variables = HashMap::new();
        for (si, sg) in model.subgraphs.iter().enumerate() {
            plans.push(plan(model, si)?);
            let mut cs = Vec::with_capacity(sg.tensors.len());
            for (ti, t) in sg.tensors.iter().enumerate() {
                let c = decode_const(model, si, ti, t)?;
                if t.is_variable {
                    let init = match &c {
                        Some(c) => c.raw.clone(),
                        None => {
                            let shape = tensor_shape(t);
                            let n = shape.iter().product();
                            let data = match (t.dtype, t.quantized()) {
                                // LiteRT resets an int8 variable to its zero point.
                                (TensorType::Int8, Some(q)) => Some(Data::I8(vec![
                                    q.zero_point.first().copied().unwrap_or(0)
                                        as i8;
                                    n
                                ])),
                                _ => Data::zeros(t.dtype, n),
                            }
                            .ok_or_else(|| {
                                Error::unsupported(
                                    Loc::tensor(si, ti),
                                    format!("variable of type {}", fb::dtype_name(t.dtype)),
                                )
                            })?;
                            Arc::new(Value { shape, data })
                        }
                    };
                    initial_variables.insert(
                        TensorId {
                            subgraph: si,
                            tensor: ti,
                        },
                        init,
                    );
                    cs.push(None);
                } else {
                    cs.push(c);
                }
            }
            consts.push(cs);
        }
        let (handles, resource_names) = resource_ids(model);
        let packs = pack_cells(model, &plans, &consts);
        Ok(Interpreter {
            model,
            packs: Arc::new(packs),
            plans,
            consts,
            variables: initial_variables.clone(),
            initial_variables,
            called_once: HashSet::new(),
            handles,
            resource_names,
            resources: HashMap::new(),
            schedule: Schedule::new(options.reset, model),
            options,
            timing: None,
            want_ranges: false,
            buffers: kernels::Buffers::default(),
        })
    }

    /// A new interpreter of the same model and options, in its initial state, sharing
    /// this one's decoded constants and packed weights (read-only; nothing is decoded
    /// or packed twice), e.g. one per thread running samples side by side.
    pub fn fork(&self) -> Interpreter<'m> {
        let (handles, resource_names) = resource_ids(self.model);
        Interpreter {
            model: self.model,
            plans: self.plans.clone(),
            consts: self.consts.clone(),
            variables: self.initial_variables.clone(),
            initial_variables: self.initial_variables.clone(),
            called_once: HashSet::new(),
            handles,
            resource_names,
            resources: HashMap::new(),
            schedule: Schedule::new(self.options.reset, self.model),
            options: self.options.clone(),
            timing: None,
            want_ranges: false,
            buffers: kernels::Buffers::default(),
            packs: Arc::clone(&self.packs),
        }
    }

    /// Bytes held by packed constant weights (see [`Interpreter::fork`]; shared by forks).
    pub fn packed_weight_bytes(&self) -> usize {
        self.packs
            .iter()
            .flatten()
            .flatten()
            .filter_map(|c| c.get().and_then(Option::as_ref))
            .map(|p| p.bytes())
            .sum()
    }

    /// The model this interpreter runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Starts (or stops) accumulating per-op wall time; see [`Interpreter::timings`].
    pub fn set_timing(&mut self, on: bool) {
        self.timing = on.then(|| {
            self.plans
                .iter()
                .enumerate()
                .map(|(si, p)| {
                    p.ops
                        .iter()
                        .enumerate()
                        .map(|(oi, (_, name))| OpTiming {
                            subgraph: si,
                            op: oi,
                            name: name.clone(),
                            ..Default::default()
                        })
                        .collect()
                })
                .collect()
        });
    }

    /// True while per-op timing is on ([`Interpreter::set_timing`]).
    pub fn timing_enabled(&self) -> bool {
        self.timing.is_some()
    }

    /// Accumulated per-op timings (empty unless [`Interpreter::set_timing`] is on).
    pub fn timings(&self) -> Vec<OpTiming> {
        self.timing.iter().flatten().flatten().cloned().collect()
    }

    /// Puts the state back to where a fresh interpreter starts: variable tensors at their
    /// initial values, no resource variable, CALL_ONCE init subgraphs not yet run. The
    /// [`ResetState::EveryN`] count starts again.
    pub fn reset_state(&mut self) {
        self.clear_state();
        self.schedule.restarted();
    }

    fn clear_state(&mut self) {
        self.variables = self.initial_variables.clone();
        self.resources.clear();
        self.called_once.clear();
    }

    /// The reset policy in force (`Auto` resolved for the model).
    pub fn reset_policy(&self) -> ResetState {
        self.schedule.policy()
    }

    /// Changes the reset policy (counting starts again from the next run).
    pub fn set_reset_policy(&mut self, policy: ResetState) {
        self.options.reset = policy;
        self.schedule = Schedule::new(policy, self.model);
    }

    /// Runs subgraph 0 on one sample per input (shapes as the model's inputs; a
    /// dynamic dimension takes any size) and returns its outputs.
    pub fn run(&mut self, inputs: &[Value]) -> Result<Vec<Value>> {
        let mut obs = |_: TensorId, _: &Value| Flow::Continue;
        match self.run_observed(inputs, &mut obs)? {
            Some(v) => Ok(v),
            None => Err(Error::Internal(
                "run stopped without an observer asking".into(),
            )),
        }
    }

    /// Like [`Interpreter::run`], calling `observe` with every tensor value as it is
    /// produced (inputs of a subgraph when it starts, each op output, updated variable
    /// state), in every subgraph, including each iteration of a loop body. Returns
    /// `Ok(None)` when the observer stopped the run.
    pub fn run_observed(
        &mut self,
        inputs: &[Value],
        observe: &mut dyn FnMut(TensorId, &Value) -> Flow,
    ) -> Result<Option<Vec<Value>>> {
        self.want_ranges = false;
        self.run_inner(inputs, &mut |id, v, _| observe(id, v))
    }

    /// [`Interpreter::run_observed`], also handing the observer the [`KeyRange`] of
    /// each value whose kernel computed it while writing it (block by block, in
    /// cache: convolutions, FULLY_CONNECTED), so that the observer need not read the
    /// value again for its minimum and maximum; `None` for the others.
    pub(crate) fn run_observed_ranged(
        &mut self,
        inputs: &[Value],
        observe: &mut Observer,
    ) -> Result<Option<Vec<Value>>> {
        self.want_ranges = true;
        let r = self.run_inner(inputs, observe);
        self.want_ranges = false;
        r
    }

    fn run_inner(
        &mut self,
        inputs: &[Value],
        observe: &mut Observer,
    ) -> Result<Option<Vec<Value>>> {
        let sg = &self.model.subgraphs[0];
        if inputs.len() != sg.inputs.len() {
            return Err(Error::Data(format!(
                "the model has {} input{}, got {}",
                sg.inputs.len(),
                if sg.inputs.len() == 1 { "" } else { "s" },
                inputs.len()
            )));
        }
        let mut args = Vec::with_capacity(inputs.len());
        for (i, (v, &ti)) in inputs.iter().zip(&sg.inputs).enumerate() {
            let t = &sg.tensors[ti as usize];
            args.push(Arc::new(check_input(i, t, v)?));
        }
        if self.schedule.before() {
            self.clear_state();
        }
        let outs = self.run_subgraph(0, args, observe)?;
        Ok(outs.map(|o| {
            o.into_iter()
                .map(|v| Arc::try_unwrap(v).unwrap_or_else(|a| (*a).clone()))
                .collect()
        }))
    }

    /// Runs one subgraph with argument values; `None` when stopped.
    fn run_subgraph(
        &mut self,
        si: usize,
        args: Vec<Arc<Value>>,
        observe: &mut Observer,
    ) -> Result<Option<Vec<Arc<Value>>>> {
        let model = self.model;
        let sg = &model.subgraphs[si];
        if args.len() != sg.inputs.len() {
            return Err(Error::Data(format!(
                "subgraph {si} takes {} inputs, got {}",
                sg.inputs.len(),
                args.len()
            )));
        }
        let mut slots: Vec<Slot> = vec![None; sg.tensors.len()];
        // Beside a quantized tensor an op wrote, its dequantized values (the reals its
        // readers see), made while quantizing (see `store_outputs`).
        let mut reals: Vec<Slot> = vec![None; sg.tensors.len()];
        for (ti, t) in sg.tensors.iter().enumerate() {
            if t.is_variable {
                let id = TensorId {
                    subgraph: si,
                    tensor: ti,
                };
                slots[ti] = self.variables.get(&id).cloned();
            }
        }
        for (&ti, v) in sg.inputs.iter().zip(args) {
            let id = TensorId {
                subgraph: si,
                tensor: ti as usize,
            };
            match observe(id, &v, None) {
                Flow::Continue => slots[ti as usize] = Some(v),
                Flow::Stop => return Ok(None),
                Flow::Replace(r) => slots[ti as usize] = Some(Arc::new(r)),
            }
        }
        let n_ops = self.plans[si].order.len();
        for step in 0..n_ops {
            let oi = self.plans[si].order[step];
            let started = self.timing.is_some().then(Instant::now);
            if !self.run_op(si, oi, (&mut slots, &mut reals), observe)? {
                return Ok(None);
            }
            if let (Some(t0), Some(tm)) = (started, self.timing.as_mut()) {
                let e = &mut tm[si][oi];
                e.calls += 1;
                e.total += t0.elapsed();
            }
            // Free values nobody reads any more.
            let plan = &self.plans[si];
            for &t in model.subgraphs[si].operators[oi].inputs.iter() {
                let Ok(t) = usize::try_from(t) else { continue };
                if plan.last_use[t] != Some(step) {
                    continue;
                }
                for v in [slots[t].take(), reals[t].take()].into_iter().flatten() {
                    if let Ok(Value {
                        data: value::Data::F32(buf),
                        ..
                    }) = Arc::try_unwrap(v)
                    {
                        self.buffers.give(buf);
                    }
                }
            }
        }
        let mut outs = Vec::with_capacity(sg.outputs.len());
        for &ti in &sg.outputs {
            let v = match slots[ti as usize].clone() {
                Some(v) => v,
                None => self.const_value(si, ti as usize, true).ok_or_else(|| {
                    Error::Data(format!(
                        "{}: output tensor {ti} ({:?}) was never computed",
                        Loc::subgraph(si),
                        sg.tensors[ti as usize].name
                    ))
                })?,
            };
            outs.push(v);
        }
        Ok(Some(outs))
    }

    fn const_value(&self, si: usize, ti: usize, raw: bool) -> Option<Arc<Value>> {
        let c = self.consts[si][ti].as_ref()?;
        if raw {
            Some(c.raw.clone())
        } else {
            Some(c.real.clone().unwrap_or_else(|| c.raw.clone()))
        }
    }

    /// Runs one op; false when the observer stopped the run.
    fn run_op(
        &mut self,
        si: usize,
        oi: usize,
        (slots, reals): (&mut [Slot], &mut [Slot]),
        observe: &mut Observer,
    ) -> Result<bool> {
        let (b, name) = {
            let (b, n) = &self.plans[si].ops[oi];
            (*b, n.clone())
        };
        let at = OpAt {
            si,
            oi,
            name: &name,
        };
        let (run, raw_inputs, raw_outputs) = match kernels::lookup(b) {
            Some(d) => (Some(d.run), d.raw_inputs, d.raw_outputs),
            None => (None, false, false),
        };
        // An LSTM or SVDF with int8 input runs LiteRT's integer kernel on the stored
        // integers, and so do the int16x8 ops `kernels::int16` implements and the int8
        // FULLY_CONNECTED of `kernels::int8`.
        let (raw_inputs, exact16, exact8) = {
            let sg = &self.model.subgraphs[si];
            let op = &sg.operators[oi];
            let exact16 = kernels::int16::runs_exact(b, op, sg);
            let exact8 = kernels::int8::runs_exact(b, op, sg);
            (
                raw_inputs || exact16 || exact8 || integer_lstm(b, op, sg),
                exact16,
                exact8,
            )
        };
        let owned = self.op_inputs(at, (slots, reals), raw_inputs)?;
        let acc = self.want_ranges.then(KeyAcc::default);
        let results: Vec<Value> = match run {
            Some(Run::ControlFlow) => {
                let args: Vec<Arc<Value>> = owned.into_iter().flatten().collect();
                match self.control_flow(b, si, oi, args, observe)? {
                    Some(v) => v
                        .into_iter()
                        .map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
                        .collect(),
                    None => return Ok(false),
                }
            }
            Some(Run::Resource) => self
                .resource_op(b, si, oi, &owned)
                .map_err(|e| kernel_error(e, at.loc()))?,
            Some(Run::Kernel(_)) | None => {
                let ins = Ins(owned.iter().map(|o| o.as_deref()).collect());
                let mut ctx = kernel_ctx(self.model, si, oi, raw_outputs || exact16 || exact8);
                ctx.out_keys = acc.as_ref();
                ctx.buffers = Some(&self.buffers);
                let outs = match &self.packs[si][oi] {
                    _ if exact16 => kernels::int16::eval(b, &ctx, &ins),
                    _ if exact8 => kernels::int8::eval(b, &ctx, &ins),
                    Some(cell) => kernels::eval_packed(b, &ctx, &ins, cell),
                    None => kernels::eval(b, &ctx, &ins),
                }
                .map_err(|e| kernel_error(e, at.loc()))?;
                if !Self::observe_trace(self.model, si, oi, &outs.trace, observe) {
                    return Ok(false);
                }
                if !self.store_state(si, oi, outs.state, (slots, reals), observe) {
                    return Ok(false);
                }
                outs.values
            }
        };
        let control_flow = matches!(run, Some(Run::ControlFlow));
        let keys = acc.as_ref().and_then(KeyAcc::range);
        self.store_outputs(at, (control_flow, keys), results, (slots, reals), observe)
    }

    /// Shows the observer the per-step values a kernel traced for its inputs (the LSTM's
    /// cell state after every step, for calibration); false when the observer stops.
    fn observe_trace(
        model: &Model,
        si: usize,
        oi: usize,
        trace: &[(usize, Value)],
        observe: &mut Observer,
    ) -> bool {
        let op = &model.subgraphs[si].operators[oi];
        for (pos, v) in trace {
            let Some(t) = op.inputs.get(*pos).and_then(|&t| usize::try_from(t).ok()) else {
                continue;
            };
            let id = TensorId {
                subgraph: si,
                tensor: t,
            };
            if let Flow::Stop = observe(id, v, None) {
                return false;
            }
        }
        true
    }

    /// The input values of an op, by position (absent optional inputs are `None`):
    /// computed values (dequantized unless `raw`: the reals kept beside them when
    /// there are) or constants.
    fn op_inputs(
        &self,
        at: OpAt,
        (slots, reals): (&[Slot], &[Slot]),
        raw: bool,
    ) -> Result<Vec<Option<Arc<Value>>>> {
        let sg = &self.model.subgraphs[at.si];
        let op = &sg.operators[at.oi];
        let mut owned: Vec<Option<Arc<Value>>> = Vec::with_capacity(op.inputs.len());
        for (pos, &t) in op.inputs.iter().enumerate() {
            let Ok(t) = usize::try_from(t) else {
                owned.push(None);
                continue;
            };
            let tensor = &sg.tensors[t];
            let v = match &slots[t] {
                Some(_) if !raw && reals[t].is_some() => reals[t].clone(),
                Some(v) => {
                    match quantized(tensor).filter(|_| !raw && v.dtype() != TensorType::Float32) {
                        Some(q) => Some(Arc::new(value::dequantize(v, q).ok_or_else(|| {
                            Error::Data(format!(
                                "{}: input {pos}: quantization parameters do not fit shape {:?}",
                                at.loc(),
                                v.shape
                            ))
                        })?)),
                        None => Some(v.clone()),
                    }
                }
                None => self.const_value(at.si, t, raw),
            };
            if v.is_none() {
                return Err(Error::Data(format!(
                    "{}: input {pos} (tensor {t} {:?}) has no value: not produced before it is read",
                    at.loc(),
                    tensor.name
                )));
            }
            owned.push(v);
        }
        Ok(owned)
    }

    /// Keeps the new values a kernel gave its variable inputs (e.g. an LSTM's state);
    /// false when the observer stopped the run.
    fn store_state(
        &mut self,
        si: usize,
        oi: usize,
        state: Vec<(usize, Value)>,
        (slots, reals): (&mut [Slot], &mut [Slot]),
        observe: &mut Observer,
    ) -> bool {
        let sg = &self.model.subgraphs[si];
        let op = &sg.operators[oi];
        for (pos, v) in state {
            let Some(&t) = op.inputs.get(pos) else {
                continue;
            };
            let Ok(t) = usize::try_from(t) else { continue };
            if !sg.tensors[t].is_variable {
                continue;
            }
            let id = TensorId {
                subgraph: si,
                tensor: t,
            };
            let v = match observe(id, &v, None) {
                Flow::Continue => v,
                Flow::Stop => return false,
                Flow::Replace(r) => r,
            };
            let v = Arc::new(v);
            self.variables.insert(id, v.clone());
            slots[t] = Some(v);
            reals[t] = None;
        }
        true
    }

    /// Requantizes an op's results into its quantized outputs, checks their types
    /// (control flow returns what its subgraphs computed) and stores them; false when
    /// the observer stopped the run. A float result requantized to 8 or 16 bits is
    /// overwritten with its dequantized values in the same pass
    /// ([`value::quantize_keeping_reals`]) and kept in `reals` for the readers, which
    /// would dequantize the integers to the same bits.
    fn store_outputs(
        &self,
        at: OpAt,
        (control_flow, keys): (bool, Option<KeyRange>),
        results: Vec<Value>,
        (slots, reals): (&mut [Slot], &mut [Slot]),
        observe: &mut Observer,
    ) -> Result<bool> {
        let sg = &self.model.subgraphs[at.si];
        let op = &sg.operators[at.oi];
        if results.len() < op.outputs.iter().filter(|&&t| t >= 0).count() {
            return Err(Error::Data(format!(
                "{}: produced {} values for {} outputs",
                at.loc(),
                results.len(),
                op.outputs.len()
            )));
        }
        for (pos, (&t, v)) in op.outputs.iter().zip(results).enumerate() {
            let Ok(t) = usize::try_from(t) else { continue };
            let tensor = &sg.tensors[t];
            // The kernel's key range is of its first output as computed (float).
            let keys = keys.filter(|_| pos == 0 && v.dtype() == TensorType::Float32);
            let mut real = None;
            let v = match quantized(tensor) {
                Some(q) if v.dtype() == TensorType::Float32 => {
                    let mut v = v;
                    let (ints, kept) = value::quantize_keeping_reals(&mut v, q, tensor.dtype)
                        .ok_or_else(|| {
                            Error::Data(format!(
                                "{}: output {pos}: quantization parameters do not fit shape {:?}",
                                at.loc(),
                                v.shape
                            ))
                        })?;
                    if kept {
                        real = Some(v);
                    } else if let value::Data::F32(buf) = v.data {
                        self.buffers.give(buf);
                    }
                    ints
                }
                _ => v,
            };
            let handle = tensor.dtype == TensorType::Resource && v.dtype() == TensorType::Int32;
            if v.dtype() != tensor.dtype && !handle && !control_flow {
                return Err(Error::Internal(format!(
                    "{}: output {pos} computed as {} but tensor {t} is {}",
                    at.loc(),
                    fb::dtype_name(v.dtype()),
                    fb::dtype_name(tensor.dtype)
                )));
            }
            let id = TensorId {
                subgraph: at.si,
                tensor: t,
            };
            let keys = keys.filter(|_| v.dtype() == TensorType::Float32);
            reals[t] = None;
            match observe(id, &v, keys) {
                Flow::Continue => {
                    slots[t] = Some(Arc::new(v));
                    reals[t] = real.map(Arc::new);
                }
                Flow::Stop => return Ok(false),
                Flow::Replace(r) => slots[t] = Some(Arc::new(r)),
            }
        }
        Ok(true)
    }

    /// VAR_HANDLE (the variable's resource id, as an int32 scalar), READ_VARIABLE (its
    /// current value, which must have the output tensor's type) and ASSIGN_VARIABLE
    /// (creates or overwrites it; type and shape come from the value), as LiteRT's
    /// `var_handle.cc`, `read_variable.cc` and `assign_variable.cc`.
    fn resource_op(
        &mut self,
        b: B,
        si: usize,
        oi: usize,
        ins: &[Option<Arc<Value>>],
    ) -> std::result::Result<Vec<Value>, KErr> {
        let sg = &self.model.subgraphs[si];
        let op = &sg.operators[oi];
        if b == B::VarHandle {
            let id = self
                .handles
                .get(&(si, oi))
                .copied()
                .ok_or_else(|| KErr::Bad("VAR_HANDLE has no resource id".into()))?;
            return Ok(vec![Value {
                shape: Vec::new(),
                data: Data::I32(vec![id]),
            }]);
        }
        let handle = match ins.first() {
            Some(Some(h)) => h,
            _ => kernels::bad!("input 0 (the variable's handle) is missing"),
        };
        let id = match handle.data.to_i64_vec().as_deref() {
            Some(&[id]) => i32::try_from(id).ok(),
            _ => None,
        }
        .filter(|&id| id >= 0 && (id as usize) < self.resource_names.len())
        .ok_or_else(|| {
            KErr::Bad(format!(
                "input 0 is not a variable handle (got {} {:?})",
                fb::dtype_name(handle.dtype()),
                handle.shape
            ))
        })?;
        let name = || {
            let (c, n) = &self.resource_names[id as usize];
            if c.is_empty() {
                format!("variable {n:?}")
            } else {
                format!("variable {c:?}/{n:?}")
            }
        };
        if b == B::AssignVariable {
            let value = match ins.get(1) {
                Some(Some(v)) => v.clone(),
                _ => kernels::bad!("input 1 (the value to assign to {}) is missing", name()),
            };
            self.resources.insert(id, value);
            return Ok(Vec::new());
        }
        let Some(v) = self.resources.get(&id) else {
            kernels::bad!(
                "reads {} before any ASSIGN_VARIABLE gave it a value",
                name()
            );
        };
        if let Some(&t) = op.outputs.first()
            && let Ok(t) = usize::try_from(t)
            && sg.tensors[t].dtype != v.dtype()
        {
            kernels::bad!(
                "{} holds {} but the output tensor {t} is {}",
                name(),
                fb::dtype_name(v.dtype()),
                fb::dtype_name(sg.tensors[t].dtype)
            );
        }
        Ok(vec![(**v).clone()])
    }

    fn control_flow(
        &mut self,
        b: B,
        si: usize,
        oi: usize,
        args: Vec<Arc<Value>>,
        observe: &mut Observer,
    ) -> Result<Option<Vec<Arc<Value>>>> {
        let op = &self.model.subgraphs[si].operators[oi];
        let at = op_loc(si, oi, fb::op_name(b));
        if b == B::StablehloComposite {
            // LiteRT's generic path: the inputs become the decomposition's inputs, its
            // outputs the op's outputs (`kernels/stablehlo_composite.cc`).
            let Some(fb::BuiltinOptions2::StableHloCompositeOptions(o)) = &op.builtin_options_2
            else {
                return Err(Error::malformed(
                    at,
                    "STABLEHLO_COMPOSITE without its options",
                ));
            };
            let Some(sub) = usize::try_from(o.decomposition_subgraph_index)
                .ok()
                .filter(|&s| s < self.model.subgraphs.len())
            else {
                return Err(Error::malformed(
                    at,
                    format!(
                        "decomposition subgraph {} does not exist",
                        o.decomposition_subgraph_index
                    ),
                ));
            };
            return self.run_subgraph(sub, args, observe);
        }
        match (&op.builtin_options, b) {
            (Some(O::WhileOptions(o)), B::While) => {
                let (cond, body) = (
                    o.cond_subgraph_index as usize,
                    o.body_subgraph_index as usize,
                );
                let mut state = args;
                let mut iterations = 0u64;
                loop {
                    let Some(c) = self.run_subgraph(cond, state.clone(), observe)? else {
                        return Ok(None);
                    };
                    if !truthy(c.first().map(|v| &**v))
                        .map_err(|w| Error::Data(format!("{at}: condition {w}")))?
                    {
                        break;
                    }
                    iterations += 1;
                    if iterations > self.options.max_loop_iterations {
                        return Err(Error::Data(format!(
                            "{at}: more than {} iterations; stopping",
                            self.options.max_loop_iterations
                        )));
                    }
                    let Some(next) = self.run_subgraph(body, state, observe)? else {
                        return Ok(None);
                    };
                    state = next;
                }
                Ok(Some(state))
            }
            (Some(O::IfOptions(o)), B::If) => {
                let mut it = args.into_iter();
                let c = it.next();
                let branch = if truthy(c.as_deref())
                    .map_err(|w| Error::Data(format!("{at}: condition {w}")))?
                {
                    o.then_subgraph_index
                } else {
                    o.else_subgraph_index
                };
                self.run_subgraph(branch as usize, it.collect(), observe)
            }
            (Some(O::CallOnceOptions(o)), B::CallOnce) => {
                let init = o.init_subgraph_index as usize;
                if !self.called_once.contains(&init) {
                    let r = self.run_subgraph(init, Vec::new(), observe)?;
                    if r.is_none() {
                        return Ok(None);
                    }
                    // Marked done only once it ran through, as LiteRT does.
                    self.called_once.insert(init);
                }
                Ok(Some(Vec::new()))
            }
            _ => Err(Error::malformed(at, "control-flow op without its options")),
        }
    }
}

/// Resource id by (subgraph, VAR_HANDLE operator).
type HandleIds = HashMap<(usize, usize), i32>;

/// The resource id of every VAR_HANDLE op and the (container, shared_name) of each id:
/// ids are given in model order (subgraph, then operator), one per distinct name pair.
fn resource_ids(model: &Model) -> (HandleIds, Vec<(String, String)>) {
    let mut handles = HashMap::new();
    let mut names: Vec<(String, String)> = Vec::new();
    for (si, sg) in model.subgraphs.iter().enumerate() {
        for (oi, op) in sg.operators.iter().enumerate() {
            if model.builtin(op) != B::VarHandle {
                continue;
            }
            let key = match &op.builtin_options {
                Some(O::VarHandleOptions(o)) => (
                    o.container.clone().unwrap_or_default(),
                    o.shared_name.clone().unwrap_or_default(),
                ),
                _ => (String::new(), String::new()),
            };
            let id = match names.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    names.push(key);
                    names.len() - 1
                }
            };
            handles.insert((si, oi), id as i32);
        }
    }
    (handles, names)
}

/// A scalar condition: bool, or a non-zero number.
fn truthy(v: Option<&Value>) -> std::result::Result<bool, String> {
    let Some(v) = v else {
        return Err("is missing".into());
    };
    if v.len() != 1 {
        return Err(format!("must be a scalar, got shape {:?}", v.shape));
    }
    Ok(match &v.data {
        Data::Bool(b) => b[0],
        d => d.to_f64_vec()[0] != 0.0,
    })
}

/// Checks a model input value against its tensor (type, shape with dynamic dimensions);
/// a value with the same element count as a static shape is reshaped to it.
fn check_input(i: usize, t: &Tensor, v: &Value) -> Result<Value> {
    let want = tensor_shape(t);
    let sig: Vec<i64> = match &t.shape_signature {
        Some(s) if !s.is_empty() => s.iter().map(|&d| d as i64).collect(),
        _ => t.shape.iter().map(|&d| d as i64).collect(),
    };
    if v.dtype() != t.dtype {
        return Err(Error::Data(format!(
            "input {i} ({:?}): expected {} {}, got {} {:?}",
            t.name,
            fb::dtype_name(t.dtype).to_lowercase(),
            fmt_sig(&sig),
            fb::dtype_name(v.dtype()).to_lowercase(),
            v.shape
        )));
    }
    let fits = |shape: &[usize]| {
        shape.len() == sig.len()
            && shape
                .iter()
                .zip(&sig)
                .all(|(&d, &s)| s < 0 || d as i64 == s)
    };
    if fits(&v.shape) {
        return Ok(v.clone());
    }
    // One sample without its batch dimension of 1: [d1..dk] for [1, d1..dk].
    let mut batched = vec![1];
    batched.extend_from_slice(&v.shape);
    if matches!(sig.first(), Some(&1) | Some(&-1)) && fits(&batched) {
        return Ok(Value {
            shape: batched,
            data: v.data.clone(),
        });
    }
    let dynamic = sig.iter().any(|&s| s < 0);
    if !dynamic && v.len() == want.iter().product::<usize>() {
        return Ok(Value {
            shape: want,
            data: v.data.clone(),
        });
    }
    Err(Error::Data(format!(
        "input {i} ({:?}): expected shape {}, got {:?}",
        t.name,
        fmt_sig(&sig),
        v.shape
    )))
}

fn fmt_sig(sig: &[i64]) -> String {
    let parts: Vec<String> = sig
        .iter()
        .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", parts.join(","))
}

/// Decodes the constant data of a tensor (none for activations).
fn decode_const(model: &Model, si: usize, ti: usize, t: &Tensor) -> Result<Option<Const>> {
    let bytes = model.tensor_data(t);
    if bytes.is_empty() {
        return Ok(None);
    }
    let at = || Loc::tensor(si, ti).then(format!("{:?}", t.name));
    let data = Data::from_le_bytes(t.dtype, bytes).ok_or_else(|| {
        Error::unsupported(
            at(),
            format!(
                "constant of type {} ({} bytes)",
                fb::dtype_name(t.dtype),
                bytes.len()
            ),
        )
    })?;
    let shape = tensor_shape(t);
    let raw = match &t.sparsity {
        Some(sp) => {
            let pos = sparse::dense_positions(sp, &shape, data.len())
                .map_err(|e| Error::malformed(at(), format!("sparse tensor: {e}")))?;
            let n: usize = shape.iter().product();
            // Scatter the stored values: gather from [data..., zero] by inverse map.
            let mut src = vec![data.len(); n];
            for (k, &p) in pos.iter().enumerate() {
                src[p] = k;
            }
            let zero = Data::zeros(t.dtype, 1)
                .ok_or_else(|| Error::unsupported(at(), "sparse tensor of this type"))?;
            let all = kernels::elementwise::concat_data(&[&data, &zero])
                .map_err(|e| kernel_error(e, at()))?;
            Value {
                shape,
                data: all.gather(&src),
            }
        }
        None => Value::new(shape.clone(), data)
            .ok_or_else(|| Error::malformed(at(), format!("data does not fit shape {shape:?}")))?,
    };
    let real = match quantized(t) {
        Some(q) => Some(Arc::new(value::dequantize(&raw, q).ok_or_else(|| {
            Error::malformed(
                at(),
                format!(
                    "{} quantization scales do not fit shape {:?} (axis {})",
                    q.scale.len(),
                    raw.shape,
                    q.quantized_dimension
                ),
            )
        })?)),
        None => None,
    };
    Ok(Some(Const {
        raw: Arc::new(raw),
        real,
    }))
}

/// Orders the ops of a subgraph topologically (file order among ready ops) and finds
/// each tensor's last reader.
/// A pack cell for every op that packs a weight (see [`kernels::packs_weights`]) whose
/// weight (input 1) is a constant of the model, `None` for the others.
fn pack_cells(
    model: &Model,
    plans: &[Plan],
    consts: &[Vec<Option<Const>>],
) -> Vec<Vec<Option<PackCell>>> {
    model
        .subgraphs
        .iter()
        .enumerate()
        .map(|(si, sg)| {
            sg.operators
                .iter()
                .enumerate()
                .map(|(oi, op)| {
                    let constant_weight = op
                        .inputs
                        .get(1)
                        .and_then(|&t| usize::try_from(t).ok())
                        .is_some_and(|t| consts[si].get(t).is_some_and(Option::is_some));
                    (kernels::packs_weights(plans[si].ops[oi].0) && constant_weight)
                        .then(PackCell::new)
                })
                .collect()
        })
        .collect()
}

fn plan(model: &Model, si: usize) -> Result<Plan> {
    let sg = &model.subgraphs[si];
    let n = sg.operators.len();
    let producers = sg.producers();
    // An op depends on the producers of its inputs.
    let mut indeg = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (oi, op) in sg.operators.iter().enumerate() {
        let mut deps: Vec<usize> = op
            .inputs
            .iter()
            .filter_map(|&t| usize::try_from(t).ok())
            .filter_map(|t| producers[t])
            .filter(|&p| p != oi)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        indeg[oi] = deps.len();
        for d in deps {
            users[d].push(oi);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(oi) = ready.pop_first() {
        order.push(oi);
        for &u in &users[oi] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != n {
        return Err(Error::malformed(
            Loc::subgraph(si),
            "the operators form a cycle (no topological order)",
        ));
    }
    let mut last_use = vec![None; sg.tensors.len()];
    for (step, &oi) in order.iter().enumerate() {
        for &t in &sg.operators[oi].inputs {
            if let Ok(t) = usize::try_from(t) {
                last_use[t] = Some(step);
            }
        }
    }
    for &t in sg.outputs.iter().chain(&sg.inputs) {
        if let Ok(t) = usize::try_from(t) {
            last_use[t] = None;
        }
    }
    for (t, tensor) in sg.tensors.iter().enumerate() {
        if tensor.is_variable {
            last_use[t] = None;
        }
    }
    let ops = sg
        .operators
        .iter()
        .map(|op| (model.builtin(op), model.op_display_name(op)))
        .collect();
    Ok(Plan {
        order,
        last_use,
        ops,
    })
}

/// An UNIDIRECTIONAL_SEQUENCE_LSTM or SVDF with an int8 input runs LiteRT's integer
/// kernel (`kernels/lstm_int.rs`, `kernels/rnn.rs`), a plain LSTM with a float input and
/// int8 weights its hybrid kernel (`kernels/lstm_hybrid.rs`), on raw integer values
/// instead of the float simulation.
fn integer_lstm(b: B, op: &crate::ir::Operator, sg: &crate::ir::Subgraph) -> bool {
    let int8_input = op
        .inputs
        .first()
        .and_then(|&t| usize::try_from(t).ok())
        .is_some_and(|t| sg.tensors[t].dtype == TensorType::Int8);
    (matches!(b, B::UnidirectionalSequenceLstm | B::Svdf) && int8_input)
        || (b == B::UnidirectionalSequenceLstm && kernels::lstm_hybrid::runs_hybrid(op, sg))
}
