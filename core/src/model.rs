//! A loaded model version: its effective configuration, its driver model, its instances (one
//! OS thread each, owning the driver instance, fed by the model's bounded queue) and its
//! statistics.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ferrite_driver_abi as abi;
use tokio::sync::mpsc;

use crate::batcher::{
    self, Admission, BatchPolicy, Batchable, Dropped, QueuePlace, Queues, TimeoutAction,
};
use crate::config::{self, InstanceKind, ModelConfig};
use crate::driver::{
    DriverInstance, DriverModel, DriverRegistry, ExecRequest, InstanceRequest, ModelLoadRequest,
    RawOutput, RequestSlot, ResponseSink,
};
use crate::ordering::OrderGate;
use crate::postprocess::{self, OutputSpec};
use crate::repository::{self, ModelDir};
use crate::request::{InferenceRequest, InferenceResponse, RequestedOutput};
use crate::sequence::{SequenceConfig, SequenceFlags, SequenceJob, Sequencer};
use crate::stats::{Execution, FailureReason, HistogramBounds, StatsCollector};
use crate::tensor::Tensor;
use crate::trace::TraceCell;
use crate::{Error, Result, clock};
use ferrite_proto::inference::model_config::SchedulingChoice;

/// Requests a model's queue holds before it refuses more.
const QUEUE_CAPACITY: usize = 4096;

/// One message of a request's response stream.
#[derive(Debug)]
pub struct Streamed {
    /// A response or an error in its place. `None` only for a decoupled model that ended the
    /// request without another response (the final flag alone, as Triton's
    /// `TRITONSERVER_RESPONSE_COMPLETE_FINAL` without a response).
    pub response: Option<Result<InferenceResponse>>,
    /// The request's last message: the stream ends after it.
    pub final_response: bool,
}

/// The responses to one request: exactly one, final, for ordinary models; any number, the
/// last one final, for decoupled ones. The stream ends after the final message.
#[derive(Debug)]
pub struct ResponseStream {
    rx: mpsc::UnboundedReceiver<Streamed>,
}

impl ResponseStream {
    /// The next message; `None` once the final one was taken.
    pub async fn recv(&mut self) -> Option<Streamed> {
        self.rx.recv().await
    }

    /// The one response of a model that is not decoupled (the first of one that is).
    pub async fn single(mut self) -> Result<InferenceResponse> {
        while let Some(m) = self.rx.recv().await {
            if let Some(response) = m.response {
                return response;
            }
        }
        Err(Error::internal("expected a single response, got 0"))
    }
}

/// Where a request's responses go: the client's stream, or the ensemble step that sent it.
#[derive(Clone)]
pub(crate) enum Reply {
    Stream(mpsc::UnboundedSender<Streamed>),
    Step(Arc<dyn StepReply>),
}

/// The receiving end of a request an ensemble sent to one of its steps.
pub(crate) trait StepReply: Send + Sync {
    /// A response; `final_response` is false for all but a decoupled model's last.
    fn reply(&self, response: Result<InferenceResponse>, final_response: bool);
    /// Nobody waits for the answer any more.
    fn abandoned(&self) -> bool;
}

impl Reply {
    pub(crate) fn send(&self, response: Result<InferenceResponse>, final_response: bool) {
        self.send_message(Some(response), final_response);
    }

    /// [`Reply::send`], or with `None` the final flag alone.
    pub(crate) fn send_message(
        &self,
        response: Option<Result<InferenceResponse>>,
        final_response: bool,
    ) {
        match self {
            // The client may have gone away; nothing to do then.
            Reply::Stream(tx) => {
                let _ = tx.send(Streamed {
                    response,
                    final_response,
                });
            }
            Reply::Step(step) => match response {
                Some(r) => step.reply(r, final_response),
                // Steps are never decoupled (refused at load); this cannot reach one.
                None => step.reply(
                    Err(Error::internal("the step model sent no response")),
                    final_response,
                ),
            },
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Reply::Stream(tx) => tx.is_closed(),
            Reply::Step(step) => step.abandoned(),
        }
    }
}

/// What a queued request carries.
struct Job {
    request: InferenceRequest,
    batch_size: u64,
    enqueued_ns: u64,
    enqueued_at: std::time::Instant,
    sink: RequestSink,
    /// With dynamic batching: the request's priority level and queue timeout, and its place
    /// in the level's queue (freed when the job is dropped).
    admission: Option<(Admission, QueuePlace)>,
    /// A sampled request's timeline (the trace extension).
    trace: Option<Arc<TraceCell>>,
    /// A request of a stateful model: its sequence.
    sequence: Option<SequenceFlags>,
    /// Counts the request as pending until it leaves the queue (dropped with the job, or
    /// when `run_batch` takes the job apart); `None` for a null request.
    _pending: Option<Pending>,
}

/// One pending request of a model (`nv_inference_pending_request_count`).
pub(crate) struct Pending(Arc<Shared>);

impl Pending {
    pub(crate) fn new(shared: &Arc<Shared>) -> Pending {
        shared
            .pending
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Pending(Arc::clone(shared))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Job {
    /// Answers the request with `error` without running it: a cancellation (the client went
    /// away, the deadline passed) or a rejection by the scheduler (queue timeout).
    fn cancel(self, error: Error) {
        let reason = if error.code() == crate::ErrorCode::Cancelled {
            FailureReason::Canceled
        } else {
            FailureReason::Rejected
        };
        self.sink.fail(error, reason);
        self.sink.flush();
    }
}

impl SequenceJob for Job {
    fn flags(&self) -> &SequenceFlags {
        self.sequence
            .as_ref()
            .expect("a sequence model's job has its flags")
    }

    fn enqueued(&self) -> std::time::Instant {
        self.enqueued_at
    }

    fn prepare(&mut self, inputs: Vec<Tensor>, state_out: Arc<parking_lot::Mutex<Vec<Tensor>>>) {
        let state_names: Vec<String> = self.sink.shared.state_outputs.to_vec();
        // The driver must produce the state outputs even when the client names its outputs.
        if !self.request.outputs.is_empty() {
            for name in &state_names {
                if !self.request.outputs.iter().any(|o| &o.name == name) {
                    self.request.outputs.push(RequestedOutput {
                        name: name.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        self.request.inputs.extend(inputs);
        if !state_names.is_empty() {
            self.sink.state_out = Some(state_out);
        }
    }

    fn fail(self, error: Error) {
        self.cancel(error);
    }

    fn null_copy(&self) -> Job {
        // The receiver is dropped at once: nothing a null request produces goes anywhere.
        let (tx, _) = mpsc::unbounded_channel();
        Job {
            request: InferenceRequest {
                model_name: self.request.model_name.clone(),
                model_version: self.request.model_version,
                inputs: self.request.inputs.clone(),
                ..Default::default()
            },
            batch_size: self.batch_size,
            enqueued_ns: self.enqueued_ns,
            enqueued_at: self.enqueued_at,
            sink: RequestSink {
                tx: Reply::Stream(tx),
                shared: Arc::clone(&self.sink.shared),
                id: String::new(),
                requested: Vec::new(),
                received_ns: self.sink.received_ns,
                held: parking_lot::Mutex::new(None),
                trace: None,
                state_out: None,
                order: parking_lot::Mutex::new(None),
                null: true,
            },
            admission: None,
            trace: None,
            sequence: Some(SequenceFlags {
                id: crate::sequence::CorrId::U64(0),
                start: false,
                end: false,
            }),
            _pending: None,
        }
    }

    fn same_shapes(&self, other: &Job) -> bool {
        let ragged = &self.sink.shared.ragged_inputs;
        let (a, b) = (&self.request.inputs, &other.request.inputs);
        a.len() == b.len()
            && a.iter().all(|t| {
                b.iter().any(|u| {
                    u.name == t.name
                        && u.datatype == t.datatype
                        && (ragged.contains(&t.name) || u.shape == t.shape)
                })
            })
    }
}

impl Batchable for Job {
    fn batch_size(&self) -> u64 {
        self.batch_size
    }

    /// Same inputs with the same types and the same dimensions after the batch dimension,
    /// except for inputs with `allow_ragged_batch`, whose shapes may differ (Triton's ragged
    /// batching: the driver concatenates them).
    fn compatible(&self, other: &Self) -> bool {
        let (a, b) = (&self.request.inputs, &other.request.inputs);
        let ragged = &self.sink.shared.ragged_inputs;
        a.len() == b.len()
            && a.iter().all(|t| {
                b.iter().any(|u| {
                    u.name == t.name
                        && u.datatype == t.datatype
                        && (ragged.contains(&t.name)
                            || u.shape.len() == t.shape.len()
                                && u.shape.get(1..) == t.shape.get(1..))
                })
            })
    }

    fn enqueued(&self) -> std::time::Instant {
        self.enqueued_at
    }

    fn abandoned(&self) -> bool {
        self.sink.abandoned()
    }

    fn level(&self) -> usize {
        self.admission.as_ref().map_or(0, |(a, _)| a.level)
    }

    fn timeout(&self) -> Option<(std::time::Instant, TimeoutAction)> {
        self.admission.as_ref().and_then(|(a, _)| a.timeout)
    }
}

/// Where `enqueue` puts a request: straight to the instances (each takes the next request),
/// or to the model's dynamic batcher.
enum Queue {
    Direct(Sender<Vec<Job>>),
    Batched(Sender<Job>, Arc<Queues>),
    /// The sequence batcher, and the idle timer's stop signal (dropped with the queue).
    Sequence {
        sequencer: Arc<Sequencer<Job>>,
        _stop: Sender<()>,
    },
    /// An ensemble: requests go through its steps' models.
    Ensemble(Arc<crate::ensemble::Ensemble>),
}

/// The parts of a loaded model its instance threads and response sinks share.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) version: i64,
    pub(crate) batching: bool,
    pub(crate) outputs: Vec<OutputSpec>,
    pub(crate) stats: StatsCollector,
    /// Requests accepted and not yet taken by an instance.
    pending: std::sync::atomic::AtomicI64,
    /// Sequence models: the state outputs, kept by the server and not returned.
    state_outputs: Vec<String>,
    /// `model_transaction_policy { decoupled: true }`: any number of responses per request.
    pub(crate) decoupled: bool,
    /// Inputs with `allow_ragged_batch`: requests whose shapes of them differ batch together.
    ragged_inputs: Vec<String>,
}

impl Shared {
    /// A version's shared parts: its outputs (labels read from their files), fresh
    /// statistics, and a sequence model's state outputs.
    fn new(
        dir: &ModelDir,
        version: i64,
        config: &ModelConfig,
        opts: &LoadOptions,
        state_outputs: Vec<String>,
    ) -> Result<Shared> {
        let mut outputs = Vec::new();
        for o in &config.output {
            let labels = if o.label_filename.is_empty() {
                Vec::new()
            } else {
                repository::read_labels(&dir.path, &o.label_filename, &o.name, &dir.name)?
            };
            outputs.push(OutputSpec {
                name: o.name.clone(),
                labels,
                reshape: o
                    .reshape
                    .as_ref()
                    .map(|r| (r.shape.clone(), o.dims.clone())),
            });
        }
        Ok(Shared {
            name: dir.name.clone(),
            version,
            batching: config.max_batch_size > 0,
            outputs,
            stats: StatsCollector::new(opts.histograms.as_deref()),
            pending: std::sync::atomic::AtomicI64::new(0),
            state_outputs,
            decoupled: config
                .model_transaction_policy
                .as_ref()
                .is_some_and(|p| p.decoupled),
            ragged_inputs: config
                .input
                .iter()
                .filter(|i| i.allow_ragged_batch)
                .map(|i| i.name.clone())
                .collect(),
        })
    }
}

/// Applies Triton's defaults, then refuses a configuration with issues, listing every one.
fn normalize_and_validate(
    dir: &ModelDir,
    config: &mut ModelConfig,
    gpu_available: bool,
) -> Result<()> {
    config::normalize(config, gpu_available);
    refuse_issues(dir, config::validate(config))
}

/// A configuration's issues as one error that lists every one (none: Ok).
fn refuse_issues(dir: &ModelDir, issues: Vec<config::ConfigIssue>) -> Result<()> {
    if issues.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
    Err(Error::invalid_arg(format!(
        "invalid model configuration for '{}' ({}): {}",
        dir.name,
        dir.path.join(config::CONFIG_FILE).display(),
        list.join("; ")
    )))
}

pub struct LoadedModel {
    shared: Arc<Shared>,
    config: ModelConfig,
    config_json: serde_json::Value,
    queue: Option<Queue>,
    /// `preserve_ordering` with dynamic batching.
    order: Option<Arc<OrderGate>>,
    threads: Vec<JoinHandle<()>>,
    driver_name: String,
}

/// Options that shape loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Let drivers fill in what config.pbtxt leaves out.
    pub auto_complete: bool,
    pub gpu_available: bool,
    /// The statistics' histograms (`None`: off).
    pub histograms: Option<Arc<HistogramBounds>>,
}

/// Reads and checks a model's configuration (before any driver is involved).
pub fn read_config(dir: &ModelDir, opts: &LoadOptions) -> Result<ModelConfig> {
    let mut config = config::read(&dir.path, &dir.name, opts.auto_complete)?;
    detect_missing_platform(dir, &mut config);
    Ok(config)
}

/// A configuration that names no platform or backend (config.pbtxt's, or a load request's
/// override) gets them from the model's files, as Triton's does.
pub fn detect_missing_platform(dir: &ModelDir, config: &mut ModelConfig) {
    if config.platform.is_empty() && config.backend.is_empty() {
        detect_platform(&dir.path, config);
    }
}

/// Triton's platform detection for models without one: by the model file's name.
fn detect_platform(model_dir: &Path, config: &mut ModelConfig) {
    let has = |file: &str| {
        repository::versions(model_dir)
            .unwrap_or_default()
            .iter()
            .any(|v| model_dir.join(v.to_string()).join(file).exists())
    };
    let file = if config.default_model_filename.is_empty() {
        "model.onnx".to_string()
    } else {
        config.default_model_filename.clone()
    };
    // A compiled Neuron model (not a Triton platform: Triton runs NEFFs through its Python
    // backend; Ferrite has a driver for them).
    let neff = if config.default_model_filename.is_empty() {
        "model.neff"
    } else {
        file.as_str()
    };
    if file.ends_with(".onnx") && has(&file) {
        config.platform = "onnxruntime_onnx".into();
        config.backend = "onnxruntime".into();
    } else if neff.ends_with(".neff") && has(neff) {
        config.platform = "neuron_neff".into();
        config.backend = "neuron".into();
    }
}

fn instance_kind(group_kind: i32) -> u32 {
    match InstanceKind::try_from(group_kind) {
        Ok(InstanceKind::Gpu) => abi::INSTANCE_KIND_GPU,
        Ok(InstanceKind::Model) => abi::INSTANCE_KIND_MODEL,
        _ => abi::INSTANCE_KIND_CPU,
    }
}

impl LoadedModel {
    /// Loads one version: the driver loads (and may auto-complete) it, Triton's defaults are
    /// applied, the result is validated, labels are read and the instances start.
    pub fn load(
        drivers: &DriverRegistry,
        dir: &ModelDir,
        base_config: &ModelConfig,
        version: i64,
        opts: &LoadOptions,
    ) -> Result<LoadedModel> {
        let mut config = base_config.clone();
        // The driver is chosen by backend/platform and the kinds of the instance groups.
        let mut probe = config.clone();
        config::normalize(&mut probe, opts.gpu_available);
        if !opts.gpu_available
            && let Some(group) = probe
                .instance_group
                .iter()
                .find(|g| g.kind == InstanceKind::Gpu as i32)
        {
            let gpus = if group.gpus.is_empty() {
                "any GPU".to_string()
            } else {
                format!("GPUs {:?}", group.gpus)
            };
            let reasons = drivers.kind_unavailable_reasons(abi::INSTANCE_KIND_GPU);
            let why = if reasons.is_empty() {
                "no driver in the backend directory runs GPU instances".to_string()
            } else {
                reasons.join("; ")
            };
            return Err(Error::invalid_arg(format!(
                "instance group '{}' of model '{}' asks for KIND_GPU instances on {gpus}, but no GPU is available: {why}",
                group.name, dir.name
            )));
        }
        let kinds = probe
            .instance_group
            .iter()
            .fold(0, |kinds, g| kinds | instance_kind(g.kind));
        let driver = drivers.find(&probe.backend, &probe.platform, kinds)?;

        refuse_issues(dir, config::reshape_issues(&config))?;
        let version_path = dir.path.join(version.to_string());
        // Label files stay in the model folder, checked before any driver reads one.
        for o in config
            .output
            .iter()
            .filter(|o| !o.label_filename.is_empty())
        {
            if crate::confine::inside(&dir.path, &o.label_filename).is_none() {
                let path = dir.path.join(&o.label_filename);
                return Err(crate::texts::label_outside(
                    &path.display().to_string(),
                    &o.name,
                    &dir.name,
                ));
            }
        }
        // The model file a configuration names stays in the version folder.
        if !config.default_model_filename.is_empty()
            && crate::confine::inside(&version_path, &config.default_model_filename).is_none()
        {
            return Err(Error::invalid_arg(format!(
                "default_model_filename '{}' of model '{}' is outside its version folder {}",
                config.default_model_filename,
                dir.name,
                version_path.display()
            )));
        }
        let (driver_model, new_config) = driver.load_model(&ModelLoadRequest {
            name: &dir.name,
            version,
            model_path: &dir.path,
            version_path: &version_path,
            config_json: config::to_json(&config).to_string(),
            auto_complete: opts.auto_complete,
        })?;
        if let Some(json) = new_config {
            let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
                Error::internal(format!(
                    "driver '{}' returned invalid configuration JSON: {e}",
                    driver.name
                ))
            })?;
            config = config::from_json(&value)?;
        }
        normalize_and_validate(dir, &mut config, opts.gpu_available)?;

        let sequence = SequenceConfig::from_config(&config, &dir.path)?;
        let state_outputs = sequence
            .as_ref()
            .map(|s| s.state_outputs().map(str::to_string).collect())
            .unwrap_or_default();
        let shared = Arc::new(Shared::new(dir, version, &config, opts, state_outputs)?);
        let config_json = config::to_json(&config);
        let config_text = config_json.to_string();
        let driver_model = Arc::new(driver_model);

        // Create every instance before starting any thread, so a failure leaves nothing running.
        let mut instances = Vec::new();
        for group in &config.instance_group {
            let kind = instance_kind(group.kind);
            let devices: Vec<i32> = if kind == abi::INSTANCE_KIND_GPU {
                if group.gpus.is_empty() {
                    vec![0]
                } else {
                    group.gpus.clone()
                }
            } else {
                vec![-1]
            };
            for device in devices {
                for _ in 0..group.count {
                    let name = format!("{}_{}", group.name, instances.len());
                    let instance =
                        create_instance(&driver_model, &name, kind, device, &config_text)?;
                    instances.push((name, instance));
                }
            }
        }

        // Instances take batches from one channel: the first idle one gets the next.
        let batching = match &config.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(db)) if config.max_batch_size > 0 => Some((
                BatchPolicy::new(
                    config.max_batch_size as u64,
                    &db.preferred_batch_size,
                    db.max_queue_delay_microseconds,
                ),
                Arc::new(Queues::from_config(db)),
            )),
            _ => None,
        };
        let (batch_tx, batch_rx) = match batching {
            // The batcher hands a batch over only when an instance is free to take it, so
            // batches keep growing while every instance is busy.
            Some(_) => crossbeam_channel::bounded::<Vec<Job>>(0),
            None => crossbeam_channel::bounded::<Vec<Job>>(QUEUE_CAPACITY),
        };
        let mut threads = Vec::new();
        // A sequence model's instances have a channel each: a sequence stays on its instance.
        let mut sequencer = None;
        let mut own_channels = Vec::new();
        if let Some(seq_config) = sequence {
            let mut senders = Vec::new();
            for _ in &instances {
                let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(1);
                senders.push(tx);
                own_channels.push(rx);
            }
            sequencer = Some(Arc::new(Sequencer::new(
                &dir.name,
                seq_config,
                senders,
                QUEUE_CAPACITY,
            )));
        }
        for (i, (name, instance)) in instances.into_iter().enumerate() {
            let rx = match own_channels.get(i) {
                Some(rx) => rx.clone(),
                None => batch_rx.clone(),
            };
            let shared = Arc::clone(&shared);
            // Weak: the sequencer holds this instance's sender, which must close on unload.
            let idle = sequencer.as_ref().map(|s| (Arc::downgrade(s), i));
            let thread = std::thread::Builder::new()
                .name(format!("inst-{name}"))
                .spawn(move || run_instance(instance, rx, shared, idle))
                .map_err(|e| {
                    Error::internal(format!("failed to start instance thread {name}: {e}"))
                })?;
            threads.push(thread);
        }
        drop(own_channels);
        let order = match &config.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(db)) if db.preserve_ordering => {
                Some(Arc::new(OrderGate::default()))
            }
            _ => None,
        };
        let queue = match (batching, sequencer) {
            (_, Some(sequencer)) => {
                // Releases the slots of idle sequences; stops when the queue is dropped.
                let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
                // Wakes each period, and when a batch held back by its queue delay is due.
                let weak = Arc::downgrade(&sequencer);
                let wakeups = sequencer.wakeups();
                let thread = std::thread::Builder::new()
                    .name(format!("seq-{}", dir.name))
                    .spawn(move || {
                        crate::clock::precise_timed_waits();
                        loop {
                            let Some(wait) = weak.upgrade().map(|s| s.next_wake()) else {
                                return;
                            };
                            crossbeam_channel::select! {
                                recv(stop_rx) -> _ => return,
                                recv(wakeups) -> _ => continue,
                                default(wait) => match weak.upgrade() {
                                    Some(s) => s.expire_idle(),
                                    None => return,
                                },
                            }
                        }
                    })
                    .map_err(|e| {
                        Error::internal(format!("failed to start the sequence timer: {e}"))
                    })?;
                threads.insert(0, thread);
                drop(batch_tx);
                Queue::Sequence {
                    sequencer,
                    _stop: stop_tx,
                }
            }
            (None, None) => Queue::Direct(batch_tx),
            (Some((policy, queues)), None) => {
                let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE_CAPACITY);
                let model = dir.name.clone();
                let levels = queues.levels();
                let thread = std::thread::Builder::new()
                    .name(format!("batch-{model}"))
                    .spawn(move || {
                        batcher::run(&model, policy, levels, rx, batch_tx, |job: Job, why| {
                            job.cancel(match why {
                                Dropped::TimedOut => Error::unavailable("Request timeout expired"),
                                Dropped::Abandoned => Error::new(
                                    crate::ErrorCode::Cancelled,
                                    "the client went away before the request could run",
                                ),
                                Dropped::NoInstance => Error::unavailable(
                                    "no instance of the model is running any more",
                                ),
                            })
                        })
                    })
                    .map_err(|e| Error::internal(format!("failed to start the batcher: {e}")))?;
                // The batcher first, so it drains into the instances before they stop.
                threads.insert(0, thread);
                Queue::Batched(tx, queues)
            }
        };
        Ok(LoadedModel {
            shared,
            config,
            config_json,
            queue: Some(queue),
            order,
            threads,
            driver_name: driver.name.clone(),
        })
    }

    /// Loads one version of an ensemble: its graph is checked against the step models
    /// loaded now (which must be ready: the lifecycle loads them first).
    pub(crate) fn ensemble(
        server: &crate::Server,
        dir: &ModelDir,
        base_config: &ModelConfig,
        version: i64,
        opts: &LoadOptions,
    ) -> Result<LoadedModel> {
        let mut config = base_config.clone();
        normalize_and_validate(dir, &mut config, opts.gpu_available)?;
        let plan = crate::ensemble::Plan::from_config(&config)?;
        plan.check_models(&config, |step| server.model(&step.model, step.version))?;
        let shared = Arc::new(Shared::new(dir, version, &config, opts, Vec::new())?);
        let config_json = config::to_json(&config);
        Ok(LoadedModel {
            shared,
            config,
            config_json,
            queue: Some(Queue::Ensemble(Arc::new(crate::ensemble::Ensemble::new(
                plan, server,
            )))),
            order: None,
            threads: Vec::new(),
            driver_name: crate::ensemble::PLATFORM.to_string(),
        })
    }

    /// The models an ensemble's steps run (empty for other models).
    pub fn ensemble_steps(&self) -> Vec<String> {
        match &self.queue {
            Some(Queue::Ensemble(e)) => e.plan.models(),
            _ => Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }
    pub fn version(&self) -> i64 {
        self.shared.version
    }
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    /// The effective configuration as Triton's HTTP API shows it.
    pub fn config_json(&self) -> &serde_json::Value {
        &self.config_json
    }
    /// `model_transaction_policy { decoupled: true }`: any number of responses per request.
    pub fn decoupled(&self) -> bool {
        self.shared.decoupled
    }
    pub fn driver_name(&self) -> &str {
        &self.driver_name
    }
    pub fn stats(&self) -> crate::stats::ModelStats {
        self.shared
            .stats
            .snapshot(&self.shared.name, self.shared.version)
    }
    /// Requests accepted and waiting for an instance.
    pub fn pending(&self) -> u64 {
        self.shared
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0) as u64
    }

    /// Validates and queues a request; responses arrive on the returned stream.
    pub fn enqueue(
        &self,
        request: InferenceRequest,
        received_ns: u64,
        trace: Option<Arc<TraceCell>>,
    ) -> Result<ResponseStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue_to(request, received_ns, trace, Reply::Stream(tx))
            .map(|()| ResponseStream { rx })
    }

    /// Validates and queues a request whose responses go to `reply`.
    pub(crate) fn enqueue_to(
        &self,
        mut request: InferenceRequest,
        received_ns: u64,
        trace: Option<Arc<TraceCell>>,
        reply: Reply,
    ) -> Result<()> {
        // A request the checks refuse never reaches the model: as in Triton, it is no
        // failure of the model's (statistics and metrics leave it out).
        let batch_size = crate::normalize::prepare(&self.config, &mut request)?;
        let rejected = |e: Error| {
            self.shared.stats.record_failure(
                FailureReason::Rejected,
                clock::now_ns().saturating_sub(received_ns),
            );
            e
        };
        let queue = self.queue.as_ref().ok_or_else(|| {
            Error::unavailable(format!("model '{}' is unloading", self.shared.name))
        })?;
        if let Queue::Ensemble(ensemble) = queue {
            ensemble.start(
                &self.shared,
                request,
                batch_size,
                received_ns,
                trace,
                reply,
                Pending::new(&self.shared),
            );
            return Ok(());
        }
        let sink = RequestSink {
            tx: reply,
            shared: Arc::clone(&self.shared),
            id: request.id.clone(),
            requested: request.outputs.clone(),
            received_ns,
            held: parking_lot::Mutex::new(None),
            trace: trace.clone(),
            state_out: None,
            order: parking_lot::Mutex::new(
                self.order
                    .as_ref()
                    .map(|gate| (Arc::clone(gate), gate.ticket())),
            ),
            null: false,
        };
        let sequence = match queue {
            Queue::Sequence { .. } => {
                // Triton's sequence batcher takes one row per request.
                if batch_size > 1 {
                    return Err(crate::texts::sequence_batch_size(&self.shared.name));
                }
                Some(SequenceFlags::from_parameters(
                    &request.parameters,
                    &self.shared.name,
                )?)
            }
            _ => None,
        };
        let enqueued_at = std::time::Instant::now();
        let admission = match queue {
            Queue::Batched(_, queues) => Some(
                queues
                    .admit(&request.parameters, enqueued_at, &self.shared.name)
                    .map_err(|e| {
                        if e.code() == crate::ErrorCode::Unavailable {
                            rejected(e)
                        } else {
                            e
                        }
                    })?,
            ),
            Queue::Direct(_) | Queue::Sequence { .. } | Queue::Ensemble(_) => None,
        };
        tracing::debug!(
            request_id = request.id.as_str(),
            "queued for model '{}' version {}",
            self.shared.name,
            self.shared.version
        );
        let enqueued_ns = clock::now_ns();
        if let Some(t) = &trace {
            t.stamp("QUEUE_START", enqueued_ns);
        }
        let job = Job {
            request,
            batch_size,
            enqueued_ns,
            enqueued_at,
            sink,
            admission,
            trace,
            sequence,
            _pending: Some(Pending::new(&self.shared)),
        };
        // Err(true): the queue is full; Err(false): the model is going away.
        let sent = match queue {
            Queue::Direct(tx) => tx
                .try_send(vec![job])
                .map_err(|e| matches!(e, TrySendError::Full(_))),
            Queue::Batched(tx, _) => tx
                .try_send(job)
                .map_err(|e| matches!(e, TrySendError::Full(_))),
            Queue::Sequence { sequencer, .. } => return sequencer.submit(job),
            Queue::Ensemble(_) => {
                return Err(Error::internal("an ensemble request reached a model queue"));
            }
        };
        match sent {
            Ok(()) => Ok(()),
            Err(true) => Err(rejected(Error::unavailable(format!(
                "Exceeds maximum queue size for model '{}'",
                self.shared.name
            )))),
            Err(false) => Err(Error::unavailable(format!(
                "model '{}' is unloading",
                self.shared.name
            ))),
        }
    }
}

impl Drop for LoadedModel {
    /// Closes the queue; instance threads finish what was queued, then destroy their
    /// instances. The driver model is unloaded when the last instance is gone.
    fn drop(&mut self) {
        if let Some(Queue::Sequence { sequencer, .. }) = &self.queue {
            // Accepted requests of running sequences finish (bounded), the rest are answered.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while sequencer.has_work() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let name = self.shared.name.clone();
            sequencer.drain(|| Error::unavailable(format!("model '{name}' is unloading")));
        }
        self.queue = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn create_instance(
    model: &Arc<DriverModel>,
    name: &str,
    kind: u32,
    device_id: i32,
    config_json: &str,
) -> Result<DriverInstance> {
    model
        .create_instance(&InstanceRequest {
            name,
            kind,
            device_id,
            config_json,
        })
        .map_err(|e| {
            Error::new(
                e.code(),
                format!("failed to create instance {name}: {}", e.message()),
            )
        })
}

/// Sends a request's responses to its stream, after post-processing, and records the
/// request's statistics when the final one goes out. The final response is held back until
/// the execution's statistics are recorded ([`ResponseSink::flush`]), so a client that has
/// its answer sees statistics that include it.
struct RequestSink {
    tx: Reply,
    shared: Arc<Shared>,
    id: String,
    requested: Vec<crate::request::RequestedOutput>,
    received_ns: u64,
    /// The final message, held until the execution's statistics are recorded (`Some(None)`:
    /// the final flag alone).
    held: parking_lot::Mutex<Option<Option<Result<InferenceResponse>>>>,
    /// A sampled request's timeline: REQUEST_END when the final response goes out.
    trace: Option<Arc<TraceCell>>,
    /// A sequence request's state outputs go here instead of to the client.
    state_out: Option<Arc<parking_lot::Mutex<Vec<Tensor>>>>,
    /// With `preserve_ordering`: the gate and this request's ticket, given back exactly once
    /// (by flush, or by drop for a request that never got that far).
    order: parking_lot::Mutex<Option<(Arc<OrderGate>, u64)>>,
    /// A null request's (the `direct` sequence batcher's filler for an idle slot): its
    /// responses go nowhere and no statistics count it.
    null: bool,
}

impl RequestSink {
    /// Ends the request with `error` (it did not run), counted as a failure for `reason`.
    fn fail(&self, error: Error, reason: FailureReason) {
        if self.null {
            return;
        }
        self.shared
            .stats
            .record_failure(reason, clock::now_ns().saturating_sub(self.received_ns));
        *self.held.lock() = Some(Some(Err(error)));
    }
}

impl Drop for RequestSink {
    fn drop(&mut self) {
        if let Some((gate, ticket)) = self.order.get_mut().take() {
            gate.complete(ticket, Box::new(|| {}));
        }
    }
}

impl ResponseSink for RequestSink {
    fn send(&self, outputs: Result<Vec<RawOutput>>, final_response: bool) {
        if self.null {
            return;
        }
        let s = &self.shared;
        let failed_in_driver = outputs.is_err();
        let outputs =
            match (outputs, &self.state_out) {
                (Ok(raw), Some(state)) => {
                    let (kept, rest): (Vec<RawOutput>, Vec<RawOutput>) = raw
                        .into_iter()
                        .partition(|o| s.state_outputs.contains(&o.name));
                    let mut state = state.lock();
                    state.clear();
                    state.extend(kept.into_iter().map(|o| {
                        Tensor::new(o.name, o.datatype, o.shape, bytes::Bytes::from(o.data))
                    }));
                    Ok(rest)
                }
                (other, _) => other,
            };
        let result = outputs
            .and_then(|raw| {
                let raw = raw
                    .into_iter()
                    .map(|o| Tensor::new(o.name, o.datatype, o.shape, bytes::Bytes::from(o.data)))
                    .collect();
                postprocess::finish(&s.name, &s.outputs, &self.requested, s.batching, raw)
            })
            .map(|outputs| InferenceResponse {
                model_name: s.name.clone(),
                model_version: s.version,
                id: self.id.clone(),
                outputs,
                parameters: Default::default(),
            });
        if final_response {
            let ns = clock::now_ns().saturating_sub(self.received_ns);
            match (&result, failed_in_driver) {
                (Ok(_), _) => s.stats.record_success(ns),
                (Err(_), true) => s.stats.record_failure(FailureReason::Backend, ns),
                (Err(_), false) => s.stats.record_failure(FailureReason::Other, ns),
            }
            *self.held.lock() = Some(Some(result));
        } else {
            self.tx.send(result, false);
        }
    }

    fn complete(&self) {
        if self.null {
            return;
        }
        let ns = clock::now_ns().saturating_sub(self.received_ns);
        self.shared.stats.record_success(ns);
        *self.held.lock() = Some(None);
    }

    fn decoupled(&self) -> bool {
        self.shared.decoupled
    }

    fn flush(&self) {
        if let Some(result) = self.held.lock().take() {
            if let Some(t) = &self.trace {
                t.finish(clock::now_ns());
            }
            match self.order.lock().take() {
                Some((gate, ticket)) => {
                    let tx = self.tx.clone();
                    gate.complete(ticket, Box::new(move || tx.send_message(result, true)));
                }
                None => self.tx.send_message(result, true),
            }
        }
    }

    fn abandoned(&self) -> bool {
        !self.null && self.tx.is_closed()
    }
}

/// An instance thread: takes one request at a time from the model's queue and executes it.
fn run_instance(
    mut instance: DriverInstance,
    rx: Receiver<Vec<Job>>,
    shared: Arc<Shared>,
    sequencer: Option<(std::sync::Weak<Sequencer<Job>>, usize)>,
) {
    while let Ok(jobs) = rx.recv() {
        // A bug on the host side must fail one batch, not the instance (and with it every
        // request queued behind).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_batch(&mut instance, &shared, jobs)
        }))
        .inspect_err(|_| tracing::error!("instance of '{}' recovered from a panic", shared.name));
        // Sequences: the batch's requests are answered; their next ones may run.
        if let Some((sequencer, i)) = &sequencer
            && let Some(s) = sequencer.upgrade()
        {
            s.instance_idle(*i);
        }
    }
}

fn run_batch(instance: &mut DriverInstance, shared: &Shared, jobs: Vec<Job>) {
    let start = clock::now_ns();
    let now = std::time::Instant::now();
    let mut live = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !job.sink.null {
            shared
                .stats
                .record_queue(start.saturating_sub(job.enqueued_ns));
        }
        // A request nobody waits for, or whose deadline passed in the queue, does not run.
        let expired = job.request.deadline.is_some_and(|d| now >= d);
        if expired || job.sink.abandoned() {
            job.cancel(Error::new(
                crate::ErrorCode::Cancelled,
                if expired {
                    "the request's deadline passed before it could run"
                } else {
                    "the client went away before the request could run"
                },
            ));
            continue;
        }
        let Job {
            request,
            batch_size,
            sink,
            trace,
            ..
        } = job;
        // A null request is a batch row of nobody's: its size counts as padding.
        let (batch_size, padding) = if sink.null {
            (0, batch_size)
        } else {
            (batch_size, 0)
        };
        live.push((
            request,
            (batch_size, padding),
            RequestSlot::new(Box::new(sink)),
            trace,
        ));
    }
    // Null rows alone (their sequences' requests were cancelled) are nobody's work.
    if live.iter().all(|(_, (size, _), _, _)| *size == 0) {
        return;
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        for (request, _, _, _) in &live {
            tracing::debug!(
                request_id = request.id.as_str(),
                "executing on model '{}' version {} in a batch of {}",
                shared.name,
                shared.version,
                live.len()
            );
        }
    }
    let exec: Vec<ExecRequest<'_>> = live
        .iter()
        .map(|(request, _, slot, _)| exec_request(request, slot))
        .collect();
    let mut stats = abi::ExecuteStats::default();
    let _ = instance.execute(&exec, &mut stats);
    let end = clock::now_ns();
    let (infer_start, infer_end) = if stats.infer_start_ns >= start
        && stats.infer_end_ns >= stats.infer_start_ns
        && stats.infer_end_ns <= end
        && stats.infer_start_ns != 0
    {
        (stats.infer_start_ns, stats.infer_end_ns)
    } else {
        (start, end)
    };
    shared.stats.record_execution(Execution {
        requests: live.iter().filter(|(_, (size, _), _, _)| *size > 0).count() as u64,
        batch_size: live.iter().map(|(_, (size, _), _, _)| size).sum(),
        padding: live.iter().map(|(_, (_, padding), _, _)| padding).sum(),
        input_ns: infer_start - start,
        infer_ns: infer_end - infer_start,
        output_ns: end - infer_end,
    });
    drop(exec);
    for (_, _, slot, trace) in &live {
        if let Some(t) = trace {
            t.stamp("COMPUTE_START", start);
            t.stamp("COMPUTE_INPUT_END", infer_start);
            t.stamp("COMPUTE_OUTPUT_START", infer_end);
            t.stamp("COMPUTE_END", end);
        }
        slot.flush();
    }
}

fn exec_request<'a>(request: &'a InferenceRequest, slot: &'a RequestSlot) -> ExecRequest<'a> {
    ExecRequest {
        id: &request.id,
        inputs: request
            .inputs
            .iter()
            .map(|t| abi::Tensor {
                name: abi::Str::new(&t.name),
                datatype: t.datatype as u32,
                shape: t.shape.as_ptr(),
                rank: t.shape.len(),
                data: t.data.as_ptr(),
                byte_size: t.data.len(),
                memory: abi::Memory::CPU,
            })
            .collect(),
        requested_outputs: request
            .outputs
            .iter()
            .map(|o| abi::Str::new(&o.name))
            .collect(),
        parameters_json: if request.parameters.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(request.parameters.clone()).to_string()
        },
        slot,
    }
}
