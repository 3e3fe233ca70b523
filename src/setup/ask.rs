//! The questions, in order, on top of `dialoguer`.
//!
//! Every typed answer goes through a check from `check` before it is
//! accepted; a rejected answer shows the check's message under the prompt
//! and the same question is asked again. The result is an [`Answers`].

use std::path::PathBuf;

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, MultiSelect, Select};

use super::check;
use super::model::{Answers, Auth, Condition, CustomRule, Secret, Tls, Token, Value};
use super::templates::{self, Template};

/// A prompt that failed (no terminal, or cancelled with Ctrl-C).
pub type Result<T> = std::result::Result<T, dialoguer::Error>;

const DEFAULT_AUDIT_LOG: &str = "/var/log/docker-api-proxy/audit.jsonl";
const FIELDS: &[&str] = &[
    "path",
    "method",
    "client_ip",
    "header.NAME",
    "query.NAME",
    "body.FIELD (JSON request body, dot path)",
    "api_version",
    "role",
];
const OPERATORS: &[&str] = &[
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

/// Ask everything and return the answers.
pub fn answers() -> Result<Answers> {
    let theme = ColorfulTheme::default();
    let ask = Ask { theme: &theme };

    heading("Listener");
    let port = ask.parsed("Port to listen on", Some("2376"), check::port)?;
    let bind = ask.parsed(
        "Address to bind (127.0.0.1: this host only)",
        Some("127.0.0.1"),
        check::bind,
    )?;
    let socket = ask.parsed(
        "Docker Engine socket (empty: detect at start)",
        Some(""),
        check::socket,
    )?;
    if let Some(path) = socket.as_ref().filter(|path| !path.exists()) {
        note(&format!(
            "{} does not exist yet; the proxy answers 502 until it appears",
            path.display()
        ));
    }
    let tls = ask.tls()?;
    if !bind.is_loopback() && tls.is_none() {
        note(
            "the proxy will be reachable from the network without TLS: tokens travel in clear text",
        );
    }
    let audit_log = if ask.confirm("Write an audit log (one JSON line per request)?", true)? {
        Some(ask.parsed("Audit log file", Some(DEFAULT_AUDIT_LOG), absolute_path)?)
    } else {
        None
    };

    heading("Authentication");
    let auth = ask.auth()?;

    heading("Policy");
    let default_action = ["allow", "deny"][ask.select(
        "When no rule decides a request",
        &[
            "allow it",
            "deny it (only what an allow rule names gets through)",
        ],
        0,
    )?];
    let mut answers = Answers {
        port,
        bind,
        socket,
        tls,
        auth,
        default_action: default_action.into(),
        audit_log: audit_log.map(|p| p.display().to_string()),
        templates: Vec::new(),
        custom: Vec::new(),
    };
    answers.templates = ask.templates(&answers.roles())?;
    answers.custom = ask.custom_rules()?;
    Ok(answers)
}

fn heading(title: &str) {
    eprintln!("\n== {title} ==");
}

fn note(text: &str) {
    eprintln!("  note: {text}");
}

fn absolute_path(text: &str) -> std::result::Result<PathBuf, String> {
    let path = PathBuf::from(text.trim());
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{:?} is not an absolute path", text.trim()))
    }
}

/// A random 256-bit token as 64 hex digits.
pub fn generate_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Ask<'t> {
    theme: &'t ColorfulTheme,
}

impl Ask<'_> {
    /// Ask until `parse` accepts the answer. `default` is what Enter gives.
    fn parsed<T>(
        &self,
        prompt: &str,
        default: Option<&str>,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let mut input = Input::<String>::with_theme(self.theme).with_prompt(prompt);
        match default {
            Some("") => input = input.allow_empty(true),
            Some(default) => input = input.default(default.to_owned()),
            None => {}
        }
        let text = input
            .validate_with(|text: &String| parse(text).map(|_| ()))
            .interact_text()?;
        Ok(parse(&text).expect("the validator accepted this answer"))
    }

    fn confirm(&self, prompt: &str, default: bool) -> Result<bool> {
        Confirm::with_theme(self.theme)
            .with_prompt(prompt)
            .default(default)
            .interact()
    }

    fn select(&self, prompt: &str, items: &[&str], default: usize) -> Result<usize> {
        Select::with_theme(self.theme)
            .with_prompt(prompt)
            .items(items)
            .default(default)
            .interact()
    }

    /// Pick at least one item (space toggles, enter confirms).
    fn pick(&self, prompt: &str, items: &[&str], at_least_one: bool) -> Result<Vec<usize>> {
        loop {
            let chosen = MultiSelect::with_theme(self.theme)
                .with_prompt(format!("{prompt} (space toggles, enter confirms)"))
                .items(items)
                .interact()?;
            if !chosen.is_empty() || !at_least_one {
                return Ok(chosen);
            }
            eprintln!("  ✘ choose at least one item with space, then press enter");
        }
    }

    fn tls(&self) -> Result<Option<Tls>> {
        if !self.confirm("Serve TLS (HTTPS) instead of plain TCP?", false)? {
            return Ok(None);
        }
        loop {
            let cert = self.parsed("Certificate chain (PEM file)", None, check::readable_file)?;
            let key = self.parsed("Private key (PEM file)", None, check::readable_file)?;
            let client_ca = self.parsed(
                "CA bundle for client certificates, for mutual TLS (empty: none)",
                Some(""),
                |text| match text.trim() {
                    "" => Ok(None),
                    path => check::readable_file(path).map(Some),
                },
            )?;
            let require_client_cert = client_ca.is_some()
                && self.confirm("Refuse clients without a certificate?", true)?;
            let tls = Tls {
                cert,
                key,
                client_ca,
                require_client_cert,
            };
            match crate::tls::server_config(&settings(&tls)) {
                Ok(_) => return Ok(Some(tls)),
                Err(errors) => {
                    for error in errors {
                        eprintln!("  ✘ {}: {}", error.location, error.what);
                    }
                    eprintln!("  the TLS files do not work together; please give them again");
                }
            }
        }
    }

    fn auth(&self) -> Result<Auth> {
        let kind = self.select(
            "How do clients authenticate?",
            &[
                "none: anyone who can reach the port has full access",
                "shared secret: one bearer token, role admin",
                "per-token roles: a generated bearer token for each role",
            ],
            2,
        )?;
        match kind {
            0 => Ok(Auth::None),
            1 => {
                let in_env = self.secret_in_env()?;
                Ok(Auth::Shared(self.secret(
                    "DOCKER_PROXY_SECRET",
                    in_env,
                    &[],
                )?))
            }
            _ => self.tokens(),
        }
    }

    fn secret_in_env(&self) -> Result<bool> {
        let place = self.select(
            "Where should secrets live?",
            &[
                "in the environment: the file holds ${NAME} (recommended)",
                "written into the config file itself",
            ],
            0,
        )?;
        Ok(place == 0)
    }

    /// One secret: a generated value behind `${NAME}`, or a literal.
    fn secret(&self, default_name: &str, in_env: bool, taken: &[String]) -> Result<Secret> {
        if in_env {
            let name = self.parsed(
                "Environment variable holding it",
                Some(default_name),
                |text| {
                    let name = check::env_name(text)?;
                    if taken.contains(&name) {
                        return Err(format!("{name} is already used for another token"));
                    }
                    Ok(name)
                },
            )?;
            return Ok(Secret::Env {
                name,
                value: generate_token(),
            });
        }
        let typed = self.parsed(
            "Secret (empty: generate one)",
            Some(""),
            |text| match text {
                "" => Ok(String::new()),
                text => check::literal_secret(text),
            },
        )?;
        Ok(Secret::Literal(if typed.is_empty() {
            generate_token()
        } else {
            typed
        }))
    }

    fn tokens(&self) -> Result<Auth> {
        let in_env = self.secret_in_env()?;
        let mut tokens: Vec<Token> = Vec::new();
        loop {
            let suggested = ["admin", "readonly"]
                .get(tokens.len())
                .copied()
                .unwrap_or("ci");
            let role = self.parsed(
                &format!(
                    "Role of token {} (admin may do everything)",
                    tokens.len() + 1
                ),
                Some(suggested),
                |text| check::word(text, "role"),
            )?;
            let name = self.parsed("Name shown in logs for this token", Some(&role), |text| {
                check::word(text, "name")
            })?;
            let default_var = format!("DOCKER_PROXY_{}_TOKEN", env_part(&name));
            let taken: Vec<String> = tokens
                .iter()
                .filter_map(|t| match &t.secret {
                    Secret::Env { name, .. } => Some(name.clone()),
                    Secret::Literal(_) => None,
                })
                .collect();
            let secret = self.secret(&default_var, in_env, &taken)?;
            tokens.push(Token { role, name, secret });
            if !self.confirm("Add another token?", tokens.len() < 2)? {
                return Ok(Auth::Tokens(tokens));
            }
        }
    }

    fn templates(&self, roles: &[String]) -> Result<Vec<Template>> {
        // Role-based access needs roles to tell apart: only with tokens.
        let offered: Vec<usize> = (0..templates::KINDS.len())
            .filter(|&i| i != 3 || roles.len() > 1)
            .collect();
        let labels: Vec<&str> = offered.iter().map(|&i| templates::KINDS[i]).collect();
        let chosen = self.pick("Rule templates to add", &labels, false)?;
        let exempt = roles.iter().any(|r| r == "admin");
        let mut out = Vec::new();
        for kind in chosen.into_iter().map(|i| offered[i]) {
            out.push(self.template(kind, roles, exempt)?);
        }
        Ok(out)
    }

    fn template(&self, kind: usize, roles: &[String], has_admin: bool) -> Result<Template> {
        let labels = |table: &[(&'static str, &'static str)]| -> Vec<&'static str> {
            table.iter().map(|(label, _)| *label).collect()
        };
        let exempt_admin = |ask: &Self| -> Result<bool> {
            Ok(has_admin && ask.confirm("Let the admin role through anyway?", true)?)
        };
        Ok(match kind {
            0 => Template::BlockEndpoints {
                endpoints: self.pick("Endpoints to block", &labels(templates::ENDPOINTS), true)?,
                exempt_admin: exempt_admin(self)?,
            },
            1 => Template::ReadOnly {
                resources: self.pick(
                    "Resources to make read-only",
                    &labels(templates::RESOURCES),
                    true,
                )?,
                exempt_admin: exempt_admin(self)?,
            },
            2 => Template::BodyInspection {
                checks: self.pick(
                    "Refuse container requests with",
                    templates::BODY_CHECKS,
                    true,
                )?,
            },
            3 => {
                let others: Vec<&str> = roles
                    .iter()
                    .map(String::as_str)
                    .filter(|r| *r != "admin")
                    .collect();
                let picked = self.pick("Roles that may only read (GET/HEAD)", &others, false)?;
                Template::RoleAccess {
                    read_only_roles: picked.into_iter().map(|i| others[i].to_owned()).collect(),
                    exec_admin_only: self
                        .confirm("Reserve docker exec for the admin role?", true)?,
                }
            }
            4 => Template::IpFilter {
                allowed: self.parsed(
                    "Client addresses allowed (comma-separated IPs or CIDRs)",
                    Some("127.0.0.1, ::1"),
                    check::address_list,
                )?,
            },
            5 => {
                let redactions: Vec<&str> = templates::REDACTIONS.iter().map(|r| r.0).collect();
                Template::Redaction {
                    redactions: self.pick("Redact", &redactions, true)?,
                }
            }
            _ => self.rate_limit()?,
        })
    }

    fn rate_limit(&self) -> Result<Template> {
        let scopes: Vec<&str> = templates::RATE_SCOPES.iter().map(|s| s.0).collect();
        let scope = self.select("Rate-limit what", &scopes, 0)?;
        let requests = self.parsed(
            "Requests allowed per period, per client address",
            Some("120"),
            |t| {
                check::at_least(t, 1).and_then(|n| u32::try_from(n).map_err(|_| "too large".into()))
            },
        )?;
        let period = self.parsed("Period in seconds", Some("60"), |t| check::at_least(t, 1))?;
        let penalty = self.parsed("Pause after running out, in seconds", Some("30"), |t| {
            check::at_least(t, 0)
        })?;
        Ok(Template::RateLimit {
            scope,
            requests,
            period,
            penalty,
        })
    }

    fn custom_rules(&self) -> Result<Vec<CustomRule>> {
        let mut rules: Vec<CustomRule> = Vec::new();
        while self.confirm("Add a custom rule?", false)? {
            let taken: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
            let name = self.parsed("Rule name", None, |text| check::rule_name(text, &taken))?;
            let action = ["deny", "allow", "require_role"][self.select(
                "Action when all its conditions hold",
                &[
                    "deny",
                    "allow",
                    "require_role (only a given role, or admin)",
                ],
                0,
            )?];
            let role = match action {
                "require_role" => {
                    Some(self.parsed("Role required", Some("admin"), |t| check::word(t, "role"))?)
                }
                _ => None,
            };
            let message = match action {
                "allow" => None,
                _ => Some(self.parsed(
                    "Message shown to refused clients (empty: default)",
                    Some(""),
                    |t| Ok::<_, String>(t.trim().to_owned()),
                )?)
                .filter(|m| !m.is_empty()),
            };
            let priority =
                self.parsed("Priority (higher runs first)", Some("0"), check::priority)?;
            let conditions = self.conditions()?;
            rules.push(CustomRule {
                name,
                action: action.into(),
                role,
                message,
                priority,
                conditions,
            });
        }
        Ok(rules)
    }

    fn conditions(&self) -> Result<Vec<Condition>> {
        let mut conditions = Vec::new();
        loop {
            eprintln!(
                "  condition {} (all conditions of a rule must hold)",
                conditions.len() + 1
            );
            if let Some(condition) = self.condition()? {
                conditions.push(condition);
                if !self.confirm("Add another condition to this rule?", false)? {
                    return Ok(conditions);
                }
            }
        }
    }

    /// One condition; `None` when the operator asked to start it over.
    fn condition(&self) -> Result<Option<Condition>> {
        let field = match self.select("Field", FIELDS, 0)? {
            3 => format!(
                "header.{}",
                self.parsed("Header name", None, |t| check::word(t, "header name"))?
            ),
            4 => format!(
                "query.{}",
                self.parsed("Query parameter", None, |t| check::word(
                    t,
                    "parameter name"
                ))?
            ),
            5 => format!(
                "body.{}",
                self.parsed(
                    "Body field (dot path, e.g. HostConfig.Privileged)",
                    None,
                    |t| { check::word(t, "field path") }
                )?
            ),
            index => FIELDS[index].to_owned(),
        };
        let operator = OPERATORS[self.select("Operator", OPERATORS, 0)?].to_owned();
        if !check::takes_value(&operator) {
            let condition = Condition {
                field,
                operator,
                value: Value::None,
            };
            return match check::condition(&condition) {
                Ok(()) => Ok(Some(condition)),
                Err(message) => {
                    eprintln!("  ✘ {message}");
                    Ok(None)
                }
            };
        }
        let hint = match operator.as_str() {
            "in" | "not_in" => "Values, comma-separated (empty: start this condition over)",
            "matches" | "not_matches" => "Regular expression (empty: start this condition over)",
            _ => "Value (empty: start this condition over)",
        };
        let text = self.parsed(hint, Some(""), |text| match text.trim() {
            "" => Ok(String::new()),
            text => check::condition(&Condition {
                field: field.clone(),
                operator: operator.clone(),
                value: check::value(&field, &operator, text),
            })
            .map(|()| text.to_owned()),
        })?;
        if text.is_empty() {
            return Ok(None);
        }
        let value = check::value(&field, &operator, &text);
        Ok(Some(Condition {
            field,
            operator,
            value,
        }))
    }
}

/// `TlsSettings` for checking the files with the proxy's own TLS loader.
pub fn settings(tls: &Tls) -> crate::config::TlsSettings {
    crate::config::TlsSettings {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        client_ca: tls.client_ca.clone(),
        require_client_cert: tls.require_client_cert,
    }
}

/// Upper-case `text` into something usable inside a variable name.
fn env_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
