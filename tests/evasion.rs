//! Evasion attempts against the example policy (`config.yaml`), sent as raw
//! HTTP through the proxy to the real engine.
//!
//! Every case names its container (`?name=`) uniquely and, after the
//! proxy's answer, asks the engine directly whether that container exists:
//! a refused request must have left nothing behind. Next to each evasive
//! spelling sits its honest twin: the same spelling with a harmless body
//! goes through and the engine acts on it (showing that the spelling is
//! one dockerd really honours), or the plain request is refused by the
//! rule that the spelling tried to dodge.
//!
//! The cases run in tables; a table reports every failing case at once.

#[macro_use]
mod support;

use std::io::Write;
use std::path::PathBuf;

use support::{
    engine_container, engine_get, engine_request, example_options, unique_name, ContainerGuard,
    Proxy, Response, ADMIN_TOKEN, CI_TOKEN, IMAGE,
};

const PRIVILEGED: &str = "privileged containers are not allowed through this proxy";
const HOST_MOUNTS: &str = "mounting host paths is not allowed through this proxy";
const BIND_VOLUMES: &str =
    "volumes with driver mount options (--opt type/device/o) are not allowed through this proxy";
const CAPABILITIES: &str = "adding this capability (--cap-add) is not allowed through this proxy";
const SECURITY_OPT: &str = "turning off confinement \
    (--security-opt seccomp=unconfined, apparmor=unconfined or label=disable)";
const NAMESPACES: &str =
    "sharing the host's or another container's namespaces is not allowed through this proxy";
const DEVICES: &str =
    "host devices (--device, --device-cgroup-rule) are not allowed through this proxy";
const TOP_LEVEL: &str = "container create bodies must carry host settings under HostConfig";
const LEGACY_API: &str = "API versions before 1.24 are not accepted by this proxy";
const AMBIGUOUS: &str = "ambiguous";
const FORM: &str = "form-encoded request bodies are refused";
const NOT_ASCII_FORM: &str = "non-ASCII or control characters in its media type";
const MULTIPART: &str = "multipart/form-data request bodies are refused";
const TOO_LARGE: &str = "max_inspect_body";

/// `global.limits.max_inspect_body` in `config.yaml`.
const CAP: usize = 1_048_576;

/// Beginning of every create body: our image, a command, the test label.
const HEAD: &str =
    r#""Image":"local/busybox","Cmd":["true"],"Labels":{"docker-api-proxy-test":"1"}"#;

/// A create body: `HEAD` followed by `rest` (JSON members, may be empty).
fn body(rest: &str) -> String {
    if rest.is_empty() {
        format!("{{{HEAD}}}")
    } else {
        format!("{{{HEAD},{rest}}}")
    }
}

const PRIVILEGED_HOST_CONFIG: &str = r#""HostConfig":{"Privileged":true}"#;
const EMPTY_HOST_CONFIG: &str = r#""HostConfig":{}"#;

// === requests ===

/// `POST target` with a Content-Length body and the ci token.
fn post(target: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer {CI_TOKEN}\r\n\
         Connection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn post_json(target: &str, body: &str) -> Vec<u8> {
    post(target, Some("application/json"), body.as_bytes())
}

/// `POST target` with extra header lines (each ending in CRLF) and raw
/// body bytes exactly as given (framing is up to the caller).
fn post_raw(target: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {target} HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer {CI_TOKEN}\r\n\
         Connection: close\r\nContent-Type: application/json\r\n{headers}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Chunked encoding of `pieces`, one chunk each, sizes in `hex` style.
fn chunked(pieces: &[&[u8]], upper_hex: bool, extension: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        let size = if upper_hex {
            format!("{:X}", piece.len())
        } else {
            format!("{:x}", piece.len())
        };
        out.extend_from_slice(format!("{size}{extension}\r\n").as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Splits `text` after each of the given byte offsets.
fn split_at_offsets<'a>(text: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &offset in offsets {
        pieces.push(&text[start..offset]);
        start = offset;
    }
    pieces.push(&text[start..]);
    pieces
}

fn create_target(path: &str, name: &str) -> String {
    format!("{path}?name={name}")
}

/// Sends one request on a fresh connection. The proxy may answer (and
/// close) before it has read a body it refuses, so a failed write is not
/// an error here; the answer is what counts.
fn send(proxy: &Proxy, request: &[u8]) -> Response {
    let mut client = proxy.connect();
    let _ = client.stream.write_all(request);
    client.read_response_for("POST")
}

// === expectations ===

#[derive(Debug, Clone)]
enum Expect {
    /// The proxy refuses with this status and a JSON message containing
    /// the fragment; the engine has no container of the case's name.
    Refused(u16, &'static str),
    /// Forwarded; the engine created the container (201). Each
    /// `(JSON pointer, value)` must hold in the engine's inspect document,
    /// showing the engine honoured the spelling.
    Created(Vec<(&'static str, serde_json::Value)>),
    /// Forwarded; the engine itself refused with this status and acted on
    /// nothing (no container of the case's name).
    EngineRefused(u16),
}

fn created() -> Expect {
    Expect::Created(Vec::new())
}

fn created_with(pointer: &'static str, value: serde_json::Value) -> Expect {
    Expect::Created(vec![(pointer, value)])
}

/// Builds the request for a container name.
type BuildRequest = Box<dyn Fn(&str) -> Vec<u8>>;

struct Case {
    label: String,
    build: BuildRequest,
    expect: Expect,
}

fn case(
    label: impl Into<String>,
    expect: Expect,
    build: impl Fn(&str) -> Vec<u8> + 'static,
) -> Case {
    Case {
        label: label.into(),
        build: Box::new(build),
        expect,
    }
}

/// A container create at `path` (version prefix included) with `body`.
fn create_case(label: &str, path: &'static str, body: String, expect: Expect) -> Case {
    case(label, expect, move |name| {
        post_json(&create_target(path, name), &body)
    })
}

/// A proxy running the example policy, with its audit log in a temporary
/// directory that lives as long as the proxy.
struct PolicyProxy {
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for PolicyProxy {
    type Target = Proxy;
    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

fn example_proxy() -> PolicyProxy {
    let dir = tempfile::tempdir().expect("temporary directory");
    let audit: PathBuf = dir.path().join("audit.jsonl");
    PolicyProxy {
        proxy: example_options(&audit).start(),
        _dir: dir,
    }
}

/// Checks one answered case; returns a description of what went wrong.
fn check(case: &Case, name: &str, response: &Response) -> Result<(), String> {
    let text = response.text();
    let container = engine_container(name);
    match &case.expect {
        Expect::Refused(status, fragment) => {
            if response.status != *status {
                return Err(format!(
                    "expected {status}, got {} {text:?}",
                    response.status
                ));
            }
            let content_type = response.header("content-type").unwrap_or_default();
            if !content_type.starts_with("application/json") {
                return Err(format!("refusal is not JSON ({content_type:?}): {text:?}"));
            }
            let message = serde_json::from_slice::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if !message.contains(fragment) {
                return Err(format!("message {message:?} does not contain {fragment:?}"));
            }
            if container.is_some() {
                return Err(format!("refused ({status}) but the engine created {name}"));
            }
        }
        Expect::Created(checks) => {
            if response.status != 201 {
                return Err(format!(
                    "expected 201 from the engine, got {} {text:?}",
                    response.status
                ));
            }
            let Some(inspect) = container else {
                return Err(format!("201 but the engine has no container {name}"));
            };
            for (pointer, value) in checks {
                let seen = inspect.pointer(pointer).cloned().unwrap_or_default();
                if &seen != value {
                    return Err(format!("engine has {pointer} = {seen}, expected {value}"));
                }
            }
        }
        Expect::EngineRefused(status) => {
            if response.status != *status {
                return Err(format!(
                    "expected the engine's {status}, got {} {text:?}",
                    response.status
                ));
            }
            if container.is_some() {
                return Err(format!("the engine answered {status} but created {name}"));
            }
        }
    }
    Ok(())
}

/// Runs a table against one proxy; panics listing every failed case.
fn run_table(proxy: &Proxy, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let guard = ContainerGuard::new("ev");
        let request = (case.build)(&guard.name);
        let response = send(proxy, &request);
        if let Err(problem) = check(case, &guard.name, &response) {
            failures.push(format!("  {}: {problem}", case.label));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n--- proxy stderr ---\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        proxy.stderr()
    );
}

// === the engine really honours these spellings ===

/// Direct to the engine, without the proxy: the spellings the tables below
/// refuse are ones dockerd acts on. (If this fails, dockerd changed and
/// the policy notes in docs/policy.md need another look.)
#[test]
fn engine_honours_folded_duplicate_and_top_level_keys() {
    require_engine!();
    let cases: &[(&str, String)] = &[
        (
            "lower-case keys",
            body(r#""hostconfig":{"privileged":true}"#),
        ),
        (
            "long s in HostConfig",
            body(r#""Hoſtconfig":{"Privileged":true}"#),
        ),
        (
            "the last of two case variants wins",
            body(r#""HostConfig":{"Privileged":false},"hostconfig":{"Privileged":true}"#),
        ),
        (
            "the last duplicate wins",
            body(r#""HostConfig":{"Privileged":false,"Privileged":true}"#),
        ),
        ("top level without HostConfig", body(r#""Privileged":true"#)),
        (
            "top level with HostConfig null",
            body(r#""HostConfig":null,"Privileged":true"#),
        ),
    ];
    for (label, json) in cases {
        let guard = ContainerGuard::new("engine");
        let request = format!(
            "POST /v1.41/containers/create?name={} HTTP/1.0\r\nHost: docker\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            guard.name,
            json.len()
        );
        let response = engine_request(request.as_bytes());
        assert_eq!(response.status, 201, "{label}: {}", response.text());
        let inspect = engine_container(&guard.name).expect("created");
        assert_eq!(
            inspect["HostConfig"]["Privileged"],
            serde_json::Value::Bool(true),
            "{label}: the engine did not honour the spelling"
        );
    }
    // Kelvin sign (U+212A) folds to k in the engine's key matching.
    let guard = ContainerGuard::new("engine");
    let json = body(r#""HostConfig":{"NetworKMode":"none"}"#);
    let request = format!(
        "POST /v1.41/containers/create?name={} HTTP/1.0\r\nHost: docker\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        guard.name,
        json.len()
    );
    assert_eq!(engine_request(request.as_bytes()).status, 201);
    let inspect = engine_container(&guard.name).expect("created");
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "none");
}

// === paths ===

#[test]
fn create_path_spellings_are_judged_as_create() {
    require_engine!();
    let proxy = example_proxy();
    let priv_body = body(PRIVILEGED_HOST_CONFIG);
    let benign = body(EMPTY_HOST_CONFIG);
    let paths: &[&'static str] = &[
        "/v1.41/containers/create",
        "/containers/create",
        "/v1.41/containers/%63reate",
        "/v1.41/containers/cr%65ate",
        "/v1.41/containers/CR%45ATE",
        "/v1.41/%63ontainers/create",
        "/v1.41/containers%2Fcreate",
        "/v1.41/containers%2fcreate",
        "/v1.41%2Fcontainers%2Fcreate",
        "/%761.41/containers/create",
        "/v1.41.0/containers/create",
        "/v1.41.0.0/containers/create",
        "/v1.040/containers/create",
    ];
    let mut cases = Vec::new();
    for &path in paths {
        // CR%45ATE decodes to CREATE, which the engine does not route.
        let benign_expect = if path.contains("CR%45ATE") {
            Expect::EngineRefused(404)
        } else {
            created()
        };
        let priv_expect = if path.contains("CR%45ATE") {
            Expect::EngineRefused(404)
        } else {
            Expect::Refused(403, PRIVILEGED)
        };
        cases.push(create_case(
            &format!("privileged at {path}"),
            path,
            priv_body.clone(),
            priv_expect,
        ));
        cases.push(create_case(
            &format!("benign at {path}"),
            path,
            benign.clone(),
            benign_expect,
        ));
    }
    // Version prefixes the engine refuses itself: the proxy still judges
    // the body as a create, and a harmless body reaches the engine's 400.
    for path in [
        "/v./containers/create",
        "/v1/containers/create",
        "/v../containers/create",
    ] {
        cases.push(create_case(
            &format!("privileged at {path}"),
            path,
            priv_body.clone(),
            Expect::Refused(403, PRIVILEGED),
        ));
        cases.push(create_case(
            &format!("benign at {path}"),
            path,
            benign.clone(),
            Expect::EngineRefused(400),
        ));
    }
    run_table(&proxy, &cases);
}

#[test]
fn ambiguous_path_spellings_are_refused_outright() {
    require_engine!();
    let proxy = example_proxy();
    let paths: &[&'static str] = &[
        // double encoding
        "/v1.41/containers/%2563reate",
        "/v1.41/containers%252Fcreate",
        "/v1.41/containers/%25%36%33reate",
        // dot segments, raw and encoded
        "/v1.41/containers/./create",
        "/v1.41/./containers/create",
        "/v1.41/images/../containers/create",
        "/v1.41/containers/%2e/create",
        "/v1.41/images/%2E%2E/containers/create",
        "/v1.41/images%2F..%2Fcontainers/create",
        "/./v1.41/containers/create",
        // empty segments
        "//v1.41/containers/create",
        "/v1.41//containers/create",
        "/v1.41/containers//create",
        "/v1.41/containers%2F%2Fcreate",
        // repeated version prefixes
        "/v1.41/v1.41/containers/create",
        "/v1.41/v1.40/containers/create",
        "/v1.41/%761.41/containers/create",
        "/v1.41.0/v1/containers/create",
        // backslash, NUL, control characters
        "/v1.41/containers%5Ccreate",
        "/v1.41/containers/create%00",
        "/v1.41/containers/create%0a",
        // invalid escapes
        "/v1.41/containers/%zzcreate",
        "/v1.41/containers/create%",
    ];
    let mut cases = Vec::new();
    for &path in paths {
        for (kind, json) in [
            ("privileged", body(PRIVILEGED_HOST_CONFIG)),
            ("benign", body(EMPTY_HOST_CONFIG)),
        ] {
            cases.push(create_case(
                &format!("{kind} at {path}"),
                path,
                json,
                Expect::Refused(400, ""),
            ));
        }
    }
    // A ';' in the query would make Go drop the pair (and with it a value
    // a rule saw): refused too.
    cases.push(case(
        "query with ';'",
        Expect::Refused(400, "';'"),
        |name| {
            post_json(
                &format!("/v1.41/containers/create?name={name};x=1"),
                &body(PRIVILEGED_HOST_CONFIG),
            )
        },
    ));
    run_table(&proxy, &cases);
}

#[test]
fn spellings_the_engine_does_not_route_create_nothing() {
    require_engine!();
    let proxy = example_proxy();
    // Not the create route for dockerd's (case-sensitive, exact) router:
    // the proxy may forward them, and the engine answers 404.
    let paths: &[&'static str] = &[
        "/V1.41/containers/create",
        "/v1.41/Containers/create",
        "/v1.41/containers/CREATE",
        "/v1.41/containers/create/",
        "/v1.41/containers/create%3Fx=1",
        "/v1.41/containers/create%23",
        "/v1.41/containers/create%20",
        "/v1.41/containers/create.json",
    ];
    let cases: Vec<Case> = paths
        .iter()
        .map(|&path| {
            create_case(
                path,
                path,
                body(PRIVILEGED_HOST_CONFIG),
                Expect::EngineRefused(404),
            )
        })
        .collect();
    run_table(&proxy, &cases);
}

// === JSON keys ===

#[test]
fn json_key_spellings_are_matched_as_the_engine_matches_them() {
    require_engine!();
    let proxy = example_proxy();
    let t = serde_json::Value::Bool(true);
    let table: Vec<(&str, String, Expect, String, Expect)> = vec![
        (
            "lower-case keys",
            body(r#""hostconfig":{"privileged":true}"#),
            Expect::Refused(403, PRIVILEGED),
            body(r#""hostconfig":{"readonlyrootfs":true}"#),
            created_with("/HostConfig/ReadonlyRootfs", t.clone()),
        ),
        (
            "upper-case keys",
            body(r#""HOSTCONFIG":{"PRIVILEGED":true}"#),
            Expect::Refused(403, PRIVILEGED),
            body(r#""HOSTCONFIG":{"READONLYROOTFS":true}"#),
            created_with("/HostConfig/ReadonlyRootfs", t.clone()),
        ),
        (
            "mixed-case keys",
            body(r#""hostConfig":{"pRiViLeGeD":true}"#),
            Expect::Refused(403, PRIVILEGED),
            body(r#""hostConfig":{"rEaDoNlYrOoTfS":true}"#),
            created_with("/HostConfig/ReadonlyRootfs", t.clone()),
        ),
        (
            "JSON escapes in keys",
            body(r#""Host\u0043onfig":{"Privil\u0065ged":true}"#),
            Expect::Refused(403, PRIVILEGED),
            body(r#""Host\u0043onfig":{"Readonly\u0052ootfs":true}"#),
            created_with("/HostConfig/ReadonlyRootfs", t.clone()),
        ),
        (
            "long s (U+017F) in HostConfig",
            body(r#""Hoſtconfig":{"Privileged":true}"#),
            Expect::Refused(403, PRIVILEGED),
            body(r#""Hoſtconfig":{"ReadonlyRootfs":true}"#),
            created_with("/HostConfig/ReadonlyRootfs", t.clone()),
        ),
        (
            "escaped long s in HostConfig",
            body(r#""Ho\u017ftConfig":{"Privileged":true}"#),
            Expect::Refused(403, PRIVILEGED),
            body(r#""Ho\u017ftConfig":{"ReadonlyRootfs":true}"#),
            created_with("/HostConfig/ReadonlyRootfs", t.clone()),
        ),
        (
            "long s in Binds",
            body(r#""HostConfig":{"Bindſ":["/:/host"]}"#),
            Expect::Refused(403, HOST_MOUNTS),
            body(r#""HostConfig":{"Bindſ":[]}"#),
            created(),
        ),
        (
            "lower-case binds",
            body(r#""hostconfig":{"binds":["/etc:/x:ro"]}"#),
            Expect::Refused(403, HOST_MOUNTS),
            body(r#""hostconfig":{"binds":[]}"#),
            created(),
        ),
        (
            "Kelvin sign (U+212A) in NetworkMode",
            body(r#""HostConfig":{"NetworKMode":"host"}"#),
            Expect::Refused(403, NAMESPACES),
            body(r#""HostConfig":{"NetworKMode":"none"}"#),
            created_with("/HostConfig/NetworkMode", "none".into()),
        ),
        (
            "lower-case pidmode",
            body(r#""HostConfig":{"pidmode":"host"}"#),
            Expect::Refused(403, NAMESPACES),
            body(r#""HostConfig":{"pidmode":""}"#),
            created(),
        ),
        (
            "long s in Mounts, bind type",
            body(r#""HostConfig":{"Mountſ":[{"type":"bind","source":"/","target":"/host"}]}"#),
            Expect::Refused(403, HOST_MOUNTS),
            body(r#""HostConfig":{"Mountſ":[]}"#),
            created(),
        ),
        (
            "volume mount with local-driver bind options, lower-case keys",
            body(concat!(
                r#""HostConfig":{"mounts":[{"type":"volume","target":"/host","#,
                r#""volumeoptions":{"driverconfig":{"name":"local","#,
                r#""options":{"type":"none","o":"bind","device":"/"}}}}]}"#
            )),
            Expect::Refused(403, HOST_MOUNTS),
            body(r#""HostConfig":{"mounts":[{"type":"tmpfs","target":"/scratch"}]}"#),
            created(),
        ),
        (
            "devices, lower-case keys",
            body(concat!(
                r#""hostconfig":{"devices":[{"pathonhost":"/dev/mem","#,
                r#""pathincontainer":"/dev/mem","cgrouppermissions":"rwm"}]}"#
            )),
            Expect::Refused(403, DEVICES),
            body(r#""hostconfig":{"devices":[]}"#),
            created(),
        ),
    ];
    let mut cases = Vec::new();
    for (label, evasive, refusal, honest, honest_expect) in table {
        cases.push(create_case(
            &format!("{label}: evasive"),
            "/v1.41/containers/create",
            evasive,
            refusal,
        ));
        cases.push(create_case(
            &format!("{label}: harmless"),
            "/v1.41/containers/create",
            honest,
            honest_expect,
        ));
    }
    // The honest spellings of the same refusals.
    for (label, json, message) in [
        ("plain Privileged", body(PRIVILEGED_HOST_CONFIG), PRIVILEGED),
        (
            "plain Binds",
            body(r#""HostConfig":{"Binds":["/:/host"]}"#),
            HOST_MOUNTS,
        ),
        (
            "plain NetworkMode",
            body(r#""HostConfig":{"NetworkMode":"host"}"#),
            NAMESPACES,
        ),
    ] {
        cases.push(create_case(
            label,
            "/v1.41/containers/create",
            json,
            Expect::Refused(403, message),
        ));
    }
    run_table(&proxy, &cases);
}

#[test]
fn ambiguous_and_invalid_bodies_are_refused() {
    require_engine!();
    let proxy = example_proxy();
    let bodies: Vec<(&str, String, &'static str)> = vec![
        (
            "keys differing only by case",
            body(r#""HostConfig":{"Privileged":false},"hostconfig":{"Privileged":true}"#),
            AMBIGUOUS,
        ),
        (
            "inner keys differing only by case",
            body(r#""HostConfig":{"Privileged":false,"PRIVILEGED":true}"#),
            AMBIGUOUS,
        ),
        (
            "duplicate key",
            body(r#""HostConfig":{"Privileged":false,"Privileged":true}"#),
            AMBIGUOUS,
        ),
        (
            "duplicate HostConfig",
            body(r#""HostConfig":{},"HostConfig":{"Privileged":true}"#),
            AMBIGUOUS,
        ),
        (
            "keys equal after long-s folding",
            body(r#""HostConfig":{"Binds":[],"Bindſ":["/:/host"]}"#),
            AMBIGUOUS,
        ),
        (
            "keys equal after Kelvin folding",
            body(r#""HostConfig":{"NetworkMode":"bridge","NetworKMode":"host"}"#),
            AMBIGUOUS,
        ),
        (
            "escaped duplicate",
            body(r#""HostConfig":{"Privileged":false,"Privil\u0065ged":true}"#),
            AMBIGUOUS,
        ),
        (
            "harmless duplicate",
            body(r#""HostConfig":{},"HostConfig":{}"#),
            AMBIGUOUS,
        ),
        (
            "trailing second document",
            format!(
                "{}{}",
                body(EMPTY_HOST_CONFIG),
                body(PRIVILEGED_HOST_CONFIG)
            ),
            "",
        ),
        (
            "truncated JSON",
            body(PRIVILEGED_HOST_CONFIG)
                .trim_end_matches('}')
                .to_owned(),
            "",
        ),
        (
            "lone surrogate in a key",
            body(r#""HostConfig":{"Privileged\ud800":true}"#),
            "",
        ),
        ("not JSON", "HostConfig.Privileged=true".to_owned(), ""),
    ];
    let mut cases: Vec<Case> = bodies
        .into_iter()
        .map(|(label, json, fragment)| {
            create_case(
                label,
                "/v1.41/containers/create",
                json,
                Expect::Refused(400, fragment),
            )
        })
        .collect();
    cases.push(create_case(
        "honest: one HostConfig",
        "/v1.41/containers/create",
        body(EMPTY_HOST_CONFIG),
        created(),
    ));
    run_table(&proxy, &cases);
}

// === framing ===

#[test]
fn framing_tricks_are_refused_or_inspected() {
    require_engine!();
    let proxy = example_proxy();
    let priv_body = body(PRIVILEGED_HOST_CONFIG).into_bytes();
    let benign = body(EMPTY_HOST_CONFIG).into_bytes();
    let key_at = |b: &[u8], needle: &str| support::find(b, needle.as_bytes()).unwrap();
    let mut cases = Vec::new();

    // Chunked, split inside the key, inside the value and between braces.
    let split = {
        let p = key_at(&priv_body, "Privileged");
        let t = key_at(&priv_body, "true}");
        vec![1, p + 5, p + 11, t + 1, t + 3, priv_body.len() - 1]
    };
    for (label, upper, extension) in [
        ("chunked, split at odd places", false, ""),
        ("chunked, upper-case hex sizes", true, ""),
        ("chunked, with chunk extensions", false, ";x=\"y\""),
    ] {
        let pieces: Vec<Vec<u8>> = split_at_offsets(&priv_body, &split)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        let harmless: Vec<Vec<u8>> = split_at_offsets(&benign, &[1, 7, benign.len() - 1])
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        cases.push(case(
            format!("{label}: privileged"),
            Expect::Refused(403, PRIVILEGED),
            move |name| {
                let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    "Transfer-Encoding: chunked\r\n",
                    &chunked(&refs, upper, extension),
                )
            },
        ));
        cases.push(case(format!("{label}: harmless"), created(), move |name| {
            let refs: Vec<&[u8]> = harmless.iter().map(Vec::as_slice).collect();
            post_raw(
                &create_target("/v1.41/containers/create", name),
                "Transfer-Encoding: chunked\r\n",
                &chunked(&refs, upper, extension),
            )
        }));
    }
    // One byte per chunk.
    {
        let bytes = priv_body.clone();
        cases.push(case(
            "chunked, one byte per chunk",
            Expect::Refused(403, PRIVILEGED),
            move |name| {
                let refs: Vec<&[u8]> = bytes.chunks(1).collect();
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    "Transfer-Encoding: chunked\r\n",
                    &chunked(&refs, false, ""),
                )
            },
        ));
    }
    // Both Content-Length and Transfer-Encoding, in both orders.
    for (kind, bytes) in [
        ("privileged", priv_body.clone()),
        ("harmless", benign.clone()),
    ] {
        let te_first = bytes.clone();
        cases.push(case(
            format!("Content-Length and Transfer-Encoding: {kind}"),
            Expect::Refused(400, ""),
            move |name| {
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    &format!(
                        "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                        te_first.len()
                    ),
                    &chunked(&[&te_first], false, ""),
                )
            },
        ));
        let cl_last = bytes.clone();
        cases.push(case(
            format!("Transfer-Encoding then Content-Length: {kind}"),
            Expect::Refused(400, ""),
            move |name| {
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    &format!(
                        "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                        cl_last.len()
                    ),
                    &chunked(&[&cl_last], false, ""),
                )
            },
        ));
    }
    // Two different Content-Lengths; a transfer coding other than chunked.
    {
        let bytes = priv_body.clone();
        cases.push(case(
            "two different Content-Lengths",
            Expect::Refused(400, ""),
            move |name| {
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    &format!("Content-Length: {}\r\nContent-Length: 2\r\n", bytes.len()),
                    &bytes,
                )
            },
        ));
        let bytes = priv_body.clone();
        cases.push(case(
            "Transfer-Encoding: gzip, chunked",
            Expect::Refused(400, ""),
            move |name| {
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    "Transfer-Encoding: gzip, chunked\r\n",
                    &chunked(&[&bytes], false, ""),
                )
            },
        ));
    }
    // Form-encoded bodies: refused whatever they hold, also when the
    // media type is spelled with characters Go trims or lower-cases.
    for (content_type, fragment) in [
        ("application/x-www-form-urlencoded", FORM),
        ("Application/X-WWW-Form-Urlencoded; charset=utf-8", FORM),
        ("\u{a0}application/x-www-form-urlencoded", NOT_ASCII_FORM),
        ("application/x-www-form-urlencoded\u{85}", NOT_ASCII_FORM),
        (
            "application/x-www-form-urlencoded\u{3000};charset=utf-8",
            NOT_ASCII_FORM,
        ),
        ("multipart/form-data; boundary=x", MULTIPART),
    ] {
        for (kind, bytes) in [
            ("privileged", priv_body.clone()),
            ("harmless", benign.clone()),
        ] {
            cases.push(case(
                format!("{content_type:?}: {kind}"),
                Expect::Refused(400, fragment),
                move |name| {
                    post(
                        &create_target("/v1.41/containers/create", name),
                        Some(content_type),
                        &bytes,
                    )
                },
            ));
        }
    }
    {
        let bytes = b"HostConfig.Privileged=true&Image=local%2Fbusybox".to_vec();
        cases.push(case(
            "form pairs",
            Expect::Refused(400, FORM),
            move |name| {
                post(
                    &create_target("/v1.41/containers/create", name),
                    Some("application/x-www-form-urlencoded"),
                    &bytes,
                )
            },
        ));
    }
    // Inspected whatever the Content-Type says (or when there is none).
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
    ] {
        let bytes = priv_body.clone();
        let label = format!("Content-Type {content_type:?}: privileged");
        cases.push(case(label, Expect::Refused(403, PRIVILEGED), move |name| {
            post(
                &create_target("/v1.41/containers/create", name),
                content_type,
                &bytes,
            )
        }));
    }
    run_table(&proxy, &cases);
}

// === the inspection cap ===

/// A create body of exactly `size` bytes: the members, then spaces inside
/// the object (valid JSON; the engine ignores whitespace).
fn padded(members: &str, size: usize) -> Vec<u8> {
    let start = format!("{{{HEAD},{members}");
    assert!(start.len() < size);
    let mut out = start.into_bytes();
    out.resize(size - 1, b' ');
    out.push(b'}');
    out
}

/// Same, with the padding in a label placed before the members, so the
/// dangerous field comes last.
fn padded_before(members: &str, size: usize) -> Vec<u8> {
    let labels = r#""Labels":{"docker-api-proxy-test":"1","pad":""}"#;
    let fixed = format!(r#"{{"Image":"{IMAGE}","Cmd":["true"],{labels},{members}}}"#);
    let pad = size - fixed.len();
    fixed
        .replacen(r#""pad":"""#, &format!(r#""pad":"{}""#, "x".repeat(pad)), 1)
        .into_bytes()
}

#[test]
fn bodies_over_the_inspection_cap_are_refused() {
    require_engine!();
    let proxy = example_proxy();
    let mut cases = Vec::new();
    let over = padded(PRIVILEGED_HOST_CONFIG, CAP + 1);
    let over_last = padded_before(PRIVILEGED_HOST_CONFIG, CAP + 1);
    let over_benign = padded(EMPTY_HOST_CONFIG, CAP + 1);
    let at_cap = padded(PRIVILEGED_HOST_CONFIG, CAP);
    let at_cap_benign = padded(EMPTY_HOST_CONFIG, CAP);
    let at_cap_last = padded_before(PRIVILEGED_HOST_CONFIG, CAP);
    assert_eq!(over.len(), CAP + 1);
    assert_eq!(over_last.len(), CAP + 1);
    assert_eq!(at_cap_last.len(), CAP);

    for (label, bytes) in [
        ("one byte over the cap, privileged first", over.clone()),
        ("one byte over the cap, privileged last", over_last.clone()),
        ("one byte over the cap, harmless", over_benign.clone()),
    ] {
        let length = bytes.clone();
        cases.push(case(
            format!("{label} (Content-Length)"),
            Expect::Refused(413, TOO_LARGE),
            move |name| post_json_bytes(&create_target("/v1.41/containers/create", name), &length),
        ));
        cases.push(case(
            format!("{label} (chunked)"),
            Expect::Refused(413, TOO_LARGE),
            move |name| {
                let refs: Vec<&[u8]> = bytes.chunks(64 * 1024 + 3).collect();
                post_raw(
                    &create_target("/v1.41/containers/create", name),
                    "Transfer-Encoding: chunked\r\n",
                    &chunked(&refs, false, ""),
                )
            },
        ));
    }
    // The honest twins at exactly the cap: inspected.
    for (label, bytes, expect) in [
        (
            "exactly the cap, privileged first",
            at_cap,
            Expect::Refused(403, PRIVILEGED),
        ),
        (
            "exactly the cap, privileged last",
            at_cap_last,
            Expect::Refused(403, PRIVILEGED),
        ),
        ("exactly the cap, harmless", at_cap_benign, created()),
    ] {
        let length = bytes.clone();
        cases.push(case(
            format!("{label} (Content-Length)"),
            expect.clone(),
            move |name| post_json_bytes(&create_target("/v1.41/containers/create", name), &length),
        ));
        cases.push(case(format!("{label} (chunked)"), expect, move |name| {
            let refs: Vec<&[u8]> = bytes.chunks(100_000).collect();
            post_raw(
                &create_target("/v1.41/containers/create", name),
                "Transfer-Encoding: chunked\r\n",
                &chunked(&refs, false, ""),
            )
        }));
    }
    run_table(&proxy, &cases);
}

fn post_json_bytes(target: &str, body: &[u8]) -> Vec<u8> {
    post(target, Some("application/json"), body)
}

// === capabilities ===

#[test]
fn capability_spellings_are_refused() {
    require_engine!();
    let proxy = example_proxy();
    let mut cases = Vec::new();
    for cap in [
        "SYS_ADMIN",
        "sys_admin",
        "Sys_Admin",
        "cap_sys_admin",
        "CAP_SYS_ADMIN",
        "Cap_Sys_Admin",
        "sys_admın",
        "SYS_ADMıN",
        "ſys_admin",
        "CAP_ſYS_ADMıN",
        "ALL",
        "all",
        "CAP_ALL",
        "sys_ptrace",
        "net_admin",
        "SYS_MODULE",
        "dac_read_search",
    ] {
        let json = body(&format!(r#""HostConfig":{{"CapAdd":["CHOWN","{cap}"]}}"#));
        cases.push(create_case(
            &format!("CapAdd {cap}"),
            "/v1.41/containers/create",
            json,
            Expect::Refused(403, CAPABILITIES),
        ));
    }
    for (label, members) in [
        (
            "capadd lower-case key",
            r#""hostconfig":{"capadd":["sys_admin"]}"#,
        ),
        (
            "Capabilities set",
            r#""HostConfig":{"Capabilities":["CAP_CHOWN","CAP_SYS_ADMIN"]}"#,
        ),
        (
            "SecurityOpt seccomp",
            r#""HostConfig":{"SecurityOpt":["seccomp=unconfined"]}"#,
        ),
        (
            "SecurityOpt apparmor",
            r#""HostConfig":{"SecurityOpt":["apparmor:unconfined"]}"#,
        ),
        (
            "SecurityOpt label",
            r#""HostConfig":{"SecurityOpt":["label=disable"]}"#,
        ),
    ] {
        let message = if label.starts_with("SecurityOpt") {
            SECURITY_OPT
        } else {
            CAPABILITIES
        };
        cases.push(create_case(
            label,
            "/v1.41/containers/create",
            body(members),
            Expect::Refused(403, message),
        ));
    }
    // Harmless capabilities go through, in any spelling.
    for cap in ["NET_BIND_SERVICE", "chown", "cap_kill"] {
        let json = body(&format!(r#""HostConfig":{{"CapAdd":["{cap}"]}}"#));
        cases.push(create_case(
            &format!("harmless CapAdd {cap}"),
            "/v1.41/containers/create",
            json,
            created_with("/HostConfig/CapAdd/0", cap.into()),
        ));
    }
    run_table(&proxy, &cases);
}

// === host settings outside HostConfig ===

#[test]
fn top_level_host_settings_are_refused() {
    require_engine!();
    let proxy = example_proxy();
    let f = serde_json::Value::Bool(false);
    let mut cases = Vec::new();
    for (label, members) in [
        ("Privileged at the top", r#""Privileged":true"#),
        ("privileged, lower-case, at the top", r#""privileged":true"#),
        ("Binds at the top", r#""Binds":["/:/host"]"#),
        (
            "Binds at the top, HostConfig null",
            r#""HostConfig":null,"Binds":["/:/host"]"#,
        ),
        ("CapAdd at the top", r#""CapAdd":["SYS_ADMIN"]"#),
        ("PidMode at the top", r#""PidMode":"host""#),
        ("NetworkMode at the top", r#""NetworkMode":"host""#),
        (
            "Devices at the top",
            concat!(
                r#""Devices":[{"PathOnHost":"/dev/mem","#,
                r#""PathInContainer":"/dev/mem","CgroupPermissions":"rwm"}]"#
            ),
        ),
        (
            "Mounts at the top, long s",
            r#""Mountſ":[{"Type":"bind","Source":"/","Target":"/host"}]"#,
        ),
    ] {
        cases.push(create_case(
            label,
            "/v1.41/containers/create",
            body(members),
            Expect::Refused(403, TOP_LEVEL),
        ));
    }
    // No host settings at all: fine. HostConfig present: the engine ignores
    // the top-level copy, and so may the proxy.
    cases.push(create_case(
        "no HostConfig, no host settings",
        "/v1.41/containers/create",
        body(""),
        created(),
    ));
    cases.push(create_case(
        "top-level Privileged ignored next to HostConfig",
        "/v1.41/containers/create",
        body(r#""HostConfig":{},"Privileged":true"#),
        created_with("/HostConfig/Privileged", f),
    ));
    run_table(&proxy, &cases);
}

// === container start with a HostConfig body (API < 1.24) ===

#[test]
fn legacy_start_with_host_settings_is_refused() {
    require_engine!();
    let proxy = example_proxy();
    let guard = ContainerGuard::new("legacy");
    let created = send(
        &proxy,
        &post_json(
            &create_target("/v1.41/containers/create", &guard.name),
            &body(EMPTY_HOST_CONFIG),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.text());

    let host = r#"{"Privileged":true,"Binds":["/:/host"]}"#;
    let mut failures = Vec::new();
    for version in ["1.23", "1.12", "1.023", "01.23.0", "1.23.9", "1.2"] {
        for chunked_body in [false, true] {
            let target = format!("/v{version}/containers/{}/start", guard.name);
            let request = if chunked_body {
                post_raw(
                    &target,
                    "Transfer-Encoding: chunked\r\n",
                    &chunked(&[host.as_bytes()], false, ""),
                )
            } else {
                post_json(&target, host)
            };
            let response = send(&proxy, &request);
            if response.status != 400 || !response.text().contains(LEGACY_API) {
                failures.push(format!(
                    "{target} (chunked {chunked_body}): {} {}",
                    response.status,
                    response.text()
                ));
            }
        }
    }
    let inspect = engine_container(&guard.name).expect("the container exists");
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    assert_eq!(
        inspect["HostConfig"]["Privileged"], false,
        "the engine changed the container"
    );
    assert!(
        inspect["HostConfig"]["Binds"].is_null(),
        "the engine changed the container: {}",
        inspect["HostConfig"]["Binds"]
    );

    // Honest twins: current versions reach the engine, which refuses a
    // start body itself and starts a container without one.
    let response = send(
        &proxy,
        &post_json(&format!("/v1.41/containers/{}/start", guard.name), host),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("request body"),
        "{}",
        response.text()
    );
    let response = send(
        &proxy,
        &post(
            &format!("/v1.24/containers/{}/start", guard.name),
            None,
            b"",
        ),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    let inspect = engine_container(&guard.name).expect("the container exists");
    assert_eq!(inspect["HostConfig"]["Privileged"], false);
}

// === volumes ===

/// Removes a volume through the engine socket on drop.
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            engine_request(
                format!(
                    "DELETE /v1.41/volumes/{}?force=1 HTTP/1.0\r\nHost: docker\r\n\r\n",
                    self.0
                )
                .as_bytes(),
            )
        });
    }
}

#[test]
fn bind_backed_volumes_are_refused() {
    require_engine!();
    let proxy = example_proxy();
    let mut failures = Vec::new();
    for (label, options, allowed) in [
        (
            "bind device",
            r#""DriverOpts":{"type":"none","o":"bind","device":"/"}"#,
            false,
        ),
        (
            "lower-case keys",
            r#""driveropts":{"type":"none","o":"bind","device":"/etc"}"#,
            false,
        ),
        (
            "rbind among options",
            r#""DriverOpts":{"type":"none","o":"ro,rbind","device":"/srv"}"#,
            false,
        ),
        ("upper-case BIND", r#""DriverOpts":{"o":"BIND"}"#, false),
        (
            "long s in DriverOpts",
            r#""DriverOptſ":{"type":"none","o":"bind","device":"/"}"#,
            false,
        ),
        ("plain volume", "", true),
        // Any driver mount option is refused: type=proc or an overlay with a
        // host lowerdir reached the host through the same fields.
        (
            "tmpfs volume",
            r#""DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=1m"}"#,
            false,
        ),
        (
            "host procfs volume",
            r#""DriverOpts":{"type":"proc","device":"proc"}"#,
            false,
        ),
        (
            "overlay of host directories",
            r#""DriverOpts":{"type":"overlay","device":"overlay","o":"lowerdir=/etc:/usr"}"#,
            false,
        ),
        ("empty driver options", r#""DriverOpts":{}"#, true),
    ] {
        let name = unique_name("vol");
        let _guard = VolumeGuard(name.clone());
        let json = if options.is_empty() {
            format!(r#"{{"Name":"{name}"}}"#)
        } else {
            format!(r#"{{"Name":"{name}",{options}}}"#)
        };
        let response = send(&proxy, &post_json("/v1.41/volumes/create", &json));
        let exists = engine_get(&format!("/v1.41/volumes/{name}")).status == 200;
        let ok = if allowed {
            response.status == 201 && exists
        } else {
            response.status == 403 && response.text().contains(BIND_VOLUMES) && !exists
        };
        if !ok {
            failures.push(format!(
                "{label}: {} {} (volume exists: {exists})",
                response.status,
                response.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// === exec ===

#[test]
fn privileged_exec_is_refused_even_for_admin() {
    require_engine!();
    let proxy = example_proxy();
    let guard = ContainerGuard::new("exec");
    let response = send(
        &proxy,
        &post_json(
            &create_target("/v1.41/containers/create", &guard.name),
            &body(EMPTY_HOST_CONFIG),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let exec = |token: &str, path: String, json: &str| {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n\
             {json}",
            json.len()
        );
        send(&proxy, request.as_bytes())
    };
    for (path, json) in [
        (
            format!("/v1.41/containers/{}/exec", guard.name),
            r#"{"Cmd":["id"],"Privileged":true}"#,
        ),
        (
            format!("/v1.41/containers/{}/exec", guard.name),
            r#"{"Cmd":["id"],"privileged":true}"#,
        ),
        (
            format!("/v1.41/containers/{}/%65xec", guard.name),
            r#"{"Cmd":["id"],"PRIVILEGED":true}"#,
        ),
        (
            format!("/v1.41.0/containers/{}/exec", guard.name),
            r#"{"Cmd":["id"],"Privileged":true}"#,
        ),
    ] {
        let response = exec(ADMIN_TOKEN, path.clone(), json);
        assert_eq!(response.assert_json_error(403), PRIVILEGED, "{path} {json}");
    }
    // Not for the ci token at all; fine for admin without privileges (the
    // container is not running, so the engine answers 409).
    let path = format!("/v1.41/containers/{}/exec", guard.name);
    let response = exec(CI_TOKEN, path.clone(), r#"{"Cmd":["id"]}"#);
    assert_eq!(
        response.assert_json_error(403),
        "docker exec is reserved for the operators (admin token)"
    );
    let response = exec(ADMIN_TOKEN, path, r#"{"Cmd":["id"]}"#);
    assert_eq!(response.status, 409, "{}", response.text());
}
