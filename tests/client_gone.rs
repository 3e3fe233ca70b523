//! A followed response stream (`logs -f`, `events`) on a quiet source ends
//! when its client has gone, so the client connection and the engine
//! connection are released; a client that only half-closed keeps reading.

#[macro_use]
mod support;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::ops::get_request;
use support::{Driver, FakeEngine, Proxy, RawClient};

/// Head and first chunk of a followed stream that then goes quiet.
const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
    Transfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n";

/// The kernel forgets a closed client's connection after
/// `net.ipv4.tcp_fin_timeout` (60 s by default); the proxy's keepalive
/// probes see the reset a few seconds later.
const AFTER_FIN: Duration = Duration::from_secs(100);

/// An engine whose every response is a quiet followed stream; each
/// connection reports on `closed` when the proxy closes it.
fn quiet_engine(closed: mpsc::Sender<Instant>) -> FakeEngine {
    let closed = std::sync::Mutex::new(closed);
    FakeEngine::start(move |conn| {
        if conn.read_request().is_none() {
            return;
        }
        conn.write(STREAM_HEAD);
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .expect("read timeout");
        // The proxy sends nothing more on this connection: any return
        // (end of stream or error) means it closed it.
        let _ = conn.read_some();
        let _ = closed.lock().unwrap().send(Instant::now());
    })
}

fn follow(proxy: &Proxy) -> RawClient {
    let mut client = proxy.connect();
    client.send(&get_request(
        "/v1.41/containers/quiet/logs?follow=1&stdout=1",
        &[],
    ));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    client.wait_for_bytes(b"first\n\r\n");
    client
}

fn active_connections(proxy: &Proxy) -> f64 {
    // The scrape's own connection counts too.
    proxy
        .scrape("/metrics")
        .value("docker_proxy_active_connections", &[])
        - 1.0
}

/// Closes `client` with a reset (linger 0), as a killed process does.
fn reset(client: RawClient) {
    socket2::SockRef::from(&client.stream)
        .set_linger(Some(Duration::ZERO))
        .expect("linger 0");
    drop(client);
}

fn assert_released(proxy: &Proxy, closed: &mpsc::Receiver<Instant>, within: Duration) {
    let started = Instant::now();
    closed
        .recv_timeout(within)
        .unwrap_or_else(|_| panic!("engine connection still open after {within:?}"));
    let left = within.saturating_sub(started.elapsed()) + Duration::from_secs(2);
    let released = support::wait_for(left, || (active_connections(proxy) == 0.0).then_some(()));
    assert!(
        released.is_some(),
        "{} client connections still active",
        active_connections(proxy)
    );
}

fn start(engine: &FakeEngine, driver: Driver) -> Proxy {
    engine
        .options()
        .driver(driver)
        .global("metrics:\n  enabled: true")
        .start()
}

fn ends_when_the_client_resets(driver: Driver) {
    let (sender, closed) = mpsc::channel();
    let engine = quiet_engine(sender);
    let proxy = start(&engine, driver);
    let client = follow(&proxy);
    assert_eq!(active_connections(&proxy), 1.0);
    reset(client);
    assert_released(&proxy, &closed, Duration::from_secs(5));
}

fn half_closed_client_keeps_receiving(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        if conn.read_request().is_none() {
            return;
        }
        conn.write(STREAM_HEAD);
        // Quiet for longer than several probes and keepalive rounds.
        thread::sleep(Duration::from_secs(7));
        conn.write(b"6\r\nlater\n\r\n0\r\n\r\n");
    });
    let proxy = start(&engine, driver);
    let mut client = follow(&proxy);
    client.shutdown_write();
    client.wait_for_bytes(b"later\n\r\n0\r\n\r\n");
    client
        .closed_within(Duration::from_secs(5))
        .expect("the proxy closes after the last response to a half-closed client");
}

on_both_drivers! {
    followed_stream_ends_when_the_client_resets => ends_when_the_client_resets;
    half_closed_client_keeps_receiving_a_quiet_followed_stream =>
        half_closed_client_keeps_receiving;
}

/// `timeout 3 docker logs -f` and `curl` close with a FIN: the proxy
/// cannot tell that from a half-close until the client's kernel resets.
#[test]
fn followed_stream_ends_after_the_client_closes() {
    let (sender, closed) = mpsc::channel();
    let engine = quiet_engine(sender);
    let proxy = start(&engine, Driver::Default);
    let client = follow(&proxy);
    drop(client);
    assert_released(&proxy, &closed, AFTER_FIN);
}

/// Pipelined bytes during a quiet stream are not an end of stream: the
/// stream goes on until the client resets.
#[test]
fn pipelined_bytes_do_not_end_a_followed_stream() {
    let (sender, closed) = mpsc::channel();
    let engine = quiet_engine(sender);
    let proxy = start(&engine, Driver::Default);
    let mut client = follow(&proxy);
    client.send(&get_request("/_ping", &[]));
    assert!(
        closed.recv_timeout(Duration::from_secs(3)).is_err(),
        "the stream ended because the client pipelined a request"
    );
    assert_eq!(active_connections(&proxy), 1.0);
    reset(client);
    assert_released(&proxy, &closed, Duration::from_secs(5));
}
