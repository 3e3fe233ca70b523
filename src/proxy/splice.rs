//! Moving bulk bytes between two plain sockets through a pipe with
//! splice(2), so they never pass through user space.
//!
//! Bytes go socket -> pipe -> socket with non-blocking calls made on the
//! worker itself; when a call would block, the worker waits for the
//! socket's readiness through monoio. This runs the same on io_uring and
//! on epoll, and no kernel worker thread blocks in a splice (io_uring
//! would hand every splice to one). splice(2) waits on a socket according
//! to the socket's own O_NONBLOCK flag, so the sockets are switched to
//! non-blocking mode while bytes move ([`NonBlocking`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use monoio::net::{TcpStream, UnixStream};

/// Largest pipe asked for: one splice then moves up to 1 MiB. It is also
/// the default `/proc/sys/fs/pipe-max-size`, the most an unprivileged
/// process may ask for.
const BULK_PIPE: libc::c_int = 1 << 20;

/// A stream that may be spliced: a plain socket (not TLS).
pub trait SpliceIo {
    /// The socket under the stream, when its bytes are the stream's bytes.
    fn socket(&self) -> Option<Socket<'_>>;
}

impl SpliceIo for TcpStream {
    fn socket(&self) -> Option<Socket<'_>> {
        Some(Socket::Tcp(self))
    }
}

impl SpliceIo for UnixStream {
    fn socket(&self) -> Option<Socket<'_>> {
        Some(Socket::Unix(self))
    }
}

impl SpliceIo for monoio_rustls::ServerTlsStream<TcpStream> {
    fn socket(&self) -> Option<Socket<'_>> {
        None
    }
}

/// One end of a splice.
#[derive(Clone, Copy)]
pub enum Socket<'a> {
    Tcp(&'a TcpStream),
    Unix(&'a UnixStream),
}

impl Socket<'_> {
    pub fn fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable(false).await,
            Socket::Unix(s) => s.readable(false).await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.writable(false).await,
            Socket::Unix(s) => s.writable(false).await,
        }
    }

    /// Reads what the socket has ready into `buf` without waiting.
    /// `Ok(None)`: nothing ready; `Ok(Some(0))`: end of stream.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes of writing.
            let n = unsafe {
                libc::recv(
                    self.fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }

    /// Writes all of `bytes`, waiting while the socket is full.
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is valid for `bytes.len()` bytes of reading.
            let n = unsafe {
                libc::send(
                    self.fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                bytes = &bytes[n as usize..];
                continue;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => self.writable().await?,
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
        Ok(())
    }

    /// Sends FIN: the peer reads end of stream and may still send.
    pub fn shutdown_write(&self) {
        // SAFETY: shutdown(2) on a socket this borrow keeps open.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
    }
}

/// Keeps a socket in non-blocking mode until dropped, then restores its
/// flags (the engine connection returns to the pool and the client
/// connection to monoio's own reads afterwards).
pub struct NonBlocking {
    fd: RawFd,
    restore: Option<libc::c_int>,
}

impl NonBlocking {
    /// The socket must stay open while the guard lives.
    pub fn set(socket: Socket<'_>) -> io::Result<NonBlocking> {
        let fd = socket.fd();
        // SAFETY: F_GETFL and F_SETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK != 0 {
            return Ok(NonBlocking { fd, restore: None });
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking {
            fd,
            restore: Some(flags),
        })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            // SAFETY: the socket outlives the guard (see `set`).
            unsafe { libc::fcntl(self.fd, libc::F_SETFL, flags) };
        }
    }
}

/// A non-blocking pipe that bytes pass through, and how many it holds.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
    held: usize,
}

impl Pipe {
    /// A pipe of the kernel's default size (64 KiB); `bulk` asks for
    /// 1 MiB at once.
    pub fn new(bulk: bool) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut pipe = Pipe {
            read,
            write,
            size: 0,
            held: 0,
        };
        pipe.size = pipe.resize(if bulk { BULK_PIPE } else { 0 });
        Ok(pipe)
    }

    /// Asks for `want` bytes of room (0: keep) and returns the size the
    /// pipe has. The kernel may refuse to grow it (pipe-max-size, or the
    /// user's pipe-user-pages-soft exhausted); it then keeps its size.
    fn resize(&self, want: libc::c_int) -> usize {
        let fd = self.write.as_raw_fd();
        // SAFETY: fcntl on a pipe we own.
        let size = match want {
            0 => -1,
            _ => unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, want) },
        };
        let size = if size > 0 {
            size
        } else {
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) }
        };
        size.max(4096) as usize
    }

    /// Moves what `from` has ready, up to `limit` bytes, into the pipe,
    /// which must be empty. `Ok(None)`: nothing ready; `Ok(Some(0))`: end
    /// of stream. A fill that uses half the pipe or more grows it to
    /// 1 MiB: the stream is bulk.
    pub fn try_fill(&mut self, from: Socket<'_>, limit: u64) -> io::Result<Option<usize>> {
        let len = (self.size as u64).min(limit) as usize;
        loop {
            match splice(from.fd(), self.write.as_raw_fd(), len) {
                Ok(n) => {
                    self.held += n;
                    if n * 2 >= self.size && self.size < BULK_PIPE as usize {
                        self.size = self.resize(BULK_PIPE);
                    }
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`Pipe::try_fill`], waiting until `from` has bytes or ends.
    pub async fn fill(&mut self, from: Socket<'_>, limit: u64) -> io::Result<usize> {
        loop {
            if let Some(n) = self.try_fill(from, limit)? {
                return Ok(n);
            }
            from.readable().await?;
        }
    }

    /// Moves everything the pipe holds to `to`.
    pub async fn drain(&mut self, to: Socket<'_>) -> io::Result<()> {
        while self.held > 0 {
            match splice(self.read.as_raw_fd(), to.fd(), self.held) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.held -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: no offsets (both ends are pipes or sockets); the kernel
    // checks the descriptors.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

    use super::*;
    use crate::proxy::io::read_append;

    fn flags(fd: RawFd) -> libc::c_int {
        // SAFETY: F_GETFL on a descriptor the test keeps open.
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
    }

    /// What a bulk pipe should get here: 1 MiB, or less where the system's
    /// pipe-max-size is lower and we are not allowed past it.
    fn expected_bulk_size() -> usize {
        let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(BULK_PIPE as usize);
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            BULK_PIPE as usize
        } else {
            max.min(BULK_PIPE as usize)
        }
    }

    #[monoio::test_all]
    async fn fill_takes_no_byte_past_the_limit() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let (sink, mut sink_peer) = UnixStream::pair().unwrap();
        let (result, _) = writer.write_all(b"0123456789abcdef".to_vec()).await;
        result.unwrap();
        let mut pipe = Pipe::new(true).unwrap();
        let from = Socket::Unix(&reader);
        let _guard = NonBlocking::set(from).unwrap();
        assert_eq!(pipe.fill(from, 10).await.unwrap(), 10);
        pipe.drain(Socket::Unix(&sink)).await.unwrap();
        let (n, buf) = sink_peer.read(Vec::with_capacity(64)).await;
        assert_eq!(n.unwrap(), 10);
        assert_eq!(buf, b"0123456789");
        // The rest is still in the source socket, for whoever reads next.
        assert_eq!(pipe.fill(from, 100).await.unwrap(), 6);
        assert_eq!(pipe.held, 6);
    }

    #[monoio::test_all]
    async fn try_fill_tells_nothing_ready_from_end_of_stream() {
        let (writer, reader) = UnixStream::pair().unwrap();
        let from = Socket::Unix(&reader);
        let _guard = NonBlocking::set(from).unwrap();
        let mut pipe = Pipe::new(false).unwrap();
        assert_eq!(pipe.try_fill(from, u64::MAX).unwrap(), None);
        Socket::Unix(&writer).shutdown_write();
        assert_eq!(pipe.try_fill(from, u64::MAX).unwrap(), Some(0));
    }

    #[monoio::test_all]
    async fn bulk_pipes_are_large_and_busy_pipes_grow() {
        assert_eq!(Pipe::new(true).unwrap().size, expected_bulk_size());
        let (mut writer, reader) = UnixStream::pair().unwrap();
        // No more than the socket buffers hold: nobody reads until the fill.
        let (result, _) = writer.write_all(vec![7u8; 64 * 1024]).await;
        result.unwrap();
        let from = Socket::Unix(&reader);
        let _guard = NonBlocking::set(from).unwrap();
        let mut pipe = Pipe::new(false).unwrap();
        let first = pipe.size;
        let n = pipe.try_fill(from, u64::MAX).unwrap().unwrap();
        assert!(n * 2 >= first, "a first fill of {n} bytes into {first}");
        assert_eq!(pipe.size, expected_bulk_size().max(first));
    }

    #[monoio::test_all]
    async fn drain_waits_for_a_slow_reader_and_loses_nothing() {
        const TOTAL: usize = 3 << 20;
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let (sink, mut sink_peer) = UnixStream::pair().unwrap();
        let (from, to) = (Socket::Unix(&reader), Socket::Unix(&sink));
        let (_from, _to) = (
            NonBlocking::set(from).unwrap(),
            NonBlocking::set(to).unwrap(),
        );
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        let send = async {
            let (result, _) = writer.write_all(data.clone()).await;
            result.unwrap();
        };
        let relay = async {
            let mut pipe = Pipe::new(true).unwrap();
            let mut left = TOTAL as u64;
            while left > 0 {
                left -= pipe.fill(from, left).await.unwrap() as u64;
                // The reader has not read yet: the socket fills up and the
                // drain must wait for room rather than fail or spin.
                pipe.drain(to).await.unwrap();
            }
        };
        let receive = async {
            let mut got = Vec::with_capacity(TOTAL);
            while got.len() < TOTAL {
                let (n, next) = read_append(&mut sink_peer, got, 64 * 1024).await;
                got = next;
                assert!(n.unwrap() > 0, "end of stream after {} bytes", got.len());
            }
            got
        };
        let ((), (), got) = monoio::join!(send, relay, receive);
        assert!(got == data, "bytes lost or reordered on the way");
    }

    #[monoio::test_all]
    async fn non_blocking_guard_restores_the_flags() {
        let (a, _b) = UnixStream::pair().unwrap();
        let before = flags(a.as_raw_fd());
        {
            let _guard = NonBlocking::set(Socket::Unix(&a)).unwrap();
            assert_ne!(flags(a.as_raw_fd()) & libc::O_NONBLOCK, 0);
        }
        assert_eq!(flags(a.as_raw_fd()), before);
    }
}
