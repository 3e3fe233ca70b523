//! End-to-end: container references with a `/` (legacy link aliases) are
//! refused before any rule runs (SPEC section 5), against the real engine.
//!
//! A legacy link registers the name `/parent/alias` for the linked
//! container, and dockerd routes `/containers/{name:.*}/json`, so
//! `/containers/parent/alias/json` reaches the linked container while a
//! rule written for one path segment does not match it.

#[macro_use]
mod support;

use std::time::Duration;

use support::{engine_container, engine_get, Cli, ContainerGuard, Proxy, IMAGE, TEST_LABEL};

const REFUSAL: &str = "legacy link alias";

fn create(name: &str, extra: &[&str]) {
    let mut args = vec!["create", "--name", name, "--label", TEST_LABEL];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sleep", "300"]);
    Cli::docker_direct()
        .args(&args)
        .timeout(Duration::from_secs(60))
        .run()
        .assert_success("docker create");
}

fn request(proxy: &Proxy, method: &str, target: &str, body: &str) -> support::Response {
    let bytes = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    proxy.request(bytes.as_bytes())
}

#[test]
fn link_alias_paths_are_refused_and_plain_names_work() {
    require_engine!();
    let linked = ContainerGuard::new("linked");
    create(&linked.name, &[]);
    // Declared second, so dropped (removed) first.
    let parent = ContainerGuard::new("parent");
    let link = format!("{}:alias", linked.name);
    create(&parent.name, &["--link", &link]);
    let linked_id = engine_container(&linked.name).expect("the linked container")["Id"].clone();

    // The engine itself resolves the alias path to the linked container.
    let alias = format!("/v1.41/containers/{}/alias", parent.name);
    let direct = engine_get(&format!("{alias}/json"));
    assert_eq!(direct.status, 200, "engine: {:?}", direct.text());
    assert_eq!(
        direct.json()["Id"],
        linked_id,
        "the alias names the linked container"
    );

    let proxy = Proxy::engine();
    let exec = r#"{"Cmd":["true"],"AttachStdout":true}"#;
    for (method, target, body) in [
        ("GET", format!("{alias}/json"), ""),
        ("GET", format!("{alias}/json/"), ""),
        ("POST", format!("{alias}/exec"), exec),
        ("POST", format!("{alias}/kill"), ""),
        ("DELETE", format!("{alias}?force=1"), ""),
        (
            "GET",
            format!("/v1.41/containers/{}%2Falias/json", parent.name),
            "",
        ),
    ] {
        let response = request(&proxy, method, &target, body);
        let message = response.assert_json_error(400);
        assert!(message.contains(REFUSAL), "{method} {target}: {message:?}");
    }
    assert!(
        engine_container(&linked.name).is_some(),
        "a refused DELETE removed the linked container"
    );

    // The container's own name and ID go through.
    for reference in [linked.name.clone(), linked_id.as_str().unwrap().to_owned()] {
        let target = format!("/v1.41/containers/{reference}/json");
        let response = request(&proxy, "GET", &target, "");
        assert_eq!(response.status, 200, "{target}: {:?}", response.text());
        assert_eq!(response.json()["Id"], linked_id);
    }
    let response = request(
        &proxy,
        "GET",
        &format!("/v1.41/containers/{}/json", parent.name),
        "",
    );
    assert_eq!(response.status, 200, "parent: {:?}", response.text());
}
