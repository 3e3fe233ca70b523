//! Copying one message body from one socket to another as it arrives.
//!
//! The rest of a long Content-Length body between two plain sockets is
//! spliced (`proxy::splice`) unless `DOCKER_PROXY_BULK_COPY=buffered`.

use std::os::fd::RawFd;
use std::pin::Pin;
use std::time::Duration;

use monoio::time::{Instant, Sleep};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::io::{bulk_copy, read_append, write_all, BulkCopy, ReadSize};
use super::splice::{NonBlocking, Pipe, SpliceIo};
use super::watch;
use crate::http::body::BodyTracker;
use crate::http::ParseError;

/// Content-Length bodies with at least this much left are spliced.
const SPLICE_MIN: u64 = 256 * 1024;

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
    /// The client watched while waiting for `from` closed its connection.
    ClientGone,
    /// `from` sent nothing for the idle limit.
    Idle,
}

/// The idle limit of a copy: one timer, created when the copy first waits
/// for `from` and moved only when it fires early (a read that completed
/// meanwhile restarted the wait), so a steady copy costs one clock reading
/// per read and about one timer wake per `limit`.
struct IdleLimit<'a> {
    limit: Option<Duration>,
    sleep: Pin<&'a mut Option<Sleep>>,
}

impl IdleLimit<'_> {
    /// Resolves once a wait for `from` that started at `since` has lasted
    /// the limit; never without one.
    async fn stalled(&mut self, since: Option<Instant>) {
        let (Some(limit), Some(since)) = (self.limit, since) else {
            return std::future::pending().await;
        };
        let deadline = since + limit;
        loop {
            match self.sleep.as_mut().as_pin_mut() {
                None => self.sleep.set(Some(monoio::time::sleep_until(deadline))),
                Some(sleep) => {
                    sleep.await;
                    if Instant::now() >= deadline {
                        return;
                    }
                    if let Some(sleep) = self.sleep.as_mut().as_pin_mut() {
                        sleep.reset(deadline);
                    }
                }
            }
        }
    }

    /// When a wait starts: a clock reading only with a limit.
    fn start(&self) -> Option<Instant> {
        self.limit.map(|_| Instant::now())
    }
}

/// Copies one body from `from` to `to`, writing `head` first (it may be
/// empty), in the framing the tracker asks for (see `http::body::Reframe`).
/// `pending` holds bytes already read from `from`. Returns the bytes read
/// past the end of the body.
///
/// With `watch`, the client socket it names is probed while the copy waits
/// for `from` (`proxy::watch`); when the client has gone the copy stops
/// with [`CopyError::ClientGone`], abandoning the read in flight, so `from`
/// must then be closed.
///
/// With `idle`, a wait for `from` longer than that ends the copy with
/// [`CopyError::Idle`] (time spent writing to `to` does not count).
pub async fn copy_body<R, W>(
    from: &mut R,
    to: &mut W,
    mut tracker: BodyTracker,
    head: Vec<u8>,
    mut pending: Vec<u8>,
    watch: Option<RawFd>,
    idle: Option<Duration>,
) -> Result<Vec<u8>, CopyError>
where
    R: AsyncReadRent + SpliceIo,
    W: AsyncWriteRent + SpliceIo,
{
    let mut size = ReadSize::default();
    let mut out = head;
    // Lazy: no timer exists until the copy first waits for `from`.
    let mut gone = std::pin::pin!(watch::client_gone_opt(watch));
    let mut idle = IdleLimit {
        limit: idle,
        sleep: std::pin::pin!(None),
    };
    loop {
        let extra = if tracker.reframes() {
            // New framing around the data: encoded into `out`, and
            // `pending` stays the read buffer.
            let used = tracker
                .advance_into(&pending, &mut out)
                .map_err(CopyError::Framing)?;
            let extra = pending.split_off(used);
            pending.clear();
            extra
        } else {
            let used = tracker.advance(&pending).map_err(CopyError::Framing)?;
            let extra = pending.split_off(used);
            if out.is_empty() {
                std::mem::swap(&mut out, &mut pending);
            } else {
                out.extend_from_slice(&pending);
            }
            extra
        };
        if !out.is_empty() {
            let (result, buf) = write_all(to, out).await;
            result.map_err(|_| CopyError::Write)?;
            out = buf;
        }
        if tracker.is_done() {
            return Ok(extra);
        }
        if let Some(pipe) = splice_pipe(&tracker, from, to) {
            // No buffer is needed while the rest is spliced.
            drop((out, pending));
            let left = tracker.length_left().unwrap_or(0);
            monoio::select! {
                spliced = splice_body(from, to, pipe, left, &mut idle) => spliced?,
                _ = &mut gone => return Err(CopyError::ClientGone),
            }
            return Ok(Vec::new());
        }
        // Reuse the written buffer for the next read (when reframing, both
        // buffers are kept: `pending` is read into, `out` encoded into).
        out.clear();
        let read_into = if tracker.reframes() {
            std::mem::take(&mut pending)
        } else {
            std::mem::take(&mut out)
        };
        let since = idle.start();
        let (result, buf) = monoio::select! {
            read = read_append(from, read_into, size.get()) => read,
            _ = &mut gone => return Err(CopyError::ClientGone),
            // The read in flight is abandoned; `from` must then be closed.
            _ = idle.stalled(since) => return Err(CopyError::Idle),
        };
        pending = buf;
        match result {
            Ok(0) if tracker.ends_at_eof() => return Ok(Vec::new()),
            Ok(0) | Err(_) => return Err(CopyError::Read),
            Ok(n) => size.observe(n),
        }
    }
}

/// A pipe to splice the rest of the body through, when splicing is on,
/// both ends are plain sockets and enough of a Content-Length body is left.
fn splice_pipe(tracker: &BodyTracker, from: &impl SpliceIo, to: &impl SpliceIo) -> Option<Pipe> {
    let left = tracker.length_left()?;
    if left < SPLICE_MIN || bulk_copy() != BulkCopy::Splice {
        return None;
    }
    from.socket()?;
    to.socket()?;
    // Without a pipe (descriptors exhausted) the buffered copy goes on.
    Pipe::new(true).ok()
}

/// Splices exactly `left` bytes, the rest of the body: whatever follows it
/// (a pipelined request) stays in the socket for the next read.
async fn splice_body(
    from: &impl SpliceIo,
    to: &impl SpliceIo,
    mut pipe: Pipe,
    mut left: u64,
    idle: &mut IdleLimit<'_>,
) -> Result<(), CopyError> {
    let (Some(from), Some(to)) = (from.socket(), to.socket()) else {
        return Err(CopyError::Read);
    };
    let _from = NonBlocking::set(from).map_err(|_| CopyError::Read)?;
    let _to = NonBlocking::set(to).map_err(|_| CopyError::Write)?;
    while left > 0 {
        let since = idle.start();
        let filled = monoio::select! {
            filled = pipe.fill(from, left) => filled,
            _ = idle.stalled(since) => return Err(CopyError::Idle),
        };
        match filled {
            Ok(0) | Err(_) => return Err(CopyError::Read),
            Ok(n) => left -= n as u64,
        }
        pipe.drain(to).await.map_err(|_| CopyError::Write)?;
    }
    Ok(())
}
