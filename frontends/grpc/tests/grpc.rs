//! The gRPC API over a real socket with the generated tonic client, on a server with an empty
//! repository (no drivers needed): health, metadata, index, errors for unknown models, model
//! control refusal, shared memory, CUDA stubs, trace and log settings, streams that carry
//! errors, gzip, IPv6, one-port serving and graceful shutdown.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ShmObject, failure, start_empty};
use ferrite_grpc::GrpcOptions;
use ferrite_proto::health::health_check_response::ServingStatus;
use ferrite_proto::health::health_client::HealthClient;
use ferrite_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferrite_proto::inference::model_infer_request::InferInputTensor;
use ferrite_proto::inference::model_repository_parameter::ParameterChoice as RepoParam;
use ferrite_proto::inference::*;
use tonic::Code;
use tonic::codec::CompressionEncoding;

const UNKNOWN: &str = "Request for unknown model: 'nosuchmodel' is not found";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_index() {
    let s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    // references 01, 02
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    // reference 03 (the name and extensions; the version is Ferrite's)
    let m = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.name, "triton");
    assert_eq!(m.version, ferrite_core::server::VERSION);
    assert_eq!(
        m.extensions,
        ferrite_core::server::EXTENSIONS
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let index = c
        .repository_index(RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(index.models.is_empty());
    assert_eq!(
        failure(
            c.repository_index(RepositoryIndexRequest {
                repository_name: "r".into(),
                ready: false
            })
            .await
        ),
        (
            Code::Unimplemented,
            "'repository_name' specification is not supported".into()
        )
    );
    // statistics of every model: none
    let stats = c
        .model_statistics(ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stats.model_stats.is_empty());

    // grpc.health.v1: SERVING when ready, whatever service is named (as Triton)
    let mut h = HealthClient::new(s.channel().await);
    for service in ["", "inference.GRPCInferenceService", "nosuchservice"] {
        let r = h
            .check(ferrite_proto::health::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_and_bad_versions() {
    let s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    let name = || "nosuchmodel".to_string();
    // reference 11
    assert_eq!(
        failure(
            c.model_metadata(ModelMetadataRequest {
                name: name(),
                version: String::new()
            })
            .await
        ),
        (Code::NotFound, UNKNOWN.into())
    );
    // reference 12: not ready, no error
    assert!(
        !c.model_ready(ModelReadyRequest {
            name: name(),
            version: String::new()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    assert!(
        !c.model_ready(ModelReadyRequest {
            name: name(),
            version: "3".into()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    assert_eq!(
        failure(
            c.model_config(ModelConfigRequest {
                name: name(),
                version: String::new()
            })
            .await
        ),
        (Code::NotFound, UNKNOWN.into())
    );
    // reference 14
    let request = ModelInferRequest {
        model_name: name(),
        inputs: vec![InferInputTensor {
            name: "INPUT0".into(),
            datatype: "FP32".into(),
            shape: vec![16],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; 64].into()],
        ..Default::default()
    };
    assert_eq!(
        failure(c.model_infer(request).await),
        (Code::NotFound, UNKNOWN.into())
    );
    assert_eq!(
        failure(
            c.model_statistics(ModelStatisticsRequest {
                name: name(),
                version: String::new()
            })
            .await
        ),
        (
            Code::InvalidArgument,
            "requested model 'nosuchmodel' is not available".into()
        )
    );
    // Triton's GetModelVersionFromString, on every RPC that takes a version
    let stol = "failed to get model version from specified version string 'x' (details: stol), version should be an integral value > 0";
    assert_eq!(
        failure(
            c.model_ready(ModelReadyRequest {
                name: name(),
                version: "x".into()
            })
            .await
        ),
        (Code::InvalidArgument, stol.into())
    );
    assert_eq!(
        failure(
            c.model_metadata(ModelMetadataRequest {
                name: name(),
                version: "x".into()
            })
            .await
        ),
        (Code::InvalidArgument, stol.into())
    );
    assert_eq!(
        failure(
            c.model_infer(ModelInferRequest {
                model_name: name(),
                model_version: "-2".into(),
                ..Default::default()
            })
            .await
        ),
        (
            Code::InvalidArgument,
            "invalid model version specified '-2' , version should be an integral value > 0".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_control_is_refused_like_http() {
    let s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    let refused = (
        Code::Unavailable,
        "explicit model load / unload is not allowed if polling is enabled".to_string(),
    );
    let param = |p: RepoParam| ModelRepositoryParameter {
        parameter_choice: Some(p),
    };
    assert_eq!(
        failure(
            c.repository_model_load(RepositoryModelLoadRequest {
                model_name: "simple".into(),
                ..Default::default()
            })
            .await
        ),
        refused
    );
    let mut params = BTreeMap::new();
    params.insert(
        "config".to_string(),
        param(RepoParam::StringParam("{}".into())),
    );
    params.insert(
        "file:1/model.onnx".to_string(),
        param(RepoParam::BytesParam(vec![1u8, 2].into())),
    );
    assert_eq!(
        failure(
            c.repository_model_load(RepositoryModelLoadRequest {
                model_name: "simple".into(),
                parameters: params,
                ..Default::default()
            })
            .await
        ),
        refused
    );
    let load_with = |key: &str, p: RepoParam| RepositoryModelLoadRequest {
        model_name: "simple".into(),
        parameters: BTreeMap::from([(key.to_string(), param(p))]),
        ..Default::default()
    };
    assert_eq!(
        failure(
            c.repository_model_load(load_with("config", RepoParam::BoolParam(true)))
                .await
        ),
        (
            Code::InvalidArgument,
            "invalid value type for load parameter 'config', expected string_param.".into()
        )
    );
    assert_eq!(
        failure(
            c.repository_model_load(load_with("file:x", RepoParam::StringParam("a".into())))
                .await
        ),
        (
            Code::InvalidArgument,
            "invalid value type for load parameter 'file:x', expected bytes_param.".into()
        )
    );
    assert_eq!(
        failure(
            c.repository_model_load(load_with("nope", RepoParam::BoolParam(true)))
                .await
        ),
        (
            Code::InvalidArgument,
            "unrecognized load parameter 'nope'.".into()
        )
    );
    assert_eq!(
        failure(
            c.repository_model_load(RepositoryModelLoadRequest {
                repository_name: "r".into(),
                model_name: "simple".into(),
                ..Default::default()
            })
            .await
        ),
        (
            Code::Unimplemented,
            "'repository_name' specification is not supported".into()
        )
    );
    assert_eq!(
        failure(
            c.repository_model_unload(RepositoryModelUnloadRequest {
                model_name: "simple".into(),
                parameters: BTreeMap::from([(
                    "unload_dependents".to_string(),
                    param(RepoParam::BoolParam(true))
                )]),
                ..Default::default()
            })
            .await
        ),
        refused
    );
    assert_eq!(
        failure(
            c.repository_model_unload(RepositoryModelUnloadRequest {
                model_name: "simple".into(),
                parameters: BTreeMap::from([(
                    "unload_dependents".to_string(),
                    param(RepoParam::StringParam("yes".into()))
                )]),
                ..Default::default()
            })
            .await
        ),
        (
            Code::InvalidArgument,
            "invalid value type for 'unload_dependents' parameter, expected bool_param.".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_shared_memory_register_status_unregister() {
    let s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    let object = ShmObject::new(4096);
    c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
        name: "in".into(),
        key: object.key.clone(),
        offset: 0,
        byte_size: 1024,
    })
    .await
    .unwrap();
    c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
        name: "out".into(),
        key: object.key.clone(),
        offset: 1024,
        byte_size: 2048,
    })
    .await
    .unwrap();
    let all = c
        .system_shared_memory_status(SystemSharedMemoryStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .regions;
    assert_eq!(all.len(), 2);
    let out = &all["out"];
    assert_eq!(
        (
            out.name.as_str(),
            out.key.as_str(),
            out.offset,
            out.byte_size
        ),
        ("out", object.key.as_str(), 1024, 2048)
    );
    let one = c
        .system_shared_memory_status(SystemSharedMemoryStatusRequest { name: "in".into() })
        .await
        .unwrap()
        .into_inner()
        .regions;
    assert_eq!(one.keys().collect::<Vec<_>>(), ["in"]);
    // the same name twice
    assert_eq!(
        failure(
            c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
                name: "in".into(),
                key: object.key.clone(),
                offset: 0,
                byte_size: 16,
            })
            .await
        ),
        (
            Code::AlreadyExists,
            "shared memory region 'in' already in manager".into()
        )
    );
    // a region past the end of the object
    let (code, message) = failure(
        c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
            name: "big".into(),
            key: object.key.clone(),
            offset: 4000,
            byte_size: 200,
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(
        message.starts_with("failed to register shared memory region 'big': invalid args"),
        "{message}"
    );
    // an object that does not exist
    let (code, message) = failure(
        c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
            name: "none".into(),
            key: "/ferrite_grpc_no_such_object".into(),
            offset: 0,
            byte_size: 16,
        })
        .await,
    );
    assert_eq!(code, Code::Internal, "{message}");
    assert!(
        message.starts_with("Unable to open shared memory region: '/ferrite_grpc_no_such_object'"),
        "{message}"
    );
    assert_eq!(
        failure(
            c.system_shared_memory_status(SystemSharedMemoryStatusRequest {
                name: "nope".into()
            })
            .await
        ),
        (
            Code::NotFound,
            "Unable to find system shared memory region: 'nope'".into()
        )
    );
    // unregister one, then (an unknown name is no error) everything
    c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest { name: "in".into() })
        .await
        .unwrap();
    c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest { name: "in".into() })
        .await
        .unwrap();
    let left = c
        .system_shared_memory_status(SystemSharedMemoryStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .regions;
    assert_eq!(left.keys().collect::<Vec<_>>(), ["out"]);
    c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest::default())
        .await
        .unwrap();
    assert!(
        c.system_shared_memory_status(SystemSharedMemoryStatusRequest::default())
            .await
            .unwrap()
            .into_inner()
            .regions
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_shared_memory_without_cuda_trace_and_logging() {
    let s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    assert!(
        c.cuda_shared_memory_status(CudaSharedMemoryStatusRequest::default())
            .await
            .unwrap()
            .into_inner()
            .regions
            .is_empty()
    );
    assert_eq!(
        failure(
            c.cuda_shared_memory_status(CudaSharedMemoryStatusRequest { name: "g".into() })
                .await
        ),
        (
            Code::NotFound,
            "Unable to find cuda shared memory region: 'g'".into()
        )
    );
    let (code, message) = failure(
        c.cuda_shared_memory_register(CudaSharedMemoryRegisterRequest {
            name: "g".into(),
            raw_handle: vec![0u8; 64].into(),
            device_id: 0,
            byte_size: 64,
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(
        message,
        "failed to register CUDA shared memory region: 'g', GPUs not supported"
    );
    c.cuda_shared_memory_unregister(CudaSharedMemoryUnregisterRequest::default())
        .await
        .unwrap();
    // trace settings: the defaults (tracing off)
    let trace = c
        .trace_setting(TraceSettingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .settings;
    assert_eq!(trace["trace_level"].value, ["OFF"]);
    assert_eq!(trace["trace_rate"].value, ["1000"]);
    assert_eq!(trace["trace_count"].value, ["-1"]);
    // a server without a logger installed (the binary installs one) answers as Triton built
    // without dynamic logging
    assert_eq!(
        failure(c.log_settings(LogSettingsRequest::default()).await),
        (
            Code::Unavailable,
            "the server does not support dynamic logging".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_shared_memory_off_is_tritons_unsupported() {
    let repo = tempfile::tempdir().unwrap();
    let drivers = tempfile::tempdir().unwrap();
    let server = ferrite_core::Server::start(ferrite_core::ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: drivers.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let s = common::serve_on(
        server,
        GrpcOptions::default(),
        "127.0.0.1:0",
        vec![repo, drivers],
    )
    .await
    .unwrap();
    let mut c = s.client().await;
    let object = ShmObject::new(64);
    assert_eq!(
        failure(
            c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
                name: "r".into(),
                key: object.key.clone(),
                offset: 0,
                byte_size: 64,
            })
            .await
        ),
        (
            Code::Unimplemented,
            ferrite_core::shm::CLIENT_SHM_DISABLED.into()
        )
    );
}

/// Errors go back in the stream, in request order, each with its request's id; the stream
/// stays open and ends with OK when the client half-closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_carries_errors_without_closing() {
    let s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    let requests: Vec<ModelInferRequest> = (0..5)
        .map(|i| ModelInferRequest {
            model_name: "nosuchmodel".into(),
            model_version: if i == 3 { "x".into() } else { String::new() },
            id: format!("req-{i}"),
            ..Default::default()
        })
        .collect();
    let mut responses = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        let r = responses.message().await.unwrap().expect("a response");
        let infer = r.infer_response.unwrap();
        assert_eq!(infer.id, format!("req-{i}"));
        if i == 3 {
            assert!(r.error_message.starts_with("failed to get model version"));
        } else {
            assert_eq!(r.error_message, UNKNOWN);
        }
        assert!(infer.outputs.is_empty() && infer.model_name.is_empty());
    }
    assert!(responses.message().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_both_ways() {
    let s = start_empty(GrpcOptions {
        response_compression: Some(CompressionEncoding::Gzip),
        ..Default::default()
    })
    .await;
    let mut c = GrpcInferenceServiceClient::new(s.channel().await)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let r = c.server_metadata(ServerMetadataRequest {}).await.unwrap();
    assert_eq!(
        r.metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    assert_eq!(r.into_inner().name, "triton");
    // deflate requests are accepted too
    let mut d = GrpcInferenceServiceClient::new(s.channel().await)
        .send_compressed(CompressionEncoding::Deflate);
    assert!(
        d.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    // a client that does not accept gzip gets plain responses
    let mut plain = s.client().await;
    let r = plain
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap();
    assert!(r.metadata().get("grpc-encoding").is_none());
    // compression is off unless configured (Triton's default level is none)
    let s2 = start_empty(GrpcOptions::default()).await;
    let mut c2 = GrpcInferenceServiceClient::new(s2.channel().await)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let r = c2.server_metadata(ServerMetadataRequest {}).await.unwrap();
    assert!(r.metadata().get("grpc-encoding").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_limit() {
    let s = start_empty(GrpcOptions {
        max_decoding_message_size: 1024,
        ..Default::default()
    })
    .await;
    let mut c = s.client().await;
    let request = ModelInferRequest {
        model_name: "nosuchmodel".into(),
        raw_input_contents: vec![vec![0u8; 4096].into()],
        ..Default::default()
    };
    let (code, message) = failure(c.model_infer(request).await);
    assert_eq!(code, Code::OutOfRange, "{message}");
    // and the connection still works
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_when_the_host_has_it() {
    let repo = tempfile::tempdir().unwrap();
    let drivers = tempfile::tempdir().unwrap();
    let server = ferrite_core::Server::start(ferrite_core::ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: drivers.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let Ok(s) = common::serve_on(
        server,
        GrpcOptions::default(),
        "[::1]:0",
        vec![repo, drivers],
    )
    .await
    else {
        eprintln!("ipv6_when_the_host_has_it: skipped (no IPv6 loopback here)");
        return;
    };
    assert!(s.addr.is_ipv6());
    let mut c = GrpcInferenceServiceClient::connect(format!("http://[::1]:{}", s.addr.port()))
        .await
        .unwrap();
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_stops_accepting() {
    let mut s = start_empty(GrpcOptions::default()).await;
    let mut c = s.client().await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    drop(c);
    tokio::time::timeout(Duration::from_secs(10), s.shutdown())
        .await
        .expect("serve returns after shutdown");
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
}

/// One port for HTTP/1.1 and gRPC: connections that open with the HTTP/2 preface go to
/// `serve_connection`, the others elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_mode() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let repo = tempfile::tempdir().unwrap();
    let drivers = tempfile::tempdir().unwrap();
    let server = ferrite_core::Server::start(ferrite_core::ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: drivers.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let options = GrpcOptions::default();
    let routes = ferrite_grpc::routes(server, &options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 24];
            let mut n = 0;
            while n < head.len() {
                n = stream.peek(&mut head).await.unwrap();
                if n == 0 || !ferrite_grpc::is_h2_preface(&head[..n]) {
                    break;
                }
            }
            if ferrite_grpc::is_h2_preface(&head[..n]) {
                let (routes, options) = (routes.clone(), options.clone());
                tokio::spawn(async move {
                    ferrite_grpc::serve_connection(
                        stream,
                        routes,
                        &options,
                        std::future::pending(),
                    )
                    .await
                    .unwrap();
                });
            } else {
                // stands in for the HTTP/1.1 frontend
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                });
            }
        }
    });
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert_eq!(
        failure(
            c.model_metadata(ModelMetadataRequest {
                name: "nosuchmodel".into(),
                version: String::new()
            })
            .await
        ),
        (Code::NotFound, UNKNOWN.into())
    );
    let mut h = HealthClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    assert_eq!(
        h.check(ferrite_proto::health::HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner()
            .status,
        ServingStatus::Serving as i32
    );
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    http.read_to_end(&mut reply).await.unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK"));
}
