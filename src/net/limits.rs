//! What a server lets one client take (connections and the time of each),
//! and the shutdown levels its connections obey.

use std::time::Duration;

use tokio::sync::watch;

/// The connection limits of a server.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Most connections open at once.
    pub(crate) max_connections: usize,
    /// How long a head may take to arrive.
    pub(crate) header_timeout: Duration,
    /// How long a connection may stay silent with no request handled.
    pub(crate) idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub(crate) shutdown_grace: Duration,
    /// The `Retry-After` of a `503`, in seconds.
    pub(crate) retry_after_secs: u64,
}

/// Shutdown levels a server's connections obey (a `watch` of them).
pub(crate) const SERVING: u8 = 0;
/// Stop accepting, close idle connections and half-sent heads at once, let
/// requests in hand finish until the grace deadline.
pub(crate) const STOPPING: u8 = 1;
/// Close every connection now.
pub(crate) const FORCED: u8 = 2;

/// Waits until the shutdown level reaches `level` (or the server is gone).
pub(crate) async fn reached(stop: &mut watch::Receiver<u8>, level: u8) {
    let _ = stop.wait_for(|l| *l >= level).await;
}

/// Raises the shutdown level to `level` (never lowers it).
pub(crate) fn raise(stop: &watch::Sender<u8>, level: u8) {
    stop.send_if_modified(|l| {
        let raise = *l < level;
        if raise {
            *l = level;
        }
        raise
    });
}

/// The longest wait any setting of a server may ask for: longer ones are
/// refused by its `validate()` (time arithmetic past it could overflow,
/// and no client or deployment means it).
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Checks a count setting: `Err` naming the field and the bounds unless
/// `min <= value <= max`.
pub(crate) fn check_count(
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), crate::error::ConfigError> {
    if value < min || value > max {
        return Err(crate::error::ConfigError::new(
            field,
            value,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// Checks a wait setting: `Err` naming the field and the bounds unless
/// `min <= value <= LONGEST_WAIT`.
pub(crate) fn check_wait(field: &'static str, value: Duration, min: Duration) -> Result<(), crate::error::ConfigError> {
    if value < min || value > LONGEST_WAIT {
        return Err(crate::error::ConfigError::new(
            field,
            format!("{value:?}"),
            format!("must be between {min:?} and {LONGEST_WAIT:?} (365 days)"),
        ));
    }
    Ok(())
}

/// Checks the names a server answers to besides addresses and
/// `localhost`: each a host name (letters, digits, `-`, `.`, `_`, an
/// optional port) or `"*"`.
pub(crate) fn check_hosts(field: &'static str, names: &[String]) -> Result<(), crate::error::ConfigError> {
    for name in names {
        let host = name.rsplit_once(':').map_or(name.as_str(), |(host, _)| host);
        let fine = name == "*"
            || (!host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
        if !fine {
            return Err(crate::error::ConfigError::new(
                field,
                format!("{name:?}"),
                "each must be a host name (with or without a port) or \"*\"",
            ));
        }
    }
    Ok(())
}
