//! `scripts/setup` into a scratch root and `scripts/build` packaging.
//!
//! The setup script runs with `--root <tmp>`, so nothing on the host is
//! touched: no user is created and systemd is not driven.

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
        "readonly-get-only",
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
    ] {
        assert!(
            unpacked.join(file).is_file(),
            "{file} missing from the tarball"
        );
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
