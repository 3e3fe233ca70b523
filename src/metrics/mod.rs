//! Prometheus metrics: every series name lives in this file.
//!
//! Each worker counts into its own [`WorkerCounters`] (atomics written by
//! one core only, so cores never contend for a cache line); a scrape sums
//! them. Process-wide series (audit drops, reloads, open connections) are
//! plain atomics updated off the request path. Exposition uses
//! `prometheus-client`'s Prometheus text encoder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Upper bounds (milliseconds) of the upstream latency histogram buckets.
const LATENCY_BUCKETS_MS: [f64; 14] = [
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 30000.0,
];

/// Whether a rule decision was enforced or only recorded (dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforced,
    DryRun,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Enforced => "enforced",
            Mode::DryRun => "dry_run",
        }
    }
}

/// Counters owned by one worker.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    requests: AtomicU64,
    denied: AtomicU64,
    dry_run: AtomicU64,
    auth_failures: AtomicU64,
    rate_limited: AtomicU64,
    upgrades: AtomicU64,
    upstream_errors: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Only this worker writes; a scrape reads it briefly.
    rule_decisions: Mutex<HashMap<(Arc<str>, Mode), u64>>,
}

fn bump(counter: &AtomicU64) {
    // Single writer per counter: a load and store avoid a locked RMW.
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

impl WorkerCounters {
    pub fn request(&self) {
        bump(&self.requests);
    }
    pub fn denied(&self) {
        bump(&self.denied);
    }
    pub fn dry_run(&self) {
        bump(&self.dry_run);
    }
    pub fn auth_failure(&self) {
        bump(&self.auth_failures);
    }
    pub fn rate_limited(&self) {
        bump(&self.rate_limited);
    }
    pub fn upgrade(&self) {
        bump(&self.upgrades);
    }
    pub fn upstream_error(&self) {
        bump(&self.upstream_errors);
    }

    pub fn rule_decision(&self, rule: &Arc<str>, mode: Mode) {
        if let Ok(mut map) = self.rule_decisions.lock() {
            *map.entry((rule.clone(), mode)).or_insert(0) += 1;
        }
    }

    pub fn upstream_latency(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b) {
            bump(&self.latency_buckets[i]);
        }
        bump(&self.latency_count);
        let sum = &self.latency_sum_us;
        sum.store(sum.load(Relaxed) + elapsed.as_micros() as u64, Relaxed);
    }
}

/// Process-wide metrics: the per-worker counters plus global series.
#[derive(Debug)]
pub struct Metrics {
    workers: Vec<Arc<WorkerCounters>>,
    pub audit_dropped: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl Metrics {
    pub fn new(workers: usize) -> Self {
        Metrics {
            workers: (0..workers.max(1)).map(|_| Arc::default()).collect(),
            audit_dropped: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }
    }

    /// The counters of worker `core`.
    pub fn worker(&self, core: usize) -> Arc<WorkerCounters> {
        self.workers[core % self.workers.len()].clone()
    }

    /// Renders every series in the Prometheus text format.
    pub fn render(self: &Arc<Self>, open_connections: usize) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            metrics: self.clone(),
            open_connections,
        }));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }

    fn sum(&self, field: impl Fn(&WorkerCounters) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| field(w).load(Relaxed)).sum()
    }
}

/// One scrape: sums taken when the registry encodes.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    open_connections: usize,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let counters: [(&str, &str, u64); 7] = [
            (
                "docker_proxy_requests",
                "Requests received",
                m.sum(|w| &w.requests),
            ),
            (
                "docker_proxy_requests_denied",
                "Requests refused by policy",
                m.sum(|w| &w.denied),
            ),
            (
                "docker_proxy_requests_dry_run",
                "Requests a dry-run rule would have refused",
                m.sum(|w| &w.dry_run),
            ),
            (
                "docker_proxy_auth_failures",
                "Failed authentications",
                m.sum(|w| &w.auth_failures),
            ),
            (
                "docker_proxy_rate_limited",
                "Requests refused by a rate limit or lockout",
                m.sum(|w| &w.rate_limited),
            ),
            (
                "docker_proxy_upgrade",
                "Upgraded (streaming) connections",
                m.sum(|w| &w.upgrades),
            ),
            (
                "docker_proxy_upstream_errors",
                "Failures talking to the Docker Engine",
                m.sum(|w| &w.upstream_errors),
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let audit = m.audit_dropped.load(Relaxed);
        let metric = encoder.encode_descriptor(
            "docker_proxy_audit_dropped",
            "Audit events dropped because the writer fell behind",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(audit).encode(metric)?;

        self.encode_rule_decisions(&mut encoder)?;
        self.encode_latency(&mut encoder)?;

        let mut reloads = encoder.encode_descriptor(
            "docker_proxy_reloads",
            "Configuration reloads by result",
            None,
            MetricType::Counter,
        )?;
        for (result, counter) in [("success", &m.reloads_ok), ("failure", &m.reloads_failed)] {
            let labels = [("result", result)];
            ConstCounter::new(counter.load(Relaxed)).encode(reloads.encode_family(&labels)?)?;
        }

        let metric = encoder.encode_descriptor(
            "docker_proxy_active_connections",
            "Client connections currently open",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.open_connections as i64).encode(metric)?;

        let mut info = encoder.encode_descriptor(
            "docker_proxy_build_info",
            "Build information",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        Ok(())
    }
}

impl Scrape {
    fn encode_rule_decisions(
        &self,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let mut totals: HashMap<(Arc<str>, Mode), u64> = HashMap::new();
        for worker in &self.metrics.workers {
            if let Ok(map) = worker.rule_decisions.lock() {
                for (key, count) in map.iter() {
                    *totals.entry(key.clone()).or_insert(0) += count;
                }
            }
        }
        let mut rows: Vec<_> = totals.into_iter().collect();
        rows.sort_by(|a, b| (&*a.0 .0, a.0 .1.label()).cmp(&(&*b.0 .0, b.0 .1.label())));
        let mut family = encoder.encode_descriptor(
            "docker_proxy_rule_decisions",
            "Refusals decided by each rule, enforced or dry run",
            None,
            MetricType::Counter,
        )?;
        for ((rule, mode), count) in rows {
            let labels = [("rule", &*rule), ("mode", mode.label())];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn encode_latency(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        // The encoder accumulates the buckets itself: hand it the count of
        // each bucket alone. Counters are read one by one while workers
        // write, so the total is never allowed below the finite buckets.
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
            .iter()
            .enumerate()
            .map(|(i, &bound)| {
                (
                    bound,
                    m.workers
                        .iter()
                        .map(|w| w.latency_buckets[i].load(Relaxed))
                        .sum::<u64>(),
                )
            })
            .collect();
        let finite: u64 = buckets.iter().map(|b| b.1).sum();
        let count = m.sum(|w| &w.latency_count).max(finite);
        buckets.push((f64::INFINITY, count - finite));
        let sum_ms = m.sum(|w| &w.latency_sum_us) as f64 / 1000.0;
        let mut metric = encoder.encode_descriptor(
            "docker_proxy_upstream_latency_ms",
            "Time from forwarding a request to the end of its response head, milliseconds",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(sum_ms, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counters_of_all_workers() {
        let metrics = Arc::new(Metrics::new(2));
        metrics.worker(0).request();
        metrics.worker(1).request();
        metrics.worker(1).denied();
        let rule: Arc<str> = Arc::from("no-privileged");
        metrics.worker(0).rule_decision(&rule, Mode::Enforced);
        metrics.worker(1).rule_decision(&rule, Mode::Enforced);
        metrics.worker(1).rule_decision(&rule, Mode::DryRun);
        metrics.worker(0).upstream_latency(Duration::from_millis(3));
        let text = metrics.render(5);
        assert!(text.contains("docker_proxy_requests_total 2\n"), "{text}");
        assert!(
            text.contains("docker_proxy_requests_denied_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "docker_proxy_rule_decisions_total{rule=\"no-privileged\",mode=\"enforced\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("mode=\"dry_run\"} 1"), "{text}");
        assert!(
            text.contains("docker_proxy_upstream_latency_ms_bucket{le=\"5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("docker_proxy_upstream_latency_ms_count 1"),
            "{text}"
        );
        assert!(text.contains("docker_proxy_active_connections 5"), "{text}");
        assert!(text.contains("docker_proxy_build_info{version="), "{text}");
    }

    #[test]
    fn latency_buckets_are_cumulative_once() {
        let metrics = Arc::new(Metrics::new(2));
        metrics
            .worker(0)
            .upstream_latency(Duration::from_micros(100));
        metrics.worker(1).upstream_latency(Duration::from_millis(3));
        metrics.worker(1).upstream_latency(Duration::from_secs(60));
        let text = metrics.render(0);
        for line in [
            "docker_proxy_upstream_latency_ms_bucket{le=\"0.25\"} 1\n",
            "docker_proxy_upstream_latency_ms_bucket{le=\"2.5\"} 1\n",
            "docker_proxy_upstream_latency_ms_bucket{le=\"5\"} 2\n",
            "docker_proxy_upstream_latency_ms_bucket{le=\"30000\"} 2\n",
            "docker_proxy_upstream_latency_ms_bucket{le=\"+Inf\"} 3\n",
            "docker_proxy_upstream_latency_ms_count 3\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
