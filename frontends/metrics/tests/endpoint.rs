//! The endpoint over a real socket: GET /metrics, other paths and methods, shutdown.

use std::time::Duration;

use ferrite_core::{Server, ServerOptions};
use ferrite_metrics::MetricsOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends one request (`Connection: close`) and returns the whole reply.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("a reply")
        .unwrap();
    String::from_utf8(reply).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_refuses_the_rest_and_stops() {
    let repo = tempfile::tempdir().unwrap();
    let drivers = tempfile::tempdir().unwrap();
    let server = Server::start(ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: drivers.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = MetricsOptions {
        cpu_metrics: true,
        gpu_metrics: true,
        interval: Duration::from_millis(50),
    };
    let task = tokio::spawn(ferrite_metrics::serve(server, options, listener, async {
        let _ = stopped.await;
    }));
    // A sample or two of the CPU.
    tokio::time::sleep(Duration::from_millis(150)).await;

    let reply = exchange(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; charset=utf-8"),
        "{reply}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{reply}"
    );
    assert!(!head.contains("Date:"), "{reply}");
    // No models: only the CPU families, after the GPU ones where this machine has NVML.
    let cpu_at = body
        .find("# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]\n")
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        body[..cpu_at]
            .lines()
            .all(|l| l.contains("nv_gpu_") || l.contains("nv_energy_consumption")),
        "{body}"
    );
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {body}"))
            .parse()
            .unwrap()
    };
    let utilization = value("nv_cpu_utilization");
    assert!((0.0..=1.0).contains(&utilization), "{body}");
    let (total, used) = (
        value("nv_cpu_memory_total_bytes"),
        value("nv_cpu_memory_used_bytes"),
    );
    assert!(total > 0.0 && used > 0.0 && used <= total, "{body}");

    let reply = exchange(
        addr,
        "GET /metricsx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 404 Not Found\r\n"), "{reply}");
    let reply = exchange(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{reply}"
    );

    // An idle keep-alive connection does not hold the shutdown up.
    let idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    drop(idle);
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}
