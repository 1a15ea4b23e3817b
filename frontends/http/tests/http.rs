//! The HTTP frontend on a real socket, over a server with an empty model repository (no
//! driver needed): exact reply bytes (status line, headers and their order, no Date, Server
//! or Connection), keep-alive, bad transports and graceful shutdown.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use ferrite_core::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Running {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn start() -> Running {
    start_with(false).await
}

/// `allow_client_shm`: `--allow-client-shm`.
async fn start_with(allow_client_shm: bool) -> Running {
    let repo = tempfile::tempdir().unwrap();
    let drivers = tempfile::tempdir().unwrap();
    let server = Server::start(ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: drivers.path().to_path_buf(),
        allow_client_shm,
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ferrite_http::serve(server, listener, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        _dirs: (repo, drivers),
    }
}

/// Reads one reply (head + Content-Length body) from `conn`; returns its raw bytes.
async fn read_reply(conn: &mut TcpStream, head_only: bool) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
            .await
            .expect("reply in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed mid-reply: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    if !head_only {
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.unwrap();
        buf.extend_from_slice(&body);
    }
    buf
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    read_reply(&mut conn, request.starts_with(b"HEAD")).await
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        write!(r, "{k}: {v}\r\n").unwrap();
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn plain(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
        body.len()
    )
}

fn json(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_server_metadata() {
    let s = start().await;
    // references 02, 03
    assert_eq!(
        text(exchange(s.addr, &get("/v2/health/live")).await),
        plain("200 OK", "")
    );
    assert_eq!(
        text(exchange(s.addr, &get("/v2/health/ready")).await),
        plain("200 OK", "")
    );
    // reference 01 (the name, version and extensions are the core's)
    let meta = text(exchange(s.addr, &get("/v2")).await);
    let body = meta.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(meta, json("200 OK", body));
    assert!(
        body.starts_with(r#"{"name":"triton","version":""#),
        "{body}"
    );
    assert!(body.contains(r#","extensions":["#), "{body}");
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["version"], ferrite_core::server::VERSION);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods() {
    let s = start().await;
    let not_found = plain("404 Not Found", r#"{"error":"Not Found"}"#);
    for path in [
        "/v2/nosuchthing",
        "/",
        "/v3",
        "/v2/health",
        "/v2/models/m/nosuchthing",
        "/v2/models/m/versions/x",
    ] {
        assert_eq!(
            text(exchange(s.addr, &get(path)).await),
            not_found,
            "{path}"
        );
    }
    let not_allowed_plain = plain("405 Not Allowed", r#"{"error":"Method Not Allowed"}"#);
    let not_allowed_json = json("405 Not Allowed", r#"{"error":"Method Not Allowed"}"#);
    // reference 39
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/add_sub/infer")).await),
        not_allowed_plain
    );
    assert_eq!(
        text(exchange(s.addr, &post("/v2/health/live", &[], b"")).await),
        not_allowed_plain
    );
    assert_eq!(
        text(exchange(s.addr, &post("/v2/models/m/ready", &[], b"")).await),
        not_allowed_plain
    );
    // Triton sets application/json before it checks the method on these
    assert_eq!(
        text(exchange(s.addr, b"DELETE /v2 HTTP/1.1\r\nHost: x\r\n\r\n").await),
        not_allowed_json
    );
    assert_eq!(
        text(exchange(s.addr, &get("/v2/repository/index")).await),
        not_allowed_json
    );
    assert_eq!(
        text(exchange(s.addr, &post("/v2/models/m", &[], b"")).await),
        not_allowed_json
    );
    assert_eq!(
        text(exchange(s.addr, &post("/v2/models/stats", &[], b"")).await),
        not_allowed_json
    );
    // reference 45: HEAD gets the 405 head, and no body
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"HEAD /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = text(read_reply(&mut conn, true).await);
    assert_eq!(
        head,
        "HTTP/1.1 405 Not Allowed\r\nContent-Length: 30\r\nContent-Type: text/plain\r\n\r\n"
    );
    // ... and the next reply on the connection follows right after it
    conn.write_all(&get("/v2/health/live")).await.unwrap();
    assert_eq!(
        text(read_reply(&mut conn, false).await),
        plain("200 OK", "")
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_that_do_not_exist() {
    let s = start().await;
    let unknown = r#"{"error":"Request for unknown model: 'nosuchmodel' is not found"}"#;
    // references 24, 27
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/nosuchmodel")).await),
        json("404 Not Found", unknown)
    );
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/nosuchmodel/config")).await),
        json("404 Not Found", unknown)
    );
    // reference 25
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/nosuchmodel/ready")).await),
        plain("400 Bad Request", r#"{"error":"Model version not ready"}"#)
    );
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/nosuchmodel/versions/3/ready")).await),
        plain("400 Bad Request", r#"{"error":"Model version not ready"}"#)
    );
    // reference 44
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/nosuchmodel/stats")).await),
        json(
            "400 Bad Request",
            r#"{"error":"requested model 'nosuchmodel' is not available"}"#
        )
    );
    assert_eq!(
        text(exchange(s.addr, &get("/v2/models/stats")).await),
        json("200 OK", r#"{"model_stats":[]}"#)
    );
    // reference 28: the unknown model is found before the body is read, so text/plain
    let body = br#"{"id": "req-1", "inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [0.0]}]}"#;
    let request = post(
        "/v2/models/nosuchmodel/infer",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(
        text(exchange(s.addr, &request).await),
        plain("404 Not Found", unknown)
    );
    // ... even when the body is not JSON at all
    let request = post("/v2/models/nosuchmodel/infer", &[], b"{\"inputs\": [");
    assert_eq!(
        text(exchange(s.addr, &request).await),
        plain("404 Not Found", unknown)
    );
    // a version that does not fit in 64 bits
    let reply = text(exchange(s.addr, &get("/v2/models/m/versions/99999999999999999999")).await);
    assert!(
        reply.starts_with("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"),
        "{reply}"
    );
    assert!(
        reply.contains(
            "failed to get model version from specified version string '99999999999999999999'"
        ),
        "{reply}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_transport_errors() {
    let s = start().await;
    // an unknown Content-Encoding: Triton's 501 with Accept-Encoding
    let request = post("/v2/models/m/infer", &[("Content-Encoding", "br")], b"{}");
    assert_eq!(
        text(exchange(s.addr, &request).await),
        "HTTP/1.1 501 Not Implemented\r\nAccept-Encoding: gzip, deflate\r\nContent-Length: 40\r\nContent-Type: text/plain\r\n\r\n{\"error\":\"Unsupported compression type\"}"
    );
    // corrupt compressed data
    let request = post(
        "/v2/models/m/infer",
        &[("Content-Encoding", "gzip")],
        b"\x1f\x8b this is not compressed",
    );
    let reply = text(exchange(s.addr, &request).await);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(
        reply.contains(
            r#"{"error":"failed to decompress the request body (Content-Encoding: gzip): "#
        ),
        "{reply}"
    );
    // a header length past the end of the body
    let request = post(
        "/v2/models/m/infer",
        &[("Inference-Header-Content-Length", "10")],
        b"{}",
    );
    assert_eq!(
        text(exchange(s.addr, &request).await),
        plain(
            "400 Bad Request",
            r#"{"error":"inference header size should be in range (0, 2), got: 10"}"#
        )
    );
    let request = post(
        "/v2/models/m/infer",
        &[("Inference-Header-Content-Length", "-1")],
        b"{}",
    );
    assert_eq!(
        text(exchange(s.addr, &request).await),
        plain(
            "400 Bad Request",
            r#"{"error":"inference header size should be in range (0, 2), got: -1"}"#
        )
    );
    let request = post(
        "/v2/models/m/infer",
        &[("Inference-Header-Content-Length", "abc")],
        b"{}",
    );
    assert_eq!(
        text(exchange(s.addr, &request).await),
        plain(
            "400 Bad Request",
            r#"{"error":"Unable to parse Inference-Header-Content-Length, got: abc"}"#
        )
    );

    // a body shorter than its Content-Length, then the client closes its side: the server
    // must neither hang nor answer 200, and keeps serving others
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"inputs\":[",
    )
    .await
    .unwrap();
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !rest.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // garbage instead of HTTP
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(!rest.starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        text(exchange(s.addr, &get("/v2/health/live")).await),
        plain("200 OK", "")
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_endpoints() {
    let s = start().await;
    // references 12, 13, 14 (no models here)
    for body in [
        &b""[..],
        b"{}",
        br#"{"ready": true}"#,
        br#"{"ready": false}"#,
        b"[]",
    ] {
        let request = post(
            "/v2/repository/index",
            &[("Content-Type", "application/json")],
            body,
        );
        assert_eq!(text(exchange(s.addr, &request).await), json("200 OK", "[]"));
    }
    // Triton's value error for a `ready` that is not a boolean, however deep it nests (its
    // own test sends 250000 levels).
    let deep = format!(
        "{{\"ready\":{}true{}}}",
        "[".repeat(250_000),
        "]".repeat(250_000)
    );
    for body in [
        &br#"{"ready": 1}"#[..],
        br#"{"ready": [[true]]}"#,
        deep.as_bytes(),
    ] {
        let request = post("/v2/repository/index", &[], body);
        assert_eq!(
            text(exchange(s.addr, &request).await),
            json(
                "400 Bad Request",
                r#"{"error":"Invalid value for 'ready': expected a boolean"}"#
            )
        );
    }
    let request = post("/v2/repository/index", &[], b"{");
    assert_eq!(
        text(exchange(s.addr, &request).await),
        json(
            "500 Internal Server Error",
            r#"{"error":"failed to parse the request JSON buffer: Missing a name for object member. at 1"}"#
        )
    );
    // reference 40
    let refused = json(
        "503 Service Unavailable",
        r#"{"error":"explicit model load / unload is not allowed if polling is enabled"}"#,
    );
    for path in [
        "/v2/repository/models/add_sub/load",
        "/v2/repository/models/add_sub/unload",
    ] {
        assert_eq!(
            text(exchange(s.addr, &post(path, &[], b"{}")).await),
            refused
        );
        assert_eq!(text(exchange(s.addr, &post(path, &[], b"")).await), refused);
    }
    assert_eq!(
        text(
            exchange(
                s.addr,
                &post("/v2/repository/r/models/add_sub/load", &[], b"")
            )
            .await
        ),
        json(
            "501 Not Implemented",
            r#"{"error":"'repository_name' specification is not supported"}"#
        )
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelining() {
    let s = start().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..3 {
        conn.write_all(&get("/v2/health/ready")).await.unwrap();
        assert_eq!(
            text(read_reply(&mut conn, false).await),
            plain("200 OK", "")
        );
    }
    // two requests in one write
    let mut both = get("/v2/nosuchthing");
    both.extend_from_slice(&get("/v2/health/live"));
    conn.write_all(&both).await.unwrap();
    assert_eq!(
        text(read_reply(&mut conn, false).await),
        plain("404 Not Found", r#"{"error":"Not Found"}"#)
    );
    assert_eq!(
        text(read_reply(&mut conn, false).await),
        plain("200 OK", "")
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_idle_connections() {
    let s = start().await;
    let addr = s.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(&get("/v2/health/live")).await.unwrap();
    assert_eq!(
        text(read_reply(&mut idle, false).await),
        plain("200 OK", "")
    );
    // shutdown returns although a kept-alive connection is open ...
    s.shutdown().await;
    // ... which the server has closed
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(n.is_err() || rest.is_empty());
    // and nothing listens any more
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_headers_like_libevhtp() {
    let s = start().await;
    // HTTP/1.1 asking to close: "Connection: close", then the server closes
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        text(all),
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\nContent-Type: text/plain\r\n\r\n"
    );
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        text(read_reply(&mut conn, false).await),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 21\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n{\"error\":\"Not Found\"}"
    );
    // HTTP/1.0 asking to keep the connection: "Connection: keep-alive", and it stays open
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..2 {
        conn.write_all(b"POST /v2/repository/index HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            text(read_reply(&mut conn, false).await),
            "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n[]"
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_clients_still_get_their_reply() {
    let s = start().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(&post("/v2/repository/index", &[], b"{}"))
        .await
        .unwrap();
    conn.shutdown().await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(all), json("200 OK", "[]"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_requests_are_inflated_first() {
    use flate2::write::{GzEncoder, ZlibEncoder};
    let s = start().await;
    let body = br#"{"inputs": []}"#;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    let mut zl = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zl.write_all(body).unwrap();
    let unknown = plain(
        "404 Not Found",
        r#"{"error":"Request for unknown model: 'm' is not found"}"#,
    );
    for (encoding, packed) in [
        ("gzip", gz.finish().unwrap()),
        ("deflate", zl.finish().unwrap()),
    ] {
        let request = post(
            "/v2/models/m/infer",
            &[("Content-Encoding", encoding)],
            &packed,
        );
        assert_eq!(
            text(exchange(s.addr, &request).await),
            unknown,
            "{encoding}"
        );
    }
    // nothing to inflate
    let request = post("/v2/models/m/infer", &[("Content-Encoding", "gzip")], b"");
    assert_eq!(
        text(exchange(s.addr, &request).await),
        plain(
            "400 Bad Request",
            r#"{"error":"nothing to be decompressed"}"#
        )
    );
    s.shutdown().await;
}

/// A POSIX shared memory object (a file under /dev/shm), removed on drop.
struct ShmObject {
    key: String,
    path: std::path::PathBuf,
}

impl ShmObject {
    fn new(tag: &str, contents: &[u8]) -> ShmObject {
        let key = format!("/ferrite_http_test_{tag}_{}", std::process::id());
        let path = std::path::PathBuf::from(format!("/dev/shm{key}"));
        std::fs::write(&path, contents).unwrap();
        ShmObject { key, path }
    }
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_shared_memory_is_off_by_default() {
    let s = start().await;
    let object = ShmObject::new("off", &[0; 64]);
    let disabled = json(
        "501 Not Implemented",
        r#"{"error":"Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."}"#,
    );
    let body = format!(r#"{{"key":"{}","offset":0,"byte_size":64}}"#, object.key);
    for request in [
        post(
            "/v2/systemsharedmemory/region/r/register",
            &[],
            body.as_bytes(),
        ),
        post("/v2/systemsharedmemory/register", &[], b""),
        post("/v2/systemsharedmemory/region/r/unregister", &[], b""),
        post("/v2/systemsharedmemory/unregister", &[], b""),
        post("/v2/cudasharedmemory/region/g/register", &[], b"{}"),
        post("/v2/cudasharedmemory/unregister", &[], b""),
    ] {
        assert_eq!(text(exchange(s.addr, &request).await), disabled);
    }
    // status still answers
    for path in [
        "/v2/systemsharedmemory/status",
        "/v2/cudasharedmemory/status",
    ] {
        assert_eq!(
            text(exchange(s.addr, &get(path)).await),
            json("200 OK", "[]")
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_shared_memory_register_status_unregister() {
    let s = start_with(true).await;
    let object = ShmObject::new("sys", &[0; 256]);
    let key = &object.key;
    let ok = json("200 OK", "");
    let register = |region: &str, body: &str| {
        post(
            &format!("/v2/systemsharedmemory/region/{region}/register"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    async fn status(s: &Running, path: &str) -> Vec<u8> {
        exchange(s.addr, &get(path)).await
    }
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/status").await),
        json("200 OK", "[]")
    );
    assert_eq!(
        text(
            exchange(
                s.addr,
                &register(
                    "input",
                    &format!(r#"{{"key":"{key}","offset":0,"byte_size":128}}"#)
                )
            )
            .await
        ),
        ok
    );
    // offset is optional
    assert_eq!(
        text(
            exchange(
                s.addr,
                &register("all", &format!(r#"{{"key":"{key}","byte_size":256}}"#))
            )
            .await
        ),
        ok
    );
    assert_eq!(
        text(
            exchange(
                s.addr,
                &register(
                    "output",
                    &format!(r#"{{"key":"{key}","offset":128,"byte_size":128}}"#)
                )
            )
            .await
        ),
        ok
    );
    let all = format!(
        r#"[{{"name":"all","key":"{key}","offset":0,"byte_size":256}},{{"name":"input","key":"{key}","offset":0,"byte_size":128}},{{"name":"output","key":"{key}","offset":128,"byte_size":128}}]"#
    );
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/status").await),
        json("200 OK", &all)
    );
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/region/output/status").await),
        json(
            "200 OK",
            &format!(r#"[{{"name":"output","key":"{key}","offset":128,"byte_size":128}}]"#)
        )
    );
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/region/nope/status").await),
        json(
            "404 Not Found",
            r#"{"error":"Unable to find system shared memory region: 'nope'"}"#
        )
    );
    // a system region is not a CUDA one, and there are no CUDA regions
    assert_eq!(
        text(status(&s, "/v2/cudasharedmemory/region/input/status").await),
        json(
            "404 Not Found",
            r#"{"error":"The region named 'input' is registered as system shared memory, not CUDA shared memory"}"#
        )
    );
    assert_eq!(
        text(status(&s, "/v2/cudasharedmemory/status").await),
        json("200 OK", "[]")
    );

    // unregister one, then an unknown one (not an error), then all
    let unregister = |path: &str| post(path, &[], b"");
    assert_eq!(
        text(
            exchange(
                s.addr,
                &unregister("/v2/systemsharedmemory/region/all/unregister")
            )
            .await
        ),
        ok
    );
    assert_eq!(
        text(
            exchange(
                s.addr,
                &unregister("/v2/systemsharedmemory/region/nope/unregister")
            )
            .await
        ),
        ok
    );
    let left = format!(
        r#"[{{"name":"input","key":"{key}","offset":0,"byte_size":128}},{{"name":"output","key":"{key}","offset":128,"byte_size":128}}]"#
    );
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/status").await),
        json("200 OK", &left)
    );
    // CUDA unregister leaves system regions alone
    assert_eq!(
        text(exchange(s.addr, &unregister("/v2/cudasharedmemory/unregister")).await),
        ok
    );
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/status").await),
        json("200 OK", &left)
    );
    assert_eq!(
        text(exchange(s.addr, &unregister("/v2/systemsharedmemory/unregister")).await),
        ok
    );
    assert_eq!(
        text(status(&s, "/v2/systemsharedmemory/status").await),
        json("200 OK", "[]")
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_errors_are_tritons() {
    let s = start_with(true).await;
    let object = ShmObject::new("err", &[0; 64]);
    let key = &object.key;
    let register = |region: &str, body: &str| {
        post(
            &format!("/v2/systemsharedmemory/region/{region}/register"),
            &[],
            body.as_bytes(),
        )
    };
    let error = |status: &str, message: &str| {
        json(
            status,
            &format!(r#"{{"error":{}}}"#, serde_json::Value::from(message)),
        )
    };
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            post("/v2/systemsharedmemory/register", &[], b"{}"),
            error(
                "400 Bad Request",
                "'region name' is necessary to register system shared memory region",
            ),
        ),
        (
            register("r", ""),
            error(
                "500 Internal Server Error",
                "failed to parse the request JSON buffer: The document is empty. at 0",
            ),
        ),
        (
            register("r", r#"{"offset":0,"byte_size":8}"#),
            error(
                "400 Bad Request",
                "Shared memory register request has no 'key' field",
            ),
        ),
        (
            register("r", &format!(r#"{{"key":"{key}"}}"#)),
            error(
                "400 Bad Request",
                "Shared memory register request has no 'byte_size' field",
            ),
        ),
        (
            register("r", r#"{"key":7,"byte_size":8}"#),
            error(
                "500 Internal Server Error",
                "attempt to access JSON non-string as string",
            ),
        ),
        (
            register(
                "r",
                &format!(r#"{{"key":"{key}","offset":-1,"byte_size":8}}"#),
            ),
            error(
                "500 Internal Server Error",
                "attempt to access JSON non-unsigned-integer as unsigned-integer",
            ),
        ),
        (
            register("r", &format!(r#"{{"key":"{key}","byte_size":1.5}}"#)),
            error(
                "500 Internal Server Error",
                "attempt to access JSON non-unsigned-integer as unsigned-integer",
            ),
        ),
        (
            register("r", r#"{"key":"/","byte_size":8}"#),
            error(
                "400 Bad Request",
                "cannot register shared memory region 'r' - invalid shm key '/'",
            ),
        ),
        (
            get("/v2/systemsharedmemory/region/r/register"),
            error("405 Not Allowed", "Method Not Allowed"),
        ),
        (
            post("/v2/systemsharedmemory/status", &[], b""),
            error("405 Not Allowed", "Method Not Allowed"),
        ),
        (
            get("/v2/cudasharedmemory/unregister"),
            error("405 Not Allowed", "Method Not Allowed"),
        ),
        (
            post("/v2/cudasharedmemory/register", &[], b""),
            error(
                "400 Bad Request",
                "'region name' is necessary to register cuda shared memory region",
            ),
        ),
        (
            get("/v2/cudasharedmemory/region/g/status"),
            error(
                "404 Not Found",
                "Unable to find cuda shared memory region: 'g'",
            ),
        ),
    ];
    for (request, want) in cases {
        assert_eq!(
            text(exchange(s.addr, &request).await),
            want,
            "{}",
            String::from_utf8_lossy(&request)
        );
    }

    // Errors with details after Triton's text.
    let starts = |reply: String, status: &str, prefix: &str| {
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n");
        assert!(reply.starts_with(&head), "{reply}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap();
        let message: serde_json::Value = serde_json::from_str(body).unwrap();
        let message = message["error"].as_str().unwrap();
        assert!(message.starts_with(prefix), "{message}");
    };
    starts(
        text(
            exchange(
                s.addr,
                &register("r", r#"{"key":"/ferrite_no_such_object","byte_size":8}"#),
            )
            .await,
        ),
        "500 Internal Server Error",
        "Unable to open shared memory region: '/ferrite_no_such_object' (",
    );
    starts(
        text(exchange(s.addr, &register("r", r#"{"key":"/a/b","byte_size":8}"#)).await),
        "500 Internal Server Error",
        "Unable to open shared memory region: '/a/b' (not a POSIX shared memory object name",
    );
    starts(
        text(
            exchange(
                s.addr,
                &register(
                    "r",
                    &format!(r#"{{"key":"{key}","offset":60,"byte_size":8}}"#),
                ),
            )
            .await,
        ),
        "400 Bad Request",
        "failed to register shared memory region 'r': invalid args (",
    );
    starts(
        text(
            exchange(
                s.addr,
                &post(
                    "/v2/cudasharedmemory/region/g/register",
                    &[],
                    br#"{"raw_handle":{"b64":"AAAA"},"device_id":0,"byte_size":8}"#,
                ),
            )
            .await,
        ),
        "400 Bad Request",
        "failed to register CUDA shared memory region: 'g', GPUs not supported",
    );

    // a duplicate name
    let body = format!(r#"{{"key":"{key}","byte_size":64}}"#);
    assert_eq!(
        text(exchange(s.addr, &register("r", &body)).await),
        json("200 OK", "")
    );
    assert_eq!(
        text(exchange(s.addr, &register("r", &body)).await),
        error(
            "400 Bad Request",
            "shared memory region 'r' already in manager"
        )
    );
    // nothing else was registered along the way
    assert_eq!(
        text(exchange(s.addr, &get("/v2/systemsharedmemory/status")).await),
        json(
            "200 OK",
            &format!(r#"[{{"name":"r","key":"{key}","offset":0,"byte_size":64}}]"#)
        )
    );
    s.shutdown().await;
}
