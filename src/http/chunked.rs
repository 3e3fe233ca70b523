//! Incremental `Transfer-Encoding: chunked` scanner (RFC 9112 section 7.1).
//!
//! The proxy forwards chunked bodies byte for byte; the scanner only finds
//! where the body ends and refuses malformed framing. When a rule needs the
//! body, it can also collect the decoded data.

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
    /// Inside a trailer field line.
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
        mut decoded: Option<&mut Vec<u8>>,
    ) -> Result<usize, ParseError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                let take = remaining.min((input.len() - i) as u64) as usize;
                if let Some(out) = decoded.as_deref_mut() {
                    out.extend_from_slice(&input[i..i + take]);
                }
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
                    _ => return Err(bad("invalid character after chunk size")),
                }
            }
            State::Extension { value } => {
                self.count_line()?;
                match byte {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(bad("bare LF in chunk size line")),
                    0..=8 | 11..=31 | 127 => {
                        return Err(bad("control character in chunk extension"))
                    }
                    _ => State::Extension { value },
                }
            }
            State::SizeLf { value } => {
                if byte != b'\n' {
                    return Err(bad("chunk size line not ended by CRLF"));
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
                _ => return Err(bad("chunk data longer than its size")),
            },
            State::DataLf => match byte {
                b'\n' => State::Size {
                    digits: 0,
                    value: 0,
                },
                _ => return Err(bad("chunk data not ended by CRLF")),
            },
            State::TrailerStart => {
                self.count_trailer()?;
                match byte {
                    b'\r' => State::TrailerLf { empty: true },
                    b' ' | b'\t' => return Err(bad("obsolete line folding in trailers")),
                    _ => State::TrailerLine,
                }
            }
            State::TrailerLine => {
                self.count_trailer()?;
                match byte {
                    b'\r' => State::TrailerLf { empty: false },
                    b'\n' => return Err(bad("bare LF in trailers")),
                    _ => State::TrailerLine,
                }
            }
            State::TrailerLf { empty } => match byte {
                b'\n' if empty => State::Done,
                b'\n' => State::TrailerStart,
                _ => return Err(bad("trailer line not ended by CRLF")),
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
    fn accepts_uppercase_hex() {
        let (_, data) = decode_in_pieces(b"A\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(data.len(), 10);
    }
}
