//! A stalled audit writer never holds requests up: records are dropped and
//! counted instead (SPEC section 8). The audit "file" is a FIFO whose
//! reader never reads, so the writer thread blocks once the pipe is full.

mod support;

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

use support::ops::get_request;
use support::FakeEngine;

#[test]
fn requests_complete_and_drops_are_counted_while_the_audit_writer_is_stalled() {
    let engine = FakeEngine::start(|conn| {
        while let Some(_request) = conn.read_request() {
            conn.respond(200, "application/json", b"{}");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let path = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    // Hold the read end open but never read: the pipe fills and stays full.
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO's read end");

    let proxy = engine
        .options()
        .global(&format!("audit_log: {}", fifo.display()))
        .global("metrics: {enabled: true}")
        .rules(
            "rules:\n  - name: deny-info\n    action: deny\n    conditions:\n\
             \x20     - {field: path, operator: equals, value: /info}\n",
        )
        .start();

    // Each denial queues one record of a few hundred bytes: far more than
    // the pipe (64 KiB) plus the writer's queue can hold.
    let mut client = proxy.connect();
    let total = 12_000;
    let padding = "x".repeat(400);
    for _ in 0..total {
        client.send(&get_request("/info", &[&format!("User-Agent: {padding}")]));
        let response = client.read_response_for("GET");
        assert_eq!(response.status, 403, "{}", response.text());
    }

    let metrics = proxy.scrape("/metrics");
    let dropped = metrics.value("docker_proxy_audit_dropped_total", &[]);
    assert!(
        dropped > 0.0,
        "no audit record was dropped:\n{}",
        metrics.text
    );
    let denied = metrics.value("docker_proxy_requests_denied_total", &[]);
    assert_eq!(denied, total as f64);
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("audit events dropped"),
        "no drop warning:\n{stderr}"
    );
}
