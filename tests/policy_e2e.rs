//! End-to-end policy tests: the real `docker` CLI through the proxy running
//! the repository's example policy (`config.yaml`) to the real engine, plus
//! small policies for priority order, dry-run rules and roles.
//!
//! A refused `docker run` must print the rule's message and leave no
//! container behind; the engine is asked directly (not through the proxy)
//! whether the container exists.

#[macro_use]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    engine_container, engine_get, example_options, unique_name, wait_for, Cli, ContainerGuard,
    Output, Proxy, ProxyOptions, ADMIN_TOKEN, CI_TOKEN, ENGINE_SOCKET, IMAGE, TEST_LABEL,
};

/// config.yaml's message for volumes with driver mount options.
const VOLUME_OPTS_REFUSED: &str =
    "volumes with driver mount options (--opt type/device/o) are not allowed through this proxy";

const LONG: Duration = Duration::from_secs(60);

/// A proxy running the example policy and the docker CLI configurations
/// that send each token.
struct Setup {
    proxy: Proxy,
    dir: tempfile::TempDir,
}

impl Setup {
    fn example() -> Setup {
        let dir = tempfile::tempdir().expect("temporary directory");
        let proxy = example_options(&dir.path().join("audit.jsonl")).start();
        for (role, token) in [("admin", ADMIN_TOKEN), ("ci", CI_TOKEN)] {
            let config = dir.path().join(format!("docker-{role}"));
            std::fs::create_dir_all(&config).expect("docker config directory");
            let json = serde_json::json!({
                "HttpHeaders": { "Authorization": format!("Bearer {token}") }
            });
            std::fs::write(config.join("config.json"), json.to_string()).expect("config.json");
        }
        Setup { proxy, dir }
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// The docker CLI through the proxy, authenticated as `role`.
    fn docker_as(&self, role: &str, args: &[&str]) -> Output {
        self.proxy
            .cli(args)
            .env(
                "DOCKER_CONFIG",
                &self
                    .dir
                    .path()
                    .join(format!("docker-{role}"))
                    .display()
                    .to_string(),
            )
            .timeout(LONG)
            .run()
    }

    fn ci(&self, args: &[&str]) -> Output {
        self.docker_as("ci", args)
    }

    fn admin(&self, args: &[&str]) -> Output {
        self.docker_as("admin", args)
    }
}

/// `docker run --rm --name N --label L <extra> IMAGE true` as ci must fail
/// with `message` on stderr, and the engine must have no container N.
fn assert_run_refused(setup: &Setup, extra: &[&str], message: &str) -> Result<(), String> {
    let guard = ContainerGuard::new("refused");
    let mut args = vec!["run", "--rm", "--name", &guard.name, "--label", TEST_LABEL];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "true"]);
    let out = setup.ci(&args);
    let shown = format!(
        "docker {}: exit {}, stderr {:?}",
        extra.join(" "),
        out.status,
        out.stderr
    );
    if out.success() {
        return Err(format!("{shown}: succeeded"));
    }
    if !out.stderr.contains(message) {
        return Err(format!("{shown}: no {message:?}"));
    }
    if engine_container(&guard.name).is_some() {
        return Err(format!("{shown}: the engine created {}", guard.name));
    }
    Ok(())
}

fn assert_all_refused(setup: &Setup, cases: &[(&[&str], &str)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(extra, message)| assert_run_refused(setup, extra, message).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} refusals failed:\n{}\n--- proxy stderr ---\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        setup.proxy.stderr()
    );
}

// === the example policy with the docker CLI ===

#[test]
fn ordinary_run_works_with_the_ci_token() {
    require_engine!();
    let setup = Setup::example();
    let guard = ContainerGuard::new("ok");
    let out = setup.ci(&[
        "run",
        "--rm",
        "--name",
        &guard.name,
        "--label",
        TEST_LABEL,
        IMAGE,
        "echo",
        "ok",
    ]);
    out.assert_success("docker run --rm echo ok");
    assert_eq!(out.stdout, "ok\n");
    // Named volumes, harmless capabilities and tmpfs mounts are fine too.
    let volume = unique_name("vol");
    let out = setup.ci(&[
        "run",
        "--rm",
        "--name",
        &guard.name,
        "--label",
        TEST_LABEL,
        "-v",
        &format!("{volume}:/data"),
        "--cap-add",
        "NET_BIND_SERVICE",
        "--mount",
        "type=tmpfs,target=/scratch",
        IMAGE,
        "sh",
        "-c",
        "echo hi > /data/x && cat /data/x",
    ]);
    let _ = Cli::docker_direct()
        .args(&["volume", "rm", "-f", &volume])
        .run();
    out.assert_success("docker run with a named volume");
    assert_eq!(out.stdout, "hi\n");
}

#[test]
fn refuses_privileged_containers() {
    require_engine!();
    let setup = Setup::example();
    assert_all_refused(
        &setup,
        &[(
            &["--privileged"],
            "privileged containers are not allowed through this proxy",
        )],
    );
}

#[test]
fn refuses_host_mounts_in_every_form() {
    require_engine!();
    let setup = Setup::example();
    let message = "mounting host paths is not allowed through this proxy; use named volumes";
    assert_all_refused(
        &setup,
        &[
            (&["-v", "/:/host"], message),
            (&["-v", "/etc:/x:ro"], message),
            (
                &["--volume", "/var/run/docker.sock:/var/run/docker.sock"],
                message,
            ),
            (&["--mount", "type=bind,source=/,target=/host"], message),
            (&["--mount", "type=bind,src=/etc,dst=/x,readonly"], message),
            (
                &[
                    "--mount",
                    "type=volume,target=/host,volume-driver=local,volume-opt=type=none,\
                     volume-opt=o=bind,volume-opt=device=/",
                ],
                message,
            ),
            (
                &["--volumes-from", "some-other-container"],
                "--volumes-from is not allowed through this proxy: it inherits another \
                 container's mounts",
            ),
        ],
    );
}

#[test]
fn refuses_bind_backed_volume_create() {
    require_engine!();
    let setup = Setup::example();
    let name = unique_name("vol");
    let out = setup.ci(&[
        "volume",
        "create",
        "--driver",
        "local",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        "device=/",
        &name,
    ]);
    assert!(!out.success(), "volume create succeeded: {}", out.stdout);
    assert!(out.stderr.contains(VOLUME_OPTS_REFUSED), "{}", out.stderr);
    assert_eq!(
        engine_get(&format!("/v1.41/volumes/{name}")).status,
        404,
        "the engine created {name}"
    );
}

#[test]
fn refuses_capability_escalation_in_any_spelling() {
    require_engine!();
    let setup = Setup::example();
    let message = "adding this capability (--cap-add) is not allowed through this proxy";
    assert_all_refused(
        &setup,
        &[
            (&["--cap-add", "sys_admin"], message),
            (&["--cap-add", "SYS_ADMIN"], message),
            (&["--cap-add", "CAP_SYS_ADMIN"], message),
            (&["--cap-add", "cap_sys_admin"], message),
            (&["--cap-add", "Sys_Admin"], message),
            (&["--cap-add", "ALL"], message),
            (&["--cap-add", "all"], message),
            (&["--cap-add", "SYS_PTRACE"], message),
            (&["--cap-add", "NET_ADMIN"], message),
            (&["--cap-add", "AUDIT_READ"], message),
            (&["--cap-add", "cap_audit_read"], message),
        ],
    );
}

/// Each confinement switch is refused with a message naming confinement,
/// not capabilities.
#[test]
fn refuses_turning_off_confinement_with_a_message_that_names_it() {
    require_engine!();
    let setup = Setup::example();
    let message = "turning off confinement (--security-opt seccomp=unconfined, \
                   apparmor=unconfined or label=disable) is not allowed through this proxy";
    let unmask = "unmasking /proc and /sys (--security-opt systempaths=unconfined";
    assert_all_refused(
        &setup,
        &[
            (&["--security-opt", "seccomp=unconfined"], message),
            (&["--security-opt", "apparmor=unconfined"], message),
            (&["--security-opt", "label=disable"], message),
            (&["--security-opt", "systempaths=unconfined"], unmask),
        ],
    );
}

#[test]
fn refuses_host_namespaces() {
    require_engine!();
    let setup = Setup::example();
    let message =
        "sharing the host's or another container's namespaces is not allowed through this proxy";
    assert_all_refused(
        &setup,
        &[
            (&["--pid", "host"], message),
            (&["--network", "host"], message),
            (&["--net=host"], message),
            (&["--ipc", "host"], message),
            (&["--uts", "host"], message),
            (&["--userns", "host"], message),
            (&["--cgroupns", "host"], message),
        ],
    );
}

#[test]
fn refuses_host_devices() {
    require_engine!();
    let setup = Setup::example();
    let message =
        "host devices (--device, --device-cgroup-rule) are not allowed through this proxy";
    assert_all_refused(
        &setup,
        &[
            (&["--device", "/dev/mem"], message),
            (&["--device", "/dev/null:/dev/x:rwm"], message),
            (&["--device-cgroup-rule", "c 1:1 rwm"], message),
        ],
    );
}

#[test]
fn refuses_swarm_and_secrets_to_ci_but_not_to_admin() {
    require_engine!();
    let setup = Setup::example();
    let message =
        "swarm, secrets, configs and plugins are reserved for the operators (admin token)";
    for args in [
        &["secret", "ls"][..],
        &["config", "ls"],
        &["plugin", "ls"],
        &["node", "ls"],
    ] {
        let out = setup.ci(args);
        assert!(!out.success(), "{args:?} succeeded for ci");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    // The admin reaches the engine (plugins list fine; no swarm here).
    setup
        .admin(&["plugin", "ls"])
        .assert_success("docker plugin ls as admin");
    let out = setup.admin(&["secret", "ls"]);
    assert!(
        !out.stderr.contains(message),
        "admin refused by the rule: {}",
        out.stderr
    );
}

#[test]
fn refuses_builds_on_the_host_network() {
    require_engine!();
    let setup = Setup::example();
    let context = tempfile::tempdir().expect("build context");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN true\n"),
    )
    .expect("Dockerfile");
    let tag = format!("local/{}", unique_name("build"));
    let out = setup
        .proxy
        .cli(&["build", "--network", "host", "-t", &tag, "."])
        .env(
            "DOCKER_CONFIG",
            &setup.dir.path().join("docker-ci").display().to_string(),
        )
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(context.path())
        .timeout(LONG)
        .run();
    let _ = Cli::docker_direct().args(&["rmi", "-f", &tag]).run();
    assert!(
        !out.success(),
        "build --network host succeeded: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("builds cannot use the host network or another container's network"),
        "{}",
        out.stderr
    );
}

#[test]
fn exec_needs_the_admin_role() {
    require_engine!();
    let setup = Setup::example();
    let guard = ContainerGuard::new("exec");
    setup
        .ci(&[
            "run",
            "-d",
            "--name",
            &guard.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sleep",
            "300",
        ])
        .assert_success("docker run -d as ci");

    let out = setup.admin(&["exec", &guard.name, "echo", "from admin"]);
    out.assert_success("docker exec as admin");
    assert_eq!(out.stdout, "from admin\n");

    let out = setup.ci(&["exec", &guard.name, "echo", "from ci"]);
    assert!(
        !out.success(),
        "docker exec as ci succeeded: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("docker exec is reserved for the operators (admin token)"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("from ci"));

    // Privileged exec is refused even for the admin: deny-privileged comes
    // first (priority 100).
    let out = setup.admin(&["exec", "--privileged", &guard.name, "id"]);
    assert!(
        !out.success(),
        "docker exec --privileged succeeded: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("privileged containers are not allowed through this proxy"),
        "{}",
        out.stderr
    );
}

#[test]
fn dry_run_pull_rule_lets_the_pull_through_and_records_it() {
    require_engine!();
    let setup = Setup::example();
    let image = "registry.invalid/ci/tool:1";
    let out = setup.ci(&["pull", image]);
    // The request reached the engine, which cannot resolve the registry.
    assert!(!out.success());
    assert!(
        out.stderr.contains("registry.invalid"),
        "the engine's error should name the registry: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("watch-image-pulls"), "{}", out.stderr);

    let audit = setup.audit_path();
    let record = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|r| r["event"] == "dry_run" && r["rule_name"] == "watch-image-pulls")
    })
    .unwrap_or_else(|| {
        panic!(
            "no dry_run audit record; audit log:\n{}",
            std::fs::read_to_string(&audit).unwrap_or_default()
        )
    });
    assert_eq!(record["dry_run"], true);
    assert_eq!(record["path"], "/images/create");
    assert_eq!(record["identity"], "ci-jobs");
    assert_eq!(record["user_role"], "ci");

    let metrics = setup
        .proxy
        .request(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = metrics.text();
    assert!(
        text.contains(
            "docker_proxy_rule_decisions_total{rule=\"watch-image-pulls\",mode=\"dry_run\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("docker_proxy_requests_dry_run_total 1"),
        "{text}"
    );
}

#[test]
fn refusals_are_audited_with_the_rule() {
    require_engine!();
    let setup = Setup::example();
    assert_all_refused(&setup, &[(&["--privileged"], "privileged containers")]);
    let audit = setup.audit_path();
    let record = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|r| r["event"] == "deny")
    })
    .expect("a deny audit record");
    assert_eq!(record["rule_name"], "deny-privileged");
    assert_eq!(record["status"], 403);
    assert_eq!(record["dry_run"], false);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(CI_TOKEN), "the audit log holds a token");
}

// === small policies through the proxy ===

fn small_policy(rules: &str, default_action: &str, audit: &Path) -> ProxyOptions {
    let yaml = format!(
        "global:\n  audit_log: {}\n  default_action: {default_action}\n  metrics:\n\
         \x20   enabled: true\n\
         auth:\n  tokens:\n    - {{ token: tok-admin, role: admin, name: adm }}\n\
         \x20   - {{ token: tok-ops, role: ops, name: ops }}\n\
         \x20   - {{ token: tok-user, name: usr }}\n\
         rules:\n{rules}",
        audit.display()
    );
    ProxyOptions::new(ENGINE_SOCKET).config_file(&yaml)
}

fn get(proxy: &Proxy, token: &str, target: &str) -> support::Response {
    proxy.request(
        format!(
            "GET {target} HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn rules_run_by_priority_then_file_order() {
    require_engine!();
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
  - name: late-deny-version
    action: deny
    message: "late deny"
    conditions:
      - { field: path, operator: equals, value: /version }
  - name: early-allow-version
    priority: 10
    action: allow
    conditions:
      - { field: path, operator: equals, value: /version }
  - name: first-of-equals
    priority: 5
    action: deny
    message: "first of two equal priorities"
    conditions:
      - { field: path, operator: equals, value: /info }
  - name: second-of-equals
    priority: 5
    action: deny
    message: "second of two equal priorities"
    conditions:
      - { field: path, operator: equals, value: /info }
  - name: negative-priority-allow
    priority: -1
    action: allow
    conditions:
      - { field: path, operator: equals, value: /info }
  - name: images-for-ops
    action: require_role
    role: ops
    message: "images are for ops"
    conditions:
      - { field: path, operator: starts_with, value: /images }
  - name: allow-ping
    action: allow
    conditions:
      - { field: path, operator: equals, value: /_ping }
"#;
    let proxy = small_policy(rules, "deny", &dir.path().join("audit.jsonl")).start();

    // A higher priority later in the file runs first.
    let response = get(&proxy, "tok-user", "/v1.41/version");
    assert_eq!(response.status, 200, "{}", response.text());
    // Equal priorities keep file order.
    let response = get(&proxy, "tok-user", "/v1.41/info");
    assert_eq!(
        response.assert_json_error(403),
        "first of two equal priorities"
    );
    // require_role: the role or admin gets through; others are refused.
    assert_eq!(get(&proxy, "tok-ops", "/v1.41/images/json").status, 200);
    assert_eq!(get(&proxy, "tok-admin", "/v1.41/images/json").status, 200);
    let response = get(&proxy, "tok-user", "/v1.41/images/json");
    assert_eq!(response.assert_json_error(403), "images are for ops");
    // An explicit allow, then default_action deny for everything else,
    // with a message naming it.
    assert_eq!(get(&proxy, "tok-user", "/_ping").status, 200);
    let response = get(&proxy, "tok-user", "/v1.41/containers/json");
    let message = response.assert_json_error(403);
    assert!(message.contains("default"), "{message}");
}

#[test]
fn dry_run_rules_continue_and_are_recorded() {
    require_engine!();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let rules = r#"
  - name: would-deny-listing
    priority: 20
    action: deny
    dry_run: true
    message: "listing would be refused"
    conditions:
      - { field: path, operator: equals, value: /containers/json }
  - name: would-need-ops
    priority: 10
    action: require_role
    role: ops
    dry_run: true
    conditions:
      - { field: path, operator: equals, value: /containers/json }
  - name: real-deny-info
    action: deny
    message: "info is refused"
    conditions:
      - { field: path, operator: equals, value: /info }
"#;
    let proxy = small_policy(rules, "allow", &audit).start();

    // Both dry-run rules match and would refuse; the request still goes
    // through (default_action allow).
    let response = get(&proxy, "tok-user", "/v1.41/containers/json");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.text().starts_with('['), "{}", response.text());
    // The dry-run require_role would not refuse ops: no record for it.
    assert_eq!(get(&proxy, "tok-ops", "/v1.41/containers/json").status, 200);
    // A real deny after dry-run rules still refuses.
    let response = get(&proxy, "tok-user", "/v1.41/info");
    assert_eq!(response.assert_json_error(403), "info is refused");

    let records = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        (records.len() >= 4).then_some(records)
    })
    .unwrap_or_else(|| panic!("audit log: {:?}", std::fs::read_to_string(&audit)));
    let dry: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["event"] == "dry_run")
        .map(|r| {
            (
                r["rule_name"].as_str().unwrap_or_default().to_owned(),
                r["identity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        dry,
        vec![
            ("would-deny-listing".to_owned(), "usr".to_owned()),
            ("would-need-ops".to_owned(), "usr".to_owned()),
            ("would-deny-listing".to_owned(), "ops".to_owned()),
        ],
        "{records:#?}"
    );
    assert!(records
        .iter()
        .any(|r| r["event"] == "deny" && r["rule_name"] == "real-deny-info"));

    let text = proxy
        .request(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .text();
    for line in [
        "docker_proxy_rule_decisions_total{rule=\"would-deny-listing\",mode=\"dry_run\"} 2",
        "docker_proxy_rule_decisions_total{rule=\"would-need-ops\",mode=\"dry_run\"} 1",
        "docker_proxy_rule_decisions_total{rule=\"real-deny-info\",mode=\"enforced\"} 1",
        "docker_proxy_requests_dry_run_total 3",
        "docker_proxy_requests_denied_total 1",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
}

// === findings of the attack review (each was a working bypass) ===

/// The local volume driver passes type/device/o to mount(2) in dockerd's
/// namespaces: proc gave the host's processes, overlay a host directory.
#[test]
fn refuses_volumes_with_any_driver_mount_options() {
    require_engine!();
    let setup = Setup::example();
    let message = VOLUME_OPTS_REFUSED;
    for opts in [
        &["--opt", "type=proc", "--opt", "device=proc"][..],
        &[
            "--opt",
            "type=overlay",
            "--opt",
            "device=overlay",
            "--opt",
            "o=lowerdir=/etc:/usr",
        ],
        &["--opt", "type=sysfs", "--opt", "device=sysfs"],
    ] {
        let name = unique_name("vol");
        let mut args = vec!["volume", "create"];
        args.extend_from_slice(opts);
        args.push(&name);
        let out = setup.ci(&args);
        assert!(!out.success(), "volume create {opts:?} succeeded");
        assert!(out.stderr.contains(message), "{opts:?}: {}", out.stderr);
        assert_eq!(engine_get(&format!("/v1.41/volumes/{name}")).status, 404);
    }
    assert_run_refused(
        &setup,
        &[
            "--mount",
            "type=volume,dst=/hp,volume-opt=type=proc,volume-opt=device=proc",
        ],
        "mounting host paths is not allowed through this proxy",
    )
    .unwrap();

    // A plain named volume still works.
    let name = unique_name("vol");
    setup
        .ci(&["volume", "create", &name])
        .assert_success("plain volume create");
    Cli::docker_direct().args(&["volume", "rm", &name]).run();
}

/// `MaskedPaths: []` / `ReadonlyPaths: []` unmask /proc and make
/// /proc/sys writable, like `--security-opt systempaths=unconfined`.
#[test]
fn refuses_unmasked_proc_paths_sent_directly() {
    require_engine!();
    let setup = Setup::example();
    for field in ["MaskedPaths", "ReadonlyPaths"] {
        let guard = ContainerGuard::new("masked");
        let body = serde_json::json!({
            "Image": IMAGE,
            "Cmd": ["true"],
            "Labels": {"docker-api-proxy-test": "1"},
            "HostConfig": {field: []},
        })
        .to_string();
        let request = format!(
            "POST /v1.41/containers/create?name={} HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {CI_TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            guard.name,
            body.len()
        );
        let response = setup.proxy.request(request.as_bytes());
        assert_eq!(response.status, 403, "{field}: {}", response.text());
        assert!(
            engine_container(&guard.name).is_none(),
            "{field}: container created"
        );
    }
    assert_run_refused(
        &setup,
        &["--security-opt", "systempaths=unconfined"],
        "unmasking /proc and /sys",
    )
    .unwrap();
}

/// `--pid container:X` reads X's environment through /proc/1/environ.
#[test]
fn refuses_joining_another_containers_pid_or_ipc_namespace() {
    require_engine!();
    let setup = Setup::example();
    let target = ContainerGuard::new("target");
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &target.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sleep",
            "30",
        ])
        .run()
        .assert_success("start the target container");
    let message = "sharing the host's or another container's namespaces is not allowed";
    let pid = format!("container:{}", target.name);
    assert_all_refused(
        &setup,
        &[(&["--pid", &pid], message), (&["--ipc", &pid], message)],
    );
}

/// `docker commit` copies a container's environment into the image
/// config; image inspect must not show it.
#[test]
fn image_inspect_redacts_environment_committed_from_a_container() {
    require_engine!();
    let setup = Setup::example();
    let source = ContainerGuard::new("commit");
    let image = format!("{}:latest", unique_name("committed"));
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &source.name,
            "--label",
            TEST_LABEL,
            "-e",
            "SECRET=hunter2-committed",
            IMAGE,
            "sleep",
            "30",
        ])
        .run()
        .assert_success("start the source container");
    // Committing is for operators (see ci_cannot_commit_attach_stdin_or_link).
    setup
        .admin(&["commit", &source.name, &image])
        .assert_success("docker commit");
    let out = setup.ci(&["image", "inspect", &image]);
    Cli::docker_direct().args(&["rmi", "-f", &image]).run();
    assert!(out.success(), "image inspect failed: {}", out.stderr);
    assert!(
        !out.stdout.contains("hunter2-committed"),
        "secret shown:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("***REDACTED***"),
        "no marker:\n{}",
        out.stdout
    );
}

/// A CI job must not get around environment redaction with `docker
/// commit`, type into another container's stdin with `docker attach`
/// (POST or websocket), read another container's environment through a
/// legacy link, or drive BuildKit's control API past the /build rules.
#[test]
fn ci_cannot_commit_attach_stdin_link_or_use_grpc() {
    require_engine!();
    let setup = Setup::example();
    let victim = ContainerGuard::new("victim");
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "-i",
            "--name",
            &victim.name,
            "--label",
            TEST_LABEL,
            "-e",
            "SECRET=hunter2-victim",
            IMAGE,
            "sh",
        ])
        .run()
        .assert_success("start the victim container");

    let image = format!("{}:latest", unique_name("stolen"));
    let out = setup.ci(&["commit", &victim.name, &image]);
    let _ = Cli::docker_direct().args(&["rmi", "-f", &image]).run();
    assert!(!out.success(), "ci commit succeeded: {}", out.stdout);
    assert!(
        out.stderr
            .contains("docker commit is reserved for the operators"),
        "{}",
        out.stderr
    );

    // docker attach sends stdin=1 to a container with an open stdin.
    let out = setup
        .proxy
        .cli(&["attach", "--sig-proxy=false", &victim.name])
        .env(
            "DOCKER_CONFIG",
            &setup.dir.path().join("docker-ci").display().to_string(),
        )
        .stdin(b"echo typed-by-ci\n")
        .timeout(Duration::from_secs(20))
        .run();
    assert!(!out.success(), "ci attach succeeded: {}", out.stdout);
    // The CLI reports a refused hijack only by its status.
    assert!(out.stderr.contains("received 403"), "{}", out.stderr);
    for request in [
        format!(
            "GET /v1.41/containers/{}/attach/ws?stdin=1&stream=1 HTTP/1.1\r\nHost: docker\r\n\
             Authorization: Bearer {CI_TOKEN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            victim.name
        ),
        format!(
            "POST /v1.41/containers/{}/attach?stream=1&stdin=0&stdout=1 HTTP/1.1\r\n\
             Host: docker\r\nAuthorization: Bearer {CI_TOKEN}\r\nConnection: Upgrade\r\n\
             Upgrade: tcp\r\nContent-Length: 0\r\n\r\n",
            victim.name
        ),
        // BuildKit's control API, whatever the body.
        format!(
            "POST /grpc HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer {CI_TOKEN}\r\n\
             Connection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n"
        ),
    ] {
        let response = setup.proxy.request(request.as_bytes());
        let message = response.assert_json_error(403);
        assert!(message.contains("reserved for the operators"), "{message}");
    }

    // --link copies the victim's environment into the new container.
    let link = format!("{}:db", victim.name);
    assert_run_refused(
        &setup,
        &["--link", &link],
        "legacy container links (--link) are reserved for the operators",
    )
    .unwrap();
}

/// What CI jobs do all day still works: a foreground run (attached
/// without stdin), attach --no-stdin, logs and a classic docker build.
#[test]
fn ci_can_run_attach_without_stdin_and_build() {
    require_engine!();
    let setup = Setup::example();
    let guard = ContainerGuard::new("fg");
    let out = setup.ci(&[
        "run",
        "--rm",
        "--name",
        &guard.name,
        "--label",
        TEST_LABEL,
        IMAGE,
        "echo",
        "fg-ok",
    ]);
    out.assert_success("foreground docker run");
    assert_eq!(out.stdout, "fg-ok\n");

    let ticker = ContainerGuard::new("ticker");
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &ticker.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sh",
            "-c",
            "sleep 2; echo tick-1; sleep 30",
        ])
        .run()
        .assert_success("start the ticker");
    let mut attach = setup
        .proxy
        .cli(&["attach", "--no-stdin", "--sig-proxy=false", &ticker.name])
        .env(
            "DOCKER_CONFIG",
            &setup.dir.path().join("docker-ci").display().to_string(),
        )
        .spawn();
    attach.expect_line("tick-1", Duration::from_secs(20));
    drop(attach);

    let context = tempfile::tempdir().expect("build context");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN echo built > /built\n"),
    )
    .expect("Dockerfile");
    let tag = format!("local/{}", unique_name("cibuild"));
    let out = setup
        .proxy
        .cli(&["build", "--label", TEST_LABEL, "-t", &tag, "."])
        .env(
            "DOCKER_CONFIG",
            &setup.dir.path().join("docker-ci").display().to_string(),
        )
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(context.path())
        .timeout(LONG)
        .run();
    let _ = Cli::docker_direct().args(&["rmi", "-f", &tag]).run();
    out.assert_success("docker build with the ci token");
}

// === findings of the CI-token penetration test ===

/// A raw request with the CI token and an optional JSON body.
fn ci_request(setup: &Setup, method: &str, target: &str, body: &str) -> support::Response {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nAuthorization: Bearer {CI_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    setup.proxy.request(request.as_bytes())
}

/// A background `sleep` container started on the engine directly, with a
/// secret in its environment.
fn start_victim(prefix: &str) -> ContainerGuard {
    let victim = ContainerGuard::new(prefix);
    Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &victim.name,
            "--label",
            TEST_LABEL,
            "-e",
            "SECRET=hunter2-top",
            IMAGE,
            "sleep",
            "300",
        ])
        .run()
        .assert_success("start the victim container");
    victim
}

/// `docker top C e` runs the host's ps with BSD `e`, which prints every
/// process's environment; plain `docker top C` (no ps_args) and `-ef` work.
#[test]
fn ci_top_with_environment_ps_args_is_refused_plain_top_works() {
    require_engine!();
    let setup = Setup::example();
    let victim = start_victim("top");
    let message = "docker top with ps options other than -ef, -e, -A or aux is reserved \
                   for the operators (admin token)";
    for args in [&["e"][..], &["-o", "pid,args", "e"], &["ef"], &["aux", "e"]] {
        let mut command = vec!["top", victim.name.as_str()];
        command.extend_from_slice(args);
        let out = setup.ci(&command);
        assert!(!out.success(), "{command:?} succeeded: {}", out.stdout);
        assert!(out.stderr.contains(message), "{command:?}: {}", out.stderr);
        assert!(
            !out.stdout.contains("hunter2-top"),
            "{command:?}: {}",
            out.stdout
        );
    }
    let response = get(
        &setup.proxy,
        CI_TOKEN,
        &format!("/v1.41/containers/{}/top?ps_args=e", victim.name),
    );
    assert!(response.assert_json_error(403).contains(message));

    let out = setup.ci(&["top", &victim.name]);
    out.assert_success("plain docker top as ci");
    assert!(out.stdout.contains("sleep 300"), "{}", out.stdout);
    assert!(!out.stdout.contains("hunter2-top"), "{}", out.stdout);
    setup
        .ci(&["top", &victim.name, "-ef"])
        .assert_success("docker top C -ef as ci");
    // Operators may pass any ps options.
    setup
        .admin(&["top", &victim.name, "-o", "pid,args"])
        .assert_success("docker top with -o as admin");
}

/// An inline custom seccomp profile (what `--security-opt seccomp=FILE`
/// sends) turns seccomp off as surely as `unconfined`; no-new-privileges
/// still works.
#[test]
fn ci_custom_confinement_profiles_are_refused_no_new_privileges_works() {
    require_engine!();
    let setup = Setup::example();
    let dir = tempfile::tempdir().expect("profile directory");
    let profile = dir.path().join("allow-all.json");
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).expect("profile");
    let seccomp = format!("seccomp={}", profile.display());
    let message = "choosing a seccomp profile, AppArmor profile or SELinux label \
                   (--security-opt seccomp=..., apparmor=..., label=...) \
                   is reserved for the operators";
    assert_all_refused(
        &setup,
        &[
            (&["--security-opt", &seccomp], message),
            (&["--security-opt", "apparmor=docker-default"], message),
            (&["--security-opt", "label=type:container_t"], message),
            (&["--security-opt", "label:level:s0"], message),
        ],
    );
    // Sent directly: any key case, and dockerd's bare "disable" (label disable).
    for opt in [
        r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#,
        " Seccomp = x",
        "disable",
    ] {
        let guard = ContainerGuard::new("secopt");
        let body = serde_json::json!({
            "Image": IMAGE,
            "Cmd": ["true"],
            "Labels": {"docker-api-proxy-test": "1"},
            "HostConfig": {"SecurityOpt": ["no-new-privileges", opt]},
        })
        .to_string();
        let response = ci_request(
            &setup,
            "POST",
            &format!("/v1.41/containers/create?name={}", guard.name),
            &body,
        );
        let refusal = response.assert_json_error(403);
        assert!(refusal.contains(message), "{opt:?}: {refusal}");
        assert!(engine_container(&guard.name).is_none(), "{opt:?}: created");
    }

    let guard = ContainerGuard::new("nnp");
    let out = setup.ci(&[
        "run",
        "--rm",
        "--name",
        &guard.name,
        "--label",
        TEST_LABEL,
        "--security-opt",
        "no-new-privileges",
        IMAGE,
        "echo",
        "nnp-ok",
    ]);
    out.assert_success("docker run --security-opt no-new-privileges as ci");
    assert_eq!(out.stdout, "nnp-ok\n");
}

/// `docker cp SRC C:PATH` writes into another job's container; copying out
/// keeps working, and operators may copy in.
#[test]
fn ci_cannot_copy_into_containers_but_can_copy_out() {
    require_engine!();
    let setup = Setup::example();
    let victim = start_victim("cp");
    let dir = tempfile::tempdir().expect("copy directory");
    let file = dir.path().join("payload");
    std::fs::write(&file, "payload\n").expect("payload");
    let into = format!("{}:/tmp/", victim.name);
    let out = setup.ci(&["cp", &file.display().to_string(), &into]);
    assert!(!out.success(), "docker cp into a container succeeded as ci");
    assert!(
        out.stderr.contains(
            "copying files into a container (docker cp SRC CONTAINER:PATH) is reserved \
             for the operators (admin token)"
        ),
        "{}",
        out.stderr
    );
    let listing = Cli::docker_direct()
        .args(&["exec", &victim.name, "ls", "/tmp"])
        .run();
    listing.assert_success("list /tmp on the engine");
    assert!(!listing.stdout.contains("payload"), "{}", listing.stdout);

    let response = ci_request(
        &setup,
        "PUT",
        &format!("/v1.41/containers/{}/archive?path=/bin", victim.name),
        "",
    );
    assert!(response
        .assert_json_error(403)
        .contains("reserved for the operators"));

    let out_path = dir.path().join("hostname");
    setup
        .ci(&[
            "cp",
            &format!("{}:/etc/hostname", victim.name),
            &out_path.display().to_string(),
        ])
        .assert_success("docker cp out of a container as ci");
    assert!(std::fs::metadata(&out_path).is_ok(), "nothing copied out");

    setup
        .admin(&["cp", &file.display().to_string(), &into])
        .assert_success("docker cp into a container as admin");
}

/// `--network container:X` and a UTS namespace `container:X` join another
/// container's namespaces, and so does a build with networkmode=container:X.
#[test]
fn ci_cannot_join_another_containers_network_or_uts_namespace() {
    require_engine!();
    let setup = Setup::example();
    let victim = start_victim("netns");
    let message = "sharing the host's or another container's namespaces is not allowed";
    let mode = format!("container:{}", victim.name);
    assert_all_refused(&setup, &[(&["--network", &mode], message)]);
    for field in ["NetworkMode", "UTSMode"] {
        let guard = ContainerGuard::new("ns");
        let body = serde_json::json!({
            "Image": IMAGE,
            "Cmd": ["true"],
            "Labels": {"docker-api-proxy-test": "1"},
            "HostConfig": {field: mode},
        })
        .to_string();
        let response = ci_request(
            &setup,
            "POST",
            &format!("/v1.41/containers/create?name={}", guard.name),
            &body,
        );
        assert!(response.assert_json_error(403).contains(message), "{field}");
        assert!(engine_container(&guard.name).is_none(), "{field}: created");
    }
    let response = ci_request(
        &setup,
        "POST",
        &format!("/v1.41/build?networkmode=container:{}", victim.name),
        "",
    );
    assert!(response
        .assert_json_error(403)
        .contains("builds cannot use the host network or another container's network"));
}

/// `docker build URL` (BuildKit sends remote=URL) and `docker import URL`
/// make dockerd fetch from the host's network; `docker import -` works.
#[test]
fn ci_builds_and_imports_from_urls_are_refused_import_from_stdin_works() {
    require_engine!();
    let setup = Setup::example();
    let message = "builds and imports from a URL (docker build URL, docker import URL) \
                   are reserved for the operators (admin token)";
    for target in [
        "/v1.41/build?remote=http://127.0.0.1:1/x",
        "/v1.41/build?remote=https%3A%2F%2F169.254.169.254%2F",
        "/v1.41/build?remote=git%40127.0.0.1%3Ax.git",
        "/v1.41/images/create?fromSrc=http://127.0.0.1:1/x&repo=local/ssrf",
        "/v1.41/images/create?fromSrc=127.0.0.1:1",
        "/v1.41/images/create?fromSrc=",
    ] {
        let response = ci_request(&setup, "POST", target, "");
        assert!(
            response.assert_json_error(403).contains(message),
            "{target}"
        );
    }
    let tag = format!("local/{}", unique_name("import"));
    let out = setup.ci(&["import", "http://127.0.0.1:1/x", &tag]);
    assert!(!out.success(), "docker import URL succeeded");
    assert!(out.stderr.contains(message), "{}", out.stderr);

    let dir = tempfile::tempdir().expect("import directory");
    std::fs::write(dir.path().join("hello"), "hi\n").expect("file");
    let tar = std::process::Command::new("tar")
        .args(["-C"])
        .arg(dir.path())
        .args(["-cf", "-", "hello"])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar failed");
    let out = setup
        .proxy
        .cli(&["import", "-", &tag])
        .env(
            "DOCKER_CONFIG",
            &setup.dir.path().join("docker-ci").display().to_string(),
        )
        .stdin(&tar.stdout)
        .timeout(LONG)
        .run();
    let _ = Cli::docker_direct().args(&["rmi", "-f", &tag]).run();
    out.assert_success("docker import - as ci");
}

/// `--gpus` sends DeviceRequests; refused for CI jobs.
#[test]
fn ci_device_requests_are_refused() {
    require_engine!();
    let setup = Setup::example();
    let message = "device requests (--gpus) are reserved for the operators (admin token)";
    assert_all_refused(
        &setup,
        &[
            (&["--gpus", "all"], message),
            (&["--gpus", "device=0"], message),
        ],
    );
    let guard = ContainerGuard::new("devreq");
    let body = serde_json::json!({
        "Image": IMAGE,
        "Cmd": ["true"],
        "HostConfig": {"DeviceRequests": [{"Driver": "nvidia", "Count": -1}]},
    })
    .to_string();
    let response = ci_request(
        &setup,
        "POST",
        &format!("/v1.41/containers/create?name={}", guard.name),
        &body,
    );
    assert!(response.assert_json_error(403).contains(message));
    assert!(engine_container(&guard.name).is_none(), "created");
}
