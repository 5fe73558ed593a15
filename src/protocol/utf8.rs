//! UTF-8 validation: whole messages, and messages that arrive in pieces.
//! The bulk of the work is simdutf8's (SIMD on CPUs that have it, chosen
//! at run time).

/// Whether `bytes` are valid UTF-8.
pub fn is_valid(bytes: &[u8]) -> bool {
    simdutf8::basic::from_utf8(bytes).is_ok()
}

/// Validates a byte stream piece by piece; a character may straddle two
/// pieces.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Stream {
    /// Bytes of a character cut off at the end of the last piece.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Stream {
    /// Feed the next piece; `last` says no more follow.  Returns false when
    /// the stream is not valid UTF-8 (the state is then meaningless).
    pub fn feed(&mut self, mut piece: &[u8], last: bool) -> bool {
        if self.pending_len > 0 {
            let width = char_width(self.pending[0]);
            let take = (width - self.pending_len).min(piece.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&piece[..take]);
            self.pending_len += take;
            piece = &piece[take..];
            if self.pending_len < width {
                return !last
                    && std::str::from_utf8(&self.pending[..self.pending_len])
                        .err()
                        .is_some_and(|e| e.error_len().is_none());
            }
            if std::str::from_utf8(&self.pending[..width]).is_err() {
                return false;
            }
            self.pending_len = 0;
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() && !last => {
                let tail = &piece[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                true
            }
            Err(_) => false,
        }
    }
}

/// Length of the character a lead byte starts (1 for invalid leads, which
/// then fail validation).
fn char_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_ok(pieces: &[&[u8]]) -> bool {
        let mut s = Utf8Stream::default();
        let last = pieces.len() - 1;
        pieces.iter().enumerate().all(|(i, p)| s.feed(p, i == last))
    }

    #[test]
    fn split_characters() {
        let euro = "€".as_bytes();
        assert!(stream_ok(&[
            b"a",
            &euro[..1],
            &euro[1..2],
            &euro[2..],
            b"b"
        ]));
        assert!(stream_ok(&[&euro[..2], &euro[2..]]));
        assert!(!stream_ok(&[b"a", &euro[..2]]));
        assert!(!stream_ok(&[&euro[..1], b"x", b""]));
        assert!(!stream_ok(&[b"\xff"]));
        assert!(!stream_ok(&[b"\xed", b"\xa0\x80"]));
        assert!(stream_ok(&[b""]));
    }
}
