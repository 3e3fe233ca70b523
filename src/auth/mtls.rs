//! Roles from verified client certificates.
//!
//! `crate::tls` verifies the chain during the handshake and hands us the
//! end-entity certificate's DER; here we only read its names (subject CN
//! and DNS subject alternative names) and map them to a role.

use std::sync::Arc;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The names of a client certificate that role mapping looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// First subject common name, if it is a readable string.
    pub common_name: Option<String>,
    /// DNS names from the subject alternative name extension, in
    /// certificate order.
    pub dns_names: Vec<String>,
}

impl CertNames {
    /// Reads the names from a DER certificate; `None` when it cannot be
    /// parsed (this should not happen for a certificate the TLS layer
    /// verified).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);

        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect(),
            // A duplicated or broken SAN extension: map by CN alone.
            Ok(None) | Err(_) => Vec::new(),
        };
        Some(Self {
            common_name,
            dns_names,
        })
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.common_name
            .as_deref()
            .into_iter()
            .chain(self.dns_names.iter().map(String::as_str))
    }
}

/// One `mtls.cert_role_map` entry.
#[derive(Debug)]
struct RoleMapping {
    pattern: String,
    role: Arc<str>,
}

/// The compiled `mtls` section.
#[derive(Debug)]
pub(super) struct CertRoles {
    map: Vec<RoleMapping>,
    default_role: Option<Arc<str>>,
}

impl CertRoles {
    pub(super) fn new(cert_role_map: &[(String, String)], default_role: Option<&str>) -> Self {
        let map = cert_role_map
            .iter()
            .map(|(pattern, role)| RoleMapping {
                pattern: pattern.clone(),
                role: Arc::from(role.as_str()),
            })
            .collect();
        Self {
            map,
            default_role: default_role.map(Arc::from),
        }
    }

    /// The role for a certificate: the first map entry (in map order) that
    /// matches any of its names, else the default role, else its CN.
    pub(super) fn role_for(&self, names: &CertNames) -> Option<Arc<str>> {
        let mapped = self
            .map
            .iter()
            .find(|entry| names.iter().any(|name| name_matches(&entry.pattern, name)));
        if let Some(entry) = mapped {
            return Some(entry.role.clone());
        }
        self.default_role
            .clone()
            .or_else(|| names.common_name.as_deref().map(Arc::from))
    }
}

/// Matches a certificate name against a map pattern, ignoring ASCII case
/// (DNS names are case-insensitive, RFC 4343).
///
/// A pattern starting with `*.` stands for exactly one extra label:
/// `*.example.com` matches `a.example.com` but neither `example.com` nor
/// `a.b.example.com`. Any other pattern must equal the name.
#[must_use]
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return pattern.eq_ignore_ascii_case(name);
    };
    let Some((label, rest)) = name.split_once('.') else {
        return false;
    };
    !label.is_empty() && !suffix.is_empty() && rest.eq_ignore_ascii_case(suffix)
}
