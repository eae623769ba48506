//! What the server knows of a stream: its length and groups (for the
//! snapshot and the distributed table), the safe trim point, and clearing
//! an edge's keys for a new job.

use std::time::Duration;

use redis::Value;

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::link::{int, pairs, text, Link};
use super::stats::{Counters, GroupInfo, StreamInfo};

/// A stream id as its two numbers, to compare.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn groups(link: &mut Link, stream: &str) -> Result<Vec<GroupInfo>, RemoteError> {
    let reply: Value = link.call("XINFO GROUPS", |c| {
        match redis::cmd("XINFO").arg("GROUPS").arg(stream).query::<Value>(c) {
            // No such key: no groups yet.
            Err(e) if e.code() == Some("ERR") && e.to_string().contains("no such key") => Ok(Value::Array(vec![])),
            other => other,
        }
    })?;
    let Value::Array(rows) = &reply else {
        return Err(link.bad_reply("XINFO GROUPS", &reply));
    };
    Ok(rows
        .iter()
        .map(|row| {
            let mut g = GroupInfo::default();
            for (k, v) in pairs(row) {
                match k.as_str() {
                    "name" => g.name = text(v).unwrap_or_default(),
                    "consumers" => g.consumers = int(v).unwrap_or(0) as u64,
                    "pending" => g.pending = int(v).unwrap_or(0) as u64,
                    "lag" => g.lag = int(v).map(|n| n as u64),
                    "last-delivered-id" => g.last_delivered = text(v).unwrap_or_default(),
                    _ => {}
                }
            }
            g
        })
        .collect())
}

/// The oldest id any group still needs: below it, every group has read and
/// acked every entry. `None` when the stream has no group.
pub(crate) fn trim_point(link: &mut Link, stream: &str) -> Result<Option<String>, RemoteError> {
    let groups = groups(link, stream)?;
    let mut lowest: Option<(u64, u64)> = None;
    for g in &groups {
        let needed = if g.pending > 0 {
            let reply: Value = link.call("XPENDING", |c| redis::cmd("XPENDING").arg(stream).arg(&g.name).query(c))?;
            let smallest = match &reply {
                Value::Array(parts) => parts.get(1).and_then(text).and_then(|id| parse_id(&id)),
                _ => None,
            };
            match smallest {
                Some(id) => id,
                // The group's pending list emptied since XINFO: keep all.
                None => return Ok(None),
            }
        } else {
            let Some((ms, seq)) = parse_id(&g.last_delivered) else {
                return Ok(None);
            };
            if seq == u64::MAX {
                (ms + 1, 0)
            } else {
                (ms, seq + 1)
            }
        };
        lowest = Some(lowest.map_or(needed, |l| l.min(needed)));
    }
    Ok(lowest.map(|(ms, seq)| format!("{ms}-{seq}")))
}

/// The server's view of the edge's stream: length and groups.
pub fn stream_info(cfg: &EdgeConfig) -> Result<StreamInfo, RemoteError> {
    let mut link = Link::open(
        &cfg.url,
        cfg.reconnect_deadline,
        Duration::from_secs(10),
        Default::default(),
    )?;
    read_info(&mut link, &cfg.stream)
}

pub(crate) fn read_info(link: &mut Link, stream: &str) -> Result<StreamInfo, RemoteError> {
    let length: i64 = link.call("XLEN", |c| redis::cmd("XLEN").arg(stream).query(c))?;
    Ok(StreamInfo {
        stream: stream.to_string(),
        length: length as u64,
        groups: groups(link, stream)?,
    })
}

/// Deletes the edge's stream and its keys (`:dead`, `:end`, `:draining`,
/// `:errors`),
/// to start a job again from nothing. Never while the job runs.
pub fn reset(cfg: &EdgeConfig) -> Result<(), RemoteError> {
    let mut link = Link::open(
        &cfg.url,
        cfg.reconnect_deadline,
        Duration::from_secs(10),
        std::sync::Arc::new(Counters::default()),
    )?;
    let keys = [
        cfg.stream.clone(),
        cfg.dead_letter_stream(),
        cfg.end_key(),
        cfg.draining_key(),
        cfg.errors_key(),
    ];
    link.call("DEL", |c| redis::cmd("DEL").arg(&keys[..]).query::<i64>(c))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_compare_as_numbers() {
        assert!(super::parse_id("10-0") > super::parse_id("9-99"));
        assert_eq!(super::parse_id("5"), Some((5, 0)));
        assert_eq!(super::parse_id("x-1"), None);
    }
}
