//! Admission refusals that keep the engine from reading parameters the
//! rules did not judge: form bodies in any Content-Type spelling Go
//! normalises (SPEC section 5), and query parameters or headers repeated
//! with different values that a rule names (docs/policy.md).
//!
//! A recording fake engine shows that a refused request never reaches it
//! and that the honest twin of each case does.

#[macro_use]
mod support;

use support::ops::{recording_engine, Recording};
use support::{Proxy, Response};

/// A policy with a query rule on image pulls and a header rule, like an
/// operator pinning pulls to a mirror.
const RULES: &str = r#"rules:
  - name: pulls-from-the-mirror-only
    action: deny
    message: "images come from mirror.example only"
    conditions:
      - field: path
        operator: equals
        value: /images/create
      - field: query.fromImage
        operator: not_matches
        value: '^mirror\.example/'
  - name: kill-with-sigterm-only
    action: deny
    message: "containers are stopped with SIGTERM"
    conditions:
      - field: path
        operator: matches
        value: '^/containers/[^/]+/kill$'
      - field: query.signal
        operator: not_in
        value: [SIGTERM, "15"]
  - name: no-ci-agent
    action: deny
    message: "this agent is not allowed"
    conditions:
      - field: header.x-agent
        operator: equals
        value: ci-bot
"#;

fn start() -> (Recording, Proxy) {
    let recording = recording_engine();
    let proxy = recording.engine.options().rules(RULES).start();
    (recording, proxy)
}

fn post(target: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn refused(response: &Response, fragment: &str) {
    let message = response.assert_json_error(400);
    assert!(
        message.contains(fragment),
        "message {message:?} lacks {fragment:?}"
    );
}

// === form bodies ===

#[test]
fn form_bodies_in_unicode_spelled_content_types_never_reach_the_engine() {
    let (recording, proxy) = start();
    let target = "/v1.41/images/create?fromImage=mirror.example/x&tag=latest";
    let body = b"fromImage=127.0.0.1:1/pwn&tag=latest";
    let cases = [
        ("\u{a0}application/x-www-form-urlencoded", "non-ASCII"),
        ("application/x-www-form-urlencoded\u{85}", "non-ASCII"),
        (
            "application/x-www-form-urlencoded\u{3000};charset=utf-8",
            "non-ASCII",
        ),
        ("appl\u{130}cation/x-www-form-urlencoded", "non-ASCII"),
        ("APPLICATION/X-WWW-FORM-URLENCODED", "form-encoded"),
        ("multipart/form-data; boundary=b", "multipart/form-data"),
    ];
    for (content_type, fragment) in cases {
        let headers = format!("Content-Type: {content_type}\r\n");
        let response = proxy.request(&post(target, &headers, body));
        refused(&response, fragment);
    }
    let multipart = b"--b\r\nContent-Disposition: form-data; name=\"networkmode\"\r\n\r\n\
                      host\r\n--b--\r\n";
    let response = proxy.request(&post(
        "/v1.41/build?networkmode=bridge",
        "Content-Type: multipart/form-data; boundary=b\r\n",
        multipart,
    ));
    refused(&response, "multipart/form-data");
    let response = proxy.request(&post(
        target,
        "Content-Type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        body,
    ));
    refused(&response, "several different Content-Type headers");
    assert_eq!(
        recording.seen.lock().unwrap().len(),
        0,
        "a refused request was forwarded"
    );

    // The honest twin: a tar upload to /build is forwarded.
    let response = proxy.request(&post(
        "/v1.41/build?networkmode=bridge",
        "Content-Type: application/x-tar\r\n",
        b"not really a tar",
    ));
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(recording.forwarded("/v1.41/build?networkmode=bridge"), 1);
}

// === repeated query parameters and headers ===

fn get(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n{headers}\r\n")
        .into_bytes()
}

#[test]
fn rule_named_fields_repeated_with_different_values_never_reach_the_engine() {
    let (recording, proxy) = start();
    let cases = [
        (
            post(
                "/v1.41/images/create?fromImage=127.0.0.1:1/pwn&fromImage=mirror.example/x",
                "",
                b"",
            ),
            "query parameter \"fromImage\" appears 2 times",
        ),
        (
            post(
                "/v1.41/containers/web/kill?signal=SIGKILL&signal=SIGTERM&signal=SIGTERM",
                "",
                b"",
            ),
            "query parameter \"signal\" appears 3 times",
        ),
        (
            get("/v1.41/info", "X-Agent: human\r\nx-agent: ci-bot\r\n"),
            "header \"x-agent\" appears 2 times",
        ),
    ];
    for (request, fragment) in &cases {
        let response = proxy.request(request);
        refused(&response, fragment);
        refused(&response, "send it once");
    }
    assert_eq!(
        recording.seen.lock().unwrap().len(),
        0,
        "a refused request was forwarded"
    );

    // Equal repeats, and repeats of names no rule reads (docker build -t a
    // -t b), are judged and forwarded as usual.
    let forwarded = [
        "/v1.41/images/create?fromImage=mirror.example/x&fromImage=mirror.example%2Fx",
        "/v1.41/build?t=a&t=b",
        "/v1.41/containers/web/kill?signal=SIGTERM&signal=SIGTERM",
    ];
    for target in forwarded {
        let response = proxy.request(&post(target, "", b""));
        assert_eq!(response.status, 200, "{target}: {:?}", response.text());
        assert_eq!(recording.forwarded(target), 1, "{target}");
    }
    let response = proxy.request(&get("/v1.41/info", "Accept: a\r\naccept: b\r\n"));
    assert_eq!(response.status, 200, "{:?}", response.text());
    // The rule still judges a single value.
    let response = proxy.request(&post(
        "/v1.41/images/create?fromImage=127.0.0.1:1/pwn",
        "",
        b"",
    ));
    let message = response.assert_json_error(403);
    assert!(message.contains("mirror.example only"), "{message:?}");
}

// === explain ===

/// `explain` makes the same refusals before any rule as the proxy: it
/// shares the function, so an operator's dry run cannot say "allow" for a
/// request the proxy answers with 400.
#[test]
fn explain_refuses_what_the_proxy_refuses_before_any_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("auth:\n  type: none\n{RULES}")).unwrap();
    let explain = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_docker-api-proxy"))
            .arg("explain")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("DOCKER_PROXY_CONFIG")
            .output()
            .expect("run explain");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), stdout)
    };
    for (args, fragment) in [
        (
            &[
                "POST",
                "/v1.41/build",
                "--header",
                "content-type: multipart/form-data",
            ][..],
            "multipart/form-data request bodies are refused",
        ),
        (
            &[
                "POST",
                "/v1.41/images/create?fromImage=a&fromImage=mirror.example/x",
            ][..],
            "query parameter \"fromImage\" appears 2 times",
        ),
        (
            &[
                "GET",
                "/v1.41/info",
                "--header",
                "X-Agent: a",
                "--header",
                "x-agent: b",
            ][..],
            "header \"x-agent\" appears 2 times",
        ),
        (
            &["GET", "/v1.41/containers/parent/alias/json"][..],
            "legacy link alias",
        ),
    ] {
        let (code, stdout) = explain(args);
        assert_eq!(code, Some(1), "{args:?}: {stdout}");
        assert!(
            stdout.contains("refused with 400 before any rule") && stdout.contains(fragment),
            "{args:?}: {stdout}"
        );
    }
    // The honest twins reach the rules.
    let (code, stdout) = explain(&["POST", "/v1.41/build", "--header", "Content-Type: a/b"]);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout) = explain(&["GET", "/v1.41/containers/web/json"]);
    assert_eq!(code, Some(0), "{stdout}");
}
