//! Which host names a server answers to, and which origins may read it.
//!
//! A page on another site can make a visitor's browser send requests to a
//! server on the visitor's machine or network. Two rules keep it out:
//! - **Host**: a request must name the server by a name it answers to. By
//!   default that is an IP address (any: a rebinding attack needs a name
//!   the attacker controls, never a bare address) or `localhost`; other
//!   names are allowed one by one. A page that rebinds its own name to
//!   127.0.0.1 sends its own name as `Host`, and is refused (`421`).
//! - **Origin**: a request that carries an `Origin` must come from the
//!   server's own origin (scheme `http`/`https` and the very `Host` the
//!   request names); anything else, `null` included, is refused (`403`).
//!   Browsers send `Origin` on every cross-site request that could write
//!   (`POST`) and on scripted reads.

use axum::http::{header, HeaderMap, StatusCode};

/// The host names a server answers to besides IP addresses and
/// `localhost`. `"*"` among them answers to every name (for a server
/// behind a proxy that checks names itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hosts {
    names: Vec<String>,
    any: bool,
}

impl Hosts {
    /// The default names and `extra` (matched case-insensitively; a port,
    /// if written, is ignored).
    pub(crate) fn new(extra: &[String]) -> Self {
        Hosts {
            names: extra.iter().map(|n| strip_port(n).to_ascii_lowercase()).collect(),
            any: extra.iter().any(|n| n == "*"),
        }
    }

    /// Whether a `Host` value (name or address, with or without a port)
    /// is one this server answers to.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let name = strip_port(host);
        if name.is_empty() {
            return false;
        }
        if self.any || name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Checks a request's `Host` and `Origin`: `Err` with the status and
    /// the reason if it must be refused.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let Some(host) = host.filter(|h| self.allows(h)) else {
            let named = host.map_or("no Host header".to_string(), |h| format!("Host {h:?}"));
            return Err((
                StatusCode::MISDIRECTED_REQUEST,
                format!("{named} is not a name this server answers to (an IP address, localhost, or an allowed host)"),
            ));
        };
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let same = origin.to_str().ok().is_some_and(|origin| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
        });
        if same {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                "requests from other origins are refused".to_string(),
            ))
        }
    }
}

/// A host without its port: `example.com:80` -> `example.com`,
/// `[::1]:80` -> `[::1]`, `::1` (a bare IPv6 address) unchanged.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), value.parse().unwrap());
        }
        h
    }

    #[test]
    fn addresses_and_localhost_pass_and_other_names_only_when_allowed() {
        let hosts = Hosts::new(&["Ingest.Internal:8080".to_string()]);
        for ok in [
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:80",
            "::1",
            "localhost:3000",
            "LOCALHOST",
            "ingest.internal:1",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "rebind.evil.example:8080",
            "evil.localhost",
            "127.0.0.1.evil.example",
            "",
            ":80",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        assert!(Hosts::new(&["*".to_string()]).allows("anything.example"));
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let hosts = Hosts::new(&[]);
        let host = (header::HOST, "127.0.0.1:8080");
        assert_eq!(hosts.check(&headers(std::slice::from_ref(&host))), Ok(()));
        assert_eq!(
            hosts.check(&headers(&[host.clone(), (header::ORIGIN, "http://127.0.0.1:8080")])),
            Ok(())
        );
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:9999",
            "ftp://127.0.0.1:8080",
        ] {
            let refused = hosts.check(&headers(&[host.clone(), (header::ORIGIN, origin)]));
            assert_eq!(refused.unwrap_err().0, StatusCode::FORBIDDEN, "{origin}");
        }
        let rebound = hosts.check(&headers(&[
            (header::HOST, "rebind.evil.example:8080"),
            (header::ORIGIN, "http://rebind.evil.example:8080"),
        ]));
        assert_eq!(
            rebound.unwrap_err(),
            (
                StatusCode::MISDIRECTED_REQUEST,
                "Host \"rebind.evil.example:8080\" is not a name this server answers to \
                 (an IP address, localhost, or an allowed host)"
                    .to_string()
            )
        );
        assert_eq!(
            hosts.check(&HeaderMap::new()).unwrap_err().0,
            StatusCode::MISDIRECTED_REQUEST
        );
    }
}
