//! `docker-api-proxy`: a policy-enforcing HTTP/1.1 proxy for the Docker
//! Engine API, one monoio runtime per core.
//!
//! This file parses the command line, loads the configuration, and starts
//! the workers; everything else lives in the modules below.

mod audit;
mod auth;
mod config;
mod http;
mod metrics;
mod proxy;
mod runtime;
mod tls;
mod upstream;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use crate::runtime::{Shared, Snapshot};
use crate::upstream::socket::SocketChoice;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line of the proxy.
#[derive(Debug, Parser)]
#[command(name = "docker-api-proxy", version, about = "Policy-enforcing proxy for the Docker Engine API")]
struct Args {
    /// Configuration file (default: $DOCKER_PROXY_CONFIG, then ./config.yaml).
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let _ = args.config;
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("docker-api-proxy: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let settings = config::Settings::from_env();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.log_level.clone());
    let (writer, _guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer)
        .init();

    let env = |name: &str| std::env::var(name).ok();
    let socket = SocketChoice::resolve(settings.socket.as_deref(), &env);
    let listeners = runtime::listen::bind_all(settings.bind, settings.port, settings.workers)
        .context("cannot listen")?;
    let local = listeners[0].local_addr().context("listener address")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        workers = listeners.len(),
        driver = runtime::driver_name(),
        listen = %local,
        socket = %socket.describe(),
        "docker-api-proxy started"
    );
    let metrics = Arc::new(metrics::Metrics::new(settings.workers));
    let mode = match std::env::var("DOCKER_PROXY_SECRET") {
        Ok(secret) if !secret.is_empty() => config::AuthMode::Bearer { tokens: Vec::new(), secret: Some(secret) },
        _ => config::AuthMode::None,
    };
    let lockout = config::Lockout {
        failures: 10,
        window: std::time::Duration::from_secs(60),
        duration: std::time::Duration::from_secs(300),
    };
    let auth = auth::Authenticator::new(&mode, &lockout, Arc::new(auth::LockoutTable::new()));
    let audit = audit::AuditLog::disabled(metrics.clone());
    let snapshot = Snapshot { settings, auth, tls: None, audit };
    let shared = Arc::new(Shared::new(snapshot, socket, metrics));
    runtime::start_engine_watch(shared.clone());
    let _workers = runtime::start_workers(shared.clone(), listeners).context("cannot start workers")?;
    runtime::signals::run(shared).context("cannot install signal handlers")?;
    Ok(())
}
