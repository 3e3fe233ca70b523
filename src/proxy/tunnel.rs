//! Two-way byte copy for upgraded connections (exec, attach, BuildKit
//! sessions) and hijacked raw streams.
//!
//! End of stream from one side becomes a half-close toward the other while
//! the other direction keeps flowing. When the engine's side ends, the
//! client connection is finished at once. A watchdog ends the tunnel after
//! `limits.upgrade_idle` without traffic either way.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::UnixStream;

use super::conn::{Client, ClientIo};
use super::io::{write_all, write_while_reading, ReadSize};

/// Copies bytes both ways until the engine closes, either side fails, or
/// the tunnel idles out.
pub async fn run<S: ClientIo>(client: Client<S>, mut upstream: UnixStream, idle: Duration) {
    let Client { io, buf, .. } = client;
    // Bytes the client sent after the upgrade request's head.
    if !buf.is_empty() {
        let (result, _) = write_all(&mut upstream, buf).await;
        if result.is_err() {
            return;
        }
    }
    let upstream_fd = upstream.as_raw_fd();
    let (client_read, client_write) = io.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let last = Rc::new(Cell::new(Instant::now()));

    let mut to_engine = std::pin::pin!(copy(client_read, upstream_write, last.clone()));
    let mut to_client = std::pin::pin!(copy(upstream_read, client_write, last.clone()));
    let mut watchdog = std::pin::pin!(watchdog(last, idle));

    monoio::select! {
        ended = &mut to_client => {
            // The engine stopped sending. If it only shut down its write
            // side, the client may still send (stdin after output ended);
            // if it closed the connection, the client is finished now.
            if ended == Ended::Eof && !peer_closed(upstream_fd) {
                monoio::select! {
                    _ = &mut to_engine => {}
                    _ = &mut watchdog => {}
                }
            }
        }
        _ = &mut watchdog => {}
        _ = &mut to_engine => {
            // The client finished sending; keep relaying the engine's output.
            monoio::select! {
                _ = &mut to_client => {}
                _ = &mut watchdog => {}
            }
        }
    }
}

/// How one direction of the copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The reading side reached end of stream.
    Eof,
    /// A read or write failed.
    Failed,
}

/// True when the peer of `fd` closed the connection entirely, not just
/// its write side. Linux reports POLLHUP only when both directions are
/// shut down.
fn peer_closed(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `poll` is a valid pollfd for one entry; a zero timeout never
    // blocks; `fd` is open (the tunnel's stream halves still own it).
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready < 0 || poll.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Copies until end of stream, then shuts down the writer (half-close).
/// The next buffer is read while the previous one is being written.
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
    mut from: R,
    mut to: W,
    last: Rc<Cell<Instant>>,
) -> Ended {
    let mut size = ReadSize::default();
    let mut full = Vec::new();
    let mut spare = Vec::new();
    let ended = loop {
        let Ok((written, (result, read))) =
            write_while_reading(&mut to, full, &mut from, spare, size.get()).await
        else {
            break Ended::Failed;
        };
        match result {
            Ok(0) => break Ended::Eof,
            Err(_) => break Ended::Failed,
            Ok(n) => {
                size.observe(n);
                last.set(Instant::now());
            }
        }
        full = read;
        spare = written;
        spare.clear();
    };
    let _ = to.shutdown().await;
    ended
}

async fn watchdog(last: Rc<Cell<Instant>>, idle: Duration) {
    loop {
        let quiet = last.get().elapsed();
        if quiet >= idle {
            tracing::debug!(idle_secs = idle.as_secs(), "upgraded stream idle; closing");
            return;
        }
        monoio::time::sleep(idle - quiet).await;
    }
}
