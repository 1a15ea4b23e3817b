//! `ferrite validate`: checks model repositories without loading anything (no drivers, no
//! ONNX Runtime) and reports every configuration and layout error of every model.
//!
//! Per model directory it reports:
//! - `config.pbtxt` that does not parse (`FILE:LINE:COLUMN: message`), a `name` that differs
//!   from the directory name, a missing `config.pbtxt` when auto-complete is off;
//! - what the loader's own validation reports ([`config::validate`] after
//!   [`config::normalize`] with no GPU), less what auto-complete would fix (see
//!   [`fixed_by_auto_complete`]);
//! - the layout: no numbered version folder, a version policy naming missing versions, a
//!   selected version folder without the model file, an output's `label_filename` that cannot
//!   be read, a model name found in two repositories, a platform/backend that is neither set
//!   nor detectable from the model file.
//!
//! Exit status: 0 when every model is fine, 1 when any model has an error, 2 for bad
//! arguments (a repository that is not a directory, an unknown flag).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use ferrite_core::config::{self, ConfigDataType, ConfigIssue, ModelConfig};
use ferrite_core::model::{LoadOptions, read_config};
use ferrite_core::repository::{self, ModelDir};

/// Check model repositories without loading any model: every configuration and layout error
/// of every model is listed; the exit status is 1 when there is any.
#[derive(Debug, Parser)]
#[command(bin_name = "ferrite validate")]
struct Args {
    /// Model repository path (repeatable).
    #[arg(
        long = "model-repository",
        alias = "model-store",
        value_name = "DIR",
        required = true
    )]
    model_repository: Vec<PathBuf>,
    /// Check as the server does with auto-complete off: config.pbtxt must exist and be
    /// complete.
    #[arg(
        long,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        value_name = "BOOL"
    )]
    strict_model_config: bool,
    /// Same as --strict-model-config=true.
    #[arg(
        long,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        value_name = "BOOL"
    )]
    disable_auto_complete_config: bool,
}

/// What was found about one model.
#[derive(Debug, Default)]
struct Report {
    name: String,
    /// The versions the server would load (empty when that could not be decided).
    versions: Vec<i64>,
    errors: Vec<String>,
    notes: Vec<String>,
}

/// Runs `ferrite validate`; `args[0]` is `validate`.
pub fn main(args: &[String]) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    for repo in &args.model_repository {
        if !repo.is_dir() {
            eprintln!(
                "error: model repository {} does not exist or is not a directory",
                repo.display()
            );
            return ExitCode::from(2);
        }
    }
    let strict = args.strict_model_config || args.disable_auto_complete_config;
    let dirs = match repository::scan(&args.model_repository) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}", e.chain());
            return ExitCode::from(2);
        }
    };

    // `scan` returns a BTreeMap: the models come sorted by name.
    let reports: Vec<Report> = dirs
        .into_iter()
        .map(|(name, dir)| match dir {
            Ok(dir) => check_model(&dir, strict),
            Err(e) => Report {
                name,
                errors: vec![e.message().to_string()],
                ..Report::default()
            },
        })
        .collect();

    let mut out = String::new();
    for report in &reports {
        render(report, &mut out);
    }
    let failed = reports.iter().filter(|r| !r.errors.is_empty()).count();
    out.push_str(&format!(
        "{} model{}, {failed} with errors\n",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    ));
    print!("{out}");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn render(report: &Report, out: &mut String) {
    if report.errors.is_empty() {
        let versions: Vec<String> = report.versions.iter().map(i64::to_string).collect();
        out.push_str(&format!(
            "{}: OK (versions {})\n",
            report.name,
            versions.join(", ")
        ));
    } else {
        let n = report.errors.len();
        out.push_str(&format!(
            "{}: {n} error{}\n",
            report.name,
            if n == 1 { "" } else { "s" }
        ));
    }
    for e in &report.errors {
        out.push_str(&format!("  - {e}\n"));
    }
    for note in &report.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
}

/// Checks one model directory, as the server would load it with `strict` meaning
/// `--strict-model-config` (no auto-complete).
fn check_model(dir: &ModelDir, strict: bool) -> Report {
    let mut report = Report {
        name: dir.name.clone(),
        ..Report::default()
    };
    let opts = LoadOptions {
        auto_complete: !strict,
        gpu_available: false,
        histograms: None,
    };
    let config_path = dir.path.join(config::CONFIG_FILE);

    // 1. config.pbtxt. `read_config` is what the server runs (read, name check, platform
    // detection from the model file); the text is parsed here first only to report a syntax
    // error with its line and column in the `FILE:LINE:COLUMN:` form.
    let mut check_fields = true;
    let config: Option<ModelConfig> = match std::fs::read_to_string(&config_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if strict {
                if let Err(e) = read_config(dir, &opts) {
                    report.errors.push(e.message().to_string());
                }
                // The missing file is the error; its fields cannot be judged.
                check_fields = false;
            } else {
                report.notes.push(format!(
                    "no {}: auto-complete will fill it in from the model file at load time",
                    config::CONFIG_FILE
                ));
            }
            // Go on with the empty configuration auto-complete would start from, so the
            // layout is still checked.
            read_config(
                dir,
                &LoadOptions {
                    auto_complete: true,
                    ..opts.clone()
                },
            )
            .ok()
        }
        Err(e) => {
            report
                .errors
                .push(format!("failed to read {}: {e}", config_path.display()));
            None
        }
        Ok(text) => match ferrite_proto::parse_model_config(&text) {
            Err(e) => {
                report.errors.push(format!(
                    "{}:{}:{}: {}",
                    config_path.display(),
                    e.line(),
                    e.column(),
                    e.message()
                ));
                None
            }
            Ok(parsed) => match read_config(dir, &opts) {
                Ok(c) => Some(c),
                Err(e) => {
                    // The name differs from the directory's: go on under the configured
                    // name so that everything else is still checked.
                    report.errors.push(e.message().to_string());
                    let declared = ModelDir {
                        name: parsed.name.clone(),
                        path: dir.path.clone(),
                    };
                    read_config(&declared, &opts).ok()
                }
            },
        },
    };

    // 2. Version folders and the version policy (with no readable configuration, the default
    // policy: the latest version).
    let available = match repository::versions(&dir.path) {
        Ok(v) => v,
        Err(e) => {
            report.errors.push(e.message().to_string());
            Vec::new()
        }
    };
    let policy_config = config.clone().unwrap_or_else(|| ModelConfig {
        name: dir.name.clone(),
        ..ModelConfig::default()
    });
    match repository::select_versions(&policy_config, &available) {
        Ok(v) => report.versions = v,
        Err(e) => report.errors.push(e.message().to_string()),
    }

    let Some(mut config) = config else {
        return report;
    };

    // 3. Fields: the loader's validation, on the configuration with Triton's defaults.
    config::normalize(&mut config, false);
    let undetectable = config.platform.is_empty() && config.backend.is_empty();
    if undetectable {
        report.errors.push(format!(
            "platform/backend unknown: {} sets neither 'platform' nor 'backend', and no version folder holds a model.onnx to detect it from",
            config::CONFIG_FILE
        ));
    }
    if check_fields {
        for issue in config::validate(&config) {
            // Reported above, with the reason.
            let platform_issue = issue.path == "backend" && undetectable;
            if platform_issue || (!strict && fixed_by_auto_complete(&issue, &config)) {
                continue;
            }
            report.errors.push(issue.to_string());
        }
        if strict {
            // Auto-complete is what fills in a configuration without inputs or outputs.
            if config.input.is_empty() {
                report.errors.push(
                    "input: no inputs are configured, and with --strict-model-config auto-complete will not fill them in".into(),
                );
            }
            if config.output.is_empty() {
                report.errors.push(
                    "output: no outputs are configured, and with --strict-model-config auto-complete will not fill them in".into(),
                );
            }
        }
    }

    // 4. Label files.
    for (i, output) in config.output.iter().enumerate() {
        if output.label_filename.is_empty() {
            continue;
        }
        if let Err(e) =
            repository::read_labels(&dir.path, &output.label_filename, &output.name, &dir.name)
        {
            report
                .errors
                .push(format!("output[{i}].label_filename: {}", e.message()));
        }
    }

    // 5. The model file of every version the server would load.
    let file = &config.default_model_filename;
    if file.is_empty() {
        if !undetectable {
            report.notes.push(format!(
                "model files not checked: {} has no default model file name (set default_model_filename)",
                if config.backend.is_empty() {
                    format!("platform '{}'", config.platform)
                } else {
                    format!("backend '{}'", config.backend)
                }
            ));
        }
    } else {
        for &version in &report.versions {
            let path = dir.path.join(version.to_string()).join(file);
            if let Some(problem) = model_file_problem(&path, &config) {
                report
                    .errors
                    .push(format!("version {version}: model file {problem}"));
            }
        }
    }
    report
}

/// What is wrong with a version's model file, if anything. The ONNX Runtime driver needs a
/// file; other backends' "files" may be folders (`model.savedmodel`).
fn model_file_problem(path: &Path, config: &ModelConfig) -> Option<String> {
    let onnx = config.backend == "onnxruntime" || config.platform == "onnxruntime_onnx";
    if !path.exists() {
        Some(format!("{} is missing", path.display()))
    } else if onnx && !path.is_file() {
        Some(format!("{} is not a file", path.display()))
    } else {
        None
    }
}

/// Whether auto-complete fixes `issue` at load time, so that it is no error while
/// auto-complete is on.
///
/// The rule: auto-complete (the ONNX driver's, like Triton's) adds the inputs and outputs a
/// configuration leaves out and, for a declared input or output, fills in a `data_type` that
/// is unset (`TYPE_INVALID`) and `dims` that are empty; it may set `max_batch_size` only
/// when it is 0. Inputs and outputs that are absent and empty dims are not reported by
/// [`config::validate`] at all, so the one issue left to forgive is an unset data type of a
/// declared input or output. Everything else it reports (a negative `max_batch_size`, a
/// `dims` entry of 0, a duplicate name, a bad instance group, ...) auto-complete keeps, and
/// the load would fail on it. With `--strict-model-config` nothing is forgiven, and a
/// configuration with no inputs or outputs is an error of its own.
fn fixed_by_auto_complete(issue: &ConfigIssue, config: &ModelConfig) -> bool {
    let unset = ConfigDataType::TypeInvalid as i32;
    let inputs = config
        .input
        .iter()
        .enumerate()
        .filter(|(_, io)| io.data_type == unset)
        .map(|(i, _)| format!("input[{i}].data_type"));
    let outputs = config
        .output
        .iter()
        .enumerate()
        .filter(|(_, io)| io.data_type == unset)
        .map(|(i, _)| format!("output[{i}].data_type"));
    inputs.chain(outputs).any(|path| path == issue.path)
}
