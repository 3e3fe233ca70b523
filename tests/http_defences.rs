//! SPEC section 5: request targets and framing the proxy must refuse, and
//! the keep-alive behaviour it must get right, tested with exact bytes in
//! front of the real engine (and a recording fake engine where we need to
//! see what was forwarded).

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{ContainerGuard, Driver, FakeEngine, Proxy, Response};

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\n\r\n").into_bytes()
}

/// The proxy twice: in front of a fake engine that answers 200 to every
/// request (so a refusal can only come from the proxy, never from an engine
/// that happened to dislike the request too) and in front of the real
/// engine (skipped loudly without one, fatal under `CI`).
struct Sides {
    _fake_engine: FakeEngine,
    fake: Proxy,
    real: Option<Proxy>,
}

impl Sides {
    fn start() -> Sides {
        let fake_engine = FakeEngine::start(|conn| {
            while conn.read_request().is_some() {
                conn.respond(200, "application/json", b"{\"from\":\"fake engine\"}");
            }
        });
        let fake = fake_engine.proxy(Driver::Default);
        let real = support::require_engine("http_defences (real engine half)").then(Proxy::engine);
        Sides {
            _fake_engine: fake_engine,
            fake,
            real,
        }
    }

    /// Sends the request through both proxies; returns the fake side's
    /// response after checking the real side answered the same status.
    fn request(&self, bytes: &[u8]) -> Response {
        let response = self.fake.request(bytes);
        if let Some(real) = &self.real {
            let other = real.request(bytes);
            assert_eq!(
                other.status,
                response.status,
                "{:?}: real engine side answered {} {:?}, fake engine side {} {:?}",
                support::lossy(bytes),
                other.status,
                other.text(),
                response.status,
                response.text()
            );
        }
        response
    }
}

/// Sends each target on its own connection and expects 400 with a message.
fn assert_targets_refused(proxy: &Sides, targets: &[&[u8]]) {
    let mut wrong = Vec::new();
    for target in targets {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: docker\r\n\r\n");
        let response = proxy.request(&request);
        if response.status == 400 {
            response.assert_json_error(400);
        } else {
            wrong.push(format!(
                "{:?}: {} {:?}",
                support::lossy(target),
                response.status,
                response.text()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "targets not refused with 400:\n{}",
        wrong.join("\n")
    );
}

fn refused(proxy: &Sides, request: &[u8], status: u16) -> String {
    let response = proxy.request(request);
    assert_eq!(
        response.status,
        status,
        "request {:?} answered {} {:?}",
        support::lossy(request),
        response.status,
        response.text()
    );
    response.assert_json_error(status)
}

// === request targets ===

#[test]
fn refuses_targets_that_are_not_origin_form() {
    let proxy = Sides::start();
    for request in [
        &b"GET http://127.0.0.1/_ping HTTP/1.1\r\nHost: docker\r\n\r\n"[..],
        b"GET _ping HTTP/1.1\r\nHost: docker\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: docker\r\n\r\n",
        b"CONNECT 127.0.0.1:2375 HTTP/1.1\r\nHost: 127.0.0.1:2375\r\n\r\n",
    ] {
        refused(&proxy, request, 400);
    }
}

#[test]
fn refuses_control_characters_raw_and_encoded() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"/containers/%00/json",
            b"/containers/a%0Ab/json",
            b"/containers/a%0d%0aX-Injected:%201/json",
            b"/containers/a%09b/json",
            b"/containers/a%7Fb/json",
            b"/containers/a%1Fb/json",
            b"/containers/a\x01b/json",
            b"/containers/a\x7fb/json",
        ],
    );
}

#[test]
fn refuses_raw_nul_in_the_target() {
    let proxy = Sides::start();
    refused(
        &proxy,
        b"GET /containers/a\0b/json HTTP/1.1\r\nHost: docker\r\n\r\n",
        400,
    );
}

#[test]
fn refuses_backslashes_raw_and_encoded() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"/containers\\json",
            b"/containers/%5Cjson",
            b"/v1.41/containers%5cjson",
        ],
    );
}

#[test]
fn refuses_double_percent_encoding() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"/containers/%252e%252e/json",
            b"/%2541",
            b"/containers/json%25",
        ],
    );
}

#[test]
fn refuses_invalid_percent_escapes() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"/containers/%zz/json",
            b"/containers/%4",
            b"/containers/%",
            b"/con%G1",
        ],
    );
}

#[test]
fn refuses_empty_path_segments() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"//containers/json",
            b"/v1.41//containers/json",
            b"/containers//json",
            b"/containers/%2Fjson",
        ],
    );
}

#[test]
fn refuses_dot_segments_raw_and_encoded() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"/./containers/json",
            b"/containers/../_ping",
            b"/v1.41/containers/json/..",
            b"/containers/json/.",
            b"/%2e%2e/_ping",
            b"/%2E/containers/json",
            b"/.%2e/containers/json",
            b"/containers/%2e%2E/_ping",
        ],
    );
}

#[test]
fn refuses_a_second_version_prefix() {
    let proxy = Sides::start();
    assert_targets_refused(
        &proxy,
        &[
            b"/v1.41/v1.41/containers/json",
            b"/v1.41/v1.40/_ping",
            b"/v1.41/%761.24/info",
        ],
    );
}

// === bodies and framing ===

#[test]
fn refuses_form_urlencoded_bodies() {
    let proxy = Sides::start();
    for content_type in [
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-URLEncoded; charset=utf-8",
    ] {
        let request = format!(
            "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: {content_type}\r\n\
             Content-Length: 13\r\n\r\nImage=busybox"
        );
        refused(&proxy, request.as_bytes(), 400);
    }
}

#[test]
fn refuses_content_length_together_with_transfer_encoding() {
    let proxy = Sides::start();
    refused(
        &proxy,
        b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
          Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        400,
    );
    refused(
        &proxy,
        b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 5\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn refuses_differing_content_lengths() {
    let proxy = Sides::start();
    refused(
        &proxy,
        b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\
          Content-Length: 3\r\n\r\n{} ",
        400,
    );
    refused(
        &proxy,
        b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 2, 3\r\n\r\n{} ",
        400,
    );
}

#[test]
fn refuses_transfer_codings_other_than_chunked() {
    let proxy = Sides::start();
    for coding in [
        "gzip",
        "gzip, chunked",
        "identity",
        "chunked, chunked",
        "xchunked",
    ] {
        let request = format!(
            "POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: {coding}\r\n\
             \r\n\
             2\r\n{{}}\r\n0\r\n\r\n"
        );
        let response = proxy.request(request.as_bytes());
        assert!(
            response.status == 400 || response.status == 501,
            "Transfer-Encoding {coding:?} answered {} {:?}",
            response.status,
            response.text()
        );
        response.assert_json_error(response.status);
    }
}

#[test]
fn refuses_obsolete_line_folding() {
    let proxy = Sides::start();
    refused(
        &proxy,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Folded: first\r\n  continued\r\n\r\n",
        400,
    );
    refused(
        &proxy,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Folded: first\r\n\tcontinued\r\n\r\n",
        400,
    );
}

#[test]
fn refuses_malformed_chunk_sizes() {
    let proxy = Sides::start();
    let mut wrong = Vec::new();
    for size in ["zz", "-1", "0x2", "2 2", "+2", "fffffffffffffffffffff", ""] {
        let request = format!(
            "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{size}\r\n{{}}\r\n0\r\n\r\n"
        );
        // Collect every miss on both sides instead of stopping at the first.
        let sides = std::iter::once(("fake engine", &proxy.fake))
            .chain(proxy.real.as_ref().map(|real| ("real engine", real)));
        for (side, proxy) in sides {
            let response = proxy.request(request.as_bytes());
            if response.status == 400 {
                response.assert_json_error(400);
            } else {
                let text = response.text();
                wrong.push(format!(
                    "{side}: chunk size {size:?} answered {} {text:?}",
                    response.status
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "malformed chunk sizes not refused with 400:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn refuses_request_head_over_the_default_limit_with_431() {
    let proxy = Sides::start();
    let request = format!(
        "GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    refused(&proxy, request.as_bytes(), 431);
}

#[test]
fn refuses_http_2_request_line_with_505() {
    let proxy = Sides::start();
    refused(&proxy, b"GET /_ping HTTP/2.0\r\nHost: docker\r\n\r\n", 505);
}

// === what works ===

#[test]
fn version_prefix_forms_reach_the_same_endpoint() {
    require_engine!();
    let proxy = Proxy::engine();
    for endpoint in ["/containers/json?all=1", "/version"] {
        let bodies: Vec<serde_json::Value> = ["/v1.41", "", "/v1.41.0"]
            .iter()
            .map(|prefix| {
                let response = proxy.request(&get(&format!("{prefix}{endpoint}")));
                assert_eq!(
                    response.status,
                    200,
                    "{prefix}{endpoint}: {:?}",
                    response.text()
                );
                response.json()
            })
            .collect();
        assert_eq!(bodies[0], bodies[1], "{endpoint} without prefix differs");
        assert_eq!(bodies[0], bodies[2], "{endpoint} with /v1.41.0 differs");
    }
}

#[test]
fn expect_continue_upload_gets_100_before_the_body() {
    require_engine!();
    let proxy = Proxy::engine();
    let guard = ContainerGuard::new("expect");
    let body = format!(
        r#"{{"Image":"{}","Cmd":["true"],"Labels":{{"docker-api-proxy-test":"1"}}}}"#,
        support::IMAGE
    );
    let head = format!(
        "POST /v1.41/containers/create?name={} HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        guard.name,
        body.len()
    );
    let mut client = proxy.connect();
    client.send(head.as_bytes());
    // Like curl: wait for the interim response before sending the body.
    let interim = client.read_head();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue first: {interim:?}"
    );
    client.send(body.as_bytes());
    let response = client.read_response_for("POST");
    assert_eq!(
        response.status,
        201,
        "create answered {:?}",
        response.text()
    );
    assert!(response.json()["Id"]
        .as_str()
        .is_some_and(|id| id.len() == 64));
}

#[test]
fn keep_alive_connection_serves_several_requests_in_order() {
    require_engine!();
    let proxy = Proxy::engine();
    let mut client = proxy.connect();
    client.send(&get("/_ping"));
    assert_eq!(client.read_response().text(), "OK");
    client.send(&get("/v1.41/version"));
    assert_eq!(client.read_response().json()["ApiVersion"], "1.41");
    client.send(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
    let head = client.read_response_for("HEAD");
    assert_eq!((head.status, head.body.len()), (200, 0));
    client.send(&get("/v1.41/containers/json"));
    let list = client.read_response();
    assert_eq!(list.status, 200);
    assert!(list.json().is_array());
    client.send(&get("/v1.41/containers/%zz/json"));
    client.read_response().assert_json_error(400);
    client.send(&get("/_ping"));
    assert_eq!(
        client.read_response().text(),
        "OK",
        "connection unusable after a refusal"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    require_engine!();
    let proxy = Proxy::engine();
    let mut client = proxy.connect();
    let mut both = get("/_ping");
    both.extend(get("/v1.41/version"));
    both.extend(get("/_ping"));
    client.send(&both);
    assert_eq!(client.read_response().text(), "OK");
    assert_eq!(client.read_response().json()["ApiVersion"], "1.41");
    assert_eq!(client.read_response().text(), "OK");
}

#[test]
fn hop_by_hop_headers_and_credentials_are_not_forwarded() {
    let store = Arc::new(Mutex::new(Vec::new()));
    let engine = FakeEngine::start(support::recording_handler(store.clone()));
    let proxy = engine.proxy(Driver::Default);
    let response = proxy.request(
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\
          Authorization: Bearer not-for-the-engine\r\n\
          Proxy-Authorization: Basic eDp5\r\n\
          Connection: keep-alive, X-Hop-Listed\r\n\
          X-Hop-Listed: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          Proxy-Connection: keep-alive\r\nX-End-To-End: kept\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{:?}", response.text());
    let requests = store.lock().unwrap();
    // The proxy pings the engine on its own; look for our request.
    let request = requests
        .iter()
        .find(|r| r.target == "/v1.41/containers/json")
        .expect("the engine saw the request");
    assert_eq!(request.header("x-end-to-end"), Some("kept"));
    for name in [
        "authorization",
        "proxy-authorization",
        "x-hop-listed",
        "keep-alive",
        "te",
        "proxy-connection",
    ] {
        assert!(
            !request.has_header(name),
            "{name} was forwarded: {:?}",
            support::lossy(&request.raw_head)
        );
    }
    if let Some(connection) = request.header("connection") {
        assert!(
            !connection.to_ascii_lowercase().contains("x-hop-listed"),
            "Connection forwarded as {connection:?}"
        );
    }
}

#[test]
fn refused_requests_never_reach_the_engine() {
    let store = Arc::new(Mutex::new(Vec::new()));
    let engine = FakeEngine::start(support::recording_handler(store.clone()));
    let proxy = engine.proxy(Driver::Default);
    let bad: [&[u8]; 8] = [
        b"GET /%2e%2e/_ping HTTP/1.1\r\nHost: d\r\n\r\n",
        b"GET //containers/json HTTP/1.1\r\nHost: d\r\n\r\n",
        b"GET /containers/%00/json HTTP/1.1\r\nHost: d\r\n\r\n",
        b"GET /v1.41/v1.41/info HTTP/1.1\r\nHost: d\r\n\r\n",
        b"GET http://d/info HTTP/1.1\r\nHost: d\r\n\r\n",
        b"POST /build HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /build HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\
          \r\nab",
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b",
    ];
    for request in bad {
        let response = proxy.request(request);
        assert!(
            (400..500).contains(&response.status),
            "{:?}: {}",
            support::lossy(request),
            response.status
        );
    }
    // A good request afterwards proves the engine was reachable all along.
    assert_eq!(proxy.request(&get("/info")).status, 200);
    // The proxy's own readiness pings are not client requests.
    let seen: Vec<String> = store
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .filter(|t| t != "/_ping")
        .collect();
    assert_eq!(seen, ["/info"], "refused requests reached the engine");
}

#[test]
fn refusal_of_a_request_with_a_body_closes_or_skips_the_body() {
    // A refused request's unread body must never be parsed as the next
    // request on the connection (request smuggling).
    let store = Arc::new(Mutex::new(Vec::new()));
    let engine = FakeEngine::start(support::recording_handler(store.clone()));
    let proxy = engine.proxy(Driver::Default);
    let mut client = proxy.connect();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: d\r\n\r\n";
    let request = format!(
        "POST /containers/create HTTP/1.1\r\nHost: d\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    client.send(request.as_bytes());
    let response: Response = client.read_response_for("POST");
    response.assert_json_error(400);
    // Either the proxy announces and does a close, or the connection stays
    // usable and the next request is the next one the engine sees.
    let closing = response
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if closing {
        client
            .closed_within(Duration::from_secs(5))
            .expect("announced close");
    } else {
        client.send(&get("/after"));
        assert_eq!(client.read_response().status, 200);
    }
    let seen = store.lock().unwrap();
    assert!(
        seen.iter().all(|r| r.target != "/smuggled"),
        "body was forwarded as a request: {seen:?}"
    );
}
