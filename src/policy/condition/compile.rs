//! Compiling `{field, operator, value}` and groups into [`Node`]s.
//!
//! Used by `policy::compile` for each rule's `conditions`; every problem is
//! pushed with its location (`rules[3].conditions[1].or[0].operator`) and
//! compiling continues, so the operator sees all of them at once.

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use serde_json::Value;

use super::{Condition, Field, JsonTest, Node, Operator, Test, TextTest, FIELDS, OPERATORS};
use crate::config::{kind, suggest, ConfigError};
use crate::policy::body::Segment;

/// Compiles condition lists, collecting every error with its location.
pub(crate) struct ConditionCompiler<'e> {
    pub errors: &'e mut Vec<ConfigError>,
}

impl ConditionCompiler<'_> {
    /// Compile a YAML list of conditions (AND) found at `location`.
    pub(crate) fn list(&mut self, value: &Value, location: &str) -> Vec<Node> {
        let Value::Array(items) = value else {
            self.error(
                location,
                format!("expected a list of conditions, found {}", kind(value)),
                "conditions are a list; every item must hold",
                "write each condition as a list item starting with \"- field: ...\"",
            );
            return Vec::new();
        };
        let mut nodes = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(node) = self.node(item, &format!("{location}[{index}]")) {
                nodes.push(node);
            }
        }
        nodes
    }

    fn node(&mut self, value: &Value, location: &str) -> Option<Node> {
        let Value::Object(map) = value else {
            self.error(
                location,
                format!("expected a condition, found {}", kind(value)),
                "a condition is a mapping {field, operator, value} or a group {or: [..]}",
                "write it as \"field: ..., operator: ..., value: ...\"",
            );
            return None;
        };
        for group in ["or", "and"] {
            if let Some(list) = map.get(group) {
                if map.len() > 1 {
                    self.error(
                        location,
                        format!("a group \"{group}\" has other keys next to it"),
                        "a group mixed with a condition is ambiguous",
                        "put the other keys in a condition inside the group's list",
                    );
                    return None;
                }
                let nodes = self.list(list, &format!("{location}.{group}"));
                return Some(if group == "or" {
                    Node::Any(nodes)
                } else {
                    Node::All(nodes)
                });
            }
        }
        self.leaf(map, location).map(Node::Leaf)
    }

    fn leaf(&mut self, map: &serde_json::Map<String, Value>, location: &str) -> Option<Condition> {
        let mut ok = true;
        for key in map.keys() {
            if !["field", "operator", "value"].contains(&key.as_str()) {
                let options = ["field", "operator", "value", "or", "and"];
                self.unknown(&format!("{location}.{key}"), key, "key", &options);
                ok = false;
            }
        }
        let field = self.field(map.get("field"), &format!("{location}.field"));
        let operator = self.operator(map.get("operator"), &format!("{location}.operator"));
        let (Some(field), Some((operator, negate, op_name))) = (field, operator) else {
            return None;
        };
        let field_text = map.get("field").and_then(Value::as_str).unwrap_or_default();
        if !operator_allowed(&field, operator) {
            self.error(
                &format!("{location}.operator"),
                format!("\"{op_name}\" cannot be used on field \"{field_text}\""),
                "the condition would always give the same answer or cannot be evaluated",
                allowed_fix(&field),
            );
            return None;
        }
        let value = map.get("value").unwrap_or(&Value::Null);
        let test = self.test(&field, operator, value, &format!("{location}.value"))?;
        let text = match operator {
            Operator::Exists => format!("{field_text} {op_name}"),
            _ => format!("{field_text} {op_name} {value}"),
        };
        ok.then_some(Condition {
            field,
            test,
            negate,
            text,
        })
    }

    fn field(&mut self, value: Option<&Value>, location: &str) -> Option<Field> {
        let Some(text) = value.and_then(Value::as_str) else {
            self.error(
                location,
                "missing or non-string \"field\"".into(),
                "a condition must say which part of the request it tests",
                "add \"field:\" with one of: path, method, client_ip, header.NAME, query.NAME, \
                 body.A.B, api_version, role",
            );
            return None;
        };
        let field = match text {
            "path" => Some(Field::Path),
            "method" => Some(Field::Method),
            "client_ip" => Some(Field::ClientIp),
            "api_version" => Some(Field::ApiVersion),
            "role" => Some(Field::Role),
            _ => match text.split_once('.') {
                Some(("header", name)) if valid_header_name(name) => {
                    Some(Field::Header(name.to_ascii_lowercase()))
                }
                Some(("query", name)) if !name.is_empty() => Some(Field::Query(name.to_owned())),
                Some(("body", path)) if path.split('.').all(|s| !s.is_empty()) => {
                    Some(Field::Body(path.split('.').map(Segment::new).collect()))
                }
                _ => None,
            },
        };
        if field.is_none() {
            let (head, rest) = text.split_once('.').unwrap_or((text, ""));
            let hint = if rest.is_empty() {
                suggest(text, FIELDS).map(|s| s.trim_end_matches('.').to_owned())
            } else {
                suggest(head, &["header", "query", "body"]).map(|s| format!("{s}.{rest}"))
            };
            let fix = match hint {
                Some(hint) if hint != text => format!("did you mean \"{hint}\"?"),
                _ => "use one of: path, method, client_ip, header.NAME, query.NAME, body.A.B, \
                      api_version, role (names and path segments must not be empty)"
                    .into(),
            };
            self.error(
                location,
                format!("\"{text}\" is not a field"),
                "an unknown field would make the rule silently never match",
                fix,
            );
        }
        field
    }

    fn operator(
        &mut self,
        value: Option<&Value>,
        location: &str,
    ) -> Option<(Operator, bool, &'static str)> {
        let Some(text) = value.and_then(Value::as_str) else {
            self.error(
                location,
                "missing or non-string \"operator\"".into(),
                "a condition must say how it compares",
                format!("add \"operator:\" with one of: {}", OPERATORS.join(", ")),
            );
            return None;
        };
        let Some(name) = OPERATORS.iter().find(|op| **op == text) else {
            self.unknown(location, text, "operator", OPERATORS);
            return None;
        };
        let negate = name.starts_with("not_");
        let operator = match name.trim_start_matches("not_") {
            "equals" => Operator::Equals,
            "contains" => Operator::Contains,
            "starts_with" => Operator::StartsWith,
            "ends_with" => Operator::EndsWith,
            "matches" => Operator::Matches,
            "in" => Operator::In,
            _ => Operator::Exists,
        };
        Some((operator, negate, name))
    }

    fn test(&mut self, field: &Field, op: Operator, value: &Value, location: &str) -> Option<Test> {
        if op == Operator::Exists {
            if !value.is_null() {
                self.error(
                    location,
                    format!("exists/not_exists takes no value, found {value}"),
                    "a value here suggests a different operator was meant",
                    "remove \"value:\", or use equals to compare",
                );
                return None;
            }
            return Some(Test::Exists);
        }
        if value.is_null() {
            self.error(
                location,
                "missing \"value\"".into(),
                "the operator needs something to compare with",
                "add \"value:\" (a list for in/not_in)",
            );
            return None;
        }
        match field {
            Field::Body(_) => self.json_test(op, value, location).map(Test::Json),
            Field::ClientIp if matches!(op, Operator::Equals | Operator::In) => {
                self.ip_test(op, value, location)
            }
            Field::Method => {
                let upper = uppercase_strings(value);
                self.text_test(op, &upper, location).map(Test::Text)
            }
            _ => self.text_test(op, value, location).map(Test::Text),
        }
    }

    fn text_test(&mut self, op: Operator, value: &Value, location: &str) -> Option<TextTest> {
        if op == Operator::In {
            let items = self.list_items(value, location)?;
            let strings: Vec<Option<String>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| self.text(item, &format!("{location}[{i}]")))
                .collect();
            return strings
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(TextTest::In);
        }
        let text = self.text(value, location)?;
        Some(match op {
            Operator::Equals => TextTest::Equals(text),
            Operator::Contains => TextTest::Contains(text),
            Operator::StartsWith => TextTest::StartsWith(text),
            Operator::EndsWith => TextTest::EndsWith(text),
            _ => TextTest::Matches(self.regex(&text, location)?),
        })
    }

    fn json_test(&mut self, op: Operator, value: &Value, location: &str) -> Option<JsonTest> {
        Some(match op {
            Operator::Equals => JsonTest::Equals(value.clone()),
            Operator::In => JsonTest::In(self.list_items(value, location)?.to_vec()),
            Operator::Contains => {
                if value.is_array() || value.is_object() {
                    self.error(
                        location,
                        format!("contains takes a single value, found {value}"),
                        "contains tests one string or one array element",
                        "write one condition per value, inside an \"or\" or \"and\" group",
                    );
                    return None;
                }
                JsonTest::Contains(value.clone())
            }
            Operator::StartsWith => JsonTest::StartsWith(self.text(value, location)?),
            Operator::EndsWith => JsonTest::EndsWith(self.text(value, location)?),
            _ => {
                let pattern = self.text(value, location)?;
                JsonTest::Matches(self.regex(&pattern, location)?)
            }
        })
    }

    fn ip_test(&mut self, op: Operator, value: &Value, location: &str) -> Option<Test> {
        if op == Operator::Equals {
            let text = self.text(value, location)?;
            return match text.parse::<IpAddr>() {
                Ok(ip) => Some(Test::IpEquals(unmap(ip))),
                Err(_) => {
                    let fix = if text.parse::<IpNet>().is_ok() {
                        format!("for a network use \"operator: in\" with \"value: [{text}]\"")
                    } else {
                        "write an IPv4 or IPv6 address such as 10.0.0.5".into()
                    };
                    self.error(
                        location,
                        format!("\"{text}\" is not an IP address"),
                        "client_ip equals compares with one address",
                        fix,
                    );
                    None
                }
            };
        }
        let items = self.list_items(value, location)?.to_vec();
        let mut nets = Vec::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let item_location = format!("{location}[{index}]");
            let Some(text) = self.text(item, &item_location) else {
                ok = false;
                continue;
            };
            match parse_net(&text) {
                Some(net) => nets.push(net),
                None => {
                    self.error(
                        &item_location,
                        format!("\"{text}\" is not an IP address or CIDR"),
                        "an unparsable network would never match and could leave a hole",
                        "write an address (10.0.0.5) or a CIDR (10.0.0.0/8, fd00::/8)",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Test::IpIn(nets))
    }

    fn list_items<'v>(&mut self, value: &'v Value, location: &str) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.error(
                    location,
                    format!("expected a list, found {}", kind(other)),
                    "in/not_in compare with each item of a list",
                    format!("write \"value: [{other}]\""),
                );
                None
            }
        }
    }

    fn text(&mut self, value: &Value, location: &str) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            other => {
                self.error(
                    location,
                    format!("expected a string, found {}", kind(other)),
                    "this field is text; YAML would turn 1.40 into 1.4 and yes into true",
                    format!(
                        "quote the value: \"{}\"",
                        other.to_string().trim_matches('"')
                    ),
                );
                None
            }
        }
    }

    fn regex(&mut self, pattern: &str, location: &str) -> Option<Regex> {
        match Regex::new(pattern) {
            Ok(regex) => Some(regex),
            Err(error) => {
                let detail = error
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_owned();
                self.error(
                    location,
                    format!("{pattern:?} is not a valid regex: {detail}"),
                    "a broken pattern cannot be matched",
                    "fix the pattern (Rust regex syntax; escape literal dots and brackets)",
                );
                None
            }
        }
    }

    fn unknown(&mut self, location: &str, word: &str, what: &str, options: &[&str]) {
        let listing = format!("{what}s: {}", options.join(", "));
        let fix = match suggest(word, options) {
            Some(hint) => format!("did you mean \"{hint}\"? ({listing})"),
            None => format!("use one of the {listing}"),
        };
        self.error(
            location,
            format!("\"{word}\" is not a{} {what}", article(what)),
            format!("an unknown {what} would make the rule silently never match"),
            fix,
        );
    }

    fn error(
        &mut self,
        location: &str,
        what: String,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.errors.push(ConfigError::new(location, what, why, fix));
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "n"
    } else {
        ""
    }
}

fn operator_allowed(field: &Field, op: Operator) -> bool {
    match field {
        Field::Path => op != Operator::Exists,
        Field::Method | Field::ClientIp => {
            matches!(op, Operator::Equals | Operator::In | Operator::Matches)
        }
        _ => true,
    }
}

fn allowed_fix(field: &Field) -> String {
    match field {
        Field::Path => "every request has a path; use equals, starts_with, matches, in, ...".into(),
        Field::Method => "use equals, in or matches (and their not_ forms) on method".into(),
        Field::ClientIp => "use equals, in (CIDR-aware) or matches on client_ip; for networks \
                            write \"operator: in\" with CIDRs"
            .into(),
        _ => "choose another operator".into(),
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(crate::http::chunked::is_tchar)
}

fn uppercase_strings(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.to_ascii_uppercase()),
        Value::Array(items) => Value::Array(items.iter().map(uppercase_strings).collect()),
        other => other.clone(),
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok()?
                }
                _ => net,
            },
            v4 => v4,
        });
    }
    text.parse::<IpAddr>().ok().map(|ip| IpNet::from(unmap(ip)))
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
