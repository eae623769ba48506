//! The live web page (feature `web`): its routes over loopback with a real
//! HTTP client, the ingestion server's `/dashboard`, and the page itself in
//! a real headless browser (Debian's chromium).
#![cfg(feature = "web")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paipa::report::WebReporter;
use paipa::{Outcome, Reporter, Snapshot, StageSnapshot};
use serde_json::Value;

/// A threaded-looking snapshot of `source -> parse -> store` with the given
/// counts, whose busiest stage (the bottleneck) is `slow`.
fn snapshot(slow: &str, counts: [u64; 3], elapsed_s: u64) -> Snapshot {
    let stages = ["source", "parse", "store"]
        .iter()
        .zip(counts)
        .map(|(name, count)| StageSnapshot {
            name: name.to_string(),
            workers: 1,
            count,
            count_in: count,
            busy: Duration::from_millis(if *name == slow { 900 } else { 100 } * elapsed_s),
            starved: Duration::from_millis(50 * elapsed_s),
            queue_depth: if *name == slow { 7 } else { 0 },
            ..StageSnapshot::default()
        })
        .collect();
    Snapshot {
        pipeline: "web test".into(),
        elapsed: Duration::from_secs(elapsed_s),
        stages,
        ..Snapshot::default()
    }
}

fn final_snapshot(slow: &str, counts: [u64; 3], elapsed_s: u64, outcome: Outcome) -> Snapshot {
    Snapshot {
        is_final: true,
        outcome: Some(outcome),
        ..snapshot(slow, counts, elapsed_s)
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build()
}

fn get_text(url: &str) -> String {
    agent().get(url).call().unwrap().into_string().unwrap()
}

fn get_json(url: &str) -> Value {
    serde_json::from_str(&get_text(url)).unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Reads the next `data:` line of an event stream.
fn next_data(reader: &mut impl BufRead) -> Value {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the event stream ended");
        if let Some(data) = line.strip_prefix("data:") {
            return serde_json::from_str(data.trim()).unwrap();
        }
    }
}

fn counts(v: &Value) -> Vec<u64> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect()
}

#[test]
fn the_page_the_snapshot_and_the_events_follow_the_reports() {
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    let base = web.url();
    assert!(web.addr().ip().is_loopback());
    let mut reporter = web.clone();

    assert_eq!(
        get_json(&format!("{base}snapshot")),
        Value::Null,
        "nothing reported yet"
    );
    let page = agent().get(&base).call().unwrap();
    assert!(page.content_type().starts_with("text/html"));
    let page = page.into_string().unwrap();
    assert!(
        page.contains("<script>") && page.contains("new EventSource"),
        "the script is inlined"
    );
    assert!(page.contains("<style>"), "the style is inlined");

    reporter.report(&snapshot("parse", [100, 80, 50], 1));
    let snap = get_json(&format!("{base}snapshot"));
    assert_eq!(names(&snap), ["source", "parse", "store"]);
    assert_eq!(snap["bottleneck"], "parse");

    let events = agent().get(&format!("{base}events")).call().unwrap();
    assert!(events.content_type().starts_with("text/event-stream"));
    let mut events = BufReader::new(events.into_reader());
    assert_eq!(
        counts(&next_data(&mut events)),
        [100, 80, 50],
        "the latest snapshot first"
    );
    assert_eq!(web.viewers(), 1);

    reporter.report(&snapshot("store", [200, 180, 150], 2));
    let next = next_data(&mut events);
    assert_eq!(counts(&next), [200, 180, 150]);
    assert_eq!(next["bottleneck"], "store");

    let failed = Outcome::Failed {
        stage: Some("store".into()),
        error: "disk full".into(),
    };
    reporter.report(&final_snapshot("store", [300, 250, 200], 3, failed));
    let last = next_data(&mut events);
    assert_eq!(last["final"], true);
    assert_eq!(last["outcome"]["kind"], "failed");
    assert_eq!(last["outcome"]["stage"], "store");
    assert_eq!(last["outcome"]["error"], "disk full");

    // The reporter the debugger held is gone; the clone keeps serving the
    // final state.
    drop(reporter);
    assert_eq!(get_json(&format!("{base}snapshot"))["outcome"]["kind"], "failed");
    drop(events);
    drop(web);
    assert!(
        ureq::get(&base).timeout(Duration::from_secs(2)).call().is_err(),
        "stopped when dropped"
    );
}

#[test]
fn other_origins_are_refused_and_no_cors_header_is_set() {
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    web.clone().report(&snapshot("parse", [1, 1, 1], 1));
    let base = web.url();
    let own = format!("http://{}", web.addr());
    for path in ["", "snapshot", "events"] {
        let url = format!("{base}{path}");
        match agent().get(&url).set("Origin", "http://evil.example").call() {
            Err(ureq::Error::Status(403, _)) => {}
            other => panic!("{url} from another origin: {other:?}"),
        }
        let ok = agent().get(&url).set("Origin", &own).call().unwrap();
        assert_eq!(ok.status(), 200, "{url} from its own origin");
        assert!(
            ok.headers_names().iter().all(|h| !h.starts_with("access-control-")),
            "{url} sets CORS headers: {:?}",
            ok.headers_names()
        );
    }
}

/// A run's snapshot at `elapsed_s` whose stages have been busy for the
/// given seconds so far.
fn cumulative(elapsed_s: u64, parse_s: u64, store_s: u64) -> Snapshot {
    let row = |name: &str, busy_s: u64| StageSnapshot {
        name: name.to_string(),
        workers: 1,
        busy: Duration::from_secs(busy_s),
        ..StageSnapshot::default()
    };
    Snapshot {
        pipeline: "web test".into(),
        elapsed: Duration::from_secs(elapsed_s),
        stages: vec![row("source", 0), row("parse", parse_s), row("store", store_s)],
        ..Snapshot::default()
    }
}

#[test]
fn the_page_names_the_bottleneck_of_the_last_ten_seconds() {
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    let mut reporter = web.clone();
    // parse was the slow one for 20 s; in the 10 s since, store is.
    reporter.report(&cumulative(20, 18, 2));
    let v = get_json(&format!("{}snapshot", web.url()));
    assert_eq!(
        (v["bottleneck"].as_str(), v["judged_over_s"].as_f64()),
        (Some("parse"), Some(20.0))
    );
    let now = cumulative(30, 19, 11);
    reporter.report(&now);
    let v = get_json(&format!("{}snapshot", web.url()));
    assert_eq!(v["bottleneck"], "store", "{v}");
    assert_eq!(v["judged_over_s"], 10.0);
    assert!(v["hint"].as_str().unwrap().contains("\"store\""), "{v}");
    // The counts stay the whole run's; judged on the whole run, parse.
    assert_eq!(v["stages"][1]["busy_s"], 19.0);
    assert_eq!(paipa::report::snapshot_json(&now)["bottleneck"], "parse");
    // The final report is judged on the whole run.
    reporter.report(&Snapshot {
        is_final: true,
        outcome: Some(Outcome::Finished),
        ..cumulative(31, 19, 12)
    });
    let v = get_json(&format!("{}snapshot", web.url()));
    assert_eq!(
        (v["bottleneck"].as_str(), v["judged_over_s"].as_f64()),
        (Some("parse"), Some(31.0))
    );
}

fn add_one(it: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
    it.map(|x| x + 1)
}

/// The page's snapshot once it is the final one: the final report is made
/// on a thread of its own, which the run waits for at most 2 s.
fn final_json(web: &WebReporter) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let snap = get_json(&format!("{}snapshot", web.url()));
        if snap["final"] == true || std::time::Instant::now() > deadline {
            return snap;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn both_pipeline_kinds_serve_their_final_outcome_after_the_run() {
    use paipa::threaded::{Pipeline, Stage};
    use paipa::Debugger;

    // An iterator pipeline that finishes.
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    let pipeline = paipa::iter::Pipeline::new(0..500u32)
        .debug(Debugger::silent().name("iter").reporter(web.clone()))
        .step(add_one);
    assert_eq!(paipa::iter::consume(pipeline), 500);
    let snap = final_json(&web);
    assert_eq!(snap["final"], true);
    assert_eq!(snap["outcome"]["kind"], "finished");
    assert_eq!(snap["stages"][0]["count"], 500);

    // A threaded pipeline that fails in one stage.
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    let result = Pipeline::new()
        .debug(Debugger::silent().name("threaded").reporter(web.clone()))
        .source(0..100u32)
        .then(Stage::try_map("check", |x: u32| {
            if x == 42 {
                Err(std::io::Error::other("bad entry 42"))
            } else {
                Ok(x)
            }
        }))
        .unwrap()
        .run();
    assert!(result.is_err());
    let snap = final_json(&web);
    assert_eq!(names(&snap)[..2], ["source", "check"]);
    assert_eq!(snap["outcome"]["kind"], "failed");
    assert_eq!(snap["outcome"]["stage"], "check");
    assert!(snap["outcome"]["error"].as_str().unwrap().contains("bad entry 42"));
}

#[cfg(feature = "http")]
#[test]
fn the_ingestion_server_mounts_the_page_at_dashboard() {
    use paipa::glue::{serve_pipeline, ServerConfig};
    use paipa::threaded::{Pipeline, Stage};

    let pipeline = Pipeline::new()
        .then(Stage::map("store", |v: serde_json::Value| v.to_string().len()))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = serve_pipeline(listener, pipeline, ServerConfig::default()).unwrap();
    let base = format!("http://{}", server.addr());

    let accepted = agent()
        .post(&format!("{base}/ingest"))
        .send_string("[1, 2, 3]")
        .unwrap();
    assert_eq!(accepted.status(), 200);

    let page = get_text(&format!("{base}/dashboard"));
    assert!(page.contains("new EventSource"));
    let snap = get_json(&format!("{base}/dashboard/snapshot"));
    assert!(names(&snap).contains(&"store".to_string()), "{snap}");
    assert_eq!(snap["server"]["acknowledged"], 3);

    let events = agent().get(&format!("{base}/dashboard/events")).call().unwrap();
    let mut events = BufReader::new(events.into_reader());
    let first = next_data(&mut events);
    assert!(names(&first).contains(&"store".to_string()));
    let _second = next_data(&mut events); // one a second

    match agent()
        .get(&format!("{base}/dashboard/snapshot"))
        .set("Origin", "http://evil.example")
        .call()
    {
        Err(ureq::Error::Status(403, _)) => {}
        other => panic!("another origin: {other:?}"),
    }

    // Shutdown ends the event stream rather than waiting out the grace.
    server.shutdown();
    let mut rest = Vec::new();
    let _ = events.read_to_end(&mut rest);
    let summary = server.wait().unwrap();
    assert_eq!(summary.items, 3);
}

/// Debian's chromium, if installed.
fn chromium() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("chromium"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.is_file())
}

/// Chromium, or `None` after printing a skip line; fails instead when
/// `PAIPA_REQUIRE_BROWSER=1` (CI).
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        if std::env::var("PAIPA_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("chromium is not installed and PAIPA_REQUIRE_BROWSER=1");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium; CI sets PAIPA_REQUIRE_BROWSER=1)");
    }
    found
}

/// A headless chromium with a fresh profile of its own, killed (and the
/// profile removed) when dropped, also when the test panics.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts `chromium` with the flags every browser test uses, then
    /// `args`; `tag` names the profile (tests run in parallel).
    fn start(chromium: &Path, tag: &str, args: &[&str], stdout: Stdio, stderr: Stdio) -> Browser {
        let profile = std::env::temp_dir().join(format!("paipa-chromium-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Browser { child, profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group, chromium's zygote and renderers too, so
        // that none writes into the profile once it is removed. The group
        // is chromium's own while its leader is not reaped.
        if let Ok(None) = self.child.try_wait() {
            let group = libc::pid_t::try_from(self.child.id()).unwrap();
            // SAFETY: kill(2) with a negative pid signals that process group.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        for _ in 0..20 {
            let _ = std::fs::remove_dir_all(&self.profile);
            if !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The opening tag of the element carrying `attr`, and the text after it up
/// to the next stage box.
fn stage_box<'a>(dom: &'a str, name: &str) -> (&'a str, &'a str) {
    let attr = format!("data-stage=\"{name}\"");
    let at = dom.find(&attr).unwrap_or_else(|| panic!("no box for stage {name}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    let rest = &dom[end..];
    let rest = &rest[..rest.find("data-stage=").unwrap_or(rest.len())];
    (&dom[start..=end], rest)
}

#[test]
fn a_real_browser_shows_every_stage_and_the_bottleneck() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    let mut reporter = web.clone();
    // Live: parse is the bottleneck.
    reporter.report(&snapshot("parse", [100, 80, 50], 1));

    let mut browser = Browser::start(
        &chromium,
        "dump",
        &["--virtual-time-budget=3000", "--dump-dom", &web.url()],
        Stdio::piped(),
        Stdio::null(),
    );
    let mut stdout = browser.child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut dom = String::new();
        stdout.read_to_string(&mut dom).map(|_| dom)
    });

    // Once the page listens (its event stream is open), the bottleneck
    // moves to store and the run ends: the page must show that final state
    // (it can only learn it from the stream), and then it closes the
    // stream, which lets the browser's virtual time run out and dump the DOM.
    let deadline = Instant::now() + Duration::from_secs(60);
    while web.viewers() == 0 {
        if let Some(status) = browser.child.try_wait().unwrap() {
            panic!("chromium exited before opening the event stream: {status}");
        }
        assert!(Instant::now() < deadline, "the page never opened its event stream");
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed = Outcome::Failed {
        stage: Some("store".into()),
        error: "disk full".into(),
    };
    reporter.report(&final_snapshot("store", [300, 250, 200], 3, failed));
    loop {
        if browser.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "chromium did not dump the page within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dom = reading.join().unwrap().unwrap();
    drop(browser);

    for (name, count) in [("source", 300), ("parse", 250), ("store", 200)] {
        let (tag, inside) = stage_box(&dom, name);
        let classes: Vec<&str> = tag
            .split("class=\"")
            .nth(1)
            .and_then(|c| c.split('"').next())
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert!(classes.contains(&"stage"), "{tag}");
        assert_eq!(classes.contains(&"bottleneck"), name == "store", "{name}: {tag}");
        assert!(
            inside.contains(&format!("data-count=\"{count}\"")),
            "{name} shows no count {count}: {inside}"
        );
    }
    assert_eq!(dom.matches("data-stage=").count(), 3, "one box per stage");
    assert!(dom.contains("queue 7"), "the queue depth on the edge into store");
    assert!(dom.contains("bottleneck: store"), "the verdict line");
    assert!(dom.contains("data-kind=\"failed\""), "the outcome");
    assert!(dom.contains("failed in stage \"store\": disk full"), "the outcome line");
    assert!(dom.contains("run over"), "the status");
}

/// A page's DevTools websocket: `Runtime.evaluate` and its answers.
struct DevTools {
    socket: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
}

impl DevTools {
    /// Opens `url` in a new tab of the browser whose DevTools listen on
    /// `host:port`, and attaches to that tab.
    fn open(devtools: &str, url: &str) -> DevTools {
        let target = agent()
            .put(&format!("http://{devtools}/json/new?{url}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let target: Value = serde_json::from_str(&target).unwrap();
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no websocket for the new tab: {target}"));
        let stream = TcpStream::connect(devtools).unwrap();
        // A browser that stops answering fails the read, not the test run.
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (socket, _) = tungstenite::client(ws, stream).unwrap();
        DevTools { socket, next_id: 0 }
    }

    /// Evaluates `expression` in the page and returns its value, or the
    /// protocol's error or the script's exception as `Err`.
    fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        self.socket.send(tungstenite::Message::text(call.to_string())).unwrap();
        loop {
            let message = self.socket.read().unwrap();
            let Ok(text) = message.to_text() else { continue };
            let answer: Value = serde_json::from_str(text).unwrap();
            if answer["id"] != id {
                continue; // an event
            }
            if !answer["error"].is_null() {
                return Err(answer["error"].to_string());
            }
            if !answer["result"]["exceptionDetails"].is_null() {
                return Err(answer["result"]["exceptionDetails"].to_string());
            }
            return Ok(answer["result"]["result"]["value"].clone());
        }
    }
}

/// One stage box as the page draws it.
#[derive(Debug, Clone, PartialEq)]
struct DrawnStage {
    name: String,
    count: u64,
    bottleneck: bool,
}

/// The stage boxes in the page's DOM, in order.
const READ_BOXES: &str = r#"[...document.querySelectorAll("[data-stage]")].map((box) => ({
    name: box.dataset.stage,
    count: Number(box.querySelector("[data-count]").dataset.count),
    bottleneck: box.classList.contains("bottleneck"),
}))"#;

fn drawn_stages(page: &mut DevTools) -> Result<Vec<DrawnStage>, String> {
    let boxes = page.evaluate(READ_BOXES)?;
    let boxes = boxes.as_array().ok_or_else(|| format!("not a list: {boxes}"))?;
    Ok(boxes
        .iter()
        .map(|b| DrawnStage {
            name: b["name"].as_str().unwrap().to_string(),
            count: b["count"].as_u64().unwrap(),
            bottleneck: b["bottleneck"].as_bool().unwrap(),
        })
        .collect())
}

/// Reads the page's stage boxes until `done` holds for them (a page still
/// loading, or one that has not drawn the next snapshot yet, is read again).
fn poll_until(page: &mut DevTools, what: &str, done: impl Fn(&[DrawnStage]) -> bool) -> Vec<DrawnStage> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Err("never read".to_string());
    while Instant::now() < deadline {
        last = drawn_stages(page);
        if let Ok(stages) = &last {
            if done(stages) {
                return stages.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the page never showed {what}; last read: {last:?}");
}

fn bottlenecks(stages: &[DrawnStage]) -> Vec<&str> {
    stages
        .iter()
        .filter(|s| s.bottleneck)
        .map(|s| s.name.as_str())
        .collect()
}

#[test]
fn a_real_browser_follows_live_updates_and_the_moving_bottleneck() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let web = WebReporter::bind("127.0.0.1:0").unwrap();
    let mut browser = Browser::start(
        &chromium,
        "live",
        &["--remote-debugging-port=0", "about:blank"],
        Stdio::null(),
        Stdio::piped(),
    );

    // Chromium names its DevTools endpoint on stderr; the rest of stderr is
    // drained so that the browser never blocks on a full pipe.
    let stderr = browser.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if let Some(ws) = line.strip_prefix("DevTools listening on ws://") {
                let _ = tx.send(ws.split('/').next().unwrap_or_default().to_string());
                break;
            }
        }
        lines.for_each(drop);
    });
    let devtools = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("chromium never printed its DevTools address");

    // The guard stays on this thread: a hang in `within` still kills
    // chromium when the test fails.
    let url = web.url();
    let viewers = web.clone();
    let (first, second) = common::within(Duration::from_secs(180), move || {
        let mut page = DevTools::open(&devtools, &url);
        // Updates reach the page live, over its event stream.
        let deadline = Instant::now() + Duration::from_secs(60);
        while viewers.viewers() == 0 {
            assert!(Instant::now() < deadline, "the page never opened its event stream");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut reporter = viewers.clone();
        reporter.report(&snapshot("parse", [100, 80, 50], 1));
        let first = poll_until(&mut page, "the first update", |s| {
            s.iter().map(|s| s.count).eq([100, 80, 50])
        });
        reporter.report(&snapshot("store", [200, 180, 150], 2));
        let second = poll_until(&mut page, "the second update", |s| {
            s.iter().map(|s| s.count).ne([100, 80, 50])
        });
        (first, second)
    });
    drop(browser);

    let names = |stages: &[DrawnStage]| stages.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), ["source", "parse", "store"], "every stage");
    assert_eq!(names(&second), ["source", "parse", "store"], "every stage");
    assert_eq!(bottlenecks(&first), ["parse"], "{first:?}");
    assert_eq!(bottlenecks(&second), ["store"], "the highlight moved: {second:?}");
    assert_eq!(second.iter().map(|s| s.count).collect::<Vec<_>>(), [200, 180, 150]);
    for (before, after) in first.iter().zip(&second) {
        assert!(
            after.count > before.count,
            "{} did not count up: {before:?} -> {after:?}",
            before.name
        );
    }
}
