//! The host's table, kept once per driver library, and the safe calls made through it.

use std::sync::OnceLock;

use ferrite_driver_abi as abi;

use crate::{Error, ErrorCode};

static HOST: OnceLock<&'static abi::HostApi> = OnceLock::new();

/// Remembers the host's table (called by the entry point).
pub(crate) fn set(host: &'static abi::HostApi) {
    let _ = HOST.set(host);
}

pub(crate) fn get() -> &'static abi::HostApi {
    HOST.get()
        .expect("the Ferrite host table is set by the entry point before any other call")
}

/// Log levels of the server log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Verbose,
}

/// Writes a line to the server's log.
pub fn log(level: LogLevel, message: &str) {
    let Some(host) = HOST.get() else { return };
    let level = match level {
        LogLevel::Error => abi::LOG_ERROR,
        LogLevel::Warn => abi::LOG_WARN,
        LogLevel::Info => abi::LOG_INFO,
        LogLevel::Verbose => abi::LOG_VERBOSE,
    };
    // SAFETY: the host's functions are valid for the process; the message outlives the call.
    unsafe { (host.log)(level, abi::Str::new(message)) }
}

/// The host's monotonic clock.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: as above.
    unsafe { (get().now_ns)() }
}

/// Turns an SDK error into a host-owned ABI error.
pub(crate) fn to_abi(err: &Error) -> *mut abi::Error {
    // SAFETY: as above; the host copies the message.
    unsafe { (get().error_new)(err.code as u32, abi::Str::new(&err.message)) }
}

/// Checks a host call's result, taking ownership of (and freeing) the host's error.
pub(crate) fn check(err: *mut abi::Error) -> Result<(), Error> {
    if err.is_null() {
        return Ok(());
    }
    let host = get();
    // SAFETY: `err` is a live error the host just returned to us; we free it exactly once,
    // after copying what we need out of it.
    unsafe {
        let code = ErrorCode::from_raw((host.error_code)(err));
        let message = (host.error_message)(err).to_str_lossy().into_owned();
        (host.error_delete)(err);
        Err(Error::new(code, message))
    }
}

/// Adds `value` (at least 0) to the driver's counter `name` for `labels`, on the server's
/// Prometheus endpoint (Triton's custom metrics). `help` describes the family; every call for
/// one family must give the same help and kind.
pub fn counter_add(
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    value: f64,
) -> Result<(), Error> {
    metric(name, help, abi::METRIC_COUNTER, labels, value)
}

/// Sets the driver's gauge `name` for `labels` to `value` (see [`counter_add`]).
pub fn gauge_set(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Result<(), Error> {
    metric(name, help, abi::METRIC_GAUGE, labels, value)
}

fn metric(
    name: &str,
    help: &str,
    kind: u32,
    labels: &[(&str, &str)],
    value: f64,
) -> Result<(), Error> {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let labels = serde_json::Value::Object(labels).to_string();
    // SAFETY: the host's functions are valid for the process (its table is at least as new as
    // this SDK's, checked at entry); the strings outlive the call.
    let err = unsafe {
        (get().metric)(
            abi::Str::new(name),
            abi::Str::new(help),
            kind,
            abi::Str::new(&labels),
            value,
        )
    };
    check(err)
}
