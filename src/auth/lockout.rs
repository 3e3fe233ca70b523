//! Failed-attempt counters per client IP, shared by every core.
//!
//! One `LockoutTable` lives for the whole process: each configuration
//! snapshot's `Authenticator` holds an `Arc` to it, so a reload neither
//! forgets recent failures nor lifts a running lockout. The table keeps
//! state only; the thresholds (`Lockout`) come from the current snapshot
//! and are passed to every call.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::config::Lockout;

/// What [`LockoutTable::record_failure`] did with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted; the IP is not locked out.
    Counted,
    /// This failure reached the limit and started a lockout.
    LockoutStarted,
    /// The IP was already locked out (by a request on another core); the
    /// failure was not counted. `retry_after` as in
    /// [`LockoutTable::retry_after`].
    AlreadyLocked { retry_after: u64 },
}

/// Failure counters and lockouts keyed by client IP.
///
/// Operations lock one shard of a concurrent map, never the whole table.
/// While no client has failed, the check every request makes reads one
/// counter and touches no shard: the cores then share no written memory.
#[derive(Debug, Default)]
pub struct LockoutTable {
    clients: DashMap<IpAddr, ClientFailures>,
    /// Entries in `clients`, raised before an entry is inserted and
    /// lowered after one is removed, so it is never below the real count.
    tracked: AtomicUsize,
}

/// What the table knows about one client IP.
#[derive(Debug, Default)]
struct ClientFailures {
    /// Times of the failures still inside the window, oldest first. Never
    /// longer than `Lockout::failures`.
    recent: VecDeque<Instant>,
    /// When the current lockout started, if one is running or has not been
    /// cleared yet.
    locked_at: Option<Instant>,
}

impl LockoutTable {
    /// Creates an empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Seconds until `ip` may try again, or `None` when it is not locked
    /// out. The value is rounded up and at least 1, fit for `Retry-After`.
    pub fn retry_after(&self, ip: IpAddr, settings: &Lockout, now: Instant) -> Option<u64> {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let entry = self.clients.get(&ip)?;
        let locked_at = entry.locked_at?;
        remaining(locked_at, settings.duration, now).map(whole_seconds_up)
    }

    /// Records one failed attempt from `ip`.
    ///
    /// A lockout starts when `settings.failures` failures fall inside
    /// `settings.window`. A `failures` of 0 disables lockout. When another
    /// core locked the IP out between the caller's [`retry_after`] check
    /// and this call, the failure is not counted and the running lockout
    /// is reported, so that the caller answers 429 like every other
    /// request during the lockout.
    ///
    /// [`retry_after`]: LockoutTable::retry_after
    pub fn record_failure(&self, ip: IpAddr, settings: &Lockout, now: Instant) -> Recorded {
        let limit = settings.failures as usize;
        if limit == 0 {
            return Recorded::Counted;
        }
        let mut entry = match self.clients.entry(ip) {
            Entry::Occupied(entry) => entry.into_ref(),
            Entry::Vacant(entry) => {
                self.tracked.fetch_add(1, Ordering::AcqRel);
                entry.insert(ClientFailures::default())
            }
        };

        if let Some(locked_at) = entry.locked_at {
            if let Some(left) = remaining(locked_at, settings.duration, now) {
                return Recorded::AlreadyLocked {
                    retry_after: whole_seconds_up(left),
                };
            }
            entry.locked_at = None;
        }

        let recent = &mut entry.recent;
        while recent
            .front()
            .is_some_and(|t| !within(*t, settings.window, now))
        {
            recent.pop_front();
        }
        if recent.len() >= limit {
            recent.pop_front();
        }
        recent.push_back(now);

        if recent.len() < limit {
            return Recorded::Counted;
        }
        recent.clear();
        entry.locked_at = Some(now);
        Recorded::LockoutStarted
    }

    /// Removes clients with no running lockout and no failure inside the
    /// window; returns how many were removed. Call it now and then (for
    /// example once a minute) so the table does not grow with every IP
    /// that ever failed once.
    pub fn sweep(&self, settings: &Lockout, now: Instant) -> usize {
        let mut removed = 0;
        self.clients.retain(|_, client| {
            let locked = client
                .locked_at
                .is_some_and(|at| remaining(at, settings.duration, now).is_some());
            let counting = client
                .recent
                .back()
                .is_some_and(|t| within(*t, settings.window, now));
            removed += usize::from(!(locked || counting));
            locked || counting
        });
        self.tracked.fetch_sub(removed, Ordering::AcqRel);
        removed
    }

    /// Number of client IPs currently tracked.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when no client IP is tracked.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// True when `at` lies less than `window` before `now`. An `at` later than
/// `now` (another core's clock reading taken a moment after ours) counts as
/// inside.
fn within(at: Instant, window: Duration, now: Instant) -> bool {
    now.saturating_duration_since(at) < window
}

/// Time left of a lockout that started at `locked_at`, `None` once over.
fn remaining(locked_at: Instant, duration: Duration, now: Instant) -> Option<Duration> {
    let left = duration.saturating_sub(now.saturating_duration_since(locked_at));
    (!left.is_zero()).then_some(left)
}

fn whole_seconds_up(left: Duration) -> u64 {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    seconds.max(1)
}
