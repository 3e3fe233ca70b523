//! Response filters on live responses (SPEC sections 4 and 7, issue 5):
//! redaction seen through the real `docker` CLI and engine, the same rule
//! covering list and inspect, live event streams, a catch-all filter that
//! must not hold back `wait`, and the fake-engine cases (memory under a
//! long stream, documents over the cap, compressed bodies).

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::ops::get_request;
use support::{
    Cli, ContainerGuard, EngineConn, FakeEngine, Proxy, ProxyOptions, ENGINE_SOCKET, IMAGE,
    TEST_LABEL,
};

const MARKER: &str = "***REDACTED***";
const LONG: Duration = Duration::from_secs(60);

/// One rule covering both the list and the inspect endpoint: the command,
/// environment and labels of containers are hidden wherever they appear.
const HIDE_CONTAINER_SECRETS: &str = r#"rules:
  - name: hide-container-secrets
    action: response_filter
    conditions:
      - field: method
        operator: equals
        value: GET
      - field: path
        operator: matches
        value: "^/containers/(json|[^/]+/json)$"
    response_filter:
      - field: Config.Env
        action: redact
      - field: Config.Cmd
        action: redact
      - field: Args
        action: redact
      - field: Config.Labels.*
        action: redact
      - field: Command
        action: redact
      - field: Labels.*
        action: redact
"#;

fn filtered_engine_proxy(rules: &str) -> Proxy {
    ProxyOptions::new(ENGINE_SOCKET).rules(rules).start()
}

/// A running container whose environment, command and a label carry the
/// given secret, created directly on the engine (so creation does not
/// depend on the proxy under test).
fn secret_container(prefix: &str, secret: &str) -> ContainerGuard {
    let guard = ContainerGuard::new(prefix);
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &guard.name,
            "--label",
            TEST_LABEL,
            "--label",
            &format!("owner-token={secret}-label"),
            "-e",
            &format!("API_TOKEN={secret}-env"),
            IMAGE,
            "sh",
            "-c",
            &format!("echo {secret}-cmd >/dev/null; sleep 300"),
        ])
        .timeout(LONG)
        .run()
        .assert_success("docker run -d (direct)");
    guard
}

fn secret_value(prefix: &str) -> String {
    support::unique_name(prefix).replace('-', "")
}

#[test]
fn inspect_of_redacted_env_and_cmd_succeeds_and_shows_only_the_marker() {
    require_engine!();
    let proxy = filtered_engine_proxy(HIDE_CONTAINER_SECRETS);
    let secret = secret_value("inspect");
    let container = secret_container("inspect", &secret);

    let out = proxy.docker(&["inspect", &container.name]);
    out.assert_success("docker inspect");
    assert!(
        !out.stdout.contains(&secret),
        "a redacted value leaked through docker inspect:\n{}",
        out.stdout
    );
    let inspected: Value = serde_json::from_str(&out.stdout).expect("docker inspect prints JSON");
    let config = &inspected[0]["Config"];
    let env = config["Env"].as_array().expect("Env keeps its array shape");
    assert!(!env.is_empty());
    assert!(env.iter().all(|v| v == MARKER), "Env {env:?}");
    let cmd = config["Cmd"].as_array().expect("Cmd keeps its array shape");
    assert_eq!(cmd.len(), 3, "one marker per element: {cmd:?}");
    assert!(cmd.iter().all(|v| v == MARKER), "Cmd {cmd:?}");
    // Fields no filter names pass unchanged.
    assert_eq!(config["Image"], IMAGE);
    assert_eq!(inspected[0]["Name"], format!("/{}", container.name));

    // A Go template over the filtered document works as usual.
    let out = proxy.docker(&[
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &container.name,
    ]);
    out.assert_success("docker inspect --format");
    assert!(out.stdout.contains(MARKER), "{}", out.stdout);
    assert!(!out.stdout.contains(&secret));
}

#[test]
fn list_endpoint_filters_every_element() {
    require_engine!();
    let proxy = filtered_engine_proxy(HIDE_CONTAINER_SECRETS);
    let secret = secret_value("list");
    let first = secret_container("list1", &secret);
    let second = secret_container("list2", &secret);

    let out = proxy.docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("label={TEST_LABEL}"),
        "--format",
        "{{json .}}",
    ]);
    out.assert_success("docker ps");
    assert!(
        !out.stdout.contains(&secret),
        "leak through docker ps:\n{}",
        out.stdout
    );
    let mut seen = 0;
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).expect("docker ps --format json line");
        let name = row["Names"].as_str().unwrap_or_default();
        if name == first.name || name == second.name {
            seen += 1;
            let command = row["Command"].as_str().unwrap_or_default();
            assert!(command.contains(MARKER), "Command {command:?}");
            let labels = row["Labels"].as_str().unwrap_or_default();
            assert!(
                labels.contains(&format!("owner-token={MARKER}")),
                "Labels {labels:?}"
            );
        }
    }
    assert_eq!(seen, 2, "both containers listed:\n{}", out.stdout);

    // The raw list: every element, including containers of other tests.
    let response = proxy.request(&get_request("/v1.41/containers/json?all=1", &[]));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!response.text().contains(&secret));
    let list = response.json();
    let list = list.as_array().expect("a JSON array");
    assert!(list.len() >= 2);
    for element in list {
        assert_eq!(element["Command"], MARKER, "{element}");
        if let Some(labels) = element["Labels"].as_object() {
            assert!(labels.values().all(|v| v == MARKER), "{element}");
        }
    }
}

#[test]
fn a_value_redacted_on_one_endpoint_cannot_be_read_through_the_other() {
    require_engine!();
    let proxy = filtered_engine_proxy(HIDE_CONTAINER_SECRETS);
    let secret = secret_value("paths");
    let container = secret_container("paths", &secret);
    let versions = ["", "/v1.41"];

    for prefix in versions {
        // Inspect: the label is hidden there too, not only on the list.
        let inspect = proxy.request(&get_request(
            &format!("{prefix}/containers/{}/json", container.name),
            &[],
        ));
        assert_eq!(inspect.status, 200, "{}", inspect.text());
        assert!(
            !inspect.text().contains(&secret),
            "inspect leak: {}",
            inspect.text()
        );
        let doc = inspect.json();
        assert_eq!(doc["Config"]["Labels"]["owner-token"], MARKER);
        assert!(doc["Args"].as_array().unwrap().iter().all(|a| a == MARKER));

        // List, narrowed to this container by a query filter: the command
        // hidden on inspect is hidden here as well.
        let filters = format!("%7B%22name%22%3A%5B%22{}%22%5D%7D", container.name);
        let list = proxy.request(&get_request(
            &format!("{prefix}/containers/json?filters={filters}"),
            &[],
        ));
        assert_eq!(list.status, 200, "{}", list.text());
        assert!(!list.text().contains(&secret), "list leak: {}", list.text());
        let rows = list.json();
        assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
        assert_eq!(rows[0]["Command"], MARKER);
        assert_eq!(rows[0]["Labels"]["owner-token"], MARKER);
    }

    // And through the CLI, both ways.
    let ps = proxy.docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("name={}", container.name),
    ]);
    ps.assert_success("docker ps");
    assert!(!ps.stdout.contains(&secret), "{}", ps.stdout);
    let inspect = proxy.docker(&["container", "inspect", &container.name]);
    inspect.assert_success("docker container inspect");
    assert!(!inspect.stdout.contains(&secret), "{}", inspect.stdout);
}

#[test]
fn events_stream_filters_each_event_as_it_happens() {
    require_engine!();
    let rules = r#"rules:
  - name: hide-event-names
    action: response_filter
    conditions:
      - field: path
        operator: equals
        value: /events
    response_filter:
      - field: Actor.Attributes.name
        action: redact
"#;
    let proxy = filtered_engine_proxy(rules);
    let first = ContainerGuard::new("fev1");
    let second = ContainerGuard::new("fev2");
    // Events from just before the stream opened are replayed, so the first
    // create cannot be missed; the second happens after a line was seen.
    let since = support::events_since();
    let mut events = proxy
        .cli(&[
            "events",
            "--since",
            &since,
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            &format!("label={TEST_LABEL}"),
            "--format",
            "{{json .}}",
        ])
        .timeout(LONG)
        .spawn();

    let create = |guard: &ContainerGuard, tag: &str| {
        Cli::docker_direct()
            .args(&[
                "create",
                "--name",
                &guard.name,
                "--label",
                TEST_LABEL,
                "--label",
                &format!("tag={tag}"),
                IMAGE,
                "true",
            ])
            .run()
            .assert_success("docker create (direct)");
    };
    create(&first, "first");
    let line = events.expect_line("\"tag\":\"first\"", Duration::from_secs(20));
    let check = |line: &str, tag: &str| {
        let event: Value = serde_json::from_str(line).expect("an event as JSON");
        assert_eq!(event["Actor"]["Attributes"]["name"], MARKER, "{line}");
        assert_eq!(event["Actor"]["Attributes"]["tag"], tag, "{line}");
        assert!(
            !line.contains(&first.name) && !line.contains(&second.name),
            "{line}"
        );
    };
    check(&line, "first");
    create(&second, "second");
    let line = events.expect_line("\"tag\":\"second\"", Duration::from_secs(20));
    check(&line, "second");
}

#[test]
fn run_rm_completes_under_a_catch_all_filter() {
    require_engine!();
    // No conditions: every response goes through the filter, including the
    // wait response the CLI blocks on.
    let rules = r#"rules:
  - name: filter-everything
    action: response_filter
    response_filter:
      - field: Config.Env
        action: redact
"#;
    let proxy = filtered_engine_proxy(rules);
    let guard = ContainerGuard::new("catchall");
    let out = proxy
        .cli(&[
            "run",
            "--rm",
            "--name",
            &guard.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "true",
        ])
        .timeout(Duration::from_secs(60))
        .run();
    out.assert_success("docker run --rm under a catch-all filter");
    let out = proxy
        .cli(&[
            "run",
            "--rm",
            "--name",
            &guard.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sh",
            "-c",
            "exit 3",
        ])
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit status through the filtered wait: {out:?}"
    );
}

// === fake engine ===

/// A filter on `/events` that hides `Actor.Attributes.name`.
const EVENT_FILTER: &str = r#"rules:
  - name: hide-event-names
    action: response_filter
    conditions:
      - field: path
        operator: equals
        value: /events
    response_filter:
      - field: Actor.Attributes.name
        action: redact
"#;

fn event_line(n: usize) -> String {
    format!(
        "{{\"status\":\"start\",\"id\":\"{n:064x}\",\"Type\":\"container\",\"Action\":\"start\",\
         \"Actor\":{{\"ID\":\"{n:064x}\",\"Attributes\":{{\"image\":\"local/busybox\",\
         \"name\":\"secret-name-{n}\"}}}},\"scope\":\"local\",\"time\":{n},\"timeNano\":{}}}\n",
        n * 1000
    )
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn memory_stays_flat_under_a_long_filtered_event_stream() {
    const EVENTS: usize = 100_000;
    const BATCH: usize = 500;
    let engine = FakeEngine::start(|conn: &mut EngineConn| {
        while let Some(request) = conn.read_request() {
            if !request.target.contains("/events") {
                conn.respond(404, "application/json", b"{\"message\":\"no\"}");
                continue;
            }
            conn.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                  Transfer-Encoding: chunked\r\nApi-Version: 1.41\r\n\r\n",
            );
            let mut batch = String::new();
            for n in 0..EVENTS {
                batch.push_str(&event_line(n));
                if (n + 1) % BATCH == 0 {
                    conn.write(&chunk(batch.as_bytes()));
                    batch.clear();
                }
            }
            conn.write(&chunk(batch.as_bytes()));
            conn.write(b"0\r\n\r\n");
        }
    });
    let proxy = engine.options().rules(EVENT_FILTER).start();
    let mut client = proxy.connect();
    client.send(&get_request("/v1.41/events", &[]));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    assert!(head
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked")));

    let mut pending = Vec::new();
    let mut received = 0usize;
    let mut rss_early = None;
    let started = Instant::now();
    while let Some(data) = client.next_chunk() {
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = std::str::from_utf8(&line[..line.len() - 1]).expect("UTF-8 event");
            assert!(
                !line.contains("secret-name-") && line.contains("\"name\":\"***REDACTED***\""),
                "event {received} not filtered: {line}"
            );
            received += 1;
            if received == EVENTS / 10 {
                rss_early = Some(proxy.memory_kib("VmRSS"));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "stream stalled at {received}"
        );
    }
    let rss_end = proxy.memory_kib("VmRSS");
    assert!(
        pending.is_empty(),
        "a partial line at the end: {:?}",
        support::lossy(&pending)
    );
    assert_eq!(received, EVENTS, "every event arrives, each filtered");
    let rss_early = rss_early.expect("10% mark reached");
    let growth = rss_end.saturating_sub(rss_early);
    eprintln!(
        "VmRSS {rss_early} KiB at 10%, {rss_end} KiB at the end; {:?} for {EVENTS} events",
        started.elapsed()
    );
    assert!(
        growth < 20 * 1024,
        "resident memory grew by {growth} KiB between 10% ({rss_early} KiB) \
         and the end ({rss_end} KiB)"
    );
}

/// An engine that answers `/big` with one JSON document of `size` bytes
/// carrying a secret, and `/lines` with two small lines and then one big
/// line, chunked.
fn oversize_engine(size: usize) -> FakeEngine {
    FakeEngine::start(move |conn: &mut EngineConn| {
        while let Some(request) = conn.read_request() {
            let padding = "x".repeat(size);
            if request.target.ends_with("/big") {
                let body = format!("{{\"Env\":[\"TOKEN=oversize-secret\"],\"pad\":\"{padding}\"}}");
                conn.respond(200, "application/json", body.as_bytes());
            } else {
                conn.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Transfer-Encoding: chunked\r\n\r\n",
                );
                conn.write(&chunk(
                    b"{\"Env\":[\"small-secret-1\"]}\n{\"Env\":[\"small-secret-2\"]}\n",
                ));
                let big = format!("{{\"Env\":[\"oversize-secret\"],\"pad\":\"{padding}\"}}\n");
                for piece in big.as_bytes().chunks(4096) {
                    conn.write(&chunk(piece));
                }
                conn.write(b"0\r\n\r\n");
            }
        }
    })
}

const ENV_FILTER: &str = r#"rules:
  - name: hide-env
    action: response_filter
    response_filter:
      - field: Env
        action: redact
"#;

#[test]
fn document_over_max_filter_document_closes_without_sending_it() {
    let engine = oversize_engine(64 * 1024);
    let proxy = engine
        .options()
        .limit("max_filter_document", 16 * 1024)
        .rules(ENV_FILTER)
        .start();

    // One whole-body document over the cap.
    let mut client = proxy.connect();
    client.send(&get_request("/v1.41/big", &[]));
    let received = client.read_to_close();
    assert!(
        support::find(&received, b"oversize-secret").is_none(),
        "the oversize document was sent: {} bytes",
        received.len()
    );
    assert!(
        received.len() < 16 * 1024,
        "{} bytes arrived",
        received.len()
    );

    // A stream: the small documents before it arrive filtered, then the
    // connection closes before any byte of the big one.
    let mut client = proxy.connect();
    client.send(&get_request("/v1.41/lines", &[]));
    let received = client.read_to_close();
    let text = support::lossy(&received);
    assert!(
        !text.contains("secret"),
        "unfiltered bytes sent: {text:.300}"
    );
    assert_eq!(text.matches(MARKER).count(), 2, "{text:.300}");
    assert!(
        !text.contains("xxxx"),
        "part of the oversize document was sent"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the body must not look complete"
    );

    let stderr = proxy.wait_stderr("max_filter_document", Duration::from_secs(5));
    assert!(stderr.contains("not sent unfiltered"), "{stderr}");
}

#[test]
fn compressed_json_response_is_not_sent_unfiltered() {
    let engine = FakeEngine::start(|conn: &mut EngineConn| {
        while let Some(_request) = conn.read_request() {
            // Plain bytes labelled gzip: a proxy that forwarded them would
            // show the secret.
            let body = b"{\"Env\":[\"TOKEN=gzip-secret\"]}";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            conn.write(head.as_bytes());
            conn.write(body);
        }
    });
    let proxy = engine.options().rules(ENV_FILTER).start();
    let mut client = proxy.connect();
    client.send(&get_request(
        "/v1.41/containers/x/json",
        &["Accept-Encoding: gzip"],
    ));
    let received = client.read_to_close();
    let text = support::lossy(&received);
    assert!(
        !text.contains("gzip-secret"),
        "compressed body forwarded: {text}"
    );
    assert!(
        text.starts_with("HTTP/1.1 502") || received.is_empty(),
        "expected a 502 or a closed connection: {text}"
    );

    // Without a filter the same response passes untouched.
    let unfiltered = engine.options().start();
    let response = unfiltered.request(&get_request("/v1.41/containers/x/json", &[]));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
}

#[test]
fn filter_after_an_earlier_allow_still_applies() {
    let engine = FakeEngine::start(|conn: &mut EngineConn| {
        while let Some(_request) = conn.read_request() {
            conn.respond(
                200,
                "application/json",
                b"{\"Env\":[\"TOKEN=late-secret\"],\"Id\":\"abc\"}",
            );
        }
    });
    let rules = r#"rules:
  - name: allow-inspect
    priority: 10
    action: allow
    conditions:
      - field: path
        operator: matches
        value: "^/containers/"
  - name: hide-env
    action: response_filter
    response_filter:
      - field: Env
        action: redact
      - field: Id
        action: replace
        replacement: hidden
"#;
    let proxy = engine.options().rules(rules).start();
    let response = proxy.request(&get_request("/containers/abc/json", &[]));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        serde_json::json!({"Env": [MARKER], "Id": "hidden"})
    );
}
