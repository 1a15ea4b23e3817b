//! Requests, results and metadata, the same for both protocols.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Request or response parameters, as JSON values (bool, integer, float, string).
pub type Parameters = Map<String, Value>;

/// A part of a registered system shared memory region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmRef {
    /// The region's name, as registered with the server.
    pub region: String,
    /// Offset into the region, in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub byte_size: u64,
}

impl ShmRef {
    /// The region a tensor's parameters name (`shared_memory_region`, `_offset`,
    /// `_byte_size`), if any.
    pub fn from_parameters(parameters: &Map<String, Value>) -> Option<ShmRef> {
        let number = |key: &str| parameters.get(key).and_then(Value::as_u64).unwrap_or(0);
        parameters
            .get("shared_memory_region")
            .and_then(Value::as_str)
            .map(|region| ShmRef {
                region: region.to_string(),
                offset: number("shared_memory_offset"),
                byte_size: number("shared_memory_byte_size"),
            })
    }

    /// `byte_size` bytes at `offset` of `region`.
    pub fn new(region: impl Into<String>, offset: u64, byte_size: u64) -> ShmRef {
        ShmRef {
            region: region.into(),
            offset,
            byte_size,
        }
    }
}

/// Where an input tensor's data comes from.
#[derive(Debug, Clone)]
pub enum Data {
    /// Raw little-endian bytes, row-major; BYTES elements each with a 4-byte little-endian
    /// length prefix. HTTP sends them with the binary tensor extension, gRPC in
    /// `raw_input_contents`. Cloning is a reference-count increment.
    Raw(Bytes),
    /// A flat JSON array of the elements (HTTP only: gRPC converts it to raw bytes).
    Json(Value),
    /// Data in a registered system shared memory region.
    Shm(ShmRef),
}

/// One input tensor of a request.
#[derive(Debug, Clone)]
pub struct InputTensor {
    /// Input name.
    pub name: String,
    /// KServe data type: "INT32", "FP32", "BYTES", ...
    pub datatype: String,
    /// Shape, batch dimension included for batching models.
    pub shape: Vec<i64>,
    /// The data.
    pub data: Data,
}

/// A scalar type with a KServe data type and a little-endian encoding.
pub trait Scalar: Copy + Sized {
    /// KServe data type name ("INT32", "FP32", ...).
    const DATATYPE: &'static str;
    /// Size in bytes.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut BytesMut);
    /// Reads one value from exactly [`Self::SIZE`] little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! scalar {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl Scalar for $t {
            const DATATYPE: &'static str = $name;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put_le(self, out: &mut BytesMut) {
                out.put_slice(&self.to_le_bytes());
            }
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("exact size"))
            }
        }
    )*};
}

scalar!(
    i8 => "INT8", i16 => "INT16", i32 => "INT32", i64 => "INT64",
    u8 => "UINT8", u16 => "UINT16", u32 => "UINT32", u64 => "UINT64",
    f32 => "FP32", f64 => "FP64",
);

/// Little-endian bytes of `values`.
pub fn encode_values<T: Scalar>(values: &[T]) -> Bytes {
    let mut out = BytesMut::with_capacity(values.len() * T::SIZE);
    for v in values {
        v.put_le(&mut out);
    }
    out.freeze()
}

/// Decodes little-endian `bytes` into values of `T`; the length must be a multiple of the size.
pub fn decode_values<T: Scalar>(bytes: &[u8]) -> Result<Vec<T>> {
    if !bytes.len().is_multiple_of(T::SIZE) {
        return Err(Error::protocol(format!(
            "{} bytes are not a whole number of {} elements",
            bytes.len(),
            T::DATATYPE
        )));
    }
    Ok(bytes.chunks_exact(T::SIZE).map(T::from_le).collect())
}

/// BYTES elements in the raw layout: each a 4-byte little-endian length, then the bytes.
pub fn encode_bytes_elements<B: AsRef<[u8]>>(elements: &[B]) -> Bytes {
    let total: usize = elements.iter().map(|e| 4 + e.as_ref().len()).sum();
    let mut out = BytesMut::with_capacity(total);
    for e in elements {
        let e = e.as_ref();
        out.put_u32_le(e.len() as u32);
        out.put_slice(e);
    }
    out.freeze()
}

/// Splits raw BYTES data (length-prefixed elements) into its elements (slices, no copy).
pub fn decode_bytes_elements(data: &Bytes) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        if data.len() - at < 4 {
            return Err(Error::protocol("truncated BYTES element length"));
        }
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4;
        if data.len() - at < len {
            return Err(Error::protocol("truncated BYTES element"));
        }
        out.push(data.slice(at..at + len));
        at += len;
    }
    Ok(out)
}

impl InputTensor {
    /// A tensor with raw data.
    pub fn raw(
        name: impl Into<String>,
        datatype: impl Into<String>,
        shape: Vec<i64>,
        data: Bytes,
    ) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            data: Data::Raw(data),
        }
    }

    /// A tensor of scalars `values` (INT32 from `&[i32]`, FP32 from `&[f32]`, ...), raw data.
    pub fn from_values<T: Scalar>(name: impl Into<String>, shape: Vec<i64>, values: &[T]) -> Self {
        InputTensor::raw(name, T::DATATYPE, shape, encode_values(values))
    }

    /// An INT32 tensor, raw data.
    pub fn int32(name: impl Into<String>, shape: Vec<i64>, values: &[i32]) -> InputTensor {
        InputTensor::from_values(name, shape, values)
    }

    /// An FP32 tensor, raw data.
    pub fn fp32(name: impl Into<String>, shape: Vec<i64>, values: &[f32]) -> InputTensor {
        InputTensor::from_values(name, shape, values)
    }

    /// A BYTES tensor of `elements` (strings or byte slices), raw data.
    pub fn bytes<B: AsRef<[u8]>>(
        name: impl Into<String>,
        shape: Vec<i64>,
        elements: &[B],
    ) -> InputTensor {
        InputTensor::raw(name, "BYTES", shape, encode_bytes_elements(elements))
    }

    /// A tensor whose data is the flat JSON array `values` (sent as JSON over HTTP).
    pub fn json(
        name: impl Into<String>,
        datatype: impl Into<String>,
        shape: Vec<i64>,
        values: Value,
    ) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            data: Data::Json(values),
        }
    }

    /// A tensor read by the server from shared memory.
    pub fn shm(
        name: impl Into<String>,
        datatype: impl Into<String>,
        shape: Vec<i64>,
        shm: ShmRef,
    ) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            data: Data::Shm(shm),
        }
    }
}

/// An output the request asks for.
#[derive(Debug, Clone)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// HTTP: return the data with the binary tensor extension (true) or as JSON (false).
    /// gRPC always returns raw data.
    pub binary: bool,
    /// Return the top-N classes (`score:index[:label]` BYTES elements) instead of the tensor.
    pub classification: Option<u32>,
    /// Write the output into shared memory instead of the reply.
    pub shm: Option<ShmRef>,
}

impl RequestedOutput {
    /// The output `name`, binary data.
    pub fn new(name: impl Into<String>) -> RequestedOutput {
        RequestedOutput {
            name: name.into(),
            binary: true,
            classification: None,
            shm: None,
        }
    }

    /// Ask for JSON data (HTTP) instead of binary.
    pub fn json(mut self) -> RequestedOutput {
        self.binary = false;
        self
    }

    /// Ask for the top `count` classes.
    pub fn classification(mut self, count: u32) -> RequestedOutput {
        self.classification = Some(count);
        self
    }

    /// Place the output in shared memory.
    pub fn shm(mut self, shm: ShmRef) -> RequestedOutput {
        self.shm = Some(shm);
        self
    }
}

/// An inference request.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// Model name.
    pub model: String,
    /// Model version; empty selects by the model's version policy.
    pub version: String,
    /// Request id, echoed in the result; may be empty.
    pub id: String,
    /// Inputs.
    pub inputs: Vec<InputTensor>,
    /// Outputs; empty asks for every output (binary data).
    pub outputs: Vec<RequestedOutput>,
    /// Request parameters ("sequence_id", "priority", "timeout", ...).
    pub parameters: Parameters,
}

impl InferRequest {
    /// A request for `model` with no inputs yet.
    pub fn new(model: impl Into<String>) -> InferRequest {
        InferRequest {
            model: model.into(),
            ..Default::default()
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: impl Into<String>) -> InferRequest {
        self.version = version.into();
        self
    }

    /// Sets the id.
    pub fn id(mut self, id: impl Into<String>) -> InferRequest {
        self.id = id.into();
        self
    }

    /// Adds an input.
    pub fn input(mut self, input: InputTensor) -> InferRequest {
        self.inputs.push(input);
        self
    }

    /// Adds a requested output.
    pub fn output(mut self, output: RequestedOutput) -> InferRequest {
        self.outputs.push(output);
        self
    }

    /// Adds a request parameter.
    pub fn parameter(mut self, key: impl Into<String>, value: impl Into<Value>) -> InferRequest {
        self.parameters.insert(key.into(), value.into());
        self
    }
}

/// One output tensor of a result.
#[derive(Debug, Clone)]
pub struct OutputTensor {
    /// Output name.
    pub name: String,
    /// KServe data type.
    pub datatype: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Raw little-endian data (BYTES: length-prefixed elements); empty when the output was
    /// written to shared memory. JSON replies are converted to this layout.
    pub data: Bytes,
    /// The shared memory the server wrote the output into, if requested so.
    pub shm: Option<ShmRef>,
    /// The output's parameters as the server sent them.
    pub parameters: Parameters,
}

/// One class of a classification output: `score:index[:label]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The score (the output's value for the class).
    pub score: f64,
    /// The class index.
    pub index: i64,
    /// The label from the model's labels file, if any.
    pub label: Option<String>,
}

impl OutputTensor {
    /// The data as values of `T` (`as_values::<i32>()` for INT32, ...); the data type must
    /// match.
    pub fn as_values<T: Scalar>(&self) -> Result<Vec<T>> {
        if self.datatype != T::DATATYPE {
            return Err(Error::invalid(format!(
                "output '{}' is {}, not {}",
                self.name,
                self.datatype,
                T::DATATYPE
            )));
        }
        decode_values(&self.data)
    }

    /// The elements of a BYTES output (slices of the reply, no copy).
    pub fn bytes_elements(&self) -> Result<Vec<Bytes>> {
        decode_bytes_elements(&self.data)
    }

    /// The elements of a BYTES output as strings (invalid UTF-8 replaced).
    pub fn strings(&self) -> Result<Vec<String>> {
        Ok(self
            .bytes_elements()?
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect())
    }

    /// The classes of a classification output, parsed.
    pub fn classifications(&self) -> Result<Vec<Classification>> {
        self.strings()?
            .iter()
            .map(|s| parse_classification(s))
            .collect()
    }
}

/// Parses `score:index[:label]`.
pub fn parse_classification(s: &str) -> Result<Classification> {
    let mut parts = s.splitn(3, ':');
    let bad = || Error::protocol(format!("bad classification '{s}'"));
    let score = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let index = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    Ok(Classification {
        score,
        index,
        label: parts.next().map(str::to_owned),
    })
}

/// The result of an inference.
#[derive(Debug, Clone, Default)]
pub struct InferResult {
    /// Model name.
    pub model_name: String,
    /// Model version that ran.
    pub model_version: String,
    /// The request's id.
    pub id: String,
    /// Response parameters.
    pub parameters: Parameters,
    /// Outputs, in the server's order.
    pub outputs: Vec<OutputTensor>,
}

impl InferResult {
    /// Whether this is its request's last response: a streamed response's
    /// `triton_final_response` parameter (a decoupled model sends several, the last one or an
    /// empty one final); true when it is absent (every unary response is its request's only).
    pub fn is_final(&self) -> bool {
        self.parameters
            .get("triton_final_response")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The output `name`.
    pub fn output(&self, name: &str) -> Option<&OutputTensor> {
        self.outputs.iter().find(|o| o.name == name)
    }

    fn need(&self, name: &str) -> Result<&OutputTensor> {
        self.output(name)
            .ok_or_else(|| Error::invalid(format!("no output '{name}' in the result")))
    }

    /// The output `name` as values of `T`.
    pub fn values<T: Scalar>(&self, name: &str) -> Result<Vec<T>> {
        self.need(name)?.as_values()
    }

    /// The BYTES elements of output `name`.
    pub fn bytes_elements(&self, name: &str) -> Result<Vec<Bytes>> {
        self.need(name)?.bytes_elements()
    }

    /// The classification strings (`score:index[:label]`) of output `name`.
    pub fn classification(&self, name: &str) -> Result<Vec<String>> {
        self.need(name)?.strings()
    }
}

/// The client's own time spent on one request: building and handing it to the transport
/// (`send_ns`), and decoding the reply once received (`recv_ns`). The rest of the request's
/// latency is network and server ("response wait").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTimings {
    /// Building the request (headers, body chunks / message) until handed to the transport.
    pub send_ns: u64,
    /// Decoding the reply after it arrived (HTTP: after the whole body was read; gRPC:
    /// converting the decoded protobuf message).
    pub recv_ns: u64,
}

/// A tensor's name, data type and shape (-1: variable dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// Name.
    pub name: String,
    /// KServe data type.
    pub datatype: String,
    /// Shape; -1 marks a variable dimension.
    pub shape: Vec<i64>,
}

/// A model's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMetadata {
    /// Name.
    pub name: String,
    /// Available versions.
    pub versions: Vec<String>,
    /// Platform ("onnxruntime_onnx", ...).
    pub platform: String,
    /// Inputs.
    pub inputs: Vec<TensorMeta>,
    /// Outputs.
    pub outputs: Vec<TensorMeta>,
}

/// The server's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetadata {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Protocol extensions supported.
    pub extensions: Vec<String>,
}

/// A count of events and their summed duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatDuration {
    /// Number of events.
    pub count: u64,
    /// Summed duration in nanoseconds.
    pub ns: u64,
}

impl StatDuration {
    /// `self - earlier`, saturating (for statistics deltas over a window).
    pub fn since(self, earlier: StatDuration) -> StatDuration {
        StatDuration {
            count: self.count.saturating_sub(earlier.count),
            ns: self.ns.saturating_sub(earlier.ns),
        }
    }

    /// The average duration in nanoseconds (0 when no events).
    pub fn avg_ns(self) -> u64 {
        self.ns.checked_div(self.count).unwrap_or(0)
    }
}

/// A model version's statistics (the statistics extension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Milliseconds since the epoch of the last inference; 0 if none.
    pub last_inference: u64,
    /// Inferences performed (a batch of n counts n).
    pub inference_count: u64,
    /// Model executions (a batch counts 1).
    pub execution_count: u64,
    /// Successful requests (duration: request end to end in the server).
    pub success: StatDuration,
    /// Failed requests.
    pub fail: StatDuration,
    /// Time waiting in the scheduler's queue.
    pub queue: StatDuration,
    /// Time preparing inputs.
    pub compute_input: StatDuration,
    /// Time running the model.
    pub compute_infer: StatDuration,
    /// Time preparing outputs.
    pub compute_output: StatDuration,
    /// Response cache hits.
    pub cache_hit: StatDuration,
    /// Response cache misses.
    pub cache_miss: StatDuration,
}

impl ModelStats {
    /// Field-wise `self - earlier` of the counters and durations (names from `self`).
    pub fn since(&self, earlier: &ModelStats) -> ModelStats {
        ModelStats {
            name: self.name.clone(),
            version: self.version.clone(),
            last_inference: self.last_inference,
            inference_count: self.inference_count.saturating_sub(earlier.inference_count),
            execution_count: self.execution_count.saturating_sub(earlier.execution_count),
            success: self.success.since(earlier.success),
            fail: self.fail.since(earlier.fail),
            queue: self.queue.since(earlier.queue),
            compute_input: self.compute_input.since(earlier.compute_input),
            compute_infer: self.compute_infer.since(earlier.compute_infer),
            compute_output: self.compute_output.since(earlier.compute_output),
            cache_hit: self.cache_hit.since(earlier.cache_hit),
            cache_miss: self.cache_miss.since(earlier.cache_miss),
        }
    }
}

/// A registered system shared memory region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmRegionStatus {
    /// Region name.
    pub name: String,
    /// The shared memory object's key.
    pub key: String,
    /// Offset into the object.
    pub offset: u64,
    /// Size in bytes.
    pub byte_size: u64,
}

/// Converts JSON element values (a flat or nested array) to raw little-endian bytes of
/// `datatype` (BYTES: length-prefixed UTF-8 strings).
pub fn json_to_raw(datatype: &str, values: &Value) -> Result<Bytes> {
    let mut flat = Vec::new();
    flatten(values, &mut flat);
    let mut out = BytesMut::new();
    let bad = |v: &Value| Error::invalid(format!("{v} is not a valid {datatype} element"));
    for v in flat {
        match datatype {
            "BOOL" => out.put_u8(v.as_bool().ok_or_else(|| bad(v))? as u8),
            "INT8" | "INT16" | "INT32" | "INT64" => {
                let i = v.as_i64().ok_or_else(|| bad(v))?;
                match datatype {
                    "INT8" => out.put_i8(i as i8),
                    "INT16" => out.put_i16_le(i as i16),
                    "INT32" => out.put_i32_le(i as i32),
                    _ => out.put_i64_le(i),
                }
            }
            "UINT8" | "UINT16" | "UINT32" | "UINT64" => {
                let u = v.as_u64().ok_or_else(|| bad(v))?;
                match datatype {
                    "UINT8" => out.put_u8(u as u8),
                    "UINT16" => out.put_u16_le(u as u16),
                    "UINT32" => out.put_u32_le(u as u32),
                    _ => out.put_u64_le(u),
                }
            }
            "FP32" => out.put_f32_le(v.as_f64().ok_or_else(|| bad(v))? as f32),
            "FP64" => out.put_f64_le(v.as_f64().ok_or_else(|| bad(v))?),
            "BYTES" => {
                let s = v.as_str().ok_or_else(|| bad(v))?;
                out.put_u32_le(s.len() as u32);
                out.put_slice(s.as_bytes());
            }
            _ => {
                return Err(Error::invalid(format!(
                    "JSON data of type {datatype} is not supported; use raw data"
                )));
            }
        }
    }
    Ok(out.freeze())
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}
