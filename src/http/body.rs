//! Where a message body ends, and the framing it leaves with.
//!
//! A [`BodyTracker`] stops exactly at the end of the message, so bytes of a
//! following message are never mixed in. Content-Length bodies pass byte
//! for byte. Chunked bodies either pass as they came ([`Reframe::AsIs`],
//! engine responses to HTTP/1.1 clients), are re-encoded canonically
//! ([`Reframe::Canonical`], every request body sent to the engine) or are
//! decoded ([`Reframe::Decode`], responses to HTTP/1.0 clients, which do
//! not know chunked and get the data delimited by closing).

use super::chunked::ChunkedScanner;
use super::head::Framing;
use super::ParseError;

/// What happens to the framing of a chunked body on its way through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reframe {
    /// The bytes pass as they came.
    AsIs,
    /// Re-encoded as `<hex size>\r\n<data>\r\n` ... `0\r\n\r\n`, without
    /// extensions or trailers.
    Canonical,
    /// Only the data passes.
    Decode,
}

/// Tracks how much of a body has gone by.
#[derive(Debug, Clone)]
pub struct BodyTracker {
    framing: Framing,
    remaining: u64,
    scanner: ChunkedScanner,
    done: bool,
    reframe: Reframe,
}

impl BodyTracker {
    /// A tracker that passes every body as it came.
    pub fn new(framing: Framing) -> Self {
        Self::reframing(framing, Reframe::AsIs)
    }

    /// A tracker that re-frames a chunked body as `reframe` says (other
    /// framings pass as they came).
    pub fn reframing(framing: Framing, reframe: Reframe) -> Self {
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
            reframe,
        }
    }

    /// True when the bytes leaving differ from the bytes arriving, so that
    /// [`BodyTracker::advance_into`] must be used instead of
    /// [`BodyTracker::advance`].
    pub fn reframes(&self) -> bool {
        self.framing == Framing::Chunked && self.reframe != Reframe::AsIs
    }

    /// Like [`BodyTracker::advance`], appending the body bytes as they must
    /// leave (see [`Reframe`]) to `out`.
    pub fn advance_into(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        match (self.framing, self.reframe) {
            (Framing::Chunked, Reframe::Canonical) if !self.done => {
                let used = self.scanner.scan_canonical(bytes, out)?;
                self.done = self.scanner.is_done();
                Ok(used)
            }
            (Framing::Chunked, Reframe::AsIs) => {
                let used = self.step(bytes, None)?;
                out.extend_from_slice(&bytes[..used]);
                Ok(used)
            }
            // Decoded chunk data; any other framing's bytes as they came.
            _ => self.step(bytes, Some(out)),
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
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
    fn chunked_bodies_leave_reframed_as_asked() {
        let wire = b"2;x=y\r\nab\r\n1\r\nc\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let cases = [
            (Reframe::AsIs, &wire[..wire.len() - 4]),
            (Reframe::Canonical, &b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"[..]),
            (Reframe::Decode, &b"abc"[..]),
        ];
        for (reframe, expected) in cases {
            let mut tracker = BodyTracker::reframing(Framing::Chunked, reframe);
            assert_eq!(tracker.reframes(), reframe != Reframe::AsIs);
            let mut out = Vec::new();
            assert_eq!(
                tracker.advance_into(wire, &mut out).unwrap(),
                wire.len() - 4
            );
            assert!(tracker.is_done());
            assert_eq!(out, expected, "{reframe:?}");
        }
        // Content-Length bodies are never reframed.
        let mut tracker = BodyTracker::reframing(Framing::Length(3), Reframe::Canonical);
        assert!(!tracker.reframes());
        let mut out = Vec::new();
        assert_eq!(tracker.advance_into(b"abcdef", &mut out).unwrap(), 3);
        assert_eq!(out, b"abc");
    }

    #[test]
    fn only_close_delimited_bodies_end_at_eof() {
        assert!(BodyTracker::new(Framing::UntilClose).ends_at_eof());
        assert!(!BodyTracker::new(Framing::Length(1)).ends_at_eof());
        assert!(!BodyTracker::new(Framing::Chunked).ends_at_eof());
        assert!(BodyTracker::new(Framing::Empty).ends_at_eof());
    }
}
