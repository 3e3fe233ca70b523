//! Noticing that a client has gone while its response body is relayed.
//!
//! A followed stream (`logs -f`, `events`) on a quiet source writes nothing
//! for hours, so a failed write cannot be what ends it. While `copy` (for
//! a chunked or close-delimited body: a Content-Length body is not a
//! followed stream) or `filter` wait for the engine's next bytes,
//! [`client_gone`] looks at the client's socket once per [`PROBE_EVERY`]
//! with a zero-timeout `poll`, which reads nothing: bytes of a pipelined
//! next request stay in the socket for the next head.
//!
//! - A reset or error (`POLLERR`, `POLLHUP`): the client is gone.
//! - End of stream (`POLLRDHUP`, the client's FIN): the client may have
//!   closed, or only shut down its write side and still read. A FIN alone
//!   cannot tell the two apart, so the response keeps flowing, and TCP
//!   keepalive probes start on the socket: a peer that still reads answers
//!   them for as long as it lives; a closed peer's kernel answers with a
//!   reset once it has forgotten the connection (Linux: after
//!   `net.ipv4.tcp_fin_timeout`, 60 s by default), and the next probe here
//!   sees the reset. Any byte the engine sends before then is written, and
//!   a closed peer resets at once.
//!
//! See docs/http.md ("Client gone during a response").

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use crate::http::head::Framing;

/// How often a waiting relay looks at its client's socket.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Keepalive timing once the client has sent its FIN: first probe after
/// `KEEPALIVE_IDLE` of silence, then every `KEEPALIVE_INTERVAL`, and the
/// kernel gives up after `KEEPALIVE_RETRIES` unanswered probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 5;

/// What a probe saw on the client's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Nothing notable (possibly pipelined bytes waiting).
    Open,
    /// The client sent its FIN; it may still read.
    HalfClosed,
    /// Reset, error, or both directions closed.
    Gone,
}

/// Looks at `fd` without reading from it and without waiting.
pub fn probe(fd: RawFd) -> ClientState {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `poll` is a valid pollfd for one entry; a zero timeout never
    // blocks; the caller keeps `fd` open while it probes.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready < 0 || poll.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        ClientState::Gone
    } else if poll.revents & libc::POLLRDHUP != 0 {
        ClientState::HalfClosed
    } else {
        ClientState::Open
    }
}

/// Resolves once the client on `fd` has closed or reset its connection;
/// never while it may still read. `fd` must stay open while this runs.
pub async fn client_gone(fd: RawFd) {
    let mut probing = false;
    loop {
        monoio::time::sleep(PROBE_EVERY).await;
        match probe(fd) {
            ClientState::Open => {}
            ClientState::HalfClosed if probing => {}
            ClientState::HalfClosed => {
                probing = true;
                tracing::debug!("client sent end of stream during a response; probing it");
                start_keepalive(fd);
            }
            ClientState::Gone => {
                tracing::debug!("client closed during a response; ending it");
                return;
            }
        }
    }
}

/// Like [`client_gone`] when there is a socket to watch; never resolves
/// for `None`.
/// The client socket to watch while relaying a response body framed so:
/// only a chunked or close-delimited body can be a followed stream that
/// goes quiet for hours; a Content-Length body (the common small response)
/// costs no probe timer.
pub fn for_body(framing: Framing, fd: RawFd) -> Option<RawFd> {
    match framing {
        Framing::Chunked | Framing::UntilClose => Some(fd),
        Framing::Empty | Framing::Length(_) => None,
    }
}

pub async fn client_gone_opt(fd: Option<RawFd>) {
    match fd {
        Some(fd) => client_gone(fd).await,
        None => std::future::pending().await,
    }
}

fn start_keepalive(fd: RawFd) {
    // SAFETY: the caller of `client_gone` keeps `fd` open while it runs.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(error) = socket2::SockRef::from(&fd).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "cannot enable keepalive probes on a half-closed client");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn pipelined_bytes_are_not_end_of_stream_and_stay_unread() {
        let (mut client, server) = pair();
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe(server.as_raw_fd()), ClientState::Open);
        let mut peek = [0u8; 64];
        assert_eq!(server.peek(&mut peek).unwrap(), 16);
    }

    #[test]
    fn a_fin_is_a_half_close_and_a_reset_is_gone() {
        let (client, server) = pair();
        assert_eq!(probe(server.as_raw_fd()), ClientState::Open);
        client.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe(server.as_raw_fd()), ClientState::HalfClosed);

        let (client, server) = pair();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe(server.as_raw_fd()), ClientState::Gone);
    }
}
