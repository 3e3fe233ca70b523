//! Small I/O helpers over monoio's ownership-passing reads and writes.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Size of the buffers bulk bytes are copied through.
pub const COPY_BUF: usize = 64 * 1024;

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

/// Writes all of `buf[from..]`, handing the buffer back.
pub async fn write_from<W: AsyncWriteRent>(
    io: &mut W,
    buf: Vec<u8>,
    from: usize,
) -> (io::Result<()>, Vec<u8>) {
    if from >= buf.len() {
        return (Ok(()), buf);
    }
    let end = buf.len();
    let (result, slice) = io.write_all(buf.slice(from..end)).await;
    (result.map(|_| ()), slice.into_inner())
}

/// Writes all of `buf`.
pub async fn write_all<W: AsyncWriteRent>(io: &mut W, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    write_from(io, buf, 0).await
}
