//! `--check-config` and `explain`: the offline commands that validate a
//! policy before a deploy and show how it judges one request.
//!
//! They run the proxy binary as a process; no engine is needed.

mod support;

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_docker-api-proxy");

/// Runs the binary with a clean environment plus `env`.
fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DOCKER_PROXY_PORT")
        .env_remove("DOCKER_SOCKET")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_PROXY_SECRET")
        .env_remove("DOCKER_PROXY_CONFIG")
        .env_remove("DOCKER_PROXY_ADMIN_TOKEN")
        .env_remove("DOCKER_PROXY_CI_TOKEN")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run the proxy binary");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a file");
    path.display().to_string()
}

const TOKENS: &[(&str, &str)] = &[
    ("DOCKER_PROXY_ADMIN_TOKEN", support::ADMIN_TOKEN),
    ("DOCKER_PROXY_CI_TOKEN", support::CI_TOKEN),
];

fn example(dir: &Path) -> String {
    write(
        dir,
        "config.yaml",
        &support::example_policy(&dir.join("audit.jsonl")),
    )
}

// === --check-config ===

#[test]
fn check_config_lists_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "bad.yaml",
        r#"global:
  port: 2376
  colour: blue
auth:
  type: none
rules:
  - name: misspelled-operator
    action: deny
    conditions:
      - field: path
        operator: startswith
        value: /containers
  - name: bad-regex
    action: deny
    conditions:
      - or:
          - field: path
            operator: matches
            value: "^/(containers"
  - name: bad-cidr
    action: deny
    conditions:
      - field: client_ip
        operator: in
        value: ["10.0.0.0/8", "192.168.1.0/33"]
  - name: misspelled-operator
    action: deny
  - name: dry-allow
    action: allow
    dry_run: true
  - name: unknown-rule-key
    action: deny
    mesage: "typo"
"#,
    );
    let (code, stdout, stderr) = run(&["--check-config", "--config", &config], &[], dir.path());
    assert_ne!(code, 0, "an invalid config passed:\n{stdout}");
    for expected in [
        "global.colour",
        "rules[0].conditions[0].operator",
        "\"startswith\" is not an operator",
        "did you mean \"starts_with\"",
        "rules[1].conditions[0].or[0].value",
        "not a valid regex",
        "rules[2].conditions[0].value[1]",
        "192.168.1.0/33",
        "rules[3].name",
        "already used by rules[0]",
        "rules[4].dry_run",
        "rules[5].mesage",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains("configuration is invalid (7 problems)"),
        "{stderr}"
    );
    assert!(!stdout.contains("configuration is valid"), "{stdout}");
}

#[test]
fn check_config_names_operators_that_do_not_fit_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "bad.yaml",
        r#"auth: { type: none }
rules:
  - name: exists-on-method
    action: deny
    conditions:
      - { field: method, operator: exists }
  - name: unknown-field
    action: deny
    conditions:
      - { field: bodyy.HostConfig, operator: exists }
  - name: unknown-action
    action: refuse
  - name: in-needs-a-list
    action: deny
    conditions:
      - { field: path, operator: in, value: /x }
"#,
    );
    let (code, _, stderr) = run(&["--check-config", "--config", &config], &[], dir.path());
    assert_ne!(code, 0);
    for expected in [
        "rules[0].conditions[0]",
        "rules[1].conditions[0].field",
        "rules[2].action",
        "rules[3].conditions[0].value",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("(4 problems)"), "{stderr}");
}

#[test]
fn check_config_of_the_example_policy_shows_settings_rules_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let mut env = TOKENS.to_vec();
    env.push(("DOCKER_PROXY_PORT", "23999"));
    let (code, stdout, stderr) = run(
        &["--check-config", "--config", &config, "--workers", "3"],
        &env,
        dir.path(),
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let setting = |key: &str| -> String {
        stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no setting {key} in:\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(setting("global.port"), "global.port 23999 (environment)");
    assert_eq!(setting("global.workers"), "global.workers 3 (flag)");
    assert_eq!(
        setting("global.log_format"),
        "global.log_format json (file)"
    );
    assert_eq!(
        setting("global.limits.upstream_connect"),
        "global.limits.upstream_connect 5s (default)"
    );
    assert!(setting("global.audit_log").ends_with("audit.jsonl (file)"));
    assert!(stdout.contains("ci-jobs (role ci)"), "{stdout}");
    assert!(!stdout.contains(support::CI_TOKEN), "a token was printed");

    // Rules in evaluation order: priority 100, then 50, then file order.
    let order: Vec<&str> = stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (number, rest) = line.split_once(". ")?;
            number.parse::<u32>().ok()?;
            rest.split_whitespace().next()
        })
        .collect();
    assert_eq!(
        order,
        [
            "deny-swarm-secrets-plugins",
            "deny-privileged",
            "deny-host-mounts",
            "deny-volumes-from",
            "deny-bind-volumes",
            "deny-capabilities",
            "deny-unconfined-security-opts",
            "deny-confinement-profiles",
            "deny-unmasked-system-paths",
            "deny-host-namespaces",
            "deny-devices",
            "deny-device-requests",
            "deny-links",
            "deny-top-level-host-settings",
            "deny-legacy-api-versions",
            "deny-build-host-network",
            "deny-remote-fetches",
            "deny-buildkit-control",
            "deny-commit",
            "deny-top-ps-args",
            "limit-container-create",
            "exec-needs-admin",
            "copy-in-needs-admin",
            "attach-input-needs-admin",
            "redact-container-env",
            "redact-image-env",
            "watch-image-pulls",
        ],
        "{stdout}"
    );
    assert!(stdout.contains("then: default_action allow"), "{stdout}");
    assert!(stdout.contains("warnings: none"), "{stdout}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
}

#[test]
fn check_config_warns_about_shadowed_rules_and_unset_variables() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "warn.yaml",
        r#"auth:
  tokens:
    - { token: "${CHECK_CONFIG_UNSET_VARIABLE}", role: admin }
    - { token: fixed-token, role: user }
rules:
  - name: deny-everything
    priority: 5
    action: deny
  - name: never-reached
    action: allow
    conditions:
      - { field: path, operator: equals, value: /_ping }
"#,
    );
    let (code, stdout, stderr) = run(&["--check-config", "--config", &config], &[], dir.path());
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let warnings = stdout.split("warnings").nth(1).unwrap_or_default();
    assert!(warnings.contains("CHECK_CONFIG_UNSET_VARIABLE"), "{stdout}");
    assert!(
        warnings.contains("\"never-reached\" can never match")
            && warnings.contains("\"deny-everything\""),
        "{stdout}"
    );
}

#[test]
fn check_config_warns_when_the_example_tokens_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let (_, stdout, stderr) = run(&["--check-config", "--config", &config], &[], dir.path());
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("DOCKER_PROXY_ADMIN_TOKEN is not set"), "{all}");
    assert!(all.contains("DOCKER_PROXY_CI_TOKEN is not set"), "{all}");
    assert!(
        all.to_lowercase().contains("fail"),
        "no fail-closed notice:\n{all}"
    );
}

// === explain ===

#[test]
fn explain_shows_each_rule_and_exits_1_for_a_denied_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let body = write(
        dir.path(),
        "priv.json",
        r#"{"Image":"x","hostconfig":{"PRIVILEGED":true}}"#,
    );
    let (code, stdout, stderr) = run(
        &[
            "explain",
            "--config",
            &config,
            "POST",
            "/v1.41/containers/%63reate?name=x",
            "--body",
            &body,
            "--token",
            support::CI_TOKEN,
        ],
        TOKENS,
        dir.path(),
    );
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("rule \"deny-swarm-secrets-plugins\" (deny): no match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule \"deny-privileged\" (deny): match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule \"deny-host-mounts\" (deny): skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "decision: deny 403 (rule \"deny-privileged\"): privileged containers are not allowed"
        ),
        "{stdout}"
    );
}

#[test]
fn explain_exits_0_for_an_allowed_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let body = write(
        dir.path(),
        "ok.json",
        r#"{"Image":"x","HostConfig":{"Binds":["data:/data"]}}"#,
    );
    let (code, stdout, stderr) = run(
        &[
            "explain",
            "--config",
            &config,
            "POST",
            "/v1.41/containers/create",
            "--body",
            &body,
            "--role",
            "ci",
        ],
        TOKENS,
        dir.path(),
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("rule \"deny-host-mounts\" (deny): no match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule \"limit-container-create\" (rate_limit): match"),
        "{stdout}"
    );
    assert!(stdout.contains("decision: allow"), "{stdout}");
    // Every rule is listed, in evaluation order.
    assert_eq!(
        stdout.matches("\nrule \"").count() + usize::from(stdout.starts_with("rule \"")),
        27,
        "{stdout}"
    );
}

#[test]
fn explain_applies_roles_and_response_filters() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let exec = [
        "explain",
        "--config",
        &config,
        "POST",
        "/v1.41/containers/job/exec",
    ];
    let (code, stdout, _) = run(&[&exec[..], &["--role", "ci"]].concat(), TOKENS, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("docker exec is reserved for the operators (admin token)"),
        "{stdout}"
    );
    let (code, stdout, _) = run(
        &[&exec[..], &["--token", support::ADMIN_TOKEN]].concat(),
        TOKENS,
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}");
    let (code, _, _) = run(
        &[&exec[..], &["--token", "wrong-token"]].concat(),
        TOKENS,
        dir.path(),
    );
    assert_eq!(code, 1);

    let (code, stdout, _) = run(
        &[
            "explain",
            "--config",
            &config,
            "GET",
            "/v1.41/containers/job/json",
            "--role",
            "ci",
        ],
        TOKENS,
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("Config.Env"), "{stdout}");
}

#[test]
fn explain_refuses_what_the_proxy_refuses_before_rules() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let ambiguous = write(
        dir.path(),
        "amb.json",
        r#"{"HostConfig":{},"hostconfig":{"Privileged":true}}"#,
    );
    for (target, body) in [
        ("/v1.41//containers/create", None),
        ("/v1.41/containers/%2563reate", None),
        ("/v1.41/v1.41/containers/create", None),
        ("/v1.41/containers/create", Some(&ambiguous)),
    ] {
        let mut args = vec![
            "explain", "--config", &config, "POST", target, "--role", "ci",
        ];
        if let Some(body) = body {
            args.extend(["--body", body.as_str()]);
        }
        let (code, stdout, stderr) = run(&args, TOKENS, dir.path());
        assert_eq!(code, 1, "{target}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains("refused with 400"), "{target}: {stdout}");
    }
}

/// Without --token or --role, a configuration that requires
/// authentication refuses the request the way the running proxy would.
#[test]
fn explain_without_credentials_refuses_like_the_proxy_when_auth_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "auth:\n  tokens:\n    - {token: t0ken-value, role: admin}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_docker-api-proxy"))
        .args([
            "explain",
            "--config",
            config.to_str().unwrap(),
            "GET",
            "/v1.41/containers/json",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("refused with 401"), "{stdout}");
    assert!(stdout.contains("--token"), "{stdout}");

    std::fs::write(&config, "global: {port: 2399}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_docker-api-proxy"))
        .args([
            "explain",
            "--config",
            config.to_str().unwrap(),
            "GET",
            "/_ping",
        ])
        .env_remove("DOCKER_PROXY_SECRET")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "fail-closed config allowed: {stdout}"
    );
    assert!(stdout.contains("not configured"), "{stdout}");
}

// === fail-closed authentication, the engine socket, closed pipes ===

/// Valid YAML whose authentication fails closed (tokens unset) is not a
/// passing deploy check: exit 2 and say that every request is refused.
#[test]
fn check_config_fails_when_authentication_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let (code, stdout, stderr) = run(&["--check-config", "--config", &config], &[], dir.path());
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("configuration is valid, but the proxy would refuse every request"),
        "{stdout}"
    );
    assert!(stdout.contains("refused with 401"), "{stdout}");
    assert!(!stdout.contains("\nconfiguration is valid\n"), "{stdout}");
    // The type the file asks for is shown, with what became of it.
    assert!(
        stdout.contains("bearer, failing closed (no usable token)  (file)"),
        "{stdout}"
    );
    // With the tokens set the same file passes.
    let (code, stdout, _) = run(&["--check-config", "--config", &config], TOKENS, dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("configuration is valid\n"), "{stdout}");
}

/// `--check-config` names the socket it would use and the variables it read.
#[test]
fn check_config_shows_the_engine_socket_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let missing = dir.path().join("does-not-exist.sock");
    let host = format!("unix://{}", missing.display());
    let mut env = TOKENS.to_vec();
    env.push(("DOCKER_HOST", &host));
    let (code, stdout, _) = run(&["--check-config", "--config", &config], &env, dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "engine socket: {} (from DOCKER_HOST=\"{host}\")",
            missing.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("never falls back to another socket"),
        "{stdout}"
    );

    let (_, stdout, _) = run(&["--check-config", "--config", &config], TOKENS, dir.path());
    assert!(stdout.contains("engine socket: "), "{stdout}");
    assert!(
        stdout.contains("read: DOCKER_HOST unset") && stdout.contains("tried in order: "),
        "{stdout}"
    );
}

/// A socket named by DOCKER_HOST that does not exist is never replaced by
/// the engine on /var/run/docker.sock: requests get 502.
#[test]
fn a_missing_docker_host_socket_is_not_replaced_by_another_engine() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write(
        dir.path(),
        "config.yaml",
        &format!("global: {{port: {port}, bind: 127.0.0.1}}\nauth: {{type: none}}\n"),
    );
    let missing = dir.path().join("does-not-exist.sock");
    let mut child = Command::new(BIN)
        .args(["--config", &config])
        .current_dir(dir.path())
        .env_remove("DOCKER_SOCKET")
        .env_remove("DOCKER_PROXY_PORT")
        .env_remove("DOCKER_PROXY_SECRET")
        .env("DOCKER_HOST", format!("unix://{}", missing.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = |path: &str| -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        Some(text)
    };
    let mut version = None;
    while version.is_none() && Instant::now() < deadline {
        version = answer("/v1.41/version");
        if version.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let ready = answer("/readyz");
    let _ = child.kill();
    let _ = child.wait();
    let version = version.expect("the proxy did not accept within 15 s");
    assert!(version.starts_with("HTTP/1.1 502"), "{version}");
    let ready = ready.unwrap_or_default();
    assert!(!ready.starts_with("HTTP/1.1 200"), "{ready}");
}

/// `--check-config | head -3`: a reader that goes away ends the report
/// quietly, without a panic.
#[test]
fn check_config_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = example(dir.path());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["--check-config", "--config", &config])
        .current_dir(dir.path())
        .envs(TOKENS.iter().copied())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
