//! The request path of one worker: connections, admission, forwarding and
//! upgraded streams.

pub mod admit;
pub mod conn;
pub mod io;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{Shared, Snapshot};
use crate::upstream::pool::Pool;

/// Everything one core's connections share; lives on that core only.
pub struct Worker {
    pub core: usize,
    pub shared: Arc<Shared>,
    pub pool: Pool,
}

impl Worker {
    /// The policy snapshot a new request uses from start to end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    pub fn count_request(&self) {}

    pub fn count_upgrade(&self) {}

    pub fn count_upstream_error(&self) {}

    pub fn record_upstream_latency(&self, _elapsed: Duration) {}
}
