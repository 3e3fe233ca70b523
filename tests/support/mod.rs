//! Shared harness for the integration and end-to-end tests.
//!
//! Starts the proxy binary on a free loopback port with a temporary config
//! file, drives the real `docker` CLI and raw HTTP through it, and runs a
//! fake engine on a temporary unix socket for framing corner cases. Every
//! wait has a deadline; every process and container a test starts is
//! cleaned up by a guard, also when the test fails.

#![allow(dead_code)]

pub mod ops;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod certs;
pub mod startup;

/// The engine socket the end-to-end tests talk to.
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// The image CI builds from a static busybox (see `.ci/run`).
pub const IMAGE: &str = "local/busybox";
/// Label put on every container the tests create.
pub const TEST_LABEL: &str = "docker-api-proxy-test=1";

/// Default bound for one socket read or one CLI call.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

// === engine availability ===

/// True when the real engine answers `_ping` on its socket.
pub fn engine_available() -> bool {
    let Ok(mut stream) = UnixStream::connect(ENGINE_SOCKET) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.") && answer.ends_with(b"OK")
}

/// Returns false (after a loud message) when no engine is reachable and the
/// test should be skipped; panics instead when `CI` is set.
pub fn require_engine(test: &str) -> bool {
    if engine_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: the Docker Engine at {ENGINE_SOCKET} does not answer _ping, and CI is set");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED {test}: no Docker Engine answers _ping at {ENGINE_SOCKET}.\n\
         !! Start dockerd (see .ci/run) to run the end-to-end tests.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// Sends one raw request to the real engine's socket and reads the
/// response to the end (send `Connection: close` or HTTP/1.0).
pub fn engine_request(request: &[u8]) -> Response {
    let mut stream = UnixStream::connect(ENGINE_SOCKET)
        .unwrap_or_else(|e| panic!("connect {ENGINE_SOCKET}: {e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream.write_all(request).expect("write to the engine");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("read the engine's answer");
    let end = find(&answer, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head from the engine: {:?}", lossy(&answer)));
    let mut response = parse_head(&answer[..end]);
    response.body = answer[end + 4..].to_vec();
    response
}

/// `GET path` on the real engine, bypassing the proxy.
pub fn engine_get(path: &str) -> Response {
    engine_request(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
}

/// The engine's inspect document of a container, `None` when the engine
/// has no container of that name.
pub fn engine_container(name: &str) -> Option<serde_json::Value> {
    let response = engine_get(&format!("/v1.41/containers/{name}/json"));
    match response.status {
        200 => Some(response.json()),
        404 => None,
        other => panic!(
            "inspecting {name} on the engine: {other} {:?}",
            response.text()
        ),
    }
}

/// Skips (returns from) the calling test when no engine is available.
#[allow(unused_macros)]
macro_rules! require_engine {
    () => {
        if !support::require_engine(module_path!()) {
            return;
        }
    };
}

// === waiting ===

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A name no other test (or earlier run) uses.
/// A `docker events --since` value two seconds back, so that an event
/// caused right after the stream opens (or just before) is never missed.
pub fn events_since() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .saturating_sub(2)
        .to_string()
}

pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("dap-{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

// === the proxy process ===

/// Driver selection for a proxy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// monoio's default (io_uring where available).
    Default,
    /// `MONOIO_FORCE_LEGACY_DRIVER=1`: epoll.
    Epoll,
}

/// How to start one proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub socket: PathBuf,
    pub driver: Driver,
    pub workers: usize,
    /// YAML lines placed under `global.limits` (indented by the harness).
    pub limits: Vec<String>,
    /// Replaces the `auth:` section entirely (`None`: `type: none`).
    pub auth_yaml: Option<String>,
    /// Leave the auth section out (fail-closed tests).
    pub omit_auth: bool,
    /// Do not set `DOCKER_PROXY_PORT`/`DOCKER_SOCKET`: the config file
    /// alone must carry the port and socket.
    pub config_only: bool,
    pub env: Vec<(String, String)>,
    /// A complete config file used instead of the generated one (the port
    /// and socket still come from the environment unless `config_only`).
    pub config_text: Option<String>,
    /// YAML blocks placed under `global:` (indented by the harness).
    pub global_yaml: Vec<String>,
    /// The top-level `rules:` section, appended verbatim.
    pub rules_yaml: Option<String>,
    /// Write no config file and pass no `--config`: the proxy runs in an
    /// empty temporary working directory (no `./config.yaml`) with port
    /// and socket from the environment (see `startup.rs`).
    pub no_config_file: bool,
}

impl ProxyOptions {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ProxyOptions {
            socket: socket.into(),
            driver: Driver::Default,
            workers: 2,
            limits: Vec::new(),
            auth_yaml: None,
            omit_auth: false,
            config_only: false,
            env: Vec::new(),
            config_text: None,
            global_yaml: Vec::new(),
            rules_yaml: None,
            no_config_file: false,
        }
    }

    /// Runs the proxy on this complete config file instead of the
    /// generated one; `global.port`/`global.socket` in it are overridden
    /// by the environment as usual.
    pub fn config_file(mut self, yaml: &str) -> Self {
        self.config_text = Some(yaml.to_owned());
        self
    }

    pub fn driver(mut self, driver: Driver) -> Self {
        self.driver = driver;
        self
    }

    pub fn limit(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.limits.push(format!("{key}: {value}"));
        self
    }

    pub fn without_auth_section(mut self) -> Self {
        self.omit_auth = true;
        self
    }

    pub fn auth(mut self, yaml: &str) -> Self {
        self.auth_yaml = Some(yaml.to_owned());
        self
    }

    pub fn config_only(mut self) -> Self {
        self.config_only = true;
        self
    }

    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn start(self) -> Proxy {
        Proxy::start(self)
    }
}

/// A running proxy, killed (by its PID) on drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub socket: PathBuf,
    stderr_path: PathBuf,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

fn config_yaml(options: &ProxyOptions, port: u16) -> String {
    let mut yaml = format!(
        "global:\n  port: {port}\n  bind: 127.0.0.1\n  socket: {}\n  workers: {}\n",
        options.socket.display(),
        options.workers
    );
    for block in &options.global_yaml {
        for line in block.lines() {
            yaml.push_str(&format!("  {line}\n"));
        }
    }
    if !options.limits.is_empty() {
        yaml.push_str("  limits:\n");
        for line in &options.limits {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    if !options.omit_auth {
        match &options.auth_yaml {
            Some(auth) => yaml.push_str(auth),
            None => yaml.push_str("auth:\n  type: none\n"),
        }
    }
    if let Some(rules) = &options.rules_yaml {
        yaml.push_str(rules);
        if !rules.ends_with('\n') {
            yaml.push('\n');
        }
    }
    yaml
}

impl Proxy {
    /// Starts the proxy in front of the real engine with default options.
    pub fn engine() -> Proxy {
        ProxyOptions::new(ENGINE_SOCKET).start()
    }

    /// Same, on the given driver.
    pub fn engine_on(driver: Driver) -> Proxy {
        ProxyOptions::new(ENGINE_SOCKET).driver(driver).start()
    }

    pub fn start(options: ProxyOptions) -> Proxy {
        // A port picked by another test between our drop and the proxy's
        // bind makes the start fail; try a few ports before giving up.
        let mut last_error = String::new();
        for _ in 0..3 {
            match Proxy::try_start(&options) {
                Ok(proxy) => return proxy,
                // Only an early exit (a lost port race) is worth a retry.
                Err(error) if error.starts_with("exited early") => last_error = error,
                Err(error) => panic!("the proxy did not start: {error}"),
            }
        }
        panic!("the proxy did not start: {last_error}");
    }

    fn try_start(options: &ProxyOptions) -> Result<Proxy, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log file");
        let mut command = options.command(dir.path(), port);
        command.stdout(Stdio::null()).stderr(stderr);
        let child = command.spawn().expect("spawn the proxy binary");
        let mut proxy = Proxy {
            child,
            port,
            socket: options.socket.clone(),
            stderr_path,
            dir,
        };
        proxy.wait_ready()?;
        Ok(proxy)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exited early with {status}; stderr:\n{}",
                    self.stderr()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not accepting after 15 s; stderr:\n{}",
                    self.stderr()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The proxy's temporary working directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of the proxy");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// A new raw client connection.
    pub fn connect(&self) -> RawClient {
        RawClient::connect(&self.addr())
    }

    /// Sends one request on a fresh connection and reads its response.
    pub fn request(&self, bytes: &[u8]) -> Response {
        let mut client = self.connect();
        client.send(bytes);
        client.read_response_for(method_of(bytes))
    }

    /// Runs the docker CLI through this proxy.
    pub fn docker(&self, args: &[&str]) -> Output {
        Cli::docker(self).args(args).run()
    }

    /// A docker CLI command through this proxy, to be configured further.
    pub fn cli(&self, args: &[&str]) -> Cli {
        Cli::docker(self).args(args)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- proxy stderr (port {}) ---\n{}",
                self.port,
                self.stderr()
            );
        }
    }
}

// === the example policy (config.yaml at the repository root) ===

/// Token of role `admin` given to the example policy.
pub const ADMIN_TOKEN: &str = "example-admin-token-7f3a";
/// Token of role `ci` given to the example policy.
pub const CI_TOKEN: &str = "example-ci-token-91c2";

/// The repository's `config.yaml` with its audit log moved to `audit_log`.
pub fn example_policy(audit_log: &Path) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");
    let text = std::fs::read_to_string(path).expect("read config.yaml");
    let original = "audit_log: /var/log/docker-api-proxy/audit.jsonl";
    assert!(
        text.contains(original),
        "config.yaml no longer has {original:?}"
    );
    text.replace(original, &format!("audit_log: {}", audit_log.display()))
}

/// Options running the example policy in front of the real engine, with
/// the admin and ci tokens in the environment.
pub fn example_options(audit_log: &Path) -> ProxyOptions {
    ProxyOptions::new(ENGINE_SOCKET)
        .config_file(&example_policy(audit_log))
        .env("DOCKER_PROXY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DOCKER_PROXY_CI_TOKEN", CI_TOKEN)
}

// === running commands ===

/// Captured result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with both streams unless the command succeeded.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.success(),
            "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A command with a timeout, optional stdin bytes and environment.
pub struct Cli {
    command: Command,
    description: String,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cli {
    pub fn new(program: &str) -> Cli {
        let mut command = Command::new(program);
        command
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        Cli {
            command,
            description: program.to_owned(),
            stdin: None,
            timeout: IO_TIMEOUT,
        }
    }

    /// The docker CLI pointed at the proxy.
    pub fn docker(proxy: &Proxy) -> Cli {
        let mut cli = Cli::new("docker");
        cli.command.env("DOCKER_HOST", proxy.docker_host());
        cli
    }

    /// The docker CLI talking to the engine directly (cleanup only).
    pub fn docker_direct() -> Cli {
        let mut cli = Cli::new("docker");
        cli.command
            .env("DOCKER_HOST", format!("unix://{ENGINE_SOCKET}"));
        cli
    }

    pub fn args(mut self, args: &[&str]) -> Cli {
        for arg in args {
            self.description.push(' ');
            self.description.push_str(arg);
        }
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.command.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Cli {
        self.command.current_dir(dir);
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Cli {
        self.stdin = Some(bytes.to_vec());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Cli {
        self.timeout = timeout;
        self
    }

    /// Runs to completion; panics (after killing it) past the timeout.
    pub fn run(mut self) -> Output {
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        self.command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.description));
        let writer = self.stdin.take().map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        let stdout = read_all_in_thread(child.stdout.take().expect("stdout pipe"));
        let stderr = read_all_in_thread(child.stderr.take().expect("stderr pipe"));
        let status = wait_for(self.timeout, || child.try_wait().ok().flatten());
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            let out = stdout.join().unwrap_or_default();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "`{}` did not finish within {:?}\nstdout:\n{out}\nstderr:\n{err}",
                self.description, self.timeout
            );
        };
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// Starts the command and streams its stdout lines.
    pub fn spawn(mut self) -> Running {
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.description));
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout pipe");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = read_all_in_thread(child.stderr.take().expect("stderr pipe"));
        Running {
            child,
            lines,
            stderr: Some(stderr),
            description: self.description,
            seen: Vec::new(),
        }
    }
}

fn read_all_in_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A command still running, killed (by its PID) on drop.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    description: String,
    pub seen: Vec<String>,
}

impl Running {
    /// Waits for a stdout line containing `needle`; panics past `timeout`.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let stderr = self
                        .stderr
                        .take()
                        .and_then(|h| h.join().ok())
                        .unwrap_or_default();
                    panic!(
                        "`{}`: no line containing {needle:?} within {timeout:?}\n\
                         lines seen: {:?}\nstderr:\n{stderr}",
                        self.description, self.seen
                    );
                }
            }
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        match wait_for(timeout, || self.child.try_wait().ok().flatten()) {
            Some(status) => status,
            None => panic!("`{}` still running after {timeout:?}", self.description),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` under a pseudo-terminal (util-linux `script`).
pub fn in_pty(proxy: &Proxy, command: &str) -> Cli {
    Cli::new("script")
        .args(&["-qec", command, "/dev/null"])
        .env("DOCKER_HOST", &proxy.docker_host())
}

// === containers ===

/// Removes its container (and image, if set) on drop, through the engine
/// socket directly so cleanup works even when the proxy is broken.
pub struct ContainerGuard {
    pub name: String,
}

impl ContainerGuard {
    pub fn new(prefix: &str) -> ContainerGuard {
        ContainerGuard {
            name: unique_name(prefix),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Cli::docker_direct()
            .args(&["rm", "-f", "-v", &self.name])
            .timeout(Duration::from_secs(30))
            .try_run();
    }
}

/// Removes an image tag on drop.
pub struct ImageGuard {
    pub tag: String,
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Cli::docker_direct()
            .args(&["rmi", "-f", &self.tag])
            .timeout(Duration::from_secs(30))
            .try_run();
    }
}

impl Cli {
    /// Like `run` but never panics (for cleanup).
    pub fn try_run(self) -> Option<Output> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())).ok()
    }
}

// === raw HTTP client ===

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts the status and a JSON `{"message": ...}` body; returns it.
    pub fn assert_json_error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "unexpected response: {self:?} body {:?}",
            self.text()
        );
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "content type {content_type:?}"
        );
        let value = self.json();
        let message = value["message"].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "no message in {value}");
        message
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// Method of a raw request, for response framing.
pub fn method_of(request: &[u8]) -> &str {
    let end = request.iter().position(|&b| b == b' ').unwrap_or(0);
    std::str::from_utf8(&request[..end]).unwrap_or("")
}

/// A client connection that sends exact bytes and parses responses.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
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

    /// Connects from a chosen local address (e.g. `127.0.0.2`, to look like
    /// another client IP on loopback).
    pub fn connect_from(local: std::net::IpAddr, addr: &str) -> RawClient {
        let remote: std::net::SocketAddr = addr.parse().expect("a socket address");
        let domain = if remote.is_ipv6() {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
        socket
            .bind(&std::net::SocketAddr::new(local, 0).into())
            .unwrap_or_else(|e| panic!("bind {local}: {e}"));
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

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the proxy");
    }

    /// Reads more bytes into the buffer; false on EOF.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn fill_or_panic(&mut self, what: &str) {
        match self.fill() {
            Ok(true) => {}
            Ok(false) => panic!(
                "connection closed while reading {what}; have {:?}",
                lossy(&self.buf)
            ),
            Err(e) => panic!("reading {what}: {e}; have {:?}", lossy(&self.buf)),
        }
    }

    /// Reads one response head (status line and headers).
    pub fn read_head(&mut self) -> Response {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill_or_panic("a response head");
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        parse_head(&head[..end])
    }

    /// Reads a full response to a request with the given method.
    pub fn read_response_for(&mut self, method: &str) -> Response {
        let mut response = self.read_head();
        while (100..200).contains(&response.status) && response.status != 101 {
            response = self.read_head();
        }
        response.body = self.read_body(&response, method);
        response
    }

    /// Reads the body belonging to an already read head.
    pub fn read_body_for(&mut self, head: &Response, method: &str) -> Vec<u8> {
        self.read_body(head, method)
    }

    /// Reads until the received bytes contain `needle` (nothing consumed).
    pub fn wait_for_bytes(&mut self, needle: &[u8]) {
        while find(&self.buf, needle).is_none() {
            self.fill_or_panic("expected bytes");
        }
    }

    /// Streams `length` body bytes through `sink` without keeping them.
    pub fn stream_body(&mut self, length: u64, mut sink: impl FnMut(&[u8])) {
        let mut left = length;
        loop {
            let take = (left as usize).min(self.buf.len());
            if take > 0 {
                sink(&self.buf[..take]);
                self.buf.drain(..take);
                left -= take as u64;
            }
            if left == 0 {
                return;
            }
            self.fill_or_panic("a streamed body");
        }
    }

    pub fn read_response(&mut self) -> Response {
        self.read_response_for("GET")
    }

    fn read_body(&mut self, head: &Response, method: &str) -> Vec<u8> {
        let bodiless = method == "HEAD"
            || matches!(head.status, 101 | 204 | 304)
            || (100..200).contains(&head.status);
        if bodiless {
            return Vec::new();
        }
        if head.is_chunked() {
            return self.read_chunked();
        }
        if let Some(length) = head.header("content-length") {
            let length: usize = length.trim().parse().expect("numeric Content-Length");
            return self.read_exact_body(length);
        }
        self.read_to_close()
    }

    pub fn read_exact_body(&mut self, length: usize) -> Vec<u8> {
        while self.buf.len() < length {
            self.fill_or_panic("a Content-Length body");
        }
        self.buf.drain(..length).collect()
    }

    fn read_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return line[..i].to_vec();
            }
            self.fill_or_panic("a chunk line");
        }
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line();
            let size = lossy(&line);
            let size = size.split(';').next().unwrap_or("").trim().to_owned();
            let size = usize::from_str_radix(&size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {:?}", lossy(&line)));
            if size == 0 {
                // Trailer section up to the empty line.
                while !self.read_line().is_empty() {}
                return body;
            }
            body.extend(self.read_exact_body(size));
            let crlf = self.read_exact_body(2);
            assert_eq!(crlf, b"\r\n", "chunk not followed by CRLF");
        }
    }

    /// Reads until the peer closes; panics on timeout.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return std::mem::take(&mut self.buf),
                Err(e) => panic!("waiting for close: {e}; have {} bytes", self.buf.len()),
            }
        }
    }

    /// Reads exactly `n` raw bytes (after a 101, for instance).
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        self.read_exact_body(n)
    }

    /// True when the peer closed (EOF) within the read timeout and sent
    /// nothing more (errors such as reset count as closed too).
    pub fn closed_within(&mut self, timeout: Duration) -> Result<(), String> {
        self.set_read_timeout(timeout);
        let result = loop {
            match self.fill() {
                Ok(false) => break Ok(()),
                Ok(true) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break Err(format!("still open after {timeout:?}"))
                }
                Err(_) => break Ok(()),
            }
        };
        self.set_read_timeout(IO_TIMEOUT);
        result
    }

    /// Bytes received but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown write");
    }
}

fn parse_head(head: &[u8]) -> Response {
    let text = lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(
        version.starts_with("HTTP/1."),
        "not an HTTP/1 response: {text:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// === fake engine ===

/// A request as the fake engine received it.
#[derive(Debug, Clone, Default)]
pub struct EngineRequest {
    pub method: String,
    pub target: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The head exactly as received.
    pub raw_head: Vec<u8>,
}

impl EngineRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// One accepted engine-side connection with a read buffer.
pub struct EngineConn {
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl EngineConn {
    fn new(stream: UnixStream) -> EngineConn {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        EngineConn {
            stream,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Reads the next request head; `None` on a clean EOF between
    /// requests or a read error. The body is left unread.
    ///
    /// The proxy pings the engine on its own (readiness); `GET`/`HEAD
    /// /_ping` is answered here so that test logic never sees those.
    pub fn read_head(&mut self) -> Option<EngineRequest> {
        loop {
            let request = self.read_any_head()?;
            let bodiless =
                !request.has_header("content-length") && !request.has_header("transfer-encoding");
            if request.target == "/_ping" && bodiless && request.method == "GET" {
                self.respond(200, "text/plain", b"OK");
            } else if request.target == "/_ping" && bodiless && request.method == "HEAD" {
                self.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n",
                );
            } else {
                return Some(request);
            }
        }
    }

    fn read_any_head(&mut self) -> Option<EngineRequest> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if !self.fill().ok()? {
                return None;
            }
        };
        let raw_head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = lossy(&raw_head[..end]);
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let method = first.next()?.to_owned();
        let target = first.next()?.to_owned();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(EngineRequest {
            method,
            target,
            headers,
            body: Vec::new(),
            raw_head,
        })
    }

    /// Reads a whole request including its body (Content-Length or chunked).
    pub fn read_request(&mut self) -> Option<EngineRequest> {
        let mut request = self.read_head()?;
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            request.body = self.read_chunked_body()?;
        } else if let Some(length) = request.header("content-length") {
            let length: usize = length.parse().ok()?;
            request.body = self.read_exact(length)?;
        }
        Some(request)
    }

    pub fn read_exact(&mut self, length: usize) -> Option<Vec<u8>> {
        while self.buf.len() < length {
            if !self.fill().ok()? {
                return None;
            }
        }
        Some(self.buf.drain(..length).collect())
    }

    fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(line[..i].to_vec());
            }
            if !self.fill().ok()? {
                return None;
            }
        }
    }

    fn read_chunked_body(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = lossy(&self.read_line()?);
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !self.read_line()?.is_empty() {}
                return Some(body);
            }
            body.extend(self.read_exact(size)?);
            self.read_exact(2)?;
        }
    }

    /// Streams a body of `length` bytes (or chunked when `None`) through
    /// `sink` without keeping it; returns the byte count.
    pub fn drain_body(
        &mut self,
        request: &EngineRequest,
        mut sink: impl FnMut(&[u8]),
    ) -> Option<u64> {
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut total = 0u64;
        if chunked {
            loop {
                let line = lossy(&self.read_line()?);
                let mut size = u64::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    return Some(total);
                }
                while size > 0 {
                    if self.buf.is_empty() && !self.fill().ok()? {
                        return None;
                    }
                    let take = (size as usize).min(self.buf.len());
                    sink(&self.buf[..take]);
                    self.buf.drain(..take);
                    size -= take as u64;
                    total += take as u64;
                }
                self.read_exact(2)?;
            }
        }
        let mut left: u64 = request.header("content-length")?.parse().ok()?;
        while left > 0 {
            if self.buf.is_empty() && !self.fill().ok()? {
                return None;
            }
            let take = (left as usize).min(self.buf.len());
            sink(&self.buf[..take]);
            self.buf.drain(..take);
            left -= take as u64;
            total += take as u64;
        }
        Some(total)
    }

    /// Bytes read past the last parsed request.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads whatever arrives next (pending bytes first); empty on EOF.
    pub fn read_some(&mut self) -> std::io::Result<Vec<u8>> {
        if !self.buf.is_empty() {
            return Ok(std::mem::take(&mut self.buf));
        }
        self.fill()?;
        Ok(std::mem::take(&mut self.buf))
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Writes a complete response with a Content-Length body.
    pub fn respond(&mut self, status: u16, content_type: &str, body: &[u8]) {
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Api-Version: 1.41\r\n\r\n",
            body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.write(&out);
    }
}

type Handler = dyn Fn(&mut EngineConn) + Send + Sync + 'static;

/// A fake engine on a temporary unix socket: one thread per connection,
/// each running the handler. Stopped on drop.
pub struct FakeEngine {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
    /// Requests recorded by handlers that call `record`.
    pub recorded: Arc<Mutex<Vec<EngineRequest>>>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl FakeEngine {
    /// Starts on a fresh temporary socket path.
    pub fn start(handler: impl Fn(&mut EngineConn) + Send + Sync + 'static) -> FakeEngine {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("engine.sock");
        let mut engine = FakeEngine::start_at(&path, handler);
        engine._dir = Some(dir);
        engine
    }

    /// Starts on a given path (which must not exist yet).
    pub fn start_at(
        path: &Path,
        handler: impl Fn(&mut EngineConn) + Send + Sync + 'static,
    ) -> FakeEngine {
        let listener =
            UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let stop = stop.clone();
            let connections = connections.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    thread::spawn(move || handler(&mut EngineConn::new(stream)));
                }
            })
        };
        FakeEngine {
            path: path.to_owned(),
            _dir: None,
            stop,
            connections,
            recorded: Arc::new(Mutex::new(Vec::new())),
            accept_thread: Some(accept_thread),
        }
    }

    /// A proxy in front of this engine on the given driver.
    pub fn proxy(&self, driver: Driver) -> Proxy {
        ProxyOptions::new(&self.path).driver(driver).start()
    }

    pub fn options(&self) -> ProxyOptions {
        ProxyOptions::new(&self.path)
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A handler that answers every request on the connection with `200` and
/// a small JSON body, recording each request.
pub fn recording_handler(
    store: Arc<Mutex<Vec<EngineRequest>>>,
) -> impl Fn(&mut EngineConn) + Send + Sync {
    move |conn: &mut EngineConn| {
        while let Some(request) = conn.read_request() {
            store.lock().unwrap().push(request);
            conn.respond(200, "application/json", b"{\"ok\":true}");
        }
    }
}

/// Parses `a=b` pairs of a query string (no decoding), for assertions.
pub fn query_pairs(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Generates one `#[test]` per driver calling `$body(Driver)`.
#[allow(unused_macros)]
macro_rules! on_both_drivers {
    ($($name:ident => $body:path;)+) => {
        $(
            mod $name {
                use super::*;
                #[test]
                fn io_uring() {
                    $body(support::Driver::Default)
                }
                #[test]
                fn epoll() {
                    $body(support::Driver::Epoll)
                }
            }
        )+
    };
}
