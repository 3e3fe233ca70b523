//! Responses the proxy writes itself: refusals, errors and small bodies.
//!
//! Every refusal is JSON `{"message": "..."}` so that the docker CLI prints
//! `Error response from daemon: <message>`.

/// Reason phrase for the statuses the proxy produces itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A JSON error response. `close` adds `Connection: close`.
pub fn json_error(status: u16, message: &str, extra: &[(&str, String)], close: bool) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut out = Vec::with_capacity(160 + body.len());
    write_head(
        &mut out,
        status,
        "application/json",
        body.len(),
        extra,
        close,
    );
    out.extend_from_slice(body.as_bytes());
    out
}

/// A complete response with the given content type and body.
pub fn with_body(status: u16, content_type: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    write_head(&mut out, status, content_type, body.len(), &[], close);
    out.extend_from_slice(body);
    out
}

fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    length: usize,
    extra: &[(&str, String)],
    close: bool,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n",
        reason(status)
    );
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_json_message() {
        let bytes = json_error(
            403,
            "denied by rule \"x\"",
            &[("Retry-After", "3".into())],
            true,
        );
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains("Retry-After: 3"));
        assert!(head.contains("Connection: close"));
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["message"], "denied by rule \"x\"");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
