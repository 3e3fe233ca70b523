//! The proxy reports readiness, reloads and stopping to systemd through
//! `$NOTIFY_SOCKET` (SPEC section 8). A datagram socket stands in for
//! systemd.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::ProxyOptions;

/// Collects notification datagrams until one contains `needle`.
fn wait_message(socket: &UnixDatagram, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(message.clone());
            if message.contains(needle) {
                return message;
            }
        }
    }
    panic!("no notification containing {needle:?}; got {seen:?}");
}

#[test]
fn reports_ready_reloading_and_stopping_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut proxy = ProxyOptions::new(dir.path().join("no-engine.sock"))
        .env("NOTIFY_SOCKET", notify_path.to_str().unwrap())
        .start();
    let mut seen = Vec::new();

    wait_message(&notify, "READY=1", &mut seen);

    proxy.signal(libc::SIGHUP);
    let reloading = wait_message(&notify, "RELOADING=1", &mut seen);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    wait_message(&notify, "READY=1", &mut seen);

    proxy.signal(libc::SIGTERM);
    wait_message(&notify, "STOPPING=1", &mut seen);
    assert!(
        proxy.wait_exit(Duration::from_secs(12)).is_some(),
        "proxy did not exit"
    );
}
