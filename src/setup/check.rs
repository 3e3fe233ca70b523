//! Checks for single answers, run while the wizard asks.
//!
//! Each returns the parsed answer or a message saying what is wrong and what
//! to type instead; the prompt shows the message and asks again. Conditions
//! are checked by compiling a one-rule policy with the real loader
//! ([`crate::config::load_from_str`]), so a regex, CIDR or operator is
//! accepted here exactly when `--check-config` would accept it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::model::{Condition, Value};
use super::render::{to_yaml, Node};
use super::templates::RESERVED_NAMES;
use crate::config::{self, Overrides};

/// A TCP port, 1 to 65535.
pub fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "{:?} is not a port: type a number from 1 to 65535 (default 2376)",
            text.trim()
        )),
        Ok(port) => Ok(port),
    }
}

/// An IPv4 or IPv6 address to bind.
pub fn bind(text: &str) -> Result<IpAddr, String> {
    text.trim().parse::<IpAddr>().map_err(|_| {
        format!(
            "{:?} is not an IP address: type e.g. 127.0.0.1, 0.0.0.0 or ::1",
            text.trim()
        )
    })
}

/// Engine socket: empty means auto-detect, otherwise an absolute path.
pub fn socket(text: &str) -> Result<Option<PathBuf>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let path = Path::new(text.strip_prefix("unix://").unwrap_or(text));
    if !path.is_absolute() {
        return Err(format!(
            "{text:?} is not an absolute path: type e.g. /var/run/docker.sock, \
             or leave it empty to detect the socket at start"
        ));
    }
    Ok(Some(path.to_path_buf()))
}

/// A file that exists and can be read (TLS material).
pub fn readable_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text.trim());
    if text.trim().is_empty() {
        return Err("type the path of a PEM file".into());
    }
    if !path.is_file() {
        return Err(format!(
            "{} does not exist or is not a file",
            path.display()
        ));
    }
    std::fs::File::open(&path)
        .map(|_| path.clone())
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// An environment variable name usable in `${NAME}`.
pub fn env_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a variable name: use letters, digits and _, \
             not starting with a digit (e.g. DOCKER_PROXY_CI_TOKEN)"
        ))
    }
}

/// A role or token name: letters, digits, `-`, `_` and `.`.
pub fn word(text: &str, what: &str) -> Result<String, String> {
    let word = text.trim();
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(word.to_owned())
    } else {
        Err(format!(
            "{word:?} is not a valid {what}: use letters, digits, '-', '_' and '.'"
        ))
    }
}

/// A literal secret typed by the operator.
pub fn literal_secret(text: &str) -> Result<String, String> {
    if text.chars().count() < 16 {
        return Err("a secret must be at least 16 characters long".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a secret cannot contain spaces or control characters".into());
    }
    Ok(text.to_owned())
}

/// A rule name that no template and no earlier rule uses.
pub fn rule_name(text: &str, taken: &[String]) -> Result<String, String> {
    let name = word(text, "rule name")?;
    if RESERVED_NAMES.contains(&name.as_str()) || taken.contains(&name) {
        return Err(format!(
            "a rule named {name:?} already exists: pick another name"
        ));
    }
    Ok(name)
}

/// A whole number from `min` up.
pub fn at_least(text: &str, min: u64) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "{:?} is not a whole number of at least {min}",
            text.trim()
        )),
    }
}

/// A rule priority (any whole number, higher runs first).
pub fn priority(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("{:?} is not a whole number (e.g. 0, 100, -10)", text.trim()))
}

/// Client addresses for IP filtering: a comma-separated list of IPs and
/// CIDRs, checked by the loader.
pub fn address_list(text: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = split_list(text);
    if items.is_empty() {
        return Err("type at least one address or network, e.g. 127.0.0.1, 10.0.0.0/8".into());
    }
    let values = items.iter().map(|a| Value::Text(a.clone())).collect();
    condition(&Condition {
        field: "client_ip".into(),
        operator: "not_in".into(),
        value: Value::List(values),
    })?;
    Ok(items)
}

/// Split a comma-separated answer into trimmed, non-empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Operators that take no value.
pub fn takes_value(operator: &str) -> bool {
    !matches!(operator, "exists" | "not_exists")
}

/// Turn a typed answer into the condition's value. Body fields get YAML
/// types (`true`, `3`); quote a body value (`"true"`) to keep it a string.
pub fn value(field: &str, operator: &str, text: &str) -> Value {
    if !takes_value(operator) {
        return Value::None;
    }
    let body = field.starts_with("body.");
    let one = |item: &str| -> Value {
        let quoted = item.len() >= 2 && item.starts_with('"') && item.ends_with('"');
        if body && quoted {
            Value::Text(item[1..item.len() - 1].to_owned())
        } else if body && (item == "true" || item == "false" || item.parse::<f64>().is_ok()) {
            Value::Typed(item.to_owned())
        } else {
            Value::Text(item.to_owned())
        }
    };
    if matches!(operator, "in" | "not_in") {
        Value::List(split_list(text).iter().map(|item| one(item)).collect())
    } else {
        one(text)
    }
}

/// Compile `condition` in a one-rule policy with the real loader.
pub fn condition(condition: &Condition) -> Result<(), String> {
    let policy = Node::map([
        ("auth", Node::map([("type", Node::str("none"))])),
        (
            "rules",
            Node::List(vec![Node::map([
                ("name", Node::str("wizard-check")),
                ("action", Node::str("deny")),
                ("conditions", Node::List(vec![condition.node()])),
            ])]),
        ),
    ]);
    let text = to_yaml(&policy);
    match config::load_from_str(&text, &|_| None, &Overrides::default()) {
        Ok(_) => Ok(()),
        Err(errors) => Err(errors
            .0
            .iter()
            .map(|e| format!("{} ({})", e.what, e.fix))
            .collect::<Vec<_>>()
            .join("; ")),
    }
}
