//! Small I/O helpers over monoio's ownership-passing reads and writes.

use std::io;

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
}
