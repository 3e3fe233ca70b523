//! Authentication end to end (SPEC section 4, `auth`): every row of "how
//! authentication resolves", bearer tokens and their roles, lockout, the
//! `Authorization` header never reaching the engine, secrets never reaching
//! logs, and the real docker CLI sending its token from a client config
//! file. TLS and mutual TLS are in `tls_e2e.rs`.

#[macro_use]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{
    recording_handler, wait_for, Cli, ContainerGuard, EngineRequest, FakeEngine, Proxy,
    ProxyOptions, RawClient, Response, ENGINE_SOCKET, IMAGE, TEST_LABEL,
};

// === helpers ===

/// The path the role-reporting rules look at (what `docker ps` asks for).
const PROBE: &str = "/v1.41/containers/json";

fn get(target: &str, authorization: Option<&str>) -> Vec<u8> {
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\n{auth}\r\n").into_bytes()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A fake engine answering 200 to everything and recording each request.
fn recording_engine() -> (FakeEngine, Arc<Mutex<Vec<EngineRequest>>>) {
    let store = Arc::new(Mutex::new(Vec::new()));
    (FakeEngine::start(recording_handler(store.clone())), store)
}

/// Rules that refuse `GET /containers/json` with the caller's role in the
/// message, one rule per listed role, plus a catch-all for any other
/// non-empty role. A request with no role passes (200).
fn role_rules(roles: &[&str]) -> String {
    let mut yaml = String::from("rules:\n");
    for role in roles {
        yaml.push_str(&format!(
            "  - name: report-role-{role}\n    action: deny\n    message: \"role is {role}\"\n    \
             conditions:\n      - {{field: path, operator: equals, value: /containers/json}}\n\
             \x20     \
             - {{field: role, operator: equals, value: \"{role}\"}}\n"
        ));
    }
    yaml.push_str(
        "  - name: report-other-role\n    priority: -1\n    action: deny\n    \
         message: \"role is something else\"\n    conditions:\n      \
         - {field: path, operator: equals, value: /containers/json}\n      \
         - {field: role, operator: matches, value: \".\"}\n",
    );
    yaml
}

/// What the proxy made of a credential: `role is X` (from the rules above),
/// or the status code.
fn seen(proxy: &Proxy, authorization: Option<&str>) -> String {
    let response = proxy.request(&get(PROBE, authorization));
    describe(&response)
}

fn describe(response: &Response) -> String {
    match response.status {
        403 => response.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        status => status.to_string(),
    }
}

/// Asserts a 401 with a JSON message and a `WWW-Authenticate` challenge;
/// returns the message.
fn assert_401(response: &Response) -> String {
    let message = response.assert_json_error(401);
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "401 without a Bearer challenge: {:?}",
        response.headers
    );
    message
}

/// The fail-closed startup error: logged at ERROR and telling the operator
/// what to write.
fn assert_fail_closed_error(stderr: &str) {
    let line = stderr
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("every request is refused"))
        .unwrap_or_else(|| panic!("no fail-closed ERROR line in stderr:\n{stderr}"));
    for needle in ["type: none", "tokens", "DOCKER_PROXY_SECRET"] {
        assert!(
            line.contains(needle),
            "the fail-closed error does not mention {needle:?}: {line}"
        );
    }
}

/// Waits until the proxy's stderr contains `needle` (log lines may trail
/// the response that caused them).
fn wait_stderr(proxy: &Proxy, needle: &str) -> bool {
    wait_for(Duration::from_secs(5), || {
        proxy.stderr().contains(needle).then_some(())
    })
    .is_some()
}

// === the resolution table, row by row ===

#[test]
fn no_config_file_and_no_secret_runs_open_and_warns() {
    let (engine, store) = recording_engine();
    let proxy = engine.options().without_config_file().start();
    assert_eq!(proxy.request(&get("/v1.41/info", None)).status, 200);
    // A credential is not needed, and not refused either.
    assert_eq!(
        proxy
            .request(&get("/v1.41/info", Some("Bearer anything")))
            .status,
        200
    );
    assert_eq!(store.lock().unwrap().len(), 2);
    let stderr = proxy.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("authentication is off")),
        "no warning that authentication is off:\n{stderr}"
    );
    assert!(stderr.contains("auth=\"none\""), "startup line:\n{stderr}");
}

#[test]
fn no_config_file_with_secret_requires_it_as_bearer() {
    let (engine, store) = recording_engine();
    let proxy = engine
        .options()
        .without_config_file()
        .env("DOCKER_PROXY_SECRET", "nocfg-secret-4711")
        .start();
    let message = assert_401(&proxy.request(&get("/v1.41/info", None)));
    assert!(message.contains("Authorization: Bearer"), "{message}");
    assert_401(&proxy.request(&get("/v1.41/info", Some("Bearer wrong-secret"))));
    assert!(
        store.lock().unwrap().is_empty(),
        "a refused request reached the engine"
    );
    let ok = proxy.request(&get("/v1.41/info", Some(&bearer("nocfg-secret-4711"))));
    assert_eq!(ok.status, 200, "{:?}", ok.text());
    assert_eq!(store.lock().unwrap().len(), 1);
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("auth=\"bearer\""),
        "startup line:\n{stderr}"
    );
    assert!(!stderr.contains("authentication is off"), "{stderr}");
}

#[test]
fn config_without_auth_section_fails_closed_with_an_error_naming_the_fix() {
    let (engine, store) = recording_engine();
    let proxy = engine.options().without_auth_section().start();
    for authorization in [None, Some("Bearer anything"), Some("Basic dXNlcjpwdw==")] {
        for target in ["/v1.41/info", "/_ping", "/v1.41/containers/json"] {
            let response = proxy.request(&get(target, authorization));
            let message = assert_401(&response);
            assert!(message.contains("not configured"), "{message}");
        }
    }
    assert!(
        store.lock().unwrap().is_empty(),
        "a request reached the engine"
    );
    assert_fail_closed_error(&proxy.stderr());

    let check = engine.options().without_auth_section().check_config();
    assert!(
        check.stdout.contains("FAIL CLOSED") && check.stdout.contains("type: none"),
        "--check-config does not explain the fail-closed auth:\n{}",
        check.stdout
    );
}

#[test]
fn config_without_auth_section_uses_the_environment_secret() {
    let (engine, _store) = recording_engine();
    let proxy = engine
        .options()
        .without_auth_section()
        .env("DOCKER_PROXY_SECRET", "env-only-secret-1")
        .rules(&role_rules(&["admin"]))
        .start();
    assert_401(&proxy.request(&get(PROBE, None)));
    assert_eq!(
        seen(&proxy, Some(&bearer("env-only-secret-1"))),
        "role is admin"
    );
    assert_eq!(seen(&proxy, Some("Bearer other")), "401");
}

#[test]
fn auth_type_none_serves_without_credentials() {
    let (engine, store) = recording_engine();
    let proxy = engine
        .options()
        .auth("auth:\n  type: none\n")
        .rules(&role_rules(&["admin", "user"]))
        .start();
    // No role at all: none of the role rules match.
    assert_eq!(seen(&proxy, None), "200");
    assert_eq!(seen(&proxy, Some("Bearer whatever")), "200");
    assert_eq!(store.lock().unwrap().len(), 2);
    let stderr = proxy.stderr();
    assert!(stderr.contains("auth=\"none\""), "startup line:\n{stderr}");
    assert!(!stderr.contains("every request is refused"), "{stderr}");
}

#[test]
fn auth_type_none_with_secret_in_environment_requires_the_secret_and_warns() {
    let (engine, store) = recording_engine();
    let proxy = engine
        .options()
        .auth("auth:\n  type: none\n")
        .env("DOCKER_PROXY_SECRET", "contradicting-secret-9")
        .rules(&role_rules(&["admin"]))
        .start();
    assert_401(&proxy.request(&get(PROBE, None)));
    assert_401(&proxy.request(&get(PROBE, Some("Bearer nope"))));
    assert!(store.lock().unwrap().is_empty());
    assert_eq!(
        seen(&proxy, Some(&bearer("contradicting-secret-9"))),
        "role is admin"
    );
    assert_eq!(
        proxy
            .request(&get("/v1.41/info", Some(&bearer("contradicting-secret-9"))))
            .status,
        200
    );
    let stderr = proxy.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("contradiction")),
        "no warning about type none with a secret set:\n{stderr}"
    );
}

#[test]
fn bearer_without_any_usable_token_fails_closed() {
    let (engine, store) = recording_engine();
    let unset = "DAP_AUTH_E2E_NEVER_SET_VARIABLE";
    let sections = [
        "auth:\n  type: bearer\n  tokens: []\n".to_owned(),
        "auth:\n  tokens: []\n".to_owned(),
        format!("auth:\n  tokens:\n    - token: \"${{{unset}}}\"\n      role: admin\n"),
        format!(
            "auth:\n  type: bearer\n  secret: \"${{{unset}}}\"\n  tokens:\n    - token: \"\"\n"
        ),
        "auth:\n  secret: \"\"\n".to_owned(),
    ];
    for section in &sections {
        let proxy = engine.options().auth(section).start();
        // Whatever is presented, even the empty strings the config holds.
        for authorization in [None, Some("Bearer "), Some("Bearer x"), Some("Bearer \"\"")] {
            let response = proxy.request(&get("/v1.41/info", authorization));
            assert_eq!(
                response.status,
                401,
                "config {section:?}, header {authorization:?}: {:?}",
                response.text()
            );
        }
        assert_fail_closed_error(&proxy.stderr());
        let check = engine.options().auth(section).check_config();
        assert!(
            check.stdout.contains("FAIL CLOSED"),
            "config {section:?}: --check-config says:\n{}",
            check.stdout
        );
    }
    assert!(
        store.lock().unwrap().is_empty(),
        "a request reached the engine"
    );
}

#[test]
fn bearer_with_empty_tokens_still_accepts_the_environment_secret() {
    let (engine, _store) = recording_engine();
    let proxy = engine
        .options()
        .auth("auth:\n  tokens: []\n")
        .env("DOCKER_PROXY_SECRET", "rescue-secret-3")
        .rules(&role_rules(&["admin"]))
        .start();
    assert_eq!(
        seen(&proxy, Some(&bearer("rescue-secret-3"))),
        "role is admin"
    );
    assert_eq!(seen(&proxy, None), "401");
    assert!(!proxy.stderr().contains("every request is refused"));
}

#[test]
fn bearer_checks_tokens_first_and_token_roles_win_over_the_secret() {
    let (engine, store) = recording_engine();
    let auth = "auth:\n  type: bearer\n  secret: shared-value-77\n  tokens:\n    \
                - {token: tok-ci-1, role: ci, name: ci-jobs}\n    \
                - {token: shared-value-77, role: viewer}\n    \
                - {token: tok-plain-2}\n";
    let proxy = engine
        .options()
        .auth(auth)
        .rules(&role_rules(&["admin", "ci", "viewer", "user"]))
        .start();
    assert_eq!(seen(&proxy, Some("Bearer tok-ci-1")), "role is ci");
    // The secret's value is also a token: the token (and its role) wins.
    assert_eq!(
        seen(&proxy, Some("Bearer shared-value-77")),
        "role is viewer"
    );
    // A token without a role gets "user".
    assert_eq!(seen(&proxy, Some("Bearer tok-plain-2")), "role is user");
    // The scheme is case-insensitive; blanks around the token are fine.
    assert_eq!(seen(&proxy, Some("bearer   tok-ci-1 ")), "role is ci");
    assert_eq!(seen(&proxy, Some("BEARER tok-ci-1")), "role is ci");

    let wrong = assert_401(&proxy.request(&get(PROBE, Some("Bearer tok-ci-"))));
    assert!(wrong.contains("invalid bearer token"), "{wrong}");
    let basic = assert_401(&proxy.request(&get(PROBE, Some("Basic dG9rLWNpLTE="))));
    assert!(basic.contains("scheme"), "{basic}");
    let malformed = assert_401(&proxy.request(&get(PROBE, Some("Bearer tok-ci-1 tok-ci-1"))));
    assert!(malformed.contains("malformed"), "{malformed}");
    let missing = assert_401(&proxy.request(&get(PROBE, None)));
    assert!(missing.contains("Authorization: Bearer"), "{missing}");
    assert!(
        store.lock().unwrap().is_empty(),
        "a refused request reached the engine"
    );

    // An allowed request with a token reaches the engine.
    assert_eq!(
        proxy
            .request(&get("/v1.41/info", Some("Bearer tok-ci-1")))
            .status,
        200
    );
    assert_eq!(store.lock().unwrap().len(), 1);
}

#[test]
fn environment_secret_overrides_the_file_secret_and_tokens_still_work() {
    let (engine, _store) = recording_engine();
    let auth = "auth:\n  secret: file-secret-5\n  tokens:\n    - {token: tok-ops-6, role: ops}\n";
    let proxy = engine
        .options()
        .auth(auth)
        .env("DOCKER_PROXY_SECRET", "env-secret-8")
        .rules(&role_rules(&["admin", "ops"]))
        .start();
    assert_eq!(seen(&proxy, Some("Bearer env-secret-8")), "role is admin");
    assert_eq!(seen(&proxy, Some("Bearer file-secret-5")), "401");
    assert_eq!(seen(&proxy, Some("Bearer tok-ops-6")), "role is ops");
}

#[test]
fn keep_alive_requests_are_each_authenticated() {
    let (engine, _store) = recording_engine();
    let proxy = engine
        .options()
        .auth("auth:\n  tokens:\n    - {token: ka-token-1, role: user}\n")
        .start();
    let mut client = proxy.connect();
    client.send(&get("/v1.41/info", Some("Bearer ka-token-1")));
    assert_eq!(client.read_response().status, 200);
    // The same connection does not stay authenticated.
    client.send(&get("/v1.41/info", None));
    assert_401(&client.read_response());
    client.send(&get("/v1.41/info", Some("Bearer ka-token-1")));
    assert_eq!(client.read_response().status, 200);
}

// === the Authorization header and secrets ===

#[test]
fn authorization_header_is_never_forwarded_to_the_engine() {
    let (engine, store) = recording_engine();
    let proxy = engine
        .options()
        .auth("auth:\n  tokens:\n    - {token: fwd-token-1, role: admin}\n")
        .start();
    let requests = [
        "GET /v1.41/info HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer fwd-token-1\r\n\
         X-Marker: one\r\n\r\n"
            .to_owned(),
        // Lower-case name, and the header last.
        "GET /v1.41/version HTTP/1.1\r\nHost: docker\r\nX-Marker: two\r\n\
         authorization: Bearer fwd-token-1\r\n\r\n"
            .to_owned(),
        // An upgrade request (docker attach / exec start).
        "POST /v1.41/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n\
         Authorization: Bearer fwd-token-1\r\nX-Marker: three\r\nConnection: Upgrade\r\n\
         Upgrade: tcp\r\nContent-Length: 0\r\n\r\n"
            .to_owned(),
    ];
    for request in &requests {
        let response = proxy.request(request.as_bytes());
        assert_eq!(response.status, 200, "{request:?}: {:?}", response.text());
    }
    let recorded = store.lock().unwrap().clone();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    for (request, marker) in recorded.iter().zip(["one", "two", "three"]) {
        assert_eq!(request.header("x-marker"), Some(marker), "{request:?}");
        assert!(
            !request.has_header("authorization"),
            "Authorization forwarded: {}",
            support::lossy(&request.raw_head)
        );
        assert!(
            support::find(&request.raw_head, b"fwd-token-1").is_none(),
            "the token reached the engine: {}",
            support::lossy(&request.raw_head)
        );
    }
}

#[test]
fn authorization_header_is_not_forwarded_without_authentication_either() {
    let (engine, store) = recording_engine();
    let proxy = engine.options().auth("auth:\n  type: none\n").start();
    let request = "GET /v1.41/info HTTP/1.1\r\nHost: docker\r\n\
                   Authorization: Bearer someone-elses-token\r\n\r\n";
    assert_eq!(proxy.request(request.as_bytes()).status, 200);
    let recorded = store.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1);
    assert!(
        !recorded[0].has_header("authorization"),
        "{}",
        support::lossy(&recorded[0].raw_head)
    );
}

#[test]
fn secrets_never_appear_in_logs_audit_records_metrics_or_responses() {
    let (engine, _store) = recording_engine();
    let audit_dir = tempfile::tempdir().expect("temporary directory");
    let audit = audit_dir.path().join("audit.jsonl");
    let good_token = "GoodTokenValue-5f1c9a";
    let env_secret = "EnvSecretValue-77d0e2";
    let wrong_token = "WrongTokenValue-a93b11";
    let registry_auth = "eyJ1c2VybmFtZSI6InNlY3JldC1yZWdpc3RyeS11c2VyIn0";
    let auth = format!(
        "auth:\n  tokens:\n    - {{token: {good_token}, role: user, name: ci-jobs}}\n  \
         lockout: {{failures: 3, window: 30, duration: 2}}\n"
    );
    let proxy = engine
        .options()
        .auth(&auth)
        .env("DOCKER_PROXY_SECRET", env_secret)
        .env("RUST_LOG", "debug")
        .global(&format!(
            "audit_log: {}\nmetrics:\n  enabled: true",
            audit.display()
        ))
        .rules(&role_rules(&["user"]))
        .start();

    let mut bodies = Vec::new();
    let mut send = |request: String| {
        let response = proxy.request(request.as_bytes());
        bodies.push(response.text());
        response.status
    };
    let head = |target: &str, auth: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: e2e\r\n{auth}\
             X-Registry-Auth: {registry_auth}\r\n\r\n"
        )
    };
    // Succeeding, policy-denied, failing, malformed and locked-out requests.
    assert_eq!(
        send(head(
            "/v1.41/info",
            &format!("Authorization: Bearer {good_token}\r\n")
        )),
        200
    );
    assert_eq!(
        send(head(
            "/v1.41/info",
            &format!("Authorization: Bearer {env_secret}\r\n")
        )),
        200
    );
    assert_eq!(
        send(head(
            PROBE,
            &format!("Authorization: Bearer {good_token}\r\n")
        )),
        403
    );
    assert_eq!(
        send(head(
            PROBE,
            &format!("Authorization: Bearer {wrong_token}\r\n")
        )),
        401
    );
    assert_eq!(
        send(head(
            PROBE,
            &format!("Authorization: Bearer {wrong_token} {good_token}\r\n")
        )),
        401
    );
    assert_eq!(
        send(head(
            PROBE,
            &format!("Authorization: Basic {wrong_token}\r\n")
        )),
        401
    );
    assert_eq!(
        send(head(
            PROBE,
            &format!("Authorization: Bearer {good_token}\r\n")
        )),
        429
    );
    assert_eq!(send(head(PROBE, "")), 429);
    // A refused target is logged at debug (the proxy has no per-request
    // debug line for forwarded requests).
    assert_eq!(
        send(head(
            "/v1.41/containers/%zz/json",
            &format!("Authorization: Bearer {good_token}\r\n")
        )),
        400
    );
    let metrics = proxy.request(&get("/metrics", None));
    assert_eq!(metrics.status, 200);
    bodies.push(metrics.text());

    // The audit writer is asynchronous: wait for the records we caused.
    let records = wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        (text.matches("auth_failure").count() >= 3 && text.contains("lockout")).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "audit log lacks the expected records: {:?}",
            std::fs::read_to_string(&audit)
        )
    });
    assert!(
        records.contains("\"ci-jobs\""),
        "the denied request's identity (token name) is not audited:\n{records}"
    );
    assert!(wait_stderr(&proxy, "locked out"), "{}", proxy.stderr());
    assert!(
        wait_stderr(&proxy, "DEBUG"),
        "RUST_LOG=debug produced no debug lines"
    );

    let stderr = proxy.stderr();
    for secret in [good_token, env_secret, wrong_token, registry_auth] {
        assert!(
            !stderr.contains(secret),
            "{secret:?} in the proxy's stderr:\n{stderr}"
        );
        assert!(
            !records.contains(secret),
            "{secret:?} in the audit log:\n{records}"
        );
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "{secret:?} in a response body: {body}"
            );
        }
    }
}

// === lockout ===

const LOCKOUT: &str = "  lockout: {failures: 10, window: 30, duration: 3}\n";

fn lockout_auth() -> String {
    format!("auth:\n  tokens:\n    - {{token: lock-good-1, role: user}}\n{LOCKOUT}")
}

/// Sends a request from `local` on a new connection.
fn request_from(proxy: &Proxy, local: IpAddr, authorization: Option<&str>) -> Response {
    let mut client = RawClient::connect_from(local, &proxy.addr());
    let bytes = get("/v1.41/info", authorization);
    client.send(&bytes);
    client.read_response()
}

fn assert_locked(response: &Response) -> u64 {
    response.assert_json_error(429);
    let retry_after: u64 = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", response.headers))
        .parse()
        .expect("numeric Retry-After");
    assert!(
        (1..=3).contains(&retry_after),
        "Retry-After {retry_after} outside the 3 s lockout"
    );
    retry_after
}

#[test]
fn eleventh_failure_is_locked_out_and_a_valid_token_waits_for_the_lockout_to_end() {
    let (engine, store) = recording_engine();
    let proxy = engine.options().auth(&lockout_auth()).start();
    let me = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for attempt in 1..=10 {
        let response = request_from(&proxy, me, Some("Bearer wrong"));
        assert_eq!(
            response.status,
            401,
            "attempt {attempt}: {:?}",
            response.text()
        );
    }
    let locked_at = Instant::now();
    assert_locked(&request_from(&proxy, me, Some("Bearer wrong")));
    // A valid token is refused while the lockout runs; so is no token.
    assert_locked(&request_from(&proxy, me, Some("Bearer lock-good-1")));
    assert_locked(&request_from(&proxy, me, None));
    assert!(
        store.lock().unwrap().is_empty(),
        "a locked-out request reached the engine"
    );

    let accepted = wait_for(Duration::from_secs(8), || {
        let response = request_from(&proxy, me, Some("Bearer lock-good-1"));
        match response.status {
            200 => Some(Instant::now()),
            429 => None,
            other => panic!("unexpected {other} while waiting for the lockout to end"),
        }
    })
    .expect("the valid token was still refused 8 s after a 3 s lockout");
    let waited = accepted.duration_since(locked_at);
    assert!(
        waited >= Duration::from_millis(2000),
        "the lockout ended after only {waited:?}"
    );
    assert_eq!(store.lock().unwrap().len(), 1);
    // After the lockout the count starts from zero: one failure is a 401.
    assert_eq!(request_from(&proxy, me, Some("Bearer wrong")).status, 401);
}

#[test]
fn lockout_of_one_client_ip_leaves_other_ips_alone() {
    let (engine, _store) = recording_engine();
    let proxy = engine.options().auth(&lockout_auth()).start();
    let locked = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..10 {
        assert_eq!(
            request_from(&proxy, locked, Some("Bearer wrong")).status,
            401
        );
    }
    assert_locked(&request_from(&proxy, locked, Some("Bearer lock-good-1")));

    assert_eq!(
        request_from(&proxy, other, Some("Bearer lock-good-1")).status,
        200
    );
    // The other IP has its own count: nine failures do not lock it out.
    for _ in 0..9 {
        assert_eq!(
            request_from(&proxy, other, Some("Bearer wrong")).status,
            401
        );
    }
    assert_eq!(
        request_from(&proxy, other, Some("Bearer lock-good-1")).status,
        200
    );
    assert_locked(&request_from(&proxy, locked, Some("Bearer lock-good-1")));
}

on_both_drivers! {
    failures_on_connections_to_different_workers_share_one_count => shared_count_across_workers;
}

fn shared_count_across_workers(driver: support::Driver) {
    let (engine, _store) = recording_engine();
    let proxy = engine
        .options()
        .driver(driver)
        .workers(2)
        .auth(&lockout_auth())
        .start();
    let me = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Open all ten connections first: SO_REUSEPORT spreads them over both
    // workers' listeners (all ten on one worker: probability 2^-9).
    let mut clients: Vec<RawClient> = (0..10)
        .map(|_| RawClient::connect_from(me, &proxy.addr()))
        .collect();
    for client in &mut clients {
        client.send(&get("/v1.41/info", Some("Bearer wrong")));
    }
    for client in &mut clients {
        assert_eq!(client.read_response().status, 401);
    }
    // Each of the still open keep-alive connections now sees the lockout,
    // whichever worker serves it.
    for client in &mut clients {
        client.send(&get("/v1.41/info", Some("Bearer lock-good-1")));
        assert_locked(&client.read_response());
    }
    assert_locked(&request_from(&proxy, me, Some("Bearer lock-good-1")));
}

#[test]
fn lockout_counts_concurrent_failures_from_many_connections() {
    let (engine, _store) = recording_engine();
    let proxy = engine.options().workers(2).auth(&lockout_auth()).start();
    let addr = proxy.addr();
    // 30 concurrent wrong attempts: exactly ten are answered 401 and the
    // rest 429, however the two workers interleave them.
    let handles: Vec<_> = (0..30)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut client = RawClient::connect(&addr);
                client.send(&get("/v1.41/info", Some("Bearer wrong")));
                client.read_response().status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((unauthorized, locked), (10, 20), "statuses {statuses:?}");
}

// === the real docker CLI with a bearer token ===

/// A temporary `DOCKER_CONFIG` whose config.json sends `headers`.
fn docker_config(authorization: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = match authorization {
        Some(value) => serde_json::json!({ "HttpHeaders": { "Authorization": value } }),
        None => serde_json::json!({}),
    };
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config.json");
    dir
}

fn engine_bearer_proxy() -> Proxy {
    ProxyOptions::new(ENGINE_SOCKET)
        .auth(
            "auth:\n  tokens:\n    - {token: cli-token-3c1d, role: admin, name: e2e}\n  \
             lockout: {failures: 50, window: 30, duration: 2}\n",
        )
        .start()
}

#[test]
fn docker_cli_sends_the_token_from_its_config_on_ps_exec_and_run_i() {
    require_engine!();
    let proxy = engine_bearer_proxy();
    let config = docker_config(Some("Bearer cli-token-3c1d"));
    let config_dir = config.path().to_str().expect("utf-8 path");
    let docker = |args: &[&str]| proxy.cli(args).env("DOCKER_CONFIG", config_dir);

    let ps = docker(&["ps", "--format", "{{.ID}}"]).run();
    ps.assert_success("docker ps with a token");

    // run -i: the attach upgrade carries the header too.
    let run_guard = ContainerGuard::new("auth-run-i");
    let run = docker(&[
        "run",
        "-i",
        "--rm",
        "--name",
        &run_guard.name,
        "--label",
        TEST_LABEL,
        IMAGE,
        "cat",
    ])
    .stdin(b"through the proxy with a token\n")
    .timeout(Duration::from_secs(60))
    .run();
    run.assert_success("docker run -i");
    assert_eq!(run.stdout, "through the proxy with a token\n");

    let guard = ContainerGuard::new("auth-exec");
    docker(&[
        "run",
        "-d",
        "--name",
        &guard.name,
        "--label",
        TEST_LABEL,
        IMAGE,
        "sleep",
        "120",
    ])
    .timeout(Duration::from_secs(60))
    .run()
    .assert_success("docker run -d");
    let exec = docker(&["exec", &guard.name, "echo", "exec-ok"]).run();
    exec.assert_success("docker exec");
    assert_eq!(exec.stdout.trim(), "exec-ok");
    let exec_i = docker(&["exec", "-i", &guard.name, "cat"])
        .stdin(b"piped into exec\n")
        .run();
    exec_i.assert_success("docker exec -i");
    assert_eq!(exec_i.stdout, "piped into exec\n");

    let ps = docker(&[
        "ps",
        "--filter",
        &format!("name={}", guard.name),
        "--format",
        "{{.Names}}",
    ])
    .run();
    ps.assert_success("docker ps --filter");
    assert_eq!(ps.stdout.trim(), guard.name);
    assert!(!proxy.stderr().contains("cli-token-3c1d"));
}

#[test]
fn docker_cli_without_a_token_shows_the_401_message() {
    require_engine!();
    let proxy = engine_bearer_proxy();
    let config = docker_config(None);
    let out = proxy
        .cli(&["ps"])
        .env("DOCKER_CONFIG", config.path().to_str().unwrap())
        .run();
    assert!(
        !out.success(),
        "docker ps without a token succeeded: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains(
            "Error response from daemon: authentication required: send the header \
             'Authorization: Bearer <token>'"
        ),
        "stderr: {}",
        out.stderr
    );

    let config = docker_config(Some("Bearer not-the-token"));
    let out = proxy
        .cli(&["ps"])
        .env("DOCKER_CONFIG", config.path().to_str().unwrap())
        .run();
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("Error response from daemon: invalid bearer token"),
        "stderr: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-token"), "{}", out.stderr);

    // docker run without a token does not create anything.
    let guard = ContainerGuard::new("auth-no-token");
    let out = proxy
        .cli(&["run", "--rm", "--name", &guard.name, IMAGE, "true"])
        .env("DOCKER_CONFIG", config.path().to_str().unwrap())
        .run();
    assert!(!out.success());
    let exists = Cli::docker_direct().args(&["inspect", &guard.name]).run();
    assert!(
        !exists.success(),
        "a container was created without a valid token"
    );
}

/// Two Authorization headers: 400 before authentication, whatever the
/// order of the good and the wrong token; nothing reaches the engine, and
/// it counts toward no lockout (nothing was checked).
#[test]
fn two_authorization_headers_get_400_and_count_toward_no_lockout() {
    let (engine, store) = recording_engine();
    let proxy = engine.options().auth(&lockout_auth()).start();
    let me = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for pair in [
        ["Bearer lock-good-1", "Bearer wrong"],
        ["Bearer wrong", "Bearer lock-good-1"],
        ["Bearer lock-good-1", "Bearer lock-good-1"],
    ] {
        for _ in 0..6 {
            let mut client = RawClient::connect_from(me, &proxy.addr());
            let request = format!(
                "GET /v1.41/info HTTP/1.1\r\nHost: docker\r\nAuthorization: {}\r\n\
                 Authorization: {}\r\n\r\n",
                pair[0], pair[1]
            );
            client.send(request.as_bytes());
            let response = client.read_response();
            let message = response.assert_json_error(400);
            assert!(
                message.contains("more than one Authorization header")
                    && message.contains("exactly one"),
                "{message}"
            );
        }
    }
    assert!(
        store.lock().unwrap().is_empty(),
        "a request reached the engine"
    );
    // 18 refusals, more than the 10 failures that lock out: still none.
    assert_eq!(
        request_from(&proxy, me, Some("Bearer lock-good-1")).status,
        200
    );
}
