//! Running the proxy day to day (SPEC section 8, issue 6): the audit file
//! record by record, metrics scraped and parsed as Prometheus text, reload
//! under load (also of broken configs), shutdown with open streams, JSON
//! logs, health endpoints, and no secret in any log or audit line.
//!
//! Dropping audit records when the writer falls behind (without blocking a
//! request) is shown by `drops_and_counts_when_the_writer_is_stalled` in
//! `src/audit/mod.rs`, where the writer can be stalled on purpose.

#[macro_use]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::ops::{
    get_request, get_with_token, is_rfc3339_utc, json_lines, read_audit, recording_engine,
    wait_audit, Metrics,
};
use support::{
    Cli, ContainerGuard, FakeEngine, Proxy, ProxyOptions, RawClient, Response, ENGINE_SOCKET,
    IMAGE, TEST_LABEL,
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Token values: none of them may ever show up in a log or audit line.
const CI_TOKEN: &str = "tok-ci-7c1d9e55b0a34f6e";
const ADMIN_TOKEN: &str = "tok-admin-4be0c2d7a9f14e31";
const WRONG_TOKEN: &str = "tok-wrong-93a1f0e6c2b84d57";
const REGISTRY_AUTH: &str = "eyJyZWdpc3RyeS1zZWNyZXQiOiJkNGY3YTJjOSJ9";
const USER_AGENT: &str = "ops-test/1.0";

fn bearer_auth(lockout_failures: u32) -> String {
    format!(
        "auth:\n  type: bearer\n  tokens:\n    - token: {CI_TOKEN}\n      role: ci\n\
         \x20     name: ci-runner\n\
         \x20   - token: {ADMIN_TOKEN}\n      role: admin\n  lockout:\n\
         \x20   failures: {lockout_failures}\n\
         \x20   window: 60\n    duration: 30\n"
    )
}

const DENY_MESSAGE: &str = "secrets are not for CI jobs";
const LIMIT_MESSAGE: &str = "image listing is rate limited";

/// A deny, a dry-run deny and a rate limit, on separate paths.
const POLICY: &str = r#"rules:
  - name: deny-secrets
    action: deny
    message: "secrets are not for CI jobs"
    conditions:
      - field: path
        operator: starts_with
        value: /secrets
  - name: watch-networks
    action: deny
    dry_run: true
    message: "networks would be refused"
    conditions:
      - field: path
        operator: starts_with
        value: /networks
  - name: limit-images
    action: rate_limit
    message: "image listing is rate limited"
    rate_limit:
      requests: 1
      period: 3600
      penalty: 60
    conditions:
      - field: path
        operator: equals
        value: /images/json
"#;

fn with_token(target: &str, token: &str) -> Vec<u8> {
    get_with_token(
        target,
        token,
        &[
            &format!("User-Agent: {USER_AGENT}"),
            &format!("X-Registry-Auth: {REGISTRY_AUTH}"),
        ],
    )
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [CI_TOKEN, ADMIN_TOKEN, WRONG_TOKEN, REGISTRY_AUTH] {
        assert!(
            !text.contains(secret),
            "{what} contains the secret {secret:?}:\n{text}"
        );
    }
}

// === audit ===

#[test]
fn audit_records_each_event_type_field_by_field() {
    let setup = recording_engine();
    let dir = tempfile::tempdir().expect("temporary directory");
    // A directory that does not exist yet: the proxy creates it.
    let audit = dir.path().join("audit").join("audit.jsonl");
    let proxy = setup
        .engine
        .options()
        .auth(&bearer_auth(3))
        .global(&format!("audit_log: {}", audit.display()))
        .rules(POLICY)
        .start();

    let deny = proxy.request(&with_token("/v1.41/secrets?x=1", CI_TOKEN));
    assert_eq!(deny.assert_json_error(403), DENY_MESSAGE);
    let dry = proxy.request(&with_token("/v1.41/networks", CI_TOKEN));
    assert_eq!(dry.status, 200, "a dry-run rule lets the request through");
    assert_eq!(
        proxy
            .request(&with_token("/images/json", ADMIN_TOKEN))
            .status,
        200
    );
    let limited = proxy.request(&with_token("/images/json", ADMIN_TOKEN));
    assert_eq!(limited.assert_json_error(429), LIMIT_MESSAGE);
    // Three failures from 127.0.0.2 lock it out; then even a good token
    // gets 429.
    for _ in 0..3 {
        let failed = proxy.request_from(OTHER, &with_token("/v1.41/info", WRONG_TOKEN));
        failed.assert_json_error(401);
    }
    let locked = proxy.request_from(OTHER, &with_token("/v1.41/info", CI_TOKEN));
    locked.assert_json_error(429);
    assert!(locked.header("retry-after").is_some());

    let records = wait_audit(&audit, 1, |r| r.event == "lockout");
    let of = |event: &str| -> Vec<&support::ops::AuditRecord> {
        records.iter().filter(|r| r.event == event).collect()
    };
    for record in &records {
        assert!(
            is_rfc3339_utc(&record.timestamp),
            "timestamp {:?}",
            record.timestamp
        );
        assert_eq!(record.method, "GET");
        assert_eq!(record.user_agent.as_deref(), Some(USER_AGENT));
    }

    let deny = of("deny");
    assert_eq!(deny.len(), 1, "{records:#?}");
    let deny = deny[0];
    assert_eq!(deny.peer_ip, "127.0.0.1");
    assert_eq!(
        deny.path, "/secrets",
        "canonical path, no version, no query"
    );
    assert_eq!(deny.user_role.as_deref(), Some("ci"));
    assert_eq!(
        deny.identity.as_deref(),
        Some("ci-runner"),
        "the token's name"
    );
    assert_eq!(deny.rule_name.as_deref(), Some("deny-secrets"));
    assert_eq!(deny.rule_action.as_deref(), Some("deny"));
    assert_eq!(deny.status, 403);
    assert!(!deny.dry_run);
    assert_eq!(deny.message, DENY_MESSAGE);

    let dry = of("dry_run");
    assert_eq!(dry.len(), 1, "{records:#?}");
    let dry = dry[0];
    assert_eq!(dry.peer_ip, "127.0.0.1");
    assert_eq!(dry.path, "/networks");
    assert_eq!(dry.user_role.as_deref(), Some("ci"));
    assert_eq!(dry.identity.as_deref(), Some("ci-runner"));
    assert_eq!(dry.rule_name.as_deref(), Some("watch-networks"));
    assert!(dry.rule_action.is_some());
    assert!(dry.dry_run);
    assert!(dry.message.contains("watch-networks"), "{}", dry.message);

    let limited = of("rate_limited");
    assert_eq!(limited.len(), 1, "{records:#?}");
    let limited = limited[0];
    assert_eq!(limited.path, "/images/json");
    assert_eq!(limited.user_role.as_deref(), Some("admin"));
    assert_eq!(
        limited.identity, None,
        "a token without a name has no identity"
    );
    assert_eq!(limited.rule_name.as_deref(), Some("limit-images"));
    assert_eq!(limited.rule_action.as_deref(), Some("rate_limit"));
    assert_eq!(limited.status, 429);
    assert!(!limited.dry_run);
    assert_eq!(limited.message, LIMIT_MESSAGE);

    let failures = of("auth_failure");
    assert_eq!(failures.len(), 3, "{records:#?}");
    for failure in failures {
        assert_eq!(failure.peer_ip, "127.0.0.2");
        assert_eq!(failure.path, "/info");
        assert_eq!(failure.user_role, None);
        assert_eq!(failure.identity, None);
        assert_eq!(failure.rule_name, None);
        assert_eq!(failure.rule_action, None);
        assert_eq!(failure.status, 401);
        assert!(!failure.dry_run);
        assert_eq!(failure.message, "invalid bearer token");
    }

    let lockout = of("lockout");
    assert_eq!(lockout.len(), 1, "{records:#?}");
    let lockout = lockout[0];
    assert_eq!(lockout.peer_ip, "127.0.0.2");
    assert_eq!(lockout.path, "/info");
    assert_eq!(lockout.rule_name, None);
    assert_eq!(lockout.status, 429);
    assert!(!lockout.dry_run);
    assert!(lockout.message.contains("127.0.0.2"), "{}", lockout.message);

    assert_eq!(records.len(), 7, "nothing else is audited: {records:#?}");
    let mode = std::fs::metadata(&audit)
        .expect("audit file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "audit file mode {mode:o}");
    assert_no_secret("the audit file", &std::fs::read_to_string(&audit).unwrap());
    assert_no_secret("the proxy's log", &proxy.stderr());
}

/// SPEC section 8: a dry-run record names the action the rule would have
/// taken in `rule_action` (`dry_run: true` already says it was not
/// enforced).
#[test]
fn dry_run_audit_record_names_the_rules_action() {
    let setup = recording_engine();
    let dir = tempfile::tempdir().expect("temporary directory");
    let audit = dir.path().join("audit.jsonl");
    let proxy = setup
        .engine
        .options()
        .global(&format!("audit_log: {}", audit.display()))
        .rules(POLICY)
        .start();
    assert_eq!(proxy.request(&get_request("/networks", &[])).status, 200);
    let records = wait_audit(&audit, 1, |r| r.event == "dry_run");
    assert_eq!(records[0].rule_action.as_deref(), Some("deny"));
    assert!(records[0].dry_run);
    // The status the rule would have refused with.
    assert_eq!(records[0].status, 403);
}

#[test]
fn audit_file_is_reopened_on_sighup_after_rotation() {
    let setup = recording_engine();
    let dir = tempfile::tempdir().expect("temporary directory");
    let audit = dir.path().join("audit.jsonl");
    let proxy = setup
        .engine
        .options()
        .global(&format!("audit_log: {}", audit.display()))
        .rules(POLICY)
        .start();
    proxy
        .request(&get_request("/secrets", &[]))
        .assert_json_error(403);
    wait_audit(&audit, 1, |r| r.event == "deny");
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).expect("rotate");
    proxy.signal(libc::SIGHUP);
    proxy.wait_stderr("configuration reloaded", Duration::from_secs(10));
    // The reopen may trail the reload line; keep denying until a record
    // lands in the new file.
    let landed = support::wait_for(Duration::from_secs(10), || {
        proxy
            .request(&get_request("/secrets", &[]))
            .assert_json_error(403);
        (!read_audit(&audit).is_empty()).then_some(())
    });
    assert!(
        landed.is_some(),
        "no record in the new audit file after SIGHUP"
    );
    let mode = std::fs::metadata(&audit)
        .expect("new audit file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        read_audit(&rotated).len(),
        1,
        "the rotated file keeps its record"
    );
}

// === metrics ===

#[test]
fn metrics_counters_move_with_the_requests_made() {
    let setup = recording_engine();
    let proxy = setup
        .engine
        .options()
        .auth(&bearer_auth(10))
        .global("metrics:\n  enabled: true\n  path: /internal/metrics")
        .rules(POLICY)
        .start();
    // Unauthenticated, at the configured path.
    let before = proxy.scrape("/internal/metrics");
    // The classic text format names counter families with `_total`.
    for family in [
        "docker_proxy_requests_total",
        "docker_proxy_requests_denied_total",
        "docker_proxy_requests_dry_run_total",
        "docker_proxy_auth_failures_total",
        "docker_proxy_rate_limited_total",
        "docker_proxy_upgrade_total",
        "docker_proxy_rule_decisions_total",
        "docker_proxy_upstream_latency_ms",
        "docker_proxy_upstream_errors_total",
        "docker_proxy_audit_dropped_total",
        "docker_proxy_reloads_total",
        "docker_proxy_active_connections",
        "docker_proxy_build_info",
    ] {
        assert!(
            before.documented(family),
            "no HELP for {family}:\n{}",
            before.text
        );
    }
    assert!(before.has(
        "docker_proxy_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    ));

    for _ in 0..2 {
        proxy
            .request(&with_token("/secrets", CI_TOKEN))
            .assert_json_error(403);
    }
    for _ in 0..3 {
        assert_eq!(
            proxy.request(&with_token("/networks", CI_TOKEN)).status,
            200
        );
    }
    assert_eq!(
        proxy.request(&with_token("/images/json", CI_TOKEN)).status,
        200
    );
    for _ in 0..2 {
        proxy
            .request(&with_token("/images/json", CI_TOKEN))
            .assert_json_error(429);
    }
    for _ in 0..2 {
        proxy
            .request(&with_token("/info", WRONG_TOKEN))
            .assert_json_error(401);
    }
    proxy
        .request(&get_request("/info", &[]))
        .assert_json_error(401);
    for _ in 0..4 {
        assert_eq!(proxy.request(&with_token("/info", ADMIN_TOKEN)).status, 200);
    }
    let after = proxy.scrape("/internal/metrics");

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    // 15 requests plus the second scrape itself.
    assert_eq!(
        delta("docker_proxy_requests_total", &[]),
        16.0,
        "{}",
        after.text
    );
    assert_eq!(delta("docker_proxy_requests_denied_total", &[]), 2.0);
    assert_eq!(delta("docker_proxy_requests_dry_run_total", &[]), 3.0);
    assert_eq!(delta("docker_proxy_auth_failures_total", &[]), 3.0);
    assert_eq!(delta("docker_proxy_rate_limited_total", &[]), 2.0);
    assert_eq!(delta("docker_proxy_upgrade_total", &[]), 0.0);
    assert_eq!(delta("docker_proxy_upstream_errors_total", &[]), 0.0);
    let decisions = |rule: &str, mode: &str| {
        after.value(
            "docker_proxy_rule_decisions_total",
            &[("rule", rule), ("mode", mode)],
        )
    };
    assert_eq!(decisions("deny-secrets", "enforced"), 2.0, "{}", after.text);
    assert_eq!(decisions("watch-networks", "dry_run"), 3.0);
    assert_eq!(decisions("limit-images", "enforced"), 2.0);
    assert_eq!(decisions("watch-networks", "enforced"), 0.0);

    // The latency histogram counts each forwarded request: 3 + 1 + 4.
    let histogram = after
        .sample("docker_proxy_upstream_latency_ms", &[])
        .expect("the upstream latency histogram");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    assert!(buckets.len() > 5, "{buckets:?}");
    let infinite = buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .expect("+Inf bucket");
    assert_eq!(infinite.count, 8.0, "{}", after.text);
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative: {buckets:?}"
    );
    assert_eq!(delta("docker_proxy_upstream_latency_ms_count", &[]), 8.0);
    assert!(after.value("docker_proxy_active_connections", &[]) >= 1.0);
    assert_eq!(
        setup.seen.lock().unwrap().len(),
        8,
        "refused requests never reach the engine"
    );
    assert_no_secret("the metrics", &after.text);
}

#[test]
fn upgrade_counter_moves_with_docker_exec() {
    require_engine!();
    let proxy = ProxyOptions::new(ENGINE_SOCKET)
        .global("metrics:\n  enabled: true")
        .start();
    let container = ContainerGuard::new("opsexec");
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &container.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sleep",
            "300",
        ])
        .timeout(Duration::from_secs(60))
        .run()
        .assert_success("docker run -d (direct)");
    let before = proxy
        .scrape("/metrics")
        .value("docker_proxy_upgrade_total", &[]);
    let out = proxy.docker(&["exec", &container.name, "echo", "upgraded"]);
    out.assert_success("docker exec");
    assert_eq!(out.stdout.trim(), "upgraded");
    let after = proxy
        .scrape("/metrics")
        .value("docker_proxy_upgrade_total", &[]);
    assert_eq!(after - before, 1.0, "one upgraded stream for one exec");
}

// === reload ===

const RELOAD_METRIC: &str = "docker_proxy_reloads_total";
const POLICY_B_MESSAGE: &str = "policy B refuses /info";

/// Which policy decided one response.
#[derive(Debug, Clone, PartialEq)]
enum Decided {
    A,
    B,
    Other(String),
}

fn classify(response: &Response) -> Decided {
    match response.status {
        200 if response.text() == "{\"ok\":true}" => Decided::A,
        403 if response.text().contains(POLICY_B_MESSAGE) => Decided::B,
        _ => Decided::Other(format!("{} {}", response.status, response.text())),
    }
}

fn reload_options(engine: &FakeEngine, policy: char) -> ProxyOptions {
    let rules = match policy {
        // A: nothing refuses /info.
        'A' => "rules:\n  - name: allow-all\n    action: allow\n".to_owned(),
        'B' => format!(
            "rules:\n  - name: deny-info\n    action: deny\n    message: \"{POLICY_B_MESSAGE}\"\n\
             \x20   conditions:\n      - field: path\n        operator: equals\n\
             \x20       value: /info\n"
        ),
        _ => unreachable!(),
    };
    engine
        .options()
        .global("metrics:\n  enabled: true")
        .limit("shutdown_grace", 2)
        .rules(&rules)
}

const BROKEN_RULES: &str = "rules:\n  - name: deny-info\n    action: deny\n    conditions:\n      \
                            - field: path\n        operator: startswith\n        value: /info\n  \
                            - name: second\n    action: refuse\n";

fn reloads(proxy: &Proxy, result: &str) -> f64 {
    proxy
        .scrape("/metrics")
        .value(RELOAD_METRIC, &[("result", result)])
}

fn wait_reloads(proxy: &Proxy, result: &str, count: f64) {
    let done = support::wait_for(Duration::from_secs(15), || {
        (reloads(proxy, result) >= count).then_some(())
    });
    assert!(
        done.is_some(),
        "reload ({result}) #{count} not counted:\n{}",
        proxy.stderr()
    );
}

/// A client loop: fresh connections and one keep-alive connection in turn,
/// until `stop`; every response is classified.
fn client_loop(addr: String, stop: Arc<AtomicBool>, decided: Arc<Mutex<Vec<Decided>>>) {
    let request = get_request("/v1.41/info", &[]);
    let mut keep: Option<RawClient> = None;
    let mut turn = 0u64;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let response = if turn.is_multiple_of(2) {
            let mut client = RawClient::connect(&addr);
            client.send(&request);
            client.read_response()
        } else {
            let client = keep.get_or_insert_with(|| RawClient::connect(&addr));
            client.send(&request);
            let response = client.read_response();
            if response
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                keep = None;
            }
            response
        };
        decided.lock().unwrap().push(classify(&response));
    }
}

#[test]
fn reload_under_load_decides_each_request_by_the_old_or_the_new_policy() {
    let setup = recording_engine();
    let start_options = reload_options(&setup.engine, 'A');
    let proxy = start_options.clone().start();
    let fresh = || classify(&proxy.request(&get_request("/info", &[])));
    assert_eq!(fresh(), Decided::A);

    let stop = Arc::new(AtomicBool::new(false));
    let decided = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (addr, stop, decided) = (proxy.addr(), stop.clone(), decided.clone());
            thread::spawn(move || client_loop(addr, stop, decided))
        })
        .collect();

    let mut current = 'A';
    let (mut ok, mut failed) = (0.0, 0.0);
    for step in ['B', 'x', 'A', 'B', 'x', 'A', 'B'] {
        thread::sleep(Duration::from_millis(150));
        if step == 'x' {
            let mut broken = proxy.config_text(&reload_options(&setup.engine, current));
            let cut = broken.find("rules:").expect("rules section");
            broken.truncate(cut);
            broken.push_str(BROKEN_RULES);
            proxy.write_config(&broken);
            proxy.signal(libc::SIGHUP);
            failed += 1.0;
            wait_reloads(&proxy, "failure", failed);
            // Still the old policy, for every new request.
            for _ in 0..5 {
                let expected = if current == 'A' {
                    Decided::A
                } else {
                    Decided::B
                };
                assert_eq!(fresh(), expected, "a broken config changed the policy");
            }
        } else {
            proxy.write_config(&proxy.config_text(&reload_options(&setup.engine, step)));
            proxy.signal(libc::SIGHUP);
            ok += 1.0;
            wait_reloads(&proxy, "success", ok);
            let expected = if step == 'A' { Decided::A } else { Decided::B };
            let switched = support::wait_for(Duration::from_secs(5), || {
                (fresh() == expected).then_some(())
            });
            assert!(
                switched.is_some(),
                "new requests not decided by the new policy {step}"
            );
            current = step;
        }
    }
    thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .join()
            .expect("a client request failed during reloads");
    }

    let decided = decided.lock().unwrap();
    let others: Vec<_> = decided
        .iter()
        .filter(|d| matches!(d, Decided::Other(_)))
        .collect();
    assert!(
        others.is_empty(),
        "requests decided by neither policy: {others:?}"
    );
    let a = decided.iter().filter(|d| **d == Decided::A).count();
    let b = decided.iter().filter(|d| **d == Decided::B).count();
    assert!(
        a > 0 && b > 0,
        "both policies decided requests under load: A {a}, B {b}"
    );
    assert!(decided.len() >= 50, "only {} requests made", decided.len());

    let stderr = proxy.stderr();
    assert!(stderr.contains("reload rejected"), "{stderr}");
    // Every problem of the broken file is named with its location.
    assert!(
        stderr.contains("rules[0].conditions[0].operator"),
        "{stderr}"
    );
    assert!(stderr.contains("rules[1].action"), "{stderr}");
    assert_eq!(reloads(&proxy, "success"), 5.0);
    assert_eq!(reloads(&proxy, "failure"), 2.0);
}

#[test]
fn reload_warns_that_a_port_change_needs_a_restart() {
    let setup = recording_engine();
    let options = setup.engine.options().config_only();
    let proxy = options.clone().start();
    let text = proxy.config_text(&options);
    let moved = text.replacen(&format!("port: {}", proxy.port), "port: 1", 1);
    assert_ne!(moved, text);
    proxy.write_config(&moved);
    proxy.signal(libc::SIGHUP);
    let stderr = proxy.wait_stderr("needs a restart", Duration::from_secs(10));
    assert!(stderr.contains("global.port"), "{stderr}");
    // Still serving on the old port.
    assert_eq!(proxy.request(&get_request("/info", &[])).status, 200);
}

// === shutdown ===

#[test]
fn sigterm_exits_within_the_grace_period_despite_open_streams() {
    require_engine!();
    const GRACE: u64 = 2;
    let mut proxy = ProxyOptions::new(ENGINE_SOCKET)
        .limit("shutdown_grace", GRACE)
        .start();
    let container = ContainerGuard::new("opsdrain");
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &container.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.2; done",
        ])
        .timeout(Duration::from_secs(60))
        .run()
        .assert_success("docker run -d (direct)");

    let mut logs = proxy
        .cli(&["logs", "-f", &container.name])
        .timeout(Duration::from_secs(60))
        .spawn();
    logs.expect_line("tick", Duration::from_secs(20));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .saturating_sub(120)
        .to_string();
    let mut events = proxy
        .cli(&[
            "events",
            "--since",
            &since,
            "--filter",
            &format!("container={}", container.name),
            "--filter",
            "event=start",
            "--format",
            "{{.Action}}",
        ])
        .timeout(Duration::from_secs(60))
        .spawn();
    events.expect_line("start", Duration::from_secs(20));
    logs.expect_line("tick", Duration::from_secs(5));

    let signalled = Instant::now();
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(GRACE + 1));
    let took = signalled.elapsed();
    let status = status
        .unwrap_or_else(|| panic!("still running {took:?} after SIGTERM:\n{}", proxy.stderr()));
    assert!(status.success(), "exit status {status:?}");
    // The streams end with the proxy; the CLI processes finish on their own.
    logs.wait_exit(Duration::from_secs(10));
    events.wait_exit(Duration::from_secs(10));
    let stderr = proxy.stderr();
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn sigterm_lets_an_ordinary_request_finish_and_stops_accepting() {
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let arrived_tx = Mutex::new(arrived_tx);
    let engine = FakeEngine::start(move |conn| {
        while let Some(request) = conn.read_request() {
            if request.target.ends_with("/slow") {
                let _ = arrived_tx.lock().unwrap().send(());
                thread::sleep(Duration::from_millis(800));
            }
            conn.respond(200, "application/json", b"{\"ok\":true}");
        }
    });
    let mut proxy = engine.options().limit("shutdown_grace", 5).start();
    let mut client = proxy.connect();
    client.send(&get_request("/v1.41/slow", &[]));
    arrived
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reached the engine");
    let signalled = Instant::now();
    proxy.signal(libc::SIGTERM);

    let response = client.read_response();
    assert_eq!(
        response.status, 200,
        "an in-flight request completes during the drain"
    );
    assert_eq!(response.text(), "{\"ok\":true}");
    assert!(
        proxy.wait_exit(Duration::from_secs(6)).is_some(),
        "no exit within the grace period"
    );
    assert!(signalled.elapsed() < Duration::from_secs(6));
    let refused = std::net::TcpStream::connect(proxy.addr());
    assert!(refused.is_err(), "still accepting after the exit");
}

// === logs ===

#[test]
fn json_log_format_writes_one_object_per_line() {
    let setup = recording_engine();
    let proxy = setup
        .engine
        .options()
        .auth(&bearer_auth(10))
        .global("log_format: json")
        .rules(POLICY)
        .start();
    proxy
        .request(&with_token("/v1.41/secrets/abc", CI_TOKEN))
        .assert_json_error(403);
    proxy
        .request(&with_token("/v1.41/info", WRONG_TOKEN))
        .assert_json_error(401);
    let stderr = proxy.wait_stderr("authentication failed", Duration::from_secs(10));
    proxy.wait_stderr("denied by policy", Duration::from_secs(10));

    let lines = json_lines(&stderr);
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line.contains_key(key), "no {key} in {line:?}");
        }
        assert!(
            is_rfc3339_utc(line["timestamp"].as_str().unwrap_or_default()),
            "{line:?}"
        );
    }
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in:\n{stderr}"))
            .clone()
    };
    let started = find("docker-api-proxy started");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(started["workers"], 2);
    assert!(
        matches!(
            (
                started["driver"].as_str(),
                started["uring_taskrun"].as_str()
            ),
            (Some("io_uring"), Some("defer" | "coop" | "interrupt"))
                | (Some("epoll"), Some("none"))
        ),
        "{started:?}"
    );
    assert_eq!(started["listen"], proxy.addr());
    assert!(
        started["socket"]
            .as_str()
            .unwrap_or_default()
            .contains("engine.sock"),
        "{started:?}"
    );
    assert_eq!(started["auth"], "bearer");
    assert_eq!(started["rules"], 3);

    let denied = find("denied by policy");
    assert_eq!(denied["level"], "INFO");
    assert_eq!(denied["policy.rule"], "deny-secrets");
    assert_eq!(denied["http.path"], "/secrets/abc");
    assert_eq!(denied["client.identity"], "ci-runner");
    assert_no_secret("the JSON log", &stderr);
}

#[test]
fn logs_and_audit_never_contain_tokens_even_at_debug() {
    let setup = recording_engine();
    let dir = tempfile::tempdir().expect("temporary directory");
    let audit = dir.path().join("audit.jsonl");
    let proxy = setup
        .engine
        .options()
        .auth(&bearer_auth(2))
        .global("log_level: debug")
        .global(&format!("audit_log: {}", audit.display()))
        .rules(POLICY)
        .start();
    assert_eq!(
        proxy.request(&with_token("/v1.41/info", CI_TOKEN)).status,
        200
    );
    proxy
        .request(&with_token("/v1.41/secrets", ADMIN_TOKEN))
        .assert_json_error(403);
    for _ in 0..2 {
        proxy
            .request_from(OTHER, &with_token("/v1.41/info", WRONG_TOKEN))
            .assert_json_error(401);
    }
    proxy
        .request_from(OTHER, &with_token("/v1.41/info", CI_TOKEN))
        .assert_json_error(429);
    // A token in a malformed header must not be echoed either.
    let malformed = get_request(
        "/v1.41/info",
        &[&format!("Authorization: Bearer {WRONG_TOKEN} extra")],
    );
    proxy.request_from(LOCAL, &malformed).assert_json_error(401);
    wait_audit(&audit, 1, |r| r.event == "lockout");
    proxy.wait_stderr("authentication failed", Duration::from_secs(10));

    assert_no_secret("the debug log", &proxy.stderr());
    assert_no_secret("the audit file", &std::fs::read_to_string(&audit).unwrap());
    // The engine never sees the proxy's credentials either.
    for request in setup.seen.lock().unwrap().iter() {
        assert!(!request.has_header("authorization"), "{request:?}");
    }
}

// === health ===

#[test]
fn health_and_ready_endpoints_answer_without_credentials() {
    let setup = recording_engine();
    let proxy = setup.engine.options().auth(&bearer_auth(10)).start();
    let live = proxy.request(&get_request("/healthz", &[]));
    assert_eq!((live.status, live.text().as_str()), (200, "ok\n"));
    let ready = support::wait_for(Duration::from_secs(10), || {
        let ready = proxy.request(&get_request("/readyz", &[]));
        (ready.status == 200).then_some(ready)
    })
    .expect("/readyz turns 200 once the engine answered _ping");
    assert_eq!(ready.text(), "ready\n");
    let head = proxy.request(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(
        setup.seen.lock().unwrap().is_empty(),
        "health checks are answered locally"
    );

    // No engine behind the proxy: alive, but not ready.
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("no-engine.sock");
    let lonely = ProxyOptions::new(&missing).start();
    assert_eq!(lonely.request(&get_request("/healthz", &[])).status, 200);
    lonely
        .request(&get_request("/readyz", &[]))
        .assert_json_error(503);
}

#[test]
fn health_paths_are_configurable_and_can_be_disabled() {
    let setup = recording_engine();
    let custom = setup
        .engine
        .options()
        .global("health:\n  live_path: /-/live\n  ready_path: /-/ready")
        .start();
    assert_eq!(custom.request(&get_request("/-/live", &[])).status, 200);
    assert!(support::wait_for(Duration::from_secs(10), || {
        (custom.request(&get_request("/-/ready", &[])).status == 200).then_some(())
    })
    .is_some());
    // The default paths are now ordinary requests for the engine.
    assert_eq!(
        custom.request(&get_request("/healthz", &[])).text(),
        "{\"ok\":true}"
    );

    let disabled = setup
        .engine
        .options()
        .global("health:\n  enabled: false")
        .start();
    assert_eq!(
        disabled.request(&get_request("/readyz", &[])).text(),
        "{\"ok\":true}"
    );
    let targets: Vec<String> = setup
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/healthz", "/readyz"]);
}

/// Metrics are off by default: the path is an ordinary request.
#[test]
fn metrics_are_off_unless_enabled() {
    let setup = recording_engine();
    let proxy = setup.engine.options().start();
    let response = proxy.request(&get_request("/metrics", &[]));
    assert_eq!(response.text(), "{\"ok\":true}");
    let _ = Metrics::parse("");
}
