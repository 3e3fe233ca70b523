//! Bearer tokens: parsing the `Authorization` header and finding the
//! configured token it carries without leaking which one, or how long they
//! are, through timing.
//!
//! Every configured credential is kept only as its SHA-256 digest. A
//! presented token is hashed once and compared with every digest in
//! constant time; the loop never stops early, so the time taken depends on
//! the number of configured credentials and the presented token's length,
//! not on which entry (if any) matched or on the configured tokens' lengths.

use std::fmt;
use std::sync::Arc;

use ring::digest::{digest, SHA256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::config::TokenEntry;

/// Role given to the shared `auth.secret`.
pub(super) const SECRET_ROLE: &str = "admin";

/// Why a header did not yield a token to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderProblem {
    /// The scheme is not `Bearer` (for example `Basic`).
    Scheme,
    /// `Bearer` with no token, or a token with spaces inside.
    Malformed,
}

/// Extracts the token from an `Authorization` header value.
///
/// RFC 9110 §11.1: the scheme is case-insensitive and separated from the
/// credentials by one or more spaces; surrounding whitespace is ignored.
pub(super) fn parse_header(value: &[u8]) -> Result<&[u8], HeaderProblem> {
    let value = trim(value);
    let split = value.iter().position(|b| is_blank(*b));
    let (scheme, rest) = match split {
        Some(at) => (&value[..at], trim(&value[at..])),
        None => (value, &value[value.len()..]),
    };

    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(HeaderProblem::Scheme);
    }
    if rest.is_empty() || rest.iter().any(|b| is_blank(*b) || b.is_ascii_control()) {
        return Err(HeaderProblem::Malformed);
    }
    Ok(rest)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_blank(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_blank(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// A configured credential the lookup can return.
pub(super) struct Credential {
    digest: [u8; 32],
    pub(super) role: Arc<str>,
    pub(super) name: Option<Arc<str>>,
}

/// Every configured credential in precedence order: tokens in config order,
/// then the shared secret.
pub(super) struct TokenTable {
    credentials: Vec<Credential>,
}

impl fmt::Debug for TokenTable {
    // Only the count: even a digest lets a weak token be guessed offline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable")
            .field("credentials", &self.credentials.len())
            .finish()
    }
}

impl TokenTable {
    /// Builds the table. Empty tokens and an empty secret are skipped: an
    /// empty value must never authenticate anyone.
    pub(super) fn new(tokens: &[TokenEntry], secret: Option<&str>) -> Self {
        let from_tokens = tokens
            .iter()
            .filter(|t| !t.token.is_empty())
            .map(|t| Credential {
                digest: hash(t.token.as_bytes()),
                role: Arc::from(t.role.as_str()),
                name: t.name.as_deref().map(Arc::from),
            });
        let from_secret = secret.filter(|s| !s.is_empty()).map(|s| Credential {
            digest: hash(s.as_bytes()),
            role: Arc::from(SECRET_ROLE),
            name: None,
        });
        Self {
            credentials: from_tokens.chain(from_secret).collect(),
        }
    }

    /// True when no usable credential is configured.
    pub(super) fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    /// Finds the first credential equal to `presented`.
    ///
    /// All digests are compared on every call and the index of the first
    /// match is chosen with constant-time selects, so tokens listed before
    /// the secret win without the order showing in the timing.
    pub(super) fn find(&self, presented: &[u8]) -> Option<&Credential> {
        let wanted = hash(presented);
        let mut found = Choice::from(0);
        let mut index = 0u32;

        for (i, credential) in self.credentials.iter().enumerate() {
            let equal = credential.digest.ct_eq(&wanted);
            let position = u32::try_from(i).unwrap_or(u32::MAX);
            index.conditional_assign(&position, equal & !found);
            found |= equal;
        }

        if bool::from(found) {
            self.credentials.get(index as usize)
        } else {
            None
        }
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}
