//! The sequence batcher: stateful models whose requests come in sequences named by a
//! correlation id (request parameters `sequence_id`, `sequence_start`, `sequence_end`).
//!
//! Every instance has slots: `max(1, max_batch_size)` with the `direct` strategy,
//! `max_candidate_sequences` with `oldest`. A sequence takes a slot (the lowest free one of
//! the instance with the most free) with its START request and keeps it until its END (or
//! until it has been idle for `max_sequence_idle_microseconds`); START requests that find every
//! slot taken wait in a backlog, and take freed slots in arrival order. The requests of one
//! sequence run one at a time, in order, on the sequence's instance, one batch per instance at
//! a time. Batches form as Triton's do:
//! - `direct` (Triton's `DirectSequenceBatch`): a row for every slot up to the last one whose
//!   sequence has a request ready; idle slots below it, and requests whose shapes differ from
//!   the first ready one's, get null requests (not ready, no response, in no request's
//!   statistics but in the execution's batch size). With `max_queue_delay_microseconds` and
//!   `minimum_slot_utilization`, a batch waits while fewer than that share of the slots is
//!   ready, at most the delay.
//! - `oldest` (Triton's `OldestSequenceBatch`, a dynamic batcher over the candidate
//!   sequences): the ready requests, oldest first, batched by the dynamic batcher's rules
//!   ([`crate::batcher::decide_queue`]: equal shapes, preferred sizes, the delay).
//!
//! This server keeps implicit state itself, so which slot a sequence holds does not change a
//! model's answers.
//!
//! Before a request runs the batcher gives it the model's control inputs (START, END, READY,
//! CORRID in the forms the configuration names: `int32_false_true`, `fp32_false_true`,
//! `bool_false_true`, or CORRID's `data_type`) and, for implicit state, the state input:
//! the sequence's last state output, or the `initial_state` for its first request. The state
//! output is taken out of the response and kept for the next request.
//!
//! All bookkeeping is under one short lock, and dispatch happens on the thread that made
//! progress possible (a new request, an instance that finished, the timer that releases idle
//! sequences and ends queue delays).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::config::{self, ModelConfig};
use crate::request::Parameters;
use crate::tensor::{DataType, Tensor};
use crate::{Error, Result};
use ferrite_proto::inference::model_config::SchedulingChoice;
use ferrite_proto::inference::model_sequence_batching::control::Kind as ControlKind;
use ferrite_proto::inference::model_sequence_batching::initial_state::StateData;

/// A correlation id: Triton's uint64 or string form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CorrId {
    U64(u64),
    Str(String),
}

impl fmt::Display for CorrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorrId::U64(v) => write!(f, "{v}"),
            // As Triton writes it in its messages: no quotes.
            CorrId::Str(s) => write!(f, "{s}"),
        }
    }
}

/// A request's place in its sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceFlags {
    pub id: CorrId,
    pub start: bool,
    pub end: bool,
}

impl SequenceFlags {
    /// Reads `sequence_id` (a non-zero integer or a non-empty string), `sequence_start` and
    /// `sequence_end` (booleans) from a request's parameters.
    pub fn from_parameters(params: &Parameters, model: &str) -> Result<SequenceFlags> {
        let missing = || {
            Error::invalid_arg(format!(
                "inference request to model '{model}' must specify a non-zero or non-empty correlation ID"
            ))
        };
        let id = match params.get("sequence_id") {
            None => return Err(missing()),
            // gRPC carries the id in an int64_param: Triton takes its bits as the uint64 id
            // (2^63 and above arrive negative).
            Some(serde_json::Value::Number(n)) => {
                match n.as_u64().or_else(|| n.as_i64().map(|v| v as u64)) {
                    Some(0) | None => return Err(missing()),
                    Some(v) => CorrId::U64(v),
                }
            }
            Some(serde_json::Value::String(s)) if !s.is_empty() => CorrId::Str(s.clone()),
            Some(_) => return Err(missing()),
        };
        let flag = |name: &str| match params.get(name) {
            None => Ok(false),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(other) => Err(Error::invalid_arg(format!(
                "parameter '{name}' must be a boolean, got {other}"
            ))),
        };
        Ok(SequenceFlags {
            id,
            start: flag("sequence_start")?,
            end: flag("sequence_end")?,
        })
    }
}

/// One control input: its name, what it carries, its type, and its false/true values.
#[derive(Clone, Debug)]
struct Control {
    name: String,
    kind: ControlKind,
    datatype: DataType,
    /// Little-endian bytes of the false and true values (START, END, READY).
    values: [Vec<u8>; 2],
}

/// One implicit state: input and output names, type, dims, and the first request's value.
#[derive(Clone, Debug)]
struct StateSpec {
    input: String,
    output: String,
    datatype: DataType,
    dims: Vec<i64>,
    initial: Bytes,
}

/// What the batcher needs of the configuration.
#[derive(Clone, Debug)]
pub struct SequenceConfig {
    controls: Vec<Control>,
    states: Vec<StateSpec>,
    idle: Duration,
    slots_per_instance: usize,
    batch_dim: bool,
    /// Most requests in one batch (max(1, max_batch_size)).
    max_batch: usize,
    /// The strategy's max_queue_delay_microseconds (0: never wait).
    max_delay: Duration,
    /// `oldest`: how batches of the candidate sequences' requests form (the dynamic
    /// batcher's rules: preferred sizes, delay, max_batch_size).
    oldest: crate::batcher::BatchPolicy,
    /// `direct`: every slot up to the last ready one is a batch row (Triton's null requests
    /// fill the others), and a batch waits for the delay only while fewer than this share of
    /// the slots is ready (`minimum_slot_utilization`).
    direct: Option<f32>,
}

impl SequenceConfig {
    /// The sequence batching part of a configuration (`None` for other models).
    pub fn from_config(config: &ModelConfig, model_dir: &std::path::Path) -> Result<Option<Self>> {
        let Some(SchedulingChoice::SequenceBatching(sb)) = &config.scheduling_choice else {
            return Ok(None);
        };
        let mut controls = Vec::new();
        for input in &sb.control_input {
            for c in &input.control {
                let kind = ControlKind::try_from(c.kind).map_err(|_| {
                    Error::invalid_arg(format!("control input '{}': unknown kind", input.name))
                })?;
                let pair = |v: [Vec<u8>; 2], t: DataType| (t, v);
                let (datatype, values) = if kind == ControlKind::ControlSequenceCorrid {
                    let t = config::datatype(c.data_type)
                        .filter(|t| {
                            matches!(
                                t,
                                DataType::Uint64 | DataType::Int64 | DataType::Uint32 | DataType::Int32 | DataType::Bytes
                            )
                        })
                        .ok_or_else(|| {
                            Error::invalid_arg(format!(
                                "control input '{}': CONTROL_SEQUENCE_CORRID needs data_type TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING",
                                input.name
                            ))
                        })?;
                    (t, [Vec::new(), Vec::new()])
                } else if c.int32_false_true.len() == 2 {
                    pair(
                        [
                            c.int32_false_true[0].to_le_bytes().to_vec(),
                            c.int32_false_true[1].to_le_bytes().to_vec(),
                        ],
                        DataType::Int32,
                    )
                } else if c.fp32_false_true.len() == 2 {
                    pair(
                        [
                            c.fp32_false_true[0].to_le_bytes().to_vec(),
                            c.fp32_false_true[1].to_le_bytes().to_vec(),
                        ],
                        DataType::Fp32,
                    )
                } else if c.bool_false_true.len() == 2 {
                    pair(
                        [
                            vec![u8::from(c.bool_false_true[0])],
                            vec![u8::from(c.bool_false_true[1])],
                        ],
                        DataType::Bool,
                    )
                } else {
                    return Err(Error::invalid_arg(format!(
                        "control input '{}': a {} control needs two values in int32_false_true, fp32_false_true or bool_false_true",
                        input.name,
                        kind.as_str_name()
                    )));
                };
                controls.push(Control {
                    name: input.name.clone(),
                    kind,
                    datatype,
                    values,
                });
            }
        }
        let mut states = Vec::new();
        for s in &sb.state {
            let datatype = config::datatype(s.data_type).ok_or_else(|| {
                Error::invalid_arg(format!("state '{}': data_type is not set", s.input_name))
            })?;
            let count = crate::tensor::element_count(&s.dims);
            let initial = match s.initial_state.first() {
                Some(init) => match &init.state_data {
                    Some(StateData::DataFile(file)) => {
                        // Triton: row-major binary in <model>/initial_state/<data_file>, which
                        // must stay there (after symlinks) and is read with a limit.
                        let folder = model_dir.join("initial_state");
                        let path = crate::confine::inside(&folder, file).ok_or_else(|| {
                            Error::invalid_arg(format!(
                                "state '{}': initial_state data_file '{file}' is outside {}",
                                s.input_name,
                                folder.display()
                            ))
                        })?;
                        let data =
                            crate::confine::read_limited(&path, "initial state").map_err(|e| {
                                Error::invalid_arg(format!(
                                    "state '{}': {}",
                                    s.input_name,
                                    e.message()
                                ))
                            })?;
                        if let Some(size) = datatype.element_size()
                            && data.len() != count * size
                        {
                            return Err(Error::invalid_arg(format!(
                                "state '{}': initial state {} holds {} bytes, but {} elements of TYPE_{} (dims {:?}) take {}",
                                s.input_name,
                                path.display(),
                                data.len(),
                                count,
                                datatype.wire_name(),
                                s.dims,
                                count * size
                            )));
                        }
                        Bytes::from(data)
                    }
                    _ => zeros(datatype, count),
                },
                None => zeros(datatype, count),
            };
            states.push(StateSpec {
                input: s.input_name.clone(),
                output: s.output_name.clone(),
                datatype,
                dims: s.dims.clone(),
                initial,
            });
        }
        use ferrite_proto::inference::model_sequence_batching::StrategyChoice;
        let max_batch = config.max_batch_size.max(1) as usize;
        // direct: a slot per batch row; oldest: max_candidate_sequences sequences per
        // instance, batched oldest request first, preferring the configured sizes.
        let direct = match &sb.strategy_choice {
            Some(StrategyChoice::Oldest(_)) => None,
            Some(StrategyChoice::Direct(d)) => Some(d.minimum_slot_utilization),
            None => Some(0.0),
        };
        let (slots_per_instance, preferred, delay_us) = match &sb.strategy_choice {
            Some(StrategyChoice::Oldest(o)) => (
                if o.max_candidate_sequences > 0 {
                    o.max_candidate_sequences as usize
                } else {
                    max_batch
                },
                o.preferred_batch_size.clone(),
                o.max_queue_delay_microseconds,
            ),
            Some(StrategyChoice::Direct(d)) => {
                (max_batch, Vec::new(), d.max_queue_delay_microseconds)
            }
            None => (max_batch, Vec::new(), 0),
        };
        let max_delay = Duration::from_micros(delay_us);
        // Triton's oldest strategy runs a dynamic batcher over its candidate sequences' next
        // requests: its preferred sizes (default [max_batch_size]) and delay.
        let oldest = crate::batcher::BatchPolicy::new(max_batch as u64, &preferred, delay_us);
        Ok(Some(SequenceConfig {
            controls,
            states,
            idle: Duration::from_micros(if sb.max_sequence_idle_microseconds == 0 {
                1_000_000
            } else {
                sb.max_sequence_idle_microseconds
            }),
            slots_per_instance,
            batch_dim: config.max_batch_size > 0,
            max_batch,
            max_delay,
            oldest,
            direct,
        }))
    }

    /// The inputs the server supplies (control and state inputs).
    pub fn server_inputs(&self) -> impl Iterator<Item = &str> {
        self.controls
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.states.iter().map(|s| s.input.as_str()))
    }

    /// The state outputs (kept by the server, not returned to clients).
    pub fn state_outputs(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|s| s.output.as_str())
    }

    fn shape(&self, dims: &[i64]) -> Vec<i64> {
        let mut shape = Vec::with_capacity(dims.len() + 1);
        if self.batch_dim {
            shape.push(1);
        }
        shape.extend_from_slice(dims);
        shape
    }

    /// The control and state inputs of one request.
    fn inputs_for(&self, flags: &SequenceFlags, state: Option<&[Tensor]>) -> Vec<Tensor> {
        self.controls_and_state(Some(flags), state)
    }

    /// The control and state inputs of a null request (Triton's, for a slot with nothing
    /// ready): not ready, no START or END, CORRID 0, the given sequence's state (its shapes)
    /// or the initial state.
    fn null_inputs(&self, state: Option<&[Tensor]>) -> Vec<Tensor> {
        self.controls_and_state(None, state)
    }

    fn controls_and_state(
        &self,
        flags: Option<&SequenceFlags>,
        state: Option<&[Tensor]>,
    ) -> Vec<Tensor> {
        let mut out = Vec::with_capacity(self.controls.len() + self.states.len());
        let null_id = CorrId::U64(0);
        for c in &self.controls {
            let (start, end, ready, id) = match flags {
                Some(f) => (f.start, f.end, true, &f.id),
                None => (false, false, false, &null_id),
            };
            let data = match c.kind {
                ControlKind::ControlSequenceStart => c.values[usize::from(start)].clone(),
                ControlKind::ControlSequenceEnd => c.values[usize::from(end)].clone(),
                ControlKind::ControlSequenceReady => c.values[usize::from(ready)].clone(),
                ControlKind::ControlSequenceCorrid => corrid_bytes(id, c.datatype),
            };
            out.push(Tensor::new(
                c.name.clone(),
                c.datatype,
                self.shape(&[1]),
                Bytes::from(data),
            ));
        }
        for s in &self.states {
            let kept = state.and_then(|st| st.iter().find(|t| t.name == s.input));
            out.push(match kept {
                Some(t) => t.clone(),
                None => Tensor::new(
                    s.input.clone(),
                    s.datatype,
                    self.shape(&s.dims),
                    s.initial.clone(),
                ),
            });
        }
        out
    }
}

fn zeros(datatype: DataType, count: usize) -> Bytes {
    match datatype {
        // BYTES: `count` empty strings (a 4-byte zero length each).
        DataType::Bytes => Bytes::from(vec![0u8; 4 * count]),
        t => Bytes::from(vec![0u8; t.element_size().unwrap_or(1) * count]),
    }
}

fn corrid_bytes(id: &CorrId, datatype: DataType) -> Vec<u8> {
    match (id, datatype) {
        (CorrId::U64(v), DataType::Uint64) => v.to_le_bytes().to_vec(),
        (CorrId::U64(v), DataType::Int64) => (*v as i64).to_le_bytes().to_vec(),
        (CorrId::U64(v), DataType::Uint32) => (*v as u32).to_le_bytes().to_vec(),
        (CorrId::U64(v), DataType::Int32) => (*v as i32).to_le_bytes().to_vec(),
        (id, DataType::Bytes) => {
            let text = match id {
                CorrId::U64(v) => v.to_string(),
                CorrId::Str(s) => s.clone(),
            };
            let mut b = (text.len() as u32).to_le_bytes().to_vec();
            b.extend_from_slice(text.as_bytes());
            b
        }
        // A string id for a numeric CORRID is refused when the request arrives, and
        // from_config allows no other CORRID type.
        (_, t) => vec![0u8; t.element_size().unwrap_or(8)],
    }
}

/// What the batcher does with the requests it holds (implemented by the model's queued job).
pub(crate) trait SequenceJob: Send {
    fn flags(&self) -> &SequenceFlags;
    /// When the request was queued.
    fn enqueued(&self) -> Instant;
    /// Adds the server's inputs and the place the state output goes.
    fn prepare(&mut self, inputs: Vec<Tensor>, state_out: Arc<Mutex<Vec<Tensor>>>);
    /// Answers the request with an error without running it.
    fn fail(self, error: Error);
    /// A null request like this one (Triton's, for the `direct` strategy's idle slots): the
    /// same client inputs, no response, counted in no request's statistics.
    fn null_copy(&self) -> Self
    where
        Self: Sized;
    /// Whether its inputs have the shapes of `other`'s: only such requests share a `direct`
    /// batch (Triton's equal-shape rule for inputs that are not ragged).
    fn same_shapes(&self, other: &Self) -> bool;
}

struct Sequence<J> {
    instance: usize,
    /// Its row in the instance's batches (`direct`).
    slot: usize,
    queue: VecDeque<J>,
    running: bool,
    last: Instant,
    state: Option<Vec<Tensor>>,
    /// Where the running request leaves its state outputs.
    state_out: Arc<Mutex<Vec<Tensor>>>,
}

struct Table<J> {
    sequences: HashMap<CorrId, Sequence<J>>,
    /// Free slots per instance (the lowest is taken first).
    free: Vec<std::collections::BTreeSet<usize>>,
    /// Sequences whose START waits for a slot, in arrival order, with their requests.
    backlog: VecDeque<(CorrId, VecDeque<J>)>,
    busy: Vec<bool>,
    /// The earliest moment a batch held back by a queue delay is due (the timer wakes then).
    wake_at: Option<Instant>,
    /// The sequences of each instance's running batch, and the slot of those whose request
    /// ended them (they have already left `sequences`; the slot is freed when the batch is
    /// done).
    in_flight: Vec<Vec<(CorrId, Option<usize>)>>,
}

/// A batch formed for an instance: the sequences in it (with the slot of each one that
/// ended), and the requests in batch order.
type Formed<J> = (Vec<(CorrId, Option<usize>)>, Vec<J>);

/// The sequence batcher of one model version.
pub(crate) struct Sequencer<J> {
    model: String,
    config: SequenceConfig,
    table: Mutex<Table<J>>,
    instances: Vec<Sender<Vec<J>>>,
    backlog_limit: usize,
    /// Tells the timer that a batch became due sooner (see [`Sequencer::wakeups`]).
    wake: (Sender<()>, crossbeam_channel::Receiver<()>),
}

impl<J: SequenceJob> Sequencer<J> {
    pub(crate) fn new(
        model: &str,
        config: SequenceConfig,
        instances: Vec<Sender<Vec<J>>>,
        backlog_limit: usize,
    ) -> Sequencer<J> {
        let n = instances.len();
        Sequencer {
            model: model.to_string(),
            table: Mutex::new(Table {
                sequences: HashMap::new(),
                free: vec![(0..config.slots_per_instance).collect(); n],
                backlog: VecDeque::new(),
                busy: vec![false; n],
                in_flight: vec![Vec::new(); n],
                wake_at: None,
            }),
            config,
            instances,
            backlog_limit,
            wake: crossbeam_channel::bounded(1),
        }
    }

    /// Takes a request of a sequence, or refuses it (unknown sequence without START, START of
    /// a running sequence, no slot and a full backlog).
    pub(crate) fn submit(&self, job: J) -> Result<()> {
        let flags = job.flags().clone();
        if let CorrId::Str(_) = flags.id
            && let Some(c) = self.config.controls.iter().find(|c| {
                c.kind == ControlKind::ControlSequenceCorrid && c.datatype != DataType::Bytes
            })
        {
            return Err(Error::invalid_arg(format!(
                "sequence batching control '{}' (CONTROL_SEQUENCE_CORRID) of model '{}' has data type TYPE_{}, but the request's sequence_id is the string '{}'",
                c.name,
                self.model,
                c.datatype.wire_name(),
                flags.id
            )));
        }
        let mut table = self.table.lock();
        let now = Instant::now();
        // A START for a sequence in progress (as in Triton): the old one did not end, or two
        // clients use one id. The new sequence follows the old one's queued requests in the
        // same slot, from its initial state.
        let restart = |id: &CorrId| {
            tracing::warn!(
                "sequence {id} of model '{}' started again before it ended; its earlier requests are handled first",
                self.model
            );
        };
        if let Some(seq) = table.sequences.get_mut(&flags.id) {
            if flags.start {
                restart(&flags.id);
            }
            seq.queue.push_back(job);
            seq.last = now;
        } else if let Some((_, queue)) = table.backlog.iter_mut().find(|(id, _)| *id == flags.id) {
            if flags.start {
                restart(&flags.id);
            }
            queue.push_back(job);
        } else if !flags.start {
            return Err(Error::invalid_arg(format!(
                "inference request for sequence {} to model '{}' must specify the START flag on the first request of the sequence",
                flags.id, self.model
            )));
        } else if let Some(instance) = pick_instance(&table.free) {
            let slot = table.free[instance].pop_first().expect("a free slot");
            table.sequences.insert(
                flags.id.clone(),
                Sequence {
                    instance,
                    slot,
                    queue: VecDeque::from([job]),
                    running: false,
                    last: now,
                    state: None,
                    state_out: Arc::default(),
                },
            );
        } else if table.backlog.len() < self.backlog_limit {
            table
                .backlog
                .push_back((flags.id.clone(), VecDeque::from([job])));
        } else {
            return Err(Error::unavailable(format!(
                "every sequence slot of model '{}' is taken and {} more sequences are waiting for one",
                self.model, self.backlog_limit
            )));
        }
        self.dispatch(&mut table);
        Ok(())
    }

    /// An instance finished its batch: its sequences may run their next requests, ended ones
    /// free their slots.
    pub(crate) fn instance_idle(&self, instance: usize) {
        let mut table = self.table.lock();
        table.busy[instance] = false;
        let done = std::mem::take(&mut table.in_flight[instance]);
        let now = Instant::now();
        for (id, ended) in done {
            if let Some(slot) = ended {
                self.release_slot(&mut table, instance, slot);
                continue;
            }
            let Some(seq) = table.sequences.get_mut(&id) else {
                continue;
            };
            seq.running = false;
            seq.last = now;
            let outputs = std::mem::take(&mut *seq.state_out.lock());
            if !outputs.is_empty() {
                let kept: Vec<Tensor> = self
                    .config
                    .states
                    .iter()
                    .filter_map(|s| {
                        outputs.iter().find(|t| t.name == s.output).map(|t| Tensor {
                            name: s.input.clone(),
                            ..t.clone()
                        })
                    })
                    .collect();
                seq.state = Some(kept);
            }
        }
        self.dispatch(&mut table);
    }

    /// Releases the slots of sequences idle for longer than `max_sequence_idle_microseconds`.
    pub(crate) fn expire_idle(&self) {
        let mut table = self.table.lock();
        let idle = self.config.idle;
        let expired: Vec<CorrId> = table
            .sequences
            .iter()
            .filter(|(_, s)| !s.running && s.queue.is_empty() && s.last.elapsed() >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let seq = table.sequences.remove(&id).expect("present");
            tracing::debug!(
                "sequence {id} of model '{}' idle for {:?}: slot released",
                self.model,
                idle
            );
            self.release_slot(&mut table, seq.instance, seq.slot);
        }
        self.dispatch(&mut table);
    }

    /// Whether requests of sequences that hold a slot are queued or running (an unload waits
    /// for them). Sequences in the backlog do not count: they could wait for a slot until an
    /// open sequence goes idle, and `drain` answers them.
    pub(crate) fn has_work(&self) -> bool {
        let table = self.table.lock();
        table.busy.iter().any(|b| *b) || table.sequences.values().any(|s| !s.queue.is_empty())
    }

    /// The timer's period: often enough for idle sequences and for batches waiting out
    /// their queue delay.
    pub(crate) fn idle_check_period(&self) -> Duration {
        let mut period = self.config.idle / 4;
        if !self.config.max_delay.is_zero() {
            period = period.min(self.config.max_delay / 2);
        }
        period.clamp(Duration::from_micros(100), Duration::from_millis(100))
    }

    /// Every request waiting here fails (the model is going away).
    pub(crate) fn drain(&self, error: impl Fn() -> Error) {
        let mut table = self.table.lock();
        let sequences: Vec<_> = table.sequences.drain().collect();
        for (_, seq) in sequences {
            for job in seq.queue {
                job.fail(error());
            }
        }
        for (_, queue) in table.backlog.drain(..) {
            for job in queue {
                job.fail(error());
            }
        }
    }

    fn release_slot(&self, table: &mut Table<J>, instance: usize, slot: usize) {
        if let Some((id, queue)) = table.backlog.pop_front() {
            // The first sequence of the backlog takes the slot.
            table.sequences.insert(
                id,
                Sequence {
                    instance,
                    slot,
                    queue,
                    running: false,
                    last: Instant::now(),
                    state: None,
                    state_out: Arc::default(),
                },
            );
        } else {
            table.free[instance].insert(slot);
        }
    }

    /// Sends each idle instance a batch: the next request of each of its sequences that has
    /// one and is not running. A batch held back by its delay sets `wake_at`, and the timer
    /// is told so it wakes on time.
    fn dispatch(&self, table: &mut Table<J>) {
        table.wake_at = None;
        for instance in 0..self.instances.len() {
            if table.busy[instance] {
                continue;
            }
            let Some((ids, batch)) = (match self.config.direct {
                Some(utilization) => self.direct_batch(table, instance, utilization),
                None => self.oldest_batch(table, instance),
            }) else {
                continue;
            };
            table.busy[instance] = true;
            table.in_flight[instance] = ids;
            if let Err(e) = self.instances[instance].try_send(batch) {
                // The instance is gone (the model is unloading): answer the requests.
                for job in e.into_inner() {
                    job.fail(Error::unavailable(format!(
                        "model '{}' is unloading",
                        self.model
                    )));
                }
            }
        }
        if table.wake_at.is_some() {
            let _ = self.wake.0.try_send(());
        }
    }

    /// Notes that a batch waits until `at`.
    fn note_due(table: &mut Table<J>, at: Instant) {
        table.wake_at = Some(table.wake_at.map_or(at, |w| w.min(at)));
    }

    /// How long the timer may sleep: its period, or less when a held-back batch is due sooner.
    pub(crate) fn next_wake(&self) -> Duration {
        let period = self.idle_check_period();
        match self.table.lock().wake_at {
            Some(at) => at.saturating_duration_since(Instant::now()).min(period),
            None => period,
        }
    }

    /// Where the timer hears of a new `wake_at` (its sleep is cut short).
    pub(crate) fn wakeups(&self) -> crossbeam_channel::Receiver<()> {
        self.wake.1.clone()
    }

    /// Takes the next request of sequence `id` for a batch: its server inputs, and the
    /// sequence marked running (or, for an END, out of the table).
    fn take(&self, table: &mut Table<J>, id: &CorrId) -> Option<(J, Option<usize>)> {
        let seq = table.sequences.get_mut(id)?;
        let mut job = seq.queue.pop_front()?;
        let flags = job.flags().clone();
        // A START begins from the initial state, also when it restarts a sequence.
        let kept = if flags.start {
            None
        } else {
            seq.state.as_deref()
        };
        let inputs = self.config.inputs_for(&flags, kept);
        job.prepare(inputs, Arc::clone(&seq.state_out));
        seq.running = true;
        if !flags.end {
            return Some((job, None));
        }
        // An ended sequence leaves the table as its END request is sent, so that a new
        // START for its id is taken as soon as the client has the END's response (the slot
        // stays taken until the batch is done). Requests queued behind the END fail.
        let seq = table.sequences.remove(id).expect("present");
        for late in seq.queue {
            late.fail(Error::invalid_arg(format!(
                "inference request for sequence {id} to model '{}' came after the request that ended the sequence",
                self.model
            )));
        }
        Some((job, Some(seq.slot)))
    }

    /// Triton's `DirectSequenceBatch`: a batch row for every slot up to the last one whose
    /// sequence has a request ready; slots with nothing ready, or whose request's shapes are
    /// not those of the first ready request, get null requests (not ready). With a
    /// `max_queue_delay_microseconds` and a `minimum_slot_utilization`, the batch waits while
    /// fewer than that share of the slots is ready, at most the delay.
    fn direct_batch(
        &self,
        table: &mut Table<J>,
        instance: usize,
        utilization: f32,
    ) -> Option<Formed<J>> {
        let mut by_slot: Vec<Option<CorrId>> = vec![None; self.config.slots_per_instance];
        let mut oldest: Option<Instant> = None;
        let mut ready = 0usize;
        for (id, seq) in table.sequences.iter() {
            if seq.instance != instance || seq.running {
                continue;
            }
            if let Some(job) = seq.queue.front() {
                by_slot[seq.slot] = Some(id.clone());
                oldest = Some(oldest.map_or(job.enqueued(), |o| o.min(job.enqueued())));
                ready += 1;
            }
        }
        let last = by_slot.iter().rposition(Option::is_some)?;
        if let Some(oldest) = oldest
            && !self.config.max_delay.is_zero()
            && utilization > 0.0
            && (ready as f32) / (self.config.max_batch as f32) < utilization
            && oldest.elapsed() < self.config.max_delay
        {
            Self::note_due(table, oldest + self.config.max_delay);
            return None;
        }
        // The first ready slot's request gives the shapes of the batch and of its nulls.
        let first = by_slot.iter().flatten().next().cloned()?;
        let template = table.sequences[&first]
            .queue
            .front()
            .expect("ready")
            .null_copy();
        // Null rows take the first ready sequence's state (its shapes; the model reads
        // nothing of a row that is not ready), as Triton's null requests copy it.
        let template_state = table.sequences[&first].state.clone();
        let mut ids = Vec::new();
        let mut batch = Vec::with_capacity(last + 1);
        for slot in by_slot.into_iter().take(last + 1) {
            let fits = slot.as_ref().filter(|id| {
                table.sequences[*id]
                    .queue
                    .front()
                    .is_some_and(|job| job.same_shapes(&template))
            });
            match fits.and_then(|id| self.take(table, id).map(|taken| (id.clone(), taken))) {
                Some((id, (job, ended))) => {
                    ids.push((id, ended));
                    batch.push(job);
                }
                None => {
                    let mut null = template.null_copy();
                    null.prepare(
                        self.config.null_inputs(template_state.as_deref()),
                        Arc::default(),
                    );
                    batch.push(null);
                }
            }
        }
        Some((ids, batch))
    }

    /// Triton's `OldestSequenceBatch`: the next request of each of the instance's candidate
    /// sequences goes through the dynamic batcher's rules (oldest first, a batch of equal
    /// shapes, the preferred sizes, the delay; see [`crate::batcher::decide_queue`]).
    fn oldest_batch(&self, table: &mut Table<J>, instance: usize) -> Option<Formed<J>> {
        let mut ready: Vec<(Instant, CorrId)> = table
            .sequences
            .iter()
            .filter(|(_, seq)| seq.instance == instance && !seq.running)
            .filter_map(|(id, seq)| seq.queue.front().map(|job| (job.enqueued(), id.clone())))
            .collect();
        ready.sort_by_key(|(at, _)| *at);
        let (head_at, head_id) = ready.first()?.clone();
        let head = table.sequences[&head_id].queue.front().expect("ready");
        let queue = ready.iter().map(|(_, id)| {
            let job = table.sequences[id].queue.front().expect("ready");
            (1, job.same_shapes(head))
        });
        let positions = match crate::batcher::decide_queue(
            queue,
            head_at,
            &self.config.oldest,
            Instant::now(),
            false,
        ) {
            crate::batcher::Decision::Send(positions, _) => positions,
            crate::batcher::Decision::Wait(due) => {
                if let Some(at) = due {
                    Self::note_due(table, at);
                }
                return None;
            }
        };
        let mut ids = Vec::new();
        let mut batch = Vec::new();
        for p in positions {
            let id = &ready[p].1;
            if let Some((job, ended)) = self.take(table, id) {
                ids.push((id.clone(), ended));
                batch.push(job);
            }
        }
        (!batch.is_empty()).then_some((ids, batch))
    }
}

/// The instance with the most free slots (`None` when there is none).
fn pick_instance(free: &[std::collections::BTreeSet<usize>]) -> Option<usize> {
    free.iter()
        .enumerate()
        .filter(|(_, f)| !f.is_empty())
        .max_by_key(|(i, f)| (f.len(), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> Parameters {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn flags_from_parameters() {
        let f = SequenceFlags::from_parameters(
            &params(serde_json::json!({"sequence_id": 7, "sequence_start": true})),
            "m",
        )
        .unwrap();
        assert_eq!((f.id, f.start, f.end), (CorrId::U64(7), true, false));
        let f = SequenceFlags::from_parameters(
            &params(serde_json::json!({"sequence_id": "abc", "sequence_end": true})),
            "m",
        )
        .unwrap();
        assert_eq!(
            (f.id, f.start, f.end),
            (CorrId::Str("abc".into()), false, true)
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"sequence_id": 0}),
            serde_json::json!({"sequence_id": ""}),
        ] {
            let e = SequenceFlags::from_parameters(&params(bad), "m").unwrap_err();
            assert!(e.message().contains("correlation ID"), "{}", e.message());
        }
        assert!(
            SequenceFlags::from_parameters(
                &params(serde_json::json!({"sequence_id": 1, "sequence_start": 1})),
                "m"
            )
            .is_err()
        );
    }

    #[test]
    fn control_values_and_corrid_forms() {
        let text = r#"
            name: "m" max_batch_size: 4
            sequence_batching {
              control_input [
                { name: "S" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
                { name: "R" control [ { kind: CONTROL_SEQUENCE_READY fp32_false_true: [ 0, 1 ] } ] },
                { name: "E" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] },
                { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] },
                { name: "CS" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }
              ]
              state [ { input_name: "SI" output_name: "SO" data_type: TYPE_INT32 dims: [ 2 ] } ]
            }"#;
        let config = ferrite_proto::parse_model_config(text).unwrap();
        let sc = SequenceConfig::from_config(&config, std::path::Path::new("."))
            .unwrap()
            .unwrap();
        assert_eq!(sc.slots_per_instance, 4);
        let flags = SequenceFlags {
            id: CorrId::U64(42),
            start: true,
            end: false,
        };
        let t = sc.inputs_for(&flags, None);
        let by = |n: &str| t.iter().find(|x| x.name == n).unwrap().clone();
        assert_eq!(by("S").data.as_ref(), 1i32.to_le_bytes());
        assert_eq!(by("S").shape, vec![1, 1]);
        assert_eq!(by("R").data.as_ref(), 1f32.to_le_bytes());
        assert_eq!(by("E").data.as_ref(), [0u8]);
        assert_eq!(by("C").data.as_ref(), 42u64.to_le_bytes());
        assert_eq!(by("CS").data.as_ref(), [2, 0, 0, 0, b'4', b'2']);
        assert_eq!(by("SI").data.as_ref(), [0u8; 8], "zero initial state");
        assert_eq!(by("SI").shape, vec![1, 2]);
        assert_eq!(
            sc.server_inputs().collect::<Vec<_>>(),
            ["S", "R", "E", "C", "CS", "SI"]
        );
        let kept = [Tensor::new(
            "SI",
            DataType::Int32,
            vec![1, 2],
            Bytes::from(vec![1u8; 8]),
        )];
        let t = sc.inputs_for(&flags, Some(&kept));
        assert_eq!(t.last().unwrap().data.as_ref(), [1u8; 8]);
    }

    struct FakeJob {
        flags: SequenceFlags,
        at: Instant,
        inputs: Vec<Tensor>,
        failed: Arc<Mutex<Vec<String>>>,
        /// Its client input's shape.
        shape: Vec<i64>,
    }

    impl SequenceJob for FakeJob {
        fn flags(&self) -> &SequenceFlags {
            &self.flags
        }
        fn enqueued(&self) -> Instant {
            self.at
        }
        fn prepare(&mut self, inputs: Vec<Tensor>, _: Arc<Mutex<Vec<Tensor>>>) {
            self.inputs = inputs;
        }
        fn fail(self, error: Error) {
            self.failed.lock().push(error.message().to_string());
        }
        fn null_copy(&self) -> Self {
            FakeJob {
                flags: SequenceFlags {
                    id: CorrId::U64(0),
                    start: false,
                    end: false,
                },
                at: self.at,
                inputs: Vec::new(),
                failed: Arc::clone(&self.failed),
                shape: self.shape.clone(),
            }
        }
        fn same_shapes(&self, other: &Self) -> bool {
            self.shape == other.shape
        }
    }

    fn job(id: u64, start: bool, end: bool) -> FakeJob {
        FakeJob {
            flags: SequenceFlags {
                id: CorrId::U64(id),
                start,
                end,
            },
            at: Instant::now(),
            inputs: Vec::new(),
            failed: Arc::default(),
            shape: vec![1, 1],
        }
    }

    fn oldest(delay_us: u64) -> SequenceConfig {
        let text = format!(
            r#"name: "m" max_batch_size: 4
            sequence_batching {{
              oldest {{ max_candidate_sequences: 4 preferred_batch_size: [ 2 ] max_queue_delay_microseconds: {delay_us} }}
              control_input [ {{ name: "S" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }} ]
            }}"#
        );
        let config = ferrite_proto::parse_model_config(&text).unwrap();
        SequenceConfig::from_config(&config, std::path::Path::new("."))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn oldest_forms_the_dynamic_batchers_batches() {
        // Triton's oldest strategy is a dynamic batcher over the candidate sequences' next
        // requests: preferred [2], a delay of 200 ms.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = Sequencer::new("m", oldest(200_000), vec![tx], 16);
        // Even the only sequence waits: a preferred batch may still form within the delay.
        s.submit(job(1, true, false)).unwrap();
        assert!(rx.try_recv().is_err(), "1 of preferred 2: waits");
        s.submit(job(2, true, false)).unwrap();
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.len(), 2, "a preferred batch goes at once");
        assert_eq!(batch[0].flags.id, CorrId::U64(1), "oldest request first");
        s.instance_idle(0);
        s.submit(job(2, false, true)).unwrap();
        assert!(rx.try_recv().is_err());
        s.submit(job(1, false, false)).unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), 2);
        s.instance_idle(0);
        // A request of other shapes ends the oldest one's batch, which then goes at once
        // (it cannot grow), as the dynamic batcher sends a batch that cannot take the next.
        let mut other = job(3, true, false);
        other.shape = vec![1, 7];
        s.submit(other).unwrap();
        assert!(rx.try_recv().is_err(), "alone: waits");
        s.submit(job(1, false, false)).unwrap();
        let batch = rx.try_recv().unwrap();
        assert_eq!(
            batch.iter().map(|j| j.flags.id.clone()).collect::<Vec<_>>(),
            vec![CorrId::U64(3)]
        );
    }

    #[test]
    fn the_timer_is_told_when_a_held_batch_is_due() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let s = Sequencer::new("m", oldest(30_000), vec![tx], 16);
        let wakeups = s.wakeups();
        assert!(s.next_wake() >= Duration::from_micros(100));
        s.submit(job(1, true, false)).unwrap();
        // The batch waits for its 30 ms delay: the timer hears of it and sleeps no longer.
        assert!(wakeups.try_recv().is_ok());
        assert!(s.next_wake() <= Duration::from_millis(30));
    }

    #[test]
    fn the_delay_bounds_the_wait() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = Sequencer::new("m", oldest(20_000), vec![tx], 16);
        let sent = Instant::now();
        s.submit(job(1, true, false)).unwrap();
        assert!(rx.try_recv().is_err(), "waits for a preferred batch");
        // The timer's work: dispatch once the delay has passed.
        let batch = loop {
            s.expire_idle();
            if let Ok(b) = rx.try_recv() {
                break b;
            }
            assert!(sent.elapsed() < Duration::from_secs(2), "never dispatched");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(batch.len(), 1);
        assert!(sent.elapsed() >= Duration::from_millis(20));
        assert_eq!(batch[0].inputs[0].name, "S");
        assert_eq!(
            batch[0].inputs[0].data.as_ref(),
            1i32.to_le_bytes(),
            "START"
        );
    }

    fn direct(extra: &str) -> SequenceConfig {
        let text = format!(
            r#"name: "m" max_batch_size: 4
            sequence_batching {{
              direct {{ {extra} }}
              control_input [ {{ name: "R" control [ {{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }} ] }} ]
            }}"#
        );
        let config = ferrite_proto::parse_model_config(&text).unwrap();
        SequenceConfig::from_config(&config, std::path::Path::new("."))
            .unwrap()
            .unwrap()
    }

    fn ready_rows(batch: &[FakeJob]) -> Vec<(u64, bool)> {
        batch
            .iter()
            .map(|j| {
                let id = match j.flags.id {
                    CorrId::U64(v) => v,
                    CorrId::Str(_) => u64::MAX,
                };
                (id, j.inputs[0].data.as_ref() == 1i32.to_le_bytes())
            })
            .collect()
    }

    #[test]
    fn direct_batches_have_a_row_per_slot_up_to_the_last_ready_one() {
        // Triton's DirectSequenceBatch: slots 0..=last ready; idle slots get null requests
        // (READY false), so the batch keeps each sequence in its row.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = Sequencer::new("m", direct(""), vec![tx], 16);
        s.submit(job(1, true, false)).unwrap(); // slot 0
        assert_eq!(ready_rows(&rx.try_recv().unwrap()), vec![(1, true)]);
        s.submit(job(2, true, false)).unwrap(); // slot 1, while slot 0 runs
        s.instance_idle(0);
        assert_eq!(
            ready_rows(&rx.try_recv().unwrap()),
            vec![(0, false), (2, true)],
            "slot 0 has nothing ready: a null request keeps sequence 2 in row 1"
        );
        // Both ready: one row each.
        s.submit(job(1, false, true)).unwrap();
        s.submit(job(2, false, false)).unwrap();
        s.instance_idle(0);
        assert_eq!(
            ready_rows(&rx.try_recv().unwrap()),
            vec![(1, true), (2, true)]
        );
        // Sequence 1 ended: slot 0 is free again and the next sequence takes it (the lowest).
        s.instance_idle(0);
        s.submit(job(3, true, false)).unwrap();
        assert_eq!(ready_rows(&rx.try_recv().unwrap()), vec![(3, true)]);
    }

    #[test]
    fn direct_batches_hold_only_equal_shapes() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = Sequencer::new("m", direct(""), vec![tx], 16);
        s.submit(job(1, true, false)).unwrap();
        rx.try_recv().unwrap();
        let mut long = job(2, true, false);
        long.shape = vec![1, 5];
        s.submit(long).unwrap();
        s.submit(job(1, false, false)).unwrap();
        s.instance_idle(0);
        // Slot 1's request has other shapes than slot 0's: a null takes its row this time.
        assert_eq!(
            ready_rows(&rx.try_recv().unwrap()),
            vec![(1, true), (0, false)]
        );
        s.instance_idle(0);
        let batch = rx.try_recv().unwrap();
        assert_eq!(ready_rows(&batch), vec![(0, false), (2, true)]);
        assert_eq!(batch[0].shape, vec![1, 5], "nulls take the batch's shapes");
    }

    #[test]
    fn direct_waits_only_below_the_minimum_slot_utilization() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        // Without minimum_slot_utilization the delay does not hold a batch back (Triton).
        let s = Sequencer::new(
            "m",
            direct("max_queue_delay_microseconds: 10000000"),
            vec![tx],
            16,
        );
        s.submit(job(1, true, false)).unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = Sequencer::new(
            "m",
            direct("max_queue_delay_microseconds: 10000000 minimum_slot_utilization: 0.5"),
            vec![tx],
            16,
        );
        s.submit(job(1, true, false)).unwrap();
        assert!(rx.try_recv().is_err(), "1 of 4 slots ready: waits");
        s.submit(job(2, true, false)).unwrap();
        assert_eq!(
            ready_rows(&rx.try_recv().unwrap()),
            vec![(1, true), (2, true)],
            "2 of 4: goes"
        );
    }

    #[test]
    fn slots_spread_over_instances() {
        let free = |counts: &[usize]| -> Vec<std::collections::BTreeSet<usize>> {
            counts.iter().map(|&n| (0..n).collect()).collect()
        };
        assert_eq!(pick_instance(&free(&[2, 2])), Some(0));
        assert_eq!(pick_instance(&free(&[1, 2])), Some(1));
        assert_eq!(pick_instance(&free(&[0, 0])), None);
    }

    #[test]
    fn negative_grpc_ids_are_uint64_bits() {
        let f =
            SequenceFlags::from_parameters(&params(serde_json::json!({"sequence_id": -1})), "m")
                .unwrap();
        assert_eq!(f.id, CorrId::U64(u64::MAX));
    }

    #[test]
    fn an_ended_id_can_start_again_before_its_batch_is_done() {
        let config = ferrite_proto::parse_model_config(
            r#"name: "m" max_batch_size: 1 sequence_batching { }"#,
        )
        .unwrap();
        let sc = SequenceConfig::from_config(&config, std::path::Path::new("."))
            .unwrap()
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let seq = Sequencer::new("m", sc, vec![tx], 4);
        let failed = Arc::new(Mutex::new(Vec::new()));
        let job = |id: u64, start: bool, end: bool| FakeJob {
            failed: Arc::clone(&failed),
            ..self::job(id, start, end)
        };
        seq.submit(job(1, true, true)).unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        // The END is running (its response may be out): the id is unknown again ...
        let e = seq.submit(job(1, false, false)).unwrap_err();
        assert!(e.message().contains("START flag"), "{}", e.message());
        // ... and a new START waits for the one slot, then runs.
        seq.submit(job(1, true, false)).unwrap();
        assert!(rx.try_recv().is_err());
        seq.instance_idle(0);
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        seq.instance_idle(0);
        seq.submit(job(1, false, true)).unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        seq.instance_idle(0);
        assert!(failed.lock().is_empty(), "{:?}", failed.lock());
        assert!(!seq.has_work());
    }

    fn with_state(initial: &str, dir: &std::path::Path) -> Result<SequenceConfig> {
        let text = format!(
            r#"name: "m" max_batch_size: 2
            sequence_batching {{
              state [ {{ input_name: "IN" output_name: "OUT" data_type: TYPE_INT32 dims: [ 2 ]
                        initial_state {{ data_type: TYPE_INT32 dims: [ 2 ] name: "i" {initial} }} }} ]
            }}"#
        );
        let config = ferrite_proto::parse_model_config(&text).unwrap();
        SequenceConfig::from_config(&config, dir).map(Option::unwrap)
    }

    #[test]
    fn initial_state_from_a_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let zero = with_state("zero_data: true", dir.path()).unwrap();
        assert_eq!(zero.states[0].initial.as_ref(), [0u8; 8]);

        std::fs::create_dir(dir.path().join("initial_state")).unwrap();
        let values: Vec<u8> = [7i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join("initial_state/start.bin"), &values).unwrap();
        let file = with_state(r#"data_file: "start.bin""#, dir.path()).unwrap();
        assert_eq!(file.states[0].initial.as_ref(), values.as_slice());

        std::fs::write(dir.path().join("initial_state/short.bin"), [1u8; 4]).unwrap();
        let e = with_state(r#"data_file: "short.bin""#, dir.path()).unwrap_err();
        assert!(
            e.message()
                .contains("holds 4 bytes, but 2 elements of TYPE_INT32"),
            "{}",
            e.message()
        );
        let e = with_state(r#"data_file: "absent.bin""#, dir.path()).unwrap_err();
        assert!(
            e.message().contains("failed to read initial state")
                && e.message().contains("absent.bin"),
            "{}",
            e.message()
        );
        // The data file stays in initial_state/ (after symlinks), and /dev/zero never ends.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("initial_state/zero")).unwrap();
        for bad in ["../config.pbtxt", "/etc/passwd", "zero"] {
            let e = with_state(&format!("data_file: \"{bad}\""), dir.path()).unwrap_err();
            assert!(
                e.message()
                    .contains(&format!("initial_state data_file '{bad}' is outside")),
                "{}",
                e.message()
            );
        }
    }

    #[test]
    fn a_full_backlog_refuses_new_sequences() {
        let config = ferrite_proto::parse_model_config(
            r#"name: "m" max_batch_size: 1 sequence_batching { }"#,
        )
        .unwrap();
        let sc = SequenceConfig::from_config(&config, std::path::Path::new("."))
            .unwrap()
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let seq = Sequencer::new("m", sc, vec![tx], 2);
        seq.submit(job(1, true, false)).unwrap(); // the only slot
        seq.submit(job(2, true, false)).unwrap(); // waits
        seq.submit(job(3, true, false)).unwrap(); // waits
        let e = seq.submit(job(4, true, false)).unwrap_err();
        assert_eq!(e.code(), crate::error::ErrorCode::Unavailable);
        assert!(
            e.message().contains(
                "every sequence slot of model 'm' is taken and 2 more sequences are waiting"
            ),
            "{}",
            e.message()
        );
        // A waiting sequence may queue more requests; the slot's holder carries on.
        seq.submit(job(2, false, false)).unwrap();
        seq.submit(job(1, false, true)).unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        seq.instance_idle(0);
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        seq.instance_idle(0);
        // Sequence 1 ended: 2 takes the slot with both its requests (one at a time), and the
        // backlog has room again.
        assert_eq!(rx.try_recv().unwrap()[0].flags.id, CorrId::U64(2));
        seq.submit(job(4, true, false)).unwrap();
    }
}
