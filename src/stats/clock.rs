//! Clocks and process readings: a cheap wall clock (the TSC through
//! `quanta`), per-thread CPU time, and resident memory.
//!
//! Reading thread CPU time costs about 25 times a TSC read, so callers sample
//! it at most once per [`CPU_SAMPLE_EVERY`] of wall time, never per item.

use std::time::Duration;

/// How often, at most, a running pipeline thread reads its CPU time and the
/// process's resident memory.
pub const CPU_SAMPLE_EVERY: Duration = Duration::from_millis(1);

/// The CPU time the calling thread has used so far: `(user, system)`.
///
/// On Linux this is `getrusage(RUSAGE_THREAD)`; on other Unix systems it falls
/// back to the whole process; elsewhere it reads zero.
pub fn thread_cpu_time() -> (Duration, Duration) {
    #[cfg(unix)]
    {
        #[cfg(target_os = "linux")]
        let who = libc::RUSAGE_THREAD;
        #[cfg(not(target_os = "linux"))]
        let who = libc::RUSAGE_SELF;
        // SAFETY: `usage` is a plain C struct that getrusage fills in; an
        // all-zero value is a valid initial state for it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer is valid for writes for the whole call.
        let rc = unsafe { libc::getrusage(who, &mut usage) };
        if rc == 0 {
            return (timeval(usage.ru_utime), timeval(usage.ru_stime));
        }
    }
    (Duration::ZERO, Duration::ZERO)
}

#[cfg(unix)]
fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// The process's resident set size in bytes, where the system tells it
/// (`/proc/self/statm` on Linux).
pub fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * page.max(1) as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The process's peak resident set size in bytes so far (`ru_maxrss`).
///
/// ```
/// let peak = paipa::stats::peak_resident_bytes().unwrap_or(0);
/// assert!(peak == 0 || peak > 1024);
/// ```
pub fn peak_resident_bytes() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: as in `thread_cpu_time`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer is valid for writes for the whole call.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc == 0 {
            let max = usage.ru_maxrss.max(0) as u64;
            // Linux reports KiB, macOS bytes.
            return Some(if cfg!(target_os = "macos") { max } else { max * 1024 });
        }
    }
    None
}

/// The fast wall clock shared by every recorder of the process.
pub(crate) fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Converts raw clock ticks into a duration.
pub(crate) fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_nanos(clock().delta_as_nanos(0, ticks))
}

/// Converts a duration into raw clock ticks (approximately).
pub(crate) fn duration_to_ticks(d: Duration) -> u64 {
    let probe = 1_000_000_000u64;
    let ns = clock().delta_as_nanos(0, probe).max(1);
    (d.as_nanos() * probe as u128 / ns as u128) as u64
}
