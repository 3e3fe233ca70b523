//! End-to-end: the real `docker` CLI through the proxy to the real engine.
//!
//! Each test starts its own proxy and names its containers uniquely, so the
//! tests run in parallel. Without an engine they are skipped loudly (or
//! fail, when `CI` is set).

#[macro_use]
mod support;

use std::time::Duration;

use support::{ContainerGuard, Driver, ImageGuard, Proxy, IMAGE, TEST_LABEL};

const LONG: Duration = Duration::from_secs(60);

/// Starts a detached container running `script`; removed on drop.
fn run_detached(proxy: &Proxy, prefix: &str, script: &str) -> ContainerGuard {
    let guard = ContainerGuard::new(prefix);
    proxy
        .docker(&[
            "run",
            "-d",
            "--name",
            &guard.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .assert_success("docker run -d");
    guard
}

fn sleeper(proxy: &Proxy, prefix: &str) -> ContainerGuard {
    run_detached(proxy, prefix, "sleep 300")
}

// === flows shared by both drivers ===

fn version_negotiates_api_1_41(driver: Driver) {
    require_engine!();
    let proxy = Proxy::engine_on(driver);
    let out = proxy.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]);
    out.assert_success("docker version");
    assert_eq!(
        out.stdout.trim(),
        "1.41 1.41",
        "server and negotiated client API versions"
    );
}

fn run_rm_prints_output(driver: Driver) {
    require_engine!();
    let proxy = Proxy::engine_on(driver);
    let guard = ContainerGuard::new("run");
    let out = proxy.docker(&[
        "run",
        "--rm",
        "--name",
        &guard.name,
        "--label",
        TEST_LABEL,
        IMAGE,
        "echo",
        "hello from busybox",
    ]);
    out.assert_success("docker run --rm");
    assert_eq!(out.stdout, "hello from busybox\n");
}

fn exec_output_arrives_after_a_delay(driver: Driver) {
    require_engine!();
    let proxy = Proxy::engine_on(driver);
    let container = sleeper(&proxy, "exec");
    let out = proxy.docker(&[
        "exec",
        &container.name,
        "sh",
        "-c",
        "sleep 2; echo late-output",
    ]);
    out.assert_success("docker exec");
    assert_eq!(out.stdout, "late-output\n");
}

fn logs_follow_streams_while_container_writes(driver: Driver) {
    require_engine!();
    let proxy = Proxy::engine_on(driver);
    let script = "echo first-line; while [ ! -e /tmp/finish ]; do sleep 0.1; done; echo last-line";
    let container = run_detached(&proxy, "logs", script);
    let mut logs = proxy
        .cli(&["logs", "-f", &container.name])
        .timeout(LONG)
        .spawn();

    logs.expect_line("first-line", Duration::from_secs(20));
    // The container is still waiting for /tmp/finish, so the line above
    // came through a live stream, not a finished log.
    let running = proxy.docker(&["inspect", "-f", "{{.State.Running}}", &container.name]);
    assert_eq!(
        running.stdout.trim(),
        "true",
        "container finished before the first line arrived"
    );

    proxy
        .docker(&["exec", &container.name, "touch", "/tmp/finish"])
        .assert_success("docker exec touch");
    logs.expect_line("last-line", Duration::from_secs(20));
    let status = logs.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "docker logs -f exited with {status}");
}

on_both_drivers! {
    version_reports_api_1_41 => version_negotiates_api_1_41;
    run_rm_prints_container_output => run_rm_prints_output;
    exec_prints_output_written_after_a_delay => exec_output_arrives_after_a_delay;
    logs_follow_streams_lines_while_container_runs => logs_follow_streams_while_container_writes;
}

// === default driver only ===

#[test]
fn ps_lists_a_running_container() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "ps");
    let out = proxy.docker(&["ps", "--format", "{{.Names}}"]);
    out.assert_success("docker ps");
    assert!(
        out.stdout.lines().any(|l| l == container.name),
        "{} not in:\n{}",
        container.name,
        out.stdout
    );
}

#[test]
fn exec_interactive_passes_piped_stdin() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "execi");
    let out = proxy
        .cli(&[
            "exec",
            "-i",
            &container.name,
            "sh",
            "-c",
            "tr a-z A-Z; echo stdin-closed",
        ])
        .stdin(b"piped through exec\n")
        .run();
    out.assert_success("docker exec -i");
    assert_eq!(out.stdout, "PIPED THROUGH EXEC\nstdin-closed\n");
}

#[test]
fn run_interactive_passes_piped_stdin() {
    require_engine!();
    let proxy = Proxy::engine();
    let guard = ContainerGuard::new("runi");
    let out = proxy
        .cli(&[
            "run",
            "-i",
            "--rm",
            "--name",
            &guard.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "sh",
            "-c",
            "wc -l; echo done",
        ])
        .stdin(b"one\ntwo\nthree\n")
        .run();
    out.assert_success("docker run -i");
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["3", "done"]
    );
}

#[test]
fn run_tty_allocates_a_terminal() {
    require_engine!();
    let proxy = Proxy::engine();
    let guard = ContainerGuard::new("runt");
    let command = format!(
        "docker run -t --rm --name {} --label {TEST_LABEL} {IMAGE} sh -c 'tty; echo tty-done'",
        guard.name
    );
    let out = support::in_pty(&proxy, &command).run();
    out.assert_success("docker run -t");
    assert!(
        out.stdout.contains("/dev/pts/"),
        "no terminal in container: {:?}",
        out.stdout
    );
    assert!(out.stdout.contains("tty-done"), "{:?}", out.stdout);
}

#[test]
fn run_interactive_tty_shell_reads_typed_commands() {
    require_engine!();
    let proxy = Proxy::engine();
    let guard = ContainerGuard::new("runit");
    let command = format!(
        "docker run -it --rm --name {} --label {TEST_LABEL} {IMAGE} sh",
        guard.name
    );
    let out = support::in_pty(&proxy, &command)
        .stdin(b"echo answer-$((6*7)); exit\n")
        .run();
    out.assert_success("docker run -it");
    assert!(
        out.stdout.contains("answer-42"),
        "shell output: {:?}",
        out.stdout
    );
}

#[test]
fn exec_tty_allocates_a_terminal() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "exect");
    let command = format!(
        "docker exec -t {} sh -c 'tty; echo exec-tty-done'",
        container.name
    );
    let out = support::in_pty(&proxy, &command).run();
    out.assert_success("docker exec -t");
    assert!(
        out.stdout.contains("/dev/pts/"),
        "no terminal in exec: {:?}",
        out.stdout
    );
    assert!(out.stdout.contains("exec-tty-done"), "{:?}", out.stdout);
}

#[test]
fn attach_receives_container_output() {
    require_engine!();
    let proxy = Proxy::engine();
    let script = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done";
    let container = run_detached(&proxy, "attach", script);
    let mut attach = proxy
        .cli(&["attach", "--no-stdin", "--sig-proxy=false", &container.name])
        .timeout(LONG)
        .spawn();
    let first = attach.expect_line("tick-", Duration::from_secs(20));
    // Two more distinct lines prove the stream keeps flowing.
    attach.expect_line("tick-", Duration::from_secs(10));
    let third = attach.expect_line("tick-", Duration::from_secs(10));
    assert_ne!(first, third);
}

#[test]
fn events_stream_delivers_events_caused_during_the_test() {
    require_engine!();
    let proxy = Proxy::engine();
    let first = ContainerGuard::new("events1");
    let second = ContainerGuard::new("events2");
    let since = support::events_since();
    let mut events = proxy
        .cli(&[
            "events",
            "--since",
            &since,
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .timeout(LONG)
        .spawn();
    proxy
        .docker(&[
            "create",
            "--name",
            &first.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "true",
        ])
        .assert_success("create");
    events.expect_line(&format!("create {}", first.name), Duration::from_secs(20));
    // This event happens after the stream has demonstrably delivered one,
    // so it can only arrive through the live stream.
    proxy
        .docker(&[
            "create",
            "--name",
            &second.name,
            "--label",
            TEST_LABEL,
            IMAGE,
            "true",
        ])
        .assert_success("create");
    events.expect_line(&format!("create {}", second.name), Duration::from_secs(20));
}

#[test]
fn stats_no_stream_reports_the_container() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "stats");
    let out = proxy
        .cli(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}}",
            &container.name,
        ])
        .timeout(LONG)
        .run();
    out.assert_success("docker stats --no-stream");
    assert!(
        out.stdout.starts_with(&container.name),
        "stats output: {:?}",
        out.stdout
    );
    assert!(
        out.stdout.contains("B"),
        "no memory usage in {:?}",
        out.stdout
    );
}

#[test]
fn build_classic_builder_uses_uploaded_context() {
    require_engine!();
    let proxy = Proxy::engine();
    let context = tempfile::tempdir().expect("build context");
    std::fs::write(
        context.path().join("greeting.txt"),
        "built through the proxy\n",
    )
    .unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY greeting.txt /greeting.txt\nRUN cat /greeting.txt\n"),
    )
    .unwrap();
    let image = ImageGuard {
        tag: format!("local/{}:test", support::unique_name("build")),
    };
    let out = proxy
        .cli(&["build", "--label", TEST_LABEL, "-t", &image.tag, "."])
        .current_dir(context.path())
        .env("DOCKER_BUILDKIT", "0")
        .timeout(Duration::from_secs(120))
        .run();
    out.assert_success("docker build");
    assert!(
        out.stdout.contains("built through the proxy"),
        "RUN output missing: {}",
        out.stdout
    );
    assert!(out.stdout.contains("Successfully tagged"), "{}", out.stdout);

    let guard = ContainerGuard::new("built");
    let run = proxy.docker(&[
        "run",
        "--rm",
        "--name",
        &guard.name,
        &image.tag,
        "cat",
        "/greeting.txt",
    ]);
    run.assert_success("run built image");
    assert_eq!(run.stdout, "built through the proxy\n");
}

#[test]
fn cp_copies_files_into_and_out_of_a_container() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "cp");
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = dir.path().join("in.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &content).unwrap();

    let into = format!("{}:/tmp/copied.bin", container.name);
    proxy
        .docker(&["cp", source.to_str().unwrap(), &into])
        .assert_success("docker cp in");
    let size = proxy.docker(&["exec", &container.name, "wc", "-c", "/tmp/copied.bin"]);
    assert_eq!(size.stdout.split_whitespace().next(), Some("300000"));

    let back = dir.path().join("out.bin");
    proxy
        .docker(&["cp", &into, back.to_str().unwrap()])
        .assert_success("docker cp out");
    assert!(
        std::fs::read(&back).unwrap() == content,
        "file copied back differs"
    );
}

#[test]
fn inspect_shows_container_details() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "inspect");
    let out = proxy.docker(&[
        "inspect",
        "-f",
        "{{.Name}} {{.Config.Image}} {{.State.Running}}",
        &container.name,
    ]);
    out.assert_success("docker inspect");
    assert_eq!(
        out.stdout.trim(),
        format!("/{} {IMAGE} true", container.name)
    );
    let json = proxy.docker(&["inspect", &container.name]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("inspect prints JSON");
    assert_eq!(value[0]["Config"]["Labels"]["docker-api-proxy-test"], "1");
}

#[test]
fn rm_force_removes_a_running_container() {
    require_engine!();
    let proxy = Proxy::engine();
    let container = sleeper(&proxy, "rm");
    let out = proxy.docker(&["rm", "-f", &container.name]);
    out.assert_success("docker rm -f");
    assert_eq!(out.stdout.trim(), container.name);
    let filter = format!("name=^{}$", container.name);
    let left = proxy.docker(&["ps", "-a", "-q", "--filter", &filter]);
    left.assert_success("docker ps -a");
    assert_eq!(left.stdout.trim(), "", "container still listed");
}

/// A client that leaves a followed stream on a quiet container releases
/// its connection: the CLI's close is noticed once its kernel resets the
/// connection (net.ipv4.tcp_fin_timeout, 60 s by default, plus probes).
#[test]
fn killed_logs_follow_on_a_quiet_container_releases_its_connection() {
    require_engine!();
    let proxy = support::ProxyOptions::new(support::ENGINE_SOCKET)
        .global("metrics:\n  enabled: true")
        .global("log_level: debug")
        .start();
    // The scrape's own connection counts too.
    let active = || {
        proxy
            .scrape("/metrics")
            .value("docker_proxy_active_connections", &[])
            - 1.0
    };
    // Started directly on the engine: `docker run -d` leaves a wait stream
    // of its own behind, which would blur the count.
    let container = ContainerGuard::new("quietlogs");
    support::Cli::docker_direct()
        .args(&[
            "run",
            "-d",
            "--name",
            &container.name,
            "--label",
            TEST_LABEL,
            IMAGE,
        ])
        .args(&["sleep", "300"])
        .run()
        .assert_success("docker run -d");
    assert_eq!(active(), 0.0);
    let logs = proxy
        .cli(&["logs", "-f", &container.name])
        .timeout(LONG)
        .spawn();
    proxy.wait_stderr("/logs?", Duration::from_secs(20));
    assert!(active() >= 1.0, "no connection for docker logs -f");

    drop(logs);
    let released = support::wait_for(Duration::from_secs(100), || (active() == 0.0).then_some(()));
    assert!(
        released.is_some(),
        "{} connections still active after the client was killed",
        active()
    );
}

#[test]
fn ping_answers_head_and_get_on_one_connection() {
    require_engine!();
    let proxy = Proxy::engine();
    let mut client = proxy.connect();
    client.send(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
    let head = client.read_response_for("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("api-version").is_some(),
        "no Api-Version header: {head:?}"
    );

    client.send(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
    let get = client.read_response();
    assert_eq!(get.status, 200);
    assert_eq!(get.text(), "OK");
}
