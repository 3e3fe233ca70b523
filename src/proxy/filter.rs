//! Response filtering on live bodies: each JSON document is filtered as
//! soon as it is complete and sent on as one chunk.
//!
//! The head goes out first with the body re-framed as chunked (filters
//! change lengths). The engine's body is decoded by its own framing, split
//! into JSON documents (one for inspect and list endpoints, one per line for
//! `/events` and `stats`), and each document is filtered and written before
//! the next one is awaited, so streams keep streaming. A document larger
//! than `limits.max_filter_document`, or one that is not JSON, is never
//! sent unfiltered: the connection is closed.

use monoio::net::UnixStream;

use crate::policy::ResponseFilter;

use super::conn::{Client, ClientIo};
use super::copy::Relayed;
use super::io::{read_append, write_all, ReadSize};
use super::watch;
use crate::http::body::BodyTracker;
use crate::http::chunked;
use crate::http::head::Framing;

/// Why filtering stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(
        "a JSON document in the response is larger than limits.max_filter_document ({0} bytes)"
    )]
    TooLarge(usize),
    #[error("the response is declared JSON but is not: {0}")]
    NotJson(String),
}

/// Splits complete JSON documents off the front of `pending` and filters
/// each into `out`, one per line. With `at_end`, what is left must be
/// whitespace or one document.
///
/// Each document is checked, delimited and filtered in one pass over its
/// bytes; a document still incomplete is passed over again, from its start,
/// when more bytes have come.
pub fn take_documents(
    pending: &mut Vec<u8>,
    at_end: bool,
    cap: usize,
    filter: &ResponseFilter,
    out: &mut Vec<u8>,
) -> Result<(), FilterError> {
    let mut consumed = 0;
    loop {
        // Whitespace between documents does not count towards the cap.
        consumed += pending[consumed..]
            .iter()
            .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        let rest = &pending[consumed..];
        if rest.is_empty() {
            break;
        }
        // One byte past the cap is enough to know a document is too large.
        let window = &rest[..rest.len().min(cap.saturating_add(1))];
        let input_ends = at_end && window.len() == rest.len();
        match filter.filter_document(window, input_ends, out) {
            Ok(Some(len)) if len > cap => return Err(FilterError::TooLarge(cap)),
            Ok(Some(len)) => {
                out.push(b'\n');
                consumed += len;
            }
            Ok(None) if window.len() > cap => return Err(FilterError::TooLarge(cap)),
            Ok(None) if at_end => {
                return Err(FilterError::NotJson(
                    "the body ends inside a JSON document".to_owned(),
                ))
            }
            Ok(None) => break,
            Err(error) => return Err(FilterError::NotJson(error.to_string())),
        }
    }
    pending.drain(..consumed);
    Ok(())
}

/// Frames `data` as one HTTP chunk.
fn push_chunk(frame: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if !chunked {
        frame.extend_from_slice(data);
        return;
    }
    chunked::push_hex(frame, data.len() as u64);
    frame.extend_from_slice(b"\r\n");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\r\n");
}

/// Relays a JSON response body through `filter`. `head` is the response
/// head already re-framed; `leftover` holds body bytes read with the head;
/// `chunked` frames each batch of documents as one chunk.
#[allow(clippy::too_many_arguments)]
pub async fn relay<S: ClientIo>(
    client: &mut Client<S>,
    upstream: &mut UnixStream,
    framing: Framing,
    head: Vec<u8>,
    leftover: Vec<u8>,
    filter: &ResponseFilter,
    cap: usize,
    chunked: bool,
) -> Relayed {
    let mut size = ReadSize::default();
    let mut reader = BodyTracker::new(framing);
    let mut extra = false;
    let mut pending = Vec::new();
    let mut frame = head;
    let mut docs = Vec::new();
    let mut raw = leftover;
    let mut ended = reader.is_done();
    // Lazy: no timer exists until the relay first waits for the engine.
    let mut gone = std::pin::pin!(watch::client_gone_opt(watch::for_body(framing, client.fd)));
    loop {
        let had_newline = memchr::memchr(b'\n', &raw).is_some();
        match reader.advance_decoding(&raw, &mut pending) {
            Ok(used) => extra |= used < raw.len(),
            Err(error) => {
                tracing::warn!(%error, "engine sent a malformed chunked body");
                return Relayed::Broken;
            }
        }
        ended |= reader.is_done();
        // Parse when a document may have ended: dockerd ends each one with
        // a newline; whole-body responses are parsed once at their end.
        if had_newline || ended {
            docs.clear();
            if let Err(error) = take_documents(&mut pending, ended, cap, filter, &mut docs) {
                tracing::error!(%error, "response not sent unfiltered; closing the connection");
                let _ = write_all(&mut client.io, frame).await;
                return Relayed::Broken;
            }
            push_chunk(&mut frame, &docs, chunked);
        } else if pending.len() > cap {
            let error = FilterError::TooLarge(cap);
            tracing::error!(%error, "response not sent unfiltered; closing the connection");
            let _ = write_all(&mut client.io, frame).await;
            return Relayed::Broken;
        }
        if ended && chunked {
            frame.extend_from_slice(b"0\r\n\r\n");
        }
        if !frame.is_empty() {
            let (result, buf) = write_all(&mut client.io, frame).await;
            if result.is_err() {
                return Relayed::Broken;
            }
            frame = buf;
            frame.clear();
        }
        if ended {
            return Relayed::Complete {
                upstream_reusable: !extra && framing != Framing::UntilClose,
            };
        }
        raw.clear();
        let (result, buf) = monoio::select! {
            read = read_append(upstream, raw, size.get()) => read,
            // The read in flight is abandoned; the engine connection closes.
            _ = &mut gone => return Relayed::Broken,
        };
        raw = buf;
        if let Ok(n) = result {
            size.observe(n);
        }
        match result {
            Ok(0) if framing == Framing::UntilClose => ended = true,
            Ok(0) | Err(_) => return Relayed::Broken,
            Ok(_) => {}
        }
    }
}

/// Filters cannot be applied to compressed bodies.
pub fn is_compressed(content_encoding: Option<&[u8]>) -> bool {
    content_encoding
        .map(crate::http::head::trim)
        .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case(b"identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::{FilterAction, FilterEntry};

    fn redact_env() -> ResponseFilter {
        let mut filter = ResponseFilter::default();
        filter.push(FilterEntry::new("Config.Env", FilterAction::Redact));
        filter
    }

    #[test]
    fn filters_each_line_delimited_document_as_it_completes() {
        let mut pending = b"{\"Config\":{\"Env\":[\"A=1\"]}}\n{\"Config\":{\"Env\":[\"B".to_vec();
        let mut out = Vec::new();
        take_documents(&mut pending, false, 1 << 20, &redact_env(), &mut out).unwrap();
        assert_eq!(out, b"{\"Config\":{\"Env\":[\"***REDACTED***\"]}}\n");
        assert_eq!(pending, b"{\"Config\":{\"Env\":[\"B");
        pending.extend_from_slice(b"=2\"]}}\n");
        out.clear();
        take_documents(&mut pending, false, 1 << 20, &redact_env(), &mut out).unwrap();
        assert_eq!(out, b"{\"Config\":{\"Env\":[\"***REDACTED***\"]}}\n");
        assert!(pending.is_empty());
    }

    #[test]
    fn output_does_not_depend_on_where_the_body_is_cut() {
        let body: &[u8] = b"{\"Config\":{\"Env\":[\"A=1\"]},\"n\":12}\n\n [{\"Config\":\
              {\"Env\":\"\xc3\xa9\"}}]\r\n{\"x\":true}{\"Config\":{\"Env\":{\"k\":1}}}\n";
        let mut whole = Vec::new();
        take_documents(&mut body.to_vec(), true, 1 << 20, &redact_env(), &mut whole).unwrap();
        assert_eq!(
            String::from_utf8(whole.clone()).unwrap(),
            "{\"Config\":{\"Env\":[\"***REDACTED***\"]},\"n\":12}\n\
             [{\"Config\":{\"Env\":\"***REDACTED***\"}}]\n{\"x\":true}\n\
             {\"Config\":{\"Env\":{\"k\":0}}}\n"
        );
        for cut in 0..body.len() {
            let mut pending = body[..cut].to_vec();
            let mut out = Vec::new();
            take_documents(&mut pending, false, 1 << 20, &redact_env(), &mut out).unwrap();
            pending.extend_from_slice(&body[cut..]);
            take_documents(&mut pending, true, 1 << 20, &redact_env(), &mut out).unwrap();
            assert_eq!(out, whole, "cut at {cut}");
            assert!(pending.is_empty());
        }
    }

    #[test]
    fn documents_up_to_the_cap_pass() {
        let doc = b"{\"Config\":{\"Env\":[\"A=1\"]}}";
        let mut out = Vec::new();
        let mut pending = [&doc[..], b"\n", doc].concat();
        take_documents(&mut pending, true, doc.len(), &redact_env(), &mut out).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut pending = doc.to_vec();
        let result = take_documents(&mut pending, true, doc.len() - 1, &redact_env(), &mut out);
        assert!(matches!(result, Err(FilterError::TooLarge(_))));
    }

    #[test]
    fn refuses_documents_over_the_cap() {
        let mut pending = format!("{{\"a\":\"{}\"", "x".repeat(100)).into_bytes();
        let result = take_documents(&mut pending, false, 50, &redact_env(), &mut Vec::new());
        assert!(matches!(result, Err(FilterError::TooLarge(50))));
    }

    #[test]
    fn refuses_bodies_that_are_not_json() {
        let mut pending = b"not json at all".to_vec();
        let result = take_documents(&mut pending, true, 1 << 20, &redact_env(), &mut Vec::new());
        assert!(matches!(result, Err(FilterError::NotJson(_))));
        let mut truncated = b"{\"a\":".to_vec();
        let result = take_documents(
            &mut truncated,
            true,
            1 << 20,
            &redact_env(),
            &mut Vec::new(),
        );
        assert!(matches!(result, Err(FilterError::NotJson(_))));
        let mut trailing = b"{\"a\":1}\n}".to_vec();
        let result = take_documents(
            &mut trailing,
            false,
            1 << 20,
            &redact_env(),
            &mut Vec::new(),
        );
        assert!(matches!(result, Err(FilterError::NotJson(_))));
    }

    #[test]
    fn recognises_compressed_bodies() {
        assert!(is_compressed(Some(b"gzip")));
        assert!(!is_compressed(Some(b"identity")));
        assert!(!is_compressed(None));
    }
}
