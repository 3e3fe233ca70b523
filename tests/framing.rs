//! Request framing as the engine sees it, against a fake engine that logs
//! the exact bytes it receives: chunked request bodies are re-encoded
//! canonically (never passed through), framing the engine's parser could
//! read differently is refused, and HTTP/1.0 clients get responses they
//! can read. Every test runs on both drivers.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{find, lossy, recording_handler, wait_for, Driver, EngineConn, FakeEngine};

/// One engine connection's bytes: the first request head as received and
/// everything after it until the proxy closes (or 5 s of silence).
type Log = Arc<Mutex<Vec<Vec<u8>>>>;

fn logging_engine(log: Log) -> FakeEngine {
    FakeEngine::start(move |conn: &mut EngineConn| {
        let Some(request) = conn.read_head() else {
            return;
        };
        let mut raw = request.raw_head;
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        while let Ok(bytes) = conn.read_some() {
            if bytes.is_empty() {
                break;
            }
            raw.extend_from_slice(&bytes);
        }
        log.lock().unwrap().push(raw);
    })
}

/// The penetration test's payload: a bare LF after the last chunk, which
/// Go's textproto takes as the end of the trailer section, followed by a
/// second request.
fn smuggling_payload() -> Vec<u8> {
    let smuggled = r#"{"Image":"local/busybox","HostConfig":{"Privileged":true}}"#;
    format!(
        "POST /v1.41/containers/nonexistent/start HTTP/1.1\r\nHost: x\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\n\
         POST /v1.41/containers/create?name=smuggled HTTP/1.1\r\nHost: d\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\n{smuggled}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes()
}

fn bare_lf_in_trailers_is_refused_and_nothing_is_smuggled(driver: Driver) {
    let log = Log::default();
    let engine = logging_engine(log.clone());
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(&smuggling_payload());
    let response = client.read_response_for("POST");
    let message = response.assert_json_error(400);
    assert!(message.contains("bare LF"), "{message}");
    assert_eq!(response.header("connection"), Some("close"));
    drop(client);

    let logged = wait_for(Duration::from_secs(10), || {
        let log = log.lock().unwrap();
        (!log.is_empty()).then(|| log.clone())
    })
    .expect("the engine connection was never closed");
    assert_eq!(logged.len(), 1, "{logged:?}");
    let raw = &logged[0];
    let head_end = find(raw, b"\r\n\r\n").expect("a request head") + 4;
    assert!(raw.starts_with(b"POST /v1.41/containers/nonexistent/start HTTP/1.1\r\n"));
    assert!(
        raw[head_end..].is_empty(),
        "bytes after the head reached the engine: {:?}",
        lossy(&raw[head_end..])
    );
    assert!(find(raw, b"smuggled").is_none());
}

fn bare_lf_in_trailers_is_refused_on_the_inspected_path(driver: Driver) {
    let log = Log::default();
    let engine = logging_engine(log.clone());
    let proxy = engine
        .options()
        .driver(driver)
        .rules(
            "rules:\n  - name: deny-privileged\n    action: deny\n    conditions:\n\
             \x20     - {field: body.HostConfig.Privileged, operator: equals, value: true}\n",
        )
        .start();
    let mut client = proxy.connect();
    client.send(&smuggling_payload());
    let response = client.read_response_for("POST");
    let message = response.assert_json_error(400);
    assert!(message.contains("bare LF"), "{message}");
    drop(client);
    // The body is read whole before anything is sent: the engine never
    // gets a connection with a request on it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
}

/// Checks that `raw` (what followed a request head) is a canonical chunked
/// body: lower-case hex sizes without extensions, CRLF after each chunk,
/// `0\r\n\r\n` at the end and no trailers. Returns the data and the bytes
/// after the body.
fn parse_canonical(raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&raw[at..], b"\r\n").expect("a chunk size line");
        let line = &raw[at..line_end];
        assert!(
            !line.is_empty()
                && line.len() <= 16
                && line.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && (line == b"0" || line[0] != b'0'),
            "not a canonical chunk size line: {:?}",
            lossy(line)
        );
        let size = usize::from_str_radix(std::str::from_utf8(line).unwrap(), 16).unwrap();
        at = line_end + 2;
        if size == 0 {
            assert_eq!(&raw[at..at + 2], b"\r\n", "trailers reached the engine");
            return (data, raw[at + 2..].to_vec());
        }
        data.extend_from_slice(&raw[at..at + size]);
        assert_eq!(&raw[at + size..at + size + 2], b"\r\n");
        at += size + 2;
    }
}

/// Engine that answers every request, logging each head and the raw bytes
/// of its chunked body.
fn chunked_logging_engine(log: Log) -> FakeEngine {
    FakeEngine::start(move |conn: &mut EngineConn| {
        while let Some(request) = conn.read_head() {
            let mut raw = request.raw_head.clone();
            if request.header("transfer-encoding") == Some("chunked") {
                // Until the terminator; a proxy sending bytes past it would
                // show them at the end of `raw` (the client does not
                // pipeline here).
                let start = raw.len();
                loop {
                    let from = raw.len().saturating_sub(4).max(start);
                    match conn.read_some() {
                        Ok(bytes) if !bytes.is_empty() => raw.extend_from_slice(&bytes),
                        _ => return,
                    }
                    if find(&raw[from..], b"0\r\n\r\n").is_some() {
                        break;
                    }
                }
            }
            log.lock().unwrap().push(raw);
            conn.respond(200, "application/json", b"{}");
        }
    })
}

fn legit_chunked_body_is_re_encoded_canonically(driver: Driver) {
    let log = Log::default();
    let engine = chunked_logging_engine(log.clone());
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    let body = b"6;name=value\r\nhello \r\n5 ; x=\"y z\"\r\nworld\r\n\
                 0;last=1\r\nX-Checksum: abc\r\nX-Other:\t1\r\n\r\n";
    let mut request = b"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\n\
                        Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        .to_vec();
    request.extend_from_slice(body);
    client.send(&request);
    assert_eq!(client.read_response_for("POST").status, 200);
    // The connection is in step after the body.
    client.send(b"GET /v1.41/info HTTP/1.1\r\nHost: docker\r\n\r\n");
    assert_eq!(client.read_response().status, 200);

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    let head_end = find(&log[0], b"\r\n\r\n").unwrap() + 4;
    let head = lossy(&log[0][..head_end]);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("trailer"), "{head}");
    let (data, rest) = parse_canonical(&log[0][head_end..]);
    assert_eq!(data, b"hello world");
    assert!(rest.is_empty(), "{:?}", lossy(&rest));
    for dropped in ["name=value", "x=", "last=1", "X-Checksum", "X-Other"] {
        assert!(
            find(&log[0][head_end..], dropped.as_bytes()).is_none(),
            "{dropped} reached the engine"
        );
    }
    assert!(log[1].starts_with(b"GET /v1.41/info HTTP/1.1\r\n"));
}

fn large_chunked_upload_arrives_intact(driver: Driver) {
    let log = Log::default();
    let engine = chunked_logging_engine(log.clone());
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client
        .send(b"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n");
    // 4 MiB in chunks of varied sizes, like `docker build` sending its
    // context; the data never contains the terminator's bytes.
    let mut sent = Vec::new();
    let mut n = 0u32;
    while sent.len() < 4 << 20 {
        let size = 1 + (n as usize * 7919) % 70_000;
        let chunk: Vec<u8> = (0..size)
            .map(|i| b'a' + ((i + n as usize) % 26) as u8)
            .collect();
        let mut wire = format!("{size:X};n={n}\r\n").into_bytes();
        wire.extend_from_slice(&chunk);
        wire.extend_from_slice(b"\r\n");
        client.send(&wire);
        sent.extend_from_slice(&chunk);
        n += 1;
    }
    client.send(b"0\r\n\r\n");
    assert_eq!(client.read_response_for("POST").status, 200);
    let log = log.lock().unwrap().clone();
    let head_end = find(&log[0], b"\r\n\r\n").unwrap() + 4;
    let (data, rest) = parse_canonical(&log[0][head_end..]);
    assert!(rest.is_empty());
    assert_eq!(data.len(), sent.len());
    assert!(data == sent, "data changed on the way");
}

fn two_host_headers_are_refused(driver: Driver) {
    let store = Arc::new(Mutex::new(Vec::new()));
    let engine = FakeEngine::start(recording_handler(store.clone()));
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(b"GET /v1.41/info HTTP/1.1\r\nHost: docker\r\nHost: other\r\n\r\n");
    let response = client.read_response();
    let message = response.assert_json_error(400);
    assert!(message.contains("more than one Host header"), "{message}");
    assert!(client.closed_within(Duration::from_secs(5)).is_ok());
    assert!(store.lock().unwrap().is_empty());
    // One Host is fine.
    let mut client = proxy.connect();
    client.send(b"GET /v1.41/info HTTP/1.1\r\nHost: docker\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
}

/// Engine for the HTTP/1.0 tests: `/chunked` answers with a chunked body
/// (extensions and a trailer included), anything else with `hello`.
fn http10_engine() -> FakeEngine {
    FakeEngine::start(|conn: &mut EngineConn| {
        while let Some(request) = conn.read_request() {
            if request.target.ends_with("/chunked") {
                conn.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                      Transfer-Encoding: chunked\r\n\r\n\
                      4;a=b\r\nchun\r\n3\r\nked\r\n0\r\nX-T: 1\r\n\r\n",
                );
            } else {
                conn.respond(200, "text/plain", b"hello");
            }
        }
    })
}

fn http10_client_gets_chunked_response_decoded_and_closed(driver: Driver) {
    let engine = http10_engine();
    let proxy = engine.proxy(driver);
    for keep_alive in ["", "Connection: keep-alive\r\n"] {
        let mut client = proxy.connect();
        client.send(format!("GET /v1.41/chunked HTTP/1.0\r\n{keep_alive}\r\n").as_bytes());
        let head = client.read_head();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("transfer-encoding"), None, "{head:?}");
        assert_eq!(head.header("content-length"), None, "{head:?}");
        assert_eq!(head.header("connection"), Some("close"), "{head:?}");
        assert_eq!(lossy(&client.read_to_close()), "chunked");
    }
}

fn http10_keep_alive_is_announced(driver: Driver) {
    let engine = http10_engine();
    let proxy = engine
        .options()
        .driver(driver)
        .rules(
            "rules:\n  - name: deny-denied\n    action: deny\n    conditions:\n\
             \x20     - {field: path, operator: equals, value: /denied}\n",
        )
        .start();
    let mut client = proxy.connect();
    let get = |path: &str| format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    client.send(get("/v1.41/length").as_bytes());
    let response = client.read_response();
    assert_eq!(response.text(), "hello");
    assert_eq!(
        response.header("connection"),
        Some("keep-alive"),
        "{response:?}"
    );
    // The proxy's own answers say so too.
    client.send(get("/v1.41/denied").as_bytes());
    let response = client.read_response();
    response.assert_json_error(403);
    assert_eq!(
        response.header("connection"),
        Some("keep-alive"),
        "{response:?}"
    );
    // Still open; without keep-alive the connection closes after the answer.
    client.send(b"GET /v1.41/length HTTP/1.0\r\n\r\n");
    let response = client.read_response_for("GET");
    assert_eq!(response.text(), "hello");
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    assert!(client.closed_within(Duration::from_secs(5)).is_ok());
}

on_both_drivers! {
    bare_lf_smuggling => bare_lf_in_trailers_is_refused_and_nothing_is_smuggled;
    bare_lf_smuggling_inspected => bare_lf_in_trailers_is_refused_on_the_inspected_path;
    chunked_re_encoded => legit_chunked_body_is_re_encoded_canonically;
    chunked_large_upload => large_chunked_upload_arrives_intact;
    duplicate_host => two_host_headers_are_refused;
    http10_unchunked => http10_client_gets_chunked_response_decoded_and_closed;
    http10_keep_alive => http10_keep_alive_is_announced;
}
