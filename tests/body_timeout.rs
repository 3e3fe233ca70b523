//! A request body that a rule inspects is buffered, so it must arrive in
//! time: `limits.body_timeout` in all and `limits.header_timeout` between
//! reads, else 408 and close. Run against a fake engine.

#[macro_use]
mod support;

use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::ops::get_request;
use support::{Driver, FakeEngine, Proxy, RawClient};

const INSPECTING_RULES: &str = "rules:
  - name: no-privileged
    action: deny
    conditions:
      - {field: body.HostConfig.Privileged, operator: equals, value: true}";

fn ok_engine() -> FakeEngine {
    FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "application/json", b"{}");
        }
    })
}

fn start(engine: &FakeEngine, driver: Driver, header: u64, body: u64) -> Proxy {
    engine
        .options()
        .driver(driver)
        .limit("header_timeout", header)
        .limit("body_timeout", body)
        .rules(INSPECTING_RULES)
        .start()
}

fn create_head(length: usize) -> Vec<u8> {
    format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// Reads until the proxy closes; the status it answered and when.
fn answer_and_close(client: &mut RawClient, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    if let Err(open) = client.closed_within(limit) {
        panic!("connection {open}");
    }
    let text = support::lossy(client.pending());
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, started.elapsed())
}

/// All but the last byte of the body, then silence: the gap between
/// reads is bounded by header_timeout.
fn stalled_body_gets_408(driver: Driver) {
    let engine = ok_engine();
    let proxy = start(&engine, driver, 2, 30);
    let body = format!("{{\"Image\":\"x\",\"pad\":\"{}\"}}", "a".repeat(200_000));
    let mut client = proxy.connect();
    client.send(&create_head(body.len()));
    client.send(&body.as_bytes()[..body.len() - 1]);

    // Others are served meanwhile.
    let response = proxy.request(&get_request("/info", &[]));
    assert_eq!(response.status, 200);

    let (status, elapsed) = answer_and_close(&mut client, Duration::from_secs(8));
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(elapsed < Duration::from_secs(6), "408 after {elapsed:?}");
}

/// A body that trickles in never has a long gap, but body_timeout bounds
/// the whole.
fn trickled_body_gets_408(driver: Driver) {
    let engine = ok_engine();
    let proxy = start(&engine, driver, 30, 2);
    let body = b"{\"Image\":\"busybox\",\"HostConfig\":{}}".repeat(4);
    let mut client = proxy.connect();
    client.send(&create_head(body.len()));
    let started = Instant::now();
    let sender = {
        let mut stream = client.stream.try_clone().expect("clone the client socket");
        thread::spawn(move || {
            for byte in body.iter().take(40) {
                if std::io::Write::write_all(&mut stream, &[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (status, _) = answer_and_close(&mut client, Duration::from_secs(8));
    let elapsed = started.elapsed();
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "408 after {elapsed:?}"
    );
    sender.join().expect("sender thread");
}

/// A body that arrives in time is inspected and forwarded as before.
fn prompt_body_is_forwarded(driver: Driver) {
    let engine = ok_engine();
    let proxy = start(&engine, driver, 2, 2);
    let body = b"{\"Image\":\"busybox\"}";
    let mut request = create_head(body.len());
    request.extend_from_slice(body);
    assert_eq!(proxy.request(&request).status, 200);
}

// === streamed (uninspected) bodies: an idle limit, no total deadline ===

/// How the engine's read of a streamed body ended.
#[derive(Debug, PartialEq)]
enum BodyEnd {
    /// All bytes arrived (answered 200).
    Complete,
    /// The proxy closed the engine connection early.
    Eof { received: u64 },
    /// The engine's own 20 s read timeout (the proxy held on).
    Stuck { received: u64 },
}

/// An engine that reads one streamed body to its Content-Length and
/// reports how that ended, and when.
fn streaming_engine() -> (FakeEngine, mpsc::Receiver<(BodyEnd, Instant)>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let engine = FakeEngine::start(move |conn| {
        let Some(request) = conn.read_head() else {
            return;
        };
        let Some(length) = request.header("content-length") else {
            conn.respond(200, "application/json", b"{}");
            return;
        };
        let length: u64 = length.parse().unwrap();
        let mut received = 0u64;
        let end = loop {
            if received >= length {
                conn.respond(200, "application/json", b"{}");
                break BodyEnd::Complete;
            }
            match conn.read_some() {
                Ok(bytes) if bytes.is_empty() => break BodyEnd::Eof { received },
                Ok(bytes) => received += bytes.len() as u64,
                Err(_) => break BodyEnd::Stuck { received },
            }
        };
        let _ = tx.lock().unwrap().send((end, Instant::now()));
    });
    (engine, rx)
}

fn streaming_proxy(engine: &FakeEngine, driver: Driver, bulk: &str, body: u64) -> Proxy {
    engine
        .options()
        .driver(driver)
        .env("DOCKER_PROXY_BULK_COPY", bulk)
        .limit("body_timeout", body)
        .start()
}

fn archive_head(length: u64) -> Vec<u8> {
    format!(
        "PUT /v1.41/containers/x/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// The pentest case: a 100 MB upload that stops after 10 bytes. With
/// body_timeout 2 the engine connection is closed (EOF) and the client
/// gets 408 and a close, within a few seconds.
fn stalled_streamed_body_is_closed(driver: Driver, bulk: &str) {
    let (engine, ends) = streaming_engine();
    let proxy = streaming_proxy(&engine, driver, bulk, 2);
    let mut client = proxy.connect();
    let started = Instant::now();
    client.send(&archive_head(100_000_000));
    client.send(b"0123456789");
    let (status, elapsed) = answer_and_close(&mut client, Duration::from_secs(10));
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(6),
        "closed after {elapsed:?}"
    );
    let (end, at) = ends
        .recv_timeout(Duration::from_secs(25))
        .expect("engine finished");
    assert_eq!(end, BodyEnd::Eof { received: 10 });
    assert!(
        at.duration_since(started) < Duration::from_secs(5),
        "engine EOF late"
    );
}

/// A slow but steady upload (a piece every 600 ms, 4 s in all) outlives
/// body_timeout 2: it is an idle limit, not a deadline. 300 KB so that
/// the spliced path is used too.
fn steady_slow_streamed_body_completes(driver: Driver, bulk: &str) {
    let (engine, ends) = streaming_engine();
    let proxy = streaming_proxy(&engine, driver, bulk, 2);
    let piece = vec![b'x'; 50_000];
    let mut client = proxy.connect();
    let started = Instant::now();
    client.send(&archive_head(piece.len() as u64 * 7));
    for _ in 0..7 {
        client.send(&piece);
        thread::sleep(Duration::from_millis(600));
    }
    client.set_read_timeout(Duration::from_secs(10));
    let response = client.read_response();
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert!(started.elapsed() > Duration::from_secs(4));
    let (end, _) = ends.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(end, BodyEnd::Complete);
    // Still usable afterwards (keep-alive).
    client.send(&get_request("/info", &[]));
    assert_eq!(client.read_response().status, 200);
}

fn stalled_streamed_body_spliced(driver: Driver) {
    stalled_streamed_body_is_closed(driver, "splice")
}
fn stalled_streamed_body_buffered(driver: Driver) {
    stalled_streamed_body_is_closed(driver, "buffered")
}
fn steady_streamed_body_spliced(driver: Driver) {
    steady_slow_streamed_body_completes(driver, "splice")
}
fn steady_streamed_body_buffered(driver: Driver) {
    steady_slow_streamed_body_completes(driver, "buffered")
}

on_both_drivers! {
    stalled_streamed_body_is_closed_at_body_timeout_spliced => stalled_streamed_body_spliced;
    stalled_streamed_body_is_closed_at_body_timeout_buffered => stalled_streamed_body_buffered;
    steady_slow_streamed_body_outlives_body_timeout_spliced => steady_streamed_body_spliced;
    steady_slow_streamed_body_outlives_body_timeout_buffered => steady_streamed_body_buffered;
}

on_both_drivers! {
    stalled_inspected_body_gets_408 => stalled_body_gets_408;
    trickled_inspected_body_gets_408_at_body_timeout => trickled_body_gets_408;
    inspected_body_in_time_is_forwarded => prompt_body_is_forwarded;
}
