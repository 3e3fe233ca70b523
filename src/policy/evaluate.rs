//! Evaluation of a compiled [`Policy`] against one request (SPEC §4).
//!
//! Rules run in evaluation order. deny/allow/require_role stop; rate_limit
//! takes a token and continues unless refused; response_filter rules
//! accumulate, including those after the rule that stopped. A `dry_run`
//! rule records where it would refuse and never stops evaluation (also not
//! when a dry-run require_role would let the caller through), so a dry-run
//! rule cannot change what is enforced.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use super::condition::{all, BodyView, Tri};
use super::{
    Action, Decision, JsonBody, Policy, Request, ResponseFilter, Rule, Verdict, ADMIN_ROLE,
};
use crate::config::DefaultAction;

/// How token buckets are used while evaluating.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Buckets {
    Take,
    Peek,
}

impl Policy {
    /// True when some rule's outcome may depend on the request body.
    ///
    /// Body conditions count as unknown; a rule whose other conditions
    /// already fail does not need the body. Rules after one that certainly
    /// stops evaluation only matter when they are response filters. Rules
    /// after the last one with a body condition cannot need the body, so
    /// they are not evaluated here (a GET to a policy whose body rules come
    /// first costs a few comparisons, not a second pass).
    pub fn needs_body(&self, req: &Request) -> bool {
        let mut stopped = false;
        for rule in &self.rules[..self.body_scan] {
            let is_filter = matches!(rule.action, Action::ResponseFilter(_));
            if stopped && !is_filter {
                continue;
            }
            match all(&rule.conditions, req, BodyView::Unknown) {
                Tri::Unknown => return true,
                Tri::True if rule.stops() => stopped = true,
                _ => {}
            }
        }
        false
    }

    /// Evaluate; takes rate-limit tokens. `body` is the parsed body when
    /// [`Policy::needs_body`] said so, else `None` (body fields absent).
    pub fn evaluate(&self, req: &Request, body: Option<&JsonBody>, now: Instant) -> Decision {
        self.run(req, body, now, Buckets::Take, None)
    }

    /// Evaluate without taking tokens and describe, rule by rule, what
    /// matched, the decision and the response filters that would apply.
    pub fn explain(&self, req: &Request, body: Option<&JsonBody>) -> (Decision, String) {
        let mut trace = String::new();
        let decision = self.run(req, body, Instant::now(), Buckets::Peek, Some(&mut trace));
        let _ = match (&decision.verdict, &decision.rule) {
            (Verdict::Allow, Some(rule)) => writeln!(trace, "decision: allow (rule \"{rule}\")"),
            (Verdict::Allow, None) => writeln!(trace, "decision: allow (default_action)"),
            (
                Verdict::Deny {
                    status, message, ..
                },
                rule,
            ) => writeln!(
                trace,
                "decision: deny {status} ({}): {message}",
                rule.as_deref()
                    .map_or("default_action".to_owned(), |r| format!("rule \"{r}\""))
            ),
        };
        match &decision.filters {
            Some(filters) => {
                for entry in filters.entries() {
                    let _ = writeln!(trace, "response filter: {} {:?}", entry.field, entry.action);
                }
            }
            None => trace.push_str("response filters: none\n"),
        }
        (decision, trace)
    }

    fn run(
        &self,
        req: &Request,
        body: Option<&JsonBody>,
        now: Instant,
        buckets: Buckets,
        mut trace: Option<&mut String>,
    ) -> Decision {
        let mut decision = Decision {
            verdict: Verdict::Allow,
            rule: None,
            action: None,
            dry_run_hits: Vec::new(),
            filters: None,
        };
        let mut stopped = false;
        for rule in &self.rules {
            let is_filter = matches!(rule.action, Action::ResponseFilter(_));
            if stopped && !is_filter {
                note(&mut trace, rule, "skipped (evaluation already stopped)");
                continue;
            }
            if all(&rule.conditions, req, BodyView::Known(body)) != Tri::True {
                note(&mut trace, rule, "no match");
                continue;
            }
            stopped = self.apply(rule, req, now, buckets, &mut decision, &mut trace);
        }
        if decision.rule.is_none() && !stopped {
            decision.verdict = match self.default_action {
                DefaultAction::Allow => Verdict::Allow,
                DefaultAction::Deny => Verdict::Deny {
                    status: 403,
                    message: "request denied: no policy rule allows it (default_action: deny)"
                        .into(),
                    retry_after: None,
                },
            };
        }
        decision
    }

    /// Apply one matching rule; true when evaluation stops.
    fn apply(
        &self,
        rule: &Rule,
        req: &Request,
        now: Instant,
        buckets: Buckets,
        decision: &mut Decision,
        trace: &mut Option<&mut String>,
    ) -> bool {
        let refusal = match &rule.action {
            Action::ResponseFilter(filter) => {
                accumulate(&mut decision.filters, filter);
                note(trace, rule, "match: response filters added");
                return false;
            }
            Action::Allow => None,
            Action::Deny => Some(None),
            Action::RequireRole(role) => {
                let caller = req.role.unwrap_or("");
                (caller != ADMIN_ROLE && caller != role).then_some(None)
            }
            Action::RateLimit(limit) => {
                let result = match buckets {
                    Buckets::Take => self.limits.take(&rule.name, req.client_ip, limit, now),
                    Buckets::Peek => self.limits.peek(&rule.name, req.client_ip, limit, now),
                };
                match result {
                    Ok(()) => {
                        note(trace, rule, "match: token available, continuing");
                        return false;
                    }
                    Err(retry_after) => Some(Some(retry_after)),
                }
            }
        };

        if rule.dry_run {
            if refusal.is_some() {
                decision
                    .dry_run_hits
                    .push((rule.name.clone(), rule.action.name(), rule.status));
                note(trace, rule, "match: would refuse (dry_run), continuing");
            } else {
                note(trace, rule, "match: would pass (dry_run), continuing");
            }
            return false;
        }
        decision.rule = Some(rule.name.clone());
        decision.action = Some(rule.action.name());
        decision.verdict = match refusal {
            None => Verdict::Allow,
            Some(retry_after) => Verdict::Deny {
                status: rule.status,
                message: rule.message.clone(),
                retry_after,
            },
        };
        note(
            trace,
            rule,
            match decision.verdict {
                Verdict::Allow => "match: allow, evaluation stops",
                Verdict::Deny { .. } => "match: refuse, evaluation stops",
            },
        );
        true
    }
}

impl Rule {
    /// True when a match of this rule certainly ends evaluation.
    fn stops(&self) -> bool {
        !self.dry_run
            && matches!(
                self.action,
                Action::Deny | Action::Allow | Action::RequireRole(_)
            )
    }
}

fn accumulate(slot: &mut Option<Arc<ResponseFilter>>, filter: &Arc<ResponseFilter>) {
    match slot {
        None => *slot = Some(filter.clone()),
        Some(existing) => Arc::make_mut(existing).merge(filter),
    }
}

fn note(trace: &mut Option<&mut String>, rule: &Rule, what: &str) {
    if let Some(trace) = trace {
        let _ = writeln!(
            trace,
            "rule \"{}\" ({}{}): {what}",
            rule.name,
            rule.action.name(),
            if rule.dry_run { ", dry_run" } else { "" }
        );
    }
}

/// Paths whose responses are never JSON (streams, archives, plain text).
const NON_JSON_PATHS: &[&str] = &[
    "/containers/x/logs",
    "/containers/x/attach",
    "/containers/x/attach/ws",
    "/containers/x/export",
    "/containers/x/archive",
    "/exec/x/start",
    "/images/get",
    "/images/x/get",
    "/_ping",
    "/session",
    "/grpc",
    "/build",
];

/// Paths with JSON responses, to avoid flagging a pattern that also hits them.
const JSON_PATHS: &[&str] = &[
    "/containers/json",
    "/containers/x/json",
    "/images/json",
    "/images/x/json",
    "/info",
    "/version",
    "/networks",
    "/volumes",
    "/events",
    "/containers/x/stats",
    "/exec/x/json",
];

impl Policy {
    /// Rules in evaluation order, one line each, for `--check-config`.
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let conditions: Vec<String> =
                    rule.conditions.iter().map(|c| c.describe()).collect();
                let when = if conditions.is_empty() {
                    "always".to_owned()
                } else {
                    conditions.join(" AND ")
                };
                let body = rule.conditions.iter().any(|c| c.uses_body());
                let mut line = format!(
                    "{}. {} [priority {}] {}{}{}",
                    index + 1,
                    rule.name,
                    rule.priority,
                    rule.action.name(),
                    if rule.dry_run { " (dry_run)" } else { "" },
                    if body { " [reads body]" } else { "" }
                );
                if let Some(description) = &rule.description {
                    let _ = write!(line, " - {description}");
                }
                let _ = write!(line, "\n     when {when}");
                line
            })
            .collect()
    }

    /// Problems that do not stop loading but probably are mistakes.
    pub fn lint(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut shadow: Option<&Rule> = None;
        for rule in &self.rules {
            let is_filter = matches!(rule.action, Action::ResponseFilter(_));
            if let (Some(earlier), false) = (shadow, is_filter) {
                warnings.push(format!(
                    "rule \"{}\" can never match: the earlier rule \"{}\" \
                    ({}) has no conditions and always stops evaluation first",
                    rule.name,
                    earlier.name,
                    earlier.action.name()
                ));
            }
            if shadow.is_none() && rule.stops() && rule.conditions.is_empty() {
                shadow = Some(rule);
            }
            if is_filter {
                warnings.extend(lint_filter_path(rule));
            }
        }
        warnings
    }
}

fn lint_filter_path(rule: &Rule) -> Option<String> {
    let mut leaves = Vec::new();
    rule.conditions
        .iter()
        .for_each(|node| node.leaves(&mut leaves));
    for leaf in leaves {
        let Some((operator, literal)) = leaf.path_literal() else {
            continue;
        };
        let hits = |path: &str| match operator {
            "equals" => normalise(literal) == path,
            "ends_with" => path.ends_with(&normalise(literal)),
            _ => regex::Regex::new(literal).is_ok_and(|re| re.is_match(path)),
        };
        let non_json = NON_JSON_PATHS.iter().any(|p| hits(p));
        let json = JSON_PATHS.iter().any(|p| hits(p));
        if non_json && !json {
            return Some(format!(
                "response_filter rule \"{}\" matches a path that never returns \
                JSON ({}); its filters will not apply there",
                rule.name, leaf.text
            ));
        }
    }
    None
}

/// Replace id-like segments by `x` so literals compare with the samples.
fn normalise(path: &str) -> String {
    let keep = [
        "containers",
        "images",
        "exec",
        "logs",
        "attach",
        "export",
        "archive",
        "start",
        "get",
        "json",
        "ws",
        "_ping",
        "session",
        "grpc",
        "build",
        "networks",
        "volumes",
        "info",
        "version",
        "events",
        "stats",
    ];
    path.split('/')
        .map(|s| {
            if s.is_empty() || keep.contains(&s) {
                s
            } else {
                "x"
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
