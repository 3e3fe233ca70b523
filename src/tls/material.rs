//! Reading PEM files for `global.tls` and turning every problem into a
//! `ConfigError` that names the file and says how to fix it.

use std::fs;
use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::VerifierBuilderError;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use rustls_pemfile::Item;

use crate::config::{ConfigError, TlsSettings};

const CERT_KEY: &str = "global.tls.cert";
const KEY_KEY: &str = "global.tls.key";
const CA_KEY: &str = "global.tls.client_ca";

/// What a PEM file holds, by kind.
#[derive(Default)]
struct PemContents {
    certs: Vec<CertificateDer<'static>>,
    keys: Vec<PrivateKeyDer<'static>>,
}

/// Loads the certificate chain and key and checks that they belong
/// together. Returns `None` after pushing at least one error.
pub(super) fn load_certified_key(
    tls: &TlsSettings,
    provider: &CryptoProvider,
    errors: &mut Vec<ConfigError>,
) -> Option<CertifiedKey> {
    let chain = load_chain(&tls.cert, errors);
    let key = load_key(&tls.key, errors);
    let (chain, key) = (chain?, key?);

    let signer = match provider.key_provider.load_private_key(key) {
        Ok(signer) => signer,
        Err(err) => {
            errors.push(unsupported_key(&tls.key, &err));
            return None;
        }
    };

    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Some(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            errors.push(key_mismatch(&tls.key, &tls.cert));
            None
        }
        Err(err) => {
            errors.push(bad_certificate(&tls.cert, &err));
            None
        }
    }
}

/// Loads the client CA bundle into a root store.
pub(super) fn load_client_roots(
    path: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<RootCertStore> {
    let errors_before = errors.len();
    let contents = read_pem(path, CA_KEY, "client CA bundle", errors)?;
    if contents.certs.is_empty() {
        errors.push(ConfigError {
            location: CA_KEY.to_owned(),
            what: format!(
                "no PEM certificate found in client CA bundle \"{}\"",
                path.display()
            ),
            why: "without a CA no client certificate can be verified".to_owned(),
            fix: "put the CA certificate(s) that sign client certificates in this file, \
                  as \"-----BEGIN CERTIFICATE-----\" blocks"
                .to_owned(),
        });
        return None;
    }

    let mut roots = RootCertStore::empty();
    for (index, cert) in contents.certs.into_iter().enumerate() {
        if let Err(err) = roots.add(cert) {
            errors.push(ConfigError {
                location: CA_KEY.to_owned(),
                what: format!(
                    "certificate #{} in client CA bundle \"{}\" is not usable: {err}",
                    index + 1,
                    path.display()
                ),
                why: "a CA the proxy cannot parse would silently refuse the clients it signed"
                    .to_owned(),
                fix: "replace it with a valid X.509 CA certificate in PEM form".to_owned(),
            });
        }
    }
    (errors.len() == errors_before).then_some(roots)
}

fn load_chain(path: &Path, errors: &mut Vec<ConfigError>) -> Option<Vec<CertificateDer<'static>>> {
    let contents = read_pem(path, CERT_KEY, "certificate file", errors)?;
    if !contents.certs.is_empty() {
        return Some(contents.certs);
    }
    let swapped = if contents.keys.is_empty() {
        ""
    } else {
        " (it holds a private key; are global.tls.cert and global.tls.key swapped?)"
    };
    errors.push(ConfigError {
        location: CERT_KEY.to_owned(),
        what: format!(
            "no PEM certificate found in \"{}\"{swapped}",
            path.display()
        ),
        why: "the proxy needs a certificate to present to clients".to_owned(),
        fix: "point global.tls.cert at the server certificate in PEM form, followed by any \
              intermediate certificates"
            .to_owned(),
    });
    None
}

fn load_key(path: &Path, errors: &mut Vec<ConfigError>) -> Option<PrivateKeyDer<'static>> {
    let mut contents = read_pem(path, KEY_KEY, "key file", errors)?;
    match contents.keys.len() {
        1 => contents.keys.pop(),
        0 => {
            errors.push(missing_key(path));
            None
        }
        count => {
            errors.push(ConfigError {
                location: KEY_KEY.to_owned(),
                what: format!(
                    "{count} private keys found in \"{}\"; expected one",
                    path.display()
                ),
                why: "the proxy cannot tell which key belongs to the certificate".to_owned(),
                fix: "keep only the key that matches global.tls.cert in this file".to_owned(),
            });
            None
        }
    }
}

fn missing_key(path: &Path) -> ConfigError {
    let encrypted = fs::read(path).is_ok_and(|bytes| {
        contains(&bytes, b"ENCRYPTED PRIVATE KEY") || contains(&bytes, b"Proc-Type")
    });
    let what = if encrypted {
        format!("the private key in \"{}\" is encrypted", path.display())
    } else {
        format!("no PEM private key found in \"{}\"", path.display())
    };
    ConfigError {
        location: KEY_KEY.to_owned(),
        what,
        why: "the proxy needs the certificate's private key to accept TLS connections".to_owned(),
        fix: "point global.tls.key at an unencrypted PEM key (\"PRIVATE KEY\", \
              \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\"); protect it with file permissions"
            .to_owned(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Reads every PEM section of a file. Pushes an error and returns `None`
/// when the file cannot be read or is not valid PEM.
fn read_pem(
    path: &Path,
    location: &str,
    label: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<PemContents> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            errors.push(ConfigError {
                location: location.to_owned(),
                what: format!("cannot read {label} \"{}\": {err}", path.display()),
                why: "TLS cannot be set up without it".to_owned(),
                fix: format!("check that {location} names an existing file readable by the proxy"),
            });
            return None;
        }
    };

    let mut contents = PemContents::default();
    for item in rustls_pemfile::read_all(&mut bytes.as_slice()) {
        match item {
            Ok(Item::X509Certificate(cert)) => contents.certs.push(cert),
            Ok(Item::Pkcs8Key(key)) => contents.keys.push(key.into()),
            Ok(Item::Pkcs1Key(key)) => contents.keys.push(key.into()),
            Ok(Item::Sec1Key(key)) => contents.keys.push(key.into()),
            Ok(_) => {}
            Err(err) => {
                errors.push(ConfigError {
                    location: location.to_owned(),
                    what: format!("{label} \"{}\" is not valid PEM: {err}", path.display()),
                    why: "a damaged file could hide the certificate or key the proxy needs"
                        .to_owned(),
                    fix: "re-export the file in PEM form (\"-----BEGIN ...-----\" blocks)"
                        .to_owned(),
                });
                return None;
            }
        }
    }
    Some(contents)
}

fn unsupported_key(path: &Path, err: &rustls::Error) -> ConfigError {
    ConfigError {
        location: KEY_KEY.to_owned(),
        what: format!(
            "unsupported private key type in \"{}\": {err}",
            path.display()
        ),
        why: "the proxy cannot sign TLS handshakes with this key".to_owned(),
        fix: "use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key".to_owned(),
    }
}

fn key_mismatch(key: &Path, cert: &Path) -> ConfigError {
    ConfigError {
        location: KEY_KEY.to_owned(),
        what: format!(
            "the private key in \"{}\" does not match the certificate in \"{}\"",
            key.display(),
            cert.display()
        ),
        why: "clients would reject every handshake".to_owned(),
        fix: "use the key the certificate was issued for; the first certificate in \
              global.tls.cert must be the server's own"
            .to_owned(),
    }
}

fn bad_certificate(path: &Path, err: &rustls::Error) -> ConfigError {
    ConfigError {
        location: CERT_KEY.to_owned(),
        what: format!(
            "the first certificate in \"{}\" cannot be parsed: {err}",
            path.display()
        ),
        why: "the proxy cannot present a certificate it cannot read".to_owned(),
        fix: "replace it with a valid X.509 certificate in PEM form".to_owned(),
    }
}

pub(super) fn require_without_ca() -> ConfigError {
    ConfigError {
        location: "global.tls.require_client_cert".to_owned(),
        what: "require_client_cert is true but global.tls.client_ca is not set".to_owned(),
        why: "client certificates cannot be verified without a CA to check them against".to_owned(),
        fix: "set global.tls.client_ca to the PEM bundle of the CA that signs client \
              certificates"
            .to_owned(),
    }
}

pub(super) fn verifier_error(path: &Path, err: &VerifierBuilderError) -> ConfigError {
    ConfigError {
        location: CA_KEY.to_owned(),
        what: format!(
            "client CA bundle \"{}\" cannot be used: {err}",
            path.display()
        ),
        why: "client certificates cannot be verified".to_owned(),
        fix: "put valid CA certificates in PEM form in this file".to_owned(),
    }
}
