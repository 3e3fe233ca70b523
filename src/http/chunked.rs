//! Incremental `Transfer-Encoding: chunked` parser (RFC 9112 section 7.1).
//!
//! The scanner finds where a chunked body ends and refuses malformed
//! framing; it hands on the chunk data in one of three ways: not at all
//! (the caller passes the bytes on as they came, used for engine
//! responses), decoded (for inspection and for HTTP/1.0 clients), or
//! re-encoded canonically (request bodies on their way to the engine).
//!
//! Request bodies are never passed through with the client's framing: a
//! parser that disagrees with the engine's about where a chunked body ends
//! is a request-smuggling hole, so the engine only ever gets
//! `<hex size>\r\n<data>\r\n` ... `0\r\n\r\n` written by us, without
//! chunk extensions or trailers.
//!
//! Accepted grammar (stricter than RFC 9112 where it helps, documented in
//! `docs/http.md`):
//!
//! ```text
//! chunk-line = 1*16HEXDIG *( SP / HTAB ) [ ";" ext ] CRLF
//! ext        = *( any byte but CTLs; HTAB allowed )      ; discarded
//! data       = exactly chunk-size bytes, then CRLF
//! last-chunk = 1*16"0"-valued size line (as above)
//! trailers   = *( field-name ":" *( any byte but CTLs; HTAB allowed ) CRLF )
//! end        = CRLF
//! ```
//!
//! Every line ends in CRLF: a bare LF or a bare CR anywhere in the framing
//! is refused (a bare LF is where Go's textproto ends a line and the
//! smuggling attacks start). Obsolete line folding in trailers is refused.

use super::ParseError;

/// Longest chunk-size line (size, extensions, CRLF) we accept.
const MAX_LINE: usize = 4096;
/// Longest trailer section we accept.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: usize,
        value: u64,
    },
    /// Whitespace after the size: only more of it, `;` or CR may follow.
    SizeSpace {
        value: u64,
    },
    /// After the size: extensions up to CR.
    Extension {
        value: u64,
    },
    /// CR seen after a size line; LF must follow.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Chunk data done; CR must follow.
    DataCr,
    /// CR after data seen; LF must follow.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerLine,
    /// CR inside a trailer line seen; LF must follow.
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Finds the end of one chunked body, checking its framing as it goes.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    line: usize,
    trailers: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size {
                digits: 0,
                value: 0,
            },
            line: 0,
            trailers: 0,
        }
    }
}

impl ChunkedScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the final chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input`, returning how many bytes belong to this body (fewer
    /// than `input.len()` only when the body ends inside it). Decoded chunk
    /// data is appended to `decoded` when given.
    pub fn scan(
        &mut self,
        input: &[u8],
        decoded: Option<&mut Vec<u8>>,
    ) -> Result<usize, ParseError> {
        match decoded {
            Some(out) => self.scan_with(input, |data| out.extend_from_slice(data)),
            None => self.scan_with(input, |_| {}),
        }
    }

    /// Like [`ChunkedScanner::scan`], appending the body to `out` re-encoded
    /// canonically: each run of data found in `input` becomes one chunk
    /// `<hex size>\r\n<data>\r\n`, and the end of the body becomes
    /// `0\r\n\r\n`. Chunk extensions and trailers are dropped. The data is
    /// copied once, from `input` to `out`; framing costs at most 20 bytes
    /// per run.
    pub fn scan_canonical(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        out.reserve(input.len() + 32);
        let used = self.scan_with(input, |data| {
            push_hex(out, data.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        })?;
        if self.is_done() && used > 0 {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        Ok(used)
    }

    /// The scanning loop; `on_data` gets every run of chunk data (never an
    /// empty one) in order.
    fn scan_with(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, ParseError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                let take = remaining.min((input.len() - i) as u64) as usize;
                on_data(&input[i..i + take]);
                i += take;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining }
                };
                continue;
            }
            if self.state == State::Done {
                return Ok(i);
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, byte: u8) -> Result<(), ParseError> {
        self.state = match self.state {
            State::Size { digits, value } => {
                self.count_line()?;
                match hex_digit(byte) {
                    Some(d) => {
                        if digits >= 16 {
                            return Err(bad("chunk size too large"));
                        }
                        State::Size {
                            digits: digits + 1,
                            value: value << 4 | d as u64,
                        }
                    }
                    None if digits == 0 => return Err(bad("chunk size missing")),
                    None => match byte {
                        b';' => State::Extension { value },
                        b' ' | b'\t' => State::SizeSpace { value },
                        b'\r' => State::SizeLf { value },
                        b'\n' => {
                            return Err(bad("bare LF in chunk size line; lines must end in CRLF"))
                        }
                        _ => return Err(bad("invalid character in chunk size")),
                    },
                }
            }
            State::SizeSpace { value } => {
                self.count_line()?;
                match byte {
                    b' ' | b'\t' => State::SizeSpace { value },
                    b';' => State::Extension { value },
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(bad("bare LF in chunk size line; lines must end in CRLF")),
                    _ => return Err(bad("invalid character after chunk size")),
                }
            }
            State::Extension { value } => {
                self.count_line()?;
                match byte {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(bad("bare LF in chunk size line; lines must end in CRLF")),
                    0..=8 | 11..=31 | 127 => {
                        return Err(bad("control character in chunk extension"))
                    }
                    _ => State::Extension { value },
                }
            }
            State::SizeLf { value } => {
                if byte != b'\n' {
                    return Err(bad("bare CR in chunk size line; lines must end in CRLF"));
                }
                self.line = 0;
                if value == 0 {
                    State::TrailerStart
                } else {
                    State::Data { remaining: value }
                }
            }
            State::Data { .. } | State::Done => unreachable!("handled in scan"),
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                b'\n' => return Err(bad("chunk data not ended by CRLF (bare LF)")),
                _ => return Err(bad("chunk data longer than its size")),
            },
            State::DataLf => match byte {
                b'\n' => State::Size {
                    digits: 0,
                    value: 0,
                },
                _ => return Err(bad("chunk data not ended by CRLF (bare CR)")),
            },
            State::TrailerStart => {
                self.count_trailer()?;
                match byte {
                    b'\r' => State::TrailerLf { empty: true },
                    b'\n' => return Err(bad("bare LF in trailers; lines must end in CRLF")),
                    b' ' | b'\t' => return Err(bad("obsolete line folding in trailers")),
                    _ if is_tchar(byte) => State::TrailerName,
                    _ => return Err(bad("invalid trailer field name")),
                }
            }
            State::TrailerName => {
                self.count_trailer()?;
                match byte {
                    b':' => State::TrailerLine,
                    b'\r' | b'\n' => return Err(bad("trailer line without a colon")),
                    _ if is_tchar(byte) => State::TrailerName,
                    _ => return Err(bad("invalid trailer field name")),
                }
            }
            State::TrailerLine => {
                self.count_trailer()?;
                match byte {
                    b'\r' => State::TrailerLf { empty: false },
                    b'\n' => return Err(bad("bare LF in trailers; lines must end in CRLF")),
                    b'\t' => State::TrailerLine,
                    0..=31 | 127 => return Err(bad("control character in a trailer field")),
                    _ => State::TrailerLine,
                }
            }
            State::TrailerLf { empty } => match byte {
                b'\n' if empty => State::Done,
                b'\n' => State::TrailerStart,
                _ => return Err(bad("bare CR in trailers; lines must end in CRLF")),
            },
        };
        Ok(())
    }

    fn count_line(&mut self) -> Result<(), ParseError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(bad("chunk size line too long"));
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), ParseError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(bad("trailer section too large"));
        }
        Ok(())
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 9110 token characters (field names).
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Appends `n` in lower-case hex without leading zeros.
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

fn bad(what: &'static str) -> ParseError {
    ParseError::BadChunk(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(usize, Vec<u8>), ParseError> {
        let mut scanner = ChunkedScanner::new();
        let mut out = Vec::new();
        let mut used = 0;
        for part in body.chunks(piece) {
            used += scanner.scan(part, Some(&mut out))?;
            if scanner.is_done() {
                return Ok((used, out));
            }
        }
        Err(ParseError::BadChunk("incomplete"))
    }

    #[test]
    fn decodes_split_at_every_offset() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in 1..body.len() {
            let (used, data) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(used, body.len());
            assert_eq!(data, b"hello 0123456789");
        }
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let mut scanner = ChunkedScanner::new();
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let used = scanner.scan(input, None).unwrap();
        assert!(scanner.is_done());
        assert_eq!(&input[used..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn refuses_malformed_sizes() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"5\nhello",
            b"11111111111111111\r\n",
            b"3\r\nabcd\r\n",
            b"3\r\nabc\n",
            b"0\r\nX: 1\n",
            b"2 2\r\nab\r\n",
        ] {
            assert!(decode_in_pieces(body, body.len()).is_err(), "{:?}", body);
        }
    }

    #[test]
    fn refuses_bare_lf_and_bare_cr_anywhere_in_the_framing() {
        for body in [
            // The smuggling payload: a bare LF ends Go's trailer section.
            &b"0\r\n\nPOST /x HTTP/1.1\r\nHost: d\r\n\r\n"[..],
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\nX-T: 1\r\n\n",
            b"0\r\n\rX",
            b"0\r\nX-T: 1\rX\r\n\r\n",
            b"0\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3 \nabc\r\n0\r\n\r\n",
            b"3;x\nabc\r\n0\r\n\r\n",
            b"3\rabc\r\n0\r\n\r\n",
            b"3;x\rabc\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\rX0\r\n\r\n",
            b"0\r\n X: 1\r\n\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\nbad name: 1\r\n\r\n",
            b"0\r\nX: a\x01b\r\n\r\n",
        ] {
            for piece in 1..=body.len() {
                assert!(
                    decode_in_pieces(body, piece).is_err(),
                    "accepted {:?} in pieces of {piece}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn accepts_the_documented_grammar() {
        for (body, data) in [
            (&b"3 \r\nabc\r\n0\r\n\r\n"[..], &b"abc"[..]),
            (b"3\t;x\r\nabc\r\n0\r\n\r\n", b"abc"),
            (b"3 ;x\r\nabc\r\n0\r\n\r\n", b"abc"),
            (b"3;a=b;c=\"d e\"\r\nabc\r\n0;last\r\n\r\n", b"abc"),
            (b"0000000000000003\r\nabc\r\n00\r\n\r\n", b"abc"),
            (b"0\r\nX-A: 1\r\nX-B:\t2 3\r\n\r\n", b""),
        ] {
            let (used, out) = decode_in_pieces(body, 1).unwrap();
            assert_eq!(used, body.len());
            assert_eq!(out, data);
        }
    }

    /// Re-encodes `body` fed in pieces of `piece` bytes.
    fn canonical_in_pieces(body: &[u8], piece: usize) -> (usize, Vec<u8>) {
        let mut scanner = ChunkedScanner::new();
        let mut out = Vec::new();
        let mut used = 0;
        for part in body.chunks(piece) {
            used += scanner.scan_canonical(part, &mut out).unwrap();
            if scanner.is_done() {
                break;
            }
        }
        assert!(scanner.is_done());
        (used, out)
    }

    #[test]
    fn re_encodes_canonically_without_extensions_or_trailers() {
        let body =
            b"5;ext=1\r\nhello\r\n1 ; x\r\n \r\nA\r\n0123456789\r\n0;e\r\nX-T: 1\r\n\r\nNEXT";
        let (used, out) = canonical_in_pieces(body, body.len());
        assert_eq!(used, body.len() - 4);
        assert_eq!(out, b"5\r\nhello\r\n1\r\n \r\na\r\n0123456789\r\n0\r\n\r\n");
        for piece in 1..body.len() {
            let (used, out) = canonical_in_pieces(body, piece);
            assert_eq!(used, body.len() - 4);
            assert!(out.ends_with(b"0\r\n\r\n"));
            assert_eq!(memchr::memmem::find_iter(&out, b"0\r\n\r\n").count(), 1);
            // The output is itself a valid body with the same data.
            let (again, data) = decode_in_pieces(&out, out.len()).unwrap();
            assert_eq!(again, out.len());
            assert_eq!(data, b"hello 0123456789");
            assert!(!out.windows(3).any(|w| w == b"ext" || w == b"X-T"));
        }
    }

    #[test]
    fn empty_body_re_encodes_to_the_last_chunk_only() {
        let (_, out) = canonical_in_pieces(b"0\r\n\r\n", 1);
        assert_eq!(out, b"0\r\n\r\n");
        let mut scanner = ChunkedScanner::new();
        let mut out = Vec::new();
        scanner.scan_canonical(b"0\r\n\r\n", &mut out).unwrap();
        scanner.scan_canonical(b"", &mut out).unwrap();
        scanner.scan_canonical(b"more", &mut out).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn hex_sizes_are_lower_case_without_leading_zeros() {
        for n in [0u64, 1, 15, 16, 255, 0x10000, u64::MAX] {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").into_bytes());
        }
    }

    #[test]
    fn accepts_uppercase_hex() {
        let (_, data) = decode_in_pieces(b"A\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(data.len(), 10);
    }
}
