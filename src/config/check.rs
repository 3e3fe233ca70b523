//! The report printed by `--check-config`.
//!
//! `main` loads the configuration (printing [`super::ConfigErrors`] and
//! exiting non-zero on failure) and prints [`render_check`] of the result.
//! TLS files are checked by `crate::tls`, which `main` calls beside this.

use std::fmt::Write as _;

use super::{AuthMode, Config};

/// Effective global settings with their sources, the rules in evaluation
/// order, then warnings.
pub fn render_check(config: &Config) -> String {
    let mut out = String::new();
    let file = config
        .path
        .as_ref()
        .map_or("none (defaults)".into(), |p| p.display().to_string());
    let _ = writeln!(out, "config file: {file}");

    out.push_str("\nsettings:\n");
    let width = config
        .sources
        .iter()
        .map(|(key, _, _)| key.len())
        .max()
        .unwrap_or(0);
    for (key, value, source) in &config.sources {
        let _ = writeln!(out, "  {key:width$}  {value}  ({source})");
    }

    let _ = writeln!(out, "\nauthentication: {}", describe_auth(&config.auth));

    let _ = writeln!(
        out,
        "\nrules in evaluation order ({}):",
        config.policy.rule_count()
    );
    for line in config.policy.describe() {
        let _ = writeln!(out, "  {line}");
    }
    let default = match config.settings.default_action {
        super::DefaultAction::Allow => "allow",
        super::DefaultAction::Deny => "deny",
    };
    let _ = writeln!(out, "  then: default_action {default}");

    if config.warnings.is_empty() {
        out.push_str("\nwarnings: none\n");
    } else {
        let _ = writeln!(out, "\nwarnings ({}):", config.warnings.len());
        for warning in &config.warnings {
            let _ = writeln!(out, "  - {warning}");
        }
    }
    out
}

fn describe_auth(auth: &AuthMode) -> String {
    match auth {
        AuthMode::None => "none (every client is trusted)".into(),
        AuthMode::Bearer { tokens, secret } => {
            let names: Vec<String> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    format!(
                        "{} (role {})",
                        t.name.clone().unwrap_or_else(|| format!("token #{i}")),
                        t.role
                    )
                })
                .collect();
            format!(
                "bearer; tokens: [{}]; shared secret: {}",
                names.join(", "),
                if secret.is_some() {
                    "set (role admin)"
                } else {
                    "none"
                }
            )
        }
        AuthMode::Mtls {
            cert_role_map,
            default_role,
        } => {
            let map: Vec<String> = cert_role_map
                .iter()
                .map(|(cn, role)| format!("{cn} -> {role}"))
                .collect();
            format!(
                "mtls; map: [{}]; default role: {}",
                map.join(", "),
                default_role.as_deref().unwrap_or("(certificate CN)")
            )
        }
        AuthMode::FailClosed { reason } => format!("FAIL CLOSED: {reason}"),
    }
}
