//! Process signals: SIGTERM/SIGINT drain and exit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::Shared;

/// Blocks the calling thread handling signals until the process exits.
pub fn run(shared: Arc<Shared>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    if let Some(signal) = signals.forever().next() {
        let grace = shared.snapshot.load().settings.limits.shutdown_grace;
        tracing::info!(signal, grace_secs = grace.as_secs(), "shutting down; draining connections");
        shared.start_draining();
        let deadline = Instant::now() + grace;
        while shared.open_connections() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = shared.open_connections();
        if left > 0 {
            tracing::info!(connections = left, "grace period over; closing remaining connections");
        }
        std::process::exit(0);
    }
    Ok(())
}
