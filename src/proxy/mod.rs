//! The request path of one worker: connections, admission, forwarding and
//! upgraded streams.

pub mod admit;
pub mod conn;
pub mod filter;
pub mod io;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::WorkerCounters;
use crate::runtime::{Shared, Snapshot};
use crate::upstream::pool::Pool;

/// Everything one core's connections share; lives on that core only.
pub struct Worker {
    pub core: usize,
    pub shared: Arc<Shared>,
    pub pool: Pool,
    pub counters: Arc<WorkerCounters>,
}

impl Worker {
    /// The policy snapshot a new request uses from start to end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    pub fn count_request(&self) {
        self.counters.request();
    }

    pub fn count_upgrade(&self) {
        self.counters.upgrade();
    }

    pub fn count_upstream_error(&self) {
        self.counters.upstream_error();
    }

    pub fn record_upstream_latency(&self, elapsed: Duration) {
        self.counters.upstream_latency(elapsed);
    }
}
