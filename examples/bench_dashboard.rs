//! What the live page costs a run: the same CPU-bound pipeline (2 workers
//! hashing, then a sum), reported every 100 ms, once with no page and once
//! serving the page to 10 clients that hold its event stream open and read
//! every update, alternated `ROUNDS` times in one process. Prints each
//! run's time and the ratio of the medians.
//!
//! `cargo run --release --features web --example bench_dashboard [-- ITEMS ROUNDS [browsers|blank [MS]]]`
//! (defaults: 3,000,000 items, 5 rounds). With `browsers`, the 10 viewers
//! are real browsers instead: 10 headless chromium processes (Debian's
//! `chromium`) with the page open, drawing every update, on the same
//! machine as the pipeline; `MS` sets the report interval (100 ms unless
//! given; the debugger's default is 5 s). `blank` opens the same browsers on
//! `about:blank`: what 10 browsers cost this machine without the page.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use paipa::report::WebReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..200 {
        h = std::hint::black_box(
            h.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    h
}

fn run(items: u64, debugger: Debugger) -> Duration {
    let started = Instant::now();
    let summary = Pipeline::new()
        .debug(debugger)
        .source(0..items)
        .then(Stage::map("hash", work).workers(2))
        .expect("a valid stage")
        .run_with(|out| out.fold(0u64, u64::wrapping_add))
        .expect("the run");
    assert_eq!(summary.1.items, items);
    started.elapsed()
}

/// A client that holds the event stream open and reads every update.
fn viewer(addr: std::net::SocketAddr) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("request");
        let mut updates = 0;
        for line in BufReader::new(s).lines() {
            match line {
                Ok(l) if l.starts_with("data:") => updates += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        updates
    })
}

/// A headless chromium with the page open, killed (its whole process
/// group) when dropped.
struct Browser {
    child: std::process::Child,
    profile: std::path::PathBuf,
}

impl Browser {
    fn open(url: &str, n: usize) -> std::io::Result<Browser> {
        use std::os::unix::process::CommandExt;
        let profile = std::env::temp_dir().join(format!("paipa-bench-chromium-{}-{n}", std::process::id()));
        let child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-sync",
            ])
            .args(["--disable-background-networking", "--disable-component-update"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(Browser { child, profile })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group chromium leads.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let items: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mode = args.next();
    // `blank`: the same 10 browsers on about:blank, for the cost of the
    // browsers themselves on this machine, without the page.
    let blank = mode.as_deref() == Some("blank");
    let browsers = blank || mode.as_deref() == Some("browsers");
    let every = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(100));
    let who = match (browsers, blank) {
        (true, true) => "10 browsers on about:blank",
        (true, false) => "10 browsers",
        _ => "10 viewers",
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let plain = run(items, Debugger::silent().interval(every));
        let web = WebReporter::bind("127.0.0.1:0")?;
        let (mut viewers, mut open) = (Vec::new(), Vec::new());
        for n in 0..10 {
            if browsers {
                let url = if blank { "about:blank".to_string() } else { web.url() };
                open.push(Browser::open(&url, n)?);
            } else {
                viewers.push(viewer(web.addr()));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !blank && web.viewers() < 10 {
            if Instant::now() > deadline {
                return Err(format!("only {} of 10 pages connected within 120 s", web.viewers()).into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if browsers {
            // Let the browsers finish starting (first paint) before timing.
            std::thread::sleep(Duration::from_secs(5));
        }
        let served = run(items, Debugger::silent().interval(every).reporter(web.clone()));
        drop(open);
        drop(web); // the last clone: the server stops, the streams end
        let updates: u64 = viewers.into_iter().map(|v| v.join().unwrap_or(0)).sum();
        println!(
            "round {round}: no page {plain:.2?}, page with {who} {served:.2?} ({updates} updates read by clients)"
        );
        without.push(plain);
        with.push(served);
    }
    let (a, b) = (median(without), median(with));
    println!(
        "median: no page {a:.2?}, {who} {b:.2?}: {:.3}x (reports every {every:?})",
        b.as_secs_f64() / a.as_secs_f64()
    );
    Ok(())
}
