//! Process signals: SIGHUP reloads, SIGTERM/SIGINT drain and exit.
//!
//! Runs on the main thread, never on a worker: reloading reads files and
//! compiles the policy, which must not stall a core.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{Shared, Snapshot};
use crate::config;

/// Takes over SIGHUP, SIGTERM and SIGINT. Called before anything listens,
/// so that an early SIGHUP (a reload right after start) is never fatal;
/// signals that arrive before [`run`] wait for it.
pub fn install() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT])
}

/// Blocks the calling thread handling signals until the process exits.
pub fn run(mut signals: Signals, shared: Arc<Shared>) -> std::io::Result<()> {
    for signal in signals.forever() {
        if signal == SIGHUP {
            reload(&shared);
            continue;
        }
        shutdown(&shared, signal);
    }
    Ok(())
}

/// Re-reads the same file and environment; keeps the old policy on error.
pub fn reload(shared: &Shared) {
    notify_reloading();
    let old = shared.snapshot.load_full();
    let limits = old.policy.rate_limit_state().clone();
    let result = config::load_with_state(&shared.overrides, limits)
        .map_err(|errors| errors.0)
        .and_then(|config| {
            warn_restart_needed(&old, &config.settings);
            for warning in &config.warnings {
                tracing::warn!(warning = %warning, "configuration warning");
            }
            Snapshot::build(config, shared.lockouts.clone(), &shared.metrics, Some(&old))
        });
    match result {
        Ok(snapshot) => {
            if snapshot.settings.log_level != old.settings.log_level {
                let filter = crate::logging::effective_filter(&snapshot.settings.log_level);
                match crate::logging::set_filter(&filter) {
                    Ok(()) => tracing::info!(log_level = %filter, "log level changed"),
                    Err(error) => tracing::warn!(%error, "log level not changed"),
                }
            }
            let rules = snapshot.policy.rule_count();
            shared.snapshot.store(Arc::new(snapshot));
            shared.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(rules, "configuration reloaded");
        }
        Err(errors) => {
            shared
                .metrics
                .reloads_failed
                .fetch_add(1, Ordering::Relaxed);
            for error in &errors {
                tracing::error!(
                    location = %error.location,
                    problem = %error.what,
                    fix = %error.fix,
                    "reload rejected; keeping the previous configuration"
                );
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

fn warn_restart_needed(old: &Snapshot, new: &config::Settings) {
    let changed = [
        ("global.port", old.settings.port != new.port),
        ("global.bind", old.settings.bind != new.bind),
        ("global.workers", old.settings.workers != new.workers),
        ("global.socket", old.settings.socket != new.socket),
    ];
    for (key, differs) in changed {
        if differs {
            tracing::warn!(
                setting = key,
                "changed in the configuration but needs a restart to apply"
            );
        }
    }
}

fn notify_reloading() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } == 0;
    let usec = if ok {
        now.tv_sec as i128 * 1_000_000 + now.tv_nsec as i128 / 1000
    } else {
        0
    };
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Reloading,
        sd_notify::NotifyState::MonotonicUsec(usec),
    ]);
}

/// Stops accepting, waits up to `limits.shutdown_grace` for open
/// connections, then exits, closing whatever is left (streams included).
fn shutdown(shared: &Shared, signal: i32) -> ! {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let grace = shared.snapshot.load().settings.limits.shutdown_grace;
    tracing::info!(
        signal,
        grace_secs = grace.as_secs(),
        "shutting down; draining connections"
    );
    shared.start_draining();
    let deadline = Instant::now() + grace;
    while shared.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = shared.open_connections();
    if left > 0 {
        tracing::info!(
            connections = left,
            "grace period over; closing remaining connections"
        );
    }
    // Give the log writer a moment to flush the last lines.
    std::thread::sleep(Duration::from_millis(50));
    std::process::exit(0);
}
