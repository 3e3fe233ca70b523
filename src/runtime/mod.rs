//! Thread per core: one pinned monoio runtime per worker, each with its own
//! `SO_REUSEPORT` listener, plus the state all workers share.
//!
//! The compiled configuration is one immutable [`Snapshot`] behind an
//! `ArcSwap`; a request loads it once and keeps it to the end, and a reload
//! swaps the pointer. Nothing a request touches takes a lock.

pub mod listen;
pub mod signals;
mod snapshot;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use anyhow::Context;

use crate::auth::LockoutTable;
use crate::config::{AuthMode, Overrides};
use crate::metrics::Metrics;
use crate::upstream::socket::SocketChoice;

pub use snapshot::Snapshot;

/// State shared by every worker thread.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub socket: SocketChoice,
    pub metrics: Arc<Metrics>,
    /// Failure counts and lockouts; survive reloads.
    pub lockouts: Arc<LockoutTable>,
    /// Flags the process was started with; reloads apply them again.
    pub overrides: Overrides,
    connections: AtomicUsize,
    draining: AtomicBool,
    /// Unix seconds of the last successful engine `_ping`, 0 if none.
    last_ping: AtomicU64,
    /// Duplicates of the listening sockets, shut down to stop accepting.
    listeners: std::sync::Mutex<Vec<std::net::TcpListener>>,
}

/// How long a successful `_ping` keeps `/readyz` green.
const READY_WINDOW: u64 = 15;

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        socket: SocketChoice,
        metrics: Arc<Metrics>,
        lockouts: Arc<LockoutTable>,
        overrides: Overrides,
    ) -> Self {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            socket,
            metrics,
            lockouts,
            overrides,
            connections: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            last_ping: AtomicU64::new(0),
            listeners: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Keeps a duplicate of a listening socket so draining can wake the
    /// worker blocked in `accept`.
    pub fn register_listener(&self, listener: &std::net::TcpListener) -> std::io::Result<()> {
        let copy = listener.try_clone()?;
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.push(copy);
        }
        Ok(())
    }

    /// Stops accepting: pending accepts fail and the accept loops end.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        if let Ok(listeners) = self.listeners.lock() {
            for listener in listeners.iter() {
                let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read);
            }
        }
    }

    /// Counts a new client connection unless the limit is reached.
    pub fn try_open_connection(&self, max: usize) -> bool {
        let previous = self.connections.fetch_add(1, Ordering::Relaxed);
        if previous >= max {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn close_connection(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn engine_ready(&self) -> bool {
        let last = self.last_ping.load(Ordering::Relaxed);
        last != 0 && unix_now().saturating_sub(last) <= READY_WINDOW
    }

    pub fn mark_engine_ping(&self) {
        self.last_ping.store(unix_now(), Ordering::Relaxed);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loads the configuration, starts the workers and serves until a signal
/// ends the process.
pub fn run(overrides: Overrides) -> anyhow::Result<()> {
    let config = match crate::config::load(&overrides) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            let problems = crate::cli::count_problems(errors.0.len());
            anyhow::bail!("configuration is invalid ({problems}); nothing started");
        }
    };
    let filter = crate::logging::effective_filter(&config.settings.log_level);
    let _log_guard = crate::logging::init(config.settings.log_format, &filter);
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "configuration warning");
    }
    log_auth_mode(&config.auth);

    let bulk_copy = crate::proxy::io::init_bulk_copy().map_err(anyhow::Error::msg)?;
    let signals = signals::install().context("cannot install signal handlers")?;
    let env = |name: &str| std::env::var(name).ok();
    let socket = SocketChoice::resolve(config.settings.socket.as_deref(), &env);
    let settings = &config.settings;
    let listeners = listen::bind_all(settings.bind, settings.port, settings.workers)
        .context("cannot listen")?;
    let local = listeners[0].local_addr().context("listener address")?;
    let metrics = Arc::new(Metrics::new(listeners.len()));
    let lockouts = Arc::new(LockoutTable::new());
    let rule_count = config.policy.rule_count();
    let auth_mode = auth_mode_name(&config.auth);
    let tls = if settings.tls.is_some() { "on" } else { "off" };
    let snapshot = Snapshot::build(config, lockouts.clone(), &metrics, None).map_err(|errors| {
        eprintln!("{}", crate::config::ConfigErrors(errors));
        anyhow::anyhow!("configuration is invalid; nothing started")
    })?;
    let taskrun = TaskRun::probe();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        workers = listeners.len(),
        driver = driver_name(),
        uring_taskrun = taskrun.map_or("none", TaskRun::name),
        bulk_copy = bulk_copy.name(),
        listen = %local,
        tls,
        socket = %socket.describe(),
        auth = auth_mode,
        rules = rule_count,
        "docker-api-proxy started"
    );
    let shared = Arc::new(Shared::new(snapshot, socket, metrics, lockouts, overrides));
    start_engine_watch(shared.clone());
    start_sweeper(shared.clone());
    let _workers =
        start_workers(shared.clone(), listeners, taskrun).context("cannot start workers")?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    signals::run(signals, shared).context("signal handling failed")?;
    Ok(())
}

fn auth_mode_name(mode: &AuthMode) -> &'static str {
    match mode {
        AuthMode::None => "none",
        AuthMode::Bearer { .. } => "bearer",
        AuthMode::Mtls { .. } => "mtls",
        AuthMode::FailClosed { .. } => "fail-closed",
    }
}

fn log_auth_mode(mode: &AuthMode) {
    match mode {
        AuthMode::None => tracing::warn!(
            "authentication is off: anyone who can reach the port controls the Docker Engine; \
             set auth.tokens or DOCKER_PROXY_SECRET"
        ),
        AuthMode::FailClosed { reason } => tracing::error!(
            reason = %reason,
            "authentication is not configured: every request is refused with 401. Write \
             `auth: {{type: bearer, tokens: [{{token: \"${{DOCKER_PROXY_TOKEN}}\", \
             role: admin}}]}}`, set DOCKER_PROXY_SECRET, or write `auth: {{type: none}}` \
             to run without authentication"
        ),
        _ => {}
    }
}

/// Sweeps idle rate-limit buckets and expired lockouts every 60 s.
fn start_sweeper(shared: Arc<Shared>) {
    let _ = std::thread::Builder::new()
        .name("sweeper".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(60));
            let snapshot = shared.snapshot.load();
            let now = std::time::Instant::now();
            snapshot.policy.sweep(now);
            snapshot.auth.sweep_lockouts(now);
        });
}

/// Which I/O driver the workers run on.
pub fn driver_name() -> &'static str {
    if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "epoll"
    }
}

/// How an io_uring worker learns that its operations completed.
///
/// By default the kernel finishes a socket operation that had to wait by
/// interrupting the thread (an inter-processor interrupt when it runs on
/// another CPU) to run the completion work. Each worker is the only user
/// of its ring, so the kernel can instead keep that work until the worker
/// asks for completions (`defer`, Linux 6.1), or run it at the worker's
/// next system call without interrupting it (`coop`, Linux 5.19).
/// `docs/architecture.md` has the measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRun {
    Defer,
    Coop,
    Interrupt,
}

impl TaskRun {
    /// Best first.
    const PREFERENCE: [TaskRun; 3] = [TaskRun::Defer, TaskRun::Coop, TaskRun::Interrupt];

    pub fn name(self) -> &'static str {
        match self {
            TaskRun::Defer => "defer",
            TaskRun::Coop => "coop",
            TaskRun::Interrupt => "interrupt",
        }
    }

    fn builder(self) -> io_uring::Builder {
        let mut builder = io_uring::IoUring::builder();
        match self {
            TaskRun::Defer => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            TaskRun::Coop => {
                builder.setup_coop_taskrun();
            }
            TaskRun::Interrupt => {}
        }
        builder
    }

    /// The best mode this kernel accepts, found by setting up a small ring
    /// with each in turn; `None` without io_uring (the epoll driver).
    pub fn probe() -> Option<TaskRun> {
        if !monoio::utils::detect_uring() {
            return None;
        }
        Self::first_accepted(|mode| mode.builder().build(8).is_ok())
    }

    fn first_accepted(accepts: impl Fn(TaskRun) -> bool) -> Option<TaskRun> {
        Self::PREFERENCE.into_iter().find(|&mode| accepts(mode))
    }
}

/// Starts `workers` pinned runtimes serving `listeners` (one each) and
/// returns their thread handles. `taskrun` is what [`TaskRun::probe`] found.
pub fn start_workers(
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    taskrun: Option<TaskRun>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut handles = Vec::new();
    for (core, listener) in listeners.into_iter().enumerate() {
        shared.register_listener(&listener)?;
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{core}"))
            .spawn(move || {
                if let Err(error) = monoio::utils::bind_to_cpu_set([core % cpus]) {
                    tracing::warn!(core, ?error, "could not pin worker to its CPU");
                }
                let uring = taskrun.unwrap_or(TaskRun::Interrupt).builder();
                let mut runtime = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .with_entries(1024)
                    .uring_builder(uring)
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(core, %error, "cannot start worker runtime");
                        std::process::exit(1);
                    }
                };
                runtime.block_on(listen::accept_loop(core, shared, listener));
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Periodically asks the engine for `_ping` on a plain thread, so that
/// `/readyz` reflects the engine and a missing socket is logged.
pub fn start_engine_watch(shared: Arc<Shared>) {
    let _ = std::thread::Builder::new().name("engine-watch".into()).spawn(move || {
        let mut was_ready = None;
        loop {
            let ready = ping_engine(&shared.socket);
            match (&ready, was_ready) {
                (Ok(()), Some(true)) => {}
                (Ok(()), _) => {
                    tracing::info!(socket = %shared.socket.describe(), "engine answers _ping")
                }
                (Err(error), Some(false)) => tracing::debug!(%error, "engine still unreachable"),
                (Err(error), _) => {
                    tracing::error!(%error, "engine unreachable; answering 502 until it is back")
                }
            }
            if ready.is_ok() {
                shared.mark_engine_ping();
            }
            was_ready = Some(ready.is_ok());
            std::thread::sleep(Duration::from_secs(5));
        }
    });
}

fn ping_engine(socket: &SocketChoice) -> Result<(), String> {
    use std::io::{Read, Write};
    let path = socket.current().map_err(|tried| {
        let tried: Vec<_> = tried.iter().map(|p| p.display().to_string()).collect();
        format!("no Docker Engine socket found (tried {})", tried.join(", "))
    })?;
    let describe = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(describe)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(describe)?;
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .map_err(describe)?;
    let mut reply = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut reply);
    if reply.starts_with(b"HTTP/1.1 200") || reply.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!("{}: _ping did not answer 200", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taskrun_falls_back_to_the_next_mode_the_kernel_accepts() {
        let all = TaskRun::first_accepted(|_| true);
        assert_eq!(all, Some(TaskRun::Defer));
        let no_defer = TaskRun::first_accepted(|mode| mode != TaskRun::Defer);
        assert_eq!(no_defer, Some(TaskRun::Coop));
        let plain = TaskRun::first_accepted(|mode| mode == TaskRun::Interrupt);
        assert_eq!(plain, Some(TaskRun::Interrupt));
        assert_eq!(TaskRun::first_accepted(|_| false), None);
    }

    #[test]
    fn this_kernel_defers_completion_work_when_io_uring_is_available() {
        // Linux 6.1 has every flag the preferred mode needs.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        match TaskRun::probe() {
            None => assert!(!monoio::utils::detect_uring()),
            Some(mode) if version >= (6, 1) => assert_eq!(mode, TaskRun::Defer, "{release}"),
            Some(_) => {}
        }
    }
}
