//! Logging on `tracing`: Triton's default format (`I1121 21:29:56.123456 4242 target] msg`),
//! its ISO8601 format (`2026-11-21T21:29:56Z I 4242 target] msg`) and JSON lines, to stderr
//! or `--log-file`. Levels and format change at run time through the logging extension: the
//! filter and the formatter read the current settings on every event.
//!
//! A request's lines carry its id: an event or an enclosing span with a `request_id` field
//! prints `[request id: <id>] ` (as Triton's messages do) or, in JSON, `"request_id"`.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use ferrite_core::{LogControl, LogSettings, LogUpdate};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::options::Options;

const DEFAULT: u8 = 0;
const ISO8601: u8 = 1;
const JSON: u8 = 2;

/// The settings the filter and the formatter read on every event.
pub struct Logging {
    info: AtomicBool,
    warning: AtomicBool,
    error: AtomicBool,
    verbose: AtomicU32,
    format: AtomicU8,
    file: String,
}

impl Logging {
    /// Errors, warnings and info as the three switches say; verbose level 1 adds Ferrite's
    /// own debug lines, level 2 every library's (HTTP/2 frames, ...) and trace lines.
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        match *meta.level() {
            Level::ERROR => self.error.load(Ordering::Relaxed),
            Level::WARN => self.warning.load(Ordering::Relaxed),
            Level::INFO => self.info.load(Ordering::Relaxed),
            Level::DEBUG => match self.verbose.load(Ordering::Relaxed) {
                0 => false,
                1 => meta.target().starts_with("ferrite"),
                _ => true,
            },
            _ => self.verbose.load(Ordering::Relaxed) >= 2,
        }
    }

    /// The most verbose level any line can have now (tracing's global fast check).
    fn max_level(&self) -> LevelFilter {
        match self.verbose.load(Ordering::Relaxed) {
            0 => {}
            1 => return LevelFilter::DEBUG,
            _ => return LevelFilter::TRACE,
        }
        if self.info.load(Ordering::Relaxed) {
            LevelFilter::INFO
        } else if self.warning.load(Ordering::Relaxed) {
            LevelFilter::WARN
        } else if self.error.load(Ordering::Relaxed) {
            LevelFilter::ERROR
        } else {
            LevelFilter::OFF
        }
    }
}

/// The filter of the settings: each call site's interest is decided once (so disabled lines,
/// such as the HTTP/2 library's many debug lines, cost nothing) and decided again when the
/// settings change ([`tracing::callsite::rebuild_interest_cache`]).
struct SettingsFilter(Arc<Logging>);

impl<S> tracing_subscriber::layer::Filter<S> for SettingsFilter {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.enabled(meta)
    }

    fn callsite_enabled(&self, meta: &'static tracing::Metadata<'static>) -> Interest {
        if self.0.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.0.max_level())
    }
}

fn format_code(name: &str) -> u8 {
    match name {
        "ISO8601" => ISO8601,
        "json" => JSON,
        _ => DEFAULT,
    }
}

impl LogControl for Logging {
    fn settings(&self) -> LogSettings {
        LogSettings {
            log_file: self.file.clone(),
            log_info: self.info.load(Ordering::Relaxed),
            log_warning: self.warning.load(Ordering::Relaxed),
            log_error: self.error.load(Ordering::Relaxed),
            log_verbose_level: self.verbose.load(Ordering::Relaxed),
            log_format: match self.format.load(Ordering::Relaxed) {
                ISO8601 => "ISO8601",
                JSON => "json",
                _ => "default",
            }
            .into(),
        }
    }

    fn update(&self, update: &LogUpdate) -> ferrite_core::Result<LogSettings> {
        let mut s = self.settings();
        update.apply(&mut s);
        self.info.store(s.log_info, Ordering::Relaxed);
        self.warning.store(s.log_warning, Ordering::Relaxed);
        self.error.store(s.log_error, Ordering::Relaxed);
        self.verbose.store(s.log_verbose_level, Ordering::Relaxed);
        self.format
            .store(format_code(&s.log_format), Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        tracing::info!(
            "log settings: info {}, warning {}, error {}, verbose level {}, format {}",
            s.log_info,
            s.log_warning,
            s.log_error,
            s.log_verbose_level,
            s.log_format
        );
        Ok(s)
    }
}

struct Format(Arc<Logging>);

/// The `request_id` of an event, and the message and other fields as text.
#[derive(Default)]
struct Fields {
    request_id: Option<String>,
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "request_id" => self.request_id = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            name => self.rest.push((name, value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "request_id" => self.request_id = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            name => self.rest.push((name, format!("{value:?}"))),
        }
    }
}

/// The `request_id` a span was created with (kept in its extensions).
struct SpanRequestId(String);

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.request_id.is_none()
            && let Some(scope) = ctx.event_scope()
        {
            for span in scope {
                if let Some(id) = span.extensions().get::<SpanRequestId>() {
                    fields.request_id = Some(id.0.clone());
                    break;
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil(days);
        let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let pid = std::process::id();
        let level = *meta.level();
        match self.0.format.load(Ordering::Relaxed) {
            JSON => {
                let mut line = format!(
                    "{{\"timestamp\":\"{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z\",\"level\":\"{}\",\"pid\":{pid},\"target\":{}",
                    now.subsec_micros(),
                    level,
                    json_string(meta.target())
                );
                if let Some(id) = &fields.request_id {
                    let _ = write!(line, ",\"request_id\":{}", json_string(id));
                }
                let _ = write!(line, ",\"message\":{}", json_string(&fields.message));
                for (name, value) in &fields.rest {
                    let _ = write!(line, ",{}:{}", json_string(name), json_string(value));
                }
                writeln!(writer, "{line}}}")
            }
            code => {
                let letter = match level {
                    Level::ERROR => 'E',
                    Level::WARN => 'W',
                    Level::INFO => 'I',
                    _ => 'V',
                };
                if code == ISO8601 {
                    write!(
                        writer,
                        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z {letter} {pid} {}] ",
                        meta.target()
                    )?;
                } else {
                    write!(
                        writer,
                        "{letter}{month:02}{day:02} {h:02}:{m:02}:{s:02}.{:06} {pid} {}] ",
                        now.subsec_micros(),
                        meta.target()
                    )?;
                }
                if let Some(id) = &fields.request_id {
                    write!(writer, "[request id: {id}] ")?;
                }
                write!(writer, "{}", fields.message)?;
                for (name, value) in &fields.rest {
                    write!(writer, " {name}={value}")?;
                }
                writeln!(writer)
            }
        }
    }
}

/// Keeps the `request_id` of new spans where the formatter finds it.
struct RequestIdLayer;

impl<S> tracing_subscriber::Layer<S> for RequestIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(request_id), Some(span)) = (fields.request_id, ctx.span(id)) {
            span.extensions_mut().insert(SpanRequestId(request_id));
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Year, month and day of a day count since 1970-01-01 (UTC, proleptic Gregorian).
fn civil(days: u64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// Where log lines go: `--log-file` (appended) or stderr.
#[derive(Clone)]
enum Sink {
    Stderr,
    File(Arc<parking_lot::Mutex<std::fs::File>>),
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stderr => std::io::stderr().write(buf),
            Sink::File(f) => f.lock().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stderr => std::io::stderr().flush(),
            Sink::File(f) => f.lock().flush(),
        }
    }
}

/// Installs the logger; returns its settings for the logging extension. `FERRITE_LOG` (an
/// `EnvFilter` directive such as `ferrite_core=debug`) replaces the level flags when set.
pub fn init(options: &Options) -> Result<Arc<Logging>, String> {
    if !ferrite_core::logsettings::LOG_FORMATS.contains(&options.log_format.as_str()) {
        return Err(format!(
            "unexpected value for --log-format: '{}' (default, ISO8601 or json)",
            options.log_format
        ));
    }
    let logging = Arc::new(Logging {
        info: AtomicBool::new(options.log_info),
        warning: AtomicBool::new(options.log_warning),
        error: AtomicBool::new(options.log_error),
        verbose: AtomicU32::new(options.log_verbose),
        format: AtomicU8::new(format_code(&options.log_format)),
        file: options
            .log_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    });
    let sink = match &options.log_file {
        Some(path) => Sink::File(Arc::new(parking_lot::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open --log-file {}: {e}", path.display()))?,
        ))),
        None => Sink::Stderr,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || sink.clone())
        .event_format(Format(Arc::clone(&logging)));
    let env = std::env::var("FERRITE_LOG").ok().filter(|v| !v.is_empty());
    // The filter covers both layers: with a layer that has none, every call site of every
    // library (h2's frame-by-frame lines among them) would be enabled for the subscriber,
    // creating spans and events only to drop them, at a cost on every request.
    let layers = RequestIdLayer.and_then(fmt);
    let registry = tracing_subscriber::registry();
    let _ = match env {
        Some(directives) => registry
            .with(layers.with_filter(EnvFilter::new(directives)))
            .try_init(),
        None => {
            let filter = SettingsFilter(Arc::clone(&logging));
            registry.with(layers.with_filter(filter)).try_init()
        }
    };
    Ok(logging)
}

#[cfg(test)]
mod tests {
    use super::civil;

    #[test]
    fn calendar() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_413), (2025, 11, 21));
        assert_eq!(civil(19_417), (2023, 3, 1));
        assert_eq!(civil(19_416), (2023, 2, 28));
    }
}
