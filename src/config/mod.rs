//! Temporary settings until the full loader lands.
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub keepalive_idle: Duration,
    pub upstream_connect: Duration,
    pub upgrade_idle: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_head: usize,
    pub max_inspect_body: usize,
    pub max_filter_document: usize,
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            keepalive_idle: Duration::from_secs(120),
            upstream_connect: Duration::from_secs(5),
            upgrade_idle: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10000,
            max_head: 64 * 1024,
            max_inspect_body: 1 << 20,
            max_filter_document: 64 << 20,
        }
    }
}
#[derive(Debug, Clone)]
pub struct HealthSettings { pub enabled: bool, pub live_path: String, pub ready_path: String }
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub bind: IpAddr,
    pub socket: Option<PathBuf>,
    pub workers: usize,
    pub log_level: String,
    pub health: HealthSettings,
    pub limits: Limits,
}
impl Settings {
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok();
        Settings {
            port: env("DOCKER_PROXY_PORT").and_then(|p| p.parse().ok()).unwrap_or(2376),
            bind: "127.0.0.1".parse().unwrap(),
            socket: env("DOCKER_SOCKET").map(PathBuf::from),
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            log_level: "info".into(),
            health: HealthSettings { enabled: true, live_path: "/healthz".into(), ready_path: "/readyz".into() },
            limits: Limits::default(),
        }
    }
}

pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
}

pub enum AuthMode {
    None,
    Bearer {
        tokens: Vec<TokenEntry>,
        secret: Option<String>,
    },
    Mtls {
        cert_role_map: Vec<(String, String)>,
        default_role: Option<String>,
    },
    FailClosed {
        reason: String,
    },
}

pub struct TokenEntry {
    pub token: String,
    pub role: String,
    pub name: Option<String>,
}

pub struct Lockout {
    pub failures: u32,
    pub window: Duration,
    pub duration: Duration,
}

pub struct ConfigError {
    pub location: String,
    pub what: String,
    pub why: String,
    pub fix: String,
}
