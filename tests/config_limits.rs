//! Settings that come from the config file (`--config`): limits of SPEC
//! section 9, the port and socket, and fail-closed auth when the file has
//! no `auth` section. Run against a fake engine.

#[macro_use]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Driver, FakeEngine, ProxyOptions, RawClient};

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\n\r\n").into_bytes()
}

fn ok_engine() -> FakeEngine {
    FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "text/plain", b"OK");
        }
    })
}

/// Waits for the proxy to end the connection within `limit`; whatever it
/// sends first must be the given status (or nothing at all).
fn assert_closed_by_proxy(client: &mut RawClient, limit: Duration, status: u16) {
    let started = Instant::now();
    client.set_read_timeout(limit);
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut client.stream, &mut buf) {
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
    assert!(started.elapsed() <= limit + Duration::from_millis(500));
    if !received.is_empty() {
        let prefix = format!("HTTP/1.1 {status}");
        assert!(
            received.starts_with(prefix.as_bytes()),
            "expected {status} or a bare close, got {:?}",
            support::lossy(&received)
        );
    }
}

fn header_timeout_closes_incomplete_heads(driver: Driver) {
    let engine = ok_engine();
    let proxy = engine
        .options()
        .driver(driver)
        .limit("header_timeout", 2)
        .start();
    let mut client = proxy.connect();
    client.send(b"GET /_ping HTTP/1.1\r\nHost: doc");
    assert_closed_by_proxy(&mut client, Duration::from_secs(5), 408);
}

fn keepalive_idle_closes_idle_connections(driver: Driver) {
    let engine = ok_engine();
    let proxy = engine
        .options()
        .driver(driver)
        .limit("keepalive_idle", 2)
        .start();
    let mut client = proxy.connect();
    client.send(&get("/info"));
    assert_eq!(client.read_response().status, 200);
    assert_closed_by_proxy(&mut client, Duration::from_secs(5), 408);
}

fn upgrade_idle_closes_quiet_streams(driver: Driver) {
    let engine_saw_eof = Arc::new(AtomicBool::new(false));
    let flag = engine_saw_eof.clone();
    let engine = FakeEngine::start(move |conn| {
        if conn.read_request().is_none() {
            return;
        }
        conn.write(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n");
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        while matches!(conn.read_some(), Ok(bytes) if !bytes.is_empty()) {}
        flag.store(true, Ordering::SeqCst);
    });
    let proxy = engine
        .options()
        .driver(driver)
        .limit("upgrade_idle", 2)
        .start();
    let mut client = proxy.connect();
    client.send(
        b"POST /v1.41/containers/x/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n\
          Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    );
    assert_eq!(client.read_head().status, 101);
    client
        .closed_within(Duration::from_secs(5))
        .expect("idle upgraded stream closed");
    support::wait_for(Duration::from_secs(3), || {
        engine_saw_eof.load(Ordering::SeqCst).then_some(())
    })
    .expect("engine side of the idle stream closed too");
}

fn max_connections_refuses_with_503(driver: Driver) {
    let engine = ok_engine();
    let proxy = engine
        .options()
        .driver(driver)
        .limit("max_connections", 3)
        .start();
    // The harness's readiness probe may still hold a slot for a moment
    // after it disconnected, so a refusal while filling up is retried.
    let mut held: Vec<RawClient> = (0..3)
        .map(|_| {
            support::wait_for(Duration::from_secs(5), || {
                let mut client = proxy.connect();
                client.send(&get("/info"));
                (client.read_response().status == 200).then_some(client)
            })
            .expect("connection admitted below max_connections")
        })
        .collect();
    let mut extra = proxy.connect();
    extra.send(&get("/info"));
    let response = extra.read_response();
    response.assert_json_error(503);
    extra
        .closed_within(Duration::from_secs(3))
        .expect("refused connection closed");

    // Freeing a slot lets a new client in again.
    held.pop();
    let admitted = support::wait_for(Duration::from_secs(5), || {
        let response = proxy.request(&get("/info"));
        (response.status == 200).then_some(())
    });
    assert!(
        admitted.is_some(),
        "no connection admitted after one closed"
    );
}

fn max_head_limit_from_config(driver: Driver) {
    let engine = ok_engine();
    let proxy = engine
        .options()
        .driver(driver)
        .limit("max_head", 8192)
        .start();
    let small = format!(
        "GET /info HTTP/1.1\r\nHost: docker\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(6000)
    );
    assert_eq!(proxy.request(small.as_bytes()).status, 200);
    let big = format!(
        "GET /info HTTP/1.1\r\nHost: docker\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    proxy.request(big.as_bytes()).assert_json_error(431);
}

on_both_drivers! {
    header_timeout_closes_a_connection_with_an_incomplete_head =>
        header_timeout_closes_incomplete_heads;
    keepalive_idle_closes_an_idle_client_connection => keepalive_idle_closes_idle_connections;
    upgrade_idle_closes_a_quiet_upgraded_stream => upgrade_idle_closes_quiet_streams;
    max_connections_refuses_the_next_client_with_503 => max_connections_refuses_with_503;
    max_head_from_config_refuses_larger_heads_with_431 => max_head_limit_from_config;
}

#[test]
fn config_file_alone_sets_port_and_socket() {
    let engine = ok_engine();
    let proxy = engine.options().config_only().start();
    assert_eq!(proxy.request(&get("/info")).text(), "OK");
}

#[test]
fn config_without_auth_section_refuses_every_request_with_401() {
    let engine = ok_engine();
    let proxy = engine.options().without_auth_section().start();
    for request in [get("/info"), get("/v1.41/containers/json"), get("/_ping")] {
        proxy.request(&request).assert_json_error(401);
    }
}

#[test]
fn explicit_auth_type_none_serves_requests() {
    let engine = ok_engine();
    let proxy = ProxyOptions::new(&engine.path)
        .auth("auth:\n  type: none\n")
        .start();
    assert_eq!(proxy.request(&get("/info")).status, 200);
}
