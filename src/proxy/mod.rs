//! The request path of one worker: connections, admission, forwarding and
//! upgraded streams.

pub mod admit;
mod admit_form;
pub mod conn;
pub mod copy;
pub mod filter;
pub mod io;
pub mod splice;
pub mod tunnel;
pub mod watch;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, RawFd};
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
    /// Client connections waiting for their next request, by id.
    idle: RefCell<HashMap<u64, RawFd>>,
    next_idle_id: Cell<u64>,
    /// Idle connections waiting in a read that holds a buffer.
    buffered_waits: Cell<usize>,
}

/// Marks a connection idle (between requests) while alive.
pub struct IdleGuard<'a> {
    worker: &'a Worker,
    id: u64,
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.worker.idle.borrow_mut().remove(&self.id);
    }
}

/// Most idle connections per core that wait inside a buffered read.
pub const BUFFERED_WAITS: usize = 256;

/// One idle connection waiting inside a buffered read.
pub struct BufferedWait<'a> {
    worker: &'a Worker,
}

impl Drop for BufferedWait<'_> {
    fn drop(&mut self) {
        let waits = &self.worker.buffered_waits;
        waits.set(waits.get() - 1);
    }
}

impl Worker {
    pub fn new(core: usize, shared: Arc<Shared>, pool: Pool) -> Self {
        let counters = shared.metrics.worker(core);
        Worker {
            core,
            shared,
            pool,
            counters,
            idle: RefCell::default(),
            next_idle_id: Cell::new(0),
            buffered_waits: Cell::new(0),
        }
    }

    /// Registers `fd` as idle until the guard drops. The caller keeps the
    /// socket open for at least as long as the guard lives.
    pub fn idle_guard(&self, fd: RawFd) -> IdleGuard<'_> {
        let id = self.next_idle_id.get();
        self.next_idle_id.set(id + 1);
        self.idle.borrow_mut().insert(id, fd);
        IdleGuard { worker: self, id }
    }

    /// Lets one more idle connection wait for its next request inside a
    /// read that holds a buffer, which saves the separate readiness wait
    /// per request; `None` once `BUFFERED_WAITS` connections do, so that
    /// many idle connections cost no buffer each.
    pub fn buffered_wait(&self) -> Option<BufferedWait<'_>> {
        let waits = self.buffered_waits.get();
        if waits >= BUFFERED_WAITS {
            return None;
        }
        self.buffered_waits.set(waits + 1);
        Some(BufferedWait { worker: self })
    }

    /// Ends the wait of every idle connection: their pending read sees end
    /// of stream and the connection closes without a request in flight.
    pub fn close_idle(&self) {
        for fd in self.idle.borrow().values() {
            // SAFETY: a registered fd belongs to a connection whose task
            // holds its socket open until its IdleGuard unregisters it.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Read);
        }
    }
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
