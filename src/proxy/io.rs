//! Small I/O helpers over monoio's ownership-passing reads and writes.

use std::io;
use std::sync::OnceLock;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Size of the buffers whole bodies are read through for inspection.
pub const COPY_BUF: usize = 64 * 1024;

/// Smallest and largest read size of a streaming copy.
const MIN_COPY: usize = 16 * 1024;
const MAX_COPY: usize = 256 * 1024;

/// Read size for a streaming copy: starts small, so the many quiet streams
/// of a CI host (`logs -f`, `events`, attach) cost little, and doubles
/// while reads fill it, so bulk transfers move in large steps.
#[derive(Debug, Clone, Copy)]
pub struct ReadSize {
    want: usize,
}

impl Default for ReadSize {
    fn default() -> Self {
        ReadSize { want: MIN_COPY }
    }
}

impl ReadSize {
    pub fn get(&self) -> usize {
        self.want
    }

    /// Records a read of `n` bytes.
    pub fn observe(&mut self, n: usize) {
        if n >= self.want && self.want < MAX_COPY {
            self.want *= 2;
        }
    }
}

/// How bulk bytes move between two plain sockets (not TLS): spliced
/// through a pipe, or read into and written from user-space buffers. Set
/// by `DOCKER_PROXY_BULK_COPY`, a tuning and benchmark knob read once at
/// start-up; see `docs/architecture.md` for the measurements behind the
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BulkCopy {
    #[default]
    Splice,
    Buffered,
}

impl BulkCopy {
    pub const ENV: &'static str = "DOCKER_PROXY_BULK_COPY";

    pub fn parse(value: &str) -> Option<BulkCopy> {
        match value {
            "splice" => Some(BulkCopy::Splice),
            "buffered" => Some(BulkCopy::Buffered),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BulkCopy::Splice => "splice",
            BulkCopy::Buffered => "buffered",
        }
    }
}

static BULK_COPY: OnceLock<BulkCopy> = OnceLock::new();

/// Reads `DOCKER_PROXY_BULK_COPY` (unset or empty: the default) and fixes
/// the mode for the life of the process.
pub fn init_bulk_copy() -> Result<BulkCopy, String> {
    let mode = match std::env::var(BulkCopy::ENV) {
        Ok(value) if !value.is_empty() => BulkCopy::parse(&value).ok_or_else(|| {
            format!(
                "{} must be `splice` or `buffered`, not `{value}`",
                BulkCopy::ENV
            )
        })?,
        _ => BulkCopy::default(),
    };
    Ok(*BULK_COPY.get_or_init(|| mode))
}

/// The mode fixed by [`init_bulk_copy`] (the default before that).
pub fn bulk_copy() -> BulkCopy {
    BULK_COPY.get().copied().unwrap_or_default()
}

/// Reads more bytes onto the end of `buf`, making room for at least
/// `spare` bytes first. Returns the count read (0 at end of stream).
pub async fn read_append<R: AsyncReadRent>(
    io: &mut R,
    mut buf: Vec<u8>,
    spare: usize,
) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < spare {
        buf.reserve(spare);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (result, slice) = io.read(buf.slice_mut(len..cap)).await;
    (result, slice.into_inner())
}

/// Writes all of `buf`, handing the buffer back.
pub async fn write_all<W: AsyncWriteRent>(io: &mut W, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    if buf.is_empty() {
        return (Ok(()), buf);
    }
    let (result, buf) = io.write_all(buf).await;
    (result.map(|_| ()), buf)
}

/// Writes all of `out` to `to` while reading from `from` onto `into` (as
/// [`read_append`] does with `spare`). Returns the written buffer and the
/// read's outcome, or the write's error: a failed write abandons the read.
pub async fn write_while_reading<R: AsyncReadRent, W: AsyncWriteRent>(
    to: &mut W,
    out: Vec<u8>,
    from: &mut R,
    into: Vec<u8>,
    spare: usize,
) -> io::Result<(Vec<u8>, (io::Result<usize>, Vec<u8>))> {
    let mut write = std::pin::pin!(write_all(to, out));
    let mut read = std::pin::pin!(read_append(from, into, spare));
    let mut read_first = None;
    let (written, out) = monoio::select! {
        biased;
        done = &mut write => done,
        done = &mut read => {
            read_first = Some(done);
            (&mut write).await
        }
    };
    written?;
    let read = match read_first {
        Some(done) => done,
        None => read.await,
    };
    Ok((out, read))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monoio::net::UnixStream;

    use super::*;

    #[monoio::test_all(timer_enabled = true)]
    async fn a_failed_write_does_not_wait_for_the_read() {
        let (mut to, to_peer) = UnixStream::pair().unwrap();
        let (mut from, _quiet_peer) = UnixStream::pair().unwrap();
        drop(to_peer);
        let overlap = write_while_reading(&mut to, vec![1; 1 << 20], &mut from, Vec::new(), 4096);
        let result = monoio::time::timeout(Duration::from_secs(5), overlap).await;
        assert!(result.expect("returned at once").is_err());
    }

    #[monoio::test_all]
    async fn a_read_finishing_first_waits_for_the_write() {
        const LEN: usize = 4 << 20;
        let (mut to, mut to_peer) = UnixStream::pair().unwrap();
        let (mut from, mut from_peer) = UnixStream::pair().unwrap();
        let (result, _) = from_peer.write_all(b"next".to_vec()).await;
        result.unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        // Far more than the socket buffers hold: the write finishes only
        // while the peer reads, long after the read is done.
        let overlap = write_while_reading(&mut to, data.clone(), &mut from, Vec::new(), 4096);
        let receive = async {
            let mut got = Vec::new();
            while got.len() < LEN {
                let (n, next) = read_append(&mut to_peer, got, 64 * 1024).await;
                got = next;
                assert!(n.unwrap() > 0);
            }
            got
        };
        let (overlap, got) = monoio::join!(overlap, receive);
        let (written, (read, buf)) = overlap.unwrap();
        assert_eq!(written.len(), LEN);
        assert_eq!((read.unwrap(), &buf[..]), (4, &b"next"[..]));
        assert!(got == data);
    }

    #[test]
    fn read_size_grows_only_while_reads_fill_it() {
        let mut size = ReadSize::default();
        size.observe(100);
        assert_eq!(size.get(), MIN_COPY);
        for _ in 0..10 {
            let full = size.get();
            size.observe(full);
        }
        assert_eq!(size.get(), MAX_COPY);
    }

    #[test]
    fn bulk_copy_modes_parse_by_name_only() {
        for mode in [BulkCopy::Splice, BulkCopy::Buffered] {
            assert_eq!(BulkCopy::parse(mode.name()), Some(mode));
        }
        assert_eq!(BulkCopy::parse("Splice"), None);
        assert_eq!(BulkCopy::parse("zero-copy"), None);
    }
}
