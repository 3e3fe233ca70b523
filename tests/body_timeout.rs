//! A request body that a rule inspects is buffered, so it must arrive in
//! time: `limits.body_timeout` in all and `limits.header_timeout` between
//! reads, else 408 and close. Run against a fake engine.

#[macro_use]
mod support;

use std::io::Read;
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
    client.set_read_timeout(limit);
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => break,
        }
    }
    let text = support::lossy(&received);
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

on_both_drivers! {
    stalled_inspected_body_gets_408 => stalled_body_gets_408;
    trickled_inspected_body_gets_408_at_body_timeout => trickled_body_gets_408;
    inspected_body_in_time_is_forwarded => prompt_body_is_forwarded;
}
