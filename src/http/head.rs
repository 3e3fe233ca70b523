//! Request and response heads: parsing with `httparse`, framing decisions,
//! and the smuggling checks of SPEC section 5.
//!
//! A parsed head owns a copy of its bytes and keeps offsets into it, so a
//! head costs one allocation however many headers it has. The connection
//! code in `crate::proxy` decides what to do with it; this module only says
//! what the bytes mean.

use std::ops::Range;

use super::ParseError;

/// Most headers a request or response head may carry.
pub const MAX_HEADERS: usize = 128;

/// How the body after a head is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// One header: where its name lives in [`Spans::names`] and its value in
/// [`Spans::bytes`].
#[derive(Debug, Clone)]
struct HeaderSpan {
    name: Range<usize>,
    value: Range<usize>,
}

/// Bytes of a head plus where each part lives.
#[derive(Debug, Clone)]
struct Spans {
    bytes: Vec<u8>,
    /// The request method (empty for a response), then every header name:
    /// kept as text once, so that the many lookups per request never check
    /// UTF-8 again. httparse hands them over as `&str` already.
    names: String,
    headers: Vec<HeaderSpan>,
}

impl Spans {
    fn capture(buf: &[u8], len: usize, method: &str, headers: &[httparse::Header<'_>]) -> Spans {
        let base = buf.as_ptr() as usize;
        let mut names = String::with_capacity(method.len() + headers.len() * 16);
        names.push_str(method);
        let spans = headers
            .iter()
            .map(|h| {
                let name = names.len();
                names.push_str(h.name);
                let value = h.value.as_ptr() as usize - base;
                HeaderSpan {
                    name: name..names.len(),
                    value: value..value + h.value.len(),
                }
            })
            .collect();
        Spans {
            bytes: buf[..len].to_vec(),
            names,
            headers: spans,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|h| (&self.names[h.name.clone()], &self.bytes[h.value.clone()]))
    }

    fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |h| self.names[h.name.clone()].eq_ignore_ascii_case(name))
            .map(|h| &self.bytes[h.value.clone()])
    }
}

/// A parsed, checked request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    spans: Spans,
    method: Range<usize>,
    target: Range<usize>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub framing: Framing,
    /// The client asks to keep the connection open after this exchange.
    pub keep_alive: bool,
    /// `Connection: Upgrade` together with an `Upgrade` header.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    pub fn method(&self) -> &str {
        &self.spans.names[self.method.clone()]
    }

    /// The request-target exactly as the client sent it.
    pub fn target(&self) -> &[u8] {
        &self.spans.bytes[self.target.clone()]
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.spans.iter()
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.spans.get_all(name).next()
    }

    /// Bytes the head took on the wire.
    pub fn len(&self) -> usize {
        self.spans.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.bytes.is_empty()
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)` means more bytes
/// are needed.
pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Option<RequestHead>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                return Err(ParseError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(ParseError::Version),
        Err(e) => return Err(ParseError::Malformed(e.to_string())),
    };
    if len > max_head {
        return Err(ParseError::HeadTooLarge);
    }
    let method = request.method.unwrap_or("");
    let target = request.path.unwrap_or("");
    let base = buf.as_ptr() as usize;
    let target_at = target.as_ptr() as usize - base;
    let minor_version = request.version.unwrap_or(1);
    let spans = Spans::capture(buf, len, method, request.headers);

    // RFC 9112 section 3.2: a server MUST answer 400 to more than one Host
    // (the engine does too); which one the engine uses must not be a guess.
    if spans.get_all("host").nth(1).is_some() {
        return Err(ParseError::DuplicateHost);
    }
    let framing = request_framing(&spans)?;
    let connection = connection_tokens(&spans);
    let keep_alive = match minor_version {
        0 => connection.keep_alive,
        _ => !connection.close,
    };
    let upgrade = connection.upgrade && spans.get_all("upgrade").next().is_some();
    // RFC 9110 section 10.1.1: an HTTP/1.0 request's 100-continue is
    // ignored (such a client cannot read interim responses).
    let expect_continue = minor_version >= 1
        && spans
            .get_all("expect")
            .any(|v| trim(v).eq_ignore_ascii_case(b"100-continue"));

    Ok(Some(RequestHead {
        spans,
        method: 0..method.len(),
        target: target_at..target_at + target.len(),
        minor_version,
        framing,
        keep_alive,
        upgrade,
        expect_continue,
    }))
}

/// Request framing with the smuggling defences of SPEC section 5.
fn request_framing(spans: &Spans) -> Result<Framing, ParseError> {
    let mut codings = 0usize;
    let mut chunked = false;
    let mut seen_te = false;
    for value in spans.get_all("transfer-encoding") {
        seen_te = true;
        for coding in value.split(|&b| b == b',') {
            let coding = trim(coding);
            if coding.is_empty() {
                continue;
            }
            codings += 1;
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return Err(ParseError::UnsupportedTransferCoding(lossy(coding)));
            }
            chunked = true;
        }
    }
    let length = content_length(spans)?;
    // RFC 9112 section 6.3: a message with both is a smuggling vector; we
    // refuse it rather than pick one.
    if seen_te && length.is_some() {
        return Err(ParseError::LengthAndChunked);
    }
    if seen_te {
        if codings != 1 || !chunked {
            return Err(ParseError::UnsupportedTransferCoding(
                "chunked, chunked".into(),
            ));
        }
        return Ok(Framing::Chunked);
    }
    Ok(match length {
        Some(0) | None => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// All `Content-Length` values must agree and be plain digits.
fn content_length(spans: &Spans) -> Result<Option<u64>, ParseError> {
    let mut found: Option<u64> = None;
    for value in spans.get_all("content-length") {
        for part in value.split(|&b| b == b',') {
            let part = trim(part);
            let n = parse_decimal(part).ok_or_else(|| ParseError::BadContentLength(lossy(part)))?;
            match found {
                Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[derive(Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

fn connection_tokens(spans: &Spans) -> ConnectionTokens {
    let mut tokens = ConnectionTokens::default();
    for value in spans.get_all("connection") {
        for token in value.split(|&b| b == b',') {
            let token = trim(token);
            if token.eq_ignore_ascii_case(b"close") {
                tokens.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                tokens.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                tokens.upgrade = true;
            }
        }
    }
    tokens
}

/// Headers that describe one hop and are never copied to the next one.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Header names listed in `Connection` are hop-by-hop too (RFC 9110 7.6.1).
pub fn connection_listed<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> ConnectionListed<'a> {
    let mut listed = ConnectionListed::default();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("connection") {
            listed.values.push(value);
        }
    }
    listed
}

/// The values of a head's `Connection` headers, asked whether they list a
/// header name. Holds no copy: one `Connection` header, the usual case,
/// costs nothing to keep.
#[derive(Debug, Default)]
pub struct ConnectionListed<'a> {
    values: SmallList<'a>,
}

impl ConnectionListed<'_> {
    /// True when some `Connection` value lists `name` (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.values.iter().any(|value| {
            value
                .split(|&b| b == b',')
                .any(|token| trim(token).eq_ignore_ascii_case(name.as_bytes()))
        })
    }
}

/// A list of byte slices that stays inline while it holds one.
#[derive(Debug, Default)]
struct SmallList<'a> {
    first: Option<&'a [u8]>,
    rest: Vec<&'a [u8]>,
}

impl<'a> SmallList<'a> {
    fn push(&mut self, value: &'a [u8]) {
        if self.first.is_none() {
            self.first = Some(value);
        } else {
            self.rest.push(value);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.first.into_iter().chain(self.rest.iter().copied())
    }
}

/// A parsed response head from the engine.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    spans: Spans,
    pub status: u16,
    reason: Range<usize>,
    pub minor_version: u8,
    /// The engine will keep the connection open after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    pub fn reason(&self) -> &[u8] {
        &self.spans.bytes[self.reason.clone()]
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.spans.iter()
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.spans.get_all(name).next()
    }

    pub fn len(&self) -> usize {
        self.spans.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.bytes.is_empty()
    }

    /// The content type's media type, lower-cased, without parameters.
    pub fn media_type(&self) -> String {
        let value = self.header("content-type").unwrap_or(b"");
        let media = value.split(|&b| b == b';').next().unwrap_or(b"");
        lossy(trim(media)).to_ascii_lowercase()
    }

    /// Body framing of this response to a request with `method`.
    pub fn framing(&self, method: &str) -> Result<Framing, ParseError> {
        // RFC 9112 section 6.3, rules 1 and 2.
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Ok(Framing::Empty);
        }
        let mut chunked = false;
        for value in self.spans.get_all("transfer-encoding") {
            let last = value
                .split(|&b| b == b',')
                .map(trim)
                .rfind(|c| !c.is_empty());
            chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                return Ok(Framing::UntilClose);
            }
        }
        if chunked {
            return Ok(Framing::Chunked);
        }
        Ok(match content_length(&self.spans)? {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }
}

/// Parses a response head at the start of `buf`; `Ok(None)` means more
/// bytes are needed.
pub fn parse_response(buf: &[u8], max_head: usize) -> Result<Option<ResponseHead>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                return Err(ParseError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(ParseError::Malformed(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let minor_version = response.version.unwrap_or(1);
    let reason = response.reason.unwrap_or("");
    let reason_at = if reason.is_empty() {
        0
    } else {
        reason.as_ptr() as usize - buf.as_ptr() as usize
    };
    let spans = Spans::capture(buf, len, "", response.headers);
    let connection = connection_tokens(&spans);
    let keep_alive = match minor_version {
        0 => connection.keep_alive,
        _ => !connection.close,
    };
    Ok(Some(ResponseHead {
        spans,
        status,
        reason: reason_at..reason_at + reason.len(),
        minor_version,
        keep_alive,
    }))
}

pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<RequestHead>, ParseError> {
        parse_request(raw.as_bytes(), 64 * 1024)
    }

    #[test]
    fn parses_a_simple_get() {
        let head = parse("GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.method(), "GET");
        assert_eq!(head.target(), b"/v1.41/_ping");
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
        assert_eq!(head.header("HOST"), Some(&b"x"[..]));
    }

    #[test]
    fn waits_for_more_bytes_on_a_partial_head() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn refuses_length_and_chunked_together() {
        let raw = "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(raw).unwrap_err(), ParseError::LengthAndChunked);
    }

    #[test]
    fn refuses_conflicting_content_lengths() {
        let raw = "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(
            parse(raw).unwrap_err(),
            ParseError::ConflictingContentLength
        );
        let raw = "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n";
        assert_eq!(
            parse(raw).unwrap_err(),
            ParseError::ConflictingContentLength
        );
    }

    #[test]
    fn accepts_repeated_equal_content_lengths() {
        let raw = "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().framing, Framing::Length(5));
    }

    #[test]
    fn refuses_non_numeric_content_length() {
        for value in ["+5", "-1", "5x", "0x10", ""] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert!(
                matches!(parse(&raw), Err(ParseError::BadContentLength(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn refuses_transfer_codings_other_than_chunked() {
        for value in [
            "gzip",
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "chunked;x",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert!(
                matches!(parse(&raw), Err(ParseError::UnsupportedTransferCoding(_))),
                "{value}"
            );
        }
        let raw =
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse(raw),
            Err(ParseError::UnsupportedTransferCoding(_))
        ));
    }

    #[test]
    fn accepts_chunked_in_any_case() {
        let raw = "POST / HTTP/1.1\r\nTransfer-Encoding: ChUnKeD\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().framing, Framing::Chunked);
    }

    #[test]
    fn refuses_obsolete_line_folding() {
        let raw = "GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\nHost: x\r\n\r\n";
        assert!(matches!(parse(raw), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn refuses_other_http_versions() {
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            ParseError::Version
        );
    }

    #[test]
    fn refuses_heads_over_the_limit() {
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n", "a".repeat(200));
        assert_eq!(
            parse_request(long.as_bytes(), 100).unwrap_err(),
            ParseError::HeadTooLarge
        );
    }

    #[test]
    fn refuses_too_many_headers() {
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            raw.push_str(&format!("X-{i}: 1\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(parse(&raw).unwrap_err(), ParseError::TooManyHeaders);
    }

    #[test]
    fn reads_connection_semantics() {
        let head = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
        let head =
            parse("POST /exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(head.upgrade);
        let head = parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.expect_continue);
    }

    #[test]
    fn refuses_more_than_one_host() {
        for raw in [
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHOST: a\r\nX: 1\r\nHost:\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let error = parse(raw).unwrap_err();
            assert_eq!(error, ParseError::DuplicateHost, "{raw:?}");
            assert_eq!(error.status(), 400);
            assert!(error.to_string().contains("more than one Host header"));
        }
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
    }

    #[test]
    fn ignores_100_continue_from_http_1_0_clients() {
        let head = parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.expect_continue);
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let head = |raw: &str| parse_response(raw.as_bytes(), 65536).unwrap().unwrap();
        let ok = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(ok.framing("GET").unwrap(), Framing::Length(3));
        assert_eq!(ok.framing("HEAD").unwrap(), Framing::Empty);
        let chunked = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.framing("GET").unwrap(), Framing::Chunked);
        let close = head("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n");
        assert_eq!(close.framing("GET").unwrap(), Framing::UntilClose);
        let no_content = head("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(no_content.framing("GET").unwrap(), Framing::Empty);
        let not_modified = head("HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!(not_modified.framing("GET").unwrap(), Framing::Empty);
        assert_eq!(ok.reason(), b"OK");
    }

    #[test]
    fn lists_connection_named_headers() {
        let raw = "GET / HTTP/1.1\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\n\
                   Connection: x-other\r\n\r\n";
        let head = parse(raw).unwrap().unwrap();
        let listed = connection_listed(head.headers());
        for name in ["x-secret", "X-SECRET", "close", "X-Other"] {
            assert!(listed.contains(name), "{name}");
        }
        for name in ["x-secre", "secret", "host", ""] {
            assert!(!listed.contains(name), "{name}");
        }
    }
}
