//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it does not end within
/// `limit`: a deadlock fails instead of hanging CI.
pub fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            handle.join().expect("test thread");
            r
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic.
            match handle.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("sent nothing but ended"),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}: deadlock or hang")
        }
    }
}

/// Threads of this process, from /proc (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Threads of this process whose name starts with `prefix` (Linux keeps
/// the first 15 bytes of a thread's name).
#[allow(dead_code)]
pub fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

/// Threads named with `prefix` once they have all gone, or after 10 s:
/// a joined thread leaves `/proc/self/task` a moment after its join
/// returns.
#[allow(dead_code)]
pub fn threads_named_settle(prefix: &str) -> usize {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = threads_named(prefix);
        if n == 0 || std::time::Instant::now() >= until {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Keeps the injected panics out of the test output (other panics print).
pub fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.to_string().contains("injected panic") {
                default(info);
            }
        }));
    });
}

/// Waits (up to 2 s) for the process's thread count to come back to
/// `expected`, and returns the last count. A joined thread may still be
/// listed in /proc for a moment after `join` returns; a leaked one stays.
pub fn threads_settle_to(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = thread_count();
        if now == expected || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One HTTP/1.1 request over loopback: (status, headers, body).
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// Where a test's debugger keeps the reports it gets.
///
/// A run hands its final report to a thread of its own and returns once
/// that report is made, or after at most 2 s (a reporter that blocks must
/// not stretch the run). So [`Kept::lock`] first waits (up to a minute)
/// until a final report is there: on a loaded machine a test never reads
/// the slot before the final report has reached it.
#[derive(Clone, Default)]
pub struct Kept(std::sync::Arc<(std::sync::Mutex<Option<paipa::Snapshot>>, std::sync::Condvar)>);

impl Kept {
    fn put(&self, s: &paipa::Snapshot) {
        let (slot, cv) = &*self.0;
        *slot.lock().unwrap() = Some(s.clone());
        cv.notify_all();
    }

    /// The slot, once it holds a final report (or after a minute without
    /// one: then it holds what came, if anything).
    pub fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<paipa::Snapshot>>, std::convert::Infallible> {
        let (slot, cv) = &*self.0;
        let guard = slot.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, Duration::from_secs(60), |s| {
                !s.as_ref().is_some_and(|s| s.is_final)
            })
            .unwrap();
        Ok(guard)
    }
}

/// A debugger that keeps the last report it gets, and where to find it
/// (read it after the run: see [`Kept`]).
pub fn keep_last() -> (paipa::Debugger, Kept) {
    let kept = Kept::default();
    let keep = kept.clone();
    let debugger = paipa::Debugger::silent().reporter(move |s: &paipa::Snapshot| keep.put(s));
    (debugger, kept)
}

/// A debugger that keeps only the final report, and where to find it.
pub fn keep_final() -> (paipa::Debugger, Kept) {
    let kept = Kept::default();
    let keep = kept.clone();
    let debugger = paipa::Debugger::silent().reporter(move |s: &paipa::Snapshot| {
        if s.is_final {
            keep.put(s)
        }
    });
    (debugger, kept)
}

/// What the server's `store` stage received.
#[cfg(feature = "http")]
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<u64>>>;

/// An ingestion server on 127.0.0.1 (a free port) feeding a pipeline whose
/// `store` stage (2 workers) records every id it gets.
#[cfg(feature = "http")]
pub fn start(config: paipa::glue::ServerConfig) -> (paipa::glue::Server, Seen) {
    use paipa::threaded::{Pipeline, Stage};
    let seen: Seen = Default::default();
    let sink = seen.clone();
    let p = Pipeline::new()
        .then(Stage::map("store", move |id: u64| sink.lock().unwrap().push(id)).workers(2))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (paipa::glue::serve_pipeline(listener, p, config).unwrap(), seen)
}

/// This thread's own CPU clock (Linux: CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_clock() -> Duration {
    // SAFETY: a timespec is a plain C struct; all zeros is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is valid for writes for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Spins until this thread has used `cpu` more of its CPU time: each call
/// costs that much CPU however loaded the machine is (only its wall time
/// grows when the thread waits for a core).
pub fn burn_cpu(cpu: Duration, seed: u64) -> u64 {
    let until = thread_cpu_clock() + cpu;
    let mut acc = seed;
    while thread_cpu_clock() < until {
        for _ in 0..64 {
            acc = std::hint::black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    acc
}

/// Checks the books of every stage after the source (`count_in` equals
/// `count + skipped + failed + discarded`): `None` if they balance, else
/// the first stage that does not, with its row.
pub fn unbalanced(snapshot: &paipa::Snapshot) -> Option<String> {
    snapshot
        .stages
        .iter()
        .skip(1)
        .find(|s| s.count_in != s.count + s.skipped + s.failed + s.discarded)
        .map(|s| format!("books of stage {}: {s:?}", s.name))
}
