//! `accumulate`: the example stateful driver. Written with the SDK: no `unsafe`.
//!
//! A sequence model (`sequence_batching`) whose driver keeps the state: for every sequence
//! it holds a running sum, and each request's output is the sum of the sequence's inputs so
//! far, its own included. The configuration names
//! - one INT32 input and one INT32 output, any names: every element of the input is added to
//!   the sum, and the output (dims `[1]`) holds the sum;
//! - control inputs for `CONTROL_SEQUENCE_START` (the sum starts from zero) and
//!   `CONTROL_SEQUENCE_CORRID` (whose sequence it is), and optionally
//!   `CONTROL_SEQUENCE_END` (the sequence's state is dropped after its last request).
//!
//! The server runs a sequence's requests one at a time, in order, on one instance, so the
//! state lives in the instance. A sequence that never ends (its client vanished and the server
//! released it as idle) is forgotten when the instance holds more than [`MAX_SEQUENCES`]: the
//! least recently used goes first. A sum that would leave INT32 fails that request alone,
//! with INVALID_ARG, and leaves the sum as it was.

use std::collections::HashMap;

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, InstanceInfo, ModelLoad, Request,
    Result, Tensor, abi, config, export_driver,
};
use serde_json::Value;

/// Sequences an instance remembers at most.
pub const MAX_SEQUENCES: usize = 4096;

pub struct Accumulate;

/// What the configuration names.
pub struct Names {
    input: String,
    output: String,
    start: String,
    end: Option<String>,
    corrid: String,
}

/// One instance's sequences: correlation id (its bytes) -> (sum, last use).
#[derive(Default)]
pub struct Sums {
    sums: HashMap<Vec<u8>, (i32, u64)>,
    clock: u64,
}

/// The name of the control input of kind `kind` (e.g. `CONTROL_SEQUENCE_START`).
fn control(config: &Value, kind: &str) -> Option<String> {
    config
        .get("sequence_batching")?
        .get("control_input")?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("control")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|k| k.get("kind").and_then(Value::as_str) == Some(kind))
                })
        })
        .and_then(|c| c.get("name")?.as_str())
        .map(str::to_string)
}

impl Names {
    fn from_config(name: &str, config: &Value) -> Result<Names> {
        let refuse = |why: &str| Error::invalid_arg(format!("accumulate: model '{name}' {why}"));
        if config.get("sequence_batching").is_none() {
            return Err(refuse("needs sequence_batching: its state is per sequence"));
        }
        let one = |key: &str| {
            let ios = config::ios(config, key);
            match &ios[..] {
                [io] if io.data_type == "TYPE_INT32" => Ok(io.name.clone()),
                _ => Err(refuse(&format!("needs exactly one {key}, of TYPE_INT32"))),
            }
        };
        Ok(Names {
            input: one("input")?,
            output: one("output")?,
            start: control(config, "CONTROL_SEQUENCE_START")
                .ok_or_else(|| refuse("needs a CONTROL_SEQUENCE_START control input"))?,
            end: control(config, "CONTROL_SEQUENCE_END"),
            corrid: control(config, "CONTROL_SEQUENCE_CORRID")
                .ok_or_else(|| refuse("needs a CONTROL_SEQUENCE_CORRID control input"))?,
        })
    }
}

/// A control flag as the server sends it: INT32, FP32 or BOOL, true when non-zero.
fn flag(t: &Tensor<'_>) -> Result<bool> {
    Ok(match t.datatype {
        DataType::Int32 => t.values::<i32>()?.first().is_some_and(|&v| v != 0),
        DataType::Fp32 => t.values::<f32>()?.first().is_some_and(|&v| v != 0.0),
        DataType::Bool => t.values::<bool>()?.first().copied().unwrap_or(false),
        other => {
            return Err(Error::invalid_arg(format!(
                "control input '{}' is {}; expected INT32, FP32 or BOOL",
                t.name,
                other.wire_name()
            )));
        }
    })
}

impl Sums {
    fn add(&mut self, names: &Names, request: &Request<'_>) -> Result<i32> {
        let key = request.input(&names.corrid)?.data.to_vec();
        let start = flag(&request.input(&names.start)?)?;
        let end = match &names.end {
            Some(n) => flag(&request.input(n)?)?,
            None => false,
        };
        let add: i64 = request
            .input(&names.input)?
            .values::<i32>()?
            .iter()
            .map(|&v| i64::from(v))
            .sum();
        let before = if start {
            0
        } else {
            self.sums.get(&key).map_or(0, |(s, _)| *s)
        };
        let sum = i32::try_from(i64::from(before) + add).map_err(|_| {
            Error::invalid_arg(format!(
                "accumulate: the sequence's sum {before} + {add} does not fit in INT32"
            ))
        })?;
        self.clock += 1;
        if end {
            self.sums.remove(&key);
        } else {
            self.sums.insert(key, (sum, self.clock));
            if self.sums.len() > MAX_SEQUENCES {
                let oldest = self
                    .sums
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.sums.remove(&k);
                }
            }
        }
        Ok(sum)
    }
}

impl Driver for Accumulate {
    type Model = Names;
    type Instance = Sums;

    fn init(_: &DriverInfo) -> Result<Self> {
        Ok(Accumulate)
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<Names> {
        Names::from_config(model.name(), model.config())
    }

    fn create_instance(&self, _: &Names, _: &InstanceInfo) -> Result<Sums> {
        Ok(Sums::default())
    }

    fn execute(&self, names: &Names, sums: &mut Sums, batch: &mut Batch<'_>) -> Result<()> {
        for (i, request) in batch.requests().enumerate() {
            let sum = match sums.add(names, &request) {
                Ok(sum) => sum,
                Err(e) => {
                    batch.fail(i, &e)?;
                    continue;
                }
            };
            let shape = request.input(&names.input)?.shape;
            // A batching model's rows carry the batch dimension: [1, 1]; otherwise [1].
            let out_shape: Vec<i64> = shape
                .iter()
                .take(shape.len().saturating_sub(1))
                .copied()
                .chain([1])
                .collect();
            let mut response = batch.respond(i)?;
            response.output_values(&names.output, &out_shape, &[sum])?;
            response.send()?;
        }
        Ok(())
    }
}

export_driver!(
    Accumulate,
    Descriptor {
        name: "accumulate",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["accumulate"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU,
        datatypes: &[
            DataType::Int32,
            DataType::Fp32,
            DataType::Bool,
            DataType::Uint64,
            DataType::Int64,
            DataType::Bytes,
        ],
    }
);
