//! The wizard's answers as plain data, and how they become a config file.
//!
//! [`Answers`] is filled by `ask` and turned into YAML by [`Answers::render`];
//! the rules for each template come from `templates`. Nothing here prompts or
//! touches files, so the unit tests can render every combination and check it
//! with the real loader.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::render::{to_yaml, Node};
use super::templates::Template;

/// Where a secret ends up in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written as `${name}`; `value` is what the operator must export.
    Env { name: String, value: String },
    /// Written into the file itself (the operator insisted).
    Literal(String),
}

impl Secret {
    fn node(&self) -> Node {
        match self {
            Secret::Env { name, .. } => Node::env(name),
            Secret::Literal(value) => Node::str(value.clone()),
        }
    }
}

/// One bearer token with its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub role: String,
    /// Shown in logs and audit records instead of the token.
    pub name: String,
    pub secret: Secret,
}

/// How clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No authentication (`auth.type: none`).
    None,
    /// One shared bearer token with role admin.
    Shared(Secret),
    /// Several tokens, each with a role.
    Tokens(Vec<Token>),
}

/// `global.tls` as answered; the files were checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
}

/// The value of a custom condition, typed as the loader compares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `exists` / `not_exists`: no value.
    None,
    Text(String),
    /// A YAML boolean or number, written verbatim (body fields only).
    Typed(String),
    /// For `in` / `not_in`.
    List(Vec<Value>),
}

/// One custom condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub operator: String,
    pub value: Value,
}

impl Condition {
    pub fn node(&self) -> Node {
        let mut entries = vec![
            ("field", Node::str(self.field.clone())),
            ("operator", Node::str(self.operator.clone())),
        ];
        if self.value != Value::None {
            entries.push(("value", value_node(&self.value)));
        }
        Node::Map(entries)
    }
}

fn value_node(value: &Value) -> Node {
    match value {
        Value::None => Node::Raw("null".into()),
        Value::Text(text) => Node::str(text.clone()),
        Value::Typed(raw) => Node::Raw(raw.clone()),
        Value::List(items) => Node::List(items.iter().map(value_node).collect()),
    }
}

/// A rule built condition by condition.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomRule {
    pub name: String,
    /// `deny`, `allow` or `require_role`.
    pub action: String,
    /// For `require_role`.
    pub role: Option<String>,
    pub message: Option<String>,
    pub priority: i64,
    pub conditions: Vec<Condition>,
}

impl CustomRule {
    pub fn node(&self) -> Node {
        let mut entries = vec![
            ("name", Node::str(self.name.clone())),
            ("action", Node::str(self.action.clone())),
        ];
        if let Some(role) = &self.role {
            entries.push(("role", Node::str(role.clone())));
        }
        if let Some(message) = &self.message {
            entries.push(("message", Node::str(message.clone())));
        }
        if self.priority != 0 {
            entries.push(("priority", Node::Raw(self.priority.to_string())));
        }
        entries.push((
            "conditions",
            Node::List(self.conditions.iter().map(Condition::node).collect()),
        ));
        Node::Map(entries)
    }
}

/// Everything the wizard asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub port: u16,
    pub bind: IpAddr,
    /// `None`: auto-detect at start.
    pub socket: Option<PathBuf>,
    pub tls: Option<Tls>,
    pub auth: Auth,
    /// `allow` or `deny`.
    pub default_action: String,
    pub audit_log: Option<String>,
    pub templates: Vec<Template>,
    pub custom: Vec<CustomRule>,
}

impl Answers {
    /// Environment variables the file references, with their values.
    pub fn env(&self) -> BTreeMap<String, String> {
        let secrets: Vec<&Secret> = match &self.auth {
            Auth::None => Vec::new(),
            Auth::Shared(secret) => vec![secret],
            Auth::Tokens(tokens) => tokens.iter().map(|t| &t.secret).collect(),
        };
        secrets
            .into_iter()
            .filter_map(|secret| match secret {
                Secret::Env { name, value } => Some((name.clone(), value.clone())),
                Secret::Literal(_) => None,
            })
            .collect()
    }

    /// Roles that tokens carry (empty unless per-token auth).
    pub fn roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        if let Auth::Tokens(tokens) = &self.auth {
            for token in tokens {
                if !roles.contains(&token.role) {
                    roles.push(token.role.clone());
                }
            }
        }
        roles
    }

    /// The config file text.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# docker-api-proxy configuration written by `docker-api-proxy setup`.\n\
             # Check it with: docker-api-proxy --check-config --config THIS_FILE\n",
        );
        let env = self.env();
        if !env.is_empty() {
            text.push_str("# Secrets are read from the environment: ");
            text.push_str(&env.keys().cloned().collect::<Vec<_>>().join(", "));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&to_yaml(&Node::map([("global", self.global())])));
        text.push('\n');
        text.push_str(&to_yaml(&Node::map([("auth", self.auth_node())])));
        let rules = self.rules();
        if !rules.is_empty() {
            text.push('\n');
            text.push_str(&to_yaml(&Node::map([("rules", Node::List(rules))])));
        }
        text
    }

    fn global(&self) -> Node {
        let mut entries = vec![
            ("port", Node::Raw(self.port.to_string())),
            ("bind", Node::str(self.bind.to_string())),
        ];
        if let Some(socket) = &self.socket {
            entries.push(("socket", Node::str(socket.display().to_string())));
        }
        if let Some(audit) = &self.audit_log {
            entries.push(("audit_log", Node::str(audit.clone())));
        }
        entries.push(("default_action", Node::str(self.default_action.clone())));
        if let Some(tls) = &self.tls {
            let mut tls_entries = vec![
                ("cert", Node::str(tls.cert.display().to_string())),
                ("key", Node::str(tls.key.display().to_string())),
            ];
            if let Some(ca) = &tls.client_ca {
                tls_entries.push(("client_ca", Node::str(ca.display().to_string())));
                tls_entries.push((
                    "require_client_cert",
                    Node::Raw(tls.require_client_cert.to_string()),
                ));
            }
            entries.push(("tls", Node::Map(tls_entries)));
        }
        Node::Map(entries)
    }

    fn auth_node(&self) -> Node {
        match &self.auth {
            Auth::None => Node::map([("type", Node::str("none"))]),
            Auth::Shared(secret) => {
                Node::map([("type", Node::str("bearer")), ("secret", secret.node())])
            }
            Auth::Tokens(tokens) => {
                let list = tokens
                    .iter()
                    .map(|token| {
                        Node::map([
                            ("token", token.secret.node()),
                            ("role", Node::str(token.role.clone())),
                            ("name", Node::str(token.name.clone())),
                        ])
                    })
                    .collect();
                Node::map([("type", Node::str("bearer")), ("tokens", Node::List(list))])
            }
        }
    }

    fn rules(&self) -> Vec<Node> {
        let mut rules: Vec<Node> = self.templates.iter().flat_map(Template::rules).collect();
        rules.extend(self.custom.iter().map(CustomRule::node));
        rules
    }
}
