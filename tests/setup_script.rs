//! `scripts/setup` into a scratch root and `scripts/build` packaging.
//!
//! The setup script runs with `--root <tmp>`, so nothing on the host is
//! touched: no user is created and systemd is not driven.

#[macro_use]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_docker-api-proxy");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn setup(root: &Path, extra: &[&str]) -> Output {
    Command::new(repo().join("scripts/setup"))
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(BIN)
        .args(extra)
        .env_remove("DOCKER_PROXY_SECRET")
        .output()
        .expect("run scripts/setup")
}

fn assert_ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn token(env: &str, name: &str) -> String {
    env.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing from env file:\n{env}"))
        .to_owned()
}

/// Loud skip, or a failure when CI is set.
fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {reason}");
    }
    eprintln!("\n!!! SKIPPED: {reason} !!!\n");
}

#[test]
fn installs_into_a_scratch_root_twice_and_keeps_tokens() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let first = assert_ok(&setup(root, &[]), "first setup");
    assert!(first.contains("generated tokens"), "{first}");
    assert!(
        first.contains("DOCKER_HOST=tcp://127.0.0.1:2376"),
        "{first}"
    );
    assert!(
        first.contains("\"HttpHeaders\": { \"Authorization\": \"Bearer <token>\" }"),
        "{first}"
    );
    assert!(
        first.contains("curl -H \"Authorization: Bearer <token>\""),
        "{first}"
    );

    let binary = root.join("usr/local/bin/docker-api-proxy");
    let config = root.join("etc/docker-api-proxy/config.yaml");
    let env_file = root.join("etc/docker-api-proxy/env");
    let unit = root.join("etc/systemd/system/docker-api-proxy.service");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&env_file), 0o600);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(mode(&root.join("etc/docker-api-proxy")), 0o750);
    assert!(root.join("var/log/docker-api-proxy").is_dir());
    assert!(
        !root.join("usr/sbin/docker-proxy").exists()
            && !root.join("usr/local/bin/docker-proxy").exists()
    );

    let env = read(&env_file);
    let admin = token(&env, "DOCKER_PROXY_ADMIN_TOKEN");
    let readonly = token(&env, "DOCKER_PROXY_READONLY_TOKEN");
    for value in [&admin, &readonly] {
        assert_eq!(value.len(), 64, "{value}");
        assert!(value.chars().all(|c| c.is_ascii_hexdigit()), "{value}");
    }
    assert_ne!(admin, readonly);
    let config_text = read(&config);
    assert!(
        config_text.contains("token: ${DOCKER_PROXY_ADMIN_TOKEN}"),
        "{config_text}"
    );
    assert!(
        config_text.contains("token: ${DOCKER_PROXY_READONLY_TOKEN}"),
        "{config_text}"
    );
    assert!(config_text.contains("audit_log: /var/log/docker-api-proxy/audit.jsonl"));
    assert!(!config_text.contains(&admin), "no token in the config file");

    // The policy loads and does what the script says.
    let check = Command::new(&binary)
        .args(["--check-config", "--config"])
        .arg(&config)
        .env("DOCKER_PROXY_ADMIN_TOKEN", &admin)
        .env("DOCKER_PROXY_READONLY_TOKEN", &readonly)
        .output()
        .unwrap();
    let report = assert_ok(&check, "--check-config");
    for rule in [
        "readonly-look-only",
        "deny-bind-volumes",
        "deny-top-level-host-settings",
        "deny-privileged",
        "deny-host-mounts",
        "deny-capabilities",
        "deny-host-namespaces",
    ] {
        assert!(report.contains(rule), "{rule} missing:\n{report}");
    }
    let explain = |method: &str, target: &str, token: &str| {
        Command::new(&binary)
            .args(["explain", "--config"])
            .arg(&config)
            .args([method, target, "--token", token])
            .env("DOCKER_PROXY_ADMIN_TOKEN", &admin)
            .env("DOCKER_PROXY_READONLY_TOKEN", &readonly)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(explain("GET", "/containers/json", &readonly), Some(0));
    assert_eq!(explain("HEAD", "/_ping", &readonly), Some(0));
    assert_eq!(explain("POST", "/containers/abc/stop", &readonly), Some(1));
    assert_eq!(explain("POST", "/containers/abc/stop", &admin), Some(0));

    let unit_text = read(&unit);
    for directive in [
        "Type=notify",
        "ExecStart=/usr/local/bin/docker-api-proxy --config /etc/docker-api-proxy/config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "EnvironmentFile=/etc/docker-api-proxy/env",
        "User=docker-api-proxy",
        "Group=docker-api-proxy",
        "SupplementaryGroups=docker",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=\n",
        "LogsDirectory=docker-api-proxy",
        "ReadWritePaths=/var/log/docker-api-proxy",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit_text.contains(directive),
            "unit lacks {directive:?}:\n{unit_text}"
        );
    }

    // Second run: nothing regenerated, nothing rewritten.
    let second = assert_ok(&setup(root, &[]), "second setup");
    assert!(second.contains("keeping tokens"), "{second}");
    assert!(second.contains("keeping existing"), "{second}");
    assert_eq!(read(&env_file), env, "tokens changed on the second run");
    assert_eq!(
        read(&config),
        config_text,
        "config changed on the second run"
    );
    assert_eq!(read(&unit), unit_text);

    // --force-config rewrites the policy (keeping a backup) but not tokens.
    std::fs::write(&config, format!("{config_text}\n# operator edit\n")).unwrap();
    assert_ok(&setup(root, &["--force-config"]), "setup --force-config");
    assert_eq!(read(&config), config_text);
    assert!(read(&config.with_extension("yaml.bak")).contains("# operator edit"));
    assert_eq!(read(&env_file), env);
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip("systemd-analyze is not installed; the unit was not verified");
    }
    let root = tempfile::tempdir().unwrap();
    assert_ok(&setup(root.path(), &[]), "setup");
    // Verify checks that ExecStart exists: point it at the scratch binary.
    let unit = read(
        &root
            .path()
            .join("etc/systemd/system/docker-api-proxy.service"),
    );
    let binary = root.path().join("usr/local/bin/docker-api-proxy");
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/docker-api-proxy",
        &format!("ExecStart={}", binary.display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-api-proxy.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn uninstall_removes_what_setup_created_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // Things that were there before setup.
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::write(root.join("etc/ssh/sshd_config"), "unrelated\n").unwrap();
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::write(root.join("usr/local/bin/other-tool"), "#!/bin/sh\n").unwrap();

    assert_ok(&setup(root, &[]), "setup");
    let audit = root.join("var/log/docker-api-proxy/audit.jsonl");
    std::fs::write(&audit, "{}\n").unwrap();

    let output = Command::new(repo().join("scripts/setup"))
        .arg("--root")
        .arg(root)
        .arg("--uninstall")
        .output()
        .unwrap();
    let stdout = assert_ok(&output, "setup --uninstall");
    for gone in [
        "usr/local/bin/docker-api-proxy",
        "etc/docker-api-proxy",
        "etc/systemd/system/docker-api-proxy.service",
        "etc/systemd",
    ] {
        assert!(
            !root.join(gone).exists(),
            "{gone} survived --uninstall:\n{stdout}"
        );
    }
    assert_eq!(read(&root.join("etc/ssh/sshd_config")), "unrelated\n");
    assert!(root.join("usr/local/bin/other-tool").is_file());
    assert_eq!(read(&audit), "{}\n", "audit logs are kept without --purge");

    let output = Command::new(repo().join("scripts/setup"))
        .arg("--root")
        .arg(root)
        .args(["--uninstall", "--purge"])
        .output()
        .unwrap();
    assert_ok(&output, "setup --uninstall --purge");
    assert!(!root.join("var/log/docker-api-proxy").exists());
    assert_eq!(read(&root.join("etc/ssh/sshd_config")), "unrelated\n");
}

#[test]
fn refuses_to_run_without_root() {
    // A copy of the script that an unprivileged user can read and run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("setup");
    std::fs::copy(repo().join("scripts/setup"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut command = if is_root {
        if Command::new("setpriv").arg("--version").output().is_err() {
            return skip("running as root without setpriv: cannot test the non-root refusal");
        }
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&script);
        command
    } else {
        Command::new(&script)
    };
    let output = command
        .current_dir(dir.path())
        .arg("--binary")
        .arg("/bin/true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("must run as root") && stderr.contains("--root DIR"),
        "{stderr}"
    );
}

#[test]
fn build_script_packs_a_tarball_that_verifies() {
    let out = tempfile::tempdir().unwrap();
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    // scripts/build builds with --target; a plain `cargo build --release`
    // leaves its binary in target/release. Either is reused.
    let built = [
        format!("target/{host}/release/docker-api-proxy"),
        "target/release/docker-api-proxy".into(),
    ]
    .iter()
    .any(|path| repo().join(path).is_file());
    let mut command = Command::new(repo().join("scripts/build"));
    command.arg("--out").arg(out.path());
    if std::env::var_os("DOCKER_API_PROXY_TEST_RELEASE_BUILD").is_some() {
        // Full optimised build, as an operator runs it.
    } else if built {
        command.arg("--skip-build");
    } else {
        eprintln!(
            "\nnote: no target/release binary; packaging the test binary instead of a slow \
             release build (set DOCKER_API_PROXY_TEST_RELEASE_BUILD=1 for the full build)\n"
        );
        command.arg("--binary").arg(BIN);
    }
    assert_ok(&command.output().unwrap(), "scripts/build");

    let version = env!("CARGO_PKG_VERSION");
    let stem = format!("docker-api-proxy-{version}-{host}");
    let tarball = out.path().join(format!("{stem}.tar.gz"));
    assert!(tarball.is_file(), "{} missing", tarball.display());

    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out.path())
        .output()
        .unwrap();
    let sums_out = assert_ok(&sums, "sha256sum -c");
    assert!(
        sums_out.contains(&format!("{stem}.tar.gz: OK")),
        "{sums_out}"
    );

    let extract = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .current_dir(out.path())
        .output()
        .unwrap();
    assert_ok(&extract, "tar -x");
    let unpacked = out.path().join(&stem);
    for file in [
        "docker-api-proxy",
        "README.md",
        "config.yaml",
        "scripts/setup",
        "docs/install.md",
        "docs/policy.md",
        "docs/rules.md",
        "docs/http.md",
        "docs/architecture.md",
    ] {
        assert!(
            unpacked.join(file).is_file(),
            "{file} missing from the tarball"
        );
    }
    // Every relative docs link in the packed README and docs resolves.
    for doc in [
        "README.md",
        "docs/install.md",
        "docs/policy.md",
        "docs/rules.md",
    ] {
        let text = read(&unpacked.join(doc));
        let base = unpacked.join(doc).parent().unwrap().to_path_buf();
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            assert!(
                base.join(target).exists(),
                "{doc} links {target}, which is not in the tarball"
            );
        }
    }
    let binary = unpacked.join("docker-api-proxy");
    let version_out = assert_ok(
        &Command::new(&binary).arg("--version").output().unwrap(),
        "--version",
    );
    assert_eq!(version_out.trim(), format!("docker-api-proxy {version}"));
    let bytes = std::fs::read(&binary).unwrap();
    assert!(
        !bytes.windows(7).any(|w| w == b".symtab"),
        "the packed binary still has a symbol table (not stripped)"
    );
}

// === the installed policy is config.yaml's host protection ===

fn rules_of(text: &str, what: &str) -> Vec<serde_json::Value> {
    let value: serde_json::Value =
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    value["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{what} has no rules list"))
        .clone()
}

/// Every enforcing rule of config.yaml (deny, require_role, redaction; not
/// the CI-specific rate limit or the dry-run example) is in the setup
/// policy, unchanged.
#[test]
fn setup_policy_carries_every_protection_rule_of_config_yaml() {
    let root = tempfile::tempdir().unwrap();
    assert_ok(&setup(root.path(), &[]), "setup");
    let installed = read(&root.path().join("etc/docker-api-proxy/config.yaml"));
    let installed = rules_of(&installed, "the setup policy");
    let example = rules_of(&read(&repo().join("config.yaml")), "config.yaml");
    let mut checked = Vec::new();
    for rule in &example {
        let action = rule["action"].as_str().unwrap_or_default();
        if !matches!(action, "deny" | "require_role" | "response_filter")
            || rule["dry_run"] == serde_json::Value::Bool(true)
        {
            continue;
        }
        let name = rule["name"].as_str().unwrap();
        let copy = installed
            .iter()
            .find(|r| r["name"] == rule["name"])
            .unwrap_or_else(|| panic!("the setup policy lacks config.yaml's rule {name}"));
        assert_eq!(
            copy, rule,
            "rule {name} differs between config.yaml and setup"
        );
        checked.push(name.to_owned());
    }
    for name in [
        "deny-privileged",
        "deny-host-mounts",
        "deny-bind-volumes",
        "deny-top-level-host-settings",
        "deny-legacy-api-versions",
        "deny-unmasked-system-paths",
        "deny-host-namespaces",
        "deny-commit",
        "deny-buildkit-control",
        "exec-needs-admin",
        "attach-input-needs-admin",
        "redact-image-env",
        "deny-confinement-profiles",
        "deny-device-requests",
        "deny-remote-fetches",
        "deny-top-ps-args",
        "copy-in-needs-admin",
    ] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name} not compared: {checked:?}"
        );
    }
}

/// Runs a copy of scripts/setup with `config` (or no file) as the
/// config.yaml beside it; returns whether it succeeded, its stderr, and
/// whether it wrote a policy.
fn setup_with_config_yaml(config: Option<&str>) -> (bool, String, bool) {
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir(copy.path().join("scripts")).unwrap();
    std::fs::copy(
        repo().join("scripts/setup"),
        copy.path().join("scripts/setup"),
    )
    .unwrap();
    if let Some(config) = config {
        std::fs::write(copy.path().join("config.yaml"), config).unwrap();
    }
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(copy.path().join("scripts/setup"))
        .arg("--root")
        .arg(root.path())
        .arg("--binary")
        .arg(BIN)
        .env_remove("DOCKER_PROXY_SECRET")
        .output()
        .unwrap();
    let written = root
        .path()
        .join("etc/docker-api-proxy/config.yaml")
        .exists();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr, written)
}

/// setup refuses to write a policy without config.yaml's block.
#[test]
fn setup_without_config_yaml_beside_it_refuses() {
    let (ok, stderr, written) = setup_with_config_yaml(None);
    assert!(!ok, "setup succeeded without config.yaml");
    assert!(stderr.contains("config.yaml"), "{stderr}");
    assert!(!written);
}

/// A missing, repeated or misordered marker would copy too little, too
/// much (every rule twice) or nothing: setup refuses each.
#[test]
fn setup_refuses_a_config_yaml_without_exactly_one_marked_block() {
    let full = read(&repo().join("config.yaml"));
    let begin = "  # === BEGIN shared host protection";
    let end = "  # === END shared host protection";
    let (ok, stderr, _) = setup_with_config_yaml(Some(&full));
    assert!(ok, "setup failed with the shipped config.yaml: {stderr}");
    let block_start = full.find(begin).unwrap();
    let block_end = full[block_start..].find(end).unwrap() + block_start;
    let block_end = block_end + full[block_end..].find('\n').unwrap() + 1;
    let block = &full[block_start..block_end];
    let cases = [
        (
            "no BEGIN",
            full.replace(begin, "  # === shared host protection"),
        ),
        (
            "no END",
            full.replace(end, "  # === shared host protection"),
        ),
        (
            "two blocks",
            full.replace(block, &format!("{block}{block}")),
        ),
        (
            "END before BEGIN",
            full.replace(begin, "  # @@")
                .replace(end, begin)
                .replace("  # @@", end),
        ),
    ];
    for (what, config) in cases {
        let (ok, stderr, written) = setup_with_config_yaml(Some(&config));
        assert!(!ok, "{what}: setup succeeded");
        assert!(
            stderr.contains("shared host protection"),
            "{what}: {stderr}"
        );
        assert!(!written, "{what}: a policy was written");
    }
}

/// The installed policy, run by the real proxy in front of the real engine:
/// the escapes found against the old setup policy are refused.
#[test]
fn setup_policy_refuses_bind_volumes_top_level_privileged_and_readonly_attach() {
    require_engine!();
    let root = tempfile::tempdir().unwrap();
    assert_ok(&setup(root.path(), &[]), "setup");
    let env = read(&root.path().join("etc/docker-api-proxy/env"));
    let admin = token(&env, "DOCKER_PROXY_ADMIN_TOKEN");
    let readonly = token(&env, "DOCKER_PROXY_READONLY_TOKEN");
    let audit = root.path().join("audit.jsonl");
    let policy = read(&root.path().join("etc/docker-api-proxy/config.yaml")).replace(
        "audit_log: /var/log/docker-api-proxy/audit.jsonl",
        &format!("audit_log: {}", audit.display()),
    );
    let proxy = support::ProxyOptions::new(support::ENGINE_SOCKET)
        .config_file(&policy)
        .env("DOCKER_PROXY_ADMIN_TOKEN", &admin)
        .env("DOCKER_PROXY_READONLY_TOKEN", &readonly)
        .start();
    let docker_config = root.path().join("docker-admin");
    std::fs::create_dir(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        serde_json::json!({"HttpHeaders": {"Authorization": format!("Bearer {admin}")}})
            .to_string(),
    )
    .unwrap();

    // A local-driver volume binding host /etc, even with the admin token.
    let volume = support::unique_name("bindvol");
    let out = proxy
        .cli(&[
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            "device=/etc",
            &volume,
        ])
        .env("DOCKER_CONFIG", &docker_config.display().to_string())
        .run();
    let created = support::engine_get(&format!("/volumes/{volume}")).status == 200;
    if created {
        support::Cli::docker_direct()
            .args(&["volume", "rm", "-f", &volume])
            .run();
    }
    assert!(!out.success(), "bind volume created: {}", out.stdout);
    assert!(
        out.stderr.contains("volumes with driver mount options"),
        "{}",
        out.stderr
    );
    assert!(!created, "the engine created volume {volume}");

    // "Privileged" at the top level of the create body (old API versions).
    let guard = support::ContainerGuard::new("toplevel");
    let body = format!(r#"{{"Image":"{}","Privileged":true}}"#, support::IMAGE);
    let response = proxy.request(
        format!(
            "POST /v1.41/containers/create?name={} HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            guard.name,
            body.len()
        )
        .as_bytes(),
    );
    let message = response.assert_json_error(403);
    assert!(message.contains("under HostConfig"), "{message}");
    assert!(support::engine_container(&guard.name).is_none());

    // The readonly token may look, but not attach (websocket GET or POST).
    let target = support::ContainerGuard::new("shell");
    support::Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "-i",
            "--name",
            &target.name,
            "--label",
            support::TEST_LABEL,
            support::IMAGE,
            "sh",
        ])
        .run()
        .assert_success("start an interactive container");
    let looked = proxy.request(
        format!(
            "GET /v1.41/containers/{}/json HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {readonly}\r\n\r\n",
            target.name
        )
        .as_bytes(),
    );
    assert_eq!(looked.status, 200, "readonly inspect: {}", looked.text());
    let requests = [
        format!(
            "GET /v1.41/containers/{}/attach/ws?stdin=1&stream=1 HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {readonly}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            target.name
        ),
        format!(
            "GET /v1.41/containers/{}/attach/ws?stdin=1&stream=1 HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {readonly}\r\n\r\n",
            target.name
        ),
        format!(
            "POST /v1.41/containers/{}/attach?stdin=1&stream=1 HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {readonly}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
             Content-Length: 0\r\n\r\n",
            target.name
        ),
    ];
    for request in &requests {
        let response = proxy.request(request.as_bytes());
        let message = response.assert_json_error(403);
        assert!(message.contains("read-only"), "{message}");
    }
}
