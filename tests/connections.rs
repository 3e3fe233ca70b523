//! Connection handling that shows only at scale or at shutdown: the
//! engine pool under many concurrent clients, the memory an idle
//! keep-alive connection costs, and idle connections during a drain.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support::ops::get_request;
use support::{FakeEngine, RawClient};

/// An engine that answers every request after `delay`, on keep-alive.
fn slow_engine(delay: Duration) -> FakeEngine {
    FakeEngine::start(move |conn| {
        while let Some(_request) = conn.read_request() {
            thread::sleep(delay);
            conn.respond(200, "application/json", b"{}");
        }
    })
}

/// Sends one GET on each client at the same moment and waits for all.
fn wave(clients: Vec<RawClient>) -> Vec<RawClient> {
    let barrier = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                client.send(&get_request("/info", &[]));
                assert_eq!(client.read_response_for("GET").status, 200);
                client
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

/// Past 64 idle engine connections per core, every extra concurrent
/// request used to connect and close an engine connection.
#[test]
fn hundreds_of_concurrent_clients_reuse_engine_connections() {
    const CLIENTS: usize = 300;
    let engine = slow_engine(Duration::from_millis(300));
    let proxy = engine.options().start();
    let clients: Vec<RawClient> = (0..CLIENTS).map(|_| proxy.connect()).collect();

    let clients = wave(clients);
    let after_first = engine.connections.load(Ordering::SeqCst);
    assert!(
        after_first >= CLIENTS,
        "{after_first} engine connections for {CLIENTS}"
    );
    let _clients = wave(clients);
    let new = engine.connections.load(Ordering::SeqCst) - after_first;
    // A few may be the proxy's own readiness pings.
    assert!(new < 20, "second wave opened {new} new engine connections");
}

/// An idle keep-alive connection holds no read buffer and a small task.
#[test]
fn idle_keep_alive_connections_cost_little_memory() {
    const CLIENTS: usize = 2000;
    let engine = slow_engine(Duration::ZERO);
    let proxy = engine.options().limit("max_connections", 5000).start();
    let before = proxy.memory_kib("VmRSS");
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut client = proxy.connect();
        client.send(&get_request("/healthz", &[]));
        assert_eq!(client.read_response_for("GET").status, 200);
        clients.push(client);
    }
    let per_connection = (proxy.memory_kib("VmRSS") - before) * 1024 / CLIENTS as u64;
    assert!(
        per_connection < 8 * 1024,
        "{per_connection} bytes of resident memory per idle connection"
    );
}

/// The allocator commits memory as it is used: no transparent huge pages
/// (mimalloc would ask for them with madvise, and one touched byte then
/// keeps 2 MiB resident).
#[test]
fn a_started_proxy_keeps_little_memory_resident() {
    let engine = slow_engine(Duration::ZERO);
    let proxy = engine.options().start();
    let mut client = proxy.connect();
    client.send(&get_request("/healthz", &[]));
    assert_eq!(client.read_response_for("GET").status, 200);
    let rss = proxy.memory_kib("VmRSS");
    assert!(rss < 22 * 1024, "{rss} KiB resident after start");
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", proxy.pid()))
        .expect("read smaps_rollup of the proxy");
    let huge = rollup
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .expect("AnonHugePages in smaps_rollup");
    assert_eq!(huge.trim(), "0 kB", "transparent huge pages in use");
}

/// On SIGTERM an idle keep-alive connection is closed at once instead of
/// holding the process for the whole grace period.
#[test]
fn sigterm_closes_idle_keep_alive_connections_at_once() {
    let engine = slow_engine(Duration::ZERO);
    let mut proxy = engine.options().limit("shutdown_grace", 10).start();
    let mut client = proxy.connect();
    // Answered by the proxy itself, so the connection stays open.
    for _ in 0..2 {
        client.send(&get_request("/healthz", &[]));
        assert_eq!(client.read_response_for("GET").status, 200);
    }

    let started = Instant::now();
    proxy.signal(libc::SIGTERM);
    client
        .closed_within(Duration::from_secs(3))
        .expect("idle connection closed by the drain");
    assert!(
        proxy.wait_exit(Duration::from_secs(5)).is_some(),
        "proxy still running {:?} after SIGTERM with only an idle connection",
        started.elapsed()
    );
}

/// Up to a few hundred idle connections per core wait for their next
/// request inside a buffered read, the rest without a buffer. Both kinds
/// serve their next request and both are closed at once on SIGTERM.
#[test]
fn idle_connections_past_the_buffered_ones_still_serve_and_drain() {
    // More than the buffered waits of both workers together.
    const CLIENTS: usize = 1200;
    let engine = slow_engine(Duration::ZERO);
    let mut proxy = engine
        .options()
        .limit("max_connections", 5000)
        .limit("shutdown_grace", 10)
        .start();
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut client = proxy.connect();
        client.send(&get_request("/healthz", &[]));
        assert_eq!(client.read_response_for("GET").status, 200);
        clients.push(client);
    }
    // Every one of them, idle in either way, answers its next request.
    for client in &mut clients {
        client.send(&get_request("/healthz", &[]));
        assert_eq!(client.read_response_for("GET").status, 200);
    }

    proxy.signal(libc::SIGTERM);
    for client in &mut clients {
        client
            .closed_within(Duration::from_secs(3))
            .expect("idle connection closed by the drain");
    }
    assert!(
        proxy.wait_exit(Duration::from_secs(5)).is_some(),
        "proxy still running after SIGTERM with only idle connections"
    );
}
