use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::check;
use super::model::{Answers, Auth, Condition, CustomRule, Secret, Token, Value};
use super::templates::{self, Template};
use super::validate;
use crate::config::{self, Overrides};
use crate::policy::{JsonBody, Request, Verdict};

fn answers(auth: Auth, templates: Vec<Template>, custom: Vec<CustomRule>) -> Answers {
    Answers {
        port: 2399,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        socket: Some("/var/run/docker.sock".into()),
        tls: None,
        auth,
        default_action: "allow".into(),
        audit_log: Some("/var/log/docker-api-proxy/audit.jsonl".into()),
        templates,
        custom,
    }
}

fn env_token(role: &str, var: &str) -> Token {
    Token {
        role: role.into(),
        name: role.into(),
        secret: Secret::Env {
            name: var.into(),
            value: format!("{role}-token-0123456789"),
        },
    }
}

fn every_template() -> Vec<Template> {
    vec![
        Template::BlockEndpoints {
            endpoints: (0..templates::ENDPOINTS.len()).collect(),
            exempt_admin: true,
        },
        Template::ReadOnly {
            resources: (0..templates::RESOURCES.len()).collect(),
            exempt_admin: true,
        },
        Template::BodyInspection {
            checks: (0..templates::BODY_CHECKS.len()).collect(),
        },
        Template::RoleAccess {
            read_only_roles: vec!["readonly".into()],
            exec_admin_only: true,
        },
        Template::IpFilter {
            allowed: vec!["127.0.0.1".into(), "10.0.0.0/8".into(), "::1".into()],
        },
        Template::Redaction {
            redactions: (0..templates::REDACTIONS.len()).collect(),
        },
        Template::RateLimit {
            scope: 0,
            requests: 5,
            period: 10,
            penalty: 30,
        },
    ]
}

fn tokens_answers() -> Answers {
    let custom = CustomRule {
        name: "no-latest-${HOME}".into(),
        action: "deny".into(),
        role: None,
        message: Some("pin \"image\" tags".into()),
        priority: 10,
        conditions: vec![
            Condition {
                field: "query.fromImage".into(),
                operator: "ends_with".into(),
                value: Value::Text(":latest".into()),
            },
            Condition {
                field: "method".into(),
                operator: "in".into(),
                value: Value::List(vec![Value::Text("POST".into())]),
            },
        ],
    };
    answers(
        Auth::Tokens(vec![
            env_token("admin", "ADMIN_T"),
            env_token("readonly", "RO_T"),
        ]),
        every_template(),
        vec![custom],
    )
}

fn load(answers: &Answers) -> config::Config {
    let text = answers.render();
    let env = answers.env();
    validate(&text, &env).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    config::load_from_str(&text, &|name| env.get(name).cloned(), &Overrides::default()).unwrap()
}

fn decide(
    config: &config::Config,
    method: &str,
    path: &str,
    role: &str,
    body: Option<&str>,
) -> bool {
    let body = body.map(|b| JsonBody::parse(b.as_bytes()).unwrap());
    let request = Request {
        method,
        path,
        api_version: "",
        query: "",
        headers: &[],
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        role: Some(role),
    };
    config.policy.explain(&request, body.as_ref()).0.verdict == Verdict::Allow
}

#[test]
fn every_template_with_tokens_and_a_custom_rule_loads() {
    let config = load(&tokens_answers());
    // 7 templates write 14 rules (body inspection 5, role access 2,
    // redaction 3), plus the custom rule.
    assert_eq!(config.policy.rule_count(), 15);
    match &config.auth {
        config::AuthMode::Bearer { tokens, .. } => {
            assert_eq!(tokens.len(), 2);
            assert_eq!(tokens[1].token, "readonly-token-0123456789");
        }
        other => panic!("expected bearer auth, got {other:?}"),
    }
}

#[test]
fn literal_text_is_never_expanded_as_a_variable() {
    let text = tokens_answers().render();
    assert!(text.contains("\"no-latest-$${HOME}\""), "{text}");
    let config = load(&tokens_answers());
    assert!(config
        .policy
        .describe()
        .iter()
        .any(|line| line.contains("no-latest-${HOME}")));
}

#[test]
fn templates_refuse_what_they_promise() {
    let config = load(&tokens_answers());
    assert!(!decide(
        &config,
        "POST",
        "/containers/x/stop",
        "readonly",
        None
    ));
    assert!(decide(&config, "GET", "/containers/json", "readonly", None));
    let privileged = r#"{"Image":"x","HostConfig":{"Privileged":true}}"#;
    assert!(!decide(
        &config,
        "POST",
        "/containers/create",
        "admin",
        Some(privileged)
    ));
    let host_pid = r#"{"Image":"x","HostConfig":{"PidMode":"host"}}"#;
    assert!(!decide(
        &config,
        "POST",
        "/containers/create",
        "admin",
        Some(host_pid)
    ));
    let plain = r#"{"Image":"x","HostConfig":{}}"#;
    assert!(decide(
        &config,
        "POST",
        "/containers/create",
        "admin",
        Some(plain)
    ));
    assert!(!decide(&config, "GET", "/secrets", "ci", None));
    assert!(decide(&config, "GET", "/secrets", "admin", None));
}

#[test]
fn shared_secret_literal_and_no_auth_load() {
    let literal = answers(
        Auth::Shared(Secret::Literal("a-literal-secret-0001".into())),
        vec![],
        vec![],
    );
    match load(&literal).auth {
        config::AuthMode::Bearer { secret, .. } => {
            assert_eq!(secret.as_deref(), Some("a-literal-secret-0001"))
        }
        other => panic!("expected bearer auth, got {other:?}"),
    }
    let none = answers(
        Auth::None,
        vec![Template::BodyInspection { checks: vec![0, 1] }],
        vec![],
    );
    assert_eq!(load(&none).auth, config::AuthMode::None);
}

#[test]
fn a_file_that_does_not_load_is_refused() {
    let mut env = BTreeMap::new();
    env.insert("X".to_owned(), "y".to_owned());
    let error = validate("global:\n  port: nope\n", &env).unwrap_err();
    assert!(error.contains("global.port"), "{error}");
}

#[test]
fn conditions_are_checked_by_the_loader() {
    let regex = Condition {
        field: "path".into(),
        operator: "matches".into(),
        value: Value::Text("^/(a".into()),
    };
    assert!(check::condition(&regex).is_err());
    let exists_on_method = Condition {
        field: "method".into(),
        operator: "exists".into(),
        value: Value::None,
    };
    assert!(check::condition(&exists_on_method).is_err());
    let ok = Condition {
        field: "body.HostConfig.Privileged".into(),
        operator: "equals".into(),
        value: check::value("body.HostConfig.Privileged", "equals", "true"),
    };
    assert_eq!(ok.value, Value::Typed("true".into()));
    assert!(check::condition(&ok).is_ok());
    assert!(check::address_list("10.0.0.0/33").is_err());
    assert!(check::address_list("not-an-ip").is_err());
    assert_eq!(
        check::address_list("10.0.0.0/8, ::1").unwrap(),
        vec!["10.0.0.0/8", "::1"]
    );
}

#[test]
fn body_values_keep_quoted_strings_as_strings() {
    assert_eq!(
        check::value("body.A", "equals", "\"true\""),
        Value::Text("true".into())
    );
    assert_eq!(
        check::value("path", "equals", "true"),
        Value::Text("true".into())
    );
    assert_eq!(
        check::value("body.A", "in", "1, x"),
        Value::List(vec![Value::Typed("1".into()), Value::Text("x".into())])
    );
    assert_eq!(check::value("header.X", "exists", "ignored"), Value::None);
}

#[test]
fn answer_checks_reject_bad_input_with_a_reason() {
    assert!(check::port("0").unwrap_err().contains("1 to 65535"));
    assert_eq!(check::port(" 8080 ").unwrap(), 8080);
    assert!(check::bind("localhost").is_err());
    assert_eq!(check::socket("").unwrap(), None);
    assert!(check::socket("docker.sock").is_err());
    assert!(check::readable_file("/nonexistent/cert.pem")
        .unwrap_err()
        .contains("does not exist"));
    assert!(check::env_name("1ABC").is_err());
    assert!(check::word("read only", "role").is_err());
    assert!(check::literal_secret("short").is_err());
    assert!(check::rule_name("deny-privileged", &[]).is_err());
    assert!(check::rule_name("mine", &["mine".into()]).is_err());
    assert!(check::at_least("0", 1).is_err());
}

#[test]
fn generated_tokens_are_long_random_hex() {
    let (a, b) = (super::ask::generate_token(), super::ask::generate_token());
    assert_eq!(a.len(), 64);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}
