//! The requests a run sends, built once from the model's metadata and configuration and the
//! input data option; in shared memory mode, also the regions they use.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use ferrite_client::{
    Client, InferRequest, InputTensor, ModelMetadata, RequestedOutput, SharedMemoryRegion, ShmRef,
    TensorMeta, json_to_raw,
};
use serde_json::Value;

use crate::args::{Args, SharedMemory};

/// A small, fast pseudo-random generator (xorshift64*), seeded per run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the load sends: the requests (sent in turn) and the shared memory they use.
pub struct Workload {
    pub requests: Vec<InferRequest>,
    /// Regions registered with the server (name, region), unregistered by [`Workload::cleanup`].
    pub regions: Vec<(String, SharedMemoryRegion)>,
    /// Bytes of input data in one request.
    pub input_bytes: usize,
}

impl Workload {
    pub async fn cleanup(&mut self, client: &Client) {
        for (name, _) in &self.regions {
            let _ = client.unregister_system_shared_memory(Some(name)).await;
        }
        self.regions.clear();
    }
}

/// An input of one request: name, data type, shape (with the batch), raw data.
type Tensor = (String, String, Vec<i64>, Bytes);

enum Source {
    Random,
    Zero,
    File(Vec<serde_json::Map<String, Value>>),
}

fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" | "BF16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    })
}

/// `count` elements of `datatype`, random or zero, raw little-endian.
fn generate(
    datatype: &str,
    count: usize,
    random: bool,
    string: Option<&str>,
    rng: &mut Rng,
) -> Bytes {
    if datatype == "BYTES" {
        let mut out = BytesMut::new();
        for _ in 0..count {
            let s = match (string, random) {
                (Some(s), _) => s.to_string(),
                (None, true) => (rng.next_u64() % 100).to_string(),
                (None, false) => "0".to_string(),
            };
            out.put_u32_le(s.len() as u32);
            out.put_slice(s.as_bytes());
        }
        return out.freeze();
    }
    let size = element_size(datatype).unwrap_or(1);
    let mut out = BytesMut::with_capacity(count * size);
    if !random {
        out.resize(count * size, 0);
        return out.freeze();
    }
    for _ in 0..count {
        let r = rng.next_u64();
        match datatype {
            "BOOL" => out.put_u8((r & 1) as u8),
            "INT8" | "UINT8" => out.put_u8((r % 100) as u8),
            "INT16" | "UINT16" => out.put_u16_le((r % 100) as u16),
            "INT32" | "UINT32" => out.put_u32_le((r % 100) as u32),
            "INT64" | "UINT64" => out.put_u64_le(r % 100),
            // [0.5, 1): sign 0, exponent of 0.5, random mantissa.
            "FP16" => out.put_u16_le(0x3800 | (r as u16 & 0x03FF)),
            "BF16" => out.put_u16_le(0x3F00 | (r as u16 & 0x007F)),
            "FP32" => out.put_f32_le(rng.next_f64() as f32),
            "FP64" => out.put_f64_le(rng.next_f64()),
            _ => out.put_u8(r as u8),
        }
    }
    out.freeze()
}

fn read_data_file(path: &Path) -> Result<Vec<serde_json::Map<String, Value>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read input data {}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("input data {} is not valid JSON: {e}", path.display()))?;
    let entries = v["data"].as_array().ok_or_else(|| {
        format!(
            "input data {}: expected {{\"data\": [{{\"INPUT\": [...], ...}}, ...]}}",
            path.display()
        )
    })?;
    if entries.is_empty() {
        return Err(format!("input data {}: \"data\" is empty", path.display()));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.as_object()
                .cloned()
                .ok_or_else(|| format!("input data {}: data[{i}] is not an object", path.display()))
        })
        .collect()
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// The shape of one batch element of `input`: --shape, else the metadata's (without the batch
/// dimension of batching models), which must then be fixed.
fn element_shape(args: &Args, input: &TensorMeta, batching: bool) -> Result<Vec<i64>, String> {
    if let Some((_, dims)) = args.shapes.iter().find(|(n, _)| n == &input.name) {
        return Ok(dims.clone());
    }
    let shape = if batching && !input.shape.is_empty() {
        input.shape[1..].to_vec()
    } else {
        input.shape.clone()
    };
    if shape.iter().any(|&d| d < 0) {
        return Err(format!(
            "input '{}' has the variable shape {}: give its shape with --shape {}:d1,d2,...",
            input.name,
            shape_text(&shape),
            input.name
        ));
    }
    Ok(shape)
}

/// The requests of the run.
pub async fn build(
    client: &Client,
    args: &Args,
    meta: &ModelMetadata,
    config: &Value,
) -> Result<Workload, String> {
    let max_batch = config["max_batch_size"].as_i64().unwrap_or(0);
    let batching = max_batch > 0;
    let batch = args.batch_size as usize;
    if !batching && batch > 1 {
        return Err(format!(
            "can not specify batch size > 1 as the model '{}' does not support batching",
            meta.name
        ));
    }
    if batching && batch as i64 > max_batch {
        return Err(format!(
            "expecting batch size <= {max_batch} for model '{}', got {batch}",
            meta.name
        ));
    }
    for (name, _) in &args.shapes {
        if !meta.inputs.iter().any(|i| &i.name == name) {
            return Err(format!(
                "--shape names '{name}', which is not an input of model '{}'",
                meta.name
            ));
        }
    }
    let source = match args.input_data.as_str() {
        "random" => Source::Random,
        "zero" => Source::Zero,
        file => Source::File(read_data_file(Path::new(file))?),
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut rng = Rng::new(seed);

    // One entry of tensors (name, datatype, shape with batch, raw data) per request.
    let mut entries: Vec<Vec<Tensor>> = Vec::new();
    let n_entries = match &source {
        Source::File(e) => e.len(),
        _ => 1,
    };
    for k in 0..n_entries {
        let mut tensors = Vec::new();
        for input in &meta.inputs {
            let (shape, one) = match &source {
                Source::File(e) => {
                    let v = e[k].get(&input.name).ok_or_else(|| {
                        format!(
                            "input data: data[{k}] has no value for input '{}'",
                            input.name
                        )
                    })?;
                    let (content, shape) = match v {
                        Value::Object(o) if o.contains_key("b64") => {
                            return Err(format!(
                                "input data: data[{k}].{}: \"b64\" is not supported; give the values",
                                input.name
                            ));
                        }
                        Value::Object(o) => {
                            let content = o.get("content").ok_or_else(|| {
                                format!("input data: data[{k}].{} has no \"content\"", input.name)
                            })?;
                            let shape = match o.get("shape") {
                                Some(s) => s
                                    .as_array()
                                    .and_then(|a| a.iter().map(Value::as_i64).collect())
                                    .ok_or_else(|| {
                                        format!(
                                            "input data: data[{k}].{}.shape is not a list of integers",
                                            input.name
                                        )
                                    })?,
                                None => element_shape(args, input, batching)?,
                            };
                            (content, shape)
                        }
                        other => (other, element_shape(args, input, batching)?),
                    };
                    let raw = json_to_raw(&input.datatype, content)
                        .map_err(|e| format!("input data: data[{k}].{}: {e}", input.name))?;
                    (shape, raw)
                }
                _ => {
                    let shape = element_shape(args, input, batching)?;
                    let count: i64 = shape.iter().product();
                    let raw = generate(
                        &input.datatype,
                        count as usize,
                        matches!(source, Source::Random),
                        args.string_data.as_deref(),
                        &mut rng,
                    );
                    (shape, raw)
                }
            };
            if let Some(size) = element_size(&input.datatype) {
                let want: i64 = shape.iter().product::<i64>() * size as i64;
                if want != one.len() as i64 {
                    return Err(format!(
                        "input '{}': {} bytes of data do not match the shape {} of {}",
                        input.name,
                        one.len(),
                        shape_text(&shape),
                        input.datatype
                    ));
                }
            }
            // The batch: the element repeated.
            let (shape, data) = if batching {
                let mut full = vec![batch as i64];
                full.extend(&shape);
                let data = if batch == 1 {
                    one
                } else {
                    let mut b = BytesMut::with_capacity(one.len() * batch);
                    for _ in 0..batch {
                        b.put_slice(&one);
                    }
                    b.freeze()
                };
                (full, data)
            } else {
                (shape, one)
            };
            tensors.push((input.name.clone(), input.datatype.clone(), shape, data));
        }
        entries.push(tensors);
    }
    let input_bytes = entries[0].iter().map(|t| t.3.len()).sum();

    let pid = std::process::id();
    let mut workload = Workload {
        requests: Vec::new(),
        regions: Vec::new(),
        input_bytes,
    };
    match args.shared_memory {
        SharedMemory::None => {
            for tensors in entries {
                let mut r = InferRequest::new(&args.model).version(&args.model_version);
                for (name, datatype, shape, data) in tensors {
                    r = r.input(InputTensor::raw(name, datatype, shape, data));
                }
                workload.requests.push(r);
            }
        }
        SharedMemory::System => {
            let mut outputs = Vec::new();
            for (i, output) in meta.outputs.iter().enumerate() {
                let name = format!("ferrite_perf_{pid}_output{i}");
                let region =
                    SharedMemoryRegion::create(&name, args.output_shared_memory_size as usize)
                        .map_err(|e| e.to_string())?;
                register(client, &name, &region, &mut workload).await?;
                workload.regions.push((name.clone(), region));
                outputs.push(RequestedOutput::new(&output.name).shm(ShmRef::new(
                    name,
                    0,
                    args.output_shared_memory_size,
                )));
            }
            for (k, tensors) in entries.into_iter().enumerate() {
                let total: usize = tensors.iter().map(|t| t.3.len()).sum();
                let name = format!("ferrite_perf_{pid}_input{k}");
                let mut region =
                    SharedMemoryRegion::create(&name, total.max(1)).map_err(|e| e.to_string())?;
                let mut r = InferRequest::new(&args.model).version(&args.model_version);
                let mut offset = 0usize;
                for (tensor, datatype, shape, data) in tensors {
                    region.write(offset, &data).map_err(|e| e.to_string())?;
                    r = r.input(InputTensor::shm(
                        tensor,
                        datatype,
                        shape,
                        ShmRef::new(&name, offset as u64, data.len() as u64),
                    ));
                    offset += data.len();
                }
                r.outputs = outputs.clone();
                register(client, &name, &region, &mut workload).await?;
                workload.regions.push((name, region));
                workload.requests.push(r);
            }
        }
    }
    Ok(workload)
}

async fn register(
    client: &Client,
    name: &str,
    region: &SharedMemoryRegion,
    workload: &mut Workload,
) -> Result<(), String> {
    match client
        .register_system_shared_memory(name, region.key(), 0, region.len() as u64)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            workload.cleanup(client).await;
            Err(format!(
                "cannot register shared memory region '{name}': {e}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sizes() {
        let mut rng = Rng::new(7);
        assert_eq!(generate("FP32", 10, true, None, &mut rng).len(), 40);
        assert_eq!(generate("INT64", 3, false, None, &mut rng).len(), 24);
        let s = generate("BYTES", 2, false, Some("ab"), &mut rng);
        assert_eq!(&s[..], b"\x02\0\0\0ab\x02\0\0\0ab");
        for _ in 0..100 {
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
