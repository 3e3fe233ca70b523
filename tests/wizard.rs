//! `docker-api-proxy setup` driven through a real pseudo-terminal:
//! keystrokes in, screen text out, then `--check-config` on what it wrote.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

const BIN: &str = env!("CARGO_BIN_EXE_docker-api-proxy");
const ENTER: &str = "\r";
const DOWN: &str = "j";
const UP: &str = "k";
const TOGGLE: &str = " ";

/// One wizard run in a pty, with the screen text seen so far.
struct Wizard {
    session: PtySession,
    screen: String,
}

impl Wizard {
    fn start(output: &Path) -> Wizard {
        Wizard::start_with(output, &[])
    }

    fn start_with(output: &Path, flags: &[&str]) -> Wizard {
        let mut command = Command::new(BIN);
        command
            .arg("setup")
            .args(flags)
            .arg("--output")
            .arg(output)
            .env("TERM", "xterm");
        let options = Options::default()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true);
        let session = spawn_with_options(command, options).expect("spawn the wizard in a pty");
        Wizard {
            session,
            screen: String::new(),
        }
    }

    /// Wait until `text` is on screen.
    fn expect(&mut self, text: &str) {
        match self.session.exp_string(&as_read(text)) {
            Ok(before) => {
                self.screen.push_str(&decode(&before));
                self.screen.push_str(text);
            }
            Err(error) => panic!(
                "waiting for {text:?}: {error}\nscreen so far:\n{}",
                self.screen
            ),
        }
    }

    fn keys(&mut self, keys: &str) {
        self.session.send(keys).expect("write to the pty");
        self.session.flush().expect("flush the pty");
    }

    /// Wait for `prompt`, then type `keys`.
    fn answer(&mut self, prompt: &str, keys: &str) {
        self.expect(prompt);
        self.keys(keys);
    }

    /// Wait for the end and return everything shown.
    fn finish(mut self) -> String {
        let rest = self.session.exp_eof().expect("the wizard exits");
        self.screen.push_str(&decode(&rest));
        self.screen
    }
}

/// The pty reader turns each byte into one char; `text` as it arrives.
fn as_read(text: &str) -> String {
    text.bytes().map(char::from).collect()
}

/// Undo the reader's byte-per-char decoding: the UTF-8 screen text.
fn decode(read: &str) -> String {
    let bytes: Vec<u8> = read
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `export NAME=VALUE` lines the wizard printed.
fn exports(screen: &str) -> BTreeMap<String, String> {
    screen
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Run `--check-config` on `file` with only `env` (and PATH) set.
fn check_config(file: &Path, env: &BTreeMap<String, String>) -> String {
    let output = Command::new(BIN)
        .arg("--check-config")
        .arg("--config")
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .expect("run --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "--check-config failed on {}:\n{stdout}\n{}\n--- file ---\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    stdout
}

fn assert_private(file: &Path) {
    let mode = std::fs::metadata(file)
        .expect("the wizard wrote the file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} has mode {:o}",
        file.display(),
        mode & 0o777
    );
}

/// Listener questions with defaults, no TLS; `audit` answers the audit-log
/// question.
fn listener_defaults(wizard: &mut Wizard, audit: bool) {
    wizard.answer("Port to listen on", ENTER);
    wizard.answer("Address to bind", ENTER);
    wizard.answer("Docker Engine socket", ENTER);
    wizard.answer("Serve TLS (HTTPS)", "n");
    wizard.answer("Write an audit log", if audit { "y" } else { "n" });
    if audit {
        wizard.answer("Audit log file", ENTER);
    }
}

fn no_templates_no_rules(wizard: &mut Wizard) {
    wizard.answer("When no rule decides a request", ENTER);
    wizard.answer("Rule templates to add", ENTER);
    wizard.answer("Add a custom rule?", "n");
}

#[test]
fn no_auth_path_rejects_a_bad_port_and_writes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let mut wizard = Wizard::start(&file);

    wizard.answer("Port to listen on", &format!("99999{ENTER}"));
    wizard.expect("\"99999\" is not a port: type a number from 1 to 65535");
    wizard.answer("Port to listen on", &format!("abc{ENTER}"));
    wizard.expect("\"abc\" is not a port");
    wizard.answer("Port to listen on", &format!("2399{ENTER}"));
    wizard.expect("Port to listen on · 2399");
    wizard.answer("Address to bind", &format!("localhost{ENTER}"));
    wizard.expect("\"localhost\" is not an IP address");
    wizard.answer("Address to bind", ENTER);
    wizard.answer("Docker Engine socket", &format!("docker.sock{ENTER}"));
    wizard.expect("is not an absolute path");
    wizard.answer(
        "Docker Engine socket",
        &format!("/var/run/docker.sock{ENTER}"),
    );
    wizard.answer("Serve TLS (HTTPS)", "n");
    wizard.answer("Write an audit log", "n");
    // Default is per-token roles (third); up twice wraps to "none".
    wizard.answer("How do clients authenticate?", &format!("{UP}{UP}{ENTER}"));
    wizard.expect("How do clients authenticate? · none");
    no_templates_no_rules(&mut wizard);
    let screen = wizard.finish();

    assert!(
        screen.contains(&format!("wrote {} (mode 0600)", file.display())),
        "{screen}"
    );
    assert!(
        exports(&screen).is_empty(),
        "no auth means no secrets to export:\n{screen}"
    );
    assert_private(&file);
    let report = check_config(&file, &BTreeMap::new());
    assert!(report.contains("2399"), "{report}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("type: \"none\""), "{text}");
    assert!(text.contains("socket: \"/var/run/docker.sock\""), "{text}");
}

#[test]
fn shared_secret_path_with_tls_checks_files_and_prints_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_certificate(dir.path());
    let file = dir.path().join("shared.yaml");
    let mut wizard = Wizard::start(&file);

    wizard.answer("Port to listen on", ENTER);
    wizard.answer("Address to bind", ENTER);
    wizard.answer("Docker Engine socket", ENTER);
    wizard.answer("Serve TLS (HTTPS)", "y");
    let missing = dir.path().join("missing.pem");
    wizard.answer(
        "Certificate chain (PEM file)",
        &format!("{}{ENTER}", missing.display()),
    );
    wizard.expect(&format!(
        "{} does not exist or is not a file",
        missing.display()
    ));
    wizard.answer(
        "Certificate chain (PEM file)",
        &format!("{}{ENTER}", cert.display()),
    );
    wizard.answer(
        "Private key (PEM file)",
        &format!("{}{ENTER}", key.display()),
    );
    wizard.answer("CA bundle for client certificates", ENTER);
    wizard.answer("Write an audit log", "y");
    wizard.answer("Audit log file", &format!("relative/audit.jsonl{ENTER}"));
    wizard.expect("is not an absolute path");
    wizard.answer("Audit log file", ENTER);
    wizard.answer("How do clients authenticate?", &format!("{UP}{ENTER}"));
    wizard.expect("How do clients authenticate? · shared secret");
    wizard.answer("Where should secrets live?", ENTER);
    wizard.answer("Environment variable holding it", &format!("1BAD{ENTER}"));
    wizard.expect("\"1BAD\" is not a variable name");
    wizard.answer(
        "Environment variable holding it",
        &format!("WIZARD_SHARED_SECRET{ENTER}"),
    );
    no_templates_no_rules(&mut wizard);
    let screen = wizard.finish();

    let env = exports(&screen);
    let secret = env
        .get("WIZARD_SHARED_SECRET")
        .unwrap_or_else(|| panic!("no export:\n{screen}"));
    assert_eq!(secret.len(), 64, "a 256-bit hex secret: {secret}");
    assert!(
        screen.contains("curl https://127.0.0.1:2376/_ping"),
        "{screen}"
    );
    assert_private(&file);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("secret: \"${WIZARD_SHARED_SECRET}\""),
        "{text}"
    );
    assert!(
        !text.contains(secret.as_str()),
        "the secret itself must not be in the file"
    );
    let report = check_config(&file, &env);
    assert!(report.contains("configuration is valid"), "{report}");
}

#[test]
fn per_token_roles_with_two_templates_and_a_custom_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roles.yaml");
    let mut wizard = Wizard::start(&file);

    listener_defaults(&mut wizard, true);
    wizard.answer("How do clients authenticate?", ENTER);
    wizard.expect("How do clients authenticate? · per-token roles");
    wizard.answer("Where should secrets live?", ENTER);
    wizard.answer("Role of token 1", ENTER);
    wizard.answer("Name shown in logs", ENTER);
    wizard.answer("Environment variable holding it", ENTER);
    wizard.answer("Add another token?", "y");
    wizard.answer("Role of token 2", &format!("read only{ENTER}"));
    wizard.expect("\"read only\" is not a valid role");
    wizard.answer("Role of token 2", ENTER);
    wizard.answer("Name shown in logs", ENTER);
    wizard.answer("Environment variable holding it", ENTER);
    wizard.answer("Add another token?", "n");

    wizard.answer("When no rule decides a request", ENTER);
    // Templates: body inspection (3rd) and role-based access (4th).
    wizard.answer(
        "Rule templates to add",
        &format!("{DOWN}{DOWN}{TOGGLE}{DOWN}{TOGGLE}{ENTER}"),
    );
    // Confirming with nothing chosen is refused and asked again.
    wizard.answer("Refuse container requests with", ENTER);
    wizard.expect("choose at least one item");
    wizard.answer(
        "Refuse container requests with",
        &format!("{TOGGLE}{DOWN}{TOGGLE}{DOWN}{DOWN}{TOGGLE}{ENTER}"),
    );
    wizard.answer("Roles that may only read", &format!("{TOGGLE}{ENTER}"));
    wizard.answer("Reserve docker exec for the admin role?", "y");

    wizard.answer("Add a custom rule?", "y");
    wizard.answer("Rule name", &format!("deny-privileged{ENTER}"));
    wizard.expect("a rule named \"deny-privileged\" already exists");
    wizard.answer("Rule name", &format!("pin-image-tags{ENTER}"));
    wizard.answer("Action when all its conditions hold", ENTER);
    wizard.answer(
        "Message shown to refused clients",
        &format!("pin your image tags{ENTER}"),
    );
    wizard.answer("Priority (higher runs first)", &format!("x{ENTER}"));
    wizard.expect("\"x\" is not a whole number");
    wizard.answer("Priority (higher runs first)", &format!("10{ENTER}"));
    // Field: query.NAME is the fifth entry.
    wizard.answer("Field", &format!("{DOWN}{DOWN}{DOWN}{DOWN}{ENTER}"));
    wizard.answer("Query parameter", &format!("fromImage{ENTER}"));
    // Operator: matches is the seventh entry.
    wizard.answer(
        "Operator",
        &format!("{DOWN}{DOWN}{DOWN}{DOWN}{DOWN}{DOWN}{ENTER}"),
    );
    wizard.answer("Regular expression", &format!("(latest{ENTER}"));
    wizard.expect("\"(latest\" is not a valid regex");
    wizard.answer("Regular expression", &format!(":latest${ENTER}"));
    wizard.answer("Add another condition to this rule?", "y");
    // Second condition: method in POST, with `exists` first refused.
    wizard.answer("Field", &format!("{DOWN}{ENTER}"));
    wizard.answer("Operator", &format!("{UP}{UP}{ENTER}"));
    wizard.expect("Operator · exists");
    wizard.expect("✘ \"exists\" cannot be used on field \"method\"");
    wizard.answer("Field", &format!("{DOWN}{ENTER}"));
    wizard.answer("Operator", &format!("{UP}{UP}{UP}{UP}{ENTER}"));
    wizard.answer("Values, comma-separated", &format!("POST{ENTER}"));
    wizard.answer("Add another condition to this rule?", "n");
    wizard.answer("Add a custom rule?", "n");
    let screen = wizard.finish();

    let env = exports(&screen);
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        ["DOCKER_PROXY_ADMIN_TOKEN", "DOCKER_PROXY_READONLY_TOKEN"],
        "{screen}"
    );
    assert_ne!(
        env["DOCKER_PROXY_ADMIN_TOKEN"],
        env["DOCKER_PROXY_READONLY_TOKEN"]
    );
    assert_private(&file);
    let report = check_config(&file, &env);
    for rule in [
        "deny-privileged",
        "deny-host-mounts",
        "deny-host-namespaces",
        "read-only-roles",
        "exec-needs-admin",
        "pin-image-tags",
    ] {
        assert!(report.contains(rule), "{rule} missing from:\n{report}");
    }
    assert!(
        !report.contains("deny-capabilities"),
        "not chosen:\n{report}"
    );

    // The policy does what the answers said.
    let explain = |method: &str, target: &str, token: &str| {
        Command::new(BIN)
            .args(["explain", "--config"])
            .arg(&file)
            .args([method, target, "--token", token])
            .env_clear()
            .envs(&env)
            .output()
            .expect("run explain")
            .status
            .code()
    };
    let readonly = &env["DOCKER_PROXY_READONLY_TOKEN"];
    let admin = &env["DOCKER_PROXY_ADMIN_TOKEN"];
    assert_eq!(explain("GET", "/containers/json", readonly), Some(0));
    assert_eq!(explain("POST", "/containers/x/stop", readonly), Some(1));
    assert_eq!(
        explain("POST", "/images/create?fromImage=busybox:latest", admin),
        Some(1)
    );
    assert_eq!(
        explain("POST", "/images/create?fromImage=busybox:1.36", admin),
        Some(0)
    );
}

#[test]
fn refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "keep me\n").unwrap();
    let output = Command::new(BIN)
        .arg("setup")
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
}

#[test]
fn force_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "old\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut wizard = Wizard::start_with(&file, &["--force"]);
    listener_defaults(&mut wizard, false);
    wizard.answer("How do clients authenticate?", &format!("{UP}{UP}{ENTER}"));
    no_templates_no_rules(&mut wizard);
    let screen = wizard.finish();
    assert!(screen.contains("wrote"), "{screen}");
    assert_private(&file);
    check_config(&file, &BTreeMap::new());
}

#[test]
fn refuses_to_run_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let output = Command::new(BIN)
        .arg("setup")
        .arg("--output")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs a terminal"));
    assert!(!file.exists());
}

/// A self-signed certificate for localhost: (cert.pem, key.pem).
fn write_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}
