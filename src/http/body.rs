//! Where a message body ends, for bodies passed through byte for byte.
//!
//! The proxy does not re-frame bodies it only forwards: it copies the bytes
//! as they came and uses a [`BodyTracker`] to stop exactly at the end of
//! the message, so bytes of a following message are never mixed in.

use super::chunked::ChunkedScanner;
use super::head::Framing;
use super::ParseError;

/// Tracks how much of a body has gone by.
#[derive(Debug, Clone)]
pub struct BodyTracker {
    framing: Framing,
    remaining: u64,
    scanner: ChunkedScanner,
    done: bool,
}

impl BodyTracker {
    pub fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::UntilClose => (0, false),
        };
        BodyTracker {
            framing,
            remaining,
            scanner: ChunkedScanner::new(),
            done,
        }
    }

    /// The whole body has gone by.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How many of `bytes` (the next bytes on the wire) belong to the body.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<usize, ParseError> {
        self.step(bytes, None)
    }

    /// Like [`BodyTracker::advance`], and appends the body's data (chunk
    /// framing removed) to `data`.
    pub fn advance_decoding(
        &mut self,
        bytes: &[u8],
        data: &mut Vec<u8>,
    ) -> Result<usize, ParseError> {
        self.step(bytes, Some(data))
    }

    fn step(&mut self, bytes: &[u8], data: Option<&mut Vec<u8>>) -> Result<usize, ParseError> {
        if self.done {
            return Ok(0);
        }
        let used = match self.framing {
            Framing::Empty => 0,
            Framing::Length(_) => {
                let take = self.remaining.min(bytes.len() as u64);
                self.remaining -= take;
                self.done = self.remaining == 0;
                take as usize
            }
            Framing::Chunked => {
                let used = self.scanner.scan(bytes, data)?;
                self.done = self.scanner.is_done();
                return Ok(used);
            }
            Framing::UntilClose => bytes.len(),
        };
        if let Some(data) = data {
            data.extend_from_slice(&bytes[..used]);
        }
        Ok(used)
    }

    /// Bytes of a Content-Length body still to come.
    pub fn length_left(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(_) => Some(self.remaining),
            _ => None,
        }
    }

    /// True when the peer closing now ends the body cleanly.
    pub fn ends_at_eof(&self) -> bool {
        self.done || self.framing == Framing::UntilClose
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_body_stops_at_its_length() {
        let mut tracker = BodyTracker::new(Framing::Length(5));
        assert_eq!(tracker.advance(b"abc").unwrap(), 3);
        assert!(!tracker.is_done());
        assert_eq!(tracker.advance(b"deGET").unwrap(), 2);
        assert!(tracker.is_done());
        assert_eq!(tracker.advance(b"more").unwrap(), 0);
    }

    #[test]
    fn chunked_body_stops_after_its_last_chunk() {
        let mut tracker = BodyTracker::new(Framing::Chunked);
        let wire = b"2\r\nab\r\n0\r\n\r\nNEXT";
        assert_eq!(tracker.advance(wire).unwrap(), wire.len() - 4);
        assert!(tracker.is_done());
    }

    #[test]
    fn decoding_removes_chunk_framing_only() {
        let mut chunked = BodyTracker::new(Framing::Chunked);
        let mut data = Vec::new();
        let wire = b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\nNEXT";
        assert_eq!(
            chunked.advance_decoding(wire, &mut data).unwrap(),
            wire.len() - 4
        );
        assert_eq!(data, b"abc");
        let mut length = BodyTracker::new(Framing::Length(3));
        let mut data = Vec::new();
        assert_eq!(length.advance_decoding(b"abcdef", &mut data).unwrap(), 3);
        assert_eq!(data, b"abc");
    }

    #[test]
    fn only_close_delimited_bodies_end_at_eof() {
        assert!(BodyTracker::new(Framing::UntilClose).ends_at_eof());
        assert!(!BodyTracker::new(Framing::Length(1)).ends_at_eof());
        assert!(!BodyTracker::new(Framing::Chunked).ends_at_eof());
        assert!(BodyTracker::new(Framing::Empty).ends_at_eof());
    }
}
