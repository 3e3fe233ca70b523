//! Two-way byte copy for upgraded connections (exec, attach, BuildKit
//! sessions) and hijacked raw streams.
//!
//! End of stream from one side becomes a half-close toward the other while
//! the other direction keeps flowing. When the engine's side ends, the
//! client connection is finished at once. A watchdog ends the tunnel after
//! `limits.upgrade_idle` without traffic either way.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::UnixStream;

use super::conn::{Client, ClientIo};
use super::io::{read_append, write_all, COPY_BUF};

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
    let (client_read, client_write) = io.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let last = Rc::new(Cell::new(Instant::now()));

    let mut to_engine = std::pin::pin!(copy(client_read, upstream_write, last.clone()));
    let mut to_client = std::pin::pin!(copy(upstream_read, client_write, last.clone()));
    let mut watchdog = std::pin::pin!(watchdog(last, idle));

    monoio::select! {
        _ = &mut to_client => {}
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

/// Copies until end of stream, then shuts down the writer (half-close).
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(mut from: R, mut to: W, last: Rc<Cell<Instant>>) {
    let mut buf = Vec::with_capacity(COPY_BUF);
    loop {
        buf.clear();
        let (result, next) = read_append(&mut from, buf, COPY_BUF).await;
        buf = next;
        match result {
            Ok(0) | Err(_) => break,
            Ok(_) => last.set(Instant::now()),
        }
        let (result, next) = write_all(&mut to, buf).await;
        buf = next;
        if result.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
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
