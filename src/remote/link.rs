//! One connection to the server that survives the server's restarts: a
//! command that fails on a connection error (refused, reset, timed out, or
//! the server still loading its AOF) is retried on a new connection, with
//! exponential backoff from 5 ms to 1 s, until the edge's reconnect deadline
//! has passed since the first failure; then the run fails with
//! [`RemoteError::Unreachable`] naming the address and the last error.
//!
//! A retried command may have been applied before the connection broke:
//! every command sent through a `Link` must be safe to repeat (XACK, XTRIM
//! and reads are; a repeated XADD adds an entry twice with the same origin
//! id, which is why every entry carries one, see `docs/GUARANTEES.md`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, Value};

use super::error::RemoteError;
use super::stats::Counters;

pub(crate) struct Link {
    client: redis::Client,
    conn: Option<Connection>,
    addr: String,
    deadline: Duration,
    read_timeout: Duration,
    counters: Arc<Counters>,
}

/// Connection errors are retried; anything else is the command's failure.
fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("LOADING") | Some("TRYAGAIN") | Some("MASTERDOWN"))
}

impl Link {
    pub(crate) fn open(
        url: &str,
        deadline: Duration,
        read_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Result<Self, RemoteError> {
        let client = redis::Client::open(url).map_err(|source| RemoteError::Url {
            url: super::config::redact(url),
            source,
        })?;
        let addr = client.get_connection_info().addr().to_string();
        let mut link = Link {
            client,
            conn: None,
            addr,
            deadline,
            read_timeout,
            counters,
        };
        link.call("PING", |c| redis::cmd("PING").query::<Value>(c))?;
        Ok(link)
    }

    fn connect(&mut self) -> Result<&mut Connection, RedisError> {
        if self.conn.is_none() {
            let conn = self.client.get_connection_with_timeout(Duration::from_secs(5))?;
            conn.set_read_timeout(Some(self.read_timeout))?;
            conn.set_write_timeout(Some(self.read_timeout))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs `f` on a live connection, reconnecting on connection errors
    /// until the deadline.
    pub(crate) fn call<R>(
        &mut self,
        command: &'static str,
        mut f: impl FnMut(&mut Connection) -> Result<R, RedisError>,
    ) -> Result<R, RemoteError> {
        let mut first_failure: Option<Instant> = None;
        let mut backoff = Duration::from_millis(5);
        loop {
            let result = self.connect().and_then(&mut f);
            match result {
                Ok(r) => {
                    if first_failure.is_some() {
                        self.counters.add(&self.counters.reconnects, 1);
                        tracing::info!(addr = %self.addr, "redis connection back");
                    }
                    return Ok(r);
                }
                Err(e) if transient(&e) => {
                    self.conn = None;
                    self.counters.add(&self.counters.connection_errors, 1);
                    let text = e.to_string();
                    if let Ok(mut last) = self.counters.last_error.lock() {
                        *last = Some(text.clone());
                    }
                    let since = *first_failure.get_or_insert_with(Instant::now);
                    let waited = since.elapsed();
                    if waited >= self.deadline {
                        return Err(RemoteError::Unreachable {
                            addr: self.addr.clone(),
                            waited,
                            deadline: self.deadline,
                            last: text,
                        });
                    }
                    tracing::warn!(addr = %self.addr, command, error = %text, "redis connection error; reconnecting in {backoff:?}");
                    std::thread::sleep(backoff.min(self.deadline.saturating_sub(waited)));
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(source) => {
                    return Err(RemoteError::Command {
                        addr: self.addr.clone(),
                        command,
                        source,
                    })
                }
            }
        }
    }

    /// A reply that did not have the expected shape.
    pub(crate) fn bad_reply(&self, command: &'static str, reply: &Value) -> RemoteError {
        let mut text = format!("{reply:?}");
        text.truncate(200);
        RemoteError::Reply {
            addr: self.addr.clone(),
            command,
            reply: text,
        }
    }
}

/// Creates `group` on `stream` at the stream's start (MKSTREAM), so that no
/// entry added before any consumer joined is skipped; an existing group is
/// kept as it is.
pub(crate) fn ensure_group(link: &mut Link, stream: &str, group: &str) -> Result<(), RemoteError> {
    let created = link.call("XGROUP CREATE", |c| {
        match redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query::<Value>(c)
        {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(Value::Okay),
            other => other,
        }
    });
    created.map(|_| ())
}

/// The text of a bulk or simple string reply.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// An integer reply (or a string holding one).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The field/value pairs of a map reply (RESP2 arrays or RESP3 maps).
pub(crate) fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => text(k).map(|k| (k, v)),
                _ => None,
            })
            .collect(),
        Value::Map(items) => items.iter().filter_map(|(k, v)| text(k).map(|k| (k, v))).collect(),
        _ => Vec::new(),
    }
}
