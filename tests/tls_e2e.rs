//! TLS and mutual TLS end to end (SPEC section 4, `global.tls` and
//! `auth.type: mtls`): the real docker CLI with `--tlsverify`, roles from
//! client certificates (map, one-label wildcard, default_role, CN), bad TLS
//! material refused at startup and by `--check-config`, and the warning for
//! an off-loopback bind without TLS. Certificates are generated per test.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::certs::{client_config, tls_request, Leaf, PemDir, TestCa, Version};
use support::{Cli, Output, Proxy, ProxyOptions, ENGINE_SOCKET};

// === helpers ===

/// A CA, a server certificate for 127.0.0.1/localhost and its files.
struct Pki {
    ca: TestCa,
    dir: PemDir,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new("docker-api-proxy e2e CA");
        let server = ca.server();
        let dir = PemDir::new();
        let ca_file = dir.write("ca.pem", &ca.cert_pem);
        let cert_file = dir.write("server.pem", &server.cert_pem);
        let key_file = dir.write("server-key.pem", &server.key_pem);
        Pki {
            ca,
            dir,
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// `global.tls` with this server certificate; client certificates
    /// verified against this CA when `client_ca`.
    fn tls_yaml(&self, client_ca: bool) -> String {
        let mut yaml = format!(
            "tls:\n  cert: {}\n  key: {}\n",
            self.cert_file.display(),
            self.key_file.display()
        );
        if client_ca {
            yaml.push_str(&format!("  client_ca: {}\n", self.ca_file.display()));
        }
        yaml
    }

    /// Writes a client certificate and key; returns their paths.
    fn client_files(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        (
            self.dir.write(&format!("{name}.pem"), &leaf.cert_pem),
            self.dir.write(&format!("{name}-key.pem"), &leaf.key_pem),
        )
    }
}

fn get_closing(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Rules refusing `GET /containers/json` with the caller's role in the
/// message for each listed role; other roles (and none) pass.
fn role_rules(roles: &[&str]) -> String {
    let mut yaml = String::from("rules:\n");
    for role in roles {
        yaml.push_str(&format!(
            "  - name: report-role-{role}\n    action: deny\n    message: \"role is {role}\"\n    \
             conditions:\n      - {{field: path, operator: equals, value: /containers/json}}\n\
             \x20     \
             - {{field: role, operator: equals, value: \"{role}\"}}\n"
        ));
    }
    yaml
}

/// The docker CLI with TLS flags (and a client certificate when given)
/// against the proxy; an empty temporary `DOCKER_CONFIG`.
fn docker_tls(
    proxy: &Proxy,
    pki: &Pki,
    client: Option<&(PathBuf, PathBuf)>,
    args: &[&str],
) -> Output {
    let config = tempfile::tempdir().expect("temporary directory");
    let ca = pki.ca_file.display().to_string();
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    let mut flags = vec!["--tlsverify", "--tlscacert", &ca, "-H", &host];
    let (cert, key);
    if let Some((cert_path, key_path)) = client {
        cert = cert_path.display().to_string();
        key = key_path.display().to_string();
        flags.extend(["--tlscert", &cert, "--tlskey", &key]);
    }
    flags.extend_from_slice(args);
    Cli::new("docker")
        .env_remove_docker_host()
        .env("DOCKER_CONFIG", config.path().to_str().expect("utf-8 path"))
        .args(&flags)
        .timeout(Duration::from_secs(30))
        .run()
}

trait CliExt {
    fn env_remove_docker_host(self) -> Self;
}

impl CliExt for Cli {
    /// `-H` decides; make sure no inherited setting competes with it.
    fn env_remove_docker_host(self) -> Self {
        self.env("DOCKER_HOST", "")
            .env("DOCKER_TLS_VERIFY", "")
            .env("DOCKER_CERT_PATH", "")
    }
}

/// What the proxy made of a client certificate over a raw TLS request:
/// the denial message (`role is X`) or the status.
fn role_over_tls(proxy: &Proxy, pki: &Pki, client: Option<&Leaf>) -> String {
    let config = client_config(&pki.ca.cert_pem, client, Version::Any);
    let exchange = tls_request(
        &proxy.addr(),
        config,
        &get_closing("/v1.41/containers/json"),
    )
    .unwrap_or_else(|e| panic!("TLS request failed: {e}"));
    let response = exchange.response;
    match response.status {
        403 => response.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        status => status.to_string(),
    }
}

// === TLS with the real docker CLI ===

#[test]
fn docker_cli_runs_version_and_ps_over_tls() {
    require_engine!();
    let pki = Pki::new();
    let proxy = ProxyOptions::new(ENGINE_SOCKET)
        .global(&pki.tls_yaml(false))
        .start();
    let version = docker_tls(
        &proxy,
        &pki,
        None,
        &["version", "--format", "{{.Server.Version}}"],
    );
    version.assert_success("docker version over TLS");
    assert!(!version.stdout.trim().is_empty(), "no server version");
    docker_tls(&proxy, &pki, None, &["ps"]).assert_success("docker ps over TLS");
    assert!(proxy.stderr().contains("tls=\"on\""), "{}", proxy.stderr());

    // Plain HTTP to the TLS port: refused at once with a message that
    // says why, not a stalled handshake.
    let started = std::time::Instant::now();
    let plain = proxy.cli(&["ps"]).timeout(Duration::from_secs(30)).run();
    assert!(!plain.success(), "plain HTTP to the TLS port worked");
    assert!(
        plain.stderr.contains("this port speaks TLS"),
        "stderr: {}",
        plain.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // A client that does not trust the proxy's CA refuses it.
    let other = Pki::new();
    let untrusted = docker_tls(&proxy, &other, None, &["ps"]);
    assert!(
        !untrusted.success(),
        "a client with another CA accepted the proxy"
    );
    assert!(
        untrusted.stderr.contains("certificate"),
        "stderr: {}",
        untrusted.stderr
    );
}

#[test]
fn docker_cli_over_tls_with_a_bearer_token_header() {
    require_engine!();
    let pki = Pki::new();
    let proxy = ProxyOptions::new(ENGINE_SOCKET)
        .global(&pki.tls_yaml(false))
        .auth("auth:\n  tokens:\n    - {token: tls-bearer-1, role: admin}\n")
        .start();
    let config = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        config.path().join("config.json"),
        r#"{"HttpHeaders":{"Authorization":"Bearer tls-bearer-1"}}"#,
    )
    .expect("config.json");
    let ca = pki.ca_file.display().to_string();
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    let out = Cli::new("docker")
        .env_remove_docker_host()
        .env("DOCKER_CONFIG", config.path().to_str().unwrap())
        .args(&["--tlsverify", "--tlscacert", &ca, "-H", &host, "ps"])
        .run();
    out.assert_success("docker ps over TLS with a token");
    let without = docker_tls(&proxy, &pki, None, &["ps"]);
    assert!(
        without.stderr.contains("authentication required"),
        "stderr: {}",
        without.stderr
    );
}

#[test]
fn tls_12_and_tls_13_both_negotiate_http11() {
    let pki = Pki::new();
    let engine = support::FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "application/json", b"{\"ok\":true}");
        }
    });
    let proxy = engine.options().global(&pki.tls_yaml(false)).start();
    for (version, expected) in [
        (Version::Tls12, rustls::ProtocolVersion::TLSv1_2),
        (Version::Tls13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&pki.ca.cert_pem, None, version);
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let exchange = tls_request(&proxy.addr(), config.into(), &get_closing("/v1.41/info"))
            .unwrap_or_else(|e| panic!("{expected:?}: {e}"));
        assert_eq!(exchange.protocol, Some(expected));
        assert_eq!(exchange.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(exchange.response.status, 200);
        assert_eq!(exchange.response.text(), "{\"ok\":true}");
    }
}

// === mutual TLS ===

const MAP: &str = "    cert_role_map:\n      - {cn: admin.example, role: ops}\n      \
                   - {cn: \"*.ci.example\", role: builder}\n      \
                   - {cn: deploy.example, role: deployer}\n";

fn mtls_auth(default_role: Option<&str>) -> String {
    let mut yaml = format!("auth:\n  type: mtls\n  mtls:\n{MAP}");
    if let Some(role) = default_role {
        yaml.push_str(&format!("    default_role: {role}\n"));
    }
    yaml
}

fn mtls_proxy(pki: &Pki, socket: &std::path::Path, default_role: Option<&str>) -> Proxy {
    ProxyOptions::new(socket)
        .global(&pki.tls_yaml(true))
        .auth(&mtls_auth(default_role))
        .rules(&role_rules(&[
            "ops",
            "builder",
            "guest",
            "lonely-client",
            "a.b.ci.example",
        ]))
        .start()
}

#[test]
fn mtls_roles_come_from_the_map_then_default_role() {
    let pki = Pki::new();
    let engine = support::FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "application/json", b"[]");
        }
    });
    let proxy = mtls_proxy(&pki, &engine.path, Some("guest"));
    let ca = &pki.ca;
    let cases: [(Option<&str>, &[&str], &str); 9] = [
        // Exact CN.
        (Some("admin.example"), &[], "role is ops"),
        // Case-insensitive DNS names.
        (Some("Admin.Example"), &[], "role is ops"),
        // The wildcard stands for exactly one label, via CN or a DNS SAN.
        (Some("a.ci.example"), &[], "role is builder"),
        (
            Some("runner-7"),
            &["x.example", "b.ci.example"],
            "role is builder",
        ),
        (Some("a.b.ci.example"), &["a.b.ci.example"], "role is guest"),
        (Some("ci.example"), &[], "role is guest"),
        // First map entry wins, whichever name of the certificate matches
        // it: the SAN admin.example beats the CN's wildcard match.
        (Some("z.ci.example"), &["admin.example"], "role is ops"),
        (Some("deploy.example"), &["q.ci.example"], "role is builder"),
        // No map entry: default_role.
        (Some("lonely-client"), &[], "role is guest"),
    ];
    for (cn, sans, expected) in cases {
        let leaf = ca.issue(cn, sans);
        assert_eq!(
            role_over_tls(&proxy, &pki, Some(&leaf)),
            expected,
            "certificate CN {cn:?} SANs {sans:?}"
        );
    }
    // No certificate at all: 401 (client certificates are optional at the
    // TLS layer here, so the request reaches authentication).
    assert_eq!(role_over_tls(&proxy, &pki, None), "401");
    // Role deployer is refused by no rule: the request reaches the engine.
    let deployer = ca.issue(Some("deploy.example"), &[]);
    assert_eq!(role_over_tls(&proxy, &pki, Some(&deployer)), "200");
}

#[test]
fn mtls_without_default_role_falls_back_to_the_certificate_cn() {
    let pki = Pki::new();
    let engine = support::FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "application/json", b"[]");
        }
    });
    let proxy = mtls_proxy(&pki, &engine.path, None);
    let ca = &pki.ca;
    assert_eq!(
        role_over_tls(&proxy, &pki, Some(&ca.issue(Some("lonely-client"), &[]))),
        "role is lonely-client"
    );
    assert_eq!(
        role_over_tls(&proxy, &pki, Some(&ca.issue(Some("a.b.ci.example"), &[]))),
        "role is a.b.ci.example"
    );
    assert_eq!(
        role_over_tls(&proxy, &pki, Some(&ca.issue(Some("a.ci.example"), &[]))),
        "role is builder"
    );
    // No CN and no matching SAN: no role at all, so no role rule matches.
    assert_eq!(
        role_over_tls(&proxy, &pki, Some(&ca.issue(None, &["nothing.example"]))),
        "200"
    );
}

#[test]
fn mtls_refuses_certificates_from_another_ca_at_the_handshake() {
    let pki = Pki::new();
    let engine = support::FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "application/json", b"[]");
        }
    });
    let proxy = mtls_proxy(&pki, &engine.path, Some("guest"));
    let stranger = TestCa::new("someone else").issue(Some("admin.example"), &[]);
    let config = client_config(&pki.ca.cert_pem, Some(&stranger), Version::Any);
    let result = tls_request(
        &proxy.addr(),
        config,
        &get_closing("/v1.41/containers/json"),
    );
    assert!(
        result.is_err(),
        "a certificate from an unknown CA was accepted: {:?}",
        result.map(|e| e.response)
    );
}

#[test]
fn require_client_cert_refuses_clients_without_one_at_the_handshake() {
    let pki = Pki::new();
    let engine = support::FakeEngine::start(|conn| {
        while conn.read_request().is_some() {
            conn.respond(200, "application/json", b"[]");
        }
    });
    let tls = format!("{}  require_client_cert: true\n", pki.tls_yaml(true));
    let proxy = ProxyOptions::new(&engine.path)
        .global(&tls)
        .auth(&mtls_auth(Some("guest")))
        .start();
    let without = client_config(&pki.ca.cert_pem, None, Version::Any);
    assert!(
        tls_request(&proxy.addr(), without, &get_closing("/v1.41/info")).is_err(),
        "a client without a certificate got through"
    );
    let leaf = pki.ca.issue(Some("admin.example"), &[]);
    let with = client_config(&pki.ca.cert_pem, Some(&leaf), Version::Any);
    let exchange = tls_request(&proxy.addr(), with, &get_closing("/v1.41/info"))
        .expect("a client with a certificate");
    assert_eq!(exchange.response.status, 200);
}

#[test]
fn docker_cli_over_mutual_tls_gets_its_role_from_the_certificate() {
    require_engine!();
    let pki = Pki::new();
    let proxy = mtls_proxy(&pki, std::path::Path::new(ENGINE_SOCKET), Some("guest"));
    let ca = &pki.ca;

    let deployer = pki.client_files("deployer", &ca.issue(Some("deploy.example"), &[]));
    let ops = pki.client_files("ops", &ca.issue(Some("admin.example"), &[]));
    let builder = pki.client_files("builder", &ca.issue(Some("runner-3"), &["a.ci.example"]));
    let deep = pki.client_files(
        "deep",
        &ca.issue(Some("a.b.ci.example"), &["a.b.ci.example"]),
    );
    let nobody = pki.client_files("nobody", &ca.issue(Some("lonely-client"), &[]));

    // Role deployer is refused by no rule: docker ps and version work.
    docker_tls(&proxy, &pki, Some(&deployer), &["ps"]).assert_success("docker ps as deployer");
    docker_tls(&proxy, &pki, Some(&deployer), &["version"])
        .assert_success("docker version as deployer");

    for (client, role) in [
        (&ops, "ops"),
        (&builder, "builder"),
        (&deep, "guest"),
        (&nobody, "guest"),
    ] {
        let out = docker_tls(&proxy, &pki, Some(client), &["ps"]);
        assert!(!out.success(), "docker ps as {role} was not refused");
        assert!(
            out.stderr
                .contains(&format!("Error response from daemon: role is {role}")),
            "expected role {role}; stderr: {}",
            out.stderr
        );
        // Only the rule on /containers/json refuses: version works.
        docker_tls(&proxy, &pki, Some(client), &["version"])
            .assert_success(&format!("docker version as {role}"));
    }

    // Without a client certificate: a clear 401 message.
    let out = docker_tls(&proxy, &pki, None, &["ps"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("client certificate"),
        "stderr: {}",
        out.stderr
    );

    // Without default_role the CN itself is the role.
    let cn_proxy = mtls_proxy(&pki, std::path::Path::new(ENGINE_SOCKET), None);
    let out = docker_tls(&cn_proxy, &pki, Some(&nobody), &["ps"]);
    assert!(
        out.stderr
            .contains("Error response from daemon: role is lonely-client"),
        "stderr: {}",
        out.stderr
    );
    let out = docker_tls(&cn_proxy, &pki, Some(&deep), &["ps"]);
    assert!(
        out.stderr
            .contains("Error response from daemon: role is a.b.ci.example"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn mtls_without_a_client_ca_is_a_startup_error() {
    let pki = Pki::new();
    let options = ProxyOptions::new(ENGINE_SOCKET)
        .global(&pki.tls_yaml(false))
        .auth(&mtls_auth(None));
    let out = options.start_expecting_exit();
    assert!(!out.success(), "started mtls without client_ca");
    assert!(out.stderr.contains("client_ca"), "stderr: {}", out.stderr);
    let check = options.check_config();
    assert!(!check.success());
    assert!(
        format!("{}{}", check.stdout, check.stderr).contains("client_ca"),
        "--check-config: {}{}",
        check.stdout,
        check.stderr
    );
}

// === bad TLS material ===

/// Starting and `--check-config` both fail, naming every needle.
fn assert_refused(options: &ProxyOptions, needles: &[&str]) {
    let out = options.start_expecting_exit();
    assert!(!out.success(), "the proxy started; stderr: {}", out.stderr);
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "startup error lacks {needle:?}:\n{}",
            out.stderr
        );
    }
    let check = options.check_config();
    assert!(!check.success(), "--check-config passed:\n{}", check.stdout);
    let text = format!("{}{}", check.stdout, check.stderr);
    for needle in needles {
        assert!(
            text.contains(needle),
            "--check-config lacks {needle:?}:\n{text}"
        );
    }
}

fn tls_options(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> ProxyOptions {
    let mut yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = ca {
        yaml.push_str(&format!("  client_ca: {}\n", ca.display()));
    }
    ProxyOptions::new(ENGINE_SOCKET).global(&yaml)
}

#[test]
fn missing_certificate_or_key_file_is_a_startup_error_naming_it() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("no-such-cert.pem");
    assert_refused(
        &tls_options(&missing, &pki.key_file, None),
        &["no-such-cert.pem", "global.tls.cert", "cannot read"],
    );
    let missing_key = pki.dir.path().join("no-such-key.pem");
    assert_refused(
        &tls_options(&pki.cert_file, &missing_key, None),
        &["no-such-key.pem", "global.tls.key", "cannot read"],
    );
    let missing_ca = pki.dir.path().join("no-such-ca.pem");
    assert_refused(
        &tls_options(&pki.cert_file, &pki.key_file, Some(&missing_ca)),
        &["no-such-ca.pem", "global.tls.client_ca", "cannot read"],
    );
}

#[test]
fn garbage_or_unsupported_keys_are_startup_errors_naming_the_file() {
    let pki = Pki::new();
    let garbage = pki.dir.write(
        "garbage-key.pem",
        "-----BEGIN PRIVATE KEY-----\nthis is !! not base64 at all\n-----END PRIVATE KEY-----\n",
    );
    assert_refused(
        &tls_options(&pki.cert_file, &garbage, None),
        &["garbage-key.pem", "global.tls.key"],
    );

    let text = pki
        .dir
        .write("text-key.pem", "just some text, no PEM here\n");
    assert_refused(
        &tls_options(&pki.cert_file, &text, None),
        &["text-key.pem", "no PEM private key"],
    );

    // A certificate where the key should be (cert and key swapped).
    assert_refused(
        &tls_options(&pki.key_file, &pki.cert_file, None),
        &["server-key.pem", "swapped"],
    );

    // A well-formed PKCS#8 EC key on a curve the proxy cannot sign with
    // (the P-256 OID 1.2.840.10045.3.1.7 turned into prime192v1, ...3.1.1).
    let leaf = pki.ca.issue(Some("x"), &[]);
    let p256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut der = leaf.key_der.clone();
    let at = der
        .windows(p256.len())
        .position(|w| w == p256)
        .expect("the P-256 OID in the PKCS#8 key");
    der[at + 7] = 0x01;
    let unsupported = pki.dir.write("p192-key.pem", pem("PRIVATE KEY", &der));
    assert_refused(
        &tls_options(&pki.cert_file, &unsupported, None),
        &["p192-key.pem", "unsupported private key type"],
    );
}

#[test]
fn key_not_matching_the_certificate_is_a_startup_error_naming_both_files() {
    let pki = Pki::new();
    let other = pki.ca.server();
    let other_key = pki.dir.write("other-key.pem", &other.key_pem);
    assert_refused(
        &tls_options(&pki.cert_file, &other_key, None),
        &["other-key.pem", "server.pem", "does not match"],
    );
}

#[test]
fn empty_client_ca_bundle_is_a_startup_error_naming_the_file() {
    let pki = Pki::new();
    let empty = pki.dir.write("empty-ca.pem", "");
    assert_refused(
        &tls_options(&pki.cert_file, &pki.key_file, Some(&empty)),
        &["empty-ca.pem", "global.tls.client_ca", "no PEM certificate"],
    );
    // A bundle holding only a key is just as empty of certificates.
    let key_only = pki
        .dir
        .write("key-only-ca.pem", &pki.ca.issue(Some("k"), &[]).key_pem);
    assert_refused(
        &tls_options(&pki.cert_file, &pki.key_file, Some(&key_only)),
        &["key-only-ca.pem", "no PEM certificate"],
    );
}

#[test]
fn every_tls_problem_is_listed_at_once() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("absent-cert.pem");
    let empty = pki.dir.write("blank-ca.pem", "");
    let text = pki.dir.write("plain-key.pem", "nope\n");
    assert_refused(
        &tls_options(&missing, &text, Some(&empty)),
        &["absent-cert.pem", "plain-key.pem", "blank-ca.pem"],
    );
}

/// PEM-encodes DER under `label`.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                encoded.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// === off-loopback without TLS ===

const OFF_LOOPBACK: &str = "reachable from other hosts and TLS is off";

/// A complete config file binding `bind` (never started, only checked).
fn bind_config(bind: &str, tls: &str) -> ProxyOptions {
    let text = format!(
        "global:\n  port: 2376\n  bind: \"{bind}\"\n  socket: {ENGINE_SOCKET}\n{tls}\
         auth:\n  tokens:\n    - {{token: t-1, role: admin}}\n"
    );
    ProxyOptions::new(ENGINE_SOCKET).config_file(&text)
}

#[test]
fn check_config_warns_loudly_about_an_off_loopback_bind_without_tls() {
    // Only --check-config: the tests never listen beyond loopback.
    for bind in ["0.0.0.0", "::", "192.0.2.10"] {
        let check = bind_config(bind, "").check_config();
        check.assert_success("--check-config");
        let warning = check
            .stdout
            .lines()
            .find(|line| line.contains(OFF_LOOPBACK))
            .unwrap_or_else(|| panic!("no warning for {bind} without TLS:\n{}", check.stdout));
        assert!(warning.contains(bind), "{warning}");
    }

    let pki = Pki::new();
    let tls: String = pki
        .tls_yaml(false)
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    let check = bind_config("0.0.0.0", &tls).check_config();
    check.assert_success("--check-config with TLS");
    assert!(!check.stdout.contains(OFF_LOOPBACK), "{}", check.stdout);

    for bind in ["127.0.0.1", "::1"] {
        let check = bind_config(bind, "").check_config();
        check.assert_success("--check-config on loopback");
        assert!(!check.stdout.contains(OFF_LOOPBACK), "{}", check.stdout);
    }
}
