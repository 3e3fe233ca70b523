//! Certificates and keys generated at test time (rcgen); no key material is
//! ever committed. Shared by the `tls` and `auth` tests.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority that can issue leaf certificates.
pub(crate) struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// PEM of the CA certificate.
    pub(crate) cert_pem: String,
}

/// A generated leaf certificate with its key.
pub(crate) struct TestLeaf {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) cert_pem: String,
    /// PKCS#8 PEM of the key.
    pub(crate) key_pem: String,
    /// PKCS#8 DER of the key.
    pub(crate) key_der: Vec<u8>,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ECDSA P-256 generation works with ring");
        let cert_pem = params
            .self_signed(&key)
            .expect("self-signing a CA works")
            .pem();
        Self {
            params,
            key,
            cert_pem,
        }
    }

    /// Issues a leaf with the given subject CN (if any) and DNS SANs.
    pub(crate) fn issue(&self, common_name: Option<&str>, dns_names: &[&str]) -> TestLeaf {
        let names: Vec<String> = dns_names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("test DNS names are valid");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("ECDSA P-256 generation works with ring");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .expect("signing a leaf works");
        TestLeaf {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

/// PEM-encodes DER bytes under `label`, 64 characters a line (RFC 7468).
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 output is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Extracts the SEC1 `ECPrivateKey` from a PKCS#8 EC key:
/// `SEQUENCE { INTEGER, AlgorithmIdentifier, OCTET STRING { sec1 } }`.
pub(crate) fn pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (_, inner) = der_element(pkcs8, 0x30);
    let (rest, _) = der_element(inner, 0x02);
    let (rest, _) = der_element(rest, 0x30);
    let (_, sec1) = der_element(rest, 0x04);
    sec1.to_vec()
}

/// Splits one DER element with the expected tag off the front of `input`;
/// returns (what follows, its content).
fn der_element(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "unexpected DER tag");
    let (len, header) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        0x81 => (usize::from(input[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([input[2], input[3]])), 4),
        other => panic!("DER length form {other:#x} not expected in a test key"),
    };
    (&input[header + len..], &input[header..header + len])
}
