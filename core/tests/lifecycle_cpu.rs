//! Model lifecycle through the Server facade with the real CPU driver: explicit load and
//! unload, drain, reload without a gap, load timeouts and polling (called directly, so no
//! timer is involved). Needs what server_cpu.rs needs (scripts/test.sh provides it).

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{built, target, workspace};
use ferrite_core::{
    DataType, ErrorCode, InferenceRequest, LoadParams, ModelControlMode, ModelState, Server,
    ServerOptions, StartupModels, Tensor,
};

/// Copies example model `from` into `repo` as `name`, with `extra` appended to its config.
fn add_model(repo: &Path, from: &str, name: &str, extra: &str) {
    let src = workspace().join("configs/models").join(from);
    let dst = repo.join(name);
    std::fs::create_dir_all(dst.join("1")).unwrap();
    std::fs::copy(src.join("1/model.onnx"), dst.join("1/model.onnx")).unwrap();
    let config = std::fs::read_to_string(src.join("config.pbtxt"))
        .unwrap()
        .replace(&format!("name: \"{from}\""), &format!("name: \"{name}\""));
    std::fs::write(dst.join("config.pbtxt"), format!("{config}\n{extra}\n")).unwrap();
}

fn start(repo: &Path, mode: ModelControlMode, startup: StartupModels) -> Server {
    Server::start(ServerOptions {
        model_repositories: vec![repo.to_path_buf()],
        backend_directory: target(),
        model_control_mode: mode,
        startup_models: startup,
        ..Default::default()
    })
    .unwrap()
}

fn request(model: &str) -> InferenceRequest {
    let a: Vec<u8> = (0..16i32).flat_map(|v| v.to_le_bytes()).collect();
    let b: Vec<u8> = [1i32; 16].iter().flat_map(|v| v.to_le_bytes()).collect();
    InferenceRequest {
        model_name: model.into(),
        inputs: vec![
            Tensor::new("INPUT0", DataType::Int32, vec![1, 16], Bytes::from(a)),
            Tensor::new("INPUT1", DataType::Int32, vec![1, 16], Bytes::from(b)),
        ],
        ..Default::default()
    }
}

fn state(server: &Server, model: &str, version: i64) -> Option<(ModelState, String)> {
    server
        .index(false)
        .into_iter()
        .find(|e| e.name == model && e.version == Some(version))
        .and_then(|e| e.state.map(|s| (s, e.reason)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_load_unload_and_the_index() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "simple", "simple", "");
    add_model(repo.path(), "simple", "other", "");
    let server = start(
        repo.path(),
        ModelControlMode::Explicit,
        StartupModels::Named(vec!["other".into()]),
    );
    let index = server.index(false);
    let simple = index.iter().find(|e| e.name == "simple").unwrap();
    assert_eq!((simple.version, simple.state), (None, None));
    assert_eq!(state(&server, "other", 1).unwrap().0, ModelState::Ready);
    assert!(server.is_ready());

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.load("simple", LoadParams::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state(&server, "simple", 1).unwrap().0, ModelState::Ready);
    server.infer_one(request("simple")).await.unwrap();

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.unload("simple", false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state(&server, "simple", 1).unwrap(),
        (ModelState::Unavailable, "unloaded".to_string())
    );
    let e = server.infer_one(request("simple")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{}", e.message());
    assert!(
        server.is_ready(),
        "a model unloaded on purpose does not count"
    );

    let e = server.load("nope", LoadParams::default()).unwrap_err();
    assert_eq!(
        e.message(),
        "failed to load 'nope', failed to poll from model repository"
    );
}

#[test]
fn modes_none_and_poll_refuse_the_api() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "simple", "simple", "");
    for mode in [ModelControlMode::None, ModelControlMode::Poll] {
        let server = start(repo.path(), mode, StartupModels::None);
        assert_eq!(state(&server, "simple", 1).unwrap().0, ModelState::Ready);
        for e in [
            server.load("simple", LoadParams::default()).unwrap_err(),
            server.unload("simple", false).unwrap_err(),
        ] {
            assert_eq!(e.code(), ErrorCode::Unavailable);
            assert_eq!(
                e.message(),
                "explicit model load / unload is not allowed if polling is enabled"
            );
        }
        server.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_completes_every_accepted_request() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    // Requests wait up to 300 ms for company: the unload comes while they are queued (closing
    // the queue sends them on at once).
    add_model(
        repo.path(),
        "simple",
        "simple",
        "dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 300000 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]",
    );
    let server = start(repo.path(), ModelControlMode::Explicit, StartupModels::All);
    let streams: Vec<_> = (0..3)
        .map(|_| server.infer(request("simple")).unwrap())
        .collect();
    let s = server.clone();
    let unload = tokio::task::spawn_blocking(move || s.unload("simple", false));
    // From the moment the unload starts, the model takes nothing new.
    loop {
        match server.infer(request("simple")) {
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Unavailable, "{}", e.message());
                break;
            }
            Ok(accepted) => {
                // Accepted before the unload began: it must complete.
                accepted.single().await.unwrap();
            }
        }
    }
    unload.await.unwrap().unwrap();
    for stream in streams {
        let response = stream.single().await.unwrap();
        assert_eq!(response.outputs.len(), 2);
    }
    assert_eq!(
        state(&server, "simple", 1).unwrap().0,
        ModelState::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_never_fails_a_request() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "simple", "simple", "");
    let server = start(repo.path(), ModelControlMode::Explicit, StartupModels::All);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    server.infer_one(request("simple")).await.unwrap();
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    for batch in [4, 8, 2] {
        let s = server.clone();
        let params = LoadParams {
            config: Some(format!(
                r#"{{"backend": "onnxruntime", "max_batch_size": {batch}}}"#
            )),
            files: Default::default(),
        };
        tokio::task::spawn_blocking(move || s.load("simple", params))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            server.model_config("simple", None).unwrap().max_batch_size,
            batch
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        assert!(c.await.unwrap() > 0);
    }
}

#[test]
fn a_failed_reload_leaves_the_old_version_serving() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "simple", "simple", "");
    let server = start(repo.path(), ModelControlMode::Explicit, StartupModels::All);
    std::fs::write(
        repo.path().join("simple/config.pbtxt"),
        "name: \"simple\"\nmax_batch_size: [",
    )
    .unwrap();
    let e = server.load("simple", LoadParams::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert!(
        e.message().starts_with(
            "load failed for model 'simple': reading the configuration: failed to parse"
        ),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("config.pbtxt: line 2, column"),
        "{}",
        e.message()
    );
    assert_eq!(state(&server, "simple", 1).unwrap().0, ModelState::Ready);
    assert!(server.model("simple", None).is_ok());
}

#[test]
fn a_load_that_takes_too_long_fails_and_is_unloaded_when_it_finishes() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(
        repo.path(),
        "efficientnet_lite0_onnx",
        "efficientnet_lite0_onnx",
        "",
    );
    let server = Server::start(ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: target(),
        model_control_mode: ModelControlMode::Explicit,
        load_timeout: Duration::from_millis(1),
        ..Default::default()
    })
    .unwrap();
    let e = server
        .load("efficientnet_lite0_onnx", LoadParams::default())
        .unwrap_err();
    assert!(
        e.message()
            .contains("loading version 1: did not finish within 0.001 s"),
        "{}",
        e.message()
    );
    let (state, reason) = state(&server, "efficientnet_lite0_onnx", 1).unwrap();
    assert_eq!(state, ModelState::Unavailable);
    assert!(reason.contains("did not finish"), "{reason}");
    assert!(!server.is_ready());
}

#[test]
fn polling_follows_the_repository() {
    if !built() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "simple", "simple", "");
    let server = start(repo.path(), ModelControlMode::Poll, StartupModels::None);
    assert!(server.poll().is_empty(), "nothing changed");

    // Added model.
    add_model(repo.path(), "simple", "added", "");
    let report = server.poll();
    assert_eq!(report.added, vec!["added".to_string()]);
    assert_eq!(state(&server, "added", 1).unwrap().0, ModelState::Ready);

    // New version: the default policy serves the latest only.
    let v2 = repo.path().join("simple/2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::copy(
        repo.path().join("simple/1/model.onnx"),
        v2.join("model.onnx"),
    )
    .unwrap();
    assert_eq!(server.poll().modified, vec!["simple".to_string()]);
    assert_eq!(state(&server, "simple", 2).unwrap().0, ModelState::Ready);
    assert!(state(&server, "simple", 1).is_none());

    // Edited configuration.
    let config = repo.path().join("simple/config.pbtxt");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_batch_size: 8", "max_batch_size: 4");
    std::fs::write(&config, text).unwrap();
    assert_eq!(server.poll().modified, vec!["simple".to_string()]);
    assert_eq!(
        server.model_config("simple", None).unwrap().max_batch_size,
        4
    );

    // Removed model.
    std::fs::remove_dir_all(repo.path().join("added")).unwrap();
    assert_eq!(server.poll().removed, vec!["added".to_string()]);
    assert!(server.index(false).iter().all(|e| e.name != "added"));
    assert!(server.model("added", None).is_err());

    // A broken edit is reported, and not retried until the folder changes again.
    std::fs::write(&config, "name: \"simple\"\nmax_batch_size: [").unwrap();
    let report = server.poll();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        server.model("simple", None).is_ok(),
        "the old version serves"
    );
    assert!(server.poll().is_empty());
}
