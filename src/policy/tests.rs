use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::config::{ConfigError, DefaultAction};

fn compile_with(rules: &str, default_action: DefaultAction) -> Result<Policy, Vec<ConfigError>> {
    let value: serde_json::Value = serde_saphyr::from_str(rules).expect("test YAML parses");
    Policy::compile(Some(&value), default_action, RateLimitState::new())
}

fn policy(rules: &str) -> Policy {
    match compile_with(rules, DefaultAction::Allow) {
        Ok(policy) => policy,
        Err(errors) => panic!("policy should compile: {errors:#?}"),
    }
}

fn errors(rules: &str) -> Vec<ConfigError> {
    match compile_with(rules, DefaultAction::Allow) {
        Ok(_) => panic!("policy should not compile"),
        Err(errors) => errors,
    }
}

struct Req {
    method: &'static str,
    path: &'static str,
    api_version: &'static str,
    query: &'static str,
    headers: Vec<(&'static str, &'static [u8])>,
    client_ip: IpAddr,
    role: Option<&'static str>,
}

impl Req {
    fn new(method: &'static str, path: &'static str) -> Req {
        Req {
            method,
            path,
            api_version: "",
            query: "",
            headers: Vec::new(),
            client_ip: "10.1.2.3".parse().unwrap(),
            role: None,
        }
    }

    fn query(mut self, query: &'static str) -> Req {
        self.query = query;
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.push((name, value.as_bytes()));
        self
    }

    fn ip(mut self, ip: &str) -> Req {
        self.client_ip = ip.parse().unwrap();
        self
    }

    fn role(mut self, role: &'static str) -> Req {
        self.role = Some(role);
        self
    }

    fn version(mut self, version: &'static str) -> Req {
        self.api_version = version;
        self
    }

    fn get(&self) -> Request<'_> {
        Request {
            method: self.method,
            path: self.path,
            api_version: self.api_version,
            query: self.query,
            headers: &self.headers,
            client_ip: self.client_ip,
            role: self.role,
        }
    }
}

fn body(text: &str) -> JsonBody {
    JsonBody::parse(text.as_bytes()).expect("test body parses")
}

/// Whether a single deny rule with one condition matches.
fn matches(
    field: &str,
    operator: &str,
    value: serde_json::Value,
    req: &Req,
    json: Option<&str>,
) -> bool {
    let condition = json!([{"name": "r", "action": "deny",
        "conditions": [{"field": field, "operator": operator, "value": value}]}]);
    let condition = if value_is_absent(&condition) {
        strip_value(condition)
    } else {
        condition
    };
    let policy = Policy::compile(
        Some(&condition),
        DefaultAction::Allow,
        RateLimitState::new(),
    )
    .unwrap_or_else(|e| panic!("{field} {operator} should compile: {e:#?}"));
    let parsed = json.map(body);
    let decision = policy.evaluate(&req.get(), parsed.as_ref(), Instant::now());
    matches!(decision.verdict, Verdict::Deny { .. })
}

fn value_is_absent(rules: &serde_json::Value) -> bool {
    rules[0]["conditions"][0]["value"].is_null()
}

fn strip_value(mut rules: serde_json::Value) -> serde_json::Value {
    if let Some(map) = rules[0]["conditions"][0].as_object_mut() {
        map.remove("value");
    }
    rules
}

/// Check `op` and `not_op` give opposite answers, and return `op`'s.
fn pair(field: &str, op: &str, value: serde_json::Value, req: &Req, json: Option<&str>) -> bool {
    let positive = matches(field, op, value.clone(), req, json);
    let negative = matches(field, &format!("not_{op}"), value, req, json);
    assert_ne!(
        positive, negative,
        "not_{op} must be the exact negation of {op} on {field}"
    );
    positive
}

const NULL: serde_json::Value = serde_json::Value::Null;

#[test]
fn path_operators_and_their_negations() {
    let req = Req::new("GET", "/containers/abc/json");
    assert!(pair(
        "path",
        "equals",
        json!("/containers/abc/json"),
        &req,
        None
    ));
    assert!(!pair(
        "path",
        "equals",
        json!("/containers/abc"),
        &req,
        None
    ));
    assert!(pair("path", "contains", json!("/abc/"), &req, None));
    assert!(pair(
        "path",
        "matches",
        json!("^/containers/[^/]+/json$"),
        &req,
        None
    ));
    assert!(!pair("path", "matches", json!("^/images"), &req, None));
    assert!(pair(
        "path",
        "in",
        json!(["/x", "/containers/abc/json"]),
        &req,
        None
    ));
    assert!(!pair("path", "in", json!(["/x"]), &req, None));
    assert!(matches(
        "path",
        "starts_with",
        json!("/containers/"),
        &req,
        None
    ));
    assert!(matches("path", "ends_with", json!("/json"), &req, None));
    assert!(!matches("path", "ends_with", json!("/logs"), &req, None));
}

#[test]
fn method_compares_upper_case_and_allows_only_sensible_operators() {
    let req = Req::new("POST", "/x");
    assert!(pair("method", "equals", json!("post"), &req, None));
    assert!(pair("method", "in", json!(["GET", "POST"]), &req, None));
    assert!(!pair("method", "in", json!(["GET", "HEAD"]), &req, None));
    assert!(pair("method", "matches", json!("^P"), &req, None));
    for operator in ["exists", "not_exists", "contains", "starts_with"] {
        let rules = format!(
            "- name: r\n  action: deny\n  conditions:\n    - field: method\n      \
            operator: {operator}\n      value: P\n"
        );
        let found = errors(&rules);
        assert!(
            found
                .iter()
                .any(|e| e.location == "rules[0].conditions[0].operator"),
            "{operator} on method must be a load error: {found:#?}"
        );
    }
}

#[test]
fn client_ip_in_is_cidr_aware_for_v4_and_v6() {
    let req = Req::new("GET", "/x").ip("10.1.2.3");
    assert!(pair("client_ip", "in", json!(["10.0.0.0/8"]), &req, None));
    assert!(!pair(
        "client_ip",
        "in",
        json!(["192.168.0.0/16", "10.1.2.4"]),
        &req,
        None
    ));
    assert!(pair("client_ip", "in", json!(["10.1.2.3"]), &req, None));
    assert!(pair(
        "client_ip",
        "in",
        json!(["::ffff:10.0.0.0/104"]),
        &req,
        None
    ));
    assert!(pair("client_ip", "equals", json!("10.1.2.3"), &req, None));
    assert!(pair(
        "client_ip",
        "equals",
        json!("::ffff:10.1.2.3"),
        &req,
        None
    ));
    let v6 = Req::new("GET", "/x").ip("fd00::5");
    assert!(pair("client_ip", "in", json!(["fd00::/8"]), &v6, None));
    assert!(!pair("client_ip", "in", json!(["10.0.0.0/8"]), &v6, None));
    assert!(pair("client_ip", "matches", json!("^fd00:"), &v6, None));
}

#[test]
fn header_values_are_case_insensitive_by_name_and_multi_valued() {
    let req = Req::new("GET", "/x")
        .header("User-Agent", "curl/8")
        .header("user-agent", "docker");
    assert!(pair(
        "header.USER-AGENT",
        "equals",
        json!("docker"),
        &req,
        None
    ));
    assert!(matches(
        "header.user-agent",
        "starts_with",
        json!("curl"),
        &req,
        None
    ));
    assert!(pair(
        "header.user-agent",
        "contains",
        json!("ock"),
        &req,
        None
    ));
    assert!(!pair(
        "header.user-agent",
        "equals",
        json!("wget"),
        &req,
        None
    ));
    assert!(pair("header.user-agent", "exists", NULL, &req, None));
    assert!(!pair("header.x-missing", "exists", NULL, &req, None));
    // Any value matching is enough; not_equals is its exact negation.
    assert!(!matches(
        "header.user-agent",
        "not_equals",
        json!("docker"),
        &req,
        None
    ));
    assert!(matches(
        "header.user-agent",
        "ends_with",
        json!("/8"),
        &req,
        None
    ));
}

#[test]
fn query_values_are_decoded_once_and_repeated() {
    let req = Req::new("GET", "/build").query("t=a&networkmode=ho%73t&x=1+2&t=b%2Bc&flag&e=");
    assert!(pair(
        "query.networkmode",
        "equals",
        json!("host"),
        &req,
        None
    ));
    assert!(pair("query.x", "equals", json!("1 2"), &req, None));
    assert!(pair("query.t", "equals", json!("b+c"), &req, None));
    assert!(pair("query.t", "equals", json!("a"), &req, None));
    assert!(pair("query.flag", "exists", NULL, &req, None));
    assert!(pair("query.flag", "equals", json!(""), &req, None));
    assert!(pair("query.e", "exists", NULL, &req, None));
    assert!(!pair("query.missing", "exists", NULL, &req, None));
    assert!(pair("query.t", "in", json!(["z", "b+c"]), &req, None));
    let double = Req::new("GET", "/x").query("a=%2541");
    assert!(pair("query.a", "equals", json!("%41"), &double, None));
    assert!(pair(
        "query.x",
        "equals",
        json!(1),
        &Req::new("GET", "/").query("x=1"),
        None
    ));
}

#[test]
fn api_version_and_role_fields() {
    let req = Req::new("GET", "/x").version("1.41").role("ci");
    assert!(pair("api_version", "equals", json!("1.41"), &req, None));
    assert!(pair("api_version", "exists", NULL, &req, None));
    assert!(!pair(
        "api_version",
        "exists",
        NULL,
        &Req::new("GET", "/x"),
        None
    ));
    assert!(pair("role", "equals", json!("ci"), &req, None));
    assert!(pair("role", "in", json!(["admin", "ci"]), &req, None));
    assert!(!pair("role", "exists", NULL, &Req::new("GET", "/x"), None));
    assert!(pair(
        "role",
        "equals",
        json!(""),
        &Req::new("GET", "/x"),
        None
    ));
}

#[test]
fn body_values_compare_by_type() {
    let req = Req::new("POST", "/containers/create");
    let doc = r#"{"HostConfig": {"Privileged": true, "Memory": 1024, "Cpu": 1.5,
        "Str": "true", "Null": null}}"#;
    assert!(pair(
        "body.HostConfig.Privileged",
        "equals",
        json!(true),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Privileged",
        "equals",
        json!("true"),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Str",
        "equals",
        json!(true),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Str",
        "equals",
        json!("true"),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Memory",
        "equals",
        json!(1024.0),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Cpu",
        "equals",
        json!(1.5),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Memory",
        "in",
        json!([1, 1024]),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Memory",
        "equals",
        json!("1024"),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Privileged",
        "exists",
        NULL,
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Null",
        "exists",
        NULL,
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Missing",
        "exists",
        NULL,
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Missing",
        "equals",
        json!(true),
        &req,
        Some(doc)
    ));
    assert!(matches(
        "body.HostConfig.Str",
        "starts_with",
        json!("tr"),
        &req,
        Some(doc)
    ));
    assert!(matches(
        "body.HostConfig.Str",
        "ends_with",
        json!("ue"),
        &req,
        Some(doc)
    ));
    assert!(!matches(
        "body.HostConfig.Memory",
        "matches",
        json!("1024"),
        &req,
        Some(doc)
    ));
}

#[test]
fn body_arrays_match_any_element_and_contains_is_element_wise() {
    let req = Req::new("POST", "/containers/create");
    let doc = r#"{"HostConfig": {"CapAdd": ["NET_RAW", "sys_admin"], "Ports": [80, 443],
        "Binds": ["data:/data", "/etc:/host-etc:ro"]}}"#;
    assert!(pair(
        "body.HostConfig.CapAdd",
        "equals",
        json!("sys_admin"),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.CapAdd",
        "contains",
        json!("ADMIN".to_lowercase()),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.CapAdd",
        "contains",
        json!("SYS_ADMIN"),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Ports",
        "contains",
        json!(443),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Ports",
        "contains",
        json!(8080),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Binds",
        "matches",
        json!("^/"),
        &req,
        Some(doc)
    ));
    assert!(matches(
        "body.HostConfig.Binds.1",
        "starts_with",
        json!("/etc"),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Binds.0",
        "matches",
        json!("^/"),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.CapAdd",
        "equals",
        json!(["NET_RAW", "sys_admin"]),
        &req,
        Some(doc)
    ));
}

#[test]
fn body_paths_fan_out_over_arrays_of_objects() {
    let req = Req::new("POST", "/containers/create");
    let doc = r#"{"HostConfig": {"Mounts": [{"Type": "volume"}, {"Type": "bind"}],
        "Devices": []}}"#;
    assert!(pair(
        "body.HostConfig.Mounts.Type",
        "equals",
        json!("bind"),
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Mounts.0.Type",
        "equals",
        json!("bind"),
        &req,
        Some(doc)
    ));
    assert!(pair(
        "body.HostConfig.Devices",
        "exists",
        NULL,
        &req,
        Some(doc)
    ));
    assert!(!pair(
        "body.HostConfig.Devices.PathOnHost",
        "exists",
        NULL,
        &req,
        Some(doc)
    ));
}

#[test]
fn body_keys_match_the_way_dockerd_does() {
    let req = Req::new("POST", "/containers/create");
    let docs = [
        r#"{"hostconfig": {"privileged": true}}"#,
        r#"{"HOSTCONFIG": {"PRIVILEGED": true}}"#,
        "{\"Ho\u{17F}tConfig\": {\"Privileged\": true}}",
    ];
    for doc in docs {
        assert!(
            matches(
                "body.HostConfig.Privileged",
                "equals",
                json!(true),
                &req,
                Some(doc)
            ),
            "{doc}"
        );
    }
    let kelvin = "{\"\u{212A}ernelMemory\": 5}";
    assert!(matches(
        "body.KernelMemory",
        "equals",
        json!(5),
        &req,
        Some(kelvin)
    ));
    let dotless = "{\"\u{131}mage\": \"x\"}";
    assert!(!matches("body.Image", "exists", NULL, &req, Some(dotless)));
}

#[test]
fn body_fields_are_absent_without_a_body() {
    let req = Req::new("POST", "/containers/create");
    assert!(!matches(
        "body.HostConfig.Privileged",
        "equals",
        json!(true),
        &req,
        None
    ));
    assert!(matches(
        "body.HostConfig.Privileged",
        "not_exists",
        NULL,
        &req,
        None
    ));
}

#[test]
fn groups_nest_to_any_depth() {
    let rules = r#"
- name: nested
  action: deny
  conditions:
    - or:
        - field: path
          operator: equals
          value: /a
        - and:
            - field: method
              operator: equals
              value: POST
            - or:
                - field: role
                  operator: equals
                  value: ci
                - field: header.x-test
                  operator: exists
"#;
    let p = policy(rules);
    let denied = |req: &Req| {
        matches!(
            p.evaluate(&req.get(), None, Instant::now()).verdict,
            Verdict::Deny { .. }
        )
    };
    assert!(denied(&Req::new("GET", "/a")));
    assert!(denied(&Req::new("POST", "/b").role("ci")));
    assert!(denied(&Req::new("POST", "/b").header("X-Test", "1")));
    assert!(!denied(&Req::new("POST", "/b").role("admin")));
    assert!(!denied(&Req::new("GET", "/b").role("ci")));
}

#[test]
fn higher_priority_runs_first_and_equal_priorities_keep_file_order() {
    let rules = r#"
- name: allow-first-in-file
  action: allow
- name: deny-high
  action: deny
  priority: 10
- name: deny-equal-later
  action: deny
"#;
    let p = policy(rules);
    let decision = p.evaluate(&Req::new("GET", "/").get(), None, Instant::now());
    assert_eq!(decision.rule.as_deref(), Some("deny-high"));
    let rules = "- {name: a, action: allow}\n- {name: b, action: deny}\n";
    let decision = policy(rules).evaluate(&Req::new("GET", "/").get(), None, Instant::now());
    assert_eq!(decision.rule.as_deref(), Some("a"));
    assert_eq!(decision.verdict, Verdict::Allow);
    assert_eq!(decision.action, Some("allow"));
}

#[test]
fn deny_uses_status_message_and_defaults() {
    let rules = r#"
- name: custom
  action: deny
  status: 451
  message: not here
  conditions: [{field: path, operator: equals, value: /custom}]
- name: plain
  action: deny
"#;
    let p = policy(rules);
    let custom = p.evaluate(&Req::new("GET", "/custom").get(), None, Instant::now());
    assert_eq!(
        custom.verdict,
        Verdict::Deny {
            status: 451,
            message: "not here".into(),
            retry_after: None
        }
    );
    let plain = p.evaluate(&Req::new("GET", "/x").get(), None, Instant::now());
    match plain.verdict {
        Verdict::Deny {
            status, message, ..
        } => {
            assert_eq!(status, 403);
            assert!(message.contains("\"plain\""), "{message}");
        }
        other => panic!("expected deny, got {other:?}"),
    }
}

#[test]
fn require_role_passes_the_role_and_admin_and_refuses_others() {
    let rules = "- {name: exec, action: require_role, role: ops}\n- {name: after, action: deny}\n";
    let p = policy(rules);
    let now = Instant::now();
    for role in ["ops", "admin"] {
        let decision = p.evaluate(&Req::new("POST", "/x").role(role).get(), None, now);
        assert_eq!(decision.verdict, Verdict::Allow, "{role}");
        assert_eq!(decision.rule.as_deref(), Some("exec"));
    }
    let decision = p.evaluate(&Req::new("POST", "/x").role("ci").get(), None, now);
    assert!(matches!(
        decision.verdict,
        Verdict::Deny { status: 403, .. }
    ));
    assert_eq!(decision.action, Some("require_role"));
    let anonymous = p.evaluate(&Req::new("POST", "/x").get(), None, now);
    assert!(matches!(anonymous.verdict, Verdict::Deny { .. }));

    let default_role = policy("- {name: r, action: require_role}\n");
    let ops = default_role.evaluate(&Req::new("GET", "/").role("ops").get(), None, now);
    assert!(matches!(ops.verdict, Verdict::Deny { ref message, .. } if message.contains("admin")));
}

#[test]
fn rate_limit_continues_until_empty_then_refuses_with_retry_after() {
    let rules = r#"
- name: limit
  action: rate_limit
  rate_limit: {requests: 2, period: 60, penalty: 30}
- name: tail
  action: allow
"#;
    let p = policy(rules);
    let now = Instant::now();
    let req = Req::new("POST", "/containers/create");
    for _ in 0..2 {
        let decision = p.evaluate(&req.get(), None, now);
        assert_eq!(decision.rule.as_deref(), Some("tail"));
    }
    let refused = p.evaluate(&req.get(), None, now);
    assert_eq!(
        refused.verdict,
        Verdict::Deny {
            status: 429,
            message: "request denied by rule \"limit\": rate limit exceeded, retry later".into(),
            retry_after: Some(30)
        }
    );
    let other_ip = p.evaluate(&Req::new("POST", "/").ip("10.9.9.9").get(), None, now);
    assert_eq!(other_ip.verdict, Verdict::Allow);
    let later = p.evaluate(&req.get(), None, now + Duration::from_secs(31));
    assert_eq!(later.verdict, Verdict::Allow);
}

#[test]
fn rate_limit_state_survives_recompiling() {
    let rules = "- {name: limit, action: rate_limit, rate_limit: {requests: 1, period: 60}}\n";
    let value: serde_json::Value = serde_saphyr::from_str(rules).unwrap();
    let state = RateLimitState::new();
    let now = Instant::now();
    let first = Policy::compile(Some(&value), DefaultAction::Allow, state.clone()).unwrap();
    assert_eq!(
        first
            .evaluate(&Req::new("GET", "/").get(), None, now)
            .verdict,
        Verdict::Allow
    );
    let second = Policy::compile(
        Some(&value),
        DefaultAction::Allow,
        first.rate_limit_state().clone(),
    )
    .unwrap();
    let decision = second.evaluate(&Req::new("GET", "/").get(), None, now);
    assert!(matches!(
        decision.verdict,
        Verdict::Deny { status: 429, .. }
    ));
    assert!(Arc::ptr_eq(second.rate_limit_state(), &state));
}

#[test]
fn dry_run_records_a_hit_and_continues() {
    let rules = r#"
- {name: dry-deny, action: deny, dry_run: true}
- {name: dry-role, action: require_role, role: ops, dry_run: true}
- {name: dry-limit, action: rate_limit, dry_run: true, rate_limit: {requests: 1, period: 60}}
- {name: real, action: deny, conditions: [{field: path, operator: equals, value: /deny}]}
"#;
    let p = policy(rules);
    let now = Instant::now();
    let first = p.evaluate(&Req::new("GET", "/x").role("ci").get(), None, now);
    assert_eq!(first.verdict, Verdict::Allow);
    assert_eq!(first.rule, None);
    let hits: Vec<&str> = first.dry_run_hits.iter().map(|h| &*h.0).collect();
    assert_eq!(hits, ["dry-deny", "dry-role"]);
    let second = p.evaluate(&Req::new("GET", "/x").role("ops").get(), None, now);
    let hits: Vec<&str> = second.dry_run_hits.iter().map(|h| &*h.0).collect();
    assert_eq!(hits, ["dry-deny", "dry-limit"]);
    let denied = p.evaluate(&Req::new("GET", "/deny").role("ops").get(), None, now);
    assert_eq!(denied.rule.as_deref(), Some("real"));
}

#[test]
fn default_action_applies_when_no_rule_stops() {
    let rules = "- {name: only-a, action: allow, conditions: [{field: path, operator: equals, \
        value: /a}]}\n";
    let deny = compile_with(rules, DefaultAction::Deny).unwrap();
    let decision = deny.evaluate(&Req::new("GET", "/b").get(), None, Instant::now());
    assert!(matches!(
        decision.verdict,
        Verdict::Deny { status: 403, .. }
    ));
    assert_eq!(decision.rule, None);
    assert_eq!(decision.action, None);
    let allowed = deny.evaluate(&Req::new("GET", "/a").get(), None, Instant::now());
    assert_eq!(allowed.verdict, Verdict::Allow);
    let allow = compile_with(rules, DefaultAction::Allow).unwrap();
    let decision = allow.evaluate(&Req::new("GET", "/b").get(), None, Instant::now());
    assert_eq!(decision.verdict, Verdict::Allow);
}

#[test]
fn every_matching_response_filter_applies_even_after_an_allow() {
    let rules = r#"
- name: f1
  action: response_filter
  response_filter: [{field: Config.Env, action: redact}]
- {name: allow-all, action: allow}
- name: f2
  action: response_filter
  conditions: [{field: path, operator: matches, value: "/json$"}]
  response_filter:
    - {field: Config.Labels, action: remove}
    - {field: Id, action: replace, replacement: hidden}
- name: f3
  action: response_filter
  conditions: [{field: path, operator: equals, value: /never}]
  response_filter: [{field: Name, action: remove}]
"#;
    let p = policy(rules);
    let decision = p.evaluate(
        &Req::new("GET", "/containers/x/json").get(),
        None,
        Instant::now(),
    );
    assert_eq!(decision.rule.as_deref(), Some("allow-all"));
    let filters = decision.filters.expect("filters accumulated");
    assert_eq!(filters.entries().len(), 3);
    let mut doc = json!({"Id": "abc", "Name": "n", "Config": {"Env": ["A=1"], "Labels": {}}});
    filters.apply(&mut doc);
    assert_eq!(
        doc,
        json!({"Id": "hidden", "Name": "n", "Config": {"Env": [REDACTED]}})
    );
    let single = p.evaluate(&Req::new("GET", "/info").get(), None, Instant::now());
    assert_eq!(single.filters.expect("f1 applies").entries().len(), 1);
    // Merging must not change the compiled rule's own filter.
    let again = p.evaluate(&Req::new("GET", "/info").get(), None, Instant::now());
    assert_eq!(again.filters.unwrap().entries().len(), 1);
}

#[test]
fn needs_body_only_when_a_body_rule_might_match() {
    let rules = r#"
- name: body-rule
  action: deny
  conditions:
    - {field: method, operator: equals, value: POST}
    - {field: path, operator: equals, value: /containers/create}
    - {field: body.HostConfig.Privileged, operator: equals, value: true}
"#;
    let p = policy(rules);
    assert!(!p.needs_body(&Req::new("GET", "/containers/json").get()));
    assert!(!p.needs_body(&Req::new("POST", "/containers/x/start").get()));
    assert!(p.needs_body(&Req::new("POST", "/containers/create").get()));

    let shadowed = format!("- {{name: stop, action: deny}}\n{rules}");
    assert!(!policy(&shadowed).needs_body(&Req::new("POST", "/containers/create").get()));
    let filter_after = "- {name: stop, action: allow}\n- name: f\n  action: response_filter\n  \
        conditions: [{field: body.Image, operator: exists}]\n  response_filter: [{field: Id, \
        action: remove}]\n";
    assert!(policy(filter_after).needs_body(&Req::new("POST", "/x").get()));
}

#[test]
fn explain_describes_each_rule_without_taking_tokens() {
    let rules = r#"
- {name: limit, action: rate_limit, rate_limit: {requests: 1, period: 600}}
- name: no-create
  action: deny
  conditions: [{field: path, operator: equals, value: /containers/create}]
- name: redact
  action: response_filter
  response_filter: [{field: Config.Env, action: redact}]
"#;
    let p = policy(rules);
    let req = Req::new("POST", "/containers/create");
    for _ in 0..3 {
        let (decision, text) = p.explain(&req.get(), None);
        assert!(matches!(
            decision.verdict,
            Verdict::Deny { status: 403, .. }
        ));
        assert!(
            text.contains("rule \"limit\" (rate_limit): match: token available"),
            "{text}"
        );
        assert!(
            text.contains("rule \"no-create\" (deny): match: refuse"),
            "{text}"
        );
        assert!(
            text.contains("decision: deny 403 (rule \"no-create\")"),
            "{text}"
        );
        assert!(
            text.contains("response filter: Config.Env Redact"),
            "{text}"
        );
    }
    assert!(p.rate_limit_state().is_empty());
}

#[test]
fn reports_every_condition_error_with_its_location() {
    let rules = r#"
- name: a
  action: deny
  conditions:
    - {field: path, operator: startswith, value: /x}
    - {field: path, operator: matches, value: "(unclosed"}
    - {field: client_ip, operator: in, value: [10.0.0.0/33, 10.0.0.1]}
    - {field: headers.user-agent, operator: equals, value: x}
    - {field: path, operator: equals, value: /x, extra: 1}
    - or:
        - {field: path, operator: in, value: /not-a-list}
- name: b
  action: allow
  dry_run: true
- name: a
  action: deny
- name: c
  action: dney
"#;
    let found = errors(rules);
    let at = |location: &str| {
        found
            .iter()
            .find(|e| e.location == location)
            .unwrap_or_else(|| panic!("no error at {location}: {found:#?}"))
    };
    let op = at("rules[0].conditions[0].operator");
    assert!(
        op.what.contains("\"startswith\" is not an operator"),
        "{op:?}"
    );
    assert!(op.fix.contains("did you mean \"starts_with\""), "{op:?}");
    assert!(at("rules[0].conditions[1].value")
        .what
        .contains("not a valid regex"));
    assert!(at("rules[0].conditions[2].value[0]")
        .what
        .contains("10.0.0.0/33"));
    assert!(at("rules[0].conditions[3].field")
        .fix
        .contains("header.user-agent"));
    assert!(at("rules[0].conditions[4].extra").what.contains("extra"));
    assert!(at("rules[0].conditions[5].or[0].value")
        .what
        .contains("expected a list"));
    assert!(at("rules[1].dry_run").what.contains("allow"));
    assert!(at("rules[3].action").fix.contains("\"deny\""));
    assert!(found.iter().all(|e| !e.why.is_empty() && !e.fix.is_empty()));
}

#[test]
fn duplicate_rule_names_are_an_error() {
    let found = errors("- {name: x, action: allow}\n- {name: x, action: deny}\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].location, "rules[1].name");
    assert!(found[0].what.contains("rules[0]"));
}

#[test]
fn rule_shape_errors_are_reported() {
    let rules = r#"
- action: deny
- name: no-action
- name: bad-key
  action: deny
  prioritty: 3
- name: filter-without-entries
  action: response_filter
- name: filter-bad
  action: response_filter
  dry_run: true
  response_filter: [{field: A, action: redcat}, {field: B, action: replace}]
- name: misplaced
  action: allow
  role: ops
  message: hi
- name: limit-missing
  action: rate_limit
- name: bad-status
  action: deny
  status: 200
- name: exists-with-value
  action: deny
  conditions: [{field: header.x, operator: exists, value: 1}]
- name: path-exists
  action: deny
  conditions: [{field: path, operator: exists}]
- name: ip-equals-cidr
  action: deny
  conditions: [{field: client_ip, operator: equals, value: 10.0.0.0/8}]
- name: float-text
  action: deny
  conditions: [{field: api_version, operator: equals, value: 1.40}]
"#;
    let found = errors(rules);
    let locations: Vec<&str> = found.iter().map(|e| e.location.as_str()).collect();
    for expected in [
        "rules[0].name",
        "rules[1].action",
        "rules[2].prioritty",
        "rules[3].response_filter",
        "rules[4].dry_run",
        "rules[4].response_filter[0].action",
        "rules[4].response_filter[1].replacement",
        "rules[5].role",
        "rules[5].message",
        "rules[6].rate_limit",
        "rules[7].status",
        "rules[8].conditions[0].value",
        "rules[9].conditions[0].operator",
        "rules[10].conditions[0].value",
        "rules[11].conditions[0].value",
    ] {
        assert!(
            locations.contains(&expected),
            "missing {expected} in {locations:#?}"
        );
    }
    let key = found
        .iter()
        .find(|e| e.location == "rules[2].prioritty")
        .unwrap();
    assert!(key.fix.contains("\"priority\""), "{key:?}");
}

#[test]
fn lint_warns_about_shadowed_rules_and_non_json_filters() {
    let rules = r#"
- {name: open, action: allow}
- {name: never, action: deny}
- name: logs-filter
  action: response_filter
  conditions: [{field: path, operator: matches, value: "^/containers/[^/]+/logs$"}]
  response_filter: [{field: x, action: remove}]
"#;
    let warnings = policy(rules).lint();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains("\"never\"") && warnings[0].contains("\"open\""));
    assert!(warnings[1].contains("logs-filter"));
    let fine = "- name: f\n  action: response_filter\n  conditions: [{field: path, operator: \
        matches, value: \"^/containers/([^/]+/)?json$\"}]\n  response_filter: [{field: x, \
        action: remove}]\n";
    assert!(policy(fine).lint().is_empty());
}

// --- JsonBody ------------------------------------------------------------------

#[test]
fn body_with_keys_differing_only_by_case_is_ambiguous() {
    let error =
        JsonBody::parse(br#"{"HostConfig": {}, "hostconfig": {"Privileged": true}}"#).unwrap_err();
    assert_eq!(
        error,
        BodyError::AmbiguousKey {
            first: "HostConfig".into(),
            second: "hostconfig".into()
        }
    );
    let nested = JsonBody::parse(br#"{"HostConfig": {"Privileged": false, "PRIVILEGED": true}}"#);
    assert!(matches!(nested, Err(BodyError::AmbiguousKey { .. })));
}

#[test]
fn body_with_duplicate_keys_is_ambiguous() {
    let error = JsonBody::parse(br#"{"Image": "a", "Image": "b"}"#).unwrap_err();
    assert!(
        matches!(error, BodyError::AmbiguousKey { ref first, ref second }
        if first == "Image" && second == "Image")
    );
    let in_array = JsonBody::parse(br#"[{"a": 1}, {"a": 1, "A": 2}]"#);
    assert!(matches!(in_array, Err(BodyError::AmbiguousKey { .. })));
    // The same key in sibling objects is fine.
    assert!(JsonBody::parse(br#"[{"a": 1}, {"a": 2}]"#).is_ok());
}

#[test]
fn body_keys_folding_like_go_are_ambiguous() {
    // U+212A KELVIN SIGN folds to k, U+017F LONG S folds to s.
    let kelvin = "{\"Kind\": 1, \"\u{212A}ind\": 2}";
    assert!(matches!(
        JsonBody::parse(kelvin.as_bytes()),
        Err(BodyError::AmbiguousKey { .. })
    ));
    let long_s = "{\"s\": 1, \"\u{17F}\": 2}";
    assert!(matches!(
        JsonBody::parse(long_s.as_bytes()),
        Err(BodyError::AmbiguousKey { .. })
    ));
    let escaped = br#"{"Kind": 1, "\u212aind": 2}"#;
    assert!(matches!(
        JsonBody::parse(escaped),
        Err(BodyError::AmbiguousKey { .. })
    ));
    // Go does not fold dotless i with i.
    assert!(JsonBody::parse("{\"i\": 1, \"\u{131}\": 2}".as_bytes()).is_ok());
}

#[test]
fn body_with_trailing_data_is_refused() {
    for bytes in [
        &b"{} {}"[..],
        b"{\"a\":1}x",
        b"[1]]",
        b"{}\n{\"HostConfig\":{}}",
    ] {
        assert!(
            matches!(JsonBody::parse(bytes), Err(BodyError::TrailingData(_))),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(JsonBody::parse(b" {\"a\": 1} \r\n").is_ok());
}

#[test]
fn invalid_bodies_are_refused_without_panicking() {
    let deep = "[".repeat(10_000);
    for bytes in [
        &b""[..],
        b"{",
        b"{\"a\"}",
        b"\xff",
        b"{\"a\": \"\\ud800\"}",
        deep.as_bytes(),
    ] {
        assert!(
            matches!(JsonBody::parse(bytes), Err(BodyError::Invalid(_))),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn body_values_keep_numbers_and_order() {
    let parsed = JsonBody::parse(br#"{"b": 1, "a": [1.5, -2, 18446744073709551615]}"#).unwrap();
    assert_eq!(
        parsed.root(),
        &json!({"b": 1, "a": [1.5, -2, 18446744073709551615u64]})
    );
    let keys: Vec<&String> = parsed.root().as_object().unwrap().keys().collect();
    assert_eq!(keys, ["b", "a"]);
}

#[test]
fn body_errors_name_the_keys_for_the_client() {
    let error = JsonBody::parse(br#"{"Env": [], "env": []}"#).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("\"Env\"") && text.contains("\"env\""),
        "{text}"
    );
}

const REPEAT_RULES: &str = r#"
- name: mirror-only
  action: deny
  conditions:
    - field: query.fromImage
      operator: not_matches
      value: '^mirror\.'
- name: filters
  action: response_filter
  conditions:
    - or:
        - field: header.X-Agent
          operator: equals
          value: bot
        - field: query.signal
          operator: not_in
          value: [SIGTERM]
  response_filter:
    - field: Config.Env
      action: redact
"#;

fn repeats(req: &Req) -> Result<(), RepeatedField> {
    policy(REPEAT_RULES).check_repeats(&req.get())
}

#[test]
fn refuses_rule_named_query_parameters_repeated_with_different_values() {
    let req = Req::new("POST", "/images/create")
        .query("fromImage=127.0.0.1:1/pwn&tag=latest&fromImage=mirror.example/x");
    let refusal = repeats(&req).unwrap_err();
    assert_eq!(
        refusal,
        RepeatedField {
            kind: "query parameter",
            name: "fromImage".into(),
            count: 2
        }
    );
    let message = refusal.to_string();
    for fragment in [
        "\"fromImage\"",
        "2 times",
        "different values",
        "only one",
        "send it once",
    ] {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
    // Without the check the deny rule lets it through: any value matches.
    let p = policy(REPEAT_RULES);
    assert_eq!(
        p.evaluate(&req.get(), None, Instant::now()).verdict,
        Verdict::Allow
    );
    // Nested in a group, and compared after decoding (%53 is "S").
    let kill = Req::new("POST", "/containers/a/kill").query("signal=SIGKILL&signal=%53IGTERM");
    assert_eq!(repeats(&kill).unwrap_err().name, "signal");
    let encoded_key = Req::new("POST", "/images/create").query("fromImag%65=a&fromImage=b");
    assert_eq!(repeats(&encoded_key).unwrap_err().count, 2);
    let empty = Req::new("POST", "/images/create").query("fromImage=a&fromImage");
    assert!(repeats(&empty).is_err());
}

#[test]
fn passes_equal_repeats_and_repeats_no_rule_names() {
    for query in [
        "fromImage=mirror.example/x&fromImage=mirror.example/x",
        "fromImage=mirror.example/x&fromImage=mirror.example%2Fx",
        "t=a&t=b&fromImage=mirror.example/x",
        "signal=SIGTERM",
        "fromimage=a&fromImage=b",
        "",
    ] {
        let req = Req::new("POST", "/build").query(query);
        assert_eq!(repeats(&req), Ok(()), "{query:?}");
    }
    let req = Req::new("GET", "/info")
        .header("Accept", "a")
        .header("accept", "b")
        .header("x-agent", "bot")
        .header("X-Agent", "bot");
    assert_eq!(repeats(&req), Ok(()));
    let none = policy("- name: a\n  action: allow\n");
    let req = Req::new("GET", "/x")
        .query("a=1&a=2")
        .header("b", "1")
        .header("b", "2");
    assert_eq!(none.check_repeats(&req.get()), Ok(()));
}

#[test]
fn refuses_rule_named_headers_repeated_with_different_values() {
    let req = Req::new("GET", "/info")
        .header("X-Agent", "bot")
        .header("User-Agent", "curl")
        .header("x-agent", "human")
        .header("X-AGENT", "bot");
    let refusal = repeats(&req).unwrap_err();
    assert_eq!(
        refusal,
        RepeatedField {
            kind: "header",
            name: "x-agent".into(),
            count: 3
        }
    );
}

#[test]
fn repeats_are_found_among_more_named_query_parameters_than_one_word_of_bits() {
    let mut rules = String::new();
    for i in 0..70 {
        rules.push_str(&format!(
            "- name: r{i}\n  action: deny\n  conditions:\n    \
             - field: query.p{i:02}\n      operator: equals\n      value: x\n"
        ));
    }
    let p = policy(&rules);
    for name in ["p00", "p63", "p64", "p69"] {
        let equal = format!("{name}=a&q=1&{name}=a").leak();
        let equal = Req::new("GET", "/x").query(equal);
        assert_eq!(p.check_repeats(&equal.get()), Ok(()), "{name}");
        let differ = format!("{name}=a&q=1&{name}=a&{name}=b").leak();
        let differ = Req::new("GET", "/x").query(differ);
        let refusal = p.check_repeats(&differ.get());
        assert_eq!(
            refusal.map_err(|r| (r.name, r.count)),
            Err((name.to_owned(), 3)),
            "{name}"
        );
    }
}
