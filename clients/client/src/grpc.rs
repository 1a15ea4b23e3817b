//! KServe v2 over gRPC (tonic), including the bidirectional `ModelStreamInfer`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrite_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferrite_proto::inference::infer_parameter::ParameterChoice;
use ferrite_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use ferrite_proto::inference::{
    InferParameter, InferTensorContents, ModelConfigRequest, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelReadyRequest, ModelStatisticsRequest, ModelStreamInferResponse,
    ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest, StatisticDuration,
    SystemSharedMemoryRegisterRequest, SystemSharedMemoryStatusRequest,
    SystemSharedMemoryUnregisterRequest,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, ErrorKind, Result};
use crate::http::{base_url, chain, fill_shm};
use crate::types::{
    Data, InferRequest, InferResult, ModelMetadata, ModelStats, OutputTensor, Parameters,
    RequestTimings, ServerMetadata, ShmRef, ShmRegionStatus, StatDuration, TensorMeta, json_to_raw,
};

/// A GRPCInferenceService client over one HTTP/2 channel (requests are multiplexed).
/// Cloning is cheap and shares the channel.
#[derive(Clone, Debug)]
pub struct GrpcClient {
    client: GrpcInferenceServiceClient<Channel>,
    url: String,
}

/// A request encoded once as a `ModelInferRequest`, for [`GrpcClient::infer_prepared`] and
/// [`StreamSender::send_prepared`].
#[derive(Debug, Clone)]
pub struct PreparedGrpcInfer(pub ModelInferRequest);

impl GrpcClient {
    /// Connects to `url` (`host:port` or `http://host:port`); fails with
    /// `cannot reach <url>: ...` when nothing answers.
    pub async fn connect(url: &str) -> Result<GrpcClient> {
        let base = base_url(url)?;
        let endpoint = Endpoint::from_shared(base.clone())
            .map_err(|e| Error::invalid(format!("bad server URL '{url}': {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::connect(&base, chain(&e)))?;
        let client = GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(GrpcClient { client, url: base })
    }

    /// The server's URL, `http://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn status(&self, status: tonic::Status) -> Error {
        status_error(&self.url, status)
    }

    /// `ServerLive`.
    pub async fn live(&self) -> Result<bool> {
        let r = self.client.clone().server_live(ServerLiveRequest {}).await;
        Ok(r.map_err(|s| self.status(s))?.into_inner().live)
    }

    /// `ServerReady`.
    pub async fn ready(&self) -> Result<bool> {
        let r = self
            .client
            .clone()
            .server_ready(ServerReadyRequest {})
            .await;
        Ok(r.map_err(|s| self.status(s))?.into_inner().ready)
    }

    /// `ModelReady`.
    pub async fn model_ready(&self, model: &str, version: &str) -> Result<bool> {
        let r = self
            .client
            .clone()
            .model_ready(ModelReadyRequest {
                name: model.into(),
                version: version.into(),
            })
            .await;
        Ok(r.map_err(|s| self.status(s))?.into_inner().ready)
    }

    /// `ServerMetadata`.
    pub async fn server_metadata(&self) -> Result<ServerMetadata> {
        let r = self
            .client
            .clone()
            .server_metadata(ServerMetadataRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(ServerMetadata {
            name: r.name,
            version: r.version,
            extensions: r.extensions,
        })
    }

    /// `ModelMetadata`.
    pub async fn model_metadata(&self, model: &str, version: &str) -> Result<ModelMetadata> {
        let r = self
            .client
            .clone()
            .model_metadata(ModelMetadataRequest {
                name: model.into(),
                version: version.into(),
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        let tensors = |ts: Vec<_>| {
            ts.into_iter()
                .map(
                    |t: ferrite_proto::inference::model_metadata_response::TensorMetadata| {
                        TensorMeta {
                            name: t.name,
                            datatype: t.datatype,
                            shape: t.shape,
                        }
                    },
                )
                .collect()
        };
        Ok(ModelMetadata {
            name: r.name,
            versions: r.versions,
            platform: r.platform,
            inputs: tensors(r.inputs),
            outputs: tensors(r.outputs),
        })
    }

    /// `ModelConfig`, as the JSON the HTTP API gives (`ferrite_proto::model_config_to_json`).
    pub async fn model_config(&self, model: &str, version: &str) -> Result<Value> {
        let r = self
            .client
            .clone()
            .model_config(ModelConfigRequest {
                name: model.into(),
                version: version.into(),
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(r.config
            .map(|c| ferrite_proto::model_config_to_json(&c))
            .unwrap_or(Value::Null))
    }

    /// `ModelStatistics`; an empty `model` asks for every model.
    pub async fn model_statistics(&self, model: &str, version: &str) -> Result<Vec<ModelStats>> {
        let r = self
            .client
            .clone()
            .model_statistics(ModelStatisticsRequest {
                name: model.into(),
                version: version.into(),
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        let d = |d: Option<StatisticDuration>| {
            d.map(|d| StatDuration {
                count: d.count,
                ns: d.ns,
            })
            .unwrap_or_default()
        };
        Ok(r.model_stats
            .into_iter()
            .map(|m| {
                let s = m.inference_stats.unwrap_or_default();
                ModelStats {
                    name: m.name,
                    version: m.version,
                    last_inference: m.last_inference,
                    inference_count: m.inference_count,
                    execution_count: m.execution_count,
                    success: d(s.success),
                    fail: d(s.fail),
                    queue: d(s.queue),
                    compute_input: d(s.compute_input),
                    compute_infer: d(s.compute_infer),
                    compute_output: d(s.compute_output),
                    cache_hit: d(s.cache_hit),
                    cache_miss: d(s.cache_miss),
                }
            })
            .collect())
    }

    /// `SystemSharedMemoryRegister`.
    pub async fn register_system_shared_memory(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<()> {
        self.client
            .clone()
            .system_shared_memory_register(SystemSharedMemoryRegisterRequest {
                name: name.into(),
                key: key.into(),
                offset,
                byte_size,
            })
            .await
            .map_err(|s| self.status(s))?;
        Ok(())
    }

    /// `SystemSharedMemoryUnregister`; `None` unregisters every region.
    pub async fn unregister_system_shared_memory(&self, name: Option<&str>) -> Result<()> {
        self.client
            .clone()
            .system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest {
                name: name.unwrap_or_default().into(),
            })
            .await
            .map_err(|s| self.status(s))?;
        Ok(())
    }

    /// `SystemSharedMemoryStatus`.
    pub async fn system_shared_memory_status(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<ShmRegionStatus>> {
        let r = self
            .client
            .clone()
            .system_shared_memory_status(SystemSharedMemoryStatusRequest {
                name: name.unwrap_or_default().into(),
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(r.regions
            .into_values()
            .map(|r| ShmRegionStatus {
                name: r.name,
                key: r.key,
                offset: r.offset,
                byte_size: r.byte_size,
            })
            .collect())
    }

    /// Encodes `request` as a `ModelInferRequest` once.
    pub fn prepare(&self, request: &InferRequest) -> Result<PreparedGrpcInfer> {
        encode_request(request).map(PreparedGrpcInfer)
    }

    /// `ModelInfer` with a request encoded by [`GrpcClient::prepare`].
    pub async fn infer_prepared(&self, prepared: &PreparedGrpcInfer) -> Result<InferResult> {
        self.infer_prepared_timed(prepared).await.map(|(r, _)| r)
    }

    /// [`GrpcClient::infer_prepared`], with the client's own time spent building the
    /// request and converting the reply.
    pub async fn infer_prepared_timed(
        &self,
        prepared: &PreparedGrpcInfer,
    ) -> Result<(InferResult, RequestTimings)> {
        let start = Instant::now();
        let mut client = self.client.clone();
        let request = tonic::Request::new(prepared.0.clone());
        let sent = Instant::now();
        let r = client
            .model_infer(request)
            .await
            .map_err(|s| self.status(s))?;
        let received = Instant::now();
        let mut result = decode_response(r.into_inner())?;
        if prepared.0.outputs.iter().any(|o| !o.parameters.is_empty()) {
            fill_shm(&mut result, &shm_outputs(&prepared.0));
        }
        let timings = RequestTimings {
            send_ns: (sent - start).as_nanos() as u64,
            recv_ns: received.elapsed().as_nanos() as u64,
        };
        Ok((result, timings))
    }

    /// `ModelInfer`.
    pub async fn infer(&self, request: &InferRequest) -> Result<InferResult> {
        let prepared = self.prepare(request)?;
        self.infer_prepared(&prepared).await
    }

    /// Opens a `ModelStreamInfer` stream: send requests on it and receive the responses (or
    /// per-request errors, which do not close the stream) as they come, matched by id.
    pub async fn stream(&self) -> Result<InferStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        let response = self
            .client
            .clone()
            .model_stream_infer(UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| self.status(s))?;
        Ok(InferStream {
            sender: StreamSender {
                tx,
                url: self.url.clone(),
            },
            receiver: StreamReceiver {
                inner: response.into_inner(),
                url: self.url.clone(),
            },
        })
    }
}

/// A `ModelStreamInfer` stream. [`InferStream::split`] gives a sender and a receiver that
/// can be used from different tasks.
#[derive(Debug)]
pub struct InferStream {
    sender: StreamSender,
    receiver: StreamReceiver,
}

/// The sending half of an [`InferStream`]. Dropping it (all clones) ends the request stream;
/// the server then finishes the outstanding responses and closes the stream.
#[derive(Debug, Clone)]
pub struct StreamSender {
    tx: mpsc::UnboundedSender<ModelInferRequest>,
    url: String,
}

/// The receiving half of an [`InferStream`].
#[derive(Debug)]
pub struct StreamReceiver {
    inner: tonic::Streaming<ModelStreamInferResponse>,
    url: String,
}

impl InferStream {
    /// Queues `request` on the stream (never blocks).
    pub fn send(&self, request: &InferRequest) -> Result<()> {
        self.sender.send(request)
    }

    /// The next response: `None` once the stream has ended. A per-request error is an
    /// `Err` whose [`Error::request_id`] names the request.
    pub async fn recv(&mut self) -> Option<Result<InferResult>> {
        self.receiver.recv().await
    }

    /// Separate sender and receiver.
    pub fn split(self) -> (StreamSender, StreamReceiver) {
        (self.sender, self.receiver)
    }
}

impl StreamSender {
    /// Queues `request` on the stream (never blocks).
    pub fn send(&self, request: &InferRequest) -> Result<()> {
        self.send_prepared(&PreparedGrpcInfer(encode_request(request)?))
    }

    /// Queues an encoded request on the stream.
    pub fn send_prepared(&self, prepared: &PreparedGrpcInfer) -> Result<()> {
        self.tx.send(prepared.0.clone()).map_err(|_| {
            Error::new(
                ErrorKind::Io,
                format!("the stream to {} is closed", self.url),
            )
        })
    }
}

impl StreamReceiver {
    /// The next response, `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Result<InferResult>> {
        match self.inner.message().await {
            Ok(None) => None,
            Err(status) => Some(Err(status_error(&self.url, status))),
            Ok(Some(m)) => {
                if m.error_message.is_empty() {
                    Some(match m.infer_response {
                        Some(r) => decode_response(r),
                        None => Err(Error::protocol("stream message with no response")),
                    })
                } else {
                    Some(Err(Error::grpc(tonic::Code::Unknown, m.error_message)
                        .with_request_id(m.infer_response.map(|r| r.id))))
                }
            }
        }
    }
}

fn status_error(url: &str, status: tonic::Status) -> Error {
    // A transport failure (nothing listening, connection reset) comes back as UNAVAILABLE
    // with the transport error as its source.
    if status.code() == tonic::Code::Unavailable
        && let Some(source) = std::error::Error::source(&status)
    {
        return Error::connect(url, chain(source));
    }
    Error::grpc(status.code(), status.message())
}

fn to_param(v: &Value) -> Option<InferParameter> {
    let choice = match v {
        Value::Bool(b) => ParameterChoice::BoolParam(*b),
        Value::String(s) => ParameterChoice::StringParam(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ParameterChoice::Int64Param(i)
            } else if let Some(u) = n.as_u64() {
                ParameterChoice::Uint64Param(u)
            } else {
                ParameterChoice::DoubleParam(n.as_f64()?)
            }
        }
        _ => return None,
    };
    Some(InferParameter {
        parameter_choice: Some(choice),
    })
}

fn to_params(p: &Parameters) -> Result<BTreeMap<String, InferParameter>> {
    p.iter()
        .map(|(k, v)| {
            to_param(v)
                .map(|p| (k.clone(), p))
                .ok_or_else(|| Error::invalid(format!("parameter '{k}': {v} is not a scalar")))
        })
        .collect()
}

fn from_params(p: BTreeMap<String, InferParameter>) -> Parameters {
    p.into_iter()
        .filter_map(|(k, v)| {
            let v = match v.parameter_choice? {
                ParameterChoice::BoolParam(b) => Value::from(b),
                ParameterChoice::Int64Param(i) => Value::from(i),
                ParameterChoice::StringParam(s) => Value::from(s),
                ParameterChoice::DoubleParam(d) => Value::from(d),
                ParameterChoice::Uint64Param(u) => Value::from(u),
            };
            Some((k, v))
        })
        .collect()
}

fn shm_params(shm: &ShmRef) -> BTreeMap<String, InferParameter> {
    let p = |c| InferParameter {
        parameter_choice: Some(c),
    };
    BTreeMap::from([
        (
            "shared_memory_region".to_string(),
            p(ParameterChoice::StringParam(shm.region.clone())),
        ),
        (
            "shared_memory_offset".to_string(),
            p(ParameterChoice::Int64Param(shm.offset as i64)),
        ),
        (
            "shared_memory_byte_size".to_string(),
            p(ParameterChoice::Int64Param(shm.byte_size as i64)),
        ),
    ])
}

/// The outputs a request places in shared memory, read back from its parameters.
fn shm_outputs(request: &ModelInferRequest) -> Vec<(String, ShmRef)> {
    request
        .outputs
        .iter()
        .filter_map(|o| {
            let p = from_params(o.parameters.clone());
            let region = p.get("shared_memory_region")?.as_str()?.to_string();
            let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
            Some((
                o.name.clone(),
                ShmRef {
                    region,
                    offset: n("shared_memory_offset"),
                    byte_size: n("shared_memory_byte_size"),
                },
            ))
        })
        .collect()
}

fn encode_request(request: &InferRequest) -> Result<ModelInferRequest> {
    let mut raw = Vec::with_capacity(request.inputs.len());
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let parameters = match &input.data {
            Data::Raw(bytes) => {
                raw.push(bytes.clone());
                BTreeMap::new()
            }
            Data::Json(values) => {
                raw.push(json_to_raw(&input.datatype, values)?);
                BTreeMap::new()
            }
            Data::Shm(shm) => shm_params(shm),
        };
        inputs.push(InferInputTensor {
            name: input.name.clone(),
            datatype: input.datatype.clone(),
            shape: input.shape.clone(),
            parameters,
            contents: None,
        });
    }
    let outputs = request
        .outputs
        .iter()
        .map(|o| {
            let mut parameters = o.shm.as_ref().map(shm_params).unwrap_or_default();
            if let Some(n) = o.classification {
                parameters.insert(
                    "classification".into(),
                    InferParameter {
                        parameter_choice: Some(ParameterChoice::Int64Param(n.into())),
                    },
                );
            }
            InferRequestedOutputTensor {
                name: o.name.clone(),
                parameters,
            }
        })
        .collect();
    Ok(ModelInferRequest {
        model_name: request.model.clone(),
        model_version: request.version.clone(),
        id: request.id.clone(),
        parameters: to_params(&request.parameters)?,
        inputs,
        outputs,
        raw_input_contents: raw,
    })
}

/// Typed `contents` into raw little-endian bytes.
fn contents_to_raw(datatype: &str, c: InferTensorContents) -> Bytes {
    let mut out = Vec::new();
    match datatype {
        "BOOL" => out.extend(c.bool_contents.iter().map(|&b| b as u8)),
        "INT8" => out.extend(c.int_contents.iter().map(|&i| i as i8 as u8)),
        "INT16" => c
            .int_contents
            .iter()
            .for_each(|&i| out.extend((i as i16).to_le_bytes())),
        "INT32" => c
            .int_contents
            .iter()
            .for_each(|i| out.extend(i.to_le_bytes())),
        "INT64" => c
            .int64_contents
            .iter()
            .for_each(|i| out.extend(i.to_le_bytes())),
        "UINT8" => out.extend(c.uint_contents.iter().map(|&u| u as u8)),
        "UINT16" => c
            .uint_contents
            .iter()
            .for_each(|&u| out.extend((u as u16).to_le_bytes())),
        "UINT32" => c
            .uint_contents
            .iter()
            .for_each(|u| out.extend(u.to_le_bytes())),
        "UINT64" => c
            .uint64_contents
            .iter()
            .for_each(|u| out.extend(u.to_le_bytes())),
        "FP32" => c
            .fp32_contents
            .iter()
            .for_each(|f| out.extend(f.to_le_bytes())),
        "FP64" => c
            .fp64_contents
            .iter()
            .for_each(|f| out.extend(f.to_le_bytes())),
        "BYTES" => c.bytes_contents.iter().for_each(|b| {
            out.extend((b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }),
        _ => {}
    }
    Bytes::from(out)
}

fn decode_response(r: ModelInferResponse) -> Result<InferResult> {
    let all_raw = r.raw_output_contents.len() == r.outputs.len();
    let mut raw = r.raw_output_contents.into_iter();
    let mut outputs = Vec::with_capacity(r.outputs.len());
    for o in r.outputs {
        let parameters = from_params(o.parameters);
        let shm = ShmRef::from_parameters(&parameters);
        let data = if all_raw || shm.is_none() {
            raw.next()
        } else {
            None
        };
        let data = match (data, o.contents) {
            (Some(d), _) if !d.is_empty() => d,
            (_, Some(c)) => contents_to_raw(&o.datatype, c),
            (d, None) => d.unwrap_or_default(),
        };
        outputs.push(OutputTensor {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            data,
            shm,
            parameters,
        });
    }
    Ok(InferResult {
        model_name: r.model_name,
        model_version: r.model_version,
        id: r.id,
        parameters: from_params(r.parameters),
        outputs,
    })
}
