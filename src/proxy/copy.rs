//! Copying one message body from one socket to another as it arrives.
//!
//! The next buffer is read while the previous one is being written.

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::io::{write_all, write_while_reading, ReadSize};
use crate::http::body::BodyTracker;
use crate::http::ParseError;

/// How relaying a response body ended.
pub enum Relayed {
    /// The whole body reached the client; the engine connection is at a
    /// message boundary when `upstream_reusable`.
    Complete { upstream_reusable: bool },
    /// Something failed; both connections must be closed.
    Broken,
}

/// Why a body copy stopped before the body's end.
#[derive(Debug)]
pub enum CopyError {
    /// Reading failed, or the sender closed before the body ended.
    Read,
    /// Writing failed.
    Write,
    /// The body's framing is malformed.
    Framing(ParseError),
}

/// Copies one body from `from` to `to`, writing `head` first (it may be
/// empty). `pending` holds bytes already read from `from`. Returns the
/// bytes read past the end of the body.
pub async fn copy_body<R: AsyncReadRent, W: AsyncWriteRent>(
    from: &mut R,
    to: &mut W,
    mut tracker: BodyTracker,
    head: Vec<u8>,
    mut pending: Vec<u8>,
) -> Result<Vec<u8>, CopyError> {
    let mut size = ReadSize::default();
    let mut out = head;
    loop {
        // `pending` holds bytes just read; the body's share joins `out`.
        let used = tracker.advance(&pending).map_err(CopyError::Framing)?;
        let extra = pending.split_off(used);
        if out.is_empty() {
            std::mem::swap(&mut out, &mut pending);
        } else {
            out.extend_from_slice(&pending);
        }
        if tracker.is_done() {
            let (result, _) = write_all(to, out).await;
            result.map_err(|_| CopyError::Write)?;
            return Ok(extra);
        }
        // The body has not ended, so no byte past it was read: `pending`
        // holds nothing `out` lacks and is reused for the next read.
        pending.clear();
        let (written, (result, read)) = write_while_reading(to, out, from, pending, size.get())
            .await
            .map_err(|_| CopyError::Write)?;
        match result {
            Ok(0) if tracker.ends_at_eof() => return Ok(Vec::new()),
            Ok(0) | Err(_) => return Err(CopyError::Read),
            Ok(n) => size.observe(n),
        }
        out = written;
        out.clear();
        pending = read;
    }
}
