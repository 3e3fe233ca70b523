//! Our HTTP/1.1 layer: heads, body framing and canonical targets.
//!
//! Parsing is `httparse`; everything about framing, limits and request
//! smuggling is decided here so that the proxy and the engine always agree
//! on where a message ends. `crate::proxy` drives the I/O.

pub mod body;
pub mod chunked;
pub mod head;
pub mod response;
pub mod target;

use thiserror::Error;

/// A client or engine sent bytes we will not pass on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("request head is larger than limits.max_head")]
    HeadTooLarge,
    #[error("request head has more than {} header fields", head::MAX_HEADERS)]
    TooManyHeaders,
    #[error("only HTTP/1.0 and HTTP/1.1 are supported")]
    Version,
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    #[error("both Content-Length and Transfer-Encoding are present")]
    LengthAndChunked,
    #[error("several different Content-Length values")]
    ConflictingContentLength,
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
    #[error("transfer coding {0:?} is not supported; only chunked is")]
    UnsupportedTransferCoding(String),
    #[error(
        "the request has more than one Host header; send exactly one \
         (RFC 9112 section 3.2)"
    )]
    DuplicateHost,
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

impl ParseError {
    /// The status a client gets for this error (SPEC section 5).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::Version => 505,
            _ => 400,
        }
    }
}
