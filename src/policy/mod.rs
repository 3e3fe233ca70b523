//! The policy: rules compiled once, evaluated for every request.
//!
//! [`Policy::compile`] is called by `crate::config` with the `rules` section
//! and the shared [`RateLimitState`]; the result is immutable and sits in the
//! configuration snapshot. The HTTP layer canonicalises the request, builds
//! a [`Request`], asks [`Policy::needs_body`], reads and parses the body
//! ([`JsonBody`]) only if so, then calls [`Policy::evaluate`] and obeys the
//! [`Decision`], applying [`ResponseFilter`] to JSON responses.
//!
//! How requests are seen by rules, and why, is in `docs/policy.md`.

mod body;
mod compile;
mod condition;
mod evaluate;
mod filter;
mod ratelimit;
mod repeated;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

pub use body::{BodyError, JsonBody};
pub use filter::{FilterAction, FilterEntry, ResponseFilter, REDACTED};
pub use ratelimit::{RateLimit, RateLimitState};
pub use repeated::RepeatedField;

use crate::config::DefaultAction;
use condition::Node;
use repeated::RepeatGuard;

/// The compiled, immutable rule set.
#[derive(Debug)]
pub struct Policy {
    /// Rules in evaluation order: descending priority, then file order.
    rules: Vec<Rule>,
    /// Number of leading rules that [`Policy::needs_body`] must look at:
    /// up to and including the last rule with a body condition (0: none).
    body_scan: usize,
    /// Query and header names some condition reads, for
    /// [`Policy::check_repeats`].
    repeats: RepeatGuard,
    default_action: DefaultAction,
    limits: Arc<RateLimitState>,
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    name: Arc<str>,
    description: Option<String>,
    action: Action,
    conditions: Vec<Node>,
    priority: i64,
    dry_run: bool,
    status: u16,
    message: String,
}

/// What a rule does when its conditions hold.
#[derive(Debug)]
pub(crate) enum Action {
    Deny,
    Allow,
    RequireRole(String),
    RateLimit(RateLimit),
    ResponseFilter(Arc<ResponseFilter>),
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Allow => "allow",
            Action::RequireRole(_) => "require_role",
            Action::RateLimit(_) => "rate_limit",
            Action::ResponseFilter(_) => "response_filter",
        }
    }
}

/// What the policy sees of one request (built by the HTTP layer).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method, upper case as received.
    pub method: &'a str,
    /// Canonical path: decoded once, version prefix removed, no query.
    pub path: &'a str,
    /// Version from the path prefix without the `v`, "" if none.
    pub api_version: &'a str,
    /// Raw query string without `?`, may be "".
    pub query: &'a str,
    /// Headers as received: name, value bytes.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// TCP peer, with IPv4-mapped IPv6 already turned into IPv4.
    pub client_ip: IpAddr,
    /// Authenticated role, if any.
    pub role: Option<&'a str>,
}

/// Whether the request goes to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse with this status and `{"message": message}`.
    Deny {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
}

/// The result of evaluating one request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Forward or refuse.
    pub verdict: Verdict,
    /// Rule that decided; `None` means `global.default_action`.
    pub rule: Option<Arc<str>>,
    /// That rule's action: "deny", "allow", "require_role" or "rate_limit".
    pub action: Option<&'static str>,
    /// Dry-run rules that would have refused: name, action, and the status
    /// they would have answered with.
    pub dry_run_hits: Vec<(Arc<str>, &'static str, u16)>,
    /// Accumulated response filters of every matching response_filter rule.
    pub filters: Option<Arc<ResponseFilter>>,
}

/// The role that passes every `require_role`.
pub const ADMIN_ROLE: &str = "admin";

impl Policy {
    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The bucket state this policy takes tokens from; pass it to the next
    /// compile so rate limits survive a reload.
    pub fn rate_limit_state(&self) -> &Arc<RateLimitState> {
        &self.limits
    }

    /// What happens when no rule stops evaluation.
    pub fn default_action(&self) -> DefaultAction {
        self.default_action
    }

    /// Drop idle rate-limit buckets; call about every 60 s.
    pub fn sweep(&self, now: std::time::Instant) {
        self.limits.sweep(now);
    }
}
