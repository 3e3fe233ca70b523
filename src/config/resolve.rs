//! The validation pass: raw sections to resolved settings, with sources.
//!
//! Called by `load*` in the parent module with the file text (or `None`
//! when running on defaults) and an environment lookup; collects every
//! error before returning.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::auth::{read_auth, resolve_auth, resolve_lockout};
use super::raw::{self, RawGlobal, RawLimits, RawRoot};
use super::{
    defaults, prepare, suggest, Config, ConfigError, ConfigErrors, DefaultAction, HealthSettings,
    Limits, LogFormat, MetricsSettings, Overrides, Settings, Source, TlsSettings,
};
use crate::policy::{Policy, RateLimitState};

pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Collects errors, warnings and sources while resolving.
pub(super) struct Pass {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
    pub(super) sources: Vec<(String, String, Source)>,
}

impl Pass {
    pub(super) fn record(&mut self, key: &str, shown: String, source: Source) {
        self.sources.push((key.to_owned(), shown, source));
    }

    pub(super) fn error(
        &mut self,
        location: &str,
        what: String,
        why: &str,
        fix: impl Into<String>,
    ) {
        self.errors.push(ConfigError::new(location, what, why, fix));
    }
}

/// Validate and resolve; `text` is the file content, `None` without a file.
pub(super) fn load_text(
    text: Option<&str>,
    env: Env,
    overrides: &Overrides,
    limits: Arc<RateLimitState>,
) -> Result<Config, ConfigErrors> {
    let mut pass = Pass {
        errors: Vec::new(),
        warnings: Vec::new(),
        sources: Vec::new(),
    };
    let root = match text {
        Some(text) => parse_file(text, env, &mut pass),
        None => Some(RawRoot::default()),
    };
    let Some(root) = root else {
        return Err(ConfigErrors(pass.errors));
    };

    let global = read_global(root.global.as_ref(), &mut pass);
    let settings = resolve_settings(&global.unwrap_or_default(), env, overrides, &mut pass);
    let raw_auth = read_auth(root.auth.as_ref(), &mut pass);
    let auth = resolve_auth(
        text.is_some(),
        root.auth.is_some(),
        raw_auth.as_ref(),
        env,
        settings.tls.as_ref(),
        &mut pass,
    );
    let lockout = resolve_lockout(
        raw_auth.as_ref().and_then(|a| a.lockout.as_ref()),
        &mut pass,
    );
    if !settings.bind.is_loopback() && settings.tls.is_none() {
        pass.warnings.push(format!(
            "bind address {} is reachable from other hosts and TLS is \
            off: tokens and Docker traffic cross the network in clear text; set global.tls or \
            bind to 127.0.0.1",
            settings.bind
        ));
    }
    let policy = Policy::compile(root.rules.as_ref(), settings.default_action, limits);

    match policy {
        Ok(policy) if pass.errors.is_empty() => {
            let mut warnings = pass.warnings;
            warnings.extend(policy.lint());
            Ok(Config {
                settings,
                sources: pass.sources,
                auth,
                lockout,
                policy,
                warnings,
                path: None,
            })
        }
        Ok(_) => Err(ConfigErrors(pass.errors)),
        Err(policy_errors) => {
            pass.errors.extend(policy_errors);
            Err(ConfigErrors(pass.errors))
        }
    }
}

fn parse_file(text: &str, env: Env, pass: &mut Pass) -> Option<RawRoot> {
    let prepared = match prepare(text, env) {
        Ok(prepared) => prepared,
        Err(errors) => {
            for error in errors {
                pass.error(
                    &format!("line {}", error.line),
                    error.what,
                    "the reference cannot be expanded",
                    "write ${NAME} with a closing brace, or $${ for a literal ${",
                );
            }
            return None;
        }
    };
    let value: Value = match serde_saphyr::from_str(&prepared.text) {
        Ok(value) => value,
        Err(error) => {
            let detail = error.to_string();
            let first = detail.lines().next().unwrap_or_default().to_owned();
            pass.error(
                "file",
                format!("not valid YAML: {first}"),
                "the file cannot be read at all, so nothing in it can be checked",
                "fix the YAML syntax at the line shown (indentation, quotes, brackets)",
            );
            return None;
        }
    };
    // Values go in after parsing, so they are never read as YAML.
    let (value, expansions) = prepared.apply(value);
    for name in &expansions.unset {
        pass.warnings.push(format!(
            "${{{name}}} is used in the config file but {name} is not \
            set; it expanded to an empty string"
        ));
    }
    // Unknown top-level keys are reported, and the known sections are still
    // checked so that every problem is listed at once.
    raw::section::<RawRoot>(
        &value,
        "",
        raw::ROOT_KEYS,
        &["global", "auth", "rules"],
        &mut pass.errors,
    );
    match value {
        Value::Object(map) => Some(RawRoot {
            global: map.get("global").cloned(),
            auth: map.get("auth").cloned(),
            rules: map.get("rules").cloned(),
        }),
        Value::Null => Some(RawRoot::default()),
        _ => None,
    }
}

fn read_global(value: Option<&Value>, pass: &mut Pass) -> Option<RawGlobal> {
    let value = value?;
    let nested: [(&str, &[&str]); 4] = [
        ("tls", raw::TLS_KEYS),
        ("metrics", raw::METRICS_KEYS),
        ("health", raw::HEALTH_KEYS),
        ("limits", raw::LIMITS_KEYS),
    ];
    for (key, keys) in nested {
        let Some(child) = value.get(key) else {
            continue;
        };
        let location = format!("global.{key}");
        let errors = &mut pass.errors;
        match key {
            "tls" => raw::section::<raw::RawTls>(child, &location, keys, &[], errors).map(drop),
            "metrics" => {
                raw::section::<raw::RawMetrics>(child, &location, keys, &[], errors).map(drop)
            }
            "health" => {
                raw::section::<raw::RawHealth>(child, &location, keys, &[], errors).map(drop)
            }
            _ => raw::section::<RawLimits>(child, &location, keys, &[], errors).map(drop),
        };
    }
    raw::section(
        value,
        "global",
        raw::GLOBAL_KEYS,
        &["tls", "metrics", "health", "limits"],
        &mut pass.errors,
    )
}

/// Pick the effective value: flag > environment > file > default.
fn pick<T: ToString>(
    pass: &mut Pass,
    key: &str,
    flag: Option<T>,
    env: Option<T>,
    file: Option<T>,
    default: T,
) -> T {
    let (value, source) = match (flag, env, file) {
        (Some(v), _, _) => (v, Source::Flag),
        (None, Some(v), _) => (v, Source::Environment),
        (None, None, Some(v)) => (v, Source::File),
        (None, None, None) => (default, Source::Default),
    };
    pass.record(key, value.to_string(), source);
    value
}

pub(super) fn env_value(env: Env, name: &str) -> Option<String> {
    env(name).filter(|value| !value.is_empty())
}

fn resolve_settings(raw: &RawGlobal, env: Env, overrides: &Overrides, pass: &mut Pass) -> Settings {
    let env_port = env_value(env, "DOCKER_PROXY_PORT").and_then(|text| match text.parse() {
        Ok(port) => Some(port),
        Err(_) => {
            pass.error(
                "environment DOCKER_PROXY_PORT",
                format!("\"{text}\" is not a port"),
                "the proxy cannot listen on it",
                "set a number from 1 to 65535, or unset it",
            );
            None
        }
    });
    let port = pick(
        pass,
        "global.port",
        overrides.port,
        env_port,
        raw.port,
        defaults::PORT,
    );

    let file_bind = raw.bind.as_deref().and_then(|text| parse_bind(text, pass));
    let bind = pick(
        pass,
        "global.bind",
        overrides.bind,
        None,
        file_bind,
        defaults::BIND,
    );

    let socket = resolve_socket(raw, env, overrides, pass);
    let workers = pick(
        pass,
        "global.workers",
        overrides.workers,
        None,
        raw.workers,
        defaults::workers(),
    );
    if workers == 0 {
        pass.error(
            "global.workers",
            "workers is 0".into(),
            "no core would serve requests",
            "set at least 1, or remove the key to use one per CPU",
        );
    }

    let log_level = resolve_log_level(raw, env, pass);
    let log_format = resolve_log_format(raw.log_format.as_deref(), pass);
    let audit_log = raw
        .audit_log
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let shown = audit_log
        .as_ref()
        .map_or("none".into(), |p| p.display().to_string());
    pass.record(
        "global.audit_log",
        shown,
        source_of(raw.audit_log.is_some()),
    );
    let default_action = resolve_default_action(raw.default_action.as_deref(), pass);

    Settings {
        port,
        bind,
        socket,
        workers,
        log_level,
        log_format,
        audit_log,
        default_action,
        tls: resolve_tls(raw, pass),
        metrics: resolve_metrics(raw, pass),
        health: resolve_health(raw, pass),
        limits: resolve_limits(raw.limits.as_ref(), pass),
    }
}

pub(super) fn source_of(in_file: bool) -> Source {
    if in_file {
        Source::File
    } else {
        Source::Default
    }
}

fn parse_bind(text: &str, pass: &mut Pass) -> Option<IpAddr> {
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    match bare.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            pass.error(
                "global.bind",
                format!("\"{text}\" is not an IP address"),
                "the proxy binds one address and does not resolve host names",
                "write an address such as 127.0.0.1, 0.0.0.0 or ::1",
            );
            None
        }
    }
}

fn resolve_socket(
    raw: &RawGlobal,
    env: Env,
    overrides: &Overrides,
    pass: &mut Pass,
) -> Option<PathBuf> {
    let env_socket = env_value(env, "DOCKER_SOCKET").map(PathBuf::from);
    let file_socket = raw
        .socket
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let (socket, source) = match (&overrides.socket, env_socket, file_socket) {
        (Some(path), _, _) => (Some(path.clone()), Source::Flag),
        (None, Some(path), _) => (Some(path), Source::Environment),
        (None, None, Some(path)) => (Some(path), Source::File),
        (None, None, None) => (None, Source::Default),
    };
    let shown = socket
        .as_ref()
        .map_or("auto".into(), |p| p.display().to_string());
    pass.record("global.socket", shown, source);
    socket
}

fn resolve_log_level(raw: &RawGlobal, env: Env, pass: &mut Pass) -> String {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];
    if let Some(level) = &raw.log_level {
        if !LEVELS.contains(&level.as_str()) {
            let fix = match suggest(level, LEVELS) {
                Some(hint) => format!("did you mean \"{hint}\"? (levels: {})", LEVELS.join(", ")),
                None => format!("use one of: {}", LEVELS.join(", ")),
            };
            pass.error(
                "global.log_level",
                format!("\"{level}\" is not a log level"),
                "the logger would not know what to print",
                fix,
            );
        }
    }
    pick(
        pass,
        "global.log_level",
        None,
        env_value(env, "RUST_LOG"),
        raw.log_level.clone(),
        defaults::LOG_LEVEL.to_owned(),
    )
}

fn resolve_log_format(raw: Option<&str>, pass: &mut Pass) -> LogFormat {
    let format = match raw {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            pass.error(
                "global.log_format",
                format!("\"{other}\" is not a log format"),
                "the logger would not know how to write lines",
                "use \"text\" (for people) or \"json\" (one object per line)",
            );
            LogFormat::Text
        }
    };
    let shown = if format == LogFormat::Json {
        "json"
    } else {
        "text"
    };
    pass.record("global.log_format", shown.into(), source_of(raw.is_some()));
    format
}

fn resolve_default_action(raw: Option<&str>, pass: &mut Pass) -> DefaultAction {
    let action = match raw {
        None | Some("allow") => DefaultAction::Allow,
        Some("deny") => DefaultAction::Deny,
        Some(other) => {
            let fix = match suggest(other, &["allow", "deny"]) {
                Some(hint) => format!("did you mean \"{hint}\"? (allow or deny)"),
                None => "use \"allow\" or \"deny\"".to_owned(),
            };
            pass.error(
                "global.default_action",
                format!("\"{other}\" is not an action here"),
                "it decides every request that no rule stops",
                fix,
            );
            DefaultAction::Deny
        }
    };
    let shown = if action == DefaultAction::Allow {
        "allow"
    } else {
        "deny"
    };
    pass.record(
        "global.default_action",
        shown.into(),
        source_of(raw.is_some()),
    );
    action
}

fn resolve_tls(raw: &RawGlobal, pass: &mut Pass) -> Option<TlsSettings> {
    let tls = raw.tls.as_ref()?;
    let (Some(cert), Some(key)) = (non_empty(&tls.cert), non_empty(&tls.key)) else {
        pass.error(
            "global.tls",
            "tls needs both \"cert\" and \"key\"".into(),
            "a TLS listener cannot start without its certificate and private key",
            "set global.tls.cert and global.tls.key to PEM files, or remove global.tls",
        );
        return None;
    };
    let client_ca = non_empty(&tls.client_ca).map(PathBuf::from);
    let require_client_cert = tls.require_client_cert.unwrap_or(false);
    if require_client_cert && client_ca.is_none() {
        pass.error(
            "global.tls.require_client_cert",
            "require_client_cert is true but client_ca is not set".into(),
            "client certificates cannot be verified without a CA",
            "set global.tls.client_ca to the PEM bundle of your client CA",
        );
    }
    pass.record("global.tls.cert", cert.into(), Source::File);
    pass.record("global.tls.key", key.into(), Source::File);
    if let Some(ca) = &client_ca {
        pass.record(
            "global.tls.client_ca",
            ca.display().to_string(),
            Source::File,
        );
    }
    pass.record(
        "global.tls.require_client_cert",
        require_client_cert.to_string(),
        source_of(tls.require_client_cert.is_some()),
    );
    Some(TlsSettings {
        cert: cert.into(),
        key: key.into(),
        client_ca,
        require_client_cert,
    })
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

fn resolve_metrics(raw: &RawGlobal, pass: &mut Pass) -> MetricsSettings {
    let mut metrics = defaults::metrics();
    let raw = raw.metrics.as_ref();
    let enabled = raw.and_then(|m| m.enabled);
    let path = raw.and_then(|m| m.path.clone());
    metrics.enabled = enabled.unwrap_or(metrics.enabled);
    metrics.path = checked_path("global.metrics.path", path.clone(), metrics.path, pass);
    pass.record(
        "global.metrics.enabled",
        metrics.enabled.to_string(),
        source_of(enabled.is_some()),
    );
    pass.record(
        "global.metrics.path",
        metrics.path.clone(),
        source_of(path.is_some()),
    );
    metrics
}

fn resolve_health(raw: &RawGlobal, pass: &mut Pass) -> HealthSettings {
    let mut health = defaults::health();
    let raw = raw.health.as_ref();
    let enabled = raw.and_then(|h| h.enabled);
    let live = raw.and_then(|h| h.live_path.clone());
    let ready = raw.and_then(|h| h.ready_path.clone());
    health.enabled = enabled.unwrap_or(true);
    health.live_path = checked_path(
        "global.health.live_path",
        live.clone(),
        health.live_path,
        pass,
    );
    health.ready_path = checked_path(
        "global.health.ready_path",
        ready.clone(),
        health.ready_path,
        pass,
    );
    pass.record(
        "global.health.enabled",
        health.enabled.to_string(),
        source_of(enabled.is_some()),
    );
    pass.record(
        "global.health.live_path",
        health.live_path.clone(),
        source_of(live.is_some()),
    );
    pass.record(
        "global.health.ready_path",
        health.ready_path.clone(),
        source_of(ready.is_some()),
    );
    health
}

fn checked_path(location: &str, value: Option<String>, default: String, pass: &mut Pass) -> String {
    match value {
        None => default,
        Some(path) if path.starts_with('/') && !path.contains(['?', '#', ' ']) => path,
        Some(path) => {
            pass.error(
                location,
                format!("\"{path}\" is not an absolute request path"),
                "requests are matched on their path, which always starts with /",
                format!("write a path such as {default}"),
            );
            default
        }
    }
}

fn resolve_limits(raw: Option<&RawLimits>, pass: &mut Pass) -> Limits {
    let mut limits = defaults::limits();
    let empty = RawLimits::default();
    let raw = raw.unwrap_or(&empty);
    let seconds = [
        (
            "header_timeout",
            raw.header_timeout,
            &mut limits.header_timeout,
        ),
        (
            "keepalive_idle",
            raw.keepalive_idle,
            &mut limits.keepalive_idle,
        ),
        ("body_timeout", raw.body_timeout, &mut limits.body_timeout),
        (
            "upstream_connect",
            raw.upstream_connect,
            &mut limits.upstream_connect,
        ),
        ("upgrade_idle", raw.upgrade_idle, &mut limits.upgrade_idle),
        (
            "shutdown_grace",
            raw.shutdown_grace,
            &mut limits.shutdown_grace,
        ),
    ];
    for (key, value, slot) in seconds {
        let location = format!("global.limits.{key}");
        if let Some(value) = value {
            if value == 0 && key != "shutdown_grace" {
                pass.error(
                    &location,
                    format!("{key} is 0"),
                    "a zero timeout would cut every connection at once",
                    "set a number of seconds greater than 0",
                );
            }
            *slot = Duration::from_secs(value);
        }
        pass.record(
            &location,
            format!("{}s", slot.as_secs()),
            source_of(value.is_some()),
        );
    }
    let sizes = [
        (
            "max_connections",
            raw.max_connections,
            &mut limits.max_connections,
        ),
        ("max_head", raw.max_head, &mut limits.max_head),
        (
            "max_inspect_body",
            raw.max_inspect_body,
            &mut limits.max_inspect_body,
        ),
        (
            "max_filter_document",
            raw.max_filter_document,
            &mut limits.max_filter_document,
        ),
    ];
    for (key, value, slot) in sizes {
        let location = format!("global.limits.{key}");
        if let Some(value) = value {
            if value == 0 {
                pass.error(
                    &location,
                    format!("{key} is 0"),
                    "nothing could be accepted with a zero limit",
                    "set a positive number (sizes are in bytes)",
                );
            }
            *slot = value;
        }
        pass.record(&location, slot.to_string(), source_of(value.is_some()));
    }
    limits
}
