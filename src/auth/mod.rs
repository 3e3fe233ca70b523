//! Who the client is: bearer tokens, mTLS identity and lockout after
//! repeated failures.
//!
//! The connection code calls [`Authenticator::authenticate`] once per
//! request with the raw `Authorization` header and the verified client
//! certificate that `crate::tls` extracted at the handshake. The resulting
//! [`Identity`] (role and display name) feeds `crate::policy` and the audit
//! record. An `Authenticator` is built from each configuration snapshot;
//! the [`LockoutTable`] it points to is created once and shared by every
//! snapshot and every core, so reloads keep failure counts and lockouts.
//!
//! Nothing here logs, stores or returns a presented token.

mod bearer;
mod lockout;
mod mtls;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{AuthMode, Lockout};

use bearer::{HeaderProblem, TokenTable};
pub use lockout::{LockoutTable, Recorded};
use mtls::CertRoles;
pub use mtls::{name_matches, CertNames};

/// Message when a bearer-mode request carries no `Authorization` header.
pub const MISSING_TOKEN: &str = "authentication required: send the header \
     'Authorization: Bearer <token>' (docker CLI: \"HttpHeaders\": {\"Authorization\": \
     \"Bearer <token>\"} in ~/.docker/config.json)";
/// Message when the `Authorization` scheme is not `Bearer`.
pub const WRONG_SCHEME: &str =
    "unsupported authorization scheme: send the header 'Authorization: Bearer <token>'";
/// Message when the header says `Bearer` but holds no usable token.
pub const MALFORMED_TOKEN: &str =
    "malformed Authorization header: expected 'Bearer' followed by one token";
/// Message when a request carries more than one `Authorization` header.
pub const REPEATED_AUTHORIZATION: &str = "the request has more than one Authorization header, \
     so which credential applies is ambiguous; send exactly one header \
     'Authorization: Bearer <token>'";

/// The request's one `Authorization` value, if any, from all its header
/// fields (`name`, `value`). More than one is an error: taking the first
/// and ignoring the rest would let a proxy and the engine (or a log
/// reader) disagree about the credential.
pub fn single_authorization<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<&'a [u8]>, &'static str> {
    let mut values = headers.filter(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    let first = values.next().map(|(_, value)| value);
    match values.next() {
        Some(_) => Err(REPEATED_AUTHORIZATION),
        None => Ok(first),
    }
}

/// Message when the bearer token matches no configured token or secret.
pub const INVALID_TOKEN: &str = "invalid bearer token";
/// Message when mTLS mode sees no verified client certificate.
pub const CERT_REQUIRED: &str = "a client certificate signed by the proxy's client CA is required";
/// Message when a verified client certificate cannot be read.
pub const CERT_UNREADABLE: &str = "the client certificate could not be read";
/// Message for every request while authentication is not configured.
pub const NOT_CONFIGURED: &str = "authentication is not configured on this proxy, so every \
     request is refused; ask its operator to set the auth section of its configuration";

/// The result of authentication for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Role for `require_role` rules; `None` when authentication is off or
    /// no role could be derived.
    pub role: Option<Arc<str>>,
    /// Name shown in logs and audit records instead of the credential: the
    /// token's `name` or the certificate's CN.
    pub name: Option<Arc<str>>,
}

/// What [`Authenticator::authenticate`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated (or authentication is off).
    Ok(Identity),
    /// 401 with this message; it never contains the presented credential.
    Unauthorized(&'static str),
    /// 429: the client IP is locked out; `retry_after` is whole seconds for
    /// the `Retry-After` header, at least 1.
    LockedOut { retry_after: u64 },
}

/// How requests are authenticated under one configuration snapshot.
pub struct Authenticator {
    method: Method,
    lockout: Lockout,
    table: Arc<LockoutTable>,
}

impl fmt::Debug for Authenticator {
    // `Lockout` comes from `crate::config` and need not be `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("method", &self.method)
            .field("lockout.failures", &self.lockout.failures)
            .field("lockout.window", &self.lockout.window)
            .field("lockout.duration", &self.lockout.duration)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Method {
    Open,
    Bearer(TokenTable),
    Mtls(CertRoles),
    FailClosed,
}

impl Authenticator {
    /// Compiles the auth section. `table` must be the process-wide table so
    /// that lockouts span cores and survive reloads.
    #[must_use]
    pub fn new(mode: &AuthMode, lockout: &Lockout, table: Arc<LockoutTable>) -> Self {
        let method = match mode {
            AuthMode::None => Method::Open,
            AuthMode::Bearer { tokens, secret } => {
                let tokens = TokenTable::new(tokens, secret.as_deref());
                // A bearer section without any usable credential could
                // only ever refuse; say so instead of "invalid token".
                if tokens.is_empty() {
                    Method::FailClosed
                } else {
                    Method::Bearer(tokens)
                }
            }
            AuthMode::Mtls {
                cert_role_map,
                default_role,
            } => Method::Mtls(CertRoles::new(cert_role_map, default_role.as_deref())),
            AuthMode::FailClosed { .. } => Method::FailClosed,
        };
        let lockout = Lockout {
            failures: lockout.failures,
            window: lockout.window,
            duration: lockout.duration,
        };
        Self {
            method,
            lockout,
            table,
        }
    }

    /// Authenticates one request.
    ///
    /// `authorization` is the raw `Authorization` header value, if any;
    /// `peer_cert` the DER of the client's verified end-entity certificate,
    /// if any. `now` is the caller's clock reading (injected for tests).
    ///
    /// A locked-out IP gets `LockedOut` before its credentials are looked
    /// at. A failed attempt is a request that presented a credential which
    /// was refused (wrong token, wrong scheme, malformed header); a request
    /// with no credential at all is refused without counting, so clients
    /// that were simply not given a token cannot lock out everyone sharing
    /// their address.
    #[must_use]
    pub fn authenticate(
        &self,
        client_ip: IpAddr,
        authorization: Option<&[u8]>,
        peer_cert: Option<&[u8]>,
        now: Instant,
    ) -> AuthOutcome {
        match &self.method {
            Method::Open => AuthOutcome::Ok(Identity::default()),
            Method::FailClosed => AuthOutcome::Unauthorized(NOT_CONFIGURED),
            Method::Bearer(tokens) => {
                if let Some(retry_after) = self.table.retry_after(client_ip, &self.lockout, now) {
                    return AuthOutcome::LockedOut { retry_after };
                }
                self.check_bearer(tokens, client_ip, authorization, now)
            }
            Method::Mtls(roles) => {
                if let Some(retry_after) = self.table.retry_after(client_ip, &self.lockout, now) {
                    return AuthOutcome::LockedOut { retry_after };
                }
                check_cert(roles, peer_cert)
            }
        }
    }

    fn check_bearer(
        &self,
        tokens: &TokenTable,
        client_ip: IpAddr,
        authorization: Option<&[u8]>,
        now: Instant,
    ) -> AuthOutcome {
        let Some(header) = authorization else {
            return AuthOutcome::Unauthorized(MISSING_TOKEN);
        };
        let refused = match bearer::parse_header(header) {
            Ok(token) => match tokens.find(token) {
                Some(found) => {
                    return AuthOutcome::Ok(Identity {
                        role: Some(found.role.clone()),
                        name: found.name.clone(),
                    })
                }
                None => INVALID_TOKEN,
            },
            Err(HeaderProblem::Scheme) => WRONG_SCHEME,
            Err(HeaderProblem::Malformed) => MALFORMED_TOKEN,
        };

        match self.table.record_failure(client_ip, &self.lockout, now) {
            Recorded::Counted => {}
            Recorded::LockoutStarted => tracing::info!(
                client.addr = %client_ip,
                lockout.seconds = self.lockout.duration.as_secs(),
                "client locked out after repeated authentication failures"
            ),
            // Another core locked this IP out after our check above.
            Recorded::AlreadyLocked { retry_after } => {
                return AuthOutcome::LockedOut { retry_after }
            }
        }
        AuthOutcome::Unauthorized(refused)
    }

    /// Removes idle entries from the shared lockout table using this
    /// snapshot's thresholds; returns how many were removed.
    pub fn sweep_lockouts(&self, now: Instant) -> usize {
        self.table.sweep(&self.lockout, now)
    }

    /// True when requests need no credential at all (`auth.type: none`).
    pub fn is_open(&self) -> bool {
        matches!(self.method, Method::Open)
    }
}

fn check_cert(roles: &CertRoles, peer_cert: Option<&[u8]>) -> AuthOutcome {
    let Some(der) = peer_cert else {
        return AuthOutcome::Unauthorized(CERT_REQUIRED);
    };
    let Some(names) = CertNames::from_der(der) else {
        return AuthOutcome::Unauthorized(CERT_UNREADABLE);
    };
    AuthOutcome::Ok(Identity {
        role: roles.role_for(&names),
        name: names.common_name.as_deref().map(Arc::from),
    })
}
