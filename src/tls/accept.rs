//! The server side of the TLS handshake, driven record by record so that
//! the client's verified certificate can be read before the connection is
//! handed to `monoio-rustls`.
//!
//! `monoio_rustls::TlsAcceptor` hides the rustls connection once the
//! handshake is done, and taking it apart with `into_parts` would drop any
//! bytes it had read past the handshake. Here we read exactly one TLS record
//! at a time (5-byte header, then its length), so when the handshake ends
//! nothing beyond it has been read from the socket, and
//! `monoio_rustls::ServerTlsStream::new` can take over the connection.

use std::io;
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt};
use monoio_rustls::ServerTlsStream;
use rustls::pki_types::CertificateDer;
use rustls::{ServerConfig, ServerConnection};

/// RFC 8446 §5.1: content type (1), legacy version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;

/// RFC 5246 §6.2.3 allows a TLS 1.2 ciphertext of 2^14 + 2048 bytes, the
/// largest of both versions (TLS 1.3 allows 2^14 + 256).
const MAX_RECORD_BODY: usize = (1 << 14) + 2048;

/// A finished handshake.
pub struct Accepted<IO> {
    /// The encrypted stream, ready for HTTP.
    pub stream: ServerTlsStream<IO>,
    /// DER of the client's end-entity certificate, present only when the
    /// client sent one and it was verified against `global.tls.client_ca`.
    pub peer_cert: Option<CertificateDer<'static>>,
}

/// Why a handshake failed; all are the client's doing or the network's.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("tls handshake i/o failed: {0}")]
    Io(#[from] io::Error),
    #[error("tls handshake refused: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client closed the connection during the tls handshake")]
    Closed,
    #[error("tls record of {0} bytes is larger than the protocol allows")]
    RecordTooLarge(usize),
    #[error("client sent plain HTTP to the TLS port; answered 400")]
    PlainHttp,
    #[error("client sent bytes that are not a TLS record")]
    NotTls,
}

/// JSON message for a plain-HTTP request on the TLS port, in the shape the
/// docker CLI prints as `Error response from daemon: ...`.
const PLAIN_HTTP_MESSAGE: &str = "this port speaks TLS: connect with https \
     (docker --tlsverify --tlscacert CA.pem, or DOCKER_TLS_VERIFY=1)";

/// How long the refusal of a plain-HTTP request waits for the rest of that
/// request, so that closing with unread bytes does not reset the connection
/// before the client has read the answer.
const PLAIN_HTTP_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs the server handshake on `io` and returns the stream with the
/// client's verified certificate.
///
/// Has no timeout of its own: wrap it in `monoio::time::timeout` with the
/// header timeout so a silent client cannot hold the connection.
///
/// # Errors
///
/// Fails when the socket fails or closes, when rustls refuses the
/// handshake (including a missing or unverifiable client certificate when
/// one is required), or when the client sends an oversized record.
pub async fn accept<IO>(
    config: Arc<ServerConfig>,
    mut io: IO,
) -> Result<Accepted<IO>, HandshakeError>
where
    IO: AsyncReadRent + AsyncWriteRent,
{
    let mut conn = ServerConnection::new(config)?;
    let mut outgoing = Vec::new();

    loop {
        outgoing = flush(&mut conn, &mut io, outgoing).await?;
        if !conn.is_handshaking() {
            break;
        }
        if let Err(err) = read_record(&mut conn, &mut io).await {
            match err {
                // Send the alert rustls queued, if any, so the client learns why.
                HandshakeError::Tls(_) => {
                    let _ = flush(&mut conn, &mut io, outgoing).await;
                }
                HandshakeError::PlainHttp => refuse_plain_http(&mut io).await,
                _ => {}
            }
            return Err(err);
        }
    }

    let peer_cert = peer_cert_der(&conn).map(|der| der.clone().into_owned());
    Ok(Accepted {
        stream: ServerTlsStream::new(io, conn),
        peer_cert,
    })
}

/// The client's end-entity certificate on a connection whose handshake is
/// done. rustls only records certificates that its verifier accepted.
#[must_use]
pub fn peer_cert_der(conn: &ServerConnection) -> Option<&CertificateDer<'static>> {
    conn.peer_certificates()?.first()
}

/// Writes everything rustls wants to send; hands the buffer back for reuse.
async fn flush<IO: AsyncWriteRent>(
    conn: &mut ServerConnection,
    io: &mut IO,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, HandshakeError> {
    while conn.wants_write() {
        buf.clear();
        conn.write_tls(&mut buf)?;
        let (result, written) = io.write_all(buf).await;
        result?;
        buf = written;
    }
    Ok(buf)
}

/// Reads exactly one TLS record from `io` and lets rustls process it.
async fn read_record<IO: AsyncReadRent>(
    conn: &mut ServerConnection,
    io: &mut IO,
) -> Result<(), HandshakeError> {
    let header = Vec::with_capacity(RECORD_HEADER_LEN).slice_mut(0..RECORD_HEADER_LEN);
    let (result, header) = io.read_exact(header).await;
    read_result(result)?;
    let mut record = header.into_inner();
    if !is_record_header(&record) {
        // Without this check "GET /_ping ..." would be read as a record of
        // 0x202f bytes and the client would wait for the header timeout.
        return Err(if looks_like_http(&record) {
            HandshakeError::PlainHttp
        } else {
            HandshakeError::NotTls
        });
    }

    let body_len = match record.get(3..RECORD_HEADER_LEN) {
        Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
        _ => return Err(HandshakeError::Closed),
    };
    if body_len > MAX_RECORD_BODY {
        return Err(HandshakeError::RecordTooLarge(body_len));
    }
    record.reserve(body_len);
    let body = record.slice_mut(RECORD_HEADER_LEN..RECORD_HEADER_LEN + body_len);
    let (result, body) = io.read_exact(body).await;
    read_result(result)?;
    let record = body.into_inner();

    // rustls takes at most a few KiB per call; feed it until the record is
    // consumed. A zero-length read would be taken for end of stream, so the
    // loop stops before the slice is empty.
    let mut rest = record.as_slice();
    while !rest.is_empty() {
        if conn.read_tls(&mut rest)? == 0 {
            return Err(HandshakeError::Closed);
        }
        conn.process_new_packets()?;
    }
    Ok(())
}

/// True for a TLS record header: a content type rustls knows
/// (change_cipher_spec 20 to heartbeat 24) and major version 3.
fn is_record_header(header: &[u8]) -> bool {
    matches!(header, [20..=24, 3, ..])
}

/// True when the first bytes look like an HTTP/1 request line (a method
/// token in upper case followed by a space, or the start of one).
fn looks_like_http(first: &[u8]) -> bool {
    let method_len = first
        .iter()
        .position(|b| !b.is_ascii_uppercase())
        .unwrap_or(first.len());
    method_len > 0 && first.get(method_len).is_none_or(|b| *b == b' ')
}

/// Answers a plain-HTTP request on the TLS port with a 400 the docker CLI
/// can show, then reads (and drops) what the client sent, briefly.
async fn refuse_plain_http<IO: AsyncReadRent + AsyncWriteRent>(io: &mut IO) {
    let body = format!("{{\"message\":\"{PLAIN_HTTP_MESSAGE}\"}}\n");
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (result, _) = io.write_all(response.into_bytes()).await;
    if result.is_err() {
        return;
    }
    let drain = async {
        let mut buf = Vec::with_capacity(4096);
        for _ in 0..16 {
            buf.clear();
            let (result, returned) = io.read(buf).await;
            buf = returned;
            if !matches!(result, Ok(n) if n > 0) {
                break;
            }
        }
    };
    let _ = monoio::time::timeout(PLAIN_HTTP_DRAIN, drain).await;
}

fn read_result(result: io::Result<usize>) -> Result<(), HandshakeError> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(HandshakeError::Closed),
        Err(err) => Err(HandshakeError::Io(err)),
    }
}
