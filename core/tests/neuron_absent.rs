//! A host without the Neuron runtime (CI): the Neuron driver refuses to start with
//! UNAVAILABLE naming the missing library (a warning: the hardware is not here), the server
//! starts and serves its other models, and a Neuron model is UNAVAILABLE with that reason.
//! (Its own test binary: a driver that started stays loaded for the process, and
//! tests/neuron_driver.rs starts it on the test double.)

mod common;

use common::{built, present, target, workspace};
use ferrite_core::driver::DriverRegistry;
use ferrite_core::{ModelState, Server, ServerOptions};

/// `--backend-config=neuron,runtime-library=` a path where there is no library, so the test
/// means the same on a host that has the runtime installed.
fn settings() -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let missing = std::env::temp_dir().join("ferrite-no-neuron-here/libnrt.so.1");
    [(
        "neuron".to_string(),
        [("runtime-library".to_string(), missing.display().to_string())].into(),
    )]
    .into()
}

#[test]
fn without_the_runtime_the_driver_refuses_and_neuron_models_say_why() {
    if !built() || !present(&[target().join("libferrite_driver_neuron.so")]) {
        return;
    }
    let registry = DriverRegistry::discover(&target(), &settings()).unwrap();
    let failed = registry
        .failed()
        .iter()
        .find(|f| f.path.ends_with("libferrite_driver_neuron.so"))
        .expect("the Neuron driver is listed as failed");
    let why = failed.error.chain();
    assert!(failed.hardware_absent, "{why}");
    assert_eq!(failed.backends, vec!["neuron".to_string()]);
    assert_eq!(
        failed.instance_kinds,
        ferrite_driver_abi::INSTANCE_KIND_MODEL
    );
    assert!(why.contains("driver 'neuron'"), "{why}");
    assert!(
        why.contains(
            "no usable Neuron runtime: the Neuron runtime library libnrt.so.1 could not be opened"
        ),
        "{why}"
    );
    assert!(why.contains("ferrite-no-neuron-here/libnrt.so.1"), "{why}");
    assert!(registry.drivers().iter().any(|d| d.name == "cpu"));

    // A server with a Neuron model and an ONNX one.
    let repo = tempfile::tempdir().unwrap();
    let neuron = repo.path().join("on_inferentia");
    std::fs::create_dir_all(neuron.join("1")).unwrap();
    std::fs::write(neuron.join("1/model.neff"), b"a NEFF").unwrap();
    std::fs::write(
        neuron.join("config.pbtxt"),
        r#"name: "on_inferentia"
backend: "neuron"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_MODEL count: 1 } ]
"#,
    )
    .unwrap();
    let simple = repo.path().join("simple");
    std::fs::create_dir_all(simple.join("1")).unwrap();
    let src = workspace().join("configs/models/simple");
    std::os::unix::fs::symlink(src.join("1/model.onnx"), simple.join("1/model.onnx")).unwrap();
    std::fs::copy(src.join("config.pbtxt"), simple.join("config.pbtxt")).unwrap();

    let server = Server::start(ServerOptions {
        model_repositories: vec![repo.path().to_path_buf()],
        backend_directory: target(),
        backend_config: settings(),
        ..Default::default()
    })
    .unwrap();
    let index = server.index(false);
    let row = |name: &str| index.iter().find(|e| e.name == name).unwrap().clone();
    let on_inferentia = row("on_inferentia");
    assert_eq!(on_inferentia.state, Some(ModelState::Unavailable));
    assert!(
        on_inferentia
            .reason
            .contains("the driver for backend 'neuron' failed to load"),
        "{}",
        on_inferentia.reason
    );
    assert!(
        on_inferentia
            .reason
            .contains("libnrt.so.1 could not be opened"),
        "{}",
        on_inferentia.reason
    );
    assert_eq!(row("simple").state, Some(ModelState::Ready));
}
