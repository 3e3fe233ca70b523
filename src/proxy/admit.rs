//! Admission of one request: health endpoints, target checks, and the
//! decision whether and how its body is forwarded.
//!
//! Returns either a response the proxy writes itself or a plan for the
//! body. Authentication and policy evaluation plug in here.

use std::time::Instant;

use std::borrow::Cow;
use std::sync::Arc;

use super::conn::{read_body, BodyReadError, Client, ClientIo};
use super::Worker;
use crate::audit::{Event, Record};
use crate::auth::{AuthOutcome, Identity};
use crate::http::head::{Framing, RequestHead};
use crate::http::response::{json_error, with_body};
use crate::http::target;
use crate::metrics::Mode;
use crate::policy::{JsonBody, Policy, Request, ResponseFilter, Verdict};
use crate::runtime::Snapshot;

/// How the request body reaches the engine.
#[derive(Debug)]
pub enum BodyPlan {
    Empty,
    /// Read whole (for inspection); forwarded with Content-Length.
    Buffered(Vec<u8>),
    /// Streamed: exactly this many bytes.
    Length(u64),
    /// Streamed: chunked, byte for byte.
    Chunked,
}

/// Per-request state that lives until the response is relayed.
#[derive(Debug, Default)]
pub struct RequestContext {
    /// Filters every JSON document of the response goes through.
    pub filters: Option<Arc<ResponseFilter>>,
    /// The request is an attach or exec start, which the engine may answer
    /// with a `200` raw stream without framing that becomes a two-way
    /// stream (a hijack without an upgrade). Any other request never does.
    pub hijack: bool,
}

pub enum Admission {
    /// Write this response; close afterwards when `close`.
    Respond { response: Vec<u8>, close: bool },
    /// Forward the request.
    Forward {
        body: BodyPlan,
        context: RequestContext,
    },
    /// The client went away; nothing to answer.
    Close,
}

fn refuse(status: u16, message: &str, head: &RequestHead) -> Admission {
    // A refused request's body was not read: the connection cannot be
    // reused unless there was none.
    let close = head.framing != Framing::Empty || !head.keep_alive;
    Admission::Respond {
        response: json_error(status, message, &[], close),
        close,
    }
}

pub async fn admit<S: ClientIo>(
    client: &mut Client<S>,
    head: &RequestHead,
    snapshot: &Snapshot,
    worker: &Worker,
) -> Admission {
    worker.count_request();
    if let Some(response) = local_endpoint(head, snapshot, worker) {
        return Admission::Respond {
            response,
            close: !head.keep_alive,
        };
    }
    let target = match target::canonicalize_request(head.method(), head.target()) {
        Ok(target) => target,
        Err(error) => {
            tracing::debug!(client.addr = %client.addr, %error, "refused request target");
            return refuse(400, &error.to_string(), head);
        }
    };
    // One clock reading serves authentication and evaluation.
    let now = Instant::now();
    let identity = match authenticate(client, head, &target.path, snapshot, worker, now) {
        Ok(identity) => identity,
        Err(admission) => return admission,
    };
    let method = upper_case(head.method());
    let headers: Vec<(&str, &[u8])> = head.headers().collect();
    let request = Request {
        method: &method,
        path: &target.path,
        api_version: &target.api_version,
        query: &target.query,
        headers: &headers,
        client_ip: client.addr.ip(),
        role: identity.role.as_deref(),
    };
    if let Err(message) = refuse_before_rules(&snapshot.policy, &request) {
        tracing::debug!(client.addr = %client.addr, %message, "refused before any rule");
        return refuse(400, &message, head);
    }
    let event = AuditEvent {
        client_ip: client.addr.ip(),
        head,
        path: &target.path,
        identity: Some(&identity),
    };

    let mut plan = match head.framing {
        Framing::Empty | Framing::UntilClose => BodyPlan::Empty,
        Framing::Length(n) => BodyPlan::Length(n),
        Framing::Chunked => BodyPlan::Chunked,
    };
    let mut parsed = None;
    if snapshot.policy.needs_body(&request) && head.framing != Framing::Empty {
        let limits = &snapshot.settings.limits;
        let cap = limits.max_inspect_body;
        let bytes = match read_body(client, head.framing, limits, head.expect_continue).await {
            Ok(bytes) => bytes,
            Err(BodyReadError::TooLarge) => {
                let message = format!(
                    "request body is larger than limits.max_inspect_body ({cap} bytes), \
                     which a policy rule must inspect"
                );
                return respond_closing(413, &message);
            }
            Err(BodyReadError::Framing(error)) => return respond_closing(400, &error.to_string()),
            Err(BodyReadError::Closed) => return Admission::Close,
            Err(BodyReadError::TimedOut) => {
                tracing::debug!(client.addr = %client.addr, "inspected request body too slow");
                let message = "request body not received in time (limits.body_timeout in \
                     all, limits.header_timeout between reads); a policy rule inspects it";
                return respond_closing(408, message);
            }
        };
        if !bytes.is_empty() {
            match JsonBody::parse(&bytes) {
                Ok(body) => parsed = Some(body),
                Err(error) => {
                    let message = format!("request body refused: {error}");
                    tracing::debug!(client.addr = %client.addr, %error, "uninspectable body");
                    return respond_closing(400, &message);
                }
            }
        }
        plan = BodyPlan::Buffered(bytes);
    }

    let decision = snapshot.policy.evaluate(&request, parsed.as_ref(), now);
    for (rule, action, status) in &decision.dry_run_hits {
        worker.counters.dry_run();
        worker.counters.rule_decision(rule, Mode::DryRun);
        tracing::info!(
            policy.rule = %rule,
            client.addr = %client.addr,
            http.path = %target.path,
            "dry run: rule would refuse"
        );
        let message = format!("dry run: rule \"{rule}\" would refuse this request");
        event.record(
            snapshot,
            Event::DryRun,
            Some((rule, action)),
            *status,
            true,
            &message,
        );
    }
    match decision.verdict {
        Verdict::Allow => {
            let context = RequestContext {
                filters: decision.filters,
                hijack: method == "POST" && is_hijack_path(&target.path),
            };
            Admission::Forward {
                body: plan,
                context,
            }
        }
        Verdict::Deny {
            status,
            message,
            retry_after,
        } => {
            let rule = decision.rule.as_deref().unwrap_or("default_action");
            let action = decision.action.unwrap_or("default_action");
            if let Some(rule) = &decision.rule {
                worker.counters.rule_decision(rule, Mode::Enforced);
            }
            let kind = if action == "rate_limit" {
                worker.counters.rate_limited();
                Event::RateLimited
            } else {
                worker.counters.denied();
                Event::Deny
            };
            tracing::info!(
                policy.rule = rule,
                decision = action,
                client.addr = %client.addr,
                client.identity = identity.name.as_deref().unwrap_or(""),
                http.method = %method,
                http.path = %target.path,
                "denied by policy"
            );
            event.record(
                snapshot,
                kind,
                Some((rule, action)),
                status,
                false,
                &message,
            );
            let extra: Vec<(&str, String)> = retry_after
                .map(|s| ("Retry-After", s.to_string()))
                .into_iter()
                .collect();
            let unread = !matches!(plan, BodyPlan::Empty | BodyPlan::Buffered(_));
            let close = unread || !head.keep_alive;
            Admission::Respond {
                response: json_error(status, &message, &extra, close),
                close,
            }
        }
    }
}

/// `method` in upper case, copied only when it is not already.
fn upper_case(method: &str) -> Cow<'_, str> {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        method.to_ascii_uppercase().into()
    } else {
        method.into()
    }
}

/// The 400 refusals after authentication and before any rule, shared by
/// the proxy and `explain`: a body the engine could read as a form
/// (`admit_form`), and a field some rule names repeated with different
/// values (`Policy::check_repeats`).
pub fn refuse_before_rules(policy: &Policy, request: &Request) -> Result<(), Cow<'static, str>> {
    super::admit_form::check(request.headers)
        .map_err(|refusal| Cow::Borrowed(refusal.message()))?;
    policy
        .check_repeats(request)
        .map_err(|repeated| Cow::Owned(repeated.to_string()))
}

/// `/containers/{id}/attach` and `/exec/{id}/start`: the endpoints the
/// engine hijacks. `path` has no version prefix.
fn is_hijack_path(path: &str) -> bool {
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("containers"), Some(id), Some("attach"), None) => !id.is_empty(),
        (Some("exec"), Some(id), Some("start"), None) => !id.is_empty(),
        _ => false,
    }
}

fn respond_closing(status: u16, message: &str) -> Admission {
    Admission::Respond {
        response: json_error(status, message, &[], true),
        close: true,
    }
}

/// Authenticates the request; a refusal is counted and audited here.
fn authenticate<S>(
    client: &Client<S>,
    head: &RequestHead,
    path: &str,
    snapshot: &Snapshot,
    worker: &Worker,
    now: Instant,
) -> Result<Identity, Admission> {
    // A malformed request, refused before any credential is looked at:
    // nothing was checked, so it counts toward no lockout.
    let authorization = match crate::auth::single_authorization(head.headers()) {
        Ok(authorization) => authorization,
        Err(message) => {
            tracing::debug!(client.addr = %client.addr, "refused repeated Authorization header");
            return Err(refuse(400, message, head));
        }
    };
    let peer_cert = client.peer_cert.as_deref();
    let outcome = snapshot
        .auth
        .authenticate(client.addr.ip(), authorization, peer_cert, now);
    let event = AuditEvent {
        client_ip: client.addr.ip(),
        head,
        path,
        identity: None,
    };
    match outcome {
        AuthOutcome::Ok(identity) => Ok(identity),
        AuthOutcome::Unauthorized(message) => {
            worker.counters.auth_failure();
            tracing::info!(
                client.addr = %client.addr,
                http.path = %path,
                reason = message,
                "authentication failed"
            );
            event.record(snapshot, Event::AuthFailure, None, 401, false, message);
            let mut admission = refuse(401, message, head);
            if let Admission::Respond { response, close } = &mut admission {
                *response = json_error(
                    401,
                    message,
                    &[(
                        "WWW-Authenticate",
                        "Bearer realm=\"docker-api-proxy\"".into(),
                    )],
                    *close,
                );
            }
            Err(admission)
        }
        AuthOutcome::LockedOut { retry_after } => {
            worker.counters.rate_limited();
            let message = format!(
                "too many failed authentication attempts from {}; retry in {retry_after} s",
                client.addr.ip()
            );
            tracing::info!(client.addr = %client.addr, retry_after, "client locked out");
            event.record(snapshot, Event::Lockout, None, 429, false, &message);
            let close = head.framing != Framing::Empty || !head.keep_alive;
            let extra = [("Retry-After", retry_after.to_string())];
            Err(Admission::Respond {
                response: json_error(429, &message, &extra, close),
                close,
            })
        }
    }
}

/// What an audit record says about the request.
pub struct AuditEvent<'a> {
    pub client_ip: std::net::IpAddr,
    pub head: &'a RequestHead,
    pub path: &'a str,
    pub identity: Option<&'a Identity>,
}

impl AuditEvent<'_> {
    pub fn record(
        &self,
        snapshot: &Snapshot,
        event: Event,
        rule: Option<(&str, &str)>,
        status: u16,
        dry_run: bool,
        message: &str,
    ) {
        if !snapshot.audit.is_enabled() {
            return;
        }
        let user_agent = self
            .head
            .header("user-agent")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        snapshot.audit.record(Record {
            timestamp: Record::now(),
            event,
            peer_ip: self.client_ip.to_string(),
            method: self.head.method().to_owned(),
            path: self.path.to_owned(),
            user_agent,
            user_role: self
                .identity
                .and_then(|i| i.role.as_deref())
                .map(str::to_owned),
            identity: self
                .identity
                .and_then(|i| i.name.as_deref())
                .map(str::to_owned),
            rule_name: rule.map(|r| r.0.to_owned()),
            rule_action: rule.map(|r| r.1.to_owned()),
            status,
            dry_run,
            message: message.to_owned(),
        });
    }
}

/// Health endpoints answered by the proxy itself.
fn local_endpoint(head: &RequestHead, snapshot: &Snapshot, worker: &Worker) -> Option<Vec<u8>> {
    let health = &snapshot.settings.health;
    if !matches!(head.method(), "GET" | "HEAD") {
        return None;
    }
    let path = head.target().split(|&b| b == b'?').next().unwrap_or(b"");
    let close = !head.keep_alive;
    if health.enabled && path == health.live_path.as_bytes() {
        return Some(with_body(200, "text/plain", b"ok\n", close));
    }
    let metrics = &snapshot.settings.metrics;
    if metrics.enabled && path == metrics.path.as_bytes() {
        let text = worker
            .shared
            .metrics
            .render(worker.shared.open_connections());
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        return Some(with_body(200, content_type, text.as_bytes(), close));
    }
    if health.enabled && path == health.ready_path.as_bytes() {
        return Some(if worker.shared.engine_ready() {
            with_body(200, "text/plain", b"ready\n", close)
        } else {
            json_error(
                503,
                "the Docker Engine has not answered _ping recently",
                &[],
                close,
            )
        });
    }
    None
}
