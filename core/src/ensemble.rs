//! Ensembles (`platform: "ensemble"` with `ensemble_scheduling`): a request runs through a
//! graph of other models wired by tensor names.
//!
//! Each step maps ensemble tensors to its model's inputs (`input_map { key: step input,
//! value: ensemble tensor }`) and its model's outputs to ensemble tensors (`output_map`).
//! The request's inputs are the first tensors; a step is sent as soon as every tensor it reads
//! exists, so independent branches run at the same time, each on its own model's scheduler
//! (batching with other requests of that model). Tensors move between steps as `Bytes`
//! handles: an output a driver wrote is the next step's input without a copy.
//!
//! There is no thread per request: a step's final response calls back into its [`Run`] on the
//! thread that answered it (the step model's instance), which records the outputs and sends
//! the steps they unblock. The first failure answers the request with the step named; the
//! steps still running finish on their own and their results are dropped.
//!
//! Every step model's own statistics count the requests the ensemble sent it (Triton's
//! per-step statistics are its composing models' statistics); the ensemble's record the
//! request from arrival to answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use ferrite_proto::inference::model_config::SchedulingChoice;
use parking_lot::Mutex;

use crate::config::{self, ModelConfig};
use crate::model::{LoadedModel, Pending, Reply, Shared, StepReply};
use crate::request::{InferenceRequest, InferenceResponse, Parameters, RequestedOutput};
use crate::server::{Inner, Server};
use crate::stats::{Execution, FailureReason};
use crate::tensor::Tensor;
use crate::trace::TraceCell;
use crate::{Error, Result, clock, postprocess};

/// The `platform` of an ensemble.
pub const PLATFORM: &str = "ensemble";

pub fn is_ensemble(config: &ModelConfig) -> bool {
    config.platform == PLATFORM
}

/// The models an ensemble's configuration runs, each once; empty for other models and for an
/// ensemble whose graph does not check (its load reports why).
pub fn step_models(config: &ModelConfig) -> Vec<String> {
    if !is_ensemble(config) {
        return Vec::new();
    }
    Plan::from_config(config)
        .map(|p| p.models())
        .unwrap_or_default()
}

/// One step as configured.
#[derive(Clone, Debug)]
pub struct Step {
    pub model: String,
    /// `None`: the newest ready version (`model_version: -1`).
    pub version: Option<i64>,
    /// (step model input, ensemble tensor), sorted by input name.
    pub inputs: Vec<(String, String)>,
    /// (step model output, ensemble tensor), sorted by output name.
    pub outputs: Vec<(String, String)>,
}

impl Step {
    fn describe(&self, index: usize) -> String {
        format!("step {index} (model '{}')", self.model)
    }
}

/// An ensemble's graph, checked: every tensor a step reads is an input of the ensemble or an
/// output of exactly one step, every ensemble output is made by a step, and no step waits on
/// itself through other steps.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub steps: Vec<Step>,
    max_batch_size: i32,
}

impl Plan {
    /// Reads and checks `ensemble_scheduling` (the steps' models are not needed yet).
    pub fn from_config(config: &ModelConfig) -> Result<Plan> {
        let name = &config.name;
        let bad = |msg: String| Error::invalid_arg(format!("ensemble '{name}': {msg}"));
        let Some(SchedulingChoice::EnsembleScheduling(es)) = &config.scheduling_choice else {
            return Err(bad(
                "platform \"ensemble\" needs ensemble_scheduling with at least one step".into(),
            ));
        };
        if es.step.is_empty() {
            return Err(bad("ensemble_scheduling has no step".into()));
        }
        let mut steps = Vec::new();
        for (i, s) in es.step.iter().enumerate() {
            if s.model_name.is_empty() {
                return Err(bad(format!(
                    "ensemble_scheduling.step[{i}].model_name is empty"
                )));
            }
            if s.model_name == *name {
                return Err(bad(format!(
                    "ensemble_scheduling.step[{i}] runs the ensemble itself"
                )));
            }
            if s.output_map.is_empty() {
                return Err(bad(format!(
                    "ensemble_scheduling.step[{i}] (model '{}') has an empty output_map",
                    s.model_name
                )));
            }
            let sorted = |m: &std::collections::BTreeMap<String, String>| {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            steps.push(Step {
                model: s.model_name.clone(),
                version: (s.model_version >= 0).then_some(s.model_version),
                inputs: sorted(&s.input_map),
                outputs: sorted(&s.output_map),
            });
        }

        // Who makes each tensor: the request (None) or a step.
        let mut producer: HashMap<&str, Option<usize>> = HashMap::new();
        for input in &config.input {
            producer.insert(&input.name, None);
        }
        for (i, step) in steps.iter().enumerate() {
            for (out, tensor) in &step.outputs {
                match producer.get(tensor.as_str()) {
                    Some(None) => {
                        return Err(bad(format!(
                            "{} maps its output '{out}' to '{tensor}', which is an input of the ensemble",
                            step.describe(i)
                        )));
                    }
                    Some(Some(j)) => {
                        return Err(bad(format!(
                            "tensor '{tensor}' is an output of both {} and {}",
                            steps[*j].describe(*j),
                            step.describe(i)
                        )));
                    }
                    None => {
                        producer.insert(tensor, Some(i));
                    }
                }
            }
        }
        for (i, step) in steps.iter().enumerate() {
            for (input, tensor) in &step.inputs {
                if !producer.contains_key(tensor.as_str()) {
                    return Err(bad(format!(
                        "{} reads '{tensor}' (for its input '{input}'), which is neither an input of the ensemble nor an output of a step",
                        step.describe(i)
                    )));
                }
            }
        }
        for output in &config.output {
            if !matches!(producer.get(output.name.as_str()), Some(Some(_))) {
                return Err(bad(format!(
                    "output '{}' of the ensemble is not an output of any step",
                    output.name
                )));
            }
        }
        // Every step must be reachable from the inputs: a cycle leaves some never ready.
        let mut have: HashSet<&str> = config.input.iter().map(|i| i.name.as_str()).collect();
        let mut done = vec![false; steps.len()];
        loop {
            let ready: Vec<usize> = (0..steps.len())
                .filter(|&i| {
                    !done[i]
                        && steps[i]
                            .inputs
                            .iter()
                            .all(|(_, t)| have.contains(t.as_str()))
                })
                .collect();
            if ready.is_empty() {
                break;
            }
            for i in ready {
                done[i] = true;
                have.extend(steps[i].outputs.iter().map(|(_, t)| t.as_str()));
            }
        }
        if let Some(i) = done.iter().position(|d| !d) {
            return Err(bad(format!(
                "{} can never run: its inputs depend on its own outputs (a cycle between steps)",
                steps[i].describe(i)
            )));
        }
        Ok(Plan {
            name: name.clone(),
            steps,
            max_batch_size: config.max_batch_size,
        })
    }

    /// Which steps a request that asks for `requested` outputs (empty: every output) runs, as
    /// Triton prunes its ensembles: a step none of whose outputs is requested or read by a step
    /// that runs does not run.
    pub fn needed_steps(&self, requested: &[RequestedOutput]) -> Vec<bool> {
        if requested.is_empty() {
            return vec![true; self.steps.len()];
        }
        let mut needed_tensors: HashSet<&str> = requested.iter().map(|o| o.name.as_str()).collect();
        let mut needed = vec![false; self.steps.len()];
        // Backwards from the requested outputs until nothing new is needed (the graph has no
        // cycles, so this ends after at most one pass per step).
        loop {
            let mut changed = false;
            for (i, step) in self.steps.iter().enumerate() {
                if !needed[i]
                    && step
                        .outputs
                        .iter()
                        .any(|(_, t)| needed_tensors.contains(t.as_str()))
                {
                    needed[i] = true;
                    changed = true;
                    needed_tensors.extend(step.inputs.iter().map(|(_, t)| t.as_str()));
                }
            }
            if !changed {
                return needed;
            }
        }
    }

    /// The models the ensemble runs, each once, in step order.
    pub fn models(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.steps
            .iter()
            .filter(|s| seen.insert(s.model.as_str()))
            .map(|s| s.model.clone())
            .collect()
    }

    /// Checks the steps against their loaded models: inputs and outputs exist, every input
    /// the model needs is fed, data types agree along every edge, and each model batches as
    /// far as the ensemble does.
    pub fn check_models(
        &self,
        config: &ModelConfig,
        model: impl Fn(&Step) -> Result<Arc<LoadedModel>>,
    ) -> Result<()> {
        let name = &self.name;
        let bad = |msg: String| Error::invalid_arg(format!("ensemble '{name}': {msg}"));
        // Each tensor's data type, from the ensemble's inputs and the steps' outputs.
        let mut types: HashMap<String, (i32, String)> = config
            .input
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    (i.data_type, "the ensemble's input".to_string()),
                )
            })
            .collect();
        let mut configs = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let loaded = model(step).map_err(|e| {
                Error::new(
                    e.code(),
                    format!(
                        "ensemble '{name}' depends on '{}' which has no loaded version: {}",
                        step.model,
                        e.message()
                    ),
                )
            })?;
            if loaded.decoupled() {
                return Err(Error::unsupported(format!(
                    "ensemble '{name}': {} runs a decoupled model; ensemble steps answer each request with exactly one response",
                    step.describe(i)
                )));
            }
            let c = loaded.config().clone();
            if self.max_batch_size > 0 && c.max_batch_size < self.max_batch_size {
                return Err(bad(format!(
                    "{} has max_batch_size {}, smaller than the ensemble's {}",
                    step.describe(i),
                    c.max_batch_size,
                    self.max_batch_size
                )));
            }
            for (out, tensor) in &step.outputs {
                let o = c.output.iter().find(|o| o.name == *out).ok_or_else(|| {
                    bad(format!(
                        "{} maps output '{out}', which model '{}' does not have",
                        step.describe(i),
                        step.model
                    ))
                })?;
                types.insert(
                    tensor.clone(),
                    (
                        o.data_type,
                        format!("output '{out}' of {}", step.describe(i)),
                    ),
                );
            }
            configs.push(c);
        }
        for (i, (step, c)) in self.steps.iter().zip(&configs).enumerate() {
            for (input, tensor) in &step.inputs {
                let ci = c.input.iter().find(|x| x.name == *input).ok_or_else(|| {
                    bad(format!(
                        "{} maps input '{input}', which model '{}' does not have",
                        step.describe(i),
                        step.model
                    ))
                })?;
                let (dt, from) = &types[tensor];
                if *dt != ci.data_type {
                    return Err(bad(format!(
                        "tensor '{tensor}' is {} ({from}) but input '{input}' of {} is {}",
                        type_name(*dt),
                        step.describe(i),
                        type_name(ci.data_type)
                    )));
                }
            }
            for ci in &c.input {
                if !ci.optional && !step.inputs.iter().any(|(n, _)| *n == ci.name) {
                    return Err(bad(format!(
                        "{} does not feed input '{}' of model '{}' (input_map)",
                        step.describe(i),
                        ci.name,
                        step.model
                    )));
                }
            }
        }
        for o in &config.output {
            let (dt, from) = &types[&o.name];
            if *dt != o.data_type {
                return Err(bad(format!(
                    "output '{}' of the ensemble is {} but {from} is {}",
                    o.name,
                    type_name(o.data_type),
                    type_name(*dt)
                )));
            }
        }
        Ok(())
    }
}

fn type_name(data_type: i32) -> String {
    config::datatype(data_type)
        .map(|t| format!("TYPE_{}", t.wire_name()))
        .unwrap_or_else(|| "TYPE_INVALID".to_string())
}

/// What every request of one loaded ensemble shares.
pub(crate) struct Ensemble {
    pub(crate) plan: Plan,
    server: Weak<Inner>,
    /// The steps each ensemble tensor unblocks.
    readers: HashMap<String, Vec<usize>>,
}

impl Ensemble {
    pub(crate) fn new(plan: Plan, server: &Server) -> Ensemble {
        let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, step) in plan.steps.iter().enumerate() {
            for (_, tensor) in &step.inputs {
                readers.entry(tensor.clone()).or_default().push(i);
            }
        }
        Ensemble {
            plan,
            server: Arc::downgrade(&server.inner),
            readers,
        }
    }

    /// Starts a (checked) request through the graph; its answer goes to `reply`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        self: &Arc<Self>,
        context: &Arc<Shared>,
        request: InferenceRequest,
        batch_size: u64,
        received_ns: u64,
        trace: Option<Arc<TraceCell>>,
        reply: Reply,
        pending: Pending,
    ) {
        let InferenceRequest {
            id,
            inputs,
            outputs,
            parameters,
            deadline,
            ..
        } = request;
        // Steps whose outputs nobody needs count as started: they never run.
        let started = self
            .plan
            .needed_steps(&outputs)
            .into_iter()
            .map(|needed| !needed)
            .collect();
        let run = Arc::new(Run {
            ensemble: Arc::clone(self),
            context: Arc::clone(context),
            id,
            requested: outputs,
            parameters,
            deadline,
            batch_size,
            received_ns,
            trace,
            reply,
            state: Mutex::new(RunState {
                tensors: inputs.into_iter().map(|t| (t.name.clone(), t)).collect(),
                started,
                running: 0,
                done: false,
            }),
            _pending: pending,
        });
        let first: Vec<usize> = (0..self.plan.steps.len()).collect();
        run.advance(&first);
    }
}

/// One request going through an ensemble.
struct Run {
    ensemble: Arc<Ensemble>,
    context: Arc<Shared>,
    id: String,
    requested: Vec<RequestedOutput>,
    parameters: Parameters,
    deadline: Option<std::time::Instant>,
    batch_size: u64,
    received_ns: u64,
    trace: Option<Arc<TraceCell>>,
    reply: Reply,
    state: Mutex<RunState>,
    /// Counts the request as in flight for the ensemble until it is answered.
    _pending: Pending,
}

struct RunState {
    tensors: HashMap<String, Tensor>,
    started: Vec<bool>,
    running: usize,
    /// Answered (or failed): late step results are dropped.
    done: bool,
}

impl Run {
    /// Sends every step among `candidates` whose inputs all exist; answers the request when
    /// nothing is running and nothing more can start.
    fn advance(self: &Arc<Self>, candidates: &[usize]) {
        let steps = &self.ensemble.plan.steps;
        let mut launch = Vec::new();
        let finished = {
            let mut state = self.state.lock();
            if state.done {
                return;
            }
            for &i in candidates {
                if !state.started[i]
                    && steps[i]
                        .inputs
                        .iter()
                        .all(|(_, t)| state.tensors.contains_key(t))
                {
                    state.started[i] = true;
                    state.running += 1;
                    let inputs: Vec<Tensor> = steps[i]
                        .inputs
                        .iter()
                        .map(|(input, t)| {
                            let mut tensor = state.tensors[t].clone();
                            tensor.name.clone_from(input);
                            tensor
                        })
                        .collect();
                    launch.push((i, inputs));
                }
            }
            if state.running == 0 {
                state.done = true;
                Some(std::mem::take(&mut state.tensors))
            } else {
                None
            }
        };
        // Outside the lock: a step may answer (even fail) before `enqueue` returns.
        for (i, inputs) in launch {
            self.launch(i, inputs);
        }
        if let Some(tensors) = finished {
            self.answer(tensors);
        }
    }

    fn launch(self: &Arc<Self>, index: usize, inputs: Vec<Tensor>) {
        let step = &self.ensemble.plan.steps[index];
        let request = InferenceRequest {
            model_name: step.model.clone(),
            model_version: step.version,
            id: self.id.clone(),
            inputs,
            outputs: step
                .outputs
                .iter()
                .map(|(name, _)| RequestedOutput {
                    name: name.clone(),
                    ..Default::default()
                })
                .collect(),
            parameters: self.parameters.clone(),
            raw_input: false,
            deadline: self.deadline,
        };
        let Some(inner) = self.ensemble.server.upgrade() else {
            self.fail(index, Error::unavailable("the server is shutting down"));
            return;
        };
        let server = Server { inner };
        let sent = server.model(&step.model, step.version).and_then(|model| {
            model.enqueue_to(
                request,
                clock::now_ns(),
                None,
                Reply::Step(Arc::new(StepDone {
                    run: Arc::clone(self),
                    index,
                })),
            )
        });
        if let Err(e) = sent {
            self.fail(index, e);
        }
    }

    /// A step's final response: its outputs become tensors, and the steps reading them go.
    fn step_done(self: &Arc<Self>, index: usize, response: Result<InferenceResponse>) {
        let step = &self.ensemble.plan.steps[index];
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return self.fail(index, e),
        };
        let mut unblocked = Vec::new();
        {
            let mut state = self.state.lock();
            if state.done {
                return;
            }
            for (output, tensor) in &step.outputs {
                let Some(pos) = response.outputs.iter().position(|o| o.name == *output) else {
                    drop(state);
                    return self.fail(
                        index,
                        Error::internal(format!("the response has no output '{output}'")),
                    );
                };
                let mut t = response.outputs.swap_remove(pos);
                t.name.clone_from(tensor);
                state.tensors.insert(tensor.clone(), t);
                if let Some(readers) = self.ensemble.readers.get(tensor) {
                    unblocked.extend_from_slice(readers);
                }
            }
            state.running -= 1;
        }
        unblocked.sort_unstable();
        unblocked.dedup();
        self.advance(&unblocked);
    }

    fn fail(&self, index: usize, e: Error) {
        {
            let mut state = self.state.lock();
            if state.done {
                return;
            }
            state.done = true;
            state.tensors.clear();
        }
        let step = &self.ensemble.plan.steps[index];
        let error = Error::new(
            e.code(),
            format!(
                "in ensemble '{}', {}: {}",
                self.ensemble.plan.name,
                step.describe(index),
                e.message()
            ),
        );
        let ns = clock::now_ns().saturating_sub(self.received_ns);
        self.context
            .stats
            .record_failure(FailureReason::Backend, ns);
        self.send(Err(error));
    }

    /// Every step ran: the ensemble's outputs are the answer.
    fn answer(&self, mut tensors: HashMap<String, Tensor>) {
        let c = &self.context;
        let outputs: Vec<Tensor> = c
            .outputs
            .iter()
            .filter_map(|o| tensors.remove(&o.name))
            .collect();
        let result = postprocess::finish(&c.name, &c.outputs, &self.requested, c.batching, outputs)
            .map(|outputs| InferenceResponse {
                model_name: c.name.clone(),
                model_version: c.version,
                id: self.id.clone(),
                outputs,
                parameters: Default::default(),
            });
        let end = clock::now_ns();
        let ns = end.saturating_sub(self.received_ns);
        match &result {
            Ok(_) => {
                c.stats.record_queue(0);
                c.stats.record_execution(Execution {
                    requests: 1,
                    batch_size: self.batch_size,
                    padding: 0,
                    input_ns: 0,
                    infer_ns: ns,
                    output_ns: 0,
                });
                c.stats.record_success(ns);
            }
            Err(_) => c.stats.record_failure(FailureReason::Other, ns),
        }
        self.send(result);
    }

    fn send(&self, result: Result<InferenceResponse>) {
        if let Some(t) = &self.trace {
            t.finish(clock::now_ns());
        }
        self.reply.send(result, true);
    }
}

/// The reply address of one step's request.
struct StepDone {
    run: Arc<Run>,
    index: usize,
}

impl StepReply for StepDone {
    fn reply(&self, response: Result<InferenceResponse>, final_response: bool) {
        if !final_response {
            // A decoupled step's partial responses: not part of an ensemble's graph.
            self.run.fail(
                self.index,
                Error::unsupported(
                    "the model sent more than one response; decoupled models cannot be ensemble steps",
                ),
            );
            return;
        }
        self.run.step_done(self.index, response);
    }

    fn abandoned(&self) -> bool {
        self.run.reply.is_closed() || self.run.state.lock().done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan> {
        Plan::from_config(&ferrite_proto::parse_model_config(text).unwrap())
    }

    const IO: &str = r#"name: "e" platform: "ensemble" max_batch_size: 4
        input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2 ] } ]
        output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] } ]"#;

    #[test]
    fn a_diamond_is_a_plan() {
        let p = plan(&format!(
            r#"{IO} ensemble_scheduling {{ step [
              {{ model_name: "a" model_version: -1 input_map {{ key: "x" value: "IN" }} output_map {{ key: "y" value: "A" }} }},
              {{ model_name: "b" model_version: 2 input_map {{ key: "x" value: "IN" }} output_map {{ key: "y" value: "B" }} }},
              {{ model_name: "c" model_version: -1 input_map [ {{ key: "p" value: "A" }}, {{ key: "q" value: "B" }} ] output_map {{ key: "y" value: "OUT" }} }}
            ] }}"#
        ))
        .unwrap();
        assert_eq!(p.models(), vec!["a", "b", "c"]);
        assert_eq!(p.steps[0].version, None);
        assert_eq!(p.steps[1].version, Some(2));
        assert_eq!(
            p.steps[2].inputs,
            vec![("p".into(), "A".into()), ("q".into(), "B".into())]
        );
    }

    #[test]
    fn steps_whose_outputs_nobody_needs_are_pruned() {
        // IN -> a -> A -> c -> OUT1;  IN -> b -> B -> d -> OUT2;  A -> d too.
        let p = plan(
            r#"name: "e" platform: "ensemble" max_batch_size: 4
            input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2 ] } ]
            output [ { name: "OUT1" data_type: TYPE_FP32 dims: [ 2 ] },
                     { name: "OUT2" data_type: TYPE_FP32 dims: [ 2 ] } ]
            ensemble_scheduling { step [
              { model_name: "a" input_map { key: "x" value: "IN" } output_map { key: "y" value: "A" } },
              { model_name: "b" input_map { key: "x" value: "IN" } output_map { key: "y" value: "B" } },
              { model_name: "c" input_map { key: "x" value: "A" } output_map { key: "y" value: "OUT1" } },
              { model_name: "d" input_map [ { key: "x" value: "B" }, { key: "z" value: "A" } ] output_map { key: "y" value: "OUT2" } }
            ] }"#,
        )
        .unwrap();
        let asked = |names: &[&str]| -> Vec<RequestedOutput> {
            names
                .iter()
                .map(|n| RequestedOutput {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect()
        };
        assert_eq!(p.needed_steps(&[]), vec![true; 4]);
        assert_eq!(
            p.needed_steps(&asked(&["OUT1"])),
            vec![true, false, true, false]
        );
        assert_eq!(
            p.needed_steps(&asked(&["OUT2"])),
            vec![true, true, false, true]
        );
        assert_eq!(p.needed_steps(&asked(&["OUT2", "OUT1"])), vec![true; 4]);
    }

    #[test]
    fn broken_graphs_are_refused_with_the_reason() {
        let cases = [
            ("", "needs ensemble_scheduling"),
            ("ensemble_scheduling { }", "has no step"),
            (
                r#"ensemble_scheduling { step [ { model_name: "a" input_map { key: "x" value: "NOPE" } output_map { key: "y" value: "OUT" } } ] }"#,
                "step 0 (model 'a') reads 'NOPE' (for its input 'x'), which is neither",
            ),
            (
                r#"ensemble_scheduling { step [ { model_name: "a" input_map { key: "x" value: "IN" } output_map { key: "y" value: "T" } } ] }"#,
                "output 'OUT' of the ensemble is not an output of any step",
            ),
            (
                r#"ensemble_scheduling { step [
                   { model_name: "a" input_map { key: "x" value: "IN" } output_map { key: "y" value: "OUT" } },
                   { model_name: "b" input_map { key: "x" value: "IN" } output_map { key: "y" value: "OUT" } } ] }"#,
                "tensor 'OUT' is an output of both step 0 (model 'a') and step 1 (model 'b')",
            ),
            (
                r#"ensemble_scheduling { step [
                   { model_name: "a" input_map [ { key: "x" value: "IN" }, { key: "z" value: "L" } ] output_map { key: "y" value: "K" } },
                   { model_name: "b" input_map { key: "x" value: "K" } output_map [ { key: "y" value: "L" }, { key: "w" value: "OUT" } ] } ] }"#,
                "step 0 (model 'a') can never run",
            ),
            (
                r#"ensemble_scheduling { step [ { model_name: "a" input_map { key: "x" value: "IN" } output_map { key: "y" value: "IN" } } ] }"#,
                "which is an input of the ensemble",
            ),
            (
                r#"ensemble_scheduling { step [ { model_name: "e" input_map { key: "x" value: "IN" } output_map { key: "y" value: "OUT" } } ] }"#,
                "runs the ensemble itself",
            ),
        ];
        for (scheduling, want) in cases {
            let e = plan(&format!("{IO} {scheduling}")).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArg);
            assert!(e.message().starts_with("ensemble 'e': "), "{}", e.message());
            assert!(e.message().contains(want), "{want}: {}", e.message());
        }
    }
}
