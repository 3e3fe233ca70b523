//! Every default value, in one place (SPEC §4 and §9).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::{HealthSettings, Limits, Lockout, MetricsSettings};

pub const PORT: u16 = 2376;
pub const BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOG_LEVEL: &str = "info";
pub const METRICS_PATH: &str = "/metrics";
pub const LIVE_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";
/// Role of a bearer token entry without `role`.
pub const TOKEN_ROLE: &str = "user";
/// Role of `auth.secret` and `DOCKER_PROXY_SECRET`.
pub const SECRET_ROLE: &str = "admin";

/// Number of CPUs, or 1 when it cannot be known.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

pub fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(30),
        keepalive_idle: Duration::from_secs(120),
        body_timeout: Duration::from_secs(30),
        upstream_connect: Duration::from_secs(5),
        upgrade_idle: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(10),
        max_connections: 10_000,
        max_head: 64 * 1024,
        max_inspect_body: 1024 * 1024,
        max_filter_document: 64 * 1024 * 1024,
    }
}

pub fn lockout() -> Lockout {
    Lockout {
        failures: 10,
        window: Duration::from_secs(60),
        duration: Duration::from_secs(300),
    }
}

pub fn metrics() -> MetricsSettings {
    MetricsSettings {
        enabled: false,
        path: METRICS_PATH.into(),
    }
}

pub fn health() -> HealthSettings {
    HealthSettings {
        enabled: true,
        live_path: LIVE_PATH.into(),
        ready_path: READY_PATH.into(),
    }
}
