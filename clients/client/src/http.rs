//! KServe v2 over HTTP/1.1 (hyper), with Triton's binary tensor extension.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::types::{
    Data, InferRequest, InferResult, ModelMetadata, ModelStats, OutputTensor, RequestTimings,
    ServerMetadata, ShmRef, ShmRegionStatus, StatDuration, TensorMeta, json_to_raw,
};

const INFERENCE_HEADER: &str = "inference-header-content-length";

/// A request body made of several `Bytes` chunks (JSON header + tensors), sent without
/// concatenating them.
#[derive(Debug, Default)]
pub struct ChunkedBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkedBody {
    fn new(chunks: impl IntoIterator<Item = Bytes>) -> ChunkedBody {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ChunkedBody { chunks, remaining }
    }
}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A KServe v2 HTTP client over a pool of kept-alive connections. Cloning is cheap and
/// shares the pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: HyperClient<HttpConnector, ChunkedBody>,
    base: String,
}

/// `http://host:port` from `host:port` or a URL with a scheme (trailing `/` removed).
pub(crate) fn base_url(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err(Error::invalid("empty server URL"));
    }
    let base = if url.starts_with("http://") {
        url.to_string()
    } else if url.starts_with("https://") {
        return Err(Error::invalid(format!("{url}: https is not supported")));
    } else {
        format!("http://{url}")
    };
    base.parse::<http::Uri>()
        .map_err(|e| Error::invalid(format!("bad server URL '{url}': {e}")))?;
    Ok(base)
}

/// The error's description followed by its sources', joined with ": ".
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn pct(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn model_path(model: &str, version: &str) -> String {
    if version.is_empty() {
        format!("/v2/models/{}", pct(model))
    } else {
        format!("/v2/models/{}/versions/{}", pct(model), pct(version))
    }
}

/// What [`HttpClient::infer_prepared`] sends: the URL, headers and body chunks of an infer
/// request, encoded once and sent many times without re-encoding.
#[derive(Debug, Clone)]
pub struct PreparedInfer {
    uri: http::Uri,
    header_len: usize,
    chunks: Vec<Bytes>,
    /// Outputs placed in shared memory (the reply does not name their regions).
    shm_outputs: Vec<(String, ShmRef)>,
}

impl HttpClient {
    /// A client for the server at `url` (`host:port` or `http://host:port`). No connection
    /// is made until the first request.
    pub fn new(url: &str) -> Result<HttpClient> {
        let base = base_url(url)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Ok(HttpClient { client, base })
    }

    /// The base URL, `http://host:port`.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn uri(&self, path: &str) -> Result<http::Uri> {
        format!("{}{path}", self.base)
            .parse()
            .map_err(|e| Error::invalid(format!("bad URL {}{path}: {e}", self.base)))
    }

    fn build(
        method: Method,
        uri: http::Uri,
        headers: &[(&'static str, HeaderValue)],
        body: ChunkedBody,
    ) -> Result<Request<ChunkedBody>> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, v.clone());
        }
        builder
            .body(body)
            .map_err(|e| Error::invalid(e.to_string()))
    }

    async fn execute(
        &self,
        request: Request<ChunkedBody>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes)> {
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                Error::connect(&self.base, chain(&e))
            } else {
                Error::new(
                    ErrorKind::Io,
                    format!("request to {} failed: {}", self.base, chain(&e)),
                )
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("reading the reply from {}: {}", self.base, chain(&e)),
            )
        })?;
        Ok((parts.status, parts.headers, body.to_bytes()))
    }

    async fn send(
        &self,
        method: Method,
        uri: http::Uri,
        headers: &[(&'static str, HeaderValue)],
        body: ChunkedBody,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes)> {
        self.execute(Self::build(method, uri, headers, body)?).await
    }

    /// GET or POST `path` with an optional JSON body; the reply's JSON, or the server's
    /// error.
    async fn json_call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, _, bytes) = self.plain_call(method, path, body).await?;
        if !status.is_success() {
            return Err(error_from_reply(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::protocol(format!("bad JSON reply from {path}: {e}")))
    }

    async fn plain_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes)> {
        let uri = self.uri(path)?;
        match body {
            Some(v) => {
                let bytes = Bytes::from(serde_json::to_vec(&v).expect("JSON encodes"));
                let ct = [(
                    header::CONTENT_TYPE.as_str(),
                    HeaderValue::from_static("application/json"),
                )];
                self.send(method, uri, &ct, ChunkedBody::new([bytes])).await
            }
            None => self.send(method, uri, &[], ChunkedBody::default()).await,
        }
    }

    async fn health(&self, path: &str) -> Result<bool> {
        let (status, _, bytes) = self.plain_call(Method::GET, path, None).await?;
        match status {
            s if s.is_success() => Ok(true),
            // Triton answers "not ready" with 400 (and an empty body); 503 from proxies.
            StatusCode::BAD_REQUEST | StatusCode::SERVICE_UNAVAILABLE => Ok(false),
            s => Err(error_from_reply(s, &bytes)),
        }
    }

    /// `GET /v2/health/live`.
    pub async fn live(&self) -> Result<bool> {
        self.health("/v2/health/live").await
    }

    /// `GET /v2/health/ready`.
    pub async fn ready(&self) -> Result<bool> {
        self.health("/v2/health/ready").await
    }

    /// `GET /v2/models/{model}[/versions/{version}]/ready`.
    pub async fn model_ready(&self, model: &str, version: &str) -> Result<bool> {
        self.health(&format!("{}/ready", model_path(model, version)))
            .await
    }

    /// `GET /v2`.
    pub async fn server_metadata(&self) -> Result<ServerMetadata> {
        let v = self.json_call(Method::GET, "/v2", None).await?;
        Ok(ServerMetadata {
            name: str_field(&v, "name"),
            version: str_field(&v, "version"),
            extensions: str_list(&v["extensions"]),
        })
    }

    /// `GET /v2/models/{model}[/versions/{version}]`.
    pub async fn model_metadata(&self, model: &str, version: &str) -> Result<ModelMetadata> {
        let v = self
            .json_call(Method::GET, &model_path(model, version), None)
            .await?;
        let tensors = |key: &str| -> Vec<TensorMeta> {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| TensorMeta {
                            name: str_field(t, "name"),
                            datatype: str_field(t, "datatype"),
                            shape: t["shape"]
                                .as_array()
                                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(ModelMetadata {
            name: str_field(&v, "name"),
            versions: str_list(&v["versions"]),
            platform: str_field(&v, "platform"),
            inputs: tensors("inputs"),
            outputs: tensors("outputs"),
        })
    }

    /// `GET /v2/models/{model}[/versions/{version}]/config`: the model configuration JSON.
    pub async fn model_config(&self, model: &str, version: &str) -> Result<Value> {
        self.json_call(
            Method::GET,
            &format!("{}/config", model_path(model, version)),
            None,
        )
        .await
    }

    /// `GET /v2/models[/{model}[/versions/{version}]]/stats`; an empty `model` asks for every
    /// model.
    pub async fn model_statistics(&self, model: &str, version: &str) -> Result<Vec<ModelStats>> {
        let path = if model.is_empty() {
            "/v2/models/stats".to_string()
        } else {
            format!("{}/stats", model_path(model, version))
        };
        let v = self.json_call(Method::GET, &path, None).await?;
        Ok(parse_stats_json(&v))
    }

    /// `POST /v2/systemsharedmemory/region/{name}/register`.
    pub async fn register_system_shared_memory(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<()> {
        let body = json!({"key": key, "offset": offset, "byte_size": byte_size});
        self.json_call(
            Method::POST,
            &format!("/v2/systemsharedmemory/region/{}/register", pct(name)),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// `POST /v2/systemsharedmemory[/region/{name}]/unregister`; `None` unregisters every
    /// region.
    pub async fn unregister_system_shared_memory(&self, name: Option<&str>) -> Result<()> {
        let path = match name {
            Some(n) => format!("/v2/systemsharedmemory/region/{}/unregister", pct(n)),
            None => "/v2/systemsharedmemory/unregister".to_string(),
        };
        self.json_call(Method::POST, &path, None).await.map(drop)
    }

    /// `GET /v2/systemsharedmemory[/region/{name}]/status`.
    pub async fn system_shared_memory_status(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<ShmRegionStatus>> {
        let path = match name {
            Some(n) => format!("/v2/systemsharedmemory/region/{}/status", pct(n)),
            None => "/v2/systemsharedmemory/status".to_string(),
        };
        let v = self.json_call(Method::GET, &path, None).await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| ShmRegionStatus {
                        name: str_field(r, "name"),
                        key: str_field(r, "key"),
                        offset: r["offset"].as_u64().unwrap_or(0),
                        byte_size: r["byte_size"].as_u64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Encodes `request` once (JSON header + binary chunks) for
    /// [`HttpClient::infer_prepared`].
    pub fn prepare(&self, request: &InferRequest) -> Result<PreparedInfer> {
        let uri = self.uri(&format!(
            "{}/infer",
            model_path(&request.model, &request.version)
        ))?;
        let mut header = Map::new();
        if !request.id.is_empty() {
            header.insert("id".into(), request.id.clone().into());
        }
        let mut params = request.parameters.clone();
        if request.outputs.is_empty() && !params.contains_key("binary_data_output") {
            params.insert("binary_data_output".into(), true.into());
        }
        if !params.is_empty() {
            header.insert("parameters".into(), Value::Object(params));
        }
        let mut binaries = Vec::new();
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for input in &request.inputs {
            let mut t = Map::new();
            t.insert("name".into(), input.name.clone().into());
            t.insert("shape".into(), input.shape.clone().into());
            t.insert("datatype".into(), input.datatype.clone().into());
            match &input.data {
                Data::Raw(bytes) => {
                    t.insert(
                        "parameters".into(),
                        json!({"binary_data_size": bytes.len()}),
                    );
                    binaries.push(bytes.clone());
                }
                Data::Json(values) => {
                    t.insert("data".into(), values.clone());
                }
                Data::Shm(shm) => {
                    t.insert("parameters".into(), shm_params(shm));
                }
            }
            inputs.push(Value::Object(t));
        }
        header.insert("inputs".into(), Value::Array(inputs));
        if !request.outputs.is_empty() {
            let outputs: Vec<Value> = request
                .outputs
                .iter()
                .map(|o| {
                    let mut p = match &o.shm {
                        Some(shm) => shm_params(shm),
                        None => json!({"binary_data": o.binary}),
                    };
                    if let Some(n) = o.classification {
                        p["classification"] = n.into();
                    }
                    json!({"name": o.name, "parameters": p})
                })
                .collect();
            header.insert("outputs".into(), Value::Array(outputs));
        }
        let header = Bytes::from(serde_json::to_vec(&Value::Object(header)).expect("JSON"));
        let header_len = if binaries.is_empty() { 0 } else { header.len() };
        let mut chunks = Vec::with_capacity(1 + binaries.len());
        chunks.push(header);
        chunks.extend(binaries);
        let shm_outputs = request
            .outputs
            .iter()
            .filter_map(|o| o.shm.clone().map(|shm| (o.name.clone(), shm)))
            .collect();
        Ok(PreparedInfer {
            uri,
            header_len,
            chunks,
            shm_outputs,
        })
    }

    /// Sends a request encoded by [`HttpClient::prepare`].
    pub async fn infer_prepared(&self, prepared: &PreparedInfer) -> Result<InferResult> {
        self.infer_prepared_timed(prepared).await.map(|(r, _)| r)
    }

    /// [`HttpClient::infer_prepared`], with the client's own time spent building the
    /// request and decoding the reply.
    pub async fn infer_prepared_timed(
        &self,
        prepared: &PreparedInfer,
    ) -> Result<(InferResult, RequestTimings)> {
        let start = Instant::now();
        let content_type = if prepared.header_len > 0 {
            HeaderValue::from_static("application/octet-stream")
        } else {
            HeaderValue::from_static("application/json")
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(prepared.uri.clone())
            .header(header::CONTENT_TYPE, content_type);
        if prepared.header_len > 0 {
            builder = builder.header(INFERENCE_HEADER, HeaderValue::from(prepared.header_len));
        }
        let request = builder
            .body(ChunkedBody::new(prepared.chunks.iter().cloned()))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let sent = Instant::now();
        let (status, reply_headers, body) = self.execute(request).await?;
        let received = Instant::now();
        if !status.is_success() {
            return Err(error_from_reply(status, &body));
        }
        let header_len = match reply_headers.get(INFERENCE_HEADER) {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n <= body.len())
                .ok_or_else(|| Error::protocol(format!("bad {INFERENCE_HEADER}: {v:?}")))?,
            None => body.len(),
        };
        let mut result = parse_infer_reply(&body, header_len)?;
        fill_shm(&mut result, &prepared.shm_outputs);
        let timings = RequestTimings {
            send_ns: (sent - start).as_nanos() as u64,
            recv_ns: received.elapsed().as_nanos() as u64,
        };
        Ok((result, timings))
    }

    /// `POST /v2/models/{model}[/versions/{version}]/infer`.
    pub async fn infer(&self, request: &InferRequest) -> Result<InferResult> {
        let prepared = self.prepare(request)?;
        self.infer_prepared(&prepared).await
    }
}

/// Sets [`OutputTensor::shm`] of the outputs the request placed in shared memory.
pub(crate) fn fill_shm(result: &mut InferResult, shm_outputs: &[(String, ShmRef)]) {
    for (name, shm) in shm_outputs {
        if let Some(o) = result.outputs.iter_mut().find(|o| &o.name == name)
            && o.shm.is_none()
        {
            o.shm = Some(shm.clone());
        }
    }
}

fn shm_params(shm: &ShmRef) -> Value {
    json!({
        "shared_memory_region": shm.region,
        "shared_memory_offset": shm.offset,
        "shared_memory_byte_size": shm.byte_size,
    })
}

fn str_field(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The server's error: `{"error": "..."}` or the body's text.
fn error_from_reply(status: StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        });
    Error::http(status.as_u16(), message)
}

fn duration(v: &Value) -> StatDuration {
    StatDuration {
        count: v["count"].as_u64().unwrap_or(0),
        ns: v["ns"].as_u64().unwrap_or(0),
    }
}

/// `{"model_stats": [...]}` into typed statistics.
pub(crate) fn parse_stats_json(v: &Value) -> Vec<ModelStats> {
    v["model_stats"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let s = &m["inference_stats"];
                    ModelStats {
                        name: str_field(m, "name"),
                        version: str_field(m, "version"),
                        last_inference: m["last_inference"].as_u64().unwrap_or(0),
                        inference_count: m["inference_count"].as_u64().unwrap_or(0),
                        execution_count: m["execution_count"].as_u64().unwrap_or(0),
                        success: duration(&s["success"]),
                        fail: duration(&s["fail"]),
                        queue: duration(&s["queue"]),
                        compute_input: duration(&s["compute_input"]),
                        compute_infer: duration(&s["compute_infer"]),
                        compute_output: duration(&s["compute_output"]),
                        cache_hit: duration(&s["cache_hit"]),
                        cache_miss: duration(&s["cache_miss"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An infer reply: the JSON header (`header_len` bytes), then the binary outputs in order.
fn parse_infer_reply(body: &Bytes, header_len: usize) -> Result<InferResult> {
    let header: Value = serde_json::from_slice(&body[..header_len])
        .map_err(|e| Error::protocol(format!("bad JSON in the infer reply: {e}")))?;
    let mut at = header_len;
    let mut outputs = Vec::new();
    for o in header["outputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let datatype = str_field(o, "datatype");
        let parameters = o["parameters"].as_object().cloned().unwrap_or_default();
        let shm = ShmRef::from_parameters(&parameters);
        let data = if let Some(size) = parameters.get("binary_data_size").and_then(Value::as_u64) {
            let size = size as usize;
            if body.len() - at < size {
                return Err(Error::protocol("infer reply shorter than its binary data"));
            }
            at += size;
            body.slice(at - size..at)
        } else if !o["data"].is_null() {
            json_to_raw(&datatype, &o["data"]).map_err(|e| Error::protocol(e.message()))?
        } else {
            Bytes::new()
        };
        outputs.push(OutputTensor {
            name: str_field(o, "name"),
            datatype,
            shape: o["shape"]
                .as_array()
                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            data,
            shm,
            parameters,
        });
    }
    Ok(InferResult {
        model_name: str_field(&header, "model_name"),
        model_version: str_field(&header, "model_version"),
        id: str_field(&header, "id"),
        parameters: header["parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(base_url("localhost:8000").unwrap(), "http://localhost:8000");
        assert_eq!(
            base_url("http://127.0.0.1:1/").unwrap(),
            "http://127.0.0.1:1"
        );
        assert!(base_url("").is_err());
        assert!(base_url("https://x:1").is_err());
    }

    #[test]
    fn parses_binary_and_json_outputs() {
        let header = br#"{"model_name":"m","model_version":"1","id":"7","outputs":[{"name":"A","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"B","datatype":"FP32","shape":[1],"data":[1.5]}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&1i32.to_le_bytes());
        body.extend_from_slice(&(-2i32).to_le_bytes());
        let r = parse_infer_reply(&Bytes::from(body), header.len()).unwrap();
        assert_eq!(r.id, "7");
        assert_eq!(r.values::<i32>("A").unwrap(), vec![1, -2]);
        assert_eq!(r.values::<f32>("B").unwrap(), vec![1.5]);
    }

    #[test]
    fn server_errors_carry_status_and_message() {
        let e = error_from_reply(StatusCode::NOT_FOUND, br#"{"error":"no model"}"#);
        assert_eq!(e.http_status(), Some(404));
        assert_eq!(e.message(), "no model");
        assert_eq!(e.code(), Some(crate::Code::NotFound));
    }
}
