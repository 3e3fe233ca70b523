//! Conditions: what a rule tests, compiled once, evaluated per request.
//!
//! [`super::compile`] turns each `{field, operator, value}` (or `{or: [..]}`
//! / `{and: [..]}` group) into a [`Node`]; the evaluator asks a node whether
//! it holds for a [`Request`] and, when deciding whether to read the body,
//! with the body still unknown (three-valued logic: [`Tri`]).

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use serde_json::Value;

use super::body::{JsonBody, Segment};
use super::Request;
pub(crate) use compile::ConditionCompiler;

mod compile;

/// The request part a condition looks at.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    Path,
    Method,
    ClientIp,
    /// Lower-cased header name.
    Header(String),
    /// Query parameter name, compared exactly as Go's `url.Values` does.
    Query(String),
    Body(Vec<Segment>),
    ApiVersion,
    Role,
}

/// Condition operators; `not_X` compiles to `X` with `negate` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    In,
    Exists,
}

pub(crate) const OPERATORS: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "matches",
    "not_matches",
    "in",
    "not_in",
    "exists",
    "not_exists",
];

pub(crate) const FIELDS: &[&str] = &[
    "path",
    "method",
    "client_ip",
    "header.",
    "query.",
    "body.",
    "api_version",
    "role",
];

/// The positive test of a condition on one value.
#[derive(Debug, Clone)]
enum Test {
    Text(TextTest),
    IpEquals(IpAddr),
    IpIn(Vec<IpNet>),
    Json(JsonTest),
    Exists,
}

#[derive(Debug, Clone)]
enum TextTest {
    Equals(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Matches(Regex),
    In(Vec<String>),
}

#[derive(Debug, Clone)]
enum JsonTest {
    Equals(Value),
    Contains(Value),
    StartsWith(String),
    EndsWith(String),
    Matches(Regex),
    In(Vec<Value>),
}

/// Three-valued truth: `Unknown` when the answer depends on the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    False,
    Unknown,
    True,
}

/// One compiled `{field, operator, value}`.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    field: Field,
    test: Test,
    negate: bool,
    /// The condition as written, for `explain` and `--check-config`.
    pub text: String,
}

/// A condition or a group of them.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Leaf(Condition),
    All(Vec<Node>),
    Any(Vec<Node>),
}

impl Node {
    /// Whether this node holds; body conditions are `Unknown` when `body`
    /// is `BodyView::Unknown`.
    pub(crate) fn check(&self, req: &Request, body: BodyView) -> Tri {
        match self {
            Node::Leaf(condition) => condition.check(req, body),
            Node::All(nodes) => all(nodes, req, body),
            Node::Any(nodes) => {
                let mut result = Tri::False;
                for node in nodes {
                    match node.check(req, body) {
                        Tri::True => return Tri::True,
                        Tri::Unknown => result = Tri::Unknown,
                        Tri::False => {}
                    }
                }
                result
            }
        }
    }

    pub(crate) fn uses_body(&self) -> bool {
        match self {
            Node::Leaf(condition) => matches!(condition.field, Field::Body(_)),
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().any(Node::uses_body),
        }
    }

    /// Leaves of this node, for display and linting.
    pub(crate) fn leaves<'a>(&'a self, out: &mut Vec<&'a Condition>) {
        match self {
            Node::Leaf(condition) => out.push(condition),
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().for_each(|n| n.leaves(out)),
        }
    }

    /// A one-line rendering: AND of a list, `any of (..)` for `or`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Leaf(condition) => condition.text.clone(),
            Node::All(nodes) => {
                let parts: Vec<String> = nodes.iter().map(Node::describe).collect();
                format!("all of ({})", parts.join("; "))
            }
            Node::Any(nodes) => {
                let parts: Vec<String> = nodes.iter().map(Node::describe).collect();
                format!("any of ({})", parts.join("; "))
            }
        }
    }
}

/// AND over a list of nodes.
pub(crate) fn all(nodes: &[Node], req: &Request, body: BodyView) -> Tri {
    let mut result = Tri::True;
    for node in nodes {
        match node.check(req, body) {
            Tri::False => return Tri::False,
            Tri::Unknown => result = Tri::Unknown,
            Tri::True => {}
        }
    }
    result
}

/// What the evaluator knows about the body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyView<'a> {
    /// Not read yet: body conditions are `Unknown`.
    Unknown,
    /// Read (or absent: `None`).
    Known(Option<&'a JsonBody>),
}

impl Condition {
    pub(crate) fn is_path(&self) -> bool {
        matches!(self.field, Field::Path) && !self.negate
    }

    /// The query parameter this condition reads, if it reads one.
    pub(crate) fn query_name(&self) -> Option<&str> {
        match &self.field {
            Field::Query(name) => Some(name),
            _ => None,
        }
    }

    /// The (lower-cased) header name this condition reads, if any.
    pub(crate) fn header_name(&self) -> Option<&str> {
        match &self.field {
            Field::Header(name) => Some(name),
            _ => None,
        }
    }

    /// For linting: the literal a positive path condition pins, if any.
    pub(crate) fn path_literal(&self) -> Option<(&'static str, &str)> {
        if !self.is_path() {
            return None;
        }
        match &self.test {
            Test::Text(TextTest::Equals(v)) => Some(("equals", v)),
            Test::Text(TextTest::EndsWith(v)) => Some(("ends_with", v)),
            Test::Text(TextTest::Matches(re)) => Some(("matches", re.as_str())),
            _ => None,
        }
    }

    fn check(&self, req: &Request, body: BodyView) -> Tri {
        let positive = match (&self.field, body) {
            (Field::Body(_), BodyView::Unknown) => return Tri::Unknown,
            (Field::Body(segments), BodyView::Known(body)) => self.check_body(segments, body),
            _ => self.check_request(req),
        };
        if positive != self.negate {
            Tri::True
        } else {
            Tri::False
        }
    }

    fn check_request(&self, req: &Request) -> bool {
        match &self.field {
            Field::Path => self.test_text(req.path),
            Field::Method => self.test_text(req.method),
            Field::ApiVersion => match self.test {
                Test::Exists => !req.api_version.is_empty(),
                _ => self.test_text(req.api_version),
            },
            Field::Role => match self.test {
                Test::Exists => req.role.is_some_and(|r| !r.is_empty()),
                _ => self.test_text(req.role.unwrap_or("")),
            },
            Field::ClientIp => match &self.test {
                Test::IpEquals(ip) => *ip == req.client_ip,
                Test::IpIn(nets) => nets.iter().any(|net| net.contains(&req.client_ip)),
                _ => self.test_text(&req.client_ip.to_string()),
            },
            Field::Header(name) => {
                let mut values = req
                    .headers
                    .iter()
                    .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| String::from_utf8_lossy(value));
                match self.test {
                    Test::Exists => values.next().is_some(),
                    _ => values.any(|value| self.test_text(&value)),
                }
            }
            Field::Query(name) => {
                let mut values = query_values(req.query, name);
                match self.test {
                    Test::Exists => values.next().is_some(),
                    _ => values.any(|value| self.test_text(&value)),
                }
            }
            Field::Body(_) => false,
        }
    }

    fn test_text(&self, value: &str) -> bool {
        let Test::Text(test) = &self.test else {
            return false;
        };
        match test {
            TextTest::Equals(expected) => value == expected,
            TextTest::Contains(needle) => value.contains(needle.as_str()),
            TextTest::StartsWith(prefix) => value.starts_with(prefix.as_str()),
            TextTest::EndsWith(suffix) => value.ends_with(suffix.as_str()),
            TextTest::Matches(regex) => regex.is_match(value),
            TextTest::In(list) => list.iter().any(|item| item == value),
        }
    }

    fn check_body(&self, segments: &[Segment], body: Option<&JsonBody>) -> bool {
        let Some(body) = body else {
            return false;
        };
        let mut found = Vec::new();
        body.lookup(segments, &mut found);
        let test = match &self.test {
            Test::Exists => return found.iter().any(|v| !v.is_null()),
            Test::Json(test) => test,
            _ => return false,
        };
        found.iter().any(|value| match value {
            Value::Array(items) if !test_wants_array(test) => {
                items.iter().any(|item| test_json(test, item))
            }
            _ => test_json(test, value),
        })
    }
}

fn test_wants_array(test: &JsonTest) -> bool {
    matches!(test, JsonTest::Equals(Value::Array(_)))
}

fn test_json(test: &JsonTest, value: &Value) -> bool {
    match test {
        JsonTest::Equals(expected) => json_equal(expected, value),
        JsonTest::In(list) => list.iter().any(|item| json_equal(item, value)),
        JsonTest::Contains(Value::String(needle)) => match value {
            Value::String(text) => text.contains(needle.as_str()),
            _ => false,
        },
        JsonTest::Contains(expected) => json_equal(expected, value),
        JsonTest::StartsWith(prefix) => value
            .as_str()
            .is_some_and(|s| s.starts_with(prefix.as_str())),
        JsonTest::EndsWith(suffix) => value.as_str().is_some_and(|s| s.ends_with(suffix.as_str())),
        JsonTest::Matches(regex) => value.as_str().is_some_and(|s| regex.is_match(s)),
    }
}

/// Typed equality: numbers compare numerically, everything else exactly.
pub(crate) fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (a.as_u64(), b.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            },
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => left == right,
    }
}

/// Every value of query parameter `name`, decoded as Go's `url.ParseQuery`
/// decodes them: split on `&`, `+` is a space, `%XX` decoded once; a pair
/// with an invalid escape or a `;` in its key is skipped (Go errors on it
/// and dockerd then refuses the request). Lazy, and borrowed unless a key
/// or value is encoded: evaluation and `Policy::check_repeats` both read
/// the query through it.
pub(crate) fn query_values<'q>(
    query: &'q str,
    name: &'q str,
) -> impl Iterator<Item = Cow<'q, str>> + 'q {
    query_keys(query)
        .filter(move |(key, _)| key == name)
        .filter_map(|(_, value)| decode_component(value))
}

/// Each pair of `query` as its decoded key and its raw value, skipping the
/// pairs [`query_values`] skips for their key.
pub(crate) fn query_keys(query: &str) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key.contains(';') {
                return None;
            }
            Some((decode_component(key)?, value))
        })
}

fn decode_component(text: &str) -> Option<Cow<'_, str>> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}
