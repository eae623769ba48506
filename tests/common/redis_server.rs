//! A Redis server for the tests: the one CI started (`PAIPA_REDIS_URL`), or
//! one of our own on a free port in a temp dir (killed when dropped). Only
//! when neither exists and `PAIPA_REQUIRE_REDIS` is unset may a test skip.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the test may use; stopped on drop if the test started it.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    port: u16,
    dir: Option<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn skip_or_fail(why: &str) -> Option<Server> {
    if std::env::var_os("PAIPA_REQUIRE_REDIS").is_some() {
        panic!("PAIPA_REQUIRE_REDIS is set but {why}");
    }
    eprintln!("skipped: no redis-server ({why})");
    None
}

/// The shared server, or our own.
pub fn server() -> Option<Server> {
    if let Ok(url) = std::env::var("PAIPA_REDIS_URL") {
        return Some(Server {
            child: None,
            url,
            port: 0,
            dir: None,
        });
    }
    own_server()
}

/// A server of our own (for tests that restart it).
pub fn own_server() -> Option<Server> {
    let dir = std::env::temp_dir().join(format!("paipa-redis-{}-{}", std::process::id(), unique("")));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut s = Server {
        child: None,
        url: format!("redis://127.0.0.1:{port}/"),
        port,
        dir: Some(dir),
    };
    match s.start() {
        Ok(()) => Some(s),
        Err(e) => skip_or_fail(&e),
    }
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Server {
    fn start(&mut self) -> Result<(), String> {
        let dir = self.dir.as_ref().ok_or("not our server")?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(dir)
            .args([
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A connection for the test's own checks.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Stops the server (SHUTDOWN: the AOF is flushed) and starts it again
    /// on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Stops the server (SHUTDOWN: the AOF is flushed).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("our own server");
        let _ = redis::cmd("SHUTDOWN").query::<redis::Value>(&mut self.conn());
        child.wait().unwrap();
    }

    /// Starts a stopped server again on the same port and directory.
    pub fn start_again(&mut self) {
        self.start().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
