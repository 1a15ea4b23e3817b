//! Logging in Triton's default format: `I1121 21:29:56.123456 4242 target] message`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::options::Options;

struct TritonFormat;

impl<S, N> FormatEvent<S, N> for TritonFormat
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
        let level = match *meta.level() {
            Level::ERROR => 'E',
            Level::WARN => 'W',
            Level::INFO => 'I',
            _ => 'V',
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (month, day) = month_day(days);
        write!(
            writer,
            "{level}{month:02}{day:02} {:02}:{:02}:{:02}.{:06} {} {}] ",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            now.subsec_micros(),
            std::process::id(),
            meta.target()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Month and day of a day count since 1970-01-01 (UTC, proleptic Gregorian).
fn month_day(days: u64) -> (u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (m as u32, d as u32)
}

pub fn init(options: &Options) {
    let level = if options.log_verbose > 0 {
        "debug"
    } else if options.log_info {
        "info"
    } else if options.log_warning {
        "warn"
    } else if options.log_error {
        "error"
    } else {
        "off"
    };
    let filter = EnvFilter::try_from_env("FERRITE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(TritonFormat)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::month_day;

    #[test]
    fn calendar() {
        assert_eq!(month_day(0), (1, 1));
        assert_eq!(month_day(20_413), (11, 21)); // 2025-11-21
        assert_eq!(month_day(19_417), (3, 1)); // 2023-03-01
    }
}
