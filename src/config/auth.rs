//! Resolving the `auth` section: SPEC §4 "How authentication resolves".
//!
//! Called by the validation pass in `resolve` once the global settings are
//! known (mtls needs `global.tls.client_ca`); each branch of
//! [`resolve_auth`] is one row of the table, and the tests in
//! `config::tests` cover every row.

use std::time::Duration;

use serde_json::Value;

use super::raw::{self, RawAuth, RawLockout};
use super::resolve::{env_value, source_of, Env, Pass};
use super::{defaults, suggest, AuthMode, Lockout, Source, TlsSettings, TokenEntry};

pub(super) fn read_auth(value: Option<&Value>, pass: &mut Pass) -> Option<RawAuth> {
    let value = value?;
    if let Some(mtls) = value.get("mtls") {
        raw::section::<raw::RawMtls>(mtls, "auth.mtls", raw::MTLS_KEYS, &[], &mut pass.errors);
    }
    if let Some(lockout) = value.get("lockout") {
        raw::section::<RawLockout>(
            lockout,
            "auth.lockout",
            raw::LOCKOUT_KEYS,
            &[],
            &mut pass.errors,
        );
    }
    raw::section(
        value,
        "auth",
        raw::AUTH_KEYS,
        &["mtls", "lockout"],
        &mut pass.errors,
    )
}

pub(super) fn resolve_lockout(raw: Option<&RawLockout>, pass: &mut Pass) -> Lockout {
    let mut lockout = defaults::lockout();
    if let Some(raw) = raw {
        let values = [
            ("failures", raw.failures.map(u64::from)),
            ("window", raw.window),
            ("duration", raw.duration),
        ];
        for (key, value) in values {
            if value == Some(0) {
                pass.error(
                    &format!("auth.lockout.{key}"),
                    format!("{key} is 0"),
                    "a lockout with a zero limit either locks out every client or nobody",
                    format!("set \"{key}\" to a positive number, or remove it for the default"),
                );
            }
        }
        lockout.failures = raw.failures.unwrap_or(lockout.failures);
        lockout.window = raw.window.map_or(lockout.window, Duration::from_secs);
        lockout.duration = raw.duration.map_or(lockout.duration, Duration::from_secs);
    }
    lockout
}

const FAIL_CLOSED_FIX: &str = "write \"auth: {type: none}\" to run without authentication on \
    purpose, or give credentials: \"auth: {tokens: [{token: ${CI_TOKEN}, role: user}]}\" or \
    \"auth: {secret: ${DOCKER_PROXY_SECRET}}\", or set DOCKER_PROXY_SECRET";

/// SPEC §4 "How authentication resolves", one branch per row.
pub(super) fn resolve_auth(
    file: bool,
    section: bool,
    raw: Option<&RawAuth>,
    env: Env,
    tls: Option<&TlsSettings>,
    pass: &mut Pass,
) -> AuthMode {
    let env_secret = env_value(env, "DOCKER_PROXY_SECRET");
    if env_secret.is_some() {
        pass.record("auth.secret", "(set)".into(), Source::Environment);
    }
    let bearer_from_env = |secret: String| AuthMode::Bearer {
        tokens: Vec::new(),
        secret: Some(secret),
    };

    if !file {
        return match env_secret {
            Some(secret) => bearer_from_env(secret),
            None => {
                pass.warnings.push(
                    "no config file and DOCKER_PROXY_SECRET is not set: \
                    authentication is off and every client reaching the port controls the \
                    engine"
                        .into(),
                );
                AuthMode::None
            }
        };
    }
    let Some(raw) = raw.filter(|_| section) else {
        if section {
            // The auth section had errors; they are already reported.
            return fail_closed("the auth section is invalid", pass);
        }
        return match env_secret {
            Some(secret) => bearer_from_env(secret),
            None => fail_closed(
                "the config file has no auth section and DOCKER_PROXY_SECRET \
                is not set",
                pass,
            ),
        };
    };

    let has_credentials = raw.secret.is_some() || raw.tokens.is_some();
    let kind = match raw.kind.as_deref() {
        Some(kind) => kind,
        None if has_credentials => "bearer",
        None if raw.mtls.is_some() => "mtls",
        None => match env_secret {
            Some(secret) => return bearer_from_env(secret),
            None => return fail_closed("auth has no type, secret or tokens", pass),
        },
    };
    match kind {
        "none" => resolve_none(raw, env_secret, pass),
        "bearer" => resolve_bearer(raw, env_secret, pass),
        "mtls" => resolve_mtls(raw, env_secret, tls, pass),
        other => {
            let fix = match suggest(other, &["bearer", "mtls", "none"]) {
                Some(hint) => format!("did you mean \"{hint}\"? (bearer, mtls or none)"),
                None => "use bearer, mtls or none".to_owned(),
            };
            pass.error(
                "auth.type",
                format!("\"{other}\" is not an auth type"),
                "the proxy would not know how to authenticate clients",
                fix,
            );
            fail_closed("auth.type is invalid", pass)
        }
    }
}

fn fail_closed(situation: &str, pass: &mut Pass) -> AuthMode {
    fail_closed_as("fail-closed".into(), Source::Default, situation, pass)
}

/// Fail closed, showing `shown` as the effective `auth.type` (the type the
/// file asked for, when it asked for one).
fn fail_closed_as(shown: String, source: Source, situation: &str, pass: &mut Pass) -> AuthMode {
    let reason = format!(
        "{situation}, so every request is refused with 401; \
        fix: {FAIL_CLOSED_FIX}"
    );
    pass.warnings
        .push(format!("authentication fails closed: {reason}"));
    pass.record("auth.type", shown, source);
    AuthMode::FailClosed { reason }
}

fn resolve_none(raw: &RawAuth, env_secret: Option<String>, pass: &mut Pass) -> AuthMode {
    for (key, present) in [
        ("secret", raw.secret.is_some()),
        ("tokens", raw.tokens.is_some()),
        ("mtls", raw.mtls.is_some()),
    ] {
        if present {
            pass.error(
                &format!("auth.{key}"),
                format!("\"{key}\" is set with auth.type none"),
                "it is unclear whether clients must authenticate",
                format!("remove \"{key}\", or remove \"type: none\""),
            );
        }
    }
    match env_secret {
        Some(secret) => {
            pass.warnings.push(
                "auth.type is none but DOCKER_PROXY_SECRET is set: requiring \
                that secret as a bearer token (a secret in the environment never leaves the \
                proxy open); unset it or remove type: none to resolve the contradiction"
                    .into(),
            );
            pass.record("auth.type", "bearer".into(), Source::Environment);
            AuthMode::Bearer {
                tokens: Vec::new(),
                secret: Some(secret),
            }
        }
        None => {
            pass.record("auth.type", "none".into(), Source::File);
            AuthMode::None
        }
    }
}

fn resolve_bearer(raw: &RawAuth, env_secret: Option<String>, pass: &mut Pass) -> AuthMode {
    if raw.mtls.is_some() {
        pass.error(
            "auth.mtls",
            "\"mtls\" is set with bearer authentication".into(),
            "the certificate role map would be ignored",
            "remove auth.mtls, or set \"type: mtls\"",
        );
    }
    let tokens = read_tokens(raw.tokens.as_deref().unwrap_or_default(), pass);
    let file_secret = raw.secret.clone().filter(|s| !s.is_empty());
    let secret = match (env_secret, file_secret) {
        (Some(secret), _) => Some(secret),
        (None, Some(secret)) => {
            pass.record("auth.secret", "(set)".into(), Source::File);
            Some(secret)
        }
        (None, None) => None,
    };
    if tokens.is_empty() && secret.is_none() {
        return fail_closed_as(
            "bearer, failing closed (no usable token)".into(),
            source_of(raw.kind.is_some()),
            "bearer authentication has no non-empty secret or token (an empty \
            or unset ${VAR} expands to nothing)",
            pass,
        );
    }
    pass.record("auth.type", "bearer".into(), source_of(raw.kind.is_some()));
    AuthMode::Bearer { tokens, secret }
}

fn read_tokens(items: &[Value], pass: &mut Pass) -> Vec<TokenEntry> {
    let mut tokens: Vec<TokenEntry> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let location = format!("auth.tokens[{index}]");
        let entry: Option<raw::RawToken> =
            raw::section(item, &location, raw::TOKEN_KEYS, &[], &mut pass.errors);
        let Some(entry) = entry else { continue };
        let token = entry.token.unwrap_or_default();
        if token.is_empty() {
            pass.warnings.push(format!(
                "{location} has an empty token and is ignored (unset \
                ${{VAR}}?)"
            ));
            continue;
        }
        if let Some(first) = tokens.iter().position(|t| t.token == token) {
            pass.error(
                &format!("{location}.token"),
                format!("the same token value as auth.tokens[{first}]"),
                "one token cannot carry two identities or roles",
                "give every client its own token",
            );
            continue;
        }
        let role = entry
            .role
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| defaults::TOKEN_ROLE.to_owned());
        tokens.push(TokenEntry {
            token,
            role,
            name: entry.name,
        });
    }
    tokens
}

fn resolve_mtls(
    raw: &RawAuth,
    env_secret: Option<String>,
    tls: Option<&TlsSettings>,
    pass: &mut Pass,
) -> AuthMode {
    for (key, present) in [
        ("secret", raw.secret.is_some()),
        ("tokens", raw.tokens.is_some()),
    ] {
        if present {
            pass.error(
                &format!("auth.{key}"),
                format!("\"{key}\" is set with mtls"),
                "bearer credentials are not checked under mtls",
                format!("remove \"{key}\", or use \"type: bearer\""),
            );
        }
    }
    if env_secret.is_some() {
        pass.warnings.push(
            "DOCKER_PROXY_SECRET is set but auth.type is mtls: the secret is \
            not used; clients authenticate with certificates"
                .into(),
        );
    }
    if tls.and_then(|t| t.client_ca.as_ref()).is_none() {
        pass.error(
            "auth.type",
            "mtls needs global.tls.client_ca".into(),
            "client certificates cannot be verified without a CA, so nobody could connect",
            "set global.tls.cert, global.tls.key and global.tls.client_ca",
        );
    }
    let mut map = Vec::new();
    let mtls = raw.mtls.as_ref();
    for (index, item) in mtls
        .and_then(|m| m.cert_role_map.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let location = format!("auth.mtls.cert_role_map[{index}]");
        let entry: Option<raw::RawCertRole> =
            raw::section(item, &location, raw::CERT_ROLE_KEYS, &[], &mut pass.errors);
        match entry {
            Some(raw::RawCertRole {
                cn: Some(cn),
                role: Some(role),
            }) if !cn.is_empty() && !role.is_empty() => map.push((cn, role)),
            Some(_) => pass.error(
                &location,
                "entry needs both \"cn\" and \"role\"".into(),
                "an entry without either cannot map a certificate to a role",
                "write {cn: build-*.ci.example.com, role: user}",
            ),
            None => {}
        }
    }
    pass.record("auth.type", "mtls".into(), Source::File);
    let default_role = mtls
        .and_then(|m| m.default_role.clone())
        .filter(|r| !r.is_empty());
    AuthMode::Mtls {
        cert_role_map: map,
        default_role,
    }
}
