//! Certificates generated at test time with rcgen (no key material is ever
//! committed) and a blocking rustls client for raw requests over TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::{find, parse_head, Response, IO_TIMEOUT};

/// A certificate authority that issues server and client certificates.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
}

/// A generated certificate with its private key.
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("generate a CA key");
        let cert_pem = params.self_signed(&key).expect("self-sign the CA").pem();
        TestCa {
            params,
            key,
            cert_pem,
        }
    }

    /// Issues a certificate with the given subject CN (if any) and SANs
    /// (IP literals become IP SANs, the rest DNS SANs).
    pub fn issue(&self, common_name: Option<&str>, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("valid SANs");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("generate a leaf key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign the leaf");
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> Leaf {
        self.issue(Some("docker-api-proxy test"), &["127.0.0.1", "localhost"])
    }
}

/// A temporary directory holding PEM files.
pub struct PemDir {
    dir: tempfile::TempDir,
}

impl PemDir {
    pub fn new() -> PemDir {
        PemDir {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` in this directory; returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write a PEM file");
        path
    }
}

impl Default for PemDir {
    fn default() -> Self {
        PemDir::new()
    }
}

/// TLS versions a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Any,
    Tls12,
    Tls13,
}

/// A rustls client configuration trusting `ca_pem`, presenting `client`
/// when given.
pub fn client_config(
    ca_pem: &str,
    client: Option<&Leaf>,
    version: Version,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add the CA");
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        Version::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Version::Tls12 => &[&rustls::version::TLS12],
        Version::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("protocol versions")
    .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// What a TLS exchange produced.
#[derive(Debug)]
pub struct TlsExchange {
    pub response: Response,
    pub protocol: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
}

/// Sends one request (which should carry `Connection: close`) over a new
/// TLS connection to `addr` and reads the response until the server
/// closes. `Err` when the handshake or the exchange failed before any
/// response arrived.
pub fn tls_request(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> Result<TlsExchange, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    let name = ServerName::try_from("localhost").expect("server name");
    let connection =
        rustls::ClientConnection::new(config, name).map_err(|e| format!("client: {e}"))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request)
        .and_then(|()| tls.flush())
        .map_err(|e| format!("handshake or write: {e}"))?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16384];
    let failure = loop {
        match tls.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            // A peer that closes without close_notify still sent a response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    let Some(end) = find(&received, b"\r\n\r\n") else {
        return Err(failure.unwrap_or_else(|| "closed without a response".to_owned()));
    };
    let mut response = parse_head(&received[..end]);
    let body = &received[end + 4..];
    let length = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(body.len())
        .min(body.len());
    response.body = body[..length].to_vec();
    Ok(TlsExchange {
        response,
        protocol: tls.conn.protocol_version(),
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
    })
}
