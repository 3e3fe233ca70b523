//! Two-way byte copy for upgraded connections (exec, attach, BuildKit
//! sessions) and hijacked raw streams.
//!
//! End of stream from one side becomes a half-close toward the other while
//! the other direction keeps flowing. When the engine's side ends, the
//! client connection is finished at once. A watchdog ends the tunnel after
//! `limits.upgrade_idle` without traffic either way.
//!
//! Between a plain TCP client and the engine, each direction splices
//! through a pipe (`proxy::splice`); over TLS, or with
//! `DOCKER_PROXY_BULK_COPY=buffered`, it copies through buffers.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::UnixStream;

use super::conn::{Client, ClientIo};
use super::io::{bulk_copy, read_append, write_all, BulkCopy, ReadSize};
use super::splice::{NonBlocking, Pipe, Socket};

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
    let last = Cell::new(Instant::now());
    if let (BulkCopy::Splice, Some(client)) = (bulk_copy(), io.socket()) {
        let engine = Socket::Unix(&upstream);
        let (Ok(_client), Ok(_engine)) = (NonBlocking::set(client), NonBlocking::set(engine))
        else {
            return;
        };
        let to_engine = splice_copy(client, engine, &last);
        let to_client = splice_copy(engine, client, &last);
        supervise(to_engine, to_client, upstream_fd, &last, idle).await;
        return;
    }
    let (client_read, client_write) = io.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let to_engine = copy(client_read, upstream_write, &last);
    let to_client = copy(upstream_read, client_write, &last);
    supervise(to_engine, to_client, upstream_fd, &last, idle).await;
}

/// Runs both directions until the tunnel is over: see the module docs.
async fn supervise(
    to_engine: impl std::future::Future<Output = Ended>,
    to_client: impl std::future::Future<Output = Ended>,
    upstream_fd: RawFd,
    last: &Cell<Instant>,
    idle: Duration,
) {
    let mut to_engine = std::pin::pin!(to_engine);
    let mut to_client = std::pin::pin!(to_client);
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

/// One direction of a spliced tunnel. A pipe exists only while bytes
/// flow: a direction waiting for its peer holds none, as a buffered copy
/// holds no buffer.
async fn splice_copy(from: Socket<'_>, to: Socket<'_>, last: &Cell<Instant>) -> Ended {
    let ended = loop {
        if from.readable().await.is_err() {
            break Ended::Failed;
        }
        let Ok(mut pipe) = Pipe::new(false) else {
            // No descriptors for a pipe (they run out before
            // max_connections does): this burst goes through a buffer.
            match buffered_burst(from, to, last).await {
                Some(ended) => break ended,
                None => continue,
            }
        };
        let burst = loop {
            match pipe.try_fill(from, u64::MAX) {
                Ok(Some(0)) => break Some(Ended::Eof),
                Ok(Some(_)) => last.set(Instant::now()),
                Ok(None) => break None,
                Err(_) => break Some(Ended::Failed),
            }
            if pipe.drain(to).await.is_err() {
                break Some(Ended::Failed);
            }
        };
        if let Some(ended) = burst {
            break ended;
        }
    };
    to.shutdown_write();
    ended
}

/// Copies what `from` has ready through a buffer, as [`splice_copy`]
/// splices it; `None` when `from` has nothing more ready.
async fn buffered_burst(from: Socket<'_>, to: Socket<'_>, last: &Cell<Instant>) -> Option<Ended> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        match from.try_read(&mut buf) {
            Ok(Some(0)) => return Some(Ended::Eof),
            Ok(Some(n)) => {
                last.set(Instant::now());
                if to.write_all(&buf[..n]).await.is_err() {
                    return Some(Ended::Failed);
                }
            }
            Ok(None) => return None,
            Err(_) => return Some(Ended::Failed),
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
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
    mut from: R,
    mut to: W,
    last: &Cell<Instant>,
) -> Ended {
    let mut size = ReadSize::default();
    let mut buf = Vec::new();
    let ended = loop {
        buf.clear();
        let (result, next) = read_append(&mut from, buf, size.get()).await;
        buf = next;
        match result {
            Ok(0) => break Ended::Eof,
            Err(_) => break Ended::Failed,
            Ok(n) => {
                size.observe(n);
                last.set(Instant::now());
            }
        }
        let (result, next) = write_all(&mut to, buf).await;
        buf = next;
        if result.is_err() {
            break Ended::Failed;
        }
    };
    let _ = to.shutdown().await;
    ended
}

async fn watchdog(last: &Cell<Instant>, idle: Duration) {
    loop {
        let quiet = last.get().elapsed();
        if quiet >= idle {
            tracing::debug!(idle_secs = idle.as_secs(), "upgraded stream idle; closing");
            return;
        }
        monoio::time::sleep(idle - quiet).await;
    }
}
