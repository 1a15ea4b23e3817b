//! The client against a real `ferrite` process (see common/mod.rs for when these skip).

mod common;

use ferrite_client::{
    Client, Code, ErrorKind, GrpcClient, HttpClient, InferRequest, InputTensor, Protocol,
    RequestedOutput, SharedMemoryRegion, ShmRef, encode_values,
};
use serde_json::json;

async fn clients(server: &common::Server) -> Vec<Client> {
    vec![
        Client::Http(HttpClient::new(&server.http).unwrap()),
        Client::Grpc(GrpcClient::connect(&server.grpc).await.unwrap()),
    ]
}

fn simple(a: &[i32], b: &[i32]) -> InferRequest {
    InferRequest::new("simple")
        .id("r1")
        .input(InputTensor::int32("INPUT0", vec![1, 16], a))
        .input(InputTensor::int32("INPUT1", vec![1, 16], b))
}

#[tokio::test]
async fn end_to_end() {
    let Some(server) = common::Server::start() else {
        return;
    };
    let a: Vec<i32> = (0..16).collect();
    let b = vec![3; 16];
    let sum: Vec<i32> = a.iter().map(|x| x + 3).collect();
    let diff: Vec<i32> = a.iter().map(|x| x - 3).collect();

    for client in clients(&server).await {
        let p = client.protocol();
        assert!(client.live().await.unwrap(), "{p}");
        assert!(client.ready().await.unwrap(), "{p}");
        assert!(client.model_ready("simple", "").await.unwrap(), "{p}");
        assert!(!client.server_metadata().await.unwrap().name.is_empty());

        let meta = client.model_metadata("simple", "").await.unwrap();
        assert_eq!(meta.name, "simple");
        assert_eq!(meta.inputs.len(), 2);
        assert_eq!(meta.inputs[0].datatype, "INT32");
        assert_eq!(meta.inputs[0].shape, vec![-1, 16]);
        let config = client.model_config("simple", "").await.unwrap();
        assert_eq!(config["max_batch_size"], json!(8), "{p}: {config}");

        // Raw data, every output.
        let r = client.infer(&simple(&a, &b)).await.unwrap();
        assert_eq!(r.id, "r1");
        assert_eq!(r.values::<i32>("OUTPUT0").unwrap(), sum, "{p}");
        assert_eq!(r.values::<i32>("OUTPUT1").unwrap(), diff, "{p}");
        assert_eq!(r.output("OUTPUT0").unwrap().shape, vec![1, 16]);

        // JSON data in, JSON (HTTP) output out, one output asked for.
        let request = InferRequest::new("simple")
            .input(InputTensor::json("INPUT0", "INT32", vec![1, 16], json!(a)))
            .input(InputTensor::json("INPUT1", "INT32", vec![1, 16], json!(b)))
            .output(RequestedOutput::new("OUTPUT1").json());
        let r = client.infer(&request).await.unwrap();
        assert_eq!(r.outputs.len(), 1, "{p}");
        assert_eq!(r.values::<i32>("OUTPUT1").unwrap(), diff, "{p}");

        // Prepared once, sent twice.
        let prepared = client.prepare(&simple(&a, &b)).unwrap();
        for _ in 0..2 {
            let r = client.infer_prepared(&prepared).await.unwrap();
            assert_eq!(r.values::<i32>("OUTPUT0").unwrap(), sum);
        }

        // BYTES.
        let sa: Vec<String> = a.iter().map(|x| x.to_string()).collect();
        let sb: Vec<String> = b.iter().map(|x| x.to_string()).collect();
        let request = InferRequest::new("simple_string")
            .input(InputTensor::bytes("INPUT0", vec![1, 16], &sa))
            .input(InputTensor::bytes("INPUT1", vec![1, 16], &sb));
        let r = client.infer(&request).await.unwrap();
        let got = r.output("OUTPUT0").unwrap().strings().unwrap();
        let want: Vec<String> = sum.iter().map(|x| x.to_string()).collect();
        assert_eq!(got, want, "{p}");

        // Classification: top-1 of efficientnet on a constant image.
        let image = vec![0.25f32; 3 * 224 * 224];
        let request = InferRequest::new("efficientnet_lite0_onnx")
            .input(InputTensor::fp32("input", vec![1, 3, 224, 224], &image))
            .output(RequestedOutput::new("logits").classification(1));
        let r = client.infer(&request).await.unwrap();
        let classes = r.output("logits").unwrap().classifications().unwrap();
        assert_eq!(classes.len(), 1, "{p}: {classes:?}");
        assert!((0..1000).contains(&classes[0].index), "{p}: {classes:?}");
        assert!(classes[0].label.is_some(), "{p}: {classes:?}");

        // Statistics count what ran.
        let stats = client.model_statistics("simple", "").await.unwrap();
        assert_eq!(stats.len(), 1);
        assert!(stats[0].success.count >= 4, "{p}: {stats:?}");
        assert!(stats[0].compute_infer.ns > 0, "{p}: {stats:?}");

        // Unknown model: NOT_FOUND with the server's message.
        let e = client
            .infer(&InferRequest::new("no_such_model"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server, "{p}: {e:?}");
        assert_eq!(e.code(), Some(Code::NotFound), "{p}: {e:?}");
        assert!(e.message().contains("no_such_model"), "{p}: {e}");
        match p {
            Protocol::Http => assert_eq!(e.http_status(), Some(404)),
            Protocol::Grpc => {
                assert_eq!(e.grpc_code(), Some(ferrite_client::tonic::Code::NotFound))
            }
        }
    }
}

#[tokio::test]
async fn shared_memory_in_and_out() {
    let Some(server) = common::Server::start() else {
        return;
    };
    let a: Vec<i32> = (0..16).collect();
    let b = vec![2; 16];
    for client in clients(&server).await {
        let p = client.protocol();
        let key = format!("/ferrite_client_test_{}_{p}", std::process::id());
        // Inputs at 0 and 64, outputs at 128 and 192.
        let mut region = SharedMemoryRegion::create(&key, 256).unwrap();
        region.write(0, &encode_values(&a)).unwrap();
        region.write(64, &encode_values(&b)).unwrap();
        let name = format!("region_{p}");
        client
            .register_system_shared_memory(&name, region.key(), 0, 256)
            .await
            .unwrap();
        let status = client.system_shared_memory_status(None).await.unwrap();
        assert!(
            status.iter().any(|r| r.name == name && r.byte_size == 256),
            "{status:?}"
        );

        let at = |offset| ShmRef::new(&name, offset, 64);
        let request = InferRequest::new("simple")
            .input(InputTensor::shm("INPUT0", "INT32", vec![1, 16], at(0)))
            .input(InputTensor::shm("INPUT1", "INT32", vec![1, 16], at(64)))
            .output(RequestedOutput::new("OUTPUT0").shm(at(128)))
            .output(RequestedOutput::new("OUTPUT1").shm(at(192)));
        let r = client.infer(&request).await.unwrap();
        let out0 = r.output("OUTPUT0").unwrap();
        assert!(out0.data.is_empty(), "{p}");
        assert_eq!(
            out0.shm.as_ref().map(|s| s.region.as_str()),
            Some(name.as_str())
        );
        let sum: Vec<i32> = ferrite_client::decode_values(region.read(128, 64).unwrap()).unwrap();
        let diff: Vec<i32> = ferrite_client::decode_values(region.read(192, 64).unwrap()).unwrap();
        assert_eq!(sum, a.iter().map(|x| x + 2).collect::<Vec<_>>(), "{p}");
        assert_eq!(diff, a.iter().map(|x| x - 2).collect::<Vec<_>>(), "{p}");

        client
            .unregister_system_shared_memory(Some(&name))
            .await
            .unwrap();
        let status = client.system_shared_memory_status(None).await.unwrap();
        assert!(!status.iter().any(|r| r.name == name), "{status:?}");
    }
}

#[tokio::test]
async fn stream_several_requests() {
    let Some(server) = common::Server::start() else {
        return;
    };
    let client = GrpcClient::connect(&server.grpc).await.unwrap();
    let stream = client.stream().await.unwrap();
    let a: Vec<i32> = (0..16).collect();
    for i in 0..5 {
        let b = vec![i; 16];
        stream.send(&simple(&a, &b).id(format!("s{i}"))).unwrap();
    }
    // One bad request in the middle: its error comes back on the stream, which stays open.
    stream
        .send(&InferRequest::new("no_such_model").id("bad"))
        .unwrap();
    stream.send(&simple(&a, &a).id("last")).unwrap();
    let (sender, mut receiver) = stream.split();
    drop(sender);
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    while let Some(item) = receiver.recv().await {
        match item {
            Ok(r) => {
                let got: Vec<i32> = r.values("OUTPUT0").unwrap();
                let k = match r.id.strip_prefix('s') {
                    Some(i) => i.parse::<i32>().unwrap(),
                    None => {
                        assert_eq!(r.id, "last");
                        assert_eq!(got, a.iter().map(|x| x * 2).collect::<Vec<_>>());
                        seen.push(r.id);
                        continue;
                    }
                };
                assert_eq!(got, a.iter().map(|x| x + k).collect::<Vec<_>>());
                seen.push(r.id);
            }
            Err(e) => errors.push(e),
        }
    }
    seen.sort();
    assert_eq!(seen, ["last", "s0", "s1", "s2", "s3", "s4"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message().contains("no_such_model"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].request_id(), Some("bad"));
}

#[tokio::test]
async fn unreachable_server_is_named() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("127.0.0.1:{port}");
    let http = HttpClient::new(&url).unwrap();
    let e = http.live().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach http://{url}: ")),
        "{e}"
    );
    let e = GrpcClient::connect(&url).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach http://{url}: ")),
        "{e}"
    );
}
