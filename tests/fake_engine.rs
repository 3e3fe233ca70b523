//! Framing and stream corner cases against a fake engine on a temporary
//! unix socket (SPEC sections 2 and 7). Every test runs on both drivers.

#[macro_use]
mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{Driver, EngineConn, FakeEngine, ProxyOptions};

const PROMPT: Duration = Duration::from_secs(3);

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\n\r\n").into_bytes()
}

/// A gate the engine waits on (with a deadline) until the test opens it.
#[derive(Clone)]
struct Gate(Arc<Mutex<mpsc::Receiver<()>>>);

fn gate() -> (mpsc::Sender<()>, Gate) {
    let (open, wait) = mpsc::channel();
    (open, Gate(Arc::new(Mutex::new(wait))))
}

impl Gate {
    fn wait(&self) -> bool {
        self.0
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20))
            .is_ok()
    }
}

fn write_byte_by_byte(conn: &mut EngineConn, bytes: &[u8]) {
    for byte in bytes {
        conn.write(std::slice::from_ref(byte));
        thread::sleep(Duration::from_micros(300));
    }
}

/// How the proxy moves bulk bytes (`DOCKER_PROXY_BULK_COPY`). Tests of
/// streams and large bodies run with both.
#[derive(Debug, Clone, Copy)]
enum Bulk {
    Splice,
    Buffered,
}

impl Bulk {
    fn proxy(self, engine: &FakeEngine, driver: Driver) -> support::Proxy {
        let mode = match self {
            Bulk::Splice => "splice",
            Bulk::Buffered => "buffered",
        };
        engine
            .options()
            .driver(driver)
            .env("DOCKER_PROXY_BULK_COPY", mode)
            .start()
    }
}

/// Like `on_both_drivers!`, for each bulk copy mode as well.
macro_rules! on_both_drivers_and_copies {
    ($($name:ident => $body:path;)+) => {
        $(
            mod $name {
                use super::*;
                #[test]
                fn splice_io_uring() {
                    $body(Driver::Default, Bulk::Splice)
                }
                #[test]
                fn splice_epoll() {
                    $body(Driver::Epoll, Bulk::Splice)
                }
                #[test]
                fn buffered_io_uring() {
                    $body(Driver::Default, Bulk::Buffered)
                }
                #[test]
                fn buffered_epoll() {
                    $body(Driver::Epoll, Bulk::Buffered)
                }
            }
        )+
    };
}

// === framing ===

fn chunked_response_split_at_every_byte(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        while let Some(request) = conn.read_request() {
            if request.target == "/chunked" {
                write_byte_by_byte(
                    conn,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Transfer-Encoding: chunked\r\n\r\n\
                      5;ext=1\r\n{\"a\":\r\n7\r\n\"hello\"\r\nA\r\n,\"b\":12345\r\n1\r\n}\r\n\
                      0\r\nX-Trailer: t\r\n\r\n",
                );
            } else {
                conn.respond(200, "text/plain", b"after");
            }
        }
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(&get("/chunked"));
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"a":"hello","b":12345}"#);
    client.send(&get("/next"));
    assert_eq!(
        client.read_response().text(),
        "after",
        "connection out of step after chunked body"
    );
}

fn close_delimited_body_streams_until_engine_closes(driver: Driver) {
    let (open, gate) = gate();
    let engine = FakeEngine::start(move |conn| {
        if conn.read_request().is_some() {
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst-part|");
            if gate.wait() {
                conn.write(b"second-part|");
                conn.write(b"end");
            }
        }
        // Returning closes the connection, which ends the body.
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(&get("/logs"));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    // The first part must arrive while the engine still holds the rest.
    client.wait_for_bytes(b"first-part|");
    open.send(()).unwrap();
    let body = client.read_body_for(&head, "GET");
    assert_eq!(support::lossy(&body), "first-part|second-part|end");
}

fn slow_head_then_held_body(driver: Driver) {
    let (open, gate) = gate();
    let engine = FakeEngine::start(move |conn| {
        if conn.read_request().is_some() {
            conn.write(b"HTTP/1.1 20");
            thread::sleep(Duration::from_millis(400));
            conn.write(b"0 OK\r\nContent-Type: appli");
            thread::sleep(Duration::from_millis(400));
            conn.write(b"cation/json\r\nContent-Length: 11\r\n");
            thread::sleep(Duration::from_millis(400));
            conn.write(b"\r\n");
            // The head is complete; the body waits for the test.
            if gate.wait() {
                conn.write(b"{\"slow\":1}\n");
            }
        }
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(&get("/events"));
    let head = client.read_head();
    assert_eq!(head.status, 200, "head relayed before the body exists");
    open.send(()).unwrap();
    assert_eq!(
        support::lossy(&client.read_body_for(&head, "GET")),
        "{\"slow\":1}\n"
    );
}

fn bodiless_responses_keep_the_connection_in_step(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        while let Some(request) = conn.read_request() {
            match request.target.as_str() {
                "/head" => conn.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Content-Length: 1234\r\n\r\n",
                ),
                "/204" => conn.write(b"HTTP/1.1 204 No Content\r\nApi-Version: 1.41\r\n\r\n"),
                "/304" => conn.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
                _ => conn.respond(200, "text/plain", b"fine"),
            }
        }
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(b"HEAD /head HTTP/1.1\r\nHost: docker\r\n\r\n");
    let head = client.read_response_for("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some("1234"),
        "HEAD keeps the entity length"
    );
    client.send(&get("/204"));
    assert_eq!(client.read_response().status, 204);
    client.send(&get("/304"));
    assert_eq!(client.read_response().status, 304);
    client.send(&get("/ok"));
    let ok = client.read_response();
    assert_eq!((ok.status, ok.text().as_str()), (200, "fine"));
    assert!(
        client.pending().is_empty(),
        "stray bytes: {:?}",
        support::lossy(client.pending())
    );
}

on_both_drivers! {
    chunked_response_split_at_every_byte_is_relayed_intact => chunked_response_split_at_every_byte;
    close_delimited_body_streams_until_the_engine_closes =>
        close_delimited_body_streams_until_engine_closes;
    slow_response_head_is_relayed_before_the_body_exists => slow_head_then_held_body;
    head_204_and_304_responses_carry_no_body => bodiless_responses_keep_the_connection_in_step;
}

// === upgrades ===

/// What the engine side of an upgraded stream observed.
#[derive(Default, Debug)]
struct Seen {
    upgrade_headers: Option<(String, String)>,
    received: Vec<u8>,
    eof: bool,
}

const UPGRADE_REQUEST: &[u8] = b"POST /v1.41/exec/abc/start HTTP/1.1\r\nHost: docker\r\n\
    Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
    Content-Length: 27\r\n\r\n{\"Detach\":false,\"Tty\":false}";

/// Engine side: answers 101 with early bytes, echoes `ping` with `pong`,
/// then runs `rest`.
fn upgrade_engine(
    seen: Arc<Mutex<Seen>>,
    rest: impl Fn(&mut EngineConn, &Arc<Mutex<Seen>>) + Send + Sync + 'static,
) -> FakeEngine {
    FakeEngine::start(move |conn| {
        let Some(request) = conn.read_request() else {
            return;
        };
        seen.lock().unwrap().upgrade_headers = Some((
            request.header("connection").unwrap_or_default().to_owned(),
            request.header("upgrade").unwrap_or_default().to_owned(),
        ));
        conn.write(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\
              Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nEARLY",
        );
        let mut got = Vec::new();
        while !got.ends_with(b"ping") {
            match conn.read_some() {
                Ok(bytes) if !bytes.is_empty() => got.extend(bytes),
                _ => return,
            }
        }
        conn.write(b"pong");
        rest(conn, &seen);
    })
}

fn start_upgrade(proxy: &support::Proxy) -> support::RawClient {
    let mut client = proxy.connect();
    client.send(UPGRADE_REQUEST);
    let head = client.read_head();
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(
        client.read_bytes(5),
        b"EARLY",
        "bytes sent right after the 101 were lost"
    );
    client.send(b"ping");
    assert_eq!(client.read_bytes(4), b"pong");
    client
}

fn assert_upgrade_headers_kept(seen: &Mutex<Seen>) {
    let (connection, upgrade) = seen
        .lock()
        .unwrap()
        .upgrade_headers
        .clone()
        .expect("upgrade request seen");
    assert!(
        connection.eq_ignore_ascii_case("upgrade"),
        "Connection forwarded as {connection:?}"
    );
    assert_eq!(upgrade, "tcp");
}

fn client_half_close_reaches_engine_which_can_still_send(driver: Driver, bulk: Bulk) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let engine = upgrade_engine(seen.clone(), |conn, seen| {
        // Read until the client's half-close arrives as EOF.
        loop {
            match conn.read_some() {
                Ok(bytes) if bytes.is_empty() => break,
                Ok(bytes) => seen.lock().unwrap().received.extend(bytes),
                Err(_) => return,
            }
        }
        seen.lock().unwrap().eof = true;
        conn.write(b"after-eof");
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = start_upgrade(&proxy);
    client.send(b"tail");
    client.shutdown_write();
    assert_eq!(
        client.read_bytes(9),
        b"after-eof",
        "engine output after the client's half-close"
    );
    client
        .closed_within(PROMPT)
        .expect("client connection finished after the engine closed");
    assert_upgrade_headers_kept(&seen);
    let seen = seen.lock().unwrap();
    assert!(seen.eof, "engine never saw EOF");
    assert_eq!(seen.received, b"tail");
}

fn engine_close_finishes_client_promptly(driver: Driver, bulk: Bulk) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let engine = upgrade_engine(seen.clone(), |conn, _| {
        conn.write(b"bye");
        // Returning drops (closes) the engine connection.
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = start_upgrade(&proxy);
    assert_eq!(client.read_bytes(3), b"bye");
    let started = Instant::now();
    client
        .closed_within(PROMPT)
        .expect("client sees EOF after the engine closed");
    assert!(started.elapsed() < PROMPT);
    assert_upgrade_headers_kept(&seen);
}

fn engine_half_close_reaches_client_which_can_still_send(driver: Driver, bulk: Bulk) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let engine = upgrade_engine(seen.clone(), |conn, seen| {
        conn.write(b"output-done");
        // Half-close: the engine is done writing but still reads stdin.
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        loop {
            match conn.read_some() {
                Ok(bytes) if bytes.is_empty() => break,
                Ok(bytes) => seen.lock().unwrap().received.extend(bytes),
                Err(_) => return,
            }
        }
        seen.lock().unwrap().eof = true;
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = start_upgrade(&proxy);
    assert_eq!(client.read_bytes(11), b"output-done");
    client
        .closed_within(PROMPT)
        .expect("the engine's half-close reaches the client as end of stream");
    client.send(b"late-stdin");
    client.shutdown_write();
    let arrived = support::wait_for(Duration::from_secs(5), || {
        let seen = seen.lock().unwrap();
        seen.eof.then(|| seen.received.clone())
    });
    assert_eq!(
        arrived.as_deref(),
        Some(&b"late-stdin"[..]),
        "client bytes sent after the engine's half-close must still arrive"
    );
}

/// Sends `total` pattern bytes in uneven pieces (so reads and splices
/// straddle block edges).
fn send_pattern(out: &mut impl Write, total: u64) -> std::io::Result<()> {
    let block = pattern_block();
    let mut sent = 0u64;
    let mut piece = 1usize;
    while sent < total {
        let at = (sent % BLOCK as u64) as usize;
        let n = piece.min(BLOCK - at).min((total - sent) as usize);
        out.write_all(&block[at..at + n])?;
        sent += n as u64;
        piece = piece * 7 % 300_007 + 1;
    }
    Ok(())
}

/// Reads to end of stream after `already` (bytes read before), checking
/// every byte against the pattern. Returns the count.
fn receive_pattern(already: &[u8], input: &mut impl std::io::Read) -> u64 {
    let mut offset = 0u64;
    let mut check = |bytes: &[u8]| {
        for (i, byte) in bytes.iter().enumerate() {
            let at = offset + i as u64;
            assert_eq!(*byte, (at % 251) as u8, "stream corrupted at offset {at}");
        }
        offset += bytes.len() as u64;
    };
    check(already);
    let mut chunk = vec![0u8; 200_000];
    loop {
        match input.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => check(&chunk[..n]),
        }
    }
    offset
}

const BOTH_WAYS: u64 = 48 << 20;

/// Bulk bytes both ways at once through one upgraded stream, each side
/// half-closing when done: every byte arrives, in order, in each direction.
fn bulk_both_ways_with_half_closes(driver: Driver, bulk: Bulk) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let engine_got = Arc::new(Mutex::new(None));
    let got = engine_got.clone();
    let engine = upgrade_engine(seen, move |conn, _| {
        let mut reader = conn.stream.try_clone().expect("clone engine stream");
        let already = conn.take_pending();
        let counter = thread::spawn(move || receive_pattern(&already, &mut reader));
        if send_pattern(&mut conn.stream, BOTH_WAYS).is_ok() {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        }
        *got.lock().unwrap() = counter.join().ok();
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = start_upgrade(&proxy);
    let mut writer = client.stream.try_clone().expect("clone client stream");
    let sender = thread::spawn(move || {
        send_pattern(&mut writer, BOTH_WAYS).expect("client sends");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    });
    let already = client.pending().to_vec();
    let received = receive_pattern(&already, &mut client.stream);
    sender.join().expect("client sender");
    assert_eq!(received, BOTH_WAYS, "engine->client bytes");
    let counted = support::wait_for(Duration::from_secs(10), || *engine_got.lock().unwrap());
    assert_eq!(counted, Some(BOTH_WAYS), "client->engine bytes");
}

/// Descriptors of `pid` that are pipes.
fn pipes_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the proxy's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// A spliced stream holds a pipe only while bytes flow: quiet streams
/// (the usual attach or logs session between outputs) cost no descriptors
/// beyond their two sockets.
fn quiet_spliced_streams_hold_no_pipes(driver: Driver) {
    let (release, gate) = gate();
    let engine = upgrade_engine(Arc::new(Mutex::new(Seen::default())), move |conn, _| {
        gate.wait();
        conn.write(b"done");
    });
    let proxy = Bulk::Splice.proxy(&engine, driver);
    let before = pipes_of(proxy.pid());
    let mut clients: Vec<_> = (0..8).map(|_| start_upgrade(&proxy)).collect();
    // Every stream has moved bytes both ways and now waits.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        pipes_of(proxy.pid()),
        before,
        "pipes held by 8 quiet upgraded streams"
    );
    for _ in 0..clients.len() {
        release.send(()).unwrap();
    }
    for client in &mut clients {
        assert_eq!(client.read_bytes(4), b"done");
    }
}

/// Lowers the proxy's descriptor limit to the lowest free descriptor, so
/// that it cannot open one more (as when clients hold every descriptor
/// the limit allows: `max_connections` does not count pipes).
fn exhaust_descriptors(pid: u32) {
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the proxy's descriptors")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    let pid = pid as libc::pid_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on a child we started, with a valid rlimit pointer.
    let result = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    assert_eq!(result, 0, "read the proxy's descriptor limit");
    limit.rlim_cur = lowest_free;
    // SAFETY: as above.
    let result = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(result, 0, "lower the proxy's descriptor limit");
}

/// Without a spare descriptor for a pipe, an upgraded stream goes on
/// flowing: it must not end a direction (a half-close the engine reads as
/// the end of `docker exec -i` input) as if the client had closed it.
fn streams_keep_flowing_without_spare_descriptors(driver: Driver, bulk: Bulk) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let engine = upgrade_engine(seen.clone(), |conn, seen| {
        let mut got = Vec::new();
        while !got.ends_with(b"again") {
            match conn.read_some() {
                Ok(bytes) if !bytes.is_empty() => got.extend(bytes),
                _ => {
                    seen.lock().unwrap().eof = true;
                    return;
                }
            }
        }
        conn.write(b"still here");
        let _ = conn.read_some();
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = start_upgrade(&proxy);
    // Let the pipes of the bursts just relayed close first.
    thread::sleep(Duration::from_millis(200));
    exhaust_descriptors(proxy.pid());
    client.send(b"again");
    assert_eq!(client.read_bytes(10), b"still here");
    assert!(!seen.lock().unwrap().eof, "the engine saw the input end");
}

on_both_drivers_and_copies! {
    upgrade_engine_half_close_lets_the_client_keep_sending =>
        engine_half_close_reaches_client_which_can_still_send;
    upgrade_client_half_close_reaches_engine_which_can_still_send =>
        client_half_close_reaches_engine_which_can_still_send;
    upgrade_engine_close_finishes_the_client_promptly => engine_close_finishes_client_promptly;
    upgrade_moves_bulk_both_ways_then_half_closes => bulk_both_ways_with_half_closes;
    upgrade_streams_keep_flowing_without_spare_descriptors =>
        streams_keep_flowing_without_spare_descriptors;
}

on_both_drivers! {
    quiet_spliced_upgraded_streams_hold_no_pipes => quiet_spliced_streams_hold_no_pipes;
}

// === upstream pool and failures ===

/// Engine answering one request per connection and then closing it,
/// optionally after a delay (so a pooled connection goes stale).
fn one_shot_engine(close_delay: Duration, closed: Arc<AtomicUsize>) -> FakeEngine {
    let served = Arc::new(AtomicUsize::new(0));
    FakeEngine::start(move |conn| {
        if let Some(request) = conn.read_request() {
            let n = served.fetch_add(1, Ordering::SeqCst);
            let body = format!("{} {}", request.method, n);
            conn.respond(200, "text/plain", body.as_bytes());
            thread::sleep(close_delay);
        }
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        closed.fetch_add(1, Ordering::SeqCst);
    })
}

fn engine_closing_pooled_connections_never_fails_requests(driver: Driver) {
    for delay in [Duration::ZERO, Duration::from_millis(30)] {
        let closed = Arc::new(AtomicUsize::new(0));
        let engine = one_shot_engine(delay, closed.clone());
        let proxy = engine.proxy(driver);
        let mut client = proxy.connect();
        for i in 0..12 {
            let method = if i % 3 == 2 { "HEAD" } else { "GET" };
            client.send(
                format!("{method} /containers/json HTTP/1.1\r\nHost: docker\r\n\r\n").as_bytes(),
            );
            let response = client.read_response_for(method);
            assert_eq!(
                response.status,
                200,
                "request {i} (close delay {delay:?}): {:?}",
                response.text()
            );
        }
        // Once the engine has certainly closed every connection it served,
        // a request with a body must not be sent on a dead pooled one.
        let served = engine.connections.load(Ordering::SeqCst);
        support::wait_for(Duration::from_secs(5), || {
            (closed.load(Ordering::SeqCst) >= served).then_some(())
        })
        .expect("engine closed its connections");
        client.send(
            b"POST /containers/create HTTP/1.1\r\nHost: docker\r\n\
              Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        );
        let post = client.read_response_for("POST");
        assert_eq!(
            post.status,
            200,
            "POST after the engine closed its pooled connections: {:?}",
            post.text()
        );
        assert!(post.text().starts_with("POST"), "{:?}", post.text());
    }
}

fn engine_garbage_gives_502_json(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        if let Some(request) = conn.read_request() {
            match request.target.as_str() {
                "/garbage" => conn.write(b"this is not http at all\r\n\r\n"),
                "/bad-length" => conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nxx"),
                "/silent" => {}
                _ => conn.respond(200, "text/plain", b"OK"),
            }
        }
    });
    let proxy = engine.proxy(driver);
    for target in ["/garbage", "/bad-length", "/silent"] {
        let response = proxy.request(&get(target));
        assert_eq!(
            response.status,
            502,
            "{target}: {} {:?}",
            response.status,
            response.text()
        );
        response.assert_json_error(502);
    }
    assert_eq!(
        proxy.request(&get("/after")).text(),
        "OK",
        "proxy still serves after engine errors"
    );
}

fn missing_socket_gives_502_until_it_appears(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.sock");
    let proxy = ProxyOptions::new(&path).driver(driver).start();
    let response = proxy.request(&get("/_ping"));
    let message = response.assert_json_error(502);
    assert!(
        message.contains(path.to_str().unwrap()),
        "502 does not name the socket: {message:?}"
    );

    let _engine = FakeEngine::start_at(&path, |conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "text/plain", b"OK");
        }
    });
    let recovered = support::wait_for(Duration::from_secs(10), || {
        let response = proxy.request(&get("/_ping"));
        (response.status == 200).then_some(response)
    });
    assert_eq!(
        recovered
            .expect("proxy recovered once the socket appeared")
            .text(),
        "OK"
    );
}

on_both_drivers! {
    engine_closing_pooled_connections_never_fails_a_request =>
        engine_closing_pooled_connections_never_fails_requests;
    engine_garbage_or_silence_gives_502_json => engine_garbage_gives_502_json;
    missing_engine_socket_gives_502_naming_it_then_recovers =>
        missing_socket_gives_502_until_it_appears;
}

// === large bodies ===

const LARGE: u64 = 200 << 20;
const MAX_RSS_KIB: u64 = 100 << 10;
/// A multiple of the pattern period 251, so blocks line up with offsets.
const BLOCK: usize = 251 * 256;

fn pattern_block() -> Vec<u8> {
    (0..BLOCK).map(|i| (i % 251) as u8).collect()
}

/// Checks a received slice at `offset` against the pattern (first and
/// last byte, which catches loss, duplication and reordering cheaply).
fn check_slice(offset: u64, slice: &[u8]) {
    let expect = |at: u64| (at % 251) as u8;
    let last = offset + slice.len() as u64 - 1;
    assert!(
        slice[0] == expect(offset) && slice[slice.len() - 1] == expect(last),
        "corrupted stream near offset {offset}"
    );
}

/// Engine that drains an upload (with a little backpressure) and reports
/// the byte count.
fn upload_engine() -> FakeEngine {
    FakeEngine::start(|conn| {
        while let Some(request) = conn.read_head() {
            let mut offset = 0u64;
            let mut next_pause = 8u64 << 20;
            let total = conn.drain_body(&request, |slice| {
                check_slice(offset, slice);
                offset += slice.len() as u64;
                if offset >= next_pause {
                    next_pause += 8 << 20;
                    thread::sleep(Duration::from_millis(2));
                }
            });
            let Some(total) = total else { return };
            conn.respond(
                200,
                "application/json",
                format!("{{\"bytes\":{total}}}").as_bytes(),
            );
        }
    })
}

fn upload(driver: Driver, bulk: Bulk, chunked: bool) {
    let engine = upload_engine();
    let proxy = bulk.proxy(&engine, driver);
    let mut client = proxy.connect();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {LARGE}")
    };
    client.send(
        format!(
            "PUT /containers/x/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n\
             Content-Type: application/x-tar\r\n{framing}\r\n\r\n"
        )
        .as_bytes(),
    );
    let block = pattern_block();
    let mut left = LARGE;
    while left > 0 {
        let n = (left as usize).min(BLOCK);
        if chunked {
            client.send(format!("{n:x}\r\n").as_bytes());
            client.send(&block[..n]);
            client.send(b"\r\n");
        } else {
            client.send(&block[..n]);
        }
        left -= n as u64;
    }
    if chunked {
        client.send(b"0\r\n\r\n");
    }
    let response = client.read_response_for("PUT");
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(response.json()["bytes"], LARGE);
    let peak = proxy.memory_kib("VmHWM");
    assert!(
        peak < MAX_RSS_KIB,
        "proxy peak RSS {peak} KiB while streaming a {LARGE}-byte upload"
    );
}

fn upload_content_length(driver: Driver, bulk: Bulk) {
    upload(driver, bulk, false)
}

fn upload_chunked(driver: Driver, bulk: Bulk) {
    upload(driver, bulk, true)
}

fn download(driver: Driver, bulk: Bulk) {
    let engine = FakeEngine::start(|conn| {
        if conn.read_request().is_none() {
            return;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: {LARGE}\r\n\r\n"
        );
        conn.write(head.as_bytes());
        let block = pattern_block();
        let mut left = LARGE;
        while left > 0 {
            let n = (left as usize).min(BLOCK);
            if conn.stream.write_all(&block[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = proxy.connect();
    client.send(&get("/containers/x/archive?path=/"));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    let mut offset = 0u64;
    let mut next_pause = 8u64 << 20;
    client.stream_body(LARGE, |slice| {
        check_slice(offset, slice);
        offset += slice.len() as u64;
        // A slightly slow client makes the proxy apply backpressure.
        if offset >= next_pause {
            next_pause += 8 << 20;
            thread::sleep(Duration::from_millis(2));
        }
    });
    assert_eq!(offset, LARGE);
    let peak = proxy.memory_kib("VmHWM");
    assert!(
        peak < MAX_RSS_KIB,
        "proxy peak RSS {peak} KiB while streaming a {LARGE}-byte download"
    );
}

/// A request pipelined right behind a long Content-Length body, in the
/// same write: the copy (spliced or not) stops at the body's end and the
/// proxy handles the next request itself.
fn request_pipelined_after_a_long_body(driver: Driver, bulk: Bulk) {
    const LENGTH: usize = (3 << 20) + 13;
    let engine = FakeEngine::start(|conn| {
        while let Some(request) = conn.read_head() {
            let mut offset = 0u64;
            let Some(total) = conn.drain_body(&request, |slice| {
                check_slice(offset, slice);
                offset += slice.len() as u64;
            }) else {
                return;
            };
            // The proxy drops headers named in Connection; seeing one
            // means the bytes were forwarded without being parsed.
            let hop = request.has_header("x-hop");
            let body = format!("{{\"bytes\":{total},\"hop\":{hop}}}");
            conn.respond(200, "application/json", body.as_bytes());
        }
    });
    let proxy = bulk.proxy(&engine, driver);
    let mut client = proxy.connect();
    let mut bytes = format!(
        "PUT /containers/x/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {LENGTH}\r\n\r\n"
    )
    .into_bytes();
    let body_start = bytes.len();
    let block = pattern_block();
    while bytes.len() < body_start + LENGTH {
        bytes.extend_from_slice(&block);
    }
    bytes.truncate(body_start + LENGTH);
    bytes.extend_from_slice(
        b"PUT /containers/y/archive HTTP/1.1\r\nHost: docker\r\n\
          Connection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\n\x00\x01\x02\x03\x04",
    );
    client.send(&bytes);
    let first = client.read_response_for("PUT");
    assert_eq!(first.status, 200, "{:?}", first.text());
    assert_eq!(first.json()["bytes"], LENGTH as u64);
    let second = client.read_response_for("PUT");
    assert_eq!(second.status, 200, "{:?}", second.text());
    assert_eq!(second.json()["bytes"], 5);
    assert_eq!(
        second.json()["hop"],
        false,
        "the pipelined request reached the engine unparsed"
    );
}

on_both_drivers_and_copies! {
    large_upload_with_content_length_streams_in_bounded_memory => upload_content_length;
    large_chunked_upload_streams_in_bounded_memory => upload_chunked;
    large_download_streams_in_bounded_memory => download;
    request_pipelined_after_a_long_body_is_handled_on_its_own =>
        request_pipelined_after_a_long_body;
}

#[test]
fn fake_engine_socket_accepts_plain_std_clients() {
    // Guards the harness itself: a broken fake engine would make every
    // test above fail for the wrong reason.
    let engine = FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "text/plain", b"OK");
        }
    });
    let mut stream = UnixStream::connect(&engine.path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(buf[..n].ends_with(b"OK"));
}

// === responses the request did not ask for ===

/// An engine that answers the first request with `response`, then records
/// everything else it receives on that connection (for `quiet`, then it
/// closes). `done` counts finished connections.
fn recording_engine(
    response: &'static [u8],
    quiet: Duration,
    seen: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicUsize>,
) -> FakeEngine {
    FakeEngine::start(move |conn| {
        if conn.read_request().is_none() {
            return;
        }
        conn.write(response);
        conn.stream.set_read_timeout(Some(quiet)).unwrap();
        while let Ok(bytes) = conn.read_some() {
            if bytes.is_empty() {
                break;
            }
            seen.lock().unwrap().extend(bytes);
        }
        done.fetch_add(1, Ordering::SeqCst);
    })
}

const PIPELINED_PAIR: &[u8] = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n\
    GET /v1.41/secret-second-request HTTP/1.1\r\nHost: docker\r\n\r\n";

fn assert_second_request_never_forwarded(seen: &Mutex<Vec<u8>>, done: &AtomicUsize) {
    assert!(
        support::wait_for(Duration::from_secs(10), || (done.load(Ordering::SeqCst)
            > 0)
        .then_some(()))
        .is_some(),
        "engine connection still open"
    );
    let seen = support::lossy(&seen.lock().unwrap());
    assert!(
        !seen.contains("secret-second-request"),
        "pipelined request reached the engine unchecked: {seen:?}"
    );
}

/// Sends [`PIPELINED_PAIR`] to a [`recording_engine`] answering the first
/// request with `response`; what the client got up to the proxy's close.
/// The second request must never reach the engine.
fn answer_to_pipelined_pair(response: &'static [u8], quiet: Duration, driver: Driver) -> String {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let engine = recording_engine(response, quiet, seen.clone(), done.clone());
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(PIPELINED_PAIR);
    client.set_read_timeout(Duration::from_secs(10));
    let text = support::lossy(&client.read_to_close());
    assert_second_request_never_forwarded(&seen, &done);
    text
}

/// A 101 to a request without `Upgrade` is refused: 502, both closed.
fn unrequested_101_gives_502(driver: Driver) {
    // The engine connection is closed too (its reader sees EOF, well
    // before its 20 s read timeout).
    let text = answer_to_pipelined_pair(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        Duration::from_secs(20),
        driver,
    );
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("asked for no upgrade"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
}

/// A 200 raw stream without framing to a request that is not an attach
/// or exec start is a one-way body delimited by close, not a tunnel.
fn unrequested_raw_stream_is_not_a_tunnel(driver: Driver) {
    let text = answer_to_pipelined_pair(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nRAW",
        Duration::from_millis(800),
        driver,
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("\r\n\r\nRAW"), "{text}");
}

/// The hijack the raw-stream path exists for still works: an attach
/// without `Upgrade` answered with a 200 raw stream is two-way.
fn attach_raw_stream_is_two_way(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        if conn.read_request().is_none() {
            return;
        }
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n");
        let mut got = Vec::new();
        while !got.ends_with(b"ping") {
            match conn.read_some() {
                Ok(bytes) if !bytes.is_empty() => got.extend(bytes),
                _ => return,
            }
        }
        conn.write(b"pong");
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(
        b"POST /v1.41/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n\
          Content-Length: 0\r\n\r\n",
    );
    let head = client.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    client.send(b"ping");
    assert_eq!(client.read_bytes(4), b"pong");
}

/// 204 loses Transfer-Encoding and Content-Length; 304 and HEAD responses
/// lose Transfer-Encoding and keep Content-Length.
fn bodiless_responses_lose_framing_headers(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        while let Some(request) = conn.read_request() {
            match (request.method.as_str(), request.target.as_str()) {
                (_, "/204") => conn.write(
                    b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
                ),
                (_, "/204-length") => {
                    conn.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                }
                (_, "/304") => conn.write(
                    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\
                      Content-Length: 12\r\n\r\n",
                ),
                ("HEAD", _) => conn.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Transfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n",
                ),
                _ => conn.respond(200, "text/plain", b"OK"),
            }
        }
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    let mut check = |method: &str, target: &str, length: Option<&str>| {
        client.send(format!("{method} {target} HTTP/1.1\r\nHost: docker\r\n\r\n").as_bytes());
        let response = client.read_response_for(method);
        assert_eq!(
            response.header("transfer-encoding"),
            None,
            "{target}: {response:?}"
        );
        assert_eq!(
            response.header("content-length"),
            length,
            "{target}: {response:?}"
        );
    };
    check("GET", "/204", None);
    check("GET", "/204-length", None);
    check("GET", "/304", Some("12"));
    check("HEAD", "/containers/json", Some("7"));
    // The connection is still in step.
    client.send(&get("/after"));
    assert_eq!(client.read_response().text(), "OK");
}

/// An engine's interim 1xx reaches an HTTP/1.1 client but never an
/// HTTP/1.0 one, which cannot read it (RFC 9110 section 15.2).
fn interim_responses_only_to_http11(driver: Driver) {
    let engine = FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
            conn.respond(200, "text/plain", b"hello");
        }
    });
    let proxy = engine.proxy(driver);
    let mut client = proxy.connect();
    client.send(&get("/v1.41/info"));
    assert_eq!(client.read_head().status, 103);
    assert_eq!(client.read_response().text(), "hello");

    let mut client = proxy.connect();
    client.send(b"GET /v1.41/info HTTP/1.0\r\n\r\n");
    let text = support::lossy(&client.read_to_close());
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(!text.contains("103") && text.ends_with("hello"), "{text}");
}

on_both_drivers! {
    unrequested_101_gives_502_and_never_tunnels => unrequested_101_gives_502;
    interim_responses_reach_only_http11_clients => interim_responses_only_to_http11;
    unrequested_raw_stream_is_relayed_one_way_and_closed =>
        unrequested_raw_stream_is_not_a_tunnel;
    attach_answered_with_raw_stream_is_two_way => attach_raw_stream_is_two_way;
    bodiless_responses_lose_framing_headers_they_cannot_have =>
        bodiless_responses_lose_framing_headers;
}
