//! The model repository on disk: one directory per model under each repository path, numbered
//! version directories inside, and the version policy that picks which versions to serve.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{ModelConfig, PolicyChoice};
use crate::{Error, Result};

/// A model directory found in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDir {
    pub name: String,
    pub path: PathBuf,
}

/// Lists the model directories of every repository path, sorted by name. A name found in two
/// repositories is an error for that model (reported in the map's value).
pub fn scan(repositories: &[PathBuf]) -> Result<BTreeMap<String, Result<ModelDir>>> {
    let mut models: BTreeMap<String, Result<ModelDir>> = BTreeMap::new();
    for repo in repositories {
        let entries = std::fs::read_dir(repo).map_err(|e| {
            Error::invalid_arg(format!(
                "failed to read model repository {}: {e}",
                repo.display()
            ))
            .with_source(e)
        })?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::internal(format!("reading {}: {e}", repo.display())))?;
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            match models.get(&name) {
                Some(Ok(existing)) => {
                    let message = format!(
                        "model '{name}' appears in more than one repository: {} and {}",
                        existing.path.display(),
                        path.display()
                    );
                    models.insert(name, Err(Error::invalid_arg(message)));
                }
                Some(Err(_)) => {}
                None => {
                    models.insert(name.clone(), Ok(ModelDir { name, path }));
                }
            }
        }
    }
    Ok(models)
}

/// The numbered version directories of a model, ascending. Other entries are ignored, as in
/// Triton.
pub fn versions(model_dir: &Path) -> Result<Vec<i64>> {
    let entries = std::fs::read_dir(model_dir).map_err(|e| {
        Error::internal(format!("failed to read {}: {e}", model_dir.display())).with_source(e)
    })?;
    let mut versions: Vec<i64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
        .filter(|&v| v >= 0)
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Which of the available versions the configuration's policy serves, ascending. A version
/// the policy names that does not exist is an error naming it.
pub fn select_versions(config: &ModelConfig, available: &[i64]) -> Result<Vec<i64>> {
    let policy = config
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref());
    let selected = match policy {
        None => available.iter().rev().take(1).copied().collect::<Vec<_>>(),
        Some(PolicyChoice::Latest(latest)) => available
            .iter()
            .rev()
            .take(latest.num_versions.max(1) as usize)
            .copied()
            .collect(),
        Some(PolicyChoice::All(_)) => available.to_vec(),
        Some(PolicyChoice::Specific(specific)) => {
            let missing: Vec<String> = specific
                .versions
                .iter()
                .filter(|v| !available.contains(v))
                .map(i64::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(Error::not_found(format!(
                    "version_policy names version(s) {} of model '{}', which have no version directory",
                    missing.join(", "),
                    config.name
                )));
            }
            specific.versions.clone()
        }
    };
    let mut selected = selected;
    selected.sort_unstable();
    selected.dedup();
    if selected.is_empty() {
        return Err(Error::not_found(format!(
            "model '{}' has no version directory to serve (expected a numbered folder such as '1')",
            config.name
        )));
    }
    Ok(selected)
}

/// Reads a labels file: one label per line.
/// The labels of output `output` of `model`: `file` must stay inside the model's folder
/// (after symlinks; Triton's text and code otherwise), and is read with a size limit.
pub fn read_labels(model_dir: &Path, file: &str, output: &str, model: &str) -> Result<Vec<String>> {
    let path = crate::confine::inside(model_dir, file).ok_or_else(|| {
        crate::texts::label_outside(&model_dir.join(file).display().to_string(), output, model)
    })?;
    let bytes = crate::confine::read_limited(&path, "label file")?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy: &str) -> ModelConfig {
        ferrite_proto::parse_model_config(&format!("name: \"m\" {policy}")).unwrap()
    }

    #[test]
    fn scan_finds_models_and_flags_duplicates() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (repo, name) in [(&a, "x"), (&a, "y"), (&b, "y"), (&b, ".hidden")] {
            std::fs::create_dir(repo.path().join(name)).unwrap();
        }
        std::fs::write(a.path().join("README"), "not a model").unwrap();
        let models = scan(&[a.path().into(), b.path().into()]).unwrap();
        assert_eq!(models.keys().collect::<Vec<_>>(), vec!["x", "y"]);
        assert!(models["x"].is_ok());
        assert!(
            models["y"]
                .as_ref()
                .unwrap_err()
                .message()
                .contains("more than one repository")
        );
    }

    #[test]
    fn versions_are_numeric_folders() {
        let d = tempfile::tempdir().unwrap();
        for v in ["3", "1", "10", "abc"] {
            std::fs::create_dir(d.path().join(v)).unwrap();
        }
        std::fs::write(d.path().join("2"), "file, not a folder").unwrap();
        assert_eq!(versions(d.path()).unwrap(), vec![1, 3, 10]);
    }

    #[test]
    fn version_policies() {
        let avail = [1, 2, 5];
        assert_eq!(select_versions(&config(""), &avail).unwrap(), vec![5]);
        assert_eq!(
            select_versions(
                &config("version_policy: { latest: { num_versions: 2 } }"),
                &avail
            )
            .unwrap(),
            vec![2, 5]
        );
        assert_eq!(
            select_versions(&config("version_policy: { all { } }"), &avail).unwrap(),
            vec![1, 2, 5]
        );
        assert_eq!(
            select_versions(
                &config("version_policy: { specific: { versions: [1, 5] } }"),
                &avail
            )
            .unwrap(),
            vec![1, 5]
        );
        let e = select_versions(
            &config("version_policy: { specific: { versions: [3] } }"),
            &avail,
        )
        .unwrap_err();
        assert!(e.message().contains("version(s) 3"), "{}", e.message());
        assert!(select_versions(&config(""), &[]).is_err());
    }
}
