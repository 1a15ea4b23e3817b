//! The one monotonic clock shared by the host, its drivers (through the ABI) and statistics,
//! and timed waits that wake on time.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on the process's monotonic clock.
pub fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Milliseconds since the Unix epoch (Triton's `last_inference`).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Makes this thread's timed waits wake on time. Linux lets every timed sleep of a normal
/// thread overrun by up to its timer slack, 50 us by default, to batch wake-ups; a batcher
/// whose `max_queue_delay_microseconds` is 100 would hold a lone request half as long again.
/// Sets the slack to 1 us (PR_SET_TIMERSLACK); where that fails the default stays.
pub fn precise_timed_waits() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only this thread's
    // timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn timed_waits_get_a_microsecond_of_slack() {
        std::thread::spawn(|| {
            super::precise_timed_waits();
            // SAFETY: PR_GET_TIMERSLACK takes no argument and returns this thread's slack.
            let slack = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
            assert_eq!(slack, 1000);
        })
        .join()
        .unwrap();
    }
}
