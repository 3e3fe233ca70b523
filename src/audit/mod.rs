//! The audit log: one JSON object per line for every security-relevant
//! event (SPEC section 8), written by one dedicated thread.
//!
//! Workers hand records over a bounded `crossbeam-channel` with
//! `try_send`: a full channel drops the record, counts it, and the worker
//! never waits. The writer thread owns the file, appends to it with mode
//! 0600, and reopens it on request (SIGHUP, for log rotation).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 8192;

/// What happened; the `event` field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Deny,
    DryRun,
    RateLimited,
    Lockout,
    AuthFailure,
}

/// One audit line. The field set and names are a stable schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub event: Event,
    pub peer_ip: String,
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub user_role: Option<String>,
    /// Token name or certificate CN; never a secret.
    pub identity: Option<String>,
    pub rule_name: Option<String>,
    pub rule_action: Option<String>,
    pub status: u16,
    pub dry_run: bool,
    pub message: String,
}

impl Record {
    /// Current time in the record's format.
    pub fn now() -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time::OffsetDateTime::now_utc()
            .format(&format)
            .unwrap_or_default()
    }
}

enum Command {
    Write(Box<Record>),
    Reopen,
    /// Stalls the writer until the sender is dropped (tests only).
    #[cfg(test)]
    Stall(Receiver<()>),
}

/// The workers' end of the audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    sender: Option<Sender<Command>>,
    metrics: Arc<Metrics>,
    last_warning: Arc<AtomicU64>,
    started: Instant,
}

impl AuditLog {
    /// An audit log that records nothing (no `global.audit_log`).
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        AuditLog {
            sender: None,
            metrics,
            last_warning: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Opens `path` (creating it with mode 0600) and starts the writer.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Self::with_capacity(path, metrics, QUEUE)
    }

    fn with_capacity(path: &Path, metrics: Arc<Metrics>, capacity: usize) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let (sender, receiver) = bounded(capacity);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(path, file, receiver))?;
        Ok(AuditLog {
            sender: Some(sender),
            metrics,
            last_warning: Arc::default(),
            started: Instant::now(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues a record without waiting; drops it when the writer is behind.
    pub fn record(&self, record: Record) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Command::Write(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped(),
        }
    }

    /// Asks the writer to reopen the file (after rotation).
    pub fn reopen(&self) {
        if let Some(sender) = &self.sender {
            if sender.try_send(Command::Reopen).is_err() {
                tracing::warn!("audit writer busy; the audit file was not reopened");
            }
        }
    }

    fn dropped(&self) {
        self.metrics.audit_dropped.fetch_add(1, Ordering::Relaxed);
        // At most one warning every ten seconds.
        let now = self.started.elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 10)
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let total = self.metrics.audit_dropped.load(Ordering::Relaxed);
            tracing::warn!(
                dropped_total = total,
                "audit writer is behind; audit events dropped"
            );
        }
    }

    #[cfg(test)]
    fn stall(&self) -> Sender<()> {
        let (release, wait) = bounded(0);
        if let Some(sender) = &self.sender {
            sender
                .send(Command::Stall(wait))
                .expect("audit writer running");
            // Wait until the writer has taken the stall command.
            while !sender.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        release
    }
}

/// Opens for appending, creating the file (0600) and, if missing, its
/// directory (0700).
fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn write_loop(path: PathBuf, file: File, receiver: Receiver<Command>) {
    let mut out = BufWriter::new(file);
    loop {
        let command = match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(command) => command,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match command {
            Command::Write(record) => {
                if let Ok(line) = serde_json::to_string(&record) {
                    let written = out
                        .write_all(line.as_bytes())
                        .and_then(|_| out.write_all(b"\n"));
                    if let Err(error) = written {
                        tracing::error!(%error, path = %path.display(), "cannot write audit log");
                    }
                }
                if receiver.is_empty() {
                    let _ = out.flush();
                }
            }
            Command::Reopen => {
                let _ = out.flush();
                match open_append(&path) {
                    Ok(file) => out = BufWriter::new(file),
                    Err(error) => {
                        tracing::error!(%error, path = %path.display(), "cannot reopen audit log")
                    }
                }
            }
            #[cfg(test)]
            Command::Stall(wait) => {
                let _ = wait.recv();
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample(event: Event) -> Record {
        Record {
            timestamp: Record::now(),
            event,
            peer_ip: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/containers/create".into(),
            user_agent: Some("Docker-Client/28.2.2 (linux)".into()),
            user_role: Some("user".into()),
            identity: Some("ci-runner".into()),
            rule_name: Some("no-privileged".into()),
            rule_action: Some("deny".into()),
            status: 403,
            dry_run: false,
            message: "privileged containers are not allowed".into(),
        }
    }

    fn wait_for_lines(path: &Path, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= count || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn writes_one_strict_json_record_per_line_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, Arc::new(Metrics::new(1))).unwrap();
        log.record(sample(Event::Deny));
        log.record(sample(Event::AuthFailure));
        let lines = wait_for_lines(&path, 2);
        assert_eq!(lines.len(), 2);
        let first: Record = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first.event, Event::Deny);
        let value: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(value["event"], "auth_failure");
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 13, "{keys:?}");
        assert!(value["timestamp"].as_str().unwrap().ends_with('Z'));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn drops_and_counts_when_the_writer_is_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let metrics = Arc::new(Metrics::new(1));
        let log = AuditLog::with_capacity(&path, metrics.clone(), 4).unwrap();
        let release = log.stall();
        let started = Instant::now();
        for _ in 0..100 {
            log.record(sample(Event::Deny));
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "record() must never wait"
        );
        assert!(metrics.audit_dropped.load(Ordering::Relaxed) >= 90);
        drop(release);
        let lines = wait_for_lines(&path, 4);
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn reopens_the_file_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, Arc::new(Metrics::new(1))).unwrap();
        log.record(sample(Event::Deny));
        wait_for_lines(&path, 1);
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.reopen();
        log.record(sample(Event::Lockout));
        let lines = wait_for_lines(&path, 1);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("\"lockout\""));
    }
}
