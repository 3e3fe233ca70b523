//! The configuration file as written: serde structs only.
//!
//! Every struct refuses unknown keys. Every field is optional here so that a
//! map holding only one key can be deserialized on its own; that is how
//! [`section`] pins each error to its exact location and reports all of
//! them, where serde alone would stop at the first. Required keys and
//! defaults are applied by the validation pass in `crate::config`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{suggest, ConfigError};

/// The whole file; sections are read separately with their own locations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoot {
    pub global: Option<Value>,
    pub auth: Option<Value>,
    pub rules: Option<Value>,
}

/// Keys of [`RawRoot`].
pub const ROOT_KEYS: &[&str] = &["global", "auth", "rules"];

/// The `global` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub port: Option<u16>,
    pub bind: Option<String>,
    pub socket: Option<String>,
    pub workers: Option<usize>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub audit_log: Option<String>,
    pub default_action: Option<String>,
    pub tls: Option<RawTls>,
    pub metrics: Option<RawMetrics>,
    pub health: Option<RawHealth>,
    pub limits: Option<RawLimits>,
}

/// Keys of [`RawGlobal`].
pub const GLOBAL_KEYS: &[&str] = &[
    "port",
    "bind",
    "socket",
    "workers",
    "log_level",
    "log_format",
    "audit_log",
    "default_action",
    "tls",
    "metrics",
    "health",
    "limits",
];

/// `global.tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub require_client_cert: Option<bool>,
}

/// Keys of [`RawTls`].
pub const TLS_KEYS: &[&str] = &["cert", "key", "client_ca", "require_client_cert"];

/// `global.metrics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub path: Option<String>,
}

/// Keys of [`RawMetrics`].
pub const METRICS_KEYS: &[&str] = &["enabled", "path"];

/// `global.health`: `enabled`, `live_path` (`/healthz`), `ready_path`
/// (`/readyz`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub enabled: Option<bool>,
    pub live_path: Option<String>,
    pub ready_path: Option<String>,
}

/// Keys of [`RawHealth`].
pub const HEALTH_KEYS: &[&str] = &["enabled", "live_path", "ready_path"];

/// `global.limits`: durations in whole seconds, sizes in bytes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_timeout: Option<u64>,
    pub keepalive_idle: Option<u64>,
    pub body_timeout: Option<u64>,
    pub upstream_connect: Option<u64>,
    pub upgrade_idle: Option<u64>,
    pub shutdown_grace: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_head: Option<usize>,
    pub max_inspect_body: Option<usize>,
    pub max_filter_document: Option<usize>,
}

/// Keys of [`RawLimits`].
pub const LIMITS_KEYS: &[&str] = &[
    "header_timeout",
    "keepalive_idle",
    "body_timeout",
    "upstream_connect",
    "upgrade_idle",
    "shutdown_grace",
    "max_connections",
    "max_head",
    "max_inspect_body",
    "max_filter_document",
];

/// The `auth` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub secret: Option<String>,
    /// Entries are read one by one as [`RawToken`].
    pub tokens: Option<Vec<Value>>,
    pub mtls: Option<RawMtls>,
    pub lockout: Option<RawLockout>,
}

/// Keys of [`RawAuth`].
pub const AUTH_KEYS: &[&str] = &["type", "secret", "tokens", "mtls", "lockout"];

/// One `auth.tokens` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub token: Option<String>,
    pub role: Option<String>,
    pub name: Option<String>,
}

/// Keys of [`RawToken`].
pub const TOKEN_KEYS: &[&str] = &["token", "role", "name"];

/// `auth.mtls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    /// Entries are read one by one as [`RawCertRole`].
    pub cert_role_map: Option<Vec<Value>>,
    pub default_role: Option<String>,
}

/// Keys of [`RawMtls`].
pub const MTLS_KEYS: &[&str] = &["cert_role_map", "default_role"];

/// One `auth.mtls.cert_role_map` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertRole {
    pub cn: Option<String>,
    pub role: Option<String>,
}

/// Keys of [`RawCertRole`].
pub const CERT_ROLE_KEYS: &[&str] = &["cn", "role"];

/// `auth.lockout`, in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLockout {
    pub failures: Option<u32>,
    pub window: Option<u64>,
    pub duration: Option<u64>,
}

/// Keys of [`RawLockout`].
pub const LOCKOUT_KEYS: &[&str] = &["failures", "window", "duration"];

/// One entry of `rules`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub description: Option<String>,
    pub action: Option<String>,
    /// Compiled with exact locations by `crate::policy`.
    pub conditions: Option<Value>,
    pub message: Option<String>,
    pub status: Option<u16>,
    pub role: Option<String>,
    /// Entries are read one by one as [`RawFilter`].
    pub response_filter: Option<Vec<Value>>,
    pub rate_limit: Option<RawRateLimit>,
    pub priority: Option<i64>,
    pub dry_run: Option<bool>,
}

/// Keys of [`RawRule`].
pub const RULE_KEYS: &[&str] = &[
    "name",
    "description",
    "action",
    "conditions",
    "message",
    "status",
    "role",
    "response_filter",
    "rate_limit",
    "priority",
    "dry_run",
];

/// One `response_filter` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub field: Option<String>,
    pub action: Option<String>,
    pub replacement: Option<Value>,
}

/// Keys of [`RawFilter`].
pub const FILTER_KEYS: &[&str] = &["field", "action", "replacement"];

/// A rule's `rate_limit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests: Option<u32>,
    pub period: Option<u64>,
    pub penalty: Option<u64>,
}

/// Keys of [`RawRateLimit`].
pub const RATE_LIMIT_KEYS: &[&str] = &["requests", "period", "penalty"];

/// Read one mapping at `location` into `T`, reporting every unknown key and
/// every badly typed value with its own location.
///
/// Keys in `nested` are sub-sections the caller checks itself (with their
/// own locations); their errors are not repeated here. When something is
/// wrong the errors are pushed and the result holds the keys that were
/// fine, so later checks can still report their own problems; `None` only
/// when the value is not a mapping at all. Null means an empty section.
pub fn section<T: DeserializeOwned + Default>(
    value: &Value,
    location: &str,
    keys: &[&str],
    nested: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let map = match value {
        Value::Null => return Some(T::default()),
        Value::Object(map) => map,
        other => {
            errors.push(ConfigError::new(
                location,
                format!("expected a mapping, found {}", super::kind(other)),
                "this section holds named settings",
                format!(
                    "write it as \"key: value\" lines; keys: {}",
                    keys.join(", ")
                ),
            ));
            return None;
        }
    };
    let mut good = Map::new();
    for (key, child) in map {
        let here = join(location, key);
        if !keys.contains(&key.as_str()) {
            errors.push(unknown_key(&here, key, keys));
            continue;
        }
        let single = Value::Object(Map::from_iter([(key.clone(), child.clone())]));
        match serde_json::from_value::<T>(single) {
            Ok(_) => {
                good.insert(key.clone(), child.clone());
            }
            Err(_) if nested.contains(&key.as_str()) => {}
            Err(error) => errors.push(ConfigError::new(
                &here,
                format!("wrong value {child}: {error}"),
                "a value of the wrong type cannot be used",
                "write a value of the type named",
            )),
        }
    }
    match serde_json::from_value::<T>(Value::Object(good)) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            errors.push(ConfigError::new(
                location,
                format!("cannot be read: {error}"),
                "the section does not have the expected shape",
                "compare it with the example config.yaml",
            ));
            None
        }
    }
}

fn join(location: &str, key: &str) -> String {
    if location.is_empty() {
        key.to_owned()
    } else {
        format!("{location}.{key}")
    }
}

fn unknown_key(location: &str, key: &str, keys: &[&str]) -> ConfigError {
    let listing = keys.join(", ");
    let fix = match suggest(key, keys) {
        Some(hint) => format!("did you mean \"{hint}\"? (keys here: {listing})"),
        None => format!("remove it; keys here: {listing}"),
    };
    ConfigError::new(
        location,
        format!("unknown key \"{key}\""),
        "a misspelled key would be silently ignored and could widen access",
        fix,
    )
}
