//! Per-core keep-alive connections to the engine.
//!
//! A connection goes back to the pool only after a response ended exactly
//! where its framing said. Before one is reused, a non-blocking peek tells
//! whether the engine closed it (or sent bytes nobody asked for); such a
//! connection is dropped, never written to.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use monoio::net::UnixStream;

use super::socket::SocketChoice;
use super::Error;

/// Idle connections kept per core. Enough for every concurrent request of
/// a busy core to find one: past this, each extra request would pay a
/// connect and a close to the engine.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed rather than reused.
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

/// A checked-out engine connection.
pub struct Conn {
    pub stream: UnixStream,
    /// It came from the pool (so a failure before any response byte may be
    /// the engine having closed it just now).
    pub reused: bool,
}

/// One core's connections to the engine socket.
pub struct Pool {
    socket: SocketChoice,
    connect_timeout: Duration,
    idle: RefCell<Vec<(UnixStream, Instant)>>,
}

impl Pool {
    pub fn new(socket: SocketChoice, connect_timeout: Duration) -> Self {
        Pool {
            socket,
            connect_timeout,
            idle: RefCell::new(Vec::new()),
        }
    }

    /// A live pooled connection, or a new one; always a new one when
    /// `fresh`. `now` is the caller's recent clock reading.
    pub async fn checkout(&self, fresh: bool, now: Instant) -> Result<Conn, Error> {
        let pooled = if fresh { None } else { self.take_idle(now) };
        if let Some(stream) = pooled {
            return Ok(Conn {
                stream,
                reused: true,
            });
        }
        self.connect().await.map(|stream| Conn {
            stream,
            reused: false,
        })
    }

    /// A new connection, never one from the pool.
    async fn connect(&self) -> Result<UnixStream, Error> {
        let path = self
            .socket
            .current()
            .map_err(|tried| Error::NoSocket { tried })?;
        match monoio::time::timeout(self.connect_timeout, UnixStream::connect(path)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(Error::Connect {
                path: path.to_path_buf(),
                source,
            }),
            Err(_) => Err(Error::ConnectTimeout {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Returns a connection whose last response ended cleanly. `since` is
    /// a clock reading from no earlier than that response's head: reading
    /// it early only makes the connection retire sooner.
    pub fn checkin(&self, stream: UnixStream, since: Instant) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            idle.push((stream, since));
        }
    }

    fn take_idle(&self, now: Instant) -> Option<UnixStream> {
        let mut idle = self.idle.borrow_mut();
        while let Some((stream, since)) = idle.pop() {
            let age = now.saturating_duration_since(since);
            if age < MAX_IDLE_AGE && is_open_and_quiet(&stream) {
                return Some(stream);
            }
        }
        None
    }
}

/// True when the engine has neither closed the connection nor sent
/// anything on it while it sat idle.
fn is_open_and_quiet(stream: &UnixStream) -> bool {
    // SAFETY: the fd belongs to `stream`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let socket = socket2::SockRef::from(&fd);
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match socket.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}
