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

#[cfg(test)]
mod tests {
    use super::*;

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
