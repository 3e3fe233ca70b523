use std::path::{Path, PathBuf};
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio_rustls::TlsConnector;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tempfile::TempDir;

use super::test_certs::{pem, pkcs8_to_sec1, TestCa, TestLeaf};
use super::{accept, server_config, ALPN_HTTP11};
use crate::config::{ConfigError, TlsSettings};

/// Files for one test: a server certificate for `localhost`, its key, and
/// a client CA bundle, all in a temporary directory.
struct Material {
    dir: TempDir,
    server_ca: TestCa,
    client_ca: TestCa,
    server: TestLeaf,
}

impl Material {
    fn new() -> Self {
        let server_ca = TestCa::new("test server CA");
        let client_ca = TestCa::new("test client CA");
        let server = server_ca.issue(Some("proxy"), &["localhost"]);
        let material = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            server_ca,
            client_ca,
            server,
        };
        material.write("cert.pem", &material.server.cert_pem);
        material.write("key.pem", &material.server.key_pem);
        material.write("ca.pem", &material.client_ca.cert_pem);
        material
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    fn settings(&self, client_ca: bool, require_client_cert: bool) -> TlsSettings {
        TlsSettings {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            client_ca: client_ca.then(|| self.path("ca.pem")),
            require_client_cert,
        }
    }

    /// A client trusting the server CA, optionally presenting `identity`.
    fn client(
        &self,
        identity: Option<&TestLeaf>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(der_of(&self.server_ca.cert_pem))
            .expect("server CA is valid");
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("ring supports these versions")
                .with_root_certificates(roots);
        let mut config = match identity {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(leaf.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
                )
                .expect("client key matches its certificate"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        TlsConnector::from(config)
    }
}

fn der_of(cert_pem: &str) -> CertificateDer<'static> {
    let item = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next();
    item.expect("one certificate").expect("valid PEM")
}

fn build(settings: &TlsSettings) -> Arc<ServerConfig> {
    match server_config(settings) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors: {:?}", describe(&errors)),
    }
}

fn errors_of(settings: &TlsSettings) -> Vec<ConfigError> {
    match server_config(settings) {
        Ok(_) => panic!("expected the TLS material to be refused"),
        Err(errors) => errors,
    }
}

fn describe(errors: &[ConfigError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.location, e.what))
        .collect()
}

fn single_error(settings: &TlsSettings) -> ConfigError {
    let mut errors = errors_of(settings);
    assert_eq!(errors.len(), 1, "{:?}", describe(&errors));
    errors.remove(0)
}

fn names_file(error: &ConfigError, path: &Path) {
    let shown = path.display().to_string();
    assert!(
        error.what.contains(&shown),
        "{:?} does not name {shown}",
        error.what
    );
    assert!(!error.why.is_empty() && !error.fix.is_empty());
}

// === configuration ===

#[test]
fn builds_config_offering_http11_alpn() {
    let material = Material::new();
    let config = build(&material.settings(false, false));
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn accepts_sec1_ec_key() {
    let material = Material::new();
    let sec1 = pkcs8_to_sec1(&material.server.key_der);
    material.write("key.pem", &pem("EC PRIVATE KEY", &sec1));
    build(&material.settings(true, false));
}

#[test]
fn accepts_key_file_that_also_holds_the_certificate() {
    let material = Material::new();
    let combined = format!("{}{}", material.server.cert_pem, material.server.key_pem);
    material.write("key.pem", &combined);
    build(&material.settings(false, false));
}

#[test]
fn names_missing_certificate_file() {
    let material = Material::new();
    std::fs::remove_file(material.path("cert.pem")).expect("remove");
    let error = single_error(&material.settings(false, false));
    assert_eq!(error.location, "global.tls.cert");
    assert!(
        error.what.starts_with("cannot read certificate file"),
        "{}",
        error.what
    );
    names_file(&error, &material.path("cert.pem"));
}

#[test]
fn names_certificate_file_without_certificate_and_hints_at_swap() {
    let material = Material::new();
    material.write("cert.pem", &material.server.key_pem);
    let error = single_error(&material.settings(false, false));
    assert_eq!(error.location, "global.tls.cert");
    assert!(
        error.what.contains("no PEM certificate found"),
        "{}",
        error.what
    );
    assert!(error.what.contains("swapped"), "{}", error.what);
    names_file(&error, &material.path("cert.pem"));
}

#[test]
fn names_key_file_without_key() {
    let material = Material::new();
    material.write("key.pem", &material.server.cert_pem);
    let error = single_error(&material.settings(false, false));
    assert_eq!(error.location, "global.tls.key");
    assert!(
        error.what.contains("no PEM private key found"),
        "{}",
        error.what
    );
    names_file(&error, &material.path("key.pem"));
}

#[test]
fn names_encrypted_key() {
    let material = Material::new();
    material.write(
        "key.pem",
        &pem("ENCRYPTED PRIVATE KEY", &material.server.key_der),
    );
    let error = single_error(&material.settings(false, false));
    assert!(error.what.contains("is encrypted"), "{}", error.what);
    names_file(&error, &material.path("key.pem"));
}

#[test]
fn names_unsupported_key_type() {
    let material = Material::new();
    material.write("key.pem", &pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00"));
    let error = single_error(&material.settings(false, false));
    assert_eq!(error.location, "global.tls.key");
    assert!(
        error.what.starts_with("unsupported private key type"),
        "{}",
        error.what
    );
    names_file(&error, &material.path("key.pem"));
}

#[test]
fn names_key_that_does_not_match_certificate() {
    let material = Material::new();
    let other = material.server_ca.issue(Some("other"), &["localhost"]);
    material.write("key.pem", &other.key_pem);
    let error = single_error(&material.settings(false, false));
    assert_eq!(error.location, "global.tls.key");
    assert!(
        error.what.contains("does not match the certificate"),
        "{}",
        error.what
    );
    names_file(&error, &material.path("key.pem"));
    names_file(&error, &material.path("cert.pem"));
}

#[test]
fn names_damaged_pem() {
    let material = Material::new();
    material.write(
        "cert.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let error = single_error(&material.settings(false, false));
    assert!(error.what.contains("is not valid PEM"), "{}", error.what);
    names_file(&error, &material.path("cert.pem"));
}

#[test]
fn names_empty_client_ca_bundle() {
    let material = Material::new();
    material.write("ca.pem", "");
    let error = single_error(&material.settings(true, true));
    assert_eq!(error.location, "global.tls.client_ca");
    assert!(
        error
            .what
            .contains("no PEM certificate found in client CA bundle"),
        "{}",
        error.what
    );
    names_file(&error, &material.path("ca.pem"));
}

#[test]
fn refuses_required_client_cert_without_client_ca() {
    let material = Material::new();
    let error = single_error(&material.settings(false, true));
    assert_eq!(error.location, "global.tls.require_client_cert");
}

#[test]
fn reports_every_broken_file_at_once() {
    let material = Material::new();
    for name in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::remove_file(material.path(name)).expect("remove");
    }
    let errors = errors_of(&material.settings(true, false));
    let locations: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        ["global.tls.cert", "global.tls.key", "global.tls.client_ca"]
    );
}

// === handshake ===

/// Accepts one connection, returns the client certificate it reported and
/// answers the first message with "pong".
async fn serve_one(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> Result<Option<Vec<u8>>, String> {
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let accepted = accept(config, tcp).await.map_err(|e| e.to_string())?;
    let mut stream = accepted.stream;
    assert_eq!(stream.alpn_protocol().as_deref(), Some(ALPN_HTTP11));

    let (result, request) = stream.read_exact(vec![0u8; 4]).await;
    result.map_err(|e| e.to_string())?;
    assert_eq!(request, b"ping");
    let (result, _) = stream.write_all(b"pong".to_vec()).await;
    result.map_err(|e| e.to_string())?;
    Ok(accepted.peer_cert.map(|der| der.to_vec()))
}

async fn ping(connector: &TlsConnector, addr: std::net::SocketAddr) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect_addr(addr).await?;
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(std::io::Error::other)?;
    let (result, _) = stream.write_all(b"ping".to_vec()).await;
    result?;
    let (result, reply) = stream.read_exact(vec![0u8; 4]).await;
    result?;
    Ok(reply)
}

fn listen() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

#[monoio::test_all]
async fn handshake_reports_verified_client_certificate() {
    let material = Material::new();
    let client_leaf = material
        .client_ca
        .issue(Some("ci-runner"), &["runner1.ci.example.com"]);
    let config = build(&material.settings(true, true));
    let (listener, addr) = listen();

    let server = monoio::spawn(serve_one(listener, config));
    let connector = material.client(Some(&client_leaf), rustls::ALL_VERSIONS);
    let reply = ping(&connector, addr).await.expect("client round trip");
    assert_eq!(reply, b"pong");

    let peer = server.await.expect("server side succeeds");
    assert_eq!(peer, Some(client_leaf.cert_der.clone()));
}

#[monoio::test_all]
async fn handshake_over_tls12_reports_client_certificate() {
    let material = Material::new();
    let client_leaf = material.client_ca.issue(Some("ci-runner"), &[]);
    let config = build(&material.settings(true, false));
    let (listener, addr) = listen();

    let server = monoio::spawn(serve_one(listener, config));
    let connector = material.client(Some(&client_leaf), &[&rustls::version::TLS12]);
    assert_eq!(
        ping(&connector, addr).await.expect("client round trip"),
        b"pong"
    );
    assert_eq!(
        server.await.expect("server side succeeds"),
        Some(client_leaf.cert_der)
    );
}

#[monoio::test_all]
async fn optional_client_certificate_may_be_absent() {
    let material = Material::new();
    let config = build(&material.settings(true, false));
    let (listener, addr) = listen();

    let server = monoio::spawn(serve_one(listener, config));
    let connector = material.client(None, rustls::ALL_VERSIONS);
    assert_eq!(
        ping(&connector, addr).await.expect("client round trip"),
        b"pong"
    );
    assert_eq!(server.await.expect("server side succeeds"), None);
}

#[monoio::test_all]
async fn required_client_certificate_refuses_client_without_one() {
    let material = Material::new();
    let config = build(&material.settings(true, true));
    let (listener, addr) = listen();

    let server = monoio::spawn(serve_one(listener, config));
    let connector = material.client(None, rustls::ALL_VERSIONS);
    let client = ping(&connector, addr).await;
    let server = server.await;
    assert!(client.is_err(), "client got a reply without a certificate");
    let err = server.expect_err("server must refuse the handshake");
    assert!(err.contains("tls handshake refused"), "{err}");
}

#[monoio::test_all]
async fn client_certificate_from_another_ca_is_refused() {
    let material = Material::new();
    let stranger = TestCa::new("unrelated CA").issue(Some("ci-runner"), &[]);
    let config = build(&material.settings(true, false));
    let (listener, addr) = listen();

    let server = monoio::spawn(serve_one(listener, config));
    let connector = material.client(Some(&stranger), rustls::ALL_VERSIONS);
    let client = ping(&connector, addr).await;
    let server = server.await;
    assert!(client.is_err(), "client with an unknown CA got a reply");
    assert!(
        server.is_err(),
        "server accepted a certificate from an unknown CA"
    );
}

/// Data the client sends right behind its Finished message must not be
/// lost when the connection is handed to monoio-rustls.
#[monoio::test_all]
async fn data_right_after_handshake_reaches_the_stream() {
    let material = Material::new();
    let config = build(&material.settings(false, false));
    let (listener, addr) = listen();

    let server = monoio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut stream = accept(config, tcp).await.expect("handshake").stream;
        let mut received = Vec::new();
        loop {
            let (result, chunk) = stream.read(Vec::with_capacity(64 * 1024)).await;
            match result {
                Ok(0) | Err(_) => break,
                Ok(_) => received.extend_from_slice(&chunk),
            }
        }
        received
    });

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let tcp = TcpStream::connect_addr(addr).await.expect("connect");
    let connector = material.client(None, rustls::ALL_VERSIONS);
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut stream = connector
        .connect(name, tcp)
        .await
        .expect("client handshake");
    let (result, _) = stream.write_all(payload.clone()).await;
    result.expect("send payload");
    monoio::io::AsyncWriteRent::shutdown(&mut stream)
        .await
        .expect("half-close");
    // Drain what the server still sends (TLS 1.3 session tickets) until it
    // closes: closing with unread data would reset the connection.
    loop {
        let (result, _) = stream.read(vec![0u8; 4096]).await;
        if !matches!(result, Ok(n) if n > 0) {
            break;
        }
    }

    assert_eq!(server.await, payload);
}

/// A plain-HTTP request on the TLS port: "GET /" read as a record header
/// announces a 0x202f-byte record, so without a header check the client
/// would wait for the header timeout. It gets a 400 naming TLS instead.
#[monoio::test_all(timer_enabled = true)]
async fn plain_http_on_the_tls_port_gets_a_400_at_once() {
    let material = Material::new();
    let config = build(&material.settings(false, false));
    let (listener, addr) = listen();

    let server = monoio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        accept(config, tcp).await.err().map(|e| e.to_string())
    });
    let mut tcp = TcpStream::connect_addr(addr).await.expect("connect");
    let request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n".to_vec();
    let (result, _) = tcp.write_all(request).await;
    result.expect("send request");
    let mut received = Vec::new();
    loop {
        let (result, chunk) = tcp.read(Vec::with_capacity(4096)).await;
        match result {
            Ok(0) | Err(_) => break,
            Ok(_) => received.extend_from_slice(&chunk),
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text:?}");
    assert!(text.contains("this port speaks TLS"), "{text:?}");
    let error = server.await.expect("the handshake must fail");
    assert!(error.contains("plain HTTP"), "{error}");
}

#[monoio::test_all(timer_enabled = true)]
async fn bytes_that_are_not_a_tls_record_end_the_handshake() {
    let material = Material::new();
    let config = build(&material.settings(false, false));
    let (listener, addr) = listen();

    let server = monoio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        accept(config, tcp).await.err().map(|e| e.to_string())
    });
    let mut tcp = TcpStream::connect_addr(addr).await.expect("connect");
    // Content type 0x00, then a length that would never arrive.
    let (result, _) = tcp.write_all(vec![0x00, 0x03, 0x03, 0x40, 0x00]).await;
    result.expect("send bytes");
    let error = server.await.expect("the handshake must fail");
    assert!(error.contains("not a TLS record"), "{error}");
}
