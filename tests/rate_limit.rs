//! `rate_limit` rules end to end (SPEC section 4, issue 5): refusals with
//! `Retry-After` and the rule's message, the penalty and the full bucket
//! after it, one bucket per client IP, one bucket across all workers, and
//! dry-run limits. Periods are long enough that refilling cannot change a
//! count during a test; every assertion is on counts, none on speed.

#[macro_use]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::ops::{get_request, recording_engine, wait_audit};
use support::{Proxy, Response};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const MESSAGE: &str = "too many container listings from this CI job; slow down";

fn limit_rule(requests: u32, period: u64, penalty: u64, dry_run: bool) -> String {
    format!(
        r#"rules:
  - name: limit-listing
    action: rate_limit
    message: "{MESSAGE}"
    dry_run: {dry_run}
    rate_limit:
      requests: {requests}
      period: {period}
      penalty: {penalty}
    conditions:
      - field: path
        operator: equals
        value: /containers/json
"#
    )
}

const LIST: &str = "/v1.41/containers/json";

fn list_from(proxy: &Proxy, ip: IpAddr) -> Response {
    proxy.request_from(ip, &get_request(LIST, &[]))
}

/// Asserts a rate-limit refusal and returns its `Retry-After` seconds.
fn assert_limited(response: &Response, penalty: u64) -> u64 {
    let message = response.assert_json_error(429);
    assert_eq!(message, MESSAGE);
    let retry: u64 = response
        .header("retry-after")
        .expect("Retry-After on a 429")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=penalty).contains(&retry),
        "Retry-After {retry} outside 1..={penalty}"
    );
    retry
}

#[test]
fn burst_over_the_limit_gets_429_with_retry_after_and_the_rules_message() {
    let setup = recording_engine();
    let proxy = setup
        .engine
        .options()
        .rules(&limit_rule(5, 3600, 60, false))
        .start();
    let statuses: Vec<u16> = (0..8).map(|_| list_from(&proxy, LOCAL).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_limited(&list_from(&proxy, LOCAL), 60);
    assert_eq!(
        setup.forwarded(LIST),
        5,
        "refused requests never reach the engine"
    );

    // Requests the rule does not cover are not limited.
    let other = proxy.request(&get_request("/v1.41/info", &[]));
    assert_eq!(other.status, 200);

    // Keep-alive: refusals on one connection leave it usable.
    let mut client = proxy.connect();
    for _ in 0..3 {
        client.send(&get_request(LIST, &[]));
        assert_limited(&client.read_response(), 60);
    }
}

#[test]
fn penalty_holds_for_its_duration_then_the_bucket_is_full_again() {
    const PENALTY: u64 = 3;
    let setup = recording_engine();
    let proxy = setup
        .engine
        .options()
        .rules(&limit_rule(3, 3600, PENALTY, false))
        .start();
    for _ in 0..3 {
        assert_eq!(list_from(&proxy, LOCAL).status, 200);
    }
    let refused = list_from(&proxy, LOCAL);
    let refused_at = Instant::now();
    assert_limited(&refused, PENALTY);

    // Well inside the penalty, requests are refused even though a bucket
    // refilling at its normal rate would not matter here.
    let mut inside = 0;
    while refused_at.elapsed() < Duration::from_millis(1500) {
        assert_limited(&list_from(&proxy, LOCAL), PENALTY);
        inside += 1;
        thread::sleep(Duration::from_millis(100));
    }
    assert!(inside > 0);

    // After the penalty the first request passes (bounded wait).
    let passed = support::wait_for(Duration::from_secs(PENALTY + 10), || {
        let response = list_from(&proxy, LOCAL);
        (response.status == 200).then_some(())
    });
    assert!(passed.is_some(), "still refused long after the penalty");
    // The bucket is full again: the capacity (3) passes in total, then 429.
    assert_eq!(list_from(&proxy, LOCAL).status, 200);
    assert_eq!(list_from(&proxy, LOCAL).status, 200);
    assert_limited(&list_from(&proxy, LOCAL), PENALTY);
    assert_eq!(setup.forwarded(LIST), 6);
}

#[test]
fn two_client_ips_have_separate_buckets() {
    let setup = recording_engine();
    let proxy = setup
        .engine
        .options()
        .rules(&limit_rule(4, 3600, 60, false))
        .start();
    let local: Vec<u16> = (0..6).map(|_| list_from(&proxy, LOCAL).status).collect();
    assert_eq!(local, [200, 200, 200, 200, 429, 429]);
    // 127.0.0.2 starts with a full bucket of its own.
    let other: Vec<u16> = (0..6).map(|_| list_from(&proxy, OTHER).status).collect();
    assert_eq!(other, [200, 200, 200, 200, 429, 429]);
    // ... and did not refill 127.0.0.1's.
    assert_eq!(list_from(&proxy, LOCAL).status, 429);
    let peers: Vec<String> = setup
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(peers.len(), 8);
}

#[test]
fn connections_on_all_workers_share_one_bucket() {
    const ALLOWED: u32 = 20;
    const THREADS: usize = 6;
    const PER_THREAD: usize = 15;
    let setup = recording_engine();
    // Two workers, each with its own SO_REUSEPORT listener: the kernel
    // spreads the 90 connections over both (all on one worker would have
    // a chance of 2^-89).
    let proxy = Arc::new(
        setup
            .engine
            .options()
            .workers(2)
            .rules(&limit_rule(ALLOWED, 3600, 600, false))
            .start(),
    );
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let proxy = proxy.clone();
            let statuses = statuses.clone();
            thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let status = list_from(&proxy, LOCAL).status;
                    statuses.lock().unwrap().push(status);
                }
            })
        })
        .collect();
    for handle in threads {
        handle.join().expect("client thread");
    }
    let statuses = statuses.lock().unwrap();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok, ALLOWED as usize, "{statuses:?}");
    assert_eq!(
        limited,
        THREADS * PER_THREAD - ALLOWED as usize,
        "{statuses:?}"
    );
    assert_eq!(setup.forwarded(LIST), ALLOWED as usize);
}

#[test]
fn dry_run_rate_limit_records_and_lets_requests_through() {
    let setup = recording_engine();
    let audit_dir = tempfile::tempdir().expect("temporary directory");
    let audit = audit_dir.path().join("audit.jsonl");
    let proxy = setup
        .engine
        .options()
        .global(&format!("audit_log: {}", audit.display()))
        .global("metrics:\n  enabled: true")
        .rules(&limit_rule(2, 3600, 60, true))
        .start();
    let statuses: Vec<u16> = (0..6).map(|_| list_from(&proxy, LOCAL).status).collect();
    assert_eq!(statuses, [200; 6]);
    assert_eq!(setup.forwarded(LIST), 6);

    let records = wait_audit(&audit, 4, |r| r.event == "dry_run");
    let dry: Vec<_> = records.iter().filter(|r| r.event == "dry_run").collect();
    assert_eq!(dry.len(), 4, "{records:#?}");
    for record in dry {
        assert_eq!(record.rule_name.as_deref(), Some("limit-listing"));
        assert!(record.dry_run);
        assert_eq!(record.path, "/containers/json");
        assert_eq!(record.peer_ip, "127.0.0.1");
    }
    assert!(records.iter().all(|r| r.event != "rate_limited"));

    let metrics = proxy.scrape("/metrics");
    assert_eq!(
        metrics.value("docker_proxy_requests_dry_run_total", &[]),
        4.0
    );
    assert_eq!(metrics.value("docker_proxy_rate_limited_total", &[]), 0.0);
    assert_eq!(
        metrics.value(
            "docker_proxy_rule_decisions_total",
            &[("rule", "limit-listing"), ("mode", "dry_run")]
        ),
        4.0
    );
    assert!(!metrics.has(
        "docker_proxy_rule_decisions_total",
        &[("rule", "limit-listing"), ("mode", "enforced")]
    ));
}
