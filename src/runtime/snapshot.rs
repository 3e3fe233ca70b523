//! Building a [`Snapshot`] from a loaded [`Config`], at start-up and on
//! every reload.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::{Authenticator, LockoutTable};
use crate::config::{Config, ConfigError, Lockout, Settings};
use crate::metrics::Metrics;
use crate::policy::Policy;

/// One immutable view of the configuration, used whole by each request.
pub struct Snapshot {
    pub settings: Settings,
    pub policy: Policy,
    pub auth: Authenticator,
    pub lockout: Lockout,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub audit: AuditLog,
}

impl Snapshot {
    /// Compiles TLS material and opens the audit log. `previous` is the
    /// snapshot being replaced: its audit writer is kept (and told to
    /// reopen its file) when the path did not change.
    pub fn build(
        config: Config,
        lockouts: Arc<LockoutTable>,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Vec<ConfigError>> {
        let tls = match &config.settings.tls {
            Some(settings) => Some(crate::tls::server_config(settings)?),
            None => None,
        };
        let audit = match (&config.settings.audit_log, previous) {
            (None, _) => AuditLog::disabled(metrics.clone()),
            (Some(path), Some(old)) if old.settings.audit_log.as_ref() == Some(path) => {
                old.audit.reopen();
                old.audit.clone()
            }
            (Some(path), _) => AuditLog::open(path, metrics.clone()).map_err(|error| {
                vec![ConfigError::new(
                    "global.audit_log",
                    format!("cannot open {}: {error}", path.display()),
                    "denials and authentication failures must be recorded where configured",
                    "create the directory, give the proxy's user write access, or change the path",
                )]
            })?,
        };
        let auth = Authenticator::new(&config.auth, &config.lockout, lockouts);
        Ok(Snapshot {
            settings: config.settings,
            policy: config.policy,
            auth,
            lockout: config.lockout,
            tls,
            audit,
        })
    }
}
