//! Turning the `rules` section into a [`Policy`], reporting every error.
//!
//! Each rule is first read into [`crate::config::raw::RawRule`] (typed,
//! unknown keys refused), then checked for meaning: required keys, a known
//! action, keys that belong to another action, `dry_run` where it cannot
//! apply, unique names; conditions and filters compile with their own
//! locations (`rules[3].conditions[1].operator`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::condition::ConditionCompiler;
use super::repeated::RepeatGuard;
use super::{
    Action, FilterAction, FilterEntry, Policy, RateLimit, RateLimitState, ResponseFilter, Rule,
    ADMIN_ROLE,
};
use crate::config::raw::{self, RawFilter, RawRateLimit, RawRule};
use crate::config::{kind, suggest, ConfigError, DefaultAction};

const ACTIONS: &[&str] = &[
    "deny",
    "allow",
    "require_role",
    "rate_limit",
    "response_filter",
];
/// Longest rate-limit period or penalty accepted, in seconds (one year).
const MAX_SECONDS: u64 = 365 * 24 * 3600;
const FILTER_ACTIONS: &[&str] = &["redact", "remove", "replace"];

impl Policy {
    /// Compile the `rules` section (`None` or null: no rules).
    ///
    /// `limits` is the process-wide bucket state: pass the previous
    /// policy's [`Policy::rate_limit_state`] on reload so clients do not get
    /// fresh buckets by waiting for a SIGHUP.
    pub fn compile(
        rules: Option<&Value>,
        default_action: DefaultAction,
        limits: Arc<RateLimitState>,
    ) -> Result<Policy, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let items: &[Value] = match rules {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                errors.push(ConfigError::new(
                    "rules",
                    format!("expected a list of rules, found {}", kind(other)),
                    "rules are evaluated as an ordered list",
                    "write each rule as a list item starting with \"- name: ...\"",
                ));
                &[]
            }
        };

        let mut compiled = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let location = format!("rules[{index}]");
            let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
            if !name.is_empty() {
                if let Some(first) = names.insert(name.to_owned(), index) {
                    errors.push(ConfigError::new(
                        format!("{location}.name"),
                        format!("rule name \"{name}\" is already used by rules[{first}]"),
                        "names identify rules in logs, audit records, metrics and rate limits",
                        "give every rule a unique name",
                    ));
                    names.insert(name.to_owned(), first);
                }
            }
            let Some(rule) = compile_rule(item, &location, &mut errors) else {
                continue;
            };
            compiled.push(rule);
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        compiled.sort_by_key(|rule| std::cmp::Reverse(rule.priority));
        let body_scan = compiled
            .iter()
            .rposition(|rule| rule.conditions.iter().any(|c| c.uses_body()))
            .map_or(0, |last| last + 1);
        let repeats = RepeatGuard::collect(&compiled);
        Ok(Policy {
            rules: compiled,
            body_scan,
            repeats,
            default_action,
            limits,
        })
    }
}

fn compile_rule(value: &Value, location: &str, errors: &mut Vec<ConfigError>) -> Option<Rule> {
    let before = errors.len();
    if let Some(limit) = value.get("rate_limit") {
        raw::section::<RawRateLimit>(
            limit,
            &format!("{location}.rate_limit"),
            raw::RATE_LIMIT_KEYS,
            &[],
            errors,
        );
    }
    let raw: Option<RawRule> =
        raw::section(value, location, raw::RULE_KEYS, &["rate_limit"], errors);
    let raw = raw?;

    let name = required(
        raw.name.as_deref(),
        &format!("{location}.name"),
        "name",
        errors,
    );
    let action_name = required(
        raw.action.as_deref(),
        &format!("{location}.action"),
        "action",
        errors,
    );
    let conditions = match &raw.conditions {
        Some(list) => ConditionCompiler { errors }.list(list, &format!("{location}.conditions")),
        None => Vec::new(),
    };
    let (name, action_name) = (name?, action_name?);
    let name: Arc<str> = name.into();

    let action = compile_action(&raw, action_name, &name, location, errors);
    if ACTIONS.contains(&action_name) {
        check_misplaced(&raw, action_name, location, errors);
    }
    let dry_run = raw.dry_run.unwrap_or(false);
    if dry_run && matches!(action_name, "allow" | "response_filter") {
        errors.push(ConfigError::new(
            format!("{location}.dry_run"),
            format!("dry_run cannot be used with action \"{action_name}\""),
            "dry_run records what a refusing rule would have refused; allow and \
             response_filter never refuse",
            "remove \"dry_run: true\" from this rule",
        ));
    }
    let status = compile_status(raw.status, action_name, location, errors);
    let action = action?;
    if errors.len() > before {
        return None;
    }

    let message = raw
        .message
        .clone()
        .unwrap_or_else(|| default_message(&name, &action));
    Some(Rule {
        name,
        description: raw.description.clone(),
        action,
        conditions,
        priority: raw.priority.unwrap_or(0),
        dry_run,
        status,
        message,
    })
}

fn required<'a>(
    value: Option<&'a str>,
    location: &str,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'a str> {
    match value {
        Some(text) if !text.trim().is_empty() => Some(text),
        _ => {
            errors.push(ConfigError::new(
                location,
                format!("missing \"{key}\""),
                format!("every rule needs a {key}"),
                match key {
                    "name" => "add \"name: some-unique-name\"".to_owned(),
                    _ => format!("add \"action:\" with one of: {}", ACTIONS.join(", ")),
                },
            ));
            None
        }
    }
}

fn compile_action(
    raw: &RawRule,
    action: &str,
    name: &Arc<str>,
    location: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Action> {
    match action {
        "deny" => Some(Action::Deny),
        "allow" => Some(Action::Allow),
        "require_role" => {
            let role = raw.role.clone().unwrap_or_else(|| ADMIN_ROLE.to_owned());
            Some(Action::RequireRole(role))
        }
        "rate_limit" => {
            compile_rate_limit(raw.rate_limit.as_ref(), location, errors).map(Action::RateLimit)
        }
        "response_filter" => {
            compile_filters(raw.response_filter.as_deref(), name, location, errors)
        }
        other => {
            let listing = ACTIONS.join(", ");
            let fix = match suggest(other, ACTIONS) {
                Some(hint) => format!("did you mean \"{hint}\"? (actions: {listing})"),
                None => format!("use one of the actions: {listing}"),
            };
            errors.push(ConfigError::new(
                format!("{location}.action"),
                format!("\"{other}\" is not an action"),
                "the proxy cannot enforce a rule whose effect it does not know",
                fix,
            ));
            None
        }
    }
}

fn compile_rate_limit(
    raw: Option<&RawRateLimit>,
    location: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<RateLimit> {
    let location = format!("{location}.rate_limit");
    let Some(raw) = raw else {
        errors.push(ConfigError::new(
            &location,
            "missing \"rate_limit\" settings".into(),
            "a rate_limit rule needs a bucket size and refill period",
            "add \"rate_limit: {requests: 50, period: 30, penalty: 30}\"",
        ));
        return None;
    };
    let mut ok = true;
    for (key, value) in [
        ("requests", raw.requests.map(u64::from)),
        ("period", raw.period),
    ] {
        if value.unwrap_or(0) == 0 {
            errors.push(ConfigError::new(
                format!("{location}.{key}"),
                format!("\"{key}\" is missing or zero"),
                "a bucket with no capacity or no refill period cannot limit anything sensibly",
                format!("set \"{key}\" to a positive integer"),
            ));
            ok = false;
        }
    }
    for (key, value) in [("period", raw.period), ("penalty", raw.penalty)] {
        if value.is_some_and(|seconds| seconds > MAX_SECONDS) {
            errors.push(ConfigError::new(
                format!("{location}.{key}"),
                format!("\"{key}\" is longer than a year"),
                "such a bucket would never refill in practice",
                format!("set \"{key}\" to at most {MAX_SECONDS} seconds"),
            ));
            ok = false;
        }
    }
    ok.then(|| RateLimit {
        requests: raw.requests.unwrap_or(1),
        period: raw.period.unwrap_or(1),
        penalty: raw.penalty.unwrap_or(0),
    })
}

fn compile_filters(
    raw: Option<&[Value]>,
    name: &Arc<str>,
    location: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Action> {
    let location = format!("{location}.response_filter");
    let items = match raw {
        Some(items) if !items.is_empty() => items,
        _ => {
            errors.push(ConfigError::new(
                &location,
                "missing or empty \"response_filter\"".into(),
                "a response_filter rule without filters does nothing",
                "add \"response_filter: [{field: Config.Env, action: redact}]\"",
            ));
            return None;
        }
    };
    let mut entries = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_location = format!("{location}[{index}]");
        if let Some(entry) = compile_filter(item, &item_location, errors) {
            entries.push(entry);
        }
    }
    (entries.len() == items.len())
        .then(|| Action::ResponseFilter(Arc::new(ResponseFilter::new(name.clone(), entries))))
}

fn compile_filter(
    value: &Value,
    location: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<FilterEntry> {
    let raw: RawFilter = raw::section(value, location, raw::FILTER_KEYS, &[], errors)?;
    let has_replacement = value.get("replacement").is_some();
    let field = match raw.field.as_deref() {
        Some(field) if !field.is_empty() && field.split('.').all(|s| !s.is_empty()) => field,
        _ => {
            errors.push(ConfigError::new(
                format!("{location}.field"),
                "missing or malformed \"field\"".into(),
                "a filter must name the response field it changes",
                "write a dot path such as Config.Env (use * for every key)",
            ));
            return None;
        }
    };
    let action = match (raw.action.as_deref(), has_replacement) {
        (Some("redact"), false) => FilterAction::Redact,
        (Some("remove"), false) => FilterAction::Remove,
        (Some("replace"), true) => FilterAction::Replace(raw.replacement.unwrap_or(Value::Null)),
        (Some("replace"), false) => {
            errors.push(ConfigError::new(
                format!("{location}.replacement"),
                "missing \"replacement\" for action replace".into(),
                "replace needs the value to put in place of the field",
                "add \"replacement: ...\" (any YAML value), or use redact",
            ));
            return None;
        }
        (Some("redact" | "remove"), true) => {
            errors.push(ConfigError::new(
                format!("{location}.replacement"),
                "\"replacement\" is only used by action replace".into(),
                "a replacement next to redact/remove suggests replace was meant",
                "remove \"replacement\", or set \"action: replace\"",
            ));
            return None;
        }
        (other, _) => {
            let word = other.unwrap_or("");
            let fix = match suggest(word, FILTER_ACTIONS) {
                Some(hint) => format!(
                    "did you mean \"{hint}\"? (filter actions: redact, \
                                       remove, replace)"
                ),
                None => "use one of the filter actions: redact, remove, replace".into(),
            };
            errors.push(ConfigError::new(
                format!("{location}.action"),
                format!("\"{word}\" is not a filter action"),
                "the proxy cannot apply a filter it does not know",
                fix,
            ));
            return None;
        }
    };
    Some(FilterEntry::new(field, action))
}

fn check_misplaced(raw: &RawRule, action: &str, location: &str, errors: &mut Vec<ConfigError>) {
    let refuses = matches!(action, "deny" | "require_role" | "rate_limit");
    let misplaced = [
        (
            "role",
            raw.role.is_some() && action != "require_role",
            "require_role",
        ),
        (
            "rate_limit",
            raw.rate_limit.is_some() && action != "rate_limit",
            "rate_limit",
        ),
        (
            "response_filter",
            raw.response_filter.is_some() && action != "response_filter",
            "response_filter",
        ),
        (
            "message",
            raw.message.is_some() && !refuses,
            "deny, require_role or rate_limit",
        ),
        (
            "status",
            raw.status.is_some() && !refuses,
            "deny, require_role or rate_limit",
        ),
    ];
    for (key, wrong, owner) in misplaced {
        if wrong {
            errors.push(ConfigError::new(
                format!("{location}.{key}"),
                format!("\"{key}\" has no effect on action \"{action}\""),
                format!("\"{key}\" is only used by {owner}; here it suggests a mistake"),
                format!("remove \"{key}\", or change the action"),
            ));
        }
    }
}

fn compile_status(
    status: Option<u16>,
    action: &str,
    location: &str,
    errors: &mut Vec<ConfigError>,
) -> u16 {
    let default = if action == "rate_limit" { 429 } else { 403 };
    match status {
        None => default,
        Some(code @ 400..=599) => code,
        Some(code) => {
            errors.push(ConfigError::new(
                format!("{location}.status"),
                format!("status {code} is not an error status"),
                "a refusal must reach the client as an error, or it looks like success",
                "use a 4xx or 5xx status, e.g. 403",
            ));
            default
        }
    }
}

fn default_message(name: &str, action: &Action) -> String {
    match action {
        Action::RequireRole(role) => {
            format!("request denied by rule \"{name}\": it requires role \"{role}\"")
        }
        Action::RateLimit(_) => {
            format!("request denied by rule \"{name}\": rate limit exceeded, retry later")
        }
        _ => format!("request denied by rule \"{name}\""),
    }
}
