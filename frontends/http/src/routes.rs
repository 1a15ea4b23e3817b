//! Triton's HTTP API on top of the core `Server`: which path is which endpoint (Triton's
//! regular expressions), which method each takes, and each handler, in the order Triton's
//! handlers check things (so the same bad request gets the same answer). The shared memory
//! endpoints are Triton's `HandleSystemSharedMemory` / `HandleCudaSharedMemory`.

use std::fmt::Display;
use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferrite_core::shm::{CudaRegionStatus, SystemRegionStatus};
use ferrite_core::stats::{BatchStats, Duration as StatDuration, InferStats, ModelStats};
use ferrite_core::{Error, LoadParams, Server};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::compress;
use crate::decode::{self, Decoded, OutputKind};
use crate::encode;
use crate::json::{self, Value};
use crate::reply::{self, INFERENCE_HEADER_CONTENT_LENGTH, Kind, Reply, ReplyBody};
use crate::write;

/// Settings of the HTTP frontend.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Largest request body accepted, after decompression (bytes).
    pub max_input_size: usize,
    /// Headers forwarded to the model as request parameters (`--http-header-forward-pattern`).
    pub header_forward: Option<ferrite_core::HeaderForward>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_input_size: 1 << 30,
            header_forward: None,
        }
    }
}

/// Bodies from this size on are decoded, encoded and (de)compressed off the async threads.
const HEAVY_BYTES: usize = 1 << 20;

/// The HTTP API: turns requests into replies. Cheap to clone.
#[derive(Clone)]
pub struct Frontend {
    inner: Arc<Inner>,
}

struct Inner {
    server: Server,
    options: HttpOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelAction {
    Metadata,
    Ready,
    Config,
    Stats,
    Infer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShmAction {
    Status,
    Register,
    Unregister,
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    ServerMetadata,
    Health {
        ready: bool,
    },
    StatsAll,
    Model {
        name: &'a str,
        version: Option<&'a str>,
        action: ModelAction,
    },
    Index,
    Control {
        repository: Option<&'a str>,
        model: &'a str,
        load: bool,
    },
    /// `/v2/{system,cuda}sharedmemory[/region/{name}]/{status,register,unregister}`.
    SharedMemory {
        cuda: bool,
        region: Option<&'a str>,
        action: ShmAction,
    },
    /// `/v2/logging`: the logging extension.
    Logging,
    /// `/v2/trace/setting`, `/v2/models/{name}/trace/setting`: the trace extension.
    Trace {
        model: Option<&'a str>,
    },
    NotFound,
}

fn is_version(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// Triton's `Handle`: `/v2/models/stats`, then the model regex
/// `/v2/models/([^/]+)(?:/versions/([0-9]+))?(?:/(infer|ready|config|stats))?`, then `/v2`, the
/// health regex and the repository regex `/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))`.
fn route(path: &str) -> Route<'_> {
    if path == "/v2/models/stats" {
        return Route::StatsAll;
    }
    if let Some(rest) = path.strip_prefix("/v2/models/") {
        let segments: Vec<&str> = rest.split('/').collect();
        let action = |s: &str| match s {
            "infer" => Some(ModelAction::Infer),
            "ready" => Some(ModelAction::Ready),
            "config" => Some(ModelAction::Config),
            "stats" => Some(ModelAction::Stats),
            _ => None,
        };
        if let [name, "trace", "setting"] = segments.as_slice()
            && !name.is_empty()
        {
            return Route::Trace { model: Some(name) };
        }
        let found = match segments.as_slice() {
            [name] => Some((*name, None, ModelAction::Metadata)),
            [name, "versions", v] if is_version(v) => {
                Some((*name, Some(*v), ModelAction::Metadata))
            }
            [name, kind] => action(kind).map(|a| (*name, None, a)),
            [name, "versions", v, kind] if is_version(v) => {
                action(kind).map(|a| (*name, Some(*v), a))
            }
            _ => None,
        };
        if let Some((name, version, action)) = found
            && !name.is_empty()
        {
            return Route::Model {
                name,
                version,
                action,
            };
        }
        return Route::NotFound;
    }
    match path {
        "/v2" => return Route::ServerMetadata,
        "/v2/health/live" => return Route::Health { ready: false },
        "/v2/health/ready" => return Route::Health { ready: true },
        "/v2/logging" => return Route::Logging,
        "/v2/trace/setting" => return Route::Trace { model: None },
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/v2/repository/") {
        let segments: Vec<&str> = rest.split('/').collect();
        let action = |a: &str| match a {
            "load" => Some(true),
            "unload" => Some(false),
            _ => None,
        };
        let found = match segments.as_slice() {
            ["index"] => Some(Route::Index),
            [repo, "index"] if !repo.is_empty() => Some(Route::Index),
            ["models", model, a] if !model.is_empty() => action(a).map(|load| Route::Control {
                repository: None,
                model,
                load,
            }),
            [repo, "models", model, a] if !repo.is_empty() && !model.is_empty() => {
                action(a).map(|load| Route::Control {
                    repository: Some(repo),
                    model,
                    load,
                })
            }
            _ => None,
        };
        return found.unwrap_or(Route::NotFound);
    }
    // Triton's `/v2/(system|cuda)sharedmemory(?:/region/([^/]+))?/(status|register|unregister)`.
    let (cuda, rest) = if let Some(rest) = path.strip_prefix("/v2/systemsharedmemory/") {
        (false, rest)
    } else if let Some(rest) = path.strip_prefix("/v2/cudasharedmemory/") {
        (true, rest)
    } else {
        return Route::NotFound;
    };
    let action = |a: &str| match a {
        "status" => Some(ShmAction::Status),
        "register" => Some(ShmAction::Register),
        "unregister" => Some(ShmAction::Unregister),
        _ => None,
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let found = match segments.as_slice() {
        [a] => action(a).map(|action| (None, action)),
        ["region", name, a] if !name.is_empty() => action(a).map(|action| (Some(*name), action)),
        _ => None,
    };
    match found {
        Some((region, action)) => Route::SharedMemory {
            cuda,
            region,
            action,
        },
        None => Route::NotFound,
    }
}

/// Triton's `GetModelVersionFromString` for a `[0-9]+` path segment.
fn parse_version(version: Option<&str>) -> Result<Option<i64>, Error> {
    match version {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            Error::invalid_arg(format!(
                "failed to get model version from specified version string '{v}' (details: stol), version should be an integral value > 0"
            ))
        }),
    }
}

enum BodyError {
    TooLarge(u64, usize),
    Read(String),
}

impl BodyError {
    fn into_error(self) -> Error {
        match self {
            BodyError::TooLarge(size, limit) => Error::invalid_arg(format!(
                "request body of {size} bytes exceeds the maximum allowed input size of {limit} bytes"
            )),
            BodyError::Read(e) => {
                Error::invalid_arg(format!("failed to read the request body: {e}"))
            }
        }
    }
}

/// Reads a whole body into one buffer (no copy when it arrives in one piece).
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Err(BodyError::TooLarge(hint.lower(), limit));
    }
    let mut body = pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > limit {
            return Err(BodyError::TooLarge(total as u64, limit));
        }
        match (&mut first, &mut joined) {
            (None, None) => first = Some(data),
            (Some(f), None) => {
                let expected = hint.exact().map_or(0, |e| e as usize).max(total);
                let mut buf = BytesMut::with_capacity(expected);
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                first = None;
                joined = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, joined) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Runs `f` on a blocking thread when it is heavy, inline otherwise.
async fn cpu<T: Send + 'static>(
    heavy: bool,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    if heavy {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result,
            Err(e) => Err(Error::internal(format!("request processing failed: {e}"))),
        }
    } else {
        f()
    }
}

impl Frontend {
    pub fn new(server: Server, options: HttpOptions) -> Frontend {
        Frontend {
            inner: Arc::new(Inner { server, options }),
        }
    }

    pub fn server(&self) -> &Server {
        &self.inner.server
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: Request<B>) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        let connection = connection_header(&request);
        let mut reply = self.dispatch(request, &path, &method).await;
        if let Some(value) = connection {
            reply::add_connection(&mut reply, value);
        }
        reply
    }

    async fn dispatch<B>(&self, request: Request<B>, path: &str, method: &Method) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let method = method.clone();
        match route(path) {
            Route::ServerMetadata => self.server_metadata(&method),
            Route::Health { ready } => self.health(&method, ready),
            Route::StatsAll => self.stats(&method, None, None),
            Route::Model {
                name,
                version,
                action,
            } => match action {
                ModelAction::Metadata => self.model_metadata(&method, name, version),
                ModelAction::Ready => self.model_ready(&method, name, version),
                ModelAction::Config => self.model_config(&method, name, version),
                ModelAction::Stats => self.stats(&method, Some(name), version),
                ModelAction::Infer => self.infer(request, name, version).await,
            },
            Route::Index => self.index(request).await,
            Route::Control {
                repository,
                model,
                load,
            } => self.control(request, repository, model, load).await,
            Route::SharedMemory {
                cuda,
                region,
                action,
            } => self.shared_memory(request, cuda, region, action).await,
            Route::Logging => self.logging(request).await,
            Route::Trace { model } => self.trace_setting(request, model).await,
            Route::NotFound => {
                tracing::debug!("HTTP error: {method} {path} - 404");
                reply::not_found()
            }
        }
    }

    /// The logging extension: GET the settings, POST changes (any subset, JSON object).
    async fn logging<B>(&self, request: Request<B>) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let server = &self.inner.server;
        self.settings(
            request,
            || server.log_settings(),
            |doc| server.update_log_settings(&log_update(doc)?),
            |s| {
                serde_json::json!({
                    "log_file": s.log_file,
                    "log_info": s.log_info,
                    "log_warning": s.log_warning,
                    "log_error": s.log_error,
                    "log_verbose_level": s.log_verbose_level,
                    "log_format": s.log_format,
                })
            },
        )
        .await
    }

    /// The trace extension: GET a scope's settings, POST changes (strings, lists of strings,
    /// or null to fall back to the global value for a model).
    async fn trace_setting<B>(&self, request: Request<B>, model: Option<&str>) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let server = &self.inner.server;
        self.settings(
            request,
            || server.trace_settings(model),
            |doc| server.update_trace_settings(model, &trace_update(doc)?),
            |s| {
                let mut body = serde_json::Map::new();
                for (key, values) in s.to_map() {
                    let value = if key == "trace_level" {
                        serde_json::json!(values)
                    } else {
                        serde_json::json!(values.into_iter().next().unwrap_or_default())
                    };
                    body.insert(key.to_string(), value);
                }
                serde_json::Value::Object(body)
            },
        )
        .await
    }

    /// A settings endpoint (logging, trace): GET answers `get`, POST hands the JSON body to
    /// `update`; either way the settings go out through `render` (errors with their code).
    async fn settings<B, T>(
        &self,
        request: Request<B>,
        get: impl FnOnce() -> Result<T, Error>,
        update: impl FnOnce(&serde_json::Value) -> Result<T, Error>,
        render: impl FnOnce(T) -> serde_json::Value,
    ) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let method = request.method().clone();
        let settings = if method == Method::GET {
            get()
        } else if method == Method::POST {
            let body = match read_body(request.into_body(), self.inner.options.max_input_size).await
            {
                Ok(b) => b,
                Err(e) => return reply::core_error(Kind::Json, &e.into_error()),
            };
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(doc) => update(&doc),
                Err(e) => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        Kind::Json,
                        &format!("failed to parse the request JSON buffer: {e}"),
                    );
                }
            }
        } else {
            return reply::method_not_allowed(Kind::Json);
        };
        match settings {
            Ok(s) => reply::json(StatusCode::OK, render(s).to_string().into_bytes()),
            Err(e) => reply::core_error(Kind::Json, &e),
        }
    }

    fn server_metadata(&self, method: &Method) -> Reply {
        if method != Method::GET {
            return reply::method_not_allowed(Kind::Json);
        }
        let m = self.inner.server.metadata();
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"name\":");
        write::string(&mut out, m.name.as_bytes());
        out.extend_from_slice(b",\"version\":");
        write::string(&mut out, m.version.as_bytes());
        out.extend_from_slice(b",\"extensions\":[");
        for (i, e) in m.extensions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write::string(&mut out, e.as_bytes());
        }
        out.extend_from_slice(b"]}");
        reply::json(StatusCode::OK, out)
    }

    fn health(&self, method: &Method, ready: bool) -> Reply {
        if method != Method::GET {
            return reply::method_not_allowed(Kind::Plain);
        }
        let ok = if ready {
            self.inner.server.is_ready()
        } else {
            self.inner.server.is_live()
        };
        if ok {
            reply::ok_empty()
        } else {
            reply::build(
                StatusCode::BAD_REQUEST,
                Kind::Plain,
                &[],
                ReplyBody::empty(),
            )
        }
    }

    fn model_ready(&self, method: &Method, name: &str, version: Option<&str>) -> Reply {
        if method != Method::GET {
            return reply::method_not_allowed(Kind::Plain);
        }
        let version = match parse_version(version) {
            Ok(v) => v,
            Err(e) => return reply::core_error(Kind::Plain, &e),
        };
        if self.inner.server.model_ready(name, version) {
            reply::ok_empty()
        } else {
            reply::error(
                StatusCode::BAD_REQUEST,
                Kind::Plain,
                "Model version not ready",
            )
        }
    }

    fn model_metadata(&self, method: &Method, name: &str, version: Option<&str>) -> Reply {
        if method != Method::GET {
            return reply::method_not_allowed(Kind::Json);
        }
        let metadata =
            parse_version(version).and_then(|v| self.inner.server.model_metadata(name, v));
        let m = match metadata {
            Ok(m) => m,
            Err(e) => return reply::core_error(Kind::Json, &e),
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"name\":");
        write::string(&mut out, m.name.as_bytes());
        out.extend_from_slice(b",\"versions\":[");
        for (i, v) in m.versions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write::string(&mut out, v.as_bytes());
        }
        out.extend_from_slice(b"],\"platform\":");
        write::string(&mut out, m.platform.as_bytes());
        for (key, tensors) in [
            (&b",\"inputs\":["[..], &m.inputs),
            (b",\"outputs\":[", &m.outputs),
        ] {
            out.extend_from_slice(key);
            for (i, t) in tensors.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"name\":");
                write::string(&mut out, t.name.as_bytes());
                out.extend_from_slice(b",\"datatype\":");
                write::string(&mut out, t.datatype.as_bytes());
                out.extend_from_slice(b",\"shape\":[");
                for (j, d) in t.shape.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write::i64(&mut out, *d);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
        out.push(b'}');
        reply::json(StatusCode::OK, out)
    }

    fn model_config(&self, method: &Method, name: &str, version: Option<&str>) -> Reply {
        if method != Method::GET {
            return reply::method_not_allowed(Kind::Json);
        }
        match parse_version(version).and_then(|v| self.inner.server.model_config_json(name, v)) {
            Ok(config) => {
                let mut out = Vec::with_capacity(2048);
                write::value(&mut out, &config);
                reply::json(StatusCode::OK, out)
            }
            Err(e) => reply::core_error(Kind::Json, &e),
        }
    }

    fn stats(&self, method: &Method, name: Option<&str>, version: Option<&str>) -> Reply {
        if method != Method::GET {
            return reply::method_not_allowed(Kind::Json);
        }
        match parse_version(version).and_then(|v| self.inner.server.statistics(name, v)) {
            Ok(stats) => reply::json(StatusCode::OK, stats_json(&stats)),
            Err(e) => reply::core_error(Kind::Json, &e),
        }
    }

    async fn index<B>(&self, request: Request<B>) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        if request.method() != Method::POST {
            return reply::method_not_allowed(Kind::Json);
        }
        let body = match read_body(request.into_body(), self.inner.options.max_input_size).await {
            Ok(b) => b,
            Err(e) => return reply::core_error(Kind::Json, &e.into_error()),
        };
        let mut ready = false;
        if !body.is_empty() {
            let doc = match parse_small(&body) {
                Ok(doc) => doc,
                Err(e) => return reply::core_error(Kind::Json, &e),
            };
            if let Some(r) = doc.get("ready") {
                match r.as_bool() {
                    Some(r) => ready = r,
                    None => {
                        return reply::core_error(
                            Kind::Json,
                            &ferrite_core::texts::index_ready_not_bool(),
                        );
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(256);
        out.push(b'[');
        for (i, e) in self.inner.server.index(ready).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            write::string(&mut out, e.name.as_bytes());
            if let Some(v) = e.version {
                out.extend_from_slice(b",\"version\":\"");
                write::i64(&mut out, v);
                out.push(b'"');
            }
            if let Some(state) = e.state {
                out.extend_from_slice(b",\"state\":");
                write::string(&mut out, state.as_str().as_bytes());
            }
            if !e.reason.is_empty() {
                out.extend_from_slice(b",\"reason\":");
                write::string(&mut out, e.reason.as_bytes());
            }
            out.push(b'}');
        }
        out.push(b']');
        reply::json(StatusCode::OK, out)
    }

    /// Explicit load / unload (`parameters`: `config`, `file:<version>/<name>` in base64,
    /// `unload_dependents`). The body is checked as Triton checks it before the mode is: in
    /// modes none and poll the answer is Triton's 503.
    async fn control<B>(
        &self,
        request: Request<B>,
        repository: Option<&str>,
        model: &str,
        load: bool,
    ) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        if request.method() != Method::POST {
            return reply::method_not_allowed(Kind::Json);
        }
        if repository.is_some() {
            return reply::error(
                StatusCode::NOT_IMPLEMENTED,
                Kind::Json,
                "'repository_name' specification is not supported",
            );
        }
        let body = match read_body(request.into_body(), self.inner.options.max_input_size).await {
            Ok(b) => b,
            Err(e) => return reply::core_error(Kind::Json, &e.into_error()),
        };
        let mut params = LoadParams::default();
        let mut unload_dependents = false;
        if !body.is_empty() {
            let doc = match parse_small(&body) {
                Ok(doc) => doc,
                Err(e) => return reply::core_error(Kind::Json, &e),
            };
            if let Some(p) = doc.get("parameters") {
                if load {
                    match load_params(p) {
                        Ok(parsed) => params = parsed,
                        Err((status, message)) => {
                            return reply::error(status, Kind::Json, &message);
                        }
                    }
                } else if let Some(v) = p.get("unload_dependents") {
                    match v.as_bool() {
                        Some(b) => unload_dependents = b,
                        None => {
                            return reply::error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                Kind::Json,
                                "Unable to parse 'unload_dependents': attempt to access JSON non-boolean as boolean",
                            );
                        }
                    }
                }
            }
        }
        let server = self.inner.server.clone();
        let name = model.to_string();
        let done = tokio::task::spawn_blocking(move || {
            if load {
                server.load(&name, params)
            } else {
                server.unload(&name, unload_dependents)
            }
        })
        .await
        .unwrap_or_else(|e| Err(Error::internal(format!("model control failed: {e}"))));
        match done {
            Ok(()) => reply::build(StatusCode::OK, Kind::Json, &[], reply::ReplyBody::empty()),
            Err(e) => reply::core_error(Kind::Json, &e),
        }
    }

    /// The system and CUDA shared memory extensions. Every reply is JSON; success is 200 with
    /// the status array, or with an empty body.
    async fn shared_memory<B>(
        &self,
        request: Request<B>,
        cuda: bool,
        region: Option<&str>,
        action: ShmAction,
    ) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let wanted = match action {
            ShmAction::Status => Method::GET,
            ShmAction::Register | ShmAction::Unregister => Method::POST,
        };
        if request.method() != wanted {
            return reply::method_not_allowed(Kind::Json);
        }
        let shm = self.inner.server.shared_memory();
        let result = match (cuda, action) {
            (false, ShmAction::Status) => shm.system_status(region).map(|r| system_status_json(&r)),
            (true, ShmAction::Status) => shm.cuda_status(region).map(|r| cuda_status_json(&r)),
            (false, ShmAction::Register) => self
                .register_system(request, region)
                .await
                .map(|()| Vec::new()),
            (true, ShmAction::Register) => self
                .register_cuda(request, region)
                .await
                .map(|()| Vec::new()),
            (false, ShmAction::Unregister) => shm.unregister_system(region).map(|()| Vec::new()),
            (true, ShmAction::Unregister) => shm.unregister_cuda(region).map(|()| Vec::new()),
        };
        match result {
            Ok(body) => reply::json(StatusCode::OK, body),
            Err(e) => {
                tracing::debug!(
                    "{} shared memory {action:?} failed: {}",
                    if cuda { "CUDA" } else { "system" },
                    e.message()
                );
                reply::core_error(Kind::Json, &e)
            }
        }
    }

    /// `POST /v2/systemsharedmemory/region/{name}/register` with `{"key", "offset"?,
    /// "byte_size"}`, checked in Triton's order.
    async fn register_system<B>(
        &self,
        request: Request<B>,
        region: Option<&str>,
    ) -> Result<(), Error>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let shm = self.inner.server.shared_memory();
        shm.check_client_allowed()?;
        let Some(name) = region else {
            return Err(Error::invalid_arg(
                "'region name' is necessary to register system shared memory region",
            ));
        };
        let body = read_body(request.into_body(), self.inner.options.max_input_size)
            .await
            .map_err(BodyError::into_error)?;
        let doc = parse_small(&body)?;
        let key = doc
            .get("key")
            .ok_or_else(|| Error::invalid_arg("Shared memory register request has no 'key' field"))?
            .as_str_bytes()
            .ok_or_else(|| Error::internal("attempt to access JSON non-string as string"))?;
        let not_uint =
            || Error::internal("attempt to access JSON non-unsigned-integer as unsigned-integer");
        let offset = match doc.get("offset") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(not_uint)?,
        };
        let byte_size = doc
            .get("byte_size")
            .ok_or_else(|| {
                Error::invalid_arg("Shared memory register request has no 'byte_size' field")
            })?
            .as_u64()
            .ok_or_else(not_uint)?;
        shm.register_system(name, &String::from_utf8_lossy(key), offset, byte_size)
    }

    /// `POST /v2/cudasharedmemory/region/{name}/register` with `{"raw_handle": {"b64"},
    /// "device_id", "byte_size"}`. Without a GPU the body is not looked at (as a Triton built
    /// without GPUs).
    async fn register_cuda<B>(&self, request: Request<B>, region: Option<&str>) -> Result<(), Error>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let shm = self.inner.server.shared_memory();
        let name = region.unwrap_or("");
        shm.check_cuda_register(name)?;
        let body = read_body(request.into_body(), self.inner.options.max_input_size)
            .await
            .map_err(BodyError::into_error)?;
        let doc = parse_small(&body)?;
        let missing = |field: &str| {
            Error::invalid_arg(format!(
                "Shared memory register request has no '{field}' field"
            ))
        };
        let b64 = doc
            .get("raw_handle")
            .ok_or_else(|| missing("raw_handle"))?
            .get("b64")
            .ok_or_else(|| missing("raw_handle.b64"))?
            .as_str_bytes()
            .ok_or_else(|| Error::internal("attempt to access JSON non-string as string"))?;
        let raw_handle = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| {
                Error::invalid_arg(format!(
                    "'raw_handle' of CUDA shared memory region '{name}' is not valid base64: {e}"
                ))
            })?
        };
        let device_id = doc
            .get("device_id")
            .ok_or_else(|| missing("device_id"))?
            .as_i64()
            .ok_or_else(|| {
                Error::internal("attempt to access JSON non-signed-integer as signed-integer")
            })?;
        let byte_size = doc
            .get("byte_size")
            .ok_or_else(|| missing("byte_size"))?
            .as_u64()
            .ok_or_else(|| {
                Error::internal("attempt to access JSON non-unsigned-integer as unsigned-integer")
            })?;
        shm.register_cuda(name, &raw_handle, device_id, byte_size)
    }

    /// `POST /v2/models/{m}[/versions/{v}]/infer`.
    async fn infer<B>(&self, request: Request<B>, name: &str, version: Option<&str>) -> Reply
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        // Until the request is parsed, Triton's errors carry no Content-Type of their own
        // (libevhtp's text/plain); from then on application/json.
        if request.method() != Method::POST {
            return reply::method_not_allowed(Kind::Plain);
        }
        let version = match parse_version(version) {
            Ok(v) => v,
            Err(e) => return reply::core_error(Kind::Plain, &e),
        };
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let encoding = match compress::request_encoding(
            headers.get(CONTENT_ENCODING).map(HeaderValue::as_bytes),
        ) {
            Ok(e) => e,
            Err(()) => {
                return reply::build(
                    StatusCode::NOT_IMPLEMENTED,
                    Kind::Plain,
                    &[(ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"))],
                    ReplyBody::new([Bytes::from(write::error_body(
                        "Unsupported compression type",
                    ))]),
                );
            }
        };
        let limit = self.inner.options.max_input_size;
        let mut body = match read_body(body, limit).await {
            Ok(b) => b,
            Err(e) => return reply::core_error(Kind::Plain, &e.into_error()),
        };
        if let Some(encoding) = encoding {
            if body.is_empty() {
                return reply::error(
                    StatusCode::BAD_REQUEST,
                    Kind::Plain,
                    "nothing to be decompressed",
                );
            }
            let packed = body;
            let inflated = cpu(packed.len() >= HEAVY_BYTES / 4, move || {
                compress::decompress(&packed, limit).map_err(|e| {
                    Error::invalid_arg(format!(
                        "failed to decompress the request body (Content-Encoding: {}): {e}",
                        encoding.name()
                    ))
                })
            })
            .await;
            body = match inflated {
                Ok(b) => Bytes::from(b),
                Err(e) => return reply::core_error(Kind::Plain, &e),
            };
        }

        // The JSON header's length: the whole body unless Inference-Header-Content-Length says
        // otherwise; 0 means a raw request.
        let content_length = body.len();
        let header_length = match headers.get(INFERENCE_HEADER_CONTENT_LENGTH) {
            None => content_length,
            Some(value) => {
                let text = String::from_utf8_lossy(value.as_bytes());
                let Ok(parsed) = text.trim().parse::<i64>() else {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        Kind::Plain,
                        &format!("Unable to parse Inference-Header-Content-Length, got: {text}"),
                    );
                };
                if parsed < 0 || parsed as u64 > content_length as u64 {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        Kind::Plain,
                        &format!(
                            "inference header size should be in range (0, {content_length}), got: {text}"
                        ),
                    );
                }
                parsed as usize
            }
        };

        // An unknown model is found before the body is read as a request.
        let decoupled = match self.inner.server.model(name, version) {
            Ok(model) => model.decoupled(),
            Err(e) => return reply::core_error(Kind::Plain, &e),
        };
        // A decoupled model answers with any number of responses: as server-sent events to a
        // client that accepts them; Triton's refusal to any other.
        if decoupled && !accepts_event_stream(headers) {
            return reply::core_error(
                Kind::Plain,
                &Error::unsupported(
                    "HTTP end point doesn't support models with decoupled transaction policy",
                ),
            );
        }

        let decoded = if header_length == 0 {
            Ok(decode::raw_request(name, version, body))
        } else {
            let name = name.to_string();
            let server = self.inner.server.clone();
            cpu(header_length >= HEAVY_BYTES, move || {
                let header = body.slice(..header_length);
                let binary = body.slice(header_length..);
                decode::json_request(&name, version, &header, binary, server.shared_memory())
            })
            .await
        };
        let Decoded {
            mut request,
            outputs,
        } = match decoded {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("infer on '{name}' failed: {}", e.message());
                return reply::core_error(Kind::Json, &e);
            }
        };

        if let Some(forward) = &self.inner.options.header_forward {
            forward.apply(
                parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
                &mut request.parameters,
            );
        }
        if decoupled && (outputs.default_binary || outputs.named.iter().any(|(_, b)| *b)) {
            return reply::core_error(
                Kind::Json,
                &Error::invalid_arg(
                    "server-sent events carry JSON outputs only: a decoupled model's outputs cannot be binary_data",
                ),
            );
        }
        if decoupled && !outputs.shm.is_empty() {
            return reply::core_error(
                Kind::Json,
                &Error::invalid_arg(
                    "a decoupled model's outputs cannot go to shared memory: each response would overwrite the last",
                ),
            );
        }
        let request_id = request.id.clone();
        let stream = match self.inner.server.infer(request) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(request_id, "infer on '{name}' failed: {}", e.message());
                return reply::core_error(Kind::Json, &e);
            }
        };
        if decoupled {
            return event_stream(stream);
        }
        let response = match stream.single().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(request_id, "infer on '{name}' failed: {}", e.message());
                return reply::core_error(Kind::Plain, &e);
            }
        };

        let size_of = |kind: OutputKind| {
            response
                .outputs
                .iter()
                .filter(|t| outputs.kind(&t.name) == kind)
                .map(|t| t.data.len())
                .sum::<usize>()
        };
        let heavy = size_of(OutputKind::Json) >= HEAVY_BYTES / 8
            || size_of(OutputKind::SharedMemory) >= HEAVY_BYTES;
        let accept =
            compress::response_encoding(headers.get(ACCEPT_ENCODING).map(HeaderValue::as_bytes));
        let encoded = cpu(
            heavy
                || accept.is_some()
                    && response.outputs.iter().map(|t| t.data.len()).sum::<usize>() >= HEAVY_BYTES,
            move || {
                encode::write_shared_memory(&response, &outputs)?;
                let e = encode::response(&response, &outputs)?;
                let chunks = match accept {
                    Some(enc) => vec![Bytes::from(compress::compress(enc, &e.chunks))],
                    None => e.chunks,
                };
                Ok((chunks, e.json_len, e.has_binary))
            },
        )
        .await;
        let (chunks, json_len, has_binary) = match encoded {
            Ok(e) => e,
            Err(e) => return reply::core_error(Kind::Plain, &e),
        };
        let mut reply_headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(3);
        if has_binary {
            reply_headers.push((
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ));
            reply_headers.push((INFERENCE_HEADER_CONTENT_LENGTH, HeaderValue::from(json_len)));
        } else {
            reply_headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        if let Some(enc) = accept {
            reply_headers.push((CONTENT_ENCODING, HeaderValue::from_static(enc.name())));
        }
        reply::build_with_type(StatusCode::OK, &reply_headers, ReplyBody::new(chunks))
    }
}

/// Whether the request's `Accept` header names `text/event-stream`.
fn accepts_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// Events waiting for the client to read them, before the model's responses wait.
const EVENTS_BUFFERED: usize = 16;

/// How often a quiet event stream sends a comment line.
const EVENT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// A decoupled model's responses as server-sent events, each sent as it is produced: `data:
/// <the response as Triton's JSON>` with the `triton_final_response` parameter, or `data:
/// {"error":"..."}` for an error in a response's place. The stream ends after the final one.
/// A comment line (`:`) goes out each second the model is quiet; when the client goes away
/// the request's remaining work is abandoned.
fn event_stream(mut stream: ferrite_core::ResponseStream) -> Reply {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(EVENTS_BUFFERED);
    tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + EVENT_HEARTBEAT,
            EVENT_HEARTBEAT,
        );
        loop {
            let message = tokio::select! {
                m = stream.recv() => m,
                // The client went away (hyper dropped the body): drop the stream, so the
                // request's remaining work is abandoned.
                () = tx.closed() => return,
                // A comment line while the model is quiet: a connection the client closed
                // fails the write (an idle one is not noticed otherwise), and proxies see
                // traffic.
                _ = heartbeat.tick() => {
                    if tx.send(Bytes::from_static(b":\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(message) = message else {
                return;
            };
            let body = match message.response {
                Some(Ok(mut response)) => {
                    response.parameters.insert(
                        "triton_final_response".into(),
                        serde_json::Value::Bool(message.final_response),
                    );
                    match encode::response(&response, &decode::OutputKinds::default()) {
                        Ok(e) => e.chunks.concat(),
                        Err(e) => write::error_body(e.message()),
                    }
                }
                Some(Err(e)) => write::error_body(e.message()),
                // The final flag alone: the stream's end says it.
                None => continue,
            };
            let mut event = Vec::with_capacity(body.len() + 8);
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(&body);
            event.extend_from_slice(b"\n\n");
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    reply::event_stream(rx)
}

/// The Connection header libevhtp answers with (see [`reply::add_connection`]).
fn connection_header<B>(request: &Request<B>) -> Option<&'static str> {
    let has = |token: &str| {
        request
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match request.version() {
        Version::HTTP_11 if has("close") => Some("close"),
        Version::HTTP_10 if has("keep-alive") => Some("keep-alive"),
        _ => None,
    }
}

/// A trace extension update: each setting a string, a list of strings, a number or null.
fn trace_update(doc: &serde_json::Value) -> Result<ferrite_core::TraceUpdate, Error> {
    let serde_json::Value::Object(members) = doc else {
        return Err(Error::invalid_arg(
            "the trace settings must be a JSON object",
        ));
    };
    let mut update = ferrite_core::TraceUpdate::default();
    for (key, value) in members {
        let one = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            _ => Err(Error::invalid_arg(format!(
                "expect a string or a list of strings for trace setting '{key}'"
            ))),
        };
        let values = match value {
            serde_json::Value::Null => None,
            serde_json::Value::Array(items) => {
                Some(items.iter().map(one).collect::<Result<Vec<_>, _>>()?)
            }
            v => Some(vec![one(v)?]),
        };
        update.settings.push((key.clone(), values));
    }
    Ok(update)
}

/// A logging extension update: an object of Triton's setting names, each of its type.
fn log_update(doc: &serde_json::Value) -> Result<ferrite_core::LogUpdate, Error> {
    let serde_json::Value::Object(members) = doc else {
        return Err(Error::invalid_arg("the log settings must be a JSON object"));
    };
    let mut update = ferrite_core::LogUpdate::default();
    for (key, value) in members {
        let boolean = || {
            value.as_bool().ok_or_else(|| {
                Error::invalid_arg(format!("expect boolean for log setting '{key}'"))
            })
        };
        let string = || {
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::invalid_arg(format!("expect string for log setting '{key}'")))
        };
        match key.as_str() {
            "log_info" => update.log_info = Some(boolean()?),
            "log_warning" => update.log_warning = Some(boolean()?),
            "log_error" => update.log_error = Some(boolean()?),
            "log_verbose_level" => {
                update.log_verbose_level = Some(
                    value
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| {
                            Error::invalid_arg(format!(
                                "expect unsigned integer for log setting '{key}'"
                            ))
                        })?,
                );
            }
            "log_format" => update.log_format = Some(string()?),
            "log_file" => update.log_file = Some(string()?),
            other => {
                return Err(Error::invalid_arg(format!(
                    "log setting '{other}' is unknown (log_file, log_info, log_warning, log_error, log_verbose_level, log_format)"
                )));
            }
        }
    }
    Ok(update)
}

/// A load request's `parameters`: `config` (a string holding ModelConfig JSON) and
/// `file:<path>` (base64 strings). Other names are refused, as Triton does.
fn load_params(params: &Value<'_>) -> Result<LoadParams, (StatusCode, String)> {
    let Value::Object(members) = params else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "attempt to get members for non-object".into(),
        ));
    };
    let mut out = LoadParams::default();
    for (key, value) in members {
        let Some(text) = value.as_str_bytes() else {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "attempt to access JSON non-string as string".into(),
            ));
        };
        let key = String::from_utf8_lossy(key);
        if key == "config" {
            out.config = Some(String::from_utf8_lossy(text).into_owned());
        } else if let Some(path) = key.strip_prefix("file:") {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("failed to decode the base64 content of parameter '{key}': {e}"),
                    )
                })?;
            out.files.insert(path.to_string(), bytes);
        } else {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("unrecognized load parameter '{key}'."),
            ));
        }
    }
    Ok(out)
}

/// A small JSON body (index, load, unload) -> a document, or Triton's parse error.
/// A repository index or model control body: read at any depth, as Triton does, so that a
/// field of the wrong type gets its value error however deep the value nests.
fn parse_small(body: &[u8]) -> Result<Value<'_>, Error> {
    json::parse_control(body).map_err(|e| {
        if e.kind == json::ErrorKind::TooDeep {
            Error::invalid_arg(e.to_string())
        } else {
            Error::internal(format!("failed to parse the request JSON buffer: {e}"))
        }
    })
}

fn duration(out: &mut Vec<u8>, key: &[u8], d: &StatDuration) {
    out.push(b'"');
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":{\"count\":");
    write::u64(out, d.count);
    out.extend_from_slice(b",\"ns\":");
    write::u64(out, d.ns);
    out.push(b'}');
}

fn infer_stats(out: &mut Vec<u8>, s: &InferStats) {
    out.push(b'{');
    let all = [
        (&b"success"[..], &s.success),
        (b"fail", &s.fail),
        (b"queue", &s.queue),
        (b"compute_input", &s.compute_input),
        (b"compute_infer", &s.compute_infer),
        (b"compute_output", &s.compute_output),
        (b"cache_hit", &s.cache_hit),
        (b"cache_miss", &s.cache_miss),
    ];
    for (i, (key, d)) in all.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        duration(out, key, d);
    }
    out.push(b'}');
}

fn batch_stats(out: &mut Vec<u8>, b: &BatchStats) {
    out.extend_from_slice(b"{\"batch_size\":");
    write::u64(out, b.batch_size);
    out.push(b',');
    duration(out, b"compute_input", &b.compute_input);
    out.push(b',');
    duration(out, b"compute_infer", &b.compute_infer);
    out.push(b',');
    duration(out, b"compute_output", &b.compute_output);
    out.push(b'}');
}

/// `[{"name","key","offset","byte_size"}]`, as Triton's `GetStatus` writes system regions.
fn system_status_json(regions: &[SystemRegionStatus]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = regions
        .iter()
        .map(|r| {
            serde_json::json!({"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size})
        })
        .collect();
    serde_json::to_vec(&entries).expect("JSON values serialize")
}

/// `[{"name","device_id","byte_size"}]`, as Triton's `GetStatus` writes CUDA regions.
fn cuda_status_json(regions: &[CudaRegionStatus]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = regions
        .iter()
        .map(|r| serde_json::json!({"name": r.name, "device_id": r.device_id, "byte_size": r.byte_size}))
        .collect();
    serde_json::to_vec(&entries).expect("JSON values serialize")
}

/// The statistics extension's reply (references 15, 41, 43).
pub fn stats_json(stats: &[ModelStats]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + stats.len() * 700);
    out.extend_from_slice(b"{\"model_stats\":[");
    for (i, s) in stats.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write::string(&mut out, s.name.as_bytes());
        out.extend_from_slice(b",\"version\":\"");
        write::i64(&mut out, s.version);
        out.extend_from_slice(b"\",\"last_inference\":");
        write::u64(&mut out, s.last_inference);
        out.extend_from_slice(b",\"inference_count\":");
        write::u64(&mut out, s.inference_count);
        out.extend_from_slice(b",\"execution_count\":");
        write::u64(&mut out, s.execution_count);
        out.extend_from_slice(b",\"inference_stats\":");
        infer_stats(&mut out, &s.inference_stats);
        out.extend_from_slice(b",\"response_stats\":{},\"batch_stats\":[");
        for (j, b) in s.batch_stats.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            batch_stats(&mut out, b);
        }
        out.extend_from_slice(b"],\"memory_usage\":[]}");
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_tritons_regexes() {
        use ModelAction::*;
        let model = |name, version, action| Route::Model {
            name,
            version,
            action,
        };
        assert_eq!(route("/v2"), Route::ServerMetadata);
        assert_eq!(route("/v2/health/live"), Route::Health { ready: false });
        assert_eq!(route("/v2/health/ready"), Route::Health { ready: true });
        assert_eq!(route("/v2/models/stats"), Route::StatsAll);
        assert_eq!(route("/v2/models/m"), model("m", None, Metadata));
        assert_eq!(
            route("/v2/models/m/versions/1"),
            model("m", Some("1"), Metadata)
        );
        assert_eq!(route("/v2/models/m/ready"), model("m", None, Ready));
        assert_eq!(
            route("/v2/models/m/versions/12/infer"),
            model("m", Some("12"), Infer)
        );
        assert_eq!(route("/v2/models/m/config"), model("m", None, Config));
        assert_eq!(
            route("/v2/models/m/versions/1/stats"),
            model("m", Some("1"), Stats)
        );
        assert_eq!(route("/v2/models/stats/ready"), model("stats", None, Ready));
        assert_eq!(route("/v2/repository/index"), Route::Index);
        assert_eq!(route("/v2/repository/r/index"), Route::Index);
        assert_eq!(
            route("/v2/repository/models/m/load"),
            Route::Control {
                repository: None,
                model: "m",
                load: true
            }
        );
        assert_eq!(
            route("/v2/repository/r/models/m/unload"),
            Route::Control {
                repository: Some("r"),
                model: "m",
                load: false
            }
        );
        for path in [
            "/",
            "/v2/",
            "/v3",
            "/v2/health",
            "/v2/health/live/",
            "/v2/nosuchthing",
            "/v2/models/",
            "/v2/models//ready",
            "/v2/models/m/nosuchthing",
            "/v2/models/m/versions/x",
            "/v2/models/m/versions/",
            "/v2/models/m/versions",
            "/v2/models/m/versions/1/nope",
            "/v2/models/m/generate",
            "/v2/repository/index/x",
            "/v2/repository/models/m/reload",
            "/v2/repository/models//load",
        ] {
            assert_eq!(route(path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn shared_memory_routes_follow_tritons_regex() {
        use ShmAction::*;
        let shm = |cuda, region, action| Route::SharedMemory {
            cuda,
            region,
            action,
        };
        assert_eq!(
            route("/v2/systemsharedmemory/status"),
            shm(false, None, Status)
        );
        assert_eq!(
            route("/v2/systemsharedmemory/region/r0/register"),
            shm(false, Some("r0"), Register)
        );
        assert_eq!(
            route("/v2/systemsharedmemory/unregister"),
            shm(false, None, Unregister)
        );
        assert_eq!(
            route("/v2/cudasharedmemory/region/g/status"),
            shm(true, Some("g"), Status)
        );
        assert_eq!(
            route("/v2/cudasharedmemory/register"),
            shm(true, None, Register)
        );
        assert_eq!(
            route("/v2/systemsharedmemory/region/status/status"),
            shm(false, Some("status"), Status)
        );
        for path in [
            "/v2/systemsharedmemory",
            "/v2/systemsharedmemory/",
            "/v2/systemsharedmemory/region/status",
            "/v2/systemsharedmemory/region//status",
            "/v2/systemsharedmemory/region/a/b/status",
            "/v2/systemsharedmemory/region/a/reload",
            "/v2/systemsharedmemory/status/",
            "/v2/sharedmemory/status",
            "/v2/cudasharedmemory/regions/a/status",
        ] {
            assert_eq!(route(path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn shared_memory_status_json() {
        assert_eq!(system_status_json(&[]), b"[]");
        let s = system_status_json(&[
            SystemRegionStatus {
                name: "in\"0".into(),
                key: "/k".into(),
                offset: 0,
                byte_size: 64,
            },
            SystemRegionStatus {
                name: "out".into(),
                key: "/k".into(),
                offset: 64,
                byte_size: 32,
            },
        ]);
        assert_eq!(
            String::from_utf8(s).unwrap(),
            r#"[{"name":"in\"0","key":"/k","offset":0,"byte_size":64},{"name":"out","key":"/k","offset":64,"byte_size":32}]"#
        );
        let c = cuda_status_json(&[CudaRegionStatus {
            name: "g".into(),
            device_id: 1,
            byte_size: 8,
        }]);
        assert_eq!(
            String::from_utf8(c).unwrap(),
            r#"[{"name":"g","device_id":1,"byte_size":8}]"#
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version(None).unwrap(), None);
        assert_eq!(parse_version(Some("3")).unwrap(), Some(3));
        let e = parse_version(Some("99999999999999999999")).unwrap_err();
        assert_eq!(e.code(), ferrite_core::ErrorCode::InvalidArg);
    }

    #[test]
    fn stats_match_reference_15() {
        let s = ModelStats {
            name: "add_sub".into(),
            version: 1,
            ..Default::default()
        };
        let want = r#"{"model_stats":[{"name":"add_sub","version":"1","last_inference":0,"inference_count":0,"execution_count":0,"inference_stats":{"success":{"count":0,"ns":0},"fail":{"count":0,"ns":0},"queue":{"count":0,"ns":0},"compute_input":{"count":0,"ns":0},"compute_infer":{"count":0,"ns":0},"compute_output":{"count":0,"ns":0},"cache_hit":{"count":0,"ns":0},"cache_miss":{"count":0,"ns":0}},"response_stats":{},"batch_stats":[],"memory_usage":[]}]}"#;
        assert_eq!(String::from_utf8(stats_json(&[s])).unwrap(), want);
        assert_eq!(want.len(), 435);
    }

    #[test]
    fn stats_match_reference_41() {
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
        let want = r#"{"model_stats":[{"name":"add_sub","version":"1","last_inference":1795292607293,"inference_count":5,"execution_count":5,"inference_stats":{"success":{"count":5,"ns":34312638},"fail":{"count":0,"ns":0},"queue":{"count":5,"ns":121780},"compute_input":{"count":5,"ns":184554},"compute_infer":{"count":5,"ns":33804974},"compute_output":{"count":5,"ns":191261},"cache_hit":{"count":0,"ns":0},"cache_miss":{"count":0,"ns":0}},"response_stats":{},"batch_stats":[{"batch_size":1,"compute_input":{"count":5,"ns":184554},"compute_infer":{"count":5,"ns":33804974},"compute_output":{"count":5,"ns":191261}}],"memory_usage":[]}]}"#;
        assert_eq!(String::from_utf8(stats_json(&[s])).unwrap(), want);
        assert_eq!(want.len(), 615);
    }
}
