//! `ferrite validate`: the built binary against repositories made in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn simple_config() -> String {
    std::fs::read_to_string(workspace().join("configs/models/simple/config.pbtxt")).unwrap()
}

/// `simple`'s configuration under another name.
fn renamed(name: &str) -> String {
    simple_config().replace("name: \"simple\"", &format!("name: \"{name}\""))
}

/// Creates `repo/name` with `config` (none when `None`), version folders and their
/// `model.onnx` files (validate never opens them).
fn model(repo: &Path, name: &str, config: Option<&str>, versions: &[(i64, bool)]) -> PathBuf {
    let dir = repo.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(config) = config {
        std::fs::write(dir.join("config.pbtxt"), config).unwrap();
    }
    for &(version, with_file) in versions {
        let v = dir.join(version.to_string());
        std::fs::create_dir_all(&v).unwrap();
        if with_file {
            std::fs::write(v.join("model.onnx"), b"not really onnx").unwrap();
        }
    }
    dir
}

fn validate(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(stdout).unwrap();
    let stderr = String::from_utf8(stderr).unwrap();
    println!("stdout:\n{stdout}\nstderr:\n{stderr}");
    (status.code().unwrap(), stdout, stderr)
}

fn repo_arg(repo: &Path) -> String {
    repo.to_str().unwrap().to_string()
}

/// The block a model has in the output: its header line and the indented lines below it.
fn block<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{name}: ")));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no block for {name}"));
    std::iter::once(header)
        .chain(lines.take_while(|l| l.starts_with("  ")))
        .collect()
}

fn has(lines: &[&str], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[test]
fn reports_every_error_of_every_model() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    model(repo, "simple", Some(&simple_config()), &[(1, true)]);
    // Partial (auto-completed at load time) and missing configurations are fine.
    model(
        repo,
        "partial",
        Some("name: \"partial\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 8\n"),
        &[(1, true)],
    );
    model(repo, "no_config", None, &[(1, true)]);

    // Syntax error on line 3.
    let syntax = model(
        repo,
        "syntax",
        Some("name: \"syntax\"\nplatform: \"onnxruntime_onnx\"\nmax_batchsize: 8\n"),
        &[(1, true)],
    );
    model(repo, "wrong_name", Some(&renamed("other")), &[(1, true)]);
    model(repo, "no_version", Some(&renamed("no_version")), &[]);
    let no_file = model(
        repo,
        "no_file",
        Some(&renamed("no_file").replace(
            "max_batch_size: 8",
            "max_batch_size: 8\nversion_policy: { all { } }",
        )),
        &[(1, true), (2, false), (3, false)],
    );
    model(
        repo,
        "missing_versions",
        Some(&renamed("missing_versions").replace(
            "max_batch_size: 8",
            "max_batch_size: 8\nversion_policy: { specific: { versions: [1, 4, 7] } }",
        )),
        &[(1, true)],
    );
    let labels = model(
        repo,
        "no_labels",
        Some(&renamed("no_labels").replace(
            "name: \"OUTPUT1\"",
            "name: \"OUTPUT1\"\n    label_filename: \"labels.txt\"",
        )),
        &[(1, true)],
    );
    model(
        repo,
        "bad_fields",
        Some(
            &renamed("bad_fields")
                .replace("max_batch_size: 8", "max_batch_size: -1")
                .replacen("dims: [ 16 ]", "dims: [ 0 ]", 1)
                .replace("name: \"OUTPUT1\"", "name: \"OUTPUT0\""),
        ),
        &[(1, true)],
    );
    model(
        repo,
        "no_platform",
        Some("name: \"no_platform\"\nmax_batch_size: 8\n"),
        &[(1, false)],
    );

    let (code, stdout, _) = validate(&["--model-repository", &repo_arg(repo)]);
    assert_eq!(code, 1);

    assert_eq!(block(&stdout, "simple"), vec!["simple: OK (versions 1)"]);
    assert_eq!(block(&stdout, "partial"), vec!["partial: OK (versions 1)"]);
    let b = block(&stdout, "no_config");
    assert_eq!(b[0], "no_config: OK (versions 1)");
    assert!(has(
        &b,
        "note: no config.pbtxt: auto-complete will fill it in"
    ));

    let b = block(&stdout, "syntax");
    assert_eq!(b[0], "syntax: 1 error");
    let path = syntax.join("config.pbtxt");
    assert!(has(&b, &format!("- {}:3:1: ", path.display())), "{b:?}");
    assert!(has(&b, "max_batchsize"));

    let b = block(&stdout, "wrong_name");
    assert_eq!(b[0], "wrong_name: 1 error");
    assert!(has(
        &b,
        "unexpected directory name 'wrong_name' for model 'other'"
    ));

    let b = block(&stdout, "no_version");
    assert_eq!(b[0], "no_version: 1 error");
    assert!(has(&b, "has no version directory"));

    let b = block(&stdout, "no_file");
    assert_eq!(b[0], "no_file: 2 errors");
    for v in [2, 3] {
        let file = no_file.join(v.to_string()).join("model.onnx");
        assert!(
            has(
                &b,
                &format!("- version {v}: model file {} is missing", file.display())
            ),
            "{b:?}"
        );
    }

    let b = block(&stdout, "missing_versions");
    assert_eq!(b[0], "missing_versions: 1 error");
    assert!(has(&b, "version(s) 4, 7"));

    let b = block(&stdout, "no_labels");
    assert_eq!(b[0], "no_labels: 1 error");
    assert!(has(&b, "output[1].label_filename"));
    assert!(has(&b, &labels.join("labels.txt").display().to_string()));

    let b = block(&stdout, "bad_fields");
    assert_eq!(b[0], "bad_fields: 3 errors", "{b:?}");
    assert!(has(
        &b,
        "- max_batch_size: must be 0 (no batching) or positive, got -1"
    ));
    assert!(has(&b, "- input[0].dims[0]: dimension must be -1"));
    assert!(has(
        &b,
        "- output[1].name: output 'OUTPUT0' is declared twice"
    ));

    let b = block(&stdout, "no_platform");
    assert_eq!(b[0], "no_platform: 1 error", "{b:?}");
    assert!(has(&b, "platform/backend unknown"));

    // Sorted by name, and the summary.
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && l.contains(": "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    let mut sorted = headers.clone();
    sorted.sort_unstable();
    assert_eq!(headers, sorted);
    assert_eq!(stdout.lines().last(), Some("11 models, 8 with errors"));
}

#[test]
fn strict_model_config_requires_complete_configurations() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    model(repo, "simple", Some(&simple_config()), &[(1, true)]);
    // An input without its data type and no outputs: auto-complete fills them in.
    model(
        repo,
        "partial",
        Some(
            "name: \"partial\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 8\n\
             input [ { name: \"INPUT0\" dims: [ 16 ] } ]\n",
        ),
        &[(1, true)],
    );
    model(repo, "no_config", None, &[(1, true)]);

    let (code, stdout, _) = validate(&["--model-repository", &repo_arg(repo)]);
    assert_eq!(code, 0);
    assert_eq!(block(&stdout, "partial"), vec!["partial: OK (versions 1)"]);

    let (code, stdout_strict, _) = validate(&[
        "--model-repository",
        &repo_arg(repo),
        "--strict-model-config",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        block(&stdout_strict, "simple"),
        vec!["simple: OK (versions 1)"]
    );
    let b = block(&stdout_strict, "partial");
    assert_eq!(b[0], "partial: 2 errors");
    assert!(has(
        &b,
        "- input[0].data_type: input 'INPUT0' has no valid data type"
    ));
    assert!(has(&b, "- output: no outputs are configured"));
    let b = block(&stdout_strict, "no_config");
    assert_eq!(b[0], "no_config: 1 error");
    assert!(has(&b, "config.pbtxt"));
    assert_eq!(
        stdout_strict.lines().last(),
        Some("3 models, 2 with errors")
    );
}

#[test]
fn a_good_repository_passes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    model(a.path(), "simple", Some(&simple_config()), &[(1, true)]);
    model(
        b.path(),
        "other",
        Some(&renamed("other").replace(
            "max_batch_size: 8",
            "max_batch_size: 8\nversion_policy: { latest: { num_versions: 2 } }",
        )),
        &[(1, false), (2, true), (3, true)],
    );
    let (code, stdout, _) = validate(&[
        "--model-repository",
        &repo_arg(a.path()),
        "--model-repository",
        &repo_arg(b.path()),
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "other: OK (versions 2, 3)\nsimple: OK (versions 1)\n2 models, 0 with errors\n"
    );
}

#[test]
fn the_same_model_in_two_repositories_is_an_error() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for repo in [a.path(), b.path()] {
        model(repo, "simple", Some(&simple_config()), &[(1, true)]);
    }
    let (code, stdout, _) = validate(&[
        "--model-repository",
        &repo_arg(a.path()),
        "--model-repository",
        &repo_arg(b.path()),
    ]);
    assert_eq!(code, 1);
    let lines = block(&stdout, "simple");
    assert_eq!(lines[0], "simple: 1 error");
    assert!(has(&lines, "appears in more than one repository"));
}

#[test]
fn the_example_repository_passes() {
    let root = workspace();
    if !root.join("configs/models/simple/1/model.onnx").exists() {
        println!("skipped: configs/models has no model files (scripts/setup.sh generates them)");
        return;
    }
    let repo = root.join("configs/models");
    let (code, stdout, _) = validate(&["--model-repository", &repo_arg(&repo)]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.lines().last().unwrap().ends_with(", 0 with errors"));
}

#[test]
fn a_missing_repository_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let (code, stdout, stderr) = validate(&["--model-repository", &repo_arg(&missing)]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(&format!(
            "model repository {} does not exist or is not a directory",
            missing.display()
        )),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--model-repository"), "{stderr}");
}
