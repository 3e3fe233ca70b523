use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::policy::{JsonBody, Request, Verdict};

const EXAMPLE: &str = include_str!("../../config.yaml");

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn load(text: &str, pairs: &[(&str, &str)]) -> Config {
    let env = env_of(pairs);
    match load_from_str(text, &env, &Overrides::default()) {
        Ok(config) => config,
        Err(errors) => panic!("config should load:\n{errors}"),
    }
}

fn load_errors(text: &str) -> Vec<ConfigError> {
    let env = env_of(&[]);
    match load_from_str(text, &env, &Overrides::default()) {
        Ok(_) => panic!("config should not load"),
        Err(ConfigErrors(errors)) => errors,
    }
}

fn source_of<'a>(config: &'a Config, key: &str) -> (&'a str, Source) {
    config
        .sources
        .iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, value, source)| (value.as_str(), *source))
        .unwrap_or_else(|| panic!("no source recorded for {key}: {:#?}", config.sources))
}

// --- authentication resolution: one test per row of SPEC section 4 --------

#[test]
fn no_file_and_no_secret_runs_without_auth_and_warns() {
    let config = load_defaults(&env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(config.auth, AuthMode::None);
    assert!(config
        .warnings
        .iter()
        .any(|w| w.contains("authentication is off")));
    assert_eq!(config.policy.rule_count(), 0);
    assert_eq!(config.path, None);
}

#[test]
fn no_file_with_secret_requires_that_secret_as_admin() {
    let env = env_of(&[("DOCKER_PROXY_SECRET", "s3")]);
    let config = load_defaults(&env, &Overrides::default()).unwrap();
    assert_eq!(
        config.auth,
        AuthMode::Bearer {
            tokens: vec![],
            secret: Some("s3".into())
        }
    );
    assert_eq!(
        source_of(&config, "auth.secret"),
        ("(set)", Source::Environment)
    );
}

#[test]
fn file_without_auth_and_without_secret_fails_closed_with_a_fix() {
    let config = load("global: {port: 2400}\n", &[]);
    let AuthMode::FailClosed { reason } = &config.auth else {
        panic!("expected fail closed, got {:?}", config.auth);
    };
    assert!(
        reason.contains("auth: {type: none}") && reason.contains("tokens"),
        "{reason}"
    );
    assert!(config.warnings.iter().any(|w| w.contains("fails closed")));
}

#[test]
fn file_without_auth_but_with_secret_uses_the_secret() {
    let config = load("rules: []\n", &[("DOCKER_PROXY_SECRET", "envsecret")]);
    assert_eq!(
        config.auth,
        AuthMode::Bearer {
            tokens: vec![],
            secret: Some("envsecret".into())
        }
    );
}

#[test]
fn explicit_type_none_disables_auth() {
    assert_eq!(load("auth: {type: none}\n", &[]).auth, AuthMode::None);
}

#[test]
fn type_none_with_secret_in_environment_still_requires_the_secret() {
    let config = load("auth: {type: none}\n", &[("DOCKER_PROXY_SECRET", "x")]);
    assert_eq!(
        config.auth,
        AuthMode::Bearer {
            tokens: vec![],
            secret: Some("x".into())
        }
    );
    assert!(config.warnings.iter().any(|w| w.contains("contradiction")));
}

#[test]
fn bearer_without_any_non_empty_credential_fails_closed() {
    for text in [
        "auth: {type: bearer, tokens: []}\n",
        "auth: {tokens: [{token: \"${UNSET_TOKEN}\"}]}\n",
        "auth: {secret: \"\"}\n",
        "auth: {lockout: {failures: 3}}\n",
    ] {
        let config = load(text, &[]);
        assert!(
            matches!(config.auth, AuthMode::FailClosed { .. }),
            "{text}: {:?}",
            config.auth
        );
    }
}

#[test]
fn bearer_keeps_tokens_with_roles_and_the_secret() {
    let text =
        "auth:\n  secret: ${ADMIN}\n  tokens:\n    - {token: t1, role: ci, name: jobs}\n    \
        - {token: t2}\n    - {token: \"\"}\n";
    let config = load(text, &[("ADMIN", "adm")]);
    let AuthMode::Bearer { tokens, secret } = &config.auth else {
        panic!("expected bearer, got {:?}", config.auth);
    };
    assert_eq!(secret.as_deref(), Some("adm"));
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        (tokens[0].role.as_str(), tokens[0].name.as_deref()),
        ("ci", Some("jobs"))
    );
    assert_eq!(tokens[1].role, "user");
    assert!(config.warnings.iter().any(|w| w.contains("auth.tokens[2]")));
    assert!(
        !format!("{:?}", config.auth).contains("t1"),
        "Debug must not show tokens"
    );
}

#[test]
fn environment_secret_wins_over_the_file_secret() {
    let config = load(
        "auth: {secret: filesecret}\n",
        &[("DOCKER_PROXY_SECRET", "env")],
    );
    assert_eq!(
        config.auth,
        AuthMode::Bearer {
            tokens: vec![],
            secret: Some("env".into())
        }
    );
}

#[test]
fn mtls_requires_client_ca_and_keeps_the_role_map() {
    let errors = load_errors("auth: {type: mtls}\n");
    assert!(errors
        .iter()
        .any(|e| e.location == "auth.type" && e.what.contains("client_ca")));

    let text =
        "global:\n  tls: {cert: c.pem, key: k.pem, client_ca: ca.pem}\nauth:\n  type: mtls\n  \
        mtls:\n    cert_role_map:\n      - {cn: \"*.ci.example.com\", role: ci}\n      - {cn: ops, \
        role: admin}\n    default_role: guest\n";
    let config = load(text, &[]);
    assert_eq!(
        config.auth,
        AuthMode::Mtls {
            cert_role_map: vec![
                ("*.ci.example.com".into(), "ci".into()),
                ("ops".into(), "admin".into())
            ],
            default_role: Some("guest".into()),
        }
    );
}

#[test]
fn contradictory_auth_settings_are_errors() {
    let errors = load_errors("auth: {type: none, tokens: [{token: a}]}\n");
    assert!(errors.iter().any(|e| e.location == "auth.tokens"));
    let errors = load_errors("auth: {type: bearr, secret: x}\n");
    assert!(errors
        .iter()
        .any(|e| e.location == "auth.type" && e.fix.contains("\"bearer\"")));
    let errors = load_errors("auth: {tokens: [{token: a}, {token: a, role: admin}]}\n");
    let duplicate = errors
        .iter()
        .find(|e| e.location == "auth.tokens[1].token")
        .unwrap();
    assert!(
        !duplicate.to_string().contains(": a"),
        "token value must not be printed"
    );
}

// --- precedence and sources --------------------------------------------------

#[test]
fn precedence_is_flag_then_environment_then_file_then_default() {
    let text = "global: {port: 3000, socket: /file.sock, log_level: warn}\nauth: {type: none}\n";
    let env = [
        ("DOCKER_PROXY_PORT", "3001"),
        ("DOCKER_SOCKET", "/env.sock"),
        ("RUST_LOG", "debug,hyper=warn"),
    ];
    let config = load(text, &env);
    assert_eq!(config.settings.port, 3001);
    assert_eq!(
        source_of(&config, "global.port"),
        ("3001", Source::Environment)
    );
    assert_eq!(
        config.settings.socket.as_deref(),
        Some(std::path::Path::new("/env.sock"))
    );
    assert_eq!(config.settings.log_level, "debug,hyper=warn");
    assert_eq!(
        source_of(&config, "global.log_level").1,
        Source::Environment
    );
    assert_eq!(source_of(&config, "global.workers").1, Source::Default);

    let overrides = Overrides {
        port: Some(4000),
        socket: Some("/flag.sock".into()),
        bind: Some("::1".parse().unwrap()),
        workers: Some(3),
        config: None,
    };
    let env = env_of(&env);
    let config = load_from_str(text, &env, &overrides).unwrap();
    assert_eq!(config.settings.port, 4000);
    assert_eq!(source_of(&config, "global.port"), ("4000", Source::Flag));
    assert_eq!(
        source_of(&config, "global.socket"),
        ("/flag.sock", Source::Flag)
    );
    assert_eq!(config.settings.bind, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(config.settings.workers, 3);

    let config = load(text, &[]);
    assert_eq!(source_of(&config, "global.port"), ("3000", Source::File));
    assert_eq!(
        source_of(&config, "global.log_level"),
        ("warn", Source::File)
    );
    let config = load("auth: {type: none}\n", &[]);
    assert_eq!(source_of(&config, "global.port"), ("2376", Source::Default));
    assert_eq!(
        source_of(&config, "global.socket"),
        ("auto", Source::Default)
    );
}

#[test]
fn defaults_match_the_specification() {
    let config = load("auth: {type: none}\n", &[]);
    let s = &config.settings;
    assert_eq!(
        (s.port, s.bind),
        (2376, "127.0.0.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        (s.log_level.as_str(), s.log_format),
        ("info", LogFormat::Text)
    );
    assert_eq!(s.default_action, DefaultAction::Allow);
    assert_eq!(
        (s.metrics.enabled, s.metrics.path.as_str()),
        (false, "/metrics")
    );
    assert_eq!(
        (
            s.health.enabled,
            s.health.live_path.as_str(),
            s.health.ready_path.as_str()
        ),
        (true, "/healthz", "/readyz")
    );
    assert_eq!(s.limits.header_timeout, Duration::from_secs(30));
    assert_eq!(s.limits.max_inspect_body, 1 << 20);
    assert_eq!(s.limits.max_filter_document, 64 << 20);
    assert_eq!(
        config.lockout,
        Lockout {
            failures: 10,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300)
        }
    );
    assert!(s.tls.is_none() && s.socket.is_none() && s.audit_log.is_none());
}

#[test]
fn explicit_missing_file_is_an_error_and_missing_default_file_means_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = dir.path().join("config.yaml");
    let none = env_of(&[]);
    assert_eq!(
        choose_file(&Overrides::default(), &none, &fallback).unwrap(),
        None
    );

    let flag = Overrides {
        config: Some(dir.path().join("missing.yaml")),
        ..Default::default()
    };
    let error = choose_file(&flag, &none, &fallback).unwrap_err();
    assert!(error.what.contains("--config"), "{error}");
    let missing = dir.path().join("env.yaml").display().to_string();
    let env = env_of(&[("DOCKER_PROXY_CONFIG", missing.as_str())]);
    let error = choose_file(&Overrides::default(), &env, &fallback).unwrap_err();
    assert!(error.what.contains("DOCKER_PROXY_CONFIG"), "{error}");

    std::fs::write(&fallback, "auth: {type: none}\n").unwrap();
    let chosen = choose_file(&Overrides::default(), &none, &fallback).unwrap();
    assert_eq!(chosen, Some((fallback.clone(), Source::Default)));
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "").unwrap();
    let env = env_of(&[("DOCKER_PROXY_CONFIG", other.to_str().unwrap())]);
    let chosen = choose_file(&Overrides::default(), &env, &fallback).unwrap();
    assert_eq!(chosen, Some((other.clone(), Source::Environment)));
    let flag = Overrides {
        config: Some(fallback.clone()),
        ..Default::default()
    };
    assert_eq!(
        choose_file(&flag, &env, &fallback).unwrap(),
        Some((fallback, Source::Flag))
    );
}

// --- ${VAR} expansion ---------------------------------------------------------

#[test]
fn variables_expand_and_unset_ones_warn() {
    let text = "global: {port: ${PORT}, audit_log: \"${DIR}/audit.jsonl\"}\n\
        auth: {type: none}\nrules:\n  - {name: r, action: deny, message: \"cost $${X}\"}\n";
    let config = load(text, &[("PORT", "2500")]);
    assert_eq!(config.settings.port, 2500);
    assert_eq!(
        config.settings.audit_log.as_deref(),
        Some(std::path::Path::new("/audit.jsonl"))
    );
    assert!(config
        .warnings
        .iter()
        .any(|w| w.contains("${DIR}") && w.contains("not set")));
}

/// Token values from the environment arrive byte for byte, whatever YAML
/// would make of them as text.
#[test]
fn token_values_from_the_environment_are_never_read_as_yaml() {
    let text = "auth:\n  type: bearer\n  tokens:\n    - token: ${DOCKER_PROXY_CI_TOKEN}\n      \
        role: ci\n    - {token: ${SECOND}, role: admin}\n  secret: \"${THIRD}\"\n";
    for value in [
        "abc #def",
        "!secret",
        "yes",
        "0123",
        "\"quoted\"",
        "1e3",
        "null",
        "~",
        "- a",
    ] {
        let config = load(
            text,
            &[
                ("DOCKER_PROXY_CI_TOKEN", value),
                ("SECOND", &format!("{value}2")),
                ("THIRD", value),
            ],
        );
        let AuthMode::Bearer { tokens, secret } = &config.auth else {
            panic!("{value:?}: expected bearer, got {:?}", config.auth);
        };
        let got: Vec<&str> = tokens.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(got, [value.to_owned(), format!("{value}2")], "{value:?}");
        assert_eq!(secret.as_deref(), Some(value), "{value:?}");
        assert!(
            !config.warnings.iter().any(|w| w.contains("empty token")),
            "{value:?}: {:?}",
            config.warnings
        );
    }
}

// --- errors -----------------------------------------------------------------

#[test]
fn every_error_is_reported_at_once_with_locations() {
    let text = r#"
globals: {}
global:
  prot: 1
  port: "abc"
  tls: {cert: c.pem, keyy: k.pem}
  limits: {header_timeout: -1}
  default_action: alow
auth:
  tpye: bearer
rules:
  - name: a
    action: deny
    conditions:
      - {field: path, operator: startswith, value: /x}
      - {field: path, operator: matches, value: "(["}
      - {field: client_ip, operator: in, value: [300.0.0.0/8]}
  - name: a
    action: allow
    dry_run: true
"#;
    let errors = load_errors(text);
    let locations: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
    for expected in [
        "globals",
        "global.prot",
        "global.port",
        "global.tls.keyy",
        "global.limits.header_timeout",
        "auth.tpye",
        "rules[0].conditions[0].operator",
        "rules[0].conditions[1].value",
        "rules[0].conditions[2].value[0]",
        "rules[1].dry_run",
        "rules[1].name",
        "global.default_action",
    ] {
        assert!(
            locations.contains(&expected),
            "missing {expected} in {locations:#?}"
        );
    }
    let top = errors.iter().find(|e| e.location == "globals").unwrap();
    assert!(top.fix.contains("\"global\""), "{top:?}");
    let prot = errors.iter().find(|e| e.location == "global.prot").unwrap();
    assert!(prot.fix.contains("\"port\""), "{prot:?}");
    let rendered = ConfigErrors(errors.clone()).to_string();
    assert!(
        rendered.contains(
            "config error at rules[0].conditions[0].operator: \"startswith\" \
        is not an operator\n  why: "
        ),
        "{rendered}"
    );
}

#[test]
fn default_action_typo_is_reported_with_suggestion() {
    let errors = load_errors("global: {default_action: alow}\nauth: {type: none}\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].fix.contains("\"allow\""));
}

#[test]
fn broken_yaml_and_broken_references_are_errors() {
    let errors = load_errors("global: [1\n");
    assert_eq!(errors[0].location, "file");
    let errors = load_errors("auth: {secret: ${OPEN}\nx: ${BAD-NAME}\n");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].location, "line 2");
}

#[test]
fn value_errors_in_global_sections() {
    let text = "global:\n  bind: localhost\n  workers: 0\n  log_level: verbose\n  \
        log_format: xml\n  metrics: {path: metrics}\n  tls: {cert: c.pem, key: k.pem, \
        require_client_cert: true}\nauth: {type: none}\n";
    let errors = load_errors(text);
    let locations: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
    for expected in [
        "global.bind",
        "global.workers",
        "global.log_level",
        "global.log_format",
        "global.metrics.path",
        "global.tls.require_client_cert",
    ] {
        assert!(
            locations.contains(&expected),
            "missing {expected} in {locations:#?}"
        );
    }
}

// --- the bundled example -------------------------------------------------------

fn example() -> Config {
    load(
        EXAMPLE,
        &[
            ("DOCKER_PROXY_ADMIN_TOKEN", "adm"),
            ("DOCKER_PROXY_CI_TOKEN", "ci"),
        ],
    )
}

fn create(json: &str, role: &str) -> Verdict {
    let config = example();
    let req = Request {
        method: "POST",
        path: "/containers/create",
        api_version: "1.43",
        query: "name=job",
        headers: &[],
        client_ip: "127.0.0.1".parse().unwrap(),
        role: Some(role),
    };
    assert!(config.policy.needs_body(&req));
    let body = JsonBody::parse(json.as_bytes()).expect("test body parses");
    config
        .policy
        .evaluate(&req, Some(&body), Instant::now())
        .verdict
}

fn denied(json: &str) -> bool {
    matches!(create(json, "ci"), Verdict::Deny { status: 403, .. })
}

#[test]
fn example_config_loads_with_tokens_from_the_environment() {
    let config = example();
    let AuthMode::Bearer { tokens, secret } = &config.auth else {
        panic!("expected bearer, got {:?}", config.auth);
    };
    assert_eq!((tokens.len(), secret), (2, &None));
    assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
    assert_eq!(config.settings.log_format, LogFormat::Json);
    let without_env = load(EXAMPLE, &[]);
    assert!(matches!(without_env.auth, AuthMode::FailClosed { .. }));
}

#[test]
fn example_allows_an_ordinary_ci_container() {
    let json = r#"{"Image": "alpine", "Cmd": ["true"], "Env": ["A=1"], "HostConfig":
        {"Binds": ["cache:/cache", "data:/data:ro"], "Privileged": false, "CapAdd": ["NET_RAW"],
         "Devices": [], "NetworkMode": "bridge", "Mounts": [{"Type": "volume", "Source": "v",
         "Target": "/v"}], "SecurityOpt": ["no-new-privileges"]}}"#;
    assert_eq!(create(json, "ci"), Verdict::Allow);
}

#[test]
fn example_denies_privileged_in_every_spelling() {
    for json in [
        r#"{"HostConfig": {"Privileged": true}}"#,
        r#"{"hostconfig": {"privileged": true}}"#,
        r#"{"HOSTCONFIG": {"PRIVILEGED": true}}"#,
        "{\"Ho\u{17F}tConfig\": {\"Privileged\": true}}",
        "{\"HostConfig\": {\"Privileged\": true}, \"Image\": \"\u{212A}\"}",
    ] {
        assert!(denied(json), "{json}");
    }
}

#[test]
fn example_denies_host_mounts_in_every_form() {
    for json in [
        r#"{"HostConfig": {"Binds": ["data:/data", "/:/host"]}}"#,
        r#"{"HostConfig": {"Binds": ["/var/run/docker.sock:/var/run/docker.sock:rw"]}}"#,
        r#"{"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/x"}]}}"#,
        r#"{"hostConfig": {"mounts": [{"type": "BIND", "source": "/etc", "target": "/x"}]}}"#,
        r#"{"HostConfig": {"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions":
            {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind",
            "device": "/etc"}}}}]}}"#,
        r#"{"HostConfig": {"VolumesFrom": ["other-container"]}}"#,
    ] {
        assert!(denied(json), "{json}");
    }
}

#[test]
fn example_denies_bind_backed_volumes() {
    let config = example();
    let req = Request {
        method: "POST",
        path: "/volumes/create",
        api_version: "",
        query: "",
        headers: &[],
        client_ip: "127.0.0.1".parse().unwrap(),
        role: Some("ci"),
    };
    for (json, refused) in [
        (
            r#"{"Name": "v", "Driver": "local", "DriverOpts": {"type": "none", "o": "bind",
            "device": "/etc"}}"#,
            true,
        ),
        (
            r#"{"Name": "v", "DriverOpts": {"o": "ro,rbind", "device": "/"}}"#,
            true,
        ),
        (
            r#"{"Name": "v", "DriverOpts": {"device": "/dev/sda1", "type": "ext4"}}"#,
            true,
        ),
        // Every driver mount option reaches mount(2) in dockerd's namespaces.
        (
            r#"{"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}}"#,
            true,
        ),
        (
            r#"{"Name": "v", "DriverOpts": {"type": "proc", "device": "proc"}}"#,
            true,
        ),
        (r#"{"Name": "v", "DriverOpts": {}}"#, false),
        (r#"{"Name": "v"}"#, false),
    ] {
        let body = JsonBody::parse(json.as_bytes()).unwrap();
        let verdict = config
            .policy
            .evaluate(&req, Some(&body), Instant::now())
            .verdict;
        assert_eq!(matches!(verdict, Verdict::Deny { .. }), refused, "{json}");
    }
}

#[test]
fn example_denies_capability_escalation_in_every_spelling() {
    for cap in [
        "SYS_ADMIN",
        "sys_admin",
        "CAP_SYS_ADMIN",
        "cap_sys_admin",
        "Cap_Sys_Admin",
        "ALL",
        "all",
        "CAP_ALL",
        "SYS_PTRACE",
        "NET_ADMIN",
        "SYS_MODULE",
        // Go's strings.ToUpper maps U+0131 to I and U+017F to S.
        "sys_adm\u{131}n",
        "\u{17F}ys_admin",
        "cap_\u{17F}y\u{17F}_adm\u{131}n",
    ] {
        let json = format!(r#"{{"HostConfig": {{"CapAdd": ["NET_RAW", "{cap}"]}}}}"#);
        assert!(denied(&json), "{cap}");
        let json = format!(r#"{{"HostConfig": {{"Capabilities": ["{cap}"]}}}}"#);
        assert!(denied(&json), "Capabilities {cap}");
    }
    assert!(denied(
        r#"{"HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}}"#
    ));
    assert!(denied(
        r#"{"HostConfig": {"SecurityOpt": ["label:disable"]}}"#
    ));
    assert!(!denied(
        r#"{"HostConfig": {"CapAdd": ["NET_RAW", "CHOWN"]}}"#
    ));
}

#[test]
fn example_denies_host_namespaces_and_devices() {
    for json in [
        r#"{"HostConfig": {"PidMode": "host"}}"#,
        r#"{"HostConfig": {"IpcMode": "host"}}"#,
        r#"{"HostConfig": {"UTSMode": "host"}}"#,
        r#"{"HostConfig": {"UsernsMode": "host"}}"#,
        r#"{"HostConfig": {"CgroupnsMode": "host"}}"#,
        r#"{"HostConfig": {"NetworkMode": "host"}}"#,
        r#"{"hostconfig": {"networkmode": "HOST"}}"#,
        r#"{"HostConfig": {"Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer":
            "/dev/fuse", "CgroupPermissions": "rwm"}]}}"#,
        r#"{"HostConfig": {"DeviceCgroupRules": ["c *:* rwm"]}}"#,
    ] {
        assert!(denied(json), "{json}");
    }
}

#[test]
fn example_admin_is_also_refused_dangerous_creates() {
    assert!(matches!(
        create(r#"{"HostConfig": {"Privileged": true}}"#, "admin"),
        Verdict::Deny { .. }
    ));
}

#[test]
fn example_get_container_list_needs_no_body_and_is_redacted() {
    let config = example();
    let req = Request {
        method: "GET",
        path: "/containers/json",
        api_version: "1.43",
        query: "all=1",
        headers: &[],
        client_ip: "127.0.0.1".parse().unwrap(),
        role: Some("ci"),
    };
    assert!(!config.policy.needs_body(&req));
    let decision = config.policy.evaluate(&req, None, Instant::now());
    assert_eq!(decision.verdict, Verdict::Allow);
    assert!(decision.filters.is_some());
    let inspect = Request {
        path: "/containers/abc/json",
        ..req
    };
    let decision = config.policy.evaluate(&inspect, None, Instant::now());
    let mut doc = serde_json::json!({"Config": {"Env": ["TOKEN=x"]}});
    decision.filters.expect("redaction applies").apply(&mut doc);
    assert_eq!(doc["Config"]["Env"][0], crate::policy::REDACTED);
}

#[test]
fn example_exec_needs_admin_and_pulls_are_dry_run() {
    let config = example();
    let base = Request {
        method: "POST",
        path: "/containers/abc/exec",
        api_version: "",
        query: "",
        headers: &[],
        client_ip: "127.0.0.1".parse().unwrap(),
        role: Some("ci"),
    };
    let body = JsonBody::parse(br#"{"Cmd": ["sh"]}"#).unwrap();
    let ci = config.policy.evaluate(&base, Some(&body), Instant::now());
    assert_eq!(ci.rule.as_deref(), Some("exec-needs-admin"));
    assert!(matches!(ci.verdict, Verdict::Deny { .. }));
    let admin = Request {
        role: Some("admin"),
        ..base
    };
    assert_eq!(
        config
            .policy
            .evaluate(&admin, Some(&body), Instant::now())
            .verdict,
        Verdict::Allow
    );

    let pull = Request {
        path: "/images/create",
        query: "fromImage=docker.io%2Flibrary%2Falpine",
        ..base
    };
    let decision = config.policy.evaluate(&pull, None, Instant::now());
    assert_eq!(decision.verdict, Verdict::Allow);
    assert_eq!(decision.dry_run_hits.len(), 1);
    let mirror = Request {
        query: "fromImage=mirror.ci.example.com/alpine",
        ..pull
    };
    assert!(config
        .policy
        .evaluate(&mirror, None, Instant::now())
        .dry_run_hits
        .is_empty());
}

#[test]
fn example_swarm_endpoints_are_for_admins_only() {
    let config = example();
    let req = Request {
        method: "GET",
        path: "/secrets",
        api_version: "",
        query: "",
        headers: &[],
        client_ip: "127.0.0.1".parse().unwrap(),
        role: Some("ci"),
    };
    assert!(matches!(
        config.policy.evaluate(&req, None, Instant::now()).verdict,
        Verdict::Deny { .. }
    ));
    let admin = Request {
        role: Some("admin"),
        ..req
    };
    assert_eq!(
        config.policy.evaluate(&admin, None, Instant::now()).verdict,
        Verdict::Allow
    );
}

#[test]
fn example_build_with_host_network_is_denied() {
    let config = example();
    let req = Request {
        method: "POST",
        path: "/build",
        api_version: "",
        query: "t=x&networkmode=host",
        headers: &[],
        client_ip: "127.0.0.1".parse().unwrap(),
        role: Some("ci"),
    };
    assert!(!config.policy.needs_body(&req));
    assert!(matches!(
        config.policy.evaluate(&req, None, Instant::now()).verdict,
        Verdict::Deny { .. }
    ));
}

// --- --check-config ------------------------------------------------------------

#[test]
fn check_report_lists_sources_rules_in_order_and_warnings() {
    let text =
        "global: {port: 3000}\nauth: {type: none}\nrules:\n  - {name: low, action: deny}\n  \
        - {name: high, action: allow, priority: 5}\n  - {name: never, action: deny, conditions: \
        [{field: path, operator: equals, value: \"${MISSING}/x\"}]}\n";
    let config = load(text, &[("DOCKER_SOCKET", "/s.sock")]);
    let report = render_check(&config);
    assert!(
        report.contains("global.port") && report.contains("3000  (file)"),
        "{report}"
    );
    assert!(report.contains("/s.sock  (environment)"), "{report}");
    assert!(
        report.contains("2376").not() && report.contains("(default)"),
        "{report}"
    );
    let high = report.find("1. high").expect("high first");
    let low = report.find("2. low").expect("low second");
    assert!(high < low);
    assert!(report.contains("\"low\" can never match"), "{report}");
    assert!(report.contains("\"never\" can never match"), "{report}");
    assert!(report.contains("${MISSING}"), "{report}");
    assert!(report.contains("authentication: none"), "{report}");
}

#[test]
fn check_report_of_example_is_clean_and_hides_secrets() {
    let config = example();
    let report = render_check(&config);
    assert!(report.contains("warnings: none"), "{report}");
    assert!(report.contains("operators (role admin)"), "{report}");
    assert!(
        !report.contains("adm,") && !report.contains(": ci\n"),
        "{report}"
    );
    assert!(report.contains("[reads body]"), "{report}");
}

trait Not {
    fn not(self) -> bool;
}

impl Not for bool {
    fn not(self) -> bool {
        !self
    }
}

#[test]
fn hostile_yaml_is_an_error_not_a_crash() {
    let deep = format!("rules: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    assert!(!load_errors(&deep).is_empty());
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let prev = level - 1;
        let name = format!("l{level}");
        let refs = vec![
            format!(
                "*{}",
                if prev == 0 {
                    "a".into()
                } else {
                    format!("l{prev}")
                }
            );
            10
        ];
        bomb.push_str(&format!("{name}: &{name} [{}]\n", refs.join(", ")));
    }
    assert!(!load_errors(&bomb).is_empty());
    for text in [
        "\u{0}",
        "- 1\n- 2\n",
        "\"just a string\"",
        "rules: 5\n",
        "global: [1]\n",
    ] {
        assert!(!load_errors(text).is_empty(), "{text:?}");
    }
}

#[test]
fn example_denies_host_settings_outside_host_config() {
    // dockerd reads HostConfig fields from the top level of a create body
    // (a deprecated embedded struct) when HostConfig is missing or null.
    for json in [
        r#"{"Image": "alpine", "Privileged": true}"#,
        r#"{"Image": "alpine", "privileged": false}"#,
        r#"{"Image": "alpine", "HostConfig": null, "Binds": ["/:/host"]}"#,
        r#"{"Image": "alpine", "CapAdd": ["SYS_ADMIN"]}"#,
        r#"{"Image": "alpine", "NetworkMode": "host"}"#,
        "{\"Image\": \"alpine\", \"Mount\u{17F}\": []}",
    ] {
        assert!(denied(json), "{json}");
    }
    // Without host settings, or with HostConfig present (then dockerd
    // ignores the top-level copy), the rule does not apply.
    for json in [
        r#"{"Image": "alpine", "Cmd": ["true"]}"#,
        r#"{"Image": "alpine", "HostConfig": {}, "Privileged": true}"#,
    ] {
        assert!(!denied(json), "{json}");
    }
}

#[test]
fn example_denies_api_versions_before_1_24() {
    let config = example();
    let verdict = |api_version: &str| {
        let req = Request {
            method: "POST",
            path: "/containers/job/start",
            api_version,
            query: "",
            headers: &[],
            client_ip: "127.0.0.1".parse().unwrap(),
            role: Some("admin"),
        };
        config.policy.evaluate(&req, None, Instant::now()).verdict
    };
    // dockerd compares each dot-separated part as a number.
    for old in ["1.23", "1.12", "1.2", "1.023", "01.23.0", "1.23.9", "1.0"] {
        assert!(
            matches!(verdict(old), Verdict::Deny { status: 400, .. }),
            "{old}"
        );
    }
    for current in ["", "1.24", "1.41", "1.41.0", "1.024", "1.100", "2.0"] {
        assert_eq!(verdict(current), Verdict::Allow, "{current}");
    }
}
