//! The AWS Neuron driver: compiled models (`model.neff`) on the NeuronCores of Inferentia
//! (Inf1/Inf2) hosts, through the Neuron runtime `libnrt.so.1`, opened at run time
//! ([`ferrite_neuron_sys`]). Models name it with `backend: "neuron"` (or `platform:
//! "neuron_neff"`) and run as KIND_MODEL instances, as in Triton's Inferentia flow.
//!
//! Each instance loads the NEFF once per NeuronCore of its range ([`cores`]: the model's
//! `NEURON_CORE_START_INDEX` / `NEURON_CORE_END_INDEX`, shared equally among the instances, or
//! every visible core), splits each batch on its first dimension into shards of the batch size
//! the NEFF was compiled for ([`split`]; the last shard padded), runs the shards on their cores
//! at the same time and puts the outputs back together in order. Inputs and outputs are
//! matched to the NEFF's tensors by name, or by Triton's `<name>__<index>` ([`binding`]).
//! Each core counts its runs, samples, padding and busy time, on the Prometheus endpoint
//! (`ferrite_neuron_core_*`, labels model, version and core; see [`CORE_METRICS`]) and in the
//! log when the instance is unloaded.
//!
//! Without the runtime library (or when it will not initialise) the driver refuses to start
//! with UNAVAILABLE and the reason; the server goes on, and a Neuron model is UNAVAILABLE
//! with that reason.

pub mod binding;
pub mod cores;
pub mod runtime;
pub mod split;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, InstanceInfo, LogLevel, ModelLoad,
    Response, Result, abi, config, counter_add, export_driver, log,
};

use binding::Binding;
use runtime::{DeviceTensor, LoadedNeff, Runtime, TensorSet};

/// The environment variable naming the runtime library (after `--backend-config=neuron,
/// runtime-library=PATH`).
pub const LIBRARY_ENV: &str = "FERRITE_NEURON_RUNTIME_LIB";

pub struct NeuronDriver {
    rt: Arc<Runtime>,
}

/// `/dev/neuron<N>` devices on this machine.
pub fn neuron_devices() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("neuron")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect();
    found.sort_by_key(|p| {
        p.to_string_lossy()
            .trim_start_matches("/dev/neuron")
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    found
}

fn describe_devices(devices: &[PathBuf]) -> String {
    if devices.is_empty() {
        "no /dev/neuron* devices on this machine (an Inf1/Inf2 host has them; a container needs them passed in)".into()
    } else {
        let names: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
        format!("devices {}", names.join(", "))
    }
}

/// A loaded model version: the NEFF's bytes and what the configuration says of it.
pub struct NeuronModel {
    name: String,
    version: i64,
    file: PathBuf,
    neff: Vec<u8>,
    inputs: Vec<config::Io>,
    outputs: Vec<config::Io>,
    batching: bool,
    range: (Option<u32>, Option<u32>),
}

/// Work and time on one core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub runs: u64,
    pub samples: u64,
    pub padding: u64,
    pub busy: Duration,
}

/// One core of an instance: the NEFF loaded there and its input/output tensors. Fields drop
/// in order: the sets (which refer to the tensors) first, the model last.
struct CoreSlot {
    in_set: TensorSet,
    out_set: TensorSet,
    inputs: Vec<DeviceTensor>,
    outputs: Vec<DeviceTensor>,
    /// NEFF outputs the configuration does not name: allocated, never read.
    _unread: Vec<DeviceTensor>,
    neff: LoadedNeff,
    /// Zeros to pad a shard with.
    zeros: Vec<u8>,
    stats: CoreStats,
}

pub struct NeuronInstance {
    name: String,
    model: String,
    version: String,
    slots: Vec<CoreSlot>,
    binding: Binding,
    /// The core the next batch's first shard goes to (spreads small batches over the cores).
    next_core: usize,
}

impl NeuronInstance {
    fn stats_line(&self) -> String {
        let parts: Vec<String> = self
            .slots
            .iter()
            .map(|s| {
                format!(
                    "NeuronCore {}: {} runs, {} samples ({} of padding), {:.3} s busy",
                    s.neff.core,
                    s.stats.runs,
                    s.stats.samples,
                    s.stats.padding,
                    s.stats.busy.as_secs_f64()
                )
            })
            .collect();
        format!(
            "instance {} of model {}: {}",
            self.name,
            self.model,
            parts.join("; ")
        )
    }
}

impl Drop for NeuronInstance {
    fn drop(&mut self) {
        log(LogLevel::Info, &self.stats_line());
    }
}

/// A shard and its slice of each output.
type Job<'a> = (split::Shard, Vec<&'a mut [u8]>);

impl CoreSlot {
    fn new(rt: &Arc<Runtime>, neff: LoadedNeff, binding: &Binding) -> Result<CoreSlot> {
        let core = neff.core;
        let alloc = |name: &str| {
            let size = binding
                .neff
                .iter()
                .find(|t| t.name == name)
                .map_or(0, |t| t.size);
            DeviceTensor::allocate(rt, core, size, name)
        };
        let inputs = binding
            .inputs
            .iter()
            .map(|b| alloc(&b.neff_name))
            .collect::<Result<Vec<_>>>()?;
        let outputs = binding
            .outputs
            .iter()
            .map(|b| alloc(&b.neff_name))
            .collect::<Result<Vec<_>>>()?;
        // NEFF outputs the configuration does not name still need memory to be written to.
        let unread_infos: Vec<_> = binding
            .neff
            .iter()
            .filter(|t| !t.input && !binding.outputs.iter().any(|b| b.neff_name == t.name))
            .collect();
        let unread = unread_infos
            .iter()
            .map(|t| alloc(&t.name))
            .collect::<Result<Vec<_>>>()?;
        let mut in_set = TensorSet::new(rt)?;
        for (b, t) in binding.inputs.iter().zip(&inputs) {
            in_set.add(&b.neff_name, t)?;
        }
        let mut out_set = TensorSet::new(rt)?;
        for (b, t) in binding.outputs.iter().zip(&outputs) {
            out_set.add(&b.neff_name, t)?;
        }
        for (info, t) in unread_infos.iter().zip(&unread) {
            out_set.add(&info.name, t)?;
        }
        let largest = binding
            .inputs
            .iter()
            .map(|b| b.sample_bytes)
            .max()
            .unwrap_or(0);
        Ok(CoreSlot {
            in_set,
            out_set,
            inputs,
            outputs,
            _unread: unread,
            neff,
            zeros: vec![0; largest * binding.compiled.saturating_sub(1)],
            stats: CoreStats::default(),
        })
    }

    /// Runs this core's shards: `jobs` are (shard, that shard's slice of each output).
    /// Returns the work done.
    fn run(
        &mut self,
        binding: &Binding,
        inputs: &[&[u8]],
        jobs: Vec<Job<'_>>,
    ) -> Result<CoreStats> {
        let mut done = CoreStats::default();
        for (shard, mut outs) in jobs {
            let padding = shard.padding(binding.compiled);
            for ((b, tensor), data) in binding.inputs.iter().zip(&mut self.inputs).zip(inputs) {
                let s = b.sample_bytes;
                tensor.write(0, &data[shard.start * s..(shard.start + shard.len) * s])?;
                if padding > 0 {
                    tensor.write(shard.len * s, &self.zeros[..padding * s])?;
                }
            }
            let started = Instant::now();
            self.neff.execute(&self.in_set, &mut self.out_set)?;
            done.busy += started.elapsed();
            done.runs += 1;
            done.samples += shard.len as u64;
            done.padding += padding as u64;
            for (tensor, out) in self.outputs.iter().zip(outs.iter_mut()) {
                tensor.read(0, out)?;
            }
        }
        Ok(done)
    }
}

/// The per-core metric families: (name, help).
pub const CORE_METRICS: [(&str, &str); 4] = [
    (
        "ferrite_neuron_core_executions_total",
        "Executions of a model's NEFF on a NeuronCore",
    ),
    (
        "ferrite_neuron_core_samples_total",
        "Samples a NeuronCore ran for a model, padding not counted",
    ),
    (
        "ferrite_neuron_core_padding_samples_total",
        "Samples of padding a NeuronCore ran to fill a model's last shard of a batch",
    ),
    (
        "ferrite_neuron_core_busy_us_total",
        "Microseconds a NeuronCore spent executing a model",
    ),
];

impl NeuronInstance {
    /// Adds one run's work on slot `i` to its statistics and to the per-core metrics
    /// (`CORE_METRICS`, labels model, version and core) of the Prometheus endpoint.
    fn account(&mut self, i: usize, done: CoreStats) {
        let slot = &mut self.slots[i];
        slot.stats.runs += done.runs;
        slot.stats.samples += done.samples;
        slot.stats.padding += done.padding;
        slot.stats.busy += done.busy;
        let core = slot.neff.core.to_string();
        let labels = [
            ("model", self.model.as_str()),
            ("version", self.version.as_str()),
            ("core", core.as_str()),
        ];
        let values = [
            done.runs as f64,
            done.samples as f64,
            done.padding as f64,
            done.busy.as_micros() as f64,
        ];
        for ((name, help), value) in CORE_METRICS.iter().zip(values) {
            if let Err(e) = counter_add(name, help, &labels, value) {
                log(LogLevel::Verbose, &format!("metric {name}: {e}"));
            }
        }
    }

    /// Runs `samples` samples (each input holds `samples * sample_bytes` bytes) across the
    /// instance's cores and returns each output's bytes, in sample order.
    fn run(&mut self, inputs: &[&[u8]], samples: usize) -> Result<Vec<Vec<u8>>> {
        let binding = &self.binding;
        let cores = self.slots.len();
        let plan = split::plan(samples, cores, binding.compiled, self.next_core);
        self.next_core = (self.next_core + plan.len()) % cores;
        let mut outputs: Vec<Vec<u8>> = binding
            .outputs
            .iter()
            .map(|b| vec![0u8; samples * b.sample_bytes])
            .collect();
        // Each shard's slice of each output (the shards are contiguous, in order).
        let mut per_shard: Vec<Vec<&mut [u8]>> = plan.iter().map(|_| Vec::new()).collect();
        for (b, buffer) in binding.outputs.iter().zip(outputs.iter_mut()) {
            let mut rest: &mut [u8] = buffer;
            for (shard, slices) in plan.iter().zip(per_shard.iter_mut()) {
                let (mine, tail) =
                    std::mem::take(&mut rest).split_at_mut(shard.len * b.sample_bytes);
                slices.push(mine);
                rest = tail;
            }
        }
        let mut jobs: Vec<Vec<Job<'_>>> = (0..cores).map(|_| Vec::new()).collect();
        for (shard, slices) in plan.iter().zip(per_shard) {
            jobs[shard.core].push((*shard, slices));
        }
        let busy = jobs.iter().filter(|j| !j.is_empty()).count();
        let results: Vec<(usize, Result<CoreStats>)> = if busy <= 1 {
            self.slots
                .iter_mut()
                .zip(jobs)
                .enumerate()
                .filter(|(_, (_, j))| !j.is_empty())
                .map(|(i, (slot, j))| (i, slot.run(binding, inputs, j)))
                .collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .slots
                    .iter_mut()
                    .zip(jobs)
                    .enumerate()
                    .filter(|(_, (_, j))| !j.is_empty())
                    .map(|(i, (slot, j))| (i, scope.spawn(move || slot.run(binding, inputs, j))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, h)| {
                        let done = h.join().unwrap_or_else(|_| {
                            Err(Error::internal("a NeuronCore's thread panicked"))
                        });
                        (i, done)
                    })
                    .collect()
            })
        };
        let mut failure = None;
        for (i, result) in results {
            match result {
                Ok(done) => self.account(i, done),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(outputs),
        }
    }
}

impl Driver for NeuronDriver {
    type Model = NeuronModel;
    type Instance = NeuronInstance;

    fn init(info: &DriverInfo) -> Result<Self> {
        let explicit = info
            .setting("runtime-library")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os(LIBRARY_ENV).map(PathBuf::from));
        let devices = neuron_devices();
        let rt = Runtime::open(explicit.as_deref()).map_err(|e| {
            Error::new(
                e.code,
                format!(
                    "no usable Neuron runtime: {}; {}",
                    e.message,
                    describe_devices(&devices)
                ),
            )
        })?;
        log(
            LogLevel::Info,
            &format!(
                "Neuron runtime {} from {}: {} of {} NeuronCore(s) visible; {}",
                rt.version,
                rt.path.display(),
                rt.visible_cores,
                rt.total_cores,
                describe_devices(&devices)
            ),
        );
        Ok(NeuronDriver { rt })
    }

    fn load_model(&self, load: &mut ModelLoad<'_>) -> Result<NeuronModel> {
        let cfg = load.config();
        let file_name = cfg
            .get("default_model_filename")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("model.neff");
        let file = load.version_path().join(file_name);
        let neff = std::fs::read(&file).map_err(|e| {
            Error::not_found(format!(
                "could not read the compiled model {}: {e} (the Neuron driver runs a NEFF: model.neff in the version folder, or the file default_model_filename names)",
                file.display()
            ))
        })?;
        let range = cores::configured_range(cfg)?;
        // The range must fit the visible cores whatever the instance count.
        cores::instance_cores(range.0, range.1, self.rt.visible_cores, 1, 0)
            .map_err(|e| Error::invalid_arg(format!("model '{}': {e}", load.name())))?;
        Ok(NeuronModel {
            name: load.name().to_string(),
            version: load.version(),
            file,
            neff,
            inputs: config::ios(cfg, "input"),
            outputs: config::ios(cfg, "output"),
            batching: config::batching(cfg),
            range,
        })
    }

    fn create_instance(&self, model: &NeuronModel, info: &InstanceInfo) -> Result<NeuronInstance> {
        let context = |e: Error| {
            Error::new(
                e.code,
                format!(
                    "instance {} of model {}: {}",
                    info.name, model.name, e.message
                ),
            )
        };
        let (index, instances) =
            cores::instance_index(&info.config, &info.name).map_err(context)?;
        let range = cores::instance_cores(
            model.range.0,
            model.range.1,
            self.rt.visible_cores,
            instances,
            index,
        )
        .map_err(|e| context(Error::invalid_arg(e)))?;
        let mut binding: Option<Binding> = None;
        let mut slots = Vec::with_capacity(range.len());
        for core in range.clone() {
            let neff = LoadedNeff::load(&self.rt, &model.neff, core).map_err(|e| {
                context(Error::new(
                    e.code,
                    format!("{} ({})", e.message, model.file.display()),
                ))
            })?;
            let tensors = neff.tensors().map_err(context)?;
            let b = match &binding {
                None => binding.insert(
                    binding::bind(&model.inputs, &model.outputs, &tensors, model.batching)
                        .map_err(|e| {
                            context(Error::new(
                                e.code,
                                format!("{}: {}", model.file.display(), e.message),
                            ))
                        })?,
                ),
                Some(b) if b.neff != tensors => {
                    return Err(context(Error::internal(format!(
                        "the NEFF describes different tensors on NeuronCore {core} than on NeuronCore {}",
                        range.start
                    ))));
                }
                Some(b) => b,
            };
            slots.push(CoreSlot::new(&self.rt, neff, b).map_err(context)?);
        }
        let binding =
            binding.ok_or_else(|| context(Error::internal("an instance with no cores")))?;
        log(
            LogLevel::Info,
            &format!(
                "placed instance {} of model {} on NeuronCore(s) {}..={} (NEFF compiled for batch size {})",
                info.name,
                model.name,
                range.start,
                range.end - 1,
                binding.compiled
            ),
        );
        Ok(NeuronInstance {
            name: info.name.clone(),
            model: model.name.clone(),
            version: model.version.to_string(),
            slots,
            binding,
            next_core: 0,
        })
    }

    fn execute(
        &self,
        model: &NeuronModel,
        instance: &mut NeuronInstance,
        batch: &mut Batch<'_>,
    ) -> Result<()> {
        if model.batching {
            execute_batched(instance, batch)
        } else {
            // A model that does not batch: each request is one sample of the NEFF.
            for i in 0..batch.len() {
                let request = batch.request(i);
                let inputs = instance
                    .binding
                    .inputs
                    .iter()
                    .map(|b| {
                        let data = request.input(&b.name)?.data;
                        if data.len() != b.sample_bytes {
                            return Err(Error::invalid_arg(format!(
                                "input '{}' holds {} bytes; the model takes {} ({} {:?})",
                                b.name,
                                data.len(),
                                b.sample_bytes,
                                b.datatype.config_name(),
                                b.dims
                            )));
                        }
                        Ok(data)
                    })
                    .collect::<Result<Vec<_>>>()?;
                batch.mark_infer_start();
                let outputs = instance.run(&inputs, 1)?;
                batch.mark_infer_end();
                let mut response = batch.respond(i)?;
                for (b, data) in instance.binding.outputs.iter().zip(&outputs) {
                    if request.wants_output(&b.name) {
                        response.output_from(&b.name, b.datatype, &b.dims, data)?;
                    }
                }
                response.send()?;
            }
            Ok(())
        }
    }
}

fn execute_batched(instance: &mut NeuronInstance, batch: &mut Batch<'_>) -> Result<()> {
    let gathered = instance
        .binding
        .inputs
        .iter()
        .map(|b| batch.gather(&b.name))
        .collect::<Result<Vec<_>>>()?;
    let batch_sizes = gathered
        .first()
        .map(|g| g.batch_sizes.clone())
        .unwrap_or_default();
    let samples: usize = batch_sizes.iter().sum();
    for (b, g) in instance.binding.inputs.iter().zip(&gathered) {
        if g.data.len() != samples * b.sample_bytes {
            return Err(Error::invalid_arg(format!(
                "input '{}' holds {} bytes for {samples} samples; expected {} bytes per sample",
                b.name,
                g.data.len(),
                b.sample_bytes
            )));
        }
    }
    let inputs: Vec<&[u8]> = gathered.iter().map(|g| &g.data[..]).collect();
    batch.mark_infer_start();
    let outputs = instance.run(&inputs, samples)?;
    batch.mark_infer_end();
    let mut responses = (0..batch.len())
        .map(|i| batch.respond(i))
        .collect::<Result<Vec<Response>>>()?;
    for (b, data) in instance.binding.outputs.iter().zip(&outputs) {
        let mut shape = vec![samples as i64];
        shape.extend_from_slice(&b.dims);
        batch.scatter(
            &mut responses,
            &batch_sizes,
            &b.name,
            b.datatype,
            &shape,
            data,
        )?;
    }
    for response in responses {
        response.send()?;
    }
    Ok(())
}

export_driver!(
    NeuronDriver,
    Descriptor {
        name: "neuron",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["neuron"],
        platforms: &["neuron_neff"],
        instance_kinds: abi::INSTANCE_KIND_MODEL,
        datatypes: &[
            DataType::Bool,
            DataType::Uint8,
            DataType::Uint16,
            DataType::Uint32,
            DataType::Uint64,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Fp16,
            DataType::Fp32,
            DataType::Fp64,
            DataType::Bf16,
        ],
    }
);
