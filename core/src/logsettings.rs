//! The logging extension's settings (`GET/POST /v2/logging`, gRPC `LogSettings`). The core
//! holds no logger: the binary installs a [`LogControl`] that applies changes to its own, and
//! both frontends reach it through the [`crate::Server`].

use crate::{Error, Result};

/// The settings, with Triton's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub log_file: String,
    pub log_info: bool,
    pub log_warning: bool,
    pub log_error: bool,
    pub log_verbose_level: u32,
    /// `default`, `ISO8601` or `json`.
    pub log_format: String,
}

/// A change: the settings given, the others as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogUpdate {
    pub log_file: Option<String>,
    pub log_info: Option<bool>,
    pub log_warning: Option<bool>,
    pub log_error: Option<bool>,
    pub log_verbose_level: Option<u32>,
    pub log_format: Option<String>,
}

/// The formats `log_format` accepts.
pub const LOG_FORMATS: &[&str] = &["default", "ISO8601", "json"];

impl LogUpdate {
    /// Checks what can be checked without the logger: the format's name, and that the log
    /// file stays where the command line put it (as in Triton, the network may not move it).
    pub fn check(&self, current: &LogSettings) -> Result<()> {
        if let Some(f) = &self.log_format
            && !LOG_FORMATS.contains(&f.as_str())
        {
            return Err(Error::invalid_arg(format!(
                "invalid log format '{f}' (default, ISO8601 or json)"
            )));
        }
        if let Some(file) = &self.log_file
            && *file != current.log_file
        {
            return Err(Error::invalid_arg(
                "log file location can not be updated through network protocol",
            ));
        }
        Ok(())
    }

    pub fn apply(&self, to: &mut LogSettings) {
        if let Some(v) = self.log_info {
            to.log_info = v;
        }
        if let Some(v) = self.log_warning {
            to.log_warning = v;
        }
        if let Some(v) = self.log_error {
            to.log_error = v;
        }
        if let Some(v) = self.log_verbose_level {
            to.log_verbose_level = v;
        }
        if let Some(v) = &self.log_format {
            to.log_format = v.clone();
        }
    }
}

/// What the binary's logger offers the frontends.
pub trait LogControl: Send + Sync {
    fn settings(&self) -> LogSettings;
    /// Applies `update` at once (the next log line follows it) and returns the new settings.
    fn update(&self, update: &LogUpdate) -> Result<LogSettings>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> LogSettings {
        LogSettings {
            log_file: String::new(),
            log_info: true,
            log_warning: true,
            log_error: true,
            log_verbose_level: 0,
            log_format: "default".into(),
        }
    }

    #[test]
    fn updates_are_checked_and_applied() {
        let mut s = current();
        let u = LogUpdate {
            log_info: Some(false),
            log_verbose_level: Some(2),
            log_format: Some("json".into()),
            ..Default::default()
        };
        u.check(&s).unwrap();
        u.apply(&mut s);
        assert!(!s.log_info && s.log_verbose_level == 2 && s.log_format == "json");
        let bad = LogUpdate {
            log_format: Some("xml".into()),
            ..Default::default()
        };
        assert!(bad.check(&s).unwrap_err().message().contains("'xml'"));
        let moved = LogUpdate {
            log_file: Some("/tmp/x".into()),
            ..Default::default()
        };
        assert!(moved.check(&s).is_err());
        let same = LogUpdate {
            log_file: Some(String::new()),
            ..Default::default()
        };
        assert!(same.check(&s).is_ok());
    }
}
