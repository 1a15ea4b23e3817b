//! Paths that come from a request or a configuration stay inside the directory they belong
//! to: model names are single folder names, and files a configuration names (labels, initial
//! state data, the model file) resolve, after symlinks, inside the model's folder. The checks
//! run where names and paths enter the core, before anything is read or written.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result, texts};

/// The most a configuration's side file (a label or initial state file) may hold.
pub const SIDE_FILE_LIMIT: u64 = 64 << 20;

/// Triton's model name rule (`model_repository_manager.cc`): not empty, and no path
/// traversal (`..`, `/`); Ferrite also refuses `.`, `\` and NUL, which no folder name holds.
pub fn model_name(name: &str) -> Result<()> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(texts::empty_model_name());
    }
    if trimmed == ".." || trimmed == "." || name.contains(['/', '\\', '\0']) {
        return Err(texts::invalid_model_name(name));
    }
    Ok(())
}

/// Whether `relative` names something below its base: relative, and only plain names (no
/// `..`, no root, no `.`).
pub fn is_plain_relative(relative: &str) -> bool {
    let path = Path::new(relative);
    !relative.is_empty()
        && !relative.contains('\0')
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// `base/relative` when it resolves (symlinks followed, where it exists) inside `base`;
/// `None` otherwise.
pub fn inside(base: &Path, relative: &str) -> Option<PathBuf> {
    if !is_plain_relative(relative) {
        return None;
    }
    let path = base.join(relative);
    match (path.canonicalize(), base.canonicalize()) {
        (Ok(real), Ok(root)) if real.starts_with(&root) => Some(path),
        // Not there (yet): nothing to follow, and the name itself stays below `base`.
        (Err(_), _) => Some(path),
        _ => None,
    }
}

/// Reads a side file of at most [`SIDE_FILE_LIMIT`] bytes (a `/dev/zero` never ends).
pub fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::invalid_arg(format!("failed to read {what} {}: {e}", path.display())).with_source(e)
    })?;
    let mut data = Vec::new();
    file.take(SIDE_FILE_LIMIT + 1)
        .read_to_end(&mut data)
        .map_err(|e| {
            Error::invalid_arg(format!("failed to read {what} {}: {e}", path.display()))
                .with_source(e)
        })?;
    if data.len() as u64 > SIDE_FILE_LIMIT {
        return Err(Error::invalid_arg(format!(
            "{what} {} is larger than {} MiB",
            path.display(),
            SIDE_FILE_LIMIT >> 20
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_folder_names() {
        assert!(model_name("simple").is_ok());
        assert!(model_name("with space").is_ok());
        for bad in ["/tmp/x", "a/b", "..", ".", "a\\b", "x\0"] {
            let e = model_name(bad).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArg, "{bad}");
        }
        assert_eq!(
            model_name("/tmp/x").unwrap_err().message(),
            "invalid model name '/tmp/x', model name must not contain path traversal characters"
        );
        assert_eq!(
            model_name("  ").unwrap_err().message(),
            "Model name cannot be empty. Please enter a valid name to deploy."
        );
    }

    #[test]
    fn files_stay_inside_after_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("labels.txt"), "a\n").unwrap();
        std::fs::write(dir.path().join("secret"), "s\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), model.join("link.txt")).unwrap();
        assert!(inside(&model, "labels.txt").is_some());
        assert!(inside(&model, "not_yet_there.txt").is_some());
        for bad in ["../secret", "/etc/passwd", "link.txt", "./labels.txt", ""] {
            assert!(inside(&model, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn side_files_are_read_with_a_limit() {
        assert_eq!(
            read_limited(Path::new("/dev/null"), "label file").unwrap(),
            b""
        );
        let e = read_limited(Path::new("/dev/zero"), "label file").unwrap_err();
        assert!(
            e.message().contains("larger than 64 MiB"),
            "{}",
            e.message()
        );
    }
}
