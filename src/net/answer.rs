//! Error answers: every error either server gives is JSON of one shape,
//! `{"accepted": 0, "error": "..."}`, whether a route, the connection
//! layer or hyper's own parser refused the request.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};

/// The most bytes of a client's input an error text quotes: an error may
/// quote what it refuses, and a client chooses what it sends.
pub(crate) const QUOTE_LIMIT: usize = 256;

/// `text` cut at [`QUOTE_LIMIT`] bytes (on a character boundary), with
/// `…` and the full length when cut.
pub(crate) fn quoted(text: &str) -> String {
    cut(text, QUOTE_LIMIT)
}

/// `text` cut at `limit` bytes (on a character boundary), with `…` and the
/// full length when cut.
pub(crate) fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// What `d` displays, cut at [`QUOTE_LIMIT`] bytes as [`quoted`] cuts: the
/// text past the limit is never formatted, however long `d`'s text is.
pub(crate) fn quoted_display(d: &dyn std::fmt::Display) -> String {
    /// Takes text until it holds more than the limit, then refuses more
    /// (which ends the formatting).
    struct Upto(String);
    impl std::fmt::Write for Upto {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = (QUOTE_LIMIT + 4).saturating_sub(self.0.len());
            let mut end = room.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            if end < s.len() {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut text = Upto(String::new());
    let whole = std::fmt::write(&mut text, format_args!("{d}")).is_ok();
    if whole {
        return quoted(&text.0);
    }
    let mut end = QUOTE_LIMIT;
    while !text.0.is_char_boundary(end) {
        end -= 1;
    }
    text.0.truncate(end);
    text.0.push('…');
    text.0
}

/// The body of an error answer.
pub(crate) fn error_body(error: &str) -> String {
    serde_json::json!({ "accepted": 0, "error": quoted(error) }).to_string()
}

/// An error answer: `status` and the JSON body.
pub(crate) fn error(status: StatusCode, error: impl std::fmt::Display) -> Response<Body> {
    let mut response = Response::new(Body::from(error_body(&error.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error answer with `Retry-After`: nothing was taken, and trying again
/// later may work.
pub(crate) fn unavailable(error_text: impl std::fmt::Display, retry_after_secs: u64) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, error_text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// What an error status means, for answers that carry no text of their
/// own (hyper's parse errors, axum's 404 and 405).
pub(crate) fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "malformed request: not a valid HTTP/1.1 request",
        403 => "forbidden",
        404 => "no such route",
        405 => "method not allowed on this route",
        408 => "the request's head did not arrive in time",
        414 => "the request's URI is too long",
        421 => "this server does not serve that host name",
        431 => "the request's header fields are too large",
        505 => "HTTP version not supported",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}

/// A whole HTTP/1.1 error answer as bytes, for the connection layer to
/// write itself (the connection is closed after it).
pub(crate) fn raw(status: StatusCode, error_text: &str, retry_after_secs: Option<u64>) -> Vec<u8> {
    let body = error_body(error_text);
    let retry = retry_after_secs.map_or(String::new(), |s| format!("retry-after: {s}\r\n"));
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{retry}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Makes `response` an answer of the one shape: an error with no JSON body
/// (axum's own 404 and 405, a route's plain text) gets one; any other
/// answer without a content type is marked as bytes. Every answer then
/// carries a content type, which is how the connection layer tells
/// hyper's own answers from the routes' (see `activity::canned_status`).
pub(crate) fn one_shape(response: Response<Body>) -> Response<Body> {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !json {
        let mut answer = error(status, reason(status));
        for (name, value) in response.headers() {
            if name == header::RETRY_AFTER || name == header::ALLOW {
                answer.headers_mut().insert(name.clone(), value.clone());
            }
        }
        return answer;
    }
    let mut response = response;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_cut_on_a_character_boundary_with_the_full_length() {
        assert_eq!(quoted("short"), "short");
        let long = "é".repeat(200);
        let cut = quoted(&long);
        assert_eq!(cut, format!("{}… (400 bytes in all)", "é".repeat(128)));
    }

    #[test]
    fn a_long_display_is_cut_without_being_formatted_whole() {
        let long = "x".repeat(10 * QUOTE_LIMIT);
        assert_eq!(quoted_display(&long), format!("{}…", "x".repeat(QUOTE_LIMIT)));
        assert_eq!(quoted_display(&"short"), "short");
    }

    #[test]
    fn raw_answers_are_whole_json_answers() {
        let bytes = raw(StatusCode::REQUEST_TIMEOUT, "late", Some(2));
        let text = String::from_utf8(bytes).unwrap();
        let body = r#"{"accepted":0,"error":"late"}"#;
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nretry-after: 2\r\n\
                 connection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        );
    }
}
