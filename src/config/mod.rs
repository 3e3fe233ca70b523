//! Configuration: choosing, reading and validating the file, then resolving
//! every setting with its source.
//!
//! Loading has two stages. [`raw`] holds the file as written (serde structs
//! that refuse unknown keys); this module validates it in one pass, reports
//! every problem with its location ([`ConfigErrors`]), applies environment
//! variables and command-line overrides, resolves authentication
//! ([`AuthMode`]) and compiles the rules into a [`crate::policy::Policy`].
//! The result, [`Config`], is plain data: `main` builds the runtime snapshot
//! from it and `--check-config` prints it with [`render_check`].
//!
//! Precedence for a setting that has several sources: command line
//! ([`Overrides`]) > environment > config file > default. The environment
//! variables are `DOCKER_PROXY_PORT` (global.port), `DOCKER_SOCKET`
//! (global.socket), `DOCKER_PROXY_SECRET` (auth.secret), `RUST_LOG`
//! (global.log_level) and `DOCKER_PROXY_CONFIG` (which file). The file is
//! `--config` > `DOCKER_PROXY_CONFIG` > `./config.yaml`; a file named
//! explicitly must exist, a missing `./config.yaml` means defaults.
//! Defaults live in [`defaults`].

mod auth;
mod check;
pub mod defaults;
mod expand;
pub mod raw;
mod resolve;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use check::render_check;
pub use expand::{prepare, ExpandError, Expansions, Prepared};

use crate::policy::{Policy, RateLimitState};

/// Where an effective setting came from (for `--check-config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Environment,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Environment => "environment",
            Source::Flag => "flag",
        })
    }
}

/// Timeouts and size caps (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a complete request head. Default: 30 s.
    pub header_timeout: Duration,
    /// Idle client connection between requests. Default: 120 s.
    pub keepalive_idle: Duration,
    /// Time to receive a request body that a rule inspects, from the end
    /// of its head; past it 408. Gaps between reads are also bounded by
    /// `header_timeout`. A streamed (uninspected) body has no total
    /// deadline, but a gap this long between client reads ends it (408,
    /// both connections closed). Default: 30 s.
    pub body_timeout: Duration,
    /// Connecting to the engine socket. Default: 5 s.
    pub upstream_connect: Duration,
    /// Upgraded stream with no traffic either way. Default: 3600 s.
    pub upgrade_idle: Duration,
    /// Draining on SIGTERM. Default: 10 s.
    pub shutdown_grace: Duration,
    /// Client connections per process; beyond it 503. Default: 10000.
    pub max_connections: usize,
    /// Request head size in bytes; beyond it 431. Default: 65536.
    pub max_head: usize,
    /// Body bytes read for rule evaluation; beyond it 413. Default: 1 MiB.
    pub max_inspect_body: usize,
    /// One JSON document held for filtering, in bytes. Default: 64 MiB.
    pub max_filter_document: usize,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people. Default.
    Text,
    /// One JSON object per line.
    Json,
}

/// What happens when no rule stops evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// Forward. Default.
    Allow,
    /// Refuse with 403.
    Deny,
}

/// `global.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Refuse the handshake without a client certificate. Default: false.
    pub require_client_cert: bool,
}

/// `global.metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Serve Prometheus text on the proxy port. Default: false.
    pub enabled: bool,
    /// Path it is served at. Default: `/metrics`.
    pub path: String,
}

/// `global.health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Answer the two paths below without authentication. Default: true.
    pub enabled: bool,
    /// Liveness (process serving). Key `live_path`. Default: `/healthz`.
    pub live_path: String,
    /// Readiness (engine answered `_ping`). Key `ready_path`. Default: `/readyz`.
    pub ready_path: String,
}

/// Effective `global` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// TCP port. Default: 2376.
    pub port: u16,
    /// Address to bind. Default: 127.0.0.1.
    pub bind: IpAddr,
    /// Engine socket; `None` means auto-detect (done by the caller).
    pub socket: Option<PathBuf>,
    /// Runtimes and listeners, one per core. Default: number of CPUs.
    pub workers: usize,
    /// Log filter (RUST_LOG wins over the file). Default: `info`.
    pub log_level: String,
    /// Log format. Default: text.
    pub log_format: LogFormat,
    /// Append-only JSON-lines audit file. Default: none.
    pub audit_log: Option<PathBuf>,
    /// When no rule stops evaluation. Default: allow.
    pub default_action: DefaultAction,
    /// TLS; `None` means plain TCP. Default: none.
    pub tls: Option<TlsSettings>,
    /// Metrics endpoint.
    pub metrics: MetricsSettings,
    /// Health endpoints.
    pub health: HealthSettings,
    /// Timeouts and size caps.
    pub limits: Limits,
}

/// What the auth section resolved to (SPEC §4 table), before TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: explicit, or no config file and no secret.
    None,
    /// `Authorization: Bearer` required; tokens are checked before the secret.
    Bearer {
        tokens: Vec<TokenEntry>,
        secret: Option<String>,
    },
    /// Verified client certificate required; role from the map.
    Mtls {
        cert_role_map: Vec<(String, String)>,
        default_role: Option<String>,
    },
    /// Every request gets 401; `reason` tells the operator what to write.
    FailClosed { reason: String },
}

/// One bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub token: String,
    pub role: String,
    pub name: Option<String>,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<secret>")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// Failed-authentication lockout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// Failed attempts that lock a client IP out. Default: 10.
    pub failures: u32,
    /// Window the failures are counted in. Default: 60 s.
    pub window: Duration,
    /// How long the lockout lasts. Default: 300 s.
    pub duration: Duration,
}

/// Everything loaded, validated and resolved.
#[derive(Debug)]
pub struct Config {
    pub settings: Settings,
    /// (dotted key, value shown, source) for every effective global setting.
    pub sources: Vec<(String, String, Source)>,
    pub auth: AuthMode,
    pub lockout: Lockout,
    pub policy: Policy,
    /// Problems that do not stop loading.
    pub warnings: Vec<String>,
    /// The file actually loaded, `None` when running on defaults.
    pub path: Option<PathBuf>,
}

/// Command-line overrides (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub socket: Option<PathBuf>,
    pub workers: Option<usize>,
}

/// One configuration problem, with where, why and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config error at {location}: {what}\n  why: {why}\n  fix: {fix}")]
pub struct ConfigError {
    pub location: String,
    pub what: String,
    pub why: String,
    pub fix: String,
}

impl ConfigError {
    /// Build an error; `location` is a dotted path such as `rules[2].action`.
    pub fn new(
        location: impl Into<String>,
        what: String,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            location: location.into(),
            what,
            why: why.into(),
            fix: fix.into(),
        }
    }
}

/// Every problem found while loading; `Display` prints one block each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Load with the process environment, fresh rate-limit state.
pub fn load(overrides: &Overrides) -> Result<Config, ConfigErrors> {
    load_with_state(overrides, RateLimitState::new())
}

/// Load with the process environment; `limits` is the rate-limit state to
/// keep (pass `old.policy.rate_limit_state().clone()` on reload).
pub fn load_with_state(
    overrides: &Overrides,
    limits: Arc<RateLimitState>,
) -> Result<Config, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    let (path, source) = match choose_file(overrides, &env, Path::new("config.yaml")) {
        Ok(Some(choice)) => choice,
        Ok(None) => return resolve::load_text(None, &env, overrides, limits),
        Err(error) => return Err(ConfigErrors(vec![error])),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut config = resolve::load_text(Some(&text), &env, overrides, limits)?;
            config
                .sources
                .insert(0, ("config".into(), path.display().to_string(), source));
            config.path = Some(path);
            Ok(config)
        }
        Err(error) => Err(ConfigErrors(vec![ConfigError::new(
            "config file",
            format!("cannot read {}: {error}", path.display()),
            "a policy file that was named but cannot be read must not be replaced by defaults",
            "check the path given with --config or DOCKER_PROXY_CONFIG and its permissions",
        )])),
    }
}

/// Load from given text and environment (for tests, `explain` and the
/// wizard); the text counts as a config file.
pub fn load_from_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    resolve::load_text(Some(text), env, overrides, RateLimitState::new())
}

/// Same as [`load_from_str`] with no config file at all (defaults).
pub fn load_defaults(
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    resolve::load_text(None, env, overrides, RateLimitState::new())
}

/// Which file to read: `--config` > `DOCKER_PROXY_CONFIG` > `fallback` if it
/// exists. `Ok(None)`: run on defaults.
pub fn choose_file(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    fallback: &Path,
) -> Result<Option<(PathBuf, Source)>, ConfigError> {
    let explicit = match (&overrides.config, env("DOCKER_PROXY_CONFIG")) {
        (Some(path), _) => Some((path.clone(), Source::Flag)),
        (None, Some(path)) if !path.is_empty() => Some((PathBuf::from(path), Source::Environment)),
        _ => None,
    };
    match explicit {
        Some((path, source)) if path.is_file() => Ok(Some((path, source))),
        Some((path, source)) => Err(ConfigError::new(
            "config file",
            format!(
                "{} does not exist or is not a file (given by {})",
                path.display(),
                if source == Source::Flag {
                    "--config"
                } else {
                    "DOCKER_PROXY_CONFIG"
                }
            ),
            "a policy file that was named but is missing must not be replaced by defaults",
            "fix the path, or drop --config / unset DOCKER_PROXY_CONFIG to use ./config.yaml",
        )),
        None if fallback.is_file() => Ok(Some((fallback.to_path_buf(), Source::Default))),
        None => Ok(None),
    }
}

/// Closest of `options` to `word`, if close enough to be a likely typo.
pub fn suggest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    options
        .iter()
        .map(|option| {
            (
                strsim::normalized_damerau_levenshtein(&word, option),
                *option,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, option)| option)
}

/// A short name of a YAML value's type for error messages.
pub(crate) fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
