//! Token buckets for `rate_limit` rules, shared by every core.
//!
//! One [`RateLimitState`] lives for the life of the process: the caller
//! creates it once, passes the same `Arc` to every policy compile (startup
//! and each reload), so buckets are keyed by rule name and client IP and
//! survive a reload. A renamed rule starts with fresh buckets.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// `{requests, period, penalty}` of one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Bucket capacity, in requests.
    pub requests: u32,
    /// Seconds to refill a whole bucket.
    pub period: u64,
    /// Seconds an IP is refused once its bucket ran empty.
    pub penalty: u64,
}

impl RateLimit {
    fn refill_per_second(&self) -> f64 {
        f64::from(self.requests) / self.period.max(1) as f64
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    last: Instant,
    penalty_until: Option<Instant>,
    rate: f64,
}

/// Buckets of every `rate_limit` rule, keyed by (rule name, client IP).
#[derive(Debug, Default)]
pub struct RateLimitState {
    buckets: DashMap<(Arc<str>, IpAddr), Bucket>,
}

impl RateLimitState {
    /// A fresh, empty state to share across reloads.
    pub fn new() -> Arc<RateLimitState> {
        Arc::new(RateLimitState::default())
    }

    /// Take one token; `Err(retry_after_seconds)` when refused.
    pub(crate) fn take(
        &self,
        rule: &Arc<str>,
        ip: IpAddr,
        limit: &RateLimit,
        now: Instant,
    ) -> Result<(), u64> {
        let mut entry = self
            .buckets
            .entry((rule.clone(), ip))
            .or_insert_with(|| full_bucket(limit, now));
        step(&mut entry, limit, now, true)
    }

    /// What [`Self::take`] would answer, without changing anything.
    pub(crate) fn peek(
        &self,
        rule: &Arc<str>,
        ip: IpAddr,
        limit: &RateLimit,
        now: Instant,
    ) -> Result<(), u64> {
        let key = (rule.clone(), ip);
        let mut bucket = match self.buckets.get(&key) {
            Some(bucket) => bucket.clone(),
            None => full_bucket(limit, now),
        };
        step(&mut bucket, limit, now, false)
    }

    /// Drop buckets that are full again and not in a penalty; call every 60 s.
    pub fn sweep(&self, now: Instant) {
        self.buckets.retain(|_, bucket| {
            match bucket.penalty_until {
                Some(until) if now < until => return true,
                Some(_) => return false,
                None => {}
            }
            let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
            bucket.tokens + elapsed * bucket.rate < bucket.capacity
        });
    }

    /// Number of buckets held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn full_bucket(limit: &RateLimit, now: Instant) -> Bucket {
    let capacity = f64::from(limit.requests);
    Bucket {
        tokens: capacity,
        capacity,
        last: now,
        penalty_until: None,
        rate: limit.refill_per_second(),
    }
}

fn step(bucket: &mut Bucket, limit: &RateLimit, now: Instant, consume: bool) -> Result<(), u64> {
    // A reload may have changed the limit; the bucket follows the new one.
    bucket.capacity = f64::from(limit.requests);
    bucket.rate = limit.refill_per_second();

    if let Some(until) = bucket.penalty_until {
        if now < until {
            return Err(ceil_seconds(until - now));
        }
        bucket.penalty_until = None;
        bucket.tokens = bucket.capacity;
        bucket.last = now;
    }

    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(bucket.capacity);
    bucket.last = bucket.last.max(now);
    if bucket.tokens >= 1.0 {
        if consume {
            bucket.tokens -= 1.0;
        }
        return Ok(());
    }

    if limit.penalty > 0 {
        if consume {
            bucket.penalty_until = now.checked_add(Duration::from_secs(limit.penalty));
        }
        return Err(limit.penalty);
    }
    let wait = (1.0 - bucket.tokens) / bucket.rate.max(f64::MIN_POSITIVE);
    Err(wait.ceil().clamp(1.0, 86_400.0) as u64)
}

fn ceil_seconds(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn refuses_after_capacity_then_penalty_then_full_again() {
        let state = RateLimitState::new();
        let rule: Arc<str> = "create".into();
        let limit = RateLimit {
            requests: 2,
            period: 10,
            penalty: 30,
        };
        let t0 = Instant::now();
        assert!(state.take(&rule, IP, &limit, t0).is_ok());
        assert!(state.take(&rule, IP, &limit, t0).is_ok());
        assert_eq!(state.take(&rule, IP, &limit, t0), Err(30));
        // Inside the penalty even though the bucket would have refilled.
        assert_eq!(
            state.take(&rule, IP, &limit, t0 + Duration::from_secs(20)),
            Err(10)
        );
        let after = t0 + Duration::from_secs(31);
        assert!(state.take(&rule, IP, &limit, after).is_ok());
        assert!(state.take(&rule, IP, &limit, after).is_ok());
        assert!(state.take(&rule, IP, &limit, after).is_err());
    }

    #[test]
    fn refills_continuously() {
        let state = RateLimitState::new();
        let rule: Arc<str> = "r".into();
        let limit = RateLimit {
            requests: 2,
            period: 2,
            penalty: 0,
        };
        let t0 = Instant::now();
        assert!(state.take(&rule, IP, &limit, t0).is_ok());
        assert!(state.take(&rule, IP, &limit, t0).is_ok());
        assert_eq!(state.take(&rule, IP, &limit, t0), Err(1));
        assert!(state
            .take(&rule, IP, &limit, t0 + Duration::from_secs(1))
            .is_ok());
    }

    #[test]
    fn buckets_are_per_client_ip_and_peek_consumes_nothing() {
        let state = RateLimitState::new();
        let rule: Arc<str> = "r".into();
        let limit = RateLimit {
            requests: 1,
            period: 60,
            penalty: 5,
        };
        let t0 = Instant::now();
        assert!(state.peek(&rule, IP, &limit, t0).is_ok());
        assert!(state.peek(&rule, IP, &limit, t0).is_ok());
        assert!(state.take(&rule, IP, &limit, t0).is_ok());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(state.take(&rule, other, &limit, t0).is_ok());
        assert!(state.peek(&rule, IP, &limit, t0).is_err());
    }

    #[test]
    fn sweep_drops_only_idle_full_buckets() {
        let state = RateLimitState::new();
        let rule: Arc<str> = "r".into();
        let limit = RateLimit {
            requests: 1,
            period: 10,
            penalty: 100,
        };
        let t0 = Instant::now();
        state.take(&rule, IP, &limit, t0).unwrap();
        let _ = state.take(&rule, IP, &limit, t0);
        state.sweep(t0 + Duration::from_secs(50));
        assert_eq!(state.len(), 1, "bucket in penalty is kept");
        state.sweep(t0 + Duration::from_secs(200));
        assert!(state.is_empty());
    }
}
