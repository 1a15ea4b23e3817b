//! Every RPC of `inference.GRPCInferenceService` and `grpc.health.v1.Health/Check` on top of
//! the core `Server`, answering as Triton 2.51's grpc_server.cc does (codes, texts, which
//! fields are set).

use std::sync::Arc;
use std::time::Instant;

use ferrite_core::stats::{BatchStats, Duration as StatDuration, InferStats, ModelStats};
use ferrite_core::{Error, LoadParams, Parameters, Server};
use ferrite_proto::health::health_check_response::ServingStatus;
use ferrite_proto::health::health_server::Health;
use ferrite_proto::health::{HealthCheckRequest, HealthCheckResponse};
use ferrite_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use ferrite_proto::inference::model_repository_parameter::ParameterChoice as RepoParam;
use ferrite_proto::inference::*;
use tonic::{Request, Response, Status};

use crate::GrpcOptions;
use crate::decode::{self, Rpc};
use crate::encode;
use crate::status::{self, parse_version, to_status};
use crate::stream;

/// The service behind both gRPC services. Cheap to clone.
#[derive(Clone)]
pub struct Frontend {
    inner: Arc<Inner>,
}

struct Inner {
    server: Server,
    options: GrpcOptions,
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, Error>) -> Reply<T> {
    result.map(Response::new).map_err(|e| to_status(&e))
}

impl Frontend {
    pub fn new(server: Server, options: GrpcOptions) -> Frontend {
        Frontend {
            inner: Arc::new(Inner { server, options }),
        }
    }

    pub fn server(&self) -> &Server {
        &self.inner.server
    }

    /// The request metadata forwarded as parameters (`--grpc-header-forward-pattern`).
    pub fn forwarded_headers(&self, metadata: &tonic::metadata::MetadataMap) -> Parameters {
        let mut forwarded = Parameters::new();
        if let Some(forward) = &self.inner.options.header_forward {
            let headers = metadata.clone().into_headers();
            forward.apply(
                headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
                &mut forwarded,
            );
        }
        forwarded
    }

    pub fn options(&self) -> &GrpcOptions {
        &self.inner.options
    }

    /// Decodes, runs and encodes one request (both RPCs).
    pub async fn infer(
        &self,
        request: ModelInferRequest,
        deadline: Option<Instant>,
        forwarded: &Parameters,
        rpc: Rpc,
    ) -> Result<ModelInferResponse, InferError> {
        let server = &self.inner.server;
        let decoded =
            decode::decode(server, request, deadline, forwarded, rpc).map_err(InferError::Issue)?;
        let responses = server.infer(decoded.request).map_err(InferError::Issue)?;
        let response = responses.single().await.map_err(InferError::Complete)?;
        encode::response(
            response,
            &decoded.shm_outputs,
            self.inner.options.max_encoding_message_size,
        )
        .await
        .map_err(InferError::Complete)
    }
}

/// Why a request failed: before it was queued (its bad input, an unknown model) or when it
/// completed (the model failed, the deadline passed, the output did not fit). Triton's stream
/// answers the two differently.
#[derive(Debug)]
pub enum InferError {
    Issue(Error),
    Complete(Error),
}

impl InferError {
    pub fn error(&self) -> &Error {
        match self {
            InferError::Issue(e) | InferError::Complete(e) => e,
        }
    }
}

fn log_failure(id: &str, e: &Error) {
    let id = if id.is_empty() { "<id_unknown>" } else { id };
    tracing::debug!(request_id = id, "Infer failed: {}", e.message());
}

/// A count and a total duration, as a protobuf message.
fn duration(d: &StatDuration) -> Option<StatisticDuration> {
    Some(StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

fn infer_statistics(s: &InferStats) -> InferStatistics {
    InferStatistics {
        success: duration(&s.success),
        fail: duration(&s.fail),
        queue: duration(&s.queue),
        compute_input: duration(&s.compute_input),
        compute_infer: duration(&s.compute_infer),
        compute_output: duration(&s.compute_output),
        cache_hit: duration(&s.cache_hit),
        cache_miss: duration(&s.cache_miss),
    }
}

fn batch_statistics(b: &BatchStats) -> InferBatchStatistics {
    InferBatchStatistics {
        batch_size: b.batch_size,
        compute_input: duration(&b.compute_input),
        compute_infer: duration(&b.compute_infer),
        compute_output: duration(&b.compute_output),
    }
}

/// One model version's statistics (reference 09).
pub fn model_statistics(s: &ModelStats) -> ModelStatistics {
    ModelStatistics {
        name: s.name.clone(),
        version: s.version.to_string(),
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(infer_statistics(&s.inference_stats)),
        batch_stats: s.batch_stats.iter().map(batch_statistics).collect(),
        memory_usage: Vec::new(),
        response_stats: Default::default(),
    }
}

const NO_REPOSITORY_NAME: &str = "'repository_name' specification is not supported";

/// Runs a model control operation (it may wait for loads and drains) off the I/O threads.
async fn blocking(f: impl FnOnce() -> Result<(), Error> + Send + 'static) -> Result<(), Status> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::internal(format!("model control failed: {e}"))))
        .map_err(|e| to_status(&e))
}

#[tonic::async_trait]
impl GrpcInferenceService for Frontend {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Reply<ServerLiveResponse> {
        Ok(Response::new(ServerLiveResponse {
            live: self.inner.server.is_live(),
        }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Reply<ServerReadyResponse> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.inner.server.is_ready(),
        }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Reply<ModelReadyResponse> {
        let r = request.into_inner();
        // An unknown model is not ready, and that is no error (reference 12).
        reply(parse_version(&r.version).map(|v| ModelReadyResponse {
            ready: self.inner.server.model_ready(&r.name, v),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Reply<ServerMetadataResponse> {
        let m = self.inner.server.metadata();
        Ok(Response::new(ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Reply<ModelMetadataResponse> {
        let r = request.into_inner();
        let tensor = |t: ferrite_core::TensorMetadata| model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        };
        reply(
            parse_version(&r.version)
                .and_then(|v| self.inner.server.model_metadata(&r.name, v))
                .map(|m| ModelMetadataResponse {
                    name: m.name,
                    versions: m.versions,
                    platform: m.platform,
                    inputs: m.inputs.into_iter().map(tensor).collect(),
                    outputs: m.outputs.into_iter().map(tensor).collect(),
                }),
        )
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Reply<ModelInferResponse> {
        let deadline = status::deadline(request.metadata());
        let forwarded = self.forwarded_headers(request.metadata());
        let request = request.into_inner();
        let id = request.id.clone();
        let work = self.infer(request, deadline, &forwarded, Rpc::ModelInfer);
        let result = match deadline {
            Some(at) => match tokio::time::timeout_at(at.into(), work).await {
                Ok(r) => r,
                Err(_) => return Err(Status::deadline_exceeded("Deadline Exceeded")),
            },
            None => work.await,
        };
        result.map(Response::new).map_err(|e| {
            log_failure(&id, e.error());
            to_status(e.error())
        })
    }

    type ModelStreamInferStream = stream::ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Reply<Self::ModelStreamInferStream> {
        let deadline = status::deadline(request.metadata());
        let forwarded = self.forwarded_headers(request.metadata());
        Ok(Response::new(stream::start(
            self.clone(),
            request.into_inner(),
            deadline,
            forwarded,
        )))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Reply<ModelConfigResponse> {
        let r = request.into_inner();
        reply(
            parse_version(&r.version)
                .and_then(|v| self.inner.server.model_config(&r.name, v))
                .map(|config| ModelConfigResponse {
                    config: Some(config),
                }),
        )
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Reply<ModelStatisticsResponse> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        reply(
            parse_version(&r.version)
                .and_then(|v| self.inner.server.statistics(name, v))
                .map(|stats| ModelStatisticsResponse {
                    model_stats: stats.iter().map(model_statistics).collect(),
                }),
        )
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Reply<RepositoryIndexResponse> {
        let r = request.into_inner();
        if !r.repository_name.is_empty() {
            return Err(to_status(&Error::unsupported(NO_REPOSITORY_NAME)));
        }
        let models = self
            .inner
            .server
            .index(r.ready)
            .into_iter()
            .map(|e| repository_index_response::ModelIndex {
                name: e.name,
                version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                state: e.state.map(|s| s.as_str().to_string()).unwrap_or_default(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    /// Explicit load (`config` string and `file:<path>` bytes parameters); in modes none
    /// and poll, after checking the request as Triton does, Triton's UNAVAILABLE.
    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Reply<RepositoryModelLoadResponse> {
        let r = request.into_inner();
        if !r.repository_name.is_empty() {
            return Err(to_status(&Error::unsupported(NO_REPOSITORY_NAME)));
        }
        let mut params = LoadParams::default();
        for (key, param) in &r.parameters {
            match (key.as_str(), &param.parameter_choice) {
                ("config", Some(RepoParam::StringParam(text))) => {
                    params.config = Some(text.clone());
                }
                (k, Some(RepoParam::BytesParam(bytes))) if k.starts_with("file:") => {
                    params
                        .files
                        .insert(k["file:".len()..].to_string(), bytes.to_vec());
                }
                _ => {}
            }
            let ok = if key == "config" {
                matches!(param.parameter_choice, Some(RepoParam::StringParam(_)))
            } else if key.starts_with("file:") {
                matches!(param.parameter_choice, Some(RepoParam::BytesParam(_)))
            } else {
                return Err(to_status(&Error::invalid_arg(format!(
                    "unrecognized load parameter '{key}'."
                ))));
            };
            if !ok {
                let want = if key == "config" {
                    "string_param"
                } else {
                    "bytes_param"
                };
                return Err(to_status(&Error::invalid_arg(format!(
                    "invalid value type for load parameter '{key}', expected {want}."
                ))));
            }
        }
        let server = self.inner.server.clone();
        let name = r.model_name;
        blocking(move || server.load(&name, params)).await?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Reply<RepositoryModelUnloadResponse> {
        let r = request.into_inner();
        if !r.repository_name.is_empty() {
            return Err(to_status(&Error::unsupported(NO_REPOSITORY_NAME)));
        }
        if let Some(p) = r.parameters.get("unload_dependents")
            && !matches!(p.parameter_choice, Some(RepoParam::BoolParam(_)))
        {
            return Err(to_status(&Error::invalid_arg(
                "invalid value type for 'unload_dependents' parameter, expected bool_param.",
            )));
        }
        let dependents = matches!(
            r.parameters
                .get("unload_dependents")
                .and_then(|p| p.parameter_choice.as_ref()),
            Some(RepoParam::BoolParam(true))
        );
        let server = self.inner.server.clone();
        let name = r.model_name;
        blocking(move || server.unload(&name, dependents)).await?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<SystemSharedMemoryStatusRequest>,
    ) -> Reply<SystemSharedMemoryStatusResponse> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        reply(
            self.inner
                .server
                .shared_memory()
                .system_status(name)
                .map(|regions| SystemSharedMemoryStatusResponse {
                    regions: regions
                        .into_iter()
                        .map(|s| {
                            (
                                s.name.clone(),
                                system_shared_memory_status_response::RegionStatus {
                                    name: s.name,
                                    key: s.key,
                                    offset: s.offset,
                                    byte_size: s.byte_size,
                                },
                            )
                        })
                        .collect(),
                }),
        )
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Reply<SystemSharedMemoryRegisterResponse> {
        let r = request.into_inner();
        let server = self.inner.server.clone();
        // Opening and mapping a file: off the async threads.
        let result = tokio::task::spawn_blocking(move || {
            server
                .shared_memory()
                .register_system(&r.name, &r.key, r.offset, r.byte_size)
        })
        .await
        .unwrap_or_else(|e| Err(Error::internal(format!("registration failed: {e}"))));
        reply(result.map(|()| SystemSharedMemoryRegisterResponse {}))
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Reply<SystemSharedMemoryUnregisterResponse> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        reply(
            self.inner
                .server
                .shared_memory()
                .unregister_system(name)
                .map(|()| SystemSharedMemoryUnregisterResponse {}),
        )
    }

    async fn cuda_shared_memory_status(
        &self,
        request: Request<CudaSharedMemoryStatusRequest>,
    ) -> Reply<CudaSharedMemoryStatusResponse> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        reply(
            self.inner
                .server
                .shared_memory()
                .cuda_status(name)
                .map(|regions| CudaSharedMemoryStatusResponse {
                    regions: regions
                        .into_iter()
                        .map(|s| {
                            (
                                s.name.clone(),
                                cuda_shared_memory_status_response::RegionStatus {
                                    name: s.name,
                                    device_id: s.device_id,
                                    byte_size: s.byte_size,
                                },
                            )
                        })
                        .collect(),
                }),
        )
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Reply<CudaSharedMemoryRegisterResponse> {
        let r = request.into_inner();
        reply(
            self.inner
                .server
                .shared_memory()
                .register_cuda(&r.name, &r.raw_handle, r.device_id, r.byte_size)
                .map(|()| CudaSharedMemoryRegisterResponse {}),
        )
    }

    async fn cuda_shared_memory_unregister(
        &self,
        request: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Reply<CudaSharedMemoryUnregisterResponse> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        reply(
            self.inner
                .server
                .shared_memory()
                .unregister_cuda(name)
                .map(|()| CudaSharedMemoryUnregisterResponse {}),
        )
    }

    /// The trace extension: the global settings, or a model's (`model_name`); a setting with
    /// no value falls back to the global one.
    async fn trace_setting(
        &self,
        request: Request<TraceSettingRequest>,
    ) -> Reply<TraceSettingResponse> {
        let r = request.into_inner();
        let model = (!r.model_name.is_empty()).then_some(r.model_name.as_str());
        let server = &self.inner.server;
        let settings = if r.settings.is_empty() {
            server.trace_settings(model)
        } else {
            let update = ferrite_core::TraceUpdate {
                settings: r
                    .settings
                    .iter()
                    .map(|(k, v)| (k.clone(), (!v.value.is_empty()).then(|| v.value.clone())))
                    .collect(),
            };
            server.update_trace_settings(model, &update)
        }
        .map_err(|e| to_status(&e))?;
        let settings = settings
            .to_map()
            .into_iter()
            .map(|(k, value)| {
                (
                    k.to_string(),
                    trace_setting_response::SettingValue { value },
                )
            })
            .collect();
        Ok(Response::new(TraceSettingResponse { settings }))
    }

    /// The logging extension: an empty map reads the settings, others change them.
    async fn log_settings(
        &self,
        request: Request<LogSettingsRequest>,
    ) -> Reply<LogSettingsResponse> {
        use log_settings_request::setting_value::ParameterChoice as In;
        use log_settings_response::SettingValue;
        use log_settings_response::setting_value::ParameterChoice as Out;
        let r = request.into_inner();
        let server = &self.inner.server;
        let settings = if r.settings.is_empty() {
            server.log_settings()
        } else {
            let mut update = ferrite_core::LogUpdate::default();
            for (key, value) in &r.settings {
                let want = |kind: &str| {
                    to_status(&Error::invalid_arg(format!(
                        "expect {kind} for log setting '{key}'"
                    )))
                };
                let v = value.parameter_choice.as_ref();
                match key.as_str() {
                    "log_info" | "log_warning" | "log_error" => {
                        let Some(In::BoolParam(b)) = v else {
                            return Err(want("bool_param"));
                        };
                        let slot = match key.as_str() {
                            "log_info" => &mut update.log_info,
                            "log_warning" => &mut update.log_warning,
                            _ => &mut update.log_error,
                        };
                        *slot = Some(*b);
                    }
                    "log_verbose_level" => {
                        let Some(In::Uint32Param(n)) = v else {
                            return Err(want("uint32_param"));
                        };
                        update.log_verbose_level = Some(*n);
                    }
                    "log_format" | "log_file" => {
                        let Some(In::StringParam(text)) = v else {
                            return Err(want("string_param"));
                        };
                        if key == "log_format" {
                            update.log_format = Some(text.clone());
                        } else {
                            update.log_file = Some(text.clone());
                        }
                    }
                    other => {
                        return Err(to_status(&Error::invalid_arg(format!(
                            "log setting '{other}' is unknown (log_file, log_info, log_warning, log_error, log_verbose_level, log_format)"
                        ))));
                    }
                }
            }
            server.update_log_settings(&update)
        }
        .map_err(|e| to_status(&e))?;
        let value = |c: Out| SettingValue {
            parameter_choice: Some(c),
        };
        let settings = [
            ("log_file", value(Out::StringParam(settings.log_file))),
            ("log_info", value(Out::BoolParam(settings.log_info))),
            ("log_warning", value(Out::BoolParam(settings.log_warning))),
            ("log_error", value(Out::BoolParam(settings.log_error))),
            (
                "log_verbose_level",
                value(Out::Uint32Param(settings.log_verbose_level)),
            ),
            ("log_format", value(Out::StringParam(settings.log_format))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(Response::new(LogSettingsResponse { settings }))
    }
}

/// `grpc.health.v1.Health/Check`: SERVING when the server is ready, NOT_SERVING otherwise.
/// Like Triton, the requested service name is not looked at.
#[derive(Clone)]
pub struct HealthService {
    server: Server,
}

impl HealthService {
    pub fn new(server: Server) -> HealthService {
        HealthService { server }
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, _: Request<HealthCheckRequest>) -> Reply<HealthCheckResponse> {
        let status = if self.server.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_match_reference_09() {
        let d = |count, ns| StatDuration { count, ns };
        let s = ModelStats {
            name: "add_sub".into(),
            version: 1,
            last_inference: 1795292607293,
            inference_count: 5,
            execution_count: 5,
            inference_stats: InferStats {
                success: d(5, 34312638),
                queue: d(5, 121780),
                compute_input: d(5, 184554),
                compute_infer: d(5, 33804974),
                compute_output: d(5, 191261),
                ..Default::default()
            },
            batch_stats: vec![BatchStats {
                batch_size: 1,
                compute_input: d(5, 184554),
                compute_infer: d(5, 33804974),
                compute_output: d(5, 191261),
            }],
            ..Default::default()
        };
        let m = model_statistics(&s);
        assert_eq!(m.name, "add_sub");
        assert_eq!(m.version, "1");
        assert_eq!(m.last_inference, 1795292607293);
        let i = m.inference_stats.unwrap();
        assert_eq!(
            i.success,
            Some(StatisticDuration {
                count: 5,
                ns: 34312638
            })
        );
        // present though zero, as in the reference ("fail": {})
        assert_eq!(i.fail, Some(StatisticDuration::default()));
        assert_eq!(i.cache_miss, Some(StatisticDuration::default()));
        assert_eq!(m.batch_stats.len(), 1);
        assert_eq!(m.batch_stats[0].batch_size, 1);
        assert_eq!(
            m.batch_stats[0].compute_infer,
            Some(StatisticDuration {
                count: 5,
                ns: 33804974
            })
        );
        assert!(m.memory_usage.is_empty() && m.response_stats.is_empty());
    }
}
