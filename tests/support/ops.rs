//! Harness pieces for the policy-action and operations tests: extra config
//! sections, signals and exit, clients bound to a chosen loopback address,
//! streamed chunked bodies, the audit file, metrics scrapes and JSON logs.

use std::net::IpAddr;
use std::process::ExitStatus;

use super::*;

// === config ===

impl ProxyOptions {
    /// Adds YAML under `global` (several lines allowed; the harness
    /// indents them), e.g. `"metrics:\n  enabled: true"`.
    pub fn global(mut self, yaml: &str) -> Self {
        self.global_yaml.push(yaml.to_owned());
        self
    }

    /// Sets the top-level `rules:` section (the text must start with
    /// `rules:`).
    pub fn rules(mut self, yaml: &str) -> Self {
        self.rules_yaml = Some(yaml.to_owned());
        self
    }
}

impl Proxy {
    /// The config file the proxy was started with (and re-reads on SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// The config file `options` describe, for this proxy's port.
    pub fn config_text(&self, options: &ProxyOptions) -> String {
        config_yaml(options, self.port)
    }

    /// Replaces the config file atomically (write, then rename), so a
    /// reload never reads half a file.
    pub fn write_config(&self, text: &str) {
        let temporary = self.dir.path().join("config.yaml.new");
        std::fs::write(&temporary, text).expect("write the new config");
        std::fs::rename(&temporary, self.config_path()).expect("replace the config");
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the proxy process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the PID of a child we own and have not
        // reaped yet; it touches no memory of ours.
        let result = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(result, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the process to exit by itself; `None` past `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.child.try_wait().ok().flatten())
    }

    /// Waits until stderr contains `needle`; the whole stderr, or a panic
    /// naming what was missing.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        wait_for(timeout, || {
            let text = self.stderr();
            text.contains(needle).then_some(text)
        })
        .unwrap_or_else(|| {
            panic!(
                "proxy stderr has no {needle:?} after {timeout:?}:\n{}",
                self.stderr()
            )
        })
    }

    /// A new raw client connection from `local` (e.g. 127.0.0.2).
    pub fn connect_from(&self, local: IpAddr) -> RawClient {
        connect_bound(local, &self.addr())
    }

    /// One request on a fresh connection from `local`.
    pub fn request_from(&self, local: IpAddr, bytes: &[u8]) -> Response {
        let mut client = self.connect_from(local);
        client.send(bytes);
        client.read_response_for(method_of(bytes))
    }

    /// Scrapes `path` (no credentials) and parses the Prometheus text.
    pub fn scrape(&self, path: &str) -> Metrics {
        let response = self.request(&get_request(path, &[]));
        assert_eq!(response.status, 200, "scrape {path}: {}", response.text());
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "metrics content type {content_type:?}"
        );
        Metrics::parse(&response.text())
    }
}

// === a fake engine that records what reaches it ===

/// A fake engine answering 200 to everything and recording each request.
pub struct Recording {
    pub engine: FakeEngine,
    pub seen: Arc<Mutex<Vec<EngineRequest>>>,
}

impl Recording {
    /// How many requests for exactly `target` reached the engine.
    pub fn forwarded(&self, target: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target == target)
            .count()
    }
}

pub fn recording_engine() -> Recording {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = FakeEngine::start(super::recording_handler(seen.clone()));
    Recording { engine, seen }
}

// === requests ===

/// A client connection to `addr` from the local address `local`, so that
/// tests can act as several client IPs on loopback.
fn connect_bound(local: IpAddr, addr: &str) -> RawClient {
    let remote: std::net::SocketAddr = addr.parse().expect("a socket address");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(remote),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("a TCP socket");
    socket
        .bind(&std::net::SocketAddr::new(local, 0).into())
        .unwrap_or_else(|e| panic!("bind the client to {local}: {e}"));
    socket
        .connect_timeout(&remote.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr} from {local}: {e}"));
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream.set_nodelay(true).expect("nodelay");
    RawClient {
        stream,
        buf: Vec::new(),
    }
}

/// `GET target` over HTTP/1.1 with extra header lines (`"Name: value"`).
pub fn get_request(target: &str, headers: &[&str]) -> Vec<u8> {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: docker\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// The same with `Authorization: Bearer token`.
pub fn get_with_token(target: &str, token: &str, headers: &[&str]) -> Vec<u8> {
    let authorization = format!("Authorization: Bearer {token}");
    let mut all = vec![authorization.as_str()];
    all.extend_from_slice(headers);
    get_request(target, &all)
}

impl RawClient {
    /// The next chunk of a chunked body whose head was read; `None` after
    /// the last chunk (trailers consumed). Lets a test read a long stream
    /// without holding it.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let line = lossy(&self.read_line());
        let size = line.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        if size == 0 {
            while !self.read_line().is_empty() {}
            return None;
        }
        let data = self.read_exact_body(size);
        let crlf = self.read_exact_body(2);
        assert_eq!(crlf, b"\r\n", "chunk not followed by CRLF");
        Some(data)
    }
}

// === audit ===

/// One audit line, pinned strictly: an unknown, renamed or missing field
/// fails the parse (`Option` fields must still be present, see
/// [`read_audit`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub timestamp: String,
    pub event: String,
    pub peer_ip: String,
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub user_role: Option<String>,
    pub identity: Option<String>,
    pub rule_name: Option<String>,
    pub rule_action: Option<String>,
    pub status: u16,
    pub dry_run: bool,
    pub message: String,
}

/// Every field SPEC section 8 names, in no particular order.
pub const AUDIT_FIELDS: [&str; 13] = [
    "timestamp",
    "event",
    "peer_ip",
    "method",
    "path",
    "user_agent",
    "user_role",
    "identity",
    "rule_name",
    "rule_action",
    "status",
    "dry_run",
    "message",
];

/// Parses every line of the audit file strictly.
pub fn read_audit(path: &Path) -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"));
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("audit line is not an object: {line}"));
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut expected = AUDIT_FIELDS.to_vec();
            expected.sort_unstable();
            assert_eq!(keys, expected, "audit field set of {line}");
            serde_json::from_value(value)
                .unwrap_or_else(|e| panic!("audit line does not match the schema ({e}): {line}"))
        })
        .collect()
}

/// Waits until the audit file holds at least `count` records matching
/// `keep`; returns all records.
pub fn wait_audit(
    path: &Path,
    count: usize,
    keep: impl Fn(&AuditRecord) -> bool,
) -> Vec<AuditRecord> {
    wait_for(Duration::from_secs(10), || {
        let records = read_audit(path);
        (records.iter().filter(|r| keep(r)).count() >= count).then_some(records)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {count} matching audit records after 10 s: {:#?}",
            read_audit(path)
        )
    })
}

/// True for `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339, UTC).
pub fn is_rfc3339_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    let fixed = bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    let rest = &text[19.min(text.len())..];
    let fraction_ok = match rest.strip_prefix('.') {
        Some(fraction) => {
            let digits = fraction.trim_end_matches('Z');
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => rest == "Z",
    };
    fixed && fraction_ok && text.ends_with('Z')
}

// === metrics ===

/// A parsed Prometheus scrape.
pub struct Metrics {
    pub text: String,
    pub scrape: prometheus_parse::Scrape,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .unwrap_or_else(|e| panic!("metrics are not Prometheus text ({e}):\n{text}"));
        Metrics {
            text: text.to_owned(),
            scrape,
        }
    }

    /// The value of a counter or gauge sample with exactly these labels
    /// among its labels; 0 when the series is absent (a labelled counter
    /// appears with its first increment).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sample(name, labels)
            .map(|sample| match &sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name} is not a plain sample: {other:?}"),
            })
            .unwrap_or(0.0)
    }

    /// True when a sample with this name (and labels) is present.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.sample(name, labels).is_some()
    }

    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<&prometheus_parse::Sample> {
        self.scrape.samples.iter().find(|sample| {
            sample.metric == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
    }

    /// The `HELP`/`TYPE` documentation of a family, when present.
    pub fn documented(&self, family: &str) -> bool {
        self.scrape.docs.contains_key(family)
    }
}

// === logs ===

/// Parses every non-empty line of `text` as one JSON object; panics naming
/// the first line that is not one.
pub fn json_lines(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(map)) => map,
                other => panic!("log line is not a JSON object ({other:?}): {line:?}"),
            },
        )
        .collect()
}
