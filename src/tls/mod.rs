//! TLS for the client side of the proxy: loading the certificate, key and
//! client CA into a rustls server configuration, and the handshake that
//! also reports the client's verified certificate.
//!
//! `crate::config` calls [`server_config`] while loading (so
//! `--check-config` and reloads see every problem with the TLS files) and
//! keeps the result in the snapshot. The accept loop runs [`accept`] on each
//! new TCP connection and passes the client certificate to `crate::auth`.

mod accept;
mod material;

#[cfg(test)]
pub(crate) mod test_certs;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::ServerConfig;

use crate::config::{ConfigError, TlsSettings};

pub use accept::{accept, peer_cert_der, Accepted, HandshakeError};

/// The only application protocol we speak (ALPN, RFC 7301).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Builds the rustls server configuration for `global.tls`.
///
/// Offers TLS 1.3 and 1.2 with the ring provider and ALPN `http/1.1`. With
/// `client_ca` set, client certificates are verified against it; they are
/// mandatory when `require_client_cert` is true and optional otherwise (a
/// connection without one then reaches `crate::auth`, which decides).
///
/// # Errors
///
/// Every problem with the files (unreadable, no certificate, no or an
/// unsupported key, key not matching the certificate, empty or invalid CA
/// bundle) is returned at once, each naming its file and config key.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut errors = Vec::new();

    let key = material::load_certified_key(tls, &provider, &mut errors);
    let verifier = client_verifier(tls, &provider, &mut errors);
    let (Some(key), Some(verifier)) = (key, verifier) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }

    let builder = match ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    {
        Ok(builder) => builder,
        Err(err) => return Err(vec![internal_error(&err)]),
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The client certificate verifier, or `None` after pushing errors.
fn client_verifier(
    tls: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let Some(ca_path) = &tls.client_ca else {
        if tls.require_client_cert {
            errors.push(material::require_without_ca());
            return None;
        }
        return Some(WebPkiClientVerifier::no_client_auth());
    };

    let roots = material::load_client_roots(ca_path, errors)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if tls.require_client_cert {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    match builder.build() {
        Ok(verifier) => Some(verifier),
        Err(err) => {
            errors.push(material::verifier_error(ca_path, &err));
            None
        }
    }
}

fn internal_error(err: &rustls::Error) -> ConfigError {
    ConfigError {
        location: "global.tls".to_owned(),
        what: format!("the TLS library refused the protocol settings: {err}"),
        why: "the proxy cannot offer TLS 1.2 and 1.3 with its built-in crypto provider".to_owned(),
        fix: "report this as a bug; it does not depend on your configuration".to_owned(),
    }
}
